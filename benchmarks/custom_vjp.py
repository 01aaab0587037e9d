"""The recurrent weight's gradient after the backward loop, against autodiff's in-loop one (issue 14, item 4).

Autodiff of a scan accumulates the recurrent weight gradient inside the backward loop: every
step adds ``h_{t-1}^T dz_t`` (a ``[h, b] x [b, 4h]`` GEMM) to ``dW_h``. Computed after the loop,
it is ONE GEMM over all steps and examples, ``H_prev^T dZ`` with ``[h, t b] x [t b, 4h]``, and the
backward loop keeps only ``dh_{t-1} = dz_t W_h^T``. Two ways to get there are measured:

- rnnjax's own: ``unroll``'s hoisted path with ``recurrence.DEFER_WEIGHT_GRADIENT`` on (a custom JVP
  of the scan; works under the ``vmap`` over sequences, ``jvp`` and higher derivatives), for the LSTM
  and the GRU;
- a hand-written ``custom_vjp`` of an explicitly batched LSTM (time-major ``[t, b, f]``, no ``vmap``;
  under ``vmap`` a custom VJP would make per-example weight gradients first), with its backward scan
  written out and only the gate activations and cell states saved.

Rows (ms per gradient of a mean squared error, fastest of ``--repeats``, interleaved), per cell:

    hand-written autodiff    jax.grad of the hand-written batched, hoisted LSTM scan (LSTM only)
    hand-written custom vjp  the hand-written custom VJP of that scan (LSTM only)
    rnnjax default           jax.vmap of rj.unroll with this backend's defaults, where they do not hoist
    rnnjax hoisted           ... with hoist=True and the weight gradient in the loop (autodiff)
    rnnjax deferred          ... with hoist=True and the weight gradient after the loop

Gradients are checked first: custom vjp == autodiff and rnnjax deferred == rnnjax in float64 to 1e-10
(relative), on a small size.

    python benchmarks/custom_vjp.py                       # S and M (add G on a GPU)
    python benchmarks/custom_vjp.py --configs tiny --repeats 1 --out /tmp/c.json   # smoke test
"""

import argparse
import json
import platform
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
from jax import lax
from train_overhead import CONFIGS as SMALL_CONFIGS
from train_overhead import fastest_interleaved

import rnnjax as rj

CONFIGS = {**SMALL_CONFIGS, "G": {"batch": 256, "steps": 256, "input": 512, "hidden": 1024}}
RESULTS = Path(__file__).parent / "results" / "custom_vjp.json"


def _lstm_step(w_h, carry, u):
    """One LSTM step: ``((h, c), gate activations [b, 4h])``."""
    h, c = carry
    i, f, g, o = jnp.split(u + h @ w_h, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    c = f * c + i * g
    return (o * jnp.tanh(c), c), jnp.concatenate([i, f, g, o], -1)


def lstm_scan(w_h, us, h0, c0):
    """``hs [t, b, h]`` of an LSTM from the projected inputs ``us = xs W_i + b: [t, b, 4h]`` (autodiff)."""

    def step(carry, u):
        carry, _ = _lstm_step(w_h, carry, u)
        return carry, carry[0]

    return lax.scan(step, (h0, c0), us)[1]


@jax.custom_vjp
def lstm_scan_custom(w_h, us, h0, c0):
    return lstm_scan(w_h, us, h0, c0)


def _forward(w_h, us, h0, c0):
    def step(carry, u):
        carry, acts = _lstm_step(w_h, carry, u)
        return carry, (*carry, acts)

    _, (hs, cs, acts) = lax.scan(step, (h0, c0), us)
    h_prev = jnp.concatenate([h0[None], hs[:-1]])
    c_prev = jnp.concatenate([c0[None], cs[:-1]])
    return hs, (w_h, h_prev, c_prev, cs, acts)


def _backward(saved, d_hs):
    w_h, h_prev, c_prev, cs, acts = saved

    def step(carry, inputs):
        dh_next, dc_next = carry
        d_h, c_prev_t, c_t, act = inputs
        i, f, g, o = jnp.split(act, 4, axis=-1)
        dh = d_h + dh_next
        tanh_c = jnp.tanh(c_t)
        dc = dc_next + dh * o * (1 - tanh_c**2)
        dz = jnp.concatenate(
            [dc * g * i * (1 - i), dc * c_prev_t * f * (1 - f), dc * i * (1 - g**2), dh * tanh_c * o * (1 - o)], -1
        )
        return (dz @ w_h.T, dc * f), dz

    zeros = jnp.zeros_like(h_prev[0]), jnp.zeros_like(c_prev[0])
    (dh0, dc0), dz = lax.scan(step, zeros, (d_hs, c_prev, cs, acts), reverse=True)
    hidden = h_prev.shape[-1]
    dw_h = h_prev.reshape(-1, hidden).T @ dz.reshape(-1, 4 * hidden)  # ONE GEMM over all steps and examples
    return dw_h, dz, dh0, dc0


lstm_scan_custom.defvjp(_forward, _backward)


def loss_fn(scan, params, xs, target):
    w_i, w_h, b = params
    t, batch, _ = xs.shape
    h0 = jnp.zeros((batch, w_h.shape[0]), xs.dtype)
    us = xs @ w_i + b
    return jnp.mean((scan(w_h, us, h0, h0) - target) ** 2)


def rnnjax_loss(cell, hoist, params, xs, target):
    ys = jax.vmap(lambda x: rj.unroll(cell, params, x, hoist=hoist)[1], in_axes=1, out_axes=1)(xs)
    return jnp.mean((ys - target) ** 2)


def compiled_rnnjax_grad(cell, hoist, defer, *args):
    """``jit(grad(rnnjax_loss))``, compiled with ``DEFER_WEIGHT_GRADIENT`` set to ``defer`` on this backend."""
    table, backend = rj.recurrence.DEFER_WEIGHT_GRADIENT, jax.default_backend()
    saved = dict(table)
    table[backend] = defer
    try:
        return jax.jit(jax.grad(partial(rnnjax_loss, cell, hoist))).lower(*args).compile()
    finally:
        table.clear()
        table.update(saved)


def check_gradients() -> float:
    """Largest relative difference of custom vjp and autodiff gradients, and of rnnjax's deferred and
    in-loop weight gradients (LSTM and GRU), float64, small size."""
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(0), 5)
        t, b, f, h = 7, 3, 4, 5
        shapes = [(f, 4 * h), (h, 4 * h), (4 * h,)]
        params = tuple(0.5 * jax.random.normal(k, s, jnp.float64) for k, s in zip(keys[:3], shapes, strict=True))
        xs = jax.random.normal(keys[3], (t, b, f), jnp.float64)
        target = jax.random.normal(keys[4], (t, b, h), jnp.float64)
        pairs = [
            (
                jax.grad(partial(loss_fn, lstm_scan_custom))(params, xs, target),
                jax.grad(partial(loss_fn, lstm_scan))(params, xs, target),
            )
        ]
        for cell in (rj.LSTMCell(h, param_dtype=jnp.float64), rj.GRUCell(h, param_dtype=jnp.float64)):
            p = cell.init(keys[0], f)
            args = (p, xs, target)
            pairs.append(tuple(compiled_rnnjax_grad(cell, True, defer, *args)(*args) for defer in (True, False)))
        errors = [
            float(jnp.max(jnp.abs(g - w)) / jnp.max(jnp.abs(w)))
            for got, want in pairs
            for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True)
        ]
        return max(errors)


