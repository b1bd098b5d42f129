"""A State's lock (hla._hla.Lock, bindings/python/src/lock.c): threading.Lock's semantics for what the
package uses, and State.step's one-call path taking it directly (waiting for another holder, staying
interruptible while it waits, releasing it on success and failure); and the outputs it keeps: a step's
output the host has dropped is the next step's output, never one the host (or a view) still refers to."""
import signal
import sys
import threading
import time

import numpy as np
import pytest

import hla

H, HKV, D = 4, 2, 8


def new_state():
    return hla.State("hla2", batch=1, heads=H, kv_heads=HKV, dk=D, dv=D, dtype="float32")


def token(seed=0):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(s).astype(np.float32) for s in ((1, H, D), (1, HKV, D), (1, HKV, D)))


def test_lock_semantics():
    lock = hla._hla.Lock()
    assert not lock.locked()
    assert lock.acquire() is True and lock.locked()
    assert lock.acquire(blocking=False) is False   # not reentrant
    assert lock.acquire(False) is False
    lock.release()
    assert not lock.locked()
    with pytest.raises(RuntimeError, match="unlocked"):
        lock.release()
    with lock as entered:
        assert entered is True and lock.locked()
    assert not lock.locked()
    with pytest.raises(KeyError):
        with lock:
            raise KeyError("x")   # released when the block raises, the exception passes
    assert not lock.locked()
    with pytest.raises(TypeError):
        hla._hla.Lock(1)
    assert isinstance(new_state()._lock, hla._hla.Lock)


def test_another_thread_may_release():
    lock = hla._hla.Lock()
    lock.acquire()
    th = threading.Thread(target=lock.release)
    th.start()
    th.join()
    assert not lock.locked() and lock.acquire(False)
    lock.release()


def test_step_numpy_takes_only_a_lock():
    st = new_state()
    q, k, v = token()
    with pytest.raises(TypeError, match="Lock"):
        hla._hla.step_numpy(st._cfg, q, k, v, st._array, threading.Lock())
    assert not st.array.any()


def test_step_waits_for_the_lock_held_elsewhere():
    """A step whose State another thread holds waits (the GIL released: the holder's thread runs) and
    then steps: the same bits as an uncontended step; the lock is free after it."""
    st, ref = new_state(), new_state()
    q, k, v = token(1)
    want = ref.step(q, k, v)
    st._lock.acquire()
    got, started = [], threading.Event()

    def stepper():
        started.set()
        got.append(st.step(q, k, v))

    th = threading.Thread(target=stepper)
    th.start()
    started.wait()
    time.sleep(0.1)
    assert not got and not st.array.any()   # still waiting, nothing written
    st._lock.release()
    th.join(10)
    assert not th.is_alive()
    assert np.array_equal(got[0], want) and np.array_equal(st.array, ref.array)
    assert not st._lock.locked()


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no setitimer")
def test_waiting_step_is_interruptible():
    """The main thread's step waits for a lock another thread holds; a signal handler that raises ends
    the wait with its exception, the State untouched and the lock still the holder's."""
    st = new_state()
    q, k, v = token(2)
    held, done = threading.Event(), threading.Event()

    def holder():
        with st._lock:
            held.set()
            done.wait(10)

    class Alarm(Exception):
        pass

    def on_alarm(signum, frame):
        raise Alarm()

    th = threading.Thread(target=holder)
    th.start()
    held.wait()
    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        t0 = time.perf_counter()
        with pytest.raises(Alarm):
            st.step(q, k, v)
        assert time.perf_counter() - t0 < 5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        done.set()
        th.join()
    assert not st.array.any() and not st._lock.locked()
    st.step(q, k, v)   # usable after
    assert st.array.any() and not st._lock.locked()


def address(a):
    return a.__array_interface__["data"][0]


def general_path_outputs(tokens, **kw):
    """The outputs of the same tokens through State.step's general path (an ndarray subclass as q)."""
    ref = hla.State("hla2", batch=kw.get("batch", 1), heads=H, kv_heads=HKV, dk=D, dv=D, dtype="float32")
    return [np.array(ref.step(q.view(Sub), k, v)) for q, k, v in tokens]


class Sub(np.ndarray):
    pass


def test_a_dropped_output_is_the_next_output():
    st = new_state()
    tokens = [token(s) for s in range(6)]
    want = general_path_outputs(tokens)
    o = st.step(*tokens[0])
    assert np.array_equal(o, want[0])
    first = address(o)
    assert sys.getrefcount(o) == 3   # o, the argument, and the Lock's reference
    del o
    o = st.step(*tokens[1])          # the dropped array, overwritten
    assert address(o) == first and np.array_equal(o, want[1])
    o.fill(np.nan)                   # whatever the host wrote into it is overwritten
    del o
    o = st.step(*tokens[2])
    assert address(o) == first and np.array_equal(o, want[2])
    # `o = st.step(...)`: the previous output is still held during the call, so two arrays alternate
    seen = set()
    for i in range(3, 6):
        o = st.step(*tokens[i])
        assert np.array_equal(o, want[i])
        seen.add(address(o))
    assert len(seen) == 2


def test_an_output_still_referred_to_is_never_reused():
    st = new_state()
    tokens = [token(s) for s in range(8)]
    want = general_path_outputs(tokens)
    held = [st.step(*tokens[0])]
    view = st.step(*tokens[1])[0]           # only a view of the second output survives
    kept = [np.array(held[0]), np.array(view)]
    ro = st.step(*tokens[2])
    ro.flags.writeable = False              # dropped read-only: not taken back
    del ro
    mv = memoryview(st.step(*tokens[3]))   # an exported buffer keeps its array
    for i in range(4, 8):
        o = st.step(*tokens[i])
        assert np.array_equal(o, want[i])
        for x in (held[0], view, np.asarray(mv)):
            assert not np.shares_memory(o, x)
        held.append(o)
    assert np.array_equal(held[0], kept[0]) and np.array_equal(view, kept[1])
    assert np.array_equal(np.asarray(mv), want[3])


def test_kept_outputs_follow_shape_and_dtype():
    """Steps of another dtype or another number of rows on the same State get outputs of their own kind."""
    st = hla.State("hla2", batch=2, heads=H, kv_heads=HKV, dk=D, dv=D, dtype="float32")
    rng = np.random.default_rng(5)
    for rows, dt in ((2, np.float32), (1, np.float16), (2, np.float16), (1, np.float32), (2, np.float32)):
        q, k, v = (rng.standard_normal(s).astype(dt) for s in ((rows, H, D), (rows, HKV, D), (rows, HKV, D)))
        o = st.step(q, k, v)
        assert o.dtype == dt and o.shape == (rows, H, D)
        del o


def test_large_outputs_are_not_kept():
    small = hla.State("hla2", batch=64, heads=64, kv_heads=1, dk=8, dv=64, dtype="float32")   # 1 MiB output
    large = hla.State("hla2", batch=65, heads=64, kv_heads=1, dk=8, dv=64, dtype="float32")
    for st, refs in ((small, 3), (large, 2)):
        b = st.array.shape[0]
        o = st.step(np.zeros((b, 64, 8), np.float32), np.zeros((b, 1, 8), np.float32),
                    np.zeros((b, 1, 64), np.float32))
        assert sys.getrefcount(o) == refs
