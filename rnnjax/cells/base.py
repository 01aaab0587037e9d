"""The base every cell is built on: hyper-parameter fields, ``init`` helpers, the params check,
``initial_carry``, ``project`` and ``step``; the params and carry types that several cells share."""

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


def short_repr(cell) -> str:
    """``Cell(hidden_size=8, peephole=True)``: the hyper-parameters that differ from their defaults.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> short_repr(rj.LSTMCell(8, peephole=True))
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


def _zoneout_masks(key: PRNGKey, rate: float, carry: Carry, num_steps: int) -> Carry:
    """Booleans ``[t, ...]`` for every carry leaf, True with probability ``rate`` (keep the previous value)."""
    leaves, treedef = jax.tree_util.tree_flatten(carry)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten(
        [jax.random.bernoulli(k, rate, (num_steps, *leaf.shape)) for k, leaf in zip(keys, leaves, strict=True)]
    )


def params_checked(method: Callable) -> Callable:
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


class StepNoise(NamedTuple):
    """The training noise of one step of a cell (:meth:`BaseCell.sequence_noise` draws it)."""

    recurrent: Array | None = None  # [h] recurrent dropout: h_{t-1} * mask in the recurrent matmul, every step
    zoneout: Any = None  # booleans shaped like the carry: True keeps the previous value; new at every step
    inputs: Array | None = None  # [f] input dropout (unroll applies it to xs; a StackedCell to its inner inputs)


class SequenceNoise(NamedTuple):
    """The training noise of one sequence: variational dropout masks, the same at every step (Gal &
    Ghahramani 2016), scaled by ``1 / (1 - rate)``, and zoneout's masks, one per step (Krueger et al. 2016)."""

    inputs: Array | None  # [f] input dropout: x_t * mask
    recurrent: Array | None  # [h] recurrent dropout: h_{t-1} * mask in the recurrent matmul
    zoneout: Any  # a carry of booleans [t, ...] (True: keep the previous value), or None

    def step(self, zoneout=None) -> StepNoise:
        """This sequence's noise at one step, given that step's zoneout masks."""
        return StepNoise(self.recurrent, zoneout, self.inputs)


class HiddenCarry(NamedTuple):
    """The carry of cells whose state is one vector."""

    h: Array  # [..., h]


