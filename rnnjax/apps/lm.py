"""The character language-model job behind ``rnnjax demo`` and ``rnnjax generate``.

Trains a character-level RNN language model on a corpus (by default the Python standard
library's own sources, :func:`rnnjax.data.load_corpus`), measures validation bits per
character next to an interpolated Kneser-Ney n-gram model fitted on the same training text,
and generates text with greedy decoding, sampling and beam search. A run directory holds the
configuration, the vocabulary and orbax checkpoints, so a run can be resumed and generated from.
Everything that can be checked before training (the settings, the corpus against the window, the
devices, a run directory against the run) is checked before anything is written; a failed check
raises :class:`SetupError`.
"""

import dataclasses
import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnjax import data, decode, losses, models, ngram, parallel, train
from rnnjax._src import checks
from rnnjax._src.files import replace_file
from rnnjax.cells import ElmanCell, GRUCell, LSTMCell

CELLS = {"lstm": LSTMCell, "gru": GRUCell, "elman": ElmanCell}
VALID_STREAMS = 16  # bits_per_char cuts the validation text into this many streams
_RUN_FILES = ("config.json", "vocab.json", "metrics.jsonl", "results.json")  # besides checkpoints/
_RESUME_FIELDS = ("cell", "hidden", "layers", "embed", "seed")  # a resumed run keeps these


class SetupError(ValueError):
    """A corpus, device count or run directory that cannot take the run asked for.

    :func:`train_char_lm` raises it before anything is written (the run directory's bytes are as
    they were); the message names the setting, with its ``rnnjax demo`` flag, or the file.
    """


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """Settings of a character LM run (all have defaults that train in a few minutes on 2 CPU cores)."""

    corpus: str | None = None  # a text file or directory; None: the embedded stdlib corpus
    max_chars: int = 3_000_000
    cell: str = "lstm"
    hidden: int = 256
    layers: int = 1
    embed: int = 48
    steps: int = 1500
    batch: int = 32
    window: int = 128
    lr: float = 0.02
    clip_norm: float = 1.0
    dropout: float = 0.0  # the cells' input dropout (one mask per sequence)
    recurrent_dropout: float = 0.0  # the cells' recurrent dropout
    kn_order: int = 7  # Kneser-Ney baselines of orders 2 .. kn_order
    seed: int = 0

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell: expected one of {sorted(CELLS)}, got {self.cell!r}")
        if self.corpus is not None and not isinstance(self.corpus, str):
            raise ValueError(f"corpus: expected a path (str) or None, got {self.corpus!r}")
        for name in ("hidden", "layers", "embed", "steps", "batch", "window", "kn_order"):
            checks.positive_int(getattr(self, name), name)
        if self.max_chars is not None:
            checks.positive_int(self.max_chars, "max_chars")
        checks.non_negative_int(self.seed, "seed")  # numpy's seeds of the data order are >= 0
        for name in ("dropout", "recurrent_dropout"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1):
                raise ValueError(f"{name}: expected a rate in [0, 1), got {value!r}")
        for name in ("lr", "clip_norm"):
            value = getattr(self, name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive finite number, got {value!r}")

    def model(self, vocab_size: int) -> models.LanguageModel:
        rates = {"dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout}
        cells = [CELLS[self.cell](self.hidden, **rates) for _ in range(self.layers)]
        return models.LanguageModel(vocab_size, self.embed, cells if self.layers > 1 else cells[0])


def _random_windows(ids: np.ndarray, batch: int, window: int, seed: int):
    """``data(step)``: ``batch`` random windows of ``window + 1`` tokens, a pure function of the step."""

    def batch_at(step: int):
        rng = np.random.default_rng([seed, step])
        starts = rng.integers(0, len(ids) - window - 1, size=batch)
        chunk = np.stack([ids[s : s + window + 1] for s in starts])
        return {"inputs": chunk[:, :-1], "targets": chunk[:, 1:]}

    return batch_at


def bits_per_char(model: models.LanguageModel, params, ids: np.ndarray, *, streams: int = 16, window: int = 512):
    """Validation bits per character: the text cut into ``streams`` streams, the carry passed between windows.

    Every token but the first of the text is scored once (see :func:`rnnjax.data.lm_streams`).
    """
    cut = data.lm_streams(ids, streams)

    @jax.jit
    def window_loss(params, carry, inputs, targets):
        def one(carry, inputs, targets):
            carry, logits = model.apply_with_carry(params, inputs, carry)
            return carry, jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, targets))

        return jax.vmap(one)(carry, inputs, targets)

    carry = jax.vmap(lambda _: model.initial_carry(params))(jnp.arange(streams))
    total, count = 0.0, 0
    for inputs, targets in data.lm_windows(cut, window):
        carry, nats = window_loss(params, carry, jnp.asarray(inputs), jnp.asarray(targets))
        total += float(jnp.sum(nats))
        count += targets.size
    return total / count / math.log(2)


