"""hla.torch (SPEC section 5, issue 10 item 3): the registered custom ops torch.ops.hla.forward /
torch.ops.hla.backward, their autograd and fake implementations, hla.torch.forward and the hla.torch.HLA
layer.

* torch.autograd.gradcheck (float64, finite differences of the library's own forward) of every operator x
  masked/unmasked x {plain, normalize, decay + scale, ridge (hla2), grouped heads, an initial state that
  requires grad, packed cu_seqlens, the serial path, o only};
* autograd through hla.torch.forward against torch autograd of the SPEC section 2 index sums
  (grad_torch.bruteforce) and, with an initial state and a final-state cotangent, of the serial recurrence
  over state rows (grad_torch.serial): float64 <= 1e-9, float32 <= 2e-3 relative (max-norm), bfloat16 /
  float16 against a float64 evaluation of the same rounded inputs;
* deliberately wrong backwards (a scaled dk, a dropped final-state cotangent, an unsymmetrised state
  cotangent read back through an asymmetric perturbation) are caught by the same checks;
* torch.library.opcheck of the ops (default and nonzero checkpoint_every); torch.compile(fullgraph=True)
  (inductor) and torch.export of code using them; the layer trains and its prefill + steps equal one call;
* checkpoint_every (None, 1, 3) changes no gradient bit, through hla.torch.forward (hla::forward_train's
  checkpoints) and through hla::forward's autograd (hla::backward's own carries);
* ``import hla`` does not import torch; ``import hla.torch`` without torch raises ImportError.
"""
import copy
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import hla  # noqa: E402

if not hasattr(hla, "backward") or not hasattr(hla._hla, "backward"):
    pytest.skip("hla.backward not available in this build", allow_module_level=True)
if not hasattr(torch.library, "custom_op"):
    pytest.skip("hla.torch needs torch >= 2.4", allow_module_level=True)

import hla.torch as ht  # noqa: E402

import grad_reference as gr  # noqa: E402
import grad_torch as gt  # noqa: E402
from common import make, option_grid, seed_of  # noqa: E402

TOL = {torch.float64: 1e-9, torch.float32: 2e-3}
HALF_TOL = {torch.bfloat16: 2e-2, torch.float16: 4e-3}
DK, DV = 3, 2
WORST = {}


class _Summary:
    """Prints WORST at the end of the session (a plugin registered by the fixture below: output written
    during a test's teardown would be captured)."""

    @staticmethod
    def pytest_terminal_summary(terminalreporter):
        if not WORST:
            return
        tr = terminalreporter
        tr.write_sep("-", "hla.torch autograd: worst relative max-norm gradient errors vs torch autograd of "
                          "the SPEC sums / serial recurrence")
        for key, err in sorted(WORST.items()):
            tr.write_line("  %-5s %-8s %-10s %-9s %.2e" % (key + (err,)))


@pytest.fixture(scope="module", autouse=True)
def _report(request):
    pm = request.config.pluginmanager
    if not pm.has_plugin("hla-torch-autograd-summary"):
        pm.register(_Summary(), "hla-torch-autograd-summary")
    yield


def record(op, dtype, name, err):
    key = (op, str(dtype).replace("torch.", ""), name, "")
    if name.startswith("d_init") or name == "d_final":
        key = (op, key[1], name, "(state)")
    WORST[key] = max(WORST.get(key, 0.0), err)


def rel(x, ref):
    x, ref = x.detach().to(torch.float64), ref.detach().to(torch.float64)
    assert x.shape == ref.shape, (x.shape, ref.shape)
    assert torch.isfinite(x).all()
    m = ref.abs().max()
    return float((x - ref).abs().max() / m) if m > 0 else float(x.abs().max())


def options(op, masked=True, normalize=False, decay=1.0, ridge=0.0, scale=DK ** -0.5):
    return dict(op=op, masked=masked, normalize=normalize, decay=decay, ridge=ridge, eps=1e-6, scale=scale)


def inputs(op, B, T, H, Hkv, normalize, dtype=torch.float64, tag="", dv=DV):
    """q, k, v (rounded to float32-representable values, so every dtype sees the same numbers) as leaf
    tensors of dtype that require grad. normalize: positive q, k (well-conditioned denominators)."""
    q, k, v = make(B, T, H, Hkv, DK, dv, seed_of("torch-ag", tag, op, B, T, H, Hkv, normalize))
    if normalize:
        q, k = np.abs(q), np.abs(k)
    return tuple(torch.tensor(x, dtype=dtype, requires_grad=True) for x in (q, k, v))


