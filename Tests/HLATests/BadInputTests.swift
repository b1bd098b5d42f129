// (f) Bad input through the C entry points (a representative sweep; Tests/c covers it exhaustively):
// every call returns a status, never traps, and hla_last_error() names the offending argument.
import CHLA
import XCTest
@testable import HLA

final class BadInputTests: XCTestCase {
    let s = Shape(B: 2, T: 5, H: 4, Hkv: 2, dk: 3, dv: 2)

    func expect(_ st: hla_status, _ want: hla_status, names: [String], _ what: String,
                file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(st, want, "\(what): got \(String(cString: hla_status_string(st))) (\(lastError()))", file: file, line: line)
        let msg = lastError()
        XCTAssertFalse(msg.isEmpty, "\(what): empty hla_last_error()", file: file, line: line)
        for n in names { XCTAssertTrue(msg.contains(n), "\(what): message '\(msg)' does not name '\(n)'", file: file, line: line) }
    }

    func cfg(_ op: Int32 = opHLA2, dtype: Int32 = F64, _ edit: (inout hla_config) -> Void = { _ in }) -> hla_config {
        var c = makeConfig(s, Options(op: op, decay: 0.9), dtype: dtype)
        edit(&c)
        return c
    }

    /// hla_forward / hla_reference / hla_summarize / hla_config_validate / hla_state_create with valid
    /// tensors and a (possibly bad) config; `verify(function, status)` runs right after each call, while
    /// hla_last_error() still describes that call.
    func callAll(_ c: hla_config, T: Int64 = 5, _ verify: (String, hla_status) -> Void) {
        let p = Problem(s, seed: 1), t = Typed<Double>(p)
        var c = c
        var out = [Double](repeating: 0, count: p.outCount)
        t.withInputs(at: 0) { q, k, v in
            out.withUnsafeMutableBytes { o in
                var seg: SegmentHandle? = nil, st: StateHandle? = nil
                verify("hla_forward", hla_forward(&c, T, 0, q, nil, k, nil, v, nil, o.baseAddress, nil, nil, nil))
                verify("hla_reference", hla_reference(&c, T, q, nil, k, nil, v, nil, o.baseAddress, nil))
                let r = hla_summarize(&c, T, q, nil, k, nil, v, nil, &seg)
                XCTAssertEqual(r == HLA_OK, seg != nil)
                verify("hla_summarize", r)
                verify("hla_config_validate", hla_config_validate(&c))
                let r2 = hla_state_create(&c, &st)
                XCTAssertEqual(r2 == HLA_OK, st != nil)
                verify("hla_state_create", r2)
                hla_segment_destroy(seg); hla_state_destroy(st)
            }
        }
    }

