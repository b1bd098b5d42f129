import CHLA

/// Which operator (docs/spec.md §2).
enum OpKind: Int32, Sendable {
    case hla2 = 0, ahla = 1, hla3 = 2
    var name: String { ["hla2", "ahla", "hla3"][Int(rawValue)] }
}

/// A validated configuration: every field checked, every size product known not to overflow.
struct Config: Equatable, Sendable {
    var op: OpKind
    var masked: Bool
    var normalize: Bool
    var heads: Int
    var kvHeads: Int
    var dk: Int
    var dv: Int
    var scale: Double
    var decay: Double
    var ridge: Double
    var eps: Double
    var chunkSize: Int  // 0 = automatic
    var checkpointEvery: Int  // chunks between the backward's kept carries; 0 = automatic (⌈√chunks⌉)

    /// Width of the value rows the kernels carry: the values plus a column of ones when normalizing.
    var dvp: Int { dv + (normalize ? 1 : 0) }
    /// Query heads per kv head.
    var group: Int { heads / kvHeads }
    /// Largest dimension accepted for any single size (keeps every derived product far from overflow
    /// once the products below are checked).
    static let maxDim = 1 << 24
    /// Longest chunk the chunked and scan paths use; a larger chunk_size acts as this.
    static let maxChunk = 1024

    static let structSize = MemoryLayout<hla_config>.size
    /// Size of the hla_config of headers 1.0 and 1.1 (up to chunk_size): accepted, the later fields taken as 0.
    static let structSize1_0 = MemoryLayout<hla_config>.offset(of: \hla_config.checkpoint_every)!

    static func defaults() -> hla_config {
        hla_config(struct_size: UInt32(structSize), op: HLA_OP_HLA2.rawValue.asInt32, masked: 1, normalize: 0,
                   heads: 1, kv_heads: 0, dk: 64, dv: 64,
                   scale: 1.0, decay: 1.0, ridge: 0.0, eps: 1e-6, chunk_size: 0, checkpoint_every: 0)
    }

    /// Read a caller's struct: `struct_size` must cover at least the fields of header 1.0 (those of a later
    /// header it lacks are taken as 0); fields of a newer header that this library does not know must be zero.
    init(_ p: UnsafePointer<hla_config>) throws(HLAError) {
        let size = try Config.callerSize(Int(p.pointee.struct_size), "config.struct_size")
        let raw = UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self)
        for i in min(size, Config.structSize)..<size where raw[i] != 0 {
            throw .invalid("config has nonzero fields unknown to libhla \(hlaVersionString) (byte \(i) of \(size))")
        }
        var c = hla_config()   // all zero: the fields an older caller's struct lacks
        withUnsafeMutableBytes(of: &c) { $0.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: min(size, Config.structSize))) }
        try self.init(c)
    }

    /// A caller's `struct_size` when it is one an hla_config can have: header 1.0's, or this header's up to 64 KiB.
    static func callerSize(_ size: Int, _ what: String) throws(HLAError) -> Int {
        guard size == Config.structSize1_0 || (size >= Config.structSize && size <= 1 << 16) else {
            throw .invalid("\(what) = \(size): an hla_config has \(Config.structSize) bytes (\(Config.structSize1_0) for headers 1.0 and 1.1); initialise it with hla_config_init(&cfg, sizeof cfg)")
        }
        return size
    }

    init(_ c: hla_config) throws(HLAError) {
        guard let op = OpKind(rawValue: c.op) else { throw .invalid("config.op = \(c.op) is not an hla_op (0 hla2, 1 ahla, 2 hla3)") }
        guard c.masked == 0 || c.masked == 1 else { throw .invalid("config.masked = \(c.masked) must be 0 or 1") }
        guard c.normalize == 0 || c.normalize == 1 else { throw .invalid("config.normalize = \(c.normalize) must be 0 or 1") }
        func dim(_ v: Int64, _ name: String) throws(HLAError) -> Int {
            guard v >= 1 else { throw .invalid("config.\(name) = \(v) must be >= 1") }
            guard v <= Int64(Config.maxDim) else { throw .overflow("config.\(name) = \(v) exceeds the supported maximum \(Config.maxDim)") }
            return Int(v)
        }
        let heads = try dim(c.heads, "heads")
        let kvHeads: Int
        if c.kv_heads == 0 { kvHeads = heads } else { kvHeads = try dim(c.kv_heads, "kv_heads") }
        guard heads % kvHeads == 0 else { throw .invalid("config.heads = \(heads) is not a multiple of config.kv_heads = \(kvHeads)") }
        let dk = try dim(c.dk, "dk")
        let dv = try dim(c.dv, "dv")
        guard c.scale.isFinite else { throw .invalid("config.scale = \(c.scale) must be finite") }
        guard c.decay.isFinite, c.decay > 0, c.decay <= 1 else { throw .invalid("config.decay = \(c.decay) must lie in (0, 1]") }
        guard c.eps.isFinite, c.eps > 0 else { throw .invalid("config.eps = \(c.eps) must be finite and > 0") }
        guard c.ridge.isFinite, c.ridge >= 0 else { throw .invalid("config.ridge = \(c.ridge) must be finite and >= 0") }
        if c.ridge != 0 && op != .hla2 { throw .invalid("config.ridge = \(c.ridge) is only defined for op hla2, not \(op.name)") }
        guard c.chunk_size >= 0 else { throw .invalid("config.chunk_size = \(c.chunk_size) must be >= 0 (0 = automatic)") }
        guard c.checkpoint_every >= 0 else {
            throw .invalid("config.checkpoint_every = \(c.checkpoint_every) must be >= 0 (0 = automatic)")
        }
        self.op = op; self.masked = c.masked == 1; self.normalize = c.normalize == 1
        self.heads = heads; self.kvHeads = kvHeads; self.dk = dk; self.dv = dv
        self.scale = c.scale; self.decay = c.decay; self.ridge = c.ridge; self.eps = c.eps
        // Chunks longer than maxChunk only cost memory (n × n blocks); the result is the same.
        self.chunkSize = Int(min(c.chunk_size, Int64(Config.maxChunk)))
        self.checkpointEvery = Int(c.checkpoint_every)
        // Every size the engine forms is bounded by these products; check them once here.
        let d = max(dk, dv + 1)
        let perHead = try checkedMul(try checkedMul(d, d, "dk·dv"), 8, "state per head")
        _ = try checkedMul(try checkedMul(perHead, heads + kvHeads, "state size"), 8, "state bytes")
    }
}

extension UInt32 { var asInt32: Int32 { Int32(bitPattern: self) } }
