// Serialized state rows and summary rows (SPEC §6): versioned, carrying their configuration, checksummed.
// Round trips of chosen rows are bit-exact (configuration, rows, lengths); the size protocol (query, too small)
// holds; deserialization into caller tensors checks their description; truncations and byte changes of
// multi-row objects are rejected without writing anything.
import CHLA
import XCTest
@testable import HLA

final class SerializationTests: XCTestCase {
    let s = Shape(B: 3, T: 7, H: 2, Hkv: 1, dk: 3, dv: 2)

    func configs() -> [hla_config] {
        allOps.flatMap { op in [makeConfig(s, Options(op: op, decay: 0.9, chunk: 3)),
                                makeConfig(s, Options(op: op, masked: false, normalize: true, eps: 1e-3, scale: 0.7)),
                                makeConfig(s, Options(op: op, normalize: true, ridge: op == opHLA2 ? 0.5 : 0))] }
    }

    /// States of 3 sequences in a 5-row cache (rows 4, 0, 2); serialize all rows, chosen rows (in any order,
    /// int32 indices), and read them back.
    func testStateRowsRoundTrip() {
        for cfg in configs() {
            for dtype in [F64, F32] {
                let cache = newState(cfg, dtype: dtype, slots: 5)
                for r in [1, 3] { cache.setRow(r, [Double](repeating: sentinel, count: cache.n)) }
                let p = Problem(s, seed: 11)
                let rows = [4, 0, 2]
                if dtype == F64 { check(Typed<Double>(p).forward(cfg, path: 0, into: Typed<Double>(p).outBuf(), initial: cache, final: cache, rows: rows), "prefill") }
                else { check(Typed<Float>(p).forward(cfg, path: 0, into: Typed<Float>(p).outBuf(), initial: cache, final: cache, rows: rows), "prefill") }
                XCTAssertGreaterThan(cache.row(4).map(abs).max()!, 1e-3)
                // every row
                let (r1, c1, all) = deserialize(serializeState(cfg, cache), summary: false)
                check(r1, "deserialize all rows")
                XCTAssertEqual(all?.bytes, cache.bytes); XCTAssertEqual(all?.rows, 5); XCTAssertEqual(all?.dtype, stateType(dtype))
                XCTAssertTrue(sameConfig(c1, cfg), "configuration of the bytes")
                // chosen rows, in the order asked
                for pick in [[2, 4], [4], [0, 2, 4], []] {
                    let (r2, _, got) = deserialize(serializeState(cfg, cache, rows: pick), summary: false)
                    check(r2, "deserialize rows \(pick)")
                    XCTAssertEqual(got?.rows, pick.count)
                    for (i, r) in pick.enumerated() { XCTAssertEqual(got?.rowBytes(i), cache.rowBytes(r), "row \(r) as row \(i)") }
                }
                // int32 rows give the same bytes as int64 rows
                var c = cfg, w: UInt = 0
                let st = cache.tensor, r32 = idx([2, 4], I32)
                var need: UInt = 0
                check(hla_state_serialize(&c, st.p, r32.p, nil, 0, &need), "size query")
                var b32 = [UInt8](repeating: 0, count: Int(need))
                check(b32.withUnsafeMutableBytes { hla_state_serialize(&c, st.p, r32.p, $0.baseAddress, need, &w) }, "int32 rows")
                keepAlive(st, r32)
                XCTAssertEqual(b32, serializeState(cfg, cache, rows: [2, 4]))
                // one row more costs exactly one row of elements
                let one = serializeState(cfg, cache, rows: [0]).count, two = serializeState(cfg, cache, rows: [0, 2]).count
                XCTAssertEqual(two - one, cache.n * cache.es)
            }
        }
    }

