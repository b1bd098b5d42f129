"""Parity of hla.mpi.forward (sequence parallelism, docs/spec.md section 10) with one process.

Run under mpirun (Tests/mpi/test_mpi.py does, at 1-4 ranks):

    mpirun -n 3 python3 Tests/mpi/mpi_parity.py [--quick]

Every rank generates the whole input deterministically, runs hla.mpi.forward on its own time slice
and checks, against computations of the whole sequence in this process:
  * its outputs: float64 against hla.forward in float64 (<= 1e-10) and against the brute-force index
    sums of Tests/python/bruteforce.py; float32 against the brute force of the same inputs in float64,
    to the SPEC tolerance (widened only for ill-conditioned normalized instances, as in
    Tests/python/common.tolerance);
  * the final state (every rank): against hla.forward's final state in float64 (1e-10 for float64,
    1e-4 for float32);
for every operator, masked and unmasked, decay, normalize, ridge, float64 and float32, B = 2 with
grouped heads, slices of unequal lengths with a rank of 1 token (its position moves between cases);
plus initial_state on rank 0 (State, Segment, state array), chaining (final -> initial_state), and
errors (a rank with another configuration or no tokens makes every rank raise, nothing hangs).
Rank 0 prints the worst errors; the exit status is non-zero if any rank saw a failure.
"""
import os
import sys
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import bruteforce as bf  # noqa: E402
import hla  # noqa: E402
import hla.mpi  # noqa: E402
from mpi4py import MPI  # noqa: E402

from common import ROUNDING_FACTOR, SPEC_TOL, UNIT_ROUNDOFF, seed_of  # noqa: E402

COMM = MPI.COMM_WORLD
RANK, P = COMM.Get_rank(), COMM.Get_size()
B, H, HKV, DK, DV = 2, 4, 2, 8, 6

WORST = {}
FAILURES = []


def record(key, err, tol, what, normalize=False):
    key = key + ("normalized" if normalize else "raw",)
    WORST[key] = max(WORST.get(key, 0.0), err)
    if not (err <= tol):
        FAILURES.append("rank %d: %s: error %.3e > %.1e" % (RANK, what, err, tol))


def lengths(case):
    """Unequal slice lengths, one rank with a single token (which rank moves with `case`)."""
    ls = [1] + [3 + (i * 7 + case) % 6 for i in range(1, P)]
    s = case % P
    return ls[s:] + ls[:s]


def inputs(T, seed, positive=False):
    r = np.random.default_rng(seed)
    out = []
    for shape in ((B, T, H, DK), (B, T, HKV, DK), (B, T, HKV, DV)):
        x = r.standard_normal(shape).astype(np.float32).astype(np.float64)
        out.append(x)
    if positive:
        # normalized float32: positive features keep the denominator well conditioned (README,
        # Exactness); the float64 cases keep signed inputs
        out[0], out[1] = np.abs(out[0]), np.abs(out[1])
    return out


def rel(x, ref):
    return bf.rel_err(np.asarray(x, np.float64), np.asarray(ref, np.float64))


def rel_slice(x, ref_slice, ref_whole):
    """max |x - ref_slice| / max |ref_whole|: a slice's error on the scale of the whole sequence."""
    d = np.asarray(x, np.float64) - np.asarray(ref_slice, np.float64)
    return float(np.max(np.abs(d))) / float(np.max(np.abs(np.asarray(ref_whole, np.float64))))


