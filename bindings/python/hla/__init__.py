"""Higher-order Linear Attention (HLA) -- Python bindings of libhla (interface 1.0).

Tensors use the layout ``[B, T, H, D]`` (batch, time, head, feature): ``q`` is ``[B, T, H, Dk]``,
``k`` is ``[B, T, Hkv, Dk]`` and ``v`` is ``[B, T, Hkv, Dv]`` with ``H % Hkv == 0`` (query head
``h`` reads key/value head ``h // (H // Hkv)``).

Arrays in: numpy arrays of any strides (ml_dtypes bfloat16 arrays included) or any CPU array with
``__dlpack__`` (torch, JAX, ...). q, k and v share one dtype: float64, float32, bfloat16 or float16.
Arrays out are of the kind of ``q``: numpy in -> numpy out, torch in -> torch out (allocated by torch,
written in place through DLPack), JAX in -> JAX out (computed into numpy memory, handed to JAX through
DLPack when it can alias it). torch, JAX and ml_dtypes are optional.

States and summaries are rows of plain numbers: a :class:`State` is a ``[rows, n]`` array of prefix
statistics (``n = state_elements(...)``), a :class:`Segment` a ``[N, m]`` array of segment summaries
plus their lengths. Their dtype is float64 for float64 inputs and float32 otherwise. ``State.array``
is a numpy view of that memory; ``State.wrap`` puts a State over caller memory (numpy, torch, DLPack)
without a copy. States made by this package (``State(...)``, ``final`` of :func:`forward`,
``from_bytes``, ``copy``) are numpy memory whatever the inputs' kind; ``torch.from_numpy(st.array)``
views one from torch without a copy.

Operators (``op``): ``"hla2"`` second-order HLA (A Aᵀ V, optional ``ridge``), ``"ahla"`` asymmetric
second order (A A V) and ``"hla3"`` third order (A Aᵀ A V). Options shared by all entry points:

* ``masked`` (True): strictly causal operator; False keeps every index tuple <= t.
* ``normalize`` (False): divide by the same sum with every value replaced by 1, plus ``eps``.
* ``decay`` (1.0): gamma in (0, 1].
* ``ridge`` (0.0): lambda >= 0, hla2 only.
* ``eps`` (1e-6): > 0, used when normalizing.
* ``scale`` (1.0): multiplies every query first (``dk ** -0.5`` is the usual choice).

Compute runs with the GIL released. Invalid arguments raise ``ValueError`` or ``TypeError`` whose
message (libhla's ``hla_last_error()`` for what the library detects) names the argument; such
exceptions carry ``hla_status`` (e.g. ``"HLA_ERR_MISMATCH"``). Failed allocations raise
``MemoryError``.

libhla's release build targets x86-64 with AVX2 and FMA: on a CPU without them ``import hla`` raises
ImportError before it loads the library (``hla._cpu``; ``HLA_SKIP_CPU_CHECK=1`` skips the check).
"""
from . import _cpu

_cpu.check()

import collections as _collections  # noqa: E402

from . import _arrays, _hla, _state  # noqa: E402
from ._state import Segment, State, combine, state_from_segment  # noqa: E402

__all__ = ["forward", "backward", "Gradients", "new_checkpoints", "checkpoint_rows", "reference", "summarize", "combine", "state_elements",
           "summary_elements", "State", "Segment", "state_from_segment", "output_pool", "__version__", "library_version"]

# The version of the header the extension was built with (HLA_VERSION_* macros of hla.h, the single
# source of truth); the extension refuses to load a library of another major version.
__version__ = "%d.%d.%d" % (_hla.VERSION_MAJOR, _hla.VERSION_MINOR, _hla.VERSION_PATCH)


def library_version():
    """Version string of the loaded libhla shared library."""
    return _hla.version()


OutputPool = _collections.namedtuple("OutputPool", "limit held buffers")


