// Many sequences in one state tensor (SPEC §7, §8): a [slots, n] cache whose rows are selected by int64/int32
// row indices. Row-indexed prefills and steps equal separate one-row states; hla_state_copy_rows and
// hla_state_reset_rows move and clear rows; rows not named are never touched; padded row strides work.
import CHLA
import XCTest
@testable import HLA

final class RowsTests: XCTestCase {
    let s = Shape(B: 1, T: 12, H: 4, Hkv: 2, dk: 5, dv: 3)

    /// Continuous batching: 3 sequences live in rows [4, 1, 6] of a 7-row cache (prefilled together), then
    /// decode steps for varying subsets of them (int64 and int32 rows), interleaved with a second prefill.
    /// Each sequence is also run alone through its own one-row state; outputs and rows must be identical.
    func batching<E: Elem>(_ type: E.Type, _ o: Options, tol: Double) {
        let cfg = makeConfig(s, o)
        let N = 3, slots = 7, live = [4, 1, 6]
        // per sequence: a 12-token problem: tokens 0..<5 prefill, 5..<12 decode
        let seqs = (0..<N).map { Typed<E>(Problem(s, seed: 80_000 + UInt64($0) * 7 + UInt64(o.op)).rounded(to: E.dtype)) }
        let cache = RowBuf(dtype: stateType(E.dtype), rows: slots, n: stateElements(cfg), fill: sentinel)
        for r in live { cache.setRow(r, [Double](repeating: 0, count: cache.n)) }
        // separate states and outputs
        let alone = (0..<N).map { seqs[$0].newState(cfg) }
        let aloneOut = (0..<N).map { seqs[$0].outBuf() }
        // batched inputs: the N sequences as a batch [N, T, ...] (prefill), and [R, ...] step tensors
        let batch = Typed<E>(Problem.stack(seqs.map { $0.p }))
        let bOut = batch.outBuf()
        // prefill tokens 0..<5 of all three through rows `live` (initial = final = cache, in place)
        check(cForward(cfg, 0, batch.qT(0, 5), batch.kT(0, 5), batch.vT(0, 5), batch.oT(bOut, 0, 5),
                       initial: cache.tensor, final: cache.tensor, rows: idx(live)), "prefill on rows")
        for i in 0..<N { check(seqs[i].forward(cfg, path: 0, 0, 5, into: aloneOut[i], initial: alone[i], final: alone[i]), "prefill alone") }
        // decode: at each token the live subset changes; sequence i's token counter advances only when it steps
        var next = [5, 5, 5]
        let schedule: [[Int]] = [[0, 1, 2], [2, 0], [1], [0, 1, 2], [1, 2], [0], [2, 1, 0], [0, 1, 2], [1, 0], [2], [0, 2], [1, 0, 2],
                                 [1, 2], [2]]
        for (step, subset) in schedule.enumerated() {
            let active = subset.filter { next[$0] < s.T }
            if active.isEmpty { continue }
            let R = active.count
            // gather this token of each active sequence into [R, H, D] step tensors
            let q = Buf<E>(R * s.H * s.dk, fill: E.nan), k = Buf<E>(R * s.Hkv * s.dk, fill: E.nan)
            let v = Buf<E>(R * s.Hkv * s.dv, fill: E.nan), out = Buf<E>(R * s.H * s.dv, fill: E.nan)
            for (j, i) in active.enumerated() {
                let t = next[i]
                for x in 0..<(s.H * s.dk) { q[j * s.H * s.dk + x] = seqs[i].q[t * s.H * s.dk + x] }
                for x in 0..<(s.Hkv * s.dk) { k[j * s.Hkv * s.dk + x] = seqs[i].k[t * s.Hkv * s.dk + x] }
                for x in 0..<(s.Hkv * s.dv) { v[j * s.Hkv * s.dv + x] = seqs[i].v[t * s.Hkv * s.dv + x] }
            }
            let rowsDtype = step % 2 == 0 ? I64 : I32
            check(cStep(cfg, tensor(q, E.dtype, [R, s.H, s.dk]), tensor(k, E.dtype, [R, s.Hkv, s.dk]),
                        tensor(v, E.dtype, [R, s.Hkv, s.dv]), tensor(out, E.dtype, [R, s.H, s.dv]),
                        state: cache.tensor, rows: idx(active.map { live[$0] }, rowsDtype)), "step on rows \(active)")
            for (j, i) in active.enumerated() {
                let t = next[i]
                seqs[i].steps(cfg, alone[i], t, t + 1, into: aloneOut[i])
                let got = (0..<(s.H * s.dv)).map { out[j * s.H * s.dv + $0].d }
                let want = (0..<(s.H * s.dv)).map { aloneOut[i][t * s.H * s.dv + $0].d }
                XCTAssertLessThanOrEqual(relErr(got, want), tol, "\(o) sequence \(i) token \(t) step \(step)")
                next[i] += 1
            }
        }
        XCTAssertEqual(next, [s.T, s.T, s.T])
        // the prefill outputs of the batch equal each sequence's
        for i in 0..<N {
            let got = (0..<(5 * s.H * s.dv)).map { bOut[i * s.T * s.H * s.dv + $0].d }
            let want = (0..<(5 * s.H * s.dv)).map { aloneOut[i][$0].d }
            XCTAssertLessThanOrEqual(relErr(got, want), tol, "\(o) prefill outputs of sequence \(i)")
        }
        // rows hold exactly the separate states; the other rows were never touched
        for i in 0..<N { XCTAssertLessThanOrEqual(relErr(cache.row(live[i]), alone[i].row(0)), tol, "\(o) row of sequence \(i)") }
        XCTAssertGreaterThan(alone[0].values.map(abs).max()!, 1e-2)
        for r in 0..<slots where !live.contains(r) { XCTAssertTrue(cache.row(r).allSatisfy { $0 == sentinel }, "\(o) row \(r) touched") }
        // and the whole sequences agree with the brute force (the separate runs are right, not just equal)
        if E.self == Double.self {
            for i in 0..<N { XCTAssertLessThanOrEqual(relErr(aloneOut[i].doubles, BruteForce.run(seqs[i].p, o)), 1e-10, "\(o) sequence \(i)") }
        }
    }

