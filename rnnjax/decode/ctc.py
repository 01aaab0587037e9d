"""CTC decoding: frame posteriors ``[t, v]`` -> label sequences (blanks and repeats collapsed).

:func:`ctc_greedy` (best path, repeats merged then blanks dropped) and
:func:`ctc_prefix_beam_search` (the most likely label sequences, summed over alignments) take
the number of valid frames ``length``, have fixed shapes under ``jit`` and batch with
``jax.vmap``; labels are padded with ``pad_id`` (-1).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from rnnjax._src import checks, masks
from rnnjax.typing import Array


def _ctc_inputs(log_probs, length, blank, pad_id):
    log_probs = checks.floating(log_probs, "log_probs")
    if log_probs.ndim != 2:
        hint = " (one utterance; batch with jax.vmap)" if log_probs.ndim == 3 else ""
        raise ValueError(f"log_probs: expected shape [t, v]{hint}, got shape {tuple(log_probs.shape)}")
    num_steps, vocab = log_probs.shape
    if isinstance(blank, bool) or not isinstance(blank, int) or not 0 <= blank < vocab:
        raise ValueError(f"blank: expected a label id in [0, {vocab}) (the vocabulary v of log_probs), got {blank!r}")
    if isinstance(pad_id, bool) or not isinstance(pad_id, int):
        raise ValueError(f"pad_id: expected an int, got {pad_id!r}")
    return log_probs, checks.length(length, num_steps)


@functools.partial(jax.jit, static_argnames=("blank", "pad_id"))
def _ctc_greedy(log_probs, length, blank, pad_id):
    num_steps = log_probs.shape[0]
    best = jnp.argmax(log_probs, axis=-1).astype(jnp.int32)  # [t]
    previous = jnp.concatenate([jnp.full((1,), -1, jnp.int32), best])[:-1]
    keep = (best != blank) & (best != previous)
    if length is not None:
        keep = keep & masks.valid_mask(length, num_steps)
    # dropped steps write to a sentinel slot past the end, sliced off: a scatter's out-of-range index with
    # mode="drop" is not dropped everywhere (vmapped on a GPU, this function emitted a blank as a label)
    position = jnp.where(keep, jnp.cumsum(keep) - 1, num_steps)
    labels = jnp.full((num_steps + 1,), pad_id, jnp.int32).at[position].set(best)[:num_steps]
    return labels, jnp.sum(keep, dtype=jnp.int32)


def ctc_greedy(log_probs: Array, length: Array | int | None = None, *, blank: int = 0, pad_id: int = -1):
    """CTC best-path decoding: the most likely label per frame, repeats merged, then blanks dropped.

    ``a a _ a b b _`` gives ``a a b``: repeats merge unless a blank separates them. This is the
    label sequence of the single most likely alignment, not always the most likely label sequence
    (which sums over alignments: see :func:`ctc_prefix_beam_search`).

    Args:
      log_probs: frame log-probabilities (or logits: only the argmax matters) ``[t, v]`` of one
        utterance; batch with ``jax.vmap``.
      length: number of valid frames (int scalar; frames from ``length`` on are ignored), or None
        for all ``t``.
      blank: the blank label id.
      pad_id: written after the last label.

    Returns:
      ``(labels [t], num_labels)``: the decoded labels, then ``pad_id``.

    Example:
        >>> import jax.numpy as jnp, rnnjax as rj
        >>> best_path = jnp.array([1, 1, 0, 1, 2, 2, 0])   # "a a _ a b b _", blank = 0
        >>> labels, n = rj.decode.ctc_greedy(jnp.eye(3)[best_path])
        >>> labels.tolist(), int(n)
        ([1, 1, 2, -1, -1, -1, -1], 3)
    """
    log_probs, length = _ctc_inputs(log_probs, length, blank, pad_id)
    return _ctc_greedy(log_probs, length, blank, pad_id)


class CTCBeamState(NamedTuple):
    """The CTC prefix beam search's loop state: ``k`` distinct prefixes (label sequences so far)."""

    prefixes: Array  # [k, l]   labels, -1 after the prefix's length; empty slots hold the empty prefix
    lengths: Array  # [k]       number of labels of each prefix
    log_blank: Array  # [k]     log P(prefix, alignment so far ends in blank) (float32); -inf: empty slot
    log_label: Array  # [k]     log P(prefix, alignment so far ends in the prefix's last label)


