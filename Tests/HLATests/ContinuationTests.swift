// (c) Continuation: forward(x[:a]) → final state → forward(x[a:], initial) equals forward(x), directly,
// through serialize/deserialize, through hla_state_copy_rows, in place, mixing paths and the step loop; and
// the final state of every path is the same state (caller memory compared numerically).
import CHLA
import XCTest
@testable import HLA

final class ContinuationTests: XCTestCase {
    let shape = Shape(B: 2, T: 13, H: 4, Hkv: 2, dk: 5, dv: 3)

    func cases() -> [Options] {
        var r: [Options] = []
        for op in allOps {
            for masked in [true, false] {
                for decay in [1.0, 0.85] {
                    for normalize in [false, true] {
                        r.append(Options(op: op, masked: masked, normalize: normalize, decay: decay,
                                         ridge: op == opHLA2 && masked && decay < 1 ? 0.25 : 0, chunk: 4))
                    }
                }
            }
        }
        return r
    }

    /// How the carry crosses the split (states are rows of caller memory).
    enum Carry: CaseIterable {
        /// final rows of the prefix are the initial rows of the suffix; the suffix writes other memory
        case direct
        /// serialized, deserialized into fresh memory
        case serialized
        /// copied with hla_state_copy_rows into other rows of a larger state, then used through `rows`
        case copiedRows
        /// prefill in place: initial and final are the same memory
        case inPlace
    }

    func continuation<E: Elem>(_ type: E.Type, tol: Double) {
        var worst = 0.0, seed: UInt64 = 300
        for o in cases() where E.self == Double.self || !o.normalize {
            seed += 1
            let p = E.self == Float.self ? Problem(shape, seed: seed).roundedToFloat() : Problem(shape, seed: seed)
            let cfg = makeConfig(shape, o)
            let t = Typed<E>(p)
            let full = t.forward(cfg, path: 0)
            let ref = Typed<Double>(p).reference(cfg)
            XCTAssertLessThanOrEqual(relErr(full, ref), tol, "full forward \(o)")
            let B = shape.B
            let whole = t.newState(cfg)
            _ = t.forward(cfg, path: 1, final: whole)
            for a in [1, 5, 12] {
                for (p1, p2) in [(0, 0), (1, 2), (2, 1), (0, 1), (2, 0)] as [(Int32, Int32)] {
                    for carry in Carry.allCases {
                        let out = t.outBuf()
                        let st = t.newState(cfg)
                        st.setRow(0, [Double](repeating: .nan, count: st.n))   // final must overwrite, not accumulate
                        check(t.forward(cfg, path: p1, 0, a, into: out, final: st), "prefix")
                        let fin = t.newState(cfg)
                        switch carry {
                        case .direct:
                            check(t.forward(cfg, path: p2, a, shape.T, into: out, initial: st, final: fin), "suffix")
                            // the initial rows are read only
                            let again = t.newState(cfg)
                            check(t.forward(cfg, path: p1, 0, a, into: t.outBuf(), final: again), "prefix again")
                            XCTAssertEqual(st.bytes, again.bytes, "initial modified by the suffix \(o)")
                        case .serialized:
                            let (r, _, d) = deserialize(serializeState(cfg, st), summary: false)
                            check(r, "deserialize")
                            guard let d else { continue }
                            XCTAssertEqual(d.bytes, st.bytes)
                            check(t.forward(cfg, path: p2, a, shape.T, into: out, initial: d, final: fin), "suffix")
                        case .copiedRows:
                            // a cache of 2B + 1 slots: the prefix's rows land in slots 2B, 2B-1, ... (reversed order)
                            let cache = t.newState(cfg, slots: 2 * B + 1)
                            for i in 0..<B { cache.setRow(i, st.row(i)) }
                            let dst = (0..<B).map { 2 * B - $0 }
                            check(cCopyRows(cfg, cache.tensor, idx(Array(0..<B)), idx(dst)), "copy_rows")
                            for i in 0..<B { cache.setRow(i, [Double](repeating: .nan, count: cache.n)) }  // the source is not read again
                            check(t.forward(cfg, path: p2, a, shape.T, into: out, initial: cache, final: cache, rows: dst), "suffix on rows")
                            for i in 0..<B { fin.setRow(i, cache.row(dst[i])) }
                        case .inPlace:
                            check(t.forward(cfg, path: p2, a, shape.T, into: out, initial: st, final: st), "suffix in place")
                            for i in 0..<B { fin.setRow(i, st.row(i)) }
                        }
                        let e = relErr(out.doubles, full)
                        worst = max(worst, e)
                        XCTAssertLessThanOrEqual(e, tol, "\(o) split \(a) paths \(p1)->\(p2) \(carry)")
                        // the state after the suffix is the state after the whole sequence
                        let es = relErr(fin.values, whole.values)
                        XCTAssertLessThanOrEqual(es, tol, "\(o) split \(a) final state \(carry)")
                    }
                }
                // the step loop on either side of the split
                do {
                    let out = t.outBuf()
                    let st = t.newState(cfg)
                    t.steps(cfg, st, 0, a, into: out)
                    check(t.forward(cfg, path: 0, a, shape.T, into: out, initial: st), "forward after steps")
                    let e1 = relErr(out.doubles, full)
                    let out2 = t.outBuf()
                    let st2 = t.newState(cfg)
                    check(t.forward(cfg, path: 2, 0, a, into: out2, final: st2), "forward before steps")
                    t.steps(cfg, st2, a, shape.T, into: out2)
                    let e2 = relErr(out2.doubles, full)
                    worst = max(worst, e1, e2)
                    XCTAssertLessThanOrEqual(e1, tol, "\(o) steps then forward, split \(a)")
                    XCTAssertLessThanOrEqual(e2, tol, "\(o) forward then steps, split \(a)")
                }
            }
        }
        print("continuation \(E.self): worst relative error vs forward(x) \(worst)")
    }

