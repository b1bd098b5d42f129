/* Private helpers of libhla.so written in C (not part of the public header). */
#ifndef HLA_PRIVATE_H
#define HLA_PRIVATE_H
#include <time.h>
#include "hla_types.h"

__attribute__((visibility("hidden"))) void hla_private_set_error(const char *message);
__attribute__((visibility("hidden"))) const char *hla_private_get_error(void);
/* The fork gate (fork_gate.c): held shared by the entry points while they run. */
__attribute__((visibility("hidden"))) void hla_private_fork_enter(void);
__attribute__((visibility("hidden"))) void hla_private_fork_leave(void);
/* Forks this process has gone through as a child (0 in the original process; the child handler adds 1). */
__attribute__((visibility("hidden"))) unsigned long hla_private_fork_generation(void);

/* The calling thread's prefetch plan (prefetch.c): streams of rows (first row, byte stride, rows, bytes per
 * row) added after a reset; `hla_private_plan_get` gives the cursor (row = NULL: nothing left), which the
 * caller advances line by line (`hla_private_plan_step`). */
typedef struct {
    const char *row;
    ptrdiff_t line, lines, stride, rows_left;
} hla_private_plan;
__attribute__((visibility("hidden"))) hla_private_plan *hla_private_plan_get(void);
__attribute__((visibility("hidden"))) void hla_private_plan_reset(void);
__attribute__((visibility("hidden"))) void hla_private_plan_rows(const void *first, ptrdiff_t stride, ptrdiff_t rows, ptrdiff_t bytes);
__attribute__((visibility("hidden"))) void hla_private_plan_next(hla_private_plan *cursor);
/* Prefetch the cursor's next line and advance it (no-op when the plan is used up). */
static inline void hla_private_plan_step(hla_private_plan *c) {
    if (!c->row) return;
    __builtin_prefetch(c->row + 64 * c->line, 0, 2);
    if (++c->line == c->lines) {
        c->line = 0; c->row += c->stride;
        if (--c->rows_left == 0) hla_private_plan_next(c);
    }
}
/* The calling thread's packing panel (panel.c): 128 x 64 bytes, 64-byte aligned, contents unspecified. */
__attribute__((visibility("hidden"))) void *hla_private_panel(void);
/* The calling thread's count of register-tile multiply-adds (panel.c; debug builds count, Gemm.swift): add, and read
 * then reset. */
__attribute__((visibility("hidden"))) void hla_private_tile_macs_add(long long macs);
__attribute__((visibility("hidden"))) long long hla_private_tile_macs_take(void);
/* Prefetch the cache lines of `bytes` bytes from `p` into L2 (a hint): the rows of a token the serial sweep
 * packs a few tokens ahead. Into L2 rather than L1: the step's own state traffic keeps L1's miss buffers busy,
 * and the prefetches queued behind it measured about 7% slower. */
static inline void hla_private_prefetch(const void *p, ptrdiff_t bytes) {
    const char *a = (const char *)((uintptr_t)p & ~(uintptr_t)63), *e = (const char *)p + bytes;
    for (; a < e; a += 64) __builtin_prefetch(a, 0, 1);
}
/* A one-shot hand-off between the threads of one step (Paths.stepByHead): `claim` takes a task flag (1 for the
 * one caller that set it), `publish` marks the task's results written (release), `published` reads that mark
 * (acquire), and `pause` is the spin-wait hint. */
