// XLA FFI handlers of hla.jax (bindings/python/hla/jax.py): libhla's hla_forward and hla_backward, and
// their checkpointed forms hla_forward_checkpoints and hla_backward_checkpoints, as typed XLA custom
// calls on the CPU (custom_call_api_version 4). Built into hla/_hla_jax_ffi.so, only
// when JAX is installed (its headers: jax.ffi.include_dir()), by setup.py's build_ext or `make jax-ffi`.
//
// Buffers arrive row-major and contiguous (XLA's default layout for custom-call operands); each one is
// described to libhla as an hla_tensor over XLA's memory, nothing is copied. Operand conventions (the
// Python side builds them; every check that can be done on shapes is also done here, so a bad call
// returns an error and never touches memory out of bounds):
//
//   forward:  q [..., B,T,H,dk], k [..., B,T,Hkv,dk], v [..., B,T,Hkv,dv], initial [..., N, n] (or a
//             placeholder when has_initial is false), cu_seqlens [..., N+1] int32/int64 (placeholder when
//             has_cu is false)  ->  o [..., B,T,H,dv], final [..., N, n] (placeholder when want_final
//             is false).
//   backward: q, k, v, d_out [..., B,T,H,dv], initial, cu_seqlens, d_final [..., N, n] (placeholder when
//             has_d_final is false)  ->  dq, dk, dv, d_initial [..., N, n] (placeholder when has_initial
//             is false).
//   forward_checkpoints (hla_forward_checkpoints, chunked path only): the forward's operands  ->  o,
//             final, checkpoints [..., R, n] (state dtype; R = hla_checkpoint_rows of one leading index:
//             B sequences of T tokens, or N packed sequences; may be 0).
//   backward_checkpoints (hla_backward_checkpoints, chunked path only): the backward's operands, then
//             checkpoints [..., R, n] as forward_checkpoints wrote them  ->  dq, dk, dv, d_initial.
//   The two checkpointed targets also take the attribute checkpoint_every (hla_config.checkpoint_every:
//   chunks between the checkpoints, 0 = automatic; R depends on it), the same for a forward and its
//   backward.
//
// The leading "..." axes (none, or those jax.vmap adds with vmap_method="broadcast_all") are batch
// axes of the call: without cu_seqlens they fold into B (one library call over L*B sequences); with
// cu_seqlens each leading index has its own packing, so the call loops over them. Checkpoints follow
// both: a folded call of L*B sequences has L*R rows (R = (T-1)/stride per sequence, the stride depends on
// T and the chunk only), sequence l*B+b's rows after those of the sequences before it, i.e. exactly the
// [L, R, n] array; a looped call reads and writes leading index l's own [R, n] rows.
// Errors (shapes, dtypes, anything libhla rejects: its hla_last_error() message) are returned as
// ffi::Error; JAX raises them as exceptions.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "hla.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Options {
  int64_t op, chunk_size, path, checkpoint_every;  // checkpoint_every: 0 (automatic) for the plain targets
  bool masked, normalize;
  double scale, decay, ridge, eps;
};

ffi::Error Invalid(const std::string& what) {
  return ffi::Error(ffi::ErrorCode::kInvalidArgument, "hla.jax: " + what);
}

ffi::Error LibraryError(const char* fn, hla_status status) {
  const char* msg = hla_last_error();
  std::string text = std::string(fn) + " failed (" + hla_status_string(status) + ")";
  if (msg != nullptr && msg[0] != '\0') text += ": " + std::string(msg);
  return ffi::Error(status == HLA_ERR_OUT_OF_MEMORY ? ffi::ErrorCode::kResourceExhausted
                                                    : ffi::ErrorCode::kInvalidArgument,
                    text);
}

bool HlaDtype(ffi::DataType t, int32_t* out) {
  switch (t) {
    case ffi::DataType::F32: *out = HLA_FLOAT32; return true;
    case ffi::DataType::F64: *out = HLA_FLOAT64; return true;
    case ffi::DataType::BF16: *out = HLA_BFLOAT16; return true;
    case ffi::DataType::F16: *out = HLA_FLOAT16; return true;
    case ffi::DataType::S32: *out = HLA_INT32; return true;
    case ffi::DataType::S64: *out = HLA_INT64; return true;
    default: return false;
  }
}

