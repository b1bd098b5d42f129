/* Hardware limits measured in the benchmark's own run (examples/bench/bench.py loads this as a shared
 * library through ctypes; build: gcc -O2 -mavx2 -mfma -fPIC -shared -pthread limits.c -o limits.so -ldl).
 *
 *   limits_fma_peak(threads, iters, out)  FMA throughput: each thread runs `iters` rounds of 12
 *                                         independent 8-lane float32 FMA chains (ymm registers), so the
 *                                         FMA pipes, not the 4-cycle FMA latency, bound it. Returns the
 *                                         wall time from a common start (barrier) to the last thread's end;
 *                                         out receives GFLOP/s (2 flops per lane per FMA) over that time.
 *   limits_fma_peak512(threads, iters, out) The same with 16-lane zmm registers (AVX-512F); -1 when the CPU
 *                                         lacks it. On some CPUs (Intel server cores with two 512-bit FMA
 *                                         ports) it is about twice the ymm figure, on others (AMD Zen 4,
 *                                         which splits a zmm FMA in two) the same.
 *   limits_rmw(buf, n, sweeps)            In-place read-modify-write sweep x = a*x + b over n float32
 *                                         (AVX2, four ymm per iteration), repeated `sweeps` times on the
 *                                         calling thread; returns seconds per sweep.
 *   limits_rmw_threads(buf, n, sweeps, t) The same over t threads, each sweeping a contiguous 1/t of the
 *                                         buffer `sweeps` times from a common start (barrier); returns
 *                                         seconds per sweep to the last thread's end.
 *   limits_step_*                         A loop of hla_step calls from C (libhla dlopen'ed from the path
 *                                         given), on preallocated [ntok, H, d] tokens, to time the streaming
 *                                         step without the Python binding around it.
 *   limits_forward_*                      One hla_forward call from C over preallocated [B, T, H, d] inputs
 *                                         and output (libhla dlopen'ed from the path given): two builds
 *                                         loaded side by side can be timed alternately in one process
 *                                         (examples/bench/ab.py); limits_state_elements gives a build's
 *                                         state size for limits_step_new.
 *
 * Nothing here depends on libhla's headers: the two structs of the C ABI that the step loop fills are
 * declared below as include/hla.h defines them (ABI version 1: they only ever grow at the end, and
 * struct_size tells the library which size the caller has).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* ------------------------------------------------------------------------------------------------ */
/* FMA peak                                                                                          */
/* ------------------------------------------------------------------------------------------------ */
#define CHAINS 12

typedef struct {
    long iters;
    int zmm;
    pthread_barrier_t *bar;
    double t_start, t_end;
    float sink;
} fma_arg;

/* 12 independent FMA chains in registers of type V (P: the intrinsics' prefix, L lanes, R: the asm register
 * constraint); the empty asm statements keep each chain in a register and every FMA in the loop. */
#define FMA_CHAINS(ATTR, NAME, V, P, L, R)                                                                   \
    ATTR static void NAME(long iters, float *sink) {                                                        \
        const V a = P##_set1_ps(0.9999999f), b = P##_set1_ps(1e-7f);                                        \
        V x0 = P##_set1_ps(0.10f), x1 = P##_set1_ps(0.11f), x2 = P##_set1_ps(0.12f);                        \
        V x3 = P##_set1_ps(0.13f), x4 = P##_set1_ps(0.14f), x5 = P##_set1_ps(0.15f);                        \
        V x6 = P##_set1_ps(0.16f), x7 = P##_set1_ps(0.17f), x8 = P##_set1_ps(0.18f);                        \
        V x9 = P##_set1_ps(0.19f), x10 = P##_set1_ps(0.20f), x11 = P##_set1_ps(0.21f);                      \
        for (long i = 0; i < iters; i++) {                                                                  \
            x0 = P##_fmadd_ps(x0, a, b); x1 = P##_fmadd_ps(x1, a, b); x2 = P##_fmadd_ps(x2, a, b);          \
            x3 = P##_fmadd_ps(x3, a, b); x4 = P##_fmadd_ps(x4, a, b); x5 = P##_fmadd_ps(x5, a, b);          \
            x6 = P##_fmadd_ps(x6, a, b); x7 = P##_fmadd_ps(x7, a, b); x8 = P##_fmadd_ps(x8, a, b);          \
            x9 = P##_fmadd_ps(x9, a, b); x10 = P##_fmadd_ps(x10, a, b); x11 = P##_fmadd_ps(x11, a, b);      \
            __asm__ volatile("" : R(x0), R(x1), R(x2), R(x3), R(x4), R(x5));                                \
            __asm__ volatile("" : R(x6), R(x7), R(x8), R(x9), R(x10), R(x11));                              \
        }                                                                                                   \
        V s = P##_add_ps(P##_add_ps(P##_add_ps(x0, x1), P##_add_ps(x2, x3)),                                \
                         P##_add_ps(P##_add_ps(x4, x5), P##_add_ps(x6, x7)));                               \
        s = P##_add_ps(s, P##_add_ps(P##_add_ps(x8, x9), P##_add_ps(x10, x11)));                            \
        float out[L];                                                                                       \
        P##_storeu_ps(out, s);                                                                              \
        *sink = out[0] + out[L - 1];                                                                        \
    }

