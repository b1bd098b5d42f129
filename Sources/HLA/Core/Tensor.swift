/// A caller's strided tensor of rank 4 ([B, T, H, D]) or 3 ([B, H, D], stored with t-stride 0),
/// in elements. Built only through `make`, which checks that no address it can form overflows.
struct Strided<T: HLAFloat> {
    let base: UnsafeMutablePointer<T>
    let sb: Int, st: Int, sh: Int, sd: Int

    /// `dims` and `strides` in [B, T, H, D] order (rank 3 callers pass T = 1, stride 0).
    static func make(_ pointer: UnsafeRawPointer?, name: String, dims: (Int, Int, Int, Int),
                     strides: (Int, Int, Int, Int)?) throws(HLAError) -> Strided<T> {
        guard let p = pointer else { throw .null(name) }
        let (b, t, h, d) = dims
        let s = strides ?? (t * h * d, h * d, d, 1)
        // Extent of the furthest element reached in either direction must fit comfortably.
        var extent = 0
        for (n, stride) in [(b, s.0), (t, s.1), (h, s.2), (d, s.3)] {
            let (m, o1) = stride.magnitude.multipliedReportingOverflow(by: UInt(max(n - 1, 0)))
            if o1 || m > UInt(Int.max / 16) { throw .overflow("\(name) stride extent (stride \(stride) × \(n - 1))") }
            extent = try checkedAdd(extent, Int(m), "\(name) stride extent")
        }
        _ = try checkedMul(extent, MemoryLayout<T>.stride, "\(name) byte extent")
        return Strided(base: UnsafeMutablePointer(mutating: p.assumingMemoryBound(to: T.self)),
                       sb: s.0, st: s.1, sh: s.2, sd: s.3)
    }

    @inline(__always) func at(_ b: Int, _ t: Int, _ h: Int) -> UnsafeMutablePointer<T> {
        base + (b * sb + t * st + h * sh)
    }

    /// Copy rows t0..<t0+n of (b, h) into a dense n × ld block (first `d` columns), times `mul`.
    @inline(__always)
    func gather(_ b: Int, _ h: Int, _ t0: Int, _ n: Int, _ d: Int, into dst: UnsafeMutablePointer<T>, ld: Int, mul: T = 1) {
        for r in 0..<n {
            let src = at(b, t0 + r, h)
            let row = dst + r * ld
            if sd == 1 {
                if mul == 1 { for j in 0..<d { row[j] = src[j] } } else { for j in 0..<d { row[j] = src[j] * mul } }
            } else {
                for j in 0..<d { row[j] = src[j * sd] * mul }
            }
        }
    }
}

/// Read a caller's optional stride array of `rank` entries.
func readStrides(_ p: UnsafePointer<Int64>?, rank: Int) -> (Int, Int, Int, Int)? {
    guard let p else { return nil }
    if rank == 4 { return (Int(p[0]), Int(p[1]), Int(p[2]), Int(p[3])) }
    return (Int(p[0]), 0, Int(p[1]), Int(p[2]))
}
