"""Training: train steps, clipping, BPTT == truncated BPTT (full window) == RTRL, diagnostics, fit and resume."""

import json
import os
import re
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
from conftest import as_float64, assert_trees_close, random_params

GRAD_CELLS = {
    "elman": rj.ElmanCell(4),
    "lstm": rj.LSTMCell(4),
    "gru": rj.GRUCell(4),
    "jordan": rj.JordanCell(4, output_size=2),
    "lstm_learned_carry": rj.LSTMCell(3, learn_initial_carry=True),
}


def mse(y, target):
    return jnp.sum((y - target) ** 2)


def float64_problem(cell, num_steps=12, seed=0):
    params = as_float64(random_params(cell, seed=seed))
    xs = jax.random.normal(jax.random.key(seed + 10), (num_steps, 3), jnp.float64)
    targets = jax.random.normal(jax.random.key(seed + 11), (num_steps, cell.output_size), jnp.float64)
    return params, xs, targets


# --- train steps -------------------------------------------------------------------------------


def regression_problem():
    cell = rj.GRUCell(8)
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (16, 6, 2))
    batch = {"xs": xs, "y": jnp.mean(xs[:, :, 0], axis=1)}

    def loss_fn(params, batch, key):
        ys = jax.vmap(lambda x: rj.unroll(cell, params, x)[1])(batch["xs"])
        return jnp.mean((ys[:, -1, 0] - batch["y"]) ** 2)

    return params, batch, loss_fn


def test_train_step_reduces_loss_and_does_not_retrace():
    params, batch, loss_fn = regression_problem()
    counted = chex.assert_max_traces(loss_fn, n=1)  # value_and_grad traces loss_fn once, on the first call only

    optimizer = optax.adam(3e-2)
    step = rj.train.make_train_step(counted, optimizer)
    opt_state = optimizer.init(params)
    losses = []
    for i in range(60):
        params, opt_state, metrics = step(params, opt_state, batch, jax.random.key(i))
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.3 * losses[0], losses[::10]
    assert "clipped" not in metrics


def test_clipping_bounds_the_update_and_reports_it():
    params, batch, loss_fn = regression_problem()
    batch = {**batch, "y": 100.0 * batch["y"]}  # huge gradient
    optimizer = optax.sgd(1.0)
    step = rj.train.make_train_step(loss_fn, optimizer, clip_norm=0.5)
    new_params, _, metrics = step(params, optimizer.init(params), batch, jax.random.key(0))
    update_norm = optax.tree.norm(jax.tree_util.tree_map(jnp.subtract, new_params, params))
    assert bool(metrics["clipped"]) and float(metrics["grad_norm"]) > 0.5
    np.testing.assert_allclose(float(update_norm), 0.5, rtol=1e-4)
    # small gradients pass unclipped
    step = rj.train.make_train_step(loss_fn, optimizer, clip_norm=1e6)
    new_params, _, metrics = step(params, optimizer.init(params), batch, jax.random.key(0))
    update_norm = optax.tree.norm(jax.tree_util.tree_map(jnp.subtract, new_params, params))
    assert not bool(metrics["clipped"])
    np.testing.assert_allclose(float(update_norm), float(metrics["grad_norm"]), rtol=1e-4)


