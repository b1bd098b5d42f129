"""Bad input raises ValueError / TypeError naming the argument; nothing crashes."""
import math

import numpy as np
import pytest

import hla
from common import OPS, make

q, k, v = make(2, 5, 4, 2, 3, 2, 0)


def fwd(**kw):
    args = dict(q=q, k=k, v=v)
    args.update({name: kw.pop(name) for name in ("q", "k", "v") if name in kw})
    return hla.forward(args["q"], args["k"], args["v"], **kw)


ENTRY_POINTS = {
    "forward": lambda *a, **kw: hla.forward(*a, **kw),
    "reference": lambda *a, **kw: hla.reference(*a, **kw),
    "summarize": lambda *a, **kw: hla.summarize(*a, **kw),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("kw,exc,match", [
    (dict(decay=0.0), ValueError, "decay"),
    (dict(decay=-0.5), ValueError, "decay"),
    (dict(decay=1.0000001), ValueError, "decay"),
    (dict(decay=math.nan), ValueError, "decay"),
    (dict(decay=math.inf), ValueError, "decay"),
    (dict(decay="0.9"), TypeError, "decay"),
    (dict(decay=None), TypeError, "decay"),
    (dict(eps=0.0), ValueError, "eps"),
    (dict(eps=-1e-6), ValueError, "eps"),
    (dict(eps=math.nan), ValueError, "eps"),
    (dict(eps=math.inf), ValueError, "eps"),
    (dict(ridge=-0.1), ValueError, "ridge"),
    (dict(ridge=math.nan), ValueError, "ridge"),
    (dict(ridge=math.inf), ValueError, "ridge"),
    (dict(ridge=0.1, op="ahla"), ValueError, "ridge"),
    (dict(ridge=0.1, op="hla3"), ValueError, "ridge"),
    (dict(scale=math.nan), ValueError, "scale"),
    (dict(scale=-math.inf), ValueError, "scale"),
    (dict(op="hla4"), ValueError, "op"),
    (dict(op="HLA2"), ValueError, "op"),
    (dict(op=2), TypeError, "op"),
    (dict(masked=np.ones(3)), TypeError, "masked"),
])
def test_bad_options(entry, kw, exc, match):
    with pytest.raises(exc, match=match):
        ENTRY_POINTS[entry](q, k, v, **kw)


@pytest.mark.parametrize("kw,exc,match", [
    (dict(path="parallel"), ValueError, "path"),
    (dict(path=None), TypeError, "path"),
    (dict(chunk_size=-1), ValueError, "chunk_size"),
    (dict(chunk_size=2.0), TypeError, "chunk_size"),
    (dict(chunk_size="8"), TypeError, "chunk_size"),
    (dict(chunk_size=2 ** 70), ValueError, "chunk_size"),
    (dict(initial_state=object()), TypeError, "initial_state"),
    (dict(initial_state=b"bytes"), TypeError, "initial_state"),
])
def test_bad_forward_options(kw, exc, match):
    with pytest.raises(exc, match=match):
        fwd(**kw)


def test_unknown_keyword():
    with pytest.raises(TypeError):
        hla.forward(q, k, v, gamma=0.9)
    with pytest.raises(TypeError):
        hla.forward(q, k, v, "hla2")          # options are keyword-only


@pytest.mark.parametrize("kw,exc,match", [
    (dict(q=q.tolist()), TypeError, "q"),
    (dict(k=None), TypeError, "k"),
    (dict(v=v.astype(np.int32)), TypeError, "v"),
    (dict(q=q.astype(np.float16)), TypeError, "q"),
    (dict(q=q.astype(np.complex128)), TypeError, "q"),
    (dict(q=q.astype(np.longdouble)) if np.dtype(np.longdouble).itemsize not in (4, 8) else
     dict(q=q.astype(np.int64)), TypeError, "q"),
    (dict(k=k.astype(np.float32)), TypeError, "k"),                 # mixed dtypes
    (dict(v=v.astype(np.float32)), TypeError, "v"),
    (dict(q=q[0]), ValueError, "q"),                                # wrong rank
    (dict(k=k[..., None]), ValueError, "k"),
    (dict(v=v[:, :, 0]), ValueError, "v"),
    (dict(q=q[:1]), ValueError, "batch"),                           # shape mismatches
    (dict(k=k[:, :4]), ValueError, "sequence"),
    (dict(v=v[:, :, :1]), ValueError, "heads"),
    (dict(k=k[..., :2]), ValueError, "q.shape\\[3\\]"),
    (dict(q=q[:, :, :3]), ValueError, "multiple"),                  # H % Hkv != 0
    (dict(q=q[:, :0], k=k[:, :0], v=v[:, :0]), ValueError, "q"),    # T = 0
    (dict(q=q[..., :0], k=k[..., :0]), ValueError, "q"),            # Dk = 0
    (dict(v=v[..., :0]), ValueError, "v"),                          # Dv = 0
])
def test_bad_tensors(kw, exc, match):
    for name, entry in ENTRY_POINTS.items():
        args = dict(q=q, k=k, v=v)
        args.update(kw)
        with pytest.raises(exc, match=match):
            entry(args["q"], args["k"], args["v"])


def test_initial_state_of_another_configuration():
    good = hla.State(batch=2, heads=4, kv_heads=2, dk=3, dv=2, dtype="float64")
    fwd(initial_state=good)
    for change, match in ((dict(op="ahla"), "op"), (dict(masked=False), "masked"),
                          (dict(normalize=True), "normalize"), (dict(batch=1), "batch"),
                          (dict(heads=2), "heads"), (dict(kv_heads=4), "kv_heads"),
                          (dict(dk=4), "dk"), (dict(dv=3), "dv"), (dict(decay=0.5), "decay"),
                          (dict(ridge=0.5), "ridge"), (dict(scale=2.0), "scale"),
                          (dict(eps=1e-3), "eps")):
        cfg = dict(batch=2, heads=4, kv_heads=2, dk=3, dv=2, dtype="float64")
        cfg.update(change)
        st = hla.State(**cfg)
        with pytest.raises(ValueError, match="initial_state.*" + match):
            fwd(initial_state=st)
        seg = hla.summarize(*make(cfg["batch"], 2, cfg["heads"], cfg["kv_heads"], cfg["dk"],
                                  cfg["dv"], 1),
                            **{n: x for n, x in change.items()
                               if n not in ("batch", "heads", "kv_heads", "dk", "dv")})
        with pytest.raises(ValueError, match="initial_state"):
            fwd(initial_state=seg)
    with pytest.raises(TypeError, match="initial_state"):
        fwd(initial_state=hla.State(batch=2, heads=4, kv_heads=2, dk=3, dv=2, dtype="float32"))
    with pytest.raises(TypeError, match="initial_state"):
        fwd(initial_state=hla.summarize(*(x.astype(np.float32) for x in (q, k, v))))


@pytest.mark.parametrize("kw,exc,match", [
    (dict(batch=0), ValueError, "batch"),
    (dict(heads=-1), ValueError, "heads"),
    (dict(dk=0), ValueError, "dk"),
    (dict(dv=0), ValueError, "dv"),
    (dict(kv_heads=3), ValueError, "kv_heads"),
    (dict(kv_heads=0), ValueError, "kv_heads"),
    (dict(batch=1.5), TypeError, "batch"),
    (dict(dk="3"), TypeError, "dk"),
    (dict(dtype="float16"), TypeError, "dtype"),
    (dict(dtype="int32"), TypeError, "dtype"),
    (dict(dtype="nonsense"), TypeError, "dtype"),
    (dict(op="x"), ValueError, "op"),
    (dict(decay=2.0), ValueError, "decay"),
    (dict(decay=math.nan), ValueError, "decay"),
    (dict(eps=0.0), ValueError, "eps"),
    (dict(ridge=-1.0), ValueError, "ridge"),
    (dict(ridge=1.0, op="hla3"), ValueError, "ridge"),
    (dict(scale=math.inf), ValueError, "scale"),
])
def test_bad_state_arguments(kw, exc, match):
    cfg = dict(batch=1, heads=2, dk=3, dv=4)
    cfg.update(kw)
    with pytest.raises(exc, match=match):
        hla.State(**cfg)


def test_state_missing_arguments():
    with pytest.raises(TypeError, match="batch"):
        hla.State(heads=1, dk=1, dv=1)
    with pytest.raises(TypeError, match="dv"):
        hla.State(batch=1, heads=1, dk=1)
    with pytest.raises(TypeError):
        hla.State("hla2", 1, 1, 1, 1)          # shape arguments are keyword-only


def test_huge_state_is_an_error_not_a_crash():
    with pytest.raises((ValueError, MemoryError)):
        hla.State(batch=2 ** 40, heads=2 ** 20, dk=2 ** 20, dv=2 ** 20)
    with pytest.raises((ValueError, MemoryError)):
        hla.State(batch=2 ** 62, heads=2 ** 62, dk=1, dv=1)


def small_state(op="hla2", dtype="float64"):
    st = hla.State(op, batch=1, heads=1, dk=2, dv=2, decay=0.9, dtype=dtype)
    st.step(*(np.full((1, 1, 2), x, dtype=dtype) for x in (0.5, -1.0, 2.0)))
    return st


@pytest.mark.parametrize("op", OPS)
def test_truncated_bytes_rejected(op):
    seg = hla.summarize(*make(1, 3, 1, 1, 2, 2, 4), op=op, decay=0.9)
    for obj, cls in ((small_state(op), hla.State), (seg, hla.Segment)):
        b = obj.to_bytes()
        for n in range(len(b)):
            with pytest.raises(ValueError):
                cls.from_bytes(b[:n])
        with pytest.raises(ValueError):
            cls.from_bytes(b + b"\0")
        cls.from_bytes(b)


@pytest.mark.parametrize("op", OPS)
def test_flipped_bytes_rejected(op):
    seg = hla.summarize(*make(1, 3, 1, 1, 2, 2, 4), op=op, decay=0.9)
    for obj, cls in ((small_state(op), hla.State), (seg, hla.Segment)):
        b = obj.to_bytes()
        for i in range(len(b)):
            for mask in (0x01, 0x80, 0xFF):
                bad = bytearray(b)
                bad[i] ^= mask
                with pytest.raises(ValueError):
                    cls.from_bytes(bytes(bad))


def test_foreign_bytes_rejected():
    st = small_state()
    seg = hla.summarize(*make(1, 3, 1, 1, 2, 2, 4))
    with pytest.raises(ValueError):
        hla.State.from_bytes(seg.to_bytes())       # a segment is not a state
    with pytest.raises(ValueError):
        hla.Segment.from_bytes(st.to_bytes())
    for junk in (b"", b"\0" * 4096, bytes(range(256)) * 4, st.to_bytes()[::-1]):
        with pytest.raises(ValueError):
            hla.State.from_bytes(junk)
        with pytest.raises(ValueError):
            hla.Segment.from_bytes(junk)
    with pytest.raises(TypeError):
        hla.State.from_bytes("not bytes")
    with pytest.raises(TypeError):
        hla.State.from_bytes(12)


def test_library_message_is_propagated():
    """Errors detected by the library itself carry hla_last_error() and the status name."""
    with pytest.raises(ValueError, match="HLA_ERR_CORRUPT"):
        hla.State.from_bytes(b"garbage")
