"""Fused recurrence kernels in Pallas: an LSTM's or a GRU's whole time loop in one GPU kernel.

``unroll``'s hoisted path runs one small matmul and a few elementwise kernels per step. At small
sizes a GPU spends most of that step launching kernels, not computing (at S = batch 32, hidden 128,
rnnjax's LSTM forward pass took 0.59 ms for 100 steps on an H200, cuDNN's 0.39 ms; the GRU's 0.61 ms
and 0.24 ms; docs/performance.md). :func:`lstm` and :func:`gru` run every step inside ONE kernel: each
program of the kernel takes a block of ``BATCH_BLOCK`` sequences, keeps their carry on chip for all
steps and reads the recurrent weight one gate's ``[h, h]`` slice at a time. The backward pass is a
second such kernel, which runs the steps backwards and only propagates ``dz_t W_h^T``; the recurrent
weight's gradient is then a matmul over all steps, ``sum_t h_{t-1}^T dz_t`` (one per sequence under
``jax.vmap``, which JAX sums: ``b`` products of ``[h, g h]`` floats, 8 MiB for an LSTM at batch 32 and
hidden 128).

The kernels are written for NVIDIA GPUs (Pallas' Triton backend); elsewhere they run in Pallas'
interpret mode (slow: for tests). :func:`lstm` and :func:`gru` take a batch ``[b, t, g]``;
:func:`lstm_sequence`, :func:`gru_sequence` and :func:`sequence` take one sequence and are batched
with ``jax.vmap``, as ``unroll`` is: under ``vmap`` they call each kernel once for the whole batch
(:func:`jax.custom_batching.custom_vmap`). A ``vmap`` over the weights too (an ensemble, the same
``vmap`` as the sequences) runs each sequence alone, padded to a block of ``BATCH_BLOCK``: 16 times the
work; ``vmap`` over the members outside the ``vmap`` over sequences keeps the blocks full.

``unroll``'s hoisted path calls :func:`sequence` where ``rnnjax.recurrence.FUSED_KERNEL`` says so for
the backend (off everywhere until it measures faster; ``benchmarks/gpu.py --sections fused`` measures
it) and :func:`supports` the cell. Reverse mode only: ``jax.grad``, ``jax.vjp`` and ``vmap`` of them
work, ``jax.jvp`` does not (as for any :func:`jax.custom_vjp`). Needs jax 0.7 or later (Pallas' Triton
``CompilerParams``); jax 0.11 deprecates the Triton backend in favour of Mosaic GPU, and warns when it
lowers these kernels.
"""

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pallas_triton

from rnnjax.cells import GRUCell, LSTMCell
from rnnjax.typing import Array, Carry, Params

# Sequences per program of a kernel. A GPU matmul inside a kernel needs at least 16 rows.
BATCH_BLOCK = 16
# GPU warps per program (Triton's default). The kernels run with one pipeline stage: Triton would
# otherwise double-buffer the w_h slices it loads inside the time loop (the same at every step),
# 2 x 4 x 64 KiB at hidden 128, more shared memory than an H200 multiprocessor has.
NUM_WARPS = 4
# The largest hidden size the kernels take: each step multiplies by one gate's [h, h] slice of w_h,
# 64 KiB in float32 at h = 128; at 256 it would be 256 KiB, more than the 228 KiB of shared memory
# of an H100/H200 multiprocessor. (Larger sizes are not launch-bound anyway.)
MAX_HIDDEN = 128


def supports(cell, dtype) -> bool:
    """Whether the kernels run ``cell`` computing in ``dtype``: a plain :class:`~rnnjax.LSTMCell` (no
    peepholes, no projection) or a :class:`~rnnjax.GRUCell` with ``reset_after=True`` (the default),
    without zoneout (dropout is off where the kernels run: without a key), computing in float32 (the params
    may be stored in another float dtype), with a power-of-two hidden size (the kernels' block shapes) from
    16 to ``MAX_HIDDEN``.

    Example:
        >>> import jax.numpy as jnp, rnnjax as rj
        >>> supports(rj.LSTMCell(128), jnp.float32), supports(rj.LSTMCell(512), jnp.float32)
        (True, False)
    """
    if _kind(cell) is None or jnp.dtype(dtype) != jnp.float32:
        return False
    hidden = cell.hidden_size
    return 16 <= hidden <= MAX_HIDDEN and hidden & (hidden - 1) == 0


