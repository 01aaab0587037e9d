"""Many-to-many: :class:`SequenceTagger`, a label per step."""

import dataclasses
from typing import Any, NamedTuple

import jax

from rnnjax import heads
from rnnjax._src import checks, masks
from rnnjax._src.dtypes import Dtypes
from rnnjax.cells import DenseParams
from rnnjax.heads import EmbeddingParams
from rnnjax.models import base
from rnnjax.typing import Array, Params, PRNGKey


class TaggerParams(NamedTuple):
    embed: EmbeddingParams | None  # table [v, f] when vocab_size is set, else None
    encoder: Params  # the encoder's params
    head: DenseParams  # w [o, l], b [l]


@dataclasses.dataclass(frozen=True)
class SequenceTagger(Dtypes):
    r"""Many-to-many, one label per step: an encoder and a dense head at every step.

    .. math:: \mathrm{logits}_{1..t} = \mathrm{encoder}(x_{1..t})\, W + b

    With a :class:`~rnnjax.Bidirectional` encoder each step sees the whole (valid) sequence.

    Args:
      encoder: a cell, or an ``RNN``, ``Bidirectional`` or ``Stack`` layer.
      num_tags: labels per step ``l``.
      input_size: features ``f`` of ``xs``; with ``vocab_size``, the embedding size.
      vocab_size: if set, ``xs`` are integer token ids ``[t]``, embedded first.
      dtype: computation dtype of the model's cells (e.g. ``jnp.bfloat16``); None: the cells' own.
      param_dtype: dtype of every param (cells, embeddings, dense layers); None: the cells' own,
        float32 for the rest. With either set, logits are at least float32.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> encoder = rj.Bidirectional(rj.GRUCell(8), rj.GRUCell(8))
        >>> model = rj.models.SequenceTagger(encoder, 5, 4, vocab_size=10)
        >>> params = model.init(jax.random.key(0))
        >>> model.apply(params, jnp.array([4, 8, 1, 6, 0, 0]), length=4).shape
        (6, 5)
    """

    encoder: Any
    num_tags: int
    input_size: int
    _: dataclasses.KW_ONLY
    vocab_size: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "encoder", base.check_encoder(self.encoder))
        self._pass_dtypes("encoder")
        checks.positive_int(self.num_tags, "num_tags")
        base.check_front(self.vocab_size, self.input_size)

    def init(self, key: PRNGKey) -> TaggerParams:
        """``TaggerParams(embed, encoder, head)``.

        Example:
            >>> import rnnjax as rj
            >>> SequenceTagger(rj.GRUCell(8), 5, 4).init(jax.random.key(0)).head.w.shape
            (8, 5)
        """
        k_embed, k_encoder, k_head = jax.random.split(key, 3)
        embed = None if self.vocab_size is None else self._embed(self.vocab_size, self.input_size).init(k_embed)
        encoder = self.encoder.init(k_encoder, self.input_size)
        return TaggerParams(embed, encoder, self._head(self.num_tags).init(k_head, self.encoder.output_size))

    def apply(self, params: TaggerParams, xs: Array, length=None, key: PRNGKey | None = None, *, mask=None) -> Array:
        """Logits for every step of one sequence.

        Args:
          params: from :meth:`init`.
          xs: ``[t, f]`` floats, or integer token ids ``[t]`` when ``vocab_size`` is set.
          length: valid steps ``n`` (scalar). None: all ``t``.
          key: PRNG key for the encoder's dropout; None: none.
          mask: ``[t]`` booleans, True at valid steps (holes, left padding).

        Returns:
          ``logits: [t, l]``; zeros at steps ``>= length`` and where ``mask`` is False.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> model = SequenceTagger(rj.GRUCell(8), 5, 4)
            >>> params = model.init(jax.random.key(0))
            >>> logits = model.apply(params, jnp.ones((6, 4)), length=4)
            >>> logits.shape, float(jnp.abs(logits[4:]).max())
            ((6, 5), 0.0)
        """
        xs = base.inputs(xs, params.embed, self.vocab_size, self.input_size)
        length = checks.length(length, xs.shape[0])
        mask = checks.step_mask(mask, xs.shape[0])
        ys, _ = base.run_encoder(self.encoder, params.encoder, xs, length, key, mask)
        logits = self._head(self.num_tags).apply(params.head, ys)
        return masks.zero_invalid(logits, masks.valid_steps(xs.shape[0], length, mask))

    def summary_rows(self, params: TaggerParams) -> tuple[heads.SummaryRow, ...]:
        """Its rows in :func:`rnnjax.summary`: the embedding (with ``vocab_size``), the encoder's layers and
        the head, each ``(None, None, size)``.

        Example:
            >>> import rnnjax as rj
            >>> model = SequenceTagger(rj.Bidirectional(rj.GRUCell(8), rj.GRUCell(8)), 5, 4)
            >>> for row in model.summary_rows(model.init(jax.random.key(0))):
            ...     print(row.name, row.type, row.output_shape)
            bidirectional Bidirectional (None, None, 16)
            dense Dense (None, None, 5)
        """
        rows = []
        if self.vocab_size is not None:
            embedding = self._embed(self.vocab_size, self.input_size)
            rows += heads.summary_rows(embedding, params.embed, (None, None, self.input_size))
        rows += heads.summary_rows(self.encoder, params.encoder, (None, None, self.encoder.output_size))
        rows += heads.summary_rows(self._head(self.num_tags), params.head, (None, None, self.num_tags))
        return tuple(rows)
