r"""Fraud detection on card-transaction histories: a data generator, a sequence classifier, the metrics.

=========================  ===========================================================================
what                       names
=========================  ===========================================================================
data                       :func:`make_histories` -> :class:`Transactions`; :data:`PATTERNS`,
                           :data:`FEATURE_NAMES`, :data:`CATEGORIES`, :data:`CITIES`
model                      :class:`FraudDetector` (``init``, ``apply``, ``loss``, ``scores``)
training                   :func:`fit` -> :class:`DetectorFit`
metrics                    :func:`roc_curve`, :func:`roc_auc`, :func:`precision_recall_curve`,
                           :func:`average_precision`, :func:`recall_at_fpr`, :func:`fraud_metrics`
=========================  ===========================================================================

A history is a sequence of transactions, ``xs [t, f]`` with ``length`` valid steps and a label
(1: fraud). The detector standardises the features with a :class:`~rnnjax.apps.forecasting.Scaler`
fitted on the valid steps of the training histories and stored in its params, runs a many-to-one
:class:`rnnjax.models.SequenceClassifier` (an encoder, its output at the last valid step, a
``Dense(2)``) and reads :math:`P(\text{fraud}) = \mathrm{softmax}(\text{logits})_1`. Any data of
that shape works: your own ``xs [n, t, f]``, ``lengths [n]`` and ``labels [n]``.

The generator (:func:`make_histories`) makes synthetic histories where fraud shows only across
several transactions: each cardholder has a home city, a spending level, favourite merchant
categories, a daily rhythm and sometimes travels; a fraudulent history ends with one of three
patterns (:data:`PATTERNS`) made of transactions that honest cardholders make too:

- **card testing**: 2-6 small online charges minutes apart, then one large purchase;
- **location jumps** (a cloned card): 3-5 transactions alternating between the home city and a
  city over 900 km away, 1-6 hours apart, perhaps one or two purchases more where the card is;
- **merchant sequence** (account takeover): a run of 3-5 gift cards, money transfers and crypto.

Each transaction has :data:`NUM_FEATURES` = 20 features (:data:`FEATURE_NAMES`): log amount, log
hours since the previous transaction, log km from the previous transaction and from home, the
hour of day (sin, cos), online or not, and the merchant category (13, one-hot).

Shape letters: ``n`` histories, ``t`` transactions per history (padded), ``f`` features.

Example:
    >>> import rnnjax as rj
    >>> from rnnjax.apps import fraud
    >>> train, test = fraud.make_histories(0, 256), fraud.make_histories(1, 128)
    >>> model = fraud.FraudDetector(rj.GRUCell(8))
    >>> run = fraud.fit(model, train.xs, train.labels, train.lengths, num_steps=5)
    >>> scores = model.scores(run.params, test.xs, test.lengths)
    >>> metrics = fraud.fraud_metrics(test.labels, scores, test.patterns)
    >>> scores.shape, sorted(metrics["recall_by_pattern"]) == sorted(fraud.PATTERNS)
    ((128,), True)

References:
  Jurgovsky et al., "Sequence classification for credit-card fraud detection", Expert Systems with
  Applications 2018; Davis & Goadrich, "The relationship between precision-recall and ROC
  curves", ICML 2006.
"""

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnjax._src import checks
from rnnjax._src.dtypes import Dtypes
from rnnjax.apps.forecasting import Scaler, fit_scaler
from rnnjax.data import common
from rnnjax.models import ClassifierParams, SequenceClassifier
from rnnjax.typing import Array, PRNGKey

__all__ = [
    "CATEGORIES",
    "CITIES",
    "FEATURE_NAMES",
    "NUM_FEATURES",
    "PATTERNS",
    "SEQ_LEN",
    "DetectorFit",
    "DetectorParams",
    "FraudDetector",
    "Transactions",
    "average_precision",
    "fit",
    "fraud_metrics",
    "make_histories",
    "precision_recall_curve",
    "recall_at_fpr",
    "roc_auc",
    "roc_curve",
]

# ----------------------------------------------------------------------------- the generator

