"""Dropout inside the cells (variational input and recurrent dropout, zoneout) against float64 NumPy loops;
off without a key; Keras 3 at inference; the rates carried over by the Keras converters."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before anything imports keras

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rnnjax as rj
from conftest import BOTH_PATHS_HOISTED_SLOW, as_float64

F, H, T = 3, 5, 6
RATES = {"dropout": 0.4, "recurrent_dropout": 0.3, "zoneout": 0.25}
NOISY = {
    "elman": rj.ElmanCell(H, **RATES),
    "lstm": rj.LSTMCell(H, **RATES),
    "lstm_peephole": rj.LSTMCell(H, peephole=True, **RATES),
    "gru": rj.GRUCell(H, **RATES),
    "gru_cho": rj.GRUCell(H, reset_after=False, **RATES),
}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_step(cell, p, carry, x, rec_mask):
    """One step of the cell's equations in float64 NumPy, with h_{t-1} * rec_mask in the recurrent matmuls."""
    h = carry[0]
    h_in = h * rec_mask
    if isinstance(cell, rj.ElmanCell):
        new_h = np.tanh(x @ p.w_i + p.b + h_in @ p.w_h)
        return (new_h,)
    if isinstance(cell, rj.LSTMCell):
        c = carry[1]
        i, f, g, o = np.split(x @ p.w_i + p.b + h_in @ p.w_h, 4)
        if p.peephole is not None:
            i, f = i + p.peephole[0] * c, f + p.peephole[1] * c
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        if p.peephole is not None:
            o = o + p.peephole[2] * c
        return (sigmoid(o) * np.tanh(c), c)
    u_r, u_z, u_n = np.split(x @ p.w_i + p.b, 3)
    if cell.reset_after:
        hw_r, hw_z, hw_n = np.split(h_in @ p.w_h + p.b_h, 3)
        r, z = sigmoid(u_r + hw_r), sigmoid(u_z + hw_z)
        n = np.tanh(u_n + r * hw_n)
    else:
        hw_r, hw_z = np.split(h_in @ p.w_h[:, : 2 * H], 2)
        r, z = sigmoid(u_r + hw_r), sigmoid(u_z + hw_z)
        n = np.tanh(u_n + (r * h_in) @ p.w_h[:, 2 * H :])
    return ((1 - z) * n + z * h,)


