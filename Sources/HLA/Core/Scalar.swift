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
}

extension Float: HLAFloat { public typealias Panel = SIMD16<Float> }
extension Double: HLAFloat { public typealias Panel = SIMD8<Double> }
