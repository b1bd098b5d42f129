import CHLA

/// hla3 streaming step: O(dk² + dk·dv) per token and head.
///   S ← γS + k kᵀ, P ← γP + k vᵀ (per kv head); z = S q;
///   masked: y = Pᵀ q, W ← γ³W + z yᵀ, o = Wᵀ q;   unmasked: S^Q ← γS^Q + q qᵀ, w = S^Q z, o = Pᵀ w.
extension HLA3 {
    static func stepScratch(_ c: Config) -> Int { 2 * c.dk + c.dvp }

    static func stepKV<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay)
        Vec.rank1(u.kv, dk, dk, dk, g, k, k)                                          // S ← γS + k kᵀ
        Vec.rank1(u.kv + dk * dk, dk, dvp, dvp, g, k, v)                              // P ← γP + k vᵀ
    }

    static func stepHead<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j: Int, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                      q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay)
        let S = u.kv, P = u.kv + dk * dk, st = u.head(j)
        let z = tmp, w = tmp + dk, y = tmp + 2 * dk
        Vec.gemvT(S, dk, dk, dk, q, z)                                       // z = S q (S symmetric)
        if c.masked {
            Vec.gemvT(P, dk, dvp, dvp, q, y)                                 // y = Pᵀ q
            Vec.rank1Project(st, dk, dvp, dvp, g * g * g, z, y, q, out)      // W ← γ³W + z yᵀ, o = Wᵀ q
        } else {
            Vec.rank1Project(st, dk, dk, dk, g, q, q, z, w)                  // S^Q ← γS^Q + q qᵀ, w = S^Q z
            Vec.gemvT(P, dk, dvp, dvp, w, out)                               // o = Pᵀ w
        }
    }

    static func stepHeads<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j0: Int, _ n: Int, k: UnsafePointer<T>,
                                       v: UnsafePointer<T>, q: UnsafePointer<T>, out: UnsafeMutablePointer<T>,
                                       tmp: UnsafeMutablePointer<T>) {
        // On the kernel: z_j = S q_j and y_j = Pᵀ q_j of all n heads as two products on the register tiles, then
        // each head's W sweep (on the 2-core AMD EPYC VM, H = 64, Hkv = 1, d = 64, one thread: 0.78 of the time of
        // the kernel before, which formed the next head's z and y inside each W sweep; examples/bench/ab.py, 15
        // rounds; 0.87 on two threads).
        if onStepKernel(c, T.self) {
            return stepHeadsFused(c, u, j0, n, q: q, out: out, tmp: tmp)
        }
        stepHeadsPortable(c, u, j0, n, q: q, out: out, tmp: tmp)
    }

    static func stepKVHeadsFused<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j0: Int, _ n: Int, k: UnsafePointer<T>,
                                              v: UnsafePointer<T>, q: UnsafePointer<T>, out: UnsafeMutablePointer<T>,
                                              tmp: UnsafeMutablePointer<T>,
                                              from: UnsafeMutablePointer<hla_private_kv_from>?) -> Bool {
        // On the kernel S and P advance in the sweeps that form the first head's z and y (hla3, H = 64, Hkv = 1,
        // d = 64: the kv update was 1.7 µs of a 33 µs two-thread step, a pass over 32 KiB on each thread).
        guard onStepKernel(c, T.self) else { return false }
        stepHeadsFused(c, u, j0, n, q: q, out: out, tmp: tmp, k: k, v: v, from: from)
        return true
    }

    /// Masked `stepHeads` on the step kernel (hla_private_hla3_heads: AVX-512 or AVX2), where `onStepKernel`; tmp holds
    /// `stepScratchHeads(c, n)` elements. With k and v, `stepKV` first
    /// (`stepKVHeads`), in the kernel's first sweeps.
    static func stepHeadsFused<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j0: Int, _ n: Int, q: UnsafePointer<T>,
                                            out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>,
                                            k: UnsafePointer<T>? = nil, v: UnsafePointer<T>? = nil,
                                            from: UnsafeMutablePointer<hla_private_kv_from>? = nil) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay)
        hla_private_hla3_heads(n, dk, dvp, Gemm.float(u.kv), Gemm.float(u.kv + dk * dk), Gemm.float(q),
                               Gemm.float(u.head(j0)), u.qStride, unsafeBitCast(g * g * g, to: Float.self),
                               Gemm.float(tmp), Gemm.float(out), k.map { Gemm.float($0) }, v.map { Gemm.float($0) },
                               unsafeBitCast(g, to: Float.self), from)
    }

    /// `stepHeads` without the step kernel: the products z_j = S q_j and y_j = Pᵀ q_j of all n heads, then one
    /// sweep of each head's block.
    static func stepHeadsPortable<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j0: Int, _ n: Int, q: UnsafePointer<T>,
                                               out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay)
        let S = u.kv, P = u.kv + dk * dk
        let Z = tmp, Y = tmp + n * dk
        Vec.gemvTMany(S, dk, dk, dk, q, dk, n, Z, dk)                           // z_j = S q_j
        if c.masked {
            Vec.gemvTMany(P, dk, dvp, dvp, q, dk, n, Y, dvp)                    // y_j = Pᵀ q_j
            for j in 0..<n {                                                    // W_j ← γ³W_j + z_j y_jᵀ, o_j = W_jᵀ q_j
                Vec.rank1Project(u.head(j0 + j), dk, dvp, dvp, g * g * g, Z + j * dk, Y + j * dvp, q + j * dk, out + j * dvp)
            }
        } else {
            for j in 0..<n {                                                    // S^Q_j ← γS^Q_j + q qᵀ, w_j = S^Q_j z_j
                Vec.rank1Project(u.head(j0 + j), dk, dk, dk, g, q + j * dk, q + j * dk, Z + j * dk, Y + j * dk)
            }
            Vec.gemvTMany(P, dk, dvp, dvp, Y, dk, n, out, dvp)                  // o_j = Pᵀ w_j
        }
    }

    static func stepSingle<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                        q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay)
        let S = u.kv, P = u.kv + dk * dk, st = u.head(0)
        let z = tmp, w = tmp + dk, y = tmp + 2 * dk
        Vec.rank1Project(S, dk, dk, dk, g, k, k, q, z)                       // S ← γS + k kᵀ, z = S q
        if c.masked {
            Vec.rank1Project(P, dk, dvp, dvp, g, k, v, q, y)                 // P ← γP + k vᵀ, y = Pᵀ q
            Vec.rank1Project(st, dk, dvp, dvp, g * g * g, z, y, q, out)      // W ← γ³W + z yᵀ, o = Wᵀ q
        } else {
            Vec.rank1Project(st, dk, dk, dk, g, q, q, z, w)                  // S^Q ← γS^Q + q qᵀ, w = S^Q z
            Vec.rank1Project(P, dk, dvp, dvp, g, k, v, w, out)               // P ← γP + k vᵀ, o = Pᵀ w
        }
    }

    static func stepSingle2<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                         q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay), sc = stepScratch(c)
        let S = u.kv, P = u.kv + dk * dk, st = u.head(0)
        let k2 = k + dk, v2 = v + dvp, q2 = q + dk, o2 = out + dvp
        let z1 = tmp, w1 = tmp + dk, y1 = tmp + 2 * dk, z2 = z1 + sc, w2 = w1 + sc, y2 = y1 + sc
        Vec.rank1Project2(S, dk, dk, dk, g, k, k, q, z1, k2, k2, q2, z2)                // S ← γS + k kᵀ, z = S q
        if c.masked {
            Vec.rank1Project2(P, dk, dvp, dvp, g, k, v, q, y1, k2, v2, q2, y2)          // P ← γP + k vᵀ, y = Pᵀ q
            Vec.rank1Project2(st, dk, dvp, dvp, g * g * g, z1, y1, q, out, z2, y2, q2, o2) // W ← γ³W + z yᵀ, o = Wᵀ q
        } else {
            Vec.rank1Project2(st, dk, dk, dk, g, q, q, z1, w1, q2, q2, z2, w2)          // S^Q ← γS^Q + q qᵀ, w = S^Q z
            Vec.rank1Project2(P, dk, dvp, dvp, g, k, v, w1, out, k2, v2, w2, o2)        // P ← γP + k vᵀ, o = Pᵀ w
        }
    }

    static func stepGroup2<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                        q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, g = T(c.decay), G = u.group, sa = stepScratchAll(c)
        let S = u.kv, P = u.kv + dk * dk
        let k2 = k + dk, v2 = v + dvp
        let Z1 = tmp, Y1 = tmp + G * dk, Z2 = Z1 + sa, Y2 = Y1 + sa
        Vec.rank1(S, dk, dk, dk, g, k, k)                                              // token 1: S, P
        Vec.rank1(P, dk, dvp, dvp, g, k, v)
        Vec.gemvTMany(S, dk, dk, dk, q, 2 * dk, G, Z1, dk)                             // z_j = S q_j
        if c.masked {
            Vec.gemvTMany(P, dk, dvp, dvp, q, 2 * dk, G, Y1, dvp)                      // y_j = Pᵀ q_j
            Vec.rank1(S, dk, dk, dk, g, k2, k2)                                        // token 2
            Vec.rank1(P, dk, dvp, dvp, g, k2, v2)
            Vec.gemvTMany(S, dk, dk, dk, q + dk, 2 * dk, G, Z2, dk)
            Vec.gemvTMany(P, dk, dvp, dvp, q + dk, 2 * dk, G, Y2, dvp)
            for j in 0..<G {                                                           // W_j ← γ³W_j + z_j y_jᵀ, o_j = W_jᵀ q_j
                Vec.rank1Project2(u.head(j), dk, dvp, dvp, g * g * g, Z1 + j * dk, Y1 + j * dvp, q + 2 * j * dk,
                                  out + 2 * j * dvp, Z2 + j * dk, Y2 + j * dvp, q + (2 * j + 1) * dk,
                                  out + (2 * j + 1) * dvp)
            }
        } else {
            Vec.rank1(S, dk, dk, dk, g, k2, k2)                                        // token 2's S (P waits)
            Vec.gemvTMany(S, dk, dk, dk, q + dk, 2 * dk, G, Z2, dk)
            for j in 0..<G {                                                           // S^Q_j ← γS^Q_j + q qᵀ, w_j = S^Q_j z_j
                let q1 = q + 2 * j * dk, q2 = q1 + dk
                Vec.rank1Project2(u.head(j), dk, dk, dk, g, q1, q1, Z1 + j * dk, Y1 + j * dk,
                                  q2, q2, Z2 + j * dk, Y2 + j * dk)
            }
            Vec.gemvTMany(P, dk, dvp, dvp, Y1, dk, G, out, 2 * dvp)                    // o_j = Pᵀ w_j, token 1
            Vec.rank1(P, dk, dvp, dvp, g, k2, v2)                                      // token 2's P
            Vec.gemvTMany(P, dk, dvp, dvp, Y2, dk, G, out + dvp, 2 * dvp)
        }
    }
}
