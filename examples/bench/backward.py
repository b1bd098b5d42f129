"""Backward section of the libhla benchmark (examples/bench/bench.py), and its memory probe.

    python3 backward.py --memprobe OP T H D   ->  one JSON line (peak memory of one hla.backward)

The torch peer is `chunked_torch` of examples/python/torch_train.py (the chunked algorithm written
functionally in torch, masked, decay 1), imported from there so there is one copy.
"""
import json
import os
import subprocess
import sys

import numpy as np

import memprobe as mp   # the forward's probe: same method, shared helpers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OPS = ("hla2", "ahla", "hla3")
H, D = 8, 64


def _inputs(T, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal((1, T, H, D), dtype=np.float32) for _ in range(4))   # q, k, v, do


def memprobe(op, T, Hh, Dd):
    """Peak memory of one hla.backward beyond its inputs (q, k, v, do) and gradients (dq, dk, dv), in
    this fresh process: VmHWM (reset through /proc/self/clear_refs) - VmRSS(before) - gradient bytes."""
    hla = mp.import_hla()
    rng = np.random.default_rng(0)
    q, k, v, do = (rng.standard_normal((1, T, Hh, Dd), dtype=np.float32) for _ in range(4))
    # warm the library (threads, buffers) on a tiny call so they are not charged to T
    hla.backward(q[:, :64], k[:, :64], v[:, :64], do[:, :64], op=op)
    rss0, reset = mp.start_peak()
    dq, dk, dv, _ = hla.backward(q, k, v, do, op=op, scale=Dd ** -0.5)
    hwm = mp.status("VmHWM")
    gb = dq.nbytes + dk.nbytes + dv.nbytes
    print(json.dumps({"op": op, "T": T, "hwm_reset": reset, "input_bytes": q.nbytes * 4, "grad_bytes": gb,
                      "extra": hwm - rss0 - gb}))


def _probe(op, T):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--memprobe", op, str(T), str(H), str(D)],
                         capture_output=True, text=True, env=env)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except Exception:  # noqa: BLE001
        print(out.stderr, file=sys.stderr)
        return {"extra": float("nan"), "input_bytes": 0, "grad_bytes": 0, "hwm_reset": False}


def _torch_peer():
    sys.path.insert(0, os.path.join(ROOT, "examples", "python"))
    import torch_train   # no side effects on import (main() is guarded)
    return torch_train.chunked_torch


