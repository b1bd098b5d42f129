/* The masked multi-head step kernel (HLA3.stepHeads, HLA2.stepHeads, AHLA.stepHeads), written once over a vector
 * register type and included by the file that compiles it for one instruction set: tile512.c (AVX-512F, 16-lane zmm
 * registers) and tile256.c (AVX2/FMA, 8-lane ymm registers). A W block is HV_BLOCK registers wide (64 columns
 * either way), a product tile two. Every element is the same fused multiply-add chain at either width, so both give
 * the bits of the portable composition (Vec.rank1Project, Gemm). The including file defines first:
 *   HV, HV_LANES             the register type and its float32 lanes
 *   HV_MASK                  an unsigned type holding one bit per lane (HV_NEQ's result)
 *   HV_INLINE                the storage, target and inlining attributes of the kernel's functions
 *   HV_EXPORT                the target attribute of the three entry points
 *   HV_LOAD(p), HV_STORE(p, x), HV_SET1(s), HV_ZERO(), HV_FMA(a, b, c) (a·b + c, fused), HV_MUL(a, b)
 *   HV_NEQ(a, b)             the lanes whose bits differ
 *   HV_PRODUCTS(m, k, A, B, w, C)           C (m × w) = A (m × k) · B (k × w), dense, row-major, w a multiple of two
 *                                           registers: each element one fused multiply-add chain over k in order
 *   HV_BLOCK                 registers per W block (4 or 8: the accumulators of o, one per register)
 *   HV_FUSE                  1: each group's product tiles are fused into the previous group's W sweeps (blocks of
 *                            four registers only); 0: all heads' products are formed first, then each head's sweeps
 *   HV_KQ                    1: the kv sweeps also form heads 1-3's products (twelve more accumulators; AVX-512's 32
 *                            registers hold them, AVX2's 16 do not)
 * and, with HV_FUSE or HV_KQ,
 *   HV_GROUP                 heads per group, the rows of a product tile fused into a sweep (at most 4)
 * and, with HV_FUSE,
 *   HV_TILE(rows, k, a, bp, ld, c)          one two-register tile of that product: rows (1-4) rows of A (row r at
 *                                           a + r·k) times B's panel at bp (row p at bp + p·ld) into c (ld apart)
 *   HV_NAME(x)               the entry point's name for x (hla3_heads, hla2_heads, ahla_heads)
 * and the file is included once per translation unit. */

/* One block of HV_BLOCK registers' columns of a masked multi-head step for query head j (columns
 * c0..c0+HV_BLOCK·HV_LANES-1 of W_j and o_j; hla3's names: hla2's U and ahla's E are its W): for r in 0..<dk,
 *   W_j[r] ← g3·W_j[r] + z[r]·y   (g3 = 1: no multiply),   o_j += q_j[r]·W_j[r]           (W: `w`, o: `o`)
 * each column of o one fused multiply-add chain over r in order, from zero, as Vec.rank1Project forms W and o: the
 * same bits. SCALED is a constant after inlining.
 * With NR > 0 (1-4, a constant after inlining) one 4-row tile of the next heads' products is fused into the sweep:
 * while the block's dk rows of W are swept (bound by their loads and stores, the FMA ports about 60% busy), the tile
 * C (NR × 2·HV_LANES, row r at c + r·ldc) = A (NR rows of dk, row r at a + r·dk) · B (dk × 2·HV_LANES, row p at
 * bp + p·bs) takes one step p per row of the sweep, so its fused multiply-adds fill the sweep's idle FMA slots. Each
 * tile element is one chain over p in order from zero: the same bits as `products`. Only NR rows are multiplied: a
 * last group of fewer than four heads costs no FMAs for the missing ones (with repeated rows instead, hla3 with 5
 * heads at d = 64 took 1.25x the time of the kernel before the fusion). NR = 0: the sweep alone (a, bp, c unused).
 * FROM (a kv sweep of a multi-query step's first thread, hla_private_kv_from): 1, each row read from `from` and the
 * advanced row stored there too; 2, also compared bit for bit with w's row first (differences ORed into *differs).
 * KQ (a kv sweep): o_i += qk_i[r]·(advanced row r) for three more heads as for qj, stored at ok + i·ldok (i = 0..2),
 * each element one fused multiply-add chain over r in order from zero: the same bits as `products`. */