def state_size(opts, H, Hkv, dv=DV):
    return hla.state_elements(opts["op"], heads=H, dk=DK, dv=dv, kv_heads=Hkv, masked=opts["masked"],
                              normalize=opts["normalize"], ridge=opts["ridge"])


def symmetric(x, opts, H, Hkv, dv=DV):
    """A state [N, n] from free parameters x [N, n]: the symmetric blocks (S, S^Q) symmetrised, differentiably.
    Valid states have symmetric S, S^Q and the library reads only their symmetric part (docs/gradients.md
    section 7), so derivatives of the state are meaningful along symmetric directions only."""
    dvp = dv + (1 if opts["normalize"] else 0)
    rows = []
    for r in x:
        kv, hs = gr.unpack(r, opts["op"], opts["masked"], opts["ridge"], H, Hkv, DK, dvp)
        kv = [{n: (0.5 * (m + m.T) if n in gr.SYMMETRIC else m) for n, m in d.items()} for d in kv]
        hs = [{n: (0.5 * (m + m.T) if n in gr.SYMMETRIC else m) for n, m in d.items()} for d in hs]
        rows.append(gr.pack(kv, hs, opts["op"], opts["masked"], opts["ridge"], DK, dvp, xp=torch))
    return torch.stack(rows)


def symmetrised(rows, opts, H, Hkv, dv=DV):
    with torch.no_grad():
        return symmetric(rows, opts, H, Hkv, dv)


def prefix_state(opts, B, H, Hkv, dtype, tag=""):
    """A realistic initial state: the final state of the serial recurrence after a random prefix."""
    pq, pk, pv = (x.detach().to(torch.float64) for x in inputs(opts["op"], B, 4, H, Hkv, opts["normalize"],
                                                               tag="prefix" + tag))
    _, fin = gt.serial(pq, pk, pv, **opts)
    return fin.to(ht.state_dtype(dtype)).detach()


# ------------------------------------------------------------------------------------------------
# Deliberately wrong backwards: the checks below must catch them.
# ------------------------------------------------------------------------------------------------
class _Wrong(torch.autograd.Function):
    """hla::forward with a backward mutated by `how`: "scale_dk" (dk * 1.01), "drop_d_final" (the final
    state's cotangent ignored), "raw_d_initial" (an antisymmetric error added to the S / S^Q blocks of
    d_initial: invisible along symmetric directions, so gradcheck's symmetric parametrisation cannot see
    it, but the comparison with the symmetrised truth must)."""

    @staticmethod
    def forward(ctx, q, k, v, initial_state, how, opts):
        ctx.save_for_backward(q, k, v, initial_state)
        ctx.how, ctx.opts = how, opts
        return torch.ops.hla.forward(q, k, v, initial_state, None, *opts)

    @staticmethod
    def backward(ctx, do, d_final):
        q, k, v, init = ctx.saved_tensors
        if ctx.how == "drop_d_final":
            d_final = None
        dq, dk, dv, di = torch.ops.hla.backward(q, k, v, do, init, d_final, None, *ctx.opts)
        if ctx.how == "scale_dk":
            dk = dk * 1.01
        if ctx.how == "raw_d_initial":      # an antisymmetric error in the S (S^Q) blocks only
            o = dict(zip(("op", "masked", "normalize", "decay", "ridge"), ctx.opts[:5]))
            r = torch.randn(di.shape, dtype=di.dtype, generator=torch.Generator().manual_seed(0))
            r = r * di.abs().max()
            di = di + (r - symmetrised(r, o, q.shape[2], k.shape[2], v.shape[3]))
        return dq, dk, dv, (di if init is not None else None), None, None


def op_args(opts, chunk_size=2, path="chunked"):
    return (opts["op"], opts["masked"], opts["normalize"], float(opts["decay"]), float(opts["ridge"]),
            float(opts["eps"]), float(opts["scale"]), chunk_size, path)


def wrong_forward(how):
    def f(q, k, v, *, initial_state=None, output_final_state=False, chunk_size=2, path="chunked", **opts):
        o, fin = _Wrong.apply(q, k, v, initial_state, how, op_args(opts, chunk_size, path))
        return o, (fin if output_final_state else None)
    return f


# ------------------------------------------------------------------------------------------------
# gradcheck (float64): analytic gradients of the custom op vs finite differences of its own forward
# ------------------------------------------------------------------------------------------------
VARIANTS = ("plain", "normalize", "decay", "ridge", "grouped", "initial", "cu_seqlens", "serial", "o_only")


