"""Interface 1.0 measurements of `make bench`: half precision, packed variable-length batches,
row-indexed (continuous-batching) steps, serialization speed, and every path against an earlier build.

Each function prints its section into the report and returns rows for the targets table.
"""
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _half_arrays(a, dt):
    """a (float32 numpy) as numpy float16 or ml_dtypes bfloat16."""
    if dt == "float16":
        return a.astype(np.float16)
    import ml_dtypes
    return a.astype(ml_dtypes.bfloat16)


def half_section(R, hla, a, interleaved, fmt_t):
    R.p("## Half precision (bfloat16, float16)")
    R.p()
    R.p("bfloat16 (ml_dtypes numpy arrays) and float16 inputs and outputs, float32 state and accumulation: "
        "inputs are widened while they are packed into the kernels' dense blocks and outputs rounded once "
        "when they are written, so the dense products are the float32 ones. Chunked forward B=1, T=%d, H=8, "
        "d=64; `State.step` at H=64, d=64 (a Python loop of %d calls). Interleaved medians." % (a.T, a.steps))
    R.p()
    rng = np.random.default_rng(1)
    T, H, d = a.T, 8, 64
    s = d ** -0.5
    q32 = rng.standard_normal((1, T, H, d), dtype=np.float32)
    k32 = rng.standard_normal((1, T, H, d), dtype=np.float32)
    v32 = rng.standard_normal((1, T, H, d), dtype=np.float32)
    rows, targets = [], []
    for op in ("hla2", "ahla", "hla3"):
        fns = {"float32": lambda op=op: hla.forward(q32, k32, v32, op=op, scale=s)}
        for dt in ("bfloat16", "float16"):
            q, k, v = (_half_arrays(x, dt) for x in (q32, k32, v32))
            fns[dt] = lambda op=op, q=q, k=k, v=v: hla.forward(q, k, v, op=op, scale=s)
        tm = interleaved(fns, a.reps)
        rows.append([op + " forward", fmt_t(tm["float32"]), fmt_t(tm["bfloat16"]), fmt_t(tm["float16"]),
                     "%.2fx" % (tm["bfloat16"] / tm["float32"]), "%.2fx" % (tm["float16"] / tm["float32"])])
        targets.append(("%s chunked forward bfloat16 ≤ 1.1x float32" % op, tm["bfloat16"] / tm["float32"]))
    Hs = 64
    qs32 = rng.standard_normal((1, Hs, d), dtype=np.float32)
    for op in ("hla2", "ahla", "hla3"):
        fns = {}
        for dt in ("float32", "bfloat16", "float16"):
            st = hla.State(op, batch=1, heads=Hs, dk=d, dv=d, scale=s, dtype="float32")
            qs = qs32 if dt == "float32" else _half_arrays(qs32, dt)

            def loop(st=st, qs=qs):
                for _ in range(a.steps):
                    st.step(qs, qs, qs)
            fns[dt] = loop
        tm = interleaved(fns, a.reps)
        per = {k: v / a.steps for k, v in tm.items()}
        rows.append([op + " State.step (per call)", fmt_t(per["float32"]), fmt_t(per["bfloat16"]), fmt_t(per["float16"]),
                     "%.2fx" % (per["bfloat16"] / per["float32"]), "%.2fx" % (per["float16"] / per["float32"])])
        targets.append(("%s State.step bfloat16 ≤ 1.1x float32" % op, per["bfloat16"] / per["float32"]))
    R.table(["", "float32", "bfloat16", "float16", "bf16 / f32", "f16 / f32"], rows)
    return [[name, "%.2fx" % r, "%.2f of allowance" % (r / 1.1), "met" if r <= 1.1 else "NOT met"] for name, r in targets]


