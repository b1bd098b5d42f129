"""Streaming states: step loop, continuation across forward calls and through bytes/pickle,
serial and chunked final states, copy/reset semantics and the State object's interface (rows of
caller-visible memory: .array, State.wrap, prefill, reset/copy of rows)."""
import copy
import pickle

import numpy as np
import pytest

import bruteforce as bf
import hla
from common import (DTYPES, OPS, PATHS, SPEC_TOL, CountingState, assert_close, cast, make, options,
                    seed_of)

B, H, HKV, DK, DV = 2, 4, 2, 3, 5


def cfg_opts(op, masked=True, normalize=False, decay=0.9):
    return options(op, masked, normalize, decay, 0.25 if op == "hla2" else 0.0, scale=DK ** -0.5)


def new_state(dtype, **opts):
    return hla.State(batch=B, heads=H, kv_heads=HKV, dk=DK, dv=DV, dtype=dtype, **opts)


def state_err(a, b):
    """Relative max-norm difference of two states' statistics (their arrays)."""
    a = a.array if isinstance(a, hla.State) else a
    b = b.array if isinstance(b, hla.State) else b
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    return bf.rel_err(a.astype(np.float64), b.astype(np.float64))


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
    fwd, fin = hla.forward(qc, kc, vc, chunk_size=4, output_final_state=True, **opts)
    assert_close(stepped, fwd.astype(np.float64), dtype, kappa, "step vs forward")
    # SPEC section 4: the streaming and the chunked path return the same final state
    assert st.array.shape == fin.array.shape == (B, hla.state_elements(
        op, heads=H, kv_heads=HKV, dk=DK, dv=DV, masked=masked, ridge=opts["ridge"]))
    assert state_err(st, fin) <= SPEC_TOL[dtype]


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
        _, whole = hla.forward(qc, kc, vc, chunk_size=4, output_final_state=True, **opts)
        for a, p1, p2 in ((1, "chunked", "chunked"), (8, "chunked", "serial"),
                          (11, "serial", "scan"), (20, "scan", "chunked")):
            o1, st = hla.forward(qc[:, :a], kc[:, :a], vc[:, :a], path=p1, chunk_size=4,
                                 output_final_state=True, **opts)
            assert isinstance(st, hla.State) and st.dtype == dtype and st.rows == B
            before = st.to_bytes()
            for carry in (st, hla.State.from_bytes(before), pickle.loads(pickle.dumps(st)),
                          st.array, st.array.copy()):
                o2, st2 = hla.forward(qc[:, a:], kc[:, a:], vc[:, a:], path=p2, chunk_size=4,
                                      initial_state=carry, output_final_state=True, **opts)
                got = np.concatenate([o1, o2], axis=1)
                assert_close(got, want, dtype, kappa, "split %d %s/%s" % (a, p1, p2))
                err = state_err(st2, whole)
                assert err <= SPEC_TOL[dtype], "final state after split %d: %.3e" % (a, err)
            assert st.to_bytes() == before, "forward changed its initial_state"


@pytest.mark.parametrize("op", OPS)
def test_final_states_of_all_paths_agree(op):
    """The final states of the serial, chunked and scan paths (and of a step loop) are the same
    state: their statistics agree, and continuing each on more tokens gives the same outputs."""
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
            err = state_err(s, finals["serial"])
            assert err <= SPEC_TOL[dtype], "final state of %s vs serial: %.3e" % (name, err)
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
        np.testing.assert_array_equal(st2.array, st.array)
        assert st2.array.dtype == dtype and not np.shares_memory(st2.array, st.array)
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
        assert not np.shares_memory(dup.array, st.array)
    c = st.copy()
    held = c.array.copy()
    a = st.step(q[:, 4], k[:, 4], v[:, 4])
    np.testing.assert_array_equal(c.array, held)     # the copy did not move
    assert not np.array_equal(st.array, held)
    np.testing.assert_array_equal(c.step(q[:, 4], k[:, 4], v[:, 4]), a)
    np.testing.assert_array_equal(c.array, st.array)
    st.reset()
    assert not st.array.any()
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
    assert (st.decay, st.ridge, st.eps, st.scale, st.rows) == (0.5, 0.0, 1e-3, 0.25, 3)
    n = hla.state_elements("ahla", heads=6, kv_heads=2, dk=4, dv=7, masked=False, normalize=True)
    assert st.array.shape == (3, n) and st.array.dtype == np.float64 and not st.array.any()
    assert st.nbytes == 3 * n * 8 and isinstance(st.nbytes, int)
    assert st.array is st.array and st.array.flags.writeable and st.array.flags.c_contiguous
    r = repr(st)
    assert r.startswith("hla.State(") and "op='ahla'" in r and "kv_heads=2" in r
    d = hla.State(batch=1, heads=2, dk=3, dv=4)
    assert (d.op, d.kv_heads, d.dtype, d.masked, d.decay, d.eps) == ("hla2", 2, np.float32, True,
                                                                      1.0, 1e-6)
    for attr in ("op", "batch", "dtype", "rows", "nbytes", "array", "heads"):
        with pytest.raises(AttributeError):
            setattr(st, attr, 1)
    assert hla.State(batch=1, heads=1, dk=1, dv=1, dtype=np.float64).dtype == np.float64


