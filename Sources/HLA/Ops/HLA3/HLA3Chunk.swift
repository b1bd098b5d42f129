/// hla3 chunked form. With A = Q Kᵀ, D_p[τ][u] = γ^{p(τ-u)} (u ≤ τ), Bᵗ[a][u] = (k_a·q_u) γ^{u-a} (a ≤ u),
/// rows τ = 1..n:
///   masked:   Y = (A ⊙ D_1) V + diag(γ^τ) Q P0                         (y_u = P_uᵀ q_u)
///             M = [A Bᵗ + Q S0 Qᵀ diag(γ^u)] ⊙ D_3 (formed from the rows S_u q_u: `stateQ`),   O = M Y + diag(γ^{3τ}) Q W0,
///             W ← γ³ⁿ W0 + S0 Qᵀ diag(γ^{3(n-u)+u}) Y + Kᵀ Bᵗ diag(γ^{3(n-u)}) Y;
///   unmasked: X1 = diag(γ^τ) Q S0 + (A ⊙ D_1) K,  X2 = diag(γ^τ) X1 S^Q_0 + ((X1 Qᵀ) ⊙ D_1) Q,
///             O = diag(γ^τ) X2 P0 + ((X2 Kᵀ) ⊙ D_1) V,  S^Q ← γⁿ S^Q_0 + Qᵀ Γ Q;
///   both:     S ← γⁿ S0 + Kᵀ Γ K,  P ← γⁿ P0 + Kᵀ Γ V   (Γ = diag(γ^{n-u})).
extension HLA3 {
    static func chunkScratch(_ c: Config, n: Int) -> Int {
        let d = max(c.dk, c.dvp)
        return Scratch<Double>.need([n * n, n * n, n * n, n * d, n * d, n * d, n * d, n * d, n * c.dk, c.dk * d, c.dk * d])
    }

