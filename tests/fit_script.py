"""A small training run for the kill-and-resume test: python fit_script.py DIR OUT [--die-at STEP]."""

import argparse
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax as rj


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint_dir")
    parser.add_argument("out")
    parser.add_argument("--die-at", type=int, default=-1)
    args = parser.parse_args()

    cell = rj.GRUCell(6)
    optimizer = optax.adam(1e-2)

    def loss_fn(params, batch, key):
        noise = 0.01 * jax.random.normal(key, batch["xs"].shape)  # uses the step key: resumption must replay it
        ys = jax.vmap(lambda x: rj.unroll(cell, params, x)[1])(batch["xs"] + noise)
        return jnp.mean((ys[:, -1, 0] - batch["y"]) ** 2)

    def data(step):
        if step == args.die_at:
            os.kill(os.getpid(), signal.SIGKILL)  # killed mid-run, without any clean-up
        xs = jax.random.normal(jax.random.fold_in(jax.random.key(42), step), (8, 5, 2))
        return {"xs": xs, "y": jnp.sum(xs[:, :, 0], axis=1)}

    params = cell.init(jax.random.key(0), 2)
    result = rj.train.fit(
        rj.train.make_train_step(loss_fn, optimizer),
        params,
        optimizer.init(params),
        data,
        num_steps=30,
        key=jax.random.key(7),
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=5,
        metrics_path=os.path.join(args.checkpoint_dir, "metrics.jsonl"),
        resume=True,
        progress=False,
    )
    np.savez(args.out, *jax.tree_util.tree_leaves(result.params))


if __name__ == "__main__":
    main()
