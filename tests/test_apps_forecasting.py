"""rnnjax.apps.forecasting: windows, normalisation, the three forecasting modes, training, bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnjax as rj
from conftest import randomize
from rnnjax.apps import forecasting as fc


@functools.partial(jax.jit, static_argnums=(0, 1))  # one compilation, not one per init op
def _random_model_params(model, key=0, scaler=None, feature_scaler=None):
    """Params with every network leaf random (zero biases are too easy), the scalers as given."""
    params = model.init(jax.random.key(key), scaler, feature_scaler)
    return params._replace(net=randomize(params.net, jax.random.key(key + 1)))


# ----------------------------------------------------------------------------- windows


def test_windows_are_the_series_steps_before_and_after_each_origin():
    series = np.arange(40.0).reshape(20, 2)
    features = -np.arange(60.0).reshape(20, 3)
    w = fc.make_windows(series, 4, 3, features=features, start=8, stop=18)
    assert w.values.shape == (len(w.origins), 4, 2) and w.targets.shape == (len(w.origins), 3, 2)
    assert w.origins.tolist() == list(range(8, 16))  # every origin whose 3 targets end before step 18
    for values, feats, targets, o in zip(*w, strict=True):
        np.testing.assert_array_equal(values, series[o - 4 : o])
        np.testing.assert_array_equal(feats, features[o - 4 : o])
        np.testing.assert_array_equal(targets, series[o : o + 3])
    # no split: the windows of rnnjax.data.time_series_windows, in order
    inputs, targets = rj.data.time_series_windows(series, 4, 3)
    w = fc.make_windows(series, 4, 3)
    np.testing.assert_array_equal(w.values, inputs)
    np.testing.assert_array_equal(w.targets, targets)
    assert w.features is None and w.values.dtype == np.float64


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"horizon": 0}, ValueError, "horizon: expected an integer >= 1, got 0"),
        ({"input_len": 0}, ValueError, "input_len: expected an integer >= 1"),
        ({"input_len": 30}, ValueError, "input_len: a window of 30 steps and its 1 target.* at least 31 steps, got"),
        ({"series": np.r_[np.arange(5.0), np.nan, np.arange(4.0)]}, ValueError, "series: expected finite.* step 5"),
        ({"series": np.zeros((10, 1, 1))}, ValueError, r"series: expected shape \[n\] or \[n, c\]"),
        ({"series": np.array(["a"] * 10)}, TypeError, "series: expected real numbers"),
        ({"features": np.zeros((9, 2))}, ValueError, "features: expected 10 steps"),
        ({"features": np.full((10, 1), np.inf)}, ValueError, "features: expected finite values, got .* at step 0"),
        (
            {"start": 9, "horizon": 2},
            ValueError,
            r"start, stop: no window of 3 steps has its 2 target\(s\) in steps \[9",
        ),
        ({"start": 5, "stop": 5}, ValueError, "start, stop: expected 0 <= start < stop <= n = 10"),
        ({"stop": 11}, ValueError, "start, stop: expected"),
    ],
)
def test_make_windows_rejects_bad_input(kwargs, error, match):
    args = {"series": np.arange(10.0), "input_len": 3, "horizon": 1} | kwargs
    series, input_len, horizon = args.pop("series"), args.pop("input_len"), args.pop("horizon")
    with pytest.raises(error, match=match):
        fc.make_windows(series, input_len, horizon, **args)


# ----------------------------------------------------------------------------- normalisation


def test_scaler_round_trip_and_statistics(x64):
    rng = np.random.default_rng(0)
    values = rng.normal(3.0, 2.0, (50, 3))
    values[:, 2] = 7.0  # a constant channel: scale 1, not a division by zero
    scaler = fc.fit_scaler(values)
    z = scaler.transform(values)
    np.testing.assert_allclose(np.mean(z[:, :2], axis=0), 0.0, atol=1e-14)
    np.testing.assert_allclose(np.std(z[:, :2], axis=0), 1.0, rtol=1e-14)
    assert scaler.scale[2] == 1.0 and np.all(z[:, 2] == 0.0)
    np.testing.assert_allclose(scaler.inverse(z), values, rtol=1e-15, atol=1e-14)
    # where: only the chosen entries count (padding of a [n, t, f] batch)
    batch = rng.normal(size=(4, 6, 2))
    valid = np.arange(6) < np.array([6, 3, 1, 5])[:, None]
    masked = fc.fit_scaler(batch, valid)
    np.testing.assert_allclose(masked.mean, batch[valid].mean(0), rtol=1e-14)
    np.testing.assert_allclose(masked.scale, batch[valid].std(0), rtol=1e-14)


def test_scaler_rejects_bad_input():
    with pytest.raises(ValueError, match="values: expected finite values"):
        fc.fit_scaler(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match=r"where: expected booleans of shape \(4,\)"):
        fc.fit_scaler(np.ones((4, 2)), np.ones(3, bool))
    with pytest.raises(ValueError, match="at least one value"):
        fc.fit_scaler(np.ones((4, 2)), np.zeros(4, bool))


def test_apply_standardises_in_and_out(x64):
    """apply(values) == inverse(net(transform(values))): the params' scaler maps data units in and out."""
    model = fc.Forecaster(rj.GRUCell(5, param_dtype=jnp.float64), 6, horizon=2, channels=2, param_dtype=jnp.float64)
    values = np.random.default_rng(1).normal(50.0, 10.0, (6, 2))
    scaler = fc.fit_scaler(values * 1.5 + 3.0)
    params = _random_model_params(model, scaler=scaler)
    expected = jax.jit(model.net.apply)(params.net, (values - scaler.mean) / scaler.scale)
    forecast = jax.jit(model.apply)(params, values)
    np.testing.assert_allclose(forecast, expected.reshape(2, 2) * scaler.scale + scaler.mean, rtol=1e-13)
    assert forecast.dtype == jnp.float64


