"""The many-device checks of tests/test_parallel.py, run in a subprocess with fake CPU devices.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python parallel_script.py steps OUT.json CHECKPOINT_DIR
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python parallel_script.py restore OUT.json CHECKPOINT_DIR
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python parallel_script.py host OUT.json PORT PROCESS_ID

Each mode writes its measurements (largest differences, shardings, error messages) to OUT.json;
the test asserts on them.
"""

import json
import sys

import jax

if __name__ == "__main__" and sys.argv[1] == "host":  # must come before any computation
    jax.distributed.initialize(f"localhost:{sys.argv[3]}", num_processes=2, process_id=int(sys.argv[4]))

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import rnnjax as rj  # noqa: E402
from rnnjax import parallel  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")  # as in the test suite

BATCH, STEPS, CHECKPOINT_AT = 16, 6, 4
MESHES = ((8, 1), (4, 2))  # (data, model) axis sizes on 8 devices
CELL = rj.LSTMCell(16)  # gate dimension 64: splits over a model axis of 2, 4 or 8
OPTIMIZER = optax.adam(1e-2)


def loss_fn(params, batch, key):
    noise = 0.01 * jax.random.normal(key, batch["xs"].shape)  # random numbers must not depend on the devices
    ys = jax.vmap(lambda x: rj.unroll(CELL, params, x)[1])(batch["xs"] + noise)
    return jnp.mean((ys[:, -1, 0] - batch["y"]) ** 2)


def load(step, rows=slice(None)):
    """Rows ``rows`` of the global batch of ``step`` (host NumPy, a pure function of the step)."""
    xs = np.random.default_rng([1, step]).normal(size=(BATCH, 7, 3)).astype(np.float32)
    return {"xs": xs[rows], "y": xs[rows, :, 0].sum(axis=1)}


def init():
    params = CELL.init(jax.random.key(0), 3)
    return params, OPTIMIZER.init(params)


def max_diff(a, b) -> float:
    pairs = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in pairs)


def run_steps(step, num_steps):
    params, opt_state = init()
    for i in range(num_steps):
        params, opt_state, metrics = step(params, opt_state, load(i), jax.random.key(i))
    return params, float(metrics["loss"])


SINGLE_DEVICE_STEP = rj.train.make_train_step(loss_fn, OPTIMIZER, clip_norm=1.0)

# the stateful step: BATCH streams cut into WINDOWS consecutive windows, the carry passed between them
WINDOWS, WINDOW = 4, 5
STATEFUL_CELL = rj.LSTMCell(16, precision="highest")


def stateful_loss_fn(params, carry, batch, key):
    noise = 0.01 * jax.random.normal(key, batch["xs"].shape)
    carry, ys = jax.vmap(lambda c, xs: rj.unroll(STATEFUL_CELL, params, xs, c))(carry, batch["xs"] + noise)
    return jnp.mean((ys[:, :, 0] - batch["y"]) ** 2), carry


def load_window(i):
    """Window ``i`` of every stream: ``xs [b, WINDOW, 3]``, ``y [b, WINDOW]`` (the running sum of the first input)."""
    xs = np.random.default_rng(3).normal(size=(BATCH, WINDOWS * WINDOW, 3)).astype(np.float32)
    window = slice(i * WINDOW, (i + 1) * WINDOW)
    return {"xs": xs[:, window], "y": np.cumsum(xs[:, :, 0], axis=1)[:, window]}


def run_stateful(step):
    """The params, the carry and the loss after every window: three lists."""
    params, opt_state = init()
    carry = STATEFUL_CELL.initial_carry(params, (BATCH,))
    history = {"params": [], "carry": [], "loss": []}
    for i in range(WINDOWS):
        params, opt_state, carry, metrics = step(params, opt_state, carry, load_window(i), jax.random.key(i))
        for name, value in (("params", params), ("carry", carry), ("loss", metrics["loss"])):
            history[name].append(value)
    return history


def single_device_fit(num_steps):
    params, opt_state = init()
    return rj.train.fit(
        SINGLE_DEVICE_STEP, params, opt_state, load, num_steps=num_steps, key=jax.random.key(7), progress=False
    )