def check_case(case, dtype, opts):
    ls = lengths(case)
    T = sum(ls)
    a, b = sum(ls[:RANK]), sum(ls[:RANK + 1])
    name = "%s %s %s T=%d slices=%s" % (opts["op"], np.dtype(dtype).name,
                                       ",".join("%s=%s" % kv for kv in sorted(opts.items()) if kv[0] != "op"),
                                       T, ls)
    q, k, v = inputs(T, seed_of(case, opts["op"], np.dtype(dtype).name),
                     positive=opts.get("normalize") and dtype == np.float32)
    ql, kl, vl = (np.ascontiguousarray(x[:, a:b], dtype=dtype) for x in (q, k, v))
    o, final = hla.mpi.forward(ql, kl, vl, **opts)
    assert o.dtype == dtype and o.shape == (B, b - a, H, DV), (o.dtype, o.shape)
    state_dtype = np.float64 if dtype == np.float64 else np.float32
    assert final is not None and final.rows == B and final.dtype == state_dtype, final
    ref, kappa = bf.evaluate(q, k, v, with_condition=True, **opts)
    O64, F64 = hla.forward(q, k, v, output_final_state=True, **opts)
    dt = np.dtype(dtype).name
    nz = bool(opts.get("normalize"))
    tol = max(SPEC_TOL[dtype], ROUNDING_FACTOR * UNIT_ROUNDOFF[dtype] * kappa)
    # the slice's outputs, measured against the whole sequence's scale (max-norm of ref overall)
    scale = np.max(np.abs(ref))
    err_bf = float(np.max(np.abs(o.astype(np.float64) - ref[:, a:b]))) / scale
    record((dt, "output vs brute force"), err_bf, tol, name + " output vs brute force", nz)
    if dtype == np.float64:
        err1 = float(np.max(np.abs(o - O64[:, a:b]))) / np.max(np.abs(O64))
        record((dt, "output vs hla.forward, 1 process"), err1, SPEC_TOL[dtype],
               name + " output vs 1 process", nz)
    else:
        O32 = hla.forward(*(np.asarray(x, np.float32) for x in (q, k, v)), **opts)[0]
        err1 = rel_slice(o, O32[:, a:b], O64)
        key = (dt, "output vs hla.forward float32, 1 process (info)", "normalized" if nz else "raw")
        WORST[key] = max(WORST.get(key, 0.0), err1)
    record((dt, "final state vs 1 process (float64)"), rel(final.array, F64.array), SPEC_TOL[dtype],
           name + " final state", nz)


def check_initial(case, dtype, opts, kind):
    """initial_state on rank 0 (State, Segment or array), then chaining final -> initial_state."""
    ls = lengths(case)
    T = sum(ls)
    a, b = sum(ls[:RANK]), sum(ls[:RANK + 1])
    name = "%s %s initial=%s slices=%s" % (opts["op"], np.dtype(dtype).name, kind, ls)
    T0 = 7
    q, k, v = inputs(T0 + 2 * T, seed_of("init", case, opts["op"], kind),
                     positive=opts.get("normalize") and dtype == np.float32)
    q, k, v = (np.asarray(x, dtype) for x in (q, k, v))
    q0, k0, v0 = q[:, :T0], k[:, :T0], v[:, :T0]
    if kind == "segment":
        init = hla.summarize(q0, k0, v0, **opts)
    else:
        init = hla.forward(q0, k0, v0, output_final_state=True, **opts)[1]
        if kind == "array":
            init = init.array.copy()
    passed = init if (RANK == 0 or kind == "state") else None    # other ranks may pass it or not
    sl = lambda x, off: np.ascontiguousarray(x[:, T0 + off + a:T0 + off + b])  # noqa: E731
    o1, f1 = hla.mpi.forward(sl(q, 0), sl(k, 0), sl(v, 0), initial_state=passed, **opts)
    # chaining: the second half of the sequence starts from the final state of the first
    o2, f2 = hla.mpi.forward(sl(q, T), sl(k, T), sl(v, T), initial_state=f1, **opts)
    O, F = hla.forward(q, k, v, output_final_state=True, **opts)   # one process, whole sequence
    tol = SPEC_TOL[dtype]
    den = np.max(np.abs(O.astype(np.float64)))
    e1 = float(np.max(np.abs(o1.astype(np.float64) - O[:, T0 + a:T0 + b]))) / den
    e2 = float(np.max(np.abs(o2.astype(np.float64) - O[:, T0 + T + a:T0 + T + b]))) / den
    dt = np.dtype(dtype).name
    nz = bool(opts.get("normalize"))
    record((dt, "initial_state / chained output vs 1 process"), max(e1, e2), tol, name + " output", nz)
    record((dt, "initial_state / chained final vs 1 process"), rel(f2.array, F.array), tol,
           name + " final", nz)


