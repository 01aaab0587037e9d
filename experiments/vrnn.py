"""Variational RNN vs an RNN without latents on branching trajectories (Chung et al. 2015).

A point walks on the plane at unit speed. At every step it keeps its heading, or (with
probability ``p_turn``) turns 90 degrees left or right; we observe its noisy increments
``x_t = (cos theta_t, sin theta_t) + noise_std * eps_t``. Given the past, the next increment
has three well-separated modes (straight on, left, right), so an RNN whose output is one
Gaussian per step must spread it over all three, while a VRNN can pick a mode with its
latent ``z_t``. The data's exact log-likelihood (a 4-state HMM over headings, by the forward
algorithm) is the ceiling both are measured against.

We train ``rnnjax.vrnn.VRNN`` and ``rnnjax.vrnn.AutoregressiveRNN`` (same GRU hidden size,
same feature and MLP sizes) with Adam, then report on held-out sequences, in nats per step:
the VRNN's ELBO and IWAE bounds (which lower-bound its log-likelihood), the RNN's exact
log-likelihood, and the true one. Writes ``experiments/results/vrnn.json`` and
``vrnn_{curves,samples}.png`` (copied to ``docs/figures/``, where docs/guide/vrnn.md embeds them).

    python experiments/vrnn.py            # CPU, a few minutes
    python experiments/vrnn.py --full     # bigger models, longer sequences, more steps (GPU)
    python experiments/vrnn.py --tiny --steps 2 --out /tmp/vrnn   # smoke run (tests/test_experiments.py)
"""

import functools
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
from rnnjax.vrnn import VRNN, AutoregressiveRNN

NAME = "vrnn"
SIZES = {  # t: sequence length; hidden: GRU size (and feature/MLP widths); z: latent size; k: IWAE particles
    "tiny": dict(t=6, hidden=8, z=2, batch=8, steps=3, test=16, eval_every=1, k=(1, 3)),
    "default": dict(t=24, hidden=64, z=4, batch=64, steps=2000, test=500, eval_every=100, k=(1, 10, 100)),
    "full": dict(t=48, hidden=128, z=8, batch=128, steps=20_000, test=2000, eval_every=500, k=(1, 10, 100, 1000)),
}

args = _common.parser(__doc__.splitlines()[0]).parse_args()
size = _common.size_name(args)
config = dict(
    _common.chosen_size(args, SIZES), p_turn=0.25, noise_std=0.1, learning_rate=3e-3, clip_norm=10.0, seed=args.seed
)
T = config["t"]
print(size, config)

# ----------------------------------------------------------------------------- 1. the data

HEADINGS = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])  # east, north, west, south


def branching_walks(rng: np.random.Generator, num: int) -> np.ndarray:
    """``[num, t, 2]`` increments of walks that turn left or right with probability p_turn per step."""
    turn = rng.choice([0, 1, -1], size=(num, T), p=[1 - config["p_turn"], config["p_turn"] / 2, config["p_turn"] / 2])
    start = rng.integers(0, 4, size=(num, 1))
    heading = (start + np.cumsum(turn, axis=1)) % 4  # the first step may turn too
    noise = config["noise_std"] * rng.standard_normal((num, T, 2))
    return (HEADINGS[heading] + noise).astype(np.float32)


def true_log_likelihood(xs: np.ndarray) -> np.ndarray:
    """Exact ``log p(x_{1:t})`` per sequence under the generating process: the HMM forward algorithm."""
    p, sigma = config["p_turn"], config["noise_std"]
    stay, turn = math.log(1 - p), math.log(p / 2)
    log_a = np.full((4, 4), -np.inf)  # log_a[i, j] = log P(heading j | heading i)
    for i in range(4):
        log_a[i, i], log_a[i, (i + 1) % 4], log_a[i, (i - 1) % 4] = stay, turn, turn
    diff = xs[:, :, None, :] - HEADINGS[None, None]  # [n, t, 4, 2]
    log_e = -np.sum(diff**2, -1) / (2 * sigma**2) - 2 * math.log(sigma) - math.log(2 * math.pi)
    log_alpha = np.full((len(xs), 4), -math.log(4))  # uniform heading before step 0
    for t in range(T):
        log_alpha = np.logaddexp.reduce(log_alpha[:, :, None] + log_a[None], axis=1) + log_e[:, t]
    return np.logaddexp.reduce(log_alpha, axis=1)


