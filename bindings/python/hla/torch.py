"""hla.torch: HLA for PyTorch training -- differentiable registered custom ops and an attention layer.

``import hla`` never imports torch; ``import hla.torch`` needs PyTorch >= 2.4 (``torch.library.custom_op``)
and raises ImportError without it.

Operators (``torch.ops.hla.*``, CPU tensors):

* ``hla::forward(q, k, v, initial_state?, cu_seqlens?, op, masked, normalize, decay, ridge, eps, scale,
  chunk_size, path, checkpoint_every=0) -> (o, final)``: ``o`` [B, T, H, Dv] of q's dtype, ``final`` [N, n]
  of the state dtype (float64 for float64 inputs, else float32; n = :func:`hla.state_elements`).
  ``chunk_size`` 0 means automatic; so does ``checkpoint_every``: chunks between the checkpoints of
  ``hla::forward_train`` and between the carries the chunked ``hla::backward`` keeps (1 = every chunk: the
  fastest backward, the most checkpoint memory; no output or gradient depends on it). The CPU kernel is
  :func:`hla.forward` (libhla's ``hla_forward``; tensors through DLPack, no copy).
* ``hla::forward_train(<same arguments>) -> (o, final, checkpoints)``: ``hla::forward`` on the chunked
  path that also returns the checkpoints of :func:`hla.new_checkpoints` ([rows, n], rows data-dependent
  for the fake kernel; ``checkpoint_every`` chunks apart) for the backward (libhla's
  ``hla_forward_checkpoints``, docs/gradients.md section 11); :func:`forward` calls it when a gradient
  will be taken through the chunked path.
* ``hla::backward(q, k, v, do, initial_state?, d_final?, cu_seqlens?, <same options but checkpoint_every>,
  checkpoints?=None, checkpoint_every=0) -> (dq, dk, dv, d_initial)``: :func:`hla.backward` (libhla's ``hla_backward``, docs/gradients.md);
  given ``hla::forward_train``'s checkpoints (of the same ``checkpoint_every``) it starts from them
  (``hla_backward_checkpoints``: the same gradients, about one forward less work). ``d_initial`` is
  [N, n] (zeros when no initial state was given). Not itself differentiable (no double backward).

All have fake (meta) implementations, so ``torch.compile(fullgraph=True)``, ``torch.export`` and
``torch.library.opcheck`` trace them; ``hla::forward`` and ``hla::forward_train`` have registered autograd
formulas that call ``hla::backward`` (q, k, v and initial_state are differentiable; the cotangent of the
final state enters as d_final). The cotangent of the symmetric state blocks (S, S^Q) is reported symmetrised (docs/gradients.md
section 7): the operator only reads their symmetric part.

Python API:

* :func:`forward` -- ``hla.forward``'s signature over torch tensors, returning ``(o, final or None)``.
* :class:`HLA` -- an attention layer (projections, heads, the operator, output projection) used like
  flash-linear-attention's layers: ``y, final = layer(x, state=None, output_final_state=False,
  cu_seqlens=None)``.
"""
from typing import Optional, Tuple

try:
    import torch
    from torch import nn
except ImportError as _e:  # pragma: no cover - exercised by a subprocess test
    raise ImportError("hla.torch needs PyTorch (>= 2.4, e.g. `pip install torch`); the rest of the hla "
                      "package works without it (%s)" % _e) from _e

if not hasattr(torch, "library") or not hasattr(torch.library, "custom_op"):  # pragma: no cover
    raise ImportError("hla.torch needs PyTorch >= 2.4 (torch.library.custom_op); found torch %s"
                      % torch.__version__)

import hla as _hla_pkg  # noqa: E402

__all__ = ["forward", "HLA", "state_dtype"]

_Tensor = torch.Tensor
_FLOATS = (torch.float64, torch.float32, torch.bfloat16, torch.float16)
_OPS = ("hla2", "ahla", "hla3")


