"""Machine description and in-run hardware rates (sgemm reference kernels, copy bandwidth) for the
benchmark. The FMA peak and the state read-modify-write limit are measured by limits.py / limits.c."""
import ctypes
import ctypes.util
import glob
import os
import platform
import statistics
import subprocess
import time

import numpy as np


def _read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def cpu_model():
    info = {}
    for line in _read("/proc/cpuinfo").splitlines():
        if ":" in line:
            key, val = (s.strip() for s in line.split(":", 1))
            if key in ("model name", "cpu family", "model", "stepping", "cpu MHz", "vendor_id") and key not in info:
                info[key] = val
    flags = ""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("flags"):
            flags = line.split(":", 1)[1].split()
            break
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx_vnni") if f in flags]
    hyp = "hypervisor" in flags
    return info, simd, hyp


def caches():
    out = []
    for d in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        out.append("L%s %s %s (shared by cpus %s)" % (_read(d + "/level"), _read(d + "/type").lower(),
                                                       _read(d + "/size"), _read(d + "/shared_cpu_list")))
    return out


def cache_bytes(level):
    for d in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*"):
        if _read(d + "/level") == str(level) and _read(d + "/type") in ("Unified", "Data"):
            s = _read(d + "/size")
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
            return int(s.rstrip("KMG")) * mult
    return None


def blas_info():
    """Loaded BLAS libraries via threadpoolctl: numpy's, and the system OpenBLAS once openblas_sgemm has
    loaded it as the reference kernel (libhla links no BLAS)."""
    try:
        import threadpoolctl
        rows = []
        for d in threadpoolctl.threadpool_info():
            if d.get("user_api") != "blas":
                continue
            rows.append("%s %s, core type %s, threading %s, %d threads: %s" % (
                d.get("internal_api"), d.get("version"), d.get("architecture"),
                d.get("threading_layer"), d.get("num_threads", 0), d.get("filepath")))
        return rows
    except Exception as e:  # noqa: BLE001
        return ["threadpoolctl unavailable (%s)" % e]


def numpy_blas_config():
    try:
        cfg = np.show_config(mode="dicts")
        b = cfg["Build Dependencies"]["blas"]
        return "%s %s (%s)" % (b.get("name"), b.get("version"), b.get("openblas configuration", "").strip())
    except Exception:  # noqa: BLE001
        return "unknown"


def libhla_links(libpath):
    """What libhla.so links (ldd), and whether any of it is a BLAS."""
    try:
        out = subprocess.run(["ldd", libpath], capture_output=True, text=True, timeout=10).stdout
    except Exception as e:  # noqa: BLE001
        return "ldd failed (%s)" % e
    names = [line.split("=>")[0].split("(")[0].strip() for line in out.splitlines() if line.strip()]
    names = [n for n in names if n and not n.startswith("linux-vdso")]
    blas = [n for n in names if "blas" in n.lower() or "lapack" in n.lower() or "mkl" in n.lower()]
    return "%s; %s" % (", ".join(os.path.basename(n) for n in names) or "?",
                       "BLAS linked: " + ", ".join(blas) if blas else "no BLAS")


def describe(libpath):
    info, simd, hyp = cpu_model()
    lines = [
        "CPU: %s (vendor %s, family %s, model %s, stepping %s)%s; SIMD: %s" % (
            info.get("model name", platform.processor()), info.get("vendor_id", "?"), info.get("cpu family", "?"),
            info.get("model", "?"), info.get("stepping", "?"), " under a hypervisor" if hyp else "",
            ", ".join(simd)),
        "Cores: %d online (os.cpu_count), %d usable by this process" % (
            os.cpu_count(), len(os.sched_getaffinity(0))),
        "Caches: " + "; ".join(caches()),
        "Memory: %s" % _read("/proc/meminfo").splitlines()[0].split(":", 1)[1].strip(),
        "Kernel: %s; Python %s; numpy %s" % (platform.release(), platform.python_version(), np.__version__),
        "Environment: OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s OPENBLAS_NUM_THREADS=%s HLA_NUM_THREADS=%s" % tuple(
            os.environ.get(v, "(unset)") for v in
            ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "HLA_NUM_THREADS")),
        "numpy BLAS (np.show_config): " + numpy_blas_config(),
        "libhla.so links (ldd): " + libhla_links(libpath),
    ]
    lines += ["Loaded BLAS (threadpoolctl): " + r for r in blas_info()]
    return lines


# ----------------------------------------------------------------------------------------------
# In-run rates
# ----------------------------------------------------------------------------------------------
def _median_time(fn, reps, inner=1):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        ts.append((time.perf_counter() - t0) / inner)
    return statistics.median(ts)


_numpy_blas = None


