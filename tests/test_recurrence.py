"""unroll: Python-loop reference, vmap, reverse, length, remat, parallel scan, dtypes, retracing."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

import rnnjax as rj
from conftest import BOTH_PATHS_HOISTED_SLOW, CELLS, INPUT_SIZE, as_float64, assert_trees_close, random_params

T = 9


def loop_unroll(cell, params, xs, carry, length=None, reverse=False):
    """The specification, in plain Python: step over the valid steps, zeros elsewhere."""
    n = len(xs) if length is None else length
    ys = [None] * len(xs)
    for t in reversed(range(n)) if reverse else range(n):
        carry, ys[t] = cell.step(params, carry, xs[t])
    zero = jnp.zeros_like(cell.step(params, carry, xs[0])[1])
    return carry, jnp.stack([zero if y is None else y for y in ys])


def inputs(seed=0, num_steps=T):
    return jax.random.normal(jax.random.key(seed), (num_steps, INPUT_SIZE))


def nonzero_carry(cell, params):
    return jax.tree_util.tree_map(lambda c: c + 0.25, cell.initial_carry(params))


@functools.partial(jax.jit, static_argnames=("cell", "reverse", "remat", "parallel", "unroll", "hoist"))
def jit_unroll(cell, params, xs, carry, length=None, reverse=False, remat=False, parallel=False, unroll=1, hoist=False):
    return rj.unroll(
        cell,
        params,
        xs,
        carry,
        length=length,
        reverse=reverse,
        remat=remat,
        parallel=parallel,
        unroll=unroll,
        hoist=hoist,
    )


@pytest.mark.parametrize("length, reverse", [(None, False), (None, True), (5, False), (5, True), (0, True)])
def test_unroll_equals_python_loop(cell, length, reverse, hoist):
    params, xs = random_params(cell), inputs()
    carry = nonzero_carry(cell, params)
    want = loop_unroll(cell, params, xs, carry, length, reverse)
    got = jit_unroll(cell, params, xs, carry, length=length, reverse=reverse, hoist=hoist)
    assert_trees_close(got, want, rtol=2e-5, atol=2e-6)


def test_reverse_is_flip_unroll_flip(cell):
    params, xs = random_params(cell), inputs(1)
    carry_r, ys_r = jit_unroll(cell, params, xs, None, reverse=True)
    carry_f, ys_f = jit_unroll(cell, params, xs[::-1], None)
    assert_trees_close((carry_r, ys_r), (carry_f, ys_f[::-1]), rtol=1e-6, atol=1e-6)


def test_length_freezes_carry_and_zeroes_outputs(cell, hoist):
    params, xs = random_params(cell), inputs(2)
    carry, ys = jit_unroll(cell, params, xs, None, length=4, hoist=hoist)
    carry_prefix, ys_prefix = jit_unroll(cell, params, xs[:4], None, hoist=hoist)
    assert_trees_close(carry, carry_prefix, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ys[:4], ys_prefix, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ys[4:], 0.0)
    # reversed with a length: only the valid prefix is reversed
    carry_rev, ys_rev = jit_unroll(cell, params, xs, None, length=4, reverse=True, hoist=hoist)
    carry_rev_prefix, ys_rev_prefix = jit_unroll(cell, params, xs[:4], None, reverse=True, hoist=hoist)
    assert_trees_close((carry_rev, ys_rev[:4]), (carry_rev_prefix, ys_rev_prefix), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ys_rev[4:], 0.0)


def test_vmap_equals_per_example_loop(cell, hoist):
    params = random_params(cell)
    xs = jax.random.normal(jax.random.key(3), (4, T, INPUT_SIZE))
    lengths = jnp.array([T, 3, 0, 7])
    batched = jax.jit(jax.vmap(lambda x, n: rj.unroll(cell, params, x, length=n, hoist=hoist)))(xs, lengths)
    for i in range(4):
        single = jit_unroll(cell, params, xs[i], None, length=lengths[i], hoist=hoist)
        assert_trees_close(jax.tree_util.tree_map(lambda a, i=i: a[i], batched), single, rtol=1e-5, atol=1e-6)


@BOTH_PATHS_HOISTED_SLOW
def test_unroll_factor_and_remat_give_the_same_result(cell, hoist):
    params, xs = random_params(cell), inputs(4, num_steps=11)  # 11 is not a square: remat pads
    want = jit_unroll(cell, params, xs, None, length=8, reverse=True, hoist=False)
    for options in ({"unroll": 3}, {"remat": True}, {"remat": True, "unroll": 8}):
        got = jit_unroll(cell, params, xs, None, length=8, reverse=True, hoist=hoist, **options)
        assert_trees_close(got, want, rtol=1e-6, atol=1e-6)


def test_backend_defaults_choose_a_path_and_a_factor(request):
    """hoist=None and unroll=None take the backend's measured choice (here the CPU's) and give the same result."""
    if request.config.getoption("--accelerator-defaults"):
        pytest.skip("--accelerator-defaults replaces this backend's defaults with the GPU's")
    assert rj.recurrence.default_hoist() == (jax.default_backend() != "cpu")
    assert rj.recurrence.default_hoist("gpu") and rj.recurrence.default_hoist("tpu")
    assert rj.recurrence.default_unroll(1000, "cpu") == 1
    assert rj.recurrence.default_unroll(1000, "gpu") == rj.recurrence.UNROLL_FACTORS["gpu"] > 1
    assert rj.recurrence.default_unroll(5, "gpu") == 5  # capped at t
    cell = CELLS["lstm"]
    params, xs = random_params(cell), inputs(9)
    want = jit_unroll(cell, params, xs, None, length=6)
    assert_trees_close(rj.unroll(cell, params, xs, length=6), want, rtol=1e-6, atol=1e-6)
    with pytest.raises(TypeError, match="hoist"):
        rj.unroll(cell, params, xs, hoist="yes")


@BOTH_PATHS_HOISTED_SLOW
@pytest.mark.parametrize("name", ["lstm", "gru", "elman"])
def test_remat_gradients_equal_plain_bptt(name, hoist):
    cell = CELLS[name]
    params, xs = random_params(cell), inputs(5, num_steps=20)

    def loss(p, remat):
        return jnp.sum(jnp.sin(rj.unroll(cell, p, xs, length=17, remat=remat, hoist=hoist)[1]))

    grads = jax.jit(jax.grad(loss), static_argnums=1)
    assert_trees_close(grads(params, True), grads(params, False), rtol=1e-5, atol=1e-6)


@BOTH_PATHS_HOISTED_SLOW
@pytest.mark.parametrize("name", ["elman", "lstm", "gru_cho", "stacked", "mingru"])
def test_unroll_gradients_float64(name, hoist, x64):
    cell = CELLS[name]
    params = as_float64(random_params(cell))
    xs = inputs(6, num_steps=6).astype(jnp.float64)

    @jax.jit
    def f(p, xs):
        return rj.unroll(cell, p, xs, length=5, reverse=True, hoist=hoist)[1]

    test_util.check_grads(f, (params, xs), order=1, modes=("rev",))


def test_empty_sequence(cell):
    params = random_params(cell)
    carry, ys = rj.unroll(cell, params, jnp.zeros((0, INPUT_SIZE)))
    assert ys.shape == (0, cell.output_size)
    assert_trees_close(carry, cell.initial_carry(params), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["mingru", "minlstm"])
@pytest.mark.parametrize("num_steps", [1, 7, *(pytest.param(t, marks=pytest.mark.slow) for t in (256, 4096))])
def test_parallel_scan_equals_sequential(name, num_steps, x64):
    """The associative scan and lax.scan agree; the largest error is stated in the assertion."""
    cell = CELLS[name]
    params = random_params(cell)
    xs = jax.random.normal(jax.random.key(7), (num_steps, INPUT_SIZE))
    carry = nonzero_carry(cell, params)
    length = max(1, num_steps - 3)
    for reverse in (False, True):
        seq = jit_unroll(cell, params, xs, carry, length=length, reverse=reverse)
        par = jit_unroll(cell, params, xs, carry, length=length, reverse=reverse, parallel=True)
        err = float(jnp.max(jnp.abs(seq[1] - par[1])))
        assert err < 1e-5, f"float32 max |parallel - sequential| = {err:.2e} at t={num_steps}"
        assert_trees_close(par[0], seq[0], rtol=1e-5, atol=1e-5)

    def loss(p, parallel):
        return jnp.mean(jnp.tanh(rj.unroll(cell, p, xs, carry, length=length, parallel=parallel)[1]))

    grads = jax.jit(jax.grad(loss), static_argnums=1)
    g_seq, g_par = grads(params, False), grads(params, True)
    for a, b in zip(jax.tree_util.tree_leaves(g_seq), jax.tree_util.tree_leaves(g_par), strict=True):
        rel = float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-12))
        assert rel < 1e-4, f"gradient relative error {rel:.2e} at t={num_steps}"


def test_parallel_scan_float64_is_exact_to_rounding(x64):
    cell = rj.MinGRUCell(5, param_dtype=jnp.float64)
    params = as_float64(random_params(CELLS["mingru"]))
    xs = jax.random.normal(jax.random.key(8), (4096, INPUT_SIZE), jnp.float64)
    seq = jit_unroll(cell, params, xs, None)[1]
    par = jit_unroll(cell, params, xs, None, parallel=True)[1]
    np.testing.assert_allclose(par, seq, rtol=0, atol=1e-12)


def test_dtypes_flow_through_unroll(x64):
    cell = rj.LSTMCell(4)
    params32 = random_params(cell)
    # bfloat16 inputs, float32 params: computes (and carries) in float32
    carry, ys = rj.unroll(cell, params32, inputs().astype(jnp.bfloat16))
    assert ys.dtype == jnp.float32 and carry.h.dtype == jnp.float32
    # float64 inputs promote float32 params; a float32 initial carry is cast, no scan mismatch
    carry, ys = rj.unroll(cell, params32, inputs().astype(jnp.float64), cell.initial_carry(params32))
    assert ys.dtype == jnp.float64 and carry.c.dtype == jnp.float64
    params64 = as_float64(params32)
    assert rj.unroll(cell, params64, inputs())[1].dtype == jnp.float64


def test_no_retrace_on_second_call():
    traces = []
    cell = rj.GRUCell(4)

    @jax.jit
    def f(params, xs, n):
        traces.append(1)
        return rj.unroll(cell, params, xs, length=n)[1]

    params = random_params(cell)
    f(params, inputs(), 3)
    other = jax.tree_util.tree_map(lambda p: p * 2, params)
    f(other, inputs(1), 5)  # new params, new data, new length: same shapes
    assert len(traces) == 1


def _temp_bytes(cell, params, num_steps, remat):
    xs = jnp.zeros((num_steps, INPUT_SIZE))
    grad = jax.jit(jax.grad(lambda p: jnp.sum(rj.unroll(cell, p, xs, remat=remat)[1])))
    return grad.lower(params).compile().memory_analysis().temp_size_in_bytes


def test_remat_memory_grows_sublinearly():
    cell = rj.LSTMCell(64)
    params = cell.init(jax.random.key(0), INPUT_SIZE)
    plain = [_temp_bytes(cell, params, n, False) for n in (1000, 4000)]
    remat = [_temp_bytes(cell, params, n, True) for n in (1000, 4000)]
    assert remat[0] < 0.5 * plain[0], (remat, plain)
    # 3,000 more steps: plain BPTT keeps every step's activations (3-6 KB a step here), the checkpointed
    # scan the outputs and their cotangents (about 300-400 bytes a step) and sqrt(t) carries; measured
    # 0.10 of plain's growth at the CPU's defaults, 0.07 at the GPU's (hoisted, unroll 32)
    assert remat[1] - remat[0] < 0.25 * (plain[1] - plain[0]), (remat, plain)
