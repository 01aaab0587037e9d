"""Experiment 9: speech recognition with CTC, spoken digit strings synthesized with espeak-ng.

Question: how well does a small bidirectional GRU trained with CTC recognise spoken digit strings
in speaking rates, pitches and voices it never heard, and does CTC prefix beam search (which sums
over alignments) beat greedy best-path decoding without a language model?

Data (rnnjax.apps.speech.digit_dataset): random strings of 2-4 digit words ("three one four") spoken by
espeak-ng in 8 voices at 4 speeds and 4 pitches (train), at 2 held-out speeds and 2 held-out
pitches (test), and by 3 voices never heard in training (test_voices); 40 log-mel bands every
10 ms (librosa). Labels are characters (16 letters and the space; id 0 is the blank), so the
character error rate (CER) is the edit distance over characters and the word error rate (WER)
the edit distance over the words of the decoded text, both summed over a split and divided by
the reference length. Model: frames stacked by 3 (30 ms), two bidirectional GRU layers, a dense
layer to 17 logits, trained with CTC (optax.ctc_loss via rnnjax.losses.ctc_loss_from_lengths,
per-label mean) with Adam and gradient clipping. Decoding: greedy (rnnjax.decode.ctc_greedy) and
prefix beam search (rnnjax.decode.ctc_prefix_beam_search) with beams 1, 4 and 16, jitted and
vmapped over the utterances, at several points during training (early, uncertain posteriors
are where beam search could help).

Needs espeak-ng (``apt-get install espeak-ng``) and librosa (``pip install librosa``). Audio and
features are cached (``~/.cache/rnnjax/speech``, or ``$RNNJAX_CACHE/speech``).

    python experiments/speech_ctc.py           # default size, about 3 minutes on a 2-core CPU
    python experiments/speech_ctc.py --full    # more data, a larger model, longer training

Writes experiments/results/speech_ctc.json and speech_ctc_{posteriorgram,training}.png.
"""

import shutil
import sys
import time

import _common
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from tqdm.auto import tqdm

import rnnjax as rj
import rnnjax.apps.speech as sp

NAME = "speech_ctc"
BEAMS = (1, 4, 16)
DECODERS = ("greedy", *(f"beam_{k}" for k in BEAMS))
SPLITS = ("test", "test_voices")
SIZES = {  # utterances, model, training; eval_at: the steps where the test splits are decoded
    "tiny": dict(num_train=12, num_test=6, hidden=8, layers=1, stride=3, steps=4, batch=4, lr=3e-3, eval_at=(2, 4)),
    "default": dict(
        num_train=400,
        num_test=100,
        hidden=64,
        layers=2,
        stride=3,
        steps=400,
        batch=32,
        lr=3e-3,
        eval_at=(25, 50, 100, 200, 400),
    ),  # fmt: skip
    "full": dict(
        num_train=3000,
        num_test=500,
        hidden=128,
        layers=3,
        stride=3,
        steps=3000,
        batch=64,
        lr=2e-3,
        eval_at=(50, 100, 200, 500, 1000, 2000, 3000),
    ),  # fmt: skip
}


def check_requirements():
    """Fail early, naming what to install."""
    missing = []
    if shutil.which("espeak-ng") is None:
        missing.append("the Debian package espeak-ng (apt-get install espeak-ng)")
    try:
        import librosa  # noqa: F401
    except ImportError:
        missing.append("the Python package librosa (pip install librosa)")
    if missing:
        sys.exit(f"{NAME}: needs " + " and ".join(missing))


# --- model, loss and decoders ----------------------------------------------------------------------


def make_loss(model):
    """CTC loss per label: the summed ``-log P(labels | audio)`` over the batch divided by its labels."""

    def loss(params, batch, key):
        features, lengths, labels, label_lengths = batch
        logits, out_lengths = sp.batch_logits(model, params, features, lengths)
        losses = rj.losses.ctc_loss_from_lengths(logits, out_lengths, labels, label_lengths, blank=sp.BLANK)
        return jnp.sum(losses) / jnp.sum(label_lengths).astype(losses.dtype)

    return loss


