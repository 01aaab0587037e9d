"""Fused recurrence kernels in Pallas: an LSTM layer's whole time loop in one GPU kernel.

``unroll``'s hoisted path runs one small matmul and a few elementwise kernels per step. At small
sizes a GPU spends most of that step launching kernels, not computing (at S = batch 32, hidden 128,
rnnjax's forward pass took 0.59 ms for 100 steps on an H200, cuDNN's 0.39 ms; docs/performance.md).
:func:`lstm` runs every step inside ONE kernel: each program of the kernel takes a block of
``BATCH_BLOCK`` sequences, keeps their ``h`` and ``c`` on chip for all steps and reads ``w_h`` from
the GPU's cache at every step. Its backward pass is a second such kernel, which only propagates
``dz_t W_h^T`` through time; the recurrent weight's gradient is then one matmul over all steps,
``h_{t-1}^T dz_t``.

The kernels are written for the GPU (Pallas' Triton backend); on the CPU they run in Pallas' interpret
mode (slow: for tests). :func:`lstm` is batched (``[b, t, 4h]``); :func:`lstm_sequence` is the same for
one sequence, batched with ``jax.vmap`` as ``unroll`` is: under ``vmap`` it calls the batched kernels
once for the whole batch (:func:`jax.custom_batching.custom_vmap`).

``unroll`` takes this path where ``rnnjax.recurrence.FUSED_KERNEL`` says so for the backend (off
everywhere until it measures faster; ``benchmarks/gpu.py`` measures it) and :func:`supports` the
cell. Reverse mode only: ``jax.grad``, ``jax.vjp`` and ``vmap`` of them work, ``jax.jvp`` does not
(as for any :func:`jax.custom_vjp`).
"""

import functools

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pallas_triton

from rnnjax.typing import Array

# Sequences per program of a kernel. A GPU matmul inside a kernel needs at least 16 rows.
BATCH_BLOCK = 16
# GPU warps per program (Triton's default).
NUM_WARPS = 4
# The largest hidden size the kernels take: each step multiplies by one gate's [h, h] slice of w_h,
# 64 KiB in float32 at h = 128; at 256 it would be 256 KiB, more than the 228 KiB of shared memory
# of an H100/H200 multiprocessor. (Larger sizes are not launch-bound anyway.)
MAX_HIDDEN = 128


def supports(cell, dtype, hidden_size: int) -> bool:
    """Whether :func:`lstm` can run ``cell``: a plain :class:`~rnnjax.LSTMCell` (no peepholes, no
    projection) computing in float32, with a power-of-two hidden size (the kernels' block shapes) from
    16 to ``MAX_HIDDEN``."""
    from rnnjax.cells.lstm import LSTMCell  # the cells import the recurrence, which imports this module

    return (
        type(cell) is LSTMCell
        and not cell.peephole
        and not cell.proj_size
        and jnp.dtype(dtype) == jnp.float32
        and 16 <= hidden_size <= MAX_HIDDEN
        and hidden_size & (hidden_size - 1) == 0
    )


def _interpret(interpret: bool | None) -> bool:
    """``interpret``, or where None, Pallas' interpret mode off the GPU (the kernels are written for Triton)."""
    if interpret is None:
        return jax.default_backend() != "gpu"
    if not isinstance(interpret, bool):
        raise TypeError(f"interpret: expected True, False or None, got {interpret!r}")
    return interpret


def _gate_columns(k: int, hidden: int):
    return pl.ds(k * hidden, hidden)


def _forward_kernel(
    w_ref,
    us_ref,
    h0_ref,
    c0_ref,
    valid_ref,
    ys_ref,
    h_ref,
    c_ref,
    *residual_refs,
    reverse,
    precision,
):
    """One block of sequences, every step: ``z = u_t + h W_h``; ``c = f c + i g``; ``h = o tanh(c)``.

    Given ``residual_refs`` (for a gradient), saves for the backward kernel the gate activations and the
    carry each step started from."""
    num_steps, hidden = us_ref.shape[1], h0_ref.shape[-1]

    def preactivation(t, h, k):
        columns = _gate_columns(k, hidden)
        recurrent = jnp.dot(h, w_ref[:, columns], precision=precision, preferred_element_type=jnp.float32)
        return us_ref[:, t, columns] + recurrent

    def body(s, carry):
        h, c = carry
        t = num_steps - 1 - s if reverse else s
        ok = valid_ref[:, t][:, None] != 0
        i = jax.nn.sigmoid(preactivation(t, h, 0))
        f = jax.nn.sigmoid(preactivation(t, h, 1))
        g = jnp.tanh(preactivation(t, h, 2))
        o = jax.nn.sigmoid(preactivation(t, h, 3))
        new_c = f * c + i * g
        new_h = o * jnp.tanh(new_c)
        if residual_refs:
            gates_ref, h_prev_ref, c_prev_ref = residual_refs
            for k, gate in enumerate((i, f, g, o)):
                gates_ref[:, t, _gate_columns(k, hidden)] = gate
            h_prev_ref[:, t, :] = h
            c_prev_ref[:, t, :] = c
        ys_ref[:, t, :] = jnp.where(ok, new_h, 0.0)
        return jnp.where(ok, new_h, h), jnp.where(ok, new_c, c)

    h, c = jax.lax.fori_loop(0, num_steps, body, (h0_ref[...], c0_ref[...]))
    h_ref[...] = h
    c_ref[...] = c