    func testInvalidConfigurations() {
        let bad: [(String, hla_status, [String], hla_config)] = [
            ("decay 0", HLA_ERR_INVALID_ARGUMENT, ["decay"], cfg { $0.decay = 0 }),
            ("decay 1.5", HLA_ERR_INVALID_ARGUMENT, ["decay"], cfg { $0.decay = 1.5 }),
            ("decay nan", HLA_ERR_INVALID_ARGUMENT, ["decay"], cfg { $0.decay = .nan }),
            ("decay -inf", HLA_ERR_INVALID_ARGUMENT, ["decay"], cfg { $0.decay = -.infinity }),
            ("eps 0", HLA_ERR_INVALID_ARGUMENT, ["eps"], cfg { $0.eps = 0 }),
            ("eps -1", HLA_ERR_INVALID_ARGUMENT, ["eps"], cfg { $0.eps = -1 }),
            ("eps inf", HLA_ERR_INVALID_ARGUMENT, ["eps"], cfg { $0.eps = .infinity }),
            ("ridge with ahla", HLA_ERR_INVALID_ARGUMENT, ["ridge"], cfg(opAHLA) { $0.ridge = 0.25 }),
            ("ridge with hla3", HLA_ERR_INVALID_ARGUMENT, ["ridge"], cfg(opHLA3) { $0.ridge = 0.25 }),
            ("ridge -0.1", HLA_ERR_INVALID_ARGUMENT, ["ridge"], cfg { $0.ridge = -0.1 }),
            ("ridge nan", HLA_ERR_INVALID_ARGUMENT, ["ridge"], cfg { $0.ridge = .nan }),
            ("scale nan", HLA_ERR_INVALID_ARGUMENT, ["scale"], cfg { $0.scale = .nan }),
            ("kv_heads 3 of 4", HLA_ERR_INVALID_ARGUMENT, ["kv_heads"], cfg { $0.kv_heads = 3 }),
            ("kv_heads 8 of 4", HLA_ERR_INVALID_ARGUMENT, ["kv_heads"], cfg { $0.kv_heads = 8 }),
            ("kv_heads -1", HLA_ERR_INVALID_ARGUMENT, ["kv_heads"], cfg { $0.kv_heads = -1 }),
            ("heads 0", HLA_ERR_INVALID_ARGUMENT, ["heads"], cfg { $0.heads = 0 }),
            ("batch -3", HLA_ERR_INVALID_ARGUMENT, ["batch"], cfg { $0.batch = -3 }),
            ("dk 0", HLA_ERR_INVALID_ARGUMENT, ["dk"], cfg { $0.dk = 0 }),
            ("dv -1", HLA_ERR_INVALID_ARGUMENT, ["dv"], cfg { $0.dv = -1 }),
            ("dk 1<<40", HLA_ERR_OVERFLOW, ["dk"], cfg { $0.dk = 1 << 40 }),
            ("dv Int64.max", HLA_ERR_OVERFLOW, ["dv"], cfg { $0.dv = .max }),
            ("batch·heads·dk² overflow", HLA_ERR_OVERFLOW, [], cfg { $0.dk = 1 << 24; $0.dv = 1 << 24; $0.batch = 1 << 24; $0.heads = 1 << 24; $0.kv_heads = 1 }),
            ("op 7", HLA_ERR_INVALID_ARGUMENT, ["op"], cfg { $0.op = 7 }),
            ("dtype 2", HLA_ERR_INVALID_ARGUMENT, ["dtype"], cfg { $0.dtype = 2 }),
            ("masked 2", HLA_ERR_INVALID_ARGUMENT, ["masked"], cfg { $0.masked = 2 }),
            ("normalize -1", HLA_ERR_INVALID_ARGUMENT, ["normalize"], cfg { $0.normalize = -1 }),
            ("chunk_size -1", HLA_ERR_INVALID_ARGUMENT, ["chunk_size"], cfg { $0.chunk_size = -1 }),
        ]
        for (what, want, names, c) in bad {
            callAll(c) { fn, st in
                if fn == "hla_state_create" && names == ["chunk_size"] { return }  // chunk_size is ignored by states
                expect(st, want, names: names + [fn], "\(fn) with \(what)")
            }
        }
        // the valid base configuration passes everywhere (so the sweep above is not vacuous)
        callAll(cfg()) { fn, st in XCTAssertEqual(st, HLA_OK, fn) }
    }

    func testTokenCountsAndPaths() {
        for T: Int64 in [0, -1, .min] {
            callAll(cfg(), T: T) { fn, st in
                if fn == "hla_config_validate" || fn == "hla_state_create" { XCTAssertEqual(st, HLA_OK); return }
                expect(st, HLA_ERR_INVALID_ARGUMENT, names: [fn, "T"], "\(fn) T = \(T)")
            }
        }
        var c = cfg()
        let t = Typed<Double>(Problem(s, seed: 2))
        var out = [Double](repeating: 0, count: Problem(s, seed: 2).outCount)
        for path: Int32 in [-1, 3] {
            let st = t.withInputs(at: 0) { q, k, v in out.withUnsafeMutableBytes { hla_forward(&c, 5, path, q, nil, k, nil, v, nil, $0.baseAddress, nil, nil, nil) } }
            expect(st, HLA_ERR_INVALID_ARGUMENT, names: ["path"], "path \(path)")
        }
    }

