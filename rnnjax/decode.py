"""Decoding: greedy, sampling and beam search, jitted with fixed shapes.

Every decoder reaches the model only through a step callback::

    step_fn(params, carry, token) -> (carry, logits)     # token: scalar int, logits: [v]

(a language model's or a seq2seq decoder's step, for ONE sequence; batch with ``jax.vmap``).
Decoding starts from ``carry`` by feeding ``bos``. Outputs have a fixed length ``max_len``:
the generated tokens, ``eos`` included, then ``pad_id``. Lengths count the ``eos``; a
sequence that reaches ``max_len`` without ``eos`` has length ``max_len``.

The decoders are jitted with ``step_fn`` and the sizes as static arguments: a second call
with params of the same shapes does not retrace (pass the same ``step_fn`` object, not a new
lambda each time). Scores are computed in float32 whatever the model's dtype.

What is checked, and when: the sizes (``max_len``, ``eos``, ``beam_size``, ``top_k``, ...) and
every shape and dtype at each call, before anything runs (``eos`` and ``bos`` against the
vocabulary size of ``step_fn``'s logits, found from their shape). Values that may be arrays
(``bos``, ``temperature``, ``top_p``, CTC lengths and labels) are checked at once when concrete
(Python or NumPy numbers, arrays outside ``jit``); when traced (under your ``jit`` or ``vmap``)
only in checked mode, :func:`rnnjax.checking`, which also runs the decoders' own compiled loop
checkified so that checks inside ``step_fn`` raise. Outside checked mode nothing is added to the
compiled computation.

CTC (connectionist temporal classification) decoders work on frame posteriors instead, the
``[t, v]`` log-probabilities of an acoustic model for one utterance, with a ``blank`` label:
:func:`ctc_greedy` (best path, repeats merged then blanks dropped) and
:func:`ctc_prefix_beam_search` (the most likely label sequences, summed over alignments). Both
take the number of valid frames ``length``, have fixed shapes under ``jit`` and batch with
``jax.vmap``; labels are padded with ``pad_id`` (-1). Training uses :func:`optax.ctc_loss`;
:func:`ctc_loss_from_lengths` builds its padding flags from lengths (via
:func:`rnnjax.losses.length_mask`). :func:`error_rate` (CER/WER) and :func:`edit_distance` run on
the host.
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from rnnjax._src import checks, masks
from rnnjax.losses import length_mask
from rnnjax.typing import Array, Carry, Params, PRNGKey

_STATIC = ("step_fn", "max_len", "eos", "pad_id")


def _check_sizes(max_len, eos, pad_id):
    checks.positive_int(max_len, "max_len")
    if eos is not None and (isinstance(eos, bool) or not isinstance(eos, int) or eos < 0):
        raise ValueError(f"eos: expected a token id (int >= 0) or None, got {eos!r}")
    if isinstance(pad_id, bool) or not isinstance(pad_id, int):
        raise ValueError(f"pad_id: expected an int, got {pad_id!r}")


def _advance(step_fn, params, carry, token) -> tuple[Carry, Array]:
    """One step, shared by every decoder: the new carry and the next token's log-probabilities ``[v]`` (float32)."""
    carry, logits = step_fn(params, carry, token)
    logits = jnp.asarray(logits)
    if logits.ndim != 1:
        raise ValueError(f"step_fn: expected logits of shape [v] for one token, got shape {logits.shape}")
    return carry, jax.nn.log_softmax(logits.astype(jnp.float32))


def _start(step_fn, params, carry, bos) -> tuple[Carry, int]:
    """The carry in the dtype that the step keeps it in (it may change in the first step, see
    :func:`rnnjax.unroll`), and the vocabulary size ``v``."""
    step_carry, log_probs = jax.eval_shape(functools.partial(_advance, step_fn), params, carry, bos)
    return jax.tree_util.tree_map(lambda c, s: jnp.asarray(c, s.dtype), carry, step_carry), log_probs.shape[0]


_VOCAB_SIZES: dict = {}  # (step_fn, tree structure, leaf shapes and dtypes of (params, carry)) -> v


def _vocab_size(step_fn, params, carry) -> int:
    """The vocabulary size ``v``: the size of ``step_fn``'s logits, from their shape (memoised; a cheap lookup)."""
    leaves, treedef = jax.tree_util.tree_flatten((params, carry))
    key = (step_fn, treedef, tuple((np.shape(x), getattr(x, "dtype", type(x))) for x in leaves))
    if key not in _VOCAB_SIZES:
        if len(_VOCAB_SIZES) >= 256:
            _VOCAB_SIZES.clear()
        bos = jax.ShapeDtypeStruct((), jnp.int32)
        _VOCAB_SIZES[key] = jax.eval_shape(functools.partial(_advance, step_fn), params, carry, bos)[1].shape[0]
    return _VOCAB_SIZES[key]


def _check_start(step_fn, params, carry, bos, max_len, eos, pad_id) -> int:
    """The start-up check shared by every decoder: the sizes, and ``eos`` and ``bos`` against the
    vocabulary size ``v`` (returned). ``bos`` is checked at once when concrete, in checked mode when traced."""
    _check_sizes(max_len, eos, pad_id)
    if isinstance(bos, bool) or not isinstance(bos, int | np.integer):
        bos = checks.token_ids(bos, "bos", 0, "[] (one token id)")
    vocab = _vocab_size(step_fn, params, carry)
    if eos is not None and eos >= vocab:
        raise ValueError(f"eos: expected a token id below the vocabulary size {vocab}, got {eos}")
    checks.values("bos", f"a token id in [0, {vocab}) (the vocabulary of step_fn's logits)", _in(0, vocab), bos)
    return vocab


def _in(low, high):
    """``low <= x < high`` elementwise, for NumPy and JAX arrays (False for NaN)."""
    return lambda x: (x >= low) & (x < high)


class _LoopState(NamedTuple):
    step: Array  # []     number of tokens generated so far
    carry: Carry
    token: Array  # []     the last token fed
    tokens: Array  # [L]   generated tokens, pad_id after the end
    logprob: Array  # []   sum of log p of the generated tokens (float32)
    done: Array  # []      eos generated
    key: Any