    /// Deserialization into caller memory: rows 0..R-1 of a larger (padded) tensor receive the rows, the rest is
    /// untouched; a tensor of too few rows, another row size or another dtype is refused before writing.
    func testDeserializeIntoCallerTensors() {
        let cfg = makeConfig(s, Options(op: opHLA2, decay: 0.8))
        let t = Typed<Double>(Problem(s, seed: 12)), st = t.newState(cfg)
        _ = t.forward(cfg, path: 1, final: st)
        let bytes = serializeState(cfg, st), n = st.n
        func load(_ dst: Tn) -> hla_status {
            var c = hla_config()
            _ = hla_config_init(&c, configSize)
            let r = bytes.withUnsafeBytes { hla_state_deserialize($0.baseAddress, UInt($0.count), &c, dst.ptr) }
            if r == HLA_OK { XCTAssertTrue(sameConfig(c, cfg)) }
            return r
        }
        let padded = Buf<Double>(5 * (n + 2), fill: sentinel)
        check(load(tensor(padded, F64, [5, n], strides: [n + 2, 1])), "into a padded 5-row tensor")
        for r in 0..<5 {
            for j in 0..<(n + 2) {
                let x = padded[r * (n + 2) + j]
                if r < 3 && j < n { XCTAssertEqual(x, st[r * n + j]) } else { XCTAssertEqual(x, sentinel, "row \(r) element \(j)") }
            }
        }
        let small = RowBuf(dtype: F64, rows: 2, n: n, fill: sentinel)
        expectStatus(load(small.tensor), HLA_ERR_MISMATCH, names: ["state"], "2 rows for 3")
        let other = RowBuf(dtype: F64, rows: 3, n: n + 1, fill: sentinel)
        expectStatus(load(other.tensor), HLA_ERR_MISMATCH, names: ["state", "shape[1]"], "another row size")
        let f32 = RowBuf(dtype: F32, rows: 3, n: n, fill: sentinel)
        expectStatus(load(f32.tensor), HLA_ERR_DTYPE, names: ["state"], "float32 tensor for float64 rows")
        for x in [small, other, f32] { XCTAssertTrue(x.values.allSatisfy { $0 == sentinel }) }
    }

    func testSummaryRoundTrip() {
        for cfg in configs() {
            for dtype in [F64, F32] {
                let p = Problem(s, seed: 13)
                let a: RowBuf, b: RowBuf
                if dtype == F64 { let t = Typed<Double>(p); a = t.summarize(cfg, 0, 3); b = t.summarize(cfg, 3, 7) }
                else { let t = Typed<Float>(p); a = t.summarize(cfg, 0, 3); b = t.summarize(cfg, 3, 7) }
                let ab = combine(cfg, a, b)
                for x in [a, ab] {
                    let (r, c, back) = deserialize(serializeSummary(cfg, x), summary: true)
                    check(r, "summary deserialize")
                    XCTAssertEqual(back?.bytes, x.bytes); XCTAssertEqual(back?.lengthValues, x.lengthValues)
                    XCTAssertEqual(back?.dtype, stateType(dtype))
                    XCTAssertTrue(sameConfig(c, cfg))
                }
                XCTAssertEqual(ab.lengthValues, [7, 7, 7])
                // lengths given as int32 serialize the same
                var c = cfg, w: UInt = 0, need: UInt = 0
                let st = ab.tensor, l32 = idx([7, 7, 7], I32)
                check(hla_summary_serialize(&c, st.p, l32.p, nil, 0, &need), "size query")
                var b32 = [UInt8](repeating: 0, count: Int(need))
                check(b32.withUnsafeMutableBytes { hla_summary_serialize(&c, st.p, l32.p, $0.baseAddress, need, &w) }, "int32 lengths")
                keepAlive(st, l32)
                XCTAssertEqual(b32, serializeSummary(cfg, ab))
                // lengths are part of the bytes
                ab.lengths[1] = 8
                XCTAssertNotEqual(serializeSummary(cfg, ab), b32)
            }
        }
    }

    /// Bad lengths and the size protocol.
    func testSizeProtocolAndBadLengths() {
        let cfg = makeConfig(s, Options(op: opAHLA, decay: 0.9))
        let t = Typed<Double>(Problem(s, seed: 14)), sm = t.summarize(cfg, 0, 7), st = t.newState(cfg)
        var c = cfg
        let smT = sm.tensor, stT = st.tensor
        defer { keepAlive(smT, stT) }
        var need: UInt = 0, w: UInt = 0
        check(hla_state_serialize(&c, stT.p, nil, nil, 0, &need), "query")
        XCTAssertGreaterThan(need, UInt(st.rows * st.n * 8))
        var buf = [UInt8](repeating: 0x11, count: Int(need))
        expectStatus(buf.withUnsafeMutableBytes { hla_state_serialize(&c, stT.p, nil, $0.baseAddress, need - 1, &w) }, HLA_ERR_BUFFER_TOO_SMALL,
                     names: ["hla_state_serialize"], "one byte short")
        XCTAssertEqual(w, need)
        XCTAssertTrue(buf.allSatisfy { $0 == 0x11 }, "a too-small buffer was written")
        check(buf.withUnsafeMutableBytes { hla_state_serialize(&c, stT.p, nil, $0.baseAddress, need + 100, &w) }, "larger buffer")
        XCTAssertEqual(w, need)
        for (what, l) in [("negative length", idx([7, -1, 7])), ("too few lengths", idx([7, 7])), ("float lengths", tensor(Buf<Double>([7, 7, 7]), F64, [3]))] {
            let r = hla_summary_serialize(&c, smT.p, l.p, nil, 0, &need)
            keepAlive(l)
            XCTAssertNotEqual(r, HLA_OK, what)
            XCTAssertTrue(lastError().contains("lengths"), "\(what): \(lastError())")
        }
        // combine refuses negative lengths too
        expectStatus(cCombine(cfg, sm.tensor, idx([7, -1, 7]), sm.tensor, sm.lengthsTensor, sm.copy().tensor, nil),
                     HLA_ERR_INVALID_ARGUMENT, names: ["a_lengths[1]"], "combine negative length")
    }

