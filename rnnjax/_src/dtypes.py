"""The ``dtype``/``param_dtype`` options of the models and the attention decoder: one definition."""

import dataclasses
from typing import Any

import jax.numpy as jnp

from rnnjax._src.numerics import accumulation_dtype
from rnnjax.heads import Dense, Embedding


def with_dtypes(part, dtype, param_dtype):
    """``part`` (a cell or layer; stacks, bidirectional layers and stacked cells walked into) with every
    ``dtype`` and ``param_dtype`` field set to the given ones (None: left as it is)."""
    if not dataclasses.is_dataclass(part) or (dtype is None and param_dtype is None):
        return part
    changes = {}
    for field in dataclasses.fields(part):
        value = getattr(part, field.name)
        if field.name in ("dtype", "param_dtype"):
            given = dtype if field.name == "dtype" else param_dtype
            if given is not None:
                changes[field.name] = given
        elif dataclasses.is_dataclass(value):
            changes[field.name] = with_dtypes(value, dtype, param_dtype)
        elif isinstance(value, tuple) and value and all(dataclasses.is_dataclass(v) for v in value):
            changes[field.name] = tuple(with_dtypes(v, dtype, param_dtype) for v in value)
    return dataclasses.replace(part, **changes)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Dtypes:
    """A model's ``dtype`` (computation) and ``param_dtype``, passed to its cells and heads.

    None leaves the cells as they are and the heads in float32. When either is set, logits come
    out in at least float32 (a 16-bit computation accumulates them in float32, unrounded), and
    the losses in :mod:`rnnjax.losses` compute in float32.
    """

    dtype: Any = None
    param_dtype: Any = None

    def _pass_dtypes(self, name: str) -> None:
        object.__setattr__(self, name, with_dtypes(getattr(self, name), self.dtype, self.param_dtype))

    @property
    def _param_dtype(self):
        return jnp.float32 if self.param_dtype is None else self.param_dtype

    def _embed(self, vocab_size: int, size: int) -> Embedding:
        return Embedding(vocab_size, size, param_dtype=self._param_dtype)

    def _dense(self, features: int) -> Dense:
        return Dense(features, param_dtype=self._param_dtype)

    def _head(self, features: int) -> Dense:
        """The output layer: logits in at least float32 when the model sets a dtype."""
        return Dense(features, param_dtype=self._param_dtype, output_dtype=self._logits_dtype)

    @property
    def _logits_dtype(self):
        """None (the computation dtype) unless the model sets a dtype; then at least float32."""
        if self.dtype is None and self.param_dtype is None:
            return None
        return accumulation_dtype(self._param_dtype if self.dtype is None else self.dtype)
