/* C ABI test of libhla 1.0: drives every entry point of include/hla.h, checks every execution path
 * against the index sums of SPEC.md section 2 (the independent brute-force evaluation of naive_ref.c,
 * and the library's own hla_reference), checks hla_backward against central differences of hla_forward,
 * and feeds every kind of bad input the contract names.
 *
 * The 1.0 ABI has no handles: every tensor is an hla_tensor over this program's memory; states are
 * [slots, n] rows, summaries [N, m] rows plus int64 lengths.
 *
 * Built with gcc -std=c99 -Wall -Wextra -pedantic -Werror against the *installed* header and
 * library (see Makefile), run plainly, under valgrind and with ASan/UBSan.
 * The last line printed is exactly "N passed, M failed"; the exit status is non-zero on any failure. */
#define _POSIX_C_SOURCE 200809L
#include <hla.h>

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "naive_ref.h"

#ifndef HLA_PC_VERSION
#define HLA_PC_VERSION "unknown"
#endif

/* ------------------------------------------------------------------------------------------ */
/* Check bookkeeping                                                                           */

static long g_pass, g_fail;
static char g_ctx[200] = "";

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

static const char *sname(hla_status s) { return hla_status_string(s); }

static int lower_ascii(int ch) { return (ch >= 'A' && ch <= 'Z') ? ch - 'A' + 'a' : ch; }

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
            while (i < n && h[i] && lower_ascii(h[i]) == lower_ascii(a[i])) i++;
            if (i == n) return 1;
        }
        if (!end) break;
        a = end + 1;
    }
    return 0;
}

