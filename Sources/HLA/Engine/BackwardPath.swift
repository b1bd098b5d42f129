#if canImport(Glibc)
import Glibc
#endif
import CHLA

/// Reverse-mode gradients (docs/gradients.md, docs/spec.md §9) through the streaming recurrence, with
/// checkpoints: per (sequence, kv head) unit, a forward sweep keeps the unit's state at every chunk boundary
/// (chunks of `chunkLength(c)` tokens), then the chunks are walked in reverse; each chunk's per-token states
/// are recomputed from its checkpoint and the adjoints (dS, dU, … of docs/gradients.md) run backwards through
/// them token by token. Memory per worker: (chunks + chunk length + 2) unit states, nothing O(T · state).
enum BackwardPath {
    /// Gradients w.r.t. q, k, v, and the initial state's adjoint, of every unit.
    /// `initial`: rows read before the first token (nil: zero); `dFinal`: cotangent rows of the final state
    /// (nil: zero); `dInitial`: rows receiving the adjoint of the initial state (nil: not wanted).
    static func run<Op: Operator, T: HLAFloat>(_ op: Op.Type, _ c: Config, _ seqs: Seqs, io: IO<T>, dO: Strided<T>,
                                               dQ: Strided<T>, dK: Strided<T>, dV: Strided<T>,
                                               initial: Rows<T>?, dFinal: Rows<T>?, dInitial: Rows<T>?) throws(HLAError) {
        let units = seqs.count * c.kvHeads, workers = workerCount(units)
        let maxT = seqs.maxLength
        // chunk length about √T (at least the forward's): checkpoints and one chunk's states cost the same
        var root = Int(Double(maxT).squareRoot())
        while root * root < maxT { root += 1 }
        let n0 = min(max(Paths.chunkLength(c), root), maxT)
        let chunks = (maxT + n0 - 1) / n0
        let layout = Layout.state(c)
        let dk = c.dk, dv = c.dv, dvp = c.dvp, group = c.group
        let ue = layout.kvTotal + group * layout.qTotal
        let tmpSize = max(Op.backwardScratch(c), Op.stepScratchAll(c))
        // Per worker: checkpoints (chunks units), per-token states of one chunk (n0 units), the current unit,
        // the adjoint unit; packed inputs and numerators of one chunk; per-token vectors.
        let big = try checkedAdd(try checkedMul(chunks, ue, "backward checkpoints"),
                                 try checkedMul(n0, ue, "backward states"), "backward buffers")
        let rest = Scratch<Double>.need([ue, ue, n0 * dk, n0 * dvp, n0 * group * dk, n0 * group * dvp, group * dvp,
                                         group * dk, group * dk, dk, dvp, dv, tmpSize])
        let per = try checkedAdd(big, rest + 64, "backward buffers")
        let buf = try RawBuffer<T>.allocate(try checkedMul(per, workers, "backward buffers"))
        defer { buf.free() }
        let scale = T(c.scale), eps = T(c.eps)
        parallelFor(units, balanced: seqs.balanced) { i, w in
            let sq = seqs.scheduled(i / c.kvHeads), g = i % c.kvHeads, b = seqs.batch(sq)
            let bos = seqs.bos(sq), nT = seqs.length(sq)
            var s = Scratch(buf.base + w * per, per)
            // (the two big blocks first: `take` rounds each to 16 elements, covered by `big` + 64)
            func unit(_ p: UnsafeMutablePointer<T>) -> Unit<T> {
                Unit(kv: p, q: p + layout.kvTotal, qStride: layout.qTotal, group: group)
            }
            let ckpt = s.take(chunks * ue), states = s.take(n0 * ue)
            let cur = unit(s.take(ue)), adj = unit(s.take(ue))
            let K = s.take(n0 * dk), V = s.take(n0 * dvp), Q = s.take(n0 * group * dk), O = s.take(n0 * group * dvp)
            let gv = s.take(group * dvp), dq = s.take(group * dk), dkv = s.take(dk), dvv = s.take(dvp)
            let dOrow = s.take(dv), tmp = s.take(tmpSize), qt = s.take(group * dk)
            // carry-in and the final state's cotangent
            if let initial { Paths.copyBlocks(layout, from: layout.unit(initial.row(sq), g: g), to: cur, group: group) }
            else { for x in 0..<ue { cur.kv[x] = 0 } }
            if let dFinal { Paths.copyBlocks(layout, from: layout.unit(dFinal.row(sq), g: g), to: adj, group: group) }
            else { for x in 0..<ue { adj.kv[x] = 0 } }
            // forward sweep: checkpoints at chunk starts
            let nc = (nT + n0 - 1) / n0
            for ch in 0..<nc {
                let t0 = bos + ch * n0, n = min(n0, bos + nT - t0)
                let cp = ckpt + ch * ue
                for x in 0..<ue { cp[x] = cur.kv[x] }
                if ch == nc - 1 { break }   // the last chunk's end state is not needed
                io.pack(c, b: b, g: g, t0: t0, n: n, K: K, V: V, Q: Q)
                for r in 0..<n {
                    gatherToken(Q, n: n, r: r, group: group, dk: dk, into: dq)
                    Op.step(c, cur, k: K + r * dk, v: V + r * dvp, q: dq, out: gv, tmp: tmp)
                }
            }
            // reverse sweep
            for ch in stride(from: nc - 1, through: 0, by: -1) {
                let t0 = bos + ch * n0, n = min(n0, bos + nT - t0)
                let cp = ckpt + ch * ue
                for x in 0..<ue { cur.kv[x] = cp[x] }
                io.pack(c, b: b, g: g, t0: t0, n: n, K: K, V: V, Q: Q)
                // Q arrives as group × n × dk; regroup to n × group × dk (one token's queries together)
                for r in 0..<n {
                    gatherToken(Q, n: n, r: r, group: group, dk: dk, into: dq)
                    Op.step(c, cur, k: K + r * dk, v: V + r * dvp, q: dq, out: O + r * group * dvp, tmp: tmp)
                    let st = states + r * ue
                    for x in 0..<ue { st[x] = cur.kv[x] }
                }
                for r in stride(from: n - 1, through: 0, by: -1) {
                    let t = t0 + r
                    // numerator cotangents (through the normalisation: o = num / (den + eps))
                    for j in 0..<group {
                        let num = O + (r * group + j) * dvp, gj = gv + j * dvp
                        dO.gather(b, g * group + j, t, 1, dv, into: dOrow, ld: dv)
                        if c.normalize {
                            let den = num[dv] + eps, inv = 1 / den
                            var dot: T = 0
                            for x in 0..<dv { gj[x] = dOrow[x] * inv; dot += dOrow[x] * num[x] }
                            gj[dv] = -dot * inv * inv
                        } else {
                            for x in 0..<dv { gj[x] = dOrow[x] }
                        }
                    }
                    gatherToken(Q, n: n, r: r, group: group, dk: dk, into: qt)
                    Op.stepBackward(c, unit(states + r * ue), adj, k: K + r * dk, v: V + r * dvp,
                                    q: qt, g: gv, dk: dkv, dv: dvv, dq: dq, tmp: tmp)
                    dK.store(b, t, g, dkv, dk)
                    dV.store(b, t, g, dvv, dv)
                    for j in 0..<group { dQ.store(b, t, g * group + j, dq + j * dk, dk, mul: scale) }
                }
            }
            if let dInitial {
                Op.symmetrizeAdjoint(c, adj)
                Paths.copyBlocks(layout, from: adj, to: layout.unit(dInitial.row(sq), g: g), group: group)
            }
        }
    }