def _decode_loop(pick, step_fn, params, carry, bos, key, max_len, eos, pad_id):
    """The loop shared by greedy and sampling: ``pick(log_probs, key) -> token``."""
    bos = jnp.asarray(bos, jnp.int32)

    def cond(state):
        return (state.step < max_len) & ~state.done

    def body(state):
        carry, log_probs = _advance(step_fn, params, state.carry, state.token)
        key, subkey = (None, None) if state.key is None else jax.random.split(state.key)
        token = pick(log_probs, subkey).astype(jnp.int32)
        done = jnp.asarray(False) if eos is None else token == eos
        return _LoopState(
            state.step + 1,
            carry,
            token,
            state.tokens.at[state.step].set(token),
            state.logprob + log_probs[token],
            done,
            key,
        )

    carry, _ = _start(step_fn, params, carry, bos)
    init = _LoopState(
        jnp.zeros((), jnp.int32),
        carry,
        bos,
        jnp.full((max_len,), pad_id, jnp.int32),
        jnp.zeros((), jnp.float32),
        jnp.asarray(False),
        key,
    )
    final = lax.while_loop(cond, body, init)
    return final.tokens, final.step, final.logprob


@checks.checked_jit(static_argnames=_STATIC)
def _greedy(step_fn, params, carry, bos, *, max_len, eos, pad_id):
    tokens, length, _ = _decode_loop(
        lambda log_probs, key: jnp.argmax(log_probs), step_fn, params, carry, bos, None, max_len, eos, pad_id
    )
    return tokens, length


def greedy(step_fn, params: Params, carry: Carry, bos, *, max_len: int, eos: int | None = None, pad_id: int = 0):
    """Greedy decoding: the most likely token at every step.

    Args:
      step_fn: ``step_fn(params, carry, token) -> (carry, logits [v])``.
      params: passed to ``step_fn``.
      carry: the carry before ``bos`` is fed.
      bos: the first token fed (scalar int in ``[0, v)``; checked at once when concrete, in
        checked mode :func:`rnnjax.checking` when traced).
      max_len: number of tokens to generate at most ``L``.
      eos: the end token, in ``[0, v)`` (None: always ``max_len`` tokens).
      pad_id: written after the end.

    Returns:
      ``(tokens [L], length)``: ``eos`` included in both.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> table = jnp.log(jnp.array([[0.1, 0.9, 0.0], [0.2, 0.1, 0.7], [1.0, 0.0, 0.0]]) + 1e-9)
        >>> step_fn = lambda params, carry, token: (carry, params[token])   # a Markov chain
        >>> tokens, length = rj.decode.greedy(step_fn, table, (), 0, max_len=5, eos=2)
        >>> tokens.tolist(), int(length)
        ([1, 2, 0, 0, 0], 2)
    """
    _check_start(step_fn, params, carry, bos, max_len, eos, pad_id)
    return _greedy(step_fn, params, carry, bos, max_len=max_len, eos=eos, pad_id=pad_id)


def _filter_logits(log_probs: Array, temperature, top_k, top_p) -> Array:
    """Temperature, then top-k, then nucleus (top-p) filtering; removed tokens get -inf."""
    logits = log_probs / temperature
    if top_k is not None:
        kth = lax.top_k(logits, top_k)[0][-1]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p is not None:
        order = jnp.argsort(-logits)
        sorted_probs = jax.nn.softmax(logits[order])
        # keep a token if the probability mass before it is < top_p (the first is always kept)
        mass_before = jnp.cumsum(sorted_probs) - sorted_probs
        keep_sorted = mass_before < top_p
        keep = jnp.zeros_like(keep_sorted).at[order].set(keep_sorted)
        logits = jnp.where(keep, logits, -jnp.inf)
    return logits


@checks.checked_jit(static_argnames=(*_STATIC, "top_k"))
def _sample(step_fn, params, carry, bos, key, *, max_len, eos, temperature, top_k, top_p, pad_id):
    temperature = jnp.asarray(temperature, jnp.float32)  # an integer temperature too

    def pick(log_probs, key):
        if top_k is not None and top_k > log_probs.shape[-1]:
            raise ValueError(f"top_k: expected at most the vocabulary size {log_probs.shape[-1]}, got {top_k}")
        logits = _filter_logits(log_probs, jnp.maximum(temperature, 1e-6), top_k, top_p)
        sampled = jax.random.categorical(key, logits)
        return jnp.where(temperature == 0, jnp.argmax(log_probs), sampled)

    tokens, length, _ = _decode_loop(pick, step_fn, params, carry, bos, key, max_len, eos, pad_id)
    return tokens, length


