"""Row-indexed states (SPEC sections 5, 7 and 8): one State of 16 slots stepped with rows= (a few live
sequences, changing over time) equals a separate state per sequence and the float64 brute force;
prefill with rows; copy_rows (fork a sequence); reset(rows); bad rows raise ValueError;
hla.state_elements agrees with State.array; State.wrap over a numpy array is the caller's memory."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

import hla
from framework_util import (OPS, SPEC_TOL, array_address, brute, check, config_kwargs, draw,
                            element_kwargs, options, row_close, seed_of, variants)

H, HKV, DK, DV = 4, 2, 5, 3
SLOTS = 16


def cfg(opts):
    return config_kwargs(opts, H, HKV, DK, DV)


def new_state(opts, batch=SLOTS, dtype="float64"):
    return hla.State(batch=batch, dtype=dtype, **cfg(opts))


class Stream:
    """One sequence: its tokens (float64 [1, T, ...]) and where it stands."""

    def __init__(self, seed, length):
        self.q, self.k, self.v = draw(1, length, H, HKV, DK, DV, seed)
        self.t = 0
        self.outs = []

    def token(self):
        return self.q[0, self.t], self.k[0, self.t], self.v[0, self.t]


def run_schedule(opts, schedule, slots_of, lengths, seed, dtype=np.float64):
    """Step one SLOTS-row state by the schedule (a list of lists of sequence ids live at each time);
    each sequence also runs in its own 1-row State. Checks every call against the separate states
    and that rows not stepped stay bit-identical; returns the streams."""
    streams = [Stream(seed + i, n) for i, n in enumerate(lengths)]
    sdt = "float64" if dtype == np.float64 else "float32"
    big = new_state(opts, dtype=sdt)
    big.array[...] = np.random.default_rng(seed).standard_normal(big.array.shape)  # junk in free slots
    for i in range(len(lengths)):
        big.reset(rows=np.array([slots_of[i]]))
    alone = [new_state(opts, batch=1, dtype=sdt) for _ in lengths]
    for live in schedule:
        live = [i for i in live if streams[i].t < lengths[i]]
        if not live:
            continue
        rows = np.array([slots_of[i] for i in live], dtype=np.int64)
        toks = [streams[i].token() for i in live]
        q_t, k_t, v_t = (np.stack([tk[j] for tk in toks]).astype(dtype) for j in range(3))
        before = big.array.copy()
        o = big.step(q_t, k_t, v_t, rows=rows)
        assert o.shape == (len(live), H, DV) and o.dtype == dtype
        untouched = np.setdiff1d(np.arange(SLOTS), rows)
        np.testing.assert_array_equal(big.array[untouched], before[untouched])
        for r, i in enumerate(live):
            tq, tk, tv = (x[None].astype(dtype) for x in streams[i].token())
            oi = alone[i].step(tq, tk, tv)
            check(o[r], oi[0].astype(np.float64), "float64" if dtype == np.float64 else "float32",
                  what="sequence %d at t=%d: slot row vs own state" % (i, streams[i].t))
            streams[i].outs.append(o[r])
            streams[i].t += 1
    for i, s in enumerate(streams):
        row_close(big.array[slots_of[i]][None], alone[i].array, 1e-12 if dtype == np.float64 else 1e-5,
                  "sequence %d final state" % i)
    return streams


@pytest.mark.parametrize("op", OPS)
def test_live_rows_equal_separate_states(op):
    """5 sequences in slots (3, 11, 0, 15, 7) of 16, live at changing times, listed in changing
    orders; each equals its own state and the brute force of its tokens."""
    lengths = [9, 4, 12, 1, 7]
    slots_of = [3, 11, 0, 15, 7]
    rng = np.random.default_rng(seed_of("rows", op))
    schedule = []
    for t in range(40):
        live = [i for i in range(5) if rng.random() < 0.6]
        rng.shuffle(live)
        schedule.append(live)
    schedule += [[0, 1, 2, 3, 4]] * 12           # drain
    for opts in variants(op, DK)[:3]:
        streams = run_schedule(opts, schedule, slots_of, lengths, seed_of("rows-seq", op))
        for i, s in enumerate(streams):
            assert s.t == lengths[i]
            want, kappa = brute(s.q, s.k, s.v, **opts)
            check(np.stack(s.outs)[None], want, "float64", kappa, "%s sequence %d" % (op, i))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hs.sampled_from(OPS), hs.permutations(list(range(SLOTS))), hs.lists(
    hs.lists(hs.integers(0, 3), unique=True, max_size=4), min_size=1, max_size=25),
    hs.integers(0, 2 ** 20))
def test_live_rows_property(op, perm, schedule, seed):
    lengths = [6, 3, 8, 5]
    slots_of = perm[:4]
    schedule = list(schedule) + [[0, 1, 2, 3]] * 8
    opts = variants(op, DK)[seed % 3]
    streams = run_schedule(opts, schedule, slots_of, lengths, seed, dtype=np.float32)
    for i, s in enumerate(streams):
        want, kappa = brute(s.q.astype(np.float32), s.k.astype(np.float32),
                            s.v.astype(np.float32), **opts)
        check(np.stack(s.outs)[None], want, "float32", kappa, "%s sequence %d" % (op, i))


@pytest.mark.parametrize("op", OPS)
def test_prefill_rows_then_step(op):
    """prefill(q [R,T,...], rows) advances those rows only; steps continue the sequences."""
    opts = variants(op, DK)[1]
    R, T0, T1 = 3, 6, 4
    q, k, v = draw(R, T0 + T1, H, HKV, DK, DV, seed_of("prefill-rows", op))
    want, kappa = brute(q, k, v, **opts)
    st = new_state(opts)
    st.array[...] = np.random.default_rng(2).standard_normal(st.array.shape)
    rows = np.array([13, 2, 8], dtype=np.int32)
    st.reset(rows=rows)
    before = st.array.copy()
    o = st.prefill(q[:, :T0], k[:, :T0], v[:, :T0], rows=rows)
    assert o.shape == (R, T0, H, DV)
    outs = [o]
    for t in range(T0, T0 + T1):
        outs.append(st.step(q[:, t], k[:, t], v[:, t], rows=rows)[:, None])
    check(np.concatenate(outs, axis=1), want, "float64", kappa, "%s prefill rows + steps" % op)
    others = np.setdiff1d(np.arange(SLOTS), rows)
    np.testing.assert_array_equal(st.array[others], before[others])
    # the rows hold the chunked forward's final state of each sequence
    _, fin = hla.forward(q, k, v, output_final_state=True, **opts)
    row_close(st.array[rows], fin.array, 1e-9, "%s prefilled + stepped rows" % op)


@pytest.mark.parametrize("op", OPS)
def test_copy_rows_forks_a_sequence(op):
    """copy_rows(src, dst): after a prompt in row 2, fork it into rows 9 and 14 (src repeats);
    the forks continue identically with the same tokens and independently with different ones."""
    opts = variants(op, DK)[2 if op != "hla2" else 3]
    q, k, v = draw(1, 10, H, HKV, DK, DV, seed_of("fork", op))
    st = new_state(opts)
    st.prefill(q[:, :6], k[:, :6], v[:, :6], rows=np.array([2]))
    st.copy_rows(np.array([2, 2]), np.array([9, 14]))
    np.testing.assert_array_equal(st.array[9], st.array[2])
    np.testing.assert_array_equal(st.array[14], st.array[2])
    rows = np.array([2, 9, 14])
    for t in range(6, 8):                                    # same tokens: identical continuations
        tok = [np.repeat(x[:, t], 3, axis=0) for x in (q, k, v)]
        o = st.step(*tok, rows=rows)
        np.testing.assert_array_equal(o[1], o[0])
        np.testing.assert_array_equal(o[2], o[0])
    want, kappa = brute(q[:, :8], k[:, :8], v[:, :8], **opts)
    check(o[0], want[0, 7], "float64", kappa, "%s fork continuation" % op)
    # different tokens per fork: each equals the brute force of its own history
    alt = draw(3, 2, H, HKV, DK, DV, seed_of("fork-alt", op))
    outs = [st.step(*(x[:, j] for x in alt), rows=rows) for j in range(2)]
    for r in range(3):
        hist = [np.concatenate([x[:, :8], a[r:r + 1]], axis=1) for x, a in zip((q, k, v), alt)]
        w, kp = brute(*hist, **opts)
        check(np.stack([outs[0][r], outs[1][r]]), w[0, 8:], "float64", kp, "%s fork %d" % (op, r))


def test_copy_rows_semantics():
    """dst[i] receives what src[i] held before the call, also when src and dst overlap (a swap)."""
    opts = options("hla2", decay=0.9)
    st = new_state(opts, batch=5)
    st.array[...] = np.arange(st.array.size, dtype=np.float64).reshape(st.array.shape)
    before = st.array.copy()
    st.copy_rows(np.array([0, 3]), np.array([3, 0]))                  # swap
    np.testing.assert_array_equal(st.array[0], before[3])
    np.testing.assert_array_equal(st.array[3], before[0])
    np.testing.assert_array_equal(st.array[[1, 2, 4]], before[[1, 2, 4]])
    st.copy_rows(np.array([1, 1, 4], dtype=np.int32), np.array([2, 4, 1], dtype=np.int32))
    np.testing.assert_array_equal(st.array[2], before[1])
    np.testing.assert_array_equal(st.array[4], before[1])
    np.testing.assert_array_equal(st.array[1], before[4])


def test_reset_rows():
    opts = options("ahla", masked=False, decay=0.8)
    st = new_state(opts, batch=6)
    st.array[...] = 1.5
    st.reset(rows=np.array([4, 1]))
    assert np.all(st.array[[1, 4]] == 0)
    assert np.all(st.array[[0, 2, 3, 5]] == 1.5)
    # a reset row behaves as a fresh sequence
    q, k, v = draw(1, 3, H, HKV, DK, DV, 44)
    outs = [st.step(q[:, t], k[:, t], v[:, t], rows=np.array([4])) for t in range(3)]
    want, kappa = brute(q, k, v, **opts)
    check(np.stack(outs, axis=1), want, "float64", kappa, "reset row as a fresh sequence")
    st.reset()
    assert np.all(st.array == 0)


BAD_ROWS = {"out of range": [0, 16], "negative": [-1, 2], "repeated": [3, 3]}


@pytest.mark.parametrize("what", sorted(BAD_ROWS))
def test_bad_rows(what):
    opts = options("hla3", decay=0.9)
    st = new_state(opts)
    st.array[...] = 0.25
    before = st.array.copy()
    rows = np.array(BAD_ROWS[what], dtype=np.int64)
    q, k, v = draw(2, 3, H, HKV, DK, DV, 45)
    with pytest.raises(ValueError):
        st.step(q[:, 0], k[:, 0], v[:, 0], rows=rows)
    with pytest.raises(ValueError):
        st.step(q[:, 0], k[:, 0], v[:, 0], rows=rows.astype(np.int32))
    with pytest.raises(ValueError):
        st.prefill(q, k, v, rows=rows)
    with pytest.raises(ValueError):
        st.reset(rows=rows)
    if what == "repeated":                  # src may repeat; dst must be distinct
        with pytest.raises(ValueError):
            st.copy_rows(np.array([0, 1]), rows)
    else:
        with pytest.raises(ValueError):
            st.copy_rows(np.array([0, 1]), rows)
        with pytest.raises(ValueError):
            st.copy_rows(rows, np.array([0, 1]))
    np.testing.assert_array_equal(st.array, before)           # nothing written by a rejected call


def test_rows_shape_errors():
    st = new_state(options("hla2"))
    q, k, v = draw(2, 3, H, HKV, DK, DV, 46)
    with pytest.raises(ValueError):                            # 3 rows for 2 tokens
        st.step(q[:, 0], k[:, 0], v[:, 0], rows=np.array([0, 1, 2]))
    with pytest.raises(ValueError):                            # rows must be 1-D
        st.step(q[:, 0], k[:, 0], v[:, 0], rows=np.array([[0, 1]]))
    with pytest.raises((ValueError, TypeError)):               # rows must be integers
        st.step(q[:, 0], k[:, 0], v[:, 0], rows=np.array([0.0, 1.0]))
    with pytest.raises(ValueError):                            # src and dst of different lengths
        st.copy_rows(np.array([0, 1]), np.array([2]))
    small = new_state(options("hla2"), batch=1)
    with pytest.raises(ValueError):                            # more sequences than slots, no rows
        small.step(q[:, 0], k[:, 0], v[:, 0])
    assert np.all(st.array == 0) and np.all(small.array == 0)


CONFIGS = [options("hla2"), options("hla2", normalize=True), options("hla2", ridge=0.5),
           options("hla2", masked=False), options("ahla"), options("ahla", masked=False),
           options("ahla", normalize=True), options("hla3"), options("hla3", masked=False),
           options("hla3", normalize=True)]


@pytest.mark.parametrize("opts", CONFIGS, ids=lambda o: "%s-m%d-n%d-r%g" % (
    o["op"], o["masked"], o["normalize"], o["ridge"]))
def test_state_elements_matches_state(opts):
    for heads, kv_heads, dk, dv in ((1, 1, 1, 1), (4, 2, 5, 3), (6, 3, 7, 2), (8, 1, 3, 4)):
        n = hla.state_elements(**element_kwargs(opts, heads, kv_heads, dk, dv))
        assert isinstance(n, (int, np.integer)) and n > 0
        for dtype in ("float32", "float64"):
            st = hla.State(batch=3, dtype=dtype, **config_kwargs(opts, heads, kv_heads, dk, dv))
            assert st.array.shape == (3, n), (st.array.shape, n)
            assert st.array.dtype == np.dtype(dtype)
            assert st.nbytes >= st.array.nbytes
        # kv_heads=None means heads (SPEC section 5)
        e = element_kwargs(opts, heads, heads, dk, dv)
        n_full = hla.state_elements(**e)
        e["kv_heads"] = None
        assert hla.state_elements(**e) == n_full
        # the state grows with every dimension (it holds statistics of them all)
        assert hla.state_elements(**element_kwargs(opts, heads, kv_heads, dk + 1, dv)) > n
        assert hla.state_elements(**element_kwargs(opts, heads, kv_heads, dk, dv + 1)) > n
    with pytest.raises(ValueError):
        hla.state_elements(**element_kwargs(opts, 4, 3, 5, 3))          # H % Hkv != 0
    with pytest.raises(ValueError):
        hla.state_elements(**element_kwargs(opts, 4, 2, 0, 3))          # dk = 0
    with pytest.raises(ValueError):
        hla.state_elements(op="hla4", heads=1, dk=2, dv=2)
    if opts["op"] != "hla2":
        with pytest.raises(ValueError):
            hla.state_elements(**dict(element_kwargs(opts, 4, 2, 5, 3), ridge=0.5))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_state_wrap_numpy_no_copy(dtype):
    """State.wrap over a numpy array: the same memory; mutations visible both ways; stepping changes
    the caller's array exactly like an owned State; a forward from it continues the sequences."""
    opts = variants("hla3", DK)[1]
    n = hla.state_elements(**element_kwargs(opts, H, HKV, DK, DV))
    buf = np.zeros((4, n), dtype=dtype)
    st = hla.State.wrap(buf, **cfg(opts))
    assert np.shares_memory(st.array, buf)
    assert array_address(st.array) == array_address(buf)
    assert st.array.shape == (4, n) and st.array.dtype == dtype
    buf[2, 3] = 7.0
    assert st.array[2, 3] == 7.0
    st.array[1, 0] = -3.0
    assert buf[1, 0] == -3.0
    st.reset()
    assert np.all(buf == 0)
    sname = "float64" if dtype == np.float64 else "float32"
    own = new_state(opts, batch=4, dtype=sname)
    q, k, v = (x.astype(dtype) for x in draw(4, 5, H, HKV, DK, DV, 47))
    outs = []
    for t in range(5):
        outs.append(st.step(q[:, t], k[:, t], v[:, t]))
        own.step(q[:, t], k[:, t], v[:, t])
    assert np.any(buf != 0)
    np.testing.assert_array_equal(buf, own.array)
    want, kappa = brute(q, k, v, **opts)
    check(np.stack(outs, axis=1), want, sname, kappa, "wrapped numpy state")
    # rows of a wrapped state advance the caller's rows only
    snapshot = buf.copy()
    st.step(q[:2, 0], k[:2, 0], v[:2, 0], rows=np.array([3, 1]))
    np.testing.assert_array_equal(buf[[0, 2]], snapshot[[0, 2]])
    assert np.any(buf[3] != snapshot[3]) and np.any(buf[1] != snapshot[1])
    # prefill writes into the caller's array too
    st.reset(rows=np.array([0]))
    st.prefill(q[:1], k[:1], v[:1], rows=np.array([0]))
    row_close(buf[:1], own.array[:1], 10 * SPEC_TOL[sname], "prefill into wrapped row")


