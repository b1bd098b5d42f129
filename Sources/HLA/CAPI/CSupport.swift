import CHLA

#if canImport(Glibc)
import Glibc
#endif

/// Run an entry point's body: any HLAError becomes its status and this thread's last-error message.
@inline(__always)
func guarded(_ function: StaticString, _ body: () throws(HLAError) -> Void) -> hla_status {
    do {
        try body()
        return HLA_OK
    } catch {
        "\(function): \(error.message)".withCString { hla_private_set_error($0) }
        return error.status
    }
}

/// `guarded` under a shared hold of the fork gate (Sources/CHLA/fork_gate.c): every entry point but
/// hla_status_string and hla_last_error (which touch no shared state) runs its body this way, so a fork() in another thread waits for it and
/// never copies the process while this call is inside libhla (its thread pool, OpenBLAS, the Swift
/// runtime's locks). Entry points must not nest.
@inline(__always)
func working(_ function: StaticString, _ body: () throws(HLAError) -> Void) -> hla_status {
    hla_private_fork_enter()
    defer { hla_private_fork_leave() }
    return guarded(function, body)
}

/// "MAJOR.MINOR.PATCH" from the header's version macros (the single source of truth).
let hlaVersionString = "\(HLA_VERSION_MAJOR).\(HLA_VERSION_MINOR).\(HLA_VERSION_PATCH)"
nonisolated(unsafe) let hlaVersionCString: UnsafePointer<CChar> = {
    hlaVersionString.withCString { UnsafePointer(strdup($0)!) }
}()

func config(_ p: UnsafePointer<hla_config>?, name: String = "cfg") throws(HLAError) -> Config {
    guard let p else { throw .null(name) }
    return try Config(p)
}

/// Number of rows a state/summary tensor holds (for calls whose sequence count is the tensor's).
func rowCount(_ p: UnsafePointer<hla_tensor>?, _ name: StaticString) throws(HLAError) -> Int {
    try TensorView(p, name, ndim: 2).shape[0]
}

/// Lengths of N segments from an int64/int32 [N] tensor, each >= 0.
func lengths(_ p: UnsafePointer<hla_tensor>?, _ name: StaticString, count: Int) throws(HLAError) -> [Int] {
    let t = try TensorView(p, name, ndim: 1)
    let v = try t.integers()
    guard v.count == count else { throw .mismatch("\(name) has \(v.count) entries, expected \(count)") }
    for (i, l) in v.enumerated() where l < 0 || l > Int.max / 16 {
        throw .invalid("\(name)[\(i)] = \(l) is not a segment length")
    }
    return v
}

/// Check that a tensor can receive N lengths: writable int64 [N].
@discardableResult
func checkLengthsOut(_ p: UnsafePointer<hla_tensor>?, _ name: StaticString, count: Int) throws(HLAError) -> TensorView {
    let t = try TensorView(p, name, ndim: 1)
    guard t.dtype == .int64 else { throw HLAError(status: HLA_ERR_DTYPE, message: "\(name).dtype = \(t.dtype.name), expected int64") }
    try t.expectShape(Dims(count), "one length per sequence")
    try t.expectWritable()
    return t
}

/// Write N lengths into a writable int64 [N] tensor.
func writeLengths(_ p: UnsafePointer<hla_tensor>?, _ name: StaticString, _ values: [Int]) throws(HLAError) {
    let t = try checkLengthsOut(p, name, count: values.count)
    let q = t.raw.assumingMemoryBound(to: Int64.self)
    for (i, v) in values.enumerated() { q[i * t.strides[0]] = Int64(v) }
}

/// The struct size of a caller's hla_config that the library is about to write (hla_config_init sized it).
func writableConfigSize(_ p: UnsafeMutablePointer<hla_config>?) throws(HLAError) -> Int {
    guard let p else { throw .null("cfg") }
    return try Config.callerSize(Int(p.pointee.struct_size), "cfg.struct_size")
}

