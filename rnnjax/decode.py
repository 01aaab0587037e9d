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
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from rnnjax import _checks
from rnnjax.typing import Array, Carry, Params, PRNGKey

_STATIC = ("step_fn", "max_len", "eos", "pad_id")


def _check_sizes(max_len, eos, pad_id):
    _checks.positive_int(max_len, "max_len")
    if eos is not None and (isinstance(eos, bool) or not isinstance(eos, int) or eos < 0):
        raise ValueError(f"eos: expected a token id (int >= 0) or None, got {eos!r}")
    if isinstance(pad_id, bool) or not isinstance(pad_id, int):
        raise ValueError(f"pad_id: expected an int, got {pad_id!r}")


def _log_probs(logits: Array) -> Array:
    logits = jnp.asarray(logits)
    if logits.ndim != 1:
        raise ValueError(f"step_fn: expected logits of shape [v] for one token, got shape {logits.shape}")
    return jax.nn.log_softmax(logits.astype(jnp.float32))


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
        carry, logits = step_fn(params, state.carry, state.token)
        log_probs = _log_probs(logits)
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

    init = _LoopState(
        jnp.zeros((), jnp.int32),
        carry,
        bos,
        jnp.full((max_len,), pad_id, jnp.int32),
        jnp.zeros((), jnp.float32),
        jnp.asarray(False),
        key,
    )
    # the carry may change dtype in the first step (see rnnjax.unroll): fix it up front
    step_carry = jax.eval_shape(step_fn, params, carry, bos)[0]
    init = init._replace(carry=jax.tree_util.tree_map(lambda c, s: jnp.asarray(c, s.dtype), carry, step_carry))
    final = lax.while_loop(cond, body, init)
    return final.tokens, final.step, final.logprob


@functools.partial(jax.jit, static_argnames=_STATIC)
def greedy(step_fn, params: Params, carry: Carry, bos, *, max_len: int, eos: int | None = None, pad_id: int = 0):
    """Greedy decoding: the most likely token at every step.

    Args:
      step_fn: ``step_fn(params, carry, token) -> (carry, logits [v])``.
      params: passed to ``step_fn``.
      carry: the carry before ``bos`` is fed.
      bos: the first token fed (scalar int).
      max_len: number of tokens to generate at most ``L``.
      eos: the end token (None: always ``max_len`` tokens).
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
    _check_sizes(max_len, eos, pad_id)
    tokens, length, _ = _decode_loop(
        lambda log_probs, key: jnp.argmax(log_probs), step_fn, params, carry, bos, None, max_len, eos, pad_id
    )
    return tokens, length


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


@functools.partial(jax.jit, static_argnames=(*_STATIC, "top_k"))
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
      temperature: divides the log-probabilities (> 0 flattens or sharpens; 0 is argmax).
      top_k: sample among the ``k`` most likely tokens only.
      top_p: sample among the smallest set of most likely tokens with mass >= ``top_p``.

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
    _check_sizes(max_len, eos, pad_id)
    if top_k is not None:
        _checks.positive_int(top_k, "top_k")

    def pick(log_probs, key):
        if top_k is not None and top_k > log_probs.shape[-1]:
            raise ValueError(f"top_k: expected at most the vocabulary size {log_probs.shape[-1]}, got {top_k}")
        logits = _filter_logits(log_probs, jnp.maximum(temperature, 1e-6), top_k, top_p)
        sampled = jax.random.categorical(key, logits)
        return jnp.where(temperature == 0, jnp.argmax(log_probs), sampled)

    tokens, length, _ = _decode_loop(pick, step_fn, params, carry, bos, key, max_len, eos, pad_id)
    return tokens, length


def length_penalty(length: Array, alpha: float) -> Array:
    """GNMT's length penalty ``((5 + length) / 6) ** alpha`` (Wu et al. 2016).

    Example:
        >>> import rnnjax as rj
        >>> float(rj.decode.length_penalty(7, 1.0))
        2.0
    """
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


class BeamState(NamedTuple):
    """The beam search's loop state: ``k`` live and ``k`` finished hypotheses, kept apart."""

    step: Array  # []          tokens generated so far
    live_tokens: Array  # [k, L]   live hypotheses (pad_id after step)
    live_logprobs: Array  # [k]     sum of log p (float32); -inf for an empty slot
    live_carry: Carry  # [k, ...]  each live hypothesis' carry
    finished_tokens: Array  # [k, L]
    finished_scores: Array  # [k]   length-normalised scores; -inf for an empty slot
    finished_lengths: Array  # [k]  tokens, eos included