FMA_CHAINS(, fma_chains, __m256, _mm256, 8, "+x")
FMA_CHAINS(__attribute__((target("avx512f"))), fma_chains512, __m512, _mm512, 16, "+v")

static void *fma_thread(void *p) {
    fma_arg *a = p;
    pthread_barrier_wait(a->bar);
    a->t_start = now();
    if (a->zmm) fma_chains512(a->iters, &a->sink); else fma_chains(a->iters, &a->sink);
    a->t_end = now();
    return NULL;
}

/* Seconds from the first thread's start (all start from one barrier) to the last thread's end;
 * *gflops = total FLOP / that time / 1e9. `zmm`: 16-lane AVX-512 chains instead of 8-lane AVX2 ones. */
static double fma_peak(int threads, long iters, int zmm, double *gflops) {
    if (threads < 1 || threads > 64 || iters < 1) return -1;
    if (zmm && !__builtin_cpu_supports("avx512f")) return -1;
    pthread_t tid[64];
    fma_arg args[64];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++) {
        args[i].iters = iters;
        args[i].zmm = zmm;
        args[i].bar = &bar;
        if (pthread_create(&tid[i], NULL, fma_thread, &args[i]) != 0) {
            /* the barrier waits for every party: without the thread it could never open */
            fprintf(stderr, "limits: pthread_create failed\n");
            exit(1);
        }
    }
    pthread_barrier_wait(&bar);
    for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL);
    double t0 = args[0].t_start, t1 = args[0].t_end;
    for (int i = 1; i < threads; i++) {
        if (args[i].t_start < t0) t0 = args[i].t_start;
        if (args[i].t_end > t1) t1 = args[i].t_end;
    }
    pthread_barrier_destroy(&bar);
    double flops = 2.0 * (zmm ? 16 : 8) * CHAINS * (double)iters * threads;
    if (gflops) *gflops = flops / (t1 - t0) / 1e9;
    return t1 - t0;
}

double limits_fma_peak(int threads, long iters, double *gflops) { return fma_peak(threads, iters, 0, gflops); }
double limits_fma_peak512(int threads, long iters, double *gflops) { return fma_peak(threads, iters, 1, gflops); }

/* ------------------------------------------------------------------------------------------------ */
/* In-place read-modify-write sweep                                                                  */
/* ------------------------------------------------------------------------------------------------ */
double limits_rmw(float *buf, long n, int sweeps) {
    if (!buf || n < 32 || sweeps < 1) return -1;
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-6f);
    long n32 = n & ~31L;
    double t0 = now();
    for (int s = 0; s < sweeps; s++) {
        float *p = buf;
        for (long i = 0; i < n32; i += 32) {
            __m256 y0 = _mm256_loadu_ps(p + i), y1 = _mm256_loadu_ps(p + i + 8);
            __m256 y2 = _mm256_loadu_ps(p + i + 16), y3 = _mm256_loadu_ps(p + i + 24);
            _mm256_storeu_ps(p + i, _mm256_fmadd_ps(y0, a, b));
            _mm256_storeu_ps(p + i + 8, _mm256_fmadd_ps(y1, a, b));
            _mm256_storeu_ps(p + i + 16, _mm256_fmadd_ps(y2, a, b));
            _mm256_storeu_ps(p + i + 24, _mm256_fmadd_ps(y3, a, b));
        }
        for (long i = n32; i < n; i++) buf[i] = buf[i] * 0.999999f + 1e-6f;
        __asm__ volatile("" ::: "memory");
    }
    return (now() - t0) / sweeps;
}

