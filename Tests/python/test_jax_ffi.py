"""hla.jax: libhla's forward and backward as XLA FFI custom calls (docs/spec.md sections 5 and 9).

* forward equals hla.forward (numpy) for every operator, option, path and dtype, eagerly and under
  jax.jit; jax.vmap over extra leading axes (batched or not, with initial states and cu_seqlens,
  nested) equals a loop;
* jax.grad of a scalar loss equals hla.backward's gradients and jax.grad of an independent pure-JAX
  evaluation of the SPEC section 2 index sums (float64 <= 1e-9, float32 <= 2e-3 relative, max-norm),
  for each operator x masked/unmasked x normalize x decay x ridge (hla2) x grouped heads; the initial
  state's gradient against hla.backward, finite differences and the brute force of the concatenated
  sequence (d_initial of a segment flows into d_final of the one before); packed cu_seqlens;
  bfloat16 / float16; jit(grad) and vmap(grad);
* checkpoints: under differentiation the chunked path runs hla_forward_checkpoints and
  hla_backward_checkpoints (the lowered computation names those custom calls; inference and the serial
  and scan paths do not), and the gradients equal hla.backward without checkpoints bit for bit (every
  operator and dtype, grouped heads, normalize, decay, initial state and d_final, cu_seqlens, several
  and zero checkpoint rows), eagerly, under jit, vmap (folded and looped with cu_seqlens), grad of vmap
  and nested vmap; the saved checkpoints equal hla.forward(checkpoints=)'s; checkpoint_every (None, 1,
  3; static) changes no gradient bit and sets the checkpoint rows of the lowered custom calls;
* the comparison catches a deliberately wrong gradient; bad input raises (no crash); `import hla`
  does not import JAX, and `import hla.jax` explains what is missing.

Skipped when JAX or the built FFI library (hla/_hla_jax_ffi.so: `make jax-ffi`) is absent.
"""
import itertools
import os
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

import hla  # noqa: E402
from common import option_grid  # noqa: E402

try:
    import hla.jax as hj  # noqa: E402
except ImportError as e:  # the library is built only with JAX present (make jax-ffi)
    pytest.skip("hla.jax not available: %s" % e, allow_module_level=True)

if not hasattr(hla, "backward"):
    pytest.skip("hla.backward not available in this build", allow_module_level=True)

TOL = {"float64": 1e-9, "float32": 2e-3}
DK, DV = 3, 4
WORST = {}


# ----------------------------------------------------------------------------------------------
# Independent pure-JAX evaluation of the SPEC section 2 index sums (differentiable by jax.grad).
# Nothing here comes from the library: the full weight tensor over index tuples, masked, contracted.

def _weights(op, masked, T, gamma, seg):
    """Weights over (t, summed indices): gamma^exponent where the tuple is allowed, else 0. seg [T]:
    the packed sequence of each token; a tuple is allowed only within t's own sequence."""
    r = jnp.arange(T, dtype=jnp.float64)
    sg = jnp.asarray(seg)
    if op in ("hla2", "ahla"):
        t, i, j = r[:, None, None], r[None, :, None], r[None, None, :]
        st, si, sj = sg[:, None, None], sg[None, :, None], sg[None, None, :]
        allowed = (i <= t) & (j <= t) & (si == st) & (sj == st)
        if op == "hla2":
            expo = (t - i) + (t - j)
            if masked:
                allowed = allowed & (i <= j)
        elif masked:
            expo = (t - j) + 0 * i
            allowed = allowed & (j <= i)
        else:
            expo = (t - i) + (t - j)
    else:
        t, a, u, c = (r[:, None, None, None], r[None, :, None, None], r[None, None, :, None],
                      r[None, None, None, :])
        st, sa, su, sc = (sg[:, None, None, None], sg[None, :, None, None], sg[None, None, :, None],
                          sg[None, None, None, :])
        allowed = (a <= t) & (u <= t) & (c <= t) & (sa == st) & (su == st) & (sc == st)
        if masked:
            allowed = allowed & (a <= u) & (c <= u)
        expo = (t - a) + (t - u) + (t - c)
    return jnp.where(allowed, float(gamma) ** jnp.clip(expo, 0), 0.0)


def brute(q, k, v, cu_seqlens=None, op="hla2", masked=True, normalize=False, decay=1.0, ridge=0.0,
          eps=1e-6, scale=1.0):
    """q [B,T,H,dk], k [B,T,Hkv,dk], v [B,T,Hkv,dv] float64 -> o [B,T,H,dv]. cu_seqlens (a list of
    offsets, B = 1): packed sequences, each summed over its own tokens only."""
    B, T, H, dk = q.shape
    Hkv, dv = k.shape[2], v.shape[3]
    seg = np.zeros(T, dtype=np.int64)
    if cu_seqlens is not None:
        for s, (a, b) in enumerate(zip(list(cu_seqlens)[:-1], list(cu_seqlens)[1:])):
            seg[int(a):int(b)] = s
    G = H // Hkv
    K = jnp.repeat(k, G, axis=2).transpose(0, 2, 1, 3)       # query head h reads kv head h // G
    V = jnp.repeat(v, G, axis=2).transpose(0, 2, 1, 3)
    Q = (q * scale).transpose(0, 2, 1, 3)
    if normalize:
        V = jnp.concatenate([V, jnp.ones(V.shape[:-1] + (1,), V.dtype)], axis=-1)
    QK = Q @ jnp.swapaxes(K, -1, -2)                          # QK[s, r] = q_s . k_r
    W = _weights(op, masked, T, decay, seg)
    if op == "hla2":      # (q_t.k_i)(k_i.q_j) v_j  + ridge (q_t.q_j) v_j
        num = jnp.einsum("bhti,bhji,tij,bhjd->bhtd", QK, QK, W, V)
        if ridge != 0:
            r = jnp.arange(T, dtype=jnp.float64)
            e = r[:, None] - r[None, :]
            Wr = jnp.where((e >= 0) & (seg[:, None] == seg[None, :]), float(decay) ** jnp.clip(e, 0), 0.0)
            num = num + ridge * jnp.einsum("bhtj,tj,bhjd->bhtd", Q @ jnp.swapaxes(Q, -1, -2), Wr, V)
    elif op == "ahla":    # (q_t.k_i)(q_i.k_j) v_j
        num = jnp.einsum("bhti,bhij,tij,bhjd->bhtd", QK, QK, W, V)
    else:                 # (q_t.k_a)(k_a.q_u)(q_u.k_c) v_c
        num = jnp.einsum("bhta,bhua,bhuc,tauc,bhcd->bhtd", QK, QK, QK, W, V)
    o = num[..., :dv] / (num[..., dv:] + eps) if normalize else num
    return o.transpose(0, 2, 1, 3)


def brute_grad(q, k, v, w, **opts):
    """jax.grad of sum(brute(q, k, v) * w) in q, k, v (float64)."""
    q, k, v = (jnp.asarray(np.asarray(x), jnp.float64) for x in (q, k, v))
    w = jnp.asarray(np.asarray(w).astype(np.float64))
    return jax.grad(lambda q, k, v: jnp.sum(brute(q, k, v, **opts) * w), argnums=(0, 1, 2))(q, k, v)


# ----------------------------------------------------------------------------------------------