def _kind(cell) -> str | None:
    """The kind, "lstm" or "gru", where the kernels compute exactly what ``cell.recur`` does without a key,
    else None."""
    if type(cell) is LSTMCell and not cell.peephole and not cell.proj_size and not cell.zoneout:
        return "lstm"
    if type(cell) is GRUCell and cell.reset_after and not cell.zoneout:
        return "gru"
    return None


def sequence(cell, params: Params, us: Array, carry: Carry, valid: Array | None = None, *, reverse: bool = False):
    """``cell``'s recurrence over one projected sequence ``us = cell.project(params, xs)`` in the fused
    kernels, as ``unroll``'s hoisted path computes it: ``(carry, ys)``. ``valid``: ``[t]`` booleans, True
    where a step runs (a masked step keeps the carry and outputs zeros). Batched with ``jax.vmap``.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.GRUCell(16)
        >>> params = cell.init(jax.random.key(0), 8)
        >>> xs = jnp.ones((5, 8))
        >>> carry, ys = sequence(cell, params, cell.project(params, xs), cell.initial_carry(params))
        >>> bool(jnp.allclose(ys, rj.unroll(cell, params, xs, hoist=True)[1], atol=1e-5))
        True
    """
    if not supports(cell, us.dtype):
        raise ValueError(f"cell: the fused kernels do not run {cell!r} on {us.dtype} (see rnnjax.kernels.supports)")
    options = {"reverse": reverse, "precision": cell.precision}
    w_h = params.w_h.astype(us.dtype)  # as the cell's matmuls cast it (params may be stored in bfloat16)
    if _kind(cell) == "lstm":
        ys, h, c = lstm_sequence(w_h, us, carry.h, carry.c, valid, **options)
        return type(carry)(h, c), ys
    ys, h = gru_sequence(w_h, params.b_h.astype(us.dtype), us, carry.h, valid, **options)
    return type(carry)(h), ys


def _interpret(interpret: bool | None) -> bool:
    """``interpret``, or where None, Pallas' interpret mode off the GPU (the kernels are written for Triton)."""
    if interpret is None:
        return jax.default_backend() != "gpu"
    if not isinstance(interpret, bool):
        raise TypeError(f"interpret: expected True, False or None, got {interpret!r}")
    return interpret


# --- the kernels: one block of sequences, every step ------------------------------------------------------


def _gate(k: int, hidden: int):
    """The columns of gate block ``k``."""
    return pl.ds(k * hidden, hidden)


def _times(a, w, precision):
    """``a @ w`` in float32."""
    return jnp.dot(a, w, precision=precision, preferred_element_type=jnp.float32)


def _times_transposed(a, w, precision):
    """``a @ w^T`` in float32."""
    dims = (((1,), (1,)), ((), ()))
    return jax.lax.dot_general(a, w, dims, precision=precision, preferred_element_type=jnp.float32)


def _step_index(s, num_steps: int, reverse: bool, backward: bool):
    """The time index of loop iteration ``s``: forward in time unless exactly one of ``reverse``/``backward``."""
    return num_steps - 1 - s if reverse != backward else s


