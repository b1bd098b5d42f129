#!/usr/bin/env python3
"""How close the chunked forward comes to its own register tile, measured in the same rounds on one thread.

    python3 examples/bench/tileprobe.py [--rounds 16] [--lib PATH] OP:D [OP:D ...]

Each round, back to back: the FMA trial peak (limits.c, zmm, the best of 5 short trials), the AVX-512 8 x 32 tile
alone (tileprobe.c: libhla's Sources/CHLA/tile512.c looping on 32 x D x D products over 16 heads' operands, the
chunk's d x d products at chunk 32, as many flops as the forward's in one timed stretch) and one chunked forward
(hla_forward from C; B=1, H=8, T=8192 at D <= 64, 4096 above; chunk 32; float32, masked). Printed per OP:D: medians over rounds of the tile's and the forward's must-do
GFLOP/s (examples/bench/peers.py's count) and of the per-round shares (forward / peak, tile / peak, forward /
tile). Ratios within a round cancel the slow drifts of a shared host, whose contention lowers the three alike.
The library runs on one thread (HLA_NUM_THREADS=1 is set before it is loaded) and must be on an AVX-512 CPU.
"""
import argparse
import ctypes
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import limits  # noqa: E402
import peers  # noqa: E402

SOURCES = [os.path.join(HERE, "tileprobe.c"), os.path.join(ROOT, "Sources", "CHLA", "tile512.c"),
           os.path.join(ROOT, "Sources", "CHLA", "include", "hla_private.h")]
CFLAGS = ["-O2", "-fPIC", "-shared", "-I", os.path.join(ROOT, "Sources", "CHLA", "include")]


def build():
    """Compile tileprobe.c (once per version of it and of the tile's sources) and load it."""
    lib = ctypes.CDLL(limits.compiled(SOURCES[0], CFLAGS, depends=SOURCES[1:]))
    lib.tileprobe_avx512.restype = ctypes.c_int
    lib.tileprobe_rate.restype = ctypes.c_double
    lib.tileprobe_rate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long]
    return lib


def probe(lib, tiles, op, d, rounds, T=None, H=8, n=32):
    """Per-round (peak, tile, forward) GFLOP/s for OP at head size d, one thread."""
    T = T or (8192 if d <= 64 else 4096)
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, T, H, d), dtype=np.float32) * d ** -0.5 for _ in range(3))
    f = limits.CForward(lib, op, q, k, v, d ** -0.5, chunk=n)
    f()
    flops = peers.flops(op, 1, T, H, H, d, d, n)
    calls = max(1, int(flops / (2 * 32 * d * d)))   # the tile's stretch: as many flops as the forward's
    rows = []
    try:
        for _ in range(rounds):
            peak = limits.fma_peak(1, trials=5, zmm=True)[-1]
            tile = tiles.tileprobe_rate(d, 16, calls)
            if tile < 0:
                raise MemoryError("tileprobe_rate: no memory for 16 heads' operands at d = %d" % d)
            rows.append((peak, tile, flops / f() / 1e9))
    finally:
        f.close()
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("specs", nargs="+", metavar="OP:D")
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--lib", default=os.path.join(ROOT, ".build", "release", "libhla.so"))
    a = ap.parse_args()
    os.environ["HLA_NUM_THREADS"] = "1"   # read by the library when it is loaded (below, by limits.c)
    tiles = build()
    if not tiles.tileprobe_avx512():
        sys.exit("tileprobe: this CPU (or OS) has no AVX-512; the probe measures the AVX-512 tile")
    med = statistics.median
    for spec in a.specs:
        op, d = spec.split(":")
        d = int(d)
        if d % 32:
            sys.exit("tileprobe: D must be a multiple of 32")
        rows = probe(a.lib, tiles, op, d, a.rounds)
        print("%s d=%d (%d rounds, one thread): peak %.1f, tile alone %.1f, forward %.1f GFLOP/s (medians); "
              "per round: tile %.0f%% and forward %.0f%% of the peak, forward %.0f%% of the tile"
              % (op, d, len(rows), med(r[0] for r in rows), med(r[1] for r in rows), med(r[2] for r in rows),
                 100 * med(r[1] / r[0] for r in rows), 100 * med(r[2] / r[0] for r in rows),
                 100 * med(r[2] / r[1] for r in rows)))


if __name__ == "__main__":
    main()
