#!/usr/bin/env python3
"""Train tiny models on multi-query associative recall (MQAR) with each mixer; evaluate per (T, pairs).

    PYTHONPATH=bindings/python python3 examples/train/train.py --preset demo      # make train-demo
    PYTHONPATH=bindings/python python3 examples/train/train.py --preset full \
        --out examples/train/results/full.json                                     # docs/experiments.md

With --per-length (presets demo and full) one model per (mixer, seed, T) is trained on the cells of
that sequence length T; with --mixture (preset mixture) one model per (mixer, seed) on all cells. Each
step draws one cell of the model's cells uniformly; the batch holds tokens_per_step // T sequences.
Every model is evaluated on a fixed held-out set of each of its cells (the same sequences for every
mixer and seed). Every mixer gets the same width, depth, heads, steps, batch, optimizer (AdamW) and
learning-rate schedule (linear warm-up, cosine decay).

Exit status: 0 when every run finished with finite losses (whatever the accuracies), 2 when a loss, a
gradient norm or an evaluation logit became NaN/Inf, 1 on other errors. Results (per run: accuracies
per cell, wall time, parameter count, loss curve) go to --out as JSON; runs already in that file are
skipped, so an interrupted run resumes (the file must hold the same configuration).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hla_standin import IMPLEMENTATION, IMPLEMENTATION_NOTE  # noqa: E402
from mqar import IGNORE, MIXERS, Model, make_batch  # noqa: E402

PRESETS = {
    # make train-demo: T = 64 only, 800 steps, one seed (about 40 s per mixer on one idle core)
    "demo": dict(grid="64:4,8,16", steps=800, tokens_per_step=2048, eval_seqs=128, seeds="0", per_length=True),
    # docs/experiments.md: one model per (mixer, seed, T), trained on the pairs of that T
    "full": dict(grid="64:4,8,16;128:4,8,16,32;256:4,8,16,32,64", steps=1500, tokens_per_step=2048,
                 eval_seqs=256, seeds="0,1", per_length=True),
    # the first design: one model per (mixer, seed) on the mixture of all cells
    "mixture": dict(grid="64:4,8,16;128:4,8,16,32;256:4,8,16,32,64", steps=1500, tokens_per_step=2048,
                    eval_seqs=256, seeds="0,1", per_length=False),
}


class NonFinite(RuntimeError):
    pass


def parse_grid(text):
    cells = []
    for part in text.split(";"):
        T, pairs = part.split(":")
        cells += [(int(T), int(n)) for n in pairs.split(",")]
    return cells


def lr_at(step, steps, lr, warmup):
    if step < warmup:
        return lr * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return lr * 0.5 * (1.0 + math.cos(math.pi * p))


def evaluate(model, cells, args):
    model.eval()
    acc = {}
    with torch.no_grad():
        for T, n in cells:
            rng = np.random.default_rng(10_000_000 + 1000 * T + n)    # same held-out set for every run
            correct = total = 0
            bs = max(1, args.tokens_per_step // T)
            left = args.eval_seqs
            while left > 0:
                x, y = make_batch(rng, min(bs, left), T, n, args.vocab, args.filler)
                left -= x.shape[0]
                logits = model(x)
                if not torch.isfinite(logits).all():
                    raise NonFinite("non-finite logits at evaluation (T=%d, pairs=%d)" % (T, n))
                m = y != IGNORE
                correct += (logits.argmax(-1)[m] == y[m]).sum().item()
                total += m.sum().item()
            acc["%d:%d" % (T, n)] = correct / total
    model.train()
    return acc


def train_one(mixer, seed, cells, args):
    """Train one model on `cells` (a list of (T, pairs)) and evaluate it on each of them."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Model(mixer, args.vocab, args.width, args.heads, args.layers, args.conv, args.feature, args.norm)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))
    warmup = max(1, int(args.warmup * args.steps))
    curve, window = [], []
    t0 = time.time()
    for step in range(args.steps):
        T, n = cells[rng.integers(len(cells))]
        x, y = make_batch(rng, max(1, args.tokens_per_step // T), T, n, args.vocab, args.filler)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, warmup)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE)
        if not torch.isfinite(loss):
            raise NonFinite("%s seed %d: non-finite loss at step %d (T=%d, pairs=%d)" % (mixer, seed, step, T, n))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if not torch.isfinite(gn):
            raise NonFinite("%s seed %d: non-finite gradient at step %d" % (mixer, seed, step))
        opt.step()
        window.append(loss.item())
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            curve.append([step + 1, float(np.mean(window))])
            if args.verbose:
                print("  %-7s seed %d step %5d  loss %.3f  %.1f s" % (mixer, seed, step + 1, curve[-1][1],
                                                                  time.time() - t0), flush=True)
            window = []
    train_s = time.time() - t0
    t1 = time.time()
    acc = evaluate(model, cells, args)
    return dict(mixer=mixer, seed=seed, params=params, train_seconds=train_s, eval_seconds=time.time() - t1,
                final_loss=curve[-1][1], curve=curve, acc=acc)


def table(runs, cells, mixers):
    """Markdown table: mean accuracy (min-max over seeds when more than one) per mixer x cell."""
    head = "| mixer | " + " | ".join("T=%d N=%d" % c for c in cells) + " | mean | train s/model |"
    lines = [head, "|" + "---|" * (len(cells) + 3)]
    for m in mixers:
        rs = [r for r in runs if r["mixer"] == m]
        if not rs:
            continue
        row, means = [], []
        for T, n in cells:
            a = [r["acc"]["%d:%d" % (T, n)] for r in rs if "%d:%d" % (T, n) in r["acc"]]
            means.append(np.mean(a))
            row.append("%.3f" % np.mean(a) + (" (%.2f-%.2f)" % (min(a), max(a)) if len(a) > 1 else ""))
        lines.append("| %s | %s | %.3f | %.0f |" % (m, " | ".join(row), np.mean(means),
                                                      np.mean([r["train_seconds"] for r in rs])))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    ap.add_argument("--mixers", default=",".join(MIXERS))
    ap.add_argument("--grid", help="'T:pairs,pairs;T:pairs,...' (default: the preset's)")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--tokens-per-step", type=int)
    ap.add_argument("--eval-seqs", type=int)
    ap.add_argument("--seeds")
    ap.add_argument("--per-length", dest="per_length", action="store_true", default=None,
                    help="one model per sequence length T (default: the preset's)")
    ap.add_argument("--mixture", dest="per_length", action="store_false",
                    help="one model on the mixture of all cells")
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--filler", choices=("random", "zero"), default="random",
                    help="non-query positions: random tokens (Zoology generator default) or token 0")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--conv", type=int, default=4, help="short causal conv kernel on q, k, v (0 = none)")
    ap.add_argument("--feature", choices=("elu1", "identity"), default="identity",
                    help="feature map on q, k of linear and HLA mixers")
    ap.add_argument("--norm", choices=("ratio", "rms"), default="rms",
                    help="linear/HLA output: ratio = normalize=True (num / den); rms = unnormalized numerator "
                         "(scale d_head^-0.5) then a parameter-free per-head RMS norm")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--warmup", type=float, default=0.05, help="fraction of the steps")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--out", help="JSON file of results (runs in it are skipped)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    for key, val in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, val)
    torch.set_num_threads(args.threads)
    cells = parse_grid(args.grid)
    mixers = args.mixers.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    for m in mixers:
        if m not in MIXERS:
            ap.error("unknown mixer %r" % m)
    config = {k: getattr(args, k) for k in ("preset", "grid", "steps", "tokens_per_step", "eval_seqs", "vocab", "filler",
                                            "per_length", "width", "heads", "layers", "conv", "feature", "norm", "lr", "weight_decay",
                                            "warmup", "threads")}
    config["hla_implementation"] = IMPLEMENTATION
    config["hla_implementation_note"] = IMPLEMENTATION_NOTE
    config["torch"] = torch.__version__
    runs = []
    if args.out and os.path.exists(args.out):
        with open(args.out) as f:
            saved = json.load(f)
        saved["config"].setdefault("filler", "random")     # results written before --filler existed
        if {k: v for k, v in saved["config"].items() if not k.startswith("hla_implementation")} != \
                {k: v for k, v in config.items() if not k.startswith("hla_implementation")}:
            sys.exit("%s holds results of another configuration; remove it or choose another --out" % args.out)
        runs = saved["runs"]
    print("MQAR: mixers %s, cells %s, %d steps x %d tokens, width %d, %d layers, %d heads, seeds %s; "
          "HLA through %s" % (",".join(mixers), " ".join("%d:%d" % c for c in cells), args.steps,
                             args.tokens_per_step, args.width, args.layers, args.heads, args.seeds, IMPLEMENTATION),
          flush=True)
    print("  (%s)" % IMPLEMENTATION_NOTE, flush=True)
    Ts = sorted({T for T, _ in cells})
    groups = [(T, [c for c in cells if c[0] == T]) for T in Ts] if args.per_length else [(None, cells)]
    jobs = [(seed, T, group, m) for seed in seeds for T, group in groups for m in mixers]
    for seed, T, group, m in jobs:
        if any(r["mixer"] == m and r["seed"] == seed and r.get("T") == T for r in runs):
            continue
        try:
            r = train_one(m, seed, group, args)
        except NonFinite as e:
            print("FAILED: %s" % e, flush=True)
            return 2
        r["hla_implementation"] = IMPLEMENTATION if m in ("hla2", "ahla", "hla3") else "torch"
        r["T"] = T
        runs.append(r)
        print("%-7s seed %d%s: %d params, train %.0f s, eval %.0f s, final loss %.3f, mean acc %.3f"
              % (m, seed, "" if T is None else " T=%d" % T, r["params"], r["train_seconds"], r["eval_seconds"],
                 r["final_loss"], np.mean(list(r["acc"].values()))), flush=True)
        if args.out:
            tmp = args.out + ".tmp"
            with open(tmp, "w") as f:
                json.dump(dict(config=config, runs=runs), f, indent=1)
            os.replace(tmp, args.out)
    print()
    print("Accuracy on query positions (held-out; mean over seeds %s%s):" %
          (args.seeds, ", min-max in brackets" if len(seeds) > 1 else ""))
    print(table([r for r in runs if r["seed"] in seeds], cells, mixers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
