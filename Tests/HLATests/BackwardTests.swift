// hla_backward (docs/gradients.md) against central finite differences of hla_forward (chunked path, float64):
// a reference that shares nothing with the derivation. L = <d_out, o> + <d_final, final state>; for q, k, v and
// the initial state, directional derivatives along random directions (for the state: the difference of two
// valid states, so the symmetric blocks stay symmetric) are compared with <gradient, direction>.
// Also: bad input returns a status and writes nothing.
import CHLA
import XCTest
@testable import HLA

func cBackward(_ cfg: hla_config?, _ path: Int32, _ q: Tn?, _ k: Tn?, _ v: Tn?, _ dOut: Tn?, _ dq: Tn?, _ dk: Tn?,
               _ dv: Tn?, cu: Tn? = nil, initial: Tn? = nil, dFinal: Tn? = nil, dInitial: Tn? = nil) -> hla_status {
    guard var c = cfg else {
        return hla_backward(nil, path, q?.p, k?.p, v?.p, dOut?.p, dq?.p, dk?.p, dv?.p, cu?.p, initial?.p, dFinal?.p, dInitial?.p)
    }
    return hla_backward(&c, path, q?.p, k?.p, v?.p, dOut?.p, dq?.p, dk?.p, dv?.p, cu?.p, initial?.p, dFinal?.p, dInitial?.p)
}

/// A float32 or float64 array in caller memory (values as Double), for bit-for-bit comparisons.
final class Flat: @unchecked Sendable {
    let rb: RowBuf
    init(count: Int, _ dtype: Int32) { rb = RowBuf(dtype: dtype, rows: 1, n: count, fill: .nan) }
    convenience init(_ v: [Double], _ dtype: Int32) {
        self.init(count: v.count, dtype)
        for i in 0..<v.count { rb[i] = v[i] }
    }
    var values: [Double] { rb.values }
    func tensor(_ shape: [Int]) -> Tn { Tn(rb.mem.raw, rb.dtype, shape, owner: rb) }
}

final class BackwardTests: XCTestCase {
    let s = Shape(B: 2, T: 9, H: 4, Hkv: 2, dk: 3, dv: 2)

    func cases() -> [Options] {
        var r: [Options] = []
        for op in allOps {
            for masked in [true, false] {
                for normalize in [false, true] {
                    r.append(Options(op: op, masked: masked, normalize: normalize, decay: 0.85,
                                     ridge: op == opHLA2 ? 0.3 : 0, chunk: 4))
                }
            }
        }
        return r
    }

    /// Final state of a random prefix of 3 tokens (a valid state).
    func prefixState(_ cfg: hla_config, seed: UInt64) -> [Double] {
        var ps = s; ps.T = 3
        let p = Typed<Double>(Problem(ps, seed: seed))
        let st = newState(cfg, dtype: F64, slots: s.B)
        let out = p.outBuf()
        check(cForward(cfg, HLA_PATH_CHUNKED.rawValue.asInt32, p.qT(), p.kT(), p.vT(), p.oT(out), final: st.tensor), "prefix")
        return st.values
    }

    func loss(_ cfg: hla_config, _ q: [Double], _ k: [Double], _ v: [Double], _ ini: [Double],
              _ dO: [Double], _ dFin: [Double]) -> Double {
        let qb = Buf(q), kb = Buf(k), vb = Buf(v), ob = Buf<Double>(dO.count, fill: .nan)
        let n = ini.count / s.B
        let ib = RowBuf(dtype: F64, rows: s.B, n: n), fb = RowBuf(dtype: F64, rows: s.B, n: n)
        for i in 0..<ini.count { ib[i] = ini[i] }
        check(cForward(cfg, HLA_PATH_CHUNKED.rawValue.asInt32, tensor(qb, F64, [s.B, s.T, s.H, s.dk]),
                       tensor(kb, F64, [s.B, s.T, s.Hkv, s.dk]), tensor(vb, F64, [s.B, s.T, s.Hkv, s.dv]),
                       tensor(ob, F64, [s.B, s.T, s.H, s.dv]), initial: ib.tensor, final: fb.tensor), "forward")
        var l = 0.0
        for i in 0..<dO.count { l += dO[i] * ob[i] }
        for i in 0..<dFin.count { l += dFin[i] * fb[i] }
        return l
    }

