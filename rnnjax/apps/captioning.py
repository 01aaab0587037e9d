r"""Image captioning: a small CNN encoder and an LSTM decoder that attends to its feature map.

The Show, Attend and Tell pattern (Xu et al. 2015) on a task small enough for a CPU: strips of
3 to 5 handwritten digits side by side (scikit-learn's bundled 8x8 ``digits`` images), captioned
in words, ``"three one four"``.

=========================  ===========================================================================
what                       names
=========================  ===========================================================================
data                       :func:`digit_strips` -> :class:`CaptionData`; :data:`VOCAB`, :func:`caption_text`
model                      :class:`Captioner` (``init``, ``encode``, ``apply``, ``step_fn``, ``loss``)
decoding and scores        :func:`decode_captions` (greedy or beam search), :func:`caption_accuracy`
alignment                  :func:`attention_columns` (the column each word looks at)
=========================  ===========================================================================

The encoder is a stack of 3x3 convolutions (ReLU, a 2x2 max-pool between layers) written with
:func:`jax.lax.conv_general_dilated`; its ``[gh, gw, c]`` feature map, plus a learned position
embedding, is the attention memory of ``p = gh * gw`` cells. The decoder is
:class:`rnnjax.attention.AttentionDecoder`, the one :class:`rnnjax.models.Seq2Seq` uses: the CNN
takes the place of the recurrent encoder, and the mean of the feature map initialises the
decoder's carry through a dense ``tanh`` bridge (one-to-many). The memory lives in the carry (an
:class:`~rnnjax.attention.AttentionCarry`), so ``Captioner.step_fn`` is one fixed callback for every
image and :func:`rnnjax.decode.greedy` / :func:`rnnjax.decode.beam_search` run it unchanged,
vmapped over a batch of images without retracing.

Shape letters: ``b`` batch, ``t`` caption steps, ``v`` vocabulary, ``p`` feature-map cells
(attention positions), ``c`` channels, ``k`` beam; an image is ``[H, W]`` (``8, 8 * max_digits``).

References:
  Xu et al., "Show, attend and tell: neural image caption generation with visual attention",
  ICML 2015; Vinyals et al., "Show and tell: a neural image caption generator", CVPR 2015.
"""

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rnnjax import decode
from rnnjax._src import checks, masks, numerics
from rnnjax._src.dtypes import Dtypes
from rnnjax.apps.digits import DIGIT_WORDS
from rnnjax.attention import AttentionCarry, AttentionDecoder, AttentionDecoderParams
from rnnjax.layers import as_cell
from rnnjax.losses import length_mask, sequence_cross_entropy
from rnnjax.typing import Array, PRNGKey

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "SPLITS",
    "VOCAB",
    "WORDS",
    "CaptionData",
    "Captioner",
    "CaptionerParams",
    "ConvParams",
    "attention_columns",
    "caption_accuracy",
    "caption_text",
    "decode_captions",
    "digit_strips",
]

# ----------------------------------------------------------------------------- data

PAD, BOS, EOS = 0, 1, 2
WORDS = DIGIT_WORDS  # the caption words, "zero" .. "nine"
VOCAB = ("<pad>", "<bos>", "<eos>", *WORDS)
"""Token ids: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, then the digit words: digit ``d`` is ``d + 3``."""
DIGIT_SIZE = 8
SPLITS = {"train": 0.6, "valid": 0.2, "test": 0.2}
"""Fractions of scikit-learn's 1797 digit images in each split (disjoint sets of images)."""


class CaptionData(NamedTuple):
    """Digit strips and their captions (NumPy arrays)."""

    images: np.ndarray  # [n, 8, 8 * max_digits] float32 in [0, 1]; digits left-aligned, blank (0) after
    captions: np.ndarray  # [n, max_digits + 1] int32: word ids, eos, then pad
    lengths: np.ndarray  # [n] int32: number of digits + 1 (the eos)
    digits: np.ndarray  # [n, max_digits] int32: the digit labels, -1 after the last


@functools.cache
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("digit_strips needs scikit-learn (pip install scikit-learn) for its digits images") from err
    bunch = load_digits()
    return (bunch.images / 16.0).astype(np.float32), bunch.target.astype(np.int32)


