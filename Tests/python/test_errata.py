"""One named case per SPEC section 3 erratum, through the Python API: an implementation of the
paper's printed identity would fail each of these (they are also covered by the parity grid)."""
import numpy as np
import pytest

import bruteforce as bf
import hla
from common import DTYPES, PATHS, assert_close, cast, make


@pytest.mark.parametrize("path", PATHS)
def test_erratum1_hla3_masked(path):
    """Third order: S^K S^Q P - G1 - G2 - G3 keeps the triples whose maximum is attained twice;
    the triples a = c > u must be dropped and those G2 removes must stay. T = 12 with chunk 5
    puts such triples inside chunks and across chunk boundaries."""
    q, k, v = make(1, 12, 1, 1, 3, 2, 101)
    want, kappa = bf.evaluate(q, k, v, op="hla3", scale=3 ** -0.5, with_condition=True)
    for dtype in DTYPES:
        o, _ = hla.forward(*cast((q, k, v), dtype), op="hla3", scale=3 ** -0.5, path=path,
                           chunk_size=5)
        assert_close(o, want, dtype, kappa, "hla3 " + path)


@pytest.mark.parametrize("path", PATHS)
def test_erratum2_decayed_hla2(path):
    """Decayed second order: G_t = g^2 G + g k k^T C_{t-1} (not g G + k k^T C_{t-1}) and
    G_AB = rho_B^2 G_A + G_B + rho_B S_B C_A; checked serially, chunked and by segments."""
    q, k, v = make(2, 17, 2, 2, 4, 3, 102)
    opts = dict(op="hla2", decay=0.7, ridge=0.2, scale=0.5)
    want, kappa = bf.evaluate(q, k, v, with_condition=True, **opts)
    for dtype in DTYPES:
        qc, kc, vc = cast((q, k, v), dtype)
        o, _ = hla.forward(qc, kc, vc, path=path, chunk_size=4, **opts)
        assert_close(o, want, dtype, kappa, "hla2 " + path)
        a = hla.summarize(qc[:, :5], kc[:, :5], vc[:, :5], **opts)
        b = hla.summarize(qc[:, 5:11], kc[:, 5:11], vc[:, 5:11], **opts)
        o, _ = hla.forward(qc[:, 11:], kc[:, 11:], vc[:, 11:], path=path,
                           initial_state=hla.combine(a, b), **opts)
        assert_close(o, want[:, 11:], dtype, kappa, "hla2 combine " + path)


@pytest.mark.parametrize("path", PATHS)
def test_erratum3_decayed_ahla_scan(path):
    """Decayed AHLA: the key-query moment R is not attenuated when segments are concatenated
    (R_AB = R_A + R_B); a scan over several segments with decay 0.6 tells the difference."""
    q, k, v = make(2, 20, 2, 1, 3, 3, 103)
    opts = dict(op="ahla", decay=0.6, scale=3 ** -0.5)
    want, kappa = bf.evaluate(q, k, v, with_condition=True, **opts)
    for dtype in DTYPES:
        qc, kc, vc = cast((q, k, v), dtype)
        o, _ = hla.forward(qc, kc, vc, path=path, chunk_size=3, **opts)
        assert_close(o, want, dtype, kappa, "ahla " + path)
        segs = [hla.summarize(qc[:, s:s + 4], kc[:, s:s + 4], vc[:, s:s + 4], **opts)
                for s in range(0, 16, 4)]
        carry = hla.combine(hla.combine(segs[0], segs[1]), hla.combine(segs[2], segs[3]))
        o, _ = hla.forward(qc[:, 16:], kc[:, 16:], vc[:, 16:], path=path, initial_state=carry,
                           **opts)
        assert_close(o, want[:, 16:], dtype, kappa, "ahla combine " + path)
