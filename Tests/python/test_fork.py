"""The engine's thread pool survives fork(): a child of a process that already used libhla (its pool
threads asleep on condition variables the child inherits) can run forwards and threaded steps.
Run in a subprocess with a timeout, so a regression fails instead of hanging the suite."""
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os, time, numpy as np, hla
    q = np.random.default_rng(0).standard_normal((1, 512, 8, 32)).astype(np.float32)
    o, _ = hla.forward(q, q, q)                      # starts the pool in the parent
    st = hla.State("hla2", batch=1, heads=64, dk=64, dv=64)
    x = np.ones((1, 64, 64), np.float32)
    for _ in range(50):
        st.step(x, x, x)
    time.sleep(0.05)                                 # the pool's workers are asleep on their condvar now
    pid = os.fork()
    if pid == 0:
        o2, _ = hla.forward(q, q, q)                 # the child's own pool starts
        time.sleep(0.05)                             # ... and its worker falls asleep too
        o3, _ = hla.forward(q, q, q)                 # a second job must wake it
        c = st.copy()
        for _ in range(50):
            c.step(x, x, x)
        os._exit(0 if np.array_equal(o2, o) and np.array_equal(o3, o) else 3)
    _, status = os.waitpid(pid, 0)
    raise SystemExit(os.waitstatus_to_exitcode(status))
""")


def test_pool_survives_fork():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, timeout=60, capture_output=True, text=True)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
