/* fork() at any moment: a child forked while other threads are inside libhla can use libhla.
 *
 * THREADS threads loop hla_forward (chunked, float32, B = 1, T = 256 in one chunk, H = 4,
 * dk = dv = 32: enough work for the thread pool) on their own memory
 * while the main thread forks children (argv[1], default 500) at irregular moments. Each child arms
 * alarm(20) (a hang kills it), runs one hla_forward and one hla_step, checks their status and outputs,
 * and _exit(0)s. The parent reaps every child and counts any non-zero exit status or signal as a
 * failure; it also checks that its own threads' calls all succeeded.
 *
 * Without libhla's pthread_atfork quiescence a child can inherit a lock held by a thread that does
 * not exist in the child (the pool's, or one inside a library libhla calls) and hang in its first
 * call. libhla takes no lock of another library: its dense products are its own (Sources/HLA/Core/
 * Gemm.swift) and allocate nothing. Until they were, libhla called OpenBLAS, whose blas_memory_alloc
 * lock made about half the children hang when a test wrapper held it across each product; the gate
 * brought that to none. What remains to quiesce is libhla's pool, whose locks are held for a few
 * instructions per job, so a regression here shows as rare hangs: the loop runs hundreds of children.
 *
 * Usage: test_fork [children [alarm seconds]] (defaults 500 and 20). Built like test_abi (gcc -std=c99
 * -Wall -Wextra -pedantic -Werror, against the installed header and library), run plainly and under
 * ASan/UBSan. The last line printed is "N passed, M failed"; the exit status is non-zero on any
 * failure. */
#include <hla.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define THREADS 4
#define MAX_LIVE 32    /* children alive at once: hangs overlap instead of adding up */
#define B 1
#define T 256        /* also the chunk size */
#define H 4
#define D 32

typedef struct {
    float *q, *k, *v, *out, *state, *sq, *sk, *sv, *sout;
    int64_t n;
} work;