def digit_strips(
    seed, num: int, min_digits: int = 3, max_digits: int = 5, *, split: str = "train", split_seed: int = 0
) -> CaptionData:
    """Strips of ``min_digits..max_digits`` handwritten digits side by side, captioned in words.

    The 1797 8x8 images of :func:`sklearn.datasets.load_digits` are shuffled by ``split_seed``
    and cut into disjoint train/valid/test pools (:data:`SPLITS`), so test strips are made of
    digit images never seen in training. Each strip draws its number of digits uniformly, then
    its digit images from the split's pool, with ``seed``: draw fresh training strips with
    ``seed=(run_seed, step)`` and the same ``split_seed``. The same arguments give the same arrays.

    Args:
      seed: an int or a tuple of ints (e.g. ``(seed, step)``): which strips.
      num: number of strips ``n``.
      min_digits: fewest digits in a strip (>= 1).
      max_digits: most digits in a strip (the image width is ``8 * max_digits``).
      split: ``"train"``, ``"valid"`` or ``"test"``.
      split_seed: the shuffle of the digit images into the three pools.

    Returns:
      :class:`CaptionData` ``(images [n, 8, 8 * max_digits], captions [n, max_digits + 1],
      lengths [n], digits [n, max_digits])``.

    Example:
        >>> import rnnjax as rj
        >>> data = rj.apps.captioning.digit_strips(0, 2, split="test")
        >>> data.images.shape, data.captions.shape
        ((2, 8, 40), (2, 6))
        >>> [rj.apps.captioning.caption_text(c) for c in data.captions] == [
        ...     " ".join(rj.apps.captioning.WORDS[d] for d in row if d >= 0) for row in data.digits]
        True
    """
    seeds = tuple(seed) if isinstance(seed, tuple | list) else (seed,)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0 for s in seeds):
        raise ValueError(f"seed: expected an int >= 0 or a tuple of them, got {seed!r}")
    if isinstance(split_seed, bool) or not isinstance(split_seed, int | np.integer) or split_seed < 0:
        raise ValueError(f"split_seed: expected an int >= 0, got {split_seed!r}")
    checks.positive_int(num, "num")
    checks.positive_int(min_digits, "min_digits")
    checks.positive_int(max_digits, "max_digits")
    if min_digits > max_digits:
        raise ValueError(f"min_digits: expected at most max_digits = {max_digits}, got {min_digits}")
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {tuple(SPLITS)}, got {split!r}")
    images, labels = _load_digits()
    order = np.random.default_rng(int(split_seed)).permutation(len(labels))
    bounds = np.cumsum([round(f * len(labels)) for f in SPLITS.values()])[:-1]
    pool = np.split(order, bounds)[list(SPLITS).index(split)]

    rng = np.random.default_rng([*(int(s) for s in seeds), list(SPLITS).index(split)])
    counts = rng.integers(min_digits, max_digits + 1, size=num)
    picks = rng.choice(pool, size=(num, max_digits))  # images drawn with replacement from the pool
    valid = np.arange(max_digits) < counts[:, None]
    digits = np.where(valid, labels[picks], -1).astype(np.int32)
    tiles = np.where(valid[:, :, None, None], images[picks], 0.0)  # [n, d, 8, 8]
    strips = tiles.transpose(0, 2, 1, 3).reshape(num, DIGIT_SIZE, DIGIT_SIZE * max_digits).astype(np.float32)
    captions = np.full((num, max_digits + 1), PAD, np.int32)
    captions[:, :max_digits] = np.where(valid, digits + 3, PAD)
    captions[np.arange(num), counts] = EOS
    return CaptionData(strips, captions, (counts + 1).astype(np.int32), digits)


def caption_text(tokens) -> str:
    """The words of a caption's token ids ``[t]``, up to the first ``<eos>`` (``<bos>``/``<pad>`` dropped).

    Example:
        >>> import rnnjax as rj
        >>> rj.apps.captioning.caption_text([6, 4, 7, 2, 0])
        'three one four'
    """
    words = []
    for token in np.asarray(tokens).reshape(-1).tolist():
        if token == EOS:
            break
        if token not in (PAD, BOS):
            words.append(VOCAB[token])
    return " ".join(words)


# ----------------------------------------------------------------------------- the model


