"""Experiment: identifying a nonlinear plant on-line with a locally recurrent network (IIR-MLP).

Question: on a locally recurrent network, how does causal recursive backpropagation (CRBP,
Campolucci et al. 1999) learn on-line compared with RTRL and truncated BPTT, and with its
``h = 0`` special case, the Back-Tsoi algorithm?

The plant is Example 1 of Narendra & Parthasarathy (1990)::

    y(t+1) = 0.3 y(t) + 0.6 y(t-1) + f(u(t)),   f(u) = 0.6 sin(pi u) + 0.3 sin(3 pi u) + 0.1 sin(5 pi u)

identified as a *parallel* (output-error) model: the network sees only u(t) and must predict
y(t+1) (standardised), so all memory of the plant's state is in its IIR synapses. Training is
one stream of u(t) ~ U[-1, 1]; every algorithm starts from the same weights and updates them
on-line with SGD (per-sample learning rate ``lr``, falling linearly to lr / 10 over the stream;
each update clipped to global norm 1, and
the AR taps of every synapse then projected into sum_k |v_k| <= 0.99, so the filters stay stable):

- ``crbp``: CRBP with truncation depth ``h`` (one update per sample, rnnjax.local.crbp_step);
- ``back_tsoi``: CRBP with ``h = 0``;
- ``rtrl``: real-time recurrent learning (one update per sample, forward sensitivities of the
  whole carry);
- ``tbptt``: epochwise truncated BPTT over blocks of ``h`` samples (rnnjax.train.truncated_bptt_grad,
  the carry passed between blocks; one update per block, the sum of its per-sample gradients).

Learning curves, every ``eval_every`` samples: the on-line squared error (mean over the block
of the stream), and the MSE of the parallel model run from rest on a held-out random input
(the training distribution) and on Narendra's test input u(t) = sin(2 pi t / 250) (slower and
larger than anything in training: a test of extrapolation). Also measured, once, in float64:
the largest difference between CRBP's accumulated untruncated gradient and BPTT's on a window
of the training stream.

    python experiments/local_recurrence.py          # default size, about two minutes on a CPU
    python experiments/local_recurrence.py --full   # longer streams, more seeds

Writes experiments/results/local_recurrence.json and local_recurrence_{curves,test}.png.
"""

import dataclasses
import time

import _common
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from tqdm.auto import tqdm

import rnnjax as rj
from rnnjax import local

NAME = "local_recurrence"
ALGORITHMS = ("crbp", "back_tsoi", "rtrl", "tbptt")
COLORS = {"crbp": "tab:blue", "back_tsoi": "tab:orange", "rtrl": "tab:green", "tbptt": "tab:red"}
LABELS = {
    "crbp": "CRBP (h={h})",
    "back_tsoi": "Back-Tsoi (CRBP h=0)",
    "rtrl": "RTRL",
    "tbptt": "truncated BPTT (h={h})",
}
SIZES = {  # samples of the training stream, seeds, hidden units, MA/AR orders, truncation h, lr, evaluation period
    "tiny": dict(steps=200, seeds=1, hidden=4, ma_order=1, ar_order=2, depth=4, lr=0.01, eval_every=100, test_len=100),
    "default": dict(
        steps=100000, seeds=3, hidden=10, ma_order=1, ar_order=2, depth=10, lr=0.01, eval_every=2500, test_len=500
    ),
    "full": dict(
        steps=500000, seeds=10, hidden=10, ma_order=1, ar_order=2, depth=10, lr=0.01, eval_every=10000, test_len=800
    ),
}
CLIP = 1.0
LR_DECAY = 0.9  # the learning rate falls linearly to (1 - LR_DECAY) lr over the stream
LATE = 0.25  # summaries: the median over the last quarter of the evaluations (single points are noisy)


# --- the plant -----------------------------------------------------------------------------------


def plant_nonlinearity(u):
    return 0.6 * np.sin(np.pi * u) + 0.3 * np.sin(3 * np.pi * u) + 0.1 * np.sin(5 * np.pi * u)


def simulate_plant(u):
    """Narendra-Parthasarathy Example 1 driven by ``u [t]``: returns ``y(t+1)`` for every t, ``[t]``."""
    y = np.zeros(len(u) + 2)  # y[n + 1] is y(n); y(-1) = y(0) = 0
    for t in range(len(u)):
        y[t + 2] = 0.3 * y[t + 1] + 0.6 * y[t] + plant_nonlinearity(u[t])
    return y[2:]


# --- on-line learners: each is one jitted scan over a block of samples --------------------------------


