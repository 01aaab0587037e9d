r"""Time-series forecasting: an RNN over a window of past values, a dense head, three ways to forecast.

=========================  ===========================================================================
what                       names
=========================  ===========================================================================
data                       :func:`make_windows` -> :class:`Windows` (split by where the targets lie)
normalisation              :class:`Scaler`, :func:`fit_scaler` (fitted on the training steps only)
model                      :class:`Forecaster` (``init``, ``apply``, ``loss``, ``predict``, ``rollout``)
training                   :func:`fit` -> :class:`ForecastFit` (Adam on minibatches, best validation)
=========================  ===========================================================================

The model reads the ``t`` latest values of a series (and, optionally, ``x`` extra features per
step: a calendar, a known input), standardised with a :class:`Scaler` stored in its params, runs
an encoder (any cell or layer, as :class:`rnnjax.models.SequenceClassifier` takes it) and maps its
last output through a dense layer to the next ``H`` values:

.. math::
    z_i = (v_i - \mu) / \sigma, \qquad
    o = \mathrm{encoder}([z_{1..t}; x_{1..t}])_t, \qquad
    \hat v_{t+1..t+H} = (o W + b)\,\sigma + \mu .

Three ways to forecast, as users of forecasting libraries expect:

- **one step ahead** (``horizon=1``): :meth:`Forecaster.predict` on each window;
- **recursive multi-step** (:meth:`Forecaster.rollout`): forecast one step, append it to the
  window, drop the oldest value, repeat ``s`` times; a :func:`jax.lax.scan` with fixed shapes,
  jitted once per ``s``;
- **direct multi-step** (``horizon=H``): one head predicts the ``H`` next values at once.

Shape letters: ``n`` steps of the series, ``t`` the window (``input_len``), ``H`` the horizon,
``c`` the series' channels (the values forecast; 1 for a univariate series), ``x`` extra
features, ``m`` windows, ``s`` steps of a recursive rollout.

Example:
    >>> import numpy as np, rnnjax as rj
    >>> from rnnjax.apps import forecasting as fc
    >>> series = np.sin(np.arange(300) * 2 * np.pi / 25)
    >>> model = fc.Forecaster(rj.GRUCell(8), input_len=12)
    >>> run = fc.fit(model, series, train_end=250, num_steps=30, batch_size=16)
    >>> test = fc.make_windows(series, 12, start=250)
    >>> model.predict(run.params, test.values).shape, model.rollout(run.params, test.values, 5).shape
    ((50, 1, 1), (50, 5, 1))

References:
  Hyndman & Athanasopoulos, "Forecasting: principles and practice", 3rd ed., 2021 (recursive and
  direct multi-step forecasts, rolling origins); Ben Taieb et al., "A review and comparison of
  strategies for multi-step ahead time series forecasting", Expert Systems with Applications 2012.
"""

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from rnnjax._src import checks
from rnnjax._src.dtypes import Dtypes
from rnnjax.data import common, time_series
from rnnjax.models import ClassifierParams, SequenceClassifier
from rnnjax.typing import Array, PRNGKey

__all__ = [
    "ForecastFit",
    "Forecaster",
    "ForecasterParams",
    "Scaler",
    "Windows",
    "fit",
    "fit_scaler",
    "make_windows",
]

# ----------------------------------------------------------------------------- data


class Windows(NamedTuple):
    """Windows of a series: what the model reads and what it should forecast."""

    values: np.ndarray  # [m, t, c] the past values each window reads
    features: np.ndarray | None  # [m, t, x] the extra features of those steps, or None
    targets: np.ndarray  # [m, H, c] the values that follow
    origins: np.ndarray  # [m] int32: the series' index of each window's first target


def _as_series(series, name: str) -> np.ndarray:
    """``[n]`` or ``[n, c]`` real numbers as ``[n, c]`` floats (float32 unless already floating)."""
    arr = np.asarray(series)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    arr = arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float32)
    arr = arr[:, None] if arr.ndim == 1 else arr
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected shape [n] or [n, c], got {np.shape(series)}")
    return arr


