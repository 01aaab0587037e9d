"""VRNN: closed-form KL == Monte Carlo, IWAE vs ELBO, a Python-loop reference, gradients through time,
padding, vmap/jit shapes, bad input, and float64 check_grads.

Every model call is jitted and shared between tests where possible (XLA:CPU compiles dominate)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util
from jax.flatten_util import ravel_pytree

import rnnjax as rj
from conftest import as_float64
from rnnjax import vrnn
from rnnjax.vrnn import VRNN, AutoregressiveRNN

MODEL = VRNN(x_size=2, z_size=3, hidden_size=6, x_features=5, z_features=4, dense_size=7)
BASELINE = AutoregressiveRNN(x_size=2, hidden_size=6, x_features=5, dense_size=7)


@functools.cache
def init(model, seed=0):
    """Random params with ``init``'s structure (from ``jax.eval_shape``: nothing compiles), matrices
    scaled by ``1/sqrt(fan_in)``, biases N(0, 0.25) (zero biases are too easy)."""
    rng = np.random.default_rng(seed)

    def leaf(shape):
        scale = 1 / np.sqrt(shape.shape[0]) if len(shape.shape) == 2 else 0.5
        return jnp.asarray(scale * rng.standard_normal(shape.shape), shape.dtype)

    return jax.tree_util.tree_map(leaf, jax.eval_shape(model.init, jax.random.key(seed)))


def data(t=8, seed=0, f=2):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((t, f)), jnp.float32)


@functools.cache
def batched(model, method, **kwargs):
    """``jit(vmap(method))`` over keys (params and xs shared), compiled once per test session."""
    fn = functools.partial(getattr(model, method), **kwargs)
    return jax.jit(jax.vmap(fn, (None, None, 0)))


def keys(n, seed=1):
    return jax.random.split(jax.random.key(seed), n)


def test_public_names():
    assert set(vrnn.__all__) == {
        "VRNN",
        "VRNNParams",
        "VRNNTerms",
        "HeadParams",
        "AutoregressiveRNN",
        "AutoregressiveRNNParams",
        "gaussian_kl",
        "gaussian_log_prob",
    }
    for name in vrnn.__all__:
        if not name.endswith(("Params", "Terms")):  # NamedTuples: documented by field comments
            assert ">>>" in getattr(vrnn, name).__doc__, name


# ----------------------------------------------------------------------------- KL and the bounds


def test_closed_form_kl_equals_monte_carlo():
    rng = np.random.default_rng(0)
    loc_q, loc_p = (jnp.asarray(rng.standard_normal(4), jnp.float32) for _ in range(2))
    scale_q, scale_p = (jnp.asarray(rng.uniform(0.5, 2.0, 4), jnp.float32) for _ in range(2))
    z = loc_q + scale_q * jax.random.normal(jax.random.key(0), (200_000, 4))
    log_ratio = vrnn.gaussian_log_prob(z, loc_q, scale_q) - vrnn.gaussian_log_prob(z, loc_p, scale_p)
    standard_error = float(jnp.std(log_ratio)) / np.sqrt(z.shape[0])
    kl = float(vrnn.gaussian_kl(loc_q, scale_q, loc_p, scale_p))
    assert abs(float(jnp.mean(log_ratio)) - kl) < 4 * standard_error  # tolerance: 4 standard errors (~0.01 nats)
    assert kl > 0
    np.testing.assert_allclose(vrnn.gaussian_kl(loc_q, scale_q, loc_q, scale_q), 0.0, atol=1e-6)


def test_gaussian_log_prob_matches_scipy_formula():
    x, loc, scale = jnp.array([0.3, -1.0]), jnp.array([0.0, 1.0]), jnp.array([0.5, 2.0])
    expected = sum(
        -np.log(s) - 0.5 * np.log(2 * np.pi) - 0.5 * ((a - m) / s) ** 2
        for a, m, s in zip([0.3, -1.0], [0.0, 1.0], [0.5, 2.0], strict=True)
    )
    np.testing.assert_allclose(vrnn.gaussian_log_prob(x, loc, scale), expected, rtol=1e-6)


@functools.cache
def _posterior_runs():
    """Per-step terms of 4000 posterior trajectories of one sequence: (log_lik, kl, log p(z|h) - log q(z|x,h))."""
    run = jax.jit(jax.vmap(MODEL._posterior_run, (None, None, 0, None)))
    return run(init(MODEL), data(), keys(4000), None)


def test_model_kl_equals_monte_carlo_along_trajectories():
    # sum_t KL_t (closed form at the sampled h_{t-1}) and sum_t log q - log p (at the sampled z_t)
    # have the same expectation over the posterior trajectories.
    _, kl, log_ratio = _posterior_runs()
    diff = np.asarray(kl.sum(1) + log_ratio.sum(1), np.float64)  # paired: the same draws
    assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(len(diff))
    assert float(kl.sum(1).mean()) > 0.1  # a non-trivial KL, so the check means something
    # the closed form has the lower variance (that is why the ELBO uses it)
    assert float(kl.sum(1).var()) < float(log_ratio.sum(1).var())


@functools.cache
def _iwae_50():
    """IWAE with 50 particles for 64 keys: the bounds [64] and the log weights [64, 50]."""
    return batched(MODEL, "iwae", num_samples=50)(init(MODEL), data(), keys(64, seed=3))


def test_iwae_with_one_particle_equals_the_elbo_in_expectation():
    # with K = 1 the bound is the particle's log weight: the same key gives the same number
    params, xs, key = init(MODEL), data(), jax.random.key(2)
    bound, log_w = jax.jit(MODEL.iwae)(params, xs, key)  # num_samples=1
    np.testing.assert_allclose(bound, log_w[0], rtol=1e-6)
    # in expectation, the K = 1 bound (3200 particles) equals the ELBO (4000 draws of the closed-form-KL estimate)
    log_lik, kl, _ = _posterior_runs()
    elbos = np.asarray((log_lik - kl).sum(1), np.float64)
    iwae_1 = np.asarray(_iwae_50()[1], np.float64).ravel()
    standard_error = np.sqrt(iwae_1.var() / len(iwae_1) + elbos.var() / len(elbos))
    assert abs(iwae_1.mean() - elbos.mean()) < 4 * standard_error


def test_iwae_bound_rises_with_the_number_of_particles():
    # the 50 particles of each key, cut into groups of K, give 50 / K independent draws of the K-particle bound
    bounds, log_w = _iwae_50()
    means = [float(np.mean(jax.nn.logsumexp(log_w.reshape(64, 50 // k, k), axis=-1) - np.log(k))) for k in (1, 5, 50)]
    np.testing.assert_allclose(means[2], bounds.mean(), rtol=1e-5)
    assert means[0] + 0.1 < means[1] < means[2] - 0.1, means


# ----------------------------------------------------------------------------- the model equals its equations


def _reference_elbo(model, params, xs, key):
    """The VRNN's equations as a Python loop over steps, with plain matmuls."""
    relu = jax.nn.relu

    def dense(p, u):
        return u @ p.w + p.b

    def head(p, u):
        a = relu(dense(p.hidden, u))
        return dense(p.loc, a), jax.nn.softplus(dense(p.scale, a)) + model.min_scale

    carry = model.cell.initial_carry(params.cell)
    h = jnp.zeros(model.hidden_size)
    elbo = 0.0
    for t, x in enumerate(xs):
        fx = relu(dense(params.phi_x, x))
        mu0, s0 = head(params.prior, h)
        muz, sz = head(params.posterior, jnp.concatenate([fx, h]))
        z = muz + sz * jax.random.normal(jax.random.fold_in(key, t), (model.z_size,))
        fz = relu(dense(params.phi_z, z))
        mux, sx = head(params.decoder, jnp.concatenate([fz, h]))
        log_lik = jnp.sum(-jnp.log(sx) - 0.5 * math.log(2 * math.pi) - 0.5 * ((x - mux) / sx) ** 2)
        kl = jnp.sum(jnp.log(s0 / sz) + (sz**2 + (muz - mu0) ** 2) / (2 * s0**2) - 0.5)
        elbo = elbo + log_lik - kl
        carry, h = model.cell.step(params.cell, carry, jnp.concatenate([fx, fz]))
    return elbo


