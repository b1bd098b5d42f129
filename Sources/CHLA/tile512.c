/* The float32 register tile of the engine's dense products (Sources/HLA/Core/Gemm.swift) on AVX-512: 8 rows x one
 * 16-column panel, one zmm register per row; and, at the end, the masked multi-head steps of hla3, hla2 and ahla
 * (HLA3.stepHeads, HLA2.stepHeads, AHLA.stepHeads).
 * Swift has no per-function target attribute, so the library's Swift code stays AVX2/FMA (-target-cpu haswell) and
 * these functions are compiled for AVX-512F here; they are called only when the CPU and the OS support AVX-512 and
 * HLA_SIMD is not "avx2" (hla_private_avx512).
 *
 * Same arithmetic as Gemm.tile: every C element is one fused multiply-add chain over k in order (only the exact-zero
 * terms at a triangular product's diagonal, which change no nonzero result, differ with the tile height; the 8 rows are
 * 8 independent chains, enough to cover the FMA latency on both ports), and the store applies alpha and beta as
 * Gemm.store does, so both kernels give the same bits (the partial-panel store is unfused, as in Swift: hence
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

int hla_private_avx512;

/* Decided once, when the library is loaded: a lazily initialized Swift global would first be touched by
 * whichever threads run the first product, possibly in a forked child, where two pool threads racing its
 * one-time initialization were seen to spin forever (Tests/c/test_oom.c). */
