"""Experiment: image captioning with visual attention (Show, Attend and Tell) on strips of digits.

Question: does an LSTM decoder that attends to a CNN's feature map learn to read a strip of
handwritten digits left to right, and what does a wider beam buy over greedy decoding? The
images are 3 to 5 of scikit-learn's 8x8 ``digits`` side by side (``rnnjax.apps.captioning.digit_strips``;
test strips are made of digit images never seen in training), the captions their words,
"three one four". The model (``rnnjax.apps.captioning.Captioner``): two 3x3 convolutions (a 2x2 max-pool
between them) give a 4 x 20 feature map plus a learned position embedding; its mean initialises an
LSTM's carry; at every step the LSTM attends to the 80 cells (Bahdanau attention, the decoder of
``rnnjax.models.Seq2Seq``). Trained with teacher forcing (Adam, cosine decay, clipping at 1), the
checkpoint with the best validation exact-caption accuracy is kept, then the test strips are
captioned greedily and by beam search of width 1..8 (``rnnjax.decode``, alpha 0). Scores: exact-caption
accuracy (every word and the length) and per-word accuracy (the reference's words matched at their
position). Alignment: with teacher forcing on the test references, the column of the feature map each
word attends to most; a caption's alignment is monotone when these columns strictly increase word
by word, and a word is "on its digit" when its column lies over its digit's 8 pixels.

    python experiments/captioning.py             # default size, a few minutes on a CPU
    python experiments/captioning.py --full      # wider CNN and LSTM, more steps

Writes experiments/results/captioning.json and captioning_{attention,beams}.png.
"""

import time

import _common
import jax
import matplotlib.pyplot as plt
import numpy as np
import optax
from tqdm.auto import tqdm

import rnnjax as rj
from rnnjax.apps import captioning as cap

NAME = "captioning"
MIN_DIGITS, MAX_DIGITS = 3, 5
MAX_LEN = MAX_DIGITS + 1  # words and eos
SIZES = {  # strips per split, CNN channels, LSTM units, word embedding, steps, batch, peak learning rate, beams
    "tiny": dict(
        train=64, valid=16, test=16, channels=(4, 8), hidden=16, embed=8, steps=3, batch=16, lr=3e-3, eval_every=1,
        beams=(1, 2),
    ),
    "default": dict(
        train=20000, valid=500, test=1000, channels=(16, 32), hidden=64, embed=32, steps=1500, batch=64, lr=3e-3,
        eval_every=250, beams=tuple(range(1, 9)),
    ),
    "full": dict(
        train=50000, valid=1000, test=2000, channels=(32, 64), hidden=128, embed=64, steps=8000, batch=64, lr=2e-3,
        eval_every=500, beams=tuple(range(1, 9)),
    ),
}  # fmt: skip


def make_model(size) -> cap.Captioner:
    return cap.Captioner(
        (cap.DIGIT_SIZE, cap.DIGIT_SIZE * MAX_DIGITS),
        len(cap.VOCAB),
        size["embed"],
        rj.LSTMCell(size["hidden"]),
        channels=size["channels"],
        attention="bahdanau",
    )


def as_batch(data: cap.CaptionData, index=slice(None)) -> dict:
    return {"images": data.images[index], "captions": data.captions[index], "lengths": data.lengths[index]}


def train(model, data, size, args, bar):
    """Adam with a cosine decay on random minibatches; keeps the params with the best validation exact accuracy."""
    schedule = optax.cosine_decay_schedule(size["lr"], size["steps"], alpha=0.05)
    optimizer = optax.adam(schedule)
    step = rj.parallel.make_train_step(model.loss, optimizer, devices=args.devices, clip_norm=1.0)
    params = jax.jit(model.init)(jax.random.key(args.seed))
    opt_state = optimizer.init(params)
    rng = np.random.default_rng(args.seed)
    curve = {"step": [], "train_loss": [], "valid_exact": [], "valid_word": []}
    best = (-1.0, params, 0)
    for i in range(1, size["steps"] + 1):
        pick = rng.choice(len(data["train"].images), size=size["batch"], replace=False)
        params, opt_state, metrics = step(params, opt_state, as_batch(data["train"], pick), None)
        if i % size["eval_every"] == 0 or i == size["steps"]:
            tokens, _ = cap.decode_captions(model, params, data["valid"].images, max_len=MAX_LEN)
            scores = cap.caption_accuracy(tokens, data["valid"].captions, data["valid"].lengths)
            curve["step"].append(i)
            curve["train_loss"].append(float(metrics["loss"]))
            curve["valid_exact"].append(scores["exact"])
            curve["valid_word"].append(scores["word"])
            if scores["exact"] > best[0]:
                best = (scores["exact"], params, i)
            bar.set_postfix(loss=f"{float(metrics['loss']):.3f}", valid_exact=f"{scores['exact']:.3f}")
        bar.update(1)
    return best[1], best[2], curve


