"""Extra memory of every path is independent of T (issue "Hardening" item 5: the scan path used to keep
the carry-in of every chunk, ~12 KB per chunk at hla3 d=16, i.e. 200 MB at T=16384 with chunk_size=1).

Each case runs in a fresh interpreter and reports the growth of its peak resident set during one call,
inputs and output allocated (and touched) beforehand.
"""
import json
import os
import subprocess
import sys

import pytest

CHILD = r"""
import json, resource, sys
import numpy as np, hla
path, T = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
q, k, v = (rng.standard_normal((1, T, 1, 16)) for _ in range(3))
hla.forward(q[:, :64], k[:, :64], v[:, :64], op="hla3", path=path, chunk_size=1)   # warm-up: library, pool
out = np.ones((1, T, 1, 16))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
o, _ = hla.forward(q, k, v, op="hla3", path=path, chunk_size=1)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_kib": after - before, "output_kib": o.nbytes // 1024}))
"""


def growth(path, T):
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-c", CHILD, path, str(T)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("path", ["chunked", "scan", "serial"])
def test_extra_memory_does_not_grow_with_T(path):
    small, large = growth(path, 1024), growth(path, 16384)
    # The call allocates its output (T x 16 doubles: 2 MiB at T=16384) plus bounded scratch. The old scan
    # path needed (T / chunk + 2) carries of 12 KiB each: 192 MiB more at T=16384.
    extra = large["growth_kib"] - large["output_kib"]
    assert extra < 16 * 1024, (path, small, large)
    assert large["growth_kib"] - small["growth_kib"] < large["output_kib"] + 16 * 1024, (path, small, large)
