"""The public surface: the design contract's entry points, __all__ pinned, docstrings everywhere."""

import inspect
import subprocess
import sys

import jax
import jax.numpy as jnp

import rnnjax as rj

PUBLIC = {
    "Bidirectional",
    "BidirectionalParams",
    "Dense",
    "DenseParams",
    "ElmanCell",
    "ElmanParams",
    "Embedding",
    "EmbeddingParams",
    "GRUCell",
    "GRUParams",
    "HiddenCarry",
    "JordanCarry",
    "JordanCell",
    "JordanParams",
    "LSTMCarry",
    "LSTMCell",
    "LSTMParams",
    "LayerNormGRUCell",
    "LayerNormGRUParams",
    "LayerNormLSTMCell",
    "LayerNormLSTMParams",
    "LayerNormParams",
    "MinGRUCell",
    "MinGRUParams",
    "MinLSTMCell",
    "MinLSTMParams",
    "ProjectedLSTMParams",
    "RMLPCell",
    "RMLPParams",
    "RNN",
    "Stack",
    "StackedCell",
    "checking",
    "count_params",
    "summary",
    "unroll",
}


def test_public_names_are_pinned():
    assert set(rj.__all__) == PUBLIC
    assert all(hasattr(rj, name) for name in PUBLIC)


def test_public_submodules():
    core = ("attention", "decode", "losses", "metrics", "models", "recurrence", "train")
    lazy = ("apps", "data", "flax", "interop", "kernels", "local", "ngram", "parallel", "vrnn")
    for name in (*core, *lazy):
        assert getattr(rj, name).__doc__, f"rj.{name} lacks a module docstring"
    for name in ("captioning", "cli", "lm", "speech"):
        assert getattr(rj.apps, name).__doc__, f"rj.apps.{name} lacks a module docstring"


def test_import_rnnjax_imports_the_core_only():
    """The applications and the modules beyond the core are imported on first use (rj.interop ...)."""
    code = "import sys, rnnjax; print(' '.join(sorted(m for m in sys.modules if m.startswith('rnnjax'))))"
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    core = ("_src", "attention", "cells", "decode", "heads", "layers", "losses", "metrics", "models", "recurrence")
    core += ("train", "typing")
    assert "rnnjax" in loaded and "rnnjax.cells" in loaded
    outside = [m for m in loaded if m != "rnnjax" and m.split(".")[1] not in core]
    assert not outside, outside


def test_unroll_signature_matches_design():
    sig = inspect.signature(rj.unroll)
    assert list(sig.parameters)[:4] == ["cell", "params", "xs", "carry"]
    keyword_only = {n: p.default for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert keyword_only == {
        "length": None,
        "reverse": False,
        "unroll": None,
        "hoist": None,
        "remat": False,
        "parallel": False,
        "mask": None,  # issue 17's per-step masks, after DESIGN.md's keywords
        "masked_output": "zeros",
        "key": None,  # issue 17's dropout and zoneout inside the cells
    }


def test_design_entry_point_example():
    key = jax.random.key(0)
    for make in (rj.LSTMCell, rj.ElmanCell, rj.JordanCell, rj.RMLPCell, rj.GRUCell, rj.MinGRUCell, rj.MinLSTMCell):
        cell = make(128)
        params = cell.init(key, 64)
        xs = jnp.ones((12, 64))
        carry, ys = rj.unroll(cell, params, xs, length=7, reverse=False)
        assert ys.shape == (12, 128)


def test_every_public_callable_has_a_docstring_with_an_example():
    for name in PUBLIC:
        obj = getattr(rj, name)
        if name.endswith(("Params", "Carry")):
            continue  # NamedTuples: documented by field comments
        assert obj.__doc__ and ">>>" in obj.__doc__, f"{name} lacks a doctested example"
        for method in ("init", "initial_carry", "project", "recur", "step"):
            fn = getattr(obj, method, None)
            if fn is not None:
                assert fn.__doc__, f"{name}.{method} lacks a docstring"
