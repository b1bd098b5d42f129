// Every equation of docs/hla3.md checked numerically: the streaming identity, the chunked form, the
// segment summary (S, P, W, Q2, X, Z) by its definition, its combine rule and associativity, the
// library's summary payload against those definitions, the summary size, and the index-triple
// analysis of the paper's Theorem 7.1.
import CHLA
import XCTest
@testable import HLA

final class HLA3IdentityTests: XCTestCase {
    let g = 0.85
    func setup(_ T: Int = 11, seed: UInt64 = 3) -> (Problem, Head) {
        let p = Problem(Shape(B: 1, T: T, H: 1, Hkv: 1, dk: 4, dv: 3), seed: seed)
        return (p, Head(p, scale: 0.5))
    }
    func truth(_ p: Problem, masked: Bool = true, decay: Double) -> [Double] {
        BruteForce.run(p, Options(op: opHLA3, masked: masked, decay: decay, scale: 0.5))
    }
    func pw(_ e: Int) -> Double { Foundation.pow(g, Double(e)) }

    // MARK: summaries by definition

    struct Sum3 { var S, P, W, Q2, X, Z: M; var n: Int; var all: [M] { [S, P, W, Q2, X, Z] } }

    /// Summary of tokens r by its definition (docs/hla3.md §4), local positions u = 1..n:
    /// W = Σ γ^{3(n-u)} S_u q_u q_uᵀ P_u, Q2 = Σ γ^{3(n-u)+2u} q_u q_uᵀ, X = Σ γ^{3(n-u)+u} q_u q_uᵀ P_u,
    /// Z = Σ γ^{3(n-u)+u} S_u q_u q_uᵀ, with segment-local S_u, P_u.
    func summary(_ h: Head, _ r: Range<Int>) -> Sum3 {
        let n = r.count
        var s = Sum3(S: .zeros(h.dk, h.dk), P: .zeros(h.dk, h.dv), W: .zeros(h.dk, h.dv), Q2: .zeros(h.dk, h.dk),
                     X: .zeros(h.dk, h.dv), Z: .zeros(h.dk, h.dk), n: n)
        for (i, t) in r.enumerated() {
            let u = i + 1
            s.S = g * s.S + M.outer(h.k[t], h.k[t]); s.P = g * s.P + M.outer(h.k[t], h.v[t])   // S_u, P_u
            let qq = M.outer(h.q[t], h.q[t])
            s.W = s.W + pw(3 * (n - u)) * (s.S * qq * s.P)
            s.Q2 = s.Q2 + pw(3 * (n - u) + 2 * u) * qq
            s.X = s.X + pw(3 * (n - u) + u) * (qq * s.P)
            s.Z = s.Z + pw(3 * (n - u) + u) * (s.S * qq)
        }
        return s
    }

    /// The combine rule (docs/hla3.md §4): ρ = γ^{n_B}, ρ_A = γ^{n_A}, T = Q2_B P_A + X_B.
    func combine(_ A: Sum3, _ B: Sum3) -> Sum3 {
        let rho = pw(B.n), rho3 = rho * rho * rho, rhoA = pw(A.n)
        let Tm = B.Q2 * A.P + B.X
        return Sum3(S: rho * A.S + B.S, P: rho * A.P + B.P,
                    W: rho3 * A.W + B.W + A.S * Tm + B.Z * A.P,
                    Q2: rho3 * A.Q2 + rhoA * rhoA * B.Q2,
                    X: rho3 * A.X + rhoA * Tm,
                    Z: rho3 * A.Z + rhoA * (A.S * B.Q2 + B.Z), n: A.n + B.n)
    }

    func worst(_ a: Sum3, _ b: Sum3) -> Double { zip(a.all, b.all).map { relErr($0, $1) }.max()! }

