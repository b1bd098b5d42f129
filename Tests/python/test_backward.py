"""hla.backward (libhla's hla_backward) against torch autograd of the SPEC section 2 index sums
(grad_torch.bruteforce) and of the serial recurrence over state rows (grad_torch.serial, for the
initial state's cotangent and an incoming d_final), for every op x option x dtype; chaining through
the state; packed cu_seqlens; bad input. float64 <= 1e-9, float32 <= 2e-3 relative (max-norm), bfloat16 /
float16 against a float64 evaluation of the same rounded inputs."""
import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import grad_reference as gr   # noqa: E402
import grad_torch as gt   # noqa: E402
import hla   # noqa: E402
from common import make, seed_of   # noqa: E402

if not hasattr(hla, "backward") or not hasattr(hla._hla, "backward"):
    pytest.skip("hla.backward not available in this build", allow_module_level=True)

TOL = {np.float64: 1e-9, np.float32: 2e-3}
DK, DV = 3, 4
WORST = {}


def rel(x, ref):
    x, ref = np.asarray(x, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert x.shape == ref.shape
    assert np.all(np.isfinite(x))
    m = np.max(np.abs(ref))
    return float(np.max(np.abs(x - ref)) / m) if m > 0 else float(np.max(np.abs(x)))


def record(key, err):
    WORST[key] = max(WORST.get(key, 0.0), err)


def grid():
    for op in ("hla2", "ahla", "hla3"):
        ridges = (0.0, 0.3) if op == "hla2" else (0.0,)
        for masked, normalize, decay, ridge, (H, Hkv) in itertools.product(
                (True, False), (False, True), (1.0, 0.85), ridges, ((2, 2), (4, 2), (3, 1))):
            yield pytest.param(op, masked, normalize, decay, ridge, H, Hkv, id="%s-%s-%s-g%s-l%s-H%d/%d" % (
                op, "m" if masked else "u", "norm" if normalize else "raw", decay, ridge, H, Hkv))


def case(op, masked, normalize, decay, ridge, H, Hkv, T=None, B=2, tag=""):
    T = T or (8 if op == "hla3" else 13)
    q, k, v = make(B, T, H, Hkv, DK, DV, seed_of("bwd", tag, op, masked, normalize, decay, ridge, H, Hkv))
    do = np.random.default_rng(seed_of("do", tag, op, H, T)).standard_normal((B, T, H, DV))
    do = do.astype(np.float32).astype(np.float64)
    if normalize:   # positive features: well-conditioned denominators (docs/spec.md section 4)
        q, k = np.abs(q), np.abs(k)
    opts = dict(op=op, masked=masked, normalize=normalize, decay=decay, ridge=ridge, eps=1e-6, scale=DK ** -0.5)
    return q, k, v, do, opts


def autograd(tensors, pairs):
    loss = sum((o * torch.as_tensor(c, dtype=torch.float64)).sum() for o, c in pairs)
    return [x.detach().numpy() for x in torch.autograd.grad(loss, tensors)]


def torch_truth(q, k, v, do, opts, cu_seqlens=None):
    tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    return autograd((tq, tk, tv), [(gt.bruteforce(tq, tk, tv, cu_seqlens=cu_seqlens, **opts), do)])


@pytest.mark.parametrize("op,masked,normalize,decay,ridge,H,Hkv", list(grid()))
def test_backward_vs_autograd(op, masked, normalize, decay, ridge, H, Hkv):
    q, k, v, do, opts = case(op, masked, normalize, decay, ridge, H, Hkv)
    want = torch_truth(q, k, v, do, opts)
    for dtype, path in itertools.product((np.float64, np.float32), ("serial", "chunked")):
        args = [np.ascontiguousarray(x, dtype=dtype) for x in (q, k, v, do)]
        g = hla.backward(*args, path=path, chunk_size=3, **opts)
        assert g.d_initial_state is None
        for name, got, w in zip(("dq", "dk", "dv"), g[:3], want):
            assert got.dtype == dtype and got.shape == w.shape
            err = rel(got, w)
            record((op, np.dtype(dtype).name, name), err)
            assert err <= TOL[dtype], (path, np.dtype(dtype).name, name, err)


@pytest.mark.parametrize("op,masked,normalize,decay,ridge,H,Hkv", [
    p for p in grid() if p.values[6] != 3])
def test_backward_initial_and_d_final(op, masked, normalize, decay, ridge, H, Hkv):
    """With an initial state (after a random prefix) and a d_final: autograd of the serial recurrence."""
    q, k, v, do, opts = case(op, masked, normalize, decay, ridge, H, Hkv, tag="init")
    pq, pk, pv, _, _ = case(op, masked, normalize, decay, ridge, H, Hkv, T=5, tag="prefix")
    _, init = gr.forward(pq, pk, pv, **opts)
    init = init.astype(np.float32).astype(np.float64)
    dfin = np.random.default_rng(seed_of("dfin", op)).standard_normal(init.shape).astype(np.float32).astype(np.float64)
    tq, tk, tv, ti = (torch.tensor(x, requires_grad=True) for x in (q, k, v, init))
    o, fin = gt.serial(tq, tk, tv, initial_state=ti, **opts)
    want = autograd((tq, tk, tv, ti), [(o, do), (fin, dfin)])
    want[3] = symmetrised(want[3], op, masked, ridge, H, Hkv, DV + normalize)
    for dtype in (np.float64, np.float32):
        args = [np.ascontiguousarray(x, dtype=dtype) for x in (q, k, v, do)]
        g = hla.backward(*args, initial_state=init.astype(dtype), d_final_state=dfin.astype(dtype),
                         chunk_size=2, **opts)
        for name, got, w in zip(("dq", "dk", "dv", "d_initial"), g, want):
            err = rel(got, w)
            record((op, np.dtype(dtype).name, name), err)
            assert err <= TOL[dtype], (np.dtype(dtype).name, name, err)


def symmetrised(rows, op, masked, ridge, H, Hkv, dvp):
    out = []
    for r in rows:
        kv, hs = gr.unpack(r.copy(), op, masked, ridge, H, Hkv, DK, dvp)
        for d in kv + hs:
            for name in gr.SYMMETRIC:
                if name in d:
                    d[name] = 0.5 * (d[name] + d[name].T)
        out.append(gr.pack(kv, hs, op, masked, ridge, DK, dvp))
    return np.stack(out)


@pytest.mark.parametrize("op", ["hla2", "ahla", "hla3"])
@pytest.mark.parametrize("masked", [True, False])
def test_chaining_through_the_state(op, masked):
    """backward(segment 2) gives d_initial = d_final of segment 1; the two equal backward(whole)."""
    ridge = 0.3 if op == "hla2" else 0.0
    q, k, v, do, opts = case(op, masked, False, 0.9, ridge, 4, 2, T=17, tag="chain")
    init = gr.forward(*(x[:, :3] for x in (q, k, v)), **opts)[1]
    dfin = np.random.default_rng(5).standard_normal(init.shape)
    a = 7
    whole = hla.backward(q, k, v, do, initial_state=init, d_final_state=dfin, chunk_size=4, **opts)
    _, mid = hla.forward(q[:, :a], k[:, :a], v[:, :a], initial_state=init, output_final_state=True, **opts)
    g2 = hla.backward(q[:, a:], k[:, a:], v[:, a:], do[:, a:], initial_state=mid, d_final_state=dfin, **opts)
    g1 = hla.backward(q[:, :a], k[:, :a], v[:, :a], do[:, :a], initial_state=init,
                      d_final_state=g2.d_initial_state, **opts)
    for i, name in enumerate(("dq", "dk", "dv")):
        assert rel(np.concatenate([g1[i], g2[i]], axis=1), whole[i]) <= 1e-12, name
    assert rel(g1.d_initial_state, whole.d_initial_state) <= 1e-12
    # the incoming d_final matters (a test that ignored it would fail here)
    g2z = hla.backward(q[:, a:], k[:, a:], v[:, a:], do[:, a:], initial_state=mid, **opts)
    assert rel(g2z.dk, g2.dk) > 1e-3


@pytest.mark.parametrize("op", ["hla2", "ahla", "hla3"])
def test_cu_seqlens(op):
    cu = np.array([0, 5, 6, 13], dtype=np.int64)
    q, k, v, do, opts = case(op, True, False, 0.9, 0.0, 4, 2, T=13, B=1, tag="cu")
    want = torch_truth(q, k, v, do, opts, cu_seqlens=cu)
    init = np.random.default_rng(1).standard_normal((3, gr.state_elements(op, True, 0.0, 4, 2, DK, DV))) * 0.1
    for dtype in (np.float64, np.float32):
        args = [np.ascontiguousarray(x, dtype=dtype) for x in (q, k, v, do)]
        g = hla.backward(*args, cu_seqlens=cu, chunk_size=2, **opts)
        for got, w in zip(g[:3], want):
            assert rel(got, w) <= TOL[dtype]
        # with initial states: each packed sequence equals its own call
        g = hla.backward(*args, cu_seqlens=cu, initial_state=init.astype(dtype), **opts)
        for i in range(3):
            s = slice(cu[i], cu[i + 1])
            one = hla.backward(*(x[:, s] for x in args), initial_state=init[i:i + 1].astype(dtype), **opts)
            for j in range(3):
                assert rel(g[j][:, s], one[j]) <= (1e-12 if dtype == np.float64 else 1e-5)
            assert rel(g.d_initial_state[i:i + 1], one.d_initial_state) <= (1e-12 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("op", ["hla2", "ahla", "hla3"])
@pytest.mark.parametrize("half,tol", [("bfloat16", 1e-2), ("float16", 2e-3)])
def test_half_precision(op, half, tol):
    """bf16/f16 inputs: widened to float32, accumulated in float32, rounded once on store; against a
    float64 evaluation of the same rounded inputs."""
    if half == "bfloat16":
        ml = pytest.importorskip("ml_dtypes")
        dt = ml.bfloat16
    else:
        dt = np.float16
    q, k, v, do, opts = case(op, True, False, 0.9, 0.3 if op == "hla2" else 0.0, 4, 2, tag=half)
    args = [x.astype(dt) for x in (q, k, v, do)]
    want = torch_truth(*(x.astype(np.float64) for x in args), opts)
    g = hla.backward(*args, **opts)
    for name, got, w in zip(("dq", "dk", "dv"), g[:3], want):
        assert got.dtype == dt
        err = rel(got.astype(np.float64), w)
        record((op, half, name), err)
        assert err <= tol, (name, err)


def test_torch_tensors_in_torch_out():
    q, k, v, do, opts = case("hla2", True, False, 1.0, 0.0, 2, 1, tag="torch")
    tq, tk, tv, tdo = (torch.tensor(x) for x in (q, k, v, do))
    g = hla.backward(tq, tk, tv, tdo, **opts)
    assert all(isinstance(x, torch.Tensor) for x in g[:3])
    want = hla.backward(q, k, v, do, **opts)
    for a, b in zip(g[:3], want[:3]):
        assert rel(a.numpy(), b) == 0


def test_a_wrong_gradient_is_caught():
    """The comparison can fail: a gradient of another decay, or one perturbed element, exceeds TOL."""
    q, k, v, do, opts = case("hla2", True, False, 0.85, 0.0, 2, 2, tag="fail")
    want = torch_truth(q, k, v, do, opts)
    other = hla.backward(q, k, v, do, **dict(opts, decay=0.86))
    assert rel(other.dk, want[1]) > 1e-3
    good = hla.backward(q, k, v, do, **opts).dq
    assert rel(good, want[0]) <= TOL[np.float64]
    good[0, 4, 1, 2] += 1e-8 * np.max(np.abs(good))
    assert rel(good, want[0]) > TOL[np.float64]


def test_bad_input():
    q, k, v, do, opts = case("hla2", True, False, 1.0, 0.0, 2, 1, tag="bad")
    with pytest.raises(ValueError, match="d_out"):
        hla.backward(q, k, v, do[:, :-1], **opts)
    with pytest.raises((TypeError, ValueError), match="d_out"):
        hla.backward(q, k, v, do.astype(np.float32), **opts)
    with pytest.raises(ValueError, match="d_final"):
        hla.backward(q, k, v, do, d_final_state=np.zeros((2, 3)), **opts)
    with pytest.raises(ValueError, match="path"):
        hla.backward(q, k, v, do, path="sideways", **opts)
    with pytest.raises(ValueError, match="cu_seqlens"):
        hla.backward(q, k, v, do, cu_seqlens=[0, 5, 13], **opts)


def test_report_worst():
    """Prints the worst relative errors seen above (pytest -s shows them)."""
    for key, err in sorted(WORST.items()):
        print("worst %-5s %-9s %-9s %.2e" % (key + (err,)))


@pytest.mark.parametrize("op", ["hla2", "ahla", "hla3"])
@pytest.mark.parametrize("masked", [True, False])
def test_chunked_equals_serial_many_chunks(op, masked):
    """Many chunks (T = 203, chunk 4: 51 chunks in groups of 8, the last one partial): the chunked path's
    two-level checkpoints against the serial sweep, float64, with an initial state and d_final."""
    q, k, v, do, opts = case(op, masked, True, 0.97, 0.2 if op == "hla2" else 0.0, 4, 2, T=203, B=1, tag="long")
    init = gr.forward(*(x[:, :4] for x in (q, k, v)), **opts)[1]
    dfin = np.random.default_rng(9).standard_normal(init.shape)
    a = hla.backward(q, k, v, do, initial_state=init, d_final_state=dfin, chunk_size=4, path="chunked", **opts)
    b = hla.backward(q, k, v, do, initial_state=init, d_final_state=dfin, path="serial", **opts)
    for x, y in zip(a, b):
        assert rel(x, y) <= 1e-10
