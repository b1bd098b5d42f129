import CHLA
#if canImport(Glibc)
import Glibc
#endif

/// The execution paths of docs/spec.md §4 over whole tensors: each runs the operator's kernels on every
/// (batch, kv head) unit, units in parallel.
enum Paths {
    /// Chunk length used when the configuration asks for the automatic choice: per token the chunked
    /// form costs O(n·d) in the n × n products and O(d²) in the carry, and the carry's d³/n terms are
    /// gone, so the shortest chunk that keeps the products efficient on the register tiles wins: 32 at every
    /// head size. Before stop 48 it was 64 above head size 96, but 32 was the faster chunk at d = 128 in every
    /// cell of the committed Zen 4 run (docs/benchmarks.md) and in 11 of 12 of two Zen 3 runs; interleaved on
    /// the Zen 3 host (two threads, 7 rounds): 0.87-0.90 of 64's time at B = 1, T = 8192, 0.92-0.95 at B = 8,
    /// T = 1024; the backward (B = 1, T = 4096) 0.96-1.01.
    static func chunkLength(_ c: Config) -> Int {
        if c.chunkSize > 0 { return c.chunkSize }
        return 32
    }

    /// The automatic chunk length of the scan path and of summaries: 64 for head sizes up to 96, 128 above (twice
    /// the chunked path's before stop 48). Each chunk there also forms its summary and combines it into the carry
    /// (O(d³) per chunk for hla3's W, O(d²·dv) for the others' full combines), which longer chunks spread over more
    /// tokens. Measured on the AMD EPYC VM (B=1,
    /// H=8, 2 threads, medians of 7 alternating calls): hla3's scan at d = 64 took 93 ms at chunk 64 against 108
    /// at 32, at d = 128 184 against 195 at 64; ahla's 47 against 51 and 90 against 93; hla2's alike at d = 64
    /// (55 and 55) and 100 against 103 at d = 128 (the one case where the shorter chunk won); summaries of
    /// every operator 9-20% faster at these lengths than at `chunkLength`'s (5 alternating calls).
    static func scanChunkLength(_ c: Config) -> Int {
        if c.chunkSize > 0 { return c.chunkSize }
        return max(c.dk, c.dvp) <= 96 ? 64 : 128
    }

    /// Per-worker dense buffers for chunks of up to n tokens.
    struct Work<T: HLAFloat> {
        let buffer: RawBuffer<T>
        let per: Int, n: Int, dk: Int, dvp: Int, group: Int, scratch: Int

        init<Op: Operator>(_ op: Op.Type, _ c: Config, n: Int, workers: Int, extra: Int = 0) throws(HLAError) {
            self.n = n; dk = c.dk; dvp = c.dvp; group = c.group
            scratch = Op.chunkScratch(c, n: n) + Op.stepScratch(c) + Paths.nonFiniteScratch(op, c, n: n) + extra
            var p = try checkedMul(n, c.dk + c.dvp, "chunk buffers")
            p = try checkedAdd(p, try checkedMul(try checkedMul(c.group, n, "chunk buffers"), c.dk + c.dvp, "chunk buffers"), "chunk buffers")
            p = try checkedAdd(p, scratch + 64, "chunk buffers")
            per = p
            buffer = try RawBuffer<T>.allocate(try checkedMul(per, workers, "chunk buffers"))
        }
        func K(_ w: Int) -> UnsafeMutablePointer<T> { buffer.base + w * per }
        func V(_ w: Int) -> UnsafeMutablePointer<T> { K(w) + n * dk }
        func Q(_ w: Int) -> UnsafeMutablePointer<T> { V(w) + n * dvp }
        func O(_ w: Int) -> UnsafeMutablePointer<T> { Q(w) + group * n * dk }
        func scratch(_ w: Int) -> Scratch<T> {
            let o = O(w) + group * n * dvp
            let aligned = o + ((16 - (Int(bitPattern: o) / MemoryLayout<T>.stride) % 16) % 16)
            return Scratch(aligned, scratch)
        }
        func free() { buffer.free() }
    }

