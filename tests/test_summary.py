"""rj.summary: Keras' model.summary() table for every model and layer, and the params-pytree table."""

import os

os.environ["KERAS_BACKEND"] = "jax"  # before anything imports keras

import functools
import re

import jax
import jax.numpy as jnp
import pytest

import rnnjax as rj
from docs_helpers import ROOT

KEY = jax.random.key(0)
B, T = 2, 5  # the batch and time that the summaries' None stand for


@pytest.fixture
def keras(monkeypatch):
    keras = pytest.importorskip("keras", reason="keras not installed (pip install -e .[interop])")
    if keras.backend.backend() != "jax":
        pytest.skip(f"keras was imported with the {keras.backend.backend()} backend before this module")
    monkeypatch.setenv("COLUMNS", "80")  # Keras sizes its table to the console; 80 columns, as when piped
    return keras


def keras_summary(model) -> str:
    printed = []
    model.summary(print_fn=printed.append)
    return "".join(printed).rstrip("\n")


def table_rows(table: str) -> list[tuple[str, str, str]]:
    """``(name (type), output shape, count)`` of each row of a printed summary (wrapped cells joined)."""
    rows, cells = [], None
    for line in table.splitlines():
        if line.startswith("│"):
            parts = [p.strip() for p in line.strip("│").split("│")]
            cells = parts if cells is None else [f"{a} {b}".strip() for a, b in zip(cells, parts, strict=True)]
        elif cells is not None:
            rows.append(tuple(cells))
            cells = None
    return rows


def batch_shape(shape) -> tuple[int, ...]:
    """A summary's output shape for a batch of ``B`` sequences of ``T`` steps: ``(None, None, o) -> (B, T, o)``."""
    sizes = iter((B, T))
    return tuple(next(sizes) if n is None else n for n in shape)


def assert_rows(model, params, expected):
    """``model``'s rows are ``expected``: (name, type, batch output shape, the params subtree itself)."""
    rows = model.summary_rows(params)
    got = [(row.name, row.type, batch_shape(row.output_shape)) for row in rows]
    assert got == [e[:3] for e in expected]
    for row, (*_, part) in zip(rows, expected, strict=True):
        assert jax.tree_util.tree_structure(row.params) == jax.tree_util.tree_structure(part)
        leaves = zip(jax.tree_util.tree_leaves(row.params), jax.tree_util.tree_leaves(part), strict=True)
        assert all(a is b for a, b in leaves)
    assert sum(rj.count_params(row.params) for row in rows) == rj.count_params(params)
    total = f"{rj.count_params(params):,}"
    assert f" Total params: {total} (" in rj.summary(model, params, print_fn=None)


def batched(fn, params, *args):
    """What ``fn(params, *args)`` gives for a batch (vmapped over the args), from shapes only (no compilation)."""
    return jax.eval_shape(lambda p, *a: jax.vmap(functools.partial(fn, p))(*a), params, *args)


def shape_of(fn, params, *args) -> tuple[int, ...]:
    return batched(fn, params, *args).shape


def vector(size):
    return jax.ShapeDtypeStruct((B, size), jnp.float32)


def sequence(size):
    return jax.ShapeDtypeStruct((B, T, size), jnp.float32)


TOKENS = jax.ShapeDtypeStruct((B, T), jnp.int32)


# --- Keras parity ------------------------------------------------------------------------------


def test_embedding_lstm_dense_prints_the_table_keras_prints(keras):
    """Embedding(1000, 64) -> LSTM(128) -> Dense(10): the same text, 164,106 params (Keras' names given
    explicitly: its automatic ones count layers made earlier in the process)."""
    layers = keras.layers
    reference = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            layers.Embedding(1000, 64, name="embedding"),
            layers.LSTM(128, name="lstm"),
            layers.Dense(10, name="dense"),
        ],
        name="sequence_classifier",
    )
    model = rj.models.SequenceClassifier(rj.LSTMCell(128), 10, 64, vocab_size=1000)
    params = jax.eval_shape(model.init, KEY)  # shapes only: no compilation
    printed = []
    table = rj.summary(model, params, print_fn=printed.append)
    assert printed == [table]
    assert table == keras_summary(reference)
    assert table_rows(table) == [
        ("embedding (Embedding)", "(None, None, 64)", "64,000"),
        ("lstm (LSTM)", "(None, 128)", "98,816"),
        ("dense (Dense)", "(None, 10)", "1,290"),
    ]
    assert rj.count_params(params) == reference.count_params() == 164_106


