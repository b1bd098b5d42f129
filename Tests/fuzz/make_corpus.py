#!/usr/bin/env python3
"""Write the seed corpus of the libhla fuzz harnesses (python3, standard library only).

    python3 Tests/fuzz/make_corpus.py [--lib PATH/libhla.so] [--out Tests/fuzz/corpus]

corpus/fuzz_deserialize/: serialized state and summary rows made by the real library (through ctypes),
    prefixed with the harness's two control bytes (mode, destination; mode bit 3: an 88-byte hla_config).
corpus/fuzz_forward/: valid forward cases encoded in the byte layout fuzz_forward.c decodes (every op,
    masked/unmasked, normalize, grouped heads, ridge, decay, chunk sizes, element types, strided and
    permuted layouts, cu_seqlens, initial/final states in place or apart, rows, long sequences with short
    chunks for the checkpoint checks, checkpoint_every, the 88-byte hla_config of headers 1.0 and 1.1).
Files are named by the SHA-1 of their contents, as libFuzzer names the inputs it adds, so rerunning the
script is idempotent. Use a non-instrumented library (the default is .build/release/libhla.so).
"""
import argparse
import ctypes as C
import hashlib
import os
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


class Config(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("op", C.c_int32), ("masked", C.c_int32), ("normalize", C.c_int32),
                ("heads", C.c_int64), ("kv_heads", C.c_int64), ("dk", C.c_int64), ("dv", C.c_int64),
                ("scale", C.c_double), ("decay", C.c_double), ("ridge", C.c_double), ("eps", C.c_double),
                ("chunk_size", C.c_int64), ("checkpoint_every", C.c_int64)]


class Tensor(C.Structure):
    _fields_ = [("data", C.c_void_p), ("dtype", C.c_int32), ("ndim", C.c_int32),
                ("shape", C.c_int64 * 4), ("strides", C.c_int64 * 4)]


F32, F64, BF16, F16, I64, I32 = range(6)


def load(path):
    lib = C.CDLL(path)
    P = C.POINTER
    lib.hla_config_init.argtypes = [P(Config), C.c_size_t]
    lib.hla_state_elements.argtypes = [P(Config), P(C.c_int64)]
    lib.hla_summary_elements.argtypes = [P(Config), P(C.c_int64)]
    lib.hla_state_serialize.argtypes = [P(Config), P(Tensor), P(Tensor), C.c_void_p, C.c_size_t, P(C.c_size_t)]
    lib.hla_summary_serialize.argtypes = [P(Config), P(Tensor), P(Tensor), C.c_void_p, C.c_size_t, P(C.c_size_t)]
    lib.hla_last_error.restype = C.c_char_p
    return lib


def config(lib, op=0, masked=1, normalize=0, H=1, Hkv=0, dk=2, dv=2, scale=1.0, decay=1.0, ridge=0.0, eps=1e-6):
    c = Config()
    lib.hla_config_init(C.byref(c), C.sizeof(Config))
    c.op, c.masked, c.normalize, c.heads, c.kv_heads, c.dk, c.dv = op, masked, normalize, H, Hkv, dk, dv
    c.scale, c.decay, c.ridge, c.eps = scale, decay, ridge, eps
    return c


def elements(lib, c, summary):
    n = C.c_int64()
    rc = (lib.hla_summary_elements if summary else lib.hla_state_elements)(C.byref(c), C.byref(n))
    assert rc == 0, lib.hla_last_error()
    return n.value


def serialize(lib, c, rows, dtype, summary, rng):
    n = elements(lib, c, summary)
    fmt, es = ("d", 8) if dtype == F64 else ("f", 4)
    vals = [rng.uniform(-1, 1) for _ in range(rows * n)]
    buf = C.create_string_buffer(struct.pack("<%d%s" % (rows * n, fmt), *vals), max(rows * n * es, 1))
    t = Tensor(C.cast(buf, C.c_void_p), dtype, 2, (C.c_int64 * 4)(rows, n, 0, 0), (C.c_int64 * 4)(n, 1, 0, 0))
    lens = (C.c_int64 * max(rows, 1))(*[rng.randrange(0, 50) for _ in range(max(rows, 1))])
    lt = Tensor(C.cast(lens, C.c_void_p), I64, 1, (C.c_int64 * 4)(rows, 0, 0, 0), (C.c_int64 * 4)(1, 0, 0, 0))
    written = C.c_size_t()
    ser = lib.hla_summary_serialize if summary else lib.hla_state_serialize
    extra = (C.byref(lt),) if summary else (None,)
    rc = ser(C.byref(c), C.byref(t), *extra, None, 0, C.byref(written))
    assert rc == 0, lib.hla_last_error()
    out = C.create_string_buffer(written.value)
    rc = ser(C.byref(c), C.byref(t), *extra, out, written.value, C.byref(written))
    assert rc == 0, lib.hla_last_error()
    return out.raw


