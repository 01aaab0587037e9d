"""Experiment 1: vanishing gradients and long-range memory.

Question: how far back can each cell carry information when trained by backpropagation
through time? Two synthetic tasks whose answer depends on inputs T steps back:

- the adding problem (Hochreiter & Schmidhuber 1997, the variant of Le et al. 2015): sum the
  two marked values of a length-T sequence. Predicting the mean scores MSE 1/6 ~ 0.167.
- the copy task (Arjovsky et al. 2016): reproduce 10 symbols after a delay of T blanks. A
  memoryless guess scores the cross-entropy 10 log 8 / (T + 20) (see rnnjax.data.copy_task).

Each of Elman, LSTM, GRU and minGRU is trained at growing lags T with Adam and gradient
clipping. Then the per-timestep gradient norm ||dL/dcarry_t|| of each cell on the adding
problem shows why the Elman RNN stalls: its gradient vanishes geometrically going back in time.

    python experiments/long_range_memory.py            # default size, a few minutes on a CPU
    python experiments/long_range_memory.py --full     # paper-sized (GPU/TPU)

Writes experiments/results/long_range_memory.json and long_range_memory_{adding,copy,gradients}.png.
"""

import math
import time

import _common
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from tqdm.auto import tqdm

import rnnjax as rj
from rnnjax.heads import Dense

NAME = "long_range_memory"
CELLS = {"elman": rj.ElmanCell, "lstm": rj.LSTMCell, "gru": rj.GRUCell, "mingru": rj.MinGRUCell}
COLORS = {"elman": "tab:red", "lstm": "tab:blue", "gru": "tab:green", "mingru": "tab:purple"}
ADDING_BASELINE = 1 / 6  # Var(u1 + u2) for u ~ U[0, 1): the MSE of predicting the mean
NUM_SYMBOLS, COPY_LEN = 8, 10  # copy task: v = NUM_SYMBOLS + 2 classes (blank, symbols, delimiter)
SOLVED_MSE = 0.01  # adding problem "solved" below this test MSE

SIZES = {  # lags, hidden units, batch, training steps per run (adding, copy), test sequences, Adam learning rate
    "tiny": dict(lags=(8,), hidden=8, batch=8, steps=3, copy_steps=3, test_batch=16, lr=1e-2),
    "default": dict(lags=(50, 100, 200, 400), hidden=32, batch=64, steps=800, copy_steps=300, test_batch=512, lr=1e-2),
    "full": dict(
        lags=(100, 200, 400, 750), hidden=128, batch=128, steps=10_000, copy_steps=10_000, test_batch=2048, lr=1e-3
    ),
}
CLIP_NORM = 1.0
LOG_EVERY = 10  # learning curves keep the mean loss of every LOG_EVERY steps


# --- the two tasks as (model, loss, data) ------------------------------------------------------


def adding_model(cell, key):
    """Many-to-one regression: the last output of the cell through a Dense(1) head."""
    head = Dense(1)
    k_cell, k_head = jax.random.split(key)
    params = {"cell": cell.init(k_cell, 2), "head": head.init(k_head, cell.output_size)}

    def predict(params, xs):  # xs [t, 2] -> scalar
        _, ys = rj.unroll(cell, params["cell"], xs)
        return head.apply(params["head"], ys[-1])[0]

    def loss(params, batch):  # batch: xs [b, t, 2], targets [b]
        xs, targets = batch
        return jnp.mean((jax.vmap(predict, (None, 0))(params, xs) - targets) ** 2)

    return params, loss


def copy_model(cell, key):
    """Many-to-many classification: a Dense(v) head on every output, tokens fed one-hot."""
    vocab = NUM_SYMBOLS + 2
    head = Dense(vocab)
    k_cell, k_head = jax.random.split(key)
    params = {"cell": cell.init(k_cell, vocab), "head": head.init(k_head, cell.output_size)}

    def logits(params, tokens):  # tokens [t] -> [t, v]
        _, ys = rj.unroll(cell, params["cell"], jax.nn.one_hot(tokens, vocab, dtype=jnp.float32))
        return head.apply(params["head"], ys)

    def loss(params, batch):  # batch: inputs [b, t], targets [b, t]
        inputs, targets = batch
        return rj.losses.sequence_cross_entropy(jax.vmap(logits, (None, 0))(params, inputs), targets)

    def evaluate(params, batch):  # (cross-entropy, accuracy on the K recalled symbols)
        inputs, targets = batch
        all_logits = jax.vmap(logits, (None, 0))(params, inputs)
        guess = jnp.argmax(all_logits, axis=-1)
        recalled = jnp.mean(guess[:, -COPY_LEN:] == targets[:, -COPY_LEN:])
        return rj.losses.sequence_cross_entropy(all_logits, targets), recalled

    return params, loss, evaluate