    /// The queries of token r of a packed chunk (Q is group × n × dk) as group × dk.
    @inline(__always)
    static func gatherToken<T>(_ Q: UnsafePointer<T>, n: Int, r: Int, group: Int, dk: Int, into dst: UnsafeMutablePointer<T>) {
        for j in 0..<group { for a in 0..<dk { dst[j * dk + a] = Q[(j * n + r) * dk + a] } }
    }
}

/// An operator with a dense-product reverse of its chunk kernel (docs/gradients.md §9–§10).
protocol ChunkBackward: Operator {
    /// Elements `carry` keeps for `chunkBackward` per chunk of n tokens.
    static func keepSize(_ c: Config, n: Int) -> Int
    /// The carry `chunk` leaves for n tokens, bit for bit, without its outputs (scratch: `chunkScratch`);
    /// `keep` (nil, or `keepSize` elements) receives products of the chunk that `chunkBackward` reads back.
    /// `carryOut` false: only those products (`u` is left as it was; nothing happens when there are none).
    static func carry<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, n: Int,
                                   K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                   keep: UnsafeMutablePointer<T>?, carryOut: Bool, scratch: inout Scratch<T>)
    static func chunkBackwardScratch(_ c: Config, n: Int) -> Int
    /// Reverse of `chunk` for n tokens: `u` the carry-in (read only), `d` the carry-out's adjoint in and the
    /// carry-in's adjoint out; `kept` what `carry` kept advancing `u` over the same tokens;
    /// G (group × n × dvp) = ∂L/∂numerators → dK (n × dk), dV (n × dvp), dQ (group × n × dk).
    static func chunkBackward<T: HLAFloat>(_ c: Config, _ pw: Powers<T>, _ u: Unit<T>, _ d: Unit<T>, n: Int,
                                           kept: UnsafePointer<T>,
                                           K: UnsafePointer<T>, V: UnsafePointer<T>, Q: UnsafePointer<T>,
                                           G: UnsafePointer<T>, dK: UnsafeMutablePointer<T>,
                                           dV: UnsafeMutablePointer<T>, dQ: UnsafeMutablePointer<T>,
                                           scratch: inout Scratch<T>)
}

