"""Time series: sliding windows and the sunspots series (statsmodels' bundled data)."""

import numpy as np

from rnnjax.data import common


def time_series_windows(series, input_len: int, horizon: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Sliding windows over a series for next-value forecasting.

    Window ``i`` reads steps ``[i, i + input_len)`` and predicts ``[i + input_len, i + input_len +
    horizon)``, for every ``i`` with the targets inside the series: ``m = n - input_len - horizon
    + 1`` windows, stride 1.

    Args:
      series: ``[n]`` or ``[n, f]`` finite values (a 1-D series has ``f = 1``); NaN or inf is an
        error naming the first such step.
      input_len: the steps each window reads, ``>= 1``.
      horizon: the steps each window predicts, ``>= 1``.

    Returns:
      ``(inputs, targets)``: ``[m, input_len, f]`` and ``[m, horizon, f]``, of the series' dtype
      if it is floating, else ``float32``.

    Example:
        >>> inputs, targets = time_series_windows(np.arange(6.0), input_len=3, horizon=2)
        >>> inputs[..., 0].tolist(), targets[..., 0].tolist()
        ([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]], [[3.0, 4.0], [4.0, 5.0]])
    """
    arr = np.asarray(series)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"series: expected real numbers, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"series: expected shape [n] or [n, f], got {np.shape(series)}")
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad.size:  # a NaN would reach every window that reads or predicts it
        raise ValueError(
            f"series: expected finite values, got {arr[bad[0]].tolist()} at step {bad[0]} "
            f"({bad.size} step{'s' if bad.size > 1 else ''} with NaN or inf; fill or drop them first)"
        )
    input_len = common.int_arg(input_len, "input_len")
    horizon = common.int_arg(horizon, "horizon")
    m = arr.shape[0] - input_len - horizon + 1
    if m < 1:
        raise ValueError(
            f"series: expected at least input_len + horizon = {input_len + horizon} steps, got {arr.shape[0]}"
        )
    windows = np.lib.stride_tricks.sliding_window_view(arr, input_len + horizon, axis=0)  # [m, f, L]
    windows = np.ascontiguousarray(np.swapaxes(windows, 1, 2))  # [m, L, f]
    return windows[:, :input_len], windows[:, input_len:]


def sunspots() -> np.ndarray:
    """Yearly mean sunspot numbers, 1700-2008, from statsmodels' bundled dataset.

    Entry ``i`` is the year ``1700 + i`` (``SUNACTIVITY`` of ``statsmodels.datasets.sunspots``).
    Pair it with :func:`time_series_windows`.

    Returns:
      ``float32 [309]``.

    Raises:
      ImportError: statsmodels is not installed (``pip install statsmodels``, or rnnjax's
        ``[dev]`` extra).

    Example:
        >>> series = sunspots()
        >>> series.shape, series[:3].tolist()
        ((309,), [5.0, 11.0, 16.0])
    """
    try:
        from statsmodels.datasets import sunspots as dataset
    except ImportError as error:
        raise ImportError(
            "sunspots() needs statsmodels, which is not installed: pip install statsmodels "
            "(or install rnnjax with the [dev] extra)"
        ) from error
    frame = dataset.load_pandas().data
    years = frame["YEAR"].to_numpy()
    if not np.array_equal(years, 1700 + np.arange(len(years))):  # the documented indexing
        raise ValueError("statsmodels' sunspots dataset: expected consecutive years from 1700")
    return frame["SUNACTIVITY"].to_numpy().astype(np.float32)
