/// ahla chunked form. With A = Q Kᵀ, D[τ][i] = γ^{τ-i} (i ≤ τ), Γ = diag(γ^{n-i}), rows τ = 1..n:
///   masked:   Y = (A ⊙ D) V + diag(γ^τ) Q P0,   O = (A ⊙ D) Y + diag(γ^τ) Q E0,
///             E ← γⁿ E0 + Kᵀ Γ Y;
///   unmasked: X = diag(γ^τ) Q R0 + (A ⊙ D) Q,   O = diag(γ^τ) X P0 + ((X Kᵀ) ⊙ D) V,
///             R ← γⁿ R0 + Kᵀ Γ Q;
///   both:     P ← γⁿ P0 + Kᵀ Γ V.
extension AHLA {
    static func chunkScratch(_ c: Config, n: Int) -> Int {
        Scratch<Double>.need([n * n, n * n, n * max(c.dk, c.dvp), n * c.dk, n * c.dvp, n * c.dvp, n * c.dk])
    }

    static func chunk<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, n: Int,
                                   K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                   O: UnsafeMutablePointer<T>, carryOut: Bool, scratch: inout Scratch<T>) {
        let dk = c.dk, dvp = c.dvp
        let A = scratch.take(n * n), W = scratch.take(n * n), Y = scratch.take(n * max(dk, dvp))
        let Vd = scratch.take(n * dvp), T2 = scratch.take(n * dvp)
        let Qd = scratch.take(n * dk)
        let P0 = u.kv, gn = pw[n]
        for j in 0..<u.group {
            let Qh = Q + j * n * dk, Oh = O + j * n * dvp, st = u.head(j)
            T.gemm(false, true, n, n, dk, 1, Qh, dk, K, dk, 0, A, n, structure: .lowerC)
            Mask.lowerDecay(A, n, n, pw, 1)                                          // A ⊙ D
            if c.masked {
                let Qg = Mask.scaled(Qd, Qh, n, dk, unit: pw.unit) { pw[$0 + 1] }
                T.gemm2(n, dvp, 1, 0, Y, dvp, false, n, A, n, V, dvp, false, dk, Qg, dk, P0, dvp, structure1: .lowerA)  // Y
                outputs(c, n, st, Qg: Qg, A: A, Y: Y, O: Oh)                              // O
                if !carryOut { continue }
                let YG = Mask.scaled(T2, Y, n, dvp, unit: pw.unit) { pw[n - 1 - $0] }
                T.gemm(true, false, dk, dvp, n, 1, K, dk, YG, dvp, gn, st, dvp)     // E
            } else {
                // each as one pass over its result: (diag(γ^τ) Q) R0 + (A ⊙ D) Q, (diag(γ^τ) X) P0 + W V
                let X = Y
                let Qg = Mask.scaled(Qd, Qh, n, dk, unit: pw.unit) { pw[$0 + 1] }
                T.gemm2(n, dk, 1, 0, X, dk, false, dk, Qg, dk, st, dk, false, n, A, n, Qh, dk, structure2: .lowerA)  // X
                T.gemm(false, true, n, n, dk, 1, X, dk, K, dk, 0, W, n, structure: .lowerC)
                Mask.lowerDecay(W, n, n, pw, 1)
                let Xg = Mask.scaled(Qd, X, n, dk, unit: pw.unit) { pw[$0 + 1] }
                T.gemm2(n, dvp, 1, 0, Oh, dvp, false, dk, Xg, dk, P0, dvp, false, n, W, n, V, dvp, structure2: .lowerA)  // O
                if !carryOut { continue }
                let QG = Mask.scaled(Qd, Qh, n, dk, unit: pw.unit) { pw[n - 1 - $0] }
                T.gemm(true, false, dk, dk, n, 1, K, dk, QG, dk, gn, st, dk)        // R
            }
        }
        if !carryOut { return }
        let VG = Mask.scaled(Vd, V, n, dvp, unit: pw.unit) { pw[n - 1 - $0] }
        T.gemm(true, false, dk, dvp, n, 1, K, dk, VG, dvp, gn, P0, dvp)             // P
    }

    /// Masked: O = (diag(γ^τ) Q) E0 + (A ⊙ D) Y in one pass over O (E0: the query head's block `st`; Qg: diag(γ^τ) Q,
    /// the scaled queries Y's product read too). Shared by `chunk` and `scanChunk`.
    @inline(__always)
    static func outputs<T: HLAFloat>(_ c: Config, _ n: Int, _ st: UnsafePointer<T>,
                                     Qg: UnsafePointer<T>, A: UnsafePointer<T>, Y: UnsafePointer<T>,
                                     O: UnsafeMutablePointer<T>) {
        let dk = c.dk, dvp = c.dvp
        T.gemm2(n, dvp, 1, 0, O, dvp, false, dk, Qg, dk, st, dvp, false, n, A, n, Y, dvp, structure2: .lowerA)
    }

    /// Elements `carry` keeps per chunk for `chunkBackward` (masked, per query head: A ⊙ D, then Y).
    static func keepSize(_ c: Config, n: Int) -> Int { c.masked ? c.group * (n * n + n * c.dvp) : 0 }

    /// The carry update of `chunk` alone (no outputs), bit for bit the carry `chunk` leaves (masked: Y and
    /// E without Q E0 and (A ⊙ D) Y; unmasked: R and P, no n × n product at all).
    /// `keep` (`keepSize` elements, or nil): receives the products `chunkBackward` would otherwise recompute.
    static func carry<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, n: Int,
                                   K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                   keep: UnsafeMutablePointer<T>?, carryOut: Bool, scratch: inout Scratch<T>) {
        if !carryOut && (keep == nil || keepSize(c, n: n) == 0) { return }   // nothing to keep
        let dk = c.dk, dvp = c.dvp
        let As = scratch.take(n * n), Ys = scratch.take(n * max(dk, dvp))
        let Vd = scratch.take(n * dvp), T2 = scratch.take(n * max(dk, dvp))
        let P0 = u.kv, gn = pw[n]
        for j in 0..<u.group {
            let Qh = Q + j * n * dk, st = u.head(j)
            if c.masked {
                let kj = keep.map { $0 + j * (n * n + n * dvp) }
                let A = kj ?? As, Y = kj.map { $0 + n * n } ?? Ys
                T.gemm(false, true, n, n, dk, 1, Qh, dk, K, dk, 0, A, n, structure: .lowerC)
                Mask.lowerDecay(A, n, n, pw, 1)                                      // A ⊙ D
                let Qg = Mask.scaled(T2, Qh, n, dk, unit: pw.unit) { pw[$0 + 1] }           // as `chunk`
                T.gemm2(n, dvp, 1, 0, Y, dvp, false, n, A, n, V, dvp, false, dk, Qg, dk, P0, dvp, structure1: .lowerA)  // Y
                if !carryOut { continue }
                let YG = Mask.scaled(T2, Y, n, dvp, unit: pw.unit) { pw[n - 1 - $0] }
                T.gemm(true, false, dk, dvp, n, 1, K, dk, YG, dvp, gn, st, dvp)     // E
            } else {
                let QG = Mask.scaled(T2, Qh, n, dk, unit: pw.unit) { pw[n - 1 - $0] }
                T.gemm(true, false, dk, dk, n, 1, K, dk, QG, dk, gn, st, dk)        // R
            }
        }
        if !carryOut { return }
        let VG = Mask.scaled(Vd, V, n, dvp, unit: pw.unit) { pw[n - 1 - $0] }
        T.gemm(true, false, dk, dvp, n, 1, K, dk, VG, dvp, gn, P0, dvp)             // P
    }
}