def rel(x, ref):
    x, ref = np.asarray(x, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert x.shape == ref.shape, (x.shape, ref.shape)
    assert np.all(np.isfinite(x))
    m = np.max(np.abs(ref))
    return float(np.max(np.abs(x - ref)) / m) if m > 0 else float(np.max(np.abs(x)))


def check_grads(got, want, tol, what, key=None):
    """Every gradient of `got` within tol (relative, max-norm) of `want`; AssertionError otherwise."""
    names = ("dq", "dk", "dv", "d_initial")
    for name, a, b in zip(names, got, want):
        if a is None and b is None:
            continue
        err = rel(a, b)
        if key is not None:
            WORST[key] = max(WORST.get(key, 0.0), err)
        assert err <= tol, "%s %s: relative error %.3e > %.1e" % (what, name, err, tol)


def make(B, T, H, Hkv, seed, positive=False, dk=DK, dv=DV):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, T, H, dk))
    k = rng.standard_normal((B, T, Hkv, dk))
    v = rng.standard_normal((B, T, Hkv, dv))
    if positive:   # normalized: positive features, well-conditioned denominators (docs/spec.md section 4)
        q, k = np.abs(q), np.abs(k)
    return q, k, v


def cast(arrays, name):
    """numpy float64 arrays -> (jax arrays of dtype `name`, float64 numpy copies of the rounded values)."""
    js = tuple(jnp.asarray(x).astype(name) for x in arrays)
    return js, tuple(np.asarray(x).astype(np.float64) for x in js)


def seed_of(*parts):
    return zlib.crc32(repr(parts).encode())


def valid_state(rows, H, Hkv, seed, T0=5, **opts):
    """[rows, n] float64 state rows the library can produce (the final state of a random prefix): S and
    S^Q symmetric, as docs/state-layout.md requires of hand-made rows (paths differ otherwise)."""
    q, k, v = make(rows, T0, H, Hkv, seed)
    return jnp.asarray(hla.forward(q, k, v, output_final_state=True, **opts)[1].array)


def seq_len(op):
    """T of the brute-force comparisons (one shape per operator: XLA compiles each once)."""
    return 8 if op == "hla3" else 13


def options(op, masked, normalize, decay, ridge):
    return dict(op=op, masked=masked, normalize=normalize, decay=decay, ridge=ridge, eps=1e-6,
                scale=DK ** -0.5)


# ----------------------------------------------------------------------------------------------
# import behaviour

def run_python(code, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=e, timeout=120)


def test_import_hla_does_not_import_jax():
    r = run_python("""
        import sys, hla
        assert "jax" not in sys.modules, "import hla imported jax"
        assert "jax" not in sys.modules and not hasattr(hla, "jax")
        print("ok")
        """)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_import_without_jax_is_a_clear_import_error():
    r = run_python("""
        import sys
        sys.modules["jax"] = None          # as if JAX were not installed
        import hla
        try:
            import hla.jax
        except ImportError as e:
            print("ImportError:", e)
        """)
    assert r.returncode == 0, r.stderr
    assert "ImportError: hla.jax needs JAX" in r.stdout, r.stdout


def test_missing_library_says_how_to_build_it(tmp_path):
    r = run_python("""
        import hla
        try:
            import hla.jax
        except ImportError as e:
            print("ImportError:", e)
        """, env={"HLA_JAX_FFI_LIBRARY": str(tmp_path / "missing.so")})
    assert r.returncode == 0, r.stderr
    assert "ImportError:" in r.stdout and "make jax-ffi" in r.stdout and "not built" in r.stdout, r.stdout


# ----------------------------------------------------------------------------------------------
# forward

DTYPES = ("float64", "float32", "bfloat16", "float16")


@pytest.mark.parametrize("name", DTYPES)
@pytest.mark.parametrize("op", ("hla2", "ahla", "hla3"))
def test_forward_equals_numpy_api(op, name):
    B, T, H, Hkv, dk, dv = 2, 19, 4, 2, 8, 6
    worst = 0.0
    for i, (masked, normalize, decay) in enumerate(itertools.product((True, False), (False, True),
                                                                     (1.0, 0.9))):
        (q, k, v), (q64, k64, v64) = cast(make(B, T, H, Hkv, 100 + i, positive=normalize, dk=dk, dv=dv),
                                          name)
        qn, kn, vn = (np.asarray(x) for x in (q, k, v))
        opts = dict(op=op, masked=masked, normalize=normalize, decay=decay, scale=dk ** -0.5,
                    ridge=0.2 if op == "hla2" else 0.0)
        for path in ("chunked", "serial", "scan"):
            o, final = hj.forward(q, k, v, path=path, chunk_size=5, output_final_state=True, **opts)
            want, wfinal = hla.forward(qn, kn, vn, path=path, chunk_size=5, output_final_state=True,
                                       **opts)
            assert isinstance(o, jax.Array) and o.dtype == q.dtype and o.shape == (B, T, H, dv)
            assert final.dtype == (jnp.float64 if name == "float64" else jnp.float32)
            assert final.shape == wfinal.array.shape
            err = max(rel(o, want), rel(final, wfinal.array))
            worst = max(worst, err)
            assert err <= 1e-6, (op, name, path, opts, err)
            # no final state requested
            o2, none = hj.forward(q, k, v, path=path, chunk_size=5, **opts)
            assert none is None and rel(o2, o) == 0.0
    WORST[("forward vs hla.forward", op, name)] = worst


@pytest.mark.parametrize("op", ("hla2", "ahla", "hla3"))
def test_forward_under_jit_and_initial_state(op):
    B, T, H, Hkv = 2, 23, 4, 1
    q, k, v = (jnp.asarray(x) for x in make(B, T, H, Hkv, 7))
    init = valid_state(B, H, Hkv, 3, op=op, decay=0.95)
    f = jax.jit(lambda q, k, v, s: hj.forward(q, k, v, op=op, decay=0.95, initial_state=s,
                                              output_final_state=True))
    o, final = f(q, k, v, init)
    want, wfinal = hla.forward(*(np.asarray(x) for x in (q, k, v)), op=op, decay=0.95,
                               initial_state=np.asarray(init), output_final_state=True)
    assert rel(o, want) <= 1e-12 and rel(final, wfinal.array) <= 1e-12
    # splitting the sequence through the state equals the whole sequence
    a = 9
    o1, s1 = f(q[:, :a], k[:, :a], v[:, :a], init)
    o2, s2 = f(q[:, a:], k[:, a:], v[:, a:], s1)
    assert rel(jnp.concatenate([o1, o2], axis=1), o) <= 1e-12 and rel(s2, final) <= 1e-12
    # an hla.State as initial state (its numbers are copied into the computation)
    st = hla.State(op, batch=B, heads=H, kv_heads=Hkv, dk=DK, dv=DV, decay=0.95, dtype="float64")
    st.array[:] = np.asarray(init)
    o3, _ = hj.forward(q, k, v, op=op, decay=0.95, initial_state=st)
    assert rel(o3, o) == 0.0


@pytest.mark.parametrize("op", ("hla2", "ahla", "hla3"))
def test_cu_seqlens_forward(op):
    T, H, Hkv = seq_len(op), 4, 2
    q, k, v = (jnp.asarray(x) for x in make(1, T, H, Hkv, 11))
    for cu in ([0, T], [0, 5, 6, T], [0, 1, 2, 3, T]):
        for dt in (jnp.int32, jnp.int64):
            c = jnp.asarray(cu, dt)
            init = valid_state(len(cu) - 1, H, Hkv, len(cu), op=op)
            o, final = hj.forward(q, k, v, op=op, cu_seqlens=c, initial_state=init, output_final_state=True)
            want, wf = hla.forward(*(np.asarray(x) for x in (q, k, v)), op=op, cu_seqlens=np.asarray(cu),
                                   initial_state=np.asarray(init), output_final_state=True)
            assert rel(o, want) == 0.0 and rel(final, wf.array) == 0.0
            oj, _ = jax.jit(lambda q, k, v, c: hj.forward(q, k, v, op=op, cu_seqlens=c))(q, k, v, c)
            assert rel(oj, brute(q, k, v, cu_seqlens=cu, op=op)) <= 1e-10