def _lstm_forward_kernel(
    w_ref, us_ref, h0_ref, c0_ref, valid_ref, ys_ref, h_ref, c_ref, *residual_refs, reverse, precision
):
    """``z = u_t + h W_h`` (gates i, f, g, o); ``c = f c + i g``; ``h = o tanh(c)``. Given ``residual_refs``
    (for a gradient), saves the gate activations and the carry each step started from."""
    num_steps, hidden = us_ref.shape[1], h0_ref.shape[-1]

    def activation(t, h, k, fn):
        return fn(us_ref[:, t, _gate(k, hidden)] + _times(h, w_ref[:, _gate(k, hidden)], precision))

    def body(s, carry):
        h, c = carry
        t = _step_index(s, num_steps, reverse, backward=False)
        ok = valid_ref[:, t][:, None] != 0
        i, f, o = (activation(t, h, k, jax.nn.sigmoid) for k in (0, 1, 3))
        g = activation(t, h, 2, jnp.tanh)
        new_c = f * c + i * g
        new_h = o * jnp.tanh(new_c)
        if residual_refs:
            gates_ref, h_prev_ref, c_prev_ref = residual_refs
            for k, gate in enumerate((i, f, g, o)):
                gates_ref[:, t, _gate(k, hidden)] = gate
            h_prev_ref[:, t, :] = h
            c_prev_ref[:, t, :] = c
        ys_ref[:, t, :] = jnp.where(ok, new_h, 0.0)
        return jnp.where(ok, new_h, h), jnp.where(ok, new_c, c)

    h_ref[...], c_ref[...] = jax.lax.fori_loop(0, num_steps, body, (h0_ref[...], c0_ref[...]))


def _lstm_backward_kernel(
    w_ref, gates_ref, c_prev_ref, valid_ref, dys_ref, dh_ref, dc_ref, dus_ref, dh0_ref, dc0_ref, *, reverse, precision
):
    """The forward kernel's steps in the opposite order: ``dz_t`` from the saved gates, then
    ``dh_{t-1} = dz_t W_h^T`` and ``dc_{t-1} = dc_t f``. A masked step passes ``dh`` and ``dc`` through."""
    num_steps, hidden = gates_ref.shape[1], dh_ref.shape[-1]

    def body(s, carry):
        dh, dc = carry
        t = _step_index(s, num_steps, reverse, backward=True)
        ok = valid_ref[:, t][:, None] != 0
        i, f, g, o = (gates_ref[:, t, _gate(k, hidden)] for k in range(4))
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
            dus_ref[:, t, _gate(k, hidden)] = jnp.where(ok, dz_k, 0.0)
            new_dh += _times_transposed(dz_k, w_ref[:, _gate(k, hidden)], precision)
        return jnp.where(ok, new_dh, dh), jnp.where(ok, dc_t * f, dc)

    dh0_ref[...], dc0_ref[...] = jax.lax.fori_loop(0, num_steps, body, (dh_ref[...], dc_ref[...]))


def _gru_forward_kernel(w_ref, b_ref, us_ref, h0_ref, valid_ref, ys_ref, h_ref, *residual_refs, reverse, precision):
    """Reset-after GRU, gates r, z, n: ``a = h W_h + b_h``; ``r = s(u_r + a_r)``, ``z = s(u_z + a_z)``,
    ``n = tanh(u_n + r a_n)``; ``h = (1 - z) n + z h``. Given ``residual_refs``, saves ``r, z, n``, ``a_n``
    and the ``h`` each step started from."""
    num_steps, hidden = us_ref.shape[1], h0_ref.shape[-1]

    def recurrent(h, k):  # a_k = h W_hk + b_hk
        return _times(h, w_ref[:, _gate(k, hidden)], precision) + b_ref[_gate(k, hidden)][None, :]

    def body(s, h):
        t = _step_index(s, num_steps, reverse, backward=False)
        ok = valid_ref[:, t][:, None] != 0
        r, z = (jax.nn.sigmoid(us_ref[:, t, _gate(k, hidden)] + recurrent(h, k)) for k in (0, 1))
        a_n = recurrent(h, 2)
        n = jnp.tanh(us_ref[:, t, _gate(2, hidden)] + r * a_n)
        new_h = (1.0 - z) * n + z * h
        if residual_refs:
            gates_ref, a_n_ref, h_prev_ref = residual_refs
            for k, gate in enumerate((r, z, n)):
                gates_ref[:, t, _gate(k, hidden)] = gate
            a_n_ref[:, t, :] = a_n
            h_prev_ref[:, t, :] = h
        ys_ref[:, t, :] = jnp.where(ok, new_h, 0.0)
        return jnp.where(ok, new_h, h)

    h_ref[...] = jax.lax.fori_loop(0, num_steps, body, h0_ref[...])


