"""Bad input raises ValueError / TypeError naming the argument; nothing crashes.

What the library detects carries its message (hla_last_error(), naming the function and the
argument) and the status name in the exception's hla_status: HLA_ERR_DTYPE is a TypeError,
HLA_ERR_OUT_OF_MEMORY a MemoryError, every other status a ValueError."""
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
    (dict(decay=True), TypeError, "decay"),
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
    (dict(normalize="yes"), TypeError, "normalize"),
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
    (dict(cu_seqlens=[0, 2, 5]), ValueError, "cu_seqlens"),          # B = 2
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


def arg(name):
    """A pattern matching the argument name as a word (q, not the q of 'eq')."""
    return r"\b%s\b" % name


@pytest.mark.parametrize("kw,exc,match", [
    (dict(q=q.tolist()), TypeError, arg("q")),
    (dict(k=None), TypeError, arg("k")),
    (dict(v=v.astype(np.int32)), TypeError, arg("v")),
    (dict(q=q.astype(np.float16)), TypeError, arg("k")),            # float16 q, float64 k: mixed
    (dict(q=q.astype(np.bool_)), TypeError, arg("q")),
    (dict(q=q.astype(np.uint16)), TypeError, arg("q")),
    (dict(q=q.astype(np.complex128)), TypeError, arg("q")),
    (dict(q=q.astype(np.longdouble)) if np.dtype(np.longdouble).itemsize not in (4, 8) else
     dict(q=q.astype(np.int64)), TypeError, arg("q")),
    (dict(k=k.astype(np.float32)), TypeError, arg("k")),            # mixed dtypes
    (dict(v=v.astype(np.float32)), TypeError, arg("v")),
    (dict(q=q[0]), ValueError, arg("q")),                           # wrong rank
    (dict(k=k[..., None]), ValueError, arg("k")),
    (dict(v=v[:, :, 0]), ValueError, arg("v")),
    (dict(q=q[:1]), ValueError, r"\bk\.shape = \[2,"),              # batch sizes differ
    (dict(k=k[:, :4]), ValueError, r"\bk\.shape = \[2, 4,"),         # sequence lengths differ
    (dict(v=v[:, :, :1]), ValueError, r"\bv\.shape"),                # kv heads differ
    (dict(k=k[..., :2]), ValueError, r"\bk\.shape"),                 # dk differs
    (dict(q=q[:, :, :3]), ValueError, "multiple"),                  # H % Hkv != 0
    (dict(q=q[:, :0], k=k[:, :0], v=v[:, :0]), ValueError, arg("q")),  # T = 0
    (dict(q=q[..., :0], k=k[..., :0]), ValueError, arg("q")),       # Dk = 0
    (dict(v=v[..., :0]), ValueError, arg("v")),                     # Dv = 0
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
                          (dict(normalize=True), "normalize"), (dict(batch=1), "rows"),
                          (dict(heads=2), "heads"), (dict(kv_heads=4), "kv_heads"),
                          (dict(dk=4), "dk"), (dict(dv=3), "dv"), (dict(decay=0.5), "decay"),
                          (dict(ridge=0.5), "ridge"), (dict(scale=2.0), "scale"),
                          (dict(eps=1e-3), "eps")):
        cfg = dict(batch=2, heads=4, kv_heads=2, dk=3, dv=2, dtype="float64")
        cfg.update(change)
        st = hla.State(**cfg)
        with pytest.raises(ValueError, match="initial.*" + match):
            fwd(initial_state=st)
        seg = hla.summarize(*make(cfg["batch"], 2, cfg["heads"], cfg["kv_heads"], cfg["dk"],
                                  cfg["dv"], 1),
                            **{n: x for n, x in change.items()
                               if n not in ("batch", "heads", "kv_heads", "dk", "dv")})
        with pytest.raises(ValueError, match="initial.*" + match):
            fwd(initial_state=seg)
    with pytest.raises(TypeError, match="initial"):
        fwd(initial_state=hla.State(batch=2, heads=4, kv_heads=2, dk=3, dv=2, dtype="float32"))
    with pytest.raises(TypeError, match="initial"):
        fwd(initial_state=hla.summarize(*(x.astype(np.float32) for x in (q, k, v))))
    # a state array: the library checks what it can see (dtype, rows, row length)
    n = good.array.shape[1]
    fwd(initial_state=np.zeros((2, n)))
    fwd(initial_state=np.zeros((5, n)))              # more rows than sequences: rows 0, 1 are read
    for bad, exc in ((np.zeros((1, n)), ValueError), (np.zeros((2, n + 1)), ValueError),
                     (np.zeros((2, n), np.float32), TypeError), (np.zeros(n), ValueError)):
        with pytest.raises(exc, match="initial"):
            fwd(initial_state=bad)


@pytest.mark.parametrize("kw,exc,match", [
    (dict(batch=0), ValueError, "batch"),
    (dict(heads=-1), ValueError, "heads"),
    (dict(dk=0), ValueError, "dk"),
    (dict(dv=0), ValueError, "dv"),
    (dict(kv_heads=3), ValueError, "kv_heads"),
    (dict(kv_heads=0), ValueError, "kv_heads"),
    (dict(kv_heads=-2), ValueError, "kv_heads"),
    (dict(batch=1.5), TypeError, "batch"),
    (dict(batch=True), TypeError, "batch"),
    (dict(heads=2.0), TypeError, "heads"),
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
    """Errors detected by the library itself carry hla_last_error() (naming the function) as their
    message and the status name as hla_status; the exception type follows the status only."""
    with pytest.raises(ValueError, match="^hla_state_deserialize: ") as e:
        hla.State.from_bytes(b"garbage")
    assert e.value.hla_status == "HLA_ERR_CORRUPT"
    with pytest.raises(TypeError, match="^hla_forward: k.dtype") as e:
        fwd(k=k.astype(np.float32))
    assert e.value.hla_status == "HLA_ERR_DTYPE"
    with pytest.raises(ValueError, match="^hla_forward: k.shape") as e:
        fwd(k=k[:, :4])
    assert e.value.hla_status == "HLA_ERR_MISMATCH"
    with pytest.raises(ValueError, match="^hla_forward: config.decay") as e:
        fwd(decay=2.0)
    assert e.value.hla_status == "HLA_ERR_INVALID_ARGUMENT"
    with pytest.raises(ValueError) as e:                  # a stride extent that overflows
        fwd(q=np.lib.stride_tricks.as_strided(q, shape=(2, 5, 4, 3),
                                              strides=(2 ** 62, 8, 8, 8)))
    assert e.value.hla_status == "HLA_ERR_OVERFLOW"


def test_errors_of_rows_and_cu_seqlens():
    """rows and cu_seqlens are checked by the library before anything is written."""
    st = hla.State(batch=3, heads=4, kv_heads=2, dk=3, dv=2, dtype="float64")
    st.prefill(q[:1], k[:1], v[:1], rows=[2])
    held = st.array.copy()
    for rows, exc in (([0, 3], ValueError), ([1, 1], ValueError), ([-1, 0], ValueError),
                      ([0], ValueError), ([[0, 1]], ValueError), (np.array([0.0, 1.0]), TypeError),
                      ("01", TypeError)):
        with pytest.raises(exc, match="rows"):
            st.prefill(q, k, v, rows=rows)
        with pytest.raises(exc, match="rows"):
            st.step(q[:, 0], k[:, 0], v[:, 0], rows=rows)
    for cu, exc in (([0, 2, 2, 5], ValueError), ([0, 6], ValueError), ([1, 5], ValueError),
                    ([0, 3, 2, 5], ValueError), ([5], ValueError), ([], ValueError),
                    (np.array([0, 5], np.uint8), TypeError), (np.array([0.0, 5.0]), TypeError)):
        with pytest.raises(exc, match="cu_seqlens"):
            hla.forward(q[:1], k[:1], v[:1], cu_seqlens=cu)
        with pytest.raises(exc, match="cu_seqlens"):
            st.prefill(q[:1], k[:1], v[:1], cu_seqlens=cu)
    with pytest.raises(ValueError, match="src_rows"):
        st.copy_rows([3], [0])
    with pytest.raises(ValueError, match="rows"):
        st.copy_rows([0, 1], [2, 2])
    with pytest.raises(ValueError, match="rows"):
        st.copy_rows([0], [3])
    with pytest.raises(ValueError, match="rows"):
        st.reset(rows=[5])
    np.testing.assert_array_equal(st.array, held)


@pytest.mark.parametrize("dst", [[2, 2], [3, 0]])
def test_bad_dst_rows_are_named(dst):
    st = hla.State(batch=3, heads=1, dk=2, dv=2)
    with pytest.raises(ValueError, match="dst_rows"):
        st.copy_rows([0, 1], dst)
