import CHLA

/// Run whole sequences through path (hla_path). q [B,T,H,dk], k [B,T,Hkv,dk], v [B,T,Hkv,dv] of one
/// floating dtype; output [B,T,H,dv] of the same dtype, not overlapping the inputs. cu_seqlens: NULL, or
/// int64/int32 [N+1] strictly increasing offsets from 0 to T with B = 1: N packed sequences, each computed
/// as if alone (no work on padding). initial: NULL (zero prefix) or a state tensor [slots, n] read before
/// the first token; final: NULL or a state tensor [slots, n] that receives the state after the last token
/// (may be the same memory as initial: a prefill in place). States are float32 (float64 for float64
/// inputs) with n = hla_state_elements(cfg). rows: NULL (sequence i uses row i) or int64/int32 [N]
/// distinct row indices, applied to initial and final alike (continuous batching).
@c public func hla_forward(_ cfg: UnsafePointer<hla_config>?, _ path: Int32,
                           _ q: UnsafePointer<hla_tensor>?, _ k: UnsafePointer<hla_tensor>?, _ v: UnsafePointer<hla_tensor>?,
                           _ output: UnsafePointer<hla_tensor>?, _ cu_seqlens: UnsafePointer<hla_tensor>?,
                           _ initial: UnsafePointer<hla_tensor>?, _ final_state: UnsafePointer<hla_tensor>?,
                           _ rows: UnsafePointer<hla_tensor>?) -> hla_status {
    working("hla_forward") { () throws(HLAError) in
        let job = try forwardJob(cfg, path, q, k, v, output, cu_seqlens, initial, final_state, rows)
        try dispatch(job.c, job.x.compute, job)
    }
}

/// hla_forward's arguments, validated.
private func forwardJob(_ cfg: UnsafePointer<hla_config>?, _ path: Int32,
                        _ q: UnsafePointer<hla_tensor>?, _ k: UnsafePointer<hla_tensor>?, _ v: UnsafePointer<hla_tensor>?,
                        _ output: UnsafePointer<hla_tensor>?, _ cu_seqlens: UnsafePointer<hla_tensor>?,
                        _ initial: UnsafePointer<hla_tensor>?, _ final_state: UnsafePointer<hla_tensor>?,
                        _ rows: UnsafePointer<hla_tensor>?) throws(HLAError) -> ForwardJob {
    let c = try config(cfg)
    guard let route = Path(rawValue: path) else { throw .invalid("path = \(path) is not an hla_path (0 chunked, 1 serial, 2 scan)") }
    let x = try Engine.inputs(c, rank: 4, q: q, k: k, v: v, out: output, needsOut: true, cuSeqlens: cu_seqlens)
    let n = Engine.elements(c, summary: false), N = x.seqs.count
    let ini = try initial.map { (p) throws(HLAError) in try Engine.block(p, "initial", n: n, compute: x.compute, count: N, rows: rows) }
    let fin = try final_state.map { (p) throws(HLAError) in
        let b = try Engine.block(p, "final", n: n, compute: x.compute, count: N, rows: rows)
        try b.view.expectWritable()
        return b
    }
    if rows != nil && ini == nil && fin == nil { throw .invalid("rows given without an initial or final state") }
    return ForwardJob(c: c, path: route, x: x, initial: ini, final: fin)
}

