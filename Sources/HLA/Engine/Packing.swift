import CHLA

/// Which rows `IO.pack` asks the prefetch plan for (the unit the caller packs next).
enum NextUnit {
    /// The next kv head of the same chunk, or the first head of the next chunk (a sweep over all kv heads).
    case sweep
    /// Tokens t0..<t0+n of kv head g.
    case at(g: Int, t0: Int, n: Int)
    /// Nothing (the plan is emptied).
    case none
    /// The plan left as it is: the serial path, whose step kernels never read it. (Emptying it per token
    /// reached the thread-local plan through `__tls_get_addr`: 1.8% of a bfloat16 step at H = Hkv = 64, d = 64.)
    case keep
}

/// Moving one unit's tokens between the caller's strided tensors and the dense blocks the kernels use.
struct IO<T: HLAFloat> {
    let q: Strided<T>, k: Strided<T>, v: Strided<T>
    let out: Strided<T>?

    /// K (n × dk), V (n × dvp, ones column when normalizing), Q (group × n × dk, scaled) of tokens
    /// t0..<t0+n of unit (b, g). Returns whether every element packed is finite (`Paths.chunkOrSteps`' test).
    @inline(__always) @discardableResult
    func pack(_ c: Config, b: Int, g: Int, t0: Int, n: Int,
              K: UnsafeMutablePointer<T>, V: UnsafeMutablePointer<T>, Q: UnsafeMutablePointer<T>,
              next: NextUnit = .sweep) -> Bool {
        let dk = c.dk, dv = c.dv, dvp = c.dvp, group = c.group
        var finite = k.gather(b, g, t0, n, dk, into: K, ld: dk)
        finite = v.gather(b, g, t0, n, dv, into: V, ld: dvp) && finite
        if c.normalize { for r in 0..<n { V[r * dvp + dv] = 1 } }
        let s = T(c.scale)
        for j in 0..<group { finite = q.gather(b, g * group + j, t0, n, dk, into: Q + j * n * dk, ld: dk, mul: s) && finite }
        if case .keep = next { return finite }
        // The unit packed next: its rows are brought in while this one computes, a few lines between register
        // tiles (Gemm), since one burst of prefetches stalls as long as the reads it replaces.
        hla_private_plan_reset()
        switch next {
        case .sweep: if g + 1 < c.kvHeads { plan(c, b: b, g: g + 1, t0: t0, n: n) } else { plan(c, b: b, g: 0, t0: t0 + n, n: n) }
        case let .at(g1, t1, n1): plan(c, b: b, g: g1, t0: t1, n: n1)
        case .none, .keep: break
        }
        return finite
    }

    /// Add the input rows `pack` reads for tokens t0..<t0+n of unit (b, g) to the prefetch plan.
    @inline(__always)
    func plan(_ c: Config, b: Int, g: Int, t0: Int, n: Int) {
        k.plan(b, g, t0, n, c.dk)
        v.plan(b, g, t0, n, c.dv)
        for j in 0..<c.group { q.plan(b, g * c.group + j, t0, n, c.dk) }
    }

    /// Add the output rows `unpack` writes for tokens t0..<t0+n of unit (b, g) to the prefetch plan (a line
    /// already cached when the store comes costs no read for ownership).
    @inline(__always)
    func planOut(_ c: Config, b: Int, g: Int, t0: Int, n: Int) {
        guard let out else { return }
        for j in 0..<c.group { out.plan(b, g * c.group + j, t0, n, c.dv) }
    }

    /// Prefetch the rows `pack` reads for token t of unit (b, g) into L2: the serial sweep asks a few tokens
    /// ahead, since consecutive tokens of one head lie a whole token of all heads apart, too far apart for the
    /// hardware's stream prefetch. (Prefetching the output rows too, or into L1, measured no better or slower.)
    @inline(__always)
    func prefetch(_ c: Config, b: Int, g: Int, t: Int) {
        k.prefetch(b, t, g, c.dk)
        v.prefetch(b, t, g, c.dv)
        for j in 0..<c.group { q.prefetch(b, t, g * c.group + j, c.dk) }
    }

    /// Whether a decoding step can read the token's k and v in place (`Paths.serial`): both store T in contiguous
    /// rows and no ones column is appended to v (dvp = dv).
    func direct(_ c: Config) -> Bool { !c.normalize && k.dense && v.dense }

    /// Whether a single-head decoding step can also write its output in place: `direct`, and the output stores T
    /// in contiguous rows.
    func directOut(_ c: Config) -> Bool { c.group == 1 && direct(c) && out?.dense == true }

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
