#!/usr/bin/env python3
"""Time every path of every operator through the `hla` package found on sys.path, and print JSON.

Used by bench.py's "against an earlier build" section: it runs this script alternately with the package
of this tree and with the package of an earlier build (--baseline), so both are measured in the same run
on the same inputs. Only API that 0.x and 1.0 share is used: hla.forward(q, k, v, op=, scale=, path=,
chunk_size=0 (automatic)) and hla.State(op, batch=, heads=, dk=, dv=, kv_heads=, scale=, dtype=).step.
"""
import json
import sys
import time

import numpy as np
import hla


def best_time(fn, reps):
    """The fastest of `reps` timed calls (after one warm-up): on a shared 2-core machine the minimum
    is the figure least disturbed by other work, which is what a comparison of two builds needs."""
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main():
    T, reps, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(0)
    H, d = 8, 64
    s = d ** -0.5
    q = rng.standard_normal((1, T, H, d), dtype=np.float32)
    k = rng.standard_normal((1, T, H, d), dtype=np.float32)
    v = rng.standard_normal((1, T, H, d), dtype=np.float32)
    out = {}
    for op in ("hla2", "ahla", "hla3"):
        for path in ("chunked", "scan", "serial"):
            Tp = T if path != "serial" else max(T // 8, 64)
            qq, kk, vv = q[:, :Tp], k[:, :Tp], v[:, :Tp]
            fn = lambda: hla.forward(qq, kk, vv, op=op, scale=s, path=path, chunk_size=0)  # noqa: E731
            out["%s %s (T=%d)" % (op, path, Tp)] = best_time(fn, reps)
        Hs = 64
        st = hla.State(op, batch=1, heads=Hs, dk=d, dv=d, kv_heads=Hs, scale=s, dtype="float32")
        qs = rng.standard_normal((1, Hs, d), dtype=np.float32)

        def loop():
            for _ in range(steps):
                st.step(qs, qs, qs)
        out["%s step (H=64, per call)" % op] = best_time(loop, reps) / steps
    print(json.dumps(out))


if __name__ == "__main__":
    main()
