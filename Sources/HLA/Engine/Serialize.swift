/// Versioned, little-endian, checksummed byte form of states and segments:
///   magic "HLASTATE" | "HLASEGMT" (8) · version u32 · reserved u32 (0) ·
///   op, dtype, masked, normalize (4 × i32) · batch, heads, kv_heads, dk, dv (5 × i64) ·
///   scale, decay, ridge, eps (4 × f64) · tokens i64 · element count u64 · elements (f32/f64) ·
///   FNV-1a 64 of every preceding byte (u64).
/// Any truncation or changed byte is rejected (FNV-1a's per-byte step is a bijection, so a single changed
/// byte always changes the checksum).
enum Serial {
    static let version: UInt32 = 1
    static let headerBytes = 8 + 4 + 4 + 4 * 4 + 5 * 8 + 4 * 8 + 8 + 8

    static func size(_ s: Stats) -> Int { headerBytes + s.nbytes + 8 }

    static func fnv1a(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for i in 0..<n { h = (h ^ UInt64(p[i])) &* 0x0000_0100_0000_01b3 }
        return h
    }

    static func write(_ s: Stats, to out: UnsafeMutablePointer<UInt8>) {
        var o = 0
        func put(_ v: UInt64, _ bytes: Int) { for i in 0..<bytes { out[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }; o += bytes }
        for ch in (s.kind == .state ? "HLASTATE" : "HLASEGMT").utf8 { out[o] = ch; o += 1 }
        put(UInt64(version), 4); put(0, 4)
        let c = s.cfg
        for v in [c.op.rawValue, c.dtype, c.masked ? 1 : 0, c.normalize ? 1 : 0] { put(UInt64(UInt32(bitPattern: v)), 4) }
        for v in [c.batch, c.heads, c.kvHeads, c.dk, c.dv] { put(UInt64(bitPattern: Int64(v)), 8) }
        for v in [c.scale, c.decay, c.ridge, c.eps] { put(v.bitPattern, 8) }
        put(UInt64(bitPattern: Int64(s.tokens)), 8)
        put(UInt64(s.elements), 8)
        if c.dtype == 0 {
            let p = s.typed(Float.self)
            for i in 0..<s.elements { put(UInt64(p[i].bitPattern), 4) }
        } else {
            let p = s.typed(Double.self)
            for i in 0..<s.elements { put(p[i].bitPattern, 8) }
        }
        put(fnv1a(out, o), 8)
    }

    static func read(_ p: UnsafePointer<UInt8>, _ n: Int, expect kind: Stats.Kind) throws(HLAError) -> Stats {
        let what = kind == .state ? "state" : "segment"
        guard n >= headerBytes + 8 else { throw .corrupt("serialized \(what) truncated: \(n) bytes, header needs \(headerBytes + 8)") }
        var o = 0
        func get(_ bytes: Int) -> UInt64 {
            var v: UInt64 = 0
            for i in 0..<bytes { v |= UInt64(p[o + i]) << (8 * UInt64(i)) }
            o += bytes
            return v
        }
        let magic = String(decoding: UnsafeBufferPointer(start: p, count: 8), as: UTF8.self)
        o = 8
        guard magic == (kind == .state ? "HLASTATE" : "HLASEGMT") else {
            throw .corrupt("serialized \(what): bad magic (not an hla \(what))")
        }
        let ver = UInt32(get(4))
        guard ver == version else { throw .corrupt("serialized \(what): version \(ver), this library reads version \(version)") }
        guard get(4) == 0 else { throw .corrupt("serialized \(what): reserved field not zero") }
        var c = Config.defaults()
        c.op = Int32(bitPattern: UInt32(get(4))); c.dtype = Int32(bitPattern: UInt32(get(4)))
        c.masked = Int32(bitPattern: UInt32(get(4))); c.normalize = Int32(bitPattern: UInt32(get(4)))
        c.batch = Int64(bitPattern: get(8)); c.heads = Int64(bitPattern: get(8)); c.kv_heads = Int64(bitPattern: get(8))
        c.dk = Int64(bitPattern: get(8)); c.dv = Int64(bitPattern: get(8))
        c.scale = Double(bitPattern: get(8)); c.decay = Double(bitPattern: get(8))
        c.ridge = Double(bitPattern: get(8)); c.eps = Double(bitPattern: get(8))
        let tokens = Int64(bitPattern: get(8))
        let count = get(8)
        let cfg: Config
        do { cfg = try Config(c) } catch { throw .corrupt("serialized \(what): invalid configuration (\(error.message))") }
        guard tokens >= 0 else { throw .corrupt("serialized \(what): negative token count") }
        let layout = kind == .state ? Layout.state(cfg) : Layout.summary(cfg)
        guard count == UInt64(layout.elements) else {
            throw .corrupt("serialized \(what): \(count) elements, configuration needs \(layout.elements)")
        }
        let es = cfg.dtype == 0 ? 4 : 8
        guard n == headerBytes + layout.elements * es + 8 else {
            throw .corrupt("serialized \(what): \(n) bytes, expected \(headerBytes + layout.elements * es + 8)")
        }
        o = n - 8
        let sum = get(8)
        guard sum == fnv1a(p, n - 8) else { throw .corrupt("serialized \(what): checksum mismatch") }
        let s = try Stats(kind, cfg)
        s.tokens = Int(tokens)
        o = headerBytes
        if es == 4 {
            let d = s.typed(Float.self)
            for i in 0..<layout.elements { d[i] = Float(bitPattern: UInt32(get(4))) }
        } else {
            let d = s.typed(Double.self)
            for i in 0..<layout.elements { d[i] = Double(bitPattern: get(8)) }
        }
        return s
    }
}
