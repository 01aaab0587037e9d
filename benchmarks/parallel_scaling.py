"""Data-parallel scaling: train steps per second on 1, 2, 4, 8 devices (rnnjax.parallel).

A character-LM-sized model (vocab 96, embedding 32, LSTM(--hidden)) trains with adam on a fixed
global batch of --batch sequences of --window tokens, split over N devices by
``rnnjax.parallel.make_data_parallel_train_step``. Each N runs in its own process with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (the flag must be set before jax is
imported). The 1-device run also times the plain ``rnnjax.train.make_train_step`` as the baseline.
Reports steps/s (median of --repeats timings of --steps steps after a warm-up), the ratio to the
1-device sharded step, and compile time.

On a CPU host, the N "devices" are N XLA:CPU clients sharing the same cores: with 2 cores this
measures the overhead of partitioning and of the collectives, not a speed-up. Run it on a host
with N accelerators (GPUs, a TPU slice) for the real scaling.

    python benchmarks/parallel_scaling.py
    python benchmarks/parallel_scaling.py --devices 1 2 --hidden 16 --batch 8 --window 8 --steps 2 --repeats 1  # smoke
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path


def worker(args) -> dict:
    """Runs in the child process: time the sharded step (and, on 1 device, the plain step)."""
    import jax
    import numpy as np
    import optax

    import rnnjax as rj
    from rnnjax import parallel

    model = rj.models.LanguageModel(96, 32, rj.LSTMCell(args.hidden))
    params = model.init(jax.random.key(0))
    optimizer = optax.adam(1e-3)

    def loss_fn(params, batch, key):
        logits = jax.vmap(lambda t: model.apply(params, t))(batch["inputs"])
        return rj.losses.sequence_cross_entropy(logits, batch["targets"])

    tokens = np.random.default_rng(0).integers(0, 96, size=(args.batch, args.window + 1)).astype(np.int32)
    batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
    key = jax.random.key(1)

    def time_step(step, place):
        p, o, b = place(params), place(optimizer.init(params)), place(batch, batch=True)
        start = time.perf_counter()
        p, o, metrics = step(p, o, b, key)
        jax.block_until_ready(metrics)
        compile_s = time.perf_counter() - start
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(args.steps):
                p, o, metrics = step(p, o, b, key)
            jax.block_until_ready((p, metrics))
            times.append(time.perf_counter() - start)
        return {"steps_per_s": args.steps / statistics.median(times), "compile_s": compile_s}

    rows = []
    devices = len(jax.devices())
    mesh = parallel.make_mesh(devices)

    def on_mesh(tree, batch=False):
        return parallel.shard_batch(tree, mesh) if batch else parallel.replicate(tree, mesh)

    sharded = time_step(parallel.make_data_parallel_train_step(loss_fn, optimizer, mesh), on_mesh)
    rows.append({"step": "data-parallel", "devices": devices, **sharded})
    if devices == 1:
        plain = time_step(rj.train.make_train_step(loss_fn, optimizer), lambda tree, batch=False: jax.device_put(tree))
        rows.insert(0, {"step": "make_train_step", "devices": 1, **plain})
    return {"rows": rows, "jax": jax.__version__, "backend": jax.default_backend()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32, help="global batch (divisible by every --devices)")
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "parallel_scaling.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args)))
        return

    for n in args.devices:
        if args.batch % n:
            parser.error(f"--batch: {args.batch} is not divisible by --devices {n}")
    print(
        f"LSTM({args.hidden}) char LM, global batch {args.batch} x {args.window} tokens, adam; "
        f"{os.cpu_count()} CPU core(s) on this host"
    )
    rows, meta = [], {}
    for n in args.devices:
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}", "JAX_PLATFORMS": "cpu"}
        worker_argv = [a for a in sys.argv[1:] if a != "--worker"] if argv is None else list(argv)
        run = subprocess.run(
            [sys.executable, __file__, *worker_argv, "--worker"], env=env, capture_output=True, text=True
        )
        if run.returncode:
            sys.exit(f"the {n}-device run failed:\n{run.stderr[-3000:]}")
        result = json.loads(run.stdout.strip().splitlines()[-1])
        rows += result.pop("rows")
        meta = result
    base = next(r["steps_per_s"] for r in rows if r["step"] == "data-parallel" and r["devices"] == min(args.devices))
    print(f"{'step':>16} {'devices':>8} {'steps/s':>9} {'vs fewest':>10} {'compile s':>10}")
    for r in rows:
        r["ratio_to_fewest_devices"] = r["steps_per_s"] / base
        print(
            f"{r['step']:>16} {r['devices']:>8} {r['steps_per_s']:>9.2f} "
            f"{r['ratio_to_fewest_devices']:>10.2f} {r['compile_s']:>10.2f}"
        )
    note = (
        f"host CPU devices share {os.cpu_count()} core(s): the ratios measure the overhead of partitioning "
        "and collectives, not a speed-up"
    )
    print(note)
    meta.update({"machine": platform.machine(), "cpu_count": os.cpu_count(), "note": note})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = {k: str(v) for k, v in vars(args).items() if k != "worker"}
    args.out.write_text(json.dumps({"config": config, "meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
