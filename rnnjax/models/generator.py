"""One-to-many: :class:`ConditionedGenerator`, a sequence from a feature vector."""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax import heads
from rnnjax._src import carries, checks, masks
from rnnjax._src.dtypes import Dtypes
from rnnjax.cells import DenseParams
from rnnjax.heads import Embedding, EmbeddingParams
from rnnjax.layers import as_cell
from rnnjax.models import base
from rnnjax.recurrence import unroll
from rnnjax.typing import Array, Carry, Params, PRNGKey


class GeneratorParams(NamedTuple):
    embed: EmbeddingParams  # table [v, E]
    bridge: DenseParams | None  # w [d, n], b [n]: features -> every carry array; None for condition="input"
    cell: Params  # the (stacked) cell's params; input size E (+ d when features are fed)
    head: DenseParams  # w [o, v], b [v]


class GeneratorCarry(NamedTuple):
    cell: Carry  # the cell's carry, arrays [h]
    features: Array  # [d] the condition, fed at every step for condition "input" or "both"


_CONDITIONS = ("init", "input", "both")


@dataclasses.dataclass(frozen=True)
class ConditionedGenerator(Dtypes):
    r"""One-to-many: a sequence generated from a feature vector (the image-captioning pattern).

    With ``condition="init"`` the features set the initial carry through a dense layer,
    every array of it (for an LSTM both ``h`` and ``c``; for a stacked cell every layer's):

    .. math:: [c_0^{(1)}; c_0^{(2)}; \dots] = \tanh(f W_b + b_b)

    With ``"input"`` they are concatenated to every input, ``x_t = [E[w_t]; f]``, and the carry
    starts as the cell's own initial carry; ``"both"`` does both. Then, as a language model,

    .. math:: (c_t, y_t) = \mathrm{cell}(c_{t-1}, x_t), \qquad \mathrm{logits}_t = y_t W + b

    Args:
      feature_size: ``d``.
      vocab_size: ``v``.
      embed_size: token embedding size ``E``.
      cell: a cell, or a list of cells (a :class:`~rnnjax.StackedCell`).
      condition: ``"init"``, ``"input"`` or ``"both"``.
      hoist: how the teacher-forced pass runs the cell (see :func:`rnnjax.unroll`); None:
        the backend's choice.
      dtype: computation dtype of the model's cells (e.g. ``jnp.bfloat16``); None: the cells' own.
      param_dtype: dtype of every param (cells, embeddings, dense layers); None: the cells' own,
        float32 for the rest. With either set, logits are at least float32.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> model = rj.models.ConditionedGenerator(6, 10, 4, rj.LSTMCell(8), condition="both")
        >>> params = model.init(jax.random.key(0))
        >>> model.apply(params, jnp.ones(6), jnp.array([1, 7, 3, 0]), length=3).shape
        (4, 10)

    References:
      Vinyals et al., "Show and tell: a neural image caption generator", CVPR 2015 (features as
      the first input); Karpathy & Fei-Fei, "Deep visual-semantic alignments for generating
      image descriptions", CVPR 2015 (features into the carry).
    """

    feature_size: int
    vocab_size: int
    embed_size: int
    cell: Any
    condition: str = "init"
    _: dataclasses.KW_ONLY
    hoist: bool | None = None

    def __post_init__(self):
        checks.positive_int(self.feature_size, "feature_size")
        checks.positive_int(self.vocab_size, "vocab_size")
        checks.positive_int(self.embed_size, "embed_size")
        object.__setattr__(self, "cell", as_cell(self.cell))
        self._pass_dtypes("cell")
        if self.condition not in _CONDITIONS:
            raise ValueError(f"condition: expected one of {_CONDITIONS}, got {self.condition!r}")

    @property
    def _embedding(self) -> Embedding:
        return self._embed(self.vocab_size, self.embed_size)

    @property
    def _feeds_input(self) -> bool:
        return self.condition in ("input", "both")

    @property
    def _sets_carry(self) -> bool:
        return self.condition in ("init", "both")

    def init(self, key: PRNGKey) -> GeneratorParams:
        """``GeneratorParams(embed, bridge, cell, head)``.

        Example:
            >>> import rnnjax as rj
            >>> model = ConditionedGenerator(6, 10, 4, rj.LSTMCell(8))
            >>> model.init(jax.random.key(0)).bridge.w.shape  # to h and c
            (6, 16)
        """
        k_embed, k_bridge, k_cell, k_head = jax.random.split(key, 4)
        input_size = self.embed_size + (self.feature_size if self._feeds_input else 0)
        cell = self.cell.init(k_cell, input_size)
        bridge = None
        if self._sets_carry:
            bridge = self._dense(carries.flat_size(self.cell.initial_carry(cell))).init(k_bridge, self.feature_size)
        head = self._head(self.vocab_size).init(k_head, self.cell.output_size)
        return GeneratorParams(self._embedding.init(k_embed), bridge, cell, head)

    def initial_carry(self, params: GeneratorParams, features: Array) -> GeneratorCarry:
        """The carry before the first token, from the features ``[d]``.

        Example:
            >>> import rnnjax as rj
            >>> model = ConditionedGenerator(6, 10, 4, rj.LSTMCell(8))
            >>> carry = model.initial_carry(model.init(jax.random.key(0)), jnp.ones(6))
            >>> carry.cell.h.shape, carry.features.shape
            ((8,), (6,))
        """
        features = base.vector(features, self.feature_size, "features", "d")
        template = self.cell.initial_carry(params.cell)
        cell_carry = carries.bridge(params.bridge, features, template) if self._sets_carry else template
        return GeneratorCarry(cell_carry, features)

    def _inputs(self, params: GeneratorParams, tokens: Array, features: Array) -> Array:
        xs = self._embedding.apply(params.embed, tokens)
        if not self._feeds_input:
            return xs
        features = jnp.broadcast_to(features.astype(xs.dtype), (*xs.shape[:-1], self.feature_size))
        return jnp.concatenate([xs, features], axis=-1)

    def apply(
        self,
        params: GeneratorParams,
        features: Array,
        tokens: Array,
        length=None,
        *,
        mask=None,
        key: PRNGKey | None = None,
    ) -> Array:
        """Next-token logits at every step, with teacher forcing.

        Args:
          params: from :meth:`init`.
          features: the condition ``[d]``.
          tokens: integer ids ``[t]`` (usually starting with a begin-of-sequence id).
          length: valid steps ``n`` (scalar). None: all ``t``.
          mask: ``[t]`` booleans, True at valid steps; masked steps keep the carry.
          key: PRNG key for the cell's own dropout and zoneout (training); None: none.

        Returns:
          ``logits: [t, v]``; zeros at steps ``>= length`` and where ``mask`` is False.

        Example:
            >>> import rnnjax as rj
            >>> model = ConditionedGenerator(6, 10, 4, rj.GRUCell(8), condition="input")
            >>> params = model.init(jax.random.key(0))
            >>> model.apply(params, jnp.ones(6), jnp.array([1, 7, 3])).shape
            (3, 10)
        """
        carry = self.initial_carry(params, features)
        tokens = checks.token_sequence(tokens, "tokens", self.vocab_size)
        length = checks.length(length, tokens.shape[0])
        mask = checks.step_mask(mask, tokens.shape[0])
        xs = self._inputs(params, tokens, carry.features)
        _, ys = unroll(self.cell, params.cell, xs, carry.cell, length=length, mask=mask, hoist=self.hoist, key=key)
        logits = self._head(self.vocab_size).apply(params.head, ys)
        return masks.zero_invalid(logits, masks.valid_steps(tokens.shape[0], length, mask))

    def step_fn(self, params: GeneratorParams, carry: GeneratorCarry, token: Array) -> tuple[GeneratorCarry, Array]:
        """One decoding step: feed ``token``, get the logits of the next one.

        Args:
          params: from :meth:`init`.
          carry: from :meth:`initial_carry` or the previous step.
          token: one integer token id (shape ``()``).

        Returns:
          ``(carry, logits [v])``.

        Example:
            >>> import rnnjax as rj
            >>> model = ConditionedGenerator(6, 10, 4, rj.LSTMCell(8))
            >>> params = model.init(jax.random.key(0))
            >>> carry = model.initial_carry(params, jnp.ones(6))
            >>> carry, logits = model.step_fn(params, carry, jnp.array(1))
            >>> logits.shape
            (10,)
        """
        token = checks.one_token(token, self.vocab_size)
        x = self._inputs(params, token, carry.features)
        cell_carry, y = self.cell.step(params.cell, carry.cell, x)
        return GeneratorCarry(cell_carry, carry.features), self._head(self.vocab_size).apply(params.head, y)

    def summary_rows(self, params: GeneratorParams) -> tuple[heads.SummaryRow, ...]:
        """Its rows in :func:`rnnjax.summary`: the embedding, the bridge (a ``Dense`` from the features to the
        flat carry, ``(None, n)``; for ``condition`` ``"init"`` and ``"both"``), one row per cell, the head.

        Example:
            >>> import rnnjax as rj
            >>> model = ConditionedGenerator(6, 10, 4, rj.LSTMCell(8))
            >>> for row in model.summary_rows(model.init(jax.random.key(0))):
            ...     print(row.name, row.type, row.output_shape)
            embedding Embedding (None, None, 4)
            dense Dense (None, 16)
            lstm LSTM (None, None, 8)
            dense Dense (None, None, 10)
        """
        rows = list(heads.summary_rows(self._embedding, params.embed, (None, None, self.embed_size)))
        if self._sets_carry:
            size = carries.flat_size(jax.eval_shape(self.cell.initial_carry, params.cell))
            rows += heads.summary_rows(self._dense(size), params.bridge, (None, size))
        rows += heads.summary_rows(self.cell, params.cell, (None, None, self.cell.output_size))
        rows += heads.summary_rows(self._head(self.vocab_size), params.head, (None, None, self.vocab_size))
        return tuple(rows)


# ----------------------------------------------------------------------------- encoder-decoder
