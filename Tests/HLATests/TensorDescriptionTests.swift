// Bad hla_tensor descriptions (SPEC §6): unknown or wrong element types, mixed types, wrong ndim, negative or
// overflowing shapes and strides, overlapping output and state strides, bad cu_seqlens. Each returns its status
// naming the argument, and nothing is written. Also hla_tensor_init.
import CHLA
import XCTest
@testable import HLA

final class TensorDescriptionTests: XCTestCase {
    let s = Shape(B: 2, T: 5, H: 4, Hkv: 2, dk: 3, dv: 2)
    lazy var cfg = makeConfig(s, Options(op: opHLA2, decay: 0.9))

    /// Run hla_forward / hla_reference / hla_summarize (and hla_step, for rank-3 edits) with one tensor edited;
    /// every call must fail with `want` naming `names`, and write nothing.
    func expectAll(_ what: String, _ want: hla_status, names: [String], file: StaticString = #filePath, line: UInt = #line,
                   edit: (_ q: Tn, _ k: Tn, _ v: Tn, _ o: Tn, _ cu: inout Tn?) -> Void) {
        let t = Typed<Double>(Problem(s, seed: 21))
        let out = Buf<Double>(t.p.outCount, fill: sentinel)
        let sm = newSummary(cfg, dtype: F64, rows: s.B)
        sm.setRow(0, [Double](repeating: sentinel, count: sm.n)); sm.setRow(1, [Double](repeating: sentinel, count: sm.n))
        let st = RowBuf(dtype: F64, rows: s.B, n: stateElements(cfg), fill: sentinel)
        for fn in ["hla_forward", "hla_reference", "hla_summarize"] {
            let q = t.qT(), k = t.kT(), v = t.vT(), o = t.oT(out)
            var cu: Tn? = nil
            edit(q, k, v, o, &cu)
            let r: hla_status
            switch fn {
            case "hla_forward": r = cForward(cfg, 0, q, k, v, o, cu: cu, final: st.tensor)
            case "hla_reference": r = cReference(cfg, q, k, v, o, cu: cu)
            default:
                if names.contains(where: { $0.hasPrefix("output") }) { continue }   // summarize has no output
                r = cSummarize(cfg, q, k, v, cu: cu, summary: sm.tensor, lengths: sm.lengthsTensor)
            }
            expectStatus(r, want, names: names + [fn], "\(fn): \(what)", file: file, line: line)
        }
        XCTAssertTrue(out.array.allSatisfy { $0 == sentinel }, "\(what): output written", file: file, line: line)
        XCTAssertTrue(st.values.allSatisfy { $0 == sentinel }, "\(what): state written", file: file, line: line)
        XCTAssertTrue(sm.values.allSatisfy { $0 == sentinel }, "\(what): summary written", file: file, line: line)
        XCTAssertTrue(sm.lengthValues.allSatisfy { $0 == -1 }, "\(what): lengths written", file: file, line: line)
    }

    func testElementTypes() {
        for bad: Int32 in [6, 9, -1, .max] {
            expectAll("q.dtype \(bad)", HLA_ERR_DTYPE, names: ["q.dtype"]) { q, _, _, _, _ in q.ptr.pointee.dtype = bad }
            expectAll("v.dtype \(bad)", HLA_ERR_DTYPE, names: ["v.dtype"]) { _, _, v, _, _ in v.ptr.pointee.dtype = bad }
        }
        expectAll("q int64", HLA_ERR_DTYPE, names: ["q.dtype", "int64"]) { q, _, _, _, _ in q.ptr.pointee.dtype = I64 }
        expectAll("q int32", HLA_ERR_DTYPE, names: ["q.dtype"]) { q, _, _, _, _ in q.ptr.pointee.dtype = I32 }
        // mixed floating types (the memory is only ever described, never read, before the check)
        expectAll("k float32", HLA_ERR_DTYPE, names: ["k.dtype", "float32"]) { _, k, _, _, _ in k.ptr.pointee.dtype = F32 }
        expectAll("v bfloat16", HLA_ERR_DTYPE, names: ["v.dtype", "bfloat16"]) { _, _, v, _, _ in v.ptr.pointee.dtype = BF16 }
        expectAll("output float16", HLA_ERR_DTYPE, names: ["output.dtype", "float16"]) { _, _, _, o, _ in o.ptr.pointee.dtype = F16 }
    }

