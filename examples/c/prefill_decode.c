/* Prefill then decode with libhla, for each operator, in the host's own cache.
 *
 * Four prompts of different lengths are packed into one [1, T, H, D] batch with cu_seqlens and
 * prefilled in place into rows {4, 0, 2, 5} of a 6-slot float32 cache: hla_forward with
 * initial = final = the cache and a rows tensor (no padding is computed; the other slots are not
 * touched). Then every sequence decodes GEN more tokens with hla_step on the same rows.
 *
 * Parity: the whole sequences (prompt and generated tokens), packed with their own cu_seqlens, go
 * through hla_reference (brute force, float64 accumulation); the prefill and the decode outputs must
 * agree with it to a max-norm relative error of 1e-4 (SPEC section 4, float32). Prints the agreement and
 * the prefill and decode throughput; exits non-zero on any disagreement or error. */
#define _POSIX_C_SOURCE 200809L
#include <hla.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { N = 4, SLOTS = 6, GEN = 32, H = 4, HKV = 2, DK = 32, DV = 32 };
static const int64_t prompt[N] = {37, 5, 120, 64};
static int64_t slot_of[N] = {4, 0, 2, 5};

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

static int fail(const char *what, hla_status st)
{
    fprintf(stderr, "prefill_decode: %s failed: %s: %s\n", what, hla_status_string(st), hla_last_error());
    return 1;
}

static hla_tensor tensor(void *data, int dtype, int nd, int64_t a, int64_t b, int64_t c, int64_t d)
{
    hla_tensor t;
    int64_t shape[4];
    shape[0] = a, shape[1] = b, shape[2] = c, shape[3] = d;
    if (hla_tensor_init(&t, data, dtype, nd, shape, NULL) != HLA_OK) {
        fprintf(stderr, "prefill_decode: hla_tensor_init: %s\n", hla_last_error());
        exit(1);
    }
    return t;
}

