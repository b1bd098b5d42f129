#!/usr/bin/env python3
"""torch tensors in and out of libhla, and a continuous-batching decode loop over one cache.

    PYTHONPATH=bindings/python python3 examples/python/torch_decode.py

1. `hla.forward` takes torch tensors (any strides, float32/float64/bfloat16/float16) and returns a torch
   tensor of q's dtype, written in place by the library (no copy): here a [B, H, T, D] view of bfloat16.
2. Packed prompts of different lengths (`cu_seqlens`, fla's convention) prefill rows of a cache of
   `slots` sequences (`State.prefill(..., rows=, cu_seqlens=)`), then `State.step(..., rows=)` decodes
   only the live rows; a finished row is reset and reused; a row is forked with `copy_rows`.
Every result is checked against running each sequence alone.
"""
import sys

import numpy as np
import torch

import hla


def main():
    torch.manual_seed(0)
    H, Hkv, d = 8, 2, 64
    opts = dict(op="hla2", heads=H, kv_heads=Hkv, dk=d, dv=d, scale=d ** -0.5, decay=0.995)
    fwd = {k: v for k, v in opts.items() if k not in ("heads", "kv_heads", "dk", "dv")}

    # 1. torch in, torch out: a [B, H, T, D] layout viewed as [B, T, H, D] (strided, no copy)
    B, T = 2, 300
    qh = torch.randn(B, H, T, d, dtype=torch.bfloat16)
    kh = torch.randn(B, Hkv, T, d, dtype=torch.bfloat16)
    vh = torch.randn(B, Hkv, T, d, dtype=torch.bfloat16)
    q, k, v = (x.transpose(1, 2) for x in (qh, kh, vh))
    o, _ = hla.forward(q, k, v, **fwd)
    ref = hla.reference(*(x.double() for x in (q, k, v)), **fwd)
    err = ((o.double() - ref).abs().max() / ref.abs().max()).item()
    print("forward: torch %s %s in, torch %s %s out; bfloat16 error vs float64 reference %.2e"
          % (tuple(q.shape), q.dtype, tuple(o.shape), o.dtype, err))
    ok = isinstance(o, torch.Tensor) and o.dtype == torch.bfloat16 and err <= 1e-2

    # 2. continuous batching over a cache of 8 slots
    slots = 8
    cache = hla.State(batch=slots, dtype="float32", **opts)
    lens = [5, 17, 9]
    total = sum(lens)
    qp, kp, vp = torch.randn(1, total, H, d), torch.randn(1, total, Hkv, d), torch.randn(1, total, Hkv, d)
    cu = torch.tensor(np.concatenate([[0], np.cumsum(lens)]), dtype=torch.int64)
    live = [6, 1, 3]                                      # the slots these prompts occupy
    cache.prefill(qp, kp, vp, rows=live, cu_seqlens=cu)
    steps = 20
    qs, ks, vs = torch.randn(steps, 3, H, d), torch.randn(steps, 3, Hkv, d), torch.randn(steps, 3, Hkv, d)
    outs = [cache.step(qs[t], ks[t], vs[t], rows=live) for t in range(steps)]
    worst = 0.0
    for i, r in enumerate(live):                        # each sequence alone
        a, b = int(cu[i]), int(cu[i + 1])
        qq = torch.cat([qp[:, a:b], qs[:, i][None]], 1)
        kk = torch.cat([kp[:, a:b], ks[:, i][None]], 1)
        vv = torch.cat([vp[:, a:b], vs[:, i][None]], 1)
        alone, fin = hla.forward(qq, kk, vv, output_final_state=True, **fwd)
        got = torch.stack([outs[t][i] for t in range(steps)])
        worst = max(worst, ((got - alone[0, b - a:]).abs().max() / alone.abs().max()).item())
        worst = max(worst, float(np.abs(cache.array[r] - fin.array[0]).max() / np.abs(fin.array[0]).max()))
    print("continuous batching: %d slots, live rows %s, %d steps; worst relative difference vs each "
          "sequence alone %.2e" % (slots, live, steps, worst))
    ok = ok and worst <= 1e-4
    cache.copy_rows([6], [0])                           # fork slot 6 into slot 0
    cache.reset(rows=[1])                               # sequence in slot 1 finished: free the slot
    o6 = cache.step(qs[0, :1], ks[0, :1], vs[0, :1], rows=[6])
    o0 = cache.step(qs[0, :1], ks[0, :1], vs[0, :1], rows=[0])
    print("fork: slot 0 continues exactly like slot 6: %s; slot 1 reset: %s"
          % (bool(torch.equal(o6, o0)), bool(np.all(cache.array[1] == 0))))
    ok = ok and torch.equal(o6, o0) and np.all(cache.array[1] == 0)
    print("ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
