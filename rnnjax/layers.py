"""Sequence layers: what is not a cell. Each has ``init(key, input_size) -> params``
and ``apply(params, xs, *, length=None, mask=None, key=None) -> ys`` on ONE sequence ``xs: [t, f]``
(batch with :func:`jax.vmap`), and an ``output_size``.

``StackedCell`` is the step-wise form of a stack: a cell, for decoding.
"""

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax import heads
from rnnjax._src import checks
from rnnjax._src.dropout import dropout
from rnnjax.recurrence import unroll
from rnnjax.typing import Array, Carry, Cell, Layer, NoisyCell, Params, PRNGKey, Shape


@dataclasses.dataclass(frozen=True)
class RNN:
    """A cell unrolled over a sequence: ``ys = unroll(cell, params, xs)[1]``.

    Args:
      cell: the recurrent cell.
      reverse: run backwards over the valid prefix (see :func:`rnnjax.unroll`).
      unroll: ``lax.scan`` unroll factor; None: the backend's measured factor.
      hoist: project the whole sequence before the scan (True) or step by step (False);
        None: the backend's choice (see :func:`rnnjax.unroll`).
      remat: checkpoint the time loop (``sqrt(t)`` memory for BPTT).
      parallel: associative scan, for linear-recurrence cells.
      masked_output: the output at a masked or padded step: ``"zeros"``, or ``"last"``
        (the last valid step's output, as Keras; see :func:`rnnjax.unroll`).

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> layer = rj.RNN(rj.GRUCell(16))
        >>> params = layer.init(jax.random.key(0), 8)
        >>> layer.apply(params, jnp.ones((10, 8)), length=6).shape
        (10, 16)
    """

    cell: Cell
    reverse: bool = False
    unroll: int | None = None
    hoist: bool | None = None
    remat: bool = False
    parallel: bool = False
    masked_output: str = "zeros"

    def __post_init__(self):
        checks.masked_output(self.masked_output)

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    def init(self, key: PRNGKey, input_size: int) -> Params:
        """The cell's params (see the cell's ``init``)."""
        return self.cell.init(key, input_size)

    def initial_carry(self, params: Params, batch_shape: Shape = ()) -> Carry:
        """The cell's initial carry."""
        return self.cell.initial_carry(params, batch_shape)

    def apply_with_carry(
        self,
        params: Params,
        xs: Array,
        carry: Carry | None = None,
        *,
        length=None,
        mask: Array | None = None,
        key: PRNGKey | None = None,
    ) -> tuple[Carry, Array]:
        """``(carry, ys)`` for ``xs: [t, f]`` from an optional initial carry; ``mask: [t]`` (True: valid step).

        Example:
            >>> layer = RNN(__import__("rnnjax").LSTMCell(4))
            >>> params = layer.init(jax.random.key(0), 3)
            >>> carry, ys = layer.apply_with_carry(params, jnp.ones((5, 3)))
            >>> carry.h.shape, ys.shape
            ((4,), (5, 4))
        """
        return unroll(
            self.cell,
            params,
            xs,
            carry,
            length=length,
            reverse=self.reverse,
            unroll=self.unroll,
            hoist=self.hoist,
            remat=self.remat,
            parallel=self.parallel,
            mask=mask,
            masked_output=self.masked_output,
            key=key,
        )

    def apply(
        self, params: Params, xs: Array, *, length=None, mask: Array | None = None, key: PRNGKey | None = None
    ) -> Array:
        """Outputs ``ys: [t, o]`` for ``xs: [t, f]``; zeros at steps ``>= length`` and where ``mask`` is False
        (or the last valid output, ``masked_output="last"``).

        ``key`` trains with the cell's dropout and zoneout (see :func:`rnnjax.unroll`); None: inference.
        """
        return self.apply_with_carry(params, xs, length=length, mask=mask, key=key)[1]

    def summary_rows(self, params: Params) -> tuple[heads.SummaryRow, ...]:
        """Its row in :func:`rnnjax.summary`: the cell run over time (``LSTMCell`` is ``LSTM``), ``(None, None, o)``."""
        return heads.summary_rows(self.cell, params, (None, None, self.output_size))


