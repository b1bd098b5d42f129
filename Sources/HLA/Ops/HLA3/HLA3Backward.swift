/// hla3 reverse step (docs/gradients.md §5). With g = ∂L/∂num_t, z = Sᵀq and the adjoints dS, dP (kv),
/// dW or dS^Q (per query head) of the states after token t:
///   masked:   y = Pᵀq;  dW += q gᵀ;  dq = W g;  dz = dW y;  dy = dWᵀ z;  dW ← γ³ dW;  dP += q dyᵀ;  dq += P dy;
///   unmasked: w = S^Qᵀ z;  dP += w gᵀ;  dw = P g;  dS^Q += z dwᵀ;  dz = S^Q dw;  dq = (dS^Q + dS^Qᵀ) q;
///             dS^Q ← γ dS^Q;
///   both:     dS += q dzᵀ;  dq += S dz;  per kv head dk = (dS + dSᵀ) k + dP v,  dv = dPᵀ k,  dS, dP ← γ ·.
extension HLA3 {
    static func backwardScratch(_ c: Config) -> Int { 4 * c.dk + 2 * c.dvp }

    static func stepBackward<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ d: Unit<T>, k: UnsafePointer<T>,
                                          v: UnsafePointer<T>, q: UnsafePointer<T>, g: UnsafePointer<T>,
                                          dk dkOut: UnsafeMutablePointer<T>, dv dvOut: UnsafeMutablePointer<T>,
                                          dq: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, gm = T(c.decay)
        let S = u.kv, P = u.kv + dk * dk, dS = d.kv, dP = d.kv + dk * dk
        let z = tmp, dz = tmp + dk, w = tmp + 2 * dk, dw = tmp + 3 * dk, y = tmp + 4 * dk, dy = y + dvp
        Adj.zero(dkOut, dk); Adj.zero(dvOut, dvp)
        for j in 0..<u.group {
            let qj = q + j * dk, gj = g + j * dvp, dqj = dq + j * dk, st = u.head(j), ds = d.head(j)
            Adj.mtv(S, dk, dk, qj, z, acc: false)                           // z = Sᵀ q
            if c.masked {
                let W = st, dW = ds
                Adj.mtv(P, dk, dvp, qj, y, acc: false)                      // y = Pᵀ q
                Adj.outer(dW, dk, dvp, 1, qj, gj)                           // dW += q gᵀ
                Adj.mv(W, dk, dvp, gj, dqj, acc: false)                     // dq = W g
                Adj.mv(dW, dk, dvp, y, dz, acc: false)                      // dz = dW y
                Adj.mtv(dW, dk, dvp, z, dy, acc: false)                     // dy = dWᵀ z
                Mask.scale(dW, dk * dvp, gm * gm * gm)
                Adj.outer(dP, dk, dvp, 1, qj, dy)                           // dP += q dyᵀ
                Adj.mv(P, dk, dvp, dy, dqj, acc: true)                      // dq += P dy
            } else {
                let SQ = st, dSQ = ds
                Adj.mtv(SQ, dk, dk, z, w, acc: false)                       // w = S^Qᵀ z
                Adj.outer(dP, dk, dvp, 1, w, gj)                            // dP += w gᵀ
                Adj.mv(P, dk, dvp, gj, dw, acc: false)                      // dw = P g
                Adj.outer(dSQ, dk, dk, 1, z, dw)                            // dS^Q += z dwᵀ
                Adj.mv(SQ, dk, dk, dw, dz, acc: false)                      // dz = S^Q dw
                Adj.zero(dqj, dk)
                Adj.symMv(dSQ, dk, qj, dqj)                                 // dq = (dS^Q + dS^Qᵀ) q
                Mask.scale(dSQ, dk * dk, gm)
            }
            Adj.outer(dS, dk, dk, 1, qj, dz)                                // dS += q dzᵀ
            Adj.mv(S, dk, dk, dz, dqj, acc: true)                           // dq += S dz
        }
        Adj.symMv(dS, dk, k, dkOut)                                         // dk += (dS + dSᵀ) k
        Adj.mv(dP, dk, dvp, v, dkOut, acc: true)                            // dk += dP v
        Adj.mtv(dP, dk, dvp, k, dvOut, acc: true)                           // dv += dPᵀ k
        Mask.scale(dS, dk * dk, gm)
        Mask.scale(dP, dk * dvp, gm)
    }

    static func symmetrizeAdjoint<T: HLAFloat>(_ c: Config, _ d: Unit<T>) {
        Adj.symmetrize(d.kv, c.dk)
        if !c.masked { for j in 0..<d.group { Adj.symmetrize(d.head(j), c.dk) } }
    }
}