/// The element type of a tensor of state or summary rows: float32 or float64, as the caller chose.
func statisticsDType(_ p: UnsafePointer<hla_tensor>?, _ name: StaticString, _ what: String) throws(HLAError) -> DType {
    let t = try TensorView(p, name, ndim: 2)
    guard t.dtype == .float32 || t.dtype == .float64 else {
        throw HLAError(status: HLA_ERR_DTYPE, message: "\(name).dtype = \(t.dtype.name): \(what) are float32 or float64")
    }
    return t.dtype
}

/// Write a configuration into a caller's struct that hla_config_init sized.
func writeConfig(_ c: hla_config, to p: UnsafeMutablePointer<hla_config>?) throws(HLAError) {
    let size = try writableConfigSize(p)
    guard let p else { throw .null("cfg") }
    let raw = UnsafeMutableRawPointer(p)
    var v = c
    v.struct_size = UInt32(size)
    // the fields the caller's struct has (an older header's lacks the later ones), then zeros
    withUnsafeBytes(of: &v) { raw.copyMemory(from: $0.baseAddress!, byteCount: min(size, Config.structSize)) }
    if size > Config.structSize { memset(raw + Config.structSize, 0, size - Config.structSize) }
}

/// Serialize `count` rows of a block: *written always gets the size; buffer NULL with capacity 0 queries it.
func serializeRows(_ c: Config, summary: Bool, block: Engine.Block, count: Int, lengths: [Int],
                   _ buffer: UnsafeMutableRawPointer?, _ capacity: UInt, _ written: UnsafeMutablePointer<UInt>?) throws(HLAError) {
    guard let written else { throw .null("written") }
    let need = try Serial.size(rows: count, n: block.n, es: block.view.dtype.size, summary: summary)
    written.pointee = UInt(need)
    if buffer == nil && capacity == 0 { return }
    guard let buffer else { throw .null("buffer") }
    guard capacity >= UInt(need) else {
        throw HLAError(status: HLA_ERR_BUFFER_TOO_SMALL, message: "buffer of \(capacity) bytes, \(need) needed")
    }
    Serial.write(c, summary: summary, block: block, count: count, lengths: lengths, to: buffer)
}

/// Verify serialized bytes, write their configuration, and either describe the destination tensor (data NULL:
/// dtype, [rows, n], contiguous strides) or copy the rows into it.
func deserializeRows(_ buffer: UnsafeRawPointer?, _ size: UInt, summary: Bool, _ cfg: UnsafeMutablePointer<hla_config>?,
                     _ dest: UnsafeMutablePointer<hla_tensor>?, destName: StaticString,
                     lengths: UnsafeMutablePointer<hla_tensor>? = nil) throws(HLAError) {
    guard let buffer else { throw .null("buffer") }
    guard let dest else { throw .null("\(destName)") }
    guard size <= UInt(Int.max / 2) else { throw .corrupt("size = \(size) is not the size of any serialized object") }
    let parsed = try Serial.read(buffer, Int(size), summary: summary)
    _ = try writableConfigSize(cfg)    // checked before anything is written
    if dest.pointee.data == nil {
        try writeConfig(parsed.cfg, to: cfg)
        var t = hla_tensor()
        t.dtype = parsed.dtype.rawValue; t.ndim = 2
        t.shape.0 = Int64(parsed.rows); t.shape.1 = Int64(parsed.n)
        t.strides.0 = Int64(parsed.n); t.strides.1 = 1
        dest.pointee = t
        if let lengths, lengths.pointee.data == nil {
            var l = hla_tensor()
            l.dtype = DType.int64.rawValue; l.ndim = 1; l.shape.0 = Int64(parsed.rows); l.strides.0 = 1
            lengths.pointee = l
        }
        return
    }
    let block = try Engine.block(UnsafePointer(dest), destName, n: parsed.n, compute: parsed.dtype, count: parsed.rows)
    try block.view.expectWritable()
    if summary { try checkLengthsOut(UnsafePointer(lengths), "lengths", count: parsed.rows) }
    try writeConfig(parsed.cfg, to: cfg)
    if summary { try writeLengths(UnsafePointer(lengths), "lengths", parsed.lengths) }
    let rb = block.rowBytes
    for i in 0..<parsed.rows { memcpy(block.row(i), buffer + parsed.dataOffset + i * rb, rb) }
}
