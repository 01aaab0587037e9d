"""Keras 3: ``SimpleRNN``/``LSTM``/``GRU`` layers (and ``RNN`` over their cells, ``Bidirectional``)."""

import dataclasses
from collections.abc import Sequence
from typing import Any

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
from rnnjax.layers import RNN, Bidirectional, BidirectionalParams, Masking, Stack, as_layer
from rnnjax.typing import Params

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
    "or a list of them (a Stack), optionally after a Masking layer, or a keras.Sequential of those"
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
    elif isinstance(layer, keras.layers.Masking):
        hint = "; a Masking layer is converted only as the first layer of the list"
    raise NotImplementedError(f"layer: rnnjax converts Keras {_KERAS_SUPPORTED}; got {got} ({layer.name}){hint}")


def _from_keras_rnn(layer, dtype) -> tuple[RNN, Params]:
    import keras

    _check_keras_supported(layer)
    cell = layer.cell
    if not cell.built:
        raise ValueError(
            f"layer: {layer.name} is not built yet; call it on an input or `layer.build((None, None, features))`"
        )
    weights = {"kernel": common.as_numpy(cell.kernel), "recurrent_kernel": common.as_numpy(cell.recurrent_kernel)}
    target = common.target_dtype(weights["kernel"].dtype, dtype)
    w_i, w_h = (weights[k].astype(target) for k in ("kernel", "recurrent_kernel"))
    units = cell.units
    bias = common.as_numpy(cell.bias).astype(target) if cell.use_bias else None
    activation = _keras_activation(cell.activation)
    options = {  # the dropout rates are the cell's, as Keras'; training with a key uses them
        "param_dtype": common.param_dtype(target),
        "dropout": float(cell.dropout),
        "recurrent_dropout": float(cell.recurrent_dropout),
    }
    if isinstance(cell, keras.layers.SimpleRNNCell):
        ours = ElmanCell(units, activation=activation, **options)
        params = ElmanParams(w_i, w_h, np.zeros((units,), target) if bias is None else bias)
    else:
        recurrent = _keras_activation(cell.recurrent_activation)
        if (activation, recurrent) != ("tanh", "sigmoid"):
            raise ValueError(
                f"layer: rnnjax gated cells use activation='tanh', recurrent_activation='sigmoid'; "
                f"{layer.name} has {activation!r}, {recurrent!r}"
            )
        if isinstance(cell, keras.layers.LSTMCell):
            ours = LSTMCell(units, **options)
            params = LSTMParams(w_i, w_h, np.zeros((4 * units,), target) if bias is None else bias)
        else:  # a GRUCell (_check_keras_supported)
            ours = GRUCell(units, reset_after=cell.reset_after, **options)
            zeros = np.zeros((3 * units,), target)
            w_i, w_h = common.swap_first_two_gates(w_i), common.swap_first_two_gates(w_h)
            if cell.reset_after:
                b, b_h = (zeros, zeros) if bias is None else (bias[0], bias[1])
                params = GRUParams(w_i, w_h, common.swap_first_two_gates(b), common.swap_first_two_gates(b_h))
            else:
                params = GRUParams(w_i, w_h, zeros if bias is None else common.swap_first_two_gates(bias))
    # a Keras RNN repeats its last valid output at masked steps
    return RNN(ours, reverse=bool(layer.go_backwards), masked_output="last"), common.jax_tree(params)