static inline int hla_private_claim(int *flag) { return __atomic_exchange_n(flag, 1, __ATOMIC_ACQ_REL) == 0; }
static inline void hla_private_publish(int *flag) { __atomic_store_n(flag, 1, __ATOMIC_RELEASE); }
static inline int hla_private_published(const int *flag) { return __atomic_load_n(flag, __ATOMIC_ACQUIRE); }
static inline void hla_private_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}
/* Wait until `flag` is published, adding the CLOCK_MONOTONIC ns waited (if any) to *waited. */
static inline void hla_private_await(const int *flag, unsigned long long *waited) {
    struct timespec a, b;
    if (hla_private_published(flag)) return;
    clock_gettime(CLOCK_MONOTONIC, &a);
    while (!hla_private_published(flag)) hla_private_pause();
    clock_gettime(CLOCK_MONOTONIC, &b);
    *waited += (unsigned long long)((b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
}
/* The band sweeps' work sharing (Sources/HLA/Engine/BandShare.swift): a spin lock per thread's slot, and the
 * acquire / release word a thread publishes its progress in. */
static inline void hla_private_lock(int *l) {
    while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(l, __ATOMIC_RELAXED)) hla_private_pause();
    }
}
static inline void hla_private_unlock(int *l) { __atomic_store_n(l, 0, __ATOMIC_RELEASE); }
static inline long hla_private_load_acquire(const long *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void hla_private_store_release(long *p, long v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline long hla_private_fetch_add(long *p, long v) { return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL); }
/* dst[i][j] = src[j][i] for an 8 x 8 float block: row j of src at src + j * src_stride, row i of dst at
 * dst + i * dst_stride (elements; any alignment). Shuffles only: every value is copied exactly. */
typedef float hla_private_v8f __attribute__((vector_size(32)));
static inline void hla_private_transpose8x8(const float *src, ptrdiff_t src_stride, float *dst, ptrdiff_t dst_stride) {
    hla_private_v8f r0, r1, r2, r3, r4, r5, r6, r7;
    __builtin_memcpy(&r0, src + 0 * src_stride, 32); __builtin_memcpy(&r1, src + 1 * src_stride, 32);
    __builtin_memcpy(&r2, src + 2 * src_stride, 32); __builtin_memcpy(&r3, src + 3 * src_stride, 32);
    __builtin_memcpy(&r4, src + 4 * src_stride, 32); __builtin_memcpy(&r5, src + 5 * src_stride, 32);
    __builtin_memcpy(&r6, src + 6 * src_stride, 32); __builtin_memcpy(&r7, src + 7 * src_stride, 32);
    hla_private_v8f t0 = __builtin_shufflevector(r0, r1, 0, 8, 1, 9, 4, 12, 5, 13);
    hla_private_v8f t1 = __builtin_shufflevector(r0, r1, 2, 10, 3, 11, 6, 14, 7, 15);
    hla_private_v8f t2 = __builtin_shufflevector(r2, r3, 0, 8, 1, 9, 4, 12, 5, 13);
    hla_private_v8f t3 = __builtin_shufflevector(r2, r3, 2, 10, 3, 11, 6, 14, 7, 15);
    hla_private_v8f t4 = __builtin_shufflevector(r4, r5, 0, 8, 1, 9, 4, 12, 5, 13);
    hla_private_v8f t5 = __builtin_shufflevector(r4, r5, 2, 10, 3, 11, 6, 14, 7, 15);
    hla_private_v8f t6 = __builtin_shufflevector(r6, r7, 0, 8, 1, 9, 4, 12, 5, 13);
    hla_private_v8f t7 = __builtin_shufflevector(r6, r7, 2, 10, 3, 11, 6, 14, 7, 15);
    hla_private_v8f u0 = __builtin_shufflevector(t0, t2, 0, 1, 8, 9, 4, 5, 12, 13);
    hla_private_v8f u1 = __builtin_shufflevector(t0, t2, 2, 3, 10, 11, 6, 7, 14, 15);
    hla_private_v8f u2 = __builtin_shufflevector(t1, t3, 0, 1, 8, 9, 4, 5, 12, 13);
    hla_private_v8f u3 = __builtin_shufflevector(t1, t3, 2, 3, 10, 11, 6, 7, 14, 15);
    hla_private_v8f u4 = __builtin_shufflevector(t4, t6, 0, 1, 8, 9, 4, 5, 12, 13);
    hla_private_v8f u5 = __builtin_shufflevector(t4, t6, 2, 3, 10, 11, 6, 7, 14, 15);
    hla_private_v8f u6 = __builtin_shufflevector(t5, t7, 0, 1, 8, 9, 4, 5, 12, 13);
    hla_private_v8f u7 = __builtin_shufflevector(t5, t7, 2, 3, 10, 11, 6, 7, 14, 15);
    hla_private_v8f o0 = __builtin_shufflevector(u0, u4, 0, 1, 2, 3, 8, 9, 10, 11);
    hla_private_v8f o1 = __builtin_shufflevector(u1, u5, 0, 1, 2, 3, 8, 9, 10, 11);
    hla_private_v8f o2 = __builtin_shufflevector(u2, u6, 0, 1, 2, 3, 8, 9, 10, 11);
    hla_private_v8f o3 = __builtin_shufflevector(u3, u7, 0, 1, 2, 3, 8, 9, 10, 11);
    hla_private_v8f o4 = __builtin_shufflevector(u0, u4, 4, 5, 6, 7, 12, 13, 14, 15);
    hla_private_v8f o5 = __builtin_shufflevector(u1, u5, 4, 5, 6, 7, 12, 13, 14, 15);
    hla_private_v8f o6 = __builtin_shufflevector(u2, u6, 4, 5, 6, 7, 12, 13, 14, 15);
    hla_private_v8f o7 = __builtin_shufflevector(u3, u7, 4, 5, 6, 7, 12, 13, 14, 15);
    __builtin_memcpy(dst + 0 * dst_stride, &o0, 32); __builtin_memcpy(dst + 1 * dst_stride, &o1, 32);
    __builtin_memcpy(dst + 2 * dst_stride, &o2, 32); __builtin_memcpy(dst + 3 * dst_stride, &o3, 32);
    __builtin_memcpy(dst + 4 * dst_stride, &o4, 32); __builtin_memcpy(dst + 5 * dst_stride, &o5, 32);
    __builtin_memcpy(dst + 6 * dst_stride, &o6, 32); __builtin_memcpy(dst + 7 * dst_stride, &o7, 32);
}

/* AVX-512 (tile512.c): nonzero when float32 products use the AVX-512 tile (the CPU and the OS support AVX-512F and
 * HLA_SIMD is not "avx2"; set when the library is loaded), and that tile, 8 x 16:
 * C[rows x w] = alpha * A[rows x kb] * P[kb x 16] + beta * C (rows <= 8, w <= 16), A(i, p) at a[i*ars + p*acs],
 * P's row p at bp + p*bs, C's row i at c + i*ldc (beta = 0: C is not read). */
__attribute__((visibility("hidden"))) extern int hla_private_avx512;
static inline int hla_private_use_avx512(void) { return hla_private_avx512; }
/* Nonzero where the CPU and the OS support AVX2, FMA and F16C and HLA_SIMD is not "portable": the AVX2 tiles and step
 * kernel (tile256.c) run only then; a generic x86-64 build (make HLA_TARGET_CPU=) elsewhere takes the portable tile
 * (hla_private_tile_portable) and the portable steps. */
__attribute__((visibility("hidden"))) extern int hla_private_avx2;
static inline int hla_private_use_avx2(void) { return hla_private_avx2; }
/* bfloat16 and float16 rows to and from float32 (half.c; only where hla_private_avx2 is set): widen n contiguous
 * elements of src into dst times mul (returns nonzero when every written value is finite), or narrow src times mul
 * into dst, rounded to nearest even; the bits of Half's element-by-element conversions (Sources/HLA/Core/DType.swift). */
__attribute__((visibility("hidden"))) int hla_private_widen_bf16(const uint16_t *src, float *dst, ptrdiff_t n, float mul);
__attribute__((visibility("hidden"))) int hla_private_widen_f16(const uint16_t *src, float *dst, ptrdiff_t n, float mul);
__attribute__((visibility("hidden"))) void hla_private_narrow_bf16(const float *src, uint16_t *dst, ptrdiff_t n, float mul);
__attribute__((visibility("hidden"))) void hla_private_narrow_f16(const float *src, uint16_t *dst, ptrdiff_t n, float mul);
__attribute__((visibility("hidden"))) void hla_private_tile_avx512(ptrdiff_t kb, const float *a, ptrdiff_t ars, ptrdiff_t acs,
    ptrdiff_t rows, const float *bp, ptrdiff_t bs, float *c, ptrdiff_t ldc, ptrdiff_t w, float alpha, float beta);
/* The same over two adjacent full panels (8 x 32): the right panel's row p at bp + p*bs + 16, C's at c + 16. */
__attribute__((visibility("hidden"))) void hla_private_tile2_avx512(ptrdiff_t kb, const float *a, ptrdiff_t ars, ptrdiff_t acs,
    ptrdiff_t rows, const float *bp, ptrdiff_t bs, float *c, ptrdiff_t ldc, float alpha, float beta);
/* Both tiles over the sum of two products (Gemm.gemm2): C = alpha * (A P + A2 P2) + beta * C, A2 (rows x kb2, A2(i, p)
 * at a2[i*ars2 + p*acs2]) times P2 (row p at bp2 + p*bs2): one chain per element over A's terms, then A2's. */
__attribute__((visibility("hidden"))) void hla_private_tile_sum_avx512(ptrdiff_t kb, const float *a, ptrdiff_t ars,
    ptrdiff_t acs, const float *bp, ptrdiff_t bs, ptrdiff_t kb2, const float *a2, ptrdiff_t ars2, ptrdiff_t acs2,
    const float *bp2, ptrdiff_t bs2, ptrdiff_t rows, float *c, ptrdiff_t ldc, ptrdiff_t w, float alpha, float beta);
__attribute__((visibility("hidden"))) void hla_private_tile2_sum_avx512(ptrdiff_t kb, const float *a, ptrdiff_t ars,
    ptrdiff_t acs, const float *bp, ptrdiff_t bs, ptrdiff_t kb2, const float *a2, ptrdiff_t ars2, ptrdiff_t acs2,
    const float *bp2, ptrdiff_t bs2, ptrdiff_t rows, float *c, ptrdiff_t ldc, float alpha, float beta);

/* AVX2/FMA (tile256.c): the float32 tile where the AVX-512 one does not run, 6 x 16, with the same arguments
 * (rows <= 6, w <= 16); and over the sum of two products, as hla_private_tile_sum_avx512. The `dtile` pair: the
 * float64 tile, 6 x 8 (w <= 8). */
__attribute__((visibility("hidden"))) void hla_private_tile_avx2(ptrdiff_t kb, const float *a, ptrdiff_t ars, ptrdiff_t acs,
    ptrdiff_t rows, const float *bp, ptrdiff_t bs, float *c, ptrdiff_t ldc, ptrdiff_t w, float alpha, float beta);
__attribute__((visibility("hidden"))) void hla_private_tile_sum_avx2(ptrdiff_t kb, const float *a, ptrdiff_t ars,
    ptrdiff_t acs, const float *bp, ptrdiff_t bs, ptrdiff_t kb2, const float *a2, ptrdiff_t ars2, ptrdiff_t acs2,
    const float *bp2, ptrdiff_t bs2, ptrdiff_t rows, float *c, ptrdiff_t ldc, ptrdiff_t w, float alpha, float beta);
__attribute__((visibility("hidden"))) void hla_private_dtile_avx2(ptrdiff_t kb, const double *a, ptrdiff_t ars,
    ptrdiff_t acs, ptrdiff_t rows, const double *bp, ptrdiff_t bs, double *c, ptrdiff_t ldc, ptrdiff_t w, double alpha,
    double beta);
__attribute__((visibility("hidden"))) void hla_private_dtile_sum_avx2(ptrdiff_t kb, const double *a, ptrdiff_t ars,
    ptrdiff_t acs, const double *bp, ptrdiff_t bs, ptrdiff_t kb2, const double *a2, ptrdiff_t ars2, ptrdiff_t acs2,
    const double *bp2, ptrdiff_t bs2, ptrdiff_t rows, double *c, ptrdiff_t ldc, ptrdiff_t w, double alpha,
    double beta);
/* The narrow float32 tile (tile256.c): C[rows x 8] = alpha * A P + beta * C (rows <= 8; P's row p: 8 elements at
 * bp + p * bs), the full-panel store of the 6 x 16 tile; Gemm.gemm's diagonal blocks under .lowerC. */
__attribute__((visibility("hidden"))) void hla_private_tile_narrow_avx2(ptrdiff_t kb, const float *a, ptrdiff_t ars,
    ptrdiff_t acs, ptrdiff_t rows, const float *bp, ptrdiff_t bs, float *c, ptrdiff_t ldc, float alpha, float beta);
/* The sum tiles that also store the sum over the first product alone into `mid` (leading dimension ldc), as a tile
 * of that product with alpha = 1 and beta = 0 would (Gemm.gemm2's `mid`). */
__attribute__((visibility("hidden"))) void hla_private_tile_sum_mid_avx2(ptrdiff_t kb, const float *a, ptrdiff_t ars,
    ptrdiff_t acs, const float *bp, ptrdiff_t bs, ptrdiff_t kb2, const float *a2, ptrdiff_t ars2, ptrdiff_t acs2,
    const float *bp2, ptrdiff_t bs2, ptrdiff_t rows, float *c, ptrdiff_t ldc, ptrdiff_t w, float alpha, float beta,
    float *mid);
__attribute__((visibility("hidden"))) void hla_private_dtile_sum_mid_avx2(ptrdiff_t kb, const double *a, ptrdiff_t ars,
    ptrdiff_t acs, const double *bp, ptrdiff_t bs, ptrdiff_t kb2, const double *a2, ptrdiff_t ars2, ptrdiff_t acs2,
    const double *bp2, ptrdiff_t bs2, ptrdiff_t rows, double *c, ptrdiff_t ldc, ptrdiff_t w, double alpha,
    double beta, double *mid);
/* The same tiles without vector instructions (tile256.c; any rows, w <= 16 float32 or 8 float64 columns): each
 * element the same fused multiply-add chain (fmaf, fma) and the same stores, so the same bits; `mid` (or NULL) as in
 * the `_mid` tiles. */
__attribute__((visibility("hidden"))) void hla_private_tile_sum_portable(ptrdiff_t kb, const float *a, ptrdiff_t ars,
    ptrdiff_t acs, const float *bp, ptrdiff_t bs, ptrdiff_t kb2, const float *a2, ptrdiff_t ars2, ptrdiff_t acs2,
    const float *bp2, ptrdiff_t bs2, ptrdiff_t rows, float *c, ptrdiff_t ldc, ptrdiff_t w, float alpha, float beta,
    float *mid);
__attribute__((visibility("hidden"))) void hla_private_dtile_sum_portable(ptrdiff_t kb, const double *a, ptrdiff_t ars,
    ptrdiff_t acs, const double *bp, ptrdiff_t bs, ptrdiff_t kb2, const double *a2, ptrdiff_t ars2, ptrdiff_t acs2,
    const double *bp2, ptrdiff_t bs2, ptrdiff_t rows, double *c, ptrdiff_t ldc, ptrdiff_t w, double alpha,
    double beta, double *mid);

/* The kv sweeps of a multi-query step (Paths.stepByHead), for the unit's first thread (`follow` 0) or another
 * (`follow` 1).
 * First thread: the kv blocks are read from the state's blocks `kv` (the copy's layout), each row read there,
 * advanced, and stored both there and in the copy the kernel was given, so the state and the copy hold the advanced
 * blocks after. With `version` not 0 each row read is compared, bit for bit, with the copy's row before it; after
 * the kv sweeps (before any query head's block is touched) `*verdict` receives `version` if every row was equal,
 * else 0 (0 too when `version` is 0: the copy is not read), and `*published` is set (release).
 * Another thread, whose copy held `version`: the copy advances in place (`kv` unused) and the first group's products
 * are formed; then, before any query head's block is written, the kernel waits for `*published` (adding the ns
 * waited to `*waited`) and, unless `*verdict` is `version`, sets `stopped` and returns (only the copy and the
 * scratch written: the caller takes the state's advanced blocks and runs the heads again). */
typedef struct {
    float *kv;
    unsigned long long *verdict;
    unsigned long long version;
    int *published;
    int follow;
    int stopped;
    unsigned long long *waited;
} hla_private_kv_from;

/* The masked multi-head step kernel (Sources/CHLA/step_heads.h), compiled twice: `_avx512` (tile512.c; dk and dvp
 * multiples of 64, only where the CPU has AVX-512F: hla_private_avx512) and `_avx2` (tile256.c; also multiples of 64).
 * `hla_private_hla3_heads` and its two siblings call the one hla_private_avx512 chooses: the caller checks dk and
 * dvp (`onStepKernel`). Both give the same bits.
 *
 * hla3's masked step for n query heads of one kv head (HLA3.stepHeads): for j in 0..<n, z = S q_j, y = P^T q_j,
 * W_j <- g3 W_j + z y^T, o_j = W_j^T q_j, with q_j at q + j*dk, W_j (dk x dvp, row-major) at W + j*wstride, o_j at
 * out + j*dvp; zy: n (dk + dvp) floats of scratch. With k and v (not NULL) the kv blocks
 * are first advanced with the token, S <- g S + k k^T and P <- g P + k v^T (HLA3.stepKV, in HLA3.stepKVHeadsFused), in the
 * sweeps that form head 0's z and y; with k NULL, S (dk x dk, symmetric) and P (dk x dvp) already hold the token and
 * are only read; with `from` (not NULL; k and v given) they are read from the state's blocks as
 * hla_private_kv_from says. The heads' z and y are products on register tiles: on AVX-512 each group of four heads'
 * formed during the previous group's W sweeps (the first group's in the kv sweeps, when k and v are given and
 * n >= 4), on AVX2 all heads' before the W sweeps. Every element is the fused multiply-add chain of Vec.rank1 /
 * Vec.rank1Project and Gemm (the same bits). */
#define HLA_PRIVATE_HLA3_HEADS_ARGS(f) f(ptrdiff_t n, ptrdiff_t dk, ptrdiff_t dvp, float *S, float *P, const float *q, \
    float *W, ptrdiff_t wstride, float g3, float *zy, float *out, const float *k, const float *v, float g, \
    hla_private_kv_from *from)
