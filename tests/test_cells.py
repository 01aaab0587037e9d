"""Cells: parameter counts, shapes and dtypes, gradients, and a NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

import rnnjax as rj
from conftest import CELLS, INPUT_SIZE, random_params, randomize


def num_params(params):
    return sum(x.size for x in jax.tree_util.tree_leaves(params))


@pytest.mark.parametrize(
    "cell, input_size, expected",
    [
        (rj.LSTMCell(128), 64, 98_816),  # Keras LSTM(128)
        (rj.GRUCell(128), 64, 74_496),  # Keras GRU(128), reset_after=True
        (rj.GRUCell(128, reset_after=False), 64, 74_112),  # Keras GRU(128, reset_after=False)
        (rj.ElmanCell(50), 64, 5_750),  # Keras SimpleRNN(50)
        (rj.LSTMCell(8, peephole=True), 4, 4 * (4 * 8 + 8 * 8 + 8) + 3 * 8),
        (rj.MinGRUCell(8), 4, 2 * (4 * 8 + 8)),
        (rj.MinLSTMCell(8), 4, 3 * (4 * 8 + 8)),
        (rj.JordanCell(8, 2), 4, 4 * 8 + 2 * 8 + 8 + 8 * 2 + 2),
        (rj.RMLPCell(8, mlp_sizes=(6,)), 4, (4 * 6 + 6) + (6 * 8 + 8 * 8 + 8)),
    ],
)
def test_parameter_counts(cell, input_size, expected):
    assert num_params(cell.init(jax.random.key(0), input_size)) == expected


def test_params_are_float32_by_default_and_follow_param_dtype(cell, x64):
    params = cell.init(jax.random.key(0), INPUT_SIZE)
    assert {x.dtype for x in jax.tree_util.tree_leaves(params)} == {jnp.dtype("float32")}
    if isinstance(cell, rj.StackedCell):
        return
    params64 = type(cell)(**{**vars(cell), "param_dtype": jnp.float64}).init(jax.random.key(0), INPUT_SIZE)
    assert {x.dtype for x in jax.tree_util.tree_leaves(params64)} == {jnp.dtype("float64")}


def test_step_shapes_unbatched_and_vmapped(cell):
    params = random_params(cell)
    x = jnp.ones(INPUT_SIZE)
    step = jax.jit(cell.step)
    carry, y = step(params, cell.initial_carry(params), x)
    assert y.shape == (cell.output_size,) and y.dtype == jnp.float32
    assert jax.tree_util.tree_map(jnp.shape, carry) == jax.tree_util.tree_map(jnp.shape, cell.initial_carry(params))

    xb = jax.random.normal(jax.random.key(2), (7, INPUT_SIZE))
    carries = cell.initial_carry(params, (7,))
    new_carries, ys = jax.jit(jax.vmap(cell.step, (None, 0, 0)))(params, carries, xb)
    assert ys.shape == (7, cell.output_size)
    # batch_shape in initial_carry and leading axes in step agree with vmap
    direct_carries, direct_ys = step(params, carries, xb)
    np.testing.assert_allclose(direct_ys, ys, rtol=1e-6, atol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(direct_carries), jax.tree_util.tree_leaves(new_carries), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_step_is_recur_of_project(cell):
    params = random_params(cell)
    carry = jax.tree_util.tree_map(lambda c: c + 0.3, cell.initial_carry(params))
    x = jax.random.normal(jax.random.key(2), (INPUT_SIZE,))
    c1, y1 = cell.step(params, carry, x)
    c2, y2 = cell.recur(params, carry, cell.project(params, x))
    np.testing.assert_array_equal(y1, y2)
    jax.tree_util.tree_map(np.testing.assert_array_equal, c1, c2)


def test_step_gradients_float64(cell, x64):
    params = random_params(cell)
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
    carry = jax.tree_util.tree_map(lambda c: c + 0.2, cell.initial_carry(params))
    x = jax.random.normal(jax.random.key(2), (INPUT_SIZE,), jnp.float64)
    step = jax.jit(cell.step)
    assert step(params, carry, x)[1].dtype == jnp.float64
    test_util.check_grads(step, (params, carry, x), order=1, modes=("fwd", "rev"))


def test_bfloat16_inputs_compute_in_float32_with_float32_params(cell):
    params = cell.init(jax.random.key(0), INPUT_SIZE)
    carry, y = cell.step(params, cell.initial_carry(params), jnp.ones(INPUT_SIZE, jnp.bfloat16))
    assert y.dtype == jnp.float32


@pytest.mark.parametrize("name", ["lstm", "gru", "elman", "mingru"])
def test_bfloat16_computation_dtype(name):
    cell = CELLS[name]
    cell = type(cell)(**{**vars(cell), "dtype": jnp.bfloat16})
    params = random_params(cell)
    assert params.w_i.dtype == jnp.float32
    xs = jax.random.normal(jax.random.key(2), (6, INPUT_SIZE))
    carry, ys = rj.unroll(cell, params, xs)
    assert ys.dtype == jnp.bfloat16 and jax.tree_util.tree_leaves(carry)[0].dtype == jnp.bfloat16
    ref = rj.unroll(type(cell)(**{**vars(cell), "dtype": None}), params, xs)[1]
    np.testing.assert_allclose(ys.astype(jnp.float32), ref, atol=0.05)


def test_cells_are_hashable_static_hyperparameters():
    assert rj.LSTMCell(8) == rj.LSTMCell(8) and hash(rj.LSTMCell(8)) == hash(rj.LSTMCell(8))
    assert rj.LSTMCell(8) != rj.LSTMCell(8, peephole=True)
    assert rj.JordanCell(8) == rj.JordanCell(8, output_size=8)
    assert len({rj.RMLPCell(4, mlp_sizes=[3]), rj.RMLPCell(4, mlp_sizes=(3,))}) == 1
    # dtypes in any spelling: equal cells hash equal (a jit cache key)
    spellings = [rj.GRUCell(4, param_dtype=d, dtype=d) for d in (jnp.float32, np.dtype("float32"), "float32")]
    assert len(set(spellings)) == 1


def test_lstm_forget_bias_initialisation():
    params = rj.LSTMCell(4, forget_bias=2.0).init(jax.random.key(0), 3)
    np.testing.assert_array_equal(params.b, [0.0] * 4 + [2.0] * 4 + [0.0] * 8)


def test_learned_initial_carry_is_used_and_trained():
    cell = rj.LSTMCell(4, learn_initial_carry=True)
    params = cell.init(jax.random.key(0), 3)
    params = params._replace(carry0=rj.LSTMCarry(jnp.full(4, 0.5), jnp.full(4, -0.5)))
    carry = cell.initial_carry(params, (2,))
    np.testing.assert_array_equal(carry.h, jnp.full((2, 4), 0.5))

    def loss(p):
        return jnp.sum(rj.unroll(cell, p, jnp.ones((5, 3)))[1] ** 2)

    grads = jax.grad(loss)(params)
    assert float(jnp.abs(grads.carry0.h).sum()) > 0 and float(jnp.abs(grads.carry0.c).sum()) > 0


def test_jordan_context_follows_output():
    cell = rj.JordanCell(4, output_size=2, context_decay=0.25)
    params = randomize(cell.init(jax.random.key(0), 3), jax.random.key(1))
    c0 = rj.JordanCarry(jnp.array([0.1, -0.2]))
    c1, y = cell.step(params, c0, jnp.ones(3))
    np.testing.assert_allclose(c1.context, 0.25 * c0.context + y, rtol=1e-6)
    s = jnp.tanh(jnp.ones(3) @ params.w_i + c0.context @ params.w_h + params.b)
    np.testing.assert_allclose(y, jnp.tanh(s @ params.w_o + params.b_o), rtol=1e-6)


@pytest.mark.parametrize("cell", [CELLS["mingru"], CELLS["minlstm"]])
def test_min_cells_follow_the_paper(cell):
    params = randomize(cell.init(jax.random.key(0), 3), jax.random.key(1))
    x, h = jnp.array([0.3, -1.0, 2.0]), jnp.linspace(-1, 1, 5)
    pre = x @ params.w_i + params.b
    if isinstance(cell, rj.MinGRUCell):
        z, cand = jax.nn.sigmoid(pre[:5]), pre[5:]
        expected = (1 - z) * h + z * cand
    else:
        f, i, cand = jax.nn.sigmoid(pre[:5]), jax.nn.sigmoid(pre[5:10]), pre[10:]
        expected = f / (f + i) * h + i / (f + i) * cand
    np.testing.assert_allclose(cell.step(params, rj.HiddenCarry(h), x)[1], expected, rtol=1e-5, atol=1e-6)


def _numpy_elman_forward_backward(w_i, w_h, b, xs, dys):
    """Elman forward and hand-written BPTT in NumPy, float64: the reference."""
    hs = [np.zeros(w_h.shape[0])]
    for x in xs:
        hs.append(np.tanh(x @ w_i + hs[-1] @ w_h + b))
    d_w_i, d_w_h, d_b = np.zeros_like(w_i), np.zeros_like(w_h), np.zeros_like(b)
    d_h_next = np.zeros(w_h.shape[0])
    for t in reversed(range(len(xs))):
        d_h = dys[t] + d_h_next
        d_pre = d_h * (1 - hs[t + 1] ** 2)
        d_w_i += np.outer(xs[t], d_pre)
        d_w_h += np.outer(hs[t], d_pre)
        d_b += d_pre
        d_h_next = d_pre @ w_h.T
    return np.stack(hs[1:]), (d_w_i, d_w_h, d_b)


def test_elman_matches_numpy_forward_and_bptt(x64):
    rng = np.random.default_rng(0)
    w_i, w_h, b = rng.normal(size=(3, 6)) * 0.5, rng.normal(size=(6, 6)) * 0.5, rng.normal(size=6) * 0.1
    xs, dys = rng.normal(size=(20, 3)), rng.normal(size=(20, 6))
    ref_ys, ref_grads = _numpy_elman_forward_backward(w_i, w_h, b, xs, dys)

    cell = rj.ElmanCell(6, param_dtype=jnp.float64)
    params = rj.ElmanParams(jnp.asarray(w_i), jnp.asarray(w_h), jnp.asarray(b))
    ys = rj.unroll(cell, params, jnp.asarray(xs))[1]
    np.testing.assert_allclose(ys, ref_ys, rtol=1e-12, atol=1e-12)
    grads = jax.grad(lambda p: jnp.sum(rj.unroll(cell, p, jnp.asarray(xs))[1] * dys))(params)
    for got, want in zip((grads.w_i, grads.w_h, grads.b), ref_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: rj.LSTMCell(0), "hidden_size: expected a positive integer, got 0"),
        (lambda: rj.ElmanCell(4.5), "hidden_size: expected a positive integer, got 4.5"),
        (lambda: rj.ElmanCell(4, activation="swish2"), "activation: expected one of"),
        (lambda: rj.JordanCell(4, context_decay=1.0), "context_decay: expected a value in"),
        (lambda: rj.RMLPCell(4, mlp_sizes=(3, 0)), r"mlp_sizes\[1\]: expected a positive integer"),
        (lambda: rj.LSTMCell(4).init(jax.random.key(0), 0), "input_size: expected a positive integer, got 0"),
    ],
)
def test_bad_hyperparameters_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()