def _real_scalar(value, name: str) -> None:
    """A Python, NumPy or JAX real number (not a bool), a scalar."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return
    dtype = getattr(value, "dtype", None)
    if dtype is None or not (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    if np.ndim(value) != 0:
        raise ValueError(f"{name}: expected a scalar, got shape {np.shape(value)}")


def sample(
    step_fn,
    params: Params,
    carry: Carry,
    bos,
    key: PRNGKey,
    *,
    max_len: int,
    eos: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    pad_id: int = 0,
):
    """Ancestral sampling with temperature, top-k and nucleus (top-p) filtering.

    ``temperature == 0`` is greedy decoding; ``top_k=1`` too.

    Args:
      step_fn, params, carry, bos, max_len, eos, pad_id: as in :func:`greedy`.
      key: PRNG key.
      temperature: divides the log-probabilities (> 0 flattens or sharpens; 0 is argmax); finite
        and ``>= 0``.
      top_k: sample among the ``k`` most likely tokens only, ``1 <= top_k <= v``.
      top_p: sample among the smallest set of most likely tokens with mass >= ``top_p``;
        ``0 < top_p <= 1``.

    ``temperature`` and ``top_p`` may be traced arrays: their values are checked at once when
    concrete, in checked mode (:func:`rnnjax.checking`) when traced, like ``bos``.

    Returns:
      ``(tokens [L], length)``.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> table = jnp.log(jnp.array([[0.1, 0.9, 0.0], [0.2, 0.1, 0.7], [1.0, 0.0, 0.0]]) + 1e-9)
        >>> step_fn = lambda params, carry, token: (carry, params[token])
        >>> tokens, length = rj.decode.sample(step_fn, table, (), 0, jax.random.key(0), max_len=5, eos=2, top_k=1)
        >>> tokens.tolist()
        [1, 2, 0, 0, 0]
    """
    _check_start(step_fn, params, carry, bos, max_len, eos, pad_id)
    if top_k is not None:
        checks.positive_int(top_k, "top_k")
    _real_scalar(temperature, "temperature")
    finite = lambda t: _in(0, np.inf)(t.astype(np.float32))  # noqa: E731 -- an integer temperature too
    checks.values("temperature", "a finite temperature >= 0 (0 is greedy)", finite, temperature)
    if top_p is not None:
        _real_scalar(top_p, "top_p")
        checks.values("top_p", "0 < top_p <= 1", lambda p: (p > 0) & (p <= 1), top_p)
    return _sample(
        step_fn,
        params,
        carry,
        bos,
        key,
        max_len=max_len,
        eos=eos,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        pad_id=pad_id,
    )


def length_penalty(length: Array, alpha: float) -> Array:
    """GNMT's length penalty ``((5 + length) / 6) ** alpha`` (Wu et al. 2016).

    Example:
        >>> import rnnjax as rj
        >>> float(rj.decode.length_penalty(7, 1.0))
        2.0
    """
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


class BeamState(NamedTuple):
    """The beam search's loop state: ``k`` finished and ``k`` live hypotheses, kept apart (rows ``:k`` and ``k:``).

    Without ``eos`` nothing ends before ``max_len``, where every candidate ends: there are only the
    ``k`` live rows and no ``searching``, and the live hypotheses after the last step are the result.
    """

    step: Array  # []        tokens generated so far
    last: Array  # [k]       the token each live hypothesis feeds next (bos at first)
    tokens: Array  # [n, L]  finished then live hypotheses (n = 2k; k without eos), pad_id after the end
    scores: Array  # [n]     finished: length-normalised score; live: sum of log p (float32); -inf: empty slot
    live_carry: Carry  # [k, ...]  each live hypothesis' carry
    searching: Array | None  # []  step < max_len and a live hypothesis can still beat the worst finished one


class BeamOutput(NamedTuple):
    tokens: Array  # [k, L]  best first
    lengths: Array  # [k]
    scores: Array  # [k]     sum log p / length_penalty(length); -inf marks an empty slot


def _order_key(x: Array) -> Array:
    """float32 -> int32 keys in the order ``lax.top_k`` sorts by (total order: -0 < +0, NaN above +inf)."""
    bits = lax.bitcast_convert_type(x, jnp.int32)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


def _from_order_key(key: Array) -> Array:
    """The inverse of :func:`_order_key`."""
    return lax.bitcast_convert_type(key ^ ((key >> 31) & 0x7FFFFFFF), jnp.float32)


def _top_k(x: Array, n: int) -> tuple[Array, Array]:
    """``lax.top_k(x, n)`` of a 1-D float32 ``x``; for ``n == 1`` one reduction to (value, index), in the same order."""
    if n > 1:
        return lax.top_k(x, n)

    def better(a, b):  # (key, index) pairs: the larger key, on a tie the lower index
        take_a = (a[0] > b[0]) | ((a[0] == b[0]) & (a[1] < b[1]))
        return lax.select(take_a, a[0], b[0]), lax.select(take_a, a[1], b[1])

    init = (np.int32(np.iinfo(np.int32).min), np.int32(x.shape[0]))
    key, index = lax.reduce((_order_key(x), lax.iota(jnp.int32, x.shape[0])), init, better, (0,))
    return _from_order_key(key)[None], index[None]


def _take_first(keys: list[list[Array]], values: list[list[Array]], n: int) -> list[Array]:
    """The values of the first ``n`` of a few elements in a stable sort, by counting (no sort).

    Every key and value is a column given in parts (1-D arrays, the same parts for all). The
    ``keys`` (ints) are compared in turn, larger first; the position breaks the remaining ties,
    lower first. An element's place in the sorted order is the number of elements that come
    before it; slot ``i`` takes the element whose place is ``i``. For ``n == 1`` a knock-out
    over the elements in turn instead, elementwise only.
    """
    if n == 1:
        parts = zip(*keys, *values, strict=True)  # each: the same part of every column
        elements = [[x if len(x) == 1 else x[i : i + 1] for x in part] for part in parts for i in range(len(part[0]))]
        best = elements[0]
        for element in elements[1:]:
            before = jnp.asarray(False)  # the element comes before the best so far (a tie keeps the best)
            for key, b in zip(reversed(element[: len(keys)]), reversed(best[: len(keys)]), strict=True):
                before = (key > b) | ((key == b) & before)
            best = [lax.select(before, x, b) for x, b in zip(element, best, strict=True)]
        return best[len(keys) :]
    keys, values = [jnp.concatenate(parts) for parts in keys], [jnp.concatenate(parts) for parts in values]
    pos = jnp.arange(len(keys[0]))
    before = pos[:, None] < pos[None, :]  # [row, column]: the row comes before the column
    for key in reversed(keys):
        before = (key[:, None] > key[None, :]) | ((key[:, None] == key[None, :]) & before)
    place = jnp.sum(before, axis=0, dtype=jnp.int32)
    first = jnp.argmax(place[None, :] == jnp.arange(n, dtype=jnp.int32)[:, None], axis=1)
    return [value[first] for value in values]


def beam_search(
    step_fn,
    params: Params,
    carry: Carry,
    bos,
    *,
    beam_size: int,
    max_len: int,
    eos: int | None = None,
    alpha: float = 0.6,
    pad_id: int = 0,
) -> BeamOutput:
    """Beam search with GNMT length normalisation; returns the ``beam_size`` best hypotheses.

    Each step extends the ``k`` live hypotheses by every token and keeps the best ``2k``
    candidates (so ``k`` of them can still be alive after some end in ``eos``). Candidates that
    end (``eos``, or reaching ``max_len``) join the ``k`` finished hypotheses, kept apart from the
    live ones (as t5x does); the best ``k`` non-finished candidates stay live, their carries
    gathered from their parent beams. The search stops early only when no live hypothesis can
    still beat the worst finished one: its best possible score is
    ``live_logprob / length_penalty(max_len)`` (log-probabilities only fall, and for
    ``alpha >= 0`` the penalty only grows). So ``beam_size=1`` is never worse than greedy: without
    ``eos`` it is greedy; with ``eos`` it may return a better hypothesis that greedy passed by
    (e.g. ending where ``eos`` was the second most likely token).

    .. math:: \\mathrm{score}(y) = \\frac{\\sum_t \\log p(y_t \\mid y_{<t})}{((5 + |y|) / 6)^\\alpha}

    Each step is kept to few operations, since on an accelerator each costs a kernel launch. The
    ``k`` of the ``2k`` best that stay live are the best ``k`` candidates that do not end in
    ``eos`` (one ``top_k``, or one reduction for ``k = 1``); a candidate ending in ``eos`` is among
    the ``2k`` best when fewer than ``2k`` candidates beat it (a count); the merge with the
    finished ones ranks ``3k`` scores by counting. Ties are broken as ``lax.top_k`` breaks them:
    the lower index ``beam * v + token`` first. Without ``eos`` nothing ends before ``max_len``:
    each step only keeps the best ``k``, and the loop has a fixed trip count.

    Args:
      step_fn, params, carry, bos, max_len, eos, pad_id: as in :func:`greedy`.
      beam_size: ``k``.
      alpha: length-penalty exponent (0: plain sum of log-probabilities), >= 0.

    Returns:
      :class:`BeamOutput` ``(tokens [k, L], lengths [k], scores [k])``, best first.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> # from token 0: "1" is likely but leads to a bad continuation; "3" is a sure path to eos
        >>> probs = jnp.array([[0.0, 0.5, 0.0, 0.4, 0.1],   # 0 = bos
        ...                    [0.0, 0.0, 0.5, 0.0, 0.5],   # 1 -> eos (4) only half the time
        ...                    [0.0, 0.0, 0.0, 0.0, 1.0],
        ...                    [0.0, 0.0, 0.0, 0.0, 1.0],   # 3 -> eos surely
        ...                    [0.0, 0.0, 0.0, 0.0, 1.0]])
        >>> step_fn = lambda params, carry, token: (carry, jnp.log(params[token] + 1e-12))
        >>> greedy_tokens, _ = rj.decode.greedy(step_fn, probs, (), 0, max_len=3, eos=4)
        >>> out = rj.decode.beam_search(step_fn, probs, (), 0, beam_size=2, max_len=3, eos=4, alpha=0.0)
        >>> greedy_tokens.tolist(), out.tokens[0].tolist(), out.lengths.tolist()
        ([1, 2, 4], [3, 4, 0], [2, 2])

    References:
      Wu et al., "Google's neural machine translation system", 2016 (length penalty).
    """
    vocab = _check_start(step_fn, params, carry, bos, max_len, eos, pad_id)
    checks.positive_int(beam_size, "beam_size")
    if vocab < 2:
        raise ValueError(f"beam_size: needs a vocabulary of at least 2 tokens, got {vocab}")
    if not alpha >= 0:
        raise ValueError(f"alpha: expected a length-penalty exponent >= 0, got {alpha!r}")
    return _beam_search(
        step_fn, params, carry, bos, beam_size=beam_size, max_len=max_len, eos=eos, alpha=alpha, pad_id=pad_id
    )


@checks.checked_jit(static_argnames=(*_STATIC, "beam_size", "alpha"))
def _beam_search(step_fn, params, carry, bos, *, beam_size, max_len, eos, alpha, pad_id) -> BeamOutput:
    k = beam_size
    bos = jnp.asarray(bos, jnp.int32)
    neg_inf = jnp.float32(-jnp.inf)
    live = slice(0, k) if eos is None else slice(k, 2 * k)  # the live rows of tokens and scores

    carry, vocab = _start(step_fn, params, carry, bos)
    beam_step = jax.vmap(functools.partial(_advance, step_fn, params))
    beams = jnp.arange(k, dtype=jnp.int32)

    def parent_and_token(index):  # of candidates, from their index beam * v + token
        if k == 1:  # one beam
            return jnp.zeros_like(index), index
        return lax.div(index, np.int32(vocab)), lax.rem(index, np.int32(vocab))

    def extend(state: BeamState):
        """Feed each live hypothesis its last token: the new carries and the ``k v`` candidates' log-probabilities."""
        new_carry, log_probs = beam_step(state.live_carry, state.last)  # [k, ...], [k, v]
        return new_carry, (state.scores[live, None] + log_probs).reshape(-1)

    def gather_carry(new_carry, parent):  # the live hypotheses' carries from their parents'
        return new_carry if k == 1 else jax.tree_util.tree_map(lambda c: c[parent], new_carry)

    def write(state: BeamState, rows: Array, token: Array, written: Array | bool = True) -> Array:
        """Token rows ``rows`` of the state, with ``token`` written at the current step where ``written``."""
        at_step = jnp.arange(max_len, dtype=jnp.int32) == state.step
        if k == 1:  # one or two rows: a select instead of a gather
            taken = jnp.where((rows == 0)[:, None], state.tokens[0], state.tokens[-1])
        else:
            taken = state.tokens[rows]
        return jnp.where(at_step & jnp.asarray(written)[..., None], token[:, None], taken)

    def body_without_eos(state: BeamState):
        # nothing ends before max_len, where everything does: the best k of the 2k are the best k
        new_carry, candidates = extend(state)
        logprobs, index = _top_k(candidates, k)
        parent, token = parent_and_token(index)
        return BeamState(
            step=state.step + 1,
            last=token,
            tokens=write(state, parent, token),
            scores=logprobs,
            live_carry=gather_carry(new_carry, parent),
            searching=None,
        )

    def body(state: BeamState):
        length = state.step + 1
        new_carry, candidates = extend(state)  # [k v]
        flat = jnp.arange(k * vocab, dtype=jnp.int32)
        # live: the best k candidates that do not end in eos, which are the first k of the 2k best
        # that do not end (at most k of the 2k end in eos); at max_len they end instead
        live_logprobs, index = _top_k(jnp.where(np.arange(k * vocab) % vocab == eos, neg_inf, candidates), k)
        parent, token = parent_and_token(index)

        # the candidates that end: those in eos among the 2k best, and at max_len all of the 2k
        # best, of which only the best k can be kept: those in eos and the k live ones. A
        # candidate's rank in lax.top_k's order is the number of candidates that beat it.
        def beats(key_a, index_a, key_b, index_b):
            return (key_a > key_b) | ((key_a == key_b) & (index_a < index_b))

        key = _order_key(candidates)
        eos_index = beams * vocab + eos
        eos_logprobs, eos_key = candidates.reshape(k, vocab)[:, eos], key.reshape(k, vocab)[:, eos]
        eos_rank = jnp.sum(beats(key, flat, eos_key[:, None], eos_index[:, None]), axis=1, dtype=jnp.int32)
        # live one j: beaten by the live ones before it and by the eos candidates that beat it
        live_key = _order_key(live_logprobs)
        live_rank = beams + jnp.sum(
            beats(eos_key[:, None], eos_index[:, None], live_key, index), axis=0, dtype=jnp.int32
        )

        # finished: the best k of the k kept and the 2k that can end, in lax.top_k's order over the
        # kept ones then the candidates best first. Each column has a part for the kept ones, the
        # eos candidates and the live ones.
        penalty = length_penalty(length, alpha)
        eos_scores, live_scores = eos_logprobs / penalty, live_logprobs / penalty
        lowest, zeros, ones = jnp.iinfo(jnp.int32).min, jnp.zeros((k,), jnp.int32), jnp.ones((k,), bool)
        keys = [  # compared in turn, larger first
            [  # the score; lowest for a candidate that does not end now
                _order_key(state.scores[:k]),
                jnp.where(eos_rank < 2 * k, _order_key(eos_scores), lowest),
                jnp.where(length == max_len, _order_key(live_scores), lowest),
            ],
            [k - beams, -eos_rank, -live_rank],  # the kept ones first, in order, then the candidates in theirs
        ]
        values = [
            [state.scores[:k], eos_scores, live_scores],
            [beams, k + beams, k + parent],  # the row of tokens it extends (or keeps)
            [zeros, zeros + eos, token],  # the token it adds
            [~ones, ones, ones],  # whether it adds one
        ]
        finished_scores, source, added, new = _take_first(keys, values, k)
        can_improve = jnp.max(live_logprobs) / length_penalty(max_len, alpha) > jnp.min(finished_scores)
        return BeamState(
            step=length,
            last=token,
            tokens=write(
                state,
                jnp.concatenate([source, k + parent]),
                jnp.concatenate([added, token]),
                jnp.concatenate([new, jnp.ones((k,), bool)]),
            ),
            scores=jnp.concatenate([finished_scores, live_logprobs]),
            live_carry=gather_carry(new_carry, parent),
            searching=(length < max_len) & can_improve,
        )

    n = k if eos is None else 2 * k
    init = BeamState(
        step=jnp.zeros((), jnp.int32),
        last=jnp.full((k,), bos),
        tokens=jnp.full((n, max_len), pad_id, jnp.int32),
        # no finished hypothesis; one live hypothesis (so no duplicates)
        scores=jnp.full((n,), neg_inf).at[live.start].set(0.0),
        live_carry=jax.tree_util.tree_map(lambda c: jnp.broadcast_to(c, (k, *jnp.shape(c))), carry),
        searching=None if eos is None else jnp.asarray(True),
    )
    if eos is None:
        final = lax.while_loop(lambda state: state.step < max_len, body_without_eos, init)
        # every hypothesis ends at max_len; as in a merge with k empty finished slots, a -inf
        # hypothesis leaves its slot empty
        scores = final.scores / length_penalty(max_len, alpha)
        found = scores > neg_inf
        return BeamOutput(jnp.where(found[:, None], final.tokens, pad_id), jnp.where(found, final.step, 0), scores)
    final = lax.while_loop(lambda state: state.searching, body, init)
    # a finished hypothesis ends in its only eos, or at max_len; an empty slot has score -inf
    tokens, scores = final.tokens[:k], final.scores[:k]
    has_eos = tokens == eos
    lengths = jnp.where(jnp.any(has_eos, axis=1), jnp.argmax(has_eos, axis=1) + 1, max_len)
    return BeamOutput(tokens, jnp.where(scores == neg_inf, 0, lengths).astype(jnp.int32), scores)


