"""Property-based tests (hypothesis) over random shapes and options.

HLA_HYPOTHESIS_SCALE=N multiplies the number of examples (e.g. 20 for a long stress run)."""
import os

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import bruteforce as bf
import hla
from common import OPS, PATHS, assert_close, cast, make

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
SCALE = float(os.environ.get("HLA_HYPOTHESIS_SCALE", "1"))


def examples(n):
    return max(1, int(n * SCALE))


@st.composite
def problems(draw, max_t=24, max_t_hla3=14):
    op = draw(st.sampled_from(OPS))
    B = draw(st.integers(1, 2))
    Hkv = draw(st.integers(1, 3))
    H = Hkv * draw(st.integers(1, 3))
    dk = draw(st.integers(1, 6))
    dv = draw(st.integers(1, 6))
    T = draw(st.integers(1, max_t_hla3 if op == "hla3" else max_t))
    opts = dict(
        op=op,
        masked=draw(st.booleans()),
        normalize=draw(st.booleans()),
        decay=draw(st.one_of(st.just(1.0), st.floats(0.3, 1.0))),
        ridge=draw(st.one_of(st.just(0.0), st.floats(0.0, 1.0))) if op == "hla2" else 0.0,
        scale=dk ** -0.5,
    )
    seed = draw(st.integers(0, 2 ** 32 - 1))
    return (B, T, H, Hkv, dk, dv, seed), opts


CHUNKS = st.sampled_from([0, 1, 2, 3, 5, 8, 64])


@settings(max_examples=examples(150), **SETTINGS)
@given(problems(), CHUNKS, st.sampled_from(PATHS), st.sampled_from([np.float32, np.float64]))
# an output that is itself a near-cancellation (o = (q.k)^2 v at 1e-7 of its terms): the conditioning
# estimate must cover the feature-grouped sums of the step (bruteforce.evaluate)
@example(((1, 1, 1, 1, 4, 1, 11), dict(op="ahla", masked=False, normalize=False, decay=1.0, ridge=0.0, scale=0.5)),
         0, "serial", np.float32)
def test_forward_matches_bruteforce(problem, chunk_size, path, dtype):
    shape, opts = problem
    q, k, v = make(*shape)
    want, kappa = bf.evaluate(q, k, v, with_condition=True, **opts)
    o, _ = hla.forward(*cast((q, k, v), dtype), path=path, chunk_size=chunk_size, **opts)
    assert_close(o, want, dtype, kappa, "%s chunk %d" % (path, chunk_size))


@settings(max_examples=examples(80), **SETTINGS)
@given(problems(max_t=40, max_t_hla3=40), st.data())
def test_split_anywhere_continues(problem, data):
    """Splitting the sequence at random points, each piece through a random path and chunk
    size with the previous final state (sometimes round-tripped through bytes), gives the
    outputs of one whole forward."""
    shape, opts = problem
    q, k, v = make(*shape)
    T = q.shape[1]
    whole, whole_final = hla.forward(q, k, v, chunk_size=4, output_final_state=True, **opts)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, T - 1)), max_size=3))) - {T})
    bounds = [0] + cuts + [T]
    state, outs = None, []
    for s, e in zip(bounds[:-1], bounds[1:]):
        path = data.draw(st.sampled_from(PATHS))
        if state is not None and data.draw(st.booleans()):
            state = hla.State.from_bytes(state.to_bytes())
        o, state = hla.forward(q[:, s:e], k[:, s:e], v[:, s:e], initial_state=state,
                               output_final_state=True, path=path,
                               chunk_size=data.draw(CHUNKS), **opts)
        outs.append(o)
    _, kappa = bf.evaluate(q, k, v, with_condition=True, **opts)
    assert_close(np.concatenate(outs, axis=1), whole, np.float64, kappa, "split %s" % cuts)
    err = bf.rel_err(state.array, whole_final.array)
    assert err <= 1e-10, "final state after splits %s: %.3e" % (cuts, err)


@settings(max_examples=examples(80), **SETTINGS)
@given(problems(max_t=30, max_t_hla3=30), st.data())
def test_random_segment_trees(problem, data):
    """Segments of a random partition, combined in a random bracketing, are a carry-in equal to
    the final state of a forward over the same prefix."""
    shape, opts = problem
    B, T, H, Hkv, dk, dv, seed = shape
    q, k, v = make(B, T + 3, H, Hkv, dk, dv, seed)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, T - 1)), max_size=4))) - {T})
    bounds = [0] + cuts + [T]
    segs = [hla.summarize(q[:, s:e], k[:, s:e], v[:, s:e], chunk_size=data.draw(CHUNKS), **opts)
            for s, e in zip(bounds[:-1], bounds[1:])]
    while len(segs) > 1:
        i = data.draw(st.integers(0, len(segs) - 2))
        segs[i:i + 2] = [hla.combine(segs[i], segs[i + 1])]
    assert segs[0].length.tolist() == [T] * B
    tail = slice(T, T + 3)
    o1, _ = hla.forward(q[:, tail], k[:, tail], v[:, tail], initial_state=segs[0], **opts)
    whole, _ = hla.forward(q, k, v, **opts)
    _, kappa = bf.evaluate(q, k, v, with_condition=True, **opts)
    assert_close(o1, whole[:, tail], np.float64, kappa, "tree over %s" % cuts)