extension BackwardPath {
    /// The chunked path (docs/gradients.md §9): per unit, a forward sweep through the dense chunk kernel keeping
    /// the carry at the start of every group of ~√chunks chunks; then the groups in reverse: each chunk's carry
    /// recomputed from its group's checkpoint, and the group's chunks in reverse — the chunk's numerators from
    /// its carry-in (for the normalisation) and the operator's `chunkBackward` (dense products). Both sweeps
    /// run the operator's `carry` (the chunk kernel's carry update without its outputs); the group's sweep
    /// keeps each chunk's products that `chunkBackward` reads back (`keepSize` per chunk). Memory per thread
    /// O(√chunks · (state + keepSize) + chunk² + chunk · d). With `checkpoints` (a chunked forward's, same inputs
    /// and configuration) the groups are the checkpoints' stretches and start from them: no forward sweep.
    static func chunked<Op: ChunkBackward, T: HLAFloat>(_ op: Op.Type, _ c: Config, _ seqs: Seqs, io: IO<T>, dO: Strided<T>, dQ: Strided<T>,
                                         dK: Strided<T>, dV: Strided<T>, initial: Rows<T>?, dFinal: Rows<T>?,
                                         dInitial: Rows<T>?, checkpoints: Checkpoints<T>? = nil) throws(HLAError) {
        let units = seqs.count * c.kvHeads, workers = workerCount(units)
        let maxT = seqs.maxLength
        let n0 = min(Paths.chunkLength(c), maxT)
        let chunks = (maxT + n0 - 1) / n0
        let layout = Layout.state(c)
        let dk = c.dk, dv = c.dv, dvp = c.dvp, group = c.group
        let ue = layout.kvTotal + group * layout.qTotal
        let scratchElems = max(Op.chunkScratch(c, n: n0), Op.chunkBackwardScratch(c, n: n0))
        // Two levels of checkpoints: the carry every `every` chunks (forward sweep), and, for the group of chunks
        // being reversed, each chunk's carry (recomputed from the group's checkpoint): O(√chunks · state).
        var every = CheckpointPlan.every(c, chunks: chunks)
        if let ck = checkpoints { every = min(ck.plan.every, chunks) }   // chunks = 1 when n0 < the plan's chunk
        let groups = checkpoints == nil ? (chunks + every - 1) / every : 1   // kept here (with checkpoints: the carry-in)
        // per chunk of the group being reversed: its packed inputs and what `carry` keeps for `chunkBackward`
        let ks = Op.keepSize(c, n: n0), slot = ks + n0 * dk + n0 * dvp + group * n0 * dk
        let big = try checkedAdd(try checkedMul(groups + every, ue, "backward checkpoints"),
                                 try checkedMul(every, slot, "backward checkpoints"), "backward checkpoints")
        let rest = Scratch<Double>.need([ue, ue, n0 * dk, n0 * dvp, group * n0 * dk, group * n0 * dvp,
                                         group * n0 * dvp, n0 * dk, n0 * dvp, group * n0 * dk, dv, scratchElems])
        let per = try checkedAdd(big, rest + 64, "backward buffers")
        let buf = try RawBuffer<T>.allocate(try checkedMul(per, workers, "backward buffers"))
        defer { buf.free() }
        let pw = try Powers<T>(c.decay, upTo: 3 * n0 + 3)
        defer { pw.free() }
        let scale = T(c.scale), eps = T(c.eps)
        parallelFor(units, balanced: seqs.balanced) { i, w in
            let sq = seqs.scheduled(i / c.kvHeads), g = i % c.kvHeads, b = seqs.batch(sq)
            let bos = seqs.bos(sq), nT = seqs.length(sq)
            var s = Scratch(buf.base + w * per, per)
            func unit(_ p: UnsafeMutablePointer<T>) -> Unit<T> {
                Unit(kv: p, q: p + layout.kvTotal, qStride: layout.qTotal, group: group)
            }
            let gck = s.take(groups * ue), local = s.take(every * ue), slots = s.take(every * slot)
            let cur = unit(s.take(ue)), adj = unit(s.take(ue))
            let K = s.take(n0 * dk), V = s.take(n0 * dvp), Q = s.take(group * n0 * dk), O = s.take(group * n0 * dvp)
            let G = s.take(group * n0 * dvp), gK = s.take(n0 * dk), gV = s.take(n0 * dvp), gQ = s.take(group * n0 * dk)
            let dOrow = s.take(dv)
            let kernel = s
            if let initial { Paths.copyBlocks(layout, from: layout.unit(initial.row(sq), g: g), to: cur, group: group) }
            else { for x in 0..<ue { cur.kv[x] = 0 } }
            if let dFinal { Paths.copyBlocks(layout, from: layout.unit(dFinal.row(sq), g: g), to: adj, group: group) }
            else { for x in 0..<ue { adj.kv[x] = 0 } }
            let nc = (nT + n0 - 1) / n0
            /// Slot i of the group: kept products, then the packed K, V, Q of its chunk.
            func inputs(_ i: Int) -> (keep: UnsafeMutablePointer<T>, K: UnsafeMutablePointer<T>,
                                      V: UnsafeMutablePointer<T>, Q: UnsafeMutablePointer<T>) {
                let p = slots + i * slot, k = p + ks, v = k + n0 * dk
                return (p, k, v, v + n0 * dvp)
            }
            /// Pack chunk ch into K, V, Q and advance `cur` past it: the chunk kernel's carry update alone (with
            /// `carryOut` false only the products it keeps: `cur` is left as it was).
            func advance(_ ch: Int, K: UnsafeMutablePointer<T>, V: UnsafeMutablePointer<T>, Q: UnsafeMutablePointer<T>,
                         keep: UnsafeMutablePointer<T>?, last: Int, carryOut: Bool = true) {
                let t0 = bos + ch * n0, n = min(n0, bos + nT - t0)
                // the sweeps advance this unit chunk after chunk, up to chunk `last`; after the last, a group's
                // reverse begins with the chunk's cotangent rows
                io.pack(c, b: b, g: g, t0: t0, n: n, K: K, V: V, Q: Q,
                        next: ch < last ? .at(g: g, t0: t0 + n, n: min(n0, bos + nT - t0 - n)) : .none)
                if ch == last && !carryOut { for j in 0..<group { dO.plan(b, g * group + j, t0, n, dv) } }
                var k2 = kernel
                Op.carry(c, pw, cur, n: n, K: K, V: V, Q: Q, keep: keep, carryOut: carryOut, scratch: &k2)
            }
            // forward sweep: the carry at the start of every group of `every` chunks (given checkpoints: none)
            let lastStart = (nc - 1) / every * every
            if checkpoints == nil {
                for ch in 0..<lastStart {
                    if ch % every == 0 { for x in 0..<ue { gck[(ch / every) * ue + x] = cur.kv[x] } }
                    advance(ch, K: K, V: V, Q: Q, keep: nil, last: lastStart - 1)
                }
                for x in 0..<ue { gck[(lastStart / every) * ue + x] = cur.kv[x] }
            } else {
                for x in 0..<ue { gck[x] = cur.kv[x] }
            }
            /// The carry at the start of group grp into `cur`.
            func start(_ grp: Int) {
                if let ck = checkpoints, grp > 0 {
                    Paths.copyBlocks(layout, from: layout.unit(ck.row(sq, grp - 1), g: g), to: cur, group: group)
                } else {
                    let src = gck + (checkpoints == nil ? grp : 0) * ue
                    for x in 0..<ue { cur.kv[x] = src[x] }
                }
            }
            /// The reverse of chunk ch from its carry-in `cp` and its slot (packed by `advance`): numerator
            /// cotangents, then the chunk kernel's reverse.
            func reverse(_ ch: Int, carryIn cp: Unit<T>, slot i: Int) {
                let t0 = bos + ch * n0, n = min(n0, bos + nT - t0)
                let (kept, K, V, Q) = inputs(i)
                if c.normalize {   // the numerators, for the normalisation's cotangent
                    for x in 0..<ue { cur.kv[x] = cp.kv[x] }
                    var k2 = kernel
                    Op.chunk(c, pw, cur, n: n, K: K, V: V, Q: Q, O: O, scratch: &k2)
                }
                for j in 0..<group {
                    if !c.normalize { dO.gather(b, g * group + j, t0, n, dv, into: G + j * n * dvp, ld: dvp); continue }
                    for r in 0..<n {
                        let num = O + (j * n + r) * dvp, gj = G + (j * n + r) * dvp
                        dO.gather(b, g * group + j, t0 + r, 1, dv, into: dOrow, ld: dv)
                        let inv = 1 / (num[dv] + eps)
                        var dot: T = 0
                        for x in 0..<dv { gj[x] = dOrow[x] * inv; dot += dOrow[x] * num[x] }
                        gj[dv] = -dot * inv * inv
                    }
                }
                // brought in during this chunk's products: the gradient rows stored after them (a cached line
                // takes a store without a read for ownership), then what comes next: the cotangent rows of the
                // group's previous chunk, or before the group's first chunk the inputs of the previous group's
                // first chunk (its carry sweep)
                hla_private_plan_reset()
                dK.plan(b, g, t0, n, dk)
                dV.plan(b, g, t0, n, dv)
                for j in 0..<group { dQ.plan(b, g * group + j, t0, n, dk) }
                if i > 0 { for j in 0..<group { dO.plan(b, g * group + j, t0 - n0, n0, dv) } }
                else if ch > 0 { io.plan(c, b: b, g: g, t0: t0 - every * n0, n: n0) }
                var k2 = kernel
                Op.chunkBackward(c, pw, cp, adj, n: n, kept: kept, K: K, V: V, Q: Q, G: G, dK: gK, dV: gV, dQ: gQ, scratch: &k2)
                for r in 0..<n {
                    dK.store(b, t0 + r, g, gK + r * dk, dk)
                    dV.store(b, t0 + r, g, gV + r * dvp, dv)
                    for j in 0..<group { dQ.store(b, t0 + r, g * group + j, gQ + (j * n + r) * dk, dk, mul: scale) }
                }
            }
            // groups in reverse: each chunk's carry (and kept products) from the group's checkpoint, then its
            // chunks in reverse (the group's last chunk only for its kept products: its carry-out is unused, and
            // its carry-in stays in `cur`, which the reverse reads in place unless normalising overwrites it)
            for grp in stride(from: lastStart / every, through: 0, by: -1) {
                let c0 = grp * every, c1 = min(nc, c0 + every)
                start(grp)
                for ch in c0..<c1 {
                    let (keep, K, V, Q) = inputs(ch - c0), last = ch == c1 - 1
                    if !last || c.normalize { for x in 0..<ue { local[(ch - c0) * ue + x] = cur.kv[x] } }
                    advance(ch, K: K, V: V, Q: Q, keep: keep, last: c1 - 1, carryOut: !last)
                }
                for ch in stride(from: c1 - 1, through: c0, by: -1) {
                    let inPlace = ch == c1 - 1 && !c.normalize
                    reverse(ch, carryIn: inPlace ? cur : unit(local + (ch - c0) * ue), slot: ch - c0)
                }
            }
            if let dInitial {
                Op.symmetrizeAdjoint(c, adj)
                Paths.copyBlocks(layout, from: adj, to: layout.unit(dInitial.row(sq), g: g), group: group)
            }
        }
    }
}

