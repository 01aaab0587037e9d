"""rnnjax.kernels: the fused Pallas LSTM (interpret mode on the CPU) gives unroll's values and gradients, under
vmap one kernel call per batch, and lowers to Triton kernels for a GPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax as rj
from conftest import assert_trees_close, equations

HIDDEN, FEATURES, T = 16, 3, 6
CELL = rj.LSTMCell(HIDDEN)
# float32 on both sides, full-precision matmuls (the suite's policy): only the order of the sums differs
TOL = {"rtol": 2e-5, "atol": 2e-6}


@pytest.fixture
def fused_kernel(monkeypatch):
    """unroll's hoisted path with the fused kernel on this backend."""
    monkeypatch.setitem(rj.recurrence.FUSED_KERNEL, jax.default_backend(), True)


def params_and_inputs(batch, cell=CELL, seed=0):
    params = cell.init(jax.random.key(seed), FEATURES)
    xs = jax.random.normal(jax.random.key(seed + 1), (batch, T, FEATURES))
    return params, xs


def carries(batch, cell=CELL):
    """A non-zero carry per sequence."""
    h = jax.random.normal(jax.random.key(7), (batch, cell.hidden_size)) * 0.5
    return rj.LSTMCarry(h, -h)


def unrolled(cell, params, xs, carry, lengths, **options):
    """vmap of unroll over (xs, carry, length): ``(carry, ys)``."""

    def one(x, c, n):
        return rj.unroll(cell, params, x, c, length=n, hoist=True, **options)

    return jax.vmap(one)(xs, carry, lengths)


def loss_of(cell, **options):
    """A scalar of every output and final carry, as a function of (params, xs, carry)."""

    def loss(params, xs, carry, lengths):
        final, ys = unrolled(cell, params, xs, carry, lengths, **options)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(final.h * final.c) + jnp.sum(final.c)

    return loss


# 3: one program, padded; 20: two programs, the second padded. Lengths include an empty sequence.
BATCHES = {3: jnp.array([6, 4, 0]), 20: jnp.arange(20) % (T + 1)}


@pytest.mark.parametrize("batch", [3, pytest.param(20, marks=pytest.mark.slow)])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_unroll_with_the_kernel_equals_unroll_without(batch, reverse, monkeypatch):
    params, xs = params_and_inputs(batch)
    args = (params, xs, carries(batch), BATCHES[batch])
    expected = unrolled(CELL, *args, reverse=reverse)
    expected_grads = jax.grad(loss_of(CELL, reverse=reverse), argnums=(0, 1, 2))(*args)
    monkeypatch.setitem(rj.recurrence.FUSED_KERNEL, jax.default_backend(), True)
    assert_trees_close(unrolled(CELL, *args, reverse=reverse), expected, **TOL)
    assert_trees_close(jax.grad(loss_of(CELL, reverse=reverse), argnums=(0, 1, 2))(*args), expected_grads, **TOL)


def test_the_table_on_runs_one_kernel_call_per_batch_each_way(fused_kernel):
    params, xs = params_and_inputs(3)
    args = (params, xs, carries(3), BATCHES[3])
    forward = jax.make_jaxpr(lambda *a: unrolled(CELL, *a))(*args)
    assert len(equations(forward.jaxpr, "pallas_call")) == 1
    training = jax.make_jaxpr(jax.grad(loss_of(CELL)))(*args)
    assert len(equations(training.jaxpr, "pallas_call")) == 2


@pytest.mark.parametrize(
    "cell, options",
    [
        (rj.LSTMCell(HIDDEN, peephole=True), {}),
        (rj.LSTMCell(HIDDEN, proj_size=8), {}),
        (rj.LSTMCell(24), {}),  # not a power of two
        (rj.LSTMCell(256), {}),  # above MAX_HIDDEN
        (rj.LSTMCell(HIDDEN, dtype=jnp.bfloat16), {}),
        (rj.LSTMCell(HIDDEN, dropout=0.5), {"key": jax.random.key(0)}),
        (CELL, {"masked_output": "last", "length": 3}),
        (rj.GRUCell(HIDDEN), {}),
    ],
    ids=["peephole", "projection", "hidden-24", "hidden-256", "bfloat16", "dropout", "masked-last", "gru"],
)
def test_what_the_kernel_does_not_run_keeps_the_scan(cell, options, fused_kernel):
    params, xs = params_and_inputs(1, cell)
    jaxpr = jax.make_jaxpr(lambda p, x: rj.unroll(cell, p, x, hoist=True, **options))(params, xs[0])
    assert not equations(jaxpr.jaxpr, "pallas_call")
    assert equations(jaxpr.jaxpr, "scan")


