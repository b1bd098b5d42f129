/// hla3 segment summaries and combine (docs/hla3.md). For A (n_A tokens) then B (n_B), ρ = γ^{n_B},
/// ρ_A = γ^{n_A}, and T = Q2_B P_A + X_B:
///   S = ρ S_A + S_B,  P = ρ P_A + P_B,
///   W = ρ³ W_A + W_B + S_A T + Z_B P_A,
///   Q2 = ρ³ Q2_A + ρ_A² Q2_B,  X = ρ³ X_A + ρ_A T,  Z = ρ³ Z_A + ρ_A (S_A Q2_B + Z_B).
/// Unmasked: S, P and S^Q each combine as ρ·A + B. Summary size 3dk² + 3dk·dv per head, not O(d³·dv).
extension HLA3 {
    static func summarize<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, n: Int,
                                       K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                       scratch: inout Scratch<T>) {
        let dk = c.dk, dvp = c.dvp
        let A = scratch.take(n * n), Bt = scratch.take(n * n), Y = scratch.take(n * dvp)
        let T2 = scratch.take(n * max(dk, dvp)), T3 = scratch.take(n * max(dk, dvp)), Ks = scratch.take(n * dk)
        let Kd = Mask.scaled(Ks, K, n, dk, unit: pw.unit) { pw[n - 1 - $0] }                  // Γ K
        T.gram(dk, n, 1, K, dk, Kd, dk, 0, u.kv, dk)                                    // S
        T.gemm(true, false, dk, dvp, n, 1, Kd, dk, V, dvp, 0, u.kv + dk * dk, dvp)  // P
        for j in 0..<u.group {
            let Qh = Q + j * n * dk, st = u.head(j)
            if c.masked {
                T.gemm(false, true, n, n, dk, 1, Qh, dk, K, dk, 0, A, n, structure: .lowerC)   // Bᵗ and A ⊙ D read its lower half
                Mask.transpose(Bt, A, n, upper: false)
                Mask.upperDecay(Bt, n, n, pw, 1)
                Mask.lowerDecay(A, n, n, pw, 1)
                T.gemm(false, false, n, dvp, n, 1, A, n, V, dvp, 0, Y, dvp, structure: .lowerA)  // Y = (A ⊙ D) V
                T.gemm(true, false, n, dk, n, 1, Bt, n, K, dk, 0, T3, dk, structure: .lowerA)    // R = Bᵗᵀ K
                summaryHead(c, pw, n, st, R: T3, Q: Qh, Y: Y, T2: T2)
            } else {
                let QG = Mask.scaled(T2, Qh, n, dk, unit: pw.unit) { pw[n - 1 - $0] }
                T.gram(dk, n, 1, Qh, dk, QG, dk, 0, st, dk)                             // S^Q
            }
        }
    }

    /// Masked: the summary's Bᵗ and Y⁰ = (A ⊙ D_1) V are the chunk's (the chunk's Y = (A ⊙ D_1) V + (diag(γ^τ) Q) P0
    /// is one chain over Y⁰'s terms then the carry's, so the tiles that form Y store Y⁰ on the way: gemm2's `mid`).
    static func scanChunk<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, _ s: Unit<T>, n: Int,
                                       K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                       O: UnsafeMutablePointer<T>, scratch: inout Scratch<T>) {
        guard c.masked else {
            return scanChunkSeparately(c, pw, u, s, n: n, K: K, V: V, Q: Q, O: O, scratch: scratch)
        }
        let dk = c.dk, dvp = c.dvp, d = max(dk, dvp)
        let A = scratch.take(n * n), Bt = scratch.take(n * n), M = scratch.take(n * n)
        let Y0 = scratch.take(n * dvp), Y = scratch.take(n * dvp), X1 = scratch.take(n * dk)
        let T2 = scratch.take(n * d), T3 = scratch.take(n * d), Ks = scratch.take(n * dk)
        let S0 = u.kv, P0 = u.kv + dk * dk
        let Kd = Mask.scaled(Ks, K, n, dk, unit: pw.unit) { pw[n - 1 - $0] }                  // Γ K
        T.gram(dk, n, 1, K, dk, Kd, dk, 0, s.kv, dk)                                    // summary S
        T.gemm(true, false, dk, dvp, n, 1, Kd, dk, V, dvp, 0, s.kv + dk * dk, dvp)  // summary P
        for j in 0..<u.group {
            let Qh = Q + j * n * dk, Oh = O + j * n * dvp, st = u.head(j)
            T.gemm(false, true, n, n, dk, 1, Qh, dk, K, dk, 0, A, n, structure: .lowerC)   // A = Q Kᵀ, lower half
            Mask.transpose(Bt, A, n, upper: true)                                     // (reads A's lower half only)
            Mask.upperDecay(Bt, n, n, pw, 1)                                         // Bᵗ
            T.gemm(true, false, n, dk, n, 1, Bt, n, K, dk, 0, T2, dk, structure: .lowerA)    // R = Bᵗᵀ K
            // M for the outputs as `chunk` forms it: (Q Zᵀ) ⊙ D_3, Z = diag(γ^u) Q S0 + R (`stateQ`: its tile adds
            // the product to C once, round(C + R), as the sum here does)
            T.gemm(false, false, n, dk, dk, 1, Qh, dk, S0, dk, 0, X1, dk)           // Q S0
            Mask.scaleRows(X1, n, dk, dk) { pw[$0 + 1] }
            Mask.axpby(X1, T2, n * dk, 1, 1)                                         // Z
            T.gemm(false, true, n, n, dk, 1, Qh, dk, X1, dk, 0, M, n, structure: .lowerC)
            Mask.lowerDecay(M, n, n, pw, 3)                                          // M
            let Qg = Mask.scaled(T3, Qh, n, dk, unit: pw.unit) { pw[$0 + 1] }         // diag(γ^τ) Q
            Mask.lowerDecay(A, n, n, pw, 1)                                          // A ⊙ D_1
            // Y⁰ = (A ⊙ D_1) V (`summarize`'s) and Y = Y⁰ + (diag(γ^τ) Q) P0 (`chunk`'s) from the same tiles
            T.gemm2(n, dvp, 1, 0, Y, dvp, false, n, A, n, V, dvp, false, dk, Qg, dk, P0, dvp, structure1: .lowerA, mid: Y0)
            summaryHead(c, pw, n, s.head(j), R: T2, Q: Qh, Y: Y0, T2: T3)             // the summary's blocks
            outputs(c, pw, n, st, Q: Qh, M: M, Y: Y, Qs: T3, O: Oh)                  // the outputs from the carry-in
        }
    }

    /// Masked: the query-head blocks W, Q2, X, Z of a chunk's summary into `st`, from R = Bᵗᵀ K (n × dk: Kᵀ Bᵗ = Rᵀ,
    /// so W = Kᵀ Bᵗ diag(·) Y and Z = Kᵀ Bᵗ diag(·) Q are each one n × dk × d product; before stop 50 each also took a
    /// triangular n × n × d one) and Y = (A ⊙ D_1) V. T2: n × max(dk, dvp) scratch. Shared by `summarize` and
    /// `scanChunk`.
    @inline(__always)
    static func summaryHead<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ n: Int, _ st: UnsafeMutablePointer<T>,
                                         R: UnsafePointer<T>, Q: UnsafePointer<T>, Y: UnsafePointer<T>,
                                         T2: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp
        let W = st, Q2 = st + dk * dvp, X = Q2 + dk * dk, Z = X + dk * dvp
        let Y3 = Mask.scaled(T2, Y, n, dvp, unit: pw.unit) { pw[3 * (n - 1 - $0)] }
        T.gemm(true, false, dk, dvp, n, 1, R, dk, Y3, dvp, 0, W, dvp)               // W
        let Qw = Mask.scaled(T2, Q, n, dk, unit: pw.unit) { pw[3 * (n - 1 - $0) + 2 * ($0 + 1)] }
        T.gram(dk, n, 1, Q, dk, Qw, dk, 0, Q2, dk)                                      // Q2
        let Y1 = Mask.scaled(T2, Y, n, dvp, unit: pw.unit) { pw[3 * (n - 1 - $0) + $0 + 1] }
        T.gemm(true, false, dk, dvp, n, 1, Q, dk, Y1, dvp, 0, X, dvp)               // X
        let Q1 = Mask.scaled(T2, Q, n, dk, unit: pw.unit) { pw[3 * (n - 1 - $0) + $0 + 1] }
        T.gemm(true, false, dk, dk, n, 1, R, dk, Q1, dk, 0, Z, dk)                  // Z
    }

    static func combine<T: HLAFloat>(_ c: Config, _ a: Unit<T>, nA: Int, _ b: Unit<T>, nB: Int, full: Bool,
                                     scratch: inout Scratch<T>) {
        let dk = c.dk, dvp = c.dvp
        let rho = Powers<T>.power(c.decay, nB), rho3 = rho * rho * rho
        let SA = a.kv, PA = a.kv + dk * dk
        if c.masked {
            let rhoA = Powers<T>.power(c.decay, nA)
            let Tm = scratch.take(dk * dvp), Tz = scratch.take(dk * dk)
            for j in 0..<a.group {
                let sa = a.head(j), sb = b.head(j)
                let Wa = sa, Q2a = sa + dk * dvp, Xa = Q2a + dk * dk, Za = Xa + dk * dvp
                let Wb = sb, Q2b = sb + dk * dvp, Xb = Q2b + dk * dk, Zb = Xb + dk * dvp
                T.gemm(false, false, dk, dvp, dk, 1, Q2b, dk, PA, dvp, 0, Tm, dvp)
                Mask.axpby(Tm, Xb, dk * dvp, 1, 1)                                  // T = Q2_B P_A + X_B
                Mask.axpby(Wa, Wb, dk * dvp, 1, rho3)
                T.gemm2(dk, dvp, 1, 1, Wa, dvp, false, dk, SA, dk, Tm, dvp, false, dk, Zb, dk, PA, dvp)   // W (+ S_A T + Z_B P_A)
                if full {
                    Mask.axpby(Xa, Tm, dk * dvp, rhoA, rho3)                         // X
                    T.gemm(false, false, dk, dk, dk, 1, SA, dk, Q2b, dk, 0, Tz, dk)
                    Mask.axpby(Tz, Zb, dk * dk, 1, 1)
                    Mask.axpby(Za, Tz, dk * dk, rhoA, rho3)                          // Z
                    Mask.axpby(Q2a, Q2b, dk * dk, rhoA * rhoA, rho3)                 // Q2
                }
            }
        } else {
            for j in 0..<a.group { Mask.axpby(a.head(j), b.head(j), dk * dk, 1, rho) }
        }
        Mask.axpby(SA, b.kv, dk * dk, 1, rho)
        Mask.axpby(PA, b.kv + dk * dk, dk * dvp, 1, rho)
    }
}
