"""The numpy brute force (bruteforce.py) checked against closed forms derived independently
(matrix forms at gamma = 1, recurrences of the paper with the SPEC errata applied). These do
not touch the library: they make sure the ground truth of the other tests is itself right."""
import numpy as np
import pytest

import bruteforce as bf


def data(B=2, T=9, H=2, Hkv=2, dk=3, dv=4, seed=0):
    r = np.random.default_rng(seed)
    return (r.standard_normal((B, T, H, dk)), r.standard_normal((B, T, Hkv, dk)),
            r.standard_normal((B, T, Hkv, dv)))


def heads(q, k, v):
    """Single (b, h) slices as [T, D] matrices (H == Hkv)."""
    B, T, H, _ = q.shape
    for b in range(B):
        for h in range(H):
            yield b, h, q[b, :, h], k[b, :, h], v[b, :, h]


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11 * max(1.0, np.max(np.abs(b))))


def test_hla2_masked_matrix_form():
    q, k, v = data()
    o = bf.evaluate(q, k, v, op="hla2")
    for b, h, Q, K, V in heads(q, k, v):
        L = np.tril(np.ones((len(Q), len(Q))))
        A = L * (Q @ K.T)
        close(o[b, :, h], ((A @ A.T) * L) @ V)


@pytest.mark.parametrize("masked", [True, False])
def test_hla2_decayed_ridge_recurrence(masked):
    # S_t = g S + k k^T, C_t = g C + q v^T, G_t = g^2 G + g k k^T C_{t-1} (SPEC erratum 2)
    q, k, v = data(seed=1)
    g, lam = 0.8, 0.3
    o = bf.evaluate(q, k, v, op="hla2", masked=masked, decay=g, ridge=lam)
    for b, h, Q, K, V in heads(q, k, v):
        dk, dv = Q.shape[1], V.shape[1]
        S, C, G = np.zeros((dk, dk)), np.zeros((dk, dv)), np.zeros((dk, dv))
        for t in range(len(Q)):
            kk = np.outer(K[t], K[t])
            G = g * g * G + g * kk @ C
            S = g * S + kk
            C = g * C + np.outer(Q[t], V[t])
            M = (S + lam * np.eye(dk)) @ C - (G if masked else 0.0)
            close(o[b, t, h], Q[t] @ M)


@pytest.mark.parametrize("masked", [True, False])
def test_ahla_recurrences(masked):
    q, k, v = data(seed=2)
    g = 0.7
    o = bf.evaluate(q, k, v, op="ahla", masked=masked, decay=g)
    for b, h, Q, K, V in heads(q, k, v):
        dk, dv = Q.shape[1], V.shape[1]
        P, E, R = np.zeros((dk, dv)), np.zeros((dk, dv)), np.zeros((dk, dk))
        for t in range(len(Q)):
            P = g * P + np.outer(K[t], V[t])           # Algorithm 2
            E = g * E + np.outer(K[t], Q[t] @ P)
            R = g * R + np.outer(K[t], Q[t])
            close(o[b, t, h], Q[t] @ E if masked else Q[t] @ R @ P)


def test_hla3_masked_theorem_forms():
    q, k, v = data(seed=3, T=8)
    o = bf.evaluate(q, k, v, op="hla3")
    for b, h, Q, K, V in heads(q, k, v):
        T = len(Q)
        L = np.tril(np.ones((T, T)))
        A = L * (Q @ K.T)
        close(o[b, :, h], (((A @ A.T) * L) @ A) @ V)
        acc = np.zeros((Q.shape[1], V.shape[1]))
        for t in range(T):
            S = K[: t + 1].T @ K[: t + 1]
            P = K[: t + 1].T @ V[: t + 1]
            acc = acc + S @ np.outer(Q[t], Q[t]) @ P
            close(o[b, t, h], Q[t] @ acc)


