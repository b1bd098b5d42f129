/* The register tiles of the engine's dense products (Sources/HLA/Core/Gemm.swift) on AVX2/FMA: float32 where the
 * CPU has no AVX-512F (and under HLA_SIMD=avx2), float64 everywhere. 6 rows x one panel of two ymm registers (16
 * float32 or 8 float64 columns), written once over the element type (Sources/CHLA/tile_avx2.h); and, at the end, the
 * masked multi-head steps of hla3, hla2 and ahla (Sources/CHLA/step_heads.h) on ymm registers.
 * The tile was Swift's until stop 46, with the same sums in the same order and the same stores: the same bits (and,
 * in float32, the AVX-512 tile's: tile512.c). In Swift, clang kept one of the twelve accumulators in the register it
 * loads half of P's row into and moved it out and back at every step of k (two register moves); the chunked forward
 * took 0.88-0.96 of its time on this tile in float32 (Zen 3, ab.py, 15 rounds, one and two threads, d = 64 and 128;
 * README, Speed).
 * The multi-head steps: all heads' products first, on this tile, then each head's W sweep in blocks of 64 columns
 * (eight accumulators, as Vec.rank1Project sweeps them), the kv blocks advanced in the sweeps that form head 0's
 * products (and, on a multi-query step's first thread, compared with and copied to the thread's copy in the same pass:
 * hla_private_kv_from). Called where dk and dvp are multiples of 64 (`onStepKernel` in
 * Sources/HLA/Ops/Operator.swift). Against the portable steps on a Zen 3 host (`ab.py`, 21 rounds, two threads,
 * d = 64): 0.75-0.93 of the time at H = 64 with one or eight kv heads (README, Speed, stop 45).
 * The library requires AVX2 and FMA (`import hla` and the header say so); the target attribute only lets this file
 * compile without -mavx2. Every element is one fused multiply-add chain in order (FP_CONTRACT OFF: no other multiply
 * is fused; the partial-panel store is unfused). */
#pragma STDC FP_CONTRACT OFF
#include <immintrin.h>
#include "hla_private.h"

#define HLA_AVX2 __attribute__((target("avx2,fma")))

#define TT float
#define TV __m256
#define TL 8
#define TV_LOAD(p) _mm256_loadu_ps(p)
#define TV_STORE(p, x) _mm256_storeu_ps(p, x)
#define TV_SET1(s) _mm256_set1_ps(s)
#define TV_ZERO() _mm256_setzero_ps()
#define TV_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define TV_MUL(a, b) _mm256_mul_ps(a, b)
#define TNAME(x) x##_f32
#define TEXPORT(x) hla_private_##x##_avx2
#include "tile_avx2.h"

#define TT double
#define TV __m256d
#define TL 4
#define TV_LOAD(p) _mm256_loadu_pd(p)
#define TV_STORE(p, x) _mm256_storeu_pd(p, x)
#define TV_SET1(s) _mm256_set1_pd(s)
#define TV_ZERO() _mm256_setzero_pd()
#define TV_FMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#define TV_MUL(a, b) _mm256_mul_pd(a, b)
#define TNAME(x) x##_f64
#define TEXPORT(x) hla_private_d##x##_avx2
#include "tile_avx2.h"

/* The narrow float32 tile: 8 rows x the left half of a panel (8 columns, one ymm register per row), for the diagonal
 * blocks of a product whose C is wanted on and below the diagonal only (Gemm.gemm with .lowerC): rows j..j+7 of the
 * panel starting at column j need columns j..j+7 at most, so a 6 x 16 tile there computes more than half of its
 * elements above the diagonal. Each element the same chain as on the 6 x 16 tile and the same full-panel store (α·x,
 * then β·C added fused; C not read when β = 0): the same bits. Eight accumulators keep both FMA pipes busy (the FMA
 * latency is 4 cycles), one row of P and eight broadcasts per step of k. Rows past `rows` repeat the last valid row
 * and are not stored. */
