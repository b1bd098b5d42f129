/* The masked multi-head step kernel (Sources/CHLA/step_heads.h) on AVX2/FMA ymm registers, for CPUs without
 * AVX-512F (and under HLA_SIMD=avx2): all heads' products first, on 6 × 16 tiles, then each head's W sweep in blocks of
 * 64 columns (eight accumulators, as Vec.rank1Project sweeps them), the kv blocks advanced in the sweeps that form
 * head 0's products (and, on a multi-query step's first thread, compared with and copied to the thread's copy in the
 * same pass: hla_private_kv_from). Called where dk and dvp are multiples of 64 (`onStepKernel` in
 * Sources/HLA/Ops/Operator.swift). Against the portable steps on a Zen 3 host (`ab.py`, 21 rounds, two threads,
 * d = 64): 0.75-0.93 of the time at H = 64 with one or eight kv heads (README, Speed, stop 45). The library requires
 * AVX2 and FMA (`import hla` and the header say so); the target attribute only lets this file compile without
 * -mavx2.
 * Same arithmetic as the portable composition: every element one fused multiply-add chain in order (FP_CONTRACT OFF:
 * no other multiply is fused). */
#pragma STDC FP_CONTRACT OFF
#include <immintrin.h>
#include "hla_private.h"

#define HLA_AVX2 __attribute__((target("avx2,fma")))

/* C (rows × 16, row r at c + r·ldc) = A (rows × k, row r at a + r·lda) · B (k × 16, row p at bp + p·ldb), stored as
 * it is: each element one fused multiply-add chain over p in order from zero (Gemm's and Vec.gemvTMany's arithmetic
 * for z = S q and y = Pᵀ q: the same bits). HEIGHT (1-6) is a constant after inlining: 2·HEIGHT accumulators, the two
 * rows of B and a broadcast, within AVX2's 16 registers. */
static inline HLA_AVX2 __attribute__((always_inline)) void tile16(int HEIGHT, ptrdiff_t k, const float *a,
    ptrdiff_t lda, const float *bp, ptrdiff_t ldb, float *c, ptrdiff_t ldc) {
    __m256 x0 = _mm256_setzero_ps(), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0;
    __m256 y0 = x0, y1 = x0, y2 = x0, y3 = x0, y4 = x0, y5 = x0;
    for (ptrdiff_t p = 0; p < k; p++) {
        const __m256 b = _mm256_loadu_ps(bp + p * ldb), f = _mm256_loadu_ps(bp + p * ldb + 8);
#define R(i) if (HEIGHT > i) { const __m256 s = _mm256_set1_ps(a[i * lda + p]); \
        x##i = _mm256_fmadd_ps(s, b, x##i); y##i = _mm256_fmadd_ps(s, f, y##i); }
        R(0) R(1) R(2) R(3) R(4) R(5)
#undef R
    }
#define PUT(i) if (HEIGHT > i) { _mm256_storeu_ps(c + i * ldc, x##i); _mm256_storeu_ps(c + i * ldc + 8, y##i); }
    PUT(0) PUT(1) PUT(2) PUT(3) PUT(4) PUT(5)
#undef PUT
}

/* tile16 for `rows` (1-6) rows, each height its own straight-line loop. */
static inline HLA_AVX2 __attribute__((always_inline)) void tile16_rows(ptrdiff_t rows, ptrdiff_t k, const float *a,
    ptrdiff_t lda, const float *bp, ptrdiff_t ldb, float *c, ptrdiff_t ldc) {
    switch (rows) {
    case 1: tile16(1, k, a, lda, bp, ldb, c, ldc); break;
    case 2: tile16(2, k, a, lda, bp, ldb, c, ldc); break;
    case 3: tile16(3, k, a, lda, bp, ldb, c, ldc); break;
    case 4: tile16(4, k, a, lda, bp, ldb, c, ldc); break;
    case 5: tile16(5, k, a, lda, bp, ldb, c, ldc); break;
    default: tile16(6, k, a, lda, bp, ldb, c, ldc); break;
    }
}

/* C (m × w) = A (m × k) · B (k × w; w a multiple of 16), all three row-major and dense, in tiles of up to 6 rows. */
static inline HLA_AVX2 __attribute__((always_inline)) void products(ptrdiff_t m, ptrdiff_t k, const float *A,
    const float *B, ptrdiff_t w, float *C) {
    for (ptrdiff_t i0 = 0; i0 < m; i0 += 6) {
        const ptrdiff_t rows = m - i0 < 6 ? m - i0 : 6;
        for (ptrdiff_t c0 = 0; c0 < w; c0 += 16) tile16_rows(rows, k, A + i0 * k, k, B + c0, w, C + i0 * w + c0, w);
    }
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
#define HV_TILE(rows, k, a, bp, ld, c) tile16_rows(rows, k, a, k, bp, ld, c, ld)
#define HV_BLOCK 8
#define HV_FUSE 0
#define HV_GROUP 4
#define HV_KQ 0
#define HV_NAME(x) hla_private_##x##_avx2
#include "step_heads.h"