// One operand: base pointer, hla dtype, element size in bytes and its dimensions.
struct Operand {
  const char* name;
  char* data;
  int32_t dtype;
  size_t elem;
  std::vector<int64_t> dims;
};

ffi::Error Describe(const char* name, ffi::DataType t, void* data, ffi::AnyBuffer::Dimensions dims,
                    Operand* out) {
  out->name = name;
  out->data = static_cast<char*>(data);
  if (!HlaDtype(t, &out->dtype))
    return Invalid(std::string(name) + " has an element type libhla does not take");
  out->elem = ffi::ByteWidth(t);
  out->dims.assign(dims.begin(), dims.end());
  return ffi::Error::Success();
}

ffi::Error Describe(const char* name, const ffi::AnyBuffer& b, Operand* out) {
  return Describe(name, b.element_type(), b.untyped_data(), b.dimensions(), out);
}

ffi::Error Describe(const char* name, ffi::Result<ffi::AnyBuffer>& b, Operand* out) {
  return Describe(name, b->element_type(), b->untyped_data(), b->dimensions(), out);
}

// The call's geometry: `lead` leading batch axes of total size L, then B, T, H, dk of q.
struct Geometry {
  size_t lead = 0;
  std::vector<int64_t> lead_dims;
  int64_t L = 1, B = 0, T = 0, H = 0, Hkv = 0, dk = 0, dv = 0, N = 0, n = 0;
};

// Checks that x has the leading axes of the call followed by `tail` (-1: any size, reported in *got).
ffi::Error CheckShape(const Operand& x, const Geometry& g, std::vector<int64_t> tail,
                      std::vector<int64_t>* got = nullptr) {
  bool ok = x.dims.size() == g.lead + tail.size();
  for (size_t i = 0; ok && i < g.lead; ++i) ok = x.dims[i] == g.lead_dims[i];
  for (size_t i = 0; ok && i < tail.size(); ++i)
    ok = tail[i] < 0 || x.dims[g.lead + i] == tail[i];
  if (!ok) {
    std::string want = "[";
    for (size_t i = 0; i < g.lead; ++i) want += std::to_string(g.lead_dims[i]) + ", ";
    for (size_t i = 0; i < tail.size(); ++i)
      want += (i ? ", " : "") + (tail[i] < 0 ? std::string("*") : std::to_string(tail[i]));
    want += "]";
    std::string have = "[";
    for (size_t i = 0; i < x.dims.size(); ++i) have += (i ? ", " : "") + std::to_string(x.dims[i]);
    have += "]";
    return Invalid(std::string(x.name) + " has shape " + have + ", expected " + want);
  }
  if (got) got->assign(x.dims.begin() + g.lead, x.dims.end());
  return ffi::Error::Success();
}

ffi::Error Setup(const Options& o, const Operand& q, const Operand& k, const Operand& v,
                 hla_config* cfg, Geometry* g) {
  if (q.dims.size() < 4)
    return Invalid("q must be [B, T, H, dk] (with leading batch axes under vmap), got rank " +
                   std::to_string(q.dims.size()));
  g->lead = q.dims.size() - 4;
  g->lead_dims.assign(q.dims.begin(), q.dims.begin() + g->lead);
  for (int64_t d : g->lead_dims) g->L *= d;
  g->B = q.dims[g->lead];
  g->T = q.dims[g->lead + 1];
  g->H = q.dims[g->lead + 2];
  g->dk = q.dims[g->lead + 3];
  std::vector<int64_t> ks, vs;
  if (auto e = CheckShape(k, *g, {g->B, g->T, -1, g->dk}, &ks); e.failure()) return e;
  g->Hkv = ks[2];
  if (auto e = CheckShape(v, *g, {g->B, g->T, g->Hkv, -1}, &vs); e.failure()) return e;
  g->dv = vs[3];
  if (k.dtype != q.dtype || v.dtype != q.dtype)
    return Invalid("q, k and v must share one element type");
  hla_status s = hla_config_init(cfg, sizeof *cfg);
  if (s != HLA_OK) return LibraryError("hla_config_init", s);
  cfg->op = static_cast<int32_t>(o.op);
  cfg->masked = o.masked ? 1 : 0;
  cfg->normalize = o.normalize ? 1 : 0;
  // Sizes the tensors cannot give (a zero extent) become 1, so that libhla's check of the tensors
  // reports the bad shape rather than the configuration.
  cfg->heads = g->H > 0 ? g->H : 1;
  cfg->kv_heads = g->Hkv > 0 ? g->Hkv : 1;
  cfg->dk = g->dk > 0 ? g->dk : 1;
  cfg->dv = g->dv > 0 ? g->dv : 1;
  cfg->scale = o.scale;
  cfg->decay = o.decay;
  cfg->ridge = o.ridge;
  cfg->eps = o.eps;
  cfg->chunk_size = o.chunk_size;
  cfg->checkpoint_every = o.checkpoint_every;
  s = hla_state_elements(cfg, &g->n);
  if (s != HLA_OK) return LibraryError("hla_state_elements", s);
  return ffi::Error::Success();
}

