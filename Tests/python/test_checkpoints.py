"""Checkpoints (docs/gradients.md section 11): hla.forward(..., checkpoints=) writes each sequence's state
every `stride` tokens, bit for bit the state a forward over that prefix ends in; hla.backward(...,
checkpoints=) starts from them and gives the gradients of hla.backward without them, bit for bit; shapes
from hla.checkpoint_rows / hla.new_checkpoints; bad input. numpy only (hla.torch's training op at the end
when torch is installed)."""
import itertools
import math

import numpy as np
import pytest

import hla
from common import make, seed_of

DK, DV = 5, 3


def plan(T, chunk):
    """(every, stride) of docs/gradients.md section 11 for T tokens and a chunk length."""
    every = math.isqrt(-(-T // chunk) - 1) + 1 if T > chunk else 1
    return every, every * chunk


def grid(heads=((2, 2), (4, 2))):
    for op in ("hla2", "ahla", "hla3"):
        for masked, normalize, decay, (H, Hkv), dtype in itertools.product(
                (True, False), (False, True), (1.0, 0.9), heads, (np.float64, np.float32)):
            yield pytest.param(op, masked, normalize, decay, H, Hkv, dtype, id="%s-%s-%s-g%s-H%d/%d-%s" % (
                op, "m" if masked else "u", "norm" if normalize else "raw", decay, H, Hkv, np.dtype(dtype).name))


def inputs(op, B, T, H, Hkv, normalize, dtype, tag):
    q, k, v = make(B, T, H, Hkv, DK, DV, seed_of("ckpt", tag, op, B, T, H, Hkv))
    if normalize:
        q, k = np.abs(q), np.abs(k)
    do = np.random.default_rng(seed_of("ckpt-do", tag, op, T)).standard_normal((B, T, H, DV))
    return (x.astype(dtype) for x in (q, k, v, do))


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def states(op, N, H, Hkv, masked, normalize, ridge, dtype):
    """(init, dfin): a small initial state and a final-state cotangent [N, n] of the state dtype."""
    n = hla.state_elements(op, heads=H, kv_heads=Hkv, dk=DK, dv=DV, masked=masked, normalize=normalize,
                           ridge=ridge)
    sdt = np.float64 if dtype == np.float64 else np.float32
    init = (0.1 * np.random.default_rng(seed_of("ckpt-init", op, H)).standard_normal((N, n))).astype(sdt)
    dfin = np.random.default_rng(seed_of("ckpt-dfin", op, H)).standard_normal((N, n)).astype(sdt)
    return init, dfin


def check_rows(ck, stride, q, k, v, init, opts):
    """Each row the call's sequences need is the state a forward over the sequence's first (j + 1) *
    stride tokens ends in; the rows after them are left as they are (7.0)."""
    cu = opts["cu_seqlens"]
    B, T = q.shape[:2]
    lengths = [T] * B if cu is None else list(np.diff(cu))
    r = 0
    for i, length in enumerate(lengths):
        bos = 0 if cu is None else cu[i]
        b = i if cu is None else 0
        for j in range(1, (length - 1) // stride + 1):
            end = bos + j * stride
            _, fp = hla.forward(q[b:b + 1, bos:end], k[b:b + 1, bos:end], v[b:b + 1, bos:end],
                                initial_state=init[i:i + 1], output_final_state=True,
                                **dict(opts, cu_seqlens=None))
            assert same(ck[r], fp.array[0]), "sequence %d checkpoint %d" % (i, j)
            r += 1
    assert np.all(ck[r:] == 7.0)


@pytest.mark.parametrize("op,masked,normalize,decay,H,Hkv,dtype", list(grid()))
@pytest.mark.parametrize("packed", [False, True], ids=["batch", "packed"])
def test_checkpoints_bit_for_bit(op, masked, normalize, decay, H, Hkv, dtype, packed):
    chunk = 4
    B, T, cu = (2, 45, None) if not packed else (1, 60, np.array([0, 7, 8, 40, 60]))
    q, k, v, do = inputs(op, B, T, H, Hkv, normalize, dtype, "bit")
    opts = dict(op=op, masked=masked, normalize=normalize, decay=decay, ridge=0.2 if op == "hla2" else 0.0,
                scale=DK ** -0.5, chunk_size=chunk, cu_seqlens=cu)
    N = B if cu is None else len(cu) - 1
    init, dfin = states(op, N, H, Hkv, masked, normalize, opts["ridge"], dtype)
    n, sdt = init.shape[1], init.dtype

    rows, stride = hla.checkpoint_rows(op, heads=H, kv_heads=Hkv, dk=DK, dv=DV, masked=masked,
                                       normalize=normalize, ridge=opts["ridge"], chunk_size=chunk, batch=B,
                                       tokens=T, sequences=0 if cu is None else N)
    assert stride == plan(T, chunk)[1]
    assert rows == (B * ((T - 1) // stride) if cu is None else (T - N) // stride)
    ck = hla.new_checkpoints(q, k, v, **opts)
    assert ck.shape == (rows, n) and ck.dtype == sdt
    ck[:] = 7.0   # every row a sequence needs must be written; the rest left as they are

    o1, f1 = hla.forward(q, k, v, initial_state=init, output_final_state=True, **opts)
    o2, f2 = hla.forward(q, k, v, initial_state=init, output_final_state=True, checkpoints=ck, **opts)
    assert same(o1, o2) and same(f1.array, f2.array)

    check_rows(ck, stride, q, k, v, init, opts)

    g1 = hla.backward(q, k, v, do, initial_state=init, d_final_state=dfin, **opts)
    g2 = hla.backward(q, k, v, do, initial_state=init, d_final_state=dfin, checkpoints=ck, **opts)
    for a, b in zip(g1, g2):
        assert same(a, b)


@pytest.mark.parametrize("op,masked,normalize,decay,H,Hkv,dtype", list(grid(heads=((4, 2),))))
@pytest.mark.parametrize("T,chunk", [(37, 8), (100, 16)], ids=["T37", "T100"])
def test_checkpoint_every_bit_for_bit(op, masked, normalize, decay, H, Hkv, dtype, T, chunk):
    """checkpoint_every moves the carries the backward keeps (its own, or the checkpoints'), never a bit of
    the outputs or gradients; forward, new_checkpoints and backward given the same value."""
    B = 2
    q, k, v, do = inputs(op, B, T, H, Hkv, normalize, dtype, "every")
    opts = dict(op=op, masked=masked, normalize=normalize, decay=decay, ridge=0.2 if op == "hla2" else 0.0,
                scale=DK ** -0.5, chunk_size=chunk)
    init, dfin = states(op, B, H, Hkv, masked, normalize, opts["ridge"], dtype)
    o, f = hla.forward(q, k, v, initial_state=init, output_final_state=True, **opts)
    g = hla.backward(q, k, v, do, initial_state=init, d_final_state=dfin, **opts)
    for e in (1, 2, 3, 1000):
        g1 = hla.backward(q, k, v, do, initial_state=init, d_final_state=dfin, checkpoint_every=e, **opts)
        ck = hla.new_checkpoints(q, k, v, checkpoint_every=e, **opts)
        o2, f2 = hla.forward(q, k, v, initial_state=init, output_final_state=True, checkpoints=ck,
                             checkpoint_every=e, **opts)
        g2 = hla.backward(q, k, v, do, initial_state=init, d_final_state=dfin, checkpoints=ck,
                          checkpoint_every=e, **opts)
        assert same(o, o2) and same(f.array, f2.array), e
        for name, want, a, b in zip(g._fields, g, g1, g2):
            assert same(want, a) and same(want, b), (e, name)


@pytest.mark.parametrize("op", ["hla2", "ahla", "hla3"])
@pytest.mark.parametrize("packed", [False, True], ids=["batch", "packed"])
def test_checkpoint_every_one(op, packed):
    """checkpoint_every=1: a checkpoint after every chunk (stride = chunk), each the state a forward over
    that prefix ends in; same outputs and gradients."""
    chunk, H, Hkv = 8, 4, 2
    B, T, cu = (2, 37, None) if not packed else (1, 60, np.array([0, 7, 8, 40, 60]))
    N = B if cu is None else len(cu) - 1
    q, k, v, do = inputs(op, B, T, H, Hkv, False, np.float64, "every-one")
    opts = dict(op=op, scale=DK ** -0.5, chunk_size=chunk, cu_seqlens=cu)
    init, dfin = states(op, N, H, Hkv, True, False, 0.0, np.float64)
    shape = dict(heads=H, kv_heads=Hkv, dk=DK, dv=DV, chunk_size=chunk, batch=B, tokens=T,
                 sequences=0 if cu is None else N)
    rows, stride = hla.checkpoint_rows(op, checkpoint_every=1, **shape)
    assert stride == chunk and stride < hla.checkpoint_rows(op, **shape)[1]
    assert rows == (B * ((T - 1) // chunk) if cu is None else (T - N) // chunk)
    ck = hla.new_checkpoints(q, k, v, checkpoint_every=1, **opts)
    assert ck.shape[0] == rows
    ck[:] = 7.0

    o1, f1 = hla.forward(q, k, v, initial_state=init, output_final_state=True, **opts)
    o2, f2 = hla.forward(q, k, v, initial_state=init, output_final_state=True, checkpoints=ck,
                         checkpoint_every=1, **opts)
    assert same(o1, o2) and same(f1.array, f2.array)
    check_rows(ck, stride, q, k, v, init, opts)
    g1 = hla.backward(q, k, v, do, initial_state=init, d_final_state=dfin, **opts)
    g2 = hla.backward(q, k, v, do, initial_state=init, d_final_state=dfin, checkpoints=ck,
                      checkpoint_every=1, **opts)
    for a, b in zip(g1, g2):
        assert same(a, b)


def test_checkpoint_every_rows():
    """stride = min(checkpoint_every, chunks) * chunk; 0 and None automatic (ceil(sqrt(5)) = 3 chunks)."""
    kw = dict(heads=2, dk=DK, dv=DV, chunk_size=8, batch=3, tokens=37)
    for e, stride in ((1, 8), (2, 16), (np.int64(3), 24), (4, 32), (5, 40), (1000, 40), (0, 24), (None, 24)):
        assert hla.checkpoint_rows(checkpoint_every=e, **kw) == (3 * (36 // stride), stride), e


def test_bad_checkpoint_every():
    q, k, v, do = inputs("hla2", 1, 20, 2, 2, False, np.float32, "bad-every")
    opts = dict(chunk_size=4)
    ck = hla.new_checkpoints(q, k, v, **opts)
    calls = (lambda e: hla.forward(q, k, v, checkpoint_every=e, **opts),
             lambda e: hla.forward(q, k, v, checkpoint_every=e, path="serial", **opts),
             lambda e: hla.forward(q, k, v, checkpoints=ck, checkpoint_every=e, **opts),
             lambda e: hla.backward(q, k, v, do, checkpoint_every=e, **opts),
             lambda e: hla.backward(q, k, v, do, checkpoints=ck, checkpoint_every=e, **opts),
             lambda e: hla.new_checkpoints(q, k, v, checkpoint_every=e, **opts),
             lambda e: hla.checkpoint_rows(heads=2, dk=DK, dv=DV, batch=1, tokens=20, checkpoint_every=e))
    for call in calls:
        with pytest.raises(ValueError, match="checkpoint_every = -1 must be >= 0") as info:
            call(-1)
        assert info.value.hla_status == "HLA_ERR_INVALID_ARGUMENT"
        for bad in (True, 1.5, "1"):
            with pytest.raises(TypeError, match="checkpoint_every must be an int"):
                call(bad)
    # checkpoints of the automatic plan are too few rows for checkpoint_every=1
    with pytest.raises(ValueError, match="checkpoints"):
        hla.forward(q, k, v, checkpoints=ck, checkpoint_every=1, **opts)
    with pytest.raises(ValueError, match="checkpoints"):
        hla.backward(q, k, v, do, checkpoints=ck, checkpoint_every=1, **opts)


@pytest.mark.parametrize("op", ["hla2", "ahla", "hla3"])
def test_checkpoints_are_used(op):
    """Changed checkpoint values change the gradients of the stretches after them (and only those):
    the backward really starts from them."""
    B, T, H = 1, 64, 2
    q, k, v, do = inputs(op, B, T, H, H, False, np.float64, "used")
    opts = dict(op=op, scale=DK ** -0.5, chunk_size=4)
    ck = hla.new_checkpoints(q, k, v, **opts)
    hla.forward(q, k, v, checkpoints=ck, **opts)
    _, stride = hla.checkpoint_rows(op, heads=H, dk=DK, dv=DV, chunk_size=4, batch=B, tokens=T)
    assert ck.shape[0] == (T - 1) // stride >= 2
    g = hla.backward(q, k, v, do, checkpoints=ck, **opts)
    ck[-1] *= 1.5
    g2 = hla.backward(q, k, v, do, checkpoints=ck, **opts)
    last = ck.shape[0] * stride
    assert np.array_equal(g.dq[:, :last], g2.dq[:, :last])
    assert not np.array_equal(g.dq[:, last:], g2.dq[:, last:])


def test_short_sequences_need_no_rows():
    q, k, v, do = inputs("hla2", 2, 3, 2, 2, False, np.float32, "short")
    ck = hla.new_checkpoints(q, k, v)
    assert ck.shape[0] == 0
    o, _ = hla.forward(q, k, v, checkpoints=ck)
    assert np.array_equal(o, hla.forward(q, k, v)[0])
    g = hla.backward(q, k, v, do, checkpoints=ck)
    assert all(np.array_equal(a, b) for a, b in zip(g[:3], hla.backward(q, k, v, do)[:3]))


def test_checkpoints_half_precision():
    ml = pytest.importorskip("ml_dtypes")
    q, k, v, do = inputs("hla3", 1, 50, 2, 1, False, np.float32, "half")
    q, k, v, do = (x.astype(ml.bfloat16) for x in (q, k, v, do))
    opts = dict(op="hla3", chunk_size=4, scale=DK ** -0.5)
    ck = hla.new_checkpoints(q, k, v, **opts)
    assert ck.dtype == np.float32 and ck.shape[0] > 0
    o1, _ = hla.forward(q, k, v, **opts)
    o2, _ = hla.forward(q, k, v, checkpoints=ck, **opts)
    assert same(o1, o2)
    g1, g2 = hla.backward(q, k, v, do, **opts), hla.backward(q, k, v, do, checkpoints=ck, **opts)
    assert all(same(a, b) for a, b in zip(g1[:3], g2[:3]))


def test_bad_checkpoints():
    q, k, v, do = inputs("ahla", 2, 40, 2, 2, False, np.float32, "bad")
    opts = dict(op="ahla", chunk_size=4)
    ck = hla.new_checkpoints(q, k, v, **opts)
    assert ck.shape[0] > 1
    for path in ("serial", "scan"):
        with pytest.raises(ValueError, match="chunked"):
            hla.forward(q, k, v, checkpoints=ck, path=path, **opts)
        with pytest.raises(ValueError, match="chunked"):
            hla.backward(q, k, v, do, checkpoints=ck, path=path, **opts)
    out = np.full_like(ck, 3.0)
    for bad, exc, words in ((ck[:-1], ValueError, "checkpoints"), (ck.astype(np.float64), TypeError, "checkpoints"),
                            (ck[:, :-1], ValueError, "checkpoints"), (np.zeros(5, np.float32), ValueError, "ndim")):
        with pytest.raises(exc, match=words):
            hla.forward(q, k, v, checkpoints=bad, **opts)
        with pytest.raises(exc, match=words):
            hla.backward(q, k, v, do, checkpoints=bad, **opts)
    with pytest.raises(ValueError, match="writable|read-only"):
        ro = ck.copy()
        ro.flags.writeable = False
        hla.forward(q, k, v, checkpoints=ro, **opts)
    assert np.all(out == 3.0)
    with pytest.raises(ValueError):
        hla.checkpoint_rows("hla2", heads=2, dk=4, dv=4, batch=2, tokens=10, sequences=3)
    with pytest.raises(ValueError):
        hla.checkpoint_rows("hla2", heads=2, dk=4, dv=4, batch=1, tokens=0)
    with pytest.raises(ValueError):
        hla.checkpoint_rows("hla2", heads=2, dk=4, dv=4, batch=1, tokens=5, sequences=6)


def test_torch_training_uses_checkpoints():
    torch = pytest.importorskip("torch")
    ht = pytest.importorskip("hla.torch")
    q, k, v, do = inputs("hla2", 1, 70, 4, 2, False, np.float64, "torch")
    qt, kt, vt = (torch.from_numpy(x.copy()).requires_grad_() for x in (q, k, v))
    opts = dict(op="hla2", chunk_size=4, scale=DK ** -0.5)
    o, _ = ht.forward(qt, kt, vt, **opts)
    assert o.grad_fn is not None and "forward_train" in o.grad_fn.name()
    o.backward(torch.from_numpy(do))
    g = hla.backward(q, k, v, do, **opts)
    for t, want in zip((qt, kt, vt), g[:3]):
        assert same(t.grad.numpy(), want)
    with torch.no_grad():
        o2, _ = ht.forward(qt, kt, vt, **opts)
    assert same(o2.numpy(), o.detach().numpy())
