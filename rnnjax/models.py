r"""Models: the four shapes of RNN use, built from cells, sequence layers and heads.

=================  ================================  ==================================================
shape              model                             ``apply`` on ONE example
=================  ================================  ==================================================
many-to-one        :class:`SequenceClassifier`       ``xs [t, f]`` (or token ids ``[t]``) -> ``[l]``
many-to-many       :class:`SequenceTagger`           ``xs [t, f]`` (or token ids ``[t]``) -> ``[t, l]``
many-to-many       :class:`LanguageModel`            ``tokens [t]`` -> ``[t, v]`` (teacher forcing)
one-to-many        :class:`ConditionedGenerator`     ``features [d]``, ``tokens [t]`` -> ``[t, v]``
encoder-decoder    :class:`Seq2Seq`                  ``src [s]``, ``tgt_in [t]`` -> ``[t, v]``
=================  ================================  ==================================================

Every model is a frozen, hashable dataclass of hyper-parameters (so it, and its bound
methods, can be static arguments of :func:`jax.jit`) with ``init(key) -> params``, a
NamedTuple of its parts' params, and a pure ``apply`` on ONE example; batch with
:func:`jax.vmap`. ``length`` marks steps ``>= length`` as padding: whatever they hold,
they never change an output at a valid step, and per-step outputs there are zeros.

The generative models (:class:`LanguageModel`, :class:`ConditionedGenerator`,
:class:`Seq2Seq`) also give an initial carry and ``step_fn(params, carry, token) ->
(carry, logits)``, the callback that :mod:`rnnjax.decode` drives; stepping through a
sequence gives the logits of ``apply`` with teacher forcing.

Shape letters as in :mod:`rnnjax.typing`: t time, s source time, f input features, d condition
features, h hidden, E embedding, e encoder outputs, a attention size, l labels, v vocabulary.
"""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rnnjax._src import carries, checks, masks
from rnnjax._src.dropout import dropout
from rnnjax.attention import AttentionCarry, AttentionDecoder, AttentionDecoderParams
from rnnjax.cells import DenseParams, accumulation_dtype
from rnnjax.heads import Dense, Embedding, EmbeddingParams
from rnnjax.layers import RNN, Bidirectional, Stack, as_cell, as_layer
from rnnjax.recurrence import unroll
from rnnjax.typing import Array, Carry, Params, PRNGKey

__all__ = [
    "ClassifierParams",
    "ConditionedGenerator",
    "GeneratorCarry",
    "GeneratorParams",
    "LanguageModel",
    "LanguageModelParams",
    "Seq2Seq",
    "Seq2SeqCarry",
    "Seq2SeqParams",
    "SequenceClassifier",
    "SequenceTagger",
    "TaggerParams",
]

# ----------------------------------------------------------------------------- helpers


def _check_encoder(encoder, name: str = "encoder"):
    """A cell becomes an ``RNN``; the layer (or a ``Stack``'s last layer) must be an RNN or Bidirectional."""
    layer = as_layer(encoder, name)
    top = layer
    while isinstance(top, Stack):
        top = top.layers[-1]
    if not isinstance(top, RNN | Bidirectional):
        raise TypeError(
            f"{name}: expected a cell, an rnnjax.RNN, Bidirectional, or a Stack whose last layer is one of "
            f"these, got {type(encoder).__name__}"
        )
    return layer


def _with_dtypes(part, dtype, param_dtype):
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
            changes[field.name] = _with_dtypes(value, dtype, param_dtype)
        elif isinstance(value, tuple) and value and all(dataclasses.is_dataclass(v) for v in value):
            changes[field.name] = tuple(_with_dtypes(v, dtype, param_dtype) for v in value)
    return dataclasses.replace(part, **changes)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Dtypes:
    """A model's ``dtype`` (computation) and ``param_dtype``, passed to its cells and heads.

    None leaves the cells as they are and the heads in float32. When either is set, logits come
    out in at least float32 (a 16-bit computation accumulates them in float32, unrounded), and
    the losses in :mod:`rnnjax.losses` compute in float32.
    """

    dtype: Any = None
    param_dtype: Any = None

    def _pass_dtypes(self, name: str) -> None:
        object.__setattr__(self, name, _with_dtypes(getattr(self, name), self.dtype, self.param_dtype))

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


def _vector(x, size: int, name: str, letter: str) -> Array:
    x = checks.floating(x, name)
    if x.shape != (size,):
        hint = " (one example; batch with jax.vmap)" if x.ndim > 1 else ""
        raise ValueError(f"{name}: expected shape [{letter}] = ({size},){hint}, got shape {tuple(x.shape)}")
    return x


