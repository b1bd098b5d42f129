/// hla2 chunked backward (docs/gradients.md §9): the reverse of `HLA2.chunk` for one chunk of n tokens, as
/// dense n × n and n × d products. Forward (HLA2Chunk.swift), with A = Q Kᵀ, D_p[τ][i] = γ^{p(τ-i)} (i ≤ τ; D = D_1),
/// AD = A ⊙ D, QS = Γ₁ Q S0, Y = AD K + QS (rows S_τ q_τ), Γ_p = diag(γ^{pτ}), Γn = diag(γ^{n-τ}):
///   masked:   O = [(Q Yᵀ) ⊙ D₂ + λ (Q Qᵀ) ⊙ D] V + Γ₂ Q U0 + λ Γ₁ Q C0,  U1 = γ²ⁿ U0 + (Γn² Y)ᵀ V
///   unmasked: O = [(Y Qᵀ + λ Q Qᵀ) ⊙ D] V + Γ₁ Y C0 + λ Γ₁ Q C0
///   S1 = γⁿ S0 + Kᵀ Γn K,  C1 = γⁿ C0 + Qᵀ Γn V.
/// Given G = ∂L/∂O and the carry-out adjoints (dS1, dU1, dC1 in `d`), writes dQ, dK, dV of the chunk and
/// replaces `d` by the carry-in adjoints (dS0, dU0, dC0). Each line below is the transpose of one product.
extension HLA2: ChunkBackward {
    static func chunkBackwardScratch(_ c: Config, n: Int) -> Int {
        let nd = n * max(c.dk, c.dvp)
        return Scratch<Double>.need([n * n, n * n, n * n, n * n, n * n,
                                     nd, nd, nd, nd, nd, nd, nd, nd, c.dk * c.dk, c.dk * c.dk])
    }

