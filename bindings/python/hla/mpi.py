"""Sequence parallelism over MPI (docs/spec.md section 10): forward and backward passes.

Every rank of a communicator holds a contiguous time slice of the same B sequences, ranks in time
order (rank 0 the first tokens), any slice lengths >= 1::

    from mpi4py import MPI
    import hla.mpi
    o_local, final = hla.mpi.forward(q_local, k_local, v_local, comm=MPI.COMM_WORLD, op="hla3")
    g_local = hla.mpi.backward(q_local, k_local, v_local, do_local, comm=MPI.COMM_WORLD, op="hla3")

``o_local`` is the output of this rank's tokens, equal (to the tolerances of spec section 4) to the
corresponding slice of ``hla.forward`` over the whole sequence in one process; ``final`` is the state
after the last token of the whole sequence, on every rank (a :class:`hla.State`). ``g_local`` (an
:class:`hla.Gradients`) holds dq, dk, dv of this rank's tokens, equal to the corresponding slices of
``hla.backward`` over the whole sequence; :func:`backward` documents its algorithm (the carry-ins
recomputed as below, then the state cotangents passed from rank to rank, last to first).

Forward algorithm (three steps, one collective each):

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

__all__ = ["forward", "backward", "row_bytes"]


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



def _agree(comm, rank, name, fingerprint, error, options, extra=None):
    """Share each rank's configuration fingerprint and local error (one allgather): every rank raises
    if any rank failed or has another configuration, so that none is left blocked in a later
    collective. Returns the list of every rank's `extra`."""
    reports = comm.allgather((fingerprint, None if error is None else
                              "%s: %s" % (type(error).__name__, error), extra))
    if error is not None:
        raise error
    failed = [(r, msg) for r, (_, msg, _) in enumerate(reports) if msg is not None]
    if failed:
        raise RuntimeError("hla.mpi.%s failed on rank(s) %s: %s"
                           % (name, ", ".join(str(r) for r, _ in failed), failed[0][1]))
    others = [r for r, (fp, _, _) in enumerate(reports) if fp != fingerprint]
    if others:
        raise ValueError("hla.mpi.%s: rank(s) %s have another configuration, dtype, batch or "
                         "%s than rank %d (%r vs %r)"
                         % (name, ", ".join(map(str, others)), options, rank, reports[others[0]][0],
                            fingerprint))
    return [x for _, _, x in reports]


def _exscan_carry(comm, rank, local):
    """The carry-in state rows [B, n] of this rank: MPI_Exscan of the summaries `local` (rank 0's
    after its initial_state) with the non-commutative combine, then hla_summary_to_state. None on
    rank 0 (MPI leaves its Exscan result undefined)."""
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
    if rank == 0:
        return None
    summary, _ = _views(recv, m, dtype)
    carry = _arrays.aligned_zeros((rows, _hla.state_elements(cfg)), dtype)
    _hla.summary_to_state(cfg, summary, carry, None)
    return carry


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
    _agree(comm, rank, "forward", fingerprint, error, "output_final_state")

    # 2. carry-in: exclusive scan of the summaries in rank (time) order.
    cfg, dtype, rows = local._cfg, local.dtype, local.rows
    carry = _exscan_carry(comm, rank, local)
    if rank == 0:
        carry = initial_state

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


# tag of the state-cotangent messages; they travel on a duplicate of the caller's communicator
_CHAIN_TAG = 7311


def _wait(request, max_sleep=1e-3):
    """Wait for a request without holding a core: rank r waits (P-1-r) local backwards for its d_final,
    and MPI's blocking wait polls at full speed, taking the core from a rank that computes on it
    (several ranks per host). Polls with a sleep growing to max_sleep (at most that much latency)."""
    import time

    delay = 1e-5
    while not request.Test():
        time.sleep(delay)
        delay = min(2 * delay, max_sleep)


