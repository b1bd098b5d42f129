"""JAX arrays through the Python API 1.0 (SPEC section 5): float32, float64 (jax_enable_x64), bfloat16
and float16 arrays into hla.forward (every operator, every path), hla.reference, hla.summarize and
State.step/prefill. Outputs are jax Arrays of q's dtype; the exactness of SPEC section 4 holds against
the float64 brute force (bruteforce.py) of the same rounded inputs."""
import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

import hla  # noqa: E402
from framework_util import (DTYPE_NAMES, OPS, PATHS, brute, brute_packed, check,  # noqa: E402
                            config_kwargs, draw, element_kwargs, opts_id, options, seed_of,
                            state_dtype_name, variants)

B, T, H, HKV, DK, DV = 2, 17, 4, 2, 8, 6
CHUNK = 4                          # 17 = 4 * 4 + 1
JAX = {"float32": jnp.float32, "float64": jnp.float64, "bfloat16": jnp.bfloat16,
       "float16": jnp.float16}


def to_jax(x64, name):
    out = jnp.asarray(np.asarray(x64, dtype=np.float64)).astype(JAX[name])
    assert out.dtype == JAX[name], (out.dtype, name)   # float64 needs jax_enable_x64
    return out


def to64(a):
    return np.asarray(a).astype(np.float64)


def inputs(seed, name, b=B, n=T):
    arrays = tuple(to_jax(x, name) for x in draw(b, n, H, HKV, DK, DV, seed))
    return arrays, tuple(to64(x) for x in arrays)


def assert_jax_out(o, name, shape):
    assert isinstance(o, jax.Array), type(o)
    assert o.dtype == JAX[name], (o.dtype, name)
    assert tuple(o.shape) == shape, (tuple(o.shape), shape)


def new_state(opts, name, batch=B):
    return hla.State(batch=batch, dtype=state_dtype_name(name), **config_kwargs(opts, H, HKV, DK, DV))


@pytest.mark.parametrize("name", DTYPE_NAMES)
@pytest.mark.parametrize("op", OPS)
def test_forward_and_reference(op, name):
    (q, k, v), (q64, k64, v64) = inputs(seed_of("jax", op, name), name)
    for opts in variants(op, DK):
        want, kappa = brute(q64, k64, v64, **opts)
        for path in PATHS:
            o, final = hla.forward(q, k, v, path=path, chunk_size=CHUNK, **opts)
            assert final is None
            assert_jax_out(o, name, (B, T, H, DV))
            check(to64(o), want, name, kappa, "%s %s %s" % (op, path, opts_id(opts)))
        o = hla.reference(q, k, v, **opts)
        assert_jax_out(o, name, (B, T, H, DV))
        check(to64(o), want, name, kappa, "%s reference %s" % (op, opts_id(opts)))
    # slices of a jax array (a new array each, values unchanged) and a transposed [B,H,T,D] array
    qt = jnp.transpose(jnp.transpose(q, (0, 2, 1, 3)), (0, 2, 1, 3))
    o, _ = hla.forward(qt[:, 2:], k[:, 2:], v[:, 2:], op=op, scale=DK ** -0.5)
    assert_jax_out(o, name, (B, T - 2, H, DV))
    check(to64(o), brute(q64[:, 2:], k64[:, 2:], v64[:, 2:], **options(op, scale=DK ** -0.5))[0],
          name, what="%s sliced" % op)


@pytest.mark.parametrize("name", DTYPE_NAMES)
@pytest.mark.parametrize("op", OPS)
def test_state_step_prefill_and_carries(op, name):
    (q, k, v), (q64, k64, v64) = inputs(seed_of("jax-step", op, name), name)
    a = 7
    sdt = np.dtype(state_dtype_name(name))
    for opts in variants(op, DK)[:3]:
        want, kappa = brute(q64, k64, v64, **opts)
        # step loop from the start
        st = new_state(opts, name)
        assert st.array.dtype == sdt
        outs = []
        for t in range(T):
            o_t = st.step(q[:, t], k[:, t], v[:, t])
            assert_jax_out(o_t, name, (B, H, DV))
            outs.append(to64(o_t))
        check(np.stack(outs, axis=1), want, name, kappa, "%s step %s" % (op, opts_id(opts)))
        # prefill a prompt, then steps
        st2 = new_state(opts, name)
        o1 = st2.prefill(q[:, :a], k[:, :a], v[:, :a])
        assert_jax_out(o1, name, (B, a, H, DV))
        rest = [to64(st2.step(q[:, t], k[:, t], v[:, t])) for t in range(a, T)]
        check(np.concatenate([to64(o1), np.stack(rest, axis=1)], axis=1), want, name, kappa,
              "%s prefill+step %s" % (op, opts_id(opts)))
        # forward -> final State -> forward; and summarize -> combine -> forward
        o1, fin = hla.forward(q[:, :a], k[:, :a], v[:, :a], chunk_size=CHUNK,
                              output_final_state=True, **opts)
        n = hla.state_elements(**element_kwargs(opts, H, HKV, DK, DV))
        assert isinstance(fin, hla.State) and fin.array.shape == (B, n) and fin.array.dtype == sdt
        seg = hla.combine(hla.summarize(q[:, :3], k[:, :3], v[:, :3], **opts),
                          hla.summarize(q[:, 3:a], k[:, 3:a], v[:, 3:a], **opts))
        assert np.all(np.asarray(seg.length) == a)
        for what, init in (("State", fin), ("Segment", seg), ("jax array", jnp.asarray(fin.array))):
            for path in PATHS:
                o2, _ = hla.forward(q[:, a:], k[:, a:], v[:, a:], path=path, chunk_size=CHUNK,
                                    initial_state=init, **opts)
                assert_jax_out(o2, name, (B, T - a, H, DV))
                check(np.concatenate([to64(o1), to64(o2)], axis=1), want, name, kappa,
                      "%s %s from %s %s" % (op, path, what, opts_id(opts)))


@pytest.mark.parametrize("name", ["float32", "bfloat16"])
def test_packed_sequences_jax(name):
    lengths = [3, 1, 7]
    cu = np.concatenate([[0], np.cumsum(lengths)])
    (q, k, v), (q64, k64, v64) = inputs(seed_of("jax-varlen", name), name, 1, int(cu[-1]))
    opts = variants("ahla", DK)[1]
    want, kappa = brute_packed(q64, k64, v64, cu, **opts)
    o, fin = hla.forward(q, k, v, cu_seqlens=jnp.asarray(cu, dtype=jnp.int32), chunk_size=2,
                         output_final_state=True, **opts)
    assert_jax_out(o, name, (1, int(cu[-1]), H, DV))
    check(to64(o), want, name, kappa, "jax cu_seqlens")
    assert fin.array.shape[0] == len(lengths)


def test_errors():
    (q, k, v), _ = inputs(3, "float32", 1, 5)
    with pytest.raises(TypeError):
        hla.forward(q, k.astype(jnp.float64), v)
    with pytest.raises(TypeError):
        hla.reference(q.astype(jnp.bfloat16), k.astype(jnp.float16), v.astype(jnp.bfloat16))
    with pytest.raises(ValueError):
        hla.forward(q[0], k[0], v[0])
    with pytest.raises(ValueError):
        hla.forward(q, k[:, :3], v[:, :3])
    st = new_state(options("hla2"), "float32", batch=1)
    with pytest.raises(TypeError):
        st.step(q[:, 0], k[:, 0].astype(jnp.float16), v[:, 0])
    with pytest.raises(ValueError):
        st.step(q[:, 0, :, :5], k[:, 0], v[:, 0])
    assert np.all(st.array == 0)