def _init_chain(parts, key: PRNGKey, input_size: int) -> tuple[Params, ...]:
    """Params of layers (or cells) applied one after another: each one's input is the last one's output."""
    checks.positive_int(input_size, "input_size")
    params, size = [], input_size
    for part, k in zip(parts, jax.random.split(key, len(parts)), strict=True):
        params.append(part.init(k, size))
        size = part.output_size
    return tuple(params)


def as_layer(layer, name: str = "layer") -> Layer:
    """A cell becomes an ``RNN`` layer; a layer (:class:`rnnjax.typing.Layer`) is kept as it is.

    Example:
        >>> import rnnjax as rj
        >>> rj.layers.as_layer(rj.GRUCell(4)) == rj.RNN(rj.GRUCell(4))
        True
    """
    if isinstance(layer, Layer):
        return layer
    if isinstance(layer, Cell):
        return RNN(layer)
    raise TypeError(
        f"{name}: expected an rnnjax cell or layer (RNN, Bidirectional, Stack), got {type(layer).__name__} "
        "(a cell of your own needs the rnnjax.typing.Cell methods, check_params included)"
    )


def as_cell(cell, name: str = "cell") -> Cell:
    """A cell (:class:`rnnjax.typing.Cell`), or a list of cells made into a :class:`StackedCell`.

    For what must step one token at a time (decoders); a layer is an error that says so.

    Example:
        >>> import rnnjax as rj
        >>> rj.layers.as_cell([rj.LSTMCell(8), rj.GRUCell(4)]).output_size
        4
    """
    if isinstance(cell, list | tuple):
        cell = StackedCell(list(cell))
    if not isinstance(cell, Cell):
        raise TypeError(
            f"{name}: expected an rnnjax cell or a list of cells (it steps one token at a time; use "
            f"rj.StackedCell([...]) rather than rj.Stack; a cell of your own needs the rnnjax.typing.Cell "
            f"methods, check_params included), got {type(cell).__name__}"
        )
    return cell


_MERGES = {
    "concat": lambda a, b: jnp.concatenate([a, b], axis=-1),
    "sum": jnp.add,
    "mean": lambda a, b: (a + b) / 2,
    "mul": jnp.multiply,
}


class BidirectionalParams(NamedTuple):
    forward: Params
    backward: Params


