"""torch tensors through the Python API 1.0 (SPEC section 5): float32, float64, bfloat16 and float16
tensors, contiguous and strided (permuted [B,H,T,D] storage, non-contiguous slices), into
hla.forward (every operator, every path), hla.reference, hla.summarize/combine, State.step and
State.prefill. Outputs are torch tensors of q's dtype; the exactness of SPEC section 4 holds against the
float64 brute force (bruteforce.py) of the same rounded inputs. State.wrap over a torch tensor
shares its memory. Bad input raises TypeError/ValueError."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import hla  # noqa: E402
from common import CountingState  # noqa: E402
from framework_util import (DTYPE_NAMES, OPS, PATHS, SPEC_TOL, array_address, brute,  # noqa: E402
                            brute_packed, check, config_kwargs, draw, element_kwargs, opts_id,
                            options, row_close, seed_of, state_dtype_name, variants)

B, T, H, HKV, DK, DV = 2, 19, 4, 2, 8, 6
CHUNK = 5                          # 19 = 3 * 5 + 4
TORCH = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
         "float16": torch.float16}
LAYOUTS = ("contiguous", "permuted", "sliced")


def to_torch(x64, name, layout="contiguous"):
    """A torch tensor of dtype `name` holding x64 rounded, in the given memory layout."""
    dt = TORCH[name]
    t = torch.from_numpy(np.ascontiguousarray(x64))
    if layout == "contiguous":
        out = t.to(dt).contiguous()
    elif layout == "permuted":        # [B,H,T,D] storage (attention's usual layout) viewed as [B,T,H,D]
        out = t.permute(0, 2, 1, 3).contiguous().to(dt).permute(0, 2, 1, 3)
    else:                             # every other time step and an inner feature range of a buffer
        b, n, h, d = t.shape
        buf = torch.full((b, 2 * n, h, d + 3), float("nan"), dtype=dt)
        buf[:, ::2, :, 1:1 + d] = t.to(dt)
        out = buf[:, ::2, :, 1:1 + d]
    assert out.dtype == dt and tuple(out.shape) == x64.shape
    assert out.is_contiguous() == (layout == "contiguous")
    return out


def to64(t):
    """Exact float64 numpy copy of a tensor's values."""
    return t.detach().to(torch.float64).cpu().numpy()


def inputs(seed, name, layout="contiguous", b=B, n=T):
    qkv64 = draw(b, n, H, HKV, DK, DV, seed)
    ts = tuple(to_torch(x, name, layout) for x in qkv64)
    return ts, tuple(to64(x) for x in ts)


def assert_torch_out(o, name, shape):
    assert isinstance(o, torch.Tensor), type(o)
    assert o.dtype == TORCH[name], (o.dtype, name)
    assert tuple(o.shape) == shape, (tuple(o.shape), shape)


def new_state(opts, name, batch=B):
    return hla.State(batch=batch, dtype=state_dtype_name(name), **config_kwargs(opts, H, HKV, DK, DV))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", DTYPE_NAMES)
@pytest.mark.parametrize("op", OPS)
def test_forward_and_reference(op, name, layout):
    (q, k, v), (q64, k64, v64) = inputs(seed_of("torch", op, name), name, layout)
    for opts in variants(op, DK):
        want, kappa = brute(q64, k64, v64, **opts)
        for path in PATHS:
            o, final = hla.forward(q, k, v, path=path, chunk_size=CHUNK, **opts)
            assert final is None
            assert_torch_out(o, name, (B, T, H, DV))
            check(to64(o), want, name, kappa, "%s %s %s %s" % (op, path, layout, opts_id(opts)))
        o = hla.reference(q, k, v, **opts)
        assert_torch_out(o, name, (B, T, H, DV))
        check(to64(o), want, name, kappa, "%s reference %s %s" % (op, layout, opts_id(opts)))
    o, _ = hla.forward(q, k, v, op=op, scale=DK ** -0.5)          # defaults: chunked, automatic chunks
    assert_torch_out(o, name, (B, T, H, DV))
    check(to64(o), brute(q64, k64, v64, **options(op, scale=DK ** -0.5))[0], name,
          what="%s defaults" % op)