/// Small dense kernels of the reverse steps (row-major, leading dimension = cols).
enum Adj {
    /// y = a · M x (+ y when `acc`), M rows × cols. Row dot products in 16-lane accumulators.
    @inline(__always)
    static func mv<T: HLAFloat>(_ m: UnsafePointer<T>, _ rows: Int, _ cols: Int, _ x: UnsafePointer<T>,
                                _ y: UnsafeMutablePointer<T>, acc: Bool, a: T = 1) {
        for r in 0..<rows {
            let row = m + r * cols
            var v = SIMD16<T>(repeating: 0)
            var j = 0
            while j + 16 <= cols { v.addProduct(Vec.load(row + j), Vec.load(x + j)); j += 16 }
            var s = v.sum()
            while j < cols { s += row[j] * x[j]; j += 1 }
            y[r] = acc ? y[r] + a * s : a * s
        }
    }
    /// y = Mᵀ x (+ y when `acc`), M rows × cols.
    @inline(__always)
    static func mtv<T: HLAFloat>(_ m: UnsafePointer<T>, _ rows: Int, _ cols: Int, _ x: UnsafePointer<T>,
                                 _ y: UnsafeMutablePointer<T>, acc: Bool) {
        if !acc { for j in 0..<cols { y[j] = 0 } }
        for r in 0..<rows {
            let row = m + r * cols, xr = x[r]
            for j in 0..<cols { y[j] += xr * row[j] }
        }
    }
    /// M += a · u wᵀ.
    @inline(__always)
    static func outer<T: HLAFloat>(_ m: UnsafeMutablePointer<T>, _ rows: Int, _ cols: Int, _ a: T,
                                   _ u: UnsafePointer<T>, _ w: UnsafePointer<T>) {
        for r in 0..<rows {
            let row = m + r * cols, ur = a * u[r]
            for j in 0..<cols { row[j] += ur * w[j] }
        }
    }
    /// y += (M + Mᵀ) x, M n × n.
    @inline(__always)
    static func symMv<T: HLAFloat>(_ m: UnsafePointer<T>, _ n: Int, _ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>) {
        mv(m, n, n, x, y, acc: true)
        mtv(m, n, n, x, y, acc: true)
    }
    /// M ← (M + Mᵀ) / 2, M n × n.
    @inline(__always)
    static func symmetrize<T: HLAFloat>(_ m: UnsafeMutablePointer<T>, _ n: Int) {
        for r in 0..<n {
            for j in (r + 1)..<max(n, r + 1) {
                let s = (m[r * n + j] + m[j * n + r]) / 2
                m[r * n + j] = s; m[j * n + r] = s
            }
        }
    }
    @inline(__always)
    static func zero<T: HLAFloat>(_ y: UnsafeMutablePointer<T>, _ count: Int) { for i in 0..<count { y[i] = 0 } }

