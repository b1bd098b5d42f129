/// hla2 chunked form: a chunk of n tokens from the carry (S0, U0 | C0) as dense n × n products.
///
/// With A = Q Kᵀ, D_p[τ][i] = γ^{p(τ-i)} (i ≤ τ; D = D_1), QS = diag(γ^τ) Q S0 (rows τ = 1..n) and
/// Y = (A ⊙ D) K + QS, whose row τ is S_τ q_τ (S_τ: the state after token τ, decay included):
///   W = masked:   (Q Yᵀ) ⊙ D_2 + λ (Q Qᵀ) ⊙ D      (W[τ][j] = γ^{2(τ-j)} q_τᵀ S_j q_j, j ≤ τ)
///       unmasked: (Y Qᵀ) ⊙ D   + λ (Q Qᵀ) ⊙ D      (W[τ][j] = γ^{τ-j} q_τᵀ S_τ q_j)
///   O = W V + masked:   diag(γ^{2τ}) Q U0
///           + unmasked: diag(γ^τ) Y C0
///           + λ diag(γ^τ) Q C0.
/// These are the sums [((A ⊙ D) B + QS Qᵀ + λ Q Qᵀ) ⊙ D] V (B = K Qᵀ; masked: kept for i ≤ j) and diag(γ^τ)
/// (QS + (A ⊙ D) K) C0 of the index form regrouped (docs/hla3.md §3): the n × n × n product (A ⊙ D) B and the
/// transpose B = Aᵀ are gone, and unmasked one n × dk × dv product (K C0).
/// Carry: S ← γⁿ S0 + Kᵀ Γ K,  C ← γⁿ C0 + Qᵀ Γ V,  U ← γ²ⁿ U0 + γⁿ S0 (Qᵀ Γ V) + Kᵀ Γ B Γ V,
/// with Γ = diag(γ^{n-τ}); U is formed as γ²ⁿ U0 + Xᵀ V with X = Γ² Y, the rows S_τ q_τ the outputs used
/// (`advanceU`): one n × dk × dv product, no product of its own for X.
extension HLA2 {
    static func chunkScratch(_ c: Config, n: Int) -> Int {
        Scratch<Double>.need([n * n, n * n, n * n, n * c.dk, n * c.dk, n * c.dk, n * c.dk, n * c.dvp, n * c.dvp, n * c.dvp,
                              n * c.dvp])   // (the most of `chunk`, `scanChunk`, `summarize`, `carry`)
    }

