"""hla.jax -- HLA over JAX arrays through XLA FFI custom calls (docs/spec.md sections 5 and 9).

``hla.jax.forward(q, k, v, **options, initial_state=None, output_final_state=False, cu_seqlens=None)``
runs libhla's ``hla_forward`` inside an XLA computation (a typed FFI custom call on the CPU), so it
works eagerly and under ``jax.jit``; its gradient is a ``jax.custom_vjp`` whose backward rule is a
second custom call into libhla's ``hla_backward`` (``jax.grad``, ``jax.vjp``, ``jax.value_and_grad``);
``jax.vmap`` adds leading batch axes, which the custom calls fold into the batch of sequences (or loop
over, with ``cu_seqlens``). Differentiable in q, k, v and initial_state; the final state's cotangent
enters the backward (so segments chain). Second derivatives and forward-mode (``jax.jvp``) are not
provided.

What the custom_vjp's forward rule (used only when a gradient is taken) saves for the backward: q, k,
v, initial_state and cu_seqlens, and on the chunked path (the default) also the checkpoints
``[rows, n]`` (state dtype; ``rows`` from ``hla.checkpoint_rows``, known when the call is traced, may
be 0; ``[..., rows, n]`` under ``jax.vmap``): that forward is ``hla_forward_checkpoints`` (custom call
``hla_jax_forward_checkpoints``), and the backward ``hla_backward_checkpoints``
(``hla_jax_backward_checkpoints``) starts from them instead of recomputing the chunk carries (about one
forward less; the same gradients bit for bit). ``checkpoint_every`` (static, like chunk_size) sets the
chunks between them: None = automatic (about sqrt(chunks)), 1 = every chunk (the fastest backward, the
most rows); no output or gradient depends on it. The primal without differentiation (inference) is plain
``hla_forward`` and writes no checkpoints. The serial and scan paths save no checkpoints (their backward
is ``hla_backward``). (Under ``jax.jit(jax.grad(...))`` without the loss value, XLA used to drop the
unused forward; the checkpointed forward is kept, as the backward reads it, and the pair costs about
what ``hla_backward`` alone did. With the value -- ``value_and_grad``, training -- one forward is saved.)

Built only when JAX is installed: the handlers (``src/jax_ffi.cc``) compile against the XLA FFI
headers jaxlib ships (``jax.ffi.include_dir()``) into ``hla/_hla_jax_ffi.so`` -- by setup.py's
build_ext (``make python``, ``pip install``) when ``import jax`` works there, or by ``make jax-ffi``.
``import hla`` never imports JAX; ``import hla.jax`` raises ImportError without JAX or without the
built library (the message says how to build it). ``HLA_JAX_FFI_LIBRARY`` overrides the library path.

Element types: float32, float64 (``jax_enable_x64``), bfloat16 and float16; the state is float64 for
float64 inputs and float32 otherwise. Bad arguments raise ValueError / TypeError naming the argument
when the call is traced; what only the data can show (e.g. cu_seqlens values) raises the runtime
error of the custom call carrying libhla's message.
"""
try:
    import jax as _jax
    import jax.numpy as _jnp
except ImportError as _e:  # pragma: no cover - exercised without JAX
    raise ImportError("hla.jax needs JAX (pip install jax; CPU is enough): %s" % _e) from _e

import collections as _collections
import ctypes as _ctypes
import functools as _functools
import os as _os

import numpy as _np

from . import _hla, _state

__all__ = ["forward", "state_elements", "library_path"]

_LIBRARY_NAME = "_hla_jax_ffi.so"
_FORWARD_TARGET = "hla_jax_forward"
_BACKWARD_TARGET = "hla_jax_backward"
_FORWARD_CHECKPOINTS_TARGET = "hla_jax_forward_checkpoints"
_BACKWARD_CHECKPOINTS_TARGET = "hla_jax_backward_checkpoints"
_OPS = {"hla2": 0, "ahla": 1, "hla3": 2}
_PATHS = {"chunked": 0, "serial": 1, "scan": 2}
_FLOATS = ("float32", "float64", "bfloat16", "float16")