SEQ_LEN = 32
"""Transactions per generated history (the default of :func:`make_histories`)."""
CITIES = {  # name: (latitude, longitude)
    "London": (51.5, -0.1), "Manchester": (53.5, -2.2), "Paris": (48.9, 2.4), "Berlin": (52.5, 13.4),
    "Madrid": (40.4, -3.7), "Rome": (41.9, 12.5), "Warsaw": (52.2, 21.0), "Stockholm": (59.3, 18.1),
    "New York": (40.7, -74.0), "Lagos": (6.5, 3.4), "Dubai": (25.2, 55.3), "Bangkok": (13.8, 100.5),
}  # fmt: skip
"""The cities of the generator, ``name: (latitude, longitude)``; cardholders live in the first 8."""
CATEGORIES = (
    "grocery", "restaurant", "fuel", "transport", "pharmacy", "clothing", "online retail", "subscription",
    "electronics", "travel", "gift card", "money transfer", "crypto",
)  # fmt: skip
"""Merchant categories, in the order of the one-hot features."""
PATTERNS = ("card testing", "location jumps", "merchant sequence")
"""The fraud patterns; :attr:`Transactions.patterns` holds an index into this (-1: honest)."""
FEATURE_NAMES = (
    "log amount", "log1p hours since previous", "log1p km from previous", "log1p km from home",
    "hour of day (sin)", "hour of day (cos)", "online", *(f"category: {c}" for c in CATEGORIES),
)  # fmt: skip
"""The name of each feature of a transaction, in order."""
NUM_FEATURES = len(FEATURE_NAMES)

_CATEGORY = {c: i for i, c in enumerate(CATEGORIES)}
_EVERYDAY = ("grocery", "restaurant", "fuel", "transport", "pharmacy", "clothing", "online retail", "subscription")
_RISKY = ("gift card", "money transfer", "crypto")
_ONLINE = {"online retail", "subscription", "gift card", "money transfer", "crypto"}
_TYPICAL_AMOUNT = {  # median amount in the cardholder's currency units, before their spending level
    "grocery": 45, "restaurant": 30, "fuel": 55, "transport": 8, "pharmacy": 15, "clothing": 60,
    "online retail": 35, "subscription": 12, "electronics": 250, "travel": 300, "gift card": 50,
    "money transfer": 150, "crypto": 200,
}  # fmt: skip
_LONGEST_TAIL = 7  # transactions: card testing 6 + 1, location jumps 5 + 2


class Transactions(NamedTuple):
    """Transaction histories: features, lengths, labels (and the fraud pattern of each, if known)."""

    xs: np.ndarray  # [n, t, f] float32 features of each transaction (zeros after the length)
    lengths: np.ndarray  # [n] int32 valid transactions per history
    labels: np.ndarray  # [n] int32, 1: fraud
    patterns: np.ndarray | None  # [n] int32 index into PATTERNS, -1: honest; None if unknown


@functools.cache
def _km(a: str, b: str) -> float:
    """Great-circle distance between two cities (haversine, km)."""
    (lat1, lon1), (lat2, lon2) = np.radians(CITIES[a]), np.radians(CITIES[b])
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return float(2 * 6371 * np.arcsin(np.sqrt(h)))


def _far_city(rng, home):
    return rng.choice([c for c in CITIES if _km(c, home) > 900])


def _cardholder(rng) -> dict:
    """A cardholder's habits. Some make many small charges, some often buy gift cards, send money or buy
    crypto, some travel a lot: in counts, their histories look like the fraud patterns; only the order differs."""
    home = rng.choice(list(CITIES)[:8])  # most cardholders live in Europe
    weights = rng.dirichlet(np.full(len(_EVERYDAY), 0.7))
    return {
        "home": home,
        "spend": float(np.exp(rng.normal(0, 0.4))),  # spending level
        "categories": weights,
        "rate_per_day": float(np.exp(rng.normal(np.log(2.0), 0.5))),
        "night_owl": bool(rng.random() < 0.15),
        "small_rate": float(rng.uniform(0.1, 0.25) if rng.random() < 0.3 else 0.03),
        "risky_rate": float(rng.uniform(0.1, 0.25) if rng.random() < 0.3 else 0.03),
        "trip_rate": float(rng.uniform(0.05, 0.15) if rng.random() < 0.3 else 0.0),
    }