    /// Chunked: for each unit, chunk after chunk, outputs from the carry then carry advanced. The kv heads of
    /// one sequence are swept in bands, chunk by chunk across the band's heads: with heads interleaved in
    /// memory ([B, T, H, D]) one token's rows of the band's heads are adjacent, so the band reads each input
    /// row once as one contiguous run instead of one head's slice per page.
    /// `checkpoints` (nil, or rows for `CheckpointPlan`) receives each sequence's carry at every checkpoint.
    static func chunked<Op: Operator, T: HLAFloat>(_ op: Op.Type, _ c: Config, _ seqs: Seqs, io: IO<T>,
                                                   carry: Rows<T>, checkpoints: Checkpoints<T>? = nil) throws(HLAError) {
        let n0 = min(chunkLength(c), seqs.maxLength)
        let parallel = worthThreads(c, seqs, n0: n0)
        let layout = Layout.state(c)
        let bands = Bands(c, seqs, unitBytes: (layout.kvTotal + c.group * layout.qTotal) * MemoryLayout<T>.stride,
                          parallel: parallel)
        let workers = workerCount(bands.count, parallel: parallel)
        let work = try Work<T>(op, c, n: n0, workers: workers)
        defer { work.free() }
        let pw = try Powers<T>(c.decay, upTo: 3 * n0 + 3)
        defer { pw.free() }
        let share = try BandShare(workers: workers, bands: bands.count)
        defer { share.free() }
        parallelFor(bands.count, parallel: parallel, balanced: seqs.balanced) { i, w in
            // heads g0..<g1 of scheduled sequence sq from token `from` on: a band, or part of one (`BandShare`)
            share.run(i, w, bands, c, seqs, n0: n0) { sq, g0, g1, from, end, _ in
                let b = seqs.batch(sq), row = carry.row(sq), bos = seqs.bos(sq)
                share.sweep(w, band: sq, g0: g0, g1: g1, from: from, to: end, n0: n0) { g0, g1, t0, n in
                    for g in g0..<g1 {
                        let next = Bands.next(g, g0, g1, t0: t0, n: n, n0: n0, end: end)
                        let finite = io.pack(c, b: b, g: g, t0: t0, n: n, K: work.K(w), V: work.V(w), Q: work.Q(w),
                                             next: next)
                        io.planOut(c, b: b, g: g, t0: t0, n: n)
                        var s = work.scratch(w)
                        chunkOrSteps(op, c, pw, layout.unit(row, g: g), n: n, work: work, w: w, finite: finite, scratch: &s)
                        io.unpack(c, b: b, g: g, t0: t0, n: n, O: work.O(w))
                    }
                    // (n0 < the plan's chunk only when every sequence is one chunk: no checkpoint then)
                    let t1 = t0 + n
                    if let ck = checkpoints, t1 < end, (t1 - bos) % ck.plan.stride == 0 {
                        let dst = ck.row(sq, (t1 - bos) / ck.plan.stride - 1)
                        for g in g0..<g1 { copyBlocks(layout, from: layout.unit(row, g: g), to: layout.unit(dst, g: g), group: c.group) }
                    }
                }
            }
        }
    }

    /// Bands the kv heads of each sequence are split into: enough for every thread to have one, and each
    /// band's states (`unitBytes` per kv head) within half of a core's L2 (1 MiB here) so they stay cached
    /// while the band's heads take turns.
    static func bandsPerSequence(_ c: Config, _ seqs: Seqs, unitBytes: Int, parallel: Bool) -> Int {
        let budget = 512 << 10
        let fit = max(1, budget / max(1, unitBytes))
        let forThreads = parallel ? (hlaThreadCount + seqs.count - 1) / seqs.count : 1
        return min(c.kvHeads, max((c.kvHeads + fit - 1) / fit, forThreads))
    }

    /// The bands of a call (`bandsPerSequence` per sequence, `width` kv heads each) that the chunked, scan and
    /// summary sweeps hand to threads: band i holds heads `heads(i)` of scheduled sequence `sequence(i)`.
    struct Bands {
        let perSeq: Int, width: Int, count: Int
        init(_ c: Config, _ seqs: Seqs, unitBytes: Int, parallel: Bool) {
            perSeq = Paths.bandsPerSequence(c, seqs, unitBytes: unitBytes, parallel: parallel)
            width = (c.kvHeads + perSeq - 1) / perSeq
            count = seqs.count * perSeq
        }
        @inline(__always) func sequence(_ i: Int) -> Int { i / perSeq }
        @inline(__always) func heads(_ i: Int, _ c: Config) -> (Int, Int) {
            let g0 = (i % perSeq) * width
            return (g0, min(c.kvHeads, g0 + width))
        }
        /// The unit packed after head g of band g0..<g1 at tokens t0..<t0+n (chunks of n0 up to `end`): the
        /// band's next head in this chunk, else its first head in the next chunk.
        @inline(__always)
        static func next(_ g: Int, _ g0: Int, _ g1: Int, t0: Int, n: Int, n0: Int, end: Int) -> NextUnit {
            g + 1 < g1 ? .at(g: g + 1, t0: t0, n: n) : t0 + n < end ? .at(g: g0, t0: t0 + n, n: min(n0, end - t0 - n)) : .none
        }
    }

