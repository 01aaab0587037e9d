"""Bad input fails at trace time with a message naming the argument, the expected and the actual."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import rnnjax as rj
from conftest import random_params

CELL = rj.LSTMCell(4)


@pytest.fixture(scope="module")
def params():
    return random_params(CELL)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(xs=jnp.ones((5, 7))), ValueError, "xs: expected last axis of size 3 (the input_size the params were"),
        (
            dict(xs=jnp.ones((2, 5, 3))),
            ValueError,
            "xs: expected shape [t, 3] (one sequence; batch with jax.vmap), got",
        ),
        (dict(xs=jnp.ones(3)), ValueError, "xs: expected shape [t, 3], got shape (3,)"),
        (dict(xs=jnp.ones((5, 3), jnp.int32)), TypeError, "xs: expected a floating dtype"),
        (dict(length=6), ValueError, "length: expected 0 <= length <= 5 (the number of steps), got 6"),
        (dict(length=-1), ValueError, "length: expected 0 <= length <= 5 (the number of steps), got -1"),
        (dict(length=2**40), ValueError, "length: expected 0 <= length <= 5 (the number of steps), got 1099511627776"),
        (  # a 0-d NumPy array: would wrap to 0
            dict(length=np.array(2**32)),
            ValueError,
            "length: expected 0 <= length <= 5 (the number of steps), got 4294967296",
        ),
        (  # would wrap to 2 in int32
            dict(length=np.int64(2**32 + 2)),
            ValueError,
            "length: expected 0 <= length <= 5 (the number of steps), got 4294967298",
        ),
        (dict(length=2.0), TypeError, "length: expected an integer scalar, got dtype float"),
        (dict(length=jnp.array([2, 3])), ValueError, "length: expected a scalar"),
        (dict(carry=rj.HiddenCarry(jnp.zeros(4))), ValueError, "carry: expected a pytree of structure"),
        (dict(carry=rj.LSTMCarry(jnp.zeros(4), jnp.zeros(5))), ValueError, "carry: expected shapes"),
        (dict(unroll=0), ValueError, "unroll: expected a positive integer, got 0"),
        (dict(parallel=True), ValueError, "parallel: needs a linear-recurrence cell (MinGRUCell, MinLSTMCell), got"),
    ],
)
def test_unroll_argument_errors(params, kwargs, error, message):
    kwargs = {"xs": jnp.ones((5, 3)), **kwargs}
    with pytest.raises(error, match=re.escape(message)):
        rj.unroll(CELL, params, **kwargs)
    # the same errors under jit: raised while tracing, not from inside XLA
    static = {k: v for k, v in kwargs.items() if k in ("unroll", "parallel")}
    traced = {k: v for k, v in kwargs.items() if k not in static and k != "length"}
    if "length" not in kwargs:
        with pytest.raises(error, match=re.escape(message)):
            jax.jit(lambda p, kw: rj.unroll(CELL, p, **kw, **static))(params, traced)


def test_params_of_another_cell_are_named(params):
    with pytest.raises(TypeError, match=r"params: expected GRUParams \(from GRUCell.init\), got LSTMParams"):
        rj.unroll(rj.GRUCell(4), params, jnp.ones((5, 3)))
    with pytest.raises(
        ValueError, match=re.escape("params.w_i: expected shape (3, 32) for LSTMCell(hidden_size=8), got (3, 16)")
    ):
        rj.unroll(rj.LSTMCell(8), params, jnp.ones((5, 3)))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "params.b_h: GRUCell(hidden_size=4, reset_after=False) expects None here; "
            "these params have an array of shape (12,) (made by GRUCell(hidden_size=4)?)"
        ),
    ):
        rj.unroll(rj.GRUCell(4, reset_after=False), random_params(rj.GRUCell(4)), jnp.ones((5, 3)))


def test_project_and_step_check_features(params):
    with pytest.raises(ValueError, match=re.escape("xs: expected last axis of size 3")):
        CELL.step(params, CELL.initial_carry(params), jnp.ones(4))
    with pytest.raises(TypeError, match="xs: expected a floating dtype .* got int32; embed integer token ids first"):
        CELL.project(params, jnp.ones((2, 3), jnp.int32))


def test_nonfinite_inputs_in_checked_mode(params):
    bad = jnp.ones((5, 3)).at[2, 1].set(jnp.nan)
    rj.unroll(CELL, params, bad)  # unchecked: no cost, no error
    with rj.checking(), pytest.raises(ValueError, match=re.escape("xs: expected finite values, got NaN or inf")):
        rj.unroll(CELL, params, bad.at[2, 1].set(jnp.inf))
    # under jit: a checkify check, surfaced by checkify.checkify
    with rj.checking():
        checked = jax.jit(checkify.checkify(lambda p, x: rj.unroll(CELL, p, x)[1]))
        err, _ = checked(params, bad)
    with pytest.raises(checkify.JaxRuntimeError, match="xs: expected finite values"):
        err.throw()
    err, _ = checked(params, jnp.ones((5, 3)))
    err.throw()  # finite input: no error


def test_traced_length_checked_under_checkify(params):
    with rj.checking():
        f = jax.jit(checkify.checkify(lambda p, n: rj.unroll(CELL, p, jnp.ones((5, 3)), length=n)[1]))
        err, _ = f(params, 7)
    with pytest.raises(checkify.JaxRuntimeError, match=re.escape("length: expected 0 <= length <= 5")):
        err.throw()
    f(params, 5)[0].throw()


def test_checked_jit_never_hands_a_checked_trace_to_an_unchecked_call():
    """A library jit called inside the user's checkified jit in checking mode, then in a plain jit outside it."""

    @rj._src.checks.checked_jit
    def double(x):
        if rj._src.checks.is_checking():
            rj._src.checks.value_check(jnp.all(jnp.isfinite(x)), "x: expected finite values")
        return 2 * x

    with rj.checking():
        err, _ = jax.jit(checkify.checkify(lambda x: double(x)))(jnp.array([jnp.nan]))
        with pytest.raises(checkify.JaxRuntimeError, match="x: expected finite values"):
            err.throw()
        with pytest.raises(ValueError, match="x: expected finite values"):
            double(jnp.array([jnp.inf]))  # called directly: raised at the call
    np.testing.assert_array_equal(jax.jit(lambda x: double(x))(jnp.array([1.0])), [2.0])  # no stale checked trace


def test_checked_jit_around_a_checked_jit_keeps_its_own_jit_options():
    inner = rj._src.checks.checked_jit(lambda x: x + 1)
    outer = rj._src.checks.checked_jit(inner, donate_argnums=0)  # as the data-parallel step wraps with shardings
    donates = lambda f: any(w in f.lower(jnp.zeros(3)).as_text() for w in ("buffer_donor", "aliasing_output"))  # noqa: E731
    assert donates(outer) and not donates(inner)