def output_pool(limit=None):
    """The pool of large numpy outputs' memory: returns ``OutputPool(limit, held, buffers)`` (bytes the
    pool may keep, bytes and buffers it keeps now), after setting ``limit`` when it is given.

    A numpy output of 1 MiB or more (of :func:`forward`, :func:`backward`, :func:`reference`,
    :meth:`State.prefill`; JAX inputs' outputs are such arrays handed to JAX) is allocated through a
    numpy memory handler (NEP 49) that keeps the buffer when numpy frees the array (at most 8 buffers
    and ``limit`` bytes, 256 MiB unless set) and hands it to the next output of its size, or up to a
    quarter smaller: a repeated call then writes memory already mapped instead of fresh pages the kernel
    must zero (a tenth of a two-thread forward at d = 64). Only freed arrays' buffers are kept, so no
    live array shares memory with another. ``output_pool(0)`` releases every kept buffer and keeps none
    after. Outputs of torch inputs (torch allocates them) and ``out=`` arrays are not the pool's.
    Built against numpy headers older than 1.22 (no NEP 49) the pool is off: its limit stays 0."""
    return OutputPool(*_hla.output_pool(limit))


def _call_config(q, k, v, op, masked, normalize, decay, ridge, eps, scale, chunk_size):
    """The configuration of a call on whole sequences: heads and features from the tensors' shapes
    (the library checks the tensors against it). Sizes a tensor of another rank cannot give come
    from the others (or are 1), so that the configuration is valid and the library's check of the
    tensors names the bad one; a zero size becomes 1 likewise, reported as the tensor's shape."""
    sq, sk, sv = _arrays.shape(q), _arrays.shape(k), _arrays.shape(v)

    def size(*options):
        for shape_, axis in options:
            if len(shape_) == 4:
                return max(shape_[axis], 1)
        return None

    heads = size((sq, 2))
    kv_heads = size((sk, 2), (sv, 2))
    heads, kv_heads = heads or kv_heads or 1, kv_heads or heads or 1
    dk = size((sq, 3), (sk, 3)) or 1
    dv = size((sv, 3)) or 1
    return _state.make_config(op, masked, normalize, heads=heads, kv_heads=kv_heads, dk=dk, dv=dv,
                       scale=scale, decay=decay, ridge=ridge, eps=eps, chunk_size=chunk_size)


def _sequences(q, cu_seqlens):
    """Number of sequences of a call: B, or N = len(cu_seqlens) - 1."""
    if cu_seqlens is None:
        s = _arrays.shape(q)
        return s[0] if s else 1
    s = _arrays.shape(cu_seqlens)
    return max(s[0] - 1, 0) if len(s) == 1 else 1


def _output(q, v):
    sq, sv = _arrays.shape(q), _arrays.shape(v)
    if len(sq) == 4 and len(sv) == 4:
        return _arrays.empty_like_kind(q, sq[:3] + (sv[3],))
    return _arrays.empty_like_kind(q, (1, 1, 1, 1))


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _carry_in(initial_state, cfg):
    """(state array or None, lock) for initial_state: a State (read in place, under its lock), a
    Segment (its carry-in, via hla_summary_to_state) or a state array [N, n] (passed as is)."""
    if initial_state is None:
        return None, _NoLock()
    if isinstance(initial_state, (State, Segment)):
        _state.check_same(initial_state._cfg, _state.canonical(cfg), "initial_state")
        if isinstance(initial_state, Segment):
            return _state.segment_to_state_array(initial_state), _NoLock()
        return initial_state._array, initial_state._lock
    if _arrays.kind(initial_state) is not None:
        return _arrays.prepare(initial_state, "initial_state"), _NoLock()
    raise TypeError("initial_state must be a hla.State, a hla.Segment, a state array [N, n] or None, "
                    "got %s" % type(initial_state).__name__)


