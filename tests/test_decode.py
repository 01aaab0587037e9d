"""Decoding: oracles (Markov chain, exhaustive search, step-by-step reference), beam 1 == greedy, vmap, sampling,
no retrace."""

import functools
import itertools
import math

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnjax as rj

V, EOS, H = 3, 2, 8
CELL = rj.GRUCell(H)


def make_lm(seed=0, scale=2.0):
    keys = jax.random.split(jax.random.key(seed), 4)
    return {
        "embed": jax.random.normal(keys[0], (V, 4)),
        "cell": CELL.init(keys[1], 4),
        "w": scale * jax.random.normal(keys[2], (H, V)),
        "b": jax.random.normal(keys[3], (V,)),
    }


def lm_step(params, carry, token):
    carry, h = CELL.step(params["cell"], carry, params["embed"][token])
    return carry, h @ params["w"] + params["b"]


def start_carry(params):
    return CELL.initial_carry(params["cell"])


def markov_step(params, carry, token):
    return carry, jnp.log(params[token] + 1e-30)


def hypothesis_logprob(params, tokens, bos=0):
    step = jax.jit(lm_step)
    carry, token, total = start_carry(params), bos, 0.0
    for next_token in tokens:
        carry, logits = step(params, carry, token)
        total += float(jax.nn.log_softmax(logits)[next_token])
        token = next_token
    return total


def all_hypotheses(max_len):
    """Every output beam search can produce: ends in eos, or reaches max_len without it."""
    words = [t for t in range(V) if t != EOS]
    for length in range(1, max_len + 1):
        for prefix in itertools.product(words, repeat=length - 1):
            yield (*prefix, EOS)
    yield from itertools.product(words, repeat=max_len)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_wide_beam_equals_exhaustive_search(alpha):
    params, max_len = make_lm(1), 4
    scored = sorted(
        ((hypothesis_logprob(params, h) / rj.decode.length_penalty(len(h), alpha), h) for h in all_hypotheses(max_len)),
        key=lambda pair: -float(pair[0]),
    )
    out = rj.decode.beam_search(
        lm_step, params, start_carry(params), 0, beam_size=32, max_len=max_len, eos=EOS, alpha=alpha
    )
    for i in range(8):
        score, hyp = scored[i]
        np.testing.assert_allclose(float(out.scores[i]), float(score), rtol=1e-5)
        assert tuple(out.tokens[i, : int(out.lengths[i])].tolist()) == hyp
        assert set(out.tokens[i, int(out.lengths[i]) :].tolist()) <= {0}  # padding


