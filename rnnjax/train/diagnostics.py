"""Diagnostics of vanishing and exploding gradients: carry-gradient norms per step, the Jacobian's spectral radius."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from rnnjax._src import checks
from rnnjax.typing import Array, Carry, Cell, Params


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
    xs = checks.sequence(xs, cell.input_size(params), "xs")
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
    xs = checks.sequence(xs, cell.input_size(params), "xs")
    carry = cell.initial_carry(params) if carry is None else carry
    c0, unravel_carry = ravel_pytree(carry)

    def flat_step(c, x):
        return ravel_pytree(cell.step(params, unravel_carry(c), x)[0])[0]

    def body(c, x):
        jac = jax.jacfwd(flat_step)(c, x)
        eigenvalues = jnp.linalg.eigvals(jac)  # complex; computed on the CPU
        return flat_step(c, x), jnp.max(jnp.abs(eigenvalues))

    return lax.scan(body, c0, xs)[1]