@pytest.mark.parametrize(
    "cell", [None, pytest.param(rj.LSTMCell(6), marks=pytest.mark.slow)], ids=["gru", "lstm"]
)  # the LSTM's h_0 comes from its two-part carry
def test_elbo_equals_a_python_loop_over_the_equations(cell):
    model = MODEL if cell is None else VRNN(2, 3, 6, x_features=5, z_features=4, dense_size=7, cell=cell)
    params, xs, key = init(model), data(t=5), jax.random.key(4)
    elbo, terms = jax.jit(model.elbo)(params, xs, key)
    reference = jax.jit(functools.partial(_reference_elbo, model))(params, xs, key)  # one compile, not op by op
    np.testing.assert_allclose(elbo, reference, rtol=1e-5)
    np.testing.assert_allclose(elbo, jnp.sum(terms.log_likelihood - terms.kl), rtol=1e-6)


def test_baseline_log_likelihood_equals_unroll_then_head():
    params, xs = init(BASELINE), data(t=7)
    total, per_step = jax.jit(BASELINE.log_likelihood)(params, xs)
    fxs = jax.nn.relu(xs @ params.phi_x.w + params.phi_x.b)
    _, ys = rj.unroll(BASELINE.cell, params.cell, fxs)
    hs = jnp.concatenate([jnp.zeros((1, 6)), ys[:-1]])  # h_{t-1}
    loc, scale = BASELINE._decoder().apply(params.decoder, hs)
    np.testing.assert_allclose(per_step, vrnn.gaussian_log_prob(xs, loc, scale), rtol=1e-5)
    np.testing.assert_allclose(total, per_step.sum(), rtol=1e-6)


