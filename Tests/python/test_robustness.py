"""Reference counts and memory do not leak through the binding; extreme inputs fail cleanly."""
import gc
import resource
import sys

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
        hla.combine(seg, seg)
        hla.state_from_segment(seg)
        st.step(q[:, 0], k[:, 0], v[:, 0])
        st.copy()
        st.to_bytes()
        seg.to_bytes()
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
    del o, fin
    gc.collect()
    assert [sys.getrefcount(x) for x in objs] == before


def test_no_memory_leak_of_handles():
    """~2000 states, segments and serializations of 0.4 MB each: a leaked handle or buffer
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
