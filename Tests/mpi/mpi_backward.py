"""Parity of hla.mpi.backward (sequence-parallel gradients, docs/spec.md sections 9-10) with one process.

Run under mpirun (Tests/mpi/test_mpi.py does, at 1-4 ranks):

    mpirun -n 3 python3 Tests/mpi/mpi_backward.py

Every rank generates the whole input deterministically, runs hla.mpi.backward on its own time slice and
compares dq, dk, dv of its tokens with the same slices of hla.backward over the whole sequence in this
process (float64 inputs), and d_initial_state (every rank) with the one-process d_initial_state. The error of a
slice is max|x - ref_slice| / max|ref_whole|, so the maximum over the ranks is the max-norm relative error
of the whole gradient tensor (SPEC section 4): float64 <= 1e-10, float32 <= 2e-3 (float32 inputs against
the float64 evaluation of the same rounded inputs; SPEC section 9's float32 gradient tolerance).

Cases: hla2 / ahla / hla3, masked and unmasked, decay, normalize, ridge, float64 and float32, B = 2 with
grouped heads (H = 4, Hkv = 2), unequal slices with a rank of 1 token (its position moves between cases),
without and with initial_state on rank 0 (State, state array, Segment) and d_final_state (on every rank or
on the last rank only); two chained calls (forward final -> initial_state, backward d_initial_state ->
d_final_state). Wrong chains must be detected: the same comparison must fail (error > 1e-2) when the
received d_final is dropped or a rank's carry-in is replaced by zeros. Errors: a bad do or d_final_state on
one rank, another configuration, and a backward that fails in the middle of the chain make every rank
raise; nothing hangs. Rank 0 prints the worst errors; the exit status is non-zero on any failure.
"""
import os
import sys
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import hla  # noqa: E402
import hla.mpi  # noqa: E402
from mpi4py import MPI  # noqa: E402

from common import seed_of  # noqa: E402

COMM = MPI.COMM_WORLD
RANK, P = COMM.Get_rank(), COMM.Get_size()
B, H, HKV, DK, DV = 2, 4, 2, 8, 6
TOL = {np.float64: 1e-10, np.float32: 2e-3}
ORIGINAL_BACKWARD = hla.backward

WORST = {}
FAILURES = []


def record(key, err, tol, what):
    WORST[key] = max(WORST.get(key, 0.0), err)
    if not (err <= tol):
        FAILURES.append("rank %d: %s: error %.3e > %.1e" % (RANK, what, err, tol))


def lengths(case):
    """Unequal slice lengths, one rank with a single token (which rank moves with `case`)."""
    if P == 1:
        return [1 + case % 5]
    ls = [1] + [2 + (i * 5 + case) % 4 for i in range(1, P)]
    s = case % P
    return ls[s:] + ls[:s]


def inputs(T, seed, positive=False):
    r = np.random.default_rng(seed)
    shapes = ((B, T, H, DK), (B, T, HKV, DK), (B, T, HKV, DV), (B, T, H, DV))
    q, k, v, do = (r.standard_normal(s).astype(np.float32).astype(np.float64) for s in shapes)
    if positive:   # normalized float32: positive features keep the denominators well conditioned
        q, k = np.abs(q), np.abs(k)
    return q, k, v, do


def slice_err(x, ref_slice, ref_whole):
    d = np.asarray(x, np.float64) - np.asarray(ref_slice, np.float64)
    den = float(np.max(np.abs(np.asarray(ref_whole, np.float64))))
    return float(np.max(np.abs(d))) / den if d.size else 0.0


def make_initial(kind, q0, k0, v0, opts):
    if kind is None:
        return None
    if kind == "segment":
        return hla.summarize(q0, k0, v0, **opts)
    st = hla.forward(q0, k0, v0, output_final_state=True, **opts)[1]
    return st.array.copy() if kind == "array" else st


