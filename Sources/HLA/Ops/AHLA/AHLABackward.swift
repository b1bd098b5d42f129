/// ahla reverse step (docs/gradients.md §4). With g = ∂L/∂num_t and the adjoints dP (kv), dE or dR
/// (per query head) of the states after token t:
///   masked:   y = Pᵀq;  dE += q gᵀ;  dq = E g;  dk += dE y;  dy = dEᵀ k;  dE ← γ dE;  dP += q dyᵀ;  dq += P dy;
///   unmasked: w = Rᵀq;  dP += w gᵀ;  dw = P g;  dR += q dwᵀ;  dq = R dw + dRᵀ k;  dk += dR q;  dR ← γ dR;
///   per kv head: dk += dP v;  dv = dPᵀ k;  dP ← γ dP.
extension AHLA {
    static func backwardScratch(_ c: Config) -> Int { 2 * max(c.dk, c.dvp) }

    static func stepBackward<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ d: Unit<T>, k: UnsafePointer<T>,
                                          v: UnsafePointer<T>, q: UnsafePointer<T>, g: UnsafePointer<T>,
                                          dk dkOut: UnsafeMutablePointer<T>, dv dvOut: UnsafeMutablePointer<T>,
                                          dq: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, gm = T(c.decay)
        let P = u.kv, dP = d.kv, a = tmp, b = tmp + max(dk, dvp)
        Adj.zero(dkOut, dk); Adj.zero(dvOut, dvp)
        for j in 0..<u.group {
            let qj = q + j * dk, gj = g + j * dvp, dqj = dq + j * dk, st = u.head(j), ds = d.head(j)
            if c.masked {
                let E = st, dE = ds, y = a, dy = b
                Adj.mtv(P, dk, dvp, qj, y, acc: false)                      // y = Pᵀ q
                Adj.outer(dE, dk, dvp, 1, qj, gj)                           // dE += q gᵀ
                Adj.mv(E, dk, dvp, gj, dqj, acc: false)                     // dq = E g
                Adj.mv(dE, dk, dvp, y, dkOut, acc: true)                    // dk += dE y
                Adj.mtv(dE, dk, dvp, k, dy, acc: false)                     // dy = dEᵀ k
                Mask.scale(dE, dk * dvp, gm)
                Adj.outer(dP, dk, dvp, 1, qj, dy)                           // dP += q dyᵀ
                Adj.mv(P, dk, dvp, dy, dqj, acc: true)                      // dq += P dy
            } else {
                let R = st, dR = ds, w = a, dw = b
                Adj.mtv(R, dk, dk, qj, w, acc: false)                       // w = Rᵀ q
                Adj.outer(dP, dk, dvp, 1, w, gj)                            // dP += w gᵀ
                Adj.mv(P, dk, dvp, gj, dw, acc: false)                      // dw = P g
                Adj.outer(dR, dk, dk, 1, qj, dw)                            // dR += q dwᵀ
                Adj.mv(R, dk, dk, dw, dqj, acc: false)                      // dq = R dw
                Adj.mv(dR, dk, dk, qj, dkOut, acc: true)                    // dk += dR q
                Adj.mtv(dR, dk, dk, k, dqj, acc: true)                      // dq += dRᵀ k
                Mask.scale(dR, dk * dk, gm)
            }
        }
        Adj.mv(dP, dk, dvp, v, dkOut, acc: true)                            // dk += dP v
        Adj.mtv(dP, dk, dvp, k, dvOut, acc: true)                           // dv += dPᵀ k
        Mask.scale(dP, dk * dvp, gm)
    }

    static func symmetrizeAdjoint<T: HLAFloat>(_ c: Config, _ d: Unit<T>) {}
}
