#!/usr/bin/env python3
"""Training with HLA in PyTorch: hla.torch.HLA layers in a small model, and a timing of torch autograd
through hla.torch.forward against torch autograd through the same chunked algorithm written in torch.

    PYTHONPATH=bindings/python python3 examples/python/torch_train.py            # train + check
    PYTHONPATH=bindings/python python3 examples/python/torch_train.py --bench    # also time (T = 4096)

1. A two-layer model (embedding, HLA layers with residuals and RMSNorm, a head) learns a toy causal
   task (predict the token seen `lag` = 2 steps earlier; the loss must fall below 0.9 x chance level); then a prefill followed by token-by-token steps
   through the layers' final states reproduces the full-sequence logits.
2. --bench: forward and forward + backward at B = 1, T = 4096, H = 8, d = 64, float32 (hla3 at T = 512) of
   hla.torch.forward (libhla's chunked forward and chunked backward) and of `chunked_torch` below (the
   chunked algorithm of examples/bench/peers.py, written functionally so torch autograd can differentiate
   it; masked, decay 1, no ridge). Both outputs and gradients are checked against each other first.
"""
import argparse
import math
import sys
import time

import torch
from torch import nn

import hla
import hla.torch as ht


class Block(nn.Module):
    def __init__(self, hidden, heads, op):
        super().__init__()
        self.norm = nn.RMSNorm(hidden)
        self.attn = ht.HLA(hidden, heads, num_kv_heads=heads // 2, op=op, decay=0.95, feature_map="elu")
        self.mlp = nn.Sequential(nn.RMSNorm(hidden), nn.Linear(hidden, 4 * hidden), nn.GELU(),
                                 nn.Linear(4 * hidden, hidden))

    def forward(self, x, state=None):
        y, final = self.attn(self.norm(x), state=state, output_final_state=True)
        x = x + y
        return x + self.mlp(x), final


class Model(nn.Module):
    def __init__(self, vocab=16, hidden=64, heads=4, layers=2, op="hla2"):
        super().__init__()
        self.emb = nn.Embedding(vocab, hidden)
        self.blocks = nn.ModuleList(Block(hidden, heads, op) for _ in range(layers))
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens, states=None):
        x = self.emb(tokens)
        finals = []
        for i, b in enumerate(self.blocks):
            x, f = b(x, None if states is None else states[i])
            finals.append(f)
        return self.head(x), finals