def library_path():
    """Where the FFI handler library is looked for ($HLA_JAX_FFI_LIBRARY, else beside this file)."""
    return _os.environ.get("HLA_JAX_FFI_LIBRARY") or _os.path.join(_os.path.dirname(
        _os.path.abspath(__file__)), _LIBRARY_NAME)


def _load():
    path = library_path()
    if not _os.path.exists(path):
        raise ImportError(
            "hla.jax: the XLA FFI handler library %s is not built. It is built when JAX is installed: "
            "`make jax-ffi` (or `make python`) in the libhla tree, or reinstall the package with JAX "
            "present (pip install --no-build-isolation ./bindings/python); set HLA_JAX_FFI_LIBRARY "
            "to use a library elsewhere" % path)
    try:
        lib = _ctypes.CDLL(path)
    except OSError as e:
        raise ImportError("hla.jax: cannot load %s (%s); rebuild it against this libhla with "
                          "`make jax-ffi`" % (path, e)) from e
    if lib.hla_jax_ffi_header_major() != _hla.VERSION_MAJOR:
        raise ImportError("hla.jax: %s was built for libhla %d.x, this package is %d.x; rebuild it "
                          "(`make jax-ffi`)" % (path, lib.hla_jax_ffi_header_major(), _hla.VERSION_MAJOR))
    return lib


_lib = _load()
# Registration is global to the process (registering a target again replaces it, e.g. on reload).
_jax.ffi.register_ffi_target(_FORWARD_TARGET, _jax.ffi.pycapsule(_lib.HlaJaxForward), platform="cpu")
_jax.ffi.register_ffi_target(_BACKWARD_TARGET, _jax.ffi.pycapsule(_lib.HlaJaxBackward), platform="cpu")
_jax.ffi.register_ffi_target(_FORWARD_CHECKPOINTS_TARGET, _jax.ffi.pycapsule(_lib.HlaJaxForwardCheckpoints),
                             platform="cpu")
_jax.ffi.register_ffi_target(_BACKWARD_CHECKPOINTS_TARGET,
                             _jax.ffi.pycapsule(_lib.HlaJaxBackwardCheckpoints), platform="cpu")

# The non-differentiable part of a call (hashable: the custom_vjp's static argument). n is the state
# row length, want_final whether the final state is returned, cfg the validated hla Config (for
# hla_checkpoint_rows), checkpoint_every the checkpointed calls' hla_config.checkpoint_every (0 = automatic).
_Static = _collections.namedtuple(
    "_Static", "op masked normalize scale decay ridge eps chunk_size path n want_final cfg "
               "checkpoint_every")


def _dtype_name(x):
    return _np.dtype(x.dtype).name


def _state_dtype(dtype):
    return _jnp.float64 if _np.dtype(dtype) == _np.float64 else _jnp.float32


def _as_array(x, name):
    if isinstance(x, (_jax.Array, _np.ndarray)) or hasattr(x, "shape") and hasattr(x, "dtype"):
        return _jnp.asarray(x)
    raise TypeError("%s must be an array (JAX or numpy), got %s" % (name, type(x).__name__))


