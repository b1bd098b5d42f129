/* libFuzzer harness: a small configuration, tensors, strides, states and index tensors decoded from the
 * input bytes, run through hla_forward (chunked, serial, scan), hla_reference, an hla_step loop,
 * hla_summarize + hla_summary_combine + hla_summary_to_state, and the checkpoints of docs/gradients.md
 * section 11 (hla_checkpoint_rows, hla_forward_checkpoints, hla_backward vs hla_backward_checkpoints).
 *
 * Checks (abort() on failure, so libFuzzer keeps the input):
 *  - every tensor lives in its own allocation of exactly its described extent (ASan sees any stray access);
 *  - inputs (q, k, v, cu_seqlens, rows, a separate initial state) are never written;
 *  - hla_forward returns HLA_OK exactly when the decoder built a valid call (the decoder tracks every
 *    invalid value it injects), and a failed call leaves every output buffer untouched (sentinel);
 *  - a successful call writes nothing outside the addressed elements (gaps, unused state rows);
 *  - valid float64 calls: chunked, serial, scan, hla_reference (zero initial state), the hla_step loop and
 *    summaries (split, combined, identity, to_state) agree to relative error <= 1e-9 (max-norm); with
 *    normalize, rows whose denominator is ill-conditioned (sum of |terms| > 1e6 |den + eps|) are skipped;
 *    with NaN/Inf inputs, only outputs before the first non-finite token of each sequence are compared
 *    (causality, docs/spec.md section 4) and only clean sequences' states;
 *  - the configuration: struct_size sizeof, sizeof + 8 (zero tail), or 88 (the struct of headers 1.0 and 1.1,
 *    in an allocation of exactly 88 bytes: hla_config_init fills those with the defaults, every call takes
 *    checkpoint_every as 0 and ASan sees any access past them); invalid: a nonzero tail, 80, 87, 70000;
 *  - checkpoints, every valid call (all element types, finite or not), with a checkpoint_every drawn for the
 *    checkpoint calls (0..5, the call's chunk count, one more, 2^40, INT64_MAX; the reference hla_forward and
 *    hla_backward keep the case's configuration, checkpoint_every 0): hla_checkpoint_rows(B, T, N or 0)
 *    gives the stride chunk * min(checkpoint_every, chunks), or ceil(sqrt(chunks)) chunks for 0, and rows
 *    B (T - 1) / stride or (T - N) / stride, at
 *    least the sum over sequences of (len - 1) / stride the call writes; it refuses batch < 1, tokens < 1,
 *    sequences out of range or with batch > 1, NULL pointers, and reports HLA_ERR_OVERFLOW exactly when
 *    rows exceed INT64_MAX (tokens up to INT64_MAX; a stride past INT64_MAX must come back as a positive
 *    stride with 0 rows, or HLA_ERR_OVERFLOW). hla_forward_checkpoints with the case's arguments and
 *    a [rows, n] tensor of exactly those rows (own allocation; row padding, negative stride, data NULL when
 *    empty) succeeds, writes outputs and final state bit for bit those of the chunked hla_forward, writes
 *    nothing outside them (gaps, unused state rows) and leaves every checkpoint byte past the rows needed
 *    at the sentinel; float64: checkpoint j of sequence i is within TOL of a serial forward's final state
 *    over its first (j + 1) stride tokens (clean prefixes only). Then (always when the call writes
 *    checkpoints, else one case in four), from an hla_forward_checkpoints
 *    with the initial rows gathered into [N, n] (its outputs and checkpoints bit for bit the case's),
 *    hla_backward (chunked) and hla_backward_checkpoints with d_out from the input, optional d_final and
 *    d_initial (apart, or the same memory as initial or d_final) succeed, write neither inputs, d_out nor
 *    checkpoints, and (finite inputs: see crashes-found/README.md) give dq, dk, dv, d_initial bit for bit
 *    alike; so does hla_backward with the drawn checkpoint_every (its own carries) when it is not 0;
 *  - a negative checkpoint_every (one valid case in sixteen: -1..-8 or INT64_MIN): hla_config_validate,
 *    hla_checkpoint_rows, hla_forward, hla_forward_checkpoints, hla_backward and hla_backward_checkpoints
 *    return HLA_ERR_INVALID_ARGUMENT naming checkpoint_every and write nothing;
 *  - refused checkpoint tensors (sometimes, on a valid call, forward or backward): too few rows (when the
 *    call needs some), another dtype, wrong n, rank, strides[1] = 2, overlapping rows, data NULL, a NULL
 *    tensor: the call fails and writes nothing (outputs, final, gradients, d_initial, checkpoints);
 *  - invalid calls: hla_forward_checkpoints with the same arguments and a checkpoint tensor of the bound's
 *    rows fails too and writes nothing.
 * The bytes of the checkpoint checks are read last (the input's while it lasts, then the generator's).
 * The input layout is documented next to each decode step below; make_corpus.py writes valid seeds.
 */
#include <math.h>
#include <stddef.h>
#include "fuzz_common.h"

#define TOL 1e-9
#define SENT 0xA5

/* ---------------------------------------------------------------------------------------------------- */
/* Tensors in exact allocations                                                                         */

typedef struct {
    uint8_t *mem;      /* allocation */
    size_t bytes;
    size_t es;         /* element size */
    hla_tensor t;      /* descriptor handed to the library */
    int unallocated;   /* strides too large to allocate (the call must reject them) */
} tbuf;

static size_t dtype_size(int32_t d) {
    switch (d) {
    case HLA_FLOAT64: case HLA_INT64: return 8;
    case HLA_FLOAT32: case HLA_INT32: return 4;
    case HLA_BFLOAT16: case HLA_FLOAT16: return 2;
    default: return 8;
    }
}

static const int64_t LIM = (INT64_MAX / 16);   /* 2^59 - 1: largest size, |stride| and extent */

/* Allocate exactly the extent of shape/strides; data points at element [0,...]. Strides that the library
 * must reject (|stride| or extent > 2^59 - 1) get a 1-element allocation. */
static void tb_alloc(tbuf *b, int32_t dtype, int ndim, const int64_t *shape, const int64_t *strides, uint8_t fill) {
    memset(b, 0, sizeof *b);
    b->es = dtype_size(dtype);
    b->t.dtype = dtype;
    b->t.ndim = ndim;
    int64_t lo = 0, hi = 0;
    int empty = 0;
    for (int i = 0; i < ndim && i < 4; i++) {
        b->t.shape[i] = shape[i];
        b->t.strides[i] = strides[i];
        if (shape[i] <= 0) { empty = 1; continue; }
        if (strides[i] > LIM || strides[i] < -LIM || shape[i] > LIM) { b->unallocated = 1; continue; }
        __int128 e = (__int128)strides[i] * (shape[i] - 1);
        if (e > LIM || e < -LIM) { b->unallocated = 1; continue; }
        if (e < 0) lo += (int64_t)e; else hi += (int64_t)e;
    }
    if (hi - lo > (1 << 24)) b->unallocated = 1;
    if (b->unallocated) {
        b->bytes = b->es;
        b->mem = (uint8_t *)xmalloc(b->bytes);
        memset(b->mem, fill, b->bytes);
        b->t.data = b->mem;
        return;
    }
    b->bytes = empty ? 0 : (size_t)(hi - lo + 1) * b->es;
    b->mem = (uint8_t *)xmalloc(b->bytes);
    memset(b->mem, fill, b->bytes);
    b->t.data = b->mem - lo * (int64_t)b->es;
    if (empty) b->t.data = b->mem;
}

static void tb_free(tbuf *b) { free(b->mem); b->mem = NULL; }

static int64_t tb_off(const tbuf *b, const int64_t *idx) {
    int64_t o = 0;
    for (int i = 0; i < b->t.ndim; i++) o += idx[i] * b->t.strides[i];
    return o;
}

static double ld_elem(const tbuf *b, int64_t o) {
    const uint8_t *p = (const uint8_t *)b->t.data + o * (int64_t)b->es;
    switch (b->t.dtype) {
    case HLA_FLOAT64: { double x; memcpy(&x, p, 8); return x; }
    case HLA_FLOAT32: { float x; memcpy(&x, p, 4); return x; }
    case HLA_BFLOAT16: { uint16_t h; memcpy(&h, p, 2); uint32_t u = (uint32_t)h << 16; float x; memcpy(&x, &u, 4); return x; }
    case HLA_FLOAT16: { _Float16 x; memcpy(&x, p, 2); return (double)x; }
    case HLA_INT64: { int64_t x; memcpy(&x, p, 8); return (double)x; }
    case HLA_INT32: { int32_t x; memcpy(&x, p, 4); return (double)x; }
    }
    return 0;
}

static void st_elem(tbuf *b, int64_t o, double v) {
    uint8_t *p = (uint8_t *)b->t.data + o * (int64_t)b->es;
    switch (b->t.dtype) {
    case HLA_FLOAT64: memcpy(p, &v, 8); break;
    case HLA_FLOAT32: { float x = (float)v; memcpy(p, &x, 4); break; }
    case HLA_BFLOAT16: { float x = (float)v; uint32_t u; memcpy(&u, &x, 4); uint16_t h = (uint16_t)(u >> 16); memcpy(p, &h, 2); break; }
    case HLA_FLOAT16: { _Float16 x = (_Float16)v; memcpy(p, &x, 2); break; }
    case HLA_INT64: { int64_t x = fabs(v) < 1e18 ? (int64_t)v : 0; memcpy(p, &x, 8); break; }
    case HLA_INT32: { int32_t x = fabs(v) < 1e9 ? (int32_t)v : 0; memcpy(p, &x, 4); break; }
    default: break;
    }
}

/* Byte map of the elements a tensor addresses (1) inside its allocation. */
static uint8_t *tb_mask(const tbuf *b) {
    uint8_t *m = (uint8_t *)calloc(b->bytes ? b->bytes : 1, 1);
    if (b->unallocated || !b->bytes) return m;
    int64_t sh[4] = {1, 1, 1, 1};
    for (int i = 0; i < b->t.ndim; i++) sh[i] = b->t.shape[i];
    int64_t idx[4];
    for (idx[0] = 0; idx[0] < sh[0]; idx[0]++)
        for (idx[1] = 0; idx[1] < sh[1]; idx[1]++)
            for (idx[2] = 0; idx[2] < sh[2]; idx[2]++)
                for (idx[3] = 0; idx[3] < sh[3]; idx[3]++) {
                    size_t byte = (size_t)(((uint8_t *)b->t.data - b->mem) + tb_off(b, idx) * (int64_t)b->es);
                    memset(m + byte, 1, b->es);
                }
    return m;
}

/* Whether two in-range indices of b address one element. */
static int tb_overlaps(const tbuf *b) {
    if (b->unallocated || !b->bytes) return 0;
    int64_t sh[4] = {1, 1, 1, 1};
    for (int i = 0; i < b->t.ndim; i++) sh[i] = b->t.shape[i];
    uint8_t *seen = (uint8_t *)calloc(b->bytes / b->es + 1, 1);
    int64_t base = ((uint8_t *)b->t.data - b->mem) / (int64_t)b->es, idx[4];
    int dup = 0;
    for (idx[0] = 0; idx[0] < sh[0]; idx[0]++)
        for (idx[1] = 0; idx[1] < sh[1]; idx[1]++)
            for (idx[2] = 0; idx[2] < sh[2]; idx[2]++)
                for (idx[3] = 0; idx[3] < sh[3]; idx[3]++) {
                    int64_t o = base + tb_off(b, idx);
                    if (seen[o]) dup = 1;
                    seen[o] = 1;
                }
    free(seen);
    return dup;
}

/* The library's (sufficient) non-overlap test: dimensions of size > 1 sorted by |stride|, each stride past
 * the reach of the smaller ones. Layouts it rejects that do not overlap are "don't care" for the oracle. */
