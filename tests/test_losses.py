"""Losses against hand computations, with masks; padding content never matters."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

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
