/* The float32 register tile of the engine's dense products (Sources/HLA/Core/Gemm.swift) on AVX2/FMA, for CPUs
 * without AVX-512F (and under HLA_SIMD=avx2): 6 rows x one 16-column panel, two ymm registers per row; and, at the
 * end, the masked multi-head steps of hla3, hla2 and ahla (Sources/CHLA/step_heads.h) on ymm registers.
 * The tile is Gemm.tile's (which float64 products still run in Swift) written with intrinsics: the same sums in the
 * same order, stored as Gemm.store stores them, so the bits are the Swift tile's (and the AVX-512 tile's: tile512.c).
 * In Swift, clang kept one of the twelve accumulators in the register it loads B into and moved it out and back
 * (two register moves per step of k); the chunked forward on this tile took 0.88-0.95 of its time on the Swift tile
 * (Zen 3, ab.py, 15 rounds, one and two threads, d = 64 and 128; README, Speed).
 * The multi-head steps: all heads' products first, on this tile, then each head's W sweep in blocks of 64 columns
 * (eight accumulators, as Vec.rank1Project sweeps them), the kv blocks advanced in the sweeps that form head 0's
 * products (and, on a multi-query step's first thread, compared with and copied to the thread's copy in the same pass:
 * hla_private_kv_from). Called where dk and dvp are multiples of 64 (`onStepKernel` in
 * Sources/HLA/Ops/Operator.swift). Against the portable steps on a Zen 3 host (`ab.py`, 21 rounds, two threads,
 * d = 64): 0.75-0.93 of the time at H = 64 with one or eight kv heads (README, Speed, stop 45).
 * The library requires AVX2 and FMA (`import hla` and the header say so); the target attribute only lets this file
 * compile without -mavx2. Every element is one fused multiply-add chain in order (FP_CONTRACT OFF: no other multiply
 * is fused; the partial-panel store is unfused, as in Swift). */
#pragma STDC FP_CONTRACT OFF
#include <immintrin.h>
#include "hla_private.h"

#define HLA_AVX2 __attribute__((target("avx2,fma")))

/* c[0..<w] = alpha * (x | y) + beta * c (beta = 0: c is not read), as Gemm.store. */
static inline HLA_AVX2 __attribute__((always_inline)) void store(__m256 x, __m256 y, float *c, ptrdiff_t w,
    float alpha, float beta) {
    if (w == 16) {
        if (alpha != 1) { const __m256 al = _mm256_set1_ps(alpha); x = _mm256_mul_ps(x, al); y = _mm256_mul_ps(y, al); }
        if (beta != 0) {
            const __m256 be = _mm256_set1_ps(beta);
            x = _mm256_fmadd_ps(be, _mm256_loadu_ps(c), x);
            y = _mm256_fmadd_ps(be, _mm256_loadu_ps(c + 8), y);
        }
        _mm256_storeu_ps(c, x); _mm256_storeu_ps(c + 8, y);
        return;
    }
    float t[16];
    _mm256_storeu_ps(t, x); _mm256_storeu_ps(t + 8, y);
    if (beta == 0) { for (ptrdiff_t j = 0; j < w; j++) c[j] = alpha * t[j]; }
    else { for (ptrdiff_t j = 0; j < w; j++) c[j] = alpha * t[j] + beta * c[j]; }
}

/* One segment of a tile's sum: kb steps of A (rows a + r*ars, step acs) times P (row p at bp + p*bs: 16 columns),
 * accumulated into x0..x5 (left 8 columns) and y0..y5 (right 8). Rows past `rows` repeat the last valid row. */
#define ROWS(a, ars) \
    const float *a0 = (a), *a1 = (a) + (rows > 1 ? 1 : rows - 1) * (ars), *a2 = (a) + (rows > 2 ? 2 : rows - 1) * (ars), \
                *a3 = (a) + (rows > 3 ? 3 : rows - 1) * (ars), *a4 = (a) + (rows > 4 ? 4 : rows - 1) * (ars), \
                *a5 = (a) + (rows > 5 ? 5 : rows - 1) * (ars); \
    (void)a1; (void)a2; (void)a3; (void)a4; (void)a5;
#define STEP(r) if (height > r) { const __m256 s = _mm256_set1_ps(a##r[o]); \
    x##r = _mm256_fmadd_ps(s, b, x##r); y##r = _mm256_fmadd_ps(s, e, y##r); }
#define SEGMENT(kb, a, ars, acs, bp, bs) { \
    ROWS(a, ars) \
    ptrdiff_t o = 0; const float *q = (bp); \
    for (ptrdiff_t p = 0; p < (kb); p++, o += (acs), q += (bs)) { \
        const __m256 b = _mm256_loadu_ps(q), e = _mm256_loadu_ps(q + 8); \
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) \
    } }

/* `height` (1-6, a constant after inlining) accumulator rows, rows <= height: the sum over segment 1, then over
 * segment 2 (kb2 = 0: none), one chain per element, stored once: 2 * height accumulators, the two halves of P's row
 * and a broadcast, within AVX2's 16 registers. */
