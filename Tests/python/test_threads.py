"""The GIL is released during compute; concurrent use is safe (calls on one State are serialized
by the binding, distinct memory runs in parallel)."""
import sys
import threading
import time

import numpy as np

import hla
from common import make


def test_gil_released_during_forward():
    """A worker thread runs forward calls while the main thread keeps taking timestamps. With
    the GIL held during a call, the main thread could run only in the switch-interval slices at
    its two ends; with the GIL released it runs throughout (it still shares 2 cores with the
    library's threads, hence the modest 15% coverage asked of the 1 ms bins)."""
    q, k, v = make(2, 4096, 4, 4, 32, 32, 0)
    windows = []

    def worker():
        for path in ("chunked", "serial", "scan") * 3:
            start = time.perf_counter()
            hla.forward(q, k, v, path=path)
            windows.append((start, time.perf_counter()))

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        stamps = []
        th = threading.Thread(target=worker)
        th.start()
        while th.is_alive():
            stamps.append(time.perf_counter())
        th.join()
    finally:
        sys.setswitchinterval(old)
    stamps = np.array(stamps)
    covered = total = 0
    for s, e in windows:
        edges = np.arange(s + 0.003, e - 0.003, 0.001)
        if len(edges) < 2:
            continue
        counts, _ = np.histogram(stamps, bins=edges)
        covered += int(np.count_nonzero(counts))
        total += len(counts)
    assert total >= 50, "compute too short to observe (%d ms inside calls)" % total
    assert covered >= 0.15 * total, "main thread ran in %d of %d ms inside the calls" % (
        covered, total)


def test_parallel_calls_match_sequential():
    problems = [make(2, 300, 4, 2, 8, 8, s) for s in range(6)]
    ops = ["hla2", "ahla", "hla3", "hla2", "ahla", "hla3"]
    want = [hla.forward(*p, op=op, decay=0.95)[0] for p, op in zip(problems, ops)]
    got = [None] * len(problems)
    errors = []

    def work(i):
        try:
            for _ in range(3):
                got[i] = hla.forward(*problems[i], op=ops[i], decay=0.95)[0]
        except Exception as e:   # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(problems))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_one_state_shared_by_threads_is_serialized():
    """Two threads step one State over the same 200 tokens while two others read it (forward from
    it, serialize, copy) and combine segments. Unmasked hla2 without decay has order-independent
    statistics (sums of k k^T and q v^T), so however the steps interleave the state must end as
    exactly twice the state of the 300 tokens: a lost update (two steps racing on the memory)
    would miss a token's contribution, an O(1) error. (Without the State's lock, this size races
    in most runs on a 2-core machine.)"""
    opts = dict(op="hla2", masked=False)
    T, Hs, d = 300, 8, 64
    st = hla.State(batch=2, heads=Hs, dk=d, dv=d, dtype="float64", **opts)
    q, k, v = make(2, T, Hs, Hs, d, d, 3)
    seg = hla.summarize(q, k, v, decay=0.9)
    _, once = hla.forward(q, k, v, output_final_state=True, **opts)
    errors = []

    def stepper():
        try:
            for t in range(T):
                st.step(q[:, t], k[:, t], v[:, t])
        except Exception as e:   # pragma: no cover
            errors.append(e)

    def reader():
        try:
            for _ in range(20):
                hla.forward(q[:, :20], k[:, :20], v[:, :20], initial_state=st, **opts)
                st.to_bytes()
                st.copy()
                hla.forward(q[:, :20], k[:, :20], v[:, :20], decay=0.9, initial_state=seg)
                hla.combine(seg, seg)
        except Exception as e:   # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=f) for f in (stepper, stepper, reader, reader)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    err = np.abs(st.array - 2 * once.array).max() / np.abs(once.array).max()
    assert err <= 1e-12, err


def test_distinct_states_in_parallel():
    """Threads stepping distinct States (and distinct rows of States over one shared buffer, via
    State.wrap on row slices) get exactly the sequential results."""
    q, k, v = make(4, 100, 2, 1, 8, 8, 4)
    opts = dict(op="hla3", decay=0.95, scale=8 ** -0.5)
    want, fin = hla.forward(q, k, v, output_final_state=True, path="serial", **opts)
    n = fin.array.shape[1]
    shared = np.zeros((4, n))
    states = [hla.State.wrap(shared[i:i + 1], heads=2, kv_heads=1, dk=8, dv=8, **opts)
              for i in range(4)]
    got = [None] * 4

    def work(i):
        got[i] = np.stack([states[i].step(q[i:i + 1, t], k[i:i + 1, t], v[i:i + 1, t])
                           for t in range(100)], axis=1)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for i in range(4):
        np.testing.assert_allclose(got[i], want[i:i + 1], rtol=0, atol=1e-10 * np.abs(want).max())
    np.testing.assert_allclose(shared, fin.array, rtol=0, atol=1e-10 * np.abs(fin.array).max())
