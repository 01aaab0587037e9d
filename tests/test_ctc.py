"""CTC decoding: collapse rules, greedy == argmax-collapse, prefix beam search == exhaustive search, loss, CER/WER."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.experimental import checkify

import rnnjax as rj

NEG_INF = float("-inf")


def collapse(path, blank):
    """The CTC map B: merge repeats, then drop blanks."""
    return tuple(label for label, _ in itertools.groupby(path) if label != blank)


def exhaustive(log_probs, blank, length=None):
    """log P(l) for every label sequence l with P(l) > 0: a sum over all v ** t alignments (float64)."""
    probs = np.exp(np.asarray(log_probs, np.float64))
    num_steps = probs.shape[0] if length is None else length
    totals = {}
    for path in itertools.product(range(probs.shape[1]), repeat=num_steps):
        p = math.prod(probs[s, c] for s, c in enumerate(path))
        key = collapse(path, blank)
        totals[key] = totals.get(key, 0.0) + p
    return {key: math.log(p) for key, p in totals.items() if p > 0}


def random_log_probs(seed, t, v, scale=2.0):
    logits = scale * jax.random.normal(jax.random.key(seed), (t, v))
    return jax.nn.log_softmax(logits, axis=-1)


def beam_as_dict(out):
    """The non-empty slots of a beam output as {labels: score}, checking the padding on the way."""
    result = {}
    for labels, n, score in zip(out.labels.tolist(), out.lengths.tolist(), out.scores.tolist(), strict=True):
        if score == NEG_INF:
            continue
        assert all(x == -1 for x in labels[n:])
        assert tuple(labels[:n]) not in result  # identical prefixes were merged
        result[tuple(labels[:n])] = score
    return result


def one_hot_path(path, v):
    return jnp.log(jnp.eye(v)[jnp.array(path)] * 0.97 + 0.01)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ([1, 1], [1]),  # repeats merge
        ([1, 0, 1], [1, 1]),  # a blank separates repeats
        ([0, 0, 1, 2, 0], [1, 2]),  # leading and trailing blanks
        ([1, 1, 1, 2, 2, 1], [1, 2, 1]),
        ([0, 0, 0], []),
        ([2], [2]),
    ],
)
def test_collapse_rules(path, expected):
    v, t = 3, 6
    log_probs = one_hot_path(path + [0] * (t - len(path)), v)  # trailing blanks change nothing (one compile)
    labels, n = rj.decode.ctc_greedy(log_probs)
    assert int(n) == len(expected)
    assert labels.tolist() == expected + [-1] * (t - len(expected))
    # the beam search agrees on such peaky posteriors, and finds the same best sequence
    out = rj.decode.ctc_prefix_beam_search(log_probs, beam_size=4)
    assert out.labels[0, : out.lengths[0]].tolist() == expected


def test_collapse_with_another_blank_and_pad_id():
    path = [2, 0, 0, 2, 1, 1, 2, 0]  # blank = 2
    labels, n = rj.decode.ctc_greedy(one_hot_path(path, 3), blank=2, pad_id=9)
    assert labels.tolist() == [0, 1, 0, 9, 9, 9, 9, 9] and int(n) == 3
    out = rj.decode.ctc_prefix_beam_search(one_hot_path(path, 3), beam_size=3, blank=2, pad_id=9)
    assert out.labels[0].tolist() == [0, 1, 0, 9, 9, 9, 9, 9]


@pytest.mark.parametrize("blank", [0, 3])
def test_greedy_equals_argmax_then_collapse(blank):
    for seed in range(4):
        log_probs = random_log_probs(seed, 9, 4)
        best = np.argmax(np.asarray(log_probs), axis=-1).tolist()
        for length in (None, 0, 5, 9):
            expected = list(collapse(best[: 9 if length is None else length], blank))
            labels, n = rj.decode.ctc_greedy(log_probs, length, blank=blank)
            assert labels.tolist() == expected + [-1] * (9 - len(expected))
            assert int(n) == len(expected)


@pytest.mark.parametrize(("t", "blank", "seed"), [(4, 0, 0), (4, 2, 1), (5, 0, 2), (5, 3, 3)])
def test_wide_beam_equals_exhaustive_search(t, blank, seed):
    """A beam that holds every prefix is exact: same sequences, same order, same log P (sum over alignments)."""
    log_probs = random_log_probs(seed, t, 4)
    exact = exhaustive(log_probs, blank)
    beam_size = len(exact) + 3  # more slots than sequences: the extra ones are empty
    out = rj.decode.ctc_prefix_beam_search(log_probs, beam_size=beam_size, blank=blank)
    found = beam_as_dict(out)
    assert set(found) == set(exact)
    for labels, score in found.items():
        assert score == pytest.approx(exact[labels], abs=1e-5)
    scores = out.scores.tolist()
    assert scores == sorted(scores, reverse=True)  # best first
    assert scores[-3:] == [NEG_INF] * 3 and out.lengths[-3:].tolist() == [0, 0, 0]
    # the top-k of the exhaustive ranking, in order
    ranking = sorted(exact, key=exact.get, reverse=True)
    top = [tuple(row[:n]) for row, n in zip(out.labels.tolist()[:10], out.lengths.tolist()[:10], strict=True)]
    assert top == ranking[:10]
    # total probability of all label sequences is 1
    assert float(jax.nn.logsumexp(out.scores)) == pytest.approx(0.0, abs=1e-5)


def test_narrow_beam_scores_are_lower_bounds():
    """Pruning loses the mass of pruned prefixes, never adds any; the best prefix is found on these cases."""
    for seed in range(4):
        log_probs = random_log_probs(seed, 5, 4)
        exact = exhaustive(log_probs, 0)
        for beam_size in (1, 8):
            out = rj.decode.ctc_prefix_beam_search(log_probs, beam_size=beam_size)
            found = beam_as_dict(out)
            assert len(found) == beam_size
            for labels, score in found.items():
                assert score <= exact[labels] + 1e-5
        best = max(exact, key=exact.get)
        assert next(iter(beam_as_dict(rj.decode.ctc_prefix_beam_search(log_probs, beam_size=8)))) == best


def reference_prefix_search(log_probs, beam_size, blank):
    """Plain-Python prefix beam search (Hannun et al. 2014) with dicts, in float64: the textbook version."""
    log_probs = np.asarray(log_probs, np.float64)
    beams = {(): (0.0, NEG_INF)}  # prefix -> (log p_blank, log p_label)
    for y in log_probs:
        following = {}

        def add(prefix, blank_mass, label_mass, following=following):
            pb, pnb = following.get(prefix, (NEG_INF, NEG_INF))
            following[prefix] = (np.logaddexp(pb, blank_mass), np.logaddexp(pnb, label_mass))

        for prefix, (pb, pnb) in beams.items():
            total = np.logaddexp(pb, pnb)
            add(prefix, total + y[blank], pnb + y[prefix[-1]] if prefix else NEG_INF)
            for c in range(len(y)):
                if c != blank:
                    add((*prefix, c), NEG_INF, (pb if prefix and prefix[-1] == c else total) + y[c])
        ranked = sorted(following.items(), key=lambda item: -np.logaddexp(*item[1]))
        beams = dict(ranked[:beam_size])
    return {prefix: float(np.logaddexp(*masses)) for prefix, masses in beams.items()}


@pytest.mark.parametrize("beam_size", [2, 5])
def test_narrow_beam_equals_textbook_prefix_search(beam_size):
    """Same pruning as the dict-based algorithm on longer inputs, where the beam is far from exhaustive."""
    for seed in range(3):
        log_probs = random_log_probs(10 + seed, 12, 6, scale=1.5)
        expected = reference_prefix_search(log_probs, beam_size, blank=1)
        out = rj.decode.ctc_prefix_beam_search(log_probs, beam_size=beam_size, blank=1)
        found = beam_as_dict(out)
        assert list(found) == list(expected)
        np.testing.assert_allclose(list(found.values()), list(expected.values()), atol=1e-4)


def test_max_labels_keeps_the_short_sequences_exact():
    log_probs = random_log_probs(5, 5, 4)
    exact = {labels: s for labels, s in exhaustive(log_probs, 0).items() if len(labels) <= 2}
    out = rj.decode.ctc_prefix_beam_search(log_probs, beam_size=len(exact), max_labels=2)
    assert out.labels.shape == (len(exact), 2)
    found = beam_as_dict(out)
    assert set(found) == set(exact)
    for labels, score in found.items():
        assert score == pytest.approx(exact[labels], abs=1e-5)


def test_length_ignores_later_frames_and_logits_are_normalised():
    t, v = 6, 4
    log_probs = random_log_probs(6, t, v)
    garbage = log_probs.at[3:].set(jnp.log(jnp.array([1e-6, 1.0, 1e-6, 1e-6])))
    for length in (0, 1, 3):
        out = rj.decode.ctc_prefix_beam_search(garbage, length, beam_size=5)
        exact = exhaustive(log_probs, 0, length)  # no frames: only the empty sequence, probability 1
        ranking = sorted(exact, key=exact.get, reverse=True)[:5]
        found = beam_as_dict(out)
        assert list(found) == ranking
        for labels, score in found.items():
            assert score == pytest.approx(exact[labels], abs=1e-5)
        assert out.scores.tolist()[len(found) :] == [NEG_INF] * (5 - len(found))
        labels, n = rj.decode.ctc_greedy(garbage, length)
        expected = list(collapse(np.argmax(np.asarray(log_probs[:length]), axis=-1).tolist(), 0))
        assert labels.tolist() == expected + [-1] * (t - len(expected)) and int(n) == len(expected)
    # unnormalised logits give the same search (they go through log_softmax)
    logits = 3.0 * log_probs + jnp.arange(t, dtype=jnp.float32)[:, None]
    a = rj.decode.ctc_prefix_beam_search(logits, beam_size=5)
    b = rj.decode.ctc_prefix_beam_search(jax.nn.log_softmax(logits), beam_size=5)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_vmap_equals_loop_and_scores_in_float32():
    b, t, v = 3, 7, 5
    log_probs = jax.nn.log_softmax(2.0 * jax.random.normal(jax.random.key(7), (b, t, v)))
    lengths = jnp.array([7, 4, 0])
    batched = jax.vmap(lambda lp, n: rj.decode.ctc_prefix_beam_search(lp, n, beam_size=3))(log_probs, lengths)
    greedy = jax.vmap(rj.decode.ctc_greedy)(log_probs, lengths)
    for i in range(b):
        one = rj.decode.ctc_prefix_beam_search(log_probs[i], lengths[i], beam_size=3)
        np.testing.assert_array_equal(batched.labels[i], one.labels)
        np.testing.assert_array_equal(batched.lengths[i], one.lengths)
        np.testing.assert_allclose(batched.scores[i], one.scores, atol=1e-6)
        labels, n = rj.decode.ctc_greedy(log_probs[i], lengths[i])
        np.testing.assert_array_equal(greedy[0][i], labels)
        assert int(greedy[1][i]) == int(n)
    out = rj.decode.ctc_prefix_beam_search(log_probs[0].astype(jnp.bfloat16), beam_size=3)
    assert out.scores.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out.scores)))


def test_no_retrace_on_second_call():
    search, greedy = rj.decode.ctc._ctc_prefix_beam_search, rj.decode.ctc._ctc_greedy
    rj.decode.ctc_prefix_beam_search(random_log_probs(0, 6, 4), 5, beam_size=5)
    rj.decode.ctc_greedy(random_log_probs(0, 6, 4), 5)
    sizes = search._cache_size(), greedy._cache_size()
    rj.decode.ctc_prefix_beam_search(random_log_probs(1, 6, 4), 2, beam_size=5)
    rj.decode.ctc_prefix_beam_search(random_log_probs(2, 6, 4), jnp.int32(6), beam_size=5)
    rj.decode.ctc_greedy(random_log_probs(1, 6, 4), 3)
    assert (search._cache_size(), greedy._cache_size()) == sizes


def test_bad_inputs_name_the_argument():
    log_probs = random_log_probs(0, 4, 3)
    search = rj.decode.ctc_prefix_beam_search
    with pytest.raises(ValueError, match=r"log_probs: expected shape \[t, v\] \(one utterance; batch with jax.vmap\)"):
        search(log_probs[None], beam_size=2)
    with pytest.raises(ValueError, match=r"log_probs: expected shape \[t, v\]"):
        rj.decode.ctc_greedy(log_probs[0])
    with pytest.raises(TypeError, match="log_probs: expected a floating dtype"):
        search(jnp.zeros((4, 3), jnp.int32), beam_size=2)
    with pytest.raises(ValueError, match="beam_size: expected a positive integer"):
        search(log_probs, beam_size=0)
    with pytest.raises(ValueError, match=r"blank: expected a label id in \[0, 3\)"):
        search(log_probs, beam_size=2, blank=3)
    with pytest.raises(ValueError, match=r"blank: expected a label id in \[0, 3\)"):
        rj.decode.ctc_greedy(log_probs, blank=-1)
    with pytest.raises(ValueError, match="max_labels: expected a positive integer"):
        search(log_probs, beam_size=2, max_labels=0)
    with pytest.raises(ValueError, match="length: expected 0 <= length <= 4"):
        search(log_probs, 5, beam_size=2)
    with pytest.raises(ValueError, match=r"labels: expected shape \[b, n\]"):
        rj.losses.ctc_loss_from_lengths(log_probs[None], jnp.array([4]), jnp.array([1]), jnp.array([1]))
    with pytest.raises(ValueError, match="ref: expected a non-empty reference"):
        rj.metrics.error_rate("abc", "")


def test_ctc_loss_from_lengths_equals_brute_force():
    b, t, v = 3, 4, 3
    logits = 1.5 * jax.random.normal(jax.random.key(3), (b, t, v))
    labels = jnp.array([[1, 2], [2, 2], [1, 1]])
    lengths, label_lengths = jnp.array([4, 3, 2]), jnp.array([2, 2, 0])
    losses = rj.losses.ctc_loss_from_lengths(logits, lengths, labels, label_lengths)
    assert losses.shape == (b,)
    for i in range(b):
        exact = exhaustive(jax.nn.log_softmax(logits[i]), 0, int(lengths[i]))
        target = tuple(labels[i, : label_lengths[i]].tolist())
        assert float(losses[i]) == pytest.approx(-exact[target], abs=1e-4)
        # the same for one utterance, unbatched
        one = rj.losses.ctc_loss_from_lengths(logits[i], lengths[i], labels[i], label_lengths[i])
        assert float(one) == pytest.approx(float(losses[i]), abs=1e-5)
    # the beam search's score of a sequence is minus its loss
    out = rj.decode.ctc_prefix_beam_search(logits[0], beam_size=40)
    found = beam_as_dict(out)
    assert found[(1, 2)] == pytest.approx(-float(losses[0]), abs=1e-4)
    # another blank id: labels and blank swap roles
    swapped = rj.losses.ctc_loss_from_lengths(logits[:, :, ::-1], lengths, 2 - labels, label_lengths, blank=2)
    np.testing.assert_allclose(swapped, losses, atol=1e-5)


def test_edit_distance_and_error_rate():
    assert rj.metrics.edit_distance("", "") == 0
    assert rj.metrics.edit_distance("abc", "abc") == 0
    assert rj.metrics.edit_distance("abc", "abd") == 1  # substitution
    assert rj.metrics.edit_distance("abc", "abxc") == 1  # deletion from the reference's view
    assert rj.metrics.edit_distance("abxc", "abc") == 1  # insertion
    assert rj.metrics.edit_distance("", "abc") == 3
    assert rj.metrics.edit_distance("flaw", "lawn") == 2
    assert rj.metrics.edit_distance(np.array([1, 2, 3]), jnp.array([3, 2, 1])) == 2
    assert rj.metrics.error_rate("", "abcd") == 1.0
    assert rj.metrics.error_rate("abcdefgh", "ab") == 3.0  # insertions: above 1
    assert rj.metrics.error_rate("a b c".split(), "a x c".split()) == pytest.approx(1 / 3)
    # against a brute-force recursion on random short strings
    rng = np.random.default_rng(0)

    def slow(a, b):
        if not a or not b:
            return len(a) + len(b)
        return min(slow(a[1:], b) + 1, slow(a, b[1:]) + 1, slow(a[1:], b[1:]) + (a[0] != b[0]))

    for _ in range(30):
        a = "".join(rng.choice(list("ab"), rng.integers(0, 6)))
        c = "".join(rng.choice(list("abc"), rng.integers(0, 6)))
        assert rj.metrics.edit_distance(a, c) == slow(a, c)


# ----------------------------------------------------------------------------- argument values

LOSS = rj.losses.ctc_loss_from_lengths


@pytest.mark.parametrize(
    "args, message",
    [
        # used to return a negative loss (-0.43)
        ((6, [1, 5], 2), r"labels: expected label ids in \[0, 3\) other than blank \(0\) before label_lengths, got 5"),
        ((6, [1, -1], 2), r"labels: .*, got -1"),
        ((6, [1, 0], 2), r"labels: .* other than blank \(0\).*, got 0"),
        # used to be accepted as if the lengths were the array's
        ((9, [1, 2], 2), r"lengths: expected 0 <= lengths <= 6 \(the frames t of logits\), got 9"),
        ((-1, [1, 2], 2), r"lengths: .*, got -1"),
        ((6, [1, 2], 4), r"label_lengths: expected 0 <= label_lengths <= 2 \(the labels n of labels\), got 4"),
    ],
)
def test_ctc_loss_values_outside_their_range_are_named(args, message):
    lengths, labels, label_lengths = args
    with pytest.raises(ValueError, match=message):
        LOSS(jnp.zeros((6, 3)), lengths, jnp.array(labels), label_lengths)


def test_ctc_loss_padding_labels_are_free_and_traced_values_are_checked_in_checked_mode():
    logits = jnp.zeros((2, 6, 3))
    labels = jnp.array([[1, 2], [2, -1]])  # -1: padding after label_lengths
    lengths, label_lengths = jnp.array([6, 4]), jnp.array([2, 1])
    np.testing.assert_allclose(
        LOSS(logits, lengths, labels, label_lengths), LOSS(logits, lengths, labels.at[1, 1].set(1), label_lengths)
    )
    with pytest.raises(ValueError, match=r"lengths: .*, got 7"):
        LOSS(logits, jnp.array([6, 7]), labels, label_lengths)
    with rj.checking():
        checked = checkify.checkify(jax.jit(lambda *args: LOSS(*args)))
        assert checked(logits, lengths, labels, label_lengths)[0].get() is None
        assert "labels: expected label ids in [0, 3)" in checked(logits, lengths, labels, jnp.array([2, 2]))[0].get()
        assert "lengths: expected 0 <= lengths <= 6" in checked(logits, lengths + 1, labels, label_lengths)[0].get()


@settings(max_examples=25, deadline=None)
@given(
    t=st.integers(3, 4),
    n=st.integers(1, 2),
    length=st.integers(-1, 5),
    label_length=st.integers(-1, 3),
    labels=st.lists(st.integers(-1, 3), min_size=2, max_size=2),
    seed=st.integers(0, 2**16),
)
def test_ctc_loss_raises_a_named_error_or_equals_the_sum_over_alignments(t, n, length, label_length, labels, seed):
    v, labels = 3, np.array(labels[:n])
    logits = 1.5 * np.random.default_rng(seed).normal(size=(t, v)).astype(np.float32)
    bad = {"lengths"} if not 0 <= length <= t else set()
    bad |= {"label_lengths"} if not 0 <= label_length <= n else set()
    if 0 <= label_length <= n and np.any((labels[:label_length] <= 0) | (labels[:label_length] >= v)):  # blank: 0
        bad |= {"labels"}
    try:
        loss = LOSS(jnp.asarray(logits), length, jnp.asarray(labels), label_length)
    except (ValueError, TypeError) as e:
        assert bad and str(e).split(":")[0] in bad, e
        return
    assert not bad
    exact = exhaustive(jax.nn.log_softmax(logits), 0, length)
    target = tuple(labels[:label_length].tolist())
    if target in exact:
        assert float(loss) == pytest.approx(-exact[target], abs=1e-4)
    else:  # the labels do not fit in the frames
        assert float(loss) > 1e3
