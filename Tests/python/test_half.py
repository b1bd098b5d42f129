"""Half precision (SPEC sections 1, 4, 5, 7): numpy float16 and ml_dtypes bfloat16 arrays on every
operator and every path (chunked, serial, scan, streaming step, prefill, summarize + combine).

Reference: the float64 brute force (bruteforce.py) of the same rounded inputs. Tolerances: float16
<= 2e-3, bfloat16 <= 1e-2 (SPEC section 4). The state is float32 (inputs widened on load, accumulated in
float32), so the half path's states and summaries equal the float32 path's on the same rounded
inputs up to float32 rounding."""
import numpy as np
import pytest

import hla
from framework_util import (OPS, PATHS, brute, check, config_kwargs, draw, element_kwargs, opts_id,
                            options, row_close, seed_of, variants)

B, T, H, HKV, DK, DV = 2, 23, 4, 2, 8, 6
CHUNK = 4                          # 23 = 5 * 4 + 3: several chunks and a ragged last one
HALF = ("float16", "bfloat16")
# The half and float32 paths do the same float32 arithmetic on the same values; they may differ
# only by float32 rounding (order of accumulation).
F32_ROUNDING = 1e-5


def half_dtype(name):
    if name == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(np.float16)


def rounded(arrays, dt):
    """(low-precision arrays, their exact values in float64, the same values in float32)."""
    low = tuple(np.asarray(x).astype(dt) for x in arrays)
    return low, tuple(x.astype(np.float64) for x in low), tuple(x.astype(np.float32) for x in low)


def strided(x):
    """Same values, other layout: [B,H,T,D] storage viewed as [B,T,H,D] with reversed features."""
    y = np.ascontiguousarray(x.transpose(0, 2, 1, 3)[..., ::-1]).transpose(0, 2, 1, 3)[..., ::-1]
    assert not y.flags.c_contiguous and y.strides[-1] < 0
    np.testing.assert_array_equal(y.astype(np.float64), x.astype(np.float64))
    return y


def new_state(opts, batch=B, dtype="float32"):
    return hla.State(batch=batch, dtype=dtype, **config_kwargs(opts, H, HKV, DK, DV))


def assert_half_out(o, dt, shape):
    assert isinstance(o, np.ndarray), type(o)
    assert o.dtype == dt, (o.dtype, dt)
    assert o.shape == shape, (o.shape, shape)


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("name", HALF)
@pytest.mark.parametrize("op", OPS)
def test_forward_every_path(op, name, layout):
    dt = half_dtype(name)
    (q, k, v), (q64, k64, v64), _ = rounded(draw(B, T, H, HKV, DK, DV, seed_of("half", op, name)), dt)
    if layout == "strided":
        q, k, v = strided(q), strided(k), strided(v)
    for opts in variants(op, DK):
        want, kappa = brute(q64, k64, v64, **opts)
        for path in PATHS:
            o, final = hla.forward(q, k, v, path=path, chunk_size=CHUNK, **opts)
            assert final is None
            assert_half_out(o, dt, (B, T, H, DV))
            check(o, want, name, kappa, "%s %s %s %s" % (op, path, layout, opts_id(opts)))
        o = hla.reference(q, k, v, **opts)
        assert_half_out(o, dt, (B, T, H, DV))
        check(o, want, name, kappa, "%s reference %s %s" % (op, layout, opts_id(opts)))


@pytest.mark.parametrize("name", HALF)
@pytest.mark.parametrize("op", OPS)
def test_step_loop(op, name):
    """Streaming: a float32 State stepped with half tokens; outputs in the half type; the state after
    the loop equals the float32 path's state on the same rounded inputs."""
    dt = half_dtype(name)
    (q, k, v), (q64, k64, v64), (q32, k32, v32) = rounded(
        draw(B, T, H, HKV, DK, DV, seed_of("half-step", op, name)), dt)
    for opts in variants(op, DK)[:3]:
        want, kappa = brute(q64, k64, v64, **opts)
        st = new_state(opts)
        st32 = new_state(opts)
        assert st.array.dtype == np.float32
        outs = []
        for t in range(T):
            o_t = st.step(q[:, t], k[:, t], v[:, t])
            assert_half_out(o_t, dt, (B, H, DV))
            outs.append(o_t)
            st32.step(q32[:, t], k32[:, t], v32[:, t])
        check(np.stack(outs, axis=1), want, name, kappa, "%s step %s" % (op, opts_id(opts)))
        assert st.array.dtype == np.float32
        row_close(st.array, st32.array, F32_ROUNDING, "%s step state half vs float32" % op)
        # the streaming path and the chunked path give the same final state (SPEC section 4)
        _, final = hla.forward(q, k, v, chunk_size=CHUNK, output_final_state=True, **opts)
        row_close(final.array, st.array, 1e-4, "%s chunked vs streaming final state" % op)


