"""Lengths as masks: the one definition of which steps are valid."""

import jax.numpy as jnp

from rnnjax.typing import Array


def valid_mask(length, num_steps: int) -> Array:
    """``mask[..., t] = t < length[...]`` (boolean ``[..., t]``); ``length=None``: all ``t`` steps valid."""
    if length is None:
        return jnp.ones((num_steps,), bool)
    length = jnp.asarray(length)
    return jnp.arange(num_steps, dtype=length.dtype) < length[..., None]


def zero_past(ys: Array, length) -> Array:
    """``ys [t, ...]`` with the steps ``>= length`` set to zero (``length=None``: ``ys``)."""
    if length is None:
        return ys
    valid = valid_mask(length, ys.shape[0]).reshape(-1, *([1] * (ys.ndim - 1)))
    return jnp.where(valid, ys, jnp.zeros_like(ys))