    /// Multi-row objects: every truncation, a flip of every byte, and a changed length or row count are rejected,
    /// and neither the destination tensor nor the configuration is written.
    func testCorruptMultiRowObjects() {
        let s2 = Shape(B: 2, T: 3, H: 1, Hkv: 1, dk: 2, dv: 1)
        let cfg = makeConfig(s2, Options(op: opHLA3, decay: 0.8))
        let t = Typed<Float>(Problem(s2, seed: 15)), st = t.newState(cfg)
        _ = t.forward(cfg, path: 0, final: st)
        let sm = t.summarize(cfg, 0, 3)
        for (kind, bytes) in [("state", serializeState(cfg, st)), ("summary", serializeSummary(cfg, sm))] {
            let summary = kind == "summary"
            let rows = summary ? sm.rows : st.rows, n = summary ? sm.n : st.n
            func tryLoad(_ b: [UInt8]) -> hla_status {
                var c = hla_config()
                _ = hla_config_init(&c, configSize)
                c.dk = 99
                let dst = RowBuf(dtype: F32, rows: rows, n: n, fill: sentinel)
                let dT = dst.tensor, lT = dst.lengthsTensor
                let r = b.withUnsafeBytes { raw -> hla_status in
                    let p = raw.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!
                    return summary ? hla_summary_deserialize(p, UInt(b.count), &c, dT.ptr, lT.ptr) : hla_state_deserialize(p, UInt(b.count), &c, dT.ptr)
                }
                keepAlive(dT, lT)
                if r != HLA_OK {
                    XCTAssertEqual(c.dk, 99, "\(kind): cfg written by a failing deserialize")
                    XCTAssertTrue(dst.values.allSatisfy { $0 == sentinel }, "\(kind): rows written by a failing deserialize")
                    XCTAssertTrue(dst.lengthValues.allSatisfy { $0 == -1 }, "\(kind): lengths written by a failing deserialize")
                }
                return r
            }
            XCTAssertEqual(tryLoad(bytes), HLA_OK)
            for cut in 0..<bytes.count { XCTAssertEqual(tryLoad(Array(bytes[0..<cut])), HLA_ERR_CORRUPT, "\(kind) truncated to \(cut)") }
            for i in 0..<bytes.count {
                var b = bytes
                b[i] ^= 0x04
                XCTAssertEqual(tryLoad(b), HLA_ERR_CORRUPT, "\(kind) byte \(i) changed")
            }
            // two objects concatenated are not one
            XCTAssertEqual(tryLoad(bytes + bytes), HLA_ERR_CORRUPT, "\(kind) twice")
        }
    }

    /// Accepted bytes are canonical: kv_heads = 0 (the config shorthand for "= heads") is refused even with a
    /// valid checksum, and re-serializing what was read reproduces the bytes exactly. Non-finite statistics (a
    /// state after a NaN input) are plain numbers and round-trip like any others.
    func testCanonicalBytesAndNonFiniteStatistics() {
        let cfg = makeConfig(s, Options(op: opHLA2, decay: 0.9, chunk: 3))
        let st = newState(cfg, dtype: F32, slots: 2)
        var row = [Double](repeating: 0.25, count: st.n)
        row[0] = .nan; row[1] = .infinity; row[2] = -.infinity
        st.setRow(0, row)
        let bytes = serializeState(cfg, st)
        let (r, c, got) = deserialize(bytes, summary: false)
        check(r, "non-finite statistics are accepted")
        XCTAssertEqual(got?.bytes, st.bytes, "non-finite statistics round-trip bit for bit")
        if let got { XCTAssertEqual(serializeState(c, got), bytes, "re-serialized bytes equal the original") }
        // kv_heads (i64 at byte 40: magic 8, version 4, header size 4, four i32, heads i64) set to 0, checksum fixed
        var b = bytes
        XCTAssertEqual(b[40..<48].reduce(0) { $0 | Int($1) }, 1, "kv_heads stored resolved")
        for i in 40..<48 { b[i] = 0 }
        let sum = b.withUnsafeBytes { Serial.checksum($0.baseAddress!, b.count - 8) }
        for i in 0..<8 { b[b.count - 8 + i] = UInt8(truncatingIfNeeded: sum >> (8 * UInt64(i))) }
        XCTAssertEqual(deserialize(b, summary: false).0, HLA_ERR_CORRUPT, "kv_heads = 0 with a valid checksum is refused")
    }
}
