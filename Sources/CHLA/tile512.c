/* The float32 register tile of the engine's dense products (Sources/HLA/Core/Gemm.swift) on AVX-512: 8 rows x one
 * 16-column panel, one zmm register per row; and, at the end, the masked multi-head steps of hla3, hla2 and ahla
 * (HLA3.stepHeads, HLA2.stepHeads, AHLA.stepHeads).
 * Swift has no per-function target attribute, so the library's Swift code stays AVX2/FMA (-target-cpu haswell) and
 * these functions are compiled for AVX-512F here; they are called only when the CPU and the OS support AVX-512 and
 * HLA_SIMD is not "avx2" (hla_private_avx512).
 *
 * Same arithmetic as Gemm.tile: every C element is one fused multiply-add chain over k in order (only the exact-zero
 * terms at a triangular product's diagonal, which change no nonzero result, differ with the tile height; the 8 rows are
 * 8 independent chains, enough to cover the FMA latency on both ports), and the store applies alpha and beta as the
 * AVX2 tile does (tile256.c), so both kernels give the same bits (the partial-panel store is unfused: hence
 * FP_CONTRACT OFF). */
#pragma STDC FP_CONTRACT OFF
#include <cpuid.h>
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#include "hla_private.h"

#define HLA_AVX512 __attribute__((target("avx512f")))

static int cpu_avx512(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE)) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & bit_AVX512F)) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    /* XMM, YMM, opmask, ZMM_Hi256 and Hi16_ZMM state enabled by the OS. */
    return (lo & 0xE6) == 0xE6;
}

/* AVX2, FMA and F16C (half.c; every CPU with AVX2 has it), with the OS saving ymm state. */
static int cpu_avx2(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE) || !(c & bit_FMA) || !(c & bit_F16C)) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & bit_AVX2)) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 0x6) == 0x6;
}

int hla_private_avx512, hla_private_avx2;

/* Decided once, when the library is loaded: a lazily initialized Swift global would first be touched by
 * whichever threads run the first product, possibly in a forked child, where two pool threads racing its
 * one-time initialization were seen to spin forever (Tests/c/test_oom.c). HLA_SIMD=portable keeps both off (the
 * portable tiles and steps of a generic x86-64 build on a CPU without AVX2: a test of that path). */
__attribute__((constructor)) static void choose_kernel(void) {
    const char *simd = getenv("HLA_SIMD");
    const int portable = simd && strcmp(simd, "portable") == 0;
    hla_private_avx2 = cpu_avx2() && !portable;
    hla_private_avx512 = hla_private_avx2 && cpu_avx512() && !(simd && strcmp(simd, "avx2") == 0);
}

static inline HLA_AVX512 __attribute__((always_inline)) void store(__m512 x, float *c, ptrdiff_t w, float alpha, float beta) {
    if (w == 16) {
        __m512 y = alpha == 1 ? x : _mm512_mul_ps(x, _mm512_set1_ps(alpha));
        if (beta != 0) y = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_loadu_ps(c), y);
        _mm512_storeu_ps(c, y);
        return;
    }
    float t[16];
    _mm512_storeu_ps(t, x);
    if (beta == 0) { for (ptrdiff_t j = 0; j < w; j++) c[j] = alpha * t[j]; }
    else { for (ptrdiff_t j = 0; j < w; j++) c[j] = alpha * t[j] + beta * c[j]; }
}

/* One segment of a tile's sum: kb steps of A (rows a + r*ars, step acs) times P (row p at bp + p*bs, one panel; with
 * WIDE, also the panel at +16), accumulated into x0..x7 (and y0..y7). Rows past `rows` repeat the last valid row. */
#define ROWS(a, ars) \
    const float *a0 = (a), *a1 = (a) + (rows > 1 ? 1 : rows - 1) * (ars), *a2 = (a) + (rows > 2 ? 2 : rows - 1) * (ars), \
                *a3 = (a) + (rows > 3 ? 3 : rows - 1) * (ars), *a4 = (a) + (rows > 4 ? 4 : rows - 1) * (ars), \
                *a5 = (a) + (rows > 5 ? 5 : rows - 1) * (ars), *a6 = (a) + (rows > 6 ? 6 : rows - 1) * (ars), \
                *a7 = (a) + (rows > 7 ? 7 : rows - 1) * (ars);