    func optionsList() -> [Options] {
        allOps.flatMap { op in [Options(op: op, decay: 0.85, chunk: 4),
                                Options(op: op, masked: false, normalize: true, decay: 1, ridge: 0, chunk: 3),
                                Options(op: op, normalize: true, decay: 0.9, ridge: op == opHLA2 ? 0.25 : 0, chunk: 2)] }
    }
    func testRowsFloat64() { for o in optionsList() { batching(Double.self, o, tol: 1e-12) } }
    func testRowsFloat32() { for o in optionsList() { batching(Float.self, o, tol: 1e-6) } }
    func testRowsBFloat16() { for o in optionsList() where !o.normalize { batching(BFloat16.self, o, tol: 1e-2) } }

    /// Steps without rows use rows 0..R-1 of a larger state; a state with padded rows (row stride > n) and one
    /// with a negative row stride are read and written in place without touching the padding.
    func testImplicitRowsAndRowStrides() {
        let s1 = Shape(B: 2, T: 6, H: 2, Hkv: 1, dk: 4, dv: 3)
        for op in allOps {
            let cfg = makeConfig(s1, Options(op: op, decay: 0.9, chunk: 2))
            let t = Typed<Double>(Problem(s1, seed: 90 + UInt64(op)))
            let want = t.forward(cfg, path: 1)
            let ref = t.newState(cfg)
            _ = t.forward(cfg, path: 1, final: ref)
            let n = ref.n
            // 4 slots, the call has 2 sequences: rows 0 and 1 are used
            let big = RowBuf(dtype: F64, rows: 4, n: n, fill: 0)
            for r in 2..<4 { big.setRow(r, [Double](repeating: sentinel, count: n)) }
            let out = t.outBuf()
            t.steps(cfg, big, 0, s1.T, into: out)
            XCTAssertLessThanOrEqual(relErr(out.doubles, want), 1e-12)
            XCTAssertEqual(big.rows([0, 1]), ref.values)
            XCTAssertTrue(big.rows([2, 3]).allSatisfy { $0 == sentinel })
            // padded rows: row stride n + 5
            let pad = Buf<Double>(2 * (n + 5), fill: sentinel)
            for r in 0..<2 { for j in 0..<n { pad[r * (n + 5) + j] = 0 } }
            let padT = { tensor(pad, F64, [2, n], strides: [n + 5, 1]) }
            let out2 = t.outBuf()
            check(cForward(cfg, 0, t.qT(0, 3), t.kT(0, 3), t.vT(0, 3), t.oT(out2, 0, 3), initial: padT(), final: padT()), "padded prefill")
            check(cForward(cfg, 2, t.qT(3, 6), t.kT(3, 6), t.vT(3, 6), t.oT(out2, 3, 6), initial: padT(), final: padT()), "padded continue")
            XCTAssertLessThanOrEqual(relErr(out2.doubles, want), 1e-10)
            for r in 0..<2 {
                XCTAssertLessThanOrEqual(relErr((0..<n).map { pad[r * (n + 5) + $0] }, ref.row(r)), 1e-10)
                XCTAssertTrue((n..<(n + 5)).allSatisfy { pad[r * (n + 5) + $0] == sentinel }, "padding of row \(r) written")
            }
            // a negative row stride: row 0 is the last one in memory
            let rev = Buf<Double>(2 * n, fill: 0)
            let out3 = t.outBuf()
            check(cForward(cfg, 0, t.qT(), t.kT(), t.vT(), t.oT(out3), final: tensor(rev, F64, [2, n], strides: [-n, 1], offset: n)), "negative row stride")
            XCTAssertLessThanOrEqual(relErr((0..<n).map { rev[n + $0] }, ref.row(0)), 1e-10, "row 0 at the end")
            XCTAssertLessThanOrEqual(relErr((0..<n).map { rev[$0] }, ref.row(1)), 1e-10, "row 1 at the start")
            XCTAssertLessThanOrEqual(relErr(out3.doubles, want), 1e-10)
        }
    }