class CTCBeamOutput(NamedTuple):
    """What :func:`ctc_prefix_beam_search` returns: ``k`` label sequences, best first."""

    labels: Array  # [k, l]  best first, pad_id after the length
    lengths: Array  # [k]
    scores: Array  # [k]     log P(labels | frames) summed over alignments; -inf marks an empty slot


def _ctc_beam_step(state: CTCBeamState, frame, blank):
    """One frame of prefix search: extend every prefix, merge identical prefixes, keep the best ``k``."""
    y, active = frame  # [v] log-probabilities of this frame, [] whether it is inside ``length``
    k, max_labels = state.prefixes.shape
    vocab = y.shape[0]
    neg_inf = jnp.float32(-jnp.inf)
    rows = jnp.arange(k)
    total = jnp.logaddexp(state.log_blank, state.log_label)  # [k]
    alive = total > neg_inf
    has_last = state.lengths > 0
    last = jnp.where(has_last, state.prefixes[rows, jnp.maximum(state.lengths - 1, 0)], 0)  # [k]

    # the prefix stays: a blank (from either ending), or its last label repeated (only from a label ending)
    stay_blank = total + y[blank]
    stay_label = jnp.where(has_last, state.log_label + y[last], neg_inf)

    # the prefix grows by label c: a repeat of the last label needs a blank in between
    labels = jnp.arange(vocab)
    grow = jnp.where((labels[None, :] == last[:, None]) & has_last[:, None], state.log_blank[:, None], total[:, None])
    grow = grow + y[None, :]  # [k, v]
    grow = jnp.where((labels[None, :] == blank) | (state.lengths[:, None] >= max_labels), neg_inf, grow)

    # merge: prefix i == prefix j + c when i minus its last label is j, and c is i's last label
    positions = jnp.arange(max_labels)
    parent_part = jnp.where(positions[None, :] == state.lengths[:, None] - 1, -1, state.prefixes)  # [k, l]
    is_child = (
        (has_last & alive)[:, None]
        & alive[None, :]
        & (state.lengths[:, None] == state.lengths[None, :] + 1)
        & jnp.all(parent_part[:, None, :] == state.prefixes[None, :, :], axis=-1)
    )  # [k (child i), k (parent j)]; beams are distinct, so each i has at most one parent
    has_parent = jnp.any(is_child, axis=1)
    parent = jnp.argmax(is_child, axis=1)
    merged = jnp.where(has_parent, grow[parent, last], neg_inf)
    stay_label = jnp.logaddexp(stay_label, merged)
    # now counted in beam i; beams without a parent write to a sentinel row k, sliced off (see _ctc_greedy)
    grow = jnp.concatenate([grow, jnp.zeros((1, vocab), grow.dtype)])
    grow = grow.at[jnp.where(has_parent, parent, k), last].set(neg_inf)[:k]

    # the best k of: k prefixes that stay and k * v grown ones
    cand_blank = jnp.concatenate([stay_blank, jnp.full((k * vocab,), neg_inf)])
    cand_label = jnp.concatenate([stay_label, grow.reshape(-1)])
    scores, pick = lax.top_k(jnp.logaddexp(cand_blank, cand_label), k)
    grown = pick >= k
    source = jnp.where(grown, (pick - k) // vocab, pick)
    label = ((pick - k) % vocab).astype(jnp.int32)
    lengths = state.lengths[source]
    prefixes = jnp.where(
        grown[:, None] & (positions[None, :] == lengths[:, None]), label[:, None], state.prefixes[source]
    )
    lengths = lengths + grown.astype(jnp.int32)
    keep = scores > neg_inf  # an empty slot holds the empty prefix, so it never matches a child
    new = CTCBeamState(
        prefixes=jnp.where(keep[:, None], prefixes, -1),
        lengths=jnp.where(keep, lengths, 0),
        log_blank=cand_blank[pick],
        log_label=cand_label[pick],
    )
    new = jax.tree_util.tree_map(lambda n, o: jnp.where(active, n, o), new, state)
    return new, None


@functools.partial(jax.jit, static_argnames=("beam_size", "blank", "max_labels", "pad_id"))
def _ctc_prefix_beam_search(log_probs, length, beam_size, blank, max_labels, pad_id):
    num_steps = log_probs.shape[0]
    log_probs = jax.nn.log_softmax(log_probs.astype(jnp.float32), axis=-1)
    active = masks.valid_mask(length, num_steps)
    k, neg_inf = beam_size, jnp.float32(-jnp.inf)
    init = CTCBeamState(
        prefixes=jnp.full((k, max_labels), -1, jnp.int32),
        lengths=jnp.zeros((k,), jnp.int32),
        log_blank=jnp.full((k,), neg_inf).at[0].set(0.0),  # one live prefix, the empty one
        log_label=jnp.full((k,), neg_inf),
    )
    final, _ = lax.scan(functools.partial(_ctc_beam_step, blank=blank), init, (log_probs, active))
    scores = jnp.logaddexp(final.log_blank, final.log_label)
    order = jnp.argsort(-scores, stable=True)  # top_k keeps them sorted; this covers length == 0
    labels = jnp.where(final.prefixes >= 0, final.prefixes, pad_id)
    return CTCBeamOutput(labels[order], final.lengths[order], scores[order])


def ctc_prefix_beam_search(
    log_probs: Array,
    length: Array | int | None = None,
    *,
    beam_size: int,
    blank: int = 0,
    max_labels: int | None = None,
    pad_id: int = -1,
) -> CTCBeamOutput:
    """CTC prefix beam search: the ``beam_size`` most likely label sequences, summed over alignments.

    A CTC model gives per-frame probabilities ``y[s, c]`` over labels and a blank; a label sequence
    ``l`` has probability :math:`P(l) = \\sum_{\\pi: B(\\pi) = l} \\prod_s y[s, \\pi_s]`, where
    :math:`B` merges repeats and then drops blanks. Prefix search keeps ``k`` distinct prefixes,
    each with two probabilities: ``p_b`` (the alignments so far end in a blank) and ``p_nb`` (they
    end in the prefix's last label). At each frame a prefix ``l`` stays ``l`` through a blank
    (``p_b' += (p_b + p_nb) y_blank``) or a repeat of its last label (``p_nb' += p_nb y_last``), and
    grows to ``l + c`` (``p_nb' += (p_b + p_nb) y_c``, but only ``p_b y_c`` when ``c`` is the last
    label: a repeat needs a blank in between). A grown prefix that is already in the beam is merged
    into it (its mass added to that beam's ``p_nb``); then the best ``k`` by ``p_b + p_nb`` stay.

    Everything has fixed shapes: the candidates are the ``k`` prefixes that stay and ``k v`` grown
    ones (parent beam, label); a grown candidate duplicates beam ``i`` exactly when ``i`` minus its
    last label equals the parent, found by comparing the ``[k, l]`` prefix buffers. One
    ``lax.scan`` over the frames, in log space (float32), jitted with the sizes static; batch with
    ``jax.vmap``. With a beam wide enough to hold every prefix the search is exact; a narrower
    beam can only under-estimate scores (mass of pruned prefixes is lost).

    Args:
      log_probs: frame log-probabilities ``[t, v]`` of one utterance (logits work too: they are
        normalised with ``log_softmax``).
      length: number of valid frames (int scalar; later frames are ignored), or None for all ``t``.
      beam_size: ``k``, the number of prefixes kept.
      blank: the blank label id.
      max_labels: ``l``, the longest prefix kept (default ``t``; longer prefixes are dropped).
      pad_id: written after each sequence's labels.

    Returns:
      :class:`CTCBeamOutput` ``(labels [k, l], lengths [k], scores [k])``, best first; ``scores``
      is ``log P(labels | frames)``; ``-inf`` marks an empty slot (fewer than ``k`` sequences have
      a nonzero probability).

    Example:
        >>> import jax.numpy as jnp, rnnjax as rj
        >>> # two frames, blank = 0: the best path is "_ _" (0.36), but "a" has 0.24 + 0.24 + 0.16 = 0.64
        >>> probs = jnp.array([[0.6, 0.4], [0.6, 0.4]])
        >>> rj.decode.ctc_greedy(jnp.log(probs))[1].item()
        0
        >>> out = rj.decode.ctc_prefix_beam_search(jnp.log(probs), beam_size=2)
        >>> out.labels.tolist(), out.lengths.tolist(), [round(float(p), 2) for p in jnp.exp(out.scores)]
        ([[1, -1], [-1, -1]], [1, 0], [0.64, 0.36])

    References:
      Graves, "Supervised sequence labelling with recurrent neural networks", 2012 (prefix search);
      Hannun et al., "First-pass large vocabulary continuous speech recognition using bi-directional
      recurrent DNNs", 2014.
    """
    log_probs, length = _ctc_inputs(log_probs, length, blank, pad_id)
    checks.positive_int(beam_size, "beam_size")
    if max_labels is None:
        max_labels = max(log_probs.shape[0], 1)
    checks.positive_int(max_labels, "max_labels")
    return _ctc_prefix_beam_search(log_probs, length, beam_size, blank, int(max_labels), pad_id)
