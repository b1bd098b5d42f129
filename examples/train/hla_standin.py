"""HLA operators for training: `hla.torch.forward` when it can be imported, else a pure-torch stand-in.

    from hla_standin import hla_forward, IMPLEMENTATION
    o, final = hla_forward(q, k, v, op="hla2", masked=True, normalize=True, decay=1.0, scale=1.0)

The stand-in has the signature of `hla.torch.forward` (docs/spec.md section 5) for the options this
experiment uses (masked operators, normalize, decay, eps, scale; no ridge, no initial state, no final
state, no cu_seqlens) and is differentiable through torch autograd. It evaluates the index sums of
docs/spec.md section 2 as products of T x T matrices (O(T^2 d) time and memory per head, fine for T <= 512):

    A[t, i]  = gamma^(t-i) (q_t . k_i)  for i <= t, else 0      (decayed masked scores)
    B[t, i]  =             (q_t . k_i)  for i <= t, else 0      (undecayed masked scores)
    L_g[t,j] = g^(t-j)                   for j <= t, else 0

    hla2: num = ((A B^T) * L_gamma) V                 sum_{i<=j<=t} g^{(t-i)+(t-j)} (q_t.k_i)(k_i.q_j) v_j
    ahla: num = A (A V)                               sum_{j<=i<=t} g^{t-j} (q_t.k_i)(q_i.k_j) v_j
    hla3: num = ((A B^T) * L_{gamma^2}) (A V)         sum_{u<=t} sum_{a,c<=u} g^{(t-a)+(t-u)+(t-c)} ...

(the decay exponents split as (t-a)+2(t-u)+(u-c) for hla3). `normalize` evaluates the same products
with a column of ones appended to V and divides: o = num / (den + eps). Grouped heads (Hkv < H) are
expanded. check_standin.py compares this against `hla.reference` (libhla's brute force).

`IMPLEMENTATION` says which one is in use: "hla.torch" (only if it imports and its forward and backward
agree with the stand-in on a small float64 input) or "torch stand-in"; `IMPLEMENTATION_NOTE` says why.
The environment variable HLA_TRAIN_STANDIN=1 forces the stand-in.
"""
import os

import torch

OPS = ("hla2", "ahla", "hla3")


def _expand_kv(x, heads):
    hkv = x.shape[2]
    if hkv == heads:
        return x
    if heads % hkv:
        raise ValueError("H %% Hkv != 0 (H=%d, Hkv=%d)" % (heads, hkv))
    return x.repeat_interleave(heads // hkv, dim=2)


def _decay_mask(T, gamma, device, dtype):
    """L_gamma[t, j] = gamma^(t-j) for j <= t, 0 above the diagonal."""
    idx = torch.arange(T, device=device)
    diff = (idx[:, None] - idx[None, :]).to(dtype)
    causal = idx[:, None] >= idx[None, :]
    if gamma == 1.0:
        return causal.to(dtype)
    return torch.where(causal, torch.pow(torch.tensor(gamma, dtype=dtype, device=device), diff),
                       torch.zeros((), dtype=dtype, device=device))


def standin_forward(q, k, v, *, op="hla2", masked=True, normalize=False, decay=1.0, ridge=0.0, eps=1e-6,
                    scale=1.0, initial_state=None, output_final_state=False, cu_seqlens=None, **_unused):
    """Pure-torch evaluation of the masked HLA operators; returns (o, None) like hla.torch.forward."""
    if op not in OPS:
        raise ValueError("op must be one of %s, got %r" % (OPS, op))
    if not masked:
        raise NotImplementedError("the stand-in implements the masked operators only")
    if ridge != 0.0 or initial_state is not None or output_final_state or cu_seqlens is not None:
        raise NotImplementedError("the stand-in has no ridge, states or cu_seqlens")
    if not (0.0 < decay <= 1.0):
        raise ValueError("decay must be in (0, 1], got %r" % (decay,))
    B, T, H, _ = q.shape
    k, v = _expand_kv(k, H), _expand_kv(v, H)
    qh = (q * scale).transpose(1, 2)                      # [B, H, T, Dk]
    kh = k.transpose(1, 2)
    vh = v.transpose(1, 2)                                # [B, H, T, Dv]
    if normalize:
        vh = torch.cat([vh, torch.ones_like(vh[..., :1])], dim=-1)
    scores = qh @ kh.transpose(-1, -2)                    # [B, H, T, T]
    Lg = _decay_mask(T, decay, q.device, q.dtype)
    causal = _decay_mask(T, 1.0, q.device, q.dtype)
    A = scores * Lg
    if op == "ahla":
        num = A @ (A @ vh)
    else:
        Bm = scores * causal
        M = (A @ Bm.transpose(-1, -2))
        if op == "hla2":
            num = (M * Lg) @ vh
        else:                                              # hla3
            Lg2 = Lg if decay == 1.0 else _decay_mask(T, decay * decay, q.device, q.dtype)
            num = (M * Lg2) @ (A @ vh)
    if normalize:
        num = num[..., :-1] / (num[..., -1:] + eps)
    return num.transpose(1, 2).contiguous(), None


def _smoke_test(fwd):
    """A small forward + backward through `fwd`, compared with the stand-in (float64); raises on mismatch."""
    g = torch.Generator().manual_seed(1)
    q, k = (torch.rand(1, 9, 2, 4, generator=g, dtype=torch.float64) + 0.1 for _ in range(2))
    v, do = (torch.randn(1, 9, 2, 4, generator=g, dtype=torch.float64) for _ in range(2))
    for op in OPS:
        res = []
        for f in (fwd, standin_forward):
            xs = [x.clone().requires_grad_(True) for x in (q, k, v)]
            o, _ = f(*xs, op=op, masked=True, normalize=True, decay=1.0, scale=1.0)
            o.backward(do)
            res.append([o.detach()] + [x.grad for x in xs])
        for a, b in zip(*res):
            if not torch.allclose(a, b, rtol=1e-8, atol=1e-10):
                raise RuntimeError("hla.torch.forward disagrees with the stand-in (%s)" % op)


def _load():
    """(forward, name, note): hla.torch.forward if it imports and passes a forward + backward smoke test."""
    if os.environ.get("HLA_TRAIN_STANDIN", "") not in ("", "0"):
        return standin_forward, "torch stand-in", "HLA_TRAIN_STANDIN set"
    try:
        import hla.torch as hla_torch
        fwd = hla_torch.forward
    except Exception as e:  # not built yet, or no libhla
        return standin_forward, "torch stand-in", "import hla.torch failed: %s: %s" % (type(e).__name__, e)
    try:
        _smoke_test(fwd)
    except Exception as e:
        return standin_forward, "torch stand-in", "hla.torch failed its smoke test: %s: %s" % (
            type(e).__name__, str(e).splitlines()[0] if str(e) else "")
    return fwd, "hla.torch", "hla.torch %s" % getattr(hla_torch, "__file__", "")


hla_forward, IMPLEMENTATION, IMPLEMENTATION_NOTE = _load()
