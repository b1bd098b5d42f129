import CHLA

/// One operator of docs/spec.md §2 in its three views: the streaming recurrence (`step`), the chunked form
/// (`chunk`) and the segment summary with its associative `combine`; plus the brute-force `reference`.
/// Each operator lives in its own folder, one file per view.
///
/// Kernels work on one *unit*: a (batch, kv head) pair with the `group` query heads that read it.
/// Inputs arrive packed and dense: keys K (n × dk), values V (n × dvp, a column of ones appended when
/// normalizing), queries Q (group × n × dk, already scaled). Kernels write numerators (n × dvp per head).
protocol Operator {
    /// Block sizes (elements) of the streaming state: per kv head, and per query head.
    static func stateBlocks(_ c: Config) -> (kv: Dims, q: Dims)
    /// Extra per-query-head blocks a segment summary carries after the state blocks.
    static func summaryExtraBlocks(_ c: Config) -> Dims

    /// Consume one token, first half: advance the kv-head blocks of the unit with k (dk), v (dvp). Reads and
    /// writes `u.kv` only (a step can advance a thread's copy of the blocks, Paths.stepByHead).
    static func stepKV<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>)
    /// Consume one token, second half, for query head j of the unit (after `stepKV`): q (dk) → out (dvp).
    /// Reads the kv blocks only, so the heads of one unit can run on different threads.
    static func stepHead<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j: Int, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                      q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>)
    /// Scratch elements `stepHead` needs.
    static func stepScratch(_ c: Config) -> Int
    /// Consume one token of a unit with a single query head: `stepKV` then `stepHead`, bit for bit, with
    /// each kv-block update fused into the sweep that reads the updated block (one pass over it, not two).
    static func stepSingle<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                        q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>)

    /// Consume two consecutive tokens of a unit with a single query head: `stepSingle` twice, bit for bit, with
    /// each block swept once for both tokens (the serial path's inner step). k (2 × dk), v (2 × dvp), q (2 × dk),
    /// out (2 × dvp), token after token; tmp holds 2 · `stepScratch` elements.
    static func stepSingle2<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                         q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>)

    /// Consume two consecutive tokens of a unit with several query heads: `stepGroup` twice, bit for bit,
    /// with each query head's blocks swept once for both tokens. k (2 × dk), v (2 × dvp); q (group × 2 × dk)
    /// and out (group × 2 × dvp) as `IO.pack` lays out two tokens (head j's token r at row 2j + r); tmp holds
    /// 2 · `stepScratchAll` elements.
    static func stepGroup2<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                        q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>)

    /// Consume one token, second half, for the n query heads j0..<j0+n of the unit (after `stepKV`): `stepHead`
    /// for each, bit for bit, with the products of the shared kv blocks by the heads' vectors formed for all n
    /// heads in one sweep over each block. q (n × dk), out (n × dvp); tmp holds `stepScratchHeads(c, n)`
    /// elements. Reads the kv blocks only, so disjoint ranges of heads can run on different threads.
    static func stepHeads<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j0: Int, _ n: Int, k: UnsafePointer<T>,
                                       v: UnsafePointer<T>, q: UnsafePointer<T>, out: UnsafeMutablePointer<T>,
                                       tmp: UnsafeMutablePointer<T>)

    /// `stepKVHeads` on the AVX-512 step kernel, where it applies to this configuration and T (then true; else
    /// false, and nothing is done): the kv blocks advance in the sweeps that form the first head's products from
    /// them (one pass over them, not two), the same bits as `stepKV` then `stepHeads`. With `from`, the kv sweeps
    /// read the state's blocks and leave the advanced blocks both there and in u's (hla_private_kv_from).
    static func stepKVHeadsFused<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j0: Int, _ n: Int, k: UnsafePointer<T>,
                                              v: UnsafePointer<T>, q: UnsafePointer<T>, out: UnsafeMutablePointer<T>,
                                              tmp: UnsafeMutablePointer<T>,
                                              from: UnsafeMutablePointer<hla_private_kv_from>?) -> Bool

    /// Outputs of n tokens from the carry in `u`, then (`carryOut`) advance the carry past them; without
    /// `carryOut` the carry's products are skipped and `u` is left as it was (the outputs are the same bits).
    static func chunk<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, n: Int,
                                   K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                   O: UnsafeMutablePointer<T>, carryOut: Bool, scratch: inout Scratch<T>)
    /// Summary (state and extra blocks, summary layout) of n tokens from an empty prefix into `u` (every block
    /// is written: `u` need not be zeroed).
    static func summarize<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, n: Int,
                                       K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                       scratch: inout Scratch<T>)
    /// The scan path's chunk: the outputs of n tokens from the carry in `u` (`chunk` without `carryOut`, `u` left
    /// as it was) and the summary of the same tokens into `s` (`summarize`; every block is written, so `s` need
    /// not be zeroed), each product both need formed once: the same bits as the two calls. Finite inputs only
    /// (the path routes a chunk with a non-finite input through `chunk` and `summarize`).
    static func scanChunk<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, _ s: Unit<T>, n: Int,
                                       K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                       O: UnsafeMutablePointer<T>, scratch: inout Scratch<T>)
    /// a ← a · b (a of nA tokens, then b of nB). With `full` false, `a` holds only state blocks and only
    /// those are updated (the carry-in of what follows).
    static func combine<T: HLAFloat>(_ c: Config, _ a: Unit<T>, nA: Int, _ b: Unit<T>, nB: Int, full: Bool,
                                     scratch: inout Scratch<T>)
    /// Scratch elements `chunk`, `summarize` and `combine` need for chunks of n tokens.
    static func chunkScratch(_ c: Config, n: Int) -> Int

    /// Reverse of one token of the streaming recurrence (docs/gradients.md), for the whole unit. `u` holds
    /// the states *after* the token, `d` their adjoints (every later token already folded in); `d` becomes
    /// the adjoint of the states before the token. k (dk), v (dvp), q (group × dk, scaled), g (group × dvp,
    /// the numerators' cotangents) → dk (dk), dv (dvp), dq (group × dk, w.r.t. the scaled q), overwritten.
    static func stepBackward<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ d: Unit<T>, k: UnsafePointer<T>,
                                          v: UnsafePointer<T>, q: UnsafePointer<T>, g: UnsafePointer<T>,
                                          dk: UnsafeMutablePointer<T>, dv: UnsafeMutablePointer<T>,
                                          dq: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>)
    /// Scratch elements `stepBackward` needs.
    static func backwardScratch(_ c: Config) -> Int
    /// Replace the adjoints of the symmetric blocks (S, S^Q) by their symmetric parts (docs/gradients.md §7).
    static func symmetrizeAdjoint<T: HLAFloat>(_ c: Config, _ d: Unit<T>)

    /// Brute force: the T × T coefficient matrix M (row-major, double) with numerator_t = Σ_j M[t][j] v_j,
    /// from the scaled queries and keys of one head (T × dk each, double). `ref` holds the Gram matrix
    /// G[t][i] = q_t·k_i, the decay powers and a row of scratch.
    static func referenceCoefficients(_ c: Config, _ ref: ReferenceWork, m: UnsafeMutablePointer<Double>)
}