/* The same sweeps split over `threads` threads, each sweeping its contiguous part (64-byte aligned
 * boundaries) `sweeps` times; all start from one barrier. Returns seconds per sweep: from the first
 * thread's start to the last thread's end, over `sweeps`. */
typedef struct {
    float *p;
    long n;
    int sweeps;
    pthread_barrier_t *bar;
    double t_start, t_end;
} rmw_arg;

static void *rmw_thread(void *vp) {
    rmw_arg *a = vp;
    pthread_barrier_wait(a->bar);
    a->t_start = now();
    limits_rmw(a->p, a->n, a->sweeps);
    a->t_end = now();
    return NULL;
}

double limits_rmw_threads(float *buf, long n, int sweeps, int threads) {
    if (!buf || threads < 1 || threads > 64 || n < 32L * threads || sweeps < 1) return -1;
    pthread_t tid[64];
    rmw_arg args[64];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)threads);
    for (int i = 0; i < threads; i++) {
        long lo = (n * i / threads) & ~15L, hi = i + 1 == threads ? n : (n * (i + 1) / threads) & ~15L;
        args[i] = (rmw_arg){buf + lo, hi - lo, sweeps, &bar, 0, 0};
    }
    for (int i = 1; i < threads; i++) {
        if (pthread_create(&tid[i], NULL, rmw_thread, &args[i]) != 0) {
            fprintf(stderr, "limits: pthread_create failed\n");
            exit(1);
        }
    }
    rmw_thread(&args[0]);
    for (int i = 1; i < threads; i++) pthread_join(tid[i], NULL);
    pthread_barrier_destroy(&bar);
    double t0 = args[0].t_start, t1 = args[0].t_end;
    for (int i = 1; i < threads; i++) {
        if (args[i].t_start < t0) t0 = args[i].t_start;
        if (args[i].t_end > t1) t1 = args[i].t_end;
    }
    return (t1 - t0) / sweeps;
}

/* ------------------------------------------------------------------------------------------------ */
/* hla_step loop from C                                                                              */
/* ------------------------------------------------------------------------------------------------ */
typedef struct {            /* = hla_tensor of include/hla.h */
    void *data;
    int32_t dtype;
    int32_t ndim;
    int64_t shape[4];
    int64_t strides[4];
} ht_tensor;

typedef struct {            /* = hla_config of include/hla.h (ABI 1.0) */
    uint32_t struct_size;
    int32_t op, masked, normalize;
    int64_t heads, kv_heads, dk, dv;
    double scale, decay, ridge, eps;
    int64_t chunk_size;
} ht_config;

typedef int (*config_init_fn)(ht_config *, size_t);
typedef int (*step_fn)(const ht_config *, const ht_tensor *, const ht_tensor *, const ht_tensor *,
                       const ht_tensor *, const ht_tensor *, const ht_tensor *);
typedef const char *(*err_fn)(void);

typedef struct {
    ht_config cfg;
    step_fn step;
    err_fn last_error;
    const float *q, *k, *v;
    float *out;
    int64_t ntok, H, Hkv, dk, dv, next;
    ht_tensor tq, tk, tv, to, ts;
} step_ctx;

static char step_err[512];

const char *limits_step_error(void) { return step_err; }

static void tensor(ht_tensor *t, void *data, int ndim, const int64_t *shape) {
    memset(t, 0, sizeof *t);
    t->data = data;
    t->dtype = 0; /* HLA_FLOAT32 */
    t->ndim = ndim;
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->strides[i] = s;
        s *= shape[i];
    }
}

/* The library at libpath (opened with RTLD_NOLOAD first, so the copy the Python extension loaded is the one
 * called), its entry point `fn` and hla_last_error, and a configuration from its hla_config_init with op, heads
 * and sizes set (masked, scale 1 unless set after). 0, or -1 with limits_step_error() naming the failure. */
static int open_config(const char *libpath, const char *fn, void **entry, err_fn *last_error, ht_config *cfg,
                       int op, int64_t H, int64_t Hkv, int64_t dk, int64_t dv) {
    void *lib = dlopen(libpath, RTLD_NOW | RTLD_NOLOAD);
    if (!lib) lib = dlopen(libpath, RTLD_NOW);
    if (!lib) {
        snprintf(step_err, sizeof step_err, "dlopen %s: %s", libpath, dlerror());
        return -1;
    }
    config_init_fn init = (config_init_fn)dlsym(lib, "hla_config_init");
    *entry = dlsym(lib, fn);
    *last_error = (err_fn)dlsym(lib, "hla_last_error");
    if (!init || !*entry || !*last_error) {
        snprintf(step_err, sizeof step_err, "dlsym: %s", dlerror());
        return -1;
    }
    if (init(cfg, sizeof *cfg) != 0) {
        snprintf(step_err, sizeof step_err, "hla_config_init: %s", (*last_error)());
        return -1;
    }
    cfg->op = op;
    cfg->heads = H;
    cfg->kv_heads = Hkv;
    cfg->dk = dk;
    cfg->dv = dv;
    return 0;
}

