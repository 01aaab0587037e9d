"""How far an LSTM drifts from float64 under each backend's matmul precision and under bfloat16.

JAX's default float32 matmul is full float32 on CPU, TF32 on recent NVIDIA GPUs (operands
rounded to 10 mantissa bits) and one bfloat16 pass on TPU (7 mantissa bits); accumulation is
float32 everywhere. On a machine without that hardware the same arithmetic is emulated: the
operands of every matmul are rounded with :func:`jax.lax.reduce_precision` and multiplied in
full float32. The emulating LSTM is checked against ``rj.LSTMCell`` first (no rounding: equal to
1e-5), so the errors are those of rnnjax's cell.

The LSTM has rnnjax's initialisation and N(0, 1) inputs, with the forget-gate bias at 1 (the
default) and at 3 (long memory: forget gates near 0.95, so the cell state integrates over many
steps and small differences grow). Rows (errors of the outputs at every step against
``rj.LSTMCell`` in float64 with the same params and inputs):

    float32, full                 rj.LSTMCell(precision="highest")
    float32, backend default      rj.LSTMCell(precision="default") on this machine's backend
    float32, TF32 (emulated)      operands rounded to 10 mantissa bits
    float32, 1 bf16 pass (emul.)  operands rounded to 7 mantissa bits
    bfloat16, rnnjax              rj.LSTMCell(dtype=bfloat16): float32 accumulation, gates and cell state
    bfloat16, bf16 cell state     the same, but the cell state rounded to bfloat16 every step
    bfloat16 everywhere           gates and cell state in bfloat16 too

Then the params' gradient of a mean squared error over every output, against float64's
(``|error| / |gradient|``), for float32 at full and the backend's default precision and for
``dtype=bfloat16`` (whose backward matmuls run in bfloat16, accumulating in float32).

    python benchmarks/precision.py                   # T = 100 and 2,000, batch 8, hidden 128
    python benchmarks/precision.py --steps 10 --batch 2 --out /tmp/p.json   # smoke test
"""

import argparse
import dataclasses
import json
import platform
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import rnnjax as rj

MANTISSA_BITS = {"tf32": 10, "bf16": 7}


def rounding(mantissa_bits: int | None):
    """A function that rounds an array to ``mantissa_bits`` (float32's exponent range); None: identity."""
    if mantissa_bits is None:
        return lambda x: x
    return lambda x: lax.reduce_precision(x, exponent_bits=8, mantissa_bits=mantissa_bits)


def emulated_lstm(params, xs, operand_bits=None, state_dtype=jnp.float32, gate_dtype=jnp.float32):
    """``rj.LSTMCell``'s equations over ``xs: [t, f]`` with every matmul operand rounded to ``operand_bits``.

    ``state_dtype`` is the dtype the cell state is kept in between steps, ``gate_dtype`` the one the
    gate pre-activations are rounded to; matmuls accumulate in float32 (as on GPU and TPU). With
    bfloat16 operands the projected inputs are stored in bfloat16 too, as ``rj.LSTMCell(dtype=bfloat16)``
    stores them.
    """
    rnd = rounding(operand_bits)
    w_i, w_h = rnd(params.w_i), rnd(params.w_h)
    us = jnp.matmul(rnd(xs), w_i, precision="highest") + params.b
    if operand_bits == MANTISSA_BITS["bf16"]:
        us = rnd(us)
    hidden = params.w_h.shape[0]

    def step(carry, u):
        h, c = carry
        z = (u + jnp.matmul(rnd(h), w_h, precision="highest")).astype(gate_dtype).astype(jnp.float32)
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c.astype(jnp.float32) + jax.nn.sigmoid(i) * jnp.tanh(g)
        c = c.astype(state_dtype)
        h = jax.nn.sigmoid(o) * jnp.tanh(c.astype(jnp.float32))
        return (rnd(h), c), h

    zeros = jnp.zeros((hidden,), jnp.float32)
    return lax.scan(step, (zeros, zeros.astype(state_dtype)), us)[1]


def rnnjax_lstm(cell, params, xs):
    return rj.unroll(cell, params, xs)[1].astype(jnp.float32)


def errors(got, want) -> dict:
    diff = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "final_max_abs": float(diff[:, -1].max())}