# --------------------------------------------------------------------------------------------
# CTC decoding: frame posteriors [t, v] -> label sequences (blank and repeats collapsed)
# --------------------------------------------------------------------------------------------


def _ctc_inputs(log_probs, length, blank, pad_id):
    log_probs = checks.floating(log_probs, "log_probs")
    if log_probs.ndim != 2:
        hint = " (one utterance; batch with jax.vmap)" if log_probs.ndim == 3 else ""
        raise ValueError(f"log_probs: expected shape [t, v]{hint}, got shape {tuple(log_probs.shape)}")
    num_steps, vocab = log_probs.shape
    if isinstance(blank, bool) or not isinstance(blank, int) or not 0 <= blank < vocab:
        raise ValueError(f"blank: expected a label id in [0, {vocab}) (the vocabulary v of log_probs), got {blank!r}")
    if isinstance(pad_id, bool) or not isinstance(pad_id, int):
        raise ValueError(f"pad_id: expected an int, got {pad_id!r}")
    return log_probs, checks.length(length, num_steps)


@functools.partial(jax.jit, static_argnames=("blank", "pad_id"))
def _ctc_greedy(log_probs, length, blank, pad_id):
    num_steps = log_probs.shape[0]
    best = jnp.argmax(log_probs, axis=-1).astype(jnp.int32)  # [t]
    previous = jnp.concatenate([jnp.full((1,), -1, jnp.int32), best])[:-1]
    keep = (best != blank) & (best != previous)
    if length is not None:
        keep = keep & masks.valid_mask(length, num_steps)
    position = jnp.where(keep, jnp.cumsum(keep) - 1, num_steps)  # dropped steps go out of range
    labels = jnp.full((num_steps,), pad_id, jnp.int32).at[position].set(best, mode="drop")
    return labels, jnp.sum(keep, dtype=jnp.int32)


