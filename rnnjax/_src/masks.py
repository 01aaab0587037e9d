"""Lengths and per-step masks as one boolean ``valid [t]``: the one definition of which steps count."""

import jax.numpy as jnp

from rnnjax.typing import Array


def valid_mask(length, num_steps: int) -> Array:
    """``mask[..., t] = t < length[...]`` (boolean ``[..., t]``); ``length=None``: all ``t`` steps valid."""
    if length is None:
        return jnp.ones((num_steps,), bool)
    length = jnp.asarray(length)
    return jnp.arange(num_steps, dtype=length.dtype) < length[..., None]


def valid_steps(num_steps: int, length=None, mask=None) -> Array | None:
    """The valid steps of one sequence, ``[t]`` booleans: ``t < length`` and ``mask[t]``; None when all are valid.

    ``length`` and ``mask`` are already checked (``checks.length``, ``checks.step_mask``).
    """
    if length is None:
        return mask
    valid = valid_mask(length, num_steps)
    return valid if mask is None else valid & mask


def zero_past(ys: Array, length) -> Array:
    """``ys [t, ...]`` with the steps ``>= length`` set to zero (``length=None``: ``ys``)."""
    if length is None:
        return ys
    return zero_invalid(ys, valid_mask(length, ys.shape[0]))


def zero_invalid(ys: Array, valid: Array | None) -> Array:
    """``ys [t, ...]`` with the steps where ``valid [t]`` is False set to zero (``valid=None``: ``ys``)."""
    if valid is None:
        return ys
    valid = valid.reshape(-1, *([1] * (ys.ndim - 1)))
    return jnp.where(valid, ys, jnp.zeros_like(ys))


def seen_valid(valid: Array, reverse: bool = False) -> Array:
    """``[t]`` booleans: whether a valid step came at or before ``t`` in processing order (after, if ``reverse``)."""
    order = valid[::-1] if reverse else valid
    seen = jnp.cumsum(order.astype(jnp.int32)) > 0
    return seen[::-1] if reverse else seen


def last_valid_index(valid: Array | None, num_steps: int, reverse: bool = False) -> Array:
    """The step processed last among the valid ones: the highest valid ``t`` (the lowest if ``reverse``).

    0 when no step is valid (``valid=None``: ``t - 1``, or 0 if ``reverse``).
    """
    if valid is None:
        return jnp.asarray(0 if reverse else num_steps - 1)
    if reverse:
        return jnp.argmax(valid)  # the first True (0 if none)
    return jnp.where(jnp.any(valid), num_steps - 1 - jnp.argmax(valid[::-1]), 0)