def _honest_transaction(rng, person, city):
    """One ordinary purchase: mostly everyday categories, sometimes a rare one (the decoys)."""
    roll = rng.random()
    if roll < 0.04:
        return _large_purchase(rng, person, city)  # like card testing's last step
    if roll < 0.04 + person["risky_rate"]:
        category = rng.choice(list(_RISKY))  # like an account takeover
    elif roll < 0.25 and city != person["home"]:
        category = "travel"
    else:
        category = _EVERYDAY[rng.choice(len(_EVERYDAY), p=person["categories"])]
    amount = _TYPICAL_AMOUNT[category] * person["spend"] * np.exp(rng.normal(0, 0.6))
    if rng.random() < person["small_rate"]:
        amount = rng.uniform(0.5, 3.0)  # a small charge (parking, a coffee, an app), like card testing
    return category, float(amount), city


def _large_purchase(rng, person, city):
    category = rng.choice(["electronics", "electronics", "travel", "gift card"])
    amount = _TYPICAL_AMOUNT["electronics"] * person["spend"] * np.exp(rng.normal(0.5, 0.6))
    return category, float(amount), city


def _honest_history(rng, person, n):
    """``n`` honest transactions: (hours since the previous, category, amount, city); trips are one-way stays."""
    rows, city, hour = [], person["home"], rng.uniform(0, 24)
    trip_left = 0
    for _ in range(n):
        if rng.random() < 0.3:
            gap = rng.uniform(0.02, 1.0)  # a shopping session: purchases minutes apart
        else:
            gap = rng.exponential(24 / person["rate_per_day"])
        hour = (hour + gap) % 24
        if not person["night_owl"] and (hour < 7 or hour > 23):  # most people sleep: move to the morning
            gap += (7 - hour) % 24
            hour = 7 + rng.uniform(0, 2)
        if trip_left == 0 and rng.random() < person["trip_rate"]:
            destination = _far_city(rng, person["home"])
            trip_left = int(rng.integers(2, 7))  # stays for a few transactions
            gap = max(gap, _km(city, destination) / 800 + rng.uniform(1, 4))  # a flight, then the airport
            city = destination
        elif trip_left > 0:
            trip_left -= 1
            if trip_left == 0:
                gap = max(gap, _km(city, person["home"]) / 800 + rng.uniform(1, 4))
                city = person["home"]
        rows.append((gap, *_honest_transaction(rng, person, city)))
    return rows


def _fraud_tail(rng, person, pattern, city):
    """The fraudulent last transactions of a history."""
    rows = []
    if pattern == "card testing":
        for _ in range(int(rng.integers(2, 7))):
            category = rng.choice(["online retail", "subscription", "gift card"])
            rows.append((rng.uniform(0.01, 0.3), category, float(rng.uniform(0.5, 3.0)), city))
        rows.append((rng.uniform(0.02, 1.0), *_large_purchase(rng, person, city)))
    elif pattern == "location jumps":
        away = _far_city(rng, person["home"])
        for i in range(int(rng.integers(3, 6))):
            where = away if i % 2 == 0 else person["home"]
            category, amount, _ = _honest_transaction(rng, person, where)
            rows.append((rng.uniform(1.0, 6.0), category, amount, where))
        for _ in range(int(rng.integers(0, 3))):  # the card may stay where it is for a purchase or two
            rows.append((rng.exponential(4.0), *_honest_transaction(rng, person, where)))
    else:  # merchant sequence
        for _ in range(int(rng.integers(3, 6))):
            category = rng.choice(list(_RISKY))
            amount = float(_TYPICAL_AMOUNT[category] * person["spend"] * np.exp(rng.normal(0, 0.6)))
            rows.append((rng.exponential(3.0), category, amount, city))
    return rows


