/* A small HLA decoder as a ggml graph, its HLA node calling libhla through ggml's custom-op hook.
 *
 * Model (float32, weights drawn from a seeded generator): token embedding, L layers of
 *     h = rms_norm(x) * g1;  q, k, v = h Wq, h Wk, h Wv   (H query heads, Hkv kv heads)
 *     o = HLA(q, k, v)                                      one ggml_custom_4d node -> libhla
 *     x = x + rms_norm_per_head(o) Wo
 *     x = x + silu((rms_norm(x) * g2) W1) W2
 * then logits = (rms_norm(x) * g3) Wout.
 *
 * The HLA node is ggml_custom_4d(ctx, F32, dv, H, T, 1, {q, k, v, state}, ...): its output
 * [dv, H, T] differs in shape from its inputs, and its fourth source is the layer's state, an [n]
 * float32 tensor of the model's ggml context (n = hla_state_elements) that lives as long as the model
 * and that the node advances in place, so nothing is serialized or copied between steps. A ggml tensor
 * [ne0, ne1, ne2] with byte strides nb is exactly libhla's [ne2, ne1, ne0] hla_tensor with element
 * strides nb / 4 ([B = 1, T, H, D] for a sequence, [R = 1, H, D] for a step, [1, n] for a state).
 *
 * Prefill: a graph over the P prompt tokens whose HLA nodes call hla_forward (chunked path, initial =
 * final = the state tensor: prefill in place). Decode: one graph over a single token, built once and
 * recomputed G times with the next token's id set in its input tensor; its HLA nodes call hla_step on
 * the same state tensors. Greedy: each next token is the argmax of the previous logits.
 *
 * Threads: ggml calls a custom op's function on every thread of the graph (ith = 0..nth-1, whatever
 * n_tasks says). The node calls libhla from ith == 0 only and the other ggml threads wait at the
 * barrier after the node: libhla parallelises a call over sequences x kv heads on its own pool (and
 * keeps small steps on the calling thread), and a state row keeps the blocks of all kv heads before
 * those of all query heads, so one sequence's heads are not separate slices that ggml threads could
 * split without changing the configuration.
 *
 * Output: prints prefill and decode throughput and the share of graph-compute time spent inside libhla
 * (timed in the node), and writes the configuration, tokens, weights, logits of every position and
 * the final per-layer states to a binary file that check.py re-evaluates in numpy through hla.forward.
 *
 *   hla_ggml [--op hla2|ahla|hla3] [--prompt P] [--gen G] [--threads N] [--chunk C] [--decay g]
 *            [--normalize] [--out FILE]
 */
#define _POSIX_C_SOURCE 200809L
#include <ggml.h>
#include <ggml-cpu.h>
#include <hla.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RMS_EPS 1e-5f
enum { LMAX = 8, PREFILL_RUNS = 8 };

/* model shape: vocabulary, width, layers, heads, kv heads, key and value features, MLP width */
struct hparams {
    int32_t V, D, L, H, HKV, DK, DV, F;
};

/* userdata of one HLA node of one graph */
struct hla_node {
    hla_config cfg;
    int use_step;      /* 0: hla_forward, chunked, in place (prefill); 1: hla_step (decode) */
    double seconds;    /* time spent inside libhla */
    hla_status status; /* first failure, HLA_OK if none */
    char error[512];
};

struct layer {
    struct ggml_tensor *attn_norm, *wq, *wk, *wv, *wo, *mlp_norm, *w1, *w2;
    struct ggml_tensor *state; /* [n] float32: this layer's HLA state, advanced in place by the graphs */
};

