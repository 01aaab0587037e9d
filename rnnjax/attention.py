r"""Attention over a memory of encoder outputs, and the attention decoder that Seq2Seq and Captioner share.

An attention module is a frozen dataclass of hyper-parameters with pure methods:

=================================================  ==============================================
``init(key, query_size, value_size) -> params``    its weights
``precompute(params, values) -> keys``             once per memory ``values [s, e]``
``attend(params, query, keys, values, mask)``      ``-> (context [context_size], weights [s])``
``context_size(value_size) -> int``                the size of the context vector
=================================================  ==============================================

Every module masks with :func:`masked_softmax` (in at least float32): padded positions (``mask``
False) get weight exactly 0, and a memory with no valid position gives all-zero weights and a
zero context, never NaN. The modules with weights take a ``param_dtype`` (float32 by default;
16-bit weights are drawn in float32, then cast) and compute in the dtype of the values. The
scores (Luong et al. 2015's names):

- :class:`DotAttention`: ``score_j = q . v_j`` (query and values of one size).
- :class:`GeneralAttention`: ``score_j = q^T W v_j`` (Luong's "general"; keys ``V W^T``).
- :class:`BahdanauAttention`: ``score_j = w^T tanh(W_q q + W_k v_j)`` (additive; Luong's "concat").
- :class:`MultiHeadAttention`: ``n`` heads of scaled dot products of projections, ``W_o`` on their
  concatenated contexts (Vaswani et al. 2017, for one query).

:class:`AttentionDecoder` is the decoder of the encoder-decoder models: an embedding, a cell, an
attention module and an output layer, stepping one token at a time over a memory. With
``attends_before_step`` (Bahdanau) the previous hidden state attends and the context is fed
with the input and to the output layer; otherwise (Luong) the new hidden state attends and the
attentional vector ``\tilde h = tanh([c; h] W_c)`` goes to the output layer and to the next
input (input feeding).

Shape letters as in :mod:`rnnjax.typing`: s memory positions, e value size, q query size, a attention
size, E embedding, v vocabulary.
"""

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._src import checks, numerics
from rnnjax._src.carries import bridge, flat_size, hidden
from rnnjax._src.dtypes import Dtypes, with_dtypes
from rnnjax.cells import DenseParams
from rnnjax.heads import EmbeddingParams
from rnnjax.layers import as_cell
from rnnjax.typing import Array, Attention, Carry, NoisyCell, Params, PRNGKey

GLOROT = jax.nn.initializers.glorot_uniform()


def masked_softmax(scores: Array, mask: Array) -> Array:
    """Softmax over the valid positions; exactly 0 on the masked ones (all masked: all 0, never NaN).

    Example:
        >>> import jax.numpy as jnp
        >>> masked_softmax(jnp.array([1.0, 1.0, 5.0]), jnp.array([True, True, False])).tolist()
        [0.5, 0.5, 0.0]
    """
    scores = scores.astype(numerics.accumulation_dtype(scores.dtype))  # 16-bit scores: softmax in float32
    scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    weights = jax.nn.softmax(scores, axis=-1)
    return jnp.where(mask, weights, jnp.zeros_like(weights))


def _context(scores: Array, values: Array, mask: Array) -> tuple[Array, Array]:
    weights = masked_softmax(scores, mask)
    return weights.astype(values.dtype) @ values, weights


def _cast(w: Array, like: Array) -> Array:
    return w.astype(like.dtype)


def _glorot(key: PRNGKey, shape, dtype) -> Array:
    return numerics.initialized(GLOROT, key, shape, dtype)


def _param_dtype(module) -> None:
    """Canonical ``param_dtype`` (so equal modules hash equal), a float dtype."""
    object.__setattr__(module, "param_dtype", jnp.dtype(module.param_dtype))
    if not jnp.issubdtype(module.param_dtype, jnp.floating):
        raise TypeError(f"param_dtype: expected a float dtype, got {module.param_dtype}")


