"""rnnjax.ngram: modified Kneser-Ney against hand-computed values and a pure-Python reference."""

import collections
import functools
import math

import numpy as np
import pytest

from rnnjax import data, ngram
from rnnjax.ngram import KneserNey


def test_public_names():
    assert set(ngram.__all__) == {"KneserNey", "KneserNeyModel"}
    for name in ngram.__all__:
        assert ">>>" in getattr(ngram, name).__doc__


# --- a pure-Python reference: Counters and the recursion of Chen & Goodman, written out ------------


class ReferenceKN:
    def __init__(self, tokens, order, vocab_size, discounts=None):
        self.order, self.v = order, vocab_size
        raw = {
            n: collections.Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
            for n in range(1, order + 1)
        }
        self.counts = {}
        for n in range(1, order + 1):
            if n == order:
                self.counts[n] = raw[n]
            else:  # continuation counts: the number of distinct tokens seen right before g
                self.counts[n] = collections.Counter(g[1:] for g in raw[n + 1])
        self.discounts = {}
        for n in range(1, order + 1):
            if discounts is not None:
                self.discounts[n] = discounts[n - 1]
                continue
            of = collections.Counter(self.counts[n].values())
            nk = [of[k] for k in (1, 2, 3, 4)]
            if min(nk) == 0:
                self.discounts[n] = (0.75, 0.75, 0.75)
            else:
                y = nk[0] / (nk[0] + 2 * nk[1])
                self.discounts[n] = tuple(min(max(k - (k + 1) * y * nk[k] / nk[k - 1], 0.01), k) for k in (1, 2, 3))

    def d(self, n, c):
        return 0.0 if c == 0 else self.discounts[n][min(c, 3) - 1]

    def prob(self, history, w):
        history = tuple(history)[max(0, len(history) - (self.order - 1)) :] if self.order > 1 else ()
        p = 1.0 / self.v
        for n in range(1, len(history) + 2):
            h = history[len(history) - (n - 1) :] if n > 1 else ()
            follow = {g[-1]: c for g, c in self.counts[n].items() if g[:-1] == h and c > 0}
            total = sum(follow.values())
            if total == 0:
                continue  # unseen history: back off fully
            gamma = sum(self.d(n, c) for c in follow.values()) / total
            c = follow.get(w, 0)
            p = max(c - self.d(n, c), 0.0) / total + gamma * p
        return p


def _markov_tokens(seed, length, vocab_size):
    """A skewed second-order Markov chain, so every order has counts of 1, 2, 3 and 4."""
    rng = np.random.default_rng(seed)
    table = rng.dirichlet(np.full(vocab_size, 0.3), size=(vocab_size, vocab_size))
    tokens = [0, 1]
    for _ in range(length - 2):
        tokens.append(int(rng.choice(vocab_size, p=table[tokens[-2], tokens[-1]])))
    return tokens


def test_matches_the_reference_implementation():
    tokens = _markov_tokens(0, 3000, 16)
    vocab_size = 17  # token 16 never occurs
    model = KneserNey(3).fit(tokens, vocab_size)
    ref = ReferenceKN(tokens, 3, vocab_size)
    # orders 2 and 3 use the count-of-counts estimate; order 1 (16 types, each preceded by
    # almost every token) has no small continuation counts and uses the fallback
    assert np.all(model.discounts[1:] != 0.75) and np.all(model.discounts[0] == 0.75)
    np.testing.assert_allclose(model.discounts, [ref.discounts[n] for n in (1, 2, 3)], rtol=1e-14)
    rng = np.random.default_rng(1)
    histories = [(), (3,), (16,), (16, 2), (2, 16)] + [tuple(rng.integers(0, vocab_size, size=2)) for _ in range(15)]
    for history in histories:
        expected = np.array([ref.prob(history, w) for w in range(vocab_size)])
        np.testing.assert_allclose(model.distribution(history), expected, rtol=1e-12, atol=0)
        assert model.prob(history, 5) == pytest.approx(expected[5], rel=1e-12)
    # token_logprobs: token i scored with the min(i, N - 1) tokens before it
    held_out = _markov_tokens(2, 60, 16)
    expected = [math.log(ref.prob(held_out[max(0, i - 2) : i], w)) for i, w in enumerate(held_out)]
    np.testing.assert_allclose(model.token_logprobs(held_out), expected, rtol=1e-12)


