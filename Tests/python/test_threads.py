"""The GIL is released during compute; concurrent use is safe (one handle is serialized by
the binding, distinct handles run in parallel)."""
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
    st = hla.State(batch=2, heads=2, dk=8, dv=8, dtype="float64", decay=0.9)
    q, k, v = make(2, 200, 2, 2, 8, 8, 3)
    seg = hla.summarize(q, k, v, decay=0.9)
    errors = []

    def stepper():
        try:
            for t in range(200):
                st.step(q[:, t], k[:, t], v[:, t])
        except Exception as e:   # pragma: no cover
            errors.append(e)

    def reader():
        try:
            for _ in range(50):
                hla.forward(q[:, :20], k[:, :20], v[:, :20], decay=0.9, initial_state=st)
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
    assert st.tokens == 400
