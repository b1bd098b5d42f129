// Tensors read through arbitrary element strides ([B, H, T, D] views, padded rows, a fused QKV buffer,
// a time-reversed view, a broadcast key) give the same outputs as contiguous copies; distinct states on distinct threads.
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
                let cfg = makeConfig(s, o)
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
                let qs = [s.H * s.T * dkp, dkp, s.T * dkp, 1]
                let ks = [s.T * s.Hkv * kvw, s.Hkv * kvw, kvw, 1]
                // output [B, H, T, dv] with every feature 2 apart
                let os = [s.H * s.T * s.dv * 2, s.dv * 2, s.T * s.dv * 2, 2]
                let qb = Buf(q), kvb = Buf(kv)
                let qt = tensor(qb, F64, [s.B, s.T, s.H, s.dk], strides: qs)
                let kt = tensor(kvb, F64, [s.B, s.T, s.Hkv, s.dk], strides: ks)
                let vt = tensor(kvb, F64, [s.B, s.T, s.Hkv, s.dv], strides: ks, offset: s.dk)
                for path in [0, 1, 2] as [Int32] {
                    let out = Buf<Double>(s.B * s.H * s.T * s.dv * 2, fill: .nan)
                    check(cForward(cfg, path, qt, kt, vt, tensor(out, F64, [s.B, s.T, s.H, s.dv], strides: os)), "strided forward")
                    var got = [Double](repeating: 0, count: p.outCount)
                    for b in 0..<s.B { for t in 0..<s.T { for h in 0..<s.H { for x in 0..<s.dv {
                        got[p.oi(b, t, h, x)] = out[((b * s.H + h) * s.T + t) * s.dv * 2 + 2 * x]
                        // the gaps between output features are not written
                        XCTAssertTrue(out[((b * s.H + h) * s.T + t) * s.dv * 2 + 2 * x + 1].isNaN)
                    } } } }
                    XCTAssertLessThanOrEqual(relErr(got, want), 1e-10, "path \(path) \(o)")
                }
                // a step reading the same strided storage (token 4 of every sequence, state in caller memory)
                do {
                    let st = newState(cfg, dtype: F64, slots: s.B)
                    let stepOut = Buf<Double>(s.B * s.H * s.dv * 2, fill: .nan)
                    for t in 0...4 {
                        check(cStep(cfg, tensor(qb, F64, [s.B, s.H, s.dk], strides: [qs[0], qs[2], 1], offset: t * dkp),
                                    tensor(kvb, F64, [s.B, s.Hkv, s.dk], strides: [ks[0], ks[2], 1], offset: t * ks[1]),
                                    tensor(kvb, F64, [s.B, s.Hkv, s.dv], strides: [ks[0], ks[2], 1], offset: t * ks[1] + s.dk),
                                    tensor(stepOut, F64, [s.B, s.H, s.dv], strides: [s.H * s.dv * 2, s.dv * 2, 2]), state: st.tensor), "strided step")
                    }
                    var got = [Double](), ref = [Double]()
                    for b in 0..<s.B { for h in 0..<s.H { for x in 0..<s.dv {
                        got.append(stepOut[(b * s.H + h) * s.dv * 2 + 2 * x]); ref.append(want[p.oi(b, 4, h, x)])
                    } } }
                    XCTAssertLessThanOrEqual(relErr(got, ref), 1e-10, "strided step \(o)")
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
                let t = Typed<Double>(p)
                let out = t.outBuf()
                let neg = { (x: [Int]) in [x[0], -x[1], x[2], x[3]] }
                let T = s.T
                check(cForward(cfg, 0, tensor(t.q, F64, [s.B, T, s.H, s.dk], strides: neg(p.qStrides), offset: (T - 1) * s.H * s.dk),
                               tensor(t.k, F64, [s.B, T, s.Hkv, s.dk], strides: neg(p.kStrides), offset: (T - 1) * s.Hkv * s.dk),
                               tensor(t.v, F64, [s.B, T, s.Hkv, s.dv], strides: neg(p.vStrides), offset: (T - 1) * s.Hkv * s.dv),
                               t.oT(out)), "reversed view")
                XCTAssertLessThanOrEqual(relErr(out.doubles, wantRev), 1e-10, "reversed \(o)")
                // a zero stride broadcasts one key over every kv head (read-only inputs may alias)
                var bc = p
                for b in 0..<s.B { for tt in 0..<s.T { for g in 0..<s.Hkv { for a in 0..<s.dk {
                    bc.k[((b * s.T + tt) * s.Hkv + g) * s.dk + a] = p.kv(b, tt, 0, a)
                } } } }
                let wantBC = Typed<Double>(bc).reference(cfg)
                let out2 = t.outBuf()
                var ks0 = p.kStrides
                ks0[2] = 0
                check(cForward(cfg, 0, t.qT(), tensor(t.k, F64, [s.B, T, s.Hkv, s.dk], strides: ks0), t.vT(), t.oT(out2)), "broadcast k")
                XCTAssertLessThanOrEqual(relErr(out2.doubles, wantBC), 1e-10, "broadcast \(o)")
            }
        }
    }

    /// Distinct states and calls on distinct threads at once give the single-threaded results.
    func testDistinctStatesOnDistinctThreads() {
        let s = Shape(B: 2, T: 40, H: 4, Hkv: 2, dk: 5, dv: 3)
        let jobs = 8
        let problems = (0..<jobs).map { Problem(s, seed: 700 + UInt64($0)) }
        let opts = (0..<jobs).map { Options(op: allOps[$0 % 3], decay: 0.9, chunk: 8) }
        let want: [[Double]] = (0..<jobs).map { Typed<Double>(problems[$0]).reference(makeConfig(s, opts[$0])) }
        let results = Worst()
        DispatchQueue.concurrentPerform(iterations: jobs) { j in
            let cfg = makeConfig(s, opts[j])
            let t = Typed<Double>(problems[j])
            let st = t.newState(cfg)
            let out = t.outBuf()
            _ = t.forward(cfg, path: Int32(j % 3), 0, 20, into: out, final: st)
            t.steps(cfg, st, 20, 30, into: out)
            _ = t.forward(cfg, path: Int32((j + 1) % 3), 30, 40, into: out, initial: st)
            results.note("\(j)", relErr(out.doubles, want[j]))
        }
        for j in 0..<jobs { XCTAssertLessThanOrEqual(results.value("\(j)") ?? .infinity, 1e-10, "job \(j) \(opts[j])") }
    }

    /// Distinct rows of one shared cache are distinct memory: threads stepping and prefilling their own rows at
    /// once (bfloat16 and float32 inputs, float32 cache) give the single-threaded results.
    func testDistinctRowsOfOneCacheOnDistinctThreads() {
        let s = Shape(B: 1, T: 24, H: 4, Hkv: 2, dk: 5, dv: 3)
        let jobs = 6
        let cfg = makeConfig(s, Options(op: opHLA3, decay: 0.95, chunk: 8))
        let problems = (0..<jobs).map { Problem(s, seed: 800 + UInt64($0)).rounded(to: BF16) }
        let want = (0..<jobs).map { j -> [Double] in
            j % 2 == 0 ? Typed<BFloat16>(problems[j]).forward(cfg, path: 1) : Typed<Float>(problems[j]).forward(cfg, path: 1)
        }
        let cache = RowBuf(dtype: F32, rows: 2 * jobs, n: stateElements(cfg), fill: sentinel)
        let results = Worst()
        @Sendable func work<E: Elem>(_ t: Typed<E>, _ j: Int) -> [Double] {
            let row = 2 * jobs - 1 - 2 * j
            check(cReset(cfg, cache.tensor, rows: idx([row])), "reset own row")
            let out = t.outBuf()
            _ = t.forward(cfg, path: Int32(j % 3), 0, 10, into: out, initial: cache, final: cache, rows: [row])
            t.steps(cfg, cache, 10, 18, into: out, rows: [row])
            _ = t.forward(cfg, path: Int32((j + 1) % 3), 18, 24, into: out, initial: cache, final: cache, rows: [row])
            return out.doubles
        }
        DispatchQueue.concurrentPerform(iterations: jobs) { j in
            let out = j % 2 == 0 ? work(Typed<BFloat16>(problems[j]), j) : work(Typed<Float>(problems[j]), j)
            results.note("\(j)", relErr(out, want[j]))
        }
        for j in 0..<jobs { XCTAssertLessThanOrEqual(results.value("\(j)") ?? .infinity, j % 2 == 0 ? 1e-2 : 1e-4, "job \(j)") }
        for r in stride(from: 0, to: 2 * jobs, by: 2) { XCTAssertTrue(cache.row(r).allSatisfy { $0 == sentinel }, "row \(r) touched") }
    }
}