def test_deep_models_print_the_tables_keras_prints(keras):
    """Bidirectional, Stack, Dropout between layers, pooling: Keras' rows and text (a long name wraps)."""
    layers = keras.layers
    tagger = rj.models.SequenceTagger(
        rj.Stack([rj.Bidirectional(rj.LSTMCell(16), rj.LSTMCell(16)), rj.LSTMCell(4)]), 3, 8
    )
    tagger_keras = keras.Sequential(
        [
            keras.Input((None, 8)),
            layers.Bidirectional(layers.LSTM(16, return_sequences=True), name="bidirectional"),
            layers.LSTM(4, return_sequences=True, name="lstm"),
            layers.Dense(3, name="dense"),
        ],
        name="sequence_tagger",
    )
    assert rj.summary(tagger, jax.eval_shape(tagger.init, KEY), print_fn=None) == keras_summary(tagger_keras)

    encoder = rj.Stack([rj.LSTMCell(16), rj.LSTMCell(8)], dropout=0.2)
    classifier = rj.models.SequenceClassifier(encoder, 3, 8, pooling="mean")
    classifier_keras = keras.Sequential(
        [
            keras.Input((None, 8)),
            layers.LSTM(16, return_sequences=True, name="lstm"),
            layers.Dropout(0.2, name="dropout"),
            layers.LSTM(8, return_sequences=True, name="lstm_1"),
            layers.GlobalAveragePooling1D(name="global_average_pooling1d"),
            layers.Dense(3, name="dense"),
        ],
        name="sequence_classifier",
    )
    table = rj.summary(classifier, jax.eval_shape(classifier.init, KEY), print_fn=None)
    assert table == keras_summary(classifier_keras)
    assert "│ global_average_pooling1d        │" in table and "│ (GlobalAveragePooling1D)        │" in table


# --- every model: rows, counts, and the shapes of an actual apply -------------------------------


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_classifier(pooling):
    encoder = rj.Stack([rj.Bidirectional(rj.GRUCell(8), rj.GRUCell(8)), rj.LSTMCell(6)], dropout=0.1)
    model = rj.models.SequenceClassifier(encoder, 3, 4, pooling=pooling, vocab_size=20)
    params = jax.eval_shape(model.init, KEY)  # shapes only: no compilation
    embedded = shape_of(lambda params, ids: rj.Embedding(20, 4).apply(params.embed, ids), params, TOKENS)
    hidden = shape_of(lambda params, xs: encoder.layers[0].apply(params.encoder[0], xs), params, sequence(4))
    top = shape_of(lambda params, xs: encoder.layers[1].apply(params.encoder[1], xs), params, sequence(16))
    logits = shape_of(model.apply, params, TOKENS)
    assert (embedded, hidden, top, logits) == ((B, T, 4), (B, T, 16), (B, T, 6), (B, 3))
    expected = [
        ("embedding", "Embedding", embedded, params.embed),
        ("bidirectional", "Bidirectional", hidden, params.encoder[0]),
        ("dropout", "Dropout", hidden, None),
    ]
    if pooling == "last":  # the top layer's last output, as Keras' return_sequences=False
        expected.append(("lstm", "LSTM", (B, 6), params.encoder[1]))
    else:
        name, kind = {
            "mean": ("global_average_pooling1d", "GlobalAveragePooling1D"),
            "max": ("global_max_pooling1d", "GlobalMaxPooling1D"),
        }[pooling]
        expected += [("lstm", "LSTM", top, params.encoder[1]), (name, kind, (B, 6), None)]
    expected.append(("dense", "Dense", logits, params.head))
    assert_rows(model, params, expected)
    assert params.head.w.shape[0] == 6  # what the pooling gives the head


def test_tagger():
    encoder = rj.Stack([rj.layers.Masking(rj.LSTMCell(8)), rj.GRUCell(4)])
    model = rj.models.SequenceTagger(encoder, 5, 3)
    params = jax.eval_shape(model.init, KEY)  # shapes only: no compilation
    first = shape_of(lambda params, xs: encoder.layers[0].apply(params.encoder[0], xs), params, sequence(3))
    second = shape_of(lambda params, xs: encoder.layers[1].apply(params.encoder[1], xs), params, sequence(8))
    logits = shape_of(model.apply, params, sequence(3))
    assert logits == (B, T, 5)
    assert_rows(
        model,
        params,
        [
            ("lstm", "LSTM", first, params.encoder[0]),  # Masking adds no row: no params, same shapes
            ("gru", "GRU", second, params.encoder[1]),
            ("dense", "Dense", logits, params.head),
        ],
    )


