/* One training step of an HLA layer from C: forward keeping checkpoints, loss, backward from them.
 *
 * A host that trains (a C or C++ framework) asks hla_checkpoint_rows how many state rows the forward's
 * checkpoints take, lets hla_forward_checkpoints fill them while it computes the outputs, and hands them to
 * hla_backward_checkpoints, which then recomputes no carry it already has. cfg.checkpoint_every sets their
 * spacing: 0 (automatic) keeps about sqrt(chunks) of them, 1 one per chunk (the fastest backward). The same
 * cfg must reach both calls.
 *
 * Loss L = sum(o^2) / 2 over hla3 with grouped heads, decay and normalization, float64, two sequences of
 * a length that is not a multiple of the chunk. Checks, for checkpoint_every 0 and 1: outputs and gradients
 * bit for bit those of plain hla_forward / hla_backward, and dL/dq, dL/dk, dL/dv at a few elements against
 * central finite differences of L (error <= 1e-6 relative to the gradient's largest element, the max-norm
 * convention of docs/spec.md section 4). Exits non-zero on a disagreement or an error.
 *
 *   build/train_step */
#include <hla.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2, T = 203, H = 4, HKV = 2, DK = 16, DV = 12 };

static int failures;

static void check(hla_status st, const char *what)
{
    if (st != HLA_OK) {
        fprintf(stderr, "%s: %s: %s\n", what, hla_status_string(st), hla_last_error());
        exit(1);
    }
}

static hla_tensor tensor(double *data, int64_t b, int64_t t, int64_t h, int64_t d)
{
    hla_tensor x;
    int64_t shape[4] = {b, t, h, d};
    check(hla_tensor_init(&x, data, HLA_FLOAT64, 4, shape, NULL), "hla_tensor_init");
    return x;
}

static double *filled(size_t n, unsigned seed, double lo)
{
    double *p = malloc(n * sizeof *p);
    size_t i;
    if (!p) exit(1);
    srand(seed);
    for (i = 0; i < n; i++) p[i] = lo + (double)rand() / RAND_MAX * 0.5;   /* positive: normalize divides */
    return p;
}

static hla_config config(int64_t checkpoint_every)
{
    hla_config cfg;
    check(hla_config_init(&cfg, sizeof cfg), "hla_config_init");
    cfg.op = HLA_OP_HLA3;
    cfg.heads = H;
    cfg.kv_heads = HKV;
    cfg.dk = DK;
    cfg.dv = DV;
    cfg.normalize = 1;
    cfg.decay = 0.98;
    cfg.scale = 0.25;
    cfg.chunk_size = 16;
    cfg.checkpoint_every = checkpoint_every;
    return cfg;
}

/* L = sum(o^2) / 2 of a plain forward (for the finite differences). */
static double loss(const hla_config *cfg, double *q, double *k, double *v, double *o)
{
    hla_tensor tq = tensor(q, B, T, H, DK), tk = tensor(k, B, T, HKV, DK), tv = tensor(v, B, T, HKV, DV);
    hla_tensor to = tensor(o, B, T, H, DV);
    double l = 0;
    size_t i;
    check(hla_forward(cfg, HLA_PATH_CHUNKED, &tq, &tk, &tv, &to, NULL, NULL, NULL, NULL), "hla_forward");
    for (i = 0; i < (size_t)B * T * H * DV; i++) l += 0.5 * o[i] * o[i];
    return l;
}