def test_the_in_loop_path_is_not_changed(fused_kernel):
    params, xs = params_and_inputs(1)
    jaxpr = jax.make_jaxpr(lambda p, x: rj.unroll(CELL, p, x, hoist=False))(params, xs[0])
    assert not equations(jaxpr.jaxpr, "pallas_call")


@pytest.mark.slow
def test_per_sequence_gradients_under_vmap_of_grad(monkeypatch):
    params, xs = params_and_inputs(3)
    lengths = BATCHES[3]

    def loss(params, x, n):
        _, ys = rj.unroll(CELL, params, x, length=n, hoist=True)
        return jnp.sum(ys**2)

    expected = [jax.grad(loss)(params, x, n) for x, n in zip(xs, lengths, strict=True)]
    monkeypatch.setitem(rj.recurrence.FUSED_KERNEL, jax.default_backend(), True)
    per_sequence = jax.vmap(jax.grad(loss), (None, 0, 0))(params, xs, lengths)
    assert_trees_close(per_sequence, jax.tree_util.tree_map(lambda *g: jnp.stack(g), *expected), **TOL)


@pytest.mark.slow
@pytest.mark.parametrize("options", [{"remat": True}, {"mask": jnp.arange(T) % 3 != 1}], ids=["remat", "holes"])
def test_remat_and_masks_with_holes(options, monkeypatch):
    params, xs = params_and_inputs(3)
    args = (params, xs, carries(3), BATCHES[3])
    expected = jax.value_and_grad(loss_of(CELL, **options))(*args)
    monkeypatch.setitem(rj.recurrence.FUSED_KERNEL, jax.default_backend(), True)
    assert_trees_close(jax.value_and_grad(loss_of(CELL, **options))(*args), expected, **TOL)


@pytest.mark.slow
def test_params_batched_under_vmap_run_each_sequence_alone(monkeypatch):
    """vmap over params (an ensemble): the kernel cannot share w_h, and each member runs alone."""
    keys = jax.random.split(jax.random.key(0), 2)
    ensemble = jax.vmap(lambda k: CELL.init(k, FEATURES))(keys)
    xs = params_and_inputs(2)[1]

    def run(params, x):
        return rj.unroll(CELL, params, x, hoist=True)[1]

    expected = jax.vmap(run)(ensemble, xs)
    monkeypatch.setitem(rj.recurrence.FUSED_KERNEL, jax.default_backend(), True)
    assert_trees_close(jax.vmap(run)(ensemble, xs), expected, **TOL)


def test_the_batched_function_equals_the_per_sequence_one():
    params, xs = params_and_inputs(3)
    us = CELL.project(params, xs)
    carry = carries(3)
    valid = jnp.arange(T)[None, :] < BATCHES[3][:, None]
    batched = rj.kernels.lstm(params.w_h, us, carry.h, carry.c, valid)
    per_sequence = jax.vmap(lambda u, h, c, v: rj.kernels.lstm_sequence(params.w_h, u, h, c, v))(
        us, carry.h, carry.c, valid
    )
    assert_trees_close(batched, per_sequence, rtol=0, atol=0)
    single = rj.kernels.lstm_sequence(params.w_h, us[0], carry.h[0], carry.c[0], valid[0])
    assert_trees_close(single, jax.tree_util.tree_map(lambda a: a[0], batched), **TOL)


