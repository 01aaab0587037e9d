"""Feed-forward pieces around the recurrent core: embedding and dense heads, and ``summary``.

Each head is a frozen dataclass with ``init(key, ...) -> params`` and a pure
``apply(params, x)`` for any leading shape, like the cells.

``summary(model, params)`` prints Keras' ``model.summary()`` table of any model, layer or cell:
the models and layers list their layers with a ``summary_rows(params)`` method
(:class:`rnnjax.typing.Summarizable`), and :func:`summary_rows` gives the rows of any one part.
"""

import dataclasses
import re
import textwrap
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._src import checks, numerics
from rnnjax.cells import DenseParams
from rnnjax.typing import Array, Cell, Layer, PRNGKey, Summarizable


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


# --- summary ---------------------------------------------------------------------------------------


class SummaryRow(NamedTuple):
    """One row of :func:`summary`: one layer of a model, as Keras' ``model.summary()`` lists it."""

    name: str  # the layer's name; summary makes the names unique as Keras does (lstm, lstm_1, ...)
    type: str  # what the layer is: "Embedding", "LSTM" (an LSTMCell run over time), "Bidirectional", "Dense", ...
    output_shape: tuple[int | None, ...]  # its output for a batch, None for the batch and time axes: (None, None, o)
    params: Any  # the layer's params (any pytree; None: no params); the rows' params add up to the model's


def summary_rows(part, params, output_shape: tuple[int | None, ...]) -> tuple[SummaryRow, ...]:
    """The summary rows of one part of a model, its output having ``output_shape``.

    A part with its own ``summary_rows`` (:class:`Summarizable`: a ``Stack`` lists its layers)
    gives those rows, the last one's output shape set to ``output_shape`` (e.g. ``(None, o)``
    when the model keeps only the last step, as Keras' ``return_sequences=False``). Any other
    part is one row named after its type, a cell being the layer that runs it over time
    (``LSTMCell`` is ``LSTM``, as in Keras).

    Args:
      part: a cell, layer, head (``Embedding``, ``Dense``), attention module, ...
      params: its params.
      output_shape: its output, ``None`` for the batch and time axes.

    Returns:
      A tuple of :class:`SummaryRow`.

    Example:
        >>> import jax, rnnjax as rj
        >>> cell = rj.LSTMCell(128)
        >>> row, = rj.heads.summary_rows(cell, cell.init(jax.random.key(0), 64), (None, 128))
        >>> row.name, row.type, row.output_shape, rj.count_params(row.params)
        ('lstm', 'LSTM', (None, 128), 98816)
    """
    output_shape = tuple(output_shape)
    if isinstance(part, Summarizable):
        *rows, last = part.summary_rows(params)
        return (*rows, last._replace(output_shape=output_shape))
    kind = type(part).__name__
    if isinstance(part, Cell):
        kind = kind.removesuffix("Cell")
    return (SummaryRow(_snake_case(kind), kind, output_shape, params),)


def _snake_case(name: str) -> str:
    """Keras' layer names: ``LSTM -> lstm``, ``SimpleRNN -> simple_rnn``, ``GlobalAveragePooling1D ->
    global_average_pooling1d``."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _unique(names: list[str]) -> list[str]:
    """``lstm, lstm, dense -> lstm, lstm_1, dense``, as Keras numbers its layers."""
    counts: dict[str, int] = {}
    used: set[str] = set()
    unique = []
    for name in names:
        i = counts.get(name, 0)
        candidate = name if i == 0 else f"{name}_{i}"
        while candidate in used:
            i += 1
            candidate = f"{name}_{i}"
        counts[name] = i + 1
        used.add(candidate)
        unique.append(candidate)
    return unique


def _num_bytes(params) -> int:
    return sum(int(np.size(x)) * np.dtype(x.dtype).itemsize for x in jax.tree_util.tree_leaves(params))


def _readable_size(num_bytes: float) -> str:
    """``656424 -> '641.04 KB'``, as Keras writes memory sizes."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if num_bytes < 1024:
            return f"{num_bytes:.2f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.2f} PB"


def _format_shape(shape) -> str:
    return f"({', '.join(str(n) for n in shape)})"


# Keras' column widths (each with its one-space padding on both sides) on an 80-column console.
_WIDTHS = (33, 24, 15)


