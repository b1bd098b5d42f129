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

let stateTag: UInt64 = 0x4854_4154_5341_4c48   // "HLASTATH" (little-endian bytes)
let segmentTag: UInt64 = 0x4847_4553_5341_4c48 // "HLASSEGH"

/// Wrap a Stats object in a new C handle (retained; released by the destroy entry points).
func makeHandle(_ s: Stats, tag: UInt64) throws(HLAError) -> UnsafeMutableRawPointer {
    guard let p = malloc(16) else { throw .noMemory(16) }
    let h = p.assumingMemoryBound(to: UInt64.self)
    h[0] = tag
    (p + 8).storeBytes(of: Unmanaged.passRetained(s).toOpaque(), as: UnsafeMutableRawPointer.self)
    return p
}

/// The Stats behind a handle, after checking it is a live handle of the expected kind.
func object(_ p: UnsafeRawPointer?, tag: UInt64, name: String) throws(HLAError) -> Stats {
    guard let p else { throw .null(name) }
    guard p.load(as: UInt64.self) == tag else {
        throw .invalid("\(name) is not a live \(tag == stateTag ? "hla_state" : "hla_segment") handle")
    }
    let impl = p.load(fromByteOffset: 8, as: UnsafeMutableRawPointer.self)
    return Unmanaged<Stats>.fromOpaque(impl).takeUnretainedValue()
}

func destroyHandle(_ p: UnsafeMutableRawPointer?, tag: UInt64) {
    guard let p, p.load(as: UInt64.self) == tag else { return }
    let impl = p.load(fromByteOffset: 8, as: UnsafeMutableRawPointer.self)
    Unmanaged<Stats>.fromOpaque(impl).release()
    p.storeBytes(of: 0, as: UInt64.self)
    free(p)
}

func config(_ p: UnsafePointer<hla_config>?, name: String = "cfg") throws(HLAError) -> Config {
    guard let p else { throw .null(name) }
    return try Config(p.pointee)
}

func tokens(_ n: Int64) throws(HLAError) -> Int {
    guard n >= 1 else { throw .invalid("T = \(n) must be >= 1") }
    guard n <= Int64(Int.max / 16) else { throw .overflow("T = \(n)") }
    return Int(n)
}

func serialize(_ s: Stats, _ buffer: UnsafeMutableRawPointer?, _ capacity: UInt, _ written: UnsafeMutablePointer<UInt>?) throws(HLAError) {
    guard let written else { throw .null("written") }
    let need = Serial.size(s)
    written.pointee = UInt(need)
    if buffer == nil && capacity == 0 { return }
    guard let buffer else { throw .null("buffer") }
    guard capacity >= UInt(need) else {
        throw HLAError(status: HLA_ERR_BUFFER_TOO_SMALL, message: "buffer of \(capacity) bytes, \(need) needed")
    }
    Serial.write(s, to: buffer.assumingMemoryBound(to: UInt8.self))
}

func deserialize(_ buffer: UnsafeRawPointer?, _ size: UInt, kind: Stats.Kind) throws(HLAError) -> Stats {
    guard let buffer else { throw .null("buffer") }
    guard size <= UInt(Int.max / 2) else { throw .corrupt("size = \(size) is not the size of any serialized object") }
    return try Serial.read(buffer.assumingMemoryBound(to: UInt8.self), Int(size), expect: kind)
}
