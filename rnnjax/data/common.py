"""Argument checks shared by the data pipelines (NumPy; errors name the argument)."""

from collections.abc import Sequence

import numpy as np


def int_arg(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def ids_arg(ids, name: str, shape: str = "[t]") -> np.ndarray:
    """Integer ids with as many axes as ``shape`` (e.g. ``"[b, n + 1]"``) names."""
    arr = np.asarray(ids)
    if arr.size == 0 and arr.dtype != object:
        arr = arr.astype(np.int64)  # [] is float64 to NumPy
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: expected integer token ids, got dtype {arr.dtype}")
    if arr.ndim != shape.count(",") + 1:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    return arr


def rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    ok = isinstance(seed, int | np.integer) and not isinstance(seed, bool)
    if not ok and isinstance(seed, Sequence) and not isinstance(seed, str):
        ok = all(isinstance(s, int | np.integer) and not isinstance(s, bool) for s in seed)
    if not ok or np.any(np.asarray(seed) < 0):
        raise TypeError(
            "seed: expected a non-negative int, a sequence of them, or a numpy.random.Generator "
            f"(rnnjax.data uses NumPy RNGs, not JAX keys), got {seed!r}"
        )
    return np.random.default_rng(seed)
