"""rnnjax: recurrent networks as pure functions for JAX.

Cells are frozen dataclasses with pure methods over NamedTuple params;
:func:`unroll` runs one over a sequence with :func:`jax.lax.scan`; sequence
layers (:class:`RNN`, :class:`Bidirectional`, :class:`Stack`) build models.
See ``docs/`` for the guide.
"""

import importlib

from rnnjax import attention as attention
from rnnjax import decode as decode
from rnnjax import losses as losses
from rnnjax import metrics as metrics
from rnnjax import models as models
from rnnjax import recurrence as recurrence  # unroll and its per-backend defaults
from rnnjax import train as train
from rnnjax._src.checks import checking
from rnnjax.cells import (
    DenseParams,
    ElmanCell,
    ElmanParams,
    GRUCell,
    GRUParams,
    HiddenCarry,
    JordanCarry,
    JordanCell,
    JordanParams,
    LayerNormGRUCell,
    LayerNormGRUParams,
    LayerNormLSTMCell,
    LayerNormLSTMParams,
    LayerNormParams,
    LSTMCarry,
    LSTMCell,
    LSTMParams,
    MinGRUCell,
    MinGRUParams,
    MinLSTMCell,
    MinLSTMParams,
    ProjectedLSTMParams,
    RMLPCell,
    RMLPParams,
)
from rnnjax.heads import Dense, Embedding, EmbeddingParams, count_params, summary
from rnnjax.layers import RNN, Bidirectional, BidirectionalParams, Stack, StackedCell
from rnnjax.recurrence import unroll

__version__ = "0.1.0"

# Submodules beyond the core, imported on first use (``rj.interop`` works after ``import rnnjax``;
# ``import rnnjax`` itself imports none of them): the data pipelines, converters (torch and keras
# are imported inside them), Flax wrappers, data parallelism, the VRNN, locally recurrent networks,
# the n-gram baseline, and the applications (``rj.apps.lm``, ``rj.apps.captioning``, ``rj.apps.speech``).
_LAZY_SUBMODULES = ("apps", "data", "flax", "interop", "kernels", "local", "ngram", "parallel", "vrnn")


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"rnnjax.{name}")
    raise AttributeError(f"module 'rnnjax' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY_SUBMODULES])


__all__ = [
    "RNN",
    "Bidirectional",
    "BidirectionalParams",
    "Dense",
    "DenseParams",
    "ElmanCell",
    "ElmanParams",
    "Embedding",
    "EmbeddingParams",
    "GRUCell",
    "GRUParams",
    "HiddenCarry",
    "JordanCarry",
    "JordanCell",
    "JordanParams",
    "LSTMCarry",
    "LSTMCell",
    "LSTMParams",
    "LayerNormGRUCell",
    "LayerNormGRUParams",
    "LayerNormLSTMCell",
    "LayerNormLSTMParams",
    "LayerNormParams",
    "MinGRUCell",
    "MinGRUParams",
    "MinLSTMCell",
    "MinLSTMParams",
    "ProjectedLSTMParams",
    "RMLPCell",
    "RMLPParams",
    "Stack",
    "StackedCell",
    "checking",
    "count_params",
    "summary",
    "unroll",
]
