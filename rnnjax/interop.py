"""Exact weight conversion between rnnjax and torch, Keras and Flax.

Every converter maps weights one to one (transposes, gate permutations, bias sums), so
the converted layer computes the same function as the source, up to floating-point
rounding. The conventions (see ``docs/interop.md`` for the full table):

=============  ===============  ======================  ===========================  ==============
framework      LSTM gates       GRU gates               biases                       LSTM carry
=============  ===============  ======================  ===========================  ==============
rnnjax         i, f, g, o       r, z, n (reset-after)   one ``b`` (+ ``b_h``: GRU)   ``(h, c)``
torch          i, f, g, o       r, z, n                 ``b_ih`` and ``b_hh``        ``(h, c)``
Keras          i, f, c, o       z, r, h                 one (GRU: ``[2, 3h]``)       ``[h, c]``
Flax linen     i, f, g, o       r, z, n                 per-gate Dense               ``(c, h)``
=============  ===============  ======================  ===========================  ==============

torch stores weights ``[gates*h, f]``; rnnjax, Keras and Flax store them features-last
``[f, gates*h]``. torch's two biases ``b_ih + b_hh`` are summed into rnnjax's one ``b``
for ``nn.RNN``/``nn.LSTM``; a GRU keeps both (``b = b_ih``, ``b_h = b_hh``), because
the recurrent bias of the candidate ``n`` sits inside the reset gate's product.

Dtypes: the ``from_*`` converters return float32 params by default; ``dtype=None``
keeps the source dtype (float64 needs ``jax_enable_x64``), and any other floating dtype
casts. The ``to_*`` converters keep the params' dtype.

The layers returned by :func:`from_torch` are ordinary rnnjax sequence layers; their
``apply`` runs ONE sequence ``[t, f]`` (batch with :func:`jax.vmap`).
:func:`rnnjax.layers.apply_with_carry` also returns the final carries, and :func:`to_torch_carry`
lays them out as torch's ``(h_n, c_n)``.

torch and Keras are imported lazily, inside the functions that need them.
"""

import os
import pickle
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._src import checks
from rnnjax.cells import (
    ElmanCell,
    ElmanParams,
    GRUCell,
    GRUParams,
    HiddenCarry,
    LSTMCarry,
    LSTMCell,
    LSTMParams,
)
from rnnjax.layers import RNN, Bidirectional, BidirectionalParams, Stack, as_layer
from rnnjax.typing import Array, Carry, Cell, Params

__all__ = [
    "from_flax",
    "from_keras",
    "from_torch",
    "from_torch_carry",
    "from_torch_state_dict",
    "load_torch_state_dict",
    "to_flax",
    "to_keras",
    "to_torch",
    "to_torch_carry",
    "to_torch_module",
]

_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_TORCH_MODES = {"RNN_TANH": ("rnn", "tanh"), "RNN_RELU": ("rnn", "relu"), "LSTM": ("lstm", None), "GRU": ("gru", None)}
_TORCH_KEY = re.compile(r"^(weight|bias)_(ih|hh)_l(\d+)(_reverse)?$")


# --- dtypes and arrays ---------------------------------------------------------------------------


def _x64_enabled() -> bool:
    return jax.dtypes.canonicalize_dtype(np.float64) == np.float64


def _target_dtype(source, dtype) -> np.dtype:
    """The dtype of converted params: ``dtype``, or the source's when ``dtype`` is None."""
    target = np.dtype(source if dtype is None else dtype)
    if not jnp.issubdtype(target, jnp.floating):
        raise TypeError(f"dtype: expected a floating dtype (float32, float64, bfloat16) or None, got {target}")
    if target == np.float64 and not _x64_enabled():
        raise ValueError(
            "dtype: float64 params need jax_enable_x64 (jax.config.update('jax_enable_x64', True) or "
            "`with jax.enable_x64(True):`); pass dtype=jnp.float32 to convert to float32"
        )
    return target


def _param_dtype(dtype: np.dtype):
    """jnp's scalar type for ``dtype`` (``jnp.float32``, ...), so converted cells equal and hash as user-built ones."""
    return getattr(jnp, np.dtype(dtype).name, dtype)


def _numpy(value) -> np.ndarray:
    """A numpy array from a torch tensor, a Keras variable, a jax or numpy array."""
    if hasattr(value, "detach"):  # a torch tensor (no torch import needed)
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            return value.float().numpy().astype(jnp.bfloat16)
        return value.numpy()
    return np.asarray(value)


def _jax_tree(params):
    return jax.tree_util.tree_map(jnp.asarray, params)


def _swap_first_two_gates(w: np.ndarray) -> np.ndarray:
    """Keras GRU (z, r, h) <-> rnnjax (r, z, n): swap the first two gate blocks of the last axis."""
    a, b, c = np.split(w, 3, axis=-1)
    return np.concatenate([b, a, c], axis=-1)


# --- carries between torch and rnnjax ----------------------------------------------------------


def _directions(layer) -> list:
    """The cells of ``layer`` in torch's order: layer 0 forward, layer 0 backward, layer 1 forward, ..."""
    if isinstance(layer, Cell):
        return [layer]
    if isinstance(layer, RNN):
        return [layer.cell]
    if isinstance(layer, Bidirectional):
        return [layer.forward.cell, layer.backward.cell]
    if isinstance(layer, Stack):
        return [cell for sub in layer.layers for cell in _directions(sub)]
    raise TypeError(f"layer: expected a cell, RNN, Bidirectional or Stack, got {type(layer).__name__}")


def _flat_carries(layer, carry) -> list:
    if isinstance(layer, Bidirectional):
        return list(carry)
    if isinstance(layer, Stack):
        return [c for sub, cs in zip(layer.layers, carry, strict=True) for c in _flat_carries(sub, cs)]
    return [carry]


def _unflat_carries(layer, flat: list):
    if isinstance(layer, Bidirectional):
        return (flat.pop(0), flat.pop(0))
    if isinstance(layer, Stack):
        return tuple(_unflat_carries(sub, flat) for sub in layer.layers)
    return flat.pop(0)


def to_torch_carry(layer, carry: Carry) -> Array | tuple[Array, Array]:
    """torch's final carry ``h_n`` (``(h_n, c_n)`` for an LSTM) from a nested rnnjax carry.

    Args:
      layer: the sequence layer (as from :func:`from_torch`).
      carry: its carry, nested as :func:`rnnjax.layers.apply_with_carry` returns it, leaves ``[*batch, h]``.

    Returns:
      ``h_n: [num_layers * num_directions, *batch, h]`` (and ``c_n`` of the same shape for
      an LSTM), layer 0 forward first, then layer 0 backward, layer 1 forward, ... as torch.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> bidirectional = rj.Bidirectional(rj.GRUCell(4), rj.GRUCell(4))
        >>> layer = rj.Stack([bidirectional, bidirectional])
        >>> params = layer.init(jax.random.key(0), 3)
        >>> h_n = rj.interop.to_torch_carry(layer, rj.layers.initial_carry(layer, params, (5,)))
        >>> h_n.shape
        (4, 5, 4)
    """
    flat = _flat_carries(layer, carry)
    h = jnp.stack([c.h for c in flat])
    if all(isinstance(c, LSTMCarry) for c in flat):
        return h, jnp.stack([c.c for c in flat])
    if any(isinstance(c, LSTMCarry) for c in flat):
        raise ValueError("carry: mixes LSTM and non-LSTM carries, which torch cannot hold in one module")
    return h


