import CHLA

/// hla2 streaming step: O(dk² + dk·dv) per token and head.
///   S ← γS + k kᵀ (per kv head);  masked: U ← γ²U + (S q) vᵀ, o = Uᵀ q (+ λ Cᵀ q with C ← γC + q vᵀ);
///   unmasked: C ← γC + q vᵀ, o = Cᵀ (S q + λ q).
extension HLA2 {
    static func stepScratch(_ c: Config) -> Int { c.dk + c.dvp }

    static func stepKV<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>) {
        Vec.rank1(u.kv, c.dk, c.dk, c.dk, T(c.decay), k, k)                     // S ← γS + k kᵀ
    }

    static func stepHead<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j: Int, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                      q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        Vec.gemvT(u.kv, c.dk, c.dk, c.dk, q, tmp)                            // z = S q (S symmetric)
        headFromZ(c, u, j, v: v, q: q, z: tmp, out: out)
    }

    static func stepSingle<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                        q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        Vec.rank1Project(u.kv, c.dk, c.dk, c.dk, T(c.decay), k, k, q, tmp)    // S ← γS + k kᵀ, z = S q
        headFromZ(c, u, 0, v: v, q: q, z: tmp, out: out)
    }

    /// Whether hla2's steps of several heads run on the step kernel: `onStepKernel`, without ridge.
    @inline(__always)
    static func onKernel<T: HLAFloat>(_ c: Config, _: T.Type) -> Bool { onStepKernel(c, T.self) && c.ridge == 0 }

    static func stepHeads<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j0: Int, _ n: Int, k: UnsafePointer<T>,
                                       v: UnsafePointer<T>, q: UnsafePointer<T>, out: UnsafeMutablePointer<T>,
                                       tmp: UnsafeMutablePointer<T>) {
        // On the step kernel with y = v for every head (z_j = S q_j of all n heads as one product, then each U sweep).
        if onKernel(c, T.self) {
            return stepHeadsFused(c, u, j0, n, v: v, q: q, out: out, tmp: tmp)
        }
        stepHeadsPortable(c, u, j0, n, v: v, q: q, out: out, tmp: tmp)
    }

    static func stepKVHeadsFused<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j0: Int, _ n: Int, k: UnsafePointer<T>,
                                              v: UnsafePointer<T>, q: UnsafePointer<T>, out: UnsafeMutablePointer<T>,
                                              tmp: UnsafeMutablePointer<T>,
                                              from: UnsafeMutablePointer<hla_private_kv_from>?) -> Bool {
        // On the kernel S advances in the sweep that forms the first head's z.
        guard onKernel(c, T.self) else { return false }
        stepHeadsFused(c, u, j0, n, v: v, q: q, out: out, tmp: tmp, k: k, from: from)
        return true
    }

    /// Masked `stepHeads` without ridge on the step kernel (hla_private_hla2_heads: AVX-512 or AVX2), where
    /// `onKernel`; tmp holds `stepScratchHeads(c, n)` elements. With k,
    /// `stepKV` first (`stepKVHeads`), in the kernel's first sweep.
    static func stepHeadsFused<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j0: Int, _ n: Int, v: UnsafePointer<T>,
                                            q: UnsafePointer<T>, out: UnsafeMutablePointer<T>,
                                            tmp: UnsafeMutablePointer<T>, k: UnsafePointer<T>? = nil,
                                            from: UnsafeMutablePointer<hla_private_kv_from>? = nil) {
        let g = T(c.decay)
        hla_private_hla2_heads(n, c.dk, c.dvp, Gemm.float(u.kv), Gemm.float(v), Gemm.float(q),
                               Gemm.float(u.head(j0)), u.qStride, unsafeBitCast(g * g, to: Float.self),
                               Gemm.float(tmp), Gemm.float(out), k.map { Gemm.float($0) },
                               unsafeBitCast(g, to: Float.self), from)
    }

    /// `stepHeads` without the step kernel: z_j = S q_j of all n heads, then one sweep of each head's blocks.
    static func stepHeadsPortable<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j0: Int, _ n: Int, v: UnsafePointer<T>,
                                               q: UnsafePointer<T>, out: UnsafeMutablePointer<T>,
                                               tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp
        Vec.gemvTMany(u.kv, dk, dk, dk, q, dk, n, tmp, dk)                       // z_j = S q_j
        for j in 0..<n { headFromZ(c, u, j0 + j, v: v, q: q + j * dk, z: tmp + j * dk, out: out + j * dvp) }
    }

    static func stepSingle2<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                         q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay)
        let k2 = k + dk, q2 = q + dk, z1 = tmp, z2 = tmp + stepScratch(c)
        Vec.rank1Project2(u.kv, dk, dk, dk, g, k, k, q, z1, k2, k2, q2, z2)             // S ← γS + k kᵀ, z = S q
        headFromZ2(c, u, 0, v1: v, v2: v + dvp, q1: q, q2: q2, z1: z1, z2: z2, out1: out, out2: out + dvp)
    }

    static func stepGroup2<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                        q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, G = u.group, g = T(c.decay)
        let Z1 = tmp, Z2 = tmp + stepScratchAll(c)
        Vec.rank1(u.kv, dk, dk, dk, g, k, k)                                         // token 1: S, z_j = S q_j
        Vec.gemvTMany(u.kv, dk, dk, dk, q, 2 * dk, G, Z1, dk)
        Vec.rank1(u.kv, dk, dk, dk, g, k + dk, k + dk)                               // token 2
        Vec.gemvTMany(u.kv, dk, dk, dk, q + dk, 2 * dk, G, Z2, dk)
        for j in 0..<G {
            headFromZ2(c, u, j, v1: v, v2: v + dvp, q1: q + 2 * j * dk, q2: q + (2 * j + 1) * dk,
                       z1: Z1 + j * dk, z2: Z2 + j * dk, out1: out + 2 * j * dvp, out2: out + (2 * j + 1) * dvp)
        }
    }

    /// `headFromZ` for two consecutive tokens in one sweep of each block.
    @inline(__always)
    static func headFromZ2<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j: Int, v1: UnsafePointer<T>, v2: UnsafePointer<T>,
                                        q1: UnsafePointer<T>, q2: UnsafePointer<T>,
                                        z1: UnsafeMutablePointer<T>, z2: UnsafeMutablePointer<T>,
                                        out1: UnsafeMutablePointer<T>, out2: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay), lam = T(c.ridge)
        let st = u.head(j)
        if c.masked {
            Vec.rank1Project2(st, dk, dvp, dvp, g * g, z1, v1, q1, out1, z2, v2, q2, out2)  // U ← γ²U + z vᵀ, o = Uᵀ q
            if lam != 0 {                                                                  // C ← γC + q vᵀ, o += λ Cᵀ q
                Vec.rank1Project2(st + cOffset(c), dk, dvp, dvp, g, q1, v1, q1, out1, q2, v2, q2, out2, a: lam, b: 1)
            }
        } else {
            if lam != 0 { for a in 0..<dk { z1[a] += lam * q1[a] }; for a in 0..<dk { z2[a] += lam * q2[a] } }
            Vec.rank1Project2(st, dk, dvp, dvp, g, q1, v1, z1, out1, q2, v2, z2, out2)       // C ← γC + q vᵀ, o = Cᵀ z
        }
    }

    /// The query head's blocks advanced and its output, given z = S q (z is clobbered with ridge, unmasked).
    @inline(__always)
    static func headFromZ<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j: Int, v: UnsafePointer<T>, q: UnsafePointer<T>,
                                       z: UnsafeMutablePointer<T>, out: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay), lam = T(c.ridge)
        let st = u.head(j)
        if c.masked {
            Vec.rank1Project(st, dk, dvp, dvp, g * g, z, v, q, out)
            if lam != 0 { Vec.rank1Project(st + cOffset(c), dk, dvp, dvp, g, q, v, q, out, a: lam, b: 1) }
        } else {
            if lam != 0 { for a in 0..<dk { z[a] += lam * q[a] } }
            Vec.rank1Project(st, dk, dvp, dvp, g, q, v, z, out)
        }
    }
}