/* Expect a status; for a failure also a non-empty hla_last_error() containing kw (if given). */
static int expect_status(hla_status got, hla_status want, const char *kw, const char *file, int line,
                         const char *fmt, ...)
{
    char what[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (got != want) {
        const char *m = hla_last_error();
        report(0, file, line, "%s: got %s (%d, last_error \"%s\"), want %s", what, sname(got), (int)got,
               m ? m : "(null)", sname(want));
        return 0;
    }
    if (want != HLA_OK) {
        const char *m = hla_last_error();
        if (m == NULL || m[0] == '\0') {
            report(0, file, line, "%s: %s but hla_last_error() is empty", what, sname(got));
            return 0;
        }
        if (kw && !icontains_any(m, kw)) {
            report(0, file, line, "%s: last_error \"%s\" does not name %s", what, m, kw);
            return 0;
        }
    }
    report(1, file, line, "%s", what);
    return 1;
}

#define EXPECT(call, want, kw, ...) expect_status((call), (want), (kw), __FILE__, __LINE__, __VA_ARGS__)
#define OK(call, ...) expect_status((call), HLA_OK, NULL, __FILE__, __LINE__, __VA_ARGS__)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------------------------------ */
/* Random numbers, element types                                                               */

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

static size_t esize(int dt)
{
    switch (dt) {
    case HLA_FLOAT64:
    case HLA_INT64: return 8;
    case HLA_FLOAT32:
    case HLA_INT32: return 4;
    default: return 2;
    }
}

static int state_dt(int dt) { return dt == HLA_FLOAT64 ? HLA_FLOAT64 : HLA_FLOAT32; }

static double bf16_to_d(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return (double)f;
}

static uint16_t d_to_bf16(double x)
{
    float f = (float)x;
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    if (f != f) return (uint16_t)((b >> 16) | 0x40u);
    return (uint16_t)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

static double f16_to_d(uint16_t h)
{
    const int e = (h >> 10) & 31, m = h & 1023;
    double x;
    if (e == 0)
        x = ldexp((double)m, -24);
    else if (e == 31)
        x = m ? NAN : INFINITY;
    else
        x = ldexp((double)(m + 1024), e - 25);
    return (h & 0x8000u) ? -x : x;
}

static uint16_t d_to_f16(double x)
{
    const uint16_t s = signbit(x) ? 0x8000u : 0u;
    double a = fabs(x), m;
    int E, e;
    if (a != a) return 0x7E00u;
    if (a >= 65520.0) return (uint16_t)(s | 0x7C00u);
    if (a < ldexp(1.0, -14)) return (uint16_t)(s | (uint16_t)nearbyint(ldexp(a, 24)));
    frexp(a, &E); /* a in [2^(E-1), 2^E) */
    m = nearbyint(ldexp(a, 11 - E));
    e = E - 1;
    if (m >= 2048.0) {
        m = 1024.0;
        e++;
    }
    if (e + 15 >= 31) return (uint16_t)(s | 0x7C00u);
    return (uint16_t)(s | (uint16_t)((e + 15) << 10) | (uint16_t)((int)m - 1024));
}

static double getv(const void *p, int dt, int64_t i)
{
    switch (dt) {
    case HLA_FLOAT64: return ((const double *)p)[i];
    case HLA_FLOAT32: return (double)((const float *)p)[i];
    case HLA_BFLOAT16: return bf16_to_d(((const uint16_t *)p)[i]);
    case HLA_FLOAT16: return f16_to_d(((const uint16_t *)p)[i]);
    case HLA_INT64: return (double)((const int64_t *)p)[i];
    default: return (double)((const int32_t *)p)[i];
    }
}

static void setv(void *p, int dt, int64_t i, double x)
{
    switch (dt) {
    case HLA_FLOAT64: ((double *)p)[i] = x; break;
    case HLA_FLOAT32: ((float *)p)[i] = (float)x; break;
    case HLA_BFLOAT16: ((uint16_t *)p)[i] = d_to_bf16(x); break;
    case HLA_FLOAT16: ((uint16_t *)p)[i] = d_to_f16(x); break;
    case HLA_INT64: ((int64_t *)p)[i] = (int64_t)x; break;
    default: ((int32_t *)p)[i] = (int32_t)x; break;
    }
}

/* x rounded to dt and back (exact). */
static double rnd(int dt, double x)
{
    unsigned char b[8];
    setv(b, dt, 0, x);
    return getv(b, dt, 0);
}

static void *eptr(void *p, int dt, int64_t i) { return (char *)p + i * (int64_t)esize(dt); }

#define SLACK 16 /* elements past every buffer, so a mutated shape never reads outside it */

/* n elements of dt (plus slack), every one set to x. */
static void *talloc_fill(int64_t n, int dt, double x)
{
    void *p = xmalloc((size_t)(n + SLACK) * esize(dt));
    int64_t i;
    for (i = 0; i < n + SLACK; i++) setv(p, dt, i, x);
    return p;
}
static void *talloc(int64_t n, int dt) { return talloc_fill(n, dt, NAN); }
static void fill(void *p, int dt, int64_t n, double x)
{
    int64_t i;
    for (i = 0; i < n; i++) setv(p, dt, i, x);
}
static void *typed_of(const double *x, int64_t n, int dt)
{
    void *p = talloc(n, dt);
    int64_t i;
    for (i = 0; i < n; i++) setv(p, dt, i, x[i]);
    return p;
}
/* int64 or int32 index buffer with the given values (plus zero slack). */
static void *ints_of(const int64_t *x, int64_t n, int dt)
{
    void *p = talloc_fill(n, dt, 0);
    int64_t i;
    for (i = 0; i < n; i++) setv(p, dt, i, (double)x[i]);
    return p;
}

static double tol_of(int dt)
{
    switch (dt) {
    case HLA_FLOAT64: return 1e-10;
    case HLA_FLOAT32: return 1e-4;
    case HLA_BFLOAT16: return 1e-2;
    default: return 2e-3;
    }
}
static double state_tol(int dt) { return dt == HLA_FLOAT64 ? 1e-10 : 1e-4; }

static const char *op_name(int op)
{
    return op == HLA_OP_HLA2 ? "hla2" : op == HLA_OP_AHLA ? "ahla" : op == HLA_OP_HLA3 ? "hla3" : "op?";
}
static const char *dt_name(int dt)
{
    static const char *n[6] = {"f32", "f64", "bf16", "f16", "i64", "i32"};
    return dt >= 0 && dt < 6 ? n[dt] : "dt?";
}
static const char *path_name(int p)
{
    return p == HLA_PATH_CHUNKED ? "chunked" : p == HLA_PATH_SERIAL ? "serial" : p == HLA_PATH_SCAN ? "scan" : "?";
}

/* ------------------------------------------------------------------------------------------ */
/* Tensors                                                                                     */

static hla_tensor mks(void *data, int dt, int nd, const int64_t *shape, const int64_t *strides)
{
    hla_tensor t;
    hla_status st;
    memset(&t, 0, sizeof t);
    st = hla_tensor_init(&t, data, dt, nd, shape, strides);
    if (st != HLA_OK) CHECK(0, "hla_tensor_init(%s, ndim %d) failed: %s", dt_name(dt), nd, hla_last_error());
    return t;
}

static hla_tensor mk(void *data, int dt, int nd, int64_t s0, int64_t s1, int64_t s2, int64_t s3)
{
    int64_t sh[4];
    sh[0] = s0, sh[1] = s1, sh[2] = s2, sh[3] = s3;
    return mks(data, dt, nd, sh, NULL);
}

/* Tokens [t0, t1) of B sequences of a contiguous [B, T, Hx, D] buffer. */
static hla_tensor tokv(void *base, int dt, int64_t B, int64_t T, int64_t Hx, int64_t D, int64_t t0, int64_t t1)
{
    int64_t sh[4], st[4];
    sh[0] = B, sh[1] = t1 - t0, sh[2] = Hx, sh[3] = D;
    st[0] = T * Hx * D, st[1] = Hx * D, st[2] = D, st[3] = 1;
    return mks(eptr(base, dt, t0 * Hx * D), dt, 4, sh, st);
}

/* Token t of B sequences of a contiguous [B, T, Hx, D] buffer, as a step tensor [B, Hx, D]. */
static hla_tensor stepv(void *base, int dt, int64_t B, int64_t T, int64_t Hx, int64_t D, int64_t t)
{
    int64_t sh[3], st[3];
    sh[0] = B, sh[1] = Hx, sh[2] = D;
    st[0] = T * Hx * D, st[1] = D, st[2] = 1;
    return mks(eptr(base, dt, t * Hx * D), dt, 3, sh, st);
}

/* max |a - b| / max |b| over n elements (NaN anywhere: +inf). */
static double err_vec(const void *a, int adt, const void *b, int bdt, int64_t n)
{
    double num = 0, den = 0;
    int64_t i;
    for (i = 0; i < n; i++) {
        double x = getv(a, adt, i), y = getv(b, bdt, i), e = fabs(x - y);
        if (e != e || x != x || y != y) return INFINITY;
        if (e > num) num = e;
        if (fabs(y) > den) den = fabs(y);
    }
    return den > 0 ? num / den : num;
}

static int all_equal(const void *p, int dt, int64_t n, double x)
{
    int64_t i;
    for (i = 0; i < n; i++)
        if (!(getv(p, dt, i) == x)) return 0;
    return 1;
}

/* Number of NaN elements among the first n. */
static int64_t count_nan(const void *p, int dt, int64_t n)
{
    int64_t i, c = 0;
    for (i = 0; i < n; i++) c += isnan(getv(p, dt, i)) ? 1 : 0;
    return c;
}

static hla_config cfg_make(int op, int masked, int normalize, double decay, double ridge, int64_t H, int64_t Hkv,
                           int64_t dk, int64_t dv, int64_t chunk)
{
    hla_config c;
    if (hla_config_init(&c, sizeof c) != HLA_OK) CHECK(0, "hla_config_init failed: %s", hla_last_error());
    c.op = op;
    c.masked = masked;
    c.normalize = normalize;
    c.decay = decay;
    c.ridge = ridge;
    c.heads = H;
    c.kv_heads = Hkv;
    c.dk = dk;
    c.dv = dv;
    c.scale = 1.0 / sqrt((double)dk);
    c.chunk_size = chunk;
    return c;
}

static int64_t n_state(const hla_config *c)
{
    int64_t n = -1;
    if (hla_state_elements(c, &n) != HLA_OK) CHECK(0, "hla_state_elements: %s", hla_last_error());
    return n;
}
static int64_t n_summary(const hla_config *c)
{
    int64_t m = -1;
    if (hla_summary_elements(c, &m) != HLA_OK) CHECK(0, "hla_summary_elements: %s", hla_last_error());
    return m;
}

/* ------------------------------------------------------------------------------------------ */
/* A random problem: q [B,T,H,dk], k [B,T,Hkv,dk], v [B,T,Hkv,dv] as doubles already rounded to the
 * element type (so the double evaluation sees exactly the inputs the library sees) and typed
 * copies; ref = the independent double evaluation, [B,T,H,dv]. With cu (B = 1), the N packed
 * sequences are evaluated one at a time.                                                       */

#define MAXSEQ 8

typedef struct {
    hla_config c;
    int dt, sdt;
    int64_t B, T, H, Hkv, dk, dv, n, m;
    int64_t N, cu[MAXSEQ + 1];
    int64_t nq, nk, nv, no;
    double *qd, *kd, *vd, *ref;
    void *q, *k, *v;
} prob;

static void prob_ref(prob *p)
{
    int rc = 0;
    if (p->N == 0) {
        rc = naive_ref(&p->c, p->B, p->T, p->qd, p->kd, p->vd, p->ref);
    } else {
        int64_t i;
        for (i = 0; i < p->N && rc == 0; i++) {
            const int64_t t0 = p->cu[i], L = p->cu[i + 1] - t0;
            rc = naive_ref(&p->c, 1, L, p->qd + t0 * p->H * p->dk, p->kd + t0 * p->Hkv * p->dk,
                           p->vd + t0 * p->Hkv * p->dv, p->ref + t0 * p->H * p->dv);
        }
    }
    if (rc != 0) {
        fprintf(stderr, "test_abi: naive_ref out of memory\n");
        exit(2);
    }
}

static void prob_init(prob *p, const hla_config *c, int dt, int64_t B, int64_t T, int positive, const int64_t *cu,
                      int64_t N)
{
    int64_t i;
    memset(p, 0, sizeof *p);
    p->c = *c;
    p->dt = dt;
    p->sdt = state_dt(dt);
    p->B = B;
    p->T = T;
    p->H = c->heads;
    p->Hkv = c->kv_heads ? c->kv_heads : c->heads;
    p->dk = c->dk;
    p->dv = c->dv;
    p->n = n_state(c);
    p->m = n_summary(c);
    p->N = cu ? N : 0;
    for (i = 0; cu && i <= N; i++) p->cu[i] = cu[i];
    p->nq = B * T * p->H * p->dk;
    p->nk = B * T * p->Hkv * p->dk;
    p->nv = B * T * p->Hkv * p->dv;
    p->no = B * T * p->H * p->dv;
    p->qd = xmalloc((size_t)p->nq * sizeof(double));
    p->kd = xmalloc((size_t)p->nk * sizeof(double));
    p->vd = xmalloc((size_t)p->nv * sizeof(double));
    p->ref = xmalloc((size_t)(p->no ? p->no : 1) * sizeof(double));
    for (i = 0; i < p->nq; i++) p->qd[i] = rnd(dt, positive ? fabs(normal()) : normal());
    for (i = 0; i < p->nk; i++) p->kd[i] = rnd(dt, positive ? fabs(normal()) : normal());
    for (i = 0; i < p->nv; i++) p->vd[i] = rnd(dt, normal());
    p->q = typed_of(p->qd, p->nq, dt);
    p->k = typed_of(p->kd, p->nk, dt);
    p->v = typed_of(p->vd, p->nv, dt);
    prob_ref(p);
}

static void prob_free(prob *p)
{
    free(p->qd);
    free(p->kd);
    free(p->vd);
    free(p->ref);
    free(p->q);
    free(p->k);
    free(p->v);
}

static hla_tensor pq(const prob *p, int64_t t0, int64_t t1) { return tokv(p->q, p->dt, p->B, p->T, p->H, p->dk, t0, t1); }
static hla_tensor pk(const prob *p, int64_t t0, int64_t t1) { return tokv(p->k, p->dt, p->B, p->T, p->Hkv, p->dk, t0, t1); }
static hla_tensor pv(const prob *p, int64_t t0, int64_t t1) { return tokv(p->v, p->dt, p->B, p->T, p->Hkv, p->dv, t0, t1); }
/* tokens [t0,t1) of an output buffer [B,T,H,dv] of the problem's dtype */
static hla_tensor po(const prob *p, void *out, int64_t t0, int64_t t1)
{
    return tokv(out, p->dt, p->B, p->T, p->H, p->dv, t0, t1);
}

/* Relative error of tokens [t0,t1) of out ([B,T,H,dv], typed) against the reference. */
static double err_out(const prob *p, const void *out, int64_t t0, int64_t t1)
{
    double num = 0, den = 0;
    int64_t b, i, per = p->H * p->dv;
    for (b = 0; b < p->B; b++)
        for (i = (b * p->T + t0) * per; i < (b * p->T + t1) * per; i++) {
            double x = getv(out, p->dt, i), r = p->ref[i], e = fabs(x - r);
            if (e != e || x != x) return INFINITY;
            if (e > num) num = e;
            if (fabs(r) > den) den = fabs(r);
        }
    return den > 0 ? num / den : num;
}

/* ------------------------------------------------------------------------------------------ */
/* 1. version, status strings, last_error, config defaults and struct growth, hla_tensor_init  */

/* Size of the hla_config of headers 1.0 and 1.1 (it ended with chunk_size): a caller compiled against them
 * passes struct_size 88, which this library accepts, taking checkpoint_every as 0 and never reading or
 * writing past those 88 bytes. */
#define OLD_CONFIG_SIZE ((size_t)offsetof(hla_config, checkpoint_every))
#define OLD_SENTINEL 0xA5 /* bytes past an 88-byte config: read as checkpoint_every, a negative (invalid) value */

/* An 88-byte configuration as a header-1.1 caller has it: the first 88 bytes of c (struct_size 88) in an
 * allocation of exactly 88 bytes (valgrind and ASan see any access past it). */
static void *old_config_of(const hla_config *c)
{
    hla_config t = *c;
    void *p = xmalloc(OLD_CONFIG_SIZE);
    t.struct_size = (uint32_t)OLD_CONFIG_SIZE;
    memcpy(p, &t, OLD_CONFIG_SIZE);
    return p;
}

/* The same inside a full hla_config whose bytes past 88 hold OLD_SENTINEL. */
static void old_config_in(hla_config *dst, const hla_config *c)
{
    hla_config t = *c;
    t.struct_size = (uint32_t)OLD_CONFIG_SIZE;
    memset(dst, OLD_SENTINEL, sizeof *dst);
    memcpy(dst, &t, OLD_CONFIG_SIZE);
}

static int tail_is_sentinel(const hla_config *c)
{
    size_t i;
    for (i = OLD_CONFIG_SIZE; i < sizeof *c; i++)
        if (((const unsigned char *)c)[i] != OLD_SENTINEL) return 0;
    return 1;
}

/* The 88-byte struct of headers 1.0 and 1.1: hla_config_init fills those bytes only, every reader accepts it
 * and ignores what lies past it. (Results against a 96-byte config: section 11, ck_old_struct.) */
static void old_struct_basics(void)
{
    hla_config full, old, want;
    void *exact;
    int64_t n96 = -1, n88 = -2, m96 = -1, m88 = -2;
    set_ctx("basics: 88-byte hla_config (headers 1.0, 1.1)");
    CHECK(OLD_CONFIG_SIZE == 88 && sizeof(hla_config) == 96, "offsetof(hla_config, checkpoint_every) = %u, sizeof %u",
          (unsigned)OLD_CONFIG_SIZE, (unsigned)sizeof(hla_config));
    hla_config_init(&want, sizeof want);
    memset(&old, OLD_SENTINEL, sizeof old);
    if (OK(hla_config_init(&old, OLD_CONFIG_SIZE), "config_init(size 88)")) {
        CHECK(old.struct_size == OLD_CONFIG_SIZE, "struct_size %u, want 88", (unsigned)old.struct_size);
        CHECK(memcmp((unsigned char *)&old + 4, (unsigned char *)&want + 4, OLD_CONFIG_SIZE - 4) == 0,
              "config_init(size 88): the first 88 bytes are not the defaults");
        CHECK(tail_is_sentinel(&old), "config_init(size 88) wrote past byte 88");
        OK(hla_config_validate(&old), "validate(88 bytes, sentinel bytes past them)");
        CHECK(tail_is_sentinel(&old), "validate(88 bytes) wrote past byte 88");
    }
    /* an exact 88-byte allocation: initialised, validated, sized like a 96-byte config (dk 6, dv 3) */
    exact = xmalloc(OLD_CONFIG_SIZE);
    memset(exact, OLD_SENTINEL, OLD_CONFIG_SIZE);
    OK(hla_config_init((hla_config *)exact, OLD_CONFIG_SIZE), "config_init(exact 88-byte allocation, size 88)");
    full = cfg_make(HLA_OP_HLA3, 1, 1, 0.9, 0.0, 4, 2, 6, 3, 8);
    free(exact);
    exact = old_config_of(&full);
    OK(hla_config_validate((const hla_config *)exact), "validate(exact 88-byte allocation)");
    OK(hla_state_elements(&full, &n96), "state_elements(96 bytes)");
    OK(hla_summary_elements(&full, &m96), "summary_elements(96 bytes)");
    OK(hla_state_elements((const hla_config *)exact, &n88), "state_elements(88 bytes)");
    OK(hla_summary_elements((const hla_config *)exact, &m88), "summary_elements(88 bytes)");
    CHECK(n88 == n96 && m88 == m96 && n96 > 0, "88 bytes: state %lld, summary %lld; 96 bytes: %lld, %lld",
          (long long)n88, (long long)m88, (long long)n96, (long long)m96);
    old_config_in(&old, &full);
    n88 = m88 = -2;
    OK(hla_state_elements(&old, &n88), "state_elements(88 bytes, sentinel past them)");
    CHECK(n88 == n96 && tail_is_sentinel(&old), "88 bytes + sentinel: state %lld (want %lld)", (long long)n88,
          (long long)n96);
    /* a bad field of the 88 is still found; the missing field is 0, not the sentinel */
    old.dk = 0;
    EXPECT(hla_config_validate(&old), HLA_ERR_INVALID_ARGUMENT, "dk", "validate(88 bytes, dk 0)");
    /* a 96-byte config: checkpoint_every is read (negative rejected, naming it), INT64_MAX accepted */
    full.checkpoint_every = -1;
    EXPECT(hla_config_validate(&full), HLA_ERR_INVALID_ARGUMENT, "checkpoint_every", "validate(checkpoint_every -1)");
    full.checkpoint_every = INT64_MIN;
    EXPECT(hla_config_validate(&full), HLA_ERR_INVALID_ARGUMENT, "checkpoint_every",
           "validate(checkpoint_every INT64_MIN)");
    full.checkpoint_every = INT64_MAX;
    OK(hla_config_validate(&full), "validate(checkpoint_every INT64_MAX)");
    /* the sentinel past 88 bytes is the value a 96-byte reader would take: it is rejected there */
    memcpy(&full.checkpoint_every, (const unsigned char *)&old + OLD_CONFIG_SIZE, sizeof full.checkpoint_every);
    EXPECT(hla_config_validate(&full), HLA_ERR_INVALID_ARGUMENT, "checkpoint_every",
           "validate(96 bytes with the sentinel as checkpoint_every)");
    free(exact);
}

static void test_basics(void)
{
    char want[64];
    const char *v, *m;
    hla_config c;
    int i;
    set_ctx("basics");
    /* nothing has failed yet on this thread */
    m = hla_last_error();
    CHECK(m != NULL && m[0] == '\0', "hla_last_error() before any failure is \"%s\", want \"\"", m ? m : "(null)");

    v = hla_version();
    snprintf(want, sizeof want, "%d.%d.%d", HLA_VERSION_MAJOR, HLA_VERSION_MINOR, HLA_VERSION_PATCH);
    CHECK(v != NULL && strcmp(v, want) == 0, "hla_version() = \"%s\", header macros say \"%s\"", v ? v : "(null)", want);
    CHECK(v == hla_version(), "hla_version() returns a different pointer on a second call (not static storage)");
    CHECK(strcmp(HLA_PC_VERSION, "unknown") == 0 || strcmp(HLA_PC_VERSION, want) == 0,
          "pkg-config version \"%s\" differs from the header's \"%s\"", HLA_PC_VERSION, want);
    CHECK(HLA_VERSION_MAJOR == 1, "HLA_VERSION_MAJOR = %d, this test is written for the 1.x ABI", HLA_VERSION_MAJOR);
    CHECK(HLA_MAX_NDIM == 4, "HLA_MAX_NDIM = %d", HLA_MAX_NDIM);

    {
        static const struct {
            hla_status s;
            const char *n;
            int code;
        } names[] = {{HLA_OK, "HLA_OK", 0},
                     {HLA_ERR_NULL_POINTER, "HLA_ERR_NULL_POINTER", 1},
                     {HLA_ERR_INVALID_ARGUMENT, "HLA_ERR_INVALID_ARGUMENT", 2},
                     {HLA_ERR_OVERFLOW, "HLA_ERR_OVERFLOW", 3},
                     {HLA_ERR_MISMATCH, "HLA_ERR_MISMATCH", 4},
                     {HLA_ERR_CORRUPT, "HLA_ERR_CORRUPT", 5},
                     {HLA_ERR_BUFFER_TOO_SMALL, "HLA_ERR_BUFFER_TOO_SMALL", 6},
                     {HLA_ERR_OUT_OF_MEMORY, "HLA_ERR_OUT_OF_MEMORY", 7},
                     {HLA_ERR_DTYPE, "HLA_ERR_DTYPE", 8}};
        for (i = 0; i < (int)(sizeof names / sizeof names[0]); i++) {
            const char *s = hla_status_string(names[i].s);
            CHECK((int)names[i].s == names[i].code, "%s = %d, want %d", names[i].n, (int)names[i].s, names[i].code);
            CHECK(s != NULL && strcmp(s, names[i].n) == 0, "hla_status_string(%d) = \"%s\"", (int)names[i].s,
                  s ? s : "(null)");
        }
        CHECK(strcmp(hla_status_string((hla_status)9), "HLA_ERR_UNKNOWN") == 0, "status 9: \"%s\"",
              hla_status_string((hla_status)9));
        CHECK(strcmp(hla_status_string((hla_status)-1), "HLA_ERR_UNKNOWN") == 0, "status -1: \"%s\"",
              hla_status_string((hla_status)-1));
    }
    CHECK(HLA_OP_HLA2 == 0 && HLA_OP_AHLA == 1 && HLA_OP_HLA3 == 2, "hla_op values");
    CHECK(HLA_FLOAT32 == 0 && HLA_FLOAT64 == 1 && HLA_BFLOAT16 == 2 && HLA_FLOAT16 == 3 && HLA_INT64 == 4 &&
              HLA_INT32 == 5,
          "hla_dtype values");
    CHECK(HLA_PATH_CHUNKED == 0 && HLA_PATH_SERIAL == 1 && HLA_PATH_SCAN == 2, "hla_path values");

    /* defaults */
    memset(&c, 0xAB, sizeof c);
    if (OK(hla_config_init(&c, sizeof c), "hla_config_init")) {
        CHECK(c.struct_size == sizeof c, "struct_size = %u, want %u", (unsigned)c.struct_size, (unsigned)sizeof c);
        CHECK(c.op == HLA_OP_HLA2 && c.masked == 1 && c.normalize == 0 && c.heads == 1 && c.kv_heads == 0 &&
                  c.dk == 64 && c.dv == 64 && c.scale == 1.0 && c.decay == 1.0 && c.ridge == 0.0 && c.eps == 1e-6 &&
                  c.chunk_size == 0 && c.checkpoint_every == 0,
              "defaults: op %d masked %d normalize %d heads %lld kv_heads %lld dk %lld dv %lld scale %g decay %g ridge "
              "%g eps %g chunk %lld checkpoint_every %lld",
              c.op, c.masked, c.normalize, (long long)c.heads, (long long)c.kv_heads, (long long)c.dk,
              (long long)c.dv, c.scale, c.decay, c.ridge, c.eps, (long long)c.chunk_size, (long long)c.checkpoint_every);
        OK(hla_config_validate(&c), "validate(defaults)");
    }
    EXPECT(hla_config_init(NULL, sizeof c), HLA_ERR_NULL_POINTER, "hla_config_init", "config_init(NULL)");
    m = hla_last_error();
    CHECK(strstr(m, "hla_config_init") != NULL, "last_error \"%s\" does not name the function", m);

    /* struct growth: a newer caller's larger struct is accepted when the unknown tail is zero */
    {
        struct {
            hla_config c;
            uint64_t tail[5];
        } big;
        int64_t n0 = -1, n1 = -2;
        hla_config small;
        memset(&big, 0xCD, sizeof big);
        if (OK(hla_config_init(&big.c, sizeof big), "config_init(larger struct)")) {
            CHECK(big.c.struct_size == sizeof big, "struct_size %u, want %u", (unsigned)big.c.struct_size,
                  (unsigned)sizeof big);
            CHECK(big.tail[0] == 0 && big.tail[1] == 0 && big.tail[2] == 0 && big.tail[3] == 0 && big.tail[4] == 0,
                  "config_init left the tail of a larger struct nonzero");
            OK(hla_config_validate(&big.c), "validate(larger struct, zero tail)");
            big.c.dk = 6;
            big.c.dv = 3;
            small = big.c;
            small.struct_size = sizeof small;
            OK(hla_state_elements(&big.c, &n0), "state_elements(larger struct)");
            OK(hla_state_elements(&small, &n1), "state_elements(same struct, own size)");
            CHECK(n0 == n1 && n0 > 0, "state_elements: %lld with the larger struct, %lld without", (long long)n0,
                  (long long)n1);
            big.tail[3] = 1;
            EXPECT(hla_config_validate(&big.c), HLA_ERR_INVALID_ARGUMENT, "hla_config_validate",
                   "validate(larger struct, nonzero tail)");
            EXPECT(hla_state_elements(&big.c, &n0), HLA_ERR_INVALID_ARGUMENT, NULL,
                   "state_elements(larger struct, nonzero tail)");
            big.tail[3] = 0;
            ((unsigned char *)&big)[sizeof big - 1] = 0x80;
            EXPECT(hla_config_validate(&big.c), HLA_ERR_INVALID_ARGUMENT, NULL, "validate(last tail byte nonzero)");
            ((unsigned char *)&big)[sizeof big - 1] = 0;
            OK(hla_config_validate(&big.c), "validate(tail zero again)");
        }
        /* smaller than header 1.0's struct (88 bytes, up to chunk_size): rejected by init and by every reader */
        memset(&small, 0x5A, sizeof small);
        EXPECT(hla_config_init(&small, OLD_CONFIG_SIZE - 8), HLA_ERR_INVALID_ARGUMENT, "hla_config_init",
               "config_init(size 80)");
        EXPECT(hla_config_init(&small, OLD_CONFIG_SIZE - 1), HLA_ERR_INVALID_ARGUMENT, "size", "config_init(size 87)");
        EXPECT(hla_config_init(&small, 0), HLA_ERR_INVALID_ARGUMENT, NULL, "config_init(size 0)");
        EXPECT(hla_config_init(&small, 4), HLA_ERR_INVALID_ARGUMENT, NULL, "config_init(size 4)");
        EXPECT(hla_config_init(&small, (size_t)1 << 40), HLA_ERR_INVALID_ARGUMENT, NULL, "config_init(size 2^40)");
        {
            unsigned char z[sizeof small];
            memset(z, 0x5A, sizeof z);
            CHECK(memcmp(z, &small, sizeof small) == 0, "a failing hla_config_init wrote *cfg");
        }
        hla_config_init(&small, sizeof small);
        small.struct_size = (uint32_t)(OLD_CONFIG_SIZE - 8);
        EXPECT(hla_config_validate(&small), HLA_ERR_INVALID_ARGUMENT, "struct_size", "validate(struct_size 80)");
        EXPECT(hla_state_elements(&small, &n0), HLA_ERR_INVALID_ARGUMENT, "struct_size", "state_elements(struct_size 80)");
        small.struct_size = (uint32_t)(OLD_CONFIG_SIZE - 1);
        EXPECT(hla_config_validate(&small), HLA_ERR_INVALID_ARGUMENT, "struct_size", "validate(struct_size 87)");
        small.struct_size = 0;
        EXPECT(hla_config_validate(&small), HLA_ERR_INVALID_ARGUMENT, NULL, "validate(struct_size 0)");
        EXPECT(hla_state_elements(&small, &n0), HLA_ERR_INVALID_ARGUMENT, NULL, "state_elements(struct_size 0)");
        small.struct_size = 1u << 20;
        EXPECT(hla_config_validate(&small), HLA_ERR_INVALID_ARGUMENT, NULL, "validate(struct_size 2^20)");
    }
    old_struct_basics();

    /* state and summary sizes: positive, growing with the configuration, summary >= state */
    {
        int op;
        for (op = 0; op < 3; op++) {
            hla_config a = cfg_make(op, 1, 0, 1.0, 0.0, 2, 1, 3, 2, 0), b = a;
            int64_t na = n_state(&a), ma = n_summary(&a), nb, nn;
            b.heads = 4;
            nb = n_state(&b);
            a.normalize = 1;
            nn = n_state(&a);
            CHECK(na > 0 && ma >= na && nb > na && nn > na, "%s sizes: n %lld, m %lld, n(H=4) %lld, n(normalize) %lld",
                  op_name(op), (long long)na, (long long)ma, (long long)nb, (long long)nn);
        }
    }
}

static void test_tensor_init(void)
{
    hla_tensor t;
    double buf[64];
    int64_t sh[4] = {2, 3, 4, 5}, st[4] = {-7, 0, 3, 1};
    set_ctx("hla_tensor_init");
    memset(&t, 0xEE, sizeof t);
    if (OK(hla_tensor_init(&t, buf, HLA_FLOAT64, 4, sh, NULL), "contiguous [2,3,4,5]")) {
        CHECK(t.data == (void *)buf && t.dtype == HLA_FLOAT64 && t.ndim == 4, "data/dtype/ndim not filled");
        CHECK(t.shape[0] == 2 && t.shape[1] == 3 && t.shape[2] == 4 && t.shape[3] == 5, "shape not filled");
        CHECK(t.strides[0] == 60 && t.strides[1] == 20 && t.strides[2] == 5 && t.strides[3] == 1,
              "contiguous strides %lld %lld %lld %lld, want 60 20 5 1", (long long)t.strides[0],
              (long long)t.strides[1], (long long)t.strides[2], (long long)t.strides[3]);
    }
    if (OK(hla_tensor_init(&t, buf, HLA_FLOAT32, 2, sh, st), "explicit strides (negative, zero)"))
        CHECK(t.ndim == 2 && t.strides[0] == -7 && t.strides[1] == 0 && t.shape[1] == 3, "explicit strides not kept");
    if (OK(hla_tensor_init(&t, NULL, HLA_INT64, 1, sh, NULL), "data NULL (a tensor to be described)"))
        CHECK(t.data == NULL && t.strides[0] == 1 && t.shape[0] == 2, "1-D tensor");
    sh[1] = 0;
    if (OK(hla_tensor_init(&t, buf, HLA_FLOAT16, 3, sh, NULL), "a zero size"))
        CHECK(t.strides[0] == 4 && t.strides[1] == 4 && t.strides[2] == 1, "strides with a zero size: %lld %lld %lld",
              (long long)t.strides[0], (long long)t.strides[1], (long long)t.strides[2]);
    sh[1] = 3;
    memset(&t, 0x5A, sizeof t);
    EXPECT(hla_tensor_init(NULL, buf, HLA_FLOAT64, 4, sh, NULL), HLA_ERR_NULL_POINTER, "hla_tensor_init", "t NULL");
    EXPECT(hla_tensor_init(&t, buf, HLA_FLOAT64, 4, NULL, NULL), HLA_ERR_NULL_POINTER, "shape", "shape NULL");
    EXPECT(hla_tensor_init(&t, buf, HLA_FLOAT64, 0, sh, NULL), HLA_ERR_INVALID_ARGUMENT, "ndim", "ndim 0");
    EXPECT(hla_tensor_init(&t, buf, HLA_FLOAT64, 5, sh, NULL), HLA_ERR_INVALID_ARGUMENT, "ndim", "ndim 5");
    EXPECT(hla_tensor_init(&t, buf, HLA_FLOAT64, -1, sh, NULL), HLA_ERR_INVALID_ARGUMENT, "ndim", "ndim -1");
    EXPECT(hla_tensor_init(&t, buf, 6, 4, sh, NULL), HLA_ERR_DTYPE, "dtype", "dtype 6");
    EXPECT(hla_tensor_init(&t, buf, -1, 4, sh, NULL), HLA_ERR_DTYPE, "dtype", "dtype -1");
    sh[2] = -4;
    EXPECT(hla_tensor_init(&t, buf, HLA_FLOAT64, 4, sh, NULL), HLA_ERR_INVALID_ARGUMENT, "shape", "negative size");
    sh[2] = INT64_C(1) << 31;
    sh[3] = INT64_C(1) << 31;
    EXPECT(hla_tensor_init(&t, buf, HLA_FLOAT64, 4, sh, NULL), HLA_ERR_OVERFLOW, NULL, "size product 2^62 * 6");
    sh[2] = 4, sh[3] = INT64_MAX;
    EXPECT(hla_tensor_init(&t, buf, HLA_FLOAT64, 4, sh, NULL), HLA_ERR_OVERFLOW, NULL, "size INT64_MAX");
    sh[3] = 5;
    st[0] = INT64_MAX, st[1] = 1, st[2] = 1, st[3] = 1;
    EXPECT(hla_tensor_init(&t, buf, HLA_FLOAT64, 4, sh, st), HLA_ERR_OVERFLOW, NULL, "stride INT64_MAX");
    st[0] = INT64_MIN;
    EXPECT(hla_tensor_init(&t, buf, HLA_FLOAT64, 4, sh, st), HLA_ERR_OVERFLOW, NULL, "stride INT64_MIN");
    st[0] = INT64_C(1) << 58;
    OK(hla_tensor_init(&t, buf, HLA_FLOAT64, 4, sh, st), "stride 2^58 (extent 2^58 + 9, within range)");
    st[0] = (INT64_C(1) << 59) - 1;
    memset(&t, 0x5A, sizeof t);
    EXPECT(hla_tensor_init(&t, buf, HLA_FLOAT64, 4, sh, st), HLA_ERR_OVERFLOW, NULL,
           "stride 2^59 - 1 (the extent with the other dimensions passes 2^59 - 1)");
    {
        unsigned char z[sizeof t];
        memset(z, 0x5A, sizeof z);
        CHECK(memcmp(z, &t, sizeof t) == 0, "a failing hla_tensor_init wrote *t");
    }
}

/* ------------------------------------------------------------------------------------------ */
/* 2. numerics: every operator x masked x normalize x decay x ridge x dtype, every path         */

static void numerics_case(int op, int dt, int masked, int norm, double decay, double ridge)
{
    const int64_t B = 2, T = 37, H = 4, Hkv = 2, dk = 5, dv = 3;
    hla_config c = cfg_make(op, masked, norm, decay, ridge, H, Hkv, dk, dv, 8);
    prob p;
    const double tol = tol_of(dt);
    double stol, e;
    int sdt, path, i;
    int64_t n, m, t;
    void *out, *fin[3], *sst;
    hla_tensor tq, tk, tv, to, ts;

    set_ctx("%s %s %s norm=%d decay=%g ridge=%g", op_name(op), dt_name(dt), masked ? "masked" : "unmasked", norm,
            decay, ridge);
    prob_init(&p, &c, dt, B, T, norm, NULL, 0); /* normalize: positive features, well-conditioned denominators */
    sdt = p.sdt, n = p.n, m = p.m;
    stol = state_tol(dt);
    out = talloc(p.no, dt);
    tq = pq(&p, 0, T), tk = pk(&p, 0, T), tv = pv(&p, 0, T), to = po(&p, out, 0, T);

    /* the library's own brute force against the independent one */
    if (OK(hla_reference(&c, &tq, &tk, &tv, &to, NULL), "hla_reference")) {
        e = err_out(&p, out, 0, T);
        CHECK(e <= tol, "hla_reference vs naive_ref: rel err %.3g (tol %g)", e, tol);
    }

    /* hla_forward on every path, from a zero state, with the final state */
    for (path = 0; path < 3; path++) {
        hla_tensor tf;
        fin[path] = talloc(B * n, sdt);
        tf = mk(fin[path], sdt, 2, B, n, 0, 0);
        fill(out, dt, p.no, NAN);
        if (OK(hla_forward(&c, path, &tq, &tk, &tv, &to, NULL, NULL, &tf, NULL), "forward %s", path_name(path))) {
            e = err_out(&p, out, 0, T);
            CHECK(e <= tol, "forward %s vs naive_ref: rel err %.3g (tol %g)", path_name(path), e, tol);
        }
    }
    /* without a final state (and initial NULL) on the chunked path */
    fill(out, dt, p.no, NAN);
    if (OK(hla_forward(&c, HLA_PATH_CHUNKED, &tq, &tk, &tv, &to, NULL, NULL, NULL, NULL), "forward, no states"))
        CHECK(err_out(&p, out, 0, T) <= tol, "forward without states: rel err %.3g", err_out(&p, out, 0, T));

    /* streaming: hla_step token by token on a [B, n] state (zeroed by reset_rows), strided step views */
    sst = talloc(B * n, sdt);
    ts = mk(sst, sdt, 2, B, n, 0, 0);
    OK(hla_state_reset_rows(&c, &ts, NULL), "reset_rows(all)");
    CHECK(all_equal(sst, sdt, B * n, 0.0), "reset_rows(NULL) did not zero every row");
    fill(out, dt, p.no, NAN);
    for (t = 0; t < T; t++) {
        hla_tensor q3 = stepv(p.q, dt, B, T, H, dk, t), k3 = stepv(p.k, dt, B, T, Hkv, dk, t),
                   v3 = stepv(p.v, dt, B, T, Hkv, dv, t), o3 = stepv(out, dt, B, T, H, dv, t);
        hla_status rc = hla_step(&c, &q3, &k3, &v3, &o3, &ts, NULL);
        if (rc != HLA_OK) {
            EXPECT(rc, HLA_OK, NULL, "step %lld", (long long)t);
            break;
        }
    }
    e = err_out(&p, out, 0, T);
    CHECK(e <= tol, "hla_step x %lld vs naive_ref: rel err %.3g (tol %g)", (long long)T, e, tol);
    for (path = 0; path < 3; path++) {
        e = err_vec(fin[path], sdt, sst, sdt, B * n);
        CHECK(e <= stol, "final state of forward %s vs the streamed state: rel err %.3g", path_name(path), e);
    }

    /* split forward [0,a) then [a,T) through a state: plain, rows of a larger cache in place,
     * serialized in between, a padded row stride with int32 rows */
    {
        static const int64_t splits[4] = {1, 8, 13, 36};
        const int64_t slots = 5;
        void *cache = talloc(slots * n, sdt);
        for (i = 0; i < 4; i++) {
            const int64_t a = splits[i];
            const int p1 = i % 3, p2 = (i + 1) % 3;
            int64_t rv[2], stride = n, nrows = B;
            void *rows = NULL;
            hla_tensor tr, tS, q1 = pq(&p, 0, a), k1 = pk(&p, 0, a), v1 = pv(&p, 0, a), o1 = po(&p, out, 0, a),
                               q2 = pq(&p, a, T), k2 = pk(&p, a, T), v2 = pv(&p, a, T), o2 = po(&p, out, a, T);
            int64_t sh[2], st[2];
            fill(cache, sdt, slots * n, 7.25);
            if (i == 1 || i == 3) {
                rv[0] = 3;
                rv[1] = i == 1 ? 0 : 1;
                rows = ints_of(rv, 2, i == 1 ? HLA_INT64 : HLA_INT32);
                nrows = slots;
                if (i == 3) { /* 4 rows of a padded layout: row r at r * (n + 3) */
                    stride = n + 3;
                    nrows = 4;
                }
            }
            sh[0] = nrows, sh[1] = n, st[0] = stride, st[1] = 1;
            tS = mks(cache, sdt, 2, sh, st);
            tr = mk(rows, i == 1 ? HLA_INT64 : HLA_INT32, 1, 2, 0, 0, 0);
            fill(out, dt, p.no, NAN);
            OK(hla_forward(&c, p1, &q1, &k1, &v1, &o1, NULL, NULL, &tS, rows ? &tr : NULL), "split %lld: forward [0,%lld) %s",
               (long long)a, (long long)a, path_name(p1));
            if (i == 2) { /* through serialize -> deserialize into another buffer */
                size_t need = 0, w = 0;
                unsigned char *buf;
                void *s2 = talloc(B * n, sdt);
                hla_config cd;
                hla_tensor t2 = mk(s2, sdt, 2, B, n, 0, 0);
                hla_config_init(&cd, sizeof cd);
                OK(hla_state_serialize(&c, &tS, NULL, NULL, 0, &need), "serialize size query");
                buf = xmalloc(need);
                OK(hla_state_serialize(&c, &tS, NULL, buf, need, &w), "serialize");
                OK(hla_state_deserialize(buf, w, &cd, &t2), "deserialize");
                memcpy(cache, s2, (size_t)(B * n) * esize(sdt));
                free(buf);
                free(s2);
            }
            OK(hla_forward(&c, p2, &q2, &k2, &v2, &o2, NULL, &tS, &tS, rows ? &tr : NULL),
               "split %lld: forward [%lld,T) %s from the state, in place", (long long)a, (long long)a, path_name(p2));
            e = err_out(&p, out, 0, T);
            CHECK(e <= tol, "split at %lld (%s then %s%s): rel err %.3g", (long long)a, path_name(p1), path_name(p2),
                  i == 1 ? ", rows of a cache" : i == 2 ? ", serialized" : i == 3 ? ", int32 rows, padded" : "", e);
            {
                int64_t b;
                double ee = 0;
                for (b = 0; b < B; b++) {
                    int64_t r = rows ? rv[b] : b;
                    double eb = err_vec(eptr(cache, sdt, r * stride), sdt, eptr(sst, sdt, b * n), sdt, n);
                    if (!(eb <= ee)) ee = eb;
                }
                CHECK(ee <= stol, "split at %lld: final state vs streamed: rel err %.3g", (long long)a, ee);
                if (rows) {
                    int64_t r, ok = 1;
                    for (r = 0; r < nrows; r++)
                        if (r != rv[0] && r != rv[1] && !all_equal(eptr(cache, sdt, r * stride), sdt, n, 7.25)) ok = 0;
                    CHECK(ok, "split at %lld: rows not named by rows were written", (long long)a);
                }
            }
            free(rows);
        }
        free(cache);
    }

    /* associative scan: summaries of [0,7) [7,17) [17,26), combined both ways, carry-in for [26,T) */
    {
        const int64_t b1 = 7, b2 = 17, b3 = 26;
        void *SA = talloc(B * m, sdt), *SB = talloc(B * m, sdt), *SC = talloc(B * m, sdt), *SAB = talloc(B * m, sdt),
             *SBC = talloc(B * m, sdt), *S1 = talloc(B * m, sdt), *S2 = talloc(B * m, sdt), *SW = talloc(B * m, sdt),
             *SX = talloc(B * m, sdt), *st2 = talloc(3 * n, sdt);
        int64_t lA[2] = {-1, -1}, lB[2] = {-1, -1}, lC[2] = {-1, -1}, lAB[2] = {-1, -1}, lBC[2] = {-1, -1},
                l1[2] = {-1, -1}, l2[2] = {-1, -1}, lW[2] = {-1, -1}, lX[2];
        hla_tensor tA = mk(SA, sdt, 2, B, m, 0, 0), tB = mk(SB, sdt, 2, B, m, 0, 0), tC = mk(SC, sdt, 2, B, m, 0, 0),
                   tAB = mk(SAB, sdt, 2, B, m, 0, 0), tBC = mk(SBC, sdt, 2, B, m, 0, 0),
                   t1 = mk(S1, sdt, 2, B, m, 0, 0), t2 = mk(S2, sdt, 2, B, m, 0, 0), tW = mk(SW, sdt, 2, B, m, 0, 0),
                   tX = mk(SX, sdt, 2, B, m, 0, 0);
        hla_tensor LA = mk(lA, HLA_INT64, 1, B, 0, 0, 0), LB = mk(lB, HLA_INT64, 1, B, 0, 0, 0),
                   LC = mk(lC, HLA_INT64, 1, B, 0, 0, 0), LAB = mk(lAB, HLA_INT64, 1, B, 0, 0, 0),
                   LBC = mk(lBC, HLA_INT64, 1, B, 0, 0, 0), L1 = mk(l1, HLA_INT64, 1, B, 0, 0, 0),
                   L2 = mk(l2, HLA_INT64, 1, B, 0, 0, 0), LW = mk(lW, HLA_INT64, 1, B, 0, 0, 0),
                   LX = mk(lX, HLA_INT64, 1, B, 0, 0, 0);
        hla_tensor qa = pq(&p, 0, b1), ka = pk(&p, 0, b1), va = pv(&p, 0, b1), qb = pq(&p, b1, b2),
                   kb = pk(&p, b1, b2), vb = pv(&p, b1, b2), qc = pq(&p, b2, b3), kc = pk(&p, b2, b3),
                   vc = pv(&p, b2, b3), qw = pq(&p, 0, b3), kw = pk(&p, 0, b3), vw = pv(&p, 0, b3);
        OK(hla_summarize(&c, &qa, &ka, &va, NULL, &tA, &LA), "summarize A");
        OK(hla_summarize(&c, &qb, &kb, &vb, NULL, &tB, &LB), "summarize B");
        OK(hla_summarize(&c, &qc, &kc, &vc, NULL, &tC, NULL), "summarize C (lengths NULL)");
        lC[0] = lC[1] = b3 - b2;
        OK(hla_summarize(&c, &qw, &kw, &vw, NULL, &tW, &LW), "summarize whole prefix");
        CHECK(lA[0] == b1 && lA[1] == b1 && lB[0] == b2 - b1 && lB[1] == b2 - b1 && lW[0] == b3 && lW[1] == b3,
              "summarize lengths %lld %lld %lld %lld %lld %lld", (long long)lA[0], (long long)lA[1], (long long)lB[0],
              (long long)lB[1], (long long)lW[0], (long long)lW[1]);
        OK(hla_summary_combine(&c, &tA, &LA, &tB, &LB, &tAB, &LAB), "combine(A,B)");
        OK(hla_summary_combine(&c, &tAB, &LAB, &tC, &LC, &t1, &L1), "combine(AB,C)");
        OK(hla_summary_combine(&c, &tB, &LB, &tC, &LC, &tBC, &LBC), "combine(B,C)");
        OK(hla_summary_combine(&c, &tA, &LA, &tBC, &LBC, &t2, &L2), "combine(A,BC)");
        CHECK(lAB[0] == b2 && l1[0] == b3 && l1[1] == b3 && l2[0] == b3 && l2[1] == b3, "combined lengths %lld %lld %lld",
              (long long)lAB[0], (long long)l1[0], (long long)l2[0]);
        e = err_vec(S1, sdt, SW, sdt, B * m);
        CHECK(e <= stol, "(A.B).C vs summary of the whole prefix: rel err %.3g", e);
        e = err_vec(S2, sdt, SW, sdt, B * m);
        CHECK(e <= stol, "A.(B.C) vs summary of the whole prefix: rel err %.3g", e);
        /* in place: result = a, result_lengths = a_lengths */
        memcpy(SX, SA, (size_t)(B * m) * esize(sdt));
        lX[0] = lA[0], lX[1] = lA[1];
        OK(hla_summary_combine(&c, &tX, &LX, &tB, &LB, &tX, &LX), "combine in place (result = a)");
        e = err_vec(SX, sdt, SAB, sdt, B * m);
        CHECK(e <= stol && lX[0] == b2 && lX[1] == b2, "in-place combine differs: rel err %.3g, length %lld", e,
              (long long)lX[0]);
        /* in place into b */
        memcpy(SX, SC, (size_t)(B * m) * esize(sdt));
        OK(hla_summary_combine(&c, &tAB, &LAB, &tX, &LC, &tX, NULL), "combine in place (result = b)");
        e = err_vec(SX, sdt, S1, sdt, B * m);
        CHECK(e <= stol, "combine into b differs: rel err %.3g", e);
        {
            void *segs[3];
            static const char *nm[3] = {"(A.B).C", "A.(B.C)", "whole prefix"};
            segs[0] = S1, segs[1] = S2, segs[2] = SW;
            for (i = 0; i < 3; i++) {
                /* carry-in into rows {2, 0} of a 3-row state */
                int64_t rv[2] = {2, 0};
                void *rr = ints_of(rv, 2, HLA_INT64);
                hla_tensor tr = mk(rr, HLA_INT64, 1, 2, 0, 0, 0), tst = mk(st2, sdt, 2, 3, n, 0, 0),
                           ts1 = mk(segs[i], sdt, 2, B, m, 0, 0), q2 = pq(&p, b3, T), k2 = pk(&p, b3, T),
                           v2 = pv(&p, b3, T), o2 = po(&p, out, b3, T);
                fill(st2, sdt, 3 * n, 7.25);
                OK(hla_summary_to_state(&c, &ts1, &tst, &tr), "summary_to_state(%s)", nm[i]);
                CHECK(all_equal(eptr(st2, sdt, n), sdt, n, 7.25), "summary_to_state wrote row 1 (not in rows)");
                fill(out, dt, p.no, NAN);
                OK(hla_forward(&c, i, &q2, &k2, &v2, &o2, NULL, &tst, &tst, &tr), "forward %s from %s",
                   path_name(i), nm[i]);
                e = err_out(&p, out, b3, T);
                CHECK(e <= tol, "carry-in from %s, forward %s of [26,T): rel err %.3g", nm[i], path_name(i), e);
                e = fmax(err_vec(eptr(st2, sdt, 2 * n), sdt, sst, sdt, n),
                         err_vec(st2, sdt, eptr(sst, sdt, n), sdt, n));
                CHECK(e <= stol, "state after carry-in from %s and the rest vs streamed: rel err %.3g", nm[i], e);
                free(rr);
            }
        }
        /* one-token segment: summarize [0,1), carry-in (rows NULL), forward [1,T) */
        {
            hla_tensor q1 = pq(&p, 0, 1), k1 = pk(&p, 0, 1), v1 = pv(&p, 0, 1), tst = mk(st2, sdt, 2, B, n, 0, 0),
                       q2 = pq(&p, 1, T), k2 = pk(&p, 1, T), v2 = pv(&p, 1, T), o2 = po(&p, out, 1, T);
            OK(hla_summarize(&c, &q1, &k1, &v1, NULL, &tA, &LA), "summarize T=1");
            CHECK(lA[0] == 1 && lA[1] == 1, "T=1 lengths %lld %lld", (long long)lA[0], (long long)lA[1]);
            OK(hla_summary_to_state(&c, &tA, &tst, NULL), "summary_to_state(T=1)");
            fill(out, dt, p.no, NAN);
            OK(hla_forward(&c, HLA_PATH_CHUNKED, &q2, &k2, &v2, &o2, NULL, &tst, NULL, NULL), "forward after T=1");
            e = err_out(&p, out, 1, T);
            CHECK(e <= tol, "one-token segment carry-in: rel err %.3g", e);
        }
        free(SA), free(SB), free(SC), free(SAB), free(SBC), free(S1), free(S2), free(SW), free(SX), free(st2);
    }

    /* T = 1 on every path */
    for (path = 0; path < 3; path++) {
        hla_tensor q1 = pq(&p, 0, 1), k1 = pk(&p, 0, 1), v1 = pv(&p, 0, 1), o1 = po(&p, out, 0, 1);
        fill(out, dt, p.no, NAN);
        OK(hla_forward(&c, path, &q1, &k1, &v1, &o1, NULL, NULL, NULL, NULL), "forward T=1 %s", path_name(path));
        e = err_out(&p, out, 0, 1);
        CHECK(e <= tol, "forward T=1 %s: rel err %.3g", path_name(path), e);
    }

    for (path = 0; path < 3; path++) free(fin[path]);
    free(sst);
    free(out);
    prob_free(&p);
}

static void test_numerics(void)
{
    static const double decays[2] = {1.0, 0.9};
    static const double ridges[2] = {0.0, 0.5};
    int op, dt, masked, norm, di, ri;
    for (op = 0; op < 3; op++)
        for (dt = 0; dt < 2; dt++) /* HLA_FLOAT32, HLA_FLOAT64 */
            for (masked = 1; masked >= 0; masked--)
                for (norm = 0; norm < 2; norm++)
                    for (di = 0; di < 2; di++)
                        for (ri = 0; ri < (op == HLA_OP_HLA2 ? 2 : 1); ri++)
                            numerics_case(op, dt, masked, norm, decays[di], ridges[ri]);
}

/* bfloat16 and float16 inputs (float32 state), every path including step */
static void test_half(void)
{
    int op, dt, masked, norm;
    for (dt = HLA_BFLOAT16; dt <= HLA_FLOAT16; dt++)
        for (op = 0; op < 3; op++)
            for (masked = 1; masked >= 0; masked--)
                for (norm = 0; norm < 2; norm++)
                    numerics_case(op, dt, masked, norm, 0.9, op == HLA_OP_HLA2 ? 0.5 : 0.0);
}

/* chunk sizes (automatic, 1, not dividing T, = T, > 1024) on the chunked and scan paths */
static void test_chunk_sizes(void)
{
    static const int64_t chunks[] = {0, 1, 3, 37, 5000};
    int op, dt, ci, path;
    for (op = 0; op < 3; op++)
        for (dt = 0; dt < 2; dt++) {
            hla_config c = cfg_make(op, 1, 0, 0.9, op == HLA_OP_HLA2 ? 0.5 : 0.0, 4, 2, 5, 3, 8);
            prob p;
            void *out;
            set_ctx("chunk sizes %s %s", op_name(op), dt_name(dt));
            prob_init(&p, &c, dt, 2, 37, 0, NULL, 0);
            out = talloc(p.no, dt);
            for (ci = 0; ci < (int)(sizeof chunks / sizeof chunks[0]); ci++)
                for (path = 0; path < 3; path += 2) {
                    hla_tensor tq = pq(&p, 0, p.T), tk = pk(&p, 0, p.T), tv = pv(&p, 0, p.T), to = po(&p, out, 0, p.T);
                    c.chunk_size = chunks[ci];
                    fill(out, dt, p.no, NAN);
                    if (OK(hla_forward(&c, path, &tq, &tk, &tv, &to, NULL, NULL, NULL, NULL), "forward %s chunk %lld",
                           path_name(path), (long long)chunks[ci]))
                        CHECK(err_out(&p, out, 0, p.T) <= tol_of(dt), "forward %s chunk_size %lld: rel err %.3g",
                              path_name(path), (long long)chunks[ci], err_out(&p, out, 0, p.T));
                }
            free(out);
            prob_free(&p);
        }
}

/* a longer sequence (T = 200, automatic chunk size, dk = 16): every path against naive_ref */
static void test_long(void)
{
    int op, dt, path;
    for (op = 0; op < 3; op++)
        for (dt = 0; dt < 2; dt++) {
            hla_config c = cfg_make(op, 1, 0, op == HLA_OP_AHLA ? 1.0 : 0.99, 0.0, 2, 1, 16, 8, 0);
            prob p;
            void *out, *st;
            set_ctx("long sequence %s %s", op_name(op), dt_name(dt));
            prob_init(&p, &c, dt, 1, 200, 0, NULL, 0);
            out = talloc(p.no, dt);
            st = talloc(p.n, p.sdt);
            for (path = 0; path < 4; path++) {
                hla_tensor tq = pq(&p, 0, p.T), tk = pk(&p, 0, p.T), tv = pv(&p, 0, p.T), to = po(&p, out, 0, p.T),
                           ts = mk(st, p.sdt, 2, 1, p.n, 0, 0);
                fill(out, dt, p.no, NAN);
                if (path < 3) {
                    OK(hla_forward(&c, path, &tq, &tk, &tv, &to, NULL, NULL, NULL, NULL), "forward %s", path_name(path));
                } else {
                    int64_t t;
                    fill(st, p.sdt, p.n, 0.0);
                    for (t = 0; t < p.T; t++) {
                        hla_tensor q3 = stepv(p.q, dt, 1, p.T, 2, 16, t), k3 = stepv(p.k, dt, 1, p.T, 1, 16, t),
                                   v3 = stepv(p.v, dt, 1, p.T, 1, 8, t), o3 = stepv(out, dt, 1, p.T, 2, 8, t);
                        if (hla_step(&c, &q3, &k3, &v3, &o3, &ts, NULL) != HLA_OK) break;
                    }
                }
                CHECK(err_out(&p, out, 0, p.T) <= tol_of(dt), "T = 200, %s: rel err %.3g",
                      path < 3 ? path_name(path) : "step", err_out(&p, out, 0, p.T));
            }
            free(out), free(st);
            prob_free(&p);
        }
}

/* ------------------------------------------------------------------------------------------ */
/* 3. strided tensors: [B,H,T,D] views, negative, zero and padded strides, on every path        */

/* A view of logical shape sh whose dimensions lie in memory in the order `order` (outermost first),
 * with `pad` unused elements after each dimension's run, the dimensions of `neg` walked backwards and
 * those of `zero` broadcast (stride 0). */
static hla_tensor view_make(void **phys, int dt, int nd, const int64_t *sh, const int *order, unsigned neg,
                            unsigned zero, int64_t pad)
{
    int64_t st[4] = {0, 0, 0, 0}, run = 1, lo = 0, hi = 0;
    int j;
    for (j = nd - 1; j >= 0; j--) {
        st[order[j]] = run;
        run = run * sh[order[j]] + pad;
    }
    for (j = 0; j < nd; j++) {
        if (zero & (1u << j)) st[j] = 0;
        if (neg & (1u << j)) st[j] = -st[j];
        if (st[j] < 0)
            lo += st[j] * (sh[j] - 1);
        else
            hi += st[j] * (sh[j] - 1);
    }
    *phys = talloc(hi - lo + 1, dt);
    return mks(eptr(*phys, dt, -lo), dt, nd, sh, st);
}

static int64_t vcount(const hla_tensor *t)
{
    int64_t c = 1;
    int j;
    for (j = 0; j < t->ndim; j++) c *= t->shape[j];
    return c;
}

/* Logical element i (row-major over the shape) <-> its place in the view. */
static int64_t voff(const hla_tensor *t, int64_t i)
{
    int64_t off = 0;
    int j;
    for (j = t->ndim - 1; j >= 0; j--) {
        off += (i % t->shape[j]) * t->strides[j];
        i /= t->shape[j];
    }
    return off;
}
static void view_put(const hla_tensor *t, const double *x)
{
    int64_t i, n = vcount(t);
    for (i = 0; i < n; i++) setv(t->data, t->dtype, voff(t, i), x[i]);
}
static void view_get(const hla_tensor *t, double *x)
{
    int64_t i, n = vcount(t);
    for (i = 0; i < n; i++) x[i] = getv(t->data, t->dtype, voff(t, i));
}
/* token t of a [B,T,Hx,D] view as a step tensor [B,Hx,D] */
static hla_tensor view_step(const hla_tensor *t, int64_t tok)
{
    hla_tensor s = *t;
    s.data = eptr(t->data, t->dtype, tok * t->strides[1]);
    s.ndim = 3;
    s.shape[1] = t->shape[2], s.shape[2] = t->shape[3], s.shape[3] = 0;
    s.strides[1] = t->strides[2], s.strides[2] = t->strides[3], s.strides[3] = 0;
    return s;
}

static void strided_case(int op, int dt)
{
    const int64_t B = 2, T = 21, H = 4, Hkv = 2, dk = 5, dv = 3;
    hla_config c = cfg_make(op, 1, 0, 0.9, op == HLA_OP_HLA2 ? 0.5 : 0.0, H, Hkv, dk, dv, 4);
    prob p;
    static const int oq[4] = {0, 2, 1, 3}, ok[4] = {0, 1, 2, 3}, ov[4] = {2, 0, 1, 3}, oo[4] = {0, 2, 1, 3};
    int64_t shq[4], shk[4], shv[4], sho[4], shs[2], sts[2], t;
    void *phq, *phk, *phv, *pho, *sphys, *sst, *summ, *outc;
    hla_tensor vq, vk, vv, vo, vs, ts;
    double *tmp, e;
    const double tol = tol_of(dt);
    int path, sdt;
    int64_t n, m;

    set_ctx("strided %s %s", op_name(op), dt_name(dt));
    prob_init(&p, &c, dt, B, T, 0, NULL, 0);
    sdt = p.sdt, n = p.n, m = p.m;
    shq[0] = B, shq[1] = T, shq[2] = H, shq[3] = dk;
    shk[0] = B, shk[1] = T, shk[2] = Hkv, shk[3] = dk;
    shv[0] = B, shv[1] = T, shv[2] = Hkv, shv[3] = dv;
    sho[0] = B, sho[1] = T, sho[2] = H, sho[3] = dv;
    vq = view_make(&phq, dt, 4, shq, oq, 0u, 0u, 0);       /* [B,H,T,D] layout */
    vk = view_make(&phk, dt, 4, shk, ok, 1u << 1, 0u, 1);  /* time reversed, padded */
    vv = view_make(&phv, dt, 4, shv, ov, 9u, 1u << 2, 0);  /* batch and features reversed, heads broadcast */
    vo = view_make(&pho, dt, 4, sho, oo, 1u << 2, 0u, 2);  /* [B,H,T,D], heads reversed, padded */
    view_put(&vq, p.qd);
    view_put(&vk, p.kd);
    view_put(&vv, p.vd);
    /* what the views hold (v's broadcast heads: the last write) is the problem */
    view_get(&vq, p.qd);
    view_get(&vk, p.kd);
    view_get(&vv, p.vd);
    prob_ref(&p);
    tmp = xmalloc((size_t)p.no * sizeof(double));
    outc = talloc(p.no, dt);
    /* state rows walked backwards with a padded stride */
    sphys = talloc(B * (n + 2), sdt);
    shs[0] = B, shs[1] = n, sts[0] = -(n + 2), sts[1] = 1;
    vs = mks(eptr(sphys, sdt, (B - 1) * (n + 2)), sdt, 2, shs, sts);
    sst = talloc(B * n, sdt);
    ts = mk(sst, sdt, 2, B, n, 0, 0);

    /* streaming through step views of the strided tensors */
    OK(hla_state_reset_rows(&c, &ts, NULL), "reset");
    for (t = 0; t < p.no; t++) tmp[t] = NAN;
    view_put(&vo, tmp);
    for (t = 0; t < T; t++) {
        hla_tensor q3 = view_step(&vq, t), k3 = view_step(&vk, t), v3 = view_step(&vv, t), o3 = view_step(&vo, t);
        if (!OK(hla_step(&c, &q3, &k3, &v3, &o3, &ts, NULL), "step %lld", (long long)t)) break;
    }
    view_get(&vo, tmp);
    e = err_vec(tmp, HLA_FLOAT64, p.ref, HLA_FLOAT64, p.no);
    CHECK(e <= tol, "strided steps: rel err %.3g", e);

    for (path = 0; path < 3; path++) {
        int64_t i, np = vcount(&vo);
        for (i = 0; i < np; i++) tmp[i] = NAN;
        view_put(&vo, tmp);
        fill(sphys, sdt, B * (n + 2), NAN);
        if (OK(hla_forward(&c, path, &vq, &vk, &vv, &vo, NULL, NULL, &vs, NULL), "strided forward %s",
               path_name(path))) {
            view_get(&vo, tmp);
            e = err_vec(tmp, HLA_FLOAT64, p.ref, HLA_FLOAT64, p.no);
            CHECK(e <= tol, "strided forward %s: rel err %.3g", path_name(path), e);
            e = fmax(err_vec(eptr(sphys, sdt, (B - 1) * (n + 2)), sdt, sst, sdt, n),
                     err_vec(sphys, sdt, eptr(sst, sdt, n), sdt, n));
            CHECK(e <= state_tol(dt), "final state through a negative row stride vs streamed: rel err %.3g", e);
        }
    }
    /* the library's reference on the same views */
    if (OK(hla_reference(&c, &vq, &vk, &vv, &vo, NULL), "strided reference")) {
        view_get(&vo, tmp);
        e = err_vec(tmp, HLA_FLOAT64, p.ref, HLA_FLOAT64, p.no);
        CHECK(e <= tol, "strided reference: rel err %.3g", e);
    }
    /* summary of the strided sequences -> state = streamed state */
    summ = talloc(B * m, sdt);
    {
        void *st2 = talloc(B * n, sdt);
        hla_tensor tsu = mk(summ, sdt, 2, B, m, 0, 0), tst = mk(st2, sdt, 2, B, n, 0, 0);
        OK(hla_summarize(&c, &vq, &vk, &vv, NULL, &tsu, NULL), "strided summarize");
        OK(hla_summary_to_state(&c, &tsu, &tst, NULL), "summary_to_state");
        e = err_vec(st2, sdt, sst, sdt, B * n);
        CHECK(e <= state_tol(dt), "summary of strided sequences -> state vs streamed: rel err %.3g", e);
        free(st2);
    }
    free(summ);
    free(phq), free(phk), free(phv), free(pho), free(sphys), free(sst), free(tmp), free(outc);
    prob_free(&p);
}

static void test_strided(void)
{
    int op;
    for (op = 0; op < 3; op++) {
        strided_case(op, HLA_FLOAT64);
        strided_case(op, HLA_FLOAT32);
        strided_case(op, HLA_BFLOAT16);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* 4. packed sequences (cu_seqlens) = each sequence alone; prefill into rows of a cache         */

static void packed_case(int op, int dt, int cudt)
{
    enum { N = 5 };
    static const int64_t lens[N] = {5, 1, 13, 8, 3};
    static const int64_t slotrows[N] = {6, 1, 4, 0, 3};
    const int64_t H = 4, Hkv = 2, dk = 5, dv = 3, slots = 8;
    int64_t cu[N + 1], T, n, m, i, lw[N];
    hla_config c = cfg_make(op, 1, 0, 0.9, op == HLA_OP_HLA2 ? 0.5 : 0.0, H, Hkv, dk, dv, 4);
    prob p, pre;
    const double tol = tol_of(dt);
    double e;
    int sdt, path;
    void *cub, *out, *aout, *ini, *fin, *afin, *cache, *rowsb, *sum, *asum;
    hla_tensor tcu, tq, tk, tv, to, tini, tfin, tcache, trows, tsum, tl;

    set_ctx("cu_seqlens %s %s cu %s", op_name(op), dt_name(dt), dt_name(cudt));
    cu[0] = 0;
    for (i = 0; i < N; i++) cu[i + 1] = cu[i] + lens[i];
    T = cu[N];
    prob_init(&p, &c, dt, 1, T, 0, cu, N);
    sdt = p.sdt, n = p.n, m = p.m;
    cub = ints_of(cu, N + 1, cudt);
    tcu = mk(cub, cudt, 1, N + 1, 0, 0, 0);
    out = talloc(p.no, dt);
    aout = talloc(p.no, dt);
    tq = pq(&p, 0, T), tk = pk(&p, 0, T), tv = pv(&p, 0, T), to = po(&p, out, 0, T);

    /* zero initial states: each path and the library's reference against the per-sequence sums */
    if (OK(hla_reference(&c, &tq, &tk, &tv, &to, &tcu), "packed reference"))
        CHECK(err_out(&p, out, 0, T) <= tol, "packed reference: rel err %.3g", err_out(&p, out, 0, T));
    for (path = 0; path < 3; path++) {
        fill(out, dt, p.no, NAN);
        if (OK(hla_forward(&c, path, &tq, &tk, &tv, &to, &tcu, NULL, NULL, NULL), "packed forward %s", path_name(path)))
            CHECK(err_out(&p, out, 0, T) <= tol, "packed forward %s (zero initial): rel err %.3g", path_name(path),
                  err_out(&p, out, 0, T));
    }

    /* nonzero initial states: the final states of another random prefix of each sequence */
    prob_init(&pre, &c, dt, N, 6, 0, NULL, 0);
    ini = talloc(N * n, sdt);
    tini = mk(ini, sdt, 2, N, n, 0, 0);
    {
        hla_tensor a = pq(&pre, 0, 6), b = pk(&pre, 0, 6), d = pv(&pre, 0, 6), o;
        void *po_ = talloc(pre.no, dt);
        o = po(&pre, po_, 0, 6);
        OK(hla_forward(&c, HLA_PATH_CHUNKED, &a, &b, &d, &o, NULL, NULL, &tini, NULL), "prefix forward");
        free(po_);
    }
    fin = talloc(N * n, sdt);
    afin = talloc(N * n, sdt);
    tfin = mk(fin, sdt, 2, N, n, 0, 0);
    for (path = 0; path < 3; path++) {
        fill(out, dt, p.no, NAN);
        fill(fin, sdt, N * n, NAN);
        fill(aout, dt, p.no, NAN);
        OK(hla_forward(&c, path, &tq, &tk, &tv, &to, &tcu, &tini, &tfin, NULL), "packed forward %s from initial",
           path_name(path));
        for (i = 0; i < N; i++) { /* sequence i alone: B = 1, T = lens[i], its own [1, n] states */
            hla_tensor q1 = tokv(p.q, dt, 1, T, H, dk, cu[i], cu[i + 1]), k1 = tokv(p.k, dt, 1, T, Hkv, dk, cu[i], cu[i + 1]),
                       v1 = tokv(p.v, dt, 1, T, Hkv, dv, cu[i], cu[i + 1]),
                       o1 = tokv(aout, dt, 1, T, H, dv, cu[i], cu[i + 1]), i1 = mk(eptr(ini, sdt, i * n), sdt, 2, 1, n, 0, 0),
                       f1 = mk(eptr(afin, sdt, i * n), sdt, 2, 1, n, 0, 0);
            OK(hla_forward(&c, path, &q1, &k1, &v1, &o1, NULL, &i1, &f1, NULL), "sequence %lld alone", (long long)i);
        }
        e = err_vec(out, dt, aout, dt, p.no);
        CHECK(e <= tol, "packed %s vs each sequence alone (outputs): rel err %.3g", path_name(path), e);
        e = err_vec(fin, sdt, afin, sdt, N * n);
        CHECK(e <= state_tol(dt), "packed %s vs each sequence alone (final states): rel err %.3g", path_name(path), e);
    }

    /* prefill in place into rows of an 8-slot cache (initial = final = cache, rows) */
    cache = talloc(slots * n, sdt);
    rowsb = ints_of(slotrows, N, cudt);
    tcache = mk(cache, sdt, 2, slots, n, 0, 0);
    trows = mk(rowsb, cudt, 1, N, 0, 0, 0);
    for (path = 0; path < 3; path++) {
        int untouched = 1;
        fill(cache, sdt, slots * n, 7.25);
        for (i = 0; i < N; i++) memcpy(eptr(cache, sdt, slotrows[i] * n), eptr(ini, sdt, i * n), (size_t)n * esize(sdt));
        fill(out, dt, p.no, NAN);
        OK(hla_forward(&c, path, &tq, &tk, &tv, &to, &tcu, &tcache, &tcache, &trows), "prefill %s into rows",
           path_name(path));
        e = err_vec(out, dt, aout, dt, p.no);
        CHECK(e <= tol, "prefill %s into rows: outputs vs alone: rel err %.3g", path_name(path), e);
        e = 0;
        for (i = 0; i < N; i++)
            e = fmax(e, err_vec(eptr(cache, sdt, slotrows[i] * n), sdt, eptr(afin, sdt, i * n), sdt, n));
        CHECK(e <= state_tol(dt), "prefill %s into rows: cache rows vs alone: rel err %.3g", path_name(path), e);
        for (i = 0; i < slots; i++)
            if (i != 6 && i != 1 && i != 4 && i != 0 && i != 3 && !all_equal(eptr(cache, sdt, i * n), sdt, n, 7.25))
                untouched = 0;
        CHECK(untouched, "prefill %s wrote rows it was not given", path_name(path));
    }
    /* rows with only a final state: fresh sequences written into their slots */
    {
        void *z = talloc(N * n, sdt);
        hla_tensor tz = mk(z, sdt, 2, N, n, 0, 0);
        fill(cache, sdt, slots * n, 7.25);
        OK(hla_forward(&c, HLA_PATH_CHUNKED, &tq, &tk, &tv, &to, &tcu, NULL, &tz, NULL), "packed, final only");
        OK(hla_forward(&c, HLA_PATH_SCAN, &tq, &tk, &tv, &to, &tcu, NULL, &tcache, &trows), "packed, final rows only");
        e = 0;
        for (i = 0; i < N; i++) e = fmax(e, err_vec(eptr(cache, sdt, slotrows[i] * n), sdt, eptr(z, sdt, i * n), sdt, n));
        CHECK(e <= state_tol(dt), "fresh prefill into rows: rel err %.3g", e);
        CHECK(err_out(&p, out, 0, T) <= tol, "fresh prefill into rows: outputs rel err %.3g", err_out(&p, out, 0, T));
        /* rows with only an initial state */
        for (i = 0; i < N; i++) memcpy(eptr(cache, sdt, slotrows[i] * n), eptr(ini, sdt, i * n), (size_t)n * esize(sdt));
        fill(out, dt, p.no, NAN);
        OK(hla_forward(&c, HLA_PATH_SERIAL, &tq, &tk, &tv, &to, &tcu, &tcache, NULL, &trows), "packed, initial rows only");
        CHECK(err_vec(out, dt, aout, dt, p.no) <= tol, "initial rows only: rel err %.3g", err_vec(out, dt, aout, dt, p.no));
        free(z);
    }

    /* summaries of the packed sequences = summaries of each alone */
    sum = talloc(N * m, sdt);
    asum = talloc(N * m, sdt);
    tsum = mk(sum, sdt, 2, N, m, 0, 0);
    tl = mk(lw, HLA_INT64, 1, N, 0, 0, 0);
    for (i = 0; i < N; i++) lw[i] = -1;
    OK(hla_summarize(&c, &tq, &tk, &tv, &tcu, &tsum, &tl), "packed summarize");
    CHECK(lw[0] == 5 && lw[1] == 1 && lw[2] == 13 && lw[3] == 8 && lw[4] == 3, "packed summarize lengths %lld %lld %lld",
          (long long)lw[0], (long long)lw[1], (long long)lw[2]);
    for (i = 0; i < N; i++) {
        hla_tensor q1 = tokv(p.q, dt, 1, T, H, dk, cu[i], cu[i + 1]), k1 = tokv(p.k, dt, 1, T, Hkv, dk, cu[i], cu[i + 1]),
                   v1 = tokv(p.v, dt, 1, T, Hkv, dv, cu[i], cu[i + 1]), s1 = mk(eptr(asum, sdt, i * m), sdt, 2, 1, m, 0, 0);
        OK(hla_summarize(&c, &q1, &k1, &v1, NULL, &s1, NULL), "summarize sequence %lld alone", (long long)i);
    }
    e = err_vec(sum, sdt, asum, sdt, N * m);
    CHECK(e <= state_tol(dt), "packed summaries vs each alone: rel err %.3g", e);

    free(sum), free(asum), free(cache), free(rowsb), free(fin), free(afin), free(ini), free(out), free(aout), free(cub);
    prob_free(&pre);
    prob_free(&p);
}

static void test_packed(void)
{
    int op;
    for (op = 0; op < 3; op++) {
        packed_case(op, HLA_FLOAT64, HLA_INT64);
        packed_case(op, HLA_FLOAT32, HLA_INT32);
        packed_case(op, HLA_FLOAT16, HLA_INT64);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* 5. continuous batching: row-indexed steps on an 8-slot cache = separate states; reset, fork  */

static void rows_step_case(int op, int dt, int rdt)
{
    enum { S = 4, SLOTS = 8, T = 10 };
    const int64_t H = 4, Hkv = 2, dk = 5, dv = 3;
    hla_config c = cfg_make(op, 1, 1, 0.95, op == HLA_OP_HLA2 ? 0.25 : 0.0, H, Hkv, dk, dv, 0);
    prob p;
    int sdt;
    int64_t n, t, i, slot[S + 1], src[S + 1];
    int live[S + 1];
    void *cache, *sep, *q3, *k3, *v3, *o3, *so3;
    double eo = 0, es = 0;
    const double tol = tol_of(dt);

    set_ctx("rows step %s %s rows %s", op_name(op), dt_name(dt), dt_name(rdt));
    prob_init(&p, &c, dt, S, T, 1, NULL, 0); /* S sequences; the fork replays sequence 1's tokens */
    sdt = p.sdt, n = p.n;
    cache = talloc(SLOTS * n, sdt);
    sep = talloc((S + 1) * n, sdt); /* separate [1, n] states: sequences 0..3 and the fork */
    fill(sep, sdt, (S + 1) * n, 0.0);
    {
        hla_tensor tc = mk(cache, sdt, 2, SLOTS, n, 0, 0);
        OK(hla_state_reset_rows(&c, &tc, NULL), "reset the cache");
    }
    q3 = talloc((S + 1) * H * dk, dt), k3 = talloc((S + 1) * Hkv * dk, dt), v3 = talloc((S + 1) * Hkv * dv, dt);
    o3 = talloc((S + 1) * H * dv, dt), so3 = talloc(H * dv, dt);
    /* sequences 0, 1, 2 live at slots 5, 2, 7; sequence 3 and the fork start later */
    slot[0] = 5, slot[1] = 2, slot[2] = 7, slot[3] = -1, slot[4] = -1;
    live[0] = live[1] = live[2] = 1, live[3] = live[4] = 0;
    for (i = 0; i <= S; i++) src[i] = i == S ? 1 : i; /* whose tokens each stream reads */
    for (t = 0; t < T; t++) {
        int64_t R = 0, order[S + 1], rv[S + 1];
        void *rb;
        hla_tensor tq, tk, tv, to, tc, tr;
        if (t == 5) {
            /* sequence 1 finishes: slot 2 is reset and sequence 3 starts there; sequence 0 forks into slot 0 */
            int64_t r2 = 2, fs = 5, fd = 0;
            void *a = ints_of(&r2, 1, rdt), *b = ints_of(&fs, 1, rdt), *d = ints_of(&fd, 1, rdt);
            hla_tensor ta = mk(a, rdt, 1, 1, 0, 0, 0), tb = mk(b, rdt, 1, 1, 0, 0, 0), td = mk(d, rdt, 1, 1, 0, 0, 0);
            tc = mk(cache, sdt, 2, SLOTS, n, 0, 0);
            OK(hla_state_reset_rows(&c, &tc, &ta), "reset slot 2");
            CHECK(all_equal(eptr(cache, sdt, 2 * n), sdt, n, 0.0), "reset_rows({2}) did not zero slot 2");
            OK(hla_state_copy_rows(&c, &tc, &tb, &td), "fork slot 5 -> slot 0");
            CHECK(memcmp(eptr(cache, sdt, 0), eptr(cache, sdt, 5 * n), (size_t)n * esize(sdt)) == 0,
                  "copy_rows({5} -> {0}) did not copy");
            memcpy(eptr(sep, sdt, 4 * n), eptr(sep, sdt, 0), (size_t)n * esize(sdt));
            live[1] = 0, slot[1] = -1;
            live[3] = 1, slot[3] = 2;
            live[4] = 1, slot[4] = 0;
            free(a), free(b), free(d);
        }
        /* live streams in a scrambled order */
        for (i = S; i >= 0; i--)
            if (live[(i * 3) % (S + 1)]) order[R++] = (i * 3) % (S + 1);
        for (i = 0; i < R; i++) {
            const int64_t s = order[i], b = src[s];
            memcpy(eptr(q3, dt, i * H * dk), eptr(p.q, dt, (b * T + t) * H * dk), (size_t)(H * dk) * esize(dt));
            memcpy(eptr(k3, dt, i * Hkv * dk), eptr(p.k, dt, (b * T + t) * Hkv * dk), (size_t)(Hkv * dk) * esize(dt));
            memcpy(eptr(v3, dt, i * Hkv * dv), eptr(p.v, dt, (b * T + t) * Hkv * dv), (size_t)(Hkv * dv) * esize(dt));
            rv[i] = slot[s];
        }
        rb = ints_of(rv, R, rdt);
        tq = mk(q3, dt, 3, R, H, dk, 0), tk = mk(k3, dt, 3, R, Hkv, dk, 0), tv = mk(v3, dt, 3, R, Hkv, dv, 0);
        to = mk(o3, dt, 3, R, H, dv, 0), tc = mk(cache, sdt, 2, SLOTS, n, 0, 0), tr = mk(rb, rdt, 1, R, 0, 0, 0);
        fill(o3, dt, R * H * dv, NAN);
        OK(hla_step(&c, &tq, &tk, &tv, &to, &tc, &tr), "step t=%lld with %lld rows", (long long)t, (long long)R);
        for (i = 0; i < R; i++) {
            const int64_t s = order[i];
            hla_tensor a = mk(eptr(q3, dt, i * H * dk), dt, 3, 1, H, dk, 0), b = mk(eptr(k3, dt, i * Hkv * dk), dt, 3, 1, Hkv, dk, 0),
                       d = mk(eptr(v3, dt, i * Hkv * dv), dt, 3, 1, Hkv, dv, 0), o = mk(so3, dt, 3, 1, H, dv, 0),
                       st = mk(eptr(sep, sdt, s * n), sdt, 2, 1, n, 0, 0);
            OK(hla_step(&c, &a, &b, &d, &o, &st, NULL), "separate step");
            eo = fmax(eo, err_vec(eptr(o3, dt, i * H * dv), dt, so3, dt, H * dv));
        }
        free(rb);
    }
    for (i = 0; i <= S; i++)
        if (live[i]) es = fmax(es, err_vec(eptr(cache, sdt, slot[i] * n), sdt, eptr(sep, sdt, i * n), sdt, n));
    CHECK(eo <= tol, "row-indexed step outputs vs separate states: rel err %.3g", eo);
    CHECK(es <= state_tol(dt), "row-indexed cache rows vs separate states: rel err %.3g", es);
    CHECK(all_equal(eptr(cache, sdt, n), sdt, n, 0.0) && all_equal(eptr(cache, sdt, 3 * n), sdt, 2 * n, 0.0) &&
              all_equal(eptr(cache, sdt, 6 * n), sdt, n, 0.0),
          "slots never stepped (1, 3, 4, 6) are no longer zero");
    free(cache), free(sep), free(q3), free(k3), free(v3), free(o3), free(so3);
    prob_free(&p);
}

static void test_rows_step(void)
{
    int op;
    for (op = 0; op < 3; op++) {
        rows_step_case(op, HLA_FLOAT64, HLA_INT64);
        rows_step_case(op, HLA_FLOAT32, HLA_INT32);
        rows_step_case(op, HLA_BFLOAT16, HLA_INT64);
    }
}

/* copy_rows (repeats in src, src/dst overlap) and reset_rows, exactly, on plain and padded states */
static void test_copy_reset(void)
{
    int sdt, v;
    hla_config c = cfg_make(HLA_OP_HLA3, 1, 1, 1.0, 0.0, 2, 1, 3, 2, 0);
    const int64_t n = n_state(&c), slots = 6;
    for (sdt = 0; sdt < 2; sdt++)
        for (v = 0; v < 2; v++) { /* v = 1: row stride n + 5 and int32 indices */
            const int64_t stride = v ? n + 5 : n;
            const int idt = v ? HLA_INT32 : HLA_INT64;
            static const int64_t src[4] = {1, 1, 3, 0}, dst[4] = {0, 2, 1, 5}, rz[2] = {4, 2};
            void *s = talloc(slots * stride, sdt), *a = ints_of(src, 4, idt), *b = ints_of(dst, 4, idt),
                 *z = ints_of(rz, 2, idt);
            int64_t sh[2], st[2], r, j, okc = 1;
            hla_tensor ts, ta, tb, tz;
            set_ctx("copy/reset rows %s stride %lld", dt_name(sdt), (long long)stride);
            sh[0] = slots, sh[1] = n, st[0] = stride, st[1] = 1;
            ts = mks(s, sdt, 2, sh, st);
            ta = mk(a, idt, 1, 4, 0, 0, 0), tb = mk(b, idt, 1, 4, 0, 0, 0), tz = mk(z, idt, 1, 2, 0, 0, 0);
            fill(s, sdt, slots * stride, -3.0);
            for (r = 0; r < slots; r++)
                for (j = 0; j < n; j++) setv(s, sdt, r * stride + j, (double)(100 * r) + (double)j * 0.5);
            OK(hla_state_copy_rows(&c, &ts, &ta, &tb), "copy_rows src {1,1,3,0} -> dst {0,2,1,5}");
            /* dst[i] receives what src[i] held before the call */
            for (r = 0; r < slots; r++) {
                int64_t from = r == 0 ? 1 : r == 2 ? 1 : r == 1 ? 3 : r == 5 ? 0 : r;
                for (j = 0; j < n; j++)
                    if (getv(s, sdt, r * stride + j) != (double)(100 * from) + (double)j * 0.5) okc = 0;
                for (j = n; j < stride && r < slots - 1; j++)
                    if (getv(s, sdt, r * stride + j) != -3.0) okc = 0;
            }
            CHECK(okc, "copy_rows result wrong (rows 0,2 <- old 1; 1 <- old 3; 5 <- old 0; 3,4 unchanged; padding kept)");
            EXPECT(hla_state_copy_rows(&c, &ts, &tb, &ta), HLA_ERR_INVALID_ARGUMENT, "repeat",
                   "copy_rows with repeated dst rows {1,1,3,0}");
            okc = 1;
            OK(hla_state_reset_rows(&c, &ts, &tz), "reset_rows {4, 2}");
            for (r = 0; r < slots; r++) {
                int64_t from = r == 0 ? 1 : r == 2 ? 1 : r == 1 ? 3 : r == 5 ? 0 : r;
                for (j = 0; j < n; j++) {
                    double want = (r == 4 || r == 2) ? 0.0 : (double)(100 * from) + (double)j * 0.5;
                    if (getv(s, sdt, r * stride + j) != want) okc = 0;
                }
            }
            CHECK(okc, "reset_rows {4,2}: wrong rows zeroed or others changed");
            free(s), free(a), free(b), free(z);
        }
}

/* ------------------------------------------------------------------------------------------ */
/* 6. serialization: round trips, the buffer protocol, every truncation and byte flip           */

/* Every truncation (into an exactly sized copy) and every single-byte change of buf must be rejected
 * with HLA_ERR_CORRUPT, leaving *cfg and the destination untouched. */
static void corrupt_sweep(const unsigned char *buf, size_t nb, int summary, int sdt, int64_t rows, int64_t width,
                          const char *what)
{
    static const unsigned char masks[3] = {0x01, 0x80, 0xFF};
    unsigned char *tmp = xmalloc(nb + 1);
    void *dest = talloc(rows * width, sdt);
    int64_t lens[8];
    size_t len, i, bad_t = 0, bad_f = 0, first_t = 0, first_f = 0;
    hla_status st_t = HLA_OK, st_f = HLA_OK, st;
    hla_config cfg, snap;
    hla_tensor d, l;
    hla_config_init(&cfg, sizeof cfg);
    cfg.dk = 77;
    snap = cfg;
    for (len = 0; len < nb; len++) {
        unsigned char *cut = xmalloc(len);
        memcpy(cut, buf, len);
        memset(&d, 0, sizeof d);
        memset(&l, 0, sizeof l);
        st = summary ? hla_summary_deserialize(cut, len, &cfg, &d, &l) : hla_state_deserialize(cut, len, &cfg, &d);
        if (st != HLA_ERR_CORRUPT || d.ndim != 0 || memcmp(&cfg, &snap, sizeof cfg) != 0 || !hla_last_error()[0])
            if (!bad_t++) first_t = len, st_t = st;
        free(cut);
    }
    CHECK(bad_t == 0, "%s: %zu of %zu truncations not rejected with CORRUPT (first: %zu bytes -> %s)", what, bad_t, nb,
          first_t, sname(st_t));
    fill(dest, sdt, rows * width, 2.5);
    for (i = 0; i < 3 * nb; i++) {
        memcpy(tmp, buf, nb);
        tmp[i / 3] ^= masks[i % 3];
        d = mk(dest, sdt, 2, rows, width, 0, 0);
        l = mk(lens, HLA_INT64, 1, rows, 0, 0, 0);
        lens[0] = -9;
        st = summary ? hla_summary_deserialize(tmp, nb, &cfg, &d, &l) : hla_state_deserialize(tmp, nb, &cfg, &d);
        if (st != HLA_ERR_CORRUPT || !all_equal(dest, sdt, rows * width, 2.5) || lens[0] != -9 ||
            memcmp(&cfg, &snap, sizeof cfg) != 0)
            if (!bad_f++) first_f = i, st_f = st;
    }
    CHECK(bad_f == 0, "%s: %zu of %zu single-byte changes not rejected with CORRUPT (first: byte %zu ^ 0x%02x -> %s)",
          what, bad_f, 3 * nb, first_f / 3, masks[first_f % 3], sname(st_f));
    /* one byte too many */
    memcpy(tmp, buf, nb);
    tmp[nb] = 0;
    memset(&d, 0, sizeof d);
    st = summary ? hla_summary_deserialize(tmp, nb + 1, &cfg, &d, &l) : hla_state_deserialize(tmp, nb + 1, &cfg, &d);
    CHECK(st == HLA_ERR_CORRUPT, "%s: one trailing byte -> %s, want CORRUPT", what, sname(st));
    /* bytes of the other kind */
    memset(&d, 0, sizeof d);
    memset(&l, 0, sizeof l);
    st = summary ? hla_state_deserialize(buf, nb, &cfg, &d) : hla_summary_deserialize(buf, nb, &cfg, &d, &l);
    CHECK(st == HLA_ERR_CORRUPT, "%s read as the other kind -> %s, want CORRUPT", what, sname(st));
    st = summary ? hla_summary_deserialize(buf, (size_t)-1, &cfg, &d, &l) : hla_state_deserialize(buf, (size_t)-1, &cfg, &d);
    CHECK(st == HLA_ERR_CORRUPT, "%s with size SIZE_MAX -> %s, want CORRUPT", what, sname(st));
    free(tmp);
    free(dest);
}

static int cfg_same(const hla_config *a, const hla_config *b)
{
    int64_t ka = a->kv_heads ? a->kv_heads : a->heads, kb = b->kv_heads ? b->kv_heads : b->heads;
    return a->op == b->op && a->masked == b->masked && a->normalize == b->normalize && a->heads == b->heads &&
           ka == kb && a->dk == b->dk && a->dv == b->dv && memcmp(&a->scale, &b->scale, 8) == 0 &&
           memcmp(&a->decay, &b->decay, 8) == 0 && memcmp(&a->ridge, &b->ridge, 8) == 0 &&
           memcmp(&a->eps, &b->eps, 8) == 0;
}

/* Deserializing (state or summary bytes buf of rows x width) into the 88-byte hla_config of headers 1.0 and
 * 1.1: into an exact 88-byte allocation and into a full struct whose bytes past 88 hold a sentinel, both
 * described and copied; the configuration arrives in the 88 bytes, struct_size stays 88, nothing past it is
 * written. struct_size 80: rejected, nothing written. */
static void old_struct_deserialize(const unsigned char *buf, size_t nb, int summary, const hla_config *want, int sdt,
                                   int64_t rows, int64_t width)
{
    hla_config base, old, snap, got;
    void *exact, *dest = talloc_fill(rows * width, sdt, 5.5);
    int64_t lens[8 + SLACK];
    hla_tensor td, tl;
    int k;
    hla_status st;
    const char *what = summary ? "summary" : "state";
    hla_config_init(&base, sizeof base);
    base.dk = 77;
    for (k = 0; k < 4; k++) {
        const int in_exact = k & 1, copy = k >> 1;
        old_config_in(&old, &base);
        exact = old_config_of(&base);
        memset(&td, 0, sizeof td);
        memset(&tl, 0, sizeof tl);
        if (copy) td = mk(dest, sdt, 2, rows, width, 0, 0), tl = mk(lens, HLA_INT64, 1, rows, 0, 0, 0);
        {
            hla_config *cp = in_exact ? (hla_config *)exact : &old;
            st = summary ? hla_summary_deserialize(buf, nb, cp, &td, &tl) : hla_state_deserialize(buf, nb, cp, &td);
        }
        if (OK(st, "%s deserialize into an 88-byte hla_config (%s, %s)", what, in_exact ? "exact allocation" :
               "sentinel past it", copy ? "copy" : "describe")) {
            memset(&got, 0, sizeof got);
            memcpy(&got, in_exact ? exact : (void *)&old, OLD_CONFIG_SIZE);
            CHECK(got.struct_size == OLD_CONFIG_SIZE && cfg_same(&got, want),
                  "%s into 88 bytes: struct_size %u, configuration %s", what, (unsigned)got.struct_size,
                  cfg_same(&got, want) ? "as serialized" : "differs");
            if (!in_exact) CHECK(tail_is_sentinel(&old), "%s deserialize wrote past byte 88 of an 88-byte config", what);
            CHECK(copy ? td.data == dest : td.data == NULL && td.shape[0] == rows && td.shape[1] == width,
                  "%s into 88 bytes: destination tensor", what);
        }
        free(exact);
    }
    /* struct_size 80: rejected, neither *cfg nor the destination written */
    old_config_in(&old, &base);
    old.struct_size = (uint32_t)OLD_CONFIG_SIZE - 8;
    snap = old;
    fill(dest, sdt, rows * width, 5.5);
    td = mk(dest, sdt, 2, rows, width, 0, 0), tl = mk(lens, HLA_INT64, 1, rows, 0, 0, 0);
    lens[0] = -9;
    st = summary ? hla_summary_deserialize(buf, nb, &old, &td, &tl) : hla_state_deserialize(buf, nb, &old, &td);
    EXPECT(st, HLA_ERR_INVALID_ARGUMENT, "struct_size", "%s deserialize into an hla_config with struct_size 80", what);
    CHECK(memcmp(&old, &snap, sizeof old) == 0 && all_equal(dest, sdt, rows * width + SLACK, 5.5) && lens[0] == -9,
          "a %s deserialize refused for struct_size 80 wrote memory", what);
    free(dest);
}

static void serial_case(int op, int sdt, int sweep)
{
    hla_config c = cfg_make(op, 1, 1, 0.9, op == HLA_OP_HLA2 ? 0.25 : 0.0, 2, 1, 3, 2, 0), c2;
    const int64_t n = n_state(&c), m = n_summary(&c), es = (int64_t)esize(sdt);
    static const int64_t rv[2] = {2, 0};
    int64_t lv[3] = {4, 0, 9}, i;
    void *st = talloc(4 * n, sdt), *dst = talloc(3 * n, sdt), *rows = ints_of(rv, 2, HLA_INT64);
    void *su = talloc(3 * m, sdt), *du = talloc(3 * m, sdt), *l32 = ints_of(lv, 3, HLA_INT32);
    int64_t dl[3 + SLACK];
    size_t need = 0, w = 0, need4 = 0, i2;
    unsigned char *buf, *buf2;
    hla_tensor ts = mk(st, sdt, 2, 4, n, 0, 0), tr = mk(rows, HLA_INT64, 1, 2, 0, 0, 0), td, tu, tl, tdl;
    c.scale = 0.7;
    c.eps = 1e-5;
    set_ctx("serialization %s %s", op_name(op), dt_name(sdt));
    for (i = 0; i < 4 * n; i++) setv(st, sdt, i, normal());

    /* size query, too small, NULL pointers, exact fit */
    OK(hla_state_serialize(&c, &ts, &tr, NULL, 0, &need), "size query (buffer NULL, capacity 0)");
    CHECK(need >= (size_t)(2 * n * es) + 16, "required size %zu for 2 rows of %lld elements", need, (long long)n);
    OK(hla_state_serialize(&c, &ts, NULL, NULL, 0, &need4), "size query, every row");
    CHECK(need4 == need + (size_t)(2 * n * es), "size of 4 rows %zu, of 2 rows %zu (row bytes %lld)", need4, need,
          (long long)(n * es));
    buf = xmalloc(need + 16);
    buf2 = xmalloc(need + 16);
    memset(buf, 0xA5, need + 16);
    w = 0;
    EXPECT(hla_state_serialize(&c, &ts, &tr, buf, need - 1, &w), HLA_ERR_BUFFER_TOO_SMALL, "hla_state_serialize",
           "capacity = required - 1");
    CHECK(w == need, "BUFFER_TOO_SMALL: *written = %zu, want %zu", w, need);
    for (i2 = 0; i2 < need + 16 && buf[i2] == 0xA5; i2++) continue;
    CHECK(i2 == need + 16, "a too-small serialize wrote into the buffer (byte %zu)", i2);
    EXPECT(hla_state_serialize(&c, &ts, &tr, buf, 0, &w), HLA_ERR_BUFFER_TOO_SMALL, NULL, "buffer, capacity 0");
    EXPECT(hla_state_serialize(&c, &ts, &tr, NULL, 64, &w), HLA_ERR_NULL_POINTER, "buffer", "buffer NULL, capacity 64");
    EXPECT(hla_state_serialize(&c, &ts, &tr, buf, need, NULL), HLA_ERR_NULL_POINTER, "written", "written NULL");
    w = 0;
    OK(hla_state_serialize(&c, &ts, &tr, buf, need + 8, &w), "serialize (capacity + 8)");
    CHECK(w == need && buf[need] == 0xA5, "serialize wrote %zu bytes (want %zu) or past them", w, need);

    /* describe, then copy, then serialize again: the same bytes */
    memset(&td, 0, sizeof td);
    hla_config_init(&c2, sizeof c2);
    if (OK(hla_state_deserialize(buf, need, &c2, &td), "deserialize, describe (data NULL)")) {
        CHECK(td.data == NULL && td.dtype == sdt && td.ndim == 2 && td.shape[0] == 2 && td.shape[1] == n &&
                  td.strides[0] == n && td.strides[1] == 1,
              "described tensor: dtype %d ndim %d shape [%lld, %lld] strides [%lld, %lld]", td.dtype, td.ndim,
              (long long)td.shape[0], (long long)td.shape[1], (long long)td.strides[0], (long long)td.strides[1]);
        CHECK(cfg_same(&c2, &c) && c2.struct_size == sizeof c2, "deserialized configuration differs");
    }
    fill(dst, sdt, 3 * n, 5.5);
    td = mk(dst, sdt, 2, 3, n, 0, 0);
    hla_config_init(&c2, sizeof c2);
    if (OK(hla_state_deserialize(buf, need, &c2, &td), "deserialize into 3 rows")) {
        CHECK(memcmp(dst, eptr(st, sdt, 2 * n), (size_t)(n * es)) == 0 &&
                  memcmp(eptr(dst, sdt, n), st, (size_t)(n * es)) == 0,
              "deserialized rows differ from rows {2, 0}");
        CHECK(all_equal(eptr(dst, sdt, 2 * n), sdt, n, 5.5), "deserialize wrote row 2 of the destination");
        CHECK(cfg_same(&c2, &c), "deserialized configuration differs");
        td = mk(dst, sdt, 2, 2, n, 0, 0);
        OK(hla_state_serialize(&c2, &td, NULL, buf2, need, &w), "serialize the deserialized rows");
        CHECK(w == need && memcmp(buf, buf2, need) == 0, "re-serialized bytes differ");
    }
    /* a larger hla_config receives the configuration with its tail zeroed */
    {
        struct {
            hla_config c;
            uint64_t tail[3];
        } big;
        hla_tensor t0;
        hla_config_init(&big.c, sizeof big);
        big.tail[1] = 77;
        memset(&t0, 0, sizeof t0);
        OK(hla_state_deserialize(buf, need, &big.c, &t0), "deserialize into a larger hla_config");
        CHECK(big.c.struct_size == sizeof big && big.tail[1] == 0 && cfg_same(&big.c, &c),
              "larger hla_config: struct_size %u, tail %llu", (unsigned)big.c.struct_size,
              (unsigned long long)big.tail[1]);
        big.c.struct_size = 8;
        EXPECT(hla_state_deserialize(buf, need, &big.c, &t0), HLA_ERR_INVALID_ARGUMENT, "struct_size",
               "deserialize into an hla_config with struct_size 8");
        old_struct_deserialize(buf, need, 0, &c, sdt, 2, n);
        EXPECT(hla_state_deserialize(buf, need, NULL, &t0), HLA_ERR_NULL_POINTER, "cfg", "cfg NULL");
        EXPECT(hla_state_deserialize(NULL, need, &c2, &t0), HLA_ERR_NULL_POINTER, "buffer", "buffer NULL");
        EXPECT(hla_state_deserialize(buf, need, &c2, NULL), HLA_ERR_NULL_POINTER, "state", "state NULL");
    }
    /* destinations that do not fit */
    td = mk(dst, sdt, 2, 1, n, 0, 0);
    EXPECT(hla_state_deserialize(buf, need, &c2, &td), HLA_ERR_MISMATCH, NULL, "destination of 1 row");
    td = mk(dst, sdt, 2, 2, n - 1, 0, 0);
    EXPECT(hla_state_deserialize(buf, need, &c2, &td), HLA_ERR_MISMATCH, NULL, "destination of n - 1 elements");
    td = mk(dst, sdt == HLA_FLOAT64 ? HLA_FLOAT32 : HLA_FLOAT64, 2, 1, n, 0, 0);
    td.shape[0] = 2;
    if (sdt == HLA_FLOAT64) EXPECT(hla_state_deserialize(buf, need, &c2, &td), HLA_ERR_DTYPE, NULL, "float32 destination");
    td = mk(dst, HLA_BFLOAT16, 2, 2, n, 0, 0);
    EXPECT(hla_state_deserialize(buf, need, &c2, &td), HLA_ERR_DTYPE, NULL, "bfloat16 destination");
    if (sweep) corrupt_sweep(buf, need, 0, sdt, 2, n, "state bytes");
    free(buf), free(buf2);

    /* summaries with their lengths (int32 in, int64 out) */
    for (i = 0; i < 3 * m; i++) setv(su, sdt, i, normal());
    tu = mk(su, sdt, 2, 3, m, 0, 0);
    tl = mk(l32, HLA_INT32, 1, 3, 0, 0, 0);
    need = 0;
    OK(hla_summary_serialize(&c, &tu, &tl, NULL, 0, &need), "summary size query");
    CHECK(need >= (size_t)(3 * m * es + 3 * 8), "summary size %zu", need);
    buf = xmalloc(need + 8);
    buf2 = xmalloc(need + 8);
    EXPECT(hla_summary_serialize(&c, &tu, &tl, buf, need - 1, &w), HLA_ERR_BUFFER_TOO_SMALL, "hla_summary_serialize",
           "summary capacity - 1");
    CHECK(w == need, "BUFFER_TOO_SMALL: *written = %zu, want %zu", w, need);
    EXPECT(hla_summary_serialize(&c, &tu, NULL, buf, need, &w), HLA_ERR_NULL_POINTER, "lengths", "lengths NULL");
    EXPECT(hla_summary_serialize(&c, &tu, &tl, buf, need, NULL), HLA_ERR_NULL_POINTER, "written", "written NULL");
    ((int32_t *)l32)[1] = -1;
    EXPECT(hla_summary_serialize(&c, &tu, &tl, buf, need, &w), HLA_ERR_INVALID_ARGUMENT, "lengths",
           "a negative length");
    ((int32_t *)l32)[1] = 0;
    OK(hla_summary_serialize(&c, &tu, &tl, buf, need, &w), "summary serialize");
    CHECK(w == need, "summary serialize wrote %zu of %zu", w, need);
    memset(&td, 0, sizeof td);
    memset(&tdl, 0, sizeof tdl);
    hla_config_init(&c2, sizeof c2);
    if (OK(hla_summary_deserialize(buf, need, &c2, &td, &tdl), "summary describe")) {
        CHECK(td.data == NULL && td.dtype == sdt && td.ndim == 2 && td.shape[0] == 3 && td.shape[1] == m &&
                  td.strides[0] == m && td.strides[1] == 1,
              "described summary: dtype %d shape [%lld, %lld]", td.dtype, (long long)td.shape[0],
              (long long)td.shape[1]);
        CHECK(tdl.data == NULL && tdl.dtype == HLA_INT64 && tdl.ndim == 1 && tdl.shape[0] == 3 && tdl.strides[0] == 1,
              "described lengths: dtype %d ndim %d shape %lld", tdl.dtype, tdl.ndim, (long long)tdl.shape[0]);
        CHECK(cfg_same(&c2, &c), "summary configuration differs");
    }
    fill(du, sdt, 3 * m, 5.5);
    for (i = 0; i < 3 + SLACK; i++) dl[i] = -7;
    td = mk(du, sdt, 2, 3, m, 0, 0);
    tdl = mk(dl, HLA_INT64, 1, 3, 0, 0, 0);
    if (OK(hla_summary_deserialize(buf, need, &c2, &td, &tdl), "summary deserialize")) {
        CHECK(memcmp(du, su, (size_t)(3 * m * es)) == 0, "deserialized summary rows differ");
        CHECK(dl[0] == 4 && dl[1] == 0 && dl[2] == 9 && dl[3] == -7, "deserialized lengths %lld %lld %lld",
              (long long)dl[0], (long long)dl[1], (long long)dl[2]);
        OK(hla_summary_serialize(&c2, &td, &tdl, buf2, need, &w), "serialize again");
        CHECK(w == need && memcmp(buf, buf2, need) == 0, "re-serialized summary bytes differ");
    }
    tdl = mk(l32, HLA_INT32, 1, 3, 0, 0, 0);
    EXPECT(hla_summary_deserialize(buf, need, &c2, &td, &tdl), HLA_ERR_DTYPE, "lengths", "int32 lengths destination");
    EXPECT(hla_summary_deserialize(buf, need, &c2, &td, NULL), HLA_ERR_NULL_POINTER, "lengths", "lengths NULL");
    tdl = mk(dl, HLA_INT64, 1, 2, 0, 0, 0);
    EXPECT(hla_summary_deserialize(buf, need, &c2, &td, &tdl), HLA_ERR_MISMATCH, "lengths", "2 lengths for 3 rows");
    old_struct_deserialize(buf, need, 1, &c, sdt, 3, m);
    if (sweep) corrupt_sweep(buf, need, 1, sdt, 3, m, "summary bytes");
    free(buf), free(buf2);
    free(st), free(dst), free(rows), free(su), free(du), free(l32);
}

static void test_serialization(void)
{
    int op, sdt;
    for (op = 0; op < 3; op++)
        for (sdt = 0; sdt < 2; sdt++) serial_case(op, sdt, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* 7. bad input through every entry point: each tensor argument mutated every way, NULL pointers,
 *    bad values of index tensors, bad configurations. Each must return its status, name the
 *    function in hla_last_error(), and leave every byte of the caller's memory as it was.        */

enum {
    A_Q, A_K, A_V, A_O, A_CU, A_INI, A_FIN, A_ROWS, A_Q3, A_K3, A_V3, A_O3, A_ST, A_SRC, A_DST, A_SUM, A_LEN,
    A_SA, A_LA, A_SB, A_LB, A_SR, A_LR, A_DSTATE, A_DSUM, A_DLEN, A_DO, A_DQ, A_DK, A_DV, A_DFIN, A_DINI, A_CK,
    A_COUNT
};
static const char *arg_names[A_COUNT] = {"q", "k", "v", "output", "cu_seqlens", "initial", "final", "rows", "q",
                                         "k", "v", "output", "state", "src_rows", "dst_rows", "summary", "lengths",
                                         "a", "a_lengths", "b", "b_lengths", "result", "result_lengths", "state",
                                         "summary", "lengths", "d_out", "dq", "dk", "dv", "d_final", "d_initial",
                                         "checkpoints"};

enum { E_FORWARD, E_STEP, E_REFERENCE, E_RESET, E_COPY, E_SSER, E_SDES, E_SUMMARIZE, E_COMBINE, E_TOSTATE, E_USER,
       E_UDES, E_BACKWARD, E_FWDCK, E_BWDCK, E_COUNT };

#define MAXARGS 12 /* tensor arguments of the widest entry point (hla_backward_checkpoints) */

/* argument roles */
enum {
    R_IN,       /* q, k, v: read, floating */
    R_OUT,      /* output: written, floating */
    R_ST,       /* state/summary rows whose dtype the call's inputs fix */
    R_ST_FREE,  /* state/summary rows whose own dtype (float32 or float64) sets the call's */
    R_IDX,      /* int64/int32 index or length tensor with a count fixed by another argument */
    R_IDX_COUNT,/* index tensor whose own length sets the count (rows of reset/serialize) */
    R_CU,       /* cu_seqlens */
    R_LOUT,     /* int64 lengths written */
    R_DEST      /* destination of deserialize (data NULL = describe) */
};

typedef struct {
    const char *fn;
    int nargs;
    int arg[MAXARGS], role[MAXARGS], opt[MAXARGS];
} entry;

static const entry g_entries[E_COUNT] = {
    {"hla_forward", 8, {A_Q, A_K, A_V, A_O, A_CU, A_INI, A_FIN, A_ROWS}, {R_IN, R_IN, R_IN, R_OUT, R_CU, R_ST, R_ST, R_IDX}, {0, 0, 0, 0, 1, 1, 1, 1}},
    {"hla_step", 6, {A_Q3, A_K3, A_V3, A_O3, A_ST, A_ROWS}, {R_IN, R_IN, R_IN, R_OUT, R_ST, R_IDX}, {0, 0, 0, 0, 0, 1}},
    {"hla_reference", 5, {A_Q, A_K, A_V, A_O, A_CU}, {R_IN, R_IN, R_IN, R_OUT, R_CU}, {0, 0, 0, 0, 1}},
    {"hla_state_reset_rows", 2, {A_ST, A_ROWS}, {R_ST_FREE, R_IDX_COUNT}, {0, 1}},
    {"hla_state_copy_rows", 3, {A_ST, A_SRC, A_DST}, {R_ST_FREE, R_IDX, R_IDX}, {0, 0, 0}},
    {"hla_state_serialize", 2, {A_ST, A_ROWS}, {R_ST_FREE, R_IDX_COUNT}, {0, 1}},
    {"hla_state_deserialize", 1, {A_DSTATE}, {R_DEST}, {0}},
    {"hla_summarize", 6, {A_Q, A_K, A_V, A_CU, A_SUM, A_LEN}, {R_IN, R_IN, R_IN, R_CU, R_ST, R_LOUT}, {0, 0, 0, 1, 0, 1}},
    {"hla_summary_combine", 6, {A_SA, A_LA, A_SB, A_LB, A_SR, A_LR}, {R_ST, R_IDX, R_ST, R_IDX, R_ST, R_LOUT}, {0, 0, 0, 0, 0, 1}},
    {"hla_summary_to_state", 3, {A_SUM, A_ST, A_ROWS}, {R_ST, R_ST, R_IDX}, {0, 0, 1}},
    {"hla_summary_serialize", 2, {A_SUM, A_LEN}, {R_ST_FREE, R_IDX}, {0, 0}},
    {"hla_summary_deserialize", 2, {A_DSUM, A_DLEN}, {R_DEST, R_LOUT}, {0, 0}},
    {"hla_backward", 11, {A_Q, A_K, A_V, A_DO, A_DQ, A_DK, A_DV, A_CU, A_INI, A_DFIN, A_DINI},
     {R_IN, R_IN, R_IN, R_IN, R_OUT, R_OUT, R_OUT, R_CU, R_ST, R_ST, R_ST}, {0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1}},
    {"hla_forward_checkpoints", 9, {A_Q, A_K, A_V, A_O, A_CU, A_INI, A_FIN, A_ROWS, A_CK},
     {R_IN, R_IN, R_IN, R_OUT, R_CU, R_ST, R_ST, R_IDX, R_ST}, {0, 0, 0, 0, 1, 1, 1, 1, 0}},
    {"hla_backward_checkpoints", 12, {A_Q, A_K, A_V, A_DO, A_DQ, A_DK, A_DV, A_CU, A_INI, A_DFIN, A_DINI, A_CK},
     {R_IN, R_IN, R_IN, R_IN, R_OUT, R_OUT, R_OUT, R_CU, R_ST, R_ST, R_ST, R_ST}, {0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0}},
};

typedef struct {
    hla_config c, cout, cout0;
    int dt, sdt;
    int64_t n, m;
    hla_tensor t[A_COUNT], t0[A_COUNT];
    void *mem[A_COUNT], *pristine[A_COUNT], *before[A_COUNT];
    size_t bytes[A_COUNT];
    unsigned char *sbytes, *ubytes, *obuf;
    size_t nsbytes, nubytes, ocap, written;
} fixture;

static void fx_tensor(fixture *f, int a, int dt, int nd, int64_t s0, int64_t s1, int64_t s2, int64_t s3,
                      const int64_t *ints)
{
    int64_t n = s0 * (nd > 1 ? s1 : 1) * (nd > 2 ? s2 : 1) * (nd > 3 ? s3 : 1), i;
    f->mem[a] = talloc_fill(n, dt, 0);
    f->bytes[a] = (size_t)(n + SLACK) * esize(dt);
    for (i = 0; i < n; i++) setv(f->mem[a], dt, i, ints ? (double)ints[i] : 0.5 * normal());
    f->t[a] = mk(f->mem[a], dt, nd, s0, s1, s2, s3);
}

/* hla2 with ridge (or op), H = 2, Hkv = 1, dk = 3, dv = 2; B = 1, T = 5 packed as 2 sequences
 * {0, 2, 5}; a 4-row state with rows {3, 1}; summaries of 2 rows; checkpoints of 4 rows (chunk 2: stride
 * 4, so the packed sequences of 2 and 3 tokens need none, one unpacked sequence of 5 tokens needs 1). */
static void fx_init(fixture *f, int op, int dt)
{
    static const int64_t cu[3] = {0, 2, 5}, rows[2] = {3, 1}, src[2] = {0, 0}, lens[2] = {2, 3}, lb[2] = {1, 4};
    const int sdt = state_dt(dt);
    int a;
    memset(f, 0, sizeof *f);
    f->c = cfg_make(op, 1, 1, 0.9, op == HLA_OP_HLA2 ? 0.5 : 0.0, 2, 1, 3, 2, 2);
    f->dt = dt, f->sdt = sdt;
    f->n = n_state(&f->c), f->m = n_summary(&f->c);
    fx_tensor(f, A_Q, dt, 4, 1, 5, 2, 3, NULL);
    fx_tensor(f, A_K, dt, 4, 1, 5, 1, 3, NULL);
    fx_tensor(f, A_V, dt, 4, 1, 5, 1, 2, NULL);
    fx_tensor(f, A_O, dt, 4, 1, 5, 2, 2, NULL);
    fx_tensor(f, A_CU, HLA_INT64, 1, 3, 0, 0, 0, cu);
    fx_tensor(f, A_INI, sdt, 2, 4, f->n, 0, 0, NULL);
    fx_tensor(f, A_FIN, sdt, 2, 4, f->n, 0, 0, NULL);
    fx_tensor(f, A_ROWS, HLA_INT64, 1, 2, 0, 0, 0, rows);
    fx_tensor(f, A_Q3, dt, 3, 2, 2, 3, 0, NULL);
    fx_tensor(f, A_K3, dt, 3, 2, 1, 3, 0, NULL);
    fx_tensor(f, A_V3, dt, 3, 2, 1, 2, 0, NULL);
    fx_tensor(f, A_O3, dt, 3, 2, 2, 2, 0, NULL);
    fx_tensor(f, A_ST, sdt, 2, 4, f->n, 0, 0, NULL);
    fx_tensor(f, A_SRC, HLA_INT64, 1, 2, 0, 0, 0, src);
    fx_tensor(f, A_DST, HLA_INT64, 1, 2, 0, 0, 0, rows);
    fx_tensor(f, A_SUM, sdt, 2, 2, f->m, 0, 0, NULL);
    fx_tensor(f, A_LEN, HLA_INT64, 1, 2, 0, 0, 0, lens);
    fx_tensor(f, A_SA, sdt, 2, 2, f->m, 0, 0, NULL);
    fx_tensor(f, A_LA, HLA_INT64, 1, 2, 0, 0, 0, lens);
    fx_tensor(f, A_SB, sdt, 2, 2, f->m, 0, 0, NULL);
    fx_tensor(f, A_LB, HLA_INT32, 1, 2, 0, 0, 0, lb);
    fx_tensor(f, A_SR, sdt, 2, 2, f->m, 0, 0, NULL);
    fx_tensor(f, A_LR, HLA_INT64, 1, 2, 0, 0, 0, lens);
    fx_tensor(f, A_DSTATE, sdt, 2, 2, f->n, 0, 0, NULL);
    fx_tensor(f, A_DSUM, sdt, 2, 2, f->m, 0, 0, NULL);
    fx_tensor(f, A_DLEN, HLA_INT64, 1, 2, 0, 0, 0, lens);
    {
        /* hla_backward's cotangents and gradients, and the checkpoint rows (the generator is restored so that
         * the data of the tests after this fixture do not depend on these draws) */
        const uint64_t rng = g_rng;
        fx_tensor(f, A_DO, dt, 4, 1, 5, 2, 2, NULL);
        fx_tensor(f, A_DQ, dt, 4, 1, 5, 2, 3, NULL);
        fx_tensor(f, A_DK, dt, 4, 1, 5, 1, 3, NULL);
        fx_tensor(f, A_DV, dt, 4, 1, 5, 1, 2, NULL);
        fx_tensor(f, A_DFIN, sdt, 2, 4, f->n, 0, 0, NULL);
        fx_tensor(f, A_DINI, sdt, 2, 4, f->n, 0, 0, NULL);
        fx_tensor(f, A_CK, sdt, 2, 4, f->n, 0, 0, NULL);
        g_rng = rng;
    }
    /* real summaries for a and b (random rows need not be valid summaries) */
    hla_summarize(&f->c, &f->t[A_Q], &f->t[A_K], &f->t[A_V], &f->t[A_CU], &f->t[A_SA], NULL);
    hla_summarize(&f->c, &f->t[A_Q], &f->t[A_K], &f->t[A_V], &f->t[A_CU], &f->t[A_SB], NULL);
    ((int32_t *)f->mem[A_LB])[0] = 2, ((int32_t *)f->mem[A_LB])[1] = 3;
    /* serialized bytes of state rows {3, 1} and of the summaries a with lengths */
    hla_state_serialize(&f->c, &f->t[A_ST], &f->t[A_ROWS], NULL, 0, &f->nsbytes);
    f->sbytes = xmalloc(f->nsbytes);
    OK(hla_state_serialize(&f->c, &f->t[A_ST], &f->t[A_ROWS], f->sbytes, f->nsbytes, &f->written), "fixture bytes");
    hla_summary_serialize(&f->c, &f->t[A_SA], &f->t[A_LA], NULL, 0, &f->nubytes);
    f->ubytes = xmalloc(f->nubytes);
    OK(hla_summary_serialize(&f->c, &f->t[A_SA], &f->t[A_LA], f->ubytes, f->nubytes, &f->written), "fixture bytes");
    f->ocap = 4 * (f->nsbytes + f->nubytes);
    f->obuf = xmalloc(f->ocap);
    memset(f->obuf, 0x3C, f->ocap);
    hla_config_init(&f->cout, sizeof f->cout);
    f->cout.dk = 99;
    f->cout0 = f->cout;
    for (a = 0; a < A_COUNT; a++) {
        f->pristine[a] = xmalloc(f->bytes[a]);
        f->before[a] = xmalloc(f->bytes[a]);
        memcpy(f->pristine[a], f->mem[a], f->bytes[a]);
        f->t0[a] = f->t[a];
    }
}

static void fx_restore(fixture *f)
{
    int a;
    for (a = 0; a < A_COUNT; a++) {
        memcpy(f->mem[a], f->pristine[a], f->bytes[a]);
        f->t[a] = f->t0[a];
    }
    memset(f->obuf, 0x3C, f->ocap);
    f->cout = f->cout0;
}

/* Remember every argument buffer as it is now (a test may have changed values before the call). */
static void fx_snapshot(fixture *f)
{
    int a;
    for (a = 0; a < A_COUNT; a++) memcpy(f->before[a], f->mem[a], f->bytes[a]);
}

/* Name of the first argument buffer changed since fx_snapshot, or NULL if all are as they were. */
static const char *fx_changed(const fixture *f)
{
    int a;
    size_t i;
    for (a = 0; a < A_COUNT; a++)
        if (memcmp(f->mem[a], f->before[a], f->bytes[a]) != 0) return arg_names[a];
    for (i = 0; i < f->ocap; i++)
        if (f->obuf[i] != 0x3C) return "serialization buffer";
    return NULL;
}

static void fx_free(fixture *f)
{
    int a;
    for (a = 0; a < A_COUNT; a++) free(f->mem[a]), free(f->pristine[a]), free(f->before[a]);
    free(f->sbytes), free(f->ubytes), free(f->obuf);
}

static hla_status fx_call(int e, fixture *f, const hla_config *cfg, hla_tensor *const *a)
{
    switch (e) {
    case E_FORWARD: return hla_forward(cfg, HLA_PATH_CHUNKED, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
    case E_STEP: return hla_step(cfg, a[0], a[1], a[2], a[3], a[4], a[5]);
    case E_REFERENCE: return hla_reference(cfg, a[0], a[1], a[2], a[3], a[4]);
    case E_RESET: return hla_state_reset_rows(cfg, a[0], a[1]);
    case E_COPY: return hla_state_copy_rows(cfg, a[0], a[1], a[2]);
    case E_SSER: return hla_state_serialize(cfg, a[0], a[1], f->obuf, f->ocap, &f->written);
    case E_SDES: return hla_state_deserialize(f->sbytes, f->nsbytes, &f->cout, a[0]);
    case E_SUMMARIZE: return hla_summarize(cfg, a[0], a[1], a[2], a[3], a[4], a[5]);
    case E_COMBINE: return hla_summary_combine(cfg, a[0], a[1], a[2], a[3], a[4], a[5]);
    case E_TOSTATE: return hla_summary_to_state(cfg, a[0], a[1], a[2]);
    case E_USER: return hla_summary_serialize(cfg, a[0], a[1], f->obuf, f->ocap, &f->written);
    case E_BACKWARD:
        return hla_backward(cfg, HLA_PATH_CHUNKED, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10]);
    case E_FWDCK: return hla_forward_checkpoints(cfg, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]);
    case E_BWDCK:
        return hla_backward_checkpoints(cfg, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11]);
    default: return hla_summary_deserialize(f->ubytes, f->nubytes, &f->cout, a[0], a[1]);
    }
}

/* Argument pointers of entry e over the fixture's tensors. */
static void fx_args(fixture *f, int e, hla_tensor **a)
{
    int i;
    for (i = 0; i < MAXARGS; i++) a[i] = i < g_entries[e].nargs ? &f->t[g_entries[e].arg[i]] : NULL;
}

/* Run entry e (arguments a), expect want; on failure, nothing the caller owns may have changed. */
static void fx_expect(fixture *f, int e, const hla_config *cfg, hla_tensor *const *a, hla_status want,
                      const char *kw, const char *what)
{
    hla_status got;
    const char *changed;
    fx_snapshot(f);
    got = fx_call(e, f, cfg, a);
    expect_status(got, want, kw ? kw : g_entries[e].fn, __FILE__, __LINE__, "%s: %s", g_entries[e].fn, what);
    if (want != HLA_OK && got != HLA_OK) {
        changed = fx_changed(f);
        CHECK(changed == NULL, "%s: %s failed (%s) but wrote into %s", g_entries[e].fn, what, sname(got),
              changed ? changed : "");
        CHECK(memcmp(&f->cout, &f->cout0, sizeof f->cout) == 0, "%s: %s failed but wrote *cfg", g_entries[e].fn, what);
    }
    fx_restore(f);
}

enum {
    M_NULL, M_DATA_NULL, M_DTYPE_BAD, M_DTYPE_NEG, M_NDIM0, M_NDIM5, M_NDIM_OTHER, M_NEG_SHAPE, M_BIG_SHAPE,
    M_BIG_STRIDE, M_MIN_STRIDE, M_EXTENT, M_SHAPE, M_HALF, M_OTHER, M_OVERLAP, M_ROWSTRIDE, M_ELEMSTRIDE,
    M_NEG_ELEMSTRIDE, M_COUNT
};
static const char *mut_names[M_COUNT] = {"NULL tensor", "data NULL", "dtype 77", "dtype -3", "ndim 0", "ndim 5",
                                         "ndim off by one", "shape[0] = -1", "shape[0] = INT64_MAX",
                                         "strides[0] = INT64_MAX", "strides[0] = INT64_MIN",
                                         "extent 2^30 * 2^40", "last size + 1", "a half type",
                                         "the other precision", "output stride 0 (overlap)",
                                         "row stride n - 1 (rows overlap)", "element stride 2",
                                         "element stride -1"};

/* Apply mutation mu to t; returns 0 if it does not apply to this role, else sets *want. */
static int mutate(hla_tensor *t, int mu, int role, int opt, const fixture *f, hla_status *want, int *nullptr_)
{
    const int is_float = role == R_IN || role == R_OUT, is_rows2d = role == R_ST || role == R_ST_FREE || role == R_DEST;
    const int is_int = role == R_IDX || role == R_IDX_COUNT || role == R_CU || role == R_LOUT;
    *nullptr_ = 0;
    switch (mu) {
    case M_NULL:
        if (opt) return 0;
        *nullptr_ = 1;
        *want = HLA_ERR_NULL_POINTER;
        return 1;
    case M_DATA_NULL:
        if (role == R_DEST) return 0; /* describes instead */
        t->data = NULL;
        *want = HLA_ERR_NULL_POINTER;
        return 1;
    case M_DTYPE_BAD: t->dtype = 77, *want = HLA_ERR_DTYPE; return 1;
    case M_DTYPE_NEG: t->dtype = -3, *want = HLA_ERR_DTYPE; return 1;
    case M_NDIM0: t->ndim = 0, *want = HLA_ERR_INVALID_ARGUMENT; return 1;
    case M_NDIM5: t->ndim = 5, *want = HLA_ERR_INVALID_ARGUMENT; return 1;
    case M_NDIM_OTHER: t->ndim = t->ndim < 4 ? t->ndim + 1 : t->ndim - 1, *want = HLA_ERR_INVALID_ARGUMENT; return 1;
    case M_NEG_SHAPE: t->shape[0] = -1, *want = HLA_ERR_INVALID_ARGUMENT; return 1;
    case M_BIG_SHAPE: t->shape[0] = INT64_MAX, *want = HLA_ERR_OVERFLOW; return 1;
    case M_BIG_STRIDE: t->strides[0] = INT64_MAX, *want = HLA_ERR_OVERFLOW; return 1;
    case M_MIN_STRIDE: t->strides[0] = INT64_MIN, *want = HLA_ERR_OVERFLOW; return 1;
    case M_EXTENT:
        t->shape[t->ndim - 1] = INT64_C(1) << 40;
        t->strides[t->ndim - 1] = INT64_C(1) << 30;
        *want = HLA_ERR_OVERFLOW;
        return 1;
    case M_SHAPE:
        t->shape[t->ndim - 1] += 1;
        *want = role == R_CU ? HLA_ERR_INVALID_ARGUMENT : role == R_IDX_COUNT ? HLA_OK : HLA_ERR_MISMATCH;
        return 1;
    case M_HALF:
        t->dtype = f->dt == HLA_BFLOAT16 ? HLA_FLOAT16 : HLA_BFLOAT16;
        *want = HLA_ERR_DTYPE;
        return 1;
    case M_OTHER:
        if (is_float) {
            t->dtype = t->dtype == HLA_FLOAT64 ? HLA_FLOAT32 : HLA_FLOAT64;
            *want = HLA_ERR_DTYPE;
            return 1;
        }
        if (is_rows2d) {
            if (role == R_ST_FREE) { /* float32 rows over float64 memory: a valid (if odd) call */
                if (f->sdt != HLA_FLOAT64) return 0;
                t->dtype = HLA_FLOAT32;
                *want = HLA_OK;
                return 1;
            }
            t->dtype = t->dtype == HLA_FLOAT64 ? HLA_FLOAT32 : HLA_FLOAT64;
            *want = HLA_ERR_DTYPE;
            return 1;
        }
        if (role == R_LOUT) {
            t->dtype = HLA_INT32;
            *want = HLA_ERR_DTYPE;
            return 1;
        }
        if (is_int) {
            t->dtype = HLA_FLOAT32;
            *want = HLA_ERR_DTYPE;
            return 1;
        }
        return 0;
    case M_OVERLAP:
        if (role == R_OUT) {
            t->strides[t->ndim - 1] = 0;
        } else if (role == R_LOUT) {
            t->strides[0] = 0;
        } else {
            return 0;
        }
        *want = HLA_ERR_INVALID_ARGUMENT;
        return 1;
    case M_ROWSTRIDE:
        if (!is_rows2d) return 0;
        t->strides[0] = t->shape[1] - 1;
        *want = HLA_ERR_INVALID_ARGUMENT;
        return 1;
    case M_ELEMSTRIDE:
        if (!is_rows2d) return 0;
        t->strides[1] = 2, t->shape[0] = 1;
        *want = HLA_ERR_INVALID_ARGUMENT;
        return 1;
    case M_NEG_ELEMSTRIDE:
        if (!is_rows2d) return 0;
        t->strides[1] = -1;
        t->data = eptr(t->data, t->dtype, t->shape[1] - 1);
        *want = HLA_ERR_INVALID_ARGUMENT;
        return 1;
    }
    return 0;
}

static void test_bad_tensors(void)
{
    int op, dti, e, i, mu;
    static const int dts[2] = {HLA_FLOAT64, HLA_BFLOAT16};
    for (op = 0; op < 3; op += 2)
        for (dti = 0; dti < 2; dti++) {
            fixture f;
            fx_init(&f, op, dts[dti]);
            for (e = 0; e < E_COUNT; e++) {
                hla_tensor *a[MAXARGS];
                set_ctx("bad tensors %s %s %s", op_name(op), dt_name(dts[dti]), g_entries[e].fn);
                fx_args(&f, e, a);
                fx_expect(&f, e, &f.c, a, HLA_OK, NULL, "the fixture's own arguments");
                /* every optional argument left out */
                for (i = 0; i < g_entries[e].nargs; i++)
                    if (g_entries[e].opt[i]) a[i] = NULL;
                fx_expect(&f, e, &f.c, a, HLA_OK, NULL, "optional arguments NULL");
                fx_args(&f, e, a);
                for (i = 0; i < g_entries[e].nargs; i++)
                    for (mu = 0; mu < M_COUNT; mu++) {
                        const int ai = g_entries[e].arg[i];
                        hla_status want = HLA_OK;
                        int isnull = 0;
                        char what[120];
                        const char *kw = g_entries[e].fn;
                        char named[64];
                        if (!mutate(&f.t[ai], mu, g_entries[e].role[i], g_entries[e].opt[i], &f, &want, &isnull)) {
                            f.t[ai] = f.t0[ai];
                            continue;
                        }
                        /* failures found while reading the tensor itself name the argument */
                        if (mu <= M_EXTENT && strlen(arg_names[ai]) > 1) {
                            snprintf(named, sizeof named, "%s", arg_names[ai]);
                            kw = named;
                        }
                        snprintf(what, sizeof what, "%s %s", arg_names[ai], mut_names[mu]);
                        if (isnull) a[i] = NULL;
                        fx_expect(&f, e, &f.c, a, want, kw, what);
                        a[i] = &f.t[ai];
                    }
            }
            fx_free(&f);
        }
}

/* bad values of index tensors, sizes and other pointers */
static void set_ints(fixture *f, int a, const int64_t *v, int64_t n)
{
    int64_t i;
    f->t[a].shape[0] = n;
    for (i = 0; i < n; i++)
        if (f->t[a].dtype == HLA_INT64)
            ((int64_t *)f->mem[a])[i] = v[i];
        else
            ((int32_t *)f->mem[a])[i] = (int32_t)v[i];
}

/* hla_backward: the values and combinations the per-tensor mutations of test_bad_tensors do not reach.
 * Fixture: hla2, H = 2, Hkv = 1, dk = 3, dv = 2, B = 1, T = 5 packed as {0, 2, 5}, states of 4 rows.
 * Arguments: a[0..2] q k v, a[3] d_out, a[4..6] dq dk dv, a[7] cu_seqlens, a[8] initial, a[9] d_final,
 * a[10] d_initial. Each failing call must name the argument and leave every byte of the fixture as it was. */
static void backward_bad_values(fixture *f)
{
    hla_tensor *a[MAXARGS];
    int i;
    int64_t n3;
#define BWITH(code, want, kw, what)                                                                                    \
    do {                                                                                                               \
        fx_args(f, E_BACKWARD, a);                                                                                     \
        code;                                                                                                          \
        fx_expect(f, E_BACKWARD, &f->c, a, want, kw, what);                                                            \
    } while (0)
    set_ctx("bad values hla_backward");
    /* path, on the otherwise valid call */
    {
        static const int32_t paths[3] = {3, -1, INT32_MIN};
        fx_args(f, E_BACKWARD, a);
        fx_snapshot(f);
        for (i = 0; i < 3; i++)
            EXPECT(hla_backward(&f->c, paths[i], a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10]),
                   HLA_ERR_INVALID_ARGUMENT, "path", "hla_backward path %ld", (long)paths[i]);
        CHECK(fx_changed(f) == NULL, "hla_backward with a bad path wrote into %s", fx_changed(f));
        fx_restore(f);
        for (i = 0; i < 3; i++) { /* every valid path accepts the fixture */
            fx_args(f, E_BACKWARD, a);
            OK(hla_backward(&f->c, i, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10]),
               "hla_backward %s on the fixture", path_name(i));
            fx_restore(f);
        }
    }
    /* cu_seqlens */
    {
        static const int64_t c1[3] = {1, 2, 5}, c2[4] = {0, 2, 2, 5}, c3[3] = {0, 3, 2}, c4[3] = {0, 2, 4},
                             c5[3] = {0, 2, 6}, c6[1] = {0}, c7[3] = {0, -1, 5}, c9[3] = {0, 0, 5},
                             c10[3] = {0, INT64_MAX, 5}, ok1[2] = {0, 5}, ok5[6] = {0, 1, 2, 3, 4, 5};
        static const struct {
            const int64_t *v;
            int64_t n;
            const char *what;
        } cus[9] = {{c1, 3, "cu_seqlens not starting at 0"}, {c2, 4, "cu_seqlens not strictly increasing (2, 2)"},
                    {c3, 3, "cu_seqlens decreasing"},        {c4, 3, "cu_seqlens ending before T"},
                    {c5, 3, "cu_seqlens ending after T"},    {c6, 1, "cu_seqlens of one entry"},
                    {c7, 3, "cu_seqlens with a negative offset"}, {c9, 3, "cu_seqlens with an empty first sequence"},
                    {c10, 3, "cu_seqlens with an offset INT64_MAX"}};
        for (i = 0; i < 9; i++)
            BWITH(set_ints(f, A_CU, cus[i].v, cus[i].n), HLA_ERR_INVALID_ARGUMENT, "cu_seqlens", cus[i].what);
        BWITH(f->t[A_CU].dtype = HLA_INT32; ((int32_t *)f->mem[A_CU])[0] = 0; ((int32_t *)f->mem[A_CU])[1] = 3;
              ((int32_t *)f->mem[A_CU])[2] = 1, HLA_ERR_INVALID_ARGUMENT, "cu_seqlens", "int32 cu_seqlens decreasing");
        BWITH(set_ints(f, A_CU, ok1, 2), HLA_OK, NULL, "cu_seqlens of one sequence");
        BWITH(set_ints(f, A_CU, ok5, 6); a[8] = a[9] = a[10] = NULL, HLA_OK, NULL, "cu_seqlens of five 1-token sequences");
        BWITH(set_ints(f, A_CU, ok5, 6), HLA_ERR_MISMATCH, "initial", "5 sequences, states of 4 rows");
        BWITH(set_ints(f, A_CU, ok5, 6); a[8] = NULL, HLA_ERR_MISMATCH, "d_final", "5 sequences, d_final of 4 rows");
        BWITH(set_ints(f, A_CU, ok5, 6); a[8] = a[9] = NULL, HLA_ERR_MISMATCH, "d_initial",
              "5 sequences, d_initial of 4 rows");
        BWITH(f->t[A_CU].dtype = HLA_FLOAT64, HLA_ERR_DTYPE, "cu_seqlens", "float64 cu_seqlens");
        BWITH(f->t[A_CU].ndim = 2; f->t[A_CU].shape[1] = 1, HLA_ERR_INVALID_ARGUMENT, "cu_seqlens", "2-D cu_seqlens");
    }
    /* cu_seqlens with B = 2 (q, k, v, d_out broadcast over the batch; gradients of B = 2) */
    {
        void *g[3];
        hla_tensor tg[3];
        g[0] = talloc(2 * 5 * 2 * 3, HLA_FLOAT64), g[1] = talloc(2 * 5 * 1 * 3, HLA_FLOAT64);
        g[2] = talloc(2 * 5 * 1 * 2, HLA_FLOAT64);
        tg[0] = mk(g[0], HLA_FLOAT64, 4, 2, 5, 2, 3), tg[1] = mk(g[1], HLA_FLOAT64, 4, 2, 5, 1, 3);
        tg[2] = mk(g[2], HLA_FLOAT64, 4, 2, 5, 1, 2);
        for (i = 0; i < 2; i++) {
            fx_args(f, E_BACKWARD, a);
            f->t[A_Q].shape[0] = f->t[A_K].shape[0] = f->t[A_V].shape[0] = f->t[A_DO].shape[0] = 2;
            f->t[A_Q].strides[0] = f->t[A_K].strides[0] = f->t[A_V].strides[0] = f->t[A_DO].strides[0] = 0;
            a[4] = &tg[0], a[5] = &tg[1], a[6] = &tg[2];
            if (i == 1) a[7] = NULL;
            fill(g[0], HLA_FLOAT64, 30, NAN), fill(g[1], HLA_FLOAT64, 15, NAN), fill(g[2], HLA_FLOAT64, 10, NAN);
            fx_expect(f, E_BACKWARD, &f->c, a, i == 0 ? HLA_ERR_INVALID_ARGUMENT : HLA_OK, "cu_seqlens",
                      i == 0 ? "cu_seqlens with B = 2" : "zero batch stride, B = 2, no cu_seqlens");
            if (i == 0) /* the gradients live outside the fixture: check them here */
                CHECK(count_nan(g[0], HLA_FLOAT64, 30 + SLACK) == 30 + SLACK &&
                          count_nan(g[1], HLA_FLOAT64, 15 + SLACK) == 15 + SLACK &&
                          count_nan(g[2], HLA_FLOAT64, 10 + SLACK) == 10 + SLACK,
                      "hla_backward failed (cu_seqlens with B = 2) but wrote a gradient");
        }
        /* the valid broadcast call wrote every gradient element */
        {
            int okw = 1, j;
            for (j = 0; j < 30; j++) okw &= isfinite(((double *)g[0])[j]) != 0;
            for (j = 0; j < 15; j++) okw &= isfinite(((double *)g[1])[j]) != 0;
            for (j = 0; j < 10; j++) okw &= isfinite(((double *)g[2])[j]) != 0;
            CHECK(okw, "backward with B = 2 left a gradient element unwritten (NaN)");
        }
        free(g[0]), free(g[1]), free(g[2]);
    }
    /* empty batch or sequence */
    BWITH(f->t[A_Q].shape[0] = 0; a[7] = NULL, HLA_ERR_INVALID_ARGUMENT, "q.shape", "B = 0");
    BWITH(f->t[A_Q].shape[1] = 0; a[7] = NULL, HLA_ERR_INVALID_ARGUMENT, "q.shape", "T = 0");
    /* shapes that disagree with the configuration or with q */
    BWITH(f->t[A_K].shape[2] = 2, HLA_ERR_MISMATCH, "k.shape", "k with 2 kv heads (cfg 1)");
    BWITH(f->t[A_V].shape[1] = 4, HLA_ERR_MISMATCH, "v.shape", "v with T - 1 tokens");
    BWITH(f->t[A_DO].shape[1] = 4, HLA_ERR_MISMATCH, "d_out", "d_out with T - 1 tokens");
    BWITH(f->t[A_DO].shape[2] = 1, HLA_ERR_MISMATCH, "d_out", "d_out with kv_heads (1) heads, cfg.heads 2");
    BWITH(f->t[A_DO].shape[3] = 3, HLA_ERR_MISMATCH, "d_out", "d_out with dk (3) features, dv 2");
    BWITH(f->t[A_DQ].shape[3] = 2, HLA_ERR_MISMATCH, "dq", "dq with dv (2) features, dk 3");
    BWITH(f->t[A_DQ].shape[2] = 1, HLA_ERR_MISMATCH, "dq", "dq with kv_heads (1) heads");
    BWITH(f->t[A_DQ].shape[1] = 6, HLA_ERR_MISMATCH, "dq", "dq with T + 1 tokens");
    BWITH(f->t[A_DK].shape[2] = 2, HLA_ERR_MISMATCH, "dk", "dk with heads (2) heads, kv_heads 1");
    BWITH(f->t[A_DK].shape[3] = 2, HLA_ERR_MISMATCH, "dk", "dk with dv (2) features");
    BWITH(f->t[A_DV].shape[3] = 3, HLA_ERR_MISMATCH, "dv", "dv with dk (3) features, dv 2");
    BWITH(f->t[A_DV].shape[0] = 2; f->t[A_DV].strides[0] = 10, HLA_ERR_MISMATCH, "dv", "dv with B = 2");
    /* element types: integers anywhere a float is expected, mixed floating types */
    BWITH(f->t[A_Q].dtype = HLA_INT64, HLA_ERR_DTYPE, "q.dtype", "int64 q");
    BWITH(f->t[A_Q].dtype = HLA_INT32, HLA_ERR_DTYPE, "q.dtype", "int32 q");
    BWITH(f->t[A_K].dtype = HLA_INT64, HLA_ERR_DTYPE, "k.dtype", "int64 k");
    BWITH(f->t[A_V].dtype = HLA_INT32, HLA_ERR_DTYPE, "v.dtype", "int32 v");
    BWITH(f->t[A_DO].dtype = HLA_INT64, HLA_ERR_DTYPE, "d_out", "int64 d_out");
    BWITH(f->t[A_DQ].dtype = HLA_INT32, HLA_ERR_DTYPE, "dq", "int32 dq");
    BWITH(f->t[A_DK].dtype = HLA_INT64, HLA_ERR_DTYPE, "dk", "int64 dk");
    BWITH(f->t[A_DV].dtype = HLA_INT64, HLA_ERR_DTYPE, "dv", "int64 dv");
    BWITH(f->t[A_INI].dtype = HLA_INT64, HLA_ERR_DTYPE, "initial", "int64 initial");
    BWITH(f->t[A_DFIN].dtype = HLA_INT32, HLA_ERR_DTYPE, "d_final", "int32 d_final");
    BWITH(f->t[A_DINI].dtype = HLA_INT64, HLA_ERR_DTYPE, "d_initial", "int64 d_initial");
    BWITH(f->t[A_Q].dtype = HLA_FLOAT32, HLA_ERR_DTYPE, "k.dtype", "float32 q, float64 k v");
    BWITH(f->t[A_DO].dtype = HLA_FLOAT32, HLA_ERR_DTYPE, "d_out", "float32 d_out for float64 q");
    BWITH(f->t[A_DQ].dtype = HLA_FLOAT32, HLA_ERR_DTYPE, "dq", "float32 dq for float64 q");
    BWITH(f->t[A_DK].dtype = HLA_BFLOAT16, HLA_ERR_DTYPE, "dk", "bfloat16 dk for float64 q");
    BWITH(f->t[A_DV].dtype = HLA_FLOAT16, HLA_ERR_DTYPE, "dv", "float16 dv for float64 q");
    BWITH(f->t[A_INI].dtype = HLA_FLOAT32, HLA_ERR_DTYPE, "initial", "float32 initial for float64 q");
    BWITH(f->t[A_DFIN].dtype = HLA_FLOAT32, HLA_ERR_DTYPE, "d_final", "float32 d_final for float64 q");
    BWITH(f->t[A_DINI].dtype = HLA_FLOAT32, HLA_ERR_DTYPE, "d_initial", "float32 d_initial for float64 q");
    /* state rows: too few for the sequences, rows of another length, another configuration's state */
    BWITH(f->t[A_INI].shape[0] = 1, HLA_ERR_MISMATCH, "initial", "initial of 1 row for 2 sequences");
    BWITH(f->t[A_DFIN].shape[0] = 1, HLA_ERR_MISMATCH, "d_final", "d_final of 1 row for 2 sequences");
    BWITH(f->t[A_DINI].shape[0] = 1, HLA_ERR_MISMATCH, "d_initial", "d_initial of 1 row for 2 sequences");
    BWITH(f->t[A_DFIN].shape[0] = 0; a[7] = NULL, HLA_ERR_MISMATCH, "d_final", "d_final of 0 rows for 1 sequence");
    BWITH(f->t[A_DFIN].shape[1] = f->n - 1, HLA_ERR_MISMATCH, "d_final", "d_final rows of n - 1 elements");
    BWITH(f->t[A_INI].shape[1] = f->n - 1, HLA_ERR_MISMATCH, "initial", "initial rows of n - 1 elements");
    BWITH(f->t[A_DINI].shape[1] = f->n - 1; f->t[A_DINI].shape[0] = 2, HLA_ERR_MISMATCH, "d_initial",
          "d_initial rows of n - 1 elements");
    {
        hla_config c3 = f->c;
        c3.op = HLA_OP_HLA3;
        c3.ridge = 0;
        n3 = n_state(&c3);
        BWITH(f->t[A_DFIN].shape[1] = n3; f->t[A_DFIN].shape[0] = 1; a[7] = NULL, HLA_ERR_MISMATCH, "d_final",
              "d_final of another configuration (hla3's n)");
        BWITH(f->t[A_DINI].shape[1] = n3; f->t[A_DINI].shape[0] = 1; a[7] = NULL, HLA_ERR_MISMATCH, "d_initial",
              "d_initial of another configuration (hla3's n)");
    }
    /* written tensors whose elements overlap (one element written twice) */
    BWITH(f->t[A_DQ].strides[2] = 0, HLA_ERR_INVALID_ARGUMENT, "dq", "dq broadcast over heads (stride 0)");
    BWITH(f->t[A_DK].strides[1] = 0, HLA_ERR_INVALID_ARGUMENT, "dk", "dk broadcast over tokens (stride 0)");
    BWITH(f->t[A_DV].strides[3] = 0, HLA_ERR_INVALID_ARGUMENT, "dv", "dv broadcast over features (stride 0)");
    BWITH(f->t[A_DQ].strides[1] = 2, HLA_ERR_INVALID_ARGUMENT, "dq", "dq token stride 2 < heads x features");
    BWITH(f->t[A_DINI].strides[0] = 0, HLA_ERR_INVALID_ARGUMENT, "d_initial", "d_initial rows at stride 0");
    BWITH(f->t[A_DINI].strides[0] = f->n - 1, HLA_ERR_INVALID_ARGUMENT, "d_initial", "d_initial rows overlapping");
    BWITH(f->t[A_DFIN].strides[0] = f->n - 1, HLA_ERR_INVALID_ARGUMENT, "d_final", "d_final rows overlapping");
    /* read tensors may be broadcast; d_initial may be the memory of initial or d_final (documented) */
    BWITH(f->t[A_DO].strides[2] = 0, HLA_OK, NULL, "d_out broadcast over heads (read only)");
    BWITH(f->t[A_DFIN].shape[0] = 1; f->t[A_DFIN].strides[0] = 0; a[7] = NULL, HLA_OK, NULL,
          "d_final of 1 row for 1 sequence");
    BWITH(a[10] = a[8], HLA_OK, NULL, "d_initial = initial (same tensor)");
    BWITH(a[10] = a[9], HLA_OK, NULL, "d_initial = d_final (same tensor)");
    BWITH(a[8] = NULL, HLA_OK, NULL, "d_initial without initial (zero prefix)");
    BWITH(a[9] = NULL; a[10] = NULL, HLA_OK, NULL, "initial only");
    /* NULL for each required argument, with the rest valid (the message names it) */
    {
        static const char *names[7] = {"q", "k", "v", "d_out", "dq", "dk", "dv"};
        for (i = 0; i < 7; i++) {
            char what[64], kw[64];
            snprintf(kw, sizeof kw, " %s must", names[i]); /* " q must" (not "dq must"): "q" alone matches anything */
            snprintf(what, sizeof what, "%s NULL", names[i]);
            BWITH(a[i] = NULL, HLA_ERR_NULL_POINTER, kw, what);
        }
        BWITH(f->t[A_DO].data = NULL, HLA_ERR_NULL_POINTER, "d_out", "d_out.data NULL");
        BWITH(f->t[A_DINI].data = NULL, HLA_ERR_NULL_POINTER, "d_initial", "d_initial.data NULL");
    }
#undef BWITH
}

static void test_bad_values(void)
{
    fixture f;
    hla_tensor *a[MAXARGS];
    int e;
    int64_t r;
    fx_init(&f, HLA_OP_HLA2, HLA_FLOAT64);
    set_ctx("bad values");
#define WITH(entry, code, want, kw, what)                                                                              \
    do {                                                                                                               \
        fx_args(&f, entry, a);                                                                                         \
        code;                                                                                                          \
        fx_expect(&f, entry, &f.c, a, want, kw, what);                                                                 \
    } while (0)
    /* path */
    fx_args(&f, E_FORWARD, a);
    fx_snapshot(&f);
    EXPECT(hla_forward(&f.c, 3, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]), HLA_ERR_INVALID_ARGUMENT, "path",
           "path 3");
    EXPECT(hla_forward(&f.c, -1, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]), HLA_ERR_INVALID_ARGUMENT, "path",
           "path -1");
    CHECK(fx_changed(&f) == NULL, "a bad path wrote memory");
    fx_restore(&f);
    /* cu_seqlens */
    {
        static const int64_t c1[3] = {1, 2, 5}, c2[4] = {0, 2, 2, 5}, c3[3] = {0, 3, 2}, c4[3] = {0, 2, 4},
                             c5[3] = {0, 2, 6}, c6[1] = {0}, c7[3] = {0, -1, 5}, c8[2] = {0, 5}, c9[3] = {0, 0, 5};
        static const struct {
            const int64_t *v;
            int64_t n;
            const char *what;
        } cus[9] = {{c1, 3, "cu_seqlens not starting at 0"}, {c2, 4, "cu_seqlens not strictly increasing (2, 2)"},
                    {c3, 3, "cu_seqlens decreasing"},        {c4, 3, "cu_seqlens ending before T"},
                    {c5, 3, "cu_seqlens ending after T"},    {c6, 1, "cu_seqlens of one entry"},
                    {c7, 3, "cu_seqlens with a negative offset"}, {c8, 2, "one sequence but 2 rows (mismatch)"},
                    {c9, 3, "cu_seqlens with an empty first sequence"}};
        int i;
        for (i = 0; i < 9; i++) {
            hla_status want = i == 7 ? HLA_ERR_MISMATCH : HLA_ERR_INVALID_ARGUMENT;
            const char *kw = i == 7 ? NULL : "cu_seqlens";
            WITH(E_FORWARD, set_ints(&f, A_CU, cus[i].v, cus[i].n), want, kw, cus[i].what);
            if (i != 7) {
                WITH(E_REFERENCE, set_ints(&f, A_CU, cus[i].v, cus[i].n), want, kw, cus[i].what);
                WITH(E_SUMMARIZE, set_ints(&f, A_CU, cus[i].v, cus[i].n), want, kw, cus[i].what);
            }
        }
        /* int32 offsets with B > 1 (a batch of 2 over broadcast inputs) */
        for (e = 0; e < 3; e++) {
            int entry = e == 0 ? E_FORWARD : e == 1 ? E_REFERENCE : E_SUMMARIZE;
            void *o2 = talloc(2 * 5 * 2 * 2, HLA_FLOAT64);
            hla_tensor to2 = mk(o2, HLA_FLOAT64, 4, 2, 5, 2, 2), s2 = f.t[A_SUM];
            fx_args(&f, entry, a);
            f.t[A_Q].shape[0] = f.t[A_K].shape[0] = f.t[A_V].shape[0] = 2;
            f.t[A_Q].strides[0] = f.t[A_K].strides[0] = f.t[A_V].strides[0] = 0;
            if (entry != E_SUMMARIZE) a[3] = &to2;
            if (entry == E_FORWARD) a[5] = a[6] = a[7] = NULL;
            if (entry == E_SUMMARIZE) a[4] = &s2;
            fx_expect(&f, entry, &f.c, a, HLA_ERR_INVALID_ARGUMENT, "cu_seqlens", "cu_seqlens with B = 2");
            /* without cu_seqlens the broadcast batch of 2 is fine */
            fx_args(&f, entry, a);
            f.t[A_Q].shape[0] = f.t[A_K].shape[0] = f.t[A_V].shape[0] = 2;
            f.t[A_Q].strides[0] = f.t[A_K].strides[0] = f.t[A_V].strides[0] = 0;
            if (entry != E_SUMMARIZE) a[3] = &to2;
            if (entry == E_FORWARD) a[5] = a[6] = a[7] = NULL;
            a[entry == E_SUMMARIZE ? 3 : 4] = NULL;
            if (entry == E_SUMMARIZE) a[5] = NULL;
            fx_expect(&f, entry, &f.c, a, HLA_OK, NULL, "zero batch stride, B = 2");
            free(o2);
        }
    }
    /* empty batch or sequence */
    WITH(E_FORWARD, f.t[A_Q].shape[0] = 0; a[4] = a[5] = a[6] = a[7] = NULL, HLA_ERR_INVALID_ARGUMENT, NULL, "B = 0");
    WITH(E_FORWARD, f.t[A_Q].shape[1] = 0; a[4] = a[5] = a[6] = a[7] = NULL, HLA_ERR_INVALID_ARGUMENT, NULL, "T = 0");
    WITH(E_SUMMARIZE, f.t[A_Q].shape[1] = 0; a[3] = a[5] = NULL, HLA_ERR_INVALID_ARGUMENT, NULL, "summarize T = 0");
    WITH(E_STEP, f.t[A_Q3].shape[0] = 0; a[5] = NULL, HLA_ERR_INVALID_ARGUMENT, NULL, "step R = 0");
    /* shapes that disagree with the configuration */
    WITH(E_FORWARD, f.t[A_K].shape[2] = 2, HLA_ERR_MISMATCH, NULL, "k with 2 kv heads (cfg 1)");
    WITH(E_FORWARD, f.t[A_V].shape[1] = 4, HLA_ERR_MISMATCH, NULL, "v with T - 1 tokens");
    WITH(E_STEP, f.t[A_K3].shape[0] = 1, HLA_ERR_MISMATCH, NULL, "k with 1 row, q with 2");
    /* rows */
    {
        static const int64_t r1[2] = {4, 1}, r2[2] = {-1, 1}, r3[2] = {1, 1}, r4[2] = {INT64_MAX, 0},
                             r5[2] = {INT64_MIN, 0};
        static const struct {
            const int64_t *v;
            const char *what;
        } rs[5] = {{r1, "row 4 of 4"}, {r2, "row -1"}, {r3, "repeated row"}, {r4, "row INT64_MAX"}, {r5, "row INT64_MIN"}};
        int i;
        static const int entries[5] = {E_FORWARD, E_STEP, E_RESET, E_SSER, E_TOSTATE};
        for (i = 0; i < 5; i++)
            for (e = 0; e < 5; e++) WITH(entries[e], set_ints(&f, A_ROWS, rs[i].v, 2), HLA_ERR_INVALID_ARGUMENT,
                                         i == 2 ? "repeat" : "rows", rs[i].what);
        /* int32 rows out of range */
        {
            int32_t bad[2 + SLACK] = {1, 9};
            hla_tensor t32 = mk(bad, HLA_INT32, 1, 2, 0, 0, 0);
            WITH(E_STEP, a[5] = &t32, HLA_ERR_INVALID_ARGUMENT, "rows", "int32 row 9 of 4");
        }
        WITH(E_FORWARD, a[5] = a[6] = NULL, HLA_ERR_INVALID_ARGUMENT, "rows", "rows without initial or final");
        WITH(E_FORWARD, a[7] = NULL; f.t[A_INI].shape[0] = 1, HLA_ERR_MISMATCH, "initial", "initial of 1 row for 2 sequences");
        WITH(E_STEP, a[5] = NULL; f.t[A_ST].shape[0] = 1, HLA_ERR_MISMATCH, "state", "state of 1 row for 2 steps");
        WITH(E_TOSTATE, a[2] = NULL; f.t[A_ST].shape[0] = 1, HLA_ERR_MISMATCH, "state", "state of 1 row for 2 summaries");
        r = 4;
        WITH(E_COPY, set_ints(&f, A_SRC, &r, 1); f.t[A_DST].shape[0] = 1, HLA_ERR_INVALID_ARGUMENT, "src_rows",
             "src row 4 of 4");
        r = -2;
        WITH(E_COPY, set_ints(&f, A_SRC, &r, 1); f.t[A_DST].shape[0] = 1, HLA_ERR_INVALID_ARGUMENT, "src_rows",
             "src row -2");
        WITH(E_COPY, set_ints(&f, A_DST, r3, 2), HLA_ERR_INVALID_ARGUMENT, "repeat", "repeated dst rows");
        WITH(E_COPY, set_ints(&f, A_DST, r1, 2), HLA_ERR_INVALID_ARGUMENT, "rows", "dst row 4 of 4");
        WITH(E_COPY, f.t[A_DST].shape[0] = 1, HLA_ERR_MISMATCH, NULL, "2 src rows, 1 dst row");
    }
    /* another configuration's state: n of hla3 where hla2 is configured */
    {
        hla_config c3 = f.c;
        int64_t n3;
        c3.op = HLA_OP_HLA3;
        c3.ridge = 0;
        n3 = n_state(&c3);
        CHECK(n3 != f.n, "hla3 and hla2 states have the same size %lld", (long long)n3);
        WITH(E_STEP, f.t[A_ST].shape[1] = n3; f.t[A_ST].shape[0] = 1; a[5] = NULL; f.t[A_Q3].shape[0] = 1;
             f.t[A_K3].shape[0] = 1; f.t[A_V3].shape[0] = 1; f.t[A_O3].shape[0] = 1, HLA_ERR_MISMATCH, "state",
             "a state of another configuration");
    }
    /* lengths */
    {
        static const int64_t l1[2] = {-1, 3}, l2[2] = {INT64_C(1) << 62, 1}, l3[2] = {(INT64_C(1) << 59) - 1, 1},
                             l4[2] = {2, 3};
        WITH(E_COMBINE, set_ints(&f, A_LA, l1, 2), HLA_ERR_INVALID_ARGUMENT, "a_lengths", "a negative length");
        WITH(E_COMBINE, set_ints(&f, A_LA, l2, 2), HLA_ERR_INVALID_ARGUMENT, "a_lengths", "length 2^62");
        WITH(E_COMBINE, set_ints(&f, A_LA, l3, 2); f.t[A_LB].dtype = HLA_INT64; set_ints(&f, A_LB, l3, 2),
             HLA_ERR_OVERFLOW, NULL,
             "lengths whose sum overflows");
        WITH(E_COMBINE, set_ints(&f, A_LB, l1, 2), HLA_ERR_INVALID_ARGUMENT, "b_lengths", "a negative b length");
        WITH(E_COMBINE, f.t[A_SB].shape[0] = 1, HLA_ERR_MISMATCH, NULL, "b of 1 row, a of 2");
        WITH(E_COMBINE, f.t[A_SR].shape[0] = 1, HLA_ERR_MISMATCH, NULL, "result of 1 row, a of 2");
        WITH(E_USER, set_ints(&f, A_LEN, l1, 2), HLA_ERR_INVALID_ARGUMENT, "lengths", "a negative length");
        WITH(E_COMBINE, set_ints(&f, A_LA, l4, 2); set_ints(&f, A_LB, l4, 2), HLA_OK, NULL, "valid lengths");
    }
    /* pointers that are not tensors */
    {
        int64_t res = 0;
        size_t w = 0;
        hla_tensor d;
        EXPECT(hla_state_elements(&f.c, NULL), HLA_ERR_NULL_POINTER, "result", "state_elements(result NULL)");
        EXPECT(hla_summary_elements(&f.c, NULL), HLA_ERR_NULL_POINTER, "result", "summary_elements(result NULL)");
        EXPECT(hla_state_elements(NULL, &res), HLA_ERR_NULL_POINTER, "cfg", "state_elements(cfg NULL)");
        EXPECT(hla_config_validate(NULL), HLA_ERR_NULL_POINTER, "cfg", "validate(NULL)");
        EXPECT(hla_state_serialize(&f.c, &f.t[A_ST], NULL, NULL, 1, &w), HLA_ERR_NULL_POINTER, "buffer",
               "serialize(buffer NULL, capacity 1)");
        EXPECT(hla_summary_serialize(&f.c, &f.t[A_SUM], &f.t[A_LEN], NULL, 0, NULL), HLA_ERR_NULL_POINTER, "written",
               "summary_serialize(written NULL)");
        memset(&d, 0, sizeof d);
        EXPECT(hla_summary_deserialize(NULL, 10, &f.cout, &d, &f.t[A_DLEN]), HLA_ERR_NULL_POINTER, "buffer",
               "summary_deserialize(buffer NULL)");
        EXPECT(hla_summary_deserialize(f.ubytes, f.nubytes, NULL, &d, &f.t[A_DLEN]), HLA_ERR_NULL_POINTER, "cfg",
               "summary_deserialize(cfg NULL)");
        EXPECT(hla_state_deserialize(f.sbytes, 0, &f.cout, &d), HLA_ERR_CORRUPT, NULL, "state_deserialize(size 0)");
        CHECK(d.ndim == 0, "a failing describe filled the tensor");
        fx_restore(&f);
    }
    /* NULL cfg through every entry that takes one */
    for (e = 0; e < E_COUNT; e++) {
        if (e == E_SDES || e == E_UDES) continue;
        set_ctx("cfg NULL %s", g_entries[e].fn);
        fx_args(&f, e, a);
        fx_expect(&f, e, NULL, a, HLA_ERR_NULL_POINTER, "cfg", "cfg NULL");
    }
    backward_bad_values(&f);
#undef WITH
    fx_free(&f);
}

/* configurations out of range, through hla_config_validate and every entry point that takes one */
static int bad_config(int i, hla_config *c, const char **what, hla_status *want)
{
    *want = HLA_ERR_INVALID_ARGUMENT;
    switch (i) {
    case 0: c->op = 3, *what = "op 3"; break;
    case 1: c->op = -1, *what = "op -1"; break;
    case 2: c->masked = 2, *what = "masked 2"; break;
    case 3: c->masked = -1, *what = "masked -1"; break;
    case 4: c->normalize = 2, *what = "normalize 2"; break;
    case 5: c->normalize = -1, *what = "normalize -1"; break;
    case 6: c->heads = 0, *what = "heads 0"; break;
    case 7: c->heads = -2, *what = "heads -2"; break;
    case 8: c->heads = INT64_C(1) << 25, *what = "heads 2^25", *want = HLA_ERR_OVERFLOW; break;
    case 9: c->kv_heads = -1, *what = "kv_heads -1"; break;
    case 10: c->kv_heads = 3, *what = "kv_heads 3 not dividing heads 2"; break;
    case 11: c->kv_heads = 4, *what = "kv_heads 4 > heads 2"; break;
    case 12: c->kv_heads = INT64_C(1) << 25, *what = "kv_heads 2^25", *want = HLA_ERR_OVERFLOW; break;
    case 13: c->dk = 0, *what = "dk 0"; break;
    case 14: c->dk = -3, *what = "dk -3"; break;
    case 15: c->dk = INT64_MAX, *what = "dk INT64_MAX", *want = HLA_ERR_OVERFLOW; break;
    case 16: c->dv = 0, *what = "dv 0"; break;
    case 17: c->dv = INT64_C(1) << 30, *what = "dv 2^30", *want = HLA_ERR_OVERFLOW; break;
    case 18: c->scale = NAN, *what = "scale NaN"; break;
    case 19: c->scale = INFINITY, *what = "scale +inf"; break;
    case 20: c->scale = -INFINITY, *what = "scale -inf"; break;
    case 21: c->decay = 0.0, *what = "decay 0"; break;
    case 22: c->decay = -0.5, *what = "decay -0.5"; break;
    case 23: c->decay = 1.0 + 1e-12, *what = "decay 1 + 1e-12"; break;
    case 24: c->decay = NAN, *what = "decay NaN"; break;
    case 25: c->decay = INFINITY, *what = "decay inf"; break;
    case 26: c->ridge = -1e-9, *what = "ridge -1e-9"; break;
    case 27: c->ridge = NAN, *what = "ridge NaN"; break;
    case 28: c->ridge = INFINITY, *what = "ridge inf"; break;
    case 29: c->op = HLA_OP_AHLA, *what = "ridge with ahla"; break;
    case 30: c->op = HLA_OP_HLA3, *what = "ridge with hla3"; break;
    case 31: c->eps = 0.0, *what = "eps 0"; break;
    case 32: c->eps = -1.0, *what = "eps -1"; break;
    case 33: c->eps = NAN, *what = "eps NaN"; break;
    case 34: c->eps = INFINITY, *what = "eps inf"; break;
    case 35: c->chunk_size = -1, *what = "chunk_size -1"; break;
    case 36: c->chunk_size = INT64_MIN, *what = "chunk_size INT64_MIN"; break;
    case 37: c->struct_size = 0, *what = "struct_size 0"; break;
    case 38: c->struct_size = (uint32_t)OLD_CONFIG_SIZE - 1, *what = "struct_size 87 (below header 1.0's 88)"; break;
    case 39: c->struct_size = 1u << 20, *what = "struct_size 2^20"; break;
    case 40:
        c->heads = INT64_C(1) << 24, c->kv_heads = 0, c->dk = c->dv = INT64_C(1) << 24;
        *what = "heads = dk = dv = 2^24 (state size overflows)", *want = HLA_ERR_OVERFLOW;
        break;
    case 41: c->checkpoint_every = -1, *what = "checkpoint_every -1"; break;
    case 42: c->checkpoint_every = INT64_MIN, *what = "checkpoint_every INT64_MIN"; break;
    case 43: c->struct_size = (uint32_t)OLD_CONFIG_SIZE - 8, *what = "struct_size 80"; break;
    case 44: c->struct_size = 4, *what = "struct_size 4"; break;
    default: return 0;
    }
    return 1;
}

static const char *bad_config_kw(int i)
{
    static const char *kw[45] = {"op", "op", "masked", "masked", "normalize", "normalize", "heads", "heads", "heads",
                                 "kv_heads", "kv_heads", "kv_heads", "kv_heads", "dk", "dk", "dk", "dv", "dv",
                                 "scale", "scale", "scale", "decay", "decay", "decay", "decay", "decay", "ridge",
                                 "ridge", "ridge", "ridge", "ridge", "eps", "eps", "eps", "eps", "chunk_size",
                                 "chunk_size", "struct_size", "struct_size", "struct_size", NULL,
                                 "checkpoint_every", "checkpoint_every", "struct_size", "struct_size"};
    return i < 45 ? kw[i] : NULL;
}

static void test_bad_configs(void)
{
    fixture f;
    int i, e;
    fx_init(&f, HLA_OP_HLA2, HLA_FLOAT32);
    for (i = 0;; i++) {
        hla_config c = f.c;
        const char *what = "";
        hla_status want;
        int64_t res = -5;
        if (!bad_config(i, &c, &what, &want)) break;
        set_ctx("bad config: %s", what);
        EXPECT(hla_config_validate(&c), want, bad_config_kw(i), "validate");
        EXPECT(hla_state_elements(&c, &res), want, NULL, "state_elements");
        EXPECT(hla_summary_elements(&c, &res), want, NULL, "summary_elements");
        CHECK(res == -5, "a failing *_elements wrote its result (%lld)", (long long)res);
        for (e = 0; e < E_COUNT; e++) {
            hla_tensor *a[MAXARGS];
            if (e == E_SDES || e == E_UDES) continue;
            fx_args(&f, e, a);
            fx_expect(&f, e, &c, a, want, g_entries[e].fn, "bad configuration");
        }
    }
    /* valid extremes */
    {
        hla_config c = f.c;
        set_ctx("config extremes");
        c.decay = 5e-324;
        OK(hla_config_validate(&c), "decay = smallest subnormal");
        c.decay = 1.0, c.eps = 1e-300, c.scale = -1e300, c.chunk_size = INT64_MAX, c.checkpoint_every = INT64_MAX;
        OK(hla_config_validate(&c), "tiny eps, huge negative scale, chunk_size INT64_MAX, checkpoint_every INT64_MAX");
        c.checkpoint_every = 1;
        OK(hla_config_validate(&c), "checkpoint_every 1");
        c.checkpoint_every = 0, c.struct_size = (uint32_t)OLD_CONFIG_SIZE;
        OK(hla_config_validate(&c), "struct_size 88 (headers 1.0 and 1.1)");
        c.struct_size = (uint32_t)sizeof c;
        c.heads = 6, c.kv_heads = 3;
        OK(hla_config_validate(&c), "heads 6, kv_heads 3");
        c.kv_heads = 6;
        OK(hla_config_validate(&c), "kv_heads = heads");
    }
    fx_free(&f);
}

/* ------------------------------------------------------------------------------------------ */
/* 8. causality with non-finite inputs: NaN/Inf at token t reaches only outputs >= t of its batch */

static void test_causality(void)
{
    int op, dt, path, masked;
    for (op = 0; op < 3; op++)
        for (dt = 0; dt < 2; dt++)
            for (masked = 1; masked >= 0; masked--) {
            const int64_t B = 2, T = 19, H = 2, Hkv = 1, dk = 3, dv = 2, tn = 9;
            hla_config c = cfg_make(op, masked, 1, 0.9, op == HLA_OP_HLA2 ? 0.5 : 0.0, H, Hkv, dk, dv, 4);
            prob p;
            void *out, *clean, *st;
            int64_t i;
            set_ctx("causality %s %s %s", op_name(op), dt_name(dt), masked ? "masked" : "unmasked");
            prob_init(&p, &c, dt, B, T, 1, NULL, 0);
            out = talloc(p.no, dt), clean = talloc(p.no, dt), st = talloc(B * p.n, p.sdt);
            {
                hla_tensor tq = pq(&p, 0, T), tk = pk(&p, 0, T), tv = pv(&p, 0, T), to = po(&p, clean, 0, T);
                OK(hla_forward(&c, HLA_PATH_SERIAL, &tq, &tk, &tv, &to, NULL, NULL, NULL, NULL), "clean forward");
            }
            setv(p.k, dt, (0 * T + tn) * Hkv * dk + 1, NAN);     /* batch 0, token 9: NaN key */
            setv(p.v, dt, (1 * T + tn + 3) * Hkv * dv, INFINITY); /* batch 1, token 12: Inf value */
            setv(p.q, dt, (1 * T + tn + 3) * H * dk + 2, NAN);    /* and a NaN query */
            for (path = 0; path < 4; path++) {
                hla_tensor tq = pq(&p, 0, T), tk = pk(&p, 0, T), tv = pv(&p, 0, T), to = po(&p, out, 0, T),
                           ts = mk(st, p.sdt, 2, B, p.n, 0, 0);
                int bad = 0;
                fill(out, dt, p.no, -1234.0);
                if (path < 3) {
                    OK(hla_forward(&c, path, &tq, &tk, &tv, &to, NULL, NULL, NULL, NULL), "forward %s",
                       path_name(path));
                } else {
                    int64_t t;
                    fill(st, p.sdt, B * p.n, 0.0);
                    for (t = 0; t < T; t++) {
                        hla_tensor q3 = stepv(p.q, dt, B, T, H, dk, t), k3 = stepv(p.k, dt, B, T, Hkv, dk, t),
                                   v3 = stepv(p.v, dt, B, T, Hkv, dv, t), o3 = stepv(out, dt, B, T, H, dv, t);
                        hla_step(&c, &q3, &k3, &v3, &o3, &ts, NULL);
                    }
                }
                for (i = 0; i < p.no; i++) {
                    const int64_t b = i / (T * H * dv), t = (i / (H * dv)) % T;
                    const int64_t first = b == 0 ? tn : tn + 3;
                    double x = getv(out, dt, i), y = getv(clean, dt, i);
                    if (t < first && !(fabs(x - y) <= tol_of(dt) * (1 + fabs(y)))) bad++;
                }
                CHECK(bad == 0, "%s: %d outputs before the non-finite token changed", path < 3 ? path_name(path) : "step",
                      bad);
            }
            free(out), free(clean), free(st);
            prob_free(&p);
        }
}

/* ------------------------------------------------------------------------------------------ */
/* 9. threads: last_error is thread-local; calls on distinct memory run concurrently             */

typedef struct {
    int op;
    char first[256], msg[256];
    double err;
    hla_status st;
} thread_arg;

static void *error_thread(void *vp)
{
    thread_arg *a = vp;
    hla_config c;
    const char *m = hla_last_error();
    snprintf(a->first, sizeof a->first, "%s", m ? m : "(null)");
    hla_config_init(&c, sizeof c);
    c.eps = -1.0;
    a->st = hla_config_validate(&c);
    m = hla_last_error();
    snprintf(a->msg, sizeof a->msg, "%s", m ? m : "(null)");
    return NULL;
}

typedef struct {
    prob *p;
    void *out, *st;
    int path;
    hla_status st_rc;
} compute_arg;

static void *compute_thread(void *vp)
{
    compute_arg *a = vp;
    int rep;
    a->st_rc = HLA_OK;
    for (rep = 0; rep < 3 && a->st_rc == HLA_OK; rep++) {
        hla_tensor tq = pq(a->p, 0, a->p->T), tk = pk(a->p, 0, a->p->T), tv = pv(a->p, 0, a->p->T),
                   to = po(a->p, a->out, 0, a->p->T), ts = mk(a->st, a->p->sdt, 2, a->p->B, a->p->n, 0, 0);
        a->st_rc = hla_forward(&a->p->c, (a->path + rep) % 3, &tq, &tk, &tv, &to, NULL, NULL, &ts, NULL);
    }
    return NULL;
}

static void test_threads(void)
{
    pthread_t th[4];
    thread_arg ea;
    compute_arg ca[4];
    prob ps[4];
    hla_config c;
    int i, started[4];
    set_ctx("threads");
    hla_config_init(&c, sizeof c);
    c.decay = 2.0;
    EXPECT(hla_config_validate(&c), HLA_ERR_INVALID_ARGUMENT, "decay", "validate(decay 2) in the main thread");
    memset(&ea, 0, sizeof ea);
    if (pthread_create(&th[0], NULL, error_thread, &ea) == 0) {
        pthread_join(th[0], NULL);
        CHECK(ea.first[0] == '\0', "a new thread's hla_last_error() is \"%s\", want \"\"", ea.first);
        CHECK(ea.st == HLA_ERR_INVALID_ARGUMENT && icontains_any(ea.msg, "eps"), "other thread: %s \"%s\"",
              sname(ea.st), ea.msg);
        CHECK(icontains_any(hla_last_error(), "decay") && !icontains_any(hla_last_error(), "eps"),
              "the main thread's last_error changed by another thread: \"%s\"", hla_last_error());
    } else {
        CHECK(0, "pthread_create failed");
    }
    for (i = 0; i < 4; i++) {
        hla_config ci = cfg_make(i % 3, 1, 0, 0.9, 0.0, 4, 2, 5, 3, 8);
        prob_init(&ps[i], &ci, i == 3 ? HLA_FLOAT32 : HLA_FLOAT64, 2, 40, 0, NULL, 0);
        ca[i].p = &ps[i];
        ca[i].out = talloc(ps[i].no, ps[i].dt);
        ca[i].st = talloc(2 * ps[i].n, ps[i].sdt);
        ca[i].path = i;
    }
    for (i = 0; i < 4; i++) started[i] = pthread_create(&th[i], NULL, compute_thread, &ca[i]) == 0;
    for (i = 0; i < 4; i++)
        if (started[i]) pthread_join(th[i], NULL);
    for (i = 0; i < 4; i++) {
        double e = err_out(&ps[i], ca[i].out, 0, ps[i].T);
        CHECK(started[i], "pthread_create failed");
        CHECK(ca[i].st_rc == HLA_OK && e <= tol_of(ps[i].dt), "concurrent thread %d (%s): %s, rel err %.3g", i,
              op_name(i % 3), sname(ca[i].st_rc), e);
        free(ca[i].out), free(ca[i].st);
        prob_free(&ps[i]);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* 10. gradients (hla_backward): central differences of hla_forward, path parity, packed sequences,
 *     aliasing of d_initial, segments chained through d_final, strided gradients, element types.
 *     (Bad input to hla_backward: the E_BACKWARD entry of section 7 and backward_bad_values.)     */

/* A float64 problem for the gradient tests: q, k, v, d_out, and per sequence an initial state (the
 * final state of a random prefix, so a valid one: symmetric where the layout is) and a d_final. */
typedef struct {
    hla_config c;
    int64_t B, T, H, Hkv, dk, dv, n, N;
    int64_t cu[MAXSEQ + 1];
    int packed, cudt; /* cudt: element type of cu_seqlens (int64 or int32) */
    int64_t nq, nk, nv, no, ns;
    double *q, *k, *v, *dout, *ini, *dfin, *other[2]; /* other: two more valid states (directions) */
} gprob;

typedef struct {
    double *q, *k, *v, *ini; /* dL/dq, dL/dk, dL/dv, dL/d(initial) */
} grads;

/* Final states [N, n] (float64) of N random 3-token prefixes. */
static void valid_states(const hla_config *c, int64_t N, int positive, double *dst)
{
    hla_config cc = *c;
    prob pre;
    void *o;
    hla_tensor tq, tk, tv, to, tf;
    int64_t i;
    prob_init(&pre, &cc, HLA_FLOAT64, N, 3, positive, NULL, 0);
    o = talloc(pre.no, HLA_FLOAT64);
    tq = pq(&pre, 0, 3), tk = pk(&pre, 0, 3), tv = pv(&pre, 0, 3), to = po(&pre, o, 0, 3);
    tf = mk(dst, HLA_FLOAT64, 2, N, pre.n, 0, 0);
    for (i = 0; i < N * pre.n; i++) dst[i] = NAN;
    OK(hla_forward(&cc, HLA_PATH_SERIAL, &tq, &tk, &tv, &to, NULL, NULL, &tf, NULL), "forward of a random prefix");
    free(o);
    prob_free(&pre);
}

/* Values rounded to rdt (the inputs' type: q, k, v, d_out) and to its state type (states, d_final). */
static void gp_init(gprob *g, const hla_config *c, int64_t B, int64_t T, const int64_t *cu, int64_t N, int rdt)
{
    const int positive = c->normalize, sdt = state_dt(rdt);
    int64_t i, j;
    memset(g, 0, sizeof *g);
    g->c = *c;
    g->B = B, g->T = T, g->H = c->heads, g->Hkv = c->kv_heads ? c->kv_heads : c->heads, g->dk = c->dk, g->dv = c->dv;
    g->n = n_state(c);
    g->packed = cu != NULL;
    g->cudt = HLA_INT64;
    g->N = cu ? N : B;
    for (i = 0; cu && i <= N; i++) g->cu[i] = cu[i];
    g->nq = B * T * g->H * g->dk, g->nk = B * T * g->Hkv * g->dk, g->nv = B * T * g->Hkv * g->dv;
    g->no = B * T * g->H * g->dv, g->ns = g->N * g->n;
    g->q = xmalloc((size_t)g->nq * sizeof(double));
    g->k = xmalloc((size_t)g->nk * sizeof(double));
    g->v = xmalloc((size_t)g->nv * sizeof(double));
    g->dout = xmalloc((size_t)g->no * sizeof(double));
    g->dfin = xmalloc((size_t)g->ns * sizeof(double));
    g->ini = xmalloc((size_t)g->ns * sizeof(double));
    g->other[0] = xmalloc((size_t)g->ns * sizeof(double));
    g->other[1] = xmalloc((size_t)g->ns * sizeof(double));
    for (i = 0; i < g->nq; i++) g->q[i] = rnd(rdt, positive ? fabs(normal()) : normal());
    for (i = 0; i < g->nk; i++) g->k[i] = rnd(rdt, positive ? fabs(normal()) : normal());
    for (i = 0; i < g->nv; i++) g->v[i] = rnd(rdt, normal());
    for (i = 0; i < g->no; i++) g->dout[i] = rnd(rdt, normal());
    for (i = 0; i < g->ns; i++) g->dfin[i] = rnd(sdt, 0.5 * normal());
    valid_states(c, g->N, positive, g->ini);
    valid_states(c, g->N, positive, g->other[0]);
    valid_states(c, g->N, positive, g->other[1]);
    for (j = 0; j < 3; j++) {
        double *s = j == 0 ? g->ini : g->other[j - 1];
        for (i = 0; i < g->ns; i++) s[i] = rnd(sdt, s[i]);
    }
}

static void gp_free(gprob *g)
{
    free(g->q), free(g->k), free(g->v), free(g->dout), free(g->dfin), free(g->ini), free(g->other[0]),
        free(g->other[1]);
}

static void grads_alloc(const gprob *g, grads *r)
{
    r->q = xmalloc((size_t)g->nq * sizeof(double));
    r->k = xmalloc((size_t)g->nk * sizeof(double));
    r->v = xmalloc((size_t)g->nv * sizeof(double));
    r->ini = xmalloc((size_t)g->ns * sizeof(double));
}
static void grads_free(grads *r) { free(r->q), free(r->k), free(r->v), free(r->ini); }

/* max over the four gradients of max |a - b| / max |b| */
static double grads_err(const gprob *g, const grads *a, const grads *b)
{
    double e = err_vec(a->q, HLA_FLOAT64, b->q, HLA_FLOAT64, g->nq);
    e = fmax(e, err_vec(a->k, HLA_FLOAT64, b->k, HLA_FLOAT64, g->nk));
    e = fmax(e, err_vec(a->v, HLA_FLOAT64, b->v, HLA_FLOAT64, g->nv));
    return fmax(e, err_vec(a->ini, HLA_FLOAT64, b->ini, HLA_FLOAT64, g->ns));
}
static int grads_same(const gprob *g, const grads *a, const grads *b)
{
    return memcmp(a->q, b->q, (size_t)g->nq * 8) == 0 && memcmp(a->k, b->k, (size_t)g->nk * 8) == 0 &&
           memcmp(a->v, b->v, (size_t)g->nv * 8) == 0 && memcmp(a->ini, b->ini, (size_t)g->ns * 8) == 0;
}

enum { AL_NONE, AL_INITIAL, AL_DFINAL }; /* d_initial in its own memory, in initial's, in d_final's */

/* hla_backward of g in element type dt on path: the gradients (as float64) into r. Every output starts
 * as NaN and must come back finite (every element written); the inputs must come back unchanged. */
static hla_status gp_backward(const gprob *g, int dt, int path, int alias, grads *r)
{
    const int sdt = state_dt(dt);
    void *q = typed_of(g->q, g->nq, dt), *k = typed_of(g->k, g->nk, dt), *v = typed_of(g->v, g->nv, dt),
         *d = typed_of(g->dout, g->no, dt), *ini = typed_of(g->ini, g->ns, sdt), *dfin = typed_of(g->dfin, g->ns, sdt);
    void *dq = talloc(g->nq, dt), *dk = talloc(g->nk, dt), *dv = talloc(g->nv, dt), *dini = talloc(g->ns, sdt);
    void *cub = g->packed ? ints_of(g->cu, g->N + 1, g->cudt) : NULL;
    void *dini_mem = alias == AL_INITIAL ? ini : alias == AL_DFINAL ? dfin : dini;
    hla_tensor tq = mk(q, dt, 4, g->B, g->T, g->H, g->dk), tk = mk(k, dt, 4, g->B, g->T, g->Hkv, g->dk),
               tv = mk(v, dt, 4, g->B, g->T, g->Hkv, g->dv), td = mk(d, dt, 4, g->B, g->T, g->H, g->dv),
               tdq = mk(dq, dt, 4, g->B, g->T, g->H, g->dk), tdk = mk(dk, dt, 4, g->B, g->T, g->Hkv, g->dk),
               tdv = mk(dv, dt, 4, g->B, g->T, g->Hkv, g->dv), tcu = mk(cub, g->cudt, 1, g->N + 1, 0, 0, 0),
               ti = mk(ini, sdt, 2, g->N, g->n, 0, 0), tf = mk(dfin, sdt, 2, g->N, g->n, 0, 0),
               tdi = mk(dini_mem, sdt, 2, g->N, g->n, 0, 0);
    hla_status st;
    int64_t i;
    st = hla_backward(&g->c, path, &tq, &tk, &tv, &td, &tdq, &tdk, &tdv, g->packed ? &tcu : NULL, &ti, &tf, &tdi);
    if (expect_status(st, HLA_OK, NULL, __FILE__, __LINE__, "hla_backward %s %s%s", dt_name(dt), path_name(path),
                      alias == AL_INITIAL ? ", d_initial = initial" : alias == AL_DFINAL ? ", d_initial = d_final" : "")) {
        int64_t nan = count_nan(dq, dt, g->nq) + count_nan(dk, dt, g->nk) + count_nan(dv, dt, g->nv) +
                      count_nan(dini_mem, sdt, g->ns);
        int64_t past = SLACK * 3 - count_nan(eptr(dq, dt, g->nq), dt, SLACK) - count_nan(eptr(dk, dt, g->nk), dt, SLACK) -
                       count_nan(eptr(dv, dt, g->nv), dt, SLACK);
        int same = 1;
        CHECK(nan == 0, "hla_backward %s %s left %lld gradient elements unwritten (NaN)", dt_name(dt), path_name(path),
              (long long)nan);
        CHECK(past == 0, "hla_backward %s %s wrote past the end of dq/dk/dv", dt_name(dt), path_name(path));
        for (i = 0; i < g->nq && same; i++) same = getv(q, dt, i) == g->q[i];
        for (i = 0; i < g->nk && same; i++) same = getv(k, dt, i) == g->k[i];
        for (i = 0; i < g->nv && same; i++) same = getv(v, dt, i) == g->v[i];
        for (i = 0; i < g->no && same; i++) same = getv(d, dt, i) == g->dout[i];
        for (i = 0; i < g->ns && same && alias != AL_DFINAL; i++) same = getv(dfin, sdt, i) == g->dfin[i];
        for (i = 0; i < g->ns && same && alias != AL_INITIAL; i++) same = getv(ini, sdt, i) == g->ini[i];
        CHECK(same, "hla_backward %s %s changed one of its inputs", dt_name(dt), path_name(path));
    }
    for (i = 0; i < g->nq; i++) r->q[i] = getv(dq, dt, i);
    for (i = 0; i < g->nk; i++) r->k[i] = getv(dk, dt, i);
    for (i = 0; i < g->nv; i++) r->v[i] = getv(dv, dt, i);
    for (i = 0; i < g->ns; i++) r->ini[i] = getv(dini_mem, sdt, i);
    free(q), free(k), free(v), free(d), free(ini), free(dfin), free(dq), free(dk), free(dv), free(dini), free(cub);
    return st;
}

/* L = <d_out, o> + <d_final, final state> of a float64 chunked forward of (q, k, v) from ini. */
static double gp_loss(const gprob *g, const double *q, const double *k, const double *v, const double *ini)
{
    double *o = xmalloc((size_t)g->no * sizeof(double)), *fin = xmalloc((size_t)g->ns * sizeof(double)), L = 0;
    void *cub = g->packed ? ints_of(g->cu, g->N + 1, HLA_INT64) : NULL;
    hla_tensor tq = mk((void *)q, HLA_FLOAT64, 4, g->B, g->T, g->H, g->dk),
               tk = mk((void *)k, HLA_FLOAT64, 4, g->B, g->T, g->Hkv, g->dk),
               tv = mk((void *)v, HLA_FLOAT64, 4, g->B, g->T, g->Hkv, g->dv),
               to = mk(o, HLA_FLOAT64, 4, g->B, g->T, g->H, g->dv), tcu = mk(cub, HLA_INT64, 1, g->N + 1, 0, 0, 0),
               ti = mk((void *)ini, HLA_FLOAT64, 2, g->N, g->n, 0, 0), tf = mk(fin, HLA_FLOAT64, 2, g->N, g->n, 0, 0);
    int64_t i;
    hla_status st = hla_forward(&g->c, HLA_PATH_CHUNKED, &tq, &tk, &tv, &to, g->packed ? &tcu : NULL, &ti, &tf, NULL);
    if (st != HLA_OK) {
        EXPECT(st, HLA_OK, NULL, "forward for a finite difference");
        L = NAN;
    } else {
        for (i = 0; i < g->no; i++) L += g->dout[i] * o[i];
        for (i = 0; i < g->ns; i++) L += g->dfin[i] * fin[i];
    }
    free(o), free(fin), free(cub);
    return L;
}

/* Derivative of L along dir (which: 0 q, 1 k, 2 v, 3 initial state) by central differences,
 * (L(h) - L(-h)) / 2h: truncation h^2 |L^(3)| / 6, rounding about 1e-16 |L| / h. */
static double gp_fd(const gprob *g, int which, const double *dir, double h)
{
    static const double steps[2] = {1, -1};
    const int64_t cnt = which == 0 ? g->nq : which == 1 ? g->nk : which == 2 ? g->nv : g->ns;
    const double *base = which == 0 ? g->q : which == 1 ? g->k : which == 2 ? g->v : g->ini;
    double *x = xmalloc((size_t)cnt * sizeof(double)), L[2];
    int s;
    int64_t i;
    for (s = 0; s < 2; s++) {
        for (i = 0; i < cnt; i++) x[i] = base[i] + steps[s] * h * dir[i];
        L[s] = gp_loss(g, which == 0 ? x : g->q, which == 1 ? x : g->k, which == 2 ? x : g->v, which == 3 ? x : g->ini);
    }
    free(x);
    return (L[0] - L[1]) / (2.0 * h);
}

static double g_fd_worst; /* worst relative error of any finite-difference check (printed at the end) */

/* Finite differences of the loss against the gradients of every path in pg[npaths]. Probes: for each of
 * q, k, v a random coordinate and a random direction (every coordinate at once); a coordinate at the last
 * token of the last sequence (the partial chunk) of q, k or v by `pick`; for the initial state the direction
 * towards another valid state (symmetric where the state is, so the symmetrised d_initial applies).
 * Error: |fd - <g, dir>| / max(sum_i |g_i dir_i|, 1e-3 max_i |g_i|) (the floor only guards a coordinate
 * whose derivative happens to be near 0). */
static void gp_check_fd(const gprob *g, const grads *pg, const int *paths, int npaths, int pick)
{
    static const char *names[4] = {"q", "k", "v", "initial"};
    static const char *kinds[4] = {"a random coordinate", "a random direction", "a coordinate of the last token",
                                   "another valid state"};
    const double tol = 1e-6, h = 1e-5;
    int probe, pi;
    for (probe = 0; probe < 8; probe++) {
        const int which = probe < 6 ? probe / 2 : probe == 6 ? pick % 3 : 3;
        const int kind = probe < 6 ? probe % 2 : probe == 6 ? 2 : 3;
        const int64_t cnt = which == 0 ? g->nq : which == 1 ? g->nk : which == 2 ? g->nv : g->ns;
        const int64_t row = which == 0 ? g->H * g->dk : which == 1 ? g->Hkv * g->dk : g->Hkv * g->dv;
        double *dir = xmalloc((size_t)cnt * sizeof(double)), top = 0, fd;
        int64_t i, coord = -1;
        for (i = 0; i < cnt; i++) dir[i] = 0;
        if (kind == 0) {
            coord = (int64_t)(unif() * (double)cnt);
        } else if (kind == 1) {
            for (i = 0; i < cnt; i++) dir[i] = normal();
        } else if (kind == 2) {
            coord = cnt - row + (int64_t)(unif() * (double)row);
        } else {
            for (i = 0; i < cnt; i++) dir[i] = g->other[pick % 2][i] - g->ini[i];
        }
        if (coord >= cnt) coord = cnt - 1;
        if (coord >= 0) dir[coord] = 1;
        for (i = 0; i < cnt; i++) top = fmax(top, fabs(dir[i]));
        for (i = 0; i < cnt; i++) dir[i] /= top; /* max-norm 1: h bounds the step of every coordinate */
        fd = gp_fd(g, which, dir, h);
        for (pi = 0; pi < npaths; pi++) {
            const grads *r = &pg[pi];
            const double *gr = which == 0 ? r->q : which == 1 ? r->k : which == 2 ? r->v : r->ini;
            double an = 0, mag = 0, gmax = 0, err;
            for (i = 0; i < cnt; i++) {
                an += gr[i] * dir[i];
                mag += fabs(gr[i] * dir[i]);
                gmax = fmax(gmax, fabs(gr[i]));
            }
            err = fabs(fd - an) / fmax(fmax(mag, 1e-3 * gmax), 1e-300);
            if (!(err <= g_fd_worst)) g_fd_worst = err;
            CHECK(err <= tol, "d%s along %s (%lld): finite difference %.12g, hla_backward %s %.12g, rel err %.3g (tol %g)",
                  names[which], kinds[kind], (long long)coord, fd, path_name(paths[pi]), an, err, tol);
        }
        free(dir);
    }
}

/* Segments chained through the state (docs/gradients.md section 7): backward of [s, T) from the state
 * after [0, s) gives d_mid; backward of [0, s) with d_final = d_mid gives the rest. Must equal the whole. */
static void gp_check_chain(const gprob *g, const grads *whole, int64_t s, int path)
{
    const int64_t B = g->B, T = g->T, H = g->H, Hkv = g->Hkv, dk = g->dk, dv = g->dv, n = g->n, N = g->N;
    void *o = talloc(g->no, HLA_FLOAT64), *mid = talloc(g->ns, HLA_FLOAT64), *dmid = talloc(g->ns, HLA_FLOAT64);
    grads r;
    hla_tensor ti = mk(g->ini, HLA_FLOAT64, 2, N, n, 0, 0), tm = mk(mid, HLA_FLOAT64, 2, N, n, 0, 0),
               tdm = mk(dmid, HLA_FLOAT64, 2, N, n, 0, 0), tf = mk(g->dfin, HLA_FLOAT64, 2, N, n, 0, 0), tdi;
    double e;
    grads_alloc(g, &r);
    tdi = mk(r.ini, HLA_FLOAT64, 2, N, n, 0, 0);
    {
        hla_tensor q1 = tokv(g->q, HLA_FLOAT64, B, T, H, dk, 0, s), k1 = tokv(g->k, HLA_FLOAT64, B, T, Hkv, dk, 0, s),
                   v1 = tokv(g->v, HLA_FLOAT64, B, T, Hkv, dv, 0, s), o1 = tokv(o, HLA_FLOAT64, B, T, H, dv, 0, s);
        OK(hla_forward(&g->c, path, &q1, &k1, &v1, &o1, NULL, &ti, &tm, NULL), "chain: forward of [0, %lld)", (long long)s);
    }
    {
        hla_tensor q2 = tokv(g->q, HLA_FLOAT64, B, T, H, dk, s, T), k2 = tokv(g->k, HLA_FLOAT64, B, T, Hkv, dk, s, T),
                   v2 = tokv(g->v, HLA_FLOAT64, B, T, Hkv, dv, s, T), d2 = tokv(g->dout, HLA_FLOAT64, B, T, H, dv, s, T),
                   gq = tokv(r.q, HLA_FLOAT64, B, T, H, dk, s, T), gk = tokv(r.k, HLA_FLOAT64, B, T, Hkv, dk, s, T),
                   gv = tokv(r.v, HLA_FLOAT64, B, T, Hkv, dv, s, T);
        OK(hla_backward(&g->c, path, &q2, &k2, &v2, &d2, &gq, &gk, &gv, NULL, &tm, &tf, &tdm),
           "chain: backward of [%lld, T)", (long long)s);
    }
    {
        hla_tensor q1 = tokv(g->q, HLA_FLOAT64, B, T, H, dk, 0, s), k1 = tokv(g->k, HLA_FLOAT64, B, T, Hkv, dk, 0, s),
                   v1 = tokv(g->v, HLA_FLOAT64, B, T, Hkv, dv, 0, s), d1 = tokv(g->dout, HLA_FLOAT64, B, T, H, dv, 0, s),
                   gq = tokv(r.q, HLA_FLOAT64, B, T, H, dk, 0, s), gk = tokv(r.k, HLA_FLOAT64, B, T, Hkv, dk, 0, s),
                   gv = tokv(r.v, HLA_FLOAT64, B, T, Hkv, dv, 0, s);
        OK(hla_backward(&g->c, path, &q1, &k1, &v1, &d1, &gq, &gk, &gv, NULL, &ti, &tdm, &tdi),
           "chain: backward of [0, %lld) with d_final = d_initial of the rest", (long long)s);
    }
    e = grads_err(g, &r, whole);
    CHECK(e <= 1e-10, "segments [0,%lld) + [%lld,T) chained through d_final (%s) vs the whole: rel err %.3g",
          (long long)s, (long long)s, path_name(path), e);
    grads_free(&r);
    free(o), free(mid), free(dmid);
}

/* One configuration: gradients on every path, their agreement, d_initial aliasing, finite differences,
 * segment chaining. B = 2, T = 11 with chunk 3 (chunks 3+3+3+2; the serial sweep's stretches 4+4+3).
 * (Every call costs about 10 ms under valgrind: the cases share out the aliasing and chaining checks.) */
static void backward_case(int op, int masked, int norm)
{
    const int idx = op * 4 + (1 - masked) * 2 + norm;
    const int64_t B = 2, T = 11;
    const double decay = norm ? 0.95 : 0.85;
    hla_config c = cfg_make(op, masked, norm, decay, op == HLA_OP_HLA2 ? 0.3 : 0.0, 4, 2, 3, 2, 3);
    static const int paths[3] = {HLA_PATH_CHUNKED, HLA_PATH_SERIAL, HLA_PATH_SCAN};
    gprob g;
    grads r[3], al;
    int pi;
    double e;
    set_ctx("backward %s %s norm=%d decay=%g", op_name(op), masked ? "masked" : "unmasked", norm, decay);
    gp_init(&g, &c, B, T, NULL, 0, HLA_FLOAT64);
    for (pi = 0; pi < 3; pi++) {
        grads_alloc(&g, &r[pi]);
        gp_backward(&g, HLA_FLOAT64, paths[pi], AL_NONE, &r[pi]);
    }
    e = grads_err(&g, &r[0], &r[1]);
    CHECK(e <= 1e-10, "chunked vs serial backward (float64): rel err %.3g", e);
    e = grads_err(&g, &r[2], &r[1]);
    CHECK(e <= 1e-10, "scan vs serial backward (float64): rel err %.3g", e);
    /* d_initial in the memory of initial (even cases) or of d_final (odd): the same numbers, on the
     * chunked path for half of each */
    {
        const int ap = (idx / 2) % 2, how = idx % 2 ? AL_DFINAL : AL_INITIAL;
        grads_alloc(&g, &al);
        gp_backward(&g, HLA_FLOAT64, paths[ap], how, &al);
        CHECK(grads_same(&g, &al, &r[ap]), "%s: d_initial = %s differs from separate memory (rel err %.3g)",
              path_name(paths[ap]), how == AL_INITIAL ? "initial" : "d_final", grads_err(&g, &al, &r[ap]));
        grads_free(&al);
    }
    gp_check_fd(&g, r, paths, 2, idx);
    if (norm == masked) gp_check_chain(&g, &r[1], 5, paths[op % 2]);
    for (pi = 0; pi < 3; pi++) grads_free(&r[pi]);
    gp_free(&g);
}

/* Packed sequences (cu_seqlens {0, 4, 5, 11}: lengths 4, 1, 6; int64 or int32) = each sequence alone, rows
 * of initial, d_final and d_initial included; initial / d_final NULL = zero rows. */
static void backward_packed(int op, int masked)
{
    static const int64_t cu[4] = {0, 4, 5, 11};
    hla_config c = cfg_make(op, masked, op == HLA_OP_AHLA, 0.9, op == HLA_OP_HLA2 ? 0.25 : 0.0, 4, 2, 3, 2, 2);
    gprob g, a;
    grads r, ra, rz;
    int path, withdi;
    int64_t i;
    set_ctx("backward packed %s %s cu %s", op_name(op), masked ? "masked" : "unmasked",
            dt_name(op == HLA_OP_AHLA ? HLA_INT32 : HLA_INT64));
    gp_init(&g, &c, 1, 11, cu, 3, HLA_FLOAT64);
    g.cudt = op == HLA_OP_AHLA ? HLA_INT32 : HLA_INT64;
    grads_alloc(&g, &r);
    grads_alloc(&g, &ra);
    for (i = 0; i < 3; i++) { /* sequence i alone (serial path): B = 1, its own [1, n] rows */
        const int64_t t0 = cu[i], L = cu[i + 1] - t0;
        grads one;
        a = g;
        a.packed = 0, a.N = 1, a.T = L;
        a.nq = L * g.H * g.dk, a.nk = L * g.Hkv * g.dk, a.nv = L * g.Hkv * g.dv, a.no = L * g.H * g.dv, a.ns = g.n;
        a.q = g.q + t0 * g.H * g.dk, a.k = g.k + t0 * g.Hkv * g.dk, a.v = g.v + t0 * g.Hkv * g.dv;
        a.dout = g.dout + t0 * g.H * g.dv, a.ini = g.ini + i * g.n, a.dfin = g.dfin + i * g.n;
        one.q = ra.q + t0 * g.H * g.dk, one.k = ra.k + t0 * g.Hkv * g.dk, one.v = ra.v + t0 * g.Hkv * g.dv;
        one.ini = ra.ini + i * g.n;
        gp_backward(&a, HLA_FLOAT64, HLA_PATH_SERIAL, AL_NONE, &one);
    }
    for (path = 0; path < 2; path++) {
        double e;
        gp_backward(&g, HLA_FLOAT64, path, AL_NONE, &r);
        e = grads_err(&g, &r, &ra);
        CHECK(e <= (path == HLA_PATH_SERIAL ? 1e-12 : 1e-10),
              "packed backward %s vs each sequence alone (serial): rel err %.3g", path_name(path), e);
    }
    /* zero rows for initial and d_final = leaving them out; d_initial without initial (zero prefix) = d_initial
     * from zero rows; leaving d_initial out changes nothing else */
    grads_alloc(&g, &rz);
    for (i = 0; i < g.ns; i++) g.ini[i] = 0, g.dfin[i] = 0;
    gp_backward(&g, HLA_FLOAT64, HLA_PATH_CHUNKED, AL_NONE, &rz);
    for (withdi = 1; withdi >= 0; withdi--) {
        void *dq = talloc(g.nq, HLA_FLOAT64), *dk = talloc(g.nk, HLA_FLOAT64), *dv = talloc(g.nv, HLA_FLOAT64),
             *di = talloc(g.ns, HLA_FLOAT64), *cub = ints_of(cu, 4, g.cudt);
        hla_tensor tq = mk(g.q, HLA_FLOAT64, 4, 1, 11, 4, 3), tk = mk(g.k, HLA_FLOAT64, 4, 1, 11, 2, 3),
                   tv = mk(g.v, HLA_FLOAT64, 4, 1, 11, 2, 2), td = mk(g.dout, HLA_FLOAT64, 4, 1, 11, 4, 2),
                   tdq = mk(dq, HLA_FLOAT64, 4, 1, 11, 4, 3), tdk = mk(dk, HLA_FLOAT64, 4, 1, 11, 2, 3),
                   tdv = mk(dv, HLA_FLOAT64, 4, 1, 11, 2, 2), tcu = mk(cub, g.cudt, 1, 4, 0, 0, 0),
                   tdi = mk(di, HLA_FLOAT64, 2, 3, g.n, 0, 0);
        if (OK(hla_backward(&c, HLA_PATH_CHUNKED, &tq, &tk, &tv, &td, &tdq, &tdk, &tdv, &tcu, NULL, NULL,
                            withdi ? &tdi : NULL),
               "packed backward, initial and d_final NULL, d_initial %s", withdi ? "given" : "NULL")) {
            CHECK(memcmp(dq, rz.q, (size_t)g.nq * 8) == 0 && memcmp(dk, rz.k, (size_t)g.nk * 8) == 0 &&
                      memcmp(dv, rz.v, (size_t)g.nv * 8) == 0,
                  "initial/d_final NULL (d_initial %s) differ from zero rows (dq %.3g, dk %.3g, dv %.3g)",
                  withdi ? "given" : "NULL", err_vec(dq, HLA_FLOAT64, rz.q, HLA_FLOAT64, g.nq),
                  err_vec(dk, HLA_FLOAT64, rz.k, HLA_FLOAT64, g.nk), err_vec(dv, HLA_FLOAT64, rz.v, HLA_FLOAT64, g.nv));
            if (withdi)
                CHECK(memcmp(di, rz.ini, (size_t)g.ns * 8) == 0,
                      "d_initial without initial differs from d_initial of zero rows: rel err %.3g",
                      err_vec(di, HLA_FLOAT64, rz.ini, HLA_FLOAT64, g.ns));
        }
        free(dq), free(dk), free(dv), free(di), free(cub);
    }
    grads_free(&rz);
    grads_free(&r);
    grads_free(&ra);
    gp_free(&g);
}

/* Strided q, k, v, d_out and gradients ([B,H,T,D] layouts, reversed and padded dimensions, broadcast
 * d_out heads) give the same gradients as contiguous tensors, on the chunked and serial paths. */
static void backward_strided(int op)
{
    static const int oq[4] = {0, 2, 1, 3}, ok_[4] = {0, 1, 2, 3}, ov[4] = {2, 0, 1, 3}, oo[4] = {0, 2, 1, 3};
    hla_config c = cfg_make(op, 1, 0, 0.9, op == HLA_OP_HLA2 ? 0.5 : 0.0, 4, 2, 3, 2, 3);
    gprob g;
    grads r;
    int64_t shq[4] = {2, 7, 4, 3}, shk[4] = {2, 7, 2, 3}, shv[4] = {2, 7, 2, 2}, sho[4] = {2, 7, 4, 2}, i;
    void *ph[8];
    hla_tensor vq, vk, vv, vd, gq, gk, gv, ti, tf, tdi;
    double *tmp = xmalloc(2 * 7 * 4 * 3 * sizeof(double)), *dini;
    int path, j;
    set_ctx("backward strided %s", op_name(op));
    gp_init(&g, &c, 2, 7, NULL, 0, HLA_FLOAT64);
    dini = xmalloc((size_t)(2 * g.n) * sizeof(double));
    /* d_out broadcast over heads: make the contiguous problem's d_out equal over heads */
    for (i = 0; i < g.no; i++) g.dout[i] = g.dout[(i / (4 * 2)) * 4 * 2 + i % 2];
    grads_alloc(&g, &r);
    vq = view_make(&ph[0], HLA_FLOAT64, 4, shq, oq, 0u, 0u, 0);
    vk = view_make(&ph[1], HLA_FLOAT64, 4, shk, ok_, 1u << 1, 0u, 1);
    vv = view_make(&ph[2], HLA_FLOAT64, 4, shv, ov, 9u, 0u, 0);
    vd = view_make(&ph[3], HLA_FLOAT64, 4, sho, oo, 1u << 1, 1u << 2, 0);
    gq = view_make(&ph[4], HLA_FLOAT64, 4, shq, oq, 1u << 2, 0u, 2);
    gk = view_make(&ph[5], HLA_FLOAT64, 4, shk, ov, 1u << 1, 0u, 1);
    gv = view_make(&ph[6], HLA_FLOAT64, 4, shv, oq, 8u, 0u, 0);
    view_put(&vq, g.q), view_put(&vk, g.k), view_put(&vv, g.v), view_put(&vd, g.dout);
    {
        int64_t sh[2], st[2];
        ph[7] = talloc(2 * (g.n + 3), HLA_FLOAT64);
        sh[0] = 2, sh[1] = g.n, st[0] = -(g.n + 3), st[1] = 1; /* d_initial rows walked backwards, padded */
        tdi = mks(eptr(ph[7], HLA_FLOAT64, g.n + 3), HLA_FLOAT64, 2, sh, st);
    }
    ti = mk(g.ini, HLA_FLOAT64, 2, 2, g.n, 0, 0), tf = mk(g.dfin, HLA_FLOAT64, 2, 2, g.n, 0, 0);
    for (path = 0; path < 2; path++) {
        int same = 1;
        gp_backward(&g, HLA_FLOAT64, path, AL_NONE, &r);
        for (i = 0; i < g.nq; i++) tmp[i] = NAN;
        view_put(&gq, tmp), view_put(&gk, tmp), view_put(&gv, tmp);
        if (!OK(hla_backward(&c, path, &vq, &vk, &vv, &vd, &gq, &gk, &gv, NULL, &ti, &tf, &tdi), "strided backward %s",
                path_name(path)))
            continue;
        view_get(&gq, tmp);
        same &= memcmp(tmp, r.q, (size_t)g.nq * 8) == 0;
        view_get(&gk, tmp);
        same &= memcmp(tmp, r.k, (size_t)g.nk * 8) == 0;
        view_get(&gv, tmp);
        same &= memcmp(tmp, r.v, (size_t)g.nv * 8) == 0;
        for (i = 0; i < 2 * g.n; i++) dini[i] = getv(tdi.data, HLA_FLOAT64, (i / g.n) * -(g.n + 3) + i % g.n);
        same &= memcmp(dini, r.ini, (size_t)(2 * g.n) * 8) == 0;
        CHECK(same, "strided backward %s differs from contiguous", path_name(path));
    }
    for (j = 0; j < 8; j++) free(ph[j]);
    free(tmp), free(dini);
    grads_free(&r);
    gp_free(&g);
}

/* float32 (both paths) and one bfloat16 or float16 case (one path) against the float64 gradients (serial)
 * of the same inputs, rounded to the element type */
static void backward_precision(int op, int masked, int norm)
{
    const int half = op == HLA_OP_HLA3 && masked ? HLA_BFLOAT16 : op == HLA_OP_HLA2 && !masked ? HLA_FLOAT16 : -1;
    int di, path;
    for (di = 0; di < 2; di++) {
        const int dt = di == 0 ? HLA_FLOAT32 : half;
        const double tol = dt == HLA_BFLOAT16 ? 1e-2 : 2e-3;
        hla_config c = cfg_make(op, masked, norm, masked ? 1.0 : 0.9, op == HLA_OP_HLA2 ? 0.25 : 0.0, 4, 2, 3, 2, 4);
        gprob g;
        grads r64, r;
        if (dt < 0) continue;
        set_ctx("backward %s vs float64, %s %s norm=%d", dt_name(dt), op_name(op), masked ? "masked" : "unmasked", norm);
        gp_init(&g, &c, 2, 10, NULL, 0, dt);
        grads_alloc(&g, &r64);
        grads_alloc(&g, &r);
        gp_backward(&g, HLA_FLOAT64, HLA_PATH_SERIAL, AL_NONE, &r64);
        for (path = 0; path < 2; path++) {
            double e;
            if (dt != HLA_FLOAT32 && path != (dt == HLA_BFLOAT16 ? HLA_PATH_CHUNKED : HLA_PATH_SERIAL)) continue;
            gp_backward(&g, dt, path, AL_NONE, &r);
            e = grads_err(&g, &r, &r64);
            CHECK(e <= tol, "%s backward %s vs float64: rel err %.3g (tol %g)", dt_name(dt), path_name(path), e, tol);
        }
        grads_free(&r64);
        grads_free(&r);
        gp_free(&g);
    }
}

static void test_backward(void)
{
    int op, masked, norm;
    g_fd_worst = 0;
    for (op = 0; op < 3; op++)
        for (masked = 1; masked >= 0; masked--)
            for (norm = 0; norm < 2; norm++) backward_case(op, masked, norm);
    for (op = 0; op < 3; op++) {
        backward_packed(op, op != HLA_OP_AHLA);
        for (masked = 1; masked >= 0; masked--) backward_precision(op, masked, op == HLA_OP_AHLA);
    }
    for (op = 0; op < 3; op++) backward_strided(op);
    printf("  (hla_backward vs finite differences of hla_forward: worst relative error %.2g)\n", g_fd_worst);
}

/* ------------------------------------------------------------------------------------------ */
/* 11. checkpoints: hla_checkpoint_rows against the plan of include/hla.h for checkpoint_every 0 (automatic),
 *     1, 2, 3, ..., INT64_MAX, tokens up to INT64_MAX; hla_forward_checkpoints with any checkpoint_every =
 *     hla_forward (chunked, checkpoint_every 0) bit for bit, each row = the state after its sequence's
 *     prefix; rows past the needed ones untouched; hla_backward_checkpoints = hla_backward (chunked,
 *     checkpoint_every 0) bit for bit, and so is hla_backward with checkpoint_every 1, 2, 3, 5, INT64_MAX;
 *     masked and unmasked, normalized or not, decay, grouped heads, packed sequences; a negative
 *     checkpoint_every refused by every call, nothing written; the 88-byte hla_config of headers 1.0 and
 *     1.1 gives what a 96-byte one with checkpoint_every 0 gives; empty checkpoint tensors with data NULL;
 *     bad checkpoint tensors and sizes. (Per-tensor mutations: the E_FWDCK and E_BWDCK entries of
 *     section 7; checkpoint_every < 0 through every entry point: section 7's bad configurations.)       */

/* The checkpoint stride for q of T tokens: chunk = cfg.chunk_size (at most 1024; automatic: 32),
 * chunks = ceil(T / chunk), every = cfg.checkpoint_every capped at chunks, or (0, automatic) ceil(sqrt(chunks));
 * stride = chunk * every. -1 when chunk * every exceeds INT64_MAX. */
static int64_t ck_chunk(const hla_config *c)
{
    return c->chunk_size > 1024 ? 1024 : c->chunk_size > 0 ? c->chunk_size : 32;
}
static int64_t ceil_sqrt(int64_t x) /* x >= 1, exact up to INT64_MAX */
{
    uint64_t e = (uint64_t)sqrt((double)x);
    while (e * e < (uint64_t)x) e++;
    while (e > 1 && (e - 1) * (e - 1) >= (uint64_t)x) e--;
    return (int64_t)e;
}
static int64_t ck_every(const hla_config *c, int64_t T)
{
    const int64_t chunks = (T - 1) / ck_chunk(c) + 1; /* ceil(T / chunk) without overflow */
    if (c->checkpoint_every > 0) return c->checkpoint_every < chunks ? c->checkpoint_every : chunks;
    return ceil_sqrt(chunks);
}
static int64_t ck_stride(const hla_config *c, int64_t T)
{
    const int64_t chunk = ck_chunk(c), every = ck_every(c, T);
    return every > INT64_MAX / chunk ? -1 : chunk * every;
}

/* checkpoint_every values of the checkpoint tests: automatic, every chunk, 2, 3, and more than any call has */
static const int64_t g_every[5] = {0, 1, 2, 3, INT64_MAX};

/* Buffers a failing call must leave as they were (each with its slack). */
typedef struct {
    int count;
    void *p[8], *copy[8];
    size_t bytes[8];
} guard;

static void guard_add(guard *g, void *p, int64_t elements, int dt)
{
    g->p[g->count] = p;
    g->bytes[g->count] = (size_t)(elements + SLACK) * esize(dt);
    g->copy[g->count] = xmalloc(g->bytes[g->count]);
    g->count++;
}
static void guard_take(guard *g)
{
    int i;
    for (i = 0; i < g->count; i++) memcpy(g->copy[i], g->p[i], g->bytes[i]);
}
static int guard_same(const guard *g)
{
    int i;
    for (i = 0; i < g->count; i++)
        if (memcmp(g->copy[i], g->p[i], g->bytes[i]) != 0) return 0;
    return 1;
}
static void guard_free(guard *g)
{
    int i;
    for (i = 0; i < g->count; i++) free(g->copy[i]);
}

/* hla_checkpoint_rows: the formula over chunk sizes, head sizes, checkpoint_every, batches, lengths and
 * packings; tokens INT64_MAX; bad sizes, pointers and checkpoint_every (nothing written). */
static void ck_rows_api(void)
{
    static const int64_t chunks[6] = {0, 1, 3, 4, 37, 5000}, dks[2] = {3, 128},
                         Ts[14] = {1, 2, 3, 4, 5, 9, 16, 17, 45, 60, 100, 1000, 4097, 100000},
                         everys[7] = {0, 1, 2, 3, 5, INT64_C(1) << 40, INT64_MAX};
    int ci, di, ti, bi, ei;
    set_ctx("hla_checkpoint_rows");
    for (ei = 0; ei < 7; ei++)
        for (di = 0; di < 2; di++)
            for (ci = 0; ci < 6; ci++)
                for (ti = 0; ti < 14; ti++) {
                    hla_config c = cfg_make(HLA_OP_HLA2, 1, 0, 1.0, 0.0, 2, 1, dks[di], 8, chunks[ci]);
                    int64_t T = Ts[ti], L, seqs[3];
                    c.checkpoint_every = everys[ei];
                    L = ck_stride(&c, T);
                    seqs[0] = 1, seqs[1] = 2, seqs[2] = T;
                    for (bi = 0; bi < 5; bi++) {
                        const int64_t B = bi < 2 ? 1 + 2 * bi : 1, N = bi < 2 ? 0 : seqs[bi - 2];
                        const int64_t want = N == 0 ? B * ((T - 1) / L) : (T - N) / L;
                        int64_t rows = -77, stride = -77;
                        if (N > T) continue;
                        if (!OK(hla_checkpoint_rows(&c, B, T, N, &rows, &stride),
                                "dk %lld chunk %lld every %lld: batch %lld, tokens %lld, sequences %lld",
                                (long long)dks[di], (long long)chunks[ci], (long long)everys[ei], (long long)B,
                                (long long)T, (long long)N))
                            continue;
                        CHECK(rows == want && stride == L,
                              "dk %lld chunk %lld every %lld: batch %lld, tokens %lld, sequences %lld: rows %lld, "
                              "stride %lld; want %lld, %lld",
                              (long long)dks[di], (long long)chunks[ci], (long long)everys[ei], (long long)B,
                              (long long)T, (long long)N, (long long)rows, (long long)stride, (long long)want,
                              (long long)L);
                    }
                }
    /* the stride by hand for chunk 4 and T = 1, T = chunk, T = chunk + 1, T = 45 (12 chunks), packed */
    {
        static const struct {
            int64_t every, B, T, N, rows, stride;
        } hand[18] = {{0, 1, 1, 0, 0, 4},    {1, 1, 1, 0, 0, 4},    {3, 1, 1, 0, 0, 4},     {INT64_MAX, 1, 1, 0, 0, 4},
                      {1, 2, 4, 0, 0, 4},    {INT64_MAX, 1, 4, 0, 0, 4}, {1, 3, 5, 0, 3, 4}, {2, 1, 5, 0, 0, 8},
                      {0, 2, 45, 0, 4, 16},  {1, 2, 45, 0, 22, 4},  {2, 2, 45, 0, 10, 8},   {3, 2, 45, 0, 6, 12},
                      {5, 2, 45, 0, 4, 20},  {12, 2, 45, 0, 0, 48}, {INT64_MAX, 2, 45, 0, 0, 48},
                      {1, 1, 60, 4, 14, 4},  {3, 1, 60, 4, 4, 12},  {INT64_MAX, 1, 60, 4, 0, 60}};
        int i;
        for (i = 0; i < 18; i++) {
            hla_config c = cfg_make(HLA_OP_AHLA, 0, 1, 0.9, 0.0, 4, 2, 3, 2, 4);
            int64_t rows = -77, stride = -77;
            c.checkpoint_every = hand[i].every;
            if (OK(hla_checkpoint_rows(&c, hand[i].B, hand[i].T, hand[i].N, &rows, &stride),
                   "chunk 4, every %lld, batch %lld, tokens %lld, sequences %lld", (long long)hand[i].every,
                   (long long)hand[i].B, (long long)hand[i].T, (long long)hand[i].N))
                CHECK(rows == hand[i].rows && stride == hand[i].stride,
                      "chunk 4, every %lld, batch %lld, tokens %lld, sequences %lld: rows %lld, stride %lld; want %lld, "
                      "%lld",
                      (long long)hand[i].every, (long long)hand[i].B, (long long)hand[i].T, (long long)hand[i].N,
                      (long long)rows, (long long)stride, (long long)hand[i].rows, (long long)hand[i].stride);
        }
    }
    /* the largest batch whose rows fit: chunk 4, 10 tokens: stride 8, 1 row per sequence */
    {
        const hla_config c = cfg_make(HLA_OP_HLA3, 1, 0, 1.0, 0.0, 2, 1, 3, 2, 4);
        int64_t rows = -77, stride = -77;
        if (OK(hla_checkpoint_rows(&c, INT64_MAX, 10, 0, &rows, &stride), "batch INT64_MAX, 1 row each"))
            CHECK(rows == INT64_MAX && stride == 8, "batch INT64_MAX, tokens 10: rows %lld, stride %lld", (long long)rows,
                  (long long)stride);
        /* the longest sequence: ceil(T / chunk) must not overflow (T + chunk - 1 would) */
        rows = -77, stride = -77;
        if (OK(hla_checkpoint_rows(&c, 1, INT64_MAX, 0, &rows, &stride), "tokens INT64_MAX"))
            CHECK(stride % 4 == 0 && stride > 4 && rows == (INT64_MAX - 1) / stride &&
                      (double)stride * (double)stride >= 4.0 * (double)INT64_MAX * 0.999,
                  "tokens INT64_MAX: rows %lld, stride %lld", (long long)rows, (long long)stride);
        /* chunk 1: ceil(sqrt(INT64_MAX)) = 3037000500, whose square overflows int64 */
        {
            hla_config c1 = c;
            c1.chunk_size = 1;
            rows = -77, stride = -77;
            if (OK(hla_checkpoint_rows(&c1, 1, INT64_MAX, 0, &rows, &stride), "chunk 1, tokens INT64_MAX"))
                CHECK(stride == INT64_C(3037000500) && rows == (INT64_MAX - 1) / stride,
                      "chunk 1, tokens INT64_MAX: rows %lld, stride %lld", (long long)rows, (long long)stride);
        }
        /* with checkpoint_every: 1 row each (every 0) fits INT64_MAX sequences; 2 (every 1) overflow; 0 (every 3
         * and up: stride 12 > 9) is 0 rows */
        {
            static const int64_t ev[4] = {1, 2, 3, INT64_MAX};
            int i;
            for (i = 0; i < 4; i++) {
                hla_config ce = c;
                ce.checkpoint_every = ev[i];
                rows = -77, stride = -77;
                if (i == 0) {
                    EXPECT(hla_checkpoint_rows(&ce, INT64_MAX, 10, 0, &rows, &stride), HLA_ERR_OVERFLOW,
                           "hla_checkpoint_rows", "batch INT64_MAX x 2 rows (every 1)");
                    CHECK(rows == -77 && stride == -77, "an overflowing hla_checkpoint_rows wrote rows %lld, stride %lld",
                          (long long)rows, (long long)stride);
                } else if (OK(hla_checkpoint_rows(&ce, INT64_MAX, 10, 0, &rows, &stride),
                              "batch INT64_MAX, every %lld", (long long)ev[i])) {
                    CHECK(rows == (i == 1 ? INT64_MAX : 0) && stride == (i == 1 ? 8 : 12),
                          "batch INT64_MAX, tokens 10, every %lld: rows %lld, stride %lld", (long long)ev[i],
                          (long long)rows, (long long)stride);
                }
            }
        }
    }
    /* tokens INT64_MAX for every chunk size and checkpoint_every: no overflow, no hang. When chunk * every (every
     * capped at the chunks, ceil(T / chunk)) fits an int64 it is the stride; when it does not (checkpoint_every of
     * the chunk count or more, T not a multiple of the chunk), the exact stride exceeds T: the call either gives
     * a positive stride and 0 rows, or reports HLA_ERR_OVERFLOW writing nothing. */
    {
        static const int64_t chs[6] = {1, 3, 4, 1000, 1024, 0},
                             evs[8] = {0, 1, 2, 3, 5, INT64_C(1) << 40, INT64_MAX / 1024, INT64_MAX};
        int i, j;
        for (i = 0; i < 6; i++)
            for (j = 0; j < 8; j++) {
                hla_config c = cfg_make(HLA_OP_HLA2, 1, 0, 1.0, 0.0, 2, 1, 3, 2, chs[i]);
                int64_t rows = -77, stride = -77, L;
                hla_status st;
                c.checkpoint_every = evs[j];
                L = ck_stride(&c, INT64_MAX);
                st = hla_checkpoint_rows(&c, 1, INT64_MAX, 0, &rows, &stride);
                if (L > 0) {
                    if (OK(st, "tokens INT64_MAX, chunk %lld, every %lld", (long long)chs[i], (long long)evs[j]))
                        CHECK(stride == L && rows == (INT64_MAX - 1) / L,
                              "tokens INT64_MAX, chunk %lld, every %lld: rows %lld, stride %lld; want %lld, %lld",
                              (long long)chs[i], (long long)evs[j], (long long)rows, (long long)stride,
                              (long long)((INT64_MAX - 1) / L), (long long)L);
                } else {
                    CHECK((st == HLA_OK && stride > 0 && rows == 0) ||
                              (st == HLA_ERR_OVERFLOW && rows == -77 && stride == -77),
                          "tokens INT64_MAX, chunk %lld, every %lld (chunk x %lld chunks > INT64_MAX): %s, rows %lld, "
                          "stride %lld; want a positive stride and 0 rows, or HLA_ERR_OVERFLOW",
                          (long long)chs[i], (long long)evs[j], (long long)ck_every(&c, INT64_MAX), sname(st),
                          (long long)rows, (long long)stride);
                }
            }
    }
    /* bad sizes and pointers: the status, and nothing written */
    {
        static const struct {
            int64_t b, t, s;
            hla_status want;
            const char *kw, *what;
        } bad[12] = {{0, 10, 0, HLA_ERR_INVALID_ARGUMENT, "batch", "batch 0"},
                     {-1, 10, 0, HLA_ERR_INVALID_ARGUMENT, "batch", "batch -1"},
                     {INT64_MIN, 10, 0, HLA_ERR_INVALID_ARGUMENT, "batch", "batch INT64_MIN"},
                     {1, 0, 0, HLA_ERR_INVALID_ARGUMENT, "tokens", "tokens 0"},
                     {2, 0, 0, HLA_ERR_INVALID_ARGUMENT, "tokens", "tokens 0, batch 2"},
                     {1, -5, 0, HLA_ERR_INVALID_ARGUMENT, "tokens", "tokens -5"},
                     {1, 10, 11, HLA_ERR_INVALID_ARGUMENT, "sequences", "sequences 11 > tokens 10"},
                     {1, 0, 1, HLA_ERR_INVALID_ARGUMENT, "tokens", "tokens 0, sequences 1"},
                     {1, 10, -1, HLA_ERR_INVALID_ARGUMENT, "sequences", "sequences -1"},
                     {1, 10, INT64_MIN, HLA_ERR_INVALID_ARGUMENT, "sequences", "sequences INT64_MIN"},
                     {2, 10, 3, HLA_ERR_INVALID_ARGUMENT, "sequences", "sequences 3 with batch 2"},
                     {INT64_MAX, 100, 0, HLA_ERR_OVERFLOW, "hla_checkpoint_rows", "batch INT64_MAX x 4 rows"}};
        hla_config c = cfg_make(HLA_OP_HLA2, 1, 0, 1.0, 0.0, 2, 1, 3, 2, 4);
        int64_t rows, stride;
        int i;
        for (i = 0; i < 12; i++) {
            rows = stride = -77;
            EXPECT(hla_checkpoint_rows(&c, bad[i].b, bad[i].t, bad[i].s, &rows, &stride), bad[i].want, bad[i].kw, "%s",
                   bad[i].what);
            CHECK(rows == -77 && stride == -77, "%s failed but wrote rows %lld, stride %lld", bad[i].what,
                  (long long)rows, (long long)stride);
        }
        rows = stride = -77;
        EXPECT(hla_checkpoint_rows(NULL, 1, 10, 0, &rows, &stride), HLA_ERR_NULL_POINTER, "cfg", "cfg NULL");
        CHECK(rows == -77 && stride == -77, "cfg NULL failed but wrote rows %lld, stride %lld", (long long)rows,
              (long long)stride);
        EXPECT(hla_checkpoint_rows(&c, 1, 10, 0, NULL, &stride), HLA_ERR_NULL_POINTER, "rows", "rows NULL");
        CHECK(stride == -77, "rows NULL failed but wrote stride %lld", (long long)stride);
        EXPECT(hla_checkpoint_rows(&c, 1, 10, 0, &rows, NULL), HLA_ERR_NULL_POINTER, "stride", "stride NULL");
        CHECK(rows == -77, "stride NULL failed but wrote rows %lld", (long long)rows);
        c.chunk_size = -1;
        EXPECT(hla_checkpoint_rows(&c, 1, 10, 0, &rows, &stride), HLA_ERR_INVALID_ARGUMENT, "chunk_size", "chunk_size -1");
        c.chunk_size = 4, c.checkpoint_every = -1;
        EXPECT(hla_checkpoint_rows(&c, 1, 10, 0, &rows, &stride), HLA_ERR_INVALID_ARGUMENT, "checkpoint_every",
               "checkpoint_every -1");
        c.checkpoint_every = INT64_MIN;
        EXPECT(hla_checkpoint_rows(&c, 1, 10, 0, &rows, &stride), HLA_ERR_INVALID_ARGUMENT, "checkpoint_every",
               "checkpoint_every INT64_MIN");
        EXPECT(hla_checkpoint_rows(&c, 1, INT64_MAX, 0, &rows, &stride), HLA_ERR_INVALID_ARGUMENT, "checkpoint_every",
               "checkpoint_every INT64_MIN, tokens INT64_MAX");
        c.checkpoint_every = 0, c.struct_size = 8;
        EXPECT(hla_checkpoint_rows(&c, 1, 10, 0, &rows, &stride), HLA_ERR_INVALID_ARGUMENT, "struct_size", "struct_size 8");
        c.struct_size = (uint32_t)OLD_CONFIG_SIZE - 8;
        EXPECT(hla_checkpoint_rows(&c, 1, 10, 0, &rows, &stride), HLA_ERR_INVALID_ARGUMENT, "struct_size", "struct_size 80");
        CHECK(rows == -77 && stride == -77, "a bad configuration failed but wrote rows %lld, stride %lld", (long long)rows,
              (long long)stride);
        /* struct_size 88 (headers 1.0, 1.1): accepted, checkpoint_every taken as 0 whatever lies past byte 88 */
        {
            hla_config old, full = cfg_make(HLA_OP_HLA2, 1, 0, 1.0, 0.0, 2, 1, 3, 2, 4);
            int64_t r0 = -1, s0 = -1;
            old_config_in(&old, &full);
            OK(hla_checkpoint_rows(&full, 3, 45, 0, &r0, &s0), "96 bytes, every 0");
            if (OK(hla_checkpoint_rows(&old, 3, 45, 0, &rows, &stride), "struct_size 88, sentinel bytes past it"))
                CHECK(rows == r0 && stride == s0 && stride == 16 && tail_is_sentinel(&old),
                      "struct_size 88: rows %lld, stride %lld; 96 bytes: %lld, %lld", (long long)rows, (long long)stride,
                      (long long)r0, (long long)s0);
        }
    }
}

/* One configuration (grouped heads H = 4, Hkv = 2, dk = 3 != dv = 2, chunk 4; masked, normalize and decay as
 * given, ridge 0.5 with hla2) in element type dt, checkpoint_every `every` for the checkpoint calls, against
 * hla_forward and hla_backward (chunked) with checkpoint_every 0. variant 0: B = 2, T = 45 (12 chunks;
 * automatic stride 16: 2 checkpoints per sequence); 1: B = 1, T = 60 packed as {0, 7, 8, 40, 60} with int64
 * cu_seqlens (15 chunks; automatic stride 16: rows 0, 0, 1, 1; hla_checkpoint_rows gives 3); 2: the same with
 * int32 cu_seqlens, rows {2, 0, 3, 1} of the initial and final states, and checkpoint rows padded (row stride
 * n + 5). Always an initial state (the final states of random prefixes). With every != 0, hla_backward with
 * that checkpoint_every (its own carries) must also give the gradients of checkpoint_every 0, bit for bit. */
static void ck_case(int op, int dt, int variant, int64_t every, int masked, int norm, double decay)
{
    static const int64_t cu[5] = {0, 7, 8, 40, 60}, slot_of[4] = {2, 0, 3, 1};
    const int packed = variant > 0, withrows = variant == 2, cudt = variant == 2 ? HLA_INT32 : HLA_INT64;
    const int sdt = state_dt(dt), osdt = sdt == HLA_FLOAT64 ? HLA_FLOAT32 : HLA_FLOAT64;
    const int64_t B = packed ? 1 : 2, T = packed ? 60 : 45, N = packed ? 4 : 2;
    const hla_config c0 = cfg_make(op, masked, norm, decay, op == HLA_OP_HLA2 ? 0.5 : 0.0, 4, 2, 3, 2, 4);
    hla_config c = c0;
    prob p;
    int64_t n, L, R = -1, stride = -1, Rv, need = 0, checked = 0, ckrows, ckst, i, j;
    int64_t first[MAXSEQ], t0s[MAXSEQ], lens[MAXSEQ];
    double *ini_d, *tmp;
    void *ini_seq, *ini_slot, *fin1, *fin2, *out1, *out2, *out3, *pre, *ck, *ckz, *cub, *rowsb, *dout, *dfin;
    void *g1[4], *g2[4], *g3[4], *g4[4];
    hla_tensor tq, tk, tv, td, to1, to2, tcu, tini, tis, tf1, tf2, trows, tdf, tck, tckz;
    hla_tensor *cup, *rowp;
    c.checkpoint_every = every;
    set_ctx("checkpoints %s %s %s, every %lld, %s, norm=%d, decay=%g", op_name(op), dt_name(dt),
            variant == 0 ? "B=2 T=45" : variant == 1 ? "packed, int64" : "packed, int32, rows, padded checkpoint rows",
            (long long)every, masked ? "masked" : "unmasked", norm, decay);
    prob_init(&p, &c, dt, B, T, 1, packed ? cu : NULL, N);
    n = p.n;
    for (i = 0; i < N; i++) {
        t0s[i] = packed ? cu[i] : i * T; /* first token of sequence i in the [B * T] tokens */
        lens[i] = packed ? cu[i + 1] - cu[i] : T;
    }
    L = ck_stride(&c, T);
    for (i = 0; i < N; i++) first[i] = need, need += (lens[i] - 1) / L;
    Rv = packed ? (T - N) / L : B * ((T - 1) / L);
    OK(hla_checkpoint_rows(&c, B, T, packed ? N : 0, &R, &stride), "hla_checkpoint_rows");
    CHECK(R == Rv && stride == L, "hla_checkpoint_rows: rows %lld, stride %lld; want %lld, %lld", (long long)R,
          (long long)stride, (long long)Rv, (long long)L);
    CHECK((every != 0 || L == 16) && (every > 3 || need >= 2) && Rv >= need,
          "setup: stride %lld, %lld rows needed of %lld", (long long)L, (long long)need, (long long)Rv);
    /* checkpoints: one row more than hla_checkpoint_rows asks for, every element (padding, slack) 7.25 */
    ckrows = Rv + 1, ckst = withrows ? n + 5 : n;
    ck = talloc_fill(ckrows * ckst, sdt, 7.25);
    {
        int64_t sh[2], st[2];
        sh[0] = ckrows, sh[1] = n, st[0] = ckst, st[1] = 1;
        tck = mks(ck, sdt, 2, sh, st);
    }
    /* initial states: sequence order for hla_backward and the prefixes; slot order (rows) for hla_forward */
    ini_d = xmalloc((size_t)(N * n) * sizeof(double));
    valid_states(&c0, N, 1, ini_d);
    ini_seq = typed_of(ini_d, N * n, sdt);
    ini_slot = talloc(N * n, sdt);
    for (i = 0; i < N; i++)
        memcpy(eptr(ini_slot, sdt, (withrows ? slot_of[i] : i) * n), eptr(ini_seq, sdt, i * n), (size_t)n * esize(sdt));
    fin1 = talloc(N * n, sdt), fin2 = talloc(N * n, sdt), pre = talloc(n, sdt);
    out1 = talloc(p.no, dt), out2 = talloc(p.no, dt), out3 = talloc(p.no, dt);
    cub = ints_of(cu, 5, cudt);
    rowsb = ints_of(slot_of, 4, HLA_INT32);
    tq = pq(&p, 0, T), tk = pk(&p, 0, T), tv = pv(&p, 0, T), to1 = po(&p, out1, 0, T), to2 = po(&p, out2, 0, T);
    tcu = mk(cub, cudt, 1, N + 1, 0, 0, 0), trows = mk(rowsb, HLA_INT32, 1, N, 0, 0, 0);
    tini = mk(ini_slot, sdt, 2, N, n, 0, 0), tis = mk(ini_seq, sdt, 2, N, n, 0, 0);
    tf1 = mk(fin1, sdt, 2, N, n, 0, 0), tf2 = mk(fin2, sdt, 2, N, n, 0, 0);
    cup = packed ? &tcu : NULL, rowp = withrows ? &trows : NULL;

    /* forward: = hla_forward chunked (checkpoint_every 0), bit for bit */
    if (OK(hla_forward(&c0, HLA_PATH_CHUNKED, &tq, &tk, &tv, &to1, cup, &tini, &tf1, rowp), "hla_forward chunked") &&
        OK(hla_forward_checkpoints(&c, &tq, &tk, &tv, &to2, cup, &tini, &tf2, rowp, &tck), "hla_forward_checkpoints")) {
        CHECK(count_nan(out2, dt, p.no) == 0 && memcmp(out1, out2, (size_t)p.no * esize(dt)) == 0,
              "hla_forward_checkpoints: outputs differ from hla_forward chunked (rel err %.3g, %lld NaN)",
              err_vec(out2, dt, out1, dt, p.no), (long long)count_nan(out2, dt, p.no));
        CHECK(count_nan(fin2, sdt, N * n) == 0 && memcmp(fin1, fin2, (size_t)(N * n) * esize(sdt)) == 0,
              "hla_forward_checkpoints: final states differ from hla_forward chunked (rel err %.3g)",
              err_vec(fin2, sdt, fin1, sdt, N * n));
    }
    /* row first[i] + j - 1 = sequence i's state before its token j L: the final state of its tokens [0, j L) */
    for (i = 0; i < N; i++)
        for (j = 1; j * L < lens[i]; j++) {
            const int64_t a = t0s[i], e = t0s[i] + j * L, cu1[2] = {0, j * L};
            void *cub1 = ints_of(cu1, 2, cudt), *row = eptr(ck, sdt, (first[i] + j - 1) * ckst);
            hla_tensor q1 = tokv(p.q, dt, 1, B * T, p.H, p.dk, a, e), k1 = tokv(p.k, dt, 1, B * T, p.Hkv, p.dk, a, e),
                       v1 = tokv(p.v, dt, 1, B * T, p.Hkv, p.dv, a, e), o1 = tokv(out3, dt, 1, B * T, p.H, p.dv, a, e),
                       ti1 = mk(eptr(ini_seq, sdt, i * n), sdt, 2, 1, n, 0, 0), tp = mk(pre, sdt, 2, 1, n, 0, 0),
                       tc1 = mk(cub1, cudt, 1, 2, 0, 0, 0);
            fill(pre, sdt, n, NAN);
            if (OK(hla_forward(&c0, HLA_PATH_CHUNKED, &q1, &k1, &v1, &o1, packed ? &tc1 : NULL, &ti1, &tp, NULL),
                   "forward of sequence %lld's tokens [0, %lld)", (long long)i, (long long)(j * L))) {
                CHECK(count_nan(pre, sdt, n) == 0 && memcmp(pre, row, (size_t)n * esize(sdt)) == 0,
                      "checkpoint row %lld (sequence %lld before its token %lld) differs from the state after its tokens "
                      "[0, %lld): rel err %.3g",
                      (long long)(first[i] + j - 1), (long long)i, (long long)(j * L), (long long)(j * L),
                      err_vec(row, sdt, pre, sdt, n));
                checked++;
            }
            free(cub1);
        }
    CHECK(checked == need, "%lld checkpoint rows compared, %lld needed", (long long)checked, (long long)need);
    /* nothing written past the needed rows, between padded rows or past the tensor */
    {
        int64_t x, bad = 0;
        for (x = 0; x < ckrows * ckst + SLACK; x++)
            if (!(x / ckst < need && x % ckst < n) && !(getv(ck, sdt, x) == 7.25)) bad++;
        CHECK(bad == 0, "hla_forward_checkpoints wrote %lld elements outside the %lld rows it needs", (long long)bad,
              (long long)need);
    }

    /* backward from the checkpoints = hla_backward chunked (checkpoint_every 0), bit for bit; the checkpoints are
     * only read; hla_backward with this checkpoint_every = the same */
    tmp = xmalloc((size_t)(p.no > N * n ? p.no : N * n) * sizeof(double));
    for (i = 0; i < p.no; i++) tmp[i] = normal();
    dout = typed_of(tmp, p.no, dt);
    for (i = 0; i < N * n; i++) tmp[i] = 0.5 * normal();
    dfin = typed_of(tmp, N * n, sdt);
    free(tmp);
    td = po(&p, dout, 0, T), tdf = mk(dfin, sdt, 2, N, n, 0, 0);
    ckz = talloc_fill(ckrows * ckst, sdt, 7.25); /* the checkpoints with the needed rows zeroed */
    memcpy(ckz, ck, (size_t)(ckrows * ckst) * esize(sdt));
    for (i = 0; i < need; i++) fill(eptr(ckz, sdt, i * ckst), sdt, n, 0.0);
    tckz = tck, tckz.data = ckz;
    {
        void **gs[4];
        hla_tensor tg[4][4];
        int s, w;
        const int64_t cnt[4] = {p.nq, p.nk, p.nv, N * n};
        static const char *names[4] = {"dq", "dk", "dv", "d_initial"};
        gs[0] = g1, gs[1] = g2, gs[2] = g3, gs[3] = g4;
        for (s = 0; s < 4; s++) {
            gs[s][0] = talloc(p.nq, dt), gs[s][1] = talloc(p.nk, dt), gs[s][2] = talloc(p.nv, dt);
            gs[s][3] = talloc(N * n, sdt);
            tg[s][0] = mk(gs[s][0], dt, 4, B, T, p.H, p.dk), tg[s][1] = mk(gs[s][1], dt, 4, B, T, p.Hkv, p.dk);
            tg[s][2] = mk(gs[s][2], dt, 4, B, T, p.Hkv, p.dv), tg[s][3] = mk(gs[s][3], sdt, 2, N, n, 0, 0);
        }
        {
            guard gk;
            memset(&gk, 0, sizeof gk);
            guard_add(&gk, ck, ckrows * ckst, sdt);
            guard_take(&gk);
            if (OK(hla_backward(&c0, HLA_PATH_CHUNKED, &tq, &tk, &tv, &td, &tg[0][0], &tg[0][1], &tg[0][2], cup, &tis,
                                &tdf, &tg[0][3]),
                   "hla_backward chunked") &&
                OK(hla_backward_checkpoints(&c, &tq, &tk, &tv, &td, &tg[1][0], &tg[1][1], &tg[1][2], cup, &tis, &tdf,
                                            &tg[1][3], &tck),
                   "hla_backward_checkpoints")) {
                for (w = 0; w < 4; w++) {
                    const int wdt = w == 3 ? sdt : dt;
                    CHECK(count_nan(gs[1][w], wdt, cnt[w]) == 0 &&
                              memcmp(gs[0][w], gs[1][w], (size_t)cnt[w] * esize(wdt)) == 0,
                          "hla_backward_checkpoints: %s differs from hla_backward chunked (rel err %.3g, %lld NaN)",
                          names[w], err_vec(gs[1][w], wdt, gs[0][w], wdt, cnt[w]),
                          (long long)count_nan(gs[1][w], wdt, cnt[w]));
                }
            }
            CHECK(guard_same(&gk), "hla_backward_checkpoints wrote into its checkpoints");
            guard_free(&gk);
        }
        /* hla_backward's own carries every `every` chunks: the gradients of checkpoint_every 0 */
        if (every != 0 &&
            OK(hla_backward(&c, HLA_PATH_CHUNKED, &tq, &tk, &tv, &td, &tg[3][0], &tg[3][1], &tg[3][2], cup, &tis, &tdf,
                            &tg[3][3]),
               "hla_backward chunked, checkpoint_every %lld", (long long)every))
            for (w = 0; w < 4; w++) {
                const int wdt = w == 3 ? sdt : dt;
                CHECK(count_nan(gs[3][w], wdt, cnt[w]) == 0 &&
                          memcmp(gs[0][w], gs[3][w], (size_t)(cnt[w] + SLACK) * esize(wdt)) == 0,
                      "hla_backward with checkpoint_every %lld: %s differs from checkpoint_every 0 (rel err %.3g, %lld "
                      "NaN)",
                      (long long)every, names[w], err_vec(gs[3][w], wdt, gs[0][w], wdt, cnt[w]),
                      (long long)count_nan(gs[3][w], wdt, cnt[w]));
            }
        /* other checkpoint values give other gradients: the checkpoints are what the backward starts from */
        if (need > 0 &&
            OK(hla_backward_checkpoints(&c, &tq, &tk, &tv, &td, &tg[2][0], &tg[2][1], &tg[2][2], cup, &tis, &tdf,
                                        &tg[2][3], &tckz),
               "hla_backward_checkpoints from zeroed checkpoints"))
            CHECK(memcmp(gs[2][0], gs[0][0], (size_t)p.nq * esize(dt)) != 0,
                  "hla_backward_checkpoints from zeroed checkpoints gives the dq of the forward's checkpoints");

        /* bad checkpoint tensors, and a negative checkpoint_every: the status, naming the argument, and nothing
         * written (hla_backward too, for the configuration) */
        {
            guard gf, gb;
            void *altm = talloc_fill(ckrows * n, osdt, 7.25);
            int64_t sh0[2];
            hla_tensor few = tck, other = mk(altm, osdt, 2, ckrows, n, 0, 0), wide = tck, empty;
            const hla_tensor *bad[7];
            hla_config cb[7];
            static const hla_status want[7] = {HLA_ERR_MISMATCH,     HLA_ERR_DTYPE,            HLA_ERR_MISMATCH,
                                               HLA_ERR_MISMATCH,     HLA_ERR_NULL_POINTER,     HLA_ERR_INVALID_ARGUMENT,
                                               HLA_ERR_INVALID_ARGUMENT};
            static const char *what[7] = {"one row fewer than needed", "the other precision", "rows of n - 1 elements",
                                          "0 rows, data NULL", "checkpoints NULL", "checkpoint_every -1",
                                          "checkpoint_every INT64_MIN"};
            static const char *kws[7] = {"checkpoints", "checkpoints", "checkpoints", "checkpoints", "checkpoints",
                                         "checkpoint_every", "checkpoint_every"};
            int k;
            few.shape[0] = need - 1;
            wide.shape[1] = n - 1;
            sh0[0] = 0, sh0[1] = n;
            empty = mks(NULL, sdt, 2, sh0, NULL);
            bad[0] = &few, bad[1] = &other, bad[2] = &wide, bad[3] = &empty, bad[4] = NULL, bad[5] = bad[6] = &tck;
            for (k = 0; k < 7; k++) cb[k] = c;
            cb[5].checkpoint_every = -1, cb[6].checkpoint_every = INT64_MIN;
            memset(&gf, 0, sizeof gf);
            memset(&gb, 0, sizeof gb);
            guard_add(&gf, out2, p.no, dt), guard_add(&gf, fin2, N * n, sdt), guard_add(&gf, ck, ckrows * ckst, sdt);
            guard_add(&gf, altm, ckrows * n, osdt);
            guard_add(&gb, gs[1][0], p.nq, dt), guard_add(&gb, gs[1][1], p.nk, dt), guard_add(&gb, gs[1][2], p.nv, dt);
            guard_add(&gb, gs[1][3], N * n, sdt), guard_add(&gb, ck, ckrows * ckst, sdt);
            guard_add(&gb, altm, ckrows * n, osdt);
            for (k = 0; k < 7; k++) {
                if ((k == 0 || k == 3) && need == 0) continue; /* no row fewer than none; no rows are enough */
                guard_take(&gf);
                EXPECT(hla_forward_checkpoints(&cb[k], &tq, &tk, &tv, &to2, cup, &tini, &tf2, rowp, bad[k]), want[k],
                       kws[k], "hla_forward_checkpoints, %s", what[k]);
                CHECK(guard_same(&gf), "hla_forward_checkpoints with %s failed but wrote memory", what[k]);
                guard_take(&gb);
                EXPECT(hla_backward_checkpoints(&cb[k], &tq, &tk, &tv, &td, &tg[1][0], &tg[1][1], &tg[1][2], cup, &tis,
                                                &tdf, &tg[1][3], bad[k]),
                       want[k], kws[k], "hla_backward_checkpoints, %s", what[k]);
                CHECK(guard_same(&gb), "hla_backward_checkpoints with %s failed but wrote memory", what[k]);
                if (k >= 5) {
                    int64_t rr = -77, rs = -77;
                    guard_take(&gb);
                    EXPECT(hla_backward(&cb[k], HLA_PATH_CHUNKED, &tq, &tk, &tv, &td, &tg[1][0], &tg[1][1], &tg[1][2],
                                        cup, &tis, &tdf, &tg[1][3]),
                           want[k], kws[k], "hla_backward, %s", what[k]);
                    CHECK(guard_same(&gb), "hla_backward with %s failed but wrote memory", what[k]);
                    EXPECT(hla_checkpoint_rows(&cb[k], B, T, packed ? N : 0, &rr, &rs), want[k], kws[k],
                           "hla_checkpoint_rows, %s", what[k]);
                    CHECK(rr == -77 && rs == -77, "hla_checkpoint_rows with %s failed but wrote rows %lld, stride %lld",
                          what[k], (long long)rr, (long long)rs);
                    EXPECT(hla_config_validate(&cb[k]), want[k], kws[k], "hla_config_validate, %s", what[k]);
                }
            }
            guard_free(&gf);
            guard_free(&gb);
            free(altm);
        }
        for (s = 0; s < 4; s++)
            for (w = 0; w < 4; w++) free(gs[s][w]);
    }
    free(ini_d), free(ini_seq), free(ini_slot), free(fin1), free(fin2), free(pre), free(out1), free(out2), free(out3);
    free(ck), free(ckz), free(cub), free(rowsb), free(dout), free(dfin);
    prob_free(&p);
}

/* Sequences shorter than the chunk (T = 3, chunk 4): no checkpoint rows; a [0, n] tensor with data NULL works
 * and gives hla_forward's and hla_backward's results (chunked) bit for bit; B = 2, or packed {0, 1, 3}. Empty
 * tensors are still checked: another precision or another n fails. */
static void ck_short(int op, int dt)
{
    static const int64_t cu[3] = {0, 1, 3};
    const int sdt = state_dt(dt), osdt = sdt == HLA_FLOAT64 ? HLA_FLOAT32 : HLA_FLOAT64;
    hla_config c = cfg_make(op, 1, 1, 0.9, op == HLA_OP_HLA2 ? 0.5 : 0.0, 4, 2, 3, 2, 4);
    int packed;
    for (packed = 0; packed < 2; packed++) {
        const int64_t B = packed ? 1 : 2, T = 3, N = 2;
        prob p;
        int64_t R = -1, stride = -1, sh[2], i;
        void *cub = ints_of(cu, 3, HLA_INT64), *o1, *o2, *f1, *f2, *dout, *dfin, *g[2][4];
        hla_tensor tq, tk, tv, to1, to2, tf1, tf2, tcu, te, tbad, td, tdf, tg[2][4];
        hla_tensor *cup;
        double *tmp;
        int s, w;
        set_ctx("checkpoints, T = 3 < chunk 4, %s %s %s", op_name(op), dt_name(dt), packed ? "packed {0, 1, 3}" : "B = 2");
        prob_init(&p, &c, dt, B, T, 1, packed ? cu : NULL, N);
        OK(hla_checkpoint_rows(&c, B, T, packed ? N : 0, &R, &stride), "hla_checkpoint_rows");
        CHECK(R == 0 && stride == 4, "hla_checkpoint_rows: rows %lld, stride %lld; want 0, 4", (long long)R,
              (long long)stride);
        sh[0] = 0, sh[1] = p.n;
        te = mks(NULL, sdt, 2, sh, NULL);
        o1 = talloc(p.no, dt), o2 = talloc(p.no, dt), f1 = talloc(N * p.n, sdt), f2 = talloc(N * p.n, sdt);
        tq = pq(&p, 0, T), tk = pk(&p, 0, T), tv = pv(&p, 0, T), to1 = po(&p, o1, 0, T), to2 = po(&p, o2, 0, T);
        tf1 = mk(f1, sdt, 2, N, p.n, 0, 0), tf2 = mk(f2, sdt, 2, N, p.n, 0, 0), tcu = mk(cub, HLA_INT64, 1, 3, 0, 0, 0);
        cup = packed ? &tcu : NULL;
        if (OK(hla_forward(&c, HLA_PATH_CHUNKED, &tq, &tk, &tv, &to1, cup, NULL, &tf1, NULL), "hla_forward chunked") &&
            OK(hla_forward_checkpoints(&c, &tq, &tk, &tv, &to2, cup, NULL, &tf2, NULL, &te),
               "hla_forward_checkpoints, [0, n] checkpoints with data NULL")) {
            CHECK(count_nan(o2, dt, p.no) == 0 && memcmp(o1, o2, (size_t)p.no * esize(dt)) == 0 &&
                      memcmp(f1, f2, (size_t)(N * p.n) * esize(sdt)) == 0,
                  "hla_forward_checkpoints differs from hla_forward chunked (outputs rel err %.3g, final %.3g)",
                  err_vec(o2, dt, o1, dt, p.no), err_vec(f2, sdt, f1, sdt, N * p.n));
            CHECK(err_out(&p, o2, 0, T) <= tol_of(dt), "hla_forward_checkpoints vs the reference: rel err %.3g",
                  err_out(&p, o2, 0, T));
        }
        /* still checked when empty: element type and row length */
        fill(o2, dt, p.no, NAN);
        tbad = te, tbad.dtype = osdt;
        EXPECT(hla_forward_checkpoints(&c, &tq, &tk, &tv, &to2, cup, NULL, NULL, NULL, &tbad), HLA_ERR_DTYPE,
               "checkpoints", "[0, n] checkpoints of the other precision");
        tbad = te, tbad.shape[1] = p.n + 1;
        EXPECT(hla_forward_checkpoints(&c, &tq, &tk, &tv, &to2, cup, NULL, NULL, NULL, &tbad), HLA_ERR_MISMATCH,
               "checkpoints", "[0, n + 1] checkpoints");
        CHECK(count_nan(o2, dt, p.no + SLACK) == p.no + SLACK, "a failing hla_forward_checkpoints wrote its output");
        /* backward */
        tmp = xmalloc((size_t)(p.no > N * p.n ? p.no : N * p.n) * sizeof(double));
        for (i = 0; i < p.no; i++) tmp[i] = normal();
        dout = typed_of(tmp, p.no, dt);
        for (i = 0; i < N * p.n; i++) tmp[i] = 0.5 * normal();
        dfin = typed_of(tmp, N * p.n, sdt);
        free(tmp);
        td = po(&p, dout, 0, T), tdf = mk(dfin, sdt, 2, N, p.n, 0, 0);
        for (s = 0; s < 2; s++) {
            g[s][0] = talloc(p.nq, dt), g[s][1] = talloc(p.nk, dt), g[s][2] = talloc(p.nv, dt);
            g[s][3] = talloc(N * p.n, sdt);
            tg[s][0] = mk(g[s][0], dt, 4, B, T, p.H, p.dk), tg[s][1] = mk(g[s][1], dt, 4, B, T, p.Hkv, p.dk);
            tg[s][2] = mk(g[s][2], dt, 4, B, T, p.Hkv, p.dv), tg[s][3] = mk(g[s][3], sdt, 2, N, p.n, 0, 0);
        }
        if (OK(hla_backward(&c, HLA_PATH_CHUNKED, &tq, &tk, &tv, &td, &tg[0][0], &tg[0][1], &tg[0][2], cup, NULL, &tdf,
                            &tg[0][3]),
               "hla_backward chunked") &&
            OK(hla_backward_checkpoints(&c, &tq, &tk, &tv, &td, &tg[1][0], &tg[1][1], &tg[1][2], cup, NULL, &tdf,
                                        &tg[1][3], &te),
               "hla_backward_checkpoints, [0, n] checkpoints with data NULL")) {
            int same = 1;
            int64_t nan = 0;
            for (w = 0; w < 4; w++) {
                const int wdt = w == 3 ? sdt : dt;
                const int64_t cnt = w == 0 ? p.nq : w == 1 ? p.nk : w == 2 ? p.nv : N * p.n;
                same &= memcmp(g[0][w], g[1][w], (size_t)cnt * esize(wdt)) == 0;
                nan += count_nan(g[1][w], wdt, cnt);
            }
            CHECK(same && nan == 0, "hla_backward_checkpoints differs from hla_backward chunked (%lld NaN)", (long long)nan);
        }
        for (s = 0; s < 2; s++)
            for (w = 0; w < 4; w++) free(g[s][w]);
        free(cub), free(o1), free(o2), free(f1), free(f2), free(dout), free(dfin);
        prob_free(&p);
    }
}

/* Everything one configuration gives for a problem (outputs and gradients in buffers that start as 7.25, slack
 * included): hla_forward chunked (outputs, final states), hla_checkpoint_rows, hla_forward_checkpoints (outputs,
 * final states, checkpoints), hla_backward chunked and hla_backward_checkpoints (dq, dk, dv, d_initial). */
enum { CR_OUT, CR_FIN, CR_CKOUT, CR_CKFIN, CR_CK, CR_G, CR_COUNT = CR_G + 8 };
typedef struct {
    void *buf[CR_COUNT];
    int64_t count[CR_COUNT];
    int dt[CR_COUNT];
    int64_t rows, stride;
} ck_run;

static void ck_run_all(const hla_config *cfg, const char *what, const prob *p, void *ini, void *dout, void *dfin,
                       int64_t ckrows, ck_run *r)
{
    const int dt = p->dt, sdt = p->sdt;
    const int64_t B = p->B, T = p->T, N = p->B, n = p->n;
    hla_tensor tq = pq(p, 0, T), tk = pk(p, 0, T), tv = pv(p, 0, T), td = po(p, dout, 0, T);
    hla_tensor ti = mk(ini, sdt, 2, N, n, 0, 0), tdf = mk(dfin, sdt, 2, N, n, 0, 0), t[CR_COUNT];
    int i, k;
    memset(r, 0, sizeof *r);
    for (i = 0; i < CR_COUNT; i++) {
        const int g = i >= CR_G ? (i - CR_G) % 4 : -1;
        r->dt[i] = i == CR_FIN || i == CR_CKFIN || i == CR_CK || g == 3 ? sdt : dt;
        r->count[i] = i == CR_OUT || i == CR_CKOUT ? p->no : i == CR_FIN || i == CR_CKFIN || g == 3 ? N * n
                      : i == CR_CK ? ckrows * n : g == 0 ? p->nq : g == 1 ? p->nk : p->nv;
        r->buf[i] = talloc_fill(r->count[i], r->dt[i], 7.25);
    }
    t[CR_OUT] = po(p, r->buf[CR_OUT], 0, T), t[CR_CKOUT] = po(p, r->buf[CR_CKOUT], 0, T);
    t[CR_FIN] = mk(r->buf[CR_FIN], sdt, 2, N, n, 0, 0), t[CR_CKFIN] = mk(r->buf[CR_CKFIN], sdt, 2, N, n, 0, 0);
    t[CR_CK] = mk(r->buf[CR_CK], sdt, 2, ckrows, n, 0, 0);
    for (k = 0; k < 2; k++) {
        const int g0 = CR_G + 4 * k;
        t[g0] = mk(r->buf[g0], dt, 4, B, T, p->H, p->dk), t[g0 + 1] = mk(r->buf[g0 + 1], dt, 4, B, T, p->Hkv, p->dk);
        t[g0 + 2] = mk(r->buf[g0 + 2], dt, 4, B, T, p->Hkv, p->dv), t[g0 + 3] = mk(r->buf[g0 + 3], sdt, 2, N, n, 0, 0);
    }
    r->rows = r->stride = -1;
    OK(hla_checkpoint_rows(cfg, B, T, 0, &r->rows, &r->stride), "hla_checkpoint_rows, %s", what);
    OK(hla_forward(cfg, HLA_PATH_CHUNKED, &tq, &tk, &tv, &t[CR_OUT], NULL, &ti, &t[CR_FIN], NULL), "hla_forward, %s",
       what);
    OK(hla_forward_checkpoints(cfg, &tq, &tk, &tv, &t[CR_CKOUT], NULL, &ti, &t[CR_CKFIN], NULL, &t[CR_CK]),
       "hla_forward_checkpoints, %s", what);
    OK(hla_backward(cfg, HLA_PATH_CHUNKED, &tq, &tk, &tv, &td, &t[CR_G], &t[CR_G + 1], &t[CR_G + 2], NULL, &ti, &tdf,
                    &t[CR_G + 3]),
       "hla_backward, %s", what);
    OK(hla_backward_checkpoints(cfg, &tq, &tk, &tv, &td, &t[CR_G + 4], &t[CR_G + 5], &t[CR_G + 6], NULL, &ti, &tdf,
                                &t[CR_G + 7], &t[CR_CK]),
       "hla_backward_checkpoints, %s", what);
}

static void ck_run_free(ck_run *r)
{
    int i;
    for (i = 0; i < CR_COUNT; i++) free(r->buf[i]);
}

/* The 88-byte hla_config of headers 1.0 and 1.1 gives what a 96-byte one with checkpoint_every 0 gives, bit for
 * bit (every output, gradient and checkpoint, and the slack past them): in an exact 88-byte allocation, and
 * with bytes past it that would be an invalid checkpoint_every if they were read. (B = 2, T = 45, chunk 4:
 * stride 16, 2 checkpoints per sequence; grouped heads, normalized, decay 0.9, an initial state.) */
static void ck_old_struct(int op, int dt)
{
    static const char *names[CR_COUNT] = {"hla_forward outputs", "hla_forward final", "hla_forward_checkpoints outputs",
                                          "hla_forward_checkpoints final", "checkpoints", "hla_backward dq",
                                          "hla_backward dk", "hla_backward dv", "hla_backward d_initial",
                                          "hla_backward_checkpoints dq", "hla_backward_checkpoints dk",
                                          "hla_backward_checkpoints dv", "hla_backward_checkpoints d_initial"};
    const hla_config c = cfg_make(op, 1, 1, 0.9, op == HLA_OP_HLA2 ? 0.5 : 0.0, 4, 2, 3, 2, 4);
    hla_config inbuf;
    void *exact = old_config_of(&c), *ini, *dout, *dfin;
    double *tmp;
    prob p;
    ck_run r[3];
    int64_t i, ckrows = 4;
    int k, x;
    set_ctx("checkpoints, 88-byte hla_config, %s %s", op_name(op), dt_name(dt));
    prob_init(&p, &c, dt, 2, 45, 1, NULL, 0);
    tmp = xmalloc((size_t)(p.no > 2 * p.n ? p.no : 2 * p.n) * sizeof(double));
    valid_states(&c, 2, 1, tmp);
    ini = typed_of(tmp, 2 * p.n, p.sdt);
    for (i = 0; i < p.no; i++) tmp[i] = normal();
    dout = typed_of(tmp, p.no, dt);
    for (i = 0; i < 2 * p.n; i++) tmp[i] = 0.5 * normal();
    dfin = typed_of(tmp, 2 * p.n, p.sdt);
    free(tmp);
    old_config_in(&inbuf, &c);
    ck_run_all(&c, "96 bytes, checkpoint_every 0", &p, ini, dout, dfin, ckrows, &r[0]);
    ck_run_all((const hla_config *)exact, "88 bytes (exact allocation)", &p, ini, dout, dfin, ckrows, &r[1]);
    ck_run_all(&inbuf, "88 bytes, sentinel bytes past them", &p, ini, dout, dfin, ckrows, &r[2]);
    CHECK(r[0].rows == 4 && r[0].stride == 16, "96 bytes: checkpoint rows %lld, stride %lld; want 4, 16",
          (long long)r[0].rows, (long long)r[0].stride);
    CHECK(tail_is_sentinel(&inbuf), "a call wrote past byte 88 of an 88-byte config");
    for (k = 1; k < 3; k++) {
        CHECK(r[k].rows == r[0].rows && r[k].stride == r[0].stride,
              "%s: hla_checkpoint_rows gives rows %lld, stride %lld; 96 bytes: %lld, %lld",
              k == 1 ? "88 bytes (exact)" : "88 bytes + sentinel", (long long)r[k].rows, (long long)r[k].stride,
              (long long)r[0].rows, (long long)r[0].stride);
        for (x = 0; x < CR_COUNT; x++)
            CHECK(memcmp(r[k].buf[x], r[0].buf[x], (size_t)(r[0].count[x] + SLACK) * esize(r[0].dt[x])) == 0 &&
                      count_nan(r[k].buf[x], r[k].dt[x], r[k].count[x]) == 0,
                  "%s: %s differ from a 96-byte config with checkpoint_every 0 (rel err %.3g)",
                  k == 1 ? "88 bytes (exact)" : "88 bytes + sentinel", names[x],
                  err_vec(r[k].buf[x], r[k].dt[x], r[0].buf[x], r[0].dt[x], r[0].count[x]));
    }
    /* the checkpoint calls agree with the plain ones under both sizes (the rest of section 11 in short) */
    CHECK(memcmp(r[0].buf[CR_OUT], r[0].buf[CR_CKOUT], (size_t)p.no * esize(dt)) == 0 &&
              memcmp(r[0].buf[CR_G], r[0].buf[CR_G + 4], (size_t)p.nq * esize(dt)) == 0,
          "hla_forward_checkpoints / hla_backward_checkpoints differ from hla_forward / hla_backward");
    for (k = 0; k < 3; k++) ck_run_free(&r[k]);
    free(exact), free(ini), free(dout), free(dfin);
    prob_free(&p);
}

/* The checkpoint tests of one operator (three sections, so that a run under valgrind can split them between
 * processes). */
static void checkpoints_of(int op)
{
    static const int dts[3] = {HLA_FLOAT64, HLA_FLOAT32, HLA_BFLOAT16};
    /* masked, normalize, decay; checkpoint_every (5: 12 chunks in groups of 5, 5, 2) */
    static const struct {
        int masked, norm;
        double decay;
    } opts[3] = {{0, 1, 0.9}, {1, 0, 1.0}, {0, 0, 1.0}};
    static const int64_t every_opt[3] = {1, 3, 5};
    int di, variant, e, o;
    for (di = 0; di < 3; di++) {
        for (variant = 0; variant < 3; variant++)
            for (e = 0; e < 5; e++) {
                /* every checkpoint_every in float64; float32: automatic, 1 and 3; bfloat16: automatic and 2 */
                if (dts[di] == HLA_FLOAT32 && e != 0 && e != 1 && e != 3) continue;
                if (dts[di] == HLA_BFLOAT16 && e != 0 && e != 2) continue;
                ck_case(op, dts[di], variant, g_every[e], 1, 1, 0.9);
            }
        ck_short(op, dts[di]);
        ck_old_struct(op, dts[di]);
    }
    /* unmasked, not normalized, no decay, each with checkpoint_every 1, 3 or 5: float64 in a batch, float32
     * packed with rows */
    for (o = 0; o < 3; o++) {
        e = (op + o) % 3;
        ck_case(op, HLA_FLOAT64, 0, every_opt[e], opts[o].masked, opts[o].norm, opts[o].decay);
        ck_case(op, HLA_FLOAT32, 2, every_opt[(e + 1) % 3], opts[o].masked, opts[o].norm, opts[o].decay);
    }
}

static void test_checkpoints_hla2(void)
{
    ck_rows_api();
    checkpoints_of(0);
}
static void test_checkpoints_ahla(void) { checkpoints_of(1); }
static void test_checkpoints_hla3(void) { checkpoints_of(2); }

/* ------------------------------------------------------------------------------------------ */

/* HLA_TEST_SECTIONS: a comma-separated list of section names ("test_numerics,test_half") runs only those; with a
 * leading '!' ("!test_numerics,test_half") every section but those. Unset or empty: every section. (Tests/c/Makefile
 * runs the test under valgrind as two processes, a list and its complement.) */
static int section_wanted(const char *name)
{
    const char *list = getenv("HLA_TEST_SECTIONS"), *p;
    size_t len = strlen(name);
    int except;
    if (list == NULL || *list == 0) return 1;
    except = *list == '!';
    if (except) list++;
    for (p = list; (p = strstr(p, name)) != NULL; p += len)
        if ((p == list || p[-1] == ',') && (p[len] == 0 || p[len] == ',')) return !except;
    return except;
}

int main(void)
{
    double t0 = now_s(), t1;
    const char *ver;
    setvbuf(stdout, NULL, _IOLBF, 0);
    ver = hla_version();
    printf("libhla %s: C ABI test (header %d.%d.%d)\n", ver ? ver : "(null)", HLA_VERSION_MAJOR, HLA_VERSION_MINOR,
           HLA_VERSION_PATCH);

#define SECTION(fn)                                                                                                    \
    do {                                                                                                               \
        long f0 = g_fail, p0 = g_pass;                                                                                 \
        if (!section_wanted(#fn)) break;                                                                               \
        t1 = now_s();                                                                                                  \
        fn();                                                                                                          \
        printf("  %-20s %6ld passed, %4ld failed  (%.2f s)\n", #fn, g_pass - p0, g_fail - f0, now_s() - t1);          \
    } while (0)

    SECTION(test_basics); /* first: checks last_error before any failure */
    SECTION(test_tensor_init);
    SECTION(test_bad_tensors);
    SECTION(test_bad_values);
    SECTION(test_bad_configs);
    SECTION(test_serialization);
    SECTION(test_copy_reset);
    SECTION(test_numerics);
    SECTION(test_half);
    SECTION(test_chunk_sizes);
    SECTION(test_long);
    SECTION(test_strided);
    SECTION(test_packed);
    SECTION(test_rows_step);
    SECTION(test_causality);
    SECTION(test_threads);
    SECTION(test_backward);
    SECTION(test_checkpoints_hla2);
    SECTION(test_checkpoints_ahla);
    SECTION(test_checkpoints_hla3);
    printf("total %.2f s\n", now_s() - t0);
    printf("%ld passed, %ld failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
