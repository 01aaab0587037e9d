"""rnnjax.parallel: the sharded step equals the single-device step; checkpoints move between device counts.

The many-device checks run tests/parallel_script.py in subprocesses with fake CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=N`` must be set before jax is imported);
the checks of this process run on its one device.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnjax as rj
import rnnjax.apps.cli
from rnnjax import parallel

SCRIPT = Path(__file__).parent / "parallel_script.py"


def run_script(devices: int, *args, timeout=300):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *map(str, args)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def result_of(process, out: Path, timeout=300) -> dict:
    _, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr.decode()[-3000:]
    return json.loads(out.read_text())


# --- on 8 fake devices ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory):
    """The 8-device run: sharded steps, errors, and fit writing a checkpoint of sharded arrays."""
    directory = tmp_path_factory.mktemp("parallel")
    checkpoints = directory / "checkpoints"
    checkpoints.mkdir()
    out = directory / "steps.json"
    return result_of(run_script(8, "steps", out, checkpoints), out), checkpoints


def test_sharded_step_on_8_devices_equals_the_single_device_step(eight_devices):
    result, _ = eight_devices
    assert result["devices"] == 8
    for mesh in ("8x1", "4x2"):  # (data, model): pure data parallelism, and gates split over 2 devices
        for num_steps in (1, 3):
            assert result[f"diff_{mesh}_{num_steps}"] < 1e-6, (mesh, num_steps)
            assert result[f"loss_diff_{mesh}_{num_steps}"] < 1e-5
    assert result["shards_8x1"] == [64]  # LSTM(16): w_h [16, 64] whole on every device
    assert result["shards_4x2"] == [32]  # split in two along the gate dimension
    assert result["gru_spec_4x2"] == "P()"  # GRU(5): 15 gates x hidden do not split in two
    assert result["fit_sharding_devices"] == 8 and result["fit_diff"] < 1e-6


def test_sharded_stateful_step_on_8_devices_equals_the_single_device_step(eight_devices):
    """4 windows of 16 streams, the carry passed between them, float32 at precision "highest"."""
    result, _ = eight_devices
    for mesh in ("8x1", "4x2"):
        assert result[f"stateful_params_diff_{mesh}"] < 1e-6, mesh
        assert result[f"stateful_carry_diff_{mesh}"] < 1e-6, mesh
        assert result[f"stateful_loss_diff_{mesh}"] < 1e-5, mesh
    assert result["stateful_carry_spec_8x1"] == "P('data',)"  # the carry is split like the batch
    assert result["stateful_carry_shards_8x1"] == [2]  # 16 streams over 8 devices
    assert result["stateful_carry_shards_4x2"] == [4]
    assert result["carry_size_error"].startswith("carry: expected the leading batch axis b = 16 of the batch")


def test_indivisible_batch_is_a_clear_error(eight_devices):
    result, _ = eight_devices
    assert result["indivisible_error"].startswith("batch: the batch size 12 is not divisible by")
    assert "= 8" in result["indivisible_error"]
    assert (
        "num_devices" in result["too_many_error"] and "xla_force_host_platform_device_count" in result["too_many_error"]
    )


@pytest.mark.parametrize("devices", [2, pytest.param(1, marks=pytest.mark.slow)])
def test_checkpoint_of_8_devices_restores_onto_fewer(eight_devices, devices, tmp_path):
    """Restored onto one device (a template on the default device) and onto all of this run's ``devices``."""
    _, checkpoints = eight_devices
    copy = tmp_path / "checkpoints"
    shutil.copytree(checkpoints, copy)  # the run resumes and writes its own checkpoints there
    out = tmp_path / "restore.json"
    result = result_of(run_script(devices, "restore", out, copy), out)
    assert result["devices"] == devices
    for placed in ("False", "True"):  # templates on one device, or replicated on this run's mesh
        assert result[f"restored_step_{placed}"] == 4
        assert result[f"restored_diff_{placed}"] == 0.0  # bit-identical
    assert result["restored_devices_False"] == 1 and result["restored_devices_True"] == devices
    assert result["resumed_devices"] == devices
    assert result["resumed_diff"] < 1e-6  # 4 steps on 8 devices + 2 on `devices` == 6 steps on one


@pytest.mark.slow
def test_two_hosts_with_per_host_loading_equal_one_device(tmp_path):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    outs = [tmp_path / f"host{i}.json" for i in range(2)]
    processes = [run_script(4, "host", outs[i], port, i) for i in range(2)]
    results = [result_of(process, out) for process, out in zip(processes, outs, strict=True)]
    for i, result in enumerate(results):
        assert (result["process"], result["processes"], result["devices"], result["local_devices"]) == (i, 2, 8, 4)
        assert result["rows"] == [8 * i, 8 * i + 8]  # each host loads its half of every batch of 16
        assert result["diff"] < 1e-6


# --- on this process's device ------------------------------------------------------------------