def make_decoders(model):
    """``decode(params, features, lengths) -> {decoder: (labels [n, l], lengths [n])}``, one jitted function."""

    @jax.jit
    def decode(params, features, lengths):
        logits, out_lengths = sp.batch_logits(model, params, features, lengths)
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        out = {"greedy": jax.vmap(lambda lp, n: rj.decode.ctc_greedy(lp, n, blank=sp.BLANK))(log_probs, out_lengths)}
        for k in BEAMS:
            beams = jax.vmap(lambda lp, n, k=k: rj.decode.ctc_prefix_beam_search(lp, n, beam_size=k, blank=sp.BLANK))(
                log_probs, out_lengths
            )
            out[f"beam_{k}"] = (beams.labels[:, 0], beams.lengths[:, 0])  # the best hypothesis
        return out

    return decode


def error_rates(hyps, refs):
    """Corpus CER and WER: summed edit distances over summed reference lengths, and exact-match accuracy."""
    char_errors = sum(rj.metrics.edit_distance(h, r) for h, r in zip(hyps, refs, strict=True))
    word_errors = sum(rj.metrics.edit_distance(h.split(), r.split()) for h, r in zip(hyps, refs, strict=True))
    return {
        "cer": char_errors / sum(len(r) for r in refs),
        "wer": word_errors / sum(len(r.split()) for r in refs),
        "sentence_accuracy": float(np.mean([h == r for h, r in zip(hyps, refs, strict=True)])),
    }


def evaluate(decode, params, split: sp.SpeechData):
    """Every decoder's transcripts and error rates on a split."""
    out = jax.device_get(decode(params, jnp.asarray(split.features), jnp.asarray(split.lengths)))
    transcripts = {name: [sp.decode_labels(a, n) for a, n in zip(*out[name], strict=True)] for name in DECODERS}
    scores = {name: error_rates(transcripts[name], split.texts) for name in DECODERS}
    for name in DECODERS[1:]:
        scores[name]["differs_from_greedy"] = float(
            np.mean([a != b for a, b in zip(transcripts[name], transcripts["greedy"], strict=True)])
        )
    return scores, transcripts


# --- the experiment --------------------------------------------------------------------------------


