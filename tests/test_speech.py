"""Tests of rnnjax.apps.speech: labels, synthesis (espeak-ng), log-mel features (librosa), data sets, the CTC model.

Synthesis tests skip when the espeak-ng binary is missing, feature tests when librosa is missing;
the model and training tests need neither (synthetic features).
"""

import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnjax as rj
import rnnjax.apps.speech as sp

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng not installed (Debian package espeak-ng)"
)
try:
    import librosa  # noqa: F401

    HAVE_LIBROSA = True
except ImportError:
    HAVE_LIBROSA = False
needs_librosa = pytest.mark.skipif(not HAVE_LIBROSA, reason="librosa not installed (pip install librosa)")


# --- labels ----------------------------------------------------------------------------------------


def test_alphabet_covers_the_digit_words():
    assert sp.ALPHABET == " efghinorstuvwxz"
    assert set("".join(sp.DIGIT_WORDS)) | {" "} == set(sp.ALPHABET)


def test_label_encoding_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        text = " ".join(sp.DIGIT_WORDS[d] for d in rng.integers(0, 10, size=rng.integers(1, 6)))
        ids = sp.encode_text(text)
        assert ids.dtype == np.int32 and len(ids) == len(text)
        assert ids.min() >= 1 and ids.max() <= len(sp.ALPHABET)  # never the blank
        assert sp.decode_labels(ids) == text
        padded = np.concatenate([ids, np.full(5, -1, np.int32)])
        assert sp.decode_labels(padded) == text
        assert sp.decode_labels(padded, length=len(ids)) == text


def test_label_encoding_errors():
    with pytest.raises(ValueError, match="text: expected only the characters"):
        sp.encode_text("one 2")
    with pytest.raises(TypeError, match="text: expected a str"):
        sp.encode_text(3)
    with pytest.raises(ValueError, match="ids: expected label ids"):
        sp.decode_labels([99])


# --- synthesis -------------------------------------------------------------------------------------


def test_missing_espeak_names_the_package(monkeypatch):
    monkeypatch.setattr(sp.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"espeak-ng.*Debian package espeak-ng.*apt-get install espeak-ng"):
        sp.synthesize_digits(0, 2)


def test_missing_librosa_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "librosa", None)  # import librosa now raises ImportError
    with pytest.raises(ImportError, match=r"librosa.*pip install librosa"):
        sp.log_mel(np.zeros(1000, np.float32), 16000)


def test_synthesis_argument_errors():
    with pytest.raises(ValueError, match="max_digits: expected >= min_digits"):
        sp.synthesize_digits(0, 1, min_digits=3, max_digits=2)
    with pytest.raises(ValueError, match="pitches: expected values in"):
        sp.synthesize_digits(0, 1, pitches=(120,))


@needs_espeak
def test_synthesis_is_deterministic(tmp_path):
    kwargs = dict(min_digits=1, max_digits=3, voices=("en", "en+f3"), speeds=(150, 190), pitches=(30, 70))
    first = sp.synthesize_digits(7, 3, cache_dir=None, **kwargs)
    second = sp.synthesize_digits(7, 3, cache_dir=None, **kwargs)
    cached = sp.synthesize_digits(7, 3, cache_dir=tmp_path, **kwargs)
    again = sp.synthesize_digits(7, 3, cache_dir=tmp_path, **kwargs)  # read back from the cache
    assert len(list((tmp_path / "wav").glob("*.wav"))) == 3
    for a, b, c, d in zip(first, second, cached, again, strict=True):
        assert a.text == b.text == c.text == d.text
        assert (a.voice, a.speed, a.pitch) == (b.voice, b.speed, b.pitch) == (d.voice, d.speed, d.pitch)
        assert a.voice in kwargs["voices"] and a.speed in kwargs["speeds"] and a.pitch in kwargs["pitches"]
        assert 1 <= len(a.text.split()) <= 3 and all(w in sp.DIGIT_WORDS for w in a.text.split())
        assert a.sample_rate == sp.SAMPLE_RATE and a.audio.dtype == np.float32
        np.testing.assert_array_equal(a.audio, b.audio)
        np.testing.assert_array_equal(a.audio, d.audio)
        assert np.abs(a.audio).max() > 0.01  # not silence
    other = sp.synthesize_digits(8, 3, cache_dir=None, **kwargs)
    assert [u.text for u in other] != [u.text for u in first]