def test_fit_stores_the_scaler_of_the_training_steps_only():
    series = np.r_[np.sin(np.arange(60) / 3.0), 100 + np.arange(20.0)]  # the validation steps are far off
    model = fc.Forecaster(rj.ElmanCell(3), 5)
    run = fc.fit(model, series, train_end=60, valid_end=80, num_steps=2, eval_every=1)
    expected = fc.fit_scaler(series[:60])
    np.testing.assert_array_equal(run.params.scaler.mean, expected.mean)
    np.testing.assert_array_equal(run.params.scaler.scale, expected.scale)
    assert run.params.feature_scaler is None and run.history["step"] == [1, 2]


def test_scalers_get_no_gradient():
    model = fc.Forecaster(rj.GRUCell(4), 5, channels=1, num_features=2)
    series, features = np.sin(np.arange(30.0)), np.random.default_rng(0).normal(size=(30, 2))
    batch = fc.make_windows(series, 5, features=features)
    params = model.init(jax.random.key(0), fc.fit_scaler(series), fc.fit_scaler(features))
    grads = jax.jit(jax.grad(model.loss))(params, batch)
    for leaf in jax.tree.leaves((grads.scaler, grads.feature_scaler)):
        assert np.all(leaf == 0)
    assert any(np.any(leaf != 0) for leaf in jax.tree.leaves(grads.net))


# ----------------------------------------------------------------------------- the three modes


def _loop_rollout(model, params, window, steps, features=None):
    """The reference: a Python loop of one-step apply calls, each forecast appended to the window."""
    t, out, apply = model.input_len, [], jax.jit(model.apply)  # jitted: one compilation, not one per step
    for k in range(steps):
        past = None if features is None else features[k : k + t]
        forecast = apply(params, window, past)[0]
        out.append(forecast)
        window = jnp.concatenate([window[1:], forecast[None]])
    return jnp.stack(out)