def _nonempty(xs: Array, name: str) -> None:
    if xs.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one step, got shape {tuple(xs.shape)}")


class _Final(NamedTuple):
    """What one direction of the encoder's top layer ends with."""

    carry: Carry  # the carry after the direction's last valid step
    output: Array  # [o] that step's output: at length - 1 going forward, at 0 going backward


def _final_output(ys: Array, length: Array | None, reverse: bool) -> Array:
    if reverse:
        return ys[0]
    if length is None:
        return ys[-1]
    return ys[jnp.maximum(length - 1, 0)]  # length 0: ys is all zeros


def _run_encoder(layer, params: Params, xs: Array, length: Array | None, key: PRNGKey | None):
    """``layer.apply(params, xs, length=length, key=key)``, and the final carry and output of each
    direction of the top layer: ``(ys [t, o], (final,))`` or ``(ys, (forward_final, backward_final))``."""
    if isinstance(layer, RNN):
        carry, ys = layer.apply_with_carry(params, xs, length=length)
        return ys, (_Final(carry, _final_output(ys, length, layer.reverse)),)
    if isinstance(layer, Bidirectional):
        ys_f, finals_f = _run_encoder(layer.forward, params.forward, xs, length, None)
        ys_b, finals_b = _run_encoder(layer.backward, params.backward, xs, length, None)
        return layer.merge_outputs(ys_f, ys_b), finals_f + finals_b
    # A Stack: what Stack.apply does (same keys, same dropout between layers), keeping the top's finals.
    n = len(layer.layers)
    if len(params) != n:
        raise ValueError(f"params: expected {n} layer params, got {len(params)}")
    keys = [None] * (2 * n) if key is None else list(jax.random.split(key, 2 * n))
    for i, (sub, p) in enumerate(zip(layer.layers[:-1], params[:-1], strict=True)):
        xs = dropout(sub.apply(p, xs, length=length, key=keys[i]), layer.dropout, keys[n + i])
    return _run_encoder(layer.layers[-1], params[-1], xs, length, keys[n - 1])


def _top(layer):
    while isinstance(layer, Stack):
        layer = layer.layers[-1]
    return layer


def _final_carry_templates(layer, params: Params) -> tuple[Carry, ...]:
    """The initial carries of the top layer's directions (the shapes of the finals)."""
    while isinstance(layer, Stack):
        layer, params = layer.layers[-1], params[-1]
    if isinstance(layer, RNN):
        return (layer.cell.initial_carry(params),)
    return (
        layer.forward.cell.initial_carry(params.forward),
        layer.backward.cell.initial_carry(params.backward),
    )


def _same_shapes(a, b) -> bool:
    if jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(b):
        return False
    return all(
        np.shape(x) == np.shape(y)
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )


def _inputs(xs, embed_params, vocab_size: int | None, input_size: int) -> Array:
    """``xs [t, f]`` checked, or token ids ``[t]`` embedded to ``[t, f]`` when there is a vocabulary."""
    if vocab_size is None:
        xs = checks.sequence(xs, input_size, "xs")
    else:
        ids = checks.token_sequence(xs, "xs", vocab_size)
        xs = Embedding(vocab_size, input_size).apply(embed_params, ids)
    _nonempty(xs, "xs")
    return xs


def _check_front(vocab_size: int | None, input_size: int) -> None:
    checks.positive_int(input_size, "input_size")
    if vocab_size is not None:
        checks.positive_int(vocab_size, "vocab_size")


# ----------------------------------------------------------------------------- many-to-one


class ClassifierParams(NamedTuple):
    embed: EmbeddingParams | None  # table [v, f] when vocab_size is set, else None
    encoder: Params  # the encoder's params
    head: DenseParams  # w [o, l], b [l]


_POOLINGS = ("last", "mean", "max")