    func testNullPointers() {
        var c = cfg()
        let t = Typed<Double>(Problem(s, seed: 3))
        var out = [Double](repeating: 0, count: Problem(s, seed: 3).outCount)
        t.withInputs(at: 0) { q, k, v in
            out.withUnsafeMutableBytes { ob in
                let o = ob.baseAddress
                expect(hla_forward(nil, 5, 0, q, nil, k, nil, v, nil, o, nil, nil, nil), HLA_ERR_NULL_POINTER, names: ["cfg"], "forward cfg")
                expect(hla_forward(&c, 5, 0, nil, nil, k, nil, v, nil, o, nil, nil, nil), HLA_ERR_NULL_POINTER, names: ["q"], "forward q")
                expect(hla_forward(&c, 5, 0, q, nil, nil, nil, v, nil, o, nil, nil, nil), HLA_ERR_NULL_POINTER, names: ["k"], "forward k")
                expect(hla_forward(&c, 5, 0, q, nil, k, nil, nil, nil, o, nil, nil, nil), HLA_ERR_NULL_POINTER, names: ["v"], "forward v")
                expect(hla_forward(&c, 5, 0, q, nil, k, nil, v, nil, nil, nil, nil, nil), HLA_ERR_NULL_POINTER, names: ["output"], "forward output")
                expect(hla_reference(&c, 5, q, nil, k, nil, v, nil, nil, nil), HLA_ERR_NULL_POINTER, names: ["output"], "reference output")
                expect(hla_summarize(&c, 5, q, nil, k, nil, v, nil, nil), HLA_ERR_NULL_POINTER, names: ["result"], "summarize result")
                var seg: SegmentHandle? = nil
                expect(hla_summarize(&c, 5, q, nil, nil, nil, v, nil, &seg), HLA_ERR_NULL_POINTER, names: ["k"], "summarize k")
                // overflowing stride extents
                let huge: [Int64] = [Int64.max / 2, 1, 1, 1]
                expect(hla_forward(&c, 5, 0, q, huge, k, nil, v, nil, o, nil, nil, nil), HLA_ERR_OVERFLOW, names: ["q", "stride"], "q stride")
                let neg: [Int64] = [1, Int64.min, 1, 1]
                expect(hla_forward(&c, 5, 0, q, nil, k, nil, v, nil, o, neg, nil, nil), HLA_ERR_OVERFLOW, names: ["output"], "output stride")
            }
        }
        XCTAssertEqual(hla_config_init(nil), HLA_ERR_NULL_POINTER)
        XCTAssertTrue(lastError().contains("cfg"))
        expect(hla_config_validate(nil), HLA_ERR_NULL_POINTER, names: ["cfg"], "validate")
        expect(hla_state_create(&c, nil), HLA_ERR_NULL_POINTER, names: ["result"], "create result")
        var st: StateHandle? = nil
        expect(hla_state_create(nil, &st), HLA_ERR_NULL_POINTER, names: ["cfg"], "create cfg")
        XCTAssertNil(st)
        expect(hla_state_reset(nil), HLA_ERR_NULL_POINTER, names: ["state"], "reset")
        expect(hla_state_clone(nil, &st), HLA_ERR_NULL_POINTER, names: ["state"], "clone")
        var n: Int64 = 0, w: UInt = 0
        expect(hla_state_tokens(nil, &n), HLA_ERR_NULL_POINTER, names: ["state"], "tokens")
        expect(hla_state_nbytes(nil, &n), HLA_ERR_NULL_POINTER, names: ["state"], "nbytes")
        expect(hla_state_serialize(nil, nil, 0, &w), HLA_ERR_NULL_POINTER, names: ["state"], "serialize")
        expect(hla_state_deserialize(nil, 10, &st), HLA_ERR_NULL_POINTER, names: ["buffer"], "deserialize")
        expect(hla_state_step(nil, nil, nil, nil, nil, nil, nil, nil, nil), HLA_ERR_NULL_POINTER, names: ["state"], "step")
        expect(hla_state_from_segment(nil, &st), HLA_ERR_NULL_POINTER, names: ["segment"], "from_segment")
        var seg: SegmentHandle? = nil
        expect(hla_segment_combine(nil, nil, &seg), HLA_ERR_NULL_POINTER, names: [], "combine")
        expect(hla_segment_length(nil, &n), HLA_ERR_NULL_POINTER, names: ["segment"], "length")
        hla_state_destroy(nil); hla_segment_destroy(nil)   // no-ops
        // a live state with NULL outputs / tensors
        let s0 = newState(c)
        expect(hla_state_tokens(s0, nil), HLA_ERR_NULL_POINTER, names: ["result"], "tokens result")
        expect(hla_state_serialize(s0, nil, 0, nil), HLA_ERR_NULL_POINTER, names: ["written"], "serialize written")
        expect(hla_state_serialize(s0, nil, 100, &w), HLA_ERR_NULL_POINTER, names: ["buffer"], "serialize buffer")
        var small = [UInt8](repeating: 0, count: 16)
        expect(small.withUnsafeMutableBytes { hla_state_serialize(s0, $0.baseAddress, 16, &w) }, HLA_ERR_BUFFER_TOO_SMALL, names: [], "serialize small")
        XCTAssertGreaterThan(w, 16)
        var q = [Double](repeating: 0, count: 24)
        expect(q.withUnsafeMutableBytes { hla_state_step(s0, $0.baseAddress, nil, nil, nil, $0.baseAddress, nil, $0.baseAddress, nil) },
               HLA_ERR_NULL_POINTER, names: ["k"], "step k")
        // a segment handle is not a state handle
        let sg = Typed<Double>(Problem(s, seed: 4)).summarize(c, 0, 5)
        expect(hla_state_tokens(UnsafeMutableRawPointer(sg).assumingMemoryBound(to: hla_state.self), &n),
               HLA_ERR_INVALID_ARGUMENT, names: ["state"], "segment as state")
        hla_segment_destroy(sg); hla_state_destroy(s0)
    }

