// Shared helpers of the HLATests suite: a seeded normal RNG, problems in the [B, T, H, D] layout,
// caller-owned memory described by hla_tensor, thin wrappers around the C entry points (called directly
// from Swift) and the error metric of SPEC §4.
import CHLA
import XCTest
@testable import HLA

// MARK: - Random numbers

/// SplitMix64 with Box–Muller normals: deterministic across platforms and runs.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in (0, 1).
    mutating func uniform() -> Double { (Double(next() >> 11) + 0.5) / 9_007_199_254_740_992.0 }
    private var spare: Double? = nil
    mutating func normal() -> Double {
        if let s = spare { spare = nil; return s }
        let u1 = uniform(), u2 = uniform()
        let r = (-2 * Foundation.log(u1)).squareRoot(), th = 2 * Double.pi * u2
        spare = r * Foundation.sin(th)
        return r * Foundation.cos(th)
    }
    mutating func normals(_ n: Int) -> [Double] { (0..<n).map { _ in normal() } }
}

// MARK: - Element types

let F32 = HLA_FLOAT32.rawValue.asInt32
let F64 = HLA_FLOAT64.rawValue.asInt32
let BF16 = HLA_BFLOAT16.rawValue.asInt32
let F16 = HLA_FLOAT16.rawValue.asInt32
let I64 = HLA_INT64.rawValue.asInt32
let I32 = HLA_INT32.rawValue.asInt32
let dtypeName: [Int32: String] = [F32: "float32", F64: "float64", BF16: "bfloat16", F16: "float16", I64: "int64", I32: "int32"]
/// Element type of states and summaries for inputs of `dtype` (SPEC §1, §7).
func stateType(_ dtype: Int32) -> Int32 { dtype == F64 ? F64 : F32 }

