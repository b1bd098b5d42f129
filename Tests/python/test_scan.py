"""Segments: summarize / combine (associative, with decay) and carry-ins from segments."""
import pickle

import numpy as np
import pytest

import bruteforce as bf
import hla
from common import DTYPES, OPS, SPEC_TOL, assert_close, cast, make, options, seed_of

B, H, HKV, DK, DV = 2, 2, 1, 4, 3


def opts_for(op, masked=True, normalize=False):
    return options(op, masked, normalize, 0.85, 0.3 if op == "hla2" else 0.0, scale=DK ** -0.5)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("normalize", [False, True])
def test_three_segments_associative_and_carry_in(op, masked, normalize):
    cuts = (7, 12, 20)          # A = [0,7), B = [7,12), C = [12,20), tail = [20,26)
    T = 26
    q, k, v = make(B, T, H, HKV, DK, DV, seed_of("scan3", op, masked, normalize))
    opts = opts_for(op, masked, normalize)
    want, kappa = bf.evaluate(q, k, v, with_condition=True, **opts)
    for dtype in DTYPES:
        qc, kc, vc = cast((q, k, v), dtype)
        bounds = (0,) + cuts
        A, Bs, C = (hla.summarize(qc[:, s:e], kc[:, s:e], vc[:, s:e], chunk_size=3, **opts)
                    for s, e in zip(bounds[:-1], bounds[1:]))
        assert [x.length.tolist() for x in (A, Bs, C)] == [[7] * B, [5] * B, [8] * B]
        assert A.length.dtype == np.int64 and A.array.dtype == dtype
        assert A.array.shape == (B, hla.summary_elements(op, heads=H, kv_heads=HKV, dk=DK, dv=DV,
                                                         masked=masked, normalize=normalize,
                                                         ridge=opts["ridge"]))
        left = hla.combine(hla.combine(A, Bs), C)
        right = hla.combine(A, hla.combine(Bs, C))
        assert left.length.tolist() == right.length.tolist() == [20] * B
        whole = hla.summarize(qc[:, :20], kc[:, :20], vc[:, :20], **opts)
        _, fin20 = hla.forward(qc[:, :20], kc[:, :20], vc[:, :20], output_final_state=True, **opts)
        _, fin_all = hla.forward(qc, kc, vc, output_final_state=True, **opts)
        tail = slice(20, T)
        outs = {}
        for name, carry in (("(AB)C", left), ("A(BC)", right), ("whole", whole),
                            ("state", hla.state_from_segment(left)),
                            ("bytes", hla.Segment.from_bytes(left.to_bytes())),
                            ("pickle", pickle.loads(pickle.dumps(right)))):
            for path in ("chunked", "serial", "scan"):
                o, fin = hla.forward(qc[:, tail], kc[:, tail], vc[:, tail], initial_state=carry,
                                     path=path, chunk_size=4, output_final_state=True, **opts)
                assert_close(o, want[:, tail], dtype, kappa, "carry %s, %s" % (name, path))
                err = bf.rel_err(fin.array.astype(np.float64), fin_all.array.astype(np.float64))
                assert err <= SPEC_TOL[dtype], "final state, carry %s, %s: %.3e" % (name, path, err)
                outs[name, path] = o
        # carry-ins that start each segment: the exclusive scan
        for s, carry in ((7, A), (12, hla.combine(A, Bs))):
            o, _ = hla.forward(qc[:, s:], kc[:, s:], vc[:, s:], initial_state=carry, **opts)
            assert_close(o, want[:, s:], dtype, kappa, "carry into %d" % s)
        st = hla.state_from_segment(left)
        assert st.array.shape == fin20.array.shape and st.dtype == dtype
        err = bf.rel_err(st.array.astype(np.float64), fin20.array.astype(np.float64))
        assert err <= SPEC_TOL[dtype], "state_from_segment vs forward's final state: %.3e" % err


@pytest.mark.parametrize("op", OPS)
def test_combine_is_not_commutative(op):
    """a then b differs from b then a (catches a combine that ignores the order/decay)."""
    q, k, v = make(1, 10, 1, 1, 3, 3, seed_of("noncomm", op))
    opts = opts_for(op)
    a = hla.summarize(q[:, :4], k[:, :4], v[:, :4], **opts)
    b = hla.summarize(q[:, 4:], k[:, 4:], v[:, 4:], **opts)
    tail = make(1, 3, 1, 1, 3, 3, 99)
    o1, _ = hla.forward(*tail, initial_state=hla.combine(a, b), **opts)
    o2, _ = hla.forward(*tail, initial_state=hla.combine(b, a), **opts)
    assert bf.rel_err(o1, o2) > 1e-6