# ----------------------------------------------------------------------------------------------
# vmap

@pytest.mark.parametrize("op", ("hla2", "ahla", "hla3"))
def test_vmap_equals_loop(op):
    V, B, T, H, Hkv = 3, 2, 11, 4, 2
    rng = np.random.default_rng(5)
    q = jnp.asarray(rng.standard_normal((V, B, T, H, DK)))
    k = jnp.asarray(rng.standard_normal((V, B, T, Hkv, DK)))
    v = jnp.asarray(rng.standard_normal((V, B, T, Hkv, DV)))
    n = hla.state_elements(op, heads=H, kv_heads=Hkv, dk=DK, dv=DV)
    opts = dict(op=op, decay=0.9, scale=DK ** -0.5)
    init = valid_state(V * B, H, Hkv, 4, **opts).reshape(V, B, n)

    def f(q, k, v, s):
        return hj.forward(q, k, v, initial_state=s, output_final_state=True, **opts)

    for in_axes in ((0, 0, 0, 0), (0, None, None, 0), (None, 0, 0, None), (0, 0, 0, None)):
        sel = lambda x, ax, i: x[i] if ax == 0 else x[0]  # noqa: E731
        o, final = jax.vmap(f, in_axes=in_axes)(*(x if ax == 0 else x[0]
                                                  for x, ax in zip((q, k, v, init), in_axes)))
        assert o.shape == (V, B, T, H, DV) and final.shape == (V, B, n)
        for i in range(V):
            args = [sel(x, ax, i) for x, ax in zip((q, k, v, init), in_axes)]
            wo, wf = f(*args)
            assert rel(o[i], wo) == 0.0 and rel(final[i], wf) == 0.0, (in_axes, i)
    # vmap over a non-leading axis, under jit
    o = jax.jit(jax.vmap(lambda q, k, v: hj.forward(q, k, v, **opts)[0], in_axes=2, out_axes=2))(
        jnp.moveaxis(q, 0, 2), jnp.moveaxis(k, 0, 2), jnp.moveaxis(v, 0, 2))
    for i in range(V):
        assert rel(o[:, :, i], hj.forward(q[i], k[i], v[i], **opts)[0]) == 0.0
    # nested vmap
    q2, k2, v2 = (jnp.stack([x, 2 * x]) for x in (q, k, v))
    o = jax.vmap(jax.vmap(lambda q, k, v: hj.forward(q, k, v, **opts)[0]))(q2, k2, v2)
    assert o.shape == (2, V, B, T, H, DV)
    for a in range(2):
        for i in range(V):
            assert rel(o[a, i], hj.forward(q2[a, i], k2[a, i], v2[a, i], **opts)[0]) == 0.0


def test_vmap_with_cu_seqlens():
    V, T, H, Hkv, op = 3, 17, 2, 2, "hla2"
    rng = np.random.default_rng(6)
    q = jnp.asarray(rng.standard_normal((V, 1, T, H, DK)))
    k = jnp.asarray(rng.standard_normal((V, 1, T, Hkv, DK)))
    v = jnp.asarray(rng.standard_normal((V, 1, T, Hkv, DV)))
    cus = jnp.asarray([[0, 4, 17], [0, 16, 17], [0, 9, 17]], jnp.int32)   # a packing per batch index
    f = lambda q, k, v, c: hj.forward(q, k, v, op=op, cu_seqlens=c, output_final_state=True)  # noqa: E731
    for in_axes, cu in (((0, 0, 0, 0), cus), ((0, 0, 0, None), cus[0])):
        o, final = jax.vmap(f, in_axes=in_axes)(q, k, v, cu)
        for i in range(V):
            c = cu[i] if in_axes[3] == 0 else cu
            wo, wf = hla.forward(*(np.asarray(x[i]) for x in (q, k, v)), op=op, cu_seqlens=np.asarray(c),
                                 output_final_state=True)
            assert rel(o[i], wo) == 0.0 and rel(final[i], wf.array) == 0.0


# ----------------------------------------------------------------------------------------------
# gradients

def loss_weights(B, T, H, seed):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((B, T, H, DV)))


@pytest.mark.parametrize("op,masked,normalize,decay,ridge,H,Hkv", list(option_grid()))
def test_grad_against_backward_and_bruteforce(op, masked, normalize, decay, ridge, H, Hkv):
    B, T = 2, seq_len(op)
    opts = options(op, masked, normalize, decay, ridge)
    x64 = make(B, T, H, Hkv, seed_of(op, masked, normalize, decay, ridge, H), positive=normalize)
    w = loss_weights(B, T, H, 17)
    for name in ("float64", "float32"):
        (q, k, v), (q64, k64, v64) = cast(x64, name)
        wn = w.astype(name)
        g = jax.grad(lambda q, k, v: jnp.sum(hj.forward(q, k, v, **opts)[0] * wn), argnums=(0, 1, 2))(q, k, v)
        assert all(a.dtype == q.dtype for a in g)
        # the numpy API's backward on the same inputs and the same cotangent
        gb = hla.backward(*(np.asarray(x) for x in (q, k, v)), np.asarray(wn), **opts)
        check_grads(g, gb[:3], 1e-6 if name == "float32" else 1e-12, "%s vs hla.backward" % name,
                    key=("grad vs hla.backward", op, name))
        # jax.grad of the brute-force index sums (float64, same rounded inputs)
        want = brute_grad(q64, k64, v64, w, **opts)
        check_grads(g, want, TOL[name], "%s vs brute force" % name, key=("grad vs brute force", op, name))


