"""Models: shapes under vmap with padding, padding invariance, step-by-step == teacher forcing,
attention masks, and two small learning tasks (many-to-one; seq2seq with attention reversing sequences).

Every model call is jitted (several models per jit where possible: XLA:CPU compiles dominate)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

import rnnjax as rj
from rnnjax import models

TOL = dict(rtol=1e-5, atol=1e-5)


@functools.cache
def init(model, seed=0):
    """Random params of ``model`` with ``init``'s structure, shapes and dtypes (from ``jax.eval_shape``, so
    nothing compiles: XLA:CPU takes seconds to compile an orthogonal init), matrices scaled by ``1/sqrt(fan_in)``."""
    rng = np.random.default_rng(seed)

    def leaf(shape):
        scale = 1 / np.sqrt(shape.shape[0]) if len(shape.shape) == 2 else 0.5
        return jnp.asarray(scale * rng.standard_normal(shape.shape), shape.dtype)

    return jax.tree_util.tree_map(leaf, jax.eval_shape(model.init, jax.random.key(seed)))


RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def fresh_rng():
    """Each test draws the same data however the tests are selected or ordered."""
    global RNG
    RNG = np.random.default_rng(0)


def mask_of(lengths, num_steps):
    """NumPy ``[b, t]``: True on the valid steps (NumPy for test data: no eager XLA compiles)."""
    return np.arange(num_steps) < np.asarray(lengths)[:, None]


def random_ids(shape, vocab_size):
    return RNG.integers(0, vocab_size, shape).astype(np.int32)


def fill_padding(ids, lengths, value):
    """``ids [b, t]`` with every step ``>= length`` set to ``value``."""
    return np.where(mask_of(lengths, ids.shape[1]), ids, value).astype(ids.dtype)


def scan_steps(step_fn, params, carry, tokens):
    """Feed ``tokens [t]`` one at a time through ``step_fn``; stack the per-step outputs."""

    def body(carry, token):
        carry, *out = step_fn(params, carry, token)
        return carry, tuple(out)

    return lax.scan(body, carry, tokens)[1]


def with_standard_promotion(fn):
    """optax's internals rely on standard dtype promotion (the suite runs strict)."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.numpy_dtype_promotion("standard"):
            return fn(*args, **kwargs)

    return wrapped


