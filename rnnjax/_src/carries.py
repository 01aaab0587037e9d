"""Carries as flat vectors: the bridges that initialise a decoder's carry from a vector."""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._src import numerics
from rnnjax.cells import DenseParams
from rnnjax.heads import Dense
from rnnjax.typing import Array, Carry


def flat_size(tree) -> int:
    """The total last-axis size of a carry's arrays."""
    return sum(leaf.shape[-1] for leaf in jax.tree_util.tree_leaves(tree))


def flatten(tree) -> Array:
    """All arrays ``[n_i]`` of a carry, concatenated: ``[sum n_i]``, in their widest dtype (a 16-bit
    LSTM keeps ``c`` in float32)."""
    leaves = jax.tree_util.tree_leaves(tree)
    dtype = functools.reduce(numerics.promote, [leaf.dtype for leaf in leaves])
    return jnp.concatenate([leaf.astype(dtype) for leaf in leaves], axis=-1)


def unflatten(z: Array, template) -> Any:
    """Split ``z [sum n_i]`` into a carry shaped (and typed) like ``template``."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    bounds = np.cumsum([leaf.shape[-1] for leaf in leaves])[:-1].tolist()
    parts = jnp.split(z, bounds, axis=-1)
    return treedef.unflatten([p.astype(leaf.dtype) for p, leaf in zip(parts, leaves, strict=True)])


def bridge(params: DenseParams, z: Array, template) -> Any:
    """``tanh(z W + b)``, split into a carry like ``template`` (every array, e.g. both h and c)."""
    return unflatten(Dense(flat_size(template), activation=jnp.tanh).apply(params, z), template)


def hidden(carry: Carry) -> Array:
    """The hidden vector in a cell's carry: its first array (``h`` of an LSTM/GRU/Elman carry);
    for a :class:`~rnnjax.StackedCell`'s tuple of carries, the top cell's."""
    while isinstance(carry, tuple) and not hasattr(carry, "_fields"):
        carry = carry[-1]
    return jax.tree_util.tree_leaves(carry)[0]
