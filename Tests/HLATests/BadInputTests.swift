// (f) Bad input through the C entry points (a representative sweep; Tests/c covers it exhaustively):
// every call returns a status, never traps, writes nothing, and hla_last_error() names the offending
// argument. Tensor descriptions (dtype, ndim, shape, strides, rows, cu_seqlens) are in TensorDescriptionTests.
import CHLA
import XCTest
@testable import HLA

/// Assert a status and that hla_last_error() is non-empty and names every string of `names`.
func expectStatus(_ st: hla_status, _ want: hla_status, names: [String], _ what: String,
                  file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(st, want, "\(what): got \(statusName(st)) (\(lastError()))", file: file, line: line)
    let msg = lastError()
    XCTAssertFalse(msg.isEmpty, "\(what): empty hla_last_error()", file: file, line: line)
    for n in names { XCTAssertTrue(msg.contains(n), "\(what): message '\(msg)' does not name '\(n)'", file: file, line: line) }
}

/// A value no call writes: outputs, states and summaries are filled with it to prove a failing call wrote nothing.
let sentinel = 12345.0

final class BadInputTests: XCTestCase {
    let s = Shape(B: 2, T: 5, H: 4, Hkv: 2, dk: 3, dv: 2)

    func expect(_ st: hla_status, _ want: hla_status, names: [String], _ what: String,
                file: StaticString = #filePath, line: UInt = #line) {
        expectStatus(st, want, names: names, what, file: file, line: line)
    }

    func cfg(_ op: Int32 = opHLA2, _ edit: (inout hla_config) -> Void = { _ in }) -> hla_config {
        var c = makeConfig(s, Options(op: op, decay: 0.9))
        edit(&c)
        return c
    }

