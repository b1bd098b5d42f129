"""Streaming states: step loop, continuation across forward calls and through bytes/pickle,
serial and chunked final states, copy/reset semantics and the State object's interface."""
import copy
import pickle

import numpy as np
import pytest

import bruteforce as bf
import hla
from common import DTYPES, OPS, PATHS, SPEC_TOL, assert_close, cast, make, options, seed_of

B, H, HKV, DK, DV = 2, 4, 2, 3, 5


def cfg_opts(op, masked=True, normalize=False, decay=0.9):
    return options(op, masked, normalize, decay, 0.25 if op == "hla2" else 0.0, scale=DK ** -0.5)


def new_state(dtype, **opts):
    return hla.State(batch=B, heads=H, kv_heads=HKV, dk=DK, dv=DV, dtype=dtype, **opts)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_step_loop_equals_forward(op, masked, dtype):
    T = 17
    q, k, v = make(B, T, H, HKV, DK, DV, seed_of("step", op, masked))
    opts = cfg_opts(op, masked)
    want, kappa = bf.evaluate(q, k, v, with_condition=True, **opts)
    qc, kc, vc = cast((q, k, v), dtype)
    st = new_state(dtype, **opts)
    outs = []
    for t in range(T):
        o_t = st.step(qc[:, t], kc[:, t], vc[:, t])      # strided views [B, H, D]
        assert o_t.shape == (B, H, DV) and o_t.dtype == dtype
        outs.append(o_t)
    stepped = np.stack(outs, axis=1)
    assert_close(stepped, want, dtype, kappa, "step loop")
    assert st.tokens == T
    fwd, _ = hla.forward(qc, kc, vc, chunk_size=4, **opts)
    assert_close(stepped, fwd.astype(np.float64), dtype, kappa, "step vs forward")


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("normalize", [False, True])
def test_continuation(op, masked, normalize):
    """forward(x[:a]) -> state -> forward(x[a:], initial_state=state) == forward(x), also through
    to_bytes/from_bytes and pickle, for split points on and off chunk boundaries and for every
    path of either half."""
    T = 21
    q, k, v = make(B, T, H, HKV, DK, DV, seed_of("cont", op, masked, normalize))
    opts = cfg_opts(op, masked, normalize)
    want, kappa = bf.evaluate(q, k, v, with_condition=True, **opts)
    for dtype in DTYPES:
        qc, kc, vc = cast((q, k, v), dtype)
        for a, p1, p2 in ((1, "chunked", "chunked"), (8, "chunked", "serial"),
                          (11, "serial", "scan"), (20, "scan", "chunked")):
            o1, st = hla.forward(qc[:, :a], kc[:, :a], vc[:, :a], path=p1, chunk_size=4,
                                 output_final_state=True, **opts)
            assert isinstance(st, hla.State) and st.tokens == a
            before = st.to_bytes()
            for carry in (st, hla.State.from_bytes(before), pickle.loads(pickle.dumps(st))):
                o2, st2 = hla.forward(qc[:, a:], kc[:, a:], vc[:, a:], path=p2, chunk_size=4,
                                      initial_state=carry, output_final_state=True, **opts)
                got = np.concatenate([o1, o2], axis=1)
                assert_close(got, want, dtype, kappa, "split %d %s/%s" % (a, p1, p2))
                assert st2.tokens == T
            assert st.to_bytes() == before, "forward changed its initial_state"


@pytest.mark.parametrize("op", OPS)
def test_final_states_of_all_paths_agree(op):
    """The final states of the serial, chunked and scan paths (and of a step loop) are the same
    state: continuing each on more tokens gives the same outputs, and their tokens agree."""
    T1, T2 = 13, 9
    q, k, v = make(B, T1 + T2, H, HKV, DK, DV, seed_of("final", op))
    opts = cfg_opts(op)
    want, kappa = bf.evaluate(q, k, v, with_condition=True, **opts)
    for dtype in DTYPES:
        qc, kc, vc = cast((q, k, v), dtype)
        finals = {}
        for path in PATHS:
            _, finals[path] = hla.forward(qc[:, :T1], kc[:, :T1], vc[:, :T1], path=path,
                                          chunk_size=5, output_final_state=True, **opts)
        st = new_state(dtype, **opts)
        for t in range(T1):
            st.step(qc[:, t], kc[:, t], vc[:, t])
        finals["step"] = st
        sizes = {name: len(s.to_bytes()) for name, s in finals.items()}
        assert len(set(sizes.values())) == 1, sizes
        for name, s in finals.items():
            assert s.tokens == T1
            for path in PATHS:
                o2, _ = hla.forward(qc[:, T1:], kc[:, T1:], vc[:, T1:], path=path, chunk_size=4,
                                    initial_state=s, **opts)
                assert_close(o2, want[:, T1:], dtype, kappa, "final of %s, then %s" % (name, path))


