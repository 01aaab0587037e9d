r"""Layer-normalized LSTM and GRU cells (Ba, Kiros & Hinton 2016): each projection normalised on its own.

Layer normalisation over the last axis of ``z``, with a gain ``gamma`` and a bias ``beta`` of its size:

.. math::
    \mathrm{LN}(z; \gamma, \beta) = \gamma \odot \frac{z - \mu(z)}{\sqrt{\sigma^2(z) + \epsilon}} + \beta

``mu`` and ``sigma^2`` are the mean and the (biased) variance of ``z`` over all the columns it is
given (a projection's gate blocks together), for each example and each step on its own: no
statistics across the batch or across time, so the cell computes the same in training and at
inference. The input side, ``LN(x W_i)``, depends on the input only, so it is part of ``project``
and is hoisted out of the time loop with the input matmul; the recurrent side and the LSTM's cell
state are in ``recur``.
"""

import dataclasses
import math
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._src import checks, numerics
from rnnjax.cells.base import BaseCell, HiddenCarry, StepNoise, accumulation_dtype, params_checked
from rnnjax.cells.lstm import LSTMCarry
from rnnjax.typing import Array, Params, PRNGKey


class LayerNormParams(NamedTuple):
    """The gain and bias of one layer normalisation ``LN(z; gain, bias)``."""

    gain: Array  # [g]  init 1
    bias: Array  # [g]  init 0


def _normalized(z: Array, epsilon: float) -> Array:
    """``(z - mean) / sqrt(var + epsilon)`` over the last axis: ``LN(z)`` before its gain and bias."""
    mean = jnp.mean(z, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(z - mean), axis=-1, keepdims=True)
    return (z - mean) * jax.lax.rsqrt(var + epsilon)


def _layer_norm(z: Array, ln: LayerNormParams, epsilon: float) -> Array:
    """``LN(z; ln.gain, ln.bias)`` over the last axis, in the dtype of ``z``."""
    return ln.gain.astype(z.dtype) * _normalized(z, epsilon) + ln.bias.astype(z.dtype)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _LayerNormCell(BaseCell):
    """What the two cells share: ``epsilon``, the LN params' init, and the normalised input projection."""

    epsilon: float = 1e-5

    supports_noise: ClassVar[bool] = True  # dropout, recurrent_dropout and zoneout as the plain cells'

    def __post_init__(self):
        super().__post_init__()
        eps = self.epsilon
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"epsilon: expected a positive finite float, got {eps!r}")
        object.__setattr__(self, "epsilon", float(eps))  # one canonical form: equal cells hash equal

    def _layer_norm_params(self, size: int) -> LayerNormParams:
        return LayerNormParams(jnp.ones((size,), self.param_dtype), jnp.zeros((size,), self.param_dtype))

    @params_checked
    def project(self, params: Params, xs: Array) -> Array:
        """The time-parallel part ``us = LN(xs W_i; ln_i) + b``, normalised per row (per step).

        Args:
          params: this cell's params.
          xs: inputs ``[..., f]``, any leading shape (e.g. ``[t, f]``).

        Returns:
          ``us: [..., g]`` (``g`` = gates x ``h``) in the computation dtype, ready for :meth:`recur`;
          the statistics are computed in float32 for 16-bit computation.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> cell = rj.LayerNormLSTMCell(8)
            >>> params = cell.init(jax.random.key(0), 4)
            >>> us = cell.project(params, jax.random.normal(jax.random.key(1), (10, 4)))
            >>> us.shape  # LN(x W_i) + b, normalised row by row
            (10, 32)
        """
        xs = checks.floating(xs, "xs")
        checks.features(xs, self.input_size(params), "xs")
        dtype = self._compute_dtype(params, xs.dtype)
        z = numerics.matmul(xs, params.w_i, dtype, self.precision)  # accumulated in float32 for 16-bit dtypes
        return (_layer_norm(z, params.ln_i, self.epsilon) + params.b.astype(z.dtype)).astype(dtype)