static int tb_sorted_ok(const tbuf *b) {
    int64_t s[4], n[4];
    int m = 0;
    for (int i = 0; i < b->t.ndim; i++)
        if (b->t.shape[i] > 1) {
            int64_t a = b->t.strides[i] < 0 ? -b->t.strides[i] : b->t.strides[i];
            int j = m++;
            while (j > 0 && s[j - 1] > a) { s[j] = s[j - 1]; n[j] = n[j - 1]; j--; }
            s[j] = a; n[j] = b->t.shape[i];
        }
    int64_t reach = 0;
    for (int i = 0; i < m; i++) {
        if (s[i] <= reach) return 0;
        reach += s[i] * (n[i] - 1);
    }
    return 1;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Decoding                                                                                             */

typedef struct {
    reader r;
    uint64_t rng;
    int invalid;    /* the forward call must fail */
    int dontcare;   /* validity not predicted (conservative library checks) */
} dec;

static uint8_t d8(dec *d) { return rd_u8(&d->r); }
static void bad(dec *d) { d->invalid++; }

/* A value in [-1, 1): from the input while it lasts, then from a generator seeded by it. */
static double dval(dec *d) {
    if (d->r.o < d->r.n) return ((int)d8(d) - 128) / 128.0;
    d->rng ^= d->rng << 13; d->rng ^= d->rng >> 7; d->rng ^= d->rng << 17;
    return (double)((int64_t)(d->rng >> 11) % 1000) / 1000.0;
}

static const int PERMS[24][4] = {
    {0,1,2,3},{0,2,1,3},{1,0,2,3},{0,1,3,2},{2,0,1,3},{0,3,1,2},{1,2,0,3},{3,2,1,0},
    {0,2,3,1},{0,3,2,1},{1,0,3,2},{1,2,3,0},{1,3,0,2},{1,3,2,0},{2,0,3,1},{2,1,0,3},
    {2,1,3,0},{2,3,0,1},{2,3,1,0},{3,0,1,2},{3,0,2,1},{3,1,0,2},{3,1,2,0},{1,3,0,2}};

/* Strides of a [B,T,H,D] tensor (4 layout bytes): dimension nesting order, padding, signs, and a special
 * case (zero stride, squeezed stride that may overlap, stride/extent out of range). Writes `special`:
 * 0 plain, 1 zero/squeezed (valid for inputs, maybe not for outputs), 2 out of range (invalid). */
static void dec_strides(dec *d, const int64_t *shape, int64_t *st, int *special) {
    uint8_t pb = d8(d), padb = d8(d), sign = d8(d), sp = d8(d);
    const int *perm = PERMS[pb % 24];   /* perm[0] outermost ... perm[3] innermost */
    int64_t s = 1 + ((padb >> 6) == 3);  /* innermost stride 1, or 2 */
    for (int i = 3; i >= 0; i--) {
        int dim = perm[i];
        st[dim] = s;
        int64_t pad = (padb >> (2 * (i % 3))) & 3;
        s = s * (shape[dim] > 0 ? shape[dim] : 1) + (pad == 3 ? 0 : pad);
    }
    for (int i = 0; i < 4; i++)
        if (sign & (1 << i)) st[i] = -st[i];
    *special = 0;
    int k = (sp >> 4) & 3;
    switch (sp & 15) {
    case 12: st[k] = 0; *special = 1; break;
    case 13: st[k] = (sign >> 4) & 3; *special = 1; break;
    case 14:
        if (shape[k] >= 3 && (sign & 0x80)) st[k] = (int64_t)1 << 58;   /* extent 2^59 or more */
        else st[k] = (sign & 0x40) ? -((int64_t)1 << 59) : ((int64_t)1 << 59);
        *special = 2; break;
    case 15: st[k] = (sign & 0x40) ? INT64_MIN : INT64_MAX; *special = 2; break;
    default: break;
    }
}

/* Size of the hla_config of headers 1.0 and 1.1 (it ended with chunk_size), which the library still accepts. */
#define OLD_CONFIG_SIZE ((size_t)offsetof(hla_config, checkpoint_every))

typedef struct {
    hla_config *cfg;    /* the caller's bytes: cfg_bytes of them (88, sizeof, sizeof + 8 or 70000) */
    size_t cfg_bytes;
    int op, masked, normalize;
    int64_t H, Hkv, dk, dv, chunk;
    double scale, decay, ridge, eps;
    int cfg_ok;
} fcfg;

/* The bytes of the case's configuration that an hla_config holds (all of them but an 88-byte struct's). */
static size_t cfg_prefix(const fcfg *f) { return f->cfg_bytes < sizeof(hla_config) ? f->cfg_bytes : sizeof(hla_config); }

/* A full hla_config (own allocation of max(cfg_bytes, sizeof) bytes, tail as the case's) with the case's fields
 * and the given checkpoint_every. */
static hla_config *cfg_with_every(const fcfg *f, int64_t every) {
    size_t bytes = f->cfg_bytes > sizeof(hla_config) ? f->cfg_bytes : sizeof(hla_config);
    hla_config *c = (hla_config *)xmalloc(bytes);
    memset(c, 0, bytes);
    memcpy(c, f->cfg, f->cfg_bytes);
    if (f->cfg_bytes < sizeof(hla_config)) c->struct_size = sizeof(hla_config);
    c->checkpoint_every = every;
    return c;
}

static void dec_config(dec *d, fcfg *f) {
    uint8_t b;
    static const int32_t INV32[4] = {3, -1, INT32_MAX, INT32_MIN};
    static const int64_t INVDIM[4] = {0, -1, (1 << 24) + 1, INT64_MIN};
    int inv0 = d->invalid;
    b = d8(d); f->op = b < 0xF8 ? b % 3 : INV32[b & 3]; if (b >= 0xF8) bad(d);
    b = d8(d); f->masked = b < 0xF8 ? (b & 1) : (b & 1 ? 2 : -1); if (b >= 0xF8) bad(d);
    b = d8(d); f->normalize = b < 0xF8 ? (b & 1) : (b & 1 ? 2 : -1); if (b >= 0xF8) bad(d);
    b = d8(d); f->H = b < 0xF8 ? 1 + b % 4 : INVDIM[b & 3]; if (b >= 0xF8) bad(d);
    b = d8(d);
    if (b < 0xF8) {
        int64_t opts[4] = {0, 1, f->H, f->H % 2 == 0 ? f->H / 2 : 1};
        f->Hkv = opts[b % 4];
    } else {
        static const int64_t inv[4] = {-1, -2, (1 << 24) + 1, 0};
        f->Hkv = (b & 3) == 3 ? (f->H > 0 && f->H < (1 << 24) ? f->H + 1 : -1) : inv[b & 3];
        bad(d);
    }
    b = d8(d); f->dk = b < 0xF8 ? 1 + b % 8 : INVDIM[b & 3]; if (b >= 0xF8) bad(d);
    b = d8(d); f->dv = b < 0xF8 ? 1 + b % 8 : INVDIM[b & 3]; if (b >= 0xF8) bad(d);
    static const double SC[8] = {1, 0.5, 0.35355339059327373, 2, -1, 0, 0.1, -0.7};
    b = d8(d); f->scale = b < 0xF8 ? SC[b % 8] : ((b & 1) ? NAN : ((b & 2) ? -INFINITY : INFINITY)); if (b >= 0xF8) bad(d);
    static const double DC[8] = {1, 0.9, 0.5, 0.99, 0.25, 1e-3, 0.75, 1};
    static const double DCI[8] = {0, -0.5, 1.5, NAN, INFINITY, -0.0, 1.0000000000000002, -INFINITY};
    b = d8(d); f->decay = b < 0xF8 ? DC[b % 8] : DCI[b & 7]; if (b >= 0xF8) bad(d);
    static const double RG[4] = {0.1, 1, 0.5, -0.0};
    static const double RGI[4] = {-1, NAN, INFINITY, -1e-300};
    b = d8(d);
    if (b < 0xE0) f->ridge = 0;
    else if (b < 0xF8) { f->ridge = RG[b % 4]; if (f->ridge != 0 && f->op != 0) bad(d); }
    else { f->ridge = RGI[b & 3]; bad(d); }
    static const double EP[4] = {1e-6, 1e-3, 1, 1e-12};
    static const double EPI[4] = {0, -1, NAN, INFINITY};
    b = d8(d); f->eps = b < 0xF8 ? EP[b % 4] : EPI[b & 3]; if (b >= 0xF8) bad(d);
    static const int64_t CH[16] = {0, 0, 0, 1, 2, 3, 4, 5, 7, 8, 13, 16, 33, 1024, 5000, INT64_MAX};
    b = d8(d); f->chunk = b < 0xF8 ? CH[b % 16] : ((b & 1) ? -1 : INT64_MIN); if (b >= 0xF8) bad(d);
    /* struct size: sizeof; sizeof + 8 (zero tail, valid); 88 bytes, the struct of headers 1.0 and 1.1 (valid:
     * checkpoint_every taken as 0), in an allocation of exactly 88 bytes so that ASan sees any access past it;
     * a nonzero tail; too small (80 or 87); too large */
    b = d8(d);
    int sz = b < 0xF0 ? 0 : b < 0xF4 ? 1 : b < 0xF8 ? 5 : b < 0xFC ? 2 : b < 0xFE ? 3 : 4;
    size_t alloc = sz == 5 ? OLD_CONFIG_SIZE : sizeof(hla_config) + (sz == 1 || sz == 2 ? 8 : sz == 4 ? 70000 : 0);
    f->cfg = (hla_config *)xmalloc(alloc);
    f->cfg_bytes = alloc;
    memset(f->cfg, sz == 5 ? 0xA5 : 0, alloc);   /* hla_config_init must set every byte of an 88-byte struct */
    if (hla_config_init(f->cfg, sz == 1 || sz == 2 || sz == 5 ? alloc : sizeof(hla_config)) != HLA_OK) FUZZ_FAIL("hla_config_init");
    /* the fields are set in a full struct and copied into the caller's bytes (an 88-byte allocation is no
     * hla_config to C) */
    hla_config t;
    memset(&t, 0, sizeof t);
    memcpy(&t, f->cfg, cfg_prefix(f));
    if (sz == 5) {
        hla_config def;
        FUZZ_CHECK(hla_config_init(&def, sizeof def) == HLA_OK, "hla_config_init");
        FUZZ_CHECK(t.struct_size == OLD_CONFIG_SIZE && !memcmp((uint8_t *)&t + 4, (uint8_t *)&def + 4, OLD_CONFIG_SIZE - 4),
                   "hla_config_init(88 bytes): struct_size %u or the defaults wrong", t.struct_size);
    }
    t.op = f->op; t.masked = f->masked; t.normalize = f->normalize;
    t.heads = f->H; t.kv_heads = f->Hkv; t.dk = f->dk; t.dv = f->dv;
    t.scale = f->scale; t.decay = f->decay; t.ridge = f->ridge; t.eps = f->eps;
    t.chunk_size = f->chunk;
    f->cfg_ok = d->invalid == inv0;
    if (sz == 2) { ((uint8_t *)f->cfg)[sizeof(hla_config) + 3] = 1; bad(d); }
    if (sz == 3) { t.struct_size = (b & 1) ? OLD_CONFIG_SIZE - 1 : OLD_CONFIG_SIZE - 8; bad(d); }
    if (sz == 4) { t.struct_size = 70000; bad(d); }
    memcpy(f->cfg, &t, cfg_prefix(f));
    if (sz >= 2 && sz <= 4) f->cfg_ok = 0;
    /* the decoder's view of validity must match hla_config_validate */
    hla_status s = hla_config_validate(f->cfg);
    if (f->cfg_ok && s != HLA_OK) FUZZ_FAIL("valid configuration rejected: %s", hla_status_string(s));
    if (!f->cfg_ok && d->invalid > inv0 && s == HLA_OK) FUZZ_FAIL("invalid configuration accepted");
}

/* ---------------------------------------------------------------------------------------------------- */
/* The case                                                                                             */

typedef struct {
    fcfg f;
    int32_t dt;                  /* element type of q (k, v, output: the same unless invalid) */
    int64_t B, T, N;             /* batch, tokens, sequences */
    int64_t n, m;                /* state and summary elements (valid configurations) */
    tbuf q, k, v, out;
    int out_special;
    tbuf cu; int has_cu; int64_t cuv[32];
    tbuf ini, fin, rows; int has_ini, has_fin, same, has_rows; int64_t rowv[8]; int64_t slots;
    int state_dt;
    int finite;                  /* q, k, v all finite */
    int64_t bad_t[8];            /* first token (within the sequence) with a non-finite input, or length */
} fcase;

static int64_t seq_len(const fcase *c, int64_t i) { return c->has_cu ? c->cuv[i + 1] - c->cuv[i] : c->T; }
static int64_t seq_bos(const fcase *c, int64_t i) { return c->has_cu ? c->cuv[i] : 0; }

static void fill_seq(dec *d, tbuf *b, double mag) {
    if (b->unallocated || !b->bytes) return;
    int64_t sh[4], idx[4];
    for (int i = 0; i < 4; i++) sh[i] = b->t.shape[i];
    for (idx[0] = 0; idx[0] < sh[0]; idx[0]++)
        for (idx[1] = 0; idx[1] < sh[1]; idx[1]++)
            for (idx[2] = 0; idx[2] < sh[2]; idx[2]++)
                for (idx[3] = 0; idx[3] < sh[3]; idx[3]++) st_elem(b, tb_off(b, idx), mag * dval(d));
}

/* An index tensor of `count` int64/int32 values with stride +-1 or 2. */
static void make_index(tbuf *b, const int64_t *vals, int64_t count, int int32, int layout) {
    int64_t stride = layout == 1 ? -1 : layout == 2 ? 2 : 1;
    int64_t shape = count;
    tb_alloc(b, int32 ? HLA_INT32 : HLA_INT64, 1, &shape, &stride, SENT);
    for (int64_t i = 0; i < count; i++) {   /* integers stored as such (INT64_MIN/MAX do not go through double) */
        uint8_t *p = (uint8_t *)b->t.data + i * stride * (int64_t)b->es;
        if (int32) { int32_t x = (int32_t)vals[i]; memcpy(p, &x, 4); } else memcpy(p, &vals[i], 8);
    }
}

/* State tensor [slots, n] with row padding and sign; its rows filled with values (or zeros). */
static void make_state(dec *d, tbuf *b, int32_t dt, int64_t slots, int64_t n, int64_t pad, int neg, int values) {
    int64_t shape[2] = {slots, n}, st[2] = {neg ? -(n + pad) : n + pad, 1};
    tb_alloc(b, dt, 2, shape, st, SENT);
    if (!values || b->unallocated) return;
    for (int64_t r = 0; r < slots; r++)
        for (int64_t j = 0; j < n; j++) st_elem(b, r * st[0] + j, values == 1 ? dval(d) : 0.0);
}

static void copy_tb(tbuf *dst, const tbuf *src) {
    *dst = *src;
    dst->mem = (uint8_t *)xmalloc(src->bytes);
    memcpy(dst->mem, src->mem, src->bytes);
    /* the same element [0, ...] offset; a NULL data pointer (an injected fault) stays NULL */
    dst->t.data = src->t.data ? dst->mem + ((uint8_t *)src->t.data - src->mem) : NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Comparisons                                                                                          */

/* Output rows (b, t, h) as doubles: dense [B][T][H][dv]. */
static double *dense_out(const fcase *c, const tbuf *o) {
    int64_t B = c->B, T = c->T, H = c->f.H, dv = c->f.dv;
    double *x = (double *)xmalloc(sizeof(double) * (size_t)(B * T * H * dv));
    int64_t idx[4];
    for (idx[0] = 0; idx[0] < B; idx[0]++)
        for (idx[1] = 0; idx[1] < T; idx[1]++)
            for (idx[2] = 0; idx[2] < H; idx[2]++)
                for (idx[3] = 0; idx[3] < dv; idx[3]++)
                    x[((idx[0] * T + idx[1]) * H + idx[2]) * dv + idx[3]] = ld_elem(o, tb_off(o, idx));
    return x;
}

/* Which (b, t, h) output rows to compare: before the first non-finite token of the sequence, and (with
 * normalize) well-conditioned denominators. */
typedef struct { uint8_t *row; } cmpmask;

static void compare_rows(const fcase *c, const double *a, const double *ref, const cmpmask *mk, const char *what) {
    int64_t rows = c->B * c->T * c->f.H, dv = c->f.dv;
    double mx = 0, err = 0;
    int64_t worst = -1;
    for (int64_t r = 0; r < rows; r++) {
        if (!mk->row[r]) continue;
        for (int64_t j = 0; j < dv; j++) {
            double x = ref[r * dv + j];
            FUZZ_CHECK(isfinite(x), "%s: non-finite reference output at row %lld before any non-finite input", what, (long long)r);
            if (fabs(x) > mx) mx = fabs(x);
        }
    }
    for (int64_t r = 0; r < rows; r++) {
        if (!mk->row[r]) continue;
        for (int64_t j = 0; j < dv; j++) {
            double e = fabs(a[r * dv + j] - ref[r * dv + j]);
            if (!(e <= err)) { err = e; worst = r * dv + j; }
            if (isnan(e)) err = INFINITY;
        }
    }
    if (err > TOL * mx && err > 1e-300)
        FUZZ_FAIL("%s: relative error %.3g (abs %.3g, max %.3g) at element %lld: %.17g vs %.17g", what,
                  mx > 0 ? err / mx : err, err, mx, (long long)worst, a[worst], ref[worst]);
}

static void compare_vec(const double *a, const double *ref, int64_t n, const char *what) {
    double mx = 0, err = 0;
    int64_t worst = 0;
    for (int64_t i = 0; i < n; i++) if (fabs(ref[i]) > mx) mx = fabs(ref[i]);
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(a[i] - ref[i]);
        if (isnan(e)) e = INFINITY;
        if (e > err) { err = e; worst = i; }
    }
    if (err > TOL * mx && err > 1e-300)
        FUZZ_FAIL("%s: relative error %.3g (abs %.3g, max %.3g) at element %lld of %lld: %.17g vs %.17g", what,
                  mx > 0 ? err / mx : err, err, mx, (long long)worst, (long long)n, a[worst], ref[worst]);
}

/* State row r of tensor b as doubles (n values). */
static void state_row(const tbuf *b, int64_t r, int64_t n, double *x) {
    for (int64_t j = 0; j < n; j++) x[j] = ld_elem(b, r * b->t.strides[0] + j);
}

static int64_t row_of(const fcase *c, int64_t i) { return c->has_rows ? c->rowv[i] : i; }

/* Untouched check: every byte of b outside `mask` equals `before`. */
static void check_outside(const tbuf *b, const uint8_t *before, const uint8_t *mask, const char *what) {
    for (size_t i = 0; i < b->bytes; i++)
        if (!(mask && mask[i]) && b->mem[i] != before[i]) FUZZ_FAIL("%s: byte %zu written outside the addressed elements", what, i);
}

/* ---------------------------------------------------------------------------------------------------- */

typedef struct {
    uint8_t *q, *k, *v, *cu, *rows, *ini;
} pristine;

static uint8_t *dup_bytes(const tbuf *b) {
    uint8_t *p = (uint8_t *)xmalloc(b->bytes);
    memcpy(p, b->mem, b->bytes);
    return p;
}

static void check_inputs(const fcase *c, const pristine *p, const char *call) {
    FUZZ_CHECK(!memcmp(c->q.mem, p->q, c->q.bytes), "%s wrote q", call);
    FUZZ_CHECK(!memcmp(c->k.mem, p->k, c->k.bytes), "%s wrote k", call);
    FUZZ_CHECK(!memcmp(c->v.mem, p->v, c->v.bytes), "%s wrote v", call);
    if (c->has_cu) FUZZ_CHECK(!memcmp(c->cu.mem, p->cu, c->cu.bytes), "%s wrote cu_seqlens", call);
    if (c->has_rows) FUZZ_CHECK(!memcmp(c->rows.mem, p->rows, c->rows.bytes), "%s wrote rows", call);
    if (c->has_ini && !c->same) FUZZ_CHECK(!memcmp(c->ini.mem, p->ini, c->ini.bytes), "%s wrote initial", call);
}

/* One hla_forward on `path` into fresh output/final buffers (copies of the case's, sentinel-filled), or with
 * ck != NULL one hla_forward_checkpoints (path ignored) writing the checkpoint tensor ck (a failed call
 * must leave it untouched too). Returns the status; on success *o (dense outputs) and the final tensor
 * are handed back. ck = &CK_NULL passes a NULL checkpoint tensor pointer. */
static tbuf CK_NULL;
static hla_status run_forward_ck(fcase *c, const pristine *p, const hla_config *cfg, int32_t path, int valid, tbuf *fout,
                                 tbuf *ffin, tbuf *ck) {
    copy_tb(fout, &c->out);
    memset(fout->mem, SENT, fout->bytes);
    int have_fin = c->has_fin;
    if (have_fin) {
        if (c->same) copy_tb(ffin, &c->ini);     /* in place: initial = final */
        else { copy_tb(ffin, &c->fin); memset(ffin->mem, SENT, ffin->bytes); }
    }
    const tbuf *ini = c->has_ini ? (c->same ? ffin : &c->ini) : NULL;
    uint8_t *fin_before = have_fin ? dup_bytes(ffin) : NULL;
    uint8_t *ck_before = ck && ck != &CK_NULL ? dup_bytes(ck) : NULL;
    hla_status s;
    if (ck) {
        s = hla_forward_checkpoints(cfg, &c->q.t, &c->k.t, &c->v.t, &fout->t, c->has_cu ? &c->cu.t : NULL,
                                    ini ? &ini->t : NULL, have_fin ? &ffin->t : NULL, c->has_rows ? &c->rows.t : NULL,
                                    ck == &CK_NULL ? NULL : &ck->t);
        check_inputs(c, p, "hla_forward_checkpoints");
        path = 100;   /* in the messages below: hla_forward_checkpoints */
        if (s != HLA_OK && ck_before) FUZZ_CHECK(!memcmp(ck->mem, ck_before, ck->bytes), "failed hla_forward_checkpoints wrote checkpoints");
    } else {
        s = hla_forward(cfg, path, &c->q.t, &c->k.t, &c->v.t, &fout->t, c->has_cu ? &c->cu.t : NULL,
                        ini ? &ini->t : NULL, have_fin ? &ffin->t : NULL, c->has_rows ? &c->rows.t : NULL);
        check_inputs(c, p, "hla_forward");
    }
    free(ck_before);
    if (s != HLA_OK) {
        for (size_t i = 0; i < fout->bytes; i++)
            if (fout->mem[i] != SENT) FUZZ_FAIL("failed hla_forward (path %d, %s) wrote output byte %zu", path, hla_status_string(s), i);
        if (have_fin) FUZZ_CHECK(!memcmp(ffin->mem, fin_before, ffin->bytes), "failed hla_forward (path %d) wrote final", path);
    } else if (valid) {
        uint8_t *mo = tb_mask(fout);
        for (size_t i = 0; i < fout->bytes; i++)
            if (!mo[i] && fout->mem[i] != SENT) FUZZ_FAIL("hla_forward (path %d) wrote output gap byte %zu", path, i);
        free(mo);
        if (have_fin) {
            /* only the rows of the call's sequences, and only their n elements, may change */
            uint8_t *mf = (uint8_t *)calloc(ffin->bytes ? ffin->bytes : 1, 1);
            for (int64_t i = 0; i < c->N; i++) {
                size_t at = (size_t)(((uint8_t *)ffin->t.data - ffin->mem) + row_of(c, i) * ffin->t.strides[0] * (int64_t)ffin->es);
                memset(mf + at, 1, (size_t)c->n * ffin->es);
            }
            check_outside(ffin, fin_before, mf, "hla_forward final");
            free(mf);
        }
    }
    free(fin_before);
    return s;
}

static hla_status run_forward(fcase *c, const pristine *p, int32_t path, int valid, tbuf *fout, tbuf *ffin) {
    return run_forward_ck(c, p, c->f.cfg, path, valid, fout, ffin, NULL);
}

static void free_pristine(pristine *p) { free(p->q); free(p->k); free(p->v); free(p->cu); free(p->rows); free(p->ini); }

/* Rank-3 view [R, heads, feat] of token t of a [B, T, heads, feat] tensor (batch rows b0..b0+R-1). */
static hla_tensor token_view(const tbuf *b, int64_t b0, int64_t R, int64_t t) {
    hla_tensor v;
    memset(&v, 0, sizeof v);
    v.dtype = b->t.dtype; v.ndim = 3;
    v.shape[0] = R; v.shape[1] = b->t.shape[2]; v.shape[2] = b->t.shape[3];
    v.strides[0] = b->t.strides[0]; v.strides[1] = b->t.strides[2]; v.strides[2] = b->t.strides[3];
    v.data = (uint8_t *)b->t.data + (b0 * b->t.strides[0] + t * b->t.strides[1]) * (int64_t)b->es;
    return v;
}

/* [B, len, heads, feat] view of tokens t0..t0+len-1. */
static hla_tensor range_view(const tbuf *b, int64_t t0, int64_t len) {
    hla_tensor v = b->t;
    v.shape[1] = len;
    v.data = (uint8_t *)b->t.data + t0 * b->t.strides[1] * (int64_t)b->es;
    return v;
}

static void summary_rows(const tbuf *s, int64_t N, int64_t m, double *x) {
    for (int64_t i = 0; i < N; i++) state_row(s, i, m, x + i * m);
}

/* ---------------------------------------------------------------------------------------------------- */
/* Checkpoints (hla_checkpoint_rows, hla_forward_checkpoints, hla_backward_checkpoints; docs/gradients.md
 * section 11)                                                                                          */

/* A byte for the checkpoint checks (they come last): the input's while it lasts, then the generator's. */
static uint8_t dbyte(dec *d) {
    if (d->r.o < d->r.n) return d8(d);
    d->rng ^= d->rng << 13; d->rng ^= d->rng >> 7; d->rng ^= d->rng << 17;
    return (uint8_t)(d->rng >> 29);
}

typedef struct {
    int64_t rows, stride;   /* hla_checkpoint_rows */
    int64_t need;           /* rows the call writes: sum over sequences of (len - 1) / stride */
    int64_t first[8];       /* first row of each sequence */
} ckplan;

/* Chunk length of the chunked path: chunk_size (above 1024: 1024), automatic 32 while max(dk, dv + normalize)
 * <= 96 (always here: dk, dv <= 8). */
static int64_t ck_chunk(const fcase *c) { return c->f.chunk > 1024 ? 1024 : c->f.chunk > 0 ? c->f.chunk : 32; }

/* ceil(sqrt(x)) for 1 <= x <= INT64_MAX. */
static int64_t ceil_sqrt(int64_t x) {
    uint64_t e = (uint64_t)sqrt((double)x);
    while (e * e < (uint64_t)x) e++;
    while (e > 1 && (e - 1) * (e - 1) >= (uint64_t)x) e--;
    return (int64_t)e;
}

/* The documented stride for T tokens: chunk * every, every = checkpoint_every capped at ceil(T / chunk), or
 * (0) ceil(sqrt(ceil(T / chunk))); -1 when it exceeds INT64_MAX. */
static int64_t ck_stride_of(const fcase *c, int64_t every, int64_t T) {
    int64_t chunk = ck_chunk(c), chunks = (T - 1) / chunk + 1;
    int64_t e = every > 0 ? (every < chunks ? every : chunks) : ceil_sqrt(chunks);
    return e > INT64_MAX / chunk ? -1 : chunk * e;
}

/* hla_checkpoint_rows for the case's shapes (valid configuration cfg with checkpoint_every `every`, B, T >= 1),
 * checked against docs/gradients.md section 11: stride chunk * every (every = checkpoint_every capped at the
 * chunks, or ceil(sqrt(chunks))), rows B (T - 1) / stride (batch) or (T - N) / stride (N packed), at least the
 * rows the call needs. */
static void ck_plan(const fcase *c, const hla_config *cfg, int64_t every, ckplan *k) {
    int64_t seqs = c->has_cu ? c->N : 0;
    k->rows = k->stride = -7;
    hla_status s = hla_checkpoint_rows(cfg, c->B, c->T, seqs, &k->rows, &k->stride);
    FUZZ_CHECK(s == HLA_OK, "hla_checkpoint_rows(B %lld, T %lld, N %lld, every %lld): %s", (long long)c->B, (long long)c->T,
               (long long)seqs, (long long)every, hla_status_string(s));
    int64_t want = ck_stride_of(c, every, c->T);
    FUZZ_CHECK(k->stride == want, "checkpoint stride %lld, expected %lld (chunk %lld, T %lld, checkpoint_every %lld)",
               (long long)k->stride, (long long)want, (long long)ck_chunk(c), (long long)c->T, (long long)every);
    int64_t bound = c->has_cu ? (c->T - c->N) / k->stride : c->B * ((c->T - 1) / k->stride);
    FUZZ_CHECK(k->rows == bound, "hla_checkpoint_rows: %lld rows, expected %lld", (long long)k->rows, (long long)bound);
    k->need = 0;
    for (int64_t i = 0; i < c->N && i < 8; i++) {
        k->first[i] = k->need;
        k->need += (seq_len(c, i) - 1) / k->stride;
    }
    FUZZ_CHECK(k->need <= k->rows, "hla_checkpoint_rows: %lld rows, the call needs %lld", (long long)k->rows, (long long)k->need);
}

/* A checkpoint tensor [rows, n] of dtype dt in an exact allocation, sentinel-filled: row padding and sign
 * from lay; with zero rows, data NULL when lay & 8. */
static void ck_alloc(tbuf *b, int32_t dt, int64_t rows, int64_t n, uint8_t lay) {
    int64_t pad = lay & 3, shape[2] = {rows, n}, st[2] = {(lay & 4) ? -(n + pad) : n + pad, 1};
    tb_alloc(b, dt, 2, shape, st, SENT);
    if (rows == 0 && (lay & 8)) b->t.data = NULL;
}

/* Byte address of row r of a [rows, n] tensor inside its allocation. */
static size_t row_at(const tbuf *b, int64_t r) {
    return (size_t)(((uint8_t *)b->t.data - b->mem) + r * b->t.strides[0] * (int64_t)b->es);
}

/* Only rows 0..need-1 (their n elements) were written: every other byte still holds the sentinel. */
static void ck_check_unused(const tbuf *ck, int64_t need, int64_t n, const char *what) {
    uint8_t *m = (uint8_t *)calloc(ck->bytes ? ck->bytes : 1, 1);
    for (int64_t r = 0; r < need; r++) memset(m + row_at(ck, r), 1, (size_t)n * ck->es);
    for (size_t i = 0; i < ck->bytes; i++)
        if (!m[i] && ck->mem[i] != SENT) FUZZ_FAIL("%s: checkpoint byte %zu (beyond the %lld rows needed) written", what, i, (long long)need);
    free(m);
}

/* A view of tokens t0..t0+len-1 of batch row b0 as a [1, len, heads, feat] tensor. */
static hla_tensor seq_view(const tbuf *b, int64_t b0, int64_t t0, int64_t len) {
    hla_tensor v = b->t;
    v.shape[0] = 1; v.shape[1] = len;
    v.data = (uint8_t *)b->t.data + (b0 * b->t.strides[0] + t0 * b->t.strides[1]) * (int64_t)b->es;
    return v;
}

/* float64: checkpoint j of sequence i is the state before its token (j + 1) stride, i.e. the final state of
 * a serial forward over that prefix from the sequence's initial row (relative error <= TOL); only prefixes
 * before the sequence's first non-finite token. */
static void ck_check_values(const fcase *c, const ckplan *k, const tbuf *ck) {
    int64_t n = c->n, H = c->f.H, dv = c->f.dv;
    double *a = (double *)xmalloc(sizeof(double) * (size_t)n), *r = (double *)xmalloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < c->N && i < 8; i++) {
        int64_t cnt = (seq_len(c, i) - 1) / k->stride;
        for (int64_t j = 0; j < cnt; j++) {
            int64_t L = (j + 1) * k->stride;
            if (c->bad_t[i] < L) break;
            int64_t b0 = c->has_cu ? 0 : i, t0 = seq_bos(c, i);
            hla_tensor q = seq_view(&c->q, b0, t0, L), kk = seq_view(&c->k, b0, t0, L), v = seq_view(&c->v, b0, t0, L);
            int64_t so[4] = {1, L, H, dv}, sto[4] = {L * H * dv, H * dv, dv, 1}, ss[2] = {1, n}, sts[2] = {n, 1};
            tbuf o, ini, fin;
            tb_alloc(&o, HLA_FLOAT64, 4, so, sto, 0);
            tb_alloc(&ini, HLA_FLOAT64, 2, ss, sts, 0);
            tb_alloc(&fin, HLA_FLOAT64, 2, ss, sts, SENT);
            if (c->has_ini) memcpy(ini.mem, c->ini.mem + row_at(&c->ini, row_of(c, i)), (size_t)n * 8);
            hla_status s = hla_forward(c->f.cfg, HLA_PATH_SERIAL, &q, &kk, &v, &o.t, NULL, c->has_ini ? &ini.t : NULL, &fin.t, NULL);
            FUZZ_CHECK(s == HLA_OK, "prefix forward (sequence %lld, %lld tokens): %s", (long long)i, (long long)L, hla_status_string(s));
            state_row(&fin, 0, n, r);
            state_row(ck, k->first[i] + j, n, a);
            compare_vec(a, r, n, "checkpoint vs serial forward over the prefix");
            tb_free(&o); tb_free(&ini); tb_free(&fin);
        }
    }
    free(a); free(r);
}

