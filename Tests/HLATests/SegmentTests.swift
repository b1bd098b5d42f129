// (d) Segments: summaries of A, B, C combined as (A·B)·C and A·(B·C) equal the summary of A∪B∪C, and
// the state made from A·B is the carry-in that makes forward(C) the tail of forward(A∪B∪C).
import CHLA
import XCTest
@testable import HLA

final class SegmentTests: XCTestCase {
    func combine(_ a: SegmentHandle, _ b: SegmentHandle) -> SegmentHandle {
        var r: SegmentHandle? = nil
        check(hla_segment_combine(a, b, &r), "hla_segment_combine")
        return r!
    }

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
                            let cfg = makeConfig(s, o, dtype: E.dtype)
                            let t = Typed<E>(p)
                            let A = t.summarize(cfg, 0, cuts.0), B = t.summarize(cfg, cuts.0, cuts.1)
                            let C = t.summarize(cfg, cuts.1, s.T), all = t.summarize(cfg, 0, s.T)
                            let AB = combine(A, B), BC = combine(B, C)
                            let left = combine(AB, C), right = combine(A, BC)
                            let want = payload(serialize(all), dtype: E.dtype)
                            XCTAssertGreaterThan(want.map(abs).max()!, 0.1)
                            for (name, x) in [("(A·B)·C", left), ("A·(B·C)", right)] {
                                let e = relErr(payload(serialize(x), dtype: E.dtype), want)
                                worstSummary = max(worstSummary, e)
                                XCTAssertLessThanOrEqual(e, tol, "\(name) vs summarize(A∪B∪C) \(o) cuts \(cuts)")
                                var n: Int64 = 0
                                check(hla_segment_length(x, &n), "length")
                                XCTAssertEqual(n, Int64(s.T))
                            }
                            // carry-in from A·B, then forward(C) on every path
                            let full = t.forward(cfg, path: 0)
                            var carry: StateHandle? = nil
                            check(hla_state_from_segment(AB, &carry), "hla_state_from_segment")
                            var n: Int64 = 0
                            check(hla_state_tokens(carry, &n), "tokens")
                            XCTAssertEqual(n, Int64(cuts.1))
                            for path in [0, 1, 2] as [Int32] {
                                var out = [E](repeating: .nan, count: p.outCount)
                                check(t.forward(cfg, path: path, cuts.1, s.T, into: &out, initial: carry), "forward(C)")
                                // float32 normalized: the quotient's conditioning-aware ratio must be ≤ 1e-5 as in PathParityTests
                                // (scaled by 10 to share the 1e-4 tolerance below)
                                let e = E.self == Float.self && normalize
                                    ? CondBound(p, o).ratio(out.map { $0.d }, Typed<Double>(p).reference(makeConfig(s, o, dtype: F64)),
                                                           tokens: cuts.1..<s.T) * 10
                                    : relErr(out.map { $0.d }, full, p, tokens: cuts.1..<s.T)
                                worstTail = max(worstTail, e)
                                XCTAssertLessThanOrEqual(e, tol, "forward(C) from A·B path \(path) \(o) cuts \(cuts)")
                            }
                            // the state made from the whole summary is the final state of forward
                            var whole: StateHandle? = nil
                            check(hla_state_from_segment(right, &whole), "from_segment")
                            let fin = newState(cfg)
                            _ = t.forward(cfg, path: 1, final: fin)
                            let e = relErr(payload(serialize(whole!), dtype: E.dtype), payload(serialize(fin), dtype: E.dtype))
                            XCTAssertLessThanOrEqual(e, tol, "state_from_segment(A·(B·C)) vs final state \(o)")
                            // segment bytes round-trip exactly
                            let bytes = serialize(left)
                            var back: SegmentHandle? = nil
                            check(bytes.withUnsafeBytes { hla_segment_deserialize($0.baseAddress, UInt($0.count), &back) }, "deserialize")
                            XCTAssertEqual(serialize(back!), bytes)
                            for x in [A, B, C, all, AB, BC, left, right, back!] { hla_segment_destroy(x) }
                            hla_state_destroy(carry); hla_state_destroy(whole); hla_state_destroy(fin)
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
            let cfg = makeConfig(s, o, dtype: F64)
            let t = Typed<Double>(Problem(s, seed: 9))
            let A = t.summarize(cfg, 0, 4), B = t.summarize(cfg, 4, 10)
            let ab = combine(A, B), ba = combine(B, A)
            XCTAssertGreaterThan(relErr(payload(serialize(ba), dtype: F64), payload(serialize(ab), dtype: F64)), 1e-3)
            for x in [A, B, ab, ba] { hla_segment_destroy(x) }
        }
    }
}
