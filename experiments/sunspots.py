"""Experiment 5: forecasting a time series, the yearly sunspot numbers (1700-2008).

Question: does a small LSTM or GRU forecast a real, short, noisy series better than the
classical baselines? Three models see the same past ``INPUT_LEN`` years and forecast

- one step ahead (next year), and
- ``HORIZON`` steps ahead (about one 11-year solar cycle), directly: a Dense(HORIZON) head on
  the last output, one model per horizon length;

against the naive last-value forecast and an ARIMA(p, 0, q) from statsmodels whose order is
chosen by AIC on the training years (p among 1..12; q = 0 at the default size, 0..2 with
--full). Years are split in time: train 1700-1908, validation 1909-1948 (for early stopping
of the RNNs), test 1949-2008. Every model's parameters are fixed after training; forecasts on
the test years use the observed values up to each forecast origin (rolling origin). Errors
are RMSE in sunspot numbers.

    python experiments/sunspots.py             # default size, a couple of minutes on a CPU
    python experiments/sunspots.py --full      # more seeds, larger models

Writes experiments/results/sunspots.json and sunspots_{forecast,horizons}.png.
"""

import time
import warnings

import _common
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from tqdm.auto import tqdm

import rnnjax as rj
from rnnjax.heads import Dense

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


# --- data: windows split by the year of their first target ---------------------------------------


def split_windows(series, scaled, horizon):
    """Windows of INPUT_LEN years -> the next ``horizon`` years, split by the years they forecast.

    Returns ``{split: (inputs [m, INPUT_LEN, 1] scaled, targets [m, horizon] in sunspot numbers,
    origins [m])}``; ``origin`` is the index of the first forecast year. Train and validation
    windows forecast only years of their own split; test windows forecast only test years.
    """
    inputs, _ = rj.data.time_series_windows(scaled, INPUT_LEN, horizon)
    _, targets = rj.data.time_series_windows(series, INPUT_LEN, horizon)
    origins = np.arange(len(inputs)) + INPUT_LEN
    ends = origins + horizon - 1  # index of the last forecast year
    valid_at, test_at = VALID_YEAR - FIRST_YEAR, TEST_YEAR - FIRST_YEAR
    masks = {
        "train": ends < valid_at,
        "valid": (origins >= valid_at) & (ends < test_at),
        "test": origins >= test_at,
    }
    return {k: (inputs[m], targets[m, :, 0], origins[m]) for k, m in masks.items()}


# --- the RNN forecaster ------------------------------------------------------------------------


def make_forecaster(cell, horizon, mean, scale):
    """``init(key)``, ``forecast(params, inputs [b, t, 1]) -> [b, horizon]`` in sunspot numbers, and a loss."""
    head = Dense(horizon)

    def init(key):
        k_cell, k_head = jax.random.split(key)
        return {"cell": cell.init(k_cell, 1), "head": head.init(k_head, cell.output_size)}

    def forecast(params, inputs):
        last = jax.vmap(lambda xs: rj.unroll(cell, params["cell"], xs)[1][-1])(inputs)  # [b, h]
        return head.apply(params["head"], last) * scale + mean  # back to sunspot numbers

    def loss(params, batch, key):  # MSE in standardised units
        inputs, targets = batch
        return jnp.mean(((forecast(params, inputs) - targets) / scale) ** 2)

    return init, jax.jit(forecast), loss