    func testMismatchedStates() {
        let base = cfg(), t = Typed<Double>(Problem(s, seed: 5))
        var out = [Double](repeating: 0, count: Problem(s, seed: 5).outCount)
        let others: [(String, hla_config)] = [
            ("dk", cfg { $0.dk = 4 }), ("op", cfg(opAHLA)), ("dtype", cfg(dtype: F32)), ("decay", cfg { $0.decay = 0.8 }),
            ("masked", cfg { $0.masked = 0 }), ("normalize", cfg { $0.normalize = 1 }), ("eps", cfg { $0.eps = 1e-3 }),
            ("scale", cfg { $0.scale = 1 }), ("kv_heads", cfg { $0.kv_heads = 4 }), ("batch", cfg { $0.batch = 1 }),
        ]
        for (what, oc) in others {
            let st = newState(oc)
            var c = base
            let r1 = t.withInputs(at: 0) { q, k, v in out.withUnsafeMutableBytes { hla_forward(&c, 5, 0, q, nil, k, nil, v, nil, $0.baseAddress, nil, st, nil) } }
            expect(r1, HLA_ERR_MISMATCH, names: ["initial"], "initial of other \(what)")
            let r2 = t.withInputs(at: 0) { q, k, v in out.withUnsafeMutableBytes { hla_forward(&c, 5, 1, q, nil, k, nil, v, nil, $0.baseAddress, nil, nil, st) } }
            expect(r2, HLA_ERR_MISMATCH, names: ["final_state"], "final_state of other \(what)")
            // segments of different configurations do not combine
            let a = t.summarize(base, 0, 2)
            let ot = Typed<Double>(Problem(Shape(B: Int(oc.batch), T: 5, H: 4, Hkv: Int(oc.kv_heads), dk: Int(oc.dk), dv: 2), seed: 6))
            if oc.dtype == F64 {
                let b = ot.summarize(oc, 0, 2)
                var ab: SegmentHandle? = nil
                expect(hla_segment_combine(a, b, &ab), HLA_ERR_MISMATCH, names: [], "combine with other \(what)")
                XCTAssertNil(ab)
                hla_segment_destroy(b)
            }
            hla_segment_destroy(a); hla_state_destroy(st)
        }
        // a different chunk_size is not a mismatch
        let st = newState(base)
        var c = base
        c.chunk_size = 3
        let r = t.withInputs(at: 0) { q, k, v in out.withUnsafeMutableBytes { hla_forward(&c, 5, 0, q, nil, k, nil, v, nil, $0.baseAddress, nil, st, st) } }
        XCTAssertEqual(r, HLA_OK)
        hla_state_destroy(st)
    }

