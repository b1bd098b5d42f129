// Shared helpers of the HLATests suite: a seeded normal RNG, problems in the [B, T, H, D] layout,
// thin wrappers around the C entry points (called directly from Swift) and the error metric of SPEC §4.
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
    /// The same inputs rounded to float32 (so a float64 evaluation sees exactly what a float32 call sees).
    func roundedToFloat() -> Problem {
        var p = self
        p.q = q.map { Double(Float($0)) }; p.k = k.map { Double(Float($0)) }; p.v = v.map { Double(Float($0)) }
        return p
    }
    @inline(__always) func qv(_ b: Int, _ t: Int, _ h: Int, _ a: Int) -> Double { q[((b * s.T + t) * s.H + h) * s.dk + a] }
    @inline(__always) func kv(_ b: Int, _ t: Int, _ g: Int, _ a: Int) -> Double { k[((b * s.T + t) * s.Hkv + g) * s.dk + a] }
    @inline(__always) func vv(_ b: Int, _ t: Int, _ g: Int, _ x: Int) -> Double { v[((b * s.T + t) * s.Hkv + g) * s.dv + x] }
    /// Index of output element (b, t, h, x).
    @inline(__always) func oi(_ b: Int, _ t: Int, _ h: Int, _ x: Int) -> Int { ((b * s.T + t) * s.H + h) * s.dv + x }
    var outCount: Int { s.B * s.T * s.H * s.dv }
    /// Strides (elements) of the full-length tensors, used for sub-sequences read in place.
    var qStrides: [Int64] { [Int64(s.T * s.H * s.dk), Int64(s.H * s.dk), Int64(s.dk), 1] }
    var kStrides: [Int64] { [Int64(s.T * s.Hkv * s.dk), Int64(s.Hkv * s.dk), Int64(s.dk), 1] }
    var vStrides: [Int64] { [Int64(s.T * s.Hkv * s.dv), Int64(s.Hkv * s.dv), Int64(s.dv), 1] }
    var oStrides: [Int64] { [Int64(s.T * s.H * s.dv), Int64(s.H * s.dv), Int64(s.dv), 1] }
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

func makeConfig(_ s: Shape, _ o: Options, dtype: Int32) -> hla_config {
    var c = hla_config()
    XCTAssertEqual(hla_config_init(&c), HLA_OK)
    c.op = o.op; c.dtype = dtype; c.masked = o.masked ? 1 : 0; c.normalize = o.normalize ? 1 : 0
    c.batch = Int64(s.B); c.heads = Int64(s.H); c.kv_heads = Int64(s.Hkv); c.dk = Int64(s.dk); c.dv = Int64(s.dv)
    c.scale = o.scale ?? 1 / Double(s.dk).squareRoot()
    c.decay = o.decay; c.ridge = o.ridge; c.eps = o.eps; c.chunk_size = o.chunk
    return c
}

let F32 = HLA_FLOAT32.rawValue.asInt32
let F64 = HLA_FLOAT64.rawValue.asInt32
let opHLA2 = HLA_OP_HLA2.rawValue.asInt32
let opAHLA = HLA_OP_AHLA.rawValue.asInt32
let opHLA3 = HLA_OP_HLA3.rawValue.asInt32
let allOps: [Int32] = [opHLA2, opAHLA, opHLA3]

typealias StateHandle = UnsafeMutablePointer<hla_state>
typealias SegmentHandle = UnsafeMutablePointer<hla_segment>

func lastError() -> String { String(cString: hla_last_error()) }

func check(_ st: hla_status, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(st, HLA_OK, "\(what): \(String(cString: hla_status_string(st))) \(lastError())", file: file, line: line)
}

// MARK: - Typed buffers

/// float32 or float64 element, converted from and to double.
protocol Elem: BinaryFloatingPoint { static var dtype: Int32 { get }; init(_ d: Double); var d: Double { get } }
extension Float: Elem { static var dtype: Int32 { F32 }; var d: Double { Double(self) } }
extension Double: Elem { static var dtype: Int32 { F64 }; var d: Double { self } }