def backward_section(R, a, hla, interleaved_all, med_min, torch_one_thread, fmt_t, fmt_bytes, load):
    """Returns (results, target rows)."""
    T = 2048 if a.quick else 16384
    Tt = 1024 if a.quick else 4096          # torch side
    Tm = (1024, 4096) if a.quick else (4096, 16384)
    s = D ** -0.5
    R.p("## Backward (B=1, H=Hkv=%d, dk=dv=%d, float32, masked, chunked path, automatic chunk)" % (H, D))
    R.p()
    R.p("`hla.backward` (libhla's chunked backward: a forward sweep keeping a checkpoint every ⌈√chunks⌉ "
        "chunks, then the groups in reverse, docs/gradients.md §9) against `hla.forward` on the same numpy "
        "inputs (T=%d), interleaved in rounds, %d repetitions or more (up to about 1 s per round). "
        "Load before: %s." % (T, a.reps, load()))
    R.p()
    res = {}
    rows = []
    for op in OPS:
        q, k, v, do = _inputs(T, seed=5)
        tm = interleaved_all({
            "fwd": lambda op=op: hla.forward(q, k, v, op=op, scale=s),
            "bwd": lambda op=op: hla.backward(q, k, v, do, op=op, scale=s)}, a.reps, budget=1.0)
        del q, k, v, do
        f, b = med_min(tm["fwd"]), med_min(tm["bwd"])
        res[op] = {"fwd": f, "bwd": b, "ratio": b[0] / f[0]}
        rows.append([op, T, "%s (%s)" % (fmt_t(f[0]), fmt_t(f[1])), "%s (%s)" % (fmt_t(b[0]), fmt_t(b[1])),
                     "%.2fx (%.2fx)" % (b[0] / f[0], b[1] / f[1])])
    R.table(["op", "T", "forward median (min)", "backward median (min)", "backward / forward median (min)"], rows)

    if a.has_torch:
        import torch
        import hla.torch as ht
        chunked_torch = _torch_peer()
        reps = 2 if a.quick else 3
        R.p("Against torch autograd through the same chunked algorithm written in torch (`chunked_torch` of "
            "examples/python/torch_train.py, chunk 64, functional, torch %s): forward + backward "
            "(`torch.autograd.grad` of o with cotangent do) at T=%d, not %d, to keep the torch side's run time "
            "short (its forward + backward takes seconds per call at T=4096 here); torch at 1 intra-op thread and at its default %d threads, the "
            "faster counts. libhla: `hla.torch.forward` + autograd (its chunked forward and chunked backward) "
            "and `hla.forward` + `hla.backward` on numpy arrays. Outputs and gradients are checked against the "
            "peer first; then %d interleaved rounds (median)." % (
                torch.__version__, Tt, T, torch.get_num_threads(), reps))
        R.p()
        trows = []
        for op in OPS:
            q, k, v, do = _inputs(Tt, seed=6)
            tq, tk, tv = (torch.from_numpy(x).requires_grad_(True) for x in (q, k, v))
            tdo = torch.from_numpy(do)

            def lib_t(op=op):
                return torch.autograd.grad(ht.forward(tq, tk, tv, op=op, scale=s)[0], (tq, tk, tv), tdo)

            def peer(op=op):
                o = chunked_torch(op, tq, tk, tv, 64, s)
                return (o.detach(),) + torch.autograd.grad(o, (tq, tk, tv), tdo)

            def lib_np(op=op):
                o, _ = hla.forward(q, k, v, op=op, scale=s)
                return hla.backward(q, k, v, do, op=op, scale=s)

            ref = peer()
            mine = (ht.forward(tq, tk, tv, op=op, scale=s)[0].detach(),) + lib_t()
            err = max(float((x - y).abs().max() / y.abs().max()) for x, y in zip(mine, ref))
            tm = interleaved_all({"lib_t": lib_t, "lib_np": lib_np, "peer": peer,
                                  "peer1": torch_one_thread(peer)}, reps, warmup=0)
            m = {kk: med_min(vv)[0] for kk, vv in tm.items()}
            best = min(("peer", "peer1"), key=lambda kk: m[kk])
            lib = min(m["lib_t"], m["lib_np"])
            res[op]["torch"] = {"T": Tt, "err": err, "peer": m[best], "peer_threads": "1" if best == "peer1" else
                                str(torch.get_num_threads()), "lib_t": m["lib_t"], "lib_np": m["lib_np"],
                                "ratio": m[best] / m["lib_t"]}
            trows.append([op, Tt, fmt_t(m["lib_t"]), fmt_t(m["lib_np"]), fmt_t(m["peer"]), fmt_t(m["peer1"]),
                          "%.1fx" % (m[best] / m["lib_t"]), "%.1fx" % (m[best] / lib), "%.1e%s" % (
                              err, "" if err < 1e-3 else " MISMATCH")])
            del tq, tk, tv, tdo
        R.table(["op", "T", "hla.torch fwd+bwd", "hla.forward+hla.backward", "torch autograd (default threads)",
                 "torch autograd (1 thread)", "best torch / hla.torch", "best torch / faster libhla",
                 "max rel. diff (o, dq, dk, dv)"], trows)
    else:
        R.p("torch is not installed: no autograd comparison.")
        R.p()

    R.p("Peak memory of one `hla.backward` (fresh process per (op, T), same method as the scaling section: "
        "inputs q, k, v, do made first, VmHWM reset, one backward, VmHWM − VmRSS(before) − bytes of dq, dk, "
        "dv = memory the call used beyond its inputs and gradients).")
    R.p()
    mrows = []
    for op in OPS:
        res[op]["mem"] = {}
        for Tx in Tm:
            m = _probe(op, Tx)
            res[op]["mem"][Tx] = m
            mrows.append([op, Tx, fmt_bytes(m["input_bytes"] + m["grad_bytes"]), fmt_bytes(m["extra"]),
                          "" if m.get("hwm_reset") else "VmHWM not resettable"])
    R.table(["op", "T", "inputs+gradients", "extra peak memory", "note"], mrows)
    R.p("Load after: %s." % load())
    R.p()

    # targets
    trg = []
    for op in OPS:
        r = res[op]
        trg.append(["%s chunked backward ≤ 3x the chunked forward (T=%d, H=8, d=64)" % (op, T),
                    "%.2fx (%s vs %s; min %.2fx)" % (r["ratio"], fmt_t(r["bwd"][0]), fmt_t(r["fwd"][0]),
                                                     r["bwd"][1] / r["fwd"][1]),
                    "%.2f of allowance" % (r["ratio"] / 3), "met" if r["ratio"] <= 3 else "NOT met"])
        if "torch" in r:
            t = r["torch"]
            trg.append(["%s fwd+bwd ≥ 3x torch autograd through the chunked algorithm (T=%d)" % (op, t["T"]),
                        "%.1fx (hla.torch %s vs torch %s, torch threads: %s)" % (t["ratio"], fmt_t(t["lib_t"]),
                                                                         fmt_t(t["peer"]), t["peer_threads"]),
                        "%.2f of target" % (t["ratio"] / 3), "met" if t["ratio"] >= 3 else "NOT met"])
        ms = r["mem"]
        lo, hi = min(ms), max(ms)
        grow = ms[hi]["extra"] - ms[lo]["extra"]
        trg.append(["%s backward memory independent of T beyond the gradients" % op,
                    "extra peak %s at T=%d, %s at T=%d" % (fmt_bytes(ms[lo]["extra"]), lo,
                                                          fmt_bytes(ms[hi]["extra"]), hi),
                    "growth %s" % fmt_bytes(grow), "met" if abs(grow) <= 4 << 20 else "NOT met"])
    return res, trg


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--memprobe":
        memprobe(sys.argv[2], *map(int, sys.argv[3:6]))
    else:
        sys.exit(__doc__)
