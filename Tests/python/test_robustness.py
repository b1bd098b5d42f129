"""Reference counts and memory do not leak through the binding (numpy arrays, DLPack capsules of
both protocols, states, segments); extreme inputs fail cleanly."""
import gc
import resource
import sys
import weakref

import numpy as np
import pytest

import hla
from common import OPS, make


def test_no_reference_leaks():
    q, k, v = make(2, 9, 4, 2, 3, 5, 0)
    st = hla.State(batch=2, heads=4, kv_heads=2, dk=3, dv=5, dtype="float64")
    seg = hla.summarize(q, k, v)
    objs = (q, k, v, st, seg)
    gc.collect()
    before = [sys.getrefcount(x) for x in objs]
    for _ in range(50):
        for path in ("chunked", "serial", "scan"):
            o, fin = hla.forward(q, k, v, path=path, initial_state=st, output_final_state=True)
            hla.forward(q, k, v, path=path, initial_state=seg)
        hla.reference(q, k, v)
        hla.forward(q, k, v, initial_state=st.array)
        hla.combine(seg, seg)
        hla.state_from_segment(seg)
        st.step(q[:, 0], k[:, 0], v[:, 0])
        st.step(q[:, 0], k[:, 0], v[:, 0], rows=[1, 0])
        st.prefill(q, k, v)
        st.reset(rows=[0])
        st.copy_rows([1], [0])
        st.copy()
        st.to_bytes()
        seg.to_bytes()
        hla.State.from_bytes(st.to_bytes())
        hla.Segment.from_bytes(seg.to_bytes())
        for bad in (dict(decay=2.0), dict(op="x"), dict(initial_state=1), dict(path="?")):
            with pytest.raises((TypeError, ValueError)):
                hla.forward(q, k, v, **bad)
        with pytest.raises(TypeError):
            hla.forward(q, k.astype(np.float32), v)
        with pytest.raises(ValueError):
            hla.forward(q, k[:, :3], v)
        with pytest.raises(TypeError):
            hla.forward(q, k, v, initial_state=hla.State(batch=2, heads=4, kv_heads=2, dk=3, dv=5))
        with pytest.raises(ValueError):
            hla.State.from_bytes(b"junk")
        with pytest.raises(TypeError):
            st.step(q[:, 0].astype(np.float32), k[:, 0], v[:, 0])
        with pytest.raises(ValueError):
            st.step(q[:, 0], k[:, 0], v[:, 0], rows=[0, 0])
        with pytest.raises(TypeError):
            hla.forward(q, k, v, cu_seqlens="x")
    del o, fin
    gc.collect()
    assert [sys.getrefcount(x) for x in objs] == before


class Producer:
    """A DLPack producer over a numpy array. legacy=True speaks the unversioned protocol only
    (__dlpack__() without max_version, a "dltensor" capsule); otherwise numpy's own __dlpack__ is
    asked for max_version (1, 0) and returns a "dltensor_versioned" capsule."""

    def __init__(self, a, legacy):
        self.a, self.legacy, self.calls = a, legacy, 0

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        self.calls += 1
        if self.legacy:
            if max_version is not None:
                raise TypeError("unexpected keyword argument 'max_version'")
            return self.a.__dlpack__()
        return self.a.__dlpack__(max_version=max_version)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()

    @property
    def shape(self):
        return self.a.shape

    @property
    def dtype(self):
        return self.a.dtype


@pytest.mark.parametrize("legacy", [False, True], ids=["dltensor_versioned", "dltensor"])
def test_dlpack_capsules_are_released(legacy):
    """Arrays passed through DLPack (either capsule protocol) are used in place and released: the
    capsule's deleter runs once per call (numpy's drops its reference to the array), for inputs,
    outputs, states and rows, and on failed calls too."""
    q, k, v = make(1, 6, 2, 1, 3, 2, 5)
    want, fin = hla.forward(q, k, v, output_final_state=True, decay=0.9)
    st = hla.State(batch=1, heads=2, kv_heads=1, dk=3, dv=2, dtype="float64", decay=0.9)
    rows = np.array([0], np.int64)
    objs = (q, k, v, st.array, rows)
    gc.collect()
    before = [sys.getrefcount(x) for x in objs]
    wq, wk, wv, wrows = (Producer(x, legacy) for x in (q, k, v, rows))
    for _ in range(20):
        o, _ = hla.forward(wq, wk, wv, decay=0.9)
        assert isinstance(o, np.ndarray)                 # other DLPack producers: numpy out
        np.testing.assert_array_equal(o, want)
        st.reset()
        o2 = st.prefill(wq, wk, wv, rows=wrows)
        np.testing.assert_array_equal(o2, want)
        np.testing.assert_array_equal(st.array, fin.array)
        o3, _ = hla.forward(wq, wk, wv, decay=0.9, initial_state=Producer(st.array, legacy))
        with pytest.raises(ValueError):
            hla.forward(wq, Producer(k[:, :3], legacy), wv, decay=0.9)
        with pytest.raises(TypeError):
            hla.forward(wq, wk, Producer(v.astype(np.float32), legacy), decay=0.9)
    assert wq.calls == (200 if legacy else 100)       # legacy: refuses max_version, then exports
    del o, o2, o3, wq, wk, wv, wrows
    gc.collect()
    assert [sys.getrefcount(x) for x in objs] == before


