// The scan path's chunk kernel (`scanChunk`, Sources/HLA/Ops/<Op>/<Op>Scan.swift) against the two kernels it
// fuses: `chunk` without the carry's products, then `summarize` of the same tokens. The outputs and the summary
// must agree BIT FOR BIT (it shares the products the two compute alike, and forms nothing else differently),
// every summary block must be written (the two start from different garbage), and the carry must be left as it
// was. Every option of every operator, odd head sizes, grouped heads, chunk lengths 1, 7 and 37 (32 at d = 64),
// float32 and float64 (grouped heads at d = 64 in float32 only: the debug build's products are slow).
import XCTest
@testable import HLA

final class ScanChunkTests: XCTestCase {
    func testScanChunkEqualsChunkThenSummarize() throws {
        var cases = 0
        var seed: UInt64 = 77_000
        for op in allOps {
            for masked in [true, false] {
                for normalize in [false, true] {
                    for decay in [1.0, 0.9] {
                        for ridge in (op == opHLA2 ? [0.0, 0.3] : [0.0]) {
                            // (33, 12): dk over twice dvp, where hla2's scanChunk needs the most scratch
                            for (dk, dv) in [(16, 16), (17, 33), (33, 12), (64, 64)] {
                                for (H, Hkv) in [(1, 1), (4, 2)] {
                                    // d = 64 (the in-place panels of every product) at one chunk length: the
                                    // debug build's products are slow
                                    for n in (dk < 64 ? [1, 7, 37] : [32]) {
                                        seed += 1
                                        let o = Options(op: op, masked: masked, normalize: normalize, decay: decay,
                                                        ridge: ridge, scale: 0.3)
                                        let c = try Config(makeConfig(Shape(B: 1, T: n, H: H, Hkv: Hkv, dk: dk, dv: dv), o))
                                        let what = "\(o) dk=\(dk) dv=\(dv) H=\(H) Hkv=\(Hkv) n=\(n)"
                                        try compare(c, n: n, seed: seed, Float.self, what)
                                        cases += 1
                                        if dk == 64 && H > 1 { continue }
                                        try compare(c, n: n, seed: seed, Double.self, what)
                                        cases += 1
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        XCTAssertEqual(cases, (16 + 8 + 8) * (2 * 2 * (3 * 3 + 1) - 1))   // option sets × (dtype, heads, dk, n)
    }

    private func compare<T: HLAFloat>(_ c: Config, n: Int, seed: UInt64, _: T.Type, _ what: String) throws {
        switch c.op {
        case .hla2: try compare(HLA2.self, c, n: n, seed: seed, T.self, what)
        case .ahla: try compare(AHLA.self, c, n: n, seed: seed, T.self, what)
        case .hla3: try compare(HLA3.self, c, n: n, seed: seed, T.self, what)
        }
    }

    private func compare<Op: Operator, T: HLAFloat>(_ op: Op.Type, _ c: Config, n: Int, seed: UInt64, _: T.Type,
                                                    _ what: String) throws {
        var rng = SplitMix64(seed: seed)
        func fill(_ p: UnsafeMutablePointer<T>, _ count: Int, _ s: Double) { for i in 0..<count { p[i] = T(rng.normal() * s) } }
        let dk = c.dk, dvp = c.dvp, G = c.group, ue = Paths.unitElements(c)
        let K = try RawBuffer<T>.allocate(n * dk), V = try RawBuffer<T>.allocate(n * dvp)
        let Q = try RawBuffer<T>.allocate(G * n * dk)
        let carry0 = try RawBuffer<T>.allocate(ue)
        let carryA = try RawBuffer<T>.allocate(ue), carryB = try RawBuffer<T>.allocate(ue)
        let sumA = try RawBuffer<T>.allocate(ue), sumB = try RawBuffer<T>.allocate(ue)
        let OA = try RawBuffer<T>.allocate(G * n * dvp), OB = try RawBuffer<T>.allocate(G * n * dvp)
        let need = Op.chunkScratch(c, n: n)
        let scratchA = try RawBuffer<T>.allocate(need), scratchB = try RawBuffer<T>.allocate(need)
        let pw = try Powers<T>(c.decay, upTo: 3 * n + 3)
        defer { for b in [K, V, Q, carry0, carryA, carryB, sumA, sumB, OA, OB, scratchA, scratchB] { b.free() }; pw.free() }
        fill(K.base, n * dk, 1); fill(Q.base, G * n * dk, 0.3)
        for r in 0..<n {
            for j in 0..<dvp { V.base[r * dvp + j] = j < c.dv ? T(rng.normal()) : 1 }
        }
        fill(carry0.base, ue, 0.5)
        for i in 0..<ue { carryA.base[i] = carry0.base[i]; carryB.base[i] = carry0.base[i] }
        // the summaries start from different garbage: every block must be written
        for i in 0..<ue { sumA.base[i] = T(i % 7) - 3; sumB.base[i] = .nan }
        // reference: the two kernels
        let uA = Paths.unitView(carryA.base, c), sA = Paths.unitView(sumA.base, c)
        var s0 = Scratch(scratchA.base, need), s1 = Scratch(scratchA.base, need)
        Op.chunk(c, pw, uA, n: n, K: K.base, V: V.base, Q: Q.base, O: OA.base, carryOut: false, scratch: &s0)
        Op.summarize(c, pw, sA, n: n, K: K.base, V: V.base, Q: Q.base, scratch: &s1)
        // the fused kernel
        let uB = Paths.unitView(carryB.base, c), sB = Paths.unitView(sumB.base, c)
        var s2 = Scratch(scratchB.base, need)
        Op.scanChunk(c, pw, uB, sB, n: n, K: K.base, V: V.base, Q: Q.base, O: OB.base, scratch: &s2)
        func same(_ a: RawBuffer<T>, _ b: RawBuffer<T>, _ count: Int, _ name: String) {
            for i in 0..<count where a.base[i] != b.base[i] || a.base[i].isNaN != b.base[i].isNaN {
                XCTFail("\(what) \(T.self): \(name)[\(i)] = \(b.base[i]), chunk + summarize give \(a.base[i])")
                return
            }
        }
        same(OA, OB, G * n * dvp, "outputs")
        same(sumA, sumB, ue, "summary")
        same(carry0, carryB, ue, "carry (must be left as it was)")
    }
}