class BeamOutput(NamedTuple):
    tokens: Array  # [k, L]  best first
    lengths: Array  # [k]
    scores: Array  # [k]     sum log p / length_penalty(length); -inf marks an empty slot


@functools.partial(jax.jit, static_argnames=(*_STATIC, "beam_size", "alpha"))
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
    _check_sizes(max_len, eos, pad_id)
    _checks.positive_int(beam_size, "beam_size")
    if not alpha >= 0:
        raise ValueError(f"alpha: expected a length-penalty exponent >= 0, got {alpha!r}")
    k = beam_size
    bos = jnp.asarray(bos, jnp.int32)
    neg_inf = jnp.float32(-jnp.inf)

    step_carry = jax.eval_shape(step_fn, params, carry, bos)[0]
    carry = jax.tree_util.tree_map(lambda c, s: jnp.asarray(c, s.dtype), carry, step_carry)
    beam_step = jax.vmap(step_fn, in_axes=(None, 0, 0))

    def cond(state: BeamState):
        # the best a live hypothesis can still reach, against the worst finished one
        best_live = jnp.max(state.live_logprobs) / length_penalty(max_len, alpha)
        can_improve = best_live > jnp.min(state.finished_scores)
        return (state.step < max_len) & can_improve

    def body(state: BeamState):
        t = state.step
        last = jnp.where(t == 0, bos, state.live_tokens[:, jnp.maximum(t - 1, 0)])
        new_carry, logits = beam_step(params, state.live_carry, last)
        if logits.ndim != 2:
            raise ValueError(f"step_fn: expected logits of shape [v] for one token, got {logits.shape[1:]}")
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))  # [k, v]
        vocab = log_probs.shape[-1]
        if 2 * k > k * vocab:
            raise ValueError(f"beam_size: needs a vocabulary of at least 2 tokens, got {vocab}")
        candidates = (state.live_logprobs[:, None] + log_probs).reshape(-1)  # [k v]
        cand_logprobs, cand_index = lax.top_k(candidates, 2 * k)  # [2k]
        parent, token = cand_index // vocab, (cand_index % vocab).astype(jnp.int32)
        cand_tokens = state.live_tokens[parent].at[:, t].set(token)  # [2k, L]
        length = t + 1
        ends = jnp.full((2 * k,), length == max_len) if eos is None else (token == eos) | (length == max_len)

        # finished: merge the k kept with the candidates that end now; keep the best k
        cand_scores = jnp.where(ends, cand_logprobs / length_penalty(length, alpha), neg_inf)
        all_scores = jnp.concatenate([state.finished_scores, cand_scores])
        all_tokens = jnp.concatenate([state.finished_tokens, cand_tokens])
        all_lengths = jnp.concatenate([state.finished_lengths, jnp.full((2 * k,), length, jnp.int32)])
        finished_scores, keep = lax.top_k(all_scores, k)

        # live: the best k candidates that do not end
        live_candidates = jnp.where(ends, neg_inf, cand_logprobs)
        live_logprobs, pick = lax.top_k(live_candidates, k)
        live_parent = parent[pick]
        return BeamState(
            step=t + 1,
            live_tokens=cand_tokens[pick],
            live_logprobs=live_logprobs,
            live_carry=jax.tree_util.tree_map(lambda c: c[live_parent], new_carry),
            finished_tokens=all_tokens[keep],
            finished_scores=finished_scores,
            finished_lengths=all_lengths[keep],
        )

    init = BeamState(
        step=jnp.zeros((), jnp.int32),
        live_tokens=jnp.full((k, max_len), pad_id, jnp.int32),
        live_logprobs=jnp.full((k,), neg_inf).at[0].set(0.0),  # one live hypothesis: no duplicates
        live_carry=jax.tree_util.tree_map(lambda c: jnp.broadcast_to(c, (k, *jnp.shape(c))), carry),
        finished_tokens=jnp.full((k, max_len), pad_id, jnp.int32),
        finished_scores=jnp.full((k,), neg_inf),
        finished_lengths=jnp.zeros((k,), jnp.int32),
    )
    final = lax.while_loop(cond, body, init)
    return BeamOutput(final.finished_tokens, final.finished_lengths, final.finished_scores)