def state_dtype(dtype):
    """The state dtype for inputs of `dtype`: float64 for float64, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _state_elements(op, masked, normalize, ridge, H, Hkv, dk, dv):
    # int(): under dynamic shapes the head counts and feature sizes are specialised (a state's size is
    # a property of the configuration; only B, T and N stay symbolic).
    return _hla_pkg.state_elements(op, heads=int(H), dk=int(dk), dv=int(dv), kv_heads=int(Hkv),
                                   masked=masked, normalize=normalize, ridge=ridge)


def _check(q, k, v, initial_state, cu_seqlens, op, masked, normalize, ridge):
    """Shape/dtype checks made while tracing (the fake kernels); the CPU kernels are checked by libhla
    (same conditions, ValueError/TypeError naming the argument). Returns (N, n)."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.dim() != 4:
            raise ValueError("%s must be 4-D [B, T, heads, features], got shape %s" % (name, tuple(x.shape)))
        if x.dtype not in _FLOATS:
            raise TypeError("%s has dtype %s; hla takes float64, float32, bfloat16 or float16" % (name, x.dtype))
    if not (k.dtype == q.dtype and v.dtype == q.dtype):
        raise TypeError("q, k and v must share one dtype, got %s, %s, %s" % (q.dtype, k.dtype, v.dtype))
    B, T, H, dk = q.shape
    Hkv, dv = k.shape[2], v.shape[3]
    if tuple(k.shape) != (B, T, Hkv, dk):
        raise ValueError("k must be [B, T, Hkv, Dk] = [%s, %s, Hkv, %s], got %s" % (B, T, dk, tuple(k.shape)))
    if tuple(v.shape[:3]) != (B, T, Hkv):
        raise ValueError("v must be [B, T, Hkv, Dv] with k's B, T, Hkv, got %s" % (tuple(v.shape),))
    if H % Hkv != 0:
        raise ValueError("heads of q (%s) must be a multiple of k's heads (%s)" % (H, Hkv))
    if cu_seqlens is None:
        N = B
    else:
        if cu_seqlens.dim() != 1 or cu_seqlens.dtype not in (torch.int64, torch.int32):
            raise ValueError("cu_seqlens must be a 1-D int64/int32 tensor of N+1 offsets")
        if B != 1:
            raise ValueError("cu_seqlens needs B = 1, got B = %s" % (B,))
        N = cu_seqlens.shape[0] - 1
    n = _state_elements(op, masked, normalize, ridge, H, Hkv, dk, dv)
    if initial_state is not None:
        if initial_state.dim() != 2 or initial_state.shape[1] != n or initial_state.shape[0] != N:
            raise ValueError("initial_state must be [N, n] = [%s, %s], got %s" % (N, n, tuple(initial_state.shape)))
        if initial_state.dtype != state_dtype(q.dtype):
            raise TypeError("initial_state must have the state dtype %s, got %s"
                            % (state_dtype(q.dtype), initial_state.dtype))
    return N, n


def _check_every(checkpoint_every):
    """checkpoint_every's range check made while tracing (the CPU kernels: libhla's, the same error)."""
    if checkpoint_every < 0:
        raise ValueError("checkpoint_every = %s must be >= 0 (0 = automatic)" % (checkpoint_every,))


def _options(op, masked, normalize, decay, ridge, eps, scale, chunk_size, path, checkpoint_every):
    return dict(op=op, masked=masked, normalize=normalize, decay=decay, ridge=ridge, eps=eps, scale=scale,
                chunk_size=(chunk_size or None), path=path, checkpoint_every=checkpoint_every)


# ------------------------------------------------------------------------------------------------
# The operators
# ------------------------------------------------------------------------------------------------
@torch.library.custom_op("hla::forward", mutates_args=(), device_types="cpu")
def _forward_op(q: _Tensor, k: _Tensor, v: _Tensor, initial_state: Optional[_Tensor],
                cu_seqlens: Optional[_Tensor], op: str, masked: bool, normalize: bool, decay: float,
                ridge: float, eps: float, scale: float, chunk_size: int, path: str,
                checkpoint_every: int = 0) -> Tuple[_Tensor, _Tensor]:
    o, final = _hla_pkg.forward(q, k, v, initial_state=initial_state, output_final_state=True,
                                cu_seqlens=cu_seqlens, **_options(op, masked, normalize, decay, ridge, eps,
                                                                  scale, chunk_size, path, checkpoint_every))
    return o, torch.from_numpy(final.array)


@_forward_op.register_fake
def _forward_fake(q, k, v, initial_state, cu_seqlens, op, masked, normalize, decay, ridge, eps, scale,
                  chunk_size, path, checkpoint_every=0):
    N, n = _check(q, k, v, initial_state, cu_seqlens, op, masked, normalize, ridge)
    _check_every(checkpoint_every)
    B, T, H, _ = q.shape
    return q.new_empty((B, T, H, v.shape[3])), q.new_empty((N, n), dtype=state_dtype(q.dtype))