# ----------------------------------------------------------------------------- gradients


def test_gradient_reaches_early_inputs():
    params, xs, key = init(MODEL), data(t=50, seed=1), jax.random.key(5)
    assert float(jax.nn.relu(xs[0] @ params.phi_x.w + params.phi_x.b).max()) > 0  # x_0 reaches h_0

    def elbo_and_last_step(xs):
        elbo, terms = MODEL.elbo(params, xs, key)
        return jnp.stack([elbo, terms.log_likelihood[-1] - terms.kl[-1]])

    grads = jax.jit(jax.jacrev(elbo_and_last_step))(xs)  # [2, t, f]
    assert bool(jnp.all(jnp.isfinite(grads)))
    assert float(jnp.abs(grads[0, 0]).sum()) > 0
    # the last step's terms depend on x_0 only through 49 steps of the recurrence
    assert float(jnp.abs(grads[1, 0]).sum()) > 0
    assert not np.any(grads[1, -1] == 0)  # and directly on x_{t-1} (a sanity check of the test)


def test_check_grads_in_float64(x64):
    model = VRNN(x_size=2, z_size=2, hidden_size=3, x_features=3, z_features=2, dense_size=4, activation="tanh")
    params = as_float64(init(model))
    xs = data(t=3).astype(jnp.float64)
    key = jax.random.key(6)  # fixed: the ELBO at fixed noise is a smooth function of params and xs
    # one flat vector of params and inputs: check_grads's finite differences then run as few eager ops
    flat, unravel = ravel_pytree((params, xs))

    @jax.jit
    def elbo(flat):
        return model.elbo(*unravel(flat), key)[0]

    assert elbo(flat).dtype == jnp.float64
    test_util.check_grads(elbo, (flat,), order=1, modes=("rev",))


# ----------------------------------------------------------------------------- padding, shapes, sampling