def _backward_kernel(
    w_ref,
    gates_ref,
    c_prev_ref,
    valid_ref,
    dys_ref,
    dh_ref,
    dc_ref,
    dus_ref,
    dh0_ref,
    dc0_ref,
    *,
    reverse,
    precision,
):
    """The forward kernel's steps in the opposite order: ``dz_t`` from the saved gates, and
    ``dh_{t-1} = dz_t W_h^T``, ``dc_{t-1} = dc_t f``. A masked step passes ``dh`` and ``dc`` through."""
    num_steps, hidden = gates_ref.shape[1], dh_ref.shape[-1]

    def body(s, carry):
        dh, dc = carry
        t = s if reverse else num_steps - 1 - s
        ok = valid_ref[:, t][:, None] != 0
        i, f, g, o = (gates_ref[:, t, _gate_columns(k, hidden)] for k in range(4))
        c_prev = c_prev_ref[:, t, :]
        tanh_c = jnp.tanh(f * c_prev + i * g)
        dh_t = dh + dys_ref[:, t, :]
        dc_t = dc + dh_t * o * (1.0 - tanh_c * tanh_c)
        dz = (
            dc_t * g * i * (1.0 - i),
            dc_t * c_prev * f * (1.0 - f),
            dc_t * i * (1.0 - g * g),
            dh_t * tanh_c * o * (1.0 - o),
        )
        new_dh = jnp.zeros_like(dh)
        for k, dz_k in enumerate(dz):
            columns = _gate_columns(k, hidden)
            dus_ref[:, t, columns] = jnp.where(ok, dz_k, 0.0)
            new_dh += jax.lax.dot_general(
                dz_k,
                w_ref[:, columns],
                (((1,), (1,)), ((), ())),
                precision=precision,
                preferred_element_type=jnp.float32,
            )
        return jnp.where(ok, new_dh, dh), jnp.where(ok, dc_t * f, dc)

    dh0, dc0 = jax.lax.fori_loop(0, num_steps, body, (dh_ref[...], dc_ref[...]))
    dh0_ref[...] = dh0
    dc0_ref[...] = dc0