    func testFiniteDifferences() {
        var worst = 0.0, seed: UInt64 = 900
        for o in cases() {
            let cfg = makeConfig(s, o)
            seed += 1
            var r = SplitMix64(seed: seed)
            let p = Problem(s, seed: seed)
            var q = p.q, k = p.k
            if o.normalize { q = q.map { abs($0) }; k = k.map { abs($0) } }   // well-conditioned denominators
            let v = p.v
            let ini = prefixState(cfg, seed: seed + 1000)
            let n = ini.count / s.B
            let dO = r.normals(s.B * s.T * s.H * s.dv), dFin = r.normals(ini.count)
            // the library's gradients
            let qb = Buf(q), kb = Buf(k), vb = Buf(v), db = Buf(dO)
            let dq = Buf<Double>(q.count, fill: .nan), dk = Buf<Double>(k.count, fill: .nan), dv = Buf<Double>(v.count, fill: .nan)
            let ib = RowBuf(dtype: F64, rows: s.B, n: n), fb = RowBuf(dtype: F64, rows: s.B, n: n)
            for path in [HLA_PATH_SERIAL, HLA_PATH_CHUNKED] {
            let gb = RowBuf(dtype: F64, rows: s.B, n: n, fill: .nan)
            for i in 0..<ini.count { ib[i] = ini[i]; fb[i] = dFin[i] }
            check(cBackward(cfg, path.rawValue.asInt32,
                            tensor(qb, F64, [s.B, s.T, s.H, s.dk]), tensor(kb, F64, [s.B, s.T, s.Hkv, s.dk]),
                            tensor(vb, F64, [s.B, s.T, s.Hkv, s.dv]), tensor(db, F64, [s.B, s.T, s.H, s.dv]),
                            tensor(dq, F64, [s.B, s.T, s.H, s.dk]), tensor(dk, F64, [s.B, s.T, s.Hkv, s.dk]),
                            tensor(dv, F64, [s.B, s.T, s.Hkv, s.dv]), initial: ib.tensor, dFinal: fb.tensor,
                            dInitial: gb.tensor), "hla_backward \(o)")
            keepAlive(qb, kb, vb, db, ib, fb)
            let grads: [[Double]] = [dq.array, dk.array, dv.array, gb.values]
            let other = prefixState(cfg, seed: seed + 2000)
            for which in 0..<4 {
                for trial in 0..<2 {
                    let count = grads[which].count
                    let raw: [Double] = which == 3 ? (0..<count).map { ini[$0] - other[$0] } : r.normals(count)
                    let top = raw.map { abs($0) }.max() ?? 1
                    let dir = raw.map { $0 / top }   // max-norm 1, so h bounds the step in every coordinate
                    _ = trial
                    let h = 1e-5
                    func shifted(_ a: Double) -> Double {
                        var x = [q, k, v, ini]
                        for i in 0..<count { x[which][i] += a * dir[i] }
                        return loss(cfg, x[0], x[1], x[2], x[3], dO, dFin)
                    }
                    let fd = (shifted(h) - shifted(-h)) / (2 * h)
                    var an = 0.0, mag = 0.0
                    for i in 0..<count { an += grads[which][i] * dir[i]; mag += abs(grads[which][i] * dir[i]) }
                    let err = abs(fd - an) / max(mag, 1e-300)
                    worst = max(worst, err)
                    XCTAssertLessThan(err, 1e-7, "\(o) path \(path.rawValue) tensor \(which): fd \(fd) vs \(an)")
                }
            }
            }
        }
        print("hla_backward vs finite differences: worst relative error \(worst)")
    }

