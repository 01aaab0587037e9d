"""rnnjax.data: corpus splits, vocabulary, LM batching, padding, synthetic tasks, time series."""

import functools
import json
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnjax as rj
from rnnjax import data

SMALL = 150_000  # characters: keeps the corpus tests fast


def test_public_names():
    expected = {
        "DEFAULT_MAX_CHARS", "CharVocab", "Corpus", "adding_problem", "copy_task", "lm_batch", "lm_streams",
        "lm_windows", "load_corpus", "pad_batch", "sunspots", "time_series_windows",
    }  # fmt: skip
    assert set(data.__all__) == expected
    assert rj.data is data
    for name in expected - {"DEFAULT_MAX_CHARS"}:
        assert ">>>" in getattr(data, name).__doc__, name


# --- corpus ------------------------------------------------------------------------------------


@functools.cache
def _small_corpus():
    return data.load_corpus(max_chars=SMALL)


def test_default_corpus_is_deterministic_and_split_by_file():
    corpus = _small_corpus()
    again = data.load_corpus(max_chars=SMALL)
    assert corpus == again
    assert len(corpus.train) <= 0.9 * SMALL and len(corpus.valid) <= 0.05 * SMALL and len(corpus.test) <= 0.05 * SMALL
    assert len(corpus.train) > 0.8 * SMALL and len(corpus.valid) > 0 and len(corpus.test) > 0
    train, valid, test = (set(corpus.files[name]) for name in ("train", "valid", "test"))
    assert not (train & valid or train & test or valid & test)  # no file in two splits
    for name in ("train", "valid", "test"):
        for path in corpus.files[name]:
            assert path.endswith(".py")
            parts = path.split("/")
            assert not {"test", "tests", "idlelib", "lib2to3", "site-packages", "encodings"} & set(parts[:-1])
            assert not any(part.startswith(("_sysconfigdata", "config-", ".")) for part in parts)
            assert data.corpus._file_split(path, (0.9, 0.05, 0.05)) == name  # the hash decides, nothing else
        assert list(corpus.files[name]) == sorted(corpus.files[name])
    assert "\r" not in corpus.train


def test_default_corpus_grows_by_prefix():
    # a larger budget reads on: every split of the small corpus starts the larger one
    small, large = data.load_corpus(max_chars=50_000), _small_corpus()
    for name in ("train", "valid", "test"):
        files = small.files[name]
        assert files and large.files[name][: len(files) - 1] == files[:-1]
        assert getattr(large, name).startswith(getattr(small, name))


