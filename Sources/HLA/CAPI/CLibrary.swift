import CHLA

/// Version of the loaded library, "MAJOR.MINOR.PATCH" (static storage, never freed). Compare with the
/// HLA_VERSION_* macros of the header you compiled against: the MAJOR numbers must agree.
@c public func hla_version() -> UnsafePointer<CChar> {
    hla_private_fork_enter()   // the first call builds the string (under swift_once's lock)
    defer { hla_private_fork_leave() }
    return hlaVersionCString
}

/// Constant name of a status code, e.g. "HLA_ERR_NULL_POINTER"; "HLA_ERR_UNKNOWN" for any other value.
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
    case HLA_ERR_DTYPE: s = "HLA_ERR_DTYPE"
    default: s = "HLA_ERR_UNKNOWN"
    }
    return UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// Message of the calling thread's most recent failed call ("" if none), naming the function and the
/// argument. Owned by the library; valid until the next failing call on the same thread.
@c public func hla_last_error() -> UnsafePointer<CChar> {
    hla_private_get_error()
}

/// Fill *cfg with the defaults (hla2, masked, not normalized, H = 1, kv_heads 0 = H, dk = dv = 64,
/// scale 1, decay 1, ridge 0, eps 1e-6, chunk_size 0 and checkpoint_every 0 = automatic) and set
/// cfg->struct_size = size. Pass size = sizeof(hla_config) as your compiler sees it (an older header's
/// smaller struct gets the fields it has); bytes past the fields this library knows are zeroed.
@c public func hla_config_init(_ cfg: UnsafeMutablePointer<hla_config>?, _ size: UInt) -> hla_status {
    working("hla_config_init") { () throws(HLAError) in
        guard let cfg else { throw .null("cfg") }
        guard size <= 1 << 16 else { throw .invalid("size = \(size): an hla_config has \(Config.structSize) bytes") }
        _ = try Config.callerSize(Int(size), "size")
        cfg.pointee.struct_size = UInt32(size)
        try writeConfig(Config.defaults(), to: cfg)
    }
}

/// Check every field of *cfg (ranges, finiteness, size products) without allocating anything.
@c public func hla_config_validate(_ cfg: UnsafePointer<hla_config>?) -> hla_status {
    working("hla_config_validate") { () throws(HLAError) in _ = try config(cfg) }
}

/// Fill *t with data, dtype and a shape of ndim sizes, and strides (element strides; NULL means
/// C-contiguous). Checks ndim, dtype, sizes >= 0 and that the extent fits in 64 bits. data may be NULL
/// (a tensor to be described by hla_*_deserialize, or one without elements, which no call reads or writes).
@c public func hla_tensor_init(_ t: UnsafeMutablePointer<hla_tensor>?, _ data: UnsafeMutableRawPointer?, _ dtype: Int32,
                               _ ndim: Int32, _ shape: UnsafePointer<Int64>?, _ strides: UnsafePointer<Int64>?) -> hla_status {
    working("hla_tensor_init") { () throws(HLAError) in
        guard let t else { throw .null("t") }
        guard let shape else { throw .null("shape") }
        guard ndim >= 1 && ndim <= HLA_MAX_NDIM else { throw .invalid("ndim = \(ndim) must lie in 1...\(HLA_MAX_NDIM)") }
        var v = hla_tensor()
        v.data = data; v.dtype = dtype; v.ndim = ndim
        var sh = [Int64](repeating: 0, count: 4), st = [Int64](repeating: 0, count: 4)
        var run: Int64 = 1
        for i in 0..<Int(ndim) { sh[i] = shape[i] }
        for i in stride(from: Int(ndim) - 1, through: 0, by: -1) {
            guard sh[i] >= 0 else { throw .invalid("shape[\(i)] = \(sh[i]) must be >= 0") }
            if let strides { st[i] = strides[i] } else {
                st[i] = run
                let (m, o) = run.multipliedReportingOverflow(by: max(sh[i], 1))
                if o { throw .overflow("shape product overflows") }
                run = m
            }
        }
        v.shape = (sh[0], sh[1], sh[2], sh[3]); v.strides = (st[0], st[1], st[2], st[3])
        var check = v
        if check.data == nil { check.data = UnsafeMutableRawPointer(bitPattern: 64) }   // a query tensor may lack data
        _ = try TensorView(&check, "t", ndim: Int(ndim))
        t.pointee = v
    }
}

/// Elements n of one sequence's state for *cfg (docs/state-layout.md): a state of N sequences is an
/// [N, n] tensor, float32 (float64 for float64 inputs).
@c public func hla_state_elements(_ cfg: UnsafePointer<hla_config>?, _ result: UnsafeMutablePointer<Int64>?) -> hla_status {
    working("hla_state_elements") { () throws(HLAError) in
        let c = try config(cfg)
        guard let result else { throw .null("result") }
        result.pointee = Int64(Engine.elements(c, summary: false))
    }
}

/// Elements m of one segment's summary for *cfg: the state blocks plus the extra blocks combine needs.
@c public func hla_summary_elements(_ cfg: UnsafePointer<hla_config>?, _ result: UnsafeMutablePointer<Int64>?) -> hla_status {
    working("hla_summary_elements") { () throws(HLAError) in
        let c = try config(cfg)
        guard let result else { throw .null("result") }
        result.pointee = Int64(Engine.elements(c, summary: true))
    }
}