/* hla2's masked step without ridge for n query heads of one kv head (HLA2.stepHeads): z = S q_j,
 * U_j <- g2 U_j + z v^T, o_j = U_j^T q_j, with U_j at U + j*ustride; z: n (dk + dvp) floats of scratch. The kernel
 * above with y = v for every head; with k not NULL, S <- g S + k k^T
 * first (HLA2.stepKV), in the sweep that forms head 0's z. */
#define HLA_PRIVATE_HLA2_HEADS_ARGS(f) f(ptrdiff_t n, ptrdiff_t dk, ptrdiff_t dvp, float *S, const float *v, \
    const float *q, float *U, ptrdiff_t ustride, float g2, float *z, float *out, const float *k, float g, \
    hla_private_kv_from *from)
/* ahla's masked step for n query heads of one kv head (AHLA.stepHeads): y = P^T q_j, E_j <- g E_j + k y^T,
 * o_j = E_j^T q_j, with E_j at E + j*estride; y: n (dk + dvp) floats of scratch. The kernel above with z = k for
 * every head; with vu (the token's v) not NULL, P <- gkv P + k v^T
 * first (AHLA.stepKV), in the sweep that forms head 0's y. */
#define HLA_PRIVATE_AHLA_HEADS_ARGS(f) f(ptrdiff_t n, ptrdiff_t dk, ptrdiff_t dvp, float *P, const float *k, \
    const float *q, float *E, ptrdiff_t estride, float g, float *y, float *out, const float *vu, float gkv, \
    hla_private_kv_from *from)
