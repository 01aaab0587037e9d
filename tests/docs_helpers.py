"""Run the ```python blocks of a Markdown page, as a reader would: in order, in one namespace.

Used by tests/test_tutorials.py (and usable by tests/test_docs.py for the README). The blocks run
with JAX's default dtype promotion ("standard"), as a user has it; the suite itself runs strict.
"""

import re
from pathlib import Path

import jax

ROOT = Path(__file__).parents[1]
_BLOCK = re.compile(r"^```python\n(.*?)^```", flags=re.S | re.M)


def python_blocks(path: str | Path) -> list[str]:
    """The source of every ```python block of a Markdown file, in page order."""
    return _BLOCK.findall((ROOT / path).read_text())


def run_page(path: str | Path) -> dict:
    """Execute every ```python block of ``path`` (relative to the repository root) in one shared
    namespace, in order; return the namespace, so a test can assert on what the page computes."""
    namespace: dict = {"__name__": "__docs__"}
    with jax.numpy_dtype_promotion("standard"):
        for i, block in enumerate(python_blocks(path)):
            exec(compile(block, f"{path}[block {i}]", "exec"), namespace)
    return namespace