def test_state_elements_matches_the_layout():
    """n and m against docs/state-layout.md where it gives a closed form, and their validation."""
    # hla2 unmasked: S (dk x dk) + C (dk x dv) per kv head
    assert hla.state_elements("hla2", heads=1, dk=3, dv=5, masked=False) == 3 * 3 + 3 * 5
    assert hla.state_elements(heads=32, kv_heads=8, dk=128, dv=128) > 0
    assert hla.summary_elements(heads=2, dk=3, dv=4) >= hla.state_elements(heads=2, dk=3, dv=4)
    with pytest.raises(ValueError, match="kv_heads"):
        hla.state_elements(heads=4, kv_heads=3, dk=2, dv=2)
    with pytest.raises(TypeError):
        hla.state_elements(heads=4, dk=2)


def test_nbytes_independent_of_tokens():
    """Memory independent of T (SPEC section 4.1): nbytes and the serialized size do not grow."""
    q, k, v = make(1, 40, 2, 2, 3, 3, 5)
    for op in OPS:
        _, s1 = hla.forward(q[:, :3], k[:, :3], v[:, :3], op=op, output_final_state=True)
        _, s2 = hla.forward(q, k, v, op=op, output_final_state=True)
        assert s1.nbytes == s2.nbytes
        assert len(s1.to_bytes()) == len(s2.to_bytes())


def test_step_rejects_bad_tensors():
    """Each bad step raises the exception naming the argument (the library's message names q, k, v,
    state or rows) and leaves the state untouched (nothing is written before validation)."""
    st = new_state(np.float32, **cfg_opts("hla2"))
    q = np.ones((B, H, DK), np.float32)
    k = np.ones((B, HKV, DK), np.float32)
    v = np.ones((B, HKV, DV), np.float32)
    st.step(q, k, v)
    held = st.array.copy()
    assert held.any()
    with pytest.raises(TypeError, match=r"\bstate\b.*float64"):     # float64 inputs, float32 state
        st.step(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64))
    with pytest.raises(TypeError, match=r"\bk\b"):
        st.step(q, k.astype(np.float64), v)
    with pytest.raises(TypeError, match=r"\bv\b"):
        st.step(q, k, v.astype(np.float64))
    with pytest.raises(ValueError, match=r"\bk\.shape"):
        st.step(q, np.zeros((B, H, DK), np.float32), v)
    with pytest.raises(ValueError, match=r"\bq\.ndim"):
        st.step(q[None], k, v)
    with pytest.raises(ValueError, match=r"\bv\.shape"):
        st.step(q, k, np.zeros((B, HKV, DV + 1), np.float32))
    with pytest.raises(ValueError, match=r"\bk\.shape"):
        st.step(np.zeros((B + 1, H, DK), np.float32), k, v)
    with pytest.raises(ValueError, match=r"\bstate\b.*rows"):         # more sequences than rows
        st.step(*(np.zeros((B + 1,) + x.shape[1:], np.float32) for x in (q, k, v)))
    with pytest.raises(ValueError, match=r"\brows\b"):
        st.step(q, k, v, rows=[0, B])                                 # row out of range
    with pytest.raises(ValueError, match=r"\brows\b"):
        st.step(q, k, v, rows=[1, 1])                                 # repeated row
    with pytest.raises(TypeError, match=r"\brows\b"):
        st.step(q, k, v, rows=np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="k_t"):
        st.step(q, k.tolist(), v)
    with pytest.raises(TypeError):
        st.step(q, k)
    np.testing.assert_array_equal(st.array, held)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_array_is_the_state(dtype):
    """.array is the state's memory, not a copy: writing it changes what steps read, and a State
    wrapped over an array advances that array in place."""
    T = 6
    q, k, v = make(B, T, H, HKV, DK, DV, seed_of("array", dtype))
    qc, kc, vc = cast((q, k, v), dtype)
    opts = cfg_opts("hla3")
    _, half = hla.forward(qc[:, :3], kc[:, :3], vc[:, :3], output_final_state=True, **opts)
    want, _ = hla.forward(qc[:, 3:], kc[:, 3:], vc[:, 3:], initial_state=half, **opts)
    st = new_state(dtype, **opts)
    st.array[...] = half.array                            # write the statistics through the view
    got = np.stack([st.step(qc[:, t], kc[:, t], vc[:, t]) for t in range(3, T)], axis=1)
    assert bf.rel_err(got, want) <= SPEC_TOL[dtype]
    mem = half.array.copy()
    w = hla.State.wrap(mem, heads=H, kv_heads=HKV, dk=DK, dv=DV, **opts)
    assert w.array is mem and w.source is mem and w.rows == B
    got2 = np.stack([w.step(qc[:, t], kc[:, t], vc[:, t]) for t in range(3, T)], axis=1)
    np.testing.assert_array_equal(got2, got)
    np.testing.assert_array_equal(mem, st.array)          # advanced in place


