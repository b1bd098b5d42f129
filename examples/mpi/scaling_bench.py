"""Measurements and model behind docs/scaling.md (sequence parallelism over MPI).

    # per-rank compute costs, one process (HLA_NUM_THREADS=1 for one core per rank):
    python3 examples/mpi/scaling_bench.py costs --out docs/bench/mpi_costs.json
    # Exscan (with the real combine operator) and Bcast times on this machine, under mpirun:
    mpirun -n 4 python3 examples/mpi/scaling_bench.py comm --out docs/bench/mpi_comm_4.json
    # the model's tables (markdown) from a costs file:
    python3 examples/mpi/scaling_bench.py model --costs docs/bench/mpi_costs.json
    # per-rank backward cost (hla_backward from a carry-in, with d_final), beside summarize and forward
    # measured in the same run, and the backward chain's model (docs/scaling.md, "Backward"):
    python3 examples/mpi/scaling_bench.py backward-costs --out docs/bench/mpi_backward_costs_1.json
    python3 examples/mpi/scaling_bench.py backward-model --costs docs/bench/mpi_backward_costs_*.json \
        --forward-costs docs/bench/mpi_costs_*.json

Configuration: B = 1, H = Hkv = 8, dk = dv = 64, float32 inputs, masked, scale 1/8, no decay; each of
hla2, ahla and hla3. Times are the minimum (and median) of repeated runs, measured around the library
calls themselves (hla._hla, preallocated outputs: no Python allocation in the timed region).
"""
import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))

import hla  # noqa: E402
from hla import _arrays, _hla  # noqa: E402

OPS = ("hla2", "ahla", "hla3")
H, D = 8, 64


def config(op):
    q = np.zeros((1, 1, H, D), np.float32)
    return hla._call_config(q, q, q, op, True, False, 1.0, 0.0, 1e-6, D ** -0.5, None)


def timeit(fn, reps, min_time=0.0):
    fn()                                      # warm up (thread pool, page faults)
    ts = []
    start = time.perf_counter()
    while len(ts) < reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.min(ts)), float(np.median(ts)), len(ts)


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return dict(cpu=cpu, cores=os.cpu_count(), python=platform.python_version(),
                hla_num_threads=os.environ.get("HLA_NUM_THREADS", "default"),
                library=hla.library_version(), date=time.strftime("%Y-%m-%d %H:%M"))


