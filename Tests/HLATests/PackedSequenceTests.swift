// Packed variable-length batches (SPEC §8): q, k, v of B = 1 holding N sequences back to back, delimited by
// cu_seqlens (N + 1 offsets, int64 or int32). Every path, hla_reference and hla_summarize on the packed batch
// equal each sequence run alone (outputs, final states, summaries and their lengths), also from initial states
// and through state rows.
import CHLA
import XCTest
@testable import HLA

let packedWorst = Worst()

final class PackedSequenceTests: XCTestCase {
    /// Lengths: a single token, one shorter than a chunk, one crossing automatic chunks (32), odd ones.
    static let lengths = [5, 1, 13, 40, 8]

    func cases() -> [Options] {
        var r: [Options] = []
        for op in allOps {
            r.append(Options(op: op, decay: 0.85, chunk: 4))
            r.append(Options(op: op, masked: false, normalize: true, decay: 1, chunk: 0))
            r.append(Options(op: op, masked: true, normalize: true, decay: 0.9, ridge: op == opHLA2 ? 0.25 : 0, chunk: 3))
        }
        return r
    }

    func run<E: Elem>(_ type: E.Type, tol: Double, outTol: Double? = nil, cuType: Int32) {
        let base = Shape(B: 1, T: 1, H: 4, Hkv: 2, dk: 5, dv: 3)
        var seed: UInt64 = 60_000
        for o in cases() {
            seed += 1
            let alone: [Problem] = Self.lengths.enumerated().map { i, T in
                var s = base
                s.T = T
                return Problem(s, seed: seed * 31 + UInt64(i)).rounded(to: E.dtype)
            }
            let (packed, cu) = Problem.pack(alone)
            let N = alone.count
            let cfg = makeConfig(packed.s, o)
            let tp = Typed<E>(packed)
            let cuT = { idx(cu, cuType) }
            // initial states: the final state of a random prefix of each sequence (a reachable state: the
            // paths rely on its structure, e.g. symmetric key moments), placed in rows of a larger cache out of order
            let initial = tp.newState(cfg, slots: N)
            for i in 0..<N {
                var ps = base
                ps.T = 2 + i
                let pre = Typed<E>(Problem(ps, seed: seed * 77 + UInt64(i)).rounded(to: E.dtype)), st = pre.newState(cfg)
                _ = pre.forward(cfg, path: 1, final: st)
                initial.setRow(i, st.row(0))
            }
            let slots = N + 3
            let rowsOf = [6, 0, 3, 7, 1]   // distinct rows of 8, out of order
            XCTAssertEqual(Set(rowsOf).count, N)
            var f0Serial: [Double] = []
            for path in 0..<3 as Range<Int32> {
                // each sequence alone on this path: outputs (from zero and from its initial row) and final states
                var want0: [[Double]] = [], wantI: [[Double]] = [], finals0: [RowBuf] = [], finalsI: [RowBuf] = []
                for (i, p) in alone.enumerated() {
                    let t = Typed<E>(p)
                    let f0 = t.newState(cfg), fI = t.newState(cfg), ini = t.newState(cfg)
                    ini.setRow(0, initial.row(i))
                    want0.append(t.forward(cfg, path: path, final: f0))
                    wantI.append(t.forward(cfg, path: path, initial: ini, final: fI))
                    finals0.append(f0); finalsI.append(fI)
                    if E.self == Double.self && path == 0 {
                        XCTAssertLessThanOrEqual(relErr(want0[i], BruteForce.run(p, o)), 1e-10, "sequence \(i) alone vs brute force \(o)")
                    }
                }
                let w0 = want0.flatMap { $0 }, wI = wantI.flatMap { $0 }
                let f0 = finals0.flatMap { $0.row(0) }, fI = finalsI.flatMap { $0.row(0) }
                XCTAssertGreaterThan(f0.map(abs).max()!, 1e-3)
                if path == 1 { f0Serial = f0 }
                // from the zero prefix, with final states
                let out = tp.outBuf(), fin = tp.newState(cfg, slots: N)
                fin.setRow(0, [Double](repeating: .nan, count: fin.n))
                check(cForward(cfg, path, tp.qT(), tp.kT(), tp.vT(), tp.oT(out), cu: cuT(), final: fin.tensor), "packed forward path \(path)")
                var e = relErr(out.doubles, w0)
                packedWorst.note("\(dtypeName[E.dtype]!) outputs", e)
                XCTAssertLessThanOrEqual(e, outTol ?? tol, "packed outputs path \(path) \(o)")
                e = relErr(fin.values, f0)
                packedWorst.note("\(dtypeName[E.dtype]!) final states", e)
                XCTAssertLessThanOrEqual(e, tol, "packed final states path \(path) \(o)")
                // from initial states, prefilled in place through rows of a larger cache
                let cache = RowBuf(dtype: initial.dtype, rows: slots, n: initial.n, fill: sentinel)
                for i in 0..<N { cache.setRow(rowsOf[i], initial.row(i)) }
                let out2 = tp.outBuf()
                check(cForward(cfg, path, tp.qT(), tp.kT(), tp.vT(), tp.oT(out2), cu: cuT(), initial: cache.tensor, final: cache.tensor,
                               rows: idx(rowsOf, cuType)), "packed prefill on rows path \(path)")
                e = relErr(out2.doubles, wI)
                packedWorst.note("\(dtypeName[E.dtype]!) outputs from initial rows", e)
                XCTAssertLessThanOrEqual(e, outTol ?? tol, "packed outputs from initial rows path \(path) \(o)")
                e = relErr(cache.rows(rowsOf), fI)
                packedWorst.note("\(dtypeName[E.dtype]!) final rows", e)
                XCTAssertLessThanOrEqual(e, tol, "packed final rows path \(path) \(o)")
                for r in 0..<slots where !rowsOf.contains(r) {
                    XCTAssertTrue(cache.row(r).allSatisfy { $0 == sentinel }, "row \(r) not in rows was written")
                }
            }
            // hla_reference with cu_seqlens equals hla_reference of each sequence alone
            let w0 = alone.flatMap { Typed<E>($0).reference(cfg) }
            let ref = tp.outBuf()
            check(cReference(cfg, tp.qT(), tp.kT(), tp.vT(), tp.oT(ref), cu: cuT()), "packed reference")
            XCTAssertLessThanOrEqual(relErr(ref.doubles, w0), outTol ?? tol, "packed reference \(o)")
            // summaries: one row per packed sequence, equal to each sequence summarized alone, with its length
            let sm = newSummary(cfg, dtype: E.dtype, rows: N)
            check(cSummarize(cfg, tp.qT(), tp.kT(), tp.vT(), cu: cuT(), summary: sm.tensor, lengths: sm.lengthsTensor), "packed summarize")
            XCTAssertEqual(sm.lengthValues, Self.lengths)
            let smAlone = alone.flatMap { Typed<E>($0).summarize(cfg, 0, $0.s.T).row(0) }
            let e = relErr(sm.values, smAlone)
            packedWorst.note("\(dtypeName[E.dtype]!) summaries", e)
            XCTAssertLessThanOrEqual(e, tol, "packed summaries \(o)")
            // and their states are the final states
            XCTAssertLessThanOrEqual(relErr(stateFrom(cfg, sm).values, f0Serial), E.self == Double.self ? 1e-10 : 1e-4, "summary_to_state of packed \(o)")
        }
    }