def test_language_model():
    cells = [rj.LSTMCell(16), rj.GRUCell(8)]
    model = rj.models.LanguageModel(30, 8, cells, dropout=0.1)
    params = jax.eval_shape(model.init, KEY)  # shapes only: no compilation
    embedded = shape_of(lambda params, ids: rj.Embedding(30, 8).apply(params.embed, ids), params, TOKENS)
    first = shape_of(lambda params, xs: rj.unroll(cells[0], params.cell[0], xs)[1], params, sequence(8))
    second = shape_of(lambda params, xs: rj.unroll(cells[1], params.cell[1], xs)[1], params, sequence(16))
    logits = shape_of(model.apply, params, TOKENS)
    assert logits == (B, T, 30)
    assert_rows(
        model,
        params,
        [
            ("embedding", "Embedding", embedded, params.embed),
            ("dropout", "Dropout", embedded, None),
            ("lstm", "LSTM", first, params.cell[0]),
            ("gru", "GRU", second, params.cell[1]),
            ("dropout", "Dropout", second, None),
            ("dense", "Dense", logits, params.head),
        ],
    )
    names = [row[0] for row in table_rows(rj.summary(model, params, print_fn=None))]
    assert names == [
        "embedding (Embedding)",
        "dropout (Dropout)",
        "lstm (LSTM)",
        "gru (GRU)",
        "dropout_1 (Dropout)",
        "dense (Dense)",
    ]


def test_tied_language_model_counts_the_table_once():
    model = rj.models.LanguageModel(30, 8, rj.GRUCell(8), tie_weights=True)
    params = jax.eval_shape(model.init, KEY)  # shapes only: no compilation
    logits = shape_of(model.apply, params, TOKENS)
    assert_rows(
        model,
        params,
        [
            ("embedding", "Embedding", (B, T, 8), params.embed),
            ("gru", "GRU", (B, T, 8), params.cell),
            ("tied_dense", "TiedDense", logits, params.bias),  # the bias only: the weights are the table
        ],
    )


@pytest.mark.parametrize("condition", ["init", "input", "both"])
def test_conditioned_generator(condition):
    model = rj.models.ConditionedGenerator(6, 10, 4, [rj.LSTMCell(8), rj.GRUCell(5)], condition=condition)
    params = jax.eval_shape(model.init, KEY)  # shapes only: no compilation
    carry = batched(model.initial_carry, params, vector(6))
    bridged = (B, sum(leaf.shape[-1] for leaf in jax.tree_util.tree_leaves(carry.cell)))  # every carry array
    inputs = 4 + (6 if condition != "init" else 0)
    first = shape_of(lambda params, xs: rj.unroll(model.cell.cells[0], params.cell[0], xs)[1], params, sequence(inputs))
    second = shape_of(lambda params, xs: rj.unroll(model.cell.cells[1], params.cell[1], xs)[1], params, sequence(8))
    logits = shape_of(model.apply, params, vector(6), TOKENS)
    expected = [("embedding", "Embedding", (B, T, 4), params.embed)]
    if condition != "input":
        assert bridged == (B, 8 + 8 + 5)
        expected.append(("dense", "Dense", bridged, params.bridge))
    expected += [
        ("lstm", "LSTM", first, params.cell[0]),
        ("gru", "GRU", second, params.cell[1]),
        ("dense", "Dense", logits, params.head),
    ]
    assert_rows(model, params, expected)


ATTENTIONS = {  # the attention setting, and its row's name (Keras' name of the module's class)
    "none": (None, None),
    "bahdanau": ("bahdanau", "bahdanau_attention"),
    "luong": ("luong", "general_attention"),
    "dot": (rj.attention.DotAttention(), "dot_attention"),
    "multihead": (rj.attention.MultiHeadAttention(2, 8), "multi_head_attention"),
}