    /// hla_state_copy_rows: dst_rows[i] receives what src_rows[i] held before the call (src may repeat and overlap
    /// dst); hla_state_reset_rows zeroes exactly the named rows (or every row).
    func testCopyAndResetRows() {
        let cfg = makeConfig(s, Options(op: opHLA3, decay: 0.9))
        for dtype in [F64, F32] {
            for rowsType in [I64, I32] {
                let st = newState(cfg, dtype: dtype, slots: 6)
                let n = st.n
                func fill(_ r: Int) -> [Double] { (0..<n).map { Double(r * 1000 + $0 % 997) + 0.5 } }
                for r in 0..<6 { st.setRow(r, fill(r)) }
                // a rotation with overlap and a repeated source: 1→0, 0→2, 2→1, 4→3, 4→5
                check(cCopyRows(cfg, st.tensor, idx([1, 0, 2, 4, 4], rowsType), idx([0, 2, 1, 3, 5], rowsType)), "copy_rows")
                XCTAssertEqual(st.row(0), fill(1)); XCTAssertEqual(st.row(2), fill(0)); XCTAssertEqual(st.row(1), fill(2))
                XCTAssertEqual(st.row(3), fill(4)); XCTAssertEqual(st.row(5), fill(4)); XCTAssertEqual(st.row(4), fill(4))
                // copying a row onto itself and an empty copy change nothing
                let before = st.bytes
                check(cCopyRows(cfg, st.tensor, idx([3], rowsType), idx([3], rowsType)), "self copy")
                check(cCopyRows(cfg, st.tensor, idx([], rowsType), idx([], rowsType)), "empty copy")
                XCTAssertEqual(st.bytes, before)
                // reset two rows
                check(cReset(cfg, st.tensor, rows: idx([5, 1], rowsType)), "reset rows")
                for r in 0..<6 { XCTAssertEqual(st.row(r).allSatisfy { $0 == 0 }, r == 5 || r == 1, "row \(r) after reset [5, 1]") }
                XCTAssertEqual(st.row(0), fill(1))
                // reset everything
                check(cReset(cfg, st.tensor), "reset all")
                XCTAssertTrue(st.values.allSatisfy { $0 == 0 })
            }
        }
    }

