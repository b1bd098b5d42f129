"""float64 reference backward of the three operators (docs/gradients.md), on the serial recurrence.

Test/reference code, deliberately plain: per (sequence, kv head) a python loop over tokens, every
per-token state kept (O(T * state) memory, small T only). It implements the reverse-mode identities
of docs/gradients.md by hand; the tests check it against torch autograd of two independent forward
evaluations (the SPEC section 2 index sums, and the serial recurrence over state rows).

State rows use the library layout (docs/state-layout.md): [kv blocks of kv head g, g = 0..Hkv-1]
then [query-head blocks of head h, h = 0..H-1], each block row-major. The cotangent of the symmetric
blocks (S, S^Q) is reported symmetrised (docs/gradients.md section 7).
"""
import numpy as np

SYMMETRIC = ("S", "SQ")


def blocks(op, masked, ridge, dk, dvp):
    """([(name, shape)] of one kv head, [(name, shape)] of one query head), in layout order."""
    if op == "hla2":
        kv = [("S", (dk, dk))]
        if masked:
            q = [("U", (dk, dvp))] + ([("C", (dk, dvp))] if ridge != 0 else [])
        else:
            q = [("C", (dk, dvp))]
    elif op == "ahla":
        kv = [("P", (dk, dvp))]
        q = [("E", (dk, dvp))] if masked else [("R", (dk, dk))]
    elif op == "hla3":
        kv = [("S", (dk, dk)), ("P", (dk, dvp))]
        q = [("W", (dk, dvp))] if masked else [("SQ", (dk, dk))]
    else:
        raise ValueError(op)
    return kv, q


def _size(spec):
    return sum(a * b for _, (a, b) in spec)


def state_elements(op, masked, ridge, H, Hkv, dk, dvp):
    kv, q = blocks(op, masked, ridge, dk, dvp)
    return Hkv * _size(kv) + H * _size(q)


def unpack(row, op, masked, ridge, H, Hkv, dk, dvp):
    """One state row -> (kv: list over g of {name: matrix}, heads: list over h of {name: matrix}).
    Works for numpy and torch rows (slices and reshapes: views, differentiable in torch)."""
    kvs, qs = blocks(op, masked, ridge, dk, dvp)
    off = 0
    kv = []
    for _ in range(Hkv):
        d = {}
        for name, (a, b) in kvs:
            d[name] = row[off:off + a * b].reshape(a, b)
            off += a * b
        kv.append(d)
    heads = []
    for _ in range(H):
        d = {}
        for name, (a, b) in qs:
            d[name] = row[off:off + a * b].reshape(a, b)
            off += a * b
        heads.append(d)
    assert off == row.shape[0], (off, row.shape)
    return kv, heads


def pack(kv, heads, op, masked, ridge, dk, dvp, xp=np):
    kvs, qs = blocks(op, masked, ridge, dk, dvp)
    parts = [d[name].reshape(-1) for d in kv for name, _ in kvs]
    parts += [d[name].reshape(-1) for d in heads for name, _ in qs]
    return xp.concatenate(parts) if xp is np else xp.cat(parts)


def zero_blocks(op, masked, ridge, dk, dvp, group):
    kvs, qs = blocks(op, masked, ridge, dk, dvp)
    return ({n: np.zeros(s) for n, s in kvs}, [{n: np.zeros(s) for n, s in qs} for _ in range(group)])


def step(op, masked, lam, gamma, kv, heads, k, vh, qs, xp=np):
    """One token of the serial recurrence (docs/state-layout.md section 2), functional (new dicts):
    (kv, heads) after token t from those after t-1. k (dk), vh (dvp), qs (group x dk, scaled).
    Returns (kv', heads', nums (list of dvp vectors)). xp: numpy or torch."""
    g = gamma
    kv2 = {}
    if op in ("hla2", "hla3"):
        kv2["S"] = g * kv["S"] + xp.outer(k, k)
    if op in ("ahla", "hla3"):
        kv2["P"] = g * kv["P"] + xp.outer(k, vh)
    heads2, nums = [], []
    for j, h in enumerate(heads):
        q = qs[j]
        h2 = {}
        if op == "hla2":
            z = kv2["S"].T @ q
            if masked:
                h2["U"] = g * g * h["U"] + xp.outer(z, vh)
                num = h2["U"].T @ q
                if lam != 0:
                    h2["C"] = g * h["C"] + xp.outer(q, vh)
                    num = num + lam * (h2["C"].T @ q)
            else:
                h2["C"] = g * h["C"] + xp.outer(q, vh)
                num = h2["C"].T @ (z + lam * q)
        elif op == "ahla":
            if masked:
                y = kv2["P"].T @ q
                h2["E"] = g * h["E"] + xp.outer(k, y)
                num = h2["E"].T @ q
            else:
                h2["R"] = g * h["R"] + xp.outer(k, q)
                num = kv2["P"].T @ (h2["R"].T @ q)
        else:
            z = kv2["S"].T @ q
            if masked:
                y = kv2["P"].T @ q
                h2["W"] = g ** 3 * h["W"] + xp.outer(z, y)
                num = h2["W"].T @ q
            else:
                h2["SQ"] = g * h["SQ"] + xp.outer(q, q)
                num = kv2["P"].T @ (h2["SQ"].T @ z)
        heads2.append(h2)
        nums.append(num)
    return kv2, heads2, nums


