/* Sequence parallelism with libhla over MPI (docs/spec.md section 10): each rank holds a contiguous
 * time slice of the same B sequences; the forward pass is
 *
 *   1. hla_summarize of the local slice, written straight into the rank's Exscan row(s);
 *   2. MPI_Exscan of those rows with a user operator (commute = 0) that calls hla_summary_combine:
 *      MPI calls it as f(invec, inoutvec) with invec from the lower ranks (earlier tokens), so it
 *      computes inoutvec = combine(invec, inoutvec). Rank r > 0 receives the summary of ranks 0..r-1
 *      and turns it into a state row with hla_summary_to_state; rank 0's result is undefined by MPI
 *      and unused (rank 0 starts from the zero state);
 *   3. hla_forward of the local slice from that carry-in. The last rank's final state is the state
 *      after the whole sequence; MPI_Bcast sends it to every rank.
 *
 * and the backward pass (the sequential chain; docs/scaling.md, "Backward") reuses the carry-in:
 *
 *   4. the last rank starts from d_final = dL/d(final state); rank r < P-1 receives its d_final (B rows
 *      of n state numbers) from rank r+1 (MPI_Recv), runs hla_backward(initial = carry-in, d_final) and
 *      sends the resulting d_initial = dL/d(its carry-in) = dL/d(rank r-1's final state) to rank r-1.
 *
 * One Exscan element per sequence, an MPI datatype of row_bytes = 8 + ceil8(m * itemsize) bytes: the
 * int64 segment length (the combine's decay needs it), then the m summary numbers (float32, or float64
 * for float64 inputs), then padding. m = hla_summary_elements(cfg).
 *
 * Parity: every rank generates the whole input (deterministic), runs hla_forward over the whole
 * sequence in one process (float64), and compares its slice of the outputs and the broadcast final
 * state with it: max-norm relative error <= 1e-10 for float64 and <= 1e-4 for float32 (SPEC section 4,
 * float32 against a float64 evaluation of the same inputs); likewise its slice of dq, dk, dv against
 * hla_backward over the whole sequence (with a non-zero d_final; float64 <= 1e-10, float32 <= 2e-3).
 * Runs every operator, masked and unmasked, with decay and normalize, float64 and float32, B = 2, grouped
 * heads, unequal slices with a rank of one token. Exits non-zero on any disagreement or error (on every
 * rank).
 *
 *   mpirun -n 4 build/seq_parallel                 # the parity grid (forward and backward)
 *   mpirun -n 4 build/seq_parallel --T 65536 --op hla3 --dtype f32 --heads 8 --d 64 --B 1
 *                                                  # one configuration, with per-phase timings
 *   ... --backward                                 # also the backward chain (its float64 reference
 *                                                  # needs 4 * B*T*H*d doubles more per rank)
 */
#define _POSIX_C_SOURCE 200809L
#include <hla.h>
#include <mpi.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank_, nranks;

static void die(const char *what, hla_status st)
{
    fprintf(stderr, "seq_parallel (rank %d): %s failed: %s: %s\n", rank_, what, hla_status_string(st),
            hla_last_error());
    MPI_Abort(MPI_COMM_WORLD, 3);
}

#define CHECK(call) do { hla_status st_ = (call); if (st_ != HLA_OK) die(#call, st_); } while (0)

/* ---- deterministic unit-normal inputs (identical on every rank) ---- */
static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void fill_normal(double *x, int64_t count, uint64_t seed, int positive)
{
    int64_t i;
    for (i = 0; i < count; i++) {
        double u1 = ((double)(splitmix(&seed) >> 11) + 0.5) / 9007199254740992.0;
        double u2 = ((double)(splitmix(&seed) >> 11) + 0.5) / 9007199254740992.0;
        double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
        z = (double)(float)z;                   /* float32 and float64 runs see the same inputs */
        x[i] = positive ? fabs(z) : z;
    }
}

