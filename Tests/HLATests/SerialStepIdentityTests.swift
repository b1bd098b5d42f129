// The serial forward path (hla_forward, HLA_PATH_SERIAL) against hla_step called token after token from
// the same zero state: outputs and final state must agree BIT FOR BIT (no tolerance). The serial path is
// documented as "one token at a time through the streaming recurrence"; any reorganisation of its sweep
// (e.g. several tokens per pass over the state) must keep every rounding of the step loop.
//
// Values covered: hla2, ahla, hla3; masked / unmasked; normalize off / on; decay 1 / 0.9; ridge 0 / 0.3
// (hla2); heads (H, Hkv) = (1, 1), (4, 2), (2, 2); float32 and float64; (dk, dv) in (64, 64), (16, 16),
// (65, 33), (17, 81), (32, 97), (128, 129); T in 1, 2, 3, 37; batch 2. The full product (2304 cases for
// hla2) takes minutes in a debug build (the library runs unoptimized there: about 1 ms per token and head
// at d = 64), so by default each operator and dtype runs a deterministic sample (`cases`) in which every
// value above occurs, every option combination occurs at d = 64 and at T = 37, and every head size meets
// every heads layout; HLA_SERIAL_STEP_FULL=1 in the environment runs the full product instead.
import CHLA
import XCTest
@testable import HLA

final class SerialStepIdentityTests: XCTestCase {
    static let dims: [(dk: Int, dv: Int)] = [(64, 64), (16, 16), (65, 33), (17, 81), (32, 97), (128, 129)]
    static let heads: [(H: Int, Hkv: Int)] = [(1, 1), (4, 2), (2, 2)]
    static let lengths = [1, 2, 3, 37]
    static let pathSerial = HLA_PATH_SERIAL.rawValue.asInt32

    struct Case: CustomStringConvertible {
        var o: Options
        var s: Shape
        var dtype: Int32
        var seed: UInt64
        var description: String { "\(dtypeName[dtype]!) \(o) \(s) seed=\(seed)" }
    }

    /// Every (masked, normalize, decay, ridge) of `op`.
    static func options(_ op: Int32) -> [Options] {
        var r: [Options] = []
        for masked in [true, false] {
            for normalize in [false, true] {
                for decay in [1.0, 0.9] {
                    for ridge in (op == opHLA2 ? [0.0, 0.3] : [0.0]) {
                        r.append(Options(op: op, masked: masked, normalize: normalize, decay: decay, ridge: ridge))
                    }
                }
            }
        }
        return r
    }

    static var fullProduct: Bool { ProcessInfo.processInfo.environment["HLA_SERIAL_STEP_FULL"] == "1" }

    /// The cases of `op`: the deterministic sample, or with `full` every combination.
    static func cases(_ op: Int32, full: Bool = fullProduct) -> [Case] {
        var r: [Case] = []
        var seed: UInt64 = 9_100 + UInt64(op) * 100_000
        func add(_ o: Options, _ d: (dk: Int, dv: Int), _ h: (H: Int, Hkv: Int), _ T: Int, _ dtype: Int32) {
            seed += 1
            r.append(Case(o: o, s: Shape(B: 2, T: T, H: h.H, Hkv: h.Hkv, dk: d.dk, dv: d.dv), dtype: dtype, seed: seed))
        }
        let opts = options(op), short = [1, 2, 3], wide = dims.filter { $0 != (16, 16) }
        for (xi, dtype) in [F32, F64].enumerated() {
            if full {
                for d in dims { for o in opts { for h in heads { for T in lengths { add(o, d, h, T, dtype) } } } }
                continue
            }
            // (a) every option combination at (64, 64), short T, the heads layout and T rotating
            for (oi, o) in opts.enumerated() {
                add(o, dims[0], heads[(oi + xi) % 3], short[(oi + oi / 3 + xi) % 3], dtype)
            }
            // (b) every option combination at T = 37 on the smallest heads (16, 16), the heads layout rotating
            for (oi, o) in opts.enumerated() {
                add(o, (16, 16), heads[(oi + 2 * xi) % 3], 37, dtype)
            }
            // (c) every head size with every heads layout, short T and the options rotating
            for (di, d) in dims.enumerated() {
                for (hi, h) in heads.enumerated() {
                    add(opts[(3 * di + hi + 5 * xi) % opts.count], d, h, short[(di + hi + xi) % 3], dtype)
                }
            }
            // (d) T = 37 on one wider head size (each of them on some operator and dtype), one query head
            add(opts[(3 * Int(op) + xi) % opts.count], wide[(2 * Int(op) + xi + 2) % wide.count], (1, 1), 37, dtype)
        }
        return r
    }

