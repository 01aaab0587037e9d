"""Gradients through time: BPTT, truncated BPTT and RTRL of the same summed per-step loss.

Conventions: ``step_loss(y_t, target_t) -> scalar`` is the per-step loss of a cell's output,
and the sequence loss is its sum over steps (:func:`sequence_loss`). BPTT, truncated BPTT with
``k1 = k2 = t`` and RTRL all compute the gradient of that same quantity, which the tests check
against each other.

Padding: every function takes ``length``, the number of valid steps ``n`` of a padded sequence
(as :func:`rnnjax.unroll`). Steps ``>= n`` leave the carry unchanged and add no loss, and the loss
is a sum over the valid steps, not a mean: a sequence padded from ``n`` to ``t`` steps gives the
loss and the gradient of its first ``n`` steps alone. For a mean per valid step divide by ``n``
(over a batch, by the total of the lengths).
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from rnnjax._src import checks, masks, numerics
from rnnjax.recurrence import unroll
from rnnjax.typing import Array, Carry, Cell, Params

StepLoss = Callable[[Array, Any], Array]


def _sum_step_losses(step_loss: StepLoss, ys: Array, targets, length: Array | None) -> Array:
    """``sum_{t < length} step_loss(y_t, target_t)``."""
    losses = jax.vmap(step_loss)(ys, targets)
    if length is None:
        return jnp.sum(losses)
    return jnp.sum(jnp.where(masks.valid_mask(length, losses.shape[0]), losses, 0.0))


def _where(valid: Array, new, old):
    """``new`` where ``valid`` (a boolean scalar), else ``old``: a pytree select."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(valid, a, b), new, old)


def _check_targets(targets, num_steps: int) -> None:
    """Every leaf of ``targets`` must have the leading axis ``t`` of ``xs``."""
    leaves = jax.tree_util.tree_leaves(targets)
    if not leaves or any(jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != num_steps for leaf in leaves):
        shapes = jax.tree_util.tree_map(jnp.shape, targets)
        raise ValueError(f"targets: expected arrays with the leading axis t = {num_steps} of xs, got shapes {shapes}")


def _checked_carry(cell: Cell, params: Params, carry: Carry | None) -> Carry:
    """``carry``, or the cell's initial carry if None; one of another structure is an error naming ``carry``."""
    expected = cell.initial_carry(params)
    if carry is None:
        return expected
    checks.same_structure(carry, expected, "carry")
    return carry


def sequence_loss(
    cell: Cell,
    params: Params,
    xs: Array,
    targets,
    step_loss: StepLoss,
    *,
    carry: Carry | None = None,
    length: int | Array | None = None,
    remat=False,
) -> Array:
    """``sum_{t < n} step_loss(y_t, target_t)`` over one sequence: the quantity all gradients here differentiate.

    Args:
      cell: the cell.
      params: its params.
      xs: inputs ``[t, f]``.
      targets: a pytree of arrays with leading axis ``t``.
      step_loss: ``step_loss(y_t [o], target_t) -> scalar``.
      carry: initial carry (None: ``cell.initial_carry(params)``).
      length: the number of valid steps ``n``, a scalar in ``[0, t]`` (None: ``t``); the steps
        ``>= n`` are padding, which adds no loss (a sum, not a mean: see the module docstring).
      remat: checkpoint the unroll (see :func:`rnnjax.unroll`).

    Returns:
      The loss, a scalar.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.ElmanCell(4)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> mse = lambda y, target: jnp.sum((y - target) ** 2)
        >>> xs, targets = jnp.ones((5, 2)), jnp.ones((5, 4))
        >>> loss = rj.train.sequence_loss(cell, params, xs, targets, mse, length=3)
        >>> bool(jnp.allclose(loss, rj.train.sequence_loss(cell, params, xs[:3], targets[:3], mse)))
        True
    """
    xs = checks.sequence(xs, cell.input_size(params), "xs")
    _check_targets(targets, xs.shape[0])
    length = checks.length(length, xs.shape[0])
    _, ys = unroll(cell, params, xs, carry, length=length, remat=remat)
    return _sum_step_losses(step_loss, ys, targets, length)