class LayerNormLSTMParams(NamedTuple):
    w_i: Array  # [f, 4h]  gate blocks i, f, g, o
    w_h: Array  # [h, 4h]
    b: Array  # [4h]      forget block = forget_bias
    ln_i: LayerNormParams  # [4h] gain and bias of LN(x W_i)
    ln_h: LayerNormParams  # [4h] gain and bias of LN(h W_h)
    ln_c: LayerNormParams  # [h]  gain and bias of LN(c_t)
    carry0: LSTMCarry | None = None

    # last axis gates x hidden (rnnjax.typing.GatedParams); ln_c's [h] is no gate column
    gate_fields = ("w_i", "w_h", "b", "ln_i", "ln_h")


@dataclasses.dataclass(frozen=True)
class LayerNormLSTMCell(_LayerNormCell):
    r"""Layer-normalized LSTM (Ba, Kiros & Hinton 2016), gate order i, f, g, o.

    The input and the recurrent projections are normalised separately, each with its own gain
    and bias, and so is the cell state on its way to the output:

    .. math::
        [i, f, g, o] &= \mathrm{LN}(x_t W_i; \gamma_i, \beta_i) + \mathrm{LN}(h_{t-1} W_h; \gamma_h, \beta_h) + b \\
        c_t &= \sigma(f) \odot c_{t-1} + \sigma(i) \odot \tanh(g) \\
        h_t &= \sigma(o) \odot \tanh(\mathrm{LN}(c_t; \gamma_c, \beta_c)), \qquad y_t = h_t

    Each ``LN`` normalises over all the columns it is given (the 4h gate columns together, the h
    units of ``c_t``), per example and per step; the carry keeps ``c_t`` itself, not normalised.
    ``project`` computes ``LN(x_t W_i; ln_i) + b`` and ``recur`` the rest. Gains start at 1 and
    the LN biases at 0; even so the cell is not an ``LSTMCell``: the normalisation changes the
    function.

    Args:
      hidden_size: hidden units ``h``.
      forget_bias: initial value of the forget block of ``b`` (as :class:`LSTMCell`).
      epsilon: ``epsilon`` added to the variance in every ``LN`` (positive; torch's ``LayerNorm`` default).

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.LayerNormLSTMCell(128)
        >>> params = cell.init(jax.random.key(0), 64)
        >>> sum(p.size for p in jax.tree_util.tree_leaves(params))  # LSTMCell's 98,816 + 2 * (4h + 4h + h)
        101120
        >>> carry, ys = rj.unroll(cell, params, jnp.ones((5, 64)))
        >>> ys.shape
        (5, 128)

    References:
      Ba, Kiros & Hinton, "Layer normalization", arXiv:1607.06450, 2016 (section 3.1 and the
      supplementary material's LSTM equations).
    """

    hidden_size: int
    _: dataclasses.KW_ONLY
    forget_bias: float = 1.0

    params_type: ClassVar[type] = LayerNormLSTMParams
    num_gates: ClassVar[int] = 4

    def _carry_sizes(self) -> LSTMCarry:
        return LSTMCarry(self.hidden_size, self.hidden_size)

    def _carry_dtypes(self, dtype) -> LSTMCarry:
        return LSTMCarry(jnp.dtype(dtype), accumulation_dtype(dtype))  # a 16-bit cell state drifts

    def init(self, key: PRNGKey, input_size: int) -> LayerNormLSTMParams:
        """Params: ``w_i [f, 4h]``, ``w_h [h, 4h]``, ``b [4h]`` (forget block = ``forget_bias``), the LN
        gains (ones) and biases (zeros) ``ln_i [4h]``, ``ln_h [4h]``, ``ln_c [h]``.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> params = rj.LayerNormLSTMCell(8).init(jax.random.key(0), 4)
            >>> params.w_i.shape, params.ln_h.gain.shape, params.ln_c.bias.shape
            ((4, 32), (32,), (8,))
        """
        w_i, w_h = self._weights(key, input_size)
        h = self.hidden_size
        b = jnp.zeros((4 * h,), self.param_dtype).at[h : 2 * h].set(self.forget_bias)
        ln_i, ln_h, ln_c = self._layer_norm_params(4 * h), self._layer_norm_params(4 * h), self._layer_norm_params(h)
        return LayerNormLSTMParams(w_i, w_h, b, ln_i, ln_h, ln_c, self._init_carry0())

    @params_checked
    def recur(
        self, params: LayerNormLSTMParams, carry: LSTMCarry, u: Array, noise: StepNoise | None = None
    ) -> tuple[LSTMCarry, Array]:
        """One step from the projected input ``u = LN(x W_i; ln_i) + b: [..., 4h]``; ``noise`` in training
        (recurrent dropout on ``h_{t-1}`` in the recurrent matmul; zoneout of ``h`` and ``c``).

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> cell = rj.LayerNormLSTMCell(8)
            >>> params = cell.init(jax.random.key(0), 4)
            >>> carry, y = cell.recur(params, cell.initial_carry(params), cell.project(params, jnp.ones(4)))
            >>> carry.c.shape, y.shape
            ((8,), (8,))
        """
        dtype, acc = u.dtype, accumulation_dtype(u.dtype)
        c = carry.c.astype(acc)
        h_in = carry.h if noise is None or noise.recurrent is None else carry.h * noise.recurrent
        hw = numerics.matmul(h_in, params.w_h, dtype, self.precision)
        z = u.astype(acc) + _layer_norm(hw, params.ln_h, self.epsilon)
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = (jax.nn.sigmoid(o) * jnp.tanh(_layer_norm(c, params.ln_c, self.epsilon))).astype(dtype)
        carry = self._zone_out(carry, LSTMCarry(h, c), noise)
        return carry, carry.h


