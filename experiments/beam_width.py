"""Experiment 4: the beam-width trade-off in sequence-to-sequence decoding.

Question: what does a wider beam buy over greedy decoding, and what does it cost? The task is
date-format normalisation, generated here with a fixed seed: a date written in one of ten
formats ("3 March 2021", "03/03/21", "March 3, 2021", "wednesday, march 3, 2021", ...) is
rewritten as "2021-03-03". Sources are characters, targets the 10 characters of "YYYY-MM-DD"
and an end token. Dates run from 1950 to 2049 (so "21" means 2021 and "75" 1975); every tenth
day is held out for the test set, so test dates were never seen in training.

A Seq2Seq model (rnnjax.models.Seq2Seq: bidirectional GRU encoder, GRU decoder, Bahdanau
attention) is trained with teacher forcing for a fixed number of steps, short enough at the
default size that it still makes mistakes, which is when decoding matters. Then the test set
is decoded greedily (rnnjax.decode.greedy) and by beam search (rnnjax.decode.beam_search) of
widths 1..16 with GNMT length penalties alpha = 0, 0.6 and 1.0. For each decoder:

- exact-match accuracy (the whole date right, end token included);
- the log-likelihood log p(y | x) of the returned hypothesis under the model (higher: a better
  search), and how many wrong answers are *search errors* (the model scores the reference
  higher than what the search returned) rather than *model errors*;
- speed (test examples per second, from the fastest of a few timed runs of the jitted,
  vmapped decoder over the whole test set) and XLA's temporary memory of the compiled
  decoder (memory_analysis()).

Greedy and beam search (alpha 0) are also scored at four checkpoints during training, to see
how the beam's gain depends on how sure the model is.

    python experiments/beam_width.py            # default size, a few minutes on a CPU
    python experiments/beam_width.py --full     # larger model and test set (GPU/TPU)

Writes experiments/results/beam_width.json and beam_width_{tradeoff,search_errors,training}.png.
"""

import datetime
import statistics
import time

import _common
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from tqdm.auto import tqdm

import rnnjax as rj

NAME = "beam_width"
FIRST_DAY, LAST_DAY = datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)
HELD_OUT_EVERY = 10  # days with ordinal % 10 == 0 are test dates only
SRC_CHARS = " ,./-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
PAD, BOS, EOS = 0, 1, 2
TGT_CHARS = "0123456789-"
SRC_VOCAB, TGT_VOCAB = 1 + len(SRC_CHARS), 3 + len(TGT_CHARS)
MAX_SRC = 32
TGT_LEN = 10 + 1  # "YYYY-MM-DD" and the end token
MAX_LEN = TGT_LEN + 2  # the decoders may run two tokens past the reference length
CHECKPOINTS = 5  # greedy vs beam (alpha 0) is also scored at 1/5, 2/5, ... of training
ALPHAS = (0.0, 0.6, 1.0)
SIZES = {  # model sizes, training steps, batch, Adam learning rate, test examples, beam widths, timed repeats
    "tiny": dict(embed=8, hidden=8, steps=3, batch=16, lr=3e-3, test=32, beams=(1, 2), alphas=(0.0, 1.0), repeats=1),
    "default": dict(
        embed=16, hidden=48, steps=150, batch=64, lr=3e-3, test=1000, beams=(1, 2, 4, 8, 16), alphas=ALPHAS, repeats=5
    ),
    "full": dict(
        embed=32, hidden=128, steps=3000, batch=128, lr=1e-3, test=10000, beams=(1, 2, 3, 4, 6, 8, 12, 16),
        alphas=ALPHAS, repeats=5,
    ),
}  # fmt: skip


# --- data: dates written ten ways -> "YYYY-MM-DD" -------------------------------------------------


def _ordinal(day: int) -> str:
    suffix = "th" if 11 <= day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


FORMATS = (  # each: date -> source string
    lambda d: f"{d.day} {d:%B %Y}",  # 3 March 2021
    lambda d: f"{d:%d/%m/%y}",  # 03/03/21 (day first)
    lambda d: f"{d:%B} {d.day}, {d.year}",  # March 3, 2021
    lambda d: f"{d.day} {d:%b %Y}",  # 3 Mar 2021
    lambda d: f"{d:%b} {d.day}, {d.year}",  # Mar 3, 2021
    lambda d: f"{d:%d.%m.%Y}",  # 03.03.2021
    lambda d: f"{d:%A, %B} {d.day}, {d.year}".lower(),  # wednesday, march 3, 2021
    lambda d: f"{_ordinal(d.day)} of {d:%B %Y}",  # 3rd of March 2021
    lambda d: f"{d:%d-%b-%y}".upper(),  # 03-MAR-21
    lambda d: f"{d:%a %d %b %Y}",  # Wed 03 Mar 2021
)
FORMAT_NAMES = [f(datetime.date(2021, 3, 3)) for f in FORMATS]  # each format, shown on 3 March 2021
SRC_IDS = {c: i + 1 for i, c in enumerate(SRC_CHARS)}
TGT_IDS = {c: i + 3 for i, c in enumerate(TGT_CHARS)}


