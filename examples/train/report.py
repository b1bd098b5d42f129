#!/usr/bin/env python3
"""Tables and plots of MQAR results written by train.py.

    python3 examples/train/report.py examples/train/results/full.json [more.json ...] --plots docs/bench

Prints markdown tables (accuracy per mixer x cell, mean with min-max over seeds; parameters, wall
time, final loss) and, with --plots DIR, writes DIR/experiments_accuracy.png (accuracy vs number of
pairs, one panel per sequence length), DIR/experiments_length.png (accuracy vs sequence length, one
panel per number of pairs) and DIR/experiments_loss.png (training loss curves). Needs matplotlib for
the plots (pip install matplotlib).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ORDER = ("softmax", "linear", "hla2", "ahla", "hla3")
STYLE = {"softmax": ("k", "o"), "linear": ("tab:gray", "s"), "hla2": ("tab:blue", "^"),
         "ahla": ("tab:orange", "v"), "hla3": ("tab:green", "D")}


SAME = ("steps", "tokens_per_step", "eval_seqs", "per_length", "vocab", "filler", "width", "heads", "layers",
        "conv", "feature", "norm", "lr", "weight_decay", "warmup")


def load(paths):
    """Runs of one or more result files of the same training configuration (grids and seeds may differ)."""
    config, runs = None, []
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        data["config"].setdefault("filler", "random")      # files written before --filler existed
        if config is None:
            config = data["config"]
        elif any(config.get(k) != data["config"].get(k) for k in SAME):
            sys.exit("%s: another training configuration than %s" % (path, paths[0]))
        have = {(r["mixer"], r["seed"], r.get("T")) for r in runs}
        runs += [r for r in data["runs"] if (r["mixer"], r["seed"], r.get("T")) not in have]
    data = dict(config=config, runs=runs)
    cells = []
    for r in runs:
        for key in r["acc"]:
            c = tuple(int(x) for x in key.split(":"))
            if c not in cells:
                cells.append(c)
    cells.sort()
    mixers = [m for m in ORDER if any(r["mixer"] == m for r in runs)]
    return data["config"], runs, cells, mixers


def acc_stats(runs, mixer, cell):
    key = "%d:%d" % cell
    a = np.array([r["acc"][key] for r in runs if r["mixer"] == mixer and key in r["acc"]])
    return a.mean(), a.min(), a.max(), len(a)


def seeds_of(runs, cell):
    key = "%d:%d" % cell
    return ",".join(str(s) for s in sorted({r["seed"] for r in runs if key in r["acc"]}))


def tables(config, runs, cells, mixers):
    out = []
    out.append("Accuracy on the query positions of %d held-out sequences per cell; mean over the seeds "
               "(min-max in brackets when more than one)." % config["eval_seqs"])
    out.append("")
    Ts = sorted({c[0] for c in cells})
    for T in Ts:
        cs = [c for c in cells if c[0] == T]
        out.append("| T = %d, seeds %s | " % (T, seeds_of(runs, cs[0])) + " | ".join("N = %d" % c[1] for c in cs)
                   + " |")
        out.append("|---|" + "---|" * len(cs))
        for m in mixers:
            row = []
            for c in cs:
                mean, lo, hi, n = acc_stats(runs, m, c)
                row.append("%.3f" % mean + (" (%.3f-%.3f)" % (lo, hi) if n > 1 else ""))
            out.append("| %s | %s |" % (m, " | ".join(row)))
        out.append("")
    c0 = runs[0]["curve"]
    log_every = c0[1][0] - c0[0][0] if len(c0) > 1 else c0[0][0]
    groups = sorted({r.get("T") for r in runs}, key=lambda t: -1 if t is None else t)
    label = ["all cells" if T is None else "T = %d" % T for T in groups]
    out.append("Parameters, mean accuracy over all cells, and per model (one per %s): final training loss "
               "(mean of the last %d steps) and training wall time in seconds (%d steps; mean over seeds, "
               "each seed in brackets)." % ("sequence length" if groups != [None] else "mixer and seed",
                                            log_every, config["steps"]))
    out.append("")
    out.append("| mixer | parameters | mean accuracy | " + " | ".join("loss, %s" % l for l in label) + " | "
               + " | ".join("train s, %s" % l for l in label) + " | HLA implementation |")
    out.append("|---|---|---|" + "---|" * (2 * len(groups)) + "---|")
    for m in mixers:
        rs = [r for r in runs if r["mixer"] == m]
        mean_acc = np.mean([acc_stats(runs, m, c)[0] for c in cells])
        losses, secs = [], []
        for T in groups:
            g = [r for r in rs if r.get("T") == T]
            losses.append("%.2f" % np.mean([r["final_loss"] for r in g]))
            secs.append("%.0f (%s)" % (np.mean([r["train_seconds"] for r in g]),
                                        ", ".join("%.0f" % r["train_seconds"] for r in g)))
        out.append("| %s | %d | %.3f | %s | %s | %s |" % (m, rs[0]["params"], mean_acc, " | ".join(losses),
                                                       " | ".join(secs), rs[0].get("hla_implementation", "")))
    return "\n".join(out)


def plots(config, runs, cells, mixers, outdir, prefix="experiments"):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    impl = config.get("hla_implementation", "?")
    Ts = sorted({c[0] for c in cells})
    nseeds = sorted({len(seeds_of(runs, c).split(",")) for c in cells})
    sub = "%d steps, width %d, %d layers, %s seeds per cell; HLA via %s" % (
        config["steps"], config["width"], config["layers"], "-".join(map(str, nseeds)), impl)

    def panel_lines(ax, xs_cells, xvals):
        # chance (a uniformly random value token) and the score of guessing one of the N context values
        ax.axhline(1.0 / (config["vocab"] // 2), color="0.6", ls=":", lw=1)
        ax.plot(xvals, [1.0 / c[1] for c in xs_cells], color="0.6", ls="--", lw=1,
                label="1/N (a context value at random)")
        for m in mixers:
            col, mk = STYLE.get(m, (None, "o"))
            st = [acc_stats(runs, m, c) for c in xs_cells]
            mean = np.array([s[0] for s in st])
            lo = mean - np.array([s[1] for s in st])
            hi = np.array([s[2] for s in st]) - mean
            ax.errorbar(xvals, mean, yerr=[lo, hi], color=col, marker=mk, label=m, capsize=3, lw=1.5)
        ax.set_xscale("log", base=2)
        ax.set_xticks(xvals)
        ax.set_xticklabels([str(x) for x in xvals])
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)

    def accuracy_figure(keys, index, title, xlabel, width, height, what, suffix):
        """One panel per value of cell[index] (T or N), accuracy against the other coordinate of the cell."""
        fig, axes = plt.subplots(1, len(keys), figsize=(width * len(keys), height), sharey=True, squeeze=False)
        for ax, key in zip(axes[0], keys):
            cs = [c for c in cells if c[index] == key]
            panel_lines(ax, cs, [c[1 - index] for c in cs])
            ax.set_title(title % key)
            ax.set_xlabel(xlabel)
        axes[0][0].set_ylabel("recall accuracy (query positions)")
        axes[0][-1].legend(loc="center right", fontsize=8)
        fig.suptitle("MQAR accuracy vs %s (%s)" % (what, sub), fontsize=9)
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, prefix + suffix), dpi=110)
        plt.close(fig)

    accuracy_figure(Ts, 0, "T = %d", "key-value pairs N", 4.2, 3.6, "number of pairs", "_accuracy.png")
    Ns = sorted({c[1] for c in cells if sum(1 for d in cells if d[1] == c[1]) > 1})
    if Ns:
        accuracy_figure(Ns, 1, "N = %d pairs", "sequence length T", 3.4, 3.4, "sequence length", "_length.png")

    groups = sorted({r.get("T") for r in runs}, key=lambda t: -1 if t is None else t)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.6), sharey=True, squeeze=False)
    for ax, T in zip(axes[0], groups):
        for m in mixers:
            col, _ = STYLE.get(m, (None, "o"))
            for i, r in enumerate(r for r in runs if r["mixer"] == m and r.get("T") == T):
                c = np.array(r["curve"])
                ax.plot(c[:, 0], c[:, 1], color=col, lw=1.2, alpha=0.85, label=m if i == 0 else None)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.set_title("trained on all cells" if T is None else "trained at T = %d" % T, fontsize=9)
    axes[0][0].set_ylabel("train loss (query positions)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("MQAR training loss, one curve per seed (%s)" % sub, fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, prefix + "_loss.png"), dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="JSON files of train.py (same configuration; runs merged)")
    ap.add_argument("--plots", metavar="DIR")
    ap.add_argument("--prefix", default="experiments", help="file name prefix of the plots")
    args = ap.parse_args()
    config, runs, cells, mixers = load(args.results)
    print(tables(config, runs, cells, mixers))
    if args.plots:
        plots(config, runs, cells, mixers, args.plots, args.prefix)
        print("\nplots written to %s/%s_{accuracy,length,loss}.png" % (args.plots, args.prefix))


if __name__ == "__main__":
    main()