def test_markov_chain_oracle():
    # from bos = 0, greedy takes 1 (p .6), then 2, then eos: p = .33; the best sequence is 3 eos: p = .36
    probs = jnp.array(
        [
            [0.0, 0.6, 0.0, 0.4, 0.0],
            [0.0, 0.0, 0.55, 0.0, 0.45],  # 1 -> 2 or eos
            [0.0, 0.0, 0.0, 0.0, 1.0],  # 2 -> eos
            [0.0, 0.0, 0.0, 0.1, 0.9],  # 3 -> eos mostly
            [0.0, 0.0, 0.0, 0.0, 1.0],
        ]
    )
    greedy_tokens, greedy_len = rj.decode.greedy(markov_step, probs, (), 0, max_len=4, eos=4)
    assert greedy_tokens[: int(greedy_len)].tolist() == [1, 2, 4]
    out = rj.decode.beam_search(markov_step, probs, (), 0, beam_size=3, max_len=4, eos=4, alpha=0.0)
    best = [out.tokens[i, : int(out.lengths[i])].tolist() for i in range(3)]
    assert best == [[3, 4], [1, 2, 4], [1, 4]]
    np.testing.assert_allclose(np.exp(out.scores), [0.36, 0.33, 0.27], rtol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_beam_one_is_greedy_without_eos_and_never_worse_with_it(seed):
    params = make_lm(seed)
    carry = start_carry(params)
    # without eos every hypothesis has max_len tokens: beam 1 keeps the argmax at each step
    tokens, length = rj.decode.greedy(lm_step, params, carry, 0, max_len=6)
    out = rj.decode.beam_search(lm_step, params, carry, 0, beam_size=1, max_len=6, alpha=0.0)
    np.testing.assert_array_equal(out.tokens[0], tokens)
    np.testing.assert_allclose(float(out.scores[0]), hypothesis_logprob(params, tokens.tolist()), rtol=1e-5)
    # with eos, beam 1 also keeps the best finished hypothesis apart from the live one, so it can
    # return a better (e.g. shorter) one than greedy, never a worse one
    tokens, length = rj.decode.greedy(lm_step, params, carry, 0, max_len=6, eos=EOS)
    greedy_logprob = hypothesis_logprob(params, tokens[: int(length)].tolist())
    for alpha in (0.0, 0.6, 1.5):
        out = rj.decode.beam_search(lm_step, params, carry, 0, beam_size=1, max_len=6, eos=EOS, alpha=alpha)
        greedy_score = greedy_logprob / float(rj.decode.length_penalty(int(length), alpha))
        assert float(out.scores[0]) >= greedy_score - 1e-5
        if abs(float(out.scores[0]) - greedy_score) < 1e-6:
            np.testing.assert_array_equal(out.tokens[0], tokens)


def test_batched_decoding_equals_one_at_a_time():
    params = make_lm(2)
    carries = jax.vmap(lambda h: rj.HiddenCarry(h))(jax.random.normal(jax.random.key(5), (4, H)))
    bos = jnp.array([0, 1, 0, 1])

    def beam(carry, b):
        return rj.decode.beam_search(lm_step, params, carry, b, beam_size=3, max_len=5, eos=EOS)

    def greedy(carry, b):
        return rj.decode.greedy(lm_step, params, carry, b, max_len=5, eos=EOS)

    batched_beam, batched_greedy = jax.vmap(beam)(carries, bos), jax.vmap(greedy)(carries, bos)
    for i in range(4):
        one = jax.tree_util.tree_map(lambda c, i=i: c[i], carries)
        for got, want in zip(
            jax.tree_util.tree_leaves((batched_beam, batched_greedy)),
            jax.tree_util.tree_leaves((beam(one, bos[i]), greedy(one, bos[i]))),
            strict=True,
        ):
            np.testing.assert_allclose(got[i], want, rtol=1e-6)


def test_zero_temperature_and_top_k_one_are_greedy():
    params = make_lm(3, scale=0.5)
    carry = start_carry(params)
    want = rj.decode.greedy(lm_step, params, carry, 0, max_len=8, eos=EOS)
    for kwargs in (dict(temperature=0.0), dict(top_k=1), dict(top_p=1e-6)):
        got = rj.decode.sample(lm_step, params, carry, 0, jax.random.key(9), max_len=8, eos=EOS, **kwargs)
        np.testing.assert_array_equal(got[0], want[0])
        assert int(got[1]) == int(want[1])


def test_sampling_follows_the_filtered_distribution():
    probs = jnp.array([[0.5, 0.3, 0.15, 0.05]] * 4)
    keys = jax.random.split(jax.random.key(0), 4000)

    def first_token(key, **kwargs):
        return rj.decode.sample(markov_step, probs, (), 0, key, max_len=1, **kwargs)[0][0]

    for kwargs, expected in [
        ({}, [0.5, 0.3, 0.15, 0.05]),
        ({"top_k": 2}, [0.5 / 0.8, 0.3 / 0.8, 0, 0]),
        ({"top_p": 0.7}, [0.5 / 0.8, 0.3 / 0.8, 0, 0]),  # .5 < .7, so 0.3 joins; then mass .8 >= .7
        ({"temperature": 0.5}, np.array([0.5, 0.3, 0.15, 0.05]) ** 2 / np.sum(np.array([0.5, 0.3, 0.15, 0.05]) ** 2)),
    ]:
        tokens = jax.jit(jax.vmap(lambda k, kw=kwargs: first_token(k, **kw)))(keys)
        freq = np.bincount(np.asarray(tokens), minlength=4) / len(keys)
        np.testing.assert_allclose(freq, expected, atol=0.03)


def test_step_by_step_logits_equal_teacher_forced_unroll():
    params = make_lm(4)
    tokens = jnp.array([0, 1, 1, 0, 2, 1])

    def step_scan(carry, token):
        return lm_step(params, carry, token)

    _, stepped = jax.lax.scan(step_scan, start_carry(params), tokens)
    _, hs = rj.unroll(CELL, params["cell"], params["embed"][tokens])
    np.testing.assert_allclose(stepped, hs @ params["w"] + params["b"], rtol=1e-5, atol=1e-6)


def test_no_retrace_with_new_params_and_scores_in_float32():
    traces = []

    def counted_step(params, carry, token):
        traces.append(1)
        return lm_step(params, carry, token)

    for seed in range(3):
        params = make_lm(seed)
        rj.decode.beam_search(counted_step, params, start_carry(params), 0, beam_size=2, max_len=4, eos=EOS)
    n = len(traces)
    assert n > 0
    params = make_lm(7)
    rj.decode.beam_search(counted_step, params, start_carry(params), 1, beam_size=2, max_len=4, eos=EOS)
    assert len(traces) == n  # new params, new bos: no new trace
    # a bfloat16 model: scores stay float32
    bf16 = jax.tree_util.tree_map(lambda p: p.astype(jnp.bfloat16), make_lm(0))
    out = rj.decode.beam_search(lm_step, bf16, start_carry(make_lm(0)), 0, beam_size=2, max_len=4, eos=EOS)
    assert out.scores.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out.scores)))