/* A context over caller memory: q [ntok, H, dk], k [ntok, Hkv, dk], v [ntok, Hkv, dv], out [H, dv],
 * state [1, n] (float32, C-contiguous), on the library at libpath (see open_config). */
void *limits_step_new(const char *libpath, int op, int64_t H, int64_t Hkv, int64_t dk, int64_t dv,
                      double scale, const float *q, const float *k, const float *v, int64_t ntok,
                      float *out, float *state, int64_t n) {
    step_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    void *entry;
    if (open_config(libpath, "hla_step", &entry, &c->last_error, &c->cfg, op, H, Hkv, dk, dv) != 0) {
        free(c);
        return NULL;
    }
    c->step = (step_fn)entry;
    c->cfg.scale = scale;
    c->q = q; c->k = k; c->v = v; c->out = out;
    c->ntok = ntok; c->H = H; c->Hkv = Hkv; c->dk = dk; c->dv = dv;
    int64_t sq[3] = {1, H, dk}, sk[3] = {1, Hkv, dk}, sv[3] = {1, Hkv, dv}, so[3] = {1, H, dv}, ss[2] = {1, n};
    tensor(&c->tq, (void *)q, 3, sq);
    tensor(&c->tk, (void *)k, 3, sk);
    tensor(&c->tv, (void *)v, 3, sv);
    tensor(&c->to, out, 3, so);
    tensor(&c->ts, state, 2, ss);
    return c;
}

/* nsteps calls of hla_step, token after token (wrapping around ntok); returns seconds, or -1 on an error
 * (limits_step_error() names it). */
double limits_step_run(void *ctx, int64_t nsteps) {
    step_ctx *c = ctx;
    if (!c) return -1;
    double t0 = now();
    for (int64_t i = 0; i < nsteps; i++) {
        int64_t t = c->next;
        c->next = (t + 1 == c->ntok) ? 0 : t + 1;
        c->tq.data = (void *)(c->q + t * c->H * c->dk);
        c->tk.data = (void *)(c->k + t * c->Hkv * c->dk);
        c->tv.data = (void *)(c->v + t * c->Hkv * c->dv);
        int st = c->step(&c->cfg, &c->tq, &c->tk, &c->tv, &c->to, &c->ts, NULL);
        if (st != 0) {
            snprintf(step_err, sizeof step_err, "hla_step: status %d: %s", st, c->last_error());
            return -1;
        }
    }
    return now() - t0;
}

void limits_step_free(void *ctx) { free(ctx); }

/* ------------------------------------------------------------------------------------------------ */
/* hla_forward from C                                                                                */
/* ------------------------------------------------------------------------------------------------ */
typedef int (*forward_fn)(const ht_config *, int32_t, const ht_tensor *, const ht_tensor *, const ht_tensor *,
                          const ht_tensor *, const ht_tensor *, const ht_tensor *, const ht_tensor *,
                          const ht_tensor *);

typedef struct {
    ht_config cfg;
    forward_fn forward;
    err_fn last_error;
    int32_t path;
    ht_tensor tq, tk, tv, to;
} forward_ctx;

/* A context over caller memory: q [B, T, H, dk], k [B, T, Hkv, dk], v [B, T, Hkv, dv], out [B, T, H, dv]
 * (float32, C-contiguous); masked, chunk 0 = automatic, path as hla_path (0 chunked, 1 serial, 2 scan), on the
 * library at libpath (see open_config). */
void *limits_forward_new(const char *libpath, int op, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t dk,
                         int64_t dv, double scale, int64_t chunk, int path, const float *q, const float *k,
                         const float *v, float *out) {
    forward_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    void *entry;
    if (open_config(libpath, "hla_forward", &entry, &c->last_error, &c->cfg, op, H, Hkv, dk, dv) != 0) {
        free(c);
        return NULL;
    }
    c->forward = (forward_fn)entry;
    c->cfg.scale = scale;
    c->cfg.chunk_size = chunk;
    c->path = path;
    int64_t sq[4] = {B, T, H, dk}, sk[4] = {B, T, Hkv, dk}, sv[4] = {B, T, Hkv, dv}, so[4] = {B, T, H, dv};
    tensor(&c->tq, (void *)q, 4, sq);
    tensor(&c->tk, (void *)k, 4, sk);
    tensor(&c->tv, (void *)v, 4, sv);
    tensor(&c->to, out, 4, so);
    return c;
}