def test_stateful_step_with_one_window_equals_plain_step():
    cell = rj.LSTMCell(5)
    params = random_params(cell)
    stream = jax.random.normal(jax.random.key(0), (12, 3))
    optimizer = optax.sgd(0.1)

    def window_loss(params, carry, xs, key):
        carry, ys = rj.unroll(cell, params, xs, carry)
        return jnp.mean(ys**2), carry

    stateful = rj.train.make_stateful_train_step(window_loss, optimizer)
    plain = rj.train.make_train_step(lambda p, xs, key: window_loss(p, None, xs, key)[0], optimizer)
    opt_state = optimizer.init(params)
    p1, _, carry, m1 = stateful(params, opt_state, cell.initial_carry(params), stream, jax.random.key(0))
    p2, _, m2 = plain(params, opt_state, stream, jax.random.key(0))
    assert_trees_close(p1, p2, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(carry.h, rj.unroll(cell, params, stream)[0].h, rtol=1e-6)
    # two windows: the carry flows forward, the gradient does not flow back across the cut
    p3, _, carry2, _ = stateful(params, opt_state, cell.initial_carry(params), stream[:6], jax.random.key(0))
    _, _, carry3, _ = stateful(p3, opt_state, carry2, stream[6:], jax.random.key(0))
    assert not np.allclose(carry3.h, carry.h)


# --- gradients through time --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GRAD_CELLS))
def test_rtrl_and_full_window_tbptt_equal_bptt(name, x64):
    cell = GRAD_CELLS[name]
    params, xs, targets = float64_problem(cell)
    loss, grads = jax.jit(lambda p: rj.train.bptt_grad(cell, p, xs, targets, mse))(params)
    rtrl_loss, rtrl_grads = jax.jit(lambda p: rj.train.rtrl_grad(cell, p, xs, targets, mse))(params)
    np.testing.assert_allclose(rtrl_loss, loss, rtol=1e-12)
    assert_trees_close(rtrl_grads, grads, rtol=1e-8, atol=1e-10)
    t_loss, t_grads, carry = jax.jit(lambda p: rj.train.truncated_bptt_grad(cell, p, xs, targets, mse, k1=12))(params)
    np.testing.assert_allclose(t_loss, loss, rtol=1e-12)
    assert_trees_close(t_grads, grads, rtol=1e-10, atol=1e-12)
    assert_trees_close(carry, rj.unroll(cell, params, xs)[0], rtol=1e-12)


def reference_tbptt(cell, params, xs, targets, k1, k2):
    """TBPTT(k1, k2) spelled out with Python loops: the specification."""
    carries = [cell.initial_carry(params)]
    for x in xs:
        carries.append(cell.step(params, carries[-1], x)[0])
    total = jax.tree_util.tree_map(jnp.zeros_like, params)
    for end in range(k1, len(xs) + 1, k1):
        start = max(0, end - k2)

        def window(p, start=start, end=end):
            c = cell.initial_carry(p) if start == 0 else jax.lax.stop_gradient(carries[start])
            loss = 0.0
            for t in range(start, end):
                c, y = cell.step(p, c, xs[t])
                if t >= end - k1:
                    loss = loss + mse(y, targets[t])
            return loss

        total = jax.tree_util.tree_map(jnp.add, total, jax.grad(window)(params))
    return total


@pytest.mark.parametrize("k1, k2", [(3, 3), (3, 5), (4, 8), (2, 7)])  # k2 >= t would be BPTT
def test_truncated_bptt_matches_its_definition_and_differs_from_bptt(k1, k2, x64):
    cell = rj.ElmanCell(4)
    params, xs, targets = float64_problem(cell)
    _, grads, _ = jax.jit(lambda p: rj.train.truncated_bptt_grad(cell, p, xs, targets, mse, k1=k1, k2=k2))(params)
    assert_trees_close(grads, reference_tbptt(cell, params, xs, targets, k1, k2), rtol=1e-10, atol=1e-12)
    _, full = rj.train.bptt_grad(cell, params, xs, targets, mse)
    assert not np.allclose(grads.w_h, full.w_h, rtol=1e-6)  # truncation drops long-range terms


def test_truncated_bptt_sums_bfloat16_params_gradients_in_float32():
    """bfloat16 params, float32 computation: the gradient is the float32 params' rounded to bfloat16, bit for bit
    (summed over each window's steps and over the windows in float32, as unroll's; tests/test_precision.py)."""
    cell32 = rj.LSTMCell(8, dtype=jnp.float32)
    cell = rj.LSTMCell(8, dtype=jnp.float32, param_dtype=jnp.bfloat16)
    params = cell.init(jax.random.key(0), 3)
    params32 = jax.tree_util.tree_map(lambda p: p.astype(jnp.float32), params)
    xs = jax.random.normal(jax.random.key(1), (14, 3))
    targets = jax.random.normal(jax.random.key(2), (14, 8))
    loss, grads, carry = rj.train.truncated_bptt_grad(cell, params, xs, targets, mse, k1=4, k2=6)
    loss32, grads32, carry32 = rj.train.truncated_bptt_grad(cell32, params32, xs, targets, mse, k1=4, k2=6)
    assert jax.tree_util.tree_map(lambda g: g.dtype, grads) == jax.tree_util.tree_map(lambda p: p.dtype, params)
    assert_trees_close((loss, carry), (loss32, carry32), rtol=0, atol=0)
    assert_trees_close(grads, jax.tree_util.tree_map(lambda g: g.astype(jnp.bfloat16), grads32), rtol=0, atol=0)


@pytest.mark.parametrize(
    "num_steps, kwargs, message",
    [
        (12, dict(k1=0), "k1: expected a positive integer, got 0"),  # any T works now (tests/test_train_padding.py)
        (12, dict(k1=4, k2=3), "k2: expected"),
    ],
)
def test_truncated_bptt_argument_errors(num_steps, kwargs, message):
    cell = rj.ElmanCell(4)
    xs, targets = jnp.ones((num_steps, 3)), jnp.ones((num_steps, 4))
    with pytest.raises(ValueError, match=message):
        rj.train.truncated_bptt_grad(cell, random_params(cell), xs, targets, mse, **kwargs)


# --- diagnostics -------------------------------------------------------------------------------


def test_carry_gradient_norms_equal_explicit_gradients(x64):
    cell = rj.LSTMCell(4)
    params, xs, _ = float64_problem(cell, num_steps=6)

    def loss_fn(carry, ys):
        return jnp.sum(ys[-1] ** 2) + jnp.sum(carry.c)

    norms = rj.train.carry_gradient_norms(cell, params, xs, loss_fn)

    def loss_from(t, carry_t):  # the loss as a function of the carry entering step t
        carry, ys = rj.unroll(cell, params, xs[t:], carry_t)
        return loss_fn(carry, ys)

    carry = cell.initial_carry(params)
    for t in range(6):
        grad = jax.grad(loss_from, argnums=1)(t, carry)
        np.testing.assert_allclose(norms[t], optax.tree.norm(grad), rtol=1e-10)
        carry = cell.step(params, carry, xs[t])[0]


def test_spectral_radius_at_rest_is_that_of_the_recurrent_weights():
    cell = rj.ElmanCell(6)
    params = random_params(cell)
    params = params._replace(b=jnp.zeros_like(params.b))
    rho = rj.train.jacobian_spectral_radius(cell, params, jnp.zeros((3, 3)))  # h stays 0, tanh'(0) = 1
    np.testing.assert_allclose(rho, np.max(np.abs(np.linalg.eigvals(np.asarray(params.w_h)))), rtol=1e-5)


# --- fit ---------------------------------------------------------------------------------------


def test_fit_logs_evaluates_and_writes_jsonl(tmp_path):
    params, batch, loss_fn = regression_problem()
    optimizer = optax.adam(1e-2)
    result = rj.train.fit(
        rj.train.make_train_step(loss_fn, optimizer, clip_norm=10.0),
        params,
        optimizer.init(params),
        lambda step: batch,
        num_steps=20,
        key=jax.random.key(0),
        eval_fn=lambda p: {"loss": loss_fn(p, batch, None)},
        eval_every=10,
        log_every=5,
        metrics_path=tmp_path / "metrics.jsonl",
        progress=False,
    )
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records == result.history
    assert [r["step"] for r in records if "loss" in r] == [5, 10, 15, 20]
    assert [r["step"] for r in records if "eval_loss" in r] == [10, 20]
    assert {"grad_norm", "clipped", "time"} <= set(records[0])


def run_script(*args):
    """fit_script.py in a fresh process with deterministic XLA kernels (a GPU needs them for bit-identical resumes)."""
    script = Path(__file__).parent / "fit_script.py"
    env = {**os.environ, "XLA_FLAGS": rj.train.deterministic_xla_flags(os.environ.get("XLA_FLAGS"))}
    command = [sys.executable, str(script), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def test_determinism_flags():
    flags = rj.train.deterministic_xla_flags(
        "--xla_force_host_platform_device_count=2 --xla_gpu_deterministic_ops=false"
    )
    assert flags == "--xla_force_host_platform_device_count=2 --xla_gpu_deterministic_ops=true"
    assert rj.train.is_deterministic("gpu", flags) and not rj.train.is_deterministic("gpu", "")
    assert rj.train.is_deterministic("cpu", "") and rj.train.is_deterministic("tpu", "")


def test_killed_and_resumed_run_is_bit_identical(tmp_path):
    straight = run_script(tmp_path / "straight", tmp_path / "straight.npz")
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = run_script(tmp_path / "resumed", tmp_path / "resumed.npz", "--die-at", 17)
    assert killed.returncode == -9 and not (tmp_path / "resumed.npz").exists()
    resumed = run_script(tmp_path / "resumed", tmp_path / "resumed.npz")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = np.load(tmp_path / "straight.npz"), np.load(tmp_path / "resumed.npz")
    assert a.files == b.files
    for name in a.files:
        np.testing.assert_array_equal(a[name], b[name])
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30]  # records past the restored step were dropped, none duplicated


def test_corrupt_or_mismatched_checkpoint_is_an_error_naming_it(tmp_path):
    params, batch, loss_fn = regression_problem()
    optimizer = optax.adam(1e-2)
    step = rj.train.make_train_step(loss_fn, optimizer)
    kwargs = dict(num_steps=4, key=jax.random.key(0), checkpoint_dir=tmp_path / "ckpt", progress=False)
    rj.train.fit(step, params, optimizer.init(params), lambda s: batch, **kwargs)
    # another model's params: a mismatch
    other = rj.GRUCell(3).init(jax.random.key(0), 2)
    with pytest.raises(ValueError, match=r"checkpoint .*ckpt/4: cannot be restored"):
        rj.train.fit(step, other, optimizer.init(other), lambda s: batch, resume=True, **{**kwargs, "num_steps": 8})
    # corrupt files: every file of the checkpoint truncated
    for path in (tmp_path / "ckpt" / "4").rglob("*"):
        if path.is_file():
            path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"checkpoint .*ckpt/4: cannot be restored"):
        rj.train.fit(step, params, optimizer.init(params), lambda s: batch, resume=True, **{**kwargs, "num_steps": 8})