/* ---- the Exscan row and the user operator ---- */
typedef struct {
    hla_config cfg;
    int dtype;          /* HLA_FLOAT32 or HLA_FLOAT64: the summary dtype */
    int64_t m;          /* summary elements */
    int64_t row_bytes;  /* 8 + ceil8(m * itemsize) */
} scan_ctx;

static scan_ctx ctx;   /* what the MPI user function needs (it gets no user pointer) */

static int64_t itemsize(int dtype) { return dtype == HLA_FLOAT64 ? 8 : 4; }

/* Views of `rows` Exscan rows at `base`: summary [rows, m] (after the length) and lengths [rows]. */
static void row_views(void *base, int64_t rows, hla_tensor *summary, hla_tensor *lengths)
{
    int64_t shape[2] = {rows, ctx.m};
    int64_t strides[2] = {ctx.row_bytes / itemsize(ctx.dtype), 1};
    int64_t lshape[1] = {rows}, lstrides[1] = {ctx.row_bytes / 8};
    CHECK(hla_tensor_init(summary, (char *)base + 8, ctx.dtype, 2, shape, strides));
    CHECK(hla_tensor_init(lengths, base, HLA_INT64, 1, lshape, lstrides));
}

/* MPI user function: inoutvec[i] <- combine(invec[i], inoutvec[i]) for the *len rows. */
static void combine_op(void *invec, void *inoutvec, int *len, MPI_Datatype *datatype)
{
    hla_tensor a, al, b, bl;
    (void)datatype;
    row_views(invec, *len, &a, &al);
    row_views(inoutvec, *len, &b, &bl);
    CHECK(hla_summary_combine(&ctx.cfg, &a, &al, &b, &bl, &b, &bl));
}

/* ---- one configuration ---- */
typedef struct {
    int op, masked, normalize, dtype;
    double decay;
    int64_t B, T, H, Hkv, dk, dv;
    int one_token_rank;  /* rank with a single token, or -1 for a proportional split */
} case_t;

/* Slice lengths: rank r gets a share of the tokens proportional to 2 + (r % 3) (the rounding remainder
 * goes to the first such rank); rank one_token_rank, if >= 0, gets exactly 1 token. Returns the start
 * of this rank's slice and its length in *len. Needs T >= 4 * ranks. */
static int64_t my_slice(const case_t *c, int64_t *len)
{
    int64_t l[1024], w = 0, rest, start = 0, r, first = -1;
    int64_t tokens = c->T - (c->one_token_rank >= 0 ? 1 : 0);
    for (r = 0; r < nranks; r++) if (r != c->one_token_rank) w += 2 + r % 3;
    rest = tokens;
    for (r = 0; r < nranks; r++) {
        if (r == c->one_token_rank) { l[r] = 1; continue; }
        if (first < 0) first = r;
        l[r] = tokens * (2 + r % 3) / w;
        rest -= l[r];
    }
    if (first >= 0) l[first] += rest;
    for (r = 0; r < rank_; r++) start += l[r];
    *len = l[rank_];
    return start;
}

static hla_tensor tensor4(void *data, int dtype, int64_t a, int64_t b, int64_t c, int64_t d)
{
    hla_tensor t;
    int64_t shape[4] = {a, b, c, d};
    CHECK(hla_tensor_init(&t, data, dtype, 4, shape, NULL));
    return t;
}

static hla_tensor tensor2(void *data, int dtype, int64_t a, int64_t b)
{
    hla_tensor t;
    int64_t shape[2] = {a, b};
    CHECK(hla_tensor_init(&t, data, dtype, 2, shape, NULL));
    return t;
}

/* A [B, len, Hh, D] slice starting at token `start` of a [B, T, Hh, D] float64 array, in dtype. */
static void *slice_as(const double *x, int64_t B, int64_t T, int64_t Hh, int64_t D, int64_t start,
                      int64_t len, int dtype)
{
    int64_t row = Hh * D, b, i;
    void *out = malloc((size_t)(B * len * row) * (size_t)itemsize(dtype));
    if (!out) { fprintf(stderr, "out of memory\n"); MPI_Abort(MPI_COMM_WORLD, 4); }
    for (b = 0; b < B; b++)
        for (i = 0; i < len * row; i++) {
            double val = x[(b * T + start) * row + i];
            if (dtype == HLA_FLOAT64) ((double *)out)[b * len * row + i] = val;
            else ((float *)out)[b * len * row + i] = (float)val;
        }
    return out;
}

