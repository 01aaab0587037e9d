"""Smoke test of experiments/speech_ctc.py: it runs end to end at ``--tiny`` in a subprocess.

As in tests/test_experiments.py, the script runs as a user runs it. It synthesizes audio with
espeak-ng and computes features with librosa (skipped when either is missing) and compiles a
training step and four decoders (about a minute on a loaded 2-core CPU), so it is marked slow.
Audio and features go to a temporary cache ($RNNJAX_CACHE), results to a temporary folder.
The corpus error rates are checked on hand-made transcripts without running anything.
"""

import math
import os
import shutil

import pytest

from experiment_helpers import load_experiment, tiny_run

NAME = "speech_ctc"

try:
    import librosa  # noqa: F401

    HAVE_LIBROSA = True
except ImportError:
    HAVE_LIBROSA = False


def test_corpus_error_rates():
    rates = load_experiment(NAME).error_rates(["one two", "six sx", "nine"], ["one two", "six six", "nine five"])
    assert math.isclose(rates["cer"], (0 + 1 + 5) / (7 + 7 + 9))  # "nine" -> "nine five": 5 insertions
    assert math.isclose(rates["wer"], (0 + 1 + 1) / (2 + 2 + 2))
    assert math.isclose(rates["sentence_accuracy"], 1 / 3)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (Debian package espeak-ng)")
@pytest.mark.skipif(not HAVE_LIBROSA, reason="librosa not installed (pip install librosa)")
def test_speech_ctc_tiny_run(tmp_path):
    env = dict(os.environ, RNNJAX_CACHE=str(tmp_path / "cache"))
    results = tiny_run(NAME, tmp_path, steps=None, env=env)
    decoders = ["greedy", "beam_1", "beam_4", "beam_16"]
    for split in ("test", "test_voices"):
        assert sorted(results["final"][split]) == sorted(decoders)
        for name in decoders:
            assert 0.0 <= results["final"][split][name]["sentence_accuracy"] <= 1.0
            assert results["final"][split][name]["cer"] >= 0.0
    assert [c["step"] for c in results["checkpoints"]] == [2, 4]
    assert len(results["curve"]["loss"]) == 4
    assert any((tmp_path / "cache" / "speech").glob("digits_*.npz"))  # features were cached
    for suffix in ("posteriorgram", "training"):
        assert (tmp_path / f"{NAME}_{suffix}.png").stat().st_size > 10_000