    func testRankAndShape() {
        for nd: Int32 in [0, 3, 5, -1, .min] {
            expectAll("q.ndim \(nd)", HLA_ERR_INVALID_ARGUMENT, names: ["q.ndim"]) { q, _, _, _, _ in q.ptr.pointee.ndim = nd }
        }
        expectAll("output ndim 3", HLA_ERR_INVALID_ARGUMENT, names: ["output.ndim"]) { _, _, _, o, _ in o.ptr.pointee.ndim = 3 }
        expectAll("k heads 3", HLA_ERR_MISMATCH, names: ["k.shape"]) { _, k, _, _, _ in k.setShape(2, 3) }
        expectAll("v features 3", HLA_ERR_MISMATCH, names: ["v.shape"]) { _, _, v, _, _ in v.setShape(3, 3) }
        expectAll("k of 4 tokens", HLA_ERR_MISMATCH, names: ["k.shape"]) { _, k, _, _, _ in k.setShape(1, 4) }
        expectAll("v batch 1", HLA_ERR_MISMATCH, names: ["v.shape"]) { _, _, v, _, _ in v.setShape(0, 1) }
        expectAll("output heads 2", HLA_ERR_MISMATCH, names: ["output.shape"]) { _, _, _, o, _ in o.setShape(2, 2) }
        expectAll("q dk 4", HLA_ERR_MISMATCH, names: ["q.shape"]) { q, _, _, _, _ in q.setShape(3, 4) }
        expectAll("k shape -2", HLA_ERR_INVALID_ARGUMENT, names: ["k.shape[3]"]) { _, k, _, _, _ in k.setShape(3, -2) }
        expectAll("v shape Int64.min", HLA_ERR_INVALID_ARGUMENT, names: ["v.shape[0]"]) { _, _, v, _, _ in v.setShape(0, .min) }
        // a step tensor is [R, H, D]: rank 4 is refused
        let t = Typed<Double>(Problem(s, seed: 22)), st = t.newState(cfg), out = t.outBuf()
        expectStatus(cStep(cfg, t.qT(), t.kStep(0), t.vStep(0), t.oStep(out, 0), state: st.tensor), HLA_ERR_INVALID_ARGUMENT,
                     names: ["hla_step", "q.ndim"], "step q rank 4")
        expectStatus(cStep(cfg, t.qStep(0), t.kStep(0), t.vStep(0), t.oStep(out, 0), state: tensor(Buf<Double>(4 * st.n, fill: 0), F64, [2, 2, st.n])),
                     HLA_ERR_INVALID_ARGUMENT, names: ["hla_step", "state.ndim"], "state rank 3")
        XCTAssertTrue(out.array.allSatisfy { $0.isNaN })
    }