__attribute__((constructor)) static void choose_kernel(void) {
    const char *simd = getenv("HLA_SIMD");
    hla_private_avx512 = cpu_avx512() && !(simd && strcmp(simd, "avx2") == 0);
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

/* One 64-column block of a masked multi-head step for query head j (columns c0..c0+63 of W_j and o_j; hla3's names:
 * hla2's U and ahla's E are its W): for r in 0..<dk,
 *   W_j[r] ← g3·W_j[r] + z[r]·y   (g3 = 1: no multiply),   o_j += q_j[r]·W_j[r]           (W: `w`, o: `o`)
 * each column of o one fused multiply-add chain over r in order, from zero, as Vec.rank1Project forms W and o: the
 * same bits. SCALED is a constant after inlining.
 * With NR > 0 (1-4, a constant after inlining) one 4 × 32 tile of the next heads' products is fused into the sweep:
 * while the block's dk rows of W are swept (bound by their loads and stores, the FMA ports about 60% busy), the tile
 * C (NR × 32, row r at c + r·ldc) = A (NR rows of dk, row r at a + r·dk) · B (dk × 32, row p at bp + p·bs) takes one
 * step p per row of the sweep, so its fused multiply-adds fill the sweep's idle FMA slots. Each tile element is one
 * chain over p in order from zero: the same bits as `products`. Only NR rows are multiplied: a last group of fewer
 * than four heads costs no FMAs for the missing ones (with repeated rows instead, hla3 with 5 heads at d = 64 took
 * 1.25x the time of the kernel before the fusion). NR = 0: the sweep alone (a, bp, c unused).
 * FROM (a kv sweep of a multi-query step's first thread, hla_private_kv_from): 1, each row read from `from` and the
 * advanced row stored there too; 2, also compared bit for bit with w's row first (differences ORed into *differs).
 * KQ (a kv sweep): o_i += qk_i[r]·(advanced row r) for three more heads as for qj, stored at ok + i·ldok (i = 0..2),
 * each element one fused multiply-add chain over r in order from zero: the same bits as `products`. */
static inline HLA_AVX512 __attribute__((always_inline)) void step_block(int SCALED, int NR, int FROM, int KQ,
    ptrdiff_t dk, ptrdiff_t dvp, float *w, const float *z, const float *y, const float *qj, float *o, float g3,
    const float *a, const float *bp, ptrdiff_t bs, float *c, ptrdiff_t ldc, float *from, unsigned *differs,
    const float *qk, float *ok, ptrdiff_t ldok) {
    __mmask16 diff = 0;
    __m512 o0 = _mm512_setzero_ps(), o1 = o0, o2 = o0, o3 = o0;
    __m512 p10 = o0, p11 = o0, p12 = o0, p13 = o0, p20 = o0, p21 = o0, p22 = o0, p23 = o0, p30 = o0, p31 = o0,
           p32 = o0, p33 = o0;
    (void)p10; (void)p11; (void)p12; (void)p13; (void)p20; (void)p21; (void)p22; (void)p23; (void)p30; (void)p31;
    (void)p32; (void)p33;
    __m512 x0 = o0, x1 = o0, x2 = o0, x3 = o0, e0 = o0, e1 = o0, e2 = o0, e3 = o0;
    const __m512 g = _mm512_set1_ps(g3);
    const __m512 v0 = _mm512_loadu_ps(y), v1 = _mm512_loadu_ps(y + 16), v2 = _mm512_loadu_ps(y + 32),
                 v3 = _mm512_loadu_ps(y + 48);
    const float *a0 = a, *a1 = a + (NR > 1 ? 1 : 0) * dk, *a2 = a + (NR > 2 ? 2 : 0) * dk, *a3 = a + (NR > 3 ? 3 : 0) * dk;
    (void)a0; (void)a1; (void)a2; (void)a3; (void)x0; (void)x1; (void)x2; (void)x3; (void)e0; (void)e1; (void)e2; (void)e3;
    for (ptrdiff_t r = 0; r < dk; r++) {
        float *row = w + r * dvp, *src = FROM ? from + r * dvp : row;
        const __m512 zr = _mm512_set1_ps(z[r]), xr = _mm512_set1_ps(qj[r]);
        const __m512 s1 = KQ ? _mm512_set1_ps(qk[r]) : zr, s2 = KQ ? _mm512_set1_ps(qk[dk + r]) : zr,
                     s3 = KQ ? _mm512_set1_ps(qk[2 * dk + r]) : zr;
        (void)s1; (void)s2; (void)s3;
        const __m512 b = NR > 0 ? _mm512_loadu_ps(bp + r * bs) : zr, f = NR > 0 ? _mm512_loadu_ps(bp + r * bs + 16) : zr;
        (void)b; (void)f;
#define W1(k, v, acc) { __m512 t = _mm512_loadu_ps(src + 16 * k); \
        if (FROM == 2) diff |= _mm512_cmpneq_epi32_mask(_mm512_castps_si512(t), _mm512_castps_si512(_mm512_loadu_ps(row + 16 * k))); \
        if (SCALED) t = _mm512_mul_ps(t, g); \
        t = _mm512_fmadd_ps(zr, v, t); _mm512_storeu_ps(row + 16 * k, t); if (FROM) _mm512_storeu_ps(src + 16 * k, t); \
        acc = _mm512_fmadd_ps(xr, t, acc); \
        if (KQ) { p1##k = _mm512_fmadd_ps(s1, t, p1##k); p2##k = _mm512_fmadd_ps(s2, t, p2##k); \
                  p3##k = _mm512_fmadd_ps(s3, t, p3##k); } }
#define T1(i) if (NR > i) { __m512 s = _mm512_set1_ps(a##i[r]); x##i = _mm512_fmadd_ps(s, b, x##i); \
        e##i = _mm512_fmadd_ps(s, f, e##i); }
        W1(0, v0, o0) T1(0) W1(1, v1, o1) T1(1) W1(2, v2, o2) T1(2) W1(3, v3, o3) T1(3)
#undef W1
#undef T1
    }
    _mm512_storeu_ps(o, o0); _mm512_storeu_ps(o + 16, o1); _mm512_storeu_ps(o + 32, o2); _mm512_storeu_ps(o + 48, o3);
    if (NR > 0) { _mm512_storeu_ps(c, x0); _mm512_storeu_ps(c + 16, e0); }
    if (NR > 1) { _mm512_storeu_ps(c + ldc, x1); _mm512_storeu_ps(c + ldc + 16, e1); }
    if (NR > 2) { _mm512_storeu_ps(c + 2 * ldc, x2); _mm512_storeu_ps(c + 2 * ldc + 16, e2); }
    if (NR > 3) { _mm512_storeu_ps(c + 3 * ldc, x3); _mm512_storeu_ps(c + 3 * ldc + 16, e3); }
    if (FROM == 2) *differs |= diff;
    if (KQ) {
        _mm512_storeu_ps(ok, p10); _mm512_storeu_ps(ok + 16, p11); _mm512_storeu_ps(ok + 32, p12);
        _mm512_storeu_ps(ok + 48, p13); _mm512_storeu_ps(ok + ldok, p20); _mm512_storeu_ps(ok + ldok + 16, p21);
        _mm512_storeu_ps(ok + ldok + 32, p22); _mm512_storeu_ps(ok + ldok + 48, p23);
        _mm512_storeu_ps(ok + 2 * ldok, p30); _mm512_storeu_ps(ok + 2 * ldok + 16, p31);
        _mm512_storeu_ps(ok + 2 * ldok + 32, p32); _mm512_storeu_ps(ok + 2 * ldok + 48, p33);
    }
}

/* step_block with the decay test hoisted out of the row loop (g3 = 1 needs no multiply: the same bits). */
static inline HLA_AVX512 __attribute__((always_inline)) void step_block_g(ptrdiff_t dk, ptrdiff_t dvp, float *w,
    const float *z, const float *y, const float *qj, float *o, float g3) {
    if (g3 == 1) step_block(0, 0, 0, 0, dk, dvp, w, z, y, qj, o, g3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    else step_block(1, 0, 0, 0, dk, dvp, w, z, y, qj, o, g3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
}

/* A kv sweep: in place, or with `from` (the state's rows at the same offsets) read there, stored there and in w,
 * each row compared with w's before it when `compare` (any difference ORed into *differs). With qk, the products of
 * three more heads (q rows at qk + i·dk, i = 0..2; outputs at ok + i·ldok) are formed from the advanced rows as
 * head 0's is (o): each element one fused multiply-add chain over the rows in order, as `products` forms it. */
static inline HLA_AVX512 __attribute__((always_inline)) void kv_block(ptrdiff_t dk, ptrdiff_t dvp, float *w,
    const float *z, const float *y, const float *qj, float *o, float g3, float *from, int compare, unsigned *differs,
    const float *qk, float *ok, ptrdiff_t ldok) {
#define KV(KQ, SCALED) \
    if (!from) step_block(SCALED, 0, 0, KQ, dk, dvp, w, z, y, qj, o, g3, 0, 0, 0, 0, 0, 0, 0, qk, ok, ldok); \
    else if (compare) step_block(SCALED, 0, 2, KQ, dk, dvp, w, z, y, qj, o, g3, 0, 0, 0, 0, 0, from, differs, qk, ok, ldok); \
    else step_block(SCALED, 0, 1, KQ, dk, dvp, w, z, y, qj, o, g3, 0, 0, 0, 0, 0, from, differs, qk, ok, ldok);
    if (qk) { if (g3 == 1) { KV(1, 0) } else { KV(1, 1) } }
    else { if (g3 == 1) { KV(0, 0) } else { KV(0, 1) } }
#undef KV
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

/* step_block with a tile of `rows` (1-4) rows of A, for either decay, each variant's loop straight-line. */
#define STEP_TILE(NR, SCALED, ...) step_block(SCALED, NR, 0, 0, __VA_ARGS__, 0, 0, 0, 0, 0)
#define BY_ROWS(f, rows, ...) \
    switch (rows) { case 1: f(1, __VA_ARGS__); break; case 2: f(2, __VA_ARGS__); break; \
                    case 3: f(3, __VA_ARGS__); break; default: f(4, __VA_ARGS__); break; }
static inline HLA_AVX512 __attribute__((always_inline)) void step_block_tile_rows(ptrdiff_t rows, ptrdiff_t dk,
    ptrdiff_t dvp, float *w, const float *z, const float *y, const float *qj, float *o, float g3, const float *a,
    const float *bp, ptrdiff_t bs, float *c, ptrdiff_t ldc) {
    if (g3 == 1) { BY_ROWS(STEP_TILE, rows, 0, dk, dvp, w, z, y, qj, o, g3, a, bp, bs, c, ldc) }
    else { BY_ROWS(STEP_TILE, rows, 1, dk, dvp, w, z, y, qj, o, g3, a, bp, bs, c, ldc) }
}

/* A following thread's wait for the first thread's verdict (hla_private_kv_from): whether its copy held the state. */
static int follow_verdict(hla_private_kv_from *f) {
    hla_private_await(f->published, f->waited);
    return *f->verdict == f->version;
}

/* The masked multi-head step W_j ← g·W_j + z_j y_jᵀ, o_j = W_jᵀ q_j of one kv head's n query heads: hla3 (z = S q_j
 * and y = Pᵀ q_j per head), hla2 (y = zs, the token's value, for every head; no P) and ahla (z = zs, the token's key,
 * for every head; no S). DZ: z per head; DY: y per head (constants after inlining). zy holds Z (n·dk elements; hla3
 * and hla2), then Y (n·dvp; hla3 and ahla).
 * The heads' z and y are products Z = Q S and Y = Q P on register tiles, each block of S and P loaded once per tile of
 * heads rather than once per head in every head's W sweep (on the 2-core AMD EPYC VM, C microbenchmarks hot in L2 at
 * 3.6 GHz: hla2 with 8-64 query heads on one kv head took 18-22 cycles per row of W when each head's sweep also read
 * S, against 12.5 for the W sweep alone). The heads go in groups of four: the first group's products are formed
 * alone, then each group's W sweeps run with the next group's product tiles fused into them (`step_block`'s NR: a
 * sweep is bound by its loads and stores and leaves FMA slots free), and what does not pair up runs alone. hla3 with
 * 32 heads at d = 64 (one thread's half of H = 64, Hkv = 1), hot in L2: the W sweeps alone 12.9 cycles per row, the
 * products alone about 8 (their FMA bound), apart 20.8, fused 19.7 (0.95 of the time; 64 heads, from L3: 0.88-0.91);
 * hla2 and ahla, half of whose sweeps get a tile, 0.97-1.05. In the library's steps (ab.py, 15 rounds): hla3 at
 * H = 64, Hkv = 1 and 8 0.965 and 0.959, hla2 and ahla at Hkv = 1 0.974 and 0.965, H = Hkv (one head per call) alike.
 * When the kv blocks advance in the call (ku) and it has four heads or more, the first group's products are formed in
 * the kv sweeps themselves, from each row as it is advanced (`step_block`'s KQ): one pass over S and P fewer per call.
 * Hot in L2 (clang -O2): hla3 with 8 heads 0.958-0.983 of the time, 5 heads 0.868, 32 heads 0.986; in the library's
 * steps (ab.py, 15 rounds) at H = 64, Hkv = 8 (8 heads per call): hla3 0.945, ahla 0.942, hla2 0.985; hla3 at H = 40,
 * Hkv = 8 0.947; at Hkv = 1 alike (0.997-1.016). */
#define GROUP 4
static inline HLA_AVX512 __attribute__((always_inline)) void heads(int DZ, int DY, ptrdiff_t n, ptrdiff_t dk,
    ptrdiff_t dvp, float *S, float *P, const float *zs, const float *q, float *W, ptrdiff_t wstride, float g,
    float *zy, float *out, const float *ku, const float *vu, float gkv, hla_private_kv_from *from) {
    if (n <= 0) return;
    float *Z = zy, *Y = DZ ? zy + n * dk : zy;
    ptrdiff_t first = 0;
    if (ku) {
        /* The kv blocks advanced with the token (ku = k, vu = v; HLA*.stepKV) in the sweeps that form head 0's z and
         * y from them: S <- gkv S + k k^T with z = S q_0, P <- gkv P + k v^T with y = P^T q_0, each as the W sweep
         * below forms W_j and o_j (Vec.rank1Project's arithmetic: the same bits as the update, then the product). */
        /* (With `from`, n >= 1: Paths.stepByHead's ranges are never empty, so a first thread always publishes.) */
        const int lead = from && !from->follow;
        float *fS = lead ? from->kv : 0, *fP = lead ? from->kv + (DZ ? dk * dk : 0) : 0;
        const int compare = lead && from->version != 0;
        unsigned differs = 0;
        /* With four heads or more, heads 1-3's products are formed in the same sweeps, from the advanced rows. */
        const float *qk = n >= GROUP ? q + dk : 0;
        for (ptrdiff_t c0 = 0; DZ && c0 < dk; c0 += 64)
            kv_block(dk, dk, S + c0, ku, ku + c0, q, Z + c0, gkv, fS ? fS + c0 : 0, compare, &differs,
                     qk, Z + dk + c0, dk);
        for (ptrdiff_t c0 = 0; DY && c0 < dvp; c0 += 64)
            kv_block(dk, dvp, P + c0, ku, vu + c0, q, Y + c0, gkv, fP ? fP + c0 : 0, compare, &differs,
                     qk, Y + dvp + c0, dvp);
        if (lead) {
            *from->verdict = compare && !differs ? from->version : 0;
            hla_private_publish(from->published);
        }
        first = n >= GROUP ? GROUP : 1;
    }
    const ptrdiff_t n0 = n < GROUP ? n : GROUP;
    if (DZ) products(n0 - first, dk, q + first * dk, S, dk, Z + first * dk);
    if (DY) products(n0 - first, dk, q + first * dk, P, dvp, Y + first * dvp);
    if (from && from->follow && !follow_verdict(from)) { from->stopped = 1; return; }
    const ptrdiff_t ztiles = DZ ? dk / 32 : 0, tiles = ztiles + (DY ? dvp / 32 : 0);
    for (ptrdiff_t h0 = 0; h0 < n; h0 += GROUP) {
        const ptrdiff_t nh = n - h0 < GROUP ? n - h0 : GROUP;          /* this group's heads */
        const ptrdiff_t n1 = h0 + GROUP, rows = n - n1 < GROUP ? n - n1 : GROUP;   /* the next group's (may be <= 0) */
        ptrdiff_t t = rows > 0 ? 0 : tiles;                              /* next product tile */
        const float *a = q + n1 * dk;
        for (ptrdiff_t m = 0; m < nh; m++) {
            const ptrdiff_t j = h0 + m;
            const float *qj = q + j * dk, *z = DZ ? Z + j * dk : zs, *y = DY ? Y + j * dvp : zs;
            float *Wj = W + j * wstride, *oj = out + j * dvp;
            for (ptrdiff_t c0 = 0; c0 < dvp; c0 += 64) {
                if (t < tiles) {
                    const int isz = t < ztiles;
                    const ptrdiff_t tc = isz ? 32 * t : 32 * (t - ztiles), ld = isz ? dk : dvp;
                    const float *bp = (isz ? S : P) + tc;
                    float *c = (isz ? Z + n1 * dk : Y + n1 * dvp) + tc;
                    step_block_tile_rows(rows, dk, dvp, Wj + c0, z, y + c0, qj, oj + c0, g, a, bp, ld, c, ld);
                    t++;
                } else {
                    step_block_g(dk, dvp, Wj + c0, z, y + c0, qj, oj + c0, g);
                }
            }
        }
        for (; t < tiles; t++) {                                         /* tiles left unpaired */
            const int isz = t < ztiles;
            const ptrdiff_t tc = isz ? 32 * t : 32 * (t - ztiles), ld = isz ? dk : dvp;
            BY_HEIGHT(tile2, dk, a, dk, 1, (isz ? S : P) + tc, ld, 0, a, dk, 1, S, ld, rows,
                      (isz ? Z + n1 * dk : Y + n1 * dvp) + tc, ld, 1.0f, 0.0f)
        }
    }
}
#undef GROUP

HLA_AVX512 void hla_private_hla3_heads_avx512(ptrdiff_t n, ptrdiff_t dk, ptrdiff_t dvp, float *S, float *P,
    const float *q, float *W, ptrdiff_t wstride, float g3, float *zy, float *out, const float *k, const float *v,
    float g, hla_private_kv_from *from) {
    heads(1, 1, n, dk, dvp, S, P, 0, q, W, wstride, g3, zy, out, k, v, g, from);
}

HLA_AVX512 void hla_private_hla2_heads_avx512(ptrdiff_t n, ptrdiff_t dk, ptrdiff_t dvp, float *S, const float *v,
    const float *q, float *U, ptrdiff_t ustride, float g2, float *z, float *out, const float *k, float g,
    hla_private_kv_from *from) {
    heads(1, 0, n, dk, dvp, S, 0, v, q, U, ustride, g2, z, out, k, 0, g, from);
}

HLA_AVX512 void hla_private_ahla_heads_avx512(ptrdiff_t n, ptrdiff_t dk, ptrdiff_t dvp, float *P, const float *k,
    const float *q, float *E, ptrdiff_t estride, float g, float *y, float *out, const float *vu, float gkv,
    hla_private_kv_from *from) {
    heads(0, 1, n, dk, dvp, 0, P, k, q, E, estride, g, y, out, vu ? k : 0, vu, gkv, from);
}
