"""jax.grad through hla.jax.forward (libhla's hla_forward / hla_backward as XLA FFI custom calls) against
jax.grad through the pure-JAX chunked implementation of examples/bench/peers.py (chunked_jax: the same
chunk algorithm in jax.numpy, lax.scan over chunks, differentiated by JAX's autodiff).

Masked operators without decay (what the peer implements), scale = dk^-0.5, loss = sum(o * w).
Both sides jitted; the median of --repeat timed calls after one warm-up (compilation) call. The two
gradients are compared (relative max-norm) so the timing is of the same function.

    PYTHONPATH=bindings/python python3 examples/bench/jax_grad.py [--T 4096 --H 8 --d 64 --ops hla2,ahla,hla3]
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import hla  # noqa: E402
import hla.jax as hj  # noqa: E402


def timeit(fn, args, repeat):
    jax.block_until_ready(fn(*args))      # compile + warm up
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--B", type=int, default=1)
    ap.add_argument("--T", type=int, default=4096)
    ap.add_argument("--H", type=int, default=8)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=64, help="chunk length of the pure-JAX peer")
    ap.add_argument("--ops", default="hla2,ahla,hla3")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    B, T, H, d = a.B, a.T, a.H, a.d
    scale = d ** -0.5
    rng = np.random.default_rng(0)
    q, k, v, w = (jnp.asarray(rng.standard_normal((B, T, H, d)), jnp.float32) for _ in range(4))
    print("jax %s, libhla %s, B=%d T=%d H=%d d=%d float32, %d cores; median of %d"
          % (jax.__version__, hla.library_version(), B, T, H, d, os.cpu_count(), a.repeat))
    print("%-5s %12s %12s %12s %12s %8s %10s" % ("op", "hla fwd ms", "peer fwd ms", "hla grad ms",
                                                  "peer grad ms", "speedup", "grad diff"))
    for op in a.ops.split(","):
        peers.chunked_jax(op, q, k, v, a.chunk, scale)             # builds the peer's jitted forward
        peer_fwd = peers._jax_fns[(op, a.chunk)]
        s = np.asarray(scale, np.float32)

        def hla_loss(q, k, v):
            return jnp.sum(hj.forward(q, k, v, op=op, scale=scale)[0] * w)

        def peer_loss(q, k, v):
            return jnp.sum(peer_fwd(q, k, v, s) * w)

        hla_f = jax.jit(lambda q, k, v: hj.forward(q, k, v, op=op, scale=scale)[0])
        peer_f = jax.jit(lambda q, k, v: peer_fwd(q, k, v, s))
        hla_g = jax.jit(jax.grad(hla_loss, argnums=(0, 1, 2)))
        peer_g = jax.jit(jax.grad(peer_loss, argnums=(0, 1, 2)))
        gh, gp = hla_g(q, k, v), peer_g(q, k, v)
        diff = max(rel(x, y) for x, y in zip(gh, gp))
        tf_h, tf_p = timeit(hla_f, (q, k, v), a.repeat), timeit(peer_f, (q, k, v), a.repeat)
        tg_h, tg_p = timeit(hla_g, (q, k, v), a.repeat), timeit(peer_g, (q, k, v), a.repeat)
        print("%-5s %12.1f %12.1f %12.1f %12.1f %7.2fx %10.1e" % (op, tf_h * 1e3, tf_p * 1e3, tg_h * 1e3,
                                                               tg_p * 1e3, tg_p / tg_h, diff))


if __name__ == "__main__":
    main()