    /// The outputs of one packed chunk from the carry in `u`, then (`carryOut`) the carry advanced past it,
    /// through the dense chunk kernel; without `carryOut`, `u` is left as it was. A NaN or Inf inside the dense
    /// products would reach the outputs of earlier tokens of its chunk (through 0 · NaN under the causal mask),
    /// so a chunk with non-finite inputs runs the dense kernel on its inputs with those elements replaced by 0,
    /// which leaves every output the bad element cannot reach exactly as it would be without it, then
    /// recomputes what it can reach — the outputs of the query heads it feeds from its token on, and their
    /// blocks of the carry — token by token through the streaming recurrence with the true inputs
    /// (docs/spec.md §4: a non-finite input at token t affects only outputs ≥ t of its sequence and heads).
    /// `finite`: whether every packed input is finite, as `IO.pack` returned it.
    @inline(__always)
    static func chunkOrSteps<Op: Operator, T: HLAFloat>(_ op: Op.Type, _ c: Config, _ pw: Powers<T>, _ u: Unit<T>, n: Int,
                                                        work: Work<T>, w: Int, finite: Bool, carryOut: Bool = true,
                                                        scratch: inout Scratch<T>) {
        let K = work.K(w), V = work.V(w), Q = work.Q(w), O = work.O(w)
        let dk = c.dk, dvp = c.dvp, group = u.group
        if finite {
            Op.chunk(c, pw, u, n: n, K: K, V: V, Q: Q, O: O, carryOut: carryOut, scratch: &scratch)
            return
        }
        let kvFirst = min(firstNonFinite(K, rows: n, cols: dk), firstNonFinite(V, rows: n, cols: dvp))
        // first row each query head's outputs can be reached from (n: not reached)
        let first = scratch.take(group)
        for j in 0..<group { first[j] = T(min(kvFirst, firstNonFinite(Q + j * n * dk, rows: n, cols: dk))) }
        let L = Layout.state(c)
        let saved = scratch.take(L.kvTotal + group * L.qTotal)
        let carryIn = Unit(kv: saved, q: saved + L.kvTotal, qStride: L.qTotal, group: group)
        copyBlocks(L, from: u, to: carryIn, group: group)
        let Ks = scratch.take(n * dk), Vs = scratch.take(n * dvp), Qs = scratch.take(group * n * dk)
        zeroNonFinite(K, Ks, n * dk); zeroNonFinite(V, Vs, n * dvp); zeroNonFinite(Q, Qs, group * n * dk)
        let tmp = scratch.take(Op.stepScratch(c)), spare = scratch.take(dvp)
        Op.chunk(c, pw, u, n: n, K: Ks, V: Vs, Q: Qs, O: O, carryOut: carryOut, scratch: &scratch)
        for r in 0..<n {
            let k = K + r * dk, v = V + r * dvp
            Op.stepKV(c, carryIn, k: k, v: v)
            for j in 0..<group where Int(first[j]) < n {
                let out = r >= Int(first[j]) ? O + (j * n + r) * dvp : spare
                Op.stepHead(c, carryIn, j, k: k, v: v, q: Q + (j * n + r) * dk, out: out, tmp: tmp)
            }
        }
        if !carryOut { return }                                             // u is left as it was
        if kvFirst < n { for x in 0..<L.kvTotal { u.kv[x] = carryIn.kv[x] } }
        for j in 0..<group where Int(first[j]) < n {
            let s = carryIn.head(j), d = u.head(j)
            for x in 0..<L.qTotal { d[x] = s[x] }
        }
    }

    /// Scratch elements `chunkOrSteps` needs beyond the chunk kernel's.
    static func nonFiniteScratch<Op: Operator>(_ op: Op.Type, _ c: Config, n: Int) -> Int {
        let L = Layout.state(c)
        return Scratch<Double>.need([c.group, L.kvTotal + c.group * L.qTotal, n * c.dk, n * c.dvp, c.group * n * c.dk,
                                     Op.stepScratch(c), c.dvp])
    }

    /// Whether p[0..<count] is all finite: x · 0 is 0 for finite x and NaN otherwise, summed in four
    /// independent 16-lane accumulators (a few hundred cycles for a whole chunk's inputs).
    @inline(__always)
    static func allFinite<T: HLAFloat>(_ p: UnsafePointer<T>, _ count: Int) -> Bool {
        var a0 = SIMD16<T>(repeating: 0), a1 = a0, a2 = a0, a3 = a0
        var i = 0
        while i + 64 <= count {
            a0 += Vec.load(p + i) * 0; a1 += Vec.load(p + i + 16) * 0
            a2 += Vec.load(p + i + 32) * 0; a3 += Vec.load(p + i + 48) * 0
            i += 64
        }
        while i + 16 <= count { a0 += Vec.load(p + i) * 0; i += 16 }
        var tail: T = 0
        while i < count { tail += p[i] * 0; i += 1 }
        return ((a0 + a1) + (a2 + a3)).sum() + tail == 0
    }

    /// First row of a dense rows × cols block holding a non-finite element (rows if none).
    @inline(__always)
    static func firstNonFinite<T: HLAFloat>(_ p: UnsafePointer<T>, rows: Int, cols: Int) -> Int {
        // x · 0 is 0 for finite x and NaN otherwise; summed in 16 independent lanes so the scan costs a
        // few vector operations per row, not a chain of dependent scalar additions.
        for r in 0..<rows where !allFinite(p + r * cols, cols) { return r }
        return rows
    }

    @inline(__always)
    static func zeroNonFinite<T: HLAFloat>(_ src: UnsafePointer<T>, _ dst: UnsafeMutablePointer<T>, _ count: Int) {
        for i in 0..<count { dst[i] = src[i].isFinite ? src[i] : 0 }
    }

    /// Whether a serial-path call of several tokens per sequence, about `work` multiply-adds, is worth
    /// handing to the pool (single-token steps ask `StepThreads`). From about 4M multiply-adds (over 100 µs
    /// of work) a worker the scheduler keeps off its core costs far less than the second core gains.
    static func worthThreads(_ work: Int) -> Bool { work < 0 || work >= 1 << 22 }