def ctc_greedy(log_probs: Array, length: Array | int | None = None, *, blank: int = 0, pad_id: int = -1):
    """CTC best-path decoding: the most likely label per frame, repeats merged, then blanks dropped.

    ``a a _ a b b _`` gives ``a a b``: repeats merge unless a blank separates them. This is the
    label sequence of the single most likely alignment, not always the most likely label sequence
    (which sums over alignments: see :func:`ctc_prefix_beam_search`).

    Args:
      log_probs: frame log-probabilities (or logits: only the argmax matters) ``[t, v]`` of one
        utterance; batch with ``jax.vmap``.
      length: number of valid frames (int scalar; frames from ``length`` on are ignored), or None
        for all ``t``.
      blank: the blank label id.
      pad_id: written after the last label.

    Returns:
      ``(labels [t], num_labels)``: the decoded labels, then ``pad_id``.

    Example:
        >>> import jax.numpy as jnp, rnnjax as rj
        >>> best_path = jnp.array([1, 1, 0, 1, 2, 2, 0])   # "a a _ a b b _", blank = 0
        >>> labels, n = rj.decode.ctc_greedy(jnp.eye(3)[best_path])
        >>> labels.tolist(), int(n)
        ([1, 1, 2, -1, -1, -1, -1], 3)
    """
    log_probs, length = _ctc_inputs(log_probs, length, blank, pad_id)
    return _ctc_greedy(log_probs, length, blank, pad_id)