    /// Bit patterns of `count` elements of `size` bytes (4 or 8) at `raw`.
    static func bits(_ raw: UnsafeRawPointer, size: Int, count: Int) -> [UInt64] {
        (0..<count).map { i in
            size == 8 ? raw.load(fromByteOffset: 8 * i, as: UInt64.self)
                      : UInt64(raw.load(fromByteOffset: 4 * i, as: UInt32.self))
        }
    }

    /// Fails (once) if the bit patterns differ, naming how many elements differ and the first of them.
    static func expectIdentical(_ got: [UInt64], _ want: [UInt64], size: Int, what: String, locate: (Int) -> String,
                                _ c: Case, file: StaticString = #filePath, line: UInt = #line) -> Bool {
        XCTAssertEqual(got.count, want.count, "\(what) length \(c)", file: file, line: line)
        guard got.count == want.count else { return false }
        var first = -1, n = 0
        for i in 0..<got.count where got[i] != want[i] {
            if first < 0 { first = i }
            n += 1
        }
        if n == 0 { return true }
        func value(_ b: UInt64) -> Double { size == 8 ? Double(bitPattern: b) : Double(Float(bitPattern: UInt32(b))) }
        XCTFail("\(what): \(n) of \(got.count) elements differ; first at \(locate(first)): serial \(value(got[first])) "
                + "(0x\(String(got[first], radix: 16))) vs step \(value(want[first])) (0x\(String(want[first], radix: 16))) — \(c)",
                file: file, line: line)
        return false
    }

    /// One case: serial forward vs the step loop, outputs and final state bit for bit.
    func run<E: Elem>(_: E.Type, _ c: Case) -> Bool {
        let s = c.s
        let t = Typed<E>(Problem(s, seed: c.seed))
        let cfg = makeConfig(s, c.o)
        let n = stateElements(cfg)

        // serial forward from the zero state (no initial), final state into NaN-filled rows
        let serialOut = t.outBuf()
        let serialFinal = RowBuf(dtype: stateType(E.dtype), rows: s.B, n: n, fill: .nan)
        check(t.forward(cfg, path: Self.pathSerial, into: serialOut, final: serialFinal), "hla_forward serial \(c)")

        // hla_step token after token from a zero state
        let stepState = t.newState(cfg)
        let stepOut = t.outBuf()
        t.steps(cfg, stepState, 0, s.T, into: stepOut)

        let size = MemoryLayout<E>.size
        let o1 = Self.bits(UnsafeRawPointer(serialOut.p), size: size, count: serialOut.count)
        let o2 = Self.bits(UnsafeRawPointer(stepOut.p), size: size, count: stepOut.count)
        // guard against a vacuous comparison: every output written, finite, and not all zero
        let vals = stepOut.doubles
        XCTAssertFalse(vals.contains { !$0.isFinite }, "non-finite step output \(c)")
        XCTAssertTrue(vals.contains { $0 != 0 }, "all-zero step output \(c)")
        let outOK = Self.expectIdentical(o1, o2, size: size, what: "outputs", locate: { i in
            let x = i % s.dv, h = (i / s.dv) % s.H, tt = (i / (s.dv * s.H)) % s.T, b = i / (s.dv * s.H * s.T)
            return "b=\(b) t=\(tt) h=\(h) x=\(x)"
        }, c)
        let es = serialFinal.es
        let s1 = Self.bits(UnsafeRawPointer(serialFinal.mem.raw), size: es, count: s.B * n)
        let s2 = Self.bits(UnsafeRawPointer(stepState.mem.raw), size: es, count: s.B * n)
        let stOK = Self.expectIdentical(s1, s2, size: es, what: "final state", locate: { i in "row \(i / n) element \(i % n)" }, c)
        return outOK && stOK
    }

    func sweep(_ op: Int32) {
        let cs = Self.cases(op)
        var failed = 0
        let t0 = Date()
        for c in cs {
            let ok = c.dtype == F64 ? run(Double.self, c) : run(Float.self, c)
            if !ok { failed += 1 }
        }
        print(String(format: "SerialStepIdentity %@: %d cases, %d not identical, %.2f s",
                     Options(op: op).opName, cs.count, failed, Date().timeIntervalSince(t0)))
    }

