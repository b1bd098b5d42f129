"""State and Segment: rows of statistics in memory the caller can see (a numpy array [rows, n]),
with the configuration they belong to. Both follow one pattern (the base class _Rows): a
configuration, a numpy view of the rows, the object the memory came from, and a lock that
serialises this package's calls on one object (the library itself keeps no state between calls).
"""
import collections

import numpy as np

from . import _arrays, _hla

# The option tuple the extension converts to an hla_config (field order of hla_config).
Config = collections.namedtuple(
    "Config", "op masked normalize heads kv_heads dk dv scale decay ridge eps chunk_size")

# The fields that make two states or summaries compatible (chunk_size is a choice of the call).
_COMPARED = ("op", "masked", "normalize", "heads", "kv_heads", "dk", "dv", "decay", "ridge", "eps",
             "scale")


def make_config(op="hla2", masked=True, normalize=False, heads=1, kv_heads=None, dk=64, dv=64,
                scale=1.0, decay=1.0, ridge=0.0, eps=1e-6, chunk_size=None):
    """A Config from Python options (types and ranges are checked by the extension and library).
    kv_heads None means heads (0 in C); an explicit 0 is refused, since it would mean that too."""
    if isinstance(kv_heads, (int, np.integer)) and not isinstance(kv_heads, bool) and kv_heads == 0:
        raise ValueError("kv_heads = 0 must be >= 1 (None means heads)")
    return Config(op, masked, normalize, heads, kv_heads, dk, dv, scale, decay, ridge, eps,
                  chunk_size)


def canonical(cfg):
    """The configuration as libhla holds it (validated): kv_heads resolved, numbers as float/int."""
    _hla.state_elements(cfg)                # range checks, messages naming the field
    return Config(*_hla.config(cfg))


def check_same(have, want, name):
    """ValueError naming `name` if the configuration `have` (of a State/Segment) is not `want`.
    The library cannot see this (a state is plain numbers), so it is checked here."""
    for field in _COMPARED:
        a, b = getattr(have, field), getattr(want, field)
        if a != b:
            raise ValueError("%s has another configuration: it has %s=%r, but this call has %s=%r"
                             % (name, field, a, field, b))


def _state_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in ("float32", "float64"):
        raise TypeError("dtype must be 'float32' or 'float64' (the state dtype: float64 for float64 "
                        "inputs, float32 otherwise), got %r" % (dtype,))
    return dt


def _positive_int(x, name):
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise TypeError("%s must be an int, got %s" % (name, type(x).__name__))
    if x < 1:
        raise ValueError("%s = %d must be >= 1" % (name, x))
    return int(x)


class _Rows:
    """Common part of State and Segment (not public)."""

    __slots__ = ("_cfg", "_array", "_source", "_lock", "__weakref__")
    _what = "rows"

    @classmethod
    def _make(cls, cfg, array, source=None):
        self = object.__new__(cls)
        self._cfg = cfg
        self._array = array
        self._source = array if source is None else source
        self._lock = _hla.Lock()
        return self

    # -- configuration ------------------------------------------------------------------------
    op = property(lambda self: self._cfg.op, doc="Operator: 'hla2', 'ahla' or 'hla3'.")
    masked = property(lambda self: self._cfg.masked, doc="Strictly causal (masked) operator.")
    normalize = property(lambda self: self._cfg.normalize,
                         doc="Outputs divided by the value-free sum plus eps.")
    heads = property(lambda self: self._cfg.heads, doc="Query heads H.")
    kv_heads = property(lambda self: self._cfg.kv_heads, doc="Key/value heads Hkv.")
    dk = property(lambda self: self._cfg.dk, doc="Query/key features.")
    dv = property(lambda self: self._cfg.dv, doc="Value features.")
    decay = property(lambda self: self._cfg.decay, doc="Decay gamma in (0, 1].")
    ridge = property(lambda self: self._cfg.ridge, doc="Ridge lambda (hla2 only).")
    eps = property(lambda self: self._cfg.eps, doc="Normalization epsilon.")
    scale = property(lambda self: self._cfg.scale, doc="Query scale.")

    @property
    def config(self):
        """The configuration as a dict of keyword arguments."""
        d = self._cfg._asdict()
        d.pop("chunk_size")
        return d

    # -- memory -------------------------------------------------------------------------------
    @property
    def array(self):
        """Writable numpy view [rows, n] of the statistics (no copy; layout in docs/state-layout.md)."""
        return self._array

    @property
    def source(self):
        """The object whose memory this holds (the numpy array, torch tensor, ... given to wrap())."""
        return self._source

    @property
    def dtype(self):
        """Element type of the statistics (numpy.dtype float32 or float64)."""
        return self._array.dtype

    @property
    def rows(self):
        """Number of rows (sequences)."""
        return int(self._array.shape[0])

    @property
    def nbytes(self):
        """Bytes of statistics held in memory."""
        return int(self._array.nbytes)

    def __reduce__(self):
        return (type(self).from_bytes, (self.to_bytes(),))

    def _repr_extra(self):
        return ""

    def __repr__(self):
        c = self._cfg
        return ("hla.%s(op=%r, rows=%d, heads=%d, kv_heads=%d, dk=%d, dv=%d, dtype=%r, masked=%r, "
                "normalize=%r, decay=%r, ridge=%r, eps=%r, scale=%r%s)"
                % (type(self).__name__, c.op, self.rows, c.heads, c.kv_heads, c.dk, c.dv,
                   self.dtype.name, c.masked, c.normalize, c.decay, c.ridge, c.eps, c.scale,
                   self._repr_extra()))