    func testContinuationFloat64() { continuation(Double.self, tol: 1e-10) }
    func testContinuationFloat32() { continuation(Float.self, tol: 1e-4) }

    /// The final states of chunked, serial, scan and the step loop agree element-wise, and a state that
    /// went through serialize → deserialize (or hla_state_copy_rows) is bit-identical.
    func testFinalStatesAgreeAcrossPaths() {
        var worst64 = 0.0, worst32 = 0.0
        for o0 in cases() {
            for (T, chunk) in [(13, 4 as Int64), (13, 1), (64, 0)] {
                var o = o0
                o.chunk = chunk
                let s = Shape(B: 2, T: T, H: 4, Hkv: 2, dk: 5, dv: 3)
                let cfg = makeConfig(s, o)
                for dtype in [F64, F32] {
                    let p = Problem(s, seed: 900 + UInt64(T)).roundedToFloat()
                    var finals: [RowBuf] = []
                    for path in 0..<4 {
                        let st = newState(cfg, dtype: dtype, slots: s.B)
                        if dtype == F64 {
                            let t = Typed<Double>(p)
                            if path < 3 { _ = t.forward(cfg, path: Int32(path), final: st) } else { _ = t.stepAll(cfg, final: st) }
                        } else {
                            let t = Typed<Float>(p)
                            if path < 3 { _ = t.forward(cfg, path: Int32(path), final: st) } else { _ = t.stepAll(cfg, final: st) }
                        }
                        finals.append(st)
                        // round trips are exact
                        let (r, dcfg, d) = deserialize(serializeState(cfg, st), summary: false)
                        check(r, "deserialize")
                        XCTAssertEqual(d?.bytes, st.bytes)
                        XCTAssertEqual(d?.dtype, stateType(dtype))
                        XCTAssertTrue(sameConfig(dcfg, cfg), "deserialized configuration")
                        let two = newState(cfg, dtype: dtype, slots: 2 * s.B)
                        for i in 0..<s.B { two.setRow(i, st.row(i)) }
                        check(cCopyRows(cfg, two.tensor, idx([0, 1]), idx([3, 2])), "copy_rows")
                        XCTAssertEqual(two.rowBytes(3), st.rowBytes(0)); XCTAssertEqual(two.rowBytes(2), st.rowBytes(1))
                    }
                    XCTAssertGreaterThan(finals[0].values.map(abs).max()!, 0.1)
                    for path in 1..<4 {
                        let e = relErr(finals[path].values, finals[0].values)
                        if dtype == F64 { worst64 = max(worst64, e) } else { worst32 = max(worst32, e) }
                        XCTAssertLessThanOrEqual(e, dtype == F64 ? 1e-12 : 1e-5, "final state path \(path) vs chunked \(o) T=\(T)")
                    }
                }
            }
        }
        print("final states across paths: worst relative difference float64 \(worst64), float32 \(worst32)")
    }

    /// hla_state_reset_rows returns a used state to the zero prefix.
    func testResetRestartsTheSequence() {
        for op in allOps {
            let o = Options(op: op, decay: 0.85, chunk: 4)
            let p = Problem(shape, seed: 42)
            let cfg = makeConfig(shape, o)
            let t = Typed<Double>(p)
            let st = t.newState(cfg)
            _ = t.forward(cfg, path: 0, final: st)
            XCTAssertGreaterThan(st.values.map(abs).max()!, 0.1)
            check(cReset(cfg, st.tensor), "reset")
            XCTAssertEqual(st.values, [Double](repeating: 0, count: st.rows * st.n))
            XCTAssertEqual(relErr(t.forward(cfg, path: 1, initial: st), t.forward(cfg, path: 1)), 0)
        }
    }
}
