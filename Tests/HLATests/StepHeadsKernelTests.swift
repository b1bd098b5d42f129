// The masked multi-head step kernel (`heads` in Sources/CHLA/step_heads.h: the heads' z = S q_j and y = Pᵀ q_j,
// where they differ by head, as products of all heads on the register tiles, then each query head's sweep of its
// block W_j ← g·W_j + z yᵀ, o_j = W_jᵀ q_j), on AVX-512 (tile512.c) where the CPU has it and on AVX2 (tile256.c)
// elsewhere or under HLA_SIMD=avx2 (`make test-swift` runs these tests both ways on an AVX-512 CPU),
// for hla3 (`HLA3.stepHeadsFused`: z and y per head), hla2 (`HLA2.stepHeadsFused`: y = v for every head) and ahla
// (`AHLA.stepHeadsFused`: z = k for every head), each against the portable composition it replaces
// (`stepHeadsPortable`: the products of all heads through Gemm, then Vec.rank1Project per head). Both must leave
// every head block and every output BIT FOR BIT alike: dk ≠ dv both ways, d = 64 and 128, decay 1 (no scaling)
// and below, 1, 2, 5, 9 and 12 heads (groups of four heads, each group's products formed in the previous group's
// sweeps: one group, a partial one, whole ones and partial ones after them), head blocks
// spaced wider than W (the state's layout has them adjacent; the kernel only assumes the stride it is given), the
// bytes around each block untouched, and the kv blocks and the token only read (with the token, `stepKVHeadsFused`:
// the kv blocks advanced bit for bit as `stepKV` advances them).
import XCTest
@testable import HLA

