"""out=: outputs written into the caller's buffer (hla.forward, State.step on both of its paths,
State.prefill). The buffer receives exactly what the allocating call returns and is returned itself;
buffers that share memory with an input or the state, read-only ones, wrong shapes or dtypes and immutable
(JAX) or autograd-tracked (torch) arrays are refused before anything is written."""
import sys

import numpy as np
import pytest

import hla
from common import OPS, cast, make

B, T, H, HKV, DK, DV = 2, 37, 4, 2, 16, 12


def opts(op):
    return dict(op=op, masked=True, normalize=op == "ahla", decay=0.9, scale=DK ** -0.5)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("path", ["chunked", "serial", "scan"])
def test_forward_out_is_the_result(op, path):
    q, k, v = cast(make(B, T, H, HKV, DK, DV, 11), np.float32)
    want, _ = hla.forward(q, k, v, path=path, chunk_size=8, **opts(op))
    buf = np.full((B, T, H, DV), np.nan, np.float32)
    got, final = hla.forward(q, k, v, path=path, chunk_size=8, out=buf, output_final_state=True, **opts(op))
    assert got is buf
    np.testing.assert_array_equal(buf, want)
    # the same buffer again (a loop reusing it): the same bits, nothing left from the previous call
    got2, _ = hla.forward(q, k, v, path=path, chunk_size=8, out=buf, **opts(op))
    assert got2 is buf
    np.testing.assert_array_equal(buf, want)


@pytest.mark.parametrize("op", OPS)
def test_step_out_both_paths(op):
    q, k, v = cast(make(3, 6, H, HKV, DK, DV, 12), np.float32)
    a = hla.State(batch=3, heads=H, kv_heads=HKV, dk=DK, dv=DV, **opts(op))
    b = hla.State(batch=3, heads=H, kv_heads=HKV, dk=DK, dv=DV, **opts(op))
    c = hla.State(batch=3, heads=H, kv_heads=HKV, dk=DK, dv=DV, **opts(op))
    buf = np.empty((3, H, DV), np.float32)
    rbuf = np.empty((2, H, DV), np.float32)
    for t in range(6):
        want = a.step(q[:, t], k[:, t], v[:, t])
        got = b.step(q[:, t], k[:, t], v[:, t], out=buf)            # numpy fast path
        assert got is buf
        np.testing.assert_array_equal(buf, want)
        got = c.step(q[1:, t], k[1:, t], v[1:, t], rows=[1, 2], out=rbuf)   # rows: the general path
        assert got is rbuf
        np.testing.assert_array_equal(rbuf, want[1:])
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_array_equal(a.array[1:], c.array[1:])


def test_prefill_out():
    q, k, v = cast(make(B, T, H, HKV, DK, DV, 13), np.float32)
    a = hla.State(batch=B, heads=H, kv_heads=HKV, dk=DK, dv=DV, **opts("hla3"))
    b = hla.State(batch=B, heads=H, kv_heads=HKV, dk=DK, dv=DV, **opts("hla3"))
    buf = np.empty((B, T, H, DV), np.float32)
    want = a.prefill(q, k, v)
    assert b.prefill(q, k, v, out=buf) is buf
    np.testing.assert_array_equal(buf, want)
    np.testing.assert_array_equal(a.array, b.array)


def test_out_sharing_memory_is_refused():
    q, k, v = cast(make(B, T, H, HKV, DK, DK, 14), np.float32)
    cfg = dict(op="hla2", scale=DK ** -0.5)
    with pytest.raises(ValueError, match="shares memory with q"):
        hla.forward(q, k, v, out=q, **cfg)
    # a view that overlaps v only partly (v's last head is out's first)
    big = np.zeros((B, T, H + HKV - 1, DK), np.float32)
    big[:, :, :HKV] = v
    vv = big[:, :, :HKV]
    with pytest.raises(ValueError, match="shares memory with v"):
        hla.forward(q, k, vv, out=big[:, :, HKV - 1:], **cfg)
    # the state: a step's output inside the state row, a prefill's output over the state
    st = hla.State(batch=1, heads=H, kv_heads=HKV, dk=DK, dv=DK, **cfg)
    before = st.array.copy()
    with pytest.raises(ValueError, match="shares memory with state"):
        st.step(q[:1, 0], k[:1, 0], v[:1, 0], out=st.array[0, :H * DK].reshape(1, H, DK))
    with pytest.raises(ValueError, match="shares memory with q_t"):
        st.step(q[:1, 0], k[:1, 0], v[:1, 0], out=q[:1, 0])
    np.testing.assert_array_equal(st.array, before)      # refused before anything ran
    st2 = hla.State(batch=B, heads=H, kv_heads=HKV, dk=DK, dv=DK, **cfg)
    q4, k4, v4 = q[:, :4], k[:, :4], v[:, :4]
    over = st2.array.reshape(-1)[:B * 4 * H * DK].reshape(B, 4, H, DK)
    with pytest.raises(ValueError, match="shares memory with initial_state"):
        st2.prefill(q4, k4, v4, out=over)
    assert not st2.array.any()


def test_out_bad_buffers_are_refused():
    q, k, v = cast(make(B, T, H, HKV, DK, DV, 15), np.float32)
    cfg = opts("ahla")
    with pytest.raises(TypeError, match="dtype"):
        hla.forward(q, k, v, out=np.empty((B, T, H, DV), np.float64), **cfg)
    with pytest.raises(ValueError, match="shape"):
        hla.forward(q, k, v, out=np.empty((B, T, H, DV + 1), np.float32), **cfg)
    ro = np.zeros((B, T, H, DV), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        hla.forward(q, k, v, out=ro, **cfg)
    assert not ro.any()
    with pytest.raises(TypeError, match="must be an array"):
        hla.forward(q, k, v, out=[0.0], **cfg)
    st = hla.State(batch=B, heads=H, kv_heads=HKV, dk=DK, dv=DV, **cfg)
    with pytest.raises(ValueError, match="shape"):
        st.step(q[:, 0], k[:, 0], v[:, 0], out=np.empty((B, H, DV + 1), np.float32))
    assert not st.array.any()


def test_out_torch():
    torch = pytest.importorskip("torch")
    q, k, v = cast(make(B, T, H, HKV, DK, DV, 16), np.float32)
    tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
    want, _ = hla.forward(tq, tk, tv, **opts("hla2"))
    buf = torch.empty((B, T, H, DV))
    got, _ = hla.forward(tq, tk, tv, out=buf, **opts("hla2"))
    assert got is buf
    assert torch.equal(buf, want)
    with pytest.raises(ValueError, match="shares memory with q"):
        hla.forward(tq, tk, tv, out=tq[..., :DV], **opts("hla2"))
    with pytest.raises(ValueError, match="requires grad"):
        hla.forward(tq, tk, tv, out=torch.empty((B, T, H, DV), requires_grad=True), **opts("hla2"))
    st = hla.State(batch=B, heads=H, kv_heads=HKV, dk=DK, dv=DV, **opts("hla2"))
    ob = torch.empty((B, H, DV))
    assert st.step(tq[:, 0], tk[:, 0], tv[:, 0], out=ob) is ob


def test_out_jax_refused():
    if "jax" not in sys.modules:
        pytest.importorskip("jax")
    import jax.numpy as jnp
    q, k, v = cast(make(B, T, H, HKV, DK, DV, 17), np.float32)
    with pytest.raises(TypeError, match="immutable"):
        hla.forward(q, k, v, out=jnp.zeros((B, T, H, DV), jnp.float32), **opts("hla2"))