@torch.library.custom_op("hla::forward_train", mutates_args=(), device_types="cpu")
def _forward_train_op(q: _Tensor, k: _Tensor, v: _Tensor, initial_state: Optional[_Tensor],
                      cu_seqlens: Optional[_Tensor], op: str, masked: bool, normalize: bool, decay: float,
                      ridge: float, eps: float, scale: float, chunk_size: int, path: str,
                      checkpoint_every: int = 0) -> Tuple[_Tensor, _Tensor, _Tensor]:
    opts = _options(op, masked, normalize, decay, ridge, eps, scale, chunk_size, path, checkpoint_every)
    if path != "chunked":
        raise ValueError("hla::forward_train runs the chunked path only, got path=%r" % (path,))
    opts.pop("path")
    ck = _hla_pkg.new_checkpoints(q, k, v, cu_seqlens=cu_seqlens, **opts)
    o, final = _hla_pkg.forward(q, k, v, initial_state=initial_state, output_final_state=True,
                                cu_seqlens=cu_seqlens, checkpoints=ck, **opts)
    return o, torch.from_numpy(final.array), torch.from_numpy(ck)


@_forward_train_op.register_fake
def _forward_train_fake(*args):
    o, final = _forward_fake(*args)
    rows = torch.library.get_ctx().new_dynamic_size()    # a function of T (and of checkpoint_every)
    return o, final, final.new_empty((rows, final.shape[1]))


@torch.library.custom_op("hla::backward", mutates_args=(), device_types="cpu")
def _backward_op(q: _Tensor, k: _Tensor, v: _Tensor, do: _Tensor, initial_state: Optional[_Tensor],
                 d_final: Optional[_Tensor], cu_seqlens: Optional[_Tensor], op: str, masked: bool,
                 normalize: bool, decay: float, ridge: float, eps: float, scale: float, chunk_size: int,
                 path: str, checkpoints: Optional[_Tensor] = None,
                 checkpoint_every: int = 0) -> Tuple[_Tensor, _Tensor, _Tensor, _Tensor]:
    if not hasattr(_hla_pkg._hla, "backward"):
        raise NotImplementedError("hla::backward: this build of the hla extension has no hla_backward "
                                  "(libhla %s); rebuild it" % _hla_pkg.library_version())
    g = _hla_pkg.backward(q, k, v, do, initial_state=initial_state, d_final_state=d_final,
                          cu_seqlens=cu_seqlens, checkpoints=checkpoints,
                          **_options(op, masked, normalize, decay, ridge, eps, scale, chunk_size, path,
                                     checkpoint_every))
    if g.d_initial_state is not None:
        d_initial = torch.from_numpy(g.d_initial_state)
    else:
        N = q.shape[0] if cu_seqlens is None else cu_seqlens.shape[0] - 1
        n = _state_elements(op, masked, normalize, ridge, q.shape[2], k.shape[2], q.shape[3], v.shape[3])
        d_initial = torch.zeros((N, n), dtype=state_dtype(q.dtype))
    return g.dq, g.dk, g.dv, d_initial


@_backward_op.register_fake
def _backward_fake(q, k, v, do, initial_state, d_final, cu_seqlens, op, masked, normalize, decay, ridge,
                   eps, scale, chunk_size, path, checkpoints=None, checkpoint_every=0):
    N, n = _check(q, k, v, initial_state, cu_seqlens, op, masked, normalize, ridge)
    _check_every(checkpoint_every)
    if tuple(do.shape) != (q.shape[0], q.shape[1], q.shape[2], v.shape[3]) or do.dtype != q.dtype:
        raise ValueError("do must be [B, T, H, Dv] of q's dtype, got %s %s" % (tuple(do.shape), do.dtype))
    return (q.new_empty(q.shape), q.new_empty(k.shape), q.new_empty(v.shape),
            q.new_empty((N, n), dtype=state_dtype(q.dtype)))


def _setup_context(ctx, inputs, output):
    q, k, v, initial_state, cu_seqlens = inputs[:5]
    ctx.options = inputs[5:]
    checkpoints = output[2] if len(output) > 2 else None      # hla::forward_train's
    if checkpoints is not None:
        ctx.mark_non_differentiable(checkpoints)
    ctx.save_for_backward(q, k, v, initial_state, cu_seqlens, checkpoints)


def _forward_backward(ctx, do, d_final, d_checkpoints=None):
    q, k, v, initial_state, cu_seqlens, checkpoints = ctx.saved_tensors
    if do is None:
        do = q.new_zeros((q.shape[0], q.shape[1], q.shape[2], v.shape[3]))
    if d_final is not None:
        d_final = d_final.contiguous()      # libhla needs each state row contiguous (not e.g. expanded)
    *options, every = ctx.options       # hla::backward takes checkpoint_every last (its 1.1 schema ended in checkpoints)
    dq, dk, dv, d_initial = torch.ops.hla.backward(q, k, v, do, initial_state, d_final, cu_seqlens,
                                                   *options, checkpoints, every)
    return (dq, dk, dv, d_initial if initial_state is not None else None, None) + (None,) * len(ctx.options)


