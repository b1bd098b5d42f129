/* Threading test of libhla, for ThreadSanitizer (the top Makefile's `make tsan`: the library built with
 * swiftc -sanitize=thread, this file with clang -fsanitize=thread, run with HLA_NUM_THREADS=4 and
 * TSAN_OPTIONS=halt_on_error=1:die_after_fork=0, so any data race TSan sees fails the run). Tests/c's
 * Makefile also runs it plainly (gcc -std=c99 -pedantic, against the installed library).
 *
 *  1. rows: host threads step distinct rows of one shared [slots, n] cache at once (hla_step with rows),
 *     each row ending bitwise equal to the same steps run serially; small steps, and steps large enough
 *     for the pool (16 heads at d = 64, with 16 kv heads and with one);
 *  2. forward: host threads run hla_forward (and hla_summarize + hla_summary_combine) on distinct
 *     memory at once, every result bitwise equal to a serial run: small calls (each on its calling thread,
 *     Paths.worthThreads), then calls large enough for the pool (one sequence of 1024 tokens over 8 kv
 *     heads): one host thread holds the pool while the other finds it busy and runs its shares on threads
 *     of its own, and in both the threads share the bands' chunks (Sources/HLA/Engine/BandShare.swift: a
 *     thread done with its band takes heads of another's);
 *  3. pool: two threads alternate short and long pool jobs, so each keeps finding the pool busy or
 *     free, its workers hot or asleep;
 *  4. fork: the threads loop hla_forward while the main thread forks children (the pthread_atfork
 *     handlers, the fork gate and the pool's restart in the child); each child runs hla_forward and
 *     hla_step and must exit 0 within alarm(20).
 * The last line printed is "N passed, M failed"; the exit status is non-zero on any failure. */
#define _POSIX_C_SOURCE 200809L
#include <hla.h>

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NT 4   /* host threads */

static long g_pass, g_fail;

