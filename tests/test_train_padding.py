"""Padding in the training tools: ``length`` in BPTT, truncated BPTT, RTRL and the carry-gradient norms.

A sequence padded from ``n`` to ``t`` steps (with random values in the padding, not zeros) must
give the loss, gradient and carry of its first ``n`` steps alone, in float64; RTRL with
``length`` equals BPTT with ``length``; truncated BPTT on a number of steps that is not a
multiple of ``k1`` equals an independent Python-loop definition over windows.
"""

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify
from jax.test_util import check_grads

import rnnjax as rj
from conftest import as_float64, random_params

CELLS = {
    "elman": rj.ElmanCell(4),
    "lstm": rj.LSTMCell(3),
    "gru_learned_carry": rj.GRUCell(3, learn_initial_carry=True),  # the initial carry depends on params
}
NUM_STEPS, LENGTH = 13, 9  # padded to 13 steps, 9 valid


def mse(y, target):
    return jnp.sum((y - target) ** 2)


def padded_problem(cell, seed=0):
    """float64 params, and ``xs [13, 3]``, ``targets [13, o]`` whose last 4 steps are random padding."""
    params = as_float64(random_params(cell, seed=seed))
    xs = jax.random.normal(jax.random.key(seed + 10), (NUM_STEPS, 3), jnp.float64)
    targets = jax.random.normal(jax.random.key(seed + 11), (NUM_STEPS, cell.output_size), jnp.float64)
    return params, xs, targets


def assert_trees_close(a, b, rtol=1e-12, atol=1e-14):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


# --- padded == the unpadded prefix ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CELLS))
def test_bptt_with_length_equals_the_unpadded_prefix(name, x64):
    cell = CELLS[name]
    params, xs, targets = padded_problem(cell)
    prefix = rj.train.bptt_grad(cell, params, xs[:LENGTH], targets[:LENGTH], mse)
    assert_trees_close(rj.train.bptt_grad(cell, params, xs, targets, mse, length=LENGTH), prefix)
    traced = jax.jit(lambda p, n: rj.train.bptt_grad(cell, p, xs, targets, mse, length=n))(params, LENGTH)
    assert_trees_close(traced, prefix)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_rtrl_with_length_equals_the_unpadded_prefix_and_bptt(name, x64):
    cell = CELLS[name]
    params, xs, targets = padded_problem(cell)
    rtrl = jax.jit(lambda p, n: rj.train.rtrl_grad(cell, p, xs, targets, mse, length=n))
    loss, grads = rtrl(params, LENGTH)
    prefix_loss, prefix_grads = rj.train.rtrl_grad(cell, params, xs[:LENGTH], targets[:LENGTH], mse)
    assert_trees_close((loss, grads), (prefix_loss, prefix_grads))
    bptt_loss, bptt_grads = rj.train.bptt_grad(cell, params, xs, targets, mse, length=LENGTH)
    np.testing.assert_allclose(loss, bptt_loss, rtol=1e-12)
    assert_trees_close(grads, bptt_grads, rtol=1e-8, atol=1e-10)  # forward mode against reverse mode


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("k1, k2", [(4, 4), (4, 6), (5, 11), (20, 20)])  # 9 % 4 = 1, 9 % 5 = 4; k1 > t
def test_truncated_bptt_with_length_equals_the_unpadded_prefix(name, k1, k2, x64):
    cell = CELLS[name]
    params, xs, targets = padded_problem(cell)
    tbptt = jax.jit(lambda p, n: rj.train.truncated_bptt_grad(cell, p, xs, targets, mse, k1=k1, k2=k2, length=n))
    padded = tbptt(params, LENGTH)
    prefix = rj.train.truncated_bptt_grad(cell, params, xs[:LENGTH], targets[:LENGTH], mse, k1=k1, k2=k2)
    assert_trees_close(padded, prefix)
    assert_trees_close(padded[2], rj.unroll(cell, params, xs[:LENGTH])[0])  # the carry after the last valid step


@pytest.mark.parametrize("name", ["lstm", "gru_learned_carry"])
def test_carry_gradient_norms_with_length_equal_the_unpadded_prefix(name, x64):
    cell = CELLS[name]
    params, xs, _ = padded_problem(cell)

    def loss_fn(carry, ys):  # zero at a zero output, so the padding's zero rows add nothing
        return jnp.sum(jnp.sin(ys) ** 2) + jnp.sum(carry.h**3)

    norms = jax.jit(lambda n: rj.train.carry_gradient_norms(cell, params, xs, loss_fn, length=n))(LENGTH)
    prefix = rj.train.carry_gradient_norms(cell, params, xs[:LENGTH], loss_fn)
    np.testing.assert_allclose(norms[:LENGTH], prefix, rtol=1e-12)
    assert np.all(np.asarray(norms[LENGTH:]) == 0.0)  # no step reads a carry in the padding