@pytest.mark.parametrize("op", ("hla2", "ahla", "hla3"))
@pytest.mark.parametrize("masked", (True, False))
def test_initial_state_gradient(op, masked):
    B, H, Hkv = 2, 4, 2
    T1 = 4 if op == "hla3" else 7
    T2 = seq_len(op) - T1
    opts = dict(op=op, masked=masked, decay=0.9, scale=DK ** -0.5, ridge=0.25 if op == "hla2" else 0.0)
    rng = np.random.default_rng(21)
    q, k, v = (jnp.asarray(x) for x in make(B, T1 + T2, H, Hkv, 22))
    w = loss_weights(B, T1 + T2, H, 23)
    n = hla.state_elements(op, heads=H, kv_heads=Hkv, dk=DK, dv=DV, masked=masked, ridge=opts["ridge"])
    wf = jnp.asarray(rng.standard_normal((B, n)))

    # (1) chain: segment 2 starts from segment 1's final state; grads w.r.t. both segments' inputs
    #     equal jax.grad of the brute force over the whole sequence (d_initial -> d_final).
    def chained(q, k, v):
        o1, s1 = hj.forward(q[:, :T1], k[:, :T1], v[:, :T1], output_final_state=True, **opts)
        o2, _ = hj.forward(q[:, T1:], k[:, T1:], v[:, T1:], initial_state=s1, **opts)
        return jnp.sum(jnp.concatenate([o1, o2], axis=1) * w)

    g = jax.jit(jax.grad(chained, argnums=(0, 1, 2)))(q, k, v)
    want = brute_grad(q, k, v, w, **opts)
    check_grads(g, want, 1e-9, "chained segments vs brute force", key=("chain vs brute force", op, "float64"))

    # (2) another sequence's state as the initial state, with the final state in the loss:
    #     d_initial and dq, dk, dv equal hla.backward with d_final; and finite differences along a
    #     direction of valid states (the cotangent of S and S^Q is symmetrised: docs/gradients.md).
    init = valid_state(B, H, Hkv, 24, **opts)

    def loss(q, k, v, s):
        o, fin = hj.forward(q, k, v, initial_state=s, output_final_state=True, **opts)
        return jnp.sum(o * w) + jnp.sum(fin * wf)

    g = jax.grad(loss, argnums=(0, 1, 2, 3))(q, k, v, init)
    gb = hla.backward(*(np.asarray(x) for x in (q, k, v, w)), initial_state=np.asarray(init),
                      d_final_state=np.asarray(wf), **opts)
    check_grads(g, gb, 1e-12, "initial state vs hla.backward")
    u = valid_state(B, H, Hkv, 25, **opts)     # a direction within valid states (symmetric S, S^Q)
    h = 1e-3
    f = [float(loss(q, k, v, init + c * h * u)) for c in (-2, -1, 1, 2)]
    fd = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h)       # exact for polynomials of degree <= 4
    ad = float(jnp.sum(g[3] * u))
    assert abs(fd - ad) <= 1e-7 * max(abs(ad), 1.0), (fd, ad)
    WORST[("d_initial vs finite differences", op, "float64")] = max(
        WORST.get(("d_initial vs finite differences", op, "float64"), 0.0), abs(fd - ad) / max(abs(ad), 1.0))


@pytest.mark.parametrize("op", ("hla2", "ahla", "hla3"))
def test_grad_cu_seqlens_jit_and_vmap(op):
    T, H, Hkv = seq_len(op), 4, 2
    cu = [0, 3, 4, T]
    opts = dict(op=op, normalize=False, decay=0.95, scale=DK ** -0.5)
    q, k, v = (jnp.asarray(x) for x in make(1, T, H, Hkv, 31))
    w = loss_weights(1, T, H, 32)
    c = jnp.asarray(cu, jnp.int32)
    L = lambda q, k, v, c: jnp.sum(hj.forward(q, k, v, cu_seqlens=c, **opts)[0] * w)  # noqa: E731
    g = jax.jit(jax.grad(L, argnums=(0, 1, 2)))(q, k, v, c)
    want = brute_grad(q, k, v, w, cu_seqlens=cu, **opts)
    check_grads(g, want, 1e-9, "cu_seqlens vs brute force",
                key=("cu_seqlens grad vs brute force", op, "float64"))
    gb = hla.backward(*(np.asarray(x) for x in (q, k, v, w)), cu_seqlens=np.asarray(cu), **opts)
    check_grads(g, gb[:3], 1e-12, "cu_seqlens vs hla.backward")
    # vmap of grad over a batch axis equals a loop
    V = 3
    qs, ks, vs = (jnp.stack([x * (1 + 0.1 * i) for i in range(V)]) for x in (q, k, v))
    gv = jax.vmap(jax.grad(L, argnums=(0, 1, 2)), in_axes=(0, 0, 0, None))(qs, ks, vs, c)
    for i in range(V):
        gi = jax.grad(L, argnums=(0, 1, 2))(qs[i], ks[i], vs[i], c)
        check_grads([a[i] for a in gv], gi, 0.0, "vmap(grad) vs loop")


@pytest.mark.parametrize("name", ("bfloat16", "float16"))
@pytest.mark.parametrize("op", ("hla2", "ahla", "hla3"))
def test_half_precision_grad(op, name):
    B, T, H, Hkv = 2, seq_len(op), 4, 2
    (q, k, v), (q64, k64, v64) = cast(make(B, T, H, Hkv, 41), name)
    opts = dict(op=op, decay=0.9, scale=DK ** -0.5)
    w = loss_weights(B, T, H, 42).astype(name)
    g = jax.grad(lambda q, k, v: jnp.sum((hj.forward(q, k, v, **opts)[0] * w).astype(jnp.float32)),
                 argnums=(0, 1, 2))(q, k, v)
    assert all(a.dtype == q.dtype for a in g)
    gb = hla.backward(*(np.asarray(x) for x in (q, k, v)), np.asarray(w), **opts)
    check_grads(g, gb[:3], 0.0, "%s vs hla.backward" % name)
    want = brute_grad(q64, k64, v64, w, **opts)
    check_grads(g, want, 2e-2, "%s vs brute force" % name, key=("grad vs brute force", op, name))


def test_a_wrong_gradient_is_caught():
    op, B, T, H, Hkv = "hla2", 2, seq_len("hla2"), 2, 2
    opts = dict(op=op, decay=0.9, scale=DK ** -0.5)
    q, k, v = (jnp.asarray(x) for x in make(B, T, H, Hkv, 51))
    w = loss_weights(B, T, H, 52)
    want = brute_grad(q, k, v, w, **opts)
    good = jax.grad(lambda q, k, v: jnp.sum(hj.forward(q, k, v, **opts)[0] * w), argnums=(0, 1, 2))(q, k, v)
    check_grads(good, want, 1e-9, "correct gradient")

    # a backward rule that is wrong by 1e-7 relative in one element of dk
    @jax.custom_vjp
    def wrong(q, k, v):
        return hj.forward(q, k, v, **opts)[0]

    def wrong_fwd(q, k, v):
        o, vjp = jax.vjp(lambda q, k, v: hj.forward(q, k, v, **opts)[0], q, k, v)
        return o, vjp

    def wrong_bwd(vjp, do):
        dq, dk, dv = vjp(do)
        return dq, dk.at[1, 3, 0, 2].multiply(1 + 1e-7), dv

    wrong.defvjp(wrong_fwd, wrong_bwd)
    bad = jax.grad(lambda q, k, v: jnp.sum(wrong(q, k, v) * w), argnums=(0, 1, 2))(q, k, v)
    with pytest.raises(AssertionError):
        check_grads(bad, want, 1e-9, "perturbed gradient")
    # the gradient of a neighbouring operator (decay 0.9 vs 0.9 + 1e-6; the printed decayed-hla2
    # update of the paper's erratum 2 differs far more) is caught too
    other = jax.grad(lambda q, k, v: jnp.sum(hj.forward(q, k, v, **dict(opts, decay=0.9 + 1e-6))[0] * w),
                     argnums=(0, 1, 2))(q, k, v)
    with pytest.raises(AssertionError):
        check_grads(other, want, 1e-9, "neighbouring decay")
    # and the unmasked operator's gradient against the masked brute force
    unmasked = jax.grad(lambda q, k, v: jnp.sum(hj.forward(q, k, v, masked=False, **opts)[0] * w),
                        argnums=(0, 1, 2))(q, k, v)
    with pytest.raises(AssertionError):
        check_grads(unmasked, want, 2e-3, "unmasked vs masked")


# ----------------------------------------------------------------------------------------------
# checkpoints: under differentiation the chunked path's forward rule is hla_forward_checkpoints and the
# backward rule hla_backward_checkpoints (hla_jax_forward_checkpoints / hla_jax_backward_checkpoints);
# the gradients equal hla.backward without checkpoints bit for bit.

CK_CHUNK = 4


def ck_options(op, normalize):
    return dict(op=op, normalize=normalize, decay=0.9, scale=DK ** -0.5, chunk_size=CK_CHUNK,
                ridge=0.2 if op == "hla2" else 0.0)


