// Tensors read through arbitrary element strides ([B, H, T, D] views, padded rows, a fused QKV buffer,
// a time-reversed view) give the same outputs as contiguous copies; distinct handles on distinct threads.
import CHLA
import Dispatch
import XCTest
@testable import HLA

final class StrideAndThreadTests: XCTestCase {
    /// Every path on a strided layout equals the contiguous run of the same logical tensors.
    func testStridedLayouts() {
        let s = Shape(B: 2, T: 9, H: 4, Hkv: 2, dk: 5, dv: 3)
        let p = Problem(s, seed: 31)
        for op in allOps {
            for masked in [true, false] {
                let o = Options(op: op, masked: masked, normalize: op == opAHLA, decay: 0.9, chunk: 4)
                let cfg = makeConfig(s, o, dtype: F64)
                let want = Typed<Double>(p).reference(cfg)
                // [B, H, T, D] storage for q (dk padded to 7), one fused buffer for k and v per token:
                // [B, T, Hkv, dk + dv] with k in the first dk features and v after them
                let dkp = 7, kvw = s.dk + s.dv
                var q = [Double](repeating: .nan, count: s.B * s.H * s.T * dkp)
                var kv = [Double](repeating: .nan, count: s.B * s.T * s.Hkv * kvw)
                for b in 0..<s.B { for t in 0..<s.T {
                    for h in 0..<s.H { for a in 0..<s.dk { q[((b * s.H + h) * s.T + t) * dkp + a] = p.qv(b, t, h, a) } }
                    for g in 0..<s.Hkv {
                        for a in 0..<s.dk { kv[((b * s.T + t) * s.Hkv + g) * kvw + a] = p.kv(b, t, g, a) }
                        for x in 0..<s.dv { kv[((b * s.T + t) * s.Hkv + g) * kvw + s.dk + x] = p.vv(b, t, g, x) }
                    }
                } }
                let qs: [Int64] = [Int64(s.H * s.T * dkp), Int64(dkp), Int64(s.T * dkp), 1]
                let ks: [Int64] = [Int64(s.T * s.Hkv * kvw), Int64(s.Hkv * kvw), Int64(kvw), 1]
                // output [B, H, T, dv] with every feature 2 apart
                let os: [Int64] = [Int64(s.H * s.T * s.dv * 2), Int64(s.dv * 2), Int64(s.T * s.dv * 2), 2]
                for path in [0, 1, 2] as [Int32] {
                    var c = cfg
                    var out = [Double](repeating: .nan, count: s.B * s.H * s.T * s.dv * 2)
                    let st = q.withUnsafeBytes { qb in kv.withUnsafeBytes { kb in out.withUnsafeMutableBytes { ob in
                        hla_forward(&c, Int64(s.T), path, qb.baseAddress, qs, kb.baseAddress, ks,
                                    kb.baseAddress! + s.dk * 8, ks, ob.baseAddress, os, nil, nil)
                    } } }
                    check(st, "strided forward")
                    var got = [Double](repeating: 0, count: p.outCount)
                    for b in 0..<s.B { for t in 0..<s.T { for h in 0..<s.H { for x in 0..<s.dv {
                        got[p.oi(b, t, h, x)] = out[((b * s.H + h) * s.T + t) * s.dv * 2 + 2 * x]
                    } } } }
                    XCTAssertLessThanOrEqual(relErr(got, want), 1e-10, "path \(path) \(o)")
                }
                // a time-reversed view (negative T stride) is the reversed sequence
                var rev = p
                for b in 0..<s.B { for t in 0..<s.T {
                    for h in 0..<s.H { for a in 0..<s.dk { rev.q[((b * s.T + t) * s.H + h) * s.dk + a] = p.qv(b, s.T - 1 - t, h, a) } }
                    for g in 0..<s.Hkv {
                        for a in 0..<s.dk { rev.k[((b * s.T + t) * s.Hkv + g) * s.dk + a] = p.kv(b, s.T - 1 - t, g, a) }
                        for x in 0..<s.dv { rev.v[((b * s.T + t) * s.Hkv + g) * s.dv + x] = p.vv(b, s.T - 1 - t, g, x) }
                    }
                } }
                let wantRev = Typed<Double>(rev).reference(cfg)
                var c = cfg
                var out = [Double](repeating: .nan, count: p.outCount)
                let t = Typed<Double>(p)
                let neg = { (x: [Int64]) in [x[0], -x[1], x[2], x[3]] }
                let st = t.withInputs(at: s.T - 1) { qp, kp, vp in out.withUnsafeMutableBufferPointer { ob in
                    hla_forward(&c, Int64(s.T), 0, qp, neg(p.qStrides), kp, neg(p.kStrides), vp, neg(p.vStrides),
                                ob.baseAddress!, p.oStrides, nil, nil)
                } }
                check(st, "reversed view")
                XCTAssertLessThanOrEqual(relErr(out, wantRev), 1e-10, "reversed \(o)")
            }
        }
    }

    /// Distinct states and calls on distinct threads at once give the single-threaded results.
    func testDistinctHandlesOnDistinctThreads() {
        let s = Shape(B: 2, T: 40, H: 4, Hkv: 2, dk: 5, dv: 3)
        let jobs = 8
        let problems = (0..<jobs).map { Problem(s, seed: 700 + UInt64($0)) }
        let opts = (0..<jobs).map { Options(op: allOps[$0 % 3], decay: 0.9, chunk: 8) }
        let want: [[Double]] = (0..<jobs).map { Typed<Double>(problems[$0]).reference(makeConfig(s, opts[$0], dtype: F64)) }
        let results = Worst()
        DispatchQueue.concurrentPerform(iterations: jobs) { j in
            let cfg = makeConfig(s, opts[j], dtype: F64)
            let t = Typed<Double>(problems[j])
            let st = newState(cfg)
            var out = [Double](repeating: .nan, count: problems[j].outCount)
            _ = t.forward(cfg, path: Int32(j % 3), 0, 20, into: &out, final: st)
            t.steps(st, 20, 30, into: &out)
            _ = t.forward(cfg, path: Int32((j + 1) % 3), 30, 40, into: &out, initial: st)
            hla_state_destroy(st)
            results.note("\(j)", relErr(out, want[j]))
        }
        for j in 0..<jobs { XCTAssertLessThanOrEqual(results.value("\(j)") ?? .infinity, 1e-10, "job \(j) \(opts[j])") }
    }
}