#define STEP1(r) x##r = _mm512_fmadd_ps(_mm512_set1_ps(a##r[o]), b, x##r);
#define STEP2(r) { __m512 s = _mm512_set1_ps(a##r[o]); x##r = _mm512_fmadd_ps(s, b, x##r); y##r = _mm512_fmadd_ps(s, e, y##r); }
#define SEGMENT(STEP, WIDE, kb, a, ars, acs, bp, bs) { \
    ROWS(a, ars) \
    ptrdiff_t o = 0; const float *q = (bp); \
    for (ptrdiff_t p = 0; p < (kb); p++, o += (acs), q += (bs)) { \
        __m512 b = _mm512_loadu_ps(q); __m512 e = WIDE ? _mm512_loadu_ps(q + 16) : b; (void)e; \
        STEP(0) STEP(1) \
        if (height > 2) { STEP(2) STEP(3) } \
        if (height > 4) { STEP(4) STEP(5) STEP(6) STEP(7) } \
    } }

/* `height` (2, 4 or 8, a constant after inlining) accumulator rows: the sum over segment 1, then over segment 2
 * (kb2 = 0: none), one chain per element, stored once. */
static inline HLA_AVX512 __attribute__((always_inline)) void tile(int height, ptrdiff_t kb, const float *a, ptrdiff_t ars,
    ptrdiff_t acs, const float *bp, ptrdiff_t bs, ptrdiff_t kb2, const float *a2_, ptrdiff_t ars2, ptrdiff_t acs2,
    const float *bp2, ptrdiff_t bs2, ptrdiff_t rows, float *c, ptrdiff_t ldc, ptrdiff_t w, float alpha, float beta) {
    __m512 x0 = _mm512_setzero_ps(), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0, x6 = x0, x7 = x0;
    SEGMENT(STEP1, 0, kb, a, ars, acs, bp, bs)
    SEGMENT(STEP1, 0, kb2, a2_, ars2, acs2, bp2, bs2)
    store(x0, c, w, alpha, beta);
    if (rows > 1) store(x1, c + ldc, w, alpha, beta);
    if (height > 2) {
        if (rows > 2) store(x2, c + 2 * ldc, w, alpha, beta);
        if (rows > 3) store(x3, c + 3 * ldc, w, alpha, beta);
    }
    if (height > 4) {
        if (rows > 4) store(x4, c + 4 * ldc, w, alpha, beta);
        if (rows > 5) store(x5, c + 5 * ldc, w, alpha, beta);
        if (rows > 6) store(x6, c + 6 * ldc, w, alpha, beta);
        if (rows > 7) store(x7, c + 7 * ldc, w, alpha, beta);
    }
}

/* Two adjacent panels at once, 8 rows x 32 columns (16 accumulators): each broadcast of A feeds two FMAs and a call
 * covers twice the work, so the fixed cost of a tile (call, pointers, stores) weighs half as much. Row p of the
 * right panel is at bp + p*bs + 16; both panels are full (w = 32). Segments as in `tile`. */
static inline HLA_AVX512 __attribute__((always_inline)) void tile2(int height, ptrdiff_t kb, const float *a, ptrdiff_t ars,
    ptrdiff_t acs, const float *bp, ptrdiff_t bs, ptrdiff_t kb2, const float *a2_, ptrdiff_t ars2, ptrdiff_t acs2,
    const float *bp2, ptrdiff_t bs2, ptrdiff_t rows, float *c, ptrdiff_t ldc, float alpha, float beta) {
    __m512 x0 = _mm512_setzero_ps(), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0, x6 = x0, x7 = x0;
    __m512 y0 = x0, y1 = x0, y2 = x0, y3 = x0, y4 = x0, y5 = x0, y6 = x0, y7 = x0;
    SEGMENT(STEP2, 1, kb, a, ars, acs, bp, bs)
    SEGMENT(STEP2, 1, kb2, a2_, ars2, acs2, bp2, bs2)
#define PUT(r) if (rows > r) { store(x##r, c + r * ldc, 16, alpha, beta); store(y##r, c + r * ldc + 16, 16, alpha, beta); }
    PUT(0) PUT(1)
    if (height > 2) { PUT(2) PUT(3) }
    if (height > 4) { PUT(4) PUT(5) PUT(6) PUT(7) }
#undef PUT
}

#define BY_HEIGHT(f, ...) \
    if (rows > 4) f(8, __VA_ARGS__); else if (rows > 2) f(4, __VA_ARGS__); else f(2, __VA_ARGS__);

HLA_AVX512 void hla_private_tile2_avx512(ptrdiff_t kb, const float *a, ptrdiff_t ars, ptrdiff_t acs, ptrdiff_t rows,
    const float *bp, ptrdiff_t bs, float *c, ptrdiff_t ldc, float alpha, float beta) {
    BY_HEIGHT(tile2, kb, a, ars, acs, bp, bs, 0, a, ars, acs, bp, bs, rows, c, ldc, alpha, beta)
}

