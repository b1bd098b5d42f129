import CHLA

/// The engine's dense products: row-major C[m×n] = α·op(A)·op(B) + β·C on register tiles.
///
/// libhla owns this kernel rather than calling a BLAS: its products are small (chunk × d, d × d) and
/// L1/L2-resident, where a BLAS spends a large share of its time packing; and a BLAS brings its own
/// threads, buffers and locks into the host (an allocation failure inside OpenBLAS retries forever, and
/// its buffer lock can be held across a host's fork). This kernel allocates nothing itself (its packing panel is
/// the library's thread-local storage), takes no lock and runs on the calling thread.
///
/// Tiles are 6 rows × one `Panel` (16 float32 or 8 float64 columns: two AVX registers), so the 6 × 2 accumulators,
/// the panel and a broadcast fill the 16 vector registers (Sources/CHLA/tile256.c). On a CPU with AVX-512, float32
/// tiles are 8 rows × the same panel, one zmm register per row, or 8 rows × two adjacent panels where op(B) is read
/// in place and has no B- or C-side structure (`avx512`: Sources/CHLA/tile512.c). They form the same sums in the same
/// order, so the bits do not depend on the kernel (in triangular products the taller tile adds a few more exact-zero
/// terms at the diagonal, which change no nonzero result; chunks with non-finite inputs never reach them). Under
/// .lowerC the AVX2 float32 products start each panel's diagonal block with an 8 × 8 tile (the same chains and
/// stores), which computes less above the diagonal than a 6 × 16 one. op(B) is
/// read in place when it is row-major (no transpose) and the panel is full; otherwise (Bᵀ, or the last partial panel)
/// a block of `Gemm.kc` rows is packed, zero-padded, into the thread's 8 KiB panel (Sources/CHLA/panel.c). Semantics
/// are BLAS's: β = 0 never reads C; α = 0 or k = 0 gives β·C without reading A or B. Each C element is a fixed-order
/// sum over k (in blocks of `kc` where op(B) is packed), so a call's results depend only on its arguments, never on
/// the thread or on other calls.
enum Gemm {
    /// Rows of a register tile (AVX2: 6; the float32 AVX-512 tile: `mr512`).
    static let mr = 6
    static let mr512 = 8

    /// Whether float32 products run on the AVX-512 tile: the CPU and the OS support AVX-512F (and `avx2` holds) and
    /// the environment variable HLA_SIMD is not "avx2" (which keeps every product on the AVX2/FMA tiles: a comparison
    /// or a fallback) nor "portable". Decided when the library is loaded (Sources/CHLA/tile512.c).
    @inline(__always) static var avx512: Bool { hla_private_use_avx512() != 0 }
    /// Whether the AVX2 tiles and step kernel run (Sources/CHLA/tile256.c): the CPU and the OS support AVX2 and FMA
    /// and HLA_SIMD is not "portable". Otherwise (a generic x86-64 build, `make HLA_TARGET_CPU=`, on an older CPU) the
    /// products take the portable tile (the same bits, slowly) and the steps the portable composition.
    @inline(__always) static var avx2: Bool { hla_private_use_avx2() != 0 }
    /// Rows of op(B) packed per block (the thread's 8 KiB panel): the engine's products have k ≤ 128 at d ≤ 128 and
    /// the default chunk sizes, so one block holds all of k.
    static let kc = 128

    /// Zero patterns of the triangular products of the chunk kernels (square n × n operands, diagonal
    /// included in the nonzero part). Skipping what is known to be zero changes no result: the skipped
    /// terms are exact zeros, and each sum keeps its order.
    struct Structure: OptionSet {
        let rawValue: Int
        /// op(A)[i][p] = 0 for p > i: row i sums p ≤ i only.
        static let lowerA = Structure(rawValue: 1)
        /// op(A)[i][p] = 0 for p < i: row i sums p ≥ i only.
        static let upperA = Structure(rawValue: 2)
        /// op(B)[p][j] = 0 for p > j: column j sums p ≤ j only.
        static let upperB = Structure(rawValue: 4)
        /// Only C[i][j] with j ≤ i is wanted: tiles wholly above the diagonal are not computed (their C
        /// is left as it was); the caller masks the rest.
        static let lowerC = Structure(rawValue: 8)
    }

