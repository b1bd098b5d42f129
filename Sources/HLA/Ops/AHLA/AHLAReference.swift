/// ahla brute force: masked M[t][j] = γ^{t-j} Σ_{i=j}^{t} (q_t·k_i)(q_i·k_j);
/// unmasked M[t][j] = Σ_{i≤t} γ^{(t-i)+(t-j)} (q_t·k_i)(q_i·k_j), for j ≤ t.
extension AHLA {
    static func referenceCoefficients(_ c: Config, _ r: ReferenceWork, m: UnsafeMutablePointer<Double>) {
        let T = r.T
        for t in 0..<T {
            for j in 0..<T {
                var s = 0.0
                if j <= t {
                    if c.masked {
                        for i in j...t { s += r.g(t, i) * r.g(i, j) }
                        s *= r.gp[t - j]
                    } else {
                        for i in 0...t { s += r.gp[t - i] * r.g(t, i) * r.g(i, j) }
                        s *= r.gp[t - j]
                    }
                }
                m[t * T + j] = s
            }
        }
    }
}
