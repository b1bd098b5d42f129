"""Sequence parallelism over MPI (docs/spec.md section 10), forward pass.

Every rank of a communicator holds a contiguous time slice of the same B sequences, ranks in time
order (rank 0 the first tokens), any slice lengths >= 1::

    from mpi4py import MPI
    import hla.mpi
    o_local, final = hla.mpi.forward(q_local, k_local, v_local, comm=MPI.COMM_WORLD, op="hla3")

``o_local`` is the output of this rank's tokens, equal (to the tolerances of spec section 4) to the
corresponding slice of ``hla.forward`` over the whole sequence in one process; ``final`` is the state
after the last token of the whole sequence, on every rank (a :class:`hla.State`).

Algorithm (three steps, one collective each):

1. **summary**: ``hla.summarize`` of the local slice, B rows of m = ``hla.summary_elements(...)``.
2. **carry-in**: ``MPI_Exscan`` over the B rows with a user operator that is declared non-commutative
   and calls ``hla_summary_combine``. MPI calls it as ``f(invec, inoutvec)`` with ``invec`` from the
   lower ranks (earlier tokens), so it computes ``inoutvec = combine(invec, inoutvec)``. Rank r > 0
   receives the summary of ranks 0..r-1 and turns it into a state row (``hla_summary_to_state``);
   rank 0's Exscan result is undefined by MPI and unused: it starts from ``initial_state`` (or zero).
3. **local forward** from that carry-in (``hla.forward(initial_state=carry)``). The last rank's final
   state is the state after the whole sequence; it is broadcast (``MPI_Bcast`` of B rows of n =
   ``hla.state_elements(...)`` numbers) so that every rank returns it (``output_final_state=False``
   skips the broadcast and returns None).

Before step 2 the ranks exchange a small fingerprint of their configuration and any local error
(``allgather``), so a rank with bad input or another configuration makes *every* rank raise instead of
leaving the others blocked in the Exscan.

The MPI datatype of one row: ``MPI.BYTE`` contiguous, ``row_bytes = 8 + ceil8(m * itemsize)``: the
int64 segment length (token count, which the combine's decay needs) followed by the m summary numbers
(float32, or float64 for float64 inputs) and padding to 8 bytes. One Exscan element per sequence, so
B sequences travel in one call of ``count = B``.

``initial_state`` (a State, a Segment, or a state array [B, n]) is read on rank 0 only; other ranks may
pass the same object or None (it is ignored there), so the ``final`` of one call can be passed as the
``initial_state`` of the next on every rank. On rank 0 it enters the scan as the leftmost operand: a
Segment as it is, a state lifted into a summary row (its state blocks at their place in the summary
layout, docs/state-layout.md, extra blocks zero, length 0). combine's state blocks read only the state
blocks of its left operand (the extras of the left operand feed only the extras of the result), and a
lifted state is only ever a left operand, so every carry-in it enters is exact; the tests check this
for every operator and option.

Needs mpi4py (``pip install mpi4py``, built against the MPI library that ``mpirun`` belongs to).
``import hla`` does not import mpi4py; importing this module initialises MPI (as ``import
mpi4py.MPI`` does).
"""
import functools

import numpy as np

try:
    from mpi4py import MPI
except ImportError as e:  # pragma: no cover - exercised only without mpi4py
    raise ImportError(
        "hla.mpi needs mpi4py, which is not installed (%s). Install an MPI library and mpi4py, e.g. "
        "`apt-get install libopenmpi-dev openmpi-bin && pip install mpi4py`, and run under mpirun."
        % e) from e

import hla
from . import _arrays, _hla, _state
from ._state import Segment, State

__all__ = ["forward", "row_bytes"]


def _round8(x):
    return (x + 7) // 8 * 8


def row_bytes(m, itemsize):
    """Bytes of one summary row in the Exscan: an int64 length, m numbers, padding to 8 bytes."""
    return 8 + _round8(m * itemsize)


def _views(raw, m, dtype):
    """(summary [N, m], lengths [N]) views of raw uint8 rows [N, row_bytes] (no copy)."""
    summary = raw[:, 8:8 + m * dtype.itemsize].view(dtype)
    lengths = raw[:, :8].view(np.int64)[:, 0]
    return summary, lengths