    @inline(__always)
    static func gemm<T: HLAFloat>(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
                                  _ alpha: T, _ a: UnsafePointer<T>, _ lda: Int,
                                  _ b: UnsafePointer<T>, _ ldb: Int,
                                  _ beta: T, _ c: UnsafeMutablePointer<T>, _ ldc: Int,
                                  structure: Structure = []) {
        if m <= 0 || n <= 0 { return }
        if k <= 0 || alpha == 0 { scale(m, n, beta, c, ldc); return }
        let nr = T.Panel.scalarCount
        let wide = T.self == Float.self && avx512, mr = wide ? mr512 : mr
        // AVX-512, op(B) read in place and no structure on the B or C side: two panels per tile.
        let pairs = wide && !transB && !structure.contains(.upperB) && !structure.contains(.lowerC)
        // A(i, p) = a[i·ars + p·acs]; B(p, j) = b[p·brs + j·bcs].
        let ars = transA ? 1 : lda, acs = transA ? lda : 1
        let brs = transB ? 1 : ldb, bcs = transB ? ldb : 1
        let lowerC = structure.contains(.lowerC)
        // .lowerC on the AVX2 float32 tiles, C square in whole panels: each panel's diagonal block starts with a narrow
        // tile (8 rows × 8 columns: hla_private_tile_narrow_avx2) and the 6-row tiles start 8 rows below the panel's
        // first column. At d = 64 a 6-row tile there computed 28% more than C's lower half at n = 64, this scheme 11%.
        let narrow = lowerC && T.self == Float.self && !wide && avx2 && m == n && n % nr == 0
        @inline(__always) func range(_ i0: Int, _ rows: Int, _ j0: Int, _ w: Int) -> (Int, Int) {
            kRange(k, i0, rows, j0, w, structure)
        }
        let plan = hla_private_plan_get()
        @inline(__always) func prefetchStep() { planStep(plan) }
        /// The row tiles of column panel j0 (w columns) from row `start`, over the block p0..<p0+kb of k whose rows of
        /// op(B) are at bp + (p - p0)·bs: each tile's k range within the block (β where the range begins, 1 after; a
        /// tile with an empty range scales its C by β in the first block). op(B) read in place is one block, p0 = 0 and
        /// kb = k.
        @inline(__always) func rowTiles(_ j0: Int, _ w: Int, base: Int, start: Int, p0: Int, kb: Int,
                                        _ bp: UnsafePointer<T>, _ bs: Int) {
            if narrow {
                // The diagonal block's first 8 rows (columns j0..<j0+8: the rest of those rows is above the diagonal).
                let (kLo, kHi) = range(j0, 8, j0, 8)
                let lo = max(kLo, p0), hi = min(kHi, p0 + kb)
                prefetchStep()
                if hi > lo {
                    #if DEBUG
                    hla_private_tile_macs_add(Int64((hi - lo) * 8 * 8))
                    #endif
                    hla_private_tile_narrow_avx2(hi - lo, float(a + j0 * ars + lo * acs), ars, acs, 8,
                                                 float(bp + (lo - p0) * bs), bs, float(c + j0 * ldc + j0), ldc,
                                                 unsafeBitCast(alpha, to: Float.self),
                                                 unsafeBitCast(lo == kLo ? beta : 1, to: Float.self))
                } else if kHi <= kLo && p0 == 0 {
                    scale(8, 8, beta, c + j0 * ldc + j0, ldc)
                }
            }
            var i0 = start
            while i0 < m {
                let rows = tileRows(m - base, i0 - base, mr), (kLo, kHi) = range(i0, rows, j0, w)
                let lo = max(kLo, p0), hi = min(kHi, p0 + kb)
                prefetchStep()
                if w > nr { prefetchStep() }
                if hi > lo {
                    tile(hi - lo, a + i0 * ars + lo * acs, ars, acs, rows, bp + (lo - p0) * bs, bs,
                         c + i0 * ldc + j0, ldc, w, alpha, lo == kLo ? beta : 1, wide: wide)
                } else if kHi <= kLo && p0 == 0 {
                    scale(rows, w, beta, c + i0 * ldc + j0, ldc)
                }
                i0 += rows
            }
        }
        /// Every column panel of C; `packed` (kc × nr elements) receives op(B) where it cannot be read in place.
        @inline(__always) func panels(_ packed: UnsafeMutablePointer<T>?) {
            var j0 = 0
            while j0 < n {
                // Two full panels per AVX-512 tile (8 × 32) where `pairs` allows, else one panel.
                let w = pairs && n - j0 >= 2 * nr ? 2 * nr : min(nr, n - j0)
                // With .lowerC, row tiles that end above this panel's first column are skipped; with `narrow`, the
                // first 8 rows of the panel's diagonal block are one narrow tile and the 6-row tiles start below them
                // (their row counts as in a product of the m - base rows from `base` on).
                let base = narrow ? j0 + 8 : 0, start = narrow ? base : lowerC ? firstTile(m, j0, mr) : 0
                if !transB && w >= nr {
                    // op(B) rows are contiguous panels of B itself: no packing, the whole k in registers.
                    rowTiles(j0, w, base: base, start: start, p0: 0, kb: k, b + j0, ldb)
                } else {
                    let packed = packed.unsafelyUnwrapped
                    var p0 = 0
                    while p0 < k {
                        let kb = min(kc, k - p0)
                        pack(kb, w, b + p0 * brs + j0 * bcs, brs, bcs, packed)
                        rowTiles(j0, w, base: base, start: start, p0: p0, kb: kb, packed, nr)
                        p0 += kb
                    }
                }
                j0 += w
            }
        }
        if !transB && n % nr == 0 { return panels(nil) }
        // The packing block goes into the thread's panel (Sources/CHLA/panel.c): `pack` writes every element the
        // tiles read, so it needs no initialization (a stack buffer did: 4-8 KiB of zeros on every such call).
        panels(hla_private_panel().unsafelyUnwrapped.assumingMemoryBound(to: T.self))
    }