    /// `u`: carry-in (read only). `d`: adjoint of the carry-out in, of the carry-in out. G, dQ: group × n × (dvp, dk).
    /// `kept`: what `carry` kept for this chunk (masked: AD and Y per head).
    static func chunkBackward<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, _ d: Unit<T>, n: Int,
                                           kept: UnsafePointer<T>,
                                           K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                           G: UnsafePointer<T>, dK: UnsafeMutablePointer<T>,
                                           dV: UnsafeMutablePointer<T>, dQ: UnsafeMutablePointer<T>,
                                           scratch: inout Scratch<T>) {
        let dk = c.dk, dvp = c.dvp, lam = T(c.ridge), gn = pw[n], g2n = pw[2 * n]
        let A = scratch.take(n * n), Bs = scratch.take(n * n), W = scratch.take(n * n)
        let dW = scratch.take(n * n), dAD = scratch.take(n * n)
        let nd = n * max(dk, dvp)
        let Ys = scratch.take(nd), dQS = scratch.take(nd), T3 = scratch.take(nd), Kd = scratch.take(nd)
        let Vd = scratch.take(nd), dX = scratch.take(nd)
        let Tm = scratch.take(nd), G1 = scratch.take(nd), dSacc = scratch.take(dk * dk), dS2 = scratch.take(dk * dk)
        let S0 = u.kv, dS = d.kv
        let hasC = !c.masked || lam != 0
        Mask.scaledCopy(Vd, V, n, dvp) { pw[n - 1 - $0] }                             // Γn V
        Mask.scaledCopy(Kd, K, n, dk) { pw[n - 1 - $0] }                              // Γn K
        for x in 0..<(n * dk) { dK[x] = 0 }
        for x in 0..<(n * dvp) { dV[x] = 0 }
        for x in 0..<(dk * dk) { dSacc[x] = 0 }
        for j in 0..<u.group {
            let Qh = Q + j * n * dk, Gh = G + j * n * dvp, dQh = dQ + j * n * dk
            let st = u.head(j), ds = d.head(j), C0 = st + cOffset(c), dC = ds + cOffset(c)
            let kj = kept + j * keepHead(c, n: n)
            // A ⊙ D and Y = AD K + QS: masked as `carry` kept them, unmasked formed again as `chunk` forms them
            if !c.masked {
                T.gemm(false, true, n, n, dk, 1, Qh, dk, K, dk, 0, A, n, structure: .lowerC)   // A = Q Kᵀ, lower
                stateQ(c, pw, n, S0, A: A, K: K, Q: Qh, Y: Ys)                       // A ← AD, Y
            }
            let AD = c.masked ? UnsafePointer(kj) : UnsafePointer(A), Y = c.masked ? kj + n * n : UnsafePointer(Ys)
            let dY = dQS                                                               // (Y = AD K + QS: dQS = dY)
            if c.masked {
                // W = (Q Yᵀ) ⊙ D₂ + λ (Q Qᵀ) ⊙ D
                T.gemm(false, true, n, n, dk, 1, Qh, dk, Y, dk, 0, W, n, structure: .lowerC)
                Mask.lowerDecay(W, n, n, pw, 2)
                if lam != 0 {
                    T.gemm(false, true, n, n, dk, lam, Qh, dk, Qh, dk, 0, Bs, n, structure: .lowerC)
                    Mask.lowerDecay(Bs, n, n, pw, 1)
                    Mask.axpby(W, Bs, n * n, 1, 1)
                }
                // O = W V
                T.gemm(false, true, n, n, dvp, 1, Gh, dvp, V, dvp, 0, dW, n, structure: .lowerC)   // dW = G Vᵀ
                T.gemm(true, false, n, dvp, n, 1, W, n, Gh, dvp, 1, dV, dvp, structure: .upperA)  // dV += Wᵀ G
                if lam != 0 {                                                          // λ (Q Qᵀ) ⊙ D
                    for x in 0..<(n * n) { Bs[x] = dW[x] }
                    Mask.lowerDecay(Bs, n, n, pw, 1)
                }
                Mask.lowerDecay(dW, n, n, pw, 2)                                       // d(Q Yᵀ) = dW ⊙ D₂
                T.gemm(false, false, n, dk, n, 1, dW, n, Y, dk, 0, dQh, dk, structure: .lowerA)   // dQ = dW Y
                T.gemm(true, false, n, dk, n, 1, dW, n, Qh, dk, 0, dY, dk, structure: .upperA)    // dY = dWᵀ Q
                if lam != 0 {
                    T.gemm(false, false, n, dk, n, lam, Bs, n, Qh, dk, 1, dQh, dk, structure: .lowerA)  // + λ dWλ Q
                    T.gemm(true, false, n, dk, n, lam, Bs, n, Qh, dk, 1, dQh, dk, structure: .upperA)   // + λ dWλᵀ Q
                }
                // U1 = γ²ⁿ U0 + Xᵀ V, X = Γn² Y
                let dU = ds
                let X = carryX(c, pw, n, Y: Y, into: T3)
                T.gemm(false, true, n, dk, dvp, 1, V, dvp, dU, dvp, 0, dX, dk)       // dX = V dU1ᵀ
                T.gemm(false, false, n, dvp, dk, 1, X, dk, dU, dvp, 1, dV, dvp)      // dV += X dU1
                Mask.scaleRows(dX, n, dk, dk) { pw[2 * (n - 1 - $0)] }
                Mask.axpby(dY, dX, n * dk, 1, 1)                                       // dY += Γn² dX
            } else {
                // W = (Y Qᵀ + λ Q Qᵀ) ⊙ D
                T.gemm(false, true, n, n, dk, 1, Y, dk, Qh, dk, 0, W, n, structure: .lowerC)
                if lam != 0 { T.gemm(false, true, n, n, dk, lam, Qh, dk, Qh, dk, 1, W, n, structure: .lowerC) }
                Mask.lowerDecay(W, n, n, pw, 1)                                        // WD
                // O = WD V
                T.gemm(false, true, n, n, dvp, 1, Gh, dvp, V, dvp, 0, dW, n, structure: .lowerC)   // dWD = G Vᵀ
                T.gemm(true, false, n, dvp, n, 1, W, n, Gh, dvp, 1, dV, dvp, structure: .upperA)  // dV += WDᵀ G
                Mask.lowerDecay(dW, n, n, pw, 1)                                       // dW = dWD ⊙ D
                T.gemm(false, false, n, dk, n, 1, dW, n, Qh, dk, 0, dY, dk, structure: .lowerA)   // dY = dW Q
                T.gemm(true, false, n, dk, n, 1, dW, n, Y, dk, 0, dQh, dk, structure: .upperA)    // dQ = dWᵀ Y
                if lam != 0 {
                    T.gemm(false, false, n, dk, n, lam, dW, n, Qh, dk, 1, dQh, dk, structure: .lowerA)  // + λ dW Q
                    T.gemm(true, false, n, dk, n, lam, dW, n, Qh, dk, 1, dQh, dk, structure: .upperA)   // + λ dWᵀ Q
                }
            }
            if hasC {
                T.gemm(false, true, n, dk, dvp, 1, Vd, dvp, dC, dvp, 1, dQh, dk)     // dQ += Γn V dC1ᵀ
                T.gemm(false, false, n, dvp, dk, 1, Qh, dk, dC, dvp, 0, Tm, dvp)
                Mask.scaleRows(Tm, n, dvp, dvp) { pw[n - 1 - $0] }
                Mask.axpby(dV, Tm, n * dvp, 1, 1)                                      // dV += Γn Q dC1
            }
            // carry-in terms of O, and the carry-in adjoints
            if c.masked {
                let U0 = st, dU = ds
                Mask.scaledCopy(G1, Gh, n, dvp) { pw[2 * ($0 + 1)] }                  // Γ₂ G
                T.gemm(false, true, n, dk, dvp, 1, G1, dvp, U0, dvp, 1, dQh, dk)     // dQ += Γ₂ G U0ᵀ
                T.gemm(true, false, dk, dvp, n, 1, Qh, dk, G1, dvp, g2n, dU, dvp)    // dU0 = γ²ⁿ dU1 + Qᵀ Γ₂ G
            }
            if hasC {
                Mask.scaledCopy(G1, Gh, n, dvp) { pw[$0 + 1] }                         // Γ₁ G
                Mask.scale(dC, dk * dvp, gn)                                           // dC0 = γⁿ dC1 + …
                if !c.masked {                                                         // Γ₁ Y C0
                    T.gemm(false, true, n, dk, dvp, 1, G1, dvp, C0, dvp, 1, dY, dk)  // dY += Γ₁ G C0ᵀ
                    T.gemm(true, false, dk, dvp, n, 1, Y, dk, G1, dvp, 1, dC, dvp)   // dC0 += Yᵀ Γ₁ G
                }
                if lam != 0 {
                    T.gemm(false, true, n, dk, dvp, lam, G1, dvp, C0, dvp, 1, dQh, dk)  // dQ += λ Γ₁ G C0ᵀ
                    T.gemm(true, false, dk, dvp, n, lam, Qh, dk, G1, dvp, 1, dC, dvp)   // dC0 += λ Qᵀ Γ₁ G
                }
            }
            // Y = AD K + QS
            T.gemm(false, true, n, n, dk, 1, dY, dk, K, dk, 0, dAD, n, structure: .lowerC)   // dAD = dY Kᵀ
            T.gemm(true, false, n, dk, n, 1, AD, n, dY, dk, 1, dK, dk, structure: .upperA)   // dK += ADᵀ dY
            // QS = Γ₁ Q S0
            Mask.scaledCopy(T3, dQS, n, dk) { pw[$0 + 1] }
            T.gemm(false, true, n, dk, dk, 1, T3, dk, S0, dk, 1, dQh, dk)            // dQ += Γ₁ dQS S0ᵀ
            T.gemm(true, false, dk, dk, n, 1, Qh, dk, T3, dk, 1, dSacc, dk)          // dS0 += Qᵀ Γ₁ dQS
            // AD = A ⊙ D (A's lower half): dA = dAD ⊙ D
            Mask.lowerDecay(dAD, n, n, pw, 1)
            T.gemm(false, false, n, dk, n, 1, dAD, n, K, dk, 1, dQh, dk, structure: .lowerA)   // dQ += dA K
            T.gemm(true, false, n, dk, n, 1, dAD, n, Qh, dk, 1, dK, dk, structure: .upperA)    // dK += dAᵀ Q
        }
        // S1 = γⁿ S0 + Kᵀ Γn K
        for a in 0..<dk { for b in 0..<dk { dS2[a * dk + b] = dS[a * dk + b] + dS[b * dk + a] } }
        T.gemm(false, false, n, dk, dk, 1, Kd, dk, dS2, dk, 1, dK, dk)               // dK += Γn K (dS1 + dS1ᵀ)
        Mask.axpby(dS, dSacc, dk * dk, 1, gn)                                          // dS0 = γⁿ dS1 + …
    }
}