def clipped_sgd(params, grads, lr):
    updates, _ = optax.clip_by_global_norm(CLIP).update(grads, optax.EmptyState())
    return local.project_stable(jax.tree_util.tree_map(lambda p, g: p - lr * g, params, updates))


def mse(y, target):
    return jnp.sum((y - target) ** 2)


def make_crbp(cell, depth):
    @jax.jit
    def run(params, state, us, targets, lr):
        def body(carry, inp):
            params, state = carry
            state, loss, _, grads = local.crbp_step(cell, params, state, *inp, mse, depth=depth)
            return (clipped_sgd(params, grads, lr), state), loss

        (params, state), losses = jax.lax.scan(body, (params, state), (us, targets))
        return params, state, losses

    return lambda params: local.crbp_init(cell, params, depth), run


def make_rtrl(cell):
    """On-line RTRL: the sensitivity of the flat carry to the flat params, carried forward (Williams & Zipser)."""

    def init(params):
        carry = cell.initial_carry(params)
        return carry, jnp.zeros((ravel_pytree(carry)[0].size, ravel_pytree(params)[0].size), jnp.float32)

    @jax.jit
    def run(params, state, us, targets, lr):
        def body(inner, inp):
            params, (carry, sensitivity) = inner
            u, target = inp
            theta, unravel_params = ravel_pytree(params)
            c, unravel_carry = ravel_pytree(carry)

            def flat_step(theta, c):
                new_carry, y = cell.step(unravel_params(theta), unravel_carry(c), u)
                return ravel_pytree(new_carry)[0], y

            (new_c, y), ((dc_dtheta, dc_dc), (dy_dtheta, dy_dc)) = (
                flat_step(theta, c),
                jax.jacfwd(flat_step, argnums=(0, 1))(theta, c),
            )
            loss, dl_dy = jax.value_and_grad(mse)(y, target)
            grad = dl_dy @ (dy_dc @ sensitivity + dy_dtheta)
            sensitivity = dc_dc @ sensitivity + dc_dtheta  # (the weights change on-line: the usual RTRL approximation)
            params = clipped_sgd(params, unravel_params(grad), lr)
            return (params, (unravel_carry(new_c), sensitivity)), loss

        (params, state), losses = jax.lax.scan(body, (params, state), (us, targets))
        return params, state, losses

    return init, run


def make_tbptt(cell, depth):
    @jax.jit
    def run(params, carry, us, targets, lr):
        def body(inner, inp):
            params, carry = inner
            u_block, target_block = inp
            loss, grads, carry = rj.train.truncated_bptt_grad(
                cell, params, u_block, target_block, mse, k1=depth, carry=carry
            )
            return (clipped_sgd(params, grads, depth * lr), carry), loss / depth

        blocks = us.shape[0] // depth
        us_b = us[: blocks * depth].reshape(blocks, depth, -1)
        targets_b = targets[: blocks * depth].reshape(blocks, depth, -1)
        (params, carry), losses = jax.lax.scan(body, (params, carry), (us_b, targets_b))
        return params, carry, jnp.repeat(losses, depth)

    return lambda params: cell.initial_carry(params), run


def make_test(cell, tests):
    """``{name: (u [t, 1], y [t, 1])}`` -> ``test_mse(params) -> {name: MSE of the parallel model run from rest}``."""

    @jax.jit
    def test_mse(params):
        return {name: jnp.mean((rj.unroll(cell, params, u)[1] - y) ** 2) for name, (u, y) in tests.items()}

    return test_mse


# --- the experiment --------------------------------------------------------------------------------


def _max_diff(a, b):
    return float(max(jnp.max(jnp.abs(x - y)) for x, y in zip(*map(jax.tree_util.tree_leaves, (a, b)), strict=True)))


def exactness_check(cell, params, us, targets):
    """max |CRBP untruncated - BPTT| over all gradient entries, in float64, on a window of the stream."""
    with jax.enable_x64(True):
        params64 = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
        cell64 = dataclasses.replace(cell, param_dtype=jnp.float64)
        us64, targets64 = jnp.asarray(us, jnp.float64), jnp.asarray(targets, jnp.float64)
        _, exact = jax.jit(lambda p: local.crbp_grad(cell64, p, us64, targets64, mse))(params64)
        _, bptt = jax.jit(lambda p: rj.train.bptt_grad(cell64, p, us64, targets64, mse))(params64)
        _, trunc = jax.jit(lambda p: local.crbp_grad(cell64, p, us64, targets64, mse, depth=2))(params64)
        scale = float(max(jnp.max(jnp.abs(x)) for x in jax.tree_util.tree_leaves(bptt)))
        return {
            "window": int(us.shape[0]),
            "max_abs_diff_crbp_untruncated_vs_bptt": _max_diff(exact, bptt),
            "max_abs_diff_crbp_h2_vs_bptt": _max_diff(trunc, bptt),
            "max_abs_bptt_gradient": scale,
        }


