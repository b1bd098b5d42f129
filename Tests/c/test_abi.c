/* C ABI test of libhla: drives every entry point of include/hla.h, checks every execution path
 * against the index sums of SPEC.md section 2 (an independent brute-force evaluation written here,
 * and the library's own hla_reference), and feeds every kind of bad input the contract names.
 *
 * Built with gcc -std=c99 -Wall -Wextra -pedantic -Werror against the *installed* header and
 * library (see Makefile), run plainly, under valgrind and with ASan/UBSan.
 * The last line printed is exactly "N passed, M failed"; the exit status is non-zero on any failure. */
#define _POSIX_C_SOURCE 200809L
#include <hla.h>

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "naive_ref.h"

#ifndef HLA_PC_VERSION
#define HLA_PC_VERSION "0.1.0"
#endif

/* ------------------------------------------------------------------------------------------ */
/* Check bookkeeping                                                                           */

static long g_pass, g_fail;
static char g_ctx[160] = "";

static void set_ctx(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_ctx, sizeof g_ctx, fmt, ap);
    va_end(ap);
}

static void report(int ok, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    if (ok) {
        g_pass++;
        return;
    }
    g_fail++;
    printf("FAIL %s:%d [%s] ", file, line, g_ctx);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

#define CHECK(cond, ...) report((cond) ? 1 : 0, __FILE__, __LINE__, __VA_ARGS__)

static const char *status_name(hla_status s) { return hla_status_string(s); }

static int tolower_ascii(int ch) { return (ch >= 'A' && ch <= 'Z') ? ch - 'A' + 'a' : ch; }

/* Case-insensitive: does hay contain one of the '|'-separated alternatives of alts? */
static int icontains_any(const char *hay, const char *alts)
{
    const char *a = alts;
    while (*a) {
        const char *end = strchr(a, '|');
        size_t n = end ? (size_t)(end - a) : strlen(a);
        const char *h;
        for (h = hay; *h; h++) {
            size_t i = 0;
            while (i < n && h[i] && tolower_ascii(h[i]) == tolower_ascii(a[i])) i++;
            if (i == n) return 1;
        }
        if (!end) break;
        a = end + 1;
    }
    return 0;
}

/* Expect a status; for a failure also a non-empty last_error naming the problem (keyword kw). */
static int expect_status(hla_status got, hla_status want, const char *kw, const char *file, int line,
                         const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (got != want) {
        const char *m = hla_last_error();
        report(0, file, line, "%s: got %s (%d, last_error \"%s\"), want %s", what, status_name(got),
               (int)got, m ? m : "(null)", status_name(want));
        return 0;
    }
    if (want != HLA_OK) {
        const char *m = hla_last_error();
        if (m == NULL || m[0] == '\0') {
            report(0, file, line, "%s: %s but hla_last_error() is empty", what, status_name(got));
            return 0;
        }
        if (kw && !icontains_any(m, kw)) {
            report(0, file, line, "%s: last_error \"%s\" does not name the problem (%s)", what, m, kw);
            return 0;
        }
    }
    report(1, file, line, "%s", what);
    return 1;
}

#define EXPECT(call, want, kw, ...) expect_status((call), (want), (kw), __FILE__, __LINE__, __VA_ARGS__)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------------------------------ */
/* Data helpers                                                                                */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static uint64_t splitmix(void)
{
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double unif(void) { return ((double)(splitmix() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

static double normal(void)
{
    double u1 = unif(), u2 = unif();
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "test_abi: out of memory\n");
        exit(2);
    }
    return p;
}

static size_t esize(int dt) { return dt == HLA_FLOAT64 ? sizeof(double) : sizeof(float); }

static double getv(const void *p, int dt, int64_t off)
{
    return dt == HLA_FLOAT64 ? ((const double *)p)[off] : (double)((const float *)p)[off];
}

static void setv(void *p, int dt, int64_t off, double x)
{
    if (dt == HLA_FLOAT64)
        ((double *)p)[off] = x;
    else
        ((float *)p)[off] = (float)x;
}

/* Pointer to element off (may be negative) of a typed buffer. */
static void *at(void *p, int dt, int64_t off) { return (char *)p + off * (int64_t)esize(dt); }
static const void *cat_(const void *p, int dt, int64_t off)
{
    return (const char *)p + off * (int64_t)esize(dt);
}

static void *typed_copy(const double *x, int64_t n, int dt)
{
    void *p = xmalloc((size_t)n * esize(dt));
    int64_t i;
    for (i = 0; i < n; i++) setv(p, dt, i, x[i]);
    return p;
}

static void *typed_nan(int64_t n, int dt)
{
    void *p = xmalloc((size_t)n * esize(dt));
    int64_t i;
    for (i = 0; i < n; i++) setv(p, dt, i, NAN);
    return p;
}

static void contig4(int64_t T, int64_t H, int64_t D, int64_t s[4])
{
    s[3] = 1;
    s[2] = D;
    s[1] = H * D;
    s[0] = T * H * D;
}

/* ‖o − ref‖_max / ‖ref‖_max over b < B, t < Tn, h < H, d < D, where o(b,t,h,d) is at
 * o + b*s0 + t*s1 + h*s2 + d*s3 (typed dt) and ref is contiguous [B, Tref, H, D] at time t0 + t.
 * NaN anywhere gives +inf. */
static double rel_err(const void *o, int dt, const int64_t s[4], int64_t B, int64_t Tn, int64_t H, int64_t D,
                      const double *ref, int64_t Tref, int64_t t0)
{
    double num = 0.0, den = 0.0;
    int64_t b, t, h, d;
    for (b = 0; b < B; b++)
        for (t = 0; t < Tn; t++)
            for (h = 0; h < H; h++)
                for (d = 0; d < D; d++) {
                    double x = getv(o, dt, b * s[0] + t * s[1] + h * s[2] + d * s[3]);
                    double r = ref[((b * Tref + t0 + t) * H + h) * D + d];
                    double e = fabs(x - r);
                    if (!(e == e) || !(x == x)) return INFINITY;
                    if (e > num) num = e;
                    if (fabs(r) > den) den = fabs(r);
                }
    return den > 0 ? num / den : num;
}

/* ------------------------------------------------------------------------------------------ */
/* Names                                                                                       */

static const char *op_name(int op)
{
    return op == HLA_OP_HLA2 ? "hla2" : op == HLA_OP_AHLA ? "ahla" : op == HLA_OP_HLA3 ? "hla3" : "op?";
}
static const char *dt_name(int dt) { return dt == HLA_FLOAT64 ? "f64" : "f32"; }
static const char *path_name(int p)
{
    return p == HLA_PATH_CHUNKED ? "chunked" : p == HLA_PATH_SERIAL ? "serial" : p == HLA_PATH_SCAN ? "scan" : "?";
}

static hla_config make_cfg(int op, int dt, int masked, int normalize, double decay, double ridge, int64_t B,
                           int64_t H, int64_t Hkv, int64_t dk, int64_t dv)
{
    hla_config c;
    hla_config_init(&c);
    c.op = op;
    c.dtype = dt;
    c.masked = masked;
    c.normalize = normalize;
    c.decay = decay;
    c.ridge = ridge;
    c.batch = B;
    c.heads = H;
    c.kv_heads = Hkv;
    c.dk = dk;
    c.dv = dv;
    c.scale = 1.0 / sqrt((double)dk);
    c.chunk_size = 8;
    return c;
}

static int same_double(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* Same configuration (kv_heads 0 == heads; chunk_size ignored). */
static int cfg_equal(const hla_config *a, const hla_config *b)
{
    int64_t ka = a->kv_heads ? a->kv_heads : a->heads, kb = b->kv_heads ? b->kv_heads : b->heads;
    return a->op == b->op && a->dtype == b->dtype && a->masked == b->masked && a->normalize == b->normalize &&
           a->batch == b->batch && a->heads == b->heads && ka == kb && a->dk == b->dk && a->dv == b->dv &&
           same_double(a->scale, b->scale) && same_double(a->decay, b->decay) && same_double(a->ridge, b->ridge) &&
           same_double(a->eps, b->eps);
}

/* ------------------------------------------------------------------------------------------ */
/* A random problem: q [B,T,H,dk], k [B,T,Hkv,dk], v [B,T,Hkv,dv], as doubles (rounded to the
 * dtype so that the float64 evaluation sees exactly the float32 inputs) and as typed copies.   */

typedef struct {
    hla_config c;
    int64_t T, B, H, Hkv, dk, dv;
    int64_t nq, nk, nv, no;
    double *qd, *kd, *vd; /* doubles */
    void *q, *k, *v;      /* typed */
    double *ref;          /* naive reference over all T, [B,T,H,dv] */
    int64_t sq[4], sk[4], sv[4], so[4];
} problem;

static void problem_init(problem *p, const hla_config *c, int64_t T, int positive_qk)
{
    int64_t i;
    p->c = *c;
    p->T = T;
    p->B = c->batch;
    p->H = c->heads;
    p->Hkv = c->kv_heads ? c->kv_heads : c->heads;
    p->dk = c->dk;
    p->dv = c->dv;
    p->nq = p->B * T * p->H * p->dk;
    p->nk = p->B * T * p->Hkv * p->dk;
    p->nv = p->B * T * p->Hkv * p->dv;
    p->no = p->B * T * p->H * p->dv;
    p->qd = xmalloc((size_t)p->nq * sizeof(double));
    p->kd = xmalloc((size_t)p->nk * sizeof(double));
    p->vd = xmalloc((size_t)p->nv * sizeof(double));
    for (i = 0; i < p->nq; i++) p->qd[i] = positive_qk ? fabs(normal()) : normal();
    for (i = 0; i < p->nk; i++) p->kd[i] = positive_qk ? fabs(normal()) : normal();
    for (i = 0; i < p->nv; i++) p->vd[i] = normal();
    if (c->dtype == HLA_FLOAT32) {
        for (i = 0; i < p->nq; i++) p->qd[i] = (double)(float)p->qd[i];
        for (i = 0; i < p->nk; i++) p->kd[i] = (double)(float)p->kd[i];
        for (i = 0; i < p->nv; i++) p->vd[i] = (double)(float)p->vd[i];
    }
    p->q = typed_copy(p->qd, p->nq, c->dtype);
    p->k = typed_copy(p->kd, p->nk, c->dtype);
    p->v = typed_copy(p->vd, p->nv, c->dtype);
    p->ref = xmalloc((size_t)p->no * sizeof(double));
    if (naive_ref(c, T, p->qd, p->kd, p->vd, p->ref) != 0) {
        fprintf(stderr, "test_abi: out of memory\n");
        exit(2);
    }
    contig4(T, p->H, p->dk, p->sq);
    contig4(T, p->Hkv, p->dk, p->sk);
    contig4(T, p->Hkv, p->dv, p->sv);
    contig4(T, p->H, p->dv, p->so);
}

static void problem_free(problem *p)
{
    free(p->qd);
    free(p->kd);
    free(p->vd);
    free(p->q);
    free(p->k);
    free(p->v);
    free(p->ref);
}

/* Views of tokens [t0, ...) of the full typed buffers (strided: batch stride of the full T). */
static const void *pq(const problem *p, int64_t t0) { return cat_(p->q, p->c.dtype, t0 * p->H * p->dk); }
static const void *pk(const problem *p, int64_t t0) { return cat_(p->k, p->c.dtype, t0 * p->Hkv * p->dk); }
static const void *pv(const problem *p, int64_t t0) { return cat_(p->v, p->c.dtype, t0 * p->Hkv * p->dv); }

/* Contiguous typed copy of tokens [t0, t1) of a [B,T,Hx,D] typed buffer. */
static void *slice_copy(const void *src, int dt, int64_t B, int64_t T, int64_t Hx, int64_t D, int64_t t0, int64_t t1)
{
    const int64_t n = t1 - t0, row = Hx * D;
    void *dst = xmalloc((size_t)(B * n * row) * esize(dt));
    int64_t b;
    for (b = 0; b < B; b++)
        memcpy(at(dst, dt, b * n * row), cat_(src, dt, (b * T + t0) * row), (size_t)(n * row) * esize(dt));
    return dst;
}

static double tol_of(int dt) { return dt == HLA_FLOAT64 ? 1e-10 : 1e-4; }

/* ------------------------------------------------------------------------------------------ */
/* 1. version, status strings, last_error before any failure, config                          */

static void test_basics(void)
{
    static const char *names[] = {"HLA_OK",
                                  "HLA_ERR_NULL_POINTER",
                                  "HLA_ERR_INVALID_ARGUMENT",
                                  "HLA_ERR_OVERFLOW",
                                  "HLA_ERR_MISMATCH",
                                  "HLA_ERR_CORRUPT",
                                  "HLA_ERR_BUFFER_TOO_SMALL",
                                  "HLA_ERR_OUT_OF_MEMORY"};
    static const int unknown[] = {8, 9, 42, -1, 1000000, -2147483647 - 1, 2147483647};
    const char *le, *ver;
    hla_config c, d;
    int i;
    set_ctx("basics");

    le = hla_last_error();
    CHECK(le != NULL && le[0] == '\0', "hla_last_error() before any failure is \"%s\", want \"\"",
          le ? le : "(null)");

    ver = hla_version();
    CHECK(ver != NULL && ver[0] != '\0', "hla_version() is empty");
    if (ver) {
        CHECK(strcmp(ver, HLA_PC_VERSION) == 0, "hla_version() \"%s\" differs from hla.pc Version \"%s\"", ver,
              HLA_PC_VERSION);
        CHECK(hla_version() == ver, "hla_version() not static storage (pointer changed)");
    }

    for (i = 0; i < 8; i++) {
        const char *s = hla_status_string((hla_status)i);
        CHECK(s != NULL && strcmp(s, names[i]) == 0, "hla_status_string(%d) = \"%s\", want \"%s\"", i,
              s ? s : "(null)", names[i]);
    }
    for (i = 0; i < (int)(sizeof unknown / sizeof unknown[0]); i++) {
        const char *s = hla_status_string((hla_status)unknown[i]);
        CHECK(s != NULL && strcmp(s, "HLA_ERR_UNKNOWN") == 0, "hla_status_string(%d) = \"%s\", want HLA_ERR_UNKNOWN",
              unknown[i], s ? s : "(null)");
    }

    /* config_init overwrites every field of a garbage struct with the documented defaults */
    memset(&c, 0xA5, sizeof c);
    EXPECT(hla_config_init(&c), HLA_OK, NULL, "hla_config_init");
    CHECK(c.op == HLA_OP_HLA2 && c.dtype == HLA_FLOAT32 && c.masked == 1 && c.normalize == 0 && c.batch == 1 &&
              c.heads == 1 && c.kv_heads == 0 && c.dk == 64 && c.dv == 64 && c.scale == 1.0 && c.decay == 1.0 &&
              c.ridge == 0.0 && c.eps == 1e-6 && c.chunk_size == 0,
          "hla_config_init defaults: op=%d dtype=%d masked=%d normalize=%d B=%lld H=%lld Hkv=%lld dk=%lld dv=%lld "
          "scale=%g decay=%g ridge=%g eps=%g chunk=%lld",
          c.op, c.dtype, c.masked, c.normalize, (long long)c.batch, (long long)c.heads, (long long)c.kv_heads,
          (long long)c.dk, (long long)c.dv, c.scale, c.decay, c.ridge, c.eps, (long long)c.chunk_size);
    EXPECT(hla_config_validate(&c), HLA_OK, NULL, "validate(defaults)");

    /* a few valid non-default configurations */
    d = c;
    d.op = HLA_OP_AHLA;
    d.dtype = HLA_FLOAT64;
    d.masked = 0;
    d.normalize = 1;
    d.heads = 6;
    d.kv_heads = 3;
    d.decay = 1e-300;
    d.scale = -2.5;
    d.eps = 1e300;
    d.chunk_size = 1;
    EXPECT(hla_config_validate(&d), HLA_OK, NULL, "validate(ahla f64 unmasked normalize Hkv=3 tiny decay)");
    d = c;
    d.ridge = 3.0;
    d.kv_heads = 1;
    d.heads = 7;
    d.scale = 0.0;
    d.chunk_size = 1000000;
    EXPECT(hla_config_validate(&d), HLA_OK, NULL, "validate(hla2 ridge=3 MQA scale=0)");
    {   /* hla.h: "New zeroed state for *cfg (chunk_size is ignored)" */
        hla_state *s = NULL;
        d = c;
        d.dk = 4;
        d.dv = 4;
        d.chunk_size = 5000;
        EXPECT(hla_state_create(&d, &s), HLA_OK, NULL, "state_create(chunk_size=5000; chunk_size is ignored)");
        hla_state_destroy(s);
    }
    d = c;
    d.op = HLA_OP_HLA3;
    d.kv_heads = 1;
    d.dk = 1;
    d.dv = 1;
    EXPECT(hla_config_validate(&d), HLA_OK, NULL, "validate(hla3 dk=dv=1)");
}

/* ------------------------------------------------------------------------------------------ */
/* 2. state lifecycle and getters                                                              */

static void test_state_lifecycle(void)
{
    hla_config c = make_cfg(HLA_OP_HLA2, HLA_FLOAT64, 1, 1, 0.9, 0.25, 2, 4, 2, 5, 3), g;
    problem p;
    hla_state *s = NULL, *s2 = NULL, *cl = NULL;
    int64_t n0 = -1, n1 = -1, tok = -1, sst[3], ost[3];
    double *o1, *o2, *o3;
    int64_t t;
    set_ctx("state lifecycle");
    problem_init(&p, &c, 6, 1);
    hla_state_destroy(NULL);
    hla_segment_destroy(NULL);
    CHECK(1, "destroy(NULL) is a no-op");

    if (!EXPECT(hla_state_create(&c, &s), HLA_OK, NULL, "state_create") || !s) {
        problem_free(&p);
        return;
    }
    EXPECT(hla_state_get_config(s, &g), HLA_OK, NULL, "state_get_config");
    CHECK(cfg_equal(&g, &c), "state_get_config differs from the creating configuration");
    EXPECT(hla_state_nbytes(s, &n0), HLA_OK, NULL, "state_nbytes");
    CHECK(n0 > 0, "state_nbytes = %lld", (long long)n0);
    EXPECT(hla_state_tokens(s, &tok), HLA_OK, NULL, "state_tokens");
    CHECK(tok == 0, "new state has %lld tokens", (long long)tok);

    o1 = xmalloc((size_t)(p.B * p.H * p.dv) * sizeof(double));
    o2 = xmalloc((size_t)(p.B * p.H * p.dv) * sizeof(double));
    o3 = xmalloc((size_t)(p.B * p.H * p.dv) * sizeof(double));
    /* step strides for a token of the [B,T,Hx,D] buffers */
    sst[0] = p.T * p.H * p.dk;
    sst[1] = p.dk;
    sst[2] = 1;
    ost[0] = p.H * p.dv;
    ost[1] = p.dv;
    ost[2] = 1;
    for (t = 0; t < 3; t++) {
        int64_t kst[3], vst[3];
        kst[0] = p.T * p.Hkv * p.dk;
        kst[1] = p.dk;
        kst[2] = 1;
        vst[0] = p.T * p.Hkv * p.dv;
        vst[1] = p.dv;
        vst[2] = 1;
        EXPECT(hla_state_step(s, pq(&p, t), sst, pk(&p, t), kst, pv(&p, t), vst, o1, ost), HLA_OK, NULL, "step %d",
               (int)t);
        CHECK(rel_err(o1, HLA_FLOAT64, (int64_t[4]){p.H * p.dv, 0, p.dv, 1}, p.B, 1, p.H, p.dv, p.ref, p.T, t) <= 1e-10,
              "step %d output vs reference", (int)t);
    }
    EXPECT(hla_state_tokens(s, &tok), HLA_OK, NULL, "state_tokens");
    CHECK(tok == 3, "after 3 steps tokens = %lld", (long long)tok);
    EXPECT(hla_state_nbytes(s, &n1), HLA_OK, NULL, "state_nbytes");
    CHECK(n1 == n0, "nbytes changed with tokens: %lld -> %lld", (long long)n0, (long long)n1);

    /* clone is deep and independent */
    EXPECT(hla_state_clone(s, &cl), HLA_OK, NULL, "state_clone");
    if (cl) {
        int64_t kst[3], vst[3];
        kst[0] = p.T * p.Hkv * p.dk;
        kst[1] = p.dk;
        kst[2] = 1;
        vst[0] = p.T * p.Hkv * p.dv;
        vst[1] = p.dv;
        vst[2] = 1;
        EXPECT(hla_state_tokens(cl, &tok), HLA_OK, NULL, "clone tokens");
        CHECK(tok == 3, "clone tokens = %lld", (long long)tok);
        EXPECT(hla_state_get_config(cl, &g), HLA_OK, NULL, "clone get_config");
        CHECK(cfg_equal(&g, &c), "clone configuration differs");
        /* advance the original twice; the clone must still be at token 3 */
        EXPECT(hla_state_step(s, pq(&p, 3), sst, pk(&p, 3), kst, pv(&p, 3), vst, o1, ost), HLA_OK, NULL, "step 3");
        EXPECT(hla_state_step(s, pq(&p, 4), sst, pk(&p, 4), kst, pv(&p, 4), vst, o1, ost), HLA_OK, NULL, "step 4");
        EXPECT(hla_state_step(cl, pq(&p, 3), sst, pk(&p, 3), kst, pv(&p, 3), vst, o2, ost), HLA_OK, NULL,
               "clone step 3");
        CHECK(rel_err(o2, HLA_FLOAT64, (int64_t[4]){0, 0, p.dv, 1}, 1, 1, p.H, p.dv, p.ref, p.T, 3) <= 1e-10,
              "clone diverged (not independent of the original)");
        /* reset: like new */
        EXPECT(hla_state_reset(s), HLA_OK, NULL, "state_reset");
        EXPECT(hla_state_tokens(s, &tok), HLA_OK, NULL, "tokens after reset");
        CHECK(tok == 0, "tokens after reset = %lld", (long long)tok);
        EXPECT(hla_state_create(&c, &s2), HLA_OK, NULL, "state_create");
        EXPECT(hla_state_step(s, pq(&p, 5), sst, pk(&p, 5), kst, pv(&p, 5), vst, o1, ost), HLA_OK, NULL,
               "step after reset");
        EXPECT(hla_state_step(s2, pq(&p, 5), sst, pk(&p, 5), kst, pv(&p, 5), vst, o3, ost), HLA_OK, NULL,
               "step of a new state");
        CHECK(memcmp(o1, o3, (size_t)(p.B * p.H * p.dv) * sizeof(double)) == 0,
              "reset state differs from a new state");
        /* the clone is unaffected by reset of the original */
        EXPECT(hla_state_tokens(cl, &tok), HLA_OK, NULL, "clone tokens after original reset");
        CHECK(tok == 4, "clone tokens = %lld, want 4", (long long)tok);
    }
    hla_state_destroy(cl);
    hla_state_destroy(s2);
    hla_state_destroy(s);
    free(o1);
    free(o2);
    free(o3);
    problem_free(&p);
}

/* ------------------------------------------------------------------------------------------ */
/* 3. numerics: every op x masked x normalize x decay x ridge x dtype                          */

static void numerics_case(int op, int dt, int masked, int normalize, double decay, double ridge)
{
    const int64_t T = 37, E = 5, TT = T + E;
    const int64_t splits[4] = {1, 8, 13, 36};
    hla_config c = make_cfg(op, dt, masked, normalize, decay, ridge, 2, 4, 2, 5, 3), cd;
    problem p;
    double tol = tol_of(dt), err;
    void *qa, *ka, *va, *out, *outE, *outF;
    double *od;
    hla_state *st[4] = {NULL, NULL, NULL, NULL};
    int path, i;
    int64_t t, tok, s3q[3], s3k[3], s3v[3], s3o[3], sE[4];

    set_ctx("%s %s %s norm=%d decay=%g ridge=%g", op_name(op), dt_name(dt), masked ? "masked" : "unmasked",
            normalize, decay, ridge);
    /* normalize: positive features (as feature maps give), so the denominators are well conditioned */
    problem_init(&p, &c, TT, normalize);

    /* the library's reference (float64) against the independent evaluation above */
    cd = c;
    cd.dtype = HLA_FLOAT64;
    od = xmalloc((size_t)p.no * sizeof(double));
    for (i = 0; i < p.no; i++) od[i] = NAN;
    EXPECT(hla_reference(&cd, TT, p.qd, NULL, p.kd, NULL, p.vd, NULL, od, NULL), HLA_OK, NULL, "reference f64");
    err = rel_err(od, HLA_FLOAT64, p.so, p.B, TT, p.H, p.dv, p.ref, TT, 0);
    CHECK(err <= 1e-10, "hla_reference(f64) vs index sums: rel err %.3g", err);
    free(od);
    if (dt == HLA_FLOAT32) {
        out = typed_nan(p.no, dt);
        EXPECT(hla_reference(&c, TT, p.q, NULL, p.k, NULL, p.v, NULL, out, NULL), HLA_OK, NULL, "reference f32");
        err = rel_err(out, dt, p.so, p.B, TT, p.H, p.dv, p.ref, TT, 0);
        CHECK(err <= tol, "hla_reference(f32) vs index sums: rel err %.3g", err);
        free(out);
    }

    /* forward of the first T tokens (contiguous copies, NULL strides) on every path, final state */
    qa = slice_copy(p.q, dt, p.B, TT, p.H, p.dk, 0, T);
    ka = slice_copy(p.k, dt, p.B, TT, p.Hkv, p.dk, 0, T);
    va = slice_copy(p.v, dt, p.B, TT, p.Hkv, p.dv, 0, T);
    out = typed_nan(p.B * T * p.H * p.dv, dt);
    contig4(E, p.H, p.dv, sE);
    outE = typed_nan(p.B * E * p.H * p.dv, dt);
    for (path = 0; path < 3; path++) {
        int64_t so[4];
        contig4(T, p.H, p.dv, so);
        if (!EXPECT(hla_state_create(&c, &st[path]), HLA_OK, NULL, "state_create")) goto done;
        for (i = 0; i < p.B * T * p.H * p.dv; i++) setv(out, dt, i, NAN);
        EXPECT(hla_forward(&c, T, path, qa, NULL, ka, NULL, va, NULL, out, NULL, NULL, st[path]), HLA_OK, NULL,
               "forward %s", path_name(path));
        err = rel_err(out, dt, so, p.B, T, p.H, p.dv, p.ref, TT, 0);
        CHECK(err <= tol, "forward %s vs reference: rel err %.3g", path_name(path), err);
        EXPECT(hla_state_tokens(st[path], &tok), HLA_OK, NULL, "tokens");
        CHECK(tok == T, "final state of forward %s has %lld tokens, want %lld", path_name(path), (long long)tok,
              (long long)T);
    }

    /* streaming: one step per token, reading the full [B,TT,H,D] buffers through strides */
    if (!EXPECT(hla_state_create(&c, &st[3]), HLA_OK, NULL, "state_create")) goto done;
    s3q[0] = TT * p.H * p.dk, s3q[1] = p.dk, s3q[2] = 1;
    s3k[0] = TT * p.Hkv * p.dk, s3k[1] = p.dk, s3k[2] = 1;
    s3v[0] = TT * p.Hkv * p.dv, s3v[1] = p.dv, s3v[2] = 1;
    s3o[0] = T * p.H * p.dv, s3o[1] = p.dv, s3o[2] = 1;
    for (i = 0; i < p.B * T * p.H * p.dv; i++) setv(out, dt, i, NAN);
    for (t = 0; t < T; t++) {
        hla_status rc = hla_state_step(st[3], pq(&p, t), s3q, pk(&p, t), s3k, pv(&p, t), s3v,
                                       at(out, dt, t * p.H * p.dv), s3o);
        if (rc != HLA_OK) {
            EXPECT(rc, HLA_OK, NULL, "step %lld", (long long)t);
            break;
        }
    }
    {
        int64_t so[4];
        contig4(T, p.H, p.dv, so);
        err = rel_err(out, dt, so, p.B, T, p.H, p.dv, p.ref, TT, 0);
        CHECK(err <= tol, "streaming steps vs reference: rel err %.3g", err);
    }
    EXPECT(hla_state_tokens(st[3], &tok), HLA_OK, NULL, "tokens");
    CHECK(tok == T, "streamed state has %lld tokens", (long long)tok);

    /* every final state (chunked, serial, scan, streamed) continues the sequence identically */
    for (i = 0; i < 4; i++) {
        static const char *nm[4] = {"chunked", "serial", "scan", "streamed"};
        for (t = 0; t < p.B * E * p.H * p.dv; t++) setv(outE, dt, t, NAN);
        EXPECT(hla_forward(&c, E, (i + 1) % 3, pq(&p, T), p.sq, pk(&p, T), p.sk, pv(&p, T), p.sv, outE, NULL,
                           st[i], NULL),
               HLA_OK, NULL, "forward continuing from the %s final state", nm[i]);
        err = rel_err(outE, dt, sE, p.B, E, p.H, p.dv, p.ref, TT, T);
        CHECK(err <= tol, "continuation from the %s final state: rel err %.3g", nm[i], err);
    }
    for (i = 0; i < 4; i++) {
        hla_state_destroy(st[i]);
        st[i] = NULL;
    }

    /* split forward continued through a state (same handle as initial and final; serialized; cloned) */
    outF = typed_nan(p.no, dt);
    for (i = 0; i < 4; i++) {
        const int64_t a = splits[i];
        const int p1 = i % 3, p2 = (i + 1) % 3;
        hla_state *s1 = NULL, *s2 = NULL;
        for (t = 0; t < p.no; t++) setv(outF, dt, t, NAN);
        if (!EXPECT(hla_state_create(&c, &s1), HLA_OK, NULL, "state_create")) break;
        EXPECT(hla_forward(&c, a, p1, pq(&p, 0), p.sq, pk(&p, 0), p.sk, pv(&p, 0), p.sv, outF, p.so, NULL, s1),
               HLA_OK, NULL, "forward [0,%lld) %s", (long long)a, path_name(p1));
        if (i == 2) { /* through serialize -> deserialize */
            size_t need = 0, w = 0;
            unsigned char *buf;
            EXPECT(hla_state_serialize(s1, NULL, 0, &need), HLA_OK, NULL, "serialize size query");
            buf = xmalloc(need);
            EXPECT(hla_state_serialize(s1, buf, need, &w), HLA_OK, NULL, "serialize");
            CHECK(w == need, "serialize wrote %zu of %zu", w, need);
            EXPECT(hla_state_deserialize(buf, w, &s2), HLA_OK, NULL, "deserialize");
            free(buf);
        } else if (i == 3) {
            EXPECT(hla_state_clone(s1, &s2), HLA_OK, NULL, "clone");
        }
        if (s2) {
            hla_state_destroy(s1);
            s1 = s2;
        }
        EXPECT(hla_forward(&c, TT - a, p2, pq(&p, a), p.sq, pk(&p, a), p.sk, pv(&p, a), p.sv,
                           at(outF, dt, a * p.H * p.dv), p.so, s1, s1),
               HLA_OK, NULL, "forward [%lld,%lld) %s from the state", (long long)a, (long long)TT, path_name(p2));
        err = rel_err(outF, dt, p.so, p.B, TT, p.H, p.dv, p.ref, TT, 0);
        CHECK(err <= tol, "split at %lld (%s then %s%s): rel err %.3g", (long long)a, path_name(p1), path_name(p2),
              i == 2 ? ", serialized" : i == 3 ? ", cloned" : "", err);
        EXPECT(hla_state_tokens(s1, &tok), HLA_OK, NULL, "tokens");
        CHECK(tok == TT, "state after split forward has %lld tokens, want %lld", (long long)tok, (long long)TT);
        hla_state_destroy(s1);
    }

    /* associative scan: segments [0,7) [7,17) [17,26), combined both ways, carry-in for [26,TT) */
    {
        const int64_t b0 = 0, b1 = 7, b2 = 17, b3 = 26, R = TT - b3;
        hla_segment *A = NULL, *Bs = NULL, *C = NULL, *AB = NULL, *BC = NULL, *ABC1 = NULL, *ABC2 = NULL,
                    *ABC3 = NULL, *W = NULL, *AA = NULL;
        int64_t len = -1, nb = -1, sR[4];
        hla_config g;
        void *outR = typed_nan(p.B * R * p.H * p.dv, dt);
        contig4(R, p.H, p.dv, sR);
        EXPECT(hla_summarize(&c, b1 - b0, pq(&p, b0), p.sq, pk(&p, b0), p.sk, pv(&p, b0), p.sv, &A), HLA_OK, NULL,
               "summarize A");
        EXPECT(hla_summarize(&c, b2 - b1, pq(&p, b1), p.sq, pk(&p, b1), p.sk, pv(&p, b1), p.sv, &Bs), HLA_OK, NULL,
               "summarize B");
        EXPECT(hla_summarize(&c, b3 - b2, pq(&p, b2), p.sq, pk(&p, b2), p.sk, pv(&p, b2), p.sv, &C), HLA_OK, NULL,
               "summarize C");
        EXPECT(hla_summarize(&c, b3, pq(&p, 0), p.sq, pk(&p, 0), p.sk, pv(&p, 0), p.sv, &W), HLA_OK, NULL,
               "summarize whole prefix");
        if (A && Bs && C && W) {
            EXPECT(hla_segment_combine(A, Bs, &AB), HLA_OK, NULL, "combine(A,B)");
            EXPECT(hla_segment_combine(AB, C, &ABC1), HLA_OK, NULL, "combine(AB,C)");
            EXPECT(hla_segment_combine(Bs, C, &BC), HLA_OK, NULL, "combine(B,C)");
            EXPECT(hla_segment_combine(A, BC, &ABC2), HLA_OK, NULL, "combine(A,BC)");
            EXPECT(hla_segment_combine(A, A, &AA), HLA_OK, NULL, "combine(A,A) (same handle twice)");
            EXPECT(hla_segment_length(A, &len), HLA_OK, NULL, "segment_length");
            CHECK(len == b1 - b0, "length(A) = %lld", (long long)len);
            if (AA) {
                EXPECT(hla_segment_length(AA, &len), HLA_OK, NULL, "segment_length");
                CHECK(len == 2 * (b1 - b0), "length(A.A) = %lld", (long long)len);
            }
            EXPECT(hla_segment_nbytes(A, &nb), HLA_OK, NULL, "segment_nbytes");
            CHECK(nb > 0, "segment_nbytes = %lld", (long long)nb);
            EXPECT(hla_segment_get_config(A, &g), HLA_OK, NULL, "segment_get_config");
            CHECK(cfg_equal(&g, &c), "segment configuration differs from the summarize configuration");
            if (ABC1) {
                size_t need = 0, w = 0;
                unsigned char *buf;
                EXPECT(hla_segment_serialize(ABC1, NULL, 0, &need), HLA_OK, NULL, "segment_serialize size query");
                buf = xmalloc(need);
                EXPECT(hla_segment_serialize(ABC1, buf, need, &w), HLA_OK, NULL, "segment_serialize");
                EXPECT(hla_segment_deserialize(buf, w, &ABC3), HLA_OK, NULL, "segment_deserialize");
                free(buf);
                EXPECT(hla_segment_get_config(ABC1, &g), HLA_OK, NULL, "segment_get_config");
                CHECK(cfg_equal(&g, &c), "combined segment configuration differs");
            }
            {
                hla_segment *segs[4];
                static const char *nm[4] = {"(A.B).C", "A.(B.C)", "deserialized (A.B).C", "whole prefix"};
                int j;
                segs[0] = ABC1, segs[1] = ABC2, segs[2] = ABC3, segs[3] = W;
                for (j = 0; j < 4; j++) {
                    hla_state *s = NULL;
                    if (!segs[j]) continue;
                    EXPECT(hla_segment_length(segs[j], &len), HLA_OK, NULL, "segment_length");
                    CHECK(len == b3, "length(%s) = %lld, want %lld", nm[j], (long long)len, (long long)b3);
                    if (!EXPECT(hla_state_from_segment(segs[j], &s), HLA_OK, NULL, "state_from_segment(%s)", nm[j]))
                        continue;
                    EXPECT(hla_state_tokens(s, &tok), HLA_OK, NULL, "tokens");
                    CHECK(tok == b3, "state from %s has %lld tokens", nm[j], (long long)tok);
                    EXPECT(hla_state_get_config(s, &g), HLA_OK, NULL, "get_config");
                    CHECK(cfg_equal(&g, &c), "state from segment: configuration differs");
                    for (t = 0; t < p.B * R * p.H * p.dv; t++) setv(outR, dt, t, NAN);
                    EXPECT(hla_forward(&c, R, j % 3, pq(&p, b3), p.sq, pk(&p, b3), p.sk, pv(&p, b3), p.sv, outR,
                                       NULL, s, NULL),
                           HLA_OK, NULL, "forward of the rest from %s", nm[j]);
                    err = rel_err(outR, dt, sR, p.B, R, p.H, p.dv, p.ref, TT, b3);
                    CHECK(err <= tol, "carry-in from %s, forward %s of the rest: rel err %.3g", nm[j],
                          path_name(j % 3), err);
                    hla_state_destroy(s);
                }
            }
            if (AB) { /* carry-in A.B for [17, TT) */
                hla_state *s = NULL;
                void *o2 = typed_nan(p.B * (TT - b2) * p.H * p.dv, dt);
                int64_t s2[4];
                contig4(TT - b2, p.H, p.dv, s2);
                if (EXPECT(hla_state_from_segment(AB, &s), HLA_OK, NULL, "state_from_segment(A.B)")) {
                    EXPECT(hla_forward(&c, TT - b2, HLA_PATH_SCAN, pq(&p, b2), p.sq, pk(&p, b2), p.sk, pv(&p, b2),
                                       p.sv, o2, NULL, s, NULL),
                           HLA_OK, NULL, "forward from A.B");
                    err = rel_err(o2, dt, s2, p.B, TT - b2, p.H, p.dv, p.ref, TT, b2);
                    CHECK(err <= tol, "carry-in A.B, scan forward of [17,%lld): rel err %.3g", (long long)TT, err);
                }
                hla_state_destroy(s);
                free(o2);
            }
        }
        hla_segment_destroy(A);
        hla_segment_destroy(Bs);
        hla_segment_destroy(C);
        hla_segment_destroy(AB);
        hla_segment_destroy(BC);
        hla_segment_destroy(ABC1);
        hla_segment_destroy(ABC2);
        hla_segment_destroy(ABC3);
        hla_segment_destroy(W);
        hla_segment_destroy(AA);
        free(outR);
    }
    free(outF);
done:
    for (i = 0; i < 4; i++) hla_state_destroy(st[i]);
    free(qa);
    free(ka);
    free(va);
    free(out);
    free(outE);
    problem_free(&p);
}

static void test_numerics(void)
{
    int op, dt, masked, norm, di, ri;
    static const double decays[2] = {1.0, 0.9};
    static const double ridges[2] = {0.0, 0.5};
    for (op = 0; op < 3; op++)
        for (dt = 0; dt < 2; dt++)
            for (masked = 1; masked >= 0; masked--)
                for (norm = 0; norm < 2; norm++)
                    for (di = 0; di < 2; di++)
                        for (ri = 0; ri < (op == HLA_OP_HLA2 ? 2 : 1); ri++)
                            numerics_case(op, dt, masked, norm, decays[di], ridges[ri]);
}

/* chunk sizes (automatic, 1, not dividing T, = T, > T) on the chunked and scan paths; T = 1 */
static void test_chunk_sizes(void)
{
    static const int64_t chunks[] = {0, 1, 3, 8, 37, 64, 1000000};
    int op, dt, ci, path;
    for (op = 0; op < 3; op++)
        for (dt = 0; dt < 2; dt++) {
            hla_config c = make_cfg(op, dt, 1, 0, 0.9, op == HLA_OP_HLA2 ? 0.5 : 0.0, 2, 4, 2, 5, 3);
            problem p;
            void *out;
            set_ctx("chunk sizes %s %s", op_name(op), dt_name(dt));
            problem_init(&p, &c, 37, 0);
            out = typed_nan(p.no, dt);
            for (ci = 0; ci < (int)(sizeof chunks / sizeof chunks[0]); ci++)
                for (path = 0; path < 3; path += 2) {
                    double err;
                    int64_t i;
                    c.chunk_size = chunks[ci];
                    for (i = 0; i < p.no; i++) setv(out, dt, i, NAN);
                    if (!EXPECT(hla_forward(&c, p.T, path, p.q, NULL, p.k, NULL, p.v, NULL, out, NULL, NULL, NULL),
                                HLA_OK, NULL, "forward %s chunk_size %lld", path_name(path), (long long)chunks[ci]))
                        continue;
                    err = rel_err(out, dt, p.so, p.B, p.T, p.H, p.dv, p.ref, p.T, 0);
                    CHECK(err <= tol_of(dt), "forward %s chunk_size %lld: rel err %.3g", path_name(path),
                          (long long)chunks[ci], err);
                }
            c.chunk_size = 8;
            /* T = 1 on every path, and a one-token segment */
            for (path = 0; path < 3; path++) {
                double err;
                int64_t so1[4];
                contig4(1, p.H, p.dv, so1);
                EXPECT(hla_forward(&c, 1, path, p.q, p.sq, p.k, p.sk, p.v, p.sv, out, so1, NULL, NULL), HLA_OK, NULL,
                       "forward T=1 %s", path_name(path));
                err = rel_err(out, dt, so1, p.B, 1, p.H, p.dv, p.ref, p.T, 0);
                CHECK(err <= tol_of(dt), "forward T=1 %s: rel err %.3g", path_name(path), err);
            }
            {
                hla_segment *s1 = NULL;
                hla_state *st = NULL;
                EXPECT(hla_summarize(&c, 1, p.q, p.sq, p.k, p.sk, p.v, p.sv, &s1), HLA_OK, NULL, "summarize T=1");
                if (s1 && EXPECT(hla_state_from_segment(s1, &st), HLA_OK, NULL, "state_from_segment(T=1)")) {
                    double err;
                    EXPECT(hla_forward(&c, p.T - 1, HLA_PATH_CHUNKED, pq(&p, 1), p.sq, pk(&p, 1), p.sk, pv(&p, 1),
                                       p.sv, out, p.so, st, NULL),
                           HLA_OK, NULL, "forward after a one-token segment");
                    err = rel_err(out, dt, p.so, p.B, p.T - 1, p.H, p.dv, p.ref, p.T, 1);
                    CHECK(err <= tol_of(dt), "one-token segment carry-in: rel err %.3g", err);
                }
                hla_state_destroy(st);
                hla_segment_destroy(s1);
            }
            free(out);
            problem_free(&p);
        }
}

/* ------------------------------------------------------------------------------------------ */
/* 4. strided inputs: [B,H,T,D] layout, fused QKV buffer, negative strides, zero strides        */

static void test_strided_case(int op, int dt, int masked, int normalize)
{
    const int64_t T = 37;
    hla_config c = make_cfg(op, dt, masked, normalize, 0.9, op == HLA_OP_HLA2 ? 0.5 : 0.0, 2, 4, 2, 5, 3);
    problem p;
    double tol = tol_of(dt), err;
    int64_t B, H, Hkv, dk, dv, b, t, h, d, i, path;
    set_ctx("strided %s %s %s norm=%d", op_name(op), dt_name(dt), masked ? "masked" : "unmasked", normalize);
    problem_init(&p, &c, T, normalize);
    B = p.B, H = p.H, Hkv = p.Hkv, dk = p.dk, dv = p.dv;

    /* (a) [B,H,T,D] storage */
    {
        void *qb = xmalloc((size_t)p.nq * esize(dt)), *kb = xmalloc((size_t)p.nk * esize(dt));
        void *vb = xmalloc((size_t)p.nv * esize(dt)), *ob = typed_nan(p.no, dt);
        int64_t sq[4], sk[4], sv[4], so[4], s3q[3], s3k[3], s3v[3], s3o[3];
        hla_state *st = NULL;
        hla_segment *seg = NULL;
        sq[0] = H * T * dk, sq[1] = dk, sq[2] = T * dk, sq[3] = 1;
        sk[0] = Hkv * T * dk, sk[1] = dk, sk[2] = T * dk, sk[3] = 1;
        sv[0] = Hkv * T * dv, sv[1] = dv, sv[2] = T * dv, sv[3] = 1;
        so[0] = H * T * dv, so[1] = dv, so[2] = T * dv, so[3] = 1;
        for (b = 0; b < B; b++)
            for (t = 0; t < T; t++) {
                for (h = 0; h < H; h++)
                    for (d = 0; d < dk; d++)
                        setv(qb, dt, b * sq[0] + t * sq[1] + h * sq[2] + d, p.qd[((b * T + t) * H + h) * dk + d]);
                for (h = 0; h < Hkv; h++) {
                    for (d = 0; d < dk; d++)
                        setv(kb, dt, b * sk[0] + t * sk[1] + h * sk[2] + d, p.kd[((b * T + t) * Hkv + h) * dk + d]);
                    for (d = 0; d < dv; d++)
                        setv(vb, dt, b * sv[0] + t * sv[1] + h * sv[2] + d, p.vd[((b * T + t) * Hkv + h) * dv + d]);
                }
            }
        for (path = 0; path < 3; path++) {
            for (i = 0; i < p.no; i++) setv(ob, dt, i, NAN);
            EXPECT(hla_forward(&c, T, (int32_t)path, qb, sq, kb, sk, vb, sv, ob, so, NULL, NULL), HLA_OK, NULL,
                   "forward [B,H,T,D] %s", path_name((int)path));
            err = rel_err(ob, dt, so, B, T, H, dv, p.ref, T, 0);
            CHECK(err <= tol, "forward %s with [B,H,T,D] strides: rel err %.3g", path_name((int)path), err);
        }
        for (i = 0; i < p.no; i++) setv(ob, dt, i, NAN);
        EXPECT(hla_reference(&c, T, qb, sq, kb, sk, vb, sv, ob, so), HLA_OK, NULL, "reference [B,H,T,D]");
        err = rel_err(ob, dt, so, B, T, H, dv, p.ref, T, 0);
        CHECK(err <= tol, "reference with [B,H,T,D] strides: rel err %.3g", err);
        /* streaming with [B,H,D] step strides into the [B,H,T,D] buffers */
        s3q[0] = sq[0], s3q[1] = sq[2], s3q[2] = 1;
        s3k[0] = sk[0], s3k[1] = sk[2], s3k[2] = 1;
        s3v[0] = sv[0], s3v[1] = sv[2], s3v[2] = 1;
        s3o[0] = so[0], s3o[1] = so[2], s3o[2] = 1;
        for (i = 0; i < p.no; i++) setv(ob, dt, i, NAN);
        if (EXPECT(hla_state_create(&c, &st), HLA_OK, NULL, "state_create")) {
            for (t = 0; t < T; t++)
                if (hla_state_step(st, at(qb, dt, t * dk), s3q, at(kb, dt, t * dk), s3k, at(vb, dt, t * dv), s3v,
                                   at(ob, dt, t * dv), s3o) != HLA_OK) {
                    CHECK(0, "strided step %lld failed: %s", (long long)t, hla_last_error());
                    break;
                }
            err = rel_err(ob, dt, so, B, T, H, dv, p.ref, T, 0);
            CHECK(err <= tol, "streaming with [B,H,D] step strides: rel err %.3g", err);
        }
        hla_state_destroy(st);
        st = NULL;
        /* summarize the first 20 tokens through these strides, forward the rest from it */
        if (EXPECT(hla_summarize(&c, 20, qb, sq, kb, sk, vb, sv, &seg), HLA_OK, NULL, "summarize [B,H,T,D]") &&
            EXPECT(hla_state_from_segment(seg, &st), HLA_OK, NULL, "state_from_segment")) {
            for (i = 0; i < p.no; i++) setv(ob, dt, i, NAN);
            EXPECT(hla_forward(&c, T - 20, HLA_PATH_CHUNKED, at(qb, dt, 20 * dk), sq, at(kb, dt, 20 * dk), sk,
                               at(vb, dt, 20 * dv), sv, at(ob, dt, 20 * dv), so, st, NULL),
                   HLA_OK, NULL, "forward rest [B,H,T,D]");
            err = rel_err(at(ob, dt, 20 * dv), dt, so, B, T - 20, H, dv, p.ref, T, 20);
            CHECK(err <= tol, "strided summarize + carry-in: rel err %.3g", err);
        }
        hla_state_destroy(st);
        hla_segment_destroy(seg);
        free(qb);
        free(kb);
        free(vb);
        free(ob);
    }

    /* (b) fused QKV rows [B,T,(H*dk | Hkv*dk | Hkv*dv)], output with padding that must stay untouched */
    {
        const int64_t W = H * dk + Hkv * dk + Hkv * dv, P = dv + 2;
        void *f = xmalloc((size_t)(B * T * W) * esize(dt)), *ob = xmalloc((size_t)(B * T * H * P) * esize(dt));
        int64_t sq[4], sk[4], sv[4], so[4];
        int pad_ok = 1;
        sq[0] = T * W, sq[1] = W, sq[2] = dk, sq[3] = 1;
        sk[0] = T * W, sk[1] = W, sk[2] = dk, sk[3] = 1;
        sv[0] = T * W, sv[1] = W, sv[2] = dv, sv[3] = 1;
        so[0] = T * H * P, so[1] = H * P, so[2] = P, so[3] = 1;
        for (b = 0; b < B; b++)
            for (t = 0; t < T; t++) {
                for (h = 0; h < H; h++)
                    for (d = 0; d < dk; d++)
                        setv(f, dt, (b * T + t) * W + h * dk + d, p.qd[((b * T + t) * H + h) * dk + d]);
                for (h = 0; h < Hkv; h++) {
                    for (d = 0; d < dk; d++)
                        setv(f, dt, (b * T + t) * W + H * dk + h * dk + d, p.kd[((b * T + t) * Hkv + h) * dk + d]);
                    for (d = 0; d < dv; d++)
                        setv(f, dt, (b * T + t) * W + H * dk + Hkv * dk + h * dv + d,
                             p.vd[((b * T + t) * Hkv + h) * dv + d]);
                }
            }
        for (path = 0; path < 3; path++) {
            for (i = 0; i < B * T * H * P; i++) setv(ob, dt, i, 12345.0);
            for (b = 0; b < B; b++)
                for (t = 0; t < T; t++)
                    for (h = 0; h < H; h++)
                        for (d = 0; d < dv; d++) setv(ob, dt, b * so[0] + t * so[1] + h * so[2] + d, NAN);
            EXPECT(hla_forward(&c, T, (int32_t)path, f, sq, at(f, dt, H * dk), sk, at(f, dt, H * dk + Hkv * dk), sv,
                               ob, so, NULL, NULL),
                   HLA_OK, NULL, "forward fused QKV %s", path_name((int)path));
            err = rel_err(ob, dt, so, B, T, H, dv, p.ref, T, 0);
            CHECK(err <= tol, "forward %s from a fused QKV buffer: rel err %.3g", path_name((int)path), err);
            for (b = 0; b < B; b++)
                for (t = 0; t < T; t++)
                    for (h = 0; h < H; h++)
                        for (d = dv; d < P; d++)
                            if (getv(ob, dt, b * so[0] + t * so[1] + h * so[2] + d) != 12345.0) pad_ok = 0;
        }
        CHECK(pad_ok, "forward wrote outside the strided output (padding changed)");
        free(f);
        free(ob);
    }

    /* (c) negative strides in every dimension (storage reversed), for forward, reference, step */
    {
        void *qr = xmalloc((size_t)p.nq * esize(dt)), *kr = xmalloc((size_t)p.nk * esize(dt));
        void *vr = xmalloc((size_t)p.nv * esize(dt)), *orr = typed_nan(p.no, dt);
        int64_t sq[4], sk[4], sv[4], so[4], s3q[3], s3k[3], s3v[3], s3o[3];
        hla_state *st = NULL;
        for (i = 0; i < p.nq; i++) setv(qr, dt, p.nq - 1 - i, p.qd[i]);
        for (i = 0; i < p.nk; i++) setv(kr, dt, p.nk - 1 - i, p.kd[i]);
        for (i = 0; i < p.nv; i++) setv(vr, dt, p.nv - 1 - i, p.vd[i]);
        for (i = 0; i < 4; i++) sq[i] = -p.sq[i], sk[i] = -p.sk[i], sv[i] = -p.sv[i], so[i] = -p.so[i];
        for (path = 0; path < 3; path++) {
            for (i = 0; i < p.no; i++) setv(orr, dt, i, NAN);
            EXPECT(hla_forward(&c, T, (int32_t)path, at(qr, dt, p.nq - 1), sq, at(kr, dt, p.nk - 1), sk,
                               at(vr, dt, p.nv - 1), sv, at(orr, dt, p.no - 1), so, NULL, NULL),
                   HLA_OK, NULL, "forward negative strides %s", path_name((int)path));
            err = rel_err(at(orr, dt, p.no - 1), dt, so, B, T, H, dv, p.ref, T, 0);
            CHECK(err <= tol, "forward %s with negative strides: rel err %.3g", path_name((int)path), err);
        }
        for (i = 0; i < p.no; i++) setv(orr, dt, i, NAN);
        EXPECT(hla_reference(&c, T, at(qr, dt, p.nq - 1), sq, at(kr, dt, p.nk - 1), sk, at(vr, dt, p.nv - 1), sv,
                             at(orr, dt, p.no - 1), so),
               HLA_OK, NULL, "reference negative strides");
        err = rel_err(at(orr, dt, p.no - 1), dt, so, B, T, H, dv, p.ref, T, 0);
        CHECK(err <= tol, "reference with negative strides: rel err %.3g", err);
        s3q[0] = sq[0], s3q[1] = sq[2], s3q[2] = sq[3];
        s3k[0] = sk[0], s3k[1] = sk[2], s3k[2] = sk[3];
        s3v[0] = sv[0], s3v[1] = sv[2], s3v[2] = sv[3];
        s3o[0] = so[0], s3o[1] = so[2], s3o[2] = so[3];
        for (i = 0; i < p.no; i++) setv(orr, dt, i, NAN);
        if (EXPECT(hla_state_create(&c, &st), HLA_OK, NULL, "state_create")) {
            for (t = 0; t < T; t++)
                if (hla_state_step(st, at(qr, dt, p.nq - 1 - t * H * dk), s3q, at(kr, dt, p.nk - 1 - t * Hkv * dk),
                                   s3k, at(vr, dt, p.nv - 1 - t * Hkv * dv), s3v, at(orr, dt, p.no - 1 - t * H * dv),
                                   s3o) != HLA_OK) {
                    CHECK(0, "negative-stride step %lld failed: %s", (long long)t, hla_last_error());
                    break;
                }
            err = rel_err(at(orr, dt, p.no - 1), dt, so, B, T, H, dv, p.ref, T, 0);
            CHECK(err <= tol, "streaming with negative step strides: rel err %.3g", err);
        }
        hla_state_destroy(st);
        free(qr);
        free(kr);
        free(vr);
        free(orr);
    }

    /* (d) zero strides: keys and values broadcast over the batch (batch stride 0) */
    {
        problem p2;
        hla_config c2 = c;
        void *o2;
        int64_t sk0[4], sv0[4];
        double *r2;
        /* same q; k, v of batch 0 repeated in batch 1 for the reference */
        problem_init(&p2, &c2, T, normalize);
        for (t = 0; t < T * Hkv * dk; t++) p2.kd[T * Hkv * dk + t] = p2.kd[t];
        for (t = 0; t < T * Hkv * dv; t++) p2.vd[T * Hkv * dv + t] = p2.vd[t];
        r2 = xmalloc((size_t)p2.no * sizeof(double));
        if (naive_ref(&c2, T, p2.qd, p2.kd, p2.vd, r2) != 0) {
            fprintf(stderr, "test_abi: out of memory\n");
            exit(2);
        }
        o2 = typed_nan(p2.no, dt);
        sk0[0] = 0, sk0[1] = Hkv * dk, sk0[2] = dk, sk0[3] = 1;
        sv0[0] = 0, sv0[1] = Hkv * dv, sv0[2] = dv, sv0[3] = 1;
        for (path = 0; path < 3; path++) {
            for (i = 0; i < p2.no; i++) setv(o2, dt, i, NAN);
            EXPECT(hla_forward(&c2, T, (int32_t)path, p2.q, NULL, p2.k, sk0, p2.v, sv0, o2, NULL, NULL, NULL),
                   HLA_OK, NULL, "forward zero batch stride %s", path_name((int)path));
            err = rel_err(o2, dt, p2.so, B, T, H, dv, r2, T, 0);
            CHECK(err <= tol, "forward %s with k,v batch stride 0: rel err %.3g", path_name((int)path), err);
        }
        free(r2);
        free(o2);
        problem_free(&p2);
    }
    problem_free(&p);
}

static void test_strided(void)
{
    int op, dt;
    for (op = 0; op < 3; op++)
        for (dt = 0; dt < 2; dt++) {
            test_strided_case(op, dt, 1, 0);
            test_strided_case(op, dt, 0, 1);
        }
}

/* ------------------------------------------------------------------------------------------ */
/* 5. bad input                                                                                */

#define POOL_N (1 << 16)
static double g_pool_d[POOL_N];
static float g_pool_f[POOL_N];
static double g_pool_o[POOL_N];

static void *pool_for(int dt) { return dt == HLA_FLOAT32 ? (void *)g_pool_f : (void *)g_pool_d; }

static hla_config small_cfg(int op, int dt)
{
    hla_config c = make_cfg(op, dt, 1, 0, 0.9, 0.0, 1, 2, 1, 3, 2);
    return c;
}

static void test_null_pointers(void)
{
    hla_config c = small_cfg(HLA_OP_HLA2, HLA_FLOAT64), g;
    void *P = g_pool_d, *O = g_pool_o;
    hla_state *s = NULL, *r = NULL;
    hla_segment *seg = NULL, *rs = NULL;
    unsigned char buf[64];
    size_t w = 0;
    int64_t n = 0;
    set_ctx("null pointers");
    if (!EXPECT(hla_state_create(&c, &s), HLA_OK, NULL, "state_create") ||
        !EXPECT(hla_summarize(&c, 3, P, NULL, P, NULL, P, NULL, &seg), HLA_OK, NULL, "summarize")) {
        hla_state_destroy(s);
        hla_segment_destroy(seg);
        return;
    }
    EXPECT(hla_config_init(NULL), HLA_ERR_NULL_POINTER, "cfg|config", "config_init(NULL)");
    EXPECT(hla_config_validate(NULL), HLA_ERR_NULL_POINTER, "cfg|config", "config_validate(NULL)");
    r = NULL;
    EXPECT(hla_state_create(NULL, &r), HLA_ERR_NULL_POINTER, "cfg|config", "state_create(cfg=NULL)");
    CHECK(r == NULL, "state_create failed but set *result");
    EXPECT(hla_state_create(&c, NULL), HLA_ERR_NULL_POINTER, "result", "state_create(result=NULL)");
    EXPECT(hla_state_reset(NULL), HLA_ERR_NULL_POINTER, "state", "state_reset(NULL)");
    r = NULL;
    EXPECT(hla_state_clone(NULL, &r), HLA_ERR_NULL_POINTER, "state", "state_clone(state=NULL)");
    CHECK(r == NULL, "state_clone failed but set *result");
    EXPECT(hla_state_clone(s, NULL), HLA_ERR_NULL_POINTER, "result", "state_clone(result=NULL)");
    EXPECT(hla_state_get_config(NULL, &g), HLA_ERR_NULL_POINTER, "state", "state_get_config(state=NULL)");
    EXPECT(hla_state_get_config(s, NULL), HLA_ERR_NULL_POINTER, "result", "state_get_config(result=NULL)");
    EXPECT(hla_state_nbytes(NULL, &n), HLA_ERR_NULL_POINTER, "state", "state_nbytes(state=NULL)");
    EXPECT(hla_state_nbytes(s, NULL), HLA_ERR_NULL_POINTER, "result", "state_nbytes(result=NULL)");
    EXPECT(hla_state_tokens(NULL, &n), HLA_ERR_NULL_POINTER, "state", "state_tokens(state=NULL)");
    EXPECT(hla_state_tokens(s, NULL), HLA_ERR_NULL_POINTER, "result", "state_tokens(result=NULL)");
    EXPECT(hla_state_serialize(NULL, buf, sizeof buf, &w), HLA_ERR_NULL_POINTER, "state",
           "state_serialize(state=NULL)");
    EXPECT(hla_state_serialize(s, NULL, 16, &w), HLA_ERR_NULL_POINTER, "buffer",
           "state_serialize(buffer=NULL, capacity=16)");
    EXPECT(hla_state_serialize(s, buf, sizeof buf, NULL), HLA_ERR_NULL_POINTER, "written",
           "state_serialize(written=NULL)");
    EXPECT(hla_state_serialize(s, NULL, 0, NULL), HLA_ERR_NULL_POINTER, "written",
           "state_serialize(NULL, 0, written=NULL)");
    r = NULL;
    EXPECT(hla_state_deserialize(NULL, 16, &r), HLA_ERR_NULL_POINTER, "buffer", "state_deserialize(buffer=NULL)");
    CHECK(r == NULL, "state_deserialize failed but set *result");
    EXPECT(hla_state_deserialize(buf, sizeof buf, NULL), HLA_ERR_NULL_POINTER, "result",
           "state_deserialize(result=NULL)");
    {
        hla_status st0 = hla_state_deserialize(NULL, 0, &r);
        CHECK((st0 == HLA_ERR_NULL_POINTER || st0 == HLA_ERR_CORRUPT) && r == NULL,
              "state_deserialize(NULL, 0) = %s, want NULL_POINTER or CORRUPT", status_name(st0));
    }
    /* step */
    EXPECT(hla_state_step(NULL, P, NULL, P, NULL, P, NULL, O, NULL), HLA_ERR_NULL_POINTER, "state",
           "state_step(state=NULL)");
    EXPECT(hla_state_step(s, NULL, NULL, P, NULL, P, NULL, O, NULL), HLA_ERR_NULL_POINTER, "q|quer",
           "state_step(q=NULL)");
    EXPECT(hla_state_step(s, P, NULL, NULL, NULL, P, NULL, O, NULL), HLA_ERR_NULL_POINTER, "k|key",
           "state_step(k=NULL)");
    EXPECT(hla_state_step(s, P, NULL, P, NULL, NULL, NULL, O, NULL), HLA_ERR_NULL_POINTER, "v|val",
           "state_step(v=NULL)");
    EXPECT(hla_state_step(s, P, NULL, P, NULL, P, NULL, NULL, NULL), HLA_ERR_NULL_POINTER, "out",
           "state_step(out=NULL)");
    /* forward */
    EXPECT(hla_forward(NULL, 3, 0, P, NULL, P, NULL, P, NULL, O, NULL, NULL, NULL), HLA_ERR_NULL_POINTER,
           "cfg|config", "forward(cfg=NULL)");
    EXPECT(hla_forward(&c, 3, 0, NULL, NULL, P, NULL, P, NULL, O, NULL, NULL, NULL), HLA_ERR_NULL_POINTER, "q|quer",
           "forward(q=NULL)");
    EXPECT(hla_forward(&c, 3, 0, P, NULL, NULL, NULL, P, NULL, O, NULL, NULL, NULL), HLA_ERR_NULL_POINTER, "k|key",
           "forward(k=NULL)");
    EXPECT(hla_forward(&c, 3, 0, P, NULL, P, NULL, NULL, NULL, O, NULL, NULL, NULL), HLA_ERR_NULL_POINTER, "v|val",
           "forward(v=NULL)");
    EXPECT(hla_forward(&c, 3, 0, P, NULL, P, NULL, P, NULL, NULL, NULL, NULL, NULL), HLA_ERR_NULL_POINTER, "out",
           "forward(out=NULL)");
    /* reference */
    EXPECT(hla_reference(NULL, 3, P, NULL, P, NULL, P, NULL, O, NULL), HLA_ERR_NULL_POINTER, "cfg|config",
           "reference(cfg=NULL)");
    EXPECT(hla_reference(&c, 3, NULL, NULL, P, NULL, P, NULL, O, NULL), HLA_ERR_NULL_POINTER, "q|quer",
           "reference(q=NULL)");
    EXPECT(hla_reference(&c, 3, P, NULL, NULL, NULL, P, NULL, O, NULL), HLA_ERR_NULL_POINTER, "k|key",
           "reference(k=NULL)");
    EXPECT(hla_reference(&c, 3, P, NULL, P, NULL, NULL, NULL, O, NULL), HLA_ERR_NULL_POINTER, "v|val",
           "reference(v=NULL)");
    EXPECT(hla_reference(&c, 3, P, NULL, P, NULL, P, NULL, NULL, NULL), HLA_ERR_NULL_POINTER, "out",
           "reference(out=NULL)");
    /* summarize */
    rs = NULL;
    EXPECT(hla_summarize(NULL, 3, P, NULL, P, NULL, P, NULL, &rs), HLA_ERR_NULL_POINTER, "cfg|config",
           "summarize(cfg=NULL)");
    EXPECT(hla_summarize(&c, 3, NULL, NULL, P, NULL, P, NULL, &rs), HLA_ERR_NULL_POINTER, "q|quer",
           "summarize(q=NULL)");
    EXPECT(hla_summarize(&c, 3, P, NULL, NULL, NULL, P, NULL, &rs), HLA_ERR_NULL_POINTER, "k|key",
           "summarize(k=NULL)");
    EXPECT(hla_summarize(&c, 3, P, NULL, P, NULL, NULL, NULL, &rs), HLA_ERR_NULL_POINTER, "v|val",
           "summarize(v=NULL)");
    EXPECT(hla_summarize(&c, 3, P, NULL, P, NULL, P, NULL, NULL), HLA_ERR_NULL_POINTER, "result",
           "summarize(result=NULL)");
    CHECK(rs == NULL, "summarize failed but set *result");
    /* segments */
    EXPECT(hla_segment_combine(NULL, seg, &rs), HLA_ERR_NULL_POINTER, NULL, "segment_combine(a=NULL)");
    EXPECT(hla_segment_combine(seg, NULL, &rs), HLA_ERR_NULL_POINTER, NULL, "segment_combine(b=NULL)");
    EXPECT(hla_segment_combine(seg, seg, NULL), HLA_ERR_NULL_POINTER, "result", "segment_combine(result=NULL)");
    CHECK(rs == NULL, "segment_combine failed but set *result");
    EXPECT(hla_segment_get_config(NULL, &g), HLA_ERR_NULL_POINTER, "segment", "segment_get_config(segment=NULL)");
    EXPECT(hla_segment_get_config(seg, NULL), HLA_ERR_NULL_POINTER, "result", "segment_get_config(result=NULL)");
    EXPECT(hla_segment_length(NULL, &n), HLA_ERR_NULL_POINTER, "segment", "segment_length(segment=NULL)");
    EXPECT(hla_segment_length(seg, NULL), HLA_ERR_NULL_POINTER, "result", "segment_length(result=NULL)");
    EXPECT(hla_segment_nbytes(NULL, &n), HLA_ERR_NULL_POINTER, "segment", "segment_nbytes(segment=NULL)");
    EXPECT(hla_segment_nbytes(seg, NULL), HLA_ERR_NULL_POINTER, "result", "segment_nbytes(result=NULL)");
    EXPECT(hla_segment_serialize(NULL, buf, sizeof buf, &w), HLA_ERR_NULL_POINTER, "segment",
           "segment_serialize(segment=NULL)");
    EXPECT(hla_segment_serialize(seg, NULL, 16, &w), HLA_ERR_NULL_POINTER, "buffer",
           "segment_serialize(buffer=NULL, capacity=16)");
    EXPECT(hla_segment_serialize(seg, buf, sizeof buf, NULL), HLA_ERR_NULL_POINTER, "written",
           "segment_serialize(written=NULL)");
    EXPECT(hla_segment_deserialize(NULL, 16, &rs), HLA_ERR_NULL_POINTER, "buffer",
           "segment_deserialize(buffer=NULL)");
    EXPECT(hla_segment_deserialize(buf, sizeof buf, NULL), HLA_ERR_NULL_POINTER, "result",
           "segment_deserialize(result=NULL)");
    CHECK(rs == NULL, "segment_deserialize failed but set *result");
    r = NULL;
    EXPECT(hla_state_from_segment(NULL, &r), HLA_ERR_NULL_POINTER, "segment", "state_from_segment(segment=NULL)");
    CHECK(r == NULL, "state_from_segment failed but set *result");
    EXPECT(hla_state_from_segment(seg, NULL), HLA_ERR_NULL_POINTER, "result", "state_from_segment(result=NULL)");
    hla_state_destroy(s);
    hla_segment_destroy(seg);
}

/* An invalid configuration, numbered; returns 0 past the last one. */
static int bad_config(int i, hla_config *c, const char **what, const char **kw, hla_status *want)
{
    const double inf = INFINITY, nan = NAN;
    *c = small_cfg(HLA_OP_HLA2, HLA_FLOAT64);
    *want = HLA_ERR_INVALID_ARGUMENT;
    switch (i) {
#define BAD(n, stmt, w, k)                                                                                             \
    case n:                                                                                                            \
        stmt;                                                                                                          \
        *what = w;                                                                                                     \
        *kw = k;                                                                                                       \
        return 1;
        BAD(0, c->op = 3, "op=3", "op")
        BAD(1, c->op = -1, "op=-1", "op")
        BAD(2, c->dtype = 2, "dtype=2", "dtype|type")
        BAD(3, c->dtype = -1, "dtype=-1", "dtype|type")
        BAD(4, c->masked = 2, "masked=2", "mask")
        BAD(5, c->masked = -1, "masked=-1", "mask")
        BAD(6, c->normalize = 2, "normalize=2", "normaliz")
        BAD(7, c->normalize = -1, "normalize=-1", "normaliz")
        BAD(8, c->batch = 0, "batch=0", "batch")
        BAD(9, c->batch = -1, "batch=-1", "batch")
        BAD(10, c->heads = 0, "heads=0", "head")
        BAD(11, c->heads = -3, "heads=-3", "head")
        BAD(12, c->kv_heads = -1, "kv_heads=-1", "kv")
        BAD(13, (c->heads = 4, c->kv_heads = 3), "kv_heads=3 not dividing heads=4", "kv")
        BAD(14, (c->heads = 2, c->kv_heads = 4), "kv_heads=4 > heads=2", "kv")
        BAD(15, c->dk = 0, "dk=0", "dk")
        BAD(16, c->dk = -1, "dk=-1", "dk")
        BAD(17, c->dv = 0, "dv=0", "dv")
        BAD(18, c->dv = -5, "dv=-5", "dv")
        BAD(19, c->scale = nan, "scale=nan", "scale")
        BAD(20, c->scale = inf, "scale=inf", "scale")
        BAD(21, c->scale = -inf, "scale=-inf", "scale")
        BAD(22, c->decay = nan, "decay=nan", "decay")
        BAD(23, c->decay = inf, "decay=inf", "decay")
        BAD(24, c->decay = 0.0, "decay=0", "decay")
        BAD(25, c->decay = -0.5, "decay=-0.5", "decay")
        BAD(26, c->decay = 1.0000001, "decay=1.0000001", "decay")
        BAD(27, c->decay = -inf, "decay=-inf", "decay")
        BAD(28, c->decay = -0.0, "decay=-0.0", "decay")
        BAD(29, (c->normalize = 1, c->eps = nan), "eps=nan", "eps")
        BAD(30, (c->normalize = 1, c->eps = inf), "eps=inf", "eps")
        BAD(31, (c->normalize = 1, c->eps = 0.0), "eps=0", "eps")
        BAD(32, (c->normalize = 1, c->eps = -1e-6), "eps=-1e-6", "eps")
        BAD(33, (c->normalize = 1, c->eps = -inf), "eps=-inf", "eps")
        BAD(34, c->ridge = nan, "ridge=nan", "ridge")
        BAD(35, c->ridge = inf, "ridge=inf", "ridge")
        BAD(36, c->ridge = -0.1, "ridge=-0.1", "ridge")
        BAD(37, (c->op = HLA_OP_AHLA, c->ridge = 0.5), "ridge=0.5 with ahla", "ridge")
        BAD(38, (c->op = HLA_OP_HLA3, c->ridge = 0.5), "ridge=0.5 with hla3", "ridge")
        BAD(39, (c->op = HLA_OP_AHLA, c->ridge = nan), "ridge=nan with ahla", "ridge")
        BAD(40, (c->dk = (int64_t)1 << 40, *want = HLA_ERR_OVERFLOW), "dk=2^40", NULL)
        BAD(41,
            (c->batch = (int64_t)1 << 20, c->heads = (int64_t)1 << 20, c->kv_heads = 0, c->dk = (int64_t)1 << 12,
             c->dv = (int64_t)1 << 12, *want = HLA_ERR_OVERFLOW),
            "batch*heads*dk*dv = 2^64", NULL)
        BAD(42, (c->heads = 1, c->kv_heads = 0, c->dk = (int64_t)1 << 31, c->dv = (int64_t)1 << 31, *want = HLA_ERR_OVERFLOW),
            "dk=dv=2^31 (2^62 elements, 2^65 bytes)", NULL)
        BAD(43, (c->heads = INT64_MAX, c->kv_heads = 1, *want = HLA_ERR_OVERFLOW), "heads=INT64_MAX", NULL)
        BAD(44, (c->batch = INT64_MAX, *want = HLA_ERR_OVERFLOW), "batch=INT64_MAX", NULL)
        BAD(45, (c->dv = INT64_MAX, *want = HLA_ERR_OVERFLOW), "dv=INT64_MAX", NULL)
#undef BAD
    default:
        return 0;
    }
}

static void test_bad_configs(void)
{
    int i;
    hla_config c;
    const char *what, *kw;
    hla_status want;
    set_ctx("bad configuration");
    for (i = 0; bad_config(i, &c, &what, &kw, &want); i++) {
        void *P = pool_for(c.dtype == HLA_FLOAT32 ? HLA_FLOAT32 : HLA_FLOAT64);
        hla_state *s = NULL;
        hla_segment *g = NULL;
        hla_status v = hla_config_validate(&c);
        EXPECT(v, want, kw, "config_validate(%s)", what);
        EXPECT(hla_state_create(&c, &s), want, kw, "state_create(%s)", what);
        CHECK(s == NULL, "state_create(%s) failed but set *result", what);
        hla_state_destroy(s);
        if (v == HLA_OK) /* the library accepted the configuration: calling the compute entry points
                            with our small buffers could only crash; the failure is already counted */
            continue;
        EXPECT(hla_forward(&c, 3, HLA_PATH_CHUNKED, P, NULL, P, NULL, P, NULL, g_pool_o, NULL, NULL, NULL), want, kw,
               "forward(%s)", what);
        EXPECT(hla_forward(&c, 3, HLA_PATH_SCAN, P, NULL, P, NULL, P, NULL, g_pool_o, NULL, NULL, NULL), want, kw,
               "forward scan(%s)", what);
        EXPECT(hla_reference(&c, 3, P, NULL, P, NULL, P, NULL, g_pool_o, NULL), want, kw, "reference(%s)", what);
        EXPECT(hla_summarize(&c, 3, P, NULL, P, NULL, P, NULL, &g), want, kw, "summarize(%s)", what);
        CHECK(g == NULL, "summarize(%s) failed but set *result", what);
        hla_segment_destroy(g);
    }

    /* chunk_size < 0 concerns hla_forward only */
    c = small_cfg(HLA_OP_HLA2, HLA_FLOAT64);
    c.chunk_size = -1;
    EXPECT(hla_forward(&c, 3, HLA_PATH_CHUNKED, g_pool_d, NULL, g_pool_d, NULL, g_pool_d, NULL, g_pool_o, NULL, NULL,
                       NULL),
           HLA_ERR_INVALID_ARGUMENT, "chunk", "forward(chunk_size=-1)");
    c.chunk_size = INT64_MIN;
    EXPECT(hla_forward(&c, 3, HLA_PATH_SCAN, g_pool_d, NULL, g_pool_d, NULL, g_pool_d, NULL, g_pool_o, NULL, NULL,
                       NULL),
           HLA_ERR_INVALID_ARGUMENT, "chunk", "forward(chunk_size=INT64_MIN)");

    /* a state whose size fits in int64 but not in memory: OUT_OF_MEMORY (or OVERFLOW), never a trap */
    {
        hla_state *s = NULL;
        hla_status st;
        c = small_cfg(HLA_OP_HLA2, HLA_FLOAT32);
        c.heads = 1;
        c.kv_heads = 0;
        c.dk = (int64_t)1 << 24;
        c.dv = (int64_t)1 << 24;
        st = hla_state_create(&c, &s);
        CHECK((st == HLA_ERR_OUT_OF_MEMORY || st == HLA_ERR_OVERFLOW) && s == NULL,
              "state_create of a 2^50-byte state: %s (want OUT_OF_MEMORY or OVERFLOW)", status_name(st));
        if (st != HLA_OK) CHECK(hla_last_error()[0] != '\0', "no message for %s", status_name(st));
        hla_state_destroy(s);
    }

    /* bad T, path */
    c = small_cfg(HLA_OP_HLA2, HLA_FLOAT64);
    {
        static const int64_t badT[] = {0, -1, INT64_MIN};
        static const int32_t badpath[] = {3, -1, 1000};
        hla_segment *g = NULL;
        unsigned j;
        for (j = 0; j < 3; j++) {
            EXPECT(hla_forward(&c, badT[j], HLA_PATH_CHUNKED, g_pool_d, NULL, g_pool_d, NULL, g_pool_d, NULL,
                               g_pool_o, NULL, NULL, NULL),
                   HLA_ERR_INVALID_ARGUMENT, "T|token|length", "forward(T=%lld)", (long long)badT[j]);
            EXPECT(hla_reference(&c, badT[j], g_pool_d, NULL, g_pool_d, NULL, g_pool_d, NULL, g_pool_o, NULL),
                   HLA_ERR_INVALID_ARGUMENT, "T|token|length", "reference(T=%lld)", (long long)badT[j]);
            EXPECT(hla_summarize(&c, badT[j], g_pool_d, NULL, g_pool_d, NULL, g_pool_d, NULL, &g),
                   HLA_ERR_INVALID_ARGUMENT, "T|token|length", "summarize(T=%lld)", (long long)badT[j]);
            CHECK(g == NULL, "summarize failed but set *result");
            EXPECT(hla_forward(&c, 3, badpath[j], g_pool_d, NULL, g_pool_d, NULL, g_pool_d, NULL, g_pool_o, NULL,
                               NULL, NULL),
                   HLA_ERR_INVALID_ARGUMENT, "path", "forward(path=%d)", (int)badpath[j]);
        }
    }
}

/* Overflowing tensor sizes and stride extents. */
static void test_overflow(void)
{
    hla_config c = small_cfg(HLA_OP_HLA2, HLA_FLOAT64);
    void *P = g_pool_d, *O = g_pool_o;
    hla_segment *g = NULL;
    hla_state *s = NULL;
    const int64_t M = INT64_MAX, H61 = (int64_t)1 << 61, N62 = -((int64_t)1 << 62);
    /* stride sets for [B,T,H,D] with B=1, T=3, H=2 (Hkv=1), D=3 or 2 */
    int64_t sb[6][4];
    const char *sbn[6] = {"T stride INT64_MAX", "T stride 2^61 (bytes overflow)", "T stride -2^62 (bytes overflow)",
                          "D stride INT64_MIN", "T,D strides 2^61 each",
                          "H stride INT64_MAX"};
    int i, arg;
    set_ctx("overflow");
    sb[0][0] = 0, sb[0][1] = M, sb[0][2] = 1, sb[0][3] = 1;
    sb[1][0] = 0, sb[1][1] = H61, sb[1][2] = 1, sb[1][3] = 1;
    sb[2][0] = 0, sb[2][1] = N62, sb[2][2] = 1, sb[2][3] = 1;
    sb[3][0] = 0, sb[3][1] = 6, sb[3][2] = 3, sb[3][3] = INT64_MIN;
    sb[4][0] = 0, sb[4][1] = H61, sb[4][2] = 0, sb[4][3] = H61;
    sb[5][0] = 0, sb[5][1] = 6, sb[5][2] = M, sb[5][3] = 1;
    for (i = 0; i < 6; i++)
        for (arg = 0; arg < 4; arg++) { /* stride set i on q, k, v, out in turn */
            const int64_t *sq = arg == 0 ? sb[i] : NULL, *sk = arg == 1 ? sb[i] : NULL, *sv = arg == 2 ? sb[i] : NULL,
                          *so = arg == 3 ? sb[i] : NULL;
            static const char *an[4] = {"q", "k", "v", "out"};
            if (i == 5 && (arg == 1 || arg == 2)) continue; /* Hkv = 1: the H stride is irrelevant there */
            EXPECT(hla_forward(&c, 3, HLA_PATH_CHUNKED, P, sq, P, sk, P, sv, O, so, NULL, NULL), HLA_ERR_OVERFLOW,
                   NULL, "forward(%s %s)", an[arg], sbn[i]);
            EXPECT(hla_reference(&c, 3, P, sq, P, sk, P, sv, O, so), HLA_ERR_OVERFLOW, NULL, "reference(%s %s)",
                   an[arg], sbn[i]);
            if (arg < 3) {
                EXPECT(hla_summarize(&c, 3, P, sq, P, sk, P, sv, &g), HLA_ERR_OVERFLOW, NULL, "summarize(%s %s)",
                       an[arg], sbn[i]);
                CHECK(g == NULL, "summarize failed but set *result");
            }
        }
    /* step strides [B,H,D] with B = 2 */
    c.batch = 2;
    if (EXPECT(hla_state_create(&c, &s), HLA_OK, NULL, "state_create")) {
        int64_t st3[4][3];
        st3[0][0] = M, st3[0][1] = 3, st3[0][2] = 1;
        st3[1][0] = H61, st3[1][1] = 3, st3[1][2] = 1;
        st3[2][0] = 6, st3[2][1] = 3, st3[2][2] = INT64_MIN;
        st3[3][0] = N62, st3[3][1] = N62, st3[3][2] = 1;
        for (i = 0; i < 4; i++)
            for (arg = 0; arg < 4; arg++) {
                const int64_t *sq = arg == 0 ? st3[i] : NULL, *sk = arg == 1 ? st3[i] : NULL,
                              *sv = arg == 2 ? st3[i] : NULL, *so = arg == 3 ? st3[i] : NULL;
                EXPECT(hla_state_step(s, P, sq, P, sk, P, sv, O, so), HLA_ERR_OVERFLOW, NULL,
                       "state_step(stride set %d on argument %d)", i, arg);
            }
        /* the failed steps consumed nothing */
        {
            int64_t tok = -1;
            EXPECT(hla_state_tokens(s, &tok), HLA_OK, NULL, "tokens");
            CHECK(tok == 0, "failed steps changed the token count to %lld", (long long)tok);
        }
    }
    hla_state_destroy(s);
    c.batch = 1;
    /* a size-1 dimension with an extreme stride contributes nothing: OK (or OVERFLOW), never a trap */
    {
        int64_t s1[4];
        hla_status st;
        s1[0] = INT64_MIN, s1[1] = 6, s1[2] = 3, s1[3] = 1;
        st = hla_forward(&c, 3, HLA_PATH_CHUNKED, P, s1, P, NULL, P, NULL, O, NULL, NULL, NULL);
        CHECK(st == HLA_OK || st == HLA_ERR_OVERFLOW, "forward(batch=1 with batch stride INT64_MIN) = %s",
              status_name(st));
    }
    /* T so large that the contiguous tensor extents overflow */
    {
        static const int64_t bigT[] = {(int64_t)1 << 62, INT64_MAX};
        int j;
        for (j = 0; j < 2; j++) {
            EXPECT(hla_forward(&c, bigT[j], HLA_PATH_CHUNKED, P, NULL, P, NULL, P, NULL, O, NULL, NULL, NULL),
                   HLA_ERR_OVERFLOW, NULL, "forward(T=%lld, contiguous)", (long long)bigT[j]);
            EXPECT(hla_forward(&c, bigT[j], HLA_PATH_SERIAL, P, NULL, P, NULL, P, NULL, O, NULL, NULL, NULL),
                   HLA_ERR_OVERFLOW, NULL, "forward serial(T=%lld, contiguous)", (long long)bigT[j]);
            EXPECT(hla_reference(&c, bigT[j], P, NULL, P, NULL, P, NULL, O, NULL), HLA_ERR_OVERFLOW, NULL,
                   "reference(T=%lld)", (long long)bigT[j]);
            EXPECT(hla_summarize(&c, bigT[j], P, NULL, P, NULL, P, NULL, &g), HLA_ERR_OVERFLOW, NULL,
                   "summarize(T=%lld)", (long long)bigT[j]);
            CHECK(g == NULL, "summarize failed but set *result");
        }
    }
}

/* States / segments of another configuration. */
static void test_mismatch(void)
{
    hla_config base = small_cfg(HLA_OP_HLA2, HLA_FLOAT64);
    hla_state *good = NULL;
    hla_segment *gseg = NULL;
    int i;
    set_ctx("mismatch");
    EXPECT(hla_state_create(&base, &good), HLA_OK, NULL, "state_create");
    EXPECT(hla_summarize(&base, 3, g_pool_d, NULL, g_pool_d, NULL, g_pool_d, NULL, &gseg), HLA_OK, NULL, "summarize");
    for (i = 0; i < 14; i++) {
        hla_config o = base;
        hla_config b2 = base;
        const char *what = "";
        hla_state *s = NULL;
        hla_segment *sg = NULL, *r = NULL;
        void *P;
        switch (i) {
        case 0: o.op = HLA_OP_AHLA, what = "op"; break;
        case 1: o.op = HLA_OP_HLA3, what = "op hla3"; break;
        case 2: o.dtype = HLA_FLOAT32, what = "dtype"; break;
        case 3: o.batch = 2, what = "batch"; break;
        case 4: o.heads = 4, what = "heads"; break;
        case 5: o.kv_heads = 2, what = "kv_heads"; break;
        case 6: o.dk = 4, what = "dk"; break;
        case 7: o.dv = 3, what = "dv"; break;
        case 8: o.masked = 0, what = "masked"; break;
        case 9: o.normalize = 1, what = "normalize"; break;
        case 10: o.decay = 0.95, what = "decay"; break;
        case 11: o.scale = 0.5, what = "scale"; break;
        case 12: o.ridge = 0.5, what = "ridge"; break;
        case 13: b2.normalize = 1, o.normalize = 1, o.eps = 1e-3, what = "eps (normalize=1)"; break;
        }
        P = pool_for(o.dtype);
        if (!EXPECT(hla_state_create(&o, &s), HLA_OK, NULL, "state_create(other %s)", what)) continue;
        if (i == 13) {
            hla_state *g2 = NULL;
            if (EXPECT(hla_state_create(&b2, &g2), HLA_OK, NULL, "state_create")) {
                EXPECT(hla_forward(&b2, 3, HLA_PATH_CHUNKED, g_pool_d, NULL, g_pool_d, NULL, g_pool_d, NULL,
                                   g_pool_o, NULL, s, NULL),
                       HLA_ERR_MISMATCH, "initial", "forward(initial of another %s)", what);
                EXPECT(hla_forward(&b2, 3, HLA_PATH_CHUNKED, g_pool_d, NULL, g_pool_d, NULL, g_pool_d, NULL,
                                   g_pool_o, NULL, NULL, s),
                       HLA_ERR_MISMATCH, "final", "forward(final_state of another %s)", what);
            }
            hla_state_destroy(g2);
        } else {
            int p;
            for (p = 0; p < 3; p++) {
                EXPECT(hla_forward(&base, 3, p, g_pool_d, NULL, g_pool_d, NULL, g_pool_d, NULL, g_pool_o, NULL, s,
                                   NULL),
                       HLA_ERR_MISMATCH, "initial", "forward %s(initial of another %s)", path_name(p), what);
                EXPECT(hla_forward(&base, 3, p, g_pool_d, NULL, g_pool_d, NULL, g_pool_d, NULL, g_pool_o, NULL, NULL,
                                   s),
                       HLA_ERR_MISMATCH, "final", "forward %s(final_state of another %s)", path_name(p), what);
                EXPECT(hla_forward(&base, 3, p, g_pool_d, NULL, g_pool_d, NULL, g_pool_d, NULL, g_pool_o, NULL, good,
                                   s),
                       HLA_ERR_MISMATCH, "final", "forward %s(good initial, final_state of another %s)", path_name(p),
                       what);
            }
            {
                int64_t tok = -1;
                EXPECT(hla_state_tokens(good, &tok), HLA_OK, NULL, "tokens");
                CHECK(tok == 0, "a rejected forward changed its initial state (%lld tokens)", (long long)tok);
            }
        }
        if (EXPECT(hla_summarize(i == 13 ? &b2 : &o, 3, P, NULL, P, NULL, P, NULL, &sg), HLA_OK, NULL,
                   "summarize(other %s)", what)) {
            if (i == 13) {
                hla_segment *g2 = NULL;
                if (EXPECT(hla_summarize(&o, 3, g_pool_d, NULL, g_pool_d, NULL, g_pool_d, NULL, &g2), HLA_OK, NULL,
                           "summarize")) {
                    EXPECT(hla_segment_combine(sg, g2, &r), HLA_ERR_MISMATCH, NULL, "combine(%s differs)", what);
                    CHECK(r == NULL, "combine failed but set *result");
                }
                hla_segment_destroy(g2);
            } else {
                EXPECT(hla_segment_combine(gseg, sg, &r), HLA_ERR_MISMATCH, NULL, "combine(a, b of another %s)", what);
                CHECK(r == NULL, "combine failed but set *result");
                EXPECT(hla_segment_combine(sg, gseg, &r), HLA_ERR_MISMATCH, NULL, "combine(a of another %s, b)", what);
                CHECK(r == NULL, "combine failed but set *result");
            }
        }
        hla_segment_destroy(sg);
        hla_state_destroy(s);
    }
    /* chunk_size is not part of a state's configuration */
    {
        hla_config o = base;
        hla_state *s = NULL;
        o.chunk_size = 3;
        if (EXPECT(hla_state_create(&o, &s), HLA_OK, NULL, "state_create(chunk 3)")) {
            EXPECT(hla_forward(&base, 3, HLA_PATH_CHUNKED, g_pool_d, NULL, g_pool_d, NULL, g_pool_d, NULL, g_pool_o,
                               NULL, s, s),
                   HLA_OK, NULL, "forward with a state made with another chunk_size");
        }
        hla_state_destroy(s);
    }
    hla_segment_destroy(gseg);
    hla_state_destroy(good);
}

/* ------------------------------------------------------------------------------------------ */
/* 6. serialization: round trip, buffer protocol, every truncation, every byte flipped          */

static void corrupt_sweep(const unsigned char *buf, size_t n, int segment, const char *what)
{
    unsigned char *tmp = xmalloc(n + 1);
    size_t len, i, bad_trunc = 0, bad_flip = 0, first_trunc = (size_t)-1, first_flip = (size_t)-1;
    hla_status first_trunc_st = HLA_OK, first_flip_st = HLA_OK, st;
    static const unsigned char masks[3] = {0x01, 0x80, 0xFF};
    int m;
    for (len = 0; len < n; len++) {
        hla_state *s = NULL;
        hla_segment *g = NULL;
        memcpy(tmp, buf, len);
        st = segment ? hla_segment_deserialize(tmp, len, &g) : hla_state_deserialize(tmp, len, &s);
        if (st != HLA_ERR_CORRUPT || s || g || hla_last_error()[0] == '\0') {
            if (!bad_trunc++) first_trunc = len, first_trunc_st = st;
        }
        if (st == HLA_OK) {
            hla_state_destroy(s);
            hla_segment_destroy(g);
        }
    }
    CHECK(bad_trunc == 0, "%s: %zu of %zu truncations not rejected with CORRUPT (first: length %zu -> %s)", what,
          bad_trunc, n, first_trunc, status_name(first_trunc_st));
    for (i = 0; i < n; i++)
        for (m = 0; m < 3; m++) {
            hla_state *s = NULL;
            hla_segment *g = NULL;
            memcpy(tmp, buf, n);
            tmp[i] ^= masks[m];
            st = segment ? hla_segment_deserialize(tmp, n, &g) : hla_state_deserialize(tmp, n, &s);
            if (st != HLA_ERR_CORRUPT || s || g || hla_last_error()[0] == '\0') {
                if (!bad_flip++) first_flip = i * 4 + (size_t)m, first_flip_st = st;
            }
            if (st == HLA_OK) {
                hla_state_destroy(s);
                hla_segment_destroy(g);
            }
        }
    CHECK(bad_flip == 0, "%s: %zu of %zu single-byte corruptions not rejected with CORRUPT (first: byte %zu ^ 0x%02x -> %s)",
          what, bad_flip, 3 * n, first_flip / 4, first_flip == (size_t)-1 ? 0 : masks[first_flip % 4],
          status_name(first_flip_st));
    /* one trailing byte too many */
    {
        hla_state *s = NULL;
        hla_segment *g = NULL;
        memcpy(tmp, buf, n);
        tmp[n] = 0;
        st = segment ? hla_segment_deserialize(tmp, n + 1, &g) : hla_state_deserialize(tmp, n + 1, &s);
        CHECK(st == HLA_ERR_CORRUPT && !s && !g, "%s: %zu bytes + 1 trailing byte -> %s, want CORRUPT", what, n,
              status_name(st));
        if (st == HLA_OK) {
            hla_state_destroy(s);
            hla_segment_destroy(g);
        }
    }
    /* bytes of the other kind */
    {
        hla_state *s = NULL;
        hla_segment *g = NULL;
        st = segment ? hla_state_deserialize(buf, n, &s) : hla_segment_deserialize(buf, n, &g);
        CHECK((st == HLA_ERR_CORRUPT || st == HLA_ERR_MISMATCH) && !s && !g,
              "%s: bytes deserialized as the other kind -> %s, want CORRUPT or MISMATCH", what, status_name(st));
        if (st == HLA_OK) {
            hla_state_destroy(s);
            hla_segment_destroy(g);
        }
    }
    free(tmp);
}

static void test_serialization(void)
{
    int op, dt;
    for (op = 0; op < 3; op++)
        for (dt = 0; dt < 2; dt++) {
            hla_config c = make_cfg(op, dt, 1, 1, 0.9, op == HLA_OP_HLA2 ? 0.25 : 0.0, 1, 2, 1, 3, 2);
            problem p;
            hla_state *s = NULL, *s2 = NULL;
            hla_segment *g = NULL, *g2 = NULL;
            size_t need = 0, w = 0, need2 = 0;
            unsigned char *buf = NULL, *buf2 = NULL;
            void *o1, *o2;
            int64_t t, tok;
            hla_config gc;
            set_ctx("serialization %s %s", op_name(op), dt_name(dt));
            problem_init(&p, &c, 8, 0);
            o1 = typed_nan(p.H * p.dv, dt);
            o2 = typed_nan(p.H * p.dv, dt);
            if (!EXPECT(hla_state_create(&c, &s), HLA_OK, NULL, "state_create")) goto next;
            for (t = 0; t < 5; t++)
                EXPECT(hla_state_step(s, pq(&p, t), NULL, pk(&p, t), NULL, pv(&p, t), NULL, o1, NULL), HLA_OK, NULL,
                       "step");
            /* buffer protocol */
            EXPECT(hla_state_serialize(s, NULL, 0, &need), HLA_OK, NULL, "serialize(NULL, 0) size query");
            CHECK(need > 0, "required size %zu", need);
            buf = xmalloc(need + 8);
            w = 0;
            EXPECT(hla_state_serialize(s, buf, need - 1, &w), HLA_ERR_BUFFER_TOO_SMALL, NULL,
                   "serialize(capacity = required - 1)");
            CHECK(w == need, "BUFFER_TOO_SMALL: *written = %zu, want required %zu", w, need);
            w = 0;
            EXPECT(hla_state_serialize(s, buf, 0, &w), HLA_ERR_BUFFER_TOO_SMALL, NULL, "serialize(buffer, capacity 0)");
            CHECK(w == need, "BUFFER_TOO_SMALL: *written = %zu, want %zu", w, need);
            w = 0;
            EXPECT(hla_state_serialize(s, buf, need + 8, &w), HLA_OK, NULL, "serialize(capacity = required + 8)");
            CHECK(w == need, "serialize wrote %zu, want %zu", w, need);
            /* round trip: same bytes again, same configuration and tokens, same next output */
            if (EXPECT(hla_state_deserialize(buf, need, &s2), HLA_OK, NULL, "deserialize")) {
                EXPECT(hla_state_serialize(s2, NULL, 0, &need2), HLA_OK, NULL, "serialize size");
                buf2 = xmalloc(need2 ? need2 : 1);
                EXPECT(hla_state_serialize(s2, buf2, need2, &w), HLA_OK, NULL, "serialize");
                CHECK(need2 == need && memcmp(buf, buf2, need) == 0, "re-serialized bytes differ");
                EXPECT(hla_state_get_config(s2, &gc), HLA_OK, NULL, "get_config");
                CHECK(cfg_equal(&gc, &c), "deserialized state: configuration differs");
                EXPECT(hla_state_tokens(s2, &tok), HLA_OK, NULL, "tokens");
                CHECK(tok == 5, "deserialized state has %lld tokens, want 5", (long long)tok);
                EXPECT(hla_state_step(s, pq(&p, 5), NULL, pk(&p, 5), NULL, pv(&p, 5), NULL, o1, NULL), HLA_OK, NULL,
                       "step");
                EXPECT(hla_state_step(s2, pq(&p, 5), NULL, pk(&p, 5), NULL, pv(&p, 5), NULL, o2, NULL), HLA_OK, NULL,
                       "step");
                CHECK(memcmp(o1, o2, (size_t)(p.H * p.dv) * esize(dt)) == 0,
                      "deserialized state's next output differs from the original's");
                free(buf2);
                buf2 = NULL;
            }
            corrupt_sweep(buf, need, 0, "state bytes");

            /* segments */
            if (EXPECT(hla_summarize(&c, 6, p.q, p.sq, p.k, p.sk, p.v, p.sv, &g), HLA_OK, NULL, "summarize")) {
                free(buf);
                EXPECT(hla_segment_serialize(g, NULL, 0, &need), HLA_OK, NULL, "segment size query");
                buf = xmalloc(need + 8);
                w = 0;
                EXPECT(hla_segment_serialize(g, buf, need - 1, &w), HLA_ERR_BUFFER_TOO_SMALL, NULL,
                       "segment_serialize(capacity = required - 1)");
                CHECK(w == need, "BUFFER_TOO_SMALL: *written = %zu, want %zu", w, need);
                EXPECT(hla_segment_serialize(g, buf, need, &w), HLA_OK, NULL, "segment_serialize");
                CHECK(w == need, "segment_serialize wrote %zu, want %zu", w, need);
                if (EXPECT(hla_segment_deserialize(buf, need, &g2), HLA_OK, NULL, "segment_deserialize")) {
                    EXPECT(hla_segment_serialize(g2, NULL, 0, &need2), HLA_OK, NULL, "segment size");
                    buf2 = xmalloc(need2 ? need2 : 1);
                    EXPECT(hla_segment_serialize(g2, buf2, need2, &w), HLA_OK, NULL, "segment_serialize");
                    CHECK(need2 == need && memcmp(buf, buf2, need) == 0, "re-serialized segment bytes differ");
                    EXPECT(hla_segment_length(g2, &tok), HLA_OK, NULL, "segment_length");
                    CHECK(tok == 6, "deserialized segment length %lld, want 6", (long long)tok);
                    EXPECT(hla_segment_get_config(g2, &gc), HLA_OK, NULL, "segment_get_config");
                    CHECK(cfg_equal(&gc, &c), "deserialized segment: configuration differs");
                    free(buf2);
                }
                corrupt_sweep(buf, need, 1, "segment bytes");
            }
        next:
            hla_state_destroy(s);
            hla_state_destroy(s2);
            hla_segment_destroy(g);
            hla_segment_destroy(g2);
            free(buf);
            free(o1);
            free(o2);
            problem_free(&p);
        }
}

/* ------------------------------------------------------------------------------------------ */
/* 7. threads: last_error is thread-local; distinct handles in distinct threads at once         */

typedef struct {
    int op;
    char first_msg[256];
    char msg[256];
    double err;
    hla_status st;
} thread_arg;

static void *error_thread(void *vp)
{
    thread_arg *a = vp;
    hla_config c;
    const char *m = hla_last_error();
    snprintf(a->first_msg, sizeof a->first_msg, "%s", m ? m : "(null)");
    hla_config_init(&c);
    c.normalize = 1;
    c.eps = -1.0;
    a->st = hla_config_validate(&c);
    m = hla_last_error();
    snprintf(a->msg, sizeof a->msg, "%s", m ? m : "(null)");
    return NULL;
}

static void *compute_thread(void *vp)
{
    thread_arg *a = vp;
    hla_config c = make_cfg(a->op, HLA_FLOAT64, 1, 0, 0.9, 0.0, 2, 4, 2, 5, 3);
    problem p;
    hla_state *s = NULL;
    double *out;
    int rep;
    problem_init(&p, &c, 64, 0);
    out = xmalloc((size_t)p.no * sizeof(double));
    a->err = 0;
    a->st = hla_state_create(&c, &s);
    for (rep = 0; rep < 3 && a->st == HLA_OK; rep++) {
        double e;
        a->st = hla_forward(&c, p.T, rep, p.q, NULL, p.k, NULL, p.v, NULL, out, NULL, NULL, s);
        e = rel_err(out, HLA_FLOAT64, p.so, p.B, p.T, p.H, p.dv, p.ref, p.T, 0);
        if (!(e <= a->err)) a->err = e;
    }
    hla_state_destroy(s);
    free(out);
    problem_free(&p);
    return NULL;
}

static void test_threads(void)
{
    pthread_t th[4];
    thread_arg args[4];
    hla_config c;
    int i;
    set_ctx("threads");
    /* this thread fails on decay; another thread fails on eps; each sees its own message */
    hla_config_init(&c);
    c.decay = 2.0;
    EXPECT(hla_config_validate(&c), HLA_ERR_INVALID_ARGUMENT, "decay", "validate(decay=2) in the main thread");
    memset(args, 0, sizeof args);
    if (pthread_create(&th[0], NULL, error_thread, &args[0]) == 0) {
        pthread_join(th[0], NULL);
        CHECK(args[0].first_msg[0] == '\0', "a new thread's hla_last_error() is \"%s\", want \"\"", args[0].first_msg);
        CHECK(args[0].st == HLA_ERR_INVALID_ARGUMENT && icontains_any(args[0].msg, "eps"),
              "other thread: %s \"%s\"", status_name(args[0].st), args[0].msg);
        CHECK(icontains_any(hla_last_error(), "decay") && !icontains_any(hla_last_error(), "eps"),
              "main thread's last_error changed by another thread: \"%s\"", hla_last_error());
    } else {
        CHECK(0, "pthread_create failed");
    }
    /* concurrent compute on distinct handles */
    for (i = 0; i < 4; i++) args[i].op = i % 3;
    {
        int started[4] = {0, 0, 0, 0};
        for (i = 0; i < 4; i++) started[i] = pthread_create(&th[i], NULL, compute_thread, &args[i]) == 0;
        for (i = 0; i < 4; i++)
            if (started[i]) pthread_join(th[i], NULL);
        for (i = 0; i < 4; i++) {
            CHECK(started[i], "pthread_create failed");
            CHECK(args[i].st == HLA_OK && args[i].err <= 1e-10, "concurrent thread %d (%s): %s, rel err %.3g", i,
                  op_name(args[i].op), status_name(args[i].st), args[i].err);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */

int main(void)
{
    double t0 = now_s(), t1;
    const char *ver;
    setvbuf(stdout, NULL, _IOLBF, 0);
    ver = hla_version();
    printf("libhla %s: C ABI test\n", ver ? ver : "(null)");

#define SECTION(fn)                                                                                                    \
    do {                                                                                                               \
        long f0 = g_fail, p0 = g_pass;                                                                                 \
        t1 = now_s();                                                                                                  \
        fn();                                                                                                          \
        printf("  %-22s %5ld passed, %3ld failed  (%.2f s)\n", #fn, g_pass - p0, g_fail - f0, now_s() - t1);           \
    } while (0)

    SECTION(test_basics); /* first: checks last_error before any failure */
    SECTION(test_state_lifecycle);
    SECTION(test_null_pointers);
    SECTION(test_bad_configs);
    SECTION(test_overflow);
    SECTION(test_mismatch);
    SECTION(test_serialization);
    SECTION(test_numerics);
    SECTION(test_chunk_sizes);
    SECTION(test_strided);
    SECTION(test_threads);
    printf("total %.2f s\n", now_s() - t0);
    printf("%ld passed, %ld failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