class State(_Rows):
    """State(op="hla2", *, batch, heads, dk, dv, kv_heads=None, masked=True, normalize=False,
    decay=1.0, ridge=0.0, eps=1e-6, scale=1.0, dtype="float32")

    Streaming state of `batch` sequences: a [batch, n] array of prefix statistics (n =
    hla.state_elements(...)), float32 for float32/bfloat16/float16 inputs, float64 for float64
    inputs. New states are zero (the empty prefix). State.wrap makes one over caller memory.

    Calls of this package on one State are serialised by a lock (so threads may share it);
    two States wrapping the same memory do not share a lock.
    """

    __slots__ = ()
    _what = "state"

    def __init__(self, op="hla2", *, batch, heads, dk, dv, kv_heads=None, masked=True,
                 normalize=False, decay=1.0, ridge=0.0, eps=1e-6, scale=1.0, dtype="float32"):
        batch = _positive_int(batch, "batch")
        cfg = canonical(make_config(op, masked, normalize, heads, kv_heads, dk, dv, scale, decay,
                                    ridge, eps))
        dt = _state_dtype(dtype)
        n = _hla.state_elements(cfg)
        array = _arrays.aligned_zeros((batch, n), dt)
        self._cfg, self._array, self._source = cfg, array, array
        self._lock = _hla.Lock()

    @classmethod
    def wrap(cls, array, op="hla2", *, heads, dk, dv, kv_heads=None, masked=True, normalize=False,
             decay=1.0, ridge=0.0, eps=1e-6, scale=1.0):
        """A State over caller memory `array` [rows, n] (numpy, torch or any CPU DLPack array;
        float32 or float64, rows contiguous), without a copy: steps and prefills update it in place.
        The library checks the array against the configuration."""
        cfg = canonical(make_config(op, masked, normalize, heads, kv_heads, dk, dv, scale, decay,
                                    ridge, eps))
        view = _arrays.writable_numpy(array, "array")
        _hla.state_serialized_size(cfg, view, None)      # validates dtype, shape and strides
        return cls._make(cfg, view, array)

    @property
    def batch(self):
        """Number of rows (sequences) of the state."""
        return self.rows

    def _call_cfg(self, chunk_size=None):
        return self._cfg._replace(chunk_size=chunk_size)

    def _step(self, q_t, k_t, v_t, rows=None, *, out=None):
        """State.step in Python: what the C method State.step (below the class) calls for every call it
        does not run itself (q_t, k_t, v_t by keyword; arrays other than numpy arrays and torch tensors, or a
        mix; torch tensors that require grad; rows as a range). Its docstring:

        Consume one token of R sequences: q_t [R, H, Dk], k_t [R, Hkv, Dk], v_t [R, Hkv, Dv]
        (one floating dtype; float64 needs a float64 state, the others float32). rows: None
        (sequence i is row i) or R distinct row indices to read and advance. Returns o_t [R, H, Dv]
        of q_t's kind and dtype; or out: a writable [R, H, Dv] array of q_t's dtype that receives it
        and is returned (a decoding loop can reuse one buffer), sharing no memory with the inputs or
        the state (ValueError)."""
        # the decode loop's common case in one C call: numpy float16/32/64 or bfloat16 in (rows None, or
        # indices as a numpy array: a list or tuple is made one), numpy out (the library validates);
        # NotImplemented for anything else
        if rows is not None and type(rows) is not np.ndarray:
            rows = _arrays.index_array(rows)
        o = _hla.step_numpy(self._cfg, q_t, k_t, v_t, self._array, self._lock, out, rows)
        if o is not NotImplemented:
            return o
        q_t, k_t, v_t = (_arrays.prepare(x, n) for x, n in ((q_t, "q_t"), (k_t, "k_t"), (v_t, "v_t")))
        given = out is not None
        if given:
            out = _arrays.given_output(out)
        else:
            sq = _arrays.shape(q_t)
            out = _arrays.empty_like_kind(q_t, (sq[0] if sq else 1, self._cfg.heads, self._cfg.dv))
        rows = _arrays.index_array(rows)
        with self._lock:
            _hla.step(self._cfg, q_t, k_t, v_t, out, self._array, rows)
        return out if given else _arrays.deliver(out, q_t)

    def prefill(self, q, k, v, rows=None, cu_seqlens=None, *, chunk_size=None, path="chunked", out=None):
        """Run whole sequences from these rows' statistics and leave the state after their last
        token in the same rows (hla_forward with initial = final = this state). q [B, T, H, Dk],
        k, v [B, T, Hkv, D]; cu_seqlens (N+1 offsets, B = 1) packs N sequences; rows: None
        (sequence i is row i) or N distinct rows. Returns o [B, T, H, Dv] of q's kind; or out: a
        writable [B, T, H, Dv] array of q's dtype that receives it and is returned, sharing no memory
        with the inputs or the state (ValueError)."""
        q, k, v = _arrays.prepare(q, "q"), _arrays.prepare(k, "k"), _arrays.prepare(v, "v")
        given = out is not None
        if given:
            out = _arrays.given_output(out)
        else:
            sq = _arrays.shape(q)
            out_shape = (tuple(sq[:3]) + (self._cfg.dv,)) if len(sq) == 4 else (1, 1, 1, 1)
            out = _arrays.empty_like_kind(q, out_shape)
        rows, cu = _arrays.index_array(rows), _arrays.index_array(cu_seqlens)
        with self._lock:
            _hla.forward(self._call_cfg(chunk_size), path, q, k, v, out, cu, self._array,
                         self._array, rows)
        return out if given else _arrays.deliver(out, q)

    def reset(self, rows=None):
        """Zero rows (None: every row), as for fresh sequences."""
        rows = _arrays.index_array(rows)
        with self._lock:
            _hla.state_reset_rows(self._cfg, self._array, rows)

    def copy_rows(self, src, dst):
        """Row dst[i] receives what row src[i] held before the call (beam search, speculative
        decoding); dst distinct, src may repeat and overlap dst."""
        src, dst = _arrays.index_array(src), _arrays.index_array(dst)
        with self._lock:
            _hla.state_copy_rows(self._cfg, self._array, src, dst)

    def copy(self):
        """A new State with a copy of the statistics (numpy memory)."""
        with self._lock:
            array = _arrays.aligned_copy(self._array)
        return State._make(self._cfg, array)

    __copy__ = copy

    def __deepcopy__(self, memo):
        return self.copy()

    def to_bytes(self, rows=None):
        """Versioned, checksummed serialization of the configuration and the rows (None: all)."""
        rows = _arrays.index_array(rows)
        with self._lock:
            return _hla.state_serialize(self._cfg, self._array, rows)

    @classmethod
    def from_bytes(cls, data):
        """A new State (numpy memory) from to_bytes() output; ValueError on truncated, corrupt or
        foreign bytes."""
        cfg, array = _hla.state_deserialize(data)
        return State._make(Config(*cfg)._replace(chunk_size=0), array)


