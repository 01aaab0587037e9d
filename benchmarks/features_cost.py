"""What dropout, masks and layer normalisation cost a training step, against the plain cell.

The problem is ``benchmarks/train_overhead.py``'s (a cell over ``[b, t, f]``, mean squared error
against a fixed target, one jitted Adam step), at the S and M sizes of ``benchmarks/peers.py``,
for an LSTM and a GRU. Rows (ms per training step, and the ratio to ``plain``):

    plain               rj.unroll(cell, params, x)
    length              random lengths in [t/2, t] (the padding rnnjax always had)
    mask (holes)        a random mask per sequence, 20% of the steps masked anywhere
    mask, last output   the same with masked_output="last" (Keras' behaviour)
    dropout             the cell with dropout=0.25, recurrent_dropout=0.25, a key per sequence
    zoneout             the cell with zoneout=0.1, a key per sequence
    layer norm          rj.LayerNormLSTMCell / rj.LayerNormGRUCell of the same size

All rows of a size are timed in one process, in turn within each repeat, and the smallest of the
repeats is kept, so that the ratios hold on a busy machine; time on an idle machine for
absolute numbers. Each row runs unroll's default path for the backend (on the CPU: in the loop).

    python benchmarks/features_cost.py                                   # S and M, LSTM and GRU
    python benchmarks/features_cost.py --configs tiny --repeats 1        # smoke test
"""

import argparse
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from train_overhead import CONFIGS, bare_step, fastest_interleaved, time_steps

import rnnjax as rj

RESULTS = Path(__file__).parent / "results" / "features_cost.json"
CELLS = {"lstm": (rj.LSTMCell, "LayerNormLSTMCell"), "gru": (rj.GRUCell, "LayerNormGRUCell")}
ROWS = ("plain", "length", "mask (holes)", "mask, last output", "dropout", "zoneout", "layer norm")


def variant(name: str, cell_name: str, hidden: int):
    """``(cell, unroll options given (length, mask, key))`` of one row; None where the library lacks the cell."""
    make, layer_norm = CELLS[cell_name]
    if name == "layer norm":
        cls = getattr(rj, layer_norm, None)
        return None if cls is None else (cls(hidden), lambda n, m, k: {})
    cell = {
        "dropout": make(hidden, dropout=0.25, recurrent_dropout=0.25),
        "zoneout": make(hidden, zoneout=0.1),
    }.get(name, make(hidden))
    options = {
        "length": lambda n, m, k: {"length": n},
        "mask (holes)": lambda n, m, k: {"mask": m},
        "mask, last output": lambda n, m, k: {"mask": m, "masked_output": "last"},
        "dropout": lambda n, m, k: {"key": k},
        "zoneout": lambda n, m, k: {"key": k},
    }.get(name, lambda n, m, k: {})
    return cell, options


def problem(config: dict, cell, options):
    keys = jax.random.split(jax.random.key(0), 6)
    b, t = config["batch"], config["steps"]
    params = cell.init(keys[0], config["input"])
    batch = {
        "xs": jax.random.normal(keys[1], (b, t, config["input"])),
        "target": jax.random.normal(keys[2], (b, t, config["hidden"])),
        "lengths": jax.random.randint(keys[3], (b,), t // 2, t + 1),
        "masks": jax.random.bernoulli(keys[4], 0.8, (b, t)),
    }

    def loss_fn(params, batch, key):
        keys = jax.random.split(key, b)

        def one(x, n, m, k):
            return rj.unroll(cell, params, x, **options(n, m, k))[1]

        ys = jax.vmap(one)(batch["xs"], batch["lengths"], batch["masks"], keys)
        return jnp.mean((ys - batch["target"]) ** 2)

    return params, batch, loss_fn


def measure(config: dict, cell_name: str, repeats: int) -> dict:
    optimizer = optax.adam(1e-3)
    rows = {}
    for name in ROWS:
        made = variant(name, cell_name, config["hidden"])
        if made is None:
            continue
        params, batch, loss_fn = problem(config, *made)
        step, opt_state = bare_step(loss_fn, optimizer), optimizer.init(params)
        rows[name] = lambda step=step, params=params, opt_state=opt_state, batch=batch: time_steps(
            step, params, opt_state, batch, 1
        )
    best = fastest_interleaved(rows, repeats)
    return {name: {"ms": 1e3 * s, "ratio": s / best["plain"]} for name, s in best.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["S", "M"], choices=sorted(CONFIGS))
    parser.add_argument("--cells", nargs="+", default=sorted(CELLS), choices=sorted(CELLS))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    results = {(c, cell): measure(CONFIGS[c], cell, args.repeats) for c in args.configs for cell in args.cells}
    report = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"platform": platform.platform(), "backend": jax.default_backend(), "devices": jax.device_count()},
        "jax": jax.__version__,
        "repeats": args.repeats,
        "configs": {name: CONFIGS[name] for name in args.configs},
        "rows": [
            {"config": c, "cell": cell, "name": name, **row}
            for (c, cell), rows in results.items()
            for name, row in rows.items()
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    columns = list(results)
    print(f"\ntraining step, ms (x plain), {jax.default_backend()}")
    print(f"{'':20}" + "".join(f"{c + ' ' + cell.upper():>20}" for c, cell in columns))
    for name in ROWS:
        cells = [results[col].get(name) for col in columns]
        print(
            f"{name:20}" + "".join("".rjust(20) if r is None else f"{r['ms']:>11.3f} ({r['ratio']:.2f})" for r in cells)
        )
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