@pytest.mark.parametrize("name", DTYPE_NAMES)
@pytest.mark.parametrize("op", OPS)
def test_final_state_and_continuation(op, name):
    """final is a State (state dtype float32, float64 for float64), [B, n]; continuing from it, from
    its numpy array, from a torch tensor copy of it, or from a Segment reproduces the sequence."""
    (q, k, v), (q64, k64, v64) = inputs(seed_of("torch-final", op, name), name, "permuted")
    a = 11
    sdt = np.dtype(state_dtype_name(name))
    for opts in variants(op, DK)[:3]:
        want, kappa = brute(q64, k64, v64, **opts)
        n = hla.state_elements(**element_kwargs(opts, H, HKV, DK, DV))
        for path in PATHS:
            o1, fin = hla.forward(q[:, :a], k[:, :a], v[:, :a], path=path, chunk_size=CHUNK,
                                  output_final_state=True, **opts)
            assert_torch_out(o1, name, (B, a, H, DV))
            assert isinstance(fin, hla.State)
            assert fin.array.dtype == sdt and fin.array.shape == (B, n)
            carries = [("State", fin), ("numpy array", fin.array.copy()),
                       ("torch tensor", torch.from_numpy(fin.array.copy())),
                       ("Segment", hla.summarize(q[:, :a], k[:, :a], v[:, :a], **opts))]
            for what, init in carries:
                o2, _ = hla.forward(q[:, a:], k[:, a:], v[:, a:], path=path, chunk_size=CHUNK,
                                    initial_state=init, **opts)
                assert_torch_out(o2, name, (B, T - a, H, DV))
                check(to64(torch.cat([o1, o2], dim=1)), want, name, kappa,
                      "%s %s carry from %s %s" % (op, path, what, opts_id(opts)))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", DTYPE_NAMES)
@pytest.mark.parametrize("op", OPS)
def test_state_prefill_and_step(op, name, layout):
    """State.prefill of a prompt, then State.step over strided [B,H,D] token views."""
    (q, k, v), (q64, k64, v64) = inputs(seed_of("torch-step", op, name), name, layout)
    a = 8
    for opts in variants(op, DK)[:3]:
        want, kappa = brute(q64, k64, v64, **opts)
        st = new_state(opts, name)
        assert st.array.dtype == np.dtype(state_dtype_name(name))
        o1 = st.prefill(q[:, :a], k[:, :a], v[:, :a])
        assert_torch_out(o1, name, (B, a, H, DV))
        outs = [o1]
        for t in range(a, T):
            o_t = st.step(q[:, t], k[:, t], v[:, t])
            assert_torch_out(o_t, name, (B, H, DV))
            outs.append(o_t[:, None])
        check(to64(torch.cat(outs, dim=1)), want, name, kappa,
              "%s prefill+step %s %s" % (op, layout, opts_id(opts)))
        # the streaming state equals the chunked path's final state
        _, fin = hla.forward(q, k, v, chunk_size=CHUNK, output_final_state=True, **opts)
        row_close(st.array, fin.array, SPEC_TOL[state_dtype_name(name)] * 10,
                  "%s streaming vs chunked final state" % op)