    func testStreamingIdentityAndWeightSplit() {
        let (p, h) = setup()
        for decay in [1.0, g] {
            var S = M.zeros(4, 4), P = M.zeros(4, 3), W = M.zeros(4, 3), SQ = M.zeros(4, 4)
            var masked: [Double] = [], unmasked: [Double] = []
            for t in 0..<h.T {
                S = decay * S + M.outer(h.k[t], h.k[t]); P = decay * P + M.outer(h.k[t], h.v[t])
                SQ = decay * SQ + M.outer(h.q[t], h.q[t])
                W = Foundation.pow(decay, 3) * W + (S * h.q[t]) * (P.T * h.q[t]).T
                masked += (h.q[t].T * W).a
                unmasked += (h.q[t].T * S * SQ * P).a
            }
            XCTAssertLessThanOrEqual(relErr(masked, truth(p, decay: decay)), 1e-12, "W_t identity, γ = \(decay)")
            XCTAssertLessThanOrEqual(relErr(unmasked, truth(p, masked: false, decay: decay)), 1e-12, "q S S^Q P, γ = \(decay)")
        }
        // the weight split γ^{(t-a)+(t-u)+(t-c)} = γ^{3(t-u)} γ^{u-a} γ^{u-c}
        for t in 0..<6 { for u in 0...t { for a in 0...u { for c in 0...u {
            XCTAssertEqual(pw((t - a) + (t - u) + (t - c)), pw(3 * (t - u)) * pw(u - a) * pw(u - c), accuracy: 1e-15)
        } } } }
    }

    func testSummaryCombineIsExactAndAssociative() {
        let (p, h) = setup(12, seed: 8)
        let A = summary(h, 0..<3), B = summary(h, 3..<8), C = summary(h, 8..<12), all = summary(h, 0..<12)
        XCTAssertLessThanOrEqual(worst(combine(A, B), summary(h, 0..<8)), 1e-12)
        XCTAssertLessThanOrEqual(worst(combine(combine(A, B), C), all), 1e-12)
        XCTAssertLessThanOrEqual(worst(combine(A, combine(B, C)), all), 1e-12)
        // the state part (S, P, W) of a prefix summary is the carry: q_tᵀ W of the summary of [0, t] is o_t
        let want = truth(p, decay: g)
        for t in 0..<12 {
            let s = summary(h, 0..<(t + 1))
            XCTAssertLessThanOrEqual(relErr((h.q[t].T * s.W).a, Array(want[(t * 3)..<(t * 3 + 3)])), 1e-12)
        }
        // single-token summaries folded in any bracketing give the same summary
        func tree(_ r: Range<Int>) -> Sum3 {
            if r.count == 1 { return summary(h, r) }
            let m = r.lowerBound + r.count / 2
            return combine(tree(r.lowerBound..<m), tree(m..<r.upperBound))
        }
        XCTAssertLessThanOrEqual(worst(tree(0..<12), all), 1e-12)
    }

    /// The library's summary row is exactly (S, P, W, Q2, X, Z) of the definitions, and its size is
    /// 3dk² + 3dk·dv elements per head (B = H = Hkv = 1); its state row is (S, P, W).
    func testLibrarySummaryMatchesDefinitions() {
        let (p, h) = setup(9, seed: 4)
        let cfg = makeConfig(p.s, Options(op: opHLA3, masked: true, decay: g, scale: 0.5))
        let t = Typed<Double>(p)
        let seg = t.summarize(cfg, 0, 9)
        let mine: [Double] = summary(h, 0..<9).all.flatMap { $0.a }
        XCTAssertLessThanOrEqual(relErr(seg.row(0), mine), 1e-12)
        let dk = 4, dv = 3
        XCTAssertEqual(summaryElements(cfg), 3 * dk * dk + 3 * dk * dv)
        XCTAssertEqual(stateElements(cfg), dk * dk + 2 * dk * dv)
        XCTAssertLessThanOrEqual(relErr(stateFrom(cfg, seg).row(0), Array(mine[0..<(dk * dk + 2 * dk * dv)])), 1e-12)
        // and its combine equals the rule above on the library's own summaries
        let a = t.summarize(cfg, 0, 4), b = t.summarize(cfg, 4, 9)
        let ab = HLATests.combine(cfg, a, b)
        let ruled: [Double] = combine(summary(h, 0..<4), summary(h, 4..<9)).all.flatMap { $0.a }
        XCTAssertLessThanOrEqual(relErr(ab.row(0), ruled), 1e-12)
    }

