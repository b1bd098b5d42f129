// (d) Segments: summaries of A, B, C combined as (A·B)·C and A·(B·C) equal the summary of A∪B∪C, and
// the state made from A·B is the carry-in that makes forward(C) the tail of forward(A∪B∪C). Summaries are
// [N, m] rows of caller memory with int64 lengths.
import CHLA
import XCTest
@testable import HLA

final class SegmentTests: XCTestCase {
    func run<E: Elem>(_ type: E.Type, tol: Double) {
        var worstSummary = 0.0, worstTail = 0.0, seed: UInt64 = 5000
        let s = Shape(B: 2, T: 13, H: 4, Hkv: 2, dk: 5, dv: 3)
        for op in allOps {
            for masked in [true, false] {
                for normalize in [false, true] {
                    for decay in [0.85, 1.0] {
                        for cuts in [(4, 9), (1, 8), (6, 12)] {
                            seed += 1
                            let o = Options(op: op, masked: masked, normalize: normalize, decay: decay,
                                            ridge: op == opHLA2 && normalize ? 0.25 : 0, chunk: 3)
                            let p = Problem(s, seed: seed).roundedToFloat()
                            let cfg = makeConfig(s, o)
                            let t = Typed<E>(p)
                            let A = t.summarize(cfg, 0, cuts.0), B = t.summarize(cfg, cuts.0, cuts.1)
                            let C = t.summarize(cfg, cuts.1, s.T), all = t.summarize(cfg, 0, s.T)
                            let AB = combine(cfg, A, B), BC = combine(cfg, B, C)
                            let left = combine(cfg, AB, C), right = combine(cfg, A, BC)
                            XCTAssertEqual(AB.lengthValues, [cuts.1, cuts.1]); XCTAssertEqual(BC.lengthValues, [s.T - cuts.0, s.T - cuts.0])
                            let want = all.values
                            XCTAssertGreaterThan(want.map(abs).max()!, 0.1)
                            for (name, x) in [("(A·B)·C", left), ("A·(B·C)", right)] {
                                let e = relErr(x.values, want)
                                worstSummary = max(worstSummary, e)
                                XCTAssertLessThanOrEqual(e, tol, "\(name) vs summarize(A∪B∪C) \(o) cuts \(cuts)")
                                XCTAssertEqual(x.lengthValues, [s.T, s.T])
                            }
                            // carry-in from A·B, then forward(C) on every path
                            let full = t.forward(cfg, path: 0)
                            let carry = stateFrom(cfg, AB)
                            let ref = E.self == Float.self && normalize ? Typed<Double>(p).reference(cfg) : []
                            for path in [0, 1, 2] as [Int32] {
                                let out = t.outBuf()
                                check(t.forward(cfg, path: path, cuts.1, s.T, into: out, initial: carry), "forward(C)")
                                // float32 normalized: the quotient's conditioning-aware ratio must be ≤ 1e-5 as in PathParityTests
                                // (scaled by 10 to share the 1e-4 tolerance below)
                                let e = E.self == Float.self && normalize
                                    ? CondBound(p, o).ratio(out.doubles, ref, tokens: cuts.1..<s.T) * 10
                                    : relErr(out.doubles, full, p, tokens: cuts.1..<s.T)
                                worstTail = max(worstTail, e)
                                XCTAssertLessThanOrEqual(e, tol, "forward(C) from A·B path \(path) \(o) cuts \(cuts)")
                            }
                            // the state made from the whole summary is the final state of forward
                            let whole = stateFrom(cfg, right)
                            let fin = t.newState(cfg)
                            _ = t.forward(cfg, path: 1, final: fin)
                            let e = relErr(whole.values, fin.values)
                            XCTAssertLessThanOrEqual(e, tol, "summary_to_state(A·(B·C)) vs final state \(o)")
                            // summary bytes round-trip exactly, lengths included
                            let (r, dcfg, back) = deserialize(serializeSummary(cfg, left), summary: true)
                            check(r, "summary deserialize")
                            XCTAssertEqual(back?.bytes, left.bytes)
                            XCTAssertEqual(back?.lengthValues, left.lengthValues)
                            XCTAssertTrue(sameConfig(dcfg, cfg))
                        }
                    }
                }
            }
        }
        print("segments \(E.self): worst summary difference \(worstSummary), worst tail error \(worstTail)")
    }

    func testSegmentsFloat64() { run(Double.self, tol: 1e-10) }
    func testSegmentsFloat32() { run(Float.self, tol: 1e-4) }

    /// Combining in the wrong order gives a different summary (the combine is not commutative), so the
    /// associativity check above is not vacuous.
    func testCombineIsOrderSensitive() {
        let s = Shape(B: 1, T: 10, H: 2, Hkv: 1, dk: 4, dv: 3)
        for op in allOps {
            let o = Options(op: op, decay: 0.85)
            let cfg = makeConfig(s, o)
            let t = Typed<Double>(Problem(s, seed: 9))
            let A = t.summarize(cfg, 0, 4), B = t.summarize(cfg, 4, 10)
            let ab = combine(cfg, A, B), ba = combine(cfg, B, A)
            XCTAssertGreaterThan(relErr(ba.values, ab.values), 1e-3)
        }
    }

    /// The result of a combine may be the memory of a or of b (documented), with result_lengths = a_lengths,
    /// and int32 lengths are accepted as inputs.
    func testCombineInPlace() {
        let s = Shape(B: 2, T: 10, H: 2, Hkv: 1, dk: 4, dv: 3)
        for op in allOps {
            let cfg = makeConfig(s, Options(op: op, decay: 0.9))
            let t = Typed<Double>(Problem(s, seed: 19))
            let A = t.summarize(cfg, 0, 4), B = t.summarize(cfg, 4, 10)
            let want = combine(cfg, A, B)
            let a1 = A.copy()
            check(cCombine(cfg, a1.tensor, a1.lengthsTensor, B.tensor, B.lengthsTensor, a1.tensor, a1.lengthsTensor), "combine into a")
            XCTAssertEqual(a1.bytes, want.bytes); XCTAssertEqual(a1.lengthValues, [10, 10])
            let b1 = B.copy()
            check(cCombine(cfg, A.tensor, idx([4, 4], I32), b1.tensor, idx([6, 6], I32), b1.tensor, nil), "combine into b")
            XCTAssertEqual(b1.bytes, want.bytes)
            XCTAssertEqual(b1.lengthValues, [6, 6], "result_lengths NULL leaves b's lengths alone")
        }
    }
}
