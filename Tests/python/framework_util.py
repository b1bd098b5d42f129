"""Helpers of the Interface-1.0 tests (torch, JAX, half precision, packed sequences, state rows).

Inputs are drawn in float64, rounded to the element type under test by the framework itself, and
read back to float64; the reference is always the independent numpy brute force (bruteforce.py)
evaluated in float64 on those rounded values, with the tolerances of SPEC section 4. Nothing here
depends on how the `hla` package is implemented.
"""
import zlib

import numpy as np

import bruteforce as bf

OPS = ("hla2", "ahla", "hla3")
PATHS = ("chunked", "serial", "scan")
DTYPE_NAMES = ("float32", "float64", "bfloat16", "float16")

# SPEC section 4: max-norm relative error against a float64 evaluation of the same (rounded) inputs.
SPEC_TOL = {"float64": 1e-10, "float32": 1e-4, "bfloat16": 1e-2, "float16": 2e-3}
# Precision of the arithmetic (SPEC 1/7: half inputs are widened and accumulated in float32).
COMPUTE_ROUNDOFF = {"float64": 2.0 ** -53, "float32": 2.0 ** -24, "bfloat16": 2.0 ** -24,
                    "float16": 2.0 ** -24}
# Allowance per unit of u * kappa (same policy as common.tolerance): only ill-conditioned
# normalized instances (denominator den_t + eps nearly cancelling) widen the SPEC tolerance.
ROUNDING_FACTOR = 8.0


def state_dtype_name(name):
    """SPEC: the state is float64 for float64 inputs and float32 otherwise."""
    return "float64" if name == "float64" else "float32"


def tolerance(name, kappa=1.0):
    return max(SPEC_TOL[name], ROUNDING_FACTOR * COMPUTE_ROUNDOFF[name] * kappa)


def seed_of(*parts):
    """Stable seed from the parameters of a case (hash() is salted per process)."""
    return zlib.crc32(repr(parts).encode())


def draw(B, T, H, Hkv, dk, dv, seed):
    """Unit-normal float64 q [B,T,H,dk], k [B,T,Hkv,dk], v [B,T,Hkv,dv]."""
    r = np.random.default_rng(seed)
    return tuple(r.standard_normal(s) for s in ((B, T, H, dk), (B, T, Hkv, dk), (B, T, Hkv, dv)))


def options(op, masked=True, normalize=False, decay=1.0, ridge=0.0, scale=1.0, eps=1e-6):
    return dict(op=op, masked=masked, normalize=normalize, decay=decay, ridge=ridge, scale=scale,
                eps=eps)


def variants(op, dk):
    """A few option sets per operator covering masked/unmasked, normalize, decay, ridge and the
    SPEC section 4 scale dk**-0.5."""
    s = dk ** -0.5
    out = [options(op, True, False, 1.0, 0.0, s),
           options(op, False, False, 0.9, 0.0, s),
           options(op, True, True, 0.95, 0.0, s)]
    if op == "hla2":
        out.append(options(op, True, False, 0.9, 0.3, s))
    return out


def opts_id(o):
    parts = ["m" if o["masked"] else "u"]
    if o["normalize"]:
        parts.append("norm")
    if o["decay"] != 1.0:
        parts.append("g%g" % o["decay"])
    if o["ridge"]:
        parts.append("r%g" % o["ridge"])
    return "-".join(parts)


def config_kwargs(opts, heads, kv_heads, dk, dv):
    """Keyword arguments of hla.State / hla.State.wrap for a configuration."""
    d = dict(opts)
    d.update(heads=heads, kv_heads=kv_heads, dk=dk, dv=dv)
    return d


def element_kwargs(opts, heads, kv_heads, dk, dv):
    """Keyword arguments of hla.state_elements (no decay/eps/scale there)."""
    return dict(op=opts["op"], heads=heads, kv_heads=kv_heads, dk=dk, dv=dv,
                masked=opts["masked"], normalize=opts["normalize"], ridge=opts["ridge"])


_CACHE = {}


def brute(q64, k64, v64, **opts):
    """(o, kappa): float64 brute force of SPEC section 2 on exactly these values (cached). kappa is
    the larger of bruteforce's condition estimate and elementwise_condition(); for unnormalized
    instances both are O(10), so the tolerance is exactly SPEC's (see tolerance())."""
    arrs = [np.ascontiguousarray(x, dtype=np.float64) for x in (q64, k64, v64)]
    key = (tuple(a.shape for a in arrs), tuple(zlib.crc32(a.tobytes()) for a in arrs),
           tuple(sorted(opts.items())))
    if key not in _CACHE:
        o, kappa = bf.evaluate(*arrs, with_condition=True, **opts)
        # measured: error <= 0.35 u * elementwise_condition on every path (normalized float32 cases,
        # 90 instances); /4 keeps a margin of ~6 under ROUNDING_FACTOR = 8
        kappa = max(kappa, bf.elementwise_condition(*arrs, o, **opts) / 4.0)
        _CACHE[key] = (o, kappa)
    return _CACHE[key]


def brute_packed(q64, k64, v64, cu, **opts):
    """Brute force of a packed batch (B = 1, offsets cu): every sequence alone, concatenated."""
    outs, kappa = [], 1.0
    for a, b in zip(cu[:-1], cu[1:]):
        o, kp = brute(q64[:, a:b], k64[:, a:b], v64[:, a:b], **opts)
        outs.append(o)
        kappa = max(kappa, kp if np.isfinite(kp) else 1.0)
    return np.concatenate(outs, axis=1), kappa


def check(got64, want, name, kappa=1.0, what=""):
    """Assert the SPEC section 4 bound for element type `name`; returns the error."""
    got64 = np.asarray(got64, dtype=np.float64)
    assert got64.shape == want.shape, (what, got64.shape, want.shape)
    assert np.all(np.isfinite(got64)), "%s: non-finite outputs" % what
    err = bf.rel_err(got64, want)
    tol = tolerance(name, kappa)
    assert err <= tol, "%s [%s]: rel. max-norm error %.3e > %.1e (kappa %.3g)" % (
        what, name, err, tol, kappa)
    return err


def row_close(a, b, rtol, what=""):
    """Per row of two [rows, n] state/summary arrays: max|a-b| <= rtol * max|b| of that row."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    for r in range(a.shape[0]):
        den = max(np.max(np.abs(b[r])), 1e-300)
        err = np.max(np.abs(a[r] - b[r])) / den
        assert err <= rtol, "%s: row %d differs by %.3e (relative) > %.1e" % (what, r, err, rtol)


def array_address(x):
    """Address of element [0, ...] of a numpy array."""
    return np.asarray(x).__array_interface__["data"][0]