@dataclasses.dataclass(frozen=True)
class Bidirectional:
    """Two RNNs over the same sequence, one forward and one backward, outputs merged.

    With ``length`` (or a ``mask``), the backward direction starts at each sequence's last
    valid step (not at the padding), as torch's packed sequences and Keras' masking do;
    outputs at padded steps are zero in both directions (unless the directions' ``RNN``
    layers say ``masked_output="last"``).

    Args:
      forward: a cell or an ``RNN`` layer run forward.
      backward: a cell or an ``RNN`` layer; it is run reversed whatever its ``reverse``.
      merge: ``"concat"`` (``[t, 2h]``, forward first, as torch), ``"sum"``, ``"mean"``
        or ``"mul"``.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> layer = rj.Bidirectional(rj.LSTMCell(16), rj.LSTMCell(16))
        >>> params = layer.init(jax.random.key(0), 8)
        >>> layer.apply(params, jnp.ones((10, 8)), length=6).shape
        (10, 32)
    """

    forward: Any
    backward: Any
    merge: str = "concat"

    def __post_init__(self):
        for name, reverse in (("forward", False), ("backward", True)):
            layer = as_layer(getattr(self, name), name)
            if not isinstance(layer, RNN):
                raise TypeError(f"{name}: expected a cell or an rnnjax.RNN, got {type(layer).__name__}")
            object.__setattr__(self, name, dataclasses.replace(layer, reverse=reverse))
        if self.merge not in _MERGES:
            raise ValueError(f"merge: expected one of {sorted(_MERGES)}, got {self.merge!r}")
        if self.merge != "concat" and self.forward.output_size != self.backward.output_size:
            raise ValueError(
                f"merge={self.merge!r} needs equal output sizes, got {self.forward.output_size} "
                f"and {self.backward.output_size}"
            )

    @property
    def output_size(self) -> int:
        if self.merge == "concat":
            return self.forward.output_size + self.backward.output_size
        return self.forward.output_size

    def merge_outputs(self, ys_forward: Array, ys_backward: Array) -> Array:
        """The two directions' outputs ``[..., h]`` merged as ``merge`` says."""
        return _MERGES[self.merge](ys_forward, ys_backward)

    def init(self, key: PRNGKey, input_size: int) -> BidirectionalParams:
        """``BidirectionalParams(forward, backward)``."""
        k_f, k_b = jax.random.split(key)
        return BidirectionalParams(self.forward.init(k_f, input_size), self.backward.init(k_b, input_size))

    def initial_carry(self, params: BidirectionalParams, batch_shape: Shape = ()) -> tuple[Carry, Carry]:
        """``(forward carry, backward carry)``."""
        return self.forward.initial_carry(params.forward, batch_shape), self.backward.initial_carry(
            params.backward, batch_shape
        )

    def apply_with_carry(
        self,
        params: BidirectionalParams,
        xs: Array,
        carry=None,
        *,
        length=None,
        mask: Array | None = None,
        key: PRNGKey | None = None,
    ) -> tuple[tuple[Carry, Carry], Array]:
        """``((forward carry, backward carry), ys)``: each direction's carry after its last valid step.

        The backward direction ends at step 0. ``carry`` (optional) is a pair of initial carries.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> layer = rj.Bidirectional(rj.GRUCell(4), rj.GRUCell(4))
            >>> params = layer.init(jax.random.key(0), 3)
            >>> (fwd, bwd), ys = layer.apply_with_carry(params, jnp.ones((6, 3)), length=4)
            >>> ys.shape, bool(jnp.allclose(fwd.h, ys[3, :4])), bool(jnp.allclose(bwd.h, ys[0, 4:]))
            ((6, 8), True, True)
        """
        carry_f, carry_b = (None, None) if carry is None else carry
        key_f, key_b = (None, None) if key is None else jax.random.split(key)
        carry_f, ys_f = self.forward.apply_with_carry(params.forward, xs, carry_f, length=length, mask=mask, key=key_f)
        carry_b, ys_b = self.backward.apply_with_carry(
            params.backward, xs, carry_b, length=length, mask=mask, key=key_b
        )
        return (carry_f, carry_b), self.merge_outputs(ys_f, ys_b)

    def apply(
        self,
        params: BidirectionalParams,
        xs: Array,
        *,
        length=None,
        mask: Array | None = None,
        key: PRNGKey | None = None,
    ) -> Array:
        """Merged outputs ``[t, o]`` for ``xs: [t, f]``; ``key`` trains with the cells' dropout and zoneout."""
        return self.apply_with_carry(params, xs, length=length, mask=mask, key=key)[1]


