"""Decoding speed and the beam-width trade-off.

A character-sized LSTM language model (vocab 96, embedding 64, hidden 512 by default, random
weights with a sharpened output layer) decodes a batch of 32 prompts
(vmapped) for --max-len tokens with greedy decoding and beam search of sizes 1, 2, 4, 8, 16.
Reports generated tokens per second (batch x max_len / time), the time per batch against
greedy's ("x greedy": the smallest of the repeats of each, the decoders timed in turn within
each repeat, so that the ratio holds on a busy machine), the mean log-likelihood of the best
hypothesis found (higher is a better search), compile time and XLA's temporary memory of the
compiled decoder. Median of --repeats runs after a warm-up. ``--eos`` makes one token end a
hypothesis (greedy stops there too); ``--ops`` also counts the operations in the decoding
loop's body (jaxpr equations, and kernels of the compiled loop body), which on an accelerator
is about what a step costs: a launch each.

    python benchmarks/decode.py
    python benchmarks/decode.py --hidden 32 --batch 2 --max-len 8 --beams 1 2 --repeats 1   # smoke test
    python benchmarks/decode.py --beams 1 2 --eos 3 --ops
"""

import argparse
import json
import platform
import re
import statistics
import time
from collections import Counter
from pathlib import Path

import jax
import jax.extend.core
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