def test_state_serialization_roundtrip_is_exact():
    q, k, v = make(B, 6, H, HKV, DK, DV, 3)
    for dtype in DTYPES:
        st = new_state(dtype, **cfg_opts("hla3"))
        for t in range(6):
            st.step(*(x[:, t].astype(dtype) for x in (q, k, v)))
        b = st.to_bytes()
        assert isinstance(b, bytes)
        st2 = hla.State.from_bytes(b)
        assert st2.to_bytes() == b
        assert hla.State.from_bytes(bytearray(b)).to_bytes() == b
        assert hla.State.from_bytes(memoryview(b)).to_bytes() == b
        q1, k1, v1 = (x[:, 0].astype(dtype) + 1 for x in (q, k, v))
        np.testing.assert_array_equal(st.step(q1, k1, v1), st2.step(q1, k1, v1))


def test_copy_reset_and_independence():
    q, k, v = make(B, 8, H, HKV, DK, DV, 4)
    opts = cfg_opts("hla2")
    st = new_state(np.float64, **opts)
    for t in range(4):
        st.step(q[:, t], k[:, t], v[:, t])
    for dup in (st.copy(), copy.copy(st), copy.deepcopy(st)):
        assert dup is not st and dup.to_bytes() == st.to_bytes()
    c = st.copy()
    a = st.step(q[:, 4], k[:, 4], v[:, 4])
    assert st.tokens == 5 and c.tokens == 4          # the copy did not move
    np.testing.assert_array_equal(c.step(q[:, 4], k[:, 4], v[:, 4]), a)
    st.reset()
    assert st.tokens == 0
    fresh = new_state(np.float64, **opts)
    assert st.to_bytes() == fresh.to_bytes()
    o0 = st.step(q[:, 0], k[:, 0], v[:, 0])
    want = bf.evaluate(q[:, :1], k[:, :1], v[:, :1], **opts)[:, 0]
    assert bf.rel_err(o0, want) < 1e-12


def test_state_properties_and_repr():
    st = hla.State("ahla", batch=3, heads=6, kv_heads=2, dk=4, dv=7, masked=False, normalize=True,
                   decay=0.5, eps=1e-3, scale=0.25, dtype="float64")
    assert (st.op, st.batch, st.heads, st.kv_heads, st.dk, st.dv) == ("ahla", 3, 6, 2, 4, 7)
    assert st.dtype == np.float64 and st.masked is False and st.normalize is True
    assert (st.decay, st.ridge, st.eps, st.scale, st.tokens) == (0.5, 0.0, 1e-3, 0.25, 0)
    assert st.nbytes > 0 and isinstance(st.nbytes, int)
    r = repr(st)
    assert r.startswith("hla.State(") and "op='ahla'" in r and "kv_heads=2" in r
    d = hla.State(batch=1, heads=2, dk=3, dv=4)
    assert (d.op, d.kv_heads, d.dtype, d.masked, d.decay, d.eps) == ("hla2", 2, np.float32, True,
                                                                      1.0, 1e-6)
    for attr in ("op", "batch", "dtype", "tokens", "nbytes"):
        with pytest.raises(AttributeError):
            setattr(st, attr, 1)
    assert hla.State(batch=1, heads=1, dk=1, dv=1, dtype=np.float64).dtype == np.float64


def test_nbytes_independent_of_tokens():
    """Memory independent of T (SPEC section 4.1): nbytes and the serialized size do not grow."""
    q, k, v = make(1, 40, 2, 2, 3, 3, 5)
    for op in OPS:
        _, s1 = hla.forward(q[:, :3], k[:, :3], v[:, :3], op=op, output_final_state=True)
        _, s2 = hla.forward(q, k, v, op=op, output_final_state=True)
        assert s1.nbytes == s2.nbytes
        assert len(s1.to_bytes()) == len(s2.to_bytes())


def test_step_rejects_bad_tensors():
    st = new_state(np.float32, **cfg_opts("hla2"))
    q = np.zeros((B, H, DK), np.float32)
    k = np.zeros((B, HKV, DK), np.float32)
    v = np.zeros((B, HKV, DV), np.float32)
    st.step(q, k, v)
    with pytest.raises(TypeError, match="q_t"):
        st.step(q.astype(np.float64), k, v)
    with pytest.raises(TypeError, match="v_t"):
        st.step(q, k, v.astype(np.float64))
    with pytest.raises(ValueError, match="k_t"):
        st.step(q, np.zeros((B, H, DK), np.float32), v)
    with pytest.raises(ValueError, match="q_t"):
        st.step(q[None], k, v)
    with pytest.raises(ValueError, match="v_t"):
        st.step(q, k, np.zeros((B, HKV, DV + 1), np.float32))
    with pytest.raises(ValueError, match="q_t"):
        st.step(np.zeros((B + 1, H, DK), np.float32), k, v)
    with pytest.raises(TypeError, match="k_t"):
        st.step(q, k.tolist(), v)
    with pytest.raises(TypeError):
        st.step(q, k)
    assert st.tokens == 1
