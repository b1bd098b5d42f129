// The engine's own dense products (Sources/HLA/Core/Gemm.swift) against a float64 triple loop: every
// transpose combination, odd and panel-sized shapes, leading dimensions wider than the matrices,
// α and β, and BLAS's rules for β = 0 (C is not read: NaN there stays out), α = 0 and k = 0.
import XCTest
@testable import HLA

final class GemmTests: XCTestCase {
    /// C = α op(A) op(B) + β C in float64 from the same inputs; returns (max error, max |C|).
    func check<T: HLAFloat>(_: T.Type, _ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int,
                            alpha: Double, beta: Double, pad: Int, seed: UInt64,
                            nanInC: Bool = false) -> (Double, Double) {
        var rng = SplitMix64(seed: seed)
        let lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad
        let ar = ta ? k : m, br = tb ? n : k
        let a = (0..<(ar * lda)).map { _ in T(rng.normal()) }
        let b = (0..<(br * ldb)).map { _ in T(rng.normal()) }
        var c = (0..<(m * ldc)).map { _ in nanInC ? T.nan : T(rng.normal()) }
        var want = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k {
                    let x = Double(ta ? a[p * lda + i] : a[i * lda + p])
                    let y = Double(tb ? b[j * ldb + p] : b[p * ldb + j])
                    s += x * y
                }
                want[i * n + j] = alpha * s + (beta == 0 ? 0 : beta * Double(c[i * ldc + j]))
            }
        }
        let padBefore = c
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    T.gemm(ta, tb, m, n, k, T(alpha), pa.baseAddress!, lda, pb.baseAddress!, ldb,
                           T(beta), pc.baseAddress!, ldc)
                }
            }
        }
        var err = 0.0, mag = 0.0
        for i in 0..<m {
            for j in 0..<ldc {
                let got = c[i * ldc + j]
                if j >= n {   // padding columns are never written
                    XCTAssertTrue(got == padBefore[i * ldc + j] || (got.isNaN && padBefore[i * ldc + j].isNaN),
                                  "wrote C[\(i)][\(j)] outside n = \(n)")
                    continue
                }
                let e = abs(Double(got) - want[i * n + j])
                err = e.isNaN ? .infinity : max(err, e)
                mag = max(mag, abs(want[i * n + j]))
            }
        }
        return (err, mag)
    }

    func sweep<T: HLAFloat>(_ t: T.Type, tol: Double) {
        let dims = [1, 2, 5, 6, 7, 8, 15, 16, 17, 31, 33, 64, 70, 129, 200]
        var seed: UInt64 = 1
        for ta in [false, true] {
            for tb in [false, true] {
                for (ab, (alpha, beta)) in [(1.0, 0.0), (0.5, 1.0), (-1.25, 0.75)].enumerated() {
                    for i in 0..<dims.count {
                        let m = dims[i], n = dims[(i * 7 + ab) % dims.count], k = dims[(i * 3 + 2 * ab + 1) % dims.count]
                        seed += 1
                        let (err, mag) = check(t, ta, tb, m, n, k, alpha: alpha, beta: beta, pad: (i % 3) * 5,
                                               seed: seed, nanInC: beta == 0)
                        XCTAssertLessThanOrEqual(err, tol * max(1, mag) * Double(k).squareRoot(),
                                                 "\(T.self) ta=\(ta) tb=\(tb) m=\(m) n=\(n) k=\(k) α=\(alpha) β=\(beta)")
                    }
                }
            }
        }
    }

    func testFloat32AgainstFloat64Loop() { sweep(Float.self, tol: 2e-6) }
    func testFloat64AgainstFloat64Loop() { sweep(Double.self, tol: 1e-14) }

    /// The error bound above must be able to fail: a product with one element of A changed is caught.
    func testSweepDetectsAWrongProduct() {
        var rng = SplitMix64(seed: 9)
        let m = 13, n = 20, k = 9
        let a = (0..<(m * k)).map { _ in Double(rng.normal()) }, b = (0..<(k * n)).map { _ in Double(rng.normal()) }
        var c = [Double](repeating: 0, count: m * n), c2 = c
        var a2 = a; a2[5 * k + 3] += 1e-3
        Double.gemm(false, false, m, n, k, 1, a, k, b, n, 0, &c, n)
        Double.gemm(false, false, m, n, k, 1, a2, k, b, n, 0, &c2, n)
        XCTAssertGreaterThan(zip(c, c2).map { abs($0 - $1) }.max()!, 1e-6)
    }

    /// α = 0 or k = 0: C = β C without reading A or B (here NaN); β = 0 then writes zeros over NaN.
    func testAlphaZeroAndEmptyK() {
        let nanA = [Float](repeating: .nan, count: 64)
        for (alpha, k) in [(Float(0), 4), (Float(1), 0)] {
            var c = [Float](repeating: 2, count: 12)
            Float.gemm(false, false, 3, 4, k, alpha, nanA, 4, nanA, 4, 0.5, &c, 4)
            XCTAssertEqual(c, [Float](repeating: 1, count: 12))
            var d = [Float](repeating: .nan, count: 12)
            Float.gemm(true, true, 3, 4, k, alpha, nanA, 3, nanA, 4, 0, &d, 4)
            XCTAssertEqual(d, [Float](repeating: 0, count: 12))
        }
    }

    /// The AVX2 register tiles (Sources/CHLA/tile256.c, float32 and float64) form each element as one fused
    /// multiply-add chain over k in order from zero (the first segment's terms, then the second's), then store α·x
    /// (+ β·C fused) on a full panel, α·x + β·C unfused on a partial one, C not read when β = 0: the bits of that
    /// scalar chain (the Swift tile they replaced, and the AVX-512 tile), for every row count, full and partial
    /// panels, α and β, both layouts of A, P's rows apart by more than the panel, with and without a second segment.
    func tileMatchesTheScalarChain<T: HLAFloat>(_: T.Type) {
        var rng = SplitMix64(seed: 33)
        let nr = T.Panel.scalarCount
        for rows in 1...6 {
            for w in [nr, nr - 5, 1] {
                for (alpha, beta) in [(1, 0), (0.75, 0), (1, 1), (-1.25, 0.3), (1, -0.7)] as [(T, T)] {
                    for transA in [false, true] {
                        for kb2 in [0, 7] {
                            let kb = 5 + rows, lda = 40, bs = nr + 3, ldc = 21
                            let a = (0..<(lda * lda)).map { _ in T(rng.normal()) }
                            let p = (0..<(40 * bs)).map { _ in T(rng.normal()) }
                            let c0 = (0..<(8 * ldc)).map { _ in beta == 0 ? T.nan : T(rng.normal()) }
                            let ars = transA ? 1 : lda, acs = transA ? lda : 1
                            var want = c0, got = c0
                            // the chain: A from a + 1, P from p + 2, C from c + 1; segment 2: A from a + 3, P's row 11
                            for i in 0..<rows {
                                for j in 0..<w {
                                    var x: T = 0
                                    for q in 0..<kb { x = x.addingProduct(a[1 + i * ars + q * acs], p[2 + q * bs + j]) }
                                    for q in 0..<kb2 { x = x.addingProduct(a[3 + i * ars + q * acs], p[2 + (11 + q) * bs + j]) }
                                    let at = 1 + i * ldc + j
                                    if w == nr {
                                        var y = alpha == 1 ? x : x * alpha
                                        if beta != 0 { y = y.addingProduct(beta, want[at]) }
                                        want[at] = y
                                    } else {
                                        want[at] = beta == 0 ? alpha * x : alpha * x + beta * want[at]
                                    }
                                }
                            }
                            a.withUnsafeBufferPointer { pa in p.withUnsafeBufferPointer { pp in
                                let A = pa.baseAddress!, P = pp.baseAddress!
                                let s2: Gemm.Segment<T>? = kb2 > 0
                                    ? Gemm.Segment(kb: kb2, a: A + 3, ars: ars, acs: acs, bp: P + 2 + 11 * bs, bs: bs) : nil
                                got.withUnsafeMutableBufferPointer { pc in
                                    Gemm.tile(kb, A + 1, ars, acs, rows, P + 2, bs, pc.baseAddress! + 1, ldc, w, alpha, beta,
                                              wide: false, then: s2)
                                }
                            } }
                            for x in 0..<want.count {
                                let same = withUnsafeBytes(of: want[x]) { u in
                                    withUnsafeBytes(of: got[x]) { u.elementsEqual($0) }
                                }
                                XCTAssertTrue(same, "\(T.self) rows \(rows) w \(w) α \(alpha) β \(beta) transA \(transA) "
                                              + "kb2 \(kb2) at \(x): \(got[x]) for \(want[x])")
                            }
                        }
                    }
                }
            }
        }
    }
    func testFloat32TileMatchesTheScalarChain() { tileMatchesTheScalarChain(Float.self) }
    func testFloat64TileMatchesTheScalarChain() { tileMatchesTheScalarChain(Double.self) }

    /// Results depend only on the call's arguments: the same product on many threads at once is bit-identical.
    func testDeterministicAcrossThreads() {
        var rng = SplitMix64(seed: 3)
        let m = 70, n = 50, k = 40
        let a = (0..<(m * k)).map { _ in Float(rng.normal()) }, b = (0..<(n * k)).map { _ in Float(rng.normal()) }
        var ref = [Float](repeating: 0, count: m * n)
        Float.gemm(false, true, m, n, k, 1, a, k, b, k, 0, &ref, n)
        let out = UnsafeMutablePointer<Float>.allocate(capacity: 8 * m * n)
        defer { out.deallocate() }
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                let (ap, bp) = (pa.baseAddress!, pb.baseAddress!)
                parallelFor(8) { i, _ in Float.gemm(false, true, m, n, k, 1, ap, k, bp, k, 0, out + i * m * n, n) }
            }
        }
        for i in 0..<8 { XCTAssertEqual(Array(UnsafeBufferPointer(start: out + i * m * n, count: m * n)), ref) }
    }

    /// Triangular structure: on operands with the stated zero pattern, the wanted part of C is bit-identical
    /// to the full product (the skipped terms are exact zeros), and with .lowerC the tiles wholly above the
    /// diagonal are left untouched (on the AVX2 float32 tiles, the right of each diagonal block's 8-row narrow tile too).
    func testStructureIsExact() {
        var rng = SplitMix64(seed: 11)
        for n in [1, 5, 6, 16, 17, 32, 37, 48, 64, 100] {
            for (ta, tb) in [(false, false), (false, true), (true, false)] {
                for st in [[.lowerA], [.upperA], [.upperB], [.lowerC], [.lowerA, .upperB, .lowerC],
                           [.upperB, .lowerC], [.lowerA, .lowerC]] as [Gemm.Structure] {
                    // op(A), op(B) as n × n with the zero pattern, stored per the transposes.
                    var a = [Float](repeating: 0, count: n * n), b = a
                    for i in 0..<n { for p in 0..<n {
                        let keep = st.contains(.lowerA) ? p <= i : st.contains(.upperA) ? p >= i : true
                        a[ta ? p * n + i : i * n + p] = keep ? Float(rng.normal()) : 0
                    } }
                    for p in 0..<n { for j in 0..<n {
                        let keep = st.contains(.upperB) ? p <= j : true
                        b[tb ? j * n + p : p * n + j] = keep ? Float(rng.normal()) : 0
                    } }
                    let c0 = (0..<(n * n)).map { _ in Float(rng.normal()) }
                    var full = c0, part = c0
                    Float.gemm(ta, tb, n, n, n, 0.75, a, n, b, n, 0.3, &full, n)
                    Float.gemm(ta, tb, n, n, n, 0.75, a, n, b, n, 0.3, &part, n, structure: st)
                    for i in 0..<n { for j in 0..<n {
                        if st.contains(.lowerC) && j > i {
                            // Above the diagonal: untouched or computed, never anything else.
                            XCTAssertTrue(part[i * n + j] == c0[i * n + j] || part[i * n + j] == full[i * n + j],
                                          "n=\(n) \(st) C[\(i)][\(j)]")
                            let mr = Gemm.avx512 ? Gemm.mr512 : Gemm.mr   // the float32 kernel's tile rows
                            if j >= (i / mr + 1) * mr + Float.Panel.scalarCount {
                                XCTAssertEqual(part[i * n + j], c0[i * n + j], "n=\(n) tile above the diagonal written")
                            }
                            // On the AVX2 tiles with whole panels, the first 8 rows of each panel's diagonal block
                            // are one 8 × 8 tile: nothing right of it is written.
                            if Gemm.avx2 && !Gemm.avx512 && n % 16 == 0 && i % 16 < 8 && j >= i / 16 * 16 + 8 {
                                XCTAssertEqual(part[i * n + j], c0[i * n + j], "n=\(n) narrow tile's row C[\(i)][\(j)] written")
                            }
                        } else {
                            XCTAssertEqual(part[i * n + j], full[i * n + j], "n=\(n) ta=\(ta) tb=\(tb) \(st) C[\(i)][\(j)]")
                        }
                    } }
                }
            }
        }
    }

    /// gemm2's operands concatenated along k: A = [op(A1) | op(A2)] (m × (k1 + k2), row-major), B = [B1; B2]
    /// ((k1 + k2) × n; B1 and B2 with leading dimension ldb).
    func concatenation(_ m: Int, _ n: Int, _ t1: Bool, _ k1: Int, _ a1: [Float], _ lda1: Int, _ b1: [Float],
                       _ t2: Bool, _ k2: Int, _ a2: [Float], _ lda2: Int, _ b2: [Float], _ ldb: Int) -> ([Float], [Float]) {
        let k = k1 + k2
        var a = [Float](repeating: 0, count: m * k), b = [Float](repeating: 0, count: k * n)
        for i in 0..<m {
            for p in 0..<k1 { a[i * k + p] = t1 ? a1[p * lda1 + i] : a1[i * lda1 + p] }
            for p in 0..<k2 { a[i * k + k1 + p] = t2 ? a2[p * lda2 + i] : a2[i * lda2 + p] }
        }
        for p in 0..<k1 { for j in 0..<n { b[p * n + j] = b1[p * ldb + j] } }
        for p in 0..<k2 { for j in 0..<n { b[(k1 + p) * n + j] = b2[p * ldb + j] } }
        return (a, b)
    }

    /// gemm2: C = α (op(A1) B1 + op(A2) B2) + β C against the float64 loop, and bit for bit `gemm` over the two
    /// operands concatenated along k (one chain over A1's terms then A2's) where n is a multiple of the panel and A
    /// fits `fusedBytes`; the triangular structure of op(A2) skips only exact zeros; other shapes run as two
    /// products (C rounded in between).
    func testGemm2IsOneChainOverBothProducts() {
        var rng = SplitMix64(seed: 21)
        for (m, n, k1) in [(32, 64, 64), (37, 48, 17), (8, 16, 5), (64, 32, 128), (33, 20, 9), (5, 7, 3)] {
            for (t1, t2) in [(false, false), (true, true), (false, true)] {
                for st in [[], [.lowerA], [.upperA]] as [Gemm.Structure] {
                    let k2 = m   // square op(A2) for the triangular cases
                    let pad = 3, lda1 = (t1 ? m : k1) + pad, lda2 = (t2 ? m : k2) + pad, ldb = n + pad, ldc = n + 1
                    var a1 = [Float](repeating: 0, count: (t1 ? k1 : m) * lda1)
                    var a2 = [Float](repeating: 0, count: (t2 ? k2 : m) * lda2)
                    for x in a1.indices { a1[x] = Float(rng.normal()) }
                    for i in 0..<m { for p in 0..<k2 {
                        let keep = st.contains(.lowerA) ? p <= i : st.contains(.upperA) ? p >= i : true
                        a2[t2 ? p * lda2 + i : i * lda2 + p] = keep ? Float(rng.normal()) : 0
                    } }
                    let b1 = (0..<(k1 * ldb)).map { _ in Float(rng.normal()) }
                    let b2 = (0..<(k2 * ldb)).map { _ in Float(rng.normal()) }
                    let c0 = (0..<(m * ldc)).map { _ in Float(rng.normal()) }
                    let (alpha, beta): (Float, Float) = (0.75, 0.5)
                    var got = c0
                    Float.gemm2(m, n, alpha, beta, &got, ldc, t1, k1, a1, lda1, b1, ldb, t2, k2, a2, lda2, b2, ldb,
                                structure2: st)
                    let (a, b) = concatenation(m, n, t1, k1, a1, lda1, b1, t2, k2, a2, lda2, b2, ldb), k = k1 + k2
                    var cat = c0
                    Float.gemm(false, false, m, n, k, alpha, a, k, b, n, beta, &cat, ldc)
                    let what = "m=\(m) n=\(n) k1=\(k1) t1=\(t1) t2=\(t2) \(st)"
                    for i in 0..<m {
                        for j in n..<ldc { XCTAssertEqual(got[i * ldc + j], c0[i * ldc + j], "wrote padding: " + what) }
                        for j in 0..<n {
                            var want = 0.0
                            for p in 0..<k { want += Double(a[i * k + p]) * Double(b[p * n + j]) }
                            want = Double(alpha) * want + Double(beta) * Double(c0[i * ldc + j])
                            XCTAssertLessThanOrEqual(abs(Double(got[i * ldc + j]) - want), 1e-5 * Double(k).squareRoot() * max(1, abs(want)), what)
                            if n % Float.Panel.scalarCount == 0 && m * k * 4 <= Gemm.fusedBytes {
                                XCTAssertEqual(got[i * ldc + j], cat[i * ldc + j], "not one chain: " + what + " C[\(i)][\(j)]")
                            }
                        }
                    }
                }
            }
        }
    }

    /// gemm2 with the triangular structure on op(A1) (`structure1`) and `mid`: C is one chain over A1's terms then
    /// A2's where the call is fused (bit for bit the product of the concatenated operands) and, fused or not, the
    /// same bits as without `mid`; `mid` holds exactly what `gemm` of A1 alone gives (β = 0, α = 1), the padding of
    /// both untouched. The scan path relies on it (Y⁰ and Y of ahla and hla3 from one pass: ScanChunkTests).
    func testGemm2FirstProductStructureAndMid() {
        var rng = SplitMix64(seed: 23)
        // (m, n, k2): fused; m % 6 = 1; fused with 4-row tiles at the end; too large to fuse; n not a whole panel
        for (m, n, k2) in [(32, 64, 64), (37, 48, 17), (64, 32, 16), (64, 32, 128), (33, 20, 9)] {
            for (t1, t2) in [(false, false), (true, false), (false, true)] {
                for st in [[], [.lowerA], [.upperA]] as [Gemm.Structure] {
                    let k1 = m, pad = 3, lda1 = m + pad, lda2 = (t2 ? m : k2) + pad, ldb = n + pad, ldc = n + 2
                    var a1 = [Float](repeating: 0, count: m * lda1)
                    for i in 0..<m { for p in 0..<k1 {
                        let keep = st.contains(.lowerA) ? p <= i : st.contains(.upperA) ? p >= i : true
                        a1[t1 ? p * lda1 + i : i * lda1 + p] = keep ? Float(rng.normal()) : 0
                    } }
                    let a2 = (0..<((t2 ? k2 : m) * lda2)).map { _ in Float(rng.normal()) }
                    let b1 = (0..<(k1 * ldb)).map { _ in Float(rng.normal()) }
                    let b2 = (0..<(k2 * ldb)).map { _ in Float(rng.normal()) }
                    let c0 = (0..<(m * ldc)).map { _ in Float(rng.normal()) }
                    var got = c0, mid = c0.map { -$0 }, plain = c0, first = c0
                    let mid0 = mid
                    Float.gemm2(m, n, 1, 0, &got, ldc, t1, k1, a1, lda1, b1, ldb, t2, k2, a2, lda2, b2, ldb,
                                structure1: st, mid: &mid)
                    Float.gemm2(m, n, 1, 0, &plain, ldc, t1, k1, a1, lda1, b1, ldb, t2, k2, a2, lda2, b2, ldb,
                                structure1: st)
                    Float.gemm(t1, false, m, n, k1, 1, a1, lda1, b1, ldb, 0, &first, ldc, structure: st)
                    let (a, b) = concatenation(m, n, t1, k1, a1, lda1, b1, t2, k2, a2, lda2, b2, ldb), k = k1 + k2
                    var cat = c0
                    Float.gemm(false, false, m, n, k, 1, a, k, b, n, 0, &cat, ldc)
                    let fused = n % Float.Panel.scalarCount == 0 && m * k * 4 <= Gemm.fusedBytes
                    let what = "m=\(m) n=\(n) k2=\(k2) t1=\(t1) t2=\(t2) \(st)"
                    for i in 0..<m {
                        for j in n..<ldc {
                            XCTAssertEqual(got[i * ldc + j], c0[i * ldc + j], "wrote C's padding: " + what)
                            XCTAssertEqual(mid[i * ldc + j], mid0[i * ldc + j], "wrote mid's padding: " + what)
                        }
                        for j in 0..<n {
                            let x = i * ldc + j
                            var want = 0.0
                            for p in 0..<k { want += Double(a[i * k + p]) * Double(b[p * n + j]) }
                            XCTAssertLessThanOrEqual(abs(Double(got[x]) - want), 1e-5 * Double(k).squareRoot() * max(1, abs(want)), what)
                            XCTAssertEqual(got[x], plain[x], "mid changed C: " + what + " C[\(i)][\(j)]")
                            XCTAssertEqual(mid[x], first[x], "mid is not gemm of A1: " + what + " [\(i)][\(j)]")
                            if fused { XCTAssertEqual(got[x], cat[x], "not one chain: " + what + " C[\(i)][\(j)]") }
                        }
                    }
                }
            }
        }
    }

    /// gram: C = α Aᵀ (diag(w) A) + β C for a symmetric C computes C's lower half as `gemm` does (bit for bit) and
    /// makes the upper half its mirror: C exactly symmetric, padding untouched. Float32 (the 8 × 8 block mirror for
    /// n % 8 == 0, element by element otherwise) and float64; weights below 1 (decay), so the full product's upper
    /// half would round differently from its lower.
    func testGramIsTheLowerHalfMirrored() {
        gramIsTheLowerHalfMirrored(Float.self)
        gramIsTheLowerHalfMirrored(Double.self)
    }

    func gramIsTheLowerHalfMirrored<T: HLAFloat>(_: T.Type) {
        var rng = SplitMix64(seed: 23)
        for n in [1, 5, 8, 16, 24, 37, 64, 128] {
            for (k, pad, beta) in [(32, 0, 0.0), (7, 3, 0.9), (64, 0, 0.5)] {
                let ld = n + pad
                let a = (0..<(k * ld)).map { _ in T(rng.normal()) }
                var b = a
                var w = T(1)
                for p in 0..<k { for j in 0..<ld { b[p * ld + j] *= w }; w *= T(0.97) }
                var c0 = [T](repeating: 0, count: n * ld)
                for i in 0..<n { for j in 0...i { let x = T(rng.normal()); c0[i * ld + j] = x; c0[j * ld + i] = x } }
                for i in 0..<n { for j in n..<ld { c0[i * ld + j] = T(rng.normal()) } }
                var got = c0, lower = c0
                T.gram(n, k, 0.75, a, ld, b, ld, T(beta), &got, ld)
                T.gemm(true, false, n, n, k, 0.75, a, ld, b, ld, T(beta), &lower, ld)
                let what = "\(T.self) n=\(n) k=\(k) pad=\(pad)"
                for i in 0..<n {
                    for j in 0...i { XCTAssertEqual(got[i * ld + j], lower[i * ld + j], what + " C[\(i)][\(j)]") }
                    for j in (i + 1)..<max(n, i + 1) { XCTAssertEqual(got[i * ld + j], got[j * ld + i], what + " C[\(i)][\(j)]") }
                    for j in n..<ld { XCTAssertEqual(got[i * ld + j], c0[i * ld + j], what + " padding") }
                }
            }
        }
    }
}
