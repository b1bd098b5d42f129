#!/usr/bin/env python3
"""Check the torch stand-in (hla_standin.py) against libhla, and hla.torch against the stand-in.

    PYTHONPATH=bindings/python python3 examples/train/check_standin.py

1. forward: stand-in vs `hla.reference` (libhla's brute-force index sums), float64, every op x
   normalize x decay, scale != 1, grouped heads; max-norm relative error must be <= 1e-10;
2. gradients: stand-in autograd vs `hla.backward` (libhla's reverse sweep), when it exists, <= 1e-8;
3. when `hla.torch` imports: its forward and autograd gradients vs the stand-in, float64 (<= 1e-8)
   and float32 (<= 1e-3), with the options the training uses.
Exits non-zero on any disagreement.
"""
import itertools
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hla  # noqa: E402
from hla_standin import IMPLEMENTATION, standin_forward  # noqa: E402


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def main():
    g = torch.Generator().manual_seed(0)
    B, T, H, Hkv, dk, dv = 2, 23, 4, 2, 5, 3
    worst_f, worst_g, failures = 0.0, 0.0, []
    has_backward = hasattr(hla, "backward")
    for op, normalize, decay in itertools.product(("hla2", "ahla", "hla3"), (False, True), (1.0, 0.9)):
        if normalize:   # positive features, as the training uses (well-conditioned denominators)
            q = torch.rand(B, T, H, dk, generator=g, dtype=torch.float64) + 0.1
            k = torch.rand(B, T, Hkv, dk, generator=g, dtype=torch.float64) + 0.1
        else:
            q = torch.randn(B, T, H, dk, generator=g, dtype=torch.float64)
            k = torch.randn(B, T, Hkv, dk, generator=g, dtype=torch.float64)
        v = torch.randn(B, T, Hkv, dv, generator=g, dtype=torch.float64)
        opts = dict(op=op, masked=True, normalize=normalize, decay=decay, scale=dk ** -0.5)
        ref = hla.reference(q.numpy(), k.numpy(), v.numpy(), **opts)
        qq, kk, vv = (x.clone().requires_grad_(True) for x in (q, k, v))
        o, _ = standin_forward(qq, kk, vv, **opts)
        e = rel(o.detach().numpy(), ref)
        worst_f = max(worst_f, e)
        if e > 1e-10:
            failures.append("forward %s: %.2e" % (opts, e))
        if has_backward:
            do = torch.randn(o.shape, generator=g, dtype=torch.float64)
            o.backward(do)
            gl = hla.backward(q.numpy(), k.numpy(), v.numpy(), do.numpy(), **opts)
            for name, mine, lib in (("dq", qq.grad, gl.dq), ("dk", kk.grad, gl.dk), ("dv", vv.grad, gl.dv)):
                e = rel(mine.numpy(), lib)
                worst_g = max(worst_g, e)
                if e > 1e-8:
                    failures.append("%s %s: %.2e" % (name, opts, e))
    print("stand-in vs hla.reference (forward, float64): max rel error %.2e over 12 configurations" % worst_f)
    if has_backward:
        print("stand-in autograd vs hla.backward (dq, dk, dv, float64): max rel error %.2e" % worst_g)
    else:
        print("hla.backward not available: gradients not compared")

    if IMPLEMENTATION == "hla.torch":
        import hla.torch as ht
        worst = {torch.float64: 0.0, torch.float32: 0.0}
        for op, dtype, normalize in itertools.product(("hla2", "ahla", "hla3"), (torch.float64, torch.float32),
                                                      (False, True)):
            if normalize:     # positive features (elu + 1 style), scale cancels
                q = torch.rand(2, 64, 2, 16, generator=g, dtype=torch.float64) + 0.05
                k = torch.rand(2, 64, 2, 16, generator=g, dtype=torch.float64) + 0.05
            else:             # identity features, unnormalized, scale d^-0.5 (train.py's default)
                q = torch.randn(2, 64, 2, 16, generator=g, dtype=torch.float64)
                k = torch.randn(2, 64, 2, 16, generator=g, dtype=torch.float64)
            v = torch.randn(2, 64, 2, 16, generator=g, dtype=torch.float64)
            do = torch.randn(2, 64, 2, 16, generator=g, dtype=torch.float64)
            opts = dict(op=op, masked=True, normalize=normalize, decay=1.0, scale=1.0 if normalize else 0.25)
            outs = []
            for f, dt in ((ht.forward, dtype), (standin_forward, torch.float64)):
                xs = [x.to(dt).requires_grad_(True) for x in (q, k, v)]
                o, _ = f(*xs, **opts)
                o.backward(do.to(dt))
                outs.append([o.detach()] + [x.grad for x in xs])
            for a, b in zip(*outs):
                worst[dtype] = max(worst[dtype], rel(a.double().numpy(), b.numpy()))
        print("hla.torch vs stand-in (o, dq, dk, dv; unnormalized and normalized): max rel error "
              "%.2e float64, %.2e float32" % (worst[torch.float64], worst[torch.float32]))
        if worst[torch.float64] > 1e-8 or worst[torch.float32] > 1e-3:
            failures.append("hla.torch disagrees with the stand-in: %s" % worst)
    print("implementation the training uses: %s" % IMPLEMENTATION)
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