class CTCBeamState(NamedTuple):
    """The CTC prefix beam search's loop state: ``k`` distinct prefixes (label sequences so far)."""

    prefixes: Array  # [k, l]   labels, -1 after the prefix's length; empty slots hold the empty prefix
    lengths: Array  # [k]       number of labels of each prefix
    log_blank: Array  # [k]     log P(prefix, alignment so far ends in blank) (float32); -inf: empty slot
    log_label: Array  # [k]     log P(prefix, alignment so far ends in the prefix's last label)


class CTCBeamOutput(NamedTuple):
    """What :func:`ctc_prefix_beam_search` returns: ``k`` label sequences, best first."""

    labels: Array  # [k, l]  best first, pad_id after the length
    lengths: Array  # [k]
    scores: Array  # [k]     log P(labels | frames) summed over alignments; -inf marks an empty slot


def _ctc_beam_step(state: CTCBeamState, frame, blank):
    """One frame of prefix search: extend every prefix, merge identical prefixes, keep the best ``k``."""
    y, active = frame  # [v] log-probabilities of this frame, [] whether it is inside ``length``
    k, max_labels = state.prefixes.shape
    vocab = y.shape[0]
    neg_inf = jnp.float32(-jnp.inf)
    rows = jnp.arange(k)
    total = jnp.logaddexp(state.log_blank, state.log_label)  # [k]
    alive = total > neg_inf
    has_last = state.lengths > 0
    last = jnp.where(has_last, state.prefixes[rows, jnp.maximum(state.lengths - 1, 0)], 0)  # [k]

    # the prefix stays: a blank (from either ending), or its last label repeated (only from a label ending)
    stay_blank = total + y[blank]
    stay_label = jnp.where(has_last, state.log_label + y[last], neg_inf)

    # the prefix grows by label c: a repeat of the last label needs a blank in between
    labels = jnp.arange(vocab)
    grow = jnp.where((labels[None, :] == last[:, None]) & has_last[:, None], state.log_blank[:, None], total[:, None])
    grow = grow + y[None, :]  # [k, v]
    grow = jnp.where((labels[None, :] == blank) | (state.lengths[:, None] >= max_labels), neg_inf, grow)

    # merge: prefix i == prefix j + c when i minus its last label is j, and c is i's last label
    positions = jnp.arange(max_labels)
    parent_part = jnp.where(positions[None, :] == state.lengths[:, None] - 1, -1, state.prefixes)  # [k, l]
    is_child = (
        (has_last & alive)[:, None]
        & alive[None, :]
        & (state.lengths[:, None] == state.lengths[None, :] + 1)
        & jnp.all(parent_part[:, None, :] == state.prefixes[None, :, :], axis=-1)
    )  # [k (child i), k (parent j)]; beams are distinct, so each i has at most one parent
    has_parent = jnp.any(is_child, axis=1)
    parent = jnp.argmax(is_child, axis=1)
    merged = jnp.where(has_parent, grow[parent, last], neg_inf)
    stay_label = jnp.logaddexp(stay_label, merged)
    grow = grow.at[jnp.where(has_parent, parent, k), last].set(neg_inf, mode="drop")  # now counted in beam i

    # the best k of: k prefixes that stay and k * v grown ones
    cand_blank = jnp.concatenate([stay_blank, jnp.full((k * vocab,), neg_inf)])
    cand_label = jnp.concatenate([stay_label, grow.reshape(-1)])
    scores, pick = lax.top_k(jnp.logaddexp(cand_blank, cand_label), k)
    grown = pick >= k
    source = jnp.where(grown, (pick - k) // vocab, pick)
    label = ((pick - k) % vocab).astype(jnp.int32)
    lengths = state.lengths[source]
    prefixes = jnp.where(
        grown[:, None] & (positions[None, :] == lengths[:, None]), label[:, None], state.prefixes[source]
    )
    lengths = lengths + grown.astype(jnp.int32)
    keep = scores > neg_inf  # an empty slot holds the empty prefix, so it never matches a child
    new = CTCBeamState(
        prefixes=jnp.where(keep[:, None], prefixes, -1),
        lengths=jnp.where(keep, lengths, 0),
        log_blank=cand_blank[pick],
        log_label=cand_label[pick],
    )
    new = jax.tree_util.tree_map(lambda n, o: jnp.where(active, n, o), new, state)
    return new, None


@functools.partial(jax.jit, static_argnames=("beam_size", "blank", "max_labels", "pad_id"))
def _ctc_prefix_beam_search(log_probs, length, beam_size, blank, max_labels, pad_id):
    num_steps = log_probs.shape[0]
    log_probs = jax.nn.log_softmax(log_probs.astype(jnp.float32), axis=-1)
    active = masks.valid_mask(length, num_steps)
    k, neg_inf = beam_size, jnp.float32(-jnp.inf)
    init = CTCBeamState(
        prefixes=jnp.full((k, max_labels), -1, jnp.int32),
        lengths=jnp.zeros((k,), jnp.int32),
        log_blank=jnp.full((k,), neg_inf).at[0].set(0.0),  # one live prefix, the empty one
        log_label=jnp.full((k,), neg_inf),
    )
    final, _ = lax.scan(functools.partial(_ctc_beam_step, blank=blank), init, (log_probs, active))
    scores = jnp.logaddexp(final.log_blank, final.log_label)
    order = jnp.argsort(-scores, stable=True)  # top_k keeps them sorted; this covers length == 0
    labels = jnp.where(final.prefixes >= 0, final.prefixes, pad_id)
    return CTCBeamOutput(labels[order], final.lengths[order], scores[order])


def ctc_prefix_beam_search(
    log_probs: Array,
    length: Array | int | None = None,
    *,
    beam_size: int,
    blank: int = 0,
    max_labels: int | None = None,
    pad_id: int = -1,
) -> CTCBeamOutput:
    """CTC prefix beam search: the ``beam_size`` most likely label sequences, summed over alignments.

    A CTC model gives per-frame probabilities ``y[s, c]`` over labels and a blank; a label sequence
    ``l`` has probability :math:`P(l) = \\sum_{\\pi: B(\\pi) = l} \\prod_s y[s, \\pi_s]`, where
    :math:`B` merges repeats and then drops blanks. Prefix search keeps ``k`` distinct prefixes,
    each with two probabilities: ``p_b`` (the alignments so far end in a blank) and ``p_nb`` (they
    end in the prefix's last label). At each frame a prefix ``l`` stays ``l`` through a blank
    (``p_b' += (p_b + p_nb) y_blank``) or a repeat of its last label (``p_nb' += p_nb y_last``), and
    grows to ``l + c`` (``p_nb' += (p_b + p_nb) y_c``, but only ``p_b y_c`` when ``c`` is the last
    label: a repeat needs a blank in between). A grown prefix that is already in the beam is merged
    into it (its mass added to that beam's ``p_nb``); then the best ``k`` by ``p_b + p_nb`` stay.

    Everything has fixed shapes: the candidates are the ``k`` prefixes that stay and ``k v`` grown
    ones (parent beam, label); a grown candidate duplicates beam ``i`` exactly when ``i`` minus its
    last label equals the parent, found by comparing the ``[k, l]`` prefix buffers. One
    ``lax.scan`` over the frames, in log space (float32), jitted with the sizes static; batch with
    ``jax.vmap``. With a beam wide enough to hold every prefix the search is exact; a narrower
    beam can only under-estimate scores (mass of pruned prefixes is lost).

    Args:
      log_probs: frame log-probabilities ``[t, v]`` of one utterance (logits work too: they are
        normalised with ``log_softmax``).
      length: number of valid frames (int scalar; later frames are ignored), or None for all ``t``.
      beam_size: ``k``, the number of prefixes kept.
      blank: the blank label id.
      max_labels: ``l``, the longest prefix kept (default ``t``; longer prefixes are dropped).
      pad_id: written after each sequence's labels.

    Returns:
      :class:`CTCBeamOutput` ``(labels [k, l], lengths [k], scores [k])``, best first; ``scores``
      is ``log P(labels | frames)``; ``-inf`` marks an empty slot (fewer than ``k`` sequences have
      a nonzero probability).

    Example:
        >>> import jax.numpy as jnp, rnnjax as rj
        >>> # two frames, blank = 0: the best path is "_ _" (0.36), but "a" has 0.24 + 0.24 + 0.16 = 0.64
        >>> probs = jnp.array([[0.6, 0.4], [0.6, 0.4]])
        >>> rj.decode.ctc_greedy(jnp.log(probs))[1].item()
        0
        >>> out = rj.decode.ctc_prefix_beam_search(jnp.log(probs), beam_size=2)
        >>> out.labels.tolist(), out.lengths.tolist(), [round(float(p), 2) for p in jnp.exp(out.scores)]
        ([[1, -1], [-1, -1]], [1, 0], [0.64, 0.36])

    References:
      Graves, "Supervised sequence labelling with recurrent neural networks", 2012 (prefix search);
      Hannun et al., "First-pass large vocabulary continuous speech recognition using bi-directional
      recurrent DNNs", 2014.
    """
    log_probs, length = _ctc_inputs(log_probs, length, blank, pad_id)
    checks.positive_int(beam_size, "beam_size")
    if max_labels is None:
        max_labels = max(log_probs.shape[0], 1)
    checks.positive_int(max_labels, "max_labels")
    return _ctc_prefix_beam_search(log_probs, length, beam_size, blank, int(max_labels), pad_id)


_optax_ctc_loss = jax.jit(optax.ctc_loss, static_argnames="blank_id")


def ctc_loss_from_lengths(
    logits: Array, lengths: Array, labels: Array, label_lengths: Array, *, blank: int = 0
) -> Array:
    """Per-sequence CTC loss ``-log P(labels | frames)`` from lengths: :func:`optax.ctc_loss` with paddings built.

    optax wants padding flags (1.0 on padded frames and labels); this builds them with
    :func:`rnnjax.losses.length_mask`. Frames from ``lengths`` on and labels from ``label_lengths``
    on are ignored. A label sequence that cannot fit in its frames (it needs one frame per label
    plus one blank between repeated labels) gets a huge finite loss (optax's ``log_epsilon``).

    Args:
      logits: frame logits ``[b, t, v]`` (or ``[t, v]`` for one utterance).
      lengths: valid frames ``[b]`` (or a scalar), in ``[0, t]``.
      labels: target label ids ``[b, n]`` (or ``[n]``), in ``[0, v)`` and never ``blank`` before
        ``label_lengths`` (the padding after it may hold anything).
      label_lengths: valid labels ``[b]`` (or a scalar), in ``[0, n]``.
      blank: the blank label id.

    Returns:
      Losses ``[b]`` (or a scalar), in nats; average them yourself (e.g. per label).

    Checks: the shapes, dtypes and ``blank`` always; the values of ``lengths``,
    ``label_lengths`` and the valid ``labels`` at once when concrete (called outside ``jit``),
    under ``jit`` in checked mode only (:func:`rnnjax.checking`).

    Example:
        >>> import jax.numpy as jnp, rnnjax as rj
        >>> logits = jnp.log(jnp.array([[0.6, 0.4], [0.6, 0.4], [0.5, 0.5]]))   # the third frame is padding
        >>> loss = rj.decode.ctc_loss_from_lengths(logits, 2, jnp.array([1, 1]), 1)   # P("a") = 0.64
        >>> round(float(jnp.exp(-loss)), 4)
        0.64
    """
    logits = checks.floating(logits, "logits")
    labels = checks.token_ids(labels, "labels")
    single = logits.ndim == 2
    if logits.ndim not in (2, 3):
        raise ValueError(f"logits: expected shape [b, t, v] (or [t, v]), got shape {tuple(logits.shape)}")
    if labels.ndim != logits.ndim - 1:
        raise ValueError(f"labels: expected shape {'[n]' if single else '[b, n]'}, got shape {tuple(labels.shape)}")
    vocab = logits.shape[-1]
    if isinstance(blank, bool) or not isinstance(blank, int) or not 0 <= blank < vocab:
        raise ValueError(f"blank: expected a label id in [0, {vocab}) (the vocabulary v of logits), got {blank!r}")
    lengths = checks.token_ids(lengths, "lengths", ndim=logits.ndim - 2, shape="[]" if single else "[b]")
    label_lengths = checks.token_ids(
        label_lengths, "label_lengths", ndim=logits.ndim - 2, shape="[]" if single else "[b]"
    )
    num_frames, num_labels = logits.shape[-2], labels.shape[-1]
    checks.values("lengths", f"0 <= lengths <= {num_frames} (the frames t of logits)", _in(0, num_frames + 1), lengths)
    checks.values(
        "label_lengths",
        f"0 <= label_lengths <= {num_labels} (the labels n of labels)",
        _in(0, num_labels + 1),
        label_lengths,
    )
    if single:
        logits, labels, lengths, label_lengths = logits[None], labels[None], lengths[None], label_lengths[None]
    dtype = logits.dtype
    logit_paddings = (~length_mask(lengths, num_frames)).astype(dtype)
    label_valid = length_mask(label_lengths, num_labels)
    checks.values(
        "labels",
        f"label ids in [0, {vocab}) other than blank ({blank}) before label_lengths",
        lambda ids, valid: ((ids >= 0) & (ids < vocab) & (ids != blank)) | ~valid,
        labels,
        label_valid,
    )
    label_paddings = (~label_valid).astype(dtype)
    losses = _optax_ctc_loss(logits, logit_paddings, labels, label_paddings, blank_id=blank)
    return losses[0] if single else losses


def edit_distance(hyp, ref) -> int:
    """Levenshtein distance: the fewest substitutions, insertions and deletions turning ``hyp`` into ``ref``.

    Host-side (pure Python). Sequences are strings, lists or 1-D arrays (slice decoded labels to
    their length first).

    Example:
        >>> import rnnjax as rj
        >>> rj.decode.edit_distance("kitten", "sitting"), rj.decode.edit_distance([1, 2, 3], [1, 3])
        (3, 1)
    """
    hyp, ref = _as_sequence(hyp, "hyp"), _as_sequence(ref, "ref")
    previous = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, 1):
        current = [i]
        for j, r in enumerate(ref, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (h != r)))
        previous = current
    return previous[-1]


