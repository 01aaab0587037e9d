"""Exact weight conversion between rnnjax and torch, Keras and Flax.

Every converter maps weights one to one (transposes, gate permutations, bias sums), so
the converted layer computes the same function as the source, up to floating-point
rounding. The conventions (see ``docs/interop.md`` for the full table):

=============  ===============  ======================  ===========================  ==============
framework      LSTM gates       GRU gates               biases                       LSTM carry
=============  ===============  ======================  ===========================  ==============
rnnjax         i, f, g, o       r, z, n (reset-after)   one ``b`` (+ ``b_h``: GRU)   ``(h, c)``
torch          i, f, g, o       r, z, n                 ``b_ih`` and ``b_hh``        ``(h, c)``
Keras          i, f, c, o       z, r, h                 one (GRU: ``[2, 3h]``)       ``[h, c]``
Flax linen     i, f, g, o       r, z, n                 per-gate Dense               ``(c, h)``
=============  ===============  ======================  ===========================  ==============

torch stores weights ``[gates*h, f]``; rnnjax, Keras and Flax store them features-last
``[f, gates*h]``. torch's two biases ``b_ih + b_hh`` are summed into rnnjax's one ``b``
for ``nn.RNN``/``nn.LSTM``; a GRU keeps both (``b = b_ih``, ``b_h = b_hh``), because
the recurrent bias of the candidate ``n`` sits inside the reset gate's product.

Dtypes: the ``from_*`` converters return float32 params by default; ``dtype=None``
keeps the source dtype (float64 needs ``jax_enable_x64``), and any other floating dtype
casts. The ``to_*`` converters keep the params' dtype.

The layers returned by :func:`from_torch` are ordinary rnnjax sequence layers; their
``apply`` runs ONE sequence ``[t, f]`` (batch with :func:`jax.vmap`).
:func:`rnnjax.layers.apply_with_carry` also returns the final carries, and :func:`to_torch_carry`
lays them out as torch's ``(h_n, c_n)``.

torch and Keras are imported lazily, inside the functions that need them.
"""

from rnnjax.interop.flax import from_flax, to_flax
from rnnjax.interop.keras import from_keras, to_keras
from rnnjax.interop.torch import (
    from_torch,
    from_torch_carry,
    from_torch_state_dict,
    load_torch_state_dict,
    to_torch,
    to_torch_carry,
    to_torch_module,
)

__all__ = [
    "from_flax",
    "from_keras",
    "from_torch",
    "from_torch_carry",
    "from_torch_state_dict",
    "load_torch_state_dict",
    "to_flax",
    "to_keras",
    "to_torch",
    "to_torch_carry",
    "to_torch_module",
]
