"""The precision policy: matmul precision reaches every matmul, 16-bit dtypes work, and the accuracy at
each backend's default precision is within the bounds measured for it.

The rest of the suite runs at full float32 ("highest", set in the root conftest.py), so that two ways
of computing the same thing agree on every backend. Here cells that ask for ``precision="default"``
get the backend's own default: full float32 on CPU, TF32 on recent NVIDIA GPUs, one bfloat16 pass on
TPU. The bounds below are the errors measured with ``benchmarks/precision.py`` at this test's sizes
(CPU, three seeds; TF32 and the bfloat16 pass emulated by rounding the matmul operands), with a
margin of about 2x over the largest measurement.
"""

import dataclasses

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import rnnjax as rj
from conftest import CELLS, INPUT_SIZE, as_float64, equations, random_params, scan_carry_shapes

# mean |error| (max |error|) of every output of an LSTM(32) on N(0, 1) inputs of size 16, batch 4,
# against float64, at T = 100 and 2,000; measured: full 1.6e-8 (1.6e-7), TF32 3.6e-5 (4.5e-4),
# one bfloat16 pass 3.3e-4 (3.1e-3), dtype=bfloat16 3.8e-4 (3.4e-3).
FULL_FLOAT32 = (5e-8, 1e-6)
DEFAULT_PRECISION = {"cpu": FULL_FLOAT32, "gpu": (1e-4, 1.5e-3), "tpu": (1e-3, 1e-2)}
BFLOAT16_COMPUTE = (1e-3, 1e-2)
BFLOAT16_GRADIENT = 1e-2  # relative; see test_bfloat16_gradient_accuracy_against_float64

SIXTEEN_BIT = [jnp.bfloat16, pytest.param(jnp.float16, marks=pytest.mark.slow)]
PLAIN_CELLS = sorted(name for name, cell in CELLS.items() if dataclasses.is_dataclass(cell) and hasattr(cell, "dtype"))


def dot_equations(jaxpr) -> list:
    return equations(jaxpr, "dot_general")


def dot_precisions(jaxpr) -> list:
    return [eqn.params["precision"] for eqn in dot_equations(jaxpr)]


@pytest.mark.parametrize("name", PLAIN_CELLS)
def test_precision_reaches_every_matmul(name, hoist):
    cell = dataclasses.replace(CELLS[name], precision="high")
    params, xs = random_params(CELLS[name]), jnp.ones((4, INPUT_SIZE))
    jaxpr = jax.make_jaxpr(lambda p, x: rj.unroll(cell, p, x, hoist=hoist))(params, xs).jaxpr
    precisions = dot_precisions(jaxpr)
    assert precisions and all(p == (lax.Precision.HIGH, lax.Precision.HIGH) for p in precisions), precisions
    # without one, the matmuls take jax_default_matmul_precision (this suite's: "highest", root conftest.py)
    jaxpr = jax.make_jaxpr(lambda p, x: rj.unroll(CELLS[name], p, x, hoist=hoist))(params, xs).jaxpr
    assert all(p == (lax.Precision.HIGHEST, lax.Precision.HIGHEST) for p in dot_precisions(jaxpr))


def test_precision_is_canonical_hashable_and_checked():
    assert rj.LSTMCell(4, precision="highest") == rj.LSTMCell(4, precision=lax.Precision.HIGHEST)
    assert hash(rj.GRUCell(4, precision="float32")) == hash(rj.GRUCell(4, precision=lax.Precision.HIGHEST))
    assert rj.LSTMCell(4, precision=lax.DotAlgorithmPreset.F32_F32_F32).precision == lax.DotAlgorithmPreset.F32_F32_F32
    with pytest.raises(ValueError, match="precision: expected None, a jax.lax.Precision"):
        rj.LSTMCell(4, precision="fast")
    with pytest.raises(TypeError, match="dtype: expected a float dtype"):
        rj.LSTMCell(4, dtype=jnp.int32)

    traces = []

    @jax.jit
    def run(params, xs):
        traces.append(1)
        return rj.unroll(rj.LSTMCell(4, precision="highest"), params, xs)[1]

    params = random_params(rj.LSTMCell(4))
    run(params, jnp.ones((3, INPUT_SIZE)))
    run(params, jnp.zeros((3, INPUT_SIZE)))
    assert len(traces) == 1


@pytest.mark.parametrize("dtype", SIXTEEN_BIT, ids=["bfloat16", "float16"])
@pytest.mark.parametrize("name", PLAIN_CELLS)
def test_16_bit_params_initialise_and_run(name, dtype):
    cell32 = CELLS[name]
    cell = dataclasses.replace(cell32, param_dtype=dtype)
    params = cell.init(jax.random.key(0), INPUT_SIZE)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(params)} == {jnp.dtype(dtype)}
    params32 = cell32.init(jax.random.key(0), INPUT_SIZE)  # initialised in float32, then cast
    for low, full in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(params32), strict=True):
        np.testing.assert_array_equal(low, full.astype(dtype))
    xs = jax.random.normal(jax.random.key(1), (6, INPUT_SIZE)).astype(dtype)
    carry, ys = rj.unroll(cell, params, xs, cell.initial_carry(params))
    assert ys.dtype == dtype and bool(jnp.all(jnp.isfinite(ys.astype(jnp.float32))))
    want = rj.unroll(cell32, params32, xs.astype(jnp.float32))[1]
    np.testing.assert_allclose(ys.astype(jnp.float32), want, atol=0.05)


