"""Losses against hand computations, with masks; padding content never matters."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.experimental import checkify

import rnnjax as rj


def test_sequence_cross_entropy_by_hand_with_mask():
    logits = jnp.array([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [9.0, 9.0, 9.0]]])  # [b=1, t=3, v=3]
    targets = jnp.array([[0, 1, 2]])
    mask = rj.losses.length_mask(jnp.array([2]), 3)
    step0 = -(2.0 - math.log(math.exp(2) + 2))
    step1 = -(1.0 - math.log(math.exp(1) + 2))
    got = rj.losses.sequence_cross_entropy(logits, targets, mask)
    np.testing.assert_allclose(float(got), (step0 + step1) / 2, rtol=1e-6)
    # padding content does not matter, NaN included
    garbage = logits.at[0, 2].set(jnp.nan)
    np.testing.assert_allclose(
        float(rj.losses.sequence_cross_entropy(garbage, targets.at[0, 2].set(0), mask)), float(got)
    )
    # no mask: all three steps
    step2 = math.log(3.0)
    np.testing.assert_allclose(
        float(rj.losses.sequence_cross_entropy(logits, targets)), (step0 + step1 + step2) / 3, rtol=1e-6
    )


def test_mean_is_over_valid_steps_across_the_batch():
    logits = jnp.zeros((2, 4, 5))
    targets = jnp.zeros((2, 4), jnp.int32)
    mask = rj.losses.length_mask(jnp.array([1, 4]), 4)
    np.testing.assert_allclose(float(rj.losses.sequence_cross_entropy(logits, targets, mask)), math.log(5), rtol=1e-6)
    empty = rj.losses.length_mask(jnp.array([0, 0]), 4)
    assert float(rj.losses.sequence_cross_entropy(logits, targets, empty)) == 0.0  # no NaN for all padding


def test_sequence_mse_and_last_step_by_hand():
    preds = jnp.array([[1.0, 3.0], [2.0, 2.0], [100.0, 100.0]])
    targets = jnp.zeros((3, 2))
    mask = jnp.array([True, True, False])
    np.testing.assert_allclose(float(rj.losses.sequence_mse(preds, targets, mask)), (5.0 + 4.0) / 2)
    np.testing.assert_allclose(float(rj.losses.last_step_mse(preds, jnp.array([1.0, 1.0]), 2)), 1.0)
    np.testing.assert_allclose(float(rj.losses.last_step_mse(preds, jnp.array([100.0, 99.0]))), 0.5)
    np.testing.assert_array_equal(rj.losses.last_step(preds, 0), [0.0, 0.0])  # no valid step


CE = rj.losses.sequence_cross_entropy


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: CE(jnp.zeros((3, 4)), jnp.zeros(3)), TypeError, "targets: expected integer"),
        (lambda: CE(jnp.zeros((3, 4)), jnp.zeros(2, int)), ValueError, r"targets: expected shape \(3,\)"),
        (lambda: CE(jnp.zeros((3, 4)), jnp.zeros(3, int), jnp.ones(2, bool)), ValueError, "mask: expected shape"),
        (lambda: rj.losses.sequence_mse(jnp.zeros((3, 4)), jnp.zeros((3, 5))), ValueError, "targets: expected shape"),
        (lambda: rj.losses.length_mask(jnp.array([1.5]), 3), TypeError, "lengths: expected integers"),
    ],
)  # fmt: skip
def test_loss_argument_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ----------------------------------------------------------------------------- argument values


def test_float_mask_gives_the_weighted_mean():
    logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [9.0, 9.0, jnp.nan]])
    targets = jnp.array([0, 1, 2])
    per_step = -np.asarray(jax.nn.log_softmax(logits[:2]))[[0, 1], [0, 1]]
    # used to be 2.77 for weights [0.5, 0.5, 0]: a sum over the nonzero steps divided by the weights' sum
    got = rj.losses.sequence_cross_entropy(logits, targets, [0.5, 0.5, 0.0])
    np.testing.assert_allclose(float(got), per_step.mean(), rtol=1e-6)
    got = rj.losses.sequence_cross_entropy(logits, targets, jnp.array([0.25, 0.75, 0.0]))
    np.testing.assert_allclose(float(got), 0.25 * per_step[0] + 0.75 * per_step[1], rtol=1e-6)
    assert float(rj.losses.sequence_cross_entropy(logits, targets, jnp.zeros(3))) == 0.0  # all padding
    with pytest.raises(ValueError, match=r"mask: expected shape \(3,\) \(one flag or weight per step\), got \(2,\)"):
        rj.losses.sequence_cross_entropy(logits, targets, [0.5, 0.5])
    with pytest.raises(ValueError, match=r"mask: expected weights >= 0, got -0.5"):
        rj.losses.sequence_cross_entropy(logits, targets, [1.0, -0.5, 0.0])


def test_targets_outside_the_vocabulary_are_named():
    logits = jnp.zeros((3, 4))
    with pytest.raises(ValueError, match=r"targets: expected class ids in \[0, 4\) .* on the valid steps, got 4"):
        rj.losses.sequence_cross_entropy(logits, jnp.array([0, 1, 4]))  # used to be NaN
    with pytest.raises(ValueError, match=r"targets: .*, got -1"):
        rj.losses.sequence_cross_entropy(logits, jnp.array([0, -1, 2]))  # used to wrap to the last class
    # padding may hold anything
    assert math.isfinite(float(rj.losses.sequence_cross_entropy(logits, jnp.array([0, 1, 9]), [True, True, False])))
    with rj.checking():  # traced: checked in checked mode
        err, _ = checkify.checkify(jax.jit(lambda t: rj.losses.sequence_cross_entropy(logits, t)))(jnp.array([0, 1, 4]))
        assert "targets: expected class ids in [0, 4)" in err.get()


def test_last_step_length_past_the_end_and_no_steps_are_named():
    ys = jnp.arange(5.0)[:, None]
    with pytest.raises(ValueError, match=r"length: expected 0 <= length <= 5 \(the number of steps\), got 7"):
        rj.losses.last_step(ys, 7)  # used to be NaN
    with pytest.raises(ValueError, match=r"length: expected 0 <= length <= 5 .*, got -1"):
        rj.losses.last_step_mse(ys, jnp.zeros(1), -1)
    with pytest.raises(ValueError, match=r"ys: expected shape \[t, ...\] with at least one step, got shape \(0, 2\)"):
        rj.losses.last_step(jnp.zeros((0, 2)))  # used to be an IndexError from jnp.take
    with pytest.raises(ValueError, match=r"targets: expected shape \(1,\) \(one step of ys\), got \(2,\)"):
        rj.losses.last_step_mse(ys, jnp.zeros(2), 3)
    with rj.checking():  # traced lengths (vmap, jit): checked in checked mode
        check = checkify.checkify(jax.jit(jax.vmap(rj.losses.last_step)))
        assert "length: expected 0 <= length <= 5" in check(jnp.stack([ys, ys]), jnp.array([3, 7]))[0].get()


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 2),
    t=st.integers(1, 3),
    v=st.integers(1, 4),
    mask_kind=st.sampled_from(["none", "bool", "weights", "wrong shape", "negative"]),
    seed=st.integers(0, 2**16),
)
def test_sequence_cross_entropy_raises_a_named_error_or_equals_a_numpy_weighted_mean(b, t, v, mask_kind, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(b, t, v)).astype(np.float32)
    targets = rng.integers(-1, v + 1, size=(b, t))
    mask = {
        "none": None,
        "bool": rng.random((b, t)) < 0.6,
        "weights": rng.choice([0.0, 0.25, 1.0], size=(b, t)).astype(np.float32),
        "wrong shape": np.ones((b, t + 1), bool),
        "negative": np.where(rng.random((b, t)) < 0.5, -0.5, 1.0).astype(np.float32),
    }[mask_kind]
    weights = np.ones((b, t)) if mask is None or mask_kind == "wrong shape" else np.asarray(mask, np.float64)
    bad = {"mask"} if mask_kind == "wrong shape" or np.any(weights < 0) else set()
    bad |= {"targets"} if np.any(((targets < 0) | (targets >= v)) & (weights != 0)) else set()
    try:
        got = rj.losses.sequence_cross_entropy(jnp.asarray(logits), jnp.asarray(targets), mask)
    except (ValueError, TypeError) as e:
        assert bad and str(e).split(":")[0] in bad, e
        return
    assert not bad
    log_probs = logits - np.log(np.sum(np.exp(logits.astype(np.float64)), axis=-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, np.clip(targets, 0, v - 1)[..., None], axis=-1)[..., 0]
    want = np.sum(np.where(weights != 0, weights * nll, 0)) / np.sum(weights) if np.sum(weights) else 0.0
    np.testing.assert_allclose(float(got), want, rtol=1e-5, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(t=st.integers(0, 3), o=st.integers(1, 2), length=st.one_of(st.none(), st.integers(-2, 5)))
def test_last_step_raises_a_named_error_or_equals_numpy_indexing(t, o, length):
    ys = np.arange(t * o, dtype=np.float32).reshape(t, o) + 1.0
    bad = "ys" if t == 0 else "length" if length is not None and not 0 <= length <= t else None
    try:
        got = rj.losses.last_step(jnp.asarray(ys), length)
    except (ValueError, TypeError) as e:
        assert str(e).split(":")[0] == bad, e
        return
    assert bad is None
    want = ys[-1] if length is None else ys[length - 1] if length > 0 else np.zeros(o)
    np.testing.assert_array_equal(got, want)
