"""Long sequences (SPEC section 4): float32 for T up to 4096 (512 for hla3) against float64
evaluations of the same inputs, and the float64 paths against each other and against the
dense matrix forms of the operators (independent numpy, gamma = 1)."""
import numpy as np
import pytest

import bruteforce as bf
import hla
from common import PATHS, SPEC_TOL, make, seed_of


def run(q, k, v, dtype, path, **opts):
    o, _ = hla.forward(*(np.ascontiguousarray(x, dtype=dtype) for x in (q, k, v)), path=path,
                       **opts)
    return o


@pytest.mark.parametrize("op,T,decay", [("hla2", 4096, 1.0), ("hla2", 4096, 0.99),
                                        ("ahla", 4096, 1.0), ("hla3", 512, 1.0),
                                        ("hla3", 512, 0.98)])
def test_long_float32(op, T, decay):
    B, H, Hkv, dk, dv = 1, 2, 1, 16, 16
    q, k, v = make(B, T, H, Hkv, dk, dv, seed_of("long", op, T, decay))
    opts = dict(op=op, decay=decay, scale=dk ** -0.5, chunk_size=64)
    ref64 = run(q, k, v, np.float64, "chunked", **opts)
    for path in ("serial", "scan"):
        err = bf.rel_err(run(q, k, v, np.float64, path, **opts), ref64)
        assert err <= SPEC_TOL[np.float64], "float64 %s vs chunked: %.3e" % (path, err)
    for path in PATHS:
        err = bf.rel_err(run(q, k, v, np.float32, path, **opts), ref64)
        assert err <= SPEC_TOL[np.float32], "float32 %s: %.3e" % (path, err)


def test_long_hla2_matrix_form():
    """hla2 masked, gamma = 1: row t of ((L o QK^T)(L o QK^T)^T o L) V (SPEC section 2), T = 512."""
    B, T, H, dk, dv = 1, 512, 1, 16, 8
    q, k, v = make(B, T, H, H, dk, dv, 21)
    Q, K, V = q[0, :, 0] * dk ** -0.5, k[0, :, 0], v[0, :, 0]
    L = np.tril(np.ones((T, T)))
    A = L * (Q @ K.T)
    want = ((A @ A.T) * L) @ V
    for dtype in (np.float64, np.float32):
        for path in PATHS:
            o = run(q, k, v, dtype, path, op="hla2", scale=dk ** -0.5, chunk_size=64)
            err = bf.rel_err(o[0, :, 0], want)
            assert err <= SPEC_TOL[dtype], "%s %s: %.3e" % (np.dtype(dtype).name, path, err)


def test_long_hla3_matrix_form():
    """hla3 masked, gamma = 1: row t of (((L o QK^T)(L o QK^T)^T o L)(L o QK^T)) V, T = 256."""
    B, T, H, dk, dv = 1, 256, 1, 8, 8
    q, k, v = make(B, T, H, H, dk, dv, 22)
    Q, K, V = q[0, :, 0] * dk ** -0.5, k[0, :, 0], v[0, :, 0]
    L = np.tril(np.ones((T, T)))
    A = L * (Q @ K.T)
    want = (((A @ A.T) * L) @ A) @ V
    for dtype in (np.float64, np.float32):
        for path in PATHS:
            o = run(q, k, v, dtype, path, op="hla3", scale=dk ** -0.5, chunk_size=32)
            err = bf.rel_err(o[0, :, 0], want)
            assert err <= SPEC_TOL[dtype], "%s %s: %.3e" % (np.dtype(dtype).name, path, err)
