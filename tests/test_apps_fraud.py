"""rnnjax.apps.fraud: the generator (determinism, pattern labels), the detector, the metrics against sklearn."""

import functools

import jax
import numpy as np
import optax
import pytest

import rnnjax as rj
from conftest import randomize
from rnnjax.apps import forecasting as fc
from rnnjax.apps import fraud

LOG_AMOUNT, LOG_GAP, LOG_KM_PREV, ONLINE = 0, 1, 2, 6  # columns of fraud.FEATURE_NAMES
CATEGORY = 7  # the one-hot categories start here


@pytest.fixture(scope="module")
def histories():
    return fraud.make_histories(0, 300, fraud_rate=0.5)


# ----------------------------------------------------------------------------- the generator


def test_same_seed_same_histories_and_a_generator_is_advanced():
    a, b = fraud.make_histories(7, 40), fraud.make_histories(7, 40)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(fraud.make_histories(8, 40).xs, a.xs)
    rng = np.random.default_rng(7)
    first, second = fraud.make_histories(rng, 40), fraud.make_histories(rng, 40)
    np.testing.assert_array_equal(first.xs, a.xs)  # a Generator seeded 7 gives seed 7's histories first
    assert not np.array_equal(second.xs, first.xs)


def test_histories_have_the_documented_shapes(histories):
    xs, lengths, labels, patterns = histories
    assert xs.shape == (300, fraud.SEQ_LEN, fraud.NUM_FEATURES) and xs.dtype == np.float32
    assert len(fraud.FEATURE_NAMES) == fraud.NUM_FEATURES == 7 + len(fraud.CATEGORIES)
    assert np.all(np.isfinite(xs)) and np.all(lengths == fraud.SEQ_LEN) and lengths.dtype == np.int32
    assert np.array_equal(labels, (patterns >= 0).astype(np.int32))
    assert set(np.unique(patterns)) == {-1, 0, 1, 2}
    assert np.all(xs[:, :, CATEGORY:].sum(-1) == 1)  # one merchant category per transaction
    online = _categories("online retail", "subscription", "gift card", "money transfer", "crypto")
    assert np.all(xs[:, :, ONLINE] == np.isin(xs[:, :, CATEGORY:].argmax(-1), online))
    short = fraud.make_histories(0, 5, fraud_rate=1.0, seq_len=8)
    assert short.xs.shape == (5, 8, fraud.NUM_FEATURES) and np.all(short.labels == 1)
    assert not fraud.make_histories(0, 50, fraud_rate=0.0).labels.any()


def _categories(*names):
    return [fraud.CATEGORIES.index(name) for name in names]


def _tail_run(mask):
    """The length of the run of True at the end of each row of ``mask [n, t]``."""
    return np.argmin(np.c_[mask[:, ::-1], np.zeros(len(mask), bool)], axis=1)


def test_each_pattern_leaves_its_signature_at_the_end_of_the_history(histories):
    xs, _, _, patterns = histories
    category = xs[:, :, CATEGORY:].argmax(-1)
    small_online = (np.exp(xs[:, :, LOG_AMOUNT]) <= 3.0) & (xs[:, :, ONLINE] == 1)
    minutes_apart = np.expm1(xs[:, :, LOG_GAP]) <= 0.3
    far_jump = np.expm1(xs[:, :, LOG_KM_PREV]) > 900
    risky = np.isin(category, _categories("gift card", "money transfer", "crypto"))

    testing = patterns == fraud.PATTERNS.index("card testing")  # 2-6 small online charges, then a large purchase
    assert np.all(_tail_run((small_online & minutes_apart)[testing, :-1]) >= 2)
    assert np.all(np.exp(xs[testing, -1, LOG_AMOUNT]) > 3.0)
    jumps = patterns == fraud.PATTERNS.index("location jumps")  # 3-5 alternating far jumps in the last 7
    assert np.all(far_jump[jumps, -7:].sum(axis=1) >= 3)
    takeover = patterns == fraud.PATTERNS.index("merchant sequence")  # a run of 3-5 risky purchases at the end
    assert np.all(_tail_run(risky[takeover]) >= 3)
    # the decoys: honest histories hold each ingredient too, but not the ordered pattern of all of them
    honest = patterns < 0
    assert small_online[honest].any() and far_jump[honest].any() and risky[honest].any()


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((0, 0), ValueError, "n: expected an integer >= 1, got 0"),
        ((0, 5, 1.5), ValueError, r"fraud_rate: expected a probability in \[0, 1\], got 1.5"),
        ((-1, 5), TypeError, "seed: expected a non-negative int"),
    ],
)
def test_generator_rejects_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        fraud.make_histories(*args)


def test_generator_rejects_short_histories():
    with pytest.raises(ValueError, match="seq_len: expected an integer >= 8"):
        fraud.make_histories(0, 5, seq_len=7)


