"""BPTT memory and time with and without ``remat`` for long sequences.

For an LSTM (batch 16, input 128, hidden 256 by default) and T in --steps, compiles
``jax.grad`` of a loss through ``unroll`` and reports XLA's buffer assignment for the
compiled program (``temp_size_in_bytes``: the peak of intermediate buffers, which is
what grows with T) and the median wall time of a gradient evaluation.

Two losses: on every output (many-to-many: the outputs ``[b, t, h]`` and their
cotangents are O(t) for any method, remat or not) and on the final carry only
(many-to-one: what is left is the memory of BPTT itself).

    python benchmarks/remat_memory.py                      # T = 1,000 and 10,000
    python benchmarks/remat_memory.py --steps 100 --repeats 1   # smoke test
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


def measure(cell, params, xs, remat: bool, loss_on: str, repeats: int) -> dict:
    def loss(p, xs):
        carry, ys = jax.vmap(lambda x: rj.unroll(cell, p, x, remat=remat))(xs)
        return jnp.mean(ys**2) if loss_on == "outputs" else jnp.mean(carry.h**2)

    t0 = time.perf_counter()
    compiled = jax.jit(jax.grad(loss)).lower(params, xs).compile()
    compile_s = time.perf_counter() - t0
    memory = compiled.memory_analysis()
    jax.block_until_ready(compiled(params, xs))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(params, xs))
        times.append(time.perf_counter() - t0)
    return {
        "remat": remat,
        "loss_on": loss_on,
        "temp_mib": memory.temp_size_in_bytes / 2**20,
        "argument_mib": memory.argument_size_in_bytes / 2**20,
        "compile_s": compile_s,
        "grad_s": statistics.median(times),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "remat_memory.json")
    args = parser.parse_args(argv)

    cell = rj.LSTMCell(args.hidden_size)
    params = cell.init(jax.random.key(0), args.input_size)
    rows = []
    print(
        f"LSTM, batch {args.batch}, input {args.input_size}, hidden {args.hidden_size}, backend {jax.default_backend()}"
    )
    print(f"{'T':>7} {'loss on':>8} {'remat':>6} {'temp MiB':>10} {'grad s':>8} {'compile s':>10}")
    for steps in args.steps:
        xs = jax.random.normal(jax.random.key(1), (args.batch, steps, args.input_size))
        for loss_on in ("outputs", "carry"):
            for remat in (False, True):
                row = {"steps": steps, **measure(cell, params, xs, remat, loss_on, args.repeats)}
                rows.append(row)
                print(
                    f"{steps:>7} {loss_on:>8} {str(remat):>6} {row['temp_mib']:>10.1f} {row['grad_s']:>8.3f} "
                    f"{row['compile_s']:>10.2f}"
                )
            plain, checkpointed = rows[-2], rows[-1]
            print(
                f"{'':>16} remat/plain: memory {checkpointed['temp_mib'] / plain['temp_mib']:.1%}, "
                f"time {checkpointed['grad_s'] / plain['grad_s']:.2f}x"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "machine": platform.processor() or platform.machine(),
    }
    args.out.write_text(
        json.dumps({"config": vars(args) | {"out": str(args.out)}, "meta": meta, "rows": rows}, indent=2)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
