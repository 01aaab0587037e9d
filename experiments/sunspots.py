"""Experiment 5: forecasting a time series, the yearly sunspot numbers (1700-2008).

Question: does a small LSTM or GRU forecast a real, short, noisy series better than the
classical baselines? Three models see the same past ``INPUT_LEN`` years and forecast

- one step ahead (next year), and
- ``HORIZON`` steps ahead (about one 11-year solar cycle), directly: a Dense(HORIZON) head on
  the last output, one model per horizon length; and recursively, the one-step model's
  forecasts fed back as inputs;

against the naive last-value forecast and an ARIMA(p, 0, q) from statsmodels whose order is
chosen by AIC on the training years (p among 1..12; q = 0 at the default size, 0..2 with
--full). Years are split in time: train 1700-1908, validation 1909-1948 (for early stopping
of the RNNs), test 1949-2008. Every model's parameters are fixed after training; forecasts on
the test years use the observed values up to each forecast origin (rolling origin). Errors
are RMSE in sunspot numbers. The RNNs are rnnjax.apps.forecasting's Forecaster, fitted with its
``fit`` (standardised on the training years; the params of the best validation step kept).

    python experiments/sunspots.py             # default size, a couple of minutes on a CPU
    python experiments/sunspots.py --full      # more seeds, larger models

Writes experiments/results/sunspots.json and sunspots_{forecast,horizons}.png.
"""

import time
import warnings

import _common
import matplotlib.pyplot as plt
import numpy as np
import optax

import rnnjax as rj
from rnnjax.apps import forecasting as fc

NAME = "sunspots"
FIRST_YEAR, VALID_YEAR, TEST_YEAR = 1700, 1909, 1949  # train < VALID_YEAR <= valid < TEST_YEAR <= test
INPUT_LEN, HORIZON = 24, 11
CELLS = {"lstm": rj.LSTMCell, "gru": rj.GRUCell}
COLORS = {"lstm": "tab:blue", "gru": "tab:green", "arima": "tab:orange", "naive": "tab:gray"}
SIZES = {  # hidden units, seeds per model, training steps, batch, Adam learning rate, ARIMA's largest p and the q tried
    "tiny": dict(hidden=4, seeds=1, steps=3, batch=16, lr=3e-3, eval_every=1, max_p=3, q=(0,)),
    "default": dict(hidden=32, seeds=3, steps=1500, batch=32, lr=3e-3, eval_every=25, max_p=12, q=(0,)),
    "full": dict(hidden=64, seeds=10, steps=5000, batch=32, lr=1e-3, eval_every=25, max_p=15, q=(0, 1, 2)),
}


# --- the RNN forecasters: rnnjax.apps.forecasting ---------------------------------------------------


def train_forecasters(name, horizon, series, size, args):
    """One Forecaster per seed, fitted on the training years, selected on the validation years."""
    model = fc.Forecaster(CELLS[name](size["hidden"]), INPUT_LEN, horizon)
    runs = []
    for seed in range(args.seed, args.seed + size["seeds"]):
        print(f"  horizon {horizon} {name} seed {seed}", flush=True)
        run = fc.fit(
            model,
            series,
            train_end=VALID_YEAR - FIRST_YEAR,
            valid_end=TEST_YEAR - FIRST_YEAR,
            seed=seed,
            num_steps=size["steps"],
            batch_size=size["batch"],
            optimizer=optax.adam(size["lr"]),
            clip_norm=1.0,
            eval_every=size["eval_every"],
            devices=args.devices,
            progress=True,
        )
        runs.append(run)
    return model, runs


def rmse(predictions, targets, axis=None):
    return np.sqrt(np.mean((np.asarray(predictions) - np.asarray(targets)) ** 2, axis=axis)).tolist()


# --- ARIMA, fitted on the training years ---------------------------------------------------------


