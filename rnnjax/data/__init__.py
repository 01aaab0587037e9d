r"""Data for recurrent models: a text corpus, a character vocabulary, batching, synthetic tasks.

Everything here is NumPy and deterministic: the same arguments give the same arrays on every
machine (the default corpus is the running Python's standard library, so it is the same for
the same Python version). Arrays come back as NumPy arrays of explicit dtypes (``int32`` token
ids, ``float32`` values); :func:`jax.numpy.asarray` or a jitted step takes them as they are.

============================  ====================================================================
what                          functions
============================  ====================================================================
text corpus                   :func:`load_corpus` -> :class:`Corpus` (default: the Python standard library)
character vocabulary          :class:`CharVocab` (``<pad>``, ``<unk>``, ``<bos>``, ``<eos>`` ids, JSON)
language-model batches        :func:`lm_streams`, :func:`lm_windows`, :func:`lm_batch`
padded batches                :func:`pad_batch`
long-dependency tasks         :func:`adding_problem`, :func:`copy_task`
time series                   :func:`time_series_windows`, :func:`sunspots`
============================  ====================================================================

Shape letters (as in :mod:`rnnjax.typing`): ``b`` batch, ``t`` time, ``f`` features, ``n`` the
length of one stream, ``w`` a window, ``m`` the number of windows.

Random tasks take a ``seed``: anything :func:`numpy.random.default_rng` accepts (an int, a
sequence of ints such as ``(seed, step)``, or a :class:`numpy.random.Generator`, which is
advanced). JAX PRNG keys are not accepted: these are NumPy data pipelines.
"""

from rnnjax.data.batching import lm_batch, lm_streams, lm_windows, pad_batch
from rnnjax.data.corpus import DEFAULT_MAX_CHARS, Corpus, load_corpus
from rnnjax.data.tasks import adding_problem, copy_task
from rnnjax.data.time_series import sunspots, time_series_windows
from rnnjax.data.vocab import CharVocab

__all__ = [
    "DEFAULT_MAX_CHARS",
    "CharVocab",
    "Corpus",
    "adding_problem",
    "copy_task",
    "lm_batch",
    "lm_streams",
    "lm_windows",
    "load_corpus",
    "pad_batch",
    "sunspots",
    "time_series_windows",
]
