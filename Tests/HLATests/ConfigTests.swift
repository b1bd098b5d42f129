// hla_config is a growable struct (SPEC §6): hla_config_init(&cfg, size) records the caller's struct size and
// zeroes the bytes past the fields this library knows; a larger struct is accepted when those bytes are 0 and
// rejected when any is not; a smaller one is rejected. Also the documented defaults.
import CHLA
import XCTest
@testable import HLA

final class ConfigTests: XCTestCase {
    let known = Int(configSize)

    /// A caller's hla_config of `size` bytes in raw memory pre-filled with `fill`.
    final class Raw {
        let bytes: Buf<UInt8>
        init(_ size: Int, fill: UInt8) { bytes = Buf<UInt8>(size, fill: fill) }
        var cfg: UnsafeMutablePointer<hla_config> { UnsafeMutableRawPointer(bytes.p).bindMemory(to: hla_config.self, capacity: 1) }
    }

    func testDefaults() {
        var c = hla_config()
        memset(&c, 0x5A, MemoryLayout<hla_config>.size)
        check(hla_config_init(&c, configSize), "init")
        XCTAssertEqual(Int(c.struct_size), known)
        XCTAssertEqual(c.op, opHLA2); XCTAssertEqual(c.masked, 1); XCTAssertEqual(c.normalize, 0)
        XCTAssertEqual(c.heads, 1); XCTAssertEqual(c.kv_heads, 0); XCTAssertEqual(c.dk, 64); XCTAssertEqual(c.dv, 64)
        XCTAssertEqual(c.scale, 1); XCTAssertEqual(c.decay, 1); XCTAssertEqual(c.ridge, 0); XCTAssertEqual(c.eps, 1e-6)
        XCTAssertEqual(c.chunk_size, 0)
        check(hla_config_validate(&c), "defaults validate")
        // hla2 masked, dk = dv = 64, one head: the state is S (dk²) + G (dk·dv)
        var n: Int64 = 0
        check(hla_state_elements(&c, &n), "elements")
        XCTAssertEqual(n, 64 * 64 + 64 * 64)
    }

    func testLargerStructWithZeroTail() {
        for extra in [1, 8, 24, 1000] {
            let raw = Raw(known + extra, fill: 0xAB)
            check(hla_config_init(raw.cfg, UInt(known + extra)), "init with \(extra) extra bytes")
            XCTAssertEqual(Int(raw.cfg.pointee.struct_size), known + extra)
            for i in known..<(known + extra) { XCTAssertEqual(raw.bytes[i], 0, "tail byte \(i) not zeroed") }
            XCTAssertEqual(raw.cfg.pointee.dk, 64)
            check(hla_config_validate(raw.cfg), "validate larger struct")
            // and a real call through it
            let s = Shape(B: 1, T: 6, H: 2, Hkv: 1, dk: 3, dv: 2)
            let want = makeConfig(s, Options(op: opAHLA, decay: 0.9))
            var w = want
            w.struct_size = UInt32(known + extra)
            raw.cfg.pointee = w
            let t = Typed<Double>(Problem(s, seed: 5))
            let out = t.outBuf(), out2 = t.outBuf()
            let q = t.qT(), k = t.kT(), v = t.vT(), o = t.oT(out)
            check(hla_forward(raw.cfg, 0, q.p, k.p, v.p, o.p, nil, nil, nil, nil), "forward with a larger struct")
            check(cForward(want, 0, q, k, v, t.oT(out2)), "forward with the known size")
            XCTAssertEqual(out.doubles, out2.doubles)
            XCTAssertFalse(out.doubles.contains { $0.isNaN })
            var n: Int64 = 0
            check(hla_state_elements(raw.cfg, &n), "state elements of a larger struct")
            XCTAssertEqual(Int(n), stateElements(want))
            keepAlive(q, k, v, o)
        }
    }

    func testLargerStructWithNonzeroTailIsRejected() {
        let extra = 16
        for i in known..<(known + extra) {
            for value: UInt8 in [1, 0x80] {
                let raw = Raw(known + extra, fill: 0)
                check(hla_config_init(raw.cfg, UInt(known + extra)), "init")
                raw.bytes[i] = value
                expectStatus(hla_config_validate(raw.cfg), HLA_ERR_INVALID_ARGUMENT, names: ["hla_config_validate", "byte \(i)"],
                             "nonzero byte \(i)")
                var n: Int64 = -1
                expectStatus(hla_state_elements(raw.cfg, &n), HLA_ERR_INVALID_ARGUMENT, names: ["hla_state_elements"], "elements")
                XCTAssertEqual(n, -1)
                let s = Shape(B: 1, T: 2, H: 1, Hkv: 1, dk: 64, dv: 64)
                let t = Typed<Double>(Problem(s, seed: 1)), out = t.outBuf()
                let q = t.qT(), k = t.kT(), v = t.vT(), o = t.oT(out)
                expectStatus(hla_forward(raw.cfg, 0, q.p, k.p, v.p, o.p, nil, nil, nil, nil), HLA_ERR_INVALID_ARGUMENT,
                             names: ["hla_forward"], "forward with nonzero byte \(i)")
                XCTAssertTrue(out.array.allSatisfy { $0.isNaN })
                keepAlive(q, k, v, o)
                // zero again: accepted (the byte was the only reason)
                raw.bytes[i] = 0
                check(hla_config_validate(raw.cfg), "byte \(i) zero again")
            }
        }
    }