@pytest.mark.parametrize("attention", sorted(ATTENTIONS))
def test_seq2seq(attention):
    encoder = rj.Bidirectional(rj.GRUCell(4), rj.GRUCell(4))
    attention, row_name = ATTENTIONS[attention]
    model = rj.models.Seq2Seq(12, 10, 6, encoder, rj.GRUCell(8), attention=attention)
    params, decoder = jax.eval_shape(model.init, KEY), model.decoder
    p = params.decoder
    memory = shape_of(lambda params, xs: encoder.apply(params.encoder, xs), params, sequence(6))
    carry = batched(model.encode, params, TOKENS)
    bridged = (B, sum(leaf.shape[-1] for leaf in jax.tree_util.tree_leaves(carry.cell)))
    step = batched(lambda params, c: model.step_fn(params, c, jnp.array(1)), params, carry)
    logits = shape_of(lambda params, src, tgt: model.apply(params, src, None, tgt), params, TOKENS, TOKENS)
    assert memory == (B, T, 8) and logits == (B, T, 10)
    expected = [
        ("embedding", "Embedding", (B, T, 6), params.src_embed),
        ("bidirectional", "Bidirectional", memory, params.encoder),
        ("embedding", "Embedding", (B, T, 6), p.embed),
        ("dense", "Dense", bridged, p.bridge),  # two final carries [4] each -> the decoder's [8]
    ]
    if decoder.attention is not None:
        kind = type(decoder.attention).__name__
        query = jax.ShapeDtypeStruct((B, 8), jnp.float32)
        attend = decoder.attention.attend
        context, _ = batched(lambda p, q, c: attend(p, q, c.keys, c.values, c.mask), p.attention, query, carry)
        expected.append((row_name, kind, (B, T, context.shape[-1]), p.attention))
    expected.append(("gru", "GRU", (B, T, 8), p.cell))
    if p.w_c is not None:  # attention after the step: the attentional vector, fed back in the carry
        expected.append(("dense", "Dense", (B, T, step[0].context.shape[-1]), p.w_c))
    expected.append(("dense", "Dense", logits, p.head))
    assert_rows(model, params, expected)


def test_seq2seq_without_a_bridge():
    model = rj.models.Seq2Seq(12, 10, 6, rj.GRUCell(8), rj.GRUCell(8))
    params = jax.eval_shape(model.init, KEY)  # shapes only: no compilation
    assert params.decoder.bridge is None
    rows = model.summary_rows(params)
    assert [row.name for row in rows] == ["embedding", "gru", "embedding", "gru", "dense"]
    assert sum(rj.count_params(row.params) for row in rows) == rj.count_params(params)


# --- layers and cells ---------------------------------------------------------------------------


def test_stack_shows_its_layers_with_unique_names():
    """A Stack lists its layers (a Stack in a Stack, and an RNN of a StackedCell, one row per cell)."""
    layers = [
        rj.Bidirectional(rj.LSTMCell(16), rj.LSTMCell(16)),
        rj.Stack([rj.LSTMCell(8), rj.LSTMCell(8)]),
        rj.RNN(rj.StackedCell([rj.GRUCell(4), rj.GRUCell(4)])),
    ]
    stack = rj.Stack(layers)
    params = jax.eval_shape(lambda key: stack.init(key, 3), KEY)
    table = rj.summary(stack, params, print_fn=None)
    assert table.splitlines()[0] == 'Model: "stack"'
    assert table_rows(table) == [
        ("bidirectional (Bidirectional)", "(None, None, 32)", f"{rj.count_params(params[0]):,}"),
        ("lstm (LSTM)", "(None, None, 8)", f"{rj.count_params(params[1][0]):,}"),
        ("lstm_1 (LSTM)", "(None, None, 8)", f"{rj.count_params(params[1][1]):,}"),
        ("gru (GRU)", "(None, None, 4)", f"{rj.count_params(params[2][0]):,}"),
        ("gru_1 (GRU)", "(None, None, 4)", f"{rj.count_params(params[2][1]):,}"),
    ]
    assert rj.count_params(params[0]) == 2 * (3 * 64 + 16 * 64 + 64)  # two LSTMs: w_i [3, 4h], w_h [h, 4h], b [4h]
    shapes = [shape_of(lambda params, xs: layers[0].apply(params[0], xs), params, sequence(3))]
    shapes.append(shape_of(lambda params, xs: layers[1].apply(params[1], xs), params, sequence(32)))
    shapes.append(shape_of(lambda params, xs: layers[2].apply(params[2], xs), params, sequence(8)))
    assert shapes == [(B, T, 32), (B, T, 8), (B, T, 4)]


def test_deep_stack_rows():
    layer = rj.layers.deep(rj.LSTMCell, 16, num_layers=3, bidirectional=True, dropout=0.1)
    params = jax.eval_shape(lambda key: layer.init(key, 8), KEY)
    names = [row[0] for row in table_rows(rj.summary(layer, params, print_fn=None))]
    assert names == [
        "bidirectional (Bidirectional)",
        "dropout (Dropout)",
        "bidirectional_1 (Bidirectional)",
        "dropout_1 (Dropout)",
        "bidirectional_2 (Bidirectional)",
    ]


