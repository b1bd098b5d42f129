import CHLA

/// Moving one unit's tokens between the caller's strided tensors and the dense blocks the kernels use.
struct IO<T: HLAFloat> {
    let q: Strided<T>, k: Strided<T>, v: Strided<T>
    let out: Strided<T>?

    /// K (n × dk), V (n × dvp, ones column when normalizing), Q (group × n × dk, scaled) of tokens
    /// t0..<t0+n of unit (b, g).
    @inline(__always)
    func pack(_ c: Config, b: Int, g: Int, t0: Int, n: Int,
              K: UnsafeMutablePointer<T>, V: UnsafeMutablePointer<T>, Q: UnsafeMutablePointer<T>) {
        let dk = c.dk, dv = c.dv, dvp = c.dvp, group = c.group
        k.gather(b, g, t0, n, dk, into: K, ld: dk)
        v.gather(b, g, t0, n, dv, into: V, ld: dvp)
        if c.normalize { for r in 0..<n { V[r * dvp + dv] = 1 } }
        let s = T(c.scale)
        for j in 0..<group { q.gather(b, g * group + j, t0, n, dk, into: Q + j * n * dk, ld: dk, mul: s) }
        // The unit packed next (the paths sweep kv heads inside a chunk): its rows are brought in while this
        // one computes, a few lines between register tiles (Gemm), since one burst of prefetches stalls as
        // long as the reads it replaces.
        let (gn, tn) = g + 1 < c.kvHeads ? (g + 1, t0) : (0, t0 + n)
        hla_private_plan_reset()
        k.plan(b, gn, tn, n, dk)
        v.plan(b, gn, tn, n, dv)
        for j in 0..<group { q.plan(b, gn * group + j, tn, n, dk) }
    }

    /// Write numerators O (group × n × dvp) as outputs, dividing by the ones column plus eps when normalizing.
    @inline(__always)
    func unpack(_ c: Config, b: Int, g: Int, t0: Int, n: Int, O: UnsafePointer<T>) {
        guard let out else { return }
        let dv = c.dv, dvp = c.dvp, group = c.group, eps = T(c.eps)
        for j in 0..<group {
            let h = g * group + j
            for r in 0..<n {
                let src = O + (j * n + r) * dvp
                out.store(b, t0 + r, h, src, dv, mul: c.normalize ? 1 / (src[dv] + eps) : 1)
            }
        }
    }
}
