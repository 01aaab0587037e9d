"""Flax modules that wrap any rnnjax cell or sequence layer, for NNX and for Linen.

:class:`RNN` (an ``nnx.Module``) and :class:`LinenRNN` (a ``linen.Module``) run an rnnjax
cell, ``RNN``, ``Bidirectional`` or ``Stack`` over batch-major inputs ``[*b, t, f]``
(``[t, f]`` works too) with per-example ``seq_lengths [*b]`` or step masks ``mask [*b, t]``, an optional initial carry
and ``return_carry``, like Flax's own ``RNN``. The rnnjax params pytree is kept as it is
inside the module's ``params`` collection (NNX: one ``nnx.Param`` per leaf under the
``params`` attribute; Linen: the whole NamedTuple as the param ``"rnn"``), so
``nnx.state(model, nnx.Param)``, ``nnx.tabulate`` and ``linen.Module.tabulate`` count
them, ``nnx.grad`` differentiates them, and ``rnnjax`` functions take them back unchanged.

Outputs past a sequence's length are zero, and the carry is the one after its last valid
step (:func:`rnnjax.layers.apply_with_carry`). A ``Stack`` with ``dropout`` drops between
layers, and cells with dropout or zoneout rates use them, in training mode only: NNX
``deterministic=False`` (``model.train()``) with a ``dropout`` stream, Linen
``deterministic=False`` with a ``"dropout"`` rng.

Import it explicitly: ``import rnnjax.flax`` (``import rnnjax`` does not load Flax).
"""

import math
from typing import Any

import jax
import jax.numpy as jnp

try:
    from flax import linen, nnx
except ImportError as error:  # flax is an optional extra
    raise ImportError("rnnjax.flax needs flax: pip install flax (or the rnnjax[flax] extra)") from error

from rnnjax import layers
from rnnjax.layers import Bidirectional, Stack
from rnnjax.typing import Array, Carry, NoisyCell, Params, PRNGKey

__all__ = ["LinenRNN", "RNN"]


def _has_dropout(layer) -> bool:
    """Whether training draws random masks: a Stack's dropout between layers, or a cell's own dropout/zoneout."""
    if isinstance(layer, Stack):
        return layer.dropout > 0 or any(_has_dropout(sub) for sub in layer.layers)
    if isinstance(layer, Bidirectional):
        return _has_dropout(layer.forward) or _has_dropout(layer.backward)
    if isinstance(layer, layers.RNN):
        return _has_dropout(layer.cell)
    if isinstance(layer, layers.Masking):
        return _has_dropout(layer.layer)
    return isinstance(layer, NoisyCell) and layer.has_noise


def _run(layer, params: Params, xs, seq_lengths, initial_carry, key: PRNGKey | None, mask=None) -> tuple[Carry, Array]:
    """``apply_with_carry`` vmapped over the leading axes of ``xs: [*b, t, f]``."""
    xs = jnp.asarray(xs)
    if xs.ndim < 2:
        raise ValueError(f"xs: expected batch-major inputs [*b, t, f] (or [t, f]), got shape {xs.shape}")
    batch_shape = xs.shape[:-2]
    n = math.prod(batch_shape)
    lengths = None
    if seq_lengths is not None:
        lengths = jnp.asarray(seq_lengths)
        if lengths.shape != batch_shape:
            raise ValueError(
                f"seq_lengths: expected shape {batch_shape} (one length per sequence), got {lengths.shape}"
            )
        lengths = lengths.reshape(n)
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.shape != xs.shape[:-1]:
            raise ValueError(f"mask: expected shape {xs.shape[:-1]} (one flag per step), got {mask.shape}")
        mask = mask.reshape(n, xs.shape[-2])
    carry = None
    if initial_carry is not None:
        for leaf in jax.tree_util.tree_leaves(initial_carry):
            if jnp.shape(leaf)[: len(batch_shape)] != batch_shape:
                raise ValueError(
                    f"initial_carry: expected leaves with leading batch shape {batch_shape}, got {jnp.shape(leaf)}"
                )
        carry = jax.tree_util.tree_map(lambda c: jnp.reshape(c, (n, *jnp.shape(c)[len(batch_shape) :])), initial_carry)
    keys = None if key is None else jax.random.split(key, n)

    def one(x, length, m, c, k):
        return layers.apply_with_carry(layer, params, x, c, length=length, mask=m, key=k)

    carry, ys = jax.vmap(one)(xs.reshape(n, *xs.shape[-2:]), lengths, mask, carry, keys)
    unbatch = lambda a: a.reshape(*batch_shape, *a.shape[1:])  # noqa: E731
    return jax.tree_util.tree_map(unbatch, carry), unbatch(ys)


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


