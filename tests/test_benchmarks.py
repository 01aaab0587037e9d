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
        ("train_overhead.py", ["--configs", "tiny", "--steps", "4"]),
        ("features_cost.py", ["--configs", "tiny"]),
        ("custom_vjp.py", ["--configs", "tiny"]),
        ("gpu.py", ["--tiny", "--device", "cpu"]),  # every section; torch on the CPU, no jax.experimental.rnn
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


def test_report_shows_the_gpu_run_by_hand_until_gpu_py_writes_one(tmp_path):
    """The GPU section renders the hand-measured H200 figures; a results/gpu.json from gpu.py replaces them."""
    results, docs = tmp_path / "results", tmp_path / "docs"
    results.mkdir()
    by_hand = json.loads((BENCHMARKS / "results" / "gpu_2026-11-29_h200.json").read_text())
    (results / "gpu_2026-11-29_h200.json").write_text(json.dumps(by_hand))

    def page():
        command = [sys.executable, str(BENCHMARKS / "report.py"), "--results", str(results), "--docs", str(docs)]
        run = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        return (docs / "performance.md").read_text().split("## On one GPU", 1)[1]

    gpu = page()
    assert "**Run:** 2026-11-29, commit `34fa6cc`, one NVIDIA H200" in gpu and "cuDNN 9.19" in gpu
    assert "| S | LSTM | 0.354 / 1.850 | 0.982 / 3.343 (unroll 1) | 1.234 / 4.712 | 1.791 / 3.790 |" in gpu
    assert "| M | LSTM | train | 8.647 | 8.764 | 1.01 | 13.084 | 1.51 | 4.452 | 11.041 | 2.48 |" in gpu  # ratios
    assert "| 4,096 | 83.66 / 95.89 | 0.41 / 0.82 |" in gpu and "| beam 1 | 656,713 | 2.3 |" in gpu
    assert "470 passed, 36 failed, 51 skipped" in gpu and "TF32" in gpu and "about 5%" in gpu

    newer = {**by_hand, "date": "2027-01-02 03:04 UTC", "source": "python benchmarks/gpu.py --tests"}
    newer["rows"] = [
        {**r, "status": "missing", "error": "not installed"} if r.get("name") == "flax" else r for r in newer["rows"]
    ]
    (results / "gpu.json").write_text(json.dumps(newer))
    gpu = page()
    assert "**Run:** 2027-01-02 03:04 UTC" in gpu and "`python benchmarks/gpu.py --tests`" in gpu
    assert "| S | LSTM | 0.354 / 1.850 | 0.982 / 3.343 (unroll 1) | – |" in gpu
    assert "- peers flax (S lstm, S gru, M lstm, M gru, L lstm, L gru, G lstm, G gru): missing: not installed" in gpu

    newer["rows"] = [r for r in newer["rows"] if r["section"] != "decode"]  # a run that did not reach decoding
    (results / "gpu.json").write_text(json.dumps(newer))
    gpu = page()
    decoding = gpu.split("### Decoding", 1)[1].split("###", 1)[0]
    assert "Not reached by the run above; from the earlier run (2026-11-29, commit `34fa6cc`)" in decoding
    assert "| beam 1 | 656,713 | 2.3 |" in decoding
    assert "from the earlier run" not in gpu.split("### Decoding", 1)[0]  # sections the run measured: its own

    # of several earlier runs, the newest that measured the section
    middle = {**by_hand, "date": "2026-12-01 10:00 UTC", "git": {"commit": "0123abc", "dirty": False}}
    middle["rows"] = [{**r, "tokens_per_s": 1234.0} if r["section"] == "decode" else r for r in by_hand["rows"]]
    (results / "gpu_2026-12-01_h200.json").write_text(json.dumps(middle))
    decoding = page().split("### Decoding", 1)[1].split("###", 1)[0]
    assert "from the earlier run (2026-12-01, commit `0123abc`)" in decoding and "| 1,234 |" in decoding


