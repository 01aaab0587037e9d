"""The GRU cell (gates r, z, n; reset-after as torch, cuDNN and Keras, or Cho et al.'s reset-before)."""

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._src import numerics
from rnnjax.cells.base import BaseCell, HiddenCarry, StepNoise, accumulation_dtype, params_checked
from rnnjax.typing import Array, PRNGKey


class GRUParams(NamedTuple):
    w_i: Array  # [f, 3h]  gate blocks r, z, n
    w_h: Array  # [h, 3h]
    b: Array  # [3h]      input bias
    b_h: Array | None = None  # [3h]  recurrent bias (reset_after=True only)
    carry0: HiddenCarry | None = None

    gate_fields = ("w_i", "w_h", "b", "b_h")


@dataclasses.dataclass(frozen=True)
class GRUCell(BaseCell):
    r"""Gated recurrent unit, gate order r, z, n.

    ``reset_after=True`` (torch, cuDNN and Keras' default) applies the reset gate after
    the recurrent matmul and keeps a recurrent bias ``b_h``:

    .. math::
        r &= \sigma(x W_{ir} + b_r + h W_{hr} + b_{hr}), \quad
        z = \sigma(x W_{iz} + b_z + h W_{hz} + b_{hz}) \\
        n &= \tanh(x W_{in} + b_n + r \odot (h W_{hn} + b_{hn})) \\
        h' &= (1 - z) \odot n + z \odot h

    ``reset_after=False`` is Cho et al. 2014: ``n = tanh(x W_in + b_n + (r * h) W_hn)``,
    with one bias.

    Args:
      hidden_size: hidden units ``h``.
      reset_after: where the reset gate is applied (see above).

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = GRUCell(128)
        >>> params = cell.init(jax.random.key(0), 64)
        >>> sum(p.size for p in jax.tree_util.tree_leaves(params))  # = Keras GRU(128)
        74496

    References:
      Cho et al., "Learning phrase representations using RNN encoder-decoder for
      statistical machine translation", EMNLP 2014.
    """

    hidden_size: int
    _: dataclasses.KW_ONLY
    reset_after: bool = True

    params_type: ClassVar[type] = GRUParams
    num_gates: ClassVar[int] = 3
    supports_noise: ClassVar[bool] = True

    def init(self, key: PRNGKey, input_size: int) -> GRUParams:
        """Params: ``w_i [f, 3h]``, ``w_h [h, 3h]``, ``b [3h]``, and ``b_h [3h]`` if reset-after.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> GRUCell(8, reset_after=False).init(jax.random.key(0), 4).b_h is None
            True
        """
        w_i, w_h = self._weights(key, input_size)
        b = jnp.zeros((3 * self.hidden_size,), self.param_dtype)
        b_h = jnp.zeros_like(b) if self.reset_after else None
        return GRUParams(w_i, w_h, b, b_h, self._init_carry0())

    def recur(
        self, params: GRUParams, carry: HiddenCarry, u: Array, noise: StepNoise | None = None
    ) -> tuple[HiddenCarry, Array]:
        """One step from the projected input ``u: [..., 3h]``; ``noise`` in training (recurrent dropout on
        ``h_{t-1}`` in the recurrent matmuls only, not in the interpolation; zoneout of ``h``).

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> cell = GRUCell(8)
            >>> params = cell.init(jax.random.key(0), 4)
            >>> u = cell.project(params, jnp.ones(4))
            >>> cell.recur(params, cell.initial_carry(params), u)[1].shape
            (8,)
        """
        return self.recur_with_factors(params, carry, u, noise)[:2]

    @params_checked
    def recur_with_factors(
        self, params: GRUParams, carry: HiddenCarry, u: Array, noise: StepNoise | None = None
    ) -> tuple[HiddenCarry, Array, tuple[Array, Array]]:
        """:meth:`recur`, and what meets ``w_h``, for :class:`~rnnjax.typing.RecurrentWeightCell`: the
        ``h_{t-1}`` of the r and z blocks and the reset gate ``r`` (reset-after: the n block is
        ``u_n + r * (h_{t-1} W_hn + b_hn)``), or the n block's ``r * h_{t-1}`` (reset-before)."""
        dtype, acc = u.dtype, accumulation_dtype(u.dtype)
        h = carry.h.astype(acc)
        h_in = carry.h if noise is None or noise.recurrent is None else carry.h * noise.recurrent
        u_r, u_z, u_n = jnp.split(u.astype(acc), 3, axis=-1)
        if self.reset_after:
            hw = numerics.matmul(h_in, params.w_h, dtype, self.precision) + params.b_h.astype(acc)
            hw_r, hw_z, hw_n = jnp.split(hw, 3, axis=-1)
            r, z = jax.nn.sigmoid(u_r + hw_r), jax.nn.sigmoid(u_z + hw_z)
            n = jnp.tanh(u_n + r * hw_n)
            factors = (h_in, r)
        else:
            hidden = self.hidden_size
            hw_r, hw_z = jnp.split(
                numerics.matmul(h_in, params.w_h[:, : 2 * hidden], dtype, self.precision), 2, axis=-1
            )
            r, z = jax.nn.sigmoid(u_r + hw_r), jax.nn.sigmoid(u_z + hw_z)
            reset_h = r * h_in.astype(acc)
            n = jnp.tanh(u_n + numerics.matmul(reset_h, params.w_h[:, 2 * hidden :], dtype, self.precision))
            factors = (h_in, reset_h)
        h = ((1 - z) * n + z * h).astype(dtype)
        carry = self._zone_out(carry, HiddenCarry(h), noise)
        return carry, carry.h, factors

    def weight_tangent(self, factors: tuple[Array, Array], d_w_h: Array, dtype) -> Array:
        """The change of ``u`` that acts as the change ``d_w_h`` of ``w_h``, for
        :class:`~rnnjax.typing.RecurrentWeightCell`: ``h_{t-1} dW_h`` in the r and z blocks; in the n block
        ``r * (h_{t-1} dW_hn)`` (reset-after, where ``u_n`` meets ``r * h_{t-1} W_hn``) or
        ``(r * h_{t-1}) dW_hn`` (reset-before)."""
        h_in, n_factor = factors
        two = 2 * self.hidden_size
        d_rz = numerics.matmul_weight_tangent(h_in, d_w_h[:, :two], dtype, self.precision)
        if self.reset_after:
            d_n = n_factor * numerics.matmul_weight_tangent(h_in, d_w_h[:, two:], dtype, self.precision)
        else:
            d_n = numerics.matmul_weight_tangent(n_factor, d_w_h[:, two:], dtype, self.precision)
        return jnp.concatenate([d_rz, d_n], axis=-1)
