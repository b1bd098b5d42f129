/// Third-order HLA (docs/spec.md §2 "hla3", A Aᵀ A V):
///   num_t = Σ_{u≤t} Σ_{a≤u} Σ_{c≤u} γ^{(t-a)+(t-u)+(t-c)} (q_t·k_a)(k_a·q_u)(q_u·k_c) v_c  (masked).
///
/// Masked identity (docs/hla3.md): with S_u = Σ_{a≤u} γ^{u-a} k_a k_aᵀ, P_u = Σ_{c≤u} γ^{u-c} k_c v_cᵀ,
///   num_t = q_tᵀ W_t,   W_t = γ³ W_{t-1} + (S_t q_t)(P_tᵀ q_t)ᵀ.
/// State per kv head: S (dk × dk), P (dk × dvp). Per query head: W (dk × dvp) masked, or
/// S^Q = Σ γ^{t-u} q_u q_uᵀ (dk × dk) unmasked (num = q_tᵀ S_t S^Q_t P_t).
/// Summary extras (masked), per query head: Q2 = Σ_u γ^{3(n-u)+2u} q_u q_uᵀ, X = Σ_u γ^{3(n-u)+u} q_u q_uᵀ P_u,
/// Z = Σ_u γ^{3(n-u)+u} S_u q_u q_uᵀ (segment-local S_u, P_u).
enum HLA3: Operator {
    static func stateBlocks(_ c: Config) -> (kv: Dims, q: Dims) {
        (kv: Dims(c.dk * c.dk, c.dk * c.dvp), q: Dims(c.masked ? c.dk * c.dvp : c.dk * c.dk))
    }
    static func summaryExtraBlocks(_ c: Config) -> Dims {
        c.masked ? Dims(c.dk * c.dk, c.dk * c.dvp, c.dk * c.dk) : Dims()
    }
}
