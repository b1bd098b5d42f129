#if canImport(Glibc)
import Glibc
#endif
import CHLA

/// Versioned, little-endian, checksummed byte form of state rows and summary rows (docs/state-layout.md):
///   magic "HLASTATE" | "HLASUMRY" (8) · format version u32 · header bytes u32 ·
///   op, masked, normalize, state dtype (4 × i32) · heads, kv_heads, dk, dv (4 × i64) ·
///   scale, decay, ridge, eps (4 × f64) · rows i64 · elements per row i64 ·
///   summaries only: the length of each row's segment (rows × i64) ·
///   the rows' elements (rows × n, f32/f64) · checksum u64 of every preceding byte.
/// Accepted bytes are canonical (re-serializing them reproduces them exactly). Statistics are plain numbers
/// and are not inspected: non-finite values (a state after a NaN input) round-trip like any others.
/// The checksum runs eight independent 64-bit lanes h ← (h ⊕ word) · P (P odd) and folds them the same way:
/// each step is a bijection of h for a fixed word and of the word for a fixed h, so any single changed byte
/// changes the checksum; eight lanes keep it at memory speed.
enum Serial {
    static let version: UInt32 = 2
    static let headerBytes = 8 + 4 + 4 + 4 * 4 + 4 * 8 + 4 * 8 + 8 + 8
    static let prime: UInt64 = 0x0000_0100_0000_01b3

    static func size(rows: Int, n: Int, es: Int, summary: Bool) throws(HLAError) -> Int {
        let data = try checkedMul(try checkedMul(rows, n, "serialized size"), es, "serialized size")
        let lengths = summary ? try checkedMul(rows, 8, "serialized size") : 0
        return try checkedAdd(try checkedAdd(headerBytes + 8, data, "serialized size"), lengths, "serialized size")
    }

    static func checksum(_ p: UnsafeRawPointer, _ n: Int) -> UInt64 {
        var h0: UInt64 = 0xcbf2_9ce4_8422_2325, h1: UInt64 = 0x84222325cbf29ce4, h2: UInt64 = 0x9e37_79b9_7f4a_7c15
        var h3: UInt64 = 0xbf58_476d_1ce4_e5b9, h4: UInt64 = 0x94d0_49bb_1331_11eb, h5: UInt64 = 0x2545_f491_4f6c_dd1d
        var h6: UInt64 = 0x27bb_2ee6_87b0_b0fd, h7: UInt64 = 0x6a09_e667_f3bc_c909
        var o = 0
        while o + 64 <= n {
            h0 = (h0 ^ p.loadUnaligned(fromByteOffset: o, as: UInt64.self)) &* prime
            h1 = (h1 ^ p.loadUnaligned(fromByteOffset: o + 8, as: UInt64.self)) &* prime
            h2 = (h2 ^ p.loadUnaligned(fromByteOffset: o + 16, as: UInt64.self)) &* prime
            h3 = (h3 ^ p.loadUnaligned(fromByteOffset: o + 24, as: UInt64.self)) &* prime
            h4 = (h4 ^ p.loadUnaligned(fromByteOffset: o + 32, as: UInt64.self)) &* prime
            h5 = (h5 ^ p.loadUnaligned(fromByteOffset: o + 40, as: UInt64.self)) &* prime
            h6 = (h6 ^ p.loadUnaligned(fromByteOffset: o + 48, as: UInt64.self)) &* prime
            h7 = (h7 ^ p.loadUnaligned(fromByteOffset: o + 56, as: UInt64.self)) &* prime
            o += 64
        }
        while o < n { h0 = (h0 ^ UInt64(p.load(fromByteOffset: o, as: UInt8.self))) &* prime; o += 1 }
        var h = UInt64(n)
        for x in [h0, h1, h2, h3, h4, h5, h6, h7] { h = (h ^ x) &* prime }
        return h
    }

