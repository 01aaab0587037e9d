"""Cells: parameter counts, shapes and dtypes, gradients, a NumPy reference, and the params checks."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import test_util

import rnnjax as rj
from conftest import CELLS, INPUT_SIZE, as_float64, random_params, randomize


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
    params = as_float64(params)
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


# --- params that do not match their cell are named ---------------------------------

CELL_NAMES = sorted(name for name in CELLS if name != "stacked")  # every cell of rnnjax/cells.py


def _leaves_with_names(params):
    """``(name, leaf)`` for every array of ``params``: ``("params.layers[0].b", array)``."""
    return [
        ("params" + jax.tree_util.keystr(path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
    ]


def _replaced(params, name, value):
    leaves = [value if n == name else leaf for n, leaf in _leaves_with_names(params)]
    return jax.tree_util.tree_structure(params).unflatten(leaves)


def _with(cell, **changes):
    return type(cell)(**{**vars(cell), **changes})


def _zero_params(cell, input_size=INPUT_SIZE):
    """NumPy zeros shaped like ``cell.init``'s params: nothing to compile, for checks that raise before any math."""
    shapes = jax.eval_shape(lambda: cell.init(jax.random.key(0), input_size))
    return jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_a_param_that_would_broadcast_is_named(name):
    # the user passes a bias of shape (1,) (or any param whose axes are all 1): it used to broadcast silently
    cell = CELLS[name]
    params, xs = _zero_params(cell), jnp.ones((4, INPUT_SIZE))
    for field, leaf in _leaves_with_names(params):
        bad = jnp.zeros((1,) * leaf.ndim, leaf.dtype)
        message = re.escape(f"{field}: expected shape ") + r"\(.*\) for .*" + re.escape(f", got {bad.shape}")
        with pytest.raises(ValueError, match=message):
            rj.unroll(cell, _replaced(params, field, bad), xs)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_a_weight_of_the_wrong_shape_is_named_not_a_dot_general_error(name):
    # the user passes a w_h (or any param) with one column too many: it used to fail inside dot_general
    cell = CELLS[name]
    params, xs = _zero_params(cell), jnp.ones((4, INPUT_SIZE))
    for field, leaf in _leaves_with_names(params):
        bad = jnp.zeros((*leaf.shape[:-1], leaf.shape[-1] + 1), leaf.dtype)
        message = re.escape(f"{field}: expected shape {leaf.shape} for {type(cell).__name__}(hidden_size=")
        with pytest.raises(ValueError, match=message):
            rj.unroll(cell, _replaced(params, field, bad), xs)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_integer_params_are_named(name):
    cell = CELLS[name]
    params, xs = _zero_params(cell), jnp.ones((4, INPUT_SIZE))
    for field, leaf in _leaves_with_names(params):
        with pytest.raises(TypeError, match=re.escape(f"{field}: expected a floating dtype for ") + ".*got int32"):
            rj.unroll(cell, _replaced(params, field, leaf.astype(jnp.int32)), xs)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_params_of_the_same_cell_with_another_hidden_size_are_named(name):
    cell = CELLS[name]
    other = _with(cell, hidden_size=cell.hidden_size + 1)
    with pytest.raises(ValueError, match=r"^params\.\S+: expected shape .* for " + type(cell).__name__):
        rj.unroll(cell, _zero_params(other), jnp.ones((4, INPUT_SIZE)))


FLAGS = [(name, "learn_initial_carry") for name in CELL_NAMES] + [
    ("lstm", "peephole"),
    ("lstm_peephole", "peephole"),
    ("gru", "reset_after"),
    ("gru_cho", "reset_after"),
    ("layernorm_gru", "reset_after"),
]


@pytest.mark.parametrize("name, flag", FLAGS)
def test_params_made_with_another_flag_are_named(name, flag):
    # LSTMCell(peephole=True) with params that have no peephole used to run without it (and the reverse)
    cell = CELLS[name]
    maker = _with(cell, **{flag: not getattr(cell, flag)})
    field = {"learn_initial_carry": "carry0", "peephole": "peephole", "reset_after": "b_h"}[flag]
    field = f"params.recurrent.{field}" if name == "rmlp" else f"params.{field}"
    made_by = re.escape(f"(made by {rj.cells.base.short_repr(maker)}?)")
    with pytest.raises(ValueError, match=rf"^{re.escape(field)}: {type(cell).__name__}\(.* expects .*{made_by}"):
        rj.unroll(cell, _zero_params(maker), jnp.ones((4, INPUT_SIZE)))