    /// hla_forward_checkpoints / hla_backward_checkpoints (docs/gradients.md §11): outputs, final state and
    /// gradients bit for bit those of hla_forward / hla_backward on the chunked path, every option, float32
    /// and float64; a changed checkpoint changes the gradients (so the backward reads them).
    func testCheckpointsGiveTheSameResults() {
        var cs = s; cs.T = 41
        for o in cases() {
            for dt in [F64, F32] {
                var opt = o; opt.chunk = 2
                let cfg = makeConfig(cs, opt)
                var c = cfg
                let p = Problem(cs, seed: 77)
                let shapes = [[cs.B, cs.T, cs.H, cs.dk], [cs.B, cs.T, cs.Hkv, cs.dk], [cs.B, cs.T, cs.Hkv, cs.dv],
                              [cs.B, cs.T, cs.H, cs.dv]]
                var r = SplitMix64(seed: 78)
                let dO = r.normals(cs.B * cs.T * cs.H * cs.dv)
                let vals: [[Double]] = [o.normalize ? p.q.map { abs($0) } : p.q, o.normalize ? p.k.map { abs($0) } : p.k, p.v, dO]
                var n: Int64 = 0
                XCTAssertEqual(hla_state_elements(&c, &n), HLA_OK)
                // checkpoint_every: automatic (0), every chunk, every 3 chunks, more than the 21 chunks (no rows);
                // the plain backward takes it for its own kept carries too
                let variants: [(withCk: Bool, every: Int64, stride: Int64)] =
                    [(false, 0, 0), (false, 1, 0), (true, 0, 10), (true, 1, 2), (true, 3, 6), (true, 100, 42)]
                let results: [[[Double]]] = variants.map { (withCk: Bool, every: Int64, wantStride: Int64) -> [[Double]] in
                    c.checkpoint_every = every
                    var rows: Int64 = -1, stride: Int64 = -1
                    XCTAssertEqual(hla_checkpoint_rows(&c, Int64(cs.B), Int64(cs.T), 0, &rows, &stride), HLA_OK)
                    if withCk {
                        XCTAssertEqual(stride, wantStride)                       // chunk 2; automatic: ⌈√21⌉ = 5 chunks
                        XCTAssertEqual(rows, Int64(cs.B) * ((41 - 1) / wantStride))
                    }
                    let ins = (0..<4).map { i in Flat(vals[i], dt) }
                    let out = Flat(count: vals[3].count, dt), fin = RowBuf(dtype: dt, rows: cs.B, n: Int(n), fill: .nan)
                    let ck = RowBuf(dtype: dt, rows: Int(rows), n: Int(n), fill: .nan)
                    let dq = Flat(count: vals[0].count, dt), dk = Flat(count: vals[1].count, dt)
                    let dv = Flat(count: vals[2].count, dt)
                    let dFin = RowBuf(dtype: dt, rows: cs.B, n: Int(n)), dIni = RowBuf(dtype: dt, rows: cs.B, n: Int(n), fill: .nan)
                    for i in 0..<(cs.B * Int(n)) { dFin[i] = Double((i * 7919) % 13) / 13 - 0.5 }
                    let t = (0..<4).map { ins[$0].tensor(shapes[$0]) }
                    let tOut = out.tensor(shapes[3]), finT = fin.tensor, ckT = ck.tensor, dFinT = dFin.tensor
                    let ini = RowBuf(dtype: dt, rows: cs.B, n: Int(n)), iniT = ini.tensor
                    for i in 0..<(cs.B * Int(n)) { ini[i] = Double((i * 104729) % 17) / 170 }
                    let dIniT = dIni.tensor, dqT = dq.tensor(shapes[0]), dkT = dk.tensor(shapes[1]), dvT = dv.tensor(shapes[2])
                    if withCk {
                        XCTAssertEqual(hla_forward_checkpoints(&c, t[0].p, t[1].p, t[2].p, tOut.p, nil, iniT.p, finT.p, nil, ckT.p),
                                       HLA_OK, lastError())
                        XCTAssertTrue(ck.values.allSatisfy { $0.isFinite }, "every checkpoint row written")
                        XCTAssertEqual(hla_backward_checkpoints(&c, t[0].p, t[1].p, t[2].p, t[3].p, dqT.p, dkT.p, dvT.p, nil,
                                                                iniT.p, dFinT.p, dIniT.p, ckT.p), HLA_OK, lastError())
                        // a changed checkpoint changes the gradients before it (the reverse passes through it)
                        if rows > 0 {
                            let dq2 = Flat(count: vals[0].count, dt), dq2T = dq2.tensor(shapes[0])
                            let dk2 = Flat(count: vals[1].count, dt), dk2T = dk2.tensor(shapes[1])
                            let dv2 = Flat(count: vals[2].count, dt), dv2T = dv2.tensor(shapes[2])
                            let dIni2 = RowBuf(dtype: dt, rows: cs.B, n: Int(n)), dIni2T = dIni2.tensor
                            ck[0] += 0.25
                            XCTAssertEqual(hla_backward_checkpoints(&c, t[0].p, t[1].p, t[2].p, t[3].p, dq2T.p, dk2T.p, dv2T.p,
                                                                    nil, iniT.p, dFinT.p, dIni2T.p, ckT.p), HLA_OK)
                            XCTAssertTrue(dq.values != dq2.values, "\(o) \(dt) every \(every): the backward ignored its checkpoints")
                            keepAlive(dq2, dq2T, dk2, dk2T, dv2, dv2T, dIni2, dIni2T)
                        }
                    } else {
                        XCTAssertEqual(cForward(cfg, HLA_PATH_CHUNKED.rawValue.asInt32, t[0], t[1], t[2], tOut, initial: iniT, final: finT), HLA_OK)
                        XCTAssertEqual(hla_backward(&c, HLA_PATH_CHUNKED.rawValue.asInt32, t[0].p, t[1].p, t[2].p, t[3].p,
                                                    dqT.p, dkT.p, dvT.p, nil, iniT.p, dFinT.p, dIniT.p), HLA_OK)
                    }
                    keepAlive(tOut, finT, ckT, dFinT, dIniT, dqT, dkT, dvT, ini, iniT)
                    keepAlive(ins, out, fin, ck, dFin, t, tOut)
                    return [out.values, fin.values, dq.values, dk.values, dv.values, dIni.values]
                }
                for (i, name) in ["output", "final", "dq", "dk", "dv", "d_initial"].enumerated() {
                    for v in 1..<variants.count {
                        XCTAssertTrue(results[0][i].map { $0.bitPattern } == results[v][i].map { $0.bitPattern },
                                      "\(o) \(dt) \(name) \(variants[v])")
                    }
                }
            }
        }
    }