class ConvParams(NamedTuple):
    w: Array  # [3, 3, c_in, c_out]
    b: Array  # [c_out]


class CaptionerParams(NamedTuple):
    conv: tuple[ConvParams, ...]  # the convolution layers, first (on the image) to last
    position: Array  # [p, c] learned position embedding of the feature map's cells, row-major
    decoder: AttentionDecoderParams  # embed, bridge [c -> carry], attention, cell, w_c, head


def _conv(params: ConvParams, x: Array) -> Array:
    """3x3 'SAME' convolution and ReLU on one image ``x [H, W, c_in] -> [H, W, c_out]``."""
    y = lax.conv_general_dilated(
        x[None], params.w.astype(x.dtype), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )[0]
    return jax.nn.relu(y + params.b.astype(y.dtype))


def _max_pool(x: Array) -> Array:
    """2x2 max-pool with stride 2 (``'SAME'``: an odd side is rounded up): ``[H, W, c] -> [H', W', c]``."""
    return lax.reduce_window(x, -jnp.inf, lax.max, (2, 2, 1), (2, 2, 1), "SAME")


@dataclasses.dataclass(frozen=True)
class Captioner(Dtypes):
    r"""A CNN encoder and an attention LSTM decoder (Show, Attend and Tell), on ONE image.

    The encoder maps an image ``[H, W]`` through ``len(channels)`` 3x3 convolutions with ReLU
    (a 2x2 max-pool after each but the last) to a feature map ``[gh, gw, c]``; with a learned
    position embedding it becomes the memory ``V = [v_1 .. v_p]``, ``p = gh gw``. The decoder
    is :class:`rnnjax.attention.AttentionDecoder` (the one :class:`rnnjax.models.Seq2Seq` uses),
    with ``V`` as its memory and the bridge on the mean feature:

    .. math::
        c_0 &= \tanh(\bar v W_b + b_b), \qquad \bar v = \tfrac1p \textstyle\sum_j v_j \\
        \alpha_t &= \mathrm{softmax}_j\, w^\top \tanh(W_q h_{t-1} + W_k v_j), \qquad
            z_t = \textstyle\sum_j \alpha_{tj} v_j \\
        (c_t, h_t) &= \mathrm{LSTM}(c_{t-1}, [E w_t; z_t]), \qquad \mathrm{logits}_t = [h_t; z_t] W_o + b_o

    (``attention="bahdanau"``; ``"luong"`` and the other modules of :mod:`rnnjax.attention` attend
    after the step, as in :class:`~rnnjax.attention.AttentionDecoder`).

    Args:
      image_shape: ``(H, W)``, e.g. ``(8, 40)`` for strips of up to 5 digits.
      vocab_size: ``v``.
      embed_size: word embedding size.
      decoder_cell: a cell (e.g. ``rj.LSTMCell(64)``) or a list of cells.
      channels: output channels of each convolution; the last is the feature size ``c``.
      attention: ``"bahdanau"``, ``"luong"`` or an attention module of :mod:`rnnjax.attention`.
      attention_size: the attention's hidden size (None: the decoder's output size).
      dtype: computation dtype of the convolutions and the decoder (e.g. ``jnp.bfloat16``); None:
        the image's and the cell's own.
      param_dtype: dtype of every param; None: the cell's own, float32 for the rest. With either
        set, logits are at least float32.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> model = rj.apps.captioning.Captioner((8, 40), 13, 8, rj.LSTMCell(16), channels=(4, 8))
        >>> params = model.init(jax.random.key(0))
        >>> model.grid_shape, params.position.shape
        ((4, 20), (80, 8))
        >>> tokens = jnp.array([1, 6, 4, 7])   # <bos> three one four
        >>> logits, weights = model.apply(params, jnp.ones((8, 40)), tokens, return_attention=True)
        >>> logits.shape, weights.shape, weights.sum(-1).round(4).tolist()
        ((4, 13), (4, 80), [1.0, 1.0, 1.0, 1.0])
    """

    image_shape: tuple[int, int]
    vocab_size: int
    embed_size: int
    decoder_cell: Any
    _: dataclasses.KW_ONLY
    channels: tuple[int, ...] = (16, 32)
    attention: Any = "bahdanau"
    attention_size: int | None = None

    def __post_init__(self):
        shape = tuple(self.image_shape) if isinstance(self.image_shape, list | tuple) else None
        if shape is None or len(shape) != 2 or any(isinstance(s, bool) or not isinstance(s, int) for s in shape):
            raise ValueError(f"image_shape: expected (height, width), two positive ints, got {self.image_shape!r}")
        for s in shape:
            checks.positive_int(s, "image_shape")
        object.__setattr__(self, "image_shape", shape)
        channels = tuple(self.channels) if isinstance(self.channels, list | tuple) else ()
        if not channels:
            raise ValueError(f"channels: expected a non-empty tuple of positive ints, got {self.channels!r}")
        for c in channels:
            checks.positive_int(c, "channels")
        object.__setattr__(self, "channels", channels)
        if self.attention is None:
            raise ValueError("attention: a captioner attends; expected 'bahdanau', 'luong' or a module, got None")
        object.__setattr__(self, "decoder_cell", as_cell(self.decoder_cell, "decoder_cell"))
        _ = self.decoder  # checks vocab_size, embed_size, attention, attention_size

    @property
    def decoder(self) -> AttentionDecoder:
        """The attention decoder over the CNN's feature map."""
        cell, attention, size = self.decoder_cell, self.attention, self.attention_size
        dtypes = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        return AttentionDecoder(self.vocab_size, self.embed_size, cell, attention, size, **dtypes)

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(gh, gw)``: the feature map's height and width (each pool halves a side, rounding up)."""
        gh, gw = self.image_shape
        for _ in self.channels[1:]:
            gh, gw = math.ceil(gh / 2), math.ceil(gw / 2)
        return gh, gw

    @property
    def num_positions(self) -> int:
        """``p = gh * gw``: the attention positions."""
        gh, gw = self.grid_shape
        return gh * gw

    def init(self, key: PRNGKey) -> CaptionerParams:
        """``CaptionerParams(conv, position, decoder)``: He-normal convolutions, zero biases,
        position embedding N(0, 0.1^2), and the attention decoder's initialisation.

        Example:
            >>> import jax, rnnjax as rj
            >>> model = Captioner((8, 40), 13, 8, rj.LSTMCell(16), channels=(4, 8))
            >>> params = model.init(jax.random.key(0))
            >>> [p.w.shape for p in params.conv], params.decoder.bridge.w.shape   # bridge to h and c
            ([(3, 3, 1, 4), (3, 3, 4, 8)], (8, 32))
        """
        k_conv, k_pos, k_dec = jax.random.split(key, 3)
        he = jax.nn.initializers.he_normal(in_axis=(0, 1, 2), out_axis=3)
        dtype = self._param_dtype
        conv, c_in = [], 1
        for k, c in zip(jax.random.split(k_conv, len(self.channels)), self.channels, strict=True):
            conv.append(ConvParams(numerics.initialized(he, k, (3, 3, c_in, c), dtype), jnp.zeros((c,), dtype)))
            c_in = c
        position = 0.1 * jax.random.normal(k_pos, (self.num_positions, self.channels[-1]), jnp.float32)
        position = position.astype(dtype)
        c = self.channels[-1]
        return CaptionerParams(tuple(conv), position, self.decoder.init(k_dec, memory_size=c, bridge_size=c))

    def _image(self, image) -> Array:
        image = checks.floating(image, "image")
        if image.shape != self.image_shape:
            hint = " (one image; batch with jax.vmap)" if image.ndim == 3 else ""
            raise ValueError(f"image: expected shape [H, W] = {self.image_shape}{hint}, got shape {tuple(image.shape)}")
        return image

    def features(self, params: CaptionerParams, image: Array) -> Array:
        """The CNN's feature map with the position embedding, flattened row-major: ``[p, c]``.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> model = Captioner((8, 40), 13, 8, rj.LSTMCell(16), channels=(4, 8))
            >>> model.features(model.init(jax.random.key(0)), jnp.zeros((8, 40))).shape
            (80, 8)
        """
        x = self._image(image)[:, :, None]
        if self.dtype is not None:
            x = x.astype(self.dtype)
        for i, layer in enumerate(params.conv):
            if i > 0:
                x = _max_pool(x)
            x = _conv(layer, x)
        return x.reshape(-1, x.shape[-1]) + params.position.astype(x.dtype)

    def encode(self, params: CaptionerParams, image: Array) -> AttentionCarry:
        """Encode one image: the decoder's initial carry, holding the attention memory.

        Args:
          params: from :meth:`init`.
          image: ``[H, W]`` floats.

        Returns:
          A :class:`~rnnjax.attention.AttentionCarry`: the cell carry from the mean feature, a zero
          context, keys ``[p, .]``, values ``[p, c]`` and an all-True mask ``[p]``; pass it to
          :meth:`step_fn` or to :mod:`rnnjax.decode`.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> model = Captioner((8, 40), 13, 8, rj.LSTMCell(16), channels=(4, 8))
            >>> carry = model.encode(model.init(jax.random.key(0)), jnp.zeros((8, 40)))
            >>> carry.values.shape, carry.keys.shape, carry.cell.c.shape
            ((80, 8), (80, 16), (16,))
        """
        values = self.features(params, image)
        decoder = self.decoder
        cell_carry = decoder.bridge(params.decoder, values.mean(0))
        return decoder.start(params.decoder, values, jnp.ones((values.shape[0],), bool), cell_carry)

    def step_with_attention(
        self, params: CaptionerParams, carry: AttentionCarry, token: Array
    ) -> tuple[AttentionCarry, Array, Array]:
        """:meth:`step_fn` that also returns the step's attention weights ``[p]``.

        Returns:
          ``(carry, logits [v], weights [p])``.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> model = Captioner((8, 40), 13, 8, rj.LSTMCell(16), channels=(4, 8))
            >>> params = model.init(jax.random.key(0))
            >>> _, logits, weights = model.step_with_attention(params, model.encode(params, jnp.zeros((8, 40))), 1)
            >>> logits.shape, weights.shape, round(float(weights.sum()), 4)
            ((13,), (80,), 1.0)
        """
        return self.decoder.step(params.decoder, carry, token)  # checks the token

    def step_fn(self, params: CaptionerParams, carry: AttentionCarry, token: Array) -> tuple[AttentionCarry, Array]:
        """One decoding step, the callback of :mod:`rnnjax.decode`: feed ``token``, get the next logits.

        Args:
          params: from :meth:`init`.
          carry: from :meth:`encode` or the previous step.
          token: one integer token id (shape ``()``).

        Returns:
          ``(carry, logits [v])``.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> model = Captioner((8, 40), 13, 8, rj.LSTMCell(16), channels=(4, 8))
            >>> params = model.init(jax.random.key(0))
            >>> carry = model.encode(params, jnp.zeros((8, 40)))
            >>> tokens, length = rj.decode.greedy(model.step_fn, params, carry, 1, max_len=6, eos=2)
            >>> tokens.shape
            (6,)
        """
        carry, logits, _ = self.step_with_attention(params, carry, token)
        return carry, logits

    def apply(
        self, params: CaptionerParams, image: Array, tokens: Array, length=None, *, return_attention: bool = False
    ) -> Array | tuple[Array, Array]:
        """Next-token logits with teacher forcing: the decoder reads ``tokens`` (``<bos>`` then the
        caption without its last token, see :meth:`loss`).

        Args:
          params: from :meth:`init`.
          image: ``[H, W]``.
          tokens: decoder input ids ``[t]``.
          length: valid steps (scalar); None: all ``t``.
          return_attention: also return the attention weights (for alignment plots).

        Returns:
          ``logits [t, v]`` (zeros at steps ``>= length``); with ``return_attention``,
          ``(logits, weights [t, p])``, rows summing to 1 (zeros at steps ``>= length``); reshape
          ``weights`` to ``[t, gh, gw]`` (:attr:`grid_shape`) to see them on the image.

        Example:
            >>> import jax, jax.numpy as jnp, rnnjax as rj
            >>> model = Captioner((8, 40), 13, 8, rj.LSTMCell(16), channels=(4, 8))
            >>> params = model.init(jax.random.key(0))
            >>> logits = model.apply(params, jnp.zeros((8, 40)), jnp.array([1, 3, 4, 0]), 3)
            >>> logits.shape, bool((logits[3] == 0).all())   # steps >= length are zeros
            ((4, 13), True)
        """
        tokens = checks.token_sequence(tokens, "tokens", self.vocab_size)
        length = checks.length(length, tokens.shape[0])
        carry = self.encode(params, image)
        decoder = self.decoder

        def body(carry, x):
            carry, logits, weights = decoder.step_embedded(params.decoder, carry, x)
            return carry, (logits, weights)

        _, (logits, weights) = lax.scan(body, carry, decoder.embed(params.decoder, tokens))
        logits = masks.zero_past(logits, length)
        return (logits, masks.zero_past(weights, length)) if return_attention else logits

    def loss(self, params: CaptionerParams, batch: dict, key: PRNGKey | None = None) -> Array:
        """Teacher-forced cross-entropy per word (eos included), for :func:`rnnjax.train.make_train_step`.

        The decoder reads ``[<bos>, y_1, .., y_{t-1}]`` and predicts ``[y_1, .., y_t]``; steps
        ``>= length`` are masked (:func:`rnnjax.losses.sequence_cross_entropy`).

        Args:
          params: from :meth:`init`.
          batch: ``{"images": [b, H, W], "captions": [b, t], "lengths": [b]}`` (as
            :class:`CaptionData`'s fields).
          key: unused (the model has no dropout); there for ``make_train_step``'s signature.

        Returns:
          The mean loss in nats (scalar).

        Example:
            >>> import jax, optax, rnnjax as rj
            >>> data = rj.apps.captioning.digit_strips(0, 4)
            >>> model = Captioner((8, 40), 13, 8, rj.LSTMCell(16), channels=(4, 8))
            >>> params = model.init(jax.random.key(0))
            >>> 2.0 < float(model.loss(params, data._asdict())) < 3.5   # about log(13) at the start
            True
            >>> step = rj.train.make_train_step(model.loss, optax.adam(1e-2))   # ready to train
        """
        del key
        for name in ("images", "captions", "lengths"):
            if name not in batch:
                raise KeyError(f"batch: expected the key {name!r} (images, captions, lengths), got {sorted(batch)}")
        captions = checks.token_ids(batch["captions"], "batch['captions']", 2, "[b, t]")
        lengths = checks.token_ids(batch["lengths"], "batch['lengths']", 1, "[b]")
        inputs = jnp.concatenate([jnp.full_like(captions[:, :1], BOS), captions[:, :-1]], axis=1)
        logits = jax.vmap(self.apply, (None, 0, 0, 0))(params, batch["images"], inputs, lengths)
        return sequence_cross_entropy(logits, captions, length_mask(lengths, captions.shape[1]))