def _config(q, k, v, op, masked, normalize, decay, ridge, eps, scale, chunk_size):
    """Checks shapes and types (ValueError / TypeError naming the argument) and returns the validated
    hla Config (libhla's own range checks of the options, through the extension)."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim != 4:
            raise ValueError("%s must be [B, T, heads, features] (rank 4), got shape %s"
                             % (name, tuple(x.shape)))
        if _dtype_name(x) not in _FLOATS:
            raise TypeError("%s must be float32, float64, bfloat16 or float16, got %s"
                            % (name, _dtype_name(x)))
    if not (_dtype_name(q) == _dtype_name(k) == _dtype_name(v)):
        raise TypeError("q, k and v must share one dtype, got %s, %s, %s"
                        % (_dtype_name(q), _dtype_name(k), _dtype_name(v)))
    B, T, H, dk = q.shape
    if tuple(k.shape[:2]) != (B, T) or k.shape[3] != dk:
        raise ValueError("k must be [B, T, Hkv, dk] = [%d, %d, *, %d] like q, got %s"
                         % (B, T, dk, tuple(k.shape)))
    if tuple(v.shape[:3]) != tuple(k.shape[:3]):
        raise ValueError("v must be [B, T, Hkv, dv] = [%d, %d, %d, *] like k, got %s"
                         % (B, T, k.shape[2], tuple(v.shape)))
    Hkv, dv = k.shape[2], v.shape[3]
    if min(B, T, H, Hkv, dk, dv) < 1:
        raise ValueError("q, k, v must have no empty axis, got q %s, k %s, v %s"
                         % (tuple(q.shape), tuple(k.shape), tuple(v.shape)))
    if H % Hkv:
        raise ValueError("heads of q (%d) must be a multiple of the kv heads of k, v (%d)" % (H, Hkv))
    if chunk_size is not None and (isinstance(chunk_size, bool)
                                   or not isinstance(chunk_size, (int, _np.integer))):
        raise TypeError("chunk_size must be an int or None, got %s" % type(chunk_size).__name__)
    cfg = _state.make_config(op, masked, normalize, heads=H, kv_heads=Hkv, dk=dk, dv=dv, scale=scale,
                             decay=decay, ridge=ridge, eps=eps, chunk_size=chunk_size)
    return _state.canonical(cfg)


def state_elements(op="hla2", *, heads, dk, dv, kv_heads=None, masked=True, normalize=False, ridge=0.0):
    """Numbers n of one sequence's state (as hla.state_elements)."""
    return _hla.state_elements(_state.make_config(op, masked, normalize, heads, kv_heads, dk, dv,
                                                  ridge=ridge))


def _attrs(s):
    return dict(op=_np.int64(_OPS[s.op]), masked=_np.bool_(s.masked), normalize=_np.bool_(s.normalize),
                scale=_np.float64(s.scale), decay=_np.float64(s.decay), ridge=_np.float64(s.ridge),
                eps=_np.float64(s.eps), chunk_size=_np.int64(s.chunk_size), path=_np.int64(_PATHS[s.path]))


def _placeholder(dtype):
    return _jnp.zeros((0,), dtype)


def _sequences(q, cu):
    return q.shape[0] if cu is None else cu.shape[0] - 1


def _checkpoint_rows(s, q, cu):
    """Rows of the checkpoints of one call (hla_checkpoint_rows; shapes are static under tracing):
    B sequences of T tokens, or the N packed sequences of cu_seqlens. Under jax.vmap q and cu are one
    batch element's, and the custom calls' checkpoints are [..., rows, n]."""
    B, T = q.shape[0], q.shape[1]
    return _hla.checkpoint_rows(s.cfg, B, T, 0 if cu is None else _sequences(q, cu),
                                s.checkpoint_every)[0]


def _forward_call(s, q, k, v, initial, cu, checkpoints=False):
    """(o, final) through hla_forward, or (o, final, checkpoints [rows, n]) through
    hla_forward_checkpoints when checkpoints is true (chunked path)."""
    B, T, H, _ = q.shape
    sdt = _state_dtype(q.dtype)
    N = _sequences(q, cu)
    result = (_jax.ShapeDtypeStruct((B, T, H, v.shape[3]), q.dtype),
              _jax.ShapeDtypeStruct((N, s.n) if s.want_final else (0,), sdt))
    target, attrs = _FORWARD_TARGET, _attrs(s)
    if checkpoints:
        result += (_jax.ShapeDtypeStruct((_checkpoint_rows(s, q, cu), s.n), sdt),)
        target = _FORWARD_CHECKPOINTS_TARGET
        attrs["checkpoint_every"] = _np.int64(s.checkpoint_every)
    call = _jax.ffi.ffi_call(target, result, vmap_method="broadcast_all")
    out = call(q, k, v,
               _placeholder(sdt) if initial is None else initial,
               _placeholder(_jnp.int32) if cu is None else cu,
               has_initial=_np.bool_(initial is not None), has_cu=_np.bool_(cu is not None),
               want_final=_np.bool_(s.want_final), **attrs)
    o, final = out[0], (out[1] if s.want_final else None)
    return (o, final, out[2]) if checkpoints else (o, final)