def train_and_evaluate(loss_fn, metric_fn, params, train_batches, eval_batch, learning_rate):
    """Adam on ``loss_fn(params, batch)`` for each batch of ``train_batches`` (arrays ``[steps, b, ...]``)
    in a scan, then ``metric_fn(params, eval_batch)``, all in ONE jit: XLA:CPU compiles dominate here
    (the data is made with NumPy for the same reason). Returns the losses and the metric."""
    opt = optax.adam(learning_rate)

    @jax.jit
    def run(params, train_batches, eval_batch):
        def step(carry, batch):
            params, state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, batch)
            updates, state = with_standard_promotion(opt.update)(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss

        state = with_standard_promotion(opt.init)(params)
        (params, _), losses = lax.scan(step, (params, state), train_batches)
        return losses, metric_fn(params, eval_batch)

    losses, metric = run(params, train_batches, eval_batch)
    return np.asarray(losses), float(metric)


def batches(make, num_steps, size):
    """``make(num_steps * size)`` reshaped to ``[num_steps, size, ...]``."""
    return tuple(x.reshape(num_steps, size, *x.shape[1:]) for x in make(num_steps * size))


# ----------------------------------------------------------------------------- many-to-one


def test_classifier_poolings_under_vmap_with_padding():
    encoder = rj.Bidirectional(rj.GRUCell(5), rj.GRUCell(4))
    by_pooling = {p: models.SequenceClassifier(encoder, 3, input_size=2, pooling=p) for p in ("last", "mean", "max")}
    params = init(by_pooling["last"])
    xs = RNG.standard_normal((4, 7, 2)).astype(np.float32)
    lengths = np.array([7, 3, 1, 0], np.int32)

    @jax.jit
    def run(xs):
        logits = {p: jax.vmap(m.apply, (None, 0, 0))(params, xs, lengths) for p, m in by_pooling.items()}
        directions = (encoder.forward, params.encoder.forward), (encoder.backward, params.encoder.backward)
        ys = [jax.vmap(lambda x, n, d=d: d[0].apply(d[1], x, length=n))(xs, lengths) for d in directions]
        return logits, ys

    logits, (ys_f, ys_b) = run(xs)
    head = params.head
    for i, n in enumerate(lengths.tolist()):
        ys = np.concatenate([ys_f[i, :n], ys_b[i, :n]], -1)
        pooled = {
            "last": np.concatenate([ys_f[i, n - 1], ys_b[i, 0]]) if n else np.zeros(9),  # final carry of each direction
            "mean": ys.mean(0) if n else np.zeros(9),
            "max": ys.max(0) if n else np.zeros(9),
        }
        for p in by_pooling:
            assert logits[p].shape == (4, 3)
            np.testing.assert_allclose(logits[p][i], pooled[p] @ head.w + head.b, **TOL)

    # padding invariance, and no retrace for new values of the same shapes
    garbage = np.where(mask_of(lengths, 7)[..., None], xs, np.float32(1e3))
    for p, got in run(garbage)[0].items():
        np.testing.assert_allclose(got, logits[p], **TOL)
    assert run._cache_size() == 1


def test_classifier_on_tokens_with_a_stack_and_a_reversed_rnn():
    stack = rj.Stack([rj.LSTMCell(6), rj.RNN(rj.GRUCell(5), reverse=True)], dropout=0.3)
    model = models.SequenceClassifier(stack, 2, 4, vocab_size=13)
    params = init(model)
    tokens = random_ids((3, 6), 13)
    lengths = np.array([6, 4, 2], np.int32)

    @jax.jit
    def run(tokens, key):
        logits = jax.vmap(model.apply, (None, 0, 0))(params, tokens, lengths)
        embedded = jax.vmap(rj.Embedding(13, 4).apply, (None, 0))(params.embed, tokens)
        ys = jax.vmap(lambda x, n: stack.apply(params.encoder, x, length=n))(embedded, lengths)
        ys_dropped = jax.vmap(lambda x, n: stack.apply(params.encoder, x, length=n, key=key))(embedded, lengths)
        dropped = jax.vmap(model.apply, (None, 0, 0, None))(params, tokens, lengths, key)
        return logits, ys, ys_dropped, dropped

    logits, ys, ys_dropped, dropped = run(tokens, jax.random.key(3))
    # "last" of a reversed top layer is its output at step 0 (where it ends)
    np.testing.assert_allclose(logits, ys[:, 0] @ params.head.w + params.head.b, **TOL)
    # the key turns on the stack's dropout, with the masks Stack.apply draws from that key
    assert not np.allclose(dropped, logits)
    np.testing.assert_allclose(dropped, ys_dropped[:, 0] @ params.head.w + params.head.b, **TOL)
    logits2, _, _, dropped2 = run(fill_padding(tokens, lengths, 12), jax.random.key(3))
    np.testing.assert_allclose(logits2, logits, **TOL)
    np.testing.assert_allclose(dropped2, dropped, **TOL)


def sum_sign_batch(size, max_len=10):
    """Sequences of 2..10 N(0, 1) numbers; label: is their sum positive."""
    xs = RNG.standard_normal((size, max_len, 1)).astype(np.float32)
    lengths = RNG.integers(2, max_len + 1, size).astype(np.int32)
    xs = np.where(mask_of(lengths, max_len)[..., None], xs, np.float32(0))
    return xs, lengths, (xs.sum((1, 2)) > 0).astype(np.int32)


def test_classifier_learns_whether_the_sum_is_positive():
    model = models.SequenceClassifier(rj.GRUCell(16), 2, input_size=1)

    def loss_fn(params, batch):
        xs, lengths, labels = batch
        logits = jax.vmap(model.apply, (None, 0, 0))(params, xs, lengths)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    def accuracy_fn(params, batch):
        xs, lengths, labels = batch
        return jnp.mean(jax.vmap(model.apply, (None, 0, 0))(params, xs, lengths).argmax(-1) == labels)

    train_batches, eval_batch = batches(sum_sign_batch, 300, 64), sum_sign_batch(1000)
    losses, accuracy = train_and_evaluate(loss_fn, accuracy_fn, init(model), train_batches, eval_batch, 1e-2)
    assert losses[-50:].mean() < 0.5 * losses[:50].mean()
    assert accuracy > 0.9, accuracy


# ----------------------------------------------------------------------------- many-to-many


def test_tagger_shapes_zeros_and_padding_invariance(hoist):
    bidirectional = rj.Bidirectional(rj.RNN(rj.LSTMCell(4), hoist=hoist), rj.RNN(rj.LSTMCell(4), hoist=hoist))
    encoder = rj.Stack([bidirectional, rj.RNN(rj.GRUCell(5), hoist=hoist)])
    model = models.SequenceTagger(encoder, 7, 3, vocab_size=20)
    params = init(model)
    tokens = random_ids((3, 6), 20)
    lengths = np.array([6, 3, 0], np.int32)
    apply = jax.jit(jax.vmap(model.apply, (None, 0, 0)))
    logits = apply(params, tokens, lengths)
    assert logits.shape == (3, 6, 7)
    np.testing.assert_array_equal(logits[1, 3:], 0.0)
    np.testing.assert_array_equal(logits[2], 0.0)
    np.testing.assert_allclose(apply(params, fill_padding(tokens, lengths, 19), lengths), logits, **TOL)
    # the bidirectional first layer: step 0 sees the later valid tokens, not the padding
    changed = apply(params, np.where(np.arange(6) == 2, (tokens + 1) % 20, tokens), lengths)
    assert not np.allclose(changed[1, 0], logits[1, 0])


def test_language_model_steps_equal_teacher_forcing(hoist):
    cells = [rj.LSTMCell(6), rj.GRUCell(6)]
    lms = {
        False: models.LanguageModel(11, 6, cells, dropout=0.5, hoist=hoist),
        True: models.LanguageModel(11, 6, cells[0], True, hoist=hoist),
    }
    params = {tie: init(lm) for tie, lm in lms.items()}
    assert params[True].head is None and params[True].bias.shape == (11,)
    assert isinstance(lms[False].cell, rj.StackedCell)  # a list of cells: a deep RNN that can step
    tokens = random_ids((3, 7), 11)
    lengths = np.array([7, 4, 1], np.int32)

    @jax.jit
    def run(tokens):
        out = {}
        for tie, lm in lms.items():
            forced = jax.vmap(lm.apply, (None, 0, 0))(params[tie], tokens, lengths)
            carry = lm.initial_carry(params[tie])
            stepped = jax.vmap(lambda t, lm=lm, tie=tie, c=carry: scan_steps(lm.step_fn, params[tie], c, t)[0])(tokens)
            out[tie] = forced, stepped
        keys = jax.random.split(jax.random.key(1), 3)  # the untied model has dropout
        dropped = jax.vmap(lms[False].apply, (None, 0, 0, 0))(params[False], tokens, lengths, keys)
        return out, dropped

    out, dropped = run(tokens)
    mask = mask_of(lengths, 7)
    for forced, stepped in out.values():  # without a key, no dropout
        assert forced.shape == stepped.shape == (3, 7, 11)
        np.testing.assert_allclose(forced[mask], stepped[mask], **TOL)
        np.testing.assert_array_equal(forced[~mask], 0.0)
    assert not np.allclose(dropped[mask], out[False][0][mask])  # with a key, dropout
    out_padded, dropped_padded = run(fill_padding(tokens, lengths, 0))
    for tie, (forced, _) in out_padded.items():
        np.testing.assert_allclose(forced, out[tie][0], **TOL)
    np.testing.assert_allclose(dropped_padded, dropped, **TOL)


# ----------------------------------------------------------------------------- one-to-many


def test_conditioned_generator_steps_equal_teacher_forcing(hoist):
    by_condition = {
        c: models.ConditionedGenerator(5, 9, 4, rj.LSTMCell(6), condition=c, hoist=hoist)
        for c in ("init", "input", "both")
    }
    params = {c: init(g) for c, g in by_condition.items()}
    assert params["input"].bridge is None and params["init"].bridge.w.shape == (5, 12)  # to both h and c
    features = RNG.standard_normal((3, 5)).astype(np.float32)
    tokens = random_ids((3, 6), 9)
    lengths = np.array([6, 2, 0], np.int32)

    @jax.jit
    def run(features, tokens):
        out = {}
        for c, g in by_condition.items():
            p = params[c]
            forced = jax.vmap(g.apply, (None, 0, 0, 0))(p, features, tokens, lengths)
            carries = jax.vmap(g.initial_carry, (None, 0))(p, features)
            stepped = jax.vmap(lambda carry, t, g=g, p=p: scan_steps(g.step_fn, p, carry, t)[0])(carries, tokens)
            out[c] = forced, stepped, carries
        return out

    out = run(features, tokens)
    mask = mask_of(lengths, 6)
    for c, (forced, stepped, carries) in out.items():
        assert forced.shape == (3, 6, 9)
        np.testing.assert_allclose(forced[mask], stepped[mask], **TOL)
        np.testing.assert_array_equal(forced[~mask], 0.0)
        assert carries.features.shape == (3, 5)
        initial_is_zero = np.allclose(carries.cell.c, 0.0) and np.allclose(carries.cell.h, 0.0)
        assert initial_is_zero == (c == "input")
    # padding invariance; and the features condition every output
    other = run(features, fill_padding(tokens, lengths, 8))
    new_features = run(features + np.float32(1), tokens)
    for c in by_condition:
        np.testing.assert_allclose(other[c][0], out[c][0], **TOL)
        assert not np.allclose(new_features[c][0][0, -1], out[c][0][0, -1])


# ----------------------------------------------------------------------------- encoder-decoder

SEQ2SEQ = {
    "none": models.Seq2Seq(10, 9, 4, rj.GRUCell(6), rj.GRUCell(6)),
    "bahdanau": models.Seq2Seq(10, 9, 4, rj.Bidirectional(rj.GRUCell(5), rj.GRUCell(5)), rj.LSTMCell(6), "bahdanau"),
    "luong": models.Seq2Seq(10, 9, 4, rj.LSTMCell(6), [rj.LSTMCell(6), rj.GRUCell(6)], "luong", attention_size=7),
}


def test_seq2seq_bridge_only_where_needed():
    assert init(SEQ2SEQ["none"]).decoder.bridge is None  # GRU -> GRU: the final carry is passed as it is
    assert init(SEQ2SEQ["bahdanau"]).decoder.bridge.w.shape == (10, 12)  # both directions -> h and c
    assert init(SEQ2SEQ["luong"]).decoder.bridge.w.shape == (12, 18)  # LSTM (h, c) -> (LSTM (h, c), GRU h)
    forced = models.Seq2Seq(10, 9, 4, rj.GRUCell(6), rj.GRUCell(6), bridge=True)
    assert init(forced).decoder.bridge.w.shape == (6, 6)
    with pytest.raises(ValueError, match="bridge: False needs the encoder's final carry"):
        init(models.Seq2Seq(10, 9, 4, rj.GRUCell(6), rj.LSTMCell(6), bridge=False))


def test_seq2seq_steps_equal_teacher_forcing_and_attention_masks():
    params = {a: init(m) for a, m in SEQ2SEQ.items()}
    src = random_ids((3, 5), 10)
    src_len = np.array([5, 2, 0], np.int32)
    tgt_in = random_ids((3, 4), 9)
    tgt_len = np.array([4, 3, 2], np.int32)

    @jax.jit
    def run(src, tgt_in):
        out = {}
        for a, m in SEQ2SEQ.items():
            p = params[a]
            if m.attention is None:
                forced, weights = jax.vmap(m.apply, (None, 0, 0, 0, 0))(p, src, src_len, tgt_in, tgt_len), None
            else:
                forced, weights = jax.vmap(
                    lambda *args, m=m: m.apply(*args, return_attention=True), (None, 0, 0, 0, 0)
                )(p, src, src_len, tgt_in, tgt_len)
            carries = jax.vmap(m.encode, (None, 0, 0))(p, src, src_len)
            stepped = jax.vmap(lambda c, t, m=m, p=p: scan_steps(m.step_with_attention, p, c, t))(carries, tgt_in)

            out[a] = forced, weights, stepped
        return out

    out = run(src, tgt_in)
    tgt_mask, src_mask = mask_of(tgt_len, 4), mask_of(src_len, 5)
    for a, (forced, weights, (step_logits, step_weights)) in out.items():
        assert forced.shape == (3, 4, 9)
        np.testing.assert_allclose(forced[tgt_mask], step_logits[tgt_mask], **TOL)
        np.testing.assert_array_equal(forced[~tgt_mask], 0.0)
        assert np.all(np.isfinite(forced))  # src_len 0 included
        if SEQ2SEQ[a].attention is None:
            continue
        assert weights.shape == (3, 4, 5)
        np.testing.assert_allclose(weights[tgt_mask], step_weights[tgt_mask], **TOL)
        np.testing.assert_allclose(weights[:2][tgt_mask[:2]].sum(-1), 1.0, rtol=1e-6)
        for i in range(3):
            np.testing.assert_array_equal(weights[i][:, ~src_mask[i]], 0.0)  # exactly 0 on source padding
            np.testing.assert_array_equal(weights[i][~tgt_mask[i]], 0.0)  # and on target padding
        assert np.all(weights >= 0)

    # padding invariance, source and target
    other = run(fill_padding(src, src_len, 9), fill_padding(tgt_in, tgt_len, 8))
    for a in SEQ2SEQ:
        np.testing.assert_allclose(other[a][0], out[a][0], **TOL)
        if SEQ2SEQ[a].attention is not None:
            np.testing.assert_allclose(other[a][1], out[a][1], **TOL)


PAD, BOS, EOS, VOCAB, MAX_LEN = 0, 1, 2, 10, 6


def reversal_batch(size, empty=False):
    """Sources of 3..6 symbols from 3..9 (``empty``: a fifth of them of length 0 instead, whose
    attention masks every position); ``tgt_out``: the reversed source then EOS; ``tgt_in``: BOS then
    the reversed source."""
    n = RNG.integers(2 if empty else 3, MAX_LEN + 1, size)
    n[n == 2] = 0
    steps = np.arange(MAX_LEN)
    valid = mask_of(n, MAX_LEN)
    src = np.where(valid, RNG.integers(3, VOCAB, (size, MAX_LEN)), PAD)
    reversed_ = np.where(valid, np.take_along_axis(src, np.where(valid, n[:, None] - 1 - steps, 0), 1), PAD)
    tgt_out = np.concatenate([reversed_, np.full((size, 1), PAD)], 1)
    tgt_out[np.arange(size), n] = EOS
    tgt_in = np.concatenate([np.full((size, 1), BOS), reversed_], 1)
    return tuple(x.astype(np.int32) for x in (src, n, tgt_in, tgt_out, n + 1))


def greedy(model, params, src, src_len, max_len):
    """Greedy decoding of one source with a scan of argmax steps (what rj.decode.greedy will do)."""

    def body(state, _):
        carry, token = state
        carry, logits = model.step_fn(params, carry, token)
        token = jnp.argmax(logits).astype(token.dtype)
        return (carry, token), token

    return lax.scan(body, (model.encode(params, src, src_len), jnp.array(BOS)), None, length=max_len)[1]


def test_seq2seq_with_attention_learns_to_reverse():
    model = models.Seq2Seq(VOCAB, VOCAB, 16, rj.GRUCell(32), rj.GRUCell(32), attention="luong")
    num_steps = MAX_LEN + 1

    def loss_fn(params, batch):
        src, src_len, tgt_in, tgt_out, tgt_len = batch
        logits = jax.vmap(model.apply, (None, 0, 0, 0, 0))(params, src, src_len, tgt_in, tgt_len)
        return rj.losses.sequence_cross_entropy(logits, tgt_out, rj.losses.length_mask(tgt_len, num_steps))

    def token_accuracy(params, batch):
        src, src_len, _, tgt_out, tgt_len = batch
        decoded = jax.vmap(functools.partial(greedy, model, params, max_len=num_steps))(src, src_len)
        mask = rj.losses.length_mask(tgt_len, num_steps)
        return jnp.sum((decoded == tgt_out) & mask) / jnp.sum(mask)

    # empty sources in training too: gradients through an all-masked attention must stay finite
    train_batches = batches(functools.partial(reversal_batch, empty=True), 400, 64)
    losses, accuracy = train_and_evaluate(
        loss_fn, token_accuracy, init(model), train_batches, reversal_batch(500), 1e-2
    )
    assert np.all(np.isfinite(losses))
    assert losses[-50:].mean() < 0.25 * losses[:50].mean()
    assert accuracy > 0.9, accuracy


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: models.SequenceClassifier(rj.LSTMCell(4), 2, 3, pooling="sum"), ValueError, "pooling: expected one"),
        (lambda: models.SequenceClassifier(rj.Dense(4), 2, 3), TypeError, "encoder: expected an rnnjax cell or layer"),
        (lambda: models.SequenceTagger(rj.LSTMCell(4), 0, 3), ValueError, "num_tags: expected a positive integer"),
        (lambda: models.LanguageModel(10, 8, rj.LSTMCell(6), tie_weights=True), ValueError, r"tie_weights: .*\(6\)"),
        (lambda: models.LanguageModel(10, 8, rj.Stack([rj.LSTMCell(6)])), TypeError, "cell: expected an rnnjax cell"),
        (lambda: models.LanguageModel(10, 8, rj.LSTMCell(6), dropout=1.0), ValueError, "dropout: expected"),
        (lambda: models.ConditionedGenerator(5, 9, 4, rj.LSTMCell(6), "prefix"), ValueError, "condition: expected"),
        (lambda: models.Seq2Seq(10, 9, 4, rj.GRUCell(6), rj.GRUCell(6), "dot"), ValueError, "attention: expected"),
        (lambda: models.Seq2Seq(10, 9, 4, rj.GRUCell(6), rj.RNN(rj.GRUCell(6))), TypeError, "decoder_cell: expected"),
    ],
)
def test_configuration_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_input_errors_name_the_argument():
    classifier = models.SequenceClassifier(rj.GRUCell(4), 2, 3)
    tagger = models.SequenceTagger(rj.GRUCell(4), 2, 3, vocab_size=10)
    lm = models.LanguageModel(10, 4, rj.GRUCell(4))
    generator = models.ConditionedGenerator(5, 10, 4, rj.GRUCell(4))
    seq2seq = models.Seq2Seq(10, 9, 4, rj.GRUCell(4), rj.GRUCell(4), "luong")
    p_c, p_t, p_lm, p_g, p_s = (init(m) for m in (classifier, tagger, lm, generator, seq2seq))
    ids = jnp.array([1, 2, 3])
    cases = [
        (lambda: classifier.apply(p_c, jnp.ones((2, 5, 3))), ValueError, r"xs: expected shape \[t, 3\] \(one sequence"),
        (lambda: classifier.apply(p_c, ids), TypeError, "xs: expected a floating dtype"),
        (lambda: classifier.apply(p_c, jnp.ones((5, 3)), 6), ValueError, "length: expected 0 <= length <= 5"),
        (lambda: classifier.apply(p_c, jnp.ones((0, 3))), ValueError, "xs: expected at least one step"),
        (lambda: tagger.apply(p_t, jnp.ones((5, 3))), TypeError, "xs: expected integer token ids, got dtype float32"),
        (lambda: lm.apply(p_lm, ids.astype(jnp.float32)), TypeError, "tokens: expected integer token ids"),
        (lambda: lm.apply(p_lm, ids[None]), ValueError, r"tokens: expected shape \[t\] \(one example"),
        (lambda: lm.step_fn(p_lm, lm.initial_carry(p_lm), ids), ValueError, r"token: expected shape \[\]"),
        (lambda: generator.apply(p_g, jnp.ones(4), ids), ValueError, r"features: expected shape \[d\] = \(5,\)"),
        (lambda: generator.apply(p_g, ids, ids), TypeError, "features: expected a floating dtype"),
        (lambda: seq2seq.apply(p_s, ids, 4, ids), ValueError, "src_len: expected 0 <= src_len <= 3"),
        (lambda: seq2seq.apply(p_s, ids, 3, ids, 5), ValueError, "tgt_len: expected 0 <= tgt_len <= 3"),
        (lambda: seq2seq.apply(p_s, ids.astype(jnp.float32), 3, ids), TypeError, "src: expected integer token ids"),
        (lambda: seq2seq.apply(p_s, ids, 3, ids.astype(jnp.float32)), TypeError, "tgt_in: expected integer token ids"),
        (
            lambda: SEQ2SEQ["none"].apply(init(SEQ2SEQ["none"]), ids, 3, ids, return_attention=True),
            ValueError,
            "return_",
        ),
    ]
    for fn, error, message in cases:
        with pytest.raises(error, match=message):
            fn()
    with rj.checking(), pytest.raises(ValueError, match=r"tokens: expected token ids in \[0, 10\)"):
        lm.apply(p_lm, jnp.array([1, 10]))  # out-of-range ids are value-checked in checked mode