def main(argv=None):
    args = _common.parser(__doc__.split("\n")[0]).parse_args(argv)
    check_requirements()
    size = _common.chosen_size(args, SIZES)
    if args.steps is not None:
        size["eval_at"] = tuple(s for s in size["eval_at"] if s < args.steps) + (args.steps,)
    start = time.perf_counter()
    data = sp.digit_dataset(args.seed, size["num_train"], size["num_test"])
    train = data["train"]
    synth_s = time.perf_counter() - start
    print(
        f"{NAME}: {len(train.texts)} train utterances ({train.features.shape[1]} frames at most), "
        + ", ".join(f"{len(data[s].texts)} {s}" for s in SPLITS)
        + f"; data ready in {synth_s:.1f} s"
    )

    model = sp.AcousticModel(size["hidden"], size["layers"], stride=size["stride"])
    params = model.init(jax.random.key(args.seed), train.features.shape[-1])
    optimizer = optax.adam(size["lr"])
    train_step = rj.parallel.make_train_step(make_loss(model), optimizer, devices=args.devices, clip_norm=1.0)
    decode = make_decoders(model)
    opt_state = optimizer.init(params)
    rng = np.random.default_rng(args.seed)
    curve = {"step": [], "loss": []}
    checkpoints = []
    train_s = 0.0
    for step in tqdm(range(1, size["steps"] + 1), unit="step", desc="CTC training"):
        t0 = time.perf_counter()
        pick = rng.choice(len(train.texts), size=min(size["batch"], len(train.texts)), replace=False)
        batch = (train.features[pick], train.lengths[pick], train.labels[pick], train.label_lengths[pick])
        params, opt_state, metrics = train_step(params, opt_state, batch, None)
        curve["step"].append(step)
        curve["loss"].append(_common.finite_or_none(metrics["loss"]))
        train_s += time.perf_counter() - t0
        if step in size["eval_at"]:
            entry = {"step": step}
            for split in SPLITS:
                entry[split], transcripts = evaluate(decode, params, data[split])
            checkpoints.append(entry)
            tqdm.write(
                f"step {step}: loss {curve['loss'][-1]:.3f}; "
                + "; ".join(
                    f"{s} CER greedy {entry[s]['greedy']['cer']:.3f} beam16 {entry[s]['beam_16']['cer']:.3f}"
                    for s in SPLITS
                )
            )

    # time the decoders alone (compiled), on the test split
    t0 = time.perf_counter()
    jax.block_until_ready(decode(params, jnp.asarray(data["test"].features), jnp.asarray(data["test"].lengths)))
    decode_s = time.perf_counter() - t0

    final = checkpoints[-1]
    examples, disagreements = {}, {}
    for split in SPLITS:
        _, transcripts = evaluate(decode, params, data[split])
        rows = [
            {"reference": ref, "voice": data[split].voices[i], **{name: transcripts[name][i] for name in DECODERS}}
            for i, ref in enumerate(data[split].texts)
        ]
        examples[split] = rows[:8]
        disagreements[split] = [r for r in rows if r["beam_16"] != r["greedy"]]  # where the search changed the text
    results = {
        "name": NAME,
        "size": _common.size_name(args),
        "config": {
            **{k: list(v) if isinstance(v, tuple) else v for k, v in size.items()},
            "seed": args.seed,
            "beams": list(BEAMS),
            "data": {k: v for k, v in data["config"].items() if not k.startswith("feature_")},
            "labels": "characters: blank (0), then " + repr(sp.ALPHABET),
            "model": (
                f"stack {size['stride']} frames, {size['layers']} x BiGRU({size['hidden']}), "
                f"Dense({len(sp.ALPHABET) + 1})"
            ),
            "num_params": int(sum(x.size for x in jax.tree_util.tree_leaves(params))),
        },
        "environment": _common.environment(),
        "final": {split: final[split] for split in SPLITS},
        "checkpoints": checkpoints,
        "curve": curve,
        "examples": examples,
        "greedy_vs_beam_16_disagreements": disagreements,
        "time_s": {
            "data": round(synth_s, 1),
            "training": round(train_s, 1),
            "decode_test_split_all_decoders": round(decode_s, 2),
        },
    }
    results["wall_time_s"] = round(time.perf_counter() - start, 1)
    _common.save_results(results, args, NAME)
    plot_posteriorgram(model, params, data["test_voices"], args)
    plot_training(results, args)
    print(summary_table(results))
    print(f"wrote {args.out / (NAME + '.json')} in {results['wall_time_s']} s")
    return results


# --- figures and table -----------------------------------------------------------------------------


