/// ahla streaming step: O(dk·dv) per token and head masked, O(dk² + dk·dv) unmasked.
///   P ← γP + k vᵀ (per kv head);  masked: y = Pᵀ q, E ← γE + k yᵀ, o = Eᵀ q;
///   unmasked: R ← γR + k qᵀ, w = Rᵀ q, o = Pᵀ w.
extension AHLA {
    static func stepScratch(_ c: Config) -> Int { max(c.dk, c.dvp) }

    static func step<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                  q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay)
        let P = u.kv
        Vec.rank1(P, dk, dvp, dvp, g, k, v)
        for j in 0..<u.group {
            let qh = q + j * dk, oh = out + j * dvp, st = u.head(j)
            if c.masked {
                let y = tmp
                Vec.gemvT(P, dk, dvp, dvp, qh, y)
                Vec.rank1Project(st, dk, dvp, dvp, g, k, y, qh, oh)
            } else {
                let w = tmp
                Vec.rank1Project(st, dk, dk, dk, g, k, qh, qh, w)
                Vec.gemvT(P, dk, dvp, dvp, w, oh)
            }
        }
    }
}
