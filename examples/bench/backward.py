"""Backward section of the libhla benchmark (examples/bench/bench.py), and its memory probe.

    python3 backward.py --memprobe OP T H D [ck|ck1]  ->  one JSON line (peak memory of one hla.backward;
                                                      with ck: from the forward's checkpoints, ck1: from
                                                      checkpoints at every chunk, checkpoint_every=1)

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


def memprobe(op, T, Hh, Dd, ck=False, every=None):
    """Peak memory of one hla.backward beyond its inputs (q, k, v, do) and gradients (dq, dk, dv), in
    this fresh process: VmHWM (reset through /proc/self/clear_refs) - VmRSS(before) - gradient bytes.
    With ck, the forward's checkpoints (made before the reset, reported as checkpoint_bytes) are given,
    spaced `every` chunks apart (None: automatic)."""
    hla = mp.import_hla()
    rng = np.random.default_rng(0)
    q, k, v, do = (rng.standard_normal((1, T, Hh, Dd), dtype=np.float32) for _ in range(4))
    # warm the library (threads, buffers) on a tiny call so they are not charged to T
    hla.backward(q[:, :64], k[:, :64], v[:, :64], do[:, :64], op=op)
    kw = {}
    if ck:
        kw["checkpoint_every"] = every
        kw["checkpoints"] = hla.new_checkpoints(q, k, v, op=op, scale=Dd ** -0.5, checkpoint_every=every)
        # the forward's output stays alive: freed, its buffer would stay mapped in hla.output_pool and become dq,
        # whose bytes the measurement subtracts (the extra peak then came out negative, by about one output)
        out, _ = hla.forward(q, k, v, op=op, scale=Dd ** -0.5, **kw)
    rss0, reset = mp.start_peak()
    dq, dk, dv, _ = hla.backward(q, k, v, do, op=op, scale=Dd ** -0.5, **kw)
    hwm = mp.status("VmHWM")
    gb = dq.nbytes + dk.nbytes + dv.nbytes
    print(json.dumps({"op": op, "T": T, "hwm_reset": reset, "input_bytes": q.nbytes * 4, "grad_bytes": gb,
                      "extra": hwm - rss0 - gb, "checkpoint_bytes": kw["checkpoints"].nbytes if ck else 0}))


def _probe(op, T, ck=None):
    """ck: None (backward alone), "ck" (automatic checkpoints) or "ck1" (checkpoint_every=1)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--memprobe", op, str(T), str(H), str(D)]
                         + ([ck] if ck else []), capture_output=True, text=True, env=env)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except Exception:  # noqa: BLE001
        print(out.stderr, file=sys.stderr)
        return {"extra": float("nan"), "input_bytes": 0, "grad_bytes": 0, "hwm_reset": False,
                "checkpoint_bytes": 0}


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
    R.p("libhla's chunked backward (docs/gradients.md §9-§11) against `hla.forward` on the same numpy "
        "inputs (T=%d), interleaved in rounds, %d repetitions or more (up to about 1.5 s per round): "
        "`hla.backward` alone (a carry sweep keeping the carry every ⌈√chunks⌉ chunks, then the groups in "
        "reverse) and, as in training, `hla.backward(..., checkpoints=ck)` from the checkpoints "
        "`hla.forward(..., checkpoints=ck)` kept (no carry sweep; the same gradients bit for bit), spaced "
        "automatically (⌈√chunks⌉ chunks) and at every chunk (`checkpoint_every=1`: the backward then "
        "recomputes no carry; the checkpoints take T/chunk states). The target is read on the backward from "
        "checkpoints against the plain forward. Load before: %s." % (T, a.reps, load()))
    R.p()
    res = {}
    rows = []
    for op in OPS:
        q, k, v, do = _inputs(T, seed=5)
        ck = hla.new_checkpoints(q, k, v, op=op, scale=s)
        ck1 = hla.new_checkpoints(q, k, v, op=op, scale=s, checkpoint_every=1)
        tm = interleaved_all({
            "fwd": lambda op=op: hla.forward(q, k, v, op=op, scale=s),
            "fwd_ck": lambda op=op: hla.forward(q, k, v, op=op, scale=s, checkpoints=ck),
            "fwd_ck1": lambda op=op: hla.forward(q, k, v, op=op, scale=s, checkpoints=ck1, checkpoint_every=1),
            "bwd": lambda op=op: hla.backward(q, k, v, do, op=op, scale=s),
            "bwd_ck": lambda op=op: hla.backward(q, k, v, do, op=op, scale=s, checkpoints=ck),
            "bwd_ck1": lambda op=op: hla.backward(q, k, v, do, op=op, scale=s, checkpoints=ck1,
                                                  checkpoint_every=1)}, a.reps, budget=2.0)
        del q, k, v, do
        f, fc, fc1, b, bc, bc1 = (med_min(tm[x]) for x in ("fwd", "fwd_ck", "fwd_ck1", "bwd", "bwd_ck", "bwd_ck1"))
        res[op] = {"fwd": f, "fwd_ck": fc, "fwd_ck1": fc1, "bwd": b, "bwd_ck": bc, "bwd_ck1": bc1,
                   "ratio": bc[0] / f[0], "ratio1": bc1[0] / f[0], "ratio_plain": b[0] / f[0],
                   "ck_bytes": ck.nbytes, "ck_rows": ck.shape[0], "ck1_bytes": ck1.nbytes, "ck1_rows": ck1.shape[0]}

        def mm(x):
            return "%s (%s)" % (fmt_t(x[0]), fmt_t(x[1]))

        def ratio(x):
            return "%.2fx (%.2fx)" % (x[0] / f[0], x[1] / f[1])
        rows.append([op, T, mm(f), mm(b), ratio(b), "%d rows, %s" % (ck.shape[0], fmt_bytes(ck.nbytes)), mm(fc),
                     mm(bc), ratio(bc), "%.2fx" % ((fc[0] + bc[0]) / (f[0] + b[0])),
                     "%d rows, %s" % (ck1.shape[0], fmt_bytes(ck1.nbytes)), mm(fc1), mm(bc1), ratio(bc1),
                     "%.2fx" % ((fc1[0] + bc1[0]) / (f[0] + b[0]))])
        del ck, ck1
    R.table(["op", "T", "forward median (min)", "backward alone", "backward alone / forward",
             "automatic checkpoints", "forward keeping them", "backward from them", "backward / forward",
             "training step (fwd + bwd) / without checkpoints", "checkpoints at every chunk",
             "forward keeping them", "backward from them", "backward / forward",
             "training step / without checkpoints"], rows)

    if a.has_torch:
        import torch
        import hla.torch as ht
        chunked_torch = _torch_peer()
        reps = 2 if a.quick else 3
        R.p("Against torch autograd through the same chunked algorithm written in torch (`chunked_torch` of "
            "examples/python/torch_train.py, chunk 64, functional, torch %s): forward + backward "
            "(`torch.autograd.grad` of o with cotangent do) at T=%d, not %d, to keep the torch side's run time "
            "short (its forward + backward takes seconds per call at T=4096 here); torch at 1 intra-op thread and at its default %d threads, the "
            "faster counts. libhla: `hla.torch.forward` + autograd (its chunked forward keeping checkpoints, "
            "`torch.ops.hla.forward_train`, and the chunked backward from them) and `hla.forward` + "
            "`hla.backward` with checkpoints on numpy arrays. Outputs and gradients are checked against the "
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
                ck = hla.new_checkpoints(q, k, v, op=op, scale=s)
                o, _ = hla.forward(q, k, v, op=op, scale=s, checkpoints=ck)
                return hla.backward(q, k, v, do, op=op, scale=s, checkpoints=ck)

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

    R.p("Peak memory of one `hla.backward`, alone and from the forward's checkpoints (fresh process per (op, "
        "T, variant), same method as the scaling section: inputs q, k, v, do (and the checkpoints) made "
        "first, VmHWM reset, one backward, VmHWM − VmRSS(before) − bytes of dq, dk, dv = memory the call "
        "used beyond its inputs and gradients). The checkpoints themselves are listed apart: the forward "
        "keeps them for the backward (saved activations), O(√T) states per sequence automatically, T/chunk "
        "states at every chunk (`checkpoint_every=1`).")
    R.p()
    mrows = []
    for op in OPS:
        res[op]["mem"], res[op]["mem_ck"], res[op]["mem_ck1"] = {}, {}, {}
        for Tx in Tm:
            m, mc, mc1 = _probe(op, Tx), _probe(op, Tx, ck="ck"), _probe(op, Tx, ck="ck1")
            res[op]["mem"][Tx], res[op]["mem_ck"][Tx], res[op]["mem_ck1"][Tx] = m, mc, mc1
            mrows.append([op, Tx, fmt_bytes(m["input_bytes"] + m["grad_bytes"]), fmt_bytes(m["extra"]),
                          fmt_bytes(mc["extra"]), fmt_bytes(mc["checkpoint_bytes"]), fmt_bytes(mc1["extra"]),
                          fmt_bytes(mc1["checkpoint_bytes"]),
                          "" if m.get("hwm_reset") else "VmHWM not resettable"])
    R.table(["op", "T", "inputs+gradients", "extra peak memory (backward alone)",
             "extra peak memory (from automatic checkpoints)", "automatic checkpoints",
             "extra peak memory (from checkpoints at every chunk)", "checkpoints at every chunk", "note"], mrows)
    R.p("Load after: %s." % load())
    R.p()

    # targets
    trg = []
    for op in OPS:
        r = res[op]
        for key, rk, what in (("bwd_ck", "ratio", "automatic checkpoints"),
                              ("bwd_ck1", "ratio1", "checkpoints at every chunk")):
            trg.append(["%s chunked backward ≤ 3x the chunked forward (T=%d, H=8, d=64; backward from the "
                        "forward's %s)" % (op, T, what),
                        "%.2fx (%s vs %s; min %.2fx; backward alone %.2fx)" % (
                            r[rk], fmt_t(r[key][0]), fmt_t(r["fwd"][0]), r[key][1] / r["fwd"][1],
                            r["ratio_plain"]),
                        "%.2f of allowance" % (r[rk] / 3), "met" if r[rk] <= 3 else "NOT met"])
        if "torch" in r:
            t = r["torch"]
            trg.append(["%s fwd+bwd ≥ 3x torch autograd through the chunked algorithm (T=%d)" % (op, t["T"]),
                        "%.1fx (hla.torch %s vs torch %s, torch threads: %s)" % (t["ratio"], fmt_t(t["lib_t"]),
                                                                         fmt_t(t["peer"]), t["peer_threads"]),
                        "%.2f of target" % (t["ratio"] / 3), "met" if t["ratio"] >= 3 else "NOT met"])
        for key, what, counted in (("mem", "alone", True), ("mem_ck", "from automatic checkpoints, "
                                    "checkpoints included", True),
                                   ("mem_ck1", "from checkpoints at every chunk, those O(chunks · state) "
                                    "saved activations not counted", False)):
            ms = r[key]
            lo, hi = min(ms), max(ms)
            ex = {t: ms[t]["extra"] + (ms[t]["checkpoint_bytes"] if counted else 0) for t in (lo, hi)}
            grow = ex[hi] - ex[lo]
            trg.append(["%s backward memory independent of T beyond the gradients (%s)" % (op, what),
                        "extra peak %s at T=%d, %s at T=%d" % (fmt_bytes(ex[lo]), lo, fmt_bytes(ex[hi]), hi),
                        "growth %s" % fmt_bytes(grow), "met" if abs(grow) <= 4 << 20 else "NOT met"])
    return res, trg


if __name__ == "__main__":
    if len(sys.argv) in (6, 7) and sys.argv[1] == "--memprobe":
        mode = sys.argv[6] if len(sys.argv) == 7 else ""
        memprobe(sys.argv[2], *map(int, sys.argv[3:6]), ck=mode in ("ck", "ck1"), every=1 if mode == "ck1" else None)
    else:
        sys.exit(__doc__)