# ----------------------------------------------------------------------------- the detector


@functools.partial(jax.jit, static_argnums=0)  # one compilation, not one per init op
def _params(model, scaler=None):
    """Params with every network leaf random (zero biases are too easy), the scaler as given."""
    params = model.init(jax.random.key(0), scaler)
    return params._replace(net=randomize(params.net, jax.random.key(1)))


def test_detector_is_the_classifier_on_standardised_features(histories):
    model = fraud.FraudDetector(rj.GRUCell(6))
    scaler = fc.fit_scaler(histories.xs)
    params = _params(model, scaler)
    xs, lengths = histories.xs[:8], np.array([32, 1, 5, 20, 32, 31, 8, 2], np.int32)
    logits = jax.jit(jax.vmap(model.net.apply, (None, 0, 0)))(params.net, (xs - scaler.mean) / scaler.scale, lengths)
    expected = jax.nn.softmax(logits)[:, 1]
    np.testing.assert_allclose(model.scores(params, xs, lengths), expected, rtol=1e-6, atol=1e-7)


def test_padding_after_the_length_is_never_read(histories):
    """User data: histories of different lengths, padded with anything finite or not."""
    model = fraud.FraudDetector(rj.GRUCell(6))
    params = _params(model, fc.fit_scaler(histories.xs))
    lengths = np.array([32, 3, 17, 1], np.int32)
    xs = histories.xs[:4].copy()
    padded = xs.copy()
    for i, n in enumerate(lengths):
        padded[i, n:] = np.nan if i % 2 else 1e6
    np.testing.assert_array_equal(model.scores(params, padded, lengths), model.scores(params, xs, lengths))


def test_fit_fits_the_scaler_on_the_valid_steps_and_trains_the_network_only(histories):
    lengths = np.random.default_rng(0).integers(1, 33, size=len(histories.xs)).astype(np.int32)
    xs = histories.xs.copy()
    xs[np.arange(32) >= lengths[:, None]] = np.nan  # padding: must reach neither the statistics nor the gradient
    model = fraud.FraudDetector(rj.GRUCell(4))
    run = fraud.fit(model, xs, histories.labels, lengths, num_steps=3, batch_size=16)
    valid = np.arange(32) < lengths[:, None]
    np.testing.assert_allclose(run.params.scaler.mean, xs[valid].mean(0, dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(run.params.scaler.scale, xs[valid].std(0, dtype=np.float64), rtol=1e-5)
    assert len(run.losses) == 3 and all(np.isfinite(run.losses))


def test_detector_rejects_bad_input(histories):
    model = fraud.FraudDetector(rj.GRUCell(4))
    params = model.init(jax.random.key(0))
    xs, labels = histories.xs[:6], histories.labels[:6]
    with pytest.raises(ValueError, match=r"xs: expected shape \[n, t, f\] with f = 20"):
        model.scores(params, xs[..., :5])
    with pytest.raises(ValueError, match=r"lengths: expected 1 <= length <= t = 32, got 0"):
        model.scores(params, xs, np.array([3, 0, 4, 5, 6, 7]))
    with pytest.raises(ValueError, match=r"lengths: expected integers of shape \[n\] = \(6,\)"):
        model.scores(params, xs, np.array([3, 4]))
    bad = xs.copy()
    bad[2, 5, 1] = np.nan
    with pytest.raises(ValueError, match="xs: expected finite features, got NaN or inf in history 2 at step 5"):
        fraud.fit(model, bad, labels, num_steps=1, batch_size=2)
    with pytest.raises(ValueError, match="labels: expected 0 .honest. or 1 .fraud. for each of the 6 histories"):
        fraud.fit(model, xs, labels + 1, num_steps=1, batch_size=2)
    with pytest.raises(ValueError, match="batch_size: expected at most the 6 histories, got 64"):
        fraud.fit(model, xs, labels)
    with pytest.raises(TypeError, match="model: expected a FraudDetector"):
        fraud.fit(rj.GRUCell(4), xs, labels)
    with pytest.raises(ValueError, match=r"scaler: expected a Scaler with mean and scale of shape \(20,\)"):
        model.init(jax.random.key(0), fc.fit_scaler(np.ones((3, 2))))
    with pytest.raises(ValueError, match="pooling"):
        fraud.FraudDetector(rj.GRUCell(4), pooling="first")


@pytest.mark.slow  # about 4 s: 600 histories generated, a GRU trained for 80 steps
def test_a_short_training_run_catches_every_pattern():
    train, test = fraud.make_histories(0, 600, 0.3), fraud.make_histories(1, 300, 0.3)
    model = fraud.FraudDetector(rj.GRUCell(16))
    run = fraud.fit(model, train.xs, train.labels, train.lengths, num_steps=80, optimizer=optax.adam(1e-2))
    metrics = fraud.fraud_metrics(test.labels, model.scores(run.params, test.xs, test.lengths), test.patterns)
    assert metrics["roc_auc"] > 0.95, metrics  # measured: 0.997
    assert min(metrics["recall_by_pattern"].values()) > 0.8, metrics  # measured: 0.92-1.00


# ----------------------------------------------------------------------------- metrics


def _random_labels_scores(seed, n=200, ties=False):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.int32)
    scores = rng.random(n) + 0.3 * labels  # informative, not perfect
    return labels, np.round(scores, 1) if ties else scores


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "tied"])
@pytest.mark.parametrize("seed", range(3))
def test_metrics_match_sklearn(seed, ties):
    metrics = pytest.importorskip("sklearn.metrics")
    labels, scores = _random_labels_scores(seed, ties=ties)
    assert fraud.roc_auc(labels, scores) == pytest.approx(metrics.roc_auc_score(labels, scores), rel=1e-12)
    assert fraud.average_precision(labels, scores) == pytest.approx(
        metrics.average_precision_score(labels, scores), rel=1e-12
    )
    fpr, tpr = fraud.roc_curve(labels, scores)
    sk_fpr, sk_tpr, _ = metrics.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, rtol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, rtol=1e-12)
    precision, recall = fraud.precision_recall_curve(labels, scores)
    sk_precision, sk_recall, _ = metrics.precision_recall_curve(labels, scores)  # increasing thresholds, then (1, 0)
    np.testing.assert_allclose(precision, sk_precision[-2::-1], rtol=1e-12)
    np.testing.assert_allclose(recall, sk_recall[-2::-1], rtol=1e-12)


