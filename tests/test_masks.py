"""Per-step masks (holes, left padding) on unroll, the layers and the models, against a float64 Python loop;
Keras 3 parity for masks with holes, go_backwards, return_sequences and Masking."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before anything imports keras

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax as rj
from conftest import BOTH_PATHS_HOISTED_SLOW, CELLS, INPUT_SIZE, as_float64, random_params

T = 7
HOLES = np.array([False, True, True, False, True, False, True])  # left padding, holes, a masked last step
LEFT_PADDED = np.arange(T) >= 3


def loop(cell, params, xs, valid, reverse=False, masked_output="zeros", carry=None):
    """The definition: valid steps run the cell, masked ones keep the carry and emit zeros or the last output."""
    carry = cell.initial_carry(params) if carry is None else carry
    ys = [None] * len(xs)
    last = None
    for t in reversed(range(len(xs))) if reverse else range(len(xs)):
        new_carry, y = cell.step(params, carry, xs[t])
        if valid[t]:
            carry, last = new_carry, y
        ys[t] = y if valid[t] else (last if masked_output == "last" and last is not None else jnp.zeros_like(y))
    return carry, jnp.stack(ys)


def params64(cell):
    return as_float64(random_params(cell))


def to64(params):
    return jax.tree_util.tree_map(
        lambda p: p.astype(jnp.float64) if jnp.issubdtype(p.dtype, jnp.floating) else p, params
    )


def assert_trees_equal(a, b, rtol=1e-12):
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol), a, b)


def sequence(seed=0, num_steps=T, size=INPUT_SIZE):
    return jax.random.normal(jax.random.key(seed), (num_steps, size), jnp.float64)


@pytest.mark.parametrize(
    "reverse, masked_output", [(False, "zeros"), (True, "last"), pytest.param(False, "last", marks=pytest.mark.slow)]
)
@BOTH_PATHS_HOISTED_SLOW
def test_unroll_with_mask_equals_loop(cell, reverse, masked_output, hoist, x64):
    params = params64(cell)
    xs = sequence()
    carry, ys = rj.unroll(cell, params, xs, mask=HOLES, reverse=reverse, masked_output=masked_output, hoist=hoist)
    expected = loop(cell, params, xs, HOLES, reverse, masked_output)
    assert_trees_equal((carry, ys), expected)


@pytest.mark.parametrize("masked_output", ["zeros", "last"])
@pytest.mark.parametrize("reverse", [False, True])
def test_mask_and_length_combine(reverse, masked_output, x64):
    cell = CELLS["lstm"]
    params = params64(cell)
    xs = sequence()
    got = rj.unroll(cell, params, xs, length=5, mask=HOLES, reverse=reverse, masked_output=masked_output)
    expected = loop(cell, params, xs, HOLES & (np.arange(T) < 5), reverse, masked_output)
    assert_trees_equal(got, expected)


@pytest.mark.parametrize("name", ["mingru", "minlstm"])
@pytest.mark.parametrize("reverse, masked_output", [(False, "zeros"), (True, "last"), (False, "last")])
def test_parallel_scan_with_mask_equals_loop(name, reverse, masked_output, x64):
    cell = CELLS[name]
    params = params64(cell)
    xs = sequence()
    got = rj.unroll(cell, params, xs, mask=HOLES, reverse=reverse, masked_output=masked_output, parallel=True)
    assert_trees_equal(got, loop(cell, params, xs, HOLES, reverse, masked_output))


@pytest.mark.parametrize("reverse, masked_output", [(False, "last"), (True, "zeros")])
def test_remat_with_mask_equals_loop(reverse, masked_output, x64):
    cell = CELLS["gru"]
    params = params64(cell)
    xs = sequence()
    got = rj.unroll(cell, params, xs, mask=HOLES, reverse=reverse, masked_output=masked_output, remat=True)
    assert_trees_equal(got, loop(cell, params, xs, HOLES, reverse, masked_output))
    grad = jax.grad(lambda p, remat: rj.unroll(cell, p, xs, mask=HOLES, masked_output="last", remat=remat)[1].sum())
    assert_trees_equal(grad(params, True), grad(params, False))


def test_a_mask_of_the_length_equals_the_length(x64):
    cell = CELLS["lstm_peephole"]
    params = params64(cell)
    xs = sequence()
    for reverse in (False, True):
        by_length = rj.unroll(cell, params, xs, length=4, reverse=reverse)
        by_mask = rj.unroll(cell, params, xs, mask=np.arange(T) < 4, reverse=reverse)
        assert_trees_equal(by_mask, by_length)
    assert_trees_equal(rj.unroll(cell, params, xs, mask=np.ones(T, bool)), rj.unroll(cell, params, xs))


def test_masked_steps_do_not_reach_the_gradient(x64):
    """Whatever a masked step holds, its input gets a zero gradient and the loss does not change."""
    cell = CELLS["gru"]
    params = params64(cell)
    xs = sequence()

    def loss(xs):
        return jnp.sum(rj.unroll(cell, params, xs, mask=HOLES, masked_output="last")[1] ** 2)

    grads = jax.grad(loss)(xs)
    assert np.all(np.asarray(grads)[~HOLES] == 0.0) and np.all(np.abs(np.asarray(grads)[HOLES]).sum(-1) > 0)
    noisy = xs + 100.0 * jnp.asarray(~HOLES, jnp.float64)[:, None]
    assert float(loss(noisy)) == float(loss(xs))


def test_vmap_over_masks_equals_one_at_a_time(x64):
    cell = CELLS["lstm"]
    params = params64(cell)
    xs = jnp.stack([sequence(0), sequence(1)])
    batch_masks = np.stack([HOLES, LEFT_PADDED])
    _, ys = jax.vmap(lambda x, m: rj.unroll(cell, params, x, mask=m, masked_output="last"))(xs, batch_masks)
    for i in range(2):
        assert_trees_equal(ys[i], loop(cell, params, xs[i], batch_masks[i], masked_output="last")[1])


def compact(xs, valid):
    return xs[np.asarray(valid)]


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_bidirectional_with_holes_equals_the_compacted_sequence(merge, x64):
    """Masked steps anywhere are skipped by both directions: the valid outputs are those of the valid steps alone."""
    layer = rj.Bidirectional(rj.GRUCell(4), rj.LSTMCell(4), merge=merge)
    params = to64(layer.init(jax.random.key(0), INPUT_SIZE))
    xs = sequence()
    (carry_f, carry_b), ys = rj.layers.apply_with_carry(layer, params, xs, mask=HOLES)
    (compact_f, compact_b), compact_ys = layer.apply_with_carry(params, compact(xs, HOLES))
    assert_trees_equal(compact(ys, HOLES), compact_ys)
    assert_trees_equal((carry_f, carry_b), (compact_f, compact_b))
    assert float(jnp.abs(ys[~HOLES]).max()) == 0.0


def test_stack_passes_the_mask_to_every_layer(x64):
    stack = rj.Stack([rj.LSTMCell(5), rj.Bidirectional(rj.GRUCell(3), rj.GRUCell(3)), rj.ElmanCell(4)])
    params = to64(stack.init(jax.random.key(0), INPUT_SIZE))
    xs = sequence()
    ys = stack.apply(params, xs, mask=HOLES)
    assert_trees_equal(compact(ys, HOLES), stack.apply(params, compact(xs, HOLES)))


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_classifier_ignores_masked_steps(pooling, x64):
    encoder = rj.Bidirectional(rj.LSTMCell(4), rj.GRUCell(4))
    model = rj.models.SequenceClassifier(encoder, 3, INPUT_SIZE, pooling=pooling)
    params = to64(model.init(jax.random.key(0)))
    xs = sequence()
    got = model.apply(params, xs, mask=HOLES)
    assert_trees_equal(got, model.apply(params, compact(xs, HOLES)))
    with_length = model.apply(params, xs, length=5, mask=HOLES)
    assert_trees_equal(with_length, model.apply(params, compact(xs[:5], HOLES[:5])))


def test_tagger_and_language_model_with_left_padding(x64):
    tagger = rj.models.SequenceTagger(rj.GRUCell(5), 4, INPUT_SIZE)
    t_params = to64(tagger.init(jax.random.key(0)))
    xs = sequence()
    logits = tagger.apply(t_params, xs, mask=LEFT_PADDED)
    assert_trees_equal(logits[3:], tagger.apply(t_params, xs[3:]))
    assert float(jnp.abs(logits[:3]).max()) == 0.0

    lm = rj.models.LanguageModel(11, 4, rj.LSTMCell(6))
    lm_params = to64(lm.init(jax.random.key(1)))
    tokens = jnp.array([0, 0, 0, 3, 7, 1, 9])
    logits = lm.apply(lm_params, tokens, mask=LEFT_PADDED)
    assert_trees_equal(logits[3:], lm.apply(lm_params, tokens[3:]))


def test_generator_with_holes(x64):
    model = rj.models.ConditionedGenerator(6, 10, 4, rj.GRUCell(8), condition="input")
    params = to64(model.init(jax.random.key(0)))
    features, tokens = jnp.linspace(-1.0, 1.0, 6), jnp.array([1, 7, 3, 2, 2, 5, 4])
    logits = model.apply(params, features, tokens, mask=HOLES)
    assert_trees_equal(compact(logits, HOLES), model.apply(params, features, compact(tokens, HOLES)))


def test_masking_layer_masks_steps_of_the_mask_value(x64):
    layer = rj.layers.Masking(rj.RNN(rj.GRUCell(4), masked_output="last"), mask_value=-1.0)
    params = to64(layer.init(jax.random.key(0), INPUT_SIZE))
    xs = jnp.where(jnp.asarray(HOLES)[:, None], sequence(), -1.0)
    np.testing.assert_array_equal(layer.step_mask(xs), HOLES)
    expected = loop(layer.layer.cell, params, xs, HOLES, masked_output="last")
    assert_trees_equal(layer.apply_with_carry(params, xs), expected)
    only_first_half = np.arange(T) < 4
    assert_trees_equal(
        layer.apply(params, xs, mask=only_first_half),
        loop(layer.layer.cell, params, xs, HOLES & only_first_half, masked_output="last")[1],
    )


def test_bad_masks_are_named():
    cell = rj.GRUCell(4)
    params = cell.init(jax.random.key(0), INPUT_SIZE)
    xs = jnp.ones((T, INPUT_SIZE))
    with pytest.raises(ValueError, match=r"mask: expected shape \(7,\)"):
        rj.unroll(cell, params, xs, mask=np.ones((T + 1,), bool))
    with pytest.raises(ValueError, match=r"mask: expected shape \(7,\).*vmap"):
        rj.unroll(cell, params, xs, mask=np.ones((2, T), bool))
    with pytest.raises(TypeError, match="mask: expected booleans"):
        rj.unroll(cell, params, xs, mask=np.ones(T))
    with pytest.raises(ValueError, match="masked_output: expected 'zeros'"):
        rj.unroll(cell, params, xs, masked_output="previous")
    with pytest.raises(ValueError, match="masked_output"):
        rj.RNN(cell, masked_output="keep")
    model = rj.models.SequenceTagger(cell, 3, INPUT_SIZE)
    with pytest.raises(ValueError, match="mask: expected shape"):
        model.apply(model.init(jax.random.key(0)), xs, mask=np.ones(3, bool))


# --- Keras 3 parity ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras():
    """Keras 3, or the Keras tests skipped (only those: the rest of the module runs without it)."""
    return pytest.importorskip("keras")


def keras_layer(keras, kind, go_backwards=False, return_sequences=True):
    layer = getattr(keras.layers, kind)(5, return_sequences=return_sequences, go_backwards=go_backwards)
    layer.build((None, None, INPUT_SIZE))
    for weight in layer.weights:  # random biases too: zero biases are too easy
        weight.assign(np.random.default_rng(len(weight.path)).normal(0.0, 0.5, weight.shape).astype("float32"))
    return layer


def batch_with_masks():
    xs = np.random.default_rng(0).normal(size=(2, T, INPUT_SIZE)).astype("float32")
    return xs, np.stack([HOLES, LEFT_PADDED])


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_keras_rnn_with_holes(keras, kind, go_backwards):
    xs, batch_masks = batch_with_masks()
    theirs = keras_layer(keras, kind, go_backwards)
    layer, params = rj.interop.from_keras(theirs)
    ours = jax.vmap(lambda x, m: layer.apply(params, x, mask=m))(xs, batch_masks)
    expected = np.asarray(theirs(xs, mask=batch_masks))
    np.testing.assert_allclose(ours[:, ::-1] if go_backwards else ours, expected, rtol=1e-5, atol=1e-6)
    # return_sequences=False: Keras' output is the last valid step's, rnnjax's ys[-1] (ys[0] going backwards)
    last = keras_layer(keras, kind, go_backwards, return_sequences=False)
    last.set_weights(theirs.get_weights())
    final = ours[:, 0] if go_backwards else ours[:, -1]
    np.testing.assert_allclose(final, np.asarray(last(xs, mask=batch_masks)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("return_sequences", [True, False])
def test_keras_bidirectional_with_holes(keras, return_sequences):
    xs, batch_masks = batch_with_masks()
    theirs = keras.layers.Bidirectional(keras.layers.LSTM(5, return_sequences=return_sequences))
    theirs.build((None, None, INPUT_SIZE))
    layer, params = rj.interop.from_keras(theirs)
    expected = np.asarray(theirs(xs, mask=batch_masks))
    ours = np.asarray(jax.vmap(lambda x, m: layer.apply(params, x, mask=m))(xs, batch_masks))
    if not return_sequences:  # each direction's output at the valid step it processes last
        last, first = (np.flatnonzero(m).max() for m in batch_masks), (np.flatnonzero(m).min() for m in batch_masks)
        ours = np.stack([np.concatenate([y[i, :5], y[j, 5:]]) for y, i, j in zip(ours, last, first, strict=True)])
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_keras_masking_layer_converts(keras):
    xs, _ = batch_with_masks()
    xs[0, ~HOLES] = 0.0
    xs[1, ~LEFT_PADDED] = 0.0
    theirs = keras.Sequential([keras.Input((None, INPUT_SIZE)), keras.layers.Masking(0.0), keras_layer(keras, "GRU")])
    theirs.layers[1].set_weights(keras_layer(keras, "GRU").get_weights())
    layer, params = rj.interop.from_keras(theirs)
    assert isinstance(layer, rj.layers.Masking)
    ours = jax.vmap(lambda x: layer.apply(params, x))(xs)
    np.testing.assert_allclose(ours, np.asarray(theirs(xs)), rtol=1e-5, atol=1e-6)


def test_masking_layer_to_keras_gives_keras_the_same_outputs(keras):
    xs, _ = batch_with_masks()
    xs[0, ~HOLES] = 0.0
    xs[1, ~LEFT_PADDED] = 0.0
    layer = rj.layers.Masking(
        rj.Stack([rj.RNN(rj.LSTMCell(5), masked_output="last"), rj.Bidirectional(rj.GRUCell(4), rj.GRUCell(4))])
    )
    params = jax.tree_util.tree_map(lambda p: p + 0.1, layer.init(jax.random.key(0), INPUT_SIZE))
    converted = rj.interop.to_keras(layer, params)
    assert isinstance(converted[0], keras.layers.Masking) and len(converted) == 3
    theirs = keras.Sequential([keras.Input((None, INPUT_SIZE)), *converted])
    ours = jax.vmap(lambda x: layer.apply(params, x))(xs)
    np.testing.assert_allclose(ours, np.asarray(theirs(xs)), rtol=1e-5, atol=1e-6)
    back, back_params = rj.interop.from_keras(converted)  # and back
    np.testing.assert_allclose(jax.vmap(lambda x: back.apply(back_params, x))(xs), ours, rtol=1e-6, atol=1e-7)
    # filling existing Keras layers in place
    filled = rj.interop.to_keras(layer, params, [keras.layers.Masking(0.0), *converted[1:]])
    assert filled[1] is converted[1]


def test_masking_layer_to_keras_refuses_outputs_keras_would_not_give(keras):
    params = rj.GRUCell(4).init(jax.random.key(0), INPUT_SIZE)
    with pytest.raises(ValueError, match='masked_output="last"'):
        rj.interop.to_keras(rj.layers.Masking(rj.GRUCell(4)), params)  # an RNN gives zeros by default
    with pytest.raises(ValueError, match="mask_value"):
        layer = rj.layers.Masking(rj.RNN(rj.GRUCell(4), masked_output="last"))
        rj.interop.to_keras(layer, params, [keras.layers.Masking(-1.0), keras.layers.GRU(4, return_sequences=True)])
