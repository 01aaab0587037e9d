"""The fit loop: progress bar, evaluation, JSONL metrics, orbax checkpoints and exact resumes."""

import contextlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._src import checks
from rnnjax._src.files import replace_file
from rnnjax.typing import Array, Params, PRNGKey

# XLA's switch for run-to-run reproducible GPU kernels (no atomics in reductions, deterministic
# cuDNN/cuBLAS algorithms); XLA:CPU and TPU give identical results run to run without it.
DETERMINISTIC_XLA_FLAG = "--xla_gpu_deterministic_ops=true"


def deterministic_xla_flags(flags: str | None = None) -> str:
    """``flags`` (an ``XLA_FLAGS`` value) with XLA's GPU determinism switch on.

    Set the result as ``XLA_FLAGS`` before JAX starts its backend (before the first array is
    made): in the environment of the training process, or at the top of the script::

        os.environ["XLA_FLAGS"] = rj.train.deterministic_xla_flags(os.environ.get("XLA_FLAGS"))

    With it a run killed and resumed from a checkpoint on a GPU ends with bit-identical params
    to an uninterrupted one (as on CPU and TPU without it); some GPU kernels get slower.

    Example:
        >>> deterministic_xla_flags("--xla_gpu_autotune_level=0")
        '--xla_gpu_autotune_level=0 --xla_gpu_deterministic_ops=true'
        >>> deterministic_xla_flags(deterministic_xla_flags())
        '--xla_gpu_deterministic_ops=true'
    """
    flags = (flags or "").split()
    kept = [f for f in flags if not f.startswith("--xla_gpu_deterministic_ops")]
    return " ".join([*kept, DETERMINISTIC_XLA_FLAG])


def is_deterministic(backend: str | None = None, flags: str | None = None) -> bool:
    """Whether runs repeat bit for bit on ``backend`` under ``flags`` (default: this process's).

    True on CPU and TPU; on GPU only with :data:`DETERMINISTIC_XLA_FLAG` in ``XLA_FLAGS``.

    Example:
        >>> is_deterministic("cpu", ""), is_deterministic("gpu", ""), is_deterministic("gpu", DETERMINISTIC_XLA_FLAG)
        (True, False, True)
    """
    backend = backend or jax.default_backend()
    flags = os.environ.get("XLA_FLAGS", "") if flags is None else flags
    return backend != "gpu" or DETERMINISTIC_XLA_FLAG in flags.split()


class FitResult(NamedTuple):
    params: Params
    opt_state: Any
    step: int
    history: list[dict]  # one record per logged step (and evaluation)


def _to_python(metrics: dict) -> dict:
    return {k: (v.item() if np.ndim(v) == 0 else np.asarray(v).tolist()) for k, v in jax.device_get(metrics).items()}


def _checkpoint_manager(directory: Path, max_to_keep: int):
    import orbax.checkpoint as ocp  # imported when used: it takes a second to import

    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(directory.absolute(), options=options)


def _checkpoint_state(params, opt_state, step: int, key_data) -> dict:
    """What a checkpoint holds; the data position of a run is its step (``data(step)``)."""
    return {"params": params, "opt_state": opt_state, "step": step, "key": key_data, "data_position": step}


def _restore(manager, step: int, directory: Path, params, opt_state, key_data) -> tuple[Params, Any, int]:
    """Checkpoint ``step`` restored into the structure of ``(params, opt_state)``; errors name the file."""
    import orbax.checkpoint as ocp

    target = _checkpoint_state(params, opt_state, 0, key_data)
    try:
        state = manager.restore(step, args=ocp.args.StandardRestore(target))
    except Exception as error:  # orbax raises many types; name the file and keep the cause
        raise ValueError(
            f"checkpoint {directory / str(step)}: cannot be restored into this run's params and "
            f"optimizer state ({type(error).__name__}: {error}). Delete it or point checkpoint_dir elsewhere; "
            "nothing was overwritten."
        ) from error
    if not np.array_equal(np.asarray(state["key"]), np.asarray(key_data)):
        raise ValueError(f"key: checkpoint {directory / str(step)} was written with another PRNG key")
    return state["params"], state["opt_state"], int(state["step"])


