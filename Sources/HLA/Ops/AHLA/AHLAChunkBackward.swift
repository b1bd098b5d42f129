/// ahla chunked backward (docs/gradients.md §10): the reverse of `AHLA.chunk` for one chunk, as dense products.
/// Forward (AHLAChunk.swift), AD = (Q Kᵀ) ⊙ D, Γ₁ = diag(γ^τ), Γn = diag(γ^{n-τ}):
///   masked:   Y = AD V + Γ₁ Q P0,  O = AD Y + Γ₁ Q E0,  E1 = γⁿ E0 + Kᵀ Γn Y;
///   unmasked: X = Γ₁ Q R0 + AD Q,  W = (X Kᵀ) ⊙ D,  O = Γ₁ X P0 + W V,  R1 = γⁿ R0 + Kᵀ Γn Q;
///   both:     P1 = γⁿ P0 + Kᵀ Γn V.
/// Given G = ∂L/∂O and the carry-out adjoints in `d`, writes dQ, dK, dV and replaces `d` by the carry-in adjoints.
extension AHLA: ChunkBackward {
    static func chunkBackwardScratch(_ c: Config, n: Int) -> Int {
        let nd = n * max(c.dk, c.dvp)
        return Scratch<Double>.need([n * n, n * n, n * n, nd, nd, nd, nd, nd, c.dk * c.dvp])
    }

