"""Decoding: greedy, sampling and beam search, jitted with fixed shapes.

Every decoder reaches the model only through a step callback::

    step_fn(params, carry, token) -> (carry, logits)     # token: scalar int, logits: [v]

(a language model's or a seq2seq decoder's step, for ONE sequence; batch with ``jax.vmap``).
Decoding starts from ``carry`` by feeding ``bos``. Outputs have a fixed length ``max_len``:
the generated tokens, ``eos`` included, then ``pad_id``. Lengths count the ``eos``; a
sequence that reaches ``max_len`` without ``eos`` has length ``max_len``.

The decoders are jitted with ``step_fn`` and the sizes as static arguments: a second call
with params of the same shapes does not retrace (pass the same ``step_fn`` object, not a new
lambda each time). Scores are computed in float32 whatever the model's dtype.

What is checked, and when: the sizes (``max_len``, ``eos``, ``beam_size``, ``top_k``, ...) and
every shape and dtype at each call, before anything runs (``eos`` and ``bos`` against the
vocabulary size of ``step_fn``'s logits, found from their shape). Values that may be arrays
(``bos``, ``temperature``, ``top_p``, CTC lengths and labels) are checked at once when concrete
(Python or NumPy numbers, arrays outside ``jit``); when traced (under your ``jit`` or ``vmap``)
only in checked mode, :func:`rnnjax.checking`, which also runs the decoders' own compiled loop
checkified so that checks inside ``step_fn`` raise. Outside checked mode nothing is added to the
compiled computation.

CTC (connectionist temporal classification) decoders work on frame posteriors instead, the
``[t, v]`` log-probabilities of an acoustic model for one utterance, with a ``blank`` label:
:func:`ctc_greedy` (best path, repeats merged then blanks dropped) and
:func:`ctc_prefix_beam_search` (the most likely label sequences, summed over alignments). Both
take the number of valid frames ``length``, have fixed shapes under ``jit`` and batch with
``jax.vmap``; labels are padded with ``pad_id`` (-1). Training uses :func:`rnnjax.losses.ctc_loss_from_lengths`;
:func:`rnnjax.metrics.error_rate` (CER/WER) and :func:`rnnjax.metrics.edit_distance` score the
results on the host.

- :mod:`~rnnjax.decode.autoregressive`: :func:`greedy`, :func:`sample`, :func:`beam_search`.
- :mod:`~rnnjax.decode.ctc`: :func:`ctc_greedy`, :func:`ctc_prefix_beam_search`.
"""

from rnnjax.decode.autoregressive import BeamOutput, BeamState, beam_search, greedy, length_penalty, sample
from rnnjax.decode.ctc import CTCBeamOutput, CTCBeamState, ctc_greedy, ctc_prefix_beam_search

__all__ = [
    "BeamOutput",
    "BeamState",
    "CTCBeamOutput",
    "CTCBeamState",
    "beam_search",
    "ctc_greedy",
    "ctc_prefix_beam_search",
    "greedy",
    "length_penalty",
    "sample",
]