    func testOverflowingShapesAndStrides() {
        expectAll("q shape Int64.max", HLA_ERR_OVERFLOW, names: ["q"]) { q, _, _, _, _ in q.setShape(1, .max) }
        expectAll("k stride Int64.max", HLA_ERR_OVERFLOW, names: ["k", "strides[0]"]) { _, k, _, _, _ in k.setStride(0, .max) }
        expectAll("v stride Int64.min", HLA_ERR_OVERFLOW, names: ["v"]) { _, _, v, _, _ in v.setStride(2, .min) }
        expectAll("shape·stride overflow", HLA_ERR_OVERFLOW, names: ["q", "extent"]) { q, _, _, _, _ in q.setShape(1, 1 << 40); q.setStride(1, 1 << 40) }
        expectAll("extent sum overflow", HLA_ERR_OVERFLOW, names: ["q", "extent"]) { q, _, _, _, _ in
            q.setShape(0, 1 << 31); q.setStride(0, 1 << 31); q.setShape(1, 1 << 31); q.setStride(1, 1 << 31)
        }
        // hla_tensor_init checks the same
        var t = hla_tensor()
        let big: [Int64] = [1 << 40, 1 << 40]
        expectStatus(hla_tensor_init(&t, nil, F32, 2, big, nil), HLA_ERR_OVERFLOW, names: ["hla_tensor_init"], "contiguous product overflows")
        expectStatus(hla_tensor_init(&t, nil, F32, 2, [2, -1], nil), HLA_ERR_INVALID_ARGUMENT, names: ["shape[1]"], "negative shape")
        expectStatus(hla_tensor_init(&t, nil, F32, 0, [2], nil), HLA_ERR_INVALID_ARGUMENT, names: ["ndim"], "ndim 0")
        expectStatus(hla_tensor_init(&t, nil, F32, 5, [1, 1, 1, 1, 1], nil), HLA_ERR_INVALID_ARGUMENT, names: ["ndim"], "ndim 5")
        expectStatus(hla_tensor_init(&t, nil, 17, 1, [2], nil), HLA_ERR_DTYPE, names: ["dtype"], "unknown dtype")
        expectStatus(hla_tensor_init(&t, nil, F32, 2, [2, 3], [Int64.max, 1]), HLA_ERR_OVERFLOW, names: ["hla_tensor_init"], "stride overflow")
    }

    /// hla_tensor_init fills contiguous strides (or the given ones) and the fields, also for a NULL data pointer.
    func testTensorInit() {
        var t = hla_tensor()
        let data = Buf<Float>(24, fill: 0)
        check(hla_tensor_init(&t, data.raw, BF16, 3, [2, 3, 4], nil), "init")
        XCTAssertEqual(t.data, data.raw); XCTAssertEqual(t.dtype, BF16); XCTAssertEqual(t.ndim, 3)
        XCTAssertEqual([t.shape.0, t.shape.1, t.shape.2], [2, 3, 4]); XCTAssertEqual([t.strides.0, t.strides.1, t.strides.2], [12, 4, 1])
        check(hla_tensor_init(&t, nil, I64, 2, [5, 0], [1, -7]), "init with strides and an empty dimension")
        XCTAssertNil(t.data); XCTAssertEqual([t.strides.0, t.strides.1], [1, -7]); XCTAssertEqual(t.shape.1, 0)
        // a tensor described by hla_tensor_init is accepted by the library
        let s1 = Shape(B: 1, T: 2, H: 1, Hkv: 1, dk: 2, dv: 1)
        let c = makeConfig(s1, Options(scale: 1))
        let q = Buf<Double>(4, fill: 1), out = Buf<Double>(2, fill: .nan)
        var qt = hla_tensor(), ot = hla_tensor()
        check(hla_tensor_init(&qt, q.raw, F64, 4, [1, 2, 1, 2], nil), "q")
        check(hla_tensor_init(&ot, out.raw, F64, 4, [1, 2, 1, 1], nil), "output")
        var cc = c
        let v = Buf<Double>(2, fill: 1)
        var vt = hla_tensor()
        check(hla_tensor_init(&vt, v.raw, F64, 4, [1, 2, 1, 1], nil), "v")
        check(hla_forward(&cc, 0, &qt, &qt, &vt, &ot, nil, nil, nil, nil), "forward through hla_tensor_init tensors")
        // q = k = [1, 1], scale 1, v = 1: o_1 = (q·k)² v = 4, o_2 = Σ_{i≤j≤2} (q·k)(k·q) v = 3 · 4 = 12
        XCTAssertEqual(out.array, [4, 12])
        keepAlive(q, out, v, data)
    }

