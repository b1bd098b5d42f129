"""Re-evaluate the ggml HLA decoder of hla_ggml.c in numpy through hla.forward and compare.

Reads the file hla_ggml writes (configuration, tokens, weights, the logits ggml computed at every
position: prefill through hla_forward, decode through hla_step, and each layer's final state), runs
the same model over the whole token sequence at once with numpy for the projections, norms and MLP
and hla.forward (chunked, from a zero state) for the HLA operator, in float64 and in float32, and
checks that the ggml logits agree with both to `--tol` (max absolute error, default 1e-4; the logits
are O(1)) and that each layer's final state agrees with hla.forward's final state (float64) to a
max-norm relative error of `--tol`. Exits non-zero on any disagreement.

    PYTHONPATH=bindings/python python3 examples/ggml/check.py examples/ggml/build/hla_ggml.bin
"""
import argparse
import sys

import numpy as np

import hla

OPS = ("hla2", "ahla", "hla3")


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"HLAGGML1":
        sys.exit("%s: not an hla_ggml output file" % path)
    pos = 8

    def take(dtype, count):
        nonlocal pos
        a = np.frombuffer(data, dtype=dtype, count=count, offset=pos)
        pos += a.nbytes
        return a

    V, D, L, H, HKV, DK, DV, F, op, normalize, P, G, chunk, n, threads, _ = (int(x) for x in take("<i4", 16))
    decay, scale, rms_eps, _ = (float(x) for x in take("<f8", 4))
    cfg = dict(V=V, D=D, L=L, H=H, HKV=HKV, DK=DK, DV=DV, F=F, op=OPS[op], normalize=bool(normalize), P=P,
               G=G, chunk=chunk, n=n, threads=threads, decay=decay, scale=scale, rms_eps=rms_eps)
    T = P + G
    tokens = take("<i4", T).astype(np.int64)

    def mat(rows, cols=None):
        return take("<f4", rows * (cols or 1)).reshape((rows, cols) if cols else (rows,))

    w = {"tok_emb": mat(V, D), "layers": []}
    for _ in range(L):
        w["layers"].append(dict(attn_norm=mat(D), wq=mat(H * DK, D), wk=mat(HKV * DK, D), wv=mat(HKV * DV, D),
                                wo=mat(D, H * DV), mlp_norm=mat(D), w1=mat(F, D), w2=mat(D, F)))
    w["out_norm"] = mat(D)
    w["wout"] = mat(V, D)
    logits = mat(T, V)
    states = [mat(n) for _ in range(L)]
    if pos != len(data):
        sys.exit("%s: %d bytes left over" % (path, len(data) - pos))
    return cfg, tokens, w, logits, states


def rms_norm(x, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def model(cfg, tokens, w, dtype):
    """The decoder over the whole sequence; returns (logits [T, V], final states of each layer)."""
    c = cfg
    T = len(tokens)
    eps = dtype(c["rms_eps"])
    cast = {k: v.astype(dtype) for k, v in w.items() if k != "layers"}
    x = cast["tok_emb"][tokens]
    finals = []
    for lw in w["layers"]:
        lw = {k: v.astype(dtype) for k, v in lw.items()}
        h = rms_norm(x, eps) * lw["attn_norm"]
        q = (h @ lw["wq"].T).reshape(1, T, c["H"], c["DK"])
        k = (h @ lw["wk"].T).reshape(1, T, c["HKV"], c["DK"])
        v = (h @ lw["wv"].T).reshape(1, T, c["HKV"], c["DV"])
        o, final = hla.forward(q, k, v, op=c["op"], masked=True, normalize=c["normalize"], decay=c["decay"],
                               scale=c["scale"], output_final_state=True)
        finals.append(np.array(final.array[0]))
        o = rms_norm(o[0], eps).reshape(T, c["H"] * c["DV"])
        x = x + o @ lw["wo"].T
        h = rms_norm(x, eps) * lw["mlp_norm"]
        u = h @ lw["w1"].T
        x = x + (u / (1 + np.exp(-u))) @ lw["w2"].T
    return (rms_norm(x, eps) * cast["out_norm"]) @ cast["wout"].T, finals


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", default="build/hla_ggml.bin")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    cfg, tokens, w, logits, states = read(args.path)
    P = cfg["P"]
    ok = True
    print("check: %s%s, %d layers, prompt %d + %d decoded tokens, numpy + hla.forward (libhla %s) over all %d"
          % (cfg["op"], " normalized" if cfg["normalize"] else "", cfg["L"], P, cfg["G"], hla.library_version(),
             len(tokens)))
    for dtype in (np.float64, np.float32):
        ref, finals = model(cfg, tokens, w, dtype)
        err = np.abs(logits.astype(np.float64) - ref.astype(np.float64))
        pre, dec = err[:P].max(), (err[P:].max() if cfg["G"] else 0.0)
        good = bool(np.isfinite(err).all()) and max(pre, dec) <= args.tol
        ok &= good
        print("  logits vs numpy %-7s: max abs err prefill %.2e, decode %.2e (max |logit| %.2f) %s"
              % (np.dtype(dtype).name, pre, dec, np.abs(ref).max(), "OK" if good else "FAIL"))
        if dtype is np.float64:
            rel = max(np.abs(s.astype(np.float64) - r).max() / max(np.abs(r).max(), 1e-30)
                      for s, r in zip(states, finals))
            good = bool(np.isfinite(rel)) and rel <= args.tol
            ok &= good
            print("  final states (ggml tensors) vs hla.forward float64: max rel err %.2e %s"
                  % (rel, "OK" if good else "FAIL"))
    print("check: %s" % ("OK" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