    /// Whether a chunked, scan or summary call is worth the pool: about n0·(dk+dv) + dk·(dk+dv)
    /// multiply-adds per token and query head. Small calls (a short prompt: 37 tokens × 4 heads at d = 16
    /// ran 52 µs on one thread, 470 µs when the pool's workers had gone to sleep and had to be woken) stay
    /// on the caller's thread, by the same measure as steps.
    static func worthThreads(_ c: Config, _ seqs: Seqs, n0: Int) -> Bool {
        let tokens = seqs.cu == nil ? seqs.count &* seqs.tokens : seqs.tokens
        return worthThreads(tokens &* c.heads &* ((n0 &+ c.dk) &* (c.dk &+ c.dvp)))
    }

    /// Tokens ahead whose rows the serial sweep prefetches. One token's step is a few hundred ns at d = 64
    /// (more at larger heads), a read from memory about 100 ns: four tokens ahead covers it with room.
    static let serialAhead = 4

    /// Serial: token after token through the streaming recurrence (also the body of `hla_step`).
    static func serial<Op: Operator, T: HLAFloat>(_ op: Op.Type, _ c: Config, _ seqs: Seqs, io: IO<T>,
                                                  carry: Rows<T>) throws(HLAError) {
        let units = seqs.count * c.kvHeads
        let work = units &* seqs.tokens &* c.group &* (c.dk &* c.dk &+ 2 &* c.dk &* c.dvp)
        let step = seqs.tokens == 1 && seqs.cu == nil   // a decoding step: StepThreads decides
        var parallel = step ? StepThreads.shared.advised(work) : worthThreads(work)
        if step && parallel && units < hlaThreadCount && seqs.count * c.heads > units {
            if KVReplicas.shared.tryLock() {
                defer { KVReplicas.shared.unlock() }
                return try stepByHead(op, c, seqs, io: io, carry: carry, work: work)
            }
            parallel = false   // another host thread's step holds the kv copies: this one runs on the calling thread
        }
        let workers = workerCount(units, parallel: parallel)
        let layout = Layout.state(c)
        // Room for two tokens: tokens go through `step2` in pairs.
        let stepScratch = 2 * Op.stepScratchAll(c)
        let per = scratchStride(2 * (c.dk + c.dvp + c.group * (c.dk + c.dvp)) + stepScratch)
        // A decoding step's buffers come from the steps' kept scratch when no other host thread's step holds it
        // (an allocation and a free per step were a tenth of a small step's time); anything else allocates.
        let count = try checkedMul(per, workers, "step buffers")
        let kept = step && KVReplicas.shared.tryLock()
        defer { if kept { KVReplicas.shared.unlock() } }
        let own = kept ? nil : try RawBuffer<T>.allocate(count, zeroed: !step)
        defer { own?.free() }
        let base: UnsafeMutablePointer<T>
        if let own { base = own.base } else {
            base = try KVReplicas.shared.scratch(try checkedMul(count, MemoryLayout<T>.stride, "step buffers"))
                .bindMemory(to: T.self, capacity: count)
        }
        // A decoding step reads the token's k and v in place where the tensors allow it (`IO.direct`), and with one
        // query head per unit writes its output in place too (`IO.directOut`): only the scaled queries are copied.
        // An hla2 step at H = Hkv, d = 64 took 0.58 µs per unit with packing and unpacking, 0.52 µs without, against
        // 0.44 µs for the kernel alone in a C loop (the AMD EPYC VM, one thread). With several query heads per unit
        // the outputs go through scratch as before: written in place, each head's output stores went out amid the
        // next heads' sweeps, 1-2.5% slower (H = 64, Hkv = 8; `ab.py`). The same bits: the kernels read the same
        // values, and write what unpacking copied.
        let direct = step && io.direct(c), directOut = step && io.directOut(c)
        let report = parallelFor(units, parallel: parallel, balanced: seqs.balanced, spawn: !step,
                                 linger: step ? StepThreads.linger : nil) { i, w in
            let sq = seqs.scheduled(i / c.kvHeads), g = i % c.kvHeads, b = seqs.batch(sq)
            let unit = layout.unit(carry.row(sq), g: g)
            let K = base + w * per, V = K + 2 * c.dk, Q = V + 2 * c.dvp
            let O = Q + 2 * c.group * c.dk, tmp = O + 2 * c.group * c.dvp
            let t0 = seqs.bos(sq), end = t0 + seqs.length(sq)
            if step && i + 1 < units {
                // A decoding step: the next unit's token (this worker's next unless another takes it) is read
                // while this one computes (the serial sweep's look-ahead below has nothing to look at).
                let s1 = seqs.scheduled((i + 1) / c.kvHeads)
                io.prefetch(c, b: seqs.batch(s1), g: (i + 1) % c.kvHeads, t: seqs.bos(s1))
            }
            if direct {
                let s = T(c.scale)
                for j in 0..<c.group { io.q.gather(b, g * c.group + j, t0, 1, c.dk, into: Q + j * c.dk, ld: c.dk, mul: s) }
                let o = directOut ? io.out.unsafelyUnwrapped.row(b, t0, g) : O
                Op.step(c, unit, k: io.k.row(b, t0, g), v: io.v.row(b, t0, g), q: Q, out: o, tmp: tmp)
                if !directOut { io.unpack(c, b: b, g: g, t0: t0, n: 1, O: O) }
                return
            }
            var t = t0
            while t < end {
                let n = min(2, end - t)                                     // a pair, or the last token alone
                for a in stride(from: t + serialAhead, to: min(t + serialAhead + n, end), by: 1) {
                    io.prefetch(c, b: b, g: g, t: a)
                }
                io.pack(c, b: b, g: g, t0: t, n: n, K: K, V: V, Q: Q, next: .keep)
                if n == 2 { Op.step2(c, unit, k: K, v: V, q: Q, out: O, tmp: tmp) }
                else { Op.step(c, unit, k: K, v: V, q: Q, out: O, tmp: tmp) }
                io.unpack(c, b: b, g: g, t0: t, n: n, O: O)
                t += n
            }
        }
        if step { StepThreads.shared.ended(work, parallel ? report : nil) }
    }

