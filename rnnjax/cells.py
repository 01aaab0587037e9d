"""Recurrent cells: frozen dataclasses of hyper-parameters with pure methods.

Every cell splits one time step into a time-parallel part and a sequential part::

    us = cell.project(params, xs)            # [..., f] -> [..., g]: input projection
    carry, y = cell.recur(params, carry, u)  # one step of the recurrence
    carry, y = cell.step(params, carry, x)   # = recur(params, carry, project(params, x))

Weights are stored features-last (``w_i: [f, g]``, ``w_h: [h, g]``) with the gate
blocks concatenated along the last axis in a fixed, documented order, so weight
conversion from torch, Keras and Flax is exact. Params and carries are NamedTuples.

Dtypes: params are created in ``param_dtype`` (float32 by default; bfloat16 and float16
too: initialised in float32, then cast). Computation runs in ``dtype`` when given, else
in the promotion of the params' and the inputs' dtypes (so bfloat16 inputs with float32
params compute in float32, and float64 inputs with float64 params, under
``jax_enable_x64``, in float64). ``recur`` computes in the dtype of ``u`` and returns a
carry of that dtype, with one exception for 16-bit computation: every matmul then
accumulates in float32, the gate arithmetic runs in float32, and the LSTM's cell state
``c`` stays float32 (over thousands of steps a bfloat16 cell state drifts; see the
precision section of the unroll guide for the measurements).

Precision: every matmul takes the cell's ``precision`` (None: the backend's default,
which is full float32 on CPU, TF32 on recent NVIDIA GPUs and one bfloat16 pass on TPU;
``"highest"`` asks for full float32 everywhere).

A cell whose params have ``carry0`` set (``learn_initial_carry=True``) starts from a
learned initial carry instead of zeros.

Checks: every method that takes params first checks their structure, exact shapes and
floating dtypes against ``jax.eval_shape(cell.init)`` for the params' input size (cached,
shapes only, so at trace time under ``jit``); errors name the field, e.g.
``params.b: expected shape (32,) for LSTMCell(hidden_size=8), got (1,)``.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._src import checks, numerics
from rnnjax.typing import Array, Carry, Params, PRNGKey, Shape

# Keras' defaults: Glorot-uniform input kernels, orthogonal recurrent kernels.
# Module-level objects, so two cells built with the defaults compare (and hash) equal.
GLOROT_UNIFORM = numerics.GLOROT_UNIFORM
ORTHOGONAL = numerics.ORTHOGONAL
accumulation_dtype = numerics.accumulation_dtype


def _short_repr(cell) -> str:
    """``Cell(hidden_size=8, peephole=True)``: the hyper-parameters that differ from their defaults.

    Example:
        >>> _short_repr(LSTMCell(8, peephole=True))
        'LSTMCell(hidden_size=8, peephole=True)'
    """
    fields = [f for f in dataclasses.fields(cell) if f.repr]
    required = [f for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    shown = required + [f for f in fields if f not in required and getattr(cell, f.name) != f.default]
    values = {f.name: getattr(cell, f.name) for f in shown}
    return f"{type(cell).__name__}({', '.join(f'{k}={_short_value(v)}' for k, v in values.items())})"


def _short_value(value) -> str:
    return repr(value.name) if isinstance(value, jnp.dtype) else repr(value)


def _param_shapes(cell, input_size: int):
    """The params ``cell.init`` makes for ``input_size``, as ``jax.ShapeDtypeStruct`` leaves (traced, never run)."""
    try:
        hash(cell)
    except TypeError:  # an unhashable hyper-parameter (e.g. a callable object): no cache
        return _traced_init(cell, input_size)
    return _cached_init(cell, input_size)


def _traced_init(cell, input_size: int):
    return jax.eval_shape(lambda: cell.init(jax.random.key(0), input_size))


_cached_init = functools.lru_cache(maxsize=256)(_traced_init)


def _checked(method: Callable) -> Callable:
    """Check ``params`` (the first argument after ``self``) against the cell before running ``method``."""

    @functools.wraps(method)
    def checked(self, params, *args, **kwargs):
        self.check_params(params)
        return method(self, params, *args, **kwargs)

    return checked


class DenseParams(NamedTuple):
    """An affine map ``x @ w + b``."""

    w: Array  # [f, o]
    b: Array  # [o]


class HiddenCarry(NamedTuple):
    """The carry of cells whose state is one vector."""

    h: Array  # [..., h]


class LSTMCarry(NamedTuple):
    """LSTM carry, in torch/Keras order: hidden output first, then the cell state."""

    h: Array  # [..., h]
    c: Array  # [..., h]


class JordanCarry(NamedTuple):
    """Jordan carry: the context units, fed from the previous output."""

    context: Array  # [..., o]


class ElmanParams(NamedTuple):
    w_i: Array  # [f, h]
    w_h: Array  # [h, h]
    b: Array  # [h]
    carry0: HiddenCarry | None = None

    gate_fields = ("w_i", "w_h", "b")  # last axis: gates x hidden (rnnjax.typing.GatedParams)


class JordanParams(NamedTuple):
    w_i: Array  # [f, h]    input -> hidden
    w_h: Array  # [o, h]    context -> hidden
    b: Array  # [h]
    w_o: Array  # [h, o]    hidden -> output
    b_o: Array  # [o]
    carry0: JordanCarry | None = None


class RMLPParams(NamedTuple):
    layers: tuple[DenseParams, ...]  # the feed-forward layers, input first
    recurrent: ElmanParams  # the recurrent last layer


class LSTMParams(NamedTuple):
    w_i: Array  # [f, 4h]  gate blocks i, f, g, o
    w_h: Array  # [h, 4h]
    b: Array  # [4h]      one bias (torch's b_ih + b_hh)
    peephole: Array | None = None  # [3, h]  rows: input, forget, output gate
    carry0: LSTMCarry | None = None

    gate_fields = ("w_i", "w_h", "b")


class GRUParams(NamedTuple):
    w_i: Array  # [f, 3h]  gate blocks r, z, n
    w_h: Array  # [h, 3h]
    b: Array  # [3h]      input bias
    b_h: Array | None = None  # [3h]  recurrent bias (reset_after=True only)
    carry0: HiddenCarry | None = None

    gate_fields = ("w_i", "w_h", "b", "b_h")


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
class _Cell:
    """Shared machinery; every field is a static hyper-parameter.

    Attributes:
      dtype: computation dtype, or None to promote the params' and inputs' dtypes.
      param_dtype: dtype of the params made by ``init`` (any float dtype; bfloat16 and
        float16 params are initialised in float32, then cast).
      precision: matmul precision: None (the backend's default), a
        :class:`jax.lax.Precision`, one of ``"default"``, ``"high"``, ``"highest"``, or a
        :class:`jax.lax.DotAlgorithmPreset`.
      learn_initial_carry: add a trainable initial carry ``carry0`` to the params.
      kernel_init: initializer of the input kernel ``w_i``.
      recurrent_init: initializer of the recurrent kernel ``w_h``.
    """

    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    learn_initial_carry: bool = False
    kernel_init: Callable = dataclasses.field(default=GLOROT_UNIFORM, repr=False)
    recurrent_init: Callable = dataclasses.field(default=ORTHOGONAL, repr=False)

    params_type: ClassVar[type]
    num_gates: ClassVar[int] = 1

    def __post_init__(self):
        checks.positive_int(self.hidden_size, "hidden_size")
        # one canonical form, so that equal cells hash equal (np.dtype vs jnp.float32 do not)
        object.__setattr__(self, "param_dtype", jnp.dtype(self.param_dtype))
        if self.dtype is not None:
            object.__setattr__(self, "dtype", jnp.dtype(self.dtype))
        object.__setattr__(self, "precision", numerics.precision(self.precision))
        for name in ("dtype", "param_dtype"):
            value = getattr(self, name)
            if value is not None and not jnp.issubdtype(value, jnp.floating):
                raise TypeError(f"{name}: expected a float dtype, got {value}")

    @property
    def output_size(self) -> int:
        """Size of the output ``y`` of each step."""
        return self.hidden_size

    def _carry_sizes(self) -> Carry:
        return HiddenCarry(self.hidden_size)

    def _carry_dtypes(self, dtype) -> Carry:
        """The dtype of each carry array when the cell computes in ``dtype``."""
        return jax.tree_util.tree_map(lambda _: jnp.dtype(dtype), self._carry_sizes())

    def input_size(self, params: Params) -> int:
        """The input size ``f`` that ``params`` were initialised for."""
        return params.w_i.shape[0]

    def check_params(self, params: Params) -> None:
        """``params`` must be what ``self.init`` makes: its structure, exact shapes, floating dtypes.

        Runs on shapes only (at trace time under ``jit``; cached per cell and input size).
        Every public method that takes params calls it, and so does ``unroll``.
        """
        checks.params_type(params, self.params_type, self)
        try:
            input_size = int(self.input_size(params))
        except (AttributeError, IndexError, TypeError):
            input_size = 0
        # an unreadable input size: compare with input size 1, which names the field at fault
        expected = _param_shapes(self, max(input_size, 1))
        checks.params_like(params, expected, _short_repr(self), hint=lambda: self._made_by(params, input_size))

    def _made_by(self, params: Params, input_size: int) -> str:
        """`` (made by Cell(...)?)`` if flipping one boolean hyper-parameter fits the params' structure."""
        structure = jax.tree_util.tree_structure(params)
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool):
                other = dataclasses.replace(self, **{field.name: not value})
                if jax.tree_util.tree_structure(_param_shapes(other, max(input_size, 1))) == structure:
                    return f" (made by {_short_repr(other)}?)"
        return ""

    def _compute_dtype(self, params: Params, input_dtype=None):
        return numerics.compute_dtype(params, input_dtype, self.dtype)

    def _init_carry0(self) -> Carry | None:
        if not self.learn_initial_carry:
            return None
        return jax.tree_util.tree_map(lambda n: jnp.zeros((n,), self.param_dtype), self._carry_sizes())

    def _initialize(self, initializer: Callable, key: PRNGKey, shape: Shape) -> Array:
        """``initializer`` for a param of ``shape`` in ``param_dtype`` (see :func:`_initialized`)."""
        return numerics.initialized(initializer, key, shape, self.param_dtype)

    def _weights(self, key: PRNGKey, input_size: int, num_gates: int | None = None) -> tuple[Array, Array]:
        checks.positive_int(input_size, "input_size")
        width = (num_gates or self.num_gates) * self.hidden_size
        k_i, k_h = jax.random.split(key)
        w_i = self._initialize(self.kernel_init, k_i, (input_size, width))
        w_h = self._initialize(self.recurrent_init, k_h, (self.hidden_size, width))
        return w_i, w_h

    @_checked
    def initial_carry(self, params: Params, batch_shape: Shape = ()) -> Carry:
        """The carry before the first step: zeros, or the learned ``params.carry0``.

        Args:
          params: this cell's params.
          batch_shape: leading shape for a batch of carries, e.g. ``(b,)``.

        Returns:
          A carry NamedTuple of arrays ``[*batch_shape, h]`` in the computation dtype.

        Example:
            >>> cell = LSTMCell(8)
            >>> carry = cell.initial_carry(cell.init(jax.random.key(0), 4), (2,))
            >>> carry.h.shape, carry.c.shape
            ((2, 8), (2, 8))
        """
        dtypes = self._carry_dtypes(self._compute_dtype(params))
        carry0 = getattr(params, "carry0", None)
        if carry0 is not None:
            return jax.tree_util.tree_map(
                lambda v, dt: jnp.broadcast_to(v.astype(dt), (*batch_shape, *v.shape)), carry0, dtypes
            )
        return jax.tree_util.tree_map(lambda n, dt: jnp.zeros((*batch_shape, n), dt), self._carry_sizes(), dtypes)

    @_checked
    def project(self, params: Params, xs: Array) -> Array:
        """The time-parallel input projection ``us = xs @ w_i + b``.

        Args:
          params: this cell's params.
          xs: inputs ``[..., f]``, any leading shape (e.g. ``[t, f]``).

        Returns:
          ``us: [..., g]`` in the computation dtype, ready for :meth:`recur`.

        Example:
            >>> cell = GRUCell(8)
            >>> params = cell.init(jax.random.key(0), 4)
            >>> cell.project(params, jnp.ones((10, 4))).shape
            (10, 24)
        """
        xs = checks.floating(xs, "xs")
        checks.features(xs, self.input_size(params), "xs")
        return numerics.affine(xs, params.w_i, params.b, self._compute_dtype(params, xs.dtype), self.precision)

    @_checked
    def step(self, params: Params, carry: Carry, x: Array) -> tuple[Carry, Array]:
        """One full time step: ``recur(params, carry, project(params, x))``.

        Args:
          params: this cell's params.
          carry: the carry before the step, arrays ``[..., h]``.
          x: the input ``[..., f]``.

        Returns:
          ``(carry, y)``: the new carry and the output ``y: [..., o]``.

        Example:
            >>> cell = ElmanCell(8)
            >>> params = cell.init(jax.random.key(0), 4)
            >>> carry, y = cell.step(params, cell.initial_carry(params), jnp.ones(4))
            >>> y.shape
            (8,)
        """
        return self.recur(params, carry, self.project(params, x))