def forward(q, k, v, *, op="hla2", masked=True, normalize=False, decay=1.0, ridge=0.0, eps=1e-6,
            scale=1.0, initial_state=None, output_final_state=False, cu_seqlens=None,
            chunk_size=None, path="chunked", checkpoints=None, checkpoint_every=None, out=None):
    """Run the operator over whole sequences.

    Parameters
    ----------
    q, k, v : arrays
        ``[B, T, H, Dk]``, ``[B, T, Hkv, Dk]``, ``[B, T, Hkv, Dv]`` of one floating dtype, T >= 1.
    op, masked, normalize, decay, ridge, eps, scale
        See the module documentation.
    initial_state : State, Segment, array [N, n] or None
        Carry-in of the same configuration (read, not changed). A Segment stands for the prefix
        statistics after it. None starts from zero.
    output_final_state : bool
        Also return the state after the last token (a new numpy-backed :class:`State`).
    cu_seqlens : int array [N+1] or None
        Strictly increasing offsets from 0 to T packing N independent sequences into a batch of one
        (B must be 1); initial_state and the final state then have N rows.
    chunk_size : int or None
        Chunk length of the chunked/scan paths (None = automatic).
    path : {"chunked", "serial", "scan"}
        Execution path; all compute the same operator.
    checkpoints : array or None
        A writable array from :func:`new_checkpoints` for the same call (chunked path only): receives
        each sequence's state every ``stride`` tokens, for :func:`backward` (``checkpoints=``), which
        then skips recomputing them (hla_forward_checkpoints). The outputs are the same bit for bit.
    checkpoint_every : int or None
        Chunks between the checkpoints (``stride = checkpoint_every * chunk`` tokens; None or 0 =
        automatic, about sqrt(chunks); values above the chunk count act as it). Only the checkpoints
        depend on it, not the outputs: give :func:`new_checkpoints` and :func:`backward` the same
        value. 1 = a checkpoint every chunk: the fastest backward, checkpoints of chunks * state (a large
        value costs memory in the backward instead: it keeps that many chunks' carries).
    out : array or None
        A writable ``[B, T, H, Dv]`` array of q's dtype (numpy, torch or another DLPack producer) that
        receives the outputs and is returned as ``o``, so a loop can reuse one buffer instead of
        allocating (and faulting in) a new one per call. It must not share memory with q, k, v or the
        states (ValueError).

    Returns
    -------
    (o, final) : (array, State or None)
        ``o`` is ``[B, T, H, Dv]`` of q's kind and dtype (``out`` itself when given).
    """
    q, k, v = _arrays.prepare(q, "q"), _arrays.prepare(k, "k"), _arrays.prepare(v, "v")
    cfg = _call_config(q, k, v, op, masked, normalize, decay, ridge, eps, scale, chunk_size)
    cu = _arrays.index_array(cu_seqlens)
    initial, lock = _carry_in(initial_state, cfg)
    given = out is not None
    out = _output(q, v) if out is None else _arrays.given_output(out)
    final = None
    if output_final_state:
        state_cfg = _state.canonical(cfg)._replace(chunk_size=0)
        final = State._make(state_cfg, _zeros_state(state_cfg, _sequences(q, cu), q))
    with lock:
        _hla.forward(cfg, path, q, k, v, out, cu, initial,
                     None if final is None else final._array, None, checkpoints, checkpoint_every)
    return (out if given else _arrays.deliver(out, q)), final


def new_checkpoints(q, k, v, *, op="hla2", masked=True, normalize=False, decay=1.0, ridge=0.0,
                    eps=1e-6, scale=1.0, cu_seqlens=None, chunk_size=None, checkpoint_every=None):
    """A zeroed checkpoint array ``[rows, n]`` (numpy, state dtype) for ``forward(..., checkpoints=)``
    and ``backward(..., checkpoints=)`` of a call with these inputs and options (docs/gradients.md
    section 11): ``rows`` from :func:`checkpoint_rows`, n the state's elements. ``checkpoint_every``
    (chunks between checkpoints, None = automatic, 1 = every chunk: fastest backward, most rows) must
    be the value given to that forward and backward."""
    q, k, v = _arrays.prepare(q, "q"), _arrays.prepare(k, "k"), _arrays.prepare(v, "v")
    cfg = _call_config(q, k, v, op, masked, normalize, decay, ridge, eps, scale, chunk_size)
    s = _arrays.shape(q)
    if len(s) != 4:
        raise ValueError("q must be [B, T, H, Dk], got shape %s" % (s,))
    sequences = 0 if cu_seqlens is None else _sequences(q, _arrays.index_array(cu_seqlens))
    rows, _ = _hla.checkpoint_rows(cfg, s[0], s[1], sequences, checkpoint_every)
    return _arrays.aligned_zeros((rows, _hla.state_elements(cfg)), _arrays.state_dtype(q))