    /// Tensors the library writes must not address one element twice; state rows must be contiguous and disjoint.
    func testOverlappingWrittenTensors() {
        expectAll("output feature stride 0", HLA_ERR_INVALID_ARGUMENT, names: ["output", "overlap"]) { _, _, _, o, _ in o.setStride(3, 0) }
        expectAll("output heads overlapping", HLA_ERR_INVALID_ARGUMENT, names: ["output", "overlap"]) { _, _, _, o, _ in o.setStride(2, 1) }
        expectAll("output time stride 0", HLA_ERR_INVALID_ARGUMENT, names: ["output", "overlap"]) { _, _, _, o, _ in o.setStride(1, 0) }
        // inputs may overlap (broadcast): the same edit on q is accepted
        let t = Typed<Double>(Problem(s, seed: 23)), out = t.outBuf()
        let q0 = t.qT()
        q0.setStride(2, 0)
        check(cForward(cfg, 0, q0, t.kT(), t.vT(), t.oT(out)), "a broadcast q is an input")
        // states and summaries
        let n = stateElements(cfg)
        let mem = Buf<Double>(4 * n, fill: sentinel)
        let cases: [(String, Tn, hla_status)] = [
            ("rows overlapping", tensor(mem, F64, [2, n], strides: [n - 1, 1]), HLA_ERR_INVALID_ARGUMENT),
            ("row stride 0", tensor(mem, F64, [2, n], strides: [0, 1]), HLA_ERR_INVALID_ARGUMENT),
            ("elements strided", tensor(mem, F64, [2, n], strides: [2 * n, 2]), HLA_ERR_INVALID_ARGUMENT),
            ("row of n - 1", tensor(mem, F64, [2, n - 1]), HLA_ERR_MISMATCH),
        ]
        for (what, st, want) in cases {
            expectStatus(cForward(cfg, 0, t.qT(), t.kT(), t.vT(), t.oT(out), final: st), want, names: ["final"], "final: \(what)")
            expectStatus(cStep(cfg, t.qStep(0), t.kStep(0), t.vStep(0), t.oStep(out, 0), state: st), want, names: ["state"], "step state: \(what)")
            expectStatus(cReset(cfg, st), want, names: ["state"], "reset: \(what)")
        }
        XCTAssertTrue(mem.array.allSatisfy { $0 == sentinel })
        let m = summaryElements(cfg), smem = Buf<Double>(4 * m, fill: sentinel)
        expectStatus(cSummarize(cfg, t.qT(), t.kT(), t.vT(), summary: tensor(smem, F64, [2, m], strides: [1, 1]), lengths: nil),
                     HLA_ERR_INVALID_ARGUMENT, names: ["summary"], "summary rows overlapping")
        XCTAssertTrue(smem.array.allSatisfy { $0 == sentinel })
        let l = Buf<Int64>(2, fill: -1)
        expectStatus(cSummarize(cfg, t.qT(), t.kT(), t.vT(), summary: tensor(smem, F64, [2, m]), lengths: tensor(l, I64, [2], strides: [0])),
                     HLA_ERR_INVALID_ARGUMENT, names: ["lengths"], "lengths stride 0")
        expectStatus(cSummarize(cfg, t.qT(), t.kT(), t.vT(), summary: tensor(smem, F64, [2, m]), lengths: idx([0, 0], I32)),
                     HLA_ERR_DTYPE, names: ["lengths", "int64"], "int32 lengths output")
    }

