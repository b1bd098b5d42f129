"""A State's lock (hla._hla.Lock, bindings/python/src/lock.c): threading.Lock's semantics for what the
package uses, and State.step's one-call path taking it directly (waiting for another holder, staying
interruptible while it waits, releasing it on success and failure)."""
import signal
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
