/// The sequences of one call: either the B rows of a [B, T, ...] batch (sequence i = batch row i, all T
/// tokens), or the N packed sequences of `cu_seqlens` in a batch of one (sequence i = tokens
/// cu[i]..<cu[i+1]). Only plain integers and a pointer, so kernels on several threads read it freely.
struct Seqs {
    let count: Int
    let tokens: Int
    let cu: UnsafePointer<Int>?   // N + 1 offsets when packed
    var order: UnsafePointer<Int>? = nil   // packed: sequences longest first (the schedule's order)

    /// The sequence a parallel loop handles at position r: longest first when packed, so the last units
    /// a worker picks up are the short ones and both cores finish together.
    @inline(__always) func scheduled(_ r: Int) -> Int { order.map { $0[r] } ?? r }

    @inline(__always) func batch(_ i: Int) -> Int { cu == nil ? i : 0 }
    @inline(__always) func bos(_ i: Int) -> Int { cu.map { $0[i] } ?? 0 }
    @inline(__always) func length(_ i: Int) -> Int { cu.map { $0[i + 1] - $0[i] } ?? tokens }
    /// Whether a parallel loop over this call's units hands them out from a shared counter (`parallelFor`'s
    /// balanced mode): packed sequences (units of different lengths), and any call of more than one token
    /// per sequence, where a unit's work dwarfs reloading its state into another core's cache, and a worker
    /// slowed by other work on a shared machine leaves the units it has not started to the others (with a
    /// fixed share each, the call waited for the slowest core). Single-token calls (decoding steps) keep
    /// the fixed shares, so each unit's state stays in the cache of the core that ran it last.
    var balanced: Bool { cu != nil || tokens > 1 }

    var maxLength: Int {
        guard let cu else { return tokens }
        var m = 0
        for i in 0..<count { m = max(m, cu[i + 1] - cu[i]) }
        return m
    }
}

/// Index lists of a call (cu_seqlens offsets, state rows), validated and owned for the call's duration.
final class Indices {
    let buffer: RawBuffer<Int>
    let count: Int
    init(_ values: [Int]) throws(HLAError) {
        count = values.count
        buffer = try RawBuffer<Int>.allocate(max(values.count, 1))
        for (i, v) in values.enumerated() { buffer.base[i] = v }
    }
    deinit { buffer.free() }
    var pointer: UnsafePointer<Int> { UnsafePointer(buffer.base) }

    /// `cu_seqlens`: N + 1 >= 2 strictly increasing offsets from 0 to T.
    static func cuSeqlens(_ t: TensorView, tokens: Int) throws(HLAError) -> Indices {
        let v = try t.integers()
        guard v.count >= 2 else { throw .invalid("cu_seqlens has \(v.count) entries; it needs N + 1 >= 2") }
        guard v[0] == 0 else { throw .invalid("cu_seqlens[0] = \(v[0]) must be 0") }
        for i in 1..<v.count where v[i] <= v[i - 1] {
            throw .invalid("cu_seqlens must be strictly increasing: cu_seqlens[\(i)] = \(v[i]) after \(v[i - 1])")
        }
        guard v[v.count - 1] == tokens else { throw .invalid("cu_seqlens ends at \(v[v.count - 1]), not at T = \(tokens)") }
        return try Indices(v)
    }

    /// `rows`: `count` distinct indices in [0, slots).
    static func rows(_ t: TensorView, count: Int, slots: Int) throws(HLAError) -> Indices {
        let v = try t.integers()
        let name = t.name
        guard v.count == count else { throw .mismatch("\(name) has \(v.count) entries, the call has \(count) sequences") }
        for (i, r) in v.enumerated() where r < 0 || r >= slots {
            throw .invalid("\(name)[\(i)] = \(r) is outside the state's \(slots) rows")
        }
        let sorted = v.sorted()
        for i in sorted.indices.dropFirst() where sorted[i] == sorted[i - 1] {
            throw .invalid("\(name) repeats row \(sorted[i])")
        }
        return try Indices(v)
    }
}