def test_language_model_rejects_another_language_models_params():
    # a LanguageModel(5) step given LanguageModel(7)'s params used to run, emitting token ids up to 6
    small, large = models.LanguageModel(5, 4, rj.GRUCell(8)), models.LanguageModel(7, 4, rj.GRUCell(8))
    params = init(large)
    carry = small.initial_carry(params)
    model = r"LanguageModel\(vocab_size=5, embed_size=4\)"
    message = rf"params.embed.table: expected shape \(5, 4\) for {model}, got \(7, 4\)"
    with pytest.raises(ValueError, match=message):
        small.step_fn(params, carry, jnp.array(1))
    with pytest.raises(ValueError, match=message):
        rj.decode.greedy(small.step_fn, params, carry, 0, max_len=3)
    with pytest.raises(ValueError, match=message):
        small.apply(params, jnp.array([1, 2]))
    # only the head differs (another embed_size would fail on the table): named too
    head_only = params._replace(embed=init(small).embed)
    with pytest.raises(ValueError, match=r"params.head.w: expected shape \(8, 5\) .*, got \(8, 7\)"):
        small.apply_with_carry(head_only, jnp.array([1, 2]))
    tied = models.LanguageModel(5, 8, rj.GRUCell(8), tie_weights=True)
    with pytest.raises(ValueError, match=r"params.bias: expected shape \(5,\)"):
        tied.step_fn(init(tied)._replace(bias=jnp.zeros(7)), carry, jnp.array(1))
    with pytest.raises(ValueError, match=r"params.head: expected the output layer .*, got None"):
        small.step_fn(init(tied)._replace(embed=init(small).embed), carry, jnp.array(1))
    with pytest.raises(TypeError, match="params: expected LanguageModelParams"):
        small.step_fn(dict(init(small)._asdict()), carry, jnp.array(1))


