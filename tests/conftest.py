"""Shared test fixtures: the cell catalogue, random params, float64, float64.

Strict dtype promotion is set in the root conftest.py; warnings are errors (pyproject)."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import settings

import rnnjax as rj

# Property tests (hypothesis): on CI the same examples every run, so a red build is reproducible;
# locally new ones each run (and the failing ones replayed from .hypothesis/).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")

# One instance of every cell kind, small enough for float64 gradient checks.
CELLS = {
    "elman": rj.ElmanCell(5),
    "elman_relu": rj.ElmanCell(5, activation="relu"),
    "jordan": rj.JordanCell(5, output_size=3, context_decay=0.5),
    "rmlp": rj.RMLPCell(5, mlp_sizes=(6, 4)),
    "lstm": rj.LSTMCell(5),
    "lstm_peephole": rj.LSTMCell(5, peephole=True),
    "lstm_proj": rj.LSTMCell(5, proj_size=3),
    "gru": rj.GRUCell(5),
    "gru_cho": rj.GRUCell(5, reset_after=False),
    "layernorm_lstm": rj.LayerNormLSTMCell(5),
    "layernorm_gru": rj.LayerNormGRUCell(5),
    "layernorm_gru_cho": rj.LayerNormGRUCell(5, reset_after=False),
    "mingru": rj.MinGRUCell(5),
    "minlstm": rj.MinLSTMCell(5),
    "stacked": rj.StackedCell([rj.LSTMCell(5), rj.GRUCell(4)]),
}
INPUT_SIZE = 3


# variants with dedicated test files (test_layernorm.py, test_projection.py): the generic battery runs
# them in the slow suite (CI runs both), keeping the default suite near its budget
SLOW_IN_THE_CATALOGUE = {"layernorm_lstm", "layernorm_gru", "layernorm_gru_cho", "lstm_proj"}


@pytest.fixture(
    params=[pytest.param(n, marks=pytest.mark.slow) if n in SLOW_IN_THE_CATALOGUE else n for n in sorted(CELLS)]
)
def cell(request):
    return CELLS[request.param]


# unroll's two paths for a test's own parametrize, with the hoisted one in the slow suite (CI runs both suites)
BOTH_PATHS_HOISTED_SLOW = pytest.mark.parametrize(
    "hoist", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["in-loop", "hoisted"]
)


@pytest.fixture(params=[False, True], ids=["in-loop", "hoisted"])
def hoist(request):
    """Both of unroll's paths: projection inside the scan (the CPU default) and hoisted (the GPU/TPU default)."""
    return request.param


@pytest.fixture
def defer_weight_gradient(monkeypatch):
    """unroll's hoisted path with the recurrent weight gradient after the backward loop, on this backend."""
    monkeypatch.setitem(rj.recurrence.DEFER_WEIGHT_GRADIENT, jax.default_backend(), True)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@functools.cache
def random_params(cell, input_size=INPUT_SIZE, seed=0):
    """Params of ``cell`` with every leaf random (cached: XLA:CPU compiles each init shape, ~1 s)."""
    return randomize(cell.init(jax.random.key(seed), input_size), jax.random.key(seed + 1))


def randomize(params, key, scale=0.5):
    """Replace every leaf by N(0, scale^2) noise of its shape and dtype (zero biases are too easy)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten(
        [scale * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
    )


def as_float64(tree):
    """Every leaf of ``tree`` cast to float64 (under the ``x64`` fixture or ``jax.enable_x64``)."""
    return jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), tree)


def assert_trees_close(a, b, **tol):
    """Same tree structure and every leaf close (``np.testing.assert_allclose``'s ``rtol``, ``atol``)."""
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(x, y, **tol)


def equations(jaxpr, primitive: str) -> list:
    """Every equation of ``primitive`` (e.g. "dot_general") in ``jaxpr``, inside scans, jits, checkpoints and
    custom rules too."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == primitive:
            found.append(eqn)
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found += equations(inner, primitive)
    return found


def scan_carry_shapes(jaxpr) -> list:
    """The carry shapes of every scan in ``jaxpr``, nested ones too (a backward loop's accumulators among them)."""
    shapes = []
    for eqn in equations(jaxpr, "scan"):
        num_consts, num_carry = eqn.params["num_consts"], eqn.params["num_carry"]
        shapes += [v.aval.shape for v in eqn.invars[num_consts : num_consts + num_carry]]
    return shapes


def assert_torch_state_is(state, original, merged_biases=True):
    """``interop.to_torch``'s state dict against the torch module's (``original``, numpy): torch's names in
    torch's order, exact weights; with ``merged_biases`` (rnnjax keeps one bias where torch has two),
    ``bias_ih`` holds torch's two biases summed and ``bias_hh`` zeros."""
    assert list(state) == list(original)
    for name, value in state.items():
        if not merged_biases or name.startswith("weight"):
            np.testing.assert_array_equal(value.numpy(), original[name])  # exact values
        elif name.startswith("bias_ih"):
            np.testing.assert_array_equal(value.numpy(), original[name] + original[name.replace("_ih", "_hh")])
        else:
            np.testing.assert_array_equal(value.numpy(), 0.0)  # bias_hh