def costs(args):
    rng = np.random.default_rng(0)
    out = dict(machine=machine(), config=dict(B=1, H=H, Hkv=H, dk=D, dv=D, dtype="float32",
                                              masked=True), ops={})
    for op in OPS:
        cfg = config(op)
        seg_cfg = hla._state.canonical(cfg)._replace(chunk_size=0)
        m, n = _hla.summary_elements(seg_cfg), _hla.state_elements(seg_cfg)
        res = dict(m=m, n=n, summary_bytes=4 * m + 8, state_bytes=4 * n, lengths={})
        # fixed-size operations: combine two summaries, summary -> state
        L0 = 512
        q = rng.standard_normal((1, L0, H, D), dtype=np.float32)
        k = rng.standard_normal((1, L0, H, D), dtype=np.float32)
        v = rng.standard_normal((1, L0, H, D), dtype=np.float32)
        a = _arrays.aligned_zeros((1, m), np.float32)
        la = np.zeros(1, np.int64)
        _hla.summarize(cfg, q, k, v, None, a, la)
        b, lb = a.copy(), la.copy()
        r, lr = _arrays.aligned_zeros((1, m), np.float32), np.zeros(1, np.int64)
        st = _arrays.aligned_zeros((1, n), np.float32)
        res["combine_s"] = timeit(lambda: _hla.summary_combine(cfg, a, la, b, lb, r, lr), 30, 0.3)
        res["to_state_s"] = timeit(lambda: _hla.summary_to_state(seg_cfg, a, st, None), 30, 0.3)
        _hla.summary_to_state(seg_cfg, a, st, None)
        for L in args.lengths:
            q = rng.standard_normal((1, L, H, D), dtype=np.float32)
            k = rng.standard_normal((1, L, H, D), dtype=np.float32)
            v = rng.standard_normal((1, L, H, D), dtype=np.float32)
            o = np.empty((1, L, H, D), np.float32)
            s, ls = _arrays.aligned_zeros((1, m), np.float32), np.zeros(1, np.int64)
            reps = 5 if L <= 16384 else 3
            t_sum = timeit(lambda: _hla.summarize(cfg, q, k, v, None, s, ls), reps)
            t_fwd = timeit(lambda: _hla.forward(cfg, "chunked", q, k, v, o, None, st, None, None), reps)
            res["lengths"][str(L)] = dict(summarize_s=t_sum, forward_from_carry_s=t_fwd)
            print("%s L=%7d summarize %8.2f ms  forward %8.2f ms" % (op, L, 1e3 * t_sum[0], 1e3 * t_fwd[0]),
                  file=sys.stderr, flush=True)
            del q, k, v, o
        print("%s combine %.3f ms  to_state %.3f ms  m=%d n=%d" % (op, 1e3 * res["combine_s"][0],
              1e3 * res["to_state_s"][0], m, n), file=sys.stderr, flush=True)
        out["ops"][op] = res
    text = json.dumps(out, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


def comm_bench(args):
    from mpi4py import MPI

    import hla.mpi as hm

    comm = MPI.COMM_WORLD
    rank, P = comm.Get_rank(), comm.Get_size()
    rng = np.random.default_rng(rank)
    out = dict(machine=machine(), ranks=P, ops={},
               exscan_algorithm=os.environ.get("OMPI_MCA_coll_tuned_exscan_algorithm", "default"),
               btl=os.environ.get("OMPI_MCA_btl", "default"))
    L = 256
    for op in OPS:
        cfg = config(op)
        q = rng.standard_normal((1, L, H, D), dtype=np.float32)
        seg = hla.summarize(q, q[:, :, :H], q, op=op, scale=D ** -0.5)
        m, dtype = seg.array.shape[1], seg.dtype
        rb = hm.row_bytes(m, dtype.itemsize)
        send = np.zeros((1, rb), np.uint8)
        s, ln = hm._views(send, m, dtype)
        s[...] = seg.array
        ln[...] = seg.length
        recv = np.zeros_like(send)
        calls = [0]
        inner = hm._combine_op(seg._cfg, m, dtype, rb)

        def counted(a, b, t):
            calls[0] += 1
            inner(a, b, t)

        mtype = MPI.BYTE.Create_contiguous(rb).Commit()
        mop = MPI.Op.Create(counted, commute=False)
        n = _hla.state_elements(seg._cfg)
        state = np.zeros(n, np.float32)

        def exscan():
            comm.Barrier()
            t0 = MPI.Wtime()
            comm.Exscan([send, 1, mtype], [recv, 1, mtype], mop)
            return MPI.Wtime() - t0

        def bcast():
            comm.Barrier()
            t0 = MPI.Wtime()
            comm.Bcast(state, root=P - 1)
            return MPI.Wtime() - t0

        exscan()
        calls[0] = 0
        reps = 20
        te = [exscan() for _ in range(reps)]
        tb = [bcast() for _ in range(reps)]
        mop.Free()
        mtype.Free()
        # the collective's time is the slowest rank's
        te, tb = np.array(te), np.array(tb)
        comm.Allreduce(MPI.IN_PLACE, te, op=MPI.MAX)
        comm.Allreduce(MPI.IN_PLACE, tb, op=MPI.MAX)
        call_counts = comm.gather(calls[0] / reps, root=0)
        out["ops"][op] = dict(summary_bytes=rb, state_bytes=4 * n,
                              exscan_s=(float(np.min(te)), float(np.median(te))),
                              bcast_s=(float(np.min(tb)), float(np.median(tb))),
                              combine_calls_per_rank=call_counts)
    if rank == 0:
        text = json.dumps(out, indent=1)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text + "\n")
        print(text)


# ---- the model ------------------------------------------------------------------------------------

def fit(lengths, times):
    """t = a + b L, least squares on relative residuals (the lengths span two orders of magnitude)."""
    Ls = np.array(lengths, float)
    ts = np.array(times, float)
    b, a = np.polyfit(Ls, ts, 1, w=1.0 / ts)
    if a < 0:
        b, a = float(np.sum(Ls / ts) / np.sum(Ls * Ls / ts ** 2)), 0.0
    return float(a), float(b)


