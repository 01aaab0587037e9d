"""Training: jitted train steps, gradients through time (BPTT, truncated BPTT, RTRL), diagnostics, ``fit``.

Conventions: a loss is a pure function of params; ``step_loss(y_t, target_t) -> scalar`` is the
per-step loss of a cell's output, and the sequence loss is its sum over steps
(:func:`sequence_loss`). BPTT, truncated BPTT with ``k1 = k2 = t`` and RTRL all compute the
gradient of that same quantity, which the tests check against each other.
"""

import functools
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
import optax
from jax import lax
from jax.flatten_util import ravel_pytree

from rnnjax import _checks
from rnnjax.recurrence import unroll
from rnnjax.typing import Array, Carry, Cell, Params, PRNGKey

StepLoss = Callable[[Array, Any], Array]


# --- train steps -------------------------------------------------------------------------------


def _update(optimizer, clip_norm, skip_nonfinite, loss, grads, opt_state, params):
    """Clip (optionally), then one optimizer update; metrics of the raw gradient.

    With ``skip_nonfinite`` a step whose loss or gradient norm is NaN or infinite leaves the
    params and optimizer state as they were and reports ``skipped``.
    """
    grad_norm = optax.tree.norm(grads)
    metrics = {"grad_norm": grad_norm}
    if clip_norm is not None:
        grads, _ = optax.clip_by_global_norm(clip_norm).update(grads, optax.EmptyState())
        metrics["clipped"] = grad_norm > clip_norm
    with jax.numpy_dtype_promotion("standard"):  # optax's internals rely on standard promotion
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
    if skip_nonfinite:
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        keep_finite = functools.partial(jax.tree.map, lambda new, old: jnp.where(finite, new, old))
        new_params, new_opt_state = keep_finite(new_params, params), keep_finite(new_opt_state, opt_state)
        metrics["skipped"] = ~finite
    return new_params, new_opt_state, metrics


