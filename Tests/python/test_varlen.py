"""Packed variable-length batches (SPEC sections 5 and 8): cu_seqlens with B = 1 and N sequences of odd
lengths (including length 1) in hla.forward (every path), hla.summarize and State.prefill equal each
sequence run alone (outputs against the float64 brute force of that sequence, final state rows against
the sequence's own final state), also from an initial state of N rows (a State, a state array or a
Segment). Bad cu_seqlens raise ValueError."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

import hla
from framework_util import (OPS, PATHS, SPEC_TOL, brute, brute_packed, check, config_kwargs, draw,
                            element_kwargs, opts_id, options, row_close, seed_of, state_dtype_name,
                            variants)

H, HKV, DK, DV = 4, 2, 6, 5
CHUNK = 4
LENGTHS = (7, 1, 13, 3, 9, 1)                 # odd lengths, two of them 1, across chunk boundaries
PREFIXES = (3, 5, 1, 2, 7, 1)                 # initial states: these many earlier tokens per sequence
NAMES = ("float64", "float32")
NP = {"float64": np.float64, "float32": np.float32}


def offsets(lengths):
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def packed(lengths, seed, name):
    """q, k, v [1, sum(lengths), ...] of dtype name and their float64 values."""
    arrays = tuple(x.astype(NP[name]) for x in draw(1, int(sum(lengths)), H, HKV, DK, DV, seed))
    return arrays, tuple(x.astype(np.float64) for x in arrays)


def alone(x, cu, i):
    return x[:, cu[i]:cu[i + 1]]


def state_tol(name):
    return 10 * SPEC_TOL[name]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("op", OPS)
def test_forward_packed_equals_alone(op, name, path):
    cu = offsets(LENGTHS)
    N = len(LENGTHS)
    (q, k, v), (q64, k64, v64) = packed(LENGTHS, seed_of("varlen", op, name), name)
    for opts in variants(op, DK):
        want, kappa = brute_packed(q64, k64, v64, cu, **opts)
        o, fin = hla.forward(q, k, v, cu_seqlens=cu, path=path, chunk_size=CHUNK,
                             output_final_state=True, **opts)
        assert o.shape == (1, cu[-1], H, DV) and o.dtype == NP[name]
        check(o, want, name, kappa, "%s %s packed %s" % (op, path, opts_id(opts)))
        if path == "chunked":
            check(hla.reference(q, k, v, cu_seqlens=cu, **opts), want, name, kappa,
                  "%s reference packed %s" % (op, opts_id(opts)))
        n = hla.state_elements(**element_kwargs(opts, H, HKV, DK, DV))
        assert isinstance(fin, hla.State)
        assert fin.array.shape == (N, n) and fin.array.dtype == NP[name]
        for i in range(N):
            oi, fi = hla.forward(alone(q, cu, i), alone(k, cu, i), alone(v, cu, i), path=path,
                                 chunk_size=CHUNK, output_final_state=True, **opts)
            check(o[:, cu[i]:cu[i + 1]], oi.astype(np.float64), name, kappa,
                  "%s %s sequence %d packed vs alone" % (op, path, i))
            row_close(fin.array[i:i + 1], fi.array, state_tol(name),
                      "%s %s final state row %d" % (op, path, i))


def prefix_states(op, name, opts, seed):
    """Per sequence i: PREFIXES[i] earlier tokens (float64 values) and the state after them, as an
    [N, n] array built from each prefix run alone."""
    pre, pre64 = packed(PREFIXES, seed, name)
    cu_p = offsets(PREFIXES)
    rows = []
    for i in range(len(PREFIXES)):
        _, f = hla.forward(*(alone(x, cu_p, i) for x in pre), output_final_state=True, **opts)
        rows.append(f.array)
    return pre, pre64, cu_p, np.concatenate(rows, axis=0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("op", OPS)
def test_forward_packed_from_initial_state(op, name):
    """initial_state of N rows: a state array [N, n], a State of N rows, a Segment of N rows (from
    summarize with cu_seqlens); outputs and final rows equal prefix + sequence run alone."""
    cu = offsets(LENGTHS)
    N = len(LENGTHS)
    (q, k, v), (q64, k64, v64) = packed(LENGTHS, seed_of("varlen-init", op, name), name)
    for opts in variants(op, DK)[1:3]:
        pre, pre64, cu_p, init = prefix_states(op, name, opts, seed_of("varlen-pre", op, name))
        seg = hla.summarize(*pre, cu_seqlens=cu_p, **opts)
        assert np.array_equal(np.asarray(seg.length).reshape(-1), PREFIXES)
        wrapped = hla.State.wrap(init.copy(), **config_kwargs(opts, H, HKV, DK, DV))
        # expected: each sequence preceded by its prefix, alone
        wants, finals, kappa = [], [], 1.0
        for i in range(N):
            full = [np.concatenate([alone(p, cu_p, i), alone(x, cu, i)], axis=1)
                    for p, x in zip(pre64, (q64, k64, v64))]
            w, kp = brute(*full, **opts)
            wants.append(w[:, PREFIXES[i]:])
            kappa = max(kappa, kp)
            _, f = hla.forward(*(np.concatenate([alone(p, cu_p, i), alone(x, cu, i)], axis=1)
                                 for p, x in zip(pre, (q, k, v))), output_final_state=True, **opts)
            finals.append(f.array)
        want = np.concatenate(wants, axis=1)
        finals = np.concatenate(finals, axis=0)
        for what, carry in (("array", init), ("State", wrapped), ("Segment", seg)):
            for path in PATHS:
                o, fin = hla.forward(q, k, v, cu_seqlens=cu, initial_state=carry, path=path,
                                     chunk_size=CHUNK, output_final_state=True, **opts)
                check(o, want, name, kappa, "%s %s packed from %s %s" % (op, path, what,
                                                                          opts_id(opts)))
                row_close(fin.array, finals, state_tol(name), "%s %s final rows from %s" % (
                    op, path, what))
        np.testing.assert_array_equal(wrapped.array, init)        # forward only reads its carry
        with pytest.raises(ValueError):                             # N rows needed, not N - 1
            hla.forward(q, k, v, cu_seqlens=cu, initial_state=init[:-1], **opts)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("op", OPS)
def test_summarize_packed(op, name):
    """summarize with cu_seqlens: one summary row per sequence, equal to summarizing each alone;
    row-wise combine of two packed summaries carries a third packed forward."""
    cu = offsets(LENGTHS)
    N = len(LENGTHS)
    (q, k, v), (q64, k64, v64) = packed(LENGTHS, seed_of("varlen-sum", op, name), name)
    for opts in variants(op, DK)[:3]:
        seg = hla.summarize(q, k, v, cu_seqlens=cu, **opts)
        assert seg.array.shape[0] == N and seg.array.dtype == NP[name]
        assert np.array_equal(np.asarray(seg.length).reshape(-1), LENGTHS)
        for i in range(N):
            si = hla.summarize(alone(q, cu, i), alone(k, cu, i), alone(v, cu, i), **opts)
            row_close(seg.array[i:i + 1], si.array, state_tol(name), "%s summary row %d" % (op, i))
        # three packed pieces of the same N sequences: (P1 then P2) carries P3
        pre, pre64, cu_p, _ = prefix_states(op, name, opts, seed_of("varlen-sum-pre", op, name))
        lens3 = (2, 3, 1, 1, 5, 2)
        (q3, k3, v3), (q364, k364, v364) = packed(lens3, seed_of("varlen-sum3", op, name), name)
        cu3 = offsets(lens3)
        c = hla.combine(hla.summarize(*pre, cu_seqlens=cu_p, **opts), seg)
        assert np.array_equal(np.asarray(c.length).reshape(-1), np.add(PREFIXES, LENGTHS))
        wants, kappa = [], 1.0
        for i in range(N):
            full = [np.concatenate([alone(p, cu_p, i), alone(x, cu, i), alone(y, cu3, i)], axis=1)
                    for p, x, y in zip(pre64, (q64, k64, v64), (q364, k364, v364))]
            w, kp = brute(*full, **opts)
            wants.append(w[:, PREFIXES[i] + LENGTHS[i]:])
            kappa = max(kappa, kp)
        for path in PATHS:
            o, _ = hla.forward(q3, k3, v3, cu_seqlens=cu3, initial_state=c, path=path,
                               chunk_size=CHUNK, **opts)
            check(o, np.concatenate(wants, axis=1), name, kappa,
                  "%s %s from combined packed summaries %s" % (op, path, opts_id(opts)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("op", OPS)
def test_prefill_packed(op, name):
    """State.prefill(cu_seqlens=...) on N rows, twice (a continued prefill), then one step."""
    cu = offsets(LENGTHS)
    N = len(LENGTHS)
    opts = variants(op, DK)[1]
    (q, k, v), (q64, k64, v64) = packed(LENGTHS, seed_of("varlen-prefill", op, name), name)
    pre, pre64, cu_p, init = prefix_states(op, name, opts, seed_of("varlen-prefill-pre", op, name))
    st = hla.State(batch=N, dtype=state_dtype_name(name), **config_kwargs(opts, H, HKV, DK, DV))
    o0 = st.prefill(*pre, cu_seqlens=cu_p)
    check(o0, brute_packed(*pre64, cu_p, **opts)[0], name, what="%s first prefill" % op)
    row_close(st.array, init, state_tol(name), "%s prefill rows vs alone" % op)
    o = st.prefill(q, k, v, cu_seqlens=cu)
    assert o.shape == (1, cu[-1], H, DV) and o.dtype == NP[name]
    (qt, kt, vt), (qt64, kt64, vt64) = packed((N,), seed_of("varlen-prefill-tok", op, name), name)
    o_t = st.step(qt[0], kt[0], vt[0])
    wants, lasts, kappa = [], [], 1.0
    for i in range(N):
        full = [np.concatenate([alone(p, cu_p, i), alone(x, cu, i), t[:, i:i + 1]], axis=1)
                for p, x, t in zip(pre64, (q64, k64, v64), (qt64, kt64, vt64))]
        w, kp = brute(*full, **opts)
        wants.append(w[:, PREFIXES[i]:-1])
        lasts.append(w[0, -1])
        kappa = max(kappa, kp)
    check(o, np.concatenate(wants, axis=1), name, kappa, "%s packed prefill" % op)
    check(o_t, np.stack(lasts), name, kappa, "%s step after packed prefill" % op)


@pytest.mark.parametrize("op", OPS)
def test_prefill_packed_into_rows(op):
    """prefill(rows=..., cu_seqlens=...): sequence i lands in row rows[i]; other rows untouched."""
    lengths = (5, 1, 3)
    cu = offsets(lengths)
    opts = variants(op, DK)[0]
    (q, k, v), (q64, k64, v64) = packed(lengths, seed_of("varlen-rows", op), "float64")
    st = hla.State(batch=8, dtype="float64", **config_kwargs(opts, H, HKV, DK, DV))
    st.array[...] = np.random.default_rng(5).standard_normal(st.array.shape)
    before = st.array.copy()
    rows = np.array([6, 0, 3], dtype=np.int64)
    ref = hla.State.wrap(np.ascontiguousarray(before[rows]), **config_kwargs(opts, H, HKV, DK, DV))
    o = st.prefill(q, k, v, rows=rows, cu_seqlens=cu)
    o_ref = ref.prefill(q, k, v, cu_seqlens=cu)
    check(o, o_ref, "float64", what="%s prefill rows vs compact state" % op)
    row_close(st.array[rows], ref.array, state_tol("float64"), "%s prefilled rows" % op)
    others = [r for r in range(8) if r not in rows]
    np.testing.assert_array_equal(st.array[others], before[others])
    # from zeroed rows it is the brute force of each sequence
    st.reset(rows=rows)
    o = st.prefill(q, k, v, rows=rows, cu_seqlens=cu)
    check(o, brute_packed(q64, k64, v64, cu, **opts)[0], "float64", what="%s after reset" % op)
    np.testing.assert_array_equal(st.array[others], before[others])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hs.lists(hs.integers(1, 9), min_size=1, max_size=6), hs.sampled_from(OPS),
       hs.sampled_from(PATHS), hs.integers(1, 6), hs.integers(0, 2 ** 31 - 1))
def test_packed_property(lengths, op, path, chunk, seed):
    """Any lengths >= 1 and chunk sizes: packed = the brute force of each sequence alone."""
    cu = offsets(lengths)
    (q, k, v), (q64, k64, v64) = packed(lengths, seed, "float64")
    opts = variants(op, DK)[seed % 3]
    want, kappa = brute_packed(q64, k64, v64, cu, **opts)
    o, fin = hla.forward(q, k, v, cu_seqlens=cu, path=path, chunk_size=chunk,
                         output_final_state=True, **opts)
    check(o, want, "float64", kappa, "%s %s chunk %d lengths %s" % (op, path, chunk, lengths))
    assert fin.array.shape[0] == len(lengths)


BAD_CU = {
    "not starting at 0": [1, 4, 10],
    "decreasing": [0, 6, 4, 10],
    "not ending at T (short)": [0, 4, 9],
    "not ending at T (beyond)": [0, 4, 11],
    "negative": [0, -2, 10],
}


@pytest.mark.parametrize("what", sorted(BAD_CU))
def test_bad_cu_seqlens(what):
    (q, k, v), _ = packed((10,), 17, "float64")
    cu = np.array(BAD_CU[what], dtype=np.int64)
    opts = options("hla2")
    for path in PATHS:
        with pytest.raises(ValueError):
            hla.forward(q, k, v, cu_seqlens=cu, path=path)
    with pytest.raises(ValueError):
        hla.forward(q, k, v, cu_seqlens=cu.astype(np.int32))
    with pytest.raises(ValueError):
        hla.summarize(q, k, v, cu_seqlens=cu, **opts)
    with pytest.raises(ValueError):
        hla.reference(q, k, v, cu_seqlens=cu, **opts)
    st = hla.State(batch=4, dtype="float64", **config_kwargs(opts, H, HKV, DK, DV))
    with pytest.raises(ValueError):
        st.prefill(q, k, v, cu_seqlens=cu)
    assert np.all(st.array == 0)                                  # nothing written


def test_cu_seqlens_needs_batch_1():
    (q, k, v), _ = packed((10,), 18, "float64")
    q2, k2, v2 = (np.concatenate([x, x], axis=0) for x in (q, k, v))     # B = 2
    cu = offsets((4, 6))
    opts = options("ahla")
    for path in PATHS:
        with pytest.raises(ValueError):
            hla.forward(q2, k2, v2, cu_seqlens=cu, path=path, **opts)
    with pytest.raises(ValueError):
        hla.summarize(q2, k2, v2, cu_seqlens=cu, **opts)
    st = hla.State(batch=4, dtype="float64", **config_kwargs(opts, H, HKV, DK, DV))
    with pytest.raises(ValueError):
        st.prefill(q2, k2, v2, cu_seqlens=cu)
    with pytest.raises(ValueError):                               # 3 sequences, 2 rows
        st.prefill(q, k, v, cu_seqlens=offsets((4, 1, 5)), rows=np.array([0, 1]))
    with pytest.raises((ValueError, TypeError)):                  # not an integer array
        hla.forward(q, k, v, cu_seqlens=cu.astype(np.float64))
    with pytest.raises(ValueError):                               # not one-dimensional
        hla.forward(q, k, v, cu_seqlens=cu.reshape(1, -1))
    # the valid offsets work on B = 1
    o, _ = hla.forward(q, k, v, cu_seqlens=cu, **opts)
    assert o.shape == (1, 10, H, DV)
