"""Sequence losses with padding masks. Every loss is a mean over the valid steps only.

Masks come from lengths with :func:`length_mask`; a step with mask False (or weight 0)
contributes nothing, whatever its logits or targets hold (padding may contain anything).

What is checked, and when: shapes and dtypes always, when the function is called or traced
(free under ``jit``). Values (a target id outside the vocabulary, a ``length`` past the end) are
checked at once when the arrays are concrete (called outside ``jit``), and under ``jit`` only in
checked mode (:func:`rnnjax.checking`), as ``checkify`` checks; otherwise nothing is added to the
jitted computation.
"""

import jax
import jax.numpy as jnp
import optax

from rnnjax._src import checks, masks
from rnnjax.typing import Array


def length_mask(lengths: Array, num_steps: int) -> Array:
    """``mask[..., t] = t < lengths[...]``: True on the valid steps.

    Args:
      lengths: integer lengths ``[...]`` (e.g. ``[b]``).
      num_steps: ``t``.

    Returns:
      Boolean mask ``[..., t]``.

    Example:
        >>> import jax.numpy as jnp, rnnjax as rj
        >>> rj.losses.length_mask(jnp.array([2, 0, 3]), 3).astype(int).tolist()
        [[1, 1, 0], [0, 0, 0], [1, 1, 1]]
    """
    lengths = jnp.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"lengths: expected integers, got dtype {lengths.dtype}")
    return masks.valid_mask(lengths, num_steps)


def _masked_mean(values: Array, mask: Array | None) -> Array:
    """The mean of ``values`` weighted by ``mask`` (boolean, or float weights): ``sum(m * v) / sum(m)``."""
    if mask is None:
        return jnp.mean(values)
    mask = jnp.asarray(mask)
    if mask.shape != values.shape:
        raise ValueError(f"mask: expected shape {values.shape} (one flag or weight per step), got {mask.shape}")
    if not (mask.dtype == bool or jnp.issubdtype(mask.dtype, jnp.number)):
        raise TypeError(f"mask: expected booleans or numeric weights, got dtype {mask.dtype}")
    if mask.dtype != bool:
        checks.values("mask", "weights >= 0", lambda m: m >= 0, mask)
    weights = mask.astype(values.dtype)
    # a select, not only a product: NaN or inf in the padding must not leak (NaN * 0 is NaN);
    # an all-padding batch gives 0, not NaN
    total = jnp.sum(jnp.where(weights != 0, weights * values, jnp.zeros_like(values)))
    count = jnp.sum(weights)
    return total / jnp.where(count != 0, count, jnp.ones_like(count))


def sequence_cross_entropy(logits: Array, targets: Array, mask: Array | None = None) -> Array:
    """Softmax cross-entropy averaged over the valid steps.

    .. math:: L = \\frac{1}{\\sum m_t} \\sum_t m_t \\, (-\\log \\mathrm{softmax}(z_t)_{y_t})

    Args:
      logits: ``[..., t, v]`` (any leading shape, e.g. ``[b, t, v]``).
      targets: integer ids ``[..., t]``, in ``[0, v)`` where the mask is not 0.
      mask: boolean ``[..., t]``, True on valid steps, or weights ``m_t >= 0`` (the loss is
        then the weighted mean); None: all valid.

    Returns:
      Scalar mean loss in nats (divide by ``log 2`` for bits).

    Checks: the shapes and dtypes always; target ids in ``[0, v)`` (where the mask is not 0) at
    once on concrete arrays, under ``jit`` in checked mode only (:func:`rnnjax.checking`).

    Example:
        >>> import jax.numpy as jnp, rnnjax as rj
        >>> logits = jnp.zeros((2, 3, 4))                  # uniform over 4 tokens
        >>> loss = rj.losses.sequence_cross_entropy(logits, jnp.zeros((2, 3), int))
        >>> round(float(loss), 4) == round(float(jnp.log(4.0)), 4)
        True
    """
    logits = checks.floating(logits, "logits")
    targets = jnp.asarray(targets)
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        raise TypeError(f"targets: expected integer class ids, got dtype {targets.dtype}")
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"targets: expected shape {logits.shape[:-1]} (logits without the class axis), got {targets.shape}"
        )
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
    mean = _masked_mean(losses, mask)  # checks the mask first
    vocab = logits.shape[-1]
    expected = f"class ids in [0, {vocab}) (the last axis of logits) on the valid steps"
    if mask is None:
        checks.values("targets", expected, lambda t: (t >= 0) & (t < vocab), targets)
    else:
        valid = lambda t, m: ((t >= 0) & (t < vocab)) | ~m.astype(bool)  # noqa: E731
        checks.values("targets", expected, valid, targets, jnp.asarray(mask))
    return mean


