"""Shape notation and the cell contract, stated once for the whole library.

Shape letters used in every docstring:

====  ===========================================================
t     time (sequence length)
b     batch
k     beam
f     input features (``input_size``)
h     hidden units (``hidden_size``)
g     gates times hidden units (``4h`` for an LSTM, ``3h`` for a GRU)
o     output units (``output_size``; ``h`` for most cells)
v     vocabulary
====  ===========================================================

A *cell* handles ONE example. Its leading axes are free (``project`` accepts any
leading shape), and a batch is made with :func:`jax.vmap` or with ``batch_shape``
in ``initial_carry``. Carry comes first after params, in :func:`jax.lax.scan`
order, so ``functools.partial(cell.step, params)`` is a scan body.
"""

from typing import Any, Protocol, TypeAlias, runtime_checkable

import jax

Array: TypeAlias = jax.Array
PRNGKey: TypeAlias = jax.Array
Params: TypeAlias = Any  # a NamedTuple (or tuple of them): a plain pytree
Carry: TypeAlias = Any  # a NamedTuple of arrays: the recurrent state
Shape: TypeAlias = tuple[int, ...]


@runtime_checkable
class Cell(Protocol):
    """What every recurrent cell provides (see ``DESIGN.md``)."""

    @property
    def output_size(self) -> int: ...

    def init(self, key: PRNGKey, input_size: int) -> Params: ...

    def input_size(self, params: Params) -> int: ...

    def initial_carry(self, params: Params, batch_shape: Shape = ()) -> Carry: ...

    def project(self, params: Params, xs: Array) -> Array: ...

    def recur(self, params: Params, carry: Carry, u: Array) -> tuple[Carry, Array]: ...

    def step(self, params: Params, carry: Carry, x: Array) -> tuple[Carry, Array]: ...


@runtime_checkable
class LinearRecurrenceCell(Cell, Protocol):
    """A cell whose step is ``h_t = a_t * h_{t-1} + b_t``, with ``(a_t, b_t)`` from the input only.

    ``unroll`` can then run it as an associative scan (``parallel=True``), and its hoisted
    path computes every ``(a_t, b_t)`` before the loop.
    """

    def coefficients(self, params: Params, us: Array) -> tuple[Array, Array]: ...
