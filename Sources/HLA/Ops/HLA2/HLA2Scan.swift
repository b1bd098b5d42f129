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
        let B = scratch.take(n * n), A = scratch.take(n * n)
        let Ks = scratch.take(n * dk), Vs = scratch.take(n * dvp), Tm = scratch.take(n * dvp)
        let Vd = Mask.scaled(Vs, V, n, dvp, unit: pw.unit) { pw[n - 1 - $0] }                 // Γ V
        let Kd = Mask.scaled(Ks, K, n, dk, unit: pw.unit) { pw[n - 1 - $0] }                  // Γ K
        T.gram(dk, n, 1, K, dk, Kd, dk, 0, u.kv, dk)                                    // S = Kᵀ Γ K
        for j in 0..<u.group {
            let Qh = Q + j * n * dk, st = u.head(j)
            T.gemm(true, false, dk, dvp, n, 1, Qh, dk, Vd, dvp, 0, st + cOffset(c), dvp)   // C = Qᵀ Γ V
            if c.masked {
                // B = K Qᵀ, i ≤ j, as the transpose of the lower half of Q Kᵀ (half the products; each
                // element the same sum of the same products in the same order, so the same bits)
                T.gemm(false, true, n, n, dk, 1, Qh, dk, K, dk, 0, A, n, structure: .lowerC)
                Mask.transpose(B, A, n, upper: true)
                T.gemm(false, false, n, dvp, n, 1, B, n, Vd, dvp, 0, Tm, dvp, structure: .upperA)
                Mask.scaleRows(Tm, n, dvp, dvp) { pw[n - 1 - $0] }
                T.gemm(true, false, dk, dvp, n, 1, K, dk, Tm, dvp, 0, st, dvp)      // U = Kᵀ Γ B Γ V
            }
        }
    }

    /// Masked: the summary's B (the transpose of Q Kᵀ's lower half) is the chunk's, and Γ K, Γ V are formed
    /// once.
    static func scanChunk<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, _ s: Unit<T>, n: Int,
                                       K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                       O: UnsafeMutablePointer<T>, scratch: inout Scratch<T>) {
        guard c.masked else {
            return scanChunkSeparately(c, pw, u, s, n: n, K: K, V: V, Q: Q, O: O, scratch: scratch)
        }
        let dk = c.dk, dvp = c.dvp
        let A = scratch.take(n * n), B = scratch.take(n * n), W = scratch.take(n * n)
        let QS = scratch.take(n * dk), Ks = scratch.take(n * dk)
        let Vs = scratch.take(n * dvp), Tm = scratch.take(n * dvp), Qs = scratch.take(n * dk)
        let Vd = Mask.scaled(Vs, V, n, dvp, unit: pw.unit) { pw[n - 1 - $0] }                 // Γ V
        let Kd = Mask.scaled(Ks, K, n, dk, unit: pw.unit) { pw[n - 1 - $0] }                  // Γ K
        T.gram(dk, n, 1, K, dk, Kd, dk, 0, s.kv, dk)                                    // summary S = Kᵀ Γ K
        for j in 0..<u.group {
            let Qh = Q + j * n * dk, Oh = O + j * n * dvp, ss = s.head(j)
            T.gemm(false, true, n, n, dk, 1, Qh, dk, K, dk, 0, A, n, structure: .lowerC)   // A = Q Kᵀ, lower half
            Mask.transpose(B, A, n, upper: true)                                     // B = Aᵀ, upper half
            // the summary of the chunk alone: C = Qᵀ Γ V, U = Kᵀ Γ B Γ V
            T.gemm(true, false, dk, dvp, n, 1, Qh, dk, Vd, dvp, 0, ss + cOffset(c), dvp)
            T.gemm(false, false, n, dvp, n, 1, B, n, Vd, dvp, 0, Tm, dvp, structure: .upperA)
            Mask.scaleRows(Tm, n, dvp, dvp) { pw[n - 1 - $0] }
            T.gemm(true, false, dk, dvp, n, 1, K, dk, Tm, dvp, 0, ss, dvp)
            outputs(c, pw, n, u, j, K: K, V: V, Q: Qh, A: A, B: B, W: W, QS: QS, Tm: Tm, Qs: Qs, O: Oh)   // as `chunk`
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