@dataclasses.dataclass(frozen=True)
class SequenceClassifier(_Dtypes):
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
        object.__setattr__(self, "encoder", _check_encoder(self.encoder))
        self._pass_dtypes("encoder")
        checks.positive_int(self.num_classes, "num_classes")
        _check_front(self.vocab_size, self.input_size)
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

    def _pool(self, ys: Array, finals: tuple[_Final, ...], length: Array | None) -> Array:
        if self.pooling == "last":
            top = _top(self.encoder)
            if isinstance(top, Bidirectional):
                return top.merge_outputs(finals[0].output, finals[1].output)
            return finals[0].output
        valid = masks.valid_mask(length, ys.shape[0])[:, None]
        if self.pooling == "mean":
            count = jnp.maximum(jnp.sum(valid), 1).astype(ys.dtype)
            return jnp.sum(jnp.where(valid, ys, jnp.zeros_like(ys)), axis=0) / count
        biggest = jnp.max(jnp.where(valid, ys, jnp.finfo(ys.dtype).min), axis=0)
        return jnp.where(jnp.any(valid), biggest, jnp.zeros_like(biggest))

    def apply(self, params: ClassifierParams, xs: Array, length=None, key: PRNGKey | None = None) -> Array:
        """Class logits for one sequence.

        Args:
          params: from :meth:`init`.
          xs: ``[t, f]`` floats, or integer token ids ``[t]`` when ``vocab_size`` is set.
          length: valid steps ``n`` (scalar); later steps are ignored. None: all ``t``.
          key: PRNG key for the encoder's dropout (a ``Stack`` with ``dropout``); None: none.

        Returns:
          ``logits: [l]``.

        Example:
            >>> import rnnjax as rj
            >>> model = SequenceClassifier(rj.GRUCell(8), 3, 4, pooling="max")
            >>> params = model.init(jax.random.key(0))
            >>> model.apply(params, jnp.ones((6, 4)), length=3).shape
            (3,)
        """
        xs = _inputs(xs, params.embed, self.vocab_size, self.input_size)
        length = checks.length(length, xs.shape[0])
        ys, finals = _run_encoder(self.encoder, params.encoder, xs, length, key)
        return self._head(self.num_classes).apply(params.head, self._pool(ys, finals, length))


# ----------------------------------------------------------------------------- many-to-many


class TaggerParams(NamedTuple):
    embed: EmbeddingParams | None  # table [v, f] when vocab_size is set, else None
    encoder: Params  # the encoder's params
    head: DenseParams  # w [o, l], b [l]


@dataclasses.dataclass(frozen=True)
class SequenceTagger(_Dtypes):
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
        object.__setattr__(self, "encoder", _check_encoder(self.encoder))
        self._pass_dtypes("encoder")
        checks.positive_int(self.num_tags, "num_tags")
        _check_front(self.vocab_size, self.input_size)

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

    def apply(self, params: TaggerParams, xs: Array, length=None, key: PRNGKey | None = None) -> Array:
        """Logits for every step of one sequence.

        Args:
          params: from :meth:`init`.
          xs: ``[t, f]`` floats, or integer token ids ``[t]`` when ``vocab_size`` is set.
          length: valid steps ``n`` (scalar). None: all ``t``.
          key: PRNG key for the encoder's dropout; None: none.

        Returns:
          ``logits: [t, l]``; zeros at steps ``>= length``.

        Example:
            >>> import rnnjax as rj
            >>> model = SequenceTagger(rj.GRUCell(8), 5, 4)
            >>> params = model.init(jax.random.key(0))
            >>> logits = model.apply(params, jnp.ones((6, 4)), length=4)
            >>> logits.shape, float(jnp.abs(logits[4:]).max())
            ((6, 5), 0.0)
        """
        xs = _inputs(xs, params.embed, self.vocab_size, self.input_size)
        length = checks.length(length, xs.shape[0])
        ys, _ = _run_encoder(self.encoder, params.encoder, xs, length, key)
        return masks.zero_past(self._head(self.num_tags).apply(params.head, ys), length)


class LanguageModelParams(NamedTuple):
    embed: EmbeddingParams  # table [v, E]
    cell: Params  # the (stacked) cell's params
    head: DenseParams | None  # w [o, v], b [v]; None with tied weights
    bias: Array | None  # [v] the output bias with tied weights; None without


