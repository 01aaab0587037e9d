r"""Interpolated modified Kneser-Ney n-gram language model (Chen & Goodman 1998): the count baseline.

Tokens are integers in ``[0, v)``. For a model of order ``N``, the probability of ``w`` after
the history ``h`` (its last ``N - 1`` tokens) is defined order by order, from the uniform
distribution up:

.. math::

    p_0(w) = 1 / v, \qquad
    p_n(w \mid h_n) = \frac{\max(c_n(h_n w) - D_n(c_n(h_n w)), 0)}{c_n(h_n)}
                      + \gamma_n(h_n) \, p_{n-1}(w \mid h_{n-1}),

where ``h_n`` is the last ``n - 1`` tokens of the history and, for ``n = 1 .. N``:

- ``c_N`` are raw counts; for ``n < N``, ``c_n(g)`` is the continuation count
  ``N_{1+}(\bullet g)``, the number of distinct tokens seen right before the n-gram ``g``.
- ``c_n(h) = \sum_w c_n(h w)``, the total over the continuations of ``h``.
- ``D_n(0) = 0``, ``D_n(1) = D_{n,1}``, ``D_n(2) = D_{n,2}``, ``D_n(c) = D_{n,3+}`` for ``c >= 3``,
  estimated from the count-of-counts ``n_k`` (the number of n-grams whose ``c_n`` is ``k``):
  ``D_{n,k} = k - (k + 1) Y n_{k+1} / n_k`` with ``Y = n_1 / (n_1 + 2 n_2)``, clipped to
  ``[0.01, k]`` so that every seen history keeps some mass for the lower order. If one of
  ``n_1 .. n_4`` is zero (a tiny corpus, or the unigram level of a small vocabulary), the
  estimate is undefined or degenerate (``n_{k+1} = 0`` gives ``D_{n,k} = k``) and that order
  uses ``D_{n,1} = D_{n,2} = D_{n,3+} = 0.75``.
- ``\gamma_n(h) = (D_{n,1} N_1(h \bullet) + D_{n,2} N_2(h \bullet) + D_{n,3+} N_{3+}(h \bullet)) / c_n(h)``,
  with ``N_k(h \bullet)`` the number of tokens ``w`` with ``c_n(h w) = k`` (``>= 3`` for ``3+``).
- A history never seen with a continuation (``c_n(h_n) = 0``: unseen, or containing a token
  never seen in training) backs off fully: ``p_n = p_{n-1}``.

Every ``p_n(\cdot \mid h)`` sums to 1 over the vocabulary and every token has a probability of
at least ``\prod_n \gamma_n / v > 0``.

Histories at the start of a sequence are shorter: :meth:`KneserNeyModel.logprob` scores token
``i`` with the ``min(i, N - 1)`` tokens before it, i.e. with ``p_{min(i, N - 1) + 1}``; there is
no begin-of-sequence padding (add a ``<bos>`` token to the data yourself if you want one).
Likewise the counts come from one token stream; n-grams that would cross its start do not exist.

References:
  Kneser & Ney, "Improved backing-off for m-gram language modeling", ICASSP 1995.
  Chen & Goodman, "An empirical study of smoothing techniques for language modeling",
  Harvard TR-10-98, 1998.
"""

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from rnnjax._src import checks

__all__ = ["KneserNey", "KneserNeyModel"]

_FALLBACK_DISCOUNT = 0.75
_MIN_DISCOUNT = 0.01


def _positive_int(value, name: str) -> int:
    checks.positive_int(value, name)
    return int(value)