def steps_mode(out, checkpoint_dir):
    """On 8 devices: sharded steps (plain and stateful) == single-device steps; errors; fit with checkpoints."""
    result = {"devices": len(jax.devices())}
    reference = {n: run_steps(SINGLE_DEVICE_STEP, n) for n in (1, 3)}
    steps = {}
    for data, model in MESHES:
        mesh = parallel.make_mesh(data * model, model=model)
        step = steps[data, model] = parallel.make_data_parallel_train_step(loss_fn, OPTIMIZER, mesh, clip_norm=1.0)
        for n in (1, 3):
            params, loss = run_steps(step, n)
            result[f"diff_{data}x{model}_{n}"] = max_diff(params, reference[n][0])
            result[f"loss_diff_{data}x{model}_{n}"] = abs(loss - reference[n][1])
        result[f"spec_{data}x{model}"] = [str(params.w_h.sharding.spec), str(params.w_h.sharding.mesh.shape)]
        result[f"shards_{data}x{model}"] = sorted({s.data.shape[1] for s in params.w_h.addressable_shards})

    # the stateful step: params, carry and loss after every window equal the single-device step's
    reference = run_stateful(rj.train.make_stateful_train_step(stateful_loss_fn, OPTIMIZER, clip_norm=1.0))
    stateful_steps = {}
    for data, model in MESHES:
        mesh = parallel.make_mesh(data * model, model=model)
        stateful_steps[data, model] = parallel.make_data_parallel_stateful_train_step(
            stateful_loss_fn, OPTIMIZER, mesh, clip_norm=1.0
        )
        history = run_stateful(stateful_steps[data, model])
        for what in ("params", "carry", "loss"):
            result[f"stateful_{what}_diff_{data}x{model}"] = max_diff(history[what], reference[what])
        carry = history["carry"][-1]
        name = f"{data}x{model}"
        result[f"stateful_carry_spec_{name}"] = str(carry.h.sharding.spec)
        result[f"stateful_carry_shards_{name}"] = sorted({s.data.shape[0] for s in carry.h.addressable_shards})
    params, opt_state = init()
    try:
        carry = STATEFUL_CELL.initial_carry(params, (8,))  # 8 carries for 16 streams
        stateful_steps[8, 1](params, opt_state, carry, load_window(0), jax.random.key(0))
    except ValueError as error:
        result["carry_size_error"] = str(error)

    gru = rj.GRUCell(5).init(jax.random.key(0), 3)  # gate dimension 15: does not split over model = 2
    result["gru_spec_4x2"] = str(parallel.param_shardings(gru, parallel.make_mesh(8, model=2)).w_h.spec)

    step = steps[8, 1]
    params, opt_state = init()
    try:
        step(params, opt_state, {"xs": np.zeros((12, 7, 3), np.float32), "y": np.zeros(12, np.float32)}, None)
    except ValueError as error:
        result["indivisible_error"] = str(error)
    try:
        parallel.make_mesh(16)
    except ValueError as error:
        result["too_many_error"] = str(error)

    # fit drives the sharded step and saves sharded arrays; the uninterrupted single-device run is the reference
    params, opt_state = init()
    fitted = rj.train.fit(
        step, params, opt_state, load, num_steps=CHECKPOINT_AT, key=jax.random.key(7),
        checkpoint_dir=checkpoint_dir, progress=False,
    )  # fmt: skip
    result["fit_sharding_devices"] = len(fitted.params.w_h.sharding.device_set)
    result["fit_diff"] = max_diff(fitted.params, single_device_fit(CHECKPOINT_AT).params)
    np.savez(f"{checkpoint_dir}/saved.npz", *parallel.unreplicate(jax.tree_util.tree_leaves(fitted.params)))
    reference = jax.tree_util.tree_leaves(single_device_fit(STEPS).params)  # for the resumed runs
    np.savez(f"{checkpoint_dir}/reference.npz", *parallel.unreplicate(reference))
    return result


def restore_mode(out, checkpoint_dir):
    """On 2 or 1 devices: restore the 8-device checkpoint (onto one device, and onto all), then resume fit."""
    result = {"devices": len(jax.devices())}
    saved = list(np.load(f"{checkpoint_dir}/saved.npz").values())
    mesh = parallel.make_mesh()
    params, opt_state = init()
    for placed in (False, True):  # templates on the default device, or on this run's mesh
        if placed:
            params, opt_state = parallel.replicate(params, mesh), parallel.replicate(opt_state, mesh)
        restored, _, at = rj.train.restore_checkpoint(checkpoint_dir, params, opt_state, jax.random.key(7))
        result[f"restored_step_{placed}"] = at
        result[f"restored_diff_{placed}"] = max_diff(jax.tree_util.tree_leaves(restored), saved)
        result[f"restored_devices_{placed}"] = len(restored.w_h.sharding.device_set)

    step = parallel.make_data_parallel_train_step(loss_fn, OPTIMIZER, mesh, clip_norm=1.0)
    resumed = rj.train.fit(
        step, params, opt_state, load, num_steps=STEPS, key=jax.random.key(7),
        checkpoint_dir=checkpoint_dir, resume=True, progress=False,
    )  # fmt: skip
    result["resumed_devices"] = len(resumed.params.w_h.sharding.device_set)
    reference = list(np.load(f"{checkpoint_dir}/reference.npz").values())
    result["resumed_diff"] = max_diff(jax.tree_util.tree_leaves(resumed.params), reference)
    return result


def host_mode(out):
    """One of 2 processes of 4 devices each: per-host loading, 8-device steps == single-device steps."""
    mesh = parallel.make_mesh()
    rows = parallel.host_batch_slice(BATCH, mesh)
    data = parallel.host_data(load, mesh, global_batch_size=BATCH)
    step = parallel.make_data_parallel_train_step(loss_fn, OPTIMIZER, mesh, clip_norm=1.0)
    params, opt_state = init()
    for i in range(3):
        params, opt_state, metrics = step(params, opt_state, data(i), jax.random.key(i))
    reference, _ = run_steps(SINGLE_DEVICE_STEP, 3)
    result = {
        "process": jax.process_index(),
        "processes": jax.process_count(),
        "devices": len(jax.devices()),
        "local_devices": len(jax.local_devices()),
        "rows": [rows.start, rows.stop],
        "diff": max_diff(params, reference),
    }
    jax.distributed.shutdown()
    return result


if __name__ == "__main__":
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "steps":
        result = steps_mode(out, sys.argv[3])
    elif mode == "restore":
        result = restore_mode(out, sys.argv[3])
    else:
        result = host_mode(out)
    with open(out, "w") as file:
        json.dump(result, file)