def test_one_layer_or_cell():
    cell = rj.LSTMCell(128)
    params = cell.init(KEY, 64)
    for part, title in ((cell, "lstm_cell"), (rj.RNN(cell), "rnn")):
        table = rj.summary(part, params, print_fn=None)
        assert table.splitlines()[0] == f'Model: "{title}"'
        assert table_rows(table) == [("lstm (LSTM)", "(None, None, 128)", "98,816")]
    bidirectional = rj.Bidirectional(rj.GRUCell(4), rj.GRUCell(4), merge="sum")
    params = jax.eval_shape(lambda key: bidirectional.init(key, 3), KEY)
    rows = table_rows(rj.summary(bidirectional, params, print_fn=None))
    assert rows == [("bidirectional (Bidirectional)", "(None, None, 4)", f"{rj.count_params(params):,}")]


def test_abstract_params_and_sizes():
    """``jax.eval_shape(model.init, key)`` summarises without allocating; sizes follow the dtypes."""
    model = rj.models.LanguageModel(1000, 64, rj.LSTMCell(128), param_dtype=jnp.bfloat16)
    params = model.init(KEY)
    table = rj.summary(model, jax.eval_shape(model.init, KEY), print_fn=None)
    assert table == rj.summary(model, params, print_fn=None)
    total = rj.count_params(params)
    assert table.splitlines()[-3] == f" Total params: {total:,} ({2 * total / 1024:.2f} KB)"
    assert table.splitlines()[-1] == " Non-trainable params: 0 (0.00 B)"


def test_any_object_with_summary_rows():
    """The protocol: an object of one's own with ``summary_rows(params)`` is rendered too."""

    class TwoHeads:
        def summary_rows(self, params):
            rows = rj.heads.summary_rows(rj.Embedding(10, 4), params["embed"], (None, None, 4))
            for head in params["heads"]:
                rows += rj.heads.summary_rows(rj.Dense(3), head, (None, None, 3))
            return rows

    keys = jax.random.split(KEY, 3)
    params = {"embed": rj.Embedding(10, 4).init(keys[0]), "heads": [rj.Dense(3).init(k, 4) for k in keys[1:]]}
    assert isinstance(TwoHeads(), rj.typing.Summarizable)
    table = rj.summary(TwoHeads(), params, print_fn=None)
    assert table.splitlines()[0] == 'Model: "two_heads"'
    assert table_rows(table) == [
        ("embedding (Embedding)", "(None, None, 4)", "40"),
        ("dense (Dense)", "(None, None, 3)", "15"),
        ("dense_1 (Dense)", "(None, None, 3)", "15"),
    ]


def test_the_params_pytree_table_is_kept():
    params = {"lstm": rj.LSTMCell(4).init(KEY, 3)}
    table = rj.summary(params, print_fn=None)
    assert table.splitlines()[0].split() == ["name", "shape", "dtype", "params"]
    assert table.splitlines()[-1].split() == ["total", f"{rj.count_params(params):,}"]


def test_bad_input():
    model = rj.models.SequenceTagger(rj.GRUCell(8), 5, 4)
    params = jax.eval_shape(model.init, KEY)  # shapes only: no compilation
    expected = r"params: expected the params of the SequenceTagger \(from its init\), got None"
    with pytest.raises(TypeError, match=expected):
        rj.summary(model)
    with pytest.raises(TypeError, match="model_or_params: expected a model, layer or cell .* got dict"):
        rj.summary({"w": jnp.ones(3)}, params)
    other = rj.models.SequenceTagger(rj.GRUCell(8), 5, 4, vocab_size=7)
    with pytest.raises(ValueError, match=r"params: the SequenceTagger's layers hold 381 params, the given params 409"):
        rj.summary(model, jax.eval_shape(other.init, KEY))


# --- the docs -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_guide_section_runs(capsys):
    """The code of docs/guide/models.md's "Summary" section runs as written and prints the table shown."""
    page = (ROOT / "docs/guide/models.md").read_text()
    section = page.split("## Summary\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    shown = re.findall(r"^```text\n(.*?)^```", section, flags=re.S | re.M)
    assert blocks and shown
    with jax.numpy_dtype_promotion("standard"):
        namespace = {}
        for block in blocks:
            exec(compile(block, "docs/guide/models.md", "exec"), namespace)
    assert shown[0].rstrip("\n") in capsys.readouterr().out
