"""torch: ``nn.RNN``/``nn.LSTM``/``nn.GRU`` modules, state dicts and files, and their carries."""

import os
import pickle
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

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
    ProjectedLSTMParams,
)
from rnnjax.interop import common
from rnnjax.layers import Bidirectional, BidirectionalParams, Stack, deep
from rnnjax.typing import Array, Carry, Params

_TORCH_MODES = {"RNN_TANH": ("rnn", "tanh"), "RNN_RELU": ("rnn", "relu"), "LSTM": ("lstm", None), "GRU": ("gru", None)}
_TORCH_KEY = re.compile(r"^(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?$")


# --- carries between torch and rnnjax ----------------------------------------------------------


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
      an LSTM; with ``proj_size=p``, ``h_n`` is ``[..., p]``), layer 0 forward first, then
      layer 0 backward, layer 1 forward, ... as torch.

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
      h: ``[num_layers * num_directions, *batch, h]`` (``[..., p]`` for an LSTM with
        ``proj_size=p``), a torch tensor or an array.
      c: the LSTM cell state ``[num_layers * num_directions, *batch, h]``; required for LSTM layers.
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
    cells = common.directions(layer)
    h = common.as_numpy(h)
    h = h.astype(common.target_dtype(h.dtype, dtype))
    if h.shape[0] != len(cells):
        raise ValueError(
            f"h: expected a leading axis of num_layers * num_directions = {len(cells)}, got shape {h.shape}"
        )
    is_lstm = [isinstance(cell, LSTMCell) for cell in cells]
    if any(is_lstm) and c is None:
        raise ValueError("c: an LSTM layer needs the cell state c_0 too, got None")
    if c is not None:
        c = common.as_numpy(c).astype(h.dtype)
        if c.shape[:-1] != h.shape[:-1]:  # the last axes differ with a projection: h [..., p], c [..., h]
            raise ValueError(f"c: expected the shape of h {h.shape} (but for the last axis), got {c.shape}")
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
        out[name] = common.as_numpy(value)
    return out


def _torch_kind(kind: str, nonlinearity: str) -> tuple[str, str]:
    kind = kind.lower()
    if kind in ("rnn_tanh", "rnn_relu"):
        kind, nonlinearity = "rnn", kind[4:]
    if kind not in common.GATES:
        raise ValueError(f"kind: expected one of 'rnn', 'rnn_tanh', 'rnn_relu', 'lstm', 'gru', got {kind!r}")
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
    return kind, nonlinearity