# ----------------------------------------------------------------------------- decoding and scores


@functools.partial(jax.jit, static_argnames=("model", "beam_size", "max_len", "alpha"))
def decode_captions(
    model: Captioner, params: CaptionerParams, images: Array, *, max_len: int, beam_size: int | None = None, alpha=0.0
) -> tuple[Array, Array]:
    """Caption a batch of images: greedy decoding, or the best hypothesis of a beam search.

    Runs :func:`rnnjax.decode.greedy` (``beam_size=None``) or :func:`rnnjax.decode.beam_search`
    on ``model.step_fn``, vmapped over the images; jitted once per model, beam and shapes.

    Args:
      model: the :class:`Captioner` (static).
      params: from ``model.init``.
      images: ``[b, H, W]``.
      max_len: most tokens ``L`` (words and eos); ``max_digits + 1`` for :func:`digit_strips`.
      beam_size: None: greedy; ``k``: beam search.
      alpha: the beam's length-penalty exponent (0: plain log-probability).

    Returns:
      ``(tokens [b, L], lengths [b])``: eos included, then ``<pad>``.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> model = Captioner((8, 40), 13, 8, rj.LSTMCell(16), channels=(4, 8))
        >>> params = model.init(jax.random.key(0))
        >>> tokens, lengths = decode_captions(model, params, jnp.zeros((3, 8, 40)), max_len=6, beam_size=2)
        >>> tokens.shape, lengths.shape
        ((3, 6), (3,))
    """
    images = checks.floating(images, "images")
    if images.ndim != 3 or images.shape[1:] != model.image_shape:
        raise ValueError(
            f"images: expected shape [b, {model.image_shape[0]}, {model.image_shape[1]}], got {images.shape}"
        )
    with checks.checking(False):  # no value checks to run here, and checkify cannot batch the decoders' loops
        return _decode_batch(model, params, images, max_len, beam_size, alpha)


