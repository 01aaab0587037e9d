"""Parallel (associative-scan) against sequential unrolling of the linear-recurrence cells.

``MinGRUCell`` and ``MinLSTMCell`` have ``h_t = a_t * h_{t-1} + b_t``, so ``unroll(...,
parallel=True)`` runs them as a ``jax.lax.associative_scan`` (``O(log t)`` depth, ``O(t)``
work) instead of a ``lax.scan`` of ``t`` dependent steps. This times the forward pass and the
gradient of both paths across sequence lengths, next to an LSTM of the same hidden size (the
sequential baseline a user would otherwise pick), and reports the length where the parallel
path starts to win (the crossover), per mode.

    python benchmarks/parallel_scan.py                            # T = 256 .. 16,384
    python benchmarks/parallel_scan.py --steps 16 32 --repeats 1  # smoke test
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import rnnjax as rj

VARIANTS = {
    "mingru sequential": (rj.MinGRUCell, False),
    "mingru parallel": (rj.MinGRUCell, True),
    "minlstm sequential": (rj.MinLSTMCell, False),
    "minlstm parallel": (rj.MinLSTMCell, True),
    "lstm sequential": (rj.LSTMCell, False),
}


def median_ms(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def measure(variant: str, steps: int, args) -> dict:
    cell_type, parallel = VARIANTS[variant]
    cell = cell_type(args.hidden_size)
    params = cell.init(jax.random.key(0), args.input_size)
    xs = jax.random.normal(jax.random.key(1), (args.batch, steps, args.input_size))

    def forward(params, xs):
        return jax.vmap(lambda x: rj.unroll(cell, params, x, parallel=parallel)[1])(xs)

    def loss(params, xs):
        return jnp.mean(forward(params, xs) ** 2)

    return {
        "variant": variant,
        "steps": steps,
        "fwd_ms": median_ms(jax.jit(forward), (params, xs), args.repeats),
        "grad_ms": median_ms(jax.jit(jax.grad(loss)), (params, xs), args.repeats),
    }


def crossover(rows: list[dict], cell: str, mode: str) -> int | None:
    """The shortest length from which the parallel path is faster at every measured length."""
    by_steps = {}
    for row in rows:
        if row["variant"].startswith(cell + " "):
            by_steps.setdefault(row["steps"], {})[row["variant"].split()[1]] = row[mode]
    lengths = sorted(by_steps)
    for i, steps in enumerate(lengths):
        if all(by_steps[t]["parallel"] < by_steps[t]["sequential"] for t in lengths[i:]):
            return steps
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "parallel_scan.json")
    args = parser.parse_args(argv)

    print(f"batch {args.batch}, input {args.input_size}, hidden {args.hidden_size}, backend {jax.default_backend()}")
    print(f"{'T':>7} {'variant':>20} {'fwd ms':>9} {'grad ms':>9}")
    rows = []
    for steps in args.steps:
        for variant in VARIANTS:
            row = measure(variant, steps, args)
            rows.append(row)
            print(f"{steps:>7} {variant:>20} {row['fwd_ms']:>9.2f} {row['grad_ms']:>9.2f}", flush=True)
    crossovers = {
        f"{cell} {mode}": crossover(rows, cell, f"{mode}_ms")
        for cell in ("mingru", "minlstm")
        for mode in ("fwd", "grad")
    }
    for name, steps in crossovers.items():
        print(f"crossover {name}: " + (f"parallel faster from T = {steps}" if steps else "parallel never faster"))
    report = {
        "benchmark": "parallel_scan",
        "batch": args.batch,
        "input_size": args.input_size,
        "hidden_size": args.hidden_size,
        "repeats": args.repeats,
        "backend": jax.default_backend(),
        "machine": {"platform": platform.platform(), "jax": jax.__version__},
        "rows": rows,
        "crossover": crossovers,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