# --- hand-computed values ----------------------------------------------------------------------

#   tokens 0 1 0 2 0 1, vocabulary of 4 (token 3 unseen)
#   bigrams: (0,1) x2, (1,0), (0,2), (2,0); trigrams: (0,1,0), (1,0,2), (0,2,0), (2,0,1)
#   unigram continuation counts (distinct left neighbours): 0 <- {1, 2}: 2; 1 <- {0}: 1; 2 <- {0}: 1; 3: 0
TOKENS = [0, 1, 0, 2, 0, 1]
D1 = (0.5, 0.8, 1.0)  # unigram (D1, D2, D3+)
D2 = (0.25, 1.5, 2.0)  # bigram
D3 = (0.5, 1.0, 1.5)  # trigram


def _unigram():
    # total 2 + 1 + 1 = 4; gamma = (D2 * 1 + D1 * 2) / 4 = (0.8 + 1.0) / 4 = 0.45
    gamma = (0.8 + 0.5 + 0.5) / 4
    alpha = np.array([(2 - 0.8) / 4, (1 - 0.5) / 4, (1 - 0.5) / 4, 0.0])
    return alpha + gamma / 4  # [0.4125, 0.2375, 0.2375, 0.1125]


def test_hand_computed_bigram():
    model = KneserNey(2, discounts=(D1, D2)).fit(TOKENS, vocab_size=4)
    p1 = _unigram()
    np.testing.assert_allclose(p1, [0.4125, 0.2375, 0.2375, 0.1125], rtol=1e-15)
    np.testing.assert_allclose(model.distribution(()), p1, rtol=1e-15)
    # top order, raw counts. History 0: c(0 .) = 3, (0,1): 2 -> D2 = 1.5, (0,2): 1 -> D1 = 0.25
    gamma0 = (1.5 + 0.25) / 3
    expected0 = gamma0 * p1 + np.array([0.0, (2 - 1.5) / 3, (1 - 0.25) / 3, 0.0])
    np.testing.assert_allclose(model.distribution([0]), expected0, rtol=1e-15)
    assert model.prob([0], 1) == pytest.approx(1 / 6 + 7 / 12 * 0.2375, rel=1e-15)
    # history 1: (1,0) once -> alpha 0.75, gamma 0.25
    np.testing.assert_allclose(model.distribution([1]), 0.25 * p1 + np.array([0.75, 0, 0, 0]), rtol=1e-15)
    # history 3 was never seen: back off fully to the unigram level
    np.testing.assert_allclose(model.distribution([3]), p1, rtol=1e-15)
    # the first token has no history: the unigram (continuation) level
    expected = math.log(p1[0]) + math.log(expected0[1]) + math.log(0.25 * p1[3])
    assert model.logprob([0, 1, 3]) == pytest.approx(expected, rel=1e-14)
    assert model.bits_per_token([0, 1, 3]) == pytest.approx(-expected / 3 / math.log(2), rel=1e-14)
    assert model.perplexity([0, 1, 3]) == pytest.approx(math.exp(-expected / 3), rel=1e-14)