    /// Elements between consecutive workers' scratch areas: `n` rounded up to 32 elements (128 bytes at
    /// float32), so two workers never write the same cache line or its prefetch pair.
    static func scratchStride(_ n: Int) -> Int { (n + 31) & ~31 }

    /// One token when there are fewer (batch, kv head) units than threads (multi-query decoding): each unit's
    /// query heads run in `parts` contiguous ranges in parallel, each range through `stepHeads` (one sweep of
    /// the kv blocks for all its heads). Every thread reads the kv blocks from its own copy (`KVReplicas`):
    /// at its first range of a unit it advances the copy with the token (`stepKVHeads`: on the step kernel in
    /// the sweeps that form the range's first products). The unit's first thread advances the state's blocks
    /// themselves, in place from their own rows (whatever a host wrote there), storing each advanced row in its
    /// copy too and comparing the rows it reads with its copy's before; it then publishes whether its copy held
    /// the state's content (`hla_private_kv_from`). The unit's other threads need that verdict: a copy that
    /// held the same content advances itself, any other (a first step, a host write, a step the thread missed,
    /// another state) takes the blocks the first thread advanced. On the step kernel such a thread advances its
    /// copy and forms its first products before looking, and waits, if at all, only before its first query
    /// head's block (the kernel stops there on a stale copy, and the range runs again from the taken blocks).
    /// Before, the first thread compared the blocks with `memcmp` before the job, the others waited for that, and
    /// the blocks were written back from a copy after a range (ab.py ratios in the README's Speed section). In a
    /// decoding loop
    /// each thread advances the copy in its own cache and no kv line crosses between the cores. With the
    /// rows of the kv blocks split between the threads instead, each thread's update first took its rows back
    /// from the other core, which had read them, and then read the other's rows back: 5-6 µs of a 38 µs hla3
    /// step at H = 64, Hkv = 1, d = 64 (2.5-3 µs to move 16 KiB between the cores of the reference VM). The
    /// only wait in the job is for the verdict of a thread inside it, so a worker that never joins holds
    /// up nothing; one descheduled mid-sweep stalls the others as a unit in progress does, and the spin
    /// counts as a wait for `StepThreads`. The caller holds the copies' lock (`serial` takes it). Every copy
    /// is bitwise the state's content, so results never depend on the threads. `work`: the step's
    /// multiply-adds, as `serial` measured them.
    static func stepByHead<Op: Operator, T: HLAFloat>(_ op: Op.Type, _ c: Config, _ seqs: Seqs, io: IO<T>,
                                                      carry: Rows<T>, work: Int) throws(HLAError) {
        let units = seqs.count * c.kvHeads
        // One range per thread. Two (a thread that finished first took the other's second) were slower: the step
        // kernel forms a range's later heads' products inside the sweeps (`heads` in tile512.c), so longer ranges
        // overlap more (H = 64, Hkv = 1, d = 64, `ab.py` 21 rounds, one range's time over
        // two's: hla3 0.979, hla2 0.992, ahla 0.974; H = 32 hla2 0.962). A range a worker never started is still the
        // caller's to take.
        let parts = min(c.group, hlaThreadCount), items = units * parts
        let most = (c.group + parts - 1) / parts            // heads in the largest range
        let workers = workerCount(items)
        let layout = Layout.state(c)
        let kvWidth = c.dk + c.dvp
        let kvBytes = try checkedMul(layout.kvTotal, MemoryLayout<T>.stride, "kv copies")
        let reps = KVReplicas.shared
        try reps.prepare(workers: workers, units: units, bytes: kvBytes)
        let per = scratchStride(most * (c.dk + c.dvp) + Op.stepScratchHeads(c, most))
        // The step's buffers in the kv copies' scratch (their lock is held): the tokens' k and v per unit and
        // each worker's scratch, then the flags. Int32 flags: per unit, claimed (its first thread advances the
        // state's kv blocks) and checked (that thread's verdict published); per worker and unit, copy advanced.
        // Then UInt64 words: per unit the verdict (the version of the copies that held the state's blocks before
        // the token, or 0) and the version after the token, per worker the ns spent waiting.
        let bufCount = try checkedAdd(try checkedMul(units, kvWidth, "step buffers"), try checkedMul(per, workers, "step buffers"),
                                      "step buffers")
        let bufBytes = (try checkedMul(bufCount, MemoryLayout<T>.stride, "step buffers") + 63) & ~63
        let flagWords = 2 * units + workers * units, wide = (flagWords + 1) / 2
        let flagBytes = try checkedMul(wide + 2 * units + workers, 8, "step flags")
        let raw = try reps.scratch(try checkedAdd(bufBytes, flagBytes, "step buffers"))
        let base = raw.bindMemory(to: T.self, capacity: bufCount)
        memset(raw + bufBytes, 0, flagBytes)
        let claimed = (raw + bufBytes).bindMemory(to: Int32.self, capacity: flagWords)
        let checked = claimed + units, ready = checked + units
        let versions = (raw + bufBytes + 8 * wide).bindMemory(to: UInt64.self, capacity: 2 * units + workers)
        let spun = versions + 2 * units
        let kvBase = base, workBase = base + units * kvWidth
        for i in 0..<units {
            let b = i / c.kvHeads, g = i % c.kvHeads
            let K = kvBase + i * kvWidth, V = K + c.dk
            io.k.gather(b, g, 0, 1, c.dk, into: K, ld: c.dk)
            io.v.gather(b, g, 0, 1, c.dv, into: V, ld: c.dvp)
            if c.normalize { V[c.dv] = 1 }
            versions[2 * i + 1] = reps.nextVersion()
        }
        let scale = T(c.scale), eps = T(c.eps)
        let report = parallelFor(items, spawn: false, linger: StepThreads.linger) { i, w in
            let unit = i / parts, p = i % parts, b = unit / c.kvHeads, g = unit % c.kvHeads
            let j0 = p * c.group / parts, n = (p + 1) * c.group / parts - j0
            let K = kvBase + unit * kvWidth, V = K + c.dk
            let u = layout.unit(carry.row(b), g: g)
            // The range's queries, every line requested at once before the gather below reads them, so their
            // misses overlap: a host's fresh token is in the other core's cache or beyond (hla2 and ahla at H = 64,
            // Hkv = 1, d = 64: 0.95-0.97 of the step's time, hla3 0.95-1.0; `ab.py`, when a kv comparison ran
            // between the requests and the gather). With nothing between them they still pay: without them 1.056
            // (hla3), 1.035 (hla2), 1.025 (ahla) of the time, 21 rounds; into L1 instead of L2, or with the range's
            // output rows requested for writing too, 1.014-1.045 (31 rounds).
            for j in 0..<n { io.q.prefetch(b, 0, g * c.group + j0 + j, c.dk) }
            let slot = reps.slot(w, unit)
            let copy = slot.pointee.base.unsafelyUnwrapped.bindMemory(to: T.self, capacity: layout.kvTotal)
            let mine = Unit(kv: copy, q: u.q, qStride: u.qStride, group: u.group)
            let q = workBase + w * per, o = q + most * c.dk, tmp = o + most * c.dvp
            let key = KVReplicas.Key(address: Int(bitPattern: UnsafeRawPointer(u.kv)), bytes: kvBytes)
            for j in 0..<n { io.q.gather(b, g * c.group + j0 + j, 0, 1, c.dk, into: q + j * c.dk, ld: c.dk, mul: scale) }
            // This thread's first range of the unit: its copy is brought to the kv blocks after the token.
            if ready[w * units + unit] == 0 {
                ready[w * units + unit] = 1
                let held = slot.pointee.key == key ? slot.pointee.version : 0   // the content the copy stands for
                slot.pointee.key = key
                slot.pointee.version = versions[2 * unit + 1]
                if hla_private_claim(claimed + unit) != 0 {
                    // The unit's first thread advances the state's kv blocks in place, from their own rows (whatever a
                    // host wrote there), keeps its copy equal to them, and tells the others whether its copy held the
                    // state's content before the token (then so do theirs if they held the same version). On the step
                    // kernel all of it happens in the sweeps that form the range's first products, each row of the
                    // state compared with the copy's as it is read; elsewhere as the same three passes.
                    var from = hla_private_kv_from(kv: Gemm.float(u.kv), verdict: versions + 2 * unit, version: held,
                                                   published: checked + unit, follow: 0, stopped: 0, waited: spun + w)
                    if !Op.stepKVHeadsFused(c, mine, j0, n, k: K, v: V, q: q, out: o, tmp: tmp, from: &from) {
                        let same = held != 0 && memcmp(copy, u.kv, kvBytes) == 0
                        Op.stepKV(c, u, k: K, v: V)
                        memcpy(copy, u.kv, kvBytes)
                        versions[2 * unit] = same ? held : 0
                        hla_private_publish(checked + unit)
                        Op.stepHeads(c, mine, j0, n, k: K, v: V, q: q, out: o, tmp: tmp)
                    }
                } else {
                    // Another thread: on the step kernel a copy that held something advances and forms the range's
                    // first products meanwhile, and waits for the verdict only before its first query head's block
                    // (the kernel stops there if the copy did not hold the state's content); elsewhere it waits first.
                    var from = hla_private_kv_from(kv: nil, verdict: versions + 2 * unit, version: held,
                                                   published: checked + unit, follow: 1, stopped: 0, waited: spun + w)
                    let ran = held != 0 && Op.stepKVHeadsFused(c, mine, j0, n, k: K, v: V, q: q, out: o, tmp: tmp,
                                                               from: &from)
                    if !ran || from.stopped != 0 {
                        hla_private_await(checked + unit, spun + w)
                        let v0 = versions[2 * unit]
                        if !ran && v0 != 0 && held == v0 {
                            Op.stepKVHeads(c, mine, j0, n, k: K, v: V, q: q, out: o, tmp: tmp)
                        } else {
                            // The copy did not hold the state's content: take the blocks the first thread advanced.
                            memcpy(copy, u.kv, kvBytes)
                            Op.stepHeads(c, mine, j0, n, k: K, v: V, q: q, out: o, tmp: tmp)
                        }
                    }
                }
            } else {
                Op.stepHeads(c, mine, j0, n, k: K, v: V, q: q, out: o, tmp: tmp)
            }
            if let out = io.out {
                for j in 0..<n {
                    let oj = o + j * c.dvp
                    out.store(b, 0, g * c.group + j0 + j, oj, c.dv, mul: c.normalize ? 1 / (oj[c.dv] + eps) : 1)
                }
            }
        }
        var waited = report.waited
        for w in 0..<workers { waited &+= spun[w] }
        StepThreads.shared.ended(work, PoolReport(pooled: report.pooled, elapsed: report.elapsed, waited: waited))
    }

