/// hla2 segment summaries and their combine (docs/spec.md §3.2, corrected decay rule).
///
/// A summary of n tokens holds S, U (masked) and C of those tokens alone. For A then B (ρ = γ^{n_B}):
///   S = ρ S_A + S_B,   C = ρ C_A + C_B,   U = ρ² U_A + U_B + ρ S_A C_B.
/// (The paper's printed ρ_B G_A + G_B + S_B ρ_B C_A disagrees with the serial recurrence when γ < 1.)
extension HLA2 {
    static func summarize<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, n: Int,
                                       K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                       scratch: inout Scratch<T>) {
        let dk = c.dk, dvp = c.dvp
        let A = scratch.take(n * n), Y0 = scratch.take(n * dk), X0 = scratch.take(n * dk)
        let Ks = scratch.take(n * dk), Vs = scratch.take(n * dvp)
        let Vd = Mask.scaled(Vs, V, n, dvp, unit: pw.unit) { pw[n - 1 - $0] }                 // Γ V
        let Kd = Mask.scaled(Ks, K, n, dk, unit: pw.unit) { pw[n - 1 - $0] }                  // Γ K
        T.gram(dk, n, 1, K, dk, Kd, dk, 0, u.kv, dk)                                    // S = Kᵀ Γ K
        for j in 0..<u.group {
            let Qh = Q + j * n * dk, st = u.head(j)
            T.gemm(true, false, dk, dvp, n, 1, Qh, dk, Vd, dvp, 0, st + cOffset(c), dvp)   // C = Qᵀ Γ V
            if c.masked {
                T.gemm(false, true, n, n, dk, 1, Qh, dk, K, dk, 0, A, n, structure: .lowerC)
                summaryU(c, pw, n, st, A: A, K: K, V: V, Y0: Y0, X0: X0)
            }
        }
    }

    /// Masked: the summary's U = Kᵀ Γ B Γ V (B = K Qᵀ, i ≤ j) of the chunk alone, formed as (Γ² Y⁰)ᵀ V with
    /// Y⁰ = (A ⊙ D) K, whose row j is S_j q_j of the chunk's tokens alone (as `HLA2.advanceU`; A = Q Kᵀ's lower half
    /// is left as A ⊙ D). X0 (n × dk) is scratch. Shared by `summarize` and `scanChunk` (the same bits).
    @inline(__always)
    static func summaryU<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ n: Int, _ st: UnsafeMutablePointer<T>,
                                      A: UnsafeMutablePointer<T>, K: UnsafePointer<T>, V: UnsafePointer<T>,
                                      Y0: UnsafeMutablePointer<T>, X0: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp
        Mask.lowerDecay(A, n, n, pw, 1)                                          // A ⊙ D
        T.gemm(false, false, n, dk, n, 1, A, n, K, dk, 0, Y0, dk, structure: .lowerA)  // Y⁰ = (A ⊙ D) K
        T.gemm(true, false, dk, dvp, n, 1, carryX(c, pw, n, Y: Y0, into: X0), dk, V, dvp, 0, st, dvp)   // U = (Γ² Y⁰)ᵀ V
    }

    /// Masked: the chunk's outputs (as `chunk`) and its summary from the same A ⊙ D and Y⁰ = (A ⊙ D) K: the outputs'
    /// Y = round(diag(γ^τ) Q S0 + Y⁰) is the one `stateQ` forms (its tile adds Y⁰'s chain to Q S0 in one rounding), so
    /// the bits are `chunk`'s and `summarize`'s. Γ V is formed once.
    static func scanChunk<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, _ s: Unit<T>, n: Int,
                                       K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                       O: UnsafeMutablePointer<T>, scratch: inout Scratch<T>) {
        guard c.masked else {
            return scanChunkSeparately(c, pw, u, s, n: n, K: K, V: V, Q: Q, O: O, scratch: scratch)
        }
        let dk = c.dk, dvp = c.dvp
        let A = scratch.take(n * n), Wl = scratch.take(n * n), W = scratch.take(n * n)
        let Y = scratch.take(n * dk), Ks = scratch.take(n * dk), Y0 = scratch.take(n * dk)
        let Vs = scratch.take(n * dvp), Tm = scratch.take(n * dvp), Qs = scratch.take(n * dk)
        let S0 = u.kv
        let Vd = Mask.scaled(Vs, V, n, dvp, unit: pw.unit) { pw[n - 1 - $0] }                 // Γ V
        let Kd = Mask.scaled(Ks, K, n, dk, unit: pw.unit) { pw[n - 1 - $0] }                  // Γ K
        T.gram(dk, n, 1, K, dk, Kd, dk, 0, s.kv, dk)                                    // summary S = Kᵀ Γ K
        for j in 0..<u.group {
            let Qh = Q + j * n * dk, Oh = O + j * n * dvp, ss = s.head(j)
            T.gemm(false, true, n, n, dk, 1, Qh, dk, K, dk, 0, A, n, structure: .lowerC)   // A = Q Kᵀ, lower half
            // the summary of the chunk alone: C = Qᵀ Γ V, U = (Γ² Y⁰)ᵀ V
            T.gemm(true, false, dk, dvp, n, 1, Qh, dk, Vd, dvp, 0, ss + cOffset(c), dvp)
            summaryU(c, pw, n, ss, A: A, K: K, V: V, Y0: Y0, X0: Qs)
            // Y = diag(γ^τ) Q S0 + Y⁰, then the outputs as `chunk`
            T.gemm(false, false, n, dk, dk, 1, Qh, dk, S0, dk, 0, Y, dk)
            Mask.scaleRows(Y, n, dk, dk) { pw[$0 + 1] }
            Mask.axpby(Y, Y0, n * dk, 1, 1)
            outputs(c, pw, n, u, j, V: V, Q: Qh, W: W, Wl: Wl, Y: Y, Tm: Tm, Qs: Qs, O: Oh)
        }
    }

    static func combine<T: HLAFloat>(_ c: Config, _ a: Unit<T>, nA: Int, _ b: Unit<T>, nB: Int, full: Bool,
                                     scratch: inout Scratch<T>) {
        let dk = c.dk, dvp = c.dvp, m = dk * dvp
        let rho = Powers<T>.power(c.decay, nB)
        let keepC = !c.masked || c.ridge != 0 || full
        for j in 0..<a.group {
            let sa = a.head(j), sb = b.head(j), off = cOffset(c)
            if c.masked {
                Mask.axpby(sa, sb, m, 1, rho * rho)                                  // ρ² U_A + U_B
                T.gemm(false, false, dk, dvp, dk, rho, a.kv, dk, sb + off, dvp, 1, sa, dvp)  // + ρ S_A C_B
            }
            if keepC { Mask.axpby(sa + off, sb + off, m, 1, rho) }
        }
        Mask.axpby(a.kv, b.kv, dk * dk, 1, rho)
    }
}