    static func chunk<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, n: Int,
                                   K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                   O: UnsafeMutablePointer<T>, carryOut: Bool, scratch: inout Scratch<T>) {
        let dk = c.dk, dvp = c.dvp, d = max(dk, dvp)
        let A = scratch.take(n * n), Bt = scratch.take(n * n), M = scratch.take(n * n)
        let Y = scratch.take(n * d), X1 = scratch.take(n * d), X2 = scratch.take(n * d), T2 = scratch.take(n * d)
        let Kd = scratch.take(n * dk)
        let S0 = u.kv, P0 = u.kv + dk * dk, gn = pw[n]
        for j in 0..<u.group {
            let Qh = Q + j * n * dk, Oh = O + j * n * dvp, st = u.head(j)
            T.gemm(false, true, n, n, dk, 1, Qh, dk, K, dk, 0, A, n, structure: .lowerC)   // A = Q Kᵀ, lower half
            if c.masked {
                // M from the rows S_u q_u (`stateQ`), which W's update reads too: M = (Q Zᵀ) ⊙ D_3 with
                // Z = diag(γ^u) Q S0 + Bᵗᵀ K, one triangular n × n × dk product, where A Bᵗ + Q S0 Qᵀ diag(γ^u) took
                // it and the n × n × n one (before stop 50).
                Mask.transpose(Bt, A, n, upper: true)                                 // (reads A's lower half only)
                Mask.upperDecay(Bt, n, n, pw, 1)                                     // Bᵗ
                T.gemm(false, false, n, dk, dk, 1, Qh, dk, S0, dk, 0, X1, dk)       // Q S0
                stateQ(c, pw, n, Bt: Bt, K: K, X: X1)                                // Z, in X1
                T.gemm(false, true, n, n, dk, 1, Qh, dk, X1, dk, 0, M, n, structure: .lowerC)   // Q Zᵀ
                Mask.lowerDecay(M, n, n, pw, 3)                                      // M
                let Qg = Mask.scaled(X2, Qh, n, dk, unit: pw.unit) { pw[$0 + 1] }     // diag(γ^τ) Q
                Mask.lowerDecay(A, n, n, pw, 1)                                      // A ⊙ D_1
                T.gemm2(n, dvp, 1, 0, Y, dvp, false, n, A, n, V, dvp, false, dk, Qg, dk, P0, dvp, structure1: .lowerA)  // Y
                outputs(c, pw, n, st, Q: Qh, M: M, Y: Y, Qs: T2, O: Oh)
                if !carryOut { continue }
                xFromStateQ(c, pw, n, X: X1)                                         // X of `advanceW` (X1 not read again)
                advanceW(c, pw, n, st, X: X1, Y: Y)
            } else {
                // each as one pass over its result: X1 = (diag(γ^τ) Q) S0 + (A ⊙ D_1) K,
                // X2 = (diag(γ^τ) X1) S^Q_0 + M Q, O = (diag(γ^τ) X2) P0 + M V (T2: the scaled left factors)
                Mask.lowerDecay(A, n, n, pw, 1)
                let Qg = Mask.scaled(T2, Qh, n, dk, unit: pw.unit) { pw[$0 + 1] }
                T.gemm2(n, dk, 1, 0, X1, dk, false, dk, Qg, dk, S0, dk, false, n, A, n, K, dk, structure2: .lowerA)     // X1
                T.gemm(false, true, n, n, dk, 1, X1, dk, Qh, dk, 0, M, n, structure: .lowerC)
                Mask.lowerDecay(M, n, n, pw, 1)
                let X1g = Mask.scaled(T2, X1, n, dk, unit: pw.unit) { pw[$0 + 1] }
                T.gemm2(n, dk, 1, 0, X2, dk, false, dk, X1g, dk, st, dk, false, n, M, n, Qh, dk, structure2: .lowerA)  // X2
                T.gemm(false, true, n, n, dk, 1, X2, dk, K, dk, 0, M, n, structure: .lowerC)
                Mask.lowerDecay(M, n, n, pw, 1)
                let X2g = Mask.scaled(T2, X2, n, dk, unit: pw.unit) { pw[$0 + 1] }
                T.gemm2(n, dvp, 1, 0, Oh, dvp, false, dk, X2g, dk, P0, dvp, false, n, M, n, V, dvp, structure2: .lowerA) // O
                if !carryOut { continue }
                let QG = Mask.scaled(T2, Qh, n, dk, unit: pw.unit) { pw[n - 1 - $0] }
                T.gram(dk, n, 1, Qh, dk, QG, dk, gn, st, dk)                            // S^Q
            }
        }
        if !carryOut { return }
        let KG = Mask.scaled(Kd, K, n, dk, unit: pw.unit) { pw[n - 1 - $0] }   // Γ K
        T.gemm(true, false, dk, dvp, n, 1, KG, dk, V, dvp, gn, P0, dvp)             // P
        T.gram(dk, n, 1, K, dk, KG, dk, gn, S0, dk)                                     // S
    }

    /// Masked: O = (diag(γ^{3τ}) Q) W0 + M Y in one pass over O (W0: the query head's block `st`; M lower; Qs: n × dk
    /// scratch for the scaled Q). Shared by `chunk` and `scanChunk`.
    @inline(__always)
    static func outputs<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ n: Int, _ st: UnsafePointer<T>,
                                     Q: UnsafePointer<T>, M: UnsafePointer<T>, Y: UnsafePointer<T>,
                                     Qs: UnsafeMutablePointer<T>, O: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp
        let Q3 = Mask.scaled(Qs, Q, n, dk, unit: pw.unit) { pw[3 * ($0 + 1)] }
        T.gemm2(n, dvp, 1, 0, O, dvp, false, dk, Q3, dk, st, dvp, false, n, M, n, Y, dvp, structure2: .lowerA)   // O
    }

    /// Elements `carry` keeps per chunk for `chunkBackward` (masked, per query head: A = Q Kᵀ with its upper
    /// half zeroed, Bᵗ, the rows Z of `stateQ`, Y).
    static func keepSize(_ c: Config, n: Int) -> Int { c.masked ? c.group * keepHead(c, n: n) : 0 }
    @inline(__always) static func keepHead(_ c: Config, n: Int) -> Int { 2 * n * n + n * c.dk + n * c.dvp }

    /// The carry update of `chunk` alone (no outputs), bit for bit the carry `chunk` leaves (masked: Y, Q S0, Bᵗ,
    /// Z, X and W without M, Q W0 and M Y; unmasked: S^Q, no n × n product).
    /// `keep` (`keepSize` elements, or nil): receives the products `chunkBackward` would otherwise recompute.
    static func carry<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, n: Int,
                                   K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                   keep: UnsafeMutablePointer<T>?, carryOut: Bool, scratch: inout Scratch<T>) {
        if !carryOut && (keep == nil || keepSize(c, n: n) == 0) { return }   // nothing to keep
        let dk = c.dk, dvp = c.dvp, d = max(dk, dvp)
        let A = scratch.take(n * n), Bts = scratch.take(n * n)
        let Ys = scratch.take(n * d), X1s = scratch.take(n * d), T2 = scratch.take(n * d)
        let Ks = scratch.take(n * dk)
        let S0 = u.kv, P0 = u.kv + dk * dk, gn = pw[n]
        let Kd = Mask.scaled(Ks, K, n, dk, unit: pw.unit) { pw[n - 1 - $0] }    // Γ K
        for j in 0..<u.group {
            let Qh = Q + j * n * dk, st = u.head(j)
            if c.masked {
                let kj = keep.map { $0 + j * keepHead(c, n: n) }
                let Ar = kj ?? A, Bt = kj.map { $0 + n * n } ?? Bts
                let X1 = kj.map { $0 + 2 * n * n } ?? X1s, Y = kj.map { $0 + 2 * n * n + n * dk } ?? Ys   // X1: Q S0, then Z
                T.gemm(false, true, n, n, dk, 1, Qh, dk, K, dk, 0, Ar, n, structure: .lowerC)  // A = Q Kᵀ, lower half
                for r in 0..<n { for i in (r + 1)..<max(n, r + 1) { Ar[r * n + i] = 0 } }
                Mask.transpose(Bt, Ar, n, upper: false)
                Mask.upperDecay(Bt, n, n, pw, 1)                                     // Bᵗ
                T.gemm(false, false, n, dk, dk, 1, Qh, dk, S0, dk, 0, X1, dk)       // Q S0
                if kj != nil { for x in 0..<(n * n) { A[x] = Ar[x] } }
                Mask.lowerDecay(A, n, n, pw, 1)                                      // A ⊙ D_1
                let Qg = Mask.scaled(T2, Qh, n, dk, unit: pw.unit) { pw[$0 + 1] }           // as `chunk`
                T.gemm2(n, dvp, 1, 0, Y, dvp, false, n, A, n, V, dvp, false, dk, Qg, dk, P0, dvp, structure1: .lowerA)  // Y
                stateQ(c, pw, n, Bt: Bt, K: K, X: X1)                                // Z (kept for the reverse)
                if carryOut {
                    let X = Mask.scaled(T2, X1, n, dk, unit: pw.unit) { pw[3 * (n - 1 - $0)] }   // as `xFromStateQ`
                    advanceW(c, pw, n, st, X: X, Y: Y)
                }
            } else {
                let QG = Mask.scaled(T2, Qh, n, dk, unit: pw.unit) { pw[n - 1 - $0] }
                T.gram(dk, n, 1, Qh, dk, QG, dk, gn, st, dk)                            // S^Q
            }
        }
        if !carryOut { return }
        T.gemm(true, false, dk, dvp, n, 1, Kd, dk, V, dvp, gn, P0, dvp)             // P
        T.gram(dk, n, 1, K, dk, Kd, dk, gn, S0, dk)                                     // S
    }

    /// Masked: W ← γ³ⁿ W0 + S0 Qᵀ diag(γ^{3(n-u)+u}) Y + Kᵀ Bᵗ diag(γ^{3(n-u)}) Y, formed as W ← γ³ⁿ W0 + Xᵀ Y with
    /// X = diag(γ^{3(n-u)}) Z, Z = diag(γ^u) X1 + Bᵗᵀ K (S0 symmetric; X1 = Q S0, rows u = 1..n; `stateQ`): one
    /// n × dk × dv product and the triangular n × n × dk one, where summing X1ᵀ (diag(·) Y) and Kᵀ (Bᵗ diag(·) Y) took
    /// the triangular n × n × dv one and two n × dk × dv (at n = 32, dk = dv = 64: 13% of the chunk's multiply-adds
    /// fewer). Shared by `chunk` and `carry` (the same bits).
    @inline(__always)
    static func advanceW<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ n: Int, _ st: UnsafeMutablePointer<T>,
                                      X: UnsafePointer<T>, Y: UnsafePointer<T>) {
        T.gemm(true, false, c.dk, c.dvp, n, 1, X, c.dk, Y, c.dvp, pw[3 * n], st, c.dvp)   // W ← γ³ⁿ W0 + Xᵀ Y
    }

    /// X ← diag(γ^{3(n-u)}) X: `advanceW`'s X from `stateQ`'s rows, in place (`chunk` forms M from those rows
    /// first; `carry`, which keeps the rows for `chunkBackward`, scales a copy, the same products).
    @inline(__always)
    static func xFromStateQ<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ n: Int, X: UnsafeMutablePointer<T>) {
        Mask.scaleRows(X, n, c.dk, c.dk) { pw[3 * (n - 1 - $0)] }
    }

    /// X ← diag(γ^u) X + Bᵗᵀ K for X = Q S0 (n × dk): row u becomes S_u q_u, the state at token u applied to its query
    /// (S_u = γ^u S0 + Σ_{a ≤ u} γ^{u-a} k_a k_aᵀ). `chunk`'s M and W's update (`advanceW`) start from it.
    @inline(__always)
    static func stateQ<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ n: Int, Bt: UnsafePointer<T>, K: UnsafePointer<T>,
                                    X: UnsafeMutablePointer<T>) {
        let dk = c.dk
        Mask.scaleRows(X, n, dk, dk) { pw[$0 + 1] }                               // diag(γ^u) Q S0
        T.gemm(true, false, n, dk, n, 1, Bt, n, K, dk, 1, X, dk, structure: .lowerA)   // + Bᵗᵀ K (Bᵗᵀ lower)
    }
}