def test_resume_needs_a_checkpoint_dir():
    params, batch, loss_fn = regression_problem()
    optimizer = optax.adam(1e-2)
    with pytest.raises(ValueError, match="resume: needs a checkpoint_dir"):
        rj.train.fit(
            rj.train.make_train_step(loss_fn, optimizer),
            params,
            optimizer.init(params),
            lambda s: batch,
            num_steps=2,
            key=jax.random.key(0),
            resume=True,
        )


# --- fit: nothing lost, nothing non-finite saved -------------------------------------------------


def directory_bytes(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def fit_regression(tmp_path, data=None, *, step_fn=None, **kwargs):
    """fit on the regression problem (GRU, Adam), checkpoints in tmp_path/ckpt unless given otherwise."""
    params, batch, loss_fn = regression_problem()
    optimizer = optax.adam(1e-2)
    step_fn = step_fn or rj.train.make_train_step(loss_fn, optimizer)
    kwargs = {
        "num_steps": 4,
        "key": jax.random.key(0),
        "checkpoint_dir": tmp_path / "ckpt",
        "progress": False,
        **kwargs,
    }
    return rj.train.fit(step_fn, params, optimizer.init(params), data or (lambda s: batch), **kwargs)


def nan_at(step_index):
    """Batches of the regression problem, with NaN inputs for the step ``step_index`` (0-based)."""
    _, batch, _ = regression_problem()
    return lambda s: {**batch, "xs": batch["xs"] * (jnp.nan if s == step_index else 1.0)}


def test_fit_into_a_directory_with_checkpoints_needs_resume_and_writes_nothing(tmp_path):
    fit_regression(tmp_path, metrics_path=tmp_path / "ckpt" / "metrics.jsonl", log_every=2)
    before = directory_bytes(tmp_path)
    with pytest.raises(ValueError, match=r"checkpoint_dir: .*ckpt already holds checkpoints .*resume=True"):
        fit_regression(tmp_path, num_steps=8)
    with pytest.raises(ValueError, match=r"metrics_path: .*metrics.jsonl already holds the records .*resume=True"):
        fit_regression(tmp_path, num_steps=8, checkpoint_dir=None, metrics_path=tmp_path / "ckpt" / "metrics.jsonl")
    assert directory_bytes(tmp_path) == before
    assert fit_regression(tmp_path, num_steps=8, resume=True).step == 8  # with resume it continues


def test_a_non_finite_loss_stops_fit_at_its_step_before_any_save(tmp_path):
    # a NaN at step 4: between logs, at a checkpoint step, with older checkpoints to rotate out
    kwargs = dict(num_steps=10, checkpoint_every=2, max_to_keep=3, log_every=10)
    with pytest.raises(
        FloatingPointError, match=r"loss: became nan at step 4 \(batch 3\); the latest checkpoint is .*ckpt/2"
    ):
        fit_regression(tmp_path, nan_at(3), **kwargs)
    params, _, _ = regression_problem()
    optimizer = optax.adam(1e-2)
    restored, _, at = rj.train.restore_checkpoint(tmp_path / "ckpt", params, optimizer.init(params), jax.random.key(0))
    assert at == 2 and all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(restored))
    assert sorted(int(p.name) for p in (tmp_path / "ckpt").iterdir() if p.name.isdigit()) == [2]