def numpy_unroll(cell, p, xs, noise=None):
    """The definition: x_t * input mask, h_{t-1} * recurrent mask (the same masks at every step), then each
    carry unit zoned out (kept) where the step's zoneout mask says so; at inference the expectation."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), p)
    carry = tuple(np.zeros(H) for _ in cell.initial_carry(p))
    in_mask = np.ones(F) if noise is None or noise.inputs is None else np.asarray(noise.inputs, np.float64)
    rec_mask = np.ones(H) if noise is None or noise.recurrent is None else np.asarray(noise.recurrent, np.float64)
    ys = []
    for t, x in enumerate(np.asarray(xs, np.float64)):
        new = numpy_step(cell, p, carry, x * in_mask, rec_mask)
        if noise is not None and noise.zoneout is not None:
            keep = [np.asarray(leaf[t]) for leaf in noise.zoneout]
            new = tuple(np.where(k, old, n) for k, old, n in zip(keep, carry, new, strict=True))
        elif cell.zoneout > 0:
            new = tuple(cell.zoneout * old + (1 - cell.zoneout) * n for old, n in zip(carry, new, strict=True))
        carry = new
        ys.append(carry[0])
    return carry, np.stack(ys)


def random_params(cell, seed=0):
    params = cell.init(jax.random.key(seed), F)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    return treedef.unflatten(
        [0.5 * jax.random.normal(k, x.shape, jnp.float64) for k, x in zip(keys, leaves, strict=True)]
    )


def xs64(seed=2):
    return jax.random.normal(jax.random.key(seed), (T, F), jnp.float64)


@pytest.mark.parametrize("name", sorted(NOISY))
@BOTH_PATHS_HOISTED_SLOW
def test_training_noise_equals_numpy_loop(name, hoist, x64):
    cell = NOISY[name]
    params, xs, key = random_params(cell), xs64(), jax.random.key(7)
    carry, ys = rj.unroll(cell, params, xs, key=key, hoist=hoist)
    noise = cell.sequence_noise(key, params, T)
    want_carry, want_ys = numpy_unroll(cell, params, xs, noise)
    np.testing.assert_allclose(ys, want_ys, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.concatenate(list(carry)), np.concatenate(want_carry), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(NOISY))
def test_inference_is_the_plain_cell_and_zoneout_its_expectation(name, x64):
    cell = NOISY[name]
    params, xs = random_params(cell), xs64()
    _, ys = rj.unroll(cell, params, xs)  # no key: inference
    np.testing.assert_allclose(ys, numpy_unroll(cell, params, xs)[1], rtol=1e-12, atol=1e-12)
    no_zoneout = rj.unroll(cell.__class__(**{**_fields(cell), "zoneout": 0.0}), params, xs)[1]
    plain = rj.unroll(cell.__class__(**{**_fields(cell), **dict.fromkeys(RATES, 0.0)}), params, xs)[1]
    np.testing.assert_array_equal(no_zoneout, plain)  # dropout off at inference: bit for bit


def _fields(cell):
    import dataclasses

    return {f.name: getattr(cell, f.name) for f in dataclasses.fields(cell) if f.init}


def test_variational_masks_are_the_same_at_every_step(x64):
    """A dropped input feature gets no gradient at any step; a kept one at every step."""
    cell = rj.GRUCell(H, dropout=0.5)
    params, xs = random_params(cell), xs64()
    key = next(
        k for k in map(jax.random.key, range(100)) if np.unique(cell.sequence_noise(k, params, T).inputs).size == 2
    )
    grads = jax.grad(lambda x: jnp.sum(rj.unroll(cell, params, x, key=key)[1] ** 2))(xs)
    kept = np.asarray(cell.sequence_noise(key, params, T).inputs) > 0  # some features kept, some dropped
    assert np.all(np.asarray(grads)[:, ~kept] == 0.0) and np.all(np.asarray(grads)[:, kept] != 0.0)


def test_rates_and_scaling():
    cell = rj.LSTMCell(1000, dropout=0.3, recurrent_dropout=0.6, zoneout=0.2)
    params = jax.eval_shape(lambda: cell.init(jax.random.key(0), 2000))
    params = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), params)
    noise = cell.sequence_noise(jax.random.key(0), params, 50)
    for mask, rate in ((noise.inputs, 0.3), (noise.recurrent, 0.6)):
        mask = np.asarray(mask)
        assert set(np.unique(mask)) == {0.0, np.float32(1 / (1 - rate))}
        dropped = np.mean(mask == 0)
        assert abs(dropped - rate) < 4 * np.sqrt(rate * (1 - rate) / mask.size), dropped  # 4 sigma
    kept = np.asarray(noise.zoneout.c)
    assert kept.shape == (50, 1000) and abs(kept.mean() - 0.2) < 4 * np.sqrt(0.2 * 0.8 / kept.size)
    assert not np.array_equal(kept[0], kept[1])  # new zoneout masks every step


def test_vmap_with_split_keys_draws_a_mask_per_sequence():
    cell = rj.GRUCell(H, recurrent_dropout=0.5)
    params = cell.init(jax.random.key(0), F)
    xs = jnp.ones((4, T, F))
    keys = jax.random.split(jax.random.key(1), 4)
    ys = jax.vmap(lambda x, k: rj.unroll(cell, params, x, key=k)[1])(xs, keys)
    assert len({np.asarray(y).tobytes() for y in ys}) == 4  # same inputs, different masks


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_remat_and_masks_with_noise(name, x64):
    cell = NOISY[name]
    params, xs, key = random_params(cell), xs64(), jax.random.key(5)
    mask = jnp.array([True, True, False, True, True, False])
    plain = rj.unroll(cell, params, xs, key=key, mask=mask, masked_output="last")
    remat = rj.unroll(cell, params, xs, key=key, mask=mask, masked_output="last", remat=True)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), remat, plain)


@pytest.mark.parametrize("name", ["elman", "lstm", "gru_cho"])
def test_gradients_with_fixed_noise(name, x64):
    cell = NOISY[name]
    params, xs, key = random_params(cell), xs64(), jax.random.key(6)
    check_grads(lambda p, x: rj.unroll(cell, p, x, key=key)[1], (params, xs), order=1, modes=["rev"])


def test_layers_and_models_pass_the_key():
    cell = rj.LSTMCell(H, dropout=0.5, recurrent_dropout=0.5)
    layer = rj.Bidirectional(cell, cell)
    params = layer.init(jax.random.key(0), F)
    xs = jnp.ones((T, F))
    key = jax.random.key(1)
    assert not np.allclose(layer.apply(params, xs, key=key), layer.apply(params, xs))
    np.testing.assert_array_equal(layer.apply(params, xs, key=key), layer.apply(params, xs, key=key))
    model = rj.models.SequenceClassifier(layer, 2, F)
    m_params = model.init(jax.random.key(2))
    assert not np.allclose(model.apply(m_params, xs, key=key), model.apply(m_params, xs))
    lm = rj.models.LanguageModel(10, 4, rj.GRUCell(6, zoneout=0.5))
    lm_params = lm.init(jax.random.key(3))
    tokens = jnp.array([1, 2, 3, 4])
    assert not np.allclose(lm.apply(lm_params, tokens, key=key), lm.apply(lm_params, tokens))


def test_bad_rates_are_named():
    with pytest.raises(ValueError, match=r"recurrent_dropout: expected a rate in \[0, 1\), got 1.0"):
        rj.LSTMCell(4, recurrent_dropout=1.0)
    with pytest.raises(ValueError, match="zoneout: expected a rate"):
        rj.GRUCell(4, zoneout=-0.1)
    with pytest.raises(ValueError, match="dropout: MinGRUCell has no dropout or zoneout"):
        rj.MinGRUCell(4, dropout=0.1)


# --- Keras 3 ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras():
    """Keras 3, or the Keras tests skipped (only those: the rest of the module runs without it)."""
    return pytest.importorskip("keras")


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_keras_rates_convert_and_inference_matches(keras, kind):
    theirs = getattr(keras.layers, kind)(H, dropout=0.3, recurrent_dropout=0.2, return_sequences=True)
    theirs.build((None, None, F))
    rng = np.random.default_rng(0)
    theirs.set_weights([rng.normal(0.0, 0.5, w.shape).astype("float32") for w in theirs.get_weights()])
    layer, params = rj.interop.from_keras(theirs)
    assert (layer.cell.dropout, layer.cell.recurrent_dropout) == (0.3, 0.2)
    xs = rng.normal(size=(2, T, F)).astype("float32")
    ours = jax.vmap(lambda x: layer.apply(params, x))(xs)  # no key: inference
    np.testing.assert_allclose(ours, np.asarray(theirs(xs, training=False)), rtol=1e-5, atol=1e-6)
    back = rj.interop.to_keras(layer, params)
    assert (back.cell.dropout, back.cell.recurrent_dropout) == (0.3, 0.2)


@pytest.mark.parametrize("hoist", [False, True], ids=["in-loop", "hoisted"])
def test_stacked_cell_trains_each_cell_with_its_own_noise(hoist, x64):
    """A StackedCell (a multi-layer LanguageModel's cell) draws each cell's masks; each cell's input mask
    acts on that cell's input: the same as stepping the cells by hand with those masks."""
    stacked = rj.StackedCell([rj.LSTMCell(H, **RATES), rj.GRUCell(4, dropout=0.5, zoneout=0.3)])
    params = stacked.init(jax.random.key(0), F)
    params = as_float64(params)
    xs, key = xs64(), jax.random.key(8)
    carry, ys = rj.unroll(stacked, params, xs, key=key, hoist=hoist)
    noise = stacked.sequence_noise(key, params, T)
    carries, want = list(stacked.initial_carry(params)), []
    for t in range(T):
        y = xs[t]
        for i, (cell, p, n) in enumerate(zip(stacked.cells, params, noise.cells, strict=True)):
            y = y * n.inputs if n.inputs is not None else y
            zone = jax.tree_util.tree_map(lambda z, t=t: z[t], n.zoneout)
            carries[i], y = cell.step(p, carries[i], y, noise=n.step(zone))
        want.append(y)
    np.testing.assert_allclose(ys, np.stack(want), rtol=1e-12, atol=1e-12)
    assert stacked.has_noise and not rj.StackedCell([rj.LSTMCell(H)]).has_noise
    lm = rj.models.LanguageModel(10, F, [rj.LSTMCell(H, dropout=0.5), rj.GRUCell(H, recurrent_dropout=0.5)])
    lm_params, tokens = lm.init(jax.random.key(1)), jnp.array([1, 2, 3, 4])
    assert not np.allclose(lm.apply(lm_params, tokens, key=key), lm.apply(lm_params, tokens))


def test_generator_passes_the_key_and_the_attention_decoder_refuses_noisy_cells():
    model = rj.models.ConditionedGenerator(4, 10, 3, rj.GRUCell(6, recurrent_dropout=0.5), condition="input")
    params = model.init(jax.random.key(0))
    features, tokens = jnp.ones(4), jnp.array([1, 2, 3, 4])
    assert not np.allclose(
        model.apply(params, features, tokens, key=jax.random.key(1)), model.apply(params, features, tokens)
    )
    with pytest.raises(ValueError, match="cell: the attention decoder's cell has dropout or zoneout rates"):
        rj.models.Seq2Seq(10, 10, 4, rj.GRUCell(6, dropout=0.2), rj.GRUCell(6, zoneout=0.1), attention="luong")