@pytest.mark.parametrize("name", [n if n == "lstm" else pytest.param(n, marks=pytest.mark.slow) for n in PLAIN_CELLS])
def test_16_bit_params_computing_in_float32_get_float32_sums_rounded_once(name, hoist):
    """bfloat16 params with float32 computation: unroll casts the params once before the loop, so their
    gradients are exactly the float32 params' rounded to bfloat16. Cast inside the loop, autodiff summed the
    recurrent weight's gradient over the steps in bfloat16: measured for an LSTM(64), batch 8, against
    float64, 1.2e-2 relative (T = 100) and 3.3e-2 (T = 1,000), where rounding the exact gradient to
    bfloat16 gives 1.7e-3 and 1.6e-3 (2026-12-04, CPU)."""
    cell32 = dataclasses.replace(CELLS[name], dtype=jnp.float32)
    cell = dataclasses.replace(cell32, param_dtype=jnp.bfloat16)
    params = cell.init(jax.random.key(0), INPUT_SIZE)
    params32 = jax.tree_util.tree_map(lambda p: p.astype(jnp.float32), params)
    xs = jax.random.normal(jax.random.key(1), (12, INPUT_SIZE))

    def loss(cell):
        return lambda params: jnp.sum(jnp.sin(rj.unroll(cell, params, xs, hoist=hoist)[1]))

    grads, grads32 = jax.grad(loss(cell))(params), jax.grad(loss(cell32))(params32)
    for low, full in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads32), strict=True):
        assert low.dtype == jnp.bfloat16
        np.testing.assert_array_equal(low, full.astype(jnp.bfloat16))


def test_16_bit_lstm_keeps_its_cell_state_in_float32(hoist):
    cell = rj.LSTMCell(8, dtype=jnp.bfloat16)
    params = cell.init(jax.random.key(0), INPUT_SIZE)  # float32 params, bfloat16 computation
    carry = cell.initial_carry(params)
    assert (carry.h.dtype, carry.c.dtype) == (jnp.bfloat16, jnp.float32)
    # the carry keeps its dtypes through a scan of `step` (no lax.scan carry mismatch)
    carry, ys = jax.lax.scan(lambda c, x: cell.step(params, c, x), carry, jnp.ones((5, INPUT_SIZE)))
    assert (carry.h.dtype, carry.c.dtype, ys.dtype) == (jnp.bfloat16, jnp.float32, jnp.bfloat16)
    carry, ys = rj.unroll(cell, params, jnp.ones((5, INPUT_SIZE)), hoist=hoist)
    assert (carry.h.dtype, carry.c.dtype, ys.dtype) == (jnp.bfloat16, jnp.float32, jnp.bfloat16)


def _training_step_jaxpr(cell, hoist):
    """The jaxpr of ``jax.grad`` through ``unroll`` (float32 params), and the params."""
    params = random_params(dataclasses.replace(cell, dtype=None))
    xs = jax.random.normal(jax.random.key(1), (6, INPUT_SIZE))

    def loss(p):
        return jnp.sum(rj.unroll(cell, p, xs, hoist=hoist)[1].astype(jnp.float32) ** 2)

    return jax.make_jaxpr(jax.grad(loss))(params).jaxpr, params


def _training_step_dot_dtypes(cell, hoist) -> set:
    """The operand dtypes of every matmul of ``jax.grad`` through ``unroll`` (float32 params)."""
    eqns = dot_equations(_training_step_jaxpr(cell, hoist)[0])
    return {tuple(jnp.dtype(v.aval.dtype).name for v in eqn.invars) for eqn in eqns}


@pytest.mark.parametrize("name", PLAIN_CELLS)
def test_bfloat16_training_step_runs_every_matmul_in_bfloat16(name, hoist):
    # the backward's matmuls too: float32 cotangents would upcast both operands (numerics.matmul)
    cell = dataclasses.replace(CELLS[name], dtype=jnp.bfloat16)
    assert _training_step_dot_dtypes(cell, hoist) == {("bfloat16", "bfloat16")}


def test_float16_keeps_its_backward_matmuls_in_float32():
    # no loss scaling in rnnjax: small float16 gradients would underflow
    dtypes = _training_step_dot_dtypes(rj.LSTMCell(8, dtype=jnp.float16), hoist=True)
    assert ("float16", "float16") in dtypes  # the forward's
    assert any("float32" in operands for operands in dtypes)  # the backward's: a float32 cotangent (upcast)