    /// Bad rows: out of range, repeated, the wrong count or type, and rows without a state. Nothing is written.
    func testBadRows() {
        let cfg = makeConfig(s, Options(op: opHLA2, decay: 0.9))
        let t = Typed<Double>(Problem(Shape(B: 2, T: 4, H: 4, Hkv: 2, dk: 5, dv: 3), seed: 3))
        let st = RowBuf(dtype: F64, rows: 4, n: stateElements(cfg), fill: sentinel)
        let out = t.outBuf()
        let cases: [(String, Tn, hla_status, [String])] = [
            ("row -1", idx([0, -1]), HLA_ERR_INVALID_ARGUMENT, ["rows[1]"]),
            ("row = slots", idx([4, 0]), HLA_ERR_INVALID_ARGUMENT, ["rows[0]"]),
            ("row Int64.max", idx([Int(Int64.max), 0]), HLA_ERR_INVALID_ARGUMENT, ["rows"]),
            ("int32 row -2", idx([1, -2], I32), HLA_ERR_INVALID_ARGUMENT, ["rows"]),
            ("repeated row", idx([2, 2]), HLA_ERR_INVALID_ARGUMENT, ["rows", "repeat"]),
            ("too few rows", idx([2]), HLA_ERR_MISMATCH, ["rows"]),
            ("too many rows", idx([0, 1, 2]), HLA_ERR_MISMATCH, ["rows"]),
            ("float rows", tensor(Buf<Double>([0, 1]), F64, [2]), HLA_ERR_DTYPE, ["rows"]),
            ("2-D rows", tensor(Buf<Int64>([0, 1]), I64, [1, 2]), HLA_ERR_INVALID_ARGUMENT, ["rows", "ndim"]),
        ]
        for (what, r, want, names) in cases {
            expectStatus(cForward(cfg, 0, t.qT(), t.kT(), t.vT(), t.oT(out), initial: st.tensor, final: st.tensor, rows: r),
                         want, names: names + ["hla_forward"], "forward \(what)")
            expectStatus(cStep(cfg, t.qStep(0), t.kStep(0), t.vStep(0), t.oStep(out, 0), state: st.tensor, rows: r),
                         want, names: names + ["hla_step"], "step \(what)")
        }
        expectStatus(cForward(cfg, 0, t.qT(), t.kT(), t.vT(), t.oT(out), rows: idx([0, 1])), HLA_ERR_INVALID_ARGUMENT,
                     names: ["rows"], "rows without a state")
        // a state of fewer rows than the call's sequences (no rows given)
        let one = RowBuf(dtype: F64, rows: 1, n: st.n, fill: sentinel)
        expectStatus(cStep(cfg, t.qStep(0), t.kStep(0), t.vStep(0), t.oStep(out, 0), state: one.tensor), HLA_ERR_MISMATCH,
                     names: ["state"], "2 sequences, 1 row")
        // copy and reset
        // (the messages of bad dst_rows say "rows": see testCopyRowsMessagesNameDstRows)
        expectStatus(cCopyRows(cfg, st.tensor, idx([0, 1]), idx([2, 2])), HLA_ERR_INVALID_ARGUMENT, names: ["rows", "repeat"], "copy to a repeated row")
        expectStatus(cCopyRows(cfg, st.tensor, idx([0, 4]), idx([2, 3])), HLA_ERR_INVALID_ARGUMENT, names: ["src_rows[1]"], "copy from row 4 of 4")
        expectStatus(cCopyRows(cfg, st.tensor, idx([0, 1]), idx([2, -1])), HLA_ERR_INVALID_ARGUMENT, names: ["rows[1]"], "copy to row -1")
        expectStatus(cCopyRows(cfg, st.tensor, idx([0, 1, 2]), idx([3])), HLA_ERR_MISMATCH, names: ["rows"], "copy counts differ")
        expectStatus(cReset(cfg, st.tensor, rows: idx([3, 3])), HLA_ERR_INVALID_ARGUMENT, names: ["rows"], "reset a repeated row")
        expectStatus(cReset(cfg, st.tensor, rows: idx([4])), HLA_ERR_INVALID_ARGUMENT, names: ["rows"], "reset row 4 of 4")
        expectStatus(cSummaryToState(cfg, t.summarize(cfg, 0, 4).tensor, st.tensor, rows: idx([1, 1])), HLA_ERR_INVALID_ARGUMENT,
                     names: ["rows"], "summary_to_state repeated row")
        XCTAssertTrue(st.values.allSatisfy { $0 == sentinel }, "a failing call wrote the state")
        XCTAssertTrue(out.array.allSatisfy { $0.isNaN }, "a failing call wrote the output")
        // the same calls with valid rows succeed (the failures above are about the rows)
        check(cForward(cfg, 0, t.qT(), t.kT(), t.vT(), t.oT(out), initial: st.tensor, final: st.tensor, rows: idx([3, 0])), "valid rows")
        check(cCopyRows(cfg, st.tensor, idx([0, 1]), idx([2, 1])), "valid copy")
    }