/* A checkpoint tensor the call must refuse (its rows, dtype, n, rank, strides or pointer), from byte fb;
 * returns 1 when the tensor pointer itself is to be NULL (b then owns an empty allocation). */
static int ck_bad(tbuf *b, const fcase *c, const ckplan *k, uint8_t fb, const char **what) {
    int64_t n = c->n, rows = k->rows;
    int32_t other = c->state_dt == HLA_FLOAT64 ? HLA_FLOAT32 : HLA_FLOAT64;
    int f = fb & 7;
    if (f == 0 && k->need < 1) f = 1;
    if (f == 5 && n < 2) f = 2;
    if (f == 6 && rows < 1) f = 4;
    if (f == 7 && (rows < 2 || n < 2)) f = 1;
    switch (f) {
    case 0: ck_alloc(b, c->state_dt, k->need - 1, n, fb >> 3); *what = "too few rows"; break;
    case 1: {
        static const int32_t DT[4] = {-1, HLA_BFLOAT16, HLA_INT64, 99};
        int32_t dt = DT[(fb >> 3) & 3] < 0 ? other : DT[(fb >> 3) & 3];
        ck_alloc(b, dt, rows, n, fb >> 5);
        *what = "wrong dtype";
        break;
    }
    case 2: ck_alloc(b, c->state_dt, rows, (fb & 8) || n < 2 ? n + 1 : n - 1, fb >> 4); *what = "wrong n"; break;
    case 3: memset(b, 0, sizeof *b); b->mem = (uint8_t *)xmalloc(0); *what = "NULL tensor"; break;
    case 4: {   /* rank 3 [rows, n, 1] or 1 [rows * n] */
        ck_alloc(b, c->state_dt, rows, n, 0);
        if (fb & 8) { b->t.ndim = 3; b->t.shape[2] = 1; b->t.strides[2] = 1; }
        else { b->t.ndim = 1; b->t.shape[0] = rows * n; }
        *what = "wrong rank";
        break;
    }
    case 5: {   /* elements of a row not contiguous */
        int64_t shape[2] = {rows, n}, st[2] = {2 * n, 2};
        tb_alloc(b, c->state_dt, 2, shape, st, SENT);
        *what = "strides[1] = 2";
        break;
    }
    case 6: ck_alloc(b, c->state_dt, rows, n, 0); b->t.data = NULL; *what = "data NULL"; break;
    case 7: {   /* overlapping rows */
        int64_t shape[2] = {rows, n}, st[2] = {(fb & 8) ? n - 1 : 1 - n, 1};
        tb_alloc(b, c->state_dt, 2, shape, st, SENT);
        *what = "overlapping rows";
        break;
    }
    }
    return f == 3;
}