def padded_tools(cell, params, xs, targets, length):
    return (
        rj.train.bptt_grad(cell, params, xs, targets, mse, length=length),
        rj.train.rtrl_grad(cell, params, xs, targets, mse, length=length),
        rj.train.truncated_bptt_grad(cell, params, xs, targets, mse, k1=3, k2=5, length=length),
    )


def test_length_zero_and_no_steps_give_zero_loss_and_gradient_and_the_initial_carry(x64):
    cell = CELLS["gru_learned_carry"]  # a learned initial carry: its gradient must be zero too
    params, xs, targets = padded_problem(cell)
    bptt, rtrl, (tbptt_loss, tbptt_grads, carry) = jax.jit(padded_tools, static_argnums=0)(cell, params, xs, targets, 0)
    zero = jax.tree_util.tree_map(jnp.zeros_like, params)
    assert_trees_close((bptt, rtrl, tbptt_loss, tbptt_grads), ((0.0, zero), (0.0, zero), 0.0, zero), atol=0)
    assert_trees_close(carry, cell.initial_carry(params), atol=0)
    # and so does a sequence of no steps at all
    bptt, rtrl, (tbptt_loss, tbptt_grads, carry) = padded_tools(cell, params, xs[:0], targets[:0], None)
    assert_trees_close((bptt, rtrl, tbptt_loss, tbptt_grads), ((0.0, zero), (0.0, zero), 0.0, zero), atol=0)
    assert_trees_close(carry, cell.initial_carry(params), atol=0)


@pytest.mark.slow
def test_a_batch_of_padded_sequences_equals_each_prefix(x64):
    """``vmap`` over the lengths 0, 5 and 13 of one padded batch == each sequence's prefix alone."""
    cell = CELLS["lstm"]
    params, _, _ = padded_problem(cell)
    xs = jax.random.normal(jax.random.key(1), (3, NUM_STEPS, 3), jnp.float64)
    targets = jax.random.normal(jax.random.key(2), (3, NUM_STEPS, cell.output_size), jnp.float64)
    lengths = jnp.array([0, 5, NUM_STEPS])
    batched = jax.jit(jax.vmap(lambda x, t, n: padded_tools(cell, params, x, t, n)))(xs, targets, lengths)
    for i, n in enumerate(lengths.tolist()):
        expected = padded_tools(cell, params, xs[i, :n], targets[i, :n], None)
        assert_trees_close(jax.tree_util.tree_map(lambda a, i=i: a[i], batched), expected)


def test_the_masked_loss_has_the_gradient_of_finite_differences(x64):
    cell = CELLS["lstm"]
    params, xs, targets = padded_problem(cell)
    check_grads(
        lambda p: rj.train.sequence_loss(cell, p, xs, targets, mse, length=LENGTH), (params,), order=1, modes=["rev"]
    )


# --- truncated BPTT on any number of steps --------------------------------------------------------


def reference_tbptt(cell, params, xs, targets, k1, k2):
    """TBPTT(k1, k2) spelled out with Python loops over windows, for any number of steps.

    Window ``i`` counts the losses of steps ``[i k1, min((i + 1) k1, t))`` (the last one is
    shorter) and backpropagates from step ``(i + 1) k1 - k2`` (at least 0), the carry entering
    it a constant (from the initial carry at 0).
    """
    carries = [cell.initial_carry(params)]
    for x in xs:
        carries.append(cell.step(params, carries[-1], x)[0])
    total_loss, total = 0.0, jax.tree_util.tree_map(jnp.zeros_like, params)
    for first in range(0, len(xs), k1):
        last, start = min(first + k1, len(xs)), max(0, first + k1 - k2)

        def window(p, first=first, last=last, start=start):
            c = cell.initial_carry(p) if start == 0 else jax.lax.stop_gradient(carries[start])
            loss = 0.0
            for t in range(start, last):
                c, y = cell.step(p, c, xs[t])
                if t >= first:
                    loss = loss + mse(y, targets[t])
            return loss

        loss, grads = jax.value_and_grad(window)(params)
        total_loss, total = total_loss + loss, jax.tree_util.tree_map(jnp.add, total, grads)
    return total_loss, total, carries[-1]