    /// `kept`: what `carry` kept for this chunk (masked: A ⊙ D and Y per head).
    static func chunkBackward<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, _ d: Unit<T>, n: Int,
                                           kept: UnsafePointer<T>,
                                           K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                           G: UnsafePointer<T>, dK: UnsafeMutablePointer<T>,
                                           dV: UnsafeMutablePointer<T>, dQ: UnsafeMutablePointer<T>,
                                           scratch: inout Scratch<T>) {
        let dk = c.dk, dvp = c.dvp, gn = pw[n]
        let As = scratch.take(n * n), W = scratch.take(n * n), dA = scratch.take(n * n)
        let nd = n * max(dk, dvp)
        let Ys = scratch.take(nd), dY = scratch.take(nd), G1 = scratch.take(nd), Kd = scratch.take(nd)
        let Tm = scratch.take(nd), dPacc = scratch.take(dk * dvp)
        let P0 = u.kv, dP = d.kv
        Mask.scaledCopy(Kd, K, n, dk) { pw[n - 1 - $0] }                              // Γn K
        for x in 0..<(n * dk) { dK[x] = 0 }
        for x in 0..<(n * dvp) { dV[x] = 0 }
        for x in 0..<(dk * dvp) { dPacc[x] = 0 }
        for j in 0..<u.group {
            let Qh = Q + j * n * dk, Gh = G + j * n * dvp, dQh = dQ + j * n * dk
            let st = u.head(j), ds = d.head(j)
            // masked: AD and Y as `carry` kept them; unmasked: AD recomputed
            let A: UnsafePointer<T>
            if c.masked {
                A = kept + j * (n * n + n * dvp)
            } else {
                T.gemm(false, true, n, n, dk, 1, Qh, dk, K, dk, 0, As, n)
                Mask.lowerDecay(As, n, n, pw, 1)                                       // AD
                A = UnsafePointer(As)
            }
            Mask.scaledCopy(G1, Gh, n, dvp) { pw[$0 + 1] }                             // Γ₁ G
            if c.masked {
                let E0 = st, dE = ds, Y = A + n * n                                    // Y = AD V + Γ₁ Q P0
                T.gemm(false, false, n, dvp, dk, 1, Kd, dk, dE, dvp, 0, dY, dvp)     // dY = Γn K dE1
                T.gemm(true, false, n, dvp, n, 1, A, n, Gh, dvp, 1, dY, dvp, structure: .upperA)  //    + ADᵀ G
                T.gemm(false, true, n, dk, dvp, 1, Y, dvp, dE, dvp, 0, Tm, dk)
                Mask.scaleRows(Tm, n, dk, dk) { pw[n - 1 - $0] }
                Mask.axpby(dK, Tm, n * dk, 1, 1)                                       // dK += Γn Y dE1ᵀ
                T.gemm(false, true, n, n, dvp, 1, Gh, dvp, Y, dvp, 0, dA, n, structure: .lowerC)  // dAD = G Yᵀ
                T.gemm(false, true, n, n, dvp, 1, dY, dvp, V, dvp, 1, dA, n, structure: .lowerC)  //     + dY Vᵀ
                T.gemm(true, false, n, dvp, n, 1, A, n, dY, dvp, 1, dV, dvp, structure: .upperA)  // dV += ADᵀ dY
                T.gemm(false, true, n, dk, dvp, 1, G1, dvp, E0, dvp, 0, dQh, dk)     // dQ = Γ₁ G E0ᵀ
                Mask.scaledCopy(Tm, dY, n, dvp) { pw[$0 + 1] }                         // Γ₁ dY
                T.gemm(false, true, n, dk, dvp, 1, Tm, dvp, P0, dvp, 1, dQh, dk)     // dQ += Γ₁ dY P0ᵀ
                T.gemm(true, false, dk, dvp, n, 1, Qh, dk, Tm, dvp, 1, dPacc, dvp)   // dP0 += Qᵀ Γ₁ dY
                T.gemm(true, false, dk, dvp, n, 1, Qh, dk, G1, dvp, gn, dE, dvp)     // dE0 = γⁿ dE1 + Qᵀ Γ₁ G
            } else {
                let R0 = st, dR = ds, X = Ys, dX = dY
                T.gemm(false, false, n, dk, dk, 1, Qh, dk, R0, dk, 0, X, dk)
                Mask.scaleRows(X, n, dk, dk) { pw[$0 + 1] }
                T.gemm(false, false, n, dk, n, 1, A, n, Qh, dk, 1, X, dk)            // X
                Adj.projectedOutput(n, dk, dvp, pw, X: X, K: K, V: V, P0: P0, G: Gh, G1: G1, W: W, dW: dA,
                                    dX: dX, dP0: dPacc, dV: dV, dK: dK)
                // R1 = γⁿ R0 + Kᵀ Γn Q (dR still holds dR1)
                T.gemm(false, false, n, dk, dk, 1, Kd, dk, dR, dk, 0, dQh, dk)       // dQ = Γn K dR1
                Mask.scaledCopy(Tm, Qh, n, dk) { pw[n - 1 - $0] }
                T.gemm(false, true, n, dk, dk, 1, Tm, dk, dR, dk, 1, dK, dk)         // dK += Γn Q dR1ᵀ
                // X = Γ₁ Q R0 + AD Q
                Mask.scaledCopy(Tm, dX, n, dk) { pw[$0 + 1] }                          // Γ₁ dX
                T.gemm(false, true, n, dk, dk, 1, Tm, dk, R0, dk, 1, dQh, dk)        // dQ += Γ₁ dX R0ᵀ
                T.gemm(true, false, dk, dk, n, 1, Qh, dk, Tm, dk, gn, dR, dk)        // dR0 = γⁿ dR1 + Qᵀ Γ₁ dX
                T.gemm(true, false, n, dk, n, 1, A, n, dX, dk, 1, dQh, dk)           // dQ += ADᵀ dX
                T.gemm(false, true, n, n, dk, 1, dX, dk, Qh, dk, 0, dA, n)           // dAD = dX Qᵀ
            }
            Mask.lowerDecay(dA, n, n, pw, 1)                                           // dA = dAD ⊙ D
            T.gemm(false, false, n, dk, n, 1, dA, n, K, dk, 1, dQh, dk, structure: .lowerA)   // dQ += dA K (dA lower)
            T.gemm(true, false, n, dk, n, 1, dA, n, Qh, dk, 1, dK, dk, structure: .upperA)    // dK += dAᵀ Q
        }
        // P1 = γⁿ P0 + Kᵀ Γn V
        T.gemm(false, true, n, dk, dvp, 1, V, dvp, dP, dvp, 0, Tm, dk)
        Mask.scaleRows(Tm, n, dk, dk) { pw[n - 1 - $0] }
        Mask.axpby(dK, Tm, n * dk, 1, 1)                                               // dK += Γn V dP1ᵀ
        T.gemm(false, false, n, dvp, dk, 1, Kd, dk, dP, dvp, 1, dV, dvp)             // dV += Γn K dP1
        Mask.axpby(dP, dPacc, dk * dvp, 1, gn)                                         // dP0 = γⁿ dP1 + …
    }
}