def compiled_decoder(fn, *args):
    """``(compiled, compile seconds, temporary MiB)`` of ``jax.jit(fn)`` for ``args``."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0, compiled.memory_analysis().temp_size_in_bytes / 2**20


def timed(fn, *args, repeats: int):
    compiled, compile_s, memory = compiled_decoder(fn, *args)
    out = jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times), compile_s, memory


def setup(vocab: int, embed: int, hidden: int, batch: int):
    """The model, and a batch of initial carries and first tokens: ``(params, step_fn, carries, bos)``."""
    cell, params, step_fn = make_model(vocab, embed, hidden)
    carries = cell.initial_carry(params["cell"], (batch,))
    bos = jax.random.randint(jax.random.key(1), (batch,), 0, vocab)
    return params, step_fn, carries, bos


def decoder(beam: int | None, model, *, max_len: int, alpha: float = 0.0, eos: int | None = None):
    """Greedy decoding (``beam=None``) or beam search of width ``beam``, vmapped: ``fn(params, carries, bos)``."""
    step_fn = model[1]
    if beam is None:

        def greedy(params, carries, bos):
            return jax.vmap(lambda c, b: rj.decode.greedy(step_fn, params, c, b, max_len=max_len, eos=eos))(
                carries, bos
            )

        return greedy

    def search(params, carries, bos):
        return jax.vmap(
            lambda c, b: rj.decode.beam_search(
                step_fn, params, c, b, beam_size=beam, max_len=max_len, eos=eos, alpha=alpha
            )
        )(carries, bos)

    return search


def _row(beam, model, out, seconds, compile_s, memory, *, max_len: int) -> dict:
    params, step_fn, carries, bos = model
    if beam is None:
        tokens, lengths = out

        # score the greedy sequences with the model for a like-for-like log-likelihood
        def loglik(params, carry, first, tokens, length):
            def body(state, token):
                carry, prev = state
                carry, logits = step_fn(params, carry, prev)
                return (carry, token), jax.nn.log_softmax(logits)[token]

            per_token = jax.lax.scan(body, (carry, first), tokens)[1]
            return jnp.sum(jnp.where(jnp.arange(tokens.shape[0]) < length, per_token, 0.0))

        best = jnp.mean(jax.vmap(loglik, (None, 0, 0, 0, 0))(params, carries, bos, tokens, lengths))
    else:
        best = jnp.mean(out.scores[:, 0])
    return {
        "decoder": "greedy" if beam is None else f"beam {beam}",
        "beam": beam or 1,
        "tokens_per_s": bos.shape[0] * max_len / seconds,
        "mean_best_loglik": float(best),
        "seconds": seconds,
        "compile_s": compile_s,
        "temp_mib": memory,
    }


def measure(
    beam: int | None, model, *, max_len: int, alpha: float = 0.0, eos: int | None = None, repeats: int = 5
) -> dict:
    """One row: greedy decoding (``beam=None``) or beam search of width ``beam``, vmapped over the batch."""
    params, _, carries, bos = model
    fn = decoder(beam, model, max_len=max_len, alpha=alpha, eos=eos)
    out, seconds, compile_s, memory = timed(fn, params, carries, bos, repeats=repeats)
    return _row(beam, model, out, seconds, compile_s, memory, max_len=max_len)


def measure_interleaved(
    beams: list[int | None], model, *, max_len: int, alpha: float = 0.0, eos: int | None = None, repeats: int = 5
) -> list[dict]:
    """Rows for several decoders timed in turn within each repeat; each row also has ``min_seconds``."""
    params, _, carries, bos = model
    compiled = [
        compiled_decoder(decoder(beam, model, max_len=max_len, alpha=alpha, eos=eos), params, carries, bos)
        for beam in beams
    ]
    outs = [jax.block_until_ready(c(params, carries, bos)) for c, _, _ in compiled]  # warm-up
    times = [[] for _ in beams]
    for _ in range(repeats):
        for (c, _, _), ts in zip(compiled, times, strict=True):
            t0 = time.perf_counter()
            jax.block_until_ready(c(params, carries, bos))
            ts.append(time.perf_counter() - t0)
    rows = []
    for beam, out, (_, compile_s, memory), ts in zip(beams, outs, compiled, times, strict=True):
        row = _row(beam, model, out, statistics.median(ts), compile_s, memory, max_len=max_len)
        rows.append({**row, "min_seconds": min(ts)})
    return rows


_TRIVIAL_HLO = {"parameter", "get-tuple-element", "tuple", "constant", "bitcast"}


def loop_ops(beam: int | None, model, *, max_len: int, alpha: float = 0.0, eos: int | None = None) -> dict:
    """What one decoding step costs in operations: the decoder's loop body, vmapped over the batch.

    ``body_eqns``: equations in the jaxpr of the while loop's body (nested ones counted);
    ``body_kernels``: instructions of the compiled loop body other than parameters, tuples and
    bitcasts (fusions, copies, custom calls such as top-k): on an accelerator, about one kernel
    launch each; ``fixed_trip_count``: XLA knows the number of steps (no per-step stopping test,
    which an accelerator reads back on the host).
    """
    params, _, carries, bos = model
    fn = decoder(beam, model, max_len=max_len, alpha=alpha, eos=eos)

    def count(jaxpr):
        return sum(1 + sum(count(sub) for sub in jax.extend.core.jaxprs_in_params(e.params)) for e in jaxpr.eqns)

    def find_while(jaxpr):
        for e in jaxpr.eqns:
            if e.primitive.name == "while":
                return e
            for sub in jax.extend.core.jaxprs_in_params(e.params):
                if (found := find_while(sub)) is not None:
                    return found
        return None

    loop = find_while(jax.make_jaxpr(fn)(params, carries, bos).jaxpr)
    text = jax.jit(fn).lower(params, carries, bos).compile().as_text()
    computations, current = {}, None
    for line in text.splitlines():
        if header := re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line):
            current = computations.setdefault(header.group(1), [])
        elif line.startswith("}"):
            current = None
        elif current is not None:
            current.append(line)
    while_line = next(line for lines in computations.values() for line in lines if re.search(r" while\(", line))
    body = computations[re.search(r"body=%?([\w.\-]+)", while_line).group(1)]
    ops = Counter(
        m.group(1) for line in body if (m := re.match(r"\s*(?:ROOT )?%?[\w.\-]+ = .*? ([a-z][\w\-]*)\(", line))
    )
    return {
        "body_eqns": count(loop.params["body_jaxpr"].jaxpr),
        "body_kernels": sum(n for op, n in ops.items() if op not in _TRIVIAL_HLO),
        "fixed_trip_count": "known_trip_count" in while_line,
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
    parser.add_argument("--eos", type=int, default=None, help="the token that ends a hypothesis (default: none)")
    parser.add_argument("--ops", action="store_true", help="also count the operations of the decoding loop's body")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "decode.json")
    args = parser.parse_args(argv)

    model = setup(args.vocab, args.embed, args.hidden, args.batch)
    print(
        f"LSTM LM vocab {args.vocab}, hidden {args.hidden}, batch {args.batch}, max_len {args.max_len}, "
        f"eos {args.eos}, backend {jax.default_backend()}"
    )
    kwargs = dict(max_len=args.max_len, alpha=args.alpha, eos=args.eos)
    beams = [None, *args.beams]
    rows = measure_interleaved(beams, model, repeats=args.repeats, **kwargs)
    for beam, row in zip(beams, rows, strict=True):
        row["time_vs_greedy"] = row["min_seconds"] / rows[0]["min_seconds"]
        if args.ops:
            row.update(loop_ops(beam, model, **kwargs))
    ops_header = f" {'body eqns':>9} {'kernels':>7} {'fixed trips':>11}" if args.ops else ""
    print(
        f"{'decoder':>10} {'tokens/s':>10} {'x greedy':>8} {'best loglik':>12} {'ms':>9} {'compile s':>10} "
        f"{'temp MiB':>9}{ops_header}"
    )
    for r in rows:
        ops = f" {r['body_eqns']:>9} {r['body_kernels']:>7} {r['fixed_trip_count']!s:>11}" if args.ops else ""
        print(
            f"{r['decoder']:>10} {r['tokens_per_s']:>10.0f} {r['time_vs_greedy']:>8.2f} {r['mean_best_loglik']:>12.2f} "
            f"{1e3 * r['seconds']:>9.1f} {r['compile_s']:>10.2f} {r['temp_mib']:>9.2f}{ops}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"jax": jax.__version__, "backend": jax.default_backend(), "machine": platform.machine()}
    args.out.write_text(
        json.dumps({"config": {k: str(v) for k, v in vars(args).items()}, "meta": meta, "rows": rows}, indent=2)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