@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_step_torch_takes_the_one_call_path(name):
    """State.step with torch tensors that do not require grad (q, k, v, out; rows None, a numpy array, such a
    tensor or a list) runs in the C method (none of these calls reaches State._step), through torch's C DLPack
    exporter, with the same bits as the general path (which tensors requiring grad take: detached in Python);
    the output is a new torch tensor of q's dtype, or `out`. Mixed kinds go to the general path. The extension
    still refuses a tensor requiring grad handed to it directly (torch's __dlpack__ refuses it)."""
    opts = options("hla3", normalize=True, decay=0.9)
    slots = 3
    a, b = (cls(batch=slots, dtype=state_dtype_name(name), **config_kwargs(opts, H, HKV, DK, DV))
            for cls in (CountingState, hla.State))
    (q, k, v), _ = inputs(seed_of("torch-one-call", name), name, "sliced", b=2, n=4)
    rows = np.array([2, 0])

    def same(ra, rb):
        assert isinstance(ra, torch.Tensor) and ra.dtype == TORCH[name] and tuple(ra.shape) == (2, H, DV)
        assert torch.equal(ra, rb) and np.array_equal(a.array, b.array)

    c0 = CountingState.calls
    same(a.step(q[:, 0], k[:, 0], v[:, 0], rows),
         b.step(q[:, 0].detach().requires_grad_(True), k[:, 0], v[:, 0], rows))
    out = torch.empty(2, H, DV, dtype=TORCH[name])
    ra = a.step(q[:, 1], k[:, 1], v[:, 1], rows=rows, out=out)
    assert ra is out
    same(ra, b.step(q[:, 1], k[:, 1].detach().requires_grad_(True), v[:, 1], rows=rows))
    assert CountingState.calls == c0                        # all of a's calls in the C method
    same(a.step(q[:, 3], k[:, 3], v[:, 3], torch.from_numpy(rows)), b.step(q[:, 3], k[:, 3], v[:, 3], rows))
    same(a.step(q[:, 0], k[:, 0], v[:, 0], [2, 0]), b.step(q[:, 0], k[:, 0], v[:, 0], rows))
    assert CountingState.calls == c0                        # rows as a torch tensor or a list too
    same(a.step(q[:, 2], k[:, 2].detach().requires_grad_(True), v[:, 2], rows), b.step(q[:, 2], k[:, 2], v[:, 2], rows))
    assert CountingState.calls == c0 + 1
    if name in ("float32", "float64"):                  # a numpy q with torch k and v: the general path
        same(torch.from_numpy(np.asarray(a.step(q[:, 0].numpy(), k[:, 0], v[:, 0], rows))),
             b.step(q[:, 0], k[:, 0], v[:, 0], rows))
        assert CountingState.calls == c0 + 2
    # without out, float16/32/64 outputs are tensors over numpy arrays the State's lock keeps: one is written
    # again only once no tensor refers to it (the library writes every element of an output)
    first = a.step(q[:, 0], k[:, 0], v[:, 0], rows)
    held, ptr = first.clone(), first.data_ptr()
    second = a.step(q[:, 1], k[:, 1], v[:, 1], rows)
    assert torch.equal(first, held) and second.data_ptr() != ptr
    del first
    blocker = np.empty((2, H, DV), held.numpy().dtype if name != "bfloat16" else np.float16)  # takes a freed block
    third = a.step(q[:, 2], k[:, 2], v[:, 2], rows)
    del blocker
    if name != "bfloat16":          # (bfloat16 outputs come from torch.empty, whose memory malloc may hand back)
        assert third.data_ptr() == ptr
    assert CountingState.calls == c0 + (2 if name in ("float32", "float64") else 1)
    cfg, o = a._cfg, torch.empty(2, H, DV, dtype=TORCH[name])
    with pytest.raises(TypeError, match="DLPack"):
        hla._hla.step(cfg, q[:, 0].detach().requires_grad_(True), k[:, 0], v[:, 0], o, a.array, rows)


@pytest.mark.parametrize("name", DTYPE_NAMES)
@pytest.mark.parametrize("op", OPS)
def test_summarize_combine(op, name):
    (q, k, v), (q64, k64, v64) = inputs(seed_of("torch-scan", op, name), name, "sliced")
    a, b = 6, 13
    for opts in variants(op, DK):
        want, kappa = brute(q64, k64, v64, **opts)
        sa = hla.summarize(q[:, :a], k[:, :a], v[:, :a], **opts)
        sb = hla.summarize(q[:, a:b], k[:, a:b], v[:, a:b], **opts)
        assert sa.array.dtype == np.dtype(state_dtype_name(name))
        assert np.all(np.asarray(sa.length) == a)
        c = hla.combine(sa, sb)
        assert np.all(np.asarray(c.length) == b)
        for path in PATHS:
            o, _ = hla.forward(q[:, b:], k[:, b:], v[:, b:], path=path, chunk_size=CHUNK,
                               initial_state=c, **opts)
            assert_torch_out(o, name, (B, T - b, H, DV))
            check(to64(o), want[:, b:], name, kappa,
                  "%s %s from combine %s" % (op, path, opts_id(opts)))