def _decode_batch(model: Captioner, params: CaptionerParams, images: Array, max_len: int, beam_size, alpha):
    carries = jax.vmap(model.encode, (None, 0))(params, images)
    if beam_size is None:
        greedy = functools.partial(decode.greedy, model.step_fn, max_len=max_len, eos=EOS, pad_id=PAD)
        return jax.vmap(lambda carry: greedy(params, carry, BOS))(carries)

    def best(carry):
        out = decode.beam_search(
            model.step_fn, params, carry, BOS, beam_size=beam_size, max_len=max_len, eos=EOS, alpha=alpha, pad_id=PAD
        )
        return out.tokens[0], out.lengths[0]

    return jax.vmap(best)(carries)


def caption_accuracy(tokens, captions, lengths) -> dict[str, float]:
    """Exact-caption and per-word accuracy of predicted captions against the references.

    A caption is exact when its words and its length match the reference (eos at the same
    place). Per-word accuracy counts, over the reference words (eos excluded), those with the
    same word at the same position in the prediction (a missing word is wrong).

    Args:
      tokens: predicted ids ``[b, L]`` (eos included, then pad), e.g. from :func:`decode_captions`.
      captions: reference ids ``[b, t]`` (words, eos, pad).
      lengths: reference lengths ``[b]`` (words + 1).

    Returns:
      ``{"exact": float, "word": float}``.

    Example:
        >>> import numpy as np, rnnjax as rj
        >>> refs = np.array([[6, 4, 7, 2], [5, 5, 2, 0]])
        >>> preds = np.array([[6, 4, 7, 2], [5, 6, 2, 0]])
        >>> rj.apps.captioning.caption_accuracy(preds, refs, np.array([4, 3]))
        {'exact': 0.5, 'word': 0.8}
    """
    tokens, captions, lengths = np.asarray(tokens), np.asarray(captions), np.asarray(lengths)
    if tokens.ndim != 2 or captions.ndim != 2 or tokens.shape[0] != captions.shape[0]:
        raise ValueError(f"tokens: expected shape [b, L] with b = captions' {captions.shape[:1]}, got {tokens.shape}")
    if lengths.shape != captions.shape[:1]:
        raise ValueError(f"lengths: expected shape {captions.shape[:1]}, got {lengths.shape}")
    width = max(tokens.shape[1], captions.shape[1])
    tokens = np.pad(tokens, ((0, 0), (0, width - tokens.shape[1])), constant_values=PAD)
    captions = np.pad(captions, ((0, 0), (0, width - captions.shape[1])), constant_values=PAD)
    steps = np.arange(width)
    same = tokens == captions
    exact = np.all(same | (steps >= lengths[:, None]), axis=1)
    words = steps < (lengths - 1)[:, None]
    return {"exact": float(exact.mean()), "word": float(same[words].mean())}