HV_INLINE void step_block(int SCALED, int NR, int FROM, int KQ,
    ptrdiff_t dk, ptrdiff_t dvp, float *w, const float *z, const float *y, const float *qj, float *o, float g3,
    const float *a, const float *bp, ptrdiff_t bs, float *c, ptrdiff_t ldc, float *from, unsigned *differs,
    const float *qk, float *ok, ptrdiff_t ldok) {
    enum { L = HV_LANES };
    HV_MASK diff = 0;
    HV o0 = HV_ZERO(), o1 = o0, o2 = o0, o3 = o0, o4 = o0, o5 = o0, o6 = o0, o7 = o0;
    (void)o4; (void)o5; (void)o6; (void)o7;
    HV p10 = o0, p11 = o0, p12 = o0, p13 = o0, p20 = o0, p21 = o0, p22 = o0, p23 = o0, p30 = o0, p31 = o0,
       p32 = o0, p33 = o0;
    (void)p10; (void)p11; (void)p12; (void)p13; (void)p20; (void)p21; (void)p22; (void)p23; (void)p30; (void)p31;
    (void)p32; (void)p33;
    HV x0 = o0, x1 = o0, x2 = o0, x3 = o0, e0 = o0, e1 = o0, e2 = o0, e3 = o0;
    const HV g = HV_SET1(g3);
    const HV v0 = HV_LOAD(y), v1 = HV_LOAD(y + L), v2 = HV_LOAD(y + 2 * L), v3 = HV_LOAD(y + 3 * L);
    const HV v4 = HV_BLOCK > 4 ? HV_LOAD(y + 4 * L) : v0, v5 = HV_BLOCK > 4 ? HV_LOAD(y + 5 * L) : v0,
             v6 = HV_BLOCK > 4 ? HV_LOAD(y + 6 * L) : v0, v7 = HV_BLOCK > 4 ? HV_LOAD(y + 7 * L) : v0;
    (void)v4; (void)v5; (void)v6; (void)v7;
    const float *a0 = a, *a1 = a + (NR > 1 ? 1 : 0) * dk, *a2 = a + (NR > 2 ? 2 : 0) * dk, *a3 = a + (NR > 3 ? 3 : 0) * dk;
    (void)a0; (void)a1; (void)a2; (void)a3; (void)x0; (void)x1; (void)x2; (void)x3; (void)e0; (void)e1; (void)e2; (void)e3;
    for (ptrdiff_t r = 0; r < dk; r++) {
        float *row = w + r * dvp, *src = FROM ? from + r * dvp : row;
        const HV zr = HV_SET1(z[r]), xr = HV_SET1(qj[r]);
        const HV s1 = KQ ? HV_SET1(qk[r]) : zr, s2 = KQ ? HV_SET1(qk[dk + r]) : zr, s3 = KQ ? HV_SET1(qk[2 * dk + r]) : zr;
        (void)s1; (void)s2; (void)s3;
        const HV b = NR > 0 ? HV_LOAD(bp + r * bs) : zr, f = NR > 0 ? HV_LOAD(bp + r * bs + L) : zr;
        (void)b; (void)f;
#define W0(k, v, acc) HV t = HV_LOAD(src + L * k); \
        if (FROM == 2) diff |= HV_NEQ(t, HV_LOAD(row + L * k)); \
        if (SCALED) t = HV_MUL(t, g); \
        t = HV_FMA(zr, v, t); HV_STORE(row + L * k, t); if (FROM) HV_STORE(src + L * k, t); \
        acc = HV_FMA(xr, t, acc);
#define W1(k, v, acc) { W0(k, v, acc) \
        if (KQ) { p1##k = HV_FMA(s1, t, p1##k); p2##k = HV_FMA(s2, t, p2##k); p3##k = HV_FMA(s3, t, p3##k); } }
#define T1(i) if (NR > i) { HV s = HV_SET1(a##i[r]); x##i = HV_FMA(s, b, x##i); e##i = HV_FMA(s, f, e##i); }
        W1(0, v0, o0) T1(0) W1(1, v1, o1) T1(1) W1(2, v2, o2) T1(2) W1(3, v3, o3) T1(3)
        if (HV_BLOCK > 4) { { W0(4, v4, o4) } { W0(5, v5, o5) } { W0(6, v6, o6) } { W0(7, v7, o7) } }
#undef W0
#undef W1
#undef T1
    }
    HV_STORE(o, o0); HV_STORE(o + L, o1); HV_STORE(o + 2 * L, o2); HV_STORE(o + 3 * L, o3);
    if (HV_BLOCK > 4) { HV_STORE(o + 4 * L, o4); HV_STORE(o + 5 * L, o5); HV_STORE(o + 6 * L, o6); HV_STORE(o + 7 * L, o7); }
    if (NR > 0) { HV_STORE(c, x0); HV_STORE(c + L, e0); }
    if (NR > 1) { HV_STORE(c + ldc, x1); HV_STORE(c + ldc + L, e1); }
    if (NR > 2) { HV_STORE(c + 2 * ldc, x2); HV_STORE(c + 2 * ldc + L, e2); }
    if (NR > 3) { HV_STORE(c + 3 * ldc, x3); HV_STORE(c + 3 * ldc + L, e3); }
    if (FROM == 2) *differs |= diff;
    if (KQ) {
        HV_STORE(ok, p10); HV_STORE(ok + L, p11); HV_STORE(ok + 2 * L, p12); HV_STORE(ok + 3 * L, p13);
        HV_STORE(ok + ldok, p20); HV_STORE(ok + ldok + L, p21); HV_STORE(ok + ldok + 2 * L, p22);
        HV_STORE(ok + ldok + 3 * L, p23);
        HV_STORE(ok + 2 * ldok, p30); HV_STORE(ok + 2 * ldok + L, p31); HV_STORE(ok + 2 * ldok + 2 * L, p32);
        HV_STORE(ok + 2 * ldok + 3 * L, p33);
    }
}

/* step_block with the decay test hoisted out of the row loop (g3 = 1 needs no multiply: the same bits). */
HV_INLINE void step_block_g(ptrdiff_t dk, ptrdiff_t dvp, float *w, const float *z, const float *y, const float *qj,
    float *o, float g3) {
    if (g3 == 1) step_block(0, 0, 0, 0, dk, dvp, w, z, y, qj, o, g3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    else step_block(1, 0, 0, 0, dk, dvp, w, z, y, qj, o, g3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
}

/* A kv sweep: in place, or with `from` (the state's rows at the same offsets) read there, stored there and in w,
 * each row compared with w's before it when `compare` (any difference ORed into *differs). With qk (HV_KQ only), the
 * products of three more heads (q rows at qk + i·dk, i = 0..2; outputs at ok + i·ldok) are formed from the advanced
 * rows as head 0's is (o): each element one fused multiply-add chain over the rows in order, as `products` forms it. */
HV_INLINE void kv_block(ptrdiff_t dk, ptrdiff_t dvp, float *w, const float *z, const float *y, const float *qj,
    float *o, float g3, float *from, int compare, unsigned *differs, const float *qk, float *ok, ptrdiff_t ldok) {
#define KV(KQ, SCALED) \
    if (!from) step_block(SCALED, 0, 0, KQ, dk, dvp, w, z, y, qj, o, g3, 0, 0, 0, 0, 0, 0, 0, qk, ok, ldok); \
    else if (compare) step_block(SCALED, 0, 2, KQ, dk, dvp, w, z, y, qj, o, g3, 0, 0, 0, 0, 0, from, differs, qk, ok, ldok); \
    else step_block(SCALED, 0, 1, KQ, dk, dvp, w, z, y, qj, o, g3, 0, 0, 0, 0, 0, from, differs, qk, ok, ldok);
#if HV_KQ
    if (qk) { if (g3 == 1) { KV(1, 0) } else { KV(1, 1) } }
    else
#endif
    { if (g3 == 1) { KV(0, 0) } else { KV(0, 1) } }
#undef KV
}

#if HV_FUSE
/* step_block with a tile of `rows` (1-4) rows of A, for either decay, each variant's loop straight-line. */
#define STEP_TILE(NR, SCALED, ...) step_block(SCALED, NR, 0, 0, __VA_ARGS__, 0, 0, 0, 0, 0)
#define BY_ROWS(f, rows, ...) \
    switch (rows) { case 1: f(1, __VA_ARGS__); break; case 2: f(2, __VA_ARGS__); break; \
                    case 3: f(3, __VA_ARGS__); break; default: f(4, __VA_ARGS__); break; }
HV_INLINE void step_block_tile_rows(ptrdiff_t rows, ptrdiff_t dk, ptrdiff_t dvp, float *w, const float *z,
    const float *y, const float *qj, float *o, float g3, const float *a, const float *bp, ptrdiff_t bs, float *c,
    ptrdiff_t ldc) {
    if (g3 == 1) { BY_ROWS(STEP_TILE, rows, 0, dk, dvp, w, z, y, qj, o, g3, a, bp, bs, c, ldc) }
    else { BY_ROWS(STEP_TILE, rows, 1, dk, dvp, w, z, y, qj, o, g3, a, bp, bs, c, ldc) }
}
#undef STEP_TILE
#undef BY_ROWS
#endif

/* A following thread's wait for the first thread's verdict (hla_private_kv_from): whether its copy held the state. */
static int follow_verdict(hla_private_kv_from *f) {
    hla_private_await(f->published, f->waited);
    return *f->verdict == f->version;
}

/* The masked multi-head step W_j ← g·W_j + z_j y_jᵀ, o_j = W_jᵀ q_j of one kv head's n query heads: hla3 (z = S q_j
 * and y = Pᵀ q_j per head), hla2 (y = zs, the token's value, for every head; no P) and ahla (z = zs, the token's key,
 * for every head; no S). DZ: z per head; DY: y per head (constants after inlining). zy holds Z (n·dk elements; hla3
 * and hla2), then Y (n·dvp; hla3 and ahla).
 * The heads' z and y are products Z = Q S and Y = Q P on register tiles, each block of S and P loaded once per tile of
 * heads rather than once per head in every head's W sweep (on the 2-core AMD EPYC VM, C microbenchmarks hot in L2 at
 * 3.6 GHz: hla2 with 8-64 query heads on one kv head took 18-22 cycles per row of W when each head's sweep also read
 * S, against 12.5 for the W sweep alone). The heads go in groups of four: the first group's products are formed
 * alone, then each group's W sweeps run with the next group's product tiles fused into them (`step_block`'s NR: a
 * sweep is bound by its loads and stores and leaves FMA slots free), and what does not pair up runs alone. hla3 with
 * 32 heads at d = 64 (one thread's half of H = 64, Hkv = 1), hot in L2: the W sweeps alone 12.9 cycles per row, the
 * products alone about 8 (their FMA bound), apart 20.8, fused 19.7 (0.95 of the time; 64 heads, from L3: 0.88-0.91);
 * hla2 and ahla, half of whose sweeps get a tile, 0.97-1.05. In the library's steps (ab.py, 15 rounds): hla3 at
 * H = 64, Hkv = 1 and 8 0.965 and 0.959, hla2 and ahla at Hkv = 1 0.974 and 0.965, H = Hkv (one head per call) alike.
 * (Those figures are the AVX-512 kernel's. On AVX2 the products are formed first and not fused: a sweep of 64
 * columns needs eight accumulators, which leave no registers for a tile, and with four-register blocks of 32
 * columns and fused tiles the steps took 1.05-1.14 of the portable steps' time on a Zen 3 host, README, Speed.)
 * When the kv blocks advance in the call (ku) and it has four heads or more, the first group's products are formed in
 * the kv sweeps themselves, from each row as it is advanced (`step_block`'s KQ; HV_KQ only): one pass over S and P
 * fewer per call. Hot in L2 (clang -O2): hla3 with 8 heads 0.958-0.983 of the time, 5 heads 0.868, 32 heads 0.986;
 * in the library's steps (ab.py, 15 rounds) at H = 64, Hkv = 8 (8 heads per call): hla3 0.945, ahla 0.942, hla2
 * 0.985; hla3 at H = 40, Hkv = 8 0.947; at Hkv = 1 alike (0.997-1.016). */
#if HV_KQ && (HV_GROUP != 4 || HV_BLOCK != 4)
#error "HV_KQ forms three more heads' products (a group of four) in blocks of four registers"
#endif
#if HV_FUSE && HV_BLOCK != 4
#error "a fused tile's accumulators fit beside blocks of four registers only"
#endif
#if HV_FUSE || HV_KQ
#define GROUP HV_GROUP
#else
#define GROUP 1                   /* no groups: every use of it is decided by HV_FUSE or HV_KQ, both 0 */
#endif
HV_INLINE void heads(int DZ, int DY, ptrdiff_t n, ptrdiff_t dk, ptrdiff_t dvp, float *S, float *P, const float *zs,
    const float *q, float *W, ptrdiff_t wstride, float g, float *zy, float *out, const float *ku, const float *vu,
    float gkv, hla_private_kv_from *from) {
    enum { BW = HV_BLOCK * HV_LANES, TW = 2 * HV_LANES };  /* a W block's and a product tile's columns */
    if (n <= 0) return;
    float *Z = zy, *Y = DZ ? zy + n * dk : zy;
    ptrdiff_t first = 0;
    if (ku) {
        /* The kv blocks advanced with the token (ku = k, vu = v; HLA*.stepKV) in the sweeps that form head 0's z and
         * y from them: S <- gkv S + k k^T with z = S q_0, P <- gkv P + k v^T with y = P^T q_0, each as the W sweep
         * below forms W_j and o_j (Vec.rank1Project's arithmetic: the same bits as the update, then the product). */
        /* (With `from`, n >= 1: Paths.stepByHead's ranges are never empty, so a first thread always publishes.) */
        const int lead = from && !from->follow;
        float *fS = lead ? from->kv : 0, *fP = lead ? from->kv + (DZ ? dk * dk : 0) : 0;
        const int compare = lead && from->version != 0;
        unsigned differs = 0;
        /* With four heads or more, heads 1-3's products are formed in the same sweeps, from the advanced rows. */
        const float *qk = HV_KQ && n >= GROUP ? q + dk : 0;
        for (ptrdiff_t c0 = 0; DZ && c0 < dk; c0 += BW)
            kv_block(dk, dk, S + c0, ku, ku + c0, q, Z + c0, gkv, fS ? fS + c0 : 0, compare, &differs,
                     qk, Z + dk + c0, dk);
        for (ptrdiff_t c0 = 0; DY && c0 < dvp; c0 += BW)
            kv_block(dk, dvp, P + c0, ku, vu + c0, q, Y + c0, gkv, fP ? fP + c0 : 0, compare, &differs,
                     qk, Y + dvp + c0, dvp);
        if (lead) {
            *from->verdict = compare && !differs ? from->version : 0;
            hla_private_publish(from->published);
        }
        first = HV_KQ && n >= GROUP ? GROUP : 1;
    }
    const ptrdiff_t n0 = !HV_FUSE || n < GROUP ? n : GROUP;     /* heads whose products are formed here */
    if (DZ) HV_PRODUCTS(n0 - first, dk, q + first * dk, S, dk, Z + first * dk);
    if (DY) HV_PRODUCTS(n0 - first, dk, q + first * dk, P, dvp, Y + first * dvp);
    if (from && from->follow && !follow_verdict(from)) { from->stopped = 1; return; }
#if HV_FUSE
    const ptrdiff_t ztiles = DZ ? dk / TW : 0, tiles = ztiles + (DY ? dvp / TW : 0);
    for (ptrdiff_t h0 = 0; h0 < n; h0 += GROUP) {
        const ptrdiff_t nh = n - h0 < GROUP ? n - h0 : GROUP;          /* this group's heads */
        const ptrdiff_t n1 = h0 + GROUP, rows = n - n1 < GROUP ? n - n1 : GROUP;   /* the next group's (may be <= 0) */
        ptrdiff_t t = rows > 0 ? 0 : tiles;                              /* next product tile */
        const float *a = q + n1 * dk;
        for (ptrdiff_t m = 0; m < nh; m++) {
            const ptrdiff_t j = h0 + m;
            const float *qj = q + j * dk, *z = DZ ? Z + j * dk : zs, *y = DY ? Y + j * dvp : zs;
            float *Wj = W + j * wstride, *oj = out + j * dvp;
            for (ptrdiff_t c0 = 0; c0 < dvp; c0 += BW) {
                if (t < tiles) {
                    const int isz = t < ztiles;
                    const ptrdiff_t tc = isz ? TW * t : TW * (t - ztiles), ld = isz ? dk : dvp;
                    const float *bp = (isz ? S : P) + tc;
                    float *c = (isz ? Z + n1 * dk : Y + n1 * dvp) + tc;
                    step_block_tile_rows(rows, dk, dvp, Wj + c0, z, y + c0, qj, oj + c0, g, a, bp, ld, c, ld);
                    t++;
                } else {
                    step_block_g(dk, dvp, Wj + c0, z, y + c0, qj, oj + c0, g);
                }
            }
        }
        for (; t < tiles; t++) {                                         /* tiles left unpaired */
            const int isz = t < ztiles;
            const ptrdiff_t tc = isz ? TW * t : TW * (t - ztiles), ld = isz ? dk : dvp;
            HV_TILE(rows, dk, a, (isz ? S : P) + tc, ld, (isz ? Z + n1 * dk : Y + n1 * dvp) + tc);
        }
    }
#else
    for (ptrdiff_t j = 0; j < n; j++) {                                  /* each head's W sweeps */
        const float *qj = q + j * dk, *z = DZ ? Z + j * dk : zs, *y = DY ? Y + j * dvp : zs;
        float *Wj = W + j * wstride, *oj = out + j * dvp;
        for (ptrdiff_t c0 = 0; c0 < dvp; c0 += BW) step_block_g(dk, dvp, Wj + c0, z, y + c0, qj, oj + c0, g);
    }
#endif
}
#undef GROUP

HV_EXPORT void HV_NAME(hla3_heads)(ptrdiff_t n, ptrdiff_t dk, ptrdiff_t dvp, float *S, float *P, const float *q,
    float *W, ptrdiff_t wstride, float g3, float *zy, float *out, const float *k, const float *v, float g,
    hla_private_kv_from *from) {
    heads(1, 1, n, dk, dvp, S, P, 0, q, W, wstride, g3, zy, out, k, v, g, from);
}

HV_EXPORT void HV_NAME(hla2_heads)(ptrdiff_t n, ptrdiff_t dk, ptrdiff_t dvp, float *S, const float *v, const float *q,
    float *U, ptrdiff_t ustride, float g2, float *z, float *out, const float *k, float g, hla_private_kv_from *from) {
    heads(1, 0, n, dk, dvp, S, 0, v, q, U, ustride, g2, z, out, k, 0, g, from);
}

HV_EXPORT void HV_NAME(ahla_heads)(ptrdiff_t n, ptrdiff_t dk, ptrdiff_t dvp, float *P, const float *k, const float *q,
    float *E, ptrdiff_t estride, float g, float *y, float *out, const float *vu, float gkv, hla_private_kv_from *from) {
    heads(0, 1, n, dk, dvp, 0, P, k, q, E, estride, g, y, out, vu ? k : 0, vu, gkv, from);
}