    /// Steps large enough for the thread pool (StepThreads.minWork multiply-adds and up), one sequence: with
    /// one kv head `hla_step` splits the query heads into ranges run on the pool (`stepByHead`), with more
    /// the units go to the pool's shares; the serial path over the same tokens runs each unit on one thread.
    /// Same bits either way.
    func testThreadedStepsEqualSerial() {
        let shapes: [(H: Int, Hkv: Int, dk: Int, dv: Int)] = [(48, 1, 65, 33), (36, 1, 33, 97), (40, 4, 64, 48), (16, 16, 64, 64)]
        var n = 0
        StepThreads.shared.always.store(true, ordering: .relaxed)   // every step here on the pool's paths
        defer { StepThreads.shared.always.store(false, ordering: .relaxed) }
        for op in [opHLA2, opAHLA, opHLA3] {
            let opts = Self.options(op)
            for (si, sh) in shapes.enumerated() {
                for dtype in [F32, F64] {
                    let o = opts[(5 * si + Int(op) + (dtype == F64 ? 3 : 0)) % opts.count]
                    let work = sh.H * (sh.dk * sh.dk + 2 * sh.dk * (sh.dv + (o.normalize ? 1 : 0)))
                    XCTAssertGreaterThanOrEqual(work, StepThreads.minWork, "\(sh) is too small to be threaded")
                    let c = Case(o: o, s: Shape(B: 1, T: 3, H: sh.H, Hkv: sh.Hkv, dk: sh.dk, dv: sh.dv), dtype: dtype,
                                 seed: UInt64(1000 + n))
                    _ = dtype == F64 ? run(Double.self, c) : run(Float.self, c)
                    n += 1
                }
            }
        }
        // The AVX-512 step kernel's shapes (masked, float32, dk and dv multiples of 64; hla2 without ridge), where a
        // thread's first range of heads advances its kv blocks inside the kernel (`stepKVHeads`): one kv head
        // (`stepByHead`, the threads' copies), two (the units on the pool's shares, `stepGroup`) and one query head
        // per kv head (`step`); decay 1 and 0.9.
        for op in [opHLA2, opAHLA, opHLA3] {
            for (H, Hkv, d) in [(32, 1, 64), (32, 2, 64), (16, 1, 128), (16, 16, 128)] {
                for decay in [1.0, 0.9] {
                    let o = Options(op: op, masked: true, normalize: false, decay: decay, ridge: 0)
                    let c = Case(o: o, s: Shape(B: 1, T: 3, H: H, Hkv: Hkv, dk: d, dv: d), dtype: F32, seed: UInt64(1000 + n))
                    XCTAssertTrue(run(Float.self, c), "\(c.o) H=\(H) Hkv=\(Hkv) d=\(d)")
                    n += 1
                }
            }
        }
        print("SerialStepIdentity threaded steps: \(n) cases")
    }

    func testHLA2SerialEqualsSteps() { sweep(opHLA2) }
    func testAHLASerialEqualsSteps() { sweep(opAHLA) }
    func testHLA3SerialEqualsSteps() { sweep(opHLA3) }

    /// The sample covers what it claims: per operator and dtype, every option value, heads layout, length
    /// and head size; every option combination at (64, 64) and at T = 37; every head size with every heads
    /// layout; every head size at T = 37 on some operator. With HLA_SERIAL_STEP_FULL=1, every combination.
    func testSampleCovers() {
        func key(_ o: Options) -> String { o.description }
        var longDims = Set<String>()
        for op in allOps {
            let opts = Self.options(op)
            let full = Self.cases(op, full: true)
            XCTAssertEqual(full.count, 2 * Self.dims.count * opts.count * Self.heads.count * Self.lengths.count)
            XCTAssertEqual(Set(full.map { $0.description.replacingOccurrences(of: " seed=\($0.seed)", with: "") }).count, full.count)
            let cs = Self.cases(op, full: false)
            XCTAssertTrue(cs.allSatisfy { $0.s.B == 2 })
            for dtype in [F32, F64] {
                let d = cs.filter { $0.dtype == dtype }
                XCTAssertEqual(Set(d.map { $0.o.masked }), [true, false])
                XCTAssertEqual(Set(d.map { $0.o.normalize }), [true, false])
                XCTAssertEqual(Set(d.map { $0.o.decay }), [1.0, 0.9])
                XCTAssertEqual(Set(d.map { $0.o.ridge }), op == opHLA2 ? [0.0, 0.3] : [0.0])
                XCTAssertEqual(Set(d.map { $0.s.T }), Set(Self.lengths))
                XCTAssertEqual(Set(d.filter { $0.s.dk == 64 && $0.s.dv == 64 }.map { key($0.o) }).count, opts.count)
                XCTAssertEqual(Set(d.filter { $0.s.T == 37 }.map { key($0.o) }).count, opts.count)
                XCTAssertEqual(Set(d.filter { $0.s.T == 37 }.map { "\($0.s.H)/\($0.s.Hkv)" }).count, Self.heads.count)
                for (dk, dv) in Self.dims {
                    let dd = d.filter { $0.s.dk == dk && $0.s.dv == dv }
                    XCTAssertEqual(Set(dd.map { "\($0.s.H)/\($0.s.Hkv)" }).count, Self.heads.count, "heads at \(dk)x\(dv)")
                }
                for c in d where c.s.T == 37 { longDims.insert("\(c.s.dk)x\(c.s.dv)") }
            }
        }
        XCTAssertEqual(longDims.count, Self.dims.count, "head sizes met at T = 37: \(longDims)")
    }
}