extension Operator {
    /// `scanChunk` as its two calls (the operators' variants that share no product).
    @inline(__always)
    static func scanChunkSeparately<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, _ s: Unit<T>, n: Int,
                                                 K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                                 O: UnsafeMutablePointer<T>, scratch: Scratch<T>) {
        var s0 = scratch, s1 = scratch
        chunk(c, pw, u, n: n, K: K, V: V, Q: Q, O: O, carryOut: false, scratch: &s0)
        summarize(c, pw, s, n: n, K: K, V: V, Q: Q, scratch: &s1)
    }

    /// `chunk` with the carry advanced.
    @inline(__always)
    static func chunk<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, n: Int,
                                   K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                   O: UnsafeMutablePointer<T>, scratch: inout Scratch<T>) {
        chunk(c, pw, u, n: n, K: K, V: V, Q: Q, O: O, carryOut: true, scratch: &scratch)
    }

    /// Consume one token: k (dk), v (dvp), q (group × dk); write out (group × dvp).
    /// `tmp` holds `stepScratchAll(c)` elements.
    @inline(__always)
    static func step<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                  q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        if u.group == 1 {
            // One query head: on the step kernel where it applies (its sweeps; its scratch for one head fits in
            // `stepScratch`), else the portable fused sweeps. The same bits either way. The AVX2 kernel against the
            // portable sweeps at H = Hkv = 64, d = 64 on a Zen 3 host (`ab.py`, two threads; hla3, hla2, ahla):
            // 0.954-0.964 (15 rounds), 0.920-0.934 (25 rounds), and once 0.992 (11 rounds).
            if stepKVHeadsFused(c, u, 0, 1, k: k, v: v, q: q, out: out, tmp: tmp, from: nil) { return }
            return stepSingle(c, u, k: k, v: v, q: q, out: out, tmp: tmp)
        }
        stepGroup(c, u, k: k, v: v, q: q, out: out, tmp: tmp)
    }

    /// Consume two consecutive tokens, packed as `IO.pack` lays them out (n = 2): `step` twice, bit for bit.
    /// `tmp` holds 2 · `stepScratchAll(c)` elements.
    @inline(__always)
    static func step2<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                   q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        if u.group == 1 { return stepSingle2(c, u, k: k, v: v, q: q, out: out, tmp: tmp) }
        stepGroup2(c, u, k: k, v: v, q: q, out: out, tmp: tmp)
    }

    /// `stepKV` then `stepHeads` for the n query heads j0..<j0+n, bit for bit, through `stepKVHeadsFused` where it
    /// applies: the first range of heads a thread steps (`stepGroup`, Paths.stepByHead).
    @inline(__always)
    static func stepKVHeads<T: HLAFloat>(_ c: Config, _ u: Unit<T>, _ j0: Int, _ n: Int, k: UnsafePointer<T>,
                                         v: UnsafePointer<T>, q: UnsafePointer<T>, out: UnsafeMutablePointer<T>,
                                         tmp: UnsafeMutablePointer<T>) {
        if n > 0 && stepKVHeadsFused(c, u, j0, n, k: k, v: v, q: q, out: out, tmp: tmp, from: nil) { return }
        stepKV(c, u, k: k, v: v)
        stepHeads(c, u, j0, n, k: k, v: v, q: q, out: out, tmp: tmp)
    }

    /// Consume one token of a unit with several query heads: `stepKV`, then `stepHeads` for all of them
    /// (`stepKVHeads`). q (group × dk), out (group × dvp); tmp holds `stepScratchAll` elements.
    @inline(__always)
    static func stepGroup<T: HLAFloat>(_ c: Config, _ u: Unit<T>, k: UnsafePointer<T>, v: UnsafePointer<T>,
                                       q: UnsafePointer<T>, out: UnsafeMutablePointer<T>, tmp: UnsafeMutablePointer<T>) {
        stepKVHeads(c, u, 0, u.group, k: k, v: v, q: q, out: out, tmp: tmp)
    }

    /// Scratch elements `stepHeads` needs for n heads: two vectors per head (and `stepScratch`).
    static func stepScratchHeads(_ c: Config, _ n: Int) -> Int { stepScratch(c) + n * (c.dk + max(c.dk, c.dvp)) }

    /// Scratch elements `step` needs: `stepScratch`, and with grouped heads two vectors per query head.
    static func stepScratchAll(_ c: Config) -> Int {
        c.group > 1 ? stepScratchHeads(c, c.group) : stepScratch(c)
    }
}