def test_padding_beyond_length_does_not_change_the_bounds():
    n = 5
    xs = data(t=n)
    padded = jnp.concatenate([xs, 100.0 * data(t=4, seed=9)])

    params, baseline_params = init(MODEL), init(BASELINE)  # made outside the jit: arguments, not constants

    @jax.jit
    def run(params, baseline_params, xs, length):
        key = jax.random.key(7)
        elbo, terms = MODEL.elbo(params, xs, key, length=length)
        iwae = MODEL.iwae(params, xs, key, num_samples=3, length=length)[0]
        log_lik, per_step = BASELINE.log_likelihood(baseline_params, xs, length=length)
        return elbo, iwae, log_lik, terms, per_step

    def bounds(xs, length):
        return run(params, baseline_params, xs, length)

    unpadded, with_padding = bounds(xs, n), bounds(padded, n)
    for a, b in zip(with_padding[:3], unpadded[:3], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(with_padding[3].kl[:n], unpadded[3].kl, rtol=1e-6)
    assert not np.any(with_padding[3].kl[n:]) and not np.any(with_padding[3].log_likelihood[n:])
    assert not np.any(with_padding[4][n:])
    np.testing.assert_array_equal(bounds(padded, 0)[:3], 0.0)  # an empty sequence


def test_vmap_matches_a_loop_and_shapes():
    params, xs, lengths = init(MODEL), jnp.stack([data(6, s) for s in range(3)]), jnp.array([6, 2, 4])
    ks = keys(3, seed=8)
    elbos, terms = jax.jit(jax.vmap(lambda x, k, n: MODEL.elbo(params, x, k, length=n)))(xs, ks, lengths)
    assert elbos.shape == (3,) and terms.kl.shape == (3, 6) and elbos.dtype == jnp.float32
    elbo = jax.jit(MODEL.elbo)
    for i in range(3):
        np.testing.assert_allclose(elbos[i], elbo(params, xs[i], ks[i], length=lengths[i])[0], rtol=1e-5)
    bounds, log_w = jax.jit(jax.vmap(functools.partial(MODEL.iwae, num_samples=4), (None, 0, 0)))(params, xs, ks)
    assert bounds.shape == (3,) and log_w.shape == (3, 4)

    xs_vrnn, zs = jax.jit(MODEL.sample, static_argnums=2)(params, jax.random.key(0), 9)  # baseline: doctested
    assert xs_vrnn.shape == (9, 2) and zs.shape == (9, 3) and bool(jnp.all(jnp.isfinite(xs_vrnn)))


def test_bernoulli_output():
    model = VRNN(x_size=3, z_size=2, hidden_size=4, output="bernoulli")
    params = init(model)
    assert params.decoder.scale is None
    xs = (data(t=6, f=3) > 0).astype(jnp.float32)

    @jax.jit
    def elbo_and_samples(key):
        return model.elbo(params, xs, key), model.sample(params, key, 5)[0]

    (elbo, terms), samples = elbo_and_samples(jax.random.key(0))
    assert bool(jnp.all(terms.log_likelihood <= 0)) and float(elbo) < 0
    assert set(np.unique(samples)) <= {0.0, 1.0}


def test_the_default_cell_is_a_gru_and_models_are_hashable():
    assert MODEL.cell == rj.GRUCell(6)
    assert hash(MODEL) == hash(VRNN(x_size=2, z_size=3, hidden_size=6, x_features=5, z_features=4, dense_size=7))
    assert VRNN(1, 1, 8).x_features == VRNN(1, 1, 8).z_features == VRNN(1, 1, 8).dense_size == 8


# ----------------------------------------------------------------------------- bad input


def test_bad_input_names_the_argument():
    params, key = init(MODEL), jax.random.key(0)
    with pytest.raises(ValueError, match=r"xs: expected last axis of size 2"):
        MODEL.elbo(params, jnp.ones((5, 3)), key)
    with pytest.raises(ValueError, match=r"xs: expected shape \[t, 2\] \(one sequence; batch with jax.vmap\)"):
        MODEL.iwae(params, jnp.ones((4, 5, 2)), key, num_samples=2)
    with pytest.raises(TypeError, match="xs: expected a floating dtype"):
        MODEL.elbo(params, jnp.ones((5, 2), jnp.int32), key)
    with pytest.raises(ValueError, match=r"length: expected 0 <= length <= 5"):
        MODEL.elbo(params, jnp.ones((5, 2)), key, length=6)
    with pytest.raises(ValueError, match="num_samples: expected a positive integer"):
        MODEL.iwae(params, jnp.ones((5, 2)), key, num_samples=0)
    with pytest.raises(ValueError, match="num_steps: expected a positive integer"):
        MODEL.sample(params, key, 0)
    with pytest.raises(TypeError, match="params: expected VRNNParams"):
        MODEL.elbo(init(BASELINE), jnp.ones((5, 2)), key)
    with pytest.raises(ValueError, match="cell: expected a cell with output size hidden_size=6, got 5"):
        VRNN(2, 3, 6, cell=rj.LSTMCell(5))
    with pytest.raises(ValueError, match="output: expected one of"):
        VRNN(2, 3, 6, output="poisson")
    with pytest.raises(ValueError, match="z_size: expected a positive integer"):
        VRNN(2, 0, 6)
    with pytest.raises(ValueError, match="x_size: expected a positive integer"):
        AutoregressiveRNN(0, 6)
