"""The CPU check of `import hla` (hla/_cpu.py): on a CPU without AVX2/FMA the import raises ImportError
naming what is missing, before libhla is loaded. Simulated with HLA_CPUINFO (a /proc/cpuinfo with
flags taken out), in a subprocess so the import runs afresh."""
import os
import subprocess
import sys
import textwrap

import hla
from hla import _cpu

PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(hla.__file__)))

FLAGS = "fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt xsave avx f16c fma movbe abm bmi1 avx2 bmi2"
CPUINFO = "processor\t: 0\nflags\t\t: %s\n\nprocessor\t: 1\nflags\t\t: %s\n" % (FLAGS, FLAGS)
# A Sandy Bridge-like CPU: AVX but no AVX2, FMA, F16C, BMI, LZCNT, MOVBE.
OLD_FLAGS = "fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt xsave avx"
OLD_CPUINFO = "processor\t: 0\nflags\t\t: %s\n" % OLD_FLAGS

PROBE = textwrap.dedent("""
    import sys
    try:
        import hla
    except ImportError as e:
        loaded = [l.split()[-1] for l in open("/proc/self/maps") if "libhla" in l]
        print("IMPORTERROR:", e)
        print("LOADED:", "hla._hla" in sys.modules, loaded)
        raise SystemExit(3)
    print("OK", hla.__version__)
""")


def run_import(tmp_path, cpuinfo, **env_extra):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    env = dict(os.environ, HLA_CPUINFO=str(path))
    env.pop("HLA_SKIP_CPU_CHECK", None)
    env.update(env_extra)
    env["PYTHONPATH"] = os.pathsep.join([PKG_PARENT] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          timeout=120)


def test_flags_parsed():
    assert _cpu.missing_features(CPUINFO) == []
    assert _cpu.missing_features(OLD_CPUINFO) == ["avx2", "fma", "f16c", "bmi1", "bmi2", "abm",
                                                  "movbe"]
    # A flag one processor lacks counts as missing; no flags line: cannot tell, no complaint.
    mixed = CPUINFO + "processor\t: 2\nflags\t\t: %s\n" % FLAGS.replace(" fma", "")
    assert _cpu.missing_features(mixed) == ["fma"]
    assert _cpu.missing_features("processor\t: 0\nmodel name\t: something\n") == []


def test_this_cpu_passes():
    # The suite runs the AVX2 build on this machine: the real /proc/cpuinfo must pass.
    with open("/proc/cpuinfo") as f:
        assert _cpu.missing_features(f.read()) == []


def test_import_fails_without_avx2_before_loading_libhla(tmp_path):
    r = run_import(tmp_path, OLD_CPUINFO)
    assert r.returncode == 3, r.stdout + r.stderr
    msg = r.stdout
    assert "IMPORTERROR: hla: libhla is built for x86-64 CPUs with AVX2 and FMA" in msg, msg
    assert "lacks avx2, fma, f16c" in msg, msg
    assert "HLA_SKIP_CPU_CHECK=1" in msg, msg
    assert "LOADED: False []" in msg, msg          # neither the extension nor libhla was loaded


def test_import_fails_without_fma_only(tmp_path):
    r = run_import(tmp_path, CPUINFO.replace(" fma", ""))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "this CPU lacks fma (flags of" in r.stdout, r.stdout


def test_import_passes_with_the_flags(tmp_path):
    r = run_import(tmp_path, CPUINFO)
    assert r.returncode == 0 and r.stdout.startswith("OK " + hla.__version__), r.stdout + r.stderr


def test_skip_cpu_check(tmp_path):
    r = run_import(tmp_path, OLD_CPUINFO, HLA_SKIP_CPU_CHECK="1")
    assert r.returncode == 0 and r.stdout.startswith("OK "), r.stdout + r.stderr