def _loss_fn(model):
    def loss_fn(params, batch, key):  # the key: the cells' dropout masks, one per sequence
        keys = jax.random.split(key, batch["inputs"].shape[0])
        logits = jax.vmap(lambda t, k: model.apply(params, t, key=k))(batch["inputs"], keys)
        return losses.sequence_cross_entropy(logits, batch["targets"])

    return loss_fn


def _save_config(run_dir: Path, config: LMConfig) -> None:
    text = json.dumps(dataclasses.asdict(config), indent=2)
    replace_file(run_dir / "config.json", lambda path: path.write_text(text))


def _read_config(path: Path) -> LMConfig:
    try:
        return LMConfig(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, TypeError, ValueError) as error:  # JSONDecodeError is a ValueError
        raise SetupError(
            f"{path} cannot be read as a run's configuration ({type(error).__name__}: {error}); "
            "it is truncated or was not written by rnnjax demo"
        ) from error


def _read_vocab(path: Path) -> data.CharVocab:
    try:
        return data.CharVocab.load(path)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise SetupError(
            f"{path} cannot be read as a run's vocabulary ({type(error).__name__}: {error}); "
            "it is truncated or was not written by rnnjax demo"
        ) from error


def _checkpoint_steps(run_dir: Path) -> list[int]:
    """The steps of the checkpoints in ``run_dir / "checkpoints"``, ascending (orbax names them by step)."""
    checkpoints = run_dir / "checkpoints"
    if not checkpoints.is_dir():
        return []
    return sorted(int(path.name) for path in checkpoints.iterdir() if path.name.isdigit())


def _run_contents(run_dir: Path) -> list[str]:
    """What of a run ``run_dir`` holds, e.g. ``["checkpoint at step 250", "config.json"]`` ([] for none)."""
    if not run_dir.is_dir():
        return []
    held = [name for name in _RUN_FILES if (run_dir / name).exists()]
    checkpoints = run_dir / "checkpoints"
    if checkpoints.is_dir():
        steps = _checkpoint_steps(run_dir)
        if steps:
            held.insert(0, f"checkpoint at step {steps[-1]}")
        elif any(checkpoints.iterdir()):
            held.append("checkpoints/")
    elif checkpoints.exists():
        held.append("checkpoints")
    return held


def _shown(chars: str, limit: int = 20) -> str:
    return repr(chars[:limit]) + (f" and {len(chars) - limit} more" if len(chars) > limit else "") if chars else "none"


