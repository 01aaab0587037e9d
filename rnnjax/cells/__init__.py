"""Recurrent cells: frozen dataclasses of hyper-parameters with pure methods.

Every cell splits one time step into a time-parallel part and a sequential part::

    us = cell.project(params, xs)            # [..., f] -> [..., g]: input projection
    carry, y = cell.recur(params, carry, u)  # one step of the recurrence
    carry, y = cell.step(params, carry, x)   # = recur(params, carry, project(params, x))

Weights are stored features-last (``w_i: [f, g]``, ``w_h: [h, g]``) with the gate
blocks concatenated along the last axis in a fixed, documented order, so weight
conversion from torch, Keras and Flax is exact. Params and carries are NamedTuples.

Dtypes: params are created in ``param_dtype`` (float32 by default; bfloat16 and float16
too: initialised in float32, then cast). Computation runs in ``dtype`` when given, else
in the promotion of the params' and the inputs' dtypes (so bfloat16 inputs with float32
params compute in float32, and float64 inputs with float64 params, under
``jax_enable_x64``, in float64). ``recur`` computes in the dtype of ``u`` and returns a
carry of that dtype, with one exception for 16-bit computation: every matmul then
accumulates in float32, the gate arithmetic runs in float32, and the LSTM's cell state
``c`` stays float32 (over thousands of steps a bfloat16 cell state drifts; see the
precision section of the unroll guide for the measurements).

Precision: every matmul takes the cell's ``precision`` (None: the backend's default,
which is full float32 on CPU, TF32 on recent NVIDIA GPUs and one bfloat16 pass on TPU;
``"highest"`` asks for full float32 everywhere).

A cell whose params have ``carry0`` set (``learn_initial_carry=True``) starts from a
learned initial carry instead of zeros.

Checks: every method that takes params first checks their structure, exact shapes and
floating dtypes against ``jax.eval_shape(cell.init)`` for the params' input size (cached,
shapes only, so at trace time under ``jit``); errors name the field, e.g.
``params.b: expected shape (32,) for LSTMCell(hidden_size=8), got (1,)``.
"""

from rnnjax.cells.base import DenseParams, HiddenCarry, accumulation_dtype
from rnnjax.cells.elman import ElmanCell, ElmanParams
from rnnjax.cells.gru import GRUCell, GRUParams
from rnnjax.cells.jordan import JordanCarry, JordanCell, JordanParams
from rnnjax.cells.layernorm import (
    LayerNormGRUCell,
    LayerNormGRUParams,
    LayerNormLSTMCell,
    LayerNormLSTMParams,
    LayerNormParams,
)
from rnnjax.cells.linear import MinGRUCell, MinGRUParams, MinLSTMCell, MinLSTMParams
from rnnjax.cells.lstm import LSTMCarry, LSTMCell, LSTMParams, ProjectedLSTMParams
from rnnjax.cells.rmlp import RMLPCell, RMLPParams

__all__ = [
    "DenseParams",
    "ElmanCell",
    "ElmanParams",
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
    "accumulation_dtype",
]