@pytest.mark.parametrize("name", ["float32", "bfloat16"])
def test_packed_and_rows_as_torch_tensors(name):
    """fla's convention: cu_seqlens as a torch int32/int64 tensor; rows as a torch int tensor."""
    lengths = [5, 1, 9]
    cu = np.concatenate([[0], np.cumsum(lengths)])
    (q, k, v), (q64, k64, v64) = inputs(seed_of("torch-varlen", name), name, "contiguous", 1, cu[-1])
    opts = variants("hla2", DK)[3]
    want, kappa = brute_packed(q64, k64, v64, cu, **opts)
    for idt in (torch.int32, torch.int64):
        o, fin = hla.forward(q, k, v, cu_seqlens=torch.tensor(cu, dtype=idt), chunk_size=4,
                             output_final_state=True, **opts)
        assert_torch_out(o, name, (1, cu[-1], H, DV))
        check(to64(o), want, name, kappa, "torch cu_seqlens %s" % idt)
        assert fin.array.shape[0] == len(lengths)
    st = new_state(opts, name, batch=6)
    rows = torch.tensor([4, 0, 2], dtype=torch.int64)
    o = st.prefill(q, k, v, rows=rows, cu_seqlens=torch.tensor(cu, dtype=torch.int32))
    check(to64(o), want, name, kappa, "prefill with torch rows and cu_seqlens")
    row_close(st.array[[4, 0, 2]], fin.array, 10 * SPEC_TOL[state_dtype_name(name)],
              "prefill rows vs packed forward final")
    assert np.all(st.array[[1, 3, 5]] == 0)
    # one more token for the three sequences, by torch rows
    (qt, kt, vt), (qt64, kt64, vt64) = inputs(seed_of("torch-varlen-next", name), name,
                                              "contiguous", 1, 3)
    o_t = st.step(qt[0], kt[0], vt[0], rows=rows)
    assert_torch_out(o_t, name, (3, H, DV))
    for i, (s, e) in enumerate(zip(cu[:-1], cu[1:])):
        full = [np.concatenate([x[:, s:e], y[:, i:i + 1]], axis=1)
                for x, y in ((q64, qt64), (k64, kt64), (v64, vt64))]
        w, kp = brute(*full, **opts)
        check(to64(o_t[i]), w[0, -1], name, kp, "step of packed sequence %d" % i)


@pytest.mark.parametrize("name", ["float32", "float64", "bfloat16"])
def test_state_wrap_torch_tensor_no_copy(name):
    """State.wrap over a torch tensor [rows, n]: the same memory (data_ptr), mutations visible both
    ways, steps write into the tensor."""
    opts = variants("hla2", DK)[3]
    n = hla.state_elements(**element_kwargs(opts, H, HKV, DK, DV))
    sdt = TORCH[state_dtype_name(name)]
    buf = torch.zeros(3, n, dtype=sdt)
    st = hla.State.wrap(buf, **config_kwargs(opts, H, HKV, DK, DV))
    assert st.array.shape == (3, n)
    assert st.array.dtype == np.dtype(state_dtype_name(name))
    assert array_address(st.array) == buf.data_ptr()
    buf[1, 5] = 2.5
    assert st.array[1, 5] == 2.5
    st.array[2, 7] = -1.25
    assert buf[2, 7].item() == -1.25
    st.reset()
    assert torch.count_nonzero(buf).item() == 0
    # stepping the wrapped state advances the caller's tensor exactly like an owned State
    (q, k, v), (q64, k64, v64) = inputs(seed_of("torch-wrap", name), name, "contiguous", 3, 6)
    own = new_state(opts, name, batch=3)
    outs = []
    for t in range(6):
        o_t = st.step(q[:, t], k[:, t], v[:, t])
        assert_torch_out(o_t, name, (3, H, DV))
        outs.append(o_t[:, None])
        own.step(q[:, t], k[:, t], v[:, t])
    assert buf.data_ptr() == array_address(st.array)
    assert torch.count_nonzero(buf).item() > 0
    np.testing.assert_array_equal(buf.numpy(), own.array)
    want, kappa = brute(q64, k64, v64, **opts)
    check(to64(torch.cat(outs, dim=1)), want, name, kappa, "wrapped torch state steps")
    # and a forward from the wrapped tensor, as initial_state, continues the sequences
    (q2, k2, v2), (q264, k264, v264) = inputs(seed_of("torch-wrap2", name), name, "contiguous", 3, 4)
    o2, _ = hla.forward(q2, k2, v2, initial_state=buf, **opts)
    full = [np.concatenate(p, axis=1) for p in ((q64, q264), (k64, k264), (v64, v264))]
    w2, kp2 = brute(*full, **opts)
    check(to64(o2), w2[:, 6:], name, kp2, "forward from a wrapped tensor")


