"""Smoke test of experiments/captioning.py: it runs end to end at ``--tiny`` in a subprocess.

As in tests/test_experiments.py, the script runs as a user runs it. A tiny run still compiles the
CNN + attention decoder, its train step and a decoder per beam width (about a minute on a 2-core
CPU), so it is marked slow; ``--help`` is quick.
"""

import json
import math

import pytest

from experiment_helpers import numbers, run_experiment

NAME = "captioning"


def _run(*flags, timeout=600):
    return run_experiment(NAME, *flags, timeout=timeout)


def test_help():
    result = _run("--help", timeout=120)
    assert result.returncode == 0, result.stderr
    for flag in ("--full", "--tiny", "--steps", "--seed", "--out", "--no-docs"):
        assert flag in result.stdout


@pytest.mark.slow
def test_tiny_run_writes_results(tmp_path):
    result = _run("--tiny", "--steps", "2", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / f"{NAME}.json").read_text())
    assert results["name"] == NAME and results["size"] == "tiny"
    assert results["config"]["steps"] == 2
    assert all(math.isfinite(x) for x in numbers(results))
    for suffix in ("attention", "beams"):
        assert (tmp_path / f"{NAME}_{suffix}.png").exists()

    beams = results["config"]["beams"]
    assert set(results["test"]) == {"greedy", *(f"beam_{k}" for k in beams)}
    for scores in results["test"].values():
        assert 0 <= scores["exact"] <= 1 and 0 <= scores["word"] <= 1
    align = results["alignment"]
    assert 0 <= align["monotone_fraction"] <= 1 and 0 <= align["on_digit_fraction"] <= 1
    assert len(align["mean_attended_pixel_column_by_position"]) == results["config"]["max_digits"]
    assert results["curve"]["step"][-1] == 2
    for example in results["examples"]:
        assert set(example["reference"].split()) <= set(
            ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
        )