def adding_data(seed, batch, lag):
    return rj.data.adding_problem(seed, batch, lag)


def copy_data(seed, batch, lag):
    return rj.data.copy_task(seed, batch, lag, num_symbols=NUM_SYMBOLS, copy_len=COPY_LEN)


def copy_baseline(lag):
    return COPY_LEN * math.log(NUM_SYMBOLS) / (lag + 2 * COPY_LEN)


# --- one training run ----------------------------------------------------------------------------


def train(params, loss, data, steps, lr, seed, bar, devices=None):
    """Adam with clip_by_global_norm(CLIP_NORM) on ``devices`` devices; the trained params, the loss at each step."""
    optimizer = optax.adam(lr)
    loss_fn = lambda p, batch, key: loss(p, batch)  # noqa: E731
    train_step = rj.parallel.make_train_step(loss_fn, optimizer, devices=devices, clip_norm=CLIP_NORM)
    opt_state = optimizer.init(params)
    losses = []
    for step in range(steps):
        params, opt_state, metrics = train_step(params, opt_state, data((seed, step)), None)
        losses.append(metrics["loss"])
        if step % 50 == 0:
            bar.set_postfix(loss=f"{float(metrics['loss']):.4f}")
        bar.update(1)
    return params, np.asarray(jax.device_get(losses), np.float64)