def _gru_backward_kernel(
    w_ref, gates_ref, a_n_ref, h_prev_ref, valid_ref, dys_ref, dh_ref, dus_ref, dh0_ref, *, reverse, precision
):
    """The GRU forward kernel's steps in the opposite order: the cotangents of ``u_t`` from the saved gates,
    then ``dh_{t-1} = dh_t z + da_t W_h^T`` with ``da_t = (du_r, du_z, r du_n)``, the cotangent of
    ``a = h W_h + b_h``. A masked step passes ``dh`` through."""
    num_steps, hidden = gates_ref.shape[1], dh_ref.shape[-1]

    def body(s, dh):
        t = _step_index(s, num_steps, reverse, backward=True)
        ok = valid_ref[:, t][:, None] != 0
        r, z, n = (gates_ref[:, t, _gate(k, hidden)] for k in range(3))
        dh_t = dh + dys_ref[:, t, :]
        du_n = dh_t * (1.0 - z) * (1.0 - n * n)
        du_z = dh_t * (h_prev_ref[:, t, :] - n) * z * (1.0 - z)
        du_r = du_n * a_n_ref[:, t, :] * r * (1.0 - r)
        new_dh = dh_t * z
        for k, (du_k, da_k) in enumerate(((du_r, du_r), (du_z, du_z), (du_n, du_n * r))):
            dus_ref[:, t, _gate(k, hidden)] = jnp.where(ok, du_k, 0.0)
            new_dh += _times_transposed(da_k, w_ref[:, _gate(k, hidden)], precision)
        return jnp.where(ok, new_dh, dh)

    dh0_ref[...] = jax.lax.fori_loop(0, num_steps, body, dh_ref[...])


# --- calling them on a batch --------------------------------------------------------------------------------