def test_user_file_is_split_by_position(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("".join(chr(ord("a") + i % 26) for i in range(1000)), encoding="utf-8")
    corpus = data.load_corpus(path, split=(0.8, 0.1, 0.1))
    text = path.read_text()
    assert (corpus.train, corpus.valid, corpus.test) == (text[:800], text[800:900], text[900:])
    assert corpus.files == {"train": ("text.txt",), "valid": ("text.txt",), "test": ("text.txt",)}
    assert data.load_corpus(str(path), max_chars=100).train == text[:90]


def test_user_directory_is_split_by_file(tmp_path):
    texts = {}
    for i in range(40):
        sub = tmp_path / f"d{i % 3}"
        sub.mkdir(exist_ok=True)
        texts[f"d{i % 3}/f{i:02d}.txt"] = f"file {i}\r\n" * (i + 1)
        (tmp_path / f"d{i % 3}/f{i:02d}.txt").write_bytes(texts[f"d{i % 3}/f{i:02d}.txt"].encode())
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00bad")  # not UTF-8: skipped
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.txt").write_text("hidden")
    corpus = data.load_corpus(tmp_path, max_chars=None, split=(0.5, 0.25, 0.25))
    listed = [p for name in ("train", "valid", "test") for p in corpus.files[name]]
    assert sorted(listed) == sorted(texts)  # every file once; binary and hidden ones left out
    for name in ("train", "valid", "test"):
        expected = "".join(texts[p].replace("\r\n", "\n") for p in corpus.files[name])
        assert getattr(corpus, name) == expected
    only_f1 = data.load_corpus(tmp_path, max_chars=None, suffixes=("1.txt",))
    assert all(p.endswith("1.txt") for name in ("train", "valid", "test") for p in only_f1.files[name])


def test_corpus_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no/such/corpus"):
        data.load_corpus(tmp_path / "no/such/corpus")
    with pytest.raises(ValueError, match="empty corpus"):
        data.load_corpus(tmp_path)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty corpus"):
        data.load_corpus(tmp_path / "empty.txt")
    with pytest.raises(ValueError, match="split"):
        data.load_corpus(split=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="max_chars"):
        data.load_corpus(max_chars=0)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        data.load_corpus(tmp_path / "latin1.txt")


# --- vocabulary --------------------------------------------------------------------------------


def test_vocab_round_trip_and_unknowns(tmp_path):
    corpus = _small_corpus()
    vocab = data.CharVocab.build(corpus.train)
    assert (vocab.pad_id, vocab.unk_id, vocab.bos_id, vocab.eos_id) == (0, 1, 2, 3)
    assert vocab.size == 4 + len(set(corpus.train)) == len(vocab)
    ids = vocab.encode(corpus.train)
    assert ids.dtype == np.int32 and ids.shape == (len(corpus.train),)
    assert ids.min() >= 4 and ids.max() < vocab.size
    assert vocab.decode(ids) == corpus.train
    # unseen characters (including one outside the basic multilingual plane) map to <unk>
    text = "x = '\u2603\U0001f600'"
    assert "\u2603" not in corpus.train and "\U0001f600" not in corpus.train
    encoded = vocab.encode(text)
    assert encoded.tolist()[-3:-1] == [vocab.unk_id, vocab.unk_id]
    assert vocab.decode(encoded) == "x = '\ufffd\ufffd'"
    assert vocab.decode(encoded, skip_special=False) == "x = '<unk><unk>'"
    assert vocab.decode([vocab.bos_id, *encoded[:1], vocab.eos_id, vocab.pad_id]) == "x"
    # JSON, not pickle; the round trip keeps every id
    path = tmp_path / "vocab.json"
    vocab.save(path)
    assert json.loads(path.read_text())["chars"] == list(vocab.chars)
    loaded = data.CharVocab.load(path)
    assert loaded == vocab
    np.testing.assert_array_equal(loaded.encode(corpus.valid), vocab.encode(corpus.valid))
    emoji = data.CharVocab.build("a\U0001f600b")
    emoji.save(path)
    assert data.CharVocab.load(path).decode(emoji.encode("\U0001f600ab")) == "\U0001f600ab"


def test_vocab_min_count_and_max_size(tmp_path):
    text = "aaaa bbb cc d"
    assert data.CharVocab.build(text, min_count=2).chars == (" ", "a", "b", "c")
    assert data.CharVocab.build(text, max_size=6).chars == (" ", "a")  # 3 spaces tie with 3 b's: code point
    assert data.CharVocab.build("").size == 4
    assert data.CharVocab.build("").encode("ab").tolist() == [1, 1]
    with pytest.raises(ValueError, match="max_size"):
        data.CharVocab.build(text, max_size=3)
    with pytest.raises(ValueError, match="min_count"):
        data.CharVocab.build(text, min_count=0)
    with pytest.raises(TypeError, match="text"):
        data.CharVocab.build(b"bytes")
    with pytest.raises(ValueError, match=r"ids: expected ids in \[0, 5\)"):
        data.CharVocab.build("a").decode([5])
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="bad.json"):
        data.CharVocab.load(tmp_path / "bad.json")
    (tmp_path / "pickle.bin").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ValueError, match="not a CharVocab"):
        data.CharVocab.load(tmp_path / "pickle.bin")


# --- language-model batching -------------------------------------------------------------------


@pytest.mark.parametrize(("length", "batch_size", "window"), [(103, 4, 7), (101, 4, 5), (50, 1, 64), (9, 8, 1)])
def test_windows_cover_every_token_once_per_epoch(length, batch_size, window):
    ids = np.arange(length) * 3 + 1  # distinct, so a token is identified by its value
    streams = data.lm_streams(ids, batch_size)
    n = (length - 1) // batch_size
    assert streams.shape == (batch_size, n + 1) and streams.dtype == np.int32
    np.testing.assert_array_equal(streams[:-1, -1], streams[1:, 0])  # consecutive streams overlap by one
    targets, previous = [], None
    for inputs, target in data.lm_windows(streams, window):
        assert inputs.shape == target.shape and inputs.shape[1] <= window
        np.testing.assert_array_equal(inputs[:, 1:], target[:, :-1])  # shifted by one
        if previous is not None:  # the next window continues each row: the carry may be passed on
            np.testing.assert_array_equal(inputs[:, 0], previous[:, -1])
        previous = target
        targets.append(target)
    covered = np.sort(np.concatenate([t.reshape(-1) for t in targets]))
    np.testing.assert_array_equal(covered, ids[1 : batch_size * n + 1])  # each token after the first, once
    full = list(data.lm_windows(streams, window, drop_last=True))
    assert len(full) == n // window and all(x.shape == (batch_size, window) for x, _ in full)