def test_hand_computed_trigram():
    model = KneserNey(3, discounts=(D1, D2, D3)).fit(TOKENS, vocab_size=4)
    p1 = _unigram()
    # bigram level now uses continuation counts: (0,1) <- {2}, (1,0) <- {0}, (0,2) <- {1}, (2,0) <- {0}: all 1
    p2_given_1 = (1 - 0.25) * np.eye(4)[0] + 0.25 * p1  # history 1: one continuation of count 1
    p2_given_0 = (1 - 0.25) / 2 * np.array([0, 1, 1, 0]) + (2 * 0.25 / 2) * p1  # (0,1) and (0,2), total 2
    np.testing.assert_allclose(model.distribution([1]), p2_given_1, rtol=1e-15)
    np.testing.assert_allclose(model.distribution([0]), p2_given_0, rtol=1e-15)
    # trigram level, raw counts: history (0,1) -> (0,1,0) once: alpha 1 - 0.5, gamma 0.5
    np.testing.assert_allclose(model.distribution([0, 1]), 0.5 * np.eye(4)[0] + 0.5 * p2_given_1, rtol=1e-15)
    # history (3,0) contains an unseen token: the trigram level is skipped, the bigram one used
    np.testing.assert_allclose(model.distribution([3, 0]), p2_given_0, rtol=1e-15)
    # history (1,1) is unseen although both tokens were seen; (1) has continuations
    np.testing.assert_allclose(model.distribution([1, 1]), p2_given_1, rtol=1e-15)
    # scoring [0, 1, 0]: p1(0), p2(1 | 0), p3(0 | 0 1)
    expected = math.log(p1[0]) + math.log(p2_given_0[1]) + math.log(0.5 + 0.5 * p2_given_1[0])
    assert model.logprob([0, 1, 0]) == pytest.approx(expected, rel=1e-14)
    # only the last N - 1 tokens of a long history matter
    np.testing.assert_allclose(model.distribution([2, 2, 3, 0, 1]), model.distribution([0, 1]), rtol=0)


def test_count_of_counts_discounts():
    # D_k = k - (k+1) Y n_{k+1} / n_k with Y = n1 / (n1 + 2 n2); here n1..n4 = 4, 3, 2, 1
    counts = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3, 4, 7], np.float64)
    y = 4 / (4 + 2 * 3)
    expected = [1 - 2 * y * 3 / 4, 2 - 3 * y * 2 / 3, 3 - 4 * y * 1 / 2]
    np.testing.assert_allclose(ngram._discounts_from_counts(counts), expected, rtol=1e-15)
    # too few n-grams: the fallback
    np.testing.assert_array_equal(ngram._discounts_from_counts(np.array([1.0, 2.0, 3.0])), [0.75, 0.75, 0.75])


# --- on real text ------------------------------------------------------------------------------


@functools.cache
def _stdlib():
    corpus = data.load_corpus(max_chars=400_000)
    vocab = data.CharVocab.build(corpus.train)
    return vocab, vocab.encode(corpus.train), vocab.encode(corpus.valid)


@functools.cache
def _model(order):
    vocab, train, _ = _stdlib()
    return KneserNey(order).fit(train, vocab.size)


def test_distributions_sum_to_one():
    vocab, train, valid = _stdlib()
    model = _model(5)
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(valid) - 4, size=20)
    histories = (
        [valid[s : s + 4] for s in starts]
        + [
            (),
            train[:4],
            [vocab.unk_id] * 4,  # never seen
            [vocab.pad_id, *train[10:13]],  # a token never seen in training, then seen ones
            vocab.encode("zzqx"),  # seen tokens, unseen 4-gram
        ]
    )
    for history in histories:
        p = model.distribution(history)
        assert p.shape == (vocab.size,) and p.dtype == np.float64
        assert abs(p.sum() - 1.0) < 1e-9
        assert np.all(p > 0)
        for w in (0, vocab.unk_id, int(train[0]), vocab.size - 1):
            assert model.prob(history, w) == pytest.approx(p[w], rel=1e-12)


def test_token_logprobs_match_prob_with_shorter_histories():
    _, _, valid = _stdlib()
    model = _model(5)
    tokens = valid[:40]
    expected = [math.log(model.prob(tokens[max(0, i - 4) : i], int(w))) for i, w in enumerate(tokens)]
    np.testing.assert_allclose(model.token_logprobs(tokens), expected, rtol=1e-12)


