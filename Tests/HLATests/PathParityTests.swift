// (b) Every execution path against hla_reference: chunked, serial and scan forward, and the
// hla_state_step loop, for every option of every operator, float64 and float32, on odd shapes.
import CHLA
import XCTest
@testable import HLA

let parityWorst = Worst()

final class PathParityTests: XCTestCase {
    static let pathNames = ["chunked", "serial", "scan", "step"]

    /// (T, chunk_size): one token; T not a multiple of the chunk; chunk 1; automatic chunk (64).
    static let lengths: [(Int, Int64)] = [(1, 4), (13, 4), (13, 1), (64, 0)]

    func sweep(_ op: Int32) {
        var seed: UInt64 = 77 + UInt64(op) * 1_000
        for o0 in optionGrid(op) {
            for Hkv in [2, 1] {
                for (T, chunk) in Self.lengths {
                    seed += 1
                    var o = o0
                    o.chunk = chunk
                    let s = Shape(B: 2, T: T, H: 4, Hkv: Hkv, dk: 5, dv: 3)
                    let p64 = Problem(s, seed: seed)
                    let p32 = p64.roundedToFloat()
                    let cfg = makeConfig(s, o)
                    let ref64 = Typed<Double>(p64).reference(cfg)
                    let ref32 = Typed<Double>(p32).reference(cfg)
                    let t64 = Typed<Double>(p64), t32 = Typed<Float>(p32)
                    let c64 = cfg, c32 = cfg
                    var outs64: [[Double]] = (0..<3).map { t64.forward(c64, path: Int32($0)) }
                    outs64.append(t64.stepAll(c64))
                    var outs32: [[Double]] = (0..<3).map { t32.forward(c32, path: Int32($0)) }
                    outs32.append(t32.stepAll(c32))
                    // float32 normalized outputs divide by a sign-indefinite denominator (unit-normal inputs),
                    // so their max-norm error is the float32 error of num and den amplified by 1/|den_t|:
                    // check num and den each at 1e-4 and the quotient against its first-order bound.
                    var cond: CondBound? = nil
                    if o.normalize { cond = CondBound(p32, o) }
                    for path in 0..<4 {
                        let e64 = relErr(outs64[path], ref64), e32 = relErr(outs32[path], ref32)
                        let name = Self.pathNames[path]
                        parityWorst.note("\(o.opName) float64 \(name)\(o.normalize ? " normalized" : "")", e64)
                        XCTAssertLessThanOrEqual(e64, 1e-10, "float64 \(name) \(o) \(s)")
                        if let cond {
                            let r = cond.ratio(outs32[path], ref32)
                            parityWorst.note("\(o.opName) float32 \(name) normalized, plain", e32)
                            parityWorst.note("\(o.opName) float32 \(name) normalized, cond", r)
                            XCTAssertLessThanOrEqual(r, 1e-5, "float32 \(name) normalized \(o) \(s) (plain \(e32))")
                        } else {
                            parityWorst.note("\(o.opName) float32 \(name)", e32)
                            XCTAssertLessThanOrEqual(e32, 1e-4, "float32 \(name) \(o) \(s)")
                        }
                    }
                    if o.normalize {
                        // the denominator alone: the unnormalized operator with every value replaced by 1
                        var on = o
                        on.normalize = false
                        for (p, dtype) in [(p64, F64), (p32, F32)] {
                            let ones = CondBound.onesProblem(p)
                            let want = Typed<Double>(ones).reference(makeConfig(ones.s, on))
                            let cfg = makeConfig(ones.s, on)
                            var outs: [[Double]]
                            if dtype == F64 {
                                let t = Typed<Double>(ones)
                                outs = (0..<3).map { t.forward(cfg, path: Int32($0)) } + [t.stepAll(cfg)]
                            } else {
                                let t = Typed<Float>(ones)
                                outs = (0..<3).map { t.forward(cfg, path: Int32($0)) } + [t.stepAll(cfg)]
                            }
                            for path in 0..<4 {
                                let e = relErr(outs[path], want), dn = dtype == F64 ? "float64" : "float32"
                                parityWorst.note("\(o.opName) \(dn) \(Self.pathNames[path]) denominator", e)
                                XCTAssertLessThanOrEqual(e, dtype == F64 ? 1e-10 : 1e-4,
                                                         "\(dn) denominator \(Self.pathNames[path]) \(o) \(s)")
                            }
                        }
                    }
                }
            }
        }
    }

    func testHLA2AllPaths() { sweep(opHLA2) }
    func testAHLAAllPaths() { sweep(opAHLA) }
    func testHLA3AllPaths() { sweep(opHLA3) }

    /// Reference outputs are not trivially small or zero (guards against a vacuous comparison).
    func testReferenceIsNotDegenerate() {
        for op in allOps {
            for o in optionGrid(op) {
                let s = Shape(B: 2, T: 13, H: 4, Hkv: 2, dk: 5, dv: 3)
                let r = Typed<Double>(Problem(s, seed: 5)).reference(makeConfig(s, o))
                XCTAssertGreaterThan(r.map(abs).max()!, 1e-3, "\(o)")
                XCTAssertFalse(r.contains { !$0.isFinite })
            }
        }
    }

    override class func tearDown() {
        parityWorst.report("worst relative error vs hla_reference (op dtype path)")
        super.tearDown()
    }
}

/// First-order error bound of a normalized output o = num / (den + eps): with float64 references of num
/// and den (normalize off; den = the operator on values ≡ 1), |δo| ≤ ε (‖num‖_max + |o| ‖den‖_max) / |den + eps|
/// when num and den carry max-norm relative errors ≤ ε. `ratio` is the smallest such ε (max over elements).
struct CondBound {
    let p: Problem
    let num: [Double], den: [Double], eps: Double
    init(p: Problem, num: [Double], den: [Double], eps: Double) { self.p = p; self.num = num; self.den = den; self.eps = eps }
    init(_ p: Problem, _ o: Options) {
        self.p = p
        var on = o
        on.normalize = false
        num = Typed<Double>(p).reference(makeConfig(p.s, on))
        let ones = CondBound.onesProblem(p)
        den = Typed<Double>(ones).reference(makeConfig(ones.s, on))
        eps = o.eps
    }
    static func onesProblem(_ p: Problem) -> Problem {
        var q = p
        q.s.dv = 1
        q.v = [Double](repeating: 1, count: p.s.B * p.s.T * p.s.Hkv)
        return q
    }
    func ratio(_ got: [Double], _ ref: [Double], tokens: Range<Int>? = nil) -> Double {
        let s = p.s
        let numMax = num.map(abs).max()!, denMax = den.map(abs).max()!
        var worst = 0.0
        for b in 0..<s.B { for t in tokens ?? 0..<s.T { for h in 0..<s.H {
            let d = abs(den[(b * s.T + t) * s.H + h] + eps)
            for x in 0..<s.dv {
                let i = p.oi(b, t, h, x)
                if !got[i].isFinite { return .infinity }
                worst = max(worst, abs(got[i] - ref[i]) * d / (numMax + abs(ref[i]) * denMax))
            }
        } } }
        return worst
    }
}