def train_forecaster(init, forecast, train_step, optimizer, windows, size, seed, bar):
    """Adam on random minibatches of training windows; keeps the params with the best validation RMSE."""
    train_inputs, train_targets, _ = windows["train"]
    valid_inputs, valid_targets, _ = windows["valid"]
    rng = np.random.default_rng(seed)
    params = init(jax.random.key(seed))
    opt_state = optimizer.init(params)
    best = (np.inf, params, 0)
    curve = {"step": [], "train_loss": [], "valid_rmse": []}
    for step in range(1, size["steps"] + 1):
        pick = rng.choice(len(train_inputs), size=min(size["batch"], len(train_inputs)), replace=False)
        params, opt_state, metrics = train_step(params, opt_state, (train_inputs[pick], train_targets[pick]), None)
        if step % size["eval_every"] == 0 or step == size["steps"]:
            valid_rmse = rmse(forecast(params, valid_inputs), valid_targets)
            curve["step"].append(step)
            curve["train_loss"].append(float(metrics["loss"]))
            curve["valid_rmse"].append(valid_rmse)
            if valid_rmse < best[0]:
                best = (valid_rmse, params, step)
            bar.set_postfix(valid_rmse=f"{valid_rmse:.1f}")
        bar.update(1)
    return best[1], best[2], curve


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
    mean, scale = series[:train_end].mean(), series[:train_end].std()  # standardise with training years only
    scaled = ((series - mean) / scale).astype(np.float32)
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
    bar = tqdm(total=2 * len(CELLS) * size["seeds"] * size["steps"], unit="step")
    forecasts_to_plot = {}
    for horizon in (1, HORIZON):
        windows = split_windows(series, scaled, horizon)
        inputs, targets, origins = windows["test"]
        predictions = {
            "naive": np.repeat(series[origins - 1][:, None], horizon, axis=1),
            "arima": arima_forecasts(arima, series, origins, horizon),
        }
        # 2. LSTM and GRU forecasters, several seeds each.
        per_seed = {}
        for name in CELLS:
            init, forecast, loss = make_forecaster(CELLS[name](size["hidden"]), horizon, mean, scale)
            optimizer = optax.adam(size["lr"])
            # compiled once, for every seed
            train_step = rj.parallel.make_train_step(loss, optimizer, devices=args.devices, clip_norm=1.0)
            per_seed[name] = []
            for seed in range(args.seed, args.seed + size["seeds"]):
                bar.set_description(f"horizon {horizon} {name} seed {seed}")
                params, best_step, curve = train_forecaster(
                    init, forecast, train_step, optimizer, windows, size, seed, bar
                )
                per_seed[name].append(
                    {
                        "seed": seed,
                        "best_step": best_step,
                        "curve": curve,
                        "test_rmse": rmse(forecast(params, inputs), targets),
                        "prediction": np.asarray(forecast(params, inputs)),
                    }
                )
            # the forecast of the seed with the best validation RMSE, for the plot
            chosen = min(per_seed[name], key=lambda r: min(r["curve"]["valid_rmse"]))
            predictions[name] = chosen["prediction"]

        task = {"num_test_windows": len(origins), "models": {}}
        for model, prediction in predictions.items():
            entry = {"test_rmse": rmse(prediction, targets), "rmse_by_horizon": rmse(prediction, targets, axis=0)}
            if model in CELLS:
                scores = [r["test_rmse"] for r in per_seed[model]]
                entry.update(
                    {
                        "note": "test_rmse and rmse_by_horizon: the seed with the best validation RMSE",
                        "test_rmse_per_seed": scores,
                        "test_rmse_mean": float(np.mean(scores)),
                        "test_rmse_std": float(np.std(scores)),
                        "best_step_per_seed": [r["best_step"] for r in per_seed[model]],
                        "curves": [r["curve"] for r in per_seed[model]],
                    }
                )
            task["models"][model] = entry
        results["tasks"][f"horizon_{horizon}"] = task
        forecasts_to_plot[horizon] = (origins, targets, predictions)
    bar.close()
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
    for model in ("naive", "arima", *CELLS):

        def cell(entry):
            if "test_rmse_mean" in entry:
                return f"{entry['test_rmse']:.1f} (seeds: {entry['test_rmse_mean']:.1f} ± {entry['test_rmse_std']:.1f})"
            return f"{entry['test_rmse']:.1f}"

        name = f"ARIMA{tuple(results['arima_order'])}" if model == "arima" else model
        rows.append([name, cell(one[model]), cell(many[model]), f"{many[model]['rmse_by_horizon'][-1]:.1f}"])
    return f"Sunspots, test years {TEST_YEAR}-2008, RMSE in sunspot numbers:\n" + _common.markdown_table(header, rows)


if __name__ == "__main__":
    main()