static double get(const void *p, int dtype, int64_t i)
{
    return dtype == HLA_FLOAT64 ? ((const double *)p)[i] : (double)((const float *)p)[i];
}

static double wall(void) { return MPI_Wtime(); }

typedef struct { double summarize, exscan, to_state, forward, bcast, total, chain, backward; } timings;

/* The sequence-parallel forward of this rank's slice: out [B, len, H, dv], final [B, n] on every rank;
 * carry [B, n] (caller's memory, zeroed) receives this rank's carry-in (left zero on rank 0). */
static void seq_parallel_forward(const case_t *c, const hla_tensor *q, const hla_tensor *k,
                                 const hla_tensor *v, const hla_tensor *out, void *final_rows,
                                 void *carry, timings *tm)
{
    int64_t n, B = c->B;
    MPI_Datatype row_type;
    MPI_Op op;
    char *send, *recv;
    hla_tensor sum_t, len_t, carry_t, final_t;
    double t0 = wall(), t1;

    CHECK(hla_summary_elements(&ctx.cfg, &ctx.m));
    CHECK(hla_state_elements(&ctx.cfg, &n));
    ctx.row_bytes = 8 + (ctx.m * itemsize(ctx.dtype) + 7) / 8 * 8;
    send = calloc((size_t)B, (size_t)ctx.row_bytes);
    recv = calloc((size_t)B, (size_t)ctx.row_bytes);
    if (!send || !recv) { fprintf(stderr, "out of memory\n"); MPI_Abort(MPI_COMM_WORLD, 4); }

    /* 1. local summary, into the Exscan rows (one rank alone needs none: its carry-in is zero) */
    row_views(send, B, &sum_t, &len_t);
    if (nranks > 1) CHECK(hla_summarize(&ctx.cfg, q, k, v, NULL, &sum_t, &len_t));
    t1 = wall(), tm->summarize = t1 - t0, t0 = t1;

    /* 2. carry-in: exclusive scan in rank (= time) order, non-commutative */
    if (nranks > 1) {
        MPI_Type_contiguous((int)ctx.row_bytes, MPI_BYTE, &row_type);
        MPI_Type_commit(&row_type);
        MPI_Op_create(combine_op, 0, &op);
        MPI_Exscan(send, recv, (int)B, row_type, op, MPI_COMM_WORLD);
        MPI_Op_free(&op);
        MPI_Type_free(&row_type);
    }
    t1 = wall(), tm->exscan = t1 - t0, t0 = t1;
    carry_t = tensor2(carry, ctx.dtype, B, n);
    if (rank_ > 0) {
        row_views(recv, B, &sum_t, &len_t);
        CHECK(hla_summary_to_state(&ctx.cfg, &sum_t, &carry_t, NULL));
    }
    t1 = wall(), tm->to_state = t1 - t0, t0 = t1;

    /* 3. local forward from the carry-in; the last rank's final state is the whole sequence's */
    final_t = tensor2(final_rows, ctx.dtype, B, n);
    CHECK(hla_forward(&ctx.cfg, HLA_PATH_CHUNKED, q, k, v, out, NULL, rank_ > 0 ? &carry_t : NULL,
                      rank_ == nranks - 1 ? &final_t : NULL, NULL));
    t1 = wall(), tm->forward = t1 - t0, t0 = t1;
    MPI_Bcast(final_rows, (int)(B * n), ctx.dtype == HLA_FLOAT64 ? MPI_DOUBLE : MPI_FLOAT,
              nranks - 1, MPI_COMM_WORLD);
    tm->bcast = wall() - t0;
    tm->total = tm->summarize + tm->exscan + tm->to_state + tm->forward + tm->bcast;
    free(send), free(recv);
}

