"""rj.layers.deep, the torch-style constructor: what it builds, that it has the structure of a converted
torch module (nn.LSTM, nn.GRU, nn.RNN; layers, directions, projections) and runs its weights as torch
does, and its argument checks."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax as rj
from docs_helpers import ROOT
from rnnjax import interop

F, H, T = 3, 4, 6


def test_what_deep_builds():
    lstm = rj.LSTMCell(H)
    assert rj.layers.deep(rj.LSTMCell, H) == rj.RNN(lstm)
    assert rj.layers.deep(rj.LSTMCell, H, bidirectional=True) == rj.Bidirectional(lstm, lstm)
    deep = rj.layers.deep(rj.LSTMCell, H, num_layers=3, bidirectional=True, dropout=0.25)
    assert deep == rj.Stack([rj.Bidirectional(lstm, lstm)] * 3, dropout=0.25)
    assert deep.output_size == 2 * H
    # the cell's own settings go through
    relu = rj.layers.deep(rj.ElmanCell, H, num_layers=2, activation="relu", param_dtype=jnp.bfloat16)
    assert relu == rj.Stack([rj.ElmanCell(H, activation="relu", param_dtype=jnp.bfloat16)] * 2)
    projected = rj.layers.deep(rj.LSTMCell, H, num_layers=2, bidirectional=True, proj_size=2)
    assert projected.output_size == 4 and projected.layers[1].forward.cell.proj_size == 2
    assert hash(deep) == hash(rj.layers.deep(rj.LSTMCell, H, num_layers=3, bidirectional=True, dropout=0.25))
    # the params: one entry per layer, a layer's input the last one's output
    params = jax.eval_shape(lambda k: deep.init(k, F), jax.random.key(0))
    assert len(params) == 3 and params[0].forward.w_i.shape == (F, 4 * H)
    assert params[1].backward.w_i.shape == params[2].forward.w_i.shape == (2 * H, 4 * H)


def test_dropout_acts_between_layers_in_training_only():
    layer = rj.layers.deep(rj.GRUCell, H, num_layers=2, dropout=0.5)
    params = layer.init(jax.random.key(0), F)
    xs = jax.random.normal(jax.random.key(1), (T, F))
    plain = rj.Stack([rj.GRUCell(H)] * 2)
    np.testing.assert_array_equal(layer.apply(params, xs), plain.apply(params, xs))  # no key: no dropout
    trained = layer.apply(params, xs, key=jax.random.key(2))
    assert not np.allclose(trained, plain.apply(params, xs))
    np.testing.assert_array_equal(
        trained, rj.Stack([rj.GRUCell(H)] * 2, dropout=0.5).apply(params, xs, key=jax.random.key(2))
    )


# --- the structure of torch's modules ------------------------------------------------------------


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="torch not installed (pip install -e .[interop])")


# (torch module, its keyword arguments) -> (cell class, its keyword arguments), every kind, 1-3 layers
CASES = [
    ("LSTM", {"num_layers": 3, "bidirectional": True, "dropout": 0.1}, rj.LSTMCell, {}),
    ("LSTM", {"num_layers": 1, "bidirectional": False}, rj.LSTMCell, {}),
    ("LSTM", {"num_layers": 2, "bidirectional": True, "proj_size": 2}, rj.LSTMCell, {"proj_size": 2}),
    ("GRU", {"num_layers": 2, "bidirectional": False, "dropout": 0.2}, rj.GRUCell, {}),
    ("GRU", {"num_layers": 1, "bidirectional": True}, rj.GRUCell, {}),
    ("RNN", {"num_layers": 2, "bidirectional": True, "nonlinearity": "relu"}, rj.ElmanCell, {"activation": "relu"}),
    ("RNN", {"num_layers": 3, "bidirectional": False, "bias": False}, rj.ElmanCell, {}),
]


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN:UserWarning")
@pytest.mark.parametrize(
    "module_name, torch_kwargs, cell_type, cell_kwargs",
    CASES,
    ids=["lstm-3-bi-dropout", "lstm-1", "lstm-2-bi-proj", "gru-2-dropout", "gru-1-bi", "rnn-relu-2-bi", "rnn-3-nobias"],
)
def test_deep_is_the_structure_of_a_converted_torch_module(
    torch, x64, module_name, torch_kwargs, cell_type, cell_kwargs
):
    torch.manual_seed(0)
    module = getattr(torch.nn, module_name)(F, H, **torch_kwargs).double().eval()
    num_layers, bidirectional = torch_kwargs["num_layers"], torch_kwargs["bidirectional"]
    dropout = torch_kwargs.get("dropout", 0.0)
    layer = rj.layers.deep(
        cell_type, H, num_layers=num_layers, bidirectional=bidirectional, dropout=dropout, **cell_kwargs
    )

    converted_layer, converted = interop.from_torch(module)  # float32 params, as deep's default
    assert converted_layer == layer
    mine = jax.eval_shape(lambda k: layer.init(k, F), jax.random.key(0))
    assert jax.tree_util.tree_structure(mine) == jax.tree_util.tree_structure(converted)
    assert jax.tree_util.tree_map(lambda s: (s.shape, s.dtype), mine) == jax.tree_util.tree_map(
        lambda a: (a.shape, a.dtype), converted
    )

    # the converted float64 params run through the deep layer (float64 cells) give torch's output
    layer64 = rj.layers.deep(
        cell_type,
        H,
        num_layers=num_layers,
        bidirectional=bidirectional,
        dropout=dropout,
        param_dtype=jnp.float64,
        **cell_kwargs,
    )
    _, params64 = interop.from_torch(module, dtype=None)
    xs = np.random.default_rng(0).normal(size=(2, T, F))
    ys = jax.jit(jax.vmap(lambda x: layer64.apply(params64, x)))(xs)
    want = module(torch.tensor(xs).transpose(0, 1))[0].detach().numpy().swapaxes(0, 1)
    np.testing.assert_allclose(ys, want, rtol=1e-10, atol=1e-10)


# --- argument checks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"num_layers": 0}, ValueError, "num_layers: expected a positive integer, got 0"),
        ({"num_layers": 2.0}, ValueError, "num_layers: expected a positive integer, got 2.0"),
        ({"num_layers": True}, ValueError, "num_layers: expected a positive integer, got True"),
        ({"num_layers": 2, "dropout": 1.0}, ValueError, "dropout: expected a probability in [0, 1), got 1.0"),
        ({"num_layers": 2, "dropout": -0.1}, ValueError, "dropout: expected a probability in [0, 1), got -0.1"),
        ({"num_layers": 2, "dropout": "0.1"}, ValueError, "dropout: expected a probability in [0, 1), got '0.1'"),
        ({"dropout": 0.1}, ValueError, "dropout: 0.1 acts between layers and num_layers=1 has none"),
        ({"bidirectional": 1}, TypeError, "bidirectional: expected a bool, got 1"),
        ({"proj_size": -1}, ValueError, "proj_size: expected a positive integer, or 0 or None"),  # the cell's own
        ({"units": 4}, TypeError, "unexpected keyword argument 'units'"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        rj.layers.deep(rj.LSTMCell, H, **kwargs)


def test_cell_type_must_be_a_cell_class():
    with pytest.raises(TypeError, match=re.escape("cell_type: expected a cell class such as rj.LSTMCell, got an ins")):
        rj.layers.deep(rj.LSTMCell(H), H)
    with pytest.raises(TypeError, match=re.escape("cell_type: expected a cell class (making rnnjax.typing.Cell ins")):
        rj.layers.deep(rj.Dense, H)
    with pytest.raises(ValueError, match="hidden_size: expected a positive integer, got 0"):
        rj.layers.deep(rj.GRUCell, 0)


# --- the docs ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_guide_section_runs():
    """The code of docs/guide/unroll.md's "The deep constructor" section runs as written."""
    page = (ROOT / "docs/guide/unroll.md").read_text()
    section = re.split(r"\n##+ ", page.split("### The deep constructor\n", 1)[1], maxsplit=1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    assert blocks
    with jax.numpy_dtype_promotion("standard"):
        for block in blocks:
            exec(compile(block, "docs/guide/unroll.md", "exec"), {})