    func testBadCuSeqlens() {
        // packed inputs: B = 1, T = 10
        let s1 = Shape(B: 1, T: 10, H: 4, Hkv: 2, dk: 3, dv: 2)
        let t = Typed<Double>(Problem(s1, seed: 24))
        let cases: [(String, Tn, hla_status, [String])] = [
            ("not starting at 0", idx([1, 4, 10]), HLA_ERR_INVALID_ARGUMENT, ["cu_seqlens[0]"]),
            ("an empty sequence", idx([0, 4, 4, 10]), HLA_ERR_INVALID_ARGUMENT, ["increasing"]),
            ("decreasing", idx([0, 6, 3, 10]), HLA_ERR_INVALID_ARGUMENT, ["increasing"]),
            ("ending before T", idx([0, 4, 9]), HLA_ERR_INVALID_ARGUMENT, ["T = 10"]),
            ("ending after T", idx([0, 4, 11]), HLA_ERR_INVALID_ARGUMENT, ["T = 10"]),
            ("one entry", idx([0]), HLA_ERR_INVALID_ARGUMENT, ["N + 1"]),
            ("no entry", idx([]), HLA_ERR_INVALID_ARGUMENT, ["N + 1"]),
            ("negative offset", idx([0, -3, 10]), HLA_ERR_INVALID_ARGUMENT, ["increasing"]),
            ("int32 overflowing", idx([0, 1 << 33, 10], I32), HLA_ERR_INVALID_ARGUMENT, ["cu_seqlens"]),
            ("float64", tensor(Buf<Double>([0, 4, 10]), F64, [3]), HLA_ERR_DTYPE, ["cu_seqlens"]),
            ("2-D", tensor(Buf<Int64>([0, 4, 10, 0]), I64, [2, 2]), HLA_ERR_INVALID_ARGUMENT, ["cu_seqlens.ndim"]),
        ]
        let out = t.outBuf()
        for (what, cu, want, names) in cases {
            let st = RowBuf(dtype: F64, rows: 3, n: stateElements(cfg), fill: sentinel)
            expectStatus(cForward(cfg, 0, t.qT(), t.kT(), t.vT(), t.oT(out), cu: cu, final: st.tensor), want, names: names + ["hla_forward"], "forward \(what)")
            expectStatus(cReference(cfg, t.qT(), t.kT(), t.vT(), t.oT(out), cu: cu), want, names: names + ["hla_reference"], "reference \(what)")
            let sm = newSummary(cfg, dtype: F64, rows: 3)
            expectStatus(cSummarize(cfg, t.qT(), t.kT(), t.vT(), cu: cu, summary: sm.tensor, lengths: sm.lengthsTensor), want,
                         names: names + ["hla_summarize"], "summarize \(what)")
            XCTAssertTrue(st.values.allSatisfy { $0 == sentinel }); XCTAssertTrue(sm.lengthValues.allSatisfy { $0 == -1 })
        }
        XCTAssertTrue(out.array.allSatisfy { $0.isNaN })
        // cu_seqlens with a batch of 2
        let t2 = Typed<Double>(Problem(Shape(B: 2, T: 10, H: 4, Hkv: 2, dk: 3, dv: 2), seed: 25))
        expectStatus(cForward(cfg, 0, t2.qT(), t2.kT(), t2.vT(), t2.oT(t2.outBuf()), cu: idx([0, 4, 10])), HLA_ERR_INVALID_ARGUMENT,
                     names: ["cu_seqlens", "B = 1"], "cu_seqlens with B = 2")
        // N sequences need N state rows and N summary rows
        let few = RowBuf(dtype: F64, rows: 1, n: stateElements(cfg), fill: sentinel)
        expectStatus(cForward(cfg, 0, t.qT(), t.kT(), t.vT(), t.oT(out), cu: idx([0, 4, 10]), final: few.tensor), HLA_ERR_MISMATCH,
                     names: ["final"], "2 sequences, 1 state row")
        let sm1 = newSummary(cfg, dtype: F64, rows: 1)
        expectStatus(cSummarize(cfg, t.qT(), t.kT(), t.vT(), cu: idx([0, 4, 10]), summary: sm1.tensor, lengths: nil), HLA_ERR_MISMATCH,
                     names: ["summary"], "2 sequences, 1 summary row")
        expectStatus(cSummarize(cfg, t.qT(), t.kT(), t.vT(), cu: idx([0, 4, 10]), summary: newSummary(cfg, dtype: F64, rows: 2).tensor,
                                lengths: idx([0, 0, 0])), HLA_ERR_MISMATCH, names: ["lengths"], "3 lengths for 2 sequences")
        // and valid ones pass (so the failures above are about the offsets)
        for cu in [idx([0, 4, 10]), idx([0, 1, 2, 10], I32), idx([0, 10])] {
            check(cForward(cfg, 0, t.qT(), t.kT(), t.vT(), t.oT(out), cu: cu), "valid cu_seqlens")
        }
    }
}
