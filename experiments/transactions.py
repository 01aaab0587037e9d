"""Experiment 6: sequence classification of card-transaction histories (fraud detection).

Question: when fraud shows only across several transactions, how much does a recurrent
classifier that reads the whole history gain over a per-transaction model?

The script generates card histories (fixed seed): each cardholder has a home city, a spending
level, favourite merchant categories, a daily rhythm, and sometimes travels; every history
is ``SEQ_LEN`` transactions with an amount, a merchant category, a time and a city. A
history is labelled fraudulent when its last transactions follow one of three patterns that
no single transaction gives away, because honest cardholders make each of those transactions
too:

- **card testing**: 2-6 small online charges within minutes, then one large purchase
  (honest histories also have small charges and large electronics purchases);
- **location jumps** (a cloned card): transactions alternating between the home city and a
  distant city a few hours apart, perhaps followed by a purchase or two in the same place
  (honest travellers also fly, but go once and stay);
- **unusual merchant sequence** (account takeover): a run of gift cards, money transfers and
  crypto purchases, categories the cardholder rarely uses (honest cardholders buy some too).

Each transaction is described by the same 20 features for every model: log amount, log hours
since the previous transaction, log km from the previous transaction and from home, the hour
of day (sin, cos), online or not, and the merchant category (13, one-hot). Models:

- a GRU and an LSTM many-to-one classifier (rnnjax.models.SequenceClassifier, last output ->
  Dense(2)) on the whole history;
- a logistic regression on the features of the **last** transaction (what a per-transaction
  fraud rule sees when the fraudulent purchase arrives);
- a logistic regression on the last transaction's features **and their mean over the
  history** (a bag-of-transactions summary, the fairer baseline: it sees everything, but not
  the order).

The logistic regressions are fitted with optax (Adam, full batch, a little L2). Reported on
a held-out test set: ROC-AUC, average precision (the area under the precision-recall curve),
the recall at a 1% false-positive rate, and precision and recall at the threshold 0.5, overall
and per fraud pattern (recall only). Fraud is 15% of the histories here, far more than in
real card data (well under 1%), so that a few thousand histories hold enough of each pattern.

    python experiments/transactions.py            # default size, a few minutes on a CPU
    python experiments/transactions.py --full     # more data, larger models

Writes experiments/results/transactions.json and transactions_{curves,patterns}.png.
"""

import functools
import time

import _common
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from tqdm.auto import tqdm

import rnnjax as rj
from rnnjax.heads import Dense

NAME = "transactions"
SEQ_LEN = 32
CITIES = {  # name: (latitude, longitude)
    "London": (51.5, -0.1), "Manchester": (53.5, -2.2), "Paris": (48.9, 2.4), "Berlin": (52.5, 13.4),
    "Madrid": (40.4, -3.7), "Rome": (41.9, 12.5), "Warsaw": (52.2, 21.0), "Stockholm": (59.3, 18.1),
    "New York": (40.7, -74.0), "Lagos": (6.5, 3.4), "Dubai": (25.2, 55.3), "Bangkok": (13.8, 100.5),
}  # fmt: skip
CATEGORIES = (
    "grocery", "restaurant", "fuel", "transport", "pharmacy", "clothing", "online retail", "subscription",
    "electronics", "travel", "gift card", "money transfer", "crypto",
)  # fmt: skip
CAT = {c: i for i, c in enumerate(CATEGORIES)}
EVERYDAY = ("grocery", "restaurant", "fuel", "transport", "pharmacy", "clothing", "online retail", "subscription")
ONLINE = {"online retail", "subscription", "gift card", "money transfer", "crypto"}
TYPICAL_AMOUNT = {  # median amount in the cardholder's currency units, before their spending level
    "grocery": 45, "restaurant": 30, "fuel": 55, "transport": 8, "pharmacy": 15, "clothing": 60,
    "online retail": 35, "subscription": 12, "electronics": 250, "travel": 300, "gift card": 50,
    "money transfer": 150, "crypto": 200,
}  # fmt: skip
PATTERNS = ("card testing", "location jumps", "merchant sequence")
NUM_FEATURES = 7 + len(CATEGORIES)
COLORS = {"gru": "tab:green", "lstm": "tab:blue", "logreg_last": "tab:gray", "logreg_last_mean": "tab:orange"}
LABELS = {
    "gru": "GRU on the history",
    "lstm": "LSTM on the history",
    "logreg_last": "logistic regression, last transaction",
    "logreg_last_mean": "logistic regression, last + mean of history",
}
SIZES = {  # histories, share of fraud, RNN hidden units, training steps, batch, Adam learning rate
    "tiny": dict(train=256, test=256, fraud_rate=0.2, hidden=8, steps=3, batch=32, lr=3e-3, logreg_steps=5),
    "default": dict(train=6000, test=4000, fraud_rate=0.15, hidden=32, steps=600, batch=64, lr=3e-3, logreg_steps=500),
    "full": dict(
        train=60000, test=20000, fraud_rate=0.15, hidden=64, steps=5000, batch=128, lr=1e-3, logreg_steps=2000
    ),
}  # fmt: skip