@dataclasses.dataclass(frozen=True)
class Stack:
    """A deep RNN: layers applied one after another, each over the whole sequence.

    Layer by layer (not step by step), so each layer's input projection is one matmul
    over all steps. Dropout, when ``dropout > 0`` and a ``key`` is given, is applied to
    the outputs between layers (not after the last), as torch's ``nn.LSTM(dropout=)``.

    Args:
      layers: cells (each wrapped in :class:`RNN`) or sequence layers.
      dropout: drop probability between layers, in [0, 1).

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> stack = rj.Stack([rj.LSTMCell(32), rj.Bidirectional(rj.GRUCell(8), rj.GRUCell(8))], dropout=0.1)
        >>> params = stack.init(jax.random.key(0), 4)
        >>> stack.apply(params, jnp.ones((10, 4)), key=jax.random.key(1)).shape
        (10, 16)
    """

    layers: Sequence[Any]
    dropout: float = 0.0

    def __post_init__(self):
        if len(self.layers) == 0:
            raise ValueError("layers: expected at least one layer, got none")
        layers = tuple(as_layer(layer, f"layers[{i}]") for i, layer in enumerate(self.layers))
        object.__setattr__(self, "layers", layers)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {self.dropout}")

    @property
    def output_size(self) -> int:
        return self.layers[-1].output_size

    def init(self, key: PRNGKey, input_size: int) -> tuple[Params, ...]:
        """A tuple with each layer's params, input side first."""
        return _init_chain(self.layers, key, input_size)

    def initial_carry(self, params: tuple[Params, ...], batch_shape: Shape = ()) -> tuple:
        """A tuple with each layer's initial carry."""
        return tuple(layer.initial_carry(p, batch_shape) for layer, p in zip(self.layers, params, strict=True))

    def apply_with_carry(
        self,
        params: tuple[Params, ...],
        xs: Array,
        carry=None,
        *,
        length=None,
        mask: Array | None = None,
        key: PRNGKey | None = None,
    ) -> tuple[tuple, Array]:
        """``(carries, ys)``: each layer's carry after its last valid step, and the last layer's outputs.

        ``carry`` (optional) is a tuple with each layer's initial carry.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> stack = rj.Stack([rj.LSTMCell(8), rj.GRUCell(4)])
            >>> params = stack.init(jax.random.key(0), 3)
            >>> (first, second), ys = stack.apply_with_carry(params, jnp.ones((5, 3)))
            >>> first.c.shape, second.h.shape, ys.shape
            ((8,), (4,), (5, 4))
        """
        n = len(self.layers)
        if len(params) != n:
            raise ValueError(f"params: expected {n} layer params, got {len(params)}")
        carries = [None] * n if carry is None else list(carry)
        if len(carries) != n:
            raise ValueError(f"carry: expected a tuple of {n} layer carries, got {len(carries)}")
        keys = [None] * (2 * n) if key is None else list(jax.random.split(key, 2 * n))
        layer_keys, dropout_keys = keys[:n], keys[n:]
        out = []
        for i, (layer, p) in enumerate(zip(self.layers, params, strict=True)):
            c, xs = layer.apply_with_carry(p, xs, carries[i], length=length, mask=mask, key=layer_keys[i])
            out.append(c)
            if i < n - 1:
                xs = dropout(xs, self.dropout, dropout_keys[i])
        return tuple(out), xs

    def apply(
        self,
        params: tuple[Params, ...],
        xs: Array,
        *,
        length=None,
        mask: Array | None = None,
        key: PRNGKey | None = None,
    ) -> Array:
        """Outputs of the last layer ``[t, o]``; dropout between layers when ``key`` is given; every layer
        gets the same ``length`` and ``mask``."""
        return self.apply_with_carry(params, xs, length=length, mask=mask, key=key)[1]

    def summary_rows(self, params: tuple[Params, ...]) -> tuple[heads.SummaryRow, ...]:
        """Its rows in :func:`rnnjax.summary`: each layer's, input side first, and a ``Dropout`` row between
        layers when ``dropout > 0``.

        Example:
            >>> import jax, rnnjax as rj
            >>> stack = rj.Stack([rj.Bidirectional(rj.LSTMCell(16), rj.LSTMCell(16)), rj.LSTMCell(4)], dropout=0.1)
            >>> rows = stack.summary_rows(stack.init(jax.random.key(0), 8))
            >>> for row in rows:
            ...     print(row.name, row.type, row.output_shape, rj.count_params(row.params))
            bidirectional Bidirectional (None, None, 32) 3200
            dropout Dropout (None, None, 32) 0
            lstm LSTM (None, None, 4) 592
        """
        rows = []
        for i, (layer, p) in enumerate(zip(self.layers, params, strict=True)):
            if i > 0 and self.dropout > 0:
                rows.append(heads.SummaryRow("dropout", "Dropout", (None, None, self.layers[i - 1].output_size), None))
            rows += heads.summary_rows(layer, p, (None, None, layer.output_size))
        return tuple(rows)


