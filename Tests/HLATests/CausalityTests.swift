// Causality with non-finite inputs (SPEC §4): a NaN or Inf at token t may affect outputs ≥ t of its (batch,
// head) only — never an earlier output, another sequence or another head — on every path (chunked with the
// bad token inside a chunk, serial, scan, the step loop), for packed sequences too.
//
// ENGINE BUG (reported to the lead): on the chunked and scan paths a NaN/Inf at token t reaches the earlier
// outputs of its chunk (t = 4, 5 for a bad token 6 in chunk [4, 8)), for every operator and every input (q, k,
// v): the intra-chunk products apply the causal mask after multiplying (0 · NaN = NaN). Serial and step paths
// are causal; no other sequence or head is reached.
import CHLA
import XCTest
@testable import HLA

final class CausalityTests: XCTestCase {
    let s = Shape(B: 2, T: 11, H: 4, Hkv: 2, dk: 3, dv: 2)
    let bad = 6   // inside the chunk [4, 8) of chunk size 4

    /// Outputs of every path (forward 0-2, step loop 3).
    func outputs<E: Elem>(_ t: Typed<E>, _ cfg: hla_config) -> [[Double]] {
        (0..<3).map { t.forward(cfg, path: Int32($0)) } + [t.stepAll(cfg)]
    }

    /// (tensor, head index in it, value, column): q of head 1, k of kv head 0, v of kv head 1, q of head 2.
    static let narrowCases = [("q", 1, Double.nan, 1), ("k", 0, Double.infinity, 2), ("v", 1, Double.nan, 0),
                              ("q", 2, -Double.infinity, 1)]

    func run<E: Elem>(_ type: E.Type, _ s: Shape? = nil, cases: [(String, Int, Double, Int)] = narrowCases) {
        let s = s ?? self.s
        for op in allOps {
            for o in [Options(op: op, decay: 0.9, chunk: 4), Options(op: op, masked: false, normalize: true, decay: 1, chunk: 4),
                      Options(op: op, normalize: true, ridge: op == opHLA2 ? 0.25 : 0, chunk: 3)] {
                let p = Problem(s, seed: 333).rounded(to: E.dtype)
                let cfg = makeConfig(s, o)
                let clean = outputs(Typed<E>(p), cfg)
                for (which, head, value, col) in cases {
                    var d = p
                    switch which {
                    case "q": d.q[((0 * s.T + bad) * s.H + head) * s.dk + col] = value
                    case "k": d.k[((0 * s.T + bad) * s.Hkv + head) * s.dk + col] = value
                    default: d.v[((0 * s.T + bad) * s.Hkv + head) * s.dv + col] = value
                    }
                    // query heads the bad element may reach
                    let reach = which == "q" ? [head] : Array((head * s.group)..<((head + 1) * s.group))
                    let dirty = outputs(Typed<E>(d), cfg)
                    for path in 0..<4 {
                        var affected = false
                        var leaks: [String] = []
                        for b in 0..<s.B { for t in 0..<s.T { for h in 0..<s.H { for x in 0..<s.dv {
                            let i = p.oi(b, t, h, x)
                            let mayChange = b == 0 && t >= bad && reach.contains(h)
                            if mayChange { affected = affected || !dirty[path][i].isFinite || dirty[path][i] != clean[path][i]; continue }
                            if dirty[path][i].bitPattern != clean[path][i].bitPattern { leaks.append("b=\(b) t=\(t) h=\(h) x=\(x): \(dirty[path][i])") }
                        } } } }
                        XCTAssertTrue(leaks.isEmpty, "\(which)[b=0, t=\(bad), head \(head), column \(col)] = \(value) changed \(leaks.count) outputs it must not reach on path \(path) \(o), e.g. \(leaks.prefix(3))")
                        XCTAssertTrue(affected, "\(which) = \(value) changed nothing on path \(path) \(o) (the test would be vacuous)")
                    }
                }
            }
        }
    }

    func testNonFiniteFloat64() { run(Double.self) }
    func testNonFiniteFloat32() { run(Float.self) }
    func testNonFiniteBFloat16() { run(BFloat16.self) }

    /// Rows of 16 elements and more: the packing tests them 16 at a time (and the rest one by one), so the bad
    /// element sits in a 16-wide part (columns 3, 9) and in the remainder (columns 16, 19) of rows of 20 and 17.
    func testNonFiniteWideRows() {
        let wide = Shape(B: 2, T: 11, H: 4, Hkv: 2, dk: 20, dv: 17)
        let cases = [("q", 1, Double.nan, 3), ("k", 0, Double.infinity, 19), ("v", 1, Double.nan, 16),
                     ("q", 2, -Double.infinity, 17), ("v", 0, Double.infinity, 9)]
        run(Float.self, wide, cases: cases)
        run(Double.self, wide, cases: cases)
        run(Float16.self, wide, cases: cases)
    }

    /// Packed sequences: a NaN in one sequence never reaches another.
    func testNonFinitePacked() {
        let s1 = Shape(B: 1, T: 12, H: 2, Hkv: 1, dk: 3, dv: 2)
        for op in allOps {
            let cfg = makeConfig(s1, Options(op: op, decay: 0.9, chunk: 4))
            var p = Problem(s1, seed: 334)
            let cleanT = Typed<Double>(p)
            p.k[(3 * s1.Hkv) * s1.dk] = .nan   // token 3: second sequence of [0, 2), [2, 7), [7, 12)
            let t = Typed<Double>(p)
            for path: Int32 in [0, 1, 2] {
                let a = cleanT.outBuf(), b = t.outBuf()
                check(cForward(cfg, path, cleanT.qT(), cleanT.kT(), cleanT.vT(), cleanT.oT(a), cu: idx([0, 2, 7, 12])), "clean")
                check(cForward(cfg, path, t.qT(), t.kT(), t.vT(), t.oT(b), cu: idx([0, 2, 7, 12])), "dirty")
                var other: [Int] = [], earlier: [Int] = []
                for tok in 0..<s1.T { for h in 0..<s1.H { for x in 0..<s1.dv {
                    let i = p.oi(0, tok, h, x)
                    if a[i].bitPattern == b[i].bitPattern || tok >= 3 && tok < 7 { continue }
                    if tok < 2 || tok >= 7 { other.append(tok) } else { earlier.append(tok) }
                } } }
                XCTAssertTrue(other.isEmpty, "NaN at token 3 of sequence [2, 7) reached other sequences' tokens \(Set(other).sorted()) path \(path) op \(op)")
                XCTAssertTrue(earlier.isEmpty, "NaN at token 3 of sequence [2, 7) reached its earlier token 2 on path \(path) op \(op)")
                XCTAssertTrue(b[p.oi(0, 3, 0, 0)].isNaN)
            }
        }
    }
}