def ck_rows(B, T, H, Hkv, sequences=0, op="hla2", normalize=False, ridge=0.0, **_):
    """(rows, stride) of the checkpoints of a call with chunk_size CK_CHUNK (ck_options(...) as opts)."""
    return hla.checkpoint_rows(op, heads=H, kv_heads=Hkv, dk=DK, dv=DV, batch=B, tokens=T,
                               sequences=sequences, normalize=normalize, ridge=ridge,
                               chunk_size=CK_CHUNK)


def ck_loss(opts, w, wf, cu=None):
    """loss(q, k, v, s) = sum(o * w) + sum(final * wf), from initial state s (sums in float32 or
    wider: the cotangents are w and wf exactly)."""
    def loss(q, k, v, s, c=cu):
        o, fin = hj.forward(q, k, v, initial_state=s, output_final_state=True, cu_seqlens=c, **opts)
        acc = jnp.float64 if o.dtype == jnp.float64 else jnp.float32
        return jnp.sum((o * w.astype(o.dtype)).astype(acc)) + jnp.sum(fin * wf.astype(fin.dtype))
    return loss


def ck_want(q, k, v, init, w, wf, opts, cu=None):
    """hla.backward (numpy, no checkpoints) with the loss's cotangents."""
    qn, kn, vn = (np.asarray(x) for x in (q, k, v))
    sdt = np.float64 if qn.dtype == np.float64 else np.float32
    return hla.backward(qn, kn, vn, np.asarray(jnp.asarray(w).astype(q.dtype)),
                        initial_state=np.asarray(init), d_final_state=np.asarray(wf).astype(sdt),
                        cu_seqlens=None if cu is None else np.asarray(cu), **opts)


def bitwise(got, want, what):
    for name, a, b in zip(("dq", "dk", "dv", "d_initial"), got, want):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, (what, name, a.dtype, b.dtype, a.shape, b.shape)
        assert np.array_equal(a, b), "%s %s: not bit for bit (max |diff| %.3e)" % (
            what, name, float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))))


@pytest.mark.parametrize("name", DTYPES)
@pytest.mark.parametrize("op", ("hla2", "ahla", "hla3"))
def test_checkpointed_grad_equals_backward(op, name):
    B, H, Hkv = 2, 4, 2
    T = 41 if op == "hla3" else 53
    rows, stride = ck_rows(B, T, H, Hkv, op=op)
    assert rows // B >= 2 and stride % CK_CHUNK == 0     # several checkpoints per sequence
    sdt = jnp.float64 if name == "float64" else jnp.float32
    for normalize in (False, True):
        opts = ck_options(op, normalize)
        (q, k, v), _ = cast(make(B, T, H, Hkv, seed_of("ck", op, normalize), positive=normalize), name)
        init = valid_state(B, H, Hkv, 71, **dict(opts, chunk_size=None)).astype(sdt)
        w = loss_weights(B, T, H, 72)
        wf = jnp.asarray(np.random.default_rng(73).standard_normal(init.shape)).astype(sdt)
        loss = ck_loss(opts, w, wf)
        g = jax.grad(loss, argnums=(0, 1, 2, 3))(q, k, v, init)
        assert all(a.dtype == q.dtype for a in g[:3]) and g[3].dtype == sdt
        want = ck_want(q, k, v, init, w, wf, opts)
        bitwise(g, want, "%s %s normalize=%s" % (op, name, normalize))
        # without initial state or final state in the loss
        L0 = lambda q, k, v: jnp.sum((hj.forward(q, k, v, **opts)[0] * w.astype(q.dtype))  # noqa: E731
                                     .astype(jnp.float64 if name == "float64" else jnp.float32))
        g0 = jax.grad(L0, argnums=(0, 1, 2))(q, k, v)
        w0 = hla.backward(*(np.asarray(x) for x in (q, k, v)), np.asarray(w.astype(q.dtype)), **opts)
        bitwise(g0, w0[:3], "%s %s no state" % (op, name))


@pytest.mark.parametrize("op", ("hla2", "ahla", "hla3"))
def test_checkpointed_grad_cu_seqlens(op):
    T, H, Hkv = 50, 4, 2
    opts = ck_options(op, False)
    (q, k, v), _ = cast(make(1, T, H, Hkv, 81), "float64")
    w = loss_weights(1, T, H, 82)
    for cu in ([0, 10, 25, 50], [0, 3, 40, 50], [0, 50], [0, 1, 2, 50]):
        N = len(cu) - 1
        assert ck_rows(1, T, H, Hkv, sequences=N, **opts)[0] >= 1
        init = valid_state(N, H, Hkv, 83, op=op, decay=0.9, ridge=opts["ridge"])
        wf = jnp.asarray(np.random.default_rng(84).standard_normal(init.shape))
        for dt in (jnp.int32, jnp.int64):
            c = jnp.asarray(cu, dt)
            loss = ck_loss(opts, w, wf)
            g = jax.grad(loss, argnums=(0, 1, 2, 3))(q, k, v, init, c)
            bitwise(g, ck_want(q, k, v, init, w, wf, opts, cu=cu), "cu %s" % cu)
            gj = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(q, k, v, init, c)
            bitwise(gj, g, "jit cu %s" % cu)


@pytest.mark.parametrize("op", ("hla2", "ahla", "hla3"))
def test_checkpointed_grad_jit_and_vmap(op):
    V, B, H, Hkv = 3, 2, 4, 2
    T = 41 if op == "hla3" else 47
    opts = ck_options(op, True)
    rng = np.random.default_rng(91)
    qs, ks, vs = (jnp.asarray(np.abs(x) if i < 2 else x) for i, x in enumerate(
        (rng.standard_normal((V, B, T, H, DK)), rng.standard_normal((V, B, T, Hkv, DK)),
         rng.standard_normal((V, B, T, Hkv, DV)))))
    n = hla.state_elements(op, heads=H, kv_heads=Hkv, dk=DK, dv=DV, normalize=True, ridge=opts["ridge"])
    inits = valid_state(V * B, H, Hkv, 92, **dict(opts, chunk_size=None)).reshape(V, B, n)
    w = loss_weights(B, T, H, 93)
    wf = jnp.asarray(rng.standard_normal((B, n)))
    loss = ck_loss(opts, w, wf)
    grad = jax.grad(loss, argnums=(0, 1, 2, 3))
    # jit
    bitwise(jax.jit(grad)(qs[0], ks[0], vs[0], inits[0]),
            ck_want(qs[0], ks[0], vs[0], inits[0], w, wf, opts), "jit(grad)")
    # vmap (the leading axis folds into the batch: [V, rows, n] checkpoints), eagerly and under jit,
    # batched and unbatched arguments
    for in_axes in ((0, 0, 0, 0), (0, None, 0, None), (None, 0, None, 0)):
        args = [x if ax == 0 else x[1] for x, ax in zip((qs, ks, vs, inits), in_axes)]
        for f in (jax.vmap(grad, in_axes=in_axes), jax.jit(jax.vmap(grad, in_axes=in_axes))):
            g = f(*args)
            for i in range(V):
                sl = [x[i] if ax == 0 else x for x, ax in zip(args, in_axes)]
                bitwise([a[i] for a in g], ck_want(*sl, w, wf, opts), "vmap(grad) %s [%d]" % (in_axes, i))
    # grad of a loss over a vmapped forward
    gv = jax.grad(lambda q, k, v, s: jnp.sum(jax.vmap(loss)(q, k, v, s)), argnums=(0, 1, 2, 3))(
        qs, ks, vs, inits)
    for i in range(V):
        bitwise([a[i] for a in gv], ck_want(qs[i], ks[i], vs[i], inits[i], w, wf, opts),
                "grad(vmap) [%d]" % i)
    # nested vmap
    q2, k2, v2, s2 = (jnp.stack([x, x[::-1]]) for x in (qs, ks, vs, inits))
    g = jax.jit(jax.vmap(jax.vmap(grad)))(q2, k2, v2, s2)
    for a in range(2):
        for i in range(V):
            bitwise([x[a, i] for x in g], ck_want(q2[a, i], k2[a, i], v2[a, i], s2[a, i], w, wf, opts),
                    "vmap(vmap(grad)) [%d, %d]" % (a, i))


