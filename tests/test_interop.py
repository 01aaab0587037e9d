"""rnnjax.interop: exact conversion with torch, Keras, Flax (linen, NNX) and the Haiku recipe of docs/interop.md.

Outputs, final carries and input gradients are compared with the source framework in float64
(where it allows), on random weights, for 1-3 layers, uni- and bidirectional, with and without
padding lengths. torch, Keras, safetensors and Haiku tests skip cleanly when the package is missing.
"""

import os

os.environ["KERAS_BACKEND"] = "jax"  # before anything imports keras

import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax as rj
from conftest import assert_torch_state_is
from rnnjax import interop, layers

F, H, T = 3, 4, 6
LENGTHS = np.array([T, 2, 5])  # one full, two padded
B = len(LENGTHS)
TOL = {"rtol": 1e-10, "atol": 1e-10}  # float64 against float64


def _rng(seed):
    return np.random.default_rng(seed)


def _xs(seed=0):
    return _rng(seed).normal(size=(B, T, F))


def _random_like(tree, seed=0, scale=0.5):
    """Every leaf replaced by N(0, scale^2) noise of its shape and dtype (numpy: no compile)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    rng = _rng(seed)
    return treedef.unflatten([jnp.asarray(scale * rng.normal(size=a.shape), a.dtype) for a in leaves])


def _same(converted, expected):
    """``(layer, params)`` pairs: equal layers, and params equal in structure, dtypes and values."""
    assert converted[0] == expected[0]
    _tree_equal(converted[1], expected[1])


def _tree_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(la, lb, strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="torch not installed (pip install -e .[interop])")


@pytest.fixture(scope="module")
def keras():
    keras = pytest.importorskip("keras", reason="keras not installed (pip install -e .[interop])")
    if keras.backend.backend() != "jax":
        pytest.skip(f"keras was imported with the {keras.backend.backend()} backend before this module")
    return keras


# --- torch ---------------------------------------------------------------------------------------

TORCH_CASES = [  # kind, num_layers, bidirectional, bias: every kind, 1-3 layers, uni and bi, bias=False
    ("rnn_tanh", 1, False, False),
    ("rnn_relu", 3, False, True),
    ("lstm", 1, True, True),
    ("gru", 2, True, True),
]  # docs/interop.md runs a 2-layer bidirectional LSTM too (test_docs_examples_run)


def _relu(kind):
    return {"nonlinearity": "relu"} if kind == "rnn_relu" else {}


def _torch_module(torch, kind, num_layers, bidirectional, bias, seed=0):
    torch.manual_seed(seed)
    kwargs = {"num_layers": num_layers, "bidirectional": bidirectional, "bias": bias}
    if kind.startswith("rnn"):
        return torch.nn.RNN(F, H, nonlinearity=kind[4:], **kwargs)
    return {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](F, H, **kwargs)


@pytest.mark.parametrize("kind, num_layers, bidirectional, bias", TORCH_CASES, ids=lambda v: str(v))
def test_from_torch_matches_torch(torch, x64, kind, num_layers, bidirectional, bias):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    module = _torch_module(torch, kind, num_layers, bidirectional, bias).double()
    layer, params = interop.from_torch(module, dtype=None)
    assert jax.tree_util.tree_leaves(params)[0].dtype == jnp.float64
    expected_type = rj.Stack if num_layers > 1 else (rj.Bidirectional if bidirectional else rj.RNN)
    assert isinstance(layer, expected_type)
    assert layer.output_size == (2 if bidirectional else 1) * H

    xs = _xs()
    n_dirs = num_layers * (2 if bidirectional else 1)
    h0 = 0.5 * _rng(1).normal(size=(n_dirs, B, H))
    c0 = 0.5 * _rng(2).normal(size=(n_dirs, B, H))
    hx = (torch.tensor(h0), torch.tensor(c0)) if kind == "lstm" else torch.tensor(h0)

    # padded batch: torch's packed sequences vs rnnjax's length, from an initial carry
    packed = pack_padded_sequence(torch.tensor(xs), torch.tensor(LENGTHS), batch_first=True, enforce_sorted=False)
    out, hn = module(packed, hx)
    ys_torch = pad_packed_sequence(out, batch_first=True, total_length=T)[0].detach().numpy()
    carry0 = interop.from_torch_carry(layer, h0, c0 if kind == "lstm" else None, dtype=None)
    run = jax.jit(jax.vmap(lambda x, n, c: layers.apply_with_carry(layer, params, x, c, length=n)))
    carry, ys = run(xs, LENGTHS, carry0)
    np.testing.assert_allclose(ys, ys_torch, **TOL)
    np.testing.assert_array_equal(ys[1, 2:], 0.0)  # zero past the length, as pad_packed_sequence
    hn_ours = interop.to_torch_carry(layer, carry)
    if kind == "lstm":
        np.testing.assert_allclose(hn_ours[0], hn[0].detach().numpy(), **TOL)
        np.testing.assert_allclose(hn_ours[1], hn[1].detach().numpy(), **TOL)
    else:
        np.testing.assert_allclose(hn_ours, hn.detach().numpy(), **TOL)

    # zero initial carry: layer.apply is torch's output, without padding and with lengths
    apply = jax.jit(jax.vmap(lambda x, n: (layer.apply(params, x), layer.apply(params, x, length=n))))
    ys_full, ys_padded = apply(xs, LENGTHS)
    ys_torch = module(torch.tensor(xs).transpose(0, 1))[0].detach().numpy().swapaxes(0, 1)
    np.testing.assert_allclose(ys_full, ys_torch, **TOL)
    out = module(pack_padded_sequence(torch.tensor(xs), torch.tensor(LENGTHS), batch_first=True, enforce_sorted=False))
    ys_torch = pad_packed_sequence(out[0], batch_first=True, total_length=T)[0].detach().numpy()
    np.testing.assert_allclose(ys_padded, ys_torch, **TOL)


@pytest.mark.parametrize("kind, num_layers, bidirectional", [("lstm", 1, True), ("gru", 2, False)])
def test_input_gradients_match_torch_autograd(torch, x64, kind, num_layers, bidirectional):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    module = _torch_module(torch, kind, num_layers, bidirectional, True).double()
    layer, params = interop.from_torch(module, dtype=None)
    xs = _xs()
    weights = _rng(3).normal(size=(B, T, layer.output_size))
    xs_t = torch.tensor(xs, requires_grad=True)
    packed = pack_padded_sequence(xs_t, torch.tensor(LENGTHS), batch_first=True, enforce_sorted=False)
    ys_t = pad_packed_sequence(module(packed)[0], batch_first=True, total_length=T)[0]
    (ys_t * torch.tensor(weights)).sum().backward()

    def loss(x):
        return jnp.sum(jax.vmap(lambda xi, n: layer.apply(params, xi, length=n))(x, LENGTHS) * weights)

    np.testing.assert_allclose(jax.jit(jax.grad(loss))(xs), xs_t.grad.numpy(), **TOL)


@pytest.mark.parametrize("kind", ["rnn_relu", "lstm", "gru"])
def test_torch_round_trips(torch, kind):
    module = _torch_module(torch, kind, 2, True, True)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-zero recurrent biases, so the bias scheme shows
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    original = {k: v.numpy() for k, v in module.state_dict().items()}
    layer, params = interop.from_torch(module)
    state = interop.to_torch(layer, params)
    assert all(value.dtype == torch.float32 for value in state.values())
    assert_torch_state_is(state, original, merged_biases=kind != "gru")  # the GRU keeps both biases
    copy = interop.to_torch_module(layer, params)
    assert repr(copy) == repr(module)
    batch_first = type(module)(F, H, num_layers=2, bidirectional=True, batch_first=True, **_relu(kind))
    batch_first.load_state_dict(module.state_dict())
    _same(interop.from_torch(batch_first), (layer, params))  # batch_first plays no part
    # the same outputs, computed in float64 so that the only difference left is the float32 rounding of the
    # summed bias b_ih + b_hh (about 6e-8 relative); in float32 the relu RNN's outputs reach the hundreds and
    # the two bias schemes' rounding differs by more than 1e-6 there
    xs = torch.tensor(_xs()[0], dtype=torch.float64)
    copy64, module64 = interop.to_torch_module(layer, params).double(), batch_first.double()
    want = module64(xs[None])[0][0].detach().numpy()  # batch_first holds module's weights
    np.testing.assert_allclose(copy64(xs)[0].detach().numpy(), want, rtol=1e-6, atol=1e-9)
    # rnnjax -> torch -> rnnjax: the same values, for every kind
    _same(interop.from_torch(copy), (layer, params))


def test_torch_dtypes(torch, x64):
    module = torch.nn.GRU(F, H).double()
    _, params64 = interop.from_torch(module, dtype=None)
    _, params32 = interop.from_torch(module)  # float32 by default
    assert {p.dtype for p in jax.tree_util.tree_leaves(params64)} == {jnp.dtype(jnp.float64)}
    assert {p.dtype for p in jax.tree_util.tree_leaves(params32)} == {jnp.dtype(jnp.float32)}
    _, bf16 = interop.from_torch(module.to(torch.bfloat16), dtype=None)
    assert bf16.w_i.dtype == jnp.bfloat16
    assert interop.to_torch(rj.RNN(rj.GRUCell(H)), bf16)["weight_ih_l0"].dtype == torch.bfloat16
    with jax.enable_x64(False), pytest.raises(ValueError, match="dtype: float64 params need jax_enable_x64"):
        interop.from_torch(module.double(), dtype=None)


def test_torch_state_dict_files(torch, tmp_path):
    module = torch.nn.LSTM(F, H, num_layers=2, bidirectional=True, dropout=0.25)
    want_layer, want_params = interop.from_torch(module)
    assert want_layer.dropout == 0.25
    path = tmp_path / "lstm.pt"
    torch.save(module.state_dict(), path)
    assert sorted(interop.load_torch_state_dict(path)) == sorted(module.state_dict())
    layer, params = interop.from_torch_state_dict(path, "lstm", dropout=0.25)
    _same((layer, params), (want_layer, want_params))

    # a whole model's state dict: pick the RNN's keys by prefix
    model = torch.nn.ModuleDict({"rnn": module, "head": torch.nn.Linear(2 * H, 2)})
    torch.save(model.state_dict(), path)
    _same(interop.from_torch_state_dict(path, "lstm", prefix="rnn.", dropout=0.25), (want_layer, want_params))

    # never unpickle arbitrary objects
    torch.save({"weight_ih_l0": module.weight_ih_l0, "evil": pathlib.Path("x")}, path)
    with pytest.raises(ValueError, match="refuses to unpickle"):
        interop.load_torch_state_dict(path)
    torch.save({"model": module.state_dict(), "epoch": torch.tensor(3)}, path)
    with pytest.raises(ValueError, match="'model' holds a"):
        interop.load_torch_state_dict(path)
    torch.save(module.state_dict(), path)
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(ValueError, match="is not a readable torch checkpoint"):
        interop.load_torch_state_dict(path)


def test_safetensors_files(monkeypatch, tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="safetensors not installed")
    monkeypatch.setitem(sys.modules, "torch", None)  # .safetensors files need no torch
    state = {k: _rng(i).normal(size=s).astype(np.float32) for i, (k, s) in enumerate(_gru_shapes().items())}
    path = tmp_path / "gru.safetensors"
    safetensors_numpy.save_file(state, str(path))
    _same(interop.from_torch_state_dict(path, "gru"), interop.from_torch_state_dict(state, "gru"))


def test_safetensors_missing_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match="needs the 'safetensors' package"):
        interop.load_torch_state_dict(tmp_path / "gru.safetensors")


def _gru_shapes(num_layers=1, bidirectional=False):
    shapes = {}
    for i in range(num_layers):
        for s in ["", "_reverse"][: 2 if bidirectional else 1]:
            f = F if i == 0 else (2 if bidirectional else 1) * H
            shapes |= {f"weight_ih_l{i}{s}": (3 * H, f), f"weight_hh_l{i}{s}": (3 * H, H)}
            shapes |= {f"bias_ih_l{i}{s}": (3 * H,), f"bias_hh_l{i}{s}": (3 * H,)}
    return shapes


def _state(shapes):
    return {k: np.zeros(s, np.float32) for k, s in shapes.items()}


def test_state_dict_errors_list_every_problem():
    state = _state(_gru_shapes(2, True))
    del state["bias_hh_l1_reverse"]
    state["weight_hh_l0"] = np.zeros((3 * H, H + 1), np.float32)
    state["weight_xx_l0"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError) as info:
        interop.from_torch_state_dict(state, "gru", hidden_size=H)
    message = str(info.value)
    assert "state_dict['bias_hh_l1_reverse']: missing" in message
    assert "state_dict['weight_xx_l0']: unexpected key" in message
    assert f"state_dict['weight_hh_l0']: expected shape ({3 * H}, {H}), got ({3 * H}, {H + 1})" in message
    with pytest.raises(ValueError, match=r"torch.nn.GRU\(input_size=3, hidden_size=4, num_layers=3"):
        interop.from_torch_state_dict(_state(_gru_shapes(2, True)), "gru", num_layers=3)
    with pytest.raises(ValueError, match=re.escape("state_dict['weight_ih_l0_reverse']: unexpected key")):
        interop.from_torch_state_dict(_state(_gru_shapes(1, True)), "gru", bidirectional=False)
    with pytest.raises(ValueError, match="no torch RNN weights"):
        interop.from_torch_state_dict({"head.weight": np.zeros(2)}, "gru")
    with pytest.raises(ValueError, match="kind: expected one of"):
        interop.from_torch_state_dict(_state(_gru_shapes()), "transformer")
    with pytest.raises(ValueError, match=re.escape("state_dict['weight_hr_l0']: unexpected key")):
        interop.from_torch_state_dict(_state(_gru_shapes()) | {"weight_hr_l0": np.zeros((2, H))}, "gru")
    # bias=False: no bias keys, zero biases
    no_bias = {k: v for k, v in _state(_gru_shapes()).items() if k.startswith("weight")}
    layer, params = interop.from_torch_state_dict(no_bias, "gru")
    np.testing.assert_array_equal(params.b_h, 0.0)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"weight_hh_l0": np.zeros((3 * H, H + 1), np.float32)},
            f"state_dict['rnn.weight_hh_l0']: expected shape ({3 * H}, {H}), got ({3 * H}, {H + 1})",
        ),
        ({"bias_ih_l0": np.zeros(3 * H, np.int64)}, "state_dict['rnn.bias_ih_l0']: expected a floating-point tensor"),
        (
            {"weight_ih_l0": np.zeros((3 * H, F), np.float16)},
            "state_dict['rnn.weight_ih_l0']: expected dtype float32 (as the other tensors), got float16",
        ),
        ({"bias_hh_l0": None}, "state_dict['rnn.bias_hh_l0']: missing"),
        ({"bias_ih_l1": np.zeros(3 * H, np.float32)}, "state_dict['rnn.bias_ih_l1']: unexpected key"),
    ],
    ids=["shape", "dtype", "mixed_dtype", "missing", "extra"],
)
def test_a_state_dict_with_one_bad_tensor_names_that_tensor(change, message):
    state = {"rnn." + k: v for k, v in (_state(_gru_shapes()) | change).items() if v is not None}
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        interop.from_torch_state_dict(state, "gru", prefix="rnn.")
    assert str(info.value).count("state_dict['") == 1  # the good tensors are not named


def test_from_torch_names_the_bad_tensor_of_a_module(torch):
    module = torch.nn.GRU(F, H)
    module.weight_hh_l0.data = torch.zeros(3 * H, H + 1)
    with pytest.raises(ValueError, match=re.escape(f"state_dict['weight_hh_l0']: expected shape ({3 * H}, {H}), got")):
        interop.from_torch(module)
    with pytest.raises(TypeError, match=re.escape("got str (for a state dict or a file: from_torch_state_dict(")):
        interop.from_torch("model.pt")


@pytest.mark.parametrize(
    "content, message", [(b"", "it is empty"), (b"weight_ih_l0: [[0.5]]\n", "it starts with b'weight_i'")]
)
def test_a_text_or_empty_file_is_not_a_torch_checkpoint(tmp_path, content, message):
    path = tmp_path / "rnn.pt"
    path.write_bytes(content)
    expected = f"path: {str(path)!r} is not a torch checkpoint (a file written by torch.save, or a .safetensors file)"
    with pytest.raises(ValueError, match=re.escape(f"{expected}: {message}")):
        interop.from_torch_state_dict(path, "gru")


def test_from_torch_rejects_other_modules(torch):  # LSTMs with projections convert: tests/test_projection.py
    with pytest.raises(TypeError, match="module: expected a torch.nn.RNN"):
        interop.from_torch(torch.nn.Linear(F, H))


def _zeros_params(layer):
    shapes = jax.eval_shape(lambda k: layer.init(k, F), jax.random.key(0))
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


@pytest.mark.parametrize("convert", ["to_torch", "to_torch_module", "to_keras", "to_flax"])
def test_to_converters_name_params_of_another_cell(request, convert):
    if convert != "to_flax":
        request.getfixturevalue("keras" if convert == "to_keras" else "torch")
    gru_params, lstm_params = _zeros_params(rj.GRUCell(H)), _zeros_params(rj.LSTMCell(H))
    with pytest.raises(
        TypeError, match=re.escape(f"params: expected a LSTMParams for LSTMCell(hidden_size={H}), got a GRUParams")
    ):
        getattr(interop, convert)(rj.LSTMCell(H), gru_params)
    message = f"params.w_i: expected shape ({F}, {4 * (H + 1)}) for LSTMCell(hidden_size={H + 1}), got ({F}, {4 * H})"
    with pytest.raises(ValueError, match=re.escape(message)):
        getattr(interop, convert)(rj.LSTMCell(H + 1), lstm_params)


@pytest.mark.parametrize(
    "layer, message",
    [
        (rj.RNN(rj.GRUCell(H, reset_after=False)), "torch.nn.GRU is reset-after"),
        (rj.RNN(rj.LSTMCell(H, peephole=True)), "no peepholes"),
        (rj.RNN(rj.LSTMCell(H, learn_initial_carry=True)), "carry0"),
        (rj.RNN(rj.ElmanCell(H), reverse=True), "no backward-only RNN"),
        (rj.Bidirectional(rj.GRUCell(H), rj.GRUCell(H), merge="sum"), "merge='sum'"),
        (rj.Stack([rj.LSTMCell(H), rj.GRUCell(H)]), "one kind of cell"),
        (rj.Stack([rj.LSTMCell(H), rj.LSTMCell(H + 1)]), "same hidden_size"),
        (rj.Stack([rj.Bidirectional(rj.GRUCell(H), rj.GRUCell(H)), rj.GRUCell(H)]), "every layer bidirectional"),
        (rj.RNN(rj.MinGRUCell(H)), "torch has no equivalent of MinGRUCell"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_to_torch_errors(layer, message):
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        interop.to_torch(layer, _zeros_params(layer))


# --- Keras ---------------------------------------------------------------------------------------


def _keras_layer(keras, name):
    # zero initializers: no orthogonal init to compile; the weights are set at random below
    kw = {"return_sequences": True, "return_state": True, "kernel_initializer": "zeros"}
    kw |= {"recurrent_initializer": "zeros"}
    make = {
        "simple_relu_backwards": lambda: keras.layers.SimpleRNN(H, activation="relu", go_backwards=True, **kw),
        "lstm": lambda: keras.layers.LSTM(H, **kw),
        "gru": lambda: keras.layers.GRU(H, **kw),
        "gru_reset_before_no_bias": lambda: keras.layers.GRU(H, reset_after=False, use_bias=False, **kw),
        "bi_lstm": lambda: keras.layers.Bidirectional(keras.layers.LSTM(H, **kw)),
    }[name]
    layer = make()
    layer.build((None, None, F))
    layer.set_weights([0.5 * _rng(i).normal(size=w.shape) for i, w in enumerate(layer.get_weights())])
    return layer


KERAS_TOL = {"rtol": 1e-6, "atol": 1e-6}  # float32: Keras 3.15's jax backend computes float64 layers partly in float32


@pytest.mark.parametrize(
    "name", ["simple_relu_backwards", "lstm", "gru", "gru_reset_before_no_bias", "bi_lstm"]
)  # docs/interop.md runs Bidirectional(GRU, merge_mode="ave") too
def test_from_keras_matches_keras(keras, name):
    k_layer = _keras_layer(keras, name)
    layer, params = interop.from_keras(k_layer)
    xs = _xs().astype(np.float32)
    mask = np.arange(T)[None, :] < LENGTHS[:, None]
    out = k_layer(xs, mask=mask)
    ys_k, states_k = np.asarray(out[0]), [np.asarray(s) for s in out[1:]]
    carry, ys = jax.jit(jax.vmap(lambda x, n: layers.apply_with_carry(layer, params, x, length=n)))(xs, LENGTHS)
    carries = list(carry) if isinstance(layer, rj.Bidirectional) else [carry]
    leaves = [np.asarray(leaf) for c in carries for leaf in c]  # [h] or [h, c] per direction, as Keras' states
    np.testing.assert_allclose(np.concatenate(leaves), np.concatenate(states_k), **KERAS_TOL)
    if "backwards" in name:  # Keras returns go_backwards outputs in processing order
        ys_k = ys_k[:, ::-1]
    # at masked steps too: a plain Keras RNN repeats its last valid output (the converted RNN has
    # masked_output="last"), a Bidirectional gives zeros; tests/test_masks.py has masks with holes
    np.testing.assert_allclose(ys, ys_k, **KERAS_TOL)
    for i, n in enumerate(LENGTHS):
        if not isinstance(layer, rj.Bidirectional) and "backwards" not in name:
            np.testing.assert_array_equal(ys_k[i, n:], np.broadcast_to(ys_k[i, n - 1], ys_k[i, n:].shape))

    # round trips: from_keras -> to_keras gives the same values, into a new or the same layer
    for k_copy in (interop.to_keras(layer, params), interop.to_keras(layer, params, k_layer)):
        weights = k_copy.get_weights()  # a new layer has use_bias=True: its biases are zero where k_layer has none
        if "no_bias" in name and k_copy is not k_layer:
            np.testing.assert_array_equal(weights.pop(), 0.0)
        for w_copy, w in zip(weights, k_layer.get_weights(), strict=True):
            assert w_copy.dtype == w.dtype == np.float32
            np.testing.assert_array_equal(w_copy, w)


def test_keras_stack_and_errors(keras):
    stack = [keras.layers.LSTM(H, return_sequences=True), keras.layers.GRU(H, return_sequences=True)]
    stack[0].build((None, None, F))
    stack[1].build((None, None, H))
    layer, params = interop.from_keras(stack)
    assert isinstance(layer, rj.Stack) and isinstance(layer.layers[1].cell, rj.GRUCell)
    assert params[0].w_i.dtype == jnp.float32
    copies = interop.to_keras(layer, params)
    assert [type(k) for k in copies] == [keras.layers.LSTM, keras.layers.GRU]
    for k_copy, k in zip(copies, stack, strict=True):
        for a, b in zip(k_copy.get_weights(), k.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)

    for mode, merge in {"concat": "concat", "sum": "sum", "mul": "mul", "ave": "mean"}.items():
        k_bi = keras.layers.Bidirectional(keras.layers.LSTM(H, return_sequences=True), merge_mode=mode)
        k_bi.build((None, None, F))
        bi, bi_params = interop.from_keras(k_bi)
        assert bi.merge == merge and interop.to_keras(bi, bi_params).merge_mode == mode

    with pytest.raises(ValueError, match="not built yet"):
        interop.from_keras(keras.layers.LSTM(H))
    with pytest.raises(TypeError, match=r"layer: expected a Keras layer \(SimpleRNN, .*got str"):
        interop.from_keras("lstm")  # not a list of layers
    unmerged = keras.layers.Bidirectional(keras.layers.LSTM(H), merge_mode=None)
    unmerged.build((None, None, F))
    with pytest.raises(ValueError, match="merge_mode=None"):
        interop.from_keras(unmerged)
    hard = keras.layers.GRU(H, recurrent_activation="hard_sigmoid")
    hard.build((None, None, F))
    with pytest.raises(ValueError, match="'hard_sigmoid'"):
        interop.from_keras(hard)
    reset_before = rj.GRUCell(H, reset_after=False)
    with pytest.raises(ValueError, match="reset_after True != False"):
        interop.to_keras(reset_before, reset_before.init(jax.random.key(0), H), stack[1])
    with pytest.raises(ValueError, match=r"params.b_h: GRUCell\(hidden_size=4, reset_after=False\) expects None here"):
        interop.to_keras(reset_before, params[1], stack[1])  # a reset-after GRU's params
    with pytest.raises(TypeError, match="with a GRUCell for GRUCell, got LSTM"):
        interop.to_keras(rj.RNN(rj.GRUCell(H)), params[1], stack[0])


@pytest.mark.parametrize("name", ["stacked_cells", "conv_lstm_1d", "custom_cell", "subclassed_lstm"])
def test_from_keras_rejects_unsupported_layers_naming_them(keras, name):
    class MinimalCell(keras.layers.Layer):
        state_size = H

        def call(self, x, states):
            return x, states

    class SubclassedLSTM(keras.layers.LSTM):
        pass

    layer, got = {
        "stacked_cells": lambda: (
            keras.layers.RNN(keras.layers.StackedRNNCells([keras.layers.LSTMCell(H), keras.layers.LSTMCell(H)])),
            "RNN of StackedRNNCells",
        ),
        "conv_lstm_1d": lambda: (keras.layers.ConvLSTM1D(H, 3), "ConvLSTM1D of ConvLSTMCell"),
        "custom_cell": lambda: (keras.layers.RNN(MinimalCell()), "RNN of MinimalCell"),
        "subclassed_lstm": lambda: (SubclassedLSTM(H), "SubclassedLSTM of LSTMCell"),
    }[name]()
    supported = "layer: rnnjax converts Keras SimpleRNN, LSTM, GRU, RNN(SimpleRNNCell | LSTMCell | GRUCell)"
    with pytest.raises(NotImplementedError, match=re.escape(supported) + f".*; got {got} "):
        interop.from_keras(layer)


# --- Flax ----------------------------------------------------------------------------------------


def _randomize_nnx(module, seed=0):
    from flax import nnx

    nnx.update(module, _random_like(nnx.state(module, nnx.Param), seed))
    return module


def _flax_cell(name):
    import flax.linen as nn
    from flax import nnx

    f64 = jnp.float64
    return {
        "linen_simple": lambda: nn.SimpleCell(H, param_dtype=f64),
        "linen_simple_relu": lambda: nn.SimpleCell(H, activation_fn=jax.nn.relu, param_dtype=f64),
        "linen_lstm": lambda: nn.LSTMCell(H, param_dtype=f64),
        "linen_optimized_lstm": lambda: nn.OptimizedLSTMCell(H, param_dtype=f64),
        "linen_gru": lambda: nn.GRUCell(H, param_dtype=f64),
        # NNX cells initialise their weights when built: build them abstractly (no compile), fill below
        "nnx_simple": lambda: nnx.eval_shape(
            lambda: nnx.SimpleCell(F, H, dtype=f64, param_dtype=f64, rngs=nnx.Rngs(0))
        ),
        "nnx_lstm": lambda: nnx.eval_shape(lambda: nnx.LSTMCell(F, H, dtype=f64, param_dtype=f64, rngs=nnx.Rngs(0))),
        "nnx_optimized_lstm": lambda: nnx.eval_shape(
            lambda: nnx.OptimizedLSTMCell(F, H, dtype=f64, param_dtype=f64, rngs=nnx.Rngs(0))
        ),
        "nnx_gru": lambda: nnx.eval_shape(lambda: nnx.GRUCell(F, H, dtype=f64, param_dtype=f64, rngs=nnx.Rngs(0))),
    }[name]()


FLAX_CELLS = [
    "linen_simple_relu",
    "linen_lstm",
    "linen_optimized_lstm",
    "linen_gru",
    "nnx_simple",
    "nnx_lstm",
    "nnx_optimized_lstm",
    "nnx_gru",
]


@pytest.mark.parametrize("name", FLAX_CELLS)
def test_from_flax_matches_flax(x64, name):
    import flax.linen as nn
    from flax import nnx

    xs = _xs()
    lstm = "lstm" in name
    h0 = 0.5 * _rng(1).normal(size=(B, H))
    c0 = 0.5 * _rng(2).normal(size=(B, H))
    flax_carry = (c0, h0) if lstm else h0  # Flax's LSTM carry is (c, h)
    flax_cell = _flax_cell(name)
    if name.startswith("linen"):
        variables = _random_like(jax.eval_shape(nn.RNN(flax_cell).init, jax.random.key(0), xs))
        carry_flax, ys_flax = nn.RNN(flax_cell, return_carry=True).apply(
            variables, xs, initial_carry=flax_carry, seq_lengths=LENGTHS
        )
        cell, params = interop.from_flax(flax_cell, variables, dtype=None)
        # round trip: from_flax -> to_flax gives the same values
        _tree_equal(interop.to_flax(cell, params)["params"], variables["params"]["cell"])
    else:
        _randomize_nnx(flax_cell)
        carry_flax, ys_flax = nnx.RNN(flax_cell, return_carry=True)(xs, initial_carry=flax_carry, seq_lengths=LENGTHS)
        cell, params = interop.from_flax(flax_cell, dtype=None)
    carry0 = rj.LSTMCarry(h0, c0) if lstm else rj.HiddenCarry(h0)
    carry, ys = jax.jit(jax.vmap(lambda x, n, c: rj.unroll(cell, params, x, c, length=n)))(xs, LENGTHS, carry0)
    for i, n in enumerate(LENGTHS):
        np.testing.assert_allclose(ys[i, :n], ys_flax[i, :n], **TOL)
        np.testing.assert_array_equal(ys[i, n:], 0.0)
    assert np.any(ys_flax[1, 2:] != 0)  # Flax keeps computing outputs past the length (its carry stops)
    if lstm:
        np.testing.assert_allclose(carry.c, carry_flax[0], **TOL)
        np.testing.assert_allclose(carry.h, carry_flax[1], **TOL)
    else:
        np.testing.assert_allclose(carry.h, carry_flax, **TOL)


def test_to_flax_round_trips():
    import flax.linen as nn

    rng = _rng(0)
    for cell, flax_cell in [(rj.ElmanCell(H), nn.SimpleCell(H)), (rj.LSTMCell(H), nn.OptimizedLSTMCell(H))]:
        params = _random_like(_zeros_params(cell))
        _same(interop.from_flax(flax_cell, interop.to_flax(cell, params)), (cell, params))  # same values
    # a GRU's recurrent r, z biases move into Flax's input biases: same function, not same values
    cell = rj.GRUCell(H)
    params = _random_like(_zeros_params(cell), seed=1)
    variables = interop.to_flax(cell, params)
    _, back = interop.from_flax(nn.GRUCell(H), variables)
    np.testing.assert_allclose(back.b + back.b_h, params.b + params.b_h, rtol=1e-6)
    np.testing.assert_array_equal(back.b_h[: 2 * H], 0.0)
    x, h = jnp.asarray(rng.normal(size=F), jnp.float32), jnp.asarray(rng.normal(size=H), jnp.float32)
    _, y_flax = nn.GRUCell(H).apply(variables, h, x)
    np.testing.assert_allclose(cell.step(params, rj.HiddenCarry(h), x)[1], y_flax, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="reset-after"):
        interop.to_flax(rj.GRUCell(H, reset_after=False), _zeros_params(rj.GRUCell(H, reset_after=False)))
    with pytest.raises(ValueError, match="residual"):
        interop.from_flax(nn.SimpleCell(H, residual=True), {"params": {}})


@pytest.mark.parametrize("convert", ["to_keras", "to_flax"])
def test_a_projected_lstm_is_refused_where_the_framework_has_no_projection(convert, keras):
    cell = rj.LSTMCell(H, proj_size=2)
    layer = rj.RNN(cell) if convert == "to_keras" else cell
    with pytest.raises(ValueError, match=re.escape("no output projection (proj_size)")):
        getattr(interop, convert)(layer, _zeros_params(layer))


# --- Haiku: the recipe of docs/interop.md ---------------------------------------------------------


def test_haiku_recipe_of_the_docs(x64):
    """docs/interop.md's Haiku row: LSTM gates i, g, f, o on [x, h] with +1 on f; GRU z, r, a, z flipped."""
    hk = pytest.importorskip("haiku", reason="dm-haiku not installed")
    xs = jnp.asarray(_xs()[0])

    def run(make_core):
        def fn(x):
            core = make_core()
            return hk.dynamic_unroll(core, x, core.initial_state(None))

        f = hk.transform(fn)
        params = f.init(jax.random.key(0), xs)
        params = _random_like(params)
        return params, f.apply(params, None, xs)

    (p, (ys_hk, state)) = run(lambda: hk.LSTM(H))
    w, b = p["lstm/linear"]["w"], p["lstm/linear"]["b"]
    i, g, f, o = np.split(np.asarray(w), 4, axis=-1)
    bi, bg, bf, bo = np.split(np.asarray(b), 4)
    w = np.concatenate([i, f, g, o], axis=-1)
    params = rj.LSTMParams(w[:F], w[F:], np.concatenate([bi, bf + 1.0, bg, bo]))
    carry, ys = rj.unroll(rj.LSTMCell(H), params, xs)
    np.testing.assert_allclose(ys, ys_hk, **TOL)
    np.testing.assert_allclose(carry.h, state.hidden, **TOL)  # LSTMState(hidden, cell) = LSTMCarry(h, c)
    np.testing.assert_allclose(carry.c, state.cell, **TOL)

    (p, (ys_hk, _)) = run(lambda: hk.GRU(H))

    def flip_z(a):  # haiku's z, r, a -> rnnjax's r, z, n with z -> 1 - z (negated pre-activation)
        z, r, n = np.split(np.asarray(a), 3, axis=-1)
        return np.concatenate([r, -z, n], axis=-1)

    params = rj.GRUParams(*(flip_z(p["gru"][k]) for k in ("w_i", "w_h", "b")))
    np.testing.assert_allclose(rj.unroll(rj.GRUCell(H, reset_after=False), params, xs)[1], ys_hk, **TOL)

    (p, (ys_hk, _)) = run(lambda: hk.VanillaRNN(H))
    lin, lin_h = p["vanilla_rnn/linear"], p["vanilla_rnn/linear_1"]
    params = rj.ElmanParams(lin["w"], lin_h["w"], lin["b"] + lin_h["b"])  # relu, two biases summed
    np.testing.assert_allclose(rj.unroll(rj.ElmanCell(H, activation="relu"), params, xs)[1], ys_hk, **TOL)


# --- the package surface and the docs ------------------------------------------------------------


def test_importing_rnnjax_does_not_import_torch_or_keras():
    code = "import sys, rnnjax; print(rnnjax.interop.__name__, 'torch' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["rnnjax.interop", "False", "False"]


def test_public_functions_have_docstrings_with_examples():
    for name in interop.__all__:
        fn = getattr(interop, name)
        assert fn.__doc__ and ">>>" in fn.__doc__ and "Returns:" in fn.__doc__, name


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN:UserWarning")
def test_docs_examples_run(torch, keras):
    """Every ```python block of docs/interop.md runs, and its asserts hold."""
    doc = pathlib.Path(__file__).parents[1] / "docs" / "interop.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace = {}
    for block in blocks:
        exec(compile(block, str(doc), "exec"), namespace)