@functools.lru_cache(maxsize=64)
def _state_positions(cfg):
    """Index into a summary row of each element of a state row (int64 [n]), found through the library
    itself: hla_summary_to_state of a float64 row holding 0, 1, ..., m-1 (it copies the state blocks)."""
    m, n = _hla.summary_elements(cfg), _hla.state_elements(cfg)
    probe = np.arange(m, dtype=np.float64)[None, :]
    out = np.full((1, n), -1.0)
    _hla.summary_to_state(cfg, probe, out, None)
    pos = out[0].astype(np.int64)
    if not (np.array_equal(pos, out[0]) and pos.min() >= 0 and np.unique(pos).size == n):
        raise RuntimeError("hla.mpi: the summary layout is not a superset of the state layout")
    return pos


def _lift(state_rows, cfg):
    """A Segment of length 0 whose state blocks are `state_rows` [B, n] and whose extras are zero."""
    rows = state_rows.shape[0]
    summary = _arrays.aligned_zeros((rows, _hla.summary_elements(cfg)), state_rows.dtype)
    summary[:, _state_positions(cfg)] = state_rows
    return Segment._make(cfg, summary, np.zeros(rows, dtype=np.int64))


def _numpy_rows(x, name):
    """A numpy view of a state array argument (numpy, torch or DLPack)."""
    k = _arrays.kind(x)
    if k == _arrays.NUMPY:
        return x
    if k == _arrays.TORCH:
        return x.detach().numpy()
    if k is not None:
        return np.from_dlpack(x)
    raise TypeError("%s must be a hla.State, a hla.Segment, a state array [B, n] or None, got %s"
                    % (name, type(x).__name__))


def _first_segment(initial_state, local, cfg):
    """Rank 0's operand of the Exscan: its local summary, preceded by initial_state if given."""
    if initial_state is None:
        return local
    if isinstance(initial_state, Segment):
        _state.check_same(initial_state._cfg, cfg, "initial_state")
        if initial_state.dtype != local.dtype or initial_state.rows != local.rows:
            raise ValueError("initial_state has %d rows of %s, this call needs %d rows of %s"
                             % (initial_state.rows, initial_state.dtype, local.rows, local.dtype))
        return hla.combine(initial_state, local)
    if isinstance(initial_state, State):
        _state.check_same(initial_state._cfg, cfg, "initial_state")
        rows = initial_state.array
    else:
        rows = _numpy_rows(initial_state, "initial_state")
    n = _hla.state_elements(cfg)
    if rows.ndim != 2 or rows.shape != (local.rows, n) or rows.dtype != local.dtype:
        raise ValueError("initial_state must be %d state rows of n = %d %s numbers, got shape %s of %s"
                         % (local.rows, n, local.dtype, tuple(rows.shape), rows.dtype))
    return hla.combine(_lift(rows, cfg), local)


def _fingerprint(cfg, dtype, rows):
    return tuple(getattr(cfg, f) for f in _state._COMPARED) + (np.dtype(dtype).name, int(rows))


