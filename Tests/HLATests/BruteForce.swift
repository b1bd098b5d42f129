// An independent, literal evaluation of the index sums of SPEC.md §2 (not the library's code): every
// output is a plain sum over index tuples with the weight written out, in double. O(T³ d) per head
// (O(T⁴)-ish for hla3), so only for tiny T.
import Foundation

enum BruteForce {
    /// Outputs [B, T, H, dv] of the operator `o` on problem `p`.
    static func run(_ p: Problem, _ o: Options) -> [Double] {
        let s = p.s
        let scale = o.scale ?? 1 / Double(s.dk).squareRoot()
        var out = [Double](repeating: 0, count: p.outCount)
        for b in 0..<s.B {
            for h in 0..<s.H {
                let g = h / s.group
                // scaled queries, keys, values of this head
                let Q = (0..<s.T).map { t in (0..<s.dk).map { scale * p.qv(b, t, h, $0) } }
                let K = (0..<s.T).map { t in (0..<s.dk).map { p.kv(b, t, g, $0) } }
                let V = (0..<s.T).map { t in (0..<s.dv).map { p.vv(b, t, g, $0) } }
                for t in 0..<s.T {
                    // coef[j] multiplies v_j in num_t; den_t = Σ_j coef[j]
                    var coef = [Double](repeating: 0, count: s.T)
                    func w(_ e: Int) -> Double { Foundation.pow(o.decay, Double(e)) }
                    switch o.op {
                    case 0:  // hla2: Σ_{i ≤ j ≤ t} γ^{(t-i)+(t-j)} (q_t·k_i)(k_i·q_j) v_j + λ Σ_j γ^{t-j}(q_t·q_j) v_j
                        for i in 0...t {
                            for j in 0...t where !o.masked || i <= j {
                                coef[j] += w((t - i) + (t - j)) * dot(Q[t], K[i]) * dot(K[i], Q[j])
                            }
                        }
                        for j in 0...t { coef[j] += o.ridge * w(t - j) * dot(Q[t], Q[j]) }
                    case 1:  // ahla: Σ_{j ≤ i ≤ t} γ^{t-j} (q_t·k_i)(q_i·k_j) v_j; unmasked γ^{(t-i)+(t-j)}, all i, j
                        for i in 0...t {
                            for j in 0...t where !o.masked || j <= i {
                                let wt = o.masked ? w(t - j) : w((t - i) + (t - j))
                                coef[j] += wt * dot(Q[t], K[i]) * dot(Q[i], K[j])
                            }
                        }
                    default: // hla3: Σ_{u ≤ t} Σ_{a ≤ u} Σ_{c ≤ u} γ^{(t-a)+(t-u)+(t-c)} (q_t·k_a)(k_a·q_u)(q_u·k_c) v_c
                        for u in 0...t {
                            for a in 0...t where !o.masked || a <= u {
                                for c in 0...t where !o.masked || c <= u {
                                    coef[c] += w((t - a) + (t - u) + (t - c))
                                        * dot(Q[t], K[a]) * dot(K[a], Q[u]) * dot(Q[u], K[c])
                                }
                            }
                        }
                    }
                    let den = coef.reduce(0, +)
                    for x in 0..<s.dv {
                        var num = 0.0
                        for j in 0...t { num += coef[j] * V[j][x] }
                        out[p.oi(b, t, h, x)] = o.normalize ? num / (den + o.eps) : num
                    }
                }
            }
        }
        return out
    }

    static func dot(_ a: [Double], _ b: [Double]) -> Double {
        var s = 0.0
        for i in 0..<a.count { s += a[i] * b[i] }
        return s
    }
}