def test_dlpack_refusals():
    """Read-only DLPack memory is not written; a device other than the CPU, a failing __dlpack__ and
    a non-capsule result are errors naming the argument."""
    q, k, v = make(1, 3, 1, 1, 2, 2, 6)

    class Custom:
        def __init__(self, result):
            self.result = result

        def __dlpack__(self, **kw):
            if isinstance(self.result, Exception):
                raise self.result
            return self.result

    with pytest.raises(TypeError, match=r"\bk\b.*boom"):
        hla.forward(q, Custom(RuntimeError("boom")), v)
    with pytest.raises(TypeError, match=r"\bv\b"):
        hla.forward(q, k, Custom(42))
    ro = np.zeros((1, hla.state_elements(heads=1, dk=2, dv=2)))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        hla.State.wrap(ro, heads=1, dk=2, dv=2)
    with pytest.raises(ValueError, match="read-only"):
        hla.State.wrap(Producer(ro, False), heads=1, dk=2, dv=2)
    # a versioned capsule of a read-only array carries the read-only flag: the extension does not
    # write through it (the output argument of the extension's forward)
    out = np.zeros((1, 3, 1, 2))
    out.flags.writeable = False
    cfg = hla._state.make_config(heads=1, dk=2, dv=2)
    with pytest.raises(ValueError, match="output is read-only"):
        hla._hla.forward(cfg, "chunked", q, k, v, Producer(out, False), None, None, None, None)
    with pytest.raises(ValueError, match="output is read-only"):
        hla._hla.forward(cfg, "chunked", q, k, v, out, None, None, None, None)
    hla._hla.forward(cfg, "chunked", q, k, v, Producer(np.zeros((1, 3, 1, 2)), False), None, None,
                     None, None)


def test_array_lifetime():
    """Arrays, not handles, carry the lifetimes now: a State owns the memory it wraps exactly as long
    as it lives, the extension keeps no reference to any argument after a call (inputs, outputs,
    states, DLPack producers), and results outlive everything they came from."""
    q, k, v = make(1, 4, 1, 1, 2, 2, 8)
    want, _ = hla.forward(q, k, v)
    n = hla.state_elements(heads=1, dk=2, dv=2)
    buf = np.zeros((1, n))
    ref = weakref.ref(buf)
    st = hla.State.wrap(buf, heads=1, dk=2, dv=2)
    del buf
    gc.collect()
    assert ref() is not None                           # the State keeps its memory alive
    o = st.prefill(q, k, v)
    np.testing.assert_array_equal(o, want)
    del st
    gc.collect()
    assert ref() is None                               # ... and nothing else does
    inputs = [x.copy() for x in (q, k, v)]
    refs = [weakref.ref(x) for x in inputs] + [weakref.ref(Producer(q.copy(), False))]
    producer = Producer(q.copy(), False)
    refs.append(weakref.ref(producer))
    o, fin = hla.forward(*inputs, output_final_state=True)
    o2, _ = hla.forward(producer, k, v)
    seg = hla.summarize(*inputs)
    del inputs, producer
    gc.collect()
    assert all(r() is None for r in refs)
    np.testing.assert_array_equal(o, want)
    np.testing.assert_array_equal(o2, want)
    assert seg.length.tolist() == [4] and fin.array.any()


def test_no_memory_leak_of_arrays():
    """~2000 states, segments and serializations of 0.4 MB each: a leaked array, capsule or buffer
    would add hundreds of MB to the resident set."""
    q, k, v = make(1, 4, 4, 4, 64, 64, 1)
    def churn(n):
        for _ in range(n):
            st = hla.State(batch=1, heads=4, dk=64, dv=64, dtype="float64")
            st.step(q[:, 0], k[:, 0], v[:, 0])
            hla.State.from_bytes(st.to_bytes()).copy()
            _, fin = hla.forward(q, k, v, initial_state=st, output_final_state=True)
            seg = hla.summarize(q, k, v)
            hla.state_from_segment(hla.combine(seg, seg))
    churn(50)
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss      # KiB on Linux
    churn(400)
    gc.collect()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < 100 * 1024, "resident set grew by %d KiB" % grown


def test_output_too_big_is_an_exception():
    """A zero-stride view can claim an enormous T; the output allocation fails cleanly."""
    q, k, v = (np.broadcast_to(x, (1, 2 ** 45) + x.shape[2:]) for x in make(1, 1, 1, 1, 2, 2, 2))
    for fn in (hla.forward, hla.reference):
        with pytest.raises((MemoryError, ValueError)):
            fn(q, k, v)


@pytest.mark.parametrize("op", OPS)
def test_nonfinite_inputs_do_not_crash(op):
    q, k, v = make(1, 6, 2, 1, 3, 3, 3)
    q[0, 2, 0, 1] = np.nan
    k[0, 3, 0, 0] = np.inf
    for path in ("chunked", "serial", "scan"):
        o, st = hla.forward(q, k, v, op=op, path=path, output_final_state=True)
        assert o.shape == (1, 6, 2, 3)     # values unspecified (dense chunks spread nan)
    hla.reference(q, k, v, op=op)
    st.to_bytes()


def test_large_scale_and_tiny_eps_do_not_crash():
    q, k, v = make(1, 5, 1, 1, 2, 2, 4)
    o, _ = hla.forward(q, k, v, scale=1e200, normalize=True, eps=1e-300)
    assert o.shape == (1, 5, 1, 2)
    o, _ = hla.forward(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32),
                       op="hla3", scale=1e30)
    assert o.dtype == np.float32