    static func chunk<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, n: Int,
                                   K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                   O: UnsafeMutablePointer<T>, carryOut: Bool, scratch: inout Scratch<T>) {
        let dk = c.dk, dvp = c.dvp, lam = T(c.ridge)
        let A = scratch.take(n * n), Wl = scratch.take(n * n), W = scratch.take(n * n)
        let Y = scratch.take(n * dk), Ks = scratch.take(n * dk)
        let Vs = scratch.take(n * dvp), Tm = scratch.take(n * dvp), Qs = scratch.take(n * dk)
        let S0 = u.kv, gn = pw[n], g2n = pw[2 * n]
        let hasC = !c.masked || lam != 0                                                          // C is carried
        let Vd = hasC ? Mask.scaled(Vs, V, n, dvp, unit: pw.unit) { pw[n - 1 - $0] } : V      // Γ V (C's update)
        for j in 0..<u.group {
            let Qh = Q + j * n * dk, Oh = O + j * n * dvp, st = u.head(j)
            let C0 = st + cOffset(c)
            T.gemm(false, true, n, n, dk, 1, Qh, dk, K, dk, 0, A, n, structure: .lowerC)   // A = Q Kᵀ (lower half)
            stateQ(c, pw, n, S0, A: A, K: K, Q: Qh, Y: Y)
            outputs(c, pw, n, u, j, V: V, Q: Qh, W: W, Wl: Wl, Y: Y, Tm: Tm, Qs: Qs, O: Oh)
            // Carry of this head (uses the old S0).
            if !carryOut { continue }
            if c.masked { advanceU(c, n, st, g2n, X: carryX(c, pw, n, Y: Y, into: Qs), V: V) }
            if hasC {
                T.gemm(true, false, dk, dvp, n, 1, Qh, dk, Vd, dvp, gn, C0, dvp)    // C ← γⁿ C0 + Qᵀ Γ V
            }
        }
        if !carryOut { return }
        let Kd = Mask.scaled(Ks, K, n, dk, unit: pw.unit) { pw[n - 1 - $0] }                  // Γ K
        T.gram(dk, n, 1, K, dk, Kd, dk, gn, S0, dk)                                     // S ← γⁿ S0 + Kᵀ Γ K
    }

    /// The outputs of query head j (queries Q, n × dk) from Y = (A ⊙ D) K + diag(γ^τ) Q S0 (`stateQ`; n × dk): W as in
    /// the header, then O = W V + the carry terms. W (n × n) receives W; Wl (n × n, only with ridge), Tm (n × dvp)
    /// and Qs (n × dk) are scratch. Shared by `chunk` and `scanChunk`.
    @inline(__always)
    static func outputs<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ n: Int, _ u: Unit<T>, _ j: Int,
                                     V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                     W: UnsafeMutablePointer<T>, Wl: UnsafeMutablePointer<T>,
                                     Y: UnsafePointer<T>, Tm: UnsafeMutablePointer<T>, Qs: UnsafeMutablePointer<T>,
                                     O: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, lam = T(c.ridge)
        let st = u.head(j), C0 = st + cOffset(c)
        if c.masked {
            T.gemm(false, true, n, n, dk, 1, Q, dk, Y, dk, 0, W, n, structure: .lowerC)     // Q Yᵀ
            Mask.lowerDecay(W, n, n, pw, 2)
        } else {
            T.gemm(false, true, n, n, dk, 1, Y, dk, Q, dk, 0, W, n, structure: .lowerC)     // Y Qᵀ
            Mask.lowerDecay(W, n, n, pw, 1)
        }
        if lam != 0 {
            T.gemm(false, true, n, n, dk, lam, Q, dk, Q, dk, 0, Wl, n, structure: .lowerC)  // λ Q Qᵀ
            Mask.lowerDecay(Wl, n, n, pw, 1)
            Mask.axpby(W, Wl, n * n, 1, 1)
        }
        if c.masked {
            // O = (diag(γ^{2τ}) Q) U0 + W V in one pass over O (Qs: the scaled Q, n × dk scratch)
            let Q2 = Mask.scaled(Qs, Q, n, dk, unit: pw.unit) { pw[2 * ($0 + 1)] }
            T.gemm2(n, dvp, 1, 0, O, dvp, false, dk, Q2, dk, st, dvp, false, n, W, n, V, dvp, structure2: .lowerA)
        } else {
            // O = W V + (diag(γ^τ) Y) C0 in one pass over O
            let Y1 = Mask.scaled(Qs, Y, n, dk, unit: pw.unit) { pw[$0 + 1] }
            T.gemm2(n, dvp, 1, 0, O, dvp, false, n, W, n, V, dvp, false, dk, Y1, dk, C0, dvp, structure1: .lowerA)
        }
        if lam != 0 {
            T.gemm(false, false, n, dvp, dk, 1, Q, dk, C0, dvp, 0, Tm, dvp)    // Q C0
            Mask.scaleRows(Tm, n, dvp, dvp) { lam * pw[$0 + 1] }
            Mask.axpby(O, Tm, n * dvp, 1, 1)
        }
    }

    /// Y = (A ⊙ D) K + diag(γ^τ) Q S0 (rows S_τ q_τ) into Y (n × dk), from A = Q Kᵀ's lower half, which is left as
    /// A ⊙ D. Shared by `chunk` and `carry` (the same bits; `scanChunk` forms the sum explicitly, round(QS + (A ⊙ D) K),
    /// which is what the tile's store adds to Y's start in one rounding).
    @inline(__always)
    static func stateQ<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ n: Int, _ S0: UnsafePointer<T>,
                                    A: UnsafeMutablePointer<T>, K: UnsafePointer<T>, Q: UnsafePointer<T>,
                                    Y: UnsafeMutablePointer<T>) {
        let dk = c.dk
        Mask.lowerDecay(A, n, n, pw, 1)                                          // A ⊙ D
        T.gemm(false, false, n, dk, dk, 1, Q, dk, S0, dk, 0, Y, dk)             // Q S0
        Mask.scaleRows(Y, n, dk, dk) { pw[$0 + 1] }                              // diag(γ^τ) Q S0
        T.gemm(false, false, n, dk, n, 1, A, n, K, dk, 1, Y, dk, structure: .lowerA)   // + (A ⊙ D) K
    }

    /// Masked: U ← γ²ⁿ U0 + Kᵀ Γ B Γ V + QSᵀ Γ² V (QS = diag(γ^τ) Q S0; Γ = diag(γ^{n-τ}), τ = 1..n), formed as
    /// U ← γ²ⁿ U0 + Xᵀ V with X = Γ² Y (`carryX`): row τ of Y is S_τ q_τ, so Xᵀ V = Σ_τ γ^{2(n-τ)} S_τ q_τ v_τᵀ, the
    /// same sum. One n × dk × dv product. Shared by `chunk` and `carry` (the same bits).
    @inline(__always)
    static func advanceU<T: HLAFloat>(_ c: Config, _ n: Int, _ st: UnsafeMutablePointer<T>, _ g2n: T,
                                      X: UnsafePointer<T>, V: UnsafePointer<T>) {
        T.gemm(true, false, c.dk, c.dvp, n, 1, X, c.dk, V, c.dvp, g2n, st, c.dvp)   // U ← γ²ⁿ U0 + Xᵀ V
    }

    /// X = Γ² Y of `advanceU` (n × dk) into `into`, or Y itself at decay 1. Shared by `chunk`, `carry`, the scan
    /// summary (`summaryU`, from Y⁰) and `chunkBackward`.
    @inline(__always)
    static func carryX<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ n: Int, Y: UnsafePointer<T>,
                                    into: UnsafeMutablePointer<T>) -> UnsafePointer<T> {
        Mask.scaled(into, Y, n, c.dk, unit: pw.unit) { pw[2 * (n - 1 - $0)] }
    }

    /// Elements `carry` keeps per chunk for `chunkBackward` (masked, per query head: A ⊙ D and Y of `stateQ`).
    static func keepSize(_ c: Config, n: Int) -> Int { c.masked ? c.group * keepHead(c, n: n) : 0 }
    @inline(__always) static func keepHead(_ c: Config, n: Int) -> Int { n * n + n * c.dk }

    /// The carry update of `chunk` alone (no outputs), bit for bit the carry `chunk` leaves: the same products
    /// in the same order, minus those only the outputs need (W, W V, Q U0, the unmasked cross terms).
    /// `keep` (`keepSize` elements, or nil): receives the products `chunkBackward` would otherwise recompute
    /// (A ⊙ D and Y per query head).
    static func carry<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, n: Int,
                                   K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                   keep: UnsafeMutablePointer<T>?, carryOut: Bool, scratch: inout Scratch<T>) {
        if !carryOut && (keep == nil || keepSize(c, n: n) == 0) { return }   // nothing to keep
        let dk = c.dk, dvp = c.dvp, lam = T(c.ridge)
        let As = scratch.take(n * n), Ys = scratch.take(n * dk), Ks = scratch.take(n * dk)
        let Vs = scratch.take(n * dvp), Xs = scratch.take(n * dk)
        let S0 = u.kv, gn = pw[n], g2n = pw[2 * n]
        let hasC = !c.masked || lam != 0
        let Vd = hasC ? Mask.scaled(Vs, V, n, dvp, unit: pw.unit) { pw[n - 1 - $0] } : V      // (C's update only)
        for j in 0..<u.group {
            let Qh = Q + j * n * dk, st = u.head(j)
            let C0 = st + cOffset(c)
            if c.masked {
                let kj = keep.map { $0 + j * keepHead(c, n: n) }
                let A = kj ?? As, Y = kj.map { $0 + n * n } ?? Ys                      // (kept for the reverse)
                T.gemm(false, true, n, n, dk, 1, Qh, dk, K, dk, 0, A, n, structure: .lowerC)   // A = Q Kᵀ, lower
                stateQ(c, pw, n, S0, A: A, K: K, Q: Qh, Y: Y)                          // A ⊙ D, Y
                if !carryOut { continue }                                            // (u is left as it was)
                advanceU(c, n, st, g2n, X: carryX(c, pw, n, Y: Y, into: Xs), V: V)
            }
            if hasC {
                T.gemm(true, false, dk, dvp, n, 1, Qh, dk, Vd, dvp, gn, C0, dvp)    // C ← γⁿ C0 + Qᵀ Γ V
            }
        }
        if !carryOut { return }
        let Kd = Mask.scaled(Ks, K, n, dk, unit: pw.unit) { pw[n - 1 - $0] }
        T.gram(dk, n, 1, K, dk, Kd, dk, gn, S0, dk)                                     // S ← γⁿ S0 + Kᵀ Γ K
    }
}
