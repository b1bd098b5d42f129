/// hla3 streaming step: O(dk² + dk·dv) per token and head.
extension HLA3 {
    static func stepScratch(_ c: Config) -> Int { 2 * c.dk + c.dvp }

    static func step<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                  q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay), g3 = g * g * g
        let S = u.kv, P = u.kv + dk * dk
        for a in 0..<dk {
            let srow = S + a * dk, prow = P + a * dvp, ka = k[a]
            for b in 0..<dk { srow[b] = g * srow[b] + ka * k[b] }
            for x in 0..<dvp { prow[x] = g * prow[x] + ka * v[x] }
        }
        let z = tmp, w = tmp + dk, y = tmp + 2 * dk
        for j in 0..<u.group {
            let qh = q + j * dk, oh = out + j * dvp, st = u.head(j)
            for x in 0..<dvp { oh[x] = 0 }
            symv(S, qh, z, dk)                                            // z = S_t q_t
            if c.masked {
                // y = P_tᵀ q_t;  W ← γ³ W + z yᵀ;  out = Wᵀ q
                for x in 0..<dvp { y[x] = 0 }
                for a in 0..<dk {
                    let row = P + a * dvp, qa = qh[a]
                    for x in 0..<dvp { y[x] += qa * row[x] }
                }
                for a in 0..<dk {
                    let row = st + a * dvp, za = z[a], qa = qh[a]
                    for x in 0..<dvp { let nv = g3 * row[x] + za * y[x]; row[x] = nv; oh[x] += qa * nv }
                }
            } else {
                // S^Q ← γ S^Q + q qᵀ;  w = S^Q z;  out = Pᵀ w
                for x in 0..<dk { w[x] = 0 }
                for a in 0..<dk {                                          // w = S^Q z (S^Q symmetric)
                    let row = st + a * dk, qa = qh[a], za = z[a]
                    for b in 0..<dk { let nv = g * row[b] + qa * qh[b]; row[b] = nv; w[b] += za * nv }
                }
                for a in 0..<dk {
                    let row = P + a * dvp, wa = w[a]
                    for x in 0..<dvp { oh[x] += wa * row[x] }
                }
            }
        }
    }
}