def from_torch_carry(layer, h, c=None, *, dtype: Any = jnp.float32) -> Carry:
    """A nested rnnjax carry from torch's ``h_0`` (and ``c_0`` for an LSTM).

    Args:
      layer: the sequence layer (as from :func:`from_torch`).
      h: ``[num_layers * num_directions, *batch, h]``, a torch tensor or an array.
      c: the LSTM cell state, same shape; required for LSTM layers.
      dtype: dtype of the result (None keeps the source's).

    Returns:
      The carry nested as :func:`rnnjax.layers.initial_carry`, for :func:`rnnjax.layers.apply_with_carry`.

    Example:
        >>> import numpy as np, rnnjax as rj
        >>> layer = rj.Bidirectional(rj.GRUCell(4), rj.GRUCell(4))
        >>> fwd, bwd = rj.interop.from_torch_carry(layer, np.zeros((2, 4)))
        >>> fwd.h.shape
        (4,)
    """
    cells = _directions(layer)
    h = _numpy(h)
    h = h.astype(_target_dtype(h.dtype, dtype))
    if h.shape[0] != len(cells):
        raise ValueError(
            f"h: expected a leading axis of num_layers * num_directions = {len(cells)}, got shape {h.shape}"
        )
    is_lstm = [isinstance(cell, LSTMCell) for cell in cells]
    if any(is_lstm) and c is None:
        raise ValueError("c: an LSTM layer needs the cell state c_0 too, got None")
    if c is not None:
        c = _numpy(c).astype(h.dtype)
        if c.shape != h.shape:
            raise ValueError(f"c: expected the shape of h {h.shape}, got {c.shape}")
    flat = [
        LSTMCarry(jnp.asarray(h[i]), jnp.asarray(c[i])) if lstm else HiddenCarry(jnp.asarray(h[i]))
        for i, lstm in enumerate(is_lstm)
    ]
    return _unflat_carries(layer, flat)