def test_the_peephole_message():
    with pytest.raises(ValueError) as info:
        rj.unroll(rj.LSTMCell(8, peephole=True), _zero_params(rj.LSTMCell(8)), jnp.ones((4, INPUT_SIZE)))
    assert str(info.value) == (
        "params.peephole: LSTMCell(hidden_size=8, peephole=True) expects an array of shape (3, 8) here; "
        "these params have None (made by LSTMCell(hidden_size=8)?)"
    )
    params = _zero_params(rj.LSTMCell(8))
    with pytest.raises(ValueError) as info:
        rj.LSTMCell(8).step(params._replace(b=np.zeros(1)), rj.LSTMCell(8).initial_carry(params), jnp.ones(INPUT_SIZE))
    assert str(info.value) == "params.b: expected shape (32,) for LSTMCell(hidden_size=8), got (1,)"


ENTRY_POINTS = {
    "initial_carry": lambda cell, p, params: cell.initial_carry(p),
    "project": lambda cell, p, params: cell.project(p, jnp.ones(INPUT_SIZE)),
    "recur": lambda cell, p, params: cell.recur(
        p, cell.initial_carry(params), cell.project(params, jnp.ones(INPUT_SIZE))
    ),
    "step": lambda cell, p, params: cell.step(p, cell.initial_carry(params), jnp.ones(INPUT_SIZE)),
    "unroll": lambda cell, p, params: rj.unroll(cell, p, jnp.ones((4, INPUT_SIZE))),
    "coefficients": lambda cell, p, params: cell.coefficients(p, cell.project(params, jnp.ones(INPUT_SIZE))),
}


@pytest.mark.parametrize(
    "name, entry",
    [(n, e) for n in CELL_NAMES for e in sorted(ENTRY_POINTS) if e != "coefficients" or n in ("mingru", "minlstm")],
)
def test_every_entry_point_checks_params_while_tracing(name, entry):
    cell = CELLS[name]
    params = _zero_params(cell)
    field, leaf = _leaves_with_names(params)[-1]
    bad = _replaced(params, field, jnp.zeros((1,) * leaf.ndim, leaf.dtype))
    call = ENTRY_POINTS[entry]
    with pytest.raises(ValueError, match=re.escape(f"{field}: expected shape {leaf.shape}")):
        call(cell, bad, params)
    # under jit: raised while tracing, from the shapes alone
    with pytest.raises(ValueError, match=re.escape(f"{field}: expected shape {leaf.shape}")):
        jax.jit(lambda p: call(cell, p, params))(bad)


def test_the_check_traces_init_once_per_cell_and_input_size():
    cell = rj.GRUCell(11, reset_after=False)  # a cell no other test uses: a fresh cache entry
    params = _zero_params(cell, 7)
    before = rj.cells.base._cached_init.cache_info().misses
    jax.make_jaxpr(lambda p, xs: rj.unroll(cell, p, xs))(params, jnp.ones((20, 7)))
    assert rj.cells.base._cached_init.cache_info().misses == before + 1
    jax.make_jaxpr(lambda p, xs: rj.unroll(cell, p, xs, remat=True, hoist=True))(params, jnp.ones((30, 7)))
    assert rj.cells.base._cached_init.cache_info().misses == before + 1


def test_params_with_other_float_dtypes_and_vmapped_params_pass(x64):
    # traced only (the check runs on shapes): no false alarm for valid params
    cell, xs = CELLS["lstm_peephole"], jnp.ones((3, INPUT_SIZE))
    params = _zero_params(cell)  # NumPy arrays are params too (e.g. converted weights)
    for dtype in (jnp.float32, jnp.float64, jnp.bfloat16, jnp.float16):
        cast = jax.tree_util.tree_map(lambda p, d=dtype: p.astype(d), params)
        assert jax.eval_shape(functools.partial(rj.unroll, cell), cast, xs)[1].shape == (3, cell.output_size)
    # an ensemble: params with a leading axis, mapped by vmap (the cell sees one member's shapes)
    stacked = jax.tree_util.tree_map(lambda p: np.stack([p, 2 * p]), params)
    ys = jax.eval_shape(jax.vmap(lambda p: rj.unroll(cell, p, xs)[1]), stacked)
    assert ys.shape == (2, 3, cell.output_size)


# --- property: unroll either names the argument at fault or equals a float64 loop of cell.step ---------

MAKERS = {
    "elman": lambda h, **kw: rj.ElmanCell(h, **kw),
    "jordan": lambda h, **kw: rj.JordanCell(h, output_size=max(1, h - 1), context_decay=0.5, **kw),
    "rmlp": lambda h, **kw: rj.RMLPCell(h, mlp_sizes=(2,), **kw),
    "lstm": lambda h, **kw: rj.LSTMCell(h, **kw),
    "lstm_peephole": lambda h, **kw: rj.LSTMCell(h, peephole=True, **kw),
    "gru": lambda h, **kw: rj.GRUCell(h, **kw),
    "gru_cho": lambda h, **kw: rj.GRUCell(h, reset_after=False, **kw),
    "mingru": lambda h, **kw: rj.MinGRUCell(h, **kw),
    "minlstm": lambda h, **kw: rj.MinLSTMCell(h, **kw),
    "layernorm_lstm": lambda h, **kw: rj.LayerNormLSTMCell(h, **kw),
    "layernorm_gru": lambda h, **kw: rj.LayerNormGRUCell(h, **kw),
}
# what the user gets wrong, and the argument the error must start with
MISTAKES = {
    "none": None,
    "bias_shape": "params",
    "int_param": "params",
    "hidden_size": "params",
    "flag": "params",
    "xs_features": "xs",
    "xs_int": "xs",
    "length": "length",
    "carry": "carry",
}


