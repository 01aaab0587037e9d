"""The benchmarks run on a tiny configuration (their numbers are measured in benchmarks/, never asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.mark.slow
@pytest.mark.parametrize(
    "script, args",
    [
        ("remat_memory.py", ["--steps", "16", "--batch", "2", "--input-size", "3", "--hidden-size", "4"]),
        ("decode.py", ["--hidden", "8", "--batch", "2", "--max-len", "4", "--beams", "1", "2"]),
        (
            "parallel_scaling.py",
            ["--devices", "1", "2", "--hidden", "8", "--batch", "4", "--window", "4", "--steps", "2"],
        ),
    ],
)
def test_benchmark_runs_on_a_tiny_config(script, args, tmp_path):
    out = tmp_path / "result.json"
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args, "--repeats", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(out.read_text())["rows"]