/// Gradients of a loss L through hla_forward (docs/spec.md section 9, docs/gradients.md): given
/// d_out = dL/d(output) [B,T,H,dv] and optionally d_final = dL/d(final state) [N, n], writes dq, dk, dv
/// (dL/dq [B,T,H,dk], dL/dk [B,T,Hkv,dk], dL/dv [B,T,Hkv,dv]; every element written) and, when d_initial is
/// not NULL, dL/d(initial state) [N, n]. q, k, v, cu_seqlens and initial as in hla_forward (initial NULL = zero
/// prefix); d_out, dq, dk, dv of q's dtype (bfloat16/float16 widened to float32, rounded once on store);
/// state tensors float32 (float64 for float64 inputs). The cotangent of a symmetric state block (S, S^Q) is
/// reported symmetrised. d_initial may be the same memory as initial or d_final; dq, dk, dv must not overlap
/// the inputs. HLA_PATH_CHUNKED: chunk carries kept at the start of every cfg.checkpoint_every chunks
/// (automatic: ~sqrt(chunks), memory O(sqrt(chunks) * state) per thread) and recomputed per group, chunks
/// walked in reverse through dense n x n products. HLA_PATH_SERIAL and HLA_PATH_SCAN: the checkpointed
/// reverse sweep of the streaming recurrence (states kept every ~sqrt(T) tokens, each stretch recomputed
/// once; memory O(sqrt(T) * state) per thread).
@c public func hla_backward(_ cfg: UnsafePointer<hla_config>?, _ path: Int32,
                            _ q: UnsafePointer<hla_tensor>?, _ k: UnsafePointer<hla_tensor>?, _ v: UnsafePointer<hla_tensor>?,
                            _ d_out: UnsafePointer<hla_tensor>?, _ dq: UnsafePointer<hla_tensor>?,
                            _ dk: UnsafePointer<hla_tensor>?, _ dv: UnsafePointer<hla_tensor>?,
                            _ cu_seqlens: UnsafePointer<hla_tensor>?, _ initial: UnsafePointer<hla_tensor>?,
                            _ d_final: UnsafePointer<hla_tensor>?, _ d_initial: UnsafePointer<hla_tensor>?) -> hla_status {
    working("hla_backward") { () throws(HLAError) in
        let job = try backwardJob(cfg, path, q, k, v, d_out, dq, dk, dv, cu_seqlens, initial, d_final, d_initial)
        try dispatch(job.c, job.x.compute, job)
    }
}

/// hla_backward's arguments, validated.
private func backwardJob(_ cfg: UnsafePointer<hla_config>?, _ path: Int32,
                         _ q: UnsafePointer<hla_tensor>?, _ k: UnsafePointer<hla_tensor>?, _ v: UnsafePointer<hla_tensor>?,
                         _ d_out: UnsafePointer<hla_tensor>?, _ dq: UnsafePointer<hla_tensor>?,
                         _ dk: UnsafePointer<hla_tensor>?, _ dv: UnsafePointer<hla_tensor>?,
                         _ cu_seqlens: UnsafePointer<hla_tensor>?, _ initial: UnsafePointer<hla_tensor>?,
                         _ d_final: UnsafePointer<hla_tensor>?, _ d_initial: UnsafePointer<hla_tensor>?) throws(HLAError) -> BackwardJob {
    let c = try config(cfg)
    guard let route = Path(rawValue: path) else { throw .invalid("path = \(path) is not an hla_path (0 chunked, 1 serial, 2 scan)") }
    let x = try Engine.inputs(c, rank: 4, q: q, k: k, v: v, out: nil, needsOut: false, cuSeqlens: cu_seqlens)
    let B = x.q.shape[0], T = x.q.shape[1]
    func tensor(_ p: UnsafePointer<hla_tensor>?, _ name: StaticString, heads: Int, features: Int, what: String,
                written: Bool) throws(HLAError) -> TensorView {
        let t = try TensorView(p, name, ndim: 4)
        try t.expectFloat(x.q.dtype)
        try t.expectShape(Dims(B, T, heads, features), "[B, T, heads, features] with \(what)")
        if written { try t.expectWritable() }
        return t
    }
    let dO = try tensor(d_out, "d_out", heads: c.heads, features: c.dv, what: "heads = cfg.heads, features = cfg.dv", written: false)
    let dQ = try tensor(dq, "dq", heads: c.heads, features: c.dk, what: "heads = cfg.heads, features = cfg.dk", written: true)
    let dK = try tensor(dk, "dk", heads: c.kvHeads, features: c.dk, what: "heads = cfg.kv_heads, features = cfg.dk", written: true)
    let dV = try tensor(dv, "dv", heads: c.kvHeads, features: c.dv, what: "heads = cfg.kv_heads, features = cfg.dv", written: true)
    let n = Engine.elements(c, summary: false), N = x.seqs.count
    let ini = try initial.map { (p) throws(HLAError) in try Engine.block(p, "initial", n: n, compute: x.compute, count: N) }
    let dfin = try d_final.map { (p) throws(HLAError) in try Engine.block(p, "d_final", n: n, compute: x.compute, count: N) }
    let dini = try d_initial.map { (p) throws(HLAError) in
        let b = try Engine.block(p, "d_initial", n: n, compute: x.compute, count: N)
        try b.view.expectWritable()
        return b
    }
    return BackwardJob(c: c, path: route, x: x, dO: dO, dQ: dQ, dK: dK, dV: dV, initial: ini, dFinal: dfin, dInitial: dini)
}