def curve(losses):
    """Mean of every LOG_EVERY steps, with the step at the end of each chunk."""
    n = max(1, len(losses) // LOG_EVERY)
    chunks = np.array_split(losses, n)
    steps = np.cumsum([len(c) for c in chunks])
    return {"step": steps.tolist(), "loss": [_common.finite_or_none(np.mean(c)) for c in chunks]}


def first_step_below(losses, threshold):
    """The first step (1-based) at which the running mean of LOG_EVERY losses is below ``threshold``."""
    c = curve(losses)
    below = [s for s, v in zip(c["step"], c["loss"], strict=True) if v is not None and v < threshold]
    return below[0] if below else None


# --- the vanishing gradient, step by step --------------------------------------------------------


def carry_gradient_profile(cell):
    """``profile(params, (xs [b, t, 2], targets [b])) -> [t]``: the mean over the batch of
    ||dL/dcarry_t|| for the squared error of the adding model on one sequence."""
    head = Dense(1)

    def one(params, xs, target):
        def loss_fn(final_carry, ys):
            return (head.apply(params["head"], ys[-1])[0] - target) ** 2

        return rj.train.carry_gradient_norms(cell, params["cell"], xs, loss_fn)

    @jax.jit
    def profile(params, batch):
        xs, targets = batch
        return jnp.mean(jax.vmap(one, (None, 0, 0))(params, xs, targets), axis=0)

    return profile


REACH_FACTOR = 1e-3


def gradient_reach(norms):
    """How many steps back from the loss ||dL/dcarry_t|| stays above REACH_FACTOR x its value at the last step."""
    above = norms >= REACH_FACTOR * norms[-1]
    below = np.flatnonzero(~above[::-1])
    return int(below[0]) if len(below) else len(norms)


# --- the experiment ------------------------------------------------------------------------------


def main(argv=None):
    args = _common.parser(__doc__.split("\n")[0]).parse_args(argv)
    size = _common.chosen_size(args, SIZES)
    if args.steps is not None:
        size["copy_steps"] = args.steps
    lags, steps, hidden = size["lags"], size["steps"], size["hidden"]
    print(
        f"{NAME}: cells {list(CELLS)}, lags {lags}, hidden {hidden}, {steps} (adding) and {size['copy_steps']} (copy) "
        f"steps per run, on {jax.default_backend()}"
    )
    start = time.perf_counter()
    results = {
        "name": NAME,
        "size": _common.size_name(args),
        "config": {
            **size,
            "lags": list(lags),
            "cells": list(CELLS),
            "clip_norm": CLIP_NORM,
            "seed": args.seed,
            "optimizer": "adam",
            "num_symbols": NUM_SYMBOLS,
            "copy_len": COPY_LEN,
        },
        "environment": _common.environment(),
        "adding": {"baseline": ADDING_BASELINE, "solved_mse": SOLVED_MSE, "runs": []},
        "copy": {"runs": []},
    }
    key = jax.random.key(args.seed)
    gradient_lags = sorted({lags[min(1, len(lags) - 1)], lags[-1]})  # T = 100 and the longest at the default size
    trained_for_gradients = {}  # (cell name, lag) -> (params at init, trained params)
    bar = tqdm(total=len(CELLS) * len(lags) * (steps + size["copy_steps"]), unit="step")

    # 1. The adding problem: one regression target, T steps after the first marker.
    for lag in lags:
        test = adding_data((args.seed, 10**6), size["test_batch"], lag)
        for name, cell_type in CELLS.items():
            bar.set_description(f"adding T={lag} {name}")
            params0, loss = adding_model(cell_type(hidden), jax.random.fold_in(key, lag))
            params, losses = train(
                params0,
                loss,
                lambda s, lag=lag: adding_data(s, size["batch"], lag),
                steps,
                size["lr"],
                args.seed,
                bar,
                args.devices,
            )
            test_mse = float(jax.jit(loss)(params, test))
            results["adding"]["runs"].append(
                {
                    "cell": name,
                    "lag": lag,
                    "test_mse": _common.finite_or_none(test_mse),
                    "solved": bool(test_mse < SOLVED_MSE),
                    "steps_to_solve": first_step_below(losses, SOLVED_MSE),
                    "curve": curve(losses),
                }
            )
            if lag in gradient_lags:
                trained_for_gradients[name, lag] = (params0, params)

    # 2. The copy task: ten symbols to recall after T blanks.
    for lag in lags:
        test = copy_data((args.seed, 10**6), size["test_batch"], lag)
        for name, cell_type in CELLS.items():
            bar.set_description(f"copy T={lag} {name}")
            params, loss, evaluate = copy_model(cell_type(hidden), jax.random.fold_in(key, lag))
            params, losses = train(
                params,
                loss,
                lambda s, lag=lag: copy_data(s, size["batch"], lag),
                size["copy_steps"],
                size["lr"],
                args.seed,
                bar,
                args.devices,
            )
            cross_entropy, recalled = jax.jit(evaluate)(params, test)
            results["copy"]["runs"].append(
                {
                    "cell": name,
                    "lag": lag,
                    "baseline": copy_baseline(lag),
                    "test_cross_entropy": _common.finite_or_none(cross_entropy),
                    "test_recall_accuracy": float(recalled),
                    "curve": curve(losses),
                }
            )
    bar.close()

    # 3. Why: ||dL/dcarry_t|| for the adding loss, before and after training; how far back it reaches.
    gradients = {"lags": gradient_lags, "reach_factor": REACH_FACTOR, "init": {}, "trained": {}, "reach": {}}
    for (name, lag), (params0, params) in trained_for_gradients.items():
        batch = adding_data((args.seed, 10**6 + 1), 32, lag)
        profile = carry_gradient_profile(CELLS[name](hidden))
        for when, p in (("init", params0), ("trained", params)):
            norms = np.asarray(profile(p, batch), np.float64)
            gradients[when].setdefault(str(lag), {})[name] = norms.tolist()
            gradients["reach"].setdefault(when, {}).setdefault(str(lag), {})[name] = gradient_reach(norms)
    results["gradient_norms"] = gradients
    results["wall_time_s"] = round(time.perf_counter() - start, 1)

    _common.save_results(results, args, NAME)
    plot_curves(results, args)
    plot_gradients(results, args)
    print(summary_tables(results))
    print(f"wrote {args.out / (NAME + '.json')} in {results['wall_time_s']} s")
    return results


# --- figures and tables --------------------------------------------------------------------------


def plot_curves(results, args):
    lags = results["config"]["lags"]
    for task, ylabel in (("adding", "MSE"), ("copy", "cross-entropy (nats)")):
        fig, axes = plt.subplots(1, len(lags), figsize=(3.6 * len(lags), 3.2), sharey=True, squeeze=False)
        for ax, lag in zip(axes[0], lags, strict=True):
            for run in results[task]["runs"]:
                if run["lag"] == lag:
                    ax.plot(run["curve"]["step"], run["curve"]["loss"], color=COLORS[run["cell"]], label=run["cell"])
            baseline = ADDING_BASELINE if task == "adding" else copy_baseline(lag)
            ax.axhline(baseline, color="k", ls="--", lw=1, label="baseline")
            ax.set_yscale("log")
            ax.set_title(f"{task}, T = {lag}")
            ax.set_xlabel("training step")
        axes[0, 0].set_ylabel(f"training {ylabel}")
        axes[0, -1].legend(fontsize=8)
        fig.tight_layout()
        _common.save_figure(fig, args, NAME, task)


def plot_gradients(results, args):
    gradients = results["gradient_norms"]
    lags = gradients["lags"]
    fig, axes = plt.subplots(2, len(lags), figsize=(5.2 * len(lags), 6), sharey=True, squeeze=False)
    for col, lag in enumerate(lags):
        for row, when in enumerate(("init", "trained")):
            ax = axes[row, col]
            for name, norms in gradients[when][str(lag)].items():
                shown = np.where(np.asarray(norms) > 0, norms, np.nan)  # float32 underflows to 0 far back
                ax.plot(np.arange(len(norms)), shown, color=COLORS[name], label=name)
            ax.set_yscale("log")
            ax.set_title(f"adding, T = {lag}, {'at initialisation' if when == 'init' else 'after training'}")
        axes[1, col].set_xlabel("time step t (the loss reads the last output)")
    for row in range(2):
        axes[row, 0].set_ylabel(r"$\|\partial L / \partial \mathrm{carry}_t\|$")
    axes[0, -1].legend(fontsize=8)
    fig.tight_layout()
    _common.save_figure(fig, args, NAME, "gradients")


def summary_tables(results) -> str:
    lags = results["config"]["lags"]

    def table(task, field, fmt):
        rows = []
        for name in results["config"]["cells"]:
            by_lag = {r["lag"]: r for r in results[task]["runs"] if r["cell"] == name}
            rows.append([name] + [fmt(by_lag[lag]) for lag in lags])
        return _common.markdown_table(["cell"] + [f"T = {lag}" for lag in lags], rows)

    def mse(run):
        return "diverged" if run["test_mse"] is None else f"{run['test_mse']:.4f}"

    def copy(run):
        ce = "diverged" if run["test_cross_entropy"] is None else f"{run['test_cross_entropy']:.3f}"
        return f"{ce} ({run['baseline']:.3f}) / {100 * run['test_recall_accuracy']:.0f}%"

    reach = results["gradient_norms"]["reach"]
    gradient_lags = results["gradient_norms"]["lags"]

    def reach_cell(when, lag, name):
        steps = reach[when][str(lag)][name]
        return f"all {steps}" if steps == lag else str(steps)

    gradient_rows = [
        [name] + [reach_cell(when, lag, name) for lag in gradient_lags for when in ("init", "trained")]
        for name in results["config"]["cells"]
    ]
    gradient_header = ["cell"] + [f"T = {lag}, {when}" for lag in gradient_lags for when in ("init", "trained")]
    return "\n\n".join(
        [
            f"Adding problem, test MSE (baseline {ADDING_BASELINE:.3f}):\n" + table("adding", "test_mse", mse),
            "Copy task, test cross-entropy (baseline) / recall accuracy of the 10 symbols (chance 12%):\n"
            + table("copy", "test_cross_entropy", copy),
            f"Steps back from the loss over which ||dL/dcarry_t|| stays above {REACH_FACTOR:g} x its last value "
            "(adding problem):\n" + _common.markdown_table(gradient_header, gradient_rows),
        ]
    )


if __name__ == "__main__":
    main()
