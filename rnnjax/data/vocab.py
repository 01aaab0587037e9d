"""The character vocabulary (``<pad>``, ``<unk>``, ``<bos>``, ``<eos>``), saved as JSON."""

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rnnjax.data import common


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
        min_count = common.int_arg(min_count, "min_count")
        if max_size is not None:
            max_size = common.int_arg(max_size, "max_size", minimum=len(cls.SPECIALS))
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
        ids = common.ids_arg(ids, "ids")
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