class StackedNoise(NamedTuple):
    """A :class:`StackedCell`'s training noise: each cell's ``SequenceNoise`` (None for a cell without)."""

    cells: tuple

    @property
    def inputs(self) -> Array | None:
        """The first cell's input dropout mask, which ``unroll`` applies to the inputs."""
        return None if self.cells[0] is None else self.cells[0].inputs

    @property
    def zoneout(self) -> tuple:
        """Each cell's zoneout masks ``[t, ...]`` (None for a cell without), scanned with the inputs."""
        return tuple(None if noise is None else noise.zoneout for noise in self.cells)

    def step(self, zoneout: tuple) -> tuple:
        """Each cell's noise at one step (``StepNoise`` or None), given that step's zoneout masks."""
        return tuple(None if n is None else n.step(z) for n, z in zip(self.cells, zoneout, strict=True))


def _with_noise(method, params, carry, x, noise):
    """``method(params, carry, x)``, with ``noise=`` only when there is some (cells without noise take none)."""
    return method(params, carry, x) if noise is None else method(params, carry, x, noise=noise)


@dataclasses.dataclass(frozen=True)
class StackedCell:
    """Several cells as one: the output of each step feeds the next cell's step.

    The carry is a tuple of the cells' carries and the params a tuple of their params,
    so it unrolls to the same result as a ``Stack`` of the same cells (without dropout),
    and it steps one token at a time for decoding. The cells' own dropout and zoneout act in
    training (``unroll`` with a ``key``), each cell's input mask on that cell's input.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.StackedCell([rj.LSTMCell(16), rj.LSTMCell(16)])
        >>> params = cell.init(jax.random.key(0), 8)
        >>> carry, y = cell.step(params, cell.initial_carry(params), jnp.ones(8))
        >>> len(carry), y.shape
        (2, (16,))
    """

    cells: Sequence[Cell]

    def __post_init__(self):
        if len(self.cells) == 0:
            raise ValueError("cells: expected at least one cell, got none")
        object.__setattr__(self, "cells", tuple(self.cells))

    @property
    def output_size(self) -> int:
        return self.cells[-1].output_size

    def check_params(self, params: tuple[Params, ...]) -> None:
        """A tuple of one params per cell, each checked by its cell."""
        if not isinstance(params, tuple) or len(params) != len(self.cells):
            raise ValueError(f"params: expected a tuple of {len(self.cells)} cell params, got {type(params).__name__}")
        for cell, p in zip(self.cells, params, strict=True):
            cell.check_params(p)

    def input_size(self, params: tuple[Params, ...]) -> int:
        return self.cells[0].input_size(params[0])

    def init(self, key: PRNGKey, input_size: int) -> tuple[Params, ...]:
        """A tuple with each cell's params, input side first."""
        return _init_chain(self.cells, key, input_size)

    def initial_carry(self, params: tuple[Params, ...], batch_shape: Shape = ()) -> tuple[Carry, ...]:
        """A tuple with each cell's initial carry."""
        return tuple(cell.initial_carry(p, batch_shape) for cell, p in zip(self.cells, params, strict=True))

    def project(self, params: tuple[Params, ...], xs: Array) -> Array:
        """The first cell's input projection (the only time-parallel part)."""
        return self.cells[0].project(params[0], xs)

    @property
    def has_noise(self) -> bool:
        """Whether a cell has dropout or zoneout (see :class:`rnnjax.typing.NoisyCell`)."""
        return any(isinstance(cell, NoisyCell) and cell.has_noise for cell in self.cells)

    def sequence_noise(self, key: PRNGKey, params: tuple[Params, ...], num_steps: int) -> StackedNoise:
        """Each noisy cell's training noise for one sequence, from its own split of ``key``."""
        noisy = [isinstance(cell, NoisyCell) and cell.has_noise for cell in self.cells]
        keys = jax.random.split(key, len(self.cells))
        return StackedNoise(
            tuple(
                cell.sequence_noise(k, p, num_steps) if n else None
                for cell, p, k, n in zip(self.cells, params, keys, noisy, strict=True)
            )
        )

    def recur(
        self, params: tuple[Params, ...], carry: tuple[Carry, ...], u: Array, noise: tuple | None = None
    ) -> tuple[tuple[Carry, ...], Array]:
        """The first cell's ``recur``, then a full ``step`` of each following cell; ``noise`` (training):
        each cell's step noise, the following cells' input masks applied to their inputs."""
        noise = (None,) * len(self.cells) if noise is None else noise
        first, *rest = self.cells
        new_carry, y = _with_noise(first.recur, params[0], carry[0], u, noise[0])
        carries = [new_carry]
        for cell, p, c, n in zip(rest, params[1:], carry[1:], noise[1:], strict=True):
            if n is not None and n.inputs is not None:
                y = y * n.inputs.astype(y.dtype)
            c, y = _with_noise(cell.step, p, c, y, n)
            carries.append(c)
        return tuple(carries), y

    def step(
        self, params: tuple[Params, ...], carry: tuple[Carry, ...], x: Array, noise: tuple | None = None
    ) -> tuple[tuple[Carry, ...], Array]:
        """``recur(params, carry, project(params, x))``."""
        return self.recur(params, carry, self.project(params, x), noise)

    def summary_rows(self, params: tuple[Params, ...]) -> tuple[heads.SummaryRow, ...]:
        """Its rows in :func:`rnnjax.summary`: one per cell, each run over time (``(None, None, o)``)."""
        rows = []
        for cell, p in zip(self.cells, params, strict=True):
            rows += heads.summary_rows(cell, p, (None, None, cell.output_size))
        return tuple(rows)


