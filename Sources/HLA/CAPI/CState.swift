import CHLA

/// New zeroed state for *cfg (chunk_size is ignored). On success *result owns a handle that the caller
/// frees with hla_state_destroy; on failure *result is set to NULL.
@c public func hla_state_create(_ cfg: UnsafePointer<hla_config>?,
                                _ result: UnsafeMutablePointer<UnsafeMutablePointer<hla_state>?>?) -> hla_status {
    guarded("hla_state_create") { () throws(HLAError) in
        guard let result else { throw .null("result") }
        result.pointee = nil
        guard let cfg else { throw .null("cfg") }
        var c = cfg.pointee
        c.chunk_size = 0   // a state has no chunk length
        let s = try Stats(.state, try Config(c))
        result.pointee = try makeHandle(s, tag: stateTag).assumingMemoryBound(to: hla_state.self)
    }
}

/// Free a state and everything it holds. NULL is a no-op; so is a pointer that is not a live state handle.
@c public func hla_state_destroy(_ state: UnsafeMutablePointer<hla_state>?) {
    destroyHandle(state.map { UnsafeMutableRawPointer($0) }, tag: stateTag)
}

/// Zero the statistics and the token count, as if newly created.
@c public func hla_state_reset(_ state: UnsafeMutablePointer<hla_state>?) -> hla_status {
    guarded("hla_state_reset") { () throws(HLAError) in
        try object(state, tag: stateTag, name: "state").reset()
    }
}

/// Deep copy of a state into a new handle *result (freed with hla_state_destroy).
@c public func hla_state_clone(_ state: UnsafePointer<hla_state>?,
                               _ result: UnsafeMutablePointer<UnsafeMutablePointer<hla_state>?>?) -> hla_status {
    guarded("hla_state_clone") { () throws(HLAError) in
        guard let result else { throw .null("result") }
        result.pointee = nil
        let s = try object(state, tag: stateTag, name: "state").copy()
        result.pointee = try makeHandle(s, tag: stateTag).assumingMemoryBound(to: hla_state.self)
    }
}

/// Copy the configuration of the state into *result (chunk_size is 0).
@c public func hla_state_get_config(_ state: UnsafePointer<hla_state>?,
                                    _ result: UnsafeMutablePointer<hla_config>?) -> hla_status {
    guarded("hla_state_get_config") { () throws(HLAError) in
        let s = try object(state, tag: stateTag, name: "state")
        guard let result else { throw .null("result") }
        var c = s.cfg.c
        c.chunk_size = 0
        result.pointee = c
    }
}

/// Bytes of prefix statistics the state holds in memory (independent of the tokens consumed).
@c public func hla_state_nbytes(_ state: UnsafePointer<hla_state>?, _ result: UnsafeMutablePointer<Int64>?) -> hla_status {
    guarded("hla_state_nbytes") { () throws(HLAError) in
        let s = try object(state, tag: stateTag, name: "state")
        guard let result else { throw .null("result") }
        result.pointee = Int64(s.nbytes)
    }
}

/// Tokens consumed since creation or reset (a state made from a segment counts the tokens of the segment).
@c public func hla_state_tokens(_ state: UnsafePointer<hla_state>?, _ result: UnsafeMutablePointer<Int64>?) -> hla_status {
    guarded("hla_state_tokens") { () throws(HLAError) in
        let s = try object(state, tag: stateTag, name: "state")
        guard let result else { throw .null("result") }
        result.pointee = Int64(s.tokens)
    }
}

/// Serialize a state. *written always receives the required size; pass buffer = NULL and capacity = 0 to
/// query it. HLA_ERR_BUFFER_TOO_SMALL if capacity is smaller. The bytes are versioned, little-endian,
/// carry the configuration and a checksum.
@c public func hla_state_serialize(_ state: UnsafePointer<hla_state>?, _ buffer: UnsafeMutableRawPointer?,
                                   _ capacity: UInt, _ written: UnsafeMutablePointer<UInt>?) -> hla_status {
    guarded("hla_state_serialize") { () throws(HLAError) in
        try serialize(try object(state, tag: stateTag, name: "state"), buffer, capacity, written)
    }
}

/// New state *result from size serialized bytes; HLA_ERR_CORRUPT on truncation, any changed byte,
/// another version or an invalid configuration.
@c public func hla_state_deserialize(_ buffer: UnsafeRawPointer?, _ size: UInt,
                                     _ result: UnsafeMutablePointer<UnsafeMutablePointer<hla_state>?>?) -> hla_status {
    guarded("hla_state_deserialize") { () throws(HLAError) in
        guard let result else { throw .null("result") }
        result.pointee = nil
        let s = try deserialize(buffer, size, kind: .state)
        result.pointee = try makeHandle(s, tag: stateTag).assumingMemoryBound(to: hla_state.self)
    }
}

/// Consume one token for every (batch, head): q [B,H,Dk], k [B,Hkv,Dk], v [B,Hkv,Dv] in the dtype of the state;
/// output [B,H,Dv] (not overlapping the inputs) receives the outputs. Strides: 3 element strides each,
/// or NULL for C-contiguous.
/// O(dk^2 + dk*dv) per head (O(dk*dv) for masked ahla); no allocation proportional to tokens seen.
@c public func hla_state_step(_ state: UnsafeMutablePointer<hla_state>?,
                              _ q: UnsafeRawPointer?, _ q_strides: UnsafePointer<Int64>?,
                              _ k: UnsafeRawPointer?, _ k_strides: UnsafePointer<Int64>?,
                              _ v: UnsafeRawPointer?, _ v_strides: UnsafePointer<Int64>?,
                              _ output: UnsafeMutableRawPointer?, _ output_strides: UnsafePointer<Int64>?) -> hla_status {
    guarded("hla_state_step") { () throws(HLAError) in
        let s = try object(state, tag: stateTag, name: "state")
        try Engine.step(s, Engine.Tensors(q: q, qs: q_strides, k: k, ks: k_strides, v: v, vs: v_strides,
                                          out: output, os: output_strides, needsOut: true))
    }
}
