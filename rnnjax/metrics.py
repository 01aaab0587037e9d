"""Host-side metrics of decoded sequences: edit distance and error rates (CER, WER)."""


def edit_distance(hyp, ref) -> int:
    """Levenshtein distance: the fewest substitutions, insertions and deletions turning ``hyp`` into ``ref``.

    Host-side (pure Python). Sequences are strings, lists or 1-D arrays (slice decoded labels to
    their length first).

    Example:
        >>> import rnnjax as rj
        >>> rj.metrics.edit_distance("kitten", "sitting"), rj.metrics.edit_distance([1, 2, 3], [1, 3])
        (3, 1)
    """
    hyp, ref = _as_sequence(hyp, "hyp"), _as_sequence(ref, "ref")
    previous = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, 1):
        current = [i]
        for j, r in enumerate(ref, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (h != r)))
        previous = current
    return previous[-1]


def _as_sequence(x, name):
    if hasattr(x, "ndim") and hasattr(x, "tolist"):
        if x.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D sequence, got shape {tuple(x.shape)}")
        return x.tolist()
    if isinstance(x, str):
        return x
    try:
        return list(x)
    except TypeError:
        raise TypeError(f"{name}: expected a sequence (str, list or 1-D array), got {type(x).__name__}") from None


def error_rate(hyp, ref) -> float:
    """Error rate ``edit_distance(hyp, ref) / len(ref)``: CER on characters, WER on words.

    For a corpus, sum the edit distances and divide by the total reference length (not the mean of
    per-utterance rates). It can exceed 1 (many insertions).

    Args:
      hyp: the decoded sequence (str, list or 1-D array).
      ref: the reference, non-empty.

    Returns:
      A Python float.

    Example:
        >>> import rnnjax as rj
        >>> rj.metrics.error_rate("the cat sat".split(), "the cat sat down".split())   # WER
        0.25
        >>> round(rj.metrics.error_rate("helo wrld", "hello world"), 4)                  # CER
        0.1818
    """
    n = len(_as_sequence(ref, "ref"))
    if n == 0:
        raise ValueError("ref: expected a non-empty reference (the error rate divides by its length)")
    return edit_distance(hyp, ref) / n