@pytest.mark.parametrize("op", ("hla2", "ahla", "hla3"))
def test_checkpointed_grad_vmap_cu_seqlens(op):
    """vmap with cu_seqlens: the custom calls loop over the leading index, each with its own packing
    and its own [rows, n] checkpoints (rows: a bound over every packing)."""
    V, T, H, Hkv = 3, 50, 2, 1
    opts = ck_options(op, False)
    rng = np.random.default_rng(101)
    qs = jnp.asarray(rng.standard_normal((V, 1, T, H, DK)))
    ks = jnp.asarray(rng.standard_normal((V, 1, T, Hkv, DK)))
    vs = jnp.asarray(rng.standard_normal((V, 1, T, Hkv, DV)))
    cus = [[0, 10, 25, 50], [0, 3, 40, 50], [0, 20, 40, 50]]       # 1, 2 and 2 checkpoints of 2 rows
    n = hla.state_elements(op, heads=H, kv_heads=Hkv, dk=DK, dv=DV, ridge=opts["ridge"])
    inits = valid_state(V * 3, H, Hkv, 102, op=op, decay=0.9, ridge=opts["ridge"]).reshape(V, 3, n)
    w = loss_weights(1, T, H, 103)
    wf = jnp.asarray(rng.standard_normal((3, n)))
    grad = jax.grad(ck_loss(opts, w, wf), argnums=(0, 1, 2, 3))
    c = jnp.asarray(cus, jnp.int32)
    for in_axes, cu in (((0, 0, 0, 0, 0), c), ((0, 0, 0, 0, None), c[1])):
        for f in (jax.vmap(grad, in_axes=in_axes), jax.jit(jax.vmap(grad, in_axes=in_axes))):
            g = f(qs, ks, vs, inits, cu)
            for i in range(V):
                ci = cus[i] if in_axes[4] == 0 else cus[1]
                bitwise([a[i] for a in g], ck_want(qs[i], ks[i], vs[i], inits[i], w, wf, opts, cu=ci),
                        "vmap(grad) cu %s [%d]" % (ci, i))


@pytest.mark.parametrize("name", ("float64", "float32", "bfloat16"))
def test_forward_checkpoints_layout(name):
    """The fwd rule's checkpoints equal hla.forward(checkpoints=) of each batch element (no cu_seqlens:
    the folded call's [V*rows, n] is [V, rows, n]; with: one call per index, unused rows zero)."""
    op, V, B, T, H, Hkv = "hla2", 3, 2, 45, 4, 2
    opts = ck_options(op, False)
    rng = np.random.default_rng(111)
    (qs, ks, vs), _ = cast((rng.standard_normal((V, B, T, H, DK)), rng.standard_normal((V, B, T, Hkv, DK)),
                            rng.standard_normal((V, B, T, Hkv, DV))), name)

    def fwd(q, k, v, c=None):
        s, *args = hj._prepare(q, k, v, initial_state=None, output_final_state=False, cu_seqlens=c,
                               path="chunked", masked=True, eps=1e-6, **opts)
        return hj._forward_call(s, *args, checkpoints=True)

    o, _, ck = jax.jit(jax.vmap(fwd))(qs, ks, vs)
    rows = ck_rows(B, T, H, Hkv, **opts)[0]
    assert ck.shape == (V, rows, hla.state_elements(op, heads=H, kv_heads=Hkv, dk=DK, dv=DV, ridge=0.2))
    for i in range(V):
        qn, kn, vn = (np.asarray(x[i]) for x in (qs, ks, vs))
        want = hla.new_checkpoints(qn, kn, vn, **opts)
        wo, _ = hla.forward(qn, kn, vn, checkpoints=want, **opts)
        assert np.array_equal(np.asarray(ck[i]), want) and np.array_equal(np.asarray(o[i]), wo)
        # and the unbatched call
        o1, _, ck1 = fwd(qs[i], ks[i], vs[i])
        assert np.array_equal(np.asarray(ck1), want) and np.array_equal(np.asarray(o1), wo)
    cus = [[0, 10, 25, 45], [0, 3, 40, 45], [0, 20, 30, 45]]
    q1, k1, v1 = (x[:, :1] for x in (qs, ks, vs))
    o, _, ck = jax.vmap(fwd)(q1, k1, v1, jnp.asarray(cus, jnp.int32))
    assert ck.shape[1] == ck_rows(1, T, H, Hkv, sequences=3, **opts)[0]
    for i in range(V):
        qn, kn, vn = (np.asarray(x[i]) for x in (q1, k1, v1))
        want = hla.new_checkpoints(qn, kn, vn, cu_seqlens=np.asarray(cus[i]), **opts)
        hla.forward(qn, kn, vn, cu_seqlens=np.asarray(cus[i]), checkpoints=want, **opts)
        assert np.array_equal(np.asarray(ck[i]), want), i


def test_zero_checkpoint_rows():
    """Sequences shorter than one stride: the checkpoint array has zero rows (data NULL to libhla)."""
    op, B, T, H, Hkv = "hla2", 2, 6, 4, 2
    opts = ck_options(op, False)
    assert ck_rows(B, T, H, Hkv, **opts)[0] == 0
    (q, k, v), _ = cast(make(B, T, H, Hkv, 121), "float64")
    init = valid_state(B, H, Hkv, 122, op=op, decay=0.9, ridge=0.2)
    w = loss_weights(B, T, H, 123)
    wf = jnp.asarray(np.random.default_rng(124).standard_normal(init.shape))
    grad = jax.grad(ck_loss(opts, w, wf), argnums=(0, 1, 2, 3))
    bitwise(grad(q, k, v, init), ck_want(q, k, v, init, w, wf, opts), "zero rows")
    bitwise(jax.jit(grad)(q, k, v, init), ck_want(q, k, v, init, w, wf, opts), "zero rows, jit")
    qs, ks, vs, ss = (jnp.stack([x, 2 * x]) for x in (q, k, v, init))
    g = jax.vmap(grad)(qs, ks, vs, ss)
    for i in range(2):
        bitwise([a[i] for a in g], ck_want(qs[i], ks[i], vs[i], ss[i], w, wf, opts), "zero rows, vmap")
    assert "hla_jax_backward_checkpoints" in jax.jit(grad).lower(q, k, v, init).as_text()


def _targets(text):
    import re
    return set(re.findall(r"\bhla_jax_\w+", text))