def merged_costs(paths):
    """The costs files of several runs, each figure the minimum over the runs (a shared machine)."""
    c = None
    for path in paths:
        with open(path) as f:
            d = json.load(f)
        if c is None:
            c = d
            c["runs"] = [d["machine"]]
            continue
        c["runs"].append(d["machine"])
        for op, r in d["ops"].items():
            mine = c["ops"][op]
            for key in ("combine_s", "to_state_s"):
                mine[key] = [min(mine[key][0], r[key][0]), min(mine[key][1], r[key][1])]
            for L, x in r["lengths"].items():
                if L not in mine["lengths"]:
                    mine["lengths"][L] = x
                    continue
                for key in ("summarize_s", "forward_from_carry_s"):
                    mine["lengths"][L][key] = [min(mine["lengths"][L][key][0], x[key][0]),
                                               min(mine["lengths"][L][key][1], x[key][1])]
    return c


def scan_times(P, M, N, t_c, alpha, beta):
    """(linear Exscan, recursive-doubling Exscan, binomial Bcast) times of the model for P ranks."""
    if P == 1:
        return 0.0, 0.0, 0.0
    lg = math.ceil(math.log2(P))
    linear = (P - 1) * (alpha + M / beta) + (P - 2) * t_c
    rd = lg * (2 * alpha + 2 * M / beta + 2 * t_c)
    bcast = lg * (alpha + N / beta)
    return linear, rd, bcast


def model_tables(args):
    c = merged_costs(args.costs)
    alpha, beta = args.latency, args.bandwidth
    lines = []
    tokens = [1 << 20, 1 << 22, 1 << 24, 1 << 26]
    ranks = [1, 2, 4, 8, 16, 32, 64]
    params = {}
    lines.append("Measured (minimum over %d runs), one thread (HLA_NUM_THREADS=%s):"
                 % (len(c["runs"]), c["machine"]["hla_num_threads"]))
    lines.append("")
    Ls = sorted(int(x) for x in c["ops"]["hla2"]["lengths"])
    lines.append("| op | " + " | ".join("L = %d" % L for L in Ls) + " | combine | summary→state |")
    lines.append("|---|" + "---|" * (len(Ls) + 2))
    for op in OPS:
        r = c["ops"][op]
        cells = ["%.1f / %.1f ms" % (1e3 * r["lengths"][str(L)]["summarize_s"][0],
                                     1e3 * r["lengths"][str(L)]["forward_from_carry_s"][0]) for L in Ls]
        lines.append("| %s (summarize / forward) | %s | %.0f µs | %.0f µs |"
                     % (op, " | ".join(cells), 1e6 * r["combine_s"][0], 1e6 * r["to_state_s"][0]))
        a_s, b_s = fit(Ls, [r["lengths"][str(L)]["summarize_s"][0] for L in Ls])
        a_f, b_f = fit(Ls, [r["lengths"][str(L)]["forward_from_carry_s"][0] for L in Ls])
        params[op] = (a_s, b_s, a_f, b_f, r["combine_s"][0], r["to_state_s"][0], r["summary_bytes"],
                      r["state_bytes"])
    lines.append("")
    lines.append("Fits t = a + b·L (model inputs):")
    lines.append("")
    lines.append("| op | summarize | forward from carry | t_fwd / (t_sum + t_fwd) | summary M | state N |")
    lines.append("|---|---|---|---|---|---|")
    for op in OPS:
        a_s, b_s, a_f, b_f, t_c, t_2s, M, N = params[op]
        lines.append("| %s | %.2f ms + %.2f µs/token | %.2f ms + %.2f µs/token | %.2f | %d B | %d B |"
                     % (op, 1e3 * a_s, 1e6 * b_s, 1e3 * a_f, 1e6 * b_f, b_f / (b_s + b_f), M, N))
    lines.append("")
    lines.append("Communication terms (model, α = %g µs, %g GB/s):" % (1e6 * alpha, beta / 1e9))
    lines.append("")
    lines.append("| P | " + " | ".join("%s Exscan linear / rec. doubling / Bcast" % op for op in OPS) + " |")
    lines.append("|---|" + "---|" * len(OPS))
    for P in ranks[1:]:
        cells = []
        for op in OPS:
            _, _, _, _, t_c, _, M, N = params[op]
            lin, rd, bc = scan_times(P, M, N, t_c, alpha, beta)
            cells.append("%.2f / %.2f / %.2f ms" % (1e3 * lin, 1e3 * rd, 1e3 * bc))
        lines.append("| %d | %s |" % (P, " | ".join(cells)))
    for op in OPS:
        a_s, b_s, a_f, b_f, t_c, t_2s, M, N = params[op]
        lines.append("")
        lines.append("**%s**: predicted time (speedup over P = 1, memory of q, k, v, o per rank)" % op)
        lines.append("")
        lines.append("| tokens | " + " | ".join("P = %d" % p for p in ranks) + " |")
        lines.append("|---|" + "---|" * len(ranks))
        for T in tokens:
            cells = []
            t1 = a_f + b_f * T
            for P in ranks:
                Lp = T / P
                lin, rd, bc = scan_times(P, M, N, t_c, alpha, beta)
                scan = min(lin, rd) if args.best_scan else lin
                t = t1 if P == 1 else (a_s + b_s * Lp) + scan + t_2s + (a_f + b_f * Lp) + bc
                mem = 4 * Lp * H * D * 4 / 2 ** 30
                cells.append("%s (%.1fx, %s)" % (fmt_time(t), t1 / t, fmt_mem(mem)))
            lines.append("| %dM | %s |" % (T >> 20, " | ".join(cells)))
    print("\n".join(lines))