def make_train_step(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    *,
    clip_norm: float | None = None,
    has_aux=False,
    skip_nonfinite: bool = False,
):
    """One jitted, pure training step from a loss and an optax optimizer.

    Args:
      loss_fn: ``loss_fn(params, batch, key) -> loss`` (or ``(loss, aux_dict)`` with
        ``has_aux=True``; the aux values join the metrics).
      optimizer: any optax transformation, e.g. ``optax.adam(1e-3)``; its state comes from
        ``optimizer.init(params)``. A clip inside it (``optax.chain(optax.clip_by_global_norm(c),
        optax.adam(lr))``) works too, but then the step cannot report whether it clipped.
      clip_norm: clip the gradient to this global norm before ``optimizer`` and report it.
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.
      skip_nonfinite: a step whose loss or gradient norm is NaN or infinite changes nothing
        (params and optimizer state stay as they were) and reports ``skipped``; :func:`fit`
        counts such steps instead of stopping. Off by default: a non-finite loss or gradient
        norm is reported in the metrics, and :func:`fit` stops at it.

    Returns:
      ``step(params, opt_state, batch, key) -> (params, opt_state, metrics)``, jitted once per
      shape; ``metrics`` holds ``loss``, ``grad_norm`` (before clipping; with ``clip_norm`` an
      infinite norm would zero the update, so check it), with ``clip_norm`` ``clipped`` and with
      ``skip_nonfinite`` ``skipped``. Inside :func:`rnnjax.checking` the step runs the library's
      value checks (a failed one raises ``ValueError``).

    Example:
        >>> import jax, jax.numpy as jnp, optax, rnnjax as rj
        >>> cell = rj.GRUCell(8)
        >>> def loss_fn(params, batch, key):
        ...     ys = jax.vmap(lambda x: rj.unroll(cell, params, x)[1])(batch["xs"])
        ...     return jnp.mean((ys[:, -1, 0] - batch["y"]) ** 2)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> optimizer = optax.adam(1e-2)
        >>> step = rj.train.make_train_step(loss_fn, optimizer, clip_norm=1.0)
        >>> batch = {"xs": jnp.ones((4, 5, 2)), "y": jnp.ones(4)}
        >>> params, opt_state, metrics = step(params, optimizer.init(params), batch, jax.random.key(1))
        >>> sorted(metrics)
        ['clipped', 'grad_norm', 'loss']
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=has_aux)

    @_checks.checked_jit
    def step(params, opt_state, batch, key):
        if has_aux:
            (loss, aux), grads = grad_fn(params, batch, key)
        else:
            (loss, grads), aux = grad_fn(params, batch, key), {}
        params, opt_state, metrics = _update(optimizer, clip_norm, skip_nonfinite, loss, grads, opt_state, params)
        return params, opt_state, {"loss": loss, **metrics, **aux}

    return step


def make_stateful_train_step(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    *,
    clip_norm: float | None = None,
    skip_nonfinite: bool = False,
):
    """A train step that carries the recurrent carry from one window of a stream to the next.

    This is truncated BPTT as char-rnn trains: the stream is cut into consecutive windows,
    each window's loss is backpropagated within the window only (the incoming carry is a
    constant: ``stop_gradient``), and the carry at its end starts the next window.

    Args:
      loss_fn: ``loss_fn(params, carry, batch, key) -> (loss, new_carry)``.
      optimizer: an optax transformation.
      clip_norm, skip_nonfinite: as in :func:`make_train_step` (a skipped step keeps the
        incoming carry too).

    Returns:
      ``step(params, opt_state, carry, batch, key) -> (params, opt_state, carry, metrics)``, jitted.

    Example:
        >>> import jax, jax.numpy as jnp, optax, rnnjax as rj
        >>> cell = rj.LSTMCell(8)
        >>> def loss_fn(params, carry, xs, key):
        ...     carry, ys = rj.unroll(cell, params, xs, carry)
        ...     return jnp.mean((ys - 1.0) ** 2), carry
        >>> params = cell.init(jax.random.key(0), 3)
        >>> optimizer = optax.sgd(0.1)
        >>> step = rj.train.make_stateful_train_step(loss_fn, optimizer)
        >>> stream = jnp.ones((40, 3))
        >>> carry, opt_state = cell.initial_carry(params), optimizer.init(params)
        >>> for window in stream.reshape(4, 10, 3):
        ...     params, opt_state, carry, metrics = step(params, opt_state, carry, window, jax.random.key(0))
        >>> carry.h.shape
        (8,)
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    @_checks.checked_jit
    def step(params, opt_state, carry, batch, key):
        (loss, new_carry), grads = grad_fn(params, lax.stop_gradient(carry), batch, key)
        params, opt_state, metrics = _update(optimizer, clip_norm, skip_nonfinite, loss, grads, opt_state, params)
        if skip_nonfinite:
            new_carry = jax.tree.map(lambda new, old: jnp.where(metrics["skipped"], old, new), new_carry, carry)
        return params, opt_state, new_carry, {"loss": loss, **metrics}

    return step


# --- gradients through time --------------------------------------------------------------------


def _sum_step_losses(step_loss: StepLoss, ys: Array, targets) -> Array:
    return jnp.sum(jax.vmap(step_loss)(ys, targets))


def sequence_loss(
    cell: Cell, params: Params, xs: Array, targets, step_loss: StepLoss, *, carry: Carry | None = None, remat=False
) -> Array:
    """``sum_t step_loss(y_t, target_t)`` over one sequence: the quantity all gradients here differentiate.

    Args:
      cell: the cell.
      params: its params.
      xs: inputs ``[t, f]``.
      targets: a pytree of arrays with leading axis ``t``.
      step_loss: ``step_loss(y_t [o], target_t) -> scalar``.
      carry: initial carry (None: ``cell.initial_carry(params)``).
      remat: checkpoint the unroll (see :func:`rnnjax.unroll`).

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.ElmanCell(4)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> mse = lambda y, target: jnp.sum((y - target) ** 2)
        >>> rj.train.sequence_loss(cell, params, jnp.zeros((5, 2)), jnp.zeros((5, 4)), mse).shape
        ()
    """
    _, ys = unroll(cell, params, xs, carry, remat=remat)
    return _sum_step_losses(step_loss, ys, targets)


