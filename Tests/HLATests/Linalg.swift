// Plain double matrices for the formula checks (errata and docs/hla3.md identities): no BLAS, no
// library code, just the textbook operations so the printed formulas can be transcribed literally.
import Foundation

struct M: CustomStringConvertible {
    var r: Int, c: Int
    var a: [Double]
    init(_ r: Int, _ c: Int, _ a: [Double]? = nil) { self.r = r; self.c = c; self.a = a ?? [Double](repeating: 0, count: r * c) }
    static func zeros(_ r: Int, _ c: Int) -> M { M(r, c) }
    static func identity(_ n: Int) -> M { var m = M(n, n); for i in 0..<n { m[i, i] = 1 }; return m }
    /// Column vector.
    static func col(_ v: [Double]) -> M { M(v.count, 1, v) }
    subscript(i: Int, j: Int) -> Double { get { a[i * c + j] } set { a[i * c + j] = newValue } }
    var T: M { var m = M(c, r); for i in 0..<r { for j in 0..<c { m[j, i] = self[i, j] } }; return m }
    var maxAbs: Double { a.map(abs).max() ?? 0 }
    var description: String { "M(\(r)x\(c))" }

    static func + (x: M, y: M) -> M { precondition(x.r == y.r && x.c == y.c); return M(x.r, x.c, zip(x.a, y.a).map { $0 + $1 }) }
    static func - (x: M, y: M) -> M { precondition(x.r == y.r && x.c == y.c); return M(x.r, x.c, zip(x.a, y.a).map { $0 - $1 }) }
    static func * (s: Double, x: M) -> M { M(x.r, x.c, x.a.map { s * $0 }) }
    static func * (x: M, y: M) -> M {
        precondition(x.c == y.r, "\(x) * \(y)")
        var m = M(x.r, y.c)
        for i in 0..<x.r { for k in 0..<x.c { let xv = x[i, k]; if xv == 0 { continue }; for j in 0..<y.c { m[i, j] += xv * y[k, j] } } }
        return m
    }
    /// Outer product u vᵀ of two column vectors.
    static func outer(_ u: M, _ v: M) -> M { u * v.T }
}

/// ‖a − b‖_max / ‖b‖_max for matrices.
func relErr(_ a: M, _ b: M) -> Double { relErr(a.a, b.a) }

/// One head's sequence as column vectors (queries already scaled), from a B = H = Hkv = 1 problem.
struct Head {
    let q: [M], k: [M], v: [M]
    let T: Int, dk: Int, dv: Int
    init(_ p: Problem, scale: Double) {
        precondition(p.s.B == 1 && p.s.H == 1 && p.s.Hkv == 1)
        T = p.s.T; dk = p.s.dk; dv = p.s.dv
        q = (0..<T).map { t in M.col((0..<p.s.dk).map { scale * p.qv(0, t, 0, $0) }) }
        k = (0..<T).map { t in M.col((0..<p.s.dk).map { p.kv(0, t, 0, $0) }) }
        v = (0..<T).map { t in M.col((0..<p.s.dv).map { p.vv(0, t, 0, $0) }) }
    }
    /// The same head with every value replaced by the scalar 1 (the denominators).
    init(ones h: Head) { q = h.q; k = h.k; v = (0..<h.T).map { _ in M.col([1]) }; T = h.T; dk = h.dk; dv = 1 }
}

/// Rows o_t (1 × dv each) stacked as T × dv, to compare with BruteForce outputs of a single head.
func stack(_ rows: [M]) -> [Double] { rows.flatMap { $0.a } }
