"""The README's code runs as written (with JAX's default dtype promotion, as a user has it)."""

import jax
import pytest

from docs_helpers import python_blocks

BLOCKS = python_blocks("README.md")


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_code_runs(index, capsys):
    with jax.numpy_dtype_promotion("standard"):
        exec(compile(BLOCKS[index], f"README.md[{index}]", "exec"), {})