def main(argv=None):
    parser = _common.parser(__doc__.split("\n")[0])
    parser.add_argument("--lr", type=float, help="per-sample SGD learning rate (default: set by the size)")
    parser.add_argument("--depth", type=int, help="truncation h of CRBP and BPTT (default: set by the size)")
    args = parser.parse_args(argv)
    size = _common.chosen_size(args, SIZES, flags=("steps", "lr", "depth"))
    size["eval_every"] = min(size["eval_every"], size["steps"])
    size["steps"] -= size["steps"] % size["eval_every"]
    size["eval_every"] -= size["eval_every"] % size["depth"]  # tbptt works in blocks of h samples
    start = time.perf_counter()

    rng = np.random.default_rng(args.seed)
    u_train = rng.uniform(-1.0, 1.0, size["steps"])
    y_train = simulate_plant(u_train)
    scale = float(y_train.std())
    t_test = np.arange(size["test_len"])
    u_test = np.sin(2 * np.pi * t_test / 250)
    y_test = simulate_plant(u_test)
    u_heldout = np.random.default_rng(args.seed + 10_000).uniform(-1.0, 1.0, size["test_len"])
    y_heldout = simulate_plant(u_heldout)
    as_seq = lambda a: jnp.asarray(a, jnp.float32)[:, None]  # noqa: E731
    us, targets = as_seq(u_train), as_seq(y_train / scale)
    u_test_j, y_test_j = as_seq(u_test), as_seq(y_test / scale)
    print(f"{NAME}: Narendra-Parthasarathy example 1, {size['steps']} training samples, y scale {scale:.3f}")

    cell = local.IIRMLPCell(
        (size["hidden"], 1), ma_order=size["ma_order"], ar_order=size["ar_order"], output_activation="identity"
    )
    tests = {"sine": (u_test_j, y_test_j), "random": (as_seq(u_heldout), as_seq(y_heldout / scale))}
    test_mse = make_test(cell, tests)
    learners = {
        "crbp": make_crbp(cell, size["depth"]),
        "back_tsoi": make_crbp(cell, 0),
        "rtrl": make_rtrl(cell),
        "tbptt": make_tbptt(cell, size["depth"]),
    }
    num_params = sum(p.size for p in jax.tree_util.tree_leaves(cell.init(jax.random.key(0), 1)))
    results = {
        "name": NAME,
        "size": _common.size_name(args),
        "config": {**size, "seed": args.seed, "clip_norm": CLIP, "num_params": int(num_params), "y_scale": scale},
        "environment": _common.environment(),
        "plant": "y(t+1) = 0.3 y(t) + 0.6 y(t-1) + 0.6 sin(pi u) + 0.3 sin(3 pi u) + 0.1 sin(5 pi u)",
        "test_mse_zero_predictor": {
            "sine": float(np.mean((y_test / scale) ** 2)),
            "random": float(np.mean((y_heldout / scale) ** 2)),
        },
        "runs": {name: [] for name in ALGORITHMS},
    }
    results["exactness_float64"] = exactness_check(cell, cell.init(jax.random.key(args.seed), 1), us[:40], targets[:40])
    print("CRBP vs BPTT (float64):", results["exactness_float64"])

    blocks = size["steps"] // size["eval_every"]
    bar = tqdm(total=len(ALGORITHMS) * size["seeds"] * size["steps"], unit="sample")
    for seed in range(args.seed, args.seed + size["seeds"]):
        params0 = cell.init(jax.random.key(seed), 1)
        for name in ALGORITHMS:
            bar.set_description(f"{name} seed {seed}")
            init, run = learners[name]
            params, state = params0, init(params0)
            first = test_mse(params)
            curve = {"samples": [0], "online_mse": [None], **{f"test_mse_{k}": [float(first[k])] for k in tests}}
            t0 = time.perf_counter()
            for b in range(blocks):
                block = slice(b * size["eval_every"], (b + 1) * size["eval_every"])
                lr = jnp.float32(size["lr"] * (1 - LR_DECAY * b / blocks))  # linear decay, per block
                params, state, losses = run(params, state, us[block], targets[block], lr)
                curve["samples"].append((b + 1) * size["eval_every"])
                curve["online_mse"].append(_common.finite_or_none(jnp.mean(losses)))
                for k, v in test_mse(params).items():
                    curve[f"test_mse_{k}"].append(_common.finite_or_none(v))
                bar.update(size["eval_every"])
            jax.block_until_ready(params)
            _, ys = rj.unroll(cell, params, u_test_j)
            results["runs"][name].append(
                {
                    "seed": seed,
                    "curve": curve,
                    **{f"late_{k}": _late_median(curve[k]) for k in ("online_mse", "test_mse_random", "test_mse_sine")},
                    "wall_s": round(time.perf_counter() - t0, 2),
                    "test_prediction": np.asarray(ys[:, 0]).tolist() if seed == args.seed else None,
                }
            )
    bar.close()
    results["summary"] = {
        name: {
            f"late_{k}_{stat}": fn([r[f"late_{k}"] for r in runs])
            for k in ("online_mse", "test_mse_random", "test_mse_sine")
            for stat, fn in (("mean", _mean), ("per_seed", list))
        }
        for name, runs in results["runs"].items()
    }
    results["wall_time_s"] = round(time.perf_counter() - start, 1)
    _common.save_results(results, args, NAME)
    plot(results, y_test / scale, args)
    print(summary_table(results))
    print(f"wrote {args.out / (NAME + '.json')} in {results['wall_time_s']} s")
    return results