class AdditiveRecurrentWeight:
    """For a cell whose pre-activation is ``u + factors @ w_h`` (LSTM, Elman, Jordan): the ``weight_tangent`` of
    :class:`~rnnjax.typing.RecurrentWeightCell`, next to the cell's ``recur_with_factors``."""

    def weight_tangent(self, factors: Array, d_w_h: Array, dtype) -> Array:
        """The change of a step's projected input ``u`` that acts as the change ``d_w_h`` of ``params.w_h``:
        ``factors @ d_w_h``, in the precision and dtype of the recurrent matmul. ``factors`` may carry
        leading step and batch axes: ``unroll`` calls this once for the whole sequence."""
        return numerics.matmul_weight_tangent(factors, d_w_h, dtype, self.precision)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BaseCell:
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
      dropout: input dropout rate in ``[0, 1)``: one mask per sequence on ``x_t``, the same at
        every step (variational dropout, Keras' ``dropout``). Only in training: when
        :func:`rnnjax.unroll` gets a ``key``.
      recurrent_dropout: the same on ``h_{t-1}`` where it enters the recurrent matmul (Keras'
        ``recurrent_dropout``).
      zoneout: zoneout rate in ``[0, 1)``: in training, each carry unit keeps its previous value
        with this probability, drawn anew every step; at inference (no key) every unit is the
        expectation ``zoneout * previous + (1 - zoneout) * new`` (Krueger et al. 2016).
    """

    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    learn_initial_carry: bool = False
    kernel_init: Callable = dataclasses.field(default=GLOROT_UNIFORM, repr=False)
    recurrent_init: Callable = dataclasses.field(default=ORTHOGONAL, repr=False)
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    zoneout: float = 0.0

    params_type: ClassVar[type]
    num_gates: ClassVar[int] = 1
    supports_noise: ClassVar[bool] = False  # its recur takes ``noise`` (dropout and zoneout rates allowed)

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
        for name in ("dropout", "recurrent_dropout", "zoneout"):
            rate = getattr(self, name)
            if not (isinstance(rate, int | float) and 0.0 <= rate < 1.0):
                raise ValueError(f"{name}: expected a rate in [0, 1), got {rate!r}")
            if rate > 0 and not self.supports_noise:
                raise ValueError(
                    f"{name}: {type(self).__name__} has no dropout or zoneout (ElmanCell, LSTMCell, GRUCell and "
                    "their layer-normalized forms have); use dropout between layers (rj.Stack(dropout=...)) instead"
                )

    @property
    def has_noise(self) -> bool:
        """Whether training (``unroll`` with a ``key``) draws dropout or zoneout masks for this cell."""
        return self.dropout > 0 or self.recurrent_dropout > 0 or self.zoneout > 0

    def sequence_noise(self, key: PRNGKey, params: Params, num_steps: int) -> SequenceNoise:
        """Draw the training noise of one sequence of ``num_steps`` steps (see :class:`SequenceNoise`).

        Example:
            >>> import jax, rnnjax as rj
            >>> cell = rj.LSTMCell(4, dropout=0.5, zoneout=0.1)
            >>> params = cell.init(jax.random.key(0), 3)
            >>> noise = cell.sequence_noise(jax.random.key(1), params, 10)
            >>> noise.inputs.shape, noise.recurrent, noise.zoneout.c.shape
            ((3,), None, (10, 4))
        """
        k_in, k_rec, k_zone = jax.random.split(key, 3)
        dtype = self._compute_dtype(params)

        def mask(k, rate, size):
            keep = jax.random.bernoulli(k, 1.0 - rate, (size,))
            return jnp.where(keep, 1.0 / (1.0 - rate), 0.0).astype(dtype)

        carry = self.initial_carry(params)
        return SequenceNoise(
            mask(k_in, self.dropout, self.input_size(params)) if self.dropout > 0 else None,
            mask(k_rec, self.recurrent_dropout, carry.h.shape[-1]) if self.recurrent_dropout > 0 else None,
            _zoneout_masks(k_zone, self.zoneout, carry, num_steps) if self.zoneout > 0 else None,
        )

    def _zone_out(self, old: Carry, new: Carry, noise: StepNoise | None) -> Carry:
        """Zoneout of the carry: ``new`` where no unit is zoned out (rate 0); in training the units whose
        mask is True keep ``old``; at inference the expectation of the two."""
        if self.zoneout == 0:
            return new
        if noise is None or noise.zoneout is None:
            rate = self.zoneout
            return jax.tree_util.tree_map(lambda o, n: (rate * o + (1 - rate) * n).astype(n.dtype), old, new)
        return jax.tree_util.tree_map(lambda keep, o, n: jnp.where(keep, o.astype(n.dtype), n), noise.zoneout, old, new)

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
        checks.params_like(params, expected, short_repr(self), hint=lambda: self._made_by(params, input_size))

    def _made_by(self, params: Params, input_size: int) -> str:
        """`` (made by Cell(...)?)`` if flipping one boolean hyper-parameter fits the params' structure."""
        structure = jax.tree_util.tree_structure(params)
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool):
                other = dataclasses.replace(self, **{field.name: not value})
                if jax.tree_util.tree_structure(_param_shapes(other, max(input_size, 1))) == structure:
                    return f" (made by {short_repr(other)}?)"
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

    @params_checked
    def initial_carry(self, params: Params, batch_shape: Shape = ()) -> Carry:
        """The carry before the first step: zeros, or the learned ``params.carry0``.

        Args:
          params: this cell's params.
          batch_shape: leading shape for a batch of carries, e.g. ``(b,)``.

        Returns:
          A carry NamedTuple of arrays ``[*batch_shape, h]`` in the computation dtype.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> cell = rj.LSTMCell(8)
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

    @params_checked
    def project(self, params: Params, xs: Array) -> Array:
        """The time-parallel input projection ``us = xs @ w_i + b``.

        Args:
          params: this cell's params.
          xs: inputs ``[..., f]``, any leading shape (e.g. ``[t, f]``).

        Returns:
          ``us: [..., g]`` in the computation dtype, ready for :meth:`recur`.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> cell = rj.GRUCell(8)
            >>> params = cell.init(jax.random.key(0), 4)
            >>> cell.project(params, jnp.ones((10, 4))).shape
            (10, 24)
        """
        xs = checks.floating(xs, "xs")
        checks.features(xs, self.input_size(params), "xs")
        return numerics.affine(xs, params.w_i, params.b, self._compute_dtype(params, xs.dtype), self.precision)

    @params_checked
    def step(self, params: Params, carry: Carry, x: Array, noise: StepNoise | None = None) -> tuple[Carry, Array]:
        """One full time step: ``recur(params, carry, project(params, x))``.

        Args:
          params: this cell's params.
          carry: the carry before the step, arrays ``[..., h]``.
          x: the input ``[..., f]``.
          noise: training noise of this step (recurrent dropout, zoneout), for a cell that
            ``supports_noise``; None: inference.

        Returns:
          ``(carry, y)``: the new carry and the output ``y: [..., o]``.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> cell = rj.ElmanCell(8)
            >>> params = cell.init(jax.random.key(0), 4)
            >>> carry, y = cell.step(params, cell.initial_carry(params), jnp.ones(4))
            >>> y.shape
            (8,)
        """
        if noise is None:
            return self.recur(params, carry, self.project(params, x))
        return self.recur(params, carry, self.project(params, x), noise=noise)