def bptt_grad(cell: Cell, params: Params, xs: Array, targets, step_loss: StepLoss, *, carry=None, remat=False):
    """Backpropagation through time: ``jax.value_and_grad`` of :func:`sequence_loss`.

    Returns:
      ``(loss, grads)`` with ``grads`` shaped like ``params``.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.ElmanCell(4)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> mse = lambda y, target: jnp.sum((y - target) ** 2)
        >>> loss, grads = rj.train.bptt_grad(cell, params, jnp.ones((5, 2)), jnp.zeros((5, 4)), mse)
        >>> grads.w_h.shape
        (4, 4)
    """
    return jax.value_and_grad(lambda p: sequence_loss(cell, p, xs, targets, step_loss, carry=carry, remat=remat))(
        params
    )


def truncated_bptt_grad(
    cell: Cell,
    params: Params,
    xs: Array,
    targets,
    step_loss: StepLoss,
    *,
    k1: int,
    k2: int | None = None,
    carry: Carry | None = None,
):
    """Truncated BPTT(k1, k2) (Williams & Peng 1990) over one stream, gradients summed.

    Every ``k1`` steps the losses of those ``k1`` steps are backpropagated through the last
    ``k2 >= k1`` steps; the carry entering each backpropagation window is a constant. With
    ``k1 = k2 = t`` this is exactly BPTT; shorter windows drop the long-range terms.

    Args:
      cell, params, xs, targets, step_loss: as in :func:`sequence_loss`; ``t`` must be a multiple of ``k1``.
      k1: steps between gradient computations.
      k2: steps each gradient looks back (default ``k1``).
      carry: initial carry.

    Returns:
      ``(loss, grads, carry)``: the summed loss over all steps, the summed truncated
      gradient, and the carry after the last step.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.ElmanCell(4)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> mse = lambda y, target: jnp.sum((y - target) ** 2)
        >>> xs, targets = jnp.ones((12, 2)), jnp.zeros((12, 4))
        >>> loss, grads, carry = rj.train.truncated_bptt_grad(cell, params, xs, targets, mse, k1=4, k2=6)
        >>> grads.w_i.shape
        (2, 4)

    References:
      Williams & Peng, "An efficient gradient-based algorithm for on-line training of
      recurrent network trajectories", Neural Computation 1990.
    """
    xs = _checks.sequence(xs, cell.input_size(params), "xs")
    num_steps = xs.shape[0]
    k2 = k1 if k2 is None else k2
    _checks.positive_int(k1, "k1")
    if not isinstance(k2, int) or k2 < k1:
        raise ValueError(f"k2: expected an integer >= k1 = {k1}, got {k2!r}")
    if num_steps == 0 or num_steps % k1:
        raise ValueError(f"xs: expected a positive number of steps divisible by k1 = {k1}, got {num_steps}")

    def first_carry(p):
        return cell.initial_carry(p) if carry is None else carry

    # 1) forward pass without gradients: the carry before every step
    def forward(c, x):
        return cell.step(params, c, x)[0], c

    last_carry, carries_before = lax.scan(forward, first_carry(params), xs)
    carries_before = lax.stop_gradient(carries_before)

    # 2) one backpropagation window of k2 steps per k1 steps; steps before t = 0 are padding
    pad = k2 - k1
    xs_padded = jnp.pad(xs, ((pad, 0), (0, 0)))
    targets_padded = jax.tree_util.tree_map(lambda a: jnp.pad(a, [(pad, 0)] + [(0, 0)] * (a.ndim - 1)), targets)

    def window_loss(p, end):
        start = end - k2  # may be negative: then the window starts at t = 0 from the initial carry
        stored = jax.tree_util.tree_map(lambda c: c[jnp.maximum(start, 0)], carries_before)
        start_carry = jax.tree_util.tree_map(lambda a, b: jnp.where(start <= 0, a, b), first_carry(p), stored)
        xs_w = lax.dynamic_slice_in_dim(xs_padded, end - k1, k2)  # padded index = t + pad
        targets_w = jax.tree_util.tree_map(lambda a: lax.dynamic_slice_in_dim(a, end - k1, k2), targets_padded)

        def body(c, inp):
            x, target, t = inp
            new_c, y = cell.step(p, c, x)
            valid = t >= 0
            new_c = jax.tree_util.tree_map(lambda n, o: jnp.where(valid, n, o), new_c, c)
            counted = t >= end - k1  # the loss of the last k1 steps only
            return new_c, jnp.where(counted, step_loss(y, target), 0.0)

        ts = start + jnp.arange(k2)
        _, losses = lax.scan(body, start_carry, (xs_w, targets_w, ts))
        return jnp.sum(losses)

    def accumulate(total, end):
        loss, grads = jax.value_and_grad(window_loss)(params, end)
        return jax.tree_util.tree_map(lambda a, b: a + b.astype(a.dtype), total, (loss, grads)), None

    loss_dtype = jax.eval_shape(window_loss, params, k1).dtype
    zeros = (jnp.zeros((), loss_dtype), jax.tree_util.tree_map(jnp.zeros_like, params))
    ends = k1 * (1 + jnp.arange(num_steps // k1))
    (loss, grads), _ = lax.scan(accumulate, zeros, ends)
    return loss, grads, last_carry


def rtrl_grad(cell: Cell, params: Params, xs: Array, targets, step_loss: StepLoss, *, carry: Carry | None = None):
    """Real-time recurrent learning: the gradient of :func:`sequence_loss` in forward mode, online.

    Carries the sensitivity ``S_t = d carry_t / d params`` forward with the step's Jacobians
    (``jax.jacfwd``)::

        S_t = (d carry_t / d carry_{t-1}) S_{t-1} + d carry_t / d params
        g  += dl_t/dy_t ((d y_t / d carry_{t-1}) S_{t-1} + d y_t / d params)

    so the gradient is known after every step, with no backward pass, at a cost of
    ``O(|carry| |params|)`` memory and ``O(|carry|^2 |params|)`` time per step (for small
    networks; equal to BPTT's gradient up to rounding).

    Args:
      cell, params, xs, targets, step_loss, carry: as in :func:`sequence_loss`.

    Returns:
      ``(loss, grads)`` shaped like ``params``.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.ElmanCell(3)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> mse = lambda y, target: jnp.sum((y - target) ** 2)
        >>> xs, targets = jnp.ones((6, 2)), jnp.zeros((6, 3))
        >>> loss, grads = rj.train.rtrl_grad(cell, params, xs, targets, mse)
        >>> bptt_loss, bptt_grads = rj.train.bptt_grad(cell, params, xs, targets, mse)
        >>> bool(jnp.allclose(grads.w_h, bptt_grads.w_h, atol=1e-5))
        True

    References:
      Williams & Zipser, "A learning algorithm for continually running fully recurrent
      neural networks", Neural Computation 1989.
    """
    xs = _checks.sequence(xs, cell.input_size(params), "xs")
    theta, unravel_params = ravel_pytree(params)
    carry0 = cell.initial_carry(params) if carry is None else carry
    c0, unravel_carry = ravel_pytree(carry0)

    def flat_step(theta, c, x):
        new_carry, y = cell.step(unravel_params(theta), unravel_carry(c), x)
        return ravel_pytree(new_carry)[0], y

    jacobians = jax.jacfwd(flat_step, argnums=(0, 1))

    def body(state, inp):
        c, sensitivity, loss, grad = state
        x, target = inp
        (dc_dtheta, dc_dc), (dy_dtheta, dy_dc) = jacobians(theta, c, x)
        new_c, y = flat_step(theta, c, x)
        step_value, dl_dy = jax.value_and_grad(step_loss)(y, target)
        dy_total = jnp.tensordot(dy_dc, sensitivity, axes=1) + dy_dtheta  # [o..., n_params]
        grad = grad + jnp.tensordot(dl_dy, dy_total, axes=dl_dy.ndim)
        sensitivity = dc_dc @ sensitivity + dc_dtheta
        return (new_c, sensitivity, loss + step_value, grad), None

    # the initial carry may depend on params (a learned carry0): its sensitivity seeds S_0
    sensitivity0 = jax.jacfwd(lambda t: ravel_pytree(cell.initial_carry(unravel_params(t)))[0])(theta)
    if carry is not None:
        sensitivity0 = jnp.zeros_like(sensitivity0)
    init = (c0, sensitivity0, jnp.zeros((), theta.dtype), jnp.zeros_like(theta))
    (_, _, loss, grad), _ = lax.scan(body, init, (xs, targets))
    return loss, unravel_params(grad)


# --- diagnostics -------------------------------------------------------------------------------


def carry_gradient_norms(cell: Cell, params: Params, xs: Array, loss_fn: Callable, *, carry: Carry | None = None):
    """``||dL/dcarry_t||`` for every step t: how the gradient vanishes or explodes through time.

    ``carry_t`` is the carry that step ``t`` reads (``carry_0`` is the initial carry). A zero
    perturbation is added to it; the gradient with respect to the perturbation is the
    gradient with respect to that carry, through every later step.

    Args:
      cell, params, xs, carry: as in :func:`rnnjax.unroll`.
      loss_fn: ``loss_fn(final_carry, ys [t, o]) -> scalar``.

    Returns:
      ``[t]`` global norms over the carry's leaves.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.ElmanCell(8)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> params = params._replace(w_h=0.5 * params.w_h)   # contracting recurrent weights
        >>> loss_fn = lambda carry, ys: jnp.sum(ys[-1])      # a loss on the last step only
        >>> norms = rj.train.carry_gradient_norms(cell, params, jnp.ones((20, 2)), loss_fn)
        >>> norms.shape, bool(norms[0] < 1e-3 * norms[-1])   # the gradient vanishes going back
        ((20,), True)
    """
    xs = _checks.sequence(xs, cell.input_size(params), "xs")
    carry = cell.initial_carry(params) if carry is None else carry
    perturbations = jax.tree_util.tree_map(lambda c: jnp.zeros((xs.shape[0], *c.shape), c.dtype), carry)

    def loss_of_perturbations(perturbations):
        def body(c, inp):
            x, delta = inp
            return cell.step(params, jax.tree_util.tree_map(jnp.add, c, delta), x)

        final, ys = lax.scan(body, carry, (xs, perturbations))
        return loss_fn(final, ys)

    grads = jax.grad(loss_of_perturbations)(perturbations)
    squares = [jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1) for g in jax.tree_util.tree_leaves(grads)]
    return jnp.sqrt(sum(squares))


def jacobian_spectral_radius(cell: Cell, params: Params, xs: Array, *, carry: Carry | None = None) -> Array:
    """Spectral radius of the recurrent Jacobian ``d carry_t / d carry_{t-1}`` at every step.

    Values above 1 along a trajectory let gradients explode; below 1 they vanish.

    Args:
      cell, params, xs, carry: as in :func:`rnnjax.unroll`.

    Returns:
      ``[t]``: the largest eigenvalue modulus of each step's Jacobian.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.ElmanCell(4)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> params = params._replace(w_h=0.5 * jnp.eye(4))    # h' = tanh(... + 0.5 h)
        >>> rho = rj.train.jacobian_spectral_radius(cell, params, jnp.zeros((3, 2)))
        >>> tuple(round(float(r), 3) for r in rho)
        (0.5, 0.5, 0.5)
    """
    xs = _checks.sequence(xs, cell.input_size(params), "xs")
    carry = cell.initial_carry(params) if carry is None else carry
    c0, unravel_carry = ravel_pytree(carry)

    def flat_step(c, x):
        return ravel_pytree(cell.step(params, unravel_carry(c), x)[0])[0]

    def body(c, x):
        jac = jax.jacfwd(flat_step)(c, x)
        eigenvalues = jnp.linalg.eigvals(jac)  # complex; computed on the CPU
        return flat_step(c, x), jnp.max(jnp.abs(eigenvalues))

    return lax.scan(body, c0, xs)[1]


# --- the fit loop ------------------------------------------------------------------------------


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


def _metrics_lines_until(path: Path, step: int) -> list[str]:
    """The JSONL records of ``path`` up to ``step``; a torn or blank last line is dropped with a warning."""
    lines = path.read_text().splitlines()
    kept = []
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
        if record["step"] <= step:
            kept.append(line)
    return kept


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

    _checks.positive_int(num_steps, "num_steps")
    _checks.positive_int(log_every, "log_every")
    _checks.positive_int(max_to_keep, "max_to_keep")
    _checks.non_negative_int(checkpoint_every, "checkpoint_every")
    _checks.non_negative_int(eval_every, "eval_every")
    if resume and checkpoint_dir is None:
        raise ValueError("resume: needs a checkpoint_dir to resume from, got checkpoint_dir=None")
    if metrics_path is not None:
        metrics_path = Path(metrics_path)
        if not resume and metrics_path.exists() and metrics_path.stat().st_size:
            raise ValueError(
                f"metrics_path: {metrics_path} already holds the records of an earlier run; pass resume=True "
                "to continue that run, or another metrics_path (nothing was written)"
            )
    key_data = jax.random.key_data(key)
    start, history = 0, []
    manager = None
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        if checkpoint_dir.exists() and not checkpoint_dir.is_dir():
            raise ValueError(f"checkpoint_dir: expected a directory, got the file {checkpoint_dir}")
        manager = _checkpoint_manager(checkpoint_dir, max_to_keep)
        try:
            start = _start_step(manager, checkpoint_dir, num_steps, resume)
            if start:
                params, opt_state, start = _restore(manager, start, checkpoint_dir, params, opt_state, key_data)
        except BaseException:
            manager.close()
            raise
        if not is_deterministic():
            warnings.warn(
                f"fit: {jax.default_backend()} kernels are not deterministic, so a run resumed from "
                f"{checkpoint_dir} will match an uninterrupted one only to rounding; for bit-identical "
                f"resumes start the process with XLA_FLAGS={DETERMINISTIC_XLA_FLAG} "
                "(rnnjax.train.deterministic_xla_flags)",
                stacklevel=2,
            )

    metrics_file = None
    if metrics_path is not None:
        kept = _metrics_lines_until(metrics_path, start) if resume and metrics_path.exists() else []
        metrics_path.write_text("".join(line + "\n" for line in kept))
        metrics_file = metrics_path.open("a")

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
                    kept = "" if manager is None else f"; the latest checkpoint is {_latest(manager, checkpoint_dir)}"
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

    bar = tqdm(total=num_steps, initial=start, disable=not progress, unit="step")
    clock = time.perf_counter()
    try:
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
    finally:
        bar.close()
        if manager is not None:
            manager.wait_until_finished()
            manager.close()
        if metrics_file is not None:
            metrics_file.close()
    return FitResult(params, opt_state, num_steps, history)
