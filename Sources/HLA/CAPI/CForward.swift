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
        try dispatch(c, x.compute, ForwardJob(c: c, path: route, x: x, initial: ini, final: fin))
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
