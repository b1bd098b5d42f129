/// hla3 brute force, row by row: x[u] = Σ_{a ≤ u (masked) or t} γ^{t-a} (q_t·k_a)(k_a·q_u), then
/// M[t][c] = Σ_{u ≤ t, u ≥ c (masked)} γ^{(t-u)+(t-c)} x[u] (q_u·k_c), for c ≤ t.  O(T³) per head.
extension HLA3 {
    static func referenceCoefficients(_ c: Config, _ r: ReferenceWork, m: UnsafeMutablePointer<Double>) {
        let T = r.T, x = r.row
        for t in 0..<T {
            for uu in 0...t {
                var s = 0.0
                for a in 0...(c.masked ? uu : t) { s += r.gp[t - a] * r.g(t, a) * r.g(uu, a) }
                x[uu] = s
            }
            for cc in 0..<T {
                var s = 0.0
                if cc <= t {
                    for uu in (c.masked ? cc : 0)...t { s += r.gp[t - uu] * x[uu] * r.g(uu, cc) }
                    s *= r.gp[t - cc]
                }
                m[t * T + cc] = s
            }
        }
    }
}
