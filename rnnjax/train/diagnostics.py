"""Diagnostics of vanishing and exploding gradients: carry-gradient norms per step, the Jacobian's spectral radius."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from rnnjax._src import checks, masks
from rnnjax.typing import Array, Carry, Cell, Params


def carry_gradient_norms(
    cell: Cell,
    params: Params,
    xs: Array,
    loss_fn: Callable,
    *,
    carry: Carry | None = None,
    length: int | Array | None = None,
):
    """``||dL/dcarry_t||`` for every step t: how the gradient vanishes or explodes through time.

    ``carry_t`` is the carry that step ``t`` reads (``carry_0`` is the initial carry). A zero
    perturbation is added to it; the gradient with respect to the perturbation is the
    gradient with respect to that carry, through every later step.

    With ``length = n`` the steps ``>= n`` are padding, as in :func:`rnnjax.unroll`: they leave
    the carry unchanged and output zeros, and no step reads a carry there, so their norms are 0.
    ``loss_fn`` sees the carry after step ``n - 1`` and ``ys`` with zero rows past ``n``; when it
    ignores those rows (a sum of per-step terms that are 0 at a zero output, or ``ys[n - 1]``),
    the first ``n`` norms are those of the unpadded first ``n`` steps.

    Args:
      cell, params, xs, carry, length: as in :func:`rnnjax.unroll`.
      loss_fn: ``loss_fn(final_carry, ys [t, o]) -> scalar``.

    Returns:
      ``[t]`` global norms over the carry's leaves (0 at the steps ``>= length``).

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.ElmanCell(8)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> params = params._replace(w_h=0.5 * params.w_h)   # contracting recurrent weights
        >>> loss_fn = lambda carry, ys: jnp.sum(carry.h)     # a loss on the final carry only
        >>> norms = rj.train.carry_gradient_norms(cell, params, jnp.ones((20, 2)), loss_fn)
        >>> norms.shape, bool(norms[0] < 1e-3 * norms[-1])   # the gradient vanishes going back
        ((20,), True)
        >>> padded = rj.train.carry_gradient_norms(cell, params, jnp.ones((25, 2)), loss_fn, length=20)
        >>> bool(jnp.allclose(padded[:20], norms)), float(padded[20:].max())
        (True, 0.0)
    """
    xs = checks.sequence(xs, cell.input_size(params), "xs")
    num_steps = xs.shape[0]
    valid = masks.valid_mask(checks.length(length, num_steps), num_steps)
    expected = cell.initial_carry(params)
    if carry is None:
        carry = expected
    else:
        checks.same_structure(carry, expected, "carry")
    perturbations = jax.tree_util.tree_map(lambda c: jnp.zeros((num_steps, *c.shape), c.dtype), carry)

    def loss_of_perturbations(perturbations):
        def body(c, inp):
            x, delta, ok = inp
            new_c, y = cell.step(params, jax.tree_util.tree_map(jnp.add, c, delta), x)
            new_c = jax.tree_util.tree_map(lambda n, o: jnp.where(ok, n, o), new_c, c)
            return new_c, jnp.where(ok, y, jnp.zeros_like(y))

        final, ys = lax.scan(body, carry, (xs, perturbations, valid))
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