def _featurize(rows, home) -> np.ndarray:
    """Per-transaction features ``[len(rows), NUM_FEATURES]``; hours, km and amounts on log scales."""
    out = np.zeros((len(rows), NUM_FEATURES), np.float32)
    prev_city, hour = home, 12.0
    for i, (gap, category, amount, city) in enumerate(rows):
        hour = (hour + gap) % 24
        angle = 2 * np.pi * hour / 24
        out[i, :7] = (
            np.log(amount),
            np.log1p(gap),
            np.log1p(_km(prev_city, city)),
            np.log1p(_km(home, city)),
            np.sin(angle),
            np.cos(angle),
            category in _ONLINE,
        )
        out[i, 7 + _CATEGORY[category]] = 1.0
        prev_city = city
    return out


def make_histories(seed, n: int, fraud_rate: float = 0.15, *, seq_len: int = SEQ_LEN) -> Transactions:
    """``n`` synthetic card histories, a share ``fraud_rate`` of them ending in a fraud pattern.

    Each history is a new cardholder's ``seq_len`` honest transactions; in a fraudulent one (each
    history with probability ``fraud_rate``, its pattern uniform over :data:`PATTERNS`) the last
    2-7 of them are replaced by the pattern's transactions. The same seed gives the same arrays.

    Args:
      seed: an int, a sequence of ints, or a :class:`numpy.random.Generator` (advanced), as in
        :mod:`rnnjax.data`.
      n: histories, ``>= 1``.
      fraud_rate: the probability that a history is fraudulent, in ``[0, 1]``.
      seq_len: transactions per history, ``>= 8`` (the longest pattern is 7).

    Returns:
      :class:`Transactions` ``(xs [n, seq_len, 20] float32, lengths [n] (all seq_len), labels [n],
      patterns [n])``: ``labels == (patterns >= 0)``.

    Example:
        >>> data = make_histories(0, 100, fraud_rate=0.3)
        >>> data.xs.shape, int(data.labels.sum()), np.bincount(data.patterns + 1).tolist()
        ((100, 32, 20), 25, [75, 9, 5, 11])
    """
    rng = common.rng(seed)
    n = common.int_arg(n, "n")
    seq_len = common.int_arg(seq_len, "seq_len", minimum=_LONGEST_TAIL + 1)
    if isinstance(fraud_rate, bool) or not isinstance(fraud_rate, int | float) or not 0 <= fraud_rate <= 1:
        raise ValueError(f"fraud_rate: expected a probability in [0, 1], got {fraud_rate!r}")
    xs = np.zeros((n, seq_len, NUM_FEATURES), np.float32)
    patterns = np.where(rng.random(n) < fraud_rate, rng.integers(len(PATTERNS), size=n), -1).astype(np.int32)
    for i in range(n):
        person = _cardholder(rng)
        rows = _honest_history(rng, person, seq_len)
        if patterns[i] >= 0:  # the card's real history, then the fraud replaces its end
            tail = _fraud_tail(rng, person, PATTERNS[patterns[i]], rows[-1][3])
            rows = rows[: seq_len - len(tail)] + tail
        xs[i] = _featurize(rows, person["home"])
    return Transactions(xs, np.full(n, seq_len, np.int32), (patterns >= 0).astype(np.int32), patterns)


# ----------------------------------------------------------------------------- the detector


class DetectorParams(NamedTuple):
    net: ClassifierParams  # the encoder and the Dense(2) head (trained)
    scaler: Scaler  # mean [f], scale [f] of the features (fixed: no gradient reaches it)