    /// hla_forward (with final state) / hla_reference / hla_summarize / hla_step / hla_config_validate /
    /// hla_state_elements / hla_summary_elements / hla_state_reset_rows with tensors valid for the base
    /// configuration and a (possibly bad) config; `verify(function, status)` runs right after each call, while
    /// hla_last_error() still describes that call. Failing calls must leave every output untouched.
    func callAll(_ c: hla_config, T: Int = 5, _ verify: (String, hla_status) -> Void) {
        let good = cfg()
        let p = Problem(Shape(B: s.B, T: max(T, 1), H: s.H, Hkv: s.Hkv, dk: s.dk, dv: s.dv), seed: 1), t = Typed<Double>(p)
        let q = t.qT(0, T), k = t.kT(0, T), v = t.vT(0, T)
        let out = Buf<Double>(p.outCount, fill: sentinel)
        let o = tensor(out, F64, [s.B, T, s.H, s.dv], strides: p.oStrides)
        let st = RowBuf(dtype: F64, rows: s.B, n: stateElements(good), fill: sentinel)
        let sm = RowBuf(dtype: F64, rows: s.B, n: summaryElements(good), fill: sentinel)
        func untouched(_ fn: String, _ r: hla_status) {
            guard r != HLA_OK else { return }
            XCTAssertTrue(out.array.allSatisfy { $0 == sentinel }, "\(fn) wrote its output before failing")
            XCTAssertTrue(st.values.allSatisfy { $0 == sentinel }, "\(fn) wrote its state before failing")
            XCTAssertTrue(sm.values.allSatisfy { $0 == sentinel }, "\(fn) wrote its summary before failing")
            XCTAssertTrue(sm.lengthValues.allSatisfy { $0 == -1 }, "\(fn) wrote its lengths before failing")
        }
        var r = cForward(c, 0, q, k, v, o, final: st.tensor)
        verify("hla_forward", r); untouched("hla_forward", r)
        r = cReference(c, q, k, v, o)
        verify("hla_reference", r); untouched("hla_reference", r)
        r = cSummarize(c, q, k, v, summary: sm.tensor, lengths: sm.lengthsTensor)
        verify("hla_summarize", r); untouched("hla_summarize", r)
        r = cStep(c, t.qStep(0), t.kStep(0), t.vStep(0), tensor(out, F64, [s.B, s.H, s.dv], strides: [p.oStrides[0], s.dv, 1]), state: st.tensor)
        verify("hla_step", r); untouched("hla_step", r)
        var cc = c, n: Int64 = -7
        verify("hla_config_validate", hla_config_validate(&cc))
        r = hla_state_elements(&cc, &n)
        verify("hla_state_elements", r)
        if r != HLA_OK { XCTAssertEqual(n, -7, "hla_state_elements wrote its result before failing") }
        verify("hla_summary_elements", hla_summary_elements(&cc, &n))
        r = cReset(c, st.tensor)
        verify("hla_state_reset_rows", r); untouched("hla_state_reset_rows", r)
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
            ("scale inf", HLA_ERR_INVALID_ARGUMENT, ["scale"], cfg { $0.scale = .infinity }),
            ("kv_heads 3 of 4", HLA_ERR_INVALID_ARGUMENT, ["kv_heads"], cfg { $0.kv_heads = 3 }),
            ("kv_heads 8 of 4", HLA_ERR_INVALID_ARGUMENT, ["kv_heads"], cfg { $0.kv_heads = 8 }),
            ("kv_heads -1", HLA_ERR_INVALID_ARGUMENT, ["kv_heads"], cfg { $0.kv_heads = -1 }),
            ("heads 0", HLA_ERR_INVALID_ARGUMENT, ["heads"], cfg { $0.heads = 0 }),
            ("heads -3", HLA_ERR_INVALID_ARGUMENT, ["heads"], cfg { $0.heads = -3 }),
            ("dk 0", HLA_ERR_INVALID_ARGUMENT, ["dk"], cfg { $0.dk = 0 }),
            ("dv -1", HLA_ERR_INVALID_ARGUMENT, ["dv"], cfg { $0.dv = -1 }),
            ("dk 1<<40", HLA_ERR_OVERFLOW, ["dk"], cfg { $0.dk = 1 << 40 }),
            ("dv Int64.max", HLA_ERR_OVERFLOW, ["dv"], cfg { $0.dv = .max }),
            ("heads·dk² overflow", HLA_ERR_OVERFLOW, [], cfg { $0.dk = 1 << 24; $0.dv = 1 << 24; $0.heads = 1 << 24; $0.kv_heads = 1 }),
            ("op 7", HLA_ERR_INVALID_ARGUMENT, ["op"], cfg { $0.op = 7 }),
            ("op -1", HLA_ERR_INVALID_ARGUMENT, ["op"], cfg { $0.op = -1 }),
            ("masked 2", HLA_ERR_INVALID_ARGUMENT, ["masked"], cfg { $0.masked = 2 }),
            ("normalize -1", HLA_ERR_INVALID_ARGUMENT, ["normalize"], cfg { $0.normalize = -1 }),
            ("chunk_size -1", HLA_ERR_INVALID_ARGUMENT, ["chunk_size"], cfg { $0.chunk_size = -1 }),
            ("struct_size 0", HLA_ERR_INVALID_ARGUMENT, ["struct_size"], cfg { $0.struct_size = 0 }),
            ("struct_size one short", HLA_ERR_INVALID_ARGUMENT, ["struct_size"], cfg { $0.struct_size = UInt32(configSize) - 1 }),
            ("struct_size of 1.0, one short", HLA_ERR_INVALID_ARGUMENT, ["struct_size"], cfg { $0.struct_size = UInt32(configSize) - 9 }),
            ("checkpoint_every -1", HLA_ERR_INVALID_ARGUMENT, ["checkpoint_every"], cfg { $0.checkpoint_every = -1 }),
        ]
        for (what, want, names, c) in bad {
            callAll(c) { fn, st in expect(st, want, names: names + [fn], "\(fn) with \(what)") }
        }
        // the valid base configuration passes everywhere (so the sweep above is not vacuous)
        callAll(cfg()) { fn, st in XCTAssertEqual(st, HLA_OK, "\(fn): \(lastError())") }
    }

    func testTokenCountsAndPaths() {
        // T = 0 tokens: nothing to compute; negative sizes: not a tensor
        for T in [0, -1, Int(Int64.min)] {
            callAll(cfg(), T: T) { fn, st in
                if ["hla_config_validate", "hla_state_elements", "hla_summary_elements", "hla_step", "hla_state_reset_rows"].contains(fn) {
                    XCTAssertEqual(st, HLA_OK, "\(fn) T = \(T)"); return
                }
                expect(st, HLA_ERR_INVALID_ARGUMENT, names: [fn, "q", "shape[1]"], "\(fn) T = \(T)")
            }
        }
        // B = 0
        let c = cfg(), t = Typed<Double>(Problem(s, seed: 2))
        let out = t.outBuf()
        let q0 = t.qT(), k0 = t.kT(), v0 = t.vT(), o0 = t.oT(out)
        for x in [q0, k0, v0, o0] { x.setShape(0, 0) }
        expect(cForward(c, 0, q0, k0, v0, o0), HLA_ERR_INVALID_ARGUMENT, names: ["hla_forward", "q.shape[0]"], "B = 0")
        for path: Int32 in [-1, 3, .max] {
            expect(cForward(c, path, t.qT(), t.kT(), t.vT(), t.oT(out)), HLA_ERR_INVALID_ARGUMENT, names: ["path"], "path \(path)")
        }
        XCTAssertTrue(out.array.allSatisfy { $0.isNaN })
        for path: Int32 in [0, 1, 2] { check(cForward(c, path, t.qT(), t.kT(), t.vT(), t.oT(out)), "path \(path)") }
    }

    func testNullPointers() {
        let c = cfg()
        var cc = c
        let t = Typed<Double>(Problem(s, seed: 3))
        let out = t.outBuf()
        let q = t.qT(), k = t.kT(), v = t.vT(), o = t.oT(out)
        let st = t.newState(c), sm = newSummary(c, dtype: F64, rows: s.B)
        let stT = st.tensor, smT = sm.tensor
        defer { keepAlive(q, k, v, o, stT, smT) }
        expect(hla_forward(nil, 0, q.p, k.p, v.p, o.p, nil, nil, nil, nil), HLA_ERR_NULL_POINTER, names: ["cfg"], "forward cfg")
        expect(cForward(c, 0, nil, k, v, o), HLA_ERR_NULL_POINTER, names: ["q"], "forward q")
        expect(cForward(c, 0, q, nil, v, o), HLA_ERR_NULL_POINTER, names: ["k"], "forward k")
        expect(cForward(c, 0, q, k, nil, o), HLA_ERR_NULL_POINTER, names: ["v"], "forward v")
        expect(cForward(c, 0, q, k, v, nil), HLA_ERR_NULL_POINTER, names: ["output"], "forward output")
        expect(cReference(c, q, k, v, nil), HLA_ERR_NULL_POINTER, names: ["output"], "reference output")
        expect(cSummarize(c, q, k, v, summary: nil, lengths: nil), HLA_ERR_NULL_POINTER, names: ["summary"], "summarize summary")
        expect(cSummarize(c, q, nil, v, summary: sm.tensor, lengths: nil), HLA_ERR_NULL_POINTER, names: ["k"], "summarize k")
        expect(cStep(c, t.qStep(0), t.kStep(0), t.vStep(0), t.oStep(out, 0), state: nil), HLA_ERR_NULL_POINTER, names: ["state"], "step state")
        expect(cStep(c, t.qStep(0), nil, t.vStep(0), t.oStep(out, 0), state: st.tensor), HLA_ERR_NULL_POINTER, names: ["k"], "step k")
        expect(hla_step(nil, nil, nil, nil, nil, nil, nil), HLA_ERR_NULL_POINTER, names: ["cfg"], "step all NULL")
        // a tensor whose data pointer is NULL
        let qn = t.qT()
        qn.ptr.pointee.data = nil
        expect(cForward(c, 0, qn, k, v, o), HLA_ERR_NULL_POINTER, names: ["q.data"], "q.data NULL")
        let stn = st.tensor
        stn.ptr.pointee.data = nil
        expect(cForward(c, 0, q, k, v, o, initial: stn), HLA_ERR_NULL_POINTER, names: ["initial.data"], "initial.data NULL")
        XCTAssertTrue(out.array.allSatisfy { $0.isNaN }, "a failing forward wrote its output")
        check(cForward(c, 0, q, k, v, t.oT(t.outBuf()), initial: st.tensor), "control: the same tensors are valid")
        // overflowing stride extents
        let huge = t.qT()
        huge.setStride(0, Int64.max / 2)
        expect(cForward(c, 0, huge, k, v, o), HLA_ERR_OVERFLOW, names: ["q", "stride"], "q stride")
        let neg = t.oT(out)
        neg.setStride(1, Int64.min)
        expect(cForward(c, 0, q, k, v, neg), HLA_ERR_OVERFLOW, names: ["output"], "output stride")
        // configuration and size entry points
        XCTAssertEqual(hla_config_init(nil, configSize), HLA_ERR_NULL_POINTER)
        XCTAssertTrue(lastError().contains("cfg"))
        expect(hla_config_validate(nil), HLA_ERR_NULL_POINTER, names: ["cfg"], "validate")
        expect(hla_state_elements(&cc, nil), HLA_ERR_NULL_POINTER, names: ["result"], "state_elements result")
        expect(hla_summary_elements(&cc, nil), HLA_ERR_NULL_POINTER, names: ["result"], "summary_elements result")
        var n: Int64 = 0
        expect(hla_state_elements(nil, &n), HLA_ERR_NULL_POINTER, names: ["cfg"], "state_elements cfg")
        var tt = hla_tensor()
        let shape: [Int64] = [2, 3]
        expect(hla_tensor_init(nil, nil, F32, 2, shape, nil), HLA_ERR_NULL_POINTER, names: ["t"], "tensor_init t")
        expect(hla_tensor_init(&tt, nil, F32, 2, nil, nil), HLA_ERR_NULL_POINTER, names: ["shape"], "tensor_init shape")
        // rows operations
        expect(cReset(c, nil), HLA_ERR_NULL_POINTER, names: ["state"], "reset state")
        expect(hla_state_reset_rows(nil, stT.p, nil), HLA_ERR_NULL_POINTER, names: ["cfg"], "reset cfg")
        expect(cCopyRows(c, st.tensor, nil, idx([1])), HLA_ERR_NULL_POINTER, names: ["src_rows"], "copy src")
        expect(cCopyRows(c, nil, idx([0]), idx([1])), HLA_ERR_NULL_POINTER, names: ["state"], "copy state")
        // summaries
        expect(cCombine(c, nil, sm.lengthsTensor, sm.tensor, sm.lengthsTensor, sm.tensor, nil), HLA_ERR_NULL_POINTER, names: ["a"], "combine a")
        expect(cCombine(c, sm.tensor, nil, sm.tensor, sm.lengthsTensor, sm.tensor, nil), HLA_ERR_NULL_POINTER, names: ["a_lengths"], "combine a_lengths")
        expect(cCombine(c, sm.tensor, sm.lengthsTensor, sm.tensor, sm.lengthsTensor, nil, nil), HLA_ERR_NULL_POINTER, names: ["result"], "combine result")
        expect(cSummaryToState(c, nil, st.tensor), HLA_ERR_NULL_POINTER, names: ["summary"], "to_state summary")
        expect(cSummaryToState(c, sm.tensor, nil), HLA_ERR_NULL_POINTER, names: ["state"], "to_state state")
        // serialization
        var w: UInt = 0
        expect(hla_state_serialize(&cc, stT.p, nil, nil, 0, nil), HLA_ERR_NULL_POINTER, names: ["written"], "serialize written")
        expect(hla_state_serialize(&cc, stT.p, nil, nil, 100, &w), HLA_ERR_NULL_POINTER, names: ["buffer"], "serialize buffer")
        expect(hla_state_serialize(&cc, nil, nil, nil, 0, &w), HLA_ERR_NULL_POINTER, names: ["state"], "serialize state")
        expect(hla_summary_serialize(&cc, smT.p, nil, nil, 0, &w), HLA_ERR_NULL_POINTER, names: ["lengths"], "summary serialize lengths")
        var small = [UInt8](repeating: 0, count: 16)
        w = 0
        expect(small.withUnsafeMutableBytes { hla_state_serialize(&cc, stT.p, nil, $0.baseAddress, 16, &w) },
               HLA_ERR_BUFFER_TOO_SMALL, names: [], "serialize small")
        XCTAssertGreaterThan(w, 16)
        XCTAssertEqual(small, [UInt8](repeating: 0, count: 16), "a too-small buffer was written")
        let bytes = serializeState(c, st)
        var dc = hla_config()
        _ = hla_config_init(&dc, configSize)
        let desc = Tn(nil, 0, [0], owner: nil)
        defer { keepAlive(desc) }
        expect(hla_state_deserialize(nil, 10, &dc, desc.ptr), HLA_ERR_NULL_POINTER, names: ["buffer"], "deserialize buffer")
        expect(bytes.withUnsafeBytes { hla_state_deserialize($0.baseAddress, UInt($0.count), &dc, nil) }, HLA_ERR_NULL_POINTER,
               names: ["state"], "deserialize state")
        expect(bytes.withUnsafeBytes { hla_state_deserialize($0.baseAddress, UInt($0.count), nil, desc.ptr) }, HLA_ERR_NULL_POINTER,
               names: ["cfg"], "deserialize cfg")
        let sbytes = serializeSummary(c, t.summarize(c, 0, 5))
        expect(sbytes.withUnsafeBytes { hla_summary_deserialize($0.baseAddress, UInt($0.count), &dc, desc.ptr, nil) }, HLA_ERR_NULL_POINTER,
               names: ["lengths"], "summary deserialize lengths")
        // a deserialize destination whose cfg was never sized by hla_config_init
        var zero = hla_config()
        expect(bytes.withUnsafeBytes { hla_state_deserialize($0.baseAddress, UInt($0.count), &zero, desc.ptr) }, HLA_ERR_INVALID_ARGUMENT,
               names: ["struct_size"], "deserialize into an unsized cfg")
    }

    /// States and summaries of another configuration are rejected where their row size differs (a state row is
    /// plain numbers: configurations with the same row size are the caller's responsibility, and serialized
    /// bytes carry their configuration); a state of another element type is a dtype error.
    func testStatesOfAnotherConfiguration() {
        let base = cfg(), t = Typed<Double>(Problem(s, seed: 5))
        let nBase = stateElements(base), mBase = summaryElements(base)
        let out = t.outBuf()
        let others: [(String, hla_config)] = [
            ("dk", cfg { $0.dk = 4 }), ("dv", cfg { $0.dv = 3 }), ("op ahla", cfg(opAHLA)), ("op hla3", cfg(opHLA3)),
            ("normalize", cfg { $0.normalize = 1 }), ("kv_heads", cfg { $0.kv_heads = 4 }), ("heads", cfg { $0.heads = 2; $0.kv_heads = 1 }),
            ("masked hla3", cfg(opHLA3) { $0.masked = 0 }),
        ]
        var tested = 0
        for (what, oc) in others {
            let n = stateElements(oc), m = summaryElements(oc)
            guard n != nBase else { continue }
            tested += 1
            let st = RowBuf(dtype: F64, rows: s.B, n: n, fill: sentinel)
            expect(t.forward(base, path: 0, into: out, initial: st), HLA_ERR_MISMATCH, names: ["initial", "shape[1]"], "initial of other \(what)")
            expect(t.forward(base, path: 1, into: out, final: st), HLA_ERR_MISMATCH, names: ["final", "shape[1]"], "final of other \(what)")
            expect(cStep(base, t.qStep(0), t.kStep(0), t.vStep(0), t.oStep(out, 0), state: st.tensor), HLA_ERR_MISMATCH,
                   names: ["state"], "step on other \(what)")
            XCTAssertTrue(st.values.allSatisfy { $0 == sentinel })
            // summaries of different configurations do not combine
            if m != mBase {
                let a = t.summarize(base, 0, 2)
                let b = RowBuf(dtype: F64, rows: s.B, n: m)
                for i in 0..<s.B { b.lengths[i] = 3 }
                let r = RowBuf(dtype: F64, rows: s.B, n: mBase, fill: sentinel)
                expect(cCombine(base, a.tensor, a.lengthsTensor, b.tensor, b.lengthsTensor, r.tensor, nil), HLA_ERR_MISMATCH,
                       names: ["b"], "combine with other \(what)")
                XCTAssertTrue(r.values.allSatisfy { $0 == sentinel })
                expect(cSummaryToState(base, b.tensor, t.newState(base).tensor), HLA_ERR_MISMATCH, names: ["summary"], "to_state of other \(what)")
            }
        }
        XCTAssertGreaterThanOrEqual(tested, 6)
        XCTAssertTrue(out.array.allSatisfy { $0.isNaN })
        // a float32 state with float64 inputs, a float64 state with float32 inputs
        let st32 = newState(base, dtype: F32, slots: s.B)
        expect(t.forward(base, path: 0, into: out, initial: st32), HLA_ERR_DTYPE, names: ["initial", "float32"], "float32 state, float64 inputs")
        let t32 = Typed<Float>(Problem(s, seed: 5)), out32 = t32.outBuf()
        expect(t32.forward(base, path: 0, into: out32, final: t.newState(base)), HLA_ERR_DTYPE, names: ["final", "float64"], "float64 state, float32 inputs")
        let th = Typed<BFloat16>(Problem(s, seed: 5))
        expect(th.forward(base, path: 0, into: th.outBuf(), final: t.newState(base)), HLA_ERR_DTYPE, names: ["final"], "float64 state, bfloat16 inputs")
        // a state tensor of half type
        let hs = Buf<Float16>(s.B * nBase, fill: 0)
        expect(cStep(base, th.qStep(0), th.kStep(0), th.vStep(0), th.oStep(th.outBuf(), 0), state: tensor(hs, F16, [s.B, nBase])),
               HLA_ERR_DTYPE, names: ["state"], "float16 state")
        // summaries: float32 a with float64 b
        let a = t.summarize(base, 0, 2), b32 = t32.summarize(base, 2, 5)
        expect(cCombine(base, a.tensor, a.lengthsTensor, b32.tensor, b32.lengthsTensor, a.tensor, nil), HLA_ERR_DTYPE, names: ["b"], "mixed summary dtypes")
        // a different chunk_size is not a mismatch
        let st = t.newState(base)
        var c = base
        c.chunk_size = 3
        check(t.forward(c, path: 0, into: out, initial: st, final: st), "other chunk_size")
    }

    /// Every truncation and every single-byte change of small serialized state rows and summary rows is rejected.
    func testCorruptBytes() {
        let small = Shape(B: 1, T: 3, H: 1, Hkv: 1, dk: 2, dv: 1)
        for dtype in [F32, F64] {
            for op in allOps {
                let c = makeConfig(small, Options(op: op, decay: 0.9))
                // state rows and summary rows that hold data (3 tokens)
                let st = newState(c, dtype: dtype, slots: 1)
                let seg: RowBuf
                if dtype == F64 {
                    let tt = Typed<Double>(Problem(small, seed: 7))
                    _ = tt.forward(c, path: 0, final: st); seg = tt.summarize(c, 0, 3)
                } else {
                    let tt = Typed<Float>(Problem(small, seed: 7))
                    _ = tt.forward(c, path: 0, final: st); seg = tt.summarize(c, 0, 3)
                }
                let stateBytes = serializeState(c, st), segBytes = serializeSummary(c, seg)
                for (kind, bytes) in [("state", stateBytes), ("summary", segBytes)] {
                    func load(_ b: [UInt8]) -> hla_status { deserialize(b, summary: kind == "summary").0 }
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
                // a state's bytes are not a summary's, and vice versa
                var dc = hla_config()
                _ = hla_config_init(&dc, configSize)
                let d1 = Tn(nil, 0, [0], owner: nil), d2 = Tn(nil, 0, [0], owner: nil)
                defer { keepAlive(d1, d2) }
                expect(stateBytes.withUnsafeBytes { hla_summary_deserialize($0.baseAddress, UInt($0.count), &dc, d1.ptr, d2.ptr) },
                       HLA_ERR_CORRUPT, names: ["summary"], "state bytes as summary")
                expect(segBytes.withUnsafeBytes { hla_state_deserialize($0.baseAddress, UInt($0.count), &dc, d1.ptr) },
                       HLA_ERR_CORRUPT, names: ["state"], "summary bytes as state")
            }
        }
    }

    /// ENGINE BUG (reported to the lead): hla_state_copy_rows documents src_rows and dst_rows as int64/int32 [R]
    /// index tensors (unlike reset_rows/serialize, no "NULL = every row"), and rejects a NULL src_rows, but a NULL
    /// dst_rows is accepted and silently copies into rows 0..R-1. Either reject it (HLA_ERR_NULL_POINTER naming
    /// dst_rows, as asserted here) or document the meaning in the header.
    func testCopyRowsNullDestination() {
        let c = cfg(), st = newState(c, dtype: F64, slots: 3)
        st.setRow(2, [Double](repeating: 7, count: st.n))
        expect(cCopyRows(c, st.tensor, idx([2]), nil), HLA_ERR_NULL_POINTER, names: ["dst_rows"], "copy_rows dst_rows NULL")
        XCTAssertEqual(st.row(0), [Double](repeating: 0, count: st.n), "a failing copy_rows wrote row 0")
    }

    func testStatusStrings() {
        let names = ["HLA_OK", "HLA_ERR_NULL_POINTER", "HLA_ERR_INVALID_ARGUMENT", "HLA_ERR_OVERFLOW", "HLA_ERR_MISMATCH",
                     "HLA_ERR_CORRUPT", "HLA_ERR_BUFFER_TOO_SMALL", "HLA_ERR_OUT_OF_MEMORY", "HLA_ERR_DTYPE"]
        for (i, n) in names.enumerated() { XCTAssertEqual(statusName(hla_status(rawValue: UInt32(i))), n) }
        XCTAssertEqual(HLA_ERR_DTYPE.rawValue, 8)
        for bad: UInt32 in [9, 99, .max] { XCTAssertEqual(statusName(hla_status(rawValue: bad)), "HLA_ERR_UNKNOWN") }
        XCTAssertEqual(String(cString: hla_version()), "\(HLA_VERSION_MAJOR).\(HLA_VERSION_MINOR).\(HLA_VERSION_PATCH)")
        XCTAssertEqual(HLA_VERSION_MAJOR, 1)
    }
}
