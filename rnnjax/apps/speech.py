"""Spoken digit strings for CTC speech recognition: synthesis, log-mel features, labels, a model.

The pipeline (see docs/guide/speech.md):

1. :func:`synthesize_digits` speaks random digit strings ("three one four") with the espeak-ng
   synthesizer (the Debian package ``espeak-ng``, called as a subprocess) in varied voices,
   speeds and pitches, caching each WAV file under ``cache_dir``;
2. :func:`log_mel` turns audio into log-mel features ``[t, n_mels]`` with librosa (an optional
   dependency, ``pip install librosa``; imported when first needed);
3. :func:`digit_dataset` builds padded, normalised features ``[n, t, n_mels]`` with frame
   ``lengths [n]`` and CHARACTER-level labels ``[n, l]`` (the letters of the digit words and the
   space between words, :data:`ALPHABET`; id 0 is the CTC blank) for a train split and two
   test splits: held-out speeds and pitches, and held-out voices (:data:`HELD_OUT_VOICES`);
4. :class:`AcousticModel` stacks frames (stride ``s``), runs a stack of bidirectional GRUs and a
   dense layer to ``len(ALPHABET) + 1`` logits per frame, for :func:`rnnjax.losses.ctc_loss_from_lengths`,
   :func:`rnnjax.decode.ctc_greedy` and :func:`rnnjax.decode.ctc_prefix_beam_search`.

Character labels give both a character error rate (edit distance over letters and spaces) and a
word error rate (over the words of the decoded text).
"""

import dataclasses
import functools
import hashlib
import io
import json
import os
import shutil
import subprocess
import wave
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._src import checks, masks
from rnnjax.apps.digits import DIGIT_WORDS
from rnnjax.cells import GRUCell
from rnnjax.heads import Dense
from rnnjax.layers import Bidirectional, Stack
from rnnjax.typing import Array, Params, PRNGKey

__all__ = [
    "ALPHABET",
    "BLANK",
    "DIGIT_WORDS",
    "HELD_OUT_VOICES",
    "SAMPLE_RATE",
    "VOICES",
    "AcousticModel",
    "AcousticParams",
    "SpeechData",
    "Utterance",
    "batch_logits",
    "decode_labels",
    "default_cache_dir",
    "digit_dataset",
    "encode_text",
    "log_mel",
    "synthesize_digits",
]

ALPHABET = " " + "".join(sorted(set("".join(DIGIT_WORDS))))  # " efghinorstuvwxz": label ids 1..16
BLANK = 0  # the CTC blank's label id
VOICES = ("en", "en-us", "en-gb-scotland", "en+f3", "en+m3", "en-us+f2", "en+m7", "en-gb-x-rp+f4")  # training voices
HELD_OUT_VOICES = ("en-029", "en-gb-x-gbclan+f2", "en-us-nyc+m5")  # never in training: the "test_voices" split
SAMPLE_RATE = 22050  # espeak-ng's output rate
_CHAR_IDS = {c: i + 1 for i, c in enumerate(ALPHABET)}


def default_cache_dir() -> Path:
    """Where synthesized audio and features are cached by default.

    Returns:
      ``$RNNJAX_CACHE/speech`` when ``RNNJAX_CACHE`` is set, else ``$XDG_CACHE_HOME/rnnjax/speech``,
      else ``~/.cache/rnnjax/speech`` (outside the repository).

    Example:
        >>> import rnnjax.apps.speech as sp
        >>> sp.default_cache_dir().name
        'speech'
    """
    if os.environ.get("RNNJAX_CACHE"):
        return Path(os.environ["RNNJAX_CACHE"]) / "speech"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rnnjax" / "speech"


# --------------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------------