def deserialize_seeds(lib, rng):
    seeds = []
    cases = [
        dict(op=0), dict(op=1), dict(op=2), dict(op=0, normalize=1), dict(op=1, masked=0), dict(op=2, normalize=1),
        dict(op=0, ridge=0.5), dict(op=0, masked=0, ridge=1.0), dict(op=1, H=2, Hkv=1, dk=3, dv=1),
        dict(op=2, H=4, Hkv=2, dk=1, dv=3, decay=0.9), dict(op=0, H=2, dk=4, dv=4, scale=0.5, decay=0.5, eps=1e-3),
        dict(op=1, masked=0, normalize=1, H=3, Hkv=3), dict(op=2, masked=0, dk=2, dv=1),
    ]
    for i, kw in enumerate(cases):
        c = config(lib, **kw)
        for summary in (False, True):
            for rows in (0, 1, 3) if i % 3 == 0 else (1, 2):
                dtype = F64 if (i + rows) % 2 else F32
                body = serialize(lib, c, rows, dtype, summary, rng)
                mode = rng.choice([0, 0, 1, 2, 4, 5])
                dest = rng.choice([0, 0, 0x01, 0x06, 0x13, 0x20, 0x40, 0x60, 0x80, 0xA0, 0xC0, 0xE0])
                seeds.append(bytes([mode, dest]) + body)
    # mode bit 3, the 88-byte hla_config of headers 1.0 and 1.1: two of the seeds above again (no random draws,
    # so the forward seeds after these stay as they were)
    for i in (1, 8):
        seeds.append(bytes([8 | (seeds[i][0] & 5), seeds[i][1]]) + seeds[i][2:])
    return seeds


# ---- fuzz_forward encoding (mirrors the decoder in fuzz_forward.c) --------------------------------------
SCALES = [1, 0.5, 0.35355339059327373, 2, -1, 0, 0.1, -0.7]
DECAYS = [1, 0.9, 0.5, 0.99, 0.25, 1e-3, 0.75, 1]
CHUNKS = [0, 0, 0, 1, 2, 3, 4, 5, 7, 8, 13, 16, 33, 1024, 5000, 2**63 - 1]
RIDGES = [0.1, 1, 0.5, -0.0]


