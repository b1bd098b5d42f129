/// Register-blocked vector kernels of the streaming steps. Each sweeps a row-major matrix in column
/// blocks of 16 with the accumulators held in SIMD registers, so a d × d update streams the matrix
/// through the cache exactly once and the inner loop is pure fused multiply-adds.
enum Vec {
    @inline(__always)
    static func load<T: HLAFloat>(_ p: UnsafePointer<T>) -> SIMD16<T> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD16<T>.self)
    }
    @inline(__always)
    static func store<T: HLAFloat>(_ v: SIMD16<T>, _ p: UnsafeMutablePointer<T>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<T>.self)
    }

    /// y = Mᵀ x for M rows × cols (leading dimension ld): y[c] = Σ_r x[r] M[r][c].
    @inline(__always)
    static func gemvT<T: HLAFloat>(_ m: UnsafePointer<T>, _ rows: Int, _ cols: Int, _ ld: Int,
                                   _ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>) {
        var c0 = 0
        while c0 + 16 <= cols {
            var acc = SIMD16<T>(repeating: 0)
            for r in 0..<rows { acc.addProduct(SIMD16(repeating: x[r]), load(m + r * ld + c0)) }
            store(acc, y + c0)
            c0 += 16
        }
        if c0 < cols {
            for c in c0..<cols { y[c] = 0 }
            for r in 0..<rows {
                let row = m + r * ld, xr = x[r]
                for c in c0..<cols { y[c] += xr * row[c] }
            }
        }
    }

    /// M ← g·M + u wᵀ (rows × cols, leading dimension ld).
    @inline(__always)
    static func rank1<T: HLAFloat>(_ m: UnsafeMutablePointer<T>, _ rows: Int, _ cols: Int, _ ld: Int, _ g: T,
                                   _ u: UnsafePointer<T>, _ w: UnsafePointer<T>) {
        for r in 0..<rows {
            let row = m + r * ld, ur = SIMD16<T>(repeating: u[r])
            var c = 0
            if g == 1 {
                while c + 16 <= cols { var x = load(row + c); x.addProduct(ur, load(w + c)); store(x, row + c); c += 16 }
            } else {
                let gv = SIMD16<T>(repeating: g)
                while c + 16 <= cols { var x = load(row + c) * gv; x.addProduct(ur, load(w + c)); store(x, row + c); c += 16 }
            }
            let us = u[r]
            while c < cols { row[c] = g * row[c] + us * w[c]; c += 1 }
        }
    }

    /// M ← g·M + u wᵀ, then y = a·Mᵀ x + b·y (with the updated M), in one sweep.
    @inline(__always)
    static func rank1Project<T: HLAFloat>(_ m: UnsafeMutablePointer<T>, _ rows: Int, _ cols: Int, _ ld: Int, _ g: T,
                                          _ u: UnsafePointer<T>, _ w: UnsafePointer<T>,
                                          _ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, a: T = 1, b: T = 0) {
        var c0 = 0
        let gv = SIMD16<T>(repeating: g)
        while c0 + 16 <= cols {
            let wv = load(w + c0)
            var acc = SIMD16<T>(repeating: 0)
            if g == 1 {
                for r in 0..<rows {
                    let p = m + r * ld + c0
                    var nv = load(p); nv.addProduct(SIMD16(repeating: u[r]), wv); store(nv, p)
                    acc.addProduct(SIMD16(repeating: x[r]), nv)
                }
            } else {
                for r in 0..<rows {
                    let p = m + r * ld + c0
                    var nv = load(p) * gv; nv.addProduct(SIMD16(repeating: u[r]), wv); store(nv, p)
                    acc.addProduct(SIMD16(repeating: x[r]), nv)
                }
            }
            let out = b == 0 ? acc * SIMD16(repeating: a) : acc * SIMD16(repeating: a) + load(y + c0) * SIMD16(repeating: b)
            store(out, y + c0)
            c0 += 16
        }
        if c0 < cols {
            for c in c0..<cols { y[c] = b == 0 ? 0 : b * y[c] }
            for r in 0..<rows {
                let row = m + r * ld, ur = u[r], xr = a * x[r]
                for c in c0..<cols { let nv = g * row[c] + ur * w[c]; row[c] = nv; y[c] += xr * nv }
            }
        }
    }
}
