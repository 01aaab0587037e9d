"""Sequence losses with padding masks. Every loss is a mean over the valid steps only.

Masks come from lengths with :func:`length_mask`; a step with mask False contributes
nothing, whatever its logits or targets hold (padding may contain anything).
"""

import jax.numpy as jnp
import optax

from rnnjax import _checks
from rnnjax.typing import Array


def length_mask(lengths: Array, num_steps: int) -> Array:
    """``mask[..., t] = t < lengths[...]``: True on the valid steps.

    Args:
      lengths: integer lengths ``[...]`` (e.g. ``[b]``).
      num_steps: ``t``.

    Returns:
      Boolean mask ``[..., t]``.

    Example:
        >>> import jax.numpy as jnp, rnnjax as rj
        >>> rj.losses.length_mask(jnp.array([2, 0, 3]), 3).astype(int).tolist()
        [[1, 1, 0], [0, 0, 0], [1, 1, 1]]
    """
    lengths = jnp.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"lengths: expected integers, got dtype {lengths.dtype}")
    return jnp.arange(num_steps, dtype=lengths.dtype) < lengths[..., None]


def _masked_mean(values: Array, mask: Array | None, name: str = "mask") -> Array:
    if mask is None:
        return jnp.mean(values)
    if mask.shape != values.shape:
        raise ValueError(f"{name}: expected shape {values.shape} (one flag per step), got {mask.shape}")
    # a select, not a product: NaN or inf in the padding must not leak (NaN * 0 is NaN);
    # an all-padding batch gives 0, not NaN
    total = jnp.sum(jnp.where(mask, values, jnp.zeros_like(values)))
    return total / jnp.maximum(jnp.sum(mask), 1).astype(values.dtype)


def sequence_cross_entropy(logits: Array, targets: Array, mask: Array | None = None) -> Array:
    """Softmax cross-entropy averaged over the valid steps.

    .. math:: L = \\frac{1}{\\sum m_t} \\sum_t m_t \\, (-\\log \\mathrm{softmax}(z_t)_{y_t})

    Args:
      logits: ``[..., t, v]`` (any leading shape, e.g. ``[b, t, v]``).
      targets: integer ids ``[..., t]``.
      mask: boolean ``[..., t]``, True on valid steps (None: all valid).

    Returns:
      Scalar mean loss in nats (divide by ``log 2`` for bits).

    Example:
        >>> import jax.numpy as jnp, rnnjax as rj
        >>> logits = jnp.zeros((2, 3, 4))                  # uniform over 4 tokens
        >>> loss = rj.losses.sequence_cross_entropy(logits, jnp.zeros((2, 3), int))
        >>> round(float(loss), 4) == round(float(jnp.log(4.0)), 4)
        True
    """
    logits = _checks.floating(logits, "logits")
    targets = jnp.asarray(targets)
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        raise TypeError(f"targets: expected integer class ids, got dtype {targets.dtype}")
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"targets: expected shape {logits.shape[:-1]} (logits without the class axis), got {targets.shape}"
        )
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
    return _masked_mean(losses, mask)


def sequence_mse(predictions: Array, targets: Array, mask: Array | None = None) -> Array:
    """Mean squared error over the valid steps, averaged over the feature axis too.

    Args:
      predictions: ``[..., t, o]``.
      targets: ``[..., t, o]``.
      mask: boolean ``[..., t]`` (None: all valid).

    Returns:
      Scalar.

    Example:
        >>> import jax.numpy as jnp, rnnjax as rj
        >>> preds, targets = jnp.ones((4, 1)), jnp.zeros((4, 1))
        >>> float(rj.losses.sequence_mse(preds, targets, jnp.array([True, True, False, False])))
        1.0
    """
    predictions = _checks.floating(predictions, "predictions")
    if jnp.shape(targets) != predictions.shape:
        raise ValueError(f"targets: expected shape {predictions.shape} (as predictions), got {jnp.shape(targets)}")
    per_step = jnp.mean((predictions - jnp.asarray(targets, predictions.dtype)) ** 2, axis=-1)
    return _masked_mean(per_step, mask)


def last_step(ys: Array, length: Array | int | None = None) -> Array:
    """The output at the last valid step: ``ys[length - 1]`` (``ys[-1]`` without a length).

    Args:
      ys: ``[t, o]`` for one sequence (vmap for a batch).
      length: number of valid steps (0 gives zeros).

    Example:
        >>> import jax.numpy as jnp, rnnjax as rj
        >>> rj.losses.last_step(jnp.arange(5.0)[:, None], 3).tolist()
        [2.0]
    """
    if length is None:
        return ys[-1]
    length = jnp.asarray(length)
    last = jnp.take(ys, jnp.maximum(length - 1, 0), axis=0)
    return jnp.where(length > 0, last, jnp.zeros_like(last))  # no valid step: zeros, not ys[-1]


def last_step_mse(ys: Array, targets: Array, length: Array | int | None = None) -> Array:
    """Squared error of the output at the last valid step, averaged over features.

    Args:
      ys: ``[t, o]`` for one sequence.
      targets: ``[o]``.
      length: valid steps (None: ``t``).

    Example:
        >>> import jax.numpy as jnp, rnnjax as rj
        >>> float(rj.losses.last_step_mse(jnp.ones((5, 2)), jnp.zeros(2), 3))
        1.0
    """
    return jnp.mean((last_step(ys, length) - targets) ** 2)