def test_wrap_checks_the_memory():
    opts = dict(heads=H, kv_heads=HKV, dk=DK, dv=DV)
    n = hla.state_elements(**opts)
    hla.State.wrap(np.zeros((3, n)), **opts)
    with pytest.raises(ValueError, match="shape"):
        hla.State.wrap(np.zeros((3, n + 1)), **opts)
    with pytest.raises(ValueError, match="ndim"):
        hla.State.wrap(np.zeros(n), **opts)
    with pytest.raises(TypeError, match="dtype"):
        hla.State.wrap(np.zeros((3, n), np.float16), **opts)
    with pytest.raises(TypeError, match="dtype"):
        hla.State.wrap(np.zeros((3, n), np.int64), **opts)
    with pytest.raises(ValueError, match="contiguous"):
        hla.State.wrap(np.zeros((n, 3)).T, **opts)
    ro = np.zeros((3, n))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        hla.State.wrap(ro, **opts)
    with pytest.raises(TypeError, match="array"):
        hla.State.wrap([[0.0] * n], **opts)
    # rows with a stride (every other row of a bigger buffer) are fine
    big = np.zeros((6, n))
    w = hla.State.wrap(big[::2], **opts)
    w.step(np.ones((3, H, DK)), np.ones((3, HKV, DK)), np.ones((3, HKV, DV)))
    assert big[::2].any() and not big[1::2].any()


@pytest.mark.parametrize("op", OPS)
def test_prefill_reset_and_copy_rows(op):
    """A cache of 4 rows: prefill rows 3 and 1 in place, step them, copy a row, reset a row; each
    row always equals the state of the tokens it saw (checked against forward)."""
    T = 7
    opts = cfg_opts(op)
    q, k, v = make(2, T + 1, H, HKV, DK, DV, seed_of("rows", op))
    st = hla.State(op, batch=4, heads=H, kv_heads=HKV, dk=DK, dv=DV, dtype="float64",
                   **{n: x for n, x in opts.items() if n != "op"})
    o = st.prefill(q[:, :T], k[:, :T], v[:, :T], rows=[3, 1])
    want, fin = hla.forward(q[:, :T], k[:, :T], v[:, :T], output_final_state=True, **opts)
    assert bf.rel_err(o, want) <= 1e-10
    assert not st.array[[0, 2]].any()
    assert state_err(st.array[[3, 1]], fin.array) <= 1e-10
    o_t = st.step(q[:, T], k[:, T], v[:, T], rows=np.array([3, 1], np.int32))
    want_all = bf.evaluate(q, k, v, **opts)
    assert bf.rel_err(o_t, want_all[:, T]) <= 1e-10
    _, fin2 = hla.forward(q, k, v, output_final_state=True, **opts)
    assert state_err(st.array[[3, 1]], fin2.array) <= 1e-10
    st.copy_rows([3, 3], [0, 3])                  # src may repeat and overlap dst
    np.testing.assert_array_equal(st.array[0], st.array[3])
    st.reset(rows=[3])
    assert not st.array[3].any() and st.array[0].any() and st.array[1].any()
    st.reset()
    assert not st.array.any()