    /// C[m×n] = α·(op(A1)·B1 + op(A2)·B2) + β·C: two products into one C (op(A1) m × k1, B1 k1 × n; op(A2) m × k2,
    /// B2 k2 × n; B1 and B2 row-major, read in place), each element one chain over A1's terms then A2's, so C is
    /// read and written once and a tile's fixed cost is paid once over k1 + k2. `structure2`: .lowerA or .upperA of
    /// op(A2) (square, k2 = m), as in `gemm`. Where n is not a multiple of the panel, where op(A1) and op(A2)
    /// together exceed `fusedBytes` (or k1, k2 or α is 0) it runs as `gemm` over A1 then `gemm` over A2 with β = 1
    /// (the same terms, C rounded in between): which of the two forms a call takes depends only on its shape,
    /// never on the thread or the SIMD kernel. `structure1`: the same for op(A1) (square, k1 = m).
    /// `mid` (m × n, leading dimension ldc; only with α = 1 and β = 0): also receives op(A1)·B1 alone, the bits
    /// `gemm` of A1 with structure1 gives it, from the same tiles (so a caller needing both the first product and
    /// the sum forms the first once); such calls run on the AVX2 tiles (the same bits as the AVX-512 ones).
    @inline(__always)
    static func gemm2<T: HLAFloat>(_ m: Int, _ n: Int, _ alpha: T, _ beta: T, _ c: UnsafeMutablePointer<T>, _ ldc: Int,
                                   _ transA1: Bool, _ k1: Int, _ a1: UnsafePointer<T>, _ lda1: Int,
                                   _ b1: UnsafePointer<T>, _ ldb1: Int,
                                   _ transA2: Bool, _ k2: Int, _ a2: UnsafePointer<T>, _ lda2: Int,
                                   _ b2: UnsafePointer<T>, _ ldb2: Int, structure1: Structure = [],
                                   structure2: Structure = [], mid: UnsafeMutablePointer<T>? = nil) {
        if m <= 0 || n <= 0 { return }
        precondition(mid == nil || (alpha == 1 && beta == 0), "gemm2's mid needs alpha = 1 and beta = 0")
        let nr = T.Panel.scalarCount
        if n % nr != 0 || k1 <= 0 || k2 <= 0 || alpha == 0 || m * (k1 + k2) * MemoryLayout<T>.stride > fusedBytes {
            gemm(transA1, false, m, n, k1, alpha, a1, lda1, b1, ldb1, beta, c, ldc, structure: structure1)
            if let mid { for i in 0..<m { for j in 0..<n { mid[i * ldc + j] = c[i * ldc + j] } } }
            gemm(transA2, false, m, n, k2, alpha, a2, lda2, b2, ldb2, 1, c, ldc, structure: structure2)
            return
        }
        let wide = T.self == Float.self && avx512 && mid == nil, mr = wide ? mr512 : mr
        let ars1 = transA1 ? 1 : lda1, acs1 = transA1 ? lda1 : 1
        let ars2 = transA2 ? 1 : lda2, acs2 = transA2 ? lda2 : 1
        let plan = hla_private_plan_get()
        @inline(__always) func prefetchStep() { planStep(plan) }
        var j0 = 0
        while j0 < n {
            let w = wide && n - j0 >= 2 * nr ? 2 * nr : nr
            var i0 = 0
            while i0 < m {
                let rows = tileRows(m, i0, mr)
                let (lo1, hi1) = kRange(k1, i0, rows, j0, w, structure1), (lo, hi) = kRange(k2, i0, rows, j0, w, structure2)
                prefetchStep()
                if w > nr { prefetchStep() }
                let s2 = Segment(kb: hi - lo, a: a2 + i0 * ars2 + lo * acs2, ars: ars2, acs: acs2, bp: b2 + lo * ldb2 + j0, bs: ldb2)
                tile(hi1 - lo1, a1 + i0 * ars1 + lo1 * acs1, ars1, acs1, rows, b1 + lo1 * ldb1 + j0, ldb1, c + i0 * ldc + j0,
                     ldc, w, alpha, beta, wide: wide, then: s2, mid: mid.map { $0 + i0 * ldc + j0 })
                i0 += rows
            }
            j0 += w
        }
    }

