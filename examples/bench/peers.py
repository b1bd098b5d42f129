"""Numpy peers of libhla for the benchmark (SPEC.md §2 operators, masked, decay 1, no ridge,
no normalization): what a user would write instead of calling the library.

* ``chunked(op, q, k, v, n, scale)`` -- the SAME chunked algorithm as Sources/HLA/Ops/*/*Chunk.swift,
  all heads batched through np.matmul on [Hkv, group, n, d] stacks (grouped kv heads broadcast).
* ``StepPeer(op, H, Hkv, dk, dv)`` -- per-token recurrence with state arrays for all heads.
* ``softmax_attention(q, k, v, scale, block)`` -- causal softmax attention, query blocks so the
  score matrix is never T x T.
* ``macs_per_chunk(op, n, dk, dv, group)`` -- multiply-adds of the gemm list of one chunk.

All take and return the library layout [B, T, H, D].
"""
import numpy as np

OPS = ("hla2", "ahla", "hla3")


# ----------------------------------------------------------------------------------------------
# Multiply-add count of the chunked algorithm (masked, decay 1, ridge 0), per chunk of n tokens,
# per kv head with `group` query heads. Each term is one T.gemm call of <Op>Chunk.swift (m*n*k),
# in source order; the n^3 products are full (not triangular) gemms, counted as performed.
# ----------------------------------------------------------------------------------------------
def gemm_list(op, n, dk, dv):
    """[(label, per_query_head_macs or None, per_kv_head_macs or None)] of one chunk."""
    if op == "hla2":
        return [
            ("A = Q K^T", n * n * dk, None),
            ("W = (A.D) B", n * n * n, None),
            ("Q S0", n * dk * dk, None),
            ("W += (Q S0) Q^T", n * n * dk, None),
            ("O = W V", n * n * dv, None),
            ("Q U0", n * dk * dv, None),
            ("B G V", n * n * dv, None),
            ("U += K^T (B G V)", dk * dv * n, None),
            ("U += (Q S0)^T G2 V", dk * dv * n, None),
            ("S += K^T G K", None, dk * dk * n),
        ]
    if op == "ahla":
        return [
            ("A = Q K^T", n * n * dk, None),
            ("Q P0", n * dv * dk, None),
            ("Y += (A.D) V", n * dv * n, None),
            ("Q E0", n * dv * dk, None),
            ("O += (A.D) Y", n * dv * n, None),
            ("E += K^T G Y", dk * dv * n, None),
            ("P += K^T G V", None, dk * dv * n),
        ]
    if op == "hla3":
        return [
            ("A = Q K^T", n * n * dk, None),
            ("M = A B^t", n * n * n, None),
            ("Q S0", n * dk * dk, None),
            ("M += (Q S0) Q^T", n * n * dk, None),
            ("Q P0", n * dv * dk, None),
            ("Y += (A.D1) V", n * dv * n, None),
            ("Q W0", n * dv * dk, None),
            ("O += M Y", n * dv * n, None),
            ("W += (Q S0)^T G Y", dk * dv * n, None),
            ("B^t Y", n * dv * n, None),
            ("W += K^T (B^t Y)", dk * dv * n, None),
            ("P += K^T G V", None, dk * dv * n),
            ("S += K^T G K", None, dk * dk * n),
        ]
    raise ValueError(op)


def macs_per_chunk(op, n, dk, dv, group=1):
    """Multiply-adds of one chunk of one kv head and its `group` query heads."""
    tot = 0
    for _, per_q, per_kv in gemm_list(op, n, dk, dv):
        tot += group * (per_q or 0) + (per_kv or 0)
    return tot


def macs_formula(op):
    """The closed form of macs_per_chunk per query head (group g), as text."""
    return {
        "hla2": "n^3 + n^2 (2 dk + 2 dv) + n dk^2 + 3 n dk dv  [+ n dk^2 per kv head]",
        "ahla": "n^2 (dk + 2 dv) + 3 n dk dv  [+ n dk dv per kv head]",
        "hla3": "n^3 + n^2 (2 dk + 3 dv) + n dk^2 + 4 n dk dv  [+ n dk dv + n dk^2 per kv head]",
    }[op]


def flops(op, B, T, H, Hkv, dk, dv, n):
    """2 x multiply-adds of a whole chunked forward (partial last chunk counted at its length)."""
    g = H // Hkv
    full, rem = divmod(T, n)
    m = full * macs_per_chunk(op, n, dk, dv, g)
    if rem:
        m += macs_per_chunk(op, rem, dk, dv, g)
    return 2.0 * B * Hkv * m


# ----------------------------------------------------------------------------------------------
# Chunked forward in numpy
# ----------------------------------------------------------------------------------------------
def _heads(x, Hkv, g):
    """[T, H, D] -> contiguous [Hkv, g, T, D]."""
    T, H, D = x.shape
    return np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(Hkv, g, T, D)


