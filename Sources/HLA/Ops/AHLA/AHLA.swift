/// Asymmetric second-order HLA (docs/spec.md §2 "ahla", A A V): num_t = Σ_{j≤i≤t} γ^{t-j} (q_t·k_i)(q_i·k_j) v_j
/// (masked; unmasked sums all i, j ≤ t with weight γ^{(t-i)+(t-j)}).
///
/// Masked, it is first-order linear attention applied twice: y_i = q_iᵀ P_i with P = Σ γ^{t-j} k_j v_jᵀ,
/// then E = Σ γ^{t-i} k_i y_iᵀ and o_t = q_tᵀ E_t (the paper's Algorithm 2).
/// State per kv head: P (dk × dvp). Per query head: E (dk × dvp) masked; R = Σ γ^{t-i} k_i q_iᵀ (dk × dk)
/// unmasked. Summary extra (masked): R⁰ = Σ k_i q_iᵀ, *not* decayed (docs/spec.md §3.3).
enum AHLA: Operator {
    static func stateBlocks(_ c: Config) -> (kv: Dims, q: Dims) {
        (kv: Dims(c.dk * c.dvp), q: Dims(c.masked ? c.dk * c.dvp : c.dk * c.dk))
    }
    static func summaryExtraBlocks(_ c: Config) -> Dims { c.masked ? Dims(c.dk * c.dk) : Dims() }
}
