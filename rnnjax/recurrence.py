"""``unroll``: run a cell over one sequence with :func:`jax.lax.scan`.

``jax.grad`` through ``unroll`` is backpropagation through time; ``jax.vmap`` over it
batches; ``remat=True`` checkpoints the time loop so BPTT memory grows as ``sqrt(t)``.

Two ways to run the same recurrence, chosen per backend unless ``hoist`` says:

- hoisted (``hoist=True``): ``cell.project`` once over the whole sequence (one large
  matmul), then a scan of ``cell.recur``. What GPUs and TPUs want.
- in the loop (``hoist=False``): a scan of ``cell.step``. On XLA:CPU an elementwise
  fusion that reads the scan's per-step slice of the projected inputs ran several times
  slower than the same math on a loop-invariant operand, so this is the CPU default.

Both give the same result (the tests run both on the CPU).
"""

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from rnnjax._src import checks, masks, numerics
from rnnjax.typing import (
    Array,
    Carry,
    Cell,
    LinearRecurrenceCell,
    NoisyCell,
    Params,
    PRNGKey,
    RecurrentWeightCell,
)

# lax.scan's unroll factor per backend, from measurements (docs/performance.md). On an
# NVIDIA H200, 32 was within 9% of the best factor in every measured row (LSTM and GRU at
# S, M and L, forward and training step) and 1.3-2.4x faster than 1; on the CPU every
# factor above 1 was slower. TPUs are not measured yet and take the GPU's factor.
UNROLL_FACTORS = {"cpu": 1, "gpu": 32, "tpu": 32}
# Whether unroll projects the whole sequence before the scan, per backend (the module docstring says why);
# another backend is hoisted, like the accelerators.
HOIST = {"cpu": False, "gpu": True, "tpu": True}
# Whether the hoisted path computes the recurrent weight's gradient after the backward loop, as one
# matmul over all steps and sequences, instead of one per step inside it (_scan_deferring_weight_gradient;
# same values). Off until it measures faster: on the CPU it did not beat this backend's default path
# (LSTM and GRU, S and M, 2026-12-04); on GPUs and TPUs it is not measured yet (benchmarks/gpu.py measures
# it). Another backend takes False.
DEFER_WEIGHT_GRADIENT = {"cpu": False, "gpu": False, "tpu": False}
# Whether the hoisted path runs an LSTM's or a GRU's whole time loop, and its backward loop, each in one
# fused Pallas kernel (rnnjax.kernels.supports: a plain LSTMCell or reset-after GRUCell computing in
# float32, hidden size a power of two up to 128; without training noise or zoneout, masked_output="zeros";
# reverse-mode derivatives only). Off until it measures faster: written for the launch-bound small sizes
# on GPUs, not run on one yet (benchmarks/gpu.py --sections fused measures it); on the CPU it runs in
# Pallas' interpret mode (for tests only); not written for TPUs. Another backend takes False.
FUSED_KERNEL = {"cpu": False, "gpu": False, "tpu": False}


def default_hoist(backend: str | None = None) -> bool:
    """Whether ``unroll(hoist=None)`` projects the whole sequence before the scan on ``backend``.

    True on GPU and TPU, False on CPU (see the module docstring).

    Example:
        >>> default_hoist("cpu"), default_hoist("gpu")
        (False, True)
    """
    return HOIST.get(backend or jax.default_backend(), True)


def default_unroll(num_steps: int, backend: str | None = None) -> int:
    """The scan unroll factor ``unroll(unroll=None)`` uses: the backend's measured factor, at most ``num_steps``.

    Example:
        >>> default_unroll(100, "cpu"), default_unroll(100, "gpu"), default_unroll(10, "gpu")
        (1, 32, 10)
    """
    factor = UNROLL_FACTORS.get(backend or jax.default_backend(), UNROLL_FACTORS["gpu"])
    return max(1, min(factor, num_steps))


def _masked(valid: Array | None, new, old):
    """``new`` where the step is valid, else ``old`` (a pytree select)."""
    if valid is None:
        return new
    return jax.tree_util.tree_map(lambda n, o: jnp.where(valid, n, o), new, old)


def _linear_step(params: Params, carry: Carry, coefficients: tuple[Array, Array]) -> tuple[Carry, Array]:
    """``h = a * h + b``: a linear-recurrence cell's step once its coefficients are known."""
    a, b = coefficients
    h = a * carry.h + b
    return type(carry)(h), h


