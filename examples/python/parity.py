#!/usr/bin/env python3
"""Parity demo of the hla package: random unit-normal data, every operator through the three
forward paths (chunked, serial, scan) and hla.reference, in float64, float32, float16 and (with
ml_dtypes) bfloat16, against a float64 evaluation of the same rounded inputs. Prints a table of
max-norm relative errors and timings; exits 1 if any error exceeds the tolerance of docs/spec.md
(float64 1e-10, float32 1e-4, float16 2e-3, bfloat16 1e-2).

    PYTHONPATH=bindings/python python3 examples/python/parity.py [--T 256] [--seed 0]
"""
import argparse
import sys
import time

import numpy as np

import hla

TOL = {"float32": 1e-4, "float64": 1e-10, "float16": 2e-3, "bfloat16": 1e-2}


def rel_err(x, ref):
    return float(np.max(np.abs(x.astype(np.float64) - ref)) / np.max(np.abs(ref)))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--B", type=int, default=2)
    ap.add_argument("--T", type=int, default=256)
    ap.add_argument("--H", type=int, default=4)
    ap.add_argument("--Hkv", type=int, default=2)
    ap.add_argument("--dk", type=int, default=32)
    ap.add_argument("--dv", type=int, default=32)
    ap.add_argument("--decay", type=float, default=0.99)
    ap.add_argument("--chunk-size", type=int, default=None, help="default: automatic")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    rng = np.random.default_rng(a.seed)
    q = rng.standard_normal((a.B, a.T, a.H, a.dk)).astype(np.float32)
    k = rng.standard_normal((a.B, a.T, a.Hkv, a.dk)).astype(np.float32)
    v = rng.standard_normal((a.B, a.T, a.Hkv, a.dv)).astype(np.float32)
    inputs = {"float32": (q, k, v), "float64": tuple(x.astype(np.float64) for x in (q, k, v)),
              "float16": tuple(x.astype(np.float16) for x in (q, k, v))}
    try:
        import ml_dtypes
        inputs["bfloat16"] = tuple(x.astype(ml_dtypes.bfloat16) for x in (q, k, v))
    except ImportError:
        print("(ml_dtypes not installed: bfloat16 skipped)")

    print("libhla %s, hla %s: B=%d T=%d H=%d Hkv=%d dk=%d dv=%d decay=%g chunk_size=%s"
          % (hla.library_version(), hla.__version__, a.B, a.T, a.H, a.Hkv, a.dk, a.dv, a.decay,
             a.chunk_size))
    print("errors: max-norm relative, vs hla.reference in float64 of the same (rounded) inputs")
    print("%-5s %-8s %-10s %12s %10s  %s" % ("op", "dtype", "path", "rel. error", "time (ms)", ""))
    failures = 0
    for op in ("hla2", "ahla", "hla3"):
        opts = dict(op=op, decay=a.decay, scale=a.dk ** -0.5)
        for dtype in inputs:
            truth = hla.reference(*(x.astype(np.float64) for x in inputs[dtype]), **opts)
            runs = [(path, lambda p=path: hla.forward(*inputs[dtype], path=p,
                                                      chunk_size=a.chunk_size, **opts)[0])
                    for path in ("chunked", "serial", "scan")]
            if dtype != "float64":      # the float64 reference is the truth itself
                runs.append(("reference", lambda: hla.reference(*inputs[dtype], **opts)))
            for path, fn in runs:
                o, dt = timed(fn)
                err = rel_err(o, truth)
                ok = err <= TOL[dtype] and np.all(np.isfinite(o))
                failures += not ok
                print("%-5s %-8s %-10s %12.3e %10.2f  %s" % (op, dtype, path, err, dt * 1e3,
                                                             "ok" if ok else "FAIL"))
    # streaming: one token at a time through a State
    st = hla.State("hla2", batch=a.B, heads=a.H, kv_heads=a.Hkv, dk=a.dk, dv=a.dv,
                   decay=a.decay, scale=a.dk ** -0.5, dtype="float64")
    qs, ks, vs = inputs["float64"]
    (outs, dt) = timed(lambda: np.stack([st.step(qs[:, t], ks[:, t], vs[:, t])
                                         for t in range(a.T)], axis=1))
    err = rel_err(outs, hla.reference(qs, ks, vs, op="hla2", decay=a.decay, scale=a.dk ** -0.5))
    ok = err <= TOL["float64"]
    failures += not ok
    print("%-5s %-8s %-10s %12.3e %10.2f  %s" % ("hla2", "float64", "State.step", err, dt * 1e3,
                                                 "ok" if ok else "FAIL"))
    if failures:
        print("%d result(s) exceed the tolerance" % failures)
        return 1
    print("all within tolerance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
