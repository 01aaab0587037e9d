"""What the reliability checks cost a training step: rnnjax's train steps and ``fit`` against a bare jit.

The problem is ``benchmarks/peers.py``'s (an LSTM layer over ``[b, t, f]``, mean squared error
against a fixed target, Adam), at its S and M sizes. Each row is the time per training step:

    bare jit             jax.jit(value_and_grad + optax update): what make_train_step was before
                         the checks (and what any JAX user would write)
    make_train_step      rj.train.make_train_step (the checking-mode dispatch; default options)
    skip_nonfinite       make_train_step(skip_nonfinite=True): a select per parameter
    bare loop            a Python loop of ``bare jit`` steps over ``--steps`` batches, one device wait at the end
    fit                  rj.train.fit over the same steps (every step's loss and gradient norm
                         checked at each log, log_every=10, no progress bar)

Ratios are against the bare jit (steps) and the bare loop (fit). All rows of a size are timed in
one process, in turn within each repeat, and the smallest of the repeats is kept, so that
the ratios hold on a busy machine. Time on an idle machine for absolute numbers.

    python benchmarks/train_overhead.py                                  # S and M
    python benchmarks/train_overhead.py --configs tiny --repeats 1 --steps 4   # smoke test
"""

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

import rnnjax as rj

CONFIGS = {
    "tiny": {"batch": 2, "steps": 5, "input": 3, "hidden": 4},
    "S": {"batch": 32, "steps": 100, "input": 64, "hidden": 128},
    "M": {"batch": 64, "steps": 200, "input": 256, "hidden": 512},
}
RESULTS = Path(__file__).parent / "results" / "train_overhead.json"


def problem(config: dict):
    cell = rj.LSTMCell(config["hidden"])
    keys = jax.random.split(jax.random.key(0), 3)
    params = cell.init(keys[0], config["input"])
    xs = jax.random.normal(keys[1], (config["batch"], config["steps"], config["input"]))
    target = jax.random.normal(keys[2], (config["batch"], config["steps"], config["hidden"]))

    def loss_fn(params, batch, key):
        ys = jax.vmap(lambda x: rj.unroll(cell, params, x)[1])(batch["xs"])
        return jnp.mean((ys - batch["target"]) ** 2)

    return params, {"xs": xs, "target": target}, loss_fn


def bare_step(loss_fn, optimizer):
    @jax.jit
    def step(params, opt_state, batch, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {"loss": loss}

    return step


def time_steps(step, params, opt_state, batch, num_steps: int) -> float:
    """Seconds per step of a Python loop of ``num_steps`` steps with one device wait at the end."""
    key = jax.random.key(0)
    t0 = time.perf_counter()
    for i in range(num_steps):
        params, opt_state, metrics = step(params, opt_state, batch, jax.random.fold_in(key, i))
    jax.block_until_ready((params, metrics))
    return (time.perf_counter() - t0) / num_steps


def time_fit(step, params, opt_state, batch, num_steps: int) -> float:
    t0 = time.perf_counter()
    result = rj.train.fit(
        step, params, opt_state, lambda i: batch, num_steps=num_steps, key=jax.random.key(0), progress=False
    )
    jax.block_until_ready(result.params)
    return (time.perf_counter() - t0) / num_steps


def fastest_interleaved(rows: dict, repeats: int) -> dict:
    """Seconds of each row (a callable returning its time): each run once to compile, then the fastest of
    ``repeats`` rounds in which every row runs in turn, so that the ratios hold on a busy machine."""
    for row in rows.values():
        row()
    best = dict.fromkeys(rows, float("inf"))
    for _ in range(repeats):
        for name, row in rows.items():
            best[name] = min(best[name], row())
    return best


def measure(config: dict, repeats: int, num_steps: int) -> dict:
    params, batch, loss_fn = problem(config)
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(params)
    bare = bare_step(loss_fn, optimizer)
    rows = {
        "bare jit": lambda: time_steps(bare, params, opt_state, batch, 1),
        "make_train_step": lambda: time_steps(steps["checked"], params, opt_state, batch, 1),
        "skip_nonfinite": lambda: time_steps(steps["skip"], params, opt_state, batch, 1),
        "bare loop": lambda: time_steps(bare, params, opt_state, batch, num_steps),
        "fit": lambda: time_fit(steps["checked"], params, opt_state, batch, num_steps),
    }
    steps = {
        "checked": rj.train.make_train_step(loss_fn, optimizer),
        "skip": rj.train.make_train_step(loss_fn, optimizer, skip_nonfinite=True),
    }
    best = fastest_interleaved(rows, repeats)
    ms = {name: 1e3 * seconds for name, seconds in best.items()}
    reference = {"bare jit": "bare jit", "make_train_step": "bare jit", "skip_nonfinite": "bare jit"}
    reference |= {"bare loop": "bare loop", "fit": "bare loop"}
    return {name: {"ms": ms[name], "ratio": ms[name] / ms[reference[name]]} for name in rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["S", "M"], choices=sorted(CONFIGS))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=30, help="steps of each bare loop / fit run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    results = {name: measure(CONFIGS[name], args.repeats, args.steps) for name in args.configs}
    report = {
        "machine": {"platform": platform.platform(), "backend": jax.default_backend(), "devices": jax.device_count()},
        "jax": jax.__version__,
        "repeats": args.repeats,
        "steps": args.steps,
        "configs": {name: CONFIGS[name] for name in args.configs},
        "rows": [
            {"config": config, "name": name, **row} for config, rows in results.items() for name, row in rows.items()
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\ntraining step, ms per step (x reference), LSTM, {jax.default_backend()}")
    print(f"{'':18}" + "".join(f"{name:>20}" for name in args.configs))
    for row in next(iter(results.values())):
        cells = "".join(f"{results[c][row]['ms']:>11.3f} ({results[c][row]['ratio']:.3f})" for c in args.configs)
        print(f"{row:18}{cells}")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