def encode_text(text: str) -> np.ndarray:
    """Character label ids of a transcript: ``ALPHABET[i]`` has id ``i + 1`` (0 is the blank).

    Args:
      text: lower-case digit words separated by single spaces, e.g. ``"three one"``.

    Returns:
      int32 ids ``[l]``, ``l = len(text)``.

    Example:
        >>> import rnnjax.apps.speech as sp
        >>> ids = sp.encode_text("one two")
        >>> ids.tolist(), sp.decode_labels(ids)
        ([8, 7, 2, 1, 11, 14, 8], 'one two')
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    bad = sorted(set(text) - set(ALPHABET))
    if bad:
        raise ValueError(f"text: expected only the characters {ALPHABET!r} (digit words and spaces), got {bad}")
    return np.array([_CHAR_IDS[c] for c in text], np.int32)


def decode_labels(ids, length: int | None = None) -> str:
    """The text of label ids (inverse of :func:`encode_text`); the blank and ids < 0 (padding) are skipped.

    Args:
      ids: label ids ``[l]`` (list or 1-D array).
      length: use only the first ``length`` ids (None: all).

    Returns:
      The text.

    Example:
        >>> import rnnjax.apps.speech as sp
        >>> sp.decode_labels([11, 9, 2, 2, -1, -1], length=4)
        'tree'
    """
    ids = np.asarray(ids).reshape(-1).tolist()
    if length is not None:
        ids = ids[: int(length)]
    if any(i > len(ALPHABET) for i in ids):
        raise ValueError(f"ids: expected label ids in [0, {len(ALPHABET)}], got {max(ids)}")
    return "".join(ALPHABET[i - 1] for i in ids if i > BLANK)


# --------------------------------------------------------------------------------------------
# synthesis
# --------------------------------------------------------------------------------------------


class Utterance(NamedTuple):
    """One synthesized utterance."""

    text: str  # e.g. "three one four"
    voice: str  # espeak-ng voice, e.g. "en+f3"
    speed: int  # words per minute
    pitch: int  # 0..99
    audio: np.ndarray  # [samples] float32 in [-1, 1]
    sample_rate: int


def _espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise RuntimeError(
            "espeak-ng: the speech synthesizer was not found on PATH; install the Debian package "
            "espeak-ng (apt-get install espeak-ng) to synthesize spoken digits"
        )
    return path


def _read_wav(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as f:
        if f.getsampwidth() != 2:
            raise ValueError(f"espeak-ng: expected 16-bit WAV output, got {8 * f.getsampwidth()}-bit")
        audio = np.frombuffer(f.readframes(f.getnframes()), np.int16).astype(np.float32) / 32768.0
        channels, rate = f.getnchannels(), f.getframerate()
    return audio.reshape(-1, channels).mean(axis=1), rate


def _speak(text: str, voice: str, speed: int, pitch: int, cache_dir: Path | None) -> tuple[np.ndarray, int]:
    """The WAV of one utterance, from the cache or from espeak-ng."""
    path = None
    if cache_dir is not None:
        key = hashlib.sha1(f"{text}|{voice}|{speed}|{pitch}".encode()).hexdigest()[:16]
        path = Path(cache_dir) / "wav" / f"{key}.wav"
        if path.exists():
            return _read_wav(path.read_bytes())
    exe = _espeak()
    proc = subprocess.run(
        [exe, "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "--stdout", text],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {proc.stderr.decode(errors='replace').strip()}")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(proc.stdout)
        tmp.replace(path)  # atomic: a concurrent reader sees all or nothing
    return _read_wav(proc.stdout)


def _choose(rng, values, name):
    values = list(values)
    if not values:
        raise ValueError(f"{name}: expected at least one value, got none")
    return values[rng.integers(len(values))]


def _random_texts(rng, num_utterances, min_digits, max_digits):
    texts = []
    for _ in range(num_utterances):
        n = int(rng.integers(min_digits, max_digits + 1))
        texts.append(" ".join(DIGIT_WORDS[d] for d in rng.integers(0, 10, size=n)))
    return texts


def synthesize_digits(
    seed: int,
    num_utterances: int,
    *,
    min_digits: int = 2,
    max_digits: int = 4,
    voices=VOICES,
    speeds=(140, 160, 180),
    pitches=(35, 50, 65),
    cache_dir: str | Path | None = None,
) -> list[Utterance]:
    """Random digit strings spoken by espeak-ng in random voices, speeds and pitches.

    Deterministic in ``seed``: the same arguments give the same texts, settings and audio. Each
    utterance draws ``n`` digits uniformly in ``[min_digits, max_digits]``, then a voice, speed
    (words per minute, espeak-ng's ``-s``) and pitch (0-99, ``-p``) uniformly from the given values.

    Args:
      seed: seed of the texts and settings.
      num_utterances: how many utterances ``n``.
      min_digits: fewest digits per utterance.
      max_digits: most digits per utterance.
      voices: espeak-ng voice names (``espeak-ng --voices=en``; ``+f3`` etc. pick a variant).
      speeds: speaking rates in words per minute.
      pitches: pitches in 0..99.
      cache_dir: where WAV files are cached (None: no cache).

    Returns:
      ``n`` :class:`Utterance` s (audio float32 at espeak-ng's 22050 Hz).

    Raises:
      RuntimeError: when espeak-ng is not installed (it names the Debian package ``espeak-ng``).

    Example:
        >>> import shutil, rnnjax.apps.speech as sp
        >>> if shutil.which("espeak-ng"):
        ...     (u,) = sp.synthesize_digits(0, 1, min_digits=1, max_digits=1, voices=["en"])
        ...     assert u.text in sp.DIGIT_WORDS and u.audio.ndim == 1 and u.sample_rate == 22050
    """
    checks.positive_int(num_utterances, "num_utterances")
    checks.positive_int(min_digits, "min_digits")
    checks.positive_int(max_digits, "max_digits")
    if max_digits < min_digits:
        raise ValueError(f"max_digits: expected >= min_digits ({min_digits}), got {max_digits}")
    for name, values, lo, hi in (("speeds", speeds, 80, 450), ("pitches", pitches, 0, 99)):
        if not all(lo <= int(v) <= hi for v in values):
            raise ValueError(f"{name}: expected values in [{lo}, {hi}], got {list(values)}")
    _espeak()  # fail early and clearly
    rng = np.random.default_rng(seed)
    texts = _random_texts(rng, num_utterances, min_digits, max_digits)
    out = []
    for text in texts:
        voice = str(_choose(rng, voices, "voices"))
        speed, pitch = int(_choose(rng, speeds, "speeds")), int(_choose(rng, pitches, "pitches"))
        audio, rate = _speak(text, voice, speed, pitch, None if cache_dir is None else Path(cache_dir))
        out.append(Utterance(text, voice, speed, pitch, audio, rate))
    return out


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------


def _librosa():
    try:
        import librosa
    except ImportError:
        raise ImportError(
            "librosa: log-mel features need the librosa package (pip install librosa, or the rnnjax[speech] extra)"
        ) from None
    return librosa


def log_mel(
    audio,
    sample_rate: int,
    *,
    n_mels: int = 40,
    frame_ms: float = 25.0,
    hop_ms: float = 10.0,
    fmin: float = 20.0,
    fmax: float | None = 7600.0,
) -> np.ndarray:
    """Log-mel spectrogram of one waveform with librosa: ``log(mel power + 1e-6)``.

    Args:
      audio: waveform ``[samples]`` (float).
      sample_rate: samples per second.
      n_mels: mel bands ``f``.
      frame_ms: analysis window length in milliseconds (the FFT size is the next power of two).
      hop_ms: frame shift in milliseconds.
      fmin: lowest frequency of the filterbank (Hz).
      fmax: highest frequency (Hz; None: Nyquist).

    Returns:
      float32 features ``[t, f]``, ``t = 1 + samples // hop``.

    Example:
        >>> import numpy as np, rnnjax.apps.speech as sp
        >>> tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
        >>> sp.log_mel(tone, 16000, n_mels=20).shape   # one second, 10 ms hop
        (101, 20)
    """
    librosa = _librosa()
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio: expected a 1-D waveform [samples], got shape {audio.shape}")
    checks.positive_int(sample_rate, "sample_rate")
    checks.positive_int(n_mels, "n_mels")
    win = int(round(sample_rate * frame_ms / 1000))
    hop = int(round(sample_rate * hop_ms / 1000))
    n_fft = 1 << (win - 1).bit_length()
    if fmax is not None:
        fmax = min(fmax, sample_rate / 2)
    mel = librosa.feature.melspectrogram(
        y=audio, sr=sample_rate, n_fft=n_fft, hop_length=hop, win_length=win, n_mels=n_mels, fmin=fmin, fmax=fmax
    )
    return np.log(mel.T + 1e-6).astype(np.float32)


# --------------------------------------------------------------------------------------------
# data sets
# --------------------------------------------------------------------------------------------


class SpeechData(NamedTuple):
    """One split: padded features, labels and what was spoken."""

    features: np.ndarray  # [n, t, f] float32, normalised with the training split's mean/std; 0 after lengths
    lengths: np.ndarray  # [n]       int32 valid frames
    labels: np.ndarray  # [n, l]     int32 character ids (1..len(ALPHABET)), -1 after label_lengths
    label_lengths: np.ndarray  # [n] int32
    texts: list  # n transcripts
    voices: list  # n voice names
    speeds: np.ndarray  # [n] int32
    pitches: np.ndarray  # [n] int32


def _pad(arrays, fill, dtype, length=None):
    longest = length or max(len(a) for a in arrays)
    out = np.full((len(arrays), longest, *arrays[0].shape[1:]), fill, dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def _featurize(utterances, n_mels):
    return [log_mel(u.audio, u.sample_rate, n_mels=n_mels) for u in utterances]


def digit_dataset(
    seed: int,
    num_train: int,
    num_test: int,
    *,
    min_digits: int = 2,
    max_digits: int = 4,
    voices=VOICES,
    speeds=(130, 155, 180, 205),
    pitches=(30, 45, 60, 75),
    test_speeds=(142, 192),
    test_pitches=(38, 68),
    held_out_voices=HELD_OUT_VOICES,
    n_mels: int = 40,
    cache_dir: str | Path | None = "default",
) -> dict:
    """Train and test splits of spoken digit strings: log-mel features and character labels.

    - ``"train"``: ``num_train`` utterances by ``voices`` at ``speeds`` and ``pitches`` (seed ``seed``);
    - ``"test"``: ``num_test`` utterances by the same voices at HELD-OUT ``test_speeds`` and
      ``test_pitches`` (by default between the training values; seed ``seed + 1``);
    - ``"test_voices"`` (when ``held_out_voices`` is not empty): ``num_test`` utterances by
      voices never heard in training, at the training speeds and pitches (seed ``seed + 2``).

    Each split has its own random digit strings, so test scores measure generalisation to
    unseen speaking rates and pitches, and to unseen voices. Features are normalised per mel
    band with the train split's mean and standard deviation (over valid frames) and are zero
    after each length; every split is padded to the same ``t`` (the longest utterance of all)
    and ``l`` (the longest possible transcript), so one compiled function serves them all.
    Features are cached as ``.npz`` under ``cache_dir`` (keyed by every argument), WAV files
    under ``cache_dir/wav``.

    Args:
      seed: seed of the train split (the test split uses ``seed + 1``).
      num_train: train utterances.
      num_test: test utterances.
      min_digits: fewest digits per utterance.
      max_digits: most digits per utterance.
      voices: espeak-ng voices of the train split.
      speeds: train speeds (words per minute).
      pitches: train pitches (0..99).
      test_speeds: speeds of the ``"test"`` split (None: ``speeds``).
      test_pitches: pitches of the ``"test"`` split (None: ``pitches``).
      held_out_voices: voices of the ``"test_voices"`` split (empty: no such split).
      n_mels: mel bands ``f``.
      cache_dir: the cache folder; ``"default"`` is :func:`default_cache_dir`, None caches nothing.

    Returns:
      ``{"train": SpeechData, "test": SpeechData, "test_voices": SpeechData, "config": dict}``.

    Example:
        >>> import shutil, rnnjax.apps.speech as sp
        >>> if shutil.which("espeak-ng"):
        ...     data = sp.digit_dataset(0, 2, 1, n_mels=16, cache_dir=None)
        ...     assert data["train"].features.shape[::2] == (2, 16) and data["test"].labels.shape[0] == 1
    """
    if cache_dir == "default":
        cache_dir = default_cache_dir()
    test_speeds = speeds if test_speeds is None else test_speeds
    test_pitches = pitches if test_pitches is None else test_pitches
    config = {
        "seed": seed,
        "num_train": num_train,
        "num_test": num_test,
        "min_digits": min_digits,
        "max_digits": max_digits,
        "voices": list(voices),
        "speeds": [int(s) for s in speeds],
        "pitches": [int(p) for p in pitches],
        "held_out_voices": list(held_out_voices),
        "test_speeds": [int(s) for s in test_speeds],
        "test_pitches": [int(p) for p in test_pitches],
        "n_mels": n_mels,
        "labels": "characters",
        "alphabet": ALPHABET,
        "version": 2,
    }
    path = None
    if cache_dir is not None:
        key = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
        path = Path(cache_dir) / f"digits_{key}.npz"
        if path.exists():
            with np.load(path, allow_pickle=False) as f:
                return _unpack(dict(f), config)
    synthesize = functools.partial(
        synthesize_digits, min_digits=min_digits, max_digits=max_digits, cache_dir=cache_dir
    )  # the splits differ in seed, size, voices, speeds and pitches only
    splits = {
        "train": synthesize(seed, num_train, voices=voices, speeds=speeds, pitches=pitches),
        "test": synthesize(seed + 1, num_test, voices=voices, speeds=test_speeds, pitches=test_pitches),
    }
    if len(held_out_voices):
        splits["test_voices"] = synthesize(seed + 2, num_test, voices=held_out_voices, speeds=speeds, pitches=pitches)
    arrays = {}
    feats = {name: _featurize(utts, n_mels) for name, utts in splits.items()}
    train_frames = np.concatenate(feats["train"])
    mean, std = train_frames.mean(axis=0), train_frames.std(axis=0) + 1e-5
    num_frames = max(len(f) for fs in feats.values() for f in fs)  # one shape for every split: one compile
    num_labels = max_digits * (max(len(w) for w in DIGIT_WORDS) + 1) - 1
    for name, utts in splits.items():
        normed = [(f - mean) / std for f in feats[name]]
        arrays[f"{name}_features"] = _pad(normed, 0.0, np.float32, num_frames)
        arrays[f"{name}_lengths"] = np.array([len(f) for f in normed], np.int32)
        ids = [encode_text(u.text) for u in utts]
        arrays[f"{name}_labels"] = _pad(ids, -1, np.int32, num_labels)
        arrays[f"{name}_label_lengths"] = np.array([len(i) for i in ids], np.int32)
        arrays[f"{name}_texts"] = np.array([u.text for u in utts])
        arrays[f"{name}_voices"] = np.array([u.voice for u in utts])
        arrays[f"{name}_speeds"] = np.array([u.speed for u in utts], np.int32)
        arrays[f"{name}_pitches"] = np.array([u.pitch for u in utts], np.int32)
    arrays["mean"], arrays["std"] = mean, std
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)
    return _unpack(arrays, config)


def _unpack(arrays, config):
    out = {"config": dict(config, feature_mean=arrays["mean"].tolist(), feature_std=arrays["std"].tolist())}
    for name in ("train", "test", "test_voices"):
        if f"{name}_features" not in arrays:
            continue
        out[name] = SpeechData(
            features=arrays[f"{name}_features"],
            lengths=arrays[f"{name}_lengths"],
            labels=arrays[f"{name}_labels"],
            label_lengths=arrays[f"{name}_label_lengths"],
            texts=[str(t) for t in arrays[f"{name}_texts"]],
            voices=[str(v) for v in arrays[f"{name}_voices"]],
            speeds=arrays[f"{name}_speeds"],
            pitches=arrays[f"{name}_pitches"],
        )
    return out


# --------------------------------------------------------------------------------------------
# the acoustic model
# --------------------------------------------------------------------------------------------


class AcousticParams(NamedTuple):
    """:class:`AcousticModel`'s params."""

    rnn: Any  # the Stack's params
    head: Any  # DenseParams


@dataclasses.dataclass(frozen=True)
class AcousticModel:
    """A CTC acoustic model: frame stacking, bidirectional GRU layers, a dense layer to label logits.

    Every ``stride`` consecutive frames are concatenated into one (frame stacking, as in
    low-frame-rate acoustic models), so ``t`` frames become ``ceil(t / stride)``; then
    ``num_layers`` bidirectional GRUs (``hidden_size`` per direction, concatenated) and a
    :class:`rnnjax.Dense` to ``vocab_size`` logits (label ids and the blank, id 0). Padding is
    respected: the outputs before ``output_length(length)`` do not depend on the padded frames
    (they are zeroed before stacking, and the backward GRU starts at the last valid frame).

    Args:
      hidden_size: GRU units per direction.
      num_layers: bidirectional layers.
      vocab_size: ``v``, labels plus the blank (``len(ALPHABET) + 1`` for characters).
      stride: frames stacked into one.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax.apps.speech as sp
        >>> model = sp.AcousticModel(hidden_size=8, num_layers=1, stride=2)
        >>> params = model.init(jax.random.key(0), 40)
        >>> logits, length = model.apply(params, jnp.ones((11, 40)), length=9)
        >>> logits.shape, int(length)
        ((6, 17), 5)
    """

    hidden_size: int = 96
    num_layers: int = 2
    vocab_size: int = len(ALPHABET) + 1
    stride: int = 2

    def __post_init__(self):
        for name in ("hidden_size", "num_layers", "vocab_size", "stride"):
            checks.positive_int(getattr(self, name), name)

    @property
    def _rnn(self) -> Stack:
        return Stack(
            [Bidirectional(GRUCell(self.hidden_size), GRUCell(self.hidden_size)) for _ in range(self.num_layers)]
        )

    def init(self, key: PRNGKey, input_size: int) -> AcousticParams:
        """``AcousticParams(rnn, head)`` for features of size ``input_size`` (before stacking)."""
        checks.positive_int(input_size, "input_size")
        k_rnn, k_head = jax.random.split(key)
        rnn = self._rnn
        return AcousticParams(
            rnn.init(k_rnn, input_size * self.stride), Dense(self.vocab_size).init(k_head, rnn.output_size)
        )

    def output_length(self, length):
        """Output frames of ``length`` input frames: ``ceil(length / stride)``."""
        return (length + self.stride - 1) // self.stride

    def apply(self, params: AcousticParams, xs: Array, *, length=None) -> tuple[Array, Array]:
        """Logits ``[ceil(t / stride), v]`` and their valid length, for ONE utterance ``xs: [t, f]``.

        Args:
          params: from :meth:`init`.
          xs: features ``[t, f]``.
          length: valid frames (int scalar), or None for all ``t``.

        Returns:
          ``(logits [t', v], length')``; batch with ``jax.vmap``.
        """
        xs = checks.floating(xs, "xs")
        if xs.ndim != 2:
            raise ValueError(f"xs: expected one utterance's features [t, f] (batch with jax.vmap), got {xs.shape}")
        num_steps, size = xs.shape
        length = checks.length(length, num_steps)
        length = jnp.asarray(num_steps, jnp.int32) if length is None else length
        xs = masks.zero_past(xs, length)  # zero the padding
        padded = -(-num_steps // self.stride) * self.stride
        xs = jnp.pad(xs, ((0, padded - num_steps), (0, 0))).reshape(padded // self.stride, self.stride * size)
        out_length = self.output_length(length)
        hs = self._rnn.apply(params.rnn, xs, length=out_length)
        return Dense(self.vocab_size).apply(params.head, hs), out_length


def batch_logits(model: AcousticModel, params: Params, features: Array, lengths: Array) -> tuple[Array, Array]:
    """:meth:`AcousticModel.apply` over a batch (``jax.vmap``).

    Args:
      model: the acoustic model.
      params: its params.
      features: padded features ``[b, t, f]``.
      lengths: valid frames ``[b]``.

    Returns:
      ``(logits [b, t', v], lengths [b])`` with ``t' = ceil(t / stride)``, ready for
      :func:`rnnjax.losses.ctc_loss_from_lengths`.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax.apps.speech as sp
        >>> model = sp.AcousticModel(hidden_size=4, num_layers=1, stride=3)
        >>> params = model.init(jax.random.key(0), 8)
        >>> logits, lengths = sp.batch_logits(model, params, jnp.ones((2, 10, 8)), jnp.array([10, 4]))
        >>> logits.shape, lengths.tolist()
        ((2, 4, 17), [4, 2])
    """
    return jax.vmap(lambda xs, n: model.apply(params, xs, length=n))(features, lengths)