final class StepHeadsKernelTests: XCTestCase {
    typealias Step = (Config, HLA.Unit<Float>, Int, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>,
                      UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void   // c, u, n, k, v, q, out, tmp

    /// `kvSize(dk, dv)`: elements of the kv blocks; `scratch(c, n)`: the step's scratch; portable and fused: the two
    /// compositions of one operator.
    func check(_ op: Int32, seed: UInt64, kvSize: (Int, Int) -> Int, scratch: (Config, Int) -> Int,
               advancesKV: Bool = false, portable: Step, fused: Step) throws {
        var cases = 0
        var rng = SplitMix64(seed: seed)
        for (dk, dv) in [(64, 64), (64, 128), (128, 64), (128, 128)] {
            for decay in [1.0, 0.93] {
                for n in [1, 2, 5, 9, 12] {
                    let o = Options(op: op, masked: true, normalize: false, decay: decay, ridge: 0, scale: 0.2)
                    let c = try Config(makeConfig(Shape(B: 1, T: 1, H: n, Hkv: 1, dk: dk, dv: dv), o))
                    XCTAssertEqual(c.dvp, dv)
                    let stride = dk * dv + 48                       // head blocks 48 floats apart
                    let kv = (0..<kvSize(dk, dv)).map { _ in Float(rng.normal()) }
                    let heads0 = (0..<(n * stride)).map { _ in Float(rng.normal()) }
                    let q = (0..<(n * dk)).map { _ in Float(rng.normal() * 0.3) }
                    let k = (0..<dk).map { _ in Float(rng.normal() * 0.3) }, v = (0..<dv).map { _ in Float(rng.normal()) }
                    let size = scratch(c, n)
                    func run(_ step: Step) -> ([Float], [Float], [Float]) {
                        var kvc = kv, heads = heads0
                        var out = [Float](repeating: .nan, count: n * dv)
                        var tmp = [Float](repeating: .nan, count: size)
                        kvc.withUnsafeMutableBufferPointer { pkv in
                            heads.withUnsafeMutableBufferPointer { ph in
                                let u = HLA.Unit(kv: pkv.baseAddress!, q: ph.baseAddress!, qStride: stride, group: n)
                                out.withUnsafeMutableBufferPointer { po in
                                    tmp.withUnsafeMutableBufferPointer { pt in
                                        step(c, u, n, k, v, q, po.baseAddress!, pt.baseAddress!)
                                    }
                                }
                            }
                        }
                        if !advancesKV { XCTAssertEqual(kvc, kv, "the kv blocks are only read") }
                        return (heads, out, kvc)
                    }
                    let (wantW, wantO, wantKV) = run(portable), (gotW, gotO, gotKV) = run(fused)
                    let what = "op=\(op) dk=\(dk) dv=\(dv) decay=\(decay) heads=\(n)"
                    XCTAssertFalse(wantO.contains { !$0.isFinite }, what)
                    func differing(_ a: [Float], _ b: [Float]) -> String? {
                        let bad = zip(a, b).enumerated().filter { $0.element.0.bitPattern != $0.element.1.bitPattern }
                        return bad.isEmpty ? nil : "\(bad.count) of \(a.count) differ, first at \(bad[0].offset)"
                    }
                    XCTAssertNil(differing(gotO, wantO), "outputs, " + what)
                    XCTAssertNil(differing(gotW, wantW), "head blocks and the gaps, " + what)
                    if advancesKV {
                        XCTAssertNil(differing(gotKV, wantKV), "kv blocks, " + what)
                        XCTAssertNotEqual(gotKV, kv, what)
                    }
                    XCTAssertNotEqual(gotW, heads0, what)
                    cases += 1
                }
            }
        }
        XCTAssertEqual(cases, 4 * 2 * 5)
    }

    // Each operator's kv blocks' size and its portable composition (`stepHeadsPortable`).
    static func hla3KV(_ dk: Int, _ dv: Int) -> Int { dk * dk + dk * dv }
    static func hla2KV(_ dk: Int, _ dv: Int) -> Int { dk * dk }
    static func ahlaKV(_ dk: Int, _ dv: Int) -> Int { dk * dv }
    typealias P = UnsafePointer<Float>
    typealias M = UnsafeMutablePointer<Float>
    static func hla3Portable(_ c: Config, _ u: HLA.Unit<Float>, _ n: Int, _ k: P, _ v: P, _ q: P, _ o: M, _ t: M) {
        HLA3.stepHeadsPortable(c, u, 0, n, q: q, out: o, tmp: t)
    }
    static func hla2Portable(_ c: Config, _ u: HLA.Unit<Float>, _ n: Int, _ k: P, _ v: P, _ q: P, _ o: M, _ t: M) {
        HLA2.stepHeadsPortable(c, u, 0, n, v: v, q: q, out: o, tmp: t)
    }
    static func ahlaPortable(_ c: Config, _ u: HLA.Unit<Float>, _ n: Int, _ k: P, _ v: P, _ q: P, _ o: M, _ t: M) {
        AHLA.stepHeadsPortable(c, u, 0, n, k: k, q: q, out: o, tmp: t)
    }

    func testHLA3KernelEqualsPortableComposition() throws {
        try check(opHLA3, seed: 4_242, kvSize: Self.hla3KV, scratch: { HLA3.stepScratchHeads($0, $1) },
                  portable: Self.hla3Portable,
                  fused: { c, u, n, _, _, q, o, t in HLA3.stepHeadsFused(c, u, 0, n, q: q, out: o, tmp: t) })
    }

    func testHLA2KernelEqualsPortableComposition() throws {
        try check(opHLA2, seed: 4_243, kvSize: Self.hla2KV, scratch: { HLA2.stepScratchHeads($0, $1) },
                  portable: Self.hla2Portable,
                  fused: { c, u, n, _, v, q, o, t in HLA2.stepHeadsFused(c, u, 0, n, v: v, q: q, out: o, tmp: t) })
    }

    func testAHLAKernelEqualsPortableComposition() throws {
        try check(opAHLA, seed: 4_244, kvSize: Self.ahlaKV, scratch: { AHLA.stepScratchHeads($0, $1) },
                  portable: Self.ahlaPortable,
                  fused: { c, u, n, k, _, q, o, t in AHLA.stepHeadsFused(c, u, 0, n, k: k, q: q, out: o, tmp: t) })
    }

    /// With the token (`stepKVHeadsFused`): the kv blocks advance in the kernel's first sweeps, which from four
    /// heads on also form heads 1-3's products (`step_block`'s KQ), against `stepKV` then the portable composition.
    func checkWithToken<Op: Operator>(_: Op.Type, _ op: Int32, seed: UInt64, kvSize: (Int, Int) -> Int,
                                      portable: @escaping Step) throws {
        try check(op, seed: seed, kvSize: kvSize, scratch: { Op.stepScratchHeads($0, $1) }, advancesKV: true,
                  portable: { c, u, n, k, v, q, o, t in Op.stepKV(c, u, k: k, v: v); portable(c, u, n, k, v, q, o, t) },
                  fused: { c, u, n, k, v, q, o, t in
                      XCTAssertTrue(Op.stepKVHeadsFused(c, u, 0, n, k: k, v: v, q: q, out: o, tmp: t, from: nil)) })
    }

    func testHLA3KernelWithTokenEqualsPortable() throws {
        try checkWithToken(HLA3.self, opHLA3, seed: 4_245, kvSize: Self.hla3KV, portable: Self.hla3Portable)
    }

    func testHLA2KernelWithTokenEqualsPortable() throws {
        try checkWithToken(HLA2.self, opHLA2, seed: 4_246, kvSize: Self.hla2KV, portable: Self.hla2Portable)
    }

    func testAHLAKernelWithTokenEqualsPortable() throws {
        try checkWithToken(AHLA.self, opAHLA, seed: 4_247, kvSize: Self.ahlaKV, portable: Self.ahlaPortable)
    }
}
