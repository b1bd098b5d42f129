#if canImport(Glibc)
import Glibc
#endif
import CHLA

/// The rows of a state tensor [slots, n] a call names: `rows` (int64/int32 [R], distinct), or every row.
private func namedRows(_ c: Config, _ state: UnsafePointer<hla_tensor>?, _ rows: UnsafePointer<hla_tensor>?) throws(HLAError) -> (Engine.Block, Int) {
    let dt = try statisticsDType(state, "state", "states")
    let count = try rows != nil ? TensorView(rows, "rows", ndim: 1).shape[0] : rowCount(state, "state")
    return (try Engine.block(state, "state", n: Engine.elements(c, summary: false), compute: dt, count: count, rows: rows), count)
}

/// Zero rows of a state tensor [slots, n] (a fresh sequence): rows NULL = every row, else int64/int32
/// [R] distinct row indices.
@c public func hla_state_reset_rows(_ cfg: UnsafePointer<hla_config>?, _ state: UnsafePointer<hla_tensor>?,
                                    _ rows: UnsafePointer<hla_tensor>?) -> hla_status {
    working("hla_state_reset_rows") { () throws(HLAError) in
        let (b, count) = try namedRows(try config(cfg), state, rows)
        try b.view.expectWritable()
        for i in 0..<count { memset(b.row(i), 0, b.rowBytes) }
    }
}

/// Copy rows of a state tensor [slots, n] within it: row dst_rows[i] receives what row src_rows[i]
/// held before the call (beam search, speculative decoding). src_rows and dst_rows: int64/int32 [R];
/// dst_rows distinct, src_rows may repeat and may overlap dst_rows.
@c public func hla_state_copy_rows(_ cfg: UnsafePointer<hla_config>?, _ state: UnsafePointer<hla_tensor>?,
                                   _ src_rows: UnsafePointer<hla_tensor>?, _ dst_rows: UnsafePointer<hla_tensor>?) -> hla_status {
    working("hla_state_copy_rows") { () throws(HLAError) in
        let c = try config(cfg)
        let dt = try statisticsDType(state, "state", "states")
        let n = Engine.elements(c, summary: false)
        let src = try TensorView(src_rows, "src_rows", ndim: 1).integers()
        guard dst_rows != nil else { throw .null("dst_rows") }
        let dst = try Engine.block(state, "state", n: n, compute: dt, count: src.count, rows: dst_rows, rowsName: "dst_rows")
        try dst.view.expectWritable()
        let slots = dst.view.shape[0]
        for (i, r) in src.enumerated() where r < 0 || r >= slots {
            throw .invalid("src_rows[\(i)] = \(r) is outside the state's \(slots) rows")
        }
        let rb = dst.rowBytes
        guard let tmp = malloc(max(try checkedMul(rb, src.count, "row copy"), 1)) else { throw .noMemory(rb * src.count) }
        defer { free(tmp) }
        for (i, r) in src.enumerated() { memcpy(tmp + i * rb, dst.view.raw + r * dst.stride * dt.size, rb) }
        for i in 0..<src.count { memcpy(dst.row(i), tmp + i * rb, rb) }
    }
}

/// Serialize rows of a state tensor [slots, n] (rows NULL = every row, else int64/int32 [R]) with the
/// configuration, format version and a checksum. *written always receives the required size; pass
/// buffer = NULL and capacity = 0 to query it; HLA_ERR_BUFFER_TOO_SMALL if capacity is smaller.
@c public func hla_state_serialize(_ cfg: UnsafePointer<hla_config>?, _ state: UnsafePointer<hla_tensor>?,
                                   _ rows: UnsafePointer<hla_tensor>?, _ buffer: UnsafeMutableRawPointer?,
                                   _ capacity: UInt, _ written: UnsafeMutablePointer<UInt>?) -> hla_status {
    working("hla_state_serialize") { () throws(HLAError) in
        let c = try config(cfg)
        let (b, count) = try namedRows(c, state, rows)
        try serializeRows(c, summary: false, block: b, count: count, lengths: [], buffer, capacity, written)
    }
}

/// Read size serialized bytes of state rows. Always verifies them (HLA_ERR_CORRUPT on truncation, any
/// changed byte, another format version or an invalid configuration) and writes their configuration to
/// *cfg (which hla_config_init must have sized). If state->data is NULL, describes the rows in *state
/// (dtype, shape [R, n], contiguous strides) and returns; else copies them into rows 0..R-1 of *state.
@c public func hla_state_deserialize(_ buffer: UnsafeRawPointer?, _ size: UInt, _ cfg: UnsafeMutablePointer<hla_config>?,
                                     _ state: UnsafeMutablePointer<hla_tensor>?) -> hla_status {
    working("hla_state_deserialize") { () throws(HLAError) in
        try deserializeRows(buffer, size, summary: false, cfg, state, destName: "state")
    }
}
