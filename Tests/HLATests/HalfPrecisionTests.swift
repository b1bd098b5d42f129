// bfloat16 and float16 inputs and outputs (float32 state and accumulation, SPEC §1, §4, §7) on every path —
// chunked, serial, scan forward and the hla_step loop — against the suite's own brute force (BruteForce.swift)
// evaluated in float64 on the same rounded inputs: max-norm relative error ≤ 1e-2 (bfloat16) and ≤ 2e-3
// (float16). Also: the float32 states and summaries of half inputs, and continuation through them.
import CHLA
import XCTest
@testable import HLA

let halfWorst = Worst()

extension CondBound {
    /// The first-order bound of PathParityTests with num and den from BruteForce (not hla_reference).
    init(bruteForce p: Problem, _ o: Options) {
        var on = o
        on.normalize = false
        self.init(p: p, num: BruteForce.run(p, on), den: BruteForce.run(CondBound.onesProblem(p), on), eps: o.eps)
    }
}

final class HalfPrecisionTests: XCTestCase {
    static let tolerance: [Int32: Double] = [BF16: 1e-2, F16: 2e-3]
    static let pathNames = ["chunked", "serial", "scan", "step"]

    /// Outputs of every path (0-2 forward, 3 step loop) and their final states.
    func allPaths<E: Elem>(_ t: Typed<E>, _ cfg: hla_config) -> (outs: [[Double]], finals: [RowBuf]) {
        var outs: [[Double]] = [], finals: [RowBuf] = []
        for path in 0..<4 {
            let st = t.newState(cfg)
            XCTAssertEqual(st.dtype, F32)
            outs.append(path < 3 ? t.forward(cfg, path: Int32(path), final: st) : t.stepAll(cfg, final: st))
            finals.append(st)
        }
        return (outs, finals)
    }

    func sweep<E: Elem>(_ type: E.Type, _ op: Int32) {
        let tol = Self.tolerance[E.dtype]!, dn = dtypeName[E.dtype]!
        var seed: UInt64 = 40_000 + UInt64(op) * 100
        // (shape, chunk): grouped heads over T not a multiple of the chunk; one token; two automatic chunks
        let shapes: [(Shape, Int64)] = [(Shape(B: 2, T: 13, H: 4, Hkv: 2, dk: 5, dv: 3), 4),
                                        (Shape(B: 1, T: 1, H: 2, Hkv: 1, dk: 5, dv: 3), 4),
                                        (Shape(B: 1, T: 35, H: 2, Hkv: 1, dk: 5, dv: 3), 0),
                                        // rows of 16 and more: the vector conversions of half.c and their tails
                                        (Shape(B: 1, T: 7, H: 2, Hkv: 1, dk: 20, dv: 17), 4)]
        for o0 in optionGrid(op) {
            for (s, chunk) in shapes {
                if s.T > 13 && (op == opHLA3 || o0.decay == 1) && !(o0.masked && !o0.normalize) { continue }  // keep the brute force cheap
                seed += 1
                var o = o0
                o.chunk = chunk
                let p = Problem(s, seed: seed).rounded(to: E.dtype)
                let cfg = makeConfig(s, o)
                let t = Typed<E>(p)
                let (outs, finals) = allPaths(t, cfg)
                let want = BruteForce.run(p, o)
                XCTAssertGreaterThan(want.map(abs).max()!, 1e-3)
                let cond = o.normalize ? CondBound(bruteForce: p, o) : nil
                for path in 0..<4 {
                    let name = "\(o.opName) \(dn) \(Self.pathNames[path])"
                    if let cond {
                        // normalized: num and den each within tol explain the quotient's error (see CondBound)
                        let r = cond.ratio(outs[path], want)
                        halfWorst.note("\(name) normalized, cond", r)
                        XCTAssertLessThanOrEqual(r, tol, "\(name) normalized \(o) \(s)")
                    } else {
                        let e = relErr(outs[path], want)
                        halfWorst.note(name, e)
                        XCTAssertLessThanOrEqual(e, tol, "\(name) \(o) \(s)")
                    }
                }
                if o.normalize {
                    // the denominator alone: the unnormalized operator on values ≡ 1 (exact in both half types)
                    var on = o
                    on.normalize = false
                    let ones = CondBound.onesProblem(p), oc = makeConfig(ones.s, on)
                    let wantDen = BruteForce.run(ones, on)
                    let (dOuts, _) = allPaths(Typed<E>(ones), oc)
                    for path in 0..<4 {
                        let e = relErr(dOuts[path], wantDen)
                        halfWorst.note("\(o.opName) \(dn) \(Self.pathNames[path]) denominator", e)
                        XCTAssertLessThanOrEqual(e, tol, "\(dn) denominator \(Self.pathNames[path]) \(o) \(s)")
                    }
                }
                // the float32 states: every path agrees, and equals the state of float32 inputs of the same values
                let f32 = Typed<Float>(p).newState(cfg)
                _ = Typed<Float>(p).forward(cfg, path: 0, final: f32)
                XCTAssertGreaterThan(f32.values.map(abs).max()!, 1e-3)
                for path in 0..<4 {
                    let e = relErr(finals[path].values, f32.values)
                    halfWorst.note("\(o.opName) \(dn) final state vs float32 inputs", e)
                    XCTAssertLessThanOrEqual(e, 1e-5, "\(dn) final state \(Self.pathNames[path]) \(o) \(s)")
                }
            }
        }
    }