// Sequences N per leading index: B, or the length of cu_seqlens minus one.
ffi::Error Sequences(bool has_cu, const Operand& cu, Geometry* g) {
  if (!has_cu) {
    g->N = g->B;
    return ffi::Error::Success();
  }
  std::vector<int64_t> cs;
  if (auto e = CheckShape(cu, *g, {-1}, &cs); e.failure()) return e;
  if (cu.dtype != HLA_INT32 && cu.dtype != HLA_INT64)
    return Invalid("cu_seqlens must be int32 or int64");
  g->N = cs[0] > 0 ? cs[0] - 1 : 0;
  return ffi::Error::Success();
}

ffi::Error Tensor(const Operand& x, char* data, std::vector<int64_t> shape, hla_tensor* t) {
  hla_status s = hla_tensor_init(t, data, x.dtype, static_cast<int32_t>(shape.size()), shape.data(),
                                 nullptr);
  if (s != HLA_OK) return LibraryError("hla_tensor_init", s);
  return ffi::Error::Success();
}

// hla_tensor views of one library call: leading index l of the per-index loop (cu_seqlens), or the
// whole folded batch (rows = L * B sequences) when there is no cu_seqlens.
struct Slice {
  int64_t rows;   // sequences in this call (B, or L*B folded)
  int64_t batch;  // tensors' B axis in this call
  int64_t index;  // leading index (loop), 0 when folded
};

// The hla_tensor of slice s of a token tensor [B, T, heads, d], a state [N, n] and cu_seqlens [N + 1]
// (leading index s.index of each).
ffi::Error TokenView(const Operand& x, const Geometry& g, const Slice& s, int64_t heads, int64_t d,
                     hla_tensor* t) {
  char* p = x.data + static_cast<size_t>(s.index) * static_cast<size_t>(g.B * g.T * heads * d) * x.elem;
  return Tensor(x, p, {s.batch, g.T, heads, d}, t);
}
ffi::Error StateView(const Operand& x, const Geometry& g, const Slice& s, hla_tensor* t) {
  char* p = x.data + static_cast<size_t>(s.index) * static_cast<size_t>(g.N * g.n) * x.elem;
  return Tensor(x, p, {s.rows, g.n}, t);
}
ffi::Error CuView(const Operand& x, const Geometry& g, const Slice& s, hla_tensor* t) {
  char* p = x.data + static_cast<size_t>(s.index) * static_cast<size_t>(g.N + 1) * x.elem;
  return Tensor(x, p, {g.N + 1}, t);
}

// Checkpoint rows R of one leading index (hla_checkpoint_rows: B sequences of T tokens, or N packed).
ffi::Error CheckpointRows(const hla_config& cfg, const Geometry& g, bool has_cu, int64_t* rows) {
  if (has_cu && g.N < 1) return Invalid("cu_seqlens must have at least 2 entries");
  int64_t stride = 0;
  hla_status s = hla_checkpoint_rows(&cfg, g.B, g.T, has_cu ? g.N : 0, rows, &stride);
  if (s != HLA_OK) return LibraryError("hla_checkpoint_rows", s);
  return ffi::Error::Success();
}

// Checks the checkpoint operand [..., R, n] (state dtype) of a call.
ffi::Error CheckCheckpoints(const Operand& x, const Geometry& g, int64_t rows, int32_t want_dtype) {
  if (auto e = CheckShape(x, g, {rows, g.n}); e.failure()) return e;
  if (x.dtype != want_dtype)
    return Invalid(std::string(x.name) + " must be " +
                   (want_dtype == HLA_FLOAT64 ? "float64" : "float32") + " (the state dtype)");
  return ffi::Error::Success();
}