def _backward_call(s, q, k, v, do, initial, cu, d_final, checkpoints=None):
    """Gradients through hla_backward, or hla_backward_checkpoints from the checkpoints of
    _forward_call(..., checkpoints=True) when they are given."""
    sdt = _state_dtype(q.dtype)
    N = _sequences(q, cu)
    result = (_jax.ShapeDtypeStruct(q.shape, q.dtype), _jax.ShapeDtypeStruct(k.shape, q.dtype),
              _jax.ShapeDtypeStruct(v.shape, q.dtype),
              _jax.ShapeDtypeStruct((N, s.n) if initial is not None else (0,), sdt))
    operands = (q, k, v, do.astype(q.dtype),
                _placeholder(sdt) if initial is None else initial,
                _placeholder(_jnp.int32) if cu is None else cu,
                _placeholder(sdt) if d_final is None else d_final.astype(sdt))
    target, attrs = _BACKWARD_TARGET, _attrs(s)
    if checkpoints is not None:
        operands += (checkpoints,)
        target = _BACKWARD_CHECKPOINTS_TARGET
        attrs["checkpoint_every"] = _np.int64(s.checkpoint_every)
    call = _jax.ffi.ffi_call(target, result, vmap_method="broadcast_all")
    dq, dk, dv, d_initial = call(*operands, has_initial=_np.bool_(initial is not None),
                                 has_cu=_np.bool_(cu is not None),
                                 has_d_final=_np.bool_(d_final is not None), **attrs)
    return dq, dk, dv, (d_initial if initial is not None else None)


@_functools.partial(_jax.custom_vjp, nondiff_argnums=(0,))
def _op(s, q, k, v, initial, cu):
    # The primal without differentiation: plain hla_forward (no checkpoints).
    return _forward_call(s, q, k, v, initial, cu)


def _op_fwd(s, q, k, v, initial, cu):
    # Under differentiation: on the chunked path the forward also writes the checkpoints, which the
    # backward starts from (hla_forward_checkpoints / hla_backward_checkpoints).
    if s.path == "chunked":
        o, final, checkpoints = _forward_call(s, q, k, v, initial, cu, checkpoints=True)
    else:
        (o, final), checkpoints = _forward_call(s, q, k, v, initial, cu), None
    return (o, final), (q, k, v, initial, cu, checkpoints)


def _op_bwd(s, residuals, cotangents):
    q, k, v, initial, cu, checkpoints = residuals
    do, d_final = cotangents
    dq, dk, dv, d_initial = _backward_call(s, q, k, v, do, initial, cu, d_final if s.want_final else None,
                                           checkpoints)
    return dq, dk, dv, d_initial, None


_op.defvjp(_op_fwd, _op_bwd)


def forward(q, k, v, *, op="hla2", masked=True, normalize=False, decay=1.0, ridge=0.0, eps=1e-6,
            scale=1.0, initial_state=None, output_final_state=False, cu_seqlens=None, chunk_size=None,
            path="chunked", checkpoint_every=None):
    """The operator over whole sequences, as :func:`hla.forward`, on JAX arrays (an XLA custom call).

    q ``[B, T, H, Dk]``, k ``[B, T, Hkv, Dk]``, v ``[B, T, Hkv, Dv]`` of one dtype (float32, float64,
    bfloat16, float16); initial_state an array ``[N, n]`` of the state dtype (float64 for float64
    inputs, float32 otherwise; ``n = hla.state_elements(...)``) or a :class:`hla.State`; cu_seqlens an
    int32/int64 array ``[N+1]`` of offsets (then B must be 1). Returns ``(o, final)``: o
    ``[B, T, H, Dv]`` of q's dtype, final ``[N, n]`` (state dtype) when ``output_final_state``, else
    None. Differentiable in q, k, v and initial_state (``jax.grad``); works under ``jax.jit`` and
    ``jax.vmap``. ``checkpoint_every`` (int or None, static): chunks between the checkpoints the chunked
    forward keeps for the gradient (None or 0 = automatic, 1 = every chunk), as for :func:`hla.backward`;
    results and gradients do not depend on it.
    """
    return _op(*_prepare(q, k, v, op=op, masked=masked, normalize=normalize, decay=decay, ridge=ridge,
                         eps=eps, scale=scale, initial_state=initial_state,
                         output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                         chunk_size=chunk_size, path=path, checkpoint_every=checkpoint_every))


