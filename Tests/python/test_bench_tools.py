"""examples/bench/ab.py, the in-process comparison of two libhla builds: it runs both builds' C loops
(limits.c's hla_step loop and hla_forward and hla_backward calls, dlopen'ed by path) alternately and reports whether their
outputs are the same bits. Two copies of the build under test must give the same bits on every path, also
with one of them loaded with HLA_SIMD=avx2 where the CPU has AVX-512 (each copy reads it when it is loaded):
the claim of Sources/HLA/Core/Gemm.swift and README that the AVX-512 kernels (the tiles, the multi-head steps
of hla3, hla2 and ahla at d = 64) give the bits of the AVX2 ones, checked through the tool."""
import os
import shutil
import subprocess
import sys

import pytest

import hla  # noqa: F401  (maps the libhla.so under test into this process)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "examples", "bench")
sys.path.insert(0, BENCH)
import limits  # noqa: E402

SPECS = ["step:hla3:8,1,16", "step:hla3:16,1,64", "step:hla3:8,2,64", "step:ahla:4,4,16", "step:ahla:16,1,64",
         "step:ahla:8,2,64", "step:hla2:16,1,64", "step:hla2:8,2,64",
         "forward:hla2:2,50,2,16,16", "forward:hla3:1,40,2,16,16,scan", "forward:ahla:1,30,2,16,0,serial",
         "backward:hla2:1,70,2,16", "backward:hla3:2,40,2,16", "backward:ahla:1,33,2,64"]


def run_ab(old, new, *extra):
    out = subprocess.run([sys.executable, os.path.join(BENCH, "ab.py"), old, new, "--rounds", "2", *extra] + SPECS,
                         capture_output=True, text=True, check=True, timeout=300).stdout
    lines = [l for l in out.splitlines() if "same bits" in l]
    assert len(lines) == len(SPECS), out
    return lines


@pytest.fixture(scope="module")
def built():
    lib = limits.loaded_libhla()
    if lib is None or shutil.which(os.environ.get("CC", "gcc")) is None:
        pytest.skip("needs the loaded libhla.so and a C compiler")
    return lib


def test_two_copies_agree(built, tmp_path):
    copy = str(tmp_path / "libhla-copy.so")
    shutil.copyfile(built, copy)
    for line in run_ab(built, copy):
        assert "same bits: True" in line, line
        assert "new/old per round" in line


def test_avx2_tiles_give_the_same_bits(built, tmp_path):
    copy = str(tmp_path / "libhla-avx2.so")
    shutil.copyfile(built, copy)
    for line in run_ab(built, copy, "--new-simd", "avx2"):
        assert "same bits: True" in line, line


def test_the_same_file_twice_is_refused(built):
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "ab.py"), built, built, "step:hla2:4,1,16"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "same file" in proc.stderr


def test_tileprobe_reports_the_tile_and_the_forward(built):
    """examples/bench/tileprobe.py (the tile alone against the chunked forward in the same rounds) runs on the
    library under test and reports positive rates; on a CPU without AVX-512 it says so and stops."""
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "tileprobe.py"), "--rounds", "1", "--lib", built,
                           "ahla:32"], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "no AVX-512" in proc.stderr:
        pytest.skip("no AVX-512 here")
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert line.startswith("ahla d=32 (1 rounds, one thread)"), line
    rates = [float(x) for x in line.split("peak ")[1].split(" GFLOP/s")[0].replace("tile alone ", "")
             .replace("forward ", "").split(", ")]
    assert len(rates) == 3 and all(r > 0 for r in rates), line


def test_stepprobe_times_the_step_kernel_and_its_variants():
    """examples/bench/stepprobe.py builds hla3's step kernel (Sources/CHLA/step_heads.h in tile512.c) as it is and
    with its stores or broadcasts left out (text edits that must each match the kernel once: a kernel that changed
    fails here, not silently in a measurement) and reports a positive time and FMA share for each; without AVX-512
    it says so."""
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "stepprobe.py"), "--rounds", "1", "--calls", "20"],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "no AVX-512" in proc.stderr:
        pytest.skip("no AVX-512 here")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("hla3 kernel, 32 query heads of one kv head, d = 64"), lines[0]
    names = ["library kernel", "no W stores", "no broadcasts", "neither"]
    assert [ln.split("  ")[1].strip() for ln in lines[1:]] == names, lines
    for ln in lines[1:]:
        us = float(ln.split("µs per call")[0].split()[-1])
        share = float(ln.split("% of the FMA peak")[0].split()[-1])
        assert us > 0 and share > 0, ln
    assert lines[1].rstrip().endswith("1.000 of the library kernel's time (per round)"), lines[1]