def run_case(case, dtype, opts, init_kind, dfinal_mode):
    """Returns the worst error of this rank (dq, dk, dv, d_initial) against one process."""
    ls = lengths(case)
    T, T0 = sum(ls), 4
    a, b = T0 + sum(ls[:RANK]), T0 + sum(ls[:RANK + 1])
    positive = bool(opts.get("normalize")) and dtype == np.float32
    q, k, v, do = (np.asarray(x, dtype) for x in inputs(T0 + T, seed_of("bwd", case, opts["op"]),
                                                            positive))
    init = make_initial(init_kind, q[:, :T0], k[:, :T0], v[:, :T0], opts)
    sl = lambda x: np.ascontiguousarray(x[:, a:b])  # noqa: E731
    q1, k1, v1, do1 = q[:, T0:], k[:, T0:], v[:, T0:], do[:, T0:]
    n = hla.state_elements(opts["op"], heads=H, kv_heads=HKV, dk=DK, dv=DV,
                           masked=opts.get("masked", True), normalize=opts.get("normalize", False),
                           ridge=opts.get("ridge", 0.0))
    sdt = np.float64 if dtype == np.float64 else np.float32
    dF = None
    if dfinal_mode is not None:
        dF = np.random.default_rng(seed_of("dF", case)).standard_normal((B, n)).astype(sdt)
    passed_init = init if (RANK == 0 or case % 2) else None        # ignored on ranks > 0
    passed_dF = dF if (dfinal_mode == "all" or RANK == P - 1) else None
    g = hla.mpi.backward(sl(q), sl(k), sl(v), sl(do), initial_state=passed_init,
                         d_final_state=passed_dF, **opts)
    # each rank's backward keeping a carry at every chunk: the same gradients bit for bit
    g1 = hla.mpi.backward(sl(q), sl(k), sl(v), sl(do), initial_state=passed_init,
                          d_final_state=passed_dF, checkpoint_every=1, **opts)
    for name, x, y in zip(("dq", "dk", "dv", "d_initial_state"), g, g1):
        if not (x is None and y is None) and not (x is not None and y is not None and np.array_equal(x, y)):
            FAILURES.append("rank %d: case %d: %s differs with checkpoint_every=1" % (RANK, case, name))
    assert g.dq.dtype == dtype and g.dq.shape == (B, b - a, H, DK), (g.dq.dtype, g.dq.shape)
    assert g.dk.shape == (B, b - a, HKV, DK) and g.dv.shape == (B, b - a, HKV, DV)
    # one process, whole sequence, float64 evaluation of the same (rounded) inputs
    init64 = init
    if init is not None and dtype != np.float64:
        init64 = make_initial(init_kind, *(np.asarray(x[:, :T0], np.float64) for x in (q, k, v)), opts)
    ref = ORIGINAL_BACKWARD(*(np.asarray(x, np.float64) for x in (q1, k1, v1, do1)),
                            initial_state=init64,
                            d_final_state=None if dF is None else dF.astype(np.float64), **opts)
    errs = [slice_err(x, r[:, a - T0:b - T0], r) for x, r in zip(g[:3], ref[:3])]
    if init is None:
        if g.d_initial_state is not None:
            FAILURES.append("rank %d: case %d: d_initial_state without initial_state" % (RANK, case))
    else:
        assert g.d_initial_state.shape == (B, n) and g.d_initial_state.dtype == sdt
        errs.append(slice_err(g.d_initial_state, ref.d_initial_state, ref.d_initial_state))
    return errs, "%s %s %s init=%s d_final=%s slices=%s" % (
        opts["op"], np.dtype(dtype).name,
        ",".join("%s=%s" % kv for kv in sorted(opts.items()) if kv[0] not in ("op", "scale")),
        init_kind, dfinal_mode, ls)


def check_case(case, dtype, opts, init_kind, dfinal_mode):
    errs, name = run_case(case, dtype, opts, init_kind, dfinal_mode)
    labels = ("dq", "dk", "dv", "d_initial")
    kind = "normalized" if opts.get("normalize") else "raw"
    for label, e in zip(labels, errs):
        record((np.dtype(dtype).name, "%s (%s)" % (label, kind)), e, TOL[dtype], name + " " + label)


def check_chained(case, dtype):
    """Two calls: forward(x1) -> final -> forward(x2, initial_state=final); backward of the second
    gives d_initial_state on every rank, the d_final_state of the first's backward."""
    opts = dict(op="hla3", masked=True, decay=0.9, scale=DK ** -0.5)
    ls = lengths(case)
    T = sum(ls)
    a, b = sum(ls[:RANK]), sum(ls[:RANK + 1])
    q, k, v, do = (np.asarray(x, dtype) for x in inputs(2 * T, seed_of("chain", case)))
    sl = lambda x, off: np.ascontiguousarray(x[:, off + a:off + b])  # noqa: E731
    args1 = [sl(x, 0) for x in (q, k, v)]
    args2 = [sl(x, T) for x in (q, k, v)]
    f1 = hla.mpi.forward(*args1, **opts)[1]
    g2 = hla.mpi.backward(*args2, sl(do, T), initial_state=f1, **opts)
    g1 = hla.mpi.backward(*args1, sl(do, 0), d_final_state=g2.d_initial_state, **opts)
    ref = ORIGINAL_BACKWARD(*(np.asarray(x, np.float64) for x in (q, k, v, do)), **opts)
    for label, x1, x2, r in zip(("dq", "dk", "dv"), g1[:3], g2[:3], ref[:3]):
        e = max(slice_err(x1, r[:, a:b], r), slice_err(x2, r[:, T + a:T + b], r))
        record((np.dtype(dtype).name, "chained calls " + label), e, TOL[dtype],
               "chained %s slices=%s %s" % (np.dtype(dtype).name, ls, label))
    if g1.d_initial_state is not None:
        FAILURES.append("rank %d: chained: d_initial_state without initial_state" % RANK)