def plot_posteriorgram(model, params, split, args, index=0):
    """Log-mel features and the CTC posteriors of one held-out-voice utterance."""
    n = int(split.lengths[index])
    logits, out_n = model.apply(params, jnp.asarray(split.features[index]), length=n)
    probs = np.asarray(jax.nn.softmax(logits, axis=-1))[: int(out_n)]  # [t', v]
    labels, count = rj.decode.ctc_greedy(jnp.log(probs + 1e-12), blank=sp.BLANK)
    beam = rj.decode.ctc_prefix_beam_search(jnp.log(probs + 1e-12), beam_size=16, blank=sp.BLANK)
    greedy_text = sp.decode_labels(labels, count)
    beam_text = sp.decode_labels(beam.labels[0], beam.lengths[0])
    names = ["blank", *("space" if c == " " else c for c in sp.ALPHABET)]
    frame_s = 0.01 * model.stride

    fig, (top, middle, bottom) = plt.subplots(
        3, 1, figsize=(9, 7.5), sharex=True, gridspec_kw={"height_ratios": [1.2, 1.6, 1.1]}
    )
    top.imshow(split.features[index, :n].T, origin="lower", aspect="auto", cmap="magma", extent=(0, n * 0.01, 0, 40))
    top.set_ylabel("mel band")
    top.set_title(f'"{split.texts[index]}" (voice {split.voices[index]}, never heard in training)')
    middle.imshow(
        probs.T, origin="lower", aspect="auto", cmap="Greys", extent=(0, len(probs) * frame_s, -0.5, len(names) - 0.5)
    )
    middle.set_yticks(range(len(names)), names, fontsize=7)
    middle.set_ylabel("label")
    middle.set_title(f'CTC posteriors; greedy: "{greedy_text}"; prefix beam 16: "{beam_text}"')
    times = (np.arange(len(probs)) + 0.5) * frame_s
    bottom.plot(times, probs[:, sp.BLANK], color="tab:gray", lw=1, label="blank")
    best = probs[:, 1:].argmax(axis=1) + 1
    peak = probs[np.arange(len(probs)), best]
    bottom.plot(times, peak, color="tab:blue", lw=1, label="best non-blank label")
    for t, p, c in zip(times, peak, best, strict=True):
        if p > 0.5:
            bottom.annotate(names[c] if names[c] != "space" else "_", (t, p), fontsize=7, ha="center", va="bottom")
    bottom.set_ylim(0, 1.15)
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel("probability")
    bottom.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    _common.save_figure(fig, args, NAME, "posteriorgram")


def plot_training(results, args):
    fig, axes = plt.subplots(1, 1 + len(SPLITS), figsize=(12, 3.4))
    curve = results["curve"]
    axes[0].plot(curve["step"], curve["loss"], color="k", lw=1)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("CTC loss per label (nats)")
    axes[0].set_title("training loss")
    steps = [c["step"] for c in results["checkpoints"]]
    styles = {
        "greedy": ("k", "o-"),
        "beam_1": ("tab:gray", "x--"),
        "beam_4": ("tab:blue", "s-"),
        "beam_16": ("tab:orange", "^:"),
    }
    for ax, split in zip(axes[1:], SPLITS, strict=True):
        for name in DECODERS:
            color, style = styles[name]
            ax.plot(
                steps, [c[split][name]["cer"] for c in results["checkpoints"]], style, color=color, ms=4, label=name
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(steps, [str(s) for s in steps])
        ax.set_yticks([0.01, 0.03, 0.1, 0.3, 1.0], ["1%", "3%", "10%", "30%", "100%"])
        ax.minorticks_off()
        ax.set_xlabel("step")
        ax.set_ylabel("CER")
        ax.set_title({"test": "held-out speeds and pitches", "test_voices": "held-out voices"}[split])
        ax.legend(fontsize=7)
    fig.tight_layout()
    _common.save_figure(fig, args, NAME, "training")


def summary_table(results) -> str:
    header = [
        "decoder",
        *(f"{s} CER" for s in SPLITS),
        *(f"{s} WER" for s in SPLITS),
        *(f"{s} sentences" for s in SPLITS),
    ]
    rows = []
    for name in DECODERS:
        row = [name.replace("_", " ")]
        for metric in ("cer", "wer", "sentence_accuracy"):
            row += [f"{100 * results['final'][s][name][metric]:.1f}%" for s in SPLITS]
        rows.append(row)
    step = results["checkpoints"][-1]["step"]
    return f"Spoken digits, after {step} steps (CER / WER: lower is better; sentences: exact matches):\n" + (
        _common.markdown_table(header, rows)
    )


if __name__ == "__main__":
    main()