# --- the generator: honest histories, then fraud at the end of some -------------------------------


@functools.cache
def km(a, b) -> float:
    """Great-circle distance between two cities (haversine, km)."""
    (lat1, lon1), (lat2, lon2) = np.radians(CITIES[a]), np.radians(CITIES[b])
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return float(2 * 6371 * np.arcsin(np.sqrt(h)))


def far_city(rng, home):
    return rng.choice([c for c in CITIES if km(c, home) > 900])


def cardholder(rng):
    """A cardholder's habits. Some make many small charges, some often buy gift cards, send money or buy
    crypto, some travel a lot: in counts, their histories look like the fraud patterns; only the order differs."""
    home = rng.choice(list(CITIES)[:8])  # most cardholders live in Europe
    weights = rng.dirichlet(np.full(len(EVERYDAY), 0.7))
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


def honest_transaction(rng, person, city):
    """One ordinary purchase: mostly everyday categories, sometimes a rare one (the decoys)."""
    roll = rng.random()
    if roll < 0.04:
        return large_purchase(rng, person, city)  # like card testing's last step
    if roll < 0.04 + person["risky_rate"]:
        category = rng.choice(["gift card", "money transfer", "crypto"])  # like an account takeover
    elif roll < 0.25 and city != person["home"]:
        category = "travel"
    else:
        category = EVERYDAY[rng.choice(len(EVERYDAY), p=person["categories"])]
    amount = TYPICAL_AMOUNT[category] * person["spend"] * np.exp(rng.normal(0, 0.6))
    if rng.random() < person["small_rate"]:
        amount = rng.uniform(0.5, 3.0)  # a small charge (parking, a coffee, an app), like card testing
    return category, float(amount), city


def large_purchase(rng, person, city):
    category = rng.choice(["electronics", "electronics", "travel", "gift card"])
    amount = TYPICAL_AMOUNT["electronics"] * person["spend"] * np.exp(rng.normal(0.5, 0.6))
    return category, float(amount), city


def honest_history(rng, person, n):
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
            destination = far_city(rng, person["home"])
            trip_left = int(rng.integers(2, 7))  # stays for a few transactions
            gap = max(gap, km(city, destination) / 800 + rng.uniform(1, 4))  # a flight, then the airport
            city = destination
        elif trip_left > 0:
            trip_left -= 1
            if trip_left == 0:
                gap = max(gap, km(city, person["home"]) / 800 + rng.uniform(1, 4))
                city = person["home"]
        rows.append((gap, *honest_transaction(rng, person, city)))
    return rows