int main(void)
{
    const size_t nq = (size_t)B * T * H * DK, nk = (size_t)B * T * HKV * DK, nv = (size_t)B * T * HKV * DV;
    const size_t no = (size_t)B * T * H * DV;
    double *q = filled(nq, 1, 0.0), *k = filled(nk, 2, 0.0), *v = filled(nv, 3, -0.25);
    double *o = malloc(no * sizeof *o), *o0 = malloc(no * sizeof *o0), *scratch = malloc(no * sizeof *scratch);
    double *g[3], *g0[3];
    const size_t sizes[3] = {nq, nk, nv};
    double *inputs[3];
    int e, w, i;
    if (!o || !o0 || !scratch) return 1;
    inputs[0] = q; inputs[1] = k; inputs[2] = v;
    for (w = 0; w < 3; w++) {
        g[w] = malloc(sizes[w] * sizeof(double));
        g0[w] = malloc(sizes[w] * sizeof(double));
        if (!g[w] || !g0[w]) return 1;
    }
    {   /* reference: plain forward and backward (dL/do = o) */
        hla_config cfg = config(0);
        hla_tensor tq = tensor(q, B, T, H, DK), tk = tensor(k, B, T, HKV, DK), tv = tensor(v, B, T, HKV, DV);
        hla_tensor to = tensor(o0, B, T, H, DV);
        hla_tensor tg[3] = {tensor(g0[0], B, T, H, DK), tensor(g0[1], B, T, HKV, DK), tensor(g0[2], B, T, HKV, DV)};
        check(hla_forward(&cfg, HLA_PATH_CHUNKED, &tq, &tk, &tv, &to, NULL, NULL, NULL, NULL), "hla_forward");
        check(hla_backward(&cfg, HLA_PATH_CHUNKED, &tq, &tk, &tv, &to, &tg[0], &tg[1], &tg[2], NULL, NULL, NULL,
                           NULL), "hla_backward");
    }
    for (e = 0; e <= 1; e++) {
        hla_config cfg = config(e);
        int64_t rows = 0, stride = 0, n = 0;
        double *ck;
        hla_tensor tq = tensor(q, B, T, H, DK), tk = tensor(k, B, T, HKV, DK), tv = tensor(v, B, T, HKV, DV);
        hla_tensor to = tensor(o, B, T, H, DV), tck;
        hla_tensor tg[3] = {tensor(g[0], B, T, H, DK), tensor(g[1], B, T, HKV, DK), tensor(g[2], B, T, HKV, DV)};
        int64_t ckshape[2];
        check(hla_checkpoint_rows(&cfg, B, T, 0, &rows, &stride), "hla_checkpoint_rows");
        check(hla_state_elements(&cfg, &n), "hla_state_elements");
        ck = malloc((size_t)(rows > 0 ? rows : 1) * (size_t)n * sizeof *ck);
        if (!ck) return 1;
        ckshape[0] = rows; ckshape[1] = n;
        check(hla_tensor_init(&tck, ck, HLA_FLOAT64, 2, ckshape, NULL), "hla_tensor_init");
        /* the training step: forward keeping checkpoints, dL/do = o, backward from them */
        check(hla_forward_checkpoints(&cfg, &tq, &tk, &tv, &to, NULL, NULL, NULL, NULL, &tck),
              "hla_forward_checkpoints");
        check(hla_backward_checkpoints(&cfg, &tq, &tk, &tv, &to, &tg[0], &tg[1], &tg[2], NULL, NULL, NULL, NULL, &tck),
              "hla_backward_checkpoints");
        printf("checkpoint_every %d: %lld checkpoint rows of %lld numbers, one every %lld tokens\n", e,
               (long long)rows, (long long)n, (long long)stride);
        if (memcmp(o, o0, no * sizeof *o) != 0) {
            printf("FAIL: outputs differ from hla_forward's\n");
            failures++;
        }
        for (w = 0; w < 3; w++) {
            if (memcmp(g[w], g0[w], sizes[w] * sizeof(double)) != 0) {
                printf("FAIL: d%c differs from hla_backward's\n", "qkv"[w]);
                failures++;
            }
        }
        free(ck);
    }
    /* central finite differences of L at a few elements of q, k and v */
    for (w = 0; w < 3; w++) {
        double top = 0;
        size_t j;
        for (j = 0; j < sizes[w]; j++) top = fmax(top, fabs(g0[w][j]));
        for (i = 0; i < 4; i++) {
            hla_config cfg = config(0);
            size_t at = (size_t)(i * 2654435761u % sizes[w]);
            double x = inputs[w][at], step = 1e-5, lp, lm, fd, rel;
            inputs[w][at] = x + step;
            lp = loss(&cfg, q, k, v, scratch);
            inputs[w][at] = x - step;
            lm = loss(&cfg, q, k, v, scratch);
            inputs[w][at] = x;
            fd = (lp - lm) / (2 * step);
            rel = fabs(fd - g0[w][at]) / top;
            printf("dL/d%c[%zu]: backward %+.9f, finite difference %+.9f, relative error %.1e\n", "qkv"[w], at,
                   g0[w][at], fd, rel);
            if (!(rel <= 1e-6)) failures++;
        }
    }
    for (w = 0; w < 3; w++) { free(g[w]); free(g0[w]); }
    free(q); free(k); free(v); free(o); free(o0); free(scratch);
    printf(failures ? "train_step: %d FAILED\n" : "train_step: OK%.0d\n", failures);
    return failures != 0;
}
