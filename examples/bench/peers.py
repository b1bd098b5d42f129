"""Numpy, torch and JAX peers of libhla for the benchmark (SPEC.md §2 operators, masked, decay 1, no ridge,
no normalization): what a user would write instead of calling the library.

* ``chunked(op, q, k, v, n, scale)`` -- the SAME chunked algorithm as Sources/HLA/Ops/*/*Chunk.swift,
  all heads batched through np.matmul on [Hkv, group, n, d] stacks (grouped kv heads broadcast).
* ``chunked_torch`` -- the same functions on torch tensors (eager); ``chunked_jax`` -- the same chunk
  step as a jitted lax.scan over chunks (batch rows and heads batched).
* ``scan(op, q, k, v, n, scale)`` -- the scan algorithm of the library's scan path (Paths.swift `scan`,
  Sources/HLA/Ops/*/*Scan.swift): per chunk, the chunk's summary from a zero prefix, its outputs from the
  carry-in, and the summary combined into the running carry with the operator's combine rule; all heads
  batched as in ``chunked``. ``scan_torch`` -- the same functions on torch tensors; ``scan_jax`` -- the same
  chunk function as a jitted lax.scan body.
* ``StepPeer(op, H, Hkv, dk, dv)`` -- per-token recurrence with state arrays for all heads
  (``TorchStepPeer``, ``JaxStepPeer``: the same in torch and as one jitted JAX call per token).
* ``softmax_attention(q, k, v, scale, block)`` -- causal softmax attention, query blocks so the
  score matrix is never T x T.
* ``macs_per_chunk(op, n, dk, dv, group)`` -- multiply-adds one chunk must do (triangular parts only).

All take and return the library layout [B, T, H, D].
"""
import numpy as np

OPS = ("hla2", "ahla", "hla3")


# ----------------------------------------------------------------------------------------------
# Multiply-adds the chunked algorithm must do (masked, decay 1, ridge 0), per chunk of n tokens, per kv
# head with `group` query heads: the dense products of <Op>Chunk.swift in source order, each counted
# over its nonzero part only. With the causal mask an n x n operand or result is triangular (diagonal
# included): a product n x n x d with a triangular factor or a triangular result is n(n+1)/2 * d
# multiply-adds (no product has two triangular factors since stop 51, when hla2's (A.D) B, n(n+1)(n+2)/6,
# went). The d x d carry products are full, but for the symmetric S = K^T G K
# (a Gram matrix: its lower half, dk(dk+1)/2 * n; libhla computes that half and mirrors it, since stop 48).
# ----------------------------------------------------------------------------------------------
def tri2(n):
    return n * (n + 1) // 2