def _check_run_dir(run_dir: Path, config: LMConfig, vocab: data.CharVocab, resume: bool) -> bool:
    """Whether ``run_dir`` holds a run to resume; :class:`SetupError` if it cannot take this one.

    A directory holding a run is refused without ``resume``; with it, the saved configuration
    must describe the same model (:data:`_RESUME_FIELDS`) and the saved vocabulary must be
    ``vocab`` exactly. Reads only.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise SetupError(f"run_dir: {run_dir} is a file, not a directory (--run-dir)")
    held = _run_contents(run_dir)
    if not held:
        return False
    if not resume:
        raise SetupError(
            f"run_dir: {run_dir} already holds a run ({', '.join(held)}); continue it with --resume "
            "(resume=True), or choose another --run-dir. Nothing was written."
        )
    for name in ("config.json", "vocab.json"):
        if not (run_dir / name).is_file():
            raise SetupError(
                f"resume: {run_dir} holds {', '.join(held)} but no {name}, so the run cannot be checked "
                "against this one; choose another --run-dir. Nothing was written."
            )
    try:
        saved, saved_vocab = _read_config(run_dir / "config.json"), _read_vocab(run_dir / "vocab.json")
    except SetupError as error:
        raise SetupError(
            f"resume: {error}, so the run in {run_dir} cannot be checked against this one; repair the file or "
            "choose another --run-dir. Nothing was written."
        ) from error
    differ = [name for name in _RESUME_FIELDS if getattr(saved, name) != getattr(config, name)]
    if differ:
        changes = "; ".join(f"{name} {getattr(saved, name)!r} there, {getattr(config, name)!r} now" for name in differ)
        flags = " ".join(f"--{name} {getattr(saved, name)}" for name in differ)
        raise SetupError(
            f"resume: {run_dir / 'config.json'} describes another model ({changes}); resume it with {flags}, "
            "or start this run in another --run-dir. Nothing was written."
        )
    steps = _checkpoint_steps(run_dir)
    if steps and steps[-1] > config.steps:
        raise SetupError(
            f"steps: {config.steps} is below the step {steps[-1]} of the checkpoint to resume in {run_dir}; "
            f"resume with --steps {steps[-1]} or more. Nothing was written."
        )
    if saved_vocab != vocab:
        corpus = "no --corpus" if saved.corpus is None else f"--corpus {saved.corpus}"
        new = "".join(sorted(set(vocab.chars) - set(saved_vocab.chars)))
        gone = "".join(sorted(set(saved_vocab.chars) - set(vocab.chars)))
        raise SetupError(
            f"resume: this corpus's vocabulary is not the run's {run_dir / 'vocab.json'} (characters "
            f"not in the run's: {_shown(new)}; the run's characters missing here: {_shown(gone)}), so the "
            f"model would read remapped characters; resume on the run's corpus ({corpus}, "
            f"--max-chars {saved.max_chars}), or start this run in another --run-dir. Nothing was written."
        )
    return True


def load_run(run_dir: str | Path):
    """``(config, vocab, model, params)`` from a run directory written by :func:`train_char_lm`.

    Raises ``FileNotFoundError`` naming what is missing, :class:`SetupError` (a ``ValueError``)
    naming a truncated or foreign ``config.json`` or ``vocab.json``, ``ValueError`` for a damaged
    checkpoint.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        problem = "is a file, not" if run_dir.exists() else "does not exist; expected"
        raise FileNotFoundError(f"{run_dir} {problem} a run directory (a --run-dir of rnnjax demo)")
    for name in ("config.json", "vocab.json"):
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"{run_dir / name} is missing (is {run_dir} a run directory?)")
    config = _read_config(run_dir / "config.json")
    vocab = _read_vocab(run_dir / "vocab.json")
    model = config.model(vocab.size)
    template = model.init(jax.random.key(0))
    params, _, _ = train.restore_checkpoint(
        run_dir / "checkpoints", template, _optimizer(config).init(template), jax.random.key(config.seed)
    )
    return config, vocab, model, params