def test_models_are_hashable_static_arguments():
    a = models.LanguageModel(10, 4, [rj.GRUCell(4), rj.GRUCell(4)])
    b = models.LanguageModel(10, 4, [rj.GRUCell(4), rj.GRUCell(4)])
    assert a == b and hash(a) == hash(b)
    assert hash(SEQ2SEQ["luong"]) == hash(
        models.Seq2Seq(10, 9, 4, rj.LSTMCell(6), [rj.LSTMCell(6), rj.GRUCell(6)], "luong", attention_size=7)
    )
    assert set(models.__all__) <= set(dir(rj.models))


# ----------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("param_dtype", [None, jnp.bfloat16], ids=["float32-params", "bfloat16-params"])
def test_models_pass_dtypes_to_cells_and_heads_and_give_float32_logits(param_dtype):
    """dtype=bfloat16 reaches every cell (stacks and bidirectional layers too); logits stay float32 and close to
    the float32 model's on the same params."""
    bf16 = jnp.bfloat16
    encoder = rj.Stack([rj.Bidirectional(rj.GRUCell(4), rj.GRUCell(4)), rj.LSTMCell(5)])
    built = {
        "classifier": lambda **kw: models.SequenceClassifier(encoder, 3, 4, vocab_size=12, **kw),
        "tagger": lambda **kw: models.SequenceTagger(encoder, 3, 4, vocab_size=12, **kw),
        "lm": lambda **kw: models.LanguageModel(12, 4, [rj.LSTMCell(4), rj.GRUCell(4)], tie_weights=True, **kw),
        "generator": lambda **kw: models.ConditionedGenerator(5, 12, 4, rj.LSTMCell(6), condition="both", **kw),
    }
    tokens, features = random_ids((6,), 12), RNG.standard_normal(5).astype(np.float32)
    for name, build in built.items():
        low, full = build(dtype=bf16, param_dtype=param_dtype), build()
        params = init(low)
        want_dtype = jnp.dtype(param_dtype or jnp.float32)
        assert {p.dtype for p in jax.tree_util.tree_leaves(params)} == {want_dtype}, name
        args = (features, tokens) if name == "generator" else (tokens,)
        logits = jax.jit(low.apply)(params, *args)
        params32 = jax.tree_util.tree_map(lambda p: p.astype(jnp.float32), params)
        want = jax.jit(full.apply)(params32, *args)
        assert logits.dtype == jnp.float32 and want.dtype == jnp.float32, name
        # measured: at most 2.1e-3 apart (bfloat16 rounding of inputs, activations and params)
        np.testing.assert_allclose(logits, want, atol=1e-2, err_msg=name)
        assert not np.array_equal(logits, want), f"{name}: bfloat16 did not reach the cells"
    nested = built["tagger"](dtype=bf16).encoder  # a Stack of a Bidirectional and an RNN
    assert nested.layers[0].backward.cell.dtype == nested.layers[1].cell.dtype == bf16
    assert [c.dtype for c in built["lm"](dtype=bf16).cell.cells] == [bf16, bf16]  # a StackedCell