@pytest.mark.parametrize("masked", (True, False), ids=("m", "u"))
@pytest.mark.parametrize("op", ("hla2", "ahla", "hla3"))
def test_checkpoint_every_grad(op, masked):
    """checkpoint_every None, 1, 3 (a static argument): jax.grad bit for bit hla.backward's with the
    default, eagerly, under jit and vmap (folded, and looped with cu_seqlens); the lowered computation
    names the checkpointed targets, their checkpoints of hla.checkpoint_rows(checkpoint_every=) rows."""
    V, B, H, Hkv = 2, 2, 4, 2
    T = 41 if op == "hla3" else 47
    opts = dict(ck_options(op, False), masked=masked)
    rng = np.random.default_rng(seed_of("every", op, masked))
    qs, ks, vs = (jnp.asarray(rng.standard_normal(shape)) for shape in
                  ((V, B, T, H, DK), (V, B, T, Hkv, DK), (V, B, T, Hkv, DV)))
    n = hla.state_elements(op, heads=H, kv_heads=Hkv, dk=DK, dv=DV, masked=masked, ridge=opts["ridge"])
    inits = valid_state(V * B, H, Hkv, 151, **dict(opts, chunk_size=None)).reshape(V, B, n)
    w = loss_weights(B, T, H, 152)
    wf = jnp.asarray(rng.standard_normal((B, n)))
    want = [ck_want(qs[i], ks[i], vs[i], inits[i], w, wf, opts) for i in range(V)]
    cus = [[0, 10, 25, T], [0, 3, 40, T]]
    q1, k1, v1 = (x[:, :1] for x in (qs, ks, vs))
    inits1 = valid_state(V * 3, H, Hkv, 153, **dict(opts, chunk_size=None)).reshape(V, 3, n)
    wf1 = jnp.asarray(rng.standard_normal((3, n)))
    want1 = [ck_want(q1[i], k1[i], v1[i], inits1[i], w[:1], wf1, opts, cu=cus[i]) for i in range(V)]
    seen = set()
    for every in (None, 1, 3):
        grad = jax.grad(ck_loss(dict(opts, checkpoint_every=every), w, wf), argnums=(0, 1, 2, 3))
        bitwise(grad(qs[0], ks[0], vs[0], inits[0]), want[0], "grad every=%s" % every)
        bitwise(jax.jit(grad)(qs[0], ks[0], vs[0], inits[0]), want[0], "jit(grad) every=%s" % every)
        g = jax.jit(jax.vmap(grad))(qs, ks, vs, inits)
        for i in range(V):
            bitwise([a[i] for a in g], want[i], "vmap(grad) every=%s [%d]" % (every, i))
        grad1 = jax.grad(ck_loss(dict(opts, checkpoint_every=every), w[:1], wf1), argnums=(0, 1, 2, 3))
        g = jax.jit(jax.vmap(grad1))(q1, k1, v1, inits1, jnp.asarray(cus, jnp.int32))
        for i in range(V):
            bitwise([a[i] for a in g], want1[i], "vmap(grad) cu every=%s [%d]" % (every, i))
        text = jax.jit(grad).lower(qs[0], ks[0], vs[0], inits[0]).as_text()
        assert _targets(text) == {"hla_jax_forward_checkpoints", "hla_jax_backward_checkpoints"}
        rows = hla.checkpoint_rows(op, heads=H, kv_heads=Hkv, dk=DK, dv=DV, batch=B, tokens=T, masked=masked,
                                   ridge=opts["ridge"], chunk_size=CK_CHUNK, checkpoint_every=every)[0]
        assert ("tensor<%dx%dxf64>" % (rows, n)) in text, (every, rows)
        seen.add(rows)
    assert len(seen) == 3          # three different checkpoint plans


def test_checkpointed_targets_run_under_grad():
    """The lowered computations name the checkpointed custom calls under differentiation on the chunked
    path (and only then): the test fails if the fwd/bwd rules fall back to hla_forward/hla_backward."""
    op, B, T, H, Hkv = "hla2", 2, 45, 4, 2
    opts = ck_options(op, False)
    (q, k, v), _ = cast(make(B, T, H, Hkv, 131), "float32")
    init = valid_state(B, H, Hkv, 132, op=op, decay=0.9, ridge=0.2).astype(jnp.float32)
    w = loss_weights(B, T, H, 133)
    wf = jnp.asarray(np.random.default_rng(134).standard_normal(init.shape))
    loss = ck_loss(opts, w, wf)
    grad = jax.grad(loss, argnums=(0, 1, 2, 3))
    want = {"hla_jax_forward_checkpoints", "hla_jax_backward_checkpoints"}
    assert _targets(jax.jit(grad).lower(q, k, v, init).as_text()) == want
    assert _targets(jax.jit(jax.vmap(grad)).lower(*(jnp.stack([x, x]) for x in (q, k, v, init)))
                    .as_text()) == want
    c = jnp.asarray([0, 20, 45], jnp.int32)
    q1, k1, v1 = q[:1], k[:1], v[:1]
    assert _targets(jax.jit(jax.grad(lambda q, c: jnp.sum(hj.forward(q, k1, v1, cu_seqlens=c, **opts)[0])))
                    .lower(q1, c).as_text()) == want
    # value_and_grad: one forward (the checkpointed one) and the checkpointed backward
    text = jax.jit(jax.value_and_grad(loss)).lower(q, k, v, init).as_text()
    assert _targets(text) == want and text.count("@hla_jax_forward_checkpoints(") == 1
    # the checkpoints are an output of the forward custom call and an operand of the backward one
    rows = ck_rows(B, T, H, Hkv, **opts)[0]
    n = init.shape[1]
    assert rows >= 2 and ("tensor<%dx%dxf32>" % (rows, n)) in text
    # inference (no differentiation) calls plain hla_forward, without checkpoints
    assert _targets(jax.jit(lambda q, k, v, s: loss(q, k, v, s)).lower(q, k, v, init).as_text()) == \
        {"hla_jax_forward"}
    # the serial and scan paths keep hla_forward / hla_backward under grad
    for path in ("serial", "scan"):
        lp = ck_loss(dict(opts, path=path), w, wf)
        # (under jit(grad) without the value, the forward is dead code there and XLA drops it)
        assert _targets(jax.jit(jax.grad(lp, argnums=(0, 1, 2, 3))).lower(q, k, v, init).as_text()) == \
            {"hla_jax_backward"}
        assert _targets(jax.jit(jax.value_and_grad(lp)).lower(q, k, v, init).as_text()) == \
            {"hla_jax_forward", "hla_jax_backward"}
        g = jax.grad(lp, argnums=(0, 1, 2, 3))(q, k, v, init)
        bitwise(g, ck_want(q, k, v, init, w, wf, dict(opts, path=path)), path)