@dataclasses.dataclass(frozen=True)
class LanguageModel(_Dtypes):
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

    def apply(self, params: LanguageModelParams, tokens: Array, length=None, key: PRNGKey | None = None) -> Array:
        """Next-token logits at every step, with teacher forcing.

        Args:
          params: from :meth:`init`.
          tokens: integer ids ``[t]`` (the inputs; the targets are ``tokens`` shifted left).
          length: valid steps ``n`` (scalar). None: all ``t``.
          key: PRNG key for dropout; None: no dropout.

        Returns:
          ``logits: [t, v]``, ``logits[i]`` predicting token ``i + 1``; zeros at steps ``>= length``.

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
        k_in, k_out = (None, None) if key is None else jax.random.split(key)
        xs = dropout(self._embedding.apply(params.embed, tokens), self.dropout, k_in)
        _, ys = unroll(self.cell, params.cell, xs, length=length, hoist=self.hoist)
        ys = dropout(ys, self.dropout, k_out)
        return masks.zero_past(self._logits(params, ys), length)

    def unroll(self, params: LanguageModelParams, tokens: Array, carry: Carry | None = None) -> tuple[Carry, Array]:
        """Teacher-forced logits from a given carry, and the carry after the last token.

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
            >>> carry, logits = model.unroll(params, jnp.array([1, 4, 4]))
            >>> carry, more = model.unroll(params, jnp.array([2, 9]), carry)
            >>> logits.shape, more.shape
            ((3, 50), (2, 50))
        """
        self._check_params(params)
        tokens = checks.token_sequence(tokens, "tokens", self.vocab_size)
        carry, ys = unroll(self.cell, params.cell, self._embedding.apply(params.embed, tokens), carry, hoist=self.hoist)
        return carry, self._logits(params, ys)

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


# ----------------------------------------------------------------------------- one-to-many


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
class ConditionedGenerator(_Dtypes):
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
        features = _vector(features, self.feature_size, "features", "d")
        template = self.cell.initial_carry(params.cell)
        cell_carry = carries.bridge(params.bridge, features, template) if self._sets_carry else template
        return GeneratorCarry(cell_carry, features)

    def _inputs(self, params: GeneratorParams, tokens: Array, features: Array) -> Array:
        xs = self._embedding.apply(params.embed, tokens)
        if not self._feeds_input:
            return xs
        features = jnp.broadcast_to(features.astype(xs.dtype), (*xs.shape[:-1], self.feature_size))
        return jnp.concatenate([xs, features], axis=-1)

    def apply(self, params: GeneratorParams, features: Array, tokens: Array, length=None) -> Array:
        """Next-token logits at every step, with teacher forcing.

        Args:
          params: from :meth:`init`.
          features: the condition ``[d]``.
          tokens: integer ids ``[t]`` (usually starting with a begin-of-sequence id).
          length: valid steps ``n`` (scalar). None: all ``t``.

        Returns:
          ``logits: [t, v]``; zeros at steps ``>= length``.

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
        xs = self._inputs(params, tokens, carry.features)
        _, ys = unroll(self.cell, params.cell, xs, carry.cell, length=length, hoist=self.hoist)
        return masks.zero_past(self._head(self.vocab_size).apply(params.head, ys), length)

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


# ----------------------------------------------------------------------------- encoder-decoder


class Seq2SeqParams(NamedTuple):
    src_embed: EmbeddingParams  # table [src_vocab, E]
    encoder: Params  # the encoder's params (input size E)
    decoder: AttentionDecoderParams  # embed, bridge (final encoder carries -> decoder carry; None: as is), attention,
    #                                  cell, w_c (Luong-style attention), head: see rnnjax.attention.AttentionDecoder


Seq2SeqCarry = AttentionCarry  # the decoder's carry: its cell's, the last context, the memory (keys, values, mask)


@dataclasses.dataclass(frozen=True)
class Seq2Seq:
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
        object.__setattr__(self, "encoder", _check_encoder(self.encoder))
        object.__setattr__(self, "decoder_cell", as_cell(self.decoder_cell, "decoder_cell"))
        if self.bridge not in (None, True, False):
            raise ValueError(f"bridge: expected None, True or False, got {self.bridge!r}")
        # the decoder checks tgt_vocab, embed_size, attention and attention_size
        object.__setattr__(self, "attention_size", self.decoder.attention_size)

    @property
    def decoder(self) -> AttentionDecoder:
        """The decoder: :class:`rnnjax.attention.AttentionDecoder` over the encoder's outputs."""
        return AttentionDecoder(self.tgt_vocab, self.embed_size, self.decoder_cell, self.attention, self.attention_size)

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
        finals = _final_carry_templates(self.encoder, encoder)
        fits = len(finals) == 1 and _same_shapes(finals[0], template)
        if self.bridge is False and not fits:
            raise ValueError(
                f"bridge: False needs the encoder's final carry to have the decoder's carry shapes "
                f"{jax.tree_util.tree_map(np.shape, template)}, got "
                f"{jax.tree_util.tree_map(np.shape, finals)} (use bridge=None or True)"
            )
        bridged = self.bridge or (self.bridge is None and not fits)
        bridge_size = sum(carries.flat_size(f) for f in finals) if bridged else None
        return Seq2SeqParams(
            src_embed=Embedding(self.src_vocab, self.embed_size).init(k_src),
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
        _nonempty(src, "src")
        src_len = checks.length(src_len, src.shape[0], "src_len")
        xs = Embedding(self.src_vocab, self.embed_size).apply(params.src_embed, src)
        values, finals = _run_encoder(self.encoder, params.encoder, xs, src_len, key)
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