@dataclasses.dataclass(frozen=True)
class Masking:
    """A layer whose steps are masked where every feature equals ``mask_value``, as ``keras.layers.Masking``.

    ``mask[t] = any(xs[t] != mask_value)``, combined (and) with a ``mask`` given to ``apply``, is
    passed to ``layer`` with ``length``: the masked steps keep the carry (see :func:`rnnjax.unroll`).

    Args:
      layer: a cell (run as ``RNN``) or a sequence layer.
      mask_value: the feature value that marks a padded step.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> layer = rj.layers.Masking(rj.RNN(rj.GRUCell(4), masked_output="last"))
        >>> params = layer.init(jax.random.key(0), 3)
        >>> xs = jnp.ones((5, 3)).at[0].set(0.0).at[3].set(0.0)  # steps 0 and 3 are padding
        >>> ys = layer.apply(params, xs)
        >>> float(jnp.abs(ys[0]).max()), bool(jnp.all(ys[3] == ys[2]))
        (0.0, True)
    """

    layer: Any
    mask_value: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "layer", as_layer(self.layer))

    @property
    def output_size(self) -> int:
        return self.layer.output_size

    def init(self, key: PRNGKey, input_size: int) -> Params:
        """The wrapped layer's params."""
        return self.layer.init(key, input_size)

    def initial_carry(self, params: Params, batch_shape: Shape = ()) -> Carry:
        """The wrapped layer's initial carry."""
        return self.layer.initial_carry(params, batch_shape)

    def step_mask(self, xs: Array, mask: Array | None = None) -> Array:
        """``[t]`` booleans: the steps with a feature other than ``mask_value`` (and ``mask``)."""
        xs = checks.sequence(xs, None, "xs")
        valid = jnp.any(xs != self.mask_value, axis=-1)
        mask = checks.step_mask(mask, xs.shape[0])
        return valid if mask is None else valid & mask

    def apply_with_carry(
        self,
        params: Params,
        xs: Array,
        carry: Carry | None = None,
        *,
        length=None,
        mask: Array | None = None,
        key: PRNGKey | None = None,
    ) -> tuple[Carry, Array]:
        """The wrapped layer's ``(carry, ys)`` with the steps of ``mask_value`` masked."""
        return self.layer.apply_with_carry(params, xs, carry, length=length, mask=self.step_mask(xs, mask), key=key)

    def apply(
        self, params: Params, xs: Array, *, length=None, mask: Array | None = None, key: PRNGKey | None = None
    ) -> Array:
        """The wrapped layer's outputs with the steps of ``mask_value`` masked."""
        return self.apply_with_carry(params, xs, length=length, mask=mask, key=key)[1]

    def summary_rows(self, params: Params) -> tuple[heads.SummaryRow, ...]:
        """Its rows in :func:`rnnjax.summary`: the wrapped layer's (the masking has no params and keeps shapes)."""
        return heads.summary_rows(self.layer, params, (None, None, self.output_size))