    func testSmallerStructIsRejected() {
        // known − 8 is the struct of headers 1.0 and 1.1 (up to chunk_size): accepted (testStructOfHeader1_0);
        // sizes between it and this library's, or below it, are not an hla_config
        for size in [0, 4, known - 9, known - 7, known - 1] {
            let raw = Raw(known, fill: 0xCD)
            expectStatus(hla_config_init(raw.cfg, UInt(size)), HLA_ERR_INVALID_ARGUMENT, names: ["hla_config_init", "size"], "init size \(size)")
            XCTAssertTrue(raw.bytes.array.allSatisfy { $0 == 0xCD }, "a failing hla_config_init wrote the struct (size \(size))")
            // a struct that claims to be smaller than this library's
            check(hla_config_init(raw.cfg, configSize), "init")
            raw.cfg.pointee.struct_size = UInt32(size)
            expectStatus(hla_config_validate(raw.cfg), HLA_ERR_INVALID_ARGUMENT, names: ["struct_size"], "validate struct_size \(size)")
        }
        // an absurd size is not a config either
        let raw = Raw(known, fill: 0)
        expectStatus(hla_config_init(raw.cfg, 1 << 20), HLA_ERR_INVALID_ARGUMENT, names: ["size"], "init size 1 MiB")
        check(hla_config_init(raw.cfg, configSize), "init")
        raw.cfg.pointee.struct_size = UInt32.max
        expectStatus(hla_config_validate(raw.cfg), HLA_ERR_INVALID_ARGUMENT, names: ["struct_size"], "struct_size UInt32.max")
    }

    /// The 88-byte struct of headers 1.0 and 1.1 (it ended at chunk_size): hla_config_init fills those bytes and no
    /// more, and every call takes checkpoint_every (absent) as 0, reading nothing past struct_size.
    func testStructOfHeader1_0() {
        let old = known - 8
        XCTAssertEqual(old, MemoryLayout<hla_config>.offset(of: \hla_config.checkpoint_every))
        let raw = Raw(known, fill: 0xCD)
        check(hla_config_init(raw.cfg, UInt(old)), "init size \(old)")
        XCTAssertEqual(raw.cfg.pointee.struct_size, UInt32(old))
        XCTAssertTrue(raw.bytes.array[old...].allSatisfy { $0 == 0xCD }, "hla_config_init wrote past the 88 bytes")
        XCTAssertEqual(raw.cfg.pointee.dk, 64)
        // the bytes past 88 (a negative checkpoint_every if they were read) are not read
        check(hla_config_validate(raw.cfg), "validate size \(old) with 0xCD past it")
        var full = hla_config()
        check(hla_config_init(&full, configSize), "init (full)")
        var rows: Int64 = -1, stride: Int64 = -1, rows0: Int64 = -2, stride0: Int64 = -2
        check(hla_checkpoint_rows(raw.cfg, 1, 1 << 14, 0, &rows, &stride), "checkpoint_rows")
        check(hla_checkpoint_rows(&full, 1, 1 << 14, 0, &rows0, &stride0), "checkpoint_rows (full)")
        XCTAssertEqual([rows, stride], [rows0, stride0], "an 88-byte config plans as checkpoint_every 0")
    }

    /// Deserialization writes the stored configuration into the caller's struct at its own size and zeroes its tail.
    func testDeserializeIntoLargerStruct() {
        let s = Shape(B: 2, T: 4, H: 2, Hkv: 1, dk: 3, dv: 2)
        let cfg = makeConfig(s, Options(op: opHLA3, normalize: true, decay: 0.7, scale: 0.3))
        let t = Typed<Double>(Problem(s, seed: 8)), st = t.newState(cfg)
        _ = t.forward(cfg, path: 0, final: st)
        let bytes = serializeState(cfg, st)
        let extra = 32
        let raw = Raw(known + extra, fill: 0)
        check(hla_config_init(raw.cfg, UInt(known + extra)), "init")
        for i in known..<(known + extra) { raw.bytes[i] = 0xEE }   // garbage a newer caller might leave
        let desc = Tn(nil, 0, [0], owner: nil)
        check(bytes.withUnsafeBytes { hla_state_deserialize($0.baseAddress, UInt($0.count), raw.cfg, desc.ptr) }, "deserialize")
        XCTAssertEqual(Int(raw.cfg.pointee.struct_size), known + extra)
        for i in known..<(known + extra) { XCTAssertEqual(raw.bytes[i], 0, "tail byte \(i)") }
        var want = cfg
        want.struct_size = UInt32(known + extra)
        XCTAssertTrue(sameConfig(raw.cfg.pointee, want))
        XCTAssertEqual(desc.ptr.pointee.shape.0, 2)
        keepAlive(desc)
    }
}
