"""Decoding: oracles (Markov chain, exhaustive search), beam 1 == greedy, vmap, sampling, no retrace."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