/* A contiguous [B, T, heads, feat] tensor. */
static void tb_dense4(tbuf *b, int32_t dt, int64_t B, int64_t T, int64_t heads, int64_t feat, uint8_t fill) {
    int64_t sh[4] = {B, T, heads, feat}, st[4] = {T * heads * feat, heads * feat, feat, 1};
    tb_alloc(b, dt, 4, sh, st, fill);
}

/* hla_backward on the chunked path (the case's configuration `ref`: checkpoint_every 0, or absent from an 88-byte
 * struct) vs hla_backward_checkpoints (configuration `cke`, checkpoint_every as drawn) from the checkpoints of an
 * hla_forward_checkpoints (cke) with the same initial state ([N, n]: the case's initial rows gathered), bit for
 * bit (dq, dk, dv, d_initial); with a nonzero checkpoint_every also hla_backward (cke), whose own carries are
 * kept every checkpoint_every chunks. d_out from the input, d_final and d_initial optional, d_initial apart or the
 * same memory as initial or d_final. That forward must also reproduce the case's chunked outputs and checkpoints
 * (the rows tensor only selects memory). Sometimes a refused checkpoint tensor; with cneg (a negative
 * checkpoint_every) hla_backward and hla_backward_checkpoints: the call fails and writes nothing. */
enum { RUN_REF, RUN_CK, RUN_OWN, RUN_BAD, RUN_NEG, RUN_NEG_CK, RUN_KINDS };
static void ck_backward(fcase *c, const pristine *p, dec *d, const ckplan *k, const tbuf *out0, const tbuf *ck0,
                        const hla_config *ref, const hla_config *cke, int64_t every, const hla_config *cneg) {
    int64_t B = c->B, T = c->T, H = c->f.H, Hkv = c->f.Hkv ? c->f.Hkv : H, n = c->n, N = c->N;
    int32_t dt = c->q.t.dtype, sdt = c->state_dt;
    uint8_t ob = dbyte(d), fb = dbyte(d);
    int has_dfin = ob & 1, dini_mode = (ob >> 1) & 3;   /* 0 none, 1 apart, 2 = initial, 3 = d_final */
    if (dini_mode == 2 && !c->has_ini) dini_mode = 1;
    if (dini_mode == 3 && !has_dfin) dini_mode = 1;
    int64_t ss[2] = {N, n}, sts[2] = {n, 1};
    tbuf ini, dfin, dini, dO, ck, fo;
    /* the initial rows, gathered */
    if (c->has_ini) {
        tb_alloc(&ini, sdt, 2, ss, sts, 0);
        for (int64_t i = 0; i < N; i++)
            memcpy(ini.mem + row_at(&ini, i), c->ini.mem + row_at(&c->ini, row_of(c, i)), (size_t)n * ini.es);
    }
    /* the forward with checkpoints from [N, n] initial, no rows, no final */
    copy_tb(&fo, &c->out);
    memset(fo.mem, SENT, fo.bytes);
    ck_alloc(&ck, sdt, k->rows, n, ob >> 3);
    hla_status s = hla_forward_checkpoints(cke, &c->q.t, &c->k.t, &c->v.t, &fo.t, c->has_cu ? &c->cu.t : NULL,
                                           c->has_ini ? &ini.t : NULL, NULL, NULL, &ck.t);
    check_inputs(c, p, "hla_forward_checkpoints (gathered initial)");
    FUZZ_CHECK(s == HLA_OK, "hla_forward_checkpoints (gathered initial): %s", hla_status_string(s));
    FUZZ_CHECK(!memcmp(fo.mem, out0->mem, fo.bytes), "hla_forward_checkpoints with gathered initial rows: other outputs");
    for (int64_t r = 0; r < k->need; r++)
        FUZZ_CHECK(!memcmp(ck.mem + row_at(&ck, r), ck0->mem + row_at(ck0, r), (size_t)n * ck.es),
                   "hla_forward_checkpoints with gathered initial rows: checkpoint %lld differs", (long long)r);
    ck_check_unused(&ck, k->need, n, "hla_forward_checkpoints (gathered initial)");
    tb_free(&fo);
    /* cotangents */
    copy_tb(&dO, &c->out);
    fill_seq(d, &dO, 1.0);
    if (has_dfin) {
        tb_alloc(&dfin, sdt, 2, ss, sts, 0);
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < n; j++) st_elem(&dfin, i * n + j, dval(d));
    }
    if (dini_mode == 1) tb_alloc(&dini, sdt, 2, ss, sts, SENT);
    uint8_t *dO0 = dup_bytes(&dO);
    /* the runs: hla_backward (ref), hla_backward_checkpoints (cke), hla_backward (cke) when checkpoint_every is
     * not 0, sometimes a refused checkpoint tensor, and the negative checkpoint_every */
    int kinds[RUN_KINDS], runs = 0;
    kinds[runs++] = RUN_REF;
    kinds[runs++] = RUN_CK;
    if (every != 0) kinds[runs++] = RUN_OWN;
    if (fb >= 0xC0) kinds[runs++] = RUN_BAD;
    if (cneg) { kinds[runs++] = RUN_NEG; kinds[runs++] = RUN_NEG_CK; }
    tbuf g[RUN_KINDS][6];   /* dq, dk, dv, initial, d_final, d_initial (copies per run) */
    tbuf bad;
    const char *bad_what = "";
    int bad_null = fb >= 0xC0 ? ck_bad(&bad, c, k, fb, &bad_what) : 0;
    static const char *RUN_NAMES[RUN_KINDS] = {"hla_backward (chunked)", "hla_backward_checkpoints",
                                               "hla_backward (chunked, checkpoint_every)", "hla_backward_checkpoints (bad tensor)",
                                               "hla_backward (negative checkpoint_every)",
                                               "hla_backward_checkpoints (negative checkpoint_every)"};
    for (int run = 0; run < runs; run++) {
        int kind = kinds[run];
        tbuf *G = g[run];
        tb_dense4(&G[0], dt, B, T, H, c->f.dk, SENT);
        tb_dense4(&G[1], dt, B, T, Hkv, c->f.dk, SENT);
        tb_dense4(&G[2], dt, B, T, Hkv, c->f.dv, SENT);
        if (c->has_ini) copy_tb(&G[3], &ini);
        if (has_dfin) copy_tb(&G[4], &dfin);
        if (dini_mode == 1) copy_tb(&G[5], &dini);
        const tbuf *dI = dini_mode == 1 ? &G[5] : dini_mode == 2 ? &G[3] : dini_mode == 3 ? &G[4] : NULL;
        uint8_t *before[6];
        for (int j = 0; j < 6; j++) before[j] = NULL;
        for (int j = 0; j < 6; j++)
            if ((j < 3) || (j == 3 && c->has_ini) || (j == 4 && has_dfin) || (j == 5 && dini_mode == 1)) before[j] = dup_bytes(&G[j]);
        uint8_t *ckb = dup_bytes(&ck);
        const hla_tensor *iniT = c->has_ini ? &G[3].t : NULL, *dfT = has_dfin ? &G[4].t : NULL, *diT = dI ? &dI->t : NULL;
        const hla_tensor *cuT = c->has_cu ? &c->cu.t : NULL;
        switch (kind) {
        case RUN_REF: case RUN_OWN: case RUN_NEG:
            s = hla_backward(kind == RUN_REF ? ref : kind == RUN_OWN ? cke : cneg, HLA_PATH_CHUNKED, &c->q.t, &c->k.t,
                             &c->v.t, &dO.t, &G[0].t, &G[1].t, &G[2].t, cuT, iniT, dfT, diT);
            break;
        default:
            s = hla_backward_checkpoints(kind == RUN_NEG_CK ? cneg : cke, &c->q.t, &c->k.t, &c->v.t, &dO.t, &G[0].t,
                                         &G[1].t, &G[2].t, cuT, iniT, dfT, diT,
                                         kind == RUN_BAD ? (bad_null ? NULL : &bad.t) : &ck.t);
            break;
        }
        check_inputs(c, p, RUN_NAMES[kind]);
        FUZZ_CHECK(!memcmp(dO.mem, dO0, dO.bytes), "%s wrote d_out", RUN_NAMES[kind]);
        FUZZ_CHECK(!memcmp(ck.mem, ckb, ck.bytes), "%s wrote the checkpoints", RUN_NAMES[kind]);
        /* inputs not aliased by d_initial stay */
        if (c->has_ini && dini_mode != 2) FUZZ_CHECK(!memcmp(G[3].mem, before[3], G[3].bytes), "%s wrote initial", RUN_NAMES[kind]);
        if (has_dfin && dini_mode != 3) FUZZ_CHECK(!memcmp(G[4].mem, before[4], G[4].bytes), "%s wrote d_final", RUN_NAMES[kind]);
        if (kind <= RUN_OWN) {
            FUZZ_CHECK(s == HLA_OK, "valid %s (checkpoint_every %lld): %s", RUN_NAMES[kind], (long long)every, hla_status_string(s));
        } else {
            FUZZ_CHECK(s != HLA_OK, "%s accepted (%s)", RUN_NAMES[kind], kind == RUN_BAD ? bad_what : "checkpoint_every < 0");
            if (kind != RUN_BAD)
                FUZZ_CHECK(s == HLA_ERR_INVALID_ARGUMENT && strstr(hla_last_error(), "checkpoint_every"),
                           "%s: %s, want HLA_ERR_INVALID_ARGUMENT naming checkpoint_every", RUN_NAMES[kind], hla_status_string(s));
            for (int j = 0; j < 6; j++)
                if (before[j]) FUZZ_CHECK(!memcmp(G[j].mem, before[j], G[j].bytes), "failed %s wrote tensor %d", RUN_NAMES[kind], j);
        }
        for (int j = 0; j < 6; j++) free(before[j]);
        free(ckb);
    }
    /* bit for bit: dq, dk, dv, and d_initial wherever it lives, for finite inputs (the documented contract,
     * docs/gradients.md section 11): after a chunk with a non-finite input the forward's carry, hence its
     * checkpoint, comes from the streaming steps that keep the forward causal (chunkOrSteps), while
     * hla_backward's carry sweep recomputes it densely, so finite gradient elements may differ in the last
     * bits (crashes-found/fuzz_forward-backward-checkpoints-nonfinite is such an input). Both against run 0
     * (hla_backward with the case's configuration): hla_backward_checkpoints, and hla_backward with the drawn
     * checkpoint_every. */
    static const char *NAMES[6] = {"dq", "dk", "dv", "initial (= d_initial)", "d_final (= d_initial)", "d_initial"};
    for (int run = 1; run < runs && c->finite; run++) {
        if (kinds[run] != RUN_CK && kinds[run] != RUN_OWN) continue;
        for (int j = 0; j < 6; j++) {
            int live = j < 3 || (j == 3 && dini_mode == 2) || (j == 4 && dini_mode == 3) || (j == 5 && dini_mode == 1);
            if (live && memcmp(g[0][j].mem, g[run][j].mem, g[0][j].bytes)) {
                size_t at = 0;
                while (g[0][j].mem[at] == g[run][j].mem[at]) at++;
                FUZZ_FAIL("%s (checkpoint_every %lld) vs hla_backward (chunked, checkpoint_every 0): %s differs at byte %zu of %zu",
                          RUN_NAMES[kinds[run]], (long long)every, NAMES[j], at, g[0][j].bytes);
            }
        }
    }
    for (int run = 0; run < runs; run++) {
        for (int j = 0; j < 3; j++) tb_free(&g[run][j]);
        if (c->has_ini) tb_free(&g[run][3]);
        if (has_dfin) tb_free(&g[run][4]);
        if (dini_mode == 1) tb_free(&g[run][5]);
    }
    if (fb >= 0xC0) tb_free(&bad);
    free(dO0);
    tb_free(&dO); tb_free(&ck);
    if (c->has_ini) tb_free(&ini);
    if (has_dfin) tb_free(&dfin);
    if (dini_mode == 1) tb_free(&dini);
}