static hla_config g_cfg;
static int g_stop;          /* __atomic: the main thread asks the threads to stop */
static long g_calls;        /* __atomic: hla_forward calls the threads made */
static long g_call_fail;    /* __atomic: ... that did not return HLA_OK */

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static double unif(void)
{
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static void work_init(work *w)
{
    size_t tok = (size_t)B * T * H * D, i;
    w->q = xcalloc(tok, sizeof(float));
    w->k = xcalloc(tok, sizeof(float));
    w->v = xcalloc(tok, sizeof(float));
    w->out = xcalloc(tok, sizeof(float));
    for (i = 0; i < tok; i++) {
        w->q[i] = (float)(unif() - 0.5) * 0.3f;
        w->k[i] = (float)(unif() - 0.5) * 0.3f;
        w->v[i] = (float)(unif() - 0.5);
    }
    if (hla_state_elements(&g_cfg, &w->n) != HLA_OK) {
        fprintf(stderr, "hla_state_elements: %s\n", hla_last_error());
        exit(2);
    }
    w->state = xcalloc((size_t)w->n, sizeof(float));
    w->sq = xcalloc(H * D, sizeof(float));
    w->sk = xcalloc(H * D, sizeof(float));
    w->sv = xcalloc(H * D, sizeof(float));
    w->sout = xcalloc(H * D, sizeof(float));
    for (i = 0; i < H * D; i++) {
        w->sq[i] = 0.1f;
        w->sk[i] = 0.2f;
        w->sv[i] = 0.3f;
    }
}

static void work_free(work *w)
{
    free(w->q); free(w->k); free(w->v); free(w->out); free(w->state);
    free(w->sq); free(w->sk); free(w->sv); free(w->sout);
}

static hla_tensor tens(float *p, int nd, int64_t s0, int64_t s1, int64_t s2, int64_t s3)
{
    hla_tensor t;
    int64_t sh[4];
    sh[0] = s0; sh[1] = s1; sh[2] = s2; sh[3] = s3;
    if (hla_tensor_init(&t, p, HLA_FLOAT32, nd, sh, NULL) != HLA_OK) memset(&t, 0, sizeof t);
    return t;
}

static hla_status forward(work *w)
{
    hla_tensor q = tens(w->q, 4, B, T, H, D), k = tens(w->k, 4, B, T, H, D), v = tens(w->v, 4, B, T, H, D);
    hla_tensor o = tens(w->out, 4, B, T, H, D);
    return hla_forward(&g_cfg, HLA_PATH_CHUNKED, &q, &k, &v, &o, NULL, NULL, NULL, NULL);
}

static hla_status step(work *w)
{
    hla_tensor q = tens(w->sq, 3, 1, H, D, 0), k = tens(w->sk, 3, 1, H, D, 0), v = tens(w->sv, 3, 1, H, D, 0);
    hla_tensor o = tens(w->sout, 3, 1, H, D, 0), s = tens(w->state, 2, 1, w->n, 0, 0);
    return hla_step(&g_cfg, &q, &k, &v, &o, &s, NULL);
}

static int all_finite(const float *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (!isfinite(p[i])) return 0;
    return 1;
}

static void *loop(void *vp)
{
    work *w = vp;
    while (!__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE)) {
        if (forward(w) != HLA_OK) __atomic_add_fetch(&g_call_fail, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&g_calls, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

/* The child: one forward and one step, on memory prepared before the fork. */
static unsigned g_alarm = 20;

static void child(work *w)
{
    alarm(g_alarm);
    if (forward(w) != HLA_OK) _exit(3);
    if (!all_finite(w->out, (size_t)B * T * H * D)) _exit(4);
    if (step(w) != HLA_OK) _exit(5);
    if (!all_finite(w->sout, H * D)) _exit(6);
    _exit(0);
}

int main(int argc, char **argv)
{
    int children = argc > 1 ? atoi(argv[1]) : 500, live = 0, forked = 0, passed = 0, failed = 0, hung = 0, i;
    int started[THREADS];
    pthread_t th[THREADS];
    work tw[THREADS], cw;
    struct timespec t0, t1;

    if (argc > 2) g_alarm = (unsigned)atoi(argv[2]);
    hla_config_init(&g_cfg, sizeof g_cfg);
    g_cfg.heads = H;
    g_cfg.dk = D;
    g_cfg.dv = D;
    g_cfg.decay = 0.99;
    /* One chunk of 256 tokens: products of 256 x 256 x 32 and more, long enough that forks land inside them. */
    g_cfg.chunk_size = T;
    for (i = 0; i < THREADS; i++) work_init(&tw[i]);
    work_init(&cw);
    if (forward(&cw) != HLA_OK || step(&cw) != HLA_OK) {
        printf("FAIL warm-up call: %s\n0 passed, 1 failed\n", hla_last_error());
        return 1;
    }
    for (i = 0; i < THREADS; i++) started[i] = pthread_create(&th[i], NULL, loop, &tw[i]) == 0;
    while (__atomic_load_n(&g_calls, __ATOMIC_RELAXED) < THREADS) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (forked < children || live > 0) {
        int st;
        pid_t pid;
        if (forked < children && live < MAX_LIVE) {
            struct timespec ts = {0, (long)(unif() * 300000.0)};   /* 0-300 us: fork at irregular moments */
            nanosleep(&ts, NULL);
            pid = fork();
            if (pid == 0) child(&cw);
            if (pid < 0) {
                printf("FAIL fork: %s\n", strerror(errno));
                failed++;
                forked = children;
                continue;
            }
            forked++;
            live++;
            continue;
        }
        pid = waitpid(-1, &st, 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            printf("FAIL waitpid: %s\n", strerror(errno));
            failed += live;
            break;
        }
        live--;
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            passed++;
        } else {
            failed++;
            if (WIFSIGNALED(st)) {
                if (WTERMSIG(st) == SIGALRM) hung++;
                printf("FAIL child %d killed by signal %d%s\n", (int)pid, WTERMSIG(st),
                       WTERMSIG(st) == SIGALRM ? " (hung: alarm)" : "");
            } else {
                printf("FAIL child %d exited with status %d\n", (int)pid, WEXITSTATUS(st));
            }
            fflush(stdout);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    __atomic_store_n(&g_stop, 1, __ATOMIC_RELEASE);
    for (i = 0; i < THREADS; i++) {
        if (started[i]) {
            pthread_join(th[i], NULL);
        } else {
            printf("FAIL pthread_create\n");
            failed++;
        }
    }
    if (g_call_fail) {
        printf("FAIL %ld of the threads' hla_forward calls failed\n", g_call_fail);
        failed++;
    }
    for (i = 0; i < THREADS; i++) work_free(&tw[i]);
    work_free(&cw);
    printf("test_fork: %d children forked while %d threads ran %ld hla_forward calls, %.1f s: %d ok, %d hung\n",
           forked, THREADS, g_calls, (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec),
           passed, hung);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
