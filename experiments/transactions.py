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

- a GRU and an LSTM many-to-one classifier (rnnjax.apps.fraud.FraudDetector: an
  rnnjax.models.SequenceClassifier, last output -> Dense(2)) on the whole history;
- a logistic regression on the features of the **last** transaction (what a per-transaction
  fraud rule sees when the fraudulent purchase arrives);
- a logistic regression on the last transaction's features **and their mean over the
  history** (a bag-of-transactions summary, the fairer baseline: it sees everything, but not
  the order).

The generator, the detector (features standardised on the training set, the classifier, its
training) and the metrics are rnnjax.apps.fraud's; the logistic regressions are fitted here with
optax (Adam, full batch, a little L2). Reported on a held-out test set: ROC-AUC, average
precision (the area under the precision-recall curve), the recall at a 1% false-positive rate,
and precision and recall at the threshold 0.5, overall and per fraud pattern (recall only).
Fraud is 15% of the histories here, far more than in real card data (well under 1%), so that a
few thousand histories hold enough of each pattern.

    python experiments/transactions.py            # default size, a few minutes on a CPU
    python experiments/transactions.py --full     # more data, larger models

Writes experiments/results/transactions.json and transactions_{curves,patterns}.png.
"""

import time

import _common
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import rnnjax as rj
from rnnjax.apps import fraud

# average_precision and roc_auc: tests/test_experiments_46.py reads them from this script
from rnnjax.apps.fraud import NUM_FEATURES, PATTERNS, SEQ_LEN, average_precision, roc_auc  # noqa: F401
from rnnjax.heads import Dense

NAME = "transactions"
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


def make_histories(rng, n, fraud_rate):
    """``(xs [n, SEQ_LEN, NUM_FEATURES], labels [n], patterns [n])`` of rnnjax.apps.fraud.make_histories (the form
    tests/test_experiments_46.py checks)."""
    data = fraud.make_histories(rng, n, fraud_rate)
    return data.xs, data.labels, data.patterns


# --- models ----------------------------------------------------------------------------------------


def train_rnn(cell, train, test, size, seed, devices=None):
    """A FraudDetector (a many-to-one SequenceClassifier) trained with Adam on random minibatches.

    Returns P(fraud) on the test set and the training loss of every step.
    """
    model = fraud.FraudDetector(cell)
    run = fraud.fit(
        model,
        train.xs,
        train.labels,
        train.lengths,
        seed=seed,
        num_steps=size["steps"],
        batch_size=size["batch"],
        optimizer=optax.adam(size["lr"]),
        clip_norm=1.0,
        devices=devices,
        progress=True,
    )
    return np.asarray(model.scores(run.params, test.xs, test.lengths)), run.losses


def cross_entropy(logits, labels):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


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

    # 1. Generate honest and fraudulent histories (one generator, so train and test differ).
    rng = np.random.default_rng(args.seed)
    train = fraud.make_histories(rng, size["train"], size["fraud_rate"])
    test = fraud.make_histories(rng, size["test"], size["fraud_rate"])
    test_y, test_patterns = test.labels, test.patterns
    print(
        f"{NAME}: {size['train']} training and {size['test']} test histories of {SEQ_LEN} transactions, "
        f"{100 * train.labels.mean():.1f}% / {100 * test_y.mean():.1f}% fraudulent"
    )

    # 2. Baselines: logistic regression on the last transaction, and on it plus the history's mean.
    probs = {}
    for name, with_mean in (("logreg_last", False), ("logreg_last_mean", True)):
        probs[name] = train_logreg(
            logreg_features(train.xs, with_mean),
            train.labels,
            logreg_features(test.xs, with_mean),
            size["logreg_steps"],
        )

    # 3. GRU and LSTM many-to-one classifiers on the whole history (rnnjax.apps.fraud.FraudDetector).
    curves = {}
    for name, cell in (("gru", rj.GRUCell), ("lstm", rj.LSTMCell)):
        print(f"  {name}", flush=True)
        probs[name], curves[name] = train_rnn(cell(size["hidden"]), train, test, size, args.seed, args.devices)

    results = {
        "name": NAME,
        "size": _common.size_name(args),
        "config": {**size, "seed": args.seed, "seq_len": SEQ_LEN, "features": NUM_FEATURES, "patterns": PATTERNS},
        "environment": _common.environment(),
        "test_fraud_rate": float(test_y.mean()),
        "test_patterns": {p: int(np.sum(test_patterns == i)) for i, p in enumerate(PATTERNS)},
        "models": {name: fraud.fraud_metrics(test_y, probs[name], test_patterns) for name in LABELS},
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
        fpr, tpr = fraud.roc_curve(labels, probs[name])
        roc.plot(fpr, tpr, color=COLORS[name], label=f"{LABELS[name]} (AUC {m['roc_auc']:.3f})")
        precision, recall = fraud.precision_recall_curve(labels, probs[name])
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