def _as_sequence(x, name):
    if hasattr(x, "ndim") and hasattr(x, "tolist"):
        if x.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D sequence, got shape {tuple(x.shape)}")
        return x.tolist()
    if isinstance(x, str):
        return x
    try:
        return list(x)
    except TypeError:
        raise TypeError(f"{name}: expected a sequence (str, list or 1-D array), got {type(x).__name__}") from None


def error_rate(hyp, ref) -> float:
    """Error rate ``edit_distance(hyp, ref) / len(ref)``: CER on characters, WER on words.

    For a corpus, sum the edit distances and divide by the total reference length (not the mean of
    per-utterance rates). It can exceed 1 (many insertions).

    Args:
      hyp: the decoded sequence (str, list or 1-D array).
      ref: the reference, non-empty.

    Returns:
      A Python float.

    Example:
        >>> import rnnjax as rj
        >>> rj.decode.error_rate("the cat sat".split(), "the cat sat down".split())   # WER
        0.25
        >>> round(rj.decode.error_rate("helo wrld", "hello world"), 4)                  # CER
        0.1818
    """
    n = len(_as_sequence(ref, "ref"))
    if n == 0:
        raise ValueError("ref: expected a non-empty reference (the error rate divides by its length)")
    return edit_distance(hyp, ref) / n
