"""Flax linen: ``SimpleCell``/``LSTMCell``/``GRUCell`` variables from and to rnnjax params."""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.cells import (
    ElmanCell,
    ElmanParams,
    GRUCell,
    GRUParams,
    LSTMCell,
    LSTMParams,
    ProjectedLSTMParams,
)
from rnnjax.interop import common
from rnnjax.typing import Params

# --- Flax ----------------------------------------------------------------------------------------


def _flax_activation(fn) -> str:
    names = {jnp.tanh: "tanh", jax.nn.relu: "relu", jax.nn.sigmoid: "sigmoid"}
    for known, name in names.items():
        if fn is known:
            return name
    return repr(fn)


def _flax_gated_check(module) -> None:
    gate, act = _flax_activation(module.gate_fn), _flax_activation(module.activation_fn)
    if (gate, act) != ("sigmoid", "tanh"):
        raise ValueError(f"cell_module: rnnjax gated cells use gate_fn=sigmoid, activation_fn=tanh, got {gate}, {act}")


def _unwrap_variables(variables) -> Mapping:
    if variables is None:
        raise ValueError("variables: a linen cell needs its variables (from cell.init or nn.RNN(cell).init)")
    tree = variables.get("params", variables)
    if set(tree) == {"cell"}:  # the variables of nn.RNN(cell)
        tree = tree["cell"]
    return tree


def from_flax(cell_module, variables: Mapping | None = None, *, dtype: Any = jnp.float32) -> tuple[Any, Params]:
    """An rnnjax cell and its params computing what a Flax recurrent cell computes.

    Linen ``SimpleCell``, ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell`` with their
    ``variables`` (``{"params": ...}``, the bare params, or the variables of
    ``nn.RNN(cell)``); or an NNX ``SimpleCell``, ``LSTMCell``, ``OptimizedLSTMCell``,
    ``GRUCell`` module, which holds its own weights (``variables=None``). Flax stores
    weights features-last, gates in rnnjax's order. The per-gate Dense biases sum into
    rnnjax's ``b``; linen's GRU bias of ``hn`` becomes ``b_h``'s ``n`` block (NNX's GRU
    has none: ``b_h = 0``). Flax's LSTM carry is ``(c, h)``, rnnjax's ``LSTMCarry(h, c)``.

    Args:
      cell_module: the Flax cell (linen or NNX).
      variables: the linen cell's variables; None for an NNX cell.
      dtype: dtype of the params (float32); None keeps Flax's.

    Returns:
      ``(cell, params)``; ``rj.unroll(cell, params, xs)``, or ``rj.RNN(cell)`` for a layer.

    Example:
        >>> import flax.linen as nn, jax, jax.numpy as jnp, rnnjax as rj
        >>> flax_cell = nn.GRUCell(4)
        >>> x, h = jnp.ones(3), jnp.zeros(4)
        >>> variables = flax_cell.init(jax.random.key(0), h, x)
        >>> cell, params = rj.interop.from_flax(flax_cell, variables)
        >>> cell
        GRUCell(..., hidden_size=4, reset_after=True)
        >>> _, y_flax = flax_cell.apply(variables, h, x)
        >>> _, y = cell.step(params, rj.HiddenCarry(h), x)
        >>> bool(jnp.allclose(y, y_flax, atol=1e-6))
        True
    """
    import flax.linen as nn
    from flax import nnx

    if isinstance(cell_module, nn.Module):
        tree = {
            k: {name: common.as_numpy(v) for name, v in leaf.items()}
            for k, leaf in _unwrap_variables(variables).items()
        }
    elif isinstance(cell_module, nnx.Module):
        if variables is not None:
            raise ValueError("variables: an NNX cell holds its own weights; pass variables=None")
        tree = None
    else:
        raise TypeError(f"cell_module: expected a Flax linen or NNX cell, got {type(cell_module).__name__}")

    def dense(name, field="kernel"):
        if tree is not None:
            return tree[name][field]
        return common.as_numpy(getattr(getattr(cell_module, name), field)[...])

    if isinstance(cell_module, nn.SimpleCell | nnx.SimpleCell):
        if cell_module.residual:
            raise ValueError("cell_module: SimpleCell(residual=True) has no rnnjax equivalent")
        names = ("i", "h") if tree is not None else ("dense_i", "dense_h")
        w_i, w_h, b = dense(names[0]), dense(names[1]), dense(names[0], "bias")
        target = common.target_dtype(w_i.dtype, dtype)
        hidden = w_h.shape[-1]
        cell = ElmanCell(
            hidden, activation=_flax_activation(cell_module.activation_fn), param_dtype=common.param_dtype(target)
        )
        params = ElmanParams(w_i, w_h, b)
    elif isinstance(cell_module, nn.LSTMCell | nn.OptimizedLSTMCell | nnx.LSTMCell):
        _flax_gated_check(cell_module)
        i_names = ("ii", "if", "ig", "io") if tree is not None else ("ii", "if_", "ig", "io")
        w_i = np.concatenate([dense(n) for n in i_names], axis=-1)
        w_h = np.concatenate([dense(n) for n in ("hi", "hf", "hg", "ho")], axis=-1)
        b = np.concatenate([dense(n, "bias") for n in ("hi", "hf", "hg", "ho")], axis=-1)
        target = common.target_dtype(w_i.dtype, dtype)
        cell, params = LSTMCell(w_h.shape[0], param_dtype=common.param_dtype(target)), LSTMParams(w_i, w_h, b)
    elif isinstance(cell_module, nnx.OptimizedLSTMCell):
        _flax_gated_check(cell_module)
        w_i, w_h, b = dense("dense_i"), dense("dense_h"), dense("dense_h", "bias")
        target = common.target_dtype(w_i.dtype, dtype)
        cell, params = LSTMCell(w_h.shape[0], param_dtype=common.param_dtype(target)), LSTMParams(w_i, w_h, b)
    elif isinstance(cell_module, nn.GRUCell):
        _flax_gated_check(cell_module)
        w_i = np.concatenate([dense(n) for n in ("ir", "iz", "in")], axis=-1)
        w_h = np.concatenate([dense(n) for n in ("hr", "hz", "hn")], axis=-1)
        b = np.concatenate([dense(n, "bias") for n in ("ir", "iz", "in")], axis=-1)
        b_hn = dense("hn", "bias")
        b_h = np.concatenate([np.zeros_like(b_hn), np.zeros_like(b_hn), b_hn])
        target = common.target_dtype(w_i.dtype, dtype)
        cell, params = GRUCell(w_h.shape[0], param_dtype=common.param_dtype(target)), GRUParams(w_i, w_h, b, b_h)
    elif isinstance(cell_module, nnx.GRUCell):
        _flax_gated_check(cell_module)
        w_i, w_h, b = dense("dense_i"), dense("dense_h"), dense("dense_i", "bias")
        target = common.target_dtype(w_i.dtype, dtype)
        cell, params = (
            GRUCell(w_h.shape[0], param_dtype=common.param_dtype(target)),
            GRUParams(w_i, w_h, b, np.zeros_like(b)),
        )
    else:
        raise TypeError(f"cell_module: rnnjax has no equivalent of the Flax cell {type(cell_module).__name__}")
    params = jax.tree_util.tree_map(lambda a: np.asarray(a).astype(target), params)
    return cell, common.jax_tree(params)


