"""The text corpus: a directory or file split into train/valid/test, by default the Python standard library."""

import hashlib
import math
import os
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from rnnjax.data import common

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
        max_chars = common.int_arg(max_chars, "max_chars")
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