def test_lm_batch_is_random_access_and_cycles():
    streams = data.lm_streams(np.arange(200), 3)  # n = 66
    windows = list(data.lm_windows(streams, 10, drop_last=True))
    assert len(windows) == 6
    for i in range(15):
        inputs, targets = data.lm_batch(streams, i, window=10)
        np.testing.assert_array_equal(inputs, windows[i % 6][0])
        np.testing.assert_array_equal(targets, windows[i % 6][1])
    with pytest.raises(ValueError, match="window: expected at most 66"):
        data.lm_batch(streams, 0, window=67)
    with pytest.raises(ValueError, match="index"):
        data.lm_batch(streams, -1, window=5)
    with pytest.raises(ValueError, match="streams"):
        data.lm_batch(streams[:, :1], 0, window=1)
    with pytest.raises(ValueError, match=r"streams: expected shape \[b, n \+ 1\]"):
        data.lm_windows(np.arange(10), 2)  # at the call, not at the first next()
    with pytest.raises(ValueError, match="batch_size"):
        data.lm_streams(np.arange(5), 0)
    with pytest.raises(ValueError, match=r"ids: expected at least batch_size \+ 1 = 6 tokens"):
        data.lm_streams(np.arange(5), 5)
    with pytest.raises(TypeError, match="ids"):
        data.lm_streams(np.linspace(0, 1, 10), 2)


def test_lm_batch_feeds_fit():
    vocab_size = 11
    streams = data.lm_streams(np.arange(300) % vocab_size, 4)

    def loss_fn(params, batch, key):  # a bigram model: a table of logits
        inputs, targets = batch
        return rj.losses.sequence_cross_entropy(params[inputs], targets)

    optimizer = optax.adam(0.1)
    params = jnp.zeros((vocab_size, vocab_size))
    step = rj.train.make_train_step(loss_fn, optimizer)
    result = rj.train.fit(
        step,
        params,
        optimizer.init(params),
        functools.partial(data.lm_batch, streams, window=8),
        num_steps=30,
        key=jax.random.key(0),
        log_every=10,
        progress=False,
    )
    assert result.history[-1]["loss"] < 0.5 * math.log(vocab_size)


# --- padding -----------------------------------------------------------------------------------


def test_pad_batch():
    ids, lengths = data.pad_batch([[1, 2, 3], np.array([4]), (), [5, 6]], pad_id=9)
    assert ids.dtype == np.int32 and lengths.dtype == np.int32
    assert ids.tolist() == [[1, 2, 3], [4, 9, 9], [9, 9, 9], [5, 6, 9]]
    assert lengths.tolist() == [3, 1, 0, 2]
    ids, lengths = data.pad_batch([[1], [2, 3]], max_len=4)
    assert ids.shape == (2, 4) and ids[1].tolist() == [2, 3, 0, 0]
    mask = np.asarray(rj.losses.length_mask(jnp.asarray(lengths), 4))
    np.testing.assert_array_equal(mask, [[True, False, False, False], [True, True, False, False]])
    with pytest.raises(ValueError, match=r"sequences\[1\]: length 3 exceeds max_len=2"):
        data.pad_batch([[1], [1, 2, 3]], max_len=2)
    with pytest.raises(TypeError, match=r"sequences\[0\]"):
        data.pad_batch([[0.5, 1.5]])
    with pytest.raises(ValueError, match="sequences"):
        data.pad_batch([])
    with pytest.raises(TypeError, match="sequences"):
        data.pad_batch(np.zeros((2, 3), np.int32))


# --- synthetic tasks ---------------------------------------------------------------------------


def test_adding_problem_layout_and_baseline():
    xs, targets = data.adding_problem(0, 200_000, 10)
    assert xs.shape == (200_000, 10, 2) and xs.dtype == np.float32 and targets.dtype == np.float32
    values, markers = xs[..., 0], xs[..., 1]
    assert np.all(markers[:, :5].sum(axis=1) == 1) and np.all(markers[:, 5:].sum(axis=1) == 1)
    np.testing.assert_allclose(targets, (values * markers).sum(axis=1), rtol=1e-6)
    assert values.min() >= 0 and values.max() < 1
    # predicting the mean, 1, gives Var(u1 + u2) = 1/6
    assert float(np.mean((targets - 1.0) ** 2)) == pytest.approx(1 / 6, abs=2e-3)
    again = data.adding_problem(0, 200_000, 10)
    np.testing.assert_array_equal(again[0], xs)
    assert not np.array_equal(data.adding_problem((0, 1), 4, 10)[0], data.adding_problem((0, 2), 4, 10)[0])
    odd, _ = data.adding_problem(np.random.default_rng(3), 1000, 7)  # first half [0, 3), second [3, 7)
    assert np.all(odd[:, :3, 1].sum(axis=1) == 1) and np.all(odd[:, 3:, 1].sum(axis=1) == 1)