def test_errors():
    (q, k, v), _ = inputs(1, "float32", "contiguous", 1, 5)
    with pytest.raises(TypeError):
        hla.forward(q, k.double(), v)                              # mixed dtypes
    with pytest.raises(TypeError):
        hla.forward(q.half(), k.bfloat16(), v.half())
    with pytest.raises(TypeError):
        hla.reference(q, k, v.double())
    with pytest.raises(TypeError):
        hla.summarize(q.bfloat16(), k.bfloat16(), v)
    with pytest.raises((TypeError, ValueError)):
        hla.forward(q.to(torch.int32), k.to(torch.int32), v.to(torch.int32))   # not a float type
    with pytest.raises(ValueError):
        hla.forward(q[0], k[0], v[0])                              # rank 3
    with pytest.raises(ValueError):
        hla.forward(q, k[..., :DK - 1], v)                         # dk mismatch
    with pytest.raises(ValueError):
        hla.forward(q, k[:, :4], v[:, :4])                         # T mismatch
    with pytest.raises(ValueError):
        hla.forward(q[:, :, :3], k, v)                             # H % Hkv != 0
    with pytest.raises(ValueError):
        hla.reference(q, k, v[:, :, :1])                           # Hkv mismatch between k and v
    st = new_state(options("hla2"), "float32", batch=1)
    with pytest.raises(ValueError):
        st.step(q[:, 0, :, :DK - 1], k[:, 0], v[:, 0])             # step: wrong dk
    with pytest.raises(ValueError):
        st.step(q[:, :2], k[:, :2], v[:, :2])                      # step: rank 4
    with pytest.raises(TypeError):
        st.step(q[:, 0].double(), k[:, 0], v[:, 0])
    assert np.all(st.array == 0)
    n = st.array.shape[1]
    with pytest.raises(ValueError):
        hla.State.wrap(torch.zeros(2, n + 1), **config_kwargs(options("hla2"), H, HKV, DK, DV))
    with pytest.raises((TypeError, ValueError)):
        hla.State.wrap(torch.zeros(2, n, dtype=torch.float16),
                       **config_kwargs(options("hla2"), H, HKV, DK, DV))


def test_state_wrap_keeps_memory_alive():
    """A State over a torch tensor stays valid after the caller drops its reference."""
    import gc

    opts = variants("ahla", DK)[0]
    n = hla.state_elements(**element_kwargs(opts, H, HKV, DK, DV))
    st = hla.State.wrap(torch.zeros(2, n), **config_kwargs(opts, H, HKV, DK, DV))
    gc.collect()
    (q, k, v), (q64, k64, v64) = inputs(seed_of("torch-alive"), "float32", "contiguous", 2, 3)
    outs = [st.step(q[:, t], k[:, t], v[:, t])[:, None] for t in range(3)]
    want, kappa = brute(q64, k64, v64, **opts)
    check(to64(torch.cat(outs, dim=1)), want, "float32", kappa, "wrapped temporary tensor")
    assert np.all(np.isfinite(st.array)) and np.any(st.array != 0)