def test_version_comes_from_the_header():
    """hla.__version__ is the HLA_VERSION_* of include/hla.h (the single source of truth) and the
    loaded library has the same major version."""
    import os
    import re
    header = os.path.join(os.path.dirname(__file__), "..", "..", "include", "hla.h")
    with open(header) as f:
        text = f.read()
    parts = [re.search(r"#define HLA_VERSION_%s (\d+)" % p, text).group(1)
             for p in ("MAJOR", "MINOR", "PATCH")]
    assert hla.__version__ == ".".join(parts)
    assert hla.library_version().split(".")[0] == parts[0]


class _Sub(np.ndarray):
    """An ndarray subclass: State.step's one-call numpy path declines it (NotImplemented)."""


@pytest.mark.parametrize("dt", ["float16", "float32", "float64", ">f4", "bfloat16"])
def test_step_numpy_call_equals_the_general_path(dt):
    """State.step's one-call path (_hla.step_numpy: exact numpy arrays of a float dtype the library takes,
    ml_dtypes' bfloat16 included) and its general path (any other array, here an ndarray subclass) give the
    same bits, output and state; the output has q's float kind (native byte order) and shape [R, H, dv]."""
    if dt == "bfloat16":
        dt = np.dtype(pytest.importorskip("ml_dtypes").bfloat16)
        # the one-call path takes it (a bfloat16 q is not declined)
        st = new_state("float32", op="hla3")
        q0, k0, v0 = (np.ones(s, dt) for s in ((B, H, DK), (B, HKV, DK), (B, HKV, DV)))
        assert hla._hla.step_numpy(st._cfg, q0, k0, v0, st._array, st._lock).dtype == dt
    state_dt = "float64" if dt == "float64" else "float32"
    a, b = new_state(state_dt, op="hla3"), new_state(state_dt, op="hla3")
    rng = np.random.default_rng(7)
    for _ in range(3):
        q, k, v = (rng.standard_normal(s).astype(dt) for s in ((B, H, DK), (B, HKV, DK), (B, HKV, DV)))
        assert hla._hla.step_numpy(a._cfg, q.view(_Sub), k, v, a._array, a._lock) is NotImplemented
        oa = a.step(q, k, v)
        ob = b.step(q.view(_Sub), k.view(_Sub), v.view(_Sub))
        assert type(oa) is np.ndarray and oa.shape == (B, H, DV)
        assert oa.dtype == np.dtype(dt).newbyteorder("=")
        assert np.array_equal(oa, np.asarray(ob)) and np.array_equal(a.array, b.array)
    assert not a._lock.locked()
    with pytest.raises(ValueError, match="hla_step"):
        a.step(q[:, :, :2], k, v)
    assert not a._lock.locked()   # released on a failed call too