@dataclasses.dataclass(frozen=True)
class DotAttention:
    """``score_j = q . v_j``: no weights; the query and the values must have one size.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> att = DotAttention()
        >>> values, mask = jnp.eye(3), jnp.array([True, True, False])
        >>> context, weights = att.attend(None, jnp.array([0.0, 9.0, 9.0]), values, values, mask)
        >>> context.shape, [round(float(w), 3) for w in weights]
        ((3,), [0.0, 1.0, 0.0])
    """

    attends_before_step: ClassVar[bool] = False

    def init(self, key: PRNGKey, query_size: int, value_size: int) -> None:
        if query_size != value_size:
            raise ValueError(
                f"attention: DotAttention needs the query size ({query_size}) to equal the value size "
                f"({value_size}); use GeneralAttention for different sizes"
            )
        return None

    def context_size(self, value_size: int) -> int:
        return value_size

    def precompute(self, params: None, values: Array) -> Array:
        return values

    def attend(self, params: None, query: Array, keys: Array, values: Array, mask: Array) -> tuple[Array, Array]:
        return _context(keys @ query.astype(keys.dtype), values, mask)


class GeneralParams(NamedTuple):
    w: Array  # [q, e]  score = q W v^T


@dataclasses.dataclass(frozen=True)
class GeneralAttention:
    """``score_j = q^T W v_j`` (Luong's "general"); the keys ``V W^T [s, q]`` are computed once.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> att = GeneralAttention()
        >>> params = att.init(jax.random.key(0), 4, 6)
        >>> values = jnp.ones((5, 6))
        >>> keys = att.precompute(params, values)
        >>> context, weights = att.attend(params, jnp.ones(4), keys, values, jnp.ones(5, bool))
        >>> keys.shape, context.shape, [round(float(w), 4) for w in weights]
        ((5, 4), (6,), [0.2, 0.2, 0.2, 0.2, 0.2])
    """

    _: dataclasses.KW_ONLY
    param_dtype: Any = jnp.float32
    attends_before_step: ClassVar[bool] = False

    def __post_init__(self):
        _param_dtype(self)

    def init(self, key: PRNGKey, query_size: int, value_size: int) -> GeneralParams:
        return GeneralParams(_glorot(key, (query_size, value_size), self.param_dtype))

    def context_size(self, value_size: int) -> int:
        return value_size

    def precompute(self, params: GeneralParams, values: Array) -> Array:
        return values @ _cast(params.w, values).T

    def attend(self, params, query: Array, keys: Array, values: Array, mask: Array) -> tuple[Array, Array]:
        return _context(keys @ query.astype(keys.dtype), values, mask)


class BahdanauParams(NamedTuple):
    w_q: Array  # [q, a]  query (previous decoder hidden) projection
    w_k: Array  # [e, a]  key (encoder output) projection
    v: Array  # [a]      score vector


@dataclasses.dataclass(frozen=True)
class BahdanauAttention:
    """Additive attention, ``score_j = w^T tanh(W_q q + W_k v_j)``, of hidden size ``size``.

    The keys ``V W_k [s, a]`` are computed once per memory. In :class:`AttentionDecoder` the
    previous hidden state is the query (Bahdanau et al. 2015).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> att = BahdanauAttention(8)
        >>> params = att.init(jax.random.key(0), 4, 6)
        >>> values = jnp.ones((5, 6))
        >>> context, weights = att.attend(params, jnp.ones(4), att.precompute(params, values), values,
        ...                               jnp.array([True, True, True, False, False]))
        >>> context.shape, [round(float(w), 4) for w in weights]
        ((6,), [0.3333, 0.3333, 0.3333, 0.0, 0.0])
    """

    size: int
    _: dataclasses.KW_ONLY
    param_dtype: Any = jnp.float32
    attends_before_step: ClassVar[bool] = True

    def __post_init__(self):
        checks.positive_int(self.size, "size")
        _param_dtype(self)

    def init(self, key: PRNGKey, query_size: int, value_size: int) -> BahdanauParams:
        k_q, k_k, k_v = jax.random.split(key, 3)
        bound = 1.0 / math.sqrt(self.size)
        v = jax.random.uniform(k_v, (self.size,), jnp.float32, -bound, bound).astype(self.param_dtype)
        w_q = _glorot(k_q, (query_size, self.size), self.param_dtype)
        return BahdanauParams(w_q, _glorot(k_k, (value_size, self.size), self.param_dtype), v)

    def context_size(self, value_size: int) -> int:
        return value_size

    def precompute(self, params: BahdanauParams, values: Array) -> Array:
        return values @ _cast(params.w_k, values)

    def attend(self, params: BahdanauParams, query, keys, values, mask) -> tuple[Array, Array]:
        query = query.astype(keys.dtype)
        scores = jnp.tanh(keys + query @ _cast(params.w_q, query)) @ _cast(params.v, query)
        return _context(scores, values, mask)