def restore_checkpoint(checkpoint_dir: str | Path, params: Params, opt_state, key: PRNGKey):
    """The latest checkpoint that :func:`fit` wrote in ``checkpoint_dir``.

    Args:
      checkpoint_dir: the ``checkpoint_dir`` given to :func:`fit`.
      params, opt_state: templates with the structure, shapes and dtypes to restore into
        (e.g. ``model.init(key)`` and ``optimizer.init(params)``).
      key: the base key the run used (checked: a checkpoint of another run is refused).

    Returns:
      ``(params, opt_state, step)``.

    Raises:
      FileNotFoundError: no checkpoint in ``checkpoint_dir``.
      ValueError: the checkpoint does not fit the templates or is damaged (naming it).

    Example:
        >>> import tempfile, jax, jax.numpy as jnp, optax, rnnjax as rj
        >>> cell, optimizer = rj.ElmanCell(4), optax.sgd(0.1)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> step = rj.train.make_train_step(lambda p, b, k: jnp.mean(rj.unroll(cell, p, b)[1] ** 2), optimizer)
        >>> run = tempfile.mkdtemp()
        >>> _ = rj.train.fit(step, params, optimizer.init(params), lambda i: jnp.ones((3, 2)), num_steps=2,
        ...                  key=jax.random.key(1), checkpoint_dir=run, progress=False)
        >>> restored, _, at = rj.train.restore_checkpoint(run, params, optimizer.init(params), jax.random.key(1))
        >>> at
        2
    """
    checkpoint_dir = Path(checkpoint_dir)
    manager = _checkpoint_manager(checkpoint_dir, max_to_keep=1)
    try:
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"checkpoint_dir: no checkpoint in {checkpoint_dir}")
        return _restore(manager, step, checkpoint_dir, params, opt_state, jax.random.key_data(key))
    finally:
        manager.close()


def _start_step(manager, directory: Path, num_steps: int, resume: bool) -> int:
    """The step a run starts from: 0, or with ``resume`` the latest checkpoint's; errors before any write."""
    latest = manager.latest_step()
    if latest is None:
        return 0
    if not resume:
        raise ValueError(
            f"checkpoint_dir: {directory} already holds checkpoints of a run (latest step {latest}); pass "
            "resume=True to continue it, or another checkpoint_dir (nothing was written)"
        )
    if latest > num_steps:
        raise ValueError(
            f"num_steps: {num_steps} is below the step {latest} of the checkpoint to resume in {directory}"
        )
    return latest


def _latest(manager, directory: Path) -> str:
    step = manager.latest_step()
    return "none (nothing was saved)" if step is None else f"{directory / str(step)}"


@jax.jit
def _all_finite(tree) -> Array:
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _metrics_records(path: Path) -> list[tuple[int, str]]:
    """The JSONL records of ``path`` as ``(step, line)``; a torn or blank last line is dropped with a warning."""
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not (isinstance(record, dict) and isinstance(record.get("step"), int)):
            if number == len(lines):  # a run killed while writing its last record
                warnings.warn(
                    f"metrics_path: dropped the torn last line {number} of {path}: {line[:60]!r}", stacklevel=3
                )
                break
            raise ValueError(
                f"metrics_path: line {number} of {path} is not a record with a step: {line[:60]!r}; "
                "repair or move the file"
            )
        records.append((record["step"], line))
    return records


