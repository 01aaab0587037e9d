"""Applications built on rnnjax, not imported by ``import rnnjax``.

- :mod:`rnnjax.apps.lm`: the character-level language-model job (``rnnjax demo``), against a
  Kneser-Ney baseline; :mod:`rnnjax.apps.cli`: the ``rnnjax`` command line.
- :mod:`rnnjax.apps.captioning`: image captioning of digit strips (a CNN encoder, an attention
  decoder, BLEU).
- :mod:`rnnjax.apps.speech`: speech recognition with CTC (synthesised speech, log-mel features).
- :mod:`rnnjax.apps.forecasting`: time-series forecasting (one-step, recursive and direct
  multi-step), with a scaler fitted on the training span.
- :mod:`rnnjax.apps.fraud`: transaction-fraud detection (a history generator, a sequence
  classifier, ROC-AUC, average precision and recall per pattern).

Import them by name, e.g. ``from rnnjax.apps import lm``.
"""

import importlib

_APPS = ("captioning", "cli", "forecasting", "fraud", "lm", "speech")


def __getattr__(name: str):
    if name in _APPS:  # rj.apps.lm works after `import rnnjax`, importing only that application
        return importlib.import_module(f"rnnjax.apps.{name}")
    raise AttributeError(f"module 'rnnjax.apps' has no attribute {name!r}")