def gradcheck_case(op, masked, variant):
    """(function of the differentiable tensors, those tensors) for one gradcheck case."""
    B, T, H, Hkv = 2, 7, 2, 2
    opts = options(op, masked)
    cu, path, with_final, init = None, "chunked", True, None
    if variant == "normalize":
        opts["normalize"] = True
    elif variant == "decay":
        opts.update(decay=0.8, scale=0.7)
    elif variant == "ridge":
        opts.update(ridge=0.3, decay=0.9)
    elif variant == "grouped":
        H, Hkv = 4, 2
        opts.update(decay=0.9)
    elif variant == "serial":
        path, with_final = "serial", False
    elif variant == "o_only":
        with_final = False
    elif variant == "cu_seqlens":
        B, T = 1, 8
        cu = torch.tensor([0, 3, 4, 8])
    q, k, v = inputs(op, B, T, H, Hkv, opts["normalize"], tag=variant)
    tensors = [q, k, v]
    if variant in ("initial", "cu_seqlens"):
        N = B if cu is None else len(cu) - 1
        init = (0.3 * torch.randn(N, state_size(opts, H, Hkv), dtype=torch.float64,
                                  generator=torch.Generator().manual_seed(seed_of(op, masked, variant)))
                ).requires_grad_()
        tensors.append(init)

    def fn(*xs):
        st = symmetric(xs[3], opts, H, Hkv) if len(xs) == 4 else None
        o, fin = ht.forward(xs[0], xs[1], xs[2], initial_state=st, output_final_state=with_final,
                            cu_seqlens=cu, chunk_size=3, path=path, **opts)
        return (o, fin) if with_final else o
    return fn, tensors


def gradcheck_grid():
    for op, masked, variant in itertools.product(("hla2", "ahla", "hla3"), (True, False), VARIANTS):
        if variant == "ridge" and op != "hla2":
            continue
        yield pytest.param(op, masked, variant, id="%s-%s-%s" % (op, "m" if masked else "u", variant))


@pytest.mark.parametrize("op,masked,variant", list(gradcheck_grid()))
def test_gradcheck(op, masked, variant):
    fn, tensors = gradcheck_case(op, masked, variant)
    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("how", ["scale_dk", "drop_d_final"])
def test_gradcheck_catches_a_wrong_backward(how, monkeypatch):
    """The gradcheck above fails for a backward that is wrong by 1 % (or ignores d_final)."""
    monkeypatch.setattr(ht, "forward", wrong_forward(how))
    fn, tensors = gradcheck_case("hla2", True, "initial")
    assert not torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-7, rtol=1e-5, raise_exception=False)
    monkeypatch.setattr(ht, "forward", wrong_forward(None))           # the unmutated wrapper passes
    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-7, rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Against torch autograd of independent float64 evaluations (SPEC section 2 sums, serial recurrence)
# ------------------------------------------------------------------------------------------------
def upstream(shape, tag):
    g = np.random.default_rng(seed_of("upstream", tag, shape)).standard_normal(shape)
    return torch.tensor(g.astype(np.float32).astype(np.float64))


def through_hla(fwd, q64, k64, v64, do, dtype, opts, init=None, dfin=None, cu=None, chunk_size=3):
    """Gradients of sum(o * do) [+ sum(final * dfin)] w.r.t. q, k, v [, init] through `fwd` at `dtype`."""
    q, k, v = (x.detach().to(dtype).requires_grad_() for x in (q64, k64, v64))
    xs = [q, k, v]
    if init is not None:
        init = init.detach().to(ht.state_dtype(dtype)).requires_grad_()
        xs.append(init)
    o, fin = fwd(q, k, v, initial_state=init, output_final_state=dfin is not None, cu_seqlens=cu,
                 chunk_size=chunk_size, **opts)
    assert o.dtype == dtype
    loss = (o.to(torch.float64) * do).sum()
    if dfin is not None:
        assert fin.dtype == ht.state_dtype(dtype)
        loss = loss + (fin.to(torch.float64) * dfin).sum()
    gs = torch.autograd.grad(loss, xs)
    for x, g in zip(xs, gs):
        assert g.dtype == x.dtype and g.shape == x.shape
    return gs


def truth(q64, k64, v64, do, opts, init=None, dfin=None, cu=None):
    q, k, v = (x.detach().to(torch.float64).requires_grad_() for x in (q64, k64, v64))
    xs = [q, k, v]
    if init is None and dfin is None:
        loss = (gt.bruteforce(q, k, v, cu_seqlens=cu, **opts) * do).sum()
    else:
        if init is not None:
            init = init.detach().to(torch.float64).requires_grad_()
            xs.append(init)
        o, fin = gt.serial(q, k, v, initial_state=init, cu_seqlens=cu, **opts)
        loss = (o * do).sum() + (fin * dfin).sum()
    return list(torch.autograd.grad(loss, xs))