@pytest.mark.parametrize("k1, k2", [(5, 5), (5, 7), (4, 10), (3, 13)])  # 13 steps: 13 % k1 = 3, 3, 1, 1
def test_truncated_bptt_on_a_number_of_steps_not_a_multiple_of_k1_matches_its_definition(k1, k2, x64):
    cell = CELLS["elman"]
    params, xs, targets = padded_problem(cell)
    result = jax.jit(lambda p: rj.train.truncated_bptt_grad(cell, p, xs, targets, mse, k1=k1, k2=k2))(params)
    assert_trees_close(result, reference_tbptt(cell, params, xs, targets, k1, k2), rtol=1e-10, atol=1e-12)
    _, full = rj.train.bptt_grad(cell, params, xs, targets, mse)
    assert not np.allclose(result[1].w_h, full.w_h, rtol=1e-6)  # truncation drops long-range terms


def test_truncated_bptt_with_one_window_longer_than_the_sequence_is_bptt(x64):
    cell = CELLS["lstm"]
    params, xs, targets = padded_problem(cell)
    loss, grads, _ = rj.train.truncated_bptt_grad(cell, params, xs, targets, mse, k1=NUM_STEPS + 3)
    assert_trees_close((loss, grads), rj.train.bptt_grad(cell, params, xs, targets, mse), rtol=1e-10, atol=1e-12)


# --- bad input ------------------------------------------------------------------------------------

TOOLS = {
    "bptt_grad": lambda cell, p, xs, ts, **kw: rj.train.bptt_grad(cell, p, xs, ts, mse, **kw),
    "truncated_bptt_grad": lambda cell, p, xs, ts, **kw: rj.train.truncated_bptt_grad(cell, p, xs, ts, mse, k1=4, **kw),
    "rtrl_grad": lambda cell, p, xs, ts, **kw: rj.train.rtrl_grad(cell, p, xs, ts, mse, **kw),
    "carry_gradient_norms": lambda cell, p, xs, ts, **kw: rj.train.carry_gradient_norms(
        cell, p, xs, lambda carry, ys: jnp.sum(ys), **kw
    ),
}


@pytest.mark.parametrize("tool", sorted(TOOLS))
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(length=NUM_STEPS + 1), ValueError, "length: expected 0 <= length <= 13 (the number of steps), got 14"),
        (dict(length=-1), ValueError, "length: expected 0 <= length <= 13 (the number of steps), got -1"),
        (dict(length=4.0), TypeError, "length: expected an integer scalar, got dtype float"),
        (dict(length=np.array([4, 5])), ValueError, "length: expected a scalar (the length of one sequence; vmap"),
        (dict(carry=(jnp.zeros(4),)), ValueError, "carry: expected a pytree of structure"),
    ],
)
def test_bad_length_and_carry_are_clear_errors(tool, kwargs, error, message):
    cell = rj.ElmanCell(4)
    xs, targets = jnp.ones((NUM_STEPS, 3)), jnp.ones((NUM_STEPS, 4))
    with pytest.raises(error, match=re.escape(message)):
        TOOLS[tool](cell, random_params(cell), xs, targets, **kwargs)


@pytest.mark.parametrize("tool", ["bptt_grad", "truncated_bptt_grad", "rtrl_grad"])
def test_targets_of_another_length_are_a_clear_error(tool):
    cell = rj.ElmanCell(4)
    with pytest.raises(ValueError, match=re.escape("targets: expected arrays with the leading axis t = 13 of xs")):
        TOOLS[tool](cell, random_params(cell), jnp.ones((NUM_STEPS, 3)), jnp.ones((NUM_STEPS - 1, 4)))


def test_a_traced_length_out_of_range_is_checked_under_checkify():
    cell = rj.ElmanCell(4)
    params, xs, targets = random_params(cell), jnp.ones((NUM_STEPS, 3)), jnp.ones((NUM_STEPS, 4))
    with rj.checking():
        rtrl = jax.jit(checkify.checkify(lambda n: rj.train.rtrl_grad(cell, params, xs, targets, mse, length=n)))
        error, _ = rtrl(NUM_STEPS + 1)
    with pytest.raises(checkify.JaxRuntimeError, match=re.escape("length: expected 0 <= length <= 13")):
        error.throw()


# --- the docs -------------------------------------------------------------------------------------


def section_blocks(page: str, heading: str) -> list[str]:
    """The ```python blocks of the section of ``page`` under ``heading``, up to the next heading."""
    text = (Path(__file__).parents[1] / page).read_text()
    section = re.split(r"\n##+ ", text.split(f"{heading}\n", 1)[1], maxsplit=1)[0]
    return re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)


@pytest.mark.slow
def test_the_guide_section_runs():
    """The code of docs/guide/training.md's "Gradients through time" section runs as written."""
    blocks = section_blocks("docs/guide/training.md", "## Gradients through time")
    assert blocks
    with jax.numpy_dtype_promotion("standard"):  # as a user has it
        for block in blocks:
            exec(compile(block, "docs/guide/training.md", "exec"), {})