class LayerNormGRUParams(NamedTuple):
    w_i: Array  # [f, 3h]  gate blocks r, z, n
    w_h: Array  # [h, 3h]
    b: Array  # [3h]      input bias
    ln_i: LayerNormParams  # [3h] gain and bias of LN(x W_i)
    ln_h: LayerNormParams  # [3h] of LN(h W_h); reset-before: [:2h] of LN(h W_hrz), [2h:] of LN((r h) W_hn)
    b_h: Array | None = None  # [3h]  recurrent bias (reset_after=True only)
    carry0: HiddenCarry | None = None

    gate_fields = ("w_i", "w_h", "b", "ln_i", "ln_h", "b_h")  # last axis gates x hidden (rnnjax.typing.GatedParams)


@dataclasses.dataclass(frozen=True)
class LayerNormGRUCell(_LayerNormCell):
    r"""Layer-normalized GRU, gate order r, z, n: :class:`GRUCell` with every matmul normalised.

    Each matmul's output is normalised on its own, with its own gain and bias, before the bias of
    :class:`GRUCell` is added. The input side is the same for both variants (``project``):

    .. math::
        [u_r, u_z, u_n] = \mathrm{LN}(x W_i; \gamma_i, \beta_i) + b

    ``reset_after=True`` (the default, as :class:`GRUCell`): one recurrent matmul, normalised over
    its 3h columns, then the recurrent bias; the reset gate multiplies the normalised candidate
    term:

    .. math::
        [v_r, v_z, v_n] &= \mathrm{LN}(h W_h; \gamma_h, \beta_h) + b_h \\
        r &= \sigma(u_r + v_r), \quad z = \sigma(u_z + v_z) \\
        n &= \tanh(u_n + r \odot v_n) \\
        h' &= (1 - z) \odot n + z \odot h

    ``reset_after=False`` (Cho et al. 2014): the reset gate scales ``h`` before the candidate's
    matmul, so there are two recurrent matmuls, each normalised over its own columns: the gate
    columns (2h) with ``ln_h.gain[:2h], ln_h.bias[:2h]``, the candidate's (h) with
    ``ln_h.gain[2h:], ln_h.bias[2h:]``; no ``b_h``:

    .. math::
        [v_r, v_z] &= \mathrm{LN}(h W_{h,rz}; \gamma_{h,rz}, \beta_{h,rz}), \quad
        r = \sigma(u_r + v_r), \quad z = \sigma(u_z + v_z) \\
        n &= \tanh(u_n + \mathrm{LN}((r \odot h) W_{hn}; \gamma_{hn}, \beta_{hn})) \\
        h' &= (1 - z) \odot n + z \odot h

    Args:
      hidden_size: hidden units ``h``.
      reset_after: where the reset gate is applied (see above).
      epsilon: ``epsilon`` added to the variance in every ``LN`` (positive).

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.LayerNormGRUCell(128)
        >>> params = cell.init(jax.random.key(0), 64)
        >>> sum(p.size for p in jax.tree_util.tree_leaves(params))  # GRUCell's 74,496 + 2 * (3h + 3h)
        76032

    References:
      Ba, Kiros & Hinton, "Layer normalization", arXiv:1607.06450, 2016; Cho et al., "Learning
      phrase representations using RNN encoder-decoder for statistical machine translation",
      EMNLP 2014.
    """

    hidden_size: int
    _: dataclasses.KW_ONLY
    reset_after: bool = True

    params_type: ClassVar[type] = LayerNormGRUParams
    num_gates: ClassVar[int] = 3

    def init(self, key: PRNGKey, input_size: int) -> LayerNormGRUParams:
        """Params: ``w_i [f, 3h]``, ``w_h [h, 3h]``, ``b [3h]``, the LN gains (ones) and biases (zeros)
        ``ln_i [3h]``, ``ln_h [3h]``, and ``b_h [3h]`` if reset-after.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> params = rj.LayerNormGRUCell(8, reset_after=False).init(jax.random.key(0), 4)
            >>> params.ln_i.gain.shape, params.b_h is None
            ((24,), True)
        """
        w_i, w_h = self._weights(key, input_size)
        b = jnp.zeros((3 * self.hidden_size,), self.param_dtype)
        ln_i, ln_h = self._layer_norm_params(3 * self.hidden_size), self._layer_norm_params(3 * self.hidden_size)
        b_h = jnp.zeros_like(b) if self.reset_after else None
        return LayerNormGRUParams(w_i, w_h, b, ln_i, ln_h, b_h, self._init_carry0())

    @params_checked
    def recur(
        self, params: LayerNormGRUParams, carry: HiddenCarry, u: Array, noise: StepNoise | None = None
    ) -> tuple[HiddenCarry, Array]:
        """One step from the projected input ``u = LN(x W_i; ln_i) + b: [..., 3h]``; ``noise`` in training
        (recurrent dropout on ``h_{t-1}`` in the recurrent matmuls, not the interpolation; zoneout of ``h``).

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> cell = rj.LayerNormGRUCell(8)
            >>> params = cell.init(jax.random.key(0), 4)
            >>> cell.recur(params, cell.initial_carry(params), cell.project(params, jnp.ones(4)))[1].shape
            (8,)
        """
        dtype, acc = u.dtype, accumulation_dtype(u.dtype)
        h = carry.h.astype(acc)
        h_in = carry.h if noise is None or noise.recurrent is None else carry.h * noise.recurrent
        u_r, u_z, u_n = jnp.split(u.astype(acc), 3, axis=-1)
        if self.reset_after:
            hw = numerics.matmul(h_in, params.w_h, dtype, self.precision)
            v_r, v_z, v_n = jnp.split(_layer_norm(hw, params.ln_h, self.epsilon) + params.b_h.astype(acc), 3, axis=-1)
            r, z = jax.nn.sigmoid(u_r + v_r), jax.nn.sigmoid(u_z + v_z)
            n = jnp.tanh(u_n + r * v_n)
        else:
            two = 2 * self.hidden_size
            ln_rz = LayerNormParams(params.ln_h.gain[:two], params.ln_h.bias[:two])
            ln_n = LayerNormParams(params.ln_h.gain[two:], params.ln_h.bias[two:])
            hw_rz = numerics.matmul(h_in, params.w_h[:, :two], dtype, self.precision)
            v_r, v_z = jnp.split(_layer_norm(hw_rz, ln_rz, self.epsilon), 2, axis=-1)
            r, z = jax.nn.sigmoid(u_r + v_r), jax.nn.sigmoid(u_z + v_z)
            hw_n = numerics.matmul(r * h_in.astype(acc), params.w_h[:, two:], dtype, self.precision)
            n = jnp.tanh(u_n + _layer_norm(hw_n, ln_n, self.epsilon))
        h = ((1 - z) * n + z * h).astype(dtype)
        carry = self._zone_out(carry, HiddenCarry(h), noise)
        return carry, carry.h
