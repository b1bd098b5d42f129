"""Two independent differentiable torch evaluations (float64) for gradient tests.

* `bruteforce`: the SPEC section 2 index sums, literally: for each operator the full weight tensor
  over index tuples (T^3 for second order, T^4 for hla3), masked, contracted with einsum. Autograd of
  it is the ground truth for dq, dk, dv. Nothing here comes from the library or docs/gradients.md.
* `serial`: the streaming recurrence over state rows (grad_reference.step with torch ops), with an
  initial state and the final state as outputs, so autograd gives d_initial and takes d_final.
"""
import torch

import grad_reference as gr


def _weights(op, masked, T, gamma):
    """Weight tensor over index tuples (indices 0..T-1 for t and the summed indices)."""
    r = torch.arange(T, dtype=torch.float64)
    g = torch.tensor(float(gamma), dtype=torch.float64)
    if op in ("hla2", "ahla"):
        t, i, j = r[:, None, None], r[None, :, None], r[None, None, :]
        allowed = (i <= t) & (j <= t)
        if op == "hla2":
            expo = (t - i) + (t - j)
            if masked:
                allowed = allowed & (i <= j)
        else:
            if masked:
                expo = (t - j) + 0 * i
                allowed = allowed & (j <= i)
            else:
                expo = (t - i) + (t - j)
    else:
        t, a, u, c = r[:, None, None, None], r[None, :, None, None], r[None, None, :, None], r[None, None, None, :]
        allowed = (a <= t) & (u <= t) & (c <= t)
        if masked:
            allowed = allowed & (a <= u) & (c <= u)
        expo = (t - a) + (t - u) + (t - c)
    return torch.where(allowed, g ** torch.clamp(expo, min=0), torch.zeros((), dtype=torch.float64))


def _one(q, k, v, op, masked, normalize, decay, ridge, eps, scale):
    """q [B,T,H,dk], k [B,T,Hkv,dk], v [B,T,Hkv,dv] -> o [B,T,H,dv] (float64 tensors)."""
    B, T, H, dk = q.shape
    Hkv, dv = k.shape[2], v.shape[3]
    G = H // Hkv
    K = k.repeat_interleave(G, dim=2).permute(0, 2, 1, 3)      # query head h reads kv head h // G
    V = v.repeat_interleave(G, dim=2).permute(0, 2, 1, 3)
    Q = (q * scale).permute(0, 2, 1, 3)
    if normalize:
        V = torch.cat([V, torch.ones(V.shape[:-1] + (1,), dtype=V.dtype)], dim=-1)
    QK = Q @ K.transpose(-1, -2)                                # QK[s, r] = q_s . k_r
    W = _weights(op, masked, T, decay)
    if op == "hla2":      # (q_t.k_i)(k_i.q_j) v_j
        num = torch.einsum("bhti,bhji,tij,bhjd->bhtd", QK, QK, W, V)
        if ridge != 0:
            r = torch.arange(T, dtype=torch.float64)
            e = r[:, None] - r[None, :]
            Wr = torch.where(e >= 0, torch.tensor(float(decay), dtype=torch.float64) ** torch.clamp(e, min=0),
                             torch.zeros((), dtype=torch.float64))
            num = num + ridge * torch.einsum("bhtj,tj,bhjd->bhtd", Q @ Q.transpose(-1, -2), Wr, V)
    elif op == "ahla":    # (q_t.k_i)(q_i.k_j) v_j
        num = torch.einsum("bhti,bhij,tij,bhjd->bhtd", QK, QK, W, V)
    else:                 # (q_t.k_a)(k_a.q_u)(q_u.k_c) v_c
        num = torch.einsum("bhta,bhua,bhuc,tauc,bhcd->bhtd", QK, QK, QK, W, V)
    o = num[..., :dv] / (num[..., dv:] + eps) if normalize else num
    return o.permute(0, 2, 1, 3)


def bruteforce(q, k, v, *, op="hla2", masked=True, normalize=False, decay=1.0, ridge=0.0, eps=1e-6,
               scale=1.0, cu_seqlens=None):
    if cu_seqlens is None:
        return _one(q, k, v, op, masked, normalize, decay, ridge, eps, scale)
    cu = [int(x) for x in cu_seqlens]
    parts = [_one(q[:, a:b], k[:, a:b], v[:, a:b], op, masked, normalize, decay, ridge, eps, scale)
             for a, b in zip(cu[:-1], cu[1:])]
    return torch.cat(parts, dim=1)


def serial(q, k, v, *, op="hla2", masked=True, normalize=False, decay=1.0, ridge=0.0, eps=1e-6,
           scale=1.0, initial_state=None, cu_seqlens=None):
    """(o [B,T,H,dv], final [N,n]) through the streaming recurrence, differentiable in everything."""
    B, T, H, dk = q.shape
    Hkv, dv = k.shape[2], v.shape[3]
    dvp = dv + (1 if normalize else 0)
    G = H // Hkv
    seqs = gr._sequences(B, T, cu_seqlens)
    n = gr.state_elements(op, masked, ridge, H, Hkv, dk, dvp)
    outs = {}
    finals = []
    one = torch.ones(1, dtype=torch.float64)
    for i, (b, t0, L) in enumerate(seqs):
        row = torch.zeros(n, dtype=torch.float64) if initial_state is None else initial_state[i]
        kvs, hs = gr.unpack(row, op, masked, ridge, H, Hkv, dk, dvp)
        for gi in range(Hkv):
            kv, heads = kvs[gi], hs[gi * G:(gi + 1) * G]
            for t in range(t0, t0 + L):
                vh = torch.cat([v[b, t, gi], one]) if normalize else v[b, t, gi]
                qs = scale * q[b, t, gi * G:(gi + 1) * G]
                kv, heads, nums = gr.step(op, masked, ridge, decay, kv, heads, k[b, t, gi], vh, qs, xp=torch)
                for j in range(G):
                    num = nums[j]
                    outs[(b, t, gi * G + j)] = num[:dv] / (num[dv] + eps) if normalize else num
            kvs[gi] = kv
            hs[gi * G:(gi + 1) * G] = heads
        finals.append(gr.pack(kvs, hs, op, masked, ridge, dk, dvp, xp=torch))
    o = torch.stack([torch.stack([torch.stack([outs[(b, t, h)] for h in range(H)]) for t in range(T)])
                     for b in range(B)])
    return o, torch.stack(finals)