@dataclasses.dataclass(frozen=True)
class ElmanCell(_Cell):
    r"""Elman's simple recurrent network (= torch ``nn.RNN``, Keras ``SimpleRNN``).

    .. math::  h_t = \phi(x_t W_i + h_{t-1} W_h + b), \qquad y_t = h_t

    Args:
      hidden_size: number of hidden units ``h``.
      activation: ``"tanh"`` (default) or ``"relu"``, or another name/callable.

    Example:
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

    def __post_init__(self):
        super().__post_init__()
        numerics.activation(self.activation)

    def init(self, key: PRNGKey, input_size: int) -> ElmanParams:
        """Params for inputs of size ``input_size``: ``w_i [f, h]``, ``w_h [h, h]``, ``b [h]``.

        Example:
            >>> ElmanCell(8).init(jax.random.key(0), 4).w_h.shape
            (8, 8)
        """
        w_i, w_h = self._weights(key, input_size)
        b = jnp.zeros((self.hidden_size,), self.param_dtype)
        return ElmanParams(w_i, w_h, b, self._init_carry0())

    @_checked
    def recur(self, params: ElmanParams, carry: HiddenCarry, u: Array) -> tuple[HiddenCarry, Array]:
        """``h = phi(u + h @ w_h)``; ``u: [..., h]`` from :meth:`project`.

        Example:
            >>> cell = ElmanCell(8)
            >>> params = cell.init(jax.random.key(0), 4)
            >>> u = cell.project(params, jnp.ones(4))
            >>> carry, y = cell.recur(params, cell.initial_carry(params), u)
            >>> y.shape
            (8,)
        """
        z = u.astype(accumulation_dtype(u.dtype)) + numerics.matmul(carry.h, params.w_h, u.dtype, self.precision)
        h = numerics.activation(self.activation)(z).astype(u.dtype)
        return HiddenCarry(h), h


@dataclasses.dataclass(frozen=True)
class JordanCell(_Cell):
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

    @_checked
    def recur(self, params: JordanParams, carry: JordanCarry, u: Array) -> tuple[JordanCarry, Array]:
        """One step from the projected input ``u: [..., h]``; returns ``y: [..., o]``.

        Example:
            >>> cell = JordanCell(8, 2)
            >>> params = cell.init(jax.random.key(0), 4)
            >>> u = cell.project(params, jnp.ones(4))
            >>> cell.recur(params, cell.initial_carry(params), u)[1].shape
            (2,)
        """
        dtype = u.dtype
        context = carry.context.astype(dtype)
        s = numerics.activation(self.activation)(
            u.astype(accumulation_dtype(dtype)) + numerics.matmul(context, params.w_h, dtype, self.precision)
        )
        y = numerics.activation(self.output_activation)(
            numerics.affine(s, params.w_o, params.b_o, dtype, self.precision)
        )
        return JordanCarry(self.context_decay * context + y), y


@dataclasses.dataclass(frozen=True)
class RMLPCell(_Cell):
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

    @_checked
    def initial_carry(self, params: RMLPParams, batch_shape: Shape = ()) -> HiddenCarry:
        """The recurrent layer's initial carry ``h: [*batch_shape, h]``.

        Example:
            >>> cell = RMLPCell(8, mlp_sizes=(16,))
            >>> cell.initial_carry(cell.init(jax.random.key(0), 4)).h.shape
            (8,)
        """
        return self._recurrent.initial_carry(params.recurrent, batch_shape)

    @_checked
    def project(self, params: RMLPParams, xs: Array) -> Array:
        """The feed-forward layers and the recurrent layer's input projection, ``[..., f] -> [..., h]``.

        Example:
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

    @_checked
    def recur(self, params: RMLPParams, carry: HiddenCarry, u: Array) -> tuple[HiddenCarry, Array]:
        """The recurrent last layer's step (see :meth:`ElmanCell.recur`).

        Example:
            >>> cell = RMLPCell(8, mlp_sizes=(16,))
            >>> params = cell.init(jax.random.key(0), 4)
            >>> cell.recur(params, cell.initial_carry(params), jnp.zeros(8))[1].shape
            (8,)
        """
        return self._recurrent.recur(params.recurrent, carry, u)