    func testPackedFloat64() { run(Double.self, tol: 1e-12, cuType: I64) }
    func testPackedFloat32Int32Offsets() { run(Float.self, tol: 1e-5, cuType: I32) }
    /// bfloat16: states and summaries are float32 (1e-5); outputs are rounded to bfloat16, where a last-bit
    /// difference of the float32 accumulation may flip one rounding, so they get the bfloat16 tolerance.
    func testPackedBFloat16() { run(BFloat16.self, tol: 1e-5, outTol: 1e-2, cuType: I64) }

    /// A packed batch is not the unpacked concatenation: without cu_seqlens the later sequences see the earlier
    /// ones (so the comparisons above are not vacuous), and cu_seqlens [0, T] is the plain batch of one.
    func testPackingMatters() {
        let s = Shape(B: 1, T: 12, H: 2, Hkv: 1, dk: 4, dv: 3)
        for op in allOps {
            let cfg = makeConfig(s, Options(op: op, decay: 0.9))
            let t = Typed<Double>(Problem(s, seed: 61))
            let plain = t.forward(cfg, path: 0)
            let out = t.outBuf()
            check(cForward(cfg, 0, t.qT(), t.kT(), t.vT(), t.oT(out), cu: idx([0, 5, 12])), "packed")
            XCTAssertEqual(relErr(out.doubles, plain, t.p, tokens: 0..<5), 0)
            XCTAssertGreaterThan(relErr(out.doubles, plain, t.p, tokens: 5..<12), 1e-3)
            let one = t.outBuf()
            check(cForward(cfg, 0, t.qT(), t.kT(), t.vT(), t.oT(one), cu: idx([0, 12])), "cu [0, T]")
            XCTAssertEqual(one.doubles, plain)
        }
    }

    override class func tearDown() {
        packedWorst.report("packed sequences: worst relative difference vs each sequence alone")
        super.tearDown()
    }
}
