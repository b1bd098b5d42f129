/* The 6-row register tile of the engine's dense products on AVX2/FMA (Gemm.tile: 6 rows x one panel of two
 * registers, 16 float32 or 8 float64 columns), written once over the element type and included by tile256.c once per
 * type. The including file defines first:
 *   TT, TV, TL               the element type, its register type and that register's lanes (a panel: 2·TL columns)
 *   TV_LOAD(p), TV_STORE(p, x), TV_SET1(s), TV_ZERO(), TV_FMA(a, b, c) (a·b + c, fused), TV_MUL(a, b)
 *   TNAME(x)                 the name of this type's x (store, tile)
 *   TEXPORT(x)               the name of this type's entry point x (tile, tile_sum: Gemm.tile calls them)
 * which this file undefines at its end (so that it can be included again). Every C element is one fused multiply-add
 * chain over k in order from zero (over the first segment's terms, then the second's), and the store applies α and β
 * as the Swift tile's store did (Gemm.store, until stop 46): a full panel α·x (no multiply when α = 1), then β·C
 * added fused; a partial one α·x + β·C unfused (FP_CONTRACT OFF in the includer), C not read when β = 0. */

/* c[0..<w] = alpha * (x | y) + beta * c. */
static inline HLA_AVX2 __attribute__((always_inline)) void TNAME(store)(TV x, TV y, TT *c, ptrdiff_t w, TT alpha,
    TT beta) {
    if (w == 2 * TL) {
        if (alpha != 1) { const TV al = TV_SET1(alpha); x = TV_MUL(x, al); y = TV_MUL(y, al); }
        if (beta != 0) {
            const TV be = TV_SET1(beta);
            x = TV_FMA(be, TV_LOAD(c), x);
            y = TV_FMA(be, TV_LOAD(c + TL), y);
        }
        TV_STORE(c, x); TV_STORE(c + TL, y);
        return;
    }
    TT t[2 * TL];
    TV_STORE(t, x); TV_STORE(t + TL, y);
    if (beta == 0) { for (ptrdiff_t j = 0; j < w; j++) c[j] = alpha * t[j]; }
    else { for (ptrdiff_t j = 0; j < w; j++) c[j] = alpha * t[j] + beta * c[j]; }
}

/* One segment of a tile's sum: kb steps of A (rows a + r*ars, step acs) times P (row p at bp + p*bs: one panel),
 * accumulated into x0..x5 (the panel's left register) and y0..y5 (its right). Rows past `rows` repeat the last
 * valid row. */
#define ROWS(a, ars) \
    const TT *a0 = (a), *a1 = (a) + (rows > 1 ? 1 : rows - 1) * (ars), *a2 = (a) + (rows > 2 ? 2 : rows - 1) * (ars), \
             *a3 = (a) + (rows > 3 ? 3 : rows - 1) * (ars), *a4 = (a) + (rows > 4 ? 4 : rows - 1) * (ars), \
             *a5 = (a) + (rows > 5 ? 5 : rows - 1) * (ars); \
    (void)a1; (void)a2; (void)a3; (void)a4; (void)a5;
#define STEP(r) if (height > r) { const TV s = TV_SET1(a##r[o]); x##r = TV_FMA(s, b, x##r); y##r = TV_FMA(s, e, y##r); }
#define SEGMENT(kb, a, ars, acs, bp, bs) { \
    ROWS(a, ars) \
    ptrdiff_t o = 0; const TT *q = (bp); \
    for (ptrdiff_t p = 0; p < (kb); p++, o += (acs), q += (bs)) { \
        const TV b = TV_LOAD(q), e = TV_LOAD(q + TL); \
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) \
    } }

/* `height` (1-6, a constant after inlining) accumulator rows, rows <= height: the sum over segment 1, then over
 * segment 2 (kb2 = 0: none), stored once: 2 * height accumulators, P's row and a broadcast, within AVX2's 16
 * registers. `mid` (or NULL; leading dimension ldc): receives the sum over segment 1 alone, as a tile of segment 1
 * with α = 1 and β = 0 would store it (the same bits). */
