"""Inverted dropout: the one definition the layers and models use."""

import jax
import jax.numpy as jnp

from rnnjax.typing import Array, PRNGKey


def dropout(x: Array, rate: float, key: PRNGKey | None) -> Array:
    """Each entry of ``x`` zeroed with probability ``rate``, the rest scaled by ``1 / (1 - rate)``;
    ``x`` itself without a ``key`` or at rate 0 (inference)."""
    if rate == 0 or key is None:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))
