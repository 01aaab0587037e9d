"""Autoregressive decoding: greedy, sampling and beam search over a step callback, jitted with fixed shapes.

Every decoder reaches the model only through a step callback::

    step_fn(params, carry, token) -> (carry, logits)     # token: scalar int, logits: [v]

(a language model's or a seq2seq decoder's step, for ONE sequence; batch with ``jax.vmap``).
Decoding starts from ``carry`` by feeding ``bos``. Outputs have a fixed length ``max_len``:
the generated tokens, ``eos`` included, then ``pad_id``. Lengths count the ``eos``; a
sequence that reaches ``max_len`` without ``eos`` has length ``max_len``.
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rnnjax._src import checks
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
    checks.values(
        "bos", f"a token id in [0, {vocab}) (the vocabulary of step_fn's logits)", checks.in_range(0, vocab), bos
    )
    return vocab


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
    vocab = _check_start(step_fn, params, carry, bos, max_len, eos, pad_id)
    if top_k is not None:
        checks.positive_int(top_k, "top_k")
        if top_k > vocab:
            raise ValueError(f"top_k: expected at most the vocabulary size {vocab}, got {top_k}")
    _real_scalar(temperature, "temperature")
    finite = lambda t: checks.in_range(0, np.inf)(t.astype(np.float32))  # noqa: E731 -- an integer temperature too
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