def _scan(
    cell: Cell,
    params: Params,
    carry: Carry,
    xs: Array,
    valid: Array | None,
    reverse: bool,
    unroll: int,
    hoist: bool,
    last_output: Array | None = None,
    noise=None,
):
    """Scan ``cell`` over ``xs: [t, f]``; steps where ``valid`` is False keep the carry and emit zeros, or,
    given ``last_output`` (the output before the first step), repeat the last valid step's output.
    Returns ``(carry, ys)``, and with ``last_output`` ``((carry, last_output), ys)``. ``noise``: the
    sequence's training noise (``cell.sequence_noise``), its zoneout masks scanned with the inputs."""
    masking = {"valid": valid, "last_output": last_output, "noise": noise}
    loop = functools.partial(_loop, reverse=reverse, unroll=unroll)
    if not hoist:
        return loop(_without_factors(cell.step), params, carry, xs, **masking)[0]
    if isinstance(cell, LinearRecurrenceCell):
        # the gates see only the input: all of a_t, b_t at once, and the loop is one fused multiply-add
        coefficients = cell.coefficients(params, cell.project(params, xs))
        return loop(_without_factors(_linear_step), params, carry, coefficients, **masking)[0]
    us = cell.project(params, xs)
    if _runs_fused_kernel(cell, us.dtype, last_output, noise):
        return _fused_scan(cell, params, carry, us, valid, reverse)
    if _defers_weight_gradient(cell, us.dtype):
        return _scan_deferring_weight_gradient(cell, loop, params, carry, us, **masking)
    return loop(_without_factors(cell.recur), params, carry, us, **masking)[0]


def _without_factors(step_fn):
    """A ``(params, carry, x, **noise) -> (carry, y)`` step as one that also returns (no) factors."""
    return lambda *args, **kwargs: (*step_fn(*args, **kwargs), None)


def _loop(step_fn, params, carry, inputs, *, valid, reverse, unroll, last_output, noise):
    """The time loop of :func:`_scan` over a step ``(params, carry, x) -> (carry, y, factors)``.

    Returns ``(_scan's result, factors [t, ...])``."""

    def run_step(carry, x, zoneout):
        if noise is None:
            return step_fn(params, carry, x)
        return step_fn(params, carry, x, noise=noise.step(zoneout))

    def body(carry, inp):
        x, ok, zoneout = inp
        new_carry, y, factors = run_step(carry, x, zoneout)
        return _masked(ok, new_carry, carry), (_masked(ok, y, jnp.zeros_like(y)), factors)

    def body_repeating_last(carry_and_last, inp):
        carry, last = carry_and_last
        x, ok, zoneout = inp
        new_carry, y, factors = run_step(carry, x, zoneout)
        y = _masked(ok, y, last)
        return (_masked(ok, new_carry, carry), y), (y, factors)

    scanned = (inputs, valid, None if noise is None else noise.zoneout)
    if last_output is None:
        carry, (ys, factors) = lax.scan(body, carry, scanned, reverse=reverse, unroll=unroll)
    else:
        init = (carry, last_output)
        carry, (ys, factors) = lax.scan(body_repeating_last, init, scanned, reverse=reverse, unroll=unroll)
    return (carry, ys), factors


def _runs_fused_kernel(cell: Cell, dtype, last_output, noise) -> bool:
    """Whether the hoisted path runs ``cell`` in :func:`rnnjax.kernels.sequence`: where ``FUSED_KERNEL``
    says so for this backend and the kernels support the cell, without training noise and with zeros at
    masked steps."""
    if not FUSED_KERNEL.get(jax.default_backend(), False) or noise is not None or last_output is not None:
        return False
    from rnnjax import kernels  # Pallas is imported only where the table asks for it

    return kernels.supports(cell, dtype)


def _fused_scan(cell: Cell, params: Params, carry: Carry, us: Array, valid: Array | None, reverse: bool):
    """The hoisted scan in :mod:`rnnjax.kernels`' fused kernels: ``(carry, ys)``."""
    from rnnjax import kernels

    return kernels.sequence(cell, params, us, carry, valid, reverse=reverse)