def test_an_infinite_gradient_under_clipping_stops_fit(tmp_path):
    # the loss stays finite, the gradient norm overflows: clipping by it would zero the update silently
    params, batch, loss_fn = regression_problem()

    def huge(p, b, key):
        return loss_fn(p, b, key) + b["scale"] * jnp.sum(p.b)  # p.b = 0: the loss is unchanged

    step = rj.train.make_train_step(huge, optax.adam(1e-2), clip_norm=1.0)

    def data(s):
        return {**batch, "scale": jnp.float32(1e30 if s == 5 else 0.0)}

    with pytest.raises(FloatingPointError, match=r"grad_norm: became inf at step 6"):
        fit_regression(tmp_path, data, step_fn=step, num_steps=8, checkpoint_dir=None)


def test_non_finite_params_are_never_saved(tmp_path):
    params, batch, loss_fn = regression_problem()
    step = rj.train.make_train_step(loss_fn, optax.chain(optax.scale(1e30), optax.scale(1e30)))  # an overflowing update
    with pytest.raises(FloatingPointError, match=r"params: non-finite values after step 1 .*not saved"):
        fit_regression(tmp_path, step_fn=step, num_steps=4, checkpoint_every=1)
    assert not any(p.name.isdigit() for p in (tmp_path / "ckpt").iterdir())


