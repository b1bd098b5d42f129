/// ahla segment summaries and combine (docs/spec.md §3.3). For A then B (ρ = γ^{n_B}):
///   P = ρ P_A + P_B;  masked: E = ρ E_A + E_B + ρ R⁰_B P_A,  R⁰ = R⁰_A + R⁰_B (no attenuation:
///   the weight γ^{t-j} of a pair with j in A and i in B does not depend on i);
///   unmasked: R = ρ R_A + R_B.
extension AHLA {
    static func summarize<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, n: Int,
                                       K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                       scratch: inout Scratch<T>) {
        let dk = c.dk, dvp = c.dvp
        let A = scratch.take(n * n), Y = scratch.take(n * dvp), Ks = scratch.take(n * dk)
        let Kd = Mask.scaled(Ks, K, n, dk, unit: pw.unit) { pw[n - 1 - $0] }                  // Γ K
        T.gemm(true, false, dk, dvp, n, 1, Kd, dk, V, dvp, 0, u.kv, dvp)            // P = Kᵀ Γ V
        for j in 0..<u.group {
            let Qh = Q + j * n * dk, st = u.head(j)
            if c.masked {
                T.gemm(false, true, n, n, dk, 1, Qh, dk, K, dk, 0, A, n, structure: .lowerC)
                Mask.lowerDecay(A, n, n, pw, 1)
                T.gemm(false, false, n, dvp, n, 1, A, n, V, dvp, 0, Y, dvp, structure: .lowerA)  // Y = (A ⊙ D) V
                T.gemm(true, false, dk, dvp, n, 1, Kd, dk, Y, dvp, 0, st, dvp)       // E = Kᵀ Γ Y
                T.gemm(true, false, dk, dk, n, 1, K, dk, Qh, dk, 0, st + dk * dvp, dk) // R⁰ = Kᵀ Q
            } else {
                T.gemm(true, false, dk, dk, n, 1, Kd, dk, Qh, dk, 0, st, dk)         // R = Kᵀ Γ Q
            }
        }
    }

    /// Masked: the summary's A ⊙ D and Y⁰ = (A ⊙ D) V are the chunk's; its Y = (A ⊙ D) V + (diag(γ^τ) Q) P0 is one
    /// chain over the terms of Y⁰ then those of the carry's, so the tiles that form Y store Y⁰ on the way (gemm2's
    /// `mid`): the same bits as the two calls.
    static func scanChunk<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, _ s: Unit<T>, n: Int,
                                       K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                       O: UnsafeMutablePointer<T>, scratch: inout Scratch<T>) {
        guard c.masked else {
            return scanChunkSeparately(c, pw, u, s, n: n, K: K, V: V, Q: Q, O: O, scratch: scratch)
        }
        let dk = c.dk, dvp = c.dvp
        let A = scratch.take(n * n), Y0 = scratch.take(n * dvp), Y = scratch.take(n * dvp)
        let Ks = scratch.take(n * dk), Qs = scratch.take(n * dk)
        let P0 = u.kv
        let Kd = Mask.scaled(Ks, K, n, dk, unit: pw.unit) { pw[n - 1 - $0] }                  // Γ K
        T.gemm(true, false, dk, dvp, n, 1, Kd, dk, V, dvp, 0, s.kv, dvp)            // summary P = Kᵀ Γ V
        for j in 0..<u.group {
            let Qh = Q + j * n * dk, Oh = O + j * n * dvp, st = u.head(j), ss = s.head(j)
            T.gemm(false, true, n, n, dk, 1, Qh, dk, K, dk, 0, A, n, structure: .lowerC)
            Mask.lowerDecay(A, n, n, pw, 1)                                          // A ⊙ D
            // Y⁰ = (A ⊙ D) V (`summarize`'s) and Y = Y⁰ + (diag(γ^τ) Q) P0 (`chunk`'s) from the same tiles
            let Qg = Mask.scaled(Qs, Qh, n, dk, unit: pw.unit) { pw[$0 + 1] }
            T.gemm2(n, dvp, 1, 0, Y, dvp, false, n, A, n, V, dvp, false, dk, Qg, dk, P0, dvp, structure1: .lowerA, mid: Y0)
            T.gemm(true, false, dk, dvp, n, 1, Kd, dk, Y0, dvp, 0, ss, dvp)          // summary E = Kᵀ Γ Y⁰
            T.gemm(true, false, dk, dk, n, 1, K, dk, Qh, dk, 0, ss + dk * dvp, dk)  // summary R⁰ = Kᵀ Q
            outputs(c, n, st, Qg: Qg, A: A, Y: Y, O: Oh)                              // O (as `chunk`)
        }
    }

    static func combine<T: HLAFloat>(_ c: Config, _ a: Unit<T>, nA: Int, _ b: Unit<T>, nB: Int, full: Bool,
                                     scratch: inout Scratch<T>) {
        let dk = c.dk, dvp = c.dvp
        let rho = Powers<T>.power(c.decay, nB)
        for j in 0..<a.group {
            let sa = a.head(j), sb = b.head(j)
            if c.masked {
                Mask.axpby(sa, sb, dk * dvp, 1, rho)
                T.gemm(false, false, dk, dvp, dk, rho, sb + dk * dvp, dk, a.kv, dvp, 1, sa, dvp)
                if full { Mask.axpby(sa + dk * dvp, sb + dk * dvp, dk * dk, 1, 1) }
            } else {
                Mask.axpby(sa, sb, dk * dk, 1, rho)
            }
        }
        Mask.axpby(a.kv, b.kv, dk * dvp, 1, rho)
    }
}
