/* The AVX-512 register tile of libhla's dense products alone (Sources/CHLA/tile512.c compiled in, the same code the
 * library runs), for examples/bench/tileprobe.py: 8 x 32 tiles covering 32 x d x d products, C += A B, the shape of
 * a chunk's d x d products at chunk 32 (Q S0, Q U0), looping over `heads` heads' operands so they come from L2 as in
 * a forward (16 heads at d = 64: 768 KiB). Built with $CC -O2 -fPIC -shared -I Sources/CHLA/include. */
#include <stdlib.h>
#include <time.h>
#include "../../Sources/CHLA/tile512.c"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Whether the CPU and the OS support AVX-512F (the library's own test; the tile needs it). */
int tileprobe_avx512(void) { return cpu_avx512(); }

/* GFLOP/s of `calls` products in a row (32 x d x d, 8 x 32 tiles, C += A B, product i on head i mod heads), timed
 * as one stretch (so a caller can give it as long as the forward it is compared with, exposed to the same
 * contention); d a multiple of 32. -1 if memory is short or an argument is unusable. */
double tileprobe_rate(int d, int heads, long calls) {
    if (d <= 0 || d % 32 != 0 || heads <= 0 || calls <= 0) return -1;
    const long m = 32, a_n = m * d, b_n = (long)d * d, c_n = m * d;
    float *A = aligned_alloc(64, (size_t)(heads * a_n) * 4), *B = aligned_alloc(64, (size_t)(heads * b_n) * 4),
          *C = aligned_alloc(64, (size_t)(heads * c_n) * 4);
    if (!A || !B || !C) { free(A); free(B); free(C); return -1; }
    for (long i = 0; i < heads * a_n; i++) A[i] = 0.001f * (float)(i % 97);
    for (long i = 0; i < heads * b_n; i++) B[i] = 0.001f * (float)(i % 89) - 0.04f;
    for (long i = 0; i < heads * c_n; i++) C[i] = 0;
    double t0 = now();
    for (long i = 0; i < calls; i++) {
        long h = i % heads;
        const float *a = A + h * a_n, *b = B + h * b_n;
        float *c = C + h * c_n;
        for (long j0 = 0; j0 < d; j0 += 32)
            for (long i0 = 0; i0 < m; i0 += 8)
                hla_private_tile2_avx512(d, a + i0 * d, d, 1, 8, b + j0, d, c + i0 * d + j0, d, 1.0f, 1.0f);
    }
    double t = now() - t0;
    free(A); free(B); free(C);
    return 2.0 * (double)(m * d * d) * (double)calls / t / 1e9;
}
