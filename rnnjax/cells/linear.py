"""Linear-recurrence cells, ``h_t = a_t * h_{t-1} + b_t`` with ``(a_t, b_t)`` from the input only: minGRU, minLSTM."""

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._src import checks
from rnnjax.cells.base import BaseCell, HiddenCarry, params_checked
from rnnjax.typing import Array, Params, PRNGKey


class MinGRUParams(NamedTuple):
    w_i: Array  # [f, 2h]  blocks z, candidate
    b: Array  # [2h]
    carry0: HiddenCarry | None = None

    gate_fields = ("w_i", "b")


class MinLSTMParams(NamedTuple):
    w_i: Array  # [f, 3h]  blocks f, i, candidate
    b: Array  # [3h]
    carry0: HiddenCarry | None = None

    gate_fields = ("w_i", "b")


@dataclasses.dataclass(frozen=True, kw_only=True)
class _LinearRecurrenceCell(BaseCell):
    """A cell whose step is ``h_t = a_t * h_{t-1} + b_t`` with ``(a_t, b_t)`` from ``x_t`` only.

    Because the recurrence is linear in the carry, ``unroll(..., parallel=True)`` can
    run it as a :func:`jax.lax.associative_scan` (``O(log t)`` depth).
    """

    def coefficients(self, params: Params, us: Array) -> tuple[Array, Array]:
        raise NotImplementedError

    @params_checked
    def recur(self, params: Params, carry: HiddenCarry, u: Array) -> tuple[HiddenCarry, Array]:
        """``h = a * h + b`` with ``(a, b) = coefficients(params, u)``.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> cell = MinGRUCell(8)
            >>> params = cell.init(jax.random.key(0), 4)
            >>> u = cell.project(params, jnp.ones(4))
            >>> cell.recur(params, cell.initial_carry(params), u)[1].shape
            (8,)
        """
        a, b = self.coefficients(params, u)
        h = a * carry.h.astype(u.dtype) + b
        return HiddenCarry(h), h

    def init(self, key: PRNGKey, input_size: int) -> Params:
        """Params: ``w_i [f, g]`` and ``b [g]`` (no recurrent weights).

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> MinLSTMCell(8).init(jax.random.key(0), 4).w_i.shape
            (4, 24)
        """
        checks.positive_int(input_size, "input_size")
        width = self.num_gates * self.hidden_size
        w_i = self._initialize(self.kernel_init, key, (input_size, width))
        return self.params_type(w_i, jnp.zeros((width,), self.param_dtype), self._init_carry0())


@dataclasses.dataclass(frozen=True)
class MinGRUCell(_LinearRecurrenceCell):
    r"""minGRU: a GRU whose gates see only the input, so it is linear in the carry.

    .. math::
        z_t = \sigma(x_t W_z + b_z), \quad \tilde h_t = x_t W_h + b_h, \quad
        h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = MinGRUCell(8)
        >>> params = cell.init(jax.random.key(0), 4)
        >>> a, b = cell.coefficients(params, cell.project(params, jnp.ones((10, 4))))
        >>> a.shape, b.shape
        ((10, 8), (10, 8))

    References:
      Feng et al., "Were RNNs all we needed?", 2024.
    """

    hidden_size: int

    params_type: ClassVar[type] = MinGRUParams
    num_gates: ClassVar[int] = 2

    @params_checked
    def coefficients(self, params: MinGRUParams, us: Array) -> tuple[Array, Array]:
        """``(a, b) = (1 - z, z * h_tilde)`` from ``us: [..., 2h]``; each ``[..., h]``."""
        z_pre, candidate = jnp.split(us, 2, axis=-1)
        z = jax.nn.sigmoid(z_pre)
        return 1 - z, z * candidate


@dataclasses.dataclass(frozen=True)
class MinLSTMCell(_LinearRecurrenceCell):
    r"""minLSTM: forget and input gates from the input only, normalised to sum to one.

    .. math::
        f_t = \sigma(x_t W_f + b_f), \quad i_t = \sigma(x_t W_i + b_i), \quad
        \tilde h_t = x_t W_h + b_h \\
        h_t = \frac{f_t}{f_t + i_t} \odot h_{t-1} + \frac{i_t}{f_t + i_t} \odot \tilde h_t

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = MinLSTMCell(8)
        >>> params = cell.init(jax.random.key(0), 4)
        >>> carry, y = cell.step(params, cell.initial_carry(params), jnp.ones(4))
        >>> y.shape
        (8,)

    References:
      Feng et al., "Were RNNs all we needed?", 2024.
    """

    hidden_size: int

    params_type: ClassVar[type] = MinLSTMParams
    num_gates: ClassVar[int] = 3

    @params_checked
    def coefficients(self, params: MinLSTMParams, us: Array) -> tuple[Array, Array]:
        """``(a, b) = (f', i' * h_tilde)`` from ``us: [..., 3h]``; each ``[..., h]``."""
        f_pre, i_pre, candidate = jnp.split(us, 3, axis=-1)
        f, i = jax.nn.sigmoid(f_pre), jax.nn.sigmoid(i_pre)
        total = f + i
        return f / total, i / total * candidate