class MultiHeadParams(NamedTuple):
    w_q: Array  # [q, d]
    w_k: Array  # [e, d]
    w_v: Array  # [e, d]
    w_o: Array  # [d, d]


@dataclasses.dataclass(frozen=True)
class MultiHeadAttention:
    r"""``num_heads`` heads of scaled dot-product attention over projections of size ``size / num_heads``.

    Head ``i`` attends with ``softmax(q W_q^i (V W_k^i)^T / \sqrt{d_i})`` over ``V W_v^i``; the
    heads' contexts are concatenated and projected by ``W_o`` (Vaswani et al. 2017), for one
    query. The projected keys and values ``[s, 2d]`` are computed once per memory; the weights
    returned are the heads' mean.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> att = MultiHeadAttention(num_heads=2, size=8)
        >>> params = att.init(jax.random.key(0), 4, 6)
        >>> values = jnp.ones((5, 6))
        >>> context, weights = att.attend(params, jnp.ones(4), att.precompute(params, values), values,
        ...                               jnp.ones(5, bool))
        >>> context.shape, weights.shape
        ((8,), (5,))
    """

    num_heads: int
    size: int
    _: dataclasses.KW_ONLY
    param_dtype: Any = jnp.float32
    attends_before_step: ClassVar[bool] = False

    def __post_init__(self):
        checks.positive_int(self.num_heads, "num_heads")
        checks.positive_int(self.size, "size")
        if self.size % self.num_heads:
            raise ValueError(f"size: expected a multiple of num_heads = {self.num_heads}, got {self.size}")
        _param_dtype(self)

    def init(self, key: PRNGKey, query_size: int, value_size: int) -> MultiHeadParams:
        k_q, k_k, k_v, k_o = jax.random.split(key, 4)
        d, dtype = self.size, self.param_dtype
        return MultiHeadParams(
            _glorot(k_q, (query_size, d), dtype),
            _glorot(k_k, (value_size, d), dtype),
            _glorot(k_v, (value_size, d), dtype),
            _glorot(k_o, (d, d), dtype),
        )

    def context_size(self, value_size: int) -> int:
        return self.size

    def precompute(self, params: MultiHeadParams, values: Array) -> Array:
        return jnp.concatenate([values @ _cast(params.w_k, values), values @ _cast(params.w_v, values)], -1)

    def attend(self, params: MultiHeadParams, query, keys, values, mask) -> tuple[Array, Array]:
        n, d = self.num_heads, self.size // self.num_heads
        k, v = jnp.split(keys, 2, axis=-1)  # [s, n d] each
        q = (query.astype(keys.dtype) @ _cast(params.w_q, keys)).reshape(n, d)
        scores = jnp.einsum("nd,snd->ns", q, k.reshape(-1, n, d)) / math.sqrt(d)
        weights = masked_softmax(scores, mask[None])
        heads = jnp.einsum("ns,snd->nd", weights.astype(v.dtype), v.reshape(-1, n, d))
        return heads.reshape(-1) @ _cast(params.w_o, heads), weights.mean(0)


def _attention_module(attention, size: int):
    """None, a module, or the names ``"bahdanau"`` (of hidden size ``size``) and ``"luong"`` (general)."""
    if attention is None or isinstance(attention, Attention):
        return attention
    if attention == "bahdanau":
        return BahdanauAttention(size)
    if attention == "luong":
        return GeneralAttention()
    raise ValueError(
        f"attention: expected None, 'bahdanau', 'luong' or an attention module (rnnjax.attention), got {attention!r}"
    )


# ----------------------------------------------------------------------------- the attention decoder


class AttentionDecoderParams(NamedTuple):
    embed: EmbeddingParams  # table [v, E]
    bridge: DenseParams | None  # w [n, carry size], b: a summary of the memory -> the cell's carry; None: none
    attention: Any  # the attention module's params (None without attention)
    cell: Params  # the cell's params (input E, + the context before the step or the attentional vector after)
    w_c: Array | None  # [context + h, a]  attentional vector tanh([c; h] W_c) (attention after the step only)
    head: DenseParams  # w [h (+ context) or a, v], b [v]