def test_step_c_method_equals_its_python_definition():
    """State.step is a C method (bindings/python/src/ops.c, state_step) that runs the decode loop's calls
    (numpy q, k, v positionally; rows, a numpy array, list or tuple, positionally or by keyword; out by keyword)
    itself and hands every other call, arguments as given, to State._step, the same method in Python. Both give
    the same bits, output and state, for every form of call; the calls it runs never reach _step, the others all
    do; calls that fail in Python fail alike (messages naming State.step), and a State without its slots raises
    instead of crashing."""
    assert type(hla.State.step).__name__ == "method_descriptor"
    slots = 4
    mk = lambda cls: cls(batch=slots, heads=H, kv_heads=HKV, dk=DK, dv=DV, dtype="float32", op="hla3",
                         decay=0.9, normalize=True)
    a, b = mk(CountingState), mk(hla.State)
    rng = np.random.default_rng(5)

    def token(r):
        return tuple(rng.standard_normal(s).astype(np.float32) for s in ((r, H, DK), (r, HKV, DK), (r, HKV, DV)))

    def same(fast, call):
        """call(state, q, k, v) on a (through the C method) and b (through State._step) from one token."""
        q, k, v = token(2 if call else slots)
        before = CountingState.calls
        call = call or (lambda s, q, k, v: s.step(q, k, v))
        ra, rb = call(a, q, k, v), call(_Python(b), q, k, v)
        assert CountingState.calls - before == (0 if fast else 1)
        assert type(ra) is type(rb) and np.array_equal(np.asarray(ra), np.asarray(rb))
        assert np.array_equal(a.array, b.array) and not a._lock.locked()
        return ra

    rows = np.array([3, 1])
    out = np.empty((2, H, DV), np.float32)
    same(True, None)
    same(True, lambda s, q, k, v: s.step(q, k, v, rows))
    same(True, lambda s, q, k, v: s.step(q, k, v, rows=rows))
    assert same(True, lambda s, q, k, v: s.step(q, k, v, rows, out=out)) is out
    same(True, lambda s, q, k, v: s.step(q, k, v, out=None, rows=np.array([0, 2], np.int32)))
    same(False, lambda s, q, k, v: s.step(q_t=q, k_t=k, v_t=v, rows=rows))
    same(False, lambda s, q, k, v: s.step(q, k, v_t=v, rows=rows))
    same(True, lambda s, q, k, v: s.step(q, k, v, [2, 0]))
    same(True, lambda s, q, k, v: s.step(q, k, v, rows=(1, 2), out=out))
    same(False, lambda s, q, k, v: s.step(q.view(_Sub), k, v, rows))
    same(False, lambda s, q, k, v: s.step(q, k, v, range(2)))
    for bad in (lambda s, q, k, v: s.step(q, k),
                lambda s, q, k, v: s.step(q, k, v, rows, out),
                lambda s, q, k, v: s.step(q, k, v, rows, rows=rows),
                lambda s, q, k, v: s.step(q, k, v, rows, bogus=1)):
        q, k, v = token(2)
        with pytest.raises(TypeError, match=r"State\.step\(\)") as ea:
            bad(a, q, k, v)
        with pytest.raises(TypeError) as eb:
            bad(_Python(b), q, k, v)
        assert str(ea.value) == str(eb.value)
    with pytest.raises(ValueError, match="hla_step"):
        a.step(*token(2), rows=np.array([1, 1]))
    assert not a._lock.locked()
    for bad_rows, err in (([], ValueError), ([1.5, 0], TypeError), ([[0, 1]], ValueError), ([0, "x"], TypeError)):
        q, k, v = token(2)
        with pytest.raises(err) as ea:
            a.step(q, k, v, bad_rows)
        with pytest.raises(err) as eb:
            _Python(b).step(q, k, v, bad_rows)
        assert str(ea.value) == str(eb.value) and not a._lock.locked()
    with pytest.raises(AttributeError):
        object.__new__(hla.State).step(*token(slots))


def test_step_c_method_holds_the_state_array_through_the_call():
    """The C method reads the State's array from its slot and releases the GIL around the library's call: it holds
    the array meanwhile, so a thread that replaces the State's array (dropping the last reference to the old one,
    1 MiB, which numpy then unmaps) never pulls memory from under a running step. Without that hold this loop
    crashed the interpreter (SIGSEGV) within a few thousand steps."""
    import threading
    st = hla.State("hla3", batch=1, heads=64, kv_heads=1, dk=64, dv=64)
    q, k = np.full((1, 64, 64), 0.01, np.float32), np.full((1, 1, 64), 0.01, np.float32)
    stop = threading.Event()

    def swap():
        while not stop.is_set():
            st._array = np.zeros_like(st._array)

    t = threading.Thread(target=swap)
    t.start()
    try:
        for _ in range(6000):
            assert st.step(q, k, k).shape == (1, 64, 64)
    finally:
        stop.set()
        t.join()


class _Python:
    """A State's step through its Python definition (State._step), for comparison with the C method."""

    def __init__(self, state):
        self.state = state

    def step(self, *args, **kwargs):
        return hla.State._step(self.state, *args, **kwargs)


