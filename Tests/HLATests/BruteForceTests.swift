// (a) The library's brute force (hla_reference) against the literal index sums of BruteForce.swift.
import CHLA
import XCTest
@testable import HLA

/// Every option combination of SPEC §2 for one operator.
func optionGrid(_ op: Int32, decays: [Double] = [1, 0.85]) -> [Options] {
    var r: [Options] = []
    for masked in [true, false] {
        for normalize in [false, true] {
            for decay in decays {
                for ridge in (op == opHLA2 ? [0.0, 0.25] : [0.0]) {
                    r.append(Options(op: op, masked: masked, normalize: normalize, decay: decay, ridge: ridge))
                }
            }
        }
    }
    return r
}

final class BruteForceTests: XCTestCase {
    func testReferenceMatchesLiteralIndexSums() {
        var worst = 0.0, cases = 0
        for op in allOps {
            for o in optionGrid(op) {
                for (T, Hkv) in [(1, 2), (4, 1), (7, 2), (7, 4)] {
                    let s = Shape(B: 2, T: T, H: 4, Hkv: Hkv, dk: 5, dv: 3)
                    let p = Problem(s, seed: UInt64(1000 + T * 10 + Hkv))
                    let expect = BruteForce.run(p, o)
                    let got = Typed<Double>(p).reference(makeConfig(s, o))
                    let e = relErr(got, expect)
                    worst = max(worst, e); cases += 1
                    XCTAssertLessThanOrEqual(e, 1e-12, "\(o) \(s)")
                }
            }
        }
        print("brute force vs hla_reference: \(cases) cases, worst relative error \(worst)")
    }

    /// The literal sums themselves, on a hand-checkable case: T = 2, one head, dk = dv = 1, γ = 1/2.
    func testLiteralSumsByHand() {
        let s = Shape(B: 1, T: 2, H: 1, Hkv: 1, dk: 1, dv: 1)
        var p = Problem(s, seed: 1)
        p.q = [2, 3]; p.k = [5, 7]; p.v = [11, 13]
        let g = 0.5
        func run(_ op: Int32, _ masked: Bool, ridge: Double = 0) -> [Double] {
            BruteForce.run(p, Options(op: op, masked: masked, decay: g, ridge: ridge, scale: 1))
        }
        // t = 1 (index 0): every operator gives (q1 k1)^2-type products of the one token.
        XCTAssertEqual(run(opHLA2, true)[0], 2 * 5 * 5 * 2 * 11)
        XCTAssertEqual(run(opAHLA, true)[0], 2 * 5 * 2 * 5 * 11)
        XCTAssertEqual(run(opHLA3, true)[0], 2 * 5 * 5 * 2 * 2 * 5 * 11)
        // hla2 masked, t = 2: (i,j) ∈ {(1,1), (1,2), (2,2)}
        let q1 = 2.0, q2 = 3.0, k1 = 5.0, k2 = 7.0, v1 = 11.0, v2 = 13.0
        let h2 = g * g * (q2 * k1) * (k1 * q1) * v1 + g * (q2 * k1) * (k1 * q2) * v2 + (q2 * k2) * (k2 * q2) * v2
        XCTAssertEqual(run(opHLA2, true)[1], h2, accuracy: 1e-9)
        // unmasked adds (i, j) = (2, 1)
        XCTAssertEqual(run(opHLA2, false)[1], h2 + g * (q2 * k2) * (k2 * q1) * v1, accuracy: 1e-9)
        // ridge adds λ (γ q2 q1 v1 + q2 q2 v2)
        XCTAssertEqual(run(opHLA2, true, ridge: 0.25)[1], h2 + 0.25 * (g * q2 * q1 * v1 + q2 * q2 * v2), accuracy: 1e-9)
        // ahla masked, t = 2: (j,i) ∈ {(1,1), (1,2), (2,2)}, weight γ^{t-j}
        let a2 = g * (q2 * k1) * (q1 * k1) * v1 + g * (q2 * k2) * (q2 * k1) * v1 + (q2 * k2) * (q2 * k2) * v2
        XCTAssertEqual(run(opAHLA, true)[1], a2, accuracy: 1e-9)
    }
}