/* checkpoint_every for the checkpoint calls, from a byte: mostly 0..5, sometimes the call's chunk count, one more,
 * 2^40 or INT64_MAX (all act as the chunk count or less); *neg: one time in sixteen also a negative value
 * (-1..-8 or INT64_MIN), which every call must refuse. */
static int64_t ck_draw_every(const fcase *c, uint8_t eb, int64_t *neg) {
    static const int64_t SMALL[12] = {0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5};
    int64_t chunks = (c->T - 1) / ck_chunk(c) + 1, every;
    switch (eb & 15) {
    case 12: every = chunks; break;
    case 13: every = chunks + 1; break;
    case 14: every = INT64_MAX; break;
    case 15: every = (int64_t)1 << 40; break;
    default: every = SMALL[eb & 15]; break;
    }
    *neg = (eb >> 4) == 15 ? ((eb & 8) ? INT64_MIN : -1 - (eb & 7)) : 0;
    return every;
}

/* A negative checkpoint_every (cneg): hla_config_validate, hla_checkpoint_rows, hla_forward and
 * hla_forward_checkpoints (a checkpoint tensor of k's rows) refuse it with HLA_ERR_INVALID_ARGUMENT naming
 * checkpoint_every, writing nothing (the backward calls: ck_backward). */
static void ck_negative(fcase *c, const pristine *p, const ckplan *k, const hla_config *cneg) {
    FUZZ_CHECK(hla_config_validate(cneg) == HLA_ERR_INVALID_ARGUMENT && strstr(hla_last_error(), "checkpoint_every"),
               "hla_config_validate accepted checkpoint_every %lld", (long long)cneg->checkpoint_every);
    int64_t r = -7, st = -7;
    hla_status s = hla_checkpoint_rows(cneg, c->B, c->T, c->has_cu ? c->N : 0, &r, &st);
    FUZZ_CHECK(s == HLA_ERR_INVALID_ARGUMENT && r == -7 && st == -7 && strstr(hla_last_error(), "checkpoint_every"),
               "hla_checkpoint_rows with checkpoint_every %lld: %s, rows %lld, stride %lld", (long long)cneg->checkpoint_every,
               hla_status_string(s), (long long)r, (long long)st);
    s = hla_checkpoint_rows(cneg, 1, INT64_MAX, 0, &r, &st);
    FUZZ_CHECK(s == HLA_ERR_INVALID_ARGUMENT && r == -7 && st == -7, "hla_checkpoint_rows(1, INT64_MAX) with checkpoint_every %lld: %s",
               (long long)cneg->checkpoint_every, hla_status_string(s));
    for (int w = 0; w < 2; w++) {
        tbuf ck, o, f;
        ck_alloc(&ck, c->state_dt, k->rows, c->n, 0);
        s = run_forward_ck(c, p, cneg, HLA_PATH_CHUNKED, 0, &o, &f, w ? &ck : NULL);
        FUZZ_CHECK(s == HLA_ERR_INVALID_ARGUMENT && strstr(hla_last_error(), "checkpoint_every"),
                   "%s with checkpoint_every %lld: %s", w ? "hla_forward_checkpoints" : "hla_forward",
                   (long long)cneg->checkpoint_every, hla_status_string(s));
        ck_check_unused(&ck, 0, c->n, "hla_forward_checkpoints with a negative checkpoint_every");
        tb_free(&ck); tb_free(&o);
        if (c->has_fin) tb_free(&f);
    }
}

/* Valid case: checkpoint_every drawn for the checkpoint calls (the reference hla_forward and hla_backward keep
 * the case's configuration), hla_checkpoint_rows (and its refusals), hla_forward_checkpoints against the chunked
 * forward's output out0 and final fin0 bit for bit, checkpoint rows past those needed untouched, float64
 * checkpoint values, sometimes a refused checkpoint tensor or a negative checkpoint_every, and the backward
 * comparison. */
static void check_checkpoints(fcase *c, const pristine *p, dec *d, const tbuf *out0, const tbuf *fin0) {
    int64_t neg, every = ck_draw_every(c, dbyte(d), &neg);
    hla_config *cke = cfg_with_every(&c->f, every), *cneg = neg ? cfg_with_every(&c->f, neg) : NULL;
    ckplan k;
    ck_plan(c, cke, every, &k);
    int64_t n = c->n;
    /* refused arguments of hla_checkpoint_rows; and a huge call that must not overflow silently */
    {
        uint8_t ib = dbyte(d);
        int64_t r = -7, st = -7;
        hla_status s = HLA_OK;
        const char *what = "";
        switch (ib & 7) {
        case 0: s = hla_checkpoint_rows(cke, 0, c->T, 0, &r, &st); what = "batch 0"; break;
        case 1: s = hla_checkpoint_rows(cke, c->B, (ib & 8) ? 0 : -1, 0, &r, &st); what = "tokens < 1"; break;
        case 2: s = hla_checkpoint_rows(cke, 1, c->T, (ib & 8) ? c->T + 1 : -1, &r, &st); what = "sequences out of range"; break;
        case 3: s = hla_checkpoint_rows(cke, 2, c->T, 1, &r, &st); what = "sequences with batch 2"; break;
        case 4: s = hla_checkpoint_rows(cke, c->B, c->T, 0, NULL, &st); what = "rows NULL"; break;
        case 5: s = hla_checkpoint_rows(cke, c->B, c->T, 0, &r, NULL); what = "stride NULL"; break;
        case 6: s = hla_checkpoint_rows(NULL, c->B, c->T, 0, &r, &st); what = "cfg NULL"; break;
        case 7: {   /* tokens up to INT64_MAX: batch 1 fits; a huge batch fits exactly or is HLA_ERR_OVERFLOW. The
                     * stride as documented when it fits an int64; when it does not (a checkpoint_every of the chunk
                     * count or more, T within a chunk of INT64_MAX), it exceeds T: 0 rows, or HLA_ERR_OVERFLOW */
            int64_t T = INT64_MAX >> ((ib >> 3) & 31), Bh = (ib & 0x80) ? INT64_MAX / 3 : 2, r1 = -7, st1 = -7;
            int64_t want1 = ck_stride_of(c, every, T);
            s = hla_checkpoint_rows(cke, 1, T, 0, &r1, &st1);
            if (want1 < 0) {
                FUZZ_CHECK((s == HLA_OK && st1 >= 1 && r1 == 0) || (s == HLA_ERR_OVERFLOW && r1 == -7 && st1 == -7),
                           "hla_checkpoint_rows(1, %lld), checkpoint_every %lld (stride above INT64_MAX): %s, rows %lld, stride %lld",
                           (long long)T, (long long)every, hla_status_string(s), (long long)r1, (long long)st1);
                s = HLA_ERR_INVALID_ARGUMENT;
                break;
            }
            FUZZ_CHECK(s == HLA_OK && st1 == want1 && r1 == (T - 1) / st1,
                       "hla_checkpoint_rows(1, %lld), checkpoint_every %lld: %s, rows %lld, stride %lld (want %lld)",
                       (long long)T, (long long)every, hla_status_string(s), (long long)r1, (long long)st1, (long long)want1);
            __int128 want = (__int128)Bh * r1;
            s = hla_checkpoint_rows(cke, Bh, T, 0, &r, &st);
            if (want > INT64_MAX) FUZZ_CHECK(s == HLA_ERR_OVERFLOW, "hla_checkpoint_rows(%lld, %lld): %s", (long long)Bh, (long long)T, hla_status_string(s));
            else FUZZ_CHECK(s == HLA_OK && r == (int64_t)want && st == st1, "hla_checkpoint_rows(%lld, %lld): %s, rows %lld, stride %lld",
                            (long long)Bh, (long long)T, hla_status_string(s), (long long)r, (long long)st);
            s = HLA_ERR_INVALID_ARGUMENT;
            break;
        }
        }
        FUZZ_CHECK(s != HLA_OK, "hla_checkpoint_rows accepted %s", what);
    }
    /* the forward, bit for bit the chunked hla_forward */
    tbuf ck, fo, ff;
    ck_alloc(&ck, c->state_dt, k.rows, n, dbyte(d));
    hla_status s = run_forward_ck(c, p, cke, HLA_PATH_CHUNKED, 1, &fo, &ff, &ck);
    FUZZ_CHECK(s == HLA_OK, "valid hla_forward_checkpoints (checkpoint_every %lld) failed: %s", (long long)every, hla_status_string(s));
    FUZZ_CHECK(!memcmp(fo.mem, out0->mem, fo.bytes), "hla_forward_checkpoints (checkpoint_every %lld): outputs not bit for bit the chunked hla_forward's", (long long)every);
    if (c->has_fin)
        FUZZ_CHECK(!memcmp(ff.mem, fin0->mem, ff.bytes), "hla_forward_checkpoints (checkpoint_every %lld): final state not bit for bit the chunked hla_forward's", (long long)every);
    ck_check_unused(&ck, k.need, n, "hla_forward_checkpoints");
    if (c->dt == HLA_FLOAT64) ck_check_values(c, &k, &ck);
    tb_free(&fo);
    if (c->has_fin) tb_free(&ff);
    /* a checkpoint tensor the forward must refuse, writing nothing */
    uint8_t fb = dbyte(d);
    if (fb >= 0xC0) {
        tbuf bad, o2, f2;
        const char *what = "";
        int null = ck_bad(&bad, c, &k, dbyte(d), &what);
        s = run_forward_ck(c, p, cke, HLA_PATH_CHUNKED, 0, &o2, &f2, null ? &CK_NULL : &bad);
        FUZZ_CHECK(s != HLA_OK, "hla_forward_checkpoints accepted a bad checkpoint tensor (%s)", what);
        tb_free(&bad); tb_free(&o2);
        if (c->has_fin) tb_free(&f2);
    }
    if (cneg) ck_negative(c, p, &k, cneg);
    /* the backward (the costliest check in the debug build): always when the call has checkpoints, a nonzero
     * checkpoint_every or a negative one to refuse, else one case in four (an empty tape) */
    uint8_t bb = dbyte(d);
    if (k.need > 0 || every != 0 || cneg || bb < 0x40) ck_backward(c, p, d, &k, out0, &ck, c->f.cfg, cke, every, cneg);
    tb_free(&ck);
    free(cke);
    free(cneg);
}