def varlen_section(R, hla, a, interleaved, fmt_t):
    R.p("## Packed variable-length batches (cu_seqlens)")
    R.p()
    rng = np.random.default_rng(2)
    N, H, d = 16, 8, 64
    lmax = max(a.T // 8, 64)
    lens = rng.integers(lmax // 8, lmax + 1, size=N)
    lens[0] = lmax
    total = int(lens.sum())
    cu = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    s = d ** -0.5
    qp = rng.standard_normal((1, total, H, d), dtype=np.float32)
    kp = rng.standard_normal((1, total, H, d), dtype=np.float32)
    vp = rng.standard_normal((1, total, H, d), dtype=np.float32)
    qb = np.zeros((N, lmax, H, d), np.float32)
    kb, vb = np.zeros_like(qb), np.zeros_like(qb)
    for i in range(N):
        qb[i, :lens[i]] = qp[0, cu[i]:cu[i + 1]]
        kb[i, :lens[i]] = kp[0, cu[i]:cu[i + 1]]
        vb[i, :lens[i]] = vp[0, cu[i]:cu[i + 1]]
    share = total / (N * lmax)
    R.p("%d sequences of %d..%d tokens (%d in all) on H=8, d=64, float32: packed into one [1, %d, H, d] batch "
        "with cu_seqlens, against the same tokens zero-padded into a [%d, %d, H, d] batch (the padded batch "
        "computes %.0f%% more tokens). Packed should cost no more than its share of the padded batch's tokens "
        "(%.2f). Interleaved medians." % (N, lens.min(), lens.max(), total, total, N, lmax, 100 * (1 / share - 1), share))
    R.p()
    rows, targets = [], []
    for op in ("hla2", "ahla", "hla3"):
        for path in ("chunked", "scan"):
            fns = {"packed": lambda op=op, path=path: hla.forward(qp, kp, vp, op=op, scale=s, cu_seqlens=cu, path=path),
                   "padded": lambda op=op, path=path: hla.forward(qb, kb, vb, op=op, scale=s, path=path)}
            tm = interleaved(fns, a.reps)
            r = tm["packed"] / tm["padded"]
            rows.append([op, path, fmt_t(tm["packed"]), fmt_t(tm["padded"]), "%.2f" % r, "%.2f" % share])
            targets.append(("%s %s packed ≤ its token share (%.2f) of padded" % (op, path, share), r / share))
    R.table(["op", "path", "packed (cu_seqlens)", "padded batch", "packed / padded", "token share"], rows)
    return [[name, "%.2f of share" % r, "%.2f of allowance" % r, "met" if r <= 1.0 else "NOT met"] for name, r in targets]


def rows_section(R, hla, a, interleaved, fmt_t):
    R.p("## Row-indexed steps (continuous batching)")
    R.p()
    H, d, live, slots = 8, 64, 256, 1024
    s = d ** -0.5
    rng = np.random.default_rng(3)
    steps = max(a.steps // 20, 10)
    rows_idx = np.sort(rng.choice(slots, size=live, replace=False)).astype(np.int64)
    q = rng.standard_normal((live, H, d), dtype=np.float32)
    R.p("`State.step(q, k, v, rows=...)` on a State of %d slots advancing %d live rows (random, distinct), "
        "against `State.step` on a dense State of %d rows; H=8, d=64, float32 (state row %s). A Python loop "
        "of %d calls; interleaved medians. The row-indexed step should cost ≤ 1.1x the dense one." % (
            slots, live, live, "%d KiB" % (hla.state_elements("hla2", heads=H, dk=d, dv=d) * 4 // 1024), steps))
    R.p()
    out, targets = [], []
    for op in ("hla2", "ahla", "hla3"):
        big = hla.State(op, batch=slots, heads=H, dk=d, dv=d, scale=s, dtype="float32")
        dense = hla.State(op, batch=live, heads=H, dk=d, dv=d, scale=s, dtype="float32")

        def f_rows(big=big):
            for _ in range(steps):
                big.step(q, q, q, rows=rows_idx)

        def f_dense(dense=dense):
            for _ in range(steps):
                dense.step(q, q, q)
        tm = interleaved({"rows": f_rows, "dense": f_dense}, a.reps)
        r = tm["rows"] / tm["dense"]
        out.append([op, fmt_t(tm["rows"] / steps), fmt_t(tm["dense"] / steps), "%.2fx" % r])
        targets.append(("%s step with rows (%d of %d slots) ≤ 1.1x dense %d rows" % (op, live, slots, live), r))
        del big, dense
    R.table(["op", "rows= step (per call)", "dense step (per call)", "ratio"], out)
    return [[name, "%.2fx" % r, "%.2f of allowance" % (r / 1.1), "met" if r <= 1.1 else "NOT met"] for name, r in targets]


def out_section(R, hla, a, interleaved, fmt_t):
    """The outputs into a buffer the caller reuses (out=) against a fresh output per call."""
    R.p("## Outputs into a reused buffer (out=)")
    R.p()
    B, T, H, d = 1, 16384, 8, 64
    s = d ** -0.5
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((B, T, H, d), dtype=np.float32) for _ in range(3))
    buf = np.empty((B, T, H, d), np.float32)
    R.p("`hla.forward` (chunked, automatic chunk; B=%d, T=%d, H=%d, d=%d, float32) returning a new output "
        "each call, its memory from `hla.output_pool` (the buffer of an output freed before, kept for the next "
        "output of its size), and into a new `np.empty` output each call (`out=`: what the pool saves, a fresh "
        "%d MiB output faulted in and zeroed by the kernel on first touch), against `hla.forward(..., out=buf)` "
        "writing the same buffer every call; and `State.step` at H=64, d=64 returning its output (an output "
        "the loop has dropped, which the State keeps and writes again) and with `out=` (a Python loop of %d "
        "calls). Interleaved medians." % (B, T, H, d, B * T * H * d * 4 // 2 ** 20, a.steps))
    R.p()
    rows = []
    for op in ("hla2", "ahla", "hla3"):
        tm = interleaved({"fresh": lambda op=op: hla.forward(q, k, v, op=op, scale=s),
                          "empty": lambda op=op: hla.forward(q, k, v, op=op, scale=s,
                                                             out=np.empty((B, T, H, d), np.float32)),
                          "out": lambda op=op: hla.forward(q, k, v, op=op, scale=s, out=buf)}, a.reps)
        st = hla.State(op, batch=1, heads=64, dk=64, dv=64, scale=0.125, dtype="float32")
        toks = [tuple(rng.standard_normal((1, 64, 64), dtype=np.float32) for _ in range(3)) for _ in range(64)]
        ob = np.empty((1, 64, 64), np.float32)
        n = a.steps

        def fresh(st=st, toks=toks):
            for i in range(n):
                st.step(*toks[i % 64])

        def into(st=st, toks=toks, ob=ob):
            for i in range(n):
                st.step(*toks[i % 64], out=ob)
        ts = interleaved({"fresh": fresh, "out": into}, a.reps)
        rows.append([op, fmt_t(tm["fresh"]), fmt_t(tm["empty"]), fmt_t(tm["out"]),
                     "%.3f" % (tm["out"] / tm["fresh"]), "%.3f" % (tm["out"] / tm["empty"]),
                     fmt_t(ts["fresh"] / n), fmt_t(ts["out"] / n), "%.3f" % (ts["out"] / ts["fresh"])])
        del st
    R.table(["op", "forward, new output (pool)", "forward, out=np.empty(...)", "forward, out=buf",
             "out=buf / pool", "out=buf / out=np.empty", "State.step, returned output",
             "State.step, out=", "ratio"], rows)
    return []


def serialize_section(R, hla, a, interleaved, fmt_t):
    R.p("## Serialization")
    R.p()
    st = hla.State("hla2", batch=1, heads=64, dk=64, dv=64, dtype="float32")
    st.array[...] = np.random.default_rng(4).standard_normal(st.array.shape, dtype=np.float32)
    nbytes = st.array.nbytes
    blob = st.to_bytes()
    back = hla.State.from_bytes(blob)
    assert np.array_equal(back.array, st.array)
    tm = interleaved({"to": lambda: st.to_bytes(), "from": lambda: hla.State.from_bytes(blob),
                      "both": lambda: hla.State.from_bytes(st.to_bytes())}, max(a.reps, 15))
    gbs = 2 * nbytes / tm["both"] / 1e9
    R.p("`State.to_bytes()` then `State.from_bytes()` of an hla2 state of H=64, d=64 (%d bytes of statistics; "
        "the bytes carry a header, the configuration and a checksum): %s + %s; both together %s, %.1f GB/s "
        "counting the state's bytes once each way. Target ≥ 5 GB/s." % (
            nbytes, fmt_t(tm["to"]), fmt_t(tm["from"]), fmt_t(tm["both"]), gbs))
    R.p()
    return [["serialize + deserialize a 2 MiB state ≥ 5 GB/s", "%.1f GB/s" % gbs, "%.2f of target" % (gbs / 5),
             "met" if gbs >= 5 else "NOT met"]]


def baseline_section(R, a, fmt_t):
    """Every path through this tree's package and an earlier build's, alternately, in subprocesses."""
    base = os.path.abspath(a.baseline)
    R.p("## Against an earlier build (%s)" % base)
    R.p()
    probe = os.path.join(HERE, "pathprobe.py")
    T = min(a.T, 8192)
    this_path = getattr(a, "hla_pythonpath", None) or os.path.join(ROOT, "bindings", "python")
    env_of = lambda path: dict(os.environ, PYTHONPATH=path)  # noqa: E731
    desc = subprocess.run(["git", "-C", base, "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    runs = {"this": [], "base": []}
    rounds = 5
    for _ in range(rounds):
        for key, tree in (("base", os.path.join(base, "bindings", "python")), ("this", this_path)):
            r = subprocess.run([sys.executable, probe, str(T), str(max(a.reps // 2, 3)), str(max(a.steps // 4, 50))],
                               env=env_of(tree), capture_output=True, text=True)
            if r.returncode != 0:
                R.p("probe failed in %s: %s" % (tree, r.stderr.strip().splitlines()[-1:] or "?"))
                R.p()
                return []
            runs[key].append(json.loads(r.stdout))
    R.p("`examples/bench/pathprobe.py` (chunked, scan and serial forward at B=1, H=8, d=64, float32; "
        "State.step at H=64) run %d times alternately with the `hla` package benchmarked above (%s) and with "
        "the one built from %s (%s); each figure is the fastest call over all runs (the least disturbed one on "
        "a shared machine)." % (rounds, this_path, base, desc or "?"))
    R.p()
    rows, worst = [], 0.0
    for name in runs["this"][0]:
        t_new = min(r[name] for r in runs["this"])
        t_old = min(r[name] for r in runs["base"])
        rows.append([name, fmt_t(t_old), fmt_t(t_new), "%.2fx" % (t_new / t_old)])
        worst = max(worst, t_new / t_old)
    R.table(["path", "earlier build", "this build", "this / earlier"], rows)
    return [["no path slower than the earlier build (%s)" % (desc or "baseline"), "worst ratio %.2fx" % worst,
             "%.2f of allowance (1.10 = noise band)" % (worst / 1.1), "met" if worst <= 1.1 else "NOT met"]]