def _defers_weight_gradient(cell: Cell, dtype) -> bool:
    """Whether the hoisted path takes ``cell``'s recurrent weight gradient out of the backward loop: where
    ``DEFER_WEIGHT_GRADIENT`` says so for this backend, for a :class:`~rnnjax.typing.RecurrentWeightCell`
    whose ``recur`` is the one its ``recur_with_factors`` belongs to (a subclass that overrides only
    ``recur`` keeps plain autodiff), unless it computes in float16: there the weight's share of the
    input tangent would be float16, where autodiff keeps that backward in float32 (numerics.matmul)."""
    if not DEFER_WEIGHT_GRADIENT.get(jax.default_backend(), False) or not isinstance(cell, RecurrentWeightCell):
        return False
    if jnp.dtype(dtype) == jnp.float16:
        return False
    mro = type(cell).__mro__
    owner = next(c for c in mro if "recur" in vars(c))
    return owner is next(c for c in mro if "recur_with_factors" in vars(c))


def _scan_deferring_weight_gradient(cell: RecurrentWeightCell, loop, params, carry, us, valid, last_output, noise):
    """The hoisted scan, with ``params.w_h``'s gradient computed after the loop instead of inside it.

    Autodiff of a scan adds ``h_{t-1}^T dz_t`` to the recurrent weight's gradient at every step of the
    backward loop: a small ``[h, b] x [b, 4h]`` matmul per step (for an LSTM), on the sequential path.
    Here ``w_h`` has no tangent inside the loop; its effect on every step is a tangent of that step's
    input ``u``, ``du_t = factors_t dw_h`` (``weight_tangent``), for all steps at once. Transposed, for
    the backward pass, this is ``dw_h = factors^T du``: ONE matmul over all steps, and under ``jax.vmap``
    over all sequences too (``dw_h`` is not batched, so the batch becomes rows of that matmul, not a
    per-sequence gradient). ``du`` is the cotangent of ``us`` that the input kernel's gradient needs
    anyway. Values and every derivative (forward, reverse, higher order) are autodiff's; in bfloat16 the
    weight's share of the input tangent is rounded to bfloat16 with it (one rounding more than autodiff).
    Under ``remat`` each checkpointed chunk has its own rule: one matmul per chunk.
    """

    def run(w_h, rest, carry, us, last_output, valid, noise):  # (_scan's result, factors)
        params = rest._replace(w_h=w_h)
        return loop(cell.recur_with_factors, params, carry, us, valid=valid, last_output=last_output, noise=noise)

    @jax.custom_jvp
    def scan(w_h, rest, carry, us, last_output, valid, noise):
        return run(w_h, rest, carry, us, last_output, valid, noise)[0]

    @functools.partial(scan.defjvp, symbolic_zeros=True)
    def scan_jvp(primals, tangents):
        w_h, rest, carry, us, last_output, valid, noise = primals
        differentiable = primals[1:5]
        d_rest, d_carry, d_us, d_last = _instantiated(tangents[1:5], differentiable)
        # valid and noise (step masks, dropout masks from the PRNG key) have no derivative

        def frozen(rest, carry, us, last_output):  # w_h closed over: no tangent inside the loop
            return run(w_h, rest, carry, us, last_output, valid, noise)

        result, linear, factors = jax.linearize(frozen, *differentiable, has_aux=True)
        if not isinstance(tangents[0], SymbolicZero):
            d_us = d_us + cell.weight_tangent(factors, tangents[0], us.dtype).astype(d_us.dtype)
        return result, linear(d_rest, d_carry, d_us, d_last)

    return scan(params.w_h, params._replace(w_h=None), carry, us, last_output, valid, noise)


def _instantiated(tangents, primals):
    """``tangents`` with every symbolic zero made an array of zeros like its primal."""
    return jax.tree_util.tree_map(
        lambda t, p: jnp.zeros_like(p) if isinstance(t, SymbolicZero) else t,
        tangents,
        primals,
        is_leaf=lambda t: isinstance(t, SymbolicZero),
    )


def _remat_scan(cell, params, carry, xs, valid, reverse, unroll, hoist, last_output=None, noise=None):
    """Two-level scan, checkpointed per chunk of ``ceil(sqrt(t))`` steps.

    The backward pass keeps only the carries at chunk boundaries and recomputes one
    chunk at a time, so its memory is ``O(sqrt(t))`` carries instead of ``O(t)``
    steps' worth of activations, for about one extra forward pass.
    """
    num_steps = xs.shape[0]
    chunk = max(1, math.isqrt(num_steps - 1) + 1) if num_steps > 1 else 1
    num_chunks = -(-num_steps // chunk)
    pad = num_chunks * chunk - num_steps
    if valid is None:
        valid = jnp.ones((num_steps,), bool)

    def chunked(a):
        return jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)).reshape(num_chunks, chunk, *a.shape[1:])

    zoneout = None if noise is None else jax.tree_util.tree_map(chunked, noise.zoneout)

    @jax.checkpoint
    def run_chunk(carry, chunk_inputs):
        xs, valid, zoneout = chunk_inputs
        chunk_noise = None if noise is None else noise._replace(zoneout=zoneout)
        if last_output is None:
            return _scan(cell, params, carry, xs, valid, reverse, min(unroll, chunk), hoist, None, chunk_noise)
        carry, last = carry
        return _scan(cell, params, carry, xs, valid, reverse, min(unroll, chunk), hoist, last, chunk_noise)

    init = carry if last_output is None else (carry, last_output)
    carry, ys = lax.scan(run_chunk, init, (chunked(xs), chunked(valid), zoneout), reverse=reverse)
    return carry, ys.reshape(num_chunks * chunk, *ys.shape[2:])[:num_steps]