/* max |a - b| / max |b| */
static double rel_err(const float *a, const float *b, int64_t count)
{
    double num = 0, den = 0;
    int64_t i;
    for (i = 0; i < count; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (e != e) return INFINITY;
        if (e > num) num = e;
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return den > 0 ? num / den : num;
}

static int run(int op, double *worst)
{
    static const char *names[3] = {"hla2", "ahla", "hla3"};
    hla_config cfg;
    hla_status st;
    int64_t n = 0, cu[N + 1], fcu[N + 1], P = 0, L = 0, i, g;
    float *cache, *q, *k, *v, *o, *dq, *dk, *dv, *dout, *ref;
    hla_tensor tcache, tcu, trows, tq, tk, tv, to;
    double t0, t_prefill, t_decode = 0, e_pre = 0, e_dec = 0;
    int untouched = 1;

    hla_config_init(&cfg, sizeof cfg);
    cfg.op = op;
    cfg.heads = H;
    cfg.kv_heads = HKV;
    cfg.dk = DK;
    cfg.dv = DV;
    cfg.scale = 1.0 / sqrt((double)DK);
    cfg.decay = op == HLA_OP_AHLA ? 1.0 : 0.98;
    cfg.ridge = op == HLA_OP_HLA2 ? 0.1 : 0.0;
    if ((st = hla_state_elements(&cfg, &n)) != HLA_OK) return fail("hla_state_elements", st);

    /* full sequences (prompt + GEN generated tokens), packed: offsets fcu; prompts alone: offsets cu */
    cu[0] = fcu[0] = 0;
    for (i = 0; i < N; i++) cu[i + 1] = cu[i] + prompt[i], fcu[i + 1] = fcu[i] + prompt[i] + GEN;
    P = cu[N], L = fcu[N];
    q = malloc((size_t)(L * H * DK) * sizeof(float)), k = malloc((size_t)(L * HKV * DK) * sizeof(float));
    v = malloc((size_t)(L * HKV * DV) * sizeof(float)), o = malloc((size_t)(L * H * DV) * sizeof(float));
    ref = malloc((size_t)(L * H * DV) * sizeof(float));
    dq = malloc((size_t)(P * H * DK) * sizeof(float)), dk = malloc((size_t)(P * HKV * DK) * sizeof(float));
    dv = malloc((size_t)(P * HKV * DV) * sizeof(float)), dout = malloc((size_t)(P * H * DV) * sizeof(float));
    cache = malloc((size_t)(SLOTS * n) * sizeof(float));
    if (!q || !k || !v || !o || !ref || !dq || !dk || !dv || !dout || !cache) return fail("malloc", HLA_ERR_OUT_OF_MEMORY);
    for (i = 0; i < L * H * DK; i++) q[i] = randn();
    for (i = 0; i < L * HKV * DK; i++) k[i] = randn();
    for (i = 0; i < L * HKV * DV; i++) v[i] = randn();
    /* the prompts alone, packed: rows [fcu[s], fcu[s] + prompt[s]) of the full sequences */
    for (i = 0; i < N; i++) {
        memcpy(dq + cu[i] * H * DK, q + fcu[i] * H * DK, (size_t)(prompt[i] * H * DK) * sizeof(float));
        memcpy(dk + cu[i] * HKV * DK, k + fcu[i] * HKV * DK, (size_t)(prompt[i] * HKV * DK) * sizeof(float));
        memcpy(dv + cu[i] * HKV * DV, v + fcu[i] * HKV * DV, (size_t)(prompt[i] * HKV * DV) * sizeof(float));
    }

    /* the cache: other slots hold some other sequences' state (here a marker) that must survive */
    for (i = 0; i < SLOTS * n; i++) cache[i] = 42.0f;
    tcache = tensor(cache, HLA_FLOAT32, 2, SLOTS, n, 0, 0);
    trows = tensor(slot_of, HLA_INT64, 1, N, 0, 0, 0);
    if ((st = hla_state_reset_rows(&cfg, &tcache, &trows)) != HLA_OK) return fail("hla_state_reset_rows", st);

    /* prefill in place: initial = final = the cache rows */
    tcu = tensor(cu, HLA_INT64, 1, N + 1, 0, 0, 0);
    tq = tensor(dq, HLA_FLOAT32, 4, 1, P, H, DK);
    tk = tensor(dk, HLA_FLOAT32, 4, 1, P, HKV, DK);
    tv = tensor(dv, HLA_FLOAT32, 4, 1, P, HKV, DV);
    to = tensor(dout, HLA_FLOAT32, 4, 1, P, H, DV);
    t0 = now_s();
    st = hla_forward(&cfg, HLA_PATH_CHUNKED, &tq, &tk, &tv, &to, &tcu, &tcache, &tcache, &trows);
    t_prefill = now_s() - t0;
    if (st != HLA_OK) return fail("hla_forward (prefill)", st);
    for (i = 0; i < N; i++) memcpy(o + fcu[i] * H * DV, dout + cu[i] * H * DV, (size_t)(prompt[i] * H * DV) * sizeof(float));

    /* decode GEN tokens of the N sequences on their rows */
    for (g = 0; g < GEN; g++) {
        float sq[N * H * DK], sk[N * HKV * DK], sv[N * HKV * DV], so[N * H * DV];
        hla_tensor a, b, c, d;
        for (i = 0; i < N; i++) {
            const int64_t t = fcu[i] + prompt[i] + g;
            memcpy(sq + i * H * DK, q + t * H * DK, H * DK * sizeof(float));
            memcpy(sk + i * HKV * DK, k + t * HKV * DK, HKV * DK * sizeof(float));
            memcpy(sv + i * HKV * DV, v + t * HKV * DV, HKV * DV * sizeof(float));
        }
        a = tensor(sq, HLA_FLOAT32, 3, N, H, DK, 0), b = tensor(sk, HLA_FLOAT32, 3, N, HKV, DK, 0);
        c = tensor(sv, HLA_FLOAT32, 3, N, HKV, DV, 0), d = tensor(so, HLA_FLOAT32, 3, N, H, DV, 0);
        t0 = now_s();
        st = hla_step(&cfg, &a, &b, &c, &d, &tcache, &trows);
        t_decode += now_s() - t0;
        if (st != HLA_OK) return fail("hla_step", st);
        for (i = 0; i < N; i++) memcpy(o + (fcu[i] + prompt[i] + g) * H * DV, so + i * H * DV, H * DV * sizeof(float));
    }
    for (i = 0; i < SLOTS * n; i++)
        if ((i / n == 1 || i / n == 3) && cache[i] != 42.0f) untouched = 0;

    /* the brute force over the whole packed sequences */
    tcu = tensor(fcu, HLA_INT64, 1, N + 1, 0, 0, 0);
    tq = tensor(q, HLA_FLOAT32, 4, 1, L, H, DK);
    tk = tensor(k, HLA_FLOAT32, 4, 1, L, HKV, DK);
    tv = tensor(v, HLA_FLOAT32, 4, 1, L, HKV, DV);
    to = tensor(ref, HLA_FLOAT32, 4, 1, L, H, DV);
    if ((st = hla_reference(&cfg, &tq, &tk, &tv, &to, &tcu)) != HLA_OK) return fail("hla_reference", st);
    for (i = 0; i < N; i++) {
        const int64_t a = fcu[i] * H * DV, b = (fcu[i] + prompt[i]) * H * DV, c = fcu[i + 1] * H * DV;
        e_pre = fmax(e_pre, rel_err(o + a, ref + a, b - a));
        e_dec = fmax(e_dec, rel_err(o + b, ref + b, c - b));
    }
    printf("  %s: prefill %lld tokens (prompts 37, 5, 120, 64 into slots 4, 0, 2, 5): %8.0f tokens/s, rel err %.2e\n",
           names[op], (long long)P, (double)P / t_prefill, e_pre);
    printf("        decode %d x %d tokens on the same rows:                      %8.0f tokens/s, rel err %.2e%s\n", GEN, N,
           (double)(GEN * N) / t_decode, e_dec, untouched ? "" : "  (OTHER SLOTS CHANGED)");
    *worst = fmax(*worst, fmax(e_pre, e_dec));
    if (!untouched) *worst = INFINITY;
    free(q), free(k), free(v), free(o), free(ref), free(dq), free(dk), free(dv), free(dout), free(cache);
    return 0;
}

int main(void)
{
    double worst = 0;
    int op;
    printf("prefill_decode: libhla %s, H=%d Hkv=%d dk=dv=%d float32, cache of %d slots in host memory\n", hla_version(),
           H, HKV, DK, SLOTS);
    for (op = 0; op < 3; op++)
        if (run(op, &worst)) return 1;
    printf("  parity with hla_reference: max rel err %.2e %s\n", worst, worst <= 1e-4 ? "OK" : "FAIL");
    return worst <= 1e-4 ? 0 : 1;
}
