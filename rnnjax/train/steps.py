"""Train steps: one jitted, pure update from a loss and an optax optimizer."""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax

from rnnjax._src import checks


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

    @checks.checked_jit
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

    @checks.checked_jit
    def step(params, opt_state, carry, batch, key):
        (loss, new_carry), grads = grad_fn(params, lax.stop_gradient(carry), batch, key)
        params, opt_state, metrics = _update(optimizer, clip_norm, skip_nonfinite, loss, grads, opt_state, params)
        if skip_nonfinite:
            new_carry = jax.tree.map(lambda new, old: jnp.where(metrics["skipped"], old, new), new_carry, carry)
        return params, opt_state, new_carry, {"loss": loss, **metrics}

    return step