    /// The k range (lo, hi) register tile (i0, j0) of `rows` × `w` sums over in a product of depth k with `structure`
    /// (shared by `gemm` and `gemm2`): the terms outside it are known zeros.
    @inline(__always)
    static func kRange(_ k: Int, _ i0: Int, _ rows: Int, _ j0: Int, _ w: Int, _ structure: Structure) -> (Int, Int) {
        var hi = k
        if structure.contains(.lowerA) { hi = min(hi, i0 + rows) }
        if structure.contains(.upperB) { hi = min(hi, j0 + w) }
        return (structure.contains(.upperA) ? min(i0, hi) : 0, hi)
    }

    /// Six lines of the thread's prefetch plan (the inputs packed next, the outputs of this unit), requested before
    /// each register tile (two before a tile of two panels). With three, the plan of a chunk of hla2 or ahla at d = 64
    /// (640 lines: 32 rows of k, v, q and o, five lines each) was 39-45% unrequested when the unit ended, and
    /// packing then waited for those rows; six cover it, and the chunked forward took 2-7% less time on one thread
    /// (hla2, ahla, hla3 at d = 64, B = 1 and 8; one process timing 3 and 6 lines alternately, minima of 12).
    /// At d = 128 the plan was already 70-100% covered and the two measured alike.
    @inline(__always)
    static func planStep(_ plan: UnsafeMutablePointer<hla_private_plan>?) {
        let p = plan.unsafelyUnwrapped
        if p.pointee.row == nil { return }
        hla_private_plan_step(p); hla_private_plan_step(p); hla_private_plan_step(p)
        hla_private_plan_step(p); hla_private_plan_step(p); hla_private_plan_step(p)
    }

    /// Largest op(A1) + op(A2) (m × (k1 + k2) elements) `gemm2` fuses. Each column panel of C sweeps all of A, which
    /// stays in L1 (48 KiB here) from one panel to the next while it fits beside the panels of B: fused, the
    /// chunk kernels' products at d = 64 (16 KiB of A) ran 2% faster than as two products; at d = 128 (64 KiB)
    /// 6% slower, A then streaming from L2 once per panel.
    static let fusedBytes = 32 << 10

    /// The second product of a `gemm2` tile: kb steps of A (A(i, p) at a[i·ars + p·acs]) times P (row p at bp + p·bs).
    struct Segment<T> {
        let kb: Int, a: UnsafePointer<T>, ars: Int, acs: Int, bp: UnsafePointer<T>, bs: Int
    }