def _numpy_blas_controllers():
    """threadpoolctl controllers of numpy's BLAS only (never the system OpenBLAS loaded as the reference
    kernel, which openblas_sgemm keeps at one thread and a blanket threadpool_limits would reset on exit)."""
    global _numpy_blas
    if _numpy_blas is None:
        try:
            import threadpoolctl
            np_dir = os.path.dirname(os.path.dirname(np.__file__))
            _numpy_blas = [c for c in threadpoolctl.ThreadpoolController().lib_controllers
                           if c.user_api == "blas" and c.filepath.startswith(np_dir)]
        except Exception:  # noqa: BLE001
            _numpy_blas = []
    return _numpy_blas


class numpy_threads:
    """Context manager: numpy's BLAS limited to n threads (None: unchanged)."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.saved = [(c, c.num_threads) for c in _numpy_blas_controllers()] if self.n else []
        for c, _ in self.saved:
            c.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        for c, k in self.saved:
            c.set_num_threads(k)
        return False


def _limit_threads(n):
    return numpy_threads(n)


def sgemm_rates(reps=5):
    """numpy float32 matmul GFLOP/s: batched 64x64x64 ([512] stack) and 1024^2, all threads and 1 thread."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 64, 64), dtype=np.float32)
    b = rng.standard_normal((512, 64, 64), dtype=np.float32)
    c = np.empty_like(a)
    x = rng.standard_normal((1024, 1024), dtype=np.float32)
    y = rng.standard_normal((1024, 1024), dtype=np.float32)
    z = np.empty_like(x)
    res = {}
    for label, threads in (("all threads", None), ("1 thread", 1)):
        ctx = _limit_threads(threads) if threads else _nullctx()
        with ctx:
            t = _median_time(lambda: np.matmul(a, b, out=c), reps, inner=4)
            res[("batched 512 x (64x64x64)", label)] = 2 * 512 * 64 ** 3 / t / 1e9
            t = _median_time(lambda: np.matmul(x, y, out=z), reps, inner=2)
            res[("1024 x 1024 x 1024", label)] = 2 * 1024 ** 3 / t / 1e9
    return res


def _nullctx():
    import contextlib
    return contextlib.nullcontext()


def openblas_sgemm(reps=5):
    """The reference kernel: GFLOP/s of cblas_sgemm of the system's OpenBLAS (libopenblas.so.0, loaded
    through ctypes; libhla does not link it), 1 thread: 64x64x64 (a loop of 2000 calls; ctypes call
    overhead included) and 1024^2. Keys: shape -> GFLOP/s, and "lib" -> the library file."""
    name = None
    for cand in ("libopenblas.so.0", ctypes.util.find_library("openblas")):
        if cand:
            try:
                lib = ctypes.CDLL(cand)
                name = cand
                break
            except OSError:
                continue
    if name is None:
        return {}
    try:
        lib.openblas_set_num_threads(1)
    except AttributeError:
        pass
    f = lib.cblas_sgemm
    f.restype = None
    P = ctypes.c_void_p
    f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                  ctypes.c_float, P, ctypes.c_int, P, ctypes.c_int, ctypes.c_float, P, ctypes.c_int]
    res = {"lib": _mapped_path("openblas") or name}
    rng = np.random.default_rng(0)
    for n, inner in ((64, 2000), (1024, 2)):
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = np.empty_like(a)
        pa, pb, pc = a.ctypes.data, b.ctypes.data, c.ctypes.data

        def run():
            for _ in range(inner):
                f(101, 111, 111, n, n, n, 1.0, pa, n, pb, n, 0.0, pc, n)
        t = _median_time(run, reps) / inner
        res["%d x %d x %d" % (n, n, n)] = 2 * n ** 3 / t / 1e9
    return res


def _mapped_path(part):
    """The real path of the first library mapped into this process whose file name contains `part`."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1] if line.strip() else ""
                if part in os.path.basename(p) and "numpy" not in p and "scipy" not in p:
                    return p
    except OSError:
        pass
    return None


def copy_bandwidth(l2_bytes, reps=7):
    """numpy copy GB/s (read + write bytes) for an L2-resident buffer (src + dst = half of L2)
    and a DRAM-sized one (256 MiB), one thread."""
    res = {}
    for label, nbytes, inner in (("L2-sized (%d KiB src+dst)" % (l2_bytes // 2 // 1024), l2_bytes // 4, 200),
                                 ("DRAM-sized (256 MiB src)", 256 << 20, 1)):
        src = np.ones(nbytes // 4, np.float32)
        dst = np.empty_like(src)
        t = _median_time(lambda: np.copyto(dst, src), reps, inner=inner)
        res[label] = 2 * nbytes / t / 1e9
    return res