def fit(
    train_step: Callable,
    params: Params,
    opt_state,
    data: Callable[[int], Any] | Iterable,
    *,
    num_steps: int,
    key: PRNGKey,
    eval_fn: Callable[[Params], dict] | None = None,
    eval_every: int = 0,
    log_every: int = 10,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 0,
    max_to_keep: int = 3,
    metrics_path: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> FitResult:
    """Train for ``num_steps`` steps with a progress bar, evaluation, JSONL metrics and checkpoints.

    Step ``i`` (0-based) uses ``batch = data(i)`` (or the i-th item of an iterable) and the key
    ``jax.random.fold_in(key, i)``. Checkpoints (orbax; written to a temporary directory and
    renamed, so a killed run never leaves a half-written one) hold the params, optimizer state,
    step, key and data position. With ``resume=True`` the latest checkpoint in ``checkpoint_dir``
    is restored and training continues from its step: a run killed and resumed ends with
    bit-identical params to an uninterrupted one (for a callable ``data``, or an iterable that
    yields the same batches when re-created; an iterable is advanced past the consumed steps).
    On a GPU that needs XLA's deterministic kernels (:func:`deterministic_xla_flags`): without
    them ``fit`` warns when it keeps checkpoints, and a resumed run matches only to rounding.
    A checkpoint that cannot be restored raises ``ValueError`` naming it; it is never ignored.

    Nothing is lost or saved wrong: a ``checkpoint_dir`` that already holds checkpoints, or a
    non-empty ``metrics_path``, is an error without ``resume=True`` (raised before anything is
    written); every save is checked. Every step's ``loss`` and ``grad_norm`` metrics are
    checked for NaN and infinity (without a device wait per step: at the next log, evaluation
    or checkpoint), and the params and optimizer state before each save: a non-finite value
    raises ``FloatingPointError`` naming the first bad step, before it could be saved, so the
    latest checkpoint holds the last finite params. A step that reports ``skipped``
    (``make_train_step(..., skip_nonfinite=True)``) is counted instead (``skipped_steps`` in
    the logged records).

    Args:
      train_step: ``(params, opt_state, batch, key) -> (params, opt_state, metrics)``, e.g.
        from :func:`make_train_step`.
      params, opt_state: the starting point (also the structure a checkpoint restores into).
      data: ``data(step) -> batch``, or an iterable of batches.
      num_steps: total number of steps (counting those before a resume).
      key: base PRNG key.
      eval_fn: ``eval_fn(params) -> dict`` of metrics, run every ``eval_every`` steps and at the end.
      log_every: steps between metric records (each one waits for the device); positive.
      checkpoint_dir: where to keep checkpoints (None: none).
      checkpoint_every: steps between checkpoints (0: only at the end).
      max_to_keep: checkpoints kept; positive.
      metrics_path: a JSONL file with one record per log. On resume, records past the restored
        step are dropped, and so is a torn last line (a run killed while writing it; warned).
      resume: continue from the latest checkpoint if there is one (its step must not exceed
        ``num_steps``).
      progress: show a tqdm progress bar.

    Returns:
      :class:`FitResult` ``(params, opt_state, step, history)``.

    Example:
        >>> import jax, jax.numpy as jnp, optax, rnnjax as rj
        >>> cell = rj.ElmanCell(4)
        >>> loss_fn = lambda p, batch, key: jnp.mean(rj.unroll(cell, p, batch)[1] ** 2)
        >>> optimizer = optax.adam(1e-2)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> step = rj.train.make_train_step(loss_fn, optimizer)
        >>> data = lambda i: jnp.ones((5, 2))
        >>> result = rj.train.fit(step, params, optimizer.init(params), data, num_steps=20,
        ...                       key=jax.random.key(1), progress=False)
        >>> first, last = result.history[0], result.history[-1]
        >>> result.step, last.get("loss") < first.get("loss")
        (20, True)
    """
    import orbax.checkpoint as ocp
    from tqdm.auto import tqdm

    checks.positive_int(num_steps, "num_steps")
    checks.positive_int(log_every, "log_every")
    checks.positive_int(max_to_keep, "max_to_keep")
    checks.non_negative_int(checkpoint_every, "checkpoint_every")
    checks.non_negative_int(eval_every, "eval_every")
    if resume and checkpoint_dir is None:
        raise ValueError("resume: needs a checkpoint_dir to resume from, got checkpoint_dir=None")
    if metrics_path is not None:
        metrics_path = Path(metrics_path)
        if not resume and metrics_path.exists() and metrics_path.stat().st_size:
            raise ValueError(
                f"metrics_path: {metrics_path} already holds the records of an earlier run; pass resume=True "
                "to continue that run, or another metrics_path (nothing was written)"
            )
    # read (and a damaged file refused) before a checkpoint manager is opened or anything written
    records = _metrics_records(metrics_path) if resume and metrics_path is not None and metrics_path.exists() else []
    key_data = jax.random.key_data(key)
    start, history, manager, metrics_file = 0, [], None, None
    with contextlib.ExitStack() as cleanup:  # whatever is opened below is closed on every way out
        if checkpoint_dir is not None:
            checkpoint_dir = Path(checkpoint_dir)
            if checkpoint_dir.exists() and not checkpoint_dir.is_dir():
                raise ValueError(f"checkpoint_dir: expected a directory, got the file {checkpoint_dir}")
            manager = _checkpoint_manager(checkpoint_dir, max_to_keep)
            cleanup.callback(manager.close)
            start = _start_step(manager, checkpoint_dir, num_steps, resume)
            if start:
                params, opt_state, start = _restore(manager, start, checkpoint_dir, params, opt_state, key_data)
            if not is_deterministic():
                warnings.warn(
                    f"fit: {jax.default_backend()} kernels are not deterministic, so a run resumed from "
                    f"{checkpoint_dir} will match an uninterrupted one only to rounding; for bit-identical "
                    f"resumes start the process with XLA_FLAGS={DETERMINISTIC_XLA_FLAG} "
                    "(rnnjax.train.deterministic_xla_flags)",
                    stacklevel=2,
                )

        if metrics_path is not None:
            if records and start == 0:
                raise ValueError(
                    f"metrics_path: {metrics_path} holds records up to step {records[-1][0]}, but there is no "
                    f"checkpoint to resume in {checkpoint_dir}; move the file or point metrics_path elsewhere "
                    "(nothing was written)"
                )
            kept = "".join(line + "\n" for step, line in records if step <= start)  # records past it are dropped
            replace_file(metrics_path, lambda path: path.write_text(kept))
            metrics_file = cleanup.enter_context(metrics_path.open("a"))

        def record(entry):
            history.append(entry)
            if metrics_file is not None:
                metrics_file.write(json.dumps(entry) + "\n")
                metrics_file.flush()

        # Every step's loss and gradient norm are checked, without waiting for the device after
        # each step: they are kept (on the device) until the next log, evaluation or checkpoint.
        unchecked, skipped = [], 0

        def check_finite():
            nonlocal skipped
            values = jax.device_get(
                [[metrics.get(k) for k in ("loss", "grad_norm", "skipped")] for _, metrics in unchecked]
            )
            for (done, _), (loss, grad_norm, was_skipped) in zip(unchecked, values, strict=True):
                if was_skipped is not None and np.any(was_skipped):
                    skipped += 1
                    continue
                for name, value in (("loss", loss), ("grad_norm", grad_norm)):
                    if value is not None and not np.all(np.isfinite(value)):
                        kept = (
                            "" if manager is None else f"; the latest checkpoint is {_latest(manager, checkpoint_dir)}"
                        )
                        raise FloatingPointError(
                            f"{name}: became {value} at step {done} (batch {done - 1}){kept}. To skip such steps "
                            "instead, make the step with make_train_step(..., skip_nonfinite=True)"
                        )
            unchecked.clear()

        def save(step):
            check_finite()
            if not _all_finite((params, opt_state)):
                raise FloatingPointError(
                    f"params: non-finite values after step {step} (every loss and gradient norm was finite: "
                    f"a too large update?); not saved, the latest checkpoint is {_latest(manager, checkpoint_dir)}"
                )
            state = _checkpoint_state(params, opt_state, step, key_data)
            if not manager.save(step, args=ocp.args.StandardSave(state)):
                raise RuntimeError(f"checkpoint_dir: orbax did not save step {step} in {checkpoint_dir}")

        batches = None if callable(data) else iter(data)

        def next_batch(step):
            try:
                return next(batches)
            except StopIteration:
                raise ValueError(
                    f"data: the iterable ended after {step} batches; num_steps={num_steps} needs {num_steps}"
                ) from None

        if batches is not None:
            for step in range(start):  # an iterable is replayed up to the resumed position
                next_batch(step)

        bar = cleanup.enter_context(tqdm(total=num_steps, initial=start, disable=not progress, unit="step"))
        cleanup.callback(lambda: manager is None or manager.wait_until_finished())
        clock = time.perf_counter()
        for step in range(start, num_steps):
            batch = data(step) if batches is None else next_batch(step)
            params, opt_state, metrics = train_step(params, opt_state, batch, jax.random.fold_in(key, step))
            done = step + 1
            unchecked.append((done, metrics))
            if done % log_every == 0 or done == num_steps:
                check_finite()
                entry = {"step": done, **_to_python(metrics), "time": time.perf_counter() - clock}
                if "skipped" in metrics:
                    entry["skipped_steps"] = skipped
                record(entry)
                bar.set_postfix({k: f"{v:.4g}" for k, v in entry.items() if k in ("loss", "grad_norm")})
            if eval_fn is not None and ((eval_every and done % eval_every == 0) or done == num_steps):
                check_finite()
                record({"step": done, **{f"eval_{k}": v for k, v in _to_python(eval_fn(params)).items()}})
            if manager is not None and ((checkpoint_every and done % checkpoint_every == 0) or done == num_steps):
                save(done)
            bar.update(1)
    return FitResult(params, opt_state, num_steps, history)
