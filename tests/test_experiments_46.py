"""Smoke tests of experiments 4 (beam_width) and 6 (transactions): each runs end to end at ``--tiny``.

As in tests/test_experiments.py, the scripts run in a subprocess as a user runs them. A tiny run
still compiles a seq2seq training step and several decoders (beam_width) or two RNN classifiers
(transactions): about half a minute each, so the runs are marked slow. The metric helpers of
transactions.py (ROC-AUC, average precision, written in numpy) are checked against hand-computed values.
"""

import numpy as np
import pytest

from experiment_helpers import load_experiment, tiny_run

SCRIPTS = ("beam_width", "transactions")


@pytest.fixture(scope="module")
def transactions():
    return load_experiment("transactions")


def test_roc_auc_and_average_precision_by_hand(transactions):
    labels = np.array([1, 0, 1, 0, 0, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.3, 0.3])
    # pairs (positive, negative) ranked right: 0.9 > all 3 negatives, 0.7 > 2 (0.3s), 0.3 ties 2 (half each)
    assert transactions.roc_auc(labels, scores) == pytest.approx((3 + 2 + 1) / 9)
    # precision at each positive's threshold: 1/1, 2/3, 3/6 (the three tied 0.3s enter together)
    assert transactions.average_precision(labels, scores) == pytest.approx((1 + 2 / 3 + 0.5) / 3)
    assert transactions.roc_auc(labels, labels.astype(float)) == 1.0
    assert transactions.roc_auc(labels, -labels.astype(float)) == 0.0


def test_histories_have_the_documented_shapes(transactions):
    xs, labels, patterns = transactions.make_histories(np.random.default_rng(0), 64, fraud_rate=0.5)
    assert xs.shape == (64, transactions.SEQ_LEN, transactions.NUM_FEATURES) and xs.dtype == np.float32
    assert np.all(np.isfinite(xs))
    assert np.array_equal(labels, (patterns >= 0).astype(np.int32)) and 0 < labels.sum() < 64
    assert np.all(xs[:, :, 7:].sum(-1) == 1)  # one merchant category per transaction


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_tiny_run_writes_results(name, tmp_path):
    results = tiny_run(name, tmp_path)
    assert list(tmp_path.glob(f"{name}_*.png")), "no figure written"

    if name == "beam_width":
        rows = results["decoders"]
        config = results["config"]
        assert rows[0]["decoder"] == "greedy"
        assert [(r["beam"], r["alpha"]) for r in rows[1:]] == [
            (b, a) for a in config["alphas"] for b in config["beams"]
        ]
        for r in rows:
            assert 0 <= r["exact_match"] <= 1 and r["mean_loglik"] <= 0
            assert r["search_errors"] + r["model_errors"] == round((1 - r["exact_match"]) * config["test"])
            assert r["examples_per_s"] > 0 and r["temp_mib"] >= 0
        # with alpha = 0 the score is the log-likelihood: the widest beam's best is never below beam 1's
        beam = [r for r in rows[1:] if r["alpha"] == 0.0]
        assert beam[-1]["mean_loglik"] >= beam[0]["mean_loglik"] - 1e-4
    else:
        models = results["models"]
        assert sorted(models) == ["gru", "logreg_last", "logreg_last_mean", "lstm"]
        for m in models.values():
            assert 0 <= m["roc_auc"] <= 1 and 0 <= m["average_precision"] <= 1
            assert sorted(m["recall_by_pattern"]) == sorted(results["config"]["patterns"])