def fit_arima(train_series, max_p, qs):
    """ARIMA(p, 0, q) on ``train_series``: p by AIC among AR(1..max_p) (OLS fits, fast), then q in ``qs`` by AIC."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.ar_model import ar_select_order
    from statsmodels.tsa.arima.model import ARIMA

    p = max(ar_select_order(train_series, maxlag=max_p, ic="aic", trend="c").ar_lags or [1])
    best = None
    for q in qs:
        with warnings.catch_warnings():  # an order may start non-stationary / not converge: AIC judges it
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", UserWarning)
            result = ARIMA(train_series, order=(p, 0, q), trend="c").fit()
        if best is None or result.aic < best.aic:
            best = result
    return best


def arima_forecasts(result, series, origins, horizon):
    """Forecasts ``[m, horizon]`` from each origin with the trained parameters (no refit)."""
    out = []
    for origin in origins:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out.append(result.apply(series[:origin]).forecast(horizon))
    return np.asarray(out)


# --- the experiment --------------------------------------------------------------------------------


def main(argv=None):
    args = _common.parser(__doc__.split("\n")[0]).parse_args(argv)
    size = _common.chosen_size(args, SIZES)
    start = time.perf_counter()
    series = rj.data.sunspots().astype(np.float64)  # [309], 1700-2008
    train_end = VALID_YEAR - FIRST_YEAR
    print(
        f"{NAME}: {len(series)} years; train {FIRST_YEAR}-{VALID_YEAR - 1}, valid {VALID_YEAR}-{TEST_YEAR - 1}, "
        f"test {TEST_YEAR}-{FIRST_YEAR + len(series) - 1}; input {INPUT_LEN} years, horizons 1 and {HORIZON}"
    )

    # 1. Baselines: ARIMA with the order chosen by AIC on the training years, and the last value.
    arima = fit_arima(series[:train_end], size["max_p"], size["q"])
    order = tuple(int(v) for v in arima.model.order)
    print(f"ARIMA order by AIC: {order}")

    results = {
        "name": NAME,
        "size": _common.size_name(args),
        "config": {
            **{k: list(v) if isinstance(v, range | tuple) else v for k, v in size.items()},
            "input_len": INPUT_LEN,
            "horizon": HORIZON,
            "seed": args.seed,
            "split_years": {
                "train": [FIRST_YEAR, VALID_YEAR - 1],
                "valid": [VALID_YEAR, TEST_YEAR - 1],
                "test": [TEST_YEAR, FIRST_YEAR + len(series) - 1],
            },
        },
        "environment": _common.environment(),
        "arima_order": list(order),
        "tasks": {},
    }
    forecasts_to_plot, one_step_models = {}, {}
    for horizon in (1, HORIZON):
        test = fc.make_windows(series, INPUT_LEN, horizon, start=TEST_YEAR - FIRST_YEAR)  # every test origin
        targets, origins = test.targets[..., 0], test.origins
        predictions = {
            "naive": np.repeat(series[origins - 1][:, None], horizon, axis=1),
            "arima": arima_forecasts(arima, series, origins, horizon),
        }
        # 2. LSTM and GRU forecasters, several seeds each (direct: a head of `horizon` outputs).
        per_seed = {}
        for name in CELLS:
            model, runs = train_forecasters(name, horizon, series, size, args)
            per_seed[name] = [
                {
                    "seed": seed,
                    "best_step": run.best_step,
                    "curve": run.history,
                    "prediction": np.asarray(model.predict(run.params, test.values))[..., 0],  # [m, horizon]
                }
                for seed, run in zip(range(args.seed, args.seed + size["seeds"]), runs, strict=True)
            ]
            for r in per_seed[name]:
                r["test_rmse"] = rmse(r["prediction"], targets)
            # the forecast of the seed with the best validation RMSE, for the table and the plot
            chosen = min(range(len(runs)), key=lambda i: min(runs[i].history["valid_rmse"]))
            predictions[name] = per_seed[name][chosen]["prediction"]
            if horizon == 1:
                one_step_models[name] = (model, runs[chosen].params)

        task = {"num_test_windows": len(origins), "models": {}}
        for model_name, prediction in predictions.items():
            entry = {"test_rmse": rmse(prediction, targets), "rmse_by_horizon": rmse(prediction, targets, axis=0)}
            if model_name in CELLS:
                scores = [r["test_rmse"] for r in per_seed[model_name]]
                entry.update(
                    {
                        "note": "test_rmse and rmse_by_horizon: the seed with the best validation RMSE",
                        "test_rmse_per_seed": scores,
                        "test_rmse_mean": float(np.mean(scores)),
                        "test_rmse_std": float(np.std(scores)),
                        "best_step_per_seed": [r["best_step"] for r in per_seed[model_name]],
                        "curves": [r["curve"] for r in per_seed[model_name]],
                    }
                )
            task["models"][model_name] = entry
        if horizon == HORIZON:
            # 3. The same HORIZON years recursively: the chosen one-step models' forecasts fed back as inputs.
            task["recursive"] = {}
            for name, (model, params) in one_step_models.items():
                prediction = np.asarray(model.rollout(params, test.values, HORIZON))[..., 0]
                task["recursive"][name] = {
                    "note": "the one-step model (the seed with the best validation RMSE) rolled out recursively",
                    "test_rmse": rmse(prediction, targets),
                    "rmse_by_horizon": rmse(prediction, targets, axis=0),
                }
        results["tasks"][f"horizon_{horizon}"] = task
        forecasts_to_plot[horizon] = (origins, targets, predictions)
    results["wall_time_s"] = round(time.perf_counter() - start, 1)

    _common.save_results(results, args, NAME)
    plot(series, forecasts_to_plot, results, args)
    print(summary_table(results))
    print(f"wrote {args.out / (NAME + '.json')} in {results['wall_time_s']} s")
    return results


# --- figures and table -----------------------------------------------------------------------------


def plot(series, forecasts, results, args):
    years = FIRST_YEAR + np.arange(len(series))
    origins, _, predictions = forecasts[1]
    fig, ax = plt.subplots(figsize=(9, 3.4))
    shown = years >= TEST_YEAR - 40
    ax.plot(years[shown], series[shown], color="k", lw=1.5, label="observed")
    ax.axvline(TEST_YEAR - 0.5, color="k", ls=":", lw=1)
    for model in ("naive", "arima", *CELLS):
        score = results["tasks"]["horizon_1"]["models"][model]["test_rmse"]
        label = (
            f"{model} (RMSE {score:.1f})"
            if model != "arima"
            else f"ARIMA{tuple(results['arima_order'])} (RMSE {score:.1f})"
        )
        ax.plot(FIRST_YEAR + origins, predictions[model][:, 0], color=COLORS[model], lw=1, label=label)
    ax.set_xlabel("year")
    ax.set_ylabel("sunspot number")
    ax.set_title("one-year-ahead forecasts on the test years (dotted line: start of the test period)")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    _common.save_figure(fig, args, NAME, "forecast")

    origins, targets, predictions = forecasts[HORIZON]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4))
    steps = np.arange(1, HORIZON + 1)
    for model in ("naive", "arima", *CELLS):
        left.plot(
            steps,
            results["tasks"][f"horizon_{HORIZON}"]["models"][model]["rmse_by_horizon"],
            "o-",
            color=COLORS[model],
            label=model,
            ms=3,
        )
    for name, entry in results["tasks"][f"horizon_{HORIZON}"]["recursive"].items():
        left.plot(steps, entry["rmse_by_horizon"], "o--", color=COLORS[name], label=f"{name}, recursive", ms=3)
    left.set_xlabel("years ahead")
    left.set_ylabel("test RMSE")
    left.set_title(f"{HORIZON}-year forecasts from every test origin")
    left.legend(fontsize=8)
    pick = len(origins) // 2  # one origin in the middle of the test years
    origin = origins[pick]
    span = np.arange(origin - INPUT_LEN, min(len(series), origin + HORIZON))
    right.plot(FIRST_YEAR + span, series[span], color="k", lw=1.5, label="observed")
    for model in ("naive", "arima", *CELLS):
        right.plot(FIRST_YEAR + origin + np.arange(HORIZON), predictions[model][pick], color=COLORS[model], label=model)
    right.axvline(FIRST_YEAR + origin - 0.5, color="k", ls=":", lw=1)
    right.set_xlabel("year")
    right.set_title(f"forecasts from {FIRST_YEAR + origin} (inputs: the {INPUT_LEN} years before)")
    fig.tight_layout()
    _common.save_figure(fig, args, NAME, "horizons")


def summary_table(results) -> str:
    header = ["model", "one-step RMSE", f"{HORIZON}-step RMSE (mean over horizons)", f"RMSE at {HORIZON} years"]
    rows = []
    one, many = results["tasks"]["horizon_1"]["models"], results["tasks"][f"horizon_{HORIZON}"]["models"]

    def cell(entry):
        if "test_rmse_mean" in entry:
            return f"{entry['test_rmse']:.1f} (seeds: {entry['test_rmse_mean']:.1f} ± {entry['test_rmse_std']:.1f})"
        return f"{entry['test_rmse']:.1f}"

    for model in ("naive", "arima", *CELLS):
        name = f"ARIMA{tuple(results['arima_order'])}" if model == "arima" else model
        rows.append([name, cell(one[model]), cell(many[model]), f"{many[model]['rmse_by_horizon'][-1]:.1f}"])
    for name, entry in results["tasks"][f"horizon_{HORIZON}"]["recursive"].items():
        rows.append([f"{name}, recursive", "", cell(entry), f"{entry['rmse_by_horizon'][-1]:.1f}"])
    return f"Sunspots, test years {TEST_YEAR}-2008, RMSE in sunspot numbers:\n" + _common.markdown_table(header, rows)


if __name__ == "__main__":
    main()