def sequence_mse(predictions: Array, targets: Array, mask: Array | None = None) -> Array:
    """Mean squared error over the valid steps, averaged over the feature axis too.

    Args:
      predictions: ``[..., t, o]``.
      targets: ``[..., t, o]``.
      mask: boolean ``[..., t]``, or weights ``>= 0`` (the weighted mean); None: all valid.

    Returns:
      Scalar.

    Checks: the shapes and dtypes always; mask weights ``>= 0`` at once when concrete, under
    ``jit`` in checked mode only (:func:`rnnjax.checking`).

    Example:
        >>> import jax.numpy as jnp, rnnjax as rj
        >>> preds, targets = jnp.ones((4, 1)), jnp.zeros((4, 1))
        >>> float(rj.losses.sequence_mse(preds, targets, jnp.array([True, True, False, False])))
        1.0
    """
    predictions = checks.floating(predictions, "predictions")
    if jnp.shape(targets) != predictions.shape:
        raise ValueError(f"targets: expected shape {predictions.shape} (as predictions), got {jnp.shape(targets)}")
    per_step = jnp.mean((predictions - jnp.asarray(targets, predictions.dtype)) ** 2, axis=-1)
    return _masked_mean(per_step, mask)


def last_step(ys: Array, length: Array | int | None = None) -> Array:
    """The output at the last valid step: ``ys[length - 1]`` (``ys[-1]`` without a length).

    Args:
      ys: ``[t, ...]`` for one sequence (vmap for a batch), with ``t >= 1``.
      length: number of valid steps, in ``[0, t]`` (0 gives zeros).

    Checks: the shapes always (``t >= 1``, ``length`` an integer scalar); ``0 <= length <= t`` at
    once when ``length`` is concrete, under ``jit`` or ``vmap`` in checked mode only
    (:func:`rnnjax.checking`).

    Example:
        >>> import jax.numpy as jnp, rnnjax as rj
        >>> rj.losses.last_step(jnp.arange(5.0)[:, None], 3).tolist()
        [2.0]
    """
    ys = jnp.asarray(ys)
    if ys.ndim < 1 or ys.shape[0] == 0:
        raise ValueError(f"ys: expected shape [t, ...] with at least one step, got shape {tuple(ys.shape)}")
    if length is None:
        return ys[-1]
    length = checks.length(length, ys.shape[0])
    last = jnp.take(ys, jnp.maximum(length - 1, 0), axis=0)
    return jnp.where(length > 0, last, jnp.zeros_like(last))  # no valid step: zeros, not ys[-1]


def last_step_mse(ys: Array, targets: Array, length: Array | int | None = None) -> Array:
    """Squared error of the output at the last valid step, averaged over features.

    Args:
      ys: ``[t, o]`` for one sequence.
      targets: ``[o]``.
      length: valid steps (None: ``t``); checked as in :func:`last_step`.

    Example:
        >>> import jax.numpy as jnp, rnnjax as rj
        >>> float(rj.losses.last_step_mse(jnp.ones((5, 2)), jnp.zeros(2), 3))
        1.0
    """
    last = last_step(ys, length)
    if jnp.shape(targets) != last.shape:
        raise ValueError(f"targets: expected shape {last.shape} (one step of ys), got {jnp.shape(targets)}")
    return jnp.mean((last - targets) ** 2)


_optax_ctc_loss = jax.jit(optax.ctc_loss, static_argnames="blank_id")


