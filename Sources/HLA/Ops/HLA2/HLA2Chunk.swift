/// hla2 chunked form: a chunk of n tokens from the carry (S0, U0 | C0) as dense n × n products.
///
/// With A = Q Kᵀ, D[τ][i] = γ^{τ-i} (i ≤ τ), B = K Qᵀ (masked: kept for i ≤ j only), rows τ = 1..n:
///   O = [((A ⊙ D) B + diag(γ^τ) Q S0 Qᵀ + λ Q Qᵀ) ⊙ D] V
///       + masked:   diag(γ^{2τ}) Q U0
///       + unmasked: diag(γ^τ) [diag(γ^τ) Q S0 C0 + (A ⊙ D) K C0]
///       + λ diag(γ^τ) Q C0.
/// Carry: S ← γⁿ S0 + Kᵀ Γ K,  C ← γⁿ C0 + Qᵀ Γ V,  U ← γ²ⁿ U0 + γⁿ S0 (Qᵀ Γ V) + Kᵀ Γ B Γ V,
/// with Γ = diag(γ^{n-i}); U is formed as γ²ⁿ U0 + [Γ (Bᵀ Γ K + Γ QS)]ᵀ V with QS = diag(γ^τ) Q S0, the cross-term
/// product (`advanceU`): one n × dk × dv product instead of two.
extension HLA2 {
    static func chunkScratch(_ c: Config, n: Int) -> Int {
        Scratch<Double>.need([n * n, n * n, n * n, n * c.dk, n * c.dk, n * c.dk, n * c.dvp, n * c.dvp, n * c.dvp, n * c.dvp])
    }