def compare(op, got, want, dtype, names=("dq", "dk", "dv", "d_initial"), tol=None, keep=True):
    errs = {}
    for name, g, w in zip(names, got, want):
        errs[name] = err = rel(g, w)
        if keep:
            record(op, dtype, name, err)
    tol = TOL[dtype] if tol is None else tol
    assert max(errs.values()) <= tol, (str(dtype), errs)
    return errs


@pytest.mark.parametrize("op,masked,normalize,decay,ridge,H,Hkv", list(option_grid()))
def test_grads_vs_bruteforce_autograd(op, masked, normalize, decay, ridge, H, Hkv):
    T = 8 if op == "hla3" else 11
    q, k, v = inputs(op, 2, T, H, Hkv, normalize, tag="truth%s%s" % (decay, ridge))
    opts = options(op, masked, normalize, decay, ridge)
    do = upstream((2, T, H, DV), op)
    want = truth(q, k, v, do, opts)
    for dtype in (torch.float64, torch.float32):
        compare(op, through_hla(ht.forward, q, k, v, do, dtype, opts), want, dtype)


@pytest.mark.parametrize("op,masked,normalize,decay,ridge,H,Hkv",
                         [p for p in option_grid() if p.values[5] == 4 or p.values[4] != 0 or p.values[3] != 1])
def test_grads_with_initial_and_final_state(op, masked, normalize, decay, ridge, H, Hkv):
    """d_initial (symmetrised, docs/gradients.md section 7) and the final state's cotangent, against autograd
    of the serial recurrence over state rows."""
    T = 7
    opts = options(op, masked, normalize, decay, ridge)
    q, k, v = inputs(op, 2, T, H, Hkv, normalize, tag="init")
    init = prefix_state(opts, 2, H, Hkv, torch.float32)          # float32-representable
    do = upstream((2, T, H, DV), op + "i")
    dfin = upstream(tuple(init.shape), op + "f")
    want = truth(q, k, v, do, opts, init=init, dfin=dfin)
    want[3] = symmetrised(want[3], opts, H, Hkv)
    for dtype in (torch.float64, torch.float32):
        compare(op, through_hla(ht.forward, q, k, v, do, dtype, opts, init=init, dfin=dfin), want, dtype)


@pytest.mark.parametrize("op", ["hla2", "ahla", "hla3"])
def test_grads_cu_seqlens(op):
    """Packed sequences with per-sequence initial states and a final-state cotangent."""
    cu = torch.tensor([0, 4, 5, 11])
    opts = options(op, True, False, 0.9, 0.3 if op == "hla2" else 0.0)
    q, k, v = inputs(op, 1, 11, 4, 2, False, tag="cu")
    init = prefix_state(opts, 3, 4, 2, torch.float32, tag="cu")
    do, dfin = upstream((1, 11, 4, DV), "cu"), upstream(tuple(init.shape), "cuf")
    want = truth(q, k, v, do, opts, init=init, dfin=dfin, cu=cu)
    want[3] = symmetrised(want[3], opts, 4, 2)
    plain = truth(q, k, v, do, opts, cu=cu)
    for dtype in (torch.float64, torch.float32):
        compare(op, through_hla(ht.forward, q, k, v, do, dtype, opts, init=init, dfin=dfin, cu=cu), want, dtype)
        compare(op, through_hla(ht.forward, q, k, v, do, dtype, opts, cu=cu.tolist()), plain, dtype)


