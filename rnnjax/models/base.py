"""What the models share: the encoder checks and walk (final carries and outputs of each direction),
and inputs (token ids or features); the dtype options are rnnjax._src.dtypes."""

from typing import NamedTuple

import jax
import numpy as np

from rnnjax._src import checks, masks
from rnnjax._src.dropout import dropout
from rnnjax.heads import Embedding
from rnnjax.layers import RNN, Bidirectional, Stack, as_layer
from rnnjax.typing import Array, Carry, Params, PRNGKey


def check_encoder(encoder, name: str = "encoder"):
    """A cell becomes an ``RNN``; the layer (or a ``Stack``'s last layer) must be an RNN or Bidirectional."""
    layer = as_layer(encoder, name)
    top = layer
    while isinstance(top, Stack):
        top = top.layers[-1]
    if not isinstance(top, RNN | Bidirectional):
        raise TypeError(
            f"{name}: expected a cell, an rnnjax.RNN, Bidirectional, or a Stack whose last layer is one of "
            f"these, got {type(encoder).__name__}"
        )
    return layer


def vector(x, size: int, name: str, letter: str) -> Array:
    x = checks.floating(x, name)
    if x.shape != (size,):
        hint = " (one example; batch with jax.vmap)" if x.ndim > 1 else ""
        raise ValueError(f"{name}: expected shape [{letter}] = ({size},){hint}, got shape {tuple(x.shape)}")
    return x


def nonempty(xs: Array, name: str) -> None:
    if xs.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one step, got shape {tuple(xs.shape)}")


class Final(NamedTuple):
    """What one direction of the encoder's top layer ends with."""

    carry: Carry  # the carry after the direction's last valid step
    output: Array  # [o] that step's output: at the last valid step going forward, the first going backward


def final_output(ys: Array, length: Array | None, mask: Array | None, reverse: bool) -> Array:
    """The output of the step a direction processes last among the valid ones (zeros if none is valid)."""
    valid = masks.valid_steps(ys.shape[0], length, mask)
    return ys[masks.last_valid_index(valid, ys.shape[0], reverse)]


def run_encoder(layer, params: Params, xs: Array, length: Array | None, key: PRNGKey | None, mask=None):
    """``layer.apply(params, xs, length=length, mask=mask, key=key)``, and the final carry and output of each
    direction of the top layer: ``(ys [t, o], (final,))`` or ``(ys, (forward_final, backward_final))``."""
    if isinstance(layer, RNN):
        carry, ys = layer.apply_with_carry(params, xs, length=length, mask=mask, key=key)
        return ys, (Final(carry, final_output(ys, length, mask, layer.reverse)),)
    if isinstance(layer, Bidirectional):  # the keys Bidirectional.apply gives its directions
        key_f, key_b = (None, None) if key is None else jax.random.split(key)
        ys_f, finals_f = run_encoder(layer.forward, params.forward, xs, length, key_f, mask)
        ys_b, finals_b = run_encoder(layer.backward, params.backward, xs, length, key_b, mask)
        return layer.merge_outputs(ys_f, ys_b), finals_f + finals_b
    # A Stack: what Stack.apply does (same keys, same dropout between layers), keeping the top's finals.
    n = len(layer.layers)
    if len(params) != n:
        raise ValueError(f"params: expected {n} layer params, got {len(params)}")
    keys = [None] * (2 * n) if key is None else list(jax.random.split(key, 2 * n))
    for i, (sub, p) in enumerate(zip(layer.layers[:-1], params[:-1], strict=True)):
        xs = dropout(sub.apply(p, xs, length=length, mask=mask, key=keys[i]), layer.dropout, keys[n + i])
    return run_encoder(layer.layers[-1], params[-1], xs, length, keys[n - 1], mask)


def top(layer):
    while isinstance(layer, Stack):
        layer = layer.layers[-1]
    return layer


def final_carry_templates(layer, params: Params) -> tuple[Carry, ...]:
    """The initial carries of the top layer's directions (the shapes of the finals)."""
    while isinstance(layer, Stack):
        layer, params = layer.layers[-1], params[-1]
    if isinstance(layer, RNN):
        return (layer.cell.initial_carry(params),)
    return (
        layer.forward.cell.initial_carry(params.forward),
        layer.backward.cell.initial_carry(params.backward),
    )


def same_shapes(a, b) -> bool:
    if jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(b):
        return False
    return all(
        np.shape(x) == np.shape(y)
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )


def inputs(xs, embed_params, vocab_size: int | None, input_size: int) -> Array:
    """``xs [t, f]`` checked, or token ids ``[t]`` embedded to ``[t, f]`` when there is a vocabulary."""
    if vocab_size is None:
        xs = checks.sequence(xs, input_size, "xs")
    else:
        ids = checks.token_sequence(xs, "xs", vocab_size)
        xs = Embedding(vocab_size, input_size).apply(embed_params, ids)
    nonempty(xs, "xs")
    return xs


def check_front(vocab_size: int | None, input_size: int) -> None:
    checks.positive_int(input_size, "input_size")
    if vocab_size is not None:
        checks.positive_int(vocab_size, "vocab_size")