def _torch_hidden_size(shapes: dict[str, tuple], gates: int, projected: bool) -> int | None:
    """The hidden size most of a state dict's tensors agree on (rows / gates; ``weight_hh``'s columns,
    or with a projection ``weight_hr``'s columns: ``weight_hh`` is ``[4h, p]``, ``weight_hr`` ``[p, h]``)."""
    votes = []
    for name, shape in shapes.items():
        if name.startswith("weight_hr"):
            if len(shape) == 2 and shape[1] > 0:
                votes.append(shape[1])
            continue
        is_weight = name.startswith("weight")
        if len(shape) == (2 if is_weight else 1) and shape[0] > 0 and shape[0] % gates == 0:
            votes.append(shape[0] // gates)
        if name.startswith("weight_hh") and not projected and len(shape) == 2 and shape[1] > 0:
            votes.append(shape[1])
    return Counter(votes).most_common(1)[0][0] if votes else None


def _checked_state_dict(entries: Mapping[str, Any], expected: dict[str, tuple], prefix: str, module: str) -> dict:
    """The numpy arrays of ``expected``'s keys, after checking every entry of a torch state dict.

    One ``ValueError`` names each tensor that is missing, not expected, not floating-point,
    of another dtype than most of them, or of the wrong shape (a ``None`` in an expected
    shape is the input size, when it could not be read).
    """
    arrays = {name: common.as_numpy(entries[name]) for name in expected if name in entries}
    floating = [a.dtype for a in arrays.values() if jnp.issubdtype(a.dtype, jnp.floating)]
    majority = Counter(floating).most_common(1)[0][0] if floating else None
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
        if array.dtype != majority:
            problems.append(f"{where}: expected dtype {majority} (as the other tensors), got {array.dtype}")
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
    proj_size: int | None = None,
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
      proj_size: an LSTM's projection size ``p`` (``weight_hr_l* [p, h]``; 0: none); read
        from ``weight_hr_l0`` when None.
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
    if proj_size is None:  # an LSTM's projection W_hr [p, h]; a weight_hr of another kind is an unexpected key
        hr = shapes.get("weight_hr_l0", ())
        proj_size = hr[0] if kind == "lstm" and len(hr) == 2 else 0
    checks.non_negative_int(proj_size, "proj_size")
    if proj_size and kind != "lstm":
        raise ValueError(f"proj_size: only an LSTM has a projection, got proj_size={proj_size} for kind={kind!r}")
    if hidden_size is None:
        hidden_size = _torch_hidden_size(shapes, common.GATES[kind], projected=proj_size > 0)
    if input_size is None:
        input_size = shapes["weight_ih_l0"][1] if len(shapes.get("weight_ih_l0", ())) == 2 else None
    for name, value in (("hidden_size", hidden_size), ("input_size", input_size), ("num_layers", num_layers)):
        if value is not None:
            checks.positive_int(value, name)
    if hidden_size is None:
        raise ValueError(f"state_dict: cannot read hidden_size from the shapes {shapes}; pass hidden_size=")

    gates, num_dirs = common.GATES[kind] * hidden_size, 2 if bidirectional else 1
    out_size = proj_size or hidden_size  # what each direction outputs and feeds back
    suffixes = ["", "_reverse"][:num_dirs]
    expected = {}
    for layer_index in range(num_layers):
        in_size = input_size if layer_index == 0 else num_dirs * out_size
        for s in suffixes:
            expected[f"weight_ih_l{layer_index}{s}"] = (gates, in_size)
            expected[f"weight_hh_l{layer_index}{s}"] = (gates, out_size)
            if bias:
                expected[f"bias_ih_l{layer_index}{s}"] = (gates,)
                expected[f"bias_hh_l{layer_index}{s}"] = (gates,)
            if proj_size:
                expected[f"weight_hr_l{layer_index}{s}"] = (proj_size, hidden_size)
    module = "torch.nn." + {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[kind]
    module += (
        f"(input_size={input_size}, hidden_size={hidden_size}, num_layers={num_layers}, bias={bias}, "
        f"bidirectional={bidirectional}{f', proj_size={proj_size}' if proj_size else ''})"
    )
    hh = shapes.get("weight_hh_l0", ())
    fits = [k for k, g in common.GATES.items() if k != kind and len(hh) == 2 and hh[1] and hh[0] == g * hh[1]]
    if fits and not proj_size:  # said only if some tensor does not match
        module += f" (weight_hh_l0's shape {hh} fits kind={fits[0]!r})"
    arrays = _checked_state_dict(entries, expected, prefix, module)
    target = common.target_dtype(arrays["weight_ih_l0"].dtype, dtype)
    arrays = {k: v.astype(target) for k, v in arrays.items()}
    zeros = np.zeros((gates,), target)

    def direction_params(layer_index, s):
        w_i = arrays[f"weight_ih_l{layer_index}{s}"].T
        w_h = arrays[f"weight_hh_l{layer_index}{s}"].T
        b_ih = arrays.get(f"bias_ih_l{layer_index}{s}", zeros)
        b_hh = arrays.get(f"bias_hh_l{layer_index}{s}", zeros)
        if kind == "gru":
            return GRUParams(w_i, w_h, b_ih, b_hh)
        if kind == "lstm":
            if proj_size:
                return ProjectedLSTMParams(w_i, w_h, b_ih + b_hh, arrays[f"weight_hr_l{layer_index}{s}"].T)
            return LSTMParams(w_i, w_h, b_ih + b_hh)
        return ElmanParams(w_i, w_h, b_ih + b_hh)

    cell_type, cell_kwargs = {
        "rnn": (ElmanCell, {"activation": nonlinearity}),
        "lstm": (LSTMCell, {"proj_size": proj_size}),
        "gru": (GRUCell, {}),
    }[kind]
    layer = deep(
        cell_type,
        hidden_size,
        num_layers=num_layers,
        bidirectional=bidirectional,
        dropout=float(dropout) if num_layers > 1 else 0.0,  # torch's dropout acts between layers only
        param_dtype=common.param_dtype(target),
        **cell_kwargs,
    )
    params = []
    for layer_index in range(num_layers):
        parts = [direction_params(layer_index, s) for s in suffixes]
        params.append(BidirectionalParams(*parts) if bidirectional else parts[0])
    params = common.jax_tree(tuple(params))
    return layer, params if num_layers > 1 else params[0]


def from_torch(module, *, dtype: Any = jnp.float32) -> tuple[Any, Params]:
    """An rnnjax layer and its params computing what a torch ``nn.RNN``/``nn.LSTM``/``nn.GRU`` computes.

    The layer is :func:`rnnjax.layers.deep`'s for the module's settings: one layer gives
    ``rj.RNN(cell)`` (``rj.Bidirectional(cell, cell)`` if bidirectional), several give
    ``rj.Stack([...], dropout=module.dropout)``. ``layer.apply(params, xs, length=n)`` on ONE
    sequence ``xs: [t, f]`` equals torch's output ``[t, D*h]`` for it (``[t, D*p]`` with
    ``proj_size=p``; with a length: torch's ``pack_padded_sequence`` / ``pad_packed_sequence``
    result, zeros past ``n``); vmap it for a batch. ``batch_first`` only changes torch's input
    layout, so it plays no part. ``bias=False`` gives zero biases.

    Weights are transposed to features-last (torch ``[g, f]`` -> rnnjax ``[f, g]``); the gate
    orders are the same (LSTM i, f, g, o; GRU r, z, n). For ``nn.RNN``/``nn.LSTM`` the two
    biases are summed, ``b = b_ih + b_hh``; a GRU keeps them, ``b = b_ih``, ``b_h = b_hh``. An
    LSTM's projection ``weight_hr [p, h]`` becomes ``LSTMCell(h, proj_size=p)``'s ``w_proj [h, p]``.

    Args:
      module: a ``torch.nn.RNN`` (tanh or relu), ``nn.LSTM`` (any ``proj_size``) or ``nn.GRU``.
      dtype: dtype of the params (float32 by default); None keeps the module's (float64
        after ``module.double()``, which needs ``jax_enable_x64``).

    Returns:
      ``(layer, params)``.

    Raises:
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
        proj_size=module.proj_size,
        dropout=module.dropout if module.num_layers > 1 else 0.0,
        dtype=dtype,
    )


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
    common.check_params(layer, params)
    levels, dropout = common.levels(layer, params)
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
    projections = {cell.proj_size or 0 for level in levels for cell, _ in level if isinstance(cell, LSTMCell)}
    if len(projections) > 1:
        raise ValueError(f"layer: torch needs the same proj_size in every layer, got {sorted(projections)}")
    hidden_size, proj_size = sizes.pop(), projections.pop() if projections else 0
    if proj_size >= hidden_size:
        raise ValueError(
            f"layer: torch.nn.LSTM needs proj_size < hidden_size, got proj_size={proj_size}, hidden_size={hidden_size}"
        )
    config = {
        "kind": kind,
        "nonlinearity": nonlinearity,
        "input_size": levels[0][0][0].input_size(levels[0][0][1]),
        "hidden_size": hidden_size,
        "num_layers": len(levels),
        "bidirectional": num_dirs.pop() == 2,
        "dropout": dropout,
        "proj_size": proj_size,
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
    GRU's ``b``/``b_h`` go to ``bias_ih``/``bias_hh``; an LSTM's ``w_proj [h, p]`` to
    ``weight_hr [p, h]``. So rnnjax -> torch -> rnnjax gives the same values; torch -> rnnjax
    -> torch gives the same values for a GRU and, for ``nn.RNN``/``nn.LSTM``, the same
    function with ``bias_ih + bias_hh`` moved into ``bias_ih``.

    Args:
      layer: ``RNN``, ``Bidirectional(merge="concat")`` or a ``Stack`` of them (a cell is
        taken as ``RNN(cell)``), every layer of the same cell kind, hidden size and
        projection: ``ElmanCell`` (tanh/relu), ``LSTMCell`` (no peephole; ``proj_size`` None
        or below ``hidden_size``, as torch requires), ``GRUCell(reset_after=True)``.
      params: its params.

    Returns:
      ``{name: torch.Tensor}`` with torch's names (``weight_ih_l0``, ...,
      ``bias_hh_l1_reverse``, ``weight_hr_l1_reverse``), in the params' dtype.

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
            if config["proj_size"]:
                out[f"weight_hr_l{layer_index}{s}"] = _torch_tensor(np.asarray(p.w_proj).T)
    # torch orders a layer's keys weight_ih, weight_hh, bias_ih, bias_hh (weight_hr), then the reverse direction
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") + (("weight_hr",) if config["proj_size"] else ())
    order = [
        f"{name}_l{i}{s}" for i, level in enumerate(levels) for s in ["", "_reverse"][: len(level)] for name in names
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
    if config["proj_size"]:
        kwargs["proj_size"] = config["proj_size"]
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