def test_checkpoint_custom_calls_check_their_operands():
    """The checkpointed custom calls check the checkpoint array (shape, dtype, path) and checkpoint_every
    themselves."""
    B, T, H, Hkv = 1, 45, 2, 2
    q, k, v = (jnp.asarray(x) for x in make(B, T, H, Hkv, 141))
    n = hla.state_elements("hla2", heads=H, kv_heads=Hkv, dk=DK, dv=DV)
    rows = ck_rows(B, T, H, Hkv)[0]
    attrs = dict(op=np.int64(0), masked=True, normalize=False, scale=1.0, decay=1.0, ridge=0.0,
                 eps=1e-6, chunk_size=np.int64(CK_CHUNK), path=np.int64(0), has_initial=False,
                 has_cu=False)
    out = (jax.ShapeDtypeStruct((B, T, H, DV), q.dtype), jax.ShapeDtypeStruct((0,), jnp.float64))
    ph = (jnp.zeros((0,)), jnp.zeros((0,), jnp.int32))
    for shape, dtype, path, every, text in (((rows + 1, n), jnp.float64, 0, 0, "checkpoints has shape"),
                                            ((rows, n), jnp.float32, 0, 0, "checkpoints must be float64"),
                                            ((rows, n), jnp.float64, 0, -1, "checkpoint_every = -1 must be"),
                                            ((rows, n), jnp.float64, 1, 0, "chunked path only")):
        attrs.update(path=np.int64(path), checkpoint_every=np.int64(every))
        call = jax.ffi.ffi_call("hla_jax_forward_checkpoints", out + (jax.ShapeDtypeStruct(shape, dtype),))
        with pytest.raises(Exception, match=text):
            call(q, k, v, *ph, want_final=False, **attrs)[0].block_until_ready()
        grads = (jax.ShapeDtypeStruct(q.shape, q.dtype), jax.ShapeDtypeStruct(k.shape, q.dtype),
                 jax.ShapeDtypeStruct(v.shape, q.dtype), jax.ShapeDtypeStruct((0,), jnp.float64))
        call = jax.ffi.ffi_call("hla_jax_backward_checkpoints", grads)
        with pytest.raises(Exception, match=text.replace("written", "read")):
            call(q, k, v, jnp.zeros((B, T, H, DV)), *ph, jnp.zeros((0,)), jnp.zeros(shape, dtype),
                 has_d_final=False, **attrs)[0].block_until_ready()
    # still alive and correct afterwards
    o, _ = hj.forward(q, k, v)
    assert rel(o, hla.forward(*(np.asarray(x) for x in (q, k, v)))[0]) == 0.0


# ----------------------------------------------------------------------------------------------
# bad input

def test_bad_input_raises():
    B, T, H, Hkv = 1, 6, 4, 2
    q, k, v = (jnp.asarray(x) for x in make(B, T, H, Hkv, 61))
    n = hla.state_elements("hla2", heads=H, kv_heads=Hkv, dk=DK, dv=DV)
    cases = [
        (ValueError, "q", dict(q=q[0])),
        (TypeError, "share one dtype", dict(k=k.astype(jnp.float32))),
        (TypeError, "q must be float", dict(q=q.astype(jnp.int32), k=k.astype(jnp.int32),
                                            v=v.astype(jnp.int32))),
        (ValueError, "k must be", dict(k=k[:, :5])),
        (ValueError, "v must be", dict(v=v[:, :, :1])),
        (ValueError, "multiple", dict(k=jnp.concatenate([k, k[:, :, :1]], axis=2),
                                      v=jnp.concatenate([v, v[:, :, :1]], axis=2))),
        (ValueError, "empty", dict(q=q[:, :0], k=k[:, :0], v=v[:, :0])),
        (ValueError, "decay", dict(decay=0.0)),
        (ValueError, "decay", dict(decay=1.5)),
        (ValueError, "eps", dict(eps=0.0)),
        (ValueError, "ridge", dict(ridge=-1.0)),
        (ValueError, "ridge", dict(op="ahla", ridge=0.5)),
        (ValueError, "op", dict(op="hla4")),
        (ValueError, "path", dict(path="fast")),
        (TypeError, "chunk_size", dict(chunk_size=2.5)),
        (TypeError, "checkpoint_every must be an int", dict(checkpoint_every=True)),
        (TypeError, "checkpoint_every must be an int", dict(checkpoint_every=1.5)),
        (TypeError, "checkpoint_every must be an int", dict(checkpoint_every="1")),
        (ValueError, "checkpoint_every = -1 must be >= 0", dict(checkpoint_every=-1)),
        (ValueError, "checkpoint_every = -1 must be >= 0", dict(checkpoint_every=-1, path="serial")),
        (TypeError, "cu_seqlens", dict(cu_seqlens=jnp.asarray([0.0, 6.0]))),
        (ValueError, "cu_seqlens", dict(cu_seqlens=jnp.asarray([0, 4, 3, 6], jnp.int32))),
        (ValueError, "cu_seqlens", dict(cu_seqlens=jnp.asarray([0, 5], jnp.int32))),
        (ValueError, "cu_seqlens", dict(cu_seqlens=jnp.asarray([[0, 6]], jnp.int32))),
        (ValueError, "B must be 1", dict(q=jnp.concatenate([q, q]), k=jnp.concatenate([k, k]),
                                         v=jnp.concatenate([v, v]), cu_seqlens=jnp.asarray([0, 6]))),
        (ValueError, "initial_state", dict(initial_state=jnp.zeros((B, n + 1)))),
        (TypeError, "initial_state", dict(initial_state=jnp.zeros((B, n), jnp.float32))),
        (TypeError, "initial_state", dict(initial_state=[[0.0] * n])),
        (ValueError, "another configuration", dict(initial_state=hla.State(
            "hla2", batch=B, heads=H, kv_heads=Hkv, dk=DK, dv=DV, decay=0.5, dtype="float64"))),
        (TypeError, "q must be an array", dict(q="q")),
    ]
    for exc, text, change in cases:
        args = dict(q=q, k=k, v=v)
        args.update(change)
        with pytest.raises(exc, match=text):
            hj.forward(**args)
    # offsets only the data shows (traced under jit): the custom call fails with libhla's message
    f = jax.jit(lambda q, k, v, c: hj.forward(q, k, v, cu_seqlens=c)[0])
    for cu in ([0, 4, 3, 6], [0, 2, 7], [1, 3, 6]):
        with pytest.raises(Exception, match="cu_seqlens") as info:
            f(q, k, v, jnp.asarray(cu, jnp.int32)).block_until_ready()
        assert "hla_forward" in str(info.value)
    with pytest.raises(Exception, match="cu_seqlens"):
        jax.grad(lambda q: jnp.sum(f(q, k, v, jnp.asarray([0, 4, 3, 6], jnp.int32))))(q).block_until_ready()
    # the custom call itself checks what it is given (a caller bypassing hla.jax.forward)
    bad_out = jax.ShapeDtypeStruct((B, T, H, DV + 1), q.dtype)
    call = jax.ffi.ffi_call("hla_jax_forward", (bad_out, jax.ShapeDtypeStruct((0,), jnp.float64)))
    with pytest.raises(Exception, match="output has shape"):
        call(q, k, v, jnp.zeros((0,)), jnp.zeros((0,), jnp.int32), op=np.int64(0), masked=True,
             normalize=False, scale=1.0, decay=1.0, ridge=0.0, eps=1e-6, chunk_size=np.int64(0),
             path=np.int64(0), has_initial=False, has_cu=False, want_final=False)[0].block_until_ready()
    call = jax.ffi.ffi_call("hla_jax_forward", (jax.ShapeDtypeStruct((B, T, H, DV), q.dtype),
                                                jax.ShapeDtypeStruct((0,), jnp.float64)))
    with pytest.raises(Exception, match="config.op"):
        call(q, k, v, jnp.zeros((0,)), jnp.zeros((0,), jnp.int32), op=np.int64(7), masked=True,
             normalize=False, scale=1.0, decay=1.0, ridge=0.0, eps=1e-6, chunk_size=np.int64(0),
             path=np.int64(0), has_initial=False, has_cu=False, want_final=False)[0].block_until_ready()
    # still alive and correct afterwards
    o, _ = hj.forward(q, k, v)
    assert rel(o, hla.forward(*(np.asarray(x) for x in (q, k, v)))[0]) == 0.0


def test_report_worst(capsys):
    """Prints the worst errors measured above (run with -s, or read the captured output)."""
    with capsys.disabled():
        for key in sorted(WORST):
            print("  %-40s %-6s %-9s %.2e" % (key[0], key[1], key[2], WORST[key]))
