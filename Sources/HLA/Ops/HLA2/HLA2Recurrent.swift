/// hla2 streaming step: O(dk² + dk·dv) per token and head.
extension HLA2 {
    static func stepScratch(_ c: Config) -> Int { c.dk }

    static func step<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                  q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp
        let g = T(c.decay), g2 = g * g, lam = T(c.ridge)
        let S = u.kv
        // S ← γ S + k kᵀ
        for a in 0..<dk {
            let row = S + a * dk, ka = k[a]
            for b in 0..<dk { row[b] = g * row[b] + ka * k[b] }
        }
        for j in 0..<u.group {
            let qh = q + j * dk, oh = out + j * dvp, st = u.head(j)
            for x in 0..<dvp { oh[x] = 0 }
            if c.masked {
                // z = S_t q_t;  U ← γ² U + z vᵀ;  out = Uᵀ q
                let z = tmp
                symv(S, qh, z, dk)
                for a in 0..<dk {
                    let row = st + a * dvp, za = z[a], qa = qh[a]
                    for x in 0..<dvp { let nv = g2 * row[x] + za * v[x]; row[x] = nv; oh[x] += qa * nv }
                }
                if lam != 0 {
                    let C = st + cOffset(c)
                    for a in 0..<dk {
                        let row = C + a * dvp, qa = qh[a], lq = lam * qh[a]
                        for x in 0..<dvp { let nv = g * row[x] + qa * v[x]; row[x] = nv; oh[x] += lq * nv }
                    }
                }
            } else {
                // C ← γ C + q vᵀ;  out = Cᵀ (S q + λ q)
                let w = tmp
                symv(S, qh, w, dk)
                if lam != 0 { for a in 0..<dk { w[a] += lam * qh[a] } }
                for a in 0..<dk {
                    let row = st + a * dvp, qa = qh[a], wa = w[a]
                    for x in 0..<dvp { let nv = g * row[x] + qa * v[x]; row[x] = nv; oh[x] += wa * nv }
                }
            }
        }
    }
}