def step_backward(op, masked, lam, gamma, kv, heads, dkv, dheads, k, vh, qs, gs, mutation=None):
    """Reverse of `step` at token t (docs/gradients.md sections 2-4).

    kv, heads: the states *after* token t. dkv, dheads: adjoints of those states (everything after
    token t already folded in); updated in place to the adjoints of the states after token t-1.
    gs: the numerator cotangents (group x dvp). Returns (dk (dk), dvh (dvp), dqs (group x dk))."""
    g = gamma
    dkk = np.zeros_like(k)
    dvh = np.zeros_like(vh)
    dqs = np.zeros_like(qs)
    for j, h in enumerate(heads):
        q, gj, dh = qs[j], gs[j], dheads[j]
        if op == "hla2":
            S = kv["S"]
            z = S.T @ q
            if masked:
                dh["U"] += np.outer(q, gj)
                dq = h["U"] @ gj
                dz = dh["U"] @ vh
                dvh += dh["U"].T @ z
                dh["U"] *= g if mutation == "hla2-U-decay" else g * g
                if lam != 0:
                    dh["C"] += lam * np.outer(q, gj)
                    dq += lam * (h["C"] @ gj)
                    dq += dh["C"] @ vh
                    dvh += dh["C"].T @ q
                    dh["C"] *= g
            else:
                w = z + lam * q
                dh["C"] += np.outer(w, gj)
                dz = h["C"] @ gj                      # = dw
                dq = lam * dz
                dq += dh["C"] @ vh
                dvh += dh["C"].T @ q
                dh["C"] *= g
            dkv["S"] += np.outer(q, dz)
            dq += S @ dz
        elif op == "ahla":
            P = kv["P"]
            if masked:
                y = P.T @ q
                dh["E"] += np.outer(q, gj)
                dq = h["E"] @ gj
                dkk += dh["E"] @ y
                dy = dh["E"].T @ k
                dh["E"] *= g
                dkv["P"] += np.outer(q, dy)
                dq += P @ dy
            else:
                w = h["R"].T @ q
                dkv["P"] += np.outer(w, gj)
                dw = P @ gj
                dh["R"] += np.outer(q, dw)
                dq = h["R"] @ dw
                dkk += dh["R"] @ q
                dq += dh["R"].T @ k
                dh["R"] *= g
        else:
            S, P = kv["S"], kv["P"]
            z = S.T @ q
            if masked:
                y = P.T @ q
                dh["W"] += np.outer(q, gj)
                dq = h["W"] @ gj
                dz = dh["W"] @ y
                dy = dh["W"].T @ z
                dh["W"] *= g ** 3
                dkv["P"] += np.outer(q, dy)
                dq += P @ dy
            else:
                w = h["SQ"].T @ z
                dkv["P"] += np.outer(w, gj)
                dw = P @ gj
                dh["SQ"] += np.outer(z, dw)
                dz = h["SQ"] @ dw
                dq = (dh["SQ"] + dh["SQ"].T) @ q
                dh["SQ"] *= g
            dkv["S"] += np.outer(q, dz)
            dq += S @ dz
        dqs[j] = dq
    if "S" in dkv:
        dS = dkv["S"]
        dkk += (2 * dS if mutation == "no-transpose" else dS + dS.T) @ k
        dS *= g
    if "P" in dkv:
        dP = dkv["P"]
        dkk += dP @ vh
        dvh += dP.T @ k
        dP *= g
    return dkk, dvh, dqs


def _sequences(B, T, cu_seqlens):
    if cu_seqlens is None:
        return [(b, 0, T) for b in range(B)]
    cu = [int(x) for x in cu_seqlens]
    return [(0, cu[i], cu[i + 1] - cu[i]) for i in range(len(cu) - 1)]


def _shapes(q, k, v, normalize):
    B, T, H, dk = q.shape
    Hkv, dv = k.shape[2], v.shape[3]
    return B, T, H, Hkv, dk, dv, dv + (1 if normalize else 0)