def ctc_loss_from_lengths(
    logits: Array, lengths: Array, labels: Array, label_lengths: Array, *, blank: int = 0
) -> Array:
    """Per-sequence CTC loss ``-log P(labels | frames)`` from lengths: :func:`optax.ctc_loss` with paddings built.

    optax wants padding flags (1.0 on padded frames and labels); this builds them with
    :func:`rnnjax.losses.length_mask`. Frames from ``lengths`` on and labels from ``label_lengths``
    on are ignored. A label sequence that cannot fit in its frames (it needs one frame per label
    plus one blank between repeated labels) gets a huge finite loss (optax's ``log_epsilon``).

    Args:
      logits: frame logits ``[b, t, v]`` (or ``[t, v]`` for one utterance).
      lengths: valid frames ``[b]`` (or a scalar), in ``[0, t]``.
      labels: target label ids ``[b, n]`` (or ``[n]``), in ``[0, v)`` and never ``blank`` before
        ``label_lengths`` (the padding after it may hold anything).
      label_lengths: valid labels ``[b]`` (or a scalar), in ``[0, n]``.
      blank: the blank label id.

    Returns:
      Losses ``[b]`` (or a scalar), in nats; average them yourself (e.g. per label).

    Checks: the shapes, dtypes and ``blank`` always; the values of ``lengths``,
    ``label_lengths`` and the valid ``labels`` at once when concrete (called outside ``jit``),
    under ``jit`` in checked mode only (:func:`rnnjax.checking`).

    Example:
        >>> import jax.numpy as jnp, rnnjax as rj
        >>> logits = jnp.log(jnp.array([[0.6, 0.4], [0.6, 0.4], [0.5, 0.5]]))   # the third frame is padding
        >>> loss = rj.losses.ctc_loss_from_lengths(logits, 2, jnp.array([1, 1]), 1)   # P("a") = 0.64
        >>> round(float(jnp.exp(-loss)), 4)
        0.64
    """
    logits = checks.floating(logits, "logits")
    labels = checks.token_ids(labels, "labels")
    single = logits.ndim == 2
    if logits.ndim not in (2, 3):
        raise ValueError(f"logits: expected shape [b, t, v] (or [t, v]), got shape {tuple(logits.shape)}")
    if labels.ndim != logits.ndim - 1:
        raise ValueError(f"labels: expected shape {'[n]' if single else '[b, n]'}, got shape {tuple(labels.shape)}")
    vocab = logits.shape[-1]
    if isinstance(blank, bool) or not isinstance(blank, int) or not 0 <= blank < vocab:
        raise ValueError(f"blank: expected a label id in [0, {vocab}) (the vocabulary v of logits), got {blank!r}")
    lengths = checks.token_ids(lengths, "lengths", ndim=logits.ndim - 2, shape="[]" if single else "[b]")
    label_lengths = checks.token_ids(
        label_lengths, "label_lengths", ndim=logits.ndim - 2, shape="[]" if single else "[b]"
    )
    num_frames, num_labels = logits.shape[-2], labels.shape[-1]
    checks.values(
        "lengths", f"0 <= lengths <= {num_frames} (the frames t of logits)", checks.in_range(0, num_frames + 1), lengths
    )
    checks.values(
        "label_lengths",
        f"0 <= label_lengths <= {num_labels} (the labels n of labels)",
        checks.in_range(0, num_labels + 1),
        label_lengths,
    )
    if single:
        logits, labels, lengths, label_lengths = logits[None], labels[None], lengths[None], label_lengths[None]
    dtype = logits.dtype
    logit_paddings = (~length_mask(lengths, num_frames)).astype(dtype)
    label_valid = length_mask(label_lengths, num_labels)
    checks.values(
        "labels",
        f"label ids in [0, {vocab}) other than blank ({blank}) before label_lengths",
        lambda ids, valid: ((ids >= 0) & (ids < vocab) & (ids != blank)) | ~valid,
        labels,
        label_valid,
    )
    label_paddings = (~label_valid).astype(dtype)
    losses = _optax_ctc_loss(logits, logit_paddings, labels, label_paddings, blank_id=blank)
    return losses[0] if single else losses
