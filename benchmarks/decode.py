"""Decoding speed and the beam-width trade-off.

A character-sized LSTM language model (vocab 96, embedding 64, hidden 512 by default, random
weights with a sharpened output layer) decodes a batch of 32 prompts
(vmapped) for --max-len tokens with greedy decoding and beam search of sizes 1, 2, 4, 8, 16.
Reports generated tokens per second (batch x max_len / time), the mean log-likelihood of the
best hypothesis found (higher is a better search), compile time and XLA's temporary memory
of the compiled decoder. Median of --repeats runs after a warm-up.

    python benchmarks/decode.py
    python benchmarks/decode.py --hidden 32 --batch 2 --max-len 8 --beams 1 2 --repeats 1   # smoke test
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import rnnjax as rj


def make_model(vocab: int, embed: int, hidden: int, seed: int = 0):
    cell = rj.LSTMCell(hidden)
    keys = jax.random.split(jax.random.key(seed), 3)
    params = {
        "embed": jax.random.normal(keys[0], (vocab, embed)),
        "cell": cell.init(keys[1], embed),
        "out": rj.Dense(vocab).init(keys[2], hidden),
    }
    # sharpen the random output layer so that the distribution is not flat
    params["out"] = params["out"]._replace(w=3.0 * params["out"].w)

    def step_fn(params, carry, token):
        carry, h = cell.step(params["cell"], carry, params["embed"][token])
        return carry, h @ params["out"].w + params["out"].b

    return cell, params, step_fn


def timed(fn, *args, repeats: int):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    out = jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times), compile_s, compiled.memory_analysis().temp_size_in_bytes / 2**20


def setup(vocab: int, embed: int, hidden: int, batch: int):
    """The model, and a batch of initial carries and first tokens: ``(params, step_fn, carries, bos)``."""
    cell, params, step_fn = make_model(vocab, embed, hidden)
    carries = cell.initial_carry(params["cell"], (batch,))
    bos = jax.random.randint(jax.random.key(1), (batch,), 0, vocab)
    return params, step_fn, carries, bos


def measure(beam: int | None, model, *, max_len: int, alpha: float = 0.0, repeats: int = 5) -> dict:
    """One row: greedy decoding (``beam=None``) or beam search of width ``beam``, vmapped over the batch."""
    params, step_fn, carries, bos = model
    generated = bos.shape[0] * max_len
    if beam is None:

        def greedy(params, carries, bos):
            return jax.vmap(lambda c, b: rj.decode.greedy(step_fn, params, c, b, max_len=max_len))(carries, bos)

        (tokens, _), seconds, compile_s, memory = timed(greedy, params, carries, bos, repeats=repeats)

        # score the greedy sequences with the model for a like-for-like log-likelihood
        def loglik(params, carry, first, tokens):
            def body(state, token):
                carry, prev = state
                carry, logits = step_fn(params, carry, prev)
                return (carry, token), jax.nn.log_softmax(logits)[token]

            return jnp.sum(jax.lax.scan(body, (carry, first), tokens)[1])

        best = jnp.mean(jax.vmap(loglik, (None, 0, 0, 0))(params, carries, bos, tokens))
    else:

        def search(params, carries, bos):
            return jax.vmap(
                lambda c, b: rj.decode.beam_search(step_fn, params, c, b, beam_size=beam, max_len=max_len, alpha=alpha)
            )(carries, bos)

        out, seconds, compile_s, memory = timed(search, params, carries, bos, repeats=repeats)
        best = jnp.mean(out.scores[:, 0])
    return {
        "decoder": "greedy" if beam is None else f"beam {beam}",
        "beam": beam or 1,
        "tokens_per_s": generated / seconds,
        "mean_best_loglik": float(best),
        "seconds": seconds,
        "compile_s": compile_s,
        "temp_mib": memory,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=96)
    parser.add_argument("--embed", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--alpha", type=float, default=0.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "decode.json")
    args = parser.parse_args(argv)

    model = setup(args.vocab, args.embed, args.hidden, args.batch)
    print(
        f"LSTM LM vocab {args.vocab}, hidden {args.hidden}, batch {args.batch}, max_len {args.max_len}, "
        f"backend {jax.default_backend()}"
    )
    print(f"{'decoder':>10} {'tokens/s':>10} {'best loglik':>12} {'ms':>9} {'compile s':>10} {'temp MiB':>9}")
    rows = [
        measure(beam, model, max_len=args.max_len, alpha=args.alpha, repeats=args.repeats)
        for beam in [None, *args.beams]
    ]
    for r in rows:
        print(
            f"{r['decoder']:>10} {r['tokens_per_s']:>10.0f} {r['mean_best_loglik']:>12.2f} "
            f"{1e3 * r['seconds']:>9.1f} {r['compile_s']:>10.2f} {r['temp_mib']:>9.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"jax": jax.__version__, "backend": jax.default_backend(), "machine": platform.machine()}
    args.out.write_text(
        json.dumps({"config": {k: str(v) for k, v in vars(args).items()}, "meta": meta, "rows": rows}, indent=2)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