@pytest.mark.parametrize("masked", [True, False], ids=["m", "u"])
@pytest.mark.parametrize("op", ["hla2", "ahla", "hla3"])
def test_checkpoint_every_grads_bit_identical(op, masked):
    """checkpoint_every None, 1, 3: the same gradients bit for bit (torch.equal), through hla.torch.forward
    (hla::forward_train's checkpoints that far apart, read by hla::backward) and through hla::forward's
    autograd (hla::backward's own carries), equal to hla.backward with the default; batch and packed."""
    chunk, H, Hkv = 4, 4, 2
    opts = options(op, masked, False, 0.9, 0.2 if op == "hla2" else 0.0)
    for B, T, cu in ((2, 37, None), (1, 45, torch.tensor([0, 5, 6, 30, 45]))):
        N = B if cu is None else len(cu) - 1
        q, k, v = (x.detach().to(torch.float32) for x in inputs(op, B, T, H, Hkv, False, tag="every%d" % B))
        init = prefix_state(opts, N, H, Hkv, torch.float32, tag="every%d" % B)
        do = upstream((B, T, H, DV), "every%d" % B).to(torch.float32)
        dfin = upstream(tuple(init.shape), "everyf%d" % B).to(torch.float32)
        g = hla.backward(q, k, v, do, initial_state=init, d_final_state=dfin, cu_seqlens=cu, chunk_size=chunk,
                         **opts)
        want = (g.dq, g.dk, g.dv, torch.from_numpy(g.d_initial_state))
        for every in (None, 1, 3):
            xs = [x.clone().requires_grad_() for x in (q, k, v, init)]
            o, fin = ht.forward(*xs[:3], initial_state=xs[3], output_final_state=True, cu_seqlens=cu,
                                chunk_size=chunk, checkpoint_every=every, **opts)
            got = torch.autograd.grad((o, fin), xs, (do, dfin))
            o, fin = torch.ops.hla.forward(*xs, cu, *op_args(opts, chunk), every or 0)
            plain = torch.autograd.grad((o, fin), xs, (do, dfin))
            for name, w, a, b in zip(("dq", "dk", "dv", "d_initial"), want, got, plain):
                assert torch.equal(a, w) and torch.equal(b, w), (B, every, name)
            # the checkpoints hla::forward_train keeps are checkpoint_every chunks apart
            ck = torch.ops.hla.forward_train(q, k, v, init, cu, *op_args(opts, chunk), every or 0)[2]
            rows = hla.checkpoint_rows(op, heads=H, kv_heads=Hkv, dk=DK, dv=DV, batch=B, tokens=T,
                                       sequences=0 if cu is None else N, masked=masked, ridge=opts["ridge"],
                                       chunk_size=chunk, checkpoint_every=every)[0]
            assert ck.shape[0] == rows and (every != 1 or rows == (B * ((T - 1) // chunk) if cu is None
                                                                   else (T - N) // chunk)), (B, every)


@pytest.mark.parametrize("how", ["scale_dk", "drop_d_final", "raw_d_initial"])
def test_comparison_catches_a_wrong_backward(how):
    op, H, Hkv = "hla3", 2, 2
    opts = options(op, True, False, 0.9)
    q, k, v = inputs(op, 2, 7, H, Hkv, False, tag="wrong")
    init = prefix_state(opts, 2, H, Hkv, torch.float32)
    do, dfin = upstream((2, 7, H, DV), "w"), upstream(tuple(init.shape), "wf")
    want = truth(q, k, v, do, opts, init=init, dfin=dfin)
    want[3] = symmetrised(want[3], opts, H, Hkv)
    with pytest.raises(AssertionError):
        compare(op, through_hla(wrong_forward(how), q, k, v, do, torch.float64, opts, init=init, dfin=dfin),
                want, torch.float64, keep=False)
    compare(op, through_hla(wrong_forward(None), q, k, v, do, torch.float64, opts, init=init, dfin=dfin),
            want, torch.float64)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("op", ["hla2", "ahla", "hla3"])
def test_half_precision(op, dtype):
    """Gradients in the inputs' dtype (the state's in float32), close to float64 autograd of the same
    rounded inputs."""
    T, H, Hkv = 9, 4, 2
    opts = options(op, True, False, 0.9)
    q, k, v = (x.detach().to(dtype).to(torch.float64) for x in inputs(op, 2, T, H, Hkv, False, tag="half"))
    init = prefix_state(opts, 2, H, Hkv, dtype)
    do, dfin = upstream((2, T, H, DV), "h"), upstream(tuple(init.shape), "hf")
    want = truth(q, k, v, do, opts, init=init, dfin=dfin)
    want[3] = symmetrised(want[3], opts, H, Hkv)
    got = through_hla(ht.forward, q, k, v, do.to(dtype).to(torch.float64), dtype, opts, init=init, dfin=dfin)
    assert [g.dtype for g in got] == [dtype] * 3 + [torch.float32]
    want_r = truth(q, k, v, do.to(dtype).to(torch.float64), opts, init=init, dfin=dfin)
    want_r[3] = symmetrised(want_r[3], opts, H, Hkv)
    compare(op, got, want_r, dtype, tol=HALF_TOL[dtype])
    assert rel(got[1], want[1]) < 0.1        # and near the unrounded upstream gradient


# ------------------------------------------------------------------------------------------------
# opcheck, compile, export
# ------------------------------------------------------------------------------------------------
def opcheck_cases():
    for op, dtype, extra in itertools.product(("hla2", "ahla", "hla3"), (torch.float32, torch.float64, torch.bfloat16),
                                              ("plain", "initial", "cu_seqlens")):
        yield pytest.param(op, dtype, extra, id="%s-%s-%s" % (op, str(dtype)[6:], extra))


@pytest.mark.parametrize("op,dtype,extra", list(opcheck_cases()))
def test_opcheck(op, dtype, extra):
    """Each op, with checkpoint_every left at its default (plain) or 1 (a checkpoint every chunk)."""
    B, T, H, Hkv = (1, 9, 4, 2) if extra == "cu_seqlens" else (2, 9, 4, 2)
    opts = options(op, True, extra != "plain", 0.9, 0.2 if op == "hla2" else 0.0)
    q, k, v = inputs(op, B, T, H, Hkv, True, dtype=dtype, tag="opcheck")
    cu = torch.tensor([0, 2, 9]) if extra == "cu_seqlens" else None
    N = B if cu is None else 2
    init = None
    if extra != "plain":
        init = (0.1 * torch.rand(N, state_size(opts, H, Hkv), dtype=ht.state_dtype(dtype))).requires_grad_()
    every = () if extra == "plain" else (1,)
    args = op_args(opts, 4) + every
    result = torch.library.opcheck(torch.ops.hla.forward.default, (q, k, v, init, cu) + args)
    assert set(result.values()) == {"SUCCESS"}, result
    result = torch.library.opcheck(torch.ops.hla.forward_train.default, (q, k, v, init, cu) + args)
    assert set(result.values()) == {"SUCCESS"}, result
    do = torch.randn(B, T, H, DV).to(dtype)
    dfin = torch.randn(N, state_size(opts, H, Hkv), dtype=ht.state_dtype(dtype))
    detached = [x.detach() for x in (q, k, v)]
    for i, d in ((init, dfin), (None, None)):
        # (hla::backward takes checkpoint_every after checkpoints: its 1.1 schema ended in checkpoints)
        result = torch.library.opcheck(torch.ops.hla.backward.default,
                                       (*detached, do, None if i is None else i.detach(), d, cu) + args[:9]
                                       + ((None,) + every if every else ()))
        assert set(result.values()) == {"SUCCESS"}, result
        # with hla::forward_train's checkpoints
        ck = torch.ops.hla.forward_train(*detached, None if i is None else i.detach(), cu, *args)[2]
        assert ck.shape[0] == hla.checkpoint_rows(op, heads=H, kv_heads=Hkv, dk=DK, dv=DV, batch=B, tokens=T,
                                                  sequences=0 if cu is None else N, normalize=opts["normalize"],
                                                  ridge=opts["ridge"], chunk_size=4,
                                                  checkpoint_every=(every or (None,))[0])[0]
        result = torch.library.opcheck(torch.ops.hla.backward.default,
                                       (*detached, do, None if i is None else i.detach(), d, cu) + args[:9]
                                       + (ck,) + (every or (0,)))
        assert set(result.values()) == {"SUCCESS"}, result


def test_ops_are_registered_with_fake_kernels():
    q, k, v = (torch.empty(2, 5, 4, 3, device="meta"), torch.empty(2, 5, 2, 3, device="meta"),
               torch.empty(2, 5, 2, 6, device="meta"))
    o, fin = torch.ops.hla.forward(q, k, v, None, None, *op_args(options("hla3"), 0))
    assert o.shape == (2, 5, 4, 6) and o.device.type == "meta"
    assert fin.shape == (2, hla.state_elements("hla3", heads=4, kv_heads=2, dk=3, dv=6))
    dq, dk, dv, di = torch.ops.hla.backward(q, k, v, o, None, None, None, *op_args(options("hla3"), 0))
    assert (dq.shape, dk.shape, dv.shape, di.shape) == (q.shape, k.shape, v.shape, fin.shape)
    with pytest.raises(ValueError, match="multiple"):
        torch.ops.hla.forward(q, k[:, :, :1].expand(2, 5, 3, 3), v[:, :, :1].expand(2, 5, 3, 6), None, None,
                              *op_args(options("hla3"), 0))
    # the fake kernels refuse a negative checkpoint_every as the CPU kernels (libhla) do
    for f in (torch.ops.hla.forward, torch.ops.hla.forward_train):
        with pytest.raises(ValueError, match="checkpoint_every = -1 must be >= 0"):
            f(q, k, v, None, None, *op_args(options("hla3"), 0), -1)
    with pytest.raises(ValueError, match="checkpoint_every = -1 must be >= 0"):
        torch.ops.hla.backward(q, k, v, o, None, None, None, *op_args(options("hla3"), 0), None, -1)


def _loss_fn(q, k, v, init):
    o, fin = ht.forward(torch.sigmoid(q), k, v * 2, op="hla2", masked=True, decay=0.9, ridge=0.1, scale=0.5,
                        initial_state=init, output_final_state=True, chunk_size=4)
    o2, _ = ht.forward(q, k, v, op="hla3", masked=False, normalize=False, chunk_size=4)
    return (o ** 2).sum() + (fin * fin).sum() + o2.sum()


def _compiled_vs_eager(backend):
    q, k, v = inputs("hla2", 2, 9, 4, 2, False, tag="compile")
    n = state_size(options("hla2", ridge=0.1), 4, 2)
    init = (0.1 * torch.randn(2, n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))).requires_grad_()
    xs = (q, k, v, init)
    compiled = torch.compile(_loss_fn, fullgraph=True, backend=backend)
    got = compiled(*xs)
    g_got = torch.autograd.grad(got, xs)
    want = _loss_fn(*xs)
    g_want = torch.autograd.grad(want, xs)
    assert rel(got, want) <= 1e-12
    for a, b in zip(g_got, g_want):
        assert rel(a, b) <= 1e-12


def test_compile_fullgraph_inductor():
    """torch.compile(fullgraph=True) with the default (inductor) backend: forward and backward graphs,
    same values and gradients as eager (float64)."""
    _compiled_vs_eager("inductor")


def test_compile_dynamic_module_training_step():
    """A compiled (aot_eager, dynamic shapes) training step of the layer at two sequence lengths."""
    torch.manual_seed(0)
    layer = ht.HLA(16, 4, num_kv_heads=2, op="ahla", decay=0.95, chunk_size=4, checkpoint_every=1,
                   dtype=torch.float64)

    def step(x):
        y, fin = layer(x, output_final_state=True)
        return (y ** 2).mean() + fin.pow(2).mean()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager", dynamic=True)
    for T in (7, 12):
        x = torch.randn(2, T, 16, dtype=torch.float64)
        layer.zero_grad()
        a = compiled(x)
        a.backward()
        ga = [p.grad.clone() for p in layer.parameters()]
        layer.zero_grad()
        b = step(x)
        b.backward()
        assert rel(a, b) <= 1e-12
        for g, p in zip(ga, layer.parameters()):
            assert rel(g, p.grad) <= 1e-12


def test_export_module():
    torch.manual_seed(0)
    layer = ht.HLA(16, 4, num_kv_heads=2, op="hla3", normalize=True, feature_map="elu")
    x = torch.randn(2, 7, 16)
    T = torch.export.Dim("T", min=2, max=1024)
    ep = torch.export.export(layer, (x,), dynamic_shapes=({1: T},))
    # parameters require grad, so the layer calls hla::forward_train (checkpoints for a backward)
    assert "torch.ops.hla.forward_train.default" in ep.graph_module.code
    for t in (7, 30):
        xt = torch.randn(2, t, 16)
        assert rel(ep.module()(xt)[0], layer(xt)[0]) == 0.0

    class Stepper(torch.nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.layer = layer

        def forward(self, x, state):
            return self.layer(x, state=state, output_final_state=True)

    st = layer.init_state(2)
    ep2 = torch.export.export(Stepper(layer), (x, st))
    y1, s1 = ep2.module()(x, st)
    y2, s2 = layer(x, state=st, output_final_state=True)
    assert rel(y1, y2) == 0.0 and rel(s1, s2) == 0.0


# ------------------------------------------------------------------------------------------------
# The layer
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["hla2", "ahla", "hla3"])
def test_layer_prefill_then_steps_equal_one_call(op):
    torch.manual_seed(1)
    layer = ht.HLA(24, 4, num_kv_heads=2, head_dim=5, value_dim=3, op=op, decay=0.9,
                   ridge=0.2 if op == "hla2" else 0.0, normalize=(op == "ahla"), feature_map="elu",
                   dtype=torch.float64)
    x = torch.randn(3, 20, 24, dtype=torch.float64)
    y, fin = layer(x, output_final_state=True)
    assert y.shape == x.shape and fin.shape == (3, layer.state_size) and fin.dtype == torch.float64
    y1, st = layer(x[:, :11], output_final_state=True)
    ys = [y1]
    for t in range(11, 20):
        yt, st = layer(x[:, t:t + 1], state=st, output_final_state=True)
        ys.append(yt)
    assert rel(torch.cat(ys, 1), y) <= 1e-10
    assert rel(st, fin) <= 1e-10
    # packed sequences (cu_seqlens, B = 1) equal separate calls
    cu = torch.tensor([0, 20, 40, 60])
    yp, fp = layer(x.reshape(1, 60, 24), output_final_state=True, cu_seqlens=cu)
    assert rel(yp.reshape(3, 20, 24), y) <= 1e-10 and rel(fp, fin) <= 1e-10
    # gradients flow into a learned initial state
    s0 = (0.1 * layer.init_state(3).normal_()).requires_grad_()
    layer(x, state=s0)[0].pow(2).sum().backward()
    assert s0.grad is not None and torch.isfinite(s0.grad).all() and s0.grad.abs().max() > 0


def _fit(student, params, x, target, steps=60, lr=1e-2):
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(student(x)[0], target)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses))
    return losses