def _histories(xs, lengths, labels=None, *, num_features: int | None = None):
    """Checked ``xs [n, t, f]`` (finite floats), ``lengths [n]`` in ``[1, t]`` and ``labels [n]`` in {0, 1}."""
    xs = np.asarray(xs)
    if not np.issubdtype(xs.dtype, np.floating):
        raise TypeError(f"xs: expected floating features, got dtype {xs.dtype}")
    if xs.ndim != 3 or (num_features is not None and xs.shape[2] != num_features):
        raise ValueError(f"xs: expected shape [n, t, f] with f = {num_features or 'f'}, got {xs.shape}")
    n, t, _ = xs.shape
    lengths = np.full(n, t, np.int32) if lengths is None else np.asarray(lengths)
    if not np.issubdtype(lengths.dtype, np.integer) or lengths.shape != (n,):
        raise ValueError(f"lengths: expected integers of shape [n] = ({n},), got {lengths.dtype} {lengths.shape}")
    if np.any((lengths < 1) | (lengths > t)):
        raise ValueError(f"lengths: expected 1 <= length <= t = {t}, got {lengths[(lengths < 1) | (lengths > t)][0]}")
    valid = np.arange(t) < lengths[:, None]
    bad = ~np.isfinite(xs).all(axis=2) & valid
    if bad.any():
        i, step = np.argwhere(bad)[0]
        raise ValueError(f"xs: expected finite features, got NaN or inf in history {i} at step {step}")
    xs = np.where(valid[..., None], xs, np.zeros((), xs.dtype))  # padding: never read, but a NaN there would
    # reach the gradient through the masked steps' (discarded) computations
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,) or not np.isin(labels, (0, 1)).all():
            raise ValueError(f"labels: expected 0 (honest) or 1 (fraud) for each of the {n} histories, got {labels!r}")
        labels = labels.astype(np.int32)
    return xs, lengths.astype(np.int32), labels


@dataclasses.dataclass(frozen=True)
class FraudDetector(Dtypes):
    r"""A many-to-one fraud classifier: ``P(fraud)`` of a transaction history.

    .. math::
        z_i = (x_i - \mu) / \sigma, \qquad
        \mathrm{logits} = \mathrm{SequenceClassifier}(z_{1..n}), \qquad
        P(\text{fraud}) = \mathrm{softmax}(\mathrm{logits})_1

    The :class:`~rnnjax.apps.forecasting.Scaler` in the params gets no gradient; :func:`fit`
    fits it on the training histories and trains the network only.

    Args:
      encoder: a cell (run as ``rj.RNN(cell)``), or an ``RNN``, ``Bidirectional`` or ``Stack`` layer.
      num_features: ``f`` per transaction (:data:`NUM_FEATURES` for :func:`make_histories`).
      pooling: ``"last"`` (the output at the last valid step), ``"mean"`` or ``"max"``, as in
        :class:`rnnjax.models.SequenceClassifier`.
      dtype, param_dtype: as in :class:`rnnjax.models.SequenceClassifier`.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> model = FraudDetector(rj.LSTMCell(16))
        >>> params = model.init(jax.random.key(0))
        >>> model.apply(params, jnp.zeros((32, NUM_FEATURES)), length=20).shape
        (2,)
    """

    encoder: Any
    num_features: int = NUM_FEATURES
    pooling: str = "last"

    def __post_init__(self):
        self.net  # noqa: B018 -- checks the encoder, num_features and pooling now

    @property
    def net(self) -> SequenceClassifier:
        """The network in standardised units: ``[t, f] -> [2]`` logits (honest, fraud)."""
        return SequenceClassifier(
            self.encoder, 2, self.num_features, self.pooling, dtype=self.dtype, param_dtype=self.param_dtype
        )

    def init(self, key: PRNGKey, scaler: Scaler | None = None) -> DetectorParams:
        """``DetectorParams(net, scaler)``; ``scaler`` None is the identity (mean 0, scale 1).

        Example:
            >>> import rnnjax as rj
            >>> params = FraudDetector(rj.GRUCell(4), num_features=3).init(jax.random.key(0))
            >>> params.net.head.w.shape, params.scaler.scale.tolist()
            ((4, 2), [1.0, 1.0, 1.0])
        """
        dtype, f = self._param_dtype, self.num_features
        if scaler is None:
            scaler = Scaler(jnp.zeros((f,), dtype), jnp.ones((f,), dtype))
        elif not isinstance(scaler, Scaler) or any(np.shape(p) != (f,) for p in scaler):
            raise ValueError(f"scaler: expected a Scaler with mean and scale of shape ({f},), got {scaler!r}")
        return DetectorParams(self.net.init(key), Scaler(*(jnp.asarray(p, dtype) for p in scaler)))

    def apply(self, params: DetectorParams, xs: Array, length=None, key: PRNGKey | None = None) -> Array:
        """Logits ``[2]`` (honest, fraud) of ONE history ``xs [t, f]`` with ``length`` valid steps (None: all).

        ``key``: PRNG key for the encoder's dropout (a ``Stack`` with ``dropout``); None: none.

        Example:
            >>> import rnnjax as rj
            >>> model, data = FraudDetector(rj.GRUCell(4)), make_histories(0, 2)
            >>> logits = model.apply(model.init(jax.random.key(0)), data.xs[0], length=10)
            >>> logits.shape, bool(jnp.all(jnp.isfinite(logits)))
            ((2,), True)
        """
        xs = checks.sequence(xs, self.num_features, "xs")
        scaler = jax.lax.stop_gradient(params.scaler)
        return self.net.apply(params.net, scaler.transform(xs), length, key)

    def loss(self, params: DetectorParams, batch: Transactions, key: PRNGKey | None = None) -> Array:
        """Mean cross-entropy over a batch ``(xs [b, t, f], lengths [b], labels [b])``: a train step's ``loss_fn``.

        Example:
            >>> import rnnjax as rj
            >>> model, data = FraudDetector(rj.GRUCell(4)), make_histories(0, 8)
            >>> round(float(model.loss(model.init(jax.random.key(0)), data)), 1)
            0.7
        """
        keys = None if key is None else jax.random.split(key, batch.xs.shape[0])
        logits = jax.vmap(self.apply, (None, 0, 0, None if keys is None else 0))(params, batch.xs, batch.lengths, keys)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(batch.labels)))

    def scores(self, params: DetectorParams, xs, lengths=None) -> Array:
        """``P(fraud) [n]`` of histories ``xs [n, t, f]`` with ``lengths [n]`` (None: all ``t``); jitted.

        Example:
            >>> import rnnjax as rj
            >>> model, data = FraudDetector(rj.GRUCell(4)), make_histories(0, 8)
            >>> model.scores(model.init(jax.random.key(0)), data.xs, data.lengths).shape
            (8,)
        """
        xs, lengths, _ = _histories(xs, lengths, num_features=self.num_features)
        return _scores(self, params, xs, lengths)