/// Whether a masked multi-head step of T runs on the step kernel (`heads` in Sources/CHLA/step_heads.h: the heads'
/// products of the kv blocks as products on the register tiles, then one sweep of each head's block; the same bits
/// as `stepHeadsPortable`): float32, dk and dvp multiples of 64, on AVX-512 (tile512.c, the next heads' product
/// tiles fused into the sweeps) or AVX2 (tile256.c, without AVX-512 or with HLA_SIMD=avx2; the AVX2 kernel against
/// the portable steps on the Zen 3 host without AVX-512: README, Speed, stop 45). On AVX-512, at d = 128 the
/// earlier form of the kernel (which read the kv blocks in every head's sweep) was 11% slower than the portable
/// steps (hla3, H = 16, Hkv = 2) and was kept at d = 64; this one measured alike there with several query heads per
/// kv head (per-round ratios hla3 H=16 Hkv=2 0.986, hla2 H=16 Hkv=1 0.942, ahla H=16 Hkv=4 1.013; one thread) and
/// faster with one (H = Hkv = 16: 0.912-0.931 on one thread, 0.932-0.952 on two; the AMD EPYC VM). Shared by hla3,
/// hla2 and ahla's `stepHeads` and by single-head steps (each adds its own conditions).
@inline(__always)
func onStepKernel<T: HLAFloat>(_ c: Config, _: T.Type) -> Bool {
    c.masked && T.self == Float.self && c.dk % 64 == 0 && c.dvp % 64 == 0 && Gemm.avx2
}