# --- torch ---------------------------------------------------------------------------------------


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a torch state dict from a file, without unpickling arbitrary objects.

    ``.safetensors`` files are read with the ``safetensors`` package (no torch needed);
    any other file with ``torch.load(path, weights_only=True, map_location="cpu")``,
    which only rebuilds tensors and containers and refuses every other object.

    Args:
      path: a file written by ``torch.save(module.state_dict(), path)`` or by
        ``safetensors.torch.save_file``.

    Returns:
      ``{name: numpy array}`` in the file's order.

    Raises:
      ImportError: the file needs ``safetensors`` or ``torch`` and it is not installed.
      ValueError: the file is not a torch checkpoint (empty, text, truncated), holds other
        objects than tensors, or anything pickled that ``weights_only=True`` refuses.

    Example:
        >>> import os, tempfile, numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "rnn.pt")
        >>> import torch  # doctest: +SKIP
        >>> torch.save(torch.nn.GRU(3, 4).state_dict(), path)  # doctest: +SKIP
        >>> sorted(load_torch_state_dict(path))  # doctest: +SKIP
        ['bias_hh_l0', 'bias_ih_l0', 'weight_hh_l0', 'weight_ih_l0']
    """
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError as e:
            raise ImportError(
                f"path: reading {path!r} needs the 'safetensors' package (pip install safetensors)"
            ) from e
        return dict(load_file(path))
    with open(path, "rb") as f:
        head = f.read(8)
    # torch.save writes a zip archive ("PK"); torch's legacy format is a pickle (protocol 2+: 0x80)
    if not head.startswith((b"PK", b"\x80")):
        raise ValueError(
            f"path: {path!r} is not a torch checkpoint (a file written by torch.save, or a .safetensors file): "
            + ("it is empty" if not head else f"it starts with {head!r}")
        )
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"path: reading {path!r} needs 'torch' (pip install torch), or save it as .safetensors"
        ) from e
    try:
        loaded = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"path: {path!r} holds objects that torch.load(weights_only=True) refuses to unpickle; "
            f"save a plain state dict (torch.save(module.state_dict(), path)): {e}"
        ) from e
    except (EOFError, KeyError, RuntimeError) as e:
        raise ValueError(f"path: {path!r} is not a readable torch checkpoint (truncated or corrupt?): {e!r}") from e
    if not isinstance(loaded, Mapping):
        raise ValueError(
            f"path: expected {path!r} to hold a state dict (a mapping of names to tensors), got {type(loaded).__name__}"
        )
    out = {}
    for name, value in loaded.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"path: expected {path!r} to hold a state dict of tensors, but {name!r} holds a "
                f"{type(value).__name__} (pick the module's state dict out of the checkpoint first)"
            )
        out[name] = _numpy(value)
    return out


def _torch_kind(kind: str, nonlinearity: str) -> tuple[str, str]:
    kind = kind.lower()
    if kind in ("rnn_tanh", "rnn_relu"):
        kind, nonlinearity = "rnn", kind[4:]
    if kind not in _GATES:
        raise ValueError(f"kind: expected one of 'rnn', 'rnn_tanh', 'rnn_relu', 'lstm', 'gru', got {kind!r}")
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
    return kind, nonlinearity


def _torch_hidden_size(shapes: dict[str, tuple], gates: int) -> int | None:
    """The hidden size most of a state dict's tensors agree on (rows / gates, ``weight_hh``'s columns)."""
    votes = []
    for name, shape in shapes.items():
        is_weight = name.startswith("weight")
        if len(shape) == (2 if is_weight else 1) and shape[0] > 0 and shape[0] % gates == 0:
            votes.append(shape[0] // gates)
        if name.startswith("weight_hh") and len(shape) == 2 and shape[1] > 0:
            votes.append(shape[1])
    return Counter(votes).most_common(1)[0][0] if votes else None


def _checked_state_dict(entries: Mapping[str, Any], expected: dict[str, tuple], prefix: str, module: str) -> dict:
    """The numpy arrays of ``expected``'s keys, after checking every entry of a torch state dict.

    One ``ValueError`` names each tensor that is missing, not expected, not floating-point,
    of another dtype than most of them, or of the wrong shape (a ``None`` in an expected
    shape is the input size, when it could not be read).
    """
    arrays = {name: _numpy(entries[name]) for name in expected if name in entries}
    floating = [a.dtype for a in arrays.values() if jnp.issubdtype(a.dtype, jnp.floating)]
    common = Counter(floating).most_common(1)[0][0] if floating else None
    problems = []
    for name, shape in expected.items():
        where = f"state_dict[{prefix + name!r}]"
        if name not in arrays:
            problems.append(f"{where}: missing")
            continue
        value, array = entries[name], arrays[name]
        if not jnp.issubdtype(array.dtype, jnp.floating):
            got = f"dtype {value.dtype}" if hasattr(value, "dtype") else type(value).__name__
            problems.append(f"{where}: expected a floating-point tensor, got {got}")
            continue
        if array.dtype != common:
            problems.append(f"{where}: expected dtype {common} (as the other tensors), got {array.dtype}")
        if len(array.shape) != len(shape) or any(e not in (None, g) for e, g in zip(shape, array.shape, strict=True)):
            want = str(shape).replace("None", "input_size")
            problems.append(f"{where}: expected shape {want}, got {tuple(array.shape)}")
    problems += [f"state_dict[{prefix + name!r}]: unexpected key" for name in entries if name not in expected]
    if problems:
        raise ValueError(f"state_dict: does not match {module}: " + "; ".join(problems))
    return arrays


def from_torch_state_dict(
    state_dict: Mapping[str, Any] | str | os.PathLike,
    kind: str,
    *,
    nonlinearity: str = "tanh",
    input_size: int | None = None,
    hidden_size: int | None = None,
    num_layers: int | None = None,
    bidirectional: bool | None = None,
    bias: bool | None = None,
    dropout: float = 0.0,
    prefix: str = "",
    dtype: Any = jnp.float32,
) -> tuple[Any, Params]:
    """An rnnjax layer and its params from the state dict of a torch ``nn.RNN``/``LSTM``/``GRU``.

    The configuration is read from the keys and shapes (the hidden size most tensors
    agree on); each size that is given is checked against them. One ``ValueError``
    names every tensor that is missing, unexpected (a key under ``prefix`` that torch's
    module would not have), of the wrong shape, not floating-point, or of another dtype
    than the rest, e.g. ``state_dict['weight_hh_l0']: expected shape (96, 32), got (96, 9)``.

    Args:
      state_dict: ``{name: tensor or array}``, or a path read by :func:`load_torch_state_dict`.
      kind: ``"lstm"``, ``"gru"``, ``"rnn"`` (``"rnn_tanh"``, ``"rnn_relu"``).
      nonlinearity: ``"tanh"`` or ``"relu"`` for ``kind="rnn"`` (not in the state dict).
      input_size: ``f``; read from ``weight_ih_l0`` when None.
      hidden_size: ``h``; read from ``weight_hh_l0`` when None.
      num_layers: read from the keys when None.
      bidirectional: read from the keys (``*_reverse``) when None.
      bias: whether the module has biases (``bias=False``: rnnjax biases are zeros);
        read from the keys when None.
      dropout: torch's ``dropout`` between layers, kept as ``Stack(dropout=)``.
      prefix: select the keys that start with it (e.g. ``"encoder.rnn."``), ignore the rest.
      dtype: dtype of the params; None keeps the state dict's.

    Returns:
      ``(layer, params)`` as :func:`from_torch`.

    Example:
        >>> import numpy as np, jax.numpy as jnp
        >>> rng = np.random.default_rng(0)
        >>> shapes = {"weight_ih_l0": (12, 3), "weight_hh_l0": (12, 4), "bias_ih_l0": (12,), "bias_hh_l0": (12,)}
        >>> state = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
        >>> layer, params = from_torch_state_dict(state, "gru")
        >>> layer.apply(params, jnp.ones((5, 3))).shape
        (5, 4)
        >>> from_torch_state_dict(state, "lstm")
        Traceback (most recent call last):
        ...
        ValueError: state_dict: does not match torch.nn.LSTM(input_size=3, hidden_size=3, ...)
        (weight_hh_l0's shape (12, 4) fits kind='gru'): state_dict['weight_hh_l0']: expected shape (12, 3), got (12, 4)
    """
    if isinstance(state_dict, str | os.PathLike):
        state_dict = load_torch_state_dict(state_dict)
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"state_dict: expected a mapping of names to tensors or a path, got {type(state_dict).__name__}"
        )
    kind, nonlinearity = _torch_kind(kind, nonlinearity)
    for name in state_dict:
        if not isinstance(name, str):
            raise TypeError(f"state_dict: expected string keys (tensor names), got {name!r}")
    entries = {name[len(prefix) :]: value for name, value in state_dict.items() if name.startswith(prefix)}
    if any(name.startswith("weight_hr_l") for name in entries):
        raise NotImplementedError(
            "proj_size: LSTMs with projections (proj_size > 0, weight_hr_l* keys) are not supported by rnnjax"
        )
    found = [m for m in map(_TORCH_KEY.match, entries) if m]
    if not found:
        raise ValueError(
            f"state_dict: no torch RNN weights (weight_ih_l0, ...) under prefix {prefix!r}; keys: {sorted(state_dict)}"
        )
    # the configuration, read so that one stray or wrongly shaped tensor is reported as the wrong one
    weights = {(int(m.group(3)), bool(m.group(4))) for m in found if m.group(1) == "weight"}
    if num_layers is None:
        num_layers = 1
        while (num_layers, False) in weights:
            num_layers += 1
    bidirectional = (0, True) in weights if bidirectional is None else bidirectional
    if bias is None:
        bias = any(m.group(1) == "bias" and int(m.group(3)) < num_layers for m in found)
    shapes = {m.group(0): tuple(np.shape(entries[m.group(0)])) for m in found}
    if hidden_size is None:
        hidden_size = _torch_hidden_size(shapes, _GATES[kind])
    if input_size is None:
        input_size = shapes["weight_ih_l0"][1] if len(shapes.get("weight_ih_l0", ())) == 2 else None
    for name, value in (("hidden_size", hidden_size), ("input_size", input_size), ("num_layers", num_layers)):
        if value is not None:
            checks.positive_int(value, name)
    if hidden_size is None:
        raise ValueError(f"state_dict: cannot read hidden_size from the shapes {shapes}; pass hidden_size=")

    gates, num_dirs = _GATES[kind] * hidden_size, 2 if bidirectional else 1
    suffixes = ["", "_reverse"][:num_dirs]
    expected = {}
    for layer_index in range(num_layers):
        in_size = input_size if layer_index == 0 else num_dirs * hidden_size
        for s in suffixes:
            expected[f"weight_ih_l{layer_index}{s}"] = (gates, in_size)
            expected[f"weight_hh_l{layer_index}{s}"] = (gates, hidden_size)
            if bias:
                expected[f"bias_ih_l{layer_index}{s}"] = (gates,)
                expected[f"bias_hh_l{layer_index}{s}"] = (gates,)
    module = "torch.nn." + {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[kind]
    module += (
        f"(input_size={input_size}, hidden_size={hidden_size}, num_layers={num_layers}, bias={bias}, "
        f"bidirectional={bidirectional})"
    )
    hh = shapes.get("weight_hh_l0", ())
    fits = [k for k, g in _GATES.items() if k != kind and len(hh) == 2 and hh[1] and hh[0] == g * hh[1]]
    if fits:  # said only if some tensor does not match
        module += f" (weight_hh_l0's shape {hh} fits kind={fits[0]!r})"
    arrays = _checked_state_dict(entries, expected, prefix, module)
    target = _target_dtype(arrays["weight_ih_l0"].dtype, dtype)
    arrays = {k: v.astype(target) for k, v in arrays.items()}
    zeros = np.zeros((gates,), target)

    def direction(layer_index, s):
        w_i = arrays[f"weight_ih_l{layer_index}{s}"].T
        w_h = arrays[f"weight_hh_l{layer_index}{s}"].T
        b_ih = arrays.get(f"bias_ih_l{layer_index}{s}", zeros)
        b_hh = arrays.get(f"bias_hh_l{layer_index}{s}", zeros)
        if kind == "gru":
            return GRUCell(hidden_size, param_dtype=_param_dtype(target)), GRUParams(w_i, w_h, b_ih, b_hh)
        if kind == "lstm":
            return LSTMCell(hidden_size, param_dtype=_param_dtype(target)), LSTMParams(w_i, w_h, b_ih + b_hh)
        cell = ElmanCell(hidden_size, activation=nonlinearity, param_dtype=_param_dtype(target))
        return cell, ElmanParams(w_i, w_h, b_ih + b_hh)

    layers, params = [], []
    for layer_index in range(num_layers):
        parts = [direction(layer_index, s) for s in suffixes]
        if bidirectional:
            layers.append(Bidirectional(parts[0][0], parts[1][0]))
            params.append(BidirectionalParams(parts[0][1], parts[1][1]))
        else:
            layers.append(RNN(parts[0][0]))
            params.append(parts[0][1])
    params = _jax_tree(tuple(params))
    if num_layers == 1:
        return layers[0], params[0]
    return Stack(layers, dropout=float(dropout)), params


def from_torch(module, *, dtype: Any = jnp.float32) -> tuple[Any, Params]:
    """An rnnjax layer and its params computing what a torch ``nn.RNN``/``nn.LSTM``/``nn.GRU`` computes.

    One layer gives ``rj.RNN(cell)`` (``rj.Bidirectional(cell, cell)`` if bidirectional),
    several give ``rj.Stack([...], dropout=module.dropout)``. ``layer.apply(params, xs,
    length=n)`` on ONE sequence ``xs: [t, f]`` equals torch's output ``[t, D*h]`` for it
    (with a length: torch's ``pack_padded_sequence`` / ``pad_packed_sequence`` result, zeros
    past ``n``); vmap it for a batch. ``batch_first`` only changes torch's input layout, so
    it plays no part. ``bias=False`` gives zero biases.

    Weights are transposed to features-last (torch ``[g, f]`` -> rnnjax ``[f, g]``); the gate
    orders are the same (LSTM i, f, g, o; GRU r, z, n). For ``nn.RNN``/``nn.LSTM`` the two
    biases are summed, ``b = b_ih + b_hh``; a GRU keeps them, ``b = b_ih``, ``b_h = b_hh``.

    Args:
      module: a ``torch.nn.RNN`` (tanh or relu), ``nn.LSTM`` (``proj_size=0``) or ``nn.GRU``.
      dtype: dtype of the params (float32 by default); None keeps the module's (float64
        after ``module.double()``, which needs ``jax_enable_x64``).

    Returns:
      ``(layer, params)``.

    Raises:
      NotImplementedError: an LSTM with ``proj_size > 0``.
      TypeError: not one of the modules above.

    Example:
        >>> import torch  # doctest: +SKIP
        >>> module = torch.nn.LSTM(8, 16, num_layers=2, bidirectional=True)  # doctest: +SKIP
        >>> layer, params = from_torch(module)  # doctest: +SKIP
        >>> layer.apply(params, jnp.ones((10, 8)), length=7).shape  # doctest: +SKIP
        (10, 32)
    """
    import torch

    if not isinstance(module, torch.nn.RNNBase) or module.mode not in _TORCH_MODES:
        hint = " (for a state dict or a file: from_torch_state_dict(state_dict, kind))"
        raise TypeError(
            f"module: expected a torch.nn.RNN, nn.LSTM or nn.GRU, got {type(module).__name__}"
            + (hint if isinstance(module, Mapping | str | os.PathLike) else "")
        )
    if getattr(module, "proj_size", 0):
        raise NotImplementedError(
            f"proj_size: LSTMs with projections (proj_size={module.proj_size}) are not supported by rnnjax"
        )
    kind, nonlinearity = _TORCH_MODES[module.mode]
    return from_torch_state_dict(
        module.state_dict(),
        kind,
        nonlinearity=nonlinearity or "tanh",
        input_size=module.input_size,
        hidden_size=module.hidden_size,
        num_layers=module.num_layers,
        bidirectional=module.bidirectional,
        bias=module.bias,
        dropout=module.dropout if module.num_layers > 1 else 0.0,
        dtype=dtype,
    )


# --- params given to the to_* converters ---------------------------------------------------------


def _params_problem(expected, given, path: str, shapes: bool) -> tuple[type, str] | None:
    """The first place where ``given`` differs from ``expected`` (``layer.init``'s abstract params)."""
    got = "None" if given is None else "an array" if hasattr(given, "shape") else type(given).__name__
    if isinstance(expected, jax.ShapeDtypeStruct):
        if not hasattr(given, "shape") or not hasattr(given, "dtype"):
            return TypeError, f"{path}: expected an array, got {got}"
        if not jnp.issubdtype(given.dtype, jnp.floating):
            return TypeError, f"{path}: expected a floating-point array, got dtype {given.dtype}"
        if shapes and tuple(given.shape) != expected.shape:
            return ValueError, f"{path}: expected shape {expected.shape}, got {tuple(given.shape)}"
        return None
    if expected is None or given is None:
        if expected is given:
            return None
        want = "None" if expected is None else type(expected).__name__
        return TypeError, f"{path}: expected {want}, got {got}"
    fields = getattr(expected, "_fields", None)  # a NamedTuple: its own type; a plain tuple: a tuple or list
    if (fields is not None and type(given) is not type(expected)) or not isinstance(given, tuple | list):
        return TypeError, f"{path}: expected {type(expected).__name__}, got {got}"
    if len(given) != len(expected):
        return ValueError, f"{path}: expected {len(expected)} entries (one per layer), got {len(given)}"
    for i, (e, g) in enumerate(zip(expected, given, strict=True)):
        problem = _params_problem(e, g, f"{path}.{fields[i]}" if fields else f"{path}[{i}]", shapes)
        if problem:
            return problem
    return None


def _check_params(layer, params, argument: str = "layer") -> None:
    """``params`` must be what ``layer.init`` gives (a cell is ``RNN(cell)``): the same types and
    shapes, floating-point arrays; a ``TypeError``/``ValueError`` names the first entry that is not."""
    layer = as_layer(layer)
    for cell in _directions(layer):  # raises for other layers
        if not isinstance(cell, Cell):
            raise TypeError(f"{argument}: expected rnnjax cells, got {type(cell).__name__}")
    key = jax.random.key(0)
    problem = _params_problem(jax.eval_shape(lambda k: layer.init(k, 1), key), params, "params", shapes=False)
    if problem is None:  # the same structure: read the input size where init puts it, then check the shapes
        first, p = layer, params
        while not isinstance(first, RNN):
            first, p = (first.layers[0], p[0]) if isinstance(first, Stack) else (first.forward, p.forward)
        size = first.cell.input_size(p)
        problem = _params_problem(jax.eval_shape(lambda k: layer.init(k, size), key), params, "params", shapes=True)
    if problem:
        error, message = problem
        name = type(layer).__name__
        if isinstance(layer, RNN):
            name = f"{type(layer.cell).__name__}(hidden_size={getattr(layer.cell, 'hidden_size', '...')})"
        raise error(f"{message} (params must be what {name}.init(key, input_size) gives)")


def _levels(layer, params) -> tuple[list, float]:
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


def _torch_cell_kind(cell, params) -> tuple[str, str | None]:
    if getattr(params, "carry0", None) is not None:
        raise ValueError("params: a learned initial carry (carry0) has no torch equivalent; pass it as h_0 instead")
    if isinstance(cell, ElmanCell):
        if cell.activation not in ("tanh", "relu"):
            raise ValueError(f"cell: torch.nn.RNN supports tanh and relu, got activation={cell.activation!r}")
        return "rnn", cell.activation
    if isinstance(cell, LSTMCell):
        if params.peephole is not None:
            raise ValueError("cell: torch.nn.LSTM has no peepholes; got LSTMCell(peephole=True) params")
        return "lstm", None
    if isinstance(cell, GRUCell):
        if not cell.reset_after:
            raise ValueError("cell: torch.nn.GRU is reset-after; got GRUCell(reset_after=False)")
        return "gru", None
    raise TypeError(f"cell: torch has no equivalent of {type(cell).__name__}")


def _torch_config(layer, params) -> tuple[dict, list]:
    _check_params(layer, params)
    levels, dropout = _levels(layer, params)
    kinds = {_torch_cell_kind(cell, p) for level in levels for cell, p in level}
    if len(kinds) != 1:
        raise ValueError(f"layer: one torch module holds one kind of cell, got {sorted(map(str, kinds))}")
    ((kind, nonlinearity),) = kinds
    sizes = {cell.hidden_size for level in levels for cell, _ in level}
    if len(sizes) != 1:
        raise ValueError(f"layer: torch needs the same hidden_size in every layer, got {sorted(sizes)}")
    num_dirs = {len(level) for level in levels}
    if len(num_dirs) != 1:
        raise ValueError("layer: torch needs every layer bidirectional, or none")
    config = {
        "kind": kind,
        "nonlinearity": nonlinearity,
        "input_size": levels[0][0][0].input_size(levels[0][0][1]),
        "hidden_size": sizes.pop(),
        "num_layers": len(levels),
        "bidirectional": num_dirs.pop() == 2,
        "dropout": dropout,
    }
    return config, levels


def _torch_tensor(array):
    import torch

    array = np.array(array)  # a writable copy: torch.from_numpy shares memory
    if array.dtype == jnp.bfloat16:
        return torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(array)


def to_torch(layer, params: Params) -> dict:
    """torch's state dict for a layer: ``module.load_state_dict(to_torch(layer, params))``.

    The inverse of :func:`from_torch`: weights are transposed back to ``[g, f]``. rnnjax's
    one bias of an ``ElmanCell``/``LSTMCell`` goes to ``bias_ih`` and ``bias_hh`` is zero; a
    GRU's ``b``/``b_h`` go to ``bias_ih``/``bias_hh``. So rnnjax -> torch -> rnnjax gives
    the same values; torch -> rnnjax -> torch gives the same values for a GRU and, for
    ``nn.RNN``/``nn.LSTM``, the same function with ``bias_ih + bias_hh`` moved into
    ``bias_ih``.

    Args:
      layer: ``RNN``, ``Bidirectional(merge="concat")`` or a ``Stack`` of them (a cell is
        taken as ``RNN(cell)``), every layer of the same cell kind and hidden size:
        ``ElmanCell`` (tanh/relu), ``LSTMCell`` (no peephole), ``GRUCell(reset_after=True)``.
      params: its params.

    Returns:
      ``{name: torch.Tensor}`` with torch's names (``weight_ih_l0``, ...,
      ``bias_hh_l1_reverse``), in the params' dtype.

    Example:
        >>> import torch  # doctest: +SKIP
        >>> layer = rj.Stack([rj.LSTMCell(16), rj.LSTMCell(16)])  # doctest: +SKIP
        >>> module = torch.nn.LSTM(8, 16, num_layers=2)  # doctest: +SKIP
        >>> module.load_state_dict(to_torch(layer, layer.init(jax.random.key(0), 8)))  # doctest: +SKIP
        <All keys matched successfully>
    """
    config, levels = _torch_config(layer, params)
    out = {}
    for layer_index, level in enumerate(levels):
        for (_, p), s in zip(level, ["", "_reverse"], strict=False):
            b = np.asarray(p.b)
            b_h = np.asarray(p.b_h) if config["kind"] == "gru" else np.zeros_like(b)
            out[f"weight_ih_l{layer_index}{s}"] = _torch_tensor(np.asarray(p.w_i).T)
            out[f"weight_hh_l{layer_index}{s}"] = _torch_tensor(np.asarray(p.w_h).T)
            out[f"bias_ih_l{layer_index}{s}"] = _torch_tensor(b)
            out[f"bias_hh_l{layer_index}{s}"] = _torch_tensor(b_h)
    # torch orders a layer's keys weight_ih, weight_hh, bias_ih, bias_hh, then the reverse direction
    order = [
        f"{name}_l{i}{s}"
        for i, level in enumerate(levels)
        for s in ["", "_reverse"][: len(level)]
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    ]
    return {k: out[k] for k in order}


def to_torch_module(layer, params: Params):
    """A torch ``nn.RNN``/``nn.LSTM``/``nn.GRU`` holding the layer's weights (see :func:`to_torch`).

    Args:
      layer: as for :func:`to_torch`.
      params: its params.

    Returns:
      A ``torch.nn`` module in the params' dtype, ``batch_first=False``, with
      ``dropout`` from a ``Stack``.

    Example:
        >>> layer = rj.Bidirectional(rj.GRUCell(16), rj.GRUCell(16))  # doctest: +SKIP
        >>> to_torch_module(layer, layer.init(jax.random.key(0), 8))  # doctest: +SKIP
        GRU(8, 16, bidirectional=True)
    """
    import torch

    config, _ = _torch_config(layer, params)
    state = to_torch(layer, params)
    kwargs = {"nonlinearity": config["nonlinearity"]} if config["kind"] == "rnn" else {}
    module_type = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[config["kind"]]
    module = module_type(
        config["input_size"],
        config["hidden_size"],
        num_layers=config["num_layers"],
        bidirectional=config["bidirectional"],
        dropout=config["dropout"],
        dtype=state["weight_ih_l0"].dtype,
        **kwargs,
    )
    module.load_state_dict(state)
    return module


# --- Keras ---------------------------------------------------------------------------------------

_KERAS_MERGES = {"concat": "concat", "sum": "sum", "ave": "mean", "mul": "mul"}


def _keras_activation(fn) -> str:
    import keras

    name = keras.activations.serialize(fn)
    if isinstance(name, dict):  # Keras 3 may give {"class_name": ..., "config": name}
        name = name.get("config", name.get("class_name"))
    return {"linear": "identity"}.get(name, name) if isinstance(name, str) else repr(fn)


_KERAS_SUPPORTED = (
    "SimpleRNN, LSTM, GRU, RNN(SimpleRNNCell | LSTMCell | GRUCell), a Bidirectional of them, "
    "or a list of them (a Stack)"
)


def _check_keras_supported(layer) -> None:
    """Keras' own classes only: a subclass (or another cell) may compute something else."""
    import keras

    layers = (keras.layers.RNN, keras.layers.SimpleRNN, keras.layers.LSTM, keras.layers.GRU)
    cells = (keras.layers.SimpleRNNCell, keras.layers.LSTMCell, keras.layers.GRUCell)
    cell = getattr(layer, "cell", None)
    if type(layer) in layers and type(cell) in cells:
        return
    if not isinstance(layer, keras.layers.Layer):
        raise TypeError(f"layer: expected a Keras layer ({_KERAS_SUPPORTED}), got {type(layer).__name__}")
    got = type(layer).__name__ + ("" if cell is None else f" of {type(cell).__name__}")
    hint = ""
    if isinstance(cell, keras.layers.StackedRNNCells):
        hint = "; for stacked cells pass a list of layers, e.g. [keras.layers.LSTM(...), keras.layers.LSTM(...)]"
    elif isinstance(layer, layers[1:]) or isinstance(cell, cells):  # a user's subclass of Keras' own
        hint = "; a subclass of a Keras layer or cell may compute something else, so it is not converted"
    raise NotImplementedError(f"layer: rnnjax converts Keras {_KERAS_SUPPORTED}; got {got} ({layer.name}){hint}")


def _from_keras_rnn(layer, dtype) -> tuple[RNN, Params]:
    import keras

    _check_keras_supported(layer)
    cell = layer.cell
    if not cell.built:
        raise ValueError(
            f"layer: {layer.name} is not built yet; call it on an input or `layer.build((None, None, features))`"
        )
    weights = {"kernel": _numpy(cell.kernel), "recurrent_kernel": _numpy(cell.recurrent_kernel)}
    target = _target_dtype(weights["kernel"].dtype, dtype)
    w_i, w_h = (weights[k].astype(target) for k in ("kernel", "recurrent_kernel"))
    units = cell.units
    bias = _numpy(cell.bias).astype(target) if cell.use_bias else None
    activation = _keras_activation(cell.activation)
    if isinstance(cell, keras.layers.SimpleRNNCell):
        ours = ElmanCell(units, activation=activation, param_dtype=_param_dtype(target))
        params = ElmanParams(w_i, w_h, np.zeros((units,), target) if bias is None else bias)
    else:
        recurrent = _keras_activation(cell.recurrent_activation)
        if (activation, recurrent) != ("tanh", "sigmoid"):
            raise ValueError(
                f"layer: rnnjax gated cells use activation='tanh', recurrent_activation='sigmoid'; "
                f"{layer.name} has {activation!r}, {recurrent!r}"
            )
        if isinstance(cell, keras.layers.LSTMCell):
            ours = LSTMCell(units, param_dtype=_param_dtype(target))
            params = LSTMParams(w_i, w_h, np.zeros((4 * units,), target) if bias is None else bias)
        else:  # a GRUCell (_check_keras_supported)
            ours = GRUCell(units, reset_after=cell.reset_after, param_dtype=_param_dtype(target))
            zeros = np.zeros((3 * units,), target)
            w_i, w_h = _swap_first_two_gates(w_i), _swap_first_two_gates(w_h)
            if cell.reset_after:
                b, b_h = (zeros, zeros) if bias is None else (bias[0], bias[1])
                params = GRUParams(w_i, w_h, _swap_first_two_gates(b), _swap_first_two_gates(b_h))
            else:
                params = GRUParams(w_i, w_h, zeros if bias is None else _swap_first_two_gates(bias))
    return RNN(ours, reverse=bool(layer.go_backwards)), _jax_tree(params)


def from_keras(layer, *, dtype: Any = jnp.float32) -> tuple[Any, Params]:
    """An rnnjax layer and its params computing what a built Keras 3 recurrent layer computes.

    ``SimpleRNN`` -> ``RNN(ElmanCell)``, ``LSTM`` -> ``RNN(LSTMCell)``, ``GRU`` ->
    ``RNN(GRUCell(reset_after=...))``, ``Bidirectional`` -> ``Bidirectional`` (merge modes
    concat, sum, mul, and ave as ``"mean"``); a list of them -> ``Stack``. Keras stores
    weights features-last like rnnjax; LSTM gates i, f, c, o are rnnjax's i, f, g, o; the
    GRU's z, r, h blocks are permuted to r, z, n, and a reset-after GRU's bias ``[2, 3h]``
    splits into ``b`` (row 0, input) and ``b_h`` (row 1, recurrent).

    The rnnjax layer returns the whole sequence (as ``return_sequences=True``): take
    ``ys[n - 1]`` for Keras' last output. Where Keras masks steps (a ``mask`` after the
    valid steps, as rnnjax's ``length``), a plain Keras RNN repeats its last output, rnnjax
    gives zeros (a Keras ``Bidirectional`` gives zeros too); carries and valid outputs are
    equal.
    ``go_backwards=True`` becomes ``RNN(reverse=True)``, whose ``ys[i]`` belongs to
    ``xs[i]``, where Keras returns them in processing order (``ys[::-1]``). Dropout
    settings are training-only and are not converted.

    Args:
      layer: a built Keras ``SimpleRNN``, ``LSTM``, ``GRU``, ``RNN`` of one of their cells,
        or ``Bidirectional`` of them; or a list of those (a stack).
      dtype: dtype of the params (float32); None keeps Keras' dtype.

    Returns:
      ``(layer, params)``; ``layer.apply(params, xs, length=n)`` for one sequence ``[t, f]``.

    Raises:
      NotImplementedError: another Keras layer or cell (``StackedRNNCells``, ``ConvLSTM1D``,
        a user subclass, ...); the message lists what is supported.
      TypeError: not a Keras layer.

    Example:
        >>> import keras  # doctest: +SKIP
        >>> k = keras.layers.Bidirectional(keras.layers.GRU(16, return_sequences=True))  # doctest: +SKIP
        >>> k.build((None, None, 8))  # doctest: +SKIP
        >>> layer, params = from_keras(k)  # doctest: +SKIP
        >>> layer.apply(params, jnp.ones((10, 8))).shape  # doctest: +SKIP
        (10, 32)
    """
    import keras

    if isinstance(layer, Sequence) and not isinstance(layer, str):
        if not layer:
            raise ValueError("layer: expected at least one Keras layer, got an empty list")
        parts = [from_keras(sub, dtype=dtype) for sub in layer]
        return Stack([p[0] for p in parts]), tuple(p[1] for p in parts)
    if type(layer) is keras.layers.Bidirectional:
        if layer.merge_mode not in _KERAS_MERGES:
            raise ValueError(f"layer: merge_mode={layer.merge_mode!r} has no rnnjax equivalent (one output only)")
        if layer.forward_layer.go_backwards:
            raise ValueError("layer: the forward layer of a Bidirectional must not go backwards")
        fwd, p_fwd = _from_keras_rnn(layer.forward_layer, dtype)
        bwd, p_bwd = _from_keras_rnn(layer.backward_layer, dtype)
        return Bidirectional(fwd, bwd, merge=_KERAS_MERGES[layer.merge_mode]), BidirectionalParams(p_fwd, p_bwd)
    return _from_keras_rnn(layer, dtype)


def _keras_weights(cell, params) -> list[np.ndarray]:
    w_i, w_h, b = np.asarray(params.w_i), np.asarray(params.w_h), np.asarray(params.b)
    if isinstance(cell, GRUCell):
        w_i, w_h, b = _swap_first_two_gates(w_i), _swap_first_two_gates(w_h), _swap_first_two_gates(b)
        if cell.reset_after:
            b = np.stack([b, _swap_first_two_gates(np.asarray(params.b_h))])
    return [w_i, w_h, b]


def _new_keras_rnn(rnn: RNN, params, reverse: bool):
    import keras

    cell = rnn.cell
    kwargs = {"return_sequences": True, "go_backwards": reverse, "dtype": str(np.asarray(params.w_i).dtype)}
    if isinstance(cell, ElmanCell):
        return keras.layers.SimpleRNN(
            cell.hidden_size, activation={"identity": "linear"}.get(cell.activation, cell.activation), **kwargs
        )
    if isinstance(cell, LSTMCell):
        return keras.layers.LSTM(cell.hidden_size, **kwargs)
    if isinstance(cell, GRUCell):
        return keras.layers.GRU(cell.hidden_size, reset_after=cell.reset_after, **kwargs)
    raise TypeError(f"layer: Keras has no equivalent of {type(cell).__name__}")


def _check_keras_rnn(rnn: RNN, params, keras_layer) -> None:
    import keras

    cell = rnn.cell
    if getattr(params, "carry0", None) is not None:
        raise ValueError("params: a learned initial carry (carry0) has no Keras equivalent")
    if isinstance(cell, LSTMCell) and params.peephole is not None:
        raise ValueError("params: Keras' LSTM has no peepholes")
    if not isinstance(cell, ElmanCell | LSTMCell | GRUCell):
        raise TypeError(f"layer: Keras has no equivalent of {type(cell).__name__}")
    want = {ElmanCell: keras.layers.SimpleRNNCell, LSTMCell: keras.layers.LSTMCell, GRUCell: keras.layers.GRUCell}
    k_cell = getattr(keras_layer, "cell", None)
    if not isinstance(k_cell, want[type(cell)]):
        raise TypeError(
            f"keras_layer: expected a Keras RNN with a {want[type(cell)].__name__} for {type(cell).__name__}, "
            f"got {type(keras_layer).__name__}"
        )
    problems = []
    if k_cell.units != cell.hidden_size:
        problems.append(f"units {k_cell.units} != hidden_size {cell.hidden_size}")
    if isinstance(cell, GRUCell) and k_cell.reset_after != cell.reset_after:
        problems.append(f"reset_after {k_cell.reset_after} != {cell.reset_after}")
    if isinstance(cell, ElmanCell) and _keras_activation(k_cell.activation) != cell.activation:
        problems.append(f"activation {_keras_activation(k_cell.activation)!r} != {cell.activation!r}")
    if bool(keras_layer.go_backwards) != rnn.reverse:
        problems.append(f"go_backwards {keras_layer.go_backwards} != reverse {rnn.reverse}")
    if not k_cell.use_bias and any(
        np.any(np.asarray(b) != 0) for b in (params.b, getattr(params, "b_h", None)) if b is not None
    ):
        problems.append("use_bias=False but the biases are not zero")
    if problems:
        raise ValueError(f"keras_layer: does not match the rnnjax layer: {'; '.join(problems)}")


def _set_keras_rnn(rnn: RNN, params, keras_layer) -> None:
    if not keras_layer.built:
        keras_layer.build((None, None, rnn.cell.input_size(params)))
    weights = _keras_weights(rnn.cell, params)
    keras_layer.set_weights(weights if keras_layer.cell.use_bias else weights[:2])


def to_keras(layer, params: Params, keras_layer=None):
    """Keras 3 layer(s) holding an rnnjax layer's weights: the inverse of :func:`from_keras`.

    With ``keras_layer=None`` a new layer is built (``return_sequences=True``, the params'
    dtype): ``RNN`` -> ``SimpleRNN``/``LSTM``/``GRU`` (``reverse`` -> ``go_backwards``),
    ``Bidirectional`` -> ``Bidirectional``, ``Stack`` -> a list of layers (put them in a
    ``keras.Sequential``; add ``keras.layers.Dropout`` between them for the stack's
    dropout). Given a Keras layer (built or not) of the same configuration, its weights
    are set in place and it is returned. from_keras -> to_keras gives the same values.

    Args:
      layer: an rnnjax ``RNN``, ``Bidirectional`` or ``Stack`` (a cell is ``RNN(cell)``) of
        ``ElmanCell``, ``LSTMCell`` (no peephole) or ``GRUCell``.
      params: its params.
      keras_layer: an existing Keras layer to fill, or None.

    Returns:
      The Keras layer (a list of them for a ``Stack``).

    Example:
        >>> layer = rj.RNN(rj.GRUCell(16, reset_after=False))  # doctest: +SKIP
        >>> k = to_keras(layer, layer.init(jax.random.key(0), 8))  # doctest: +SKIP
        >>> [tuple(w.shape) for w in k.weights]  # doctest: +SKIP
        [(8, 48), (16, 48), (48,)]
    """
    import keras

    layer = as_layer(layer)
    _check_params(layer, params)
    if isinstance(layer, Stack):
        if keras_layer is not None and len(keras_layer) != len(layer.layers):
            raise ValueError(f"keras_layer: expected a list of {len(layer.layers)} Keras layers")
        subs = [None] * len(layer.layers) if keras_layer is None else list(keras_layer)
        return [to_keras(sub, p, k) for sub, p, k in zip(layer.layers, params, subs, strict=True)]
    if isinstance(layer, Bidirectional):
        merge = {v: k for k, v in _KERAS_MERGES.items()}[layer.merge]
        if keras_layer is None:
            keras_layer = keras.layers.Bidirectional(
                _new_keras_rnn(layer.forward, params.forward, False),
                backward_layer=_new_keras_rnn(layer.backward, params.backward, True),
                merge_mode=merge,
                dtype=str(np.asarray(params.forward.w_i).dtype),
            )
        if not isinstance(keras_layer, keras.layers.Bidirectional):
            raise TypeError(f"keras_layer: expected a Keras Bidirectional, got {type(keras_layer).__name__}")
        if keras_layer.merge_mode != merge:
            raise ValueError(
                f"keras_layer: merge_mode {keras_layer.merge_mode!r} != {merge!r} (rnnjax {layer.merge!r})"
            )
        for rnn, p, k in (
            (layer.forward, params.forward, keras_layer.forward_layer),
            (layer.backward, params.backward, keras_layer.backward_layer),
        ):
            _check_keras_rnn(rnn, p, k)
        if not keras_layer.built:
            keras_layer.build((None, None, layer.forward.cell.input_size(params.forward)))
        _set_keras_rnn(layer.forward, params.forward, keras_layer.forward_layer)
        _set_keras_rnn(layer.backward, params.backward, keras_layer.backward_layer)
        return keras_layer
    if not isinstance(layer, RNN):
        raise TypeError(f"layer: expected an rnnjax RNN, Bidirectional or Stack, got {type(layer).__name__}")
    if keras_layer is None:
        keras_layer = _new_keras_rnn(layer, params, layer.reverse)
    _check_keras_rnn(layer, params, keras_layer)
    _set_keras_rnn(layer, params, keras_layer)
    return keras_layer


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
        tree = {k: {name: _numpy(v) for name, v in leaf.items()} for k, leaf in _unwrap_variables(variables).items()}
    elif isinstance(cell_module, nnx.Module):
        if variables is not None:
            raise ValueError("variables: an NNX cell holds its own weights; pass variables=None")
        tree = None
    else:
        raise TypeError(f"cell_module: expected a Flax linen or NNX cell, got {type(cell_module).__name__}")

    def dense(name, field="kernel"):
        if tree is not None:
            return tree[name][field]
        return _numpy(getattr(getattr(cell_module, name), field)[...])

    if isinstance(cell_module, nn.SimpleCell | nnx.SimpleCell):
        if cell_module.residual:
            raise ValueError("cell_module: SimpleCell(residual=True) has no rnnjax equivalent")
        names = ("i", "h") if tree is not None else ("dense_i", "dense_h")
        w_i, w_h, b = dense(names[0]), dense(names[1]), dense(names[0], "bias")
        target = _target_dtype(w_i.dtype, dtype)
        hidden = w_h.shape[-1]
        cell = ElmanCell(
            hidden, activation=_flax_activation(cell_module.activation_fn), param_dtype=_param_dtype(target)
        )
        params = ElmanParams(w_i, w_h, b)
    elif isinstance(cell_module, nn.LSTMCell | nn.OptimizedLSTMCell | nnx.LSTMCell):
        _flax_gated_check(cell_module)
        i_names = ("ii", "if", "ig", "io") if tree is not None else ("ii", "if_", "ig", "io")
        w_i = np.concatenate([dense(n) for n in i_names], axis=-1)
        w_h = np.concatenate([dense(n) for n in ("hi", "hf", "hg", "ho")], axis=-1)
        b = np.concatenate([dense(n, "bias") for n in ("hi", "hf", "hg", "ho")], axis=-1)
        target = _target_dtype(w_i.dtype, dtype)
        cell, params = LSTMCell(w_h.shape[0], param_dtype=_param_dtype(target)), LSTMParams(w_i, w_h, b)
    elif isinstance(cell_module, nnx.OptimizedLSTMCell):
        _flax_gated_check(cell_module)
        w_i, w_h, b = dense("dense_i"), dense("dense_h"), dense("dense_h", "bias")
        target = _target_dtype(w_i.dtype, dtype)
        cell, params = LSTMCell(w_h.shape[0], param_dtype=_param_dtype(target)), LSTMParams(w_i, w_h, b)
    elif isinstance(cell_module, nn.GRUCell):
        _flax_gated_check(cell_module)
        w_i = np.concatenate([dense(n) for n in ("ir", "iz", "in")], axis=-1)
        w_h = np.concatenate([dense(n) for n in ("hr", "hz", "hn")], axis=-1)
        b = np.concatenate([dense(n, "bias") for n in ("ir", "iz", "in")], axis=-1)
        b_hn = dense("hn", "bias")
        b_h = np.concatenate([np.zeros_like(b_hn), np.zeros_like(b_hn), b_hn])
        target = _target_dtype(w_i.dtype, dtype)
        cell, params = GRUCell(w_h.shape[0], param_dtype=_param_dtype(target)), GRUParams(w_i, w_h, b, b_h)
    elif isinstance(cell_module, nnx.GRUCell):
        _flax_gated_check(cell_module)
        w_i, w_h, b = dense("dense_i"), dense("dense_h"), dense("dense_i", "bias")
        target = _target_dtype(w_i.dtype, dtype)
        cell, params = GRUCell(w_h.shape[0], param_dtype=_param_dtype(target)), GRUParams(w_i, w_h, b, np.zeros_like(b))
    else:
        raise TypeError(f"cell_module: rnnjax has no equivalent of the Flax cell {type(cell_module).__name__}")
    params = jax.tree_util.tree_map(lambda a: np.asarray(a).astype(target), params)
    return cell, _jax_tree(params)


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
    _check_params(cell, params, "cell")
    if getattr(params, "carry0", None) is not None:
        raise ValueError("params: a learned initial carry (carry0) has no Flax equivalent")
    w_i, w_h, b = np.asarray(params.w_i), np.asarray(params.w_h), np.asarray(params.b)
    if isinstance(cell, ElmanCell):
        tree = {"i": {"kernel": w_i, "bias": b}, "h": {"kernel": w_h}}
    elif isinstance(cell, LSTMCell):
        if params.peephole is not None:
            raise ValueError("params: Flax's LSTM cells have no peepholes")
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
    return {"params": _jax_tree(tree)}