def _tokens_arg(tokens, name: str, vocab_size: int) -> np.ndarray:
    arr = np.asarray(tokens)
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: expected integer token ids, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of token ids [t], got shape {arr.shape}")
    low, high = int(arr.min()), int(arr.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{name}: expected ids in [0, {vocab_size}) (vocab_size), got values in [{low}, {high}]")
    return arr.astype(np.int64)


def _discounts_from_counts(counts: np.ndarray) -> np.ndarray:
    """Chen & Goodman's ``(D1, D2, D3+)`` from the count-of-counts of ``counts``."""
    n = [int(np.count_nonzero(counts == k)) for k in range(1, 5)]  # n_1 .. n_4
    if min(n) == 0:  # too few n-grams for the estimate (it would be undefined or remove all mass)
        return np.full(3, _FALLBACK_DISCOUNT)
    y = n[0] / (n[0] + 2 * n[1])
    return np.array([min(max(k - (k + 1) * y * n[k] / n[k - 1], _MIN_DISCOUNT), k) for k in (1, 2, 3)])


@dataclasses.dataclass(frozen=True)
class KneserNey:
    """Interpolated modified Kneser-Ney smoothing of order ``N`` (the module docstring has the maths).

    Args:
      order: ``N``, the n-gram order (1: a smoothed unigram model; 5 to 7 suit characters).
      discounts: None to estimate ``(D1, D2, D3+)`` of every order from the count-of-counts, or
        ``N`` triples, one per order ``n = 1 .. N`` (each ``0 < D_k <= k``).

    Example:
        >>> model = KneserNey(3).fit([0, 1, 2, 0, 1, 2, 0, 1], vocab_size=4)
        >>> round(float(model.distribution([0]).sum()), 12)
        1.0
        >>> model.prob([0], 1) > model.prob([0], 2)
        True

    References:
      Chen & Goodman, "An empirical study of smoothing techniques for language modeling", 1998.
    """

    order: int
    discounts: tuple | None = None

    def __post_init__(self):
        _positive_int(self.order, "order")
        if self.discounts is not None:
            try:
                d = np.asarray(self.discounts, np.float64)
            except (TypeError, ValueError):
                d = np.zeros(0)
            if d.shape != (self.order, 3) or not np.all((d > 0) & (d <= np.array([1.0, 2.0, 3.0]))):
                raise ValueError(
                    f"discounts: expected {self.order} triples (D1, D2, D3+), one per order, with 0 < Dk <= k, "
                    f"got {self.discounts!r}"
                )
            object.__setattr__(self, "discounts", tuple(tuple(float(x) for x in row) for row in d))

    def fit(self, tokens, vocab_size: int) -> "KneserNeyModel":
        """Count the n-grams of ``tokens`` and estimate the model.

        Args:
          tokens: integer ids ``[t]`` in ``[0, v)`` (one stream, e.g. ``vocab.encode(corpus.train)``).
          vocab_size: ``v``.

        Returns:
          A :class:`KneserNeyModel`.

        Example:
            >>> model = KneserNey(2).fit([0, 1, 0, 1, 1], vocab_size=3)
            >>> model.order, model.vocab_size
            (2, 3)
        """
        vocab_size = _positive_int(vocab_size, "vocab_size")
        x = _tokens_arg(tokens, "tokens", vocab_size)
        if len(x) == 0:
            raise ValueError("tokens: expected at least one token to count, got none")
        v = vocab_size
        num = len(x)

        # table n (n-grams of length n): sorted keys pid * v + w, pid = the id of the (n-1)-gram
        # prefix in table n - 1 (0 for n = 1), so the continuations of a history are contiguous.
        keys, counts_by_order = [], []
        position_ids = None  # position_ids[j]: id in the last table of the n-gram ending at j + n - 1
        for n in range(1, min(self.order, num) + 1):
            # keys of the n-grams ending at positions n-1 .. t-1: (id of the prefix) * v + last token
            ngram_keys = x if n == 1 else position_ids[:-1] * v + x[n - 1 :]
            unique, first, inverse, counts = np.unique(
                ngram_keys, return_index=True, return_inverse=True, return_counts=True
            )
            if n > 1:
                # continuation counts of order n - 1: each distinct n-gram is one left extension
                # of its suffix, the (n-1)-gram ending where it ends (position first + n - 1)
                suffix = position_ids[first + 1]
                counts_by_order[-1] = np.bincount(suffix, minlength=len(keys[-1])).astype(np.float64)
            keys.append(unique)
            counts_by_order.append(counts.astype(np.float64))  # raw counts, kept for the top order
            position_ids = inverse.reshape(-1).astype(np.int64)

        tables = []
        for n, (k, counts) in enumerate(zip(keys, counts_by_order, strict=True), start=1):
            d = (
                np.asarray(self.discounts[n - 1], np.float64)
                if self.discounts is not None
                else _discounts_from_counts(counts)
            )
            num_histories = 1 if n == 1 else len(keys[n - 2])
            history = k // v if n > 1 else np.zeros(len(k), np.int64)
            discount = np.concatenate([[0.0], d])[np.minimum(counts, 3).astype(np.int64)]
            total = np.bincount(history, weights=counts, minlength=num_histories)
            mass = np.bincount(history, weights=discount, minlength=num_histories)
            safe = np.where(total > 0, total, 1.0)
            gamma = np.where(total > 0, mass / safe, 1.0)
            alpha = np.maximum(counts - discount, 0.0) / safe[history]
            tables.append(_Table(k, counts, alpha, total, gamma, d))
        return KneserNeyModel(self.order, v, tuple(tables))


@dataclasses.dataclass(frozen=True)
class _Table:
    keys: np.ndarray  # [g] sorted keys history_id * v + w
    counts: np.ndarray  # [g] raw counts (highest order) or continuation counts
    alpha: np.ndarray  # [g] max(c - D(c), 0) / c(h)
    total: np.ndarray  # [histories] c(h)
    gamma: np.ndarray  # [histories] back-off weight (1 where c(h) = 0)
    discounts: np.ndarray  # [3] D1, D2, D3+


def _lookup(keys: np.ndarray, query):
    """Indices of ``query`` in the sorted ``keys`` and whether each was found."""
    index = np.searchsorted(keys, query)
    index = np.minimum(index, len(keys) - 1)
    return index, keys[index] == query


class KneserNeyModel:
    """A fitted interpolated modified Kneser-Ney model (from :meth:`KneserNey.fit`).

    Attributes:
      order: ``N``.
      vocab_size: ``v``.
      discounts: ``float64 [N, 3]``, ``(D1, D2, D3+)`` of orders ``1 .. N``.
      num_ngrams: the number of distinct n-grams of each order ``1 .. N``.

    Example:
        >>> model = KneserNey(2).fit([0, 1, 2, 0, 1, 2], vocab_size=3)
        >>> model.distribution([0]).round(3).tolist()
        [0.125, 0.75, 0.125]
    """

    def __init__(self, order: int, vocab_size: int, tables: tuple):
        self.order = order
        self.vocab_size = vocab_size
        self._tables = tables  # may be shorter than order if the training stream was
        self.discounts = np.array([t.discounts for t in tables], np.float64).reshape(-1, 3)
        self.num_ngrams = tuple(len(t.keys) for t in tables)

    def __repr__(self) -> str:
        return f"KneserNeyModel(order={self.order}, vocab_size={self.vocab_size}, num_ngrams={self.num_ngrams})"

    def _history_ids(self, history: np.ndarray) -> list:
        """``ids[n]``: the id of the last ``n`` history tokens in table ``n`` (None if unseen)."""
        ids = [0]
        for n in range(1, min(len(history), len(self._tables) - 1) + 1):
            suffix = history[len(history) - n :]
            pid = 0
            for m, token in enumerate(suffix, start=1):
                index, found = _lookup(self._tables[m - 1].keys, pid * self.vocab_size + int(token))
                if not found:
                    return ids
                pid = int(index)
            ids.append(pid)
        return ids

    def _history_arg(self, history) -> np.ndarray:
        history = _tokens_arg(history, "history", self.vocab_size)
        return history[max(len(history) - (self.order - 1), 0) :] if self.order > 1 else history[:0]

    def distribution(self, history: Sequence[int] = ()) -> np.ndarray:
        """``p(w | history)`` for every token ``w``, as one vector.

        Args:
          history: integer ids ``[s]`` (any length; the last ``N - 1`` are used).

        Returns:
          ``float64 [v]``, non-negative, summing to 1.

        Example:
            >>> model = KneserNey(3).fit([1, 2, 3, 1, 2, 3], vocab_size=5)
            >>> p = model.distribution([1, 2])
            >>> int(p.argmax()), round(float(p.sum()), 12)
            (3, 1.0)
        """
        history = self._history_arg(history)
        v = self.vocab_size
        p = np.full(v, 1.0 / v)
        for n, hid in enumerate(self._history_ids(history), start=1):
            table = self._tables[n - 1]
            if table.total[hid] <= 0:
                continue
            lo, hi = np.searchsorted(table.keys, [hid * v, (hid + 1) * v])
            p = table.gamma[hid] * p
            p[table.keys[lo:hi] - hid * v] += table.alpha[lo:hi]
        return p

    def prob(self, history: Sequence[int], token: int) -> float:
        """``p(token | history)``.

        Args:
          history: integer ids ``[s]`` (the last ``N - 1`` are used).
          token: an id in ``[0, v)``.

        Returns:
          A float in ``(0, 1]``.

        Example:
            >>> model = KneserNey(2).fit([0, 1, 0, 1], vocab_size=3)
            >>> model.prob([0], 1) > 0.5 > model.prob([0], 2) > 0
            True
        """
        history = self._history_arg(history)
        if isinstance(token, bool) or not isinstance(token, int | np.integer) or not 0 <= token < self.vocab_size:
            raise ValueError(f"token: expected an integer id in [0, {self.vocab_size}), got {token!r}")
        v = self.vocab_size
        p = 1.0 / v
        for n, hid in enumerate(self._history_ids(history), start=1):
            table = self._tables[n - 1]
            if table.total[hid] <= 0:
                continue
            index, found = _lookup(table.keys, hid * v + int(token))
            p = (float(table.alpha[index]) if found else 0.0) + float(table.gamma[hid]) * p
        return p

    def token_logprobs(self, tokens) -> np.ndarray:
        """``log p(tokens[i] | tokens[max(0, i - N + 1) : i])`` for every position, vectorised.

        Token ``i`` is scored with the ``min(i, N - 1)`` tokens before it (no padding).

        Args:
          tokens: integer ids ``[t]``.

        Returns:
          ``float64 [t]``, natural logarithms.

        Example:
            >>> model = KneserNey(2).fit([0, 1, 0, 1], vocab_size=2)
            >>> model.token_logprobs([0, 1]).shape
            (2,)
        """
        y = _tokens_arg(tokens, "tokens", self.vocab_size)
        v = self.vocab_size
        t = len(y)
        p = np.full(t, 1.0 / v)
        previous = None  # previous[i]: id in table n-1 of the (n-1)-gram ending at i, -1 if unseen
        for n, table in enumerate(self._tables, start=1):
            if t < n:
                break
            if n == 1:
                hid = np.zeros(t, np.int64)
            else:
                hid = previous[n - 2 : t - 1]  # histories of the tokens at n-1 .. t-1
            seen = hid >= 0
            safe_hid = np.where(seen, hid, 0)
            index, found = _lookup(table.keys, safe_hid * v + y[n - 1 :])
            found &= seen
            active = seen & (table.total[safe_hid] > 0)
            alpha = np.where(found, table.alpha[index], 0.0)
            p[n - 1 :] = np.where(active, alpha + table.gamma[safe_hid] * p[n - 1 :], p[n - 1 :])
            current = np.full(t, -1, np.int64)
            current[n - 1 :] = np.where(found, index, -1)
            previous = current
        return np.log(p)

    def logprob(self, tokens) -> float:
        """The total log probability of a token sequence, in nats.

        Args:
          tokens: integer ids ``[t]``; token ``i`` is scored given the ``min(i, N - 1)`` before it.

        Returns:
          ``sum_i log p(tokens[i] | history_i)``.

        Example:
            >>> import math
            >>> model = KneserNey(1).fit([0, 0, 1], vocab_size=2)
            >>> math.isclose(model.logprob([0, 1]), math.log(model.prob([], 0) * model.prob([], 1)))
            True
        """
        return float(np.sum(self.token_logprobs(tokens)))

    def perplexity(self, tokens) -> float:
        """``exp(-logprob(tokens) / t)``.

        Example:
            >>> model = KneserNey(1).fit([0, 1, 2, 3], vocab_size=4)
            >>> round(model.perplexity([0, 1, 2, 3]), 6)
            4.0
        """
        y = _tokens_arg(tokens, "tokens", self.vocab_size)
        if len(y) == 0:
            raise ValueError("tokens: expected at least one token to score, got none")
        return math.exp(-self.logprob(y) / len(y))

    def bits_per_token(self, tokens) -> float:
        """``-logprob(tokens) / (t log 2)``: bits per character for a character model.

        Example:
            >>> model = KneserNey(1).fit([0, 1, 2, 3], vocab_size=4)
            >>> round(model.bits_per_token([3, 2, 1, 0]), 6)
            2.0
        """
        y = _tokens_arg(tokens, "tokens", self.vocab_size)
        if len(y) == 0:
            raise ValueError("tokens: expected at least one token to score, got none")
        return -self.logprob(y) / (len(y) * math.log(2.0))

    def sample(self, rng, length: int, history: Sequence[int] = ()) -> np.ndarray:
        """Draw ``length`` tokens, each from ``p(. | the tokens before it)``.

        Args:
          rng: a ``numpy.random.Generator`` (advanced) or an int seed.
          length: the number of tokens ``t`` to draw.
          history: ids ``[s]`` the sample continues (not included in the result).

        Returns:
          ``int32 [t]``.

        Example:
            >>> model = KneserNey(3).fit([0, 1, 2] * 20, vocab_size=3)
            >>> model.sample(0, 6, history=[0, 1]).shape
            (6,)
        """
        if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
            rng = np.random.default_rng(int(rng))
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng: expected a numpy.random.Generator or an int seed, got {type(rng).__name__}")
        length = _positive_int(length, "length")
        context = list(self._history_arg(history))
        out = np.zeros(length, np.int32)
        for i in range(length):
            p = self.distribution(context)
            token = int(np.searchsorted(np.cumsum(p), rng.random() * p.sum(), side="right"))
            token = min(token, self.vocab_size - 1)
            out[i] = token
            context = (context + [token])[-(self.order - 1) :] if self.order > 1 else []
        return out
