import CHLA

/// Summaries of N segments (a batch [B,T,...] gives N = B; cu_seqlens as in hla_forward gives the N
/// packed sequences): tensors q, k, v as in hla_forward, summary [N, m] (m = hla_summary_elements(cfg);
/// float32, or float64 for float64 inputs) receives one row per segment, lengths (NULL or int64 [N])
/// each segment's token count. Segments of one sequence can be summarized anywhere in parallel.
@c public func hla_summarize(_ cfg: UnsafePointer<hla_config>?,
                             _ q: UnsafePointer<hla_tensor>?, _ k: UnsafePointer<hla_tensor>?, _ v: UnsafePointer<hla_tensor>?,
                             _ cu_seqlens: UnsafePointer<hla_tensor>?, _ summary: UnsafePointer<hla_tensor>?,
                             _ lengths: UnsafePointer<hla_tensor>?) -> hla_status {
    working("hla_summarize") { () throws(HLAError) in
        let c = try config(cfg)
        let x = try Engine.inputs(c, rank: 4, q: q, k: k, v: v, out: nil, needsOut: false, cuSeqlens: cu_seqlens)
        let s = try Engine.block(summary, "summary", n: Engine.elements(c, summary: true), compute: x.compute, count: x.seqs.count)
        try s.view.expectWritable()
        let lens = (0..<x.seqs.count).map { x.seqs.length($0) }
        if let lengths { try checkLengthsOut(lengths, "lengths", count: lens.count) }
        try dispatch(c, x.compute, SummarizeJob(c: c, x: x, summary: s))
        if let lengths { try writeLengths(lengths, "lengths", lens) }
    }
}

/// Row by row, result = a followed by b (associative: (a b) c = a (b c); not commutative). a, b, result:
/// summary tensors [N, m] of one dtype (result may be the same memory as a or b); a_lengths, b_lengths:
/// int64/int32 [N]; result_lengths: NULL or int64 [N] receiving a_lengths + b_lengths (may be a_lengths).
@c public func hla_summary_combine(_ cfg: UnsafePointer<hla_config>?,
                                   _ a: UnsafePointer<hla_tensor>?, _ a_lengths: UnsafePointer<hla_tensor>?,
                                   _ b: UnsafePointer<hla_tensor>?, _ b_lengths: UnsafePointer<hla_tensor>?,
                                   _ result: UnsafePointer<hla_tensor>?, _ result_lengths: UnsafePointer<hla_tensor>?) -> hla_status {
    working("hla_summary_combine") { () throws(HLAError) in
        let c = try config(cfg)
        let m = Engine.elements(c, summary: true)
        let ab = try summaryRows(a, "a", n: m)
        let N = ab.view.shape[0], dtype = ab.view.dtype
        let bb = try Engine.block(b, "b", n: m, compute: dtype, count: N)
        guard bb.view.shape[0] == N else { throw .mismatch("a has \(N) rows, b has \(bb.view.shape[0])") }
        let ob = try Engine.block(result, "result", n: m, compute: dtype, count: N)
        try ob.view.expectWritable()
        let la = try lengths(a_lengths, "a_lengths", count: N), lb = try lengths(b_lengths, "b_lengths", count: N)
        for i in 0..<N where la[i] > Int.max / 16 - lb[i] { throw .overflow("a_lengths[\(i)] + b_lengths[\(i)]") }
        if let result_lengths { try checkLengthsOut(result_lengths, "result_lengths", count: N) }
        try dispatch(c, dtype, CombineJob(c: c, a: ab, b: bb, out: ob, nA: la, nB: lb))
        if let result_lengths { try writeLengths(result_lengths, "result_lengths", (0..<N).map { la[$0] + lb[$0] }) }
    }
}

/// The carry-in after each segment: state rows (rows NULL = rows 0..N-1, else int64/int32 [N] distinct)
/// of a state tensor [slots, n] receive the state blocks of summary rows [N, m] (same dtype).
@c public func hla_summary_to_state(_ cfg: UnsafePointer<hla_config>?, _ summary: UnsafePointer<hla_tensor>?,
                                    _ state: UnsafePointer<hla_tensor>?, _ rows: UnsafePointer<hla_tensor>?) -> hla_status {
    working("hla_summary_to_state") { () throws(HLAError) in
        let c = try config(cfg)
        let s = try summaryRows(summary, "summary", n: Engine.elements(c, summary: true))
        let N = s.view.shape[0]
        let st = try Engine.block(state, "state", n: Engine.elements(c, summary: false), compute: s.view.dtype, count: N, rows: rows)
        try st.view.expectWritable()
        Engine.summaryToState(c, summary: s, state: st, count: N)
    }
}

/// Serialize summary rows [N, m] with their lengths (int64/int32 [N]); same protocol as hla_state_serialize.
@c public func hla_summary_serialize(_ cfg: UnsafePointer<hla_config>?, _ summary: UnsafePointer<hla_tensor>?,
                                     _ lengths: UnsafePointer<hla_tensor>?, _ buffer: UnsafeMutableRawPointer?,
                                     _ capacity: UInt, _ written: UnsafeMutablePointer<UInt>?) -> hla_status {
    working("hla_summary_serialize") { () throws(HLAError) in
        let c = try config(cfg)
        let s = try summaryRows(summary, "summary", n: Engine.elements(c, summary: true))
        let N = s.view.shape[0]
        let l = try HLA.lengths(lengths, "lengths", count: N)
        try serializeRows(c, summary: true, block: s, count: N, lengths: l, buffer, capacity, written)
    }
}

/// Read serialized summary rows; same protocol as hla_state_deserialize, and lengths (int64 [R]) receives
/// the segment lengths (described, like summary, when summary->data is NULL).
@c public func hla_summary_deserialize(_ buffer: UnsafeRawPointer?, _ size: UInt, _ cfg: UnsafeMutablePointer<hla_config>?,
                                       _ summary: UnsafeMutablePointer<hla_tensor>?,
                                       _ lengths: UnsafeMutablePointer<hla_tensor>?) -> hla_status {
    working("hla_summary_deserialize") { () throws(HLAError) in
        guard let lengths else { throw .null("lengths") }
        try deserializeRows(buffer, size, summary: true, cfg, summary, destName: "summary", lengths: lengths)
    }
}

/// Every row of a summary tensor [N, m] whose element type the caller chose (float32 or float64).
private func summaryRows(_ p: UnsafePointer<hla_tensor>?, _ name: StaticString, n: Int) throws(HLAError) -> Engine.Block {
    let dtype = try statisticsDType(p, name, "summaries")
    return try Engine.block(p, name, n: n, compute: dtype, count: try rowCount(p, name))
}