def make_windows(series, input_len: int, horizon: int = 1, *, features=None, start: int = 0, stop=None) -> Windows:
    """Every window of ``input_len`` steps whose ``horizon`` targets all lie in ``series[start:stop]``.

    Window ``i`` reads steps ``[o - t, o)`` and forecasts ``[o, o + H)`` (its origin ``o``); the
    inputs may reach back before ``start``, so validation and test windows forecast only their
    own steps while reading the steps before them (a rolling origin, stride 1).

    Args:
      series: ``[n]`` or ``[n, c]`` finite values.
      input_len: ``t``, the steps each window reads, ``>= 1``.
      horizon: ``H``, the steps each window forecasts, ``>= 1``.
      features: ``[n, x]`` extra features per step (finite), or None.
      start, stop: the steps ``[start, stop)`` the targets must lie in (``stop`` None: ``n``).

    Returns:
      :class:`Windows` ``(values [m, t, c], features [m, t, x] or None, targets [m, H, c],
      origins [m])``, in the series' float dtype (float32 for integers).

    Raises:
      ValueError: a shape that does not fit, NaN or inf in the series or the features, a window
        longer than the series, or no window whose targets lie in ``[start, stop)``.

    Example:
        >>> w = make_windows(np.arange(10.0), input_len=3, horizon=2, start=6)
        >>> w.values[..., 0].tolist(), w.targets[..., 0].tolist(), w.origins.tolist()
        ([[3.0, 4.0, 5.0], [4.0, 5.0, 6.0], [5.0, 6.0, 7.0]], [[6.0, 7.0], [7.0, 8.0], [8.0, 9.0]], [6, 7, 8])
    """
    arr = _as_series(series, "series")
    input_len = common.int_arg(input_len, "input_len")
    horizon = common.int_arg(horizon, "horizon")
    n = arr.shape[0]
    if input_len + horizon > n:
        raise ValueError(
            f"input_len: a window of {input_len} steps and its {horizon} target(s) need a series of at least "
            f"{input_len + horizon} steps, got a series of {n}"
        )
    stop = n if stop is None else stop
    start = common.int_arg(start, "start", minimum=0)
    stop = common.int_arg(stop, "stop", minimum=0)
    if not start < stop <= n:
        raise ValueError(f"start, stop: expected 0 <= start < stop <= n = {n}, got start={start}, stop={stop}")
    values, targets = time_series.time_series_windows(arr, input_len, horizon)  # checks NaN, names the step
    origins = np.arange(len(values), dtype=np.int32) + input_len
    keep = (origins >= start) & (origins + horizon <= stop)
    if not keep.any():
        raise ValueError(
            f"start, stop: no window of {input_len} steps has its {horizon} target(s) in steps [{start}, {stop}) "
            f"(the first window forecasts from step {input_len})"
        )
    windows = None
    if features is not None:
        feats = _as_series(features, "features")
        if feats.shape[0] != n:
            raise ValueError(f"features: expected {n} steps (one row per step of the series), got shape {feats.shape}")
        bad = np.flatnonzero(~np.isfinite(feats).all(axis=1))
        if bad.size:
            raise ValueError(f"features: expected finite values, got {feats[bad[0]].tolist()} at step {bad[0]}")
        windows = np.lib.stride_tricks.sliding_window_view(feats[: n - horizon], input_len, axis=0)  # [m, x, t]
        windows = np.ascontiguousarray(np.swapaxes(windows, 1, 2))[keep]
    return Windows(values[keep], windows, targets[keep], origins[keep])


# ----------------------------------------------------------------------------- normalisation


class Scaler(NamedTuple):
    r"""Standardisation per channel, :math:`z = (v - \mu) / \sigma`; a pytree, stored in the params.

    Example:
        >>> scaler = Scaler(jnp.array([10.0]), jnp.array([2.0]))
        >>> z = scaler.transform(np.array([[12.0], [9.0]]))
        >>> z.tolist(), scaler.inverse(z).tolist()
        ([[1.0], [-0.5]], [[12.0], [9.0]])
    """

    mean: Array  # [c]
    scale: Array  # [c], positive

    def transform(self, values: Array) -> Array:
        """``[..., c]`` values -> standardised values, in the scaler's dtype."""
        return (jnp.asarray(values).astype(self.mean.dtype) - self.mean) / self.scale

    def inverse(self, z: Array) -> Array:
        """Standardised ``[..., c]`` -> values: ``inverse(transform(v)) == v`` up to rounding."""
        return jnp.asarray(z).astype(self.mean.dtype) * self.scale + self.mean