    func testBFloat16HLA2() { sweep(BFloat16.self, opHLA2) }
    func testBFloat16AHLA() { sweep(BFloat16.self, opAHLA) }
    func testBFloat16HLA3() { sweep(BFloat16.self, opHLA3) }
    func testFloat16HLA2() { sweep(Float16.self, opHLA2) }
    func testFloat16AHLA() { sweep(Float16.self, opAHLA) }
    func testFloat16HLA3() { sweep(Float16.self, opHLA3) }

    /// Half inputs across a split: a float32 state carries the prefix (forward or steps), summaries of half
    /// inputs combine into the carry-in, and the tail matches the brute force on the whole sequence.
    func continuation<E: Elem>(_ type: E.Type) {
        let tol = Self.tolerance[E.dtype]!
        let s = Shape(B: 2, T: 13, H: 4, Hkv: 2, dk: 5, dv: 3)
        var seed: UInt64 = 47_000
        for op in allOps {
            for o in [Options(op: op, decay: 0.85, chunk: 4), Options(op: op, masked: false, decay: 1, chunk: 3)] {
                seed += 1
                let p = Problem(s, seed: seed).rounded(to: E.dtype)
                let cfg = makeConfig(s, o), t = Typed<E>(p)
                let want = BruteForce.run(p, o)
                for a in [1, 6] {
                    for (p1, p2) in [(0, 2), (1, 0), (2, 1), (3, 0), (0, 3)] {
                        let out = t.outBuf(), st = t.newState(cfg)
                        if p1 == 3 { t.steps(cfg, st, 0, a, into: out) } else { check(t.forward(cfg, path: Int32(p1), 0, a, into: out, final: st), "prefix") }
                        if p2 == 3 { t.steps(cfg, st, a, s.T, into: out) } else {
                            check(t.forward(cfg, path: Int32(p2), a, s.T, into: out, initial: st, final: st), "suffix")
                        }
                        let e = relErr(out.doubles, want)
                        halfWorst.note("\(o.opName) \(dtypeName[E.dtype]!) continuation", e)
                        XCTAssertLessThanOrEqual(e, tol, "\(o) split \(a) paths \(p1)->\(p2)")
                    }
                    // summaries of half inputs: float32 rows, combined, to a carry-in
                    let A = t.summarize(cfg, 0, a), B = t.summarize(cfg, a, 9)
                    XCTAssertEqual(A.dtype, F32)
                    let carry = stateFrom(cfg, combine(cfg, A, B))
                    let out = t.outBuf()
                    check(t.forward(cfg, path: 2, 9, s.T, into: out, initial: carry), "forward from summary carry")
                    let e = relErr(out.doubles, want, p, tokens: 9..<s.T)
                    XCTAssertLessThanOrEqual(e, tol, "\(o) tail from summaries, cut \(a)")
                    let f32 = Typed<Float>(p).summarize(cfg, 0, a)
                    XCTAssertLessThanOrEqual(relErr(A.values, f32.values), 1e-5, "half-input summary vs float32-input summary \(o)")
                }
            }
        }
    }

    func testBFloat16Continuation() { continuation(BFloat16.self) }
    func testFloat16Continuation() { continuation(Float16.self) }

