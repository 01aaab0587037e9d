"""Layer-normalized LSTM and GRU: a float64 NumPy loop of the equations, gradients, hoisting, per-example
statistics, 16-bit params, the normalisation itself, and bad input.

The generic cell tests (tests/test_cells.py, tests/test_recurrence.py, ...) also run over these cells
through the catalogue in conftest.py (ids ``layernorm_*``)."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

import rnnjax as rj
from docs_helpers import ROOT
from rnnjax.cells import layernorm

H, F, T = 5, 3, 7
EPS = 1e-5
CELLS = {
    "lstm": rj.LayerNormLSTMCell(H, param_dtype=jnp.float64),
    "gru": rj.LayerNormGRUCell(H, param_dtype=jnp.float64),
    "gru_cho": rj.LayerNormGRUCell(H, reset_after=False, param_dtype=jnp.float64),
}


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_ln(z, ln):
    """Layer normalisation over the last axis, NumPy float64."""
    mean = z.mean(-1, keepdims=True)
    var = ((z - mean) ** 2).mean(-1, keepdims=True)
    return ln.gain * (z - mean) / np.sqrt(var + EPS) + ln.bias


def np_masks(noise, num_steps):
    """Training noise as NumPy: input and recurrent dropout masks, and each step's zoneout keep masks."""
    if noise is None:
        return np.ones(F), np.ones(H), [None] * num_steps
    ones = np.ones
    inputs = ones(F) if noise.inputs is None else np.asarray(noise.inputs, np.float64)
    recurrent = ones(H) if noise.recurrent is None else np.asarray(noise.recurrent, np.float64)
    keep = (
        [None] * num_steps
        if noise.zoneout is None
        else [[np.asarray(k[t]) for k in noise.zoneout] for t in range(num_steps)]
    )
    return inputs, recurrent, keep


def np_lstm(p, xs, h, c, noise=None):
    """Ba et al.'s LN-LSTM written out: [i,f,g,o] = LN(x W_i) + LN(h W_h) + b; h = s(o) tanh(LN(c)).
    With training ``noise``: x * input mask, h * recurrent mask in the recurrent matmul, zoneout after."""
    ys = []
    in_mask, rec_mask, keep = np_masks(noise, len(xs))
    for x, kept in zip(xs, keep, strict=True):
        a = np_ln((x * in_mask) @ p.w_i, p.ln_i) + np_ln((h * rec_mask) @ p.w_h, p.ln_h) + p.b
        i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
        new_c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        new_h = sigmoid(o) * np.tanh(np_ln(new_c, p.ln_c))
        h, c = (new_h, new_c) if kept is None else (np.where(kept[0], h, new_h), np.where(kept[1], c, new_c))
        ys.append(h)
    return (h, c), np.stack(ys)


def np_gru(p, xs, h, reset_after, noise=None):
    """The LN-GRU of the docstring written out, both reset variants (training ``noise`` as in np_lstm)."""
    ys = []
    g_h, b_h = p.ln_h.gain, p.ln_h.bias
    in_mask, rec_mask, keep = np_masks(noise, len(xs))
    for x, kept in zip(xs, keep, strict=True):
        u = np_ln((x * in_mask) @ p.w_i, p.ln_i) + p.b
        h_in = h * rec_mask
        if reset_after:
            v = np_ln(h_in @ p.w_h, p.ln_h) + p.b_h
            r, z = sigmoid(u[:H] + v[:H]), sigmoid(u[H : 2 * H] + v[H : 2 * H])
            n = np.tanh(u[2 * H :] + r * v[2 * H :])
        else:
            v = np_ln(h_in @ p.w_h[:, : 2 * H], rj.LayerNormParams(g_h[: 2 * H], b_h[: 2 * H]))
            r, z = sigmoid(u[:H] + v[:H]), sigmoid(u[H : 2 * H] + v[H:])
            cand = np_ln((r * h_in) @ p.w_h[:, 2 * H :], rj.LayerNormParams(g_h[2 * H :], b_h[2 * H :]))
            n = np.tanh(u[2 * H :] + cand)
        new_h = (1 - z) * n + z * h
        h = new_h if kept is None else np.where(kept[0], h, new_h)
        ys.append(h)
    return (h,), np.stack(ys)


def numpy_params(cell, rng):
    """Random params of ``cell``'s shapes in float64 NumPy: gains around 1, everything else N(0, 0.5^2)."""
    shapes = jax.eval_shape(lambda: cell.init(jax.random.key(0), F))
    params = jax.tree_util.tree_map(lambda s: 0.5 * rng.standard_normal(s.shape), shapes)
    gains = {name: ln._replace(gain=1 + ln.gain) for name, ln in params._asdict().items() if name.startswith("ln_")}
    return params._replace(**gains)