@pytest.mark.parametrize("num_features", [0, 2])
def test_rollout_equals_a_loop_of_one_step_forecasts_float32(num_features):
    model = fc.Forecaster(rj.LSTMCell(6), 5, channels=2, num_features=num_features)
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 5, 2)).astype(np.float32)
    features = rng.normal(size=(3, 5 + 7, num_features)).astype(np.float32) if num_features else None
    scaler = fc.Scaler(jnp.array([0.5, -1.0]), jnp.array([2.0, 0.5]))
    feature_scaler = fc.Scaler(jnp.array([0.1, 0.2]), jnp.array([1.5, 3.0])) if num_features else None
    params = _random_model_params(model, scaler=scaler, feature_scaler=feature_scaler)
    rolled = model.rollout(params, values, 7, features)
    assert rolled.shape == (3, 7, 2) and rolled.dtype == jnp.float32
    for i in range(3):
        expected = _loop_rollout(model, params, values[i], 7, None if features is None else features[i])
        # float32 agrees to a few ulps of the outputs' scale (about 1; ulp 1.2e-7): measured 6e-8 on the CPU,
        # 1.8e-7 on an H200 (another GEMM for batch 3 than for 1); the float64 test below checks to 1e-12
        np.testing.assert_allclose(rolled[i], expected, rtol=1e-6, atol=4 * np.finfo(np.float32).eps)


def test_rollout_equals_a_loop_of_one_step_forecasts_float64(x64):
    model = fc.Forecaster(
        rj.GRUCell(5, param_dtype=jnp.float64), 4, horizon=3, channels=1, num_features=1, param_dtype=jnp.float64
    )
    rng = np.random.default_rng(1)
    values, features = rng.normal(size=(2, 4, 1)), rng.normal(size=(2, 4 + 9, 1))
    params = _random_model_params(model, scaler=fc.fit_scaler(rng.normal(size=20)))
    rolled = model.rollout(params, values, 9, features)
    assert rolled.dtype == jnp.float64
    for i in range(2):  # with a direct head, the rollout feeds back its first step
        np.testing.assert_allclose(rolled[i], _loop_rollout(model, params, values[i], 9, features[i]), rtol=1e-12)


def test_one_step_and_direct_forecasts_have_the_documented_shapes():
    model = fc.Forecaster(rj.GRUCell(8), 6, horizon=4, channels=2, num_features=3)
    params = model.init(jax.random.key(0))
    assert params.net.head.w.shape == (8, 4 * 2) and params.feature_scaler.mean.shape == (3,)
    values, features = np.ones((5, 6, 2), np.float32), np.zeros((5, 6, 3), np.float32)
    forecasts = model.predict(params, values, features)
    assert forecasts.shape == (5, 4, 2)
    one = jax.jit(model.apply)(params, values[2], features[2])
    assert one.shape == (4, 2)
    np.testing.assert_allclose(forecasts[2], one, rtol=1e-6, atol=1e-7)
    one_step = fc.Forecaster(rj.GRUCell(8), 6)
    assert one_step.predict(one_step.init(jax.random.key(0)), np.ones((5, 6, 1))).shape == (5, 1, 1)


def test_loss_is_the_mean_squared_error_in_standardised_units():
    model = fc.Forecaster(rj.GRUCell(4), 5, horizon=2)
    series = np.cumsum(np.random.default_rng(0).normal(size=40))
    batch = fc.make_windows(series, 5, 2)
    params = _random_model_params(model, scaler=fc.fit_scaler(series))
    errors = (model.predict(params, batch.values) - batch.targets) / params.scaler.scale
    np.testing.assert_allclose(jax.jit(model.loss)(params, batch), np.mean(np.asarray(errors) ** 2), rtol=1e-5)


# ----------------------------------------------------------------------------- bad input