# State.step is a C method (bindings/python/src/ops.c, state_step): a decode loop's call reaches the library
# without a Python frame; every call it does not run itself goes to State._step with its arguments.
# (State._step is named State.step in its messages: "State.step() missing 1 required positional argument".)
State.step = _hla.state_method(State)
State._step.__name__, State._step.__qualname__ = "step", "State.step"


class Segment(_Rows):
    """Summaries of N segments (from hla.summarize, hla.combine, Segment.from_bytes or Segment.wrap):
    .array [N, m] (m = hla.summary_elements(...)) and .length, the int64 token counts [N]."""

    __slots__ = ("_length",)
    _what = "summary"

    def __init__(self, *args, **kwargs):
        raise TypeError("hla.Segment objects come from hla.summarize, hla.combine, "
                        "Segment.from_bytes or Segment.wrap")

    @classmethod
    def _make(cls, cfg, array, length, source=None):
        self = super()._make(cfg, array, source)
        self._length = length
        return self

    @classmethod
    def wrap(cls, array, length, op="hla2", *, heads, dk, dv, kv_heads=None, masked=True,
             normalize=False, decay=1.0, ridge=0.0, eps=1e-6, scale=1.0):
        """A Segment over caller memory: summaries `array` [N, m] and lengths `length` [N] (int64),
        without a copy. The library checks them against the configuration."""
        cfg = canonical(make_config(op, masked, normalize, heads, kv_heads, dk, dv, scale, decay,
                                    ridge, eps))
        view = _arrays.writable_numpy(array, "array")
        if _arrays.kind(length) is None:
            length = np.asarray(length, dtype=np.int64)
        lview = _arrays.writable_numpy(length, "length")
        _hla.summary_serialized_size(cfg, view, lview)   # validates both
        return cls._make(cfg, view, lview, array)

    @property
    def length(self):
        """Tokens summarized by each segment: int64 numpy array [N] (read-only view)."""
        v = self._length.view()
        v.flags.writeable = False
        return v

    def _repr_extra(self):
        return ", length=%s" % (self._length.tolist(),)

    def copy(self):
        return Segment._make(self._cfg, _arrays.aligned_copy(self._array), self._length.copy())

    __copy__ = copy

    def __deepcopy__(self, memo):
        return self.copy()

    def to_bytes(self):
        """Versioned, checksummed serialization (configuration and lengths included)."""
        return _hla.summary_serialize(self._cfg, self._array, self._length)

    @classmethod
    def from_bytes(cls, data):
        """A new Segment from to_bytes() output; ValueError on truncated, corrupt or foreign bytes."""
        cfg, array, length = _hla.summary_deserialize(data)
        return Segment._make(Config(*cfg)._replace(chunk_size=0), array, length)


def combine(a, b):
    """Summaries of segment a followed by segment b, row by row (associative, not commutative)."""
    if not isinstance(a, Segment):
        raise TypeError("a must be a hla.Segment, got %s" % type(a).__name__)
    if not isinstance(b, Segment):
        raise TypeError("b must be a hla.Segment, got %s" % type(b).__name__)
    check_same(b._cfg, a._cfg, "b (compared with a)")
    result = _arrays.aligned_zeros(a._array.shape, a._array.dtype)
    length = np.empty(a._length.shape, dtype=np.int64)
    _hla.summary_combine(a._cfg, a._array, a._length, b._array, b._length, result, length)
    return Segment._make(a._cfg, result, length)


def state_from_segment(segment):
    """A new State holding the prefix statistics after each row of `segment` (the carry-in)."""
    if not isinstance(segment, Segment):
        raise TypeError("segment must be a hla.Segment, got %s" % type(segment).__name__)
    return State._make(segment._cfg, segment_to_state_array(segment))


def segment_to_state_array(segment):
    array = _arrays.aligned_zeros((segment.rows, _hla.state_elements(segment._cfg)), segment.dtype)
    _hla.summary_to_state(segment._cfg, segment._array, array, None)
    return array