def best_one_gaussian() -> float:
    """Per-step log-likelihood of the best model with ONE Gaussian per step that knows the heading.

    The best single Gaussian for a mixture (in expected log-density) has the mixture's mean and
    covariance. Step 0 is a mixture of the 4 headings; later steps of straight on, left and right
    (the heading is all but certain from the past with this little noise). This is the ceiling
    of the RNN without latents.
    """
    p, var = config["p_turn"], config["noise_std"] ** 2

    def expected_log_density(weights, means):
        mean = weights @ means
        cov = var * np.eye(2) + np.einsum("k,ki,kj->ij", weights, means - mean, means - mean)
        return -math.log(2 * math.pi) - 0.5 * math.log(np.linalg.det(cov)) - 1.0

    first = expected_log_density(np.full(4, 0.25), HEADINGS)
    later = expected_log_density(np.array([1 - p, p / 2, p / 2]), HEADINGS[[0, 1, 3]])
    return (first + (T - 1) * later) / T


rng = np.random.default_rng(args.seed)
test_xs = jnp.asarray(branching_walks(rng, config["test"]))
true_per_step = float(true_log_likelihood(np.asarray(test_xs, np.float64)).mean() / T)
print(f"true log-likelihood of the test set: {true_per_step:.3f} nats/step")
print(f"best one-Gaussian-per-step model: {best_one_gaussian():.3f} nats/step (the RNN's ceiling)")

# ----------------------------------------------------------------------------- 2. the models

H = config["hidden"]
vrnn = VRNN(x_size=2, z_size=config["z"], hidden_size=H)  # GRU(H); phi_x, phi_z, MLPs of width H
rnn = AutoregressiveRNN(x_size=2, hidden_size=H)  # the same network without z
key_vrnn, key_rnn, key_train, key_eval = jax.random.split(jax.random.key(args.seed), 4)
params = {"vrnn": vrnn.init(key_vrnn), "rnn": rnn.init(key_rnn)}
print({name: rj.count_params(p) for name, p in params.items()}, "params")


def vrnn_loss(params, xs, key):
    """Negative ELBO per step, averaged over the batch (one posterior draw per sequence)."""
    elbos, _ = jax.vmap(vrnn.elbo, (None, 0, 0))(params, xs, jax.random.split(key, xs.shape[0]))
    return -jnp.mean(elbos) / T


def rnn_loss(params, xs, key):
    """Negative log-likelihood per step."""
    log_lik, _ = jax.vmap(rnn.log_likelihood, (None, 0))(params, xs)
    return -jnp.mean(log_lik) / T


@jax.jit
def test_elbo(params, key):
    return -vrnn_loss(params, test_xs, key)


@functools.partial(jax.jit, static_argnames="k")
def _iwae_chunk(params, xs, keys, k):
    return jax.vmap(lambda x, key: vrnn.iwae(params, x, key, num_samples=k)[0])(xs, keys)