    /// Reverse of the unmasked output form O = Γ₁ X P0 + W V, W = (X Kᵀ) ⊙ D_1 (ahla with X = Γ₁ Q R0 + AD Q, hla3
    /// with X = X2), n tokens: forms W, then dX = Γ₁ G P0ᵀ + dW K, dP0 += Xᵀ Γ₁ G, dV += Wᵀ G, dK += dWᵀ X, with
    /// dW = (G Vᵀ) ⊙ D_1. G1 = Γ₁ G; W and dW: n × n scratch.
    @inline(__always)
    static func projectedOutput<T: HLAFloat>(_ n: Int, _ dk: Int, _ dvp: Int, _ pw: Powers<T>,
                                             X: UnsafePointer<T>, K: UnsafePointer<T>, V: UnsafePointer<T>,
                                             P0: UnsafePointer<T>, G: UnsafePointer<T>, G1: UnsafePointer<T>,
                                             W: UnsafeMutablePointer<T>, dW: UnsafeMutablePointer<T>,
                                             dX: UnsafeMutablePointer<T>, dP0: UnsafeMutablePointer<T>,
                                             dV: UnsafeMutablePointer<T>, dK: UnsafeMutablePointer<T>) {
        T.gemm(false, true, n, n, dk, 1, X, dk, K, dk, 0, W, n)
        Mask.lowerDecay(W, n, n, pw, 1)                                        // W
        T.gemm(false, true, n, dk, dvp, 1, G1, dvp, P0, dvp, 0, dX, dk)      // dX = Γ₁ G P0ᵀ
        T.gemm(true, false, dk, dvp, n, 1, X, dk, G1, dvp, 1, dP0, dvp)      // dP0 += Xᵀ Γ₁ G
        T.gemm(true, false, n, dvp, n, 1, W, n, G, dvp, 1, dV, dvp)          // dV += Wᵀ G
        T.gemm(false, true, n, n, dvp, 1, G, dvp, V, dvp, 0, dW, n)
        Mask.lowerDecay(dW, n, n, pw, 1)                                       // dW
        T.gemm(false, false, n, dk, n, 1, dW, n, K, dk, 1, dX, dk)           // dX += dW K
        T.gemm(true, false, n, dk, n, 1, dW, n, X, dk, 1, dK, dk)            // dK += dWᵀ X
    }
}