def test_no_eos_means_full_length_and_errors_are_named():
    params = make_lm(0)
    out = rj.decode.beam_search(lm_step, params, start_carry(params), 0, beam_size=2, max_len=3)
    assert out.lengths.tolist() == [3, 3]
    assert math.isfinite(float(out.scores[1]))
    with pytest.raises(ValueError, match="beam_size: expected a positive integer"):
        rj.decode.beam_search(lm_step, params, start_carry(params), 0, beam_size=0, max_len=3)
    with pytest.raises(ValueError, match="alpha: expected a length-penalty exponent >= 0"):
        rj.decode.beam_search(lm_step, params, start_carry(params), 0, beam_size=2, max_len=3, alpha=-1.0)
    with pytest.raises(ValueError, match="max_len: expected a positive integer"):
        rj.decode.greedy(lm_step, params, start_carry(params), 0, max_len=0)
    with pytest.raises(ValueError, match=r"step_fn: expected logits of shape \[v\]"):
        rj.decode.greedy(lambda p, c, t: (c, jnp.zeros((2, 3))), params, (), 0, max_len=2)


def reference_beam_search(step_fn, params, carry, bos, *, beam_size, max_len, eos, alpha, pad_id=0):
    """The documented algorithm in plain Python, one hypothesis at a time and every step (no early stop).

    Each step: the best 2k of the k v candidates (by log-probability, ties to the lower index
    ``beam * v + token``, as ``lax.top_k``); those that end join the finished ones, the best k
    kept by score (ties: the kept ones first, then the candidates in order); the first k that do
    not end stay live.
    """
    step = jax.jit(step_fn)
    k, neg_inf = beam_size, np.float32(-np.inf)
    live = [((), np.float32(0.0), carry, bos)] + [((), neg_inf, carry, bos)] * (k - 1)  # tokens, log p, carry, last
    finished = [((), neg_inf)] * k  # tokens, score
    for t in range(max_len):
        length, penalty = t + 1, np.float32(((5.0 + t + 1) / 6.0) ** alpha)
        candidates = []  # log p, index, tokens, carry
        for b, (tokens, logp, carry, last) in enumerate(live):
            carry, logits = step(params, carry, last)
            log_probs = np.asarray(jax.nn.log_softmax(logits.astype(jnp.float32)))
            candidates += [(logp + lp, b * len(log_probs) + v, (*tokens, v), carry) for v, lp in enumerate(log_probs)]
        best = sorted(candidates, key=lambda c: (-c[0], c[1]))[: 2 * k]
        ends = [c[2][-1] == eos or length == max_len for c in best]
        merged = [(score, 0, i, tokens) for i, (tokens, score) in enumerate(finished)]
        merged += [(c[0] / penalty, 1, j, c[2]) for j, (c, end) in enumerate(zip(best, ends, strict=True)) if end]
        finished = [(tokens, score) for score, _, _, tokens in sorted(merged, key=lambda m: (-m[0], m[1], m[2]))[:k]]
        live = [(c[2], c[0], c[3], c[2][-1]) for c, end in zip(best, ends, strict=True) if not end][:k]
        live += [((), neg_inf, carry, bos)] * (k - len(live))
    tokens, lengths = np.full((k, max_len), pad_id), np.zeros(k, int)
    for i, (hyp, score) in enumerate(finished):
        if score > neg_inf:  # else an empty slot
            tokens[i, : len(hyp)], lengths[i] = hyp, len(hyp)
    return tokens, lengths, np.array([score for _, score in finished], np.float32)


