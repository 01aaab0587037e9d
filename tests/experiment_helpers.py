"""Shared by the experiment smoke tests (tests/test_experiments*.py): run a script as a user does, read its JSON."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = REPO / "experiments"
COMMON_FLAGS = ("--full", "--tiny", "--steps", "--seed", "--out", "--no-docs")  # experiments/_common.py


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


def assert_help_lists(name: str, *extra_flags: str) -> None:
    """``--help`` works and lists the flags every experiment shares, and ``extra_flags``."""
    result = run_experiment(name, "--help", timeout=120)
    assert result.returncode == 0, result.stderr
    for flag in (*COMMON_FLAGS, *extra_flags):
        assert flag in result.stdout, flag


def tiny_run(name: str, out: Path, *flags: str, steps: int | None = 2, env: dict | None = None) -> dict:
    """Run ``name`` at ``--tiny`` (and ``--steps steps`` unless None) into ``out``; its checked JSON.

    Checked here: the script exits cleanly, and its JSON names the script and the size, records the
    steps asked for and holds finite numbers only.
    """
    step_flags = () if steps is None else ("--steps", str(steps))
    result = run_experiment(name, "--tiny", *step_flags, "--out", str(out), *flags, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / f"{name}.json").read_text())
    assert results["name"] == name and results["size"] == "tiny"
    if steps is not None:
        assert results["config"]["steps"] == steps
    assert all(math.isfinite(x) for x in numbers(results))
    return results


def load_experiment(name: str):
    """The script ``experiments/<name>.py`` imported as a module (it imports ``_common`` from its folder)."""
    sys.path.insert(0, str(EXPERIMENTS))
    try:
        spec = importlib.util.spec_from_file_location(f"_experiment_{name}", EXPERIMENTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(EXPERIMENTS))


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
