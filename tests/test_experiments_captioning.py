"""Smoke test of experiments/captioning.py: it runs end to end at ``--tiny`` in a subprocess.

As in tests/test_experiments.py, the script runs as a user runs it. A tiny run still compiles the
CNN + attention decoder, its train step and a decoder per beam width (about a minute on a 2-core
CPU), so it is marked slow; its ``--help`` is checked with every script's in tests/test_experiments.py.
"""

import pytest

from experiment_helpers import tiny_run

NAME = "captioning"


@pytest.mark.slow
def test_tiny_run_writes_results(tmp_path):
    results = tiny_run(NAME, tmp_path)
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