def check_against_reference(step_fn, params, carry, bos, rtol=1e-6, **kwargs):
    want = reference_beam_search(step_fn, params, carry, bos, **kwargs)
    got = rj.decode.beam_search(step_fn, params, carry, bos, **kwargs)
    np.testing.assert_array_equal(got.tokens, want[0])
    np.testing.assert_array_equal(got.lengths, want[1])
    np.testing.assert_allclose(got.scores, want[2], rtol=rtol)


def markov_step_logits(params, carry, token):
    return carry, params[token]


def integer_chain(seed, vocab=5, eos=None):
    """A Markov chain whose log-probabilities are exact integers (many exact ties), or -inf.

    The likeliest next token (often eos) has log-probability 0, the others <= -20, so
    log_softmax leaves them as they are (exp(-20) vanishes next to 1) and path sums are exact.
    """
    rng = np.random.default_rng(seed)
    logits = -rng.integers(20, 24, size=(vocab, vocab)).astype(np.float32)
    logits[rng.random((vocab, vocab)) < 0.2] = -np.inf
    likeliest = rng.integers(0, vocab, size=vocab)
    if eos is not None:
        likeliest = np.where(rng.random(vocab) < 0.5, eos, likeliest)
    logits[np.arange(vocab), likeliest] = 0.0
    return jnp.asarray(logits)


@pytest.mark.parametrize("beam_size", [1, 2, 4])
@pytest.mark.parametrize("eos, max_len, alpha", [(None, 4, 0.0), (None, 3, 0.6), (3, 5, 0.0), (3, 4, 1.0), (0, 3, 0.6)])
def test_beam_search_equals_the_step_by_step_reference_with_ties(beam_size, eos, max_len, alpha):
    for seed in range(6):
        logits = integer_chain(seed, eos=eos)
        np.testing.assert_array_equal(jax.nn.log_softmax(logits), logits)  # exact integer log-probabilities
        check_against_reference(
            markov_step_logits, logits, (), seed % 5, beam_size=beam_size, max_len=max_len, eos=eos, alpha=alpha
        )


PRECISE_CELL = rj.GRUCell(H, precision="highest")


def precise_lm_step(params, carry, token):
    carry, h = PRECISE_CELL.step(params["cell"], carry, params["embed"][token])
    return carry, jnp.dot(h, params["w"], precision="highest") + params["b"]


@pytest.mark.parametrize("beam_size", [1, 2, 3])
@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_narrow_beam_equals_the_step_by_step_reference_on_a_language_model(beam_size, alpha):
    # narrow beams on a 3-token vocabulary with eos: the 2k best, the finished/live split and the
    # early stop all matter (a wide beam is exhaustive)
    for seed in range(8):
        params = make_lm(seed, scale=1.0 + seed % 2)
        kwargs = dict(beam_size=beam_size, max_len=6, eos=EOS, alpha=alpha)
        check_against_reference(precise_lm_step, params, start_carry(params), seed % V, rtol=1e-5, **kwargs)


def test_eos_outside_the_vocabulary_is_named():
    with pytest.raises(ValueError, match="eos: expected a token id below the vocabulary size 5, got 5"):
        rj.decode.beam_search(markov_step_logits, integer_chain(0), (), 0, beam_size=2, max_len=3, eos=5)
    with pytest.raises(ValueError, match="eos: expected a token id below the vocabulary size 5, got 7"):
        rj.decode.greedy(markov_step_logits, integer_chain(0), (), 0, max_len=3, eos=7)