def from_keras(layer, *, dtype: Any = jnp.float32) -> tuple[Any, Params]:
    """An rnnjax layer and its params computing what a built Keras 3 recurrent layer computes.

    ``SimpleRNN`` -> ``RNN(ElmanCell)``, ``LSTM`` -> ``RNN(LSTMCell)``, ``GRU`` ->
    ``RNN(GRUCell(reset_after=...))``, ``Bidirectional`` -> ``Bidirectional`` (merge modes
    concat, sum, mul, and ave as ``"mean"``); a list of them -> ``Stack``. Keras stores
    weights features-last like rnnjax; LSTM gates i, f, c, o are rnnjax's i, f, g, o; the
    GRU's z, r, h blocks are permuted to r, z, n, and a reset-after GRU's bias ``[2, 3h]``
    splits into ``b`` (row 0, input) and ``b_h`` (row 1, recurrent).

    The rnnjax layer returns the whole sequence (as ``return_sequences=True``): take
    ``ys[-1]`` for Keras' last output (``ys[0]`` for ``go_backwards``). Keras' ``mask=`` is
    rnnjax's ``mask=`` (``[t]`` booleans per sequence; holes and left padding too), and a
    ``keras.layers.Masking`` first in the list becomes :class:`rnnjax.layers.Masking`. At
    masked steps a plain Keras RNN repeats its last valid output, so its rnnjax ``RNN`` has
    ``masked_output="last"``; a Keras ``Bidirectional`` gives zeros there, and so does its
    rnnjax ``Bidirectional``.
    ``go_backwards=True`` becomes ``RNN(reverse=True)``, whose ``ys[i]`` belongs to
    ``xs[i]``, where Keras returns them in processing order (``ys[::-1]``). ``dropout`` and
    ``recurrent_dropout`` become the cell's (used when the rnnjax layer gets a ``key``;
    one mask per sequence for all gates, where Keras' ``implementation=1`` draws one per gate).

    Args:
      layer: a built Keras ``SimpleRNN``, ``LSTM``, ``GRU``, ``RNN`` of one of their cells,
        or ``Bidirectional`` of them; or a list of those (a stack), optionally starting with a
        ``Masking`` layer; or a ``keras.Sequential`` of those.
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

    if isinstance(layer, keras.Sequential):
        layer = list(layer.layers)
    if isinstance(layer, Sequence) and not isinstance(layer, str):
        if not layer:
            raise ValueError("layer: expected at least one Keras layer, got an empty list")
        if type(layer[0]) is keras.layers.Masking:
            if len(layer) == 1:
                raise ValueError("layer: a Masking layer needs a recurrent layer after it")
            inner, params = from_keras(layer[1:] if len(layer) > 2 else layer[1], dtype=dtype)
            return Masking(inner, mask_value=float(layer[0].mask_value)), params
        parts = [from_keras(sub, dtype=dtype) for sub in layer]
        return Stack([p[0] for p in parts]), tuple(p[1] for p in parts)
    if type(layer) is keras.layers.Bidirectional:
        if layer.merge_mode not in _KERAS_MERGES:
            raise ValueError(f"layer: merge_mode={layer.merge_mode!r} has no rnnjax equivalent (one output only)")
        if layer.forward_layer.go_backwards:
            raise ValueError("layer: the forward layer of a Bidirectional must not go backwards")
        (fwd, p_fwd), (bwd, p_bwd) = (
            _from_keras_rnn(sub, dtype) for sub in (layer.forward_layer, layer.backward_layer)
        )
        fwd, bwd = (dataclasses.replace(sub, masked_output="zeros") for sub in (fwd, bwd))  # Keras zeroes masked steps
        return Bidirectional(fwd, bwd, merge=_KERAS_MERGES[layer.merge_mode]), BidirectionalParams(p_fwd, p_bwd)
    return _from_keras_rnn(layer, dtype)


def _masking_to_keras(layer: Masking, params: Params, keras_layers) -> list:
    """``[keras.layers.Masking, *the wrapped layer's Keras layers]``; Keras' masked outputs must be rnnjax's."""
    import keras

    _check_keras_masked_outputs(layer.layer)
    if keras_layers is None:
        masking, inner = keras.layers.Masking(mask_value=layer.mask_value), None
    else:
        keras_layers = list(keras_layers)
        if len(keras_layers) < 2 or not isinstance(keras_layers[0], keras.layers.Masking):
            raise ValueError(
                "keras_layer: expected a list of a Keras Masking layer and the recurrent layer(s) after it"
            )
        masking, rest = keras_layers[0], keras_layers[1:]
        if float(masking.mask_value) != layer.mask_value:
            raise ValueError(f"keras_layer: mask_value {masking.mask_value} != {layer.mask_value} (rnnjax's)")
        inner = rest if isinstance(layer.layer, Stack) else rest[0]
    converted = to_keras(layer.layer, params, inner)
    return [masking, *(converted if isinstance(converted, list) else [converted])]


def _check_keras_masked_outputs(layer) -> None:
    """Under a Keras mask a plain RNN repeats its last valid output at masked steps and a Bidirectional
    gives zeros (see :func:`from_keras`): the rnnjax layer must do the same, or the outputs would differ."""
    if isinstance(layer, Stack):
        for sub in layer.layers:
            _check_keras_masked_outputs(sub)
    elif isinstance(layer, Bidirectional):
        for rnn in (layer.forward, layer.backward):
            if rnn.masked_output != "zeros":
                raise ValueError(
                    "layer: Keras' Bidirectional gives zeros at masked steps; its rnnjax RNNs need "
                    f'masked_output="zeros", got {rnn.masked_output!r}'
                )
    elif isinstance(layer, RNN) and layer.masked_output != "last":
        raise ValueError(
            "layer: under a Keras Masking layer Keras' RNN repeats the last valid output at masked steps; "
            f'build the rnnjax RNN with masked_output="last" for the same outputs, got {layer.masked_output!r}'
        )


def _keras_weights(cell, params) -> list[np.ndarray]:
    w_i, w_h, b = np.asarray(params.w_i), np.asarray(params.w_h), np.asarray(params.b)
    if isinstance(cell, GRUCell):
        w_i, w_h, b = common.swap_first_two_gates(w_i), common.swap_first_two_gates(w_h), common.swap_first_two_gates(b)
        if cell.reset_after:
            b = np.stack([b, common.swap_first_two_gates(np.asarray(params.b_h))])
    return [w_i, w_h, b]


def _new_keras_rnn(rnn: RNN, params, reverse: bool):
    import keras

    cell = rnn.cell
    kwargs = {"return_sequences": True, "go_backwards": reverse, "dtype": str(np.asarray(params.w_i).dtype)}
    if cell.zoneout > 0:
        raise ValueError(f"layer: Keras has no zoneout (the cell has zoneout={cell.zoneout})")
    kwargs |= {"dropout": cell.dropout, "recurrent_dropout": cell.recurrent_dropout}
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
    if isinstance(params, ProjectedLSTMParams):
        raise ValueError("params: Keras' LSTM has no output projection (proj_size)")
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
    dropout), ``rnnjax.layers.Masking`` -> ``[keras.layers.Masking, *the wrapped layer's]``
    (its RNNs need ``masked_output="last"``, a Bidirectional's ``"zeros"``: what Keras outputs
    at masked steps). Given a Keras layer (built or not) of the same configuration, its weights
    are set in place and it is returned. from_keras -> to_keras gives the same values.

    Args:
      layer: an rnnjax ``RNN``, ``Bidirectional``, ``Stack`` or ``Masking`` of them (a cell is
        ``RNN(cell)``) of ``ElmanCell``, ``LSTMCell`` (no peephole) or ``GRUCell``.
      params: its params.
      keras_layer: an existing Keras layer to fill, or None.

    Returns:
      The Keras layer (a list of them for a ``Stack`` or ``Masking``).

    Example:
        >>> layer = rj.RNN(rj.GRUCell(16, reset_after=False))  # doctest: +SKIP
        >>> k = to_keras(layer, layer.init(jax.random.key(0), 8))  # doctest: +SKIP
        >>> [tuple(w.shape) for w in k.weights]  # doctest: +SKIP
        [(8, 48), (16, 48), (48,)]
    """
    import keras

    layer = as_layer(layer)
    if isinstance(layer, Masking):  # its params are the wrapped layer's, checked there
        return _masking_to_keras(layer, params, keras_layer)
    common.check_params(layer, params)
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