/// Typed copies of a problem's tensors (the engine reads them through pointers, sub-sequences in place).
final class Typed<E: Elem> {
    let p: Problem
    var q: [E], k: [E], v: [E]
    init(_ p: Problem) {
        self.p = p
        q = p.q.map { E($0) }; k = p.k.map { E($0) }; v = p.v.map { E($0) }
    }

    /// Run `body` with pointers to token `t0` of q, k, v (full-length strides).
    func withInputs<R>(at t0: Int, _ body: (UnsafeRawPointer, UnsafeRawPointer, UnsafeRawPointer) -> R) -> R {
        let s = p.s
        return q.withUnsafeBufferPointer { qb in
            k.withUnsafeBufferPointer { kb in
                v.withUnsafeBufferPointer { vb in
                    body(UnsafeRawPointer(qb.baseAddress! + t0 * s.H * s.dk),
                         UnsafeRawPointer(kb.baseAddress! + t0 * s.Hkv * s.dk),
                         UnsafeRawPointer(vb.baseAddress! + t0 * s.Hkv * s.dv))
                }
            }
        }
    }

    /// hla_forward over tokens [t0, t1) written into `out` (full-length [B,T,H,dv] array, in place).
    @discardableResult
    func forward(_ cfg: hla_config, path: Int32, _ t0: Int = 0, _ t1: Int? = nil, into out: inout [E],
                 initial: StateHandle? = nil, final: StateHandle? = nil) -> hla_status {
        var c = cfg
        let s = p.s, t1 = t1 ?? s.T
        let qs = p.qStrides, ks = p.kStrides, vs = p.vStrides, os = p.oStrides
        return withInputs(at: t0) { qp, kp, vp in
            out.withUnsafeMutableBufferPointer { ob in
                hla_forward(&c, Int64(t1 - t0), path, qp, qs, kp, ks, vp, vs,
                            UnsafeMutableRawPointer(ob.baseAddress! + t0 * s.H * s.dv), os, initial, final)
            }
        }
    }

    /// hla_forward of the whole sequence, outputs in double.
    func forward(_ cfg: hla_config, path: Int32, initial: StateHandle? = nil, final: StateHandle? = nil,
                 file: StaticString = #filePath, line: UInt = #line) -> [Double] {
        var out = [E](repeating: .nan, count: p.outCount)
        check(forward(cfg, path: path, into: &out, initial: initial, final: final), "hla_forward path \(path)",
              file: file, line: line)
        return out.map { $0.d }
    }

    func reference(_ cfg: hla_config, file: StaticString = #filePath, line: UInt = #line) -> [Double] {
        var c = cfg
        var out = [E](repeating: .nan, count: p.outCount)
        let st = withInputs(at: 0) { qp, kp, vp in
            out.withUnsafeMutableBufferPointer { ob in
                hla_reference(&c, Int64(p.s.T), qp, p.qStrides, kp, p.kStrides, vp, p.vStrides, ob.baseAddress!, p.oStrides)
            }
        }
        check(st, "hla_reference", file: file, line: line)
        return out.map { $0.d }
    }

    /// Token by token through hla_state_step over [t0, t1) (3 strides per step tensor, read in place).
    func steps(_ state: StateHandle, _ t0: Int, _ t1: Int, into out: inout [E],
               file: StaticString = #filePath, line: UInt = #line) {
        let s = p.s
        let qs: [Int64] = [Int64(s.T * s.H * s.dk), Int64(s.dk), 1]
        let ks: [Int64] = [Int64(s.T * s.Hkv * s.dk), Int64(s.dk), 1]
        let vs: [Int64] = [Int64(s.T * s.Hkv * s.dv), Int64(s.dv), 1]
        let os: [Int64] = [Int64(s.T * s.H * s.dv), Int64(s.dv), 1]
        for t in t0..<t1 {
            let st = withInputs(at: t) { qp, kp, vp in
                out.withUnsafeMutableBufferPointer { ob in
                    hla_state_step(state, qp, qs, kp, ks, vp, vs, UnsafeMutableRawPointer(ob.baseAddress! + t * s.H * s.dv), os)
                }
            }
            check(st, "hla_state_step t=\(t)", file: file, line: line)
        }
    }