def test_gpu_merge_keeps_the_first_measurement_and_lists_repeats(tmp_path):
    """gpu.py --merge: runs of one commit become one report; skipped rows are filled by a later run."""
    base = {
        "benchmark": "gpu",
        "date": "2026-12-04 10:00 UTC",
        "git": {"commit": "abc1234", "dirty": False},
        "machine": {"device_kind": "NVIDIA H200"},
        "configs": {"S": {"batch": 1}},
    }
    row = {"section": "peers", "name": "rnnjax", "config": "S", "cell": "lstm", "peer": "rnnjax", "options": {}}
    first = {**base, "source": "python benchmarks/gpu.py", "elapsed_s": 10.0}
    first["rows"] = [
        {**row, "status": "ok", "fwd": {"ms": 1.0}, "train": {"ms": 2.0}},
        {**row, "cell": "gru", "status": "skipped", "error": "the time budget (10 s) was spent"},
    ]
    second = {**base, "source": "python benchmarks/gpu.py --configs G", "configs": {"G": {"batch": 2}}}
    second["rows"] = [
        {**row, "status": "ok", "fwd": {"ms": 1.1}, "train": {"ms": 2.2}},
        {**row, "cell": "gru", "status": "ok", "fwd": {"ms": 3.0}, "train": {"ms": 4.0}},
    ]
    tests = {**base, "source": "python benchmarks/gpu.py --tests-only", "rows": [], "tests": {"passed": 5}}
    paths = []
    for i, report in enumerate((first, second, tests)):
        paths.append(tmp_path / f"run{i}.json")
        paths[-1].write_text(json.dumps(report))
    out = tmp_path / "gpu.json"
    command = [sys.executable, str(BENCHMARKS / "gpu.py"), "--merge", *map(str, paths), "--out", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    merged = json.loads(out.read_text())
    lstm, gru = merged["rows"]
    assert lstm["fwd"]["ms"] == 1.0 and lstm["repeats"] == [{"fwd": {"ms": 1.1}, "train": {"ms": 2.2}}]
    assert gru["status"] == "ok" and gru["fwd"]["ms"] == 3.0 and "repeats" not in gru
    assert merged["tests"] == {"passed": 5} and set(merged["configs"]) == {"S", "G"}
    assert [r["source"] for r in merged["runs"]] == [first["source"], second["source"], tests["source"]]

    paths[1].write_text(json.dumps({**second, "git": {"commit": "def5678", "dirty": False}}))
    run = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "different commits" in run.stderr


def test_gpu_sections_run_in_the_order_given(monkeypatch):
    """gpu.py --sections custom_vjp bf16: only those rows, the custom VJP's first (a short run's priorities)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu

    torch_jobs, jax_jobs, _ = gpu.plan(["S", "G"], ["lstm", "gru"], "cpu", tiny=True, sections=["custom_vjp", "bf16"])
    sections = [one["section"] for one in jax_jobs]
    assert sections == ["custom_vjp"] * 4 + ["bf16"] * 8
    assert {one["section"] for one in torch_jobs} == {"bf16"}
    assert [(one["config"], one["cell"]) for one in jax_jobs[:4]] == [
        ("S", "lstm"),
        ("S", "gru"),
        ("G", "lstm"),
        ("G", "gru"),
    ]


def test_gpu_plans_the_fused_kernel_where_it_runs(monkeypatch):
    """gpu.py's fused section: the fused kernel and rnnjax's defaults next to it, at the sizes rnnjax.kernels
    takes (gpu.py's copy of MAX_HIDDEN is the library's)."""
    import rnnjax as rj

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu

    assert gpu.FUSED_MAX_HIDDEN == rj.kernels.MAX_HIDDEN
    _, jax_jobs, _ = gpu.plan(["S", "M", "G"], ["lstm", "gru"], "cpu", tiny=False, sections=["fused"])
    assert [(one["config"], one["cell"], one["name"], one["options"]) for one in jax_jobs] == [
        ("S", "lstm", "rnnjax", {}),
        ("S", "lstm", gpu.FUSED, {"fused": True}),
        ("S", "gru", "rnnjax", {}),
        ("S", "gru", gpu.FUSED, {"fused": True}),
    ]