def _prepare(q, k, v, *, op, masked, normalize, decay, ridge, eps, scale, initial_state,
             output_final_state, cu_seqlens, chunk_size, path, checkpoint_every=None):
    """forward's checks: the arguments of _op, (s, q, k, v, initial, cu)."""
    q, k, v = _as_array(q, "q"), _as_array(k, "k"), _as_array(v, "v")
    cfg = _config(q, k, v, op, masked, normalize, decay, ridge, eps, scale, chunk_size)
    if not isinstance(path, str) or path not in _PATHS:
        raise ValueError("path must be 'chunked', 'serial' or 'scan', got %r" % (path,))
    # checkpoint_every: the extension's type check and libhla's range check (TypeError / ValueError, as
    # hla.forward's), on any path
    _hla.checkpoint_rows(cfg, 1, 1, 0, checkpoint_every)
    n = _hla.state_elements(cfg._replace(chunk_size=0))
    cu = None
    if cu_seqlens is not None:
        cu = _as_array(cu_seqlens, "cu_seqlens")
        if _dtype_name(cu) not in ("int32", "int64"):
            raise TypeError("cu_seqlens must be int32 or int64, got %s" % _dtype_name(cu))
        if cu.ndim != 1 or cu.shape[0] < 2:
            raise ValueError("cu_seqlens must be [N+1] with N >= 1, got shape %s" % (tuple(cu.shape),))
        if q.shape[0] != 1:
            raise ValueError("with cu_seqlens, B must be 1 (packed sequences), got q shape %s"
                             % (tuple(q.shape),))
        if not isinstance(cu, _jax.core.Tracer):
            # Concrete offsets are checked here (ValueError); traced ones by libhla when the call runs.
            c = _np.asarray(cu)
            if c[0] != 0 or c[-1] != q.shape[1] or _np.any(c[1:] <= c[:-1]):
                raise ValueError("cu_seqlens must be strictly increasing offsets from 0 to T = %d, got %s"
                                 % (q.shape[1], c.tolist()))
    N = _sequences(q, cu)
    initial = None
    if initial_state is not None:
        if isinstance(initial_state, (_state.State, _state.Segment)):
            _state.check_same(initial_state._cfg, cfg, "initial_state")
            if isinstance(initial_state, _state.Segment):
                initial_state = _state.segment_to_state_array(initial_state)
            else:
                initial_state = initial_state.array
        initial = _as_array(initial_state, "initial_state")
        want = _np.dtype(_state_dtype(q.dtype)).name
        if _dtype_name(initial) != want:
            raise TypeError("initial_state must be %s (the state dtype for %s inputs), got %s"
                            % (want, _dtype_name(q), _dtype_name(initial)))
        if tuple(initial.shape) != (N, n):
            raise ValueError("initial_state must be [N, n] = [%d, %d], got shape %s"
                             % (N, n, tuple(initial.shape)))
    s = _Static(cfg.op, bool(cfg.masked), bool(cfg.normalize), float(cfg.scale), float(cfg.decay),
                float(cfg.ridge), float(cfg.eps), int(cfg.chunk_size or 0), path, int(n),
                bool(output_final_state), cfg, int(checkpoint_every or 0))
    return s, q, k, v, initial, cu
