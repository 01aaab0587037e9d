"""The recurrent multilayer perceptron: feed-forward layers, then a recurrent (Elman) layer."""

import dataclasses
from collections.abc import Callable
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._src import checks, numerics
from rnnjax.cells.base import BaseCell, DenseParams, HiddenCarry, params_checked
from rnnjax.cells.elman import ElmanCell, ElmanParams
from rnnjax.typing import Array, PRNGKey, Shape


class RMLPParams(NamedTuple):
    layers: tuple[DenseParams, ...]  # the feed-forward layers, input first
    recurrent: ElmanParams  # the recurrent last layer


@dataclasses.dataclass(frozen=True)
class RMLPCell(BaseCell):
    r"""Recurrent multilayer perceptron: feed-forward layers, then a recurrent last layer.

    .. math::
        z_t &= \phi(\dots \phi(x_t V_1 + c_1) \dots V_L + c_L) \\
        h_t &= \phi(z_t W_i + h_{t-1} W_h + b)

    The feed-forward layers are time-parallel, so they are part of :meth:`project`;
    the last layer is an :class:`ElmanCell`.

    Args:
      hidden_size: units of the recurrent last layer ``h``.
      mlp_sizes: widths of the feed-forward layers before it, input side first.
      activation: activation of every layer (``"tanh"``).

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = RMLPCell(8, mlp_sizes=(32, 16))
        >>> params = cell.init(jax.random.key(0), 4)
        >>> [layer.w.shape for layer in params.layers], params.recurrent.w_h.shape
        ([(4, 32), (32, 16)], (8, 8))

    References:
      Puskorius & Feldkamp, "Neurocontrol of nonlinear dynamical systems with Kalman
      filter trained recurrent networks", IEEE TNN 1994.
    """

    hidden_size: int
    _: dataclasses.KW_ONLY
    mlp_sizes: tuple[int, ...] = ()
    activation: str | Callable = "tanh"

    params_type: ClassVar[type] = RMLPParams

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "mlp_sizes", tuple(self.mlp_sizes))
        for i, size in enumerate(self.mlp_sizes):
            checks.positive_int(size, f"mlp_sizes[{i}]")
        numerics.activation(self.activation)

    @property
    def _recurrent(self) -> ElmanCell:
        return ElmanCell(
            self.hidden_size,
            activation=self.activation,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            precision=self.precision,
            learn_initial_carry=self.learn_initial_carry,
            kernel_init=self.kernel_init,
            recurrent_init=self.recurrent_init,
        )

    def input_size(self, params: RMLPParams) -> int:
        return params.layers[0].w.shape[0] if params.layers else params.recurrent.w_i.shape[0]

    def init(self, key: PRNGKey, input_size: int) -> RMLPParams:
        """Params: ``layers`` (one :class:`DenseParams` per MLP layer) and ``recurrent``.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> RMLPCell(8).init(jax.random.key(0), 4).layers
            ()
        """
        checks.positive_int(input_size, "input_size")
        keys = jax.random.split(key, len(self.mlp_sizes) + 1)
        sizes = (input_size, *self.mlp_sizes)
        layers = tuple(
            DenseParams(self._initialize(self.kernel_init, k, (n_in, n_out)), jnp.zeros((n_out,), self.param_dtype))
            for k, n_in, n_out in zip(keys[:-1], sizes[:-1], sizes[1:], strict=True)
        )
        return RMLPParams(layers, self._recurrent.init(keys[-1], sizes[-1]))

    @params_checked
    def initial_carry(self, params: RMLPParams, batch_shape: Shape = ()) -> HiddenCarry:
        """The recurrent layer's initial carry ``h: [*batch_shape, h]``.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> cell = RMLPCell(8, mlp_sizes=(16,))
            >>> cell.initial_carry(cell.init(jax.random.key(0), 4)).h.shape
            (8,)
        """
        return self._recurrent.initial_carry(params.recurrent, batch_shape)

    @params_checked
    def project(self, params: RMLPParams, xs: Array) -> Array:
        """The feed-forward layers and the recurrent layer's input projection, ``[..., f] -> [..., h]``.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> cell = RMLPCell(8, mlp_sizes=(16,))
            >>> cell.project(cell.init(jax.random.key(0), 4), jnp.ones((10, 4))).shape
            (10, 8)
        """
        xs = checks.floating(xs, "xs")
        checks.features(xs, self.input_size(params), "xs")
        dtype = self._compute_dtype(params, xs.dtype)
        act = numerics.activation(self.activation)
        for layer in params.layers:
            xs = act(numerics.affine(xs, layer.w, layer.b, dtype, self.precision))
        return self._recurrent.project(params.recurrent, xs.astype(dtype))

    @params_checked
    def recur(self, params: RMLPParams, carry: HiddenCarry, u: Array) -> tuple[HiddenCarry, Array]:
        """The recurrent last layer's step (see :meth:`ElmanCell.recur`).

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> cell = RMLPCell(8, mlp_sizes=(16,))
            >>> params = cell.init(jax.random.key(0), 4)
            >>> cell.recur(params, cell.initial_carry(params), jnp.zeros(8))[1].shape
            (8,)
        """
        return self._recurrent.recur(params.recurrent, carry, u)