// The checkpoint operand of a call (chunked path only): described into *ck, its rows per leading index
// into *rows, shape and dtype checked.
template <typename Buffer>
ffi::Error CheckpointOperand(Buffer& b, int64_t path, const hla_config& cfg, const Geometry& g,
                             bool has_cu, int32_t sdt, Operand* ck, int64_t* rows) {
  if (path != HLA_PATH_CHUNKED) return Invalid("checkpoints are written and read on the chunked path only");
  if (auto e = Describe("checkpoints", b, ck); e.failure()) return e;
  if (auto e = CheckpointRows(cfg, g, has_cu, rows); e.failure()) return e;
  return CheckCheckpoints(*ck, g, *rows, sdt);
}

// The checkpoint rows of slice s: s.batch / B leading indices (all L folded, or one) of R rows each,
// starting at leading index s.index. Zero rows: data NULL (libhla accepts an empty tensor so).
ffi::Error CheckpointView(const Operand& x, const Geometry& g, const Slice& s, int64_t rows,
                          hla_tensor* t) {
  int64_t count = (s.batch / g.B) * rows;
  char* p = count == 0 ? nullptr
                       : x.data + static_cast<size_t>(s.index) * static_cast<size_t>(rows * g.n) * x.elem;
  return Tensor(x, p, {count, g.n}, t);
}

ffi::Error CheckState(const Operand& x, const Geometry& g, int32_t want_dtype) {
  if (auto e = CheckShape(x, g, {g.N, g.n}); e.failure()) return e;
  if (x.dtype != want_dtype)
    return Invalid(std::string(x.name) + " must be " +
                   (want_dtype == HLA_FLOAT64 ? "float64" : "float32") +
                   " (the state dtype: float64 for float64 inputs, float32 otherwise)");
  return ffi::Error::Success();
}

int32_t StateDtype(int32_t dtype) { return dtype == HLA_FLOAT64 ? HLA_FLOAT64 : HLA_FLOAT32; }

// Calls fn(slice) once for the folded batch, or once per leading index with cu_seqlens.
template <typename Fn>
ffi::Error ForEachCall(bool has_cu, const Geometry& g, Fn fn) {
  if (g.L == 0) return ffi::Error::Success();  // an empty vmap: nothing to compute
  if (!has_cu) return fn(Slice{g.L * g.B, g.L * g.B, 0});
  for (int64_t l = 0; l < g.L; ++l) {
    if (auto e = fn(Slice{g.N, g.B, l}); e.failure()) return e;
  }
  return ffi::Error::Success();
}

