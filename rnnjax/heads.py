"""Feed-forward pieces around the recurrent core: embedding and dense heads, and ``summary``.

Each head is a frozen dataclass with ``init(key, ...) -> params`` and a pure
``apply(params, x)`` for any leading shape, like the cells.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._src import checks, numerics
from rnnjax.cells import DenseParams
from rnnjax.typing import Array, PRNGKey


class EmbeddingParams(NamedTuple):
    table: Array  # [v, d]


@dataclasses.dataclass(frozen=True)
class Embedding:
    """Token ids to vectors: ``apply(params, ids [...]) -> [..., d]``.

    Args:
      vocab_size: number of token ids ``v``.
      features: embedding size ``d``.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> embed = rj.Embedding(1000, 64)
        >>> params = embed.init(jax.random.key(0))
        >>> embed.apply(params, jnp.array([3, 1, 4])).shape
        (3, 64)
    """

    vocab_size: int
    features: int
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        checks.positive_int(self.vocab_size, "vocab_size")
        checks.positive_int(self.features, "features")

    def init(self, key: PRNGKey) -> EmbeddingParams:
        """``table: [v, d]`` drawn from N(0, 1), as torch's ``nn.Embedding``."""
        return EmbeddingParams(jax.random.normal(key, (self.vocab_size, self.features), self.param_dtype))

    def apply(self, params: EmbeddingParams, ids: Array) -> Array:
        """Rows of the table for integer ``ids: [...]``; ``[..., d]``."""
        ids = jnp.asarray(ids)
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            raise TypeError(f"ids: expected integer token ids, got dtype {ids.dtype}")
        vocab_size = params.table.shape[0]
        # concrete ids at once (in NumPy, also inside a jit), traced ones in checking mode
        checks.values("ids", f"token ids in [0, {vocab_size})", lambda i: (i >= 0) & (i < vocab_size), ids)
        # out-of-range ids that slip through (traced, unchecked) give NaN rows, never another row
        return jnp.take(params.table, ids, axis=0, mode="fill", fill_value=jnp.nan)

    def attend(self, params: EmbeddingParams, x: Array) -> Array:
        """Logits against the embedding table (weight tying): ``x [..., d] -> [..., v]``.

        Computed in ``x``'s dtype; 16-bit inputs give float32 logits (float32 accumulation).
        """
        return numerics.matmul(x, params.table.T, x.dtype)


@dataclasses.dataclass(frozen=True)
class Dense:
    """An affine layer ``x @ w + b`` with an optional activation, for any leading shape.

    Args:
      features: output size ``o``.
      activation: applied after the affine map (None: identity).
      use_bias: add ``b``.
      param_dtype: dtype of ``w`` and ``b`` (16-bit kernels are drawn in float32, then cast).
      kernel_init: initializer of ``w``.
      output_dtype: dtype of the output; None: the computation dtype. ``jnp.float32`` gives
        float32 logits from 16-bit activations without rounding the float32 accumulation.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> head = rj.Dense(10)
        >>> params = head.init(jax.random.key(0), 128)
        >>> head.apply(params, jnp.ones((7, 128))).shape
        (7, 10)
    """

    features: int
    activation: Callable | None = None
    use_bias: bool = True
    param_dtype: Any = jnp.float32
    kernel_init: Callable = dataclasses.field(default=numerics.GLOROT_UNIFORM, repr=False)
    output_dtype: Any = None

    def __post_init__(self):
        checks.positive_int(self.features, "features")

    def init(self, key: PRNGKey, input_size: int) -> DenseParams:
        """``DenseParams(w [f, o], b [o])`` (``b`` is None without bias)."""
        checks.positive_int(input_size, "input_size")
        w = numerics.initialized(self.kernel_init, key, (input_size, self.features), self.param_dtype)
        b = jnp.zeros((self.features,), self.param_dtype) if self.use_bias else None
        return DenseParams(w, b)

    def apply(self, params: DenseParams, x: Array) -> Array:
        """``[..., f] -> [..., o]``, computing in the promotion of ``x``'s and the params' dtypes."""
        x = checks.floating(x, "x")
        checks.features(x, params.w.shape[0], "x")
        y = numerics.affine(
            x, params.w, params.b, numerics.promote(x.dtype, params.w.dtype), out_dtype=self.output_dtype
        )
        return y if self.activation is None else self.activation(y)


def _path_name(path) -> str:
    parts = []
    for entry in path:
        if isinstance(entry, jax.tree_util.GetAttrKey):
            parts.append(entry.name)
        elif isinstance(entry, jax.tree_util.DictKey):
            parts.append(str(entry.key))
        elif isinstance(entry, jax.tree_util.SequenceKey):
            parts.append(str(entry.idx))
        else:
            parts.append(str(entry))
    return ".".join(parts) or "(root)"


def count_params(params) -> int:
    """Number of scalars in a params pytree.

    Example:
        >>> import jax, rnnjax as rj
        >>> rj.count_params(rj.LSTMCell(128).init(jax.random.key(0), 64))
        98816
    """
    return sum(int(np.prod(np.shape(x))) for x in jax.tree_util.tree_leaves(params))


def summary(params, *, print_fn: Callable[[str], None] | None = print) -> str:
    """A Keras-style table of a params pytree: name, shape, dtype and count of every leaf, and the total.

    Args:
      params: any pytree of arrays (NamedTuples, dicts, tuples).
      print_fn: where to send the table (None: only return it).

    Returns:
      The table as a string.

    Example:
        >>> import jax, rnnjax as rj
        >>> keys = jax.random.split(jax.random.key(0), 3)
        >>> params = {
        ...     "embed": rj.Embedding(1000, 64).init(keys[0]),
        ...     "lstm": rj.LSTMCell(128).init(keys[1], 64),
        ...     "head": rj.Dense(10).init(keys[2], 128),
        ... }
        >>> _ = rj.summary(params)
        name           shape        dtype        params
        -----------------------------------------------
        embed.table    (1000, 64)   float32      64,000
        head.w         (128, 10)    float32       1,280
        head.b         (10,)        float32          10
        lstm.w_i       (64, 512)    float32      32,768
        lstm.w_h       (128, 512)   float32      65,536
        lstm.b         (512,)       float32         512
        -----------------------------------------------
        total                                   164,106
    """
    rows = [
        (_path_name(path), str(tuple(np.shape(leaf))), str(getattr(leaf, "dtype", "")), int(np.size(leaf)))
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
    ]
    total = sum(r[3] for r in rows)
    width_name = max([len("name"), len("total")] + [len(r[0]) for r in rows]) + 4
    width_shape = max([len("shape")] + [len(r[1]) for r in rows]) + 3
    width_dtype = max([len("dtype")] + [len(r[2]) for r in rows]) + 3
    width_count = max(len("params"), len(f"{total:,}")) + 2
    line = "-" * (width_name + width_shape + width_dtype + width_count)
    out = [f"{'name':<{width_name}}{'shape':<{width_shape}}{'dtype':<{width_dtype}}{'params':>{width_count}}", line]
    out += [f"{n:<{width_name}}{s:<{width_shape}}{d:<{width_dtype}}{c:>{width_count},}" for n, s, d, c in rows]
    out += [line, f"{'total':<{width_name + width_shape + width_dtype}}{total:>{width_count},}"]
    table = "\n".join(out)
    if print_fn is not None:
        print_fn(table)
    return table
