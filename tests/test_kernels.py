"""rnnjax.kernels: the fused Pallas LSTM and GRU (interpret mode on the CPU) give unroll's values and gradients,
under vmap with one kernel call per batch, and lower to Triton kernels for a GPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax as rj
from conftest import assert_trees_close, equations

HIDDEN, FEATURES, T = 16, 3, 6
FUSED = {"lstm": rj.LSTMCell(HIDDEN), "gru": rj.GRUCell(HIDDEN)}
CELL = FUSED["lstm"]
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
    """A non-zero carry per sequence (for the LSTM, c = -h)."""
    h = jax.random.normal(jax.random.key(7), (batch, cell.hidden_size)) * 0.5
    return rj.LSTMCarry(h, -h) if isinstance(cell, rj.LSTMCell) else rj.HiddenCarry(h)


def unrolled(cell, params, xs, carry, lengths, **options):
    """vmap of unroll over (xs, carry, length): ``(carry, ys)``."""

    def one(x, c, n):
        return rj.unroll(cell, params, x, c, length=n, hoist=True, **options)

    return jax.vmap(one)(xs, carry, lengths)


def loss_of(cell, **options):
    """A scalar of every output and final carry, as a function of (params, xs, carry)."""

    def loss(params, xs, carry, lengths):
        final, ys = unrolled(cell, params, xs, carry, lengths, **options)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(final[0] * final[-1]) + jnp.sum(final[-1])

    return loss


# The default suite runs each cell forward in time on the per-sequence path (what unroll calls) at hidden 16,
# the LSTM at hidden 128 and its lowering for CUDA, the structural checks (kernel calls, fallbacks, precision)
# and the input checks; the slow suite (CI runs it too) the rest: reverse, batch 20, remat, masks with holes,
# vmap of grad, the batched functions, saturated gates, bfloat16 params, the GRU at hidden 128.

# 3: one program, padded; 20: two programs, the second padded. Lengths include an empty sequence.
BATCHES = {3: jnp.array([6, 4, 0]), 20: jnp.arange(20) % (T + 1)}


@pytest.mark.parametrize("name", sorted(FUSED))
@pytest.mark.parametrize("batch", [3, pytest.param(20, marks=pytest.mark.slow)])
@pytest.mark.parametrize("reverse", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["forward", "reverse"])
def test_unroll_with_the_kernel_equals_unroll_without(name, batch, reverse, monkeypatch):
    cell = FUSED[name]
    params, xs = params_and_inputs(batch, cell)
    args = (params, xs, carries(batch, cell), BATCHES[batch])
    expected = unrolled(cell, *args, reverse=reverse)
    expected_grads = jax.grad(loss_of(cell, reverse=reverse), argnums=(0, 1, 2))(*args)
    monkeypatch.setitem(rj.recurrence.FUSED_KERNEL, jax.default_backend(), True)
    assert_trees_close(unrolled(cell, *args, reverse=reverse), expected, **TOL)
    assert_trees_close(jax.grad(loss_of(cell, reverse=reverse), argnums=(0, 1, 2))(*args), expected_grads, **TOL)


@pytest.mark.parametrize("name", sorted(FUSED))
def test_the_table_on_runs_one_kernel_call_per_batch_each_way(name, fused_kernel):
    cell = FUSED[name]
    params, xs = params_and_inputs(3, cell)
    args = (params, xs, carries(3, cell), BATCHES[3])
    forward = jax.make_jaxpr(lambda *a: unrolled(cell, *a))(*args)
    assert len(equations(forward.jaxpr, "pallas_call")) == 1
    training = jax.make_jaxpr(jax.grad(loss_of(cell)))(*args)
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
        (rj.LSTMCell(HIDDEN, zoneout=0.3), {}),  # without a key: zoneout's expectation
        (rj.GRUCell(HIDDEN, reset_after=False), {}),
        (rj.GRUCell(HIDDEN, zoneout=0.1), {"key": jax.random.key(0)}),
        (rj.ElmanCell(HIDDEN), {}),
    ],
    ids=[
        "peephole",
        "projection",
        "hidden-24",
        "hidden-256",
        "bfloat16",
        "dropout",
        "masked-last",
        "zoneout-inference",
        "gru-reset-before",
        "gru-zoneout",
        "elman",
    ],
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


def batched_kernels(cell, params, us, carry, valid=None):
    """rj.kernels.lstm or rj.kernels.gru on a batch: ``(carry, ys)``, like ``unrolled``."""
    if isinstance(cell, rj.LSTMCell):
        ys, h, c = rj.kernels.lstm(params.w_h, us, carry.h, carry.c, valid)
        return rj.LSTMCarry(h, c), ys
    ys, h = rj.kernels.gru(params.w_h, params.b_h, us, carry.h, valid)
    return rj.HiddenCarry(h), ys


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FUSED))
def test_per_sequence_gradients_under_vmap_of_grad(name, monkeypatch):
    cell = FUSED[name]
    params, xs = params_and_inputs(3, cell)
    lengths = BATCHES[3]

    def loss(params, x, n):
        _, ys = rj.unroll(cell, params, x, length=n, hoist=True)
        return jnp.sum(ys**2)

    expected = [jax.grad(loss)(params, x, n) for x, n in zip(xs, lengths, strict=True)]
    monkeypatch.setitem(rj.recurrence.FUSED_KERNEL, jax.default_backend(), True)
    per_sequence = jax.vmap(jax.grad(loss), (None, 0, 0))(params, xs, lengths)
    assert_trees_close(per_sequence, jax.tree_util.tree_map(lambda *g: jnp.stack(g), *expected), **TOL)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FUSED))
@pytest.mark.parametrize("options", [{"remat": True}, {"mask": jnp.arange(T) % 3 != 1}], ids=["remat", "holes"])
def test_remat_and_masks_with_holes(name, options, monkeypatch):
    cell = FUSED[name]
    params, xs = params_and_inputs(3, cell)
    args = (params, xs, carries(3, cell), BATCHES[3])
    expected = jax.value_and_grad(loss_of(cell, **options))(*args)
    monkeypatch.setitem(rj.recurrence.FUSED_KERNEL, jax.default_backend(), True)
    assert_trees_close(jax.value_and_grad(loss_of(cell, **options))(*args), expected, **TOL)


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


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FUSED))
def test_the_batched_function_equals_the_per_sequence_one(name):
    """Batch 20: two programs of the kernel, each with its own block of sequences."""
    cell = FUSED[name]
    params, xs = params_and_inputs(20, cell)
    us = cell.project(params, xs)
    carry = carries(20, cell)
    valid = jnp.arange(T)[None, :] < BATCHES[20][:, None]
    batched = batched_kernels(cell, params, us, carry, valid)
    per_sequence = jax.vmap(lambda *a: rj.kernels.sequence(cell, params, *a))(us, carry, valid)
    assert_trees_close(batched, per_sequence, rtol=0, atol=0)
    single = rj.kernels.sequence(cell, params, us[0], jax.tree_util.tree_map(lambda a: a[0], carry), valid[0])
    assert_trees_close(single, jax.tree_util.tree_map(lambda a: a[0], batched), **TOL)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FUSED))
def test_the_batched_gradient_equals_autodiff_of_unroll(name):
    cell = FUSED[name]
    params, xs = params_and_inputs(3, cell)
    carry = carries(3, cell)
    lengths = BATCHES[3]

    def kernel_loss(params, xs, carry):
        valid = jnp.arange(T)[None, :] < lengths[:, None]
        final, ys = batched_kernels(cell, params, cell.project(params, xs), carry, valid)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(final[0] * final[-1]) + jnp.sum(final[-1])

    expected = jax.grad(loss_of(cell), argnums=(0, 1, 2))(params, xs, carry, lengths)
    assert_trees_close(jax.grad(kernel_loss, argnums=(0, 1, 2))(params, xs, carry), expected, **TOL)


def test_forward_mode_is_refused_clearly():
    params, xs = params_and_inputs(1)
    us = CELL.project(params, xs[0])
    zeros = jnp.zeros(HIDDEN)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda u: rj.kernels.lstm_sequence(params.w_h, u, zeros, zeros), (us,), (us,))


@pytest.mark.parametrize("name", ["lstm", pytest.param("gru", marks=pytest.mark.slow)])
@pytest.mark.parametrize("batch, hidden", [(32, 128), pytest.param(3, 16, marks=pytest.mark.slow)])
def test_lowers_to_triton_kernels_for_a_gpu(name, batch, hidden):
    """The accelerator path of the kernels, checked without a GPU: lowering for CUDA builds the Triton
    kernels (block shapes, every primitive supported); only compiling them needs the GPU. One kernel for
    the forward pass, two for a gradient."""
    cell = type(FUSED[name])(hidden)
    params = cell.init(jax.random.key(0), FEATURES)
    xs = jnp.ones((batch, T, FEATURES))

    def loss(params, xs):
        def one(x):
            us = cell.project(params, x)
            if name == "lstm":
                zeros = jnp.zeros(hidden)
                return rj.kernels.lstm_sequence(params.w_h, us, zeros, zeros, interpret=False)[0]
            return rj.kernels.gru_sequence(params.w_h, params.b_h, us, jnp.zeros(hidden), interpret=False)[0]

        return jnp.sum(jax.vmap(one)(xs) ** 2)

    def triton_calls(fn):
        try:
            text = jax.jit(fn).trace(params, xs).lower(lowering_platforms=("cuda",)).as_text()
        except RuntimeError as error:  # jax >= 0.11 lowers for CUDA only where it has a GPU
            if "No supported GPU" in str(error):
                pytest.skip(f"this jax cannot lower for CUDA without a GPU: {error}")
            raise
        return text.count("__gpu$xla.gpu.triton")

    assert triton_calls(loss) == 1
    assert triton_calls(jax.grad(loss)) == 2


LSTM_ARGS = {"w_h": (HIDDEN, 4 * HIDDEN), "us": (T, 4 * HIDDEN), "h0": (HIDDEN,), "c0": (HIDDEN,)}
GRU_ARGS = {"w_h": (HIDDEN, 3 * HIDDEN), "b_h": (3 * HIDDEN,), "us": (T, 3 * HIDDEN), "h0": (HIDDEN,)}


@pytest.mark.parametrize(
    "function, change, error, match",
    [
        ("lstm", {"w_h": jnp.zeros((HIDDEN, HIDDEN))}, ValueError, r"w_h: expected \[h, 4h\]"),
        ("lstm", {"us": jnp.zeros((T, 3 * HIDDEN))}, ValueError, "us: expected"),
        ("lstm", {"h0": jnp.zeros(HIDDEN + 1)}, ValueError, "h0: expected shape"),
        ("lstm", {"c0": jnp.zeros((2, HIDDEN))}, ValueError, "c0: expected shape"),
        ("lstm", {"valid": jnp.ones(T + 1, bool)}, ValueError, "valid: expected shape"),
        ("lstm", {"us": jnp.zeros((T, 4 * HIDDEN), jnp.bfloat16)}, TypeError, "us: expected float32"),
        ("lstm", {"interpret": 1}, TypeError, "interpret: expected True, False or None"),
        ("gru", {"w_h": jnp.zeros((HIDDEN, 4 * HIDDEN))}, ValueError, r"w_h: expected \[h, 3h\]"),
        ("gru", {"b_h": jnp.zeros(HIDDEN)}, ValueError, "b_h: expected shape"),
        ("gru", {"b_h": jnp.zeros(3 * HIDDEN, jnp.float16)}, TypeError, "b_h: expected float32"),
    ],
    ids=["w_h", "us", "h0", "c0", "valid", "dtype", "interpret", "gru-w_h", "gru-b_h", "gru-b_h-dtype"],
)
def test_bad_input_names_the_argument(function, change, error, match):
    shapes = LSTM_ARGS if function == "lstm" else GRU_ARGS
    args = {name: jnp.zeros(shape) for name, shape in shapes.items()} | change
    with pytest.raises(error, match=match):
        getattr(rj.kernels, f"{function}_sequence")(**args)


def test_sequence_refuses_a_cell_the_kernels_do_not_run():
    cell = rj.GRUCell(HIDDEN, reset_after=False)
    params = cell.init(jax.random.key(0), FEATURES)
    us = cell.project(params, jnp.ones((T, FEATURES)))
    with pytest.raises(ValueError, match="cell: the fused kernels do not run"):
        rj.kernels.sequence(cell, params, us, cell.initial_carry(params))


def test_supports_says_which_cells_run():
    supports = rj.kernels.supports
    for cell_type in (rj.LSTMCell, rj.GRUCell):
        assert supports(cell_type(HIDDEN), jnp.float32)
        assert supports(cell_type(rj.kernels.MAX_HIDDEN), jnp.float32)
        assert supports(cell_type(HIDDEN, dropout=0.5, recurrent_dropout=0.5), jnp.float32)  # off without a key
        assert not supports(cell_type(2 * rj.kernels.MAX_HIDDEN), jnp.float32)
        assert not supports(cell_type(8), jnp.float32)
        assert not supports(cell_type(48), jnp.float32)
        assert not supports(cell_type(HIDDEN), jnp.bfloat16)
        assert not supports(cell_type(HIDDEN, zoneout=0.1), jnp.float32)
    assert not supports(rj.GRUCell(HIDDEN, reset_after=False), jnp.float32)
    assert not supports(rj.LayerNormLSTMCell(HIDDEN), jnp.float32)
    assert not supports(rj.ElmanCell(HIDDEN), jnp.float32)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FUSED))
def test_saturated_gates(name):
    """Input weights scaled by 1e4 drive every gate to 0 or 1: the kernels' values and gradients are still the
    scan's."""
    cell = FUSED[name]
    params, xs = params_and_inputs(3, cell)
    params = params._replace(w_i=params.w_i * 1e4, b=params.b * 1e4)
    carry = carries(3, cell)
    lengths = jnp.full(3, T)

    def through_kernels(params, xs, carry, lengths):
        final, ys = batched_kernels(cell, params, cell.project(params, xs), carry)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(final[0] * final[-1]) + jnp.sum(final[-1])

    args = (params, xs, carry, lengths)
    got = jax.value_and_grad(through_kernels, argnums=(1, 2))(*args)
    assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree_util.tree_leaves(got))
    assert_trees_close(got, jax.value_and_grad(loss_of(cell), argnums=(1, 2))(*args), **TOL)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FUSED))
