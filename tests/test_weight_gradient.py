"""unroll's deferred recurrent weight gradient (``recurrence.DEFER_WEIGHT_GRADIENT``): the hoisted path
with ``w_h``'s gradient as one matmul after the backward loop gives autodiff's values and derivatives."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

import rnnjax as rj
from conftest import CELLS, INPUT_SIZE, as_float64, assert_trees_close, random_params, scan_carry_shapes

# every RecurrentWeightCell in the catalogue, and a stack of two (which is not one: plain autodiff)
DEFERRING = ["elman", "jordan", "lstm", "lstm_peephole", "lstm_proj", "gru", "gru_cho"]
BATCH, T = 3, 8
LENGTHS = jnp.array([8, 5, 1])


def batch_loss(cell, hoist, options, key=None):
    """A scalar of every output and final carry of a vmapped unroll, as a function of (params, xs, carry)."""

    def loss(params, xs, carry):
        def one(x, n, k):
            return rj.unroll(cell, params, x, carry, length=n, hoist=hoist, key=k, **options)

        keys = None if key is None else jax.random.split(key, BATCH)
        carries, ys = jax.vmap(one)(xs, LENGTHS, keys)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(c**2) for c in jax.tree_util.tree_leaves(carries))

    return loss


def case(cell):
    params = as_float64(random_params(cell))
    xs = jax.random.normal(jax.random.key(3), (BATCH, T, INPUT_SIZE), jnp.float64)
    carry = jax.tree_util.tree_map(lambda c: c + 0.25, cell.initial_carry(params))
    return params, xs, carry


# the default suite compares the LSTM (additive factors) and the GRU (the reset gate's); the slow suite all of
# them (the table is off by default: the structural test below is the default suite's guard for every cell)
IN_THE_DEFAULT_SUITE = {"lstm", "gru"}


@pytest.mark.parametrize(
    "name",
    [n if n in IN_THE_DEFAULT_SUITE else pytest.param(n, marks=pytest.mark.slow) for n in [*DEFERRING, "stacked"]],
)
@pytest.mark.parametrize(
    "options",
    [
        {},
        *(
            pytest.param(options, marks=pytest.mark.slow, id=name)
            for name, options in [
                ("reverse-unroll3", {"reverse": True, "unroll": 3}),
                ("masked-last", {"masked_output": "last", "mask": jnp.arange(T) % 3 != 1}),
                ("remat", {"remat": True}),
            ]
        ),
    ],
    ids=lambda options: "plain" if options == {} else None,
)
def test_gradients_equal_autodiff(name, options, x64, defer_weight_gradient):
    cell = CELLS[name]
    assert isinstance(cell, rj.typing.RecurrentWeightCell) == (name != "stacked")
    params, xs, carry = case(cell)
    want = jax.jit(jax.grad(batch_loss(cell, False, options), argnums=(0, 1, 2)))(params, xs, carry)
    got = jax.jit(jax.grad(batch_loss(cell, True, options), argnums=(0, 1, 2)))(params, xs, carry)
    assert_trees_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_gradients_equal_autodiff_with_dropout_and_zoneout(name, x64, defer_weight_gradient):
    cell = dataclasses.replace(CELLS[name], dropout=0.2, recurrent_dropout=0.3, zoneout=0.25)
    params, xs, carry = case(cell)
    key = jax.random.key(11)
    want = jax.grad(batch_loss(cell, False, {}, key), argnums=(0, 1))(params, xs, carry)
    got = jax.grad(batch_loss(cell, True, {}, key), argnums=(0, 1))(params, xs, carry)
    assert_trees_close(got, want, rtol=1e-10, atol=1e-12)


def gru_loss(p, x, hoist):
    return jnp.sum(jnp.tanh(rj.unroll(CELLS["gru"], p, x, hoist=hoist)[1]))


@pytest.mark.slow
def test_per_sequence_gradients_and_forward_mode(x64, defer_weight_gradient):
    # vmap(grad) must give each sequence's own gradient (not their sum); jvp goes through the custom rule
    params, xs, _ = case(CELLS["gru"])
    per_sequence = jax.vmap(jax.grad(gru_loss), (None, 0, None))(params, xs, True)
    one_by_one = [jax.grad(gru_loss)(params, x, False) for x in xs]
    assert_trees_close(per_sequence, jax.tree_util.tree_map(lambda *g: jnp.stack(g), *one_by_one), rtol=1e-10)
    tangent = jax.tree_util.tree_map(jnp.ones_like, params)
    got = jax.jvp(lambda p: gru_loss(p, xs[0], True), (params,), (tangent,))
    want = jax.jvp(lambda p: gru_loss(p, xs[0], False), (params,), (tangent,))
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.slow
def test_second_derivatives(x64, defer_weight_gradient):
    params, xs, _ = case(CELLS["gru"])
    test_util.check_grads(lambda p, x: gru_loss(p, x, True), (params, xs[0, :4]), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("name", DEFERRING)
def test_the_backward_loop_carries_no_weight_gradient(name, monkeypatch):
    """Autodiff's backward loop carries a ``w_h``-shaped gradient accumulator; the deferred one does not (so
    the table turns the deferred path on for every cell that the equality tests above compare)."""
    cell = CELLS[name]
    params = random_params(cell)
    xs = jax.random.normal(jax.random.key(3), (BATCH, T, INPUT_SIZE))

    def carries(defer):
        monkeypatch.setitem(rj.recurrence.DEFER_WEIGHT_GRADIENT, jax.default_backend(), defer)
        loss = lambda p: jnp.sum(jax.vmap(lambda x: rj.unroll(cell, p, x, hoist=True)[1])(xs))  # noqa: E731
        return scan_carry_shapes(jax.make_jaxpr(jax.grad(loss))(params).jaxpr)

    assert params.w_h.shape in carries(False)
    assert params.w_h.shape not in carries(True)