// hla_forward, or hla_forward_checkpoints when ck_b is not null (its result buffer).
ffi::Error Forward(const Options& opt, ffi::AnyBuffer& q_b, ffi::AnyBuffer& k_b, ffi::AnyBuffer& v_b,
                   ffi::AnyBuffer& initial_b, ffi::AnyBuffer& cu_b, ffi::Result<ffi::AnyBuffer>& o_b,
                   ffi::Result<ffi::AnyBuffer>& final_b, ffi::Result<ffi::AnyBuffer>* ck_b,
                   bool has_initial, bool has_cu, bool want_final) {
  Operand q, k, v, initial, cu, o, fin, ck;
  if (auto e = Describe("q", q_b, &q); e.failure()) return e;
  if (auto e = Describe("k", k_b, &k); e.failure()) return e;
  if (auto e = Describe("v", v_b, &v); e.failure()) return e;
  hla_config cfg;
  Geometry g;
  if (auto e = Setup(opt, q, k, v, &cfg, &g); e.failure()) return e;
  if (has_cu) {
    if (auto e = Describe("cu_seqlens", cu_b, &cu); e.failure()) return e;
  }
  if (auto e = Sequences(has_cu, cu, &g); e.failure()) return e;
  if (auto e = Describe("output", o_b, &o); e.failure()) return e;
  if (auto e = CheckShape(o, g, {g.B, g.T, g.H, g.dv}); e.failure()) return e;
  if (o.dtype != q.dtype) return Invalid("output must have q's element type");
  int32_t sdt = StateDtype(q.dtype);
  if (has_initial) {
    if (auto e = Describe("initial_state", initial_b, &initial); e.failure()) return e;
    if (auto e = CheckState(initial, g, sdt); e.failure()) return e;
  }
  if (want_final) {
    if (auto e = Describe("final_state", final_b, &fin); e.failure()) return e;
    if (auto e = CheckState(fin, g, sdt); e.failure()) return e;
  }
  int64_t ck_rows = 0;
  if (ck_b != nullptr) {
    if (auto e = CheckpointOperand(*ck_b, opt.path, cfg, g, has_cu, sdt, &ck, &ck_rows); e.failure()) return e;
    // With cu_seqlens, ck_rows is a bound over every packing and the rows past a packing's last
    // checkpoint are not written: zero them, so that the result is defined. (Without, all are written.)
    size_t bytes = static_cast<size_t>(g.L * ck_rows * g.n) * ck.elem;
    if (has_cu && bytes > 0) std::memset(ck.data, 0, bytes);
  }
  return ForEachCall(has_cu, g, [&](const Slice& s) -> ffi::Error {
    hla_tensor tq, tk, tv, to, tcu, tin, tfin, tck;
    if (auto e = TokenView(q, g, s, g.H, g.dk, &tq); e.failure()) return e;
    if (auto e = TokenView(k, g, s, g.Hkv, g.dk, &tk); e.failure()) return e;
    if (auto e = TokenView(v, g, s, g.Hkv, g.dv, &tv); e.failure()) return e;
    if (auto e = TokenView(o, g, s, g.H, g.dv, &to); e.failure()) return e;
    if (has_cu) {
      if (auto e = CuView(cu, g, s, &tcu); e.failure()) return e;
    }
    if (has_initial) {
      if (auto e = StateView(initial, g, s, &tin); e.failure()) return e;
    }
    if (want_final) {
      if (auto e = StateView(fin, g, s, &tfin); e.failure()) return e;
    }
    if (ck_b != nullptr) {
      if (auto e = CheckpointView(ck, g, s, ck_rows, &tck); e.failure()) return e;
      hla_status st = hla_forward_checkpoints(&cfg, &tq, &tk, &tv, &to, has_cu ? &tcu : nullptr,
                                              has_initial ? &tin : nullptr,
                                              want_final ? &tfin : nullptr, nullptr, &tck);
      if (st != HLA_OK) return LibraryError("hla_forward_checkpoints", st);
      return ffi::Error::Success();
    }
    hla_status st = hla_forward(&cfg, static_cast<int32_t>(opt.path), &tq, &tk, &tv, &to,
                                has_cu ? &tcu : nullptr, has_initial ? &tin : nullptr,
                                want_final ? &tfin : nullptr, nullptr);
    if (st != HLA_OK) return LibraryError("hla_forward", st);
    return ffi::Error::Success();
  });
}

ffi::Error ForwardImpl(ffi::AnyBuffer q_b, ffi::AnyBuffer k_b, ffi::AnyBuffer v_b,
                       ffi::AnyBuffer initial_b, ffi::AnyBuffer cu_b, ffi::Result<ffi::AnyBuffer> o_b,
                       ffi::Result<ffi::AnyBuffer> final_b, int64_t op, bool masked, bool normalize,
                       double scale, double decay, double ridge, double eps, int64_t chunk_size,
                       int64_t path, bool has_initial, bool has_cu, bool want_final) {
  Options opt{op, chunk_size, path, 0, masked, normalize, scale, decay, ridge, eps};
  return Forward(opt, q_b, k_b, v_b, initial_b, cu_b, o_b, final_b, nullptr, has_initial, has_cu,
                 want_final);
}

ffi::Error ForwardCheckpointsImpl(ffi::AnyBuffer q_b, ffi::AnyBuffer k_b, ffi::AnyBuffer v_b,
                                  ffi::AnyBuffer initial_b, ffi::AnyBuffer cu_b,
                                  ffi::Result<ffi::AnyBuffer> o_b, ffi::Result<ffi::AnyBuffer> final_b,
                                  ffi::Result<ffi::AnyBuffer> ck_b, int64_t op, bool masked,
                                  bool normalize, double scale, double decay, double ridge, double eps,
                                  int64_t chunk_size, int64_t path, bool has_initial, bool has_cu,
                                  bool want_final, int64_t checkpoint_every) {
  Options opt{op, chunk_size, path, checkpoint_every, masked, normalize, scale, decay, ridge, eps};
  return Forward(opt, q_b, k_b, v_b, initial_b, cu_b, o_b, final_b, &ck_b, has_initial, has_cu,
                 want_final);
}