def _late_median(values):
    """The median over the last LATE of the evaluations (None if any of them diverged)."""
    late = values[-max(1, round(LATE * (len(values) - 1))) :]
    return None if any(v is None for v in late) else float(np.median(late))


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


# --- figures and table -----------------------------------------------------------------------------


def _label(name, size):
    return LABELS[name].format(h=size["depth"])


def plot(results, y_test, args):
    size = results["config"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    panels = (
        ("online_mse", "on-line squared error (mean per block)"),
        ("test_mse_random", "held-out MSE, random u (as in training)"),
        ("test_mse_sine", "test MSE, u(t) = sin(2 pi t / 250)"),
    )
    for ax, (key, title) in zip(axes, panels, strict=True):
        for name, runs in results["runs"].items():
            for n, run in enumerate(runs):
                curve = run["curve"]
                start = 1 if key == "online_mse" else 0
                ax.plot(
                    curve["samples"][start:],
                    [np.nan if v is None else v for v in curve[key][start:]],
                    color=COLORS[name],
                    lw=1.2,
                    alpha=1.0 if n == 0 else 0.35,
                    label=_label(name, size) if n == 0 else None,
                )
        ax.set_xlabel("training samples")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
    for ax, k in ((axes[1], "random"), (axes[2], "sine")):
        ax.axhline(results["test_mse_zero_predictor"][k], color="k", ls=":", lw=1, label="predict 0")
    axes[0].set_ylabel("MSE (standardised y)")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    _common.save_figure(fig, args, NAME, "curves")

    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(y_test, color="k", lw=1.8, label="plant")
    for name, runs in results["runs"].items():
        ax.plot(runs[0]["test_prediction"], color=COLORS[name], lw=1, label=_label(name, size))
    ax.set_xlabel("t")
    ax.set_ylabel("y(t+1), standardised")
    ax.set_title("parallel model on the test input after training (first seed)")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    _common.save_figure(fig, args, NAME, "test")


def summary_table(results) -> str:
    header = ["algorithm", "held-out MSE, random u", "per seed", "test MSE, sine u", "per seed", "on-line MSE"]
    size = results["config"]
    rows = []
    for name, s in results["summary"].items():
        fmt = lambda v: "diverged" if v is None else f"{v:.4f}"  # noqa: E731
        rows.append(
            [
                _label(name, size),
                fmt(s["late_test_mse_random_mean"]),
                ", ".join(fmt(v) for v in s["late_test_mse_random_per_seed"]),
                fmt(s["late_test_mse_sine_mean"]),
                ", ".join(fmt(v) for v in s["late_test_mse_sine_per_seed"]),
                fmt(s["late_online_mse_mean"]),
            ]
        )
    zero = results["test_mse_zero_predictor"]
    return (
        "Plant identification, medians over the last quarter of the evaluations, mean over seeds\n"
        f"(MSE of predicting 0: random {zero['random']:.3f}, sine {zero['sine']:.3f}):\n"
        + _common.markdown_table(header, rows)
    )


if __name__ == "__main__":
    main()