    static func chunk<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, n: Int,
                                   K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                   O: UnsafeMutablePointer<T>, carryOut: Bool, scratch: inout Scratch<T>) {
        let dk = c.dk, dvp = c.dvp, lam = T(c.ridge)
        let A = scratch.take(n * n), B = scratch.take(n * n), W = scratch.take(n * n)
        let QS = scratch.take(n * dk), Ks = scratch.take(n * dk)
        let Vs = scratch.take(n * dvp), Tm = scratch.take(n * dvp), Qs = scratch.take(n * dk)
        let S0 = u.kv, gn = pw[n], g2n = pw[2 * n]
        let hasC = !c.masked || lam != 0                                                          // C is carried
        let Vd = hasC ? Mask.scaled(Vs, V, n, dvp, unit: pw.unit) { pw[n - 1 - $0] } : V      // Γ V (C's update)
        let Kd = Mask.scaled(Ks, K, n, dk, unit: pw.unit) { pw[n - 1 - $0] }                  // Γ K
        for j in 0..<u.group {
            let Qh = Q + j * n * dk, Oh = O + j * n * dvp, st = u.head(j)
            let C0 = st + cOffset(c)
            T.gemm(false, true, n, n, dk, 1, Qh, dk, K, dk, 0, A, n,               // A = Q Kᵀ (masked: lower half)
                   structure: c.masked ? .lowerC : [])
            Mask.transpose(B, A, n, upper: c.masked)                                 // B = Aᵀ (masked: upper)
            outputs(c, pw, n, u, j, K: K, V: V, Q: Qh, A: A, B: B, W: W, QS: QS, Tm: Tm, Qs: Qs, O: Oh)
            // Carry of this head (uses the old S0).
            if !carryOut { continue }
            if c.masked {                                                            // (QS is not read again)
                carryX(c, pw, n, B: B, Kd: Kd, QS: QS, X: QS)
                advanceU(c, n, st, g2n, X: QS, V: V)
            }
            if hasC {
                T.gemm(true, false, dk, dvp, n, 1, Qh, dk, Vd, dvp, gn, C0, dvp)    // C ← γⁿ C0 + Qᵀ Γ V
            }
        }
        if !carryOut { return }
        T.gram(dk, n, 1, K, dk, Kd, dk, gn, S0, dk)                                     // S ← γⁿ S0 + Kᵀ Γ K
    }

    /// The outputs of query head j (queries Q, n × dk) from A = Q Kᵀ (masked: its lower half; left as A ⊙ D) and
    /// B = Aᵀ (masked: its upper half): W = [(A ⊙ D) B + diag(γ^τ) Q S0 Qᵀ + λ Q Qᵀ] ⊙ D, then O = W V + the carry
    /// terms. QS receives diag(γ^τ) Q S0 (the carry reuses it); W (n × n), Tm (n × dvp) and Qs (n × dk) are
    /// scratch. Shared by `chunk` and `scanChunk`.
    @inline(__always)
    static func outputs<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ n: Int, _ u: Unit<T>, _ j: Int,
                                     K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                     A: UnsafeMutablePointer<T>, B: UnsafePointer<T>, W: UnsafeMutablePointer<T>,
                                     QS: UnsafeMutablePointer<T>, Tm: UnsafeMutablePointer<T>, Qs: UnsafeMutablePointer<T>,
                                     O: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp, lam = T(c.ridge)
        let S0 = u.kv, st = u.head(j), C0 = st + cOffset(c)
        Mask.lowerDecay(A, n, n, pw, 1)                                          // A ⊙ D
        T.gemm(false, false, n, n, n, 1, A, n, B, n, 0, W, n,                   // (A ⊙ D) B
               structure: c.masked ? [.lowerA, .upperB, .lowerC] : [.lowerA, .lowerC])
        T.gemm(false, false, n, dk, dk, 1, Q, dk, S0, dk, 0, QS, dk)           // Q S0
        Mask.scaleRows(QS, n, dk, dk) { pw[$0 + 1] }                             // diag(γ^τ) Q S0
        T.gemm(false, true, n, n, dk, 1, QS, dk, Q, dk, 1, W, n, structure: .lowerC)
        if lam != 0 { T.gemm(false, true, n, n, dk, lam, Q, dk, Q, dk, 1, W, n, structure: .lowerC) }
        Mask.lowerDecay(W, n, n, pw, 1)
        if c.masked {
            // O = (diag(γ^{2τ}) Q) U0 + W V in one pass over O (Qs: the scaled Q, n × dk scratch)
            let Q2 = Mask.scaled(Qs, Q, n, dk, unit: pw.unit) { pw[2 * ($0 + 1)] }
            T.gemm2(n, dvp, 1, 0, O, dvp, false, dk, Q2, dk, st, dvp, false, n, W, n, V, dvp, structure2: .lowerA)
        } else {
            // The carry terms first, into O itself; then O = W V + them.
            T.gemm(false, false, n, dvp, dk, 1, K, dk, C0, dvp, 0, Tm, dvp)     // K C0
            T.gemm2(n, dvp, 1, 0, O, dvp, false, dk, QS, dk, C0, dvp,           // diag(γ^τ) Q S0 C0 + (A ⊙ D) K C0
                    false, n, A, n, Tm, dvp, structure2: .lowerA)
            Mask.scaleRows(O, n, dvp, dvp) { pw[$0 + 1] }
            T.gemm(false, false, n, dvp, n, 1, W, n, V, dvp, 1, O, dvp, structure: .lowerA)   // O = W V + ...
        }
        if lam != 0 {
            T.gemm(false, false, n, dvp, dk, 1, Q, dk, C0, dvp, 0, Tm, dvp)    // Q C0
            Mask.scaleRows(Tm, n, dvp, dvp) { lam * pw[$0 + 1] }
            Mask.axpby(O, Tm, n * dvp, 1, 1)
        }
    }

    /// Masked: U ← γ²ⁿ U0 + Kᵀ Γ B Γ V + QSᵀ Γ² V (QS = diag(γ^τ) Q S0, the cross-term product; Γ = diag(γ^{n-τ}),
    /// τ = 1..n), formed as U ← γ²ⁿ U0 + Xᵀ V with X = Γ (Bᵀ Kd + Γ QS), Kd = Γ K: Kᵀ Γ B Γ V = (Γ Bᵀ Γ K)ᵀ V, and the
    /// middle term γⁿ S0 Qᵀ Γ V of the carry is (Γ² QS)ᵀ V (S0 symmetric). One n × dk × dv product and the
    /// triangular n × n × dk one, where summing Kᵀ (Γ B Γ V) and QSᵀ (Γ² V) took the triangular n × n × dv one and
    /// two n × dk × dv (hla2 at n = 32, dk = dv = 64: 18% of the chunk's multiply-adds fewer). Shared by `chunk` and
    /// `carry` (the same bits).
    @inline(__always)
    static func advanceU<T: HLAFloat>(_ c: Config, _ n: Int, _ st: UnsafeMutablePointer<T>, _ g2n: T,
                                      X: UnsafePointer<T>, V: UnsafePointer<T>) {
        T.gemm(true, false, c.dk, c.dvp, n, 1, X, c.dk, V, c.dvp, g2n, st, c.dvp)   // U ← γ²ⁿ U0 + Xᵀ V
    }

    /// X = Γ (Bᵀ Kd + Γ QS) of `advanceU` (n × dk) into X, which may be QS itself (overwritten). `chunkBackward`
    /// reads it back (`carry` keeps it).
    @inline(__always)
    static func carryX<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ n: Int, B: UnsafePointer<T>, Kd: UnsafePointer<T>,
                                    QS: UnsafePointer<T>, X: UnsafeMutablePointer<T>) {
        let dk = c.dk
        if X != UnsafeMutablePointer(mutating: QS) { for i in 0..<(n * dk) { X[i] = QS[i] } }
        Mask.scaleRows(X, n, dk, dk) { pw[n - 1 - $0] }                           // Γ QS
        T.gemm(true, false, n, dk, n, 1, B, n, Kd, dk, 1, X, dk, structure: .lowerA)   // + Bᵀ Γ K (Bᵀ lower)
        Mask.scaleRows(X, n, dk, dk) { pw[n - 1 - $0] }                           // X
    }

    /// Elements `carry` keeps per chunk for `chunkBackward` (masked, per query head: B, Γ₁ Q S0, X of `advanceU`).
    static func keepSize(_ c: Config, n: Int) -> Int { c.masked ? c.group * keepHead(c, n: n) : 0 }
    @inline(__always) static func keepHead(_ c: Config, n: Int) -> Int { n * n + 2 * n * c.dk }

    /// The carry update of `chunk` alone (no outputs), bit for bit the carry `chunk` leaves: the same products
    /// in the same order, minus those only the outputs need (A ⊙ D, W, W V, Q U0, the unmasked cross terms).
    /// `keep` (`keepSize` elements, or nil): receives the products `chunkBackward` would otherwise recompute.
    static func carry<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, n: Int,
                                   K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                   keep: UnsafeMutablePointer<T>?, carryOut: Bool, scratch: inout Scratch<T>) {
        if !carryOut && (keep == nil || keepSize(c, n: n) == 0) { return }   // nothing to keep
        let dk = c.dk, dvp = c.dvp, lam = T(c.ridge)
        let A = scratch.take(n * n), Bs = scratch.take(n * n)
        let QSs = scratch.take(n * dk), Ks = scratch.take(n * dk)
        let Vs = scratch.take(n * dvp)
        let S0 = u.kv, gn = pw[n], g2n = pw[2 * n]
        let hasC = !c.masked || lam != 0
        let Vd = hasC ? Mask.scaled(Vs, V, n, dvp, unit: pw.unit) { pw[n - 1 - $0] } : V      // (C's update only)
        let Kd = Mask.scaled(Ks, K, n, dk, unit: pw.unit) { pw[n - 1 - $0] }
        for j in 0..<u.group {
            let Qh = Q + j * n * dk, st = u.head(j)
            let C0 = st + cOffset(c)
            if c.masked {
                let kj = keep.map { $0 + j * keepHead(c, n: n) }
                let B = kj ?? Bs, QS = kj.map { $0 + n * n } ?? QSs
                T.gemm(false, true, n, n, dk, 1, Qh, dk, K, dk, 0, A, n, structure: .lowerC)   // A = Q Kᵀ, lower
                Mask.transpose(B, A, n, upper: true)                                 // B = Aᵀ, upper
                T.gemm(false, false, n, dk, dk, 1, Qh, dk, S0, dk, 0, QS, dk)       // Q S0
                Mask.scaleRows(QS, n, dk, dk) { pw[$0 + 1] }                         // diag(γ^τ) Q S0
                let X = kj.map { $0 + n * n + n * dk } ?? QS                           // (kept for the reverse)
                carryX(c, pw, n, B: B, Kd: Kd, QS: QS, X: X)
                if !carryOut { continue }                                            // (u is left as it was)
                advanceU(c, n, st, g2n, X: X, V: V)
            }
            if hasC {
                T.gemm(true, false, dk, dvp, n, 1, Qh, dk, Vd, dvp, gn, C0, dvp)    // C ← γⁿ C0 + Qᵀ Γ V
            }
        }
        if !carryOut { return }
        T.gram(dk, n, 1, K, dk, Kd, dk, gn, S0, dk)                                     // S ← γⁿ S0 + Kᵀ Γ K
    }
}