def test_skip_nonfinite_keeps_the_state_and_fit_counts_the_skipped_steps(tmp_path):
    params, batch, loss_fn = regression_problem()
    optimizer = optax.adam(1e-2)
    step = rj.train.make_train_step(loss_fn, optimizer, skip_nonfinite=True)
    opt_state = optimizer.init(params)
    bad = {**batch, "xs": batch["xs"] * jnp.nan}
    new_params, new_state, metrics = step(params, opt_state, bad, jax.random.key(0))
    assert bool(metrics["skipped"])
    assert_trees_close((new_params, new_state), (params, opt_state), rtol=0, atol=0)
    _, _, metrics = step(params, opt_state, batch, jax.random.key(0))
    assert not bool(metrics["skipped"])
    result = fit_regression(tmp_path, nan_at(3), step_fn=step, num_steps=6, log_every=3)
    assert [(r["step"], r["skipped_steps"]) for r in result.history] == [(3, 0), (6, 1)]


def test_stateful_step_skips_a_non_finite_window_keeping_the_carry():
    cell = rj.LSTMCell(4)
    params = cell.init(jax.random.key(0), 3)
    optimizer = optax.sgd(0.1)

    def window_loss(params, carry, xs, key):
        carry, ys = rj.unroll(cell, params, xs, carry)
        return jnp.mean(ys**2), carry

    step = rj.train.make_stateful_train_step(window_loss, optimizer, skip_nonfinite=True)
    carry = jax.tree.map(lambda c: c + 0.5, cell.initial_carry(params))
    new_params, _, new_carry, metrics = step(params, optimizer.init(params), carry, jnp.full((5, 3), jnp.nan), None)
    assert bool(metrics["skipped"])
    assert_trees_close((new_params, new_carry), (params, carry), rtol=0, atol=0)