def random_carry(cell, rng, batch_shape=()):
    sizes = jax.tree_util.tree_map(lambda a: a.shape[-1], cell.initial_carry(cell.init(jax.random.key(0), F)))
    return jax.tree_util.tree_map(lambda n: 0.5 * rng.standard_normal((*batch_shape, n)), sizes)


def oracle(name, params, xs, carry, noise=None):
    if name == "lstm":
        return np_lstm(params, xs, carry.h, carry.c, noise)
    return np_gru(params, xs, carry.h, name == "gru", noise)


@pytest.mark.parametrize("hoist", [False, True], ids=["in-loop", "hoisted"])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_unroll_equals_the_equations_in_float64(name, hoist, x64):
    cell, rng = CELLS[name], np.random.default_rng(0)
    params, carry = numpy_params(cell, rng), random_carry(cell, rng)
    xs = rng.standard_normal((T, F))
    want_carry, want_ys = oracle(name, params, xs, carry)
    got_carry, got_ys = rj.unroll(cell, params, xs, carry, hoist=hoist)
    assert got_ys.dtype == jnp.float64
    np.testing.assert_allclose(got_ys, want_ys, rtol=1e-12, atol=1e-12)
    for got, want in zip(got_carry, want_carry, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_training_noise_equals_the_equations(name, x64):
    """Dropout (one input and one recurrent mask per sequence) and zoneout (a keep mask per step)."""
    cell = dataclasses.replace(CELLS[name], dropout=0.3, recurrent_dropout=0.3, zoneout=0.25)
    rng = np.random.default_rng(4)
    params, carry, xs = numpy_params(cell, rng), random_carry(cell, rng), rng.standard_normal((T, F))
    key = jax.random.key(5)
    noise = cell.sequence_noise(key, jax.tree_util.tree_map(jnp.asarray, params), T)
    want_carry, want_ys = oracle(name, params, xs, carry, noise)
    got_carry, got_ys = rj.unroll(cell, params, xs, carry, key=key)
    np.testing.assert_allclose(got_ys, want_ys, rtol=1e-12, atol=1e-12)
    for got, want in zip(got_carry, want_carry, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_the_first_step_from_a_zero_carry_normalises_zeros_to_the_bias(name, x64):
    # LN(0 W_h) = 0 * gain + bias: finite thanks to epsilon, and equal to the equations
    cell, rng = CELLS[name], np.random.default_rng(1)
    params, xs = numpy_params(cell, rng), rng.standard_normal((3, F))
    zero = jax.tree_util.tree_map(np.zeros_like, random_carry(cell, rng))
    np.testing.assert_allclose(rj.unroll(cell, params, xs)[1], oracle(name, params, xs, zero)[1], rtol=1e-12)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_unroll_gradients_float64(name, x64):
    cell, rng = CELLS[name], np.random.default_rng(2)
    params = jax.tree_util.tree_map(jnp.asarray, numpy_params(cell, rng))
    carry = jax.tree_util.tree_map(jnp.asarray, random_carry(cell, rng))
    xs = jnp.asarray(rng.standard_normal((4, F)))
    run = jax.jit(lambda p, c, x: rj.unroll(cell, p, x, c)[1])
    test_util.check_grads(run, (params, carry, xs), order=1, modes=("fwd", "rev"))


@pytest.mark.parametrize("name", sorted(CELLS))
def test_hoisted_equals_in_loop_float32(name):
    # float32 at precision="highest" (the suite's default): the projection of the whole sequence is the
    # per-step projection row by row, and the two unroll paths agree
    cell = type(CELLS[name])(**{**vars(CELLS[name]), "param_dtype": jnp.float32})
    rng = np.random.default_rng(3)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), numpy_params(cell, rng))
    xs = jnp.asarray(rng.standard_normal((T, F)), jnp.float32)
    per_row = jnp.stack([cell.project(params, x) for x in xs])
    np.testing.assert_allclose(cell.project(params, xs), per_row, rtol=1e-6, atol=1e-6)
    _, loop_ys = rj.unroll(cell, params, xs, hoist=False)
    _, hoisted_ys = rj.unroll(cell, params, xs, hoist=True)
    np.testing.assert_allclose(hoisted_ys, loop_ys, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_statistics_are_per_example(name, x64):
    # examples of very different scales in one batch: if a mean or a variance were taken over the
    # batch, the batched results would differ from one example at a time
    cell, rng = CELLS[name], np.random.default_rng(4)
    params = numpy_params(cell, rng)
    scales = np.array([0.01, 1.0, 100.0])[:, None, None]
    xs = rng.standard_normal((3, T, F)) * scales
    carries = random_carry(cell, rng, (3,))
    one_at_a_time = [
        rj.unroll(cell, params, xs[k], jax.tree_util.tree_map(lambda c, k=k: c[k], carries))[1] for k in range(3)
    ]
    _, vmapped = jax.vmap(lambda x, c: rj.unroll(cell, params, x, c))(xs, carries)
    np.testing.assert_allclose(vmapped, np.stack(one_at_a_time), rtol=1e-12, atol=1e-12)
    # leading batch axes straight into step (no vmap): the statistics run over the features only
    _, ys = cell.step(params, carries, xs[:, 0])
    for k in range(3):
        _, y = cell.step(params, jax.tree_util.tree_map(lambda c, k=k: c[k], carries), xs[k, 0])
        np.testing.assert_allclose(ys[k], y, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(y, one_at_a_time[k][0], rtol=1e-12, atol=1e-12)


# the normalised pre-activations, before the gain: what each LN of a step sees, and its size
LN_SIZES = {"lstm": [4 * H, 4 * H, H], "gru": [3 * H, 3 * H], "gru_cho": [3 * H, 2 * H, H]}


@pytest.mark.parametrize("name", sorted(CELLS))
def test_normalised_preactivations_have_mean_0_and_variance_1_per_step(name, monkeypatch, x64):
    cell = type(CELLS[name])(**{**vars(CELLS[name]), "epsilon": 1e-12})  # variance 1 up to 1e-12 / var
    rng = np.random.default_rng(5)
    params = numpy_params(cell, rng)
    xs = rng.standard_normal((T, 2, F))  # a batch of 2 at every step
    carry = random_carry(cell, rng, (2,))

    # the input side through the public project: with gain 1, bias 0 and b = 0, us is LN(x W_i) itself
    plain = params._replace(b=0 * params.b, ln_i=rj.LayerNormParams(np.ones_like(params.b), 0 * params.b))
    us = np.asarray(cell.project(plain, xs))
    np.testing.assert_allclose(us.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(us.var(-1), 1, rtol=1e-9)

    # every normalisation of every step (input, recurrent, cell state), seen from inside
    seen = []

    def spy(z, epsilon):
        out = normalized(z, epsilon)
        seen.append(np.asarray(out))
        return out

    normalized = layernorm._normalized
    monkeypatch.setattr(layernorm, "_normalized", spy)
    for x in xs:
        carry, _ = cell.step(params, carry, x)
    assert [a.shape for a in seen] == [(2, n) for _ in range(T) for n in LN_SIZES[name]]
    for a in seen:
        np.testing.assert_allclose(a.mean(-1), 0, atol=1e-12)
        np.testing.assert_allclose(a.var(-1), 1, rtol=1e-9)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_16_bit_params_smoke(name):
    base = CELLS[name]
    for dtype in (jnp.bfloat16, jnp.float16):
        cell = type(base)(**{**vars(base), "param_dtype": dtype})
        params = cell.init(jax.random.key(0), F)
        assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(params)} == {jnp.dtype(dtype)}
        assert float(params.ln_i.gain[0]) == 1.0 and float(params.ln_h.bias[0]) == 0.0
        xs = jax.random.normal(jax.random.key(1), (T, F)).astype(dtype)
        carry, ys = rj.unroll(cell, params, xs)
        assert ys.dtype == dtype and bool(jnp.all(jnp.isfinite(ys.astype(jnp.float32))))
        if name == "lstm":
            assert carry.c.dtype == jnp.float32  # a 16-bit cell state drifts (as LSTMCell)
        cell32 = type(base)(**{**vars(base), "param_dtype": jnp.float32})
        params32 = jax.tree_util.tree_map(lambda p: p.astype(jnp.float32), params)
        want = rj.unroll(cell32, params32, xs.astype(jnp.float32))[1]
        np.testing.assert_allclose(ys.astype(jnp.float32), want, atol=0.05)


def test_init_hashing_and_gate_fields():
    params = rj.LayerNormLSTMCell(4, forget_bias=2.0).init(jax.random.key(0), 3)
    np.testing.assert_array_equal(params.b, [0.0] * 4 + [2.0] * 4 + [0.0] * 8)
    for ln, size in ((params.ln_i, 16), (params.ln_h, 16), (params.ln_c, 4)):
        np.testing.assert_array_equal(ln.gain, np.ones(size))
        np.testing.assert_array_equal(ln.bias, np.zeros(size))
    assert rj.LayerNormLSTMCell(4) == rj.LayerNormLSTMCell(4, epsilon=1e-5)
    assert hash(rj.LayerNormGRUCell(4, epsilon=1)) == hash(rj.LayerNormGRUCell(4, epsilon=1.0))
    assert rj.LayerNormGRUCell(4) != rj.LayerNormGRUCell(4, epsilon=1e-3)
    assert isinstance(params, rj.typing.GatedParams)
    # model-parallel sharding splits the gate columns, the LN params of the 4h gate columns included
    specs = rj.parallel.param_shardings(params, rj.parallel.make_mesh(1))
    assert specs.ln_i.gain.spec == specs.b.spec == jax.sharding.PartitionSpec("model")
    assert specs.ln_c.gain.spec == jax.sharding.PartitionSpec()  # [h]: not gate columns


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: rj.LayerNormLSTMCell(4, epsilon=0.0), ValueError, "epsilon: expected a positive finite float"),
        (lambda: rj.LayerNormGRUCell(4, epsilon=-1e-5), ValueError, "epsilon: expected a positive finite float"),
        (lambda: rj.LayerNormGRUCell(4, epsilon=float("nan")), ValueError, "epsilon: expected a positive"),
        (lambda: rj.LayerNormLSTMCell(4, epsilon="1e-5"), ValueError, "epsilon: expected a positive finite"),
        (lambda: rj.LayerNormLSTMCell(0), ValueError, "hidden_size: expected a positive integer, got 0"),
        (lambda: rj.LayerNormLSTMCell(4, zoneout=1.0), ValueError, r"zoneout: expected a rate in \[0, 1\)"),
        (lambda: rj.LayerNormGRUCell(4, param_dtype=jnp.int32), TypeError, "param_dtype: expected a float dtype"),
    ],
)
def test_bad_hyperparameters_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