    /// Write the header, lengths and rows of `block` (count rows) into `out` (size(...) bytes).
    static func write(_ c: Config, summary: Bool, block: Engine.Block, count: Int, lengths: [Int],
                      to out: UnsafeMutableRawPointer) {
        var o = 0
        func put(_ v: UInt64, _ bytes: Int) {
            for i in 0..<bytes { out.storeBytes(of: UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))), toByteOffset: o + i, as: UInt8.self) }
            o += bytes
        }
        for ch in (summary ? "HLASUMRY" : "HLASTATE").utf8 { out.storeBytes(of: ch, toByteOffset: o, as: UInt8.self); o += 1 }
        put(UInt64(version), 4); put(UInt64(headerBytes), 4)
        for v in [c.op.rawValue, c.masked ? 1 : 0, c.normalize ? 1 : 0, block.view.dtype.rawValue] { put(UInt64(UInt32(bitPattern: v)), 4) }
        for v in [c.heads, c.kvHeads, c.dk, c.dv] { put(UInt64(bitPattern: Int64(v)), 8) }
        for v in [c.scale, c.decay, c.ridge, c.eps] { put(v.bitPattern, 8) }
        put(UInt64(count), 8); put(UInt64(block.n), 8)
        if summary { for l in lengths { put(UInt64(bitPattern: Int64(l)), 8) } }
        let rb = block.rowBytes
        for i in 0..<count { memcpy(out + o, block.row(i), rb); o += rb }   // little-endian host
        put(checksum(out, o), 8)
    }

    /// A verified serialized object: configuration, dtype, rows, lengths, and where its elements start.
    struct Parsed {
        let cfg: hla_config
        let config: Config
        let dtype: DType
        let rows: Int, n: Int
        let lengths: [Int]
        let dataOffset: Int
    }

    static func read(_ p: UnsafeRawPointer, _ size: Int, summary: Bool) throws(HLAError) -> Parsed {
        let what = summary ? "summary" : "state"
        guard size >= headerBytes + 8 else { throw .corrupt("serialized \(what) truncated: \(size) bytes, the header needs \(headerBytes + 8)") }
        var o = 8
        func get(_ bytes: Int) -> UInt64 {
            var v: UInt64 = 0
            for i in 0..<bytes { v |= UInt64(p.load(fromByteOffset: o + i, as: UInt8.self)) << (8 * UInt64(i)) }
            o += bytes
            return v
        }
        let magic = String(decoding: UnsafeRawBufferPointer(start: p, count: 8), as: UTF8.self)
        guard magic == (summary ? "HLASUMRY" : "HLASTATE") else { throw .corrupt("serialized \(what): bad magic (not a serialized hla \(what))") }
        let ver = UInt32(get(4))
        guard ver == version else { throw .corrupt("serialized \(what): format version \(ver), this library reads version \(version)") }
        guard get(4) == UInt64(headerBytes) else { throw .corrupt("serialized \(what): header size field is wrong") }
        guard p.loadUnaligned(fromByteOffset: size - 8, as: UInt64.self) == checksum(p, size - 8) else {
            throw .corrupt("serialized \(what): checksum mismatch (truncated or changed bytes)")
        }
        var c = Config.defaults()
        c.op = Int32(bitPattern: UInt32(get(4))); c.masked = Int32(bitPattern: UInt32(get(4)))
        c.normalize = Int32(bitPattern: UInt32(get(4)))
        let dt = Int32(bitPattern: UInt32(get(4)))
        c.heads = Int64(bitPattern: get(8)); c.kv_heads = Int64(bitPattern: get(8))
        c.dk = Int64(bitPattern: get(8)); c.dv = Int64(bitPattern: get(8))
        c.scale = Double(bitPattern: get(8)); c.decay = Double(bitPattern: get(8))
        c.ridge = Double(bitPattern: get(8)); c.eps = Double(bitPattern: get(8))
        let rows = Int64(bitPattern: get(8)), n = Int64(bitPattern: get(8))
        // Accepted bytes are canonical: the writer stores kv_heads resolved (never the "0 means heads"
        // shorthand of hla_config), so re-serializing them reproduces them byte for byte.
        guard c.kv_heads != 0 else { throw .corrupt("serialized \(what): kv_heads = 0 (the writer stores it resolved)") }
        let cfg: Config
        do { cfg = try Config(c) } catch { throw .corrupt("serialized \(what): invalid configuration (\(error.message))") }
        guard dt == DType.float32.rawValue || dt == DType.float64.rawValue, let dtype = DType(rawValue: dt) else {
            throw .corrupt("serialized \(what): element type \(dt) is not float32 or float64")
        }
        let want = Engine.elements(cfg, summary: summary)
        guard n == Int64(want) else { throw .corrupt("serialized \(what): \(n) elements per row, the configuration has \(want)") }
        guard rows >= 0, rows <= Int64(Int.max / 16) else { throw .corrupt("serialized \(what): row count \(rows)") }
        let expect: Int
        do { expect = try Serial.size(rows: Int(rows), n: want, es: dtype.size, summary: summary) } catch { throw .corrupt("serialized \(what): sizes overflow") }
        guard size == expect else { throw .corrupt("serialized \(what): \(size) bytes, its header describes \(expect)") }
        var lengths: [Int] = []
        if summary {
            for i in 0..<Int(rows) {
                let l = Int64(bitPattern: get(8))
                guard l >= 0, l <= Int64(Int.max / 16) else { throw .corrupt("serialized summary: row \(i) has length \(l)") }
                lengths.append(Int(l))
            }
        }
        c.struct_size = UInt32(Config.structSize)
        return Parsed(cfg: c, config: cfg, dtype: dtype, rows: Int(rows), n: want, lengths: lengths, dataOffset: o)
    }
}
