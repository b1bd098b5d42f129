/// Register-blocked vector kernels of the streaming steps. Each sweeps a row-major matrix in column
/// blocks with the accumulators held in SIMD registers, so a d × d update streams the matrix through
/// the cache exactly once and the inner loop is pure fused multiply-adds. The products sweep blocks of
/// four panels (64 float32 / 32 float64 columns: eight independent accumulator registers, enough to
/// hide the multiply-add latency), then single 16-wide blocks, then scalars; every output is the same
/// row-ordered sum whichever block computes it.
enum Vec {
    @inline(__always)
    static func panel<T: HLAFloat>(_ p: UnsafePointer<T>) -> T.Panel {
        UnsafeRawPointer(p).loadUnaligned(as: T.Panel.self)
    }
    @inline(__always)
    static func put<T: HLAFloat>(_ v: T.Panel, _ p: UnsafeMutablePointer<T>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: T.Panel.self)
    }

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
        let p = T.Panel.scalarCount
        var c0 = 0
        while c0 + 4 * p <= cols {
            var a0 = T.Panel(), a1 = T.Panel(), a2 = T.Panel(), a3 = T.Panel()
            var row = m + c0
            for r in 0..<rows {
                let xr = x[r]
                a0.addProduct(xr, panel(row)); a1.addProduct(xr, panel(row + p))
                a2.addProduct(xr, panel(row + 2 * p)); a3.addProduct(xr, panel(row + 3 * p))
                row += ld
            }
            put(a0, y + c0); put(a1, y + c0 + p); put(a2, y + c0 + 2 * p); put(a3, y + c0 + 3 * p)
            c0 += 4 * p
        }
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
        let p = T.Panel.scalarCount
        while c0 + 4 * p <= cols {
            let w0 = panel(w + c0), w1 = panel(w + c0 + p), w2 = panel(w + c0 + 2 * p), w3 = panel(w + c0 + 3 * p)
            var a0 = T.Panel(), a1 = T.Panel(), a2 = T.Panel(), a3 = T.Panel()
            var row = m + c0
            for r in 0..<rows {
                let ur = u[r], xr = x[r]
                var n0 = panel(row), n1 = panel(row + p), n2 = panel(row + 2 * p), n3 = panel(row + 3 * p)
                if g != 1 { n0 *= g; n1 *= g; n2 *= g; n3 *= g }
                n0.addProduct(ur, w0); n1.addProduct(ur, w1); n2.addProduct(ur, w2); n3.addProduct(ur, w3)
                put(n0, row); put(n1, row + p); put(n2, row + 2 * p); put(n3, row + 3 * p)
                a0.addProduct(xr, n0); a1.addProduct(xr, n1); a2.addProduct(xr, n2); a3.addProduct(xr, n3)
                row += ld
            }
            @inline(__always) func out(_ acc: T.Panel, _ o: UnsafeMutablePointer<T>) {
                put(b == 0 ? acc * a : acc * a + panel(o) * b, o)
            }
            out(a0, y + c0); out(a1, y + c0 + p); out(a2, y + c0 + 2 * p); out(a3, y + c0 + 3 * p)
            c0 += 4 * p
        }
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