def measure(num_steps: int, batch: int, input_size: int, hidden: int, forget_bias: float, seed: int = 0) -> list[dict]:
    """Every variant's error at ``num_steps`` for an LSTM with rnnjax's initialisation and N(0, 1) inputs."""
    cell32 = rj.LSTMCell(hidden, precision="highest", forget_bias=forget_bias)
    params = cell32.init(jax.random.key(seed), input_size)
    xs = jax.random.normal(jax.random.key(seed + 1), (batch, num_steps, input_size))

    def batched(fn, *args):
        return jax.jit(jax.vmap(lambda x: fn(*args, x)))(xs)

    with jax.enable_x64(True):
        params64 = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
        want = np.asarray(jax.jit(jax.vmap(lambda x: rj.unroll(cell32, params64, x.astype(jnp.float64))[1]))(xs))

    exact = batched(rnnjax_lstm, cell32, params)
    gap = float(jnp.max(jnp.abs(exact - batched(emulated_lstm, params))))
    assert gap < 1e-5, f"the emulating LSTM is not rj.LSTMCell: max gap {gap:.2e}"

    bf16, bits = jnp.bfloat16, MANTISSA_BITS
    rows = {
        "float32, full": exact,
        f"float32, backend default ({jax.default_backend()})": batched(
            rnnjax_lstm, dataclasses.replace(cell32, precision="default"), params
        ),
        "float32, TF32 (emulated)": batched(lambda p, x: emulated_lstm(p, x, bits["tf32"]), params),
        "float32, 1 bf16 pass (emulated)": batched(lambda p, x: emulated_lstm(p, x, bits["bf16"]), params),
        "bfloat16, rnnjax (float32 accumulation, gates, cell state)": batched(
            rnnjax_lstm, dataclasses.replace(cell32, dtype=bf16), params
        ),
        "bfloat16, bf16 cell state": batched(lambda p, x: emulated_lstm(p, x, bits["bf16"], state_dtype=bf16), params),
        "bfloat16 everywhere (gates and cell state)": batched(
            lambda p, x: emulated_lstm(p, x, bits["bf16"], state_dtype=bf16, gate_dtype=bf16), params
        ),
    }
    return [
        {"steps": num_steps, "forget_bias": forget_bias, "variant": name, **errors(got, want)}
        for name, got in rows.items()
    ]


def gradient_error(got, want) -> float:
    """``|got - want| / |want|`` over all the params' gradients together (Euclidean norms)."""
    got, want = (
        np.concatenate([np.ravel(np.asarray(g, np.float64)) for g in jax.tree_util.tree_leaves(t)]) for t in (got, want)
    )
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def measure_gradients(num_steps, batch, input_size, hidden, forget_bias, seed=0) -> list[dict]:
    """The params' gradient of a mean squared error over every step's output, against float64's."""
    cell32 = rj.LSTMCell(hidden, precision="highest", forget_bias=forget_bias)
    params = cell32.init(jax.random.key(seed), input_size)
    keys = jax.random.split(jax.random.key(seed + 1))
    xs = jax.random.normal(keys[0], (batch, num_steps, input_size))
    target = 0.5 * jax.random.normal(keys[1], (batch, num_steps, hidden))

    def grad(cell, params, xs, target):
        def loss(p):
            ys = jax.vmap(lambda x: rj.unroll(cell, p, x)[1])(xs)
            return jnp.mean((ys.astype(target.dtype) - target) ** 2)

        return jax.jit(jax.grad(loss))(params)

    with jax.enable_x64(True):
        as64 = partial(jax.tree_util.tree_map, lambda a: a.astype(jnp.float64))
        want = jax.device_get(grad(cell32, as64(params), *as64((xs, target))))
    variants = {
        "float32, full": cell32,
        f"float32, backend default ({jax.default_backend()})": dataclasses.replace(cell32, precision="default"),
        "bfloat16, rnnjax (float32 params)": dataclasses.replace(cell32, dtype=jnp.bfloat16),
    }
    return [
        {
            "steps": num_steps,
            "forget_bias": forget_bias,
            "variant": name,
            "relative_error": gradient_error(grad(cell, params, xs, target), want),
        }
        for name, cell in variants.items()
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", nargs="+", type=int, default=[100, 2000])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument(
        "--forget-bias", nargs="+", type=float, default=[1.0, 3.0], help="1: rnnjax's default; 3: long memory"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "precision.json")
    args = parser.parse_args(argv)

    rows = [
        row
        for forget_bias in args.forget_bias
        for t in args.steps
        for row in measure(t, args.batch, args.input_size, args.hidden_size, forget_bias, args.seed)
    ]
    gradients = [
        row
        for forget_bias in args.forget_bias
        for t in args.steps
        for row in measure_gradients(t, args.batch, args.input_size, args.hidden_size, forget_bias, args.seed)
    ]
    report = {
        "benchmark": "precision",
        "config": {"batch": args.batch, "input_size": args.input_size, "hidden_size": args.hidden_size},
        "backend": jax.default_backend(),
        "device": jax.devices()[0].device_kind,
        "machine": {"platform": platform.platform(), "jax": jax.__version__},
        "rows": rows,
        "gradients": gradients,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    size = f"input {args.input_size}, hidden {args.hidden_size}, batch {args.batch}"
    print(f"LSTM ({size}) vs float64 on {report['device']}")
    print(f"{'forget bias':>11}{'T':>6}  {'variant':<62}{'max |err|':>11}{'mean |err|':>12}")
    for r in rows:
        print(f"{r['forget_bias']:>11}{r['steps']:>6}  {r['variant']:<62}{r['max_abs']:>11.2e}{r['mean_abs']:>12.2e}")
    print("\nthe params' gradient (mean squared error over every output) vs float64: |error| / |gradient|")
    for r in gradients:
        print(f"{r['forget_bias']:>11}{r['steps']:>6}  {r['variant']:<62}{r['relative_error']:>11.2e}")


if __name__ == "__main__":
    main()
