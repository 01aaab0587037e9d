"""Sequence layers: RNN, Bidirectional (with padding), Stack (dropout), StackedCell."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rnnjax as rj
from conftest import INPUT_SIZE, random_params
from test_recurrence import loop_unroll

T = 8


def xs_(seed=0, num_steps=T):
    return jax.random.normal(jax.random.key(seed), (num_steps, INPUT_SIZE))


def test_rnn_layer_is_unroll(hoist):
    layer = rj.RNN(rj.GRUCell(5), reverse=True, hoist=hoist)
    params = random_params(layer.cell)
    carry, ys = layer.apply_with_carry(params, xs_(), length=6)
    want = loop_unroll(layer.cell, params, xs_(), layer.cell.initial_carry(params), 6, reverse=True)
    np.testing.assert_allclose(ys, want[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry.h, want[0].h, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(layer.apply(params, xs_(), length=6), ys)
    assert layer.output_size == 5


@pytest.mark.parametrize("merge", ["concat", "sum", "mean", "mul"])
def test_bidirectional_backward_starts_at_last_valid_step(merge, hoist):
    backward = rj.RNN(rj.LSTMCell(5), hoist=hoist)  # forced to run reversed
    layer = rj.Bidirectional(rj.RNN(rj.LSTMCell(5), hoist=hoist), backward, merge=merge)
    params = layer.init(jax.random.key(0), INPUT_SIZE)
    xs, n = xs_(1), 5
    ys = jax.jit(layer.apply)(params, xs, length=n)
    fwd = rj.unroll(rj.LSTMCell(5), params.forward, xs[:n])[1]
    bwd = rj.unroll(rj.LSTMCell(5), params.backward, xs[:n][::-1])[1][::-1]  # reversed valid prefix only
    merged = {"concat": jnp.concatenate([fwd, bwd], -1), "sum": fwd + bwd, "mean": (fwd + bwd) / 2, "mul": fwd * bwd}
    np.testing.assert_allclose(ys[:n], merged[merge], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ys[n:], 0.0)
    assert ys.shape[-1] == layer.output_size == (10 if merge == "concat" else 5)
    # padding content does not leak into the valid outputs
    ys_other_padding = layer.apply(params, xs.at[n:].set(100.0), length=n)
    np.testing.assert_allclose(ys_other_padding, ys, rtol=1e-6, atol=1e-6)


def test_stack_equals_stacked_cell_and_step_by_step(hoist):
    cells = [rj.LSTMCell(6), rj.GRUCell(4), rj.ElmanCell(3)]
    stack, stacked = rj.Stack([rj.RNN(c, hoist=hoist) for c in cells]), rj.StackedCell(cells)
    params = stack.init(jax.random.key(0), INPUT_SIZE)
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(stacked.init(jax.random.key(0), 3))
    xs = xs_(2)
    ys_layerwise = jax.jit(stack.apply)(params, xs, length=6)
    carry, ys_stepwise = rj.unroll(stacked, params, xs, length=6, hoist=hoist)
    np.testing.assert_allclose(ys_layerwise, ys_stepwise, rtol=1e-5, atol=1e-6)
    want_carry, want_ys = loop_unroll(stacked, params, xs, stacked.initial_carry(params), 6)
    np.testing.assert_allclose(ys_stepwise, want_ys, rtol=1e-5, atol=1e-6)
    assert len(carry) == 3 and carry[2].h.shape == (3,)
    assert stack.output_size == stacked.output_size == 3


def test_stack_dropout_only_with_a_key_and_only_between_layers():
    stack = rj.Stack([rj.ElmanCell(64), rj.ElmanCell(64)], dropout=0.5)
    no_dropout = rj.Stack([rj.ElmanCell(64), rj.ElmanCell(64)])
    params = stack.init(jax.random.key(0), INPUT_SIZE)
    xs = xs_(3)
    apply = jax.jit(stack.apply)
    np.testing.assert_array_equal(apply(params, xs), no_dropout.apply(params, xs))  # key=None: deterministic
    a, b = apply(params, xs, key=jax.random.key(1)), apply(params, xs, key=jax.random.key(2))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, apply(params, xs, key=jax.random.key(1)))  # same key, same mask

    # the dropout mask sits between the layers: reproduce it by hand
    k_layers = jax.random.split(jax.random.key(1), 4)
    h1 = rj.unroll(rj.ElmanCell(64), params[0], xs)[1]
    keep = jax.random.bernoulli(k_layers[2], 0.5, h1.shape)
    h1 = jnp.where(keep, h1 / 0.5, 0.0)
    np.testing.assert_allclose(a, rj.unroll(rj.ElmanCell(64), params[1], h1)[1], rtol=1e-5, atol=1e-6)


def test_deep_bidirectional_stack_vmapped(hoist):
    def bidirectional(size):
        return rj.Bidirectional(rj.RNN(rj.GRUCell(size), hoist=hoist), rj.RNN(rj.GRUCell(size), hoist=hoist))

    stack = rj.Stack([bidirectional(4), bidirectional(3)])
    params = stack.init(jax.random.key(0), INPUT_SIZE)
    xs = jax.random.normal(jax.random.key(4), (3, T, INPUT_SIZE))
    lengths = jnp.array([8, 2, 5])
    ys = jax.jit(jax.vmap(lambda x, n: stack.apply(params, x, length=n)))(xs, lengths)
    assert ys.shape == (3, T, 6)
    for i in range(3):
        np.testing.assert_allclose(ys[i], stack.apply(params, xs[i], length=lengths[i]), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(ys[i, int(lengths[i]) :], 0.0)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: rj.Bidirectional(rj.LSTMCell(4), rj.LSTMCell(4), merge="max"), ValueError, "merge: expected one of"),
        (lambda: rj.Bidirectional(rj.LSTMCell(4), rj.LSTMCell(3), merge="sum"), ValueError, "needs equal output"),
        (lambda: rj.Bidirectional(rj.LSTMCell(4), rj.Stack([rj.LSTMCell(4)])), TypeError, "backward: expected a cell"),
        (lambda: rj.Stack([]), ValueError, "layers: expected at least one layer"),
        (lambda: rj.Stack([rj.LSTMCell(4)], dropout=1.0), ValueError, r"dropout: expected a probability in \[0, 1\)"),
        (lambda: rj.StackedCell([]), ValueError, "cells: expected at least one cell"),
    ],
)
def test_layer_configuration_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_stack_params_count_mismatch():
    stack = rj.Stack([rj.LSTMCell(4), rj.LSTMCell(4)])
    params = stack.init(jax.random.key(0), INPUT_SIZE)
    with pytest.raises(ValueError, match="params: expected 2 layer params, got 1"):
        stack.apply(params[:1], xs_())


def test_layers_take_and_return_carries():
    stack = rj.Stack([rj.Bidirectional(rj.GRUCell(4), rj.GRUCell(4)), rj.LSTMCell(5)], dropout=0.3)
    params = stack.init(jax.random.key(0), INPUT_SIZE)
    xs, key = xs_(6), jax.random.key(1)
    carries, ys = jax.jit(stack.apply_with_carry)(params, xs, length=6, key=key)
    # same dropout masks (other masks differ by O(0.1)); jitted against eager, the float32 sums may differ
    # in the last bit (7e-9 measured on the hoisted path, unroll 32)
    np.testing.assert_allclose(ys, stack.apply(params, xs, length=6, key=key), rtol=1e-6, atol=1e-7)
    (fwd, bwd), last = carries
    h1 = stack.layers[0].apply(params[0], xs, length=6)
    np.testing.assert_allclose(fwd.h, h1[5, :4], rtol=1e-6)  # forward ends at the last valid step
    np.testing.assert_allclose(bwd.h, h1[0, 4:], rtol=1e-6)  # backward ends at step 0
    np.testing.assert_allclose(last.h, ys[5], rtol=1e-6)
    # a given initial carry is used: starting from the returned carries continues the sequence
    start = stack.initial_carry(params)
    assert jax.tree_util.tree_structure(start) == jax.tree_util.tree_structure(carries)
    moved, _ = stack.apply_with_carry(params, xs, carries, length=6)
    assert not np.allclose(moved[1].h, last.h)


# --- property: any input either raises a clear error or equals the valid-prefix reference --------

ARGUMENT_ERROR = r"^[a-z_]+(\.[a-z_]+|\[\d+\])*: "  # messages start with the argument's name

PROPERTY_LAYERS = {
    "rnn": rj.RNN(rj.GRUCell(3)),
    "reverse": rj.RNN(rj.LSTMCell(3), reverse=True),
    "bidirectional": rj.Bidirectional(rj.RNN(rj.ElmanCell(3)), rj.RNN(rj.GRUCell(3))),
    "stack": rj.Stack([rj.RNN(rj.LSTMCell(3)), rj.RNN(rj.ElmanCell(2), reverse=True)]),
}


def valid_prefix_reference(layer, params, xs, n):
    """What ``length=n`` means for every layer: the layer on the first n steps, zeros after."""
    if n == 0:
        return np.zeros((len(xs), layer.output_size))
    ys = np.asarray(layer.apply(params, xs[:n]))
    return np.concatenate([ys, np.zeros((len(xs) - n, ys.shape[-1]))])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(PROPERTY_LAYERS)),
    num_steps=st.integers(0, 5),
    length=st.one_of(st.none(), st.integers(-2, 7)),
    features=st.sampled_from([INPUT_SIZE, INPUT_SIZE + 1]),
    dtype=st.sampled_from(["float32", "int32"]),
    batched=st.booleans(),
)
def test_layers_raise_a_named_error_or_equal_the_valid_prefix_reference(
    name, num_steps, length, features, dtype, batched
):
    layer = PROPERTY_LAYERS[name]
    params = layer.init(jax.random.key(0), INPUT_SIZE)
    xs = np.asarray(np.random.default_rng(num_steps).normal(size=(num_steps, features)), dtype)
    try:
        ys = layer.apply(params, xs[None] if batched else xs, length=length)
    except (ValueError, TypeError) as error:
        assert re.match(ARGUMENT_ERROR, str(error)), str(error)
        bad_length = length is not None and not 0 <= length <= num_steps
        assert batched or features != INPUT_SIZE or dtype != "float32" or bad_length, str(error)
        return
    assert not batched and features == INPUT_SIZE and dtype == "float32"
    n = num_steps if length is None else length
    np.testing.assert_allclose(ys, valid_prefix_reference(layer, params, xs, n), rtol=1e-5, atol=1e-6)


def test_cells_and_layers_are_told_apart_by_their_protocols():
    assert isinstance(rj.GRUCell(3), rj.typing.Cell) and not isinstance(rj.GRUCell(3), rj.typing.Layer)
    assert isinstance(rj.RNN(rj.GRUCell(3)), rj.typing.Layer)
    assert rj.layers.as_layer(rj.GRUCell(3)) == rj.RNN(rj.GRUCell(3))
    assert isinstance(rj.layers.as_cell([rj.GRUCell(3), rj.LSTMCell(2)]), rj.StackedCell)
    with pytest.raises(TypeError, match=r"layers\[1\]: expected an rnnjax cell or layer .*got Dense"):
        rj.Stack([rj.GRUCell(3), rj.Dense(2)])
    with pytest.raises(TypeError, match=r"cell: expected an rnnjax cell or a list of cells .*got Stack"):
        rj.layers.as_cell(rj.Stack([rj.GRUCell(3)]))