/* Invalid case: hla_forward_checkpoints with the same arguments and a checkpoint tensor of the bound's rows
 * (or of B * T rows when hla_checkpoint_rows refuses the shapes) fails and writes nothing. */
static void check_invalid_checkpoints(fcase *c, const pristine *p, int dontcare) {
    int64_t rows = -1, st = 0;
    if (c->f.cfg_ok && c->B >= 1 && c->T >= 1 &&
        hla_checkpoint_rows(c->f.cfg, c->B, c->T, c->has_cu ? c->N : 0, &rows, &st) != HLA_OK) rows = -1;
    if (rows < 0) rows = c->B * c->T > 0 && c->B * c->T < 256 ? c->B * c->T : 1;
    tbuf ck, o, f;
    ck_alloc(&ck, c->state_dt, rows, c->n, (uint8_t)(c->T + c->B));
    hla_status s = run_forward_ck(c, p, c->f.cfg, HLA_PATH_CHUNKED, 0, &o, &f, &ck);
    if (!dontcare) FUZZ_CHECK(s != HLA_OK, "invalid hla_forward_checkpoints call accepted");
    tb_free(&ck); tb_free(&o);
    if (c->has_fin) tb_free(&f);
}

/* Valid float64 case: all paths, step loop and summaries against the serial path. */
static void check_valid(fcase *c, const pristine *p, dec *d) {
    int64_t B = c->B, T = c->T, H = c->f.H, n = c->n, m = c->m, N = c->N;
    int f64 = c->dt == HLA_FLOAT64;
    tbuf outs[3], fins[3];
    double *dense[3] = {0, 0, 0};
    for (int path = 0; path < 3; path++) {
        hla_status s = run_forward(c, p, path, 1, &outs[path], &fins[path]);
        if (s != HLA_OK) FUZZ_FAIL("valid hla_forward (path %d) failed: %s", path, hla_status_string(s));
        dense[path] = dense_out(c, &outs[path]);
    }
    /* invalid path numbers */
    {
        tbuf o2, f2;
        int32_t bogus = (d8(d) & 1) ? 3 : -1;
        hla_status s = run_forward(c, p, bogus, 0, &o2, &f2);
        FUZZ_CHECK(s == HLA_ERR_INVALID_ARGUMENT, "path %d: %s", bogus, hla_status_string(s));
        tb_free(&o2);
        if (c->has_fin) tb_free(&f2);
    }
    /* the other element types: the calls must succeed; no numeric comparison */
    cmpmask mk;
    mk.row = (uint8_t *)xmalloc((size_t)(B * T * H));
    memset(mk.row, 1, (size_t)(B * T * H));
    double *sref = NULL;
    if (!f64) goto step;
    /* rows to compare: causality (before the first non-finite token) */
    for (int64_t i = 0; i < N; i++)
        for (int64_t t = 0; t < seq_len(c, i); t++)
            if (t >= c->bad_t[i])
                for (int64_t h = 0; h < H; h++) mk.row[((c->has_cu ? 0 : i) * T + seq_bos(c, i) + t) * H + h] = 0;
    /* normalize: skip rows with ill-conditioned denominators. den from normalize = 0, dv + 1, v = (v, 1);
     * the bound of the sum of |terms| from the same on |q|, |k|, |v|, |scale|, |initial|. */
    if (c->f.normalize) {
        for (int pass = 0; pass < 2; pass++) {
            hla_config c2;
            memset(&c2, 0, sizeof c2);
            memcpy(&c2, c->f.cfg, cfg_prefix(&c->f));
            c2.struct_size = sizeof c2;
            c2.normalize = 0; c2.dv = c->f.dv + 1;
            if (pass) c2.scale = fabs(c2.scale);
            int64_t Hkv = c->f.Hkv ? c->f.Hkv : H, dv1 = c->f.dv + 1, st4[4];
            int64_t sq[4] = {B, T, H, c->f.dk}, sk[4] = {B, T, Hkv, c->f.dk}, sv[4] = {B, T, Hkv, dv1}, so[4] = {B, T, H, dv1};
            tbuf q2, k2, v2, o2, s2;
            st4[3] = 1; st4[2] = c->f.dk; st4[1] = H * c->f.dk; st4[0] = T * H * c->f.dk;
            tb_alloc(&q2, HLA_FLOAT64, 4, sq, st4, 0);
            st4[2] = c->f.dk; st4[1] = Hkv * c->f.dk; st4[0] = T * Hkv * c->f.dk;
            tb_alloc(&k2, HLA_FLOAT64, 4, sk, st4, 0);
            st4[2] = dv1; st4[1] = Hkv * dv1; st4[0] = T * Hkv * dv1;
            tb_alloc(&v2, HLA_FLOAT64, 4, sv, st4, 0);
            st4[2] = dv1; st4[1] = H * dv1; st4[0] = T * H * dv1;
            tb_alloc(&o2, HLA_FLOAT64, 4, so, st4, 0);
            int64_t idx[4], j2[4];
            for (idx[0] = 0; idx[0] < B; idx[0]++)
                for (idx[1] = 0; idx[1] < T; idx[1]++) {
                    for (idx[2] = 0; idx[2] < H; idx[2]++)
                        for (idx[3] = 0; idx[3] < c->f.dk; idx[3]++) {
                            double x = ld_elem(&c->q, tb_off(&c->q, idx));
                            st_elem(&q2, tb_off(&q2, idx), pass ? fabs(x) : x);
                        }
                    for (idx[2] = 0; idx[2] < Hkv; idx[2]++) {
                        for (idx[3] = 0; idx[3] < c->f.dk; idx[3]++) {
                            double x = ld_elem(&c->k, tb_off(&c->k, idx));
                            st_elem(&k2, tb_off(&k2, idx), pass ? fabs(x) : x);
                        }
                        for (idx[3] = 0; idx[3] <= c->f.dv; idx[3]++) {
                            double x = idx[3] < c->f.dv ? ld_elem(&c->v, tb_off(&c->v, idx)) : 1.0;
                            st_elem(&v2, tb_off(&v2, idx), pass ? fabs(x) : x);
                        }
                    }
                }
            int64_t sshape[2] = {c->slots, n}, sst[2] = {n, 1};
            tb_alloc(&s2, HLA_FLOAT64, 2, sshape, sst, 0);
            if (c->has_ini)
                for (int64_t r = 0; r < c->slots; r++)
                    for (int64_t j = 0; j < n; j++) {
                        double x = ld_elem(&c->ini, r * c->ini.t.strides[0] + j);
                        st_elem(&s2, r * n + j, pass ? fabs(x) : x);
                    }
            hla_status s = hla_forward(&c2, HLA_PATH_SERIAL, &q2.t, &k2.t, &v2.t, &o2.t, c->has_cu ? &c->cu.t : NULL,
                                       c->has_ini ? &s2.t : NULL, NULL, c->has_ini && c->has_rows ? &c->rows.t : NULL);
            FUZZ_CHECK(s == HLA_OK, "denominator run: %s", hla_status_string(s));
            /* keep den in o2 (pass 0) then compare with the bound (pass 1) */
            static double *den;
            if (!pass) {
                den = (double *)xmalloc(sizeof(double) * (size_t)(B * T * H));
                for (j2[0] = 0; j2[0] < B; j2[0]++)
                    for (j2[1] = 0; j2[1] < T; j2[1]++)
                        for (j2[2] = 0; j2[2] < H; j2[2]++) {
                            j2[3] = c->f.dv;
                            den[(j2[0] * T + j2[1]) * H + j2[2]] = ld_elem(&o2, tb_off(&o2, j2));
                        }
            } else {
                for (j2[0] = 0; j2[0] < B; j2[0]++)
                    for (j2[1] = 0; j2[1] < T; j2[1]++)
                        for (j2[2] = 0; j2[2] < H; j2[2]++) {
                            j2[3] = c->f.dv;
                            int64_t r = (j2[0] * T + j2[1]) * H + j2[2];
                            double bound = ld_elem(&o2, tb_off(&o2, j2));
                            if (!(fabs(den[r] + c->f.eps) * 1e6 > bound)) mk.row[r] = 0;
                        }
                free(den);
            }
            tb_free(&q2); tb_free(&k2); tb_free(&v2); tb_free(&o2); tb_free(&s2);
        }
    }
    compare_rows(c, dense[0], dense[1], &mk, "chunked vs serial");
    compare_rows(c, dense[2], dense[1], &mk, "scan vs serial");
    /* final states of the clean sequences */
    if (c->has_fin) {
        double *a = (double *)xmalloc(sizeof(double) * (size_t)n), *r = (double *)xmalloc(sizeof(double) * (size_t)n);
        for (int64_t i = 0; i < N; i++) {
            if (c->bad_t[i] < seq_len(c, i)) continue;
            state_row(&fins[1], row_of(c, i), n, r);
            state_row(&fins[0], row_of(c, i), n, a);
            compare_vec(a, r, n, "chunked vs serial final state");
            state_row(&fins[2], row_of(c, i), n, a);
            compare_vec(a, r, n, "scan vs serial final state");
        }
        free(a); free(r);
    }
    /* hla_reference (no initial state) */
    if (!c->has_ini) {
        tbuf o2;
        copy_tb(&o2, &c->out);
        memset(o2.mem, SENT, o2.bytes);
        hla_status s = hla_reference(c->f.cfg, &c->q.t, &c->k.t, &c->v.t, &o2.t, c->has_cu ? &c->cu.t : NULL);
        check_inputs(c, p, "hla_reference");
        FUZZ_CHECK(s == HLA_OK, "hla_reference: %s", hla_status_string(s));
        double *x = dense_out(c, &o2);
        compare_rows(c, dense[1], x, &mk, "serial vs hla_reference");
        compare_rows(c, dense[0], x, &mk, "chunked vs hla_reference");
        free(x);
        tb_free(&o2);
    }

step:
    /* hla_step loop: a state like final (or initial, or dense), starting from the initial rows */
    {
        tbuf st, so;
        if (c->has_ini) copy_tb(&st, &c->ini);
        else if (c->has_fin) { copy_tb(&st, &c->fin); memset(st.mem, 0, st.bytes); }
        else make_state(d, &st, c->state_dt, N, n, 0, 0, 2);
        copy_tb(&so, &c->out);
        memset(so.mem, SENT, so.bytes);
        int use_rows = c->has_rows && (c->has_ini || c->has_fin);
        if (!c->has_cu) {
            for (int64_t t = 0; t < T; t++) {
                hla_tensor qt = token_view(&c->q, 0, B, t), kt = token_view(&c->k, 0, B, t), vt = token_view(&c->v, 0, B, t);
                hla_tensor ot = token_view(&so, 0, B, t);
                hla_status s = hla_step(c->f.cfg, &qt, &kt, &vt, &ot, &st.t, use_rows ? &c->rows.t : NULL);
                FUZZ_CHECK(s == HLA_OK, "hla_step t=%lld: %s", (long long)t, hla_status_string(s));
            }
        } else {
            for (int64_t i = 0; i < N; i++) {
                int64_t rv = use_rows ? c->rowv[i] : i, one = 1;
                tbuf rt;
                tb_alloc(&rt, HLA_INT64, 1, &one, &one, 0);
                st_elem(&rt, 0, (double)rv);
                for (int64_t t = seq_bos(c, i); t < seq_bos(c, i) + seq_len(c, i); t++) {
                    hla_tensor qt = token_view(&c->q, 0, 1, t), kt = token_view(&c->k, 0, 1, t), vt = token_view(&c->v, 0, 1, t);
                    hla_tensor ot = token_view(&so, 0, 1, t);
                    hla_status s = hla_step(c->f.cfg, &qt, &kt, &vt, &ot, &st.t, &rt.t);
                    FUZZ_CHECK(s == HLA_OK, "hla_step (packed seq %lld) t=%lld: %s", (long long)i, (long long)t, hla_status_string(s));
                }
                tb_free(&rt);
            }
        }
        check_inputs(c, p, "hla_step");
        if (f64) {
            double *x = dense_out(c, &so);
            compare_rows(c, x, dense[1], &mk, "hla_step loop vs serial");
            free(x);
            if (c->has_fin) {
                double *a = (double *)xmalloc(sizeof(double) * (size_t)n), *r = (double *)xmalloc(sizeof(double) * (size_t)n);
                for (int64_t i = 0; i < N; i++) {
                    if (c->bad_t[i] < seq_len(c, i)) continue;
                    int64_t rr = use_rows ? c->rowv[i] : i;
                    state_row(&fins[1], row_of(c, i), n, r);
                    state_row(&st, rr, n, a);
                    compare_vec(a, r, n, "hla_step loop vs serial final state");
                }
                free(a); free(r);
            }
        }
        tb_free(&st); tb_free(&so);
    }

    /* summaries: whole, split + combine, identity, to_state vs a zero-initial serial forward */
    {
        int64_t sshape[2] = {N, m}, sst[2] = {m, 1}, one = 1, lshape = N;
        tbuf S, L;
        tb_alloc(&S, c->state_dt, 2, sshape, sst, SENT);
        tb_alloc(&L, HLA_INT64, 1, &lshape, &one, SENT);
        hla_status s = hla_summarize(c->f.cfg, &c->q.t, &c->k.t, &c->v.t, c->has_cu ? &c->cu.t : NULL, &S.t, &L.t);
        check_inputs(c, p, "hla_summarize");
        FUZZ_CHECK(s == HLA_OK, "hla_summarize: %s", hla_status_string(s));
        for (int64_t i = 0; i < N; i++)
            FUZZ_CHECK((int64_t)ld_elem(&L, i) == seq_len(c, i), "summary length %lld: %lld", (long long)i, (long long)ld_elem(&L, i));
        int clean = f64 && c->finite;
        sref = (double *)xmalloc(sizeof(double) * (size_t)(N * m));
        summary_rows(&S, N, m, sref);
        /* to_state (rows of a [slots, n] state) vs a serial forward from zero */
        {
            tbuf st, o2, f2;
            make_state(d, &st, c->state_dt, c->slots, n, 1, 0, 0);
            memset(st.mem, SENT, st.bytes);
            s = hla_summary_to_state(c->f.cfg, &S.t, &st.t, c->has_rows ? &c->rows.t : NULL);
            FUZZ_CHECK(s == HLA_OK, "hla_summary_to_state: %s", hla_status_string(s));
            copy_tb(&o2, &c->out);
            make_state(d, &f2, c->state_dt, c->slots, n, 0, 0, 0);
            s = hla_forward(c->f.cfg, HLA_PATH_SERIAL, &c->q.t, &c->k.t, &c->v.t, &o2.t, c->has_cu ? &c->cu.t : NULL,
                            NULL, &f2.t, c->has_rows ? &c->rows.t : NULL);
            FUZZ_CHECK(s == HLA_OK, "zero-initial forward: %s", hla_status_string(s));
            if (clean) {
                double *a = (double *)xmalloc(sizeof(double) * (size_t)n), *r = (double *)xmalloc(sizeof(double) * (size_t)n);
                for (int64_t i = 0; i < N; i++) {
                    state_row(&f2, row_of(c, i), n, r);
                    state_row(&st, row_of(c, i), n, a);
                    compare_vec(a, r, n, "hla_summary_to_state vs zero-initial serial final state");
                }
                free(a); free(r);
            }
            tb_free(&st); tb_free(&o2); tb_free(&f2);
        }
        /* identity: combine(zero summary of length 0, S) == S and combine(S, zero) == S */
        if (clean) {
            tbuf Z, ZL, R;
            tb_alloc(&Z, c->state_dt, 2, sshape, sst, 0);
            tb_alloc(&ZL, HLA_INT64, 1, &lshape, &one, 0);
            tb_alloc(&R, c->state_dt, 2, sshape, sst, SENT);
            double *x = (double *)xmalloc(sizeof(double) * (size_t)(N * m));
            s = hla_summary_combine(c->f.cfg, &Z.t, &ZL.t, &S.t, &L.t, &R.t, NULL);
            FUZZ_CHECK(s == HLA_OK, "combine(identity, S): %s", hla_status_string(s));
            summary_rows(&R, N, m, x);
            compare_vec(x, sref, N * m, "combine(identity, S) vs S");
            s = hla_summary_combine(c->f.cfg, &S.t, &L.t, &Z.t, &ZL.t, &R.t, NULL);
            FUZZ_CHECK(s == HLA_OK, "combine(S, identity): %s", hla_status_string(s));
            summary_rows(&R, N, m, x);
            compare_vec(x, sref, N * m, "combine(S, identity) vs S");
            free(x);
            tb_free(&Z); tb_free(&ZL); tb_free(&R);
        }
        /* split at s (batch, not packed): summarize both halves, combine in place into the first */
        if (!c->has_cu && T >= 2) {
            int64_t sp = 1 + d8(d) % (T - 1);
            tbuf Sa, La, Sb, Lb;
            tb_alloc(&Sa, c->state_dt, 2, sshape, sst, SENT);
            tb_alloc(&Sb, c->state_dt, 2, sshape, sst, SENT);
            tb_alloc(&La, HLA_INT64, 1, &lshape, &one, SENT);
            tb_alloc(&Lb, HLA_INT64, 1, &lshape, &one, SENT);
            hla_tensor qa = range_view(&c->q, 0, sp), ka = range_view(&c->k, 0, sp), va = range_view(&c->v, 0, sp);
            hla_tensor qb = range_view(&c->q, sp, T - sp), kb = range_view(&c->k, sp, T - sp), vb = range_view(&c->v, sp, T - sp);
            s = hla_summarize(c->f.cfg, &qa, &ka, &va, NULL, &Sa.t, &La.t);
            FUZZ_CHECK(s == HLA_OK, "hla_summarize (first part): %s", hla_status_string(s));
            s = hla_summarize(c->f.cfg, &qb, &kb, &vb, NULL, &Sb.t, &Lb.t);
            FUZZ_CHECK(s == HLA_OK, "hla_summarize (second part): %s", hla_status_string(s));
            s = hla_summary_combine(c->f.cfg, &Sa.t, &La.t, &Sb.t, &Lb.t, &Sa.t, &La.t);
            FUZZ_CHECK(s == HLA_OK, "hla_summary_combine: %s", hla_status_string(s));
            for (int64_t i = 0; i < N; i++)
                FUZZ_CHECK((int64_t)ld_elem(&La, i) == T, "combined length %lld", (long long)ld_elem(&La, i));
            if (clean) {
                double *x = (double *)xmalloc(sizeof(double) * (size_t)(N * m));
                summary_rows(&Sa, N, m, x);
                compare_vec(x, sref, N * m, "combine(summary(x[:s]), summary(x[s:])) vs summary(x)");
                free(x);
            }
            /* chunked forward of the second part from the first part's final state = the whole */
            if (f64 && c->finite && !c->has_ini) {
                tbuf o1, st;
                copy_tb(&o1, &c->out);
                memset(o1.mem, SENT, o1.bytes);
                make_state(d, &st, c->state_dt, N, n, 0, 0, 0);
                hla_tensor oa = range_view(&o1, 0, sp), ob = range_view(&o1, sp, T - sp);
                s = hla_forward(c->f.cfg, HLA_PATH_CHUNKED, &qa, &ka, &va, &oa, NULL, NULL, &st.t, NULL);
                FUZZ_CHECK(s == HLA_OK, "split forward 1: %s", hla_status_string(s));
                s = hla_forward(c->f.cfg, HLA_PATH_SCAN, &qb, &kb, &vb, &ob, NULL, &st.t, &st.t, NULL);
                FUZZ_CHECK(s == HLA_OK, "split forward 2: %s", hla_status_string(s));
                double *x = dense_out(c, &o1);
                compare_rows(c, x, dense[1], &mk, "forward(x[:s]) then forward(x[s:], state) vs serial");
                free(x);
                tb_free(&o1); tb_free(&st);
            }
            tb_free(&Sa); tb_free(&Sb); tb_free(&La); tb_free(&Lb);
        }
        tb_free(&S); tb_free(&L);
    }
    check_checkpoints(c, p, d, &outs[0], c->has_fin ? &fins[0] : NULL);
    free(sref);
    free(mk.row);
    for (int path = 0; path < 3; path++) {
        free(dense[path]);
        tb_free(&outs[path]);
        if (c->has_fin) tb_free(&fins[path]);
    }
}

