"""The CPU check ``import hla`` runs before it loads libhla.

libhla's release build (and so the wheel) targets x86-64 with AVX2 and FMA (``-target-cpu haswell``:
the x86-64-v3 level, Intel Haswell / AMD Excavator and later): on an older CPU its first vector
instruction would kill the process with SIGILL. The check reads the CPU's flags from /proc/cpuinfo and
raises ImportError naming the missing ones instead. It passes when it cannot tell (no /proc/cpuinfo,
no ``flags`` line, not x86-64).

Overrides: ``HLA_SKIP_CPU_CHECK=1`` skips the check (e.g. for a library built with
``make HLA_TARGET_CPU=``, generic x86-64); ``HLA_CPUINFO=<file>`` reads the flags from another file
(tests).
"""
import os
import platform

# The x86-64-v3 features as /proc/cpuinfo names them (LZCNT is "abm"), AVX2 and FMA first.
REQUIRED = ("avx2", "fma", "avx", "f16c", "bmi1", "bmi2", "abm", "movbe")


def cpu_flags(text):
    """The flags every processor of a /proc/cpuinfo text reports, or None without a flags line."""
    flags = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            these = set(value.split())
            flags = these if flags is None else flags & these
    return flags


def missing_features(text):
    """The features of REQUIRED a /proc/cpuinfo text lacks ([] when it names no flags)."""
    flags = cpu_flags(text)
    if flags is None:
        return []
    return [f for f in REQUIRED if f not in flags]


def check():
    """Raise ImportError if this CPU cannot run libhla's AVX2/FMA code."""
    if os.environ.get("HLA_SKIP_CPU_CHECK", "").strip() not in ("", "0"):
        return
    path = os.environ.get("HLA_CPUINFO") or "/proc/cpuinfo"
    if path == "/proc/cpuinfo" and platform.machine().lower() not in ("x86_64", "amd64"):
        return
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return
    missing = missing_features(text)
    if missing:
        raise ImportError(
            "hla: libhla is built for x86-64 CPUs with AVX2 and FMA (x86-64-v3: Intel Haswell, AMD "
            "Excavator or newer), and this CPU lacks %s (flags of %s). Build libhla from source "
            "for a generic x86-64 CPU (`make HLA_TARGET_CPU=`) and set HLA_SKIP_CPU_CHECK=1 to use it."
            % (", ".join(missing), path))