class RNN(nnx.Module):
    """An rnnjax cell or sequence layer as a Flax NNX module.

    Args:
      layer: an rnnjax cell, ``RNN``, ``Bidirectional`` or ``Stack`` (hyper-parameters only).
      input_size: ``f``, to initialise the params with ``layer.init``.
      params: existing params (e.g. from :func:`rnnjax.interop.from_torch`) instead of
        initialising; each leaf becomes an ``nnx.Param``.
      rngs: ``nnx.Rngs``; its ``params`` stream initialises, its ``dropout`` stream (kept)
        drives a ``Stack``'s dropout.
      deterministic: no dropout (``model.eval()`` sets it, ``model.train()`` clears it).

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj, rnnjax.flax
        >>> from flax import nnx
        >>> model = rnnjax.flax.RNN(rj.LSTMCell(4), 3, rngs=nnx.Rngs(0))
        >>> xs = jnp.ones((2, 10, 3))                       # [b, t, f]
        >>> carry, ys = model(xs, seq_lengths=jnp.array([10, 7]), return_carry=True)
        >>> ys.shape, carry.c.shape
        ((2, 10, 4), (2, 4))
        >>> sum(p.size for p in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))  # 4 * 4 * (3 + 4 + 1)
        128
    """

    def __init__(
        self,
        layer,
        input_size: int | None = None,
        *,
        params: Params | None = None,
        rngs: nnx.Rngs | None = None,
        deterministic: bool = False,
    ):
        self.layer = layer
        if params is None:
            if input_size is None or rngs is None:
                raise ValueError("input_size, rngs: needed to initialise the params (or pass params=)")
            params = layer.init(rngs.params(), input_size)
        self.params = nnx.data(jax.tree_util.tree_map(nnx.Param, params))
        self.deterministic = deterministic
        self.rngs = rngs["dropout"].fork() if rngs is not None and _has_dropout(layer) else nnx.data(None)

    @property
    def layer_params(self) -> Params:
        """The rnnjax params pytree (the values of the ``nnx.Param`` leaves)."""
        return jax.tree_util.tree_map(lambda v: v[...], self.params, is_leaf=_is_variable)

    def initial_carry(self, batch_shape: tuple[int, ...] = ()) -> Carry:
        """The default initial carry, leaves ``[*batch_shape, h]`` (see :func:`rnnjax.layers.initial_carry`).

        Example:
            >>> import rnnjax as rj, rnnjax.flax
            >>> from flax import nnx
            >>> rnnjax.flax.RNN(rj.GRUCell(4), 3, rngs=nnx.Rngs(0)).initial_carry((2,)).h.shape
            (2, 4)
        """
        return layers.initial_carry(self.layer, self.layer_params, batch_shape)

    def __call__(
        self,
        xs: Array,
        *,
        seq_lengths: Array | None = None,
        initial_carry: Carry | None = None,
        return_carry: bool = False,
        deterministic: bool | None = None,
        rngs: nnx.Rngs | nnx.RngStream | Array | None = None,
        mask: Array | None = None,
    ) -> Array | tuple[Carry, Array]:
        """Run the layer over ``xs: [*b, t, f]``.

        Args:
          xs: batch-major inputs ``[*b, t, f]`` (or one sequence ``[t, f]``).
          seq_lengths: integer lengths ``[*b]``; outputs past them are zero.
          mask: booleans ``[*b, t]``, True at valid steps (see :func:`rnnjax.unroll`).
          initial_carry: a carry with leaves ``[*b, h]`` (see :meth:`initial_carry`).
          return_carry: return ``(carry, ys)`` instead of ``ys``.
          deterministic: overrides the attribute (no dropout when True).
          rngs: overrides the kept dropout stream (``nnx.Rngs``, a stream or a key).

        Returns:
          ``ys: [*b, t, o]``, or ``(carry, ys)`` with the carry after each last valid step.
        """
        key = None
        deterministic = self.deterministic if deterministic is None else deterministic
        if _has_dropout(self.layer) and not deterministic:
            stream = self.rngs if rngs is None else rngs
            if stream is None:
                raise ValueError("rngs: dropout (deterministic=False) needs rngs with a 'dropout' stream")
            if isinstance(stream, nnx.Rngs):
                stream = stream["dropout"]
            key = stream if isinstance(stream, jax.Array) else stream()
        carry, ys = _run(self.layer, self.layer_params, xs, seq_lengths, initial_carry, key, mask)
        return (carry, ys) if return_carry else ys


class LinenRNN(linen.Module):
    """An rnnjax cell or sequence layer as a Flax Linen module.

    The params are created on the first call from the inputs' feature size, as the
    single param ``"rnn"`` holding the rnnjax params pytree (put converted params there:
    ``{"params": {"rnn": params}}``).

    Attributes:
      layer: an rnnjax cell, ``RNN``, ``Bidirectional`` or ``Stack``.
      deterministic: no dropout (also a call argument, as ``linen.Dropout``); only needed
        for a ``Stack`` with dropout.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj, rnnjax.flax
        >>> model = rnnjax.flax.LinenRNN(rj.GRUCell(4))
        >>> xs = jnp.ones((2, 10, 3))
        >>> variables = model.init(jax.random.key(0), xs)
        >>> params = variables["params"]
        >>> type(params.get("rnn")).__name__
        'GRUParams'
        >>> model.apply(variables, xs, seq_lengths=jnp.array([10, 7])).shape
        (2, 10, 4)
    """

    layer: Any
    deterministic: bool | None = None

    @linen.compact
    def __call__(
        self,
        xs: Array,
        *,
        seq_lengths: Array | None = None,
        initial_carry: Carry | None = None,
        return_carry: bool = False,
        deterministic: bool | None = None,
        mask: Array | None = None,
    ) -> Array | tuple[Carry, Array]:
        """Run the layer over ``xs: [*b, t, f]``; see :meth:`RNN.__call__` for the arguments."""
        params = self.param("rnn", lambda key: self.layer.init(key, jnp.shape(xs)[-1]))
        key = None
        if _has_dropout(self.layer) and not linen.merge_param("deterministic", self.deterministic, deterministic):
            key = self.make_rng("dropout")
        carry, ys = _run(self.layer, params, xs, seq_lengths, initial_carry, key, mask)
        return (carry, ys) if return_carry else ys