def _blocked_call(kernel, inputs, outputs, *, reverse, precision, interpret):
    """``kernel`` over ``inputs`` (batch first; ``w_h`` unbatched, first) on a grid of batch blocks.

    The batch is padded to a multiple of ``BATCH_BLOCK`` with masked-out sequences and cut back after.
    ``outputs``: one ``(shape without the batch, dtype)`` per output."""
    w_h, *batched = inputs
    batch = batched[0].shape[0]
    padded = -(-batch // BATCH_BLOCK) * BATCH_BLOCK
    batched = [jnp.pad(a, [(0, padded - batch)] + [(0, 0)] * (a.ndim - 1)) for a in batched]

    def block(shape):
        return pl.BlockSpec((BATCH_BLOCK, *shape), lambda b: (b,) + (0,) * len(shape))

    call = pl.pallas_call(
        functools.partial(kernel, reverse=reverse, precision=precision),
        grid=(padded // BATCH_BLOCK,),
        in_specs=[pl.BlockSpec(w_h.shape, lambda b: (0, 0))] + [block(a.shape[1:]) for a in batched],
        out_specs=[block(shape) for shape, _ in outputs],
        out_shape=[jax.ShapeDtypeStruct((padded, *shape), dtype) for shape, dtype in outputs],
        interpret=interpret,
        compiler_params=None if interpret else pallas_triton.CompilerParams(num_warps=NUM_WARPS),
        name=kernel.__name__.strip("_"),
    )
    return [out[:batch] for out in call(w_h, *batched)]


def _forward(w_h, us, h0, c0, valid, reverse, precision, interpret, residuals=False):
    """The forward kernel on a batch: ``(ys, h, c)``, and with ``residuals`` ``(gates, h_prev, c_prev)`` too."""
    num_steps, hidden = us.shape[1], h0.shape[-1]
    f32 = jnp.float32
    sequence = ((num_steps, hidden), f32)
    outputs = [sequence, ((hidden,), f32), ((hidden,), f32)]
    outputs += [((num_steps, 4 * hidden), f32), sequence, sequence] if residuals else []
    inputs = (w_h, us, h0, c0, valid)
    return _blocked_call(_forward_kernel, inputs, outputs, reverse=reverse, precision=precision, interpret=interpret)


def _backward(w_h, gates, c_prev, valid, dys, dh, dc, reverse, precision, interpret):
    """The backward kernel on a batch: ``(dus, dh0, dc0)``."""
    num_steps, hidden = dys.shape[1], dh.shape[-1]
    f32 = jnp.float32
    outputs = [((num_steps, 4 * hidden), f32), ((hidden,), f32), ((hidden,), f32)]
    inputs = (w_h, gates, c_prev, valid, dys, dh, dc)
    return _blocked_call(_backward_kernel, inputs, outputs, reverse=reverse, precision=precision, interpret=interpret)


def _valid_steps(valid: Array | None, shape) -> Array:
    """``valid`` as int32 (1 = the step runs), all ones when None."""
    return jnp.ones(shape, jnp.int32) if valid is None else valid.astype(jnp.int32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _lstm(w_h, us, h0, c0, valid, reverse, precision, interpret):
    return tuple(_forward(w_h, us, h0, c0, valid, reverse, precision, interpret))


def _lstm_fwd(w_h, us, h0, c0, valid, reverse, precision, interpret):
    ys, h, c, gates, h_prev, c_prev = _forward(w_h, us, h0, c0, valid, reverse, precision, interpret, True)
    return (ys, h, c), (w_h, valid, gates, h_prev, c_prev)


def _lstm_bwd(reverse, precision, interpret, residuals, cotangents):
    w_h, valid, gates, h_prev, c_prev = residuals
    dus, dh0, dc0 = _backward(w_h, gates, c_prev, valid, *cotangents, reverse, precision, interpret)
    # z_t = u_t + h_{t-1} W_h, so dW_h = sum over steps and sequences of h_{t-1}^T dz_t: one matmul
    dw_h = jnp.einsum("bth,btg->hg", h_prev, dus, precision=precision)
    return dw_h, dus, dh0, dc0, None


_lstm.defvjp(_lstm_fwd, _lstm_bwd)


def lstm(
    w_h: Array,
    us: Array,
    h0: Array,
    c0: Array,
    valid: Array | None = None,
    *,
    reverse: bool = False,
    precision=None,
    interpret: bool | None = None,
) -> tuple[Array, Array, Array]:
    """An LSTM layer's recurrence over a batch, in one fused kernel (and its gradient in another).

    Args:
      w_h: the recurrent kernel ``[h, 4h]``, gates ``i, f, g, o`` (``LSTMParams.w_h``).
      us: the projected inputs ``x_t W_i + b``, ``[b, t, 4h]`` (``LSTMCell.project``), float32.
      h0, c0: the carry before the first step, ``[b, h]`` each.
      valid: ``[b, t]`` booleans, True where a step runs; a masked step keeps the carry and outputs
        zeros (``unroll``'s ``length``/``mask``). None: every step.
      reverse: run the steps from last to first.
      precision: the matmuls' precision (``LSTMCell.precision``).
      interpret: run the kernels in Pallas' interpret mode; None: off the GPU only.

    Returns:
      ``(ys [b, t, h], h [b, h], c [b, h])``: the outputs and the carry after the last step.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.LSTMCell(16)
        >>> params = cell.init(jax.random.key(0), 8)
        >>> xs = jnp.ones((2, 5, 8))
        >>> us = cell.project(params, xs)
        >>> h0 = c0 = jnp.zeros((2, 16))
        >>> ys, h, c = rj.kernels.lstm(params.w_h, us, h0, c0)
        >>> _, expected = jax.vmap(lambda x: rj.unroll(cell, params, x, hoist=True))(xs)
        >>> bool(jnp.allclose(ys, expected, atol=1e-5))
        True
    """
    _check_shapes(w_h, us, h0, c0, valid, batched=True)
    valid = _valid_steps(valid, us.shape[:2])
    return _lstm(w_h, us, h0, c0, valid, reverse, precision, _interpret(interpret))


def _check_shapes(w_h, us, h0, c0, valid, *, batched: bool) -> None:
    lead = 2 if batched else 1
    hidden = w_h.shape[0] if w_h.ndim == 2 else None
    if hidden is None or w_h.shape[1] != 4 * hidden:
        raise ValueError(f"w_h: expected [h, 4h], got shape {w_h.shape}")
    if us.ndim != lead + 1 or us.shape[-1] != 4 * hidden:
        raise ValueError(f"us: expected [{'b, ' if batched else ''}t, {4 * hidden}], got shape {us.shape}")
    carry_shape = us.shape[: lead - 1] + (hidden,)
    for name, a in (("h0", h0), ("c0", c0)):
        if a.shape != carry_shape:
            raise ValueError(f"{name}: expected shape {carry_shape}, got {a.shape}")
    if valid is not None and valid.shape != us.shape[:lead]:
        raise ValueError(f"valid: expected shape {us.shape[:lead]}, got {valid.shape}")
    for name, a in (("w_h", w_h), ("us", us), ("h0", h0), ("c0", c0)):
        if a.dtype != jnp.float32:
            raise TypeError(f"{name}: expected float32, got {a.dtype}")


@functools.cache
def _per_sequence(reverse: bool, precision, interpret: bool):
    """:func:`lstm_sequence` for one setting of the static arguments."""
    static = (reverse, precision, interpret)

    def batched_rule(kernel_call, num_outputs):
        # under vmap: one call of the batched kernel for the whole batch; w_h (the first argument)
        # must be shared by the batch, else every sequence runs alone (vmap of the per-sequence call)
        def rule(axis_size, in_batched, *args):
            all_batched = (True,) * num_outputs
            if in_batched[0]:
                in_axes = [0 if b else None for b in in_batched]
                return jax.vmap(functools.partial(kernel_call, batched=False), in_axes)(*args), all_batched
            w_h, *rest = args
            rest = [
                a if b else jnp.broadcast_to(a, (axis_size, *a.shape))
                for a, b in zip(rest, in_batched[1:], strict=True)
            ]
            return kernel_call(w_h, *rest, batched=True), all_batched

        return rule

    def forward_call(w_h, us, h0, c0, valid, *, batched, residuals):
        if batched:
            return tuple(_forward(w_h, us, h0, c0, valid, *static, residuals))
        one = [a[None] for a in (us, h0, c0, valid)]
        return tuple(out[0] for out in _forward(w_h, *one, *static, residuals))

    def backward_call(w_h, gates, c_prev, valid, dys, dh, dc, *, batched):
        if batched:
            return tuple(_backward(w_h, gates, c_prev, valid, dys, dh, dc, *static))
        one = [a[None] for a in (gates, c_prev, valid, dys, dh, dc)]
        return tuple(out[0] for out in _backward(w_h, *one, *static))

    def batchable(kernel_call, num_outputs):
        """``kernel_call`` for one sequence, under ``vmap`` one call for the batch."""
        one = custom_vmap(functools.partial(kernel_call, batched=False))
        one.def_vmap(batched_rule(kernel_call, num_outputs))
        return one

    forward = batchable(functools.partial(forward_call, residuals=False), 3)
    forward_saving = batchable(functools.partial(forward_call, residuals=True), 6)
    backward = batchable(backward_call, 3)

    @jax.custom_vjp
    def sequence(w_h, us, h0, c0, valid):
        return forward(w_h, us, h0, c0, valid)

    def sequence_fwd(w_h, us, h0, c0, valid):
        ys, h, c, gates, h_prev, c_prev = forward_saving(w_h, us, h0, c0, valid)
        return (ys, h, c), (w_h, valid, gates, h_prev, c_prev)

    def sequence_bwd(residuals, cotangents):
        w_h, valid, gates, h_prev, c_prev = residuals
        dus, dh0, dc0 = backward(w_h, gates, c_prev, valid, *cotangents)
        # per sequence; under vmap JAX sums it over the batch (w_h is shared)
        dw_h = jnp.einsum("th,tg->hg", h_prev, dus, precision=precision)
        return dw_h, dus, dh0, dc0, None

    sequence.defvjp(sequence_fwd, sequence_bwd)
    return sequence


def lstm_sequence(
    w_h: Array,
    us: Array,
    h0: Array,
    c0: Array,
    valid: Array | None = None,
    *,
    reverse: bool = False,
    precision=None,
    interpret: bool | None = None,
) -> tuple[Array, Array, Array]:
    """:func:`lstm` for one sequence (``us: [t, 4h]``, ``h0, c0: [h]``, ``valid: [t]``), batched with
    ``jax.vmap``: a vmapped call runs the batched kernels once for the whole batch.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.LSTMCell(16)
        >>> params = cell.init(jax.random.key(0), 8)
        >>> us = cell.project(params, jnp.ones((3, 5, 8)))
        >>> run = lambda u: rj.kernels.lstm_sequence(params.w_h, u, jnp.zeros(16), jnp.zeros(16))
        >>> ys, h, c = jax.vmap(run)(us)
        >>> ys.shape, h.shape
        ((3, 5, 16), (3, 16))
    """
    _check_shapes(w_h, us, h0, c0, valid, batched=False)
    valid = _valid_steps(valid, us.shape[:1])
    return _per_sequence(reverse, precision, _interpret(interpret))(w_h, us, h0, c0, valid)