def forward(q, k, v, *, op="hla2", masked=True, normalize=False, decay=1.0, ridge=0.0, eps=1e-6,
            scale=1.0, initial_state=None, cu_seqlens=None):
    """(o [B,T,H,dv], final [N,n]) of the serial recurrence in float64."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    B, T, H, Hkv, dk, dv, dvp = _shapes(q, k, v, normalize)
    G = H // Hkv
    seqs = _sequences(B, T, cu_seqlens)
    n = state_elements(op, masked, ridge, H, Hkv, dk, dvp)
    o = np.zeros((B, T, H, dv))
    final = np.zeros((len(seqs), n))
    for i, (b, t0, L) in enumerate(seqs):
        row = np.zeros(n) if initial_state is None else np.array(initial_state[i], dtype=np.float64)
        kvs, hs = unpack(row, op, masked, ridge, H, Hkv, dk, dvp)
        for gi in range(Hkv):
            kv, heads = kvs[gi], hs[gi * G:(gi + 1) * G]
            for t in range(t0, t0 + L):
                vh = np.concatenate([v[b, t, gi], [1.0]]) if normalize else v[b, t, gi]
                qs = scale * q[b, t, gi * G:(gi + 1) * G]
                kv, heads, nums = step(op, masked, ridge, decay, kv, heads, k[b, t, gi], vh, qs)
                for j in range(G):
                    num = nums[j]
                    o[b, t, gi * G + j] = num[:dv] / (num[dv] + eps) if normalize else num
            kvs[gi] = kv
            hs[gi * G:(gi + 1) * G] = heads
        final[i] = pack(kvs, hs, op, masked, ridge, dk, dvp)
    return o, final


def backward(q, k, v, do, *, op="hla2", masked=True, normalize=False, decay=1.0, ridge=0.0,
             eps=1e-6, scale=1.0, initial_state=None, d_final_state=None, cu_seqlens=None,
             mutation=None):
    """(dq, dk, dv, d_initial [N,n] or None) of L with dL/do = do (and dL/dfinal = d_final_state)."""
    q, k, v, do = (np.asarray(x, dtype=np.float64) for x in (q, k, v, do))
    B, T, H, Hkv, dk, dv, dvp = _shapes(q, k, v, normalize)
    G = H // Hkv
    seqs = _sequences(B, T, cu_seqlens)
    n = state_elements(op, masked, ridge, H, Hkv, dk, dvp)
    dq, dkk, dvv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    d_initial = np.zeros((len(seqs), n))
    for i, (b, t0, L) in enumerate(seqs):
        row = np.zeros(n) if initial_state is None else np.array(initial_state[i], dtype=np.float64)
        kvs, hs = unpack(row, op, masked, ridge, H, Hkv, dk, dvp)
        drow = np.zeros(n) if d_final_state is None else np.array(d_final_state[i], dtype=np.float64)
        dkvs, dhs = unpack(drow.copy(), op, masked, ridge, H, Hkv, dk, dvp)
        dkvs = [{a: x.copy() for a, x in d.items()} for d in dkvs]
        dhs = [{a: x.copy() for a, x in d.items()} for d in dhs]
        for gi in range(Hkv):
            sl = slice(gi * G, (gi + 1) * G)
            kv, heads = kvs[gi], hs[sl]
            saved = []                                  # states after each token, and the inputs
            for t in range(t0, t0 + L):
                vh = np.concatenate([v[b, t, gi], [1.0]]) if normalize else v[b, t, gi].copy()
                qs = scale * q[b, t, sl]
                kv, heads, nums = step(op, masked, ridge, decay, kv, heads, k[b, t, gi], vh, qs)
                saved.append((t, kv, heads, vh, qs, nums))
            dkv, dheads = dkvs[gi], dhs[sl]
            for t, kv, heads, vh, qs, nums in reversed(saved):
                gs = np.zeros((G, dvp))
                for j in range(G):
                    num, d_o = nums[j], do[b, t, gi * G + j]
                    if normalize:
                        den = num[dv] + eps
                        gs[j, :dv] = d_o / den
                        gs[j, dv] = -(d_o @ num[:dv]) / den ** 2
                    else:
                        gs[j] = d_o
                dk_t, dvh_t, dq_t = step_backward(op, masked, ridge, decay, kv, heads, dkv, dheads,
                                                  k[b, t, gi], vh, qs, gs, mutation)
                dkk[b, t, gi] += dk_t
                dvv[b, t, gi] += dvh_t[:dv]
                dq[b, t, sl] += scale * dq_t
        for d in dkvs + dhs:                            # symmetric blocks: symmetrised cotangent
            for name in SYMMETRIC:
                if name in d:
                    d[name] = 0.5 * (d[name] + d[name].T)
        d_initial[i] = pack(dkvs, dhs, op, masked, ridge, dk, dvp)
    return dq, dkk, dvv, (d_initial if initial_state is not None else None)
