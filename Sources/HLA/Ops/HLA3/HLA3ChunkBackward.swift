/// hla3 chunked backward (docs/gradients.md §10): the reverse of `HLA3.chunk` for one chunk, as dense products.
/// Forward (HLA3Chunk.swift), A = Q Kᵀ, D_p[τ][u] = γ^{p(τ-u)} (u ≤ τ), Bᵗ[a][u] = A[u][a] γ^{u-a} (a ≤ u),
/// Γ_p = diag(γ^{pτ}), Γn = diag(γ^{n-τ}), Λb = diag(γ^{3(n-u)}):
///   masked:   Z = Γ₁ Q S0 + Bᵗᵀ K (rows S_u q_u),  M = (Q Zᵀ) ⊙ D_3,  Y = (A ⊙ D_1) V + Γ₁ Q P0,
///             O = M Y + Γ₃ Q W0,  W1 = γ³ⁿ W0 + Xᵀ Y,  X = Λb Z (HLA3.stateQ, HLA3.advanceW);
///   unmasked: X1 = Γ₁ Q S0 + (A ⊙ D_1) K,  Mx = (X1 Qᵀ) ⊙ D_1,  X2 = Γ₁ X1 S^Q_0 + Mx Q,
///             My = (X2 Kᵀ) ⊙ D_1,  O = Γ₁ X2 P0 + My V,  S^Q_1 = γⁿ S^Q_0 + Qᵀ Γn Q;
///   both:     S1 = γⁿ S0 + Kᵀ Γn K,  P1 = γⁿ P0 + Kᵀ Γn V.
/// Given G = ∂L/∂O and the carry-out adjoints in `d`, writes dQ, dK, dV and replaces `d` by the carry-in adjoints.
extension HLA3: ChunkBackward {
    static func chunkBackwardScratch(_ c: Config, n: Int) -> Int {
        let nd = n * max(c.dk, c.dvp)
        return Scratch<Double>.need([n * n, n * n, n * n, n * n, n * n,
                                     nd, nd, nd, nd, nd, nd, nd, nd, c.dk * c.dk, c.dk * c.dvp, c.dk * c.dk])
    }