def test_copy_task_layout_and_memoryless_baseline():
    num_symbols, copy_len, delay, batch = 8, 10, 20, 20_000
    inputs, targets = data.copy_task(0, batch, delay, num_symbols=num_symbols, copy_len=copy_len)
    t = delay + 2 * copy_len
    assert inputs.shape == targets.shape == (batch, t) and inputs.dtype == targets.dtype == np.int32
    symbols = inputs[:, :copy_len]
    assert symbols.min() == 1 and symbols.max() == num_symbols
    assert np.all(inputs[:, copy_len : copy_len + delay - 1] == 0)
    assert np.all(inputs[:, copy_len + delay - 1] == num_symbols + 1)
    assert np.all(inputs[:, copy_len + delay :] == 0)
    assert np.all(targets[:, : copy_len + delay] == 0)
    np.testing.assert_array_equal(targets[:, copy_len + delay :], symbols)
    # the best memoryless predictor: the marginal distribution of the target at each step
    formula = copy_len * math.log(num_symbols) / (delay + 2 * copy_len)
    cross_entropy = 0.0
    for step in range(t):
        freq = np.bincount(targets[:, step], minlength=num_symbols + 2) / batch
        cross_entropy -= np.sum(freq[freq > 0] * np.log(freq[freq > 0]))
    assert cross_entropy / t == pytest.approx(formula, abs=2e-3)
    # the idealised one (blank, then uniform over the symbols) has exactly the formula's loss
    logp = np.where(np.arange(t) < copy_len + delay, 0.0, -math.log(num_symbols))
    assert float(np.mean(np.broadcast_to(-logp, targets.shape))) == pytest.approx(formula, rel=1e-12)


def test_seeds_are_numpy_not_jax_keys():
    with pytest.raises(TypeError, match="seed: .*not JAX keys"):
        data.adding_problem(jax.random.key(0), 2, 4)
    with pytest.raises(TypeError, match="seed"):
        data.copy_task(-1, 2, 3)
    with pytest.raises(ValueError, match="delay"):
        data.copy_task(0, 2, 0)
    with pytest.raises(ValueError, match="num_steps"):
        data.adding_problem(0, 2, 1)


# --- time series -------------------------------------------------------------------------------


def test_time_series_windows():
    series = np.arange(20, dtype=np.float64).reshape(10, 2)
    inputs, targets = data.time_series_windows(series, input_len=4, horizon=2)
    assert inputs.shape == (5, 4, 2) and targets.shape == (5, 2, 2) and inputs.dtype == np.float64
    for i in range(5):
        np.testing.assert_array_equal(inputs[i], series[i : i + 4])
        np.testing.assert_array_equal(targets[i], series[i + 4 : i + 6])
    inputs, targets = data.time_series_windows(np.arange(5), 4)
    assert inputs.shape == (1, 4, 1) and inputs.dtype == np.float32 and targets[0, 0, 0] == 4
    with pytest.raises(ValueError, match="series: expected at least input_len"):
        data.time_series_windows(np.arange(5.0), 4, horizon=2)
    with pytest.raises(ValueError, match="series: expected shape"):
        data.time_series_windows(np.zeros((4, 2, 2)), 1)
    with pytest.raises(ValueError, match="input_len"):
        data.time_series_windows(np.arange(5.0), 0)


def test_sunspots():
    pytest.importorskip("statsmodels")
    series = data.sunspots()
    assert series.shape == (309,) and series.dtype == np.float32
    assert series[:3].tolist() == [5.0, 11.0, 16.0]
    inputs, targets = data.time_series_windows(series, 20)
    assert inputs.shape == (289, 20, 1)


def test_sunspots_without_statsmodels_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "statsmodels", None)
    monkeypatch.setitem(sys.modules, "statsmodels.datasets", None)
    with pytest.raises(ImportError, match="statsmodels"):
        data.sunspots()