@dataclasses.dataclass(frozen=True)
class LSTMCell(_Cell):
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

    def _carry_sizes(self) -> LSTMCarry:
        return LSTMCarry(self.hidden_size, self.hidden_size)

    def _carry_dtypes(self, dtype) -> LSTMCarry:
        return LSTMCarry(jnp.dtype(dtype), accumulation_dtype(dtype))  # a 16-bit cell state drifts

    def init(self, key: PRNGKey, input_size: int) -> LSTMParams:
        """Params: ``w_i [f, 4h]``, ``w_h [h, 4h]``, ``b [4h]`` (forget block = ``forget_bias``).

        Example:
            >>> params = LSTMCell(8).init(jax.random.key(0), 4)
            >>> params.w_i.shape, params.b[8:16].tolist() == [1.0] * 8
            ((4, 32), True)
        """
        w_i, w_h = self._weights(key, input_size)
        h = self.hidden_size
        b = jnp.zeros((4 * h,), self.param_dtype).at[h : 2 * h].set(self.forget_bias)
        peephole = jnp.zeros((3, h), self.param_dtype) if self.peephole else None
        return LSTMParams(w_i, w_h, b, peephole, self._init_carry0())

    @_checked
    def recur(self, params: LSTMParams, carry: LSTMCarry, u: Array) -> tuple[LSTMCarry, Array]:
        """One step from the projected input ``u: [..., 4h]``.

        Example:
            >>> cell = LSTMCell(8, peephole=True)
            >>> params = cell.init(jax.random.key(0), 4)
            >>> u = cell.project(params, jnp.ones(4))
            >>> carry, y = cell.recur(params, cell.initial_carry(params), u)
            >>> carry.c.shape, y.shape
            ((8,), (8,))
        """
        dtype, acc = u.dtype, accumulation_dtype(u.dtype)
        c = carry.c.astype(acc)
        z = u.astype(acc) + numerics.matmul(carry.h, params.w_h, dtype, self.precision)
        i, f, g, o = jnp.split(z, 4, axis=-1)
        if params.peephole is not None:
            p = params.peephole.astype(acc)
            i, f = i + p[0] * c, f + p[1] * c
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        if params.peephole is not None:
            o = o + p[2] * c
        h = (jax.nn.sigmoid(o) * jnp.tanh(c)).astype(dtype)
        return LSTMCarry(h, c), h