// hla_backward, or hla_backward_checkpoints when ck_b is not null (its operand buffer).
ffi::Error Backward(const Options& opt, ffi::AnyBuffer& q_b, ffi::AnyBuffer& k_b, ffi::AnyBuffer& v_b,
                    ffi::AnyBuffer& do_b, ffi::AnyBuffer& initial_b, ffi::AnyBuffer& cu_b,
                    ffi::AnyBuffer& d_final_b, ffi::AnyBuffer* ck_b, ffi::Result<ffi::AnyBuffer>& dq_b,
                    ffi::Result<ffi::AnyBuffer>& dk_b, ffi::Result<ffi::AnyBuffer>& dv_b,
                    ffi::Result<ffi::AnyBuffer>& d_initial_b, bool has_initial, bool has_cu,
                    bool has_d_final) {
  Operand q, k, v, d_out, initial, cu, d_final, dq, dk, dv, d_initial, ck;
  if (auto e = Describe("q", q_b, &q); e.failure()) return e;
  if (auto e = Describe("k", k_b, &k); e.failure()) return e;
  if (auto e = Describe("v", v_b, &v); e.failure()) return e;
  hla_config cfg;
  Geometry g;
  if (auto e = Setup(opt, q, k, v, &cfg, &g); e.failure()) return e;
  if (has_cu) {
    if (auto e = Describe("cu_seqlens", cu_b, &cu); e.failure()) return e;
  }
  if (auto e = Sequences(has_cu, cu, &g); e.failure()) return e;
  if (auto e = Describe("d_out", do_b, &d_out); e.failure()) return e;
  if (auto e = CheckShape(d_out, g, {g.B, g.T, g.H, g.dv}); e.failure()) return e;
  if (auto e = Describe("dq", dq_b, &dq); e.failure()) return e;
  if (auto e = CheckShape(dq, g, {g.B, g.T, g.H, g.dk}); e.failure()) return e;
  if (auto e = Describe("dk", dk_b, &dk); e.failure()) return e;
  if (auto e = CheckShape(dk, g, {g.B, g.T, g.Hkv, g.dk}); e.failure()) return e;
  if (auto e = Describe("dv", dv_b, &dv); e.failure()) return e;
  if (auto e = CheckShape(dv, g, {g.B, g.T, g.Hkv, g.dv}); e.failure()) return e;
  if (d_out.dtype != q.dtype || dq.dtype != q.dtype || dk.dtype != q.dtype || dv.dtype != q.dtype)
    return Invalid("d_out, dq, dk and dv must have q's element type");
  int32_t sdt = StateDtype(q.dtype);
  if (has_initial) {
    if (auto e = Describe("initial_state", initial_b, &initial); e.failure()) return e;
    if (auto e = CheckState(initial, g, sdt); e.failure()) return e;
    if (auto e = Describe("d_initial_state", d_initial_b, &d_initial); e.failure()) return e;
    if (auto e = CheckState(d_initial, g, sdt); e.failure()) return e;
  }
  if (has_d_final) {
    if (auto e = Describe("d_final_state", d_final_b, &d_final); e.failure()) return e;
    if (auto e = CheckState(d_final, g, sdt); e.failure()) return e;
  }
  int64_t ck_rows = 0;
  if (ck_b != nullptr) {
    if (auto e = CheckpointOperand(*ck_b, opt.path, cfg, g, has_cu, sdt, &ck, &ck_rows); e.failure()) return e;
  }
  return ForEachCall(has_cu, g, [&](const Slice& s) -> ffi::Error {
    hla_tensor tq, tk, tv, tdo, tdq, tdk, tdv, tcu, tin, tdf, tdi, tck;
    if (auto e = TokenView(q, g, s, g.H, g.dk, &tq); e.failure()) return e;
    if (auto e = TokenView(k, g, s, g.Hkv, g.dk, &tk); e.failure()) return e;
    if (auto e = TokenView(v, g, s, g.Hkv, g.dv, &tv); e.failure()) return e;
    if (auto e = TokenView(d_out, g, s, g.H, g.dv, &tdo); e.failure()) return e;
    if (auto e = TokenView(dq, g, s, g.H, g.dk, &tdq); e.failure()) return e;
    if (auto e = TokenView(dk, g, s, g.Hkv, g.dk, &tdk); e.failure()) return e;
    if (auto e = TokenView(dv, g, s, g.Hkv, g.dv, &tdv); e.failure()) return e;
    if (has_cu) {
      if (auto e = CuView(cu, g, s, &tcu); e.failure()) return e;
    }
    if (has_initial) {
      if (auto e = StateView(initial, g, s, &tin); e.failure()) return e;
      if (auto e = StateView(d_initial, g, s, &tdi); e.failure()) return e;
    }
    if (has_d_final) {
      if (auto e = StateView(d_final, g, s, &tdf); e.failure()) return e;
    }
    if (ck_b != nullptr) {
      if (auto e = CheckpointView(ck, g, s, ck_rows, &tck); e.failure()) return e;
      hla_status st = hla_backward_checkpoints(&cfg, &tq, &tk, &tv, &tdo, &tdq, &tdk, &tdv,
                                               has_cu ? &tcu : nullptr, has_initial ? &tin : nullptr,
                                               has_d_final ? &tdf : nullptr,
                                               has_initial ? &tdi : nullptr, &tck);
      if (st != HLA_OK) return LibraryError("hla_backward_checkpoints", st);
      return ffi::Error::Success();
    }
    hla_status st = hla_backward(&cfg, static_cast<int32_t>(opt.path), &tq, &tk, &tv, &tdo, &tdq, &tdk,
                                 &tdv, has_cu ? &tcu : nullptr, has_initial ? &tin : nullptr,
                                 has_d_final ? &tdf : nullptr, has_initial ? &tdi : nullptr);
    if (st != HLA_OK) return LibraryError("hla_backward", st);
    return ffi::Error::Success();
  });
}