HLA_AVX2 void hla_private_tile_narrow_avx2(ptrdiff_t kb, const float *a, ptrdiff_t ars, ptrdiff_t acs, ptrdiff_t rows,
    const float *bp, ptrdiff_t bs, float *c, ptrdiff_t ldc, float alpha, float beta) {
    const float *r[8];
    for (int i = 0; i < 8; i++) r[i] = a + (i < rows ? i : rows - 1) * ars;
    const float *a0 = r[0], *a1 = r[1], *a2 = r[2], *a3 = r[3], *a4 = r[4], *a5 = r[5], *a6 = r[6], *a7 = r[7];
    __m256 x0 = _mm256_setzero_ps(), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0, x6 = x0, x7 = x0;
    ptrdiff_t o = 0;
    for (ptrdiff_t p = 0; p < kb; p++, o += acs, bp += bs) {
        const __m256 b = _mm256_loadu_ps(bp);
        x0 = _mm256_fmadd_ps(_mm256_set1_ps(a0[o]), b, x0);
        x1 = _mm256_fmadd_ps(_mm256_set1_ps(a1[o]), b, x1);
        x2 = _mm256_fmadd_ps(_mm256_set1_ps(a2[o]), b, x2);
        x3 = _mm256_fmadd_ps(_mm256_set1_ps(a3[o]), b, x3);
        x4 = _mm256_fmadd_ps(_mm256_set1_ps(a4[o]), b, x4);
        x5 = _mm256_fmadd_ps(_mm256_set1_ps(a5[o]), b, x5);
        x6 = _mm256_fmadd_ps(_mm256_set1_ps(a6[o]), b, x6);
        x7 = _mm256_fmadd_ps(_mm256_set1_ps(a7[o]), b, x7);
    }
    const __m256 xs[8] = {x0, x1, x2, x3, x4, x5, x6, x7};
    for (ptrdiff_t i = 0; i < rows && i < 8; i++) {
        __m256 y = xs[i];
        if (alpha != 1) y = _mm256_mul_ps(y, _mm256_set1_ps(alpha));
        if (beta != 0) y = _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(c + i * ldc), y);
        _mm256_storeu_ps(c + i * ldc, y);
    }
}

/* The portable tiles (a generic x86-64 build on a CPU without AVX2, or HLA_SIMD=portable): element by element, the
 * same chain (fmaf, fma: fused, as the vector FMAs) from +0 and the same stores, so the same bits; slow, a fallback. */
#define PORTABLE_TILE(TT, NAME, FMA, PANEL) \
void NAME(ptrdiff_t kb, const TT *a, ptrdiff_t ars, ptrdiff_t acs, const TT *bp, ptrdiff_t bs, ptrdiff_t kb2, \
    const TT *a2, ptrdiff_t ars2, ptrdiff_t acs2, const TT *bp2, ptrdiff_t bs2, ptrdiff_t rows, TT *c, ptrdiff_t ldc, \
    ptrdiff_t w, TT alpha, TT beta, TT *mid) { \
    for (ptrdiff_t i = 0; i < rows; i++) { \
        for (ptrdiff_t j = 0; j < w; j++) { \
            TT x = 0, *o = c + i * ldc + j; \
            for (ptrdiff_t p = 0; p < kb; p++) x = FMA(a[i * ars + p * acs], bp[p * bs + j], x); \
            if (mid) mid[i * ldc + j] = x; \
            for (ptrdiff_t p = 0; p < kb2; p++) x = FMA(a2[i * ars2 + p * acs2], bp2[p * bs2 + j], x); \
            if (w == PANEL) { TT y = alpha == 1 ? x : x * alpha; if (beta != 0) y = FMA(beta, *o, y); *o = y; } \
            else *o = beta == 0 ? alpha * x : alpha * x + beta * *o; \
        } \
    } \
}
PORTABLE_TILE(float, hla_private_tile_sum_portable, __builtin_fmaf, 16)
PORTABLE_TILE(double, hla_private_dtile_sum_portable, __builtin_fma, 8)
#undef PORTABLE_TILE

/* The step kernel's products: C (m × w) = A (m × k) · B (k × w; w a multiple of 16), all three row-major and dense,
 * in tiles of up to 6 rows, each of exactly its rows (z = S q and y = Pᵀ q of Gemm's and Vec.gemvTMany's arithmetic:
 * the same bits). */
static inline HLA_AVX2 __attribute__((always_inline)) void products(ptrdiff_t m, ptrdiff_t k, const float *A,
    const float *B, ptrdiff_t w, float *C) {
#define ROWS_TILE(h) tile_f32(h, k, A + i0 * k, k, 1, B + c0, w, 0, A, k, 1, B, w, h, C + i0 * w + c0, w, 16, 1, 0, 0)
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
