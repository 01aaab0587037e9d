"""Many-to-many over tokens: :class:`LanguageModel`, next-token logits, and its decoding step."""

import dataclasses
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax import heads
from rnnjax._src import checks, masks
from rnnjax._src.dropout import dropout
from rnnjax._src.dtypes import Dtypes
from rnnjax.cells import DenseParams
from rnnjax.heads import Embedding, EmbeddingParams
from rnnjax.layers import as_cell
from rnnjax.recurrence import unroll
from rnnjax.typing import Array, Carry, Params, PRNGKey


class LanguageModelParams(NamedTuple):
    embed: EmbeddingParams  # table [v, E]
    cell: Params  # the (stacked) cell's params
    head: DenseParams | None  # w [o, v], b [v]; None with tied weights
    bias: Array | None  # [v] the output bias with tied weights; None without


@dataclasses.dataclass(frozen=True)
class LanguageModel(Dtypes):
    r"""Many-to-many language model: predict token ``t+1`` from tokens ``0..t``.

    .. math::
        x_t = E[w_t], \qquad (c_t, y_t) = \mathrm{cell}(c_{t-1}, x_t), \qquad
        \mathrm{logits}_t = y_t W + b \quad\text{or, tied,}\quad y_t E^\top + b

    ``apply`` runs the cell over the whole sequence (teacher forcing); ``step_fn`` runs one
    step, for :mod:`rnnjax.decode`; the two give the same logits.

    Args:
      vocab_size: ``v``.
      embed_size: embedding size ``E``.
      cell: a cell, or a list of cells (made into a :class:`~rnnjax.StackedCell`, a deep RNN
        that can step).
      tie_weights: share the embedding table with the output layer (Press & Wolf 2017);
        needs the cell's output size to equal ``embed_size``.
      dropout: drop probability on the embeddings and on the cell's outputs, applied in
        ``apply`` when a ``key`` is given (Zaremba et al. 2014 put it between layers).
      hoist: how the teacher-forced pass runs the cell (see :func:`rnnjax.unroll`); None:
        the backend's choice. ``step_fn`` steps one token at a time either way.
      dtype: computation dtype of the model's cells (e.g. ``jnp.bfloat16``); None: the cells' own.
      param_dtype: dtype of every param (cells, embeddings, dense layers); None: the cells' own,
        float32 for the rest. With either set, logits are at least float32.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> model = rj.models.LanguageModel(10, 8, [rj.GRUCell(8), rj.GRUCell(8)], tie_weights=True)
        >>> params = model.init(jax.random.key(0))
        >>> tokens = jnp.array([[1, 5, 7, 2], [1, 9, 0, 0]])
        >>> jax.vmap(model.apply, (None, 0, 0))(params, tokens, jnp.array([4, 2])).shape
        (2, 4, 10)

    References:
      Mikolov et al., "Recurrent neural network based language model", Interspeech 2010;
      Press & Wolf, "Using the output embedding to improve language models", EACL 2017.
    """

    vocab_size: int
    embed_size: int
    cell: Any
    tie_weights: bool = False
    _: dataclasses.KW_ONLY
    dropout: float = 0.0
    hoist: bool | None = None

    def __post_init__(self):
        checks.positive_int(self.vocab_size, "vocab_size")
        checks.positive_int(self.embed_size, "embed_size")
        object.__setattr__(self, "cell", as_cell(self.cell))
        self._pass_dtypes("cell")
        if self.tie_weights and self.cell.output_size != self.embed_size:
            raise ValueError(
                f"tie_weights: needs the cell's output size ({self.cell.output_size}) to equal "
                f"embed_size ({self.embed_size})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {self.dropout}")

    @property
    def _embedding(self) -> Embedding:
        return self._embed(self.vocab_size, self.embed_size)

    def init(self, key: PRNGKey) -> LanguageModelParams:
        """``LanguageModelParams(embed, cell, head, bias)``.

        Example:
            >>> import rnnjax as rj
            >>> params = LanguageModel(10, 4, rj.GRUCell(8)).init(jax.random.key(0))
            >>> params.embed.table.shape, params.head.w.shape, params.bias
            ((10, 4), (8, 10), None)
        """
        k_embed, k_cell, k_head = jax.random.split(key, 3)
        embed = self._embedding.init(k_embed)
        cell = self.cell.init(k_cell, self.embed_size)
        if self.tie_weights:
            return LanguageModelParams(embed, cell, None, jnp.zeros((self.vocab_size,), embed.table.dtype))
        head = self._head(self.vocab_size).init(k_head, self.cell.output_size)
        return LanguageModelParams(embed, cell, head, None)

    def _check_params(self, params: LanguageModelParams) -> None:
        """``params`` must have this model's vocabulary and embedding sizes (at trace time, from shapes).

        Another model's params would otherwise run and give other token ids, e.g. ids ``>= vocab_size``.
        """
        if not isinstance(params, LanguageModelParams):
            got = type(params).__name__
            raise TypeError(f"params: expected LanguageModelParams (from LanguageModel.init), got {got}")
        v, model = self.vocab_size, f"LanguageModel(vocab_size={self.vocab_size}, embed_size={self.embed_size})"
        expected = {"embed.table": (params.embed.table, (v, self.embed_size))}
        if self.tie_weights:
            expected["bias"] = (params.bias, (v,))
        elif params.head is None:
            raise ValueError(f"params.head: expected the output layer of {model}, got None (tied params?)")
        else:
            expected["head.w"] = (params.head.w, (self.cell.output_size, v))
            expected["head.b"] = (params.head.b, (v,))
        for name, (array, shape) in expected.items():
            if np.shape(array) != shape:
                got = f"got {np.shape(array)} (another model's params?)"
                raise ValueError(f"params.{name}: expected shape {shape} for {model}, {got}")

    def _logits(self, params: LanguageModelParams, ys: Array) -> Array:
        if self.tie_weights:
            logits = self._embedding.attend(params.embed, ys)
            return logits + params.bias.astype(logits.dtype)
        return self._head(self.vocab_size).apply(params.head, ys)

    def apply(
        self, params: LanguageModelParams, tokens: Array, length=None, key: PRNGKey | None = None, *, mask=None
    ) -> Array:
        """Next-token logits at every step, with teacher forcing.

        Args:
          params: from :meth:`init`.
          tokens: integer ids ``[t]`` (the inputs; the targets are ``tokens`` shifted left).
          length: valid steps ``n`` (scalar). None: all ``t``.
          key: PRNG key for dropout (the model's, and the cell's own dropout and zoneout); None: no dropout.
          mask: ``[t]`` booleans, True at valid steps (e.g. left padding); masked steps keep the carry.

        Returns:
          ``logits: [t, v]``, ``logits[i]`` predicting token ``i + 1``; zeros at steps ``>= length``
          and where ``mask`` is False.

        Example:
            >>> import rnnjax as rj
            >>> model = LanguageModel(10, 4, rj.GRUCell(8))
            >>> params = model.init(jax.random.key(0))
            >>> model.apply(params, jnp.array([1, 4, 4, 2])).shape
            (4, 10)
        """
        self._check_params(params)
        tokens = checks.token_sequence(tokens, "tokens", self.vocab_size)
        length = checks.length(length, tokens.shape[0])
        mask = checks.step_mask(mask, tokens.shape[0])
        k_in, k_out = (None, None) if key is None else jax.random.split(key)
        xs = dropout(self._embedding.apply(params.embed, tokens), self.dropout, k_in)
        k_cell = None if key is None else jax.random.fold_in(key, 2)  # the cell's dropout/zoneout, if any
        _, ys = unroll(self.cell, params.cell, xs, length=length, mask=mask, hoist=self.hoist, key=k_cell)
        ys = dropout(ys, self.dropout, k_out)
        return masks.zero_invalid(self._logits(params, ys), masks.valid_steps(tokens.shape[0], length, mask))

    def apply_with_carry(
        self, params: LanguageModelParams, tokens: Array, carry: Carry | None = None
    ) -> tuple[Carry, Array]:
        """Teacher-forced logits from a given carry, and the carry after the last token (as the
        layers' ``apply_with_carry``).

        For long texts cut into windows (stateful evaluation or truncated BPTT): the carry
        returned for one window starts the next.

        Args:
          params: from :meth:`init`.
          tokens: integer ids ``[t]``.
          carry: the carry before ``tokens[0]`` (None: :meth:`initial_carry`).

        Returns:
          ``(carry, logits [t, v])``.

        Example:
            >>> import rnnjax as rj
            >>> model = LanguageModel(50, 8, rj.GRUCell(16))
            >>> params = model.init(jax.random.key(0))
            >>> carry, logits = model.apply_with_carry(params, jnp.array([1, 4, 4]))
            >>> carry, more = model.apply_with_carry(params, jnp.array([2, 9]), carry)
            >>> logits.shape, more.shape
            ((3, 50), (2, 50))
        """
        self._check_params(params)
        tokens = checks.token_sequence(tokens, "tokens", self.vocab_size)
        carry, ys = unroll(self.cell, params.cell, self._embedding.apply(params.embed, tokens), carry, hoist=self.hoist)
        return carry, self._logits(params, ys)

    def unroll(self, params: LanguageModelParams, tokens: Array, carry: Carry | None = None) -> tuple[Carry, Array]:
        """Deprecated name of :meth:`apply_with_carry` (``unroll`` is rnnjax's scan function and its
        keyword; the layers call this ``apply_with_carry``)."""
        warnings.warn(
            "LanguageModel.unroll is deprecated; use LanguageModel.apply_with_carry (same arguments)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.apply_with_carry(params, tokens, carry)

    def initial_carry(self, params: LanguageModelParams) -> Carry:
        """The cell's carry before the first token (zeros, or its learned ``carry0``).

        Example:
            >>> import rnnjax as rj
            >>> model = LanguageModel(10, 4, [rj.LSTMCell(8), rj.GRUCell(8)])
            >>> carry = model.initial_carry(model.init(jax.random.key(0)))
            >>> carry[0].c.shape, carry[1].h.shape
            ((8,), (8,))
        """
        return self.cell.initial_carry(params.cell)

    def step_fn(self, params: LanguageModelParams, carry: Carry, token: Array) -> tuple[Carry, Array]:
        """One decoding step: feed ``token``, get the logits of the next one.

        Args:
          params: from :meth:`init`.
          carry: the cell's carry (from :meth:`initial_carry` or the previous step).
          token: one integer token id (shape ``()``; vmap for a batch or a beam).

        Returns:
          ``(carry, logits [v])``.

        Example:
            >>> import rnnjax as rj
            >>> model = LanguageModel(10, 4, rj.GRUCell(8))
            >>> params = model.init(jax.random.key(0))
            >>> carry, logits = model.step_fn(params, model.initial_carry(params), jnp.array(1))
            >>> logits.shape
            (10,)
        """
        self._check_params(params)
        token = checks.one_token(token, self.vocab_size)
        carry, y = self.cell.step(params.cell, carry, self._embedding.apply(params.embed, token))
        return carry, self._logits(params, y)

    def summary_rows(self, params: LanguageModelParams) -> tuple[heads.SummaryRow, ...]:
        """Its rows in :func:`rnnjax.summary`: the embedding, a ``Dropout`` (when ``dropout > 0``), one row per
        cell, a ``Dropout``, and the output layer: a ``Dense``, or with ``tie_weights`` a ``TiedDense`` whose
        only params are its bias (its weights are the embedding table's, counted once).

        Example:
            >>> import rnnjax as rj
            >>> model = LanguageModel(10, 8, [rj.LSTMCell(16), rj.GRUCell(8)], tie_weights=True)
            >>> for row in model.summary_rows(model.init(jax.random.key(0))):
            ...     print(row.name, row.type, row.output_shape, rj.count_params(row.params))
            embedding Embedding (None, None, 8) 80
            lstm LSTM (None, None, 16) 1600
            gru GRU (None, None, 8) 624
            tied_dense TiedDense (None, None, 10) 10
        """
        v, o = self.vocab_size, self.cell.output_size
        rows = list(heads.summary_rows(self._embedding, params.embed, (None, None, self.embed_size)))
        if self.dropout > 0:
            rows.append(heads.SummaryRow("dropout", "Dropout", (None, None, self.embed_size), None))
        rows += heads.summary_rows(self.cell, params.cell, (None, None, o))
        if self.dropout > 0:
            rows.append(heads.SummaryRow("dropout", "Dropout", (None, None, o), None))
        if self.tie_weights:
            rows.append(heads.SummaryRow("tied_dense", "TiedDense", (None, None, v), params.bias))
        else:
            rows += heads.summary_rows(self._head(v), params.head, (None, None, v))
        return tuple(rows)


# ----------------------------------------------------------------------------- one-to-many