def to_flax(cell, params: Params) -> dict:
    """Flax linen variables ``{"params": ...}`` for an rnnjax cell's params.

    ``ElmanCell`` -> ``nn.SimpleCell`` (pass ``activation_fn=jax.nn.relu`` for relu),
    ``LSTMCell`` -> ``nn.LSTMCell`` or ``nn.OptimizedLSTMCell`` (same layout), ``GRUCell``
    (reset-after) -> ``nn.GRUCell``. The GRU's ``b_h`` blocks r, z move into the input
    biases ``ir``, ``iz`` (same function); its ``n`` block is ``hn``'s bias. from_flax ->
    to_flax gives the same values.

    Args:
      cell: the rnnjax cell.
      params: its params.

    Returns:
      ``{"params": {...}}`` for ``flax_cell.apply`` (wrap the inner dict as
      ``{"params": {"cell": ...}}`` for ``nn.RNN(flax_cell)``).

    Example:
        >>> import flax.linen as nn, jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.GRUCell(4)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> variables = rj.interop.to_flax(cell, params)
        >>> sorted(variables["params"])
        ['hn', 'hr', 'hz', 'in', 'ir', 'iz']
        >>> _, y_flax = nn.GRUCell(4).apply(variables, jnp.zeros(4), jnp.ones(3))
        >>> _, y = cell.step(params, cell.initial_carry(params), jnp.ones(3))
        >>> bool(jnp.allclose(y, y_flax, atol=1e-6))
        True
    """
    common.check_params(cell, params, "cell")
    if getattr(params, "carry0", None) is not None:
        raise ValueError("params: a learned initial carry (carry0) has no Flax equivalent")
    w_i, w_h, b = np.asarray(params.w_i), np.asarray(params.w_h), np.asarray(params.b)
    if isinstance(cell, ElmanCell):
        tree = {"i": {"kernel": w_i, "bias": b}, "h": {"kernel": w_h}}
    elif isinstance(cell, LSTMCell):
        if params.peephole is not None:
            raise ValueError("params: Flax's LSTM cells have no peepholes")
        if isinstance(params, ProjectedLSTMParams):
            raise ValueError("params: Flax's LSTM cells have no output projection (proj_size)")
        tree = {}
        for gate, wi, wh, bb in zip("ifgo", *(np.split(a, 4, axis=-1) for a in (w_i, w_h, b)), strict=True):
            tree["i" + gate] = {"kernel": wi}
            tree["h" + gate] = {"kernel": wh, "bias": bb}
    elif isinstance(cell, GRUCell):
        if not cell.reset_after:
            raise ValueError("cell: Flax's GRUCell is reset-after; got GRUCell(reset_after=False)")
        b_h = np.asarray(params.b_h)
        tree = {}
        for k, (gate, wi, wh, bb, bh) in enumerate(
            zip("rzn", *(np.split(a, 3, axis=-1) for a in (w_i, w_h, b, b_h)), strict=True)
        ):
            tree["i" + gate] = {"kernel": wi, "bias": bb + bh if k < 2 else bb}
            tree["h" + gate] = {"kernel": wh}
        tree["hn"]["bias"] = np.split(b_h, 3)[2]
    else:
        raise TypeError(f"cell: Flax has no equivalent of {type(cell).__name__}")
    return {"params": common.jax_tree(tree)}