def train(op, steps, lag=2, verbose=False):
    torch.manual_seed(0)
    model = Model(op=op)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    t0 = time.perf_counter()
    losses = []
    for step in range(steps):
        tokens = torch.randint(0, 16, (8, 64))
        logits, _ = model(tokens)
        loss = nn.functional.cross_entropy(logits[:, lag:].reshape(-1, 16), tokens[:, :-lag].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if verbose and step % 25 == 0:
            print("  step %4d  loss %.3f" % (step, float(loss.detach())))
    acc = float((logits[:, lag:].argmax(-1) == tokens[:, :-lag]).float().mean())
    last = sum(losses[-10:]) / len(losses[-10:])
    chance = math.log(16)
    print("%s: %d steps in %.1f s, loss %.3f -> %.3f (mean of the last 10; chance level ln 16 = %.3f), "
          "accuracy of the last batch %.2f" % (op, steps, time.perf_counter() - t0, losses[0], last, chance, acc))

    # prefill 40 tokens, then step one token at a time through the final states
    with torch.no_grad():
        tokens = torch.randint(0, 16, (2, 50))
        full, _ = model(tokens)
        out, states = model(tokens[:, :40])
        outs = [out]
        for t in range(40, 50):
            out, states = model(tokens[:, t:t + 1], states)
            outs.append(out)
        err = float((torch.cat(outs, 1) - full).abs().max() / full.abs().max())
    print("%s: prefill + 10 steps vs one call: max relative difference %.1e" % (op, err))
    return last < 0.9 * chance and err < 1e-4


# ------------------------------------------------------------------------------------------------
# The chunked algorithm in torch, functional (differentiable by torch autograd)
# ------------------------------------------------------------------------------------------------
def _chunks(op, Q, K, V, n):
    """Q [Hkv, g, T, dk], K [Hkv, 1, T, dk], V [Hkv, 1, T, dv] -> O [Hkv, g, T, dv]."""
    Hkv, g, T, dk = Q.shape
    dv = V.shape[-1]
    z = Q.new_zeros
    S, P = z((Hkv, 1, dk, dk)), z((Hkv, 1, dk, dv))
    X = z((Hkv, g, dk, dv))                 # hla2: U, ahla: E, hla3: W
    tri = torch.tril(torch.ones((n, n), dtype=Q.dtype))
    outs = []
    for t0 in range(0, T, n):
        m = min(n, T - t0)
        L = tri[:m, :m]
        Lt = L.T
        Qc, Kc, Vc = Q[:, :, t0:t0 + m], K[:, :, t0:t0 + m], V[:, :, t0:t0 + m]
        Qt, Kt = Qc.mT, Kc.mT
        A = Qc @ Kt
        if op == "hla2":
            Bm = A.mT * Lt
            QS = Qc @ S
            outs.append((((A * L) @ Bm + QS @ Qt) * L) @ Vc + Qc @ X)
            X = X + Kt @ (Bm @ Vc) + QS.mT @ Vc
            S = S + Kt @ Kc
        elif op == "ahla":
            Al = A * L
            Y = Al @ Vc + Qc @ P
            outs.append(Al @ Y + Qc @ X)
            X = X + Kt @ Y
            P = P + Kt @ Vc
        else:
            Bt = A.mT * Lt
            QS = Qc @ S
            M = (A @ Bt + QS @ Qt) * L
            Y = (A * L) @ Vc + Qc @ P
            outs.append(M @ Y + Qc @ X)
            X = X + QS.mT @ Y + Kt @ (Bt @ Y)
            P = P + Kt @ Vc
            S = S + Kt @ Kc
    return torch.cat(outs, dim=2)


def chunked_torch(op, q, k, v, n=64, scale=1.0):
    """q [B,T,H,dk], k/v [B,T,Hkv,d] -> o [B,T,H,dv], masked, decay 1, no ridge (SPEC section 2)."""
    B, T, H, dk = q.shape
    Hkv, dv = k.shape[2], v.shape[3]
    g = H // Hkv
    out = []
    for b in range(B):
        Q = (q[b] * scale).permute(1, 0, 2).reshape(Hkv, g, T, dk)
        K = k[b].permute(1, 0, 2).reshape(Hkv, 1, T, dk)
        V = v[b].permute(1, 0, 2).reshape(Hkv, 1, T, dv)
        out.append(_chunks(op, Q, K, V, n).reshape(H, T, dv).permute(1, 0, 2))
    return torch.stack(out)


def _best(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def bench(reps):
    print("\ntorch %s, %d threads; best of %d; B=1, H=8, d=64, float32" % (torch.__version__,
                                                                        torch.get_num_threads(), reps))
    print("%-5s %5s  %-28s %9s %12s" % ("op", "T", "implementation", "forward", "fwd+bwd"))
    ok = True
    for op, T in (("hla2", 4096), ("ahla", 4096), ("hla3", 512), ("hla3", 4096)):
        torch.manual_seed(0)
        H, d = 8, 64
        q, k, v = (torch.randn(1, T, H, d, requires_grad=True) for _ in range(3))
        do = torch.randn(1, T, H, d)
        s = d ** -0.5

        def lib():
            return ht.forward(q, k, v, op=op, scale=s)[0]

        def peer():
            return chunked_torch(op, q, k, v, 64, s)

        # agreement first (outputs and gradients, relative max-norm)
        grads = []
        for f in (lib, peer):
            o = f()
            grads.append([o.detach()] + list(torch.autograd.grad(o, (q, k, v), do)))
        errs = [float((a - b).abs().max() / b.abs().max()) for a, b in zip(*grads)]
        good = max(errs) < 1e-3
        ok &= good
        for name, f in (("hla.torch.forward (libhla)", lib), ("torch autograd, chunked n=64", peer)):
            with torch.no_grad():
                tf = _best(f, reps)
            tb = _best(lambda: torch.autograd.grad(f(), (q, k, v), do), reps)
            print("%-5s %5d  %-28s %8.3fs %11.3fs" % (op, T, name, tf, tb))
        print("      o, dq, dk, dv agree to %s (relative)%s" % (", ".join("%.1e" % e for e in errs),
                                                               "" if good else "  MISMATCH"))
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ops", default="hla2,ahla,hla3")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    print("libhla %s, hla %s" % (hla.library_version(), hla.__version__))
    ok = all([train(op, a.steps, verbose=a.verbose) for op in a.ops.split(",")])
    if a.bench:
        ok &= bench(a.reps)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
