/// hla2 streaming step: O(dk² + dk·dv) per token and head.
///   S ← γS + k kᵀ (per kv head);  masked: U ← γ²U + (S q) vᵀ, o = Uᵀ q (+ λ Cᵀ q with C ← γC + q vᵀ);
///   unmasked: C ← γC + q vᵀ, o = Cᵀ (S q + λ q).
extension HLA2 {
    static func stepScratch(_ c: Config) -> Int { c.dk + c.dvp }

    static func stepKV<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>) {
        Vec.rank1(u.kv, c.dk, c.dk, c.dk, T(c.decay), k, k)                  // S ← γS + k kᵀ
    }

    static func stepHead<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j: Int, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                      q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay), lam = T(c.ridge)
        let S = u.kv, st = u.head(j), z = tmp
        Vec.gemvT(S, dk, dk, dk, q, z)                                       // z = S q (S symmetric)
        if c.masked {
            Vec.rank1Project(st, dk, dvp, dvp, g * g, z, v, q, out)
            if lam != 0 { Vec.rank1Project(st + cOffset(c), dk, dvp, dvp, g, q, v, q, out, a: lam, b: 1) }
        } else {
            if lam != 0 { for a in 0..<dk { z[a] += lam * q[a] } }
            Vec.rank1Project(st, dk, dvp, dvp, g, q, v, z, out)
        }
    }
}
