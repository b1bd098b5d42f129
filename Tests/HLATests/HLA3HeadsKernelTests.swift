// hla3's masked multi-head step on AVX-512 (`HLA3.stepHeadsFused`, hla_private_hla3_heads_avx512 in
// Sources/CHLA/tile512.c: each head's W sweep also forms the next head's z = S q and y = Pᵀ q) against the portable
// composition it replaces (`HLA3.stepHeadsPortable`: the products of all heads through Gemm, then Vec.rank1Project
// per head). Both must leave every W block and every output BIT FOR BIT alike: dk ≠ dv both ways, d = 64 and 128
// (`stepHeads` takes the kernel at d = 64 only; it is called directly here for the others), decay 1 (no scaling)
// and below, 1, 2 and 5 heads, head blocks spaced wider than W (the state's layout has them adjacent; the kernel
// only assumes the stride it is given), and the bytes around each W block untouched. Skipped without AVX-512 (or
// with HLA_SIMD=avx2), where nothing calls the kernel.
import XCTest
@testable import HLA

final class HLA3HeadsKernelTests: XCTestCase {
    func testKernelEqualsPortableComposition() throws {
        try XCTSkipUnless(Gemm.avx512, "no AVX-512 (or HLA_SIMD=avx2): the kernel is not used")
        var cases = 0
        var rng = SplitMix64(seed: 4_242)
        for (dk, dv) in [(64, 64), (64, 128), (128, 64), (128, 128)] {
            for decay in [1.0, 0.93] {
                for n in [1, 2, 5] {
                    let o = Options(op: opHLA3, masked: true, normalize: false, decay: decay, ridge: 0, scale: 0.2)
                    let c = try Config(makeConfig(Shape(B: 1, T: 1, H: n, Hkv: 1, dk: dk, dv: dv), o))
                    XCTAssertEqual(c.dvp, dv)
                    let stride = dk * dv + 48                       // W blocks 48 floats apart
                    let kv = (0..<(dk * dk + dk * dv)).map { _ in Float(rng.normal()) }
                    let heads0 = (0..<(n * stride)).map { _ in Float(rng.normal()) }
                    let q = (0..<(n * dk)).map { _ in Float(rng.normal() * 0.3) }
                    let scratch = HLA3.stepScratchHeads(c, n)
                    func run(_ portable: Bool) -> ([Float], [Float]) {
                        var kvc = kv, heads = heads0
                        var out = [Float](repeating: .nan, count: n * dv)
                        var tmp = [Float](repeating: .nan, count: scratch)
                        kvc.withUnsafeMutableBufferPointer { pkv in
                            heads.withUnsafeMutableBufferPointer { ph in
                                let u = Unit(kv: pkv.baseAddress!, q: ph.baseAddress!, qStride: stride, group: n)
                                q.withUnsafeBufferPointer { pq in
                                    out.withUnsafeMutableBufferPointer { po in
                                        tmp.withUnsafeMutableBufferPointer { pt in
                                            if portable {
                                                HLA3.stepHeadsPortable(c, u, 0, n, q: pq.baseAddress!, out: po.baseAddress!,
                                                                       tmp: pt.baseAddress!)
                                            } else {
                                                HLA3.stepHeadsFused(c, u, 0, n, q: pq.baseAddress!, out: po.baseAddress!,
                                                                    tmp: pt.baseAddress!)
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        XCTAssertEqual(kvc, kv, "the kv blocks are only read")
                        return (heads, out)
                    }
                    let (wantW, wantO) = run(true), (gotW, gotO) = run(false)
                    let what = "dk=\(dk) dv=\(dv) decay=\(decay) heads=\(n)"
                    XCTAssertFalse(wantO.contains { !$0.isFinite }, what)
                    func differing(_ a: [Float], _ b: [Float]) -> String? {
                        let bad = zip(a, b).enumerated().filter { $0.element.0.bitPattern != $0.element.1.bitPattern }
                        return bad.isEmpty ? nil : "\(bad.count) of \(a.count) differ, first at \(bad[0].offset)"
                    }
                    XCTAssertNil(differing(gotO, wantO), "outputs, " + what)
                    XCTAssertNil(differing(gotW, wantW), "W blocks and the gaps, " + what)
                    XCTAssertNotEqual(gotW, heads0, what)
                    cases += 1
                }
            }
        }
        XCTAssertEqual(cases, 4 * 2 * 3)
    }
}
