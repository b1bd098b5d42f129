"""Hardware limits measured in the benchmark's own run, through examples/bench/limits.c (built here with
`$CC -O2 -mavx2 -mfma` into a shared library under the system's temporary directory and loaded with ctypes):

* ``fma_peak(threads, trials)``  -- GFLOP/s of 12 independent ymm FMA chains per thread (2 flops per lane
  per FMA), many short trials; the best trial is the peak (contention only ever lowers a trial).
* ``Sweep(nbytes)``              -- an in-place read-modify-write sweep x = a*x + b over a float32 buffer of
  nbytes (the size of a state), 1 thread: seconds per sweep.
* ``CStep(...)``                 -- hla_step called from a C loop (libhla's C ABI, no Python per token).
"""
import ctypes
import hashlib
import os
import statistics
import subprocess
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "limits.c")
CFLAGS = ["-O2", "-mavx2", "-mfma", "-fPIC", "-shared", "-pthread"]

_lib = None


def aligned(shape, dtype=np.float32, align=64, fill=0):
    """A C-contiguous array whose first element is `align`-byte aligned (as hla.State allocates its
    statistics: a plain numpy allocation of this size is only 16-byte aligned, and a state that is not
    64-byte aligned steps measurably slower)."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape))
    raw = np.empty(n * dt.itemsize + align, np.uint8)
    off = (-raw.ctypes.data) % align
    a = raw[off:off + n * dt.itemsize].view(dt).reshape(shape)
    a[...] = fill
    return a


def compiled(src, cflags, libs=(), depends=()):
    """Path of the shared library `$CC cflags src -o ... libs` builds, under the system's temporary directory: built
    once per version of src, of the files it includes (`depends`) and of the compiler and flags."""
    cc = os.environ.get("CC", "gcc")
    h = hashlib.sha1()
    for p in (src, *depends):
        with open(p, "rb") as f:
            h.update(f.read())
    h.update(" ".join([cc] + list(cflags)).encode())
    d = os.path.join(tempfile.gettempdir(), "hla-bench-limits-%d" % os.getuid())
    os.makedirs(d, exist_ok=True)
    so = os.path.join(d, "%s-%s.so" % (os.path.splitext(os.path.basename(src))[0], h.hexdigest()[:12]))
    if not os.path.exists(so):
        tmp = so + ".%d.tmp" % os.getpid()
        subprocess.run([cc] + list(cflags) + [src, "-o", tmp] + list(libs), check=True)
        os.replace(tmp, so)
    return so


def build():
    """Compile limits.c (once per source version) and load it; returns the ctypes library."""
    global _lib
    if _lib is not None:
        return _lib
    lib = ctypes.CDLL(compiled(SRC, CFLAGS, libs=["-ldl"]))
    D, L, I, P, I64 = ctypes.c_double, ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_int64
    lib.limits_fma_peak.restype = D
    lib.limits_fma_peak.argtypes = [I, L, ctypes.POINTER(D)]
    lib.limits_fma_peak512.restype = D
    lib.limits_fma_peak512.argtypes = [I, L, ctypes.POINTER(D)]
    lib.limits_rmw.restype = D
    lib.limits_rmw.argtypes = [P, L, I]
    lib.limits_rmw_threads.restype = D
    lib.limits_rmw_threads.argtypes = [P, L, I, I]
    lib.limits_step_new.restype = P
    lib.limits_step_new.argtypes = [ctypes.c_char_p, I, I64, I64, I64, I64, D, P, P, P, I64, P, P, I64]
    lib.limits_step_run.restype = D
    lib.limits_step_run.argtypes = [P, I64]
    lib.limits_step_free.restype = None
    lib.limits_step_free.argtypes = [P]
    lib.limits_step_error.restype = ctypes.c_char_p
    lib.limits_forward_new.restype = P
    lib.limits_forward_new.argtypes = [ctypes.c_char_p, I, I64, I64, I64, I64, I64, I64, D, I64, I, P, P, P, P]
    lib.limits_forward_run.restype = D
    lib.limits_forward_run.argtypes = [P]
    lib.limits_backward_new.restype = P
    lib.limits_backward_new.argtypes = [ctypes.c_char_p, I, I64, I64, I64, I64, D, P, P, P, P, P, P, P]
    lib.limits_backward_run.restype = D
    lib.limits_backward_run.argtypes = [P]
    lib.limits_backward_free.restype = None
    lib.limits_backward_free.argtypes = [P]
    lib.limits_forward_free.restype = None
    lib.limits_forward_free.argtypes = [P]
    lib.limits_state_elements.restype = I64
    lib.limits_state_elements.argtypes = [ctypes.c_char_p, I, I64, I64, I64, I64]
    _lib = lib
    return lib


def command():
    return " ".join([os.environ.get("CC", "gcc")] + CFLAGS + ["examples/bench/limits.c"])


def has_zmm():
    """Whether the CPU runs the AVX-512 FMA chains (limits_fma_peak512)."""
    g = ctypes.c_double()
    return build().limits_fma_peak512(1, 10, ctypes.byref(g)) >= 0


def fma_peak(threads, trials=30, seconds=0.005, zmm=False):
    """GFLOP/s of `trials` short runs (about `seconds` each at the nominal peak) on `threads` threads,
    sorted; `zmm`: the 16-lane AVX-512 chains (the CPU must have them: `has_zmm`). Iterations per trial
    are sized from one calibration trial."""
    lib = build()
    run = lib.limits_fma_peak512 if zmm else lib.limits_fma_peak
    g = ctypes.c_double()
    iters = 200000
    t = run(threads, iters, ctypes.byref(g))
    iters = max(10000, int(iters * seconds / max(t, 1e-6)))
    out = []
    for _ in range(trials):
        run(threads, iters, ctypes.byref(g))
        out.append(g.value)
    return sorted(out)


def fma_peaks(trials=30, zmm=False):
    """{1: [...], 2: [...]} GFLOP/s, the 1- and 2-thread trials interleaved in rounds of 5."""
    res = {1: [], 2: []}
    for _ in range(max(1, trials // 5)):
        for th in (1, 2):
            res[th] += fma_peak(th, 5, zmm=zmm)
    return {k: sorted(v) for k, v in res.items()}


class Sweep:
    """In-place read-modify-write sweeps over a float32 buffer of `nbytes` (rounded down to 4 bytes)."""

    def __init__(self, nbytes):
        self.lib = build()
        self.buf = aligned((max(32, nbytes // 4),), np.float32, fill=1)
        self.n = self.buf.size
        self.nbytes = self.buf.nbytes

    def __call__(self, sweeps=1, threads=1):
        """Seconds per sweep, over `sweeps` consecutive sweeps (split over `threads` threads)."""
        if threads > 1:
            return self.lib.limits_rmw_threads(self.buf.ctypes.data, self.n, sweeps, threads)
        return self.lib.limits_rmw(self.buf.ctypes.data, self.n, sweeps)


class CStep:
    """hla_step from a C loop on the library at `libpath` (the one the hla package loaded), over
    preallocated tokens q [N, H, dk], k [N, Hkv, dk], v [N, Hkv, dv] (float32, C-contiguous; token i is
    step i, wrapping around), one state row of n elements."""

    OPS = {"hla2": 0, "ahla": 1, "hla3": 2}

    def __init__(self, libpath, op, H, Hkv, dk, dv, scale, q, k, v, n, align=64):
        self.lib = build()
        self.q, self.k, self.v = (np.ascontiguousarray(x, np.float32) for x in (q, k, v))
        self.out = aligned((1, H, dv))
        # the state row 64-byte aligned like hla.State's (align=16 gives a plain numpy allocation's)
        self.state = aligned((1, n), align=64) if align == 64 else aligned((1, n + 16), align=64)[:, align // 4:align // 4 + n]
        self.ctx = self.lib.limits_step_new(libpath.encode(), self.OPS[op], H, Hkv, dk, dv, scale,
                                            self.q.ctypes.data, self.k.ctypes.data, self.v.ctypes.data,
                                            self.q.shape[0], self.out.ctypes.data, self.state.ctypes.data, n)
        if not self.ctx:
            raise RuntimeError("limits_step_new: %s" % self.lib.limits_step_error().decode())

    def __call__(self, steps):
        """Seconds for `steps` consecutive hla_step calls."""
        t = self.lib.limits_step_run(self.ctx, steps)
        if t < 0:
            raise RuntimeError(self.lib.limits_step_error().decode())
        return t

    def close(self):
        if self.ctx:
            self.lib.limits_step_free(self.ctx)
            self.ctx = None

    def __del__(self):
        self.close()


class _CCall:
    """One call of a limits.c context (`ctx`, made by a subclass) per __call__, timed in C: the subclass names its
    run and free functions (RUN, FREE)."""
    RUN = FREE = None
    ctx = None

    def __call__(self):
        """Seconds for one call."""
        t = getattr(self.lib, self.RUN)(self.ctx)
        if t < 0:
            raise RuntimeError(self.lib.limits_step_error().decode())
        return t

    def close(self):
        if self.ctx:
            getattr(self.lib, self.FREE)(self.ctx)
            self.ctx = None

    def __del__(self):
        self.close()


class CForward(_CCall):
    """One hla_forward call from C on the library at `libpath` over q [B, T, H, dk], k [B, T, Hkv, dk],
    v [B, T, Hkv, dv] (float32, C-contiguous; masked), writing `out` [B, T, H, dv]. path: "chunked",
    "serial" or "scan"; chunk 0 = automatic."""

    PATHS = {"chunked": 0, "serial": 1, "scan": 2}
    RUN, FREE = "limits_forward_run", "limits_forward_free"

    def __init__(self, libpath, op, q, k, v, scale, chunk=0, path="chunked"):
        self.lib = build()
        self.q, self.k, self.v = (np.ascontiguousarray(x, np.float32) for x in (q, k, v))
        B, T, H, dk = self.q.shape
        Hkv, dv = self.v.shape[2], self.v.shape[3]
        self.out = aligned((B, T, H, dv))
        self.ctx = self.lib.limits_forward_new(libpath.encode(), CStep.OPS[op], B, T, H, Hkv, dk, dv, scale, chunk,
                                               self.PATHS[path], self.q.ctypes.data, self.k.ctypes.data,
                                               self.v.ctypes.data, self.out.ctypes.data)
        if not self.ctx:
            raise RuntimeError("limits_forward_new: %s" % self.lib.limits_step_error().decode())


class CBackward(_CCall):
    """One hla_backward call from C (chunked path, masked, automatic chunk) on the library at `libpath` over q, k,
    v, d_out [B, T, H, d] (float32, H = Hkv), writing dq, dk, dv."""

    RUN, FREE = "limits_backward_run", "limits_backward_free"

    def __init__(self, libpath, op, q, k, v, dout, scale):
        self.lib = build()
        self.q, self.k, self.v, self.dout = (np.ascontiguousarray(x, np.float32) for x in (q, k, v, dout))
        B, T, H, d = self.q.shape
        self.dq, self.dk, self.dv = (aligned((B, T, H, d)) for _ in range(3))
        self.ctx = self.lib.limits_backward_new(libpath.encode(), CStep.OPS[op], B, T, H, d, scale, self.q.ctypes.data,
                                                self.k.ctypes.data, self.v.ctypes.data, self.dout.ctypes.data,
                                                self.dq.ctypes.data, self.dk.ctypes.data, self.dv.ctypes.data)
        if not self.ctx:
            raise RuntimeError("limits_backward_new: %s" % self.lib.limits_step_error().decode())


def loaded_libhla():
    """Path of the libhla.so mapped into this process (after `import hla`), or None."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1] if line.strip() else ""
                if os.path.basename(p).startswith("libhla.so"):
                    return p
    except OSError:
        pass
    return None


def median_min(xs):
    return statistics.median(xs), min(xs)