def checkpoint_rows(op="hla2", *, heads, dk, dv, batch, tokens, sequences=0, kv_heads=None,
                    masked=True, normalize=False, ridge=0.0, chunk_size=None, checkpoint_every=None):
    """``(rows, stride)`` of the checkpoints of a chunked call over ``[batch, tokens, ...]`` inputs, or
    over ``sequences`` packed sequences (``cu_seqlens`` of sequences + 1 entries, batch 1): a
    ``[rows, n]`` state array holds each sequence's state before its tokens stride, 2 stride, ...
    (hla_checkpoint_rows). For hosts that allocate the array themselves (torch, JAX).
    ``checkpoint_every``: chunks per stride (None = automatic, about sqrt(chunks); 1 = every chunk,
    fastest backward and most rows), the value the forward and backward of the call are given."""
    cfg = _state.make_config(op, masked, normalize, heads, kv_heads, dk, dv, ridge=ridge,
                             chunk_size=chunk_size)
    return _hla.checkpoint_rows(cfg, batch, tokens, sequences, checkpoint_every)


Gradients = _collections.namedtuple("Gradients", ["dq", "dk", "dv", "d_initial_state"])
Gradients.__doc__ = """Result of :func:`backward`: dq, dk, dv (like q, k, v) and d_initial_state ([N, n] numpy
array of the state dtype when an initial state was given, else None)."""


def backward(q, k, v, do, *, op="hla2", masked=True, normalize=False, decay=1.0, ridge=0.0, eps=1e-6,
             scale=1.0, initial_state=None, d_final_state=None, cu_seqlens=None, chunk_size=None,
             path="chunked", checkpoints=None, checkpoint_every=None):
    """Gradients of a loss L through :func:`forward` (docs/spec.md section 9, docs/gradients.md).

    Parameters
    ----------
    q, k, v, op, masked, normalize, decay, ridge, eps, scale, initial_state, cu_seqlens, chunk_size, path
        As for :func:`forward` (same inputs, same options).
    do : array
        dL/do, ``[B, T, H, Dv]``, of q's dtype.
    d_final_state : array [N, n], State or None
        dL/d(final state), the cotangent of the state after the last token (None: zero). Backward of a
        later segment gives it as its ``d_initial_state``, so segments chain.
    checkpoints : array or None
        What ``forward(..., checkpoints=)`` wrote for the same inputs and options (chunked path only):
        the backward starts from them instead of recomputing them (hla_backward_checkpoints), with the
        same gradients bit for bit.
    checkpoint_every : int or None
        Chunks between the carries the chunked backward keeps (None or 0 = automatic, about
        sqrt(chunks); 1 = every chunk: the fastest backward, checkpoints of chunks * state; a large value
        keeps that many chunks' carries inside the backward instead), also
        without ``checkpoints``. With ``checkpoints`` it must be the value given to :func:`forward` and
        :func:`new_checkpoints`. The gradients do not depend on it, bit for bit.

    Returns
    -------
    Gradients
        ``(dq, dk, dv, d_initial_state)``: dq, dk, dv like q, k, v (kind and dtype); d_initial_state a
        numpy array ``[N, n]`` of the state dtype when ``initial_state`` was given, else None. The
        cotangent of the symmetric state blocks (S, S^Q) is symmetrised.
    """
    q, k, v = _arrays.prepare(q, "q"), _arrays.prepare(k, "k"), _arrays.prepare(v, "v")
    do = _arrays.prepare(do, "do")
    cfg = _call_config(q, k, v, op, masked, normalize, decay, ridge, eps, scale, chunk_size)
    cu = _arrays.index_array(cu_seqlens)
    initial, lock = _carry_in(initial_state, cfg)
    if isinstance(d_final_state, State):
        _state.check_same(d_final_state._cfg, _state.canonical(cfg), "d_final_state")
        d_final_state = d_final_state._array
    elif d_final_state is not None:
        if _arrays.kind(d_final_state) is None:
            raise TypeError("d_final_state must be a state array [N, n], a hla.State or None, got %s"
                            % type(d_final_state).__name__)
        d_final_state = _arrays.prepare(d_final_state, "d_final_state")
    sq, sk, sv = _arrays.shape(q), _arrays.shape(k), _arrays.shape(v)
    dq = _arrays.empty_like_kind(q, sq if len(sq) == 4 else (1, 1, 1, 1))
    dk = _arrays.empty_like_kind(q, sk if len(sk) == 4 else (1, 1, 1, 1))
    dv = _arrays.empty_like_kind(q, sv if len(sv) == 4 else (1, 1, 1, 1))
    d_initial = None
    if initial_state is not None:
        state_cfg = _state.canonical(cfg)._replace(chunk_size=0)
        d_initial = _zeros_state(state_cfg, _sequences(q, cu), q)
    with lock:
        _hla.backward(cfg, path, q, k, v, do, dq, dk, dv, cu, initial, d_final_state, d_initial,
                      checkpoints, checkpoint_every)
    return Gradients(_arrays.deliver(dq, q), _arrays.deliver(dk, q), _arrays.deliver(dv, q), d_initial)