def test_iwae(params, key, k):
    """Mean IWAE bound with ``k`` particles per test sequence, about 20,000 trajectories in flight at a time."""
    keys, size = jax.random.split(key, len(test_xs)), max(1, 20_000 // k)
    bounds = [_iwae_chunk(params, test_xs[i : i + size], keys[i : i + size], k) for i in range(0, len(test_xs), size)]
    return jnp.mean(jnp.concatenate(bounds)) / T


@jax.jit
def test_rnn(params):
    return -rnn_loss(params, test_xs, None)


# ----------------------------------------------------------------------------- 3. training

schedule = optax.cosine_decay_schedule(config["learning_rate"], max(config["steps"], 1), alpha=0.1)
optimizer = optax.adam(schedule)
steps = {
    "vrnn": rj.parallel.make_train_step(vrnn_loss, optimizer, devices=args.devices, clip_norm=config["clip_norm"]),
    "rnn": rj.parallel.make_train_step(rnn_loss, optimizer, devices=args.devices, clip_norm=config["clip_norm"]),
}
evaluate = {"vrnn": lambda p: float(test_elbo(p, key_eval)), "rnn": lambda p: float(test_rnn(p))}
curves = {name: {"step": [], "train": [], "test_step": [], "test": []} for name in params}
seconds = {}

for name in ("rnn", "vrnn"):
    opt_state = optimizer.init(params[name])
    data_rng = np.random.default_rng(args.seed + 1)  # both models see the same batches
    start = time.perf_counter()
    bar = tqdm(range(1, config["steps"] + 1), desc=name, mininterval=1.0)
    for step in bar:
        xs = jnp.asarray(branching_walks(data_rng, config["batch"]))
        params[name], opt_state, metrics = steps[name](params[name], opt_state, xs, jax.random.fold_in(key_train, step))
        curves[name]["step"].append(step)
        curves[name]["train"].append(-float(metrics["loss"]))
        if step % config["eval_every"] == 0 or step == config["steps"]:
            curves[name]["test_step"].append(step)
            curves[name]["test"].append(evaluate[name](params[name]))
            bar.set_postfix(test=f"{curves[name]['test'][-1]:.3f} nats/step")
    seconds[name] = time.perf_counter() - start

# ----------------------------------------------------------------------------- 4. evaluation

results = {
    "true_log_likelihood": true_per_step,
    "best_one_gaussian_per_step": best_one_gaussian(),
    "rnn_log_likelihood": evaluate["rnn"](params["rnn"]),
    "vrnn_elbo": evaluate["vrnn"](params["vrnn"]),
}
for k in tqdm(config["k"], desc="iwae"):
    results[f"vrnn_iwae_{k}"] = float(test_iwae(params["vrnn"], jax.random.fold_in(key_eval, k), k))

print(f"\nheld-out sequences, nats per step (higher is better; t={T}, {config['test']} sequences)")
for name, value in results.items():
    print(f"  {name:24s} {value:8.3f}")

# ----------------------------------------------------------------------------- 5. figures

figures = []


def smooth(values, width=50):
    values = np.asarray(values)
    width = min(width, len(values))
    return np.convolve(values, np.ones(width) / width, mode="valid")


fig, ax = plt.subplots(figsize=(7, 4))
for name, color, label in (("vrnn", "C0", "VRNN: ELBO"), ("rnn", "C1", "RNN: log-likelihood")):
    c = curves[name]
    ax.plot(c["step"][len(c["step"]) - len(smooth(c["train"])) :], smooth(c["train"]), color=color, alpha=0.4)
    ax.plot(c["test_step"], c["test"], "o-", color=color, ms=3, label=f"{label} (test; faint: train)")
ax.axhline(true_per_step, color="k", ls="--", lw=1, label="true log-likelihood")
ax.axhline(best_one_gaussian(), color="C1", ls="--", lw=1, label="best one Gaussian per step")
ax.axhline(results[f"vrnn_iwae_{config['k'][-1]}"], color="C0", ls=":", lw=1, label="VRNN: final IWAE")
ax.set(xlabel="training step", ylabel="nats per step", title="Branching walks: VRNN vs RNN without latents")
ax.set_ylim(min(curves["rnn"]["test"][0], curves["vrnn"]["test"][0]) - 0.2, true_per_step + 0.3)
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
figures.append(_common.save_figure(fig, args, NAME, "curves").name)

# samples: whole trajectories (cumulative increments), and each increment seen from the previous one's heading
num_show = 400
sample_keys = jax.random.split(jax.random.fold_in(key_eval, 7), num_show)
samples = {
    "data": np.asarray(test_xs[:num_show]),
    "VRNN": np.asarray(jax.jit(jax.vmap(lambda k: vrnn.sample(params["vrnn"], k, T)[0]))(sample_keys)),
    "RNN (no latents)": np.asarray(jax.jit(jax.vmap(lambda k: rnn.sample(params["rnn"], k, T)))(sample_keys)),
}


def relative_increments(xs):
    """``x_t`` rotated so that ``x_{t-1}`` points east: straight on is (1, 0), left (0, 1), right (0, -1)."""
    prev, cur = xs[:, :-1], xs[:, 1:]
    angle = np.arctan2(prev[..., 1], prev[..., 0])
    c, s = np.cos(-angle), np.sin(-angle)
    return np.stack([c * cur[..., 0] - s * cur[..., 1], s * cur[..., 0] + c * cur[..., 1]], -1).reshape(-1, 2)


fig, axes = plt.subplots(2, 3, figsize=(10, 6.6))
for col, (title, xs) in enumerate(samples.items()):
    paths = np.concatenate([np.zeros((len(xs), 1, 2)), np.cumsum(xs, axis=1)], axis=1)
    for path in paths[:12]:
        axes[0, col].plot(path[:, 0], path[:, 1], lw=1)
    axes[0, col].set(title=title, aspect="equal", xlim=(-T / 2, T / 2), ylim=(-T / 2, T / 2))
    rel = relative_increments(xs)
    axes[1, col].scatter(rel[:, 0], rel[:, 1], s=1, alpha=0.15)
    axes[1, col].set(aspect="equal", xlim=(-1.8, 1.8), ylim=(-1.8, 1.8))
axes[0, 0].set_ylabel("12 trajectories")
axes[1, 0].set_ylabel("next step, seen from the last one's heading")
fig.tight_layout()
figures.append(_common.save_figure(fig, args, NAME, "samples").name)


# ----------------------------------------------------------------------------- 6. results

report = {
    "name": NAME,
    "size": size,
    "config": config,
    "nats_per_step": results,
    "gap_vrnn_iwae_minus_rnn": results[f"vrnn_iwae_{config['k'][-1]}"] - results["rnn_log_likelihood"],
    "params": {name: rj.count_params(p) for name, p in params.items()},
    "train_seconds": seconds,
    "curves": curves,
    "figures": figures,
    "environment": _common.environment(),
}
path = _common.save_results(report, args, NAME)
print(f"wrote {path} and {', '.join(figures)}" + ("" if args.tiny or args.no_docs else " (copied to docs/figures/)"))
