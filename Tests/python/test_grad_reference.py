"""The float64 reference backward (grad_reference.py, docs/gradients.md) against torch autograd of two
independent forward evaluations: the SPEC section 2 index sums (grad_torch.bruteforce) and the serial
recurrence over state rows (grad_torch.serial, for d_initial and d_final). Also checks that both
torch evaluations are the library's operator (hla.reference, the serial path's final state), and that
deliberately wrong identities are caught."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import bruteforce as bf   # noqa: E402
import grad_reference as gr   # noqa: E402
import grad_torch as gt   # noqa: E402
import hla   # noqa: E402
from common import make, option_grid, seed_of   # noqa: E402

TOL = 1e-9


def rel(x, ref):
    return bf.rel_err(x, ref)


def inputs(op, masked, normalize, decay, ridge, H, Hkv, T=None):
    T = T or (7 if op == "hla3" else 9)
    B, dk, dv = 2, 3, 4
    q, k, v = make(B, T, H, Hkv, dk, dv, seed_of("grad", op, masked, normalize, decay, ridge, H, Hkv))
    do = np.random.default_rng(seed_of("do", op, H)).standard_normal((B, T, H, dv))
    if normalize:   # positive features keep the denominators away from zero (well-conditioned)
        q, k = np.abs(q), np.abs(k)
    opts = dict(op=op, masked=masked, normalize=normalize, decay=decay, ridge=ridge, eps=1e-6,
                scale=dk ** -0.5)
    return q, k, v, do, opts


def autograd(fn, tensors, outs_and_cots):
    """Gradients of sum(<out, cot>) w.r.t. tensors."""
    loss = sum((o * torch.as_tensor(c)).sum() for o, c in outs_and_cots)
    return [x.detach().numpy() for x in torch.autograd.grad(loss, tensors)]


@pytest.mark.parametrize("op,masked,normalize,decay,ridge,H,Hkv", list(option_grid()))
def test_reference_backward(op, masked, normalize, decay, ridge, H, Hkv):
    q, k, v, do, opts = inputs(op, masked, normalize, decay, ridge, H, Hkv)
    tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    # 1. the torch brute force is the operator (library reference and the numpy brute force)
    o_bf = gt.bruteforce(tq, tk, tv, **opts)
    assert rel(o_bf.detach().numpy(), hla.reference(q, k, v, **opts)) <= 1e-12
    assert rel(o_bf.detach().numpy(), bf.evaluate(q, k, v, **opts)) <= 1e-12
    # 2. dq, dk, dv of the reference backward = autograd of the index sums
    want = autograd(None, (tq, tk, tv), [(o_bf, do)])
    got = gr.backward(q, k, v, do, **opts)
    for name, g, w in zip(("dq", "dk", "dv"), got[:3], want):
        assert rel(g, w) <= TOL, (name, rel(g, w))
    # 3. with an initial state (the state after a random prefix) and a d_final: torch serial recurrence
    pq, pk, pv = make(2, 4, H, Hkv, 3, 4, seed_of("prefix", op, masked))
    if normalize:
        pq, pk = np.abs(pq), np.abs(pk)
    _, init = gr.forward(pq, pk, pv, **opts)
    o_ref, final_ref = gr.forward(q, k, v, initial_state=init, **opts)
    ti = torch.tensor(init, requires_grad=True)
    o_s, final_s = gt.serial(tq, tk, tv, initial_state=ti, **opts)
    assert rel(o_s.detach().numpy(), o_ref) <= 1e-12 and rel(final_s.detach().numpy(), final_ref) <= 1e-12
    # ... and the serial recurrence's state rows are the library's (docs/state-layout.md)
    _, fin_lib = hla.forward(q, k, v, path="serial", initial_state=init, output_final_state=True, **opts)
    assert rel(fin_lib.array, final_ref) <= 1e-12
    dfin = np.random.default_rng(seed_of("dfin", op)).standard_normal(final_ref.shape)
    want = autograd(None, (tq, tk, tv, ti), [(o_s, do), (final_s, dfin)])
    want[3] = symmetrise(want[3], op, masked, ridge, H, Hkv, 3, 4 + normalize)
    got = gr.backward(q, k, v, do, initial_state=init, d_final_state=dfin, **opts)
    for name, g, w in zip(("dq", "dk", "dv", "d_initial"), got, want):
        assert rel(g, w) <= TOL, (name, rel(g, w))


def symmetrise(rows, op, masked, ridge, H, Hkv, dk, dvp):
    out = []
    for r in rows:
        kv, hs = gr.unpack(r.copy(), op, masked, ridge, H, Hkv, dk, dvp)
        for d in kv + hs:
            for name in gr.SYMMETRIC:
                if name in d:
                    d[name] = 0.5 * (d[name] + d[name].T)
        out.append(gr.pack(kv, hs, op, masked, ridge, dk, dvp))
    return np.stack(out)


@pytest.mark.parametrize("op", ["hla2", "ahla", "hla3"])
def test_reference_backward_cu_seqlens(op):
    cu = np.array([0, 3, 4, 9])
    q, k, v, do, opts = inputs(op, True, False, 0.9, 0.0, 4, 2, T=9)
    q, k, v, do = q[:1], k[:1], v[:1], do[:1]
    tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    o = gt.bruteforce(tq, tk, tv, cu_seqlens=cu, **opts)
    assert rel(o.detach().numpy(), hla.reference(q, k, v, cu_seqlens=cu, **opts)) <= 1e-12
    want = autograd(None, (tq, tk, tv), [(o, do)])
    got = gr.backward(q, k, v, do, cu_seqlens=cu, **opts)
    for g, w in zip(got[:3], want):
        assert rel(g, w) <= TOL


@pytest.mark.parametrize("op,masked,mutation", [
    ("hla2", True, "hla2-U-decay"),     # the paper's single decay of the masked correction (SPEC section 3.2)
    ("hla2", True, "no-transpose"),     # dS k instead of (dS + dS^T) k
    ("hla3", False, "no-transpose"),
])
def test_wrong_identities_are_caught(op, masked, mutation):
    q, k, v, do, opts = inputs(op, masked, False, 0.85, 0.0, 2, 2)
    tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    want = autograd(None, (tq, tk, tv), [(gt.bruteforce(tq, tk, tv, **opts), do)])
    got = gr.backward(q, k, v, do, mutation=mutation, **opts)
    assert max(rel(g, w) for g, w in zip(got[:3], want)) > 1e-3
    # a single perturbed element of a correct gradient is caught too
    good = gr.backward(q, k, v, do, **opts)[0]
    bad = good.copy()
    bad[0, 3, 1, 2] += 1e-8 * np.max(np.abs(good))
    assert rel(good, want[0]) <= TOL < rel(bad, want[0])