/// Checkpoint tensor of hla_forward_checkpoints and hla_backward_checkpoints for a call over q of shape
/// [batch, tokens, ...] (sequences = 0), or over `sequences` packed sequences (cu_seqlens of sequences + 1
/// entries; batch 1): *rows (an upper bound over every packing) x n state rows (n = hla_state_elements),
/// and *stride, the checkpoint spacing in tokens (cfg.checkpoint_every chunks; automatic: about
/// sqrt(tokens * chunk)). Memory O(rows * n): about sqrt(tokens / chunk) states per sequence automatically,
/// tokens / chunk at checkpoint_every 1; rows may be 0 (short sequences).
@c public func hla_checkpoint_rows(_ cfg: UnsafePointer<hla_config>?, _ batch: Int64, _ tokens: Int64,
                                   _ sequences: Int64, _ rows: UnsafeMutablePointer<Int64>?,
                                   _ stride: UnsafeMutablePointer<Int64>?) -> hla_status {
    working("hla_checkpoint_rows") { () throws(HLAError) in
        let c = try config(cfg)
        guard let rows else { throw .null("rows") }
        guard let stride else { throw .null("stride") }
        guard batch >= 1 else { throw .invalid("batch = \(batch) must be >= 1") }
        guard tokens >= 1 else { throw .invalid("tokens = \(tokens) must be >= 1") }
        guard sequences >= 0 && sequences <= tokens else {
            throw .invalid("sequences = \(sequences) must be 0 (no cu_seqlens) or between 1 and tokens = \(tokens)")
        }
        guard sequences == 0 || batch == 1 else { throw .invalid("sequences = \(sequences) with batch = \(batch): packed sequences need batch 1") }
        let plan = CheckpointPlan(c, tokens: Int(tokens))
        rows.pointee = Int64(try plan.bound(batch: Int(batch), tokens: Int(tokens), sequences: sequences == 0 ? nil : Int(sequences)))
        stride.pointee = Int64(plan.stride)
    }
}

/// hla_forward on the chunked path that also writes checkpoints [rows, n] (hla_checkpoint_rows; state
/// dtype): each sequence's state before its tokens stride, 2*stride, ..., sequence i's rows after those of
/// sequences 0..i-1 (rows past the last are not written). Arguments otherwise as hla_forward. Outputs and
/// final state are those of hla_forward on HLA_PATH_CHUNKED, bit for bit.
@c public func hla_forward_checkpoints(_ cfg: UnsafePointer<hla_config>?,
                                       _ q: UnsafePointer<hla_tensor>?, _ k: UnsafePointer<hla_tensor>?, _ v: UnsafePointer<hla_tensor>?,
                                       _ output: UnsafePointer<hla_tensor>?, _ cu_seqlens: UnsafePointer<hla_tensor>?,
                                       _ initial: UnsafePointer<hla_tensor>?, _ final_state: UnsafePointer<hla_tensor>?,
                                       _ rows: UnsafePointer<hla_tensor>?, _ checkpoints: UnsafePointer<hla_tensor>?) -> hla_status {
    working("hla_forward_checkpoints") { () throws(HLAError) in
        var job = try forwardJob(cfg, Path.chunked.rawValue, q, k, v, output, cu_seqlens, initial, final_state, rows)
        job.checkpoints = try Engine.tape(checkpoints, job.c, job.x, written: true)
        try dispatch(job.c, job.x.compute, job)
    }
}

