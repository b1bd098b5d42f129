"""The output pool (hla.output_pool): numpy outputs of 1 MiB or more keep their memory after numpy frees
them, up to the pool's limit and 8 buffers, and the next output of that size (or up to a quarter smaller)
takes it. A reused buffer is overwritten in full, no live array ever shares memory with another, the
limit and the buffer count are never exceeded, and output_pool(0) releases everything."""
import threading

import numpy as np
import pytest

import hla
from hla import _hla
from common import make

pytestmark = pytest.mark.skipif(not _hla.OUTPUT_POOL, reason="built against numpy headers without NEP 49 (< 1.22)")

MIB = 1 << 20
B, T, H, D = 1, 1100, 4, 64           # a float32 output of 1.07 MiB
NBYTES = B * T * H * D * 4


@pytest.fixture(autouse=True)
def fresh_pool():
    limit = hla.output_pool().limit
    hla.output_pool(0)                # start empty
    hla.output_pool(256 * MIB)
    yield
    hla.output_pool(0)
    hla.output_pool(limit)


def inputs(seed=3):
    q, k, v = make(B, T, H, H, D, D, seed)
    return q.astype(np.float32), k.astype(np.float32), v.astype(np.float32)


def addr(a):
    return a.__array_interface__["data"][0]


def expected(q, k, v, op):
    buf = np.empty((B, T, H, D), np.float32)
    hla.forward(q, k, v, op=op, scale=D ** -0.5, out=buf)
    return buf


@pytest.mark.parametrize("op", ["hla2", "ahla", "hla3"])
def test_freed_output_is_reused_and_overwritten(op):
    q, k, v = inputs()
    want = expected(q, k, v, op)
    a, _ = hla.forward(q, k, v, op=op, scale=D ** -0.5)
    assert a.flags.owndata and a.base is None and a.flags.c_contiguous
    np.testing.assert_array_equal(a, want)
    where = addr(a)
    a.fill(np.nan)                    # what the next output must not show
    del a
    assert hla.output_pool()[1:] == (NBYTES, 1)
    b, _ = hla.forward(q, k, v, op=op, scale=D ** -0.5)
    assert addr(b) == where           # the kept buffer, handed out again
    assert hla.output_pool()[1:] == (0, 0)
    np.testing.assert_array_equal(b, want)


def test_live_outputs_never_share_memory():
    q, k, v = inputs()
    want = expected(q, k, v, "hla2")
    live = []
    for i in range(12):
        out, _ = hla.forward(q, k, v, scale=D ** -0.5)
        live.append(out)
        if i % 3 == 2:                # free some, so the pool has buffers to hand out
            del live[0]
            del live[-2]
    for i, a in enumerate(live):
        np.testing.assert_array_equal(a, want)
        for b in live[i + 1:]:
            assert not np.shares_memory(a, b)


def test_limit_and_buffer_count():
    hla.output_pool(3 * MIB)
    outs = [_hla.empty((B, T, H, D), np.float32) for _ in range(5)]
    del outs
    assert hla.output_pool() == (3 * MIB, 2 * NBYTES, 2)     # a third would pass the limit
    hla.output_pool(1 << 30)
    outs = [_hla.empty((B, T, H, D), np.float32) for _ in range(12)]
    del outs
    assert hla.output_pool()[1:] == (8 * NBYTES, 8)           # at most 8 buffers
    hla.output_pool(NBYTES)                                   # a lower limit releases the excess now
    assert hla.output_pool()[1:] == (NBYTES, 1)
    hla.output_pool(0)
    assert hla.output_pool()[1:] == (0, 0)
    a = _hla.empty((B, T, H, D), np.float32)
    del a
    assert hla.output_pool()[1:] == (0, 0)                    # limit 0 keeps nothing


def test_sizes_taken():
    small = _hla.empty((MIB // 4 - 1,), np.float32)           # under 1 MiB: plain memory
    del small
    assert hla.output_pool()[1:] == (0, 0)
    a = _hla.empty((MIB,), np.float32)                        # 4 MiB
    where = addr(a)
    del a
    b = _hla.empty((MIB // 2,), np.float32)                   # 2 MiB: more than a quarter smaller
    assert addr(b) != where and hla.output_pool()[1:] == (4 * MIB, 1)
    c = _hla.empty((7 * MIB // 8,), np.float32)               # 3.5 MiB: takes it
    assert addr(c) == where and hla.output_pool()[1:] == (0, 0)
    d = _hla.empty((MIB + 1,), np.float32)                    # larger: a new buffer
    assert addr(d) != where
    for x in (b, c, d):
        assert x.dtype == np.float32 and x.flags.owndata and x.flags.writeable


def test_resize_keeps_data():
    a = _hla.empty((MIB // 2,), np.float32)
    a[:] = np.arange(MIB // 2, dtype=np.float32)
    a.resize((MIB,), refcheck=False)                          # realloc through the pool's handler
    np.testing.assert_array_equal(a[:MIB // 2], np.arange(MIB // 2, dtype=np.float32))
    assert hla.output_pool()[1:] == (2 * MIB, 1)              # the old 2 MiB buffer, kept
    a.resize((MIB // 4,), refcheck=False)
    np.testing.assert_array_equal(a, np.arange(MIB // 4, dtype=np.float32))
    del a


def test_backward_and_reference_outputs_come_from_the_pool():
    q, k, v = inputs()
    do = np.ones((B, T, H, D), np.float32)
    g = hla.backward(q, k, v, do, scale=D ** -0.5)
    held = hla.output_pool().held
    del g
    assert hla.output_pool().held == held + 3 * NBYTES        # dq, dk, dv


def test_bad_limits():
    with pytest.raises(ValueError):
        hla.output_pool(-1)
    with pytest.raises(TypeError):
        hla.output_pool(1.5)
    with pytest.raises(TypeError):
        hla.output_pool(True)
    assert hla.output_pool().limit == 256 * MIB
    with pytest.raises(ValueError):
        _hla.empty((-1, 3), np.float32)
    with pytest.raises(TypeError):
        _hla.empty([2, 3], np.float32)


def test_threads_take_distinct_buffers():
    q, k, v = inputs()
    want = expected(q, k, v, "hla2")
    bad = []

    def run():
        keep = []
        for _ in range(6):
            out, _ = hla.forward(q, k, v, scale=D ** -0.5)
            keep.append(out)
            if len(keep) > 2:
                keep.pop(0)
            if not np.array_equal(out, want):
                bad.append(out)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad
