"""The Elman (simple) RNN cell, as Keras' ``SimpleRNN`` and torch's ``nn.RNN``."""

import dataclasses
from collections.abc import Callable
from typing import ClassVar, NamedTuple

import jax.numpy as jnp

from rnnjax._src import numerics
from rnnjax.cells.base import (
    AdditiveRecurrentWeight,
    BaseCell,
    HiddenCarry,
    StepNoise,
    accumulation_dtype,
    params_checked,
)
from rnnjax.typing import Array, PRNGKey


class ElmanParams(NamedTuple):
    w_i: Array  # [f, h]
    w_h: Array  # [h, h]
    b: Array  # [h]
    carry0: HiddenCarry | None = None

    gate_fields = ("w_i", "w_h", "b")  # last axis: gates x hidden (rnnjax.typing.GatedParams)


@dataclasses.dataclass(frozen=True)
class ElmanCell(AdditiveRecurrentWeight, BaseCell):
    r"""Elman's simple recurrent network (= torch ``nn.RNN``, Keras ``SimpleRNN``).

    .. math::  h_t = \phi(x_t W_i + h_{t-1} W_h + b), \qquad y_t = h_t

    Args:
      hidden_size: number of hidden units ``h``.
      activation: ``"tanh"`` (default) or ``"relu"``, or another name/callable.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = ElmanCell(50)
        >>> params = cell.init(jax.random.key(0), 64)
        >>> sum(p.size for p in jax.tree_util.tree_leaves(params))  # = Keras SimpleRNN(50)
        5750

    References:
      Elman, "Finding structure in time", Cognitive Science 1990.
    """

    hidden_size: int
    _: dataclasses.KW_ONLY
    activation: str | Callable = "tanh"

    params_type: ClassVar[type] = ElmanParams
    supports_noise: ClassVar[bool] = True

    def __post_init__(self):
        super().__post_init__()
        numerics.activation(self.activation)

    def init(self, key: PRNGKey, input_size: int) -> ElmanParams:
        """Params for inputs of size ``input_size``: ``w_i [f, h]``, ``w_h [h, h]``, ``b [h]``.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> ElmanCell(8).init(jax.random.key(0), 4).w_h.shape
            (8, 8)
        """
        w_i, w_h = self._weights(key, input_size)
        b = jnp.zeros((self.hidden_size,), self.param_dtype)
        return ElmanParams(w_i, w_h, b, self._init_carry0())

    def recur(
        self, params: ElmanParams, carry: HiddenCarry, u: Array, noise: StepNoise | None = None
    ) -> tuple[HiddenCarry, Array]:
        """``h = phi(u + h @ w_h)``; ``u: [..., h]`` from :meth:`project`; ``noise`` in training (dropout,
        zoneout: see :class:`~rnnjax.cells.base.BaseCell`).

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> cell = ElmanCell(8)
            >>> params = cell.init(jax.random.key(0), 4)
            >>> u = cell.project(params, jnp.ones(4))
            >>> carry, y = cell.recur(params, cell.initial_carry(params), u)
            >>> y.shape
            (8,)
        """
        return self.recur_with_factors(params, carry, u, noise)[:2]

    @params_checked
    def recur_with_factors(
        self, params: ElmanParams, carry: HiddenCarry, u: Array, noise: StepNoise | None = None
    ) -> tuple[HiddenCarry, Array, Array]:
        """:meth:`recur`, and the ``h_{t-1}`` that meets ``w_h``, for :class:`~rnnjax.typing.RecurrentWeightCell`."""
        h_in = carry.h if noise is None or noise.recurrent is None else carry.h * noise.recurrent
        z = u.astype(accumulation_dtype(u.dtype)) + numerics.matmul(h_in, params.w_h, u.dtype, self.precision)
        h = numerics.activation(self.activation)(z).astype(u.dtype)
        carry = self._zone_out(carry, HiddenCarry(h), noise)
        return carry, carry.h, h_in