    /// The whole sequence through a fresh state, token by token.
    func stepAll(_ cfg: hla_config, file: StaticString = #filePath, line: UInt = #line) -> [Double] {
        let st = newState(cfg)
        defer { hla_state_destroy(st) }
        var out = [E](repeating: .nan, count: p.outCount)
        steps(st, 0, p.s.T, into: &out, file: file, line: line)
        return out.map { $0.d }
    }

    /// hla_summarize of tokens [t0, t1).
    func summarize(_ cfg: hla_config, _ t0: Int, _ t1: Int, file: StaticString = #filePath, line: UInt = #line) -> SegmentHandle {
        var c = cfg
        var seg: SegmentHandle? = nil
        let st = withInputs(at: t0) { qp, kp, vp in
            hla_summarize(&c, Int64(t1 - t0), qp, p.qStrides, kp, p.kStrides, vp, p.vStrides, &seg)
        }
        check(st, "hla_summarize [\(t0), \(t1))", file: file, line: line)
        return seg!
    }
}

func newState(_ cfg: hla_config, file: StaticString = #filePath, line: UInt = #line) -> StateHandle {
    var c = cfg
    var s: StateHandle? = nil
    check(hla_state_create(&c, &s), "hla_state_create", file: file, line: line)
    return s!
}

func serialize(_ s: StateHandle) -> [UInt8] {
    var need: UInt = 0
    check(hla_state_serialize(s, nil, 0, &need), "size query")
    var buf = [UInt8](repeating: 0, count: Int(need))
    var w: UInt = 0
    check(buf.withUnsafeMutableBytes { hla_state_serialize(s, $0.baseAddress, need, &w) }, "hla_state_serialize")
    XCTAssertEqual(w, need)
    return buf
}

func serialize(_ s: SegmentHandle) -> [UInt8] {
    var need: UInt = 0
    check(hla_segment_serialize(s, nil, 0, &need), "size query")
    var buf = [UInt8](repeating: 0, count: Int(need))
    var w: UInt = 0
    check(buf.withUnsafeMutableBytes { hla_segment_serialize(s, $0.baseAddress, need, &w) }, "hla_segment_serialize")
    XCTAssertEqual(w, need)
    return buf
}

/// Header bytes of the serialized form (docs of Sources/HLA/Engine/Serialize.swift): magic 8, version 4,
/// reserved 4, 4 × i32, 5 × i64, 4 × f64, tokens i64, count u64; then the elements and an 8-byte checksum.
let serialHeaderBytes = 8 + 4 + 4 + 16 + 40 + 32 + 8 + 8

/// The float payload of serialized bytes, in double (ignores the exact bits; used for numeric comparison).
func payload(_ bytes: [UInt8], dtype: Int32) -> [Double] {
    let body = Array(bytes[serialHeaderBytes..<(bytes.count - 8)])
    if dtype == F32 {
        return stride(from: 0, to: body.count, by: 4).map { o in
            var u: UInt32 = 0
            for i in 0..<4 { u |= UInt32(body[o + i]) << (8 * UInt32(i)) }
            return Double(Float(bitPattern: u))
        }
    }
    return stride(from: 0, to: body.count, by: 8).map { o in
        var u: UInt64 = 0
        for i in 0..<8 { u |= UInt64(body[o + i]) << (8 * UInt64(i)) }
        return Double(bitPattern: u)
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

/// Worst errors seen, printed at the end of the parity test (reported in the final summary).
final class Worst: @unchecked Sendable {
    private var table: [String: Double] = [:]
    private let lock = NSLock()
    func note(_ key: String, _ e: Double) { lock.lock(); table[key] = max(table[key] ?? 0, e); lock.unlock() }
    func value(_ key: String) -> Double? { lock.lock(); defer { lock.unlock() }; return table[key] }
    func report(_ title: String) {
        lock.lock(); defer { lock.unlock() }
        print("== \(title)")
        for k in table.keys.sorted() { print(String(format: "   %-34@ %.3e", k as NSString, table[k]!)) }
    }
}
