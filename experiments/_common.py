"""Plumbing shared by the experiment scripts: the common flags, writing results and figures.

Every experiment takes ``--full`` (the paper-sized run, for a GPU/TPU), ``--tiny`` (a seconds-long
smoke run, used by tests/test_experiments.py), ``--steps``, ``--seed`` and ``--out``; writes
``<out>/<name>.json`` and ``<out>/<name>_*.png``; and, for a run at the default or full size,
copies the figures into ``docs/figures/`` where docs/experiments.md embeds them.
"""

import argparse
import json
import math
import platform
import shutil
import time
from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DOCS_FIGURES = REPO / "docs" / "figures"


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every experiment takes."""
    p = argparse.ArgumentParser(description=description)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="the paper-sized run (for a GPU/TPU; hours on a CPU)")
    size.add_argument("--tiny", action="store_true", help="a smoke run of a few seconds (tests)")
    p.add_argument("--steps", type=int, help="training steps per run (default: set by the size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "experiments" / "results", help="where to write JSON and PNGs")
    p.add_argument("--no-docs", action="store_true", help="do not copy the figures into docs/figures/")
    p.add_argument(
        "--devices",
        type=int,
        help="train data-parallel on this many of jax.devices() (default: all; the batch must divide by it)",
    )
    return p


def size_name(args) -> str:
    return "full" if args.full else "tiny" if args.tiny else "default"


def chosen_size(args, sizes: dict, flags=("steps",)) -> dict:
    """A copy of ``sizes[size_name(args)]`` with the command-line ``flags`` that were given put in."""
    size = dict(sizes[size_name(args)])
    for flag in flags:
        if getattr(args, flag) is not None:
            size[flag] = getattr(args, flag)
    return size


def environment() -> dict:
    """Where the numbers were measured."""
    return {
        "backend": jax.default_backend(),
        "devices": [d.device_kind for d in jax.devices()],
        "jax": jax.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


def finite_or_none(x):
    """A float for JSON; None for NaN/inf (JSON has no NaN)."""
    x = float(x)
    return x if math.isfinite(x) else None


def save_figure(fig, args, name: str, suffix: str) -> Path:
    """Write ``<out>/<name>_<suffix>.png`` (and a copy in docs/figures/ for default/full runs)."""
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{name}_{suffix}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    if not (args.tiny or args.no_docs):
        DOCS_FIGURES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_FIGURES / path.name)
    return path


def save_results(results: dict, args, name: str) -> Path:
    """Write ``<out>/<name>.json``."""
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{name}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    return path


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub-markdown table (numbers formatted by the caller)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
