#if canImport(Glibc)
import Glibc
#endif
import CHLA

/// Powers γ^k for k = 0...maxPower, computed in double (pow) and rounded once to T.
struct Powers<T: HLAFloat> {
    let gamma: Double
    let table: RawBuffer<T>

    init(_ gamma: Double, upTo maxPower: Int) throws(HLAError) {
        self.gamma = gamma
        table = try RawBuffer<T>.allocate(maxPower + 1)
        for k in 0...maxPower { table.base[k] = T(gamma == 1 ? 1 : pow(gamma, Double(k))) }
    }
    @inline(__always) subscript(_ k: Int) -> T { table.base[k] }
    /// γ = 1: every power is exactly 1, so scaling by one changes nothing and may be skipped.
    @inline(__always) var unit: Bool { gamma == 1 }
    func free() { table.free() }

    /// γ^n for any n ≥ 0 (segments longer than the table).
    static func power(_ gamma: Double, _ n: Int) -> T { T(gamma == 1 ? 1 : pow(gamma, Double(n))) }
}

/// In-place masks and scalings of dense row-major matrices used by the chunk kernels.
enum Mask {
    /// M[r][i] ← M[r][i] · γ^{p·(r−i)} for i ≤ r, 0 for i > r (n × n, leading dimension ld).
    @inline(__always)
    static func lowerDecay<T: HLAFloat>(_ m: UnsafeMutablePointer<T>, _ n: Int, _ ld: Int, _ pw: Powers<T>, _ p: Int) {
        if pw.unit {
            for r in 0..<n { let row = m + r * ld; for i in (r + 1)..<max(n, r + 1) { row[i] = 0 } }
            return
        }
        for r in 0..<n {
            let row = m + r * ld
            for i in 0...r { row[i] *= pw[p * (r - i)] }
            for i in (r + 1)..<max(n, r + 1) { row[i] = 0 }
        }
    }
    /// M[i][j] ← M[i][j] · γ^{p·(j−i)} for i ≤ j, 0 for i > j (n × n).
    @inline(__always)
    static func upperDecay<T: HLAFloat>(_ m: UnsafeMutablePointer<T>, _ n: Int, _ ld: Int, _ pw: Powers<T>, _ p: Int) {
        if pw.unit {
            for i in 0..<n { let row = m + i * ld; for j in 0..<i { row[j] = 0 } }
            return
        }
        for i in 0..<n {
            let row = m + i * ld
            for j in 0..<i { row[j] = 0 }
            for j in i..<n { row[j] *= pw[p * (j - i)] }
        }
    }
    /// B = Aᵀ (n × n, leading dimension n); `upper`: only Aᵀ's upper half (B[i][x] = A[x][i] for i ≤ x, 0 below
    /// the diagonal, A's upper half never read into B). Float32 with n % 8 == 0 by 8 × 8 register blocks.
    @inline(__always)
    static func transpose<T: HLAFloat>(_ b: UnsafeMutablePointer<T>, _ a: UnsafePointer<T>, _ n: Int, upper: Bool) {
        guard T.self == Float.self && n % 8 == 0 else {
            for i in 0..<n { for x in 0..<n { b[i * n + x] = (upper && i > x) ? 0 : a[x * n + i] } }
            return
        }
        let s = UnsafeRawPointer(a).assumingMemoryBound(to: Float.self)
        let d = UnsafeMutableRawPointer(b).assumingMemoryBound(to: Float.self)
        var i = 0
        while i < n {
            var x = 0
            while x < n {
                let blk = d + i * n + x
                if upper && i > x {
                    for r in 0..<8 { for j in 0..<8 { blk[r * n + j] = 0 } }
                } else {
                    hla_private_transpose8x8(s + x * n + i, n, blk, n)
                    if upper && i == x { for r in 1..<8 { for j in 0..<r { blk[r * n + j] = 0 } } }
                }
                x += 8
            }
            i += 8
        }
    }
    /// C's strict upper half ← the mirror of its lower half (C[r][j] = C[j][r] for j > r; n × n, leading dimension
    /// ld): copies only, so C is then exactly symmetric. Float32 with n % 8 == 0 by 8 × 8 register blocks.
    @inline(__always)
    static func mirrorLower<T: HLAFloat>(_ c: UnsafeMutablePointer<T>, _ n: Int, _ ld: Int) {
        guard T.self == Float.self && n % 8 == 0 else {
            for r in 0..<n { for j in (r + 1)..<max(n, r + 1) { c[r * ld + j] = c[j * ld + r] } }
            return
        }
        let f = UnsafeMutableRawPointer(c).assumingMemoryBound(to: Float.self)
        var i = 0
        while i < n {
            for r in i..<(i + 8) { for j in (r + 1)..<(i + 8) { c[r * ld + j] = c[j * ld + r] } }   // diagonal block
            var x = i + 8
            while x < n { hla_private_transpose8x8(f + x * ld + i, ld, f + i * ld + x, ld); x += 8 }
            i += 8
        }
    }
    /// Rows r of an n × cols matrix scaled by s(r).
    @inline(__always)
    static func scaleRows<T: HLAFloat>(_ m: UnsafeMutablePointer<T>, _ n: Int, _ cols: Int, _ ld: Int, _ s: (Int) -> T) {
        for r in 0..<n {
            let f = s(r)
            if f == 1 { continue }
            let row = m + r * ld
            for j in 0..<cols { row[j] *= f }
        }
    }
    /// Scaled copy: dst[r][j] = s(r) · src[r][j].
    @inline(__always)
    static func scaledCopy<T: HLAFloat>(_ dst: UnsafeMutablePointer<T>, _ src: UnsafePointer<T>, _ n: Int, _ cols: Int,
                                        _ s: (Int) -> T) {
        for r in 0..<n {
            let f = s(r)
            for j in 0..<cols { dst[r * cols + j] = src[r * cols + j] * f }
        }
    }
    /// `scaledCopy` into dst, returning dst; or src itself when every s(r) is 1 (`unit`: decay 1), which the
    /// products reading it then sum the same terms of (x · 1 = x exactly) without the copy.
    @inline(__always)
    static func scaled<T: HLAFloat>(_ dst: UnsafeMutablePointer<T>, _ src: UnsafePointer<T>, _ n: Int, _ cols: Int,
                                    unit: Bool, _ s: (Int) -> T) -> UnsafePointer<T> {
        if unit { return src }
        scaledCopy(dst, src, n, cols, s)
        return UnsafePointer(dst)
    }
    /// y ← a·y (count elements).
    @inline(__always)
    static func scale<T: HLAFloat>(_ y: UnsafeMutablePointer<T>, _ count: Int, _ a: T) {
        if a == 1 { return }
        for i in 0..<count { y[i] *= a }
    }
    /// y ← a·x + b·y.
    @inline(__always)
    static func axpby<T: HLAFloat>(_ y: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>, _ count: Int, _ a: T, _ b: T) {
        for i in 0..<count { y[i] = a * x[i] + b * y[i] }
    }
}

/// y = M x for a symmetric n × n matrix M, swept by rows (y += M[b, :] x_b) so the inner loop is a
/// vectorisable axpy rather than a sequential dot-product reduction.
@inline(__always)
func symv<T: HLAFloat>(_ m: UnsafePointer<T>, _ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int) {
    for a in 0..<n { y[a] = 0 }
    for b in 0..<n {
        let row = m + b * n, xb = x[b]
        for a in 0..<n { y[a] += row[a] * xb }
    }
}