def _state_rows_arg(x, cfg, rows, dtype, name):
    """A state-shaped argument (State or array [B, n]) as numpy rows, checked against this call."""
    if isinstance(x, State):
        _state.check_same(x._cfg, cfg, name)
        a = x.array
    else:
        a = _numpy_rows(x, name)
    n = _hla.state_elements(cfg)
    if a.ndim != 2 or a.shape != (rows, n) or a.dtype != dtype:
        raise ValueError("%s must be %d state rows of n = %d %s numbers, got shape %s of %s"
                         % (name, rows, n, np.dtype(dtype).name, tuple(a.shape), a.dtype))
    return a


def backward(q, k, v, do, comm=None, *, op="hla2", masked=True, normalize=False, decay=1.0,
             ridge=0.0, eps=1e-6, scale=1.0, initial_state=None, d_final_state=None,
             chunk_size=None, path="chunked", checkpoint_every=None):
    """Sequence-parallel backward of this rank's time slice (docs/spec.md sections 9-10).

    The gradients of a loss L through :func:`forward` of the same slices and options: every rank
    gets dq, dk, dv of its own tokens, equal (to the tolerances of spec section 4) to the
    corresponding slices of :func:`hla.backward` over the whole sequence in one process.

    Algorithm (the sequential chain; docs/scaling.md has its cost):

    1. the carry-in of every rank, recomputed exactly as :func:`forward` does (summary, the same
       ``allgather`` of configuration fingerprints and local errors, ``MPI_Exscan``, summary -> state):
       no state is kept between the forward and the backward call;
    2. the state cotangents run back through the ranks: the last rank starts from ``d_final_state``
       (or zero); rank r receives dL/d(its final state) from rank r+1 (an ``MPI_Recv`` of B rows of
       n numbers plus a status number), runs ``hla.backward(initial_state=carry_in,
       d_final_state=received)`` and sends the resulting ``d_initial_state`` (dL/d(its carry-in), which
       is dL/d(rank r-1's final state)) to rank r-1. The chain uses a duplicate of ``comm``, so its
       messages never match the caller's;
    3. rank 0's ``d_initial_state`` (the cotangent of ``initial_state``) and the chain's status are
       broadcast from rank 0 (``MPI_Bcast``), so every rank returns or every rank raises: a rank whose
       backward fails sends a failure status down the chain instead of a cotangent (the ranks below it
       skip their backward), and every rank then raises.

    Parameters
    ----------
    q, k, v, comm, op, masked, normalize, decay, ridge, eps, scale, chunk_size, path
        As :func:`forward` (collective: every rank calls, with the same options).
    do : array
        dL/do of this rank's outputs, ``[B, T_r, H, Dv]``, of q's dtype.
    checkpoint_every : int or None
        Chunks between the carries each rank's chunked backward keeps, as :func:`hla.backward` (None =
        automatic; 1 = every chunk, the fastest): a rank-local choice, the gradients do not depend on it.
    initial_state : State, Segment, array [B, n] or None
        As :func:`forward`: the carry-in before rank 0's first token, read on rank 0 only.
    d_final_state : State, array [B, n] or None
        dL/d(state after the last token of the whole sequence), read on the last rank only (other
        ranks may pass the same object or None); None is zero. The ``d_initial_state`` of a later
        call's backward goes here, so calls chain like :func:`forward`'s ``final`` -> ``initial_state``.

    Returns
    -------
    hla.Gradients
        ``(dq, dk, dv, d_initial_state)``: dq, dk, dv of this rank's tokens (kind and dtype of q, k, v);
        ``d_initial_state`` is dL/d(initial_state) as a numpy array [B, n] of the state dtype, on
        every rank, when rank 0 passed an initial_state (for a Segment: the cotangent of the state it
        stands for, as :func:`hla.backward`), else None. Symmetric blocks' cotangents are
        symmetrised (docs/gradients.md section 7).
    """
    comm = MPI.COMM_WORLD if comm is None else comm
    rank, size = comm.Get_rank(), comm.Get_size()
    opts = dict(op=op, masked=masked, normalize=normalize, decay=decay, ridge=ridge, eps=eps,
                scale=scale)
    if size == 1:
        return hla.backward(q, k, v, do, initial_state=initial_state, d_final_state=d_final_state,
                            chunk_size=chunk_size, path=path, checkpoint_every=checkpoint_every, **opts)
    last = rank == size - 1

    # 1. local summary and checks; errors and configurations are shared before any other collective.
    error, local, fingerprint, d_final = None, None, None, None
    try:
        q, k, v = _arrays.prepare(q, "q"), _arrays.prepare(k, "k"), _arrays.prepare(v, "v")
        do = _arrays.prepare(do, "do")
        local = hla.summarize(q, k, v, chunk_size=chunk_size, **opts)
        cfg = local._cfg
        sq, sv, sd = _arrays.shape(q), _arrays.shape(v), _arrays.shape(do)
        if sd != sq[:3] + sv[3:] or _arrays.dtype_name(do) != _arrays.dtype_name(q):
            raise ValueError("do must be [B, T, H, Dv] = %s of %s like the outputs, got %s of %s"
                             % (sq[:3] + sv[3:], _arrays.dtype_name(q), sd, _arrays.dtype_name(do)))
        if rank == 0:
            local = _first_segment(initial_state, local, cfg)
        if last and d_final_state is not None:
            d_final = _state_rows_arg(d_final_state, cfg, local.rows, local.dtype, "d_final_state")
        fingerprint = _fingerprint(cfg, local.dtype, local.rows)
    except Exception as e:  # noqa: BLE001 - re-raised by _agree, after telling the other ranks
        error = e
    extras = _agree(comm, rank, "backward", fingerprint, error, "options",
                    extra=(rank == 0 and initial_state is not None))
    has_initial = extras[0]

    # 2. carry-in: the forward's exclusive scan of the summaries.
    cfg, dtype, rows = local._cfg, local.dtype, local.rows
    carry = _exscan_carry(comm, rank, local)
    if rank == 0:
        carry = initial_state
    n = _hla.state_elements(cfg)

    # 3. the chain: d_final from rank r+1, local backward, d_initial to rank r-1. Each message is
    #    B*n numbers and a status (0 = fine, r+1 = rank r failed).
    chain = comm.Dup()
    try:
        status, error, g = 0, None, None
        msg = _arrays.aligned_zeros((rows * n + 1,), dtype)
        if not last:
            _wait(chain.Irecv(msg, source=rank + 1, tag=_CHAIN_TAG))
            status = int(msg[rows * n])
            d_final = msg[:rows * n].reshape(rows, n)
        if status == 0:
            try:
                g = hla.backward(q, k, v, do, initial_state=carry, d_final_state=d_final,
                                 chunk_size=chunk_size, path=path, checkpoint_every=checkpoint_every, **opts)
                if rank > 0 or has_initial:
                    # d_final was read: msg now carries this rank's d_initial (rank 0: to step 4)
                    msg[:rows * n] = np.asarray(g.d_initial_state).reshape(-1)
            except Exception as e:  # noqa: BLE001 - re-raised after the final broadcast
                error, status = e, rank + 1
        msg[rows * n] = status
        if rank > 0:
            _wait(chain.Isend(msg, dest=rank - 1, tag=_CHAIN_TAG))
    finally:
        chain.Free()

    # 4. rank 0's d_initial (when an initial_state was given) and the chain's status, to every rank.
    width = rows * n if has_initial else 0
    flat = _arrays.aligned_zeros((width + 1,), dtype)
    if rank == 0:
        if status == 0:
            flat[:width] = msg[:width]
        flat[width] = status
    _wait(comm.Ibcast(flat, root=0))       # the later ranks wait here for the whole chain
    if error is not None:
        raise error
    status = int(flat[width])
    if status != 0:
        raise RuntimeError("hla.mpi.backward failed on rank %d" % (status - 1))
    d_initial = flat[:width].reshape(rows, n) if has_initial else None
    return hla.Gradients(g.dq, g.dk, g.dv, d_initial)