def test_params_stored_in_bfloat16_computing_in_float32(name, fused_kernel):
    """The kernels take float32 weights: unroll casts bfloat16 params once, as the cell's matmuls cast them, and
    the gradients are the float32 params' rounded to bfloat16 (within one bfloat16 ulp, 2**-7 relative, where
    float32 rounding puts a value on the other side of a rounding boundary). The scan accumulates the
    recurrent weight's gradient in bfloat16, step by step, so it is compared with float32 params here."""
    cell = type(FUSED[name])(HIDDEN, param_dtype=jnp.bfloat16, dtype=jnp.float32)
    params, xs = params_and_inputs(3, cell)
    args = (xs, carries(3, cell), BATCHES[3])
    assert equations(jax.make_jaxpr(loss_of(cell))(params, *args).jaxpr, "pallas_call")
    loss, grads = jax.value_and_grad(loss_of(cell))(params, *args)
    float32_cell = type(FUSED[name])(HIDDEN, dtype=jnp.float32)
    expected_loss, expected = jax.value_and_grad(loss_of(float32_cell))(as_float32(params), *args)
    np.testing.assert_allclose(loss, expected_loss, **TOL)
    assert jax.tree_util.tree_map(lambda a: a.dtype, grads) == jax.tree_util.tree_map(lambda a: a.dtype, params)
    rounded = jax.tree_util.tree_map(lambda g: g.astype(jnp.bfloat16), expected)
    assert_trees_close(grads, rounded, rtol=2**-7, atol=0)


