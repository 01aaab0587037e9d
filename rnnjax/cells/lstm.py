"""The LSTM cell (gates i, f, g, o; one bias; optional peepholes)."""

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._src import numerics
from rnnjax.cells.base import BaseCell, StepNoise, accumulation_dtype, params_checked
from rnnjax.typing import Array, PRNGKey


class LSTMCarry(NamedTuple):
    """LSTM carry, in torch/Keras order: hidden output first, then the cell state."""

    h: Array  # [..., h]
    c: Array  # [..., h]


class LSTMParams(NamedTuple):
    w_i: Array  # [f, 4h]  gate blocks i, f, g, o
    w_h: Array  # [h, 4h]
    b: Array  # [4h]      one bias (torch's b_ih + b_hh)
    peephole: Array | None = None  # [3, h]  rows: input, forget, output gate
    carry0: LSTMCarry | None = None

    gate_fields = ("w_i", "w_h", "b")


@dataclasses.dataclass(frozen=True)
class LSTMCell(BaseCell):
    r"""Long short-term memory, gate order i, f, g, o, one bias (as Keras; torch's two summed).

    .. math::
        [i, f, g, o] &= x_t W_i + h_{t-1} W_h + b \\
        i &\mathrel{+}= p_i \odot c_{t-1}, \quad f \mathrel{+}= p_f \odot c_{t-1}
            \quad\text{(peephole only)} \\
        c_t &= \sigma(f) \odot c_{t-1} + \sigma(i) \odot \tanh(g) \\
        o &\mathrel{+}= p_o \odot c_t \quad\text{(peephole only)} \\
        h_t &= \sigma(o) \odot \tanh(c_t), \qquad y_t = h_t

    Args:
      hidden_size: hidden units ``h``.
      forget_bias: initial value of the forget-gate bias (Keras' ``unit_forget_bias``
        is 1.0, the default; torch and Flax start at 0.0). Only ``init`` uses it.
      peephole: add diagonal peephole weights ``p: [3, h]`` (Gers & Schmidhuber).

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = LSTMCell(128)
        >>> params = cell.init(jax.random.key(0), 64)
        >>> sum(p.size for p in jax.tree_util.tree_leaves(params))  # = Keras LSTM(128)
        98816

    References:
      Hochreiter & Schmidhuber, "Long short-term memory", Neural Computation 1997;
      Gers & Schmidhuber, "Recurrent nets that time and count", IJCNN 2000.
    """

    hidden_size: int
    _: dataclasses.KW_ONLY
    forget_bias: float = 1.0
    peephole: bool = False

    params_type: ClassVar[type] = LSTMParams
    num_gates: ClassVar[int] = 4
    supports_noise: ClassVar[bool] = True

    def _carry_sizes(self) -> LSTMCarry:
        return LSTMCarry(self.hidden_size, self.hidden_size)

    def _carry_dtypes(self, dtype) -> LSTMCarry:
        return LSTMCarry(jnp.dtype(dtype), accumulation_dtype(dtype))  # a 16-bit cell state drifts

    def init(self, key: PRNGKey, input_size: int) -> LSTMParams:
        """Params: ``w_i [f, 4h]``, ``w_h [h, 4h]``, ``b [4h]`` (forget block = ``forget_bias``).

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> params = LSTMCell(8).init(jax.random.key(0), 4)
            >>> params.w_i.shape, params.b[8:16].tolist() == [1.0] * 8
            ((4, 32), True)
        """
        w_i, w_h = self._weights(key, input_size)
        h = self.hidden_size
        b = jnp.zeros((4 * h,), self.param_dtype).at[h : 2 * h].set(self.forget_bias)
        peephole = jnp.zeros((3, h), self.param_dtype) if self.peephole else None
        return LSTMParams(w_i, w_h, b, peephole, self._init_carry0())

    @params_checked
    def recur(
        self, params: LSTMParams, carry: LSTMCarry, u: Array, noise: StepNoise | None = None
    ) -> tuple[LSTMCarry, Array]:
        """One step from the projected input ``u: [..., 4h]``; ``noise`` in training (recurrent dropout on
        ``h_{t-1}`` in the recurrent matmul; zoneout of ``h`` and ``c``).

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> cell = LSTMCell(8, peephole=True)
            >>> params = cell.init(jax.random.key(0), 4)
            >>> u = cell.project(params, jnp.ones(4))
            >>> carry, y = cell.recur(params, cell.initial_carry(params), u)
            >>> carry.c.shape, y.shape
            ((8,), (8,))
        """
        dtype, acc = u.dtype, accumulation_dtype(u.dtype)
        c = carry.c.astype(acc)
        h_in = carry.h if noise is None or noise.recurrent is None else carry.h * noise.recurrent
        z = u.astype(acc) + numerics.matmul(h_in, params.w_h, dtype, self.precision)
        i, f, g, o = jnp.split(z, 4, axis=-1)
        if params.peephole is not None:
            p = params.peephole.astype(acc)
            i, f = i + p[0] * c, f + p[1] * c
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        if params.peephole is not None:
            o = o + p[2] * c
        h = (jax.nn.sigmoid(o) * jnp.tanh(c)).astype(dtype)
        carry = self._zone_out(carry, LSTMCarry(h, c), noise)
        return carry, carry.h
