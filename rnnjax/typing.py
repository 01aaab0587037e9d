"""Shape notation and the cell contract, stated once for the whole library.

Shape letters, one table for the whole package (every docstring uses these):

====  ===================================================================
t     time (sequence length); ``s`` the source time of an encoder-decoder
b     batch
k     beam (hypotheses kept by a beam search)
K     particles of an importance-weighted bound (:mod:`rnnjax.vrnn`)
f     input features (``input_size``)
h     hidden units (``hidden_size``)
g     gates times hidden units (``4h`` for an LSTM, ``3h`` for a GRU)
o     output units (``output_size``; ``h`` for most cells)
v     vocabulary
l     labels of a classifier or a tagger (classes, tags)
E     embedding size
e     memory value size: an encoder's outputs, a feature map's channels
a     attention size
q     query size of an attention module
d     condition features of a one-to-many model
z     latent size (:mod:`rnnjax.vrnn`)
n, w  the length of one stream, a window (:mod:`rnnjax.data`); ``m`` the number of windows
p     positions of an image feature map (:mod:`rnnjax.apps.captioning`)
====  ===================================================================

A *cell* handles ONE example. Its leading axes are free (``project`` accepts any
leading shape), and a batch is made with :func:`jax.vmap` or with ``batch_shape``
in ``initial_carry``. Carry comes first after params, in :func:`jax.lax.scan`
order, so ``functools.partial(cell.step, params)`` is a scan body.
"""

from typing import Any, ClassVar, Protocol, TypeAlias, runtime_checkable

import jax

Array: TypeAlias = jax.Array
PRNGKey: TypeAlias = jax.Array
Params: TypeAlias = Any  # a NamedTuple (or tuple of them): a plain pytree
Carry: TypeAlias = Any  # a NamedTuple of arrays: the recurrent state
Shape: TypeAlias = tuple[int, ...]


@runtime_checkable
class Cell(Protocol):
    """What every recurrent cell provides (the cells guide, ``docs/guide/cells.md``)."""

    @property
    def output_size(self) -> int: ...

    def init(self, key: PRNGKey, input_size: int) -> Params: ...

    def input_size(self, params: Params) -> int: ...

    def initial_carry(self, params: Params, batch_shape: Shape = ()) -> Carry: ...

    def project(self, params: Params, xs: Array) -> Array: ...

    def recur(self, params: Params, carry: Carry, u: Array) -> tuple[Carry, Array]: ...

    def step(self, params: Params, carry: Carry, x: Array) -> tuple[Carry, Array]: ...

    def check_params(self, params: Params) -> None:
        """Raise ``TypeError``/``ValueError`` naming the field if ``params`` are not what ``init`` makes.

        Called by :func:`rnnjax.unroll` and the layers on shapes only (at trace time); a cell
        that cannot check may do nothing.
        """


@runtime_checkable
class Layer(Protocol):
    """A sequence layer (``RNN``, ``Bidirectional``, ``Stack``): one whole sequence ``[t, f]`` at a time."""

    @property
    def output_size(self) -> int: ...

    def init(self, key: PRNGKey, input_size: int) -> Params: ...

    def initial_carry(self, params: Params, batch_shape: Shape = ()) -> Carry: ...

    def apply_with_carry(
        self, params: Params, xs: Array, carry: Carry = None, *, length=None, mask=None, key=None
    ) -> tuple[Carry, Array]: ...

    def apply(self, params: Params, xs: Array, *, length=None, mask=None, key=None) -> Array: ...


@runtime_checkable
class GatedParams(Protocol):
    """Params whose ``gate_fields`` hold gates x hidden units on their last axis.

    Model-parallel sharding (:func:`rnnjax.parallel.param_shardings`) splits those fields over
    the mesh's ``model`` axis; a new cell's params join by declaring the class attribute.
    """

    gate_fields: ClassVar[tuple[str, ...]]


@runtime_checkable
class Attention(Protocol):
    """An attention module (:mod:`rnnjax.attention`): scores a query against a memory of values."""

    attends_before_step: ClassVar[bool]  # in a decoder: the previous hidden state attends (Bahdanau)

    def init(self, key: PRNGKey, query_size: int, value_size: int) -> Params: ...

    def context_size(self, value_size: int) -> int: ...

    def precompute(self, params: Params, values: Array) -> Array: ...

    def attend(self, params: Params, query: Array, keys: Array, values: Array, mask: Array) -> tuple[Array, Array]: ...


@runtime_checkable
class LinearRecurrenceCell(Cell, Protocol):
    """A cell whose step is ``h_t = a_t * h_{t-1} + b_t``, with ``(a_t, b_t)`` from the input only.

    ``unroll`` can then run it as an associative scan (``parallel=True``), and its hoisted
    path computes every ``(a_t, b_t)`` before the loop.
    """

    def coefficients(self, params: Params, us: Array) -> tuple[Array, Array]: ...


@runtime_checkable
class RecurrentWeightCell(Cell, Protocol):
    """A cell whose recurrent weight ``params.w_h`` reaches the step only through its projected input ``u``.

    Changing ``w_h`` by ``dw`` changes a step as changing its ``u`` by ``weight_tangent(factors, dw, dtype)``,
    where ``recur_with_factors`` returns ``recur``'s ``(carry, y)`` and that step's ``factors`` (an LSTM's
    ``h_{t-1}``, as ``z = u + h_{t-1} W_h``). ``unroll``'s hoisted path then keeps ``w_h``'s gradient out of
    the backward loop and computes it after the loop as one matmul over all steps (and, under
    ``vmap``, all sequences) instead of one small matmul per step, where
    ``recurrence.DEFER_WEIGHT_GRADIENT`` says so. The params are a NamedTuple with a ``w_h`` field.
    """

    def recur_with_factors(
        self, params: Params, carry: Carry, u: Array, noise: Any = None
    ) -> tuple[Carry, Array, Any]: ...

    def weight_tangent(self, factors: Any, d_w_h: Array, dtype: Any) -> Array: ...


@runtime_checkable
class ComputeDtypeCell(Cell, Protocol):
    """A cell whose ``dtype`` field sets the dtype its steps compute in (None: the params' dtype promoted with
    the input's; :class:`rnnjax.cells.BaseCell`).

    ``unroll`` casts params narrower than that dtype to it once, before the time loop, so that their
    gradients are summed over the steps in it (bfloat16 params computing in float32).
    """

    dtype: Any


@runtime_checkable
class NoisyCell(Cell, Protocol):
    """A cell with training noise (input and recurrent dropout, zoneout; :class:`rnnjax.cells.BaseCell`).

    ``unroll`` given a ``key`` draws ``sequence_noise`` once per sequence when ``has_noise``, and
    passes each step's share to ``step``/``recur`` as their ``noise`` argument.
    """

    @property
    def has_noise(self) -> bool: ...

    def sequence_noise(self, key: PRNGKey, params: Params, num_steps: int) -> Any: ...


@runtime_checkable
class Summarizable(Protocol):
    """A model or layer that lists its layers for :func:`rnnjax.summary`, in definition order, as
    :class:`rnnjax.heads.SummaryRow` tuples.

    The models of :mod:`rnnjax.models` and the layers ``RNN``, ``Stack``, ``StackedCell`` and
    ``Masking`` have it; anything of your own that has it is rendered by ``rj.summary`` too.
    """

    def summary_rows(self, params: Params) -> tuple[Any, ...]: ...
