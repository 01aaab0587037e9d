"""Encoder-decoder: :class:`Seq2Seq`, with or without attention (:mod:`rnnjax.attention`)."""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rnnjax import heads
from rnnjax._src import carries, checks, masks
from rnnjax._src.dtypes import Dtypes
from rnnjax.attention import AttentionCarry, AttentionDecoder, AttentionDecoderParams
from rnnjax.heads import EmbeddingParams
from rnnjax.layers import as_cell
from rnnjax.models import base
from rnnjax.typing import Array, Params, PRNGKey


class Seq2SeqParams(NamedTuple):
    src_embed: EmbeddingParams  # table [src_vocab, E]
    encoder: Params  # the encoder's params (input size E)
    decoder: AttentionDecoderParams  # embed, bridge (final encoder carries -> decoder carry; None: as is), attention,
    #                                  cell, w_c (Luong-style attention), head: see rnnjax.attention.AttentionDecoder


Seq2SeqCarry = AttentionCarry  # the decoder's carry: its cell's, the last context, the memory (keys, values, mask)


@dataclasses.dataclass(frozen=True)
class Seq2Seq(Dtypes):
    r"""Encoder-decoder: read ``src``, then generate the target one token at a time.

    The encoder runs over the embedded source; its final carry (of each direction)
    initialises the decoder, as it is when it already has the decoder carry's shapes, else
    through a dense bridge ``tanh([\text{final carries}] W + b)`` split into every array of
    the decoder's carry (both ``h`` and ``c`` of an LSTM). Let ``k_1..k_s`` be the encoder
    outputs, ``m`` the source mask (``m_j = j < \mathrm{src\_len}``), ``e_t = E[w_t]`` the
    target input embedding and ``h_t`` the decoder's hidden vector (``h`` of its carry; the
    top cell's for a stacked cell).

    ``attention=None``: ``h_t = \mathrm{cell}(h_{t-1}, e_t)``, ``logits_t = h_t W_o + b_o``.

    ``attention="bahdanau"`` (additive; the context comes from the *previous* decoder state
    and is fed with the input):

    .. math::
        \mathrm{score}_{tj} &= v^\top \tanh(W_q h_{t-1} + W_k k_j) \\
        \alpha_t &= \mathrm{softmax}_j(\mathrm{score}_{tj} \text{ where } m_j, -\infty \text{ elsewhere}),
            \qquad c_t = \textstyle\sum_j \alpha_{tj} k_j \\
        h_t &= \mathrm{cell}(h_{t-1}, [e_t; c_t]), \qquad \mathrm{logits}_t = [h_t; c_t] W_o + b_o

    ``attention="luong"`` (multiplicative "general" score; the context comes from the
    *current* decoder state, and the attentional vector is fed to the next input, Luong's
    input feeding, with ``\tilde h_0 = 0``):

    .. math::
        h_t &= \mathrm{cell}(h_{t-1}, [e_t; \tilde h_{t-1}]) \\
        \mathrm{score}_{tj} &= h_t^\top W k_j, \qquad
        \alpha_t = \mathrm{softmax}_j(\text{masked score}), \qquad c_t = \textstyle\sum_j \alpha_{tj} k_j \\
        \tilde h_t &= \tanh([c_t; h_t] W_c), \qquad \mathrm{logits}_t = \tilde h_t W_o + b_o

    Padded source positions get the score ``finfo.min`` before the softmax and weight exactly
    0 after it; a source of length 0 gives all-zero weights and a zero context, never NaN.

    Args:
      src_vocab: source vocabulary size.
      tgt_vocab: target vocabulary size ``v``.
      embed_size: size ``E`` of both embeddings.
      encoder: a cell, or an ``RNN``, ``Bidirectional`` or ``Stack`` layer (the top layer's
        final carries initialise the decoder).
      decoder_cell: a cell, or a list of cells (a :class:`~rnnjax.StackedCell`).
      attention: None, ``"bahdanau"`` (:class:`~rnnjax.attention.BahdanauAttention`),
        ``"luong"`` (:class:`~rnnjax.attention.GeneralAttention`, attending after the step), or
        any module of :mod:`rnnjax.attention` (e.g. ``MultiHeadAttention(4, 64)``); a module
        that ``attends_before_step`` is used as Bahdanau's above, the others as Luong's.
      attention_size: ``a``: Bahdanau's hidden size for ``"bahdanau"``, the attentional vector
        size after the step; None: the decoder's output size.
      bridge: None: a bridge only where needed (bidirectional encoder, or carries of other
        shapes); True: always; False: never (the final carry must fit the decoder).
      dtype: computation dtype of the encoder's and decoder's cells (e.g. ``jnp.bfloat16``);
        None: the cells' own.
      param_dtype: dtype of every param (embeddings, cells, bridge, attention, output layer);
        None: the cells' own, float32 for the rest. With either set, logits are at least float32.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> encoder = rj.Bidirectional(rj.GRUCell(8), rj.GRUCell(8))
        >>> model = rj.models.Seq2Seq(12, 10, 4, encoder, rj.LSTMCell(8), attention="luong")
        >>> params = model.init(jax.random.key(0))
        >>> src, tgt_in = jnp.array([3, 4, 5, 0]), jnp.array([1, 5, 4, 3])
        >>> logits, weights = model.apply(params, src, 3, tgt_in, return_attention=True)
        >>> logits.shape, weights.shape, float(weights[:, 3].max())  # no weight on the padding
        ((4, 10), (4, 4), 0.0)

    References:
      Sutskever et al., "Sequence to sequence learning with neural networks", NeurIPS 2014;
      Bahdanau et al., "Neural machine translation by jointly learning to align and
      translate", ICLR 2015; Luong et al., "Effective approaches to attention-based neural
      machine translation", EMNLP 2015.
    """

    src_vocab: int
    tgt_vocab: int
    embed_size: int
    encoder: Any
    decoder_cell: Any
    attention: Any = None
    _: dataclasses.KW_ONLY
    attention_size: int | None = None
    bridge: bool | None = None

    def __post_init__(self):
        checks.positive_int(self.src_vocab, "src_vocab")
        object.__setattr__(self, "encoder", base.check_encoder(self.encoder))
        object.__setattr__(self, "decoder_cell", as_cell(self.decoder_cell, "decoder_cell"))
        self._pass_dtypes("encoder")
        self._pass_dtypes("decoder_cell")
        if self.bridge not in (None, True, False):
            raise ValueError(f"bridge: expected None, True or False, got {self.bridge!r}")
        # the decoder checks tgt_vocab, embed_size, attention and attention_size
        object.__setattr__(self, "attention_size", self.decoder.attention_size)

    @property
    def decoder(self) -> AttentionDecoder:
        """The decoder: :class:`rnnjax.attention.AttentionDecoder` over the encoder's outputs."""
        return AttentionDecoder(
            self.tgt_vocab,
            self.embed_size,
            self.decoder_cell,
            self.attention,
            self.attention_size,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    def init(self, key: PRNGKey) -> Seq2SeqParams:
        """``Seq2SeqParams(src_embed, encoder, decoder)``; the decoder's params are
        :class:`~rnnjax.attention.AttentionDecoderParams`.

        Example:
            >>> import rnnjax as rj
            >>> model = Seq2Seq(12, 10, 4, rj.GRUCell(8), rj.GRUCell(8), attention="bahdanau")
            >>> params = model.init(jax.random.key(0))
            >>> params.decoder.bridge is None, params.decoder.attention.w_k.shape, params.decoder.head.w.shape
            (True, (8, 8), (16, 10))
        """
        k_src, k_encoder, k_decoder = jax.random.split(key, 3)
        encoder = self.encoder.init(k_encoder, self.embed_size)
        decoder, memory_size = self.decoder, self.encoder.output_size
        cell_input = self.embed_size + decoder.context_size(memory_size)
        template = jax.eval_shape(
            lambda: self.decoder_cell.initial_carry(self.decoder_cell.init(jax.random.key(0), cell_input))
        )
        finals = base.final_carry_templates(self.encoder, encoder)
        fits = len(finals) == 1 and base.same_shapes(finals[0], template)
        if self.bridge is False and not fits:
            raise ValueError(
                f"bridge: False needs the encoder's final carry to have the decoder's carry shapes "
                f"{jax.tree_util.tree_map(np.shape, template)}, got "
                f"{jax.tree_util.tree_map(np.shape, finals)} (use bridge=None or True)"
            )
        bridged = self.bridge or (self.bridge is None and not fits)
        bridge_size = sum(carries.flat_size(f) for f in finals) if bridged else None
        return Seq2SeqParams(
            src_embed=self._embed(self.src_vocab, self.embed_size).init(k_src),
            encoder=encoder,
            decoder=decoder.init(k_decoder, memory_size, bridge_size),
        )

    def encode(self, params: Seq2SeqParams, src: Array, src_len=None, *, key: PRNGKey | None = None) -> Seq2SeqCarry:
        """Run the encoder; the result is the decoder's initial carry.

        Args:
          params: from :meth:`init`.
          src: source token ids ``[s]``.
          src_len: valid source steps (scalar); None: all ``s``.
          key: PRNG key for the encoder's dropout (a ``Stack`` with ``dropout``); None: none.

        Returns:
          A :class:`Seq2SeqCarry` (decoder cell carry, context, keys ``[s, .]``, values ``[s, e]``,
          mask ``[s]``), to pass to :meth:`step_fn` or to :mod:`rnnjax.decode`.

        Example:
            >>> import rnnjax as rj
            >>> model = Seq2Seq(12, 10, 4, rj.GRUCell(8), rj.GRUCell(8), attention="luong")
            >>> params = model.init(jax.random.key(0))
            >>> carry = model.encode(params, jnp.array([3, 4, 5, 0, 0]), 3)
            >>> carry.values.shape, carry.keys.shape, carry.mask.tolist()
            ((5, 8), (5, 8), [True, True, True, False, False])
        """
        src = checks.token_sequence(src, "src", self.src_vocab, "s")
        base.nonempty(src, "src")
        src_len = checks.length(src_len, src.shape[0], "src_len")
        xs = self._embed(self.src_vocab, self.embed_size).apply(params.src_embed, src)
        values, finals = base.run_encoder(self.encoder, params.encoder, xs, src_len, key)
        decoder = self.decoder
        if params.decoder.bridge is None:
            cell_carry = finals[0].carry
        else:
            cell_carry = decoder.bridge(params.decoder, jnp.concatenate([carries.flatten(f.carry) for f in finals], -1))
        return decoder.start(params.decoder, values, masks.valid_mask(src_len, src.shape[0]), cell_carry)

    def apply(
        self,
        params: Seq2SeqParams,
        src: Array,
        src_len,
        tgt_in: Array,
        tgt_len=None,
        *,
        key: PRNGKey | None = None,
        return_attention: bool = False,
    ) -> Array | tuple[Array, Array]:
        """Target logits with teacher forcing: the decoder reads ``tgt_in`` (usually the target
        shifted right behind a begin-of-sequence id) and predicts the target.

        Args:
          params: from :meth:`init`.
          src: source ids ``[s]``.
          src_len: valid source steps (scalar); None: all ``s``.
          tgt_in: decoder input ids ``[t]``.
          tgt_len: valid target steps (scalar); None: all ``t``.
          key: PRNG key for the encoder's dropout; None: none.
          return_attention: also return the attention weights (for alignment plots).

        Returns:
          ``logits: [t, v]``, zeros at steps ``>= tgt_len``; with ``return_attention``,
          ``(logits, weights [t, s])``, each row summing to 1 over the valid source steps and 0
          on the padding (rows ``>= tgt_len`` are zeros).

        Example:
            >>> import rnnjax as rj
            >>> model = Seq2Seq(12, 10, 4, rj.GRUCell(8), rj.GRUCell(8), attention="bahdanau")
            >>> params = model.init(jax.random.key(0))
            >>> logits, weights = model.apply(params, jnp.array([3, 4, 5]), 2, jnp.array([1, 5]), return_attention=True)
            >>> logits.shape, weights.sum(-1).round(4).tolist(), float(weights[:, 2].max())
            ((2, 10), [1.0, 1.0], 0.0)
        """
        if return_attention and self.attention is None:
            raise ValueError("return_attention: this Seq2Seq has attention=None, so there are no weights")
        tgt_in = checks.token_sequence(tgt_in, "tgt_in", self.tgt_vocab)
        tgt_len = checks.length(tgt_len, tgt_in.shape[0], "tgt_len")
        carry = self.encode(params, src, src_len, key=key)
        decoder = self.decoder
        xs = decoder.embed(params.decoder, tgt_in)

        def body(carry, x):
            carry, logits, weights = decoder.step_embedded(params.decoder, carry, x)
            return carry, (logits, weights)

        _, (logits, weights) = lax.scan(body, carry, xs)
        logits = masks.zero_past(logits, tgt_len)
        if return_attention:
            return logits, masks.zero_past(weights, tgt_len)
        return logits

    def step_fn(self, params: Seq2SeqParams, carry: Seq2SeqCarry, token: Array) -> tuple[Seq2SeqCarry, Array]:
        """One decoding step: feed ``token``, get the logits of the next one.

        Args:
          params: from :meth:`init`.
          carry: from :meth:`encode` or the previous step.
          token: one integer target id (shape ``()``; vmap for a batch or a beam).

        Returns:
          ``(carry, logits [v])``.

        Example:
            >>> import rnnjax as rj
            >>> model = Seq2Seq(12, 10, 4, rj.GRUCell(8), rj.GRUCell(8), attention="luong")
            >>> params = model.init(jax.random.key(0))
            >>> carry = model.encode(params, jnp.array([3, 4, 5]), 3)
            >>> carry, logits = model.step_fn(params, carry, jnp.array(1))
            >>> logits.shape, carry.context.shape
            ((10,), (8,))
        """
        carry, logits, _ = self.step_with_attention(params, carry, token)
        return carry, logits

    def step_with_attention(
        self, params: Seq2SeqParams, carry: Seq2SeqCarry, token: Array
    ) -> tuple[Seq2SeqCarry, Array, Array]:
        """:meth:`step_fn` that also returns the step's attention weights (zeros without attention).

        Returns:
          ``(carry, logits [v], weights [s])``.

        Example:
            >>> import rnnjax as rj
            >>> model = Seq2Seq(12, 10, 4, rj.GRUCell(8), rj.GRUCell(8), attention="bahdanau")
            >>> params = model.init(jax.random.key(0))
            >>> carry = model.encode(params, jnp.array([3, 4, 5, 0]), 3)
            >>> _, _, weights = model.step_with_attention(params, carry, jnp.array(1))
            >>> round(float(weights.sum()), 4), float(weights[3])
            (1.0, 0.0)
        """
        token = checks.one_token(token, self.tgt_vocab)
        decoder = self.decoder
        return decoder.step_embedded(params.decoder, carry, decoder.embed(params.decoder, token))

    def summary_rows(self, params: Seq2SeqParams) -> tuple[heads.SummaryRow, ...]:
        """Its rows in :func:`rnnjax.summary`, in the order of the params: the source embedding, the
        encoder's layers, then the decoder's: its embedding, the bridge (a ``Dense`` from the final carries
        to the flat decoder carry, ``(None, n)``, when there is one), the attention module (its context at
        every step), one row per cell, ``W_c`` (a ``Dense``: the attentional vector, attention after the
        step) and the output layer.

        Example:
            >>> import rnnjax as rj
            >>> model = Seq2Seq(12, 10, 4, rj.GRUCell(8), rj.GRUCell(8), attention="luong")
            >>> for row in model.summary_rows(model.init(jax.random.key(0))):
            ...     print(row.name, row.type, row.output_shape)
            embedding Embedding (None, None, 4)
            gru GRU (None, None, 8)
            embedding Embedding (None, None, 4)
            general_attention GeneralAttention (None, None, 8)
            gru GRU (None, None, 8)
            dense Dense (None, None, 8)
            dense Dense (None, None, 10)
        """
        decoder, p = self.decoder, params.decoder
        e, size, v = self.encoder.output_size, self.embed_size, self.tgt_vocab
        rows = list(heads.summary_rows(self._embed(self.src_vocab, size), params.src_embed, (None, None, size)))
        rows += heads.summary_rows(self.encoder, params.encoder, (None, None, e))
        rows += heads.summary_rows(self._embed(v, size), p.embed, (None, None, size))
        if p.bridge is not None:
            n = carries.flat_size(jax.eval_shape(decoder.cell.initial_carry, p.cell))
            rows += heads.summary_rows(self._dense(n), p.bridge, (None, n))
        if decoder.attention is not None:
            context = decoder.attention.context_size(e)
            rows += heads.summary_rows(decoder.attention, p.attention, (None, None, context))
        rows += heads.summary_rows(decoder.cell, p.cell, (None, None, decoder.cell.output_size))
        if p.w_c is not None:
            rows.append(heads.SummaryRow("dense", "Dense", (None, None, decoder.attention_size), p.w_c))
        rows += heads.summary_rows(self._head(v), p.head, (None, None, v))
        return tuple(rows)
