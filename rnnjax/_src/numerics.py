"""Numerics shared by the cells and heads: activations, dtype promotion, precision, initialisation, matmuls."""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from rnnjax.typing import Array, ComputeDtypeCell, PRNGKey, Shape

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda x: x,
}

# Keras' defaults: Glorot-uniform input kernels, orthogonal recurrent kernels.
# Module-level objects, so two cells built with the defaults compare (and hash) equal.
GLOROT_UNIFORM = jax.nn.initializers.glorot_uniform()
ORTHOGONAL = jax.nn.initializers.orthogonal()


def activation(fn: str | Callable, name: str = "activation") -> Callable[[Array], Array]:
    if callable(fn):
        return fn
    if fn not in ACTIVATIONS:
        raise ValueError(f"{name}: expected one of {sorted(ACTIVATIONS)} or a callable, got {fn!r}")
    return ACTIVATIONS[fn]


def promote(a, b) -> jnp.dtype:
    # The standard promotion lattice, also when the user runs with strict promotion.
    with jax.numpy_dtype_promotion("standard"):
        return jnp.promote_types(a, b)


def precision(value: Any) -> Any:
    """``value`` as one canonical, hashable matmul precision (equal settings hash equal)."""
    if value is None or isinstance(value, lax.Precision | lax.DotAlgorithmPreset):
        return value
    if isinstance(value, str):
        try:
            return lax.Precision(value)
        except ValueError:
            pass
    raise ValueError(
        "precision: expected None, a jax.lax.Precision, a jax.lax.DotAlgorithmPreset or one of "
        f"'default', 'high', 'highest', got {value!r}"
    )


def initialized(initializer: Callable, key: PRNGKey, shape: Shape, dtype) -> Array:
    """``initializer`` run in at least float32, then cast to ``dtype``.

    The orthogonal initializer's QR has no bfloat16/float16 kernel, and 16-bit sampling
    would coarsen every initializer's distribution.
    """
    return initializer(key, shape, promote(dtype, jnp.float32)).astype(dtype)


def accumulation_dtype(dtype) -> jnp.dtype:
    """The dtype matmuls accumulate in and gates are computed in: float32 for 16-bit floats, else ``dtype``.

    Example:
        >>> accumulation_dtype(jnp.bfloat16), accumulation_dtype(jnp.float32)
        (dtype('float32'), dtype('float32'))
    """
    dtype = jnp.dtype(dtype)
    return jnp.dtype(jnp.float32) if dtype.itemsize < 4 else dtype


def matmul(x: Array, w: Array, dtype, precision=None) -> Array:
    """``x @ w`` on operands cast to ``dtype``, returned in ``accumulation_dtype(dtype)``.

    With ``dtype=bfloat16`` the matmuls of the backward pass run in bfloat16 too (bfloat16 operands and
    results, which XLA accumulates in float32 on GPUs and TPUs): autodiff of a float32-returning matmul
    would hand them float32 cotangents and so upcast both operands. float16 keeps its backward in
    float32, where small gradients cannot underflow (rnnjax does no loss scaling).
    """
    if jnp.dtype(dtype) == jnp.bfloat16:
        return _bfloat16_matmul(x, w, precision)
    return jnp.matmul(
        x.astype(dtype), w.astype(dtype), precision=precision, preferred_element_type=accumulation_dtype(dtype)
    )


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _bfloat16_matmul(x: Array, w: Array, precision) -> Array:
    bf16 = jnp.bfloat16
    return jnp.matmul(x.astype(bf16), w.astype(bf16), precision=precision, preferred_element_type=jnp.float32)


@functools.partial(_bfloat16_matmul.defjvp, symbolic_zeros=True)
def _bfloat16_matmul_jvp(precision, primals, tangents):
    # The tangent (d x) w + x (d w) is computed in bfloat16, so its transpose, the backward pass, takes
    # bfloat16 cotangents: d x = g w^T and d w = x^T g are bfloat16 matmuls.
    x, w = primals
    dx, dw = tangents
    bf16 = jnp.bfloat16

    def product(a, b):
        return jnp.matmul(a.astype(bf16), b.astype(bf16), precision=precision, preferred_element_type=bf16)

    y = _bfloat16_matmul(x, w, precision)
    parts = [product(d, w) for d in [dx] if not isinstance(d, SymbolicZero)]
    parts += [product(x, d) for d in [dw] if not isinstance(d, SymbolicZero)]
    if not parts:
        return y, jnp.zeros_like(y)
    return y, sum(parts[1:], parts[0]).astype(y.dtype)


def matmul_weight_tangent(x: Array, dw: Array, dtype, precision=None) -> Array:
    """The tangent of ``matmul(x, w, dtype, precision)`` along ``dw``, a tangent of ``w``: what autodiff computes.

    ``matmul`` is linear in ``w``, so the tangent is the same at every ``w``; ``dw`` serves as the primal
    point too, and the primal product is unused (traced away).
    """
    return jax.jvp(lambda w: matmul(x, w, dtype, precision), (dw,), (dw,))[1]


def affine(x: Array, w: Array, b: Array | None, dtype, precision=None, out_dtype=None) -> Array:
    """``x @ w + b`` computed in ``dtype`` (accumulated in float32 for 16-bit ``dtype``), returned in
    ``out_dtype`` (default ``dtype``)."""
    y = matmul(x, w, dtype, precision)
    y = y if b is None else y + b.astype(y.dtype)
    return y.astype(out_dtype or dtype)


def compute_dtype(params, input_dtype=None, dtype=None) -> jnp.dtype:
    """The dtype a step computes in: ``dtype`` if set, else the params' promoted with the input's."""
    if dtype is not None:
        return jnp.dtype(dtype)
    param_dtype = jax.tree_util.tree_leaves(params)[0].dtype
    return param_dtype if input_dtype is None else promote(param_dtype, input_dtype)


def params_for_the_loop(cell, params, input_dtype):
    """``params`` narrower than the dtype ``cell`` computes in (bfloat16 params, float32 computation) cast to
    it once, before a time loop, instead of by every step's matmuls inside it.

    The values the steps see are the same. The gradient is not: autodiff sums a weight's gradient over the
    steps in the dtype the loop reads the weight in, so with the cast inside the loop the recurrent weight's
    gradient is a bfloat16 sum; with the cast before it, a float32 sum, rounded to bfloat16 once. Cells
    that are not a :class:`~rnnjax.typing.ComputeDtypeCell` (``StackedCell``: each layer has its own dtype)
    keep their params."""
    if not isinstance(cell, ComputeDtypeCell):
        return params
    dtype = compute_dtype(params, input_dtype, cell.dtype)

    def widened(p):
        narrower = jnp.issubdtype(p.dtype, jnp.floating) and jnp.dtype(p.dtype).itemsize < dtype.itemsize
        return p.astype(dtype) if narrower else p

    return jax.tree_util.tree_map(widened, params)