    /// The chunked form (docs/hla3.md §3): a chunk of n tokens from a carry (S0, P0, W0), with
    /// A = Q Kᵀ, Bᵗ[a][u] = (k_a·q_u) γ^{u-a} (a ≤ u), D_p[τ][u] = γ^{p(τ-u)} (u ≤ τ):
    ///   Y = (A ⊙ D_1) V + diag(γ^τ) Q P0,  M = [A Bᵗ + Q S0 Qᵀ diag(γ^u)] ⊙ D_3,  O = M Y + diag(γ^{3τ}) Q W0,
    ///   W ← γ^{3n} W0 + S0 Qᵀ diag(γ^{3(n-u)+u}) Y + Kᵀ Bᵗ diag(γ^{3(n-u)}) Y.
    func testChunkedForm() {
        let (p, h) = setup(11, seed: 6)
        var S0 = M.zeros(4, 4), P0 = M.zeros(4, 3), W0 = M.zeros(4, 3)
        var out: [Double] = []
        var t0 = 0
        while t0 < h.T {
            let n = min(4, h.T - t0), r = t0..<(t0 + n)
            let Q = M(n, 4, r.flatMap { h.q[$0].a }), K = M(n, 4, r.flatMap { h.k[$0].a }), V = M(n, 3, r.flatMap { h.v[$0].a })
            let A = Q * K.T
            var Bt = M.zeros(n, n), AD1 = M.zeros(n, n)
            for a in 0..<n { for u in 0..<n where a <= u { Bt[a, u] = A[u, a] * pw(u - a) } }
            for tau in 0..<n { for u in 0...tau { AD1[tau, u] = A[tau, u] * pw(tau - u) } }
            func diag(_ f: (Int) -> Double) -> M { var d = M.zeros(n, n); for i in 0..<n { d[i, i] = f(i + 1) }; return d }
            let Y: M = AD1 * V + diag { self.pw($0) } * Q * P0
            let QSQ: M = Q * S0 * Q.T * diag { self.pw($0) }
            var Mm: M = A * Bt + QSQ
            for tau in 0..<n { for u in 0..<n { Mm[tau, u] = u <= tau ? Mm[tau, u] * pw(3 * (tau - u)) : 0 } }
            let O: M = Mm * Y + diag { self.pw(3 * $0) } * Q * W0
            out += O.a
            let w1: M = S0 * Q.T * diag { self.pw(3 * (n - $0) + $0) } * Y
            let w2: M = K.T * Bt * diag { self.pw(3 * (n - $0)) } * Y
            W0 = pw(3 * n) * W0 + w1 + w2
            let Gm = diag { self.pw(n - $0) }
            S0 = pw(n) * S0 + K.T * Gm * K; P0 = pw(n) * P0 + K.T * Gm * V
            t0 += n
        }
        XCTAssertLessThanOrEqual(relErr(out, truth(p, decay: g)), 1e-12)
        XCTAssertLessThanOrEqual(relErr(W0, summary(h, 0..<11).W), 1e-12)
    }