@functools.partial(jax.jit, static_argnames=("model",))
def _scores(model: FraudDetector, params: DetectorParams, xs: Array, lengths: Array) -> Array:
    return jax.nn.softmax(jax.vmap(model.apply, (None, 0, 0))(params, xs, lengths))[:, 1]


class DetectorFit(NamedTuple):
    params: DetectorParams  # after the last step
    losses: list  # the training loss of every step (its minibatch)


def fit(
    model: FraudDetector,
    xs,
    labels,
    lengths=None,
    *,
    seed: int = 0,
    num_steps: int = 600,
    batch_size: int = 64,
    optimizer: optax.GradientTransformation | None = None,
    clip_norm: float | None = 1.0,
    devices: int | None = 1,
    progress: bool = False,
) -> DetectorFit:
    """Train a :class:`FraudDetector` on labelled histories.

    The feature :class:`~rnnjax.apps.forecasting.Scaler` is fitted on the valid steps of ``xs``
    and stored in the params. Each step draws ``batch_size`` histories at random without
    replacement (``numpy.random.default_rng(seed)``) and takes one optimizer step on
    :meth:`FraudDetector.loss`, the gradient clipped to ``clip_norm``
    (:func:`rnnjax.parallel.make_train_step`: :func:`rnnjax.train.make_train_step` on one device).

    Args:
      model: the detector to train.
      xs: ``[n, t, f]`` finite features (after ``lengths``, anything: padding is never read).
      labels: ``[n]``, 1 for fraud, 0 for honest.
      lengths: ``[n]`` valid transactions per history, in ``[1, t]``; None: all ``t``.
      seed: the network's initialisation (``jax.random.key(seed)``) and the minibatch order.
      num_steps: optimizer steps.
      batch_size: histories per step (at most ``n``).
      optimizer: an optax optimizer; None: ``optax.adam(3e-3)``.
      clip_norm: clip the global gradient norm (None: no clipping).
      devices: devices to train on, data-parallel (None: all; ``batch_size`` must divide by it).
      progress: show a progress bar.

    Returns:
      :class:`DetectorFit` ``(params, losses)``.

    Example:
        >>> import rnnjax as rj
        >>> data = make_histories(0, 64)
        >>> run = fit(FraudDetector(rj.GRUCell(4)), data.xs, data.labels, data.lengths, num_steps=3, batch_size=16)
        >>> len(run.losses)
        3
    """
    from tqdm.auto import tqdm

    from rnnjax import parallel

    if not isinstance(model, FraudDetector):
        raise TypeError(f"model: expected a FraudDetector, got {type(model).__name__}")
    xs, lengths, labels = _histories(xs, lengths, labels, num_features=model.num_features)
    for value, name in ((num_steps, "num_steps"), (batch_size, "batch_size")):
        checks.positive_int(value, name)
    checks.non_negative_int(seed, "seed")
    if batch_size > len(xs):
        raise ValueError(f"batch_size: expected at most the {len(xs)} histories, got {batch_size}")
    scaler = fit_scaler(xs, np.arange(xs.shape[1]) < lengths[:, None], name="xs")
    optimizer = optax.adam(3e-3) if optimizer is None else optimizer
    key = jax.random.key(seed)
    params = model.init(key, scaler)

    def loss_fn(net, batch, key):  # the network only: the scaler stays as fitted
        return model.loss(params._replace(net=net), batch, key)

    train_step = parallel.make_train_step(loss_fn, optimizer, devices=devices, clip_norm=clip_norm)
    net, opt_state = params.net, optimizer.init(params.net)
    rng = np.random.default_rng(seed)
    losses = []
    for step in tqdm(range(num_steps), disable=not progress, unit="step", leave=False):
        pick = rng.choice(len(xs), size=batch_size, replace=False)
        batch = Transactions(xs[pick], lengths[pick], labels[pick], None)
        net, opt_state, metrics = train_step(net, opt_state, batch, jax.random.fold_in(key, step))
        losses.append(metrics["loss"])  # on the device: read once at the end
    return DetectorFit(params._replace(net=net), [float(x) for x in jax.device_get(losses)])