def test_state_wrap_rejects():
    opts = options("hla2")
    n = hla.state_elements(**element_kwargs(opts, H, HKV, DK, DV))
    with pytest.raises(ValueError):
        hla.State.wrap(np.zeros((2, n + 1)), **cfg(opts))                 # wrong n
    with pytest.raises(ValueError):
        hla.State.wrap(np.zeros(n), **cfg(opts))                          # not [rows, n]
    with pytest.raises((TypeError, ValueError)):
        hla.State.wrap(np.zeros((2, n), dtype=np.int64), **cfg(opts))      # not a state dtype
    ro = np.zeros((2, n))
    ro.flags.writeable = False
    with pytest.raises((TypeError, ValueError)):
        hla.State.wrap(ro, **cfg(opts))                                    # read-only memory
    # rows with a stride (every other row of a buffer) are either shared or refused, never copied
    big = np.zeros((6, n))
    view = big[::2]
    try:
        st = hla.State.wrap(view, **cfg(opts))
    except (TypeError, ValueError):
        return
    assert np.shares_memory(st.array, big)
    q, k, v = draw(3, 1, H, HKV, DK, DV, 48)
    st.step(q[:, 0], k[:, 0], v[:, 0])
    assert np.any(big[::2] != 0) and np.all(big[1::2] == 0)