    /// The unmasked chunked form: X1 = diag(γ^τ) Q S0 + (A ⊙ D_1) K (rows q_τᵀ S_τ),
    /// X2 = diag(γ^τ) X1 S^Q_0 + ((X1 Qᵀ) ⊙ D_1) Q (rows q_τᵀ S_τ S^Q_τ), O = diag(γ^τ) X2 P0 + ((X2 Kᵀ) ⊙ D_1) V.
    func testUnmaskedChunkedForm() {
        let (p, h) = setup(11, seed: 12)
        var S0 = M.zeros(4, 4), P0 = M.zeros(4, 3), SQ0 = M.zeros(4, 4)
        var out: [Double] = []
        var t0 = 0
        while t0 < h.T {
            let n = min(4, h.T - t0), r = t0..<(t0 + n)
            let Q = M(n, 4, r.flatMap { h.q[$0].a }), K = M(n, 4, r.flatMap { h.k[$0].a }), V = M(n, 3, r.flatMap { h.v[$0].a })
            func d1(_ x: M) -> M { var m = x; for i in 0..<n { for j in 0..<n { m[i, j] = j <= i ? x[i, j] * pw(i - j) : 0 } }; return m }
            func diag(_ f: (Int) -> Double) -> M { var d = M.zeros(n, n); for i in 0..<n { d[i, i] = f(i + 1) }; return d }
            let Dg = diag { self.pw($0) }
            let X1: M = Dg * Q * S0 + d1(Q * K.T) * K
            let X2: M = Dg * X1 * SQ0 + d1(X1 * Q.T) * Q
            let O: M = Dg * X2 * P0 + d1(X2 * K.T) * V
            out += O.a
            let Gm = diag { self.pw(n - $0) }
            S0 = pw(n) * S0 + K.T * Gm * K; P0 = pw(n) * P0 + K.T * Gm * V; SQ0 = pw(n) * SQ0 + Q.T * Gm * Q
            t0 += n
        }
        XCTAssertLessThanOrEqual(relErr(out, truth(p, masked: false, decay: g)), 1e-12)
    }

    /// Why Theorem 7.1 fails (γ = 1): G⁽¹⁾, G⁽²⁾, G⁽³⁾ remove the triples whose strict maximum is a, u, c
    /// respectively, so S^K S^Q P − G⁽¹⁾ − G⁽²⁾ − G⁽³⁾ keeps the triples whose maximum is attained twice;
    /// it differs from the masked sum by (triples a = c > u) − (triples with u the strict maximum).
    func testTheorem71TripleClasses() {
        let (_, h) = setup(8, seed: 11)
        func qk(_ x: M, _ y: M) -> Double { (x.T * y)[0, 0] }
        // Σ over (a, u, c) ≤ t satisfying `keep`, as a 1 × dv row
        func triples(_ t: Int, _ keep: (Int, Int, Int) -> Bool) -> M {
            var o = M.zeros(1, h.dv)
            for a in 0...t { for u in 0...t { for c in 0...t where keep(a, u, c) {
                o = o + (qk(h.q[t], h.k[a]) * qk(h.k[a], h.q[u]) * qk(h.q[u], h.k[c])) * h.v[c].T
            } } }
            return o
        }
        var SK = M.zeros(4, 4), SQ = M.zeros(4, 4), P = M.zeros(4, 3)
        var G1 = M.zeros(4, 3), G2 = G1, G3 = G1
        for t in 0..<h.T {
            let k = h.k[t], q = h.q[t]
            G1 = G1 + M.outer(k, k) * SQ * P            // eq. (7.2), prefixes at t-1
            G2 = G2 + SK * M.outer(q, q) * P
            G3 = G3 + SK * SQ * M.outer(k, h.v[t])
            SK = SK + M.outer(k, k); SQ = SQ + M.outer(q, q); P = P + M.outer(k, h.v[t])
            let full = q.T * SK * SQ * P
            XCTAssertLessThanOrEqual(relErr(full, triples(t) { _, _, _ in true }), 1e-12)
            XCTAssertLessThanOrEqual(relErr(q.T * G1, triples(t) { a, u, c in a > u && a > c }), 1e-12, "G1: a strict max")
            XCTAssertLessThanOrEqual(relErr(q.T * G2, triples(t) { a, u, c in u > a && u > c }), 1e-12, "G2: u strict max")
            XCTAssertLessThanOrEqual(relErr(q.T * G3, triples(t) { a, u, c in c > a && c > u }), 1e-12, "G3: c strict max")
            let paper = full - q.T * G1 - q.T * G2 - q.T * G3
            let masked = triples(t) { a, u, c in a <= u && c <= u }
            let diff = triples(t) { a, u, c in a == c && a > u } - triples(t) { a, u, c in u > a && u > c }
            if t >= 1 { XCTAssertLessThanOrEqual(relErr(paper - masked, diff), 1e-10, "t = \(t)") }
        }
    }
}
