/// The element types of the engine (float32 and float64), with the register panel of their dense products.
public protocol HLAFloat: BinaryFloatingPoint, SIMDScalar, Codable, Sendable {
    /// One row of a product tile: two 256-bit registers (16 float32 or 8 float64 lanes).
    associatedtype Panel: SIMD where Panel.Scalar == Self
}

extension HLAFloat {
    /// Row-major C[m×n] = alpha · op(A) · op(B) + beta · C (BLAS semantics; `Gemm`), skipping the zero
    /// blocks `structure` names.
    @inline(__always)
    static func gemm(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
                     _ alpha: Self, _ a: UnsafePointer<Self>, _ lda: Int,
                     _ b: UnsafePointer<Self>, _ ldb: Int,
                     _ beta: Self, _ c: UnsafeMutablePointer<Self>, _ ldc: Int,
                     structure: Gemm.Structure = []) {
        Gemm.gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, structure: structure)
    }

    /// Symmetric C[n×n] = alpha · Aᵀ B + beta · C (A, B: k × n) for a symmetric Aᵀ B (a Gram matrix: B = diag(w) A)
    /// and a symmetric C: the lower half by `gemm` (`.lowerC`, about half the multiply-adds), the upper half its
    /// mirror, so C is exactly symmetric.
    @inline(__always)
    static func gram(_ n: Int, _ k: Int, _ alpha: Self, _ a: UnsafePointer<Self>, _ lda: Int,
                     _ b: UnsafePointer<Self>, _ ldb: Int, _ beta: Self, _ c: UnsafeMutablePointer<Self>, _ ldc: Int) {
        Gemm.gemm(true, false, n, n, k, alpha, a, lda, b, ldb, beta, c, ldc, structure: .lowerC)
        Mask.mirrorLower(c, n, ldc)
    }

    /// C[m×n] = alpha · (op(A1) · B1 + op(A2) · B2) + beta · C in one pass over C (`Gemm.gemm2`).
    @inline(__always)
    static func gemm2(_ m: Int, _ n: Int, _ alpha: Self, _ beta: Self, _ c: UnsafeMutablePointer<Self>, _ ldc: Int,
                      _ transA1: Bool, _ k1: Int, _ a1: UnsafePointer<Self>, _ lda1: Int, _ b1: UnsafePointer<Self>, _ ldb1: Int,
                      _ transA2: Bool, _ k2: Int, _ a2: UnsafePointer<Self>, _ lda2: Int, _ b2: UnsafePointer<Self>, _ ldb2: Int,
                      structure1: Gemm.Structure = [], structure2: Gemm.Structure = [],
                      mid: UnsafeMutablePointer<Self>? = nil) {
        Gemm.gemm2(m, n, alpha, beta, c, ldc, transA1, k1, a1, lda1, b1, ldb1, transA2, k2, a2, lda2, b2, ldb2,
                   structure1: structure1, structure2: structure2, mid: mid)
    }
}

extension Float: HLAFloat { public typealias Panel = SIMD16<Float> }
extension Double: HLAFloat { public typealias Panel = SIMD8<Double> }