def documented_n(op, masked, normalize, ridge, heads, kv_heads, dk, dv):
    """n from docs/state-layout.md section 2/3 (part of the ABI, SPEC section 7)."""
    p = dv + (1 if normalize else 0)
    kv = {"hla2": dk * dk, "ahla": dk * p, "hla3": dk * dk + dk * p}[op]
    if op == "hla2":
        qh = (2 * dk * p if ridge > 0 else dk * p) if masked else dk * p
    else:
        qh = dk * p if masked else dk * dk
    return kv_heads * kv + heads * qh


@pytest.mark.parametrize("opts", CONFIGS, ids=lambda o: "%s-m%d-n%d-r%g" % (
    o["op"], o["masked"], o["normalize"], o["ridge"]))
def test_state_layout_documented(opts):
    """n and the leading kv-head blocks (S = sum g^(t-i) k k^T; P = sum g^(t-j) k v^T with the ones
    column of normalize) of State.array follow docs/state-layout.md."""
    heads, kv_heads, dk, dv = 4, 2, 3, 2
    op = opts["op"]
    assert hla.state_elements(**element_kwargs(opts, heads, kv_heads, dk, dv)) == documented_n(
        op, opts["masked"], opts["normalize"], opts["ridge"], heads, kv_heads, dk, dv)
    o = dict(opts, decay=0.8, scale=0.7)
    q, k, v = draw(2, 5, heads, kv_heads, dk, dv, 49)
    _, fin = hla.forward(q, k, v, output_final_state=True, **o)
    p = dv + (1 if opts["normalize"] else 0)
    w = 0.8 ** np.arange(4, -1, -1)                                   # gamma^(t-i), t = 4
    vh = np.concatenate([v, np.ones(v.shape[:-1] + (1,))], axis=-1) if opts["normalize"] else v
    kv_total = {"hla2": dk * dk, "ahla": dk * p, "hla3": dk * dk + dk * p}[op]
    for b in range(2):
        for g in range(kv_heads):
            row = fin.array[b, g * kv_total:(g + 1) * kv_total]
            S = np.einsum("t,ta,tc->ac", w, k[b, :, g], k[b, :, g])
            P = np.einsum("t,ta,tc->ac", w, k[b, :, g], vh[b, :, g])
            blocks = {"hla2": [S], "ahla": [P], "hla3": [S, P]}[op]
            want = np.concatenate([x.reshape(-1) for x in blocks])
            np.testing.assert_allclose(row, want, rtol=1e-12, atol=1e-12,
                                       err_msg="%s kv head %d, batch %d" % (op, g, b))