def fraud_tail(rng, person, pattern, city):
    """The fraudulent last transactions of a history."""
    rows = []
    if pattern == "card testing":
        for _ in range(int(rng.integers(2, 7))):
            category = rng.choice(["online retail", "subscription", "gift card"])
            rows.append((rng.uniform(0.01, 0.3), category, float(rng.uniform(0.5, 3.0)), city))
        rows.append((rng.uniform(0.02, 1.0), *large_purchase(rng, person, city)))
    elif pattern == "location jumps":
        away = far_city(rng, person["home"])
        for i in range(int(rng.integers(3, 6))):
            where = away if i % 2 == 0 else person["home"]
            category, amount, _ = honest_transaction(rng, person, where)
            rows.append((rng.uniform(1.0, 6.0), category, amount, where))
        for _ in range(int(rng.integers(0, 3))):  # the card may stay where it is for a purchase or two
            rows.append((rng.exponential(4.0), *honest_transaction(rng, person, where)))
    else:  # merchant sequence
        for _ in range(int(rng.integers(3, 6))):
            category = rng.choice(["gift card", "money transfer", "crypto"])
            amount = float(TYPICAL_AMOUNT[category] * person["spend"] * np.exp(rng.normal(0, 0.6)))
            rows.append((rng.exponential(3.0), category, amount, city))
    return rows


def featurize(rows, person):
    """Per-transaction features ``[n, NUM_FEATURES]``; hours, km and amounts on log scales."""
    out = np.zeros((len(rows), NUM_FEATURES), np.float32)
    prev_city, hour = person["home"], 12.0
    for i, (gap, category, amount, city) in enumerate(rows):
        hour = (hour + gap) % 24
        angle = 2 * np.pi * hour / 24
        out[i, :7] = (
            np.log(amount),
            np.log1p(gap),
            np.log1p(km(prev_city, city)),
            np.log1p(km(person["home"], city)),
            np.sin(angle),
            np.cos(angle),
            category in ONLINE,
        )
        out[i, 7 + CAT[category]] = 1.0
        prev_city = city
    return out


def make_histories(rng, n, fraud_rate):
    """``xs [n, SEQ_LEN, NUM_FEATURES]``, labels ``[n]`` (1: fraud) and the pattern index (-1: honest)."""
    xs = np.zeros((n, SEQ_LEN, NUM_FEATURES), np.float32)
    patterns = np.where(rng.random(n) < fraud_rate, rng.integers(len(PATTERNS), size=n), -1)
    for i in range(n):
        person = cardholder(rng)
        if patterns[i] < 0:
            rows = honest_history(rng, person, SEQ_LEN)
        else:
            rows = honest_history(rng, person, SEQ_LEN)  # the card's real history, then the fraud replaces its end
            tail = fraud_tail(rng, person, PATTERNS[patterns[i]], rows[-1][3])
            rows = rows[: SEQ_LEN - len(tail)] + tail
        xs[i] = featurize(rows, person)
    return xs, (patterns >= 0).astype(np.int32), patterns


# --- metrics (numpy; scikit-learn is not a dependency) ---------------------------------------------


