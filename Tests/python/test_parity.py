"""Every op x masked x normalize x decay x ridge x grouped heads x dtype x path (and
hla.reference) against the independent numpy evaluation of the SPEC section 2 sums."""
import itertools

import numpy as np
import pytest

import bruteforce as bf
import hla
from common import (DTYPES, OPS, SPEC_TOL, all_outputs, assert_close, cast, make, options, record,
                    seed_of)

HEADS = ((4, 4), (4, 2), (4, 1))


def grid():
    for op in OPS:
        ridges = (0.0, 0.3) if op == "hla2" else (0.0,)
        for masked, normalize, decay, ridge, (H, Hkv) in itertools.product(
                (True, False), (False, True), (1.0, 0.9), ridges, HEADS):
            yield pytest.param(op, masked, normalize, decay, ridge, H, Hkv,
                               id="%s-%s-%s-g%s-l%s-H%d/%d" % (
                                   op, "masked" if masked else "unmasked",
                                   "norm" if normalize else "raw", decay, ridge, H, Hkv))


@pytest.mark.parametrize("op,masked,normalize,decay,ridge,H,Hkv", list(grid()))
def test_parity_grid(op, masked, normalize, decay, ridge, H, Hkv):
    B, T, dk, dv = 2, 19, 5, 3          # T not a multiple of the chunk size 5: 4 chunks
    q, k, v = make(B, T, H, Hkv, dk, dv, seed_of(op, masked, normalize, decay, ridge, H, Hkv))
    opts = options(op, masked, normalize, decay, ridge, scale=dk ** -0.5)
    want, kappa = bf.evaluate(q, k, v, with_condition=True, **opts)
    for dtype in DTYPES:
        got = all_outputs(*cast((q, k, v), dtype), chunk_size=5, **opts)
        for name, o in got.items():
            assert o.dtype == dtype and o.shape == (B, T, H, dv) and o.flags.c_contiguous
            err = assert_close(o, want, dtype, kappa, "%s %s" % (np.dtype(dtype).name, name))
            record(op, dtype, name, err, normalize)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("chunk_size", [1, 7, 64, 0, None])
def test_chunk_sizes(op, chunk_size):
    """T = 23 against chunk sizes 1 (one token per chunk), 7 (remainder 2), 64 (one partial
    chunk), 0 and None (automatic), with decay so that inter-chunk carries are weighted."""
    B, T, H, Hkv, dk, dv = 1, 23, 2, 1, 4, 6
    q, k, v = make(B, T, H, Hkv, dk, dv, seed_of("chunks", op, chunk_size))
    for masked in (True, False):
        opts = options(op, masked, decay=0.8, ridge=0.3 if op == "hla2" else 0.0,
                       scale=dk ** -0.5)
        want, kappa = bf.evaluate(q, k, v, with_condition=True, **opts)
        for dtype in DTYPES:
            for path in ("chunked", "scan"):
                o, _ = hla.forward(*cast((q, k, v), dtype), path=path, chunk_size=chunk_size,
                                   **opts)
                assert_close(o, want, dtype, kappa, "%s chunk %s" % (path, chunk_size))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", [
    (1, 1, 1, 1, 1, 1),     # everything 1
    (2, 1, 3, 3, 4, 2),     # T = 1
    (1, 2, 2, 2, 1, 5),     # dk = 1
    (3, 5, 6, 2, 3, 1),     # dv = 1, group 3
    (1, 13, 1, 1, 9, 2),    # dk > T
    (2, 40, 2, 1, 3, 7),    # T spans several 16-chunks
], ids=lambda s: "B%dT%dH%d/%ddk%ddv%d" % s)
def test_odd_shapes(op, shape):
    B, T, H, Hkv, dk, dv = shape
    if op == "hla3" and T > 24:
        T = 24
    q, k, v = make(B, T, H, Hkv, dk, dv, seed_of("odd", op, shape))
    opts = options(op, True, decay=0.95, scale=dk ** -0.5)
    want, kappa = bf.evaluate(q, k, v, with_condition=True, **opts)
    for dtype in DTYPES:
        for name, o in all_outputs(*cast((q, k, v), dtype), chunk_size=16, **opts).items():
            assert o.shape == (B, T, H, dv)
            assert_close(o, want, dtype, kappa, name)


def test_scale_and_eps_are_applied():
    """scale multiplies the queries (not the output) and eps enters the denominator."""
    q, k, v = make(1, 6, 1, 1, 3, 2, 7)
    for op in OPS:
        base = hla.reference(q, k, v, op=op, scale=0.7)
        ref = bf.evaluate(q, k, v, op=op, scale=0.7)
        assert bf.rel_err(base, ref) < 1e-10
        assert bf.rel_err(base, bf.evaluate(q, k, v, op=op)) > 1e-3
        o, _ = hla.forward(q, k, v, op=op, normalize=True, eps=3.0)
        assert bf.rel_err(o, bf.evaluate(q, k, v, op=op, normalize=True, eps=3.0)) < 1e-10


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("masked", [True, False])
def test_normalized_well_conditioned_strict(op, masked):
    """normalize=True on data whose denominators cannot cancel (positive queries and keys):
    kappa ~ 1, so float32 must meet SPEC's 1e-4 with no widening at all."""
    B, T, H, Hkv, dk, dv = 2, 30 if op != "hla3" else 20, 4, 2, 6, 3
    q, k, v = make(B, T, H, Hkv, dk, dv, seed_of("posnorm", op, masked))
    q, k = np.abs(q), np.abs(k)
    opts = options(op, masked, True, 0.95, 0.3 if op == "hla2" else 0.0, scale=dk ** -0.5)
    want, kappa = bf.evaluate(q, k, v, with_condition=True, **opts)
    assert kappa < 10
    for dtype in DTYPES:
        for name, o in all_outputs(*cast((q, k, v), dtype), chunk_size=7, **opts).items():
            err = bf.rel_err(o, want)
            assert err <= SPEC_TOL[dtype], "%s %s: %.3e" % (np.dtype(dtype).name, name, err)