def as_float32(tree):
    return jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), tree)


def test_no_sequences_and_no_steps(fused_kernel):
    """vmap over zero sequences, and zero steps: shapes as the scan's, the carry passed through."""
    params, xs = params_and_inputs(0)
    final, ys = unrolled(CELL, params, xs, carries(0), jnp.zeros(0, int))
    assert ys.shape == (0, T, HIDDEN) and final.h.shape == (0, HIDDEN)
    grads = jax.grad(loss_of(CELL))(params, xs, carries(0), jnp.zeros(0, int))
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree_util.tree_leaves(grads))
    carry = carries(2)
    us = jnp.zeros((2, 0, 4 * HIDDEN))
    ys, h, c = rj.kernels.lstm(params.w_h, us, carry.h, carry.c)
    assert ys.shape == (2, 0, HIDDEN)
    assert_trees_close((h, c), (carry.h, carry.c), rtol=0, atol=0)
    d_h0 = jax.grad(lambda h0: jnp.sum(rj.kernels.lstm(params.w_h, us, h0, carry.c)[1] * 3.0))(carry.h)
    assert_trees_close(d_h0, jnp.full_like(carry.h, 3.0), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(FUSED))
@pytest.mark.parametrize("precision", ["default", "highest"])
def test_the_kernels_use_the_cells_precision(name, precision):
    """Every matmul inside the kernels has the cell's precision (TF32 at "default" on a recent NVIDIA GPU)."""
    cell = type(FUSED[name])(HIDDEN, precision=precision)
    params, xs = params_and_inputs(3, cell)
    args = (params, xs, carries(3, cell), BATCHES[3])
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(rj.recurrence.FUSED_KERNEL, jax.default_backend(), True)
        jaxpr = jax.make_jaxpr(jax.grad(loss_of(cell)))(*args).jaxpr
    inside = [eqn for call in equations(jaxpr, "pallas_call") for eqn in equations(call.params["jaxpr"], "dot_general")]
    assert len(inside) == 2 * FUSED[name].num_gates
    assert {eqn.params["precision"] for eqn in inside} == {(jax.lax.Precision(precision),) * 2}


@pytest.mark.parametrize("name", ["lstm", pytest.param("gru", marks=pytest.mark.slow)])
def test_hidden_128_the_benchmarks_size(name, monkeypatch):
    """The kernels at the size they are for (benchmarks/gpu.py's S; two programs), compiled on a GPU."""
    cell = type(FUSED[name])(128)
    params, xs = params_and_inputs(20, cell)
    args = (params, xs, carries(20, cell), BATCHES[20])
    expected = jax.value_and_grad(loss_of(cell))(*args)
    monkeypatch.setitem(rj.recurrence.FUSED_KERNEL, jax.default_backend(), True)
    assert_trees_close(jax.value_and_grad(loss_of(cell))(*args), expected, **TOL)
