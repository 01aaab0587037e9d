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
        ("parallel_scan.py", ["--steps", "8", "16", "--batch", "2", "--input-size", "3", "--hidden-size", "4"]),
        ("peers.py", ["--configs", "tiny", "--cells", "gru", "--peers", "rnnjax", "flax", "torch"]),
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


def test_report_writes_the_performance_page_from_results(tmp_path):
    """report.py renders whatever results exist and says which are missing (the page is never made up)."""
    results, docs = tmp_path / "results", tmp_path / "docs"
    results.mkdir()
    tiny_peers = {
        "benchmark": "peers",
        "configs": {"tiny": {"batch": 2, "steps": 5, "input": 3, "hidden": 4}},
        "repeats": 1,
        "machine": {"platform": "test", "cpu_count": 2, "jax": "0"},
        "rows": [
            {"peer": "gemm", "cell": "lstm", "config": "tiny", "status": "ok", "gemm_gflops": 100.0},
            *[
                {
                    "peer": peer,
                    "cell": "lstm",
                    "config": "tiny",
                    "status": "ok",
                    "fwd": {"ms": ms, "compile_s": 1.0, "ksteps_per_s": 10 / ms, "gflops": 50.0 / ms},
                    "train": {"ms": 3 * ms, "compile_s": 2.0, "ksteps_per_s": 10 / (3 * ms), "gflops": 40.0 / ms},
                    "peak_rss_growth_mib": 10.0,
                }
                for peer, ms in (("rnnjax", 1.0), ("flax", 2.0), ("torch", 0.5))
            ],
            {"peer": "haiku", "cell": "lstm", "config": "tiny", "status": "missing", "error": "not installed"},
        ],
    }
    (results / "peers.json").write_text(json.dumps(tiny_peers))
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / "report.py"), "--results", str(results), "--docs", str(docs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    page = (docs / "performance.md").read_text()
    assert "| rnnjax | 1.00 | 3.00 |" in page
    assert "| flax | 2.00 | 6.00 |" in page and "| 2.00 | 2.00 |" in page  # rnnjax/flax = 2 in both modes
    assert "haiku | missing: not installed" in page
    assert "| 50 | 40 | 1.00 | 1.00 |" in page  # rnnjax: 50 and 40 GFLOP/s of a 100 GFLOP/s GEMM
    assert "remat_memory.json` is missing" in page
    assert (docs / "figures" / "perf_peers.png").stat().st_size > 0
