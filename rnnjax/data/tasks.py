"""Synthetic long-dependency tasks: the adding problem and the copy task."""

import numpy as np

from rnnjax.data import common


def adding_problem(seed, batch: int, num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem (Hochreiter & Schmidhuber 1997; the variant of Le et al. 2015).

    Each example is ``t`` steps of two features: a value drawn uniformly from ``[0, 1)`` and a
    marker that is 1 at exactly two steps, one drawn uniformly from the first half
    ``[0, t // 2)`` and one from the second half ``[t // 2, t)``, and 0 elsewhere. The target is
    the sum of the two marked values. Predicting the constant 1 (the mean) gives the baseline
    mean squared error ``Var(u1 + u2) = 2 / 12 = 1/6 ~ 0.167``; a model must beat it to have
    learned anything.

    Args:
      seed: an int, a sequence of ints (e.g. ``(seed, step)``) or a ``numpy.random.Generator``.
      batch: the number of examples ``b``.
      num_steps: the sequence length ``t >= 2``.

    Returns:
      ``(xs, targets)``: ``float32 [b, t, 2]`` (value, marker) and ``float32 [b]``.

    Example:
        >>> xs, targets = adding_problem(0, batch=4, num_steps=50)
        >>> xs.shape, targets.shape, xs[..., 1].sum(axis=1).tolist()
        ((4, 50, 2), (4,), [2.0, 2.0, 2.0, 2.0])

    References:
      Hochreiter & Schmidhuber, "Long short-term memory", Neural Computation 1997.
      Le, Jaitly & Hinton, "A simple way to initialize recurrent networks of rectified linear
      units", arXiv:1504.00941, 2015.
    """
    rng = common.rng(seed)
    batch = common.int_arg(batch, "batch")
    num_steps = common.int_arg(num_steps, "num_steps", minimum=2)
    half = num_steps // 2
    values = rng.random((batch, num_steps), dtype=np.float32)
    first = rng.integers(0, half, size=batch)
    second = rng.integers(half, num_steps, size=batch)
    markers = np.zeros((batch, num_steps), np.float32)
    rows = np.arange(batch)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]
    return np.stack([values, markers], axis=-1), targets.astype(np.float32)


def copy_task(
    seed, batch: int, delay: int, *, num_symbols: int = 8, copy_len: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """The copy memory task (Hochreiter & Schmidhuber 1997; the variant of Arjovsky et al. 2016).

    Tokens: ``0`` blank, ``1 .. num_symbols`` data symbols, ``num_symbols + 1`` the delimiter
    ("now copy"); so a model needs ``v = num_symbols + 2`` classes. With ``K = copy_len`` and
    ``T = delay``, each sequence has ``t = T + 2K`` steps:

    - inputs: ``K`` symbols drawn uniformly from ``1 .. num_symbols``; then ``T - 1`` blanks; the
      delimiter at step ``K + T - 1``; then ``K`` blanks.
    - targets: ``K + T`` blanks, then the ``K`` symbols of the start.

    A memoryless model that knows the step (blank for the first ``K + T`` steps, uniform over the
    symbols for the last ``K``) has the mean cross-entropy per step

    .. math:: \\frac{K \\log(\\text{num\\_symbols})}{T + 2K}

    (``10 log 8 / 120 ~ 0.173`` nats for the defaults with ``T = 100``): the baseline to beat.

    Args:
      seed: an int, a sequence of ints or a ``numpy.random.Generator``.
      batch: the number of examples ``b``.
      delay: ``T >= 1``, the steps from the end of the symbols to the end of the delimiter.
      num_symbols: the number of data symbols.
      copy_len: ``K``, the number of symbols to remember.

    Returns:
      ``(inputs, targets)``: ``int32 [b, t]`` each, ``t = delay + 2 * copy_len``.

    Example:
        >>> inputs, targets = copy_task(0, batch=1, delay=3, num_symbols=4, copy_len=2)
        >>> inputs.tolist(), targets.tolist()
        ([[4, 3, 0, 0, 5, 0, 0]], [[0, 0, 0, 0, 0, 4, 3]])

    References:
      Arjovsky, Shah & Bengio, "Unitary evolution recurrent neural networks", ICML 2016.
    """
    rng = common.rng(seed)
    batch = common.int_arg(batch, "batch")
    delay = common.int_arg(delay, "delay")
    num_symbols = common.int_arg(num_symbols, "num_symbols")
    copy_len = common.int_arg(copy_len, "copy_len")
    num_steps = delay + 2 * copy_len
    symbols = rng.integers(1, num_symbols + 1, size=(batch, copy_len)).astype(np.int32)
    inputs = np.zeros((batch, num_steps), np.int32)
    targets = np.zeros((batch, num_steps), np.int32)
    inputs[:, :copy_len] = symbols
    inputs[:, copy_len + delay - 1] = num_symbols + 1
    targets[:, copy_len + delay :] = symbols
    return inputs, targets