def chunked(op, q, k, v, n=64, scale=1.0):
    B, T, H, dk = q.shape
    Hkv, dv = k.shape[2], v.shape[3]
    g = H // Hkv
    dt = q.dtype
    out = np.empty((B, T, H, dv), dt)
    tri = np.tril(np.ones((n, n), dt))
    triu = np.ascontiguousarray(tri.T)
    for b in range(B):
        Q = _heads(q[b] * dt.type(scale), Hkv, g)
        K = _heads(k[b], Hkv, 1)
        V = _heads(v[b], Hkv, 1)
        O = np.empty((Hkv, g, T, dv), dt)
        if op == "hla2":
            _hla2(Q, K, V, O, n, tri, triu)
        elif op == "ahla":
            _ahla(Q, K, V, O, n, tri)
        elif op == "hla3":
            _hla3(Q, K, V, O, n, tri, triu)
        else:
            raise ValueError(op)
        out[b] = O.reshape(H, T, dv).transpose(1, 0, 2)
    return out


def _hla2(Q, K, V, O, n, tri, triu):
    Hkv, g, T, dk = Q.shape
    dv = V.shape[3]
    S = np.zeros((Hkv, 1, dk, dk), Q.dtype)          # sum k k^T
    U = np.zeros((Hkv, g, dk, dv), Q.dtype)          # sum_{i<=j} k_i k_i^T q_j v_j^T
    for t0 in range(0, T, n):
        m = min(n, T - t0)
        L, Lt = tri[:m, :m], triu[:m, :m]
        Qc, Kc, Vc = Q[:, :, t0:t0 + m], K[:, :, t0:t0 + m], V[:, :, t0:t0 + m]
        Qt, Kt = Qc.swapaxes(-1, -2), Kc.swapaxes(-1, -2)
        A = Qc @ Kt                                   # q_t . k_i
        Bm = A.swapaxes(-1, -2) * Lt                  # k_i . q_j, i <= j
        W = (A * L) @ Bm
        QS = Qc @ S
        W += QS @ Qt
        W *= L
        Oc = W @ Vc
        Oc += Qc @ U
        O[:, :, t0:t0 + m] = Oc
        U += Kt @ (Bm @ Vc)
        U += QS.swapaxes(-1, -2) @ Vc                 # S0 Q^T V = (Q S0)^T V, S0 symmetric
        S += Kt @ Kc


def _ahla(Q, K, V, O, n, tri):
    Hkv, g, T, dk = Q.shape
    dv = V.shape[3]
    P = np.zeros((Hkv, 1, dk, dv), Q.dtype)          # sum k v^T
    E = np.zeros((Hkv, g, dk, dv), Q.dtype)          # sum k_i y_i^T
    for t0 in range(0, T, n):
        m = min(n, T - t0)
        L = tri[:m, :m]
        Qc, Kc, Vc = Q[:, :, t0:t0 + m], K[:, :, t0:t0 + m], V[:, :, t0:t0 + m]
        Kt = Kc.swapaxes(-1, -2)
        Al = (Qc @ Kt) * L
        Y = Al @ Vc
        Y += Qc @ P                                   # y_i = P_i^T q_i
        Oc = Al @ Y
        Oc += Qc @ E
        O[:, :, t0:t0 + m] = Oc
        E += Kt @ Y
        P += Kt @ Vc


def _hla3(Q, K, V, O, n, tri, triu):
    Hkv, g, T, dk = Q.shape
    dv = V.shape[3]
    S = np.zeros((Hkv, 1, dk, dk), Q.dtype)          # sum k k^T
    P = np.zeros((Hkv, 1, dk, dv), Q.dtype)          # sum k v^T
    W = np.zeros((Hkv, g, dk, dv), Q.dtype)          # sum_u S_u q_u y_u^T
    for t0 in range(0, T, n):
        m = min(n, T - t0)
        L, Lt = tri[:m, :m], triu[:m, :m]
        Qc, Kc, Vc = Q[:, :, t0:t0 + m], K[:, :, t0:t0 + m], V[:, :, t0:t0 + m]
        Qt, Kt = Qc.swapaxes(-1, -2), Kc.swapaxes(-1, -2)
        A = Qc @ Kt
        Bt = A.swapaxes(-1, -2) * Lt                  # k_a . q_u, a <= u
        M = A @ Bt
        QS = Qc @ S
        M += QS @ Qt
        M *= L
        Y = (A * L) @ Vc
        Y += Qc @ P
        Oc = M @ Y
        Oc += Qc @ W
        O[:, :, t0:t0 + m] = Oc
        W += QS.swapaxes(-1, -2) @ Y                  # S0 Q^T Y = (Q S0)^T Y
        W += Kt @ (Bt @ Y)
        P += Kt @ Vc
        S += Kt @ Kc


