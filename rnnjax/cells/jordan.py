"""The Jordan cell: the context is the previous output."""

import dataclasses
from collections.abc import Callable
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._src import checks, numerics
from rnnjax.cells.base import AdditiveRecurrentWeight, BaseCell, accumulation_dtype, params_checked
from rnnjax.typing import Array, PRNGKey


class JordanCarry(NamedTuple):
    """Jordan carry: the context units, fed from the previous output."""

    context: Array  # [..., o]


class JordanParams(NamedTuple):
    w_i: Array  # [f, h]    input -> hidden
    w_h: Array  # [o, h]    context -> hidden
    b: Array  # [h]
    w_o: Array  # [h, o]    hidden -> output
    b_o: Array  # [o]
    carry0: JordanCarry | None = None


@dataclasses.dataclass(frozen=True)
class JordanCell(AdditiveRecurrentWeight, BaseCell):
    r"""Jordan network: the hidden layer sees context units fed from the previous output.

    .. math::
        s_t &= \phi(x_t W_i + c_{t-1} W_h + b) \\
        y_t &= \psi(s_t W_o + b_o) \\
        c_t &= \lambda c_{t-1} + y_t

    ``c`` (the carry) has the output's size ``o``; ``lambda`` is ``context_decay``
    (0 by default: the context is the previous output).

    Args:
      hidden_size: hidden units ``h``.
      output_size: output (and context) units ``o``; defaults to ``hidden_size``.
      activation: hidden activation ``phi`` (``"tanh"``).
      output_activation: output activation ``psi`` (``"tanh"``).
      context_decay: self-connection ``lambda`` of the context units, in [0, 1).

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = JordanCell(16, output_size=3)
        >>> params = cell.init(jax.random.key(0), 5)
        >>> carry, y = cell.step(params, cell.initial_carry(params), jnp.ones(5))
        >>> carry.context.shape, y.shape
        ((3,), (3,))

    References:
      Jordan, "Serial order: a parallel distributed processing approach", 1986.
    """

    hidden_size: int
    output_size: int | None = None
    _: dataclasses.KW_ONLY
    activation: str | Callable = "tanh"
    output_activation: str | Callable = "tanh"
    context_decay: float = 0.0

    params_type: ClassVar[type] = JordanParams

    def __post_init__(self):
        super().__post_init__()
        if self.output_size is None:
            object.__setattr__(self, "output_size", self.hidden_size)
        checks.positive_int(self.output_size, "output_size")
        numerics.activation(self.activation)
        numerics.activation(self.output_activation, "output_activation")
        if not 0.0 <= self.context_decay < 1.0:
            raise ValueError(f"context_decay: expected a value in [0, 1), got {self.context_decay}")

    def _carry_sizes(self) -> JordanCarry:
        return JordanCarry(self.output_size)

    def init(self, key: PRNGKey, input_size: int) -> JordanParams:
        """Params: ``w_i [f, h]``, ``w_h [o, h]``, ``b [h]``, ``w_o [h, o]``, ``b_o [o]``.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> JordanCell(8, 2).init(jax.random.key(0), 4).w_h.shape
            (2, 8)
        """
        checks.positive_int(input_size, "input_size")
        k_i, k_h, k_o = jax.random.split(key, 3)
        h, o, dt = self.hidden_size, self.output_size, self.param_dtype
        return JordanParams(
            w_i=self._initialize(self.kernel_init, k_i, (input_size, h)),
            w_h=self._initialize(self.recurrent_init, k_h, (o, h)),
            b=jnp.zeros((h,), dt),
            w_o=self._initialize(self.kernel_init, k_o, (h, o)),
            b_o=jnp.zeros((o,), dt),
            carry0=self._init_carry0(),
        )

    def recur(self, params: JordanParams, carry: JordanCarry, u: Array) -> tuple[JordanCarry, Array]:
        """One step from the projected input ``u: [..., h]``; returns ``y: [..., o]``.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> cell = JordanCell(8, 2)
            >>> params = cell.init(jax.random.key(0), 4)
            >>> u = cell.project(params, jnp.ones(4))
            >>> cell.recur(params, cell.initial_carry(params), u)[1].shape
            (2,)
        """
        return self.recur_with_factors(params, carry, u)[:2]

    @params_checked
    def recur_with_factors(
        self,
        params: JordanParams,
        carry: JordanCarry,
        u: Array,
        noise=None,  # a Jordan cell has no training noise
    ) -> tuple[JordanCarry, Array, Array]:
        """:meth:`recur`, and the context that meets ``w_h``, for :class:`~rnnjax.typing.RecurrentWeightCell`."""
        dtype = u.dtype
        context = carry.context.astype(dtype)
        s = numerics.activation(self.activation)(
            u.astype(accumulation_dtype(dtype)) + numerics.matmul(context, params.w_h, dtype, self.precision)
        )
        y = numerics.activation(self.output_activation)(
            numerics.affine(s, params.w_o, params.b_o, dtype, self.precision)
        )
        return JordanCarry(self.context_decay * context + y), y, context
