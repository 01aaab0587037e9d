"""rnnjax: recurrent networks as pure functions for JAX.

Cells are frozen dataclasses with pure methods over NamedTuple params;
:func:`unroll` runs one over a sequence with :func:`jax.lax.scan`; sequence
layers (:class:`RNN`, :class:`Bidirectional`, :class:`Stack`) build models.
See ``docs/`` for the guide.
"""

from rnnjax import captioning as captioning  # public submodule rj.captioning (digit strips need scikit-learn)
from rnnjax import data as data  # public submodule rj.data (NumPy data pipelines)
from rnnjax import decode as decode
from rnnjax import interop as interop  # public submodule rj.interop (torch and keras are imported lazily)
from rnnjax import local as local  # public submodule rj.local (IIR-MLP cell, CRBP)
from rnnjax import losses as losses
from rnnjax import models as models  # public submodule rj.models
from rnnjax import ngram as ngram  # public submodule rj.ngram (Kneser-Ney baseline)
from rnnjax import parallel as parallel  # public submodule rj.parallel (jax.sharding data parallelism)
from rnnjax import recurrence as recurrence  # rj.recurrence: unroll and its per-backend defaults
from rnnjax import speech as speech  # public submodule rj.speech (espeak-ng synthesis, librosa features: both optional)
from rnnjax import train as train
from rnnjax import vrnn as vrnn  # public submodule rj.vrnn (VRNN, ELBO/IWAE, no-latent baseline)
from rnnjax._checks import checking
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
    LSTMCarry,
    LSTMCell,
    LSTMParams,
    MinGRUCell,
    MinGRUParams,
    MinLSTMCell,
    MinLSTMParams,
    RMLPCell,
    RMLPParams,
)
from rnnjax.heads import Dense, Embedding, EmbeddingParams, count_params, summary
from rnnjax.layers import RNN, Bidirectional, BidirectionalParams, Stack, StackedCell
from rnnjax.recurrence import unroll

__version__ = "0.1.0"

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
    "MinGRUCell",
    "MinGRUParams",
    "MinLSTMCell",
    "MinLSTMParams",
    "RMLPCell",
    "RMLPParams",
    "Stack",
    "StackedCell",
    "checking",
    "count_params",
    "summary",
    "unroll",
]
