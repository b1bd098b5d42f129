"""Streaming step of multi-query states (fewer (batch, kv head) units than threads: the engine advances
the shared kv statistics once, then runs the query heads in parallel) against the brute-force sums."""
import itertools

import numpy as np
import pytest

import hla
from bruteforce import evaluate


@pytest.mark.parametrize("op,masked,normalize,decay", list(itertools.product(
    ["hla2", "ahla", "hla3"], [True, False], [False, True], [1.0, 0.9])))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_step_multi_query_matches_sums(op, masked, normalize, decay, dtype):
    rng = np.random.default_rng(7)
    B, T, H, Hkv, dk, dv = 1, 9, 8, 1, 5, 3
    q = rng.standard_normal((B, T, H, dk))
    k = rng.standard_normal((B, T, Hkv, dk))
    v = rng.standard_normal((B, T, Hkv, dv))
    if normalize:                      # well-conditioned denominators: positive features
        q, k = np.abs(q), np.abs(k)
    opts = dict(op=op, masked=masked, normalize=normalize, decay=decay, scale=dk ** -0.5)
    want = evaluate(q, k, v, **opts)
    st = hla.State(op, batch=B, heads=H, kv_heads=Hkv, dk=dk, dv=dv, dtype=dtype, masked=masked,
                   normalize=normalize, decay=decay, scale=dk ** -0.5)
    got = np.stack([st.step(q[:, t].astype(dtype), k[:, t].astype(dtype), v[:, t].astype(dtype))
                    for t in range(T)], axis=1)
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err <= (1e-10 if dtype == "float64" else 1e-4), err


@pytest.mark.parametrize("op", ["hla2", "ahla", "hla3"])
def test_threaded_multi_query_step_matches_reference(op):
    # 128 heads of d = 128 reading one kv head: enough work per step for the engine's threads.
    rng = np.random.default_rng(11)
    B, T, H, Hkv, d = 1, 4, 128, 1, 128
    q = rng.standard_normal((B, T, H, d))
    k = rng.standard_normal((B, T, Hkv, d))
    v = rng.standard_normal((B, T, Hkv, d))
    opts = dict(op=op, decay=0.95, scale=d ** -0.5)
    st = hla.State(op, batch=B, heads=H, kv_heads=Hkv, dk=d, dv=d, dtype="float64", decay=0.95,
                   scale=d ** -0.5)
    got = np.stack([st.step(q[:, t], k[:, t], v[:, t]) for t in range(T)], axis=1)
    want = hla.reference(q, k, v, **opts)
    assert np.abs(got - want).max() / np.abs(want).max() <= 1e-10
