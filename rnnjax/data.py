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

import hashlib
import json
import math
import os
import sysconfig
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

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

DEFAULT_MAX_CHARS = 3_000_000
"""Default character budget of :func:`load_corpus` (train + valid + test)."""

# never read from the standard library: installed packages and test suites; generated data rather
# than source code (codec tables in encodings/, pydoc's topic texts); build-specific files (the
# config-* directory, _sysconfigdata*.py), which differ between machines with the same Python
_STDLIB_SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__", "encodings", "pydoc_data"}
)
_STDLIB_SKIP_PREFIXES = ("config-", "_sysconfigdata")
_SPLITS = ("train", "valid", "test")


# --- argument checks -------------------------------------------------------------------------


def _int_arg(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _ids_arg(ids, name: str, shape: str = "[t]") -> np.ndarray:
    """Integer ids with as many axes as ``shape`` (e.g. ``"[b, n + 1]"``) names."""
    arr = np.asarray(ids)
    if arr.size == 0 and arr.dtype != object:
        arr = arr.astype(np.int64)  # [] is float64 to NumPy
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: expected integer token ids, got dtype {arr.dtype}")
    if arr.ndim != shape.count(",") + 1:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    return arr


def _rng(seed) -> np.random.Generator:
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


# --- corpus ----------------------------------------------------------------------------------


class Corpus(NamedTuple):
    """A text corpus split three ways (from :func:`load_corpus`).

    Attributes:
      train: the training text.
      valid: the validation text.
      test: the test text.
      files: ``{"train": (paths...), "valid": (...), "test": (...)}``, the files (relative to the
        corpus root, ``/``-separated) that each split was read from, in reading order. A single
        file split by position is listed in all three.

    Example:
        >>> corpus = load_corpus(max_chars=20_000)
        >>> corpus                                                      # doctest: +ELLIPSIS
        Corpus(train=... chars, valid=... chars, test=... chars, files=...)
    """

    train: str
    valid: str
    test: str
    files: dict

    def __repr__(self) -> str:  # the texts are megabytes: show their sizes
        sizes = ", ".join(f"{name}={len(getattr(self, name))} chars" for name in _SPLITS)
        counts = "/".join(str(len(self.files.get(name, ()))) for name in _SPLITS)
        return f"Corpus({sizes}, files={counts})"


def _split_arg(split) -> tuple[float, float, float]:
    try:
        fractions = tuple(float(s) for s in split)
    except (TypeError, ValueError):
        raise ValueError(f"split: expected three fractions (train, valid, test), got {split!r}") from None
    if len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(
            f"split: expected three non-negative fractions (train, valid, test) summing to 1 with "
            f"train > 0, got {split!r}"
        )
    return fractions


def _file_split(relative_path: str, fractions: tuple[float, float, float]) -> str:
    """The split of a file: a stable hash of its relative path, uniform in [0, 1)."""
    digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    if u < fractions[0]:
        return "train"
    return "valid" if u < fractions[0] + fractions[1] else "test"


def _read_text(path: Path) -> str | None:
    """UTF-8 text with newlines normalised to ``\\n``; None if not UTF-8."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _walk(root: Path, suffixes, skip_dirs, skip_prefixes) -> list[str]:
    """Relative ``/``-paths of the files under ``root`` ending in ``suffixes``, sorted."""
    found = []
    for directory, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip_dirs and not d.startswith((".", *skip_prefixes))]
        for name in names:
            if name.startswith((".", *skip_prefixes)) or (suffixes is not None and not name.endswith(suffixes)):
                continue
            found.append(Path(directory, name).relative_to(root).as_posix())
    return sorted(found)


def _cut(text: str, budget: int) -> str:
    """At most ``budget`` characters of ``text``, ending after a newline where there is one."""
    if len(text) <= budget:
        return text
    head = text[:budget]
    newline = head.rfind("\n")
    return head[: newline + 1] if newline >= 0 else head


def load_corpus(
    path: str | os.PathLike | None = None,
    *,
    max_chars: int | None = DEFAULT_MAX_CHARS,
    split: Sequence[float] = (0.9, 0.05, 0.05),
    suffixes: Sequence[str] | None = None,
) -> Corpus:
    """Load a text corpus split into train / valid / test.

    The default corpus is the Python standard library's own ``.py`` sources, read from the
    running interpreter (``sysconfig.get_paths()["stdlib"]``), which every machine with Python
    has. Skipped: installed packages and test suites (directories ``site-packages``,
    ``dist-packages``, ``test``, ``tests``, ``idlelib``, ``lib2to3``, ``__pycache__``); generated
    data (``encodings``, 4 MB of codec tables, and ``pydoc_data``); build-specific files
    (``config-*`` directories, ``_sysconfigdata*.py``); names starting with ``.``; files that are
    not UTF-8. The corpus is thus the same for every installation of one Python version.

    A directory (the default one or ``path``) is split **by file**: a file goes to train, valid
    or test by a stable hash of its relative path (SHA-256, read as a number ``u`` in ``[0, 1)``:
    train if ``u < split[0]``, valid if ``u < split[0] + split[1]``, else test), so no file is in
    two splits and the assignment of a file never depends on the others. Files are read in sorted
    order of their relative paths; each split has a budget of ``split[i] * max_chars``
    characters; a file is added whole while it fits, and the first one that does not is cut at
    its last newline within the budget, which closes that split. A single file is split **by
    position**: its first ``max_chars`` characters, the first ``split[0]`` of them train, the
    next ``split[1]`` valid, the rest test. Newlines are normalised to ``\\n``.

    Args:
      path: a UTF-8 text file or a directory (None: the standard library).
      max_chars: character budget of the three splits together (None: no limit). The default,
        3,000,000, gives about 2.7 M training and 150 k validation characters.
      split: fractions ``(train, valid, test)``, non-negative, summing to 1, train > 0.
      suffixes: for a directory, the file-name endings to read (None: ``(".py",)`` for the
        standard library, every UTF-8 file for a user directory).

    Returns:
      A :class:`Corpus` ``(train, valid, test, files)``.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: the corpus is empty (no readable text), or a bad argument.

    Example:
        >>> corpus = load_corpus(max_chars=100_000)
        >>> len(corpus.train) <= 90_000 and len(corpus.valid) <= 5_000
        True
        >>> set(corpus.files["train"]) & set(corpus.files["valid"])    # disjoint by file
        set()
    """
    if max_chars is not None:
        max_chars = _int_arg(max_chars, "max_chars")
    fractions = _split_arg(split)
    if suffixes is not None:
        if isinstance(suffixes, str) or not all(isinstance(s, str) for s in suffixes):
            raise ValueError(f"suffixes: expected a sequence of strings such as ('.txt',), got {suffixes!r}")
        suffixes = tuple(suffixes)

    if path is None:
        root = Path(sysconfig.get_paths()["stdlib"])
        skip = (_STDLIB_SKIP_DIRS, _STDLIB_SKIP_PREFIXES)
        return _load_directory(root, fractions, max_chars, suffixes or (".py",), skip, "stdlib")
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"path: {str(root)!r} does not exist")
    if root.is_dir():
        return _load_directory(root, fractions, max_chars, suffixes, ({"__pycache__"}, ()), f"path {str(root)!r}")
    text = _read_text(root)
    if text is None:
        raise ValueError(f"path: {str(root)!r} is not UTF-8 text")
    if max_chars is not None:
        text = text[:max_chars]
    if not text:
        raise ValueError(f"path: {str(root)!r} holds no text (empty corpus)")
    n_train = int(fractions[0] * len(text))
    n_valid = int(fractions[1] * len(text))
    name = (root.name,)
    return Corpus(
        text[:n_train], text[n_train : n_train + n_valid], text[n_train + n_valid :], dict.fromkeys(_SPLITS, name)
    )


def _load_directory(root, fractions, max_chars, suffixes, skip, what) -> Corpus:
    budgets = {
        name: math.inf if max_chars is None else int(f * max_chars) for name, f in zip(_SPLITS, fractions, strict=True)
    }
    parts = {name: [] for name in _SPLITS}
    used = dict.fromkeys(_SPLITS, 0)
    open_splits = {name for name in _SPLITS if budgets[name] > 0}
    for relative in _walk(root, suffixes, *skip):
        if not open_splits:
            break
        name = _file_split(relative, fractions)
        if name not in open_splits:
            continue
        text = _read_text(root / relative)
        if not text:  # not UTF-8, or empty
            continue
        remaining = budgets[name] - used[name]
        if len(text) >= remaining:
            text = _cut(text, remaining)
            open_splits.discard(name)
        if text:
            parts[name].append((relative, text))
            used[name] += len(text)
    if not any(parts.values()):
        ending = f" ending in {suffixes}" if suffixes else ""
        raise ValueError(f"{what}: no UTF-8 text files{ending} under {str(root)!r} (empty corpus)")
    texts = {name: "".join(text for _, text in parts[name]) for name in _SPLITS}
    files = {name: tuple(relative for relative, _ in parts[name]) for name in _SPLITS}
    return Corpus(texts["train"], texts["valid"], texts["test"], files)


# --- vocabulary ------------------------------------------------------------------------------


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


class CharVocab:
    """A character vocabulary with reserved ids for padding, unknown, begin and end.

    Ids: ``0`` ``<pad>``, ``1`` ``<unk>`` (any character not in the vocabulary), ``2`` ``<bos>``,
    ``3`` ``<eos>``, then the characters in code-point order from ``4``. ``size`` counts all of
    them. Build one from text with :meth:`build`, or from a JSON file with :meth:`load`.

    Args:
      chars: the distinct characters (single-character strings), any order; stored sorted.

    Attributes:
      chars: the characters, in id order (ids ``4 ...``).
      size: the number of ids ``v`` (4 + the number of characters).
      pad_id, unk_id, bos_id, eos_id: ``0``, ``1``, ``2``, ``3`` (also the class constants
        ``PAD_ID`` ... ``EOS_ID``).

    Example:
        >>> vocab = CharVocab.build("hello world")
        >>> vocab.size, vocab.encode("hold!").tolist()
        (12, [7, 9, 8, 5, 1])
        >>> vocab.decode(vocab.encode("hold!"))
        'hold\ufffd'
    """

    PAD_ID = 0
    UNK_ID = 1
    BOS_ID = 2
    EOS_ID = 3
    SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")

    def __init__(self, chars: Sequence[str]):
        if isinstance(chars, str):
            chars = list(chars)
        chars = list(chars)
        if not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise ValueError("chars: expected single-character strings")
        if len(set(chars)) != len(chars):
            raise ValueError("chars: expected distinct characters, got duplicates")
        self.chars: tuple[str, ...] = tuple(sorted(chars))
        self._codes = _codepoints("".join(self.chars)).copy()  # sorted, as the chars are
        self._tokens = np.array(self.SPECIALS + self.chars, dtype=object)

    @property
    def pad_id(self) -> int:
        return self.PAD_ID

    @property
    def unk_id(self) -> int:
        return self.UNK_ID

    @property
    def bos_id(self) -> int:
        return self.BOS_ID

    @property
    def eos_id(self) -> int:
        return self.EOS_ID

    @property
    def size(self) -> int:
        return len(self.SPECIALS) + len(self.chars)

    def __len__(self) -> int:
        return self.size

    def __eq__(self, other) -> bool:
        return isinstance(other, CharVocab) and self.chars == other.chars

    def __hash__(self) -> int:
        return hash(self.chars)

    def __repr__(self) -> str:
        return f"CharVocab(size={self.size})"

    @classmethod
    def build(cls, text: str, *, min_count: int = 1, max_size: int | None = None) -> "CharVocab":
        """The vocabulary of the characters of ``text``.

        Args:
          text: the text (usually the training split).
          min_count: keep characters seen at least this often.
          max_size: at most this many ids in all (the 4 special ids included, so ``>= 4``); the
            most frequent characters are kept, ties broken by code point.

        Returns:
          A :class:`CharVocab`.

        Example:
            >>> CharVocab.build("aaab", min_count=2).chars
            ('a',)
            >>> CharVocab.build("aaabbc", max_size=6).chars
            ('a', 'b')
        """
        if not isinstance(text, str):
            raise TypeError(f"text: expected a str, got {type(text).__name__}")
        min_count = _int_arg(min_count, "min_count")
        if max_size is not None:
            max_size = _int_arg(max_size, "max_size", minimum=len(cls.SPECIALS))
        codes, counts = np.unique(_codepoints(text), return_counts=True)
        keep = counts >= min_count
        codes, counts = codes[keep], counts[keep]
        if max_size is not None and len(codes) > max_size - len(cls.SPECIALS):
            order = np.lexsort((codes, -counts))  # by count descending, then code point
            codes = np.sort(codes[order[: max_size - len(cls.SPECIALS)]])
        chars = codes.astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")
        return cls(list(chars))

    def encode(self, text: str) -> np.ndarray:
        """Character ids of ``text``; characters not in the vocabulary get ``unk_id``.

        Args:
          text: a string of ``t`` characters.

        Returns:
          ``int32`` ids ``[t]``.

        Example:
            >>> CharVocab.build("abc").encode("cab?").tolist()
            [6, 4, 5, 1]
        """
        if not isinstance(text, str):
            raise TypeError(f"text: expected a str, got {type(text).__name__}")
        codes = _codepoints(text)
        if len(self._codes) == 0:
            return np.full(len(codes), self.UNK_ID, np.int32)
        index = np.minimum(np.searchsorted(self._codes, codes), len(self._codes) - 1)
        found = self._codes[index] == codes
        return np.where(found, index + len(self.SPECIALS), self.UNK_ID).astype(np.int32)

    def decode(self, ids, *, skip_special: bool = True) -> str:
        """The text of ``ids``.

        Args:
          ids: integer ids ``[t]``, each in ``[0, size)``.
          skip_special: drop ``<pad>``, ``<bos>`` and ``<eos>`` and write ``<unk>`` as U+FFFD
            (``'\\ufffd'``); with False every special id is written as its name, e.g. ``<eos>``.

        Returns:
          A string.

        Example:
            >>> vocab = CharVocab.build("abc")
            >>> vocab.decode([2, 4, 5, 1, 3]), vocab.decode([2, 4, 3], skip_special=False)
            ('ab\ufffd', '<bos>a<eos>')
        """
        ids = _ids_arg(ids, "ids")
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            raise ValueError(
                f"ids: expected ids in [0, {self.size}) (the vocabulary size), got {ids.min()}..{ids.max()}"
            )
        tokens = self._tokens
        if skip_special:
            tokens = tokens.copy()
            tokens[[self.PAD_ID, self.BOS_ID, self.EOS_ID]] = ""
            tokens[self.UNK_ID] = "\ufffd"
        return "".join(tokens[ids].tolist())

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary to a JSON file (no pickle).

        Example:
            >>> import tempfile, pathlib
            >>> vocab = CharVocab.build("hello")
            >>> with tempfile.TemporaryDirectory() as d:
            ...     vocab.save(pathlib.Path(d) / "vocab.json")
            ...     CharVocab.load(pathlib.Path(d) / "vocab.json") == vocab
            True
        """
        record = {"format": "rnnjax.data.CharVocab", "version": 1, "specials": list(self.SPECIALS), "chars": self.chars}
        Path(path).write_text(json.dumps(record, ensure_ascii=True), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CharVocab":
        """Read a vocabulary written by :meth:`save`.

        Raises:
          FileNotFoundError: ``path`` does not exist.
          ValueError: the file is not a saved :class:`CharVocab`.

        Example:
            >>> CharVocab.load("no/such/vocab.json")
            Traceback (most recent call last):
            ...
            FileNotFoundError: path: 'no/such/vocab.json' does not exist
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path: {str(path)!r} does not exist")
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            ok = record.get("format") == "rnnjax.data.CharVocab" and record.get("specials") == list(cls.SPECIALS)
            chars = record["chars"]
        except (ValueError, AttributeError, KeyError, TypeError):
            ok = False
        if not ok:
            raise ValueError(f"path: {str(path)!r} is not a CharVocab JSON file (written by CharVocab.save)")
        return cls(chars)


# --- language-model batching -----------------------------------------------------------------


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
    ids = _ids_arg(ids, "ids")
    batch_size = _int_arg(batch_size, "batch_size")
    n = (len(ids) - 1) // batch_size
    if n < 1:
        raise ValueError(f"ids: expected at least batch_size + 1 = {batch_size + 1} tokens, got {len(ids)}")
    rows = np.arange(batch_size)[:, None] * n + np.arange(n + 1)[None, :]
    return ids[rows].astype(np.int32)


def _streams_arg(streams) -> np.ndarray:
    streams = _ids_arg(streams, "streams", "[b, n + 1]")
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
    window = _int_arg(window, "window")
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
    window = _int_arg(window, "window")
    index = _int_arg(index, "index", minimum=0)
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
        max_len = _int_arg(max_len, "max_len", minimum=0)
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


# --- synthetic long-dependency tasks ---------------------------------------------------------


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
    rng = _rng(seed)
    batch = _int_arg(batch, "batch")
    num_steps = _int_arg(num_steps, "num_steps", minimum=2)
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
    rng = _rng(seed)
    batch = _int_arg(batch, "batch")
    delay = _int_arg(delay, "delay")
    num_symbols = _int_arg(num_symbols, "num_symbols")
    copy_len = _int_arg(copy_len, "copy_len")
    num_steps = delay + 2 * copy_len
    symbols = rng.integers(1, num_symbols + 1, size=(batch, copy_len)).astype(np.int32)
    inputs = np.zeros((batch, num_steps), np.int32)
    targets = np.zeros((batch, num_steps), np.int32)
    inputs[:, :copy_len] = symbols
    inputs[:, copy_len + delay - 1] = num_symbols + 1
    targets[:, copy_len + delay :] = symbols
    return inputs, targets


# --- time series -----------------------------------------------------------------------------


def time_series_windows(series, input_len: int, horizon: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Sliding windows over a series for next-value forecasting.

    Window ``i`` reads steps ``[i, i + input_len)`` and predicts ``[i + input_len, i + input_len +
    horizon)``, for every ``i`` with the targets inside the series: ``m = n - input_len - horizon
    + 1`` windows, stride 1.

    Args:
      series: ``[n]`` or ``[n, f]`` values (a 1-D series has ``f = 1``).
      input_len: the steps each window reads, ``>= 1``.
      horizon: the steps each window predicts, ``>= 1``.

    Returns:
      ``(inputs, targets)``: ``[m, input_len, f]`` and ``[m, horizon, f]``, of the series' dtype
      if it is floating, else ``float32``.

    Example:
        >>> inputs, targets = time_series_windows(np.arange(6.0), input_len=3, horizon=2)
        >>> inputs[..., 0].tolist(), targets[..., 0].tolist()
        ([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]], [[3.0, 4.0], [4.0, 5.0]])
    """
    arr = np.asarray(series)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"series: expected real numbers, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"series: expected shape [n] or [n, f], got {np.shape(series)}")
    input_len = _int_arg(input_len, "input_len")
    horizon = _int_arg(horizon, "horizon")
    m = arr.shape[0] - input_len - horizon + 1
    if m < 1:
        raise ValueError(
            f"series: expected at least input_len + horizon = {input_len + horizon} steps, got {arr.shape[0]}"
        )
    windows = np.lib.stride_tricks.sliding_window_view(arr, input_len + horizon, axis=0)  # [m, f, L]
    windows = np.ascontiguousarray(np.swapaxes(windows, 1, 2))  # [m, L, f]
    return windows[:, :input_len], windows[:, input_len:]


def sunspots() -> np.ndarray:
    """Yearly mean sunspot numbers, 1700-2008, from statsmodels' bundled dataset.

    Entry ``i`` is the year ``1700 + i`` (``SUNACTIVITY`` of ``statsmodels.datasets.sunspots``).
    Pair it with :func:`time_series_windows`.

    Returns:
      ``float32 [309]``.

    Raises:
      ImportError: statsmodels is not installed (``pip install statsmodels``, or rnnjax's
        ``[dev]`` extra).

    Example:
        >>> series = sunspots()
        >>> series.shape, series[:3].tolist()
        ((309,), [5.0, 11.0, 16.0])
    """
    try:
        from statsmodels.datasets import sunspots as dataset
    except ImportError as error:
        raise ImportError(
            "sunspots() needs statsmodels, which is not installed: pip install statsmodels "
            "(or install rnnjax with the [dev] extra)"
        ) from error
    frame = dataset.load_pandas().data
    years = frame["YEAR"].to_numpy()
    if not np.array_equal(years, 1700 + np.arange(len(years))):  # the documented indexing
        raise ValueError("statsmodels' sunspots dataset: expected consecutive years from 1700")
    return frame["SUNACTIVITY"].to_numpy().astype(np.float32)