@pytest.mark.parametrize("op", ["hla2", "ahla", "hla3"])
def test_layer_trains(op):
    """Toy regressions on the outputs of a fixed random teacher layer: (1) a fresh student, all parameters,
    loss / 3 in 60 Adam steps; (2) a copy of the teacher with new q and k projections, only those trained:
    their gradients pass through the operator's dq, dk alone; loss / 2 in 60 steps."""
    torch.manual_seed(0)
    kw = dict(num_kv_heads=2, op=op, decay=0.9, feature_map=None)
    teacher = ht.HLA(16, 4, **kw)
    x = torch.randn(8, 24, 16)
    with torch.no_grad():
        target = teacher(x)[0]
    student = ht.HLA(16, 4, **kw)
    losses = _fit(student, student.parameters(), x, target)
    assert losses[-1] < losses[0] / 3, losses[::10]
    student = copy.deepcopy(teacher)
    for lin in (student.q_proj, student.k_proj):
        torch.nn.init.normal_(lin.weight, std=0.25)
    losses = _fit(student, [student.q_proj.weight, student.k_proj.weight], x, target, lr=2e-2)
    assert losses[-1] < losses[0] / 2, losses[::10]


def test_layer_bfloat16():
    torch.manual_seed(0)
    layer = ht.HLA(32, 4, num_kv_heads=1, op="hla2", dtype=torch.bfloat16)
    x = torch.randn(2, 17, 32, dtype=torch.bfloat16, requires_grad=True)
    y, fin = layer(x, output_final_state=True)
    assert y.dtype == torch.bfloat16 and fin.dtype == torch.float32
    y.float().pow(2).sum().backward()
    assert x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())


