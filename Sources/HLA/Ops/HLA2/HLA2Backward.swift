/// hla2 reverse step (docs/gradients.md §3), O(dk² + dk·dv) per token and head. With g = ∂L/∂num_t,
/// z = Sᵀq and the adjoints dS (kv), dU, dC (per query head) of the states after token t:
///   masked:   dU += q gᵀ;  dq = U g;  dz = dU v;  dv += dUᵀ z;  dU ← γ² dU;
///             λ > 0: dC += λ q gᵀ;  dq += λ C g + dC v;  dv += dCᵀ q;  dC ← γ dC;
///   unmasked: w = z + λq;  dC += w gᵀ;  dz = C g;  dq = λ dz + dC v;  dv += dCᵀ q;  dC ← γ dC;
///   both:     dS += q dzᵀ;  dq += S dz;   then per kv head dk = (dS + dSᵀ) k,  dS ← γ dS.
extension HLA2 {
    static func backwardScratch(_ c: Config) -> Int { 2 * c.dk }

    static func stepBackward<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ d: Unit<T>, k: UnsafePointer<T>,
                                          v: UnsafePointer<T>, q: UnsafePointer<T>, g: UnsafePointer<T>,
                                          dk dkOut: UnsafeMutablePointer<T>, dv dvOut: UnsafeMutablePointer<T>,
                                          dq: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, gm = T(c.decay), lam = T(c.ridge)
        let S = u.kv, dS = d.kv, z = tmp, dz = tmp + dk
        Adj.zero(dkOut, dk); Adj.zero(dvOut, dvp)
        for j in 0..<u.group {
            let qj = q + j * dk, gj = g + j * dvp, dqj = dq + j * dk, st = u.head(j), ds = d.head(j)
            Adj.mtv(S, dk, dk, qj, z, acc: false)                           // z = Sᵀ q
            if c.masked {
                let U = st, dU = ds
                Adj.outer(dU, dk, dvp, 1, qj, gj)                           // dU += q gᵀ
                Adj.mv(U, dk, dvp, gj, dqj, acc: false)                     // dq = U g
                Adj.mv(dU, dk, dvp, v, dz, acc: false)                      // dz = dU v
                Adj.mtv(dU, dk, dvp, z, dvOut, acc: true)                   // dv += dUᵀ z
                Mask.scale(dU, dk * dvp, gm * gm)
                if lam != 0 {
                    let C = st + cOffset(c), dC = ds + cOffset(c)
                    Adj.outer(dC, dk, dvp, lam, qj, gj)                     // dC += λ q gᵀ
                    Adj.mv(C, dk, dvp, gj, dqj, acc: true, a: lam)          // dq += λ C g
                    Adj.mv(dC, dk, dvp, v, dqj, acc: true)                  // dq += dC v
                    Adj.mtv(dC, dk, dvp, qj, dvOut, acc: true)              // dv += dCᵀ q
                    Mask.scale(dC, dk * dvp, gm)
                }
            } else {
                let C = st, dC = ds
                if lam != 0 { for a in 0..<dk { z[a] += lam * qj[a] } }     // w = z + λ q
                Adj.outer(dC, dk, dvp, 1, z, gj)                            // dC += w gᵀ
                Adj.mv(C, dk, dvp, gj, dz, acc: false)                      // dz = dw = C g
                for a in 0..<dk { dqj[a] = lam * dz[a] }
                Adj.mv(dC, dk, dvp, v, dqj, acc: true)                      // dq += dC v
                Adj.mtv(dC, dk, dvp, qj, dvOut, acc: true)                  // dv += dCᵀ q
                Mask.scale(dC, dk * dvp, gm)
            }
            Adj.outer(dS, dk, dk, 1, qj, dz)                                // dS += q dzᵀ
            Adj.mv(S, dk, dk, dz, dqj, acc: true)                           // dq += S dz
        }
        Adj.symMv(dS, dk, k, dkOut)                                         // dk += (dS + dSᵀ) k
        Mask.scale(dS, dk * dk, gm)
    }

    static func symmetrizeAdjoint<T: HLAFloat>(_ c: Config, _ d: Unit<T>) { Adj.symmetrize(d.kv, c.dk) }
}