def measure(config: dict, repeats: int, cell: str = "lstm") -> dict:
    """ms of each row for one cell ("lstm" or "gru"; the hand-written rows are LSTM only)."""
    t, b, f, h = config["steps"], config["batch"], config["input"], config["hidden"]
    keys = jax.random.split(jax.random.key(1), 2)
    xs, target = jax.random.normal(keys[0], (t, b, f)), jax.random.normal(keys[1], (t, b, h))
    rnn_cell = {"lstm": rj.LSTMCell, "gru": rj.GRUCell}[cell](h)
    cell_params = rnn_cell.init(jax.random.key(0), f)
    grads = {}
    if cell == "lstm":
        params = (cell_params.w_i, cell_params.w_h, cell_params.b)
        grads["hand-written autodiff"] = (jax.jit(jax.grad(partial(loss_fn, lstm_scan))), params)
        grads["hand-written custom vjp"] = (jax.jit(jax.grad(partial(loss_fn, lstm_scan_custom))), params)
    args = (cell_params, xs, target)
    if not rj.recurrence.default_hoist():  # where the default path is the hoisted one, it is the next row
        grads["rnnjax default"] = (compiled_rnnjax_grad(rnn_cell, None, False, *args), cell_params)
    grads["rnnjax hoisted"] = (compiled_rnnjax_grad(rnn_cell, True, False, *args), cell_params)
    grads["rnnjax deferred"] = (compiled_rnnjax_grad(rnn_cell, True, True, *args), cell_params)

    def timed(fn, params):
        start = time.perf_counter()
        jax.block_until_ready(fn(params, xs, target))
        return time.perf_counter() - start

    best = fastest_interleaved({name: partial(timed, *fn) for name, fn in grads.items()}, repeats)
    rows = {name: {"ms": 1e3 * s} for name, s in best.items()}
    baselines = {"hand-written custom vjp": "hand-written autodiff", "rnnjax deferred": "rnnjax hoisted"}
    for name, baseline in baselines.items():  # the weight gradient after the loop against its in-loop baseline
        if name in best:
            rows[name].update(baseline=baseline, x_baseline=best[name] / best[baseline])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["S", "M"], choices=sorted(CONFIGS))
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru"], choices=["lstm", "gru"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    error = check_gradients()
    if error > 1e-10:
        raise SystemExit(f"gradients after the loop differ from the in-loop ones by {error:.1e} (relative)")
    results = {(c, cell): measure(CONFIGS[c], args.repeats, cell) for cell in args.cells for c in args.configs}
    report = {
        "machine": {"platform": platform.platform(), "backend": jax.default_backend(), "device": str(jax.devices()[0])},
        "jax": jax.__version__,
        "repeats": args.repeats,
        "gradient_check_max_relative_error_float64": error,
        "configs": {name: CONFIGS[name] for name in args.configs},
        "rows": [
            {"config": c, "cell": cell, "name": n, **row}
            for (c, cell), rows in results.items()
            for n, row in rows.items()
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\ngradient of a layer (loss = MSE), ms (x its in-loop baseline), {jax.default_backend()}; "
        f"float64 check {error:.1e}"
    )
    print(f"{'':30}" + "".join(f"{c:>20}" for c in args.configs))
    for cell in args.cells:
        for name in results[args.configs[0], cell]:
            cells = []
            for c in args.configs:
                row = results[c, cell][name]
                cells.append(
                    f"{row['ms']:>11.3f}" + (f" ({row['x_baseline']:.2f})" if "x_baseline" in row else " " * 7)
                )
            print(f"{cell + ' ' + name:30}" + "".join(f"{text:>20}" for text in cells))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