def _lstm_gradient_error(cell, num_steps, hoist=None):
    """|gradient - float64 gradient| / |float64 gradient| of a mean squared error, LSTM(32), batch 4."""
    reference = rj.LSTMCell(32)
    params = reference.init(jax.random.key(0), 16)
    xs = jax.random.normal(jax.random.key(1), (4, num_steps, 16))
    target = 0.5 * jax.random.normal(jax.random.key(2), (4, num_steps, 32))

    def grad(cell, params, xs, target):
        def loss(p):
            ys = jax.vmap(lambda x: rj.unroll(cell, p, x, hoist=hoist)[1])(xs)
            return jnp.mean((ys.astype(target.dtype) - target) ** 2)

        flat, _ = jax.flatten_util.ravel_pytree(jax.jit(jax.grad(loss))(params))
        return np.asarray(flat, np.float64)

    got = grad(cell, params, xs, target)
    with jax.enable_x64(True):
        want = grad(reference, as_float64(params), as_float64(xs), as_float64(target))
    return np.linalg.norm(got - want) / np.linalg.norm(want)


def test_bfloat16_gradient_accuracy_against_float64():
    # measured (CPU, this size): 2.8e-3 relative, as with the float32 backward before it (2.8e-3): the
    # error comes from the forward pass in bfloat16; float32 at full precision: 2e-7
    assert _lstm_gradient_error(rj.LSTMCell(32, dtype=jnp.bfloat16), 100) < BFLOAT16_GRADIENT
    assert _lstm_gradient_error(rj.LSTMCell(32, precision="highest"), 100) < 1e-6


@pytest.mark.parametrize(
    "name", ["lstm", *(pytest.param(n, marks=pytest.mark.slow) for n in ("gru", "gru_cho", "elman"))]
)
def test_deferred_weight_gradient_keeps_the_backward_in_bfloat16(name, defer_weight_gradient):
    # the weight gradient after the loop (no w_h-shaped accumulator in a loop) is a bfloat16 matmul too, and
    # as accurate: 2.96e-3 relative against 2.94e-3 in the loop (CPU, this size)
    cell = dataclasses.replace(CELLS[name], dtype=jnp.bfloat16)
    jaxpr, params = _training_step_jaxpr(cell, hoist=True)
    assert params.w_h.shape not in scan_carry_shapes(jaxpr)
    assert _training_step_dot_dtypes(cell, hoist=True) == {("bfloat16", "bfloat16")}
    if name == "lstm":
        assert _lstm_gradient_error(rj.LSTMCell(32, dtype=jnp.bfloat16), 100, hoist=True) < BFLOAT16_GRADIENT


def test_float16_keeps_the_weight_gradient_in_the_loop(defer_weight_gradient):
    # after the loop it would come from a float16 cotangent; in the loop autodiff keeps it float32
    cell = rj.LSTMCell(8, dtype=jnp.float16)
    jaxpr, params = _training_step_jaxpr(cell, hoist=True)
    assert params.w_h.shape in scan_carry_shapes(jaxpr)
    assert any("float32" in operands for operands in _training_step_dot_dtypes(cell, hoist=True))


def _lstm_errors(cell, num_steps):
    """Mean and max |outputs - float64 outputs| of an LSTM(32) over N(0, 1) inputs ``[4, num_steps, 16]``."""
    reference = rj.LSTMCell(32)
    params = reference.init(jax.random.key(0), 16)
    xs = jax.random.normal(jax.random.key(1), (4, num_steps, 16))
    got = jax.jit(jax.vmap(lambda x: rj.unroll(cell, params, x)[1]))(xs).astype(jnp.float32)
    with jax.enable_x64(True):
        params64 = as_float64(params)
        want = jax.jit(jax.vmap(lambda x: rj.unroll(reference, params64, x.astype(jnp.float64))[1]))(xs)
        err = np.abs(np.asarray(got, np.float64) - np.asarray(want))
    return err.mean(), err.max()


@pytest.mark.parametrize("num_steps", [100, 2000])
@pytest.mark.parametrize(
    "precision, dtype, bounds",
    [
        ("highest", None, FULL_FLOAT32),
        ("default", None, DEFAULT_PRECISION.get(jax.default_backend(), DEFAULT_PRECISION["tpu"])),
        (None, jnp.bfloat16, BFLOAT16_COMPUTE),
    ],
    ids=["highest", "backend-default", "bfloat16"],
)
def test_lstm_accuracy_against_float64(precision, dtype, bounds, num_steps):
    mean_err, max_err = _lstm_errors(rj.LSTMCell(32, precision=precision, dtype=dtype), num_steps)
    assert mean_err < bounds[0] and max_err < bounds[1], (
        f"{jax.default_backend()}: mean |err| {mean_err:.2e}, max {max_err:.2e} at T={num_steps}"
    )