def fit_scaler(values, where=None, *, name: str = "values") -> Scaler:
    """The mean and standard deviation of each channel (the last axis) over all other axes.

    Fit it on the training data only, so no statistic of the validation or test steps leaks into
    the model. A constant channel gets ``scale = 1``.

    Args:
      values: ``[n]`` (one channel) or ``[..., c]`` finite values.
      where: booleans of ``values``' leading shape: the entries to use (e.g. the valid steps of
        padded sequences); None: all.
      name: the argument's name in error messages.

    Returns:
      :class:`Scaler` ``(mean [c], scale [c])``, JAX arrays of ``values``' float dtype (float32 for
      integers; float64 only with x64 on), computed in float64.

    Example:
        >>> scaler = fit_scaler(np.array([1.0, 2.0, 3.0, 4.0]))
        >>> scaler.mean.tolist(), round(float(scaler.scale[0]), 4), scaler.transform(np.array([[2.5]])).tolist()
        ([2.5], 1.118, [[0.0]])
    """
    arr = np.asarray(values)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.dtype(np.float32)
    arr = arr.reshape(-1, 1) if arr.ndim == 1 else arr.reshape(-1, arr.shape[-1]) if arr.ndim > 1 else arr
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected shape [n] or [..., c], got {np.shape(values)}")
    if where is not None:
        mask = np.asarray(where)
        if mask.dtype != bool or mask.shape != np.shape(values)[:-1]:
            raise ValueError(
                f"where: expected booleans of shape {np.shape(values)[:-1]} (values' leading axes), "
                f"got {mask.dtype} {mask.shape}"
            )
        arr = arr[mask.reshape(-1)]
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one value to fit the scaler on, got none")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    mean, std = arr.mean(axis=0, dtype=np.float64), arr.std(axis=0, dtype=np.float64)
    return Scaler(jnp.asarray(mean.astype(dtype)), jnp.asarray(np.where(std > 0, std, 1.0).astype(dtype)))


def _identity_scaler(size: int, dtype) -> Scaler:
    return Scaler(jnp.zeros((size,), dtype), jnp.ones((size,), dtype))


def _checked_scaler(scaler, size: int, dtype, name: str) -> Scaler:
    if scaler is None:
        return _identity_scaler(size, dtype)
    if not isinstance(scaler, Scaler):
        raise TypeError(f"{name}: expected a Scaler (from fit_scaler), got {type(scaler).__name__}")
    for part in scaler:
        if np.shape(part) != (size,):
            raise ValueError(
                f"{name}: expected mean and scale of shape ({size},), got {np.shape(scaler.mean)} and "
                f"{np.shape(scaler.scale)}"
            )
    return Scaler(jnp.asarray(scaler.mean, dtype), jnp.asarray(scaler.scale, dtype))


# ----------------------------------------------------------------------------- model


class ForecasterParams(NamedTuple):
    net: ClassifierParams  # the encoder and the dense head (trained)
    scaler: Scaler  # mean [c], scale [c] of the series (fixed: no gradient reaches it)
    feature_scaler: Scaler | None  # mean [x], scale [x] of the extra features; None without them