struct model {
    struct hparams hp;
    struct ggml_context *ctx; /* owns the weights and the states */
    struct ggml_tensor *tok_emb, *out_norm, *wout;
    struct layer layers[LMAX];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint64_t next_u64(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}
static float randn(void)
{
    const double u1 = ((double)(next_u64() >> 11) + 0.5) / 9007199254740992.0;
    const double u2 = ((double)(next_u64() >> 11) + 0.5) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* a ggml float32 tensor of ndim used dimensions as an hla_tensor: shape and strides reversed */
static int describe(hla_tensor *t, const struct ggml_tensor *g, int ndim)
{
    int64_t shape[HLA_MAX_NDIM], strides[HLA_MAX_NDIM];
    int j;
    if (g == NULL || g->type != GGML_TYPE_F32) return 0;
    for (j = ndim; j < GGML_MAX_DIMS; j++)
        if (g->ne[j] != 1) return 0;
    for (j = 0; j < ndim; j++) {
        if (g->nb[ndim - 1 - j] % sizeof(float) != 0) return 0;
        shape[j] = g->ne[ndim - 1 - j];
        strides[j] = (int64_t)(g->nb[ndim - 1 - j] / sizeof(float));
    }
    return hla_tensor_init(t, g->data, HLA_FLOAT32, ndim, shape, strides) == HLA_OK;
}

/* The HLA node: dst [dv, H, T] <- HLA(src0 q [dk, H, T], src1 k [dk, Hkv, T], src2 v [dv, Hkv, T]),
 * advancing src3, the layer's state [n]. */
static void hla_node_compute(struct ggml_tensor *dst, int ith, int nth, void *userdata)
{
    struct hla_node *node = userdata;
    const int nd = node->use_step ? 3 : 4;
    hla_tensor q, k, v, o, s;
    hla_status st;
    double t0;
    (void)nth;
    if (ith != 0) return; /* libhla parallelises the call itself */
    if (!describe(&q, dst->src[0], nd) || !describe(&k, dst->src[1], nd) || !describe(&v, dst->src[2], nd) ||
        !describe(&o, dst, nd) || !describe(&s, dst->src[3], 2)) {
        if (node->status == HLA_OK) {
            node->status = HLA_ERR_INVALID_ARGUMENT;
            snprintf(node->error, sizeof node->error, "HLA node: a source is not a float32 tensor of %d dimensions", nd);
        }
        return;
    }
    t0 = now_s();
    if (node->use_step)
        st = hla_step(&node->cfg, &q, &k, &v, &o, &s, NULL);
    else
        st = hla_forward(&node->cfg, HLA_PATH_CHUNKED, &q, &k, &v, &o, NULL, &s, &s, NULL);
    node->seconds += now_s() - t0;
    if (st != HLA_OK && node->status == HLA_OK) {
        node->status = st;
        snprintf(node->error, sizeof node->error, "%s: %s: %s", node->use_step ? "hla_step" : "hla_forward",
                 hla_status_string(st), hla_last_error());
    }
}

static struct ggml_tensor *weight(struct ggml_context *ctx, int64_t in, int64_t out, float std, float mean)
{
    struct ggml_tensor *t = out > 0 ? ggml_new_tensor_2d(ctx, GGML_TYPE_F32, in, out) : ggml_new_tensor_1d(ctx, GGML_TYPE_F32, in);
    float *d = t->data;
    int64_t i, count = ggml_nelements(t);
    for (i = 0; i < count; i++) d[i] = mean + std * randn();
    return t;
}

/* weights (ggml [in, out] = numpy (out, in), row-major) and zeroed states in one ggml context */
static int model_init(struct model *m, const struct hparams *hp, const hla_config *cfg, int64_t n)
{
    const int64_t D = hp->D, F = hp->F;
    const size_t floats = (size_t)(hp->V * D * 2 + D +
                                   hp->L * (2 * D + D * (hp->H * hp->DK + hp->HKV * (hp->DK + hp->DV) + hp->H * hp->DV) +
                                            2 * D * F + n + 64));
    struct ggml_init_params ip;
    int l;
    ip.mem_size = floats * sizeof(float) + (size_t)(16 * hp->L + 16) * ggml_tensor_overhead() + 4096;
    ip.mem_buffer = NULL;
    ip.no_alloc = false;
    memset(m, 0, sizeof *m);
    m->hp = *hp;
    if ((m->ctx = ggml_init(ip)) == NULL) return 1;
    m->tok_emb = weight(m->ctx, D, hp->V, 1.0f, 0.0f);
    for (l = 0; l < hp->L; l++) {
        struct layer *ly = &m->layers[l];
        struct ggml_tensor *raw;
        hla_tensor ts;
        size_t off;
        ly->attn_norm = weight(m->ctx, D, 0, 0.1f, 1.0f);
        ly->wq = weight(m->ctx, D, hp->H * hp->DK, 1.0f / sqrtf((float)D), 0.0f);
        ly->wk = weight(m->ctx, D, hp->HKV * hp->DK, 1.0f / sqrtf((float)D), 0.0f);
        ly->wv = weight(m->ctx, D, hp->HKV * hp->DV, 1.0f / sqrtf((float)D), 0.0f);
        ly->wo = weight(m->ctx, hp->H * hp->DV, D, 1.0f / sqrtf((float)(hp->H * hp->DV)), 0.0f);
        ly->mlp_norm = weight(m->ctx, D, 0, 0.1f, 1.0f);
        ly->w1 = weight(m->ctx, D, F, 1.0f / sqrtf((float)D), 0.0f);
        ly->w2 = weight(m->ctx, F, D, 1.0f / sqrtf((float)F), 0.0f);
        /* the state: a view of n floats starting on a 64-byte boundary (libhla streams states in
         * 64-byte vectors), owned by the model's context like the weights */
        raw = ggml_new_tensor_1d(m->ctx, GGML_TYPE_F32, n + 16);
        off = (64 - (size_t)((uintptr_t)raw->data % 64)) % 64;
        ly->state = ggml_view_1d(m->ctx, raw, n, off);
        ggml_format_name(ly->state, "hla_state_%d", l);
        if (!describe(&ts, ly->state, 2) || hla_state_reset_rows(cfg, &ts, NULL) != HLA_OK) return 1;
    }
    m->out_norm = weight(m->ctx, D, 0, 0.1f, 1.0f);
    m->wout = weight(m->ctx, D, hp->V, 1.0f / sqrtf((float)D), 0.0f);
    return 0;
}

/* the decoder over the tokens ids [T]; returns the logits [V, T] */
static struct ggml_tensor *build(struct ggml_context *ctx, const struct model *m, struct ggml_tensor *ids,
                                 struct hla_node *nodes)
{
    const struct hparams *hp = &m->hp;
    const int64_t T = ids->ne[0];
    struct ggml_tensor *x = ggml_get_rows(ctx, m->tok_emb, ids); /* [D, T] */
    int l;
    for (l = 0; l < hp->L; l++) {
        const struct layer *ly = &m->layers[l];
        struct ggml_tensor *h = ggml_mul(ctx, ggml_rms_norm(ctx, x, RMS_EPS), ly->attn_norm);
        struct ggml_tensor *args[4], *o;
        args[0] = ggml_reshape_3d(ctx, ggml_mul_mat(ctx, ly->wq, h), hp->DK, hp->H, T);
        args[1] = ggml_reshape_3d(ctx, ggml_mul_mat(ctx, ly->wk, h), hp->DK, hp->HKV, T);
        args[2] = ggml_reshape_3d(ctx, ggml_mul_mat(ctx, ly->wv, h), hp->DV, hp->HKV, T);
        args[3] = ly->state;
        o = ggml_custom_4d(ctx, GGML_TYPE_F32, hp->DV, hp->H, T, 1, args, 4, hla_node_compute, 1, &nodes[l]);
        ggml_format_name(o, "hla_%d", l);
        o = ggml_rms_norm(ctx, o, RMS_EPS); /* per head and token */
        x = ggml_add(ctx, x, ggml_mul_mat(ctx, ly->wo, ggml_reshape_2d(ctx, o, (int64_t)hp->H * hp->DV, T)));
        h = ggml_mul(ctx, ggml_rms_norm(ctx, x, RMS_EPS), ly->mlp_norm);
        h = ggml_silu(ctx, ggml_mul_mat(ctx, ly->w1, h));
        x = ggml_add(ctx, x, ggml_mul_mat(ctx, ly->w2, h));
    }
    x = ggml_mul(ctx, ggml_rms_norm(ctx, x, RMS_EPS), m->out_norm);
    return ggml_mul_mat(ctx, m->wout, x);
}

/* a graph over T tokens in its own context, planned on the thread pool */
struct graph {
    struct ggml_context *ctx;
    struct ggml_tensor *ids, *logits;
    struct ggml_cgraph *gf;
    struct ggml_cplan plan;
};

static int graph_init(struct graph *g, const struct model *m, int64_t T, struct hla_node *nodes, int threads,
                      struct ggml_threadpool *tp)
{
    const struct hparams *hp = &m->hp;
    const int64_t W = hp->D > hp->F ? (hp->D > hp->V ? hp->D : hp->V) : (hp->F > hp->V ? hp->F : hp->V);
    struct ggml_init_params ip;
    ip.mem_size = (size_t)T * (size_t)(hp->L * 16 + 8) * (size_t)W * sizeof(float) +
                  ggml_graph_overhead() + 1024 * ggml_tensor_overhead() + 65536;
    ip.mem_buffer = NULL;
    ip.no_alloc = false;
    memset(g, 0, sizeof *g);
    if ((g->ctx = ggml_init(ip)) == NULL) return 1;
    g->ids = ggml_new_tensor_1d(g->ctx, GGML_TYPE_I32, T);
    g->logits = build(g->ctx, m, g->ids, nodes);
    g->gf = ggml_new_graph(g->ctx);
    ggml_build_forward_expand(g->gf, g->logits);
    g->plan = ggml_graph_plan(g->gf, threads, tp);
    if (g->plan.work_size > 0 && (g->plan.work_data = malloc(g->plan.work_size)) == NULL) return 1;
    return 0;
}

static void graph_free(struct graph *g)
{
    free(g->plan.work_data);
    ggml_free(g->ctx);
}

/* run the graph; 0 on success, else prints the failure */
static int compute(struct graph *g, struct hla_node *nodes, int L, double *seconds)
{
    const double t0 = now_s();
    const enum ggml_status gs = ggml_graph_compute(g->gf, &g->plan);
    int l;
    *seconds += now_s() - t0;
    if (gs != GGML_STATUS_SUCCESS) {
        fprintf(stderr, "hla_ggml: ggml_graph_compute: %s\n", ggml_status_to_string(gs));
        return 1;
    }
    for (l = 0; l < L; l++)
        if (nodes[l].status != HLA_OK) {
            fprintf(stderr, "hla_ggml: layer %d: %s\n", l, nodes[l].error);
            return 1;
        }
    return 0;
}

static double hla_seconds(const struct hla_node *nodes, int L)
{
    double s = 0;
    int l;
    for (l = 0; l < L; l++) s += nodes[l].seconds;
    return s;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int write_all(FILE *f, const void *p, size_t size, size_t count)
{
    return fwrite(p, size, count, f) == count ? 0 : 1;
}

static int write_tensor(FILE *f, const struct ggml_tensor *t)
{
    return write_all(f, t->data, sizeof(float), (size_t)ggml_nelements(t));
}

static void usage(void)
{
    fprintf(stderr, "usage: hla_ggml [--op hla2|ahla|hla3] [--prompt P] [--gen G] [--threads N] [--chunk C]\n"
                    "                [--decay g] [--normalize] [--out FILE]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const char *names[3] = {"hla2", "ahla", "hla3"};
    struct hparams hp = {128, 64, 2, 4, 2, 16, 16, 128};
    int op = HLA_OP_HLA2, normalize = 0, threads = 1, i, l;
    int64_t P = 37, G = 64, chunk = 16, n = 0, T, t;
    double decay = 0.95, t_cold = 0, t_prefill = 0, t_decode = 0, hla_prefill = 0, hla_decode = 0;
    double pre_graph[PREFILL_RUNS], pre_hla[PREFILL_RUNS];
    const char *out = "build/hla_ggml.bin";
    hla_config cfg;
    hla_status st;
    struct model m;
    struct hla_node prefill_nodes[LMAX], decode_nodes[LMAX];
    struct graph gp, gd;
    struct ggml_threadpool_params tpp;
    struct ggml_threadpool *tp;
    int32_t *tokens;
    float *logits;
    double *step_graph, *step_hla;
    FILE *f;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--normalize") == 0) {
            normalize = 1;
            continue;
        }
        if (val == NULL) usage();
        if (strcmp(a, "--op") == 0) {
            for (op = 0; op < 3 && strcmp(val, names[op]) != 0; op++) {}
            if (op == 3) usage();
        } else if (strcmp(a, "--prompt") == 0) P = atoll(val);
        else if (strcmp(a, "--gen") == 0) G = atoll(val);
        else if (strcmp(a, "--threads") == 0) threads = atoi(val);
        else if (strcmp(a, "--chunk") == 0) chunk = atoll(val);
        else if (strcmp(a, "--decay") == 0) decay = atof(val);
        else if (strcmp(a, "--out") == 0) out = val;
        else usage();
        i++;
    }
    if (P < 1 || G < 0 || threads < 1 || chunk < 0) usage();
    T = P + G;

    hla_config_init(&cfg, sizeof cfg);
    cfg.op = op;
    cfg.masked = 1;
    cfg.normalize = normalize;
    cfg.heads = hp.H;
    cfg.kv_heads = hp.HKV;
    cfg.dk = hp.DK;
    cfg.dv = hp.DV;
    cfg.scale = 1.0 / sqrt((double)hp.DK);
    cfg.decay = decay;
    cfg.chunk_size = chunk;
    if ((st = hla_state_elements(&cfg, &n)) != HLA_OK) {
        fprintf(stderr, "hla_ggml: hla_state_elements: %s: %s\n", hla_status_string(st), hla_last_error());
        return 1;
    }
    if (model_init(&m, &hp, &cfg, n)) {
        fprintf(stderr, "hla_ggml: model initialisation failed\n");
        return 1;
    }
    for (l = 0; l < hp.L; l++) {
        memset(&prefill_nodes[l], 0, sizeof prefill_nodes[l]);
        prefill_nodes[l].cfg = cfg;
        decode_nodes[l] = prefill_nodes[l];
        decode_nodes[l].use_step = 1;
    }
    tokens = malloc((size_t)T * sizeof *tokens);
    logits = malloc((size_t)T * (size_t)hp.V * sizeof *logits);
    step_graph = malloc((size_t)(G + 1) * sizeof *step_graph);
    step_hla = malloc((size_t)(G + 1) * sizeof *step_hla);
    if (!tokens || !logits || !step_graph || !step_hla) return 1;
    for (t = 0; t < P; t++) tokens[t] = (int32_t)(next_u64() % (uint64_t)hp.V);

    printf("hla_ggml: ggml %s, libhla %s; %s%s, %d layers, width %d, H=%d Hkv=%d dk=%d dv=%d, vocab %d, "
           "decay %g, %d ggml thread%s\n",
           ggml_version(), hla_version(), names[op], normalize ? " normalized" : "", hp.L, hp.D,
           hp.H, hp.HKV, hp.DK, hp.DV, hp.V, decay, threads, threads == 1 ? "" : "s");
    printf("  state: %lld float32 per layer, in the model's ggml context, advanced in place\n", (long long)n);

    tpp = ggml_threadpool_params_default(threads);
    if ((tp = ggml_threadpool_new(&tpp)) == NULL) return 1;

    /* prefill: the prompt through hla_forward (chunked), final state written over the initial one */
    if (graph_init(&gp, &m, P, prefill_nodes, threads, tp)) return 1;
    memcpy(gp.ids->data, tokens, (size_t)P * sizeof *tokens);
    /* PREFILL_RUNS passes from zeroed states: the first is cold (first-call costs of libhla and of ggml's
     * threads), the median of the others is reported; the last one's states are kept */
    for (i = 0; i < PREFILL_RUNS; i++) {
        double seconds = 0;
        for (l = 0; l < hp.L; l++) {
            hla_tensor ts;
            if (!describe(&ts, m.layers[l].state, 2) || hla_state_reset_rows(&cfg, &ts, NULL) != HLA_OK) return 1;
        }
        if (compute(&gp, prefill_nodes, hp.L, &seconds)) return 1;
        if (i == 0) t_cold = seconds, hla_prefill = hla_seconds(prefill_nodes, hp.L);
        else pre_graph[i - 1] = seconds, pre_hla[i - 1] = hla_seconds(prefill_nodes, hp.L) - hla_prefill;
        hla_prefill = hla_seconds(prefill_nodes, hp.L);
    }
    qsort(pre_graph, PREFILL_RUNS - 1, sizeof *pre_graph, cmp_double);
    qsort(pre_hla, PREFILL_RUNS - 1, sizeof *pre_hla, cmp_double);
    t_prefill = pre_graph[(PREFILL_RUNS - 1) / 2], hla_prefill = pre_hla[(PREFILL_RUNS - 1) / 2];
    memcpy(logits, gp.logits->data, (size_t)P * (size_t)hp.V * sizeof *logits);
    graph_free(&gp);

    /* decode: one graph over one token, recomputed for each new token; hla_step on the same states */
    if (graph_init(&gd, &m, 1, decode_nodes, threads, tp)) return 1;
    for (t = P; t < T; t++) {
        const float *prev = logits + (t - 1) * hp.V;
        int32_t best = 0, v;
        for (v = 1; v < hp.V; v++)
            if (prev[v] > prev[best]) best = v;
        tokens[t] = best;
        ((int32_t *)gd.ids->data)[0] = best;
        {
            const double before = t_decode, hla_before = hla_seconds(decode_nodes, hp.L);
            if (compute(&gd, decode_nodes, hp.L, &t_decode)) return 1;
            step_graph[t - P] = t_decode - before;
            step_hla[t - P] = hla_seconds(decode_nodes, hp.L) - hla_before;
        }
        memcpy(logits + t * hp.V, gd.logits->data, (size_t)hp.V * sizeof *logits);
    }
    graph_free(&gd);
    ggml_threadpool_free(tp);

    hla_decode = hla_seconds(decode_nodes, hp.L);
    printf("  prefill %lld tokens (chunk %lld, hla_forward in place): %9.0f tokens/s, %7.1f us, libhla %4.1f%% of graph time\n"
           "          (median of %d passes inside libhla %.1f us; first, cold pass %.1f us)\n",
           (long long)P, (long long)chunk, (double)P / t_prefill, 1e6 * t_prefill, 100.0 * hla_prefill / t_prefill,
           PREFILL_RUNS - 1, 1e6 * hla_prefill, 1e6 * t_cold);
    if (G > 0)
    {
        printf("  decode  %lld tokens (greedy, hla_step):               %9.0f tokens/s, %7.1f us/token, libhla %4.1f%% "
               "of graph time (%.1f us/token)\n",
               (long long)G, (double)G / t_decode, 1e6 * t_decode / (double)G, 100.0 * hla_decode / t_decode,
               1e6 * hla_decode / (double)G);
        /* medians: robust to the scheduler preempting a step on a busy machine */
        qsort(step_graph, (size_t)G, sizeof *step_graph, cmp_double);
        qsort(step_hla, (size_t)G, sizeof *step_hla, cmp_double);
        printf("          median step: graph %.1f us (%.0f tokens/s), inside libhla %.1f us (%.1f%%)\n",
               1e6 * step_graph[G / 2], 1.0 / step_graph[G / 2], 1e6 * step_hla[G / 2],
               100.0 * step_hla[G / 2] / step_graph[G / 2]);
    }

    /* for check.py: configuration, tokens, weights, logits [T, V], final states [L, n] */
    if ((f = fopen(out, "wb")) == NULL) {
        fprintf(stderr, "hla_ggml: cannot write %s\n", out);
        return 1;
    }
    {
        const int32_t head[16] = {hp.V, hp.D, hp.L, hp.H, hp.HKV, hp.DK, hp.DV, hp.F, op, normalize,
                                  (int32_t)P, (int32_t)G, (int32_t)chunk, (int32_t)n, threads, 0};
        const double params[4] = {decay, cfg.scale, RMS_EPS, 0.0};
        int bad = write_all(f, "HLAGGML1", 1, 8) || write_all(f, head, sizeof head[0], 16) ||
                  write_all(f, params, sizeof params[0], 4) || write_all(f, tokens, sizeof *tokens, (size_t)T) ||
                  write_tensor(f, m.tok_emb);
        for (l = 0; l < hp.L && !bad; l++) {
            const struct layer *ly = &m.layers[l];
            bad = write_tensor(f, ly->attn_norm) || write_tensor(f, ly->wq) || write_tensor(f, ly->wk) ||
                  write_tensor(f, ly->wv) || write_tensor(f, ly->wo) || write_tensor(f, ly->mlp_norm) ||
                  write_tensor(f, ly->w1) || write_tensor(f, ly->w2);
        }
        bad = bad || write_tensor(f, m.out_norm) || write_tensor(f, m.wout) ||
              write_all(f, logits, sizeof *logits, (size_t)(T * hp.V));
        for (l = 0; l < hp.L && !bad; l++) bad = write_tensor(f, m.layers[l].state);
        if (fclose(f) != 0 || bad) {
            fprintf(stderr, "hla_ggml: writing %s failed\n", out);
            return 1;
        }
    }
    printf("  wrote %s (weights, %lld tokens, logits, final states)\n", out, (long long)T);
    ggml_free(m.ctx);
    free(tokens);
    free(logits);
    free(step_graph);
    free(step_hla);
    return 0;
}