# --- any cell or layer ---------------------------------------------------------------------------


def initial_carry(layer, params: Params, batch_shape: Shape = ()) -> Carry:
    """The initial carry of a cell or a sequence layer, in :func:`apply_with_carry`'s structure.

    A cell or an ``RNN`` has its cell's carry; a ``Bidirectional`` a tuple
    ``(forward, backward)``; a ``Stack`` a tuple with one entry per layer.

    Args:
      layer: a cell, ``RNN``, ``Bidirectional`` or ``Stack``.
      params: its params.
      batch_shape: leading shape of every carry leaf, e.g. ``(b,)``.

    Returns:
      The nested carry, leaves ``[*batch_shape, h]``.

    Example:
        >>> import jax, rnnjax as rj
        >>> layer = rj.Stack([rj.Bidirectional(rj.GRUCell(4), rj.GRUCell(4)), rj.LSTMCell(4)])
        >>> params = layer.init(jax.random.key(0), 3)
        >>> (fwd, bwd), last = rj.layers.initial_carry(layer, params, (5,))
        >>> fwd.h.shape, last.c.shape
        ((5, 4), (5, 4))
    """
    return as_layer(layer).initial_carry(params, batch_shape)


def apply_with_carry(
    layer,
    params: Params,
    xs: Array,
    carry: Carry | None = None,
    *,
    length=None,
    mask: Array | None = None,
    key: PRNGKey | None = None,
) -> tuple[Carry, Array]:
    """``layer.apply`` that also takes and returns the carries: ``(carry, ys)`` for one sequence.

    The outputs are those of ``layer.apply(params, xs, length=length, key=key)`` (the same
    dropout masks for the same ``key``); the carry is nested as in :func:`initial_carry`:
    the state after the last valid step of each direction of each layer (a backward
    direction ends at step 0).

    Args:
      layer: a cell, ``RNN``, ``Bidirectional`` or ``Stack``.
      params: its params.
      xs: one sequence ``[t, f]``.
      carry: the initial carry (nested as :func:`initial_carry`), or None for the default.
      length: number of valid steps, a scalar in ``[0, t]``.
      mask: ``[t]`` booleans, True at valid steps (see :func:`rnnjax.unroll`).
      key: PRNG key for a ``Stack``'s dropout between layers (None: no dropout).

    Returns:
      ``(carry, ys)`` with ``ys: [t, o]``.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> layer = rj.Bidirectional(rj.GRUCell(4), rj.GRUCell(4))
        >>> params = layer.init(jax.random.key(0), 3)
        >>> (fwd, bwd), ys = rj.layers.apply_with_carry(layer, params, jnp.ones((6, 3)), length=4)
        >>> ys.shape, bool(jnp.allclose(fwd.h, ys[3, :4])), bool(jnp.allclose(bwd.h, ys[0, 4:]))
        ((6, 8), True, True)
    """
    return as_layer(layer).apply_with_carry(params, xs, carry, length=length, mask=mask, key=key)


