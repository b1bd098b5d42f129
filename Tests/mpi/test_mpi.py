"""Sequence parallelism over MPI (docs/spec.md section 10): hla.mpi and examples/mpi under mpirun.

`make test-mpi` runs this (after building examples/mpi). Each test launches mpirun with 1-4 ranks on
this machine (--oversubscribe: more ranks than cores); the programs check parity themselves and exit
non-zero on any disagreement:
  * Tests/mpi/mpi_parity.py (hla.mpi.forward against one process and the brute-force sums), with Open
    MPI's default Exscan (linear chain, coll/tuned) over TCP loopback (btl self,tcp: the transport of
    separate hosts), and with the recursive-doubling Exscan forced (coll_tuned_exscan_algorithm 2) over
    the default shared-memory transport: the two orders in which MPI applies the non-commutative
    operator;
  * Tests/mpi/mpi_backward.py (hla.mpi.backward against hla.backward of the whole sequence in one
    process; wrong chains detected; errors on one rank raise on all), default Exscan, and once at 4
    ranks with recursive doubling;
  * examples/mpi/build/seq_parallel (the same forward, and the backward chain, over the C ABI).
Open MPI runs as root only when told (OMPI_ALLOW_RUN_AS_ROOT*); HLA_NUM_THREADS=1 gives each rank one
libhla worker, as the ranks share the cores. A hang fails after TIMEOUT seconds.
"""
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
PARITY = os.path.join(HERE, "mpi_parity.py")
BACKWARD = os.path.join(HERE, "mpi_backward.py")
EXAMPLE = os.path.join(ROOT, "examples", "mpi", "build", "seq_parallel")
TIMEOUT = 300
MPIRUN = shutil.which("mpirun")

RECURSIVE_DOUBLING = {"OMPI_MCA_coll_tuned_use_dynamic_rules": "1",
                      "OMPI_MCA_coll_tuned_exscan_algorithm": "2"}


def environment(extra=None):
    env = dict(os.environ)
    env.setdefault("HLA_NUM_THREADS", "1")
    env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.join(ROOT, "bindings", "python")] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(extra or {})
    return env


def mpirun(n, argv, extra_env=None, btl=None):
    assert MPIRUN, "mpirun not found: run .ci/deps.sh (apt-get install openmpi-bin libopenmpi-dev)"
    cmd = [MPIRUN, "--oversubscribe", "-n", str(n)]
    if btl:
        cmd += ["--mca", "btl", btl]
    cmd += argv
    p = subprocess.run(cmd, env=environment(extra_env), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT, cwd=ROOT)
    print(" ".join(cmd))
    print(p.stdout)
    assert p.returncode == 0, "exit %d:\n%s" % (p.returncode, p.stdout[-4000:])
    return p.stdout


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_python_default_exscan_tcp(n):
    out = mpirun(n, [sys.executable, PARITY], btl="self,tcp")
    assert "OK (%d ranks)" % n in out


@pytest.mark.parametrize("n", [2, 3, 4])
def test_python_recursive_doubling_exscan(n):
    out = mpirun(n, [sys.executable, PARITY, "--quick"], extra_env=RECURSIVE_DOUBLING)
    assert "exscan algorithm 2" in out and "OK (%d ranks)" % n in out


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_python_backward(n):
    out = mpirun(n, [sys.executable, BACKWARD])
    assert "OK (%d ranks)" % n in out


def test_python_backward_recursive_doubling_exscan():
    out = mpirun(4, [sys.executable, BACKWARD], extra_env=RECURSIVE_DOUBLING)
    assert "OK (4 ranks)" in out


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_c_example(n):
    assert os.path.exists(EXAMPLE), "build it first: make -C examples/mpi"
    out = mpirun(n, [EXAMPLE])
    assert "OK" in out.splitlines()[-1]


def test_c_example_recursive_doubling():
    assert os.path.exists(EXAMPLE), "build it first: make -C examples/mpi"
    mpirun(4, [EXAMPLE], extra_env=RECURSIVE_DOUBLING)


def test_import_hla_does_not_import_mpi4py():
    code = "import sys, hla; assert 'mpi4py' not in sys.modules, 'import hla imported mpi4py'"
    subprocess.run([sys.executable, "-c", code], env=environment(), check=True, timeout=60)


def test_import_hla_mpi_without_mpi4py_is_a_clear_import_error():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "try:\n"
            "    import hla.mpi\n"
            "except ImportError as e:\n"
            "    assert 'mpi4py' in str(e) and 'pip install mpi4py' in str(e), str(e)\n"
            "else:\n"
            "    raise SystemExit('no ImportError')\n")
    subprocess.run([sys.executable, "-c", code], env=environment(), check=True, timeout=60)