def forward_seed(lib, rng, op=0, masked=1, normalize=0, H=1, hkv_sel=0, dk=2, dv=2, scale_i=0, decay_i=0,
                 ridge_i=None, eps_i=0, chunk_i=0, dtype_sel=0, B=1, T=4, cu=None, layouts=None,
                 ini=False, fin=False, same=False, rows=False, extra_slots=0, pad=0, neg=0, struct_byte=0,
                 ck_bytes=None):
    """cu: None or a list of cut points (strictly inside 0..T). layouts: 4 tuples (perm, pad, sign, special).
    struct_byte: the struct size byte (0: sizeof; 0xF4: the 88-byte struct of headers 1.0 and 1.1).
    ck_bytes: the first bytes the checkpoint checks read (checkpoint_every, hla_checkpoint_rows refusal,
    checkpoint layout, refused-tensor byte, backward byte, then ck_backward's), after the bogus-path byte and
    (batch, T >= 2) the split byte; None: 4 random trailing bytes."""
    out = bytearray()
    out += bytes([op, masked, normalize, H - 1, hkv_sel, dk - 1, dv - 1, scale_i, decay_i])
    out.append(0 if ridge_i is None else 0xE0 + ridge_i)
    out += bytes([eps_i, chunk_i, struct_byte])       # eps, chunk_size, struct size (0 = sizeof)
    out.append(dtype_sel)
    out.append(5 if cu else 0)                        # cu mode: 5 = valid
    out.append(B - 1)
    out.append(T - 1)
    Hkv = [H, 1, H, H // 2 if H % 2 == 0 else 1][hkv_sel]
    N = B
    if cu:
        N = len(cu) + 1
        out.append(N - 1)                             # N = 1 + byte % min(T, 6)
        for x in cu:
            out.append(x - 1)                         # cut = 1 + byte % (T - 1)
        out.append(rng.choice([0, 1, 2, 3, 4, 5]))    # cu dtype / stride
    for i in range(4):
        lay = layouts[i] if layouts else (0, 0, 0, 0)
        out += bytes(lay)
    out.append(0)                                     # no shape fault
    slots = N + extra_slots
    s1 = (1 if ini else 0) | (2 if fin else 0) | (4 if same else 0) | (8 if rows else 0) | (extra_slots << 4)
    out += bytes([s1, pad | (neg << 2), rng.choice([0, 1, 2, 3, 4, 5])])
    if rows:
        for i in range(slots - 1, 0, -1):
            out.append(rng.randrange(256))
    # the ridge matters: hla2 with a ridge keeps a larger state (the initial rows' bytes below)
    c = config(lib, op=op, masked=masked, normalize=normalize, H=H, Hkv=Hkv, dk=dk, dv=dv,
               ridge=0.0 if ridge_i is None else RIDGES[ridge_i])
    n = elements(lib, c, False)
    count = (slots * n if ini else 0) + B * T * (H * dk + Hkv * dk + Hkv * dv)
    out += bytes(rng.randrange(256) for _ in range(count))
    out.append(0)                                     # no non-finite element
    if ck_bytes is None:
        out += bytes(rng.randrange(256) for _ in range(4))  # bogus-path and split bytes
    else:
        out.append(rng.randrange(256))                # bogus path
        if not cu and T >= 2:
            out.append(rng.randrange(256))            # split point of the summaries
        out += bytes(ck_bytes)
    return bytes(out)


def forward_seeds(lib, rng):
    s = []
    for op in range(3):
        for masked in (1, 0):
            for normalize in (0, 1):
                s.append(forward_seed(lib, rng, op=op, masked=masked, normalize=normalize, T=5, dk=2, dv=2))
    s.append(forward_seed(lib, rng, op=0, ridge_i=0, T=6, dk=3, dv=2))
    s.append(forward_seed(lib, rng, op=0, masked=0, ridge_i=1, normalize=1, T=4))
    s.append(forward_seed(lib, rng, op=2, H=4, hkv_sel=3, dk=2, dv=2, T=7, decay_i=1, chunk_i=4))
    s.append(forward_seed(lib, rng, op=1, H=2, hkv_sel=1, dk=3, dv=1, T=9, decay_i=2, chunk_i=5, scale_i=2))
    s.append(forward_seed(lib, rng, op=0, H=2, dk=4, dv=3, T=12, B=2, chunk_i=3, fin=True))
    s.append(forward_seed(lib, rng, op=2, T=10, B=3, dk=2, dv=1, chunk_i=6, ini=True, fin=True, same=True))
    s.append(forward_seed(lib, rng, op=1, T=8, B=2, ini=True, fin=True, rows=True, extra_slots=2, pad=1, neg=1))
    s.append(forward_seed(lib, rng, op=0, T=11, cu=[3, 7], chunk_i=4, fin=True))
    s.append(forward_seed(lib, rng, op=2, T=9, cu=[1, 2, 5], ini=True, fin=True, rows=True, extra_slots=1))
    s.append(forward_seed(lib, rng, op=1, masked=0, normalize=1, T=6, cu=[2], ini=True, fin=True, same=True, rows=True))
    s.append(forward_seed(lib, rng, op=0, dtype_sel=10, T=5, B=2, H=2, hkv_sel=1, fin=True))
    s.append(forward_seed(lib, rng, op=1, dtype_sel=12, T=5, fin=True, ini=True))
    s.append(forward_seed(lib, rng, op=2, dtype_sel=13, T=4, normalize=1))
    s.append(forward_seed(lib, rng, op=0, T=24, dk=8, dv=8, chunk_i=9, decay_i=3))
    s.append(forward_seed(lib, rng, op=2, T=16, dk=4, dv=4, chunk_i=8, decay_i=6, H=2, hkv_sel=1))
    # strided, permuted, negative and broadcast layouts
    lay = [(1, 0, 0, 0), (2, 0x15, 0x02, 0), (7, 0xC0, 0x0A, 0), (5, 0x01, 0x01, 0)]
    s.append(forward_seed(lib, rng, op=0, H=2, T=6, B=2, layouts=lay))
    lay = [(3, 0, 0, 12 | (1 << 4)), (0, 0, 0, 12 | (3 << 4)), (9, 2, 4, 0), (0, 0, 0x08, 0)]
    s.append(forward_seed(lib, rng, op=2, T=5, B=2, layouts=lay, fin=True))
    lay = [(0, 0, 0x0F, 0), (0, 0, 0x0F, 0), (0, 0, 0x0F, 0), (0, 0, 0x0F, 0)]
    s.append(forward_seed(lib, rng, op=1, normalize=1, T=7, B=3, layouts=lay, ini=True, fin=True, same=True, neg=1))
    # long sequences with short chunks: several checkpoint rows per sequence (hla_forward_checkpoints and
    # hla_backward_checkpoints; docs/gradients.md section 11), appended so the seeds above stay as they were
    s.append(forward_seed(lib, rng, op=0, T=24, B=2, chunk_i=3, ini=True, fin=True, rows=True, extra_slots=1, pad=2))
    s.append(forward_seed(lib, rng, op=2, T=23, cu=[4, 11, 17], chunk_i=4, ini=True, fin=True, same=True))
    s.append(forward_seed(lib, rng, op=1, masked=0, normalize=1, dtype_sel=10, T=20, B=3, chunk_i=3, ini=True, fin=True))
    s.append(forward_seed(lib, rng, op=0, ridge_i=0, T=24, cu=[9], chunk_i=5, fin=True, rows=True, extra_slots=2))
    # checkpoint_every (the first checkpoint byte: low nibble 0-11 -> 0,0,1,1,1,2,2,3,3,4,4,5; 12 the chunk count,
    # 13 one more, 14 INT64_MAX, 15 2^40; high nibble 15: also a negative value to refuse), appended likewise:
    # every chunk (chunk 2, 12 chunks) with d_final and d_initial apart; 3 over packed sequences, unmasked,
    # normalized; INT64_MAX with INT64_MIN refused, from the 88-byte struct of headers 1.0 and 1.1
    s.append(forward_seed(lib, rng, op=2, T=24, B=2, chunk_i=4, decay_i=1, ini=True, fin=True,
                          ck_bytes=[0x02, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00]))
    s.append(forward_seed(lib, rng, op=1, masked=0, normalize=1, H=2, hkv_sel=1, T=23, cu=[4, 11, 17], chunk_i=4,
                          ini=True, fin=True, rows=True, extra_slots=1, ck_bytes=[0x07, 0x01, 0x05, 0x00, 0x00, 0x05, 0x00]))
    s.append(forward_seed(lib, rng, op=0, ridge_i=0, H=2, T=20, B=2, chunk_i=5, ini=True, fin=True, struct_byte=0xF4,
                          ck_bytes=[0xFE, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00]))
    return s


def write(dirname, seeds):
    os.makedirs(dirname, exist_ok=True)
    for b in seeds:
        with open(os.path.join(dirname, hashlib.sha1(b).hexdigest()), "wb") as f:
            f.write(b)
    return len(seeds)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", default=os.path.join(ROOT, ".build", "release", "libhla.so"))
    ap.add_argument("--out", default=os.path.join(HERE, "corpus"))
    ap.add_argument("--seed", type=int, default=20240601)
    a = ap.parse_args()
    if not os.path.exists(a.lib):
        sys.exit("make_corpus.py: %s not found (run `make lib`, or pass --lib)" % a.lib)
    lib = load(a.lib)
    rng = random.Random(a.seed)
    n1 = write(os.path.join(a.out, "fuzz_deserialize"), deserialize_seeds(lib, rng))
    n2 = write(os.path.join(a.out, "fuzz_forward"), forward_seeds(lib, rng))
    print("make_corpus.py: %d fuzz_deserialize and %d fuzz_forward seeds in %s" % (n1, n2, a.out))


if __name__ == "__main__":
    main()