def test_the_batched_gradient_equals_autodiff_of_unroll():
    params, xs = params_and_inputs(3)
    carry = carries(3)
    lengths = BATCHES[3]

    def kernel_loss(params, xs, carry):
        valid = jnp.arange(T)[None, :] < lengths[:, None]
        ys, h, c = rj.kernels.lstm(params.w_h, CELL.project(params, xs), carry.h, carry.c, valid)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(h * c) + jnp.sum(c)

    expected = jax.grad(loss_of(CELL), argnums=(0, 1, 2))(params, xs, carry, lengths)
    assert_trees_close(jax.grad(kernel_loss, argnums=(0, 1, 2))(params, xs, carry), expected, **TOL)


def test_forward_mode_is_refused_clearly():
    params, xs = params_and_inputs(1)
    us = CELL.project(params, xs[0])
    zeros = jnp.zeros(HIDDEN)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda u: rj.kernels.lstm_sequence(params.w_h, u, zeros, zeros), (us,), (us,))


@pytest.mark.parametrize("batch, hidden", [(32, 128), (3, 16)])
def test_lowers_to_triton_kernels_for_a_gpu(batch, hidden):
    """The accelerator path of the kernels, checked without a GPU: lowering for CUDA builds the Triton
    kernels (block shapes, every primitive supported); only compiling them needs the GPU. One kernel for
    the forward pass, two for a gradient."""
    cell = rj.LSTMCell(hidden)
    params = cell.init(jax.random.key(0), FEATURES)
    xs = jnp.ones((batch, T, FEATURES))

    def loss(params, xs):
        def one(x):
            zeros = jnp.zeros(hidden)
            return rj.kernels.lstm_sequence(params.w_h, cell.project(params, x), zeros, zeros, interpret=False)[0]

        return jnp.sum(jax.vmap(one)(xs) ** 2)

    def triton_calls(fn):
        text = jax.jit(fn).trace(params, xs).lower(lowering_platforms=("cuda",)).as_text()
        return text.count("__gpu$xla.gpu.triton")

    assert triton_calls(loss) == 1
    assert triton_calls(jax.grad(loss)) == 2


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"w_h": jnp.zeros((HIDDEN, HIDDEN))}, ValueError, r"w_h: expected \[h, 4h\]"),
        ({"us": jnp.zeros((T, 3 * HIDDEN))}, ValueError, "us: expected"),
        ({"h0": jnp.zeros(HIDDEN + 1)}, ValueError, "h0: expected shape"),
        ({"valid": jnp.ones(T + 1, bool)}, ValueError, "valid: expected shape"),
        ({"us": jnp.zeros((T, 4 * HIDDEN), jnp.bfloat16)}, TypeError, "us: expected float32"),
        ({"interpret": 1}, TypeError, "interpret: expected True, False or None"),
    ],
    ids=["w_h", "us", "h0", "valid", "dtype", "interpret"],
)
def test_bad_input_names_the_argument(change, error, match):
    args = {
        "w_h": jnp.zeros((HIDDEN, 4 * HIDDEN)),
        "us": jnp.zeros((T, 4 * HIDDEN)),
        "h0": jnp.zeros(HIDDEN),
        "c0": jnp.zeros(HIDDEN),
    } | change
    with pytest.raises(error, match=match):
        rj.kernels.lstm_sequence(**args)


def test_supports_says_which_cells_run():
    supports = rj.kernels.supports
    assert supports(CELL, jnp.float32, HIDDEN)
    assert supports(CELL, jnp.float32, rj.kernels.MAX_HIDDEN)
    assert not supports(CELL, jnp.float32, 2 * rj.kernels.MAX_HIDDEN)
    assert not supports(CELL, jnp.float32, 8)
    assert not supports(CELL, jnp.bfloat16, HIDDEN)
    assert not supports(rj.GRUCell(HIDDEN), jnp.float32, HIDDEN)


def test_the_gradient_is_finite_at_saturated_gates():
    """Large inputs drive every gate to 0 or 1: the backward kernel's products stay finite."""
    params, xs = params_and_inputs(3)
    us = CELL.project(params, xs) * 1e4
    zeros = jnp.zeros((3, HIDDEN))
    grads = jax.grad(lambda u: jnp.sum(rj.kernels.lstm(params.w_h, u, zeros, zeros)[0]))(us)
    assert np.isfinite(np.asarray(grads)).all()
