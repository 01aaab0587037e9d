"""Gradients through time: BPTT, truncated BPTT and RTRL of the same summed per-step loss.

Conventions: ``step_loss(y_t, target_t) -> scalar`` is the per-step loss of a cell's output,
and the sequence loss is its sum over steps (:func:`sequence_loss`). BPTT, truncated BPTT with
``k1 = k2 = t`` and RTRL all compute the gradient of that same quantity, which the tests check
against each other.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from rnnjax._src import checks
from rnnjax.recurrence import unroll
from rnnjax.typing import Array, Carry, Cell, Params

StepLoss = Callable[[Array, Any], Array]


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
    xs = checks.sequence(xs, cell.input_size(params), "xs")
    num_steps = xs.shape[0]
    k2 = k1 if k2 is None else k2
    checks.positive_int(k1, "k1")
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
    xs = checks.sequence(xs, cell.input_size(params), "xs")
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
