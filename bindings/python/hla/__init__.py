"""Higher-order Linear Attention (HLA) -- Python bindings of libhla.

Tensors use the layout ``[B, T, H, D]`` (batch, time, head, feature): ``q`` is
``[B, T, H, Dk]``, ``k`` is ``[B, T, Hkv, Dk]`` and ``v`` is ``[B, T, Hkv, Dv]`` with
``H % Hkv == 0`` (query head ``h`` reads key/value head ``h // (H // Hkv)``). Inputs are
numpy arrays of dtype float32 or float64 (one dtype per call) with any strides; outputs
are new C-contiguous arrays of the same dtype.

Operators (``op``): ``"hla2"`` second-order HLA (A Aᵀ V, optional ``ridge``), ``"ahla"``
asymmetric second order (A A V) and ``"hla3"`` third order (A Aᵀ A V). Options shared by
all entry points:

* ``masked`` (True): strictly causal operator; False keeps every index tuple <= t.
* ``normalize`` (False): divide by the same sum with every value replaced by 1, plus ``eps``.
* ``decay`` (1.0): gamma in (0, 1].
* ``ridge`` (0.0): lambda >= 0, hla2 only.
* ``eps`` (1e-6): > 0, used when normalizing.
* ``scale`` (1.0): multiplies every query first (``dk ** -0.5`` is the usual choice).

Compute runs with the GIL released. Invalid arguments raise ``ValueError`` or ``TypeError``
(the message names the argument); failed allocations raise ``MemoryError``.
"""
from . import _hla

__all__ = ["forward", "reference", "summarize", "combine", "State", "Segment",
           "state_from_segment", "__version__", "library_version"]

__version__ = "0.1.0"

State = _hla.State
Segment = _hla.Segment


def library_version():
    """Version string of the loaded libhla shared library."""
    return _hla.version()


def forward(q, k, v, *, op="hla2", masked=True, normalize=False, decay=1.0, ridge=0.0,
            eps=1e-6, scale=1.0, initial_state=None, output_final_state=False, chunk_size=64,
            path="chunked"):
    """Run the operator over a whole sequence.

    Parameters
    ----------
    q, k, v : numpy.ndarray
        ``[B, T, H, Dk]``, ``[B, T, Hkv, Dk]``, ``[B, T, Hkv, Dv]``; float32 or float64, T >= 1.
    op, masked, normalize, decay, ridge, eps, scale
        See the module documentation.
    initial_state : State, Segment or None
        Carry-in of the same configuration (a ``State`` is read, not changed; a ``Segment``
        stands for the prefix statistics after it). None starts from zero.
    output_final_state : bool
        Also return the state after the last token.
    chunk_size : int
        Chunk length of the chunked/scan paths (0 = automatic).
    path : {"chunked", "serial", "scan"}
        Execution path; all compute the same operator.

    Returns
    -------
    (o, final) : (numpy.ndarray, State or None)
        ``o`` is ``[B, T, H, Dv]``; ``final`` is a new ``State`` if ``output_final_state``.
    """
    return _hla._forward(q, k, v, op, masked, normalize, decay, ridge, eps, scale,
                         initial_state, output_final_state, chunk_size, path)


def reference(q, k, v, *, op="hla2", masked=True, normalize=False, decay=1.0, ridge=0.0,
              eps=1e-6, scale=1.0):
    """Brute-force evaluation of the operator's index sums (small T only; O(T^2), hla3
    O(T^3) per head). Same arguments and result layout as :func:`forward`; returns ``o``."""
    return _hla._reference(q, k, v, op, masked, normalize, decay, ridge, eps, scale)


def summarize(q, k, v, *, op="hla2", masked=True, normalize=False, decay=1.0, ridge=0.0,
              eps=1e-6, scale=1.0, chunk_size=64):
    """Summary (:class:`Segment`) of the whole segment ``q, k, v`` (``[B, T, ...]``, T >= 1).

    Segments of consecutive pieces of a sequence combine with :func:`combine`; the combined
    summary of everything before a position is a carry-in for :func:`forward`
    (``initial_state=segment``) or :func:`state_from_segment`.
    """
    return _hla._summarize(q, k, v, op, masked, normalize, decay, ridge, eps, scale, chunk_size)


def combine(a, b):
    """Summary of segment ``a`` followed by segment ``b`` (associative, not commutative)."""
    return _hla.combine(a, b)


def state_from_segment(segment):
    """New :class:`State` holding the prefix statistics after ``segment``."""
    return _hla.state_from_segment(segment)