HLA_AVX512 void hla_private_tile_avx512(ptrdiff_t kb, const float *a, ptrdiff_t ars, ptrdiff_t acs, ptrdiff_t rows,
    const float *bp, ptrdiff_t bs, float *c, ptrdiff_t ldc, ptrdiff_t w, float alpha, float beta) {
    BY_HEIGHT(tile, kb, a, ars, acs, bp, bs, 0, a, ars, acs, bp, bs, rows, c, ldc, w, alpha, beta)
}

HLA_AVX512 void hla_private_tile2_sum_avx512(ptrdiff_t kb, const float *a, ptrdiff_t ars, ptrdiff_t acs,
    const float *bp, ptrdiff_t bs, ptrdiff_t kb2, const float *a2, ptrdiff_t ars2, ptrdiff_t acs2, const float *bp2,
    ptrdiff_t bs2, ptrdiff_t rows, float *c, ptrdiff_t ldc, float alpha, float beta) {
    BY_HEIGHT(tile2, kb, a, ars, acs, bp, bs, kb2, a2, ars2, acs2, bp2, bs2, rows, c, ldc, alpha, beta)
}

HLA_AVX512 void hla_private_tile_sum_avx512(ptrdiff_t kb, const float *a, ptrdiff_t ars, ptrdiff_t acs,
    const float *bp, ptrdiff_t bs, ptrdiff_t kb2, const float *a2, ptrdiff_t ars2, ptrdiff_t acs2, const float *bp2,
    ptrdiff_t bs2, ptrdiff_t rows, float *c, ptrdiff_t ldc, ptrdiff_t w, float alpha, float beta) {
    BY_HEIGHT(tile, kb, a, ars, acs, bp, bs, kb2, a2, ars2, acs2, bp2, bs2, rows, c, ldc, w, alpha, beta)
}

/* C (m × w) = A (m × k) · B (k × w; w a multiple of 32), all three row-major and dense, on the 8 × 32 tiles above:
 * each element one fused multiply-add chain over p in order from zero, stored as it is (alpha 1, beta 0): the
 * arithmetic of Vec.gemvTMany's z = S q and y = Pᵀ q, so the same bits. */
static inline HLA_AVX512 __attribute__((always_inline)) void products(ptrdiff_t m, ptrdiff_t k, const float *A,
    const float *B, ptrdiff_t w, float *C) {
    for (ptrdiff_t i0 = 0; i0 < m; i0 += 8) {
        const ptrdiff_t rows = m - i0 < 8 ? m - i0 : 8;
        for (ptrdiff_t c0 = 0; c0 < w; c0 += 32)
            BY_HEIGHT(tile2, k, A + i0 * k, k, 1, B + c0, w, 0, A, k, 1, B, w, rows, C + i0 * w + c0, w, 1.0f, 0.0f)
    }
}

/* The masked multi-head step kernel on zmm registers (Sources/CHLA/step_heads.h): W blocks of 64 columns, product
 * tiles of 32 (the 8 × 32 tiles above) fused into the sweeps, the first group's products formed in the kv sweeps.
 * HV_TILE's unused second segment names the kernel's S, as the call did before the kernel moved into step_heads.h:
 * the compiled instructions are those of before. */
#define HV __m512
#define HV_LANES 16
#define HV_MASK __mmask16
#define HV_INLINE static inline HLA_AVX512 __attribute__((always_inline))
#define HV_EXPORT HLA_AVX512
#define HV_LOAD(p) _mm512_loadu_ps(p)
#define HV_STORE(p, x) _mm512_storeu_ps(p, x)
#define HV_SET1(s) _mm512_set1_ps(s)
#define HV_ZERO() _mm512_setzero_ps()
#define HV_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define HV_MUL(a, b) _mm512_mul_ps(a, b)
#define HV_NEQ(a, b) _mm512_cmpneq_epi32_mask(_mm512_castps_si512(a), _mm512_castps_si512(b))
#define HV_PRODUCTS(m, k, A, B, w, C) products(m, k, A, B, w, C)
#define HV_TILE(rows, k, a, bp, ld, c) BY_HEIGHT(tile2, k, a, k, 1, bp, ld, 0, a, k, 1, S, ld, rows, c, ld, 1.0f, 0.0f)
#define HV_GROUP 4
#define HV_FUSE 1
#define HV_BLOCK 4
#define HV_KQ 1
#define HV_NAME(x) hla_private_##x##_avx512
#include "step_heads.h"
