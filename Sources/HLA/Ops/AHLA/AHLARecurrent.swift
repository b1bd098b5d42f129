/// ahla streaming step: O(dk·dv) per token and head masked (O(dk² + dk·dv) unmasked).
extension AHLA {
    static func stepScratch(_ c: Config) -> Int { max(c.dk, c.dvp) }

    static func step<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                  q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay)
        let P = u.kv
        // P ← γ P + k vᵀ
        for a in 0..<dk {
            let row = P + a * dvp, ka = k[a]
            for x in 0..<dvp { row[x] = g * row[x] + ka * v[x] }
        }
        for j in 0..<u.group {
            let qh = q + j * dk, oh = out + j * dvp, st = u.head(j)
            for x in 0..<dvp { oh[x] = 0 }
            if c.masked {
                // y = Pᵀ q;  E ← γ E + k yᵀ;  out = Eᵀ q
                let y = tmp
                for x in 0..<dvp { y[x] = 0 }
                for a in 0..<dk {
                    let row = P + a * dvp, qa = qh[a]
                    for x in 0..<dvp { y[x] += qa * row[x] }
                }
                for a in 0..<dk {
                    let row = st + a * dvp, ka = k[a], qa = qh[a]
                    for x in 0..<dvp { let nv = g * row[x] + ka * y[x]; row[x] = nv; oh[x] += qa * nv }
                }
            } else {
                // R ← γ R + k qᵀ;  w = Rᵀ q;  out = Pᵀ w
                let w = tmp
                for m in 0..<dk { w[m] = 0 }
                for a in 0..<dk {
                    let row = st + a * dk, ka = k[a], qa = qh[a]
                    for m in 0..<dk { let nv = g * row[m] + ka * qh[m]; row[m] = nv; w[m] += qa * nv }
                }
                for a in 0..<dk {
                    let row = P + a * dvp, wa = w[a]
                    for x in 0..<dvp { oh[x] += wa * row[x] }
                }
            }
        }
    }
}