def _parallel_scan(cell, params, carry, xs, valid, reverse, repeat_last=False):
    """``h_t = a_t h_{t-1} + b_t`` for all t at once with an associative scan.

    Composing two steps gives another affine step: applying ``(a1, b1)`` then ``(a2, b2)``
    is ``(a1 a2, a2 b1 + b2)``. The scan of these pairs gives, for every t, the map
    ``h_0 -> h_t = A_t h_0 + B_t``. A masked step keeps ``h``, so with ``repeat_last`` its output
    ``h_t`` is the last valid step's (zeros before the first valid step).
    """
    a, b = cell.coefficients(params, cell.project(params, xs))
    if valid is not None:  # past the length: h_t = h_{t-1} (a = 1, b = 0)
        a = jnp.where(valid[:, None], a, jnp.ones_like(a))
        b = jnp.where(valid[:, None], b, jnp.zeros_like(b))

    def compose(first, second):
        a1, b1 = first
        a2, b2 = second
        return a1 * a2, a2 * b1 + b2

    cum_a, cum_b = lax.associative_scan(compose, (a, b), reverse=reverse)
    h0 = carry.h.astype(a.dtype)
    hs = cum_a * h0 + cum_b
    last = hs[0] if reverse else hs[-1]
    if valid is not None:
        ys_valid = masks.seen_valid(valid, reverse) if repeat_last else valid
        hs = masks.zero_invalid(hs, ys_valid)
    return type(carry)(last), hs


def _carry_dtype_like_step(cell: Cell, params: Params, carry: Carry, x: Array) -> Carry:
    """Cast ``carry`` to the dtypes that one ``step`` returns, so ``lax.scan`` sees no mismatch."""
    out = jax.eval_shape(cell.step, params, carry, x)[0]
    checks.same_structure(out, carry, "carry")
    return jax.tree_util.tree_map(lambda c, o: c.astype(o.dtype), carry, out)


