import CHLA

/// ahla streaming step: O(dk·dv) per token and head masked, O(dk² + dk·dv) unmasked.
///   P ← γP + k vᵀ (per kv head);  masked: y = Pᵀ q, E ← γE + k yᵀ, o = Eᵀ q;
///   unmasked: R ← γR + k qᵀ, w = Rᵀ q, o = Pᵀ w.
extension AHLA {
    static func stepScratch(_ c: Config) -> Int { max(c.dk, c.dvp) }

    static func stepKV<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>) {
        Vec.rank1(u.kv, c.dk, c.dvp, c.dvp, T(c.decay), k, v)                   // P ← γP + k vᵀ
    }

    static func stepHead<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j: Int, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                      q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay)
        let P = u.kv, st = u.head(j)
        if c.masked {
            Vec.gemvT(P, dk, dvp, dvp, q, tmp)                               // y = Pᵀ q
            Vec.rank1Project(st, dk, dvp, dvp, g, k, tmp, q, out)            // E ← γE + k yᵀ, o = Eᵀ q
        } else {
            Vec.rank1Project(st, dk, dk, dk, g, k, q, q, tmp)                // R ← γR + k qᵀ, w = Rᵀ q
            Vec.gemvT(P, dk, dvp, dvp, tmp, out)                             // o = Pᵀ w
        }
    }

    static func stepHeads<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j0: Int, _ n: Int, k: UnsafePointer<T>,
                                       v: UnsafePointer<T>, q: UnsafePointer<T>, out: UnsafeMutablePointer<T>,
                                       tmp: UnsafeMutablePointer<T>) {
        // On the step kernel with z = k for every head (y_j = Pᵀ q_j of all n heads as one product, then each E sweep).
        if onStepKernel(c, T.self) {
            return stepHeadsFused(c, u, j0, n, k: k, q: q, out: out, tmp: tmp)
        }
        stepHeadsPortable(c, u, j0, n, k: k, q: q, out: out, tmp: tmp)
    }

    static func stepKVHeadsFused<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j0: Int, _ n: Int, k: UnsafePointer<T>,
                                              v: UnsafePointer<T>, q: UnsafePointer<T>, out: UnsafeMutablePointer<T>,
                                              tmp: UnsafeMutablePointer<T>,
                                              from: UnsafeMutablePointer<hla_private_kv_from>?) -> Bool {
        // On the kernel P advances in the sweep that forms the first head's y.
        guard onStepKernel(c, T.self) else { return false }
        stepHeadsFused(c, u, j0, n, k: k, q: q, out: out, tmp: tmp, v: v, from: from)
        return true
    }

    /// Masked `stepHeads` on the step kernel (hla_private_ahla_heads: AVX-512 or AVX2), where `onStepKernel`; tmp holds
    /// `stepScratchHeads(c, n)` elements. With v, `stepKV` first
    /// (`stepKVHeads`), in the kernel's first sweep.
    static func stepHeadsFused<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j0: Int, _ n: Int, k: UnsafePointer<T>,
                                            q: UnsafePointer<T>, out: UnsafeMutablePointer<T>,
                                            tmp: UnsafeMutablePointer<T>, v: UnsafePointer<T>? = nil,
                                            from: UnsafeMutablePointer<hla_private_kv_from>? = nil) {
        let g = unsafeBitCast(T(c.decay), to: Float.self)
        hla_private_ahla_heads(n, c.dk, c.dvp, Gemm.float(u.kv), Gemm.float(k), Gemm.float(q),
                               Gemm.float(u.head(j0)), u.qStride, g, Gemm.float(tmp), Gemm.float(out),
                               v.map { Gemm.float($0) }, g, from)
    }

    /// `stepHeads` without the step kernel: masked, y_j = Pᵀ q_j of all n heads, then one sweep of each head's
    /// block; unmasked, the sweeps first.
    static func stepHeadsPortable<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j0: Int, _ n: Int, k: UnsafePointer<T>,
                                               q: UnsafePointer<T>, out: UnsafeMutablePointer<T>,
                                               tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay), P = u.kv
        if c.masked {
            Vec.gemvTMany(P, dk, dvp, dvp, q, dk, n, tmp, dvp)                  // y_j = Pᵀ q_j
            for j in 0..<n {                                                    // E_j ← γE_j + k y_jᵀ, o_j = E_jᵀ q_j
                Vec.rank1Project(u.head(j0 + j), dk, dvp, dvp, g, k, tmp + j * dvp, q + j * dk, out + j * dvp)
            }
        } else {
            for j in 0..<n {                                                    // R_j ← γR_j + k q_jᵀ, w_j = R_jᵀ q_j
                Vec.rank1Project(u.head(j0 + j), dk, dk, dk, g, k, q + j * dk, q + j * dk, tmp + j * dk)
            }
            Vec.gemvTMany(P, dk, dvp, dvp, tmp, dk, n, out, dvp)                // o_j = Pᵀ w_j
        }
    }

    static func stepSingle<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                        q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay)
        let P = u.kv, st = u.head(0)
        if c.masked {
            Vec.rank1Project(P, dk, dvp, dvp, g, k, v, q, tmp)               // P ← γP + k vᵀ, y = Pᵀ q
            Vec.rank1Project(st, dk, dvp, dvp, g, k, tmp, q, out)            // E ← γE + k yᵀ, o = Eᵀ q
        } else {
            Vec.rank1Project(st, dk, dk, dk, g, k, q, q, tmp)                // R ← γR + k qᵀ, w = Rᵀ q
            Vec.rank1Project(P, dk, dvp, dvp, g, k, v, tmp, out)             // P ← γP + k vᵀ, o = Pᵀ w
        }
    }

    static func stepSingle2<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                         q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay)
        let P = u.kv, st = u.head(0)
        let k2 = k + dk, v2 = v + dvp, q2 = q + dk, o2 = out + dvp, t1 = tmp, t2 = tmp + stepScratch(c)
        if c.masked {
            Vec.rank1Project2(P, dk, dvp, dvp, g, k, v, q, t1, k2, v2, q2, t2)          // P ← γP + k vᵀ, y = Pᵀ q
            Vec.rank1Project2(st, dk, dvp, dvp, g, k, t1, q, out, k2, t2, q2, o2)       // E ← γE + k yᵀ, o = Eᵀ q
        } else {
            Vec.rank1Project2(st, dk, dk, dk, g, k, q, q, t1, k2, q2, q2, t2)           // R ← γR + k qᵀ, w = Rᵀ q
            Vec.rank1Project2(P, dk, dvp, dvp, g, k, v, t1, out, k2, v2, t2, o2)        // P ← γP + k vᵀ, o = Pᵀ w
        }
    }

    static func stepGroup2<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                        q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay), P = u.kv, G = u.group
        let k2 = k + dk, v2 = v + dvp
        let t1 = tmp, t2 = tmp + stepScratchAll(c)
        if c.masked {
            Vec.rank1(P, dk, dvp, dvp, g, k, v)                                        // token 1: P, y_j = Pᵀ q_j
            Vec.gemvTMany(P, dk, dvp, dvp, q, 2 * dk, G, t1, dvp)
            Vec.rank1(P, dk, dvp, dvp, g, k2, v2)                                      // token 2
            Vec.gemvTMany(P, dk, dvp, dvp, q + dk, 2 * dk, G, t2, dvp)
            for j in 0..<G {                                                           // E_j ← γE_j + k y_jᵀ, o_j = E_jᵀ q_j
                Vec.rank1Project2(u.head(j), dk, dvp, dvp, g, k, t1 + j * dvp, q + 2 * j * dk, out + 2 * j * dvp,
                                  k2, t2 + j * dvp, q + (2 * j + 1) * dk, out + (2 * j + 1) * dvp)
            }
        } else {
            Vec.rank1(P, dk, dvp, dvp, g, k, v)                                        // token 1: P
            for j in 0..<G {                                                           // R_j ← γR_j + k q_jᵀ, w_j = R_jᵀ q_j
                let q1 = q + 2 * j * dk, q2 = q1 + dk
                Vec.rank1Project2(u.head(j), dk, dk, dk, g, k, q1, q1, t1 + j * dk, k2, q2, q2, t2 + j * dk)
            }
            Vec.gemvTMany(P, dk, dvp, dvp, t1, dk, G, out, 2 * dvp)                    // o_j = Pᵀ w_j, token 1
            Vec.rank1(P, dk, dvp, dvp, g, k2, v2)                                      // token 2
            Vec.gemvTMany(P, dk, dvp, dvp, t2, dk, G, out + dvp, 2 * dvp)
        }
    }
}