def backward_costs(args):
    """Per-rank cost of one rank's part of hla.mpi.backward: hla_backward of L tokens from a non-zero
    carry-in with a non-zero d_final (chunked path), and summarize / forward from the carry timed in the
    same run (interleaved per length), so that their ratios see the same machine load."""
    rng = np.random.default_rng(1)
    out = dict(machine=machine(), config=dict(B=1, H=H, Hkv=H, dk=D, dv=D, dtype="float32",
                                              masked=True), ops={})
    for op in args.ops:
        cfg = config(op)
        seg_cfg = hla._state.canonical(cfg)._replace(chunk_size=0)
        m, n = _hla.summary_elements(seg_cfg), _hla.state_elements(seg_cfg)
        res = dict(m=m, n=n, summary_bytes=4 * m + 8, state_bytes=4 * n, lengths={})
        x = rng.standard_normal((1, 256, H, D), dtype=np.float32)
        s0, l0 = _arrays.aligned_zeros((1, m), np.float32), np.zeros(1, np.int64)
        _hla.summarize(cfg, x, x, x, None, s0, l0)
        st = _arrays.aligned_zeros((1, n), np.float32)
        _hla.summary_to_state(seg_cfg, s0, st, None)           # a non-zero carry-in
        d_final = _arrays.aligned_copy(rng.standard_normal((1, n)).astype(np.float32) * 1e-3)
        d_init = _arrays.aligned_zeros((1, n), np.float32)
        for L in args.lengths:
            q, k, v, do = (rng.standard_normal((1, L, H, D), dtype=np.float32) for _ in range(4))
            o, dq, dk, dv = (np.empty((1, L, H, D), np.float32) for _ in range(4))
            s, ls = _arrays.aligned_zeros((1, m), np.float32), np.zeros(1, np.int64)
            reps = args.reps
            t_sum = timeit(lambda: _hla.summarize(cfg, q, k, v, None, s, ls), reps)
            t_fwd = timeit(lambda: _hla.forward(cfg, "chunked", q, k, v, o, None, st, None, None), reps)
            t_bwd = timeit(lambda: _hla.backward(cfg, "chunked", q, k, v, do, dq, dk, dv, None, st,
                                                 d_final, d_init), reps)
            res["lengths"][str(L)] = dict(summarize_s=t_sum, forward_from_carry_s=t_fwd,
                                          backward_from_carry_s=t_bwd)
            print("%s L=%6d summarize %8.2f ms  forward %8.2f ms  backward %8.2f ms"
                  % (op, L, 1e3 * t_sum[0], 1e3 * t_fwd[0], 1e3 * t_bwd[0]), file=sys.stderr, flush=True)
            del q, k, v, do, o, dq, dk, dv
        out["ops"][op] = res
    text = json.dumps(out, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


def backward_model(args):
    """Critical path of hla.mpi.backward (the sequential chain) against one process, and of the two-pass
    form a transposed-summary entry would allow (docs/scaling.md, "Backward"): model output from
    backward-costs files (each figure the minimum over them) and the forward costs files (combine time,
    the Exscan's operator; also the model's cost of one transposed apply)."""
    c = None
    for path in args.costs:            # several runs: each figure the minimum over them
        with open(path) as f:
            d = json.load(f)
        if c is None:
            c = d
            continue
        for op, r in d["ops"].items():
            for L, x in r["lengths"].items():
                mine = c["ops"][op]["lengths"].setdefault(L, x)
                for key in x:
                    mine[key] = [min(mine[key][0], x[key][0]), min(mine[key][1], x[key][1])]
    fc = merged_costs(args.forward_costs)
    alpha, beta = args.latency, args.bandwidth
    ranks = [1, 2, 4, 8, 16, 64]
    tokens = [1 << 20, 1 << 24]
    lines = ["Measured per-rank costs (minimum over %d run(s)), µs/token of fits t = a + b·L over L = %s:"
             % (len(args.costs), ", ".join(sorted(c["ops"]["hla2"]["lengths"], key=int))), "",
             "| op | summarize | forward from carry | backward from carry, with d_final | backward / forward |",
             "|---|---|---|---|---|"]
    params = {}
    for op, r in c["ops"].items():
        Ls = sorted(int(x) for x in r["lengths"])
        a_s, b_s = fit(Ls, [r["lengths"][str(L)]["summarize_s"][0] for L in Ls])
        a_f, b_f = fit(Ls, [r["lengths"][str(L)]["forward_from_carry_s"][0] for L in Ls])
        a_b, b_b = fit(Ls, [r["lengths"][str(L)]["backward_from_carry_s"][0] for L in Ls])
        params[op] = (a_s, b_s, a_b, b_b, fc["ops"][op]["combine_s"][0], fc["ops"][op]["to_state_s"][0],
                      r["summary_bytes"], r["state_bytes"])
        lines.append("| %s | %.2f | %.2f | %.2f | %.2f |" % (op, 1e6 * b_s, 1e6 * b_f, 1e6 * b_b, b_b / b_f))
    for op, (a_s, b_s, a_b, b_b, t_c, t_2s, M, N) in params.items():
        lines += ["", "**%s** (model): sequential chain / two-pass form, speedup over one process's "
                  "hla.backward" % op, "",
                  "| tokens | " + " | ".join("P = %d" % p for p in ranks) + " |",
                  "|---|" + "---|" * len(ranks)]
        for T in tokens:
            cells = []
            t1 = a_b + b_b * T
            for P in ranks:
                Lp = T / P
                if P == 1:
                    chain = two = t1
                else:
                    lin, _, _ = scan_times(P, M, N, t_c, alpha, beta)
                    lg = math.ceil(math.log2(P))
                    hop = alpha + N / beta
                    pre = (a_s + b_s * Lp) + lin + t_2s          # carry-ins, as the forward
                    end = lg * (alpha + N / beta)                 # Bcast of d_initial + status
                    chain = pre + P * (a_b + b_b * Lp) + (P - 1) * hop + end
                    two = pre + 2 * (a_b + b_b * Lp) + (P - 1) * (hop + t_c) + end
                cells.append("%s / %s (%.2fx / %.1fx)" % (fmt_time(chain), fmt_time(two), t1 / chain,
                                                          t1 / two))
            lines.append("| %dM | %s |" % (T >> 20, " | ".join(cells)))
    print("\n".join(lines))


def fmt_mem(gib):
    return "%.0f GiB" % gib if gib >= 1 else "%.0f MiB" % (1024 * gib)


def fmt_time(t):
    if t >= 60:
        return "%.1f min" % (t / 60)
    if t >= 1:
        return "%.2f s" % t
    return "%.0f ms" % (1e3 * t)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pc = sub.add_parser("costs")
    pc.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384, 65536, 131072])
    pc.add_argument("--out")
    pm = sub.add_parser("comm")
    pm.add_argument("--out")
    pmod = sub.add_parser("model")
    pmod.add_argument("--costs", required=True, nargs="+")
    pmod.add_argument("--latency", type=float, default=5e-6, help="seconds per message (alpha)")
    pmod.add_argument("--bandwidth", type=float, default=10e9, help="bytes per second (1/beta)")
    pmod.add_argument("--best-scan", action="store_true",
                      help="use the cheaper of the linear and recursive-doubling Exscan")
    pb = sub.add_parser("backward-costs")
    pb.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    pb.add_argument("--ops", nargs="+", default=list(OPS))
    pb.add_argument("--reps", type=int, default=3)
    pb.add_argument("--out")
    pbm = sub.add_parser("backward-model")
    pbm.add_argument("--costs", required=True, nargs="+")
    pbm.add_argument("--forward-costs", nargs="+", required=True,
                     help="costs files of the forward (combine and summary->state times)")
    pbm.add_argument("--latency", type=float, default=5e-6, help="seconds per message (alpha)")
    pbm.add_argument("--bandwidth", type=float, default=10e9, help="bytes per second (1/beta)")
    args = p.parse_args()
    {"costs": costs, "comm": comm_bench, "model": model_tables, "backward-costs": backward_costs,
     "backward-model": backward_model}[args.cmd](args)


if __name__ == "__main__":
    main()