/// hla_backward on the chunked path, reading the checkpoints hla_forward_checkpoints wrote for the same
/// cfg, q, k, v, cu_seqlens and initial: it starts each stretch of stride tokens from its checkpoint
/// instead of recomputing the carries first (about one forward less). Gradients are those of hla_backward
/// on HLA_PATH_CHUNKED, bit for bit, when the checkpoints are the forward's and the inputs finite (after a
/// NaN/Inf the forward's carries come from its causal token-by-token recomputation: last bits may differ);
/// other checkpoint values give the gradients at those carries (nothing checks where they came from).
@c public func hla_backward_checkpoints(_ cfg: UnsafePointer<hla_config>?,
                                        _ q: UnsafePointer<hla_tensor>?, _ k: UnsafePointer<hla_tensor>?, _ v: UnsafePointer<hla_tensor>?,
                                        _ d_out: UnsafePointer<hla_tensor>?, _ dq: UnsafePointer<hla_tensor>?,
                                        _ dk: UnsafePointer<hla_tensor>?, _ dv: UnsafePointer<hla_tensor>?,
                                        _ cu_seqlens: UnsafePointer<hla_tensor>?, _ initial: UnsafePointer<hla_tensor>?,
                                        _ d_final: UnsafePointer<hla_tensor>?, _ d_initial: UnsafePointer<hla_tensor>?,
                                        _ checkpoints: UnsafePointer<hla_tensor>?) -> hla_status {
    working("hla_backward_checkpoints") { () throws(HLAError) in
        var job = try backwardJob(cfg, Path.chunked.rawValue, q, k, v, d_out, dq, dk, dv, cu_seqlens, initial, d_final, d_initial)
        job.checkpoints = try Engine.tape(checkpoints, job.c, job.x, written: false)
        try dispatch(job.c, job.x.compute, job)
    }
}

/// Consume one token of R sequences: q [R,H,dk], k [R,Hkv,dk], v [R,Hkv,dv] (one floating dtype);
/// output [R,H,dv] of the same dtype. state: [slots, n] tensor advanced in place (float32, or float64 for
/// float64 inputs). rows: NULL (sequence i is row i, R <= slots) or int64/int32 [R] distinct rows to
/// read and advance (continuous batching: step only the live sequences of a cache).
/// O(dk^2 + dk*dv) per head (O(dk*dv) for masked ahla); nothing proportional to tokens seen.
@c public func hla_step(_ cfg: UnsafePointer<hla_config>?,
                        _ q: UnsafePointer<hla_tensor>?, _ k: UnsafePointer<hla_tensor>?, _ v: UnsafePointer<hla_tensor>?,
                        _ output: UnsafePointer<hla_tensor>?, _ state: UnsafePointer<hla_tensor>?,
                        _ rows: UnsafePointer<hla_tensor>?) -> hla_status {
    working("hla_step") { () throws(HLAError) in
        let c = try config(cfg)
        let x = try Engine.inputs(c, rank: 3, q: q, k: k, v: v, out: output, needsOut: true)
        let st = try Engine.block(state, "state", n: Engine.elements(c, summary: false), compute: x.compute,
                                  count: x.seqs.count, rows: rows)
        try st.view.expectWritable()
        try dispatch(c, x.compute, StepJob(c: c, x: x, state: st))
    }
}

/// Brute-force evaluation of the index sums (accumulated in double, rounded once to the output dtype),
/// for parity checks: O(T^2 (T + d)) per head. Tensors and cu_seqlens as in hla_forward; T <= 16384.
@c public func hla_reference(_ cfg: UnsafePointer<hla_config>?,
                             _ q: UnsafePointer<hla_tensor>?, _ k: UnsafePointer<hla_tensor>?, _ v: UnsafePointer<hla_tensor>?,
                             _ output: UnsafePointer<hla_tensor>?, _ cu_seqlens: UnsafePointer<hla_tensor>?) -> hla_status {
    working("hla_reference") { () throws(HLAError) in
        let c = try config(cfg)
        let x = try Engine.inputs(c, rank: 4, q: q, k: k, v: v, out: output, needsOut: true, cuSeqlens: cu_seqlens)
        try dispatch(c, x.compute, ReferenceJob(c: c, x: x))
    }
}