@pytest.mark.parametrize("idx", ["int64", "int32"])
def test_step_numpy_call_with_rows_equals_the_general_path(idx):
    """A row-indexed State.step with a numpy index array (or a list, made one) takes the one-call path
    (_hla.step_numpy with rows); with q an ndarray subclass it takes the general path: same bits, output
    and state, rows advanced in place and the others untouched. Bad rows (a repeated index) raise from the
    one-call path with the lock released."""
    slots = 5
    a = hla.State(batch=slots, heads=H, kv_heads=HKV, dk=DK, dv=DV, dtype="float32", op="ahla")
    b = hla.State(batch=slots, heads=H, kv_heads=HKV, dk=DK, dv=DV, dtype="float32", op="ahla")
    rng = np.random.default_rng(11)
    for rows in ([3, 0], [1, 3], [4, 2]):
        q, k, v = (rng.standard_normal(s).astype(np.float32) for s in ((2, H, DK), (2, HKV, DK), (2, HKV, DV)))
        ri = np.array(rows, dtype=idx)
        assert hla._hla.step_numpy(a._cfg, q, k, v, a._array, a._lock, None, list(rows)) is NotImplemented
        before = a.array.copy()
        oa = a.step(q, k, v, rows=ri if rows != [1, 3] else list(rows))
        ob = b.step(q.view(_Sub), k, v, rows=list(rows))
        assert type(oa) is np.ndarray and oa.shape == (2, H, DV)
        assert np.array_equal(oa, ob) and np.array_equal(a.array, b.array)
        untouched = [r for r in range(slots) if r not in rows]
        assert np.array_equal(a.array[untouched], before[untouched])
        assert not np.array_equal(a.array[rows], before[rows])
    direct = hla._hla.step_numpy(a._cfg, q, k, v, a._array, a._lock, None, np.array([0, 1], dtype=idx))
    assert type(direct) is np.ndarray and direct.shape == (2, H, DV)
    with pytest.raises(ValueError, match="hla_step"):
        a.step(q, k, v, rows=np.array([2, 2], dtype=idx))
    assert not a._lock.locked()


def symmetric_blocks(op, masked, summary, H, Hkv, dk, dv):
    """The offsets of the dk × dk blocks of a row that are symmetric by definition (docs/state-layout.md §2): S per
    kv head (hla2, hla3); hla3 unmasked S^Q, and in a masked hla3 summary Q2, per query head."""
    kvt = dk * dk + (dk * dv if op == "hla3" else 0)
    blocks = [g * kvt for g in range(Hkv)]
    if op == "hla3" and not masked:
        blocks += [Hkv * kvt + h * dk * dk for h in range(H)]
    if op == "hla3" and masked and summary:
        per = 2 * dk * dv + 2 * dk * dk                      # W, Q2, X, Z
        blocks += [Hkv * kvt + h * per + dk * dv for h in range(H)]
    return blocks


@pytest.mark.parametrize("op", ["hla2", "hla3"])
@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("dk", [13, 24, 65])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_symmetric_blocks_are_exactly_symmetric(op, masked, dk, dtype):
    """S (and hla3's S^Q and summary Q2) are symmetric bit for bit in the state every path leaves and in summaries,
    with decay and inputs whose products round: the chunked and scan paths and summaries form the lower half and
    mirror it, the step's rank-1 update rounds each element alike in its vector panels and scalar columns (dk = 13,
    24 and 65 have scalar columns; 65 the one folded into the panels' sweep). docs/state-layout.md §4 states it."""
    T, H, Hkv, dv = 77, 4, 2, 5
    rng = np.random.default_rng(seed_of("symmetric", op, masked, dk))
    q, k, v = (rng.standard_normal((1, T, h, d)).astype(dtype) for h, d in ((H, dk), (Hkv, dk), (Hkv, dv)))
    o = dict(op=op, masked=masked, decay=0.9, scale=dk ** -0.5)
    rows = {path: hla.forward(q, k, v, path=path, chunk_size=16, output_final_state=True, **o)[1].array[0]
            for path in ("serial", "chunked", "scan")}
    rows["summary"] = hla.summarize(q, k, v, chunk_size=16, **o).array[0]
    for what, row in rows.items():
        for at in symmetric_blocks(op, masked, what == "summary", H, Hkv, dk, dv):
            m = row[at:at + dk * dk].reshape(dk, dk)
            assert np.abs(m).max() > 0, (what, at)
            np.testing.assert_array_equal(m, m.T, err_msg="%s block at %d" % (what, at))