    func testBadInputWritesNothing() {
        let cfg = makeConfig(s, Options(op: opHLA2, chunk: 4))
        let p = Typed<Double>(Problem(s, seed: 5))
        let d = Buf<Double>(s.B * s.T * s.H * s.dv, fill: 1)
        let dq = Buf<Double>(p.p.q.count, fill: .nan), dk = Buf<Double>(p.p.k.count, fill: .nan)
        let dv = Buf<Double>(p.p.v.count, fill: .nan)
        let dqT = tensor(dq, F64, [s.B, s.T, s.H, s.dk]), dkT = tensor(dk, F64, [s.B, s.T, s.Hkv, s.dk])
        let dvT = tensor(dv, F64, [s.B, s.T, s.Hkv, s.dv])
        let good = tensor(d, F64, [s.B, s.T, s.H, s.dv]), short = tensor(d, F64, [s.B, s.T - 1, s.H, s.dv])
        let badIni = RowBuf(dtype: F64, rows: s.B, n: 3)
        let f32 = Buf<Float>(d.count, fill: 1)
        let f32T = tensor(f32, F32, [s.B, s.T, s.H, s.dv])
        let cases: [(hla_status, () -> hla_status)] = [
            (HLA_ERR_NULL_POINTER, { cBackward(nil, 0, p.qT(), p.kT(), p.vT(), good, dqT, dkT, dvT) }),
            (HLA_ERR_NULL_POINTER, { cBackward(cfg, 0, p.qT(), p.kT(), p.vT(), nil, dqT, dkT, dvT) }),
            (HLA_ERR_NULL_POINTER, { cBackward(cfg, 0, p.qT(), p.kT(), p.vT(), good, dqT, nil, dvT) }),
            (HLA_ERR_MISMATCH, { cBackward(cfg, 0, p.qT(), p.kT(), p.vT(), short, dqT, dkT, dvT) }),
            (HLA_ERR_DTYPE, { cBackward(cfg, 0, p.qT(), p.kT(), p.vT(), f32T, dqT, dkT, dvT) }),
            (HLA_ERR_INVALID_ARGUMENT, { cBackward(cfg, 7, p.qT(), p.kT(), p.vT(), good, dqT, dkT, dvT) }),
            (HLA_ERR_MISMATCH, { cBackward(cfg, 0, p.qT(), p.kT(), p.vT(), good, dqT, dkT, dvT, dFinal: badIni.tensor) }),
            (HLA_ERR_MISMATCH, { cBackward(cfg, 0, p.qT(), p.kT(), p.vT(), good, dqT, dkT, dvT, dInitial: badIni.tensor) }),
            (HLA_ERR_INVALID_ARGUMENT, { cBackward(cfg, 0, p.qT(), p.kT(), p.vT(), good, dqT, dkT, dvT,
                                                      cu: idx([0, 4, 8])) }),
        ]
        for (i, (want, call)) in cases.enumerated() {
            XCTAssertEqual(call(), want, "case \(i): \(lastError())")
            XCTAssertFalse(lastError().isEmpty)
            XCTAssertTrue(dq.array.allSatisfy { $0.isNaN } && dk.array.allSatisfy { $0.isNaN } && dv.array.allSatisfy { $0.isNaN },
                          "case \(i) wrote an output")
        }
        keepAlive(p, d, dq, dk, dv, good, short, badIni, f32, dqT, dkT, dvT)
        // and a valid call writes every element
        XCTAssertEqual(cBackward(cfg, 0, p.qT(), p.kT(), p.vT(), good, dqT, dkT, dvT), HLA_OK)
        XCTAssertTrue(dq.array.allSatisfy { $0.isFinite } && dk.array.allSatisfy { $0.isFinite } && dv.array.allSatisfy { $0.isFinite })
        keepAlive(dq, dk, dv, dqT, dkT, dvT, p, good)
    }
}