# --- torch-style constructor ---------------------------------------------------------------------


def deep(
    cell_type: type,
    hidden_size: int,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    **cell_kwargs,
) -> Layer:
    """A deep RNN in one call, as torch's ``nn.LSTM(f, h, num_layers=, bidirectional=, dropout=)``.

    Every layer runs the same cell ``cell_type(hidden_size, **cell_kwargs)`` over the whole
    sequence: ``RNN(cell)``, or ``Bidirectional(cell, cell)`` (outputs concatenated, forward
    first) when ``bidirectional``. Several layers make a ``Stack`` with ``dropout`` between
    them (not after the last), as torch's. One layer is that layer itself, not a ``Stack`` of
    one: its params are the cell's (or a ``BidirectionalParams``), as
    :func:`rnnjax.interop.from_torch` gives for ``num_layers=1``, and ``dropout`` (which would
    have no layers to act between; torch warns) must be 0. ``from_torch`` builds its layer with
    this function, so ``deep(...)`` has the structure of a converted torch module's params.

    Args:
      cell_type: a cell class: ``rj.LSTMCell`` (``nn.LSTM``), ``rj.GRUCell`` (``nn.GRU``),
        ``rj.ElmanCell`` (``nn.RNN``), or any other.
      hidden_size: hidden units ``h`` of each direction (the cell's first argument).
      num_layers: number of layers, a positive integer.
      bidirectional: run each layer in both directions.
      dropout: drop probability of the outputs between layers, in ``[0, 1)``, applied when
        ``apply`` gets a ``key`` (``Stack(dropout=)``).
      **cell_kwargs: the cell's other hyper-parameters, e.g. ``proj_size=``, ``activation=``,
        ``param_dtype=``.

    Returns:
      ``Stack([layer] * num_layers, dropout=dropout)`` with ``layer = RNN(cell)`` or
      ``Bidirectional(cell, cell)``; ``layer`` itself when ``num_layers=1``. Its
      ``apply(params, xs)`` maps ``xs: [t, f]`` to ``[t, D * o]`` (``D = 2`` if bidirectional,
      ``o = cell.output_size``), torch's output for one sequence.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> layer = rj.layers.deep(rj.LSTMCell, 16, num_layers=3, bidirectional=True, dropout=0.1)
        >>> params = layer.init(jax.random.key(0), 8)
        >>> len(params), layer.apply(params, jnp.ones((10, 8)), key=jax.random.key(1)).shape
        (3, (10, 32))
        >>> rj.layers.deep(rj.GRUCell, 16) == rj.RNN(rj.GRUCell(16))
        True
    """
    if not isinstance(cell_type, type):
        raise TypeError(
            f"cell_type: expected a cell class such as rj.LSTMCell, got an instance of {type(cell_type).__name__} "
            "(pass the class; hidden_size and the cell's settings are arguments of deep)"
        )
    checks.positive_int(num_layers, "num_layers")
    if not isinstance(bidirectional, bool):
        raise TypeError(f"bidirectional: expected a bool, got {bidirectional!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
    if num_layers == 1 and dropout > 0:
        raise ValueError(
            f"dropout: {dropout} acts between layers and num_layers=1 has none; pass dropout=0.0, or the "
            "cell's own dropout=/recurrent_dropout= (inside the recurrence)"
        )
    cell = cell_type(hidden_size, **cell_kwargs)
    if not isinstance(cell, Cell):
        raise TypeError(f"cell_type: expected a cell class (making rnnjax.typing.Cell instances), got {cell_type!r}")
    layer = Bidirectional(cell, cell) if bidirectional else RNN(cell)
    if num_layers == 1:
        return layer
    return Stack([layer] * num_layers, dropout=float(dropout))