    /// Every truncation and every single-byte change of a small serialized state or segment is rejected.
    func testCorruptBytes() {
        let small = Shape(B: 1, T: 3, H: 1, Hkv: 1, dk: 2, dv: 1)
        for dtype in [F32, F64] {
            for op in allOps {
                let c = makeConfig(small, Options(op: op, decay: 0.9), dtype: dtype)
                let st = newState(c)
                // a state and a segment that hold data (3 tokens)
                var seg: SegmentHandle? = nil
                if dtype == F64 {
                    let tt = Typed<Double>(Problem(small, seed: 7))
                    _ = tt.forward(c, path: 0, final: st); seg = tt.summarize(c, 0, 3)
                } else {
                    let tt = Typed<Float>(Problem(small, seed: 7))
                    _ = tt.forward(c, path: 0, final: st); seg = tt.summarize(c, 0, 3)
                }
                let stateBytes = serialize(st), segBytes = serialize(seg!)
                for (kind, bytes) in [("state", stateBytes), ("segment", segBytes)] {
                    func load(_ b: [UInt8]) -> hla_status {
                        b.withUnsafeBytes { raw -> hla_status in
                            let p = raw.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!
                            if kind == "state" {
                                var r: StateHandle? = nil
                                let x = hla_state_deserialize(p, UInt(b.count), &r)
                                XCTAssertEqual(x == HLA_OK, r != nil); hla_state_destroy(r); return x
                            }
                            var r: SegmentHandle? = nil
                            let x = hla_segment_deserialize(p, UInt(b.count), &r)
                            XCTAssertEqual(x == HLA_OK, r != nil); hla_segment_destroy(r); return x
                        }
                    }
                    XCTAssertEqual(load(bytes), HLA_OK, "\(kind) intact")
                    for n in 0..<bytes.count {
                        let x = load(Array(bytes[0..<n]))
                        XCTAssertEqual(x, HLA_ERR_CORRUPT, "\(kind) truncated to \(n) of \(bytes.count)")
                    }
                    XCTAssertEqual(load(bytes + [0]), HLA_ERR_CORRUPT, "\(kind) with a trailing byte")
                    for i in 0..<bytes.count {
                        for mask: UInt8 in [0x01, 0x80, 0xFF] {
                            var b = bytes
                            b[i] ^= mask
                            XCTAssertEqual(load(b), HLA_ERR_CORRUPT, "\(kind) byte \(i) ^ \(mask)")
                        }
                    }
                    XCTAssertFalse(lastError().isEmpty)
                }
                // a state's bytes are not a segment's, and vice versa
                var r1: SegmentHandle? = nil, r2: StateHandle? = nil
                expect(stateBytes.withUnsafeBytes { hla_segment_deserialize($0.baseAddress, UInt($0.count), &r1) }, HLA_ERR_CORRUPT, names: ["segment"], "state bytes as segment")
                expect(segBytes.withUnsafeBytes { hla_state_deserialize($0.baseAddress, UInt($0.count), &r2) }, HLA_ERR_CORRUPT, names: ["state"], "segment bytes as state")
                hla_state_destroy(st); hla_segment_destroy(seg)
            }
        }
    }

    func testStatusStrings() {
        let names = ["HLA_OK", "HLA_ERR_NULL_POINTER", "HLA_ERR_INVALID_ARGUMENT", "HLA_ERR_OVERFLOW", "HLA_ERR_MISMATCH",
                     "HLA_ERR_CORRUPT", "HLA_ERR_BUFFER_TOO_SMALL", "HLA_ERR_OUT_OF_MEMORY"]
        for (i, n) in names.enumerated() { XCTAssertEqual(String(cString: hla_status_string(hla_status(rawValue: UInt32(i)))), n) }
        XCTAssertEqual(String(cString: hla_status_string(hla_status(rawValue: 99))), "HLA_ERR_UNKNOWN")
        XCTAssertFalse(String(cString: hla_version()).isEmpty)
    }
}