static inline HLA_AVX2 __attribute__((always_inline)) void TNAME(tile)(int height, ptrdiff_t kb, const TT *a,
    ptrdiff_t ars, ptrdiff_t acs, const TT *bp, ptrdiff_t bs, ptrdiff_t kb2, const TT *a2_, ptrdiff_t ars2,
    ptrdiff_t acs2, const TT *bp2, ptrdiff_t bs2, ptrdiff_t rows, TT *c, ptrdiff_t ldc, ptrdiff_t w, TT alpha,
    TT beta, TT *mid) {
    TV x0 = TV_ZERO(), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0;
    TV y0 = x0, y1 = x0, y2 = x0, y3 = x0, y4 = x0, y5 = x0;
    SEGMENT(kb, a, ars, acs, bp, bs)
#define PUT(r, c, alpha, beta) if (height > r && rows > r) TNAME(store)(x##r, y##r, (c) + r * ldc, w, alpha, beta);
    if (mid) { PUT(0, mid, 1, 0) PUT(1, mid, 1, 0) PUT(2, mid, 1, 0) PUT(3, mid, 1, 0) PUT(4, mid, 1, 0) PUT(5, mid, 1, 0) }
    SEGMENT(kb2, a2_, ars2, acs2, bp2, bs2)
    PUT(0, c, alpha, beta) PUT(1, c, alpha, beta) PUT(2, c, alpha, beta) PUT(3, c, alpha, beta) PUT(4, c, alpha, beta)
    PUT(5, c, alpha, beta)
#undef PUT
}
#undef ROWS
#undef STEP
#undef SEGMENT

/* Gemm's tiles (hla_private.h): heights 2, 4 and 6, as Gemm.tile chooses them (a 1-, 3- or 5-row tile repeats a
 * row); `tile_sum` over the sum of two products. */
#define BY_HEIGHT(f, ...) \
    if (rows > 4) f(6, __VA_ARGS__); else if (rows > 2) f(4, __VA_ARGS__); else f(2, __VA_ARGS__);

HLA_AVX2 void TEXPORT(tile)(ptrdiff_t kb, const TT *a, ptrdiff_t ars, ptrdiff_t acs, ptrdiff_t rows, const TT *bp,
    ptrdiff_t bs, TT *c, ptrdiff_t ldc, ptrdiff_t w, TT alpha, TT beta) {
    BY_HEIGHT(TNAME(tile), kb, a, ars, acs, bp, bs, 0, a, ars, acs, bp, bs, rows, c, ldc, w, alpha, beta, 0)
}

HLA_AVX2 void TEXPORT(tile_sum)(ptrdiff_t kb, const TT *a, ptrdiff_t ars, ptrdiff_t acs, const TT *bp, ptrdiff_t bs,
    ptrdiff_t kb2, const TT *a2, ptrdiff_t ars2, ptrdiff_t acs2, const TT *bp2, ptrdiff_t bs2, ptrdiff_t rows, TT *c,
    ptrdiff_t ldc, ptrdiff_t w, TT alpha, TT beta) {
    BY_HEIGHT(TNAME(tile), kb, a, ars, acs, bp, bs, kb2, a2, ars2, acs2, bp2, bs2, rows, c, ldc, w, alpha, beta, 0)
}

/* `tile_sum` that also stores the sum over the first segment into `mid` (Gemm.gemm2's `mid`). */
HLA_AVX2 void TEXPORT(tile_sum_mid)(ptrdiff_t kb, const TT *a, ptrdiff_t ars, ptrdiff_t acs, const TT *bp,
    ptrdiff_t bs, ptrdiff_t kb2, const TT *a2, ptrdiff_t ars2, ptrdiff_t acs2, const TT *bp2, ptrdiff_t bs2,
    ptrdiff_t rows, TT *c, ptrdiff_t ldc, ptrdiff_t w, TT alpha, TT beta, TT *mid) {
    BY_HEIGHT(TNAME(tile), kb, a, ars, acs, bp, bs, kb2, a2, ars2, acs2, bp2, bs2, rows, c, ldc, w, alpha, beta, mid)
}
#undef BY_HEIGHT
#undef TT
#undef TV
#undef TL
#undef TV_LOAD
#undef TV_STORE
#undef TV_SET1
#undef TV_ZERO
#undef TV_FMA
#undef TV_MUL
#undef TNAME
#undef TEXPORT
