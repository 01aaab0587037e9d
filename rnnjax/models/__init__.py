r"""Models: the four shapes of RNN use, built from cells, sequence layers and heads.

=================  ================================  ==================================================
shape              model                             ``apply`` on ONE example
=================  ================================  ==================================================
many-to-one        :class:`SequenceClassifier`       ``xs [t, f]`` (or token ids ``[t]``) -> ``[l]``
many-to-many       :class:`SequenceTagger`           ``xs [t, f]`` (or token ids ``[t]``) -> ``[t, l]``
many-to-many       :class:`LanguageModel`            ``tokens [t]`` -> ``[t, v]`` (teacher forcing)
one-to-many        :class:`ConditionedGenerator`     ``features [d]``, ``tokens [t]`` -> ``[t, v]``
encoder-decoder    :class:`Seq2Seq`                  ``src [s]``, ``tgt_in [t]`` -> ``[t, v]``
=================  ================================  ==================================================

Every model is a frozen, hashable dataclass of hyper-parameters (so it, and its bound
methods, can be static arguments of :func:`jax.jit`) with ``init(key) -> params``, a
NamedTuple of its parts' params, and a pure ``apply`` on ONE example; batch with
:func:`jax.vmap`. ``length`` marks steps ``>= length`` as padding: whatever they hold,
they never change an output at a valid step, and per-step outputs there are zeros.

The generative models (:class:`LanguageModel`, :class:`ConditionedGenerator`,
:class:`Seq2Seq`) also give an initial carry and ``step_fn(params, carry, token) ->
(carry, logits)``, the callback that :mod:`rnnjax.decode` drives; stepping through a
sequence gives the logits of ``apply`` with teacher forcing.

Shape letters as in :mod:`rnnjax.typing`: t time, s source time, f input features, d condition
features, h hidden, E embedding, e encoder outputs, a attention size, l labels, v vocabulary.
"""

from rnnjax.models.classifier import ClassifierParams, SequenceClassifier
from rnnjax.models.generator import ConditionedGenerator, GeneratorCarry, GeneratorParams
from rnnjax.models.language_model import LanguageModel, LanguageModelParams
from rnnjax.models.seq2seq import Seq2Seq, Seq2SeqCarry, Seq2SeqParams
from rnnjax.models.tagger import SequenceTagger, TaggerParams

__all__ = [
    "ClassifierParams",
    "ConditionedGenerator",
    "GeneratorCarry",
    "GeneratorParams",
    "LanguageModel",
    "LanguageModelParams",
    "Seq2Seq",
    "Seq2SeqCarry",
    "Seq2SeqParams",
    "SequenceClassifier",
    "SequenceTagger",
    "TaggerParams",
]
