/* Continuous-batching decode with libhla: the cache is the host's own [slots, n] float32 buffer.
 *
 * Requests arrive over time and are admitted into free slots of an 8-slot cache; every step feeds one
 * token of each live sequence to hla_step with a rows tensor naming their slots, so only the live rows
 * are read and advanced. A finished sequence's slot is zeroed with hla_state_reset_rows and handed to
 * the next request; now and then a live sequence forks (beam search, speculative decoding) into a
 * free slot with hla_state_copy_rows and both continue with their own tokens.
 *
 * Afterwards every sequence is run alone (hla_forward over its whole token stream, forks included
 * with their parent's prefix) and its outputs are compared with those of the batched decode: the
 * max-norm relative error must stay within 1e-4. Prints the decode throughput; exits non-zero on a
 * disagreement or an error.
 *
 *   build/decode [requests]        (default 24) */
#define _POSIX_C_SOURCE 200809L
#include <hla.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { SLOTS = 8, H = 8, HKV = 2, DK = 64, DV = 64, MAXREQ = 256 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t mix(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A sequence: its own token stream from position `start` on; before that (a fork) its parent's. */
typedef struct {
    int parent;      /* -1, or the sequence it forked from */
    int64_t start;   /* first position with its own tokens (0, or the fork point) */
    int64_t length;  /* total tokens, prefix included */
    int64_t pos;     /* tokens consumed so far */
    int slot;        /* cache row while live, else -1 */
    int arrival;     /* decode step at which the request arrives */
    float *out;      /* [length, H, DV] outputs of the batched decode */
} seq_t;

static seq_t seqs[MAXREQ];
static int nseq;