/// Backward over whole sequences (docs/spec.md §9): dq, dk, dv and optionally d_initial.
struct BackwardJob: Job {
    let c: Config, path: Path, x: Engine.Inputs, dO: TensorView, dQ: TensorView, dK: TensorView, dV: TensorView
    let initial: Engine.Block?, dFinal: Engine.Block?, dInitial: Engine.Block?
    var checkpoints: Engine.Tape? = nil   // chunked path only
    func run<Op: Operator, T: HLAFloat>(_ op: Op.Type, _: T.Type) throws(HLAError) {
        if path == .chunked {
            func chunked<C: ChunkBackward>(_ cb: C.Type) throws(HLAError) {
                try BackwardPath.chunked(cb, c, x.seqs, io: x.io(T.self), dO: Strided(dO), dQ: Strided(dQ),
                                         dK: Strided(dK), dV: Strided(dV), initial: initial?.typed(T.self),
                                         dFinal: dFinal?.typed(T.self), dInitial: dInitial?.typed(T.self),
                                         checkpoints: checkpoints?.typed(T.self))
            }
            switch c.op {
            case .hla2: return try chunked(HLA2.self)
            case .ahla: return try chunked(AHLA.self)
            case .hla3: return try chunked(HLA3.self)
            }
        }
        try BackwardPath.run(op, c, x.seqs, io: x.io(T.self), dO: Strided(dO), dQ: Strided(dQ), dK: Strided(dK),
                             dV: Strided(dV), initial: initial?.typed(T.self), dFinal: dFinal?.typed(T.self),
                             dInitial: dInitial?.typed(T.self))
    }
}