@pytest.mark.parametrize("layout", ["contiguous", "strided", "rows"])
@pytest.mark.parametrize("name", HALF)
@pytest.mark.parametrize("op", OPS)
def test_step_bits_equal_float32_step(op, name, layout):
    """A half step widens its tokens exactly and rounds each output once, so it is the float32 step on the
    widened tokens, bit for bit: outputs equal that step's outputs rounded to the half type, and the states
    are the same bytes (dk = 20 and dv = 17 take the conversions' vector loops and their tails; grouped heads;
    strided tokens; row-indexed steps)."""
    dt = half_dtype(name)
    H2, HKV2, DK2, DV2, R = 6, 3, 20, 17, 3
    (q, k, v), _, (q32, k32, v32) = rounded(draw(R, 9, H2, HKV2, DK2, DV2, seed_of("half-bits", op, name)), dt)
    for opts in variants(op, DK2):
        kw = config_kwargs(opts, H2, HKV2, DK2, DV2)
        slots = R + 2 if layout == "rows" else R
        rows = np.array([3, 0, 2], dtype=np.int64) if layout == "rows" else None
        st, st32 = hla.State(batch=slots, dtype="float32", **kw), hla.State(batch=slots, dtype="float32", **kw)
        for t in range(q.shape[1]):
            x = [a[:, t] for a in (q, k, v)]
            if layout == "strided":
                x = [np.asfortranarray(a) for a in x]          # element stride R · H: the element-by-element loops
                assert not x[0].flags.c_contiguous
            o = st.step(*x, rows=rows)
            o32 = st32.step(q32[:, t], k32[:, t], v32[:, t], rows=rows)
            assert_half_out(o, dt, (R, H2, DV2))
            np.testing.assert_array_equal(o.view(np.uint16), o32.astype(dt).view(np.uint16),
                                          "%s %s t=%d %s" % (op, layout, t, opts_id(opts)))
        assert st.array.tobytes() == st32.array.tobytes(), "%s %s state %s" % (op, layout, opts_id(opts))


@pytest.mark.parametrize("name", HALF)
@pytest.mark.parametrize("op", OPS)
def test_prefill_then_step(op, name):
    dt = half_dtype(name)
    (q, k, v), (q64, k64, v64), _ = rounded(
        draw(B, T, H, HKV, DK, DV, seed_of("half-prefill", op, name)), dt)
    opts = variants(op, DK)[1]
    want, kappa = brute(q64, k64, v64, **opts)
    st = new_state(opts)
    a = 14
    o1 = st.prefill(q[:, :a], k[:, :a], v[:, :a])
    assert_half_out(o1, dt, (B, a, H, DV))
    assert st.array.dtype == np.float32
    rest = [st.step(q[:, t], k[:, t], v[:, t]) for t in range(a, T)]
    got = np.concatenate([o1, np.stack(rest, axis=1)], axis=1)
    check(got, want, name, kappa, "%s prefill + step" % op)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", HALF)
@pytest.mark.parametrize("op", OPS)
def test_final_state_equals_float32_path(op, name, path):
    """The final state of half inputs is float32 and equals the float32 path's on the same rounded
    inputs; continuing from it (in half) reproduces the whole sequence."""
    dt = half_dtype(name)
    (q, k, v), (q64, k64, v64), (q32, k32, v32) = rounded(
        draw(B, T, H, HKV, DK, DV, seed_of("half-final", op, name)), dt)
    a = 15
    for opts in variants(op, DK):
        want, kappa = brute(q64, k64, v64, **opts)
        o1, fin = hla.forward(q[:, :a], k[:, :a], v[:, :a], path=path, chunk_size=CHUNK,
                              output_final_state=True, **opts)
        _, fin32 = hla.forward(q32[:, :a], k32[:, :a], v32[:, :a], path=path, chunk_size=CHUNK,
                               output_final_state=True, **opts)
        assert isinstance(fin, hla.State)
        assert fin.array.dtype == np.float32
        n = hla.state_elements(**element_kwargs(opts, H, HKV, DK, DV))
        assert fin.array.shape == (B, n)
        row_close(fin.array, fin32.array, F32_ROUNDING, "%s %s final half vs float32" % (op, path))
        o2, _ = hla.forward(q[:, a:], k[:, a:], v[:, a:], path=path, chunk_size=CHUNK,
                            initial_state=fin, **opts)
        assert_half_out(o2, dt, (B, T - a, H, DV))
        check(np.concatenate([o1, o2], axis=1), want, name, kappa,
              "%s %s continuation %s" % (op, path, opts_id(opts)))


