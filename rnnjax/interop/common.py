"""What the converters share: dtypes and arrays, the cells of a layer in torch's order, and the
check of params given to the ``to_*`` converters."""

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._src import checks
from rnnjax.cells.base import short_repr
from rnnjax.layers import RNN, Bidirectional, Stack, as_layer
from rnnjax.typing import Cell

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


# --- dtypes and arrays ---------------------------------------------------------------------------


def x64_enabled() -> bool:
    return jax.dtypes.canonicalize_dtype(np.float64) == np.float64


def target_dtype(source, dtype) -> np.dtype:
    """The dtype of converted params: ``dtype``, or the source's when ``dtype`` is None."""
    target = np.dtype(source if dtype is None else dtype)
    if not jnp.issubdtype(target, jnp.floating):
        raise TypeError(f"dtype: expected a floating dtype (float32, float64, bfloat16) or None, got {target}")
    if target == np.float64 and not x64_enabled():
        raise ValueError(
            "dtype: float64 params need jax_enable_x64 (jax.config.update('jax_enable_x64', True) or "
            "`with jax.enable_x64(True):`); pass dtype=jnp.float32 to convert to float32"
        )
    return target


def param_dtype(dtype: np.dtype):
    """jnp's scalar type for ``dtype`` (``jnp.float32``, ...), so converted cells equal and hash as user-built ones."""
    return getattr(jnp, np.dtype(dtype).name, dtype)


def as_numpy(value) -> np.ndarray:
    """A numpy array from a torch tensor, a Keras variable, a jax or numpy array."""
    if hasattr(value, "detach"):  # a torch tensor (no torch import needed)
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            return value.float().numpy().astype(jnp.bfloat16)
        return value.numpy()
    return np.asarray(value)


def jax_tree(params):
    return jax.tree_util.tree_map(jnp.asarray, params)


def swap_first_two_gates(w: np.ndarray) -> np.ndarray:
    """Keras GRU (z, r, h) <-> rnnjax (r, z, n): swap the first two gate blocks of the last axis."""
    a, b, c = np.split(w, 3, axis=-1)
    return np.concatenate([b, a, c], axis=-1)


def directions(layer) -> list:
    """The cells of ``layer`` in torch's order: layer 0 forward, layer 0 backward, layer 1 forward, ..."""
    if isinstance(layer, Cell):
        return [layer]
    if isinstance(layer, RNN):
        return [layer.cell]
    if isinstance(layer, Bidirectional):
        return [layer.forward.cell, layer.backward.cell]
    if isinstance(layer, Stack):
        return [cell for sub in layer.layers for cell in directions(sub)]
    raise TypeError(f"layer: expected a cell, RNN, Bidirectional or Stack, got {type(layer).__name__}")


# --- params given to the to_* converters ---------------------------------------------------------


def check_params(layer, params, argument: str = "layer") -> None:
    """``params`` must be what ``layer.init`` gives (a cell is ``RNN(cell)``): the same types and
    shapes, floating-point arrays; a ``TypeError``/``ValueError`` names the first entry that is not."""
    layer = as_layer(layer)
    for cell in directions(layer):  # raises for other layers
        if not isinstance(cell, Cell):
            raise TypeError(f"{argument}: expected rnnjax cells, got {type(cell).__name__}")
    owner = type(layer).__name__
    if isinstance(layer, RNN):
        owner = short_repr(layer.cell)

    def expected(input_size):
        return jax.eval_shape(lambda key: layer.init(key, input_size), jax.random.key(0))

    # the structure first, then the shapes for the input size read where init puts it
    checks.params_like(params, expected(1), owner, shapes=False)
    first, p = layer, params
    while not isinstance(first, RNN):
        first, p = (first.layers[0], p[0]) if isinstance(first, Stack) else (first.forward, p.forward)
    checks.params_like(params, expected(first.cell.input_size(p)), owner)


def levels(layer, params) -> tuple[list, float]:
    """``([[(cell, params) per direction] per layer], dropout)`` of a layer that torch can hold."""
    layer = as_layer(layer)
    if isinstance(layer, Stack):
        return [_level(sub, p) for sub, p in zip(layer.layers, params, strict=True)], layer.dropout
    return [_level(layer, params)], 0.0


def _level(layer, params) -> list:
    if isinstance(layer, Bidirectional):
        if layer.merge != "concat":
            raise ValueError(f"layer: torch concatenates both directions; got Bidirectional(merge={layer.merge!r})")
        return [(layer.forward.cell, params.forward), (layer.backward.cell, params.backward)]
    if isinstance(layer, RNN):
        if layer.reverse:
            raise ValueError("layer: torch has no backward-only RNN; got RNN(reverse=True)")
        return [(layer.cell, params)]
    raise TypeError(f"layer: expected a cell, RNN, Bidirectional or Stack of them, got {type(layer).__name__}")
