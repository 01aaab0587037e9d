"""The LSTM cell (gates i, f, g, o; one bias; optional peepholes and output projection)."""

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._src import checks, numerics
from rnnjax.cells.base import (
    AdditiveRecurrentWeight,
    BaseCell,
    StepNoise,
    accumulation_dtype,
    params_checked,
    short_repr,
)
from rnnjax.typing import Array, PRNGKey


class LSTMCarry(NamedTuple):
    """LSTM carry, in torch/Keras order: hidden output first, then the cell state."""

    h: Array  # [..., h] ([..., p] with a projection)
    c: Array  # [..., h]


class LSTMParams(NamedTuple):
    w_i: Array  # [f, 4h]  gate blocks i, f, g, o
    w_h: Array  # [h, 4h]  ([p, 4h] with a projection)
    b: Array  # [4h]      one bias (torch's b_ih + b_hh)
    peephole: Array | None = None  # [3, h]  rows: input, forget, output gate
    carry0: LSTMCarry | None = None

    gate_fields = ("w_i", "w_h", "b")


class ProjectedLSTMParams(NamedTuple):
    """``LSTMCell(proj_size=p)``'s params: an LSTM's, with ``w_h [p, 4h]``, and the projection ``w_proj``.

    A type of its own, so that the params of an LSTM without projection keep their structure
    (and the checkpoints saved with it restore).
    """

    w_i: Array  # [f, 4h]  gate blocks i, f, g, o
    w_h: Array  # [p, 4h]
    b: Array  # [4h]
    w_proj: Array  # [h, p]  output projection (torch's weight_hr transposed)
    peephole: Array | None = None  # [3, h]
    carry0: LSTMCarry | None = None

    gate_fields = ("w_i", "w_h", "b")  # w_proj [h, p] has no gate columns