def _zeros_state(cfg, rows, like):
    import numpy as np

    return _arrays.aligned_zeros((rows, _hla.state_elements(cfg)), _arrays.state_dtype(like))


def reference(q, k, v, *, op="hla2", masked=True, normalize=False, decay=1.0, ridge=0.0, eps=1e-6,
              scale=1.0, cu_seqlens=None):
    """Brute-force evaluation of the operator's index sums, accumulated in float64 (small T only:
    O(T^2), hla3 O(T^3) per head). Same arguments and result as :func:`forward`; returns ``o``."""
    q, k, v = _arrays.prepare(q, "q"), _arrays.prepare(k, "k"), _arrays.prepare(v, "v")
    cfg = _call_config(q, k, v, op, masked, normalize, decay, ridge, eps, scale, None)
    cu = _arrays.index_array(cu_seqlens)
    out = _output(q, v)
    _hla.reference(cfg, q, k, v, out, cu)
    return _arrays.deliver(out, q)


def summarize(q, k, v, cu_seqlens=None, *, op="hla2", masked=True, normalize=False, decay=1.0,
              ridge=0.0, eps=1e-6, scale=1.0, chunk_size=None):
    """Summaries (:class:`Segment`) of the B segments ``q, k, v`` (``[B, T, ...]``, T >= 1), or of the
    N packed sequences of ``cu_seqlens`` (B = 1).

    Segments of consecutive pieces of a sequence combine with :func:`combine`; the combined summary
    of everything before a position is a carry-in for :func:`forward` (``initial_state=segment``)
    or :func:`state_from_segment`.
    """
    import numpy as np

    q, k, v = _arrays.prepare(q, "q"), _arrays.prepare(k, "k"), _arrays.prepare(v, "v")
    cfg = _call_config(q, k, v, op, masked, normalize, decay, ridge, eps, scale, chunk_size)
    cu = _arrays.index_array(cu_seqlens)
    seg_cfg = _state.canonical(cfg)._replace(chunk_size=0)
    rows = _sequences(q, cu)
    summary = _arrays.aligned_zeros((rows, _hla.summary_elements(seg_cfg)), _arrays.state_dtype(q))
    length = np.zeros(rows, dtype=np.int64)
    _hla.summarize(cfg, q, k, v, cu, summary, length)
    return Segment._make(seg_cfg, summary, length)


def state_elements(op="hla2", *, heads, dk, dv, kv_heads=None, masked=True, normalize=False,
                   ridge=0.0):
    """Numbers n of one sequence's state (a State of B sequences is a [B, n] array)."""
    return _hla.state_elements(_state.make_config(op, masked, normalize, heads, kv_heads, dk, dv,
                                                  ridge=ridge))


def summary_elements(op="hla2", *, heads, dk, dv, kv_heads=None, masked=True, normalize=False,
                     ridge=0.0):
    """Numbers m of one segment's summary (a Segment of N segments is an [N, m] array)."""
    return _hla.summary_elements(_state.make_config(op, masked, normalize, heads, kv_heads, dk,
                                                    dv, ridge=ridge))
