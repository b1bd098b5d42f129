/* hla3's multi-query step kernel alone (Sources/CHLA/tile512.c's hla_private_hla3_heads_avx512, compiled in: the
 * code the library runs, or a variant of it that examples/bench/stepprobe.py writes), for stepprobe.py: one
 * thread's share of a step at H = 64, Hkv = 1 (`heads` query heads of one kv head, the kv blocks advanced in the
 * call), its blocks hot in L2 (32 heads at d = 64: 512 KiB of W, 32 KiB of S and P). Built with
 * $CC -O2 -fPIC -shared -I Sources/CHLA/include -DTILE512='"path of tile512.c or a variant"'. */
#include <stdlib.h>
#include <time.h>
#include TILE512

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Whether the CPU and the OS support AVX-512F (the library's own test; the kernel needs it). */
int stepprobe_avx512(void) { return cpu_avx512(); }

/* Seconds for `calls` kernel calls in a row on one set of blocks (decay 1, d = dv = d, a multiple of 64), timed as
 * one stretch after one call that brings the blocks into cache; -1 if memory is short or an argument is unusable.
 * The values grow with the calls but stay finite and normal over the stretches stepprobe.py times (2,000 calls by
 * default; after 20,000 the largest |W| is about 8e5), so no infinities or subnormals change the arithmetic's speed;
 * only the time is looked at (the library's tests check its results). */
double stepprobe_seconds(int d, int heads, long calls) {
    if (d <= 0 || d % 64 != 0 || heads <= 0 || calls <= 0) return -1;
    const long dd = (long)d * d;
    float *S = aligned_alloc(64, (size_t)dd * 4), *P = aligned_alloc(64, (size_t)dd * 4),
          *W = aligned_alloc(64, (size_t)(heads * dd) * 4), *q = aligned_alloc(64, (size_t)(heads * d) * 4),
          *zy = aligned_alloc(64, (size_t)(2 * heads * d) * 4), *o = aligned_alloc(64, (size_t)(heads * d) * 4),
          *k = aligned_alloc(64, (size_t)d * 4), *v = aligned_alloc(64, (size_t)d * 4);
    double t = -1;
    if (S && P && W && q && zy && o && k && v) {
        for (long i = 0; i < dd; i++) { S[i] = 0.001f * (float)(i % 7); P[i] = 0.001f * (float)(i % 5); }
        for (long i = 0; i < heads * dd; i++) W[i] = 0.0001f * (float)(i % 11);
        for (long i = 0; i < heads * d; i++) q[i] = 0.01f * (float)(i % 13);
        for (long i = 0; i < d; i++) { k[i] = 0.01f * (float)(i % 3); v[i] = 0.01f; }
        hla_private_hla3_heads_avx512(heads, d, d, S, P, q, W, dd, 1.0f, zy, o, k, v, 1.0f, 0);
        double t0 = now();
        for (long c = 0; c < calls; c++)
            hla_private_hla3_heads_avx512(heads, d, d, S, P, q, W, dd, 1.0f, zy, o, k, v, 1.0f, 0);
        t = now() - t0;
    }
    free(S); free(P); free(W); free(q); free(zy); free(o); free(k); free(v);
    return t;
}