def make_examples(rng: np.random.Generator, n: int, test: bool):
    """``n`` random (date, format) pairs: source strings, padded source ids, target ids."""
    first, last = FIRST_DAY.toordinal(), LAST_DAY.toordinal()
    ordinals = np.arange(first, last + 1)
    held_out = ordinals % HELD_OUT_EVERY == 0
    days = rng.choice(ordinals[held_out] if test else ordinals[~held_out], size=n)
    formats = rng.integers(len(FORMATS), size=n)
    dates = [datetime.date.fromordinal(int(o)) for o in days]
    sources = [FORMATS[f](d) for f, d in zip(formats, dates, strict=True)]
    src, src_len = rj.data.pad_batch([[SRC_IDS[c] for c in s] for s in sources], max_len=MAX_SRC, pad_id=PAD)
    tgt = np.array([[TGT_IDS[c] for c in d.isoformat()] + [EOS] for d in dates], np.int32)  # [n, TGT_LEN]
    tgt_in = np.concatenate([np.full((n, 1), BOS, np.int32), tgt[:, :-1]], axis=1)
    return {"sources": sources, "formats": formats, "src": src, "src_len": src_len, "tgt_in": tgt_in, "tgt": tgt}


def to_text(tokens, length) -> str:
    chars = {i: c for c, i in TGT_IDS.items()}
    return "".join(chars.get(int(t), "?") for t in tokens[: max(int(length) - 1, 0)])


# --- the model and its training --------------------------------------------------------------------


def make_model(size):
    encoder = rj.Bidirectional(rj.GRUCell(size["hidden"]), rj.GRUCell(size["hidden"]))
    return rj.models.Seq2Seq(SRC_VOCAB, TGT_VOCAB, size["embed"], encoder, rj.GRUCell(size["hidden"]), "bahdanau")


def train(model, size, seed, bar, checkpoint, devices=None):
    """Adam with teacher forcing on fresh batches; calls ``checkpoint(step, params)`` at CHECKPOINTS steps."""
    optimizer = optax.adam(size["lr"])

    def loss(params, batch, key):  # teacher forcing; every target has TGT_LEN tokens
        logits = jax.vmap(model.apply, (None, 0, 0, 0))(params, batch["src"], batch["src_len"], batch["tgt_in"])
        return rj.losses.sequence_cross_entropy(logits, batch["tgt"])

    step = rj.parallel.make_train_step(loss, optimizer, devices=devices, clip_norm=1.0)
    params = model.init(jax.random.key(seed))
    opt_state = optimizer.init(params)
    rng = np.random.default_rng(seed)
    curve = []
    for i in range(size["steps"]):
        batch = make_examples(rng, size["batch"], test=False)
        batch = {k: batch[k] for k in ("src", "src_len", "tgt_in", "tgt")}
        params, opt_state, metrics = step(params, opt_state, batch, None)
        curve.append(float(metrics["loss"]))
        if i % 25 == 0:
            bar.set_postfix(loss=f"{np.mean(curve[-25:]):.3f}")
        bar.update(1)
        if (i + 1) % max(1, size["steps"] // CHECKPOINTS) == 0 and i + 1 < size["steps"]:
            checkpoint(i + 1, params)
    return params, curve


# --- decoding: timed, with XLA's memory estimate, and scored ------------------------------------------


def make_decoders(model, beams, alphas):
    """``{(beam, alpha): decode(params, carries) -> (tokens [n, L], lengths [n])}``; beam 0 is greedy.

    Each decoder is vmapped over the batch of encoder carries (rnnjax.decode decodes one sequence);
    for beam search it keeps the best hypothesis.
    """

    def greedy(params, carries):
        return jax.vmap(lambda c: rj.decode.greedy(model.step_fn, params, c, BOS, max_len=MAX_LEN, eos=EOS))(carries)

    def beam_search(beam, alpha):
        def search(params, carries):
            out = jax.vmap(
                lambda c: rj.decode.beam_search(
                    model.step_fn, params, c, BOS, beam_size=beam, max_len=MAX_LEN, eos=EOS, alpha=alpha
                )
            )(carries)
            return out.tokens[:, 0], out.lengths[:, 0]

        return search

    return {(0, 0.0): greedy, **{(b, a): beam_search(b, a) for a in alphas for b in beams}}


class Compiled(dict):
    """Each decoder compiled once (XLA:CPU compiles per shape), on first use."""

    def __init__(self, decoders):
        super().__init__()
        self.decoders = decoders

    def get(self, key, params, carries):
        if key not in self:
            self[key] = jax.jit(self.decoders[key]).lower(params, carries).compile()
        return self[key]


def timed(compiled, params, carries, repeats: int):
    """Seconds per run of a compiled decoder after a warm-up: the fastest and the median of ``repeats`` runs
    (on a shared machine the fastest is the least disturbed), and XLA's temporary memory (MiB)."""
    jax.block_until_ready(compiled(params, carries))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(params, carries))
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), compiled.memory_analysis().temp_size_in_bytes / 2**20