/// A floating element of q, k, v and outputs, converted from and to double.
protocol Elem: SendableMetatype { static var dtype: Int32 { get }; init(_ d: Double); var d: Double { get }; static var nan: Self { get } }
extension Float: Elem { static var dtype: Int32 { F32 }; var d: Double { Double(self) } }
extension Double: Elem { static var dtype: Int32 { F64 }; var d: Double { self } }
extension Float16: Elem { static var dtype: Int32 { F16 }; var d: Double { Double(self) } }
/// bfloat16 storage (the top half of a float32), written by the test itself: nearest-even from float32.
struct BFloat16: Elem {
    var bits: UInt16
    static var dtype: Int32 { BF16 }
    init(bits: UInt16) { self.bits = bits }
    init(_ d: Double) {
        let f = Float(d), b = f.bitPattern
        bits = f.isNaN ? 0x7FC0 : UInt16(truncatingIfNeeded: (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
    }
    var d: Double { Double(Float(bitPattern: UInt32(bits) << 16)) }
    static var nan: BFloat16 { BFloat16(bits: 0x7FC0) }
}

/// `x` rounded to the floating dtype `dtype` (the value a call with that input type sees).
func rounded(_ x: Double, _ dtype: Int32) -> Double {
    switch dtype {
    case F32: return Double(Float(x))
    case BF16: return BFloat16(x).d
    case F16: return Double(Float16(x))
    default: return x
    }
}

// MARK: - Problems

struct Shape: CustomStringConvertible {
    var B = 2, T = 13, H = 4, Hkv = 2, dk = 5, dv = 3
    var group: Int { H / Hkv }
    var description: String { "B=\(B) T=\(T) H=\(H) Hkv=\(Hkv) dk=\(dk) dv=\(dv)" }
}

/// One input sequence, contiguous [B, T, H, D] (q, output) and [B, T, Hkv, D] (k, v), in double.
struct Problem {
    var s: Shape
    var q: [Double], k: [Double], v: [Double]

    init(_ s: Shape, seed: UInt64) {
        self.s = s
        var r = SplitMix64(seed: seed)
        q = r.normals(s.B * s.T * s.H * s.dk)
        k = r.normals(s.B * s.T * s.Hkv * s.dk)
        v = r.normals(s.B * s.T * s.Hkv * s.dv)
    }
    /// The same inputs rounded to `dtype` (so a float64 evaluation sees exactly what a call of that type sees).
    func rounded(to dtype: Int32) -> Problem {
        var p = self
        p.q = q.map { HLATests.rounded($0, dtype) }; p.k = k.map { HLATests.rounded($0, dtype) }
        p.v = v.map { HLATests.rounded($0, dtype) }
        return p
    }
    func roundedToFloat() -> Problem { rounded(to: F32) }
    @inline(__always) func qv(_ b: Int, _ t: Int, _ h: Int, _ a: Int) -> Double { q[((b * s.T + t) * s.H + h) * s.dk + a] }
    @inline(__always) func kv(_ b: Int, _ t: Int, _ g: Int, _ a: Int) -> Double { k[((b * s.T + t) * s.Hkv + g) * s.dk + a] }
    @inline(__always) func vv(_ b: Int, _ t: Int, _ g: Int, _ x: Int) -> Double { v[((b * s.T + t) * s.Hkv + g) * s.dv + x] }
    /// Index of output element (b, t, h, x).
    @inline(__always) func oi(_ b: Int, _ t: Int, _ h: Int, _ x: Int) -> Int { ((b * s.T + t) * s.H + h) * s.dv + x }
    var outCount: Int { s.B * s.T * s.H * s.dv }
    /// Strides (elements) of the full-length tensors, used for sub-sequences read in place.
    var qStrides: [Int] { [s.T * s.H * s.dk, s.H * s.dk, s.dk, 1] }
    var kStrides: [Int] { [s.T * s.Hkv * s.dk, s.Hkv * s.dk, s.dk, 1] }
    var vStrides: [Int] { [s.T * s.Hkv * s.dv, s.Hkv * s.dv, s.dv, 1] }
    var oStrides: [Int] { [s.T * s.H * s.dv, s.H * s.dv, s.dv, 1] }

    /// Tokens [t0, t1) of batch row b as a problem of its own (B = 1).
    func slice(batch b: Int, _ t0: Int, _ t1: Int) -> Problem {
        var p = self
        p.s.B = 1; p.s.T = t1 - t0
        p.q = []; p.k = []; p.v = []
        for t in t0..<t1 {
            for h in 0..<s.H { for a in 0..<s.dk { p.q.append(qv(b, t, h, a)) } }
            for g in 0..<s.Hkv { for a in 0..<s.dk { p.k.append(kv(b, t, g, a)) } }
            for g in 0..<s.Hkv { for x in 0..<s.dv { p.v.append(vv(b, t, g, x)) } }
        }
        return p
    }
    /// Batch rows concatenated in time into one packed sequence (B = 1, T = Σ T_i), with their cu_seqlens.
    static func pack(_ ps: [Problem]) -> (Problem, [Int]) {
        var p = ps[0]
        p.s.B = 1; p.s.T = ps.map { $0.s.B * $0.s.T }.reduce(0, +)
        p.q = ps.flatMap { $0.q }; p.k = ps.flatMap { $0.k }; p.v = ps.flatMap { $0.v }
        var cu = [0]
        for x in ps { for _ in 0..<x.s.B { cu.append(cu.last! + x.s.T) } }
        return (p, cu)
    }
}

/// Operator options of one test case.
struct Options: CustomStringConvertible {
    var op: Int32 = 0            // hla_op
    var masked = true
    var normalize = false
    var decay = 1.0
    var ridge = 0.0
    var eps = 1e-6
    var chunk: Int64 = 0
    var scale: Double? = nil     // default dk^-0.5
    var opName: String { ["hla2", "ahla", "hla3"][Int(op)] }
    var description: String {
        "\(opName) masked=\(masked) normalize=\(normalize) decay=\(decay) ridge=\(ridge) chunk=\(chunk)"
    }
}

let configSize = UInt(MemoryLayout<hla_config>.size)

func makeConfig(_ s: Shape, _ o: Options) -> hla_config {
    var c = hla_config()
    XCTAssertEqual(hla_config_init(&c, configSize), HLA_OK)
    c.op = o.op; c.masked = o.masked ? 1 : 0; c.normalize = o.normalize ? 1 : 0
    c.heads = Int64(s.H); c.kv_heads = Int64(s.Hkv); c.dk = Int64(s.dk); c.dv = Int64(s.dv)
    c.scale = o.scale ?? 1 / Double(s.dk).squareRoot()
    c.decay = o.decay; c.ridge = o.ridge; c.eps = o.eps; c.chunk_size = o.chunk
    return c
}

let opHLA2 = HLA_OP_HLA2.rawValue.asInt32
let opAHLA = HLA_OP_AHLA.rawValue.asInt32
let opHLA3 = HLA_OP_HLA3.rawValue.asInt32
let allOps: [Int32] = [opHLA2, opAHLA, opHLA3]

func lastError() -> String { String(cString: hla_last_error()) }
func statusName(_ st: hla_status) -> String { String(cString: hla_status_string(st)) }

func check(_ st: hla_status, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(st, HLA_OK, "\(what): \(statusName(st)) \(lastError())", file: file, line: line)
}

// MARK: - Caller memory and tensors

/// Memory at a fixed address for the lifetime of the object (tensors keep their owner alive).
final class Buf<E>: @unchecked Sendable {
    let p: UnsafeMutablePointer<E>
    let count: Int
    init(_ count: Int, fill: E) {
        self.count = count
        p = .allocate(capacity: max(count, 1))
        p.initialize(repeating: fill, count: max(count, 1))
    }
    convenience init(_ a: [E]) {
        precondition(!a.isEmpty)
        self.init(a.count, fill: a[0])
        for i in 0..<a.count { p[i] = a[i] }
    }
    deinit { p.deallocate() }
    subscript(i: Int) -> E { get { p[i] } set { p[i] = newValue } }
    var array: [E] { Array(UnsafeBufferPointer(start: p, count: count)) }
    var raw: UnsafeMutableRawPointer { UnsafeMutableRawPointer(p) }
}
extension Buf where E: Elem {
    var doubles: [Double] { array.map { $0.d } }
}

func setTuple(_ tup: inout (Int64, Int64, Int64, Int64), _ vals: [Int]) {
    withUnsafeMutableBytes(of: &tup) { b in
        let q = b.bindMemory(to: Int64.self)
        for i in 0..<min(vals.count, 4) { q[i] = Int64(vals[i]) }
    }
}

/// An hla_tensor at a fixed address (for the C calls) that keeps the memory it describes alive.
final class Tn: @unchecked Sendable {
    let ptr: UnsafeMutablePointer<hla_tensor>
    let owner: AnyObject?
    /// `data` with element `dtype`, `shape` and element `strides` (nil = C-contiguous).
    init(_ data: UnsafeMutableRawPointer?, _ dtype: Int32, _ shape: [Int], strides: [Int]? = nil, owner: AnyObject?) {
        var t = hla_tensor()
        t.data = data; t.dtype = dtype; t.ndim = Int32(shape.count)
        var st = strides ?? []
        if strides == nil {
            var run = 1
            st = [Int](repeating: 0, count: shape.count)
            for i in stride(from: shape.count - 1, through: 0, by: -1) { st[i] = run; run *= max(shape[i], 1) }
        }
        setTuple(&t.shape, shape); setTuple(&t.strides, st)
        ptr = .allocate(capacity: 1)
        ptr.initialize(to: t)
        self.owner = owner
    }
    deinit { ptr.deallocate() }
    var p: UnsafePointer<hla_tensor> { UnsafePointer(ptr) }
    func setShape(_ i: Int, _ v: Int64) { withUnsafeMutableBytes(of: &ptr.pointee.shape) { $0.bindMemory(to: Int64.self)[i] = v } }
    func setStride(_ i: Int, _ v: Int64) { withUnsafeMutableBytes(of: &ptr.pointee.strides) { $0.bindMemory(to: Int64.self)[i] = v } }
}

/// Keep objects (tensors, their memory) alive up to this point: call it after the last C call that uses them.
func keepAlive(_ xs: Any...) { withExtendedLifetime(xs) {} }

/// Tensor over `b` starting `offset` elements in.
func tensor<E>(_ b: Buf<E>, _ dtype: Int32, _ shape: [Int], strides: [Int]? = nil, offset: Int = 0) -> Tn {
    Tn(UnsafeMutableRawPointer(b.p + offset), dtype, shape, strides: strides, owner: b)
}

/// An int64 (or int32) index tensor [count] holding `v`.
func idx(_ v: [Int], _ dtype: Int32 = I64) -> Tn {
    if dtype == I32 {
        let b = Buf<Int32>(max(v.count, 1), fill: 0)
        for (i, x) in v.enumerated() { b[i] = Int32(truncatingIfNeeded: x) }
        return tensor(b, I32, [v.count])
    }
    let b = Buf<Int64>(max(v.count, 1), fill: 0)
    for (i, x) in v.enumerated() { b[i] = Int64(x) }
    return tensor(b, dtype, [v.count])
}

/// Rows of states ([slots, n]) or summaries ([N, m], with int64 lengths) in caller memory, float32 or float64.
final class RowBuf: @unchecked Sendable {
    let dtype: Int32
    let rows: Int, n: Int
    let mem: Buf<UInt8>
    let lengths: Buf<Int64>
    var es: Int { dtype == F64 ? 8 : 4 }
    init(dtype: Int32, rows: Int, n: Int, fill: Double = 0) {
        precondition(dtype == F32 || dtype == F64)
        self.dtype = dtype; self.rows = rows; self.n = n
        mem = Buf<UInt8>(rows * n * (dtype == F64 ? 8 : 4), fill: 0)
        lengths = Buf<Int64>(max(rows, 1), fill: -1)
        if fill != 0 { for i in 0..<(rows * n) { self[i] = fill } }
    }
    subscript(i: Int) -> Double {
        get { dtype == F64 ? mem.raw.load(fromByteOffset: 8 * i, as: Double.self) : Double(mem.raw.load(fromByteOffset: 4 * i, as: Float.self)) }
        set {
            if dtype == F64 { mem.raw.storeBytes(of: newValue, toByteOffset: 8 * i, as: Double.self) }
            else { mem.raw.storeBytes(of: Float(newValue), toByteOffset: 4 * i, as: Float.self) }
        }
    }
    var values: [Double] { (0..<(rows * n)).map { self[$0] } }
    func row(_ r: Int) -> [Double] { (0..<n).map { self[r * n + $0] } }
    func rows(_ rs: [Int]) -> [Double] { rs.flatMap { row($0) } }
    func setRow(_ r: Int, _ v: [Double]) { for j in 0..<n { self[r * n + j] = v[j] } }
    /// The raw bytes of every row (bit-exact comparisons).
    var bytes: [UInt8] { mem.array }
    func rowBytes(_ r: Int) -> [UInt8] { Array(mem.array[(r * n * es)..<((r + 1) * n * es)]) }
    var tensor: Tn { Tn(mem.raw, dtype, [rows, n], owner: self) }
    var lengthsTensor: Tn { Tn(lengths.raw, I64, [rows], owner: self) }
    var lengthValues: [Int] { (0..<rows).map { Int(lengths[$0]) } }
    /// A copy in fresh memory.
    func copy() -> RowBuf {
        let r = RowBuf(dtype: dtype, rows: rows, n: n)
        memcpy(r.mem.raw, mem.raw, rows * n * es)
        for i in 0..<rows { r.lengths[i] = lengths[i] }
        return r
    }
}

func stateElements(_ cfg: hla_config, file: StaticString = #filePath, line: UInt = #line) -> Int {
    var c = cfg, n: Int64 = -1
    check(hla_state_elements(&c, &n), "hla_state_elements", file: file, line: line)
    return Int(n)
}
func summaryElements(_ cfg: hla_config, file: StaticString = #filePath, line: UInt = #line) -> Int {
    var c = cfg, n: Int64 = -1
    check(hla_summary_elements(&c, &n), "hla_summary_elements", file: file, line: line)
    return Int(n)
}
/// A zero state of `slots` rows for inputs of `dtype` (the zero prefix).
func newState(_ cfg: hla_config, dtype: Int32, slots: Int) -> RowBuf {
    RowBuf(dtype: stateType(dtype), rows: slots, n: stateElements(cfg))
}
func newSummary(_ cfg: hla_config, dtype: Int32, rows: Int) -> RowBuf {
    RowBuf(dtype: stateType(dtype), rows: rows, n: summaryElements(cfg), fill: .nan)
}

// MARK: - Wrappers of the C entry points (tensors by Tn; nil passes NULL)

func cForward(_ cfg: hla_config, _ path: Int32, _ q: Tn?, _ k: Tn?, _ v: Tn?, _ out: Tn?, cu: Tn? = nil,
              initial: Tn? = nil, final: Tn? = nil, rows: Tn? = nil) -> hla_status {
    var c = cfg
    return hla_forward(&c, path, q?.p, k?.p, v?.p, out?.p, cu?.p, initial?.p, final?.p, rows?.p)
}
func cStep(_ cfg: hla_config, _ q: Tn?, _ k: Tn?, _ v: Tn?, _ out: Tn?, state: Tn?, rows: Tn? = nil) -> hla_status {
    var c = cfg
    return hla_step(&c, q?.p, k?.p, v?.p, out?.p, state?.p, rows?.p)
}
func cReference(_ cfg: hla_config, _ q: Tn?, _ k: Tn?, _ v: Tn?, _ out: Tn?, cu: Tn? = nil) -> hla_status {
    var c = cfg
    return hla_reference(&c, q?.p, k?.p, v?.p, out?.p, cu?.p)
}
func cSummarize(_ cfg: hla_config, _ q: Tn?, _ k: Tn?, _ v: Tn?, cu: Tn? = nil, summary: Tn?, lengths: Tn?) -> hla_status {
    var c = cfg
    return hla_summarize(&c, q?.p, k?.p, v?.p, cu?.p, summary?.p, lengths?.p)
}
func cCombine(_ cfg: hla_config, _ a: Tn?, _ al: Tn?, _ b: Tn?, _ bl: Tn?, _ r: Tn?, _ rl: Tn?) -> hla_status {
    var c = cfg
    return hla_summary_combine(&c, a?.p, al?.p, b?.p, bl?.p, r?.p, rl?.p)
}
func cSummaryToState(_ cfg: hla_config, _ s: Tn?, _ state: Tn?, rows: Tn? = nil) -> hla_status {
    var c = cfg
    return hla_summary_to_state(&c, s?.p, state?.p, rows?.p)
}
func cReset(_ cfg: hla_config, _ state: Tn?, rows: Tn? = nil) -> hla_status {
    var c = cfg
    return hla_state_reset_rows(&c, state?.p, rows?.p)
}
func cCopyRows(_ cfg: hla_config, _ state: Tn?, _ src: Tn?, _ dst: Tn?) -> hla_status {
    var c = cfg
    return hla_state_copy_rows(&c, state?.p, src?.p, dst?.p)
}

/// Summaries a·b row by row, into fresh memory (with lengths).
func combine(_ cfg: hla_config, _ a: RowBuf, _ b: RowBuf, file: StaticString = #filePath, line: UInt = #line) -> RowBuf {
    let r = RowBuf(dtype: a.dtype, rows: a.rows, n: a.n, fill: .nan)
    check(cCombine(cfg, a.tensor, a.lengthsTensor, b.tensor, b.lengthsTensor, r.tensor, r.lengthsTensor),
          "hla_summary_combine", file: file, line: line)
    return r
}
/// The state rows 0..<N of summary rows (the carry-in after each segment), in fresh memory.
func stateFrom(_ cfg: hla_config, _ s: RowBuf, file: StaticString = #filePath, line: UInt = #line) -> RowBuf {
    let st = RowBuf(dtype: s.dtype, rows: s.rows, n: stateElements(cfg), fill: .nan)
    check(cSummaryToState(cfg, s.tensor, st.tensor), "hla_summary_to_state", file: file, line: line)
    return st
}

func serializeState(_ cfg: hla_config, _ s: RowBuf, rows: [Int]? = nil, file: StaticString = #filePath, line: UInt = #line) -> [UInt8] {
    var c = cfg
    let st = s.tensor, r = rows.map { idx($0) }
    var need: UInt = 0
    check(hla_state_serialize(&c, st.p, r?.p, nil, 0, &need), "state size query", file: file, line: line)
    var buf = [UInt8](repeating: 0, count: Int(need))
    var w: UInt = 0
    check(buf.withUnsafeMutableBytes { hla_state_serialize(&c, st.p, r?.p, $0.baseAddress, need, &w) }, "hla_state_serialize",
          file: file, line: line)
    XCTAssertEqual(w, need, file: file, line: line)
    keepAlive(st, r as Any)
    return buf
}

func serializeSummary(_ cfg: hla_config, _ s: RowBuf, file: StaticString = #filePath, line: UInt = #line) -> [UInt8] {
    var c = cfg
    let st = s.tensor, l = s.lengthsTensor
    var need: UInt = 0
    check(hla_summary_serialize(&c, st.p, l.p, nil, 0, &need), "summary size query", file: file, line: line)
    var buf = [UInt8](repeating: 0, count: Int(need))
    var w: UInt = 0
    check(buf.withUnsafeMutableBytes { hla_summary_serialize(&c, st.p, l.p, $0.baseAddress, need, &w) }, "hla_summary_serialize",
          file: file, line: line)
    XCTAssertEqual(w, need, file: file, line: line)
    keepAlive(st, l)
    return buf
}

/// hla_*_deserialize in both steps: describe (data NULL), then copy into fresh memory of that description.
/// Returns the first failing status (and no rows), or HLA_OK with the configuration and the rows.
func deserialize(_ bytes: [UInt8], summary: Bool) -> (hla_status, hla_config, RowBuf?) {
    var cfg = hla_config()
    guard hla_config_init(&cfg, configSize) == HLA_OK else { return (HLA_ERR_INVALID_ARGUMENT, cfg, nil) }
    let desc = Tn(nil, 0, [0], owner: nil), ldesc = Tn(nil, 0, [0], owner: nil)
    let st = bytes.withUnsafeBytes { raw -> hla_status in
        let p = raw.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!
        return summary ? hla_summary_deserialize(p, UInt(bytes.count), &cfg, desc.ptr, ldesc.ptr)
                       : hla_state_deserialize(p, UInt(bytes.count), &cfg, desc.ptr)
    }
    keepAlive(desc, ldesc)
    if st != HLA_OK { return (st, cfg, nil) }
    let t = desc.ptr.pointee
    XCTAssertEqual(t.ndim, 2)
    XCTAssertTrue(t.dtype == F32 || t.dtype == F64, "described dtype \(t.dtype)")
    XCTAssertEqual(t.strides.0, t.shape.1); XCTAssertEqual(t.strides.1, 1)
    if summary {
        let l = ldesc.ptr.pointee
        XCTAssertEqual(l.dtype, I64); XCTAssertEqual(l.ndim, 1); XCTAssertEqual(l.shape.0, t.shape.0); XCTAssertEqual(l.strides.0, 1)
    }
    let rb = RowBuf(dtype: t.dtype, rows: Int(t.shape.0), n: Int(t.shape.1), fill: .nan)
    var cfg2 = hla_config()
    _ = hla_config_init(&cfg2, configSize)
    let dst = rb.tensor, ldst = rb.lengthsTensor
    let st2 = bytes.withUnsafeBytes { raw -> hla_status in
        summary ? hla_summary_deserialize(raw.baseAddress, UInt(bytes.count), &cfg2, dst.ptr, ldst.ptr)
                : hla_state_deserialize(raw.baseAddress, UInt(bytes.count), &cfg2, dst.ptr)
    }
    keepAlive(dst, ldst)
    if st2 != HLA_OK { return (st2, cfg2, nil) }
    XCTAssertTrue(sameConfig(cfg, cfg2))
    return (HLA_OK, cfg2, rb)
}

/// Field-by-field equality of two configurations (chunk_size aside: it is not serialized).
func sameConfig(_ a: hla_config, _ b: hla_config) -> Bool {
    a.struct_size == b.struct_size && a.op == b.op && a.masked == b.masked && a.normalize == b.normalize &&
        a.heads == b.heads && (a.kv_heads == 0 ? a.heads : a.kv_heads) == (b.kv_heads == 0 ? b.heads : b.kv_heads) &&
        a.dk == b.dk && a.dv == b.dv && a.scale.bitPattern == b.scale.bitPattern &&
        a.decay.bitPattern == b.decay.bitPattern && a.ridge.bitPattern == b.ridge.bitPattern && a.eps.bitPattern == b.eps.bitPattern
}

// MARK: - Typed inputs

/// Typed copies of a problem's tensors in caller memory (sub-sequences read in place).
final class Typed<E: Elem> {
    let p: Problem
    let q: Buf<E>, k: Buf<E>, v: Buf<E>
    init(_ p: Problem) {
        self.p = p
        q = Buf(p.q.map { E($0) }); k = Buf(p.k.map { E($0) }); v = Buf(p.v.map { E($0) })
    }
    var s: Shape { p.s }

    /// q, k, v of tokens [t0, t1) (full-length strides).
    func qT(_ t0: Int = 0, _ t1: Int? = nil) -> Tn {
        tensor(q, E.dtype, [s.B, (t1 ?? s.T) - t0, s.H, s.dk], strides: p.qStrides, offset: t0 * s.H * s.dk)
    }
    func kT(_ t0: Int = 0, _ t1: Int? = nil) -> Tn {
        tensor(k, E.dtype, [s.B, (t1 ?? s.T) - t0, s.Hkv, s.dk], strides: p.kStrides, offset: t0 * s.Hkv * s.dk)
    }
    func vT(_ t0: Int = 0, _ t1: Int? = nil) -> Tn {
        tensor(v, E.dtype, [s.B, (t1 ?? s.T) - t0, s.Hkv, s.dv], strides: p.vStrides, offset: t0 * s.Hkv * s.dv)
    }
    func outBuf() -> Buf<E> { Buf(p.outCount, fill: E.nan) }
    func oT(_ out: Buf<E>, _ t0: Int = 0, _ t1: Int? = nil) -> Tn {
        tensor(out, E.dtype, [s.B, (t1 ?? s.T) - t0, s.H, s.dv], strides: p.oStrides, offset: t0 * s.H * s.dv)
    }
    /// Step tensors of token t: [B, H, D] read in place.
    func qStep(_ t: Int) -> Tn { tensor(q, E.dtype, [s.B, s.H, s.dk], strides: [s.T * s.H * s.dk, s.dk, 1], offset: t * s.H * s.dk) }
    func kStep(_ t: Int) -> Tn { tensor(k, E.dtype, [s.B, s.Hkv, s.dk], strides: [s.T * s.Hkv * s.dk, s.dk, 1], offset: t * s.Hkv * s.dk) }
    func vStep(_ t: Int) -> Tn { tensor(v, E.dtype, [s.B, s.Hkv, s.dv], strides: [s.T * s.Hkv * s.dv, s.dv, 1], offset: t * s.Hkv * s.dv) }
    func oStep(_ out: Buf<E>, _ t: Int) -> Tn { tensor(out, E.dtype, [s.B, s.H, s.dv], strides: [s.T * s.H * s.dv, s.dv, 1], offset: t * s.H * s.dv) }

    /// A zero state of this input type, one row per batch row (or `slots`).
    func newState(_ cfg: hla_config, slots: Int? = nil) -> RowBuf { HLATests.newState(cfg, dtype: E.dtype, slots: slots ?? s.B) }

    /// hla_forward over tokens [t0, t1) written into `out` (full-length [B,T,H,dv] buffer, in place).
    @discardableResult
    func forward(_ cfg: hla_config, path: Int32, _ t0: Int = 0, _ t1: Int? = nil, into out: Buf<E>,
                 initial: RowBuf? = nil, final: RowBuf? = nil, rows: [Int]? = nil) -> hla_status {
        cForward(cfg, path, qT(t0, t1), kT(t0, t1), vT(t0, t1), oT(out, t0, t1),
                 initial: initial?.tensor, final: final?.tensor, rows: rows.map { idx($0) })
    }

    /// hla_forward of the whole sequence, outputs in double.
    func forward(_ cfg: hla_config, path: Int32, initial: RowBuf? = nil, final: RowBuf? = nil,
                 file: StaticString = #filePath, line: UInt = #line) -> [Double] {
        let out = outBuf()
        check(forward(cfg, path: path, into: out, initial: initial, final: final), "hla_forward path \(path)", file: file, line: line)
        return out.doubles
    }

    func reference(_ cfg: hla_config, file: StaticString = #filePath, line: UInt = #line) -> [Double] {
        let out = outBuf()
        check(cReference(cfg, qT(), kT(), vT(), oT(out)), "hla_reference", file: file, line: line)
        return out.doubles
    }

    /// Token by token through hla_step over [t0, t1) (step tensors read in place).
    func steps(_ cfg: hla_config, _ state: RowBuf, _ t0: Int, _ t1: Int, into out: Buf<E>, rows: [Int]? = nil,
               file: StaticString = #filePath, line: UInt = #line) {
        let st = state.tensor, r = rows.map { idx($0) }
        for t in t0..<t1 {
            check(cStep(cfg, qStep(t), kStep(t), vStep(t), oStep(out, t), state: st, rows: r), "hla_step t=\(t)", file: file, line: line)
        }
    }

    /// The whole sequence through a fresh state, token by token.
    func stepAll(_ cfg: hla_config, final: RowBuf? = nil, file: StaticString = #filePath, line: UInt = #line) -> [Double] {
        let st = final ?? newState(cfg)
        let out = outBuf()
        steps(cfg, st, 0, s.T, into: out, file: file, line: line)
        return out.doubles
    }

    /// hla_summarize of tokens [t0, t1): one summary row per batch row, with lengths.
    func summarize(_ cfg: hla_config, _ t0: Int, _ t1: Int, file: StaticString = #filePath, line: UInt = #line) -> RowBuf {
        let sm = newSummary(cfg, dtype: E.dtype, rows: s.B)
        check(cSummarize(cfg, qT(t0, t1), kT(t0, t1), vT(t0, t1), summary: sm.tensor, lengths: sm.lengthsTensor),
              "hla_summarize [\(t0), \(t1))", file: file, line: line)
        XCTAssertEqual(sm.lengthValues, [Int](repeating: t1 - t0, count: s.B), file: file, line: line)
        return sm
    }
}

// MARK: - Error metric

/// ‖a − b‖_max / ‖b‖_max (SPEC §4); NaN anywhere gives infinity.
func relErr(_ a: [Double], _ b: [Double]) -> Double {
    precondition(a.count == b.count, "length \(a.count) vs \(b.count)")
    var num = 0.0, den = 0.0
    for i in 0..<a.count {
        if !a[i].isFinite || !b[i].isFinite { return .infinity }
        num = max(num, abs(a[i] - b[i])); den = max(den, abs(b[i]))
    }
    return den == 0 ? (num == 0 ? 0 : .infinity) : num / den
}

/// Max-norm relative error restricted to tokens [t0, t1) of [B, T, H, dv] outputs.
func relErr(_ a: [Double], _ b: [Double], _ p: Problem, tokens r: Range<Int>) -> Double {
    var x = [Double](), y = [Double]()
    for b0 in 0..<p.s.B { for t in r { for h in 0..<p.s.H { for c in 0..<p.s.dv {
        x.append(a[p.oi(b0, t, h, c)]); y.append(b[p.oi(b0, t, h, c)])
    } } } }
    return relErr(x, y)
}

/// Worst errors seen, printed at the end of a test class (reported in the final summary).
final class Worst: @unchecked Sendable {
    private var table: [String: Double] = [:]
    private let lock = NSLock()
    func note(_ key: String, _ e: Double) { lock.lock(); table[key] = max(table[key] ?? 0, e); lock.unlock() }
    func value(_ key: String) -> Double? { lock.lock(); defer { lock.unlock() }; return table[key] }
    func report(_ title: String) {
        lock.lock(); defer { lock.unlock() }
        print("== \(title)")
        for k in table.keys.sorted() { print(String(format: "   %-44@ %.3e", k as NSString, table[k]!)) }
    }
}
