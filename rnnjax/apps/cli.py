"""The ``rnnjax`` command line: ``rnnjax demo`` (the character LM job), ``rnnjax generate``, ``rnnjax adding``."""

import argparse
import dataclasses
import json
import math
import time

import jax
import jax.numpy as jnp
import optax

import rnnjax as rj


def _number(text: str, convert, ok, expected: str):
    """``convert(text)`` if ``ok`` of it, else the ``argparse`` error naming the flag (exit code 2)."""
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, lambda n: n > 0, "a positive integer")


def positive_float(text: str) -> float:
    return _number(text, float, lambda x: math.isfinite(x) and x > 0, "a positive finite number")


def probability(text: str) -> float:
    return _number(text, float, lambda p: 0 < p <= 1, "a number in (0, 1]")


def rate(text: str) -> float:
    return _number(text, float, lambda p: 0 <= p < 1, "a rate in [0, 1)")


def adding(args, parser) -> None:
    """Train an LSTM by BPTT on the adding problem; show unroll's features on the way."""
    print(f"rnnjax {rj.__version__} on {jax.default_backend()} ({len(jax.devices())} device(s))")
    cell = rj.LSTMCell(args.hidden)
    key_params, key_head = jax.random.split(jax.random.key(args.seed))
    params = {
        "lstm": cell.init(key_params, 2),
        "head": rj.DenseParams(jax.random.normal(key_head, (args.hidden, 1)) * 0.1, jnp.zeros(1)),
    }

    def predict(params, xs):
        carry, _ = rj.unroll(cell, params["lstm"], xs)  # many-to-one: the last carry
        return (carry.h @ params["head"].w + params["head"].b)[0]

    def loss(params, xs, targets):
        return jnp.mean((jax.vmap(predict, (None, 0))(params, xs) - targets) ** 2)

    optimizer = optax.adam(args.lr)
    opt_state = optimizer.init(params)

    def loss_fn(params, batch, key):
        return loss(params, *batch)

    train_step = rj.train.make_train_step(loss_fn, optimizer, clip_norm=1.0)
    print(
        f"adding problem, T={args.steps_per_seq}: LSTM({args.hidden}) trained by BPTT with "
        f"clip_norm=1 and adam({args.lr}); predicting the mean gives MSE 0.167"
    )
    start = time.perf_counter()
    for step in range(1, args.train_steps + 1):
        batch = rj.data.adding_problem((args.seed, step), args.batch, args.steps_per_seq)
        params, opt_state, metrics = train_step(params, opt_state, batch, None)
        if step % max(1, args.train_steps // 10) == 0 or step == 1:
            print(f"  step {step:5d}  mse {float(metrics['loss']):.4f}  ({time.perf_counter() - start:.1f} s)")

    xs, targets = rj.data.adding_problem((args.seed, 0), 512, args.steps_per_seq)
    test_mse = float(loss(params, xs, targets))
    print(f"test mse on 512 new sequences: {test_mse:.4f} (baseline 0.167)")

    # The same cell over padded sequences, both directions, and a linear-recurrence cell in parallel.
    lengths = jnp.array([args.steps_per_seq, args.steps_per_seq // 2])
    bi = rj.Bidirectional(cell, cell)
    bi_params = bi.init(jax.random.key(1), 2)
    ys = jax.vmap(lambda x, n: bi.apply(bi_params, x, length=n))(xs[:2], lengths)
    padding_is_zero = bool(jnp.all(ys[1, lengths[1] :] == 0))
    print(f"bidirectional over padded batch: ys {ys.shape}, zero past each length: {padding_is_zero}")
    min_cell = rj.MinGRUCell(args.hidden)
    min_params = min_cell.init(jax.random.key(2), 2)
    seq = rj.unroll(min_cell, min_params, xs[0])[1]
    par = rj.unroll(min_cell, min_params, xs[0], parallel=True)[1]
    print(f"minGRU sequential vs associative scan: max |diff| = {float(jnp.max(jnp.abs(seq - par))):.1e}")


def demo(args, parser) -> None:
    """The main job: a character LM on the embedded corpus against Kneser-Ney, then samples.

    Every check that can run before training does (the flags, the corpus against --window, the
    devices, --run-dir against the run it holds); a failed one exits with code 2 having written nothing.
    """
    from rnnjax.apps import lm

    if args.resume and args.run_dir is None:
        parser.error("--resume needs --run-dir")
    fields = {f.name for f in dataclasses.fields(lm.LMConfig)}
    try:
        config = lm.LMConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None})
    except ValueError as error:
        parser.error(str(error))
    print(f"rnnjax {rj.__version__} on {jax.default_backend()} ({len(jax.devices())} device(s))")
    try:
        result = lm.train_char_lm(config, args.run_dir, resume=args.resume, devices=args.devices)
    except lm.SetupError as error:  # raised before anything was written
        parser.error(str(error))
    lm_bpc, kn_bpc = result["lm_valid_bpc"], result["kn_valid_bpc"]
    print(f"\nvalidation bits per character ({config.cell.upper()} {lm_bpc:.3f}):")
    for order, bpc in kn_bpc.items():
        print(f"  Kneser-Ney order {order}: {bpc:.3f}  {'RNN better' if lm_bpc < bpc else 'n-gram better'}")
    for name, text in result["samples"].items():
        print(f"\n--- {name} ---\n{text}")
    if args.run_dir:
        summary = {k: v for k, v in result.items() if k != "history"}
        (args.run_dir / "results.json").write_text(json.dumps(summary, indent=2))
        print(f"\nrun saved in {args.run_dir} (generate with: rnnjax generate --checkpoint {args.run_dir})")


def generate(args, parser) -> None:
    from rnnjax.apps import lm

    try:
        config, vocab, model, params = lm.load_run(args.checkpoint)
    except (OSError, ValueError) as error:  # missing, truncated or foreign files, a damaged checkpoint
        parser.error(f"--checkpoint: {error}")
    try:
        samples = lm.generate(
            model,
            params,
            vocab,
            prompt=args.prompt,
            length=args.length,
            seed=args.seed,
            beam_size=args.beam,
            temperature=args.temperature,
            top_p=args.top_p,
        )
    except ValueError as error:  # e.g. an empty --prompt
        parser.error(str(error))
    for name, text in samples.items():
        print(f"--- {name} ---\n{text}\n")


def main(argv=None) -> None:
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="rnnjax", description="rnnjax command line")
    commands = parser.add_subparsers(dest="command", required=True)

    demo_parser = commands.add_parser("demo", help="train a character LM and compare it with Kneser-Ney")
    demo_parser.add_argument("--corpus", help="a text file or directory (default: the Python standard library)")
    demo_parser.add_argument("--max-chars", type=positive_int)
    demo_parser.add_argument("--cell", choices=["lstm", "gru", "elman"])
    demo_parser.add_argument("--hidden", type=positive_int)
    demo_parser.add_argument("--layers", type=positive_int)
    demo_parser.add_argument("--embed", type=positive_int)
    demo_parser.add_argument("--steps", type=positive_int)
    demo_parser.add_argument("--batch", type=positive_int)
    demo_parser.add_argument("--window", type=positive_int, help="characters per training window")
    demo_parser.add_argument("--lr", type=positive_float)
    demo_parser.add_argument("--dropout", type=rate, help="input dropout inside the cells (one mask per sequence)")
    demo_parser.add_argument("--recurrent-dropout", type=rate, help="recurrent dropout inside the cells")
    demo_parser.add_argument("--kn-order", type=positive_int)
    demo_parser.add_argument("--seed", type=int)
    demo_parser.add_argument(
        "--run-dir",
        type=Path,
        help="keep config, vocabulary and checkpoints here (one that holds a run needs --resume)",
    )
    demo_parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir from its latest checkpoint (the same model and vocabulary)",
    )
    demo_parser.add_argument(
        "--devices", type=positive_int, help="train data-parallel on this many devices (default: all of jax.devices())"
    )

    gen_parser = commands.add_parser("generate", help="generate text from a run directory")
    gen_parser.add_argument("--checkpoint", type=Path, required=True, help="a --run-dir of rnnjax demo")
    gen_parser.add_argument("--prompt", default="def ")
    gen_parser.add_argument("--length", type=positive_int, default=200)
    gen_parser.add_argument("--beam", type=positive_int, default=4)
    gen_parser.add_argument("--temperature", type=positive_float, default=0.8)
    gen_parser.add_argument("--top-p", type=probability, default=0.95)
    gen_parser.add_argument("--seed", type=int, default=0)

    adding_parser = commands.add_parser("adding", help="train an LSTM on the adding problem (a minute on a CPU)")
    adding_parser.add_argument("--hidden", type=positive_int, default=64)
    adding_parser.add_argument("--steps-per-seq", type=positive_int, default=50, help="sequence length T")
    adding_parser.add_argument("--batch", type=positive_int, default=64)
    adding_parser.add_argument("--train-steps", type=positive_int, default=1500)
    adding_parser.add_argument("--lr", type=positive_float, default=3e-3)
    adding_parser.add_argument("--seed", type=int, default=0)

    args = parser.parse_args(argv)
    commands = {"demo": (demo, demo_parser), "generate": (generate, gen_parser), "adding": (adding, adding_parser)}
    command, command_parser = commands[args.command]
    command(args, command_parser)


if __name__ == "__main__":
    main()
