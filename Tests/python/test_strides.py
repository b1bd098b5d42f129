"""Inputs of any strides: transposed [B,H,T,D] views, slices of a fused QKV buffer, negative
and zero strides, odd byte strides, misaligned and byte-swapped buffers."""
import numpy as np
import pytest

import bruteforce as bf
import hla
from common import DTYPES, OPS, PATHS, assert_close, make, options, seed_of

B, T, H, HKV, DK, DV = 2, 11, 4, 2, 3, 5


def variants(q, k, v, dtype):
    """(name, q, k, v) with the same values as q, k, v but other memory layouts."""
    yield "contiguous", q.astype(dtype), k.astype(dtype), v.astype(dtype)
    # [B,H,T,D] storage viewed as [B,T,H,D]
    tq, tk, tv = (np.ascontiguousarray(x.transpose(0, 2, 1, 3), dtype=dtype).transpose(0, 2, 1, 3)
                  for x in (q, k, v))
    assert not tq.flags.c_contiguous
    yield "bhtd-transposed", tq, tk, tv
    # slices of one fused buffer [B, T, H*DK + HKV*DK + HKV*DV]
    fused = np.concatenate([q.reshape(B, T, -1), k.reshape(B, T, -1), v.reshape(B, T, -1)],
                           axis=-1).astype(dtype)
    n1, n2 = H * DK, H * DK + HKV * DK
    yield ("fused-qkv", fused[..., :n1].reshape(B, T, H, DK),
           fused[..., n1:n2].reshape(B, T, HKV, DK), fused[..., n2:].reshape(B, T, HKV, DV))
    # negative strides: stored reversed in time and features
    rq, rk, rv = (np.ascontiguousarray(x[:, ::-1, :, ::-1], dtype=dtype)[:, ::-1, :, ::-1]
                  for x in (q, k, v))
    assert rq.strides[1] < 0 and rq.strides[3] < 0
    yield "negative-strides", rq, rk, rv
    # every other element of a bigger buffer (strides 2 in every axis)
    def spread(x):
        big = np.zeros(tuple(2 * s for s in x.shape), dtype=dtype)
        big[::2, ::2, ::2, ::2] = x
        return big[::2, ::2, ::2, ::2]
    yield "step-2", spread(q), spread(k), spread(v)
    # Fortran order
    yield "fortran", *(np.asfortranarray(x, dtype=dtype) for x in (q, k, v))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_strided_inputs(op, dtype):
    q, k, v = make(B, T, H, HKV, DK, DV, seed_of("strides", op))
    opts = options(op, True, decay=0.9, scale=DK ** -0.5)
    want, kappa = bf.evaluate(q, k, v, with_condition=True, **opts)
    for name, qs, ks, vs in variants(q, k, v, dtype):
        for path in PATHS:
            o, st = hla.forward(qs, ks, vs, path=path, chunk_size=4, output_final_state=True,
                                **opts)
            assert o.flags.c_contiguous and o.dtype == dtype
            assert_close(o, want, dtype, kappa, "%s %s" % (name, path))
        assert_close(hla.reference(qs, ks, vs, **opts), want, dtype, kappa, name + " reference")
        seg = hla.summarize(qs[:, :6], ks[:, :6], vs[:, :6], **opts)
        o, _ = hla.forward(qs[:, 6:], ks[:, 6:], vs[:, 6:], initial_state=seg, **opts)
        assert_close(o, want[:, 6:], dtype, kappa, name + " segment carry")
        s2 = hla.State(op, batch=B, heads=H, kv_heads=HKV, dk=DK, dv=DV, dtype=dtype, decay=0.9,
                       scale=DK ** -0.5)
        steps = np.stack([s2.step(qs[:, t], ks[:, t], vs[:, t]) for t in range(T)], axis=1)
        assert_close(steps, want, dtype, kappa, name + " step")


def test_broadcast_zero_strides():
    """A zero stride (np.broadcast_to) is a legal layout: the same key for every token."""
    q, k, v = make(1, 8, 2, 1, 3, 2, 11)
    kb = np.broadcast_to(k[:, :1], k.shape)
    assert kb.strides[1] == 0
    for op in OPS:
        want = bf.evaluate(q, np.ascontiguousarray(kb), v, op=op)
        o, _ = hla.forward(q, kb, v, op=op, chunk_size=3)
        assert bf.rel_err(o, want) < 1e-10


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_misaligned_and_odd_byte_strides(dtype):
    q, k, v = make(1, 7, 2, 2, 3, 4, 12)
    want = bf.evaluate(q, k, v, op="hla2", decay=0.9)
    item = np.dtype(dtype).itemsize
    # misaligned: data pointer at an odd byte offset
    raw = np.zeros(q.size * item + 1, np.uint8)
    qm = np.frombuffer(raw.data, dtype=dtype, count=q.size, offset=1).reshape(q.shape)
    qm[...] = q
    assert not qm.flags.aligned
    o, _ = hla.forward(qm, k.astype(dtype), v.astype(dtype), decay=0.9)
    assert_close(o, want, dtype, what="misaligned")
    # a byte stride that is not a multiple of the item size
    raw2 = np.zeros(q.size * (item + 1), np.uint8)
    qo = np.lib.stride_tricks.as_strided(
        np.frombuffer(raw2.data, dtype=np.uint8), shape=q.shape + (item,),
        strides=tuple(s // item * (item + 1) for s in q.astype(dtype).strides) + (1,))
    qo = qo.view(dtype)[..., 0]
    qo[...] = q
    assert qo.strides[-1] % item != 0
    o, _ = hla.forward(qo, k.astype(dtype), v.astype(dtype), decay=0.9)
    assert_close(o, want, dtype, what="odd byte stride")
    # byte-swapped storage
    qs = q.astype(np.dtype(dtype).newbyteorder(">" if np.little_endian else "<"))
    o, _ = hla.forward(qs, k.astype(dtype), v.astype(dtype), decay=0.9)
    assert_close(o, want, dtype, what="byte-swapped")


def test_readonly_inputs_and_untouched():
    q, k, v = make(1, 5, 1, 1, 2, 2, 13)
    copies = [x.copy() for x in (q, k, v)]
    for x in (q, k, v):
        x.flags.writeable = False
    for op in OPS:
        for path in PATHS:
            hla.forward(q, k, v, op=op, path=path)
    for x, c in zip((q, k, v), copies):
        np.testing.assert_array_equal(x, c)