/* Invalid case: every path fails and writes nothing; the other calls fail cleanly or succeed. */
static void check_invalid(fcase *c, const pristine *p, int dontcare) {
    for (int path = 0; path < 3; path++) {
        tbuf o, f;
        hla_status s = run_forward(c, p, path, 0, &o, &f);
        if (!dontcare) FUZZ_CHECK(s != HLA_OK, "invalid hla_forward call (path %d) accepted", path);
        tb_free(&o);
        if (c->has_fin) tb_free(&f);
    }
    check_invalid_checkpoints(c, p, dontcare);
    /* hla_step on token 0 with the case's state tensors (rank 3 views) */
    if (!c->q.unallocated && !c->k.unallocated && !c->v.unallocated && !c->out.unallocated && c->T >= 1 &&
        c->q.t.data && c->k.t.data && c->v.t.data && c->out.t.data &&
        c->q.t.ndim == 4 && c->k.t.ndim == 4 && c->v.t.ndim == 4 && c->out.t.ndim == 4) {
        tbuf o;
        copy_tb(&o, &c->out);
        memset(o.mem, SENT, o.bytes);
        hla_tensor qt = token_view(&c->q, 0, c->B, 0), kt = token_view(&c->k, 0, c->B, 0), vt = token_view(&c->v, 0, c->B, 0);
        hla_tensor ot = token_view(&o, 0, c->B, 0);
        const tbuf *st = c->has_ini ? &c->ini : c->has_fin ? &c->fin : NULL;
        if (st) {
            tbuf s2;
            copy_tb(&s2, st);
            uint8_t *before = dup_bytes(&s2);
            hla_status s = hla_step(c->f.cfg, &qt, &kt, &vt, &ot, &s2.t, c->has_rows ? &c->rows.t : NULL);
            check_inputs(c, p, "hla_step");
            if (s != HLA_OK) {
                FUZZ_CHECK(!memcmp(s2.mem, before, s2.bytes), "failed hla_step wrote its state");
                for (size_t i = 0; i < o.bytes; i++) FUZZ_CHECK(o.mem[i] == SENT, "failed hla_step wrote output");
            }
            free(before);
            tb_free(&s2);
        }
        tb_free(&o);
    }
    /* hla_summarize into [N, m] */
    if (c->f.cfg_ok && c->N >= 1 && c->N <= 64) {
        int64_t sshape[2] = {c->N, c->m}, sst[2] = {c->m, 1}, one = 1, ls = c->N;
        tbuf S, L;
        tb_alloc(&S, c->state_dt, 2, sshape, sst, SENT);
        tb_alloc(&L, HLA_INT64, 1, &ls, &one, SENT);
        hla_status s = hla_summarize(c->f.cfg, &c->q.t, &c->k.t, &c->v.t, c->has_cu ? &c->cu.t : NULL, &S.t, &L.t);
        check_inputs(c, p, "hla_summarize");
        if (s != HLA_OK) {
            for (size_t i = 0; i < S.bytes; i++) FUZZ_CHECK(S.mem[i] == SENT, "failed hla_summarize wrote summary");
            for (size_t i = 0; i < L.bytes; i++) FUZZ_CHECK(L.mem[i] == SENT, "failed hla_summarize wrote lengths");
        }
        tb_free(&S); tb_free(&L);
    }
}

/* The initial rows the call uses become states the library itself produced (a short random prefix run
 * through the serial path from zero): hand-written rows must keep invariants such as a symmetric S
 * (docs/state-layout.md section 4), which random numbers do not. Unused rows keep their random values. */
