"""The README's code runs as written (with JAX's default dtype promotion, as a user has it)."""

import re
from pathlib import Path

import jax
import pytest

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_code_runs(index, capsys):
    with jax.numpy_dtype_promotion("standard"):
        exec(compile(BLOCKS[index], f"README.md[{index}]", "exec"), {})