def test_without_eos_the_search_loop_has_no_data_dependent_stop_even_batched():
    # nothing ends before max_len, so the loop stops on its step count alone: under vmap its
    # condition stays one boolean for the batch (no per-example stopping test, which an
    # accelerator would read back on the host at every step), as greedy's does
    params = make_lm(0)
    carries = jax.vmap(lambda h: rj.HiddenCarry(h))(jnp.zeros((4, H)))

    def loop_condition_shapes(fn):
        eqns, shapes = list(jax.make_jaxpr(jax.vmap(fn))(carries).eqns), []
        while eqns:
            eqn = eqns.pop()
            if eqn.primitive.name == "while":
                shapes.append(eqn.params["cond_jaxpr"].out_avals[0].shape)
            eqns += [e for sub in jax.extend.core.jaxprs_in_params(eqn.params) for e in sub.eqns]
        return shapes

    for beam_size in (1, 3):
        search = functools.partial(rj.decode.beam_search, lm_step, params, beam_size=beam_size, max_len=5)
        assert loop_condition_shapes(lambda c, search=search: search(c, 0)) == [()]
    with_eos = functools.partial(rj.decode.beam_search, lm_step, params, beam_size=2, max_len=5, eos=EOS)
    assert loop_condition_shapes(lambda c: with_eos(c, 0)) == [(4,)]  # with eos, each example stops on its own


# ----------------------------------------------------------------------------- argument values

SAMPLE = functools.partial(rj.decode.sample, markov_step_logits, integer_chain(0), (), 0, jax.random.key(0), max_len=3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(top_p=0.0), r"top_p: expected 0 < top_p <= 1, got 0.0"),
        (dict(top_p=-0.5), r"top_p: expected 0 < top_p <= 1, got -0.5"),
        (dict(top_p=1.5), r"top_p: expected 0 < top_p <= 1, got 1.5"),
        (dict(top_p=np.float32(2.0)), r"top_p: expected 0 < top_p <= 1, got 2.0"),
        (dict(temperature=-1.0), r"temperature: expected a finite temperature >= 0 \(0 is greedy\), got -1.0"),
        (dict(temperature=float("nan")), r"temperature: expected a finite temperature >= 0 .*, got nan"),
        (dict(temperature=jnp.inf), r"temperature: expected a finite temperature >= 0 .*, got inf"),
        (dict(temperature=jnp.array(-0.5)), r"temperature: expected a finite temperature >= 0 .*, got -0.5"),
        (dict(top_k=1000), r"top_k: expected at most the vocabulary size \d+, got 1000"),
    ],
)
def test_sample_rejects_temperature_and_top_p_outside_their_range(kwargs, message):
    # each used to run: top_p <= 0 or nan temperature gave token 0 every step, a negative temperature argmax
    with pytest.raises(ValueError, match=message):
        SAMPLE(**kwargs)


def test_sample_checks_traced_temperature_and_top_p_in_checked_mode():
    from jax.experimental import checkify

    def run(temperature, top_p):
        return SAMPLE(temperature=temperature, top_p=top_p)

    with pytest.raises(ValueError, match=r"temperature: expected a scalar"):
        SAMPLE(temperature=jnp.ones(2))
    with pytest.raises(TypeError, match="top_p: expected a real number"):
        SAMPLE(top_p="0.9")
    jax.jit(lambda t, p: run(t, p))(-1.0, 0.0)  # traced, unchecked: nothing added to the compiled loop
    with rj.checking():
        checked = checkify.checkify(jax.jit(run))
        assert checked(0.5, 0.9)[0].get() is None
        assert "temperature: expected a finite temperature >= 0" in checked(-1.0, 0.9)[0].get()
        assert "top_p: expected 0 < top_p <= 1" in checked(0.5, 0.0)[0].get()


