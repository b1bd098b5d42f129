#!/usr/bin/env python3
"""What holds hla3's multi-query step kernel below the FMA peak, measured in the same rounds on one thread.

    python3 examples/bench/stepprobe.py [--rounds 15] [--heads 32] [--calls 2000]

The kernel is hla_private_hla3_heads_avx512 (Sources/CHLA/step_heads.h compiled in tile512.c) on one thread's share
of a step at H = 64, Hkv = 1, d = 64 (32 query heads of one kv head, the kv blocks advanced in the call;
examples/bench/stepprobe.c), hot in L2 (--heads changes the count; past about 60 heads W no longer fits one core's
L2), compiled by $CC (clang when CC is unset and clang is on the PATH, as SwiftPM compiles the library's C). Besides
the kernel as the library runs it, variants that time the same instructions minus one kind (their results are wrong;
only their time is looked at), written by this script from step_heads.h's text:
    no W stores       the sweeps' stores of the rows they advance (W's, and the kv blocks' in their sweeps) left
                      out (the rows are still computed and used)
    no broadcasts     the product tiles' multipliers (four per row of W, one query element each) taken from a
                      register instead of broadcast from memory
    neither           both
Each round, back to back: the 1-thread zmm FMA trial peak (limits.c, the best of 5 short trials) and each build's
`calls` kernel calls in one timed stretch. Printed: per build the median over rounds of the time per call, the
share of the peak at which its multiply-adds ran (the kernel's must-do count: per query head d² for z = S q and
3·d·dv for y = Pᵀ q, the W update and o = Wᵀ q; d² + d·dv for the kv update), and the per-round time against
the library's kernel. The CPU must have AVX-512.
"""
import argparse
import ctypes
import os
import shutil
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import limits  # noqa: E402

TILE512 = os.path.join(ROOT, "Sources", "CHLA", "tile512.c")
KERNEL = os.path.join(ROOT, "Sources", "CHLA", "step_heads.h")        # included by tile512.c
INCLUDE = os.path.join(ROOT, "Sources", "CHLA", "include")
SOURCE = os.path.join(HERE, "stepprobe.c")

# (text in step_heads.h, its replacement): each must occur exactly once, or the variant is not built.
W_STORE = ("t = HV_FMA(zr, v, t); HV_STORE(row + L * k, t);",
           "t = HV_FMA(zr, v, t); __asm__ volatile(\"\" :: \"v\"(t));")
TILE_BROADCAST = ("#define T1(i) if (NR > i) { HV s = HV_SET1(a##i[r]);",
                  "#define T1(i) if (NR > i) { HV s = xr;")
VARIANTS = [("library kernel", []), ("no W stores", [W_STORE]), ("no broadcasts", [TILE_BROADCAST]),
            ("neither", [W_STORE, TILE_BROADCAST])]


def variant_source(name, edits):
    """Paths of tile512.c and of the step_heads.h it includes, with `edits` applied to step_heads.h (the files
    themselves when there are none; else copies of both in a folder of the variant's own, so that tile512.c's
    `#include "step_heads.h"` finds the edited one)."""
    if not edits:
        return TILE512, KERNEL
    with open(KERNEL) as f:
        text = f.read()
    for old, new in edits:
        if text.count(old) != 1:
            sys.exit("stepprobe: Sources/CHLA/step_heads.h has changed: %r occurs %d times (the variant %r needs it "
                     "once); update stepprobe.py" % (old, text.count(old), name))
        text = text.replace(old, new)
    d = os.path.join(tempfile.gettempdir(), "hla-bench-limits-%d" % os.getuid(), "stepprobe-" + name.replace(" ", "-"))
    os.makedirs(d, exist_ok=True)
    with open(TILE512) as f:
        tile = f.read()

    def put(base, content):
        path = os.path.join(d, base)
        tmp = path + ".%d.tmp" % os.getpid()
        with open(tmp, "w") as f:
            f.write(content)
        os.replace(tmp, path)      # whole, also when two runs write it at once
        return path

    kernel = put("step_heads.h", text)
    return put("tile512.c", tile), kernel


def build(name, edits):
    src, kernel = variant_source(name, edits)
    flags = ["-O2", "-fPIC", "-shared", "-I", INCLUDE, "-DTILE512=\"%s\"" % src]
    lib = ctypes.CDLL(limits.compiled(SOURCE, flags, depends=[src, kernel, os.path.join(INCLUDE, "hla_private.h")]))
    lib.stepprobe_avx512.restype = ctypes.c_int
    lib.stepprobe_seconds.restype = ctypes.c_double
    lib.stepprobe_seconds.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long]
    return lib


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--calls", type=int, default=2000)
    a = ap.parse_args()
    if "CC" not in os.environ and shutil.which("clang"):
        os.environ["CC"] = "clang"
    d, n = 64, a.heads
    libs = [(name, build(name, edits)) for name, edits in VARIANTS]
    if not libs[0][1].stepprobe_avx512():
        sys.exit("stepprobe: this CPU (or OS) has no AVX-512; the probe measures the AVX-512 kernel")
    macs = n * (d * d + 3 * d * d) + (d * d + d * d)           # per call
    times = {name: [] for name, _ in libs}
    peaks = []
    for _ in range(a.rounds):
        peaks.append(limits.fma_peak(1, trials=5, zmm=True)[-1])
        for name, lib in libs:
            t = lib.stepprobe_seconds(d, n, a.calls)
            if t < 0:
                sys.exit("stepprobe: no memory for %d heads' blocks" % n)
            times[name].append(t / a.calls)
    med = statistics.median
    base = times[libs[0][0]]
    print("hla3 kernel, %d query heads of one kv head, d = %d, hot in L2, one thread; %d rounds; 1-thread zmm FMA "
          "peak %.1f GFLOP/s (median of the rounds' best); %d multiply-adds per call" % (n, d, a.rounds, med(peaks),
                                                                                      macs))
    for name, _ in libs:
        ts = times[name]
        share = med(2 * macs / t / 1e9 / p for t, p in zip(ts, peaks))
        print("  %-15s %6.2f µs per call   %3.0f%% of the FMA peak   %.3f of the library kernel's time (per round)"
              % (name, 1e6 * med(ts), 100 * share, med(t / b for t, b in zip(ts, base))))


if __name__ == "__main__":
    main()
