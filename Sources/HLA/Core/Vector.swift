/// Register-blocked vector kernels of the streaming steps. Each sweeps a row-major matrix in column
/// blocks with the accumulators held in SIMD registers, so a d × d update streams the matrix through
/// the cache exactly once and the inner loop is pure fused multiply-adds. The products sweep blocks of
/// four panels (64 float32 / 32 float64 columns: eight independent accumulator registers, enough to
/// hide the multiply-add latency), then the 16-wide blocks left (up to three in one sweep), then scalar
/// columns (one register sum each; rank1Project folds a single last column into the panel sweep); every
/// output is the same row-ordered sum whichever block computes it, so the blocking never changes a bit.
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
        // The 16-wide blocks left (up to three) in one sweep, one accumulator each (see rank1Project).
        while c0 + 16 <= cols {
            let nb = min((cols - c0) / 16, 3)
            var s0 = SIMD16<T>(repeating: 0), s1 = s0, s2 = s0
            @inline(__always) func sweep(_ nb: Int) {
                var row = m + c0
                for r in 0..<rows {
                    let xr = SIMD16<T>(repeating: x[r])
                    s0.addProduct(xr, load(row))
                    if nb > 1 { s1.addProduct(xr, load(row + 16)) }
                    if nb > 2 { s2.addProduct(xr, load(row + 32)) }
                    row += ld
                }
            }
            sweep(nb)
            store(s0, y + c0)
            if nb > 1 { store(s1, y + c0 + 16) }
            if nb > 2 { store(s2, y + c0 + 32) }
            c0 += 16 * nb
        }
        // Scalar columns, one at a time with the sum in a register (y never aliases m or x).
        while c0 < cols {
            var acc: T = 0
            var row = m + c0
            for r in 0..<rows { acc += x[r] * row[0]; row += ld }
            y[c0] = acc
            c0 += 1
        }
    }

    /// Y[j] = Mᵀ X[j] for `count` vectors (X[j] at x + j·ldx, Y[j] at y + j·ldy): `gemvT` for the query heads of
    /// one kv head, M swept once per block of vectors instead of once per vector. From four vectors the 16-wide
    /// columns are the product Y = X M on Gemm's register tiles (8 vectors × 32 columns per tile on AVX-512;
    /// an hla3 step at H = 64, Hkv = 1, d = 64, whose S q and Pᵀ q these are, went from 34.1 to 30.3 µs against
    /// blocks of four vectors through M); fewer vectors go through M in blocks of two or one. Every output is
    /// the sum `gemvT` forms, in the same order with the same operations (a fused multiply-add chain over the
    /// rows from zero for the 16-wide columns, a scalar sum over the rest), so the results are gemvT's bit for bit.
    @inline(__always)
    static func gemvTMany<T: HLAFloat>(_ m: UnsafePointer<T>, _ rows: Int, _ cols: Int, _ ld: Int,
                                       _ x: UnsafePointer<T>, _ ldx: Int, _ count: Int,
                                       _ y: UnsafeMutablePointer<T>, _ ldy: Int) {
        let wide = cols / 16 * 16
        /// The 16-wide columns of vectors j..<j+height (height 1 or 2: a constant at each call).
        @inline(__always) func block(_ j: Int, height: Int) {
            let x0 = x + j * ldx, x1 = x0 + (height > 1 ? ldx : 0)
            let y0 = y + j * ldy
            var c0 = 0
            while c0 < wide {
                var a0 = SIMD16<T>(repeating: 0), a1 = a0
                var row = m + c0
                for r in 0..<rows {
                    let mv = load(row)
                    a0.addProduct(SIMD16(repeating: x0[r]), mv)
                    if height > 1 { a1.addProduct(SIMD16(repeating: x1[r]), mv) }
                    row += ld
                }
                store(a0, y0 + c0)
                if height > 1 { store(a1, y0 + ldy + c0) }
                c0 += 16
            }
        }
        if count >= 4 && wide > 0 {
            Gemm.gemm(false, false, count, wide, rows, 1, x, ldx, m, ld, 0, y, ldy)
        } else if wide > 0 {
            var j = 0
            while j + 2 <= count { block(j, height: 2); j += 2 }
            if j < count { block(j, height: 1) }
        }
        // Scalar columns, one at a time with the sum in a register.
        for j in 0..<count where wide < cols {
            let xj = x + j * ldx
            for c in wide..<cols {
                var acc: T = 0
                var row = m + c
                for r in 0..<rows { acc += xj[r] * row[0]; row += ld }
                y[j * ldy + c] = acc
            }
        }
    }

    /// M ← g·M + u wᵀ (rows × cols, leading dimension ld). Every element, in the vector panels and the scalar
    /// columns alike, is one fused multiply-add on g·M (u[r]·w[c] + g·M[r][c], rounded once after g·M), so with
    /// u = w (S ← γS + k kᵀ) a symmetric M stays exactly symmetric. The same for `rank1Project` and `rank1Project2`.
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
            while c < cols { row[c] = (g * row[c]).addingProduct(us, w[c]); c += 1 }   // the panels' fused form
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
            var a0 = T.Panel(), a1 = T.Panel(), a2 = T.Panel(), a3 = T.Panel()
            let wc = w + c0
            // A single column left after this block (the normalize column of d = 64, 128, ...) is swept in
            // the same row loop, with its own scalar accumulator: the same operations in the same row order
            // as the scalar tail below, but without a second pass over the rows.
            let tc = c0 + 4 * p, fold = tc == cols - 1
            var yt: T = fold && b != 0 ? b * y[tc] : 0
            // One panel at a time: load, update, store, accumulate, so only the four accumulators and one
            // panel are live across the row (w is re-read from L1 as a memory operand). Holding all four
            // updated panels and w in registers needed more than AVX2's 16 vector registers and the
            // compiler spilled an accumulator, putting a store-to-load round trip into every row's
            // dependency chain. The decay test is hoisted out of the row loop for the same reason
            // (n·1 = n exactly, so both loops give the same bits as scaling conditionally per row).
            @inline(__always) func sweep(_ scaled: Bool, _ tail: Bool) {
                var row = m + c0
                for r in 0..<rows {
                    let ur = u[r], xr = x[r]
                    @inline(__always) func one(_ o: Int, _ acc: inout T.Panel) {
                        var n = panel(row + o)
                        if scaled { n *= g }
                        n.addProduct(ur, panel(wc + o))
                        put(n, row + o)
                        acc.addProduct(xr, n)
                    }
                    one(0, &a0); one(p, &a1); one(2 * p, &a2); one(3 * p, &a3)
                    if tail {
                        let nv = (g * row[4 * p]).addingProduct(ur, w[tc])
                        row[4 * p] = nv
                        yt += (a * xr) * nv
                    }
                    row += ld
                }
            }
            switch (g == 1, fold) {
            case (true, false): sweep(false, false)
            case (false, false): sweep(true, false)
            case (true, true): sweep(false, true)
            case (false, true): sweep(true, true)
            }
            @inline(__always) func out(_ acc: T.Panel, _ o: UnsafeMutablePointer<T>) {
                put(b == 0 ? acc * a : acc * a + panel(o) * b, o)
            }
            out(a0, y + c0); out(a1, y + c0 + p); out(a2, y + c0 + 2 * p); out(a3, y + c0 + 3 * p)
            c0 += 4 * p
            if fold { y[tc] = yt; c0 = cols }
        }
        // The 16-wide blocks left (up to three for float32: 16, 32 or 48 columns past the panels) in one
        // sweep over the rows, each with its own accumulator. One block per sweep left a single
        // accumulator chain, so each row waited for the previous row's multiply-add to complete.
        let gv = SIMD16<T>(repeating: g)
        while c0 + 16 <= cols {
            let nb = min((cols - c0) / 16, 3)
            var s0 = SIMD16<T>(repeating: 0), s1 = s0, s2 = s0
            let wb = w + c0
            @inline(__always) func sweep(_ scaled: Bool, _ nb: Int) {
                var row = m + c0
                for r in 0..<rows {
                    let ur = SIMD16<T>(repeating: u[r]), xr = SIMD16<T>(repeating: x[r])
                    @inline(__always) func one(_ o: Int, _ acc: inout SIMD16<T>) {
                        var nv = scaled ? load(row + o) * gv : load(row + o)
                        nv.addProduct(ur, load(wb + o)); store(nv, row + o)
                        acc.addProduct(xr, nv)
                    }
                    one(0, &s0)
                    if nb > 1 { one(16, &s1) }
                    if nb > 2 { one(32, &s2) }
                    row += ld
                }
            }
            if g == 1 { sweep(false, nb) } else { sweep(true, nb) }
            @inline(__always) func out(_ acc: SIMD16<T>, _ o: UnsafeMutablePointer<T>) {
                store(b == 0 ? acc * SIMD16(repeating: a) : acc * SIMD16(repeating: a) + load(o) * SIMD16(repeating: b), o)
            }
            out(s0, y + c0)
            if nb > 1 { out(s1, y + c0 + 16) }
            if nb > 2 { out(s2, y + c0 + 32) }
            c0 += 16 * nb
        }
        // Scalar columns, one at a time with the sum in a register (y never aliases m, u, w or x): summing
        // into y[c] in memory made every row wait for the previous row's store.
        while c0 < cols {
            var acc: T = b == 0 ? 0 : b * y[c0]
            let wc = w[c0]
            var row = m + c0
            for r in 0..<rows {
                let nv = (g * row[0]).addingProduct(u[r], wc)   // the panels' fused form (S stays exactly symmetric)
                row[0] = nv
                acc += (a * x[r]) * nv
                row += ld
            }
            y[c0] = acc
            c0 += 1
        }
    }

    /// Two consecutive tokens' `rank1Project` on one matrix in a single sweep over it: M ← g·M + u1 w1ᵀ,
    /// y1 = a·Mᵀ x1 + b·y1, then M ← g·M + u2 w2ᵀ, y2 = a·Mᵀ x2 + b·y2. Every element and every output goes
    /// through exactly the operations of the two calls, in the same order (columns below the last multiple of 16:
    /// the same lane-wise multiply-adds, whichever block width; the rest: rank1Project's scalar formula), so the
    /// results are the two calls' bit for bit, with the matrix read and written once instead of twice. y1 and y2
    /// alias nothing else (they are written after the sweep).
    @inline(__always)
    static func rank1Project2<T: HLAFloat>(_ m: UnsafeMutablePointer<T>, _ rows: Int, _ cols: Int, _ ld: Int, _ g: T,
                                           _ u1: UnsafePointer<T>, _ w1: UnsafePointer<T>,
                                           _ x1: UnsafePointer<T>, _ y1: UnsafeMutablePointer<T>,
                                           _ u2: UnsafePointer<T>, _ w2: UnsafePointer<T>,
                                           _ x2: UnsafePointer<T>, _ y2: UnsafeMutablePointer<T>, a: T = 1, b: T = 0) {
        let wide = cols / 16 * 16, gv = SIMD16<T>(repeating: g)
        var c0 = 0
        /// Columns c0..<c0+16·nb (nb 1 or 2: a constant at each call): per row, token 1's update and product,
        /// then token 2's, on the same registers; four accumulators per 32 float32 columns.
        @inline(__always) func block(_ nb: Int, _ scaled: Bool) {
            var s10 = SIMD16<T>(repeating: 0), s11 = s10, s20 = s10, s21 = s10
            let w1b = w1 + c0, w2b = w2 + c0
            var row = m + c0
            for r in 0..<rows {
                let a1 = SIMD16<T>(repeating: u1[r]), b1 = SIMD16<T>(repeating: x1[r])
                let a2 = SIMD16<T>(repeating: u2[r]), b2 = SIMD16<T>(repeating: x2[r])
                @inline(__always) func one(_ o: Int, _ acc1: inout SIMD16<T>, _ acc2: inout SIMD16<T>) {
                    var n = scaled ? load(row + o) * gv : load(row + o)
                    n.addProduct(a1, load(w1b + o))
                    acc1.addProduct(b1, n)
                    if scaled { n *= gv }
                    n.addProduct(a2, load(w2b + o))
                    acc2.addProduct(b2, n)
                    store(n, row + o)
                }
                one(0, &s10, &s20)
                if nb > 1 { one(16, &s11, &s21) }
                row += ld
            }
            @inline(__always) func out(_ acc: SIMD16<T>, _ o: UnsafeMutablePointer<T>) {
                store(b == 0 ? acc * SIMD16(repeating: a) : acc * SIMD16(repeating: a) + load(o) * SIMD16(repeating: b), o)
            }
            out(s10, y1 + c0); out(s20, y2 + c0)
            if nb > 1 { out(s11, y1 + c0 + 16); out(s21, y2 + c0 + 16) }
        }
        let scaled = g != 1
        if MemoryLayout<T>.size <= 4 {
            while c0 + 32 <= wide {
                if scaled { block(2, true) } else { block(2, false) }
                c0 += 32
            }
        }
        while c0 < wide {
            if scaled { block(1, true) } else { block(1, false) }
            c0 += 16
        }
        // Scalar columns: rank1Project's formula for both tokens, one column at a time.
        while c0 < cols {
            var acc1: T = b == 0 ? 0 : b * y1[c0], acc2: T = b == 0 ? 0 : b * y2[c0]
            let wc1 = w1[c0], wc2 = w2[c0]
            var row = m + c0
            for r in 0..<rows {
                let n1 = (g * row[0]).addingProduct(u1[r], wc1)
                acc1 += (a * x1[r]) * n1
                let n2 = (g * n1).addingProduct(u2[r], wc2)
                row[0] = n2
                acc2 += (a * x2[r]) * n2
                row += ld
            }
            y1[c0] = acc1; y2[c0] = acc2
            c0 += 1
        }
    }
}