    /// The brute force on the rounded inputs is not the brute force on the unrounded ones (so the tolerances
    /// above measure the engine, not the input rounding), and the outputs are stored in the half type:
    /// elements of the gap between two half values do not occur.
    func testRoundingIsVisible() {
        let s = Shape(B: 1, T: 9, H: 2, Hkv: 1, dk: 5, dv: 3)
        let o = Options(op: opHLA2, decay: 0.9, chunk: 4)
        let p = Problem(s, seed: 4242), cfg = makeConfig(s, o)
        for dtype in [BF16, F16] {
            let pr = p.rounded(to: dtype)
            XCTAssertGreaterThan(relErr(BruteForce.run(pr, o), BruteForce.run(p, o)), dtype == BF16 ? 1e-4 : 1e-5)
            let out: [Double] = dtype == BF16 ? Typed<BFloat16>(pr).forward(cfg, path: 0) : Typed<Float16>(pr).forward(cfg, path: 0)
            for x in out { XCTAssertEqual(x, rounded(x, dtype)) }
            // and a float32 output of the same inputs is finer than the half one
            let o32 = Typed<Float>(pr).forward(cfg, path: 0)
            XCTAssertGreaterThan(relErr(out, o32), 0)
        }
    }

    /// The AVX2/F16C row conversions (Sources/CHLA/half.c) give `Half`'s bits: widening every 16-bit pattern (times
    /// several `mul`, one that overflows), narrowing float32 patterns around every bfloat16 and float16 rounding
    /// boundary (each top-16-bit pattern with low halves at and beside the ties of both types; NaN payloads, subnormals
    /// and overflow included) and random ones; the finiteness flag with one non-finite value at each position of a row.
    func testVectorConversionsMatchHalf() throws {
        try XCTSkipIf(hla_private_use_avx2() == 0, "no AVX2 on this CPU (or HLA_SIMD=portable)")
        let all = (0..<65536).map { UInt16($0) } + [0x3F80, 0x7F80, 1]   // + a 3-element tail
        var got = [Float](repeating: 0, count: all.count)
        for mul: Float in [1, 0.125, 3, 1e30] {
            for bf in [true, false] {
                let finite = bf ? hla_private_widen_bf16(all, &got, all.count, mul) : hla_private_widen_f16(all, &got, all.count, mul)
                var anyBad = false
                for (i, h) in all.enumerated() {
                    let want = (bf ? Half.bf16ToFloat(h) : Half.f16ToFloat(h)) * mul
                    anyBad = anyBad || !want.isFinite
                    if got[i].bitPattern != want.bitPattern {
                        XCTFail("widen \(bf ? "bf16" : "f16") \(h) × \(mul): \(got[i].bitPattern) ≠ \(want.bitPattern)"); return
                    }
                }
                XCTAssertEqual(finite != 0, !anyBad)
            }
        }
        // finiteness: one non-finite value (after mul) at each position of a 37-element row, the rest finite
        for bf in [true, false] {
            for bad: UInt16 in bf ? [0x7F80, 0xFFC1] : [0x7C00, 0xFE01] {
                for pos in 0..<37 {
                    var row = [UInt16](repeating: bf ? 0x3F80 : 0x3C00, count: 37)
                    XCTAssertNotEqual(bf ? hla_private_widen_bf16(row, &got, 37, 2) : hla_private_widen_f16(row, &got, 37, 2), 0)
                    row[pos] = bad
                    XCTAssertEqual(bf ? hla_private_widen_bf16(row, &got, 37, 2) : hla_private_widen_f16(row, &got, 37, 2), 0, "\(bf) \(pos)")
                }
            }
        }
        // narrowing
        var xs: [Float] = []
        let lows: [UInt32] = [0, 1, 0x0FFF, 0x1000, 0x1001, 0x1FFF, 0x2000, 0x7FFF, 0x8000, 0x8001, 0xEFFF, 0xF000, 0xFFFF]
        for hi in 0..<UInt32(65536) { for lo in lows { xs.append(Float(bitPattern: hi << 16 | lo)) } }
        var rng = SplitMix64(seed: 51)
        for _ in 0..<200_000 { xs.append(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))) }
        xs += [1, 2, 3, 4, 5]   // a tail
        var out = [UInt16](repeating: 0, count: xs.count)
        for mul: Float in [1, 0.5] {
            for bf in [true, false] {
                if bf { hla_private_narrow_bf16(xs, &out, xs.count, mul) } else { hla_private_narrow_f16(xs, &out, xs.count, mul) }
                for (i, x) in xs.enumerated() {
                    let want = bf ? Half.floatToBF16(x * mul) : Half.floatToF16(x * mul)
                    if out[i] != want { XCTFail("narrow \(bf ? "bf16" : "f16") \(x.bitPattern) × \(mul): \(out[i]) ≠ \(want)"); return }
                }
            }
        }
    }

    override class func tearDown() {
        halfWorst.report("half precision: worst relative error vs BruteForce (float64 on the rounded inputs)")
        super.tearDown()
    }
}
