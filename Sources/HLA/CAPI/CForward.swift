import CHLA

/// Run T >= 1 tokens through path (hla_path). Tensors: q [B,T,H,Dk], k [B,T,Hkv,Dk], v [B,T,Hkv,Dv],
/// output [B,T,H,Dv], each with 4 element strides or NULL for C-contiguous (any strides: [B,H,T,D] views and
/// fused QKV buffers are read in place). initial may be NULL (zero prefix) or a state of the same
/// configuration (chunk_size aside), read only. final_state may be NULL or a state of the same
/// configuration that receives the state after the last token; it may be the same handle as initial.
/// output must not overlap q, k or v. On failure output and final_state are unspecified (final_state
/// remains a valid state).
@c public func hla_forward(_ cfg: UnsafePointer<hla_config>?, _ T: Int64, _ path: Int32,
                           _ q: UnsafeRawPointer?, _ q_strides: UnsafePointer<Int64>?,
                           _ k: UnsafeRawPointer?, _ k_strides: UnsafePointer<Int64>?,
                           _ v: UnsafeRawPointer?, _ v_strides: UnsafePointer<Int64>?,
                           _ output: UnsafeMutableRawPointer?, _ output_strides: UnsafePointer<Int64>?,
                           _ initial: UnsafePointer<hla_state>?, _ final_state: UnsafeMutablePointer<hla_state>?) -> hla_status {
    guarded("hla_forward") { () throws(HLAError) in
        let c = try config(cfg)
        let n = try tokens(T)
        guard path >= 0 && path <= 2 else { throw .invalid("path = \(path) is not an hla_path (0 chunked, 1 serial, 2 scan)") }
        let ini = try initial.map { (p) throws(HLAError) -> Stats in try object(p, tag: stateTag, name: "initial") }
        let fin = try final_state.map { (p) throws(HLAError) -> Stats in try object(p, tag: stateTag, name: "final_state") }
        for (s, name) in [(ini, "initial"), (fin, "final_state")] {
            if let s, !s.cfg.compatible(c) {
                throw .mismatch("\(name) has configuration {\(s.cfg.summary)}, the call has {\(c.summary)}")
            }
        }
        try Engine.forward(c, nT: n, path: path,
                           Engine.Tensors(q: q, qs: q_strides, k: k, ks: k_strides, v: v, vs: v_strides,
                                          out: output, os: output_strides, needsOut: true),
                           initial: ini, final: fin)
    }
}

/// Brute-force evaluation of the index sums of the operators (accumulated in double, written in the dtype),
/// for parity checks: O(T^2 (T + d)) per head. Same tensors as hla_forward; T <= 16384.
@c public func hla_reference(_ cfg: UnsafePointer<hla_config>?, _ T: Int64,
                             _ q: UnsafeRawPointer?, _ q_strides: UnsafePointer<Int64>?,
                             _ k: UnsafeRawPointer?, _ k_strides: UnsafePointer<Int64>?,
                             _ v: UnsafeRawPointer?, _ v_strides: UnsafePointer<Int64>?,
                             _ output: UnsafeMutableRawPointer?, _ output_strides: UnsafePointer<Int64>?) -> hla_status {
    guarded("hla_reference") { () throws(HLAError) in
        let c = try config(cfg)
        let n = try tokens(T)
        try Engine.reference(c, nT: n, Engine.Tensors(q: q, qs: q_strides, k: k, ks: k_strides, v: v, vs: v_strides,
                                                      out: output, os: output_strides, needsOut: true))
    }
}