def test_model_rejects_bad_input():
    with pytest.raises(ValueError, match="horizon: expected a positive integer, got 0"):
        fc.Forecaster(rj.GRUCell(4), 5, horizon=0)
    with pytest.raises(ValueError, match="input_len: expected a positive integer"):
        fc.Forecaster(rj.GRUCell(4), 0)
    with pytest.raises(ValueError, match="num_features: expected a non-negative integer"):
        fc.Forecaster(rj.GRUCell(4), 5, num_features=-1)
    model = fc.Forecaster(rj.GRUCell(4), 5, channels=2)
    params = model.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"values: expected shape \[t, c\] = \(5, 2\) \(one window; predict"):
        model.apply(params, np.ones((3, 5, 2)))
    with pytest.raises(ValueError, match=r"values: expected shape \[m, t, c\] = \(m, 5, 2\)"):
        model.predict(params, np.ones((3, 4, 2)))
    with pytest.raises(ValueError, match="steps: expected a positive integer, got 0"):
        model.rollout(params, np.ones((3, 5, 2)), 0)
    with pytest.raises(ValueError, match="features: the model has num_features=0"):
        model.apply(params, np.ones((5, 2)), np.ones((5, 1)))
    with pytest.raises(TypeError, match="values: expected a floating dtype"):
        model.apply(params, np.ones((5, 2), np.int32))
    with pytest.raises(ValueError, match=r"scaler: expected mean and scale of shape \(2,\)"):
        model.init(jax.random.key(0), fc.fit_scaler(np.arange(4.0)))
    with rj.checking(), pytest.raises(ValueError, match="values: expected finite values"):
        model.apply(params, np.full((5, 2), np.nan, np.float32))
    with_features = fc.Forecaster(rj.GRUCell(4), 5, num_features=2)
    params = with_features.init(jax.random.key(0))
    with pytest.raises(ValueError, match="features: the model reads 2 extra features per step, got None"):
        with_features.predict(params, np.ones((3, 5, 1)))
    with pytest.raises(ValueError, match=r"features: expected shape \[m, t \+ s, x\] = \(3, 9, 2\)"):
        with_features.rollout(params, np.ones((3, 5, 1)), 4, np.ones((3, 5, 2)))


def test_fit_rejects_bad_input():
    model = fc.Forecaster(rj.GRUCell(4), 5)
    series = np.sin(np.arange(40.0))
    with pytest.raises(ValueError, match="series: expected finite values, got .* at step 3"):
        fc.fit(model, np.r_[series[:3], np.nan, series[4:]], num_steps=1)
    with pytest.raises(ValueError, match="input_len: a window of 5 steps .* at least 6 steps, got a series of 4"):
        fc.fit(model, series[:4], num_steps=1)
    with pytest.raises(ValueError, match=r"series: expected 1 channel\(s\)"):
        fc.fit(model, np.ones((40, 2)), num_steps=1)
    with pytest.raises(ValueError, match="features: the model reads 0 extra features per step, got shape"):
        fc.fit(model, series, features=np.ones((40, 1)), num_steps=1)
    with pytest.raises(ValueError, match="train_end, valid_end: expected train_end <= valid_end <= n = 40"):
        fc.fit(model, series, train_end=30, valid_end=20, num_steps=1)
    with pytest.raises(ValueError, match="num_steps: expected a positive integer"):
        fc.fit(model, series, num_steps=0)
    with pytest.raises(TypeError, match="model: expected a Forecaster"):
        fc.fit(rj.GRUCell(4), series)


# ----------------------------------------------------------------------------- training


def test_a_short_training_run_beats_the_persistence_forecast():
    """A sine with period 20: the last value is off by 2 sin(pi/20) ~ 0.31 at the steepest; a GRU learns the
    next value within 100 steps. The params kept are those of the best validation RMSE."""
    series = np.sin(np.arange(400) * 2 * np.pi / 20).astype(np.float32)
    model = fc.Forecaster(rj.GRUCell(8), 10)
    run = fc.fit(model, series, train_end=250, valid_end=320, num_steps=100, optimizer=optax.adam(1e-2), eval_every=20)
    test = fc.make_windows(series, 10, start=320)
    rmse = np.sqrt(np.mean((np.asarray(model.predict(run.params, test.values)) - test.targets) ** 2))
    persistence = np.sqrt(np.mean((test.values[:, -1:] - test.targets) ** 2))
    assert rmse < 0.5 * persistence, (rmse, persistence)  # measured: about 0.03 against 0.22
    history = run.history
    assert history["step"] == [20, 40, 60, 80, 100] and len(history["valid_rmse"]) == 5
    best = history["valid_rmse"].index(min(history["valid_rmse"]))
    assert run.best_step == history["step"][best]
    valid = fc.make_windows(series, 10, start=250, stop=320)
    kept = np.sqrt(np.mean((np.asarray(model.predict(run.params, valid.values), np.float64) - valid.targets) ** 2))
    assert kept == pytest.approx(min(history["valid_rmse"]), rel=1e-6)


@pytest.mark.slow  # about 7 s: two models trained for 150 steps
def test_guide_code_runs():
    from docs_helpers import run_page

    page = run_page("docs/guide/forecasting.md")
    assert page["rmse"]["one step"] < page["rmse"]["persistence"]