@dataclasses.dataclass(frozen=True)
class GRUCell(_Cell):
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

    def init(self, key: PRNGKey, input_size: int) -> GRUParams:
        """Params: ``w_i [f, 3h]``, ``w_h [h, 3h]``, ``b [3h]``, and ``b_h [3h]`` if reset-after.

        Example:
            >>> GRUCell(8, reset_after=False).init(jax.random.key(0), 4).b_h is None
            True
        """
        w_i, w_h = self._weights(key, input_size)
        b = jnp.zeros((3 * self.hidden_size,), self.param_dtype)
        b_h = jnp.zeros_like(b) if self.reset_after else None
        return GRUParams(w_i, w_h, b, b_h, self._init_carry0())

    @_checked
    def recur(self, params: GRUParams, carry: HiddenCarry, u: Array) -> tuple[HiddenCarry, Array]:
        """One step from the projected input ``u: [..., 3h]``.

        Example:
            >>> cell = GRUCell(8)
            >>> params = cell.init(jax.random.key(0), 4)
            >>> u = cell.project(params, jnp.ones(4))
            >>> cell.recur(params, cell.initial_carry(params), u)[1].shape
            (8,)
        """
        dtype, acc = u.dtype, accumulation_dtype(u.dtype)
        h = carry.h.astype(acc)
        u_r, u_z, u_n = jnp.split(u.astype(acc), 3, axis=-1)
        if self.reset_after:
            hw = numerics.matmul(carry.h, params.w_h, dtype, self.precision) + params.b_h.astype(acc)
            hw_r, hw_z, hw_n = jnp.split(hw, 3, axis=-1)
            r, z = jax.nn.sigmoid(u_r + hw_r), jax.nn.sigmoid(u_z + hw_z)
            n = jnp.tanh(u_n + r * hw_n)
        else:
            hidden = self.hidden_size
            hw_r, hw_z = jnp.split(
                numerics.matmul(carry.h, params.w_h[:, : 2 * hidden], dtype, self.precision), 2, axis=-1
            )
            r, z = jax.nn.sigmoid(u_r + hw_r), jax.nn.sigmoid(u_z + hw_z)
            n = jnp.tanh(u_n + numerics.matmul(r * h, params.w_h[:, 2 * hidden :], dtype, self.precision))
        h = ((1 - z) * n + z * h).astype(dtype)
        return HiddenCarry(h), h


@dataclasses.dataclass(frozen=True, kw_only=True)
class _LinearRecurrenceCell(_Cell):
    """A cell whose step is ``h_t = a_t * h_{t-1} + b_t`` with ``(a_t, b_t)`` from ``x_t`` only.

    Because the recurrence is linear in the carry, ``unroll(..., parallel=True)`` can
    run it as a :func:`jax.lax.associative_scan` (``O(log t)`` depth).
    """

    def coefficients(self, params: Params, us: Array) -> tuple[Array, Array]:
        raise NotImplementedError

    @_checked
    def recur(self, params: Params, carry: HiddenCarry, u: Array) -> tuple[HiddenCarry, Array]:
        """``h = a * h + b`` with ``(a, b) = coefficients(params, u)``.

        Example:
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

    @_checked
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

    @_checked
    def coefficients(self, params: MinLSTMParams, us: Array) -> tuple[Array, Array]:
        """``(a, b) = (f', i' * h_tilde)`` from ``us: [..., 3h]``; each ``[..., h]``."""
        f_pre, i_pre, candidate = jnp.split(us, 3, axis=-1)
        f, i = jax.nn.sigmoid(f_pre), jax.nn.sigmoid(i_pre)
        total = f + i
        return f / total, i / total * candidate