static inline HLA_AVX2 __attribute__((always_inline)) void tile(int height, ptrdiff_t kb, const float *a, ptrdiff_t ars,
    ptrdiff_t acs, const float *bp, ptrdiff_t bs, ptrdiff_t kb2, const float *a2_, ptrdiff_t ars2, ptrdiff_t acs2,
    const float *bp2, ptrdiff_t bs2, ptrdiff_t rows, float *c, ptrdiff_t ldc, ptrdiff_t w, float alpha, float beta) {
    __m256 x0 = _mm256_setzero_ps(), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0;
    __m256 y0 = x0, y1 = x0, y2 = x0, y3 = x0, y4 = x0, y5 = x0;
    SEGMENT(kb, a, ars, acs, bp, bs)
    SEGMENT(kb2, a2_, ars2, acs2, bp2, bs2)
#define PUT(r) if (height > r && rows > r) store(x##r, y##r, c + r * ldc, w, alpha, beta);
    PUT(0) PUT(1) PUT(2) PUT(3) PUT(4) PUT(5)
#undef PUT
}
#undef ROWS
#undef STEP
#undef SEGMENT

/* Gemm's tiles: heights 2, 4 and 6, as Gemm.tile chooses them (a 1-, 3- or 5-row tile repeats a row). */
#define BY_HEIGHT(f, ...) \
    if (rows > 4) f(6, __VA_ARGS__); else if (rows > 2) f(4, __VA_ARGS__); else f(2, __VA_ARGS__);

HLA_AVX2 void hla_private_tile_avx2(ptrdiff_t kb, const float *a, ptrdiff_t ars, ptrdiff_t acs, ptrdiff_t rows,
    const float *bp, ptrdiff_t bs, float *c, ptrdiff_t ldc, ptrdiff_t w, float alpha, float beta) {
    BY_HEIGHT(tile, kb, a, ars, acs, bp, bs, 0, a, ars, acs, bp, bs, rows, c, ldc, w, alpha, beta)
}

HLA_AVX2 void hla_private_tile_sum_avx2(ptrdiff_t kb, const float *a, ptrdiff_t ars, ptrdiff_t acs,
    const float *bp, ptrdiff_t bs, ptrdiff_t kb2, const float *a2, ptrdiff_t ars2, ptrdiff_t acs2, const float *bp2,
    ptrdiff_t bs2, ptrdiff_t rows, float *c, ptrdiff_t ldc, ptrdiff_t w, float alpha, float beta) {
    BY_HEIGHT(tile, kb, a, ars, acs, bp, bs, kb2, a2, ars2, acs2, bp2, bs2, rows, c, ldc, w, alpha, beta)
}
#undef BY_HEIGHT

/* The step kernel's products: C (m × w) = A (m × k) · B (k × w; w a multiple of 16), all three row-major and dense,
 * in tiles of up to 6 rows, each of exactly its rows (z = S q and y = Pᵀ q of Gemm's and Vec.gemvTMany's arithmetic:
 * the same bits). */
static inline HLA_AVX2 __attribute__((always_inline)) void products(ptrdiff_t m, ptrdiff_t k, const float *A,
    const float *B, ptrdiff_t w, float *C) {
#define ROWS_TILE(h) tile(h, k, A + i0 * k, k, 1, B + c0, w, 0, A, k, 1, B, w, h, C + i0 * w + c0, w, 16, 1, 0)
    for (ptrdiff_t i0 = 0; i0 < m; i0 += 6) {
        const ptrdiff_t rows = m - i0 < 6 ? m - i0 : 6;
        for (ptrdiff_t c0 = 0; c0 < w; c0 += 16) {
            switch (rows) {
            case 1: ROWS_TILE(1); break;
            case 2: ROWS_TILE(2); break;
            case 3: ROWS_TILE(3); break;
            case 4: ROWS_TILE(4); break;
            case 5: ROWS_TILE(5); break;
            default: ROWS_TILE(6); break;
            }
        }
    }
#undef ROWS_TILE
}

static inline HLA_AVX2 unsigned neq8(__m256 a, __m256 b) {
    __m256i e = _mm256_cmpeq_epi32(_mm256_castps_si256(a), _mm256_castps_si256(b));
    return ~(unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(e)) & 0xFFu;
}

#define HV __m256
#define HV_LANES 8
#define HV_MASK unsigned
#define HV_INLINE static inline HLA_AVX2 __attribute__((always_inline))
#define HV_EXPORT HLA_AVX2
#define HV_LOAD(p) _mm256_loadu_ps(p)
#define HV_STORE(p, x) _mm256_storeu_ps(p, x)
#define HV_SET1(s) _mm256_set1_ps(s)
#define HV_ZERO() _mm256_setzero_ps()
#define HV_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define HV_MUL(a, b) _mm256_mul_ps(a, b)
#define HV_NEQ(a, b) neq8(a, b)
#define HV_PRODUCTS(m, k, A, B, w, C) products(m, k, A, B, w, C)
#define HV_BLOCK 8
#define HV_FUSE 0
#define HV_KQ 0
#define HV_NAME(x) hla_private_##x##_avx2
#include "step_heads.h"