_forward_op.register_autograd(_forward_backward, setup_context=_setup_context)
_forward_train_op.register_autograd(_forward_backward, setup_context=_setup_context)


# ------------------------------------------------------------------------------------------------
# Python API
# ------------------------------------------------------------------------------------------------
def forward(q, k, v, *, op="hla2", masked=True, normalize=False, decay=1.0, ridge=0.0, eps=1e-6,
            scale=1.0, initial_state=None, output_final_state=False, cu_seqlens=None, chunk_size=None,
            path="chunked", checkpoint_every=None):
    """:func:`hla.forward` over torch tensors, differentiable in q, k, v and initial_state.

    q [B,T,H,Dk], k [B,T,Hkv,Dk], v [B,T,Hkv,Dv] (CPU, one dtype of float64/float32/bfloat16/float16,
    any strides). initial_state: None, a tensor [N, n] of the state dtype (float64 for float64 inputs,
    else float32; N = B, or len(cu_seqlens) - 1), or a :class:`hla.State` (viewed, not differentiable).
    cu_seqlens: None or N+1 int offsets (tensor, list or tuple; B must be 1). chunk_size None or 0 =
    automatic. checkpoint_every: chunks between the checkpoints the forward keeps for the backward and
    between the carries that backward keeps (int or None; None or 0 = automatic, about sqrt(chunks);
    1 = every chunk: the fastest backward, the most checkpoint memory), as for :func:`hla.backward`; outputs and
    gradients do not depend on it. Returns ``(o, final)``: o [B,T,H,Dv] of q's dtype; final the state
    tensor [N, n] after the last token when ``output_final_state``, else None. Gradients of o and of
    final flow back to q, k, v and initial_state (dq, dk, dv in the inputs' dtype; the state cotangent
    in the state dtype).
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise TypeError("hla.torch.forward: %s must be a torch.Tensor, got %s" % (name, type(x).__name__))
    if isinstance(initial_state, _hla_pkg.State):
        initial_state = torch.from_numpy(initial_state.array)
    elif initial_state is not None and not isinstance(initial_state, torch.Tensor):
        raise TypeError("initial_state must be a torch.Tensor [N, n], a hla.State or None, got %s"
                        % type(initial_state).__name__)
    if cu_seqlens is not None and not isinstance(cu_seqlens, torch.Tensor):
        cu_seqlens = torch.tensor(list(cu_seqlens), dtype=torch.int64)
    if op not in _OPS:
        raise ValueError("op must be one of %s, got %r" % (", ".join(_OPS), op))
    if chunk_size is None:
        chunk_size = 0
    if checkpoint_every is None:
        checkpoint_every = 0
    elif isinstance(checkpoint_every, bool) or not hasattr(checkpoint_every, "__index__"):
        raise TypeError("checkpoint_every must be an int or None, got %s" % type(checkpoint_every).__name__)
    args = (q, k, v, initial_state, cu_seqlens, op, bool(masked), bool(normalize), float(decay), float(ridge),
            float(eps), float(scale), int(chunk_size), str(path), int(checkpoint_every))
    if path == "chunked" and torch.is_grad_enabled() and any(
            x is not None and x.requires_grad for x in (q, k, v, initial_state)):
        # a gradient will be taken: keep the forward's checkpoints for the backward
        o, final, _ = torch.ops.hla.forward_train(*args)
    else:
        o, final = torch.ops.hla.forward(*args)
    return o, (final if output_final_state else None)


class HLA(nn.Module):
    """Higher-order linear attention layer: ``x [B, T, hidden] -> y [B, T, hidden]``.

    y = o_proj(norm(hla(phi(q_proj x), phi(k_proj x), v_proj x))), heads split after the projections:

    * q: ``num_heads`` heads of ``head_dim``; k: ``num_kv_heads`` heads of ``head_dim``; v: ``num_kv_heads``
      heads of ``value_dim`` (grouped heads when num_kv_heads < num_heads).
    * ``feature_map`` phi on q and k: None (identity), ``"elu"`` (elu + 1, positive) or ``"relu"``; then,
      with ``qk_norm`` (default True), q and k are L2-normalised over the head dimension (the operators
      are polynomial in q·k: unit features keep their magnitude independent of the projections' scale).
    * the operator (``op``, ``masked``, ``normalize``, ``decay``, ``ridge``, ``eps``, ``scale`` (default
      head_dim ** -0.5), ``chunk_size``, ``path``, ``checkpoint_every``) through :func:`forward`;
    * ``output_norm`` (default True): an RMSNorm over each head's value_dim features (learned weight);
    * o_proj: ``num_heads * value_dim -> hidden_size``.

    ``forward(x, state=None, output_final_state=False, cu_seqlens=None) -> (y, final)``: ``state`` [N, n]
    (float32 state, float64 for a float64 layer) continues earlier tokens, so a prefill followed by steps
    of T = 1 gives the outputs of one call over the whole sequence; ``final`` is the state after the last
    token (None unless asked). ``cu_seqlens`` packs N sequences into B = 1 (fla's convention).
    ``state_size`` is n; ``init_state(batch)`` a zero state.
    """

    def __init__(self, hidden_size, num_heads, *, num_kv_heads=None, head_dim=None, value_dim=None,
                 op="hla2", masked=True, normalize=False, decay=1.0, ridge=0.0, eps=1e-6, scale=None,
                 feature_map=None, qk_norm=True, output_norm=True, bias=False, chunk_size=None,
                 path="chunked", checkpoint_every=None, device=None, dtype=None):
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        head_dim = hidden_size // num_heads if head_dim is None else head_dim
        value_dim = head_dim if value_dim is None else value_dim
        if num_heads % num_kv_heads != 0:
            raise ValueError("num_heads (%d) must be a multiple of num_kv_heads (%d)" % (num_heads, num_kv_heads))
        if feature_map not in (None, "elu", "relu"):
            raise ValueError("feature_map must be None, 'elu' or 'relu', got %r" % (feature_map,))
        self.hidden_size, self.num_heads, self.num_kv_heads = hidden_size, num_heads, num_kv_heads
        self.head_dim, self.value_dim = head_dim, value_dim
        self.feature_map, self.qk_norm = feature_map, qk_norm
        self.options = dict(op=op, masked=masked, normalize=normalize, decay=decay, ridge=ridge, eps=eps,
                            scale=head_dim ** -0.5 if scale is None else scale, chunk_size=chunk_size,
                            path=path, checkpoint_every=checkpoint_every)
        self.state_size = _hla_pkg.state_elements(op, heads=num_heads, dk=head_dim, dv=value_dim,
                                                  kv_heads=num_kv_heads, masked=masked, normalize=normalize,
                                                  ridge=ridge)          # also validates op/ridge
        kw = dict(device=device, dtype=dtype)
        self.q_proj = nn.Linear(hidden_size, num_heads * head_dim, bias=bias, **kw)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=bias, **kw)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * value_dim, bias=bias, **kw)
        self.o_norm = nn.RMSNorm(value_dim, eps=1e-5, **kw) if output_norm else None
        self.o_proj = nn.Linear(num_heads * value_dim, hidden_size, bias=bias, **kw)

    def extra_repr(self):
        return "hidden_size=%d, num_heads=%d, num_kv_heads=%d, head_dim=%d, value_dim=%d, feature_map=%s, " \
               "qk_norm=%s, %s" % (self.hidden_size, self.num_heads, self.num_kv_heads, self.head_dim,
                                   self.value_dim, self.feature_map, self.qk_norm,
                                   ", ".join("%s=%r" % kv for kv in self.options.items()))

    def init_state(self, batch):
        """A zero state [batch, state_size] in the layer's state dtype."""
        return torch.zeros((batch, self.state_size), dtype=state_dtype(self.q_proj.weight.dtype),
                           device=self.q_proj.weight.device)

    def _phi(self, x):
        if self.feature_map == "elu":
            x = torch.nn.functional.elu(x) + 1.0
        elif self.feature_map == "relu":
            x = torch.relu(x)
        if self.qk_norm:
            x = torch.nn.functional.normalize(x, p=2.0, dim=-1, eps=1e-6)
        return x

    def forward(self, x, state=None, output_final_state=False, cu_seqlens=None):
        B, T, _ = x.shape
        q = self._phi(self.q_proj(x).view(B, T, self.num_heads, self.head_dim))
        k = self._phi(self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim))
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.value_dim)
        o, final = forward(q, k, v, initial_state=state, output_final_state=output_final_state,
                           cu_seqlens=cu_seqlens, **self.options)
        if self.o_norm is not None:
            o = self.o_norm(o)
        y = self.o_proj(o.reshape(B, T, self.num_heads * self.value_dim))
        return y, final
