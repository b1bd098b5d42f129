/* Allocation failure comes back as a status: libhla under a tight address-space limit.
 *
 * Each case runs in a forked child that lowers RLIMIT_AS to its current mapped size plus LIMIT_MB,
 * arms alarm(ALARM_S) (a hang kills it) and then:
 *   1. hla_forward, chunked, with chunk_size = 1024 (the longest; the chunk's n x n blocks need more
 *      scratch than the limit leaves):
 *      must return HLA_ERR_OUT_OF_MEMORY with a message naming memory, and leave `out` untouched;
 *   2. the same forward with chunk_size = 64 (well under 1 MiB of scratch): must return HLA_OK and agree with the
 *      serial path computed before the limit was set;
 *   3. the scan path and hla_summarize under the limit: HLA_OK or HLA_ERR_OUT_OF_MEMORY (the scan path
 *      holds 64 chunk summaries, which for hla3 exceed the limit), never anything else;
 *   4. exit normally (no thread of any library may be left retrying an allocation).
 * The parent fails on a non-zero exit, a signal (the alarm included) or a wrong status.
 *
 * Before libhla owned its dense products, OpenBLAS's blas_memory_alloc retried a failed mmap forever,
 * so a chunked call under `prlimit --as` spun at 100% CPU and never returned: this test hung there.
 * Not run under valgrind or ASan (both reserve far more address space than the limit allows). */
#include <hla.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define T 8192
#define H 2
#define D 64
#define LIMIT_MB 12
#define ALARM_S 60

static int fails;

static void fail(const char *what)
{
    printf("FAIL %s (last error: %s)\n", what, hla_last_error());
    fails++;
}

static long mapped_bytes(void)
{
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    if (fscanf(f, "%ld", &pages) != 1) pages = -1;
    fclose(f);
    return pages < 0 ? -1 : pages * sysconf(_SC_PAGESIZE);
}

static hla_status run(const hla_config *cfg, hla_path path, float *q, float *k, float *v, float *o)
{
    int64_t sh[4] = {1, T, H, D};
    hla_tensor tq, tk, tv, to;
    hla_tensor_init(&tq, q, HLA_FLOAT32, 4, sh, NULL);
    hla_tensor_init(&tk, k, HLA_FLOAT32, 4, sh, NULL);
    hla_tensor_init(&tv, v, HLA_FLOAT32, 4, sh, NULL);
    hla_tensor_init(&to, o, HLA_FLOAT32, 4, sh, NULL);
    return hla_forward(cfg, path, &tq, &tk, &tv, &to, NULL, NULL, NULL, NULL);
}