@pytest.mark.parametrize("masked", [True, False])
def test_hla3_decayed_forms(masked):
    q, k, v = data(seed=4, T=7)
    g = 0.85
    o = bf.evaluate(q, k, v, op="hla3", masked=masked, decay=g)
    for b, h, Q, K, V in heads(q, k, v):
        dk, dv = Q.shape[1], V.shape[1]
        S, SQ, P = np.zeros((dk, dk)), np.zeros((dk, dk)), np.zeros((dk, dv))
        acc = np.zeros((dk, dv))
        for t in range(len(Q)):
            S = g * S + np.outer(K[t], K[t])
            SQ = g * SQ + np.outer(Q[t], Q[t])
            P = g * P + np.outer(K[t], V[t])
            acc = g ** 3 * acc + S @ np.outer(Q[t], Q[t]) @ P
            close(o[b, t, h], Q[t] @ (acc if masked else S @ SQ @ P))


def test_hla3_paper_identity_is_wrong():
    """SPEC erratum 1: the paper's identity keeps the triples whose maximum index is attained
    at least twice; the true masked sum (a <= u, c <= u) differs -- the ground truth must too."""
    q, k, v = data(seed=5, T=6, B=1, H=1, Hkv=1)
    Q, K, V = q[0, :, 0], k[0, :, 0], v[0, :, 0]
    T = len(Q)
    o = bf.evaluate(q, k, v, op="hla3")[0, :, 0]
    wrong = np.zeros_like(o)
    for t in range(T):
        for a in range(t + 1):
            for u in range(t + 1):
                for c in range(t + 1):
                    m = max(a, u, c)
                    if [a, u, c].count(m) >= 2:
                        wrong[t] += (Q[t] @ K[a]) * (K[a] @ Q[u]) * (Q[u] @ K[c]) * V[c]
    assert bf.rel_err(wrong, o) > 1e-3


def test_grouped_heads_mapping():
    q, k, v = data(seed=6, H=4, Hkv=2)
    o = bf.evaluate(q, k, v, op="hla2", decay=0.9)
    for h in range(4):
        oh = bf.evaluate(q[:, :, h:h + 1], k[:, :, h // 2:h // 2 + 1], v[:, :, h // 2:h // 2 + 1],
                         op="hla2", decay=0.9)
        close(o[:, :, h:h + 1], oh)
    # and not the other plausible mapping h % Hkv
    oh = bf.evaluate(q[:, :, 1:2], k[:, :, 1:2], v[:, :, 1:2], op="hla2", decay=0.9)
    assert bf.rel_err(o[:, :, 1:2], oh) > 1e-3


@pytest.mark.parametrize("op", ["hla2", "ahla", "hla3"])
def test_normalize_is_value_free_sum(op):
    q, k, v = data(seed=7, T=6)
    ridge = 0.2 if op == "hla2" else 0.0
    num, den, _, _ = bf.numerator_denominator(q, k, v, op=op, decay=0.9, ridge=ridge, scale=0.5)
    ones = np.ones(v.shape[:-1] + (1,))
    num1, _, _, _ = bf.numerator_denominator(q, k, ones, op=op, decay=0.9, ridge=ridge, scale=0.5)
    close(den, num1[..., 0])
    o = bf.evaluate(q, k, v, op=op, decay=0.9, ridge=ridge, scale=0.5, normalize=True, eps=0.25)
    close(o, num / (den[..., None] + 0.25))


def test_scale_multiplies_queries():
    q, k, v = data(seed=8, T=5)
    close(bf.evaluate(q, k, v, op="hla3", scale=0.5), bf.evaluate(q * 0.5, k, v, op="hla3"))


def test_hla2_paper_decayed_update_is_wrong():
    """SPEC erratum 2: the printed G_t = g G_{t-1} + k k^T C_{t-1} disagrees with the sums when
    g < 1 (so the parity tests with decay 0.9 would catch an engine built on it)."""
    q, k, v = data(seed=9, B=1, H=1, Hkv=1)
    g = 0.8
    o = bf.evaluate(q, k, v, op="hla2", decay=g)[0, :, 0]
    Q, K, V = q[0, :, 0], k[0, :, 0], v[0, :, 0]
    S, C, G = np.zeros((3, 3)), np.zeros((3, 4)), np.zeros((3, 4))
    wrong = np.zeros_like(o)
    for t in range(len(Q)):
        G = g * G + np.outer(K[t], K[t]) @ C
        S = g * S + np.outer(K[t], K[t])
        C = g * C + np.outer(Q[t], V[t])
        wrong[t] = Q[t] @ (S @ C - G)
    assert bf.rel_err(wrong, o) > 1e-2