@dataclasses.dataclass(frozen=True)
class LSTMCell(AdditiveRecurrentWeight, BaseCell):
    r"""Long short-term memory, gate order i, f, g, o, one bias (as Keras; torch's two summed).

    .. math::
        [i, f, g, o] &= x_t W_i + h_{t-1} W_h + b \\
        i &\mathrel{+}= p_i \odot c_{t-1}, \quad f \mathrel{+}= p_f \odot c_{t-1}
            \quad\text{(peephole only)} \\
        c_t &= \sigma(f) \odot c_{t-1} + \sigma(i) \odot \tanh(g) \\
        o &\mathrel{+}= p_o \odot c_t \quad\text{(peephole only)} \\
        h_t &= \sigma(o) \odot \tanh(c_t) \quad
            \big(h_t = (\sigma(o) \odot \tanh(c_t))\, W_{hr} \text{ with a projection}\big),
            \qquad y_t = h_t

    With ``proj_size=p`` (LSTMP, Sak et al. 2014; torch's ``nn.LSTM(proj_size=p)``) the hidden
    output is projected to ``p`` units by ``W_hr = w_proj: [h, p]``: the carry's ``h`` and the
    output are ``[p]``, the cell state ``c`` stays ``[h]``, and ``w_h`` is ``[p, 4h]``.

    Args:
      hidden_size: hidden units ``h`` (the size of the cell state and of each gate).
      forget_bias: initial value of the forget-gate bias (Keras' ``unit_forget_bias``
        is 1.0, the default; torch and Flax start at 0.0). Only ``init`` uses it.
      peephole: add diagonal peephole weights ``p: [3, h]`` (Gers & Schmidhuber); they act
        on the cell state, so they combine with a projection.
      proj_size: project the output to ``p`` units (a positive integer); None or 0: no
        projection (``w_proj`` is None).

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = LSTMCell(128)
        >>> params = cell.init(jax.random.key(0), 64)
        >>> sum(p.size for p in jax.tree_util.tree_leaves(params))  # = Keras LSTM(128)
        98816
        >>> cell = LSTMCell(128, proj_size=32)  # = torch.nn.LSTM(64, 128, proj_size=32), biases summed
        >>> carry, ys = rj.unroll(cell, cell.init(jax.random.key(0), 64), jnp.ones((5, 64)))
        >>> carry.h.shape, carry.c.shape, ys.shape
        ((32,), (128,), (5, 32))

    References:
      Hochreiter & Schmidhuber, "Long short-term memory", Neural Computation 1997;
      Gers & Schmidhuber, "Recurrent nets that time and count", IJCNN 2000;
      Sak, Senior & Beaufays, "Long short-term memory recurrent neural network architectures
      for large scale acoustic modeling", Interspeech 2014.
    """

    hidden_size: int
    _: dataclasses.KW_ONLY
    forget_bias: float = 1.0
    peephole: bool = False
    proj_size: int | None = None

    num_gates: ClassVar[int] = 4
    supports_noise: ClassVar[bool] = True

    def __post_init__(self):
        super().__post_init__()
        proj = self.proj_size
        if proj is not None and (isinstance(proj, bool) or not isinstance(proj, int | np.integer) or proj < 0):
            raise ValueError(f"proj_size: expected a positive integer, or 0 or None for no projection, got {proj!r}")
        # one canonical form, so that proj_size=0 and None (no projection) compare and hash equal
        object.__setattr__(self, "proj_size", int(self.proj_size) if self.proj_size else None)

    @property
    def params_type(self) -> type:
        """:class:`LSTMParams`, or :class:`ProjectedLSTMParams` with a projection."""
        return ProjectedLSTMParams if self.proj_size else LSTMParams

    @property
    def output_size(self) -> int:
        """Size of the output ``y`` and of the carry's ``h``: ``proj_size``, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    def _carry_sizes(self) -> LSTMCarry:
        return LSTMCarry(self.output_size, self.hidden_size)

    def _carry_dtypes(self, dtype) -> LSTMCarry:
        return LSTMCarry(jnp.dtype(dtype), accumulation_dtype(dtype))  # a 16-bit cell state drifts

    def init(self, key: PRNGKey, input_size: int) -> LSTMParams | ProjectedLSTMParams:
        """Params: ``w_i [f, 4h]``, ``w_h [h, 4h]``, ``b [4h]`` (forget block = ``forget_bias``); with a
        projection ``w_h [p, 4h]`` and ``w_proj [h, p]`` (``recurrent_init``: it is on the recurrent path).

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> params = LSTMCell(8).init(jax.random.key(0), 4)
            >>> params.w_i.shape, params.b[8:16].tolist() == [1.0] * 8
            ((4, 32), True)
            >>> params = LSTMCell(8, proj_size=3).init(jax.random.key(0), 4)
            >>> params.w_h.shape, params.w_proj.shape
            ((3, 32), (8, 3))
        """
        h = self.hidden_size
        if self.proj_size is None:
            w_i, w_h = self._weights(key, input_size)
            w_proj = None
        else:
            checks.positive_int(input_size, "input_size")
            k_i, k_h, k_proj = jax.random.split(key, 3)
            w_i = self._initialize(self.kernel_init, k_i, (input_size, 4 * h))
            w_h = self._initialize(self.recurrent_init, k_h, (self.proj_size, 4 * h))
            w_proj = self._initialize(self.recurrent_init, k_proj, (h, self.proj_size))
        b = jnp.zeros((4 * h,), self.param_dtype).at[h : 2 * h].set(self.forget_bias)
        peephole = jnp.zeros((3, h), self.param_dtype) if self.peephole else None
        if w_proj is None:
            return LSTMParams(w_i, w_h, b, peephole, self._init_carry0())
        return ProjectedLSTMParams(w_i, w_h, b, w_proj, peephole, self._init_carry0())

    def check_params(self, params: LSTMParams | ProjectedLSTMParams) -> None:
        """As every cell's (see :meth:`BaseCell.check_params`); params with a projection where the cell
        has none, or the reverse, name ``params.w_proj`` and the ``proj_size`` that would fit them."""
        checks.params_type(params, LSTMParams | ProjectedLSTMParams, self)
        w_proj = params.w_proj if isinstance(params, ProjectedLSTMParams) else None
        if (w_proj is None) != (self.proj_size is None):  # before w_h, whose shape differs too
            if self.proj_size is None:
                needs, shape = "None", np.shape(w_proj)
                hint = f" (made by {short_repr(dataclasses.replace(self, proj_size=shape[-1]))}?)" if shape else ""
            else:
                needs = f"an array of shape ({self.hidden_size}, {self.proj_size})"
                hint = f" (made by {short_repr(dataclasses.replace(self, proj_size=None))}?)"
            raise ValueError(
                f"params.w_proj: {short_repr(self)} expects {needs} here; these params have "
                f"{'None' if w_proj is None else f'an array of shape {np.shape(w_proj)}'}{hint}"
            )
        super().check_params(params)

    def recur(
        self, params: LSTMParams, carry: LSTMCarry, u: Array, noise: StepNoise | None = None
    ) -> tuple[LSTMCarry, Array]:
        """One step from the projected input ``u: [..., 4h]``; ``noise`` in training (recurrent dropout on
        ``h_{t-1}`` in the recurrent matmul; zoneout of ``h`` and ``c``).

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> cell = LSTMCell(8, peephole=True, proj_size=3)
            >>> params = cell.init(jax.random.key(0), 4)
            >>> u = cell.project(params, jnp.ones(4))
            >>> carry, y = cell.recur(params, cell.initial_carry(params), u)
            >>> carry.c.shape, y.shape
            ((8,), (3,))
        """
        return self.recur_with_factors(params, carry, u, noise)[:2]

    @params_checked
    def recur_with_factors(
        self, params: LSTMParams, carry: LSTMCarry, u: Array, noise: StepNoise | None = None
    ) -> tuple[LSTMCarry, Array, Array]:
        """:meth:`recur`, and the ``h_{t-1}`` that meets ``w_h`` (``z = u + h_{t-1} W_h``), for
        :class:`~rnnjax.typing.RecurrentWeightCell`."""
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
        if self.proj_size:
            h = numerics.matmul(h, params.w_proj, dtype, self.precision).astype(dtype)
        carry = self._zone_out(carry, LSTMCarry(h, c), noise)
        return carry, carry.h, h_in