def bptt_grad(
    cell: Cell,
    params: Params,
    xs: Array,
    targets,
    step_loss: StepLoss,
    *,
    carry: Carry | None = None,
    length: int | Array | None = None,
    remat=False,
):
    """Backpropagation through time: ``jax.value_and_grad`` of :func:`sequence_loss`.

    Args:
      cell, params, xs, targets, step_loss, carry, length, remat: as in :func:`sequence_loss`.

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

    def loss_of(p):
        return sequence_loss(cell, p, xs, targets, step_loss, carry=carry, length=length, remat=remat)

    return jax.value_and_grad(loss_of)(params)


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
    length: int | Array | None = None,
):
    """Truncated BPTT(k1, k2) (Williams & Peng 1990) over one stream, gradients summed.

    Every ``k1`` steps the losses of those ``k1`` steps are backpropagated through the last
    ``k2 >= k1`` steps; the carry entering each backpropagation window is a constant. Window
    ``i`` counts the losses of steps ``[i k1, (i + 1) k1)`` and backpropagates them from step
    ``(i + 1) k1 - k2`` (from ``t = 0`` and the initial carry if that is negative). When ``n``
    is not a multiple of ``k1`` the last window counts the ``n mod k1`` remaining steps and
    starts where it would for ``k1`` of them: the stream is as if padded to a multiple of
    ``k1`` with steps that add no loss. With ``k1 = k2 >= n`` this is exactly BPTT; shorter
    windows drop the long-range terms.

    Args:
      cell, params, xs, targets, step_loss: as in :func:`sequence_loss`; any number of steps ``t``.
      k1: steps between gradient computations.
      k2: steps each gradient looks back (default ``k1``).
      carry: initial carry.
      length: the number of valid steps ``n`` in ``[0, t]`` (None: ``t``); steps ``>= n`` leave
        the carry unchanged and add no loss, so a padded stream gives the loss and gradient of
        its first ``n`` steps alone.

    Returns:
      ``(loss, grads, carry)``: the summed loss over the valid steps, the summed truncated
      gradient, and the carry after the last valid step.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.ElmanCell(4)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> mse = lambda y, target: jnp.sum((y - target) ** 2)
        >>> xs, targets = jnp.ones((14, 2)), jnp.zeros((14, 4))   # 3 windows of 4 steps and one of 2
        >>> loss, grads, carry = rj.train.truncated_bptt_grad(cell, params, xs, targets, mse, k1=4, k2=6)
        >>> grads.w_i.shape
        (2, 4)

    References:
      Williams & Peng, "An efficient gradient-based algorithm for on-line training of
      recurrent network trajectories", Neural Computation 1990.
    """
    xs = checks.sequence(xs, cell.input_size(params), "xs")
    num_steps = xs.shape[0]
    _check_targets(targets, num_steps)
    length = checks.length(length, num_steps)
    k2 = k1 if k2 is None else k2
    checks.positive_int(k1, "k1")
    if isinstance(k2, bool) or not isinstance(k2, int) or k2 < k1:
        raise ValueError(f"k2: expected an integer >= k1 = {k1}, got {k2!r}")
    _checked_carry(cell, params, carry)
    num_valid = num_steps if length is None else length

    def first_carry(p):
        return cell.initial_carry(p) if carry is None else carry

    if num_steps == 0:
        loss_dtype = jax.eval_shape(lambda p: sequence_loss(cell, p, xs, targets, step_loss, carry=carry), params)
        return jnp.zeros((), loss_dtype.dtype), jax.tree_util.tree_map(jnp.zeros_like, params), first_carry(params)

    # params narrower than the computation (bfloat16 params, float32 compute), cast once: each window's
    # gradient is then summed over its steps, and the windows' over the stream, in float32, as in unroll
    wide = numerics.params_for_the_loop(cell, params, xs.dtype)

    # 1) forward pass without gradients: the carry before every step (kept past the valid steps)
    def forward(c, inp):
        x, t = inp
        return _where(t < num_valid, cell.step(wide, c, x)[0], c), c

    steps = jnp.arange(num_steps, dtype=jnp.int32)  # int32 like length, also under jax_enable_x64
    last_carry, carries_before = lax.scan(forward, first_carry(wide), (xs, steps))
    carries_before = lax.stop_gradient(carries_before)

    # 2) one backpropagation window of k2 steps per k1 steps: the stream padded with k2 - k1 steps
    # before t = 0 and to a multiple of k1 after its end; padded steps keep the carry and count no loss
    num_windows = -(-num_steps // k1)

    def pad(a):
        return jnp.pad(a, [(k2 - k1, num_windows * k1 - num_steps)] + [(0, 0)] * (jnp.ndim(a) - 1))

    xs_padded, targets_padded = pad(xs), jax.tree_util.tree_map(pad, targets)

    def window_loss(p, end):
        start = end - k2  # may be negative: then the window starts at t = 0 from the initial carry
        stored = jax.tree_util.tree_map(lambda c: c[jnp.maximum(start, 0)], carries_before)
        start_carry = _where(start <= 0, first_carry(p), stored)
        xs_w = lax.dynamic_slice_in_dim(xs_padded, end - k1, k2)  # padded index = t + k2 - k1
        targets_w = jax.tree_util.tree_map(lambda a: lax.dynamic_slice_in_dim(a, end - k1, k2), targets_padded)

        def body(c, inp):
            x, target, t = inp
            new_c, y = cell.step(p, c, x)
            valid = (t >= 0) & (t < num_valid)
            counted = valid & (t >= end - k1)  # the loss of the window's last k1 steps only
            return _where(valid, new_c, c), jnp.where(counted, step_loss(y, target), 0.0)

        ts = start + jnp.arange(k2, dtype=jnp.int32)
        _, losses = lax.scan(body, start_carry, (xs_w, targets_w, ts))
        return jnp.sum(losses)

    def accumulate(total, end):
        loss, grads = jax.value_and_grad(window_loss)(wide, end)
        return jax.tree_util.tree_map(lambda a, b: a + b.astype(a.dtype), total, (loss, grads)), None

    loss_dtype = jax.eval_shape(window_loss, wide, k1).dtype
    zeros = (jnp.zeros((), loss_dtype), jax.tree_util.tree_map(jnp.zeros_like, wide))
    ends = k1 * (1 + jnp.arange(num_windows, dtype=jnp.int32))
    (loss, grads), _ = lax.scan(accumulate, zeros, ends)
    return loss, jax.tree_util.tree_map(lambda g, p: g.astype(p.dtype), grads, params), last_carry


def rtrl_grad(
    cell: Cell,
    params: Params,
    xs: Array,
    targets,
    step_loss: StepLoss,
    *,
    carry: Carry | None = None,
    length: int | Array | None = None,
):
    """Real-time recurrent learning: the gradient of :func:`sequence_loss` in forward mode, online.

    Carries the sensitivity ``S_t = d carry_t / d params`` forward with the step's Jacobians
    (``jax.jacfwd``)::

        S_t = (d carry_t / d carry_{t-1}) S_{t-1} + d carry_t / d params
        g  += dl_t/dy_t ((d y_t / d carry_{t-1}) S_{t-1} + d y_t / d params)

    so the gradient is known after every step, with no backward pass, at a cost of
    ``O(|carry| |params|)`` memory and ``O(|carry|^2 |params|)`` time per step (for small
    networks; equal to BPTT's gradient up to rounding). Steps ``>= length`` change nothing
    (carry, sensitivity, loss and gradient stay as they were).

    Args:
      cell, params, xs, targets, step_loss, carry, length: as in :func:`sequence_loss`.

    Returns:
      ``(loss, grads)`` shaped like ``params``.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.ElmanCell(3)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> mse = lambda y, target: jnp.sum((y - target) ** 2)
        >>> xs, targets = jnp.ones((6, 2)), jnp.zeros((6, 3))
        >>> loss, grads = rj.train.rtrl_grad(cell, params, xs, targets, mse, length=4)
        >>> bptt_loss, bptt_grads = rj.train.bptt_grad(cell, params, xs, targets, mse, length=4)
        >>> bool(jnp.allclose(grads.w_h, bptt_grads.w_h, atol=1e-5))
        True

    References:
      Williams & Zipser, "A learning algorithm for continually running fully recurrent
      neural networks", Neural Computation 1989.
    """
    xs = checks.sequence(xs, cell.input_size(params), "xs")
    _check_targets(targets, xs.shape[0])
    length = checks.length(length, xs.shape[0])
    theta, unravel_params = ravel_pytree(params)
    c0, unravel_carry = ravel_pytree(_checked_carry(cell, params, carry))

    def flat_step(theta, c, x):
        new_carry, y = cell.step(unravel_params(theta), unravel_carry(c), x)
        return ravel_pytree(new_carry)[0], y

    jacobians = jax.jacfwd(flat_step, argnums=(0, 1))

    def body(state, inp):
        c, sensitivity, loss, grad = state
        x, target, valid = inp
        (dc_dtheta, dc_dc), (dy_dtheta, dy_dc) = jacobians(theta, c, x)
        new_c, y = flat_step(theta, c, x)
        step_value, dl_dy = jax.value_and_grad(step_loss)(y, target)
        dy_total = jnp.tensordot(dy_dc, sensitivity, axes=1) + dy_dtheta  # [o..., n_params]
        new_grad = grad + jnp.tensordot(dl_dy, dy_total, axes=dl_dy.ndim)
        new_sensitivity = dc_dc @ sensitivity + dc_dtheta
        return _where(valid, (new_c, new_sensitivity, loss + step_value, new_grad), state), None

    # the initial carry may depend on params (a learned carry0): its sensitivity seeds S_0
    sensitivity0 = jax.jacfwd(lambda t: ravel_pytree(cell.initial_carry(unravel_params(t)))[0])(theta)
    if carry is not None:
        sensitivity0 = jnp.zeros_like(sensitivity0)
    init = (c0, sensitivity0, jnp.zeros((), theta.dtype), jnp.zeros_like(theta))
    valid = masks.valid_mask(length, xs.shape[0])
    (_, _, loss, grad), _ = lax.scan(body, init, (xs, targets, valid))
    return loss, unravel_params(grad)
