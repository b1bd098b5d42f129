/* Chunked prefill of a prompt followed by streaming decode, for each operator of libhla.
 *
 * The prompt goes through hla_forward (chunked path) which also returns the final state; the
 * following tokens are decoded one at a time with hla_state_step from that state. The outputs of
 * the whole sequence (prefill then decode) are compared with hla_reference evaluated in float64 on
 * the same (float32) inputs: the max-norm relative error must stay within 1e-4 (SPEC section 4).
 * Prints the agreement and the throughput of prefill (tokens/s) and decode (head-tokens/s);
 * exits non-zero if any operator disagrees. hla3's reference is O(T^3) per head, so T stays at 512. */
#define _POSIX_C_SOURCE 200809L
#include <hla.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float randn(void)
{
    double u1, u2;
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    u1 = ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    u2 = ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

#define TRY(call)                                                                                                      \
    do {                                                                                                               \
        hla_status st_ = (call);                                                                                       \
        if (st_ != HLA_OK) {                                                                                           \
            fprintf(stderr, "prefill_decode: %s failed: %s: %s\n", #call, hla_status_string(st_), hla_last_error());  \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "prefill_decode: out of memory\n");
        exit(1);
    }
    return p;
}

/* Returns the max-norm relative error of prefill+decode against the reference. */
static double run(int op, const char *name, int64_t prompt, int64_t gen)
{
    const int64_t B = 1, H = 8, Hkv = 4, dk = 32, dv = 32, T = prompt + gen;
    const int64_t nq = B * T * H * dk, nk = B * T * Hkv * dk, nv = B * T * Hkv * dv, no = B * T * H * dv;
    const int64_t sq[3] = {T * H * dk, dk, 1}, sk[3] = {T * Hkv * dk, dk, 1}, sv[3] = {T * Hkv * dv, dv, 1},
                  so[3] = {T * H * dv, dv, 1}, so4[4] = {T * H * dv, H * dv, dv, 1};
    const int64_t sq4[4] = {T * H * dk, H * dk, dk, 1}, sk4[4] = {T * Hkv * dk, Hkv * dk, dk, 1},
                  sv4[4] = {T * Hkv * dv, Hkv * dv, dv, 1};
    hla_config cfg, cfg64;
    hla_state *state = NULL;
    float *q = xmalloc(sizeof(float) * (size_t)nq), *k = xmalloc(sizeof(float) * (size_t)nk);
    float *v = xmalloc(sizeof(float) * (size_t)nv), *out = xmalloc(sizeof(float) * (size_t)no);
    double *qd = xmalloc(sizeof(double) * (size_t)nq), *kd = xmalloc(sizeof(double) * (size_t)nk);
    double *vd = xmalloc(sizeof(double) * (size_t)nv), *ref = xmalloc(sizeof(double) * (size_t)no);
    double t0, prefill_s, decode_s, num = 0.0, den = 0.0;
    int64_t i, t;
    int reps = 0;

    hla_config_init(&cfg);
    cfg.op = op;
    cfg.dtype = HLA_FLOAT32;
    cfg.heads = H;
    cfg.kv_heads = Hkv;
    cfg.dk = dk;
    cfg.dv = dv;
    cfg.scale = 1.0 / sqrt((double)dk);
    cfg.chunk_size = 64;
    for (i = 0; i < nq; i++) q[i] = randn(), qd[i] = q[i];
    for (i = 0; i < nk; i++) k[i] = randn(), kd[i] = k[i];
    for (i = 0; i < nv; i++) v[i] = randn(), vd[i] = v[i];
    TRY(hla_state_create(&cfg, &state));

    /* prefill: the prompt through the chunked path, final state into `state` (timed over repeats) */
    t0 = now_s();
    do {
        TRY(hla_forward(&cfg, prompt, HLA_PATH_CHUNKED, q, sq4, k, sk4, v, sv4, out, so4, NULL, state));
        reps++;
    } while (now_s() - t0 < 0.25 && reps < 200);
    prefill_s = (now_s() - t0) / reps;

    /* decode: the remaining tokens one by one from the prefill state */
    t0 = now_s();
    for (t = prompt; t < T; t++)
        TRY(hla_state_step(state, q + t * H * dk, sq, k + t * Hkv * dk, sk, v + t * Hkv * dv, sv, out + t * H * dv,
                           so));
    decode_s = now_s() - t0;

    /* agreement with the float64 brute-force reference over the whole sequence */
    cfg64 = cfg;
    cfg64.dtype = HLA_FLOAT64;
    TRY(hla_reference(&cfg64, T, qd, NULL, kd, NULL, vd, NULL, ref, NULL));
    for (i = 0; i < no; i++) {
        double e = fabs((double)out[i] - ref[i]);
        if (!(e == e)) e = INFINITY;
        if (e > num) num = e;
        if (fabs(ref[i]) > den) den = fabs(ref[i]);
    }
    printf("%-5s T=%4lld (prompt %3lld + decode %3lld)  max rel err %.2e   prefill %9.0f tokens/s   "
           "decode %9.0f head-tokens/s\n",
           name, (long long)T, (long long)prompt, (long long)gen, num / den, (double)(B * prompt) / prefill_s,
           (double)(B * H * gen) / decode_s);
    hla_state_destroy(state);
    free(q);
    free(k);
    free(v);
    free(out);
    free(qd);
    free(kd);
    free(vd);
    free(ref);
    return num / den;
}

int main(void)
{
    const double tol = 1e-4;
    int bad = 0;
    printf("libhla %s: prefill (chunked forward) + decode (state step), B=1 H=8 Hkv=4 dk=dv=32 float32\n",
           hla_version());
    bad |= !(run(HLA_OP_HLA2, "hla2", 384, 128) <= tol);
    bad |= !(run(HLA_OP_AHLA, "ahla", 384, 128) <= tol);
    bad |= !(run(HLA_OP_HLA3, "hla3", 384, 128) <= tol);
    printf(bad ? "FAILED: agreement above %.0e\n" : "all operators agree with the reference within %.0e\n", tol);
    return bad;
}