/* The sequence-parallel backward of this rank's slice (the sequential chain): d_out [B, len, H, dv] ->
 * dq, dk, dv of the slice. carry: this rank's carry-in from seq_parallel_forward; d_final_rows [B, n]:
 * dL/d(state after the whole sequence), read on the last rank. tm->chain is the whole step (waiting for
 * d_final included), tm->backward the local hla_backward alone. */
static void seq_parallel_backward(const case_t *c, const hla_tensor *q, const hla_tensor *k,
                                  const hla_tensor *v, const hla_tensor *d_out, const hla_tensor *dq,
                                  const hla_tensor *dk, const hla_tensor *dv, void *carry,
                                  const void *d_final_rows, timings *tm)
{
    int64_t n, B = c->B;
    MPI_Datatype state_type = ctx.dtype == HLA_FLOAT64 ? MPI_DOUBLE : MPI_FLOAT;
    void *buf;
    hla_tensor carry_t, cot_t;
    double t0 = wall(), t1;

    CHECK(hla_state_elements(&ctx.cfg, &n));
    buf = malloc((size_t)(B * n) * (size_t)itemsize(ctx.dtype));
    if (!buf) { fprintf(stderr, "out of memory\n"); MPI_Abort(MPI_COMM_WORLD, 4); }
    /* d_final of this slice: the whole sequence's on the last rank, else rank r+1's d_initial */
    if (rank_ == nranks - 1) memcpy(buf, d_final_rows, (size_t)(B * n) * (size_t)itemsize(ctx.dtype));
    else MPI_Recv(buf, (int)(B * n), state_type, rank_ + 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    carry_t = tensor2(carry, ctx.dtype, B, n);
    cot_t = tensor2(buf, ctx.dtype, B, n);   /* d_initial overwrites d_final in place (allowed) */
    t1 = wall();
    CHECK(hla_backward(&ctx.cfg, HLA_PATH_CHUNKED, q, k, v, d_out, dq, dk, dv, NULL,
                       rank_ > 0 ? &carry_t : NULL, &cot_t, rank_ > 0 ? &cot_t : NULL));
    tm->backward = wall() - t1;
    if (rank_ > 0) MPI_Send(buf, (int)(B * n), state_type, rank_ - 1, 0, MPI_COMM_WORLD);
    tm->chain = wall() - t0;
    free(buf);
}

static const char *op_names[3] = {"hla2", "ahla", "hla3"};

/* Max-norm relative error of this rank's slice [B, len, row] (at token `start` of [B, T, row]) of x
 * against the whole-sequence float64 ref, over all ranks. */
static double slice_error(const void *x, int dtype, const double *ref, int64_t B, int64_t T, int64_t row,
                          int64_t start, int64_t len)
{
    double num = 0, den = 0;
    int64_t b, i;
    for (i = 0; i < B * T * row; i++) if (fabs(ref[i]) > den) den = fabs(ref[i]);
    for (b = 0; b < B; b++)
        for (i = 0; i < len * row; i++) {
            double e = fabs(get(x, dtype, b * len * row + i) - ref[(b * T + start) * row + i]);
            if (!(e <= num)) num = e;             /* NaN propagates */
        }
    MPI_Allreduce(MPI_IN_PLACE, &num, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return den > 0 ? num / den : num;
}

/* Runs one case; returns the worst relative errors (outputs, final state, gradients dq/dk/dv) in
 * err[0..2] (all ranks); the backward runs when `backward` is set (else err[2] = 0). */
static void run_case(const case_t *c, int check, int backward, double err[3], timings *tm)
{
    int64_t B = c->B, T = c->T, H = c->H, Hkv = c->Hkv, dk = c->dk, dv = c->dv, n, start, len = 0;
    int pos = c->normalize && c->dtype == HLA_FLOAT32;   /* positive features: well-conditioned den */
    uint64_t seed = 1000003u * (uint64_t)(c->op + 1) + 7919u * (uint64_t)T + (uint64_t)c->masked;
    double *q = malloc(sizeof(double) * (size_t)(B * T * H * dk));
    double *k = malloc(sizeof(double) * (size_t)(B * T * Hkv * dk));
    double *v = malloc(sizeof(double) * (size_t)(B * T * Hkv * dv));
    void *ql, *kl, *vl, *ol, *fin, *carry;
    hla_tensor qt, kt, vt, ot;

    if (!q || !k || !v) { fprintf(stderr, "out of memory\n"); MPI_Abort(MPI_COMM_WORLD, 4); }
    fill_normal(q, B * T * H * dk, seed, pos);
    fill_normal(k, B * T * Hkv * dk, seed ^ 0x1234567u, pos);
    fill_normal(v, B * T * Hkv * dv, seed ^ 0x7654321u, 0);

    hla_config_init(&ctx.cfg, sizeof ctx.cfg);
    ctx.cfg.op = c->op, ctx.cfg.masked = c->masked, ctx.cfg.normalize = c->normalize;
    ctx.cfg.heads = H, ctx.cfg.kv_heads = Hkv, ctx.cfg.dk = dk, ctx.cfg.dv = dv;
    ctx.cfg.decay = c->decay, ctx.cfg.scale = 1.0 / sqrt((double)dk);
    ctx.dtype = c->dtype;
    CHECK(hla_state_elements(&ctx.cfg, &n));

    start = my_slice(c, &len);
    ql = slice_as(q, B, T, H, dk, start, len, c->dtype);
    kl = slice_as(k, B, T, Hkv, dk, start, len, c->dtype);
    vl = slice_as(v, B, T, Hkv, dv, start, len, c->dtype);
    ol = malloc((size_t)(B * len * H * dv) * (size_t)itemsize(c->dtype));
    fin = malloc((size_t)(B * n) * (size_t)itemsize(c->dtype));
    carry = calloc((size_t)(B * n), (size_t)itemsize(c->dtype));
    if (!ol || !fin || !carry) { fprintf(stderr, "out of memory\n"); MPI_Abort(MPI_COMM_WORLD, 4); }
    qt = tensor4(ql, c->dtype, B, len, H, dk);
    kt = tensor4(kl, c->dtype, B, len, Hkv, dk);
    vt = tensor4(vl, c->dtype, B, len, Hkv, dv);
    ot = tensor4(ol, c->dtype, B, len, H, dv);

    MPI_Barrier(MPI_COMM_WORLD);
    seq_parallel_forward(c, &qt, &kt, &vt, &ot, fin, carry, tm);

    err[0] = err[1] = err[2] = 0;
    if (check) {   /* one process, whole sequence, float64 */
        double *O = malloc(sizeof(double) * (size_t)(B * T * H * dv));
        double *F = malloc(sizeof(double) * (size_t)(B * n));
        hla_tensor Qt = tensor4(q, HLA_FLOAT64, B, T, H, dk), Kt = tensor4(k, HLA_FLOAT64, B, T, Hkv, dk);
        hla_tensor Vt = tensor4(v, HLA_FLOAT64, B, T, Hkv, dv), Ot = tensor4(O, HLA_FLOAT64, B, T, H, dv);
        hla_tensor Ft = tensor2(F, HLA_FLOAT64, B, n);
        double num = 0, den = 0, fnum = 0, fden = 0;
        int64_t b, i, row = H * dv;
        if (!O || !F) { fprintf(stderr, "out of memory\n"); MPI_Abort(MPI_COMM_WORLD, 4); }
        CHECK(hla_forward(&ctx.cfg, HLA_PATH_CHUNKED, &Qt, &Kt, &Vt, &Ot, NULL, NULL, &Ft, NULL));
        for (i = 0; i < B * T * row; i++) if (fabs(O[i]) > den) den = fabs(O[i]);
        for (b = 0; b < B; b++)
            for (i = 0; i < len * row; i++) {
                double e = fabs(get(ol, c->dtype, b * len * row + i) - O[(b * T + start) * row + i]);
                if (!(e <= num)) num = e;         /* NaN propagates */
            }
        for (i = 0; i < B * n; i++) {
            double e = fabs(get(fin, c->dtype, i) - F[i]);
            if (!(e <= fnum)) fnum = e;
            if (fabs(F[i]) > fden) fden = fabs(F[i]);
        }
        err[0] = den > 0 ? num / den : num;
        err[1] = fden > 0 ? fnum / fden : fnum;
        free(O), free(F);
    }
    if (backward) {   /* the chain, then (check) one process's hla_backward over the whole sequence */
        double *dO = malloc(sizeof(double) * (size_t)(B * T * H * dv));
        double *dF = malloc(sizeof(double) * (size_t)(B * n));
        void *dol, *dfl, *dql, *dkl, *dvl;
        hla_tensor dot, dqt, dkt, dvt;
        int64_t i;
        if (!dO || !dF) { fprintf(stderr, "out of memory\n"); MPI_Abort(MPI_COMM_WORLD, 4); }
        fill_normal(dO, B * T * H * dv, seed ^ 0xABCDEFu, 0);
        fill_normal(dF, B * n, seed ^ 0x5A5A5Au, 0);
        dol = slice_as(dO, B, T, H, dv, start, len, c->dtype);
        dfl = slice_as(dF, 1, 1, 1, B * n, 0, 1, c->dtype);
        dql = malloc((size_t)(B * len * H * dk) * (size_t)itemsize(c->dtype));
        dkl = malloc((size_t)(B * len * Hkv * dk) * (size_t)itemsize(c->dtype));
        dvl = malloc((size_t)(B * len * Hkv * dv) * (size_t)itemsize(c->dtype));
        if (!dql || !dkl || !dvl) { fprintf(stderr, "out of memory\n"); MPI_Abort(MPI_COMM_WORLD, 4); }
        dot = tensor4(dol, c->dtype, B, len, H, dv);
        dqt = tensor4(dql, c->dtype, B, len, H, dk);
        dkt = tensor4(dkl, c->dtype, B, len, Hkv, dk);
        dvt = tensor4(dvl, c->dtype, B, len, Hkv, dv);
        MPI_Barrier(MPI_COMM_WORLD);
        seq_parallel_backward(c, &qt, &kt, &vt, &dot, &dqt, &dkt, &dvt, carry, dfl, tm);
        if (check) {
            double *DQ = malloc(sizeof(double) * (size_t)(B * T * H * dk));
            double *DK = malloc(sizeof(double) * (size_t)(B * T * Hkv * dk));
            double *DV = malloc(sizeof(double) * (size_t)(B * T * Hkv * dv));
            hla_tensor Qt = tensor4(q, HLA_FLOAT64, B, T, H, dk), Kt = tensor4(k, HLA_FLOAT64, B, T, Hkv, dk);
            hla_tensor Vt = tensor4(v, HLA_FLOAT64, B, T, Hkv, dv), DOt = tensor4(dO, HLA_FLOAT64, B, T, H, dv);
            hla_tensor DQt, DKt, DVt, DFt = tensor2(dF, HLA_FLOAT64, B, n);
            double e[3];
            if (!DQ || !DK || !DV) { fprintf(stderr, "out of memory\n"); MPI_Abort(MPI_COMM_WORLD, 4); }
            DQt = tensor4(DQ, HLA_FLOAT64, B, T, H, dk);
            DKt = tensor4(DK, HLA_FLOAT64, B, T, Hkv, dk);
            DVt = tensor4(DV, HLA_FLOAT64, B, T, Hkv, dv);
            CHECK(hla_backward(&ctx.cfg, HLA_PATH_CHUNKED, &Qt, &Kt, &Vt, &DOt, &DQt, &DKt, &DVt, NULL,
                               NULL, &DFt, NULL));
            e[0] = slice_error(dql, c->dtype, DQ, B, T, H * dk, start, len);
            e[1] = slice_error(dkl, c->dtype, DK, B, T, Hkv * dk, start, len);
            e[2] = slice_error(dvl, c->dtype, DV, B, T, Hkv * dv, start, len);
            for (i = 0; i < 3; i++) if (!(e[i] <= err[2])) err[2] = e[i];
            free(DQ), free(DK), free(DV);
        }
        free(dO), free(dF), free(dol), free(dfl), free(dql), free(dkl), free(dvl);
    }
    free(q), free(k), free(v), free(ql), free(kl), free(vl), free(ol), free(fin), free(carry);
}

int main(int argc, char **argv)
{
    int i, failures = 0, cases = 0, single = 0, single_backward = 0;
    case_t one = {HLA_OP_HLA2, 1, 0, HLA_FLOAT32, 1.0, 1, 4096, 8, 8, 64, 64, -1};
    double worst[2][2][3] = {{{0, 0, 0}, {0, 0, 0}}, {{0, 0, 0}, {0, 0, 0}}};  /* [f64/f32][raw/normalized][out/final/grad] */

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    if (nranks > 1024) { if (rank_ == 0) fprintf(stderr, "at most 1024 ranks\n"); MPI_Abort(MPI_COMM_WORLD, 2); }
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : "";
        single = 1;
        if (!strcmp(a, "--T")) one.T = atoll(val), i++;
        else if (!strcmp(a, "--B")) one.B = atoll(val), i++;
        else if (!strcmp(a, "--heads")) one.H = one.Hkv = atoll(val), i++;
        else if (!strcmp(a, "--d")) one.dk = one.dv = atoll(val), i++;
        else if (!strcmp(a, "--decay")) one.decay = atof(val), i++;
        else if (!strcmp(a, "--unmasked")) one.masked = 0;
        else if (!strcmp(a, "--normalize")) one.normalize = 1;
        else if (!strcmp(a, "--backward")) single_backward = 1;
        else if (!strcmp(a, "--dtype")) one.dtype = strcmp(val, "f64") ? HLA_FLOAT32 : HLA_FLOAT64, i++;
        else if (!strcmp(a, "--op")) {
            one.op = !strcmp(val, "ahla") ? HLA_OP_AHLA : !strcmp(val, "hla3") ? HLA_OP_HLA3 : HLA_OP_HLA2;
            i++;
        } else {
            if (rank_ == 0)
                fprintf(stderr, "usage: seq_parallel [--T n] [--B n] [--heads n] [--d n] [--op hla2|ahla|hla3] "
                                "[--dtype f32|f64] [--decay g] [--unmasked] [--normalize] [--backward]\n");
            MPI_Finalize();
            return 2;
        }
    }
    if (one.T < 4 * nranks) one.T = 4 * nranks;

    if (single) {   /* one configuration: parity and the time of each phase (max over ranks) */
        double err[3], t[8], tmax[8];
        timings tm;
        memset(&tm, 0, sizeof tm);
        run_case(&one, 1, single_backward, err, &tm);
        t[0] = tm.summarize, t[1] = tm.exscan, t[2] = tm.to_state, t[3] = tm.forward, t[4] = tm.bcast, t[5] = tm.total;
        t[6] = tm.chain, t[7] = tm.backward;
        MPI_Allreduce(t, tmax, 8, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        MPI_Allreduce(MPI_IN_PLACE, err, 3, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        failures = !(err[0] <= (one.dtype == HLA_FLOAT64 ? 1e-10 : 1e-4)) || !(err[1] <= (one.dtype == HLA_FLOAT64 ? 1e-10 : 1e-4))
                   || !(err[2] <= (one.dtype == HLA_FLOAT64 ? 1e-10 : 2e-3));
        if (rank_ == 0) {
            printf("seq_parallel %s %s B=%lld T=%lld H=%lld d=%lld, %d ranks: output error %.2e, final "
                   "state error %.2e\n", op_names[one.op], one.dtype == HLA_FLOAT64 ? "float64" : "float32",
                   (long long)one.B, (long long)one.T, (long long)one.H, (long long)one.dk, nranks, err[0], err[1]);
            printf("  max over ranks (ms; exscan and bcast include waiting for the other ranks): summarize %.3f  "
                   "exscan %.3f  summary_to_state %.3f  forward %.3f  bcast %.3f  total %.3f\n", 1e3 * tmax[0], 1e3 * tmax[1], 1e3 * tmax[2], 1e3 * tmax[3],
                   1e3 * tmax[4], 1e3 * tmax[5]);
            if (single_backward)
                printf("  backward: gradient error %.2e; chain (max over ranks, waiting included) %.3f ms, local "
                       "hla_backward (max over ranks) %.3f ms\n", err[2], 1e3 * tmax[6], 1e3 * tmax[7]);
            printf("%s\n", failures ? "FAILED" : "OK");
        }
        MPI_Finalize();
        return failures ? 1 : 0;
    }

    {   /* the parity grid */
        static const struct { int masked, normalize; double decay; } variants[4] = {
            {1, 0, 1.0}, {1, 1, 0.9}, {0, 0, 0.95}, {0, 1, 1.0}};
        int op, vi, di;
        for (op = 0; op < 3; op++)
            for (vi = 0; vi < 4; vi++)
                for (di = 0; di < 2; di++) {
                    case_t c;
                    double err[3], tol, gtol;
                    timings tm;
                    c.op = op, c.masked = variants[vi].masked, c.normalize = variants[vi].normalize;
                    c.decay = variants[vi].decay, c.dtype = di ? HLA_FLOAT32 : HLA_FLOAT64;
                    c.B = 2, c.H = 4, c.Hkv = 2, c.dk = 16, c.dv = 8;
                    c.T = 61 + 7 * cases;
                    c.one_token_rank = nranks > 1 ? cases % nranks : -1;
                    run_case(&c, 1, 1, err, &tm);
                    MPI_Allreduce(MPI_IN_PLACE, err, 3, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
                    tol = di ? 1e-4 : 1e-10;
                    gtol = di ? 2e-3 : 1e-10;
                    for (i = 0; i < 3; i++)
                        if (!(err[i] <= worst[di][c.normalize][i])) worst[di][c.normalize][i] = err[i];
                    if (!(err[0] <= tol && err[1] <= tol && err[2] <= gtol)) {
                        failures++;
                        if (rank_ == 0)
                            printf("FAIL %s %s masked=%d normalize=%d decay=%g T=%lld: output %.2e, final %.2e "
                                   "(tolerance %.0e), gradients %.2e (tolerance %.0e)\n",
                                   op_names[op], di ? "float32" : "float64", c.masked, c.normalize, c.decay,
                                   (long long)c.T, err[0], err[1], tol, err[2], gtol);
                    }
                    cases++;
                }
    }
    if (rank_ == 0) {
        printf("seq_parallel: %d ranks, %d cases (3 ops x masked/unmasked x decay/normalize x float64/float32, "
               "B=2, one rank of 1 token)\n", nranks, cases);
        printf("  float64: outputs %.2e (normalized %.2e), final state %.2e (normalized %.2e); tolerance 1e-10\n",
               worst[0][0][0], worst[0][1][0], worst[0][0][1], worst[0][1][1]);
        printf("  float32: outputs %.2e (normalized %.2e), final state %.2e (normalized %.2e); tolerance 1e-4, "
               "against float64\n", worst[1][0][0], worst[1][1][0], worst[1][0][1], worst[1][1][1]);
        printf("  backward chain, dq/dk/dv: float64 %.2e (normalized %.2e), tolerance 1e-10; float32 %.2e "
               "(normalized %.2e), tolerance 2e-3, against float64\n",
               worst[0][0][2], worst[0][1][2], worst[1][0][2], worst[1][1][2]);
        printf("%s\n", failures ? "FAILED" : "OK");
    }
    MPI_Finalize();
    return failures ? 1 : 0;
}