def roc_curve(labels, scores):
    """False and true positive rates at every threshold, from the highest score down."""
    order = np.argsort(-scores, kind="stable")
    labels, scores = labels[order], scores[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(labels)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    return np.r_[0, fps / max(fps[-1], 1)], np.r_[0, tps / max(tps[-1], 1)]


def roc_auc(labels, scores) -> float:
    """The probability that a random positive scores above a random negative (ties count half)."""
    fpr, tpr = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def precision_recall_curve(labels, scores):
    order = np.argsort(-scores, kind="stable")
    labels, scores = labels[order], scores[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(labels)[last_of_tie]
    return tps / (last_of_tie + 1), tps / max(labels.sum(), 1)


def average_precision(labels, scores) -> float:
    """Area under the precision-recall curve, as a step function (sklearn's definition)."""
    precision, recall = precision_recall_curve(labels, scores)
    return float(np.sum(np.diff(np.r_[0, recall]) * precision))


def recall_at_fpr(labels, scores, fpr_limit) -> float:
    """The recall at the best threshold whose false positive rate is at most ``fpr_limit``."""
    fpr, tpr = roc_curve(labels, scores)
    return float(tpr[fpr <= fpr_limit].max())


def metrics(labels, probs, patterns):
    predicted = probs >= 0.5
    tp = int(np.sum(predicted & (labels == 1)))
    return {
        "roc_auc": roc_auc(labels, probs),
        "average_precision": average_precision(labels, probs),
        "precision_at_0.5": tp / max(int(predicted.sum()), 1),
        "recall_at_0.5": tp / max(int(labels.sum()), 1),
        "false_positive_rate_at_0.5": float(np.mean(predicted[labels == 0])),
        "recall_at_1pct_fpr": recall_at_fpr(labels, probs, 0.01),  # a fraud team can review few false alarms
        "recall_by_pattern": {
            p: float(np.mean(predicted[patterns == i])) if np.any(patterns == i) else None
            for i, p in enumerate(PATTERNS)
        },
    }


# --- models ----------------------------------------------------------------------------------------


def cross_entropy(logits, labels):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def train_rnn(cell, data, size, seed, bar, devices=None):
    """A many-to-one SequenceClassifier trained with Adam on random minibatches; returns P(fraud) on the test set."""
    model = rj.models.SequenceClassifier(cell, 2, NUM_FEATURES)
    apply = jax.vmap(model.apply, (None, 0))

    def loss(params, batch, key):
        xs, labels = batch
        return cross_entropy(apply(params, xs), labels)

    optimizer = optax.adam(size["lr"])
    step = rj.parallel.make_train_step(loss, optimizer, devices=devices, clip_norm=1.0)
    params = model.init(jax.random.key(seed))
    opt_state = optimizer.init(params)
    rng = np.random.default_rng(seed)
    xs, labels = data["train"]
    curve = []
    for i in range(size["steps"]):
        pick = rng.choice(len(xs), size=size["batch"], replace=False)
        params, opt_state, m = step(params, opt_state, (xs[pick], labels[pick]), None)
        curve.append(float(m["loss"]))
        if i % 25 == 0:
            bar.set_postfix(loss=f"{np.mean(curve[-25:]):.3f}")
        bar.update(1)
    predict = jax.jit(lambda p, x: jax.nn.softmax(apply(p, x))[:, 1])
    return np.asarray(predict(params, data["test"][0])), curve


def logreg_features(xs, with_mean):
    last = xs[:, -1]
    return np.concatenate([last, xs.mean(axis=1)], axis=1) if with_mean else last


def train_logreg(features, labels, test_features, steps, l2=1e-3):
    """Logistic regression (a Dense(2) softmax) fitted by full-batch Adam on standardised features."""
    mean, std = features.mean(0), features.std(0) + 1e-6
    head = Dense(2)

    def loss(params, batch, key):
        x, y = batch
        return cross_entropy(head.apply(params, x), y) + l2 * jnp.sum(params.w**2)

    optimizer = optax.adam(0.05)
    step = rj.train.make_train_step(loss, optimizer)
    params = head.init(jax.random.key(0), features.shape[1])
    opt_state = optimizer.init(params)
    batch = ((features - mean) / std, labels)
    for _ in range(steps):
        params, opt_state, _ = step(params, opt_state, batch, None)
    return np.asarray(jax.nn.softmax(head.apply(params, (test_features - mean) / std))[:, 1])


# --- the experiment --------------------------------------------------------------------------------


def main(argv=None):
    args = _common.parser(__doc__.split("\n")[0]).parse_args(argv)
    size = _common.chosen_size(args, SIZES)
    start = time.perf_counter()

    # 1. Generate honest and fraudulent histories; standardise features with the training set.
    rng = np.random.default_rng(args.seed)
    train_xs, train_y, train_patterns = make_histories(rng, size["train"], size["fraud_rate"])
    test_xs, test_y, test_patterns = make_histories(rng, size["test"], size["fraud_rate"])
    mean, std = train_xs.reshape(-1, NUM_FEATURES).mean(0), train_xs.reshape(-1, NUM_FEATURES).std(0) + 1e-6
    data = {"train": ((train_xs - mean) / std, train_y), "test": ((test_xs - mean) / std, test_y)}
    print(
        f"{NAME}: {size['train']} training and {size['test']} test histories of {SEQ_LEN} transactions, "
        f"{100 * train_y.mean():.1f}% / {100 * test_y.mean():.1f}% fraudulent"
    )

    # 2. Baselines: logistic regression on the last transaction, and on it plus the history's mean.
    probs = {}
    for name, with_mean in (("logreg_last", False), ("logreg_last_mean", True)):
        probs[name] = train_logreg(
            logreg_features(data["train"][0], with_mean),
            train_y,
            logreg_features(data["test"][0], with_mean),
            size["logreg_steps"],
        )

    # 3. GRU and LSTM many-to-one classifiers on the whole history.
    curves = {}
    bar = tqdm(total=2 * size["steps"], unit="step")
    for name, cell in (("gru", rj.GRUCell), ("lstm", rj.LSTMCell)):
        bar.set_description(name)
        probs[name], curves[name] = train_rnn(cell(size["hidden"]), data, size, args.seed, bar, args.devices)
    bar.close()

    results = {
        "name": NAME,
        "size": _common.size_name(args),
        "config": {**size, "seed": args.seed, "seq_len": SEQ_LEN, "features": NUM_FEATURES, "patterns": PATTERNS},
        "environment": _common.environment(),
        "test_fraud_rate": float(test_y.mean()),
        "test_patterns": {p: int(np.sum(test_patterns == i)) for i, p in enumerate(PATTERNS)},
        "models": {name: metrics(test_y, probs[name], test_patterns) for name in LABELS},
        "train_curves": {name: c[:: max(1, len(c) // 200)] for name, c in curves.items()},
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    _common.save_results(results, args, NAME)
    plot(results, probs, test_y, args)
    print(summary_table(results))
    print(f"wrote {args.out / (NAME + '.json')} in {results['wall_time_s']} s")
    return results


# --- figures and table -----------------------------------------------------------------------------


def plot(results, probs, labels, args):
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(10, 4))
    for name in LABELS:
        m = results["models"][name]
        fpr, tpr = roc_curve(labels, probs[name])
        roc.plot(fpr, tpr, color=COLORS[name], label=f"{LABELS[name]} (AUC {m['roc_auc']:.3f})")
        precision, recall = precision_recall_curve(labels, probs[name])
        pr.step(recall, precision, where="post", color=COLORS[name], label=f"AP {m['average_precision']:.3f}")
    chance = np.logspace(-3, 0, 50)
    roc.plot(chance, chance, color="k", ls=":", lw=1)
    roc.set_xscale("log")  # fraud teams work at low false-positive rates
    roc.set_xlim(1e-3, 1)
    roc.set_xlabel("false positive rate (log scale)")
    roc.set_ylabel("true positive rate (recall)")
    roc.set_title("ROC on held-out histories")
    roc.legend(fontsize=7, loc="upper left")
    pr.axhline(results["test_fraud_rate"], color="k", ls=":", lw=1, label="chance")
    pr.set_xlabel("recall")
    pr.set_ylabel("precision")
    pr.set_title("precision-recall")
    pr.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    _common.save_figure(fig, args, NAME, "curves")

    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(LABELS)
    for j, name in enumerate(LABELS):
        recalls = [results["models"][name]["recall_by_pattern"][p] or 0.0 for p in PATTERNS]
        ax.bar(np.arange(len(PATTERNS)) + (j - 1.5) * width, recalls, width, color=COLORS[name], label=LABELS[name])
    ax.set_xticks(np.arange(len(PATTERNS)), PATTERNS)
    ax.set_ylabel("recall at threshold 0.5")
    ax.set_ylim(0, 1.05)
    ax.set_title("which fraud patterns each model catches")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    fig.tight_layout()
    _common.save_figure(fig, args, NAME, "patterns")


def summary_table(results) -> str:
    header = [
        "model",
        "ROC-AUC",
        "average precision",
        "recall at 1% FPR",
        "precision @0.5",
        "recall @0.5",
        *[f"recall @0.5: {p}" for p in PATTERNS],
    ]
    rows = []
    for name in LABELS:
        m = results["models"][name]
        rows.append(
            [
                LABELS[name],
                f"{m['roc_auc']:.3f}",
                f"{m['average_precision']:.3f}",
                f"{m['recall_at_1pct_fpr']:.3f}",
                f"{m['precision_at_0.5']:.3f}",
                f"{m['recall_at_0.5']:.3f}",
                *[f"{m['recall_by_pattern'][p]:.2f}" for p in PATTERNS],
            ]
        )
    return (
        f"Transactions, {results['config']['test']} test histories ({100 * results['test_fraud_rate']:.1f}% fraud):\n"
        + _common.markdown_table(header, rows)
    )


if __name__ == "__main__":
    main()