static void prefix_state(fcase *c, dec *d) {
    int64_t P = 1 + (int64_t)(d->rng % 4), N = c->N, H = c->f.H, Hkv = c->f.Hkv ? c->f.Hkv : H;
    if (N < 1 || N > 64) return;
    int32_t dt = c->state_dt;
    int64_t sq[4] = {N, P, H, c->f.dk}, sk[4] = {N, P, Hkv, c->f.dk}, sv[4] = {N, P, Hkv, c->f.dv}, so[4] = {N, P, H, c->f.dv};
    int64_t st[4];
    tbuf q, k, v, o;
    st[3] = 1; st[2] = sq[3]; st[1] = H * sq[3]; st[0] = P * st[1]; tb_alloc(&q, dt, 4, sq, st, 0);
    st[2] = sk[3]; st[1] = Hkv * sk[3]; st[0] = P * st[1]; tb_alloc(&k, dt, 4, sk, st, 0);
    st[2] = sv[3]; st[1] = Hkv * sv[3]; st[0] = P * st[1]; tb_alloc(&v, dt, 4, sv, st, 0);
    st[2] = so[3]; st[1] = H * so[3]; st[0] = P * st[1]; tb_alloc(&o, dt, 4, so, st, 0);
    uint64_t saved = d->r.o;
    d->r.o = d->r.n;   /* values from the generator: the input bytes stay for the case itself */
    fill_seq(d, &q, 1.0); fill_seq(d, &k, 1.0); fill_seq(d, &v, 1.0);
    d->r.o = saved;
    hla_status s = hla_forward(c->f.cfg, HLA_PATH_SERIAL, &q.t, &k.t, &v.t, &o.t, NULL, NULL, &c->ini.t,
                               c->has_rows ? &c->rows.t : NULL);
    (void)s;   /* fails only when rows are faulty: the case is invalid and the rows stay random */
    tb_free(&q); tb_free(&k); tb_free(&v); tb_free(&o);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    setenv("HLA_NUM_THREADS", "2", 0);   /* the pool and the per-worker scratch are exercised */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dec d = {{data, size, 0}, 0x9e3779b97f4a7c15ULL ^ size, 0, 0};
    for (size_t i = 0; i < size; i++) d.rng = (d.rng ^ data[i]) * 0x100000001b3ULL;
    if (!d.rng) d.rng = 1;
    fcase c;
    memset(&c, 0, sizeof c);
    dec_config(&d, &c.f);
    int cfg_ok = c.f.cfg_ok;
    int64_t H = c.f.H, Hkv = c.f.Hkv == 0 ? c.f.H : c.f.Hkv, dk = c.f.dk, dv = c.f.dv;
    /* shapes of the tensors we build must stay small even when the configuration is invalid */
    if (!cfg_ok) {
        if (H < 1 || H > 4) H = 2;
        if (Hkv < 1 || Hkv > 4) Hkv = 1;
        if (dk < 1 || dk > 8) dk = 3;
        if (dv < 1 || dv > 8) dv = 2;
    }
    c.n = c.m = 5;
    if (cfg_ok) {
        FUZZ_CHECK(hla_state_elements(c.f.cfg, &c.n) == HLA_OK && hla_summary_elements(c.f.cfg, &c.m) == HLA_OK, "elements");
        FUZZ_CHECK(c.n >= 1 && c.m >= c.n, "n = %lld, m = %lld", (long long)c.n, (long long)c.m);
    }

    /* element type: mostly float64 */
    uint8_t b = d8(&d);
    int mixed = 0;
    c.dt = HLA_FLOAT64;
    switch (b % 16) {
    case 10: case 11: c.dt = HLA_FLOAT32; break;
    case 12: c.dt = HLA_BFLOAT16; break;
    case 13: c.dt = HLA_FLOAT16; break;
    case 14: c.dt = (b & 0x10) ? HLA_INT64 : 99; bad(&d); break;
    case 15: mixed = 1 + (b >> 4) % 3; bad(&d); break;
    default: break;
    }
    c.state_dt = c.dt == HLA_FLOAT64 ? HLA_FLOAT64 : HLA_FLOAT32;

    /* sequences: B, T, cu_seqlens */
    uint8_t cub = d8(&d), bb = d8(&d), tb = d8(&d);
    c.T = tb == 0xFF ? 0 : 1 + tb % 24;
    if (tb == 0xFF) bad(&d);
    int cumode = cub % 8 < 5 ? 0 : cub % 8 < 7 ? 1 : 2;
    c.B = bb == 0xFF ? 0 : cumode ? 1 : 1 + bb % 3;
    if (bb == 0xFF) bad(&d);
    if (cumode == 2 && c.T < 1) cumode = 0;
    c.N = c.B;
    if (cumode) {
        int64_t maxn = c.T < 6 ? c.T : 6;
        int64_t N = 1 + d8(&d) % (maxn > 0 ? maxn : 1);
        /* N - 1 distinct cut points in 1..T-1 */
        uint8_t cut[32] = {0};
        int64_t got = 0;
        for (int tries = 0; got < N - 1 && tries < 64; tries++) {
            int64_t x = 1 + d8(&d) % (c.T > 1 ? c.T - 1 : 1);
            if (x < c.T && !cut[x]) { cut[x] = 1; got++; }
        }
        N = got + 1;
        c.cuv[0] = 0;
        int64_t k = 1;
        for (int64_t x = 1; x < c.T; x++) if (cut[x]) c.cuv[k++] = x;
        c.cuv[k] = c.T;
        c.N = N;
        uint8_t lay = d8(&d);
        int64_t cnt = N + 1;
        if (cumode == 2) {
            switch (lay >> 4) {
            case 0: c.cuv[0] = 1; break;                       /* first not 0 */
            case 1: c.cuv[N] = c.T + 1; break;                 /* last not T */
            case 2: if (N >= 2) c.cuv[1] = c.cuv[2]; else c.cuv[1] = 0; break; /* not increasing */
            case 3: cnt = 1; break;                            /* one entry */
            case 4: c.B = 2; break;                            /* batch of 2 */
            case 5: c.cuv[N] = c.T - 1; if (c.cuv[N] <= c.cuv[N - 1]) c.cuv[N] = c.cuv[N-1]; break;
            case 6: c.cuv[0] = -1; break;
            default: c.cuv[1] = INT64_MAX; break;
            }
            bad(&d);
        }
        make_index(&c.cu, c.cuv, cnt, lay & 1, (lay >> 1) % 3);
        c.has_cu = 1;
        if (cumode == 2 && (lay >> 4) == 8) { c.cu.t.dtype = HLA_FLOAT64; }
        if (cumode == 2 && (lay >> 4) == 9) { c.cu.t.ndim = 2; }
        if (cumode == 2 && (lay >> 4) == 10) { c.cu.t.data = NULL; }
    }

    /* q, k, v, output with their layouts */
    int64_t shq[4] = {c.B, c.T, H, dk}, shk[4] = {c.B, c.T, Hkv, dk}, shv[4] = {c.B, c.T, Hkv, dv}, sho[4] = {c.B, c.T, H, dv};
    int64_t st[4];
    int sp;
    int32_t dq = c.dt, dkt = c.dt, dvt = c.dt, dot = c.dt;
    if (mixed == 1) dkt = c.dt == HLA_FLOAT64 ? HLA_FLOAT32 : HLA_FLOAT64;
    if (mixed == 2) dvt = HLA_BFLOAT16;
    if (mixed == 3) dot = HLA_FLOAT32;
    dec_strides(&d, shq, st, &sp); tb_alloc(&c.q, dq, 4, shq, st, 0); if (sp == 2) bad(&d);
    dec_strides(&d, shk, st, &sp); tb_alloc(&c.k, dkt, 4, shk, st, 0); if (sp == 2) bad(&d);
    dec_strides(&d, shv, st, &sp); tb_alloc(&c.v, dvt, 4, shv, st, 0); if (sp == 2) bad(&d);
    dec_strides(&d, sho, st, &sp); tb_alloc(&c.out, dot, 4, sho, st, SENT); if (sp == 2) bad(&d);
    c.out_special = sp;
    if (sp == 1 && !c.out.unallocated) {
        if (tb_overlaps(&c.out)) bad(&d);
        else if (!tb_sorted_ok(&c.out)) d.dontcare = 1;
    }
    /* shape / rank / NULL faults on one tensor */
    uint8_t fb = d8(&d);   /* applied after the values are written (below) */

    /* states and rows */
    uint8_t s1 = d8(&d), s2 = d8(&d), s3 = d8(&d);
    c.has_ini = s1 & 1;
    c.has_fin = (s1 >> 1) & 1;
    c.same = c.has_ini && c.has_fin && ((s1 >> 2) & 1);
    c.has_rows = (s1 >> 3) & 1;
    c.slots = c.N + ((s1 >> 4) & 3);
    if (c.slots > 64) c.slots = 64;
    int64_t pad = s2 & 3;
    int neg = (s2 >> 2) & 1;
    int sfault = (s2 >> 3) & 31;   /* 0..15 none, else a fault */
    if (c.has_rows) {
        /* N distinct rows out of slots: a shuffled prefix */
        int64_t perm[64];
        for (int64_t i = 0; i < c.slots; i++) perm[i] = i;
        for (int64_t i = c.slots - 1; i > 0; i--) {
            int64_t j = d8(&d) % (i + 1), t = perm[i];
            perm[i] = perm[j]; perm[j] = t;
        }
        int64_t cnt = c.N < 8 ? c.N : 8;
        for (int64_t i = 0; i < cnt; i++) c.rowv[i] = perm[i];
        if (c.N > 8) bad(&d);   /* cannot happen with N <= 6 */
        int rfault = s3 >> 5;   /* 0..3 none */
        if (rfault >= 4 && cnt >= 1) {
            switch (rfault) {
            case 4: if (cnt >= 2) c.rowv[1] = c.rowv[0]; else c.rowv[0] = c.slots; break;   /* repeated */
            case 5: c.rowv[cnt - 1] = c.slots + (s3 & 7); break;                              /* out of range */
            case 6: c.rowv[0] = (s3 & 1) ? -1 : INT64_MIN; break;                              /* negative */
            case 7: cnt = c.N + 1 <= 8 ? c.N + 1 : c.N - 1; c.rowv[cnt - 1] = c.slots + 5; break; /* wrong count */
            }
            bad(&d);
        }
        make_index(&c.rows, c.rowv, cnt, s3 & 1, (s3 >> 1) % 3);
        if (rfault == 7) { /* rows out of range too */ }
        if (!c.has_ini && !c.has_fin) bad(&d);   /* rows without states */
    }
    if (c.has_ini) {
        make_state(&d, &c.ini, c.state_dt, c.slots, c.n, pad, neg, 1);
        if (cfg_ok) prefix_state(&c, &d);
    }
    if (c.has_fin && !c.same) make_state(&d, &c.fin, c.state_dt, c.slots, c.n, (pad + 1) & 3, !neg, 0);
    if ((c.has_ini || c.has_fin) && sfault >= 16) {
        tbuf *w = c.has_fin && !c.same && (sfault & 1) ? &c.fin : c.has_ini ? &c.ini : &c.fin;
        switch (sfault & 7) {
        case 0: w->t.dtype = c.state_dt == HLA_FLOAT64 ? HLA_FLOAT32 : HLA_FLOAT64; bad(&d); break;
        case 1: w->t.shape[1] += 1; bad(&d); break;
        case 2: if (c.n > 1) { w->t.strides[1] = 2; bad(&d); } break;
        case 3: if (c.slots >= 2 && c.n > 1) { w->t.strides[0] = w->t.strides[0] > 0 ? c.n - 1 : 1 - c.n; bad(&d); } break;
        case 4: if (!c.has_rows) { w->t.shape[0] = c.N - 1; bad(&d); } break;
        case 5: w->t.data = NULL; bad(&d); break;
        case 6: w->t.ndim = 3; bad(&d); break;
        case 7: if (w == &c.fin || c.same) { w->t.strides[0] = 0; if (c.slots >= 2) bad(&d); } break;
        }
    }

    /* values: bounded; optionally a non-finite element */
    double mag = 1.0;
    fill_seq(&d, &c.q, mag);
    fill_seq(&d, &c.k, mag);
    fill_seq(&d, &c.v, mag);
    uint8_t nf = d8(&d);
    c.finite = 1;
    for (int i = 0; i < 8; i++) c.bad_t[i] = INT64_MAX;
    if (nf >= 0xE8 && !c.q.unallocated && !c.k.unallocated && !c.v.unallocated && c.B >= 1 && c.T >= 1) {
        tbuf *w = nf % 3 == 0 ? &c.q : nf % 3 == 1 ? &c.k : &c.v;
        int64_t idx[4];
        for (int i = 0; i < 4; i++) idx[i] = d8(&d) % (w->t.shape[i] > 0 ? w->t.shape[i] : 1);
        double x = (nf & 4) ? NAN : (nf & 8) ? INFINITY : -INFINITY;
        if (w->t.ndim == 4 && w->t.data) {
            st_elem(w, tb_off(w, idx), x);
            c.finite = 0;
            /* any element written through a zero or squeezed stride may sit at several indices: find
             * the first token of each sequence reading a non-finite q, k or v element */
        }
    }
    if (!c.finite) {
        tbuf *ts[3] = {&c.q, &c.k, &c.v};
        for (int w = 0; w < 3; w++) {
            int64_t sh[4], idx[4];
            for (int i = 0; i < 4; i++) sh[i] = ts[w]->t.shape[i];
            for (idx[0] = 0; idx[0] < sh[0]; idx[0]++)
                for (idx[1] = 0; idx[1] < sh[1]; idx[1]++)
                    for (idx[2] = 0; idx[2] < sh[2]; idx[2]++)
                        for (idx[3] = 0; idx[3] < sh[3]; idx[3]++)
                            if (!isfinite(ld_elem(ts[w], tb_off(ts[w], idx)))) {
                                int64_t seq = idx[0], t = idx[1];
                                if (c.has_cu) {
                                    seq = 0;
                                    while (seq + 1 < c.N && c.cuv[seq + 1] <= idx[1]) seq++;
                                    t = idx[1] - c.cuv[seq];
                                }
                                if (seq < 8 && t < c.bad_t[seq]) c.bad_t[seq] = t;
                            }
        }
    }

    /* a shape, rank or NULL fault on one tensor */
    if (fb >= 0xF0) {
        tbuf *which[4] = {&c.q, &c.k, &c.v, &c.out};
        tbuf *w = which[fb & 3];
        switch ((fb >> 2) & 3) {
        case 0: w->t.shape[3] += 1; break;
        case 1: w->t.ndim = 3; break;
        case 2: w->t.data = NULL; break;
        case 3: w->t.shape[2] += 1; break;
        }
        bad(&d);
    }
    pristine p;
    memset(&p, 0, sizeof p);
    p.q = dup_bytes(&c.q); p.k = dup_bytes(&c.k); p.v = dup_bytes(&c.v);
    if (c.has_cu) p.cu = dup_bytes(&c.cu);
    if (c.has_rows) p.rows = dup_bytes(&c.rows);
    if (c.has_ini) p.ini = dup_bytes(&c.ini);

    if (d.invalid == 0 && !d.dontcare && cfg_ok) check_valid(&c, &p, &d);
    else check_invalid(&c, &p, d.invalid == 0);

    free_pristine(&p);
    tb_free(&c.q); tb_free(&c.k); tb_free(&c.v); tb_free(&c.out);
    if (c.has_cu) tb_free(&c.cu);
    if (c.has_rows) tb_free(&c.rows);
    if (c.has_ini) tb_free(&c.ini);
    if (c.has_fin && !c.same) tb_free(&c.fin);
    free(c.f.cfg);
    return 0;
}