def make_rescore(model):
    """``rescore(params, src, src_len, tokens [b, L], lengths [b]) -> log p(tokens | src) [b]`` (end token included)."""

    def one(params, src, src_len, tokens, length):
        tgt_in = jnp.concatenate([jnp.array([BOS], tokens.dtype), tokens[:-1]])
        log_probs = jax.nn.log_softmax(model.apply(params, src, src_len, tgt_in))  # [L, v]
        picked = jnp.take_along_axis(log_probs, tokens[:, None], axis=-1)[:, 0]
        return jnp.sum(jnp.where(jnp.arange(tokens.shape[0]) < length, picked, 0.0))

    return jax.jit(jax.vmap(one, (None, 0, 0, 0, 0)))


def evaluate(name, tokens, lengths, alpha, test, rescore, params):
    """Accuracy, log-likelihoods and search-vs-model errors of one decoder's best hypotheses."""
    n = len(test["tgt"])
    reference = np.zeros((n, MAX_LEN), np.int32)
    reference[:, :TGT_LEN] = test["tgt"]
    correct = np.all(np.asarray(tokens) == reference, axis=1)
    loglik = np.asarray(rescore(params, test["src"], test["src_len"], jnp.asarray(tokens), jnp.asarray(lengths)))
    ref_loglik = np.asarray(
        rescore(params, test["src"], test["src_len"], jnp.asarray(reference), jnp.full((n,), TGT_LEN))
    )
    penalty = np.asarray(rj.decode.length_penalty(jnp.asarray(lengths), alpha))
    score, ref_score = loglik / penalty, ref_loglik / float(rj.decode.length_penalty(TGT_LEN, alpha))
    wrong = ~correct
    return {
        "decoder": name,
        "alpha": alpha,
        "exact_match": float(correct.mean()),
        "mean_loglik": float(loglik.mean()),
        "mean_reference_loglik": float(ref_loglik.mean()),
        "mean_length": float(np.mean(np.asarray(lengths, np.float64))),
        "search_errors": int(np.sum(wrong & (ref_score > score + 1e-4))),  # the model prefers the reference
        "model_errors": int(np.sum(wrong & (ref_score <= score + 1e-4))),
        "_correct": correct,
    }


# --- the experiment --------------------------------------------------------------------------------


