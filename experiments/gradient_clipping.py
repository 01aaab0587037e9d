"""Experiment 2: exploding gradients and clipping.

Question: what does an exploding gradient look like, and what does clipping it buy? An Elman
RNN whose recurrent weights are scaled up (w_h = GAIN x an orthogonal matrix, so the recurrent
Jacobian has a spectral radius well above 1 wherever the tanh units are not saturated) is
trained on the adding problem by plain SGD, as in Pascanu, Mikolov & Bengio (2013), once
without clipping and once with ``clip_by_global_norm`` at each of several thresholds, from the
same initial params and on the same batches. rnnjax.train.make_train_step(clip_norm=c) clips
and reports the raw gradient norm and whether it clipped.

    python experiments/gradient_clipping.py            # default size, a minute or two on a CPU
    python experiments/gradient_clipping.py --full

Writes experiments/results/gradient_clipping.json and gradient_clipping_{loss,grad_norm}.png.
"""

import itertools
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

NAME = "gradient_clipping"
CLIP_NORMS = (None, 10.0, 1.0, 0.1)  # None: no clipping
COLORS = {None: "tab:red", 10.0: "tab:orange", 1.0: "tab:green", 0.1: "tab:blue"}
ADDING_BASELINE = 1 / 6
SIZES = {  # sequence length, hidden units, recurrent gain, batch, steps, seeds, SGD learning rates
    "tiny": dict(lag=8, hidden=8, gain=3.0, batch=8, steps=3, seeds=1, lrs=(0.02, 0.1), test_batch=16),
    "default": dict(lag=10, hidden=32, gain=3.0, batch=32, steps=1500, seeds=3, lrs=(0.02, 0.1), test_batch=512),
    "full": dict(lag=20, hidden=128, gain=3.0, batch=64, steps=20_000, seeds=10, lrs=(0.02, 0.1), test_batch=2048),
}
LOG_EVERY = 10


def label(clip_norm):
    return "no clipping" if clip_norm is None else f"clip {clip_norm:g}"


def make_model(hidden, gain, key):
    """Elman(hidden) with w_h scaled by ``gain``, and a Dense(1) head on the last output."""
    cell, head = rj.ElmanCell(hidden), Dense(1)
    k_cell, k_head = jax.random.split(key)
    cell_params = cell.init(k_cell, 2)
    cell_params = cell_params._replace(w_h=gain * cell_params.w_h)  # orthogonal x gain
    params = {"cell": cell_params, "head": head.init(k_head, hidden)}

    def loss(params, batch):  # batch: xs [b, t, 2], targets [b]
        xs, targets = batch
        ys = jax.vmap(lambda x: rj.unroll(cell, params["cell"], x)[1][-1])(xs)  # [b, h], the last outputs
        return jnp.mean((head.apply(params["head"], ys)[:, 0] - targets) ** 2)

    return cell, params, loss


def train(train_step, params, optimizer, data, steps, bar):
    """Returns the trained params and per-step arrays of loss, raw gradient norm and clipped flag."""
    opt_state = optimizer.init(params)
    records = []
    for step in range(steps):
        params, opt_state, metrics = train_step(params, opt_state, data(step), None)
        records.append(metrics)
        if step % 100 == 0:
            bar.set_postfix(loss=f"{float(metrics['loss']):.3g}", grad_norm=f"{float(metrics['grad_norm']):.3g}")
        bar.update(1)
    records = jax.device_get(records)
    trace = {k: np.array([r[k] for r in records], np.float64) for k in ("loss", "grad_norm")}
    trace["clipped"] = np.array([bool(r.get("clipped", False)) for r in records])
    return params, trace