static void check(int ok, const char *fmt, ...)
{
    va_list ap;
    if (ok) {
        g_pass++;
        return;
    }
    g_fail++;
    printf("FAIL ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* Deterministic input values: the same (seed, i) always gives the same float. */
static float val(unsigned seed, size_t i, float amp)
{
    uint64_t z = (uint64_t)seed * 0x9E3779B97F4A7C15ull + (uint64_t)i * 0xBF58476D1CE4E5B9ull + 1;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return amp * (float)((double)(z >> 11) * (1.0 / 9007199254740992.0) - 0.5);
}

static float *filled(size_t n, unsigned seed, float amp)
{
    float *p = xcalloc(n, sizeof(float));
    size_t i;
    for (i = 0; i < n; i++) p[i] = val(seed, i, amp);
    return p;
}

static hla_tensor tens(void *p, int dt, int nd, int64_t s0, int64_t s1, int64_t s2, int64_t s3)
{
    hla_tensor t;
    int64_t sh[4];
    sh[0] = s0; sh[1] = s1; sh[2] = s2; sh[3] = s3;
    if (hla_tensor_init(&t, p, dt, nd, sh, NULL) != HLA_OK) memset(&t, 0, sizeof t);
    return t;
}

static hla_config make_cfg(int op, int64_t H, int64_t d)
{
    hla_config c;
    hla_config_init(&c, sizeof c);
    c.op = op;
    c.heads = H;
    c.dk = d;
    c.dv = d;
    c.decay = 0.97;
    return c;
}

static int64_t state_n(const hla_config *c)
{
    int64_t n = 0;
    hla_state_elements(c, &n);
    return n;
}

/* ---------------------------------------------------------------------------------------------- */
/* 1. distinct rows of one cache, stepped concurrently                                             */

#define SLOTS 8
#define STEPS 40
#define SH_MAX 16
#define SD_MAX 64

typedef struct {
    hla_config cfg;
    float *cache;      /* [SLOTS, n], shared */
    int64_t n;
    int first;         /* rows first and first + NT */
    hla_status st;
} rows_arg;

/* Step rows {first, first + NT} of cache for STEPS tokens; token t of row r has seed r * 1000 + t. */
static hla_status step_rows(const hla_config *c, float *cache, int64_t n, int first)
{
    int64_t H = c->heads, G = c->kv_heads ? c->kv_heads : c->heads, D = c->dk;
    float *q = xcalloc((size_t)(2 * H * D), sizeof(float)), *o = xcalloc((size_t)(2 * H * D), sizeof(float));
    float *k = xcalloc((size_t)(2 * G * D), sizeof(float)), *v = xcalloc((size_t)(2 * G * D), sizeof(float));
    int64_t rows[2];
    int t, j, i;
    hla_status st = HLA_OK;
    hla_tensor tq, tk, tv, to, ts, tr;
    rows[0] = first;
    rows[1] = first + NT;
    tq = tens(q, HLA_FLOAT32, 3, 2, H, D, 0);
    tk = tens(k, HLA_FLOAT32, 3, 2, G, D, 0);
    tv = tens(v, HLA_FLOAT32, 3, 2, G, D, 0);
    to = tens(o, HLA_FLOAT32, 3, 2, H, D, 0);
    ts = tens(cache, HLA_FLOAT32, 2, SLOTS, n, 0, 0);
    tr = tens(rows, HLA_INT64, 1, 2, 0, 0, 0);
    for (t = 0; t < STEPS && st == HLA_OK; t++) {
        for (j = 0; j < 2; j++) {
            unsigned seed = (unsigned)(rows[j] * 1000 + t);
            for (i = 0; i < H * D; i++) q[j * H * D + i] = val(seed, (size_t)i, 0.5f);
            for (i = 0; i < G * D; i++) {
                k[j * G * D + i] = val(seed + 7919u, (size_t)i, 0.5f);
                v[j * G * D + i] = val(seed + 104729u, (size_t)i, 1.0f);
            }
        }
        st = hla_step(c, &tq, &tk, &tv, &to, &ts, &tr);
    }
    free(q); free(k); free(v); free(o);
    return st;
}

static void *rows_thread(void *vp)
{
    rows_arg *a = vp;
    a->st = step_rows(&a->cfg, a->cache, a->n, a->first);
    return NULL;
}

/* Small steps (on the calling thread) and steps of 16 heads at d = 64, with 16 kv heads and with one
 * (large enough for the library to put them on its pool, which the host threads then compete for). */
static void test_rows(void)
{
    static const int64_t shapes[3][3] = {{2, 2, 8}, {SH_MAX, SH_MAX, SD_MAX}, {SH_MAX, 1, SD_MAX}};
    int op, sh;
    for (sh = 0; sh < 3; sh++)
    for (op = HLA_OP_HLA2; op <= HLA_OP_HLA3; op++) {
        hla_config c = make_cfg(op, shapes[sh][0], shapes[sh][2]);
        int64_t n;
        float *serial, *shared;
        pthread_t th[NT];
        int started[NT];
        rows_arg a[NT];
        int i, ok = 1;
        c.kv_heads = shapes[sh][1];
        n = state_n(&c);
        serial = xcalloc((size_t)(SLOTS * n), sizeof(float));
        shared = xcalloc((size_t)(SLOTS * n), sizeof(float));
        for (i = 0; i < NT; i++) ok &= step_rows(&c, serial, n, i) == HLA_OK;
        check(ok, "rows op %d H %d: serial steps failed: %s", op, (int)c.heads, hla_last_error());
        for (i = 0; i < NT; i++) {
            a[i].cfg = c;
            a[i].cache = shared;
            a[i].n = n;
            a[i].first = i;
            a[i].st = (hla_status)-1;
            started[i] = pthread_create(&th[i], NULL, rows_thread, &a[i]) == 0;
        }
        for (i = 0; i < NT; i++) {
            if (started[i]) pthread_join(th[i], NULL);
            check(started[i] && a[i].st == HLA_OK, "rows op %d H %d thread %d: status %s", op, (int)c.heads, i,
                  hla_status_string(a[i].st));
        }
        check(memcmp(serial, shared, (size_t)(SLOTS * n) * sizeof(float)) == 0,
              "rows op %d H %d Hkv %d: concurrent steps on distinct rows differ from the serial steps", op,
              (int)c.heads, (int)c.kv_heads);
        free(serial);
        free(shared);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* 2-4. whole-sequence work on distinct memory                                                      */

typedef struct {
    hla_config cfg;
    int64_t B, T, H, D, n, m;
    float *q, *k, *v, *out, *fin, *sum, *sum2, *comb;
    int64_t *len, *len2, *lenc;
    float *want_out, *want_fin, *want_comb;   /* serial results */
    int reps;
    long pause_ns;                            /* max random pause between calls (pool workers fall asleep) */
    unsigned seed;
    int fails;
} job;

static void job_init(job *j, int op, int64_t B, int64_t T, int64_t H, int64_t D, unsigned seed)
{
    size_t tok = (size_t)(B * T * H * D);
    memset(j, 0, sizeof *j);
    j->cfg = make_cfg(op, H, D);
    j->B = B; j->T = T; j->H = H; j->D = D;
    j->seed = seed;
    j->n = state_n(&j->cfg);
    hla_summary_elements(&j->cfg, &j->m);
    j->q = filled(tok, seed, 0.4f);
    j->k = filled(tok, seed + 1, 0.4f);
    j->v = filled(tok, seed + 2, 1.0f);
    j->out = xcalloc(tok, sizeof(float));
    j->fin = xcalloc((size_t)(B * j->n), sizeof(float));
    j->sum = xcalloc((size_t)(B * j->m), sizeof(float));
    j->sum2 = xcalloc((size_t)(B * j->m), sizeof(float));
    j->comb = xcalloc((size_t)(B * j->m), sizeof(float));
    j->len = xcalloc((size_t)B, sizeof(int64_t));
    j->len2 = xcalloc((size_t)B, sizeof(int64_t));
    j->lenc = xcalloc((size_t)B, sizeof(int64_t));
}

static void job_free(job *j)
{
    free(j->q); free(j->k); free(j->v); free(j->out); free(j->fin);
    free(j->sum); free(j->sum2); free(j->comb); free(j->len); free(j->len2); free(j->lenc);
    free(j->want_out); free(j->want_fin); free(j->want_comb);
}

/* hla_forward of the whole sequences (final state too), then the summaries of the two halves of the
 * tokens combined. Views of the halves: the same buffers with T/2 tokens and the full strides. */
static hla_status job_run(job *j)
{
    int64_t B = j->B, T = j->T, H = j->H, D = j->D, h = T / 2;
    int64_t st4[4], sh4[4];
    hla_tensor q = tens(j->q, HLA_FLOAT32, 4, B, T, H, D), k = tens(j->k, HLA_FLOAT32, 4, B, T, H, D);
    hla_tensor v = tens(j->v, HLA_FLOAT32, 4, B, T, H, D), o = tens(j->out, HLA_FLOAT32, 4, B, T, H, D);
    hla_tensor f = tens(j->fin, HLA_FLOAT32, 2, B, j->n, 0, 0);
    hla_tensor s1 = tens(j->sum, HLA_FLOAT32, 2, B, j->m, 0, 0), s2 = tens(j->sum2, HLA_FLOAT32, 2, B, j->m, 0, 0);
    hla_tensor sc = tens(j->comb, HLA_FLOAT32, 2, B, j->m, 0, 0);
    hla_tensor l1 = tens(j->len, HLA_INT64, 1, B, 0, 0, 0), l2 = tens(j->len2, HLA_INT64, 1, B, 0, 0, 0);
    hla_tensor lc = tens(j->lenc, HLA_INT64, 1, B, 0, 0, 0);
    hla_tensor qa, ka, va, qb, kb, vb;
    hla_status st;
    st = hla_forward(&j->cfg, HLA_PATH_CHUNKED, &q, &k, &v, &o, NULL, NULL, &f, NULL);
    if (st != HLA_OK) return st;
    sh4[0] = B; sh4[1] = h; sh4[2] = H; sh4[3] = D;
    st4[0] = T * H * D; st4[1] = H * D; st4[2] = D; st4[3] = 1;
    hla_tensor_init(&qa, j->q, HLA_FLOAT32, 4, sh4, st4);
    hla_tensor_init(&ka, j->k, HLA_FLOAT32, 4, sh4, st4);
    hla_tensor_init(&va, j->v, HLA_FLOAT32, 4, sh4, st4);
    sh4[1] = T - h;
    hla_tensor_init(&qb, j->q + h * H * D, HLA_FLOAT32, 4, sh4, st4);
    hla_tensor_init(&kb, j->k + h * H * D, HLA_FLOAT32, 4, sh4, st4);
    hla_tensor_init(&vb, j->v + h * H * D, HLA_FLOAT32, 4, sh4, st4);
    st = hla_summarize(&j->cfg, &qa, &ka, &va, NULL, &s1, &l1);
    if (st != HLA_OK) return st;
    st = hla_summarize(&j->cfg, &qb, &kb, &vb, NULL, &s2, &l2);
    if (st != HLA_OK) return st;
    return hla_summary_combine(&j->cfg, &s1, &l1, &s2, &l2, &sc, &lc);
}

static float *fdup(const float *p, size_t n)
{
    float *q = xcalloc(n, sizeof(float));
    memcpy(q, p, n * sizeof(float));
    return q;
}

/* The serial results, computed while no other thread calls the library. */
static void job_expect(job *j)
{
    size_t tok = (size_t)(j->B * j->T * j->H * j->D);
    hla_status st = job_run(j);
    check(st == HLA_OK, "serial run: %s", hla_last_error());
    j->want_out = fdup(j->out, tok);
    j->want_fin = fdup(j->fin, (size_t)(j->B * j->n));
    j->want_comb = fdup(j->comb, (size_t)(j->B * j->m));
}

static int job_matches(const job *j)
{
    size_t tok = (size_t)(j->B * j->T * j->H * j->D);
    return memcmp(j->out, j->want_out, tok * sizeof(float)) == 0
        && memcmp(j->fin, j->want_fin, (size_t)(j->B * j->n) * sizeof(float)) == 0
        && memcmp(j->comb, j->want_comb, (size_t)(j->B * j->m) * sizeof(float)) == 0;
}

static int g_stop;   /* __atomic */

static void pause_random(job *j)
{
    if (j->pause_ns > 0) {
        struct timespec ts;
        j->seed = j->seed * 1103515245u + 12345u;
        ts.tv_sec = 0;
        ts.tv_nsec = (long)((j->seed >> 8) % (unsigned)j->pause_ns);
        nanosleep(&ts, NULL);
    }
}

/* reps > 0: that many runs; reps = 0: until g_stop. */
static void *job_thread(void *vp)
{
    job *j = vp;
    int r;
    for (r = 0; j->reps == 0 ? !__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE) : r < j->reps; r++) {
        memset(j->out, 0, (size_t)(j->B * j->T * j->H * j->D) * sizeof(float));
        if (job_run(j) != HLA_OK || !job_matches(j)) j->fails++;
        pause_random(j);
    }
    return NULL;
}

static void run_jobs(job *jobs, int count, const char *what)
{
    pthread_t th[NT];
    int started[NT], i;
    for (i = 0; i < count; i++) started[i] = pthread_create(&th[i], NULL, job_thread, &jobs[i]) == 0;
    for (i = 0; i < count; i++) {
        if (started[i]) pthread_join(th[i], NULL);
        check(started[i], "%s: pthread_create failed", what);
        check(jobs[i].fails == 0, "%s: thread %d: %d of %d runs failed or differ from the serial run", what, i,
              jobs[i].fails, jobs[i].reps);
    }
}

static void test_forward(void)
{
    job jobs[NT];
    int i;
    for (i = 0; i < NT; i++) {
        /* B x kv heads = 4 units: every call wants the pool */
        job_init(&jobs[i], i % 3, 2, 64, 2, 16, 100u + (unsigned)i);
        job_expect(&jobs[i]);
        jobs[i].reps = 4;
    }
    run_jobs(jobs, NT, "concurrent forward");
    for (i = 0; i < NT; i++) job_free(&jobs[i]);
}

static void test_shared_bands(void)
{
    job jobs[2];
    int i;
    for (i = 0; i < 2; i++) {
        /* 1024 tokens x 8 heads x (32 + 32) x (32 + 32) multiply-adds: pooled, 4 bands of 2 kv heads */
        job_init(&jobs[i], i == 0 ? HLA_OP_HLA3 : HLA_OP_AHLA, 1, 1024, 8, 32, 500u + (unsigned)i);
        job_expect(&jobs[i]);
        jobs[i].reps = 3;
    }
    run_jobs(jobs, 2, "shared bands");
    for (i = 0; i < 2; i++) job_free(&jobs[i]);
}

static void test_pool(void)
{
    job jobs[2];
    job_init(&jobs[0], HLA_OP_HLA2, 4, 8, 1, 8, 200u);     /* short jobs */
    job_init(&jobs[1], HLA_OP_HLA2, 2, 128, 2, 16, 201u);  /* long jobs */
    job_expect(&jobs[0]);
    job_expect(&jobs[1]);
    jobs[0].reps = 40;
    jobs[0].pause_ns = 400000;   /* sometimes past the pool's 200 us spin: its workers sleep */
    jobs[1].reps = 6;
    jobs[1].pause_ns = 400000;
    run_jobs(jobs, 2, "pool busy/free");
    job_free(&jobs[0]);
    job_free(&jobs[1]);
}

/* ---------------------------------------------------------------------------------------------- */
/* 4. fork while the threads compute                                                                */

static void fork_child(job *j)
{
    float q[2 * 16], k[2 * 16], v[2 * 16], o[2 * 16], *state;
    hla_tensor tq, tk, tv, to, ts;
    int i;
    alarm(20);
    if (job_run(j) != HLA_OK || !job_matches(j)) _exit(3);
    state = xcalloc((size_t)j->n, sizeof(float));
    for (i = 0; i < 2 * 16; i++) {
        q[i] = 0.1f;
        k[i] = 0.2f;
        v[i] = 0.3f;
    }
    tq = tens(q, HLA_FLOAT32, 3, 1, 2, 16, 0);
    tk = tens(k, HLA_FLOAT32, 3, 1, 2, 16, 0);
    tv = tens(v, HLA_FLOAT32, 3, 1, 2, 16, 0);
    to = tens(o, HLA_FLOAT32, 3, 1, 2, 16, 0);
    ts = tens(state, HLA_FLOAT32, 2, 1, j->n, 0, 0);
    if (hla_step(&j->cfg, &tq, &tk, &tv, &to, &ts, NULL) != HLA_OK) _exit(4);
    for (i = 0; i < 2 * 16; i++)
        if (!isfinite(o[i])) _exit(5);
    _exit(0);
}

static void test_fork(int children)
{
    job jobs[NT], cj;
    pthread_t th[NT];
    int started[NT], i, ok = 0, bad = 0;
    for (i = 0; i < NT; i++) {
        job_init(&jobs[i], HLA_OP_HLA2, 2, 64, 2, 16, 300u + (unsigned)i);
        job_expect(&jobs[i]);
        jobs[i].reps = 0;
    }
    job_init(&cj, HLA_OP_HLA2, 2, 64, 2, 16, 400u);
    job_expect(&cj);
    __atomic_store_n(&g_stop, 0, __ATOMIC_RELEASE);
    for (i = 0; i < NT; i++) started[i] = pthread_create(&th[i], NULL, job_thread, &jobs[i]) == 0;
    for (i = 0; i < children; i++) {
        int st;
        pid_t pid;
        struct timespec ts;
        ts.tv_sec = 0;
        ts.tv_nsec = (long)(val(500u, (size_t)i, 1.0f) * 400000.0f) + 200000;
        nanosleep(&ts, NULL);
        pid = fork();
        if (pid == 0) fork_child(&cj);
        if (pid < 0) {
            check(0, "fork failed");
            break;
        }
        while (waitpid(pid, &st, 0) < 0) {}
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            ok++;
        } else {
            bad++;
            check(0, "fork: child %d %s %d", i, WIFSIGNALED(st) ? "killed by signal" : "exited with status",
                  WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        }
    }
    __atomic_store_n(&g_stop, 1, __ATOMIC_RELEASE);
    for (i = 0; i < NT; i++) {
        if (started[i]) pthread_join(th[i], NULL);
        check(started[i], "fork: pthread_create failed");
        check(jobs[i].fails == 0, "fork: thread %d: %d runs failed or differ from the serial run", i, jobs[i].fails);
    }
    printf("fork: %d children ok, %d failed\n", ok, bad);
    check(ok == children, "fork: %d of %d children failed", children - ok, children);
    for (i = 0; i < NT; i++) job_free(&jobs[i]);
    job_free(&cj);
}

int main(int argc, char **argv)
{
    int children = argc > 1 ? atoi(argv[1]) : 50;
    const char *nt = getenv("HLA_NUM_THREADS");
    printf("libhla %s: threading test (HLA_NUM_THREADS=%s)\n", hla_version(), nt ? nt : "unset");
    test_rows();
    printf("rows: done\n");
    test_forward();
    test_shared_bands();
    printf("concurrent forward, shared bands: done\n");
    test_pool();
    printf("pool busy/free: done\n");
    test_fork(children);
    printf("%ld passed, %ld failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
