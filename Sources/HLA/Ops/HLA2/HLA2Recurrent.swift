/// hla2 streaming step: O(dk² + dk·dv) per token and head.
///   S ← γS + k kᵀ (per kv head);  masked: U ← γ²U + (S q) vᵀ, o = Uᵀ q (+ λ Cᵀ q with C ← γC + q vᵀ);
///   unmasked: C ← γC + q vᵀ, o = Cᵀ (S q + λ q).
extension HLA2 {
    static func stepScratch(_ c: Config) -> Int { c.dk + c.dvp }

    static func step<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                  q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp
        let g = T(c.decay), lam = T(c.ridge)
        let S = u.kv
        Vec.rank1(S, dk, dk, dk, g, k, k)
        let z = tmp
        for j in 0..<u.group {
            let qh = q + j * dk, oh = out + j * dvp, st = u.head(j)
            Vec.gemvT(S, dk, dk, dk, qh, z)                                  // z = S q (S symmetric)
            if c.masked {
                Vec.rank1Project(st, dk, dvp, dvp, g * g, z, v, qh, oh)
                if lam != 0 { Vec.rank1Project(st + cOffset(c), dk, dvp, dvp, g, qh, v, qh, oh, a: lam, b: 1) }
            } else {
                if lam != 0 { for a in 0..<dk { z[a] += lam * qh[a] } }
                Vec.rank1Project(st, dk, dvp, dvp, g, qh, v, z, oh)
            }
        }
    }
}
