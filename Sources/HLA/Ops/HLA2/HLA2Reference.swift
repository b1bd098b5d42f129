/// hla2 brute force: M[t][j] = γ^{t-j} Σ_{i ≤ min(j,t) (masked) or t} γ^{t-i} (q_t·k_i)(k_i·q_j) + λ γ^{t-j} (q_t·q_j).
extension HLA2 {
    static func referenceCoefficients(_ c: Config, _ r: ReferenceWork, m: UnsafeMutablePointer<Double>) {
        let T = r.T
        for t in 0..<T {
            for j in 0..<T {
                var s = 0.0
                if j <= t {
                    let lim = c.masked ? j : t
                    for i in 0...lim { s += r.gp[t - i] * r.g(t, i) * r.g(j, i) }
                    s *= r.gp[t - j]
                    if c.ridge != 0 { s += c.ridge * r.gp[t - j] * r.qq(t, j) }
                }
                m[t * T + j] = s
            }
        }
    }
}