def main(argv=None):
    args = _common.parser(__doc__.split("\n")[0]).parse_args(argv)
    size = _common.chosen_size(args, SIZES)
    start = time.perf_counter()
    model = make_model(size)
    print(
        f"{NAME}: {len(FORMATS)} date formats -> YYYY-MM-DD; Seq2Seq BiGRU({size['hidden']}) -> "
        f"GRU({size['hidden']}) with Bahdanau attention; {size['steps']} steps of batch {size['batch']}"
    )

    test = make_examples(np.random.default_rng(args.seed + 10_000), size["test"], test=True)
    encode = jax.jit(jax.vmap(model.encode, (None, 0, 0)))
    rescore = make_rescore(model)
    compiled = Compiled(make_decoders(model, size["beams"], size["alphas"]))

    def decode(key, params):
        carries = encode(params, test["src"], test["src_len"])  # every decoder starts from the same carries
        tokens, lengths = compiled.get(key, params, carries)(params, carries)
        name = "greedy" if key[0] == 0 else f"beam {key[0]}"
        return evaluate(name, tokens, lengths, key[1], test, rescore, params), (tokens, lengths), carries

    # 1. Train with teacher forcing on freshly generated training dates; at a few checkpoints on the way,
    #    score greedy decoding and beam search (alpha 0) on the held-out test dates.
    progress = []

    def checkpoint(step, params):
        scores = {"step": step}
        for key in [(0, 0.0), *((b, 0.0) for b in size["beams"])]:
            row = decode(key, params)[0]
            scores[row["decoder"]] = {k: row[k] for k in ("exact_match", "mean_loglik", "search_errors")}
        progress.append(scores)
        bar.set_postfix(greedy=f"{scores['greedy']['exact_match']:.3f}")

    bar = tqdm(total=size["steps"], unit="step", desc="training")
    params, curve = train(model, size, args.seed, bar, checkpoint, args.devices)
    bar.close()
    train_s = time.perf_counter() - start

    # 2. The trained model: greedy, then every beam width and length penalty, timed, with XLA's memory.
    rows, outputs = [], {}
    for key in tqdm(compiled.decoders, desc="decoding", unit="decoder"):
        row, outputs[key], carries = decode(key, params)
        seconds, median, memory = timed(compiled[key], params, carries, size["repeats"])
        row.update(
            examples_per_s=size["test"] / seconds,
            ms_per_batch=1e3 * seconds,
            ms_per_batch_median=1e3 * median,
            temp_mib=memory,
        )
        if key[0]:
            row["beam"] = key[0]
        rows.append(row)
    progress.append({"step": size["steps"], **{r["decoder"]: r for r in rows if r["alpha"] == 0.0}})

    # 3. Where the widest beam fixes greedy, or breaks it: a few test examples.
    greedy_correct = rows[0]["_correct"]
    widest = max(size["beams"])
    beam_correct = next(r for r in rows if r.get("beam") == widest and r["alpha"] == 0.0)["_correct"]
    fixed = np.flatnonzero(~greedy_correct & beam_correct)[:5]
    broken = np.flatnonzero(greedy_correct & ~beam_correct)[:5]
    (tokens, lengths), (beam_tokens, beam_lengths) = outputs[(0, 0.0)], outputs[(widest, 0.0)]
    examples = [
        {
            "source": test["sources"][i],
            "greedy": to_text(tokens[i], lengths[i]),
            f"beam_{widest}": to_text(beam_tokens[i], beam_lengths[i]),
            "reference": to_text(test["tgt"][i], TGT_LEN),
        }
        for i in [*fixed, *broken]
    ]
    per_format = {
        FORMAT_NAMES[f]: float(greedy_correct[test["formats"] == f].mean()) if np.any(test["formats"] == f) else None
        for f in range(len(FORMATS))
    }

    for r in rows:
        r.pop("_correct")
    progress[-1] = {
        k: v if k == "step" else {m: v[m] for m in ("exact_match", "mean_loglik", "search_errors")}
        for k, v in progress[-1].items()
    }
    results = {
        "name": NAME,
        "size": _common.size_name(args),
        "config": {
            **{k: list(v) if isinstance(v, tuple) else v for k, v in size.items()},
            "seed": args.seed,
            "model": "Seq2Seq(BiGRU encoder, GRU decoder, Bahdanau attention)",
            "formats": FORMAT_NAMES,
            "max_len": MAX_LEN,
            "years": [FIRST_DAY.year, LAST_DAY.year],
        },
        "environment": _common.environment(),
        "train_curve": curve[:: max(1, len(curve) // 200)],
        "final_train_loss": float(np.mean(curve[-25:])),
        "train_s": round(train_s, 1),
        "greedy_exact_match_by_format": per_format,
        "during_training": progress,
        "decoders": rows,
        "examples": examples,
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    _common.save_results(results, args, NAME)
    plot(results, args)
    print(summary_table(results))
    print(f"wrote {args.out / (NAME + '.json')} in {results['wall_time_s']} s")
    return results


# --- figures and table -----------------------------------------------------------------------------


def plot(results, args):
    rows = results["decoders"]
    greedy = rows[0]
    alphas = results["config"]["alphas"]
    colors = dict(zip(alphas, ("tab:blue", "tab:orange", "tab:green"), strict=False))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for alpha in alphas:
        beam = [r for r in rows[1:] if r["alpha"] == alpha]
        widths = [r["beam"] for r in beam]
        axes[0].plot(
            widths, [100 * r["exact_match"] for r in beam], "o-", color=colors[alpha], label=f"beam, α={alpha}"
        )
        axes[1].plot(widths, [r["mean_loglik"] for r in beam], "o-", color=colors[alpha], label=f"beam, α={alpha}")
    for ax, key, scale in ((axes[0], "exact_match", 100), (axes[1], "mean_loglik", 1)):
        ax.axhline(scale * greedy[key], color="k", ls="--", lw=1, label="greedy")
    axes[1].axhline(greedy["mean_reference_loglik"], color="gray", ls=":", lw=1, label="reference")
    shown = [100 * r["exact_match"] for r in rows]
    axes[0].set_ylim(min(shown) - 1, max(shown) + 1)  # at least +-1 point: small differences look small
    axes[0].set_ylabel("exact match on test dates (%)")
    axes[1].set_ylabel("mean log p(hypothesis | source)")
    beam0 = [r for r in rows[1:] if r["alpha"] == alphas[0]]
    widths = [r["beam"] for r in beam0]
    axes[2].plot(widths, [r["examples_per_s"] for r in beam0], "o-", color="tab:purple", label="beam: examples/s")
    axes[2].axhline(greedy["examples_per_s"], color="tab:purple", ls="--", lw=1, label="greedy: examples/s")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("test examples per second", color="tab:purple")
    memory = axes[2].twinx()
    memory.plot(widths, [r["temp_mib"] for r in beam0], "s-", color="tab:brown", label="beam: temp memory")
    memory.set_ylabel("XLA temp memory (MiB)", color="tab:brown")
    axes[2].set_title(f"cost (α={alphas[0]}, batch of {results['config']['test']})")
    axes[0].set_title("accuracy")
    axes[1].set_title("search quality")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.set_xlabel("beam width")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    _common.save_figure(fig, args, NAME, "tradeoff")

    # wrong answers at each checkpoint, split into search and model errors: greedy vs the widest beam
    progress, n = results["during_training"], results["config"]["test"]
    widest = f"beam {max(results['config']['beams'])}"
    fig, ax = plt.subplots(figsize=(7, 3.4))
    x = np.arange(len(progress))
    for offset, decoder, hatch in ((-0.2, "greedy", None), (0.2, widest, "//")):
        search = np.array([p[decoder]["search_errors"] for p in progress])
        wrong = np.array([round((1 - p[decoder]["exact_match"]) * n) for p in progress])
        ax.bar(x + offset, search, 0.38, color="tab:red", hatch=hatch, label=f"{decoder}: search errors")
        ax.bar(
            x + offset,
            wrong - search,
            0.38,
            bottom=search,
            color="tab:gray",
            hatch=hatch,
            label=f"{decoder}: model errors",
        )
    ax.set_xticks(x, [f"step {p['step']}" for p in progress])
    ax.set_ylabel(f"wrong answers (of {n})")
    ax.set_title("search errors (the model prefers the reference) vs model errors, α=0")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _common.save_figure(fig, args, NAME, "search_errors")

    progress = results["during_training"]
    steps = [p["step"] for p in progress]
    decoders = [k for k in progress[-1] if k != "step"]
    fig, (acc, gain) = plt.subplots(1, 2, figsize=(10, 3.4))
    for j, decoder in enumerate(decoders):
        style = dict(color="k", ls="--") if decoder == "greedy" else dict(color=plt.cm.viridis(j / len(decoders)))
        acc.plot(steps, [100 * p[decoder]["exact_match"] for p in progress], marker="o", ms=3, label=decoder, **style)
        if decoder != "greedy":
            delta = [100 * (p[decoder]["exact_match"] - p["greedy"]["exact_match"]) for p in progress]
            gain.plot(steps, delta, marker="o", ms=3, label=decoder, **style)
    acc.set_ylabel("exact match (%)")
    acc.set_title("test accuracy during training (α=0)")
    gain.axhline(0, color="k", lw=0.8)
    gain.set_ylabel("beam minus greedy (points)")
    gain.set_title("what the beam adds over greedy")
    for ax in (acc, gain):
        ax.set_xlabel("training step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    _common.save_figure(fig, args, NAME, "training")


def summary_table(results) -> str:
    header = [
        "decoder",
        "α",
        "exact match",
        "mean log p(best)",
        "search / model errors",
        "examples/s",
        "XLA temp MiB",
    ]
    rows = [
        [
            r["decoder"],
            r["alpha"] if r["decoder"] != "greedy" else "-",
            f"{100 * r['exact_match']:.1f}%",
            f"{r['mean_loglik']:.3f}",
            f"{r['search_errors']} / {r['model_errors']}",
            f"{r['examples_per_s']:.0f}",
            f"{r['temp_mib']:.2f}",
        ]
        for r in results["decoders"]
    ]
    return (
        f"Date normalisation, {results['config']['test']} held-out test dates "
        f"(mean log p of the reference: {results['decoders'][0]['mean_reference_loglik']:.3f}):\n"
        + _common.markdown_table(header, rows)
    )


if __name__ == "__main__":
    main()