def gemm_list(op, n, dk, dv):
    """[(label, per_query_head_macs or None, per_kv_head_macs or None)] of one chunk (must-do counts)."""
    t2 = tri2(n)
    if op == "hla2":
        return [
            ("A = Q K^T (lower)", t2 * dk, None),
            ("Q S0", n * dk * dk, None),
            ("Y = (A.D) K (A lower) + (Q S0)", t2 * dk, None),
            ("W = Q Y^T (lower)", t2 * dk, None),
            ("O = W V (W lower)", t2 * dv, None),
            ("Q U0", n * dk * dv, None),
            ("U += (G^2 Y)^T V", dk * dv * n, None),
            ("S += K^T G K (symmetric: lower half)", None, tri2(dk) * n),
        ]
    if op == "ahla":
        return [
            ("A = Q K^T (lower)", t2 * dk, None),
            ("Q P0", n * dv * dk, None),
            ("Y += (A.D) V (A lower)", t2 * dv, None),
            ("Q E0", n * dv * dk, None),
            ("O += (A.D) Y (A lower)", t2 * dv, None),
            ("E += K^T G Y", dk * dv * n, None),
            ("P += K^T G V", None, dk * dv * n),
        ]
    if op == "hla3":
        return [
            ("A = Q K^T (lower)", t2 * dk, None),
            ("Q S0", n * dk * dk, None),
            ("Z = B^tT K (B^tT lower) + (Q S0)", t2 * dk, None),
            ("M = Q Z^T (lower)", t2 * dk, None),
            ("Q P0", n * dv * dk, None),
            ("Y += (A.D1) V (A lower)", t2 * dv, None),
            ("Q W0", n * dv * dk, None),
            ("O += M Y (M lower)", t2 * dv, None),
            ("W += (G Z)^T Y", dk * dv * n, None),
            ("P += K^T G V", None, dk * dv * n),
            ("S += K^T G K (symmetric: lower half)", None, tri2(dk) * n),
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
        "hla2": "n(n+1)/2 (3 dk + dv) + n dk^2 + 2 n dk dv  [+ n dk(dk+1)/2 per kv head]",
        "ahla": "n(n+1)/2 (dk + 2 dv) + 3 n dk dv  [+ n dk dv per kv head]",
        "hla3": "n(n+1)/2 (3 dk + 2 dv) + n dk^2 + 3 n dk dv  [+ n dk dv + n dk(dk+1)/2 per kv head]",
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
# Chunked forward in numpy (and, through the same functions, torch)
# ----------------------------------------------------------------------------------------------
def _zeros(like, shape):
    """Zeros of like's array type (numpy or torch) and dtype."""
    if isinstance(like, np.ndarray):
        return np.zeros(shape, like.dtype)
    return like.new_zeros(shape)


def _carry_init(op, Hkv, g, dk, dv, zeros):
    """The zero carry of `op` (its state blocks, kv blocks [Hkv, 1, ., .] then per query head
    [Hkv, g, ., .]): hla2 S, U; ahla P, E; hla3 S, P, W. zeros(shape) makes one block."""
    return {"hla2": (zeros((Hkv, 1, dk, dk)), zeros((Hkv, g, dk, dv))),
            "ahla": (zeros((Hkv, 1, dk, dv)), zeros((Hkv, g, dk, dv))),
            "hla3": (zeros((Hkv, 1, dk, dk)), zeros((Hkv, 1, dk, dv)), zeros((Hkv, g, dk, dv)))}[op]


def _heads(x, Hkv, g):
    """[T, H, D] -> contiguous [Hkv, g, T, D]."""
    T, H, D = x.shape
    return np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(Hkv, g, T, D)


def _chunk_heads(op, Q, K, V, O, n, tri, triu):
    """The chunked algorithm of `op` on [Hkv, g, T, d] stacks (numpy or torch), outputs into O."""
    if op == "hla2":
        _hla2(Q, K, V, O, n, tri, triu)
    elif op == "ahla":
        _ahla(Q, K, V, O, n, tri)
    elif op == "hla3":
        _hla3(Q, K, V, O, n, tri, triu)
    else:
        raise ValueError(op)


def _np_forward(heads_fn, op, q, k, v, n, scale):
    """heads_fn(op, Q, K, V, O, n, tri, triu) over the batch rows of numpy [B, T, H, D] inputs."""
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
        heads_fn(op, Q, K, V, O, n, tri, triu)
        out[b] = O.reshape(H, T, dv).transpose(1, 0, 2)
    return out


def chunked(op, q, k, v, n=64, scale=1.0):
    return _np_forward(_chunk_heads, op, q, k, v, n, scale)


def _hla2(Q, K, V, O, n, tri, triu):
    Hkv, g, T, dk = Q.shape
    dv = V.shape[3]
    S = _zeros(Q, (Hkv, 1, dk, dk))                   # sum k k^T
    U = _zeros(Q, (Hkv, g, dk, dv))                   # sum_{i<=j} k_i k_i^T q_j v_j^T
    for t0 in range(0, T, n):
        m = min(n, T - t0)
        L, Lt = tri[:m, :m], triu[:m, :m]
        Qc, Kc, Vc = Q[:, :, t0:t0 + m], K[:, :, t0:t0 + m], V[:, :, t0:t0 + m]
        Kt = Kc.swapaxes(-1, -2)
        A = Qc @ Kt                                   # q_t . k_i
        # Y = (A.D) K + Q S0: row j is S_j q_j (S_j the state after token j), so W[t][j] = q_t^T S_j q_j
        # (= ((A.D) B + Q S0 Q^T)[t][j] with B = K Q^T kept for i <= j) and U += sum_j S_j q_j v_j^T = Y^T V
        Y = (A * L) @ Kc
        Y += Qc @ S
        W = Qc @ Y.swapaxes(-1, -2)
        W *= L
        Oc = W @ Vc
        Oc += Qc @ U
        O[:, :, t0:t0 + m] = Oc
        U += Y.swapaxes(-1, -2) @ Vc
        S += Kt @ Kc


def _ahla(Q, K, V, O, n, tri):
    Hkv, g, T, dk = Q.shape
    dv = V.shape[3]
    P = _zeros(Q, (Hkv, 1, dk, dv))                   # sum k v^T
    E = _zeros(Q, (Hkv, g, dk, dv))                   # sum k_i y_i^T
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
    S = _zeros(Q, (Hkv, 1, dk, dk))                   # sum k k^T
    P = _zeros(Q, (Hkv, 1, dk, dv))                   # sum k v^T
    W = _zeros(Q, (Hkv, g, dk, dv))                   # sum_u S_u q_u y_u^T
    for t0 in range(0, T, n):
        m = min(n, T - t0)
        L = tri[:m, :m]
        Qc, Kc, Vc = Q[:, :, t0:t0 + m], K[:, :, t0:t0 + m], V[:, :, t0:t0 + m]
        Kt = Kc.swapaxes(-1, -2)
        Al = (Qc @ Kt) * L                            # q_u . k_a, a <= u (= B^t transposed)
        Z = Al @ Kc                                   # rows S_u q_u: Z = B^tT K + Q S0 (S0 symmetric)
        Z += Qc @ S
        M = (Qc @ Z.swapaxes(-1, -2)) * L             # q_t^T S_u q_u
        Y = Al @ Vc
        Y += Qc @ P
        Oc = M @ Y
        Oc += Qc @ W
        O[:, :, t0:t0 + m] = Oc
        W += Z.swapaxes(-1, -2) @ Y                   # (Q S0)^T Y + K^T (B^t Y)
        P += Kt @ Vc
        S += Kt @ Kc


# ----------------------------------------------------------------------------------------------
# Chunked forward in torch (eager, the numpy functions above on torch tensors) and JAX (jit, lax.scan)
# ----------------------------------------------------------------------------------------------
def have_torch():
    try:
        import torch  # noqa: F401
        return True
    except Exception:  # noqa: BLE001
        return False


def have_jax():
    try:
        import jax  # noqa: F401
        return True
    except Exception:  # noqa: BLE001
        return False


def chunked_torch(op, q, k, v, n=64, scale=1.0):
    """The same chunked algorithm as `chunked`, on torch CPU tensors [B, T, H, D] (eager, under
    inference_mode; all heads of a batch row batched through torch.matmul). Returns a torch tensor."""
    return _torch_forward(_chunk_heads, op, q, k, v, n, scale)


def _torch_forward(heads_fn, op, q, k, v, n, scale):
    """heads_fn(op, Q, K, V, O, n, tri, triu) over the batch rows of torch [B, T, H, D] inputs."""
    import torch
    B, T, H, dk = q.shape
    Hkv, dv = k.shape[2], v.shape[3]
    g = H // Hkv
    with torch.inference_mode():
        out = torch.empty((B, T, H, dv), dtype=q.dtype)
        tri = torch.tril(torch.ones((n, n), dtype=q.dtype))
        triu = tri.T.contiguous()
        for b in range(B):
            Q = (q[b] * scale).permute(1, 0, 2).contiguous().reshape(Hkv, g, T, dk)
            K = k[b].permute(1, 0, 2).contiguous().reshape(Hkv, 1, T, dk)
            V = v[b].permute(1, 0, 2).contiguous().reshape(Hkv, 1, T, dv)
            O = torch.empty((Hkv, g, T, dv), dtype=q.dtype)
            heads_fn(op, Q, K, V, O, n, tri, triu)
            out[b] = O.reshape(H, T, dv).permute(1, 0, 2)
    return out


_jax_fns = {}


def _jax():
    import jax
    jax.config.update("jax_enable_x64", True)      # float64 peers for the verification
    return jax


def _jax_chunk_body(op, L, Lt):
    """lax.scan body of one chunk: carry (state blocks), x = (Qc [B,Hkv,g,n,dk], Kc, Vc [B,Hkv,1,n,d])."""
    def sw(x):
        return x.swapaxes(-1, -2)

    def hla2(carry, x):
        S, U = carry
        Qc, Kc, Vc = x
        Kt = sw(Kc)
        Y = ((Qc @ Kt) * L) @ Kc + Qc @ S         # rows S_j q_j
        W = (Qc @ sw(Y)) * L
        Oc = W @ Vc + Qc @ U
        U = U + sw(Y) @ Vc
        S = S + Kt @ Kc
        return (S, U), Oc

    def ahla(carry, x):
        P, E = carry
        Qc, Kc, Vc = x
        Kt = sw(Kc)
        Al = (Qc @ Kt) * L
        Y = Al @ Vc + Qc @ P
        Oc = Al @ Y + Qc @ E
        return (P + Kt @ Vc, E + Kt @ Y), Oc

    def hla3(carry, x):
        S, P, W = carry
        Qc, Kc, Vc = x
        Kt = sw(Kc)
        Al = (Qc @ Kt) * L
        Z = Al @ Kc + Qc @ S
        M = (Qc @ sw(Z)) * L
        Y = Al @ Vc + Qc @ P
        Oc = M @ Y + Qc @ W
        W = W + sw(Z) @ Y
        return (S + Kt @ Kc, P + Kt @ Vc, W), Oc

    return {"hla2": hla2, "ahla": ahla, "hla3": hla3}[op]


def chunked_jax(op, q, k, v, n=64, scale=1.0):
    """The same chunked algorithm in JAX: one jitted function per (op, n) (recompiled per shape/dtype),
    chunks through lax.scan, all batch rows and heads batched; T is zero-padded to a multiple of n
    (padding after the last token changes no causal output). q, k, v: JAX arrays [B, T, H, D]."""
    fn = _jax_fns.get((op, n))
    if fn is None:
        fn = _jax_fns[(op, n)] = _jax_forward(op, n, lambda L, Lt: _jax_chunk_body(op, L, Lt))
    return fn(q, k, v, np.asarray(scale, q.dtype)).block_until_ready()


def _jax_forward(op, n, make_body):
    """The jitted forward of a chunk body: make_body(L, Lt) -> lax.scan body (carry, (Qc, Kc, Vc)) ->
    (carry, Oc) on [B, Hkv, g|1, n, d] chunks, carry from zeros (`_carry_init` with a batch axis)."""
    jax = _jax()
    import jax.numpy as jnp

    def fwd(q, k, v, scale):
        B, T, H, dk = q.shape
        Hkv, dv = k.shape[2], v.shape[3]
        g = H // Hkv
        nc = -(-T // n)
        pad = ((0, 0), (0, nc * n - T), (0, 0), (0, 0))
        dt = q.dtype
        q, k, v = jnp.pad(q * scale.astype(dt), pad), jnp.pad(k, pad), jnp.pad(v, pad)

        def chunks(x, heads, grp):     # [B, Tp, heads*grp, D] -> [nc, B, heads, grp, n, D]
            return x.reshape(B, nc, n, heads, grp, x.shape[-1]).transpose(1, 0, 3, 4, 2, 5)
        Q, K, V = chunks(q, Hkv, g), chunks(k, Hkv, 1), chunks(v, Hkv, 1)
        L = jnp.tril(jnp.ones((n, n), dt))
        init = _carry_init(op, Hkv, g, dk, dv, lambda shape: jnp.zeros((B,) + shape, dt))
        _, O = jax.lax.scan(make_body(L, L.T), init, (Q, K, V))   # [nc, B, Hkv, g, n, dv]
        return O.transpose(1, 0, 4, 2, 3, 5).reshape(B, nc * n, H, dv)[:, :T]
    return jax.jit(fwd)


# ----------------------------------------------------------------------------------------------
# Scan forward (numpy; torch and JAX through the same functions): the algorithm of the library's scan
# path. Per chunk of n tokens: the chunk's summary from a zero prefix (the blocks of <Op>Scan.swift
# `summarize`, masked, decay 1), the chunk's outputs from its carry-in (the output part of the chunked
# step above), and the carry advanced by the operator's `combine` (full: false: only the state blocks of
# the carry are kept, the cross-term blocks a full summary also carries -- ahla R0, hla3 Q2, X, Z, hla2 C --
# are only read from the chunk's summary). Products the summary and the outputs share (Q K^T and its
# masked forms, (A.D) V) are computed once per chunk, as in libhla's `scanChunk` (<Op>Scan.swift).
# Functional (no in-place updates) so one function serves numpy,
# torch and jax.lax.scan. Stacks [Hkv, g, m, d] (query) / [Hkv, 1, m, d] (key, value); carry blocks
# [Hkv, 1, ., .] per kv head and [Hkv, g, ., .] per query head.
# ----------------------------------------------------------------------------------------------
def _sw(x):
    return x.swapaxes(-1, -2)


def _scan_hla2(carry, Qc, Kc, Vc, L, Lt):
    S, U = carry                                      # sum k k^T;  sum_{i<=j} k_i k_i^T q_j v_j^T
    Qt, Kt = _sw(Qc), _sw(Kc)
    A = Qc @ Kt                                       # q_t . k_i
    Bm = _sw(A) * Lt                                  # B = K Q^T, i <= j
    # summary of the chunk alone: S_B = K^T K, C_B = Q^T V, U_B = K^T B V
    S_B = Kt @ Kc
    C_B = Qt @ Vc
    U_B = Kt @ (Bm @ Vc)
    # outputs from the carry-in: W[t][j] = q_t^T S_j q_j, S_j q_j the rows of (A.D) K + Q S0
    W = (Qc @ _sw((A * L) @ Kc + Qc @ S)) * L
    Oc = W @ Vc + Qc @ U
    # combine: S = S_A + S_B, U = U_A + U_B + S_A C_B
    return (S + S_B, U + U_B + S @ C_B), Oc


def _scan_ahla(carry, Qc, Kc, Vc, L, Lt):
    P, E = carry                                      # sum k v^T;  sum k_i y_i^T
    Kt = _sw(Kc)
    Al = (Qc @ Kt) * L
    Y0 = Al @ Vc                                      # y_i of the chunk alone
    # summary: P_B = K^T V, E_B = K^T Y0, R0_B = K^T Q
    P_B = Kt @ Vc
    E_B = Kt @ Y0
    R_B = Kt @ Qc
    # outputs from the carry-in: y_i = Y0_i + P_A^T q_i
    Oc = Al @ (Y0 + Qc @ P) + Qc @ E
    # combine: P = P_A + P_B, E = E_A + E_B + R0_B P_A
    return (P + P_B, E + E_B + R_B @ P), Oc


def _scan_hla3(carry, Qc, Kc, Vc, L, Lt):
    S, P, W = carry                                   # sum k k^T;  sum k v^T;  sum_u S_u q_u y_u^T
    Qt, Kt = _sw(Qc), _sw(Kc)
    Al = (Qc @ Kt) * L                                # q_u . k_a, a <= u (B^t transposed)
    Y0 = Al @ Vc                                      # y_u of the chunk alone
    R = Al @ Kc                                       # B^tT K: K^T B^t = R^T
    # summary (docs/hla3.md): S_B = K^T K, P_B = K^T V, W_B = K^T B^t Y0, Q2_B = Q^T Q, X_B = Q^T Y0,
    # Z_B = K^T B^t Q
    S_B = Kt @ Kc
    P_B = Kt @ Vc
    W_B = _sw(R) @ Y0
    Q2_B = Qt @ Qc
    X_B = Qt @ Y0
    Z_B = _sw(R) @ Qc
    # outputs from the carry-in: M[t][u] = q_t^T S_u q_u, S_u q_u the rows of Q S0 + R
    M = (Qc @ _sw(Qc @ S + R)) * L
    Oc = M @ (Y0 + Qc @ P) + Qc @ W
    # combine: S = S_A + S_B, P = P_A + P_B, W = W_A + W_B + S_A (Q2_B P_A + X_B) + Z_B P_A
    return (S + S_B, P + P_B, W + W_B + S @ (Q2_B @ P + X_B) + Z_B @ P), Oc


_SCAN_CHUNK = {"hla2": _scan_hla2, "ahla": _scan_ahla, "hla3": _scan_hla3}


def _scan_heads(op, Q, K, V, O, n, tri, triu):
    """The scan algorithm of `op` on [Hkv, g, T, d] stacks (numpy or torch), outputs into O."""
    Hkv, g, T, dk = Q.shape
    dv = V.shape[3]
    step = _SCAN_CHUNK[op]
    carry = _carry_init(op, Hkv, g, dk, dv, lambda shape: _zeros(Q, shape))
    for t0 in range(0, T, n):
        m = min(n, T - t0)
        carry, O[:, :, t0:t0 + m] = step(carry, Q[:, :, t0:t0 + m], K[:, :, t0:t0 + m], V[:, :, t0:t0 + m],
                                         tri[:m, :m], triu[:m, :m])


def scan(op, q, k, v, n=64, scale=1.0):
    """The scan algorithm (numpy), [B, T, H, D] in and out, all heads of a batch row batched."""
    return _np_forward(_scan_heads, op, q, k, v, n, scale)


def scan_torch(op, q, k, v, n=64, scale=1.0):
    """`scan` on torch CPU tensors (eager, inference_mode). Returns a torch tensor."""
    return _torch_forward(_scan_heads, op, q, k, v, n, scale)


_jax_scan_fns = {}


def scan_jax(op, q, k, v, n=64, scale=1.0):
    """The scan algorithm in JAX: the chunk function above as the body of one jitted lax.scan over chunks
    (batch rows and heads batched; T zero-padded to a multiple of n as in `chunked_jax`)."""
    fn = _jax_scan_fns.get((op, n))
    if fn is None:
        fn = _jax_scan_fns[(op, n)] = _jax_forward(op, n, lambda L, Lt: (
            lambda carry, x: _SCAN_CHUNK[op](carry, *x, L, Lt)))
    return fn(q, k, v, np.asarray(scale, q.dtype)).block_until_ready()


def scan_any(backend, op, q, k, v, n, scale):
    """scan / scan_torch / scan_jax on numpy inputs, numpy output (for the verification)."""
    return _on_numpy(backend, ALGOS["scan"], op, q, k, v, n, scale)


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


class TorchStepPeer(StepPeer):
    """StepPeer's recurrence on torch CPU tensors (eager, inference_mode); step takes torch tensors."""

    def __init__(self, op, H, Hkv, dk, dv, scale=1.0, dtype=np.float32):
        import torch
        self.torch = torch
        StepPeer.__init__(self, op, H, Hkv, dk, dv, scale, dtype)
        for name in ("S", "U", "P", "E", "W"):
            if hasattr(self, name):
                setattr(self, name, torch.from_numpy(getattr(self, name)))
        self.scale = float(scale)

    def step(self, q, k, v):
        with self.torch.inference_mode():
            return StepPeer.step(self, q, k, v)


class JaxStepPeer:
    """The recurrence as one jitted JAX function per token (state passed in and returned, donated)."""

    def __init__(self, op, H, Hkv, dk, dv, scale=1.0, dtype=np.float32):
        jax = _jax()
        import jax.numpy as jnp
        g = H // Hkv
        z = lambda *s: jnp.zeros(s, dtype)  # noqa: E731
        self.state = {"hla2": (z(Hkv, 1, dk, dk), z(Hkv, g, dk, dv)),
                      "ahla": (z(Hkv, 1, dk, dv), z(Hkv, g, dk, dv)),
                      "hla3": (z(Hkv, 1, dk, dk), z(Hkv, 1, dk, dv), z(Hkv, g, dk, dv))}[op]
        sc = dtype(scale)

        def step(state, q, k, v):
            q = (q * sc).reshape(Hkv, g, 1, -1)
            kc = k.reshape(Hkv, 1, -1, 1)
            vr = v.reshape(Hkv, 1, 1, -1)
            if op == "hla2":
                S, U = state
                S = S + kc * kc.swapaxes(-1, -2)
                U = U + (q @ S).swapaxes(-1, -2) * vr
                return (S, U), (q @ U).reshape(H, -1)
            if op == "ahla":
                P, E = state
                P = P + kc * vr
                E = E + kc * (q @ P)
                return (P, E), (q @ E).reshape(H, -1)
            S, P, W = state
            S = S + kc * kc.swapaxes(-1, -2)
            P = P + kc * vr
            W = W + (q @ S).swapaxes(-1, -2) * (q @ P)
            return (S, P, W), (q @ W).reshape(H, -1)
        self.fn = jax.jit(step, donate_argnums=0)

    def step(self, q, k, v):
        self.state, o = self.fn(self.state, q, k, v)
        return o


def step_sequence(op, q, k, v, scale=1.0, backend="numpy"):
    """Run the step peer of `backend` (numpy, torch, jax) over [1, T, H, D] numpy inputs; returns a
    numpy [1, T, H, dv]."""
    _, T, H, dk = q.shape
    Hkv, dv = k.shape[2], v.shape[3]
    if backend == "numpy":
        p = StepPeer(op, H, Hkv, dk, dv, scale, q.dtype.type)
        return np.stack([p.step(q[0, t], k[0, t], v[0, t]) for t in range(T)])[None]
    if backend == "torch":
        import torch
        p = TorchStepPeer(op, H, Hkv, dk, dv, scale, q.dtype.type)
        q, k, v = (torch.from_numpy(np.ascontiguousarray(x)) for x in (q, k, v))
        return np.stack([p.step(q[0, t], k[0, t], v[0, t]).numpy() for t in range(T)])[None]
    if backend == "jax":
        import jax.numpy as jnp
        p = JaxStepPeer(op, H, Hkv, dk, dv, scale, q.dtype.type)
        q, k, v = (jnp.asarray(x) for x in (q, k, v))
        return np.stack([np.asarray(p.step(q[0, t], k[0, t], v[0, t])) for t in range(T)])[None]
    raise ValueError(backend)


def _on_numpy(backend, fns, op, q, k, v, n, scale):
    """One of the (numpy, torch, jax) functions `fns` of a chunked algorithm on numpy inputs, numpy output."""
    f_np, f_torch, f_jax = fns
    if backend == "numpy":
        return f_np(op, q, k, v, n, scale)
    if backend == "torch":
        import torch
        return f_torch(op, *(torch.from_numpy(np.ascontiguousarray(x)) for x in (q, k, v)), n, scale).numpy()
    if backend == "jax":
        _jax()
        import jax.numpy as jnp
        return np.asarray(f_jax(op, *(jnp.asarray(x) for x in (q, k, v)), n, scale))
    raise ValueError(backend)


def chunked_any(backend, op, q, k, v, n, scale):
    """chunked / chunked_torch / chunked_jax on numpy inputs, numpy output (for the verification)."""
    return _on_numpy(backend, ALGOS["chunked"], op, q, k, v, n, scale)


# The numpy, torch and JAX functions of each chunk-wise algorithm, by name.
ALGOS = {"chunked": (chunked, chunked_torch, chunked_jax), "scan": (scan, scan_torch, scan_jax)}


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


def softmax_torch(q, k, v, scale=1.0):
    """Causal softmax attention through torch's scaled_dot_product_attention (is_causal), [B, T, H, D]
    in and out, kv heads repeated for grouped queries; numpy in -> numpy out, torch in -> torch out."""
    import torch
    is_np = isinstance(q, np.ndarray)
    if is_np:
        q, k, v = (torch.from_numpy(np.ascontiguousarray(x)) for x in (q, k, v))
    g = q.shape[2] // k.shape[2]
    with torch.inference_mode():
        Q, K, V = (x.transpose(1, 2) for x in (q, k, v))
        if g > 1:
            K, V = K.repeat_interleave(g, dim=1), V.repeat_interleave(g, dim=1)
        o = torch.nn.functional.scaled_dot_product_attention(Q, K, V, is_causal=True, scale=scale)
        o = o.transpose(1, 2).contiguous()
    return o.numpy() if is_np else o


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