ffi::Error BackwardImpl(ffi::AnyBuffer q_b, ffi::AnyBuffer k_b, ffi::AnyBuffer v_b,
                        ffi::AnyBuffer do_b, ffi::AnyBuffer initial_b, ffi::AnyBuffer cu_b,
                        ffi::AnyBuffer d_final_b, ffi::Result<ffi::AnyBuffer> dq_b,
                        ffi::Result<ffi::AnyBuffer> dk_b, ffi::Result<ffi::AnyBuffer> dv_b,
                        ffi::Result<ffi::AnyBuffer> d_initial_b, int64_t op, bool masked,
                        bool normalize, double scale, double decay, double ridge, double eps,
                        int64_t chunk_size, int64_t path, bool has_initial, bool has_cu,
                        bool has_d_final) {
  Options opt{op, chunk_size, path, 0, masked, normalize, scale, decay, ridge, eps};
  return Backward(opt, q_b, k_b, v_b, do_b, initial_b, cu_b, d_final_b, nullptr, dq_b, dk_b, dv_b,
                  d_initial_b, has_initial, has_cu, has_d_final);
}

ffi::Error BackwardCheckpointsImpl(ffi::AnyBuffer q_b, ffi::AnyBuffer k_b, ffi::AnyBuffer v_b,
                                   ffi::AnyBuffer do_b, ffi::AnyBuffer initial_b, ffi::AnyBuffer cu_b,
                                   ffi::AnyBuffer d_final_b, ffi::AnyBuffer ck_b,
                                   ffi::Result<ffi::AnyBuffer> dq_b, ffi::Result<ffi::AnyBuffer> dk_b,
                                   ffi::Result<ffi::AnyBuffer> dv_b,
                                   ffi::Result<ffi::AnyBuffer> d_initial_b, int64_t op, bool masked,
                                   bool normalize, double scale, double decay, double ridge, double eps,
                                   int64_t chunk_size, int64_t path, bool has_initial, bool has_cu,
                                   bool has_d_final, int64_t checkpoint_every) {
  Options opt{op, chunk_size, path, checkpoint_every, masked, normalize, scale, decay, ridge, eps};
  return Backward(opt, q_b, k_b, v_b, do_b, initial_b, cu_b, d_final_b, &ck_b, dq_b, dk_b, dv_b,
                  d_initial_b, has_initial, has_cu, has_d_final);
}

}  // namespace