class AttentionCarry(NamedTuple):
    """The decoder's carry: its cell's carry, the last context, and the memory it attends over."""

    cell: Carry  # the cell's carry, arrays [h]
    context: Array  # after the step: the attentional vector [a] (fed to the next input); before: [context]; none: [0]
    keys: Array  # [s, .] the attention module's precomputed keys ([s, 0] without attention)
    values: Array  # [s, e] the memory (e.g. encoder outputs, zeros past the source length)
    mask: Array  # [s] bool, True on the valid positions


@dataclasses.dataclass(frozen=True)
class AttentionDecoder(Dtypes):
    r"""Embedding, cell, attention and output layer: one target token at a time over a memory.

    Let ``e_t = E[w_t]``, ``h_t`` the cell's hidden vector (``h`` of its carry, the top cell's
    for a stack) and ``c_t`` the
    attention's context over the memory. Without attention, ``h_t = cell(h_{t-1}, e_t)`` and
    ``logits_t = h_t W_o + b_o``. With a module that ``attends_before_step`` (Bahdanau):

    .. math::
        c_t = \mathrm{attend}(h_{t-1}), \quad h_t = \mathrm{cell}(h_{t-1}, [e_t; c_t]), \quad
        \mathrm{logits}_t = [h_t; c_t] W_o + b_o

    otherwise (Luong, with input feeding and :math:`\tilde h_0 = 0`):

    .. math::
        h_t = \mathrm{cell}(h_{t-1}, [e_t; \tilde h_{t-1}]), \quad c_t = \mathrm{attend}(h_t), \quad
        \tilde h_t = \tanh([c_t; h_t] W_c), \quad \mathrm{logits}_t = \tilde h_t W_o + b_o

    Args:
      vocab_size: target vocabulary ``v``.
      embed_size: ``E``.
      cell: a cell, or a list of cells (a :class:`~rnnjax.StackedCell`).
      attention: None, an attention module of this module, or ``"bahdanau"``
        (:class:`BahdanauAttention` of hidden size ``attention_size``) or ``"luong"``
        (:class:`GeneralAttention`).
      attention_size: ``a``: the Bahdanau hidden size for ``"bahdanau"``, the attentional
        vector's size after the step; None: the cell's output size.
      dtype: computation dtype of the cell (and so of the memory it attends to); None: the cell's own.
      param_dtype: dtype of every param (embedding, bridge, cell, attention, ``W_c``, output layer);
        None: the cell's own, float32 for the rest. With either set, the logits are at least
        float32; attention's softmax is always computed in at least float32.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> decoder = AttentionDecoder(10, 4, rj.GRUCell(8), MultiHeadAttention(2, 8))
        >>> params = decoder.init(jax.random.key(0), memory_size=6, bridge_size=6)
        >>> values = jnp.ones((5, 6))
        >>> carry = decoder.start(params, values, jnp.ones(5, bool), decoder.bridge(params, values.mean(0)))
        >>> carry, logits, weights = decoder.step(params, carry, jnp.array(3))
        >>> logits.shape, weights.shape
        ((10,), (5,))
    """

    vocab_size: int
    embed_size: int
    cell: Any
    attention: Any = None
    attention_size: int | None = None

    def __post_init__(self):
        checks.positive_int(self.vocab_size, "vocab_size")
        checks.positive_int(self.embed_size, "embed_size")
        object.__setattr__(self, "cell", as_cell(self.cell))
        if self.attention_size is None:
            object.__setattr__(self, "attention_size", self.cell.output_size)
        checks.positive_int(self.attention_size, "attention_size")
        attention = _attention_module(self.attention, self.attention_size)
        object.__setattr__(self, "attention", with_dtypes(attention, self.dtype, self.param_dtype))
        object.__setattr__(self, "cell", with_dtypes(self.cell, self.dtype, self.param_dtype))
        if isinstance(self.cell, NoisyCell) and self.cell.has_noise:  # step-by-step decoding draws no masks
            raise ValueError(
                "cell: the attention decoder's cell has dropout or zoneout rates, which its step-by-step "
                "training does not draw yet; use a cell without them (the encoder's cells may have them)"
            )

    @property
    def _before(self) -> bool:
        return self.attention is not None and self.attention.attends_before_step

    def context_size(self, memory_size: int) -> int:
        """Size of the vector fed with the embedding (and of :attr:`AttentionCarry.context`)."""
        if self.attention is None:
            return 0
        return self.attention.context_size(memory_size) if self._before else self.attention_size

    def init(self, key: PRNGKey, memory_size: int, bridge_size: int | None = None) -> AttentionDecoderParams:
        """Params for a memory of values of size ``memory_size``, with a bridge from a vector of
        ``bridge_size`` (None: the cell's carry comes from elsewhere, see :meth:`start`)."""
        checks.positive_int(memory_size, "memory_size")
        k_embed, k_cell, k_bridge, k_att, k_c, k_head = jax.random.split(key, 6)
        h = self.cell.output_size
        cell = self.cell.init(k_cell, self.embed_size + self.context_size(memory_size))
        template = self.cell.initial_carry(cell)
        bridge_params = None if bridge_size is None else self._dense(flat_size(template)).init(k_bridge, bridge_size)
        attention, w_c, head_size = None, None, h
        if self.attention is not None:
            query_size = hidden(template).shape[-1] if self._before else h
            attention = self.attention.init(k_att, query_size, memory_size)
            context = self.attention.context_size(memory_size)
            if self._before:
                head_size = h + context
            else:
                w_c = _glorot(k_c, (context + h, self.attention_size), self._param_dtype)
                head_size = self.attention_size
        embed = self._embed(self.vocab_size, self.embed_size).init(k_embed)
        head = self._head(self.vocab_size).init(k_head, head_size)
        return AttentionDecoderParams(embed, bridge_params, attention, cell, w_c, head)

    def bridge(self, params: AttentionDecoderParams, z: Array) -> Carry:
        """``tanh(z W + b)`` split into the cell's carry (every array, e.g. both h and c)."""
        return bridge(params.bridge, z, self.cell.initial_carry(params.cell))

    def start(self, params: AttentionDecoderParams, values: Array, mask: Array, cell_carry: Carry) -> AttentionCarry:
        """The carry before the first token: ``cell_carry``, a zero context, and the memory
        ``values [s, e]`` with its ``mask [s]`` and precomputed keys."""
        if self.attention is None:
            keys = jnp.zeros((values.shape[0], 0), values.dtype)
        else:
            keys = self.attention.precompute(params.attention, values)
        context = jnp.zeros((self.context_size(values.shape[-1]),), values.dtype)
        return AttentionCarry(cell_carry, context, keys, values, mask)

    def embed(self, params: AttentionDecoderParams, tokens: Array) -> Array:
        return self._embed(self.vocab_size, self.embed_size).apply(params.embed, tokens)

    def step(self, params: AttentionDecoderParams, carry: AttentionCarry, token: Array):
        """One step from the token id ``token`` (shape ``()``): ``(carry, logits [v], weights [s])``."""
        token = checks.one_token(token, self.vocab_size)
        return self.step_embedded(params, carry, self.embed(params, token))

    def step_embedded(self, params: AttentionDecoderParams, carry: AttentionCarry, x: Array):
        """One step from the embedded input ``x [E]``: ``(carry, logits [v], weights [s])``."""
        head = self._head(self.vocab_size)
        if self.attention is None:
            cell_carry, y = self.cell.step(params.cell, carry.cell, x)
            context, weights = carry.context, jnp.zeros(carry.mask.shape, y.dtype)
            logits = head.apply(params.head, y)
        elif self._before:
            query = hidden(carry.cell)
            context, weights = self.attention.attend(params.attention, query, carry.keys, carry.values, carry.mask)
            cell_carry, y = self.cell.step(params.cell, carry.cell, jnp.concatenate([x, context.astype(x.dtype)], -1))
            logits = head.apply(params.head, jnp.concatenate([y, context.astype(y.dtype)], -1))
        else:
            inputs = jnp.concatenate([x, carry.context.astype(x.dtype)], -1)
            cell_carry, y = self.cell.step(params.cell, carry.cell, inputs)
            attended, weights = self.attention.attend(params.attention, y, carry.keys, carry.values, carry.mask)
            attentional = jnp.concatenate([attended, y.astype(attended.dtype)], -1)
            context = jnp.tanh(attentional @ params.w_c.astype(attended.dtype))
            logits = head.apply(params.head, context)
        return carry._replace(cell=cell_carry, context=context.astype(carry.context.dtype)), logits, weights