@pytest.mark.parametrize(
    "attention",
    ["luong", pytest.param("bahdanau", marks=pytest.mark.slow), pytest.param("multihead", marks=pytest.mark.slow)],
)
def test_seq2seq_passes_dtypes_to_every_part(attention):
    """dtype/param_dtype reach the encoder, the decoder cells, the attention module, the embeddings, the bridge
    and the output layer; bfloat16 logits stay float32 and close to the float32 model's on the same params."""
    bf16 = jnp.bfloat16
    module = rj.attention.MultiHeadAttention(2, 4) if attention == "multihead" else attention
    encoder = rj.Bidirectional(rj.GRUCell(4), rj.GRUCell(4))

    def build(**kw):
        return models.Seq2Seq(12, 12, 4, encoder, [rj.LSTMCell(5), rj.GRUCell(5)], module, **kw)

    low, full = build(dtype=bf16, param_dtype=bf16), build()
    params = init(low)
    assert {p.dtype for p in jax.tree_util.tree_leaves(params)} == {jnp.dtype(bf16)}
    tokens = random_ids((6,), 12)
    logits = jax.jit(low.apply)(params, tokens, 4, tokens)
    want = jax.jit(full.apply)(jax.tree_util.tree_map(lambda p: p.astype(jnp.float32), params), tokens, 4, tokens)
    assert logits.dtype == jnp.float32
    # measured: at most 1.8e-3 apart over 5 seeds (each attention, float32 or bfloat16 params)
    np.testing.assert_allclose(logits, want, atol=1e-2)
    assert not np.array_equal(logits, want)


def test_language_model_unroll_is_a_deprecated_name_of_apply_with_carry():
    model = models.LanguageModel(10, 4, rj.GRUCell(6))
    params = model.init(jax.random.key(0))
    tokens = jnp.array([1, 2, 3])
    with pytest.warns(DeprecationWarning, match="use LanguageModel.apply_with_carry"):
        old = model.unroll(params, tokens)
    jax.tree_util.tree_map(np.testing.assert_array_equal, old, model.apply_with_carry(params, tokens))