    /// The float32 view of a pointer (where T is Float).
    @inline(__always)
    static func float<T>(_ p: UnsafePointer<T>) -> UnsafePointer<Float> {
        UnsafeRawPointer(p).assumingMemoryBound(to: Float.self)
    }
    @inline(__always)
    static func float<T>(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: Float.self)
    }

    /// The float64 view of a pointer (where T is Double).
    @inline(__always)
    static func double<T>(_ p: UnsafePointer<T>) -> UnsafePointer<Double> {
        UnsafeRawPointer(p).assumingMemoryBound(to: Double.self)
    }
    @inline(__always)
    static func double<T>(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<Double> {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: Double.self)
    }

    /// Rows of the row tile starting at i0 of an m-row product with `mr`-row tiles: `mr`, except that with 6-row
    /// tiles the last 8 rows of an m with m % 6 == 2 (32, 128) run as two 4-row tiles rather than 6 + 2 (a 2-row
    /// tile keeps only 4 accumulators in flight, half the FMA throughput). Tiles start at multiples of `mr` below
    /// m - 8.
    @inline(__always)
    static func tileRows(_ m: Int, _ i0: Int, _ mr: Int) -> Int {
        let left = m - i0
        return mr == 6 && left == 8 && m % 6 == 2 ? 4 : min(mr, left)
    }

    /// Start of the row tile holding row r (< m) under `tileRows`.
    @inline(__always)
    static func firstTile(_ m: Int, _ r: Int, _ mr: Int) -> Int {
        if mr == 6 && m % 6 == 2 && m >= 8 && r >= m - 8 && r < m { return r >= m - 4 ? m - 4 : m - 8 }
        return (r / mr) * mr
    }

    /// C ← β·C (β = 0 writes zeros without reading C).
    @inline(__always)
    static func scale<T: HLAFloat>(_ m: Int, _ n: Int, _ beta: T, _ c: UnsafeMutablePointer<T>, _ ldc: Int) {
        if beta == 1 { return }
        for i in 0..<m {
            let row = c + i * ldc
            if beta == 0 { for j in 0..<n { row[j] = 0 } } else { for j in 0..<n { row[j] *= beta } }
        }
    }

    /// Copy kb × w elements of op(B) into a kb × nr row-major panel, zero-padding columns w..<nr.
    @inline(__always)
    static func pack<T: HLAFloat>(_ kb: Int, _ w: Int, _ b: UnsafePointer<T>, _ brs: Int, _ bcs: Int,
                                  _ dst: UnsafeMutablePointer<T>) {
        let nr = T.Panel.scalarCount
        if bcs == 1 {
            for p in 0..<kb {
                let src = b + p * brs, d = dst + p * nr
                for j in 0..<w { d[j] = src[j] }
                for j in w..<nr { d[j] = 0 }
            }
        } else {
            // Transposed source: walk it row by row (contiguous in p), scatter into the panel's columns.
            if w < nr { for p in 0..<kb { for j in w..<nr { dst[p * nr + j] = 0 } } }
            var j8 = 0, p8 = 0
            if T.self == Float.self && brs == 1 {
                // 8 × 8 blocks through register shuffles (float32, source contiguous in p); the rest below.
                j8 = w & ~7; p8 = kb & ~7
                let s = UnsafeRawPointer(b).assumingMemoryBound(to: Float.self)
                let d = UnsafeMutableRawPointer(dst).assumingMemoryBound(to: Float.self)
                var j = 0
                while j < j8 {
                    var p = 0
                    while p < p8 { hla_private_transpose8x8(s + j * bcs + p, bcs, d + p * nr + j, nr); p += 8 }
                    j += 8
                }
            }
            for j in 0..<w {
                let src = b + j * bcs
                for p in (j < j8 ? p8 : 0)..<kb { dst[p * nr + j] = src[p * brs] }
            }
        }
    }

    /// One register tile: C[rows × w] = α · A[rows × kb] · P[kb × nr] + β · C, where P's row p is at bp + p·bs
    /// (Sources/CHLA). Tiles of 1-2 and 3-4 rows (the last rows of a 32- or 64-row product) run with 2 or 4
    /// accumulator rows instead of 6 (AVX-512: 8); rows past `rows` repeat the last valid row of A and are not
    /// stored. `wide` (float32 only): the AVX-512 tile of up to 8 rows; w = 2·nr there is two full panels side by
    /// side (the right one's row p at bp + p·bs + nr). Otherwise the AVX2 tile of `T` (tile256.c), which was Swift
    /// code here until stop 46: clang kept one of its accumulators in the register it loads half of P's row into, two
    /// register moves per step of k, and the chunked forward took 0.88-0.96 of its time on the C tile (the same
    /// bits). `then`: a second product summed in the same chain (gemm2); `mid` (with `then`, not `wide`): receives the
    /// first product's sum alone, stored as α = 1, β = 0 would store it.
    @inline(__always)
    static func tile<T: HLAFloat>(_ kb: Int, _ a: UnsafePointer<T>, _ ars: Int, _ acs: Int, _ rows: Int,
                                  _ bp: UnsafePointer<T>, _ bs: Int,
                                  _ c: UnsafeMutablePointer<T>, _ ldc: Int, _ w: Int, _ alpha: T, _ beta: T,
                                  wide: Bool, then s2: Segment<T>? = nil, mid: UnsafeMutablePointer<T>? = nil) {
        #if DEBUG
        // the vector tiles compute whole panels (a partial one zero-padded); the portable tile exactly w columns
        hla_private_tile_macs_add(Int64((kb + (s2?.kb ?? 0)) * rows * (avx2 ? max(w, T.Panel.scalarCount) : w)))
        #endif
        if !avx2 {
            let s = s2 ?? Segment(kb: 0, a: a, ars: ars, acs: acs, bp: bp, bs: bs)
            if T.self == Double.self {
                return hla_private_dtile_sum_portable(kb, double(a), ars, acs, double(bp), bs, s.kb, double(s.a), s.ars,
                                                      s.acs, double(s.bp), s.bs, rows, double(c), ldc, w,
                                                      unsafeBitCast(alpha, to: Double.self), unsafeBitCast(beta, to: Double.self),
                                                      mid.map { double($0) })
            }
            return hla_private_tile_sum_portable(kb, float(a), ars, acs, float(bp), bs, s.kb, float(s.a), s.ars, s.acs,
                                                 float(s.bp), s.bs, rows, float(c), ldc, w,
                                                 unsafeBitCast(alpha, to: Float.self), unsafeBitCast(beta, to: Float.self),
                                                 mid.map { float($0) })
        }
        if let mid, let s = s2 {   // (never `wide`: gemm2 keeps such calls on these tiles)
            if T.self == Double.self {
                return hla_private_dtile_sum_mid_avx2(kb, double(a), ars, acs, double(bp), bs, s.kb, double(s.a), s.ars,
                                                      s.acs, double(s.bp), s.bs, rows, double(c), ldc, w,
                                                      unsafeBitCast(alpha, to: Double.self),
                                                      unsafeBitCast(beta, to: Double.self), double(mid))
            }
            return hla_private_tile_sum_mid_avx2(kb, float(a), ars, acs, float(bp), bs, s.kb, float(s.a), s.ars, s.acs,
                                                 float(s.bp), s.bs, rows, float(c), ldc, w,
                                                 unsafeBitCast(alpha, to: Float.self), unsafeBitCast(beta, to: Float.self),
                                                 float(mid))
        }
        if T.self == Double.self {
            let al = unsafeBitCast(alpha, to: Double.self), be = unsafeBitCast(beta, to: Double.self)
            if let s = s2 {
                return hla_private_dtile_sum_avx2(kb, double(a), ars, acs, double(bp), bs, s.kb, double(s.a), s.ars,
                                                  s.acs, double(s.bp), s.bs, rows, double(c), ldc, w, al, be)
            }
            return hla_private_dtile_avx2(kb, double(a), ars, acs, rows, double(bp), bs, double(c), ldc, w, al, be)
        }
        let al = unsafeBitCast(alpha, to: Float.self), be = unsafeBitCast(beta, to: Float.self)
        if wide {
            if let s = s2 {
                if w > T.Panel.scalarCount {
                    return hla_private_tile2_sum_avx512(kb, float(a), ars, acs, float(bp), bs, s.kb, float(s.a), s.ars, s.acs,
                                                        float(s.bp), s.bs, rows, float(c), ldc, al, be)
                }
                return hla_private_tile_sum_avx512(kb, float(a), ars, acs, float(bp), bs, s.kb, float(s.a), s.ars, s.acs,
                                                   float(s.bp), s.bs, rows, float(c), ldc, w, al, be)
            }
            if w > T.Panel.scalarCount {
                return hla_private_tile2_avx512(kb, float(a), ars, acs, rows, float(bp), bs, float(c), ldc, al, be)
            }
            return hla_private_tile_avx512(kb, float(a), ars, acs, rows, float(bp), bs, float(c), ldc, w, al, be)
        }
        if let s = s2 {
            return hla_private_tile_sum_avx2(kb, float(a), ars, acs, float(bp), bs, s.kb, float(s.a), s.ars, s.acs,
                                             float(s.bp), s.bs, rows, float(c), ldc, w, al, be)
        }
        hla_private_tile_avx2(kb, float(a), ars, acs, rows, float(bp), bs, float(c), ldc, w, al, be)
    }
}