# ------------------------------------------------------------------------------------------------
# API edges
# ------------------------------------------------------------------------------------------------
def test_forward_api():
    q, k, v = inputs("hla2", 2, 5, 2, 2, False, dtype=torch.float32)
    o, fin = ht.forward(q, k, v)
    assert fin is None and o.shape == (2, 5, 2, DV) and o.dtype == torch.float32 and o.requires_grad
    want, _ = hla.forward(q.detach(), k.detach(), v.detach())
    assert torch.equal(o.detach(), want)
    st = hla.State(batch=2, heads=2, dk=DK, dv=DV, dtype="float32")
    st.prefill(q[:, :2].detach(), k[:, :2].detach(), v[:, :2].detach())
    o2, fin2 = ht.forward(q[:, 2:], k[:, 2:], v[:, 2:], initial_state=st, output_final_state=True)
    assert rel(o2, o[:, 2:]) <= 1e-6
    with pytest.raises(TypeError, match="q"):
        ht.forward(q.detach().numpy(), k, v)
    with pytest.raises(ValueError, match="op"):
        ht.forward(q, k, v, op="hla4")
    with pytest.raises(ValueError, match="initial"):
        ht.forward(q, k, v, initial_state=torch.zeros(3, 7))
    with pytest.raises(TypeError):
        ht.forward(q, k.double(), v)
    # checkpoint_every: an int or None (as hla.forward), >= 0; with and without a gradient to take
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            for bad in (True, 1.5, "1"):
                with pytest.raises(TypeError, match="checkpoint_every must be an int or None"):
                    ht.forward(q, k, v, checkpoint_every=bad)
            with pytest.raises(ValueError, match="checkpoint_every = -1 must be >= 0") as info:
                ht.forward(q, k, v, checkpoint_every=-1)
            assert info.value.hla_status == "HLA_ERR_INVALID_ARGUMENT"
            assert torch.equal(ht.forward(q, k, v, checkpoint_every=np.int64(2))[0].detach(), want)


def _python(code):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_import_hla_does_not_import_torch():
    r = _python("import sys, hla; assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_import_hla_torch_without_torch_raises_importerror():
    r = _python("import sys; sys.modules['torch'] = None\n"
                "try:\n    import hla.torch\nexcept ImportError as e:\n    print('IMPORTERROR', e)\n")
    assert r.returncode == 0, r.stderr
    assert "IMPORTERROR" in r.stdout and "PyTorch" in r.stdout, r.stdout