def _combine_op(cfg, m, dtype, rbytes):
    """The MPI user function: inoutvec <- combine(invec, inoutvec), row by row (invec is earlier)."""
    def combine(invec, inoutvec, datatype):
        a = np.frombuffer(invec, dtype=np.uint8)
        b = np.frombuffer(inoutvec, dtype=np.uint8)
        a = a.reshape(a.size // rbytes, rbytes)
        b = b.reshape(b.size // rbytes, rbytes)
        sa, la = _views(a, m, dtype)
        sb, lb = _views(b, m, dtype)
        _hla.summary_combine(cfg, sa, la, sb, lb, sb, lb)
    return combine


def forward(q, k, v, comm=None, *, op="hla2", masked=True, normalize=False, decay=1.0, ridge=0.0,
            eps=1e-6, scale=1.0, initial_state=None, output_final_state=True, chunk_size=None,
            path="chunked"):
    """Sequence-parallel forward of this rank's time slice (see the module documentation).

    Parameters
    ----------
    q, k, v : arrays
        This rank's tokens of the B sequences: ``[B, T_r, H, Dk]``, ``[B, T_r, Hkv, Dk]``,
        ``[B, T_r, Hkv, Dv]`` (T_r >= 1; numpy, torch or DLPack, as :func:`hla.forward`). Every rank
        passes the same B, heads, features, dtype and options; rank r's tokens follow rank r-1's.
    comm : mpi4py.MPI.Comm or None
        The ranks in time order (None: ``MPI.COMM_WORLD``). Collective: every rank must call.
    op, masked, normalize, decay, ridge, eps, scale, chunk_size, path
        As :func:`hla.forward`.
    initial_state : State, Segment, array [B, n] or None
        Carry-in before the first token of rank 0 (read on rank 0 only).
    output_final_state : bool
        Broadcast the state after the last token of the whole sequence to every rank (default).

    Returns
    -------
    (o_local, final) : (array [B, T_r, H, Dv] of q's kind and dtype, State or None)
    """
    comm = MPI.COMM_WORLD if comm is None else comm
    rank, size = comm.Get_rank(), comm.Get_size()
    opts = dict(op=op, masked=masked, normalize=normalize, decay=decay, ridge=ridge, eps=eps,
                scale=scale)
    if size == 1:
        return hla.forward(q, k, v, initial_state=initial_state,
                           output_final_state=output_final_state, chunk_size=chunk_size, path=path,
                           **opts)

    # 1. local summary (rank 0: after initial_state); errors are shared before any other collective.
    error, local, fingerprint = None, None, None
    try:
        q, k, v = _arrays.prepare(q, "q"), _arrays.prepare(k, "k"), _arrays.prepare(v, "v")
        local = hla.summarize(q, k, v, chunk_size=chunk_size, **opts)
        cfg = local._cfg
        if rank == 0:
            local = _first_segment(initial_state, local, cfg)
        fingerprint = _fingerprint(cfg, local.dtype, local.rows) + (bool(output_final_state),)
    except Exception as e:  # noqa: BLE001 - re-raised below, after telling the other ranks
        error = e
    reports = comm.allgather((fingerprint, None if error is None else
                              "%s: %s" % (type(error).__name__, error)))
    if error is not None:
        raise error
    failed = [(r, msg) for r, (_, msg) in enumerate(reports) if msg is not None]
    if failed:
        raise RuntimeError("hla.mpi.forward failed on rank(s) %s: %s"
                           % (", ".join(str(r) for r, _ in failed), failed[0][1]))
    others = [r for r, (fp, _) in enumerate(reports) if fp != fingerprint]
    if others:
        raise ValueError("hla.mpi.forward: rank(s) %s have another configuration, dtype, batch or "
                         "output_final_state than rank %d (%r vs %r)"
                         % (", ".join(map(str, others)), rank, reports[others[0]][0], fingerprint))

    # 2. carry-in: exclusive scan of the summaries in rank (time) order.
    cfg, dtype, rows = local._cfg, local.dtype, local.rows
    m = local.array.shape[1]
    rbytes = row_bytes(m, dtype.itemsize)
    send = np.zeros((rows, rbytes), dtype=np.uint8)
    s, ln = _views(send, m, dtype)
    s[...] = local.array
    ln[...] = local.length
    recv = np.zeros_like(send)
    mpi_type = MPI.BYTE.Create_contiguous(rbytes).Commit()
    mpi_op = MPI.Op.Create(_combine_op(cfg, m, dtype, rbytes), commute=False)
    try:
        comm.Exscan([send, rows, mpi_type], [recv, rows, mpi_type], mpi_op)
    finally:
        mpi_op.Free()
        mpi_type.Free()
    carry = initial_state
    if rank > 0:
        summary, _ = _views(recv, m, dtype)
        carry = _arrays.aligned_zeros((rows, _hla.state_elements(cfg)), dtype)
        _hla.summary_to_state(cfg, summary, carry, None)

    # 3. local forward from the carry-in; the last rank's final state goes to every rank.
    last = rank == size - 1
    error, o, final_local = None, None, None
    try:
        o, final_local = hla.forward(q, k, v, initial_state=carry,
                                     output_final_state=output_final_state and last,
                                     chunk_size=chunk_size, path=path, **opts)
    except Exception as e:  # noqa: BLE001 - re-raised after the broadcast, which every rank joins
        error = e
    if not output_final_state:
        if error is not None:
            raise error
        return o, None
    n = _hla.state_elements(cfg)
    # B*n state numbers and one status number (0 = the last rank's forward succeeded)
    flat = _arrays.aligned_zeros((rows * n + 1,), dtype)
    if last:
        if error is None:
            flat[:rows * n] = final_local.array.reshape(-1)
        else:
            flat[rows * n] = 1
    comm.Bcast(flat, root=size - 1)
    if error is not None:
        raise error
    if flat[rows * n] != 0:
        raise RuntimeError("hla.mpi.forward failed on the last rank (%d)" % (size - 1))
    state_cfg = cfg._replace(chunk_size=0)
    return o, State._make(state_cfg, flat[:rows * n].reshape(rows, n))
