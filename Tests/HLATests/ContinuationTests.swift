// (c) Continuation: forward(x[:a]) → final state → forward(x[a:], initial) equals forward(x), directly,
// through serialize/deserialize, through clone, mixing paths and the step loop; and the final state of
// every path is the same state (serialized payloads compared numerically).
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

    /// How the carry crosses the split.
    enum Carry: CaseIterable { case direct, serialized, cloned, sameHandle }

    func continuation<E: Elem>(_ type: E.Type, tol: Double) {
        var worst = 0.0, seed: UInt64 = 300
        for o in cases() where E.self == Double.self || !o.normalize {
            seed += 1
            let p = E.self == Float.self ? Problem(shape, seed: seed).roundedToFloat() : Problem(shape, seed: seed)
            let cfg = makeConfig(shape, o, dtype: E.dtype)
            let t = Typed<E>(p)
            let full = t.forward(cfg, path: 0)
            let ref = Typed<Double>(p).reference(makeConfig(shape, o, dtype: F64))
            XCTAssertLessThanOrEqual(relErr(full, ref), tol, "full forward \(o)")
            for a in [1, 5, 12] {
                for (p1, p2) in [(0, 0), (1, 2), (2, 1), (0, 1), (2, 0)] as [(Int32, Int32)] {
                    for carry in Carry.allCases {
                        var out = [E](repeating: .nan, count: p.outCount)
                        let st = newState(cfg)
                        check(t.forward(cfg, path: p1, 0, a, into: &out, final: st), "prefix")
                        var tokens: Int64 = -1
                        check(hla_state_tokens(st, &tokens), "tokens")
                        XCTAssertEqual(tokens, Int64(a))
                        var next: StateHandle
                        switch carry {
                        case .direct, .sameHandle:
                            next = st
                        case .serialized:
                            let bytes = serialize(st)
                            var d: StateHandle? = nil
                            check(bytes.withUnsafeBytes { hla_state_deserialize($0.baseAddress, UInt($0.count), &d) }, "deserialize")
                            next = d!
                            hla_state_destroy(st)
                        case .cloned:
                            var c: StateHandle? = nil
                            check(hla_state_clone(st, &c), "clone")
                            hla_state_destroy(st)   // the clone must not depend on the original
                            next = c!
                        }
                        let fin = newState(cfg)
                        check(t.forward(cfg, path: p2, a, shape.T, into: &out, initial: next,
                                        final: carry == .sameHandle ? next : fin), "suffix")
                        let e = relErr(out.map { $0.d }, full)
                        worst = max(worst, e)
                        XCTAssertLessThanOrEqual(e, tol, "\(o) split \(a) paths \(p1)->\(p2) \(carry)")
                        // the state after the suffix counts every token
                        check(hla_state_tokens(carry == .sameHandle ? next : fin, &tokens), "tokens")
                        XCTAssertEqual(tokens, Int64(shape.T))
                        hla_state_destroy(next); hla_state_destroy(fin)
                    }
                }
                // the step loop on either side of the split
                do {
                    var out = [E](repeating: .nan, count: p.outCount)
                    let st = newState(cfg)
                    t.steps(st, 0, a, into: &out)
                    check(t.forward(cfg, path: 0, a, shape.T, into: &out, initial: st), "forward after steps")
                    let e1 = relErr(out.map { $0.d }, full)
                    var out2 = [E](repeating: .nan, count: p.outCount)
                    let st2 = newState(cfg)
                    check(t.forward(cfg, path: 2, 0, a, into: &out2, final: st2), "forward before steps")
                    t.steps(st2, a, shape.T, into: &out2)
                    let e2 = relErr(out2.map { $0.d }, full)
                    worst = max(worst, e1, e2)
                    XCTAssertLessThanOrEqual(e1, tol, "\(o) steps then forward, split \(a)")
                    XCTAssertLessThanOrEqual(e2, tol, "\(o) forward then steps, split \(a)")
                    hla_state_destroy(st); hla_state_destroy(st2)
                }
            }
        }
        print("continuation \(E.self): worst relative error vs forward(x) \(worst)")
    }

    func testContinuationFloat64() { continuation(Double.self, tol: 1e-10) }
    func testContinuationFloat32() { continuation(Float.self, tol: 1e-4) }

    /// The final states of chunked, serial, scan and the step loop agree element-wise, and a state that
    /// went through serialize → deserialize (or clone) is bit-identical.
    func testFinalStatesAgreeAcrossPaths() {
        var worst64 = 0.0, worst32 = 0.0
        for o0 in cases() {
            for (T, chunk) in [(13, 4 as Int64), (13, 1), (64, 0)] {
                var o = o0
                o.chunk = chunk
                let s = Shape(B: 2, T: T, H: 4, Hkv: 2, dk: 5, dv: 3)
                for dtype in [F64, F32] {
                    let p = Problem(s, seed: 900 + UInt64(T)).roundedToFloat()
                    let cfg = makeConfig(s, o, dtype: dtype)
                    var payloads: [[Double]] = []
                    for path in 0..<4 {
                        let st = newState(cfg)
                        if dtype == F64 {
                            let t = Typed<Double>(p)
                            if path < 3 { _ = t.forward(cfg, path: Int32(path), final: st) } else { var out = [Double](repeating: 0, count: p.outCount); t.steps(st, 0, T, into: &out) }
                        } else {
                            let t = Typed<Float>(p)
                            if path < 3 { _ = t.forward(cfg, path: Int32(path), final: st) } else { var out = [Float](repeating: 0, count: p.outCount); t.steps(st, 0, T, into: &out) }
                        }
                        let bytes = serialize(st)
                        payloads.append(payload(bytes, dtype: dtype))
                        // round trips are exact
                        var d: StateHandle? = nil, c: StateHandle? = nil
                        check(bytes.withUnsafeBytes { hla_state_deserialize($0.baseAddress, UInt($0.count), &d) }, "deserialize")
                        check(hla_state_clone(st, &c), "clone")
                        XCTAssertEqual(serialize(d!), bytes)
                        XCTAssertEqual(serialize(c!), bytes)
                        hla_state_destroy(d); hla_state_destroy(c); hla_state_destroy(st)
                    }
                    XCTAssertGreaterThan(payloads[0].map(abs).max()!, 0.1)
                    for path in 1..<4 {
                        let e = relErr(payloads[path], payloads[0])
                        if dtype == F64 { worst64 = max(worst64, e) } else { worst32 = max(worst32, e) }
                        XCTAssertLessThanOrEqual(e, dtype == F64 ? 1e-12 : 1e-5, "final state path \(path) vs chunked \(o) T=\(T)")
                    }
                }
            }
        }
        print("final states across paths: worst relative difference float64 \(worst64), float32 \(worst32)")
    }

    /// hla_state_reset returns a used state to the zero prefix.
    func testResetRestartsTheSequence() {
        for op in allOps {
            let o = Options(op: op, decay: 0.85, chunk: 4)
            let p = Problem(shape, seed: 42)
            let cfg = makeConfig(shape, o, dtype: F64)
            let t = Typed<Double>(p)
            let st = newState(cfg)
            _ = t.forward(cfg, path: 0, final: st)
            check(hla_state_reset(st), "reset")
            var n: Int64 = -1
            check(hla_state_tokens(st, &n), "tokens")
            XCTAssertEqual(n, 0)
            XCTAssertEqual(relErr(t.forward(cfg, path: 1, initial: st), t.forward(cfg, path: 1)), 0)
            hla_state_destroy(st)
        }
    }
}