def chunk_means(values):
    """Mean of every LOG_EVERY steps (NaN once a run has diverged)."""
    n = max(1, len(values) // LOG_EVERY)
    chunks = np.array_split(values, n)
    return np.cumsum([len(c) for c in chunks]).tolist(), [float(np.mean(c)) for c in chunks]


def main(argv=None):
    args = _common.parser(__doc__.split("\n")[0]).parse_args(argv)
    size = _common.chosen_size(args, SIZES)
    print(
        f"{NAME}: Elman({size['hidden']}) with w_h = {size['gain']} x orthogonal, adding problem T={size['lag']}, "
        f"sgd at {size['lrs']}, {[label(c) for c in CLIP_NORMS]}, {size['seeds']} seeds"
    )
    start = time.perf_counter()
    test = rj.data.adding_problem((args.seed, 10**6), size["test_batch"], size["lag"])

    # 1. How steep is it? The spectral radius of d carry_t / d carry_{t-1} along a test sequence.
    cell, params0, loss = make_model(size["hidden"], size["gain"], jax.random.key(args.seed))
    radius = rj.train.jacobian_spectral_radius(cell, params0["cell"], jnp.asarray(test[0][0]))
    print(f"recurrent Jacobian spectral radius at init: mean {float(radius.mean()):.2f}, max {float(radius.max()):.2f}")

    # 2. The same runs with and without clipping, at each learning rate; one jitted step per setting.
    test_loss = jax.jit(loss)
    runs = []
    bar = tqdm(total=len(size["lrs"]) * len(CLIP_NORMS) * size["seeds"] * size["steps"], unit="step")
    for lr in size["lrs"]:
        optimizer = optax.sgd(lr)
        for clip_norm in CLIP_NORMS:
            train_step = rj.parallel.make_train_step(
                lambda p, b, k: loss(p, b), optimizer, devices=args.devices, clip_norm=clip_norm
            )
            for seed in range(args.seed, args.seed + size["seeds"]):
                bar.set_description(f"lr {lr:g} {label(clip_norm)} seed {seed}")
                _, params0, _ = make_model(size["hidden"], size["gain"], jax.random.key(seed))

                def data(step, seed=seed):
                    return rj.data.adding_problem((seed, step), size["batch"], size["lag"])

                params, trace = train(train_step, params0, optimizer, data, size["steps"], bar)
                not_finite = np.flatnonzero(~np.isfinite(trace["loss"]))
                steps, losses = chunk_means(trace["loss"])
                runs.append(
                    {
                        "lr": lr,
                        "clip_norm": clip_norm,
                        "seed": seed,
                        "test_mse": _common.finite_or_none(test_loss(params, test)),
                        "diverged_at": int(not_finite[0]) + 1 if len(not_finite) else None,
                        "clipped_fraction": float(trace["clipped"].mean()),
                        "grad_norm_median": _common.finite_or_none(np.nanmedian(trace["grad_norm"])),
                        "grad_norm_max": _common.finite_or_none(np.nanmax(trace["grad_norm"])),
                        "curve": {"step": steps, "loss": [_common.finite_or_none(v) for v in losses]},
                        "grad_norm_trace": [_common.finite_or_none(v) for v in trace["grad_norm"]]
                        if seed == args.seed
                        else None,
                    }
                )
    bar.close()

    summary = []
    for lr, clip_norm in itertools.product(size["lrs"], CLIP_NORMS):
        mine = [r for r in runs if r["clip_norm"] == clip_norm and r["lr"] == lr]
        mses = [np.inf if r["test_mse"] is None else r["test_mse"] for r in mine]
        summary.append(
            {
                "lr": lr,
                "clip_norm": clip_norm,
                "test_mse_median": _common.finite_or_none(np.median(mses)),
                "test_mse_per_seed": [r["test_mse"] for r in mine],
                "diverged_runs": sum(r["diverged_at"] is not None for r in mine),
                "diverged_at": [r["diverged_at"] for r in mine],
                "clipped_fraction_mean": float(np.mean([r["clipped_fraction"] for r in mine])),
                "grad_norm_median": _common.finite_or_none(np.median([r["grad_norm_median"] or np.inf for r in mine])),
            }
        )
    results = {
        "name": NAME,
        "size": _common.size_name(args),
        "config": {
            **size,
            "lrs": list(size["lrs"]),
            "clip_norms": list(CLIP_NORMS),
            "optimizer": "sgd",
            "seed": args.seed,
            "task": "adding problem",
        },
        "environment": _common.environment(),
        "adding_baseline": ADDING_BASELINE,
        "jacobian_spectral_radius_at_init": {"mean": float(radius.mean()), "max": float(radius.max())},
        "summary": summary,
        "runs": runs,
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    _common.save_results(results, args, NAME)
    plot(results, args)
    print(summary_table(results))
    print(f"wrote {args.out / (NAME + '.json')} in {results['wall_time_s']} s")
    return results


def plot(results, args):
    config = results["config"]
    fig, axes = plt.subplots(1, len(config["lrs"]), figsize=(5.2 * len(config["lrs"]), 3.6), sharey=True)
    for ax, lr in zip(np.atleast_1d(axes), config["lrs"], strict=True):
        for clip_norm in CLIP_NORMS:
            mine = [r for r in results["runs"] if r["clip_norm"] == clip_norm and r["lr"] == lr]
            for i, run in enumerate(mine):  # one line per seed; a diverged run stops where its loss became NaN
                losses = np.array([np.nan if v is None else v for v in run["curve"]["loss"]])
                ax.plot(run["curve"]["step"], losses, color=COLORS[clip_norm], lw=1, alpha=0.8,
                        label=label(clip_norm) if i == 0 else None)  # fmt: skip
                if run["diverged_at"] is not None:
                    ax.axvline(run["diverged_at"], color=COLORS[clip_norm], ls=":", lw=1)
        ax.axhline(ADDING_BASELINE, color="k", ls="--", lw=1, label="baseline")
        ax.set_yscale("log")
        ax.set_ylim(0.05, 20)  # a diverging run leaves through the top
        ax.set_xlabel("training step")
        ax.set_title(f"sgd({lr:g}); dotted: loss became NaN", fontsize=10)
    np.atleast_1d(axes)[0].set_ylabel("training MSE (every seed)")
    np.atleast_1d(axes)[-1].legend(fontsize=8)
    fig.suptitle(f"Elman, w_h = {config['gain']:g} x orthogonal, adding problem T = {config['lag']}", fontsize=11)
    fig.tight_layout()
    _common.save_figure(fig, args, NAME, "loss")

    lr = max(config["lrs"])
    fig, axes = plt.subplots(len(CLIP_NORMS), 1, figsize=(6.5, 1.7 * len(CLIP_NORMS)), sharex=True, sharey=True)
    for ax, clip_norm in zip(np.atleast_1d(axes), CLIP_NORMS, strict=True):
        run = next(
            r for r in results["runs"] if r["clip_norm"] == clip_norm and r["lr"] == lr and r["seed"] == config["seed"]
        )
        trace = np.array([np.nan if v is None else v for v in run["grad_norm_trace"]])
        ax.plot(np.arange(1, len(trace) + 1), trace, color=COLORS[clip_norm], lw=0.7)
        if clip_norm is not None:
            ax.axhline(clip_norm, color="k", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_ylabel("raw norm")
        ended = "" if run["diverged_at"] is None else f"; NaN from step {run['diverged_at']}"
        ax.set_title(
            f"sgd({lr:g}), {label(clip_norm)}: gradient norm before clipping (seed {config['seed']}); "
            f"clipped {100 * run['clipped_fraction']:.0f}% of steps{ended}",
            fontsize=9,
        )
    np.atleast_1d(axes)[-1].set_xlabel("training step")
    fig.tight_layout()
    _common.save_figure(fig, args, NAME, "grad_norm")


def summary_table(results) -> str:
    rows = []
    for s in results["summary"]:
        mse = "NaN" if s["test_mse_median"] is None else f"{s['test_mse_median']:.4f}"
        per_seed = ", ".join("NaN" if v is None else f"{v:.3f}" for v in s["test_mse_per_seed"])
        diverged = ", ".join(str(d) for d in s["diverged_at"] if d is not None)
        rows.append(
            [
                f"{s['lr']:g}",
                label(s["clip_norm"]),
                mse,
                per_seed,
                f"{s['diverged_runs']}" + (f" (at step {diverged})" if diverged else ""),
                f"{100 * s['clipped_fraction_mean']:.0f}%",
                "NaN" if s["grad_norm_median"] is None else f"{s['grad_norm_median']:.3g}",
            ]
        )
    header = ["SGD lr", "clipping", "test MSE (median)", "per seed", "diverged", "steps clipped", "median raw norm"]
    return f"Adding problem, test MSE (baseline {ADDING_BASELINE:.3f}):\n" + _common.markdown_table(header, rows)


if __name__ == "__main__":
    main()