/// Pointers to one unit of a state or summary: the kv blocks, and the per-query-head blocks of the
/// group's first head (the next head's start `qStride` elements later).
struct Unit<T: HLAFloat> {
    let kv: UnsafeMutablePointer<T>
    let q: UnsafeMutablePointer<T>
    let qStride: Int
    let group: Int
    @inline(__always) func head(_ j: Int) -> UnsafeMutablePointer<T> { q + j * qStride }
}

/// Where each block of one sequence's state (or summary) lives in its row of `elements` numbers
/// (docs/state-layout.md): [kv blocks of kv head g for g in 0..<Hkv] then [q blocks of query head h for
/// h in 0..<H], each block row-major, in the order `stateBlocks` (then `summaryExtraBlocks`) lists them.
/// Only plain integers: kernels on several threads read it without touching any reference count.
struct Layout: Equatable {
    let kvTotal: Int      // elements of the kv blocks of one kv head
    let qTotal: Int       // elements of the blocks of one query head
    let heads: Int, kvHeads: Int
    var kvRegion: Int { kvHeads * kvTotal }
    var elements: Int { kvRegion + heads * qTotal }

    static func state(_ c: Config) -> Layout {
        let b = blocks(c)
        return Layout(kvTotal: b.kv.total, qTotal: b.q.total, heads: c.heads, kvHeads: c.kvHeads)
    }
    static func summary(_ c: Config) -> Layout {
        let b = blocks(c)
        return Layout(kvTotal: b.kv.total, qTotal: b.q.total + b.extra.total, heads: c.heads, kvHeads: c.kvHeads)
    }

    /// The operator's block sizes, dispatched without existentials or heap allocation.
    private static func blocks(_ c: Config) -> (kv: Dims, q: Dims, extra: Dims) {
        switch c.op {
        case .hla2: let b = HLA2.stateBlocks(c); return (b.kv, b.q, HLA2.summaryExtraBlocks(c))
        case .ahla: let b = AHLA.stateBlocks(c); return (b.kv, b.q, AHLA.summaryExtraBlocks(c))
        case .hla3: let b = HLA3.stateBlocks(c); return (b.kv, b.q, HLA3.summaryExtraBlocks(c))
        }
    }

    /// Unit of kv head g in the row starting at `row`.
    @inline(__always)
    func unit<T>(_ row: UnsafeMutablePointer<T>, g: Int) -> Unit<T> {
        let group = heads / kvHeads
        return Unit(kv: row + g * kvTotal, q: row + kvRegion + g * group * qTotal, qStride: qTotal, group: group)
    }
}

/// The rows of N sequences in a [slots, n] block of caller memory: sequence i at row index[i] (or i).
struct Rows<T> {
    let base: UnsafeMutablePointer<T>
    let stride: Int
    let index: UnsafePointer<Int>?
    @inline(__always) func row(_ i: Int) -> UnsafeMutablePointer<T> { base + (index.map { $0[i] } ?? i) * stride }
}

/// Inputs and scratch of one head's brute-force evaluation (all double, row-major).
struct ReferenceWork {
    let T: Int, dk: Int
    let q: UnsafeMutablePointer<Double>     // T × dk, scaled
    let k: UnsafeMutablePointer<Double>     // T × dk
    let gram: UnsafeMutablePointer<Double>  // T × T, gram[t][i] = q_t · k_i
    let gp: UnsafeMutablePointer<Double>    // gp[e] = γ^e for e in 0...3T
    let row: UnsafeMutablePointer<Double>   // T scratch
    static func elements(T: Int, dk: Int) -> Int { 2 * T * dk + T * T + 3 * T + 1 + T }

    @inline(__always) func g(_ t: Int, _ i: Int) -> Double { gram[t * T + i] }
    @inline(__always) func qq(_ t: Int, _ j: Int) -> Double {
        var s = 0.0
        for a in 0..<dk { s += q[t * dk + a] * q[j * dk + a] }
        return s
    }
}
