"""Peak memory of one libhla chunked forward beyond its inputs and output, in a fresh process.

    python3 memprobe.py OP T H D CHUNK  ->  one JSON line

Inputs are generated directly in float32 (no float64 temporaries); the kernel's high-water mark
(VmHWM) is reset through /proc/self/clear_refs when the kernel allows it, so
extra = VmHWM(after forward) - VmRSS(before forward) - bytes of the output array.
"""
import json
import sys
import time

import numpy as np


def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def import_hla():
    """hla, retried for a minute (the library may be being relinked by a concurrent build)."""
    for _ in range(20):
        try:
            import hla
            return hla
        except (ImportError, OSError):
            time.sleep(3)
    import hla
    return hla


def start_peak():
    """(VmRSS now, whether VmHWM could be reset to it through /proc/self/clear_refs)."""
    rss0 = status("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return rss0, False
    return rss0, True


def main():
    op, T, H, D, n = sys.argv[1], *map(int, sys.argv[2:6])
    hla = import_hla()
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, T, H, D), dtype=np.float32)
    k = rng.standard_normal((1, T, H, D), dtype=np.float32)
    v = rng.standard_normal((1, T, H, D), dtype=np.float32)
    # warm the library (thread start-up, BLAS buffers) on a tiny call so they are not charged to T
    hla.forward(q[:, :64], k[:, :64], v[:, :64], op=op, chunk_size=n)
    rss0, reset = start_peak()
    hwm0 = status("VmHWM")
    o, _ = hla.forward(q, k, v, op=op, scale=D ** -0.5, chunk_size=n)
    hwm = status("VmHWM")
    print(json.dumps({"op": op, "T": T, "rss_before": rss0, "hwm_before": hwm0, "hwm_after": hwm,
                      "hwm_reset": reset, "input_bytes": q.nbytes + k.nbytes + v.nbytes,
                      "output_bytes": o.nbytes, "extra": hwm - rss0 - o.nbytes}))


if __name__ == "__main__":
    main()