/* One hla_forward call; returns seconds, or -1 on an error (limits_step_error() names it). */
double limits_forward_run(void *ctx) {
    forward_ctx *c = ctx;
    if (!c) return -1;
    double t0 = now();
    int st = c->forward(&c->cfg, c->path, &c->tq, &c->tk, &c->tv, &c->to, NULL, NULL, NULL, NULL);
    double t = now() - t0;
    if (st != 0) {
        snprintf(step_err, sizeof step_err, "hla_forward: status %d: %s", st, c->last_error());
        return -1;
    }
    return t;
}

void limits_forward_free(void *ctx) { free(ctx); }

/* ------------------------------------------------------------------------------------------------ */
/* hla_backward from C (examples/bench/ab.py's backward spec)                                        */
/* ------------------------------------------------------------------------------------------------ */
typedef int (*backward_fn)(const ht_config *, int32_t, const ht_tensor *, const ht_tensor *, const ht_tensor *,
                           const ht_tensor *, const ht_tensor *, const ht_tensor *, const ht_tensor *,
                           const ht_tensor *, const ht_tensor *, const ht_tensor *, const ht_tensor *);

typedef struct {
    ht_config cfg;
    backward_fn backward;
    err_fn last_error;
    ht_tensor tq, tk, tv, tdo, tdq, tdk, tdv;
} backward_ctx;

/* A context over caller memory (float32, C-contiguous): q, d_out, dq [B, T, H, d], k, v, dk, dv [B, T, H, d]
 * (H = Hkv, dk = dv = d); masked, chunked path, automatic chunk, on the library at libpath. */
void *limits_backward_new(const char *libpath, int op, int64_t B, int64_t T, int64_t H, int64_t d, double scale,
                          const float *q, const float *k, const float *v, const float *dout, float *dq, float *dk,
                          float *dv) {
    backward_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    void *entry;
    if (open_config(libpath, "hla_backward", &entry, &c->last_error, &c->cfg, op, H, H, d, d) != 0) {
        free(c);
        return NULL;
    }
    c->backward = (backward_fn)entry;
    c->cfg.scale = scale;
    int64_t sh[4] = {B, T, H, d};
    tensor(&c->tq, (void *)q, 4, sh);
    tensor(&c->tk, (void *)k, 4, sh);
    tensor(&c->tv, (void *)v, 4, sh);
    tensor(&c->tdo, (void *)dout, 4, sh);
    tensor(&c->tdq, dq, 4, sh);
    tensor(&c->tdk, dk, 4, sh);
    tensor(&c->tdv, dv, 4, sh);
    return c;
}

/* One hla_backward call (chunked path, no initial state, no d_final); returns seconds, or -1 on an error. */
double limits_backward_run(void *ctx) {
    backward_ctx *c = ctx;
    if (!c) return -1;
    double t0 = now();
    int st = c->backward(&c->cfg, 0, &c->tq, &c->tk, &c->tv, &c->tdo, &c->tdq, &c->tdk, &c->tdv, NULL, NULL, NULL,
                         NULL);
    double t = now() - t0;
    if (st != 0) {
        snprintf(step_err, sizeof step_err, "hla_backward: status %d: %s", st, c->last_error());
        return -1;
    }
    return t;
}

void limits_backward_free(void *ctx) { free(ctx); }

/* hla_state_elements of the masked configuration (op, H, Hkv, dk, dv) from the library at libpath; -1 on an
 * error (limits_step_error() names it). */
int64_t limits_state_elements(const char *libpath, int op, int64_t H, int64_t Hkv, int64_t dk, int64_t dv) {
    ht_config cfg;
    void *entry;
    err_fn last_error;
    int64_t n = -1;
    if (open_config(libpath, "hla_state_elements", &entry, &last_error, &cfg, op, H, Hkv, dk, dv) != 0) return -1;
    if (((int (*)(const ht_config *, int64_t *))entry)(&cfg, &n) != 0) {
        snprintf(step_err, sizeof step_err, "hla_state_elements: %s", last_error());
        return -1;
    }
    return n;
}