def _float64_loop(cell, params, xs, length, reverse):
    """The reference: a Python loop of ``cell.step`` in float64 over the valid steps, zeros elsewhere."""
    to64 = functools.partial(jax.tree_util.tree_map, lambda a: np.asarray(a, np.float64))
    cell, params, xs = _with(cell, dtype=None), to64(params), np.asarray(xs, np.float64)
    carry, ys = cell.initial_carry(params), np.zeros((len(xs), cell.output_size))
    n = len(xs) if length is None else length
    for t in reversed(range(n)) if reverse else range(n):
        carry, ys[t] = cell.step(params, carry, xs[t])
    return to64(carry), ys


def _numpy_params(cell, input_size, rng):
    """Random N(0, 0.25) params of ``cell.init``'s shapes and dtypes, made in NumPy (an eager init compiles)."""
    shapes = jax.eval_shape(lambda: cell.init(jax.random.key(0), input_size))
    return jax.tree_util.tree_map(lambda s: (0.5 * rng.standard_normal(s.shape)).astype(s.dtype), shapes)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    name=st.sampled_from(sorted(MAKERS)),
    hidden=st.integers(1, 3),
    input_size=st.integers(1, 2),
    num_steps=st.integers(0, 4),
    param_dtype=st.sampled_from(["float32", "float64", "bfloat16"]),
    xs_dtype=st.sampled_from(["float32", "float64", "bfloat16"]),
    learn_initial_carry=st.booleans(),
    reverse=st.booleans(),
    with_length=st.booleans(),
    mistake=st.one_of(st.just("none"), st.sampled_from(sorted(MISTAKES))),  # about half valid
    seed=st.integers(0, 2**16),
)
def test_unroll_names_the_argument_at_fault_or_equals_a_float64_loop(
    name, hidden, input_size, num_steps, param_dtype, xs_dtype, learn_initial_carry, reverse, with_length, mistake, seed
):
    with jax.enable_x64(True):
        make = functools.partial(MAKERS[name], param_dtype=param_dtype)
        cell = make(hidden, learn_initial_carry=learn_initial_carry)
        rng = np.random.default_rng(seed)
        params = _numpy_params(cell, input_size, rng)
        xs = rng.standard_normal((num_steps, input_size)).astype(jnp.dtype(xs_dtype))
        length = num_steps // 2 if with_length else None

        args, kwargs = [cell, params, xs], {"length": length, "reverse": reverse}
        field, leaf = _leaves_with_names(params)[-1]
        if mistake == "bias_shape":  # all axes 1, so that it would broadcast
            args[1] = _replaced(params, field, np.zeros((1 if leaf.size > 1 else 2,) * leaf.ndim, leaf.dtype))
        elif mistake == "int_param":
            args[1] = _replaced(params, field, leaf.astype(np.int32))
        elif mistake == "hidden_size":
            args[1] = _numpy_params(make(hidden + 1, learn_initial_carry=learn_initial_carry), input_size, rng)
        elif mistake == "flag":
            args[1] = _numpy_params(make(hidden, learn_initial_carry=not learn_initial_carry), input_size, rng)
        elif mistake == "xs_features":
            args[2] = np.ones((num_steps, input_size + 1), xs.dtype)
        elif mistake == "xs_int":
            args[2] = xs.astype(np.int32)
        elif mistake == "length":
            kwargs["length"] = num_steps + 1
        elif mistake == "carry":
            other = make(hidden + 1)
            args.append(other.initial_carry(_numpy_params(other, input_size, rng)))
        try:
            got = rj.unroll(*args, **kwargs)
        except (ValueError, TypeError) as error:
            assert MISTAKES[mistake] is not None, f"valid arguments raised {error!r}"
            assert re.match(rf"{MISTAKES[mistake]}[.:\[ ]", str(error)), str(error)
            return
        assert MISTAKES[mistake] is None, f"{mistake}: ran silently"
        want = _float64_loop(cell, params, xs, length, reverse)
        with jax.numpy_dtype_promotion("standard"):
            compute = jnp.promote_types(param_dtype, xs_dtype)
        tol = {"float64": 1e-12, "float32": 2e-5}.get(jnp.dtype(compute).name, 5e-2)
        np.testing.assert_allclose(np.asarray(got[1], np.float64), want[1], rtol=tol, atol=tol)
        for g, w in zip(jax.tree_util.tree_leaves(got[0]), jax.tree_util.tree_leaves(want[0]), strict=True):
            np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=tol, atol=tol)