#define HLA_FFI_OPTION_ATTRS                                                        \
  .Attr<int64_t>("op")                                                              \
      .Attr<bool>("masked")                                                         \
      .Attr<bool>("normalize")                                                      \
      .Attr<double>("scale")                                                        \
      .Attr<double>("decay")                                                        \
      .Attr<double>("ridge")                                                        \
      .Attr<double>("eps")                                                          \
      .Attr<int64_t>("chunk_size")                                                  \
      .Attr<int64_t>("path")                                                        \
      .Attr<bool>("has_initial")                                                    \
      .Attr<bool>("has_cu")

// The operands shared by a handler and its checkpointed variant.
#define HLA_FFI_FORWARD_ARGS                                                        \
  .Arg<ffi::AnyBuffer>()          /* q */                                           \
      .Arg<ffi::AnyBuffer>()      /* k */                                           \
      .Arg<ffi::AnyBuffer>()      /* v */                                           \
      .Arg<ffi::AnyBuffer>()      /* initial state or placeholder */                \
      .Arg<ffi::AnyBuffer>()      /* cu_seqlens or placeholder */
#define HLA_FFI_FORWARD_RETS                                                        \
  .Ret<ffi::AnyBuffer>()          /* o */                                           \
      .Ret<ffi::AnyBuffer>()      /* final state or placeholder */
#define HLA_FFI_BACKWARD_ARGS                                                       \
  .Arg<ffi::AnyBuffer>()          /* q */                                           \
      .Arg<ffi::AnyBuffer>()      /* k */                                           \
      .Arg<ffi::AnyBuffer>()      /* v */                                           \
      .Arg<ffi::AnyBuffer>()      /* d_out */                                       \
      .Arg<ffi::AnyBuffer>()      /* initial state or placeholder */                \
      .Arg<ffi::AnyBuffer>()      /* cu_seqlens or placeholder */                   \
      .Arg<ffi::AnyBuffer>()      /* d_final or placeholder */
#define HLA_FFI_BACKWARD_RETS                                                       \
  .Ret<ffi::AnyBuffer>()          /* dq */                                          \
      .Ret<ffi::AnyBuffer>()      /* dk */                                          \
      .Ret<ffi::AnyBuffer>()      /* dv */                                          \
      .Ret<ffi::AnyBuffer>()      /* d_initial or placeholder */

XLA_FFI_DEFINE_HANDLER_SYMBOL(HlaJaxForward, ForwardImpl,
                              ffi::Ffi::Bind() HLA_FFI_FORWARD_ARGS HLA_FFI_FORWARD_RETS
                                  HLA_FFI_OPTION_ATTRS
                                  .Attr<bool>("want_final"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(HlaJaxBackward, BackwardImpl,
                              ffi::Ffi::Bind() HLA_FFI_BACKWARD_ARGS HLA_FFI_BACKWARD_RETS
                                  HLA_FFI_OPTION_ATTRS
                                  .Attr<bool>("has_d_final"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(HlaJaxForwardCheckpoints, ForwardCheckpointsImpl,
                              ffi::Ffi::Bind() HLA_FFI_FORWARD_ARGS HLA_FFI_FORWARD_RETS
                                  .Ret<ffi::AnyBuffer>()   // checkpoints [..., R, n]
                                  HLA_FFI_OPTION_ATTRS
                                  .Attr<bool>("want_final")
                                  .Attr<int64_t>("checkpoint_every"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(HlaJaxBackwardCheckpoints, BackwardCheckpointsImpl,
                              ffi::Ffi::Bind() HLA_FFI_BACKWARD_ARGS
                                  .Arg<ffi::AnyBuffer>()   // checkpoints [..., R, n]
                                  HLA_FFI_BACKWARD_RETS
                                  HLA_FFI_OPTION_ATTRS
                                  .Attr<bool>("has_d_final")
                                  .Attr<int64_t>("checkpoint_every"));

// The version of libhla this was built against (for hla.jax's load-time check).
extern "C" int hla_jax_ffi_header_major(void) { return HLA_VERSION_MAJOR; }
