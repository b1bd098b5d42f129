import CHLA

/// Summary *result of a segment of T >= 1 tokens (tensors as in hla_forward, no output). Segments of
/// one sequence can be summarized anywhere in parallel; free with hla_segment_destroy.
@c public func hla_summarize(_ cfg: UnsafePointer<hla_config>?, _ T: Int64,
                             _ q: UnsafeRawPointer?, _ q_strides: UnsafePointer<Int64>?,
                             _ k: UnsafeRawPointer?, _ k_strides: UnsafePointer<Int64>?,
                             _ v: UnsafeRawPointer?, _ v_strides: UnsafePointer<Int64>?,
                             _ result: UnsafeMutablePointer<UnsafeMutablePointer<hla_segment>?>?) -> hla_status {
    guarded("hla_summarize") { () throws(HLAError) in
        guard let result else { throw .null("result") }
        result.pointee = nil
        let c = try config(cfg)
        let n = try tokens(T)
        let s = try Engine.summarize(c, nT: n, Engine.Tensors(q: q, qs: q_strides, k: k, ks: k_strides, v: v, vs: v_strides,
                                                               out: nil, os: nil, needsOut: false))
        result.pointee = try makeHandle(s, tag: segmentTag).assumingMemoryBound(to: hla_segment.self)
    }
}

/// Summary *result of segment a followed by segment b (associative: (a b) c = a (b c); not commutative).
/// Both must have the same configuration. a and b are unchanged.
@c public func hla_segment_combine(_ a: UnsafePointer<hla_segment>?, _ b: UnsafePointer<hla_segment>?,
                                   _ result: UnsafeMutablePointer<UnsafeMutablePointer<hla_segment>?>?) -> hla_status {
    guarded("hla_segment_combine") { () throws(HLAError) in
        guard let result else { throw .null("result") }
        result.pointee = nil
        let sa = try object(a, tag: segmentTag, name: "a"), sb = try object(b, tag: segmentTag, name: "b")
        guard sa.cfg.compatible(sb.cfg) else {
            throw .mismatch("a has configuration {\(sa.cfg.summary)}, b has {\(sb.cfg.summary)}")
        }
        guard sa.tokens <= Int.max / 4 - sb.tokens else { throw .overflow("combined segment length") }
        let s = try Engine.combine(sa, sb)
        result.pointee = try makeHandle(s, tag: segmentTag).assumingMemoryBound(to: hla_segment.self)
    }
}

/// Free a segment. NULL is a no-op; so is a pointer that is not a live segment handle.
@c public func hla_segment_destroy(_ segment: UnsafeMutablePointer<hla_segment>?) {
    destroyHandle(segment.map { UnsafeMutableRawPointer($0) }, tag: segmentTag)
}

/// Copy the configuration of the segment into *result (chunk_size is 0).
@c public func hla_segment_get_config(_ segment: UnsafePointer<hla_segment>?,
                                      _ result: UnsafeMutablePointer<hla_config>?) -> hla_status {
    guarded("hla_segment_get_config") { () throws(HLAError) in
        let s = try object(segment, tag: segmentTag, name: "segment")
        guard let result else { throw .null("result") }
        var c = s.cfg.c
        c.chunk_size = 0
        result.pointee = c
    }
}

/// Tokens the segment summarizes.
@c public func hla_segment_length(_ segment: UnsafePointer<hla_segment>?, _ result: UnsafeMutablePointer<Int64>?) -> hla_status {
    guarded("hla_segment_length") { () throws(HLAError) in
        let s = try object(segment, tag: segmentTag, name: "segment")
        guard let result else { throw .null("result") }
        result.pointee = Int64(s.tokens)
    }
}

/// Bytes of statistics the segment holds (independent of its length).
@c public func hla_segment_nbytes(_ segment: UnsafePointer<hla_segment>?, _ result: UnsafeMutablePointer<Int64>?) -> hla_status {
    guarded("hla_segment_nbytes") { () throws(HLAError) in
        let s = try object(segment, tag: segmentTag, name: "segment")
        guard let result else { throw .null("result") }
        result.pointee = Int64(s.nbytes)
    }
}

/// Serialize a segment; same protocol as hla_state_serialize.
@c public func hla_segment_serialize(_ segment: UnsafePointer<hla_segment>?, _ buffer: UnsafeMutableRawPointer?,
                                     _ capacity: UInt, _ written: UnsafeMutablePointer<UInt>?) -> hla_status {
    guarded("hla_segment_serialize") { () throws(HLAError) in
        try serialize(try object(segment, tag: segmentTag, name: "segment"), buffer, capacity, written)
    }
}

/// New segment *result from serialized bytes; same checks as hla_state_deserialize.
@c public func hla_segment_deserialize(_ buffer: UnsafeRawPointer?, _ size: UInt,
                                       _ result: UnsafeMutablePointer<UnsafeMutablePointer<hla_segment>?>?) -> hla_status {
    guarded("hla_segment_deserialize") { () throws(HLAError) in
        guard let result else { throw .null("result") }
        result.pointee = nil
        let s = try deserialize(buffer, size, kind: .segment)
        result.pointee = try makeHandle(s, tag: segmentTag).assumingMemoryBound(to: hla_segment.self)
    }
}

/// New state *result holding the prefix statistics after the segment: the carry-in for the tokens that
/// follow it (pass it as initial to hla_forward, or step it).
@c public func hla_state_from_segment(_ segment: UnsafePointer<hla_segment>?,
                                      _ result: UnsafeMutablePointer<UnsafeMutablePointer<hla_state>?>?) -> hla_status {
    guarded("hla_state_from_segment") { () throws(HLAError) in
        guard let result else { throw .null("result") }
        result.pointee = nil
        let seg = try object(segment, tag: segmentTag, name: "segment")
        let s = try Stats(.state, seg.cfg)
        s.copyStateBlocks(from: seg)
        s.tokens = seg.tokens
        result.pointee = try makeHandle(s, tag: stateTag).assumingMemoryBound(to: hla_state.self)
    }
}
