"""Experiment 3: character language models against Kneser-Ney n-grams.

Question: how do recurrent character LMs (Elman, GRU, LSTM; one and two layers) compare with
the count-based baseline, interpolated modified Kneser-Ney of orders 2 to 7, on the same text?
The text is the embedded corpus (the Python standard library's own sources, split by file:
rnnjax.data.load_corpus); every model is scored in bits per character on the same validation
split. The RNNs are trained by the job behind `rnnjax demo` (rnnjax.apps.lm.train_char_lm: Adam
with warm-up, a cosine schedule and gradient clipping on random windows; validation with the carry
passed along 16 streams), all with the same budget of steps, so the table compares what each
architecture learns in the same number of updates (not the same time: the training times are
reported too).

    python experiments/language_models.py          # default size: a few minutes on a CPU
    python experiments/language_models.py --full   # larger models and budgets (GPU/TPU)

Writes experiments/results/language_models.json and language_models_{bpc,curves}.png.
"""

import math
import time

import _common
import matplotlib.pyplot as plt

from rnnjax.apps import lm

NAME = "language_models"
MODELS = [("elman", 1), ("gru", 1), ("lstm", 1), ("elman", 2), ("gru", 2), ("lstm", 2)]
COLORS = {"elman": "tab:red", "gru": "tab:green", "lstm": "tab:blue"}
SIZES = {  # corpus characters, hidden units, embedding, steps, batch, window, Kneser-Ney orders up to
    "tiny": dict(max_chars=20_000, hidden=8, embed=4, steps=3, batch=4, window=16, kn_order=3),
    "default": dict(max_chars=1_000_000, hidden=128, embed=32, steps=1000, batch=32, window=64, kn_order=7),
    "full": dict(max_chars=3_000_000, hidden=512, embed=64, steps=20_000, batch=64, window=128, kn_order=7),
}


def main(argv=None):
    args = _common.parser(__doc__.split("\n")[0]).parse_args(argv)
    size = _common.chosen_size(args, SIZES)

    # 1. Every model on the same corpus and split; the n-gram baselines are fitted once, with the first.
    runs = []
    kn_bpc = None
    for cell, layers in MODELS:
        config = lm.LMConfig(
            max_chars=size["max_chars"],
            cell=cell,
            layers=layers,
            hidden=size["hidden"],
            embed=size["embed"],
            steps=size["steps"],
            batch=size["batch"],
            window=size["window"],
            kn_order=size["kn_order"] if kn_bpc is None else 1,  # 1: no n-gram models
            seed=args.seed,
        )
        print(f"--- {layers} x {cell.upper()}({size['hidden']})")
        start = time.perf_counter()
        result = lm.train_char_lm(config, devices=args.devices)
        kn_bpc = kn_bpc or result["kn_valid_bpc"]
        runs.append(
            {
                "cell": cell,
                "layers": layers,
                "valid_bpc": _common.finite_or_none(result["lm_valid_bpc"]),
                "train_seconds": result["train_seconds"],
                "wall_seconds": time.perf_counter() - start,
                # the training loss of each logged step, in bits per character
                "curve": [
                    {"step": r["step"], "train_bpc": _common.finite_or_none(r["loss"] / math.log(2))}
                    for r in result["history"]
                    if "loss" in r
                ],
                "sample": result["samples"]["sample"],
            }
        )

    best_kn = min(kn_bpc.values())
    results = {
        "name": NAME,
        "size": _common.size_name(args),
        "config": {**size, "seed": args.seed, "models": MODELS},
        "kneser_ney_valid_bpc": {str(order): bpc for order, bpc in kn_bpc.items()},
        "runs": runs,
        "best_rnn": min(runs, key=lambda r: r["valid_bpc"] or math.inf)["cell"],
        "rnns_beating_best_kneser_ney": [f"{r['layers']}x{r['cell']}" for r in runs if r["valid_bpc"] < best_kn],
        "environment": _common.environment(),
    }
    _common.save_results(results, args, NAME)

    # 2. The table and the figures: bits per char of every model, and the RNNs' training curves.
    fig, ax = plt.subplots(figsize=(7, 3.5))
    orders = sorted(kn_bpc)
    ax.plot(orders, [kn_bpc[o] for o in orders], "o-", color="tab:gray", label="Kneser-Ney (order on the x axis)")
    for run in runs:
        style = "--" if run["layers"] == 2 else "-"
        ax.axhline(run["valid_bpc"], color=COLORS[run["cell"]], linestyle=style, label=f"{run['layers']}x{run['cell']}")
    ax.set_xlabel("n-gram order")
    ax.set_ylabel("validation bits per character")
    ax.legend(fontsize=7, ncol=2)
    _common.save_figure(fig, args, NAME, "bpc")

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for run in runs:
        style = "--" if run["layers"] == 2 else "-"
        steps = [p["step"] for p in run["curve"]]
        ax.plot(steps, [p["train_bpc"] for p in run["curve"]], style, color=COLORS[run["cell"]])
        ax.plot([], [], style, color=COLORS[run["cell"]], label=f"{run['layers']}x{run['cell']}")
    ax.axhline(best_kn, color="tab:gray", linestyle=":", label=f"best Kneser-Ney (valid) {best_kn:.2f}")
    ax.set_xlabel("step")
    ax.set_ylabel("training bits per character")
    ax.legend(fontsize=7, ncol=2)
    _common.save_figure(fig, args, NAME, "curves")

    print(table(results))


def table(results) -> str:
    rows = [[f"Kneser-Ney order {o}", f"{bpc:.3f}", ""] for o, bpc in results["kneser_ney_valid_bpc"].items()]
    rows += [
        [f"{r['layers']} x {r['cell'].upper()}", f"{r['valid_bpc']:.3f}", f"{r['train_seconds']:.0f}"]
        for r in results["runs"]
    ]
    return _common.markdown_table(["model", "valid bits/char", "training s (with compilation)"], rows)


if __name__ == "__main__":
    main()