@needs_espeak
def test_unknown_voice_is_reported():
    with pytest.raises(RuntimeError, match="espeak-ng failed for voice 'zz-nonexistent'"):
        sp.synthesize_digits(0, 1, voices=("zz-nonexistent",))


@needs_espeak
def test_slower_speech_is_longer():
    (fast,) = sp.synthesize_digits(0, 1, voices=("en",), speeds=(250,), pitches=(50,))
    (slow,) = sp.synthesize_digits(0, 1, voices=("en",), speeds=(100,), pitches=(50,))
    assert fast.text == slow.text
    assert len(slow.audio) > 1.5 * len(fast.audio)


# --- features --------------------------------------------------------------------------------------


@needs_librosa
def test_log_mel_shape_and_pitch():
    rate = 16000
    t = np.arange(rate // 2) / rate
    low = sp.log_mel(np.sin(2 * np.pi * 300 * t).astype(np.float32), rate, n_mels=24)
    high = sp.log_mel(np.sin(2 * np.pi * 3000 * t).astype(np.float32), rate, n_mels=24)
    assert low.shape == (1 + len(t) // 160, 24) and low.dtype == np.float32
    assert np.all(np.isfinite(low))
    assert np.median(high.argmax(axis=1)) > np.median(low.argmax(axis=1)) + 5  # higher tone, higher band
    with pytest.raises(ValueError, match="audio: expected a 1-D waveform"):
        sp.log_mel(np.zeros((2, 100), np.float32), rate)


@needs_espeak
@needs_librosa
def test_digit_dataset_shapes_and_cache(tmp_path, monkeypatch):
    kwargs = dict(min_digits=1, max_digits=2, voices=("en", "en+f3"), held_out_voices=("en-us",), n_mels=16)
    data = sp.digit_dataset(0, 4, 3, cache_dir=tmp_path, **kwargs)
    num_frames = data["train"].features.shape[1]
    for name, n in (("train", 4), ("test", 3), ("test_voices", 3)):
        split = data[name]
        assert split.features.shape == (n, num_frames, 16)  # every split padded alike
        assert split.labels.shape == (n, 2 * 6 - 1)  # the longest transcript: "seven seven"
        assert split.lengths.max() <= num_frames and split.lengths.min() > 10
        for i in range(n):
            assert np.all(split.features[i, split.lengths[i] :] == 0.0)
            assert sp.decode_labels(split.labels[i], split.label_lengths[i]) == split.texts[i]
            assert np.all(split.labels[i, split.label_lengths[i] :] == -1)
    train_frames = np.concatenate([f[:n] for f, n in zip(data["train"].features, data["train"].lengths, strict=True)])
    np.testing.assert_allclose(train_frames.mean(axis=0), 0.0, atol=1e-4)  # normalised with train statistics
    np.testing.assert_allclose(train_frames.std(axis=0), 1.0, atol=1e-3)
    assert set(data["test"].speeds.tolist()) <= {142, 192} and set(data["test"].pitches.tolist()) <= {38, 68}
    assert set(data["test"].voices) <= {"en", "en+f3"} and set(data["test_voices"].voices) == {"en-us"}
    assert set(data["train"].speeds.tolist()) <= {130, 155, 180, 205}

    monkeypatch.setattr(sp, "_speak", lambda *a: pytest.fail("the cached data set should not synthesize"))
    again = sp.digit_dataset(0, 4, 3, cache_dir=tmp_path, **kwargs)
    for name in ("train", "test", "test_voices"):
        np.testing.assert_array_equal(again[name].features, data[name].features)
        assert again[name].texts == data[name].texts


# --- the acoustic model and CTC training (synthetic features) --------------------------------------


def test_model_output_lengths_respect_padding():
    model = sp.AcousticModel(hidden_size=6, num_layers=1, vocab_size=5, stride=2)
    params = model.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (9, 3))
    padded = jnp.stack([jnp.concatenate([xs, jnp.zeros((5, 3))]), jnp.concatenate([xs, 100.0 * jnp.ones((5, 3))])])
    logits, lengths = jax.jit(lambda xs, n: sp.batch_logits(model, params, xs, n))(padded, jnp.array([9, 9]))
    alone, n_alone = jax.jit(lambda xs: model.apply(params, xs))(xs)
    assert logits.shape == (2, 7, 5) and alone.shape == (5, 5)
    assert lengths.tolist() == [5, 5] and int(n_alone) == 5
    np.testing.assert_allclose(logits[0, :5], alone, atol=1e-5)
    np.testing.assert_allclose(logits[1, :5], alone, atol=1e-5)  # garbage padding changes nothing
    assert model.output_length(jnp.array([0, 1, 2, 3])).tolist() == [0, 1, 1, 2]
    with pytest.raises(ValueError, match="xs: expected one utterance"):
        model.apply(params, jnp.ones((2, 9, 3)))
    with pytest.raises(ValueError, match="length: expected 0 <= length <= 9"):
        model.apply(params, xs, length=10)
    with pytest.raises(ValueError, match="stride"):
        sp.AcousticModel(stride=0)


def _toy_batch(rng, batch, num_frames, vocab, feature_size):
    """Each label is a fixed random feature vector held for 2 frames, then one silent frame."""
    codes = rng.normal(size=(vocab, feature_size)).astype(np.float32)
    features = np.zeros((batch, num_frames, feature_size), np.float32)
    labels = np.full((batch, num_frames // 3), -1, np.int32)
    lengths, label_lengths = [], []
    for i in range(batch):
        n = rng.integers(2, num_frames // 3 + 1)
        seq = rng.integers(1, vocab, size=n)
        labels[i, :n] = seq
        for j, c in enumerate(seq):
            features[i, 3 * j : 3 * j + 2] = codes[c]
        lengths.append(3 * n)
        label_lengths.append(n)
    return features, np.array(lengths, np.int32), labels, np.array(label_lengths, np.int32)


def _train_toy(num_steps, hidden_size):
    vocab, feature_size = 5, 6
    batch = _toy_batch(np.random.default_rng(0), 8, 18, vocab, feature_size)
    model = sp.AcousticModel(hidden_size=hidden_size, num_layers=1, vocab_size=vocab, stride=1)
    params = model.init(jax.random.key(0), feature_size)

    def loss(params, batch, key):
        features, lengths, labels, label_lengths = batch
        logits, out_lengths = sp.batch_logits(model, params, features, lengths)
        losses = rj.losses.ctc_loss_from_lengths(logits, out_lengths, labels, label_lengths)
        return jnp.sum(losses) / jnp.sum(label_lengths).astype(jnp.float32)

    optimizer = optax.adam(3e-2)
    step = rj.train.make_train_step(loss, optimizer, clip_norm=1.0)
    opt_state = optimizer.init(params)
    losses = []
    for _ in range(num_steps):
        params, opt_state, metrics = step(params, opt_state, batch, None)
        losses.append(float(metrics["loss"]))  # the loss before this step's update
    return model, params, batch, losses


def test_tiny_ctc_training_lowers_the_loss():
    _, _, _, losses = _train_toy(12, 8)
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.6 * losses[0]


@pytest.mark.slow
def test_trained_toy_model_transcribes_its_batch():
    model, params, batch, losses = _train_toy(40, 16)
    assert losses[-1] < 0.3 * losses[0]
    features, lengths, labels, label_lengths = batch
    logits, out_lengths = sp.batch_logits(model, params, jnp.asarray(features), jnp.asarray(lengths))
    decoded, counts = jax.vmap(rj.decode.ctc_greedy)(logits, out_lengths)
    errors = sum(
        rj.metrics.edit_distance(np.asarray(d)[:c], y[:n])
        for d, c, y, n in zip(decoded, counts, labels, label_lengths, strict=True)
    )
    assert errors / label_lengths.sum() < 0.2


@pytest.mark.slow
@needs_espeak
@needs_librosa
def test_speech_guide_code_runs(tmp_path, monkeypatch):
    from docs_helpers import run_page

    monkeypatch.setenv("RNNJAX_CACHE", str(tmp_path))  # synthesize into a temporary cache
    page = run_page("docs/guide/speech.md")
    assert page["cer"](page["greedy"], page["test"].texts) < 0.1
    assert page["cer"](page["beam"], page["test"].texts) < 0.1
