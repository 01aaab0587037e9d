"""Files written whole or not at all."""

import os
from collections.abc import Callable
from pathlib import Path


def replace_file(path: Path, write: Callable[[Path], object]) -> None:
    """``write(temporary path)``, then rename it to ``path``: a write killed midway never leaves half a file."""
    partial = path.with_name(path.name + ".partial")
    write(partial)
    os.replace(partial, path)