@pytest.mark.parametrize("op", OPS)
def test_many_single_token_segments(op):
    """A scan over T one-token segments (every carry-in) reproduces the outputs token by token."""
    T = 9
    q, k, v = make(1, T, 2, 2, 3, 2, seed_of("tok", op))
    opts = opts_for(op)
    want = bf.evaluate(q, k, v, **opts)
    segs = [hla.summarize(q[:, t:t + 1], k[:, t:t + 1], v[:, t:t + 1], **opts) for t in range(T)]
    carry = None
    for t in range(T):
        o, _ = hla.forward(q[:, t:t + 1], k[:, t:t + 1], v[:, t:t + 1], initial_state=carry,
                           **opts)
        assert bf.rel_err(o, want[:, t:t + 1]) < 1e-10
        carry = segs[t] if carry is None else hla.combine(carry, segs[t])
    assert carry.length.tolist() == [T]
    # a balanced tree gives the same carry as the left fold
    tree = segs
    while len(tree) > 1:
        tree = [hla.combine(tree[i], tree[i + 1]) if i + 1 < len(tree) else tree[i]
                for i in range(0, len(tree), 2)]
    extra = make(1, 4, 2, 2, 3, 2, 5)
    o1, _ = hla.forward(*extra, initial_state=carry, **opts)
    o2, _ = hla.forward(*extra, initial_state=tree[0], **opts)
    assert bf.rel_err(o1, o2) < 1e-10


def test_segment_interface():
    q, k, v = make(2, 5, 4, 2, 3, 6, 1)
    s = hla.summarize(q, k, v, op="hla3", masked=False, decay=0.5, scale=0.5)
    assert (s.op, s.rows, s.heads, s.kv_heads, s.dk, s.dv) == ("hla3", 2, 4, 2, 3, 6)
    assert s.length.tolist() == [5, 5]
    assert s.dtype == np.float64 and s.masked is False and s.decay == 0.5 and s.scale == 0.5
    m = hla.summary_elements("hla3", heads=4, kv_heads=2, dk=3, dv=6, masked=False)
    assert s.array.shape == (2, m) and s.nbytes == 2 * m * 8
    assert repr(s).startswith("hla.Segment(") and "length=[5, 5]" in repr(s)
    b = s.to_bytes()
    s2 = hla.Segment.from_bytes(b)
    assert s2.to_bytes() == b
    np.testing.assert_array_equal(s2.array, s.array)
    np.testing.assert_array_equal(s2.length, s.length)
    with pytest.raises(TypeError):
        hla.Segment()
    with pytest.raises(AttributeError):
        s.length = 3
    with pytest.raises(ValueError):
        s.length[0] = 3                        # the lengths are a read-only view
    # a Segment over caller memory, without a copy
    arr, ln = s.array.copy(), np.array([5, 5], np.int64)
    w = hla.Segment.wrap(arr, ln, op="hla3", heads=4, kv_heads=2, dk=3, dv=6, masked=False,
                         decay=0.5, scale=0.5)
    assert w.array is arr and w.to_bytes() == b
    with pytest.raises(ValueError, match="length"):
        hla.Segment.wrap(arr, ln[:1], op="hla3", heads=4, kv_heads=2, dk=3, dv=6, masked=False)
    # segment summaries are constant-size too
    q2, k2, v2 = make(2, 30, 4, 2, 3, 6, 2)
    s2 = hla.summarize(q2, k2, v2, op="hla3", masked=False, decay=0.5, scale=0.5)
    assert s2.nbytes == s.nbytes and len(s2.to_bytes()) == len(b)


def test_combine_rejects_mismatch():
    q, k, v = make(1, 4, 1, 1, 2, 2, 3)
    a = hla.summarize(q, k, v)
    with pytest.raises(ValueError, match="decay"):
        hla.combine(a, hla.summarize(q, k, v, decay=0.5))
    with pytest.raises(ValueError, match="op"):
        hla.combine(a, hla.summarize(q, k, v, op="ahla"))
    with pytest.raises(TypeError):
        hla.combine(a, hla.summarize(*cast((q, k, v), np.float32)))
    with pytest.raises(TypeError, match="b"):
        hla.combine(a, 1)
    with pytest.raises(TypeError, match="a"):
        hla.combine(hla.State(batch=1, heads=1, dk=2, dv=2), a)
    assert hla.combine(a, a).length.tolist() == [8]
    with pytest.raises(ValueError, match=r"\bb\b"):       # row counts differ
        hla.combine(a, hla.summarize(*make(2, 4, 1, 1, 2, 2, 3)))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("d, auto", [(64, 64), (128, 128), (100, 128), (96, 64)])
def test_automatic_chunk_of_the_scan_path_and_summaries(op, d, auto):
    """chunk_size None on the scan path and in summarize is 64 for head sizes up to 96 and 128 above
    (docs/spec.md §1); the chunked path's is 32 at every head size."""
    T = 2 * auto + 5
    q, k, v = cast(make(1, T, 2, 2, d, 8 if d == 100 else d, seed_of("autochunk", op, d)), np.float32)
    o = dict(op=op, scale=d ** -0.5)
    got, _ = hla.forward(q, k, v, path="scan", **o)
    np.testing.assert_array_equal(got, hla.forward(q, k, v, path="scan", chunk_size=auto, **o)[0])
    assert not np.array_equal(got, hla.forward(q, k, v, path="scan", chunk_size=auto // 2, **o)[0])
    s = hla.summarize(q, k, v, **o)
    np.testing.assert_array_equal(s.array, hla.summarize(q, k, v, chunk_size=auto, **o).array)
    chunked, _ = hla.forward(q, k, v, path="chunked", **o)
    np.testing.assert_array_equal(chunked, hla.forward(q, k, v, path="chunked", chunk_size=32, **o)[0])
    assert not np.array_equal(chunked, hla.forward(q, k, v, path="chunked", chunk_size=64, **o)[0])
