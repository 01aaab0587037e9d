"""Smoke tests of the experiment scripts: each runs end to end at ``--tiny`` size in a subprocess.

The scripts live in experiments/ (not a package); they are run as a user runs them. A tiny run
still compiles every model once, so together they take a minute or two: marked slow.
"""

import json
import os

import pytest

from experiment_helpers import EXPERIMENTS, assert_help_lists, run_experiment, tiny_run

SCRIPTS = ("long_range_memory", "gradient_clipping", "sunspots", "vrnn", "language_models")
EVERY_SCRIPT = sorted(path.stem for path in EXPERIMENTS.glob("*.py") if not path.stem.startswith("_"))
EXTRA_FLAGS = {"local_recurrence": ("--lr", "--depth")}


@pytest.mark.parametrize("name", EVERY_SCRIPT)
def test_help(name):
    """Every experiment script (the slow tiny runs of the others are in tests/test_experiments_*.py)."""
    assert_help_lists(name, *EXTRA_FLAGS.get(name, ()))


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_tiny_run_writes_results(name, tmp_path):
    results = tiny_run(name, tmp_path)
    assert list(tmp_path.glob(f"{name}_*.png")), "no figure written"

    if name == "long_range_memory":
        cells = results["config"]["cells"]
        assert cells == ["elman", "lstm", "gru", "mingru"]
        for task, metric in (("adding", "test_mse"), ("copy", "test_cross_entropy")):
            runs = results[task]["runs"]
            assert {(r["cell"], r["lag"]) for r in runs} == {(c, t) for c in cells for t in results["config"]["lags"]}
            assert all(r[metric] is not None and r[metric] > 0 for r in runs)
        norms = results["gradient_norms"]
        assert max(results["config"]["lags"]) in norms["lags"]
        for when in ("init", "trained"):
            for lag in norms["lags"]:
                by_cell = norms[when][str(lag)]
                assert sorted(by_cell) == sorted(cells)
                assert all(len(v) == lag and min(v) >= 0 and v[-1] > 0 for v in by_cell.values())
                assert all(0 <= norms["reach"][when][str(lag)][c] <= lag for c in cells)
    elif name == "gradient_clipping":
        summary = results["summary"]
        assert len(summary) == len(results["config"]["lrs"]) * len(results["config"]["clip_norms"])
        assert results["jacobian_spectral_radius_at_init"]["max"] > 1  # the recurrent weights are large
        for run in results["runs"]:
            if run["clip_norm"] is None:
                assert run["clipped_fraction"] == 0
    elif name == "language_models":
        assert [(r["cell"], r["layers"]) for r in results["runs"]] == [tuple(m) for m in results["config"]["models"]]
        assert sorted(results["kneser_ney_valid_bpc"]) == ["2", "3"]
        assert all(r["valid_bpc"] > 0 and r["curve"] for r in results["runs"])
    elif name == "vrnn":
        nats = results["nats_per_step"]
        assert nats["vrnn_iwae_3"] is not None and nats["vrnn_iwae_1"] is not None
        assert results["params"]["vrnn"] > results["params"]["rnn"]  # the VRNN adds the latent networks
    else:
        for task in ("horizon_1", f"horizon_{results['config']['horizon']}"):
            models = results["tasks"][task]["models"]
            assert sorted(models) == ["arima", "gru", "lstm", "naive"]
            assert all(m["test_rmse"] > 0 for m in models.values())


@pytest.mark.slow
def test_tiny_run_on_two_devices_matches_one_device(tmp_path):
    """--devices 2 (fake CPU devices) trains data-parallel: the same losses as on one device, up to float sums."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    runs = {}
    for devices in (1, 2):
        out = tmp_path / str(devices)
        flags = ("--tiny", "--steps", "2", "--devices", str(devices), "--out", str(out))
        result = run_experiment("gradient_clipping", *flags, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[devices] = json.loads((out / "gradient_clipping.json").read_text())["summary"]
    for one, two in zip(runs[1], runs[2], strict=True):
        for key, value in one.items():
            if isinstance(value, float):
                assert two[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