def test_unseen_history_backs_off_to_its_longest_seen_suffix():
    vocab, train, _ = _stdlib()
    model = _model(4)
    seen = [int(t) for t in train[100:102]]
    np.testing.assert_array_equal(model.distribution([vocab.pad_id, *seen]), model.distribution(seen))
    np.testing.assert_array_equal(model.distribution([vocab.pad_id]), model.distribution([]))


def test_higher_order_beats_unigram_on_held_out_stdlib_text():
    _, _, valid = _stdlib()
    bits = {order: _model(order).bits_per_token(valid) for order in (1, 3, 5)}
    assert bits[5] < bits[3] < bits[1] - 1.0
    assert 1.5 < bits[5] < 4.5


def test_sample_follows_the_distribution_and_is_deterministic():
    model = KneserNey(2).fit([0, 1, 2, 0, 1, 2, 0, 1, 0, 0], vocab_size=4)
    a = model.sample(np.random.default_rng(0), 50, history=[0])
    np.testing.assert_array_equal(a, model.sample(0, 50, history=[0]))
    assert a.dtype == np.int32 and a.shape == (50,) and a.min() >= 0 and a.max() < 4
    unigram = KneserNey(1).fit([0, 1, 1, 2, 2, 2], vocab_size=4)
    draws = unigram.sample(1, 20_000)
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / 20_000, unigram.distribution(), atol=0.015)


def test_sample_uses_the_full_history():
    # period 6: only a context of 5 tokens tells whether a 1 comes next
    model = KneserNey(6).fit([0, 0, 0, 0, 0, 1] * 100, vocab_size=2)
    for history in ([], [0], [0, 0, 0]):
        tokens = [*history, *model.sample(np.random.default_rng(0), 300, history=history).tolist()]
        expected = [int(tokens[i - 5 : i] == [0] * 5) for i in range(5, len(tokens))]
        assert np.mean(np.array(tokens[5:]) == expected) > 0.95


def test_short_training_stream_and_order_one():
    model = KneserNey(5).fit([2, 1], vocab_size=3)
    for history in ([], [2], [1, 1, 1, 2], [0]):
        assert abs(model.distribution(history).sum() - 1) < 1e-12
    assert model.num_ngrams == (2, 1)
    unigram = KneserNey(1).fit([0, 0, 0, 1], vocab_size=3)
    np.testing.assert_array_equal(unigram.distribution([0, 1]), unigram.distribution())


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="order"):
        KneserNey(0)
    with pytest.raises(ValueError, match="discounts"):
        KneserNey(2, discounts=((0.5, 0.5, 0.5),))
    with pytest.raises(ValueError, match="discounts"):
        KneserNey(1, discounts=((1.5, 0.5, 0.5),))
    with pytest.raises(ValueError, match=r"tokens: expected ids in \[0, 3\)"):
        KneserNey(2).fit([0, 1, 3], vocab_size=3)
    with pytest.raises(TypeError, match="tokens: expected integer"):
        KneserNey(2).fit([0.0, 1.0], vocab_size=3)
    with pytest.raises(ValueError, match="tokens: expected at least one"):
        KneserNey(2).fit([], vocab_size=3)
    with pytest.raises(ValueError, match="vocab_size"):
        KneserNey(2).fit([0], vocab_size=0)
    model = KneserNey(2).fit([0, 1], vocab_size=3)
    with pytest.raises(ValueError, match="token: expected an integer id"):
        model.prob([0], 3)
    with pytest.raises(ValueError, match="history"):
        model.distribution([5])
    with pytest.raises(TypeError, match="rng"):
        model.sample("seed", 3)
    with pytest.raises(ValueError, match="tokens: expected at least one"):
        model.perplexity([])
