import CHLA

/// Checkpoints a chunked forward leaves for the chunked backward (docs/gradients.md §11; C:
/// hla_checkpoint_rows, hla_forward_checkpoints, hla_backward_checkpoints): each sequence's state before its
/// tokens L, 2L, 3L, … (L = `stride`, a whole number of chunks: `checkpoint_every` of them, or by default
/// ⌈√(chunks of the call's T tokens)⌉, about √(T · chunk) tokens), the rows of sequence i after those of
/// sequences 0..<i. The backward walks each stretch of L tokens from its checkpoint, so it skips the carry
/// sweep it would otherwise run to find them.
struct CheckpointPlan {
    /// Chunk length of the chunked path (before it is capped at the longest sequence): `chunk_size`, or 32 when
    /// max(dk, dv + normalize) ≤ 96, else 64.
    let chunk: Int
    /// Chunks per stretch: `checkpoint_every` (at most the chunks of T tokens), or ⌈√(chunks of T tokens)⌉.
    let every: Int
    /// Tokens between checkpoints, saturated at Int.max (a stride past any call's tokens: no checkpoint).
    var stride: Int {
        let (s, o) = chunk.multipliedReportingOverflow(by: every)
        return o ? Int.max : s
    }

    init(_ c: Config, tokens: Int) {
        chunk = Paths.chunkLength(c)
        let chunks = (max(tokens, 1) - 1) / chunk + 1   // ⌈tokens / chunk⌉ without overflow
        every = CheckpointPlan.every(c, chunks: chunks)
    }

    /// Chunks between kept carries for a sequence of `chunks` chunks: `checkpoint_every` capped at `chunks`,
    /// or (0, automatic) ⌈√chunks⌉, which balances the carries kept against the chunks recomputed from each.
    static func every(_ c: Config, chunks: Int) -> Int {
        c.checkpointEvery > 0 ? min(c.checkpointEvery, max(chunks, 1)) : ceilSqrt(max(chunks, 1))
    }

    /// ⌈√x⌉ for x ≥ 1, exact for every Int (no square overflows near Int.max).
    static func ceilSqrt(_ x: Int) -> Int {
        var e = max(1, Int(Double(x).squareRoot()))
        while e > 1 {   // down while (e − 1)² ≥ x
            let (sq, o) = (e - 1).multipliedReportingOverflow(by: e - 1)
            if o || sq >= x { e -= 1 } else { break }
        }
        while true {    // up while e² < x
            let (sq, o) = e.multipliedReportingOverflow(by: e)
            if o || sq >= x { return e }
            e += 1
        }
    }

    /// Checkpoints of a sequence of `length` ≥ 1 tokens: its states before tokens L, 2L, … < length.
    func count(length: Int) -> Int { (length - 1) / stride }

    /// Rows that hold the checkpoints of any call with these shapes: B sequences of T tokens
    /// (`sequences` nil), or N packed sequences of T tokens in all (Σ ⌊(len − 1)/L⌋ ≤ ⌊(T − N)/L⌋).
    func bound(batch: Int, tokens: Int, sequences: Int?) throws(HLAError) -> Int {
        if let n = sequences { return (tokens - n) / stride }
        return try checkedMul(batch, (tokens - 1) / stride, "checkpoint rows")
    }
}

/// The checkpoint rows of one call, typed: row `first[i] + j` is sequence i's state before its token (j + 1) L.
struct Checkpoints<T> {
    let rows: Rows<T>
    let first: UnsafePointer<Int>
    let plan: CheckpointPlan
    /// Sequence i's state before its token (j + 1) · stride.
    @inline(__always) func row(_ i: Int, _ j: Int) -> UnsafeMutablePointer<T> { rows.row(first[i] + j) }
}

extension Engine {
    /// A validated checkpoint tensor of a call ([rows, n] of the state type, at least the rows the call's
    /// sequences need) with each sequence's first row.
    struct Tape {
        let block: Block
        let first: Indices
        let plan: CheckpointPlan
        func typed<T: HLAFloat>(_: T.Type) -> Checkpoints<T> {
            Checkpoints(rows: block.typed(T.self), first: first.pointer, plan: plan)
        }
    }

    static func tape(_ p: UnsafePointer<hla_tensor>?, _ c: Config, _ x: Inputs, written: Bool) throws(HLAError) -> Tape {
        guard p != nil else { throw .null("checkpoints") }
        let plan = CheckpointPlan(c, tokens: x.seqs.tokens)
        var first = [Int](), total = 0
        first.reserveCapacity(x.seqs.count)
        for i in 0..<x.seqs.count { first.append(total); total += plan.count(length: x.seqs.length(i)) }
        let b = try block(p, "checkpoints", n: elements(c, summary: false), compute: x.compute, count: 0)
        guard b.view.shape[0] >= total else {
            throw .mismatch("checkpoints has \(b.view.shape[0]) rows; the call's \(x.seqs.count) sequences need \(total) (stride \(plan.stride) tokens; hla_checkpoint_rows gives a bound)")
        }
        if written { try b.view.expectWritable() }
        return Tape(block: b, first: try Indices(first), plan: plan)
    }
}
