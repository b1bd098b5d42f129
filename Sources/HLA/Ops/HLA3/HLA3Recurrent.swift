/// hla3 streaming step: O(dk² + dk·dv) per token and head.
///   S ← γS + k kᵀ, P ← γP + k vᵀ (per kv head); z = S q;
///   masked: y = Pᵀ q, W ← γ³W + z yᵀ, o = Wᵀ q;   unmasked: S^Q ← γS^Q + q qᵀ, w = S^Q z, o = Pᵀ w.
extension HLA3 {
    static func stepScratch(_ c: Config) -> Int { 2 * c.dk + c.dvp }

    static func step<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                  q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay)
        let S = u.kv, P = u.kv + dk * dk
        Vec.rank1(S, dk, dk, dk, g, k, k)
        Vec.rank1(P, dk, dvp, dvp, g, k, v)
        let z = tmp, w = tmp + dk, y = tmp + 2 * dk
        for j in 0..<u.group {
            let qh = q + j * dk, oh = out + j * dvp, st = u.head(j)
            Vec.gemvT(S, dk, dk, dk, qh, z)                                  // z = S q (S symmetric)
            if c.masked {
                Vec.gemvT(P, dk, dvp, dvp, qh, y)
                Vec.rank1Project(st, dk, dvp, dvp, g * g * g, z, y, qh, oh)
            } else {
                Vec.rank1Project(st, dk, dk, dk, g, qh, qh, z, w)           // w = S^Q z (S^Q symmetric)
                Vec.gemvT(P, dk, dvp, dvp, w, oh)
            }
        }
    }
}