@dataclasses.dataclass(frozen=True)
class Forecaster(Dtypes):
    """An RNN forecaster: a window of past values (and extra features) -> the next ``horizon`` values.

    The network is the many-to-one :class:`rnnjax.models.SequenceClassifier` ``(encoder, H * c,
    c + x)`` with ``"last"`` pooling, its ``H * c`` outputs read as the next ``H`` values in
    standardised units; the :class:`Scaler` in the params maps values in and out, so ``apply``,
    ``predict`` and ``rollout`` take and give values in the series' own units. The scalers get no
    gradient (``lax.stop_gradient``): an optimizer leaves them as they are unless it decays
    weights (use :func:`fit`, which trains only the network, or mask them with ``optax.masked``).

    Args:
      encoder: a cell (run as ``rj.RNN(cell)``), or an ``RNN``, ``Bidirectional`` or ``Stack`` layer.
      input_len: ``t``, the past steps each forecast reads.
      horizon: ``H``, the steps the head forecasts at once (1: one step ahead; more: direct
        multi-step).
      channels: ``c``, the series' variables (all are read and all are forecast).
      num_features: ``x``, extra features per step (read, not forecast); 0: none.
      dtype, param_dtype: as in :class:`rnnjax.models.SequenceClassifier` (the scalers are kept
        in ``param_dtype``, float32 by default).

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> model = Forecaster(rj.LSTMCell(16), input_len=24, horizon=3, channels=2, num_features=1)
        >>> params = model.init(jax.random.key(0))
        >>> model.apply(params, jnp.ones((24, 2)), features=jnp.zeros((24, 1))).shape
        (3, 2)
    """

    encoder: Any
    input_len: int
    horizon: int = 1
    _: dataclasses.KW_ONLY
    channels: int = 1
    num_features: int = 0

    def __post_init__(self):
        checks.positive_int(self.input_len, "input_len")
        checks.positive_int(self.horizon, "horizon")
        checks.positive_int(self.channels, "channels")
        checks.non_negative_int(self.num_features, "num_features")
        self.net  # noqa: B018 -- checks the encoder now, not at the first call

    @property
    def net(self) -> SequenceClassifier:
        """The network in standardised units: ``[t, c + x] -> [H * c]``."""
        return SequenceClassifier(
            self.encoder,
            self.horizon * self.channels,
            self.channels + self.num_features,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    def init(self, key: PRNGKey, scaler: Scaler | None = None, feature_scaler: Scaler | None = None):
        """``ForecasterParams(net, scaler, feature_scaler)``.

        Args:
          key: PRNG key of the network's initialisation.
          scaler: the series' :class:`Scaler` (``[c]``; :func:`fit_scaler` on the training steps);
            None: the identity (mean 0, scale 1).
          feature_scaler: the extra features' :class:`Scaler` (``[x]``); None: the identity. Only
            with ``num_features > 0``.

        Example:
            >>> import rnnjax as rj
            >>> model = Forecaster(rj.GRUCell(4), input_len=8)
            >>> params = model.init(jax.random.key(0), fit_scaler(np.arange(10.0)))
            >>> params.scaler.mean.tolist(), params.feature_scaler
            ([4.5], None)
        """
        dtype = self._param_dtype
        scaler = _checked_scaler(scaler, self.channels, dtype, "scaler")
        if self.num_features == 0:
            if feature_scaler is not None:
                raise ValueError("feature_scaler: the model has num_features=0, so it takes no feature_scaler")
        else:
            feature_scaler = _checked_scaler(feature_scaler, self.num_features, dtype, "feature_scaler")
        return ForecasterParams(self.net.init(key), scaler, feature_scaler)

    def _inputs(self, params: ForecasterParams, values, features) -> Array:
        """The network's input ``[t, c + x]``, standardised."""
        values = checks.floating(values, "values")
        if values.shape != (self.input_len, self.channels):
            hint = " (one window; predict and rollout take a batch)" if values.ndim == 3 else ""
            raise ValueError(
                f"values: expected shape [t, c] = ({self.input_len}, {self.channels}){hint}, got {tuple(values.shape)}"
            )
        if checks.is_checking():
            checks.value_check(jnp.all(jnp.isfinite(values)), "values: expected finite values, got NaN or inf")
        z = lax.stop_gradient(params.scaler).transform(values)
        if self.num_features == 0:
            if features is not None:
                raise ValueError(
                    f"features: the model has num_features=0, got features of shape {tuple(jnp.shape(features))}"
                )
            return z
        if features is None:
            raise ValueError(f"features: the model reads {self.num_features} extra features per step, got None")
        features = checks.floating(features, "features")
        if features.shape != (self.input_len, self.num_features):
            raise ValueError(
                f"features: expected shape [t, x] = ({self.input_len}, {self.num_features}), "
                f"got {tuple(features.shape)}"
            )
        return jnp.concatenate([z, lax.stop_gradient(params.feature_scaler).transform(features)], axis=-1)

    def _standardized(self, params: ForecasterParams, values, features, key) -> Array:
        """The forecast ``[H, c]`` in standardised units."""
        out = self.net.apply(params.net, self._inputs(params, values, features), key=key)
        return out.reshape(self.horizon, self.channels)

    def apply(self, params: ForecasterParams, values: Array, features: Array | None = None, key=None) -> Array:
        """Forecast the ``H`` steps after ONE window, in the series' units.

        Args:
          params: from :meth:`init`.
          values: ``[t, c]`` the latest ``t`` values.
          features: ``[t, x]`` the extra features of those steps (with ``num_features > 0``).
          key: PRNG key for the encoder's dropout (a ``Stack`` with ``dropout``); None: none.

        Returns:
          ``[H, c]``, in the scaler's dtype.

        Example:
            >>> import rnnjax as rj
            >>> model = Forecaster(rj.GRUCell(4), input_len=8, horizon=2)
            >>> model.apply(model.init(jax.random.key(0)), jnp.ones((8, 1))).shape
            (2, 1)
        """
        scaler = lax.stop_gradient(params.scaler)
        return scaler.inverse(self._standardized(params, values, features, key))

    def loss(self, params: ForecasterParams, batch: Windows, key: PRNGKey | None = None) -> Array:
        """Mean squared error in standardised units over a batch of windows: the ``loss_fn`` of a train step.

        Args:
          params: from :meth:`init`.
          batch: :class:`Windows` with ``values [b, t, c]``, ``features [b, t, x]`` (or None) and
            ``targets [b, H, c]`` (``origins`` is not read).
          key: PRNG key for dropout, split over the batch; None: no dropout.

        Returns:
          A scalar: the mean over the batch, the horizon and the channels of
          ``((forecast - target) / scale) ** 2``.

        Example:
            >>> import rnnjax as rj
            >>> model = Forecaster(rj.GRUCell(4), input_len=3)
            >>> batch = make_windows(np.arange(12.0), 3, start=6)
            >>> float(model.loss(model.init(jax.random.key(0)), batch)) > 0
            True
        """
        values = checks.floating(batch.values, "batch.values")
        if values.ndim != 3:
            raise ValueError(f"batch.values: expected shape [b, t, c], got {tuple(values.shape)}")
        keys = None if key is None else jax.random.split(key, values.shape[0])
        forecast = jax.vmap(self._standardized, (None, 0, 0, None if keys is None else 0))(
            params, values, batch.features, keys
        )
        targets = checks.floating(batch.targets, "batch.targets")
        if targets.shape != forecast.shape:
            raise ValueError(f"batch.targets: expected shape [b, H, c] = {forecast.shape}, got {targets.shape}")
        return jnp.mean((forecast - lax.stop_gradient(params.scaler).transform(targets)) ** 2)

    def predict(self, params: ForecasterParams, values: Array, features: Array | None = None) -> Array:
        """One-step or direct multi-step forecasts for a batch of windows (jitted, vmapped :meth:`apply`).

        Args:
          params: from :meth:`init`.
          values: ``[m, t, c]``, e.g. :attr:`Windows.values`.
          features: ``[m, t, x]`` (with ``num_features > 0``).

        Returns:
          ``[m, H, c]``: row ``i`` forecasts the ``H`` steps after window ``i``.

        Example:
            >>> import rnnjax as rj
            >>> model = Forecaster(rj.GRUCell(4), input_len=8, horizon=3)
            >>> model.predict(model.init(jax.random.key(0)), np.ones((5, 8, 1))).shape
            (5, 3, 1)
        """
        values = self._batch(values, "values")
        return _predict(self, params, values, features)

    def rollout(self, params: ForecasterParams, values: Array, steps: int, features: Array | None = None) -> Array:
        r"""Recursive multi-step forecasts: each forecast is fed back as the newest value of the window.

        .. math::
            \hat v_{k} = \mathrm{apply}(\hat w_{k})_0, \qquad
            \hat w_{k+1} = [\hat w_{k}[1:];\ \hat v_{k}], \qquad k = 1 \dots s

        from the observed window :math:`\hat w_1`; with a direct head (``horizon > 1``) only its
        first step is used. A :func:`jax.lax.scan` over ``s`` steps with fixed shapes, jitted once
        per ``s`` and batched over windows with :func:`jax.vmap`: equal to a Python loop of
        :meth:`apply` calls.

        Args:
          params: from :meth:`init`.
          values: ``[m, t, c]`` observed windows.
          steps: ``s >= 1``, the steps to forecast.
          features: ``[m, t + s, x]``: the extra features of each window's steps and of the ``s``
            forecast steps (the features of step ``k`` enter with its forecast; the last row is
            not read). Required with ``num_features > 0``.

        Returns:
          ``[m, s, c]``: row ``i`` forecasts the ``s`` steps after window ``i``.

        Example:
            >>> import rnnjax as rj
            >>> model = Forecaster(rj.GRUCell(4), input_len=8)
            >>> model.rollout(model.init(jax.random.key(0)), np.ones((5, 8, 1)), steps=11).shape
            (5, 11, 1)
        """
        checks.positive_int(steps, "steps")
        values = self._batch(values, "values")
        if features is not None:
            features = checks.floating(features, "features")
            expected = (values.shape[0], self.input_len + steps, self.num_features)
            if features.shape != expected:
                raise ValueError(
                    f"features: expected shape [m, t + s, x] = {expected} (the window's steps and the {steps} "
                    f"forecast steps), got {tuple(features.shape)}"
                )
        elif self.num_features:
            raise ValueError(f"features: the model reads {self.num_features} extra features per step, got None")
        return _rollout(self, params, values, features, int(steps))

    def _batch(self, values, name: str) -> Array:
        values = checks.floating(values, name)
        if values.ndim != 3 or values.shape[1:] != (self.input_len, self.channels):
            raise ValueError(
                f"{name}: expected shape [m, t, c] = (m, {self.input_len}, {self.channels}) (a batch of windows), "
                f"got {tuple(values.shape)}"
            )
        return values


@functools.partial(jax.jit, static_argnames=("model",))
def _predict(model: Forecaster, params: ForecasterParams, values: Array, features: Array | None) -> Array:
    return jax.vmap(model.apply, (None, 0, 0))(params, values, features)


@functools.partial(jax.jit, static_argnames=("model", "steps"))
def _rollout(model: Forecaster, params: ForecasterParams, values: Array, features: Array | None, steps: int):
    t = model.input_len

    def one(window, feats):  # one window [t, c] and its features [t + s, x] (or None)
        past, future = (None, None) if feats is None else (feats[:t], feats[t:])

        def step(carry, feature):
            window, past = carry
            forecast = model.apply(params, window, past)[0]  # the next step [c]
            window = jnp.concatenate([window[1:], forecast[None].astype(window.dtype)])
            if past is not None:
                past = jnp.concatenate([past[1:], feature[None]])
            return (window, past), forecast

        return lax.scan(step, (window, past), future, length=steps)[1]

    return jax.vmap(one)(values, features)


# ----------------------------------------------------------------------------- training


class ForecastFit(NamedTuple):
    params: ForecasterParams  # the params of the best validation step (the last without validation)
    best_step: int  # the step those params are from
    history: dict  # step, train_loss (that step's minibatch), valid_rmse (with validation): lists


def fit(
    model: Forecaster,
    series,
    *,
    features=None,
    train_end: int | None = None,
    valid_end: int | None = None,
    seed: int = 0,
    num_steps: int = 1000,
    batch_size: int = 32,
    optimizer: optax.GradientTransformation | None = None,
    clip_norm: float | None = 1.0,
    eval_every: int = 25,
    devices: int | None = 1,
    progress: bool = False,
) -> ForecastFit:
    """Fit a :class:`Forecaster` on the first ``train_end`` steps of a series; keep the best validation params.

    The :class:`Scaler` of the series (and of the features) is fitted on ``series[:train_end]``
    only and stored in the params. Training windows forecast steps before ``train_end``;
    validation windows forecast steps in ``[train_end, valid_end)`` (reading the steps before
    them). Each step draws ``batch_size`` training windows at random without replacement
    (``numpy.random.default_rng(seed)``) and takes one optimizer step on :meth:`Forecaster.loss`
    with the gradient clipped to ``clip_norm`` (:func:`rnnjax.train.make_train_step`; data-parallel
    over ``devices`` with :func:`rnnjax.parallel.make_train_step`). Every ``eval_every`` steps and
    at the end the validation RMSE (in the series' units) is measured, and the params with the
    lowest one are returned (early stopping by selection).

    Args:
      model: the forecaster to train.
      series: ``[n]`` or ``[n, c]`` finite values.
      features: ``[n, x]`` extra features (``model.num_features`` of them), or None.
      train_end: the first step that is not training data; None: ``n`` (no validation).
      valid_end: the end of the validation steps; None: ``n``. Validation needs
        ``train_end < valid_end``.
      seed: the network's initialisation (``jax.random.key(seed)``) and the minibatch order.
      num_steps: optimizer steps.
      batch_size: windows per step (fewer if there are fewer training windows).
      optimizer: an optax optimizer; None: ``optax.adam(3e-3)``.
      clip_norm: clip the global gradient norm to this (None: no clipping).
      eval_every: steps between validation measurements (and history records).
      devices: devices to train on, data-parallel (None: all; ``batch_size`` must divide by it).
      progress: show a progress bar.

    Returns:
      :class:`ForecastFit` ``(params, best_step, history)``.

    Example:
        >>> import rnnjax as rj
        >>> series = np.sin(np.arange(200) / 4.0)
        >>> model = Forecaster(rj.GRUCell(8), input_len=10)
        >>> run = fit(model, series, train_end=150, valid_end=200, num_steps=20, eval_every=10)
        >>> run.history["step"], run.best_step in (10, 20)
        ([10, 20], True)
    """
    from tqdm.auto import tqdm

    from rnnjax import parallel

    if not isinstance(model, Forecaster):
        raise TypeError(f"model: expected a Forecaster, got {type(model).__name__}")
    arr = _as_series(series, "series")
    if arr.shape[1] != model.channels:
        raise ValueError(f"series: expected {model.channels} channel(s) (model.channels), got shape {np.shape(series)}")
    if (features is None) != (model.num_features == 0):
        raise ValueError(
            f"features: the model reads {model.num_features} extra features per step, got "
            f"{'None' if features is None else f'shape {np.shape(features)}'}"
        )
    n = arr.shape[0]
    train_end = n if train_end is None else common.int_arg(train_end, "train_end")
    valid_end = n if valid_end is None else common.int_arg(valid_end, "valid_end")
    if not train_end <= valid_end <= n:
        raise ValueError(
            f"train_end, valid_end: expected train_end <= valid_end <= n = {n}, got {train_end} and {valid_end}"
        )
    for value, name in ((num_steps, "num_steps"), (batch_size, "batch_size"), (eval_every, "eval_every")):
        checks.positive_int(value, name)
    checks.non_negative_int(seed, "seed")

    t, horizon = model.input_len, model.horizon
    train = make_windows(arr, t, horizon, features=features, stop=train_end)
    valid = (
        make_windows(arr, t, horizon, features=features, start=train_end, stop=valid_end)
        if valid_end > train_end
        else None
    )
    scaler = fit_scaler(arr[:train_end], name="series")
    feature_scaler = (
        None if features is None else fit_scaler(_as_series(features, "features")[:train_end], name="features")
    )

    optimizer = optax.adam(3e-3) if optimizer is None else optimizer
    key = jax.random.key(seed)
    params = model.init(key, scaler, feature_scaler)

    def loss_fn(net, batch, key):  # the network only: the scalers stay as fitted
        return model.loss(params._replace(net=net), batch, key)

    train_step = parallel.make_train_step(loss_fn, optimizer, devices=devices, clip_norm=clip_norm)
    net, opt_state = params.net, optimizer.init(params.net)
    rng = np.random.default_rng(seed)
    size = min(batch_size, len(train.values))
    best, best_rmse, best_step = net, np.inf, num_steps
    history = {"step": [], "train_loss": []} | ({"valid_rmse": []} if valid is not None else {})
    with tqdm(total=num_steps, disable=not progress, unit="step", leave=False) as bar:
        for step in range(1, num_steps + 1):
            pick = rng.choice(len(train.values), size=size, replace=False)
            batch = Windows(*(None if a is None else a[pick] for a in train))
            net, opt_state, metrics = train_step(net, opt_state, batch, jax.random.fold_in(key, step))
            if step % eval_every == 0 or step == num_steps:
                history["step"].append(step)
                history["train_loss"].append(float(metrics["loss"]))
                if valid is not None:
                    rmse = _rmse(model.predict(params._replace(net=net), valid.values, valid.features), valid.targets)
                    history["valid_rmse"].append(rmse)
                    if rmse < best_rmse:
                        best, best_rmse, best_step = net, rmse, step
                    bar.set_postfix(valid_rmse=f"{rmse:.4g}")
            bar.update(1)
    if valid is None:
        best = net
    return ForecastFit(params._replace(net=best), best_step, history)


def _rmse(forecasts, targets) -> float:
    return float(np.sqrt(np.mean((np.asarray(forecasts, np.float64) - np.asarray(targets, np.float64)) ** 2)))
