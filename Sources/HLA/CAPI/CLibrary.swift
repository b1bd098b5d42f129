import CHLA

/// Version of the library, MAJOR.MINOR.PATCH (static storage, never freed).
@c public func hla_version() -> UnsafePointer<CChar> {
    UnsafeRawPointer(("0.1.0" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self)
}

/// Constant name of a status code, e.g. HLA_ERR_NULL_POINTER; HLA_ERR_UNKNOWN for any other value.
@c public func hla_status_string(_ status: hla_status) -> UnsafePointer<CChar> {
    let s: StaticString
    switch status {
    case HLA_OK: s = "HLA_OK"
    case HLA_ERR_NULL_POINTER: s = "HLA_ERR_NULL_POINTER"
    case HLA_ERR_INVALID_ARGUMENT: s = "HLA_ERR_INVALID_ARGUMENT"
    case HLA_ERR_OVERFLOW: s = "HLA_ERR_OVERFLOW"
    case HLA_ERR_MISMATCH: s = "HLA_ERR_MISMATCH"
    case HLA_ERR_CORRUPT: s = "HLA_ERR_CORRUPT"
    case HLA_ERR_BUFFER_TOO_SMALL: s = "HLA_ERR_BUFFER_TOO_SMALL"
    case HLA_ERR_OUT_OF_MEMORY: s = "HLA_ERR_OUT_OF_MEMORY"
    default: s = "HLA_ERR_UNKNOWN"
    }
    return UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// Message of the most recent failed call of the calling thread (an empty string if none), naming the function and the
/// argument. Owned by the library; valid until the next failing call on the same thread.
@c public func hla_last_error() -> UnsafePointer<CChar> {
    hla_private_get_error()
}

/// Fill *cfg with the defaults: hla2, float32, masked, not normalized, B = H = 1, kv_heads 0 (= H),
/// dk = dv = 64, scale 1, decay 1, ridge 0, eps 1e-6, chunk_size 0 (automatic).
@c public func hla_config_init(_ cfg: UnsafeMutablePointer<hla_config>?) -> hla_status {
    guarded("hla_config_init") { () throws(HLAError) in
        guard let cfg else { throw .null("cfg") }
        cfg.pointee = Config.defaults()
    }
}

/// Check every field of *cfg (ranges, finiteness, size products) without allocating anything.
@c public func hla_config_validate(_ cfg: UnsafePointer<hla_config>?) -> hla_status {
    guarded("hla_config_validate") { () throws(HLAError) in _ = try config(cfg) }
}
