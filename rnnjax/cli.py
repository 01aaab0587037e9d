"""The ``rnnjax`` command line: ``rnnjax demo``."""

import argparse
import time

import jax
import jax.numpy as jnp
import optax

import rnnjax as rj


def _adding_problem(key, batch: int, num_steps: int):
    """Hochreiter & Schmidhuber's adding problem: sum the two marked numbers of a sequence."""
    k_values, k_marks = jax.random.split(key)
    values = jax.random.uniform(k_values, (batch, num_steps))
    first = jax.random.randint(k_marks, (batch,), 0, num_steps // 2)
    second = first + num_steps // 2
    marks = jax.nn.one_hot(first, num_steps) + jax.nn.one_hot(second, num_steps)
    xs = jnp.stack([values, marks], axis=-1)  # [b, t, 2]
    return xs, jnp.sum(values * marks, axis=-1)  # targets [b]


def demo(args) -> None:
    """Train an LSTM by BPTT on the adding problem; show unroll's features on the way."""
    print(f"rnnjax {rj.__version__} on {jax.default_backend()} ({len(jax.devices())} device(s))")
    cell = rj.LSTMCell(args.hidden)
    key_params, key_head, key_data = jax.random.split(jax.random.key(args.seed), 3)
    params = {
        "lstm": cell.init(key_params, 2),
        "head": rj.DenseParams(jax.random.normal(key_head, (args.hidden, 1)) * 0.1, jnp.zeros(1)),
    }

    def predict(params, xs):
        carry, _ = rj.unroll(cell, params["lstm"], xs)  # many-to-one: the last carry
        return (carry.h @ params["head"].w + params["head"].b)[0]

    def loss_fn(params, xs, targets):
        return jnp.mean((jax.vmap(predict, (None, 0))(params, xs) - targets) ** 2)

    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(args.lr))
    opt_state = optimizer.init(params)

    @jax.jit
    def train_step(params, opt_state, key):
        xs, targets = _adding_problem(key, args.batch, args.steps_per_seq)
        loss, grads = jax.value_and_grad(loss_fn)(params, xs, targets)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    print(
        f"adding problem, T={args.steps_per_seq}: LSTM({args.hidden}) trained by BPTT with "
        f"clip_by_global_norm(1) + adam({args.lr}); predicting the mean gives MSE 0.167"
    )
    start = time.perf_counter()
    for step, key in enumerate(jax.random.split(key_data, args.train_steps), start=1):
        params, opt_state, loss = train_step(params, opt_state, key)
        if step % max(1, args.train_steps // 10) == 0 or step == 1:
            print(f"  step {step:5d}  mse {float(loss):.4f}  ({time.perf_counter() - start:.1f} s)")

    xs, targets = _adding_problem(jax.random.key(args.seed + 1), 512, args.steps_per_seq)
    test_mse = float(loss_fn(params, xs, targets))
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="rnnjax", description="rnnjax command line")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="train an LSTM on the adding problem (a minute on a CPU)")
    demo_parser.add_argument("--hidden", type=int, default=64)
    demo_parser.add_argument("--steps-per-seq", type=int, default=50, help="sequence length T")
    demo_parser.add_argument("--batch", type=int, default=64)
    demo_parser.add_argument("--train-steps", type=int, default=1500)
    demo_parser.add_argument("--lr", type=float, default=3e-3)
    demo_parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(args)


if __name__ == "__main__":
    main()