@pytest.mark.parametrize("name", HALF)
@pytest.mark.parametrize("op", OPS)
def test_summarize_combine(op, name):
    """Associative scan in half precision: summaries are float32, equal the float32 path's, combine
    like the summary of the concatenation, and carry a forward of the rest on every path."""
    dt = half_dtype(name)
    (q, k, v), (q64, k64, v64), (q32, k32, v32) = rounded(
        draw(B, T, H, HKV, DK, DV, seed_of("half-scan", op, name)), dt)
    a, b = 7, 16
    for opts in variants(op, DK):
        want, kappa = brute(q64, k64, v64, **opts)
        sa = hla.summarize(q[:, :a], k[:, :a], v[:, :a], **opts)
        sb = hla.summarize(q[:, a:b], k[:, a:b], v[:, a:b], **opts)
        assert sa.array.dtype == np.float32
        assert np.all(np.asarray(sa.length) == a) and np.all(np.asarray(sb.length) == b - a)
        sa32 = hla.summarize(q32[:, :a], k32[:, :a], v32[:, :a], **opts)
        row_close(sa.array, sa32.array, F32_ROUNDING, "%s summary half vs float32" % op)
        c = hla.combine(sa, sb)
        assert np.all(np.asarray(c.length) == b)
        whole = hla.summarize(q[:, :b], k[:, :b], v[:, :b], **opts)
        row_close(c.array, whole.array, 1e-4, "%s combine(a, b) vs summarize(a b)" % op)
        for path in PATHS:
            o, _ = hla.forward(q[:, b:], k[:, b:], v[:, b:], path=path, chunk_size=CHUNK,
                               initial_state=c, **opts)
            assert_half_out(o, dt, (B, T - b, H, DV))
            check(o, want[:, b:], name, kappa,
                  "%s %s from combined summary %s" % (op, path, opts_id(opts)))


@pytest.mark.parametrize("name", HALF)
def test_half_type_errors(name):
    dt = half_dtype(name)
    (q, k, v), _, (q32, k32, v32) = rounded(draw(1, 5, 2, 1, 4, 3, 7), dt)
    other = np.float16 if name == "bfloat16" else np.float32
    with pytest.raises(TypeError):
        hla.forward(q, k.astype(other), v)                        # mixed element types
    with pytest.raises(TypeError):
        hla.forward(q, k, v32)
    with pytest.raises(TypeError):
        hla.reference(q32, k, v)
    opts = options("hla2")
    st64 = hla.State(batch=1, dtype="float64", **config_kwargs(opts, 2, 1, 4, 3))
    with pytest.raises((TypeError, ValueError)):                 # half inputs need a float32 state
        st64.step(q[:, 0], k[:, 0], v[:, 0])
    st = hla.State(batch=1, dtype="float32", **config_kwargs(opts, 2, 1, 4, 3))
    with pytest.raises(TypeError):
        st.step(q[:, 0], k32[:, 0], v[:, 0])
    np.testing.assert_array_equal(st.array, 0)                  # a rejected call wrote nothing
    # a float64 state cannot carry a half forward either
    _, fin64 = hla.forward(*(x.astype(np.float64) for x in (q32, k32, v32)),
                           output_final_state=True)
    with pytest.raises((TypeError, ValueError)):
        hla.forward(q, k, v, initial_state=fin64)


@pytest.mark.parametrize("name", HALF)
@pytest.mark.parametrize("op,length", [("hla2", 320), ("ahla", 320), ("hla3", 80)])
def test_longer_sequences(op, name, length):
    """Many chunks (automatic and 16) and a wider head (dk 16): the float32 accumulation of half
    inputs stays within the SPEC tolerance of the half type on every path."""
    dt = half_dtype(name)
    dk, dv = 16, 8
    (q, k, v), (q64, k64, v64), _ = rounded(draw(1, length, 2, 1, dk, dv,
                                                 seed_of("half-long", op, name)), dt)
    opts = options(op, True, False, 0.9, 0.0, dk ** -0.5)
    want, kappa = brute(q64, k64, v64, **opts)
    assert np.max(np.abs(want)) < 1e4                 # representable in float16
    for path in PATHS:
        for chunk in (None, 16):
            o, _ = hla.forward(q, k, v, path=path, chunk_size=chunk, **opts)
            assert_half_out(o, dt, (1, length, 2, dv))
            check(o, want, name, kappa, "%s %s chunk %s T=%d" % (op, path, chunk, length))
    st = hla.State(batch=1, dtype="float32", **config_kwargs(opts, 2, 1, dk, dv))
    o = np.stack([st.step(q[:, t], k[:, t], v[:, t]) for t in range(length)], axis=1)
    check(o, want, name, kappa, "%s step T=%d" % (op, length))
