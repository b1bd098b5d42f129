"""Compare two builds of libhla in one process, alternating: the way to measure a change of a few percent
on a machine whose speed drifts (other tenants, frequency) by more than that within a minute.

    python3 examples/bench/ab.py OLD.so NEW.so [--rounds 11] SPEC [SPEC ...]

Copy the old build's .build/release/libhla.so aside before rebuilding (two paths to the same file would
load one library). Each SPEC is one of
    step:OP:H,HKV,D              hla_step from a C loop (2,000 consecutive tokens per round; examples/bench/limits.c)
    forward:OP:B,T,H,D[,CHUNK[,PATH]]   one hla_forward call per round (float32, masked, H = Hkv; CHUNK 0 =
                                 automatic; PATH chunked, scan or serial)
    backward:OP:B,T,H,D          one hla_backward call per round (float32, masked, H = Hkv, chunked path,
                                 automatic chunk and checkpoints)
Every round runs both builds once, in a random order, after a warm-up call of each. Printed per SPEC:
whether the two builds' outputs (and, for steps, final states) are the same bits, each build's median and
minimum time, and the median over rounds of new time / old time (the two times of a round ran back to
back, so slow drifts of the machine cancel in it) with its quartiles, the rounds in which NEW was faster and a
two-sided sign test on that count (p: how often builds that differ in nothing would split the rounds as
unevenly; on a busy host a ratio of 0.98 with p = 0.5 is noise). The pool threads of both libraries run in
this process; HLA_NUM_THREADS applies to both.
"""
import argparse
import math
import os
import random
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import limits  # noqa: E402


def step_pair(libs, op, H, Hkv, d, rounds, N=2000):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((N, H, d), dtype=np.float32)
    k = rng.standard_normal((N, Hkv, d), dtype=np.float32)
    v = rng.standard_normal((N, Hkv, d), dtype=np.float32)
    n = state_elements(libs[0], op, H, Hkv, d)
    # parity: 300 tokens from a zero state on each build
    outs = []
    for lib in libs:
        c = limits.CStep(lib, op, H, Hkv, d, d, d ** -0.5, q[:300], k[:300], v[:300], n)
        c(300)
        outs.append((c.out.copy(), c.state.copy()))
        c.close()
    same = all(np.array_equal(outs[0][i], outs[1][i]) for i in (0, 1))
    runs = [limits.CStep(lib, op, H, Hkv, d, d, d ** -0.5, q, k, v, n) for lib in libs]
    for r in runs:
        r(200)
    times = alternate([lambda r=r: r(N) / N for r in runs], rounds)
    for r in runs:
        r.close()
    return same, times


def forward_pair(libs, op, B, T, H, d, chunk, path, rounds):
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((B, T, H, d), dtype=np.float32) for _ in range(3))
    runs = [limits.CForward(lib, op, q, k, v, d ** -0.5, chunk, path) for lib in libs]
    for r in runs:
        r()
    same = np.array_equal(runs[0].out, runs[1].out)
    times = alternate(runs, rounds)
    for r in runs:
        r.close()
    return same, times


def backward_pair(libs, op, B, T, H, d, rounds):
    rng = np.random.default_rng(0)
    q, k, v, do = (rng.standard_normal((B, T, H, d), dtype=np.float32) for _ in range(4))
    runs = [limits.CBackward(lib, op, q, k, v, do, d ** -0.5) for lib in libs]
    for r in runs:
        r()
    same = all(np.array_equal(getattr(runs[0], g), getattr(runs[1], g)) for g in ("dq", "dk", "dv"))
    times = alternate(runs, rounds)
    for r in runs:
        r.close()
    return same, times


def quartiles(xs):
    """The first and third quartiles of xs (sorted; statistics.quantiles' exclusive method, or xs' ends below 2)."""
    if len(xs) < 2:
        return xs[0], xs[-1]
    q = statistics.quantiles(xs, n=4)
    return q[0], q[2]


def sign_test(k, n):
    """Two-sided sign test: the chance of k or a count as far from n/2 among n fair coin flips (rounds where the
    two builds take the same time count for neither and are rare with timed calls)."""
    tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def alternate(fns, rounds):
    times = [[], []]
    for _ in range(rounds):
        order = [0, 1]
        random.shuffle(order)
        for i in order:
            times[i].append(fns[i]())
    return times


def state_elements(libpath, op, H, Hkv, d):
    """hla_state_elements of the masked configuration, from the library at libpath."""
    n = limits.build().limits_state_elements(libpath.encode(), limits.CStep.OPS[op], H, Hkv, d, d)
    if n < 0:
        raise RuntimeError(limits.build().limits_step_error().decode())
    return n


def load(libpath, simd):
    """Map the library at libpath with HLA_SIMD = simd (None: unset) in the environment while it loads."""
    import ctypes

    before = os.environ.get("HLA_SIMD")
    if simd is None:
        os.environ.pop("HLA_SIMD", None)
    else:
        os.environ["HLA_SIMD"] = simd
    try:
        ctypes.CDLL(libpath)
    finally:
        if before is None:
            os.environ.pop("HLA_SIMD", None)
        else:
            os.environ["HLA_SIMD"] = before


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--new-simd", help="HLA_SIMD for NEW only (e.g. avx2: its products on the AVX2 tiles); "
                    "each library reads HLA_SIMD when it is loaded")
    a = ap.parse_args()
    libs = [os.path.abspath(a.old), os.path.abspath(a.new)]
    if os.path.samefile(libs[0], libs[1]):
        sys.exit("ab.py: OLD and NEW are the same file; copy one build aside first")
    load(libs[0], os.environ.get("HLA_SIMD"))
    load(libs[1], a.new_simd if a.new_simd is not None else os.environ.get("HLA_SIMD"))
    for spec in a.specs:
        kind, op, rest = spec.split(":")
        nums = rest.split(",")
        if kind == "step":
            H, Hkv, d = (int(x) for x in nums)
            same, t = step_pair(libs, op, H, Hkv, d, a.rounds)
            unit, scale = "us", 1e6
        elif kind == "forward":
            B, T, H, d = (int(x) for x in nums[:4])
            chunk = int(nums[4]) if len(nums) > 4 else 0
            path = nums[5] if len(nums) > 5 else "chunked"
            same, t = forward_pair(libs, op, B, T, H, d, chunk, path, a.rounds)
            unit, scale = "ms", 1e3
        elif kind == "backward":
            B, T, H, d = (int(x) for x in nums[:4])
            same, t = backward_pair(libs, op, B, T, H, d, a.rounds)
            unit, scale = "ms", 1e3
        else:
            sys.exit("ab.py: unknown kind %r (step, forward or backward)" % kind)
        ratios = sorted(n / o for o, n in zip(t[0], t[1]))
        faster = sum(r < 1 for r in ratios)
        print("%-28s same bits: %-5s old med %.2f min %.2f %s | new med %.2f min %.2f %s | new/old per round %.3f "
              "(quartiles %.3f-%.3f; new faster in %d of %d rounds, sign test p = %.2g)"
              % (spec, same, statistics.median(t[0]) * scale, min(t[0]) * scale, unit,
                 statistics.median(t[1]) * scale, min(t[1]) * scale, unit, statistics.median(ratios),
                 *quartiles(ratios), faster, len(ratios), sign_test(faster, len(ratios))), flush=True)


if __name__ == "__main__":
    main()
