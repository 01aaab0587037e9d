"""Many-to-one: :class:`SequenceClassifier`, a label for a whole sequence."""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax import heads
from rnnjax._src import checks, masks
from rnnjax._src.dtypes import Dtypes
from rnnjax.cells import DenseParams
from rnnjax.heads import EmbeddingParams
from rnnjax.layers import Bidirectional
from rnnjax.models import base
from rnnjax.typing import Array, Params, PRNGKey


class ClassifierParams(NamedTuple):
    embed: EmbeddingParams | None  # table [v, f] when vocab_size is set, else None
    encoder: Params  # the encoder's params
    head: DenseParams  # w [o, l], b [l]


_POOLINGS = ("last", "mean", "max")


@dataclasses.dataclass(frozen=True)
class SequenceClassifier(Dtypes):
    r"""Many-to-one: an encoder over the sequence, a pooling over time, a dense head.

    .. math::
        y_{1..t} = \mathrm{encoder}(x_{1..t}), \qquad
        z = \mathrm{pool}(y_{1..n}), \qquad \mathrm{logits} = z W + b

    Poolings over the ``n = length`` valid steps:

    - ``"last"``: the final output of each direction of the encoder's top layer, i.e. the
      output at its last step: ``y_{n-1}`` going forward, ``y_0`` going backward (a reversed
      RNN ends at step 0). For a :class:`~rnnjax.Bidirectional` top layer the two are merged
      as the layer merges its outputs (``concat``: ``[y^f_{n-1}; y^b_0]``), so it summarises
      the whole sequence in both directions, as the final carries do (the output of the
      step equals ``h`` for LSTM, GRU and Elman cells).
    - ``"mean"``: the mean of ``y_0 .. y_{n-1}``.
    - ``"max"``: the element-wise max over ``y_0 .. y_{n-1}``.

    A sequence with ``length`` 0 pools to zeros.

    Args:
      encoder: a cell (run as ``rj.RNN(cell)``), or an ``RNN``, ``Bidirectional`` or ``Stack``
        layer (whose last layer is an ``RNN`` or ``Bidirectional``).
      num_classes: ``l``.
      input_size: features ``f`` of ``xs``; with ``vocab_size``, the embedding size.
      pooling: ``"last"``, ``"mean"`` or ``"max"``.
      vocab_size: if set, ``xs`` are integer token ids ``[t]``, embedded by an
        :class:`~rnnjax.Embedding` ``(vocab_size, input_size)`` first.
      dtype: computation dtype of the model's cells (e.g. ``jnp.bfloat16``); None: the cells' own.
      param_dtype: dtype of every param (cells, embeddings, dense layers); None: the cells' own,
        float32 for the rest. With either set, logits are at least float32.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> model = rj.models.SequenceClassifier(rj.Bidirectional(rj.GRUCell(8), rj.GRUCell(8)), 3, input_size=4)
        >>> params = model.init(jax.random.key(0))
        >>> xs, lengths = jnp.ones((2, 6, 4)), jnp.array([6, 2])
        >>> jax.vmap(model.apply, (None, 0, 0))(params, xs, lengths).shape
        (2, 3)
    """

    encoder: Any
    num_classes: int
    input_size: int
    pooling: str = "last"
    _: dataclasses.KW_ONLY
    vocab_size: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "encoder", base.check_encoder(self.encoder))
        self._pass_dtypes("encoder")
        checks.positive_int(self.num_classes, "num_classes")
        base.check_front(self.vocab_size, self.input_size)
        if self.pooling not in _POOLINGS:
            raise ValueError(f"pooling: expected one of {_POOLINGS}, got {self.pooling!r}")

    def init(self, key: PRNGKey) -> ClassifierParams:
        """``ClassifierParams(embed, encoder, head)``.

        Example:
            >>> import rnnjax as rj
            >>> model = SequenceClassifier(rj.GRUCell(8), 3, 4, vocab_size=10)
            >>> params = model.init(jax.random.key(0))
            >>> params.embed.table.shape, params.head.w.shape
            ((10, 4), (8, 3))
        """
        k_embed, k_encoder, k_head = jax.random.split(key, 3)
        embed = None if self.vocab_size is None else self._embed(self.vocab_size, self.input_size).init(k_embed)
        encoder = self.encoder.init(k_encoder, self.input_size)
        return ClassifierParams(embed, encoder, self._head(self.num_classes).init(k_head, self.encoder.output_size))

    def _pool(self, ys: Array, finals: tuple[base.Final, ...], valid: Array | None) -> Array:
        if self.pooling == "last":
            top = base.top(self.encoder)
            if isinstance(top, Bidirectional):
                return top.merge_outputs(finals[0].output, finals[1].output)
            return finals[0].output
        valid = jnp.ones(ys.shape[:1], bool)[:, None] if valid is None else valid[:, None]
        if self.pooling == "mean":
            count = jnp.maximum(jnp.sum(valid), 1).astype(ys.dtype)
            return jnp.sum(jnp.where(valid, ys, jnp.zeros_like(ys)), axis=0) / count
        biggest = jnp.max(jnp.where(valid, ys, jnp.finfo(ys.dtype).min), axis=0)
        return jnp.where(jnp.any(valid), biggest, jnp.zeros_like(biggest))

    def apply(
        self, params: ClassifierParams, xs: Array, length=None, key: PRNGKey | None = None, *, mask=None
    ) -> Array:
        """Class logits for one sequence.

        Args:
          params: from :meth:`init`.
          xs: ``[t, f]`` floats, or integer token ids ``[t]`` when ``vocab_size`` is set.
          length: valid steps ``n`` (scalar); later steps are ignored. None: all ``t``.
          key: PRNG key for the encoder's dropout (a ``Stack`` with ``dropout``); None: none.
          mask: ``[t]`` booleans, True at valid steps (holes, left padding); the masked steps are
            skipped by the encoder and the pooling. With ``length``, both apply.

        Returns:
          ``logits: [l]``.

        Example:
            >>> import rnnjax as rj
            >>> model = SequenceClassifier(rj.GRUCell(8), 3, 4, pooling="max")
            >>> params = model.init(jax.random.key(0))
            >>> model.apply(params, jnp.ones((6, 4)), length=3).shape
            (3,)
        """
        xs = base.inputs(xs, params.embed, self.vocab_size, self.input_size)
        length = checks.length(length, xs.shape[0])
        mask = checks.step_mask(mask, xs.shape[0])
        ys, finals = base.run_encoder(self.encoder, params.encoder, xs, length, key, mask)
        valid = masks.valid_steps(xs.shape[0], length, mask)
        return self._head(self.num_classes).apply(params.head, self._pool(ys, finals, valid))

    def summary_rows(self, params: ClassifierParams) -> tuple[heads.SummaryRow, ...]:
        """Its rows in :func:`rnnjax.summary`: the embedding (with ``vocab_size``), the encoder's layers, the
        pooling (``"mean"``: ``GlobalAveragePooling1D``, ``"max"``: ``GlobalMaxPooling1D``) and the head.

        With ``pooling="last"`` the encoder's top layer gives one vector per sequence, ``(None, o)``, as a
        Keras RNN with ``return_sequences=False``.

        Example:
            >>> import rnnjax as rj
            >>> model = SequenceClassifier(rj.GRUCell(8), 3, 4, pooling="mean")
            >>> for row in model.summary_rows(model.init(jax.random.key(0))):
            ...     print(row.name, row.type, row.output_shape)
            gru GRU (None, None, 8)
            global_average_pooling1d GlobalAveragePooling1D (None, 8)
            dense Dense (None, 3)
        """
        o, rows = self.encoder.output_size, []
        if self.vocab_size is not None:
            embedding = self._embed(self.vocab_size, self.input_size)
            rows += heads.summary_rows(embedding, params.embed, (None, None, self.input_size))
        if self.pooling == "last":
            rows += heads.summary_rows(self.encoder, params.encoder, (None, o))
        else:
            rows += heads.summary_rows(self.encoder, params.encoder, (None, None, o))
            name, kind = {
                "mean": ("global_average_pooling1d", "GlobalAveragePooling1D"),
                "max": ("global_max_pooling1d", "GlobalMaxPooling1D"),
            }[self.pooling]
            rows.append(heads.SummaryRow(name, kind, (None, o), None))
        rows += heads.summary_rows(self._head(self.num_classes), params.head, (None, self.num_classes))
        return tuple(rows)


# ----------------------------------------------------------------------------- many-to-many