    /// ENGINE BUG (reported to the lead): hla_last_error() must name the offending argument, but the index checks
    /// of Engine.block/Indices.rows hard-code "rows", so a bad dst_rows of hla_state_copy_rows is reported as
    /// "rows ..." (an argument copy_rows does not have). Indices.rows should use the tensor's name (rowsName).
    func testCopyRowsMessagesNameDstRows() {
        let cfg = makeConfig(s, Options(op: opHLA2))
        let st = newState(cfg, dtype: F64, slots: 4)
        expectStatus(cCopyRows(cfg, st.tensor, idx([0, 1]), idx([2, 2])), HLA_ERR_INVALID_ARGUMENT, names: ["dst_rows"], "copy to a repeated row")
        expectStatus(cCopyRows(cfg, st.tensor, idx([0, 1]), idx([2, -1])), HLA_ERR_INVALID_ARGUMENT, names: ["dst_rows[1]"], "copy to row -1")
        expectStatus(cCopyRows(cfg, st.tensor, idx([0, 1, 2]), idx([3])), HLA_ERR_MISMATCH, names: ["dst_rows"], "copy counts differ")
    }

    /// hla_summary_to_state with rows writes the carry-in of each summary into the named rows only.
    func testSummaryToStateRows() {
        let s2 = Shape(B: 2, T: 9, H: 2, Hkv: 1, dk: 4, dv: 3)
        for op in allOps {
            let cfg = makeConfig(s2, Options(op: op, normalize: op == opAHLA, decay: 0.9, chunk: 4))
            let t = Typed<Double>(Problem(s2, seed: 95))
            let sm = t.summarize(cfg, 0, 5)
            let st = RowBuf(dtype: F64, rows: 5, n: stateElements(cfg), fill: sentinel)
            check(cSummaryToState(cfg, sm.tensor, st.tensor, rows: idx([4, 2])), "summary_to_state rows")
            let direct = stateFrom(cfg, sm)
            XCTAssertEqual(st.row(4), direct.row(0)); XCTAssertEqual(st.row(2), direct.row(1))
            for r in [0, 1, 3] { XCTAssertTrue(st.row(r).allSatisfy { $0 == sentinel }) }
            // the carry continues the sequence
            let out = t.outBuf()
            check(cForward(cfg, 1, t.qT(5, 9), t.kT(5, 9), t.vT(5, 9), t.oT(out, 5, 9), initial: st.tensor, rows: idx([4, 2])), "forward from rows")
            XCTAssertLessThanOrEqual(relErr(out.doubles, t.forward(cfg, path: 0), t.p, tokens: 5..<9), 1e-10)
        }
    }
}

extension Problem {
    /// One-sequence problems of equal shape as the rows of a batch.
    static func stack(_ ps: [Problem]) -> Problem {
        var p = ps[0]
        p.s.B = ps.map { $0.s.B }.reduce(0, +)
        p.q = ps.flatMap { $0.q }; p.k = ps.flatMap { $0.k }; p.v = ps.flatMap { $0.v }
        return p
    }
}