@pytest.mark.parametrize("bos", [5, -1, np.int64(7), jnp.array(5)])
@pytest.mark.parametrize("decoder", ["greedy", "sample", "beam_search"])
def test_bos_outside_the_vocabulary_is_named(decoder, bos):
    # used to run: the step's table lookup clamped or wrapped bos to another token
    step, table = markov_step_logits, integer_chain(0)
    call = {
        "greedy": lambda b: rj.decode.greedy(step, table, (), b, max_len=3, eos=1),
        "sample": lambda b: rj.decode.sample(step, table, (), b, jax.random.key(0), max_len=3),
        "beam_search": lambda b: rj.decode.beam_search(step, table, (), b, beam_size=2, max_len=3),
    }[decoder]
    with pytest.raises(ValueError, match=rf"bos: expected a token id in \[0, 5\) .*, got {int(bos)}"):
        call(bos)
    with pytest.raises(TypeError, match="bos: expected integer token ids"):
        call(1.0)
    # traced bos (vmap): checked in checked mode
    with rj.checking(), pytest.raises(Exception, match=r"bos: expected a token id in \[0, 5\)"):
        jax.vmap(call)(jnp.array([0, int(bos)]))


def greedy_reference(logits, bos, max_len, eos, pad_id=0):
    """Greedy decoding of a Markov chain of ``logits [v, v]`` in a Python loop."""
    tokens, token = [], bos
    while len(tokens) < max_len and (not tokens or tokens[-1] != eos):
        token = int(np.argmax(logits[token]))
        tokens.append(token)
    return tokens + [pad_id] * (max_len - len(tokens)), len(tokens)


@settings(max_examples=25, deadline=None)
@given(
    v=st.sampled_from([3, 4]),
    bos=st.integers(-2, 5),
    eos=st.one_of(st.none(), st.integers(0, 5)),
    max_len=st.sampled_from([1, 3]),
    temperature=st.sampled_from([0.0, -1.0, float("nan"), float("inf")]),
    top_p=st.sampled_from([None, 0.0, 0.5, 1.0, 1.5]),
    seed=st.integers(0, 3),
)
def test_decoders_raise_a_named_error_or_equal_a_python_loop(v, bos, eos, max_len, temperature, top_p, seed):
    logits = np.random.default_rng(seed).normal(size=(v, v)).astype(np.float32)
    bad = {"bos"} if not 0 <= bos < v else set()
    bad |= {"eos"} if eos is not None and eos >= v else set()
    want = greedy_reference(logits, bos, max_len, eos) if not bad else None
    kwargs = dict(max_len=max_len, eos=eos)
    try:
        tokens, length = rj.decode.greedy(markov_step_logits, jnp.asarray(logits), (), bos, **kwargs)
    except (ValueError, TypeError) as e:
        assert bad and str(e).split(":")[0] in bad, e
    else:
        assert not bad and (tokens.tolist(), int(length)) == want
    # temperature 0 samples greedily
    bad |= {"temperature"} if not 0 <= temperature < math.inf else set()
    bad |= {"top_p"} if top_p is not None and not 0 < top_p <= 1 else set()
    try:
        key = jax.random.key(seed)
        tokens, length = rj.decode.sample(
            markov_step_logits, jnp.asarray(logits), (), bos, key, temperature=temperature, top_p=top_p, **kwargs
        )
    except (ValueError, TypeError) as e:
        assert bad and str(e).split(":")[0] in bad, e
    else:
        assert not bad and (tokens.tolist(), int(length)) == want


def test_decoders_run_a_model_step_that_checks_values_in_checked_mode():
    # LanguageModel.step_fn checks its token ids in checked mode: the decoders' compiled loops run checkified
    model = rj.models.LanguageModel(V, 4, CELL)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    leaves = [jnp.full(s.shape, 0.1 * i, s.dtype) for i, s in enumerate(jax.tree_util.tree_leaves(shapes))]
    params = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shapes), leaves)
    carry = model.initial_carry(params)
    runs = {
        "greedy": lambda: rj.decode.greedy(model.step_fn, params, carry, 0, max_len=4, eos=EOS),
        "sample": lambda: rj.decode.sample(model.step_fn, params, carry, 0, jax.random.key(1), max_len=4),
        "beam": lambda: rj.decode.beam_search(model.step_fn, params, carry, 0, beam_size=2, max_len=4, eos=EOS),
    }
    for name, run in runs.items():
        want = run()
        with rj.checking():
            got = run()
        for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
            np.testing.assert_array_equal(g, w, err_msg=name)