def check_wrong_chains():
    """The comparison must catch a chain that drops the received d_final, or a zero carry-in."""
    if P < 2:
        return

    def drop_d_final(*args, **kw):
        kw["d_final_state"] = None
        return ORIGINAL_BACKWARD(*args, **kw)

    def zero_carry(*args, **kw):
        if RANK > 0:
            kw["initial_state"] = np.zeros_like(kw["initial_state"])
        return ORIGINAL_BACKWARD(*args, **kw)

    for label, fake in (("dropped d_final", drop_d_final), ("zero carry-in", zero_carry)):
        hla.backward = fake
        try:
            errs, _ = run_case(7, np.float64, dict(op="hla2", masked=True, decay=0.95,
                                                   scale=DK ** -0.5), None, "all")
        finally:
            hla.backward = ORIGINAL_BACKWARD
        worst = COMM.allreduce(max(errs), op=MPI.MAX)
        key = ("float64", "wrong chain (%s), must be > 1e-2" % label)
        WORST[key] = worst
        if not worst > 1e-2:
            FAILURES.append("rank %d: a wrong chain (%s) was not detected: worst error %.2e"
                            % (RANK, label, worst))


def expect_all_raise(label, call, exc_types, must_mention=None):
    try:
        call()
    except exc_types as e:
        if must_mention and must_mention not in str(e):
            FAILURES.append("rank %d: %s: message %r lacks %r" % (RANK, label, str(e), must_mention))
        return
    except Exception as e:  # noqa: BLE001
        FAILURES.append("rank %d: %s: unexpected %s: %s" % (RANK, label, type(e).__name__, e))
        return
    FAILURES.append("rank %d: %s: no exception" % (RANK, label))


def check_errors():
    if P < 2:
        return
    r = np.random.default_rng(RANK)
    T = 3
    q, k, v = (r.standard_normal((B, T, h, d)) for h, d in ((H, DK), (HKV, DK), (HKV, DV)))
    do = r.standard_normal((B, T, H, DV))
    opts = dict(op="ahla", masked=False)
    n = hla.state_elements("ahla", heads=H, kv_heads=HKV, dk=DK, dv=DV, masked=False)
    bad_do = do[:, :, :, :DV - 1] if RANK == P - 1 else do
    expect_all_raise("bad do on the last rank",
                     lambda: hla.mpi.backward(q, k, v, bad_do, **opts), (ValueError, RuntimeError))
    expect_all_raise("checkpoint_every -1 on the first rank",
                     lambda: hla.mpi.backward(q, k, v, do, checkpoint_every=-1 if RANK == 0 else None, **opts),
                     (ValueError, RuntimeError))
    expect_all_raise("another decay on rank 0",
                     lambda: hla.mpi.backward(q, k, v, do, decay=0.9 if RANK == 0 else 1.0, **opts),
                     (ValueError,))
    bad_df = np.zeros((B, n + 1))
    expect_all_raise("bad d_final_state on the last rank",
                     lambda: hla.mpi.backward(q, k, v, do, d_final_state=bad_df, **opts),
                     (ValueError, RuntimeError))
    fail_rank = 1

    def failing(*args, **kw):
        if RANK == fail_rank:
            raise ArithmeticError("injected failure")
        return ORIGINAL_BACKWARD(*args, **kw)

    hla.backward = failing
    try:
        expect_all_raise("backward failing on rank 1 in the chain",
                         lambda: hla.mpi.backward(q, k, v, do, **opts),
                         ArithmeticError if RANK == fail_rank else RuntimeError,
                         None if RANK == fail_rank else "rank 1")
    finally:
        hla.backward = ORIGINAL_BACKWARD


def main():
    s = DK ** -0.5
    cases = [
        ("hla2", dict(masked=True), None, None),
        ("hla2", dict(masked=True, decay=0.9, normalize=True), "state", "all"),
        ("hla2", dict(masked=False, decay=0.95), "array", "last"),
        ("hla2", dict(masked=True, decay=0.9, ridge=0.3), "segment", "all"),
        ("hla2", dict(masked=False, ridge=0.5, normalize=True), None, "last"),
        ("ahla", dict(masked=True, decay=0.9), "state", None),
        ("ahla", dict(masked=False), None, "all"),
        ("ahla", dict(masked=True, normalize=True), "segment", "last"),
        ("ahla", dict(masked=False, decay=0.93, normalize=True), "array", "all"),
        ("hla3", dict(masked=True), "array", "all"),
        ("hla3", dict(masked=True, decay=0.9, normalize=True), None, "last"),
        ("hla3", dict(masked=False, decay=0.95), "segment", None),
        ("hla3", dict(masked=False, normalize=True), "state", "all"),
    ]
    n_cases = 0
    try:
        for i, (op, var, init_kind, dfm) in enumerate(cases):
            for dtype in (np.float64, np.float32):
                n_cases += 1
                check_case(n_cases, dtype, dict(op=op, scale=s, **var), init_kind, dfm)
        check_chained(1, np.float64)
        check_chained(2, np.float32)
        check_wrong_chains()
        check_errors()
        # a call after the failed ones still works
        check_case(99, np.float64, dict(op="hla2", masked=True, decay=0.9, scale=s), "state", "all")
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
        print("hla.mpi.backward parity, %d rank(s): %d cases + 2 chained" % (P, n_cases + 1))
        for (dt, what), err in sorted(merged.items()):
            print("  %-8s %-44s max %.2e" % (dt, what, err))
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