# ----------------------------------------------------------------------------- metrics


def _labels_scores(labels, scores):
    labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
    if labels.ndim != 1 or not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels: expected a 1-D array of 0 and 1, got shape {labels.shape}")
    if scores.shape != labels.shape:
        raise ValueError(f"scores: expected shape {labels.shape} (one per label), got {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores: expected finite values, got NaN or inf")
    return labels.astype(np.int64), scores


def _ranked(labels, scores):
    """Labels sorted by descending score; the index of the last item of each group of tied scores."""
    order = np.argsort(-scores, kind="stable")
    labels, scores = labels[order], scores[order]
    return labels, np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold, from the highest score down.

    Args:
      labels: ``[n]`` 0 and 1, both present.
      scores: ``[n]`` finite; higher means more likely positive.

    Returns:
      ``(fpr, tpr)``, each ``[k + 1]`` for ``k`` distinct scores, starting at ``(0, 0)`` and ending
      at ``(1, 1)`` (scikit-learn's ``roc_curve(..., drop_intermediate=False)``).

    Example:
        >>> fpr, tpr = roc_curve(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]))
        >>> fpr.tolist(), tpr.tolist()
        ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    labels, scores = _labels_scores(labels, scores)
    positives = int(labels.sum())
    if positives in (0, len(labels)):
        raise ValueError(f"labels: expected both classes for a ROC curve, got {positives} positive(s) of {len(labels)}")
    labels, last_of_tie = _ranked(labels, scores)
    tps = np.cumsum(labels)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def roc_auc(labels, scores) -> float:
    """The area under the ROC curve: the probability that a random positive outscores a random negative.

    Ties between a positive and a negative count half (the trapezoid rule on :func:`roc_curve`).

    Example:
        >>> roc_auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]))
        0.75
    """
    fpr, tpr = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def precision_recall_curve(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at every distinct threshold, from the highest score down.

    Args:
      labels: ``[n]`` 0 and 1, at least one positive.
      scores: ``[n]`` finite.

    Returns:
      ``(precision, recall)``, each ``[k]`` for ``k`` distinct scores, recall increasing.

    Example:
        >>> precision, recall = precision_recall_curve(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]))
        >>> precision.round(3).tolist(), recall.tolist()
        ([1.0, 0.5, 0.667, 0.5], [0.5, 0.5, 1.0, 1.0])
    """
    labels, scores = _labels_scores(labels, scores)
    if not labels.any():
        raise ValueError("labels: expected at least one positive for precision and recall, got none")
    labels, last_of_tie = _ranked(labels, scores)
    tps = np.cumsum(labels)[last_of_tie]
    return tps / (last_of_tie + 1), tps / tps[-1]


def average_precision(labels, scores) -> float:
    r"""The area under the precision-recall curve as a step function: :math:`\sum_k (R_k - R_{k-1}) P_k`.

    scikit-learn's ``average_precision_score`` (no interpolation); tied scores enter together.

    Example:
        >>> round(average_precision(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])), 4)
        0.8333
    """
    precision, recall = precision_recall_curve(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def recall_at_fpr(labels, scores, max_fpr: float) -> float:
    """The recall at the best threshold whose false positive rate is at most ``max_fpr``.

    Example:
        >>> recall_at_fpr(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]), max_fpr=0.0)
        0.5
    """
    if not 0 <= max_fpr <= 1:
        raise ValueError(f"max_fpr: expected a rate in [0, 1], got {max_fpr!r}")
    fpr, tpr = roc_curve(labels, scores)
    return float(tpr[fpr <= max_fpr].max())


def fraud_metrics(
    labels, scores, patterns=None, *, threshold: float = 0.5, max_fpr: float = 0.01, pattern_names=PATTERNS
) -> dict:
    """What a fraud team reads: ranking quality, the operating point, and the recall of each pattern.

    Args:
      labels: ``[n]`` 0 (honest) and 1 (fraud), both present.
      scores: ``[n]`` P(fraud), e.g. from :meth:`FraudDetector.scores`.
      patterns: ``[n]`` index into ``pattern_names`` of each fraud (-1: honest), or None.
      threshold: flag a history when its score is ``>= threshold``.
      max_fpr: the false positive rate a team can afford to review.
      pattern_names: the names of the patterns.

    Returns:
      A dict: ``roc_auc``, ``average_precision``, ``precision_at_<threshold>``,
      ``recall_at_<threshold>``, ``false_positive_rate_at_<threshold>``,
      ``recall_at_<100 max_fpr>pct_fpr`` and, with ``patterns``, ``recall_by_pattern`` (name ->
      recall at the threshold, None for a pattern with no example).

    Example:
        >>> m = fraud_metrics(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]), np.array([0, -1, 2, -1]))
        >>> m["roc_auc"], m["precision_at_0.5"], m["recall_by_pattern"]
        (0.75, 0.6666666666666666, {'card testing': 1.0, 'location jumps': None, 'merchant sequence': 1.0})
    """
    labels, scores = _labels_scores(labels, scores)
    flagged = scores >= threshold
    tp = int(np.sum(flagged & (labels == 1)))
    metrics = {
        "roc_auc": roc_auc(labels, scores),
        "average_precision": average_precision(labels, scores),
        f"precision_at_{threshold:g}": tp / max(int(flagged.sum()), 1),
        f"recall_at_{threshold:g}": tp / int(labels.sum()),
        f"false_positive_rate_at_{threshold:g}": float(np.mean(flagged[labels == 0])),
        f"recall_at_{100 * max_fpr:g}pct_fpr": recall_at_fpr(labels, scores, max_fpr),
    }
    if patterns is not None:
        patterns = np.asarray(patterns)
        if patterns.shape != labels.shape or not np.array_equal(patterns >= 0, labels == 1):
            raise ValueError("patterns: expected one index per history, >= 0 exactly where the label is 1")
        metrics["recall_by_pattern"] = {
            name: float(np.mean(flagged[patterns == i])) if np.any(patterns == i) else None
            for i, name in enumerate(pattern_names)
        }
    return metrics
