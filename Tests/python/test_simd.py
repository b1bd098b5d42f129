"""The float32 dense products run on an 8 x 16 AVX-512 register tile where the CPU has AVX-512F, and on the
6 x 16 AVX2/FMA tiles otherwise or under HLA_SIMD=avx2 (Sources/HLA/Core/Gemm.swift, Sources/CHLA/tile512.c and
tile256.c); without AVX2 (a generic x86-64 build) or under HLA_SIMD=portable, on a portable tile.
Both sum every element in the same order, so every path of every operator must give the same bits either
way: a child process hashes the outputs, final states and gradients of many configurations, once per kernel."""
import hashlib
import os
import subprocess
import sys
import textwrap

import pytest

import hla

PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(hla.__file__)))

CHILD = textwrap.dedent("""
    import hashlib, itertools, sys
    import numpy as np, hla
    perturb = len(sys.argv) > 1
    h = hashlib.sha256()
    rng = np.random.default_rng(7)
    for op, masked, norm, decay, (H, Hkv), (dk, dv), T, chunk in itertools.product(
            ("hla2", "ahla", "hla3"), (True, False), (False, True), (1.0, 0.9), ((4, 4), (6, 2), (3, 1)),
            ((16, 16), (13, 7), (64, 64), (40, 72)), (1, 37, 130), (None, 8, 48)):
        if norm and decay != 1.0:
            continue
        q = rng.standard_normal((2, T, H, dk)).astype(np.float32)
        k = rng.standard_normal((2, T, Hkv, dk)).astype(np.float32)
        v = rng.standard_normal((2, T, Hkv, dv)).astype(np.float32)
        if perturb:
            q[-1, -1, -1, -1] += 1e-3
        kw = dict(op=op, masked=masked, normalize=norm, decay=decay, scale=dk ** -0.5, chunk_size=chunk)
        if op == "hla2" and masked and not norm:
            kw["ridge"] = 0.25
        for path in ("chunked", "scan", "serial"):
            o, s = hla.forward(q, k, v, path=path, output_final_state=True, **kw)
            h.update(o.tobytes()); h.update(np.ascontiguousarray(s.array).tobytes())
        if T > 1 and chunk != 8:
            for x in hla.backward(q, k, v, np.cos(o), **kw):
                if x is not None:
                    h.update(np.ascontiguousarray(x).tobytes())
    # State.step where dk and dv are multiples of 64 (the step kernel, AVX-512 or AVX2, for one query head per kv
    # head and for three).
    for op, decay, Hkv, (dk, dv) in itertools.product(("hla2", "ahla", "hla3"), (1.0, 0.9), (3, 1),
                                                      ((64, 64), (128, 128), (64, 128), (128, 64))):
        st = hla.State(op, batch=2, heads=3, dk=dk, dv=dv, kv_heads=Hkv, scale=0.125, decay=decay, dtype="float32")
        for t in range(12):
            q = rng.standard_normal((2, 3, dk)).astype(np.float32)
            k = rng.standard_normal((2, Hkv, dk)).astype(np.float32)
            v = rng.standard_normal((2, Hkv, dv)).astype(np.float32)
            h.update(st.step(q, k, v).tobytes())
        h.update(np.ascontiguousarray(st.array).tobytes())
    # float16 inputs (computed in float32).
    q = rng.standard_normal((1, 300, 8, 64)).astype(np.float16)
    h.update(hla.forward(q, q, q, op="hla3", scale=0.125)[0].tobytes())
    print(h.hexdigest())
""")


def run(simd, *args):
    env = dict(os.environ)
    env.pop("HLA_SIMD", None)
    if simd:
        env["HLA_SIMD"] = simd
    env["PYTHONPATH"] = os.pathsep.join([PKG_PARENT] + [p for p in [env.get("PYTHONPATH")] if p])
    r = subprocess.run([sys.executable, "-c", CHILD, *args], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


def has_avx512():
    with open("/proc/cpuinfo") as f:
        return any(line.startswith("flags") and " avx512f" in line for line in f)


@pytest.mark.skipif(not has_avx512(), reason="this CPU has no AVX-512F: one kernel only")
def test_avx512_and_avx2_tiles_give_the_same_bits():
    default, avx2 = run(None), run("avx2")
    assert default == avx2
    # The hash sees a change of one input element in the last configuration (the comparison can fail).
    assert run(None, "perturb") != default


def test_portable_tiles_and_steps_give_the_same_bits():
    """HLA_SIMD=portable keeps the AVX2 (and AVX-512) tiles and step kernels off, as a generic x86-64 build
    (`make HLA_TARGET_CPU=`) on a CPU without AVX2 does: the portable tile (fmaf/fma element by element) and the
    portable steps must give the bits of the vector kernels everywhere."""
    assert run("portable") == run(None)