def expect_all_raise(label, make_args, exc_types):
    try:
        q, k, v, opts = make_args()
        hla.mpi.forward(q, k, v, **opts)
    except exc_types as e:
        return str(e)
    except Exception as e:  # noqa: BLE001
        FAILURES.append("rank %d: %s: unexpected %s: %s" % (RANK, label, type(e).__name__, e))
        return None
    FAILURES.append("rank %d: %s: no exception" % (RANK, label))
    return None


def check_errors():
    if P < 2:
        return
    r = np.random.default_rng(RANK)

    def other_dk():
        dk = DK + (1 if RANK == P - 1 else 0)
        return (r.standard_normal((B, 3, H, dk)), r.standard_normal((B, 3, HKV, dk)),
                r.standard_normal((B, 3, HKV, DV)), dict(op="hla2"))

    expect_all_raise("another dk on the last rank", other_dk, (ValueError,))

    def other_decay():
        return (r.standard_normal((B, 3, H, DK)), r.standard_normal((B, 3, HKV, DK)),
                r.standard_normal((B, 3, HKV, DV)), dict(op="ahla", decay=0.9 if RANK == 0 else 1.0))

    expect_all_raise("another decay on rank 0", other_decay, (ValueError,))

    def empty_slice():
        T = 0 if RANK == 1 else 4
        return (r.standard_normal((B, T, H, DK)), r.standard_normal((B, T, HKV, DK)),
                r.standard_normal((B, T, HKV, DV)), dict(op="hla3"))

    expect_all_raise("no tokens on rank 1", empty_slice, (ValueError, RuntimeError))


def main():
    quick = "--quick" in sys.argv
    variants = [
        dict(masked=True),
        dict(masked=True, decay=0.9, normalize=True),
        dict(masked=False, decay=0.95),
        dict(masked=False, normalize=True),
    ]
    case = 0
    try:
        for op in ("hla2", "ahla", "hla3"):
            extra = ([dict(masked=True, decay=0.9, ridge=0.3), dict(masked=False, ridge=0.5)]
                     if op == "hla2" else [])
            for var in variants + extra:
                for dtype in (np.float64, np.float32):
                    if quick and dtype == np.float32 and var.get("normalize"):
                        continue
                    case += 1
                    check_case(case, dtype, dict(op=op, scale=DK ** -0.5, **var))
        for i, (op, masked, kind, dtype) in enumerate([
                ("hla2", True, "state", np.float64), ("hla2", False, "array", np.float32),
                ("ahla", True, "segment", np.float64), ("ahla", False, "state", np.float64),
                ("hla3", True, "array", np.float64), ("hla3", False, "segment", np.float32),
                ("hla3", True, "state", np.float32), ("hla2", True, "segment", np.float32)]):
            opts = dict(op=op, masked=masked, decay=0.93, scale=DK ** -0.5)
            if op == "hla2" and i == 7:
                opts["normalize"] = True
                opts["decay"] = 1.0
            check_initial(100 + i, dtype, opts, kind)
        check_errors()
    except Exception:  # noqa: BLE001 - reported below; the other ranks may be blocked, so abort
        traceback.print_exc()
        sys.stderr.flush()
        COMM.Abort(2)
    failures = COMM.gather(FAILURES, root=0)
    worst = COMM.gather(WORST, root=0)
    if RANK == 0:
        merged = {}
        for w in worst:
            for key, err in w.items():
                merged[key] = max(merged.get(key, 0.0), err)
        alg = os.environ.get("OMPI_MCA_coll_tuned_exscan_algorithm", "default")
        print("hla.mpi parity, %d rank(s), exscan algorithm %s: %d cases + 8 initial-state cases"
              % (P, alg, case))
        for (dt, what, kind), err in sorted(merged.items()):
            print("  %-8s %-48s %-10s max %.2e" % (dt, what, kind, err))
        flat = [f for fs in failures for f in fs]
        for f in flat:
            print("FAIL", f)
        print("%s (%d ranks)" % ("FAILED" if flat else "OK", P))
        sys.stdout.flush()
        code = 1 if flat else 0
    else:
        code = 0
    code = COMM.bcast(code, root=0)
    sys.exit(code)


if __name__ == "__main__":
    main()