def _blocked_call(kernel, shared, batched, outputs, static):
    """``kernel(*shared, *batched, *outputs)`` on a grid of batch blocks: ``shared`` (the weights) whole in
    every program, ``batched`` (batch first) and the outputs ``BATCH_BLOCK`` sequences per program. The
    batch is padded to a multiple of ``BATCH_BLOCK`` with masked-out sequences and cut back after.
    ``outputs``: ``(shape without the batch, dtype)`` each; ``static``: ``(reverse, precision, interpret)``."""
    reverse, precision, interpret = static
    batch = batched[0].shape[0]
    if batch == 0:
        return [jnp.zeros((0, *shape), dtype) for shape, dtype in outputs]
    padded = -(-batch // BATCH_BLOCK) * BATCH_BLOCK
    batched = [jnp.pad(a, [(0, padded - batch)] + [(0, 0)] * (a.ndim - 1)) for a in batched]

    def whole(a):
        return pl.BlockSpec(a.shape, lambda b: (0,) * a.ndim)

    def block(shape):
        return pl.BlockSpec((BATCH_BLOCK, *shape), lambda b: (b,) + (0,) * len(shape))

    call = pl.pallas_call(
        functools.partial(kernel, reverse=reverse, precision=precision),
        grid=(padded // BATCH_BLOCK,),
        in_specs=[*map(whole, shared), *(block(a.shape[1:]) for a in batched)],
        out_specs=[block(shape) for shape, _ in outputs],
        out_shape=[jax.ShapeDtypeStruct((padded, *shape), dtype) for shape, dtype in outputs],
        interpret=interpret,
        compiler_params=None if interpret else pallas_triton.CompilerParams(num_warps=NUM_WARPS, num_stages=1),
        name=kernel.__name__.strip("_"),
    )
    return [out[:batch] for out in call(*shared, *batched)]


class _Recurrence(NamedTuple):
    """One cell's kernels and what they exchange; the carry is a tuple of ``[b, h]`` arrays."""

    forward_kernel: Callable
    backward_kernel: Callable
    num_gates: int
    residual_widths: tuple[int, ...]  # the saved arrays' widths [b, t, width * h]
    backward_inputs: Callable  # residuals -> the ones the backward kernel reads
    weight_gradients: Callable  # (residuals, dus, precision) -> the weights' cotangents


def _outer(a, b, precision):
    """``sum`` over all leading axes of ``a^T b`` (``a: [..., m]``, ``b: [..., n]``): one matmul."""
    return jnp.matmul(a.reshape(-1, a.shape[-1]).T, b.reshape(-1, b.shape[-1]), precision=precision)


def _lstm_weight_gradients(residuals, dus, precision):
    _, h_prev, _ = residuals
    return (_outer(h_prev, dus, precision),)  # z_t = u_t + h_{t-1} W_h


def _gru_weight_gradients(residuals, dus, precision):
    gates, _, h_prev = residuals
    hidden = h_prev.shape[-1]
    r = gates[..., :hidden]
    da = jnp.concatenate([dus[..., : 2 * hidden], r * dus[..., 2 * hidden :]], axis=-1)  # a_t = h_{t-1} W_h + b_h
    return _outer(h_prev, da, precision), da.reshape(-1, da.shape[-1]).sum(0)


_RECURRENCES = {
    "lstm": _Recurrence(
        _lstm_forward_kernel, _lstm_backward_kernel, 4, (4, 1, 1), lambda res: (res[0], res[2]), _lstm_weight_gradients
    ),
    "gru": _Recurrence(_gru_forward_kernel, _gru_backward_kernel, 3, (3, 1, 1), lambda res: res, _gru_weight_gradients),
}


def _forward(recurrence: _Recurrence, static, weights, us, carry, valid, *, residuals: bool):
    """The forward kernel on a batch: ``(ys, carry)``, and with ``residuals`` ``(ys, carry, residuals)``."""
    num_steps, hidden = us.shape[1], carry[0].shape[-1]
    outputs = [((num_steps, hidden), jnp.float32)] + [((hidden,), jnp.float32)] * len(carry)
    if residuals:
        outputs += [((num_steps, width * hidden), jnp.float32) for width in recurrence.residual_widths]
    if num_steps == 0:  # no step: the carry is unchanged
        ys, *rest = [jnp.zeros((us.shape[0], *shape), dtype) for shape, dtype in outputs]
        rest[: len(carry)] = carry
    else:
        ys, *rest = _blocked_call(recurrence.forward_kernel, weights, (us, *carry, valid), outputs, static)
    final, saved = tuple(rest[: len(carry)]), tuple(rest[len(carry) :])
    return (ys, final, saved) if residuals else (ys, final)


def _backward(recurrence: _Recurrence, static, weights, saved, valid, dys, d_final):
    """The backward kernel on a batch: ``(dus, d_carry)``."""
    num_steps, hidden = dys.shape[1], dys.shape[-1]
    outputs = [((num_steps, recurrence.num_gates * hidden), jnp.float32)] + [((hidden,), jnp.float32)] * len(d_final)
    if num_steps == 0:  # no step: the carry's cotangent passes through
        return jnp.zeros((dys.shape[0], *outputs[0][0]), jnp.float32), tuple(d_final)
    inputs = (*recurrence.backward_inputs(saved), valid, dys, *d_final)
    w_h = weights[0]  # all the backward loop needs of the weights: dh_{t-1} = dz_t W_h^T
    dus, *d_carry = _blocked_call(recurrence.backward_kernel, (w_h,), inputs, outputs, static)
    return dus, tuple(d_carry)


def _one_sequence(batched_fn):
    """``batched_fn(weights, *args)`` (args batch first) as a function of one sequence, whose ``jax.vmap``
    calls ``batched_fn`` once for the whole batch. Where the weights are batched too (a vmap over params),
    each sequence runs alone."""

    def one(weights, *args):
        out = batched_fn(weights, *jax.tree_util.tree_map(lambda a: a[None], args))
        return jax.tree_util.tree_map(lambda a: a[0], out)

    fn = custom_vmap(one)

    @fn.def_vmap
    def rule(axis_size, in_batched, weights, *args):
        if any(jax.tree_util.tree_leaves(in_batched[0])):
            in_axes = jax.tree_util.tree_map(lambda b: 0 if b else None, tuple(in_batched))
            out = jax.vmap(one, in_axes)(weights, *args)
        else:
            broadcast = lambda a, b: a if b else jnp.broadcast_to(a, (axis_size, *a.shape))  # noqa: E731
            out = batched_fn(weights, *jax.tree_util.tree_map(broadcast, args, tuple(in_batched[1:])))
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return fn


@functools.cache
def _fused(kind: str, reverse: bool, precision, interpret: bool, per_sequence: bool):
    """The differentiable fused recurrence ``(weights, us, carry, valid) -> (ys, carry)`` of one cell kind,
    on a batch or (``per_sequence``) on one sequence."""
    recurrence, static = _RECURRENCES[kind], (reverse, precision, interpret)
    forward = functools.partial(_forward, recurrence, static, residuals=False)
    forward_saving = functools.partial(_forward, recurrence, static, residuals=True)
    backward = functools.partial(_backward, recurrence, static)
    if per_sequence:
        forward, forward_saving, backward = map(_one_sequence, (forward, forward_saving, backward))

    @jax.custom_vjp
    def run(weights, us, carry, valid):
        return forward(weights, us, carry, valid)

    def run_forward(weights, us, carry, valid):
        ys, final, saved = forward_saving(weights, us, carry, valid)
        return (ys, final), (weights, valid, saved)

    def run_backward(residuals, cotangents):
        weights, valid, saved = residuals
        dus, d_carry = backward(weights, saved, valid, *cotangents)
        return recurrence.weight_gradients(saved, dus, precision), dus, d_carry, None

    run.defvjp(run_forward, run_backward)
    return run


def _call(kind, weights, us, carry, valid, *, batched, reverse, precision, interpret):
    _check_arguments(kind, weights, us, carry, valid, batched=batched)
    valid = jnp.ones(us.shape[:-1], jnp.int32) if valid is None else valid.astype(jnp.int32)
    run = _fused(kind, reverse, precision, _interpret(interpret), per_sequence=not batched)
    return run(weights, us, carry, valid)


def _check_arguments(kind, weights, us, carry, valid, *, batched: bool) -> None:
    """Shapes and dtypes, each error naming the argument."""
    num_gates = _RECURRENCES[kind].num_gates
    w_h = weights[0]
    hidden = w_h.shape[0] if w_h.ndim == 2 else None
    if hidden is None or w_h.shape[1] != num_gates * hidden:
        raise ValueError(f"w_h: expected [h, {num_gates}h], got shape {w_h.shape}")
    if len(weights) > 1 and weights[1].shape != (num_gates * hidden,):
        raise ValueError(f"b_h: expected shape ({num_gates * hidden},), got {weights[1].shape}")
    lead = 2 if batched else 1
    if us.ndim != lead + 1 or us.shape[-1] != num_gates * hidden:
        raise ValueError(f"us: expected [{'b, ' if batched else ''}t, {num_gates * hidden}], got shape {us.shape}")
    carry_shape = us.shape[: lead - 1] + (hidden,)
    names = ("h0", "c0")[: len(carry)]
    for name, a in zip(names, carry, strict=True):
        if a.shape != carry_shape:
            raise ValueError(f"{name}: expected shape {carry_shape}, got {a.shape}")
    if valid is not None and valid.shape != us.shape[:lead]:
        raise ValueError(f"valid: expected shape {us.shape[:lead]}, got {valid.shape}")
    for name, a in (*zip(("w_h", "b_h"), weights, strict=False), ("us", us), *zip(names, carry, strict=True)):
        if a.dtype != jnp.float32:
            raise TypeError(f"{name}: expected float32, got {a.dtype}")


# --- the public functions --------------------------------------------------------------------------------


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
    """An LSTM layer's recurrence over a batch in one fused kernel (and its gradient in another).

    Args:
      w_h: the recurrent kernel ``[h, 4h]``, gates ``i, f, g, o`` (``LSTMParams.w_h``), float32.
      us: the projected inputs ``x_t W_i + b``, ``[b, t, 4h]`` (``LSTMCell.project``), float32.
      h0, c0: the carry before the first step, ``[b, h]`` each.
      valid: ``[b, t]`` booleans, True where a step runs; a masked step keeps the carry and outputs
        zeros (``unroll``'s ``length``/``mask``). None: every step.
      reverse: run the steps from last to first.
      precision: the matmuls' precision (``LSTMCell.precision``).
      interpret: run the kernels in Pallas' interpret mode; None: everywhere but on a GPU.

    Returns:
      ``(ys [b, t, h], h [b, h], c [b, h])``: the outputs and the carry after the last step.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.LSTMCell(16)
        >>> params = cell.init(jax.random.key(0), 8)
        >>> xs = jnp.ones((2, 5, 8))
        >>> h0 = c0 = jnp.zeros((2, 16))
        >>> ys, h, c = rj.kernels.lstm(params.w_h, cell.project(params, xs), h0, c0)
        >>> _, expected = jax.vmap(lambda x: rj.unroll(cell, params, x, hoist=True))(xs)
        >>> bool(jnp.allclose(ys, expected, atol=1e-5))
        True
    """
    options = {"reverse": reverse, "precision": precision, "interpret": interpret}
    ys, (h, c) = _call("lstm", (w_h,), us, (h0, c0), valid, batched=True, **options)
    return ys, h, c


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
    ``jax.vmap``: a vmapped call runs each kernel once for the whole batch.

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
    options = {"reverse": reverse, "precision": precision, "interpret": interpret}
    ys, (h, c) = _call("lstm", (w_h,), us, (h0, c0), valid, batched=False, **options)
    return ys, h, c


def gru(
    w_h: Array,
    b_h: Array,
    us: Array,
    h0: Array,
    valid: Array | None = None,
    *,
    reverse: bool = False,
    precision=None,
    interpret: bool | None = None,
) -> tuple[Array, Array]:
    """A reset-after GRU layer's recurrence over a batch in one fused kernel (and its gradient in another).

    Args:
      w_h: the recurrent kernel ``[h, 3h]``, gates ``r, z, n`` (``GRUParams.w_h``), float32.
      b_h: the recurrent bias ``[3h]`` (``GRUParams.b_h``).
      us: the projected inputs ``x_t W_i + b``, ``[b, t, 3h]`` (``GRUCell.project``), float32.
      h0: the carry before the first step, ``[b, h]``.
      valid, reverse, precision, interpret: as for :func:`lstm`.

    Returns:
      ``(ys [b, t, h], h [b, h])``: the outputs and the carry after the last step.

    Example:
        >>> import jax, jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.GRUCell(16)
        >>> params = cell.init(jax.random.key(0), 8)
        >>> xs = jnp.ones((2, 5, 8))
        >>> ys, h = rj.kernels.gru(params.w_h, params.b_h, cell.project(params, xs), jnp.zeros((2, 16)))
        >>> _, expected = jax.vmap(lambda x: rj.unroll(cell, params, x, hoist=True))(xs)
        >>> bool(jnp.allclose(ys, expected, atol=1e-5))
        True
    """
    options = {"reverse": reverse, "precision": precision, "interpret": interpret}
    ys, (h,) = _call("gru", (w_h, b_h), us, (h0,), valid, batched=True, **options)
    return ys, h


def gru_sequence(
    w_h: Array,
    b_h: Array,
    us: Array,
    h0: Array,
    valid: Array | None = None,
    *,
    reverse: bool = False,
    precision=None,
    interpret: bool | None = None,
) -> tuple[Array, Array]:
    """:func:`gru` for one sequence (``us: [t, 3h]``, ``h0: [h]``, ``valid: [t]``), batched with
    ``jax.vmap``: a vmapped call runs each kernel once for the whole batch."""
    options = {"reverse": reverse, "precision": precision, "interpret": interpret}
    ys, (h,) = _call("gru", (w_h, b_h), us, (h0,), valid, batched=False, **options)
    return ys, h