def test_recall_at_fpr_is_the_best_threshold_within_the_budget():
    labels, scores = _random_labels_scores(0, ties=True)
    for max_fpr in (0.0, 0.01, 0.1, 0.5, 1.0):
        best = 0.0
        for threshold in np.unique(scores):  # brute force over every threshold
            flagged = scores >= threshold
            if flagged[labels == 0].mean() <= max_fpr:
                best = max(best, flagged[labels == 1].mean())
        assert fraud.recall_at_fpr(labels, scores, max_fpr) == pytest.approx(best, rel=1e-12), max_fpr


def test_fraud_metrics_by_hand():
    labels = np.array([1, 1, 1, 0, 0, 0, 1])
    scores = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.4])
    patterns = np.array([0, 2, 2, -1, -1, -1, 0])
    m = fraud.fraud_metrics(labels, scores, patterns, threshold=0.5)
    assert m["precision_at_0.5"] == pytest.approx(2 / 3) and m["recall_at_0.5"] == pytest.approx(2 / 4)
    assert m["false_positive_rate_at_0.5"] == pytest.approx(1 / 3)
    assert m["recall_by_pattern"] == {"card testing": 0.5, "location jumps": None, "merchant sequence": 0.5}
    assert m["roc_auc"] == pytest.approx(fraud.roc_auc(labels, scores))
    assert "recall_by_pattern" not in fraud.fraud_metrics(labels, scores)
    assert "recall_at_5pct_fpr" in fraud.fraud_metrics(labels, scores, max_fpr=0.05)


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="labels: expected both classes for a ROC curve, got 0 positive"):
        fraud.roc_auc(np.zeros(4, int), np.arange(4.0))
    with pytest.raises(ValueError, match="labels: expected at least one positive"):
        fraud.average_precision(np.zeros(4, int), np.arange(4.0))
    with pytest.raises(ValueError, match=r"scores: expected shape \(4,\)"):
        fraud.roc_auc(np.array([0, 1, 0, 1]), np.arange(3.0))
    with pytest.raises(ValueError, match="scores: expected finite values"):
        fraud.roc_auc(np.array([0, 1, 0, 1]), np.array([0.1, np.nan, 0.2, 0.3]))
    with pytest.raises(ValueError, match="labels: expected a 1-D array of 0 and 1"):
        fraud.roc_auc(np.array([0, 2, 0, 1]), np.arange(4.0))
    with pytest.raises(ValueError, match="patterns: expected one index per history, >= 0 exactly where"):
        fraud.fraud_metrics(np.array([0, 1, 0, 1]), np.arange(4.0), np.array([0, 1, -1, 2]))
    with pytest.raises(ValueError, match=r"max_fpr: expected a rate in \[0, 1\]"):
        fraud.recall_at_fpr(np.array([0, 1]), np.array([0.1, 0.2]), 2.0)


@pytest.mark.slow  # about 11 s: two detectors trained
def test_guide_code_runs():
    from docs_helpers import run_page

    page = run_page("docs/guide/fraud.md")
    assert page["metrics"]["roc_auc"] > 0.9