def _optimizer(config: LMConfig):
    """Adam with a short linear warm-up and a cosine decay to a tenth of ``config.lr``.

    The warm-up and ``b2 = 0.99`` (the second-moment average forgets faster than the usual
    0.999, so the step size follows the shrinking gradients of the first few hundred steps) are
    what let the default run use a learning rate of 0.02; the language-model guide has the
    measurements behind the choice.
    """
    warmup = min(50, config.steps // 10)
    schedule = optax.warmup_cosine_decay_schedule(0.0, config.lr, warmup, config.steps, end_value=0.1 * config.lr)
    return optax.adam(schedule, b2=0.99)


def _num_devices(config: LMConfig, devices: int | None) -> int:
    """``devices`` (None: all there are), checked against the devices there are and the batch."""
    available = len(jax.devices())
    num_devices = available if devices is None else devices
    if isinstance(num_devices, bool) or not isinstance(num_devices, int) or num_devices < 1:
        raise SetupError(f"devices: expected a positive number of devices, got {num_devices!r} (--devices)")
    if num_devices > available:
        raise SetupError(
            f"devices: {num_devices} asked for, but there are {available} {jax.default_backend()} device(s) "
            "(--devices; for N fake CPU devices, set XLA_FLAGS=--xla_force_host_platform_device_count=N "
            "before starting Python)"
        )
    if num_devices > 1 and config.batch % num_devices:
        raise SetupError(
            f"batch: {config.batch} is not divisible by the {num_devices} devices; "
            f"choose a batch that is a multiple of {num_devices} (--batch) or another number of devices (--devices)"
        )
    return num_devices


def _train_step(config: LMConfig, model, optimizer, num_devices: int, log):
    """The single-device train step, or the data-parallel one over ``num_devices`` devices."""
    if num_devices > 1:
        per_device = config.batch // num_devices
        log(f"data-parallel over {num_devices} {jax.default_backend()} devices: {per_device} per device")
    return parallel.make_train_step(_loss_fn(model), optimizer, devices=num_devices, clip_norm=config.clip_norm)


def train_char_lm(
    config: LMConfig,
    run_dir: str | Path | None = None,
    *,
    resume=False,
    progress=True,
    log=print,
    devices: int | None = None,
):
    """Train the character LM of ``config``; returns a dict of results (bits per char, samples, timings).

    ``devices``: train data-parallel over the first ``devices`` devices of ``jax.devices()``
    (:mod:`rnnjax.parallel`; None: all of them; 1: the single-device step). ``config.batch`` must
    divide by it. The result does not depend on it (up to float rounding), and a run can be
    resumed on another number of devices.

    ``run_dir`` (None: nothing is kept) must hold no run (no checkpoint, ``config.json``,
    ``vocab.json``, ``metrics.jsonl`` or ``results.json``), or hold one and ``resume`` be set:
    then the run's ``config.json`` must describe the same model (cell, hidden, layers,
    embed, seed; steps, batch, window and the learning rate may change) and its ``vocab.json``
    be the corpus's vocabulary exactly. These checks, the window against the corpus and the
    devices run before anything is written; a failed one raises :class:`SetupError`. A resumed
    run's ``config.json`` is rewritten (steps, learning rate, ...) once its training is done.

    Example:
        >>> import tempfile, rnnjax as rj
        >>> from pathlib import Path
        >>> text = Path(tempfile.mkdtemp()) / "tiny.txt"
        >>> _ = text.write_text("abcabcabd" * 300)
        >>> config = rj.apps.lm.LMConfig(corpus=str(text), hidden=16, embed=8, steps=30, batch=4, window=16, kn_order=3)
        >>> result = rj.apps.lm.train_char_lm(config, progress=False, log=lambda *a: None)
        >>> sorted(result)
        ['history', 'kn_valid_bpc', 'lm_valid_bpc', 'samples', 'train_seconds']
    """
    try:
        corpus = data.load_corpus(config.corpus, max_chars=config.max_chars)
    except (OSError, ValueError) as error:
        raise SetupError(f"corpus: {error} (--corpus)") from error
    vocab = data.CharVocab.build(corpus.train)
    train_ids, valid_ids = vocab.encode(corpus.train), vocab.encode(corpus.valid)
    if len(train_ids) < config.window + 2:
        raise SetupError(
            f"window: {config.window} characters need a training text of at least {config.window + 2} "
            f"characters (windows of inputs and their next characters), the corpus has {len(train_ids):,}; "
            "choose a shorter --window or a larger --corpus / --max-chars"
        )
    if len(valid_ids) < VALID_STREAMS + 1:
        raise SetupError(
            f"corpus: its validation text has {len(valid_ids)} characters, bits per character needs at "
            f"least {VALID_STREAMS + 1}; choose a larger --corpus or --max-chars"
        )
    num_devices = _num_devices(config, devices)
    resuming = False
    if resume and run_dir is None:
        raise SetupError("resume: needs the run directory to resume (--run-dir)")
    if run_dir is not None:
        run_dir = Path(run_dir)
        resuming = _check_run_dir(run_dir, config, vocab, resume)
    log(
        f"corpus: {config.corpus or 'the Python standard library sources'}: "
        f"{len(train_ids):,} train / {len(valid_ids):,} valid characters, vocabulary {vocab.size}"
    )

    kn_bpc = {}
    for order in range(2, config.kn_order + 1):
        start = time.perf_counter()
        kn_bpc[order] = ngram.KneserNey(order).fit(train_ids, vocab.size).bits_per_token(valid_ids)
        log(f"Kneser-Ney order {order}: valid {kn_bpc[order]:.3f} bits/char ({time.perf_counter() - start:.1f} s)")

    model = config.model(vocab.size)
    params = model.init(jax.random.key(config.seed))
    optimizer = _optimizer(config)
    step = _train_step(config, model, optimizer, num_devices, log)
    checkpoint_dir = None
    if run_dir is not None:
        if not resuming:  # a resumed run's files stay as they are until its training is done
            run_dir.mkdir(parents=True, exist_ok=True)
            _save_config(run_dir, config)
            replace_file(run_dir / "vocab.json", vocab.save)
        checkpoint_dir = run_dir / "checkpoints"
    log(
        f"training {config.layers} x {config.cell.upper()}({config.hidden}) char LM: {config.steps} steps of "
        f"{config.batch} x {config.window} characters, adam({config.lr}, warm-up and cosine decay) "
        f"with clip {config.clip_norm}"
    )
    start = time.perf_counter()
    result = train.fit(
        step,
        params,
        optimizer.init(params),
        _random_windows(train_ids, config.batch, config.window, config.seed),
        num_steps=config.steps,
        key=jax.random.key(config.seed),
        log_every=50,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=250 if checkpoint_dir is not None else 0,
        metrics_path=None if run_dir is None else run_dir / "metrics.jsonl",
        resume=resume,
        progress=progress,
    )
    train_seconds = time.perf_counter() - start
    if resuming:
        _save_config(run_dir, config)  # the vocabulary is the saved one
    lm_bpc = bits_per_char(model, result.params, valid_ids, streams=VALID_STREAMS)
    log(f"{config.cell.upper()} LM: valid {lm_bpc:.3f} bits/char after {train_seconds:.0f} s of training")
    samples = generate(model, result.params, vocab, prompt="def ", length=120, seed=config.seed)
    return {
        "kn_valid_bpc": kn_bpc,  # {order: bits per char}
        "lm_valid_bpc": lm_bpc,
        "samples": samples,
        "train_seconds": train_seconds,
        "history": result.history,
    }


def generate(
    model,
    params,
    vocab: data.CharVocab,
    *,
    prompt: str = "def ",
    length: int = 120,
    seed: int = 0,
    beam_size: int = 4,
    temperature: float = 0.8,
    top_p: float = 0.95,
) -> dict:
    """Continue ``prompt`` with greedy decoding, sampling (temperature, top-p) and beam search.

    The prompt is fed to the model (teacher forcing) to build the carry; decoding starts from
    its last character. Returns ``{"greedy": text, "sample": text, "beam": text}``. The decoders
    check ``temperature`` and ``top_p`` (:func:`rnnjax.decode.sample`).
    """
    if not prompt:
        raise ValueError("prompt: expected at least one character")
    ids = jnp.asarray(vocab.encode(prompt))
    carry = model.apply_with_carry(params, ids[:-1])[0] if len(ids) > 1 else model.initial_carry(params)
    step_fn = model.step_fn
    last = ids[-1]
    greedy_tokens, greedy_len = decode.greedy(step_fn, params, carry, last, max_len=length)
    sample_tokens, sample_len = decode.sample(
        step_fn, params, carry, last, jax.random.key(seed), max_len=length, temperature=temperature, top_p=top_p
    )
    beam = decode.beam_search(step_fn, params, carry, last, beam_size=beam_size, max_len=length, alpha=0.0)
    return {
        "greedy": prompt + vocab.decode(np.asarray(greedy_tokens[: int(greedy_len)])),
        "sample": prompt + vocab.decode(np.asarray(sample_tokens[: int(sample_len)])),
        "beam": prompt + vocab.decode(np.asarray(beam.tokens[0, : int(beam.lengths[0])])),
    }