    /// Elements of one unit in summary layout (kv blocks then the group's query-head blocks).
    static func unitElements(_ c: Config) -> Int {
        let l = Layout.summary(c)
        return l.kvTotal + c.group * l.qTotal
    }
    static func unitView<T>(_ base: UnsafeMutablePointer<T>, _ c: Config) -> Unit<T> {
        let l = Layout.summary(c)
        return Unit(kv: base, q: base + l.kvTotal, qStride: l.qTotal, group: c.group)
    }

    /// Scan: the chunks of a unit in order, each chunk's outputs from its carry-in, then its summary (from a
    /// zero prefix) combined into that carry, giving the next chunk's carry-in: an exclusive scan of `combine`
    /// from the initial carry, interleaved with the outputs, so each chunk is packed once and the path holds
    /// one carry and one summary per kv head of a worker's band whatever T. The kv heads of a sequence are
    /// swept in bands, chunk by chunk across the band's heads, as in `chunked` (one token's rows of the band's
    /// heads are adjacent in [B, T, H, D]). (Bands run in parallel; `hla_summarize` / `hla_summary_combine`
    /// expose the same algebra for segments processed anywhere.)
    static func scan<Op: Operator, T: HLAFloat>(_ op: Op.Type, _ c: Config, _ seqs: Seqs, io: IO<T>,
                                                carry: Rows<T>) throws(HLAError) {
        let n0 = min(scanChunkLength(c), seqs.maxLength)
        let parallel = worthThreads(c, seqs, n0: n0)
        let ue = unitElements(c)
        let layout = Layout.state(c)
        // Per kv head of a band: the running carry and one chunk summary (summary layout).
        let perHead = 2 * ue
        let bands = Bands(c, seqs, unitBytes: perHead * MemoryLayout<T>.stride, parallel: parallel)
        let workers = workerCount(bands.count, parallel: parallel)
        let work = try Work<T>(op, c, n: n0, workers: workers)
        defer { work.free() }
        let pw = try Powers<T>(c.decay, upTo: 3 * n0 + 3)
        defer { pw.free() }
        let perWorker = try checkedMul(perHead, bands.width, "scan carries")
        let carries = try RawBuffer<T>.allocate(try checkedMul(perWorker, workers, "scan carries"))
        defer { carries.free() }
        let share = try BandShare(workers: workers, bands: bands.count)
        defer { share.free() }
        parallelFor(bands.count, parallel: parallel, balanced: seqs.balanced) { i, w in
            let mine = carries.base + w * perWorker
            // heads g0..<g1 of scheduled sequence sq from token `from` on: a band (carries from the state), or part of
            // one taken from another thread (`BandShare`; carries from that thread's buffer: `taken`)
            share.run(i, w, bands, c, seqs, n0: n0, holding: true) { sq, g0, g1, from, end, taken in
                let b = seqs.batch(sq), row = carry.row(sq), bos = seqs.bos(sq)
                @inline(__always) func cur(_ g: Int) -> Unit<T> { unitView(mine + (g - g0) * perHead, c) }
                @inline(__always) func summary(_ g: Int) -> Unit<T> { unitView(mine + (g - g0) * perHead + ue, c) }
                share.sweep(w, band: sq, g0: g0, g1: g1, from: from, to: end, n0: n0, begin: {
                    if let t = taken {
                        let theirs = carries.base + t.thread * perWorker
                        for g in g0..<g1 { copyBlocks(layout, from: unitView(theirs + (g - t.g0) * perHead, c), to: cur(g), group: c.group) }
                        share.release(t.thread)
                    } else {
                        for g in g0..<g1 { copyBlocks(layout, from: layout.unit(row, g: g), to: cur(g), group: c.group) }
                    }
                }) { g0, g1, t0, n in
                    for g in g0..<g1 {
                        let next = Bands.next(g, g0, g1, t0: t0, n: n, n0: n0, end: end)
                        let finite = io.pack(c, b: b, g: g, t0: t0, n: n, K: work.K(w), V: work.V(w), Q: work.Q(w),
                                             next: next)
                        io.planOut(c, b: b, g: g, t0: t0, n: n)
                        // the chunk's outputs from its carry-in (the carry itself is left as it was) and its summary
                        let K = work.K(w), V = work.V(w), Q = work.Q(w), u = cur(g), s = summary(g)
                        var sc = work.scratch(w)
                        if finite {
                            Op.scanChunk(c, pw, u, s, n: n, K: K, V: V, Q: Q, O: work.O(w), scratch: &sc)
                        } else {
                            chunkOrSteps(op, c, pw, u, n: n, work: work, w: w, finite: false, carryOut: false, scratch: &sc)
                            var s1 = work.scratch(w)
                            Op.summarize(c, pw, s, n: n, K: K, V: V, Q: Q, scratch: &s1)
                        }
                        io.unpack(c, b: b, g: g, t0: t0, n: n, O: work.O(w))
                        // carry-in of the next chunk = carry-in of this chunk · summary of this chunk
                        var s2 = work.scratch(w)
                        Op.combine(c, u, nA: t0 - bos, s, nB: n, full: false, scratch: &s2)
                    }
                    if t0 + n == end {   // final carry
                        for g in g0..<g1 { copyBlocks(layout, from: cur(g), to: layout.unit(row, g: g), group: c.group) }
                    }
                }
            }
        }
    }