/* Deterministic unit-normal-ish values of token t of sequence s (which = 0 q, 1 k, 2 v). */
static void token(int s, int64_t t, int which, float *dst, int count)
{
    int i;
    while (t < seqs[s].start) s = seqs[s].parent;
    for (i = 0; i < count; i++) {
        uint64_t r = mix(((uint64_t)s << 40) ^ ((uint64_t)t << 12) ^ ((uint64_t)which << 10) ^ (uint64_t)i);
        double u1 = ((double)(r >> 11) + 0.5) / 9007199254740992.0, u2 = (double)(r & 0x7FF) / 2048.0;
        dst[i] = (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
}

static int fail(const char *what, hla_status st)
{
    fprintf(stderr, "decode: %s failed: %s: %s\n", what, hla_status_string(st), hla_last_error());
    return 1;
}

/* hla_tensor over contiguous memory (shape of nd sizes). */
static hla_tensor tensor(void *data, int dtype, int nd, int64_t a, int64_t b, int64_t c, int64_t d)
{
    hla_tensor t;
    int64_t shape[4];
    shape[0] = a, shape[1] = b, shape[2] = c, shape[3] = d;
    if (hla_tensor_init(&t, data, dtype, nd, shape, NULL) != HLA_OK) {
        fprintf(stderr, "decode: hla_tensor_init: %s\n", hla_last_error());
        exit(1);
    }
    return t;
}

int main(int argc, char **argv)
{
    const int nreq = argc > 1 ? atoi(argv[1]) : 24;
    hla_config cfg;
    hla_status st;
    int64_t n = 0, steps = 0, active = 0, tokens = 0, rows[SLOTS];
    float *cache, *q, *k, *v, *o;
    int live[SLOTS], s, i, forks = 0, resets = 0, next = 0, done = 0;
    double t_step = 0, worst = 0;
    hla_tensor tcache;

    if (nreq < 1 || nreq > MAXREQ / 2) {
        fprintf(stderr, "usage: decode [requests 1..%d]\n", MAXREQ / 2);
        return 2;
    }
    if (HLA_VERSION_MAJOR != atoi(hla_version())) {
        fprintf(stderr, "decode: header %d.x, library %s\n", HLA_VERSION_MAJOR, hla_version());
        return 1;
    }
    hla_config_init(&cfg, sizeof cfg);
    cfg.op = HLA_OP_HLA2;
    cfg.heads = H;
    cfg.kv_heads = HKV;
    cfg.dk = DK;
    cfg.dv = DV;
    cfg.scale = 1.0 / sqrt((double)DK);
    cfg.decay = 0.999;
    if ((st = hla_state_elements(&cfg, &n)) != HLA_OK) return fail("hla_state_elements", st);

    /* the host's cache: SLOTS rows of n float32 numbers, zeroed by the library */
    cache = malloc((size_t)(SLOTS * n) * sizeof(float));
    q = malloc(SLOTS * H * DK * sizeof(float));
    k = malloc(SLOTS * HKV * DK * sizeof(float));
    v = malloc(SLOTS * HKV * DV * sizeof(float));
    o = malloc(SLOTS * H * DV * sizeof(float));
    if (!cache || !q || !k || !v || !o) return fail("malloc", HLA_ERR_OUT_OF_MEMORY);
    tcache = tensor(cache, HLA_FLOAT32, 2, SLOTS, n, 0, 0);
    if ((st = hla_state_reset_rows(&cfg, &tcache, NULL)) != HLA_OK) return fail("hla_state_reset_rows", st);

    /* requests: lengths 24..151 tokens, arriving every few steps */
    for (s = 0; s < nreq; s++) {
        seq_t *x = &seqs[s];
        x->parent = -1, x->start = 0, x->pos = 0, x->slot = -1;
        x->length = 24 + (int64_t)(mix((uint64_t)s * 7919u) % 128u);
        x->arrival = 3 * s;
        x->out = NULL;
    }
    nseq = nreq;
    for (i = 0; i < SLOTS; i++) live[i] = -1;

    while (done < nseq) {
        int64_t R = 0, fin[SLOTS], nfin = 0;
        hla_tensor tq, tk, tv, to, tr;
        double t0;
        /* admit arrived requests into free slots (their rows were zeroed when last freed) */
        for (i = 0; i < SLOTS && next < nreq && seqs[next].arrival <= steps; i++)
            if (live[i] < 0) {
                live[i] = next, seqs[next].slot = i;
                seqs[next].out = malloc((size_t)(seqs[next].length * H * DV) * sizeof(float));
                if (!seqs[next].out) return fail("malloc", HLA_ERR_OUT_OF_MEMORY);
                next++;
            }
        /* every 25 steps a live sequence forks into a free slot: copy its row */
        if (steps % 25 == 24 && nseq < MAXREQ) {
            int free_slot = -1, parent = -1;
            for (i = 0; i < SLOTS; i++) {
                if (live[i] < 0 && free_slot < 0) free_slot = i;
                if (live[i] >= 0 && seqs[live[i]].length - seqs[live[i]].pos > 8 && parent < 0) parent = live[i];
            }
            if (free_slot >= 0 && parent >= 0) {
                seq_t *c = &seqs[nseq];
                int64_t src = seqs[parent].slot, dst = free_slot;
                hla_tensor ts = tensor(&src, HLA_INT64, 1, 1, 0, 0, 0), td = tensor(&dst, HLA_INT64, 1, 1, 0, 0, 0);
                if ((st = hla_state_copy_rows(&cfg, &tcache, &ts, &td)) != HLA_OK) return fail("hla_state_copy_rows", st);
                c->parent = parent, c->start = seqs[parent].pos, c->pos = c->start;
                c->length = c->start + 16 + (int64_t)(mix((uint64_t)nseq) % 48u);
                c->slot = free_slot, c->arrival = (int)steps;
                c->out = malloc((size_t)(c->length * H * DV) * sizeof(float));
                if (!c->out) return fail("malloc", HLA_ERR_OUT_OF_MEMORY);
                live[free_slot] = nseq++;
                forks++;
            }
        }
        /* one token of every live sequence; rows = their slots */
        for (i = 0; i < SLOTS; i++)
            if (live[i] >= 0) {
                seq_t *x = &seqs[live[i]];
                token(live[i], x->pos, 0, q + R * H * DK, H * DK);
                token(live[i], x->pos, 1, k + R * HKV * DK, HKV * DK);
                token(live[i], x->pos, 2, v + R * HKV * DV, HKV * DV);
                rows[R++] = i;
            }
        steps++;
        if (R == 0) continue;
        tq = tensor(q, HLA_FLOAT32, 3, R, H, DK, 0);
        tk = tensor(k, HLA_FLOAT32, 3, R, HKV, DK, 0);
        tv = tensor(v, HLA_FLOAT32, 3, R, HKV, DV, 0);
        to = tensor(o, HLA_FLOAT32, 3, R, H, DV, 0);
        tr = tensor(rows, HLA_INT64, 1, R, 0, 0, 0);
        t0 = now_s();
        st = hla_step(&cfg, &tq, &tk, &tv, &to, &tcache, &tr);
        t_step += now_s() - t0;
        if (st != HLA_OK) return fail("hla_step", st);
        tokens += R;
        active++;
        for (i = 0; i < R; i++) {
            seq_t *x = &seqs[live[rows[i]]];
            memcpy(x->out + x->pos * H * DV, o + i * H * DV, H * DV * sizeof(float));
            if (++x->pos == x->length) {
                fin[nfin++] = rows[i];
                live[rows[i]] = -1, x->slot = -1;
                done++;
            }
        }
        /* finished sequences: zero their rows for the next request */
        if (nfin > 0) {
            hla_tensor tf = tensor(fin, HLA_INT64, 1, nfin, 0, 0, 0);
            if ((st = hla_state_reset_rows(&cfg, &tcache, &tf)) != HLA_OK) return fail("hla_state_reset_rows", st);
            resets += (int)nfin;
        }
    }

    /* parity: each sequence alone through hla_forward (chunked) */
    for (s = 0; s < nseq; s++) {
        seq_t *x = &seqs[s];
        const int64_t L = x->length;
        float *sq = malloc((size_t)(L * H * DK) * sizeof(float)), *sk = malloc((size_t)(L * HKV * DK) * sizeof(float)),
              *sv = malloc((size_t)(L * HKV * DV) * sizeof(float)), *so = malloc((size_t)(L * H * DV) * sizeof(float));
        hla_tensor tq, tk, tv, to;
        double num = 0, den = 0;
        int64_t t, j;
        if (!sq || !sk || !sv || !so) return fail("malloc", HLA_ERR_OUT_OF_MEMORY);
        for (t = 0; t < L; t++) {
            token(s, t, 0, sq + t * H * DK, H * DK);
            token(s, t, 1, sk + t * HKV * DK, HKV * DK);
            token(s, t, 2, sv + t * HKV * DV, HKV * DV);
        }
        tq = tensor(sq, HLA_FLOAT32, 4, 1, L, H, DK);
        tk = tensor(sk, HLA_FLOAT32, 4, 1, L, HKV, DK);
        tv = tensor(sv, HLA_FLOAT32, 4, 1, L, HKV, DV);
        to = tensor(so, HLA_FLOAT32, 4, 1, L, H, DV);
        if ((st = hla_forward(&cfg, HLA_PATH_CHUNKED, &tq, &tk, &tv, &to, NULL, NULL, NULL, NULL)) != HLA_OK)
            return fail("hla_forward", st);
        for (j = x->start * H * DV; j < L * H * DV; j++) { /* a fork's own tokens */
            double e = fabs((double)x->out[j] - (double)so[j]);
            if (e != e) e = INFINITY;
            if (e > num) num = e;
            if (fabs((double)so[j]) > den) den = fabs((double)so[j]);
        }
        if (num / den > worst || num != num) worst = num / den;
        free(sq), free(sk), free(sv), free(so), free(x->out);
    }
    printf("decode: hla2 H=%d Hkv=%d dk=dv=%d float32, cache %d slots x %lld floats (%.1f MiB, host memory)\n", H, HKV,
           DK, SLOTS, (long long)n, (double)(SLOTS * n) * 4.0 / 1048576.0);
    printf("  %d requests + %d forks, %lld steps, %lld tokens (%.1f live per step), %d slot resets\n", nreq, forks,
           (long long)active, (long long)tokens, (double)tokens / (double)active, resets);
    printf("  hla_step: %.0f tokens/s (%.1f us per step)\n", (double)tokens / t_step, 1e6 * t_step / (double)active);
    printf("  parity vs each sequence alone (hla_forward): max rel err %.2e %s\n", worst, worst <= 1e-4 ? "OK" : "FAIL");
    free(cache), free(q), free(k), free(v), free(o);
    return worst <= 1e-4 ? 0 : 1;
}