    /// `kept`: what `carry` kept for this chunk (masked: A with its upper half zeroed, Bᵗ, Z, Y per head).
    static func chunkBackward<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, _ d: Unit<T>, n: Int,
                                           kept: UnsafePointer<T>,
                                           K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                           G: UnsafePointer<T>, dK: UnsafeMutablePointer<T>,
                                           dV: UnsafeMutablePointer<T>, dQ: UnsafeMutablePointer<T>,
                                           scratch: inout Scratch<T>) {
        let dk = c.dk, dvp = c.dvp, gn = pw[n], g3n = pw[3 * n]
        let A = scratch.take(n * n), Bts = scratch.take(n * n), M = scratch.take(n * n)
        let dM = scratch.take(n * n), dA = scratch.take(n * n)
        let nd = n * max(dk, dvp)
        let dY = scratch.take(nd), X1s = scratch.take(nd), X2 = scratch.take(nd)
        let dX1 = scratch.take(nd), dX2 = scratch.take(nd), Tm = scratch.take(nd), Tm2 = scratch.take(nd)
        let Kd = scratch.take(nd), dSacc = scratch.take(dk * dk), dPacc = scratch.take(dk * dvp)
        let dS2 = scratch.take(dk * dk)
        let S0 = u.kv, P0 = u.kv + dk * dk, dS = d.kv, dP = d.kv + dk * dk
        Mask.scaledCopy(Kd, K, n, dk) { pw[n - 1 - $0] }                              // Γn K
        for x in 0..<(n * dk) { dK[x] = 0 }
        for x in 0..<(n * dvp) { dV[x] = 0 }
        for x in 0..<(dk * dk) { dSacc[x] = 0 }
        for x in 0..<(dk * dvp) { dPacc[x] = 0 }
        for j in 0..<u.group {
            let Qh = Q + j * n * dk, Gh = G + j * n * dvp, dQh = dQ + j * n * dk
            let st = u.head(j), ds = d.head(j)
            if c.masked {
                let W0 = st, dW = ds
                // A (upper half zeroed), Bᵗ, the rows Z = Γ₁ Q S0 + Bᵗᵀ K of `stateQ` and Y = (A ⊙ D_1) V + Γ₁ Q P0
                // as `carry` kept them
                let kj = kept + j * keepHead(c, n: n)
                let Ar = kj, Bt = kj + n * n, Z = kj + 2 * n * n, Y = Z + n * dk
                T.gemm(false, true, n, n, dk, 1, Qh, dk, Z, dk, 0, M, n, structure: .lowerC)   // Q Zᵀ
                Mask.lowerDecay(M, n, n, pw, 3)                                        // M
                for x in 0..<(n * n) { A[x] = Ar[x] }
                Mask.lowerDecay(A, n, n, pw, 1)                                        // A ⊙ D_1
                // O = M Y + Γ₃ Q W0;  W1 = γ³ⁿ W0 + Xᵀ Y, X = Λb Z
                T.gemm(true, false, n, dvp, n, 1, M, n, Gh, dvp, 0, dY, dvp, structure: .upperA)  // dY = Mᵀ G
                let X = Mask.scaled(X2, Z, n, dk, unit: pw.unit) { pw[3 * (n - 1 - $0)] }     // X = Λb Z
                T.gemm(false, false, n, dvp, dk, 1, X, dk, dW, dvp, 0, Tm, dvp)
                Mask.axpby(dY, Tm, n * dvp, 1, 1)                                      //    + X dW1
                let dZ = Tm2
                T.gemm(false, true, n, dk, dvp, 1, Y, dvp, dW, dvp, 0, dZ, dk)       // dX = Y dW1ᵀ
                Mask.scaleRows(dZ, n, dk, dk) { pw[3 * (n - 1 - $0)] }                 // dZ = Λb dX (+ M's part below)
                // dW0 (dW1 no longer needed)
                Mask.scaledCopy(Tm, Gh, n, dvp) { pw[3 * ($0 + 1)] }                   // Γ₃ G
                T.gemm(false, true, n, dk, dvp, 1, Tm, dvp, W0, dvp, 0, dQh, dk)     // dQ = Γ₃ G W0ᵀ
                T.gemm(true, false, dk, dvp, n, 1, Qh, dk, Tm, dvp, g3n, dW, dvp)    // dW0 = γ³ⁿ dW1 + Qᵀ Γ₃ G
                // M = (Q Zᵀ) ⊙ D_3
                T.gemm(false, true, n, n, dvp, 1, Gh, dvp, Y, dvp, 0, dM, n, structure: .lowerC)  // dM = G Yᵀ
                Mask.lowerDecay(dM, n, n, pw, 3)
                T.gemm(false, false, n, dk, n, 1, dM, n, Z, dk, 1, dQh, dk, structure: .lowerA)   // dQ += dM Z
                T.gemm(true, false, n, dk, n, 1, dM, n, Qh, dk, 1, dZ, dk, structure: .upperA)    // dZ += dMᵀ Q
                // Z = Γ₁ Q S0 + Bᵗᵀ K, Bᵗ[a][u] = A[u][a] γ^{u-a} (a ≤ u)
                T.gemm(false, false, n, dk, n, 1, Bt, n, dZ, dk, 1, dK, dk, structure: .upperA)   // dK += Bᵗ dZ
                T.gemm(false, true, n, n, dk, 1, dZ, dk, K, dk, 0, dA, n, structure: .lowerC)     // dBᵗᵀ = dZ Kᵀ
                Mask.scaledCopy(dX1, dZ, n, dk) { pw[$0 + 1] }                         // Γ₁ dZ
                T.gemm(false, true, n, dk, dk, 1, dX1, dk, S0, dk, 1, dQh, dk)       // dQ += Γ₁ dZ S0ᵀ
                T.gemm(true, false, dk, dk, n, 1, Qh, dk, dX1, dk, 1, dSacc, dk)     // dS0 += Qᵀ Γ₁ dZ
                // Y = (A ⊙ D_1) V + Γ₁ Q P0
                T.gemm(false, true, n, n, dvp, 1, dY, dvp, V, dvp, 1, dA, n, structure: .lowerC)  //   + dY Vᵀ
                T.gemm(true, false, n, dvp, n, 1, A, n, dY, dvp, 1, dV, dvp, structure: .upperA)  // dV += AD1ᵀ dY
                Mask.scaledCopy(Tm, dY, n, dvp) { pw[$0 + 1] }                         // Γ₁ dY
                T.gemm(false, true, n, dk, dvp, 1, Tm, dvp, P0, dvp, 1, dQh, dk)     // dQ += Γ₁ dY P0ᵀ
                T.gemm(true, false, dk, dvp, n, 1, Qh, dk, Tm, dvp, 1, dPacc, dvp)   // dP0 += Qᵀ Γ₁ dY
                // dA = (dY Vᵀ + dBᵗᵀ) ⊙ D_1: A reaches Y as A ⊙ D_1 and Z through Bᵗ, the same decay transposed
                Mask.lowerDecay(dA, n, n, pw, 1)
            } else {
                let SQ0 = st, dSQ = ds, Bt = Bts, X1 = X1s
                T.gemm(false, true, n, n, dk, 1, Qh, dk, K, dk, 0, A, n)             // A (raw)
                Mask.lowerDecay(A, n, n, pw, 1)                                        // AD
                T.gemm(false, false, n, dk, dk, 1, Qh, dk, S0, dk, 0, X1, dk)
                Mask.scaleRows(X1, n, dk, dk) { pw[$0 + 1] }
                T.gemm(false, false, n, dk, n, 1, A, n, K, dk, 1, X1, dk)            // X1
                T.gemm(false, true, n, n, dk, 1, X1, dk, Qh, dk, 0, M, n)
                Mask.lowerDecay(M, n, n, pw, 1)                                        // Mx
                T.gemm(false, false, n, dk, dk, 1, X1, dk, SQ0, dk, 0, X2, dk)
                Mask.scaleRows(X2, n, dk, dk) { pw[$0 + 1] }
                T.gemm(false, false, n, dk, n, 1, M, n, Qh, dk, 1, X2, dk)           // X2
                // O = Γ₁ X2 P0 + My V, My = (X2 Kᵀ) ⊙ D_1 (in Bt, its adjoint in dM)
                Mask.scaledCopy(Tm, Gh, n, dvp) { pw[$0 + 1] }                         // Γ₁ G
                Adj.projectedOutput(n, dk, dvp, pw, X: X2, K: K, V: V, P0: P0, G: Gh, G1: Tm, W: Bt, dW: dM,
                                    dX: dX2, dP0: dPacc, dV: dV, dK: dK)
                // S^Q_1 = γⁿ S^Q_0 + Qᵀ Γn Q (dSQ still holds dS^Q_1)
                Mask.scaledCopy(Tm, Qh, n, dk) { pw[n - 1 - $0] }                      // Γn Q
                T.gemm(false, false, n, dk, dk, 1, Tm, dk, dSQ, dk, 0, dQh, dk)      // dQ = Γn Q dS^Q_1
                T.gemm(false, true, n, dk, dk, 1, Tm, dk, dSQ, dk, 1, dQh, dk)       //    + Γn Q dS^Q_1ᵀ
                // X2 = Γ₁ X1 S^Q_0 + Mx Q
                Mask.scaledCopy(Tm, dX2, n, dk) { pw[$0 + 1] }                         // Γ₁ dX2
                T.gemm(false, true, n, dk, dk, 1, Tm, dk, SQ0, dk, 0, dX1, dk)       // dX1 = Γ₁ dX2 S^Q_0ᵀ
                T.gemm(true, false, dk, dk, n, 1, X1, dk, Tm, dk, gn, dSQ, dk)       // dS^Q_0 = γⁿ dS^Q_1 + X1ᵀ Γ₁ dX2
                T.gemm(true, false, n, dk, n, 1, M, n, dX2, dk, 1, dQh, dk)          // dQ += Mxᵀ dX2
                T.gemm(false, true, n, n, dk, 1, dX2, dk, Qh, dk, 0, dM, n)
                Mask.lowerDecay(dM, n, n, pw, 1)                                       // dMx
                T.gemm(false, false, n, dk, n, 1, dM, n, Qh, dk, 1, dX1, dk)         // dX1 += dMx Q
                T.gemm(true, false, n, dk, n, 1, dM, n, X1, dk, 1, dQh, dk)          // dQ += dMxᵀ X1
                // X1 = Γ₁ Q S0 + AD K
                Mask.scaledCopy(Tm, dX1, n, dk) { pw[$0 + 1] }                         // Γ₁ dX1
                T.gemm(false, true, n, dk, dk, 1, Tm, dk, S0, dk, 1, dQh, dk)        // dQ += Γ₁ dX1 S0ᵀ
                T.gemm(true, false, dk, dk, n, 1, Qh, dk, Tm, dk, 1, dSacc, dk)      // dS0 += Qᵀ Γ₁ dX1
                T.gemm(true, false, n, dk, n, 1, A, n, dX1, dk, 1, dK, dk)           // dK += ADᵀ dX1
                T.gemm(false, true, n, n, dk, 1, dX1, dk, K, dk, 0, dA, n)
                Mask.lowerDecay(dA, n, n, pw, 1)                                       // dA = (dX1 Kᵀ) ⊙ D_1
            }
            T.gemm(false, false, n, dk, n, 1, dA, n, K, dk, 1, dQh, dk, structure: .lowerA)   // dQ += dA K (dA lower)
            T.gemm(true, false, n, dk, n, 1, dA, n, Qh, dk, 1, dK, dk, structure: .upperA)    // dK += dAᵀ Q
        }
        // S1 = γⁿ S0 + Kᵀ Γn K,  P1 = γⁿ P0 + Kᵀ Γn V
        for a in 0..<dk { for b in 0..<dk { dS2[a * dk + b] = dS[a * dk + b] + dS[b * dk + a] } }
        T.gemm(false, false, n, dk, dk, 1, Kd, dk, dS2, dk, 1, dK, dk)               // dK += Γn K (dS1 + dS1ᵀ)
        T.gemm(false, true, n, dk, dvp, 1, V, dvp, dP, dvp, 0, Tm, dk)
        Mask.scaleRows(Tm, n, dk, dk) { pw[n - 1 - $0] }
        Mask.axpby(dK, Tm, n * dk, 1, 1)                                               // dK += Γn V dP1ᵀ
        T.gemm(false, false, n, dvp, dk, 1, Kd, dk, dP, dvp, 1, dV, dvp)             // dV += Γn K dP1
        Mask.axpby(dS, dSacc, dk * dk, 1, gn)
        Mask.axpby(dP, dPacc, dk * dvp, 1, gn)
    }
}