__attribute__((visibility("hidden"))) void HLA_PRIVATE_HLA3_HEADS_ARGS(hla_private_hla3_heads_avx512);
__attribute__((visibility("hidden"))) void HLA_PRIVATE_HLA3_HEADS_ARGS(hla_private_hla3_heads_avx2);
__attribute__((visibility("hidden"))) void HLA_PRIVATE_HLA2_HEADS_ARGS(hla_private_hla2_heads_avx512);
__attribute__((visibility("hidden"))) void HLA_PRIVATE_HLA2_HEADS_ARGS(hla_private_hla2_heads_avx2);
__attribute__((visibility("hidden"))) void HLA_PRIVATE_AHLA_HEADS_ARGS(hla_private_ahla_heads_avx512);
__attribute__((visibility("hidden"))) void HLA_PRIVATE_AHLA_HEADS_ARGS(hla_private_ahla_heads_avx2);
static inline void HLA_PRIVATE_HLA3_HEADS_ARGS(hla_private_hla3_heads) {
    (hla_private_avx512 ? hla_private_hla3_heads_avx512 : hla_private_hla3_heads_avx2)(n, dk, dvp, S, P, q, W, wstride,
        g3, zy, out, k, v, g, from);
}
static inline void HLA_PRIVATE_HLA2_HEADS_ARGS(hla_private_hla2_heads) {
    (hla_private_avx512 ? hla_private_hla2_heads_avx512 : hla_private_hla2_heads_avx2)(n, dk, dvp, S, v, q, U, ustride,
        g2, z, out, k, g, from);
}
static inline void HLA_PRIVATE_AHLA_HEADS_ARGS(hla_private_ahla_heads) {
    (hla_private_avx512 ? hla_private_ahla_heads_avx512 : hla_private_ahla_heads_avx2)(n, dk, dvp, P, k, q, E, estride,
        g, y, out, vu, gkv, from);
}

#endif
