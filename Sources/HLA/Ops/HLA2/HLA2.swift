/// Second-order HLA (docs/spec.md §2 "hla2"): num_t = Σ_{i≤j≤t} γ^{(t-i)+(t-j)} (q_t·k_i)(k_i·q_j) v_j
/// + λ Σ_{j≤t} γ^{t-j} (q_t·q_j) v_j  (masked; unmasked sums all i, j ≤ t).
///
/// State per kv head: S = Σ γ^{t-i} k_i k_iᵀ (dk × dk).
/// Per query head, masked: U = Σ_{i≤j} γ^{(t-i)+(t-j)} k_i k_iᵀ q_j v_jᵀ (dk × dvp), the paper's S C − G
/// folded into one matrix (U_t = γ² U_{t-1} + S_t q_t v_tᵀ), and C = Σ γ^{t-j} q_j v_jᵀ when λ > 0.
/// Per query head, unmasked: C. Summary extras (masked, λ = 0): C, needed by combine.
enum HLA2: Operator {
    static func stateBlocks(_ c: Config) -> (kv: Dims, q: Dims) {
        let s = c.dk * c.dk, m = c.dk * c.dvp
        if c.masked { return (Dims(s), c.ridge != 0 ? Dims(m, m) : Dims(m)) }
        return (Dims(s), Dims(m))
    }
    static func summaryExtraBlocks(_ c: Config) -> Dims {
        c.masked && c.ridge == 0 ? Dims(c.dk * c.dvp) : Dims()
    }
    /// Offset of C in a query head's blocks (present in states when λ > 0 or unmasked, always in summaries).
    @inline(__always) static func cOffset(_ c: Config) -> Int { c.masked ? c.dk * c.dvp : 0 }
}