static int child(hla_op op)
{
    size_t n = (size_t)T * H * D, i;
    float *q = malloc(n * sizeof *q), *k = malloc(n * sizeof *k), *v = malloc(n * sizeof *v);
    float *o = malloc(n * sizeof *o), *ref = malloc(n * sizeof *ref);
    hla_config cfg;
    struct rlimit rl;
    long now;
    double err = 0, mag = 0;
    hla_status st;
    if (!q || !k || !v || !o || !ref) { puts("FAIL setup: out of memory"); return 2; }
    for (i = 0; i < n; i++) {
        q[i] = (float)sin(0.37 * (double)i) * 0.125f;
        k[i] = (float)cos(0.91 * (double)i) * 0.125f;
        v[i] = (float)sin(1.73 * (double)i + 0.5);
    }
    hla_config_init(&cfg, sizeof cfg);
    cfg.op = op;
    cfg.heads = H;
    cfg.dk = D;
    cfg.dv = D;
    cfg.decay = 0.999;
    if (run(&cfg, HLA_PATH_SERIAL, q, k, v, ref) != HLA_OK) { fail("serial path before the limit"); return 1; }

    now = mapped_bytes();
    if (now <= 0) { puts("FAIL reading /proc/self/statm"); return 2; }
    rl.rlim_cur = rl.rlim_max = (rlim_t)now + (rlim_t)LIMIT_MB * 1024 * 1024;
    if (setrlimit(RLIMIT_AS, &rl) != 0) { puts("FAIL setrlimit"); return 2; }

    cfg.chunk_size = 1024;
    memset(o, 0x7f, n * sizeof *o);
    if (run(&cfg, HLA_PATH_CHUNKED, q, k, v, o) != HLA_ERR_OUT_OF_MEMORY) fail("chunk of 1024: expected HLA_ERR_OUT_OF_MEMORY");
    else if (!strstr(hla_last_error(), "allocate")) fail("chunk of 1024: message does not say what failed");
    for (i = 0; i < n; i++) if (memcmp(&o[i], &(unsigned){0x7f7f7f7fu}, sizeof o[i]) != 0) { fail("out written on failure"); break; }

    cfg.chunk_size = 64;
    if (run(&cfg, HLA_PATH_CHUNKED, q, k, v, o) != HLA_OK) fail("chunk of 64 under the limit");
    for (i = 0; i < n; i++) {
        double e = fabs((double)o[i] - (double)ref[i]);
        if (!(e <= err)) err = e;   /* NaN-safe maximum */
        if (fabs((double)ref[i]) > mag) mag = fabs((double)ref[i]);
    }
    if (!(err <= 2e-3 * (mag > 1 ? mag : 1))) fail("chunk of 64 under the limit: disagrees with serial");
    st = run(&cfg, HLA_PATH_SCAN, q, k, v, o);
    if (st != HLA_OK && st != HLA_ERR_OUT_OF_MEMORY) fail("scan path under the limit: neither OK nor out of memory");
    {
        int64_t sh[4] = {1, T, H, D};
        int64_t m = 0, len = 0;
        float *s = hla_summary_elements(&cfg, &m) == HLA_OK ? malloc((size_t)(m > 0 ? m : 1) * sizeof *s) : NULL;
        hla_tensor tq, tk, tv, ts, tl;
        int64_t ssh[2] = {1, m}, lsh[1] = {1};
        if (!s) { fail("summary buffer under the limit"); }
        else {
            hla_tensor_init(&tq, q, HLA_FLOAT32, 4, sh, NULL);
            hla_tensor_init(&tk, k, HLA_FLOAT32, 4, sh, NULL);
            hla_tensor_init(&tv, v, HLA_FLOAT32, 4, sh, NULL);
            hla_tensor_init(&ts, s, HLA_FLOAT32, 2, ssh, NULL);
            hla_tensor_init(&tl, &len, HLA_INT64, 1, lsh, NULL);
            st = hla_summarize(&cfg, &tq, &tk, &tv, NULL, &ts, &tl);
            if (st == HLA_OK ? len != T : st != HLA_ERR_OUT_OF_MEMORY) fail("summarize under the limit");
            free(s);
        }
    }
    printf("%s: limit %d MiB above %ld MiB mapped, max |chunked - serial| %.2e\n",
           op == HLA_OP_HLA2 ? "hla2" : op == HLA_OP_AHLA ? "ahla" : "hla3", LIMIT_MB, now >> 20, err);
    fflush(stdout);
    return fails ? 1 : 0;
}

int main(void)
{
    hla_op ops[3] = {HLA_OP_HLA2, HLA_OP_AHLA, HLA_OP_HLA3};
    int i, bad = 0;
    for (i = 0; i < 3; i++) {
        int st = 0;
        pid_t pid;
        fflush(stdout);
        pid = fork();
        if (pid < 0) { perror("fork"); return 2; }
        if (pid == 0) {
            alarm(ALARM_S);
            _exit(child(ops[i]));
        }
        if (waitpid(pid, &st, 0) != pid) { perror("waitpid"); return 2; }
        if (WIFSIGNALED(st)) {
            printf("FAIL op %d: child killed by signal %d%s\n", i, WTERMSIG(st),
                   WTERMSIG(st) == SIGALRM ? " (hung: an allocation failure did not come back)" : "");
            bad++;
        } else if (WEXITSTATUS(st) != 0) {
            printf("FAIL op %d: child exit %d\n", i, WEXITSTATUS(st));
            bad++;
        }
    }
    printf("%d passed, %d failed\n", 3 - bad, bad);
    return bad ? 1 : 0;
}
