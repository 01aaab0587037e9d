"""Tests of rnnjax.local: the IIR-MLP cell and causal recursive backpropagation (CRBP)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

import rnnjax as rj
from docs_helpers import run_page
from rnnjax import local

CELL = local.IIRMLPCell((4, 3, 2), ma_order=2, ar_order=2)  # three layers: delays of 2h and h
INPUT_SIZE = 3


def mse(y, target):
    return jnp.sum((y - target) ** 2)


@functools.cache
def problem(cell=CELL, num_steps=10, seed=0, dtype=jnp.float64):
    """Random params (AR taps kept small, so the filters are stable), inputs and targets.

    Drawn with NumPy: eager jax.random calls would compile one small program per leaf shape.
    """
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: cell.init(jax.random.key(seed), INPUT_SIZE))
    params = jax.tree_util.tree_map(lambda s: jnp.asarray(0.5 * rng.standard_normal(s.shape), dtype), shapes)
    params = params._replace(layers=tuple(layer._replace(v=0.3 * layer.v) for layer in params.layers))
    xs = jnp.asarray(rng.standard_normal((num_steps, INPUT_SIZE)), dtype)
    targets = jnp.asarray(rng.standard_normal((num_steps, cell.output_size)), dtype)
    return params, xs, targets


def max_diff(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(*map(jax.tree_util.tree_leaves, (a, b)), strict=True))


def numpy_reference(params, xs):
    """The IIR-MLP written out with Python loops over layers, units, synapses and taps."""
    layers = [tuple(np.asarray(a, np.float64) for a in layer) for layer in params.layers]
    acts = [np.tanh] * len(layers)
    x_hist = [np.zeros((xs.shape[0] + 10, w.shape[1])) for w, _, _ in layers]  # padded: index t + 10
    y_hist = [np.zeros((xs.shape[0] + 10, w.shape[0], w.shape[1])) for w, _, _ in layers]
    outs = []
    for t in range(xs.shape[0]):
        x = np.asarray(xs[t], np.float64)
        for n, (w, v, b) in enumerate(layers):
            x_hist[n][t + 10] = x
            s = b.copy()
            for o in range(w.shape[0]):
                for i in range(w.shape[1]):
                    y = sum(w[o, i, k] * x_hist[n][t + 10 - k, i] for k in range(w.shape[2]))
                    y += sum(v[o, i, k - 1] * y_hist[n][t + 10 - k, o, i] for k in range(1, v.shape[2] + 1))
                    y_hist[n][t + 10, o, i] = y
                    s[o] += y
            x = acts[n](s)
        outs.append(x)
    return np.stack(outs)


# --- the cell ------------------------------------------------------------------------------------


def test_init_shapes_and_param_count():
    params = jax.jit(CELL.init, static_argnums=1)(jax.random.key(0), INPUT_SIZE)
    assert [(layer.w.shape, layer.v.shape, layer.b.shape) for layer in params.layers] == [
        ((4, 3, 3), (4, 3, 2), (4,)),
        ((3, 4, 3), (3, 4, 2), (3,)),
        ((2, 3, 3), (2, 3, 2), (2,)),
    ]
    assert sum(p.size for p in jax.tree_util.tree_leaves(params)) == 4 * 3 * 5 + 4 + 3 * 4 * 5 + 3 + 2 * 3 * 5 + 2
    # every synapse starts stable: sum |v| < 1
    assert all(float(jnp.max(jnp.sum(jnp.abs(layer.v), -1))) < 1 for layer in params.layers)


def test_cell_is_hashable_and_equal_cells_hash_equal():
    assert hash(local.IIRMLPCell([4, 2])) == hash(local.IIRMLPCell((4, 2)))
    assert local.IIRMLPCell((4, 2)).output_size == 2


def test_step_matches_numpy_reference(x64):
    params, xs, _ = problem()
    _, ys = jax.jit(lambda p, xs: rj.unroll(CELL, p, xs))(params, xs)
    np.testing.assert_allclose(ys, numpy_reference(params, xs), rtol=1e-12, atol=1e-12)


def test_unroll_equals_python_loop_over_step():
    params, xs, _ = problem(dtype=jnp.float32)
    carry_u, ys = jax.jit(lambda p, xs: rj.unroll(CELL, p, xs))(params, xs)
    step = jax.jit(CELL.step)
    carry = CELL.initial_carry(params)
    outs = []
    for x in xs:
        carry, y = step(params, carry, x)
        outs.append(y)
    np.testing.assert_allclose(ys, jnp.stack(outs), rtol=1e-5, atol=1e-6)
    assert max_diff(carry_u, carry) < 1e-5
    assert ys.dtype == jnp.float32


def test_batched_carry_and_vmap_equal_per_example():
    params, _, _ = problem(dtype=jnp.float32)
    xs = jax.random.normal(jax.random.key(5), (3, 7, INPUT_SIZE))
    batched = jax.jit(jax.vmap(lambda xs: rj.unroll(CELL, params, xs)[1]))(xs)
    for b in range(3):
        np.testing.assert_allclose(batched[b], rj.unroll(CELL, params, xs[b])[1], rtol=1e-5, atol=1e-6)
    # a batch of carries steps the batch at once
    carry = CELL.initial_carry(params, (3,))
    carry, y = jax.jit(CELL.step)(params, carry, xs[:, 0])
    assert y.shape == (3, 2) and carry.synapses[0].shape == (3, 4, 3, 2)
    np.testing.assert_allclose(y, batched[:, 0], rtol=1e-5, atol=1e-6)


def test_fir_and_static_special_cases():
    # p = q = 0 is a plain MLP applied at every step
    cell = local.IIRMLPCell((4, 2), ma_order=0, ar_order=0)
    params, _, _ = problem(cell, dtype=jnp.float32)
    xs = jax.random.normal(jax.random.key(1), (5, INPUT_SIZE))
    _, ys = rj.unroll(cell, params, xs)
    w1, w2 = (layer.w[..., 0] for layer in params.layers)
    b1, b2 = (layer.b for layer in params.layers)
    np.testing.assert_allclose(ys, jnp.tanh(jnp.tanh(xs @ w1.T + b1) @ w2.T + b2), rtol=1e-5, atol=1e-6)


def test_impulse_response_equals_filter_output():
    with jax.enable_x64(True):
        layer = problem()[0].layers[1]  # float64 params: drawn inside x64 (the cached problem may be drawn here first)
        g = local.impulse_response(layer, 12)
        # drive synapse (o, i) with a unit impulse through a one-layer linear cell
        cell = local.IIRMLPCell((3,), ma_order=2, ar_order=2, output_activation="identity", param_dtype=jnp.float64)
        one = local.IIRMLPParams((layer._replace(b=jnp.zeros(3, jnp.float64)),))
        impulse = jnp.zeros((12, 4), jnp.float64).at[0, 1].set(1.0)
        _, ys = rj.unroll(cell, one, impulse)
        np.testing.assert_allclose(ys, g[:, 1, :].T, rtol=1e-12, atol=1e-12)


# --- gradients --------------------------------------------------------------------------------------


def test_rtrl_equals_bptt(x64):
    params, xs, targets = problem()
    loss_b, bptt = jax.jit(lambda p: rj.train.bptt_grad(CELL, p, xs, targets, mse))(params)
    loss_r, rtrl = jax.jit(lambda p: rj.train.rtrl_grad(CELL, p, xs, targets, mse))(params)
    assert abs(float(loss_b - loss_r)) < 1e-10
    assert max_diff(bptt, rtrl) < 1e-10


@pytest.mark.slow  # numerical differences for ~140 weights
def test_bptt_passes_numerical_gradient_check(x64):
    params, xs, targets = problem(num_steps=6)
    test_util.check_grads(lambda p: rj.train.sequence_loss(CELL, p, xs, targets, mse), (params,), order=1)


def test_crbp_untruncated_equals_bptt(x64):
    params, xs, targets = problem()

    def all_three(p):  # BPTT, CRBP with h = t - 1, and with a deeper h (also untruncated)
        return (
            rj.train.bptt_grad(CELL, p, xs, targets, mse),
            local.crbp_grad(CELL, p, xs, targets, mse),
            local.crbp_grad(CELL, p, xs, targets, mse, depth=12),
        )

    (loss_b, bptt), (loss_c, crbp), (_, deeper) = jax.jit(all_three)(params)
    assert abs(float(loss_b - loss_c)) < 1e-10
    assert max_diff(bptt, crbp) < 1e-10
    assert max_diff(bptt, deeper) < 1e-10
    assert float(jnp.max(jnp.abs(bptt.layers[0].v))) > 1e-2  # not trivially zero


def test_truncated_crbp_is_close_but_not_equal(x64):
    params, xs, targets = problem()
    _, bptt = jax.jit(lambda p: rj.train.bptt_grad(CELL, p, xs, targets, mse))(params)
    scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(bptt))
    grads = jax.jit(lambda p: {h: local.crbp_grad(CELL, p, xs, targets, mse, depth=h)[1] for h in (0, 5)})(params)
    errors = [max_diff(bptt, grads[h]) for h in (0, 5)]
    assert errors[0] > errors[1] > 1e-6  # the truncation error shrinks with depth, never zero
    assert errors[1] < 0.2 * scale and errors[1] < 0.2 * errors[0]
    # the output layer's bias gradient is sum_t delta^L(t): exact at any depth
    np.testing.assert_allclose(grads[0].layers[-1].b, bptt.layers[-1].b, rtol=1e-10, atol=1e-12)


def test_back_tsoi_depth_zero_equals_its_definition(x64):
    # h = 0: hidden deltas use only the instantaneous weights g(0) = w_0 of the synapses above
    cell = local.IIRMLPCell((3, 2), ma_order=1, ar_order=1)
    params, xs, targets = problem(cell, num_steps=8)

    def truncated_loss(p):  # gradient with the layers above seeing the hidden output only through w_0
        inner = local.IIRMLPCell((3,), ma_order=1, ar_order=1)
        _, hidden = rj.unroll(inner, local.IIRMLPParams(p.layers[:1]), xs)
        top = local.IIRMLPCell((2,), ma_order=1, ar_order=1)
        _, ys = rj.unroll(top, local.IIRMLPParams(p.layers[1:]), jax.lax.stop_gradient(hidden))
        # instantaneous path: d ys_t / d hidden_t = f'(s_t) w_0 (linearised at the true trajectory)
        inst = jnp.einsum("ti,oi->to", hidden - jax.lax.stop_gradient(hidden), p.layers[1].w[..., 0])
        slope = 1 - jax.lax.stop_gradient(ys) ** 2
        return jnp.sum(jax.vmap(mse)(ys + slope * inst, targets))

    _, expected = jax.value_and_grad(truncated_loss)(params)
    _, got = local.crbp_grad(cell, params, xs, targets, mse, depth=0)
    assert max_diff(expected, got) < 1e-10


def test_online_crbp_step_sums_to_crbp_grad(x64):
    params, xs, targets = problem()
    h = 3
    state = local.crbp_init(CELL, params, h)
    step = jax.jit(functools.partial(local.crbp_step, CELL, depth=h, step_loss=mse))
    total = jax.tree_util.tree_map(jnp.zeros_like, params)
    losses, ys = [], []
    for x, target in zip(xs, targets, strict=True):
        state, loss, y, grads = step(params, state, x, target)
        total = jax.tree_util.tree_map(jnp.add, total, grads)
        losses.append(loss)
        ys.append(y)
    np.testing.assert_allclose(jnp.stack(ys), numpy_reference(params, xs), rtol=1e-12, atol=1e-12)
    loss, full = jax.jit(lambda p: local.crbp_grad(CELL, p, xs, targets, mse, depth=h))(params)
    assert abs(float(sum(losses)) - float(loss)) < 1e-10
    # on-line, the last (L - l) h steps of layer l are still pending; the output layer's terms are all in
    np.testing.assert_allclose(total.layers[-1].w, full.layers[-1].w, rtol=1e-10, atol=1e-12)
    assert max_diff(total.layers[0], full.layers[0]) > 1e-6


@pytest.mark.slow  # one more compile of CRBP and BPTT, batched
def test_crbp_under_vmap_equals_bptt_per_example(x64):
    params, _, _ = problem()
    xs = jnp.asarray(np.random.default_rng(7).standard_normal((2, 6, INPUT_SIZE)))
    targets = jnp.asarray(np.random.default_rng(8).standard_normal((2, 6, 2)))

    def both(xs, t):
        return local.crbp_grad(CELL, params, xs, t, mse)[1], rj.train.bptt_grad(CELL, params, xs, t, mse)[1]

    crbp, bptt = jax.jit(jax.vmap(both))(xs, targets)
    assert max_diff(crbp, bptt) < 1e-10
    assert max_diff(jax.tree_util.tree_map(lambda g: g[0], crbp), jax.tree_util.tree_map(lambda g: g[1], crbp)) > 1e-3


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(layer_sizes=()), "layer_sizes"),
        (dict(layer_sizes=4), "layer_sizes"),
        (dict(layer_sizes=(4, 0)), r"layer_sizes\[1\]"),
        (dict(layer_sizes=(4,), ma_order=-1), "ma_order"),
        (dict(layer_sizes=(4,), ar_order=1.5), "ar_order"),
        (dict(layer_sizes=(4,), activation="swish"), "activation"),
        (dict(layer_sizes=(4,), output_activation="nope"), "output_activation"),
        (dict(layer_sizes=(4,), ar_scale=1.0), "ar_scale"),
    ],
)
def test_bad_hyper_parameters_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        local.IIRMLPCell(**kwargs)


def test_bad_inputs_name_the_argument():
    params = problem(dtype=jnp.float32)[0]
    shapes_of = jax.eval_shape  # params of other cells, without running their initialisers
    with pytest.raises(ValueError, match="input_size"):
        CELL.init(jax.random.key(0), 0)
    with pytest.raises(ValueError, match="xs: expected last axis of size 3"):
        CELL.step(params, CELL.initial_carry(params), jnp.ones(4))
    with pytest.raises(TypeError, match="xs: expected a floating dtype"):
        CELL.step(params, CELL.initial_carry(params), jnp.ones(3, jnp.int32))
    with pytest.raises(TypeError, match="params: expected IIRMLPParams"):
        CELL.initial_carry(shapes_of(lambda: rj.ElmanCell(3).init(jax.random.key(0), 2)))
    two_layers = local.IIRMLPCell((4, 2), ma_order=2, ar_order=2)
    with pytest.raises(ValueError, match="params: expected 3 layers"):
        CELL.initial_carry(shapes_of(lambda: two_layers.init(jax.random.key(0), 3)))
    with pytest.raises(ValueError, match=r"params: layer 0 has shapes"):
        local.IIRMLPCell((4, 3, 2), ma_order=1, ar_order=2).initial_carry(params)
    xs, targets = jnp.ones((5, 3)), jnp.zeros((5, 2))
    with pytest.raises(ValueError, match="depth"):
        local.crbp_grad(CELL, params, xs, targets, mse, depth=-1)
    with pytest.raises(TypeError, match="cell: expected an IIRMLPCell"):
        local.crbp_grad(
            rj.ElmanCell(2), shapes_of(lambda: rj.ElmanCell(2).init(jax.random.key(0), 3)), xs, targets, mse
        )
    with pytest.raises(ValueError, match=r"xs: expected shape \[t, 3\]"):
        local.crbp_grad(CELL, params, jnp.ones((2, 5, 3)), targets, mse)
    with pytest.raises(ValueError, match="x: expected shape"):
        local.crbp_step(CELL, params, local.crbp_init(CELL, params, 1), jnp.ones((2, 3)), targets[0], mse, depth=1)
    with pytest.raises(ValueError, match="length"):
        local.impulse_response(params.layers[0], 0)
    with pytest.raises(ValueError, match="margin"):
        local.project_stable(params, margin=0.0)


# --- the guide page --------------------------------------------------------------------------------


@pytest.mark.slow  # compiles CRBP, BPTT and an on-line step: ~10 s
def test_guide_page_code_runs_and_its_claims_hold():
    ns = run_page("docs/guide/local-recurrence.md")
    assert ns["ys"].shape == (50, 1)
    assert ns["err"](ns["exact"]) < 1e-4  # float32 rounding only
    assert ns["err"](ns["truncated"]) > 100 * ns["err"](ns["exact"])
    v = ns["params"].layers[1].v
    assert float(jnp.max(jnp.sum(jnp.abs(v), -1))) <= 0.99 + 1e-6  # kept stable on-line