def _zeros(cell, input_size=F):
    shapes = jax.eval_shape(lambda: cell.init(jax.random.key(0), input_size))
    return jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)


def test_bad_inputs_and_params_are_named():
    lstm, gru = rj.LayerNormLSTMCell(4), rj.LayerNormGRUCell(4)
    params = _zeros(lstm)
    with pytest.raises(ValueError, match=re.escape("xs: expected last axis of size 3")):
        lstm.project(params, jnp.ones((5, 4)))
    with pytest.raises(TypeError, match="xs: expected a floating dtype"):
        rj.unroll(lstm, params, jnp.ones((5, F), jnp.int32))
    with pytest.raises(
        TypeError, match=re.escape("params: expected LayerNormLSTMParams (from LayerNormLSTMCell.init)")
    ):
        rj.unroll(lstm, _zeros(rj.LSTMCell(4)), jnp.ones((5, F)))
    bad = params._replace(ln_c=params.ln_c._replace(gain=np.ones(5, np.float32)))
    with pytest.raises(ValueError) as info:
        rj.unroll(lstm, bad, jnp.ones((5, F)))
    assert str(info.value) == "params.ln_c.gain: expected shape (4,) for LayerNormLSTMCell(hidden_size=4), got (5,)"
    with pytest.raises(ValueError, match=re.escape("(made by LayerNormGRUCell(hidden_size=4, reset_after=False)?)")):
        rj.unroll(gru, _zeros(rj.LayerNormGRUCell(4, reset_after=False)), jnp.ones((5, F)))
    with pytest.raises(ValueError, match=re.escape("params.ln_h.bias: expected shape (12,)")):
        gru.recur(
            _zeros(gru)._replace(ln_h=rj.LayerNormParams(np.ones(12), np.ones(1))),
            gru.initial_carry(_zeros(gru)),
            jnp.ones(12),
        )


@pytest.mark.slow  # ~4 s: three cells' inits and two compilations
def test_the_guide_section_runs():
    """The code of docs/guide/cells.md's "Layer-normalized LSTM and GRU" section runs as written."""
    page = (ROOT / "docs/guide/cells.md").read_text()
    section = page.split("## Layer-normalized LSTM and GRU\n", 1)[1].split("\n## ", 1)[0]
    blocks = python_blocks_of(section)
    assert blocks
    with jax.numpy_dtype_promotion("standard"):
        for block in blocks:
            exec(compile(block, "docs/guide/cells.md", "exec"), {})


def python_blocks_of(text):
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
