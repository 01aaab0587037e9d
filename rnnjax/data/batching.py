"""Language-model batches (streams and windows) and padded batches with lengths."""

from collections.abc import Iterator, Sequence

import numpy as np

from rnnjax.data import common


def lm_streams(ids, batch_size: int) -> np.ndarray:
    """Cut a token sequence into ``b`` contiguous streams for stateful (truncated-BPTT) training.

    As char-rnn and PyTorch's word_language_model do, stream ``j`` is the ``j``-th contiguous
    piece of the text, so a batch row continues from window to window and the carry can be passed
    on. Consecutive streams overlap by one token, ``streams[j, -1] == streams[j + 1, 0]``, so that
    every token after the first is a target exactly once per epoch (see :func:`lm_windows`):

    .. math:: \\text{streams}[j] = \\text{ids}[jn : (j+1)n + 1], \\qquad n = \\lfloor (t - 1) / b \\rfloor

    The last ``t - 1 - bn < b`` tokens are dropped.

    Args:
      ids: integer token ids ``[t]``.
      batch_size: the number of streams ``b``.

    Returns:
      ``int32`` streams ``[b, n + 1]``.

    Example:
        >>> lm_streams(np.arange(10), 3).tolist()
        [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    """
    ids = common.ids_arg(ids, "ids")
    batch_size = common.int_arg(batch_size, "batch_size")
    n = (len(ids) - 1) // batch_size
    if n < 1:
        raise ValueError(f"ids: expected at least batch_size + 1 = {batch_size + 1} tokens, got {len(ids)}")
    rows = np.arange(batch_size)[:, None] * n + np.arange(n + 1)[None, :]
    return ids[rows].astype(np.int32)


def _streams_arg(streams) -> np.ndarray:
    streams = common.ids_arg(streams, "streams", "[b, n + 1]")
    if streams.shape[1] < 2:
        raise ValueError(f"streams: expected shape [b, n + 1] with n >= 1 (from lm_streams), got {streams.shape}")
    return streams


def lm_windows(streams, window: int, *, drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Consecutive windows over the streams: one epoch of truncated-BPTT batches.

    Window ``i`` covers stream positions ``[iw, iw + w)``; its targets are the inputs shifted by
    one. Over one epoch, every token of ``streams[:, 1:]`` is a target exactly once (with
    :func:`lm_streams`: every token of the text but the first and the dropped tail). The last
    window is shorter when ``w`` does not divide ``n`` (``drop_last=True`` drops it, for one
    fixed shape under ``jit``).

    Args:
      streams: ``[b, n + 1]`` from :func:`lm_streams`.
      window: the window length ``w`` (the truncation length of BPTT).
      drop_last: drop a last, shorter window.

    Returns:
      An iterator of ``(inputs, targets)``, ``[b, w]`` each (the dtype of ``streams``: ``int32``
      from :func:`lm_streams`), ``targets[:, s] == streams[:, iw + s + 1]``. Bad arguments raise
      at the call, not at the first ``next``.

    Example:
        >>> streams = lm_streams(np.arange(10), 3)
        >>> second = list(lm_windows(streams, 2))[1]
        >>> second[0].tolist(), second[1].tolist()
        ([[2], [5], [8]], [[3], [6], [9]])
    """
    streams = _streams_arg(streams)  # checked now, not at the first next()
    window = common.int_arg(window, "window")
    n = streams.shape[1] - 1
    stop = n - n % window if drop_last else n

    def windows():
        for start in range(0, stop, window):
            width = min(window, n - start)
            yield streams[:, start : start + width], streams[:, start + 1 : start + 1 + width]

    return windows()


def lm_batch(streams, index: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Window ``index`` of the epochs over the streams: random access for ``rnnjax.train.fit``.

    ``lm_batch(streams, i, w)`` is the ``(i mod m)``-th full window of :func:`lm_windows`, with
    ``m = n // w`` full windows per epoch (a shorter last window is left out, so every batch has
    the same shape). Consecutive indices are consecutive windows, so a stateful train step can
    pass the carry on; a new epoch starts when ``i % m == 0`` (reset the carry there if you like).

    Args:
      streams: ``[b, n + 1]`` from :func:`lm_streams`.
      index: the step, any integer ``>= 0``; epochs cycle.
      window: the window length ``w``, ``<= n``.

    Returns:
      ``(inputs, targets)``, ``[b, w]`` each, of the dtype of ``streams`` (``int32`` from :func:`lm_streams`).

    Example:
        >>> import functools
        >>> streams = lm_streams(np.arange(10), 3)
        >>> data = functools.partial(lm_batch, streams, window=2)    # data(step), as fit wants
        >>> data(0)[1].tolist(), data(1)[1].tolist()                 # m = 1: epochs of one window
        ([[1, 2], [4, 5], [7, 8]], [[1, 2], [4, 5], [7, 8]])
    """
    streams = _streams_arg(streams)
    window = common.int_arg(window, "window")
    index = common.int_arg(index, "index", minimum=0)
    n = streams.shape[1] - 1
    if window > n:
        raise ValueError(f"window: expected at most {n} (the stream length n of streams [b, n + 1]), got {window}")
    start = (index % (n // window)) * window
    return streams[:, start : start + window], streams[:, start + 1 : start + 1 + window]


def pad_batch(sequences, *, max_len: int | None = None, pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stack integer sequences of different lengths into one padded array with their lengths.

    Args:
      sequences: ``b`` sequences of integer ids (lists, tuples or 1-D arrays).
      max_len: the padded length ``t`` (None: the longest sequence). A longer sequence raises.
      pad_id: the id written after the end of each sequence.

    Returns:
      ``(ids, lengths)``: ``int32 [b, t]`` and ``int32 [b]``; ``ids[i, lengths[i]:] == pad_id``.
      ``rnnjax.losses.length_mask(lengths, t)`` gives the mask of the valid steps.

    Example:
        >>> ids, lengths = pad_batch([[5, 6, 7], [8]], pad_id=0)
        >>> ids.tolist(), lengths.tolist()
        ([[5, 6, 7], [8, 0, 0]], [3, 1])
    """
    if isinstance(sequences, np.ndarray | str) or not isinstance(sequences, Sequence):
        raise TypeError(f"sequences: expected a list of integer sequences, got {type(sequences).__name__}")
    if len(sequences) == 0:
        raise ValueError("sequences: expected at least one sequence, got an empty list")
    if max_len is not None:
        max_len = common.int_arg(max_len, "max_len", minimum=0)
    if isinstance(pad_id, bool) or not isinstance(pad_id, int | np.integer):
        raise TypeError(f"pad_id: expected an integer, got {pad_id!r}")
    arrays = []
    for i, seq in enumerate(sequences):
        arr = np.asarray(seq)
        if arr.size == 0:
            arr = arr.reshape(0).astype(np.int32)
        elif arr.dtype == object or not np.issubdtype(arr.dtype, np.integer) or arr.ndim != 1:
            raise TypeError(
                f"sequences[{i}]: expected a 1-D sequence of integer ids, got dtype {arr.dtype}, shape {arr.shape}"
            )
        if max_len is not None and len(arr) > max_len:
            raise ValueError(f"sequences[{i}]: length {len(arr)} exceeds max_len={max_len}")
        arrays.append(arr)
    lengths = np.array([len(a) for a in arrays], np.int32)
    num_steps = int(lengths.max()) if max_len is None else max_len
    ids = np.full((len(arrays), num_steps), pad_id, np.int32)
    for i, arr in enumerate(arrays):
        ids[i, : len(arr)] = arr
    return ids, lengths