def test_resume_drops_a_torn_last_metrics_line_with_a_warning(tmp_path):
    metrics = tmp_path / "ckpt" / "metrics.jsonl"
    fit_regression(tmp_path, metrics_path=metrics, log_every=2)
    with metrics.open("a") as f:
        f.write('{"step": 6, "lo')  # killed mid-write
    with pytest.warns(UserWarning, match=r"metrics_path: dropped the torn last line 3 of .*metrics.jsonl"):
        fit_regression(tmp_path, metrics_path=metrics, log_every=2, num_steps=8, resume=True)
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [2, 4, 6, 8]
    # a damaged line in the middle is not guessed at: the error names the file and the line
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=r"metrics_path: line 2 of .*metrics.jsonl is not a record"):
        fit_regression(tmp_path, metrics_path=metrics, num_steps=10, resume=True)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"log_every": 0}, ValueError, "log_every: expected a positive integer, got 0"),
        ({"max_to_keep": 0}, ValueError, "max_to_keep: expected a positive integer, got 0"),
        ({"checkpoint_every": -1}, ValueError, "checkpoint_every: expected a non-negative integer, got -1"),
        ({"eval_every": -2}, ValueError, "eval_every: expected a non-negative integer, got -2"),
        ({"num_steps": 0}, ValueError, "num_steps: expected a positive integer, got 0"),
    ],
)
def test_fit_argument_errors(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        fit_regression(tmp_path, **kwargs)
    assert not (tmp_path / "ckpt").exists()


def test_resume_without_a_checkpoint_keeps_an_earlier_metrics_file(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 5, "loss": 1.0}\n')
    with pytest.raises(ValueError, match=r"metrics_path: .*metrics.jsonl holds records up to step 5, but there is no"):
        fit_regression(tmp_path, metrics_path=metrics, resume=True)
    assert metrics.read_text() == '{"step": 5, "loss": 1.0}\n'


def test_fit_data_and_resume_errors(tmp_path):
    _, batch, _ = regression_problem()
    with pytest.raises(ValueError, match=r"data: the iterable ended after 3 batches; num_steps=4 needs 4"):
        fit_regression(tmp_path, [batch] * 3, checkpoint_dir=None)
    fit_regression(tmp_path, num_steps=4)
    with pytest.raises(ValueError, match=r"num_steps: 2 is below the step 4 of the checkpoint to resume in .*ckpt"):
        fit_regression(tmp_path, num_steps=2, resume=True)
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(ValueError, match=r"checkpoint_dir: expected a directory, got the file .*file"):
        fit_regression(tmp_path, checkpoint_dir=tmp_path / "file")


def test_checking_mode_reaches_inside_the_jitted_train_steps():
    params, batch, loss_fn = regression_problem()
    optimizer = optax.adam(1e-2)
    step = rj.train.make_train_step(loss_fn, optimizer)
    bad = {**batch, "xs": batch["xs"].at[0, 0, 0].set(jnp.nan)}
    step(params, optimizer.init(params), bad, None)  # unchecked: runs
    with rj.checking(), pytest.raises(ValueError, match=r"xs: expected finite values, got NaN or inf"):
        step(params, optimizer.init(params), bad, None)
    # a traced length out of range
    cell = rj.GRUCell(8)

    def lengths_loss(p, b, key):
        return jnp.mean(jax.vmap(lambda x, n: rj.unroll(cell, p, x, length=n)[1])(b["xs"], b["n"]))

    step = rj.train.make_train_step(lengths_loss, optimizer)
    long = {"xs": batch["xs"], "n": jnp.full(16, 7)}  # T = 6
    with rj.checking(), pytest.raises(ValueError, match=r"length: expected 0 <= length <= 6"):
        step(params, optimizer.init(params), long, None)
    stateful = rj.train.make_stateful_train_step(
        lambda p, c, xs, key: (jnp.mean(rj.unroll(cell, p, xs, c)[1]), rj.unroll(cell, p, xs, c)[0]), optimizer
    )
    with rj.checking(), pytest.raises(ValueError, match=r"xs: expected finite values"):
        stateful(params, optimizer.init(params), cell.initial_carry(params), bad["xs"][0], None)