def attention_columns(model: Captioner, weights) -> np.ndarray:
    """The feature-map column each step attends to most: the argmax over ``gw`` of the weights
    summed over the rows.

    Args:
      model: the :class:`Captioner` (for :attr:`~Captioner.grid_shape`).
      weights: ``[..., t, p]`` attention weights, from ``model.apply(..., return_attention=True)``.

    Returns:
      ``[..., t]`` integer columns in ``[0, gw)``; a column ``j`` covers image columns
      ``[j W / gw, (j + 1) W / gw)``.

    Example:
        >>> import numpy as np, rnnjax as rj
        >>> model = Captioner((8, 8), 13, 4, rj.LSTMCell(4), channels=(2, 2))   # a 4 x 4 grid
        >>> weights = np.zeros((2, 16)); weights[0, 4 * 1 + 2] = 1; weights[1, 4 * 3 + 3] = 1
        >>> attention_columns(model, weights).tolist()
        [2, 3]
    """
    weights = np.asarray(weights)
    gh, gw = model.grid_shape
    if weights.ndim < 1 or weights.shape[-1] != gh * gw:
        raise ValueError(f"weights: expected a last axis of size p = {gh * gw}, got shape {weights.shape}")
    return weights.reshape(*weights.shape[:-1], gh, gw).sum(-2).argmax(-1)
