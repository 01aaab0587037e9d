"""Smoke test of experiments/local_recurrence.py: it runs end to end at ``--tiny`` in a subprocess.

As in tests/test_experiments.py, the script runs as a user runs it. A tiny run compiles four
on-line learners (about 20 s on an idle CPU), so it is marked slow; the plant simulator is checked
against the recursion written out by hand.
"""

import numpy as np
import pytest

from experiment_helpers import load_experiment, tiny_run

NAME = "local_recurrence"


def test_plant_matches_narendra_example_1():
    module = load_experiment(NAME)
    u = np.array([0.5, -0.25, 0.1, 0.0])
    f = module.plant_nonlinearity
    assert f(0.5) == pytest.approx(0.6 - 0.3 + 0.1)  # sin(pi/2), sin(3 pi/2), sin(5 pi/2)
    y1 = f(0.5)
    y2 = 0.3 * y1 + f(-0.25)
    y3 = 0.3 * y2 + 0.6 * y1 + f(0.1)
    y4 = 0.3 * y3 + 0.6 * y2 + f(0.0)
    np.testing.assert_allclose(module.simulate_plant(u), [y1, y2, y3, y4], rtol=1e-12)


@pytest.mark.slow
def test_tiny_run_writes_results(tmp_path):
    results = tiny_run(NAME, tmp_path, steps=100)
    assert sorted(results["runs"]) == ["back_tsoi", "crbp", "rtrl", "tbptt"]
    for runs in results["runs"].values():
        curve = runs[0]["curve"]
        assert curve["samples"][0] == 0 and curve["samples"][-1] == 100
        assert all(v is not None and v > 0 for key in ("test_mse_random", "test_mse_sine") for v in curve[key])
    exact = results["exactness_float64"]
    assert exact["max_abs_diff_crbp_untruncated_vs_bptt"] < 1e-10 * max(1.0, exact["max_abs_bptt_gradient"])
    assert exact["max_abs_diff_crbp_h2_vs_bptt"] > 1e-6
    assert sorted(p.name for p in tmp_path.glob(f"{NAME}_*.png")) == [f"{NAME}_curves.png", f"{NAME}_test.png"]