def alignment(model, params, test: cap.CaptionData):
    """Teacher-forced attention on the test references: weights [n, t, p], columns [n, t], and the scores."""
    inputs = np.concatenate([np.full((len(test.images), 1), cap.BOS, np.int32), test.captions[:, :-1]], 1)
    apply = jax.jit(jax.vmap(lambda p, x, t, n: model.apply(p, x, t, n, return_attention=True), (None, 0, 0, 0)))
    _, weights = apply(params, test.images, inputs, test.lengths)
    weights = np.asarray(weights)
    columns = cap.attention_columns(model, weights)  # [n, t] in feature-map columns
    gw = model.grid_shape[1]
    per_digit = gw // MAX_DIGITS  # feature-map columns over one digit
    words = test.lengths - 1
    monotone = np.array([np.all(np.diff(columns[i, : words[i]]) > 0) for i in range(len(words))])
    word_mask = np.arange(columns.shape[1]) < words[:, None]
    on_digit = (columns // per_digit == np.arange(columns.shape[1])[None, :]) & word_mask
    mean_column = [
        float(columns[words > t, t].mean() * model.image_shape[1] / gw + model.image_shape[1] / gw / 2)
        for t in range(MAX_DIGITS)
    ]
    scores = {
        "monotone_fraction": float(monotone.mean()),
        "on_digit_fraction": float(on_digit.sum() / word_mask.sum()),
        "mean_attended_pixel_column_by_position": mean_column,
        "note": "teacher forcing on the test references; columns are the argmax over the feature map's columns",
    }
    return weights, columns, scores


def main(argv=None):
    args = _common.parser(__doc__.split("\n")[0]).parse_args(argv)
    size = _common.chosen_size(args, SIZES)
    start = time.perf_counter()
    data = {
        split: cap.digit_strips(args.seed, size[split], MIN_DIGITS, MAX_DIGITS, split=split, split_seed=args.seed)
        for split in ("train", "valid", "test")
    }
    model = make_model(size)
    print(
        f"{NAME}: strips of {MIN_DIGITS}-{MAX_DIGITS} digits {model.image_shape}; "
        + ", ".join(f"{k} {len(v.images)}" for k, v in data.items())
        + f"; feature map {model.grid_shape} x {size['channels'][-1]}"
    )

    # 1. Train with teacher forcing; keep the checkpoint with the best validation exact accuracy.
    bar = tqdm(total=size["steps"], unit="step", desc="training")
    params, best_step, curve = train(model, data, size, args, bar)
    bar.close()

    # 2. Caption the test strips: greedy, then beam search of every width.
    test = data["test"]
    decoded = {"greedy": cap.decode_captions(model, params, test.images, max_len=MAX_LEN)}
    for k in size["beams"]:
        decoded[f"beam_{k}"] = cap.decode_captions(model, params, test.images, max_len=MAX_LEN, beam_size=k)
    scores = {name: cap.caption_accuracy(tokens, test.captions, test.lengths) for name, (tokens, _) in decoded.items()}
    counts = test.lengths - 1
    greedy_tokens, greedy_lengths = (np.asarray(x) for x in decoded["greedy"])
    for k in size["beams"]:  # how often the beam's best caption is not greedy's
        scores[f"beam_{k}"]["differs_from_greedy"] = float(
            np.mean(np.any(np.asarray(decoded[f"beam_{k}"][0]) != greedy_tokens, axis=1))
        )
    scores["greedy"]["wrong_length"] = float(np.mean(greedy_lengths != test.lengths))
    by_digits = {
        str(n): cap.caption_accuracy(greedy_tokens[counts == n], test.captions[counts == n], test.lengths[counts == n])
        for n in range(MIN_DIGITS, MAX_DIGITS + 1)
        if np.any(counts == n)
    }

    # 3. Where the attention looks, word by word.
    weights, columns, align = alignment(model, params, test)

    widest = f"beam_{max(size['beams'])}"
    examples = [
        {
            "reference": cap.caption_text(test.captions[i]),
            "greedy": cap.caption_text(greedy_tokens[i]),
            widest: cap.caption_text(np.asarray(decoded[widest][0])[i]),
            "attended_columns": columns[i, : counts[i]].tolist(),
        }
        for i in range(min(8, len(counts)))
    ]
    results = {
        "name": NAME,
        "size": _common.size_name(args),
        "config": {
            **{k: list(v) if isinstance(v, tuple) else v for k, v in size.items()},
            "seed": args.seed,
            "min_digits": MIN_DIGITS,
            "max_digits": MAX_DIGITS,
            "image_shape": list(model.image_shape),
            "grid_shape": list(model.grid_shape),
            "attention": model.attention,
            "alpha": 0.0,
            "num_params": rj.count_params(params),
        },
        "environment": _common.environment(),
        "best_step": best_step,
        "curve": curve,
        "test": scores,
        "test_greedy_by_num_digits": by_digits,
        "alignment": align,
        "examples": examples,
    }
    results["wall_time_s"] = round(time.perf_counter() - start, 1)
    _common.save_results(results, args, NAME)
    plot_attention(model, test, weights, greedy_tokens, args)
    plot_beams(results, columns, counts, model, args)
    print(summary_table(results))
    print(
        f"alignment: monotone in {align['monotone_fraction']:.1%} of the test captions, "
        f"{align['on_digit_fraction']:.1%} of the words attend to their own digit"
    )
    print(f"wrote {args.out / (NAME + '.json')} in {results['wall_time_s']} s")
    return results


# --- figures and table -----------------------------------------------------------------------------


def _examples(counts, num=4):
    """Test strips to plot: one of each length, then the first ones."""
    picks = [int(np.flatnonzero(counts == n)[0]) for n in range(MAX_DIGITS, MIN_DIGITS - 1, -1) if np.any(counts == n)]
    picks += [i for i in range(len(counts)) if i not in picks]
    return picks[:num]


def plot_attention(model, test, weights, greedy_tokens, args):
    """For a few test strips: the strip, then one row per word with its attention over the strip."""
    gh, gw = model.grid_shape
    height, width = model.image_shape
    picks = _examples(test.lengths - 1)
    rows = MAX_DIGITS + 1
    fig, axes = plt.subplots(rows, len(picks), figsize=(3.2 * len(picks), 0.75 * rows + 0.6), squeeze=False)
    for col, i in enumerate(picks):
        n = int(test.lengths[i] - 1)
        image = test.images[i]
        axes[0, col].imshow(image, cmap="gray_r", vmin=0, vmax=1)
        axes[0, col].set_title(f"greedy: {cap.caption_text(greedy_tokens[i])}", fontsize=8)
        for t in range(1, rows):
            ax = axes[t, col]
            if t > n:
                ax.axis("off")
                continue
            grid = weights[i, t - 1].reshape(gh, gw)
            heat = np.kron(grid, np.ones((height // gh, width // gw)))  # back to pixels
            ax.imshow(image, cmap="gray_r", vmin=0, vmax=1)
            ax.imshow(heat, cmap="autumn_r", alpha=0.85 * heat / heat.max(), vmin=0, vmax=heat.max())
            ax.set_ylabel(
                cap.caption_text(test.captions[i, t - 1 : t]), fontsize=8, rotation=0, ha="right", va="center"
            )
        for ax in axes[:, col]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(
        "attention over the strip for each word of the reference caption (teacher forcing; red: more weight)",
        fontsize=9,
    )
    fig.tight_layout()
    _common.save_figure(fig, args, NAME, "attention")


def plot_beams(results, columns, counts, model, args):
    """Accuracy against beam width; the training curve; the attended column against the word position."""
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(12, 3.3))
    beams = results["config"]["beams"]
    for metric, color in (("exact", "tab:blue"), ("word", "tab:orange")):
        values = [results["test"][f"beam_{k}"][metric] for k in beams]
        left.plot(beams, values, "o-", color=color, label=f"{metric} (beam)", ms=4)
        left.axhline(results["test"]["greedy"][metric], color=color, ls=":", lw=1, label=f"{metric} (greedy)")
    left.set_xlabel("beam size")
    left.set_ylabel("test accuracy")
    left.set_title("exact-caption and per-word accuracy")
    left.legend(fontsize=7)
    curve = results["curve"]
    middle.plot(curve["step"], curve["train_loss"], "o-", color="k", ms=3, label="train loss (nats/word)")
    middle.set_yscale("log")
    middle.set_xlabel("step")
    twin = middle.twinx()
    twin.plot(curve["step"], curve["valid_exact"], "s-", color="tab:blue", ms=3, label="valid exact (greedy)")
    twin.set_ylim(0, 1)
    middle.set_title(f"training (kept: step {results['best_step']})")
    middle.legend(loc="center left", fontsize=7)
    twin.legend(loc="center right", fontsize=7)
    gw, width = model.grid_shape[1], model.image_shape[1]
    positions = [columns[counts > t, t] * width / gw + width / gw / 2 for t in range(MAX_DIGITS)]
    right.boxplot(positions, positions=np.arange(1, MAX_DIGITS + 1), widths=0.5)
    for t in range(MAX_DIGITS):  # where the t-th digit lies
        right.axhspan(8 * t, 8 * t + 8, xmin=t / MAX_DIGITS, xmax=(t + 1) / MAX_DIGITS, color="tab:green", alpha=0.15)
    right.set_xlabel("word position")
    right.set_ylabel("attended image column (pixels)")
    align = results["alignment"]
    right.set_title(f"monotone: {align['monotone_fraction']:.1%}, on its digit: {align['on_digit_fraction']:.1%}")
    fig.tight_layout()
    _common.save_figure(fig, args, NAME, "beams")


def summary_table(results) -> str:
    header = ["decoder", "exact caption", "per word", "differs from greedy"]
    greedy = results["test"]["greedy"]
    rows = [["greedy", f"{greedy['exact']:.3f}", f"{greedy['word']:.3f}", "-"]]
    for k in results["config"]["beams"]:
        entry = results["test"][f"beam_{k}"]
        rows.append(
            [f"beam {k}", f"{entry['exact']:.3f}", f"{entry['word']:.3f}", f"{entry['differs_from_greedy']:.1%}"]
        )
    n = results["config"]["test"]
    return f"Digit-strip captions, {n} test strips of {MIN_DIGITS}-{MAX_DIGITS} digits:\n" + _common.markdown_table(
        header, rows
    )


if __name__ == "__main__":
    main()