# ----------------------------------------------------------------------------------------------
# Per-token recurrence in numpy (decoding)
# ----------------------------------------------------------------------------------------------
class StepPeer:
    """State arrays for all heads; step(q_t [H,dk], k_t [Hkv,dk], v_t [Hkv,dv]) -> [H,dv] (B = 1)."""

    def __init__(self, op, H, Hkv, dk, dv, scale=1.0, dtype=np.float32):
        self.op, self.H, self.Hkv, self.g = op, H, Hkv, H // Hkv
        self.scale = dtype(scale)
        z = lambda *s: np.zeros(s, dtype)
        if op == "hla2":
            self.S, self.U = z(Hkv, 1, dk, dk), z(Hkv, self.g, dk, dv)
        elif op == "ahla":
            self.P, self.E = z(Hkv, 1, dk, dv), z(Hkv, self.g, dk, dv)
        elif op == "hla3":
            self.S, self.P, self.W = z(Hkv, 1, dk, dk), z(Hkv, 1, dk, dv), z(Hkv, self.g, dk, dv)
        else:
            raise ValueError(op)

    def step(self, q, k, v):
        q = (q * self.scale).reshape(self.Hkv, self.g, 1, -1)   # row vectors q_t^T
        kc = k.reshape(self.Hkv, 1, -1, 1)                       # column k_t
        vr = v.reshape(self.Hkv, 1, 1, -1)                       # row v_t^T
        if self.op == "hla2":
            self.S += kc * kc.swapaxes(-1, -2)                   # S += k k^T
            z = q @ self.S                                       # (S q)^T, S symmetric
            self.U += z.swapaxes(-1, -2) * vr                    # U += (S q) v^T
            o = q @ self.U                                       # q^T U
        elif self.op == "ahla":
            self.P += kc * vr                                    # P += k v^T
            y = q @ self.P                                       # (P^T q)^T
            self.E += kc * y                                     # E += k y^T
            o = q @ self.E
        else:
            self.S += kc * kc.swapaxes(-1, -2)
            self.P += kc * vr
            z = q @ self.S
            y = q @ self.P
            self.W += z.swapaxes(-1, -2) * y                     # W += (S q)(P^T q)^T
            o = q @ self.W
        return o.reshape(self.H, -1)


def step_sequence(op, q, k, v, scale=1.0):
    """Run StepPeer over [1, T, H, D] inputs; returns [1, T, H, dv]."""
    _, T, H, dk = q.shape
    Hkv, dv = k.shape[2], v.shape[3]
    p = StepPeer(op, H, Hkv, dk, dv, scale, q.dtype.type)
    return np.stack([p.step(q[0, t], k[0, t], v[0, t]) for t in range(T)])[None]


# ----------------------------------------------------------------------------------------------
# Causal softmax attention (numpy), query blocks of `block` rows
# ----------------------------------------------------------------------------------------------
def softmax_attention(q, k, v, scale=1.0, block=256):
    B, T, H, dk = q.shape
    Hkv, dv = k.shape[2], v.shape[3]
    g = H // Hkv
    dt = q.dtype
    out = np.empty((B, T, H, dv), dt)
    neg = np.triu(np.full((block, block), -np.inf, dt), 1)
    for b in range(B):
        Q = _heads(q[b] * dt.type(scale), Hkv, g)
        K = _heads(k[b], Hkv, 1)
        V = _heads(v[b], Hkv, 1)
        O = np.empty((Hkv, g, T, dv), dt)
        for s in range(0, T, block):
            e = min(s + block, T)
            Sc = Q[:, :, s:e] @ K[:, :, :e].swapaxes(-1, -2)      # [Hkv, g, e-s, e]
            Sc[..., s:e] += neg[:e - s, :e - s]
            Sc -= Sc.max(-1, keepdims=True)
            np.exp(Sc, out=Sc)
            den = Sc.sum(-1, keepdims=True)
            O[:, :, s:e] = (Sc @ V[:, :, :e]) / den
        out[b] = O.reshape(H, T, dv).transpose(1, 0, 2)
    return out


def softmax_flops(B, T, H, dk, dv):
    """2 x multiply-adds of causal attention counting only the causal half: QK^T and PV."""
    return 2.0 * B * H * (T * (T + 1) / 2) * (dk + dv)


def softmax_brute(q, k, v, scale=1.0):
    q64, k64, v64 = (x.astype(np.float64) for x in (q, k, v))
    B, T, H, dk = q.shape
    g = H // k.shape[2]
    k64 = np.repeat(k64, g, axis=2)
    v64 = np.repeat(v64, g, axis=2)
    s = np.einsum("bthd,bshd->bhts", q64 * scale, k64)
    s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    return np.einsum("bhts,bshd->bthd", s, v64)