def _model_table(title: str, rows: list[SummaryRow], params) -> str:
    """Keras' table: a box of three columns (the last right-aligned), a text too long for its column
    wrapped onto more lines at spaces, as Keras (rich) wraps it."""
    names = _unique([row.name for row in rows])
    cells = [
        (f"{name} ({row.type})", _format_shape(row.output_shape), f"{count_params(row.params):,}")
        for name, row in zip(names, rows, strict=True)
    ]

    def line(left, fill, mid, right):
        return left + mid.join(fill * width for width in _WIDTHS) + right

    def row(texts, edge):
        columns = [textwrap.wrap(text, width - 2) or [""] for text, width in zip(texts, _WIDTHS, strict=True)]
        height = max(len(column) for column in columns)
        lines = []
        for i in range(height):
            parts = [column[i] if i < len(column) else "" for column in columns]
            padded = [f" {parts[0]:<{_WIDTHS[0] - 2}} ", f" {parts[1]:<{_WIDTHS[1] - 2}} "]
            lines.append(edge + edge.join([*padded, f" {parts[2]:>{_WIDTHS[2] - 2}} "]) + edge)
        return lines

    table = [f'Model: "{title}"', line("┏", "━", "┳", "┓"), *row(("Layer (type)", "Output Shape", "Param #"), "┃")]
    table.append(line("┡", "━", "╇", "┩"))
    for i, texts in enumerate(cells):
        if i:
            table.append(line("├", "─", "┼", "┤"))
        table += row(texts, "│")
    table.append(line("└", "─", "┴", "┘"))
    total, size = count_params(params), _readable_size(_num_bytes(params))
    table += [
        f" Total params: {total:,} ({size})",
        f" Trainable params: {total:,} ({size})",
        f" Non-trainable params: 0 ({_readable_size(0)})",
    ]
    return "\n".join(table)


def _weights_table(params) -> str:
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
    return "\n".join(out)


def summary(model_or_params, params=None, *, print_fn: Callable[[str], None] | None = print) -> str:
    """A Keras-style summary: one row per layer of a model, or one row per weight of a params pytree.

    ``summary(model, params)``: the table Keras' ``model.summary()`` prints. One row per layer
    in definition order, with its name (made unique as Keras does: ``lstm``, ``lstm_1``, ...),
    its type, the output shape of a batch (``None`` for the batch and time axes) and its
    parameter count; then the total count and size. A cell counts as the layer that runs it
    over time (``LSTMCell`` is ``LSTM``), a ``Stack`` or ``StackedCell`` as its layers, a
    ``Masking`` layer as the layer it wraps. ``model`` is a model of :mod:`rnnjax.models`, a
    layer or a cell, or anything with a ``summary_rows(params)`` method (:class:`Summarizable`).
    Every rnnjax param is trained by ``jax.grad`` (there are no frozen statistics), so all are
    counted as trainable and the non-trainable count is 0. Keras' column widths are kept; a
    longer text wraps onto more lines, as in Keras.

    ``summary(params)``: a table of a bare params pytree, one row per array (its path, shape,
    dtype and count, in pytree order), and the total.

    Args:
      model_or_params: a model, layer or cell (with ``params``), or a params pytree (alone).
      params: the model's params (from its ``init``; ``jax.eval_shape`` of it works too).
      print_fn: where to send the table (None: only return it).

    Returns:
      The table as a string.

    Example:
        >>> import jax, rnnjax as rj
        >>> model = rj.models.SequenceClassifier(rj.LSTMCell(128), 10, 64, vocab_size=1000)
        >>> _ = rj.summary(model, model.init(jax.random.key(0)))
        Model: "sequence_classifier"
        ┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
        ┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
        ┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
        │ embedding (Embedding)           │ (None, None, 64)       │        64,000 │
        ├─────────────────────────────────┼────────────────────────┼───────────────┤
        │ lstm (LSTM)                     │ (None, 128)            │        98,816 │
        ├─────────────────────────────────┼────────────────────────┼───────────────┤
        │ dense (Dense)                   │ (None, 10)             │         1,290 │
        └─────────────────────────────────┴────────────────────────┴───────────────┘
         Total params: 164,106 (641.04 KB)
         Trainable params: 164,106 (641.04 KB)
         Non-trainable params: 0 (0.00 B)

        A bare params pytree:

        >>> cell = rj.LSTMCell(128)
        >>> _ = rj.summary({"lstm": cell.init(jax.random.key(0), 64)})
        name        shape        dtype       params
        -------------------------------------------
        lstm.w_i    (64, 512)    float32     32,768
        lstm.w_h    (128, 512)   float32     65,536
        lstm.b      (512,)       float32        512
        -------------------------------------------
        total                                98,816
    """
    model = model_or_params
    if params is None:
        if isinstance(model, Summarizable | Cell | Layer):
            raise TypeError(
                f"params: expected the params of the {type(model).__name__} (from its init), got None "
                "(rj.summary(model, params); rj.summary(params) alone lists a params pytree)"
            )
        table = _weights_table(model)
    else:
        if isinstance(model, Summarizable):
            rows = list(model.summary_rows(params))
        elif isinstance(model, Cell | Layer):
            rows = list(summary_rows(model, params, (None, None, model.output_size)))
        else:
            raise TypeError(
                f"model_or_params: expected a model, layer or cell (with summary_rows) when params is given, "
                f"got {type(model).__name__} (rj.summary(params) alone lists a params pytree)"
            )
        listed, total = sum(count_params(row.params) for row in rows), count_params(params)
        if listed != total:
            raise ValueError(
                f"params: the {type(model).__name__}'s layers hold {listed:,} params, the given params "
                f"{total:,} (params of another model?)"
            )
        table = _model_table(_snake_case(type(model).__name__), rows, params)
    if print_fn is not None:
        print_fn(table)
    return table