def regression_problem(batch_size=8):
    cell = rj.GRUCell(6)
    params = {"gru": cell.init(jax.random.key(0), 2), "head": rj.Dense(1).init(jax.random.key(1), 6)}
    xs = jax.random.normal(jax.random.key(2), (batch_size, 5, 2))
    batch = {"xs": np.asarray(xs), "y": np.asarray(jnp.sum(xs[:, :, 0], axis=1))}

    def loss_fn(params, batch, key):
        ys = jax.vmap(lambda x: rj.unroll(cell, params["gru"], x)[1][-1])(batch["xs"])
        preds = rj.Dense(1).apply(params["head"], ys)[:, 0]
        return jnp.mean((preds - batch["y"]) ** 2), {"mean_pred": jnp.mean(preds)}

    return params, batch, loss_fn


def test_one_device_step_equals_train_step_and_does_not_retrace():
    params, batch, loss_fn = regression_problem()
    optimizer = optax.adam(1e-2)
    counted = chex.assert_max_traces(loss_fn, n=1)  # the sharded step does not retrace

    reference = rj.train.make_train_step(loss_fn, optimizer, clip_norm=0.5, has_aux=True)
    step = parallel.make_data_parallel_train_step(counted, optimizer, parallel.make_mesh(), clip_norm=0.5, has_aux=True)
    p1, o1, p2, o2 = params, optimizer.init(params), params, optimizer.init(params)
    for i in range(3):
        p1, o1, m1 = reference(p1, o1, batch, jax.random.key(i))
        p2, o2, m2 = step(p2, o2, batch, jax.random.key(i))
    assert set(m2) == {"loss", "grad_norm", "clipped", "mean_pred"}
    for a, b in zip(jax.tree_util.tree_leaves((p1, o1, m1)), jax.tree_util.tree_leaves((p2, o2, m2)), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_one_device_stateful_step_equals_the_stateful_train_step_and_does_not_retrace():
    cell = rj.GRUCell(6)
    params = cell.init(jax.random.key(0), 2)
    streams = jax.random.normal(jax.random.key(1), (4, 15, 2))

    def loss_fn(params, carry, windows, key):
        carry, ys = jax.vmap(lambda c, xs: rj.unroll(cell, params, xs, c))(carry, windows)
        return jnp.mean((ys[:, :, 0] - windows[:, :, 1]) ** 2), carry

    optimizer = optax.adam(1e-2)
    counted = chex.assert_max_traces(loss_fn, n=1)
    reference = rj.train.make_stateful_train_step(loss_fn, optimizer, clip_norm=0.5)
    step = parallel.make_data_parallel_stateful_train_step(counted, optimizer, parallel.make_mesh(), clip_norm=0.5)
    states = [(params, optimizer.init(params), cell.initial_carry(params, (4,))) for _ in range(2)]
    for i in range(3):  # three consecutive windows of 5 steps
        window = streams[:, 5 * i : 5 * (i + 1)]
        *states[0], m1 = reference(*states[0], window, jax.random.key(i))
        *states[1], m2 = step(*states[1], window, jax.random.key(i))
        for a, b in zip(jax.tree.leaves((states[0], m1)), jax.tree.leaves((states[1], m2)), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    assert isinstance(states[1][2].h.sharding, jax.sharding.NamedSharding)
    for carry, shapes in ((cell.initial_carry(params, (3,)), r"\(3, 6\)"), (cell.initial_carry(params), r"\(6,\)")):
        with pytest.raises(ValueError, match=r"carry: expected the leading batch axis b = 4 of the batch .*" + shapes):
            step(*states[1][:2], carry, streams[:, :5], None)


def test_the_guide_section_on_stateful_training_runs():
    """The code of docs/guide/parallel.md's stateful-training section runs as written (on this process's devices)."""
    page = (Path(__file__).parents[1] / "docs/guide/parallel.md").read_text()
    section = page.split("## Stateful training: the carry sharded with the batch\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    assert blocks
    with jax.numpy_dtype_promotion("standard"):  # as a user has it
        for block in blocks:
            exec(compile(block, "docs/guide/parallel.md", "exec"), {})


def test_fit_drives_the_sharded_step():
    params, batch, loss_fn = regression_problem()
    optimizer = optax.sgd(0.05)
    results = [
        rj.train.fit(
            make(loss_fn, optimizer, *mesh, has_aux=True),
            params,
            optimizer.init(params),
            lambda i: batch,
            num_steps=10,
            key=jax.random.key(0),
            log_every=1,
            progress=False,
        )  # fmt: skip
        for make, mesh in (
            (rj.train.make_train_step, ()),
            (parallel.make_data_parallel_train_step, (parallel.make_mesh(),)),
        )
    ]
    assert results[1].history[-1]["loss"] < results[1].history[0]["loss"]
    for a, b in zip(
        jax.tree_util.tree_leaves(results[0].params), jax.tree_util.tree_leaves(results[1].params), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    assert isinstance(results[1].params["gru"].w_h.sharding, jax.sharding.NamedSharding)


def test_param_shardings_split_gates_only():
    params, _, _ = regression_problem()
    state = optax.adam(1e-3).init(params)
    mesh = parallel.make_mesh()
    shardings = parallel.param_shardings(state, mesh)
    gates = jax.sharding.PartitionSpec(None, "model")
    assert shardings[0].mu["gru"].w_h.spec == gates and shardings[0].nu["gru"].b.spec == jax.sharding.PartitionSpec(
        "model"
    )
    assert shardings[0].mu["head"].w.spec == jax.sharding.PartitionSpec()  # a head's weights stay whole
    assert shardings[0].count.spec == jax.sharding.PartitionSpec()


def test_host_loading_on_one_host_is_the_whole_batch():
    mesh = parallel.make_mesh()
    assert parallel.host_batch_slice(6, mesh) == slice(0, 6)
    batch = parallel.process_local_batch({"xs": np.arange(12.0).reshape(6, 2)}, mesh)
    np.testing.assert_array_equal(np.asarray(batch["xs"]), np.arange(12.0).reshape(6, 2))
    with pytest.raises(ValueError, match=r"local_batch: expected the 6 rows"):
        parallel.process_local_batch({"xs": np.zeros((4, 2))}, mesh, global_batch_size=6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_devices": 2**10}, r"num_devices: expected at most the 1 available"),
        ({"num_devices": 0}, r"num_devices"),
        ({"num_devices": 1, "model": 2}, r"model: expected a divisor of num_devices = 1, got 2"),
    ],
)
def test_mesh_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        parallel.make_mesh(**kwargs)


@pytest.mark.parametrize(
    "batch, message",
    [
        ({"xs": np.zeros((4, 2)), "y": np.zeros(3)}, r"batch: expected every leaf to have the same leading"),
        ({"xs": np.zeros((4, 2)), "scale": np.float32(1.0)}, r"batch: expected every leaf"),
        ({}, r"batch: expected a pytree with at least one array"),
    ],
)
def test_batch_errors(batch, message):
    with pytest.raises(ValueError, match=message):
        parallel.shard_batch(batch, parallel.make_mesh())


# --- the command line ----------------------------------------------------------------------------


def tiny_corpus(tmp_path) -> list[str]:
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("def f(x):\n    return x + 1\n" * 100)
    sizes = ["--hidden", "8", "--embed", "4", "--batch", "4", "--window", "8", "--kn-order", "2", "--steps", "4"]
    return ["demo", "--corpus", str(corpus), *sizes]


def test_demo_asking_for_more_devices_than_there_are_says_how_to_get_them(tmp_path, capsys):
    there, backend = len(jax.devices()), jax.default_backend()  # 1 cpu here, 1 gpu on a one-GPU machine
    with pytest.raises(SystemExit):
        rj.apps.cli.main([*tiny_corpus(tmp_path), "--devices", str(there + 1)])
    expected = rf"devices: {there + 1} asked for, but there are {there} {backend} .*xla_force_host_platform"
    assert re.search(expected, capsys.readouterr().err)


@pytest.mark.slow
def test_demo_trains_on_4_devices(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run(
        [sys.executable, "-m", "rnnjax", *tiny_corpus(tmp_path), "--devices", "4"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "data-parallel over 4 cpu devices: 1 per device" in run.stdout
    assert "validation bits per character" in run.stdout


def test_sharded_step_runs_the_value_checks_in_checking_mode_and_skips_non_finite_steps():
    params, batch, loss_fn = regression_problem()
    optimizer = optax.adam(1e-2)
    bad = {**batch, "xs": jnp.asarray(batch["xs"]).at[0, 0, 0].set(jnp.nan)}
    step = parallel.make_data_parallel_train_step(loss_fn, optimizer, parallel.make_mesh(), has_aux=True)
    assert np.isnan(step(params, optimizer.init(params), bad, jax.random.key(0))[2]["loss"])  # unchecked
    with rj.checking(), pytest.raises(ValueError, match="xs: expected finite values, got NaN or inf"):
        step(params, optimizer.init(params), bad, jax.random.key(0))
    skipping = parallel.make_train_step(loss_fn, optimizer, devices=1, has_aux=True, skip_nonfinite=True)
    new_params, _, metrics = skipping(params, optimizer.init(params), bad, jax.random.key(0))
    assert bool(metrics["skipped"])
    for a, b in zip(jax.tree.leaves(new_params), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_any_params_that_declare_gate_fields_are_split_over_the_model_axis():
    from typing import NamedTuple

    class MyCellParams(NamedTuple):  # a user's cell: its params say which fields hold gate columns
        w: jax.Array
        scale: jax.Array

        gate_fields = ("w",)

    assert isinstance(MyCellParams(jnp.ones(2), jnp.ones(2)), rj.typing.GatedParams)
    shardings = parallel.param_shardings(MyCellParams(jnp.ones((3, 8)), jnp.ones(8)), parallel.make_mesh(1))
    assert shardings.w.spec == jax.sharding.PartitionSpec(None, "model")
    assert shardings.scale.spec == jax.sharding.PartitionSpec()