def unroll(
    cell: Cell,
    params: Params,
    xs: Array,
    carry: Carry | None = None,
    *,
    length: int | Array | None = None,
    reverse: bool = False,
    unroll: int | None = None,
    hoist: bool | None = None,
    remat: bool = False,
    parallel: bool = False,
    mask: Array | None = None,
    masked_output: str = "zeros",
    key: PRNGKey | None = None,
) -> tuple[Carry, Array]:
    """Run ``cell`` over one sequence: ``carry, ys = scan(cell.step, carry, xs)``.

    Args:
      cell: any rnnjax cell (hashable, so it can be a static ``jit`` argument).
      params: the cell's params, from ``cell.init``.
      xs: one sequence ``[t, f]`` of floats (batch with :func:`jax.vmap`).
      carry: the carry before the first step; ``cell.initial_carry(params)`` if None.
        It is cast to the dtype the step computes in.
      length: number of valid steps ``n``, a scalar in ``[0, t]``; steps ``>= n`` leave
        the carry unchanged and give zero outputs. None means ``t``.
      reverse: run from the last valid step back to the first. With ``length``, only
        the valid prefix ``xs[:n]`` is reversed. ``ys[i]`` always belongs to ``xs[i]``.
        (Keras' ``go_backwards=True`` returns them in processing order, ``ys[::-1]``.)
      unroll: how many steps each scan iteration runs (``lax.scan``'s ``unroll``); None
        takes the backend's measured factor (:func:`default_unroll`: 1 on CPU, 32 on GPU),
        at most ``t``.
      hoist: True projects the whole sequence with ``cell.project`` (one large matmul)
        and scans ``cell.recur``; False scans ``cell.step``; None chooses per backend
        (:func:`default_hoist`: hoisted on GPU/TPU, not on CPU). Same result either way.
      remat: checkpoint the time loop in chunks of ``ceil(sqrt(t))`` steps so that the
        memory of BPTT grows as ``sqrt(t)`` (one extra forward pass in the backward).
      parallel: run a linear-recurrence cell (``MinGRUCell``, ``MinLSTMCell``) as a
        :func:`jax.lax.associative_scan`, parallel over time; same result.
      mask: ``[t]`` booleans, True where the step is valid; a masked step leaves the carry
        unchanged, wherever it is (holes, left padding). With ``length``, a step counts only
        if it is before ``length`` and unmasked. None: every step (up to ``length``).
      masked_output: the output at a masked step (or one ``>= length``): ``"zeros"`` (the
        default), or ``"last"``, the output of the last valid step before it in processing
        order, and zeros before the first (Keras' masking). With ``"last"``, ``ys[-1]`` (``ys[0]``
        with ``reverse``) is the last valid step's output, Keras' ``return_sequences=False``.
      key: a PRNG key to train with the cell's dropout and zoneout (``LSTMCell(dropout=...,
        recurrent_dropout=..., zoneout=...)``): masks drawn once per sequence (per step for
        zoneout). None: inference, where dropout is off and zoneout takes its expectation.
        Split it per sequence under ``vmap``.

    Returns:
      ``(carry, ys)``: the carry after the last valid step and the outputs ``ys: [t, o]``.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.LSTMCell(16)
        >>> params = cell.init(jax.random.key(0), 8)
        >>> carry, ys = rj.unroll(cell, params, jnp.ones((10, 8)), length=7)
        >>> ys.shape, float(jnp.abs(ys[7:]).max())
        ((10, 16), 0.0)
        >>> batch = jnp.ones((4, 10, 8))
        >>> _, ys = jax.vmap(rj.unroll, (None, None, 0))(cell, params, batch)
        >>> ys.shape
        (4, 10, 16)
        >>> left_padded = jnp.arange(10) >= 3  # steps 0-2 are padding
        >>> _, ys = rj.unroll(cell, params, jnp.ones((10, 8)), mask=left_padded, masked_output="last")
        >>> float(jnp.abs(ys[:3]).max()), bool(jnp.all(ys[-1] == ys[9]))
        (0.0, True)
    """
    cell.check_params(params)
    xs = checks.sequence(xs, cell.input_size(params), "xs")
    num_steps = xs.shape[0]
    length = checks.length(length, num_steps)
    mask = checks.step_mask(mask, num_steps)
    checks.masked_output(masked_output)
    if unroll is None:
        unroll = default_unroll(num_steps)
    checks.positive_int(unroll, "unroll")
    if hoist is None:
        hoist = default_hoist()
    elif not isinstance(hoist, bool):
        raise TypeError(f"hoist: expected True, False or None, got {hoist!r}")
    if parallel and not isinstance(cell, LinearRecurrenceCell):
        raise ValueError(
            f"parallel: needs a linear-recurrence cell (MinGRUCell, MinLSTMCell), got {type(cell).__name__}"
        )

    expected_carry = cell.initial_carry(params)
    if carry is None:
        carry = expected_carry
    else:
        checks.same_structure(carry, expected_carry, "carry")
    if num_steps == 0:
        ys = jax.eval_shape(cell.step, params, carry, jnp.zeros(xs.shape[1:], xs.dtype))[1]
        return carry, jnp.zeros((0, *ys.shape), ys.dtype)
    carry = _carry_dtype_like_step(cell, params, carry, xs[0])
    params = numerics.params_for_the_loop(cell, params, xs.dtype)  # gradients summed over the steps in float32
    valid = masks.valid_steps(num_steps, length, mask)
    repeat_last = masked_output == "last" and valid is not None
    noise = None
    if key is not None and isinstance(cell, NoisyCell) and cell.has_noise:
        noise = cell.sequence_noise(key, params, num_steps)
        if noise.inputs is not None:
            xs = xs * noise.inputs.astype(xs.dtype)

    if parallel:
        return _parallel_scan(cell, params, carry, xs, valid, reverse, repeat_last)
    scan = _remat_scan if remat else _scan
    if not repeat_last:
        return scan(cell, params, carry, xs, valid, reverse, unroll, hoist, None, noise)
    y_shape = jax.eval_shape(cell.step, params, carry, xs[0])[1]
    last_output = jnp.zeros(y_shape.shape, y_shape.dtype)
    (carry, _), ys = scan(cell, params, carry, xs, valid, reverse, unroll, hoist, last_output, noise)
    return carry, ys
