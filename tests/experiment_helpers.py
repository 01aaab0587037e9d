"""Shared by the experiment smoke tests (tests/test_experiments*.py): run a script as a user does, read its JSON."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = REPO / "experiments"


def run_experiment(name: str, *flags: str, timeout: float = 600, env: dict | None = None):
    """``python experiments/<name>.py <flags>`` from the repository root; the CompletedProcess."""
    return subprocess.run(
        [sys.executable, str(EXPERIMENTS / f"{name}.py"), *flags],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def numbers(tree):
    """Every number in a JSON tree (bools excluded)."""
    if isinstance(tree, dict):
        for value in tree.values():
            yield from numbers(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from numbers(value)
    elif isinstance(tree, int | float) and not isinstance(tree, bool):
        yield tree