    /// Copy the blocks of `layout` (the state blocks, or all summary blocks) of a unit; the two units
    /// may live in different layouts, as long as each holds at least those blocks.
    static func copyBlocks<T>(_ layout: Layout, from a: Unit<T>, to b: Unit<T>, group: Int) {
        for x in 0..<layout.kvTotal { b.kv[x] = a.kv[x] }
        for j in 0..<group {
            let s = a.head(j), d = b.head(j)
            for x in 0..<layout.qTotal { d[x] = s[x] }
        }
    }

    /// Summary of nT tokens (segment layout) into zeroed `dst`.
    static func summarize<Op: Operator, T: HLAFloat>(_ op: Op.Type, _ c: Config, _ seqs: Seqs, io: IO<T>,
                                                     dst: Rows<T>) throws(HLAError) {
        let n0 = min(scanChunkLength(c), seqs.maxLength)
        let parallel = worthThreads(c, seqs, n0: n0)
        let layout = Layout.summary(c)
        let ue = unitElements(c)
        // kv heads swept in bands, chunk by chunk across the band's heads, as in `chunked` and `scan`
        let bands = Bands(c, seqs, unitBytes: ue * MemoryLayout<T>.stride, parallel: parallel)
        let workers = workerCount(bands.count, parallel: parallel)
        let work = try Work<T>(op, c, n: n0, workers: workers, extra: ue + 16)
        defer { work.free() }
        let pw = try Powers<T>(c.decay, upTo: 3 * n0 + 3)
        defer { pw.free() }
        let share = try BandShare(workers: workers, bands: bands.count)
        defer { share.free() }
        parallelFor(bands.count, parallel: parallel, balanced: seqs.balanced) { i, w in
            var s0 = work.scratch(w)
            let tmp = unitView(s0.take(ue), c)
            // heads g0..<g1 of scheduled sequence sq from token `from` on: a band, or part of one (`BandShare`); the
            // summaries accumulate in place in `dst`
            share.run(i, w, bands, c, seqs, n0: n0) { sq, g0, g1, from, end, _ in
                let b = seqs.batch(sq), row = dst.row(sq), bos = seqs.bos(sq)
                share.sweep(w, band: sq, g0: g0, g1: g1, from: from, to: end, n0: n0) { g0, g1, t0, n in
                    for g in g0..<g1 {
                        let next = Bands.next(g, g0, g1, t0: t0, n: n, n0: n0, end: end)
                        io.pack(c, b: b, g: g, t0: t0, n: n, K: work.K(w), V: work.V(w), Q: work.Q(w), next: next)
                        var s = s0                                              // summarize writes every block
                        Op.summarize(c, pw, tmp, n: n, K: work.K(w), V: work.V(w), Q: work.Q(w), scratch: &s)
                        let acc = layout.unit(row, g: g)
                        if t0 == bos {
                            copyBlocks(layout, from: tmp, to: acc, group: c.group)
                        } else {
                            var s2 = s0
                            Op.combine(c, acc, nA: t0 - bos, tmp, nB: n, full: true, scratch: &s2)
                        }
                    }
                }
            }
        }
    }

    /// a ← a · b for every unit of two segments (summary layout).
    static func combine<Op: Operator, T: HLAFloat>(_ op: Op.Type, _ c: Config, a: UnsafeMutablePointer<T>, nA: Int,
                                                   b: UnsafeMutablePointer<T>, nB: Int) throws(HLAError) {
        let layout = Layout.summary(c)
        let need = Op.chunkScratch(c, n: 1) + 64
        let buf = try RawBuffer<T>.allocate(need)
        defer { buf.free() }
        for g in 0..<c.kvHeads {
            var s = Scratch(buf.base, need)
            Op.combine(c, layout.unit(a, g: g), nA: nA, layout.unit(b, g: g), nB: nB, full: true, scratch: &s)
        }
    }
}
