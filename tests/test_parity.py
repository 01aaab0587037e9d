"""Parity with Flax linen's and torch's cells, weights copied across (float64 where possible)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax as rj
from conftest import as_float64, randomize

F, H, T = 3, 5, 7


def _xs(dtype=jnp.float32):
    return jax.random.normal(jax.random.key(0), (T, F), dtype)


def _params(cell):
    return randomize(cell.init(jax.random.key(1), F), jax.random.key(2))


# --- Flax linen ---------------------------------------------------------------------------------

nn = pytest.importorskip("flax.linen")


def _split(w, n):
    return jnp.split(w, n, axis=-1)


def flax_params(cell, params):
    """The same weights in Flax linen's layout (one Dense per gate, input and hidden apart)."""
    if isinstance(cell, rj.ElmanCell):
        return {"i": {"kernel": params.w_i, "bias": params.b}, "h": {"kernel": params.w_h}}
    if isinstance(cell, rj.LSTMCell):  # flax: input Dense without bias, hidden Dense with bias
        w_i, w_h, b = _split(params.w_i, 4), _split(params.w_h, 4), _split(params.b, 4)
        out = {}
        for k, gate in enumerate("ifgo"):
            out["i" + gate] = {"kernel": w_i[k]}
            out["h" + gate] = {"kernel": w_h[k], "bias": b[k]}
        return out
    if isinstance(cell, rj.GRUCell):  # flax: input Dense with bias, hidden without, except hn
        w_i, w_h, b, b_h = _split(params.w_i, 3), _split(params.w_h, 3), _split(params.b, 3), _split(params.b_h, 3)
        out = {}
        for k, gate in enumerate("rzn"):
            out["i" + gate] = {"kernel": w_i[k], "bias": b[k] + (b_h[k] if gate != "n" else 0)}
            out["h" + gate] = {"kernel": w_h[k]}
        out["hn"]["bias"] = b_h[2]
        return out
    raise NotImplementedError(cell)


@pytest.mark.parametrize(
    "cell, flax_cell",
    [
        (rj.ElmanCell(H), nn.SimpleCell(H)),
        (rj.LSTMCell(H), nn.LSTMCell(H)),
        (rj.LSTMCell(H), nn.OptimizedLSTMCell(H)),
        (rj.GRUCell(H), nn.GRUCell(H)),
    ],
    ids=["simple", "lstm", "optimized_lstm", "gru"],
)
def test_matches_flax_linen(cell, flax_cell):
    params = _params(cell)
    variables = {"params": {"cell": flax_params(cell, params)}}  # OptimizedLSTMCell: same layout
    xs = _xs()
    ys_flax = nn.RNN(flax_cell).apply(variables, xs[None])[0]
    carry, ys = rj.unroll(cell, params, xs)
    np.testing.assert_allclose(ys, ys_flax, rtol=1e-5, atol=1e-6)


# --- torch --------------------------------------------------------------------------------------


@pytest.fixture
def torch():
    """torch, or a skip of the test that asks for it (not of this module: the flax checks above run without)."""
    return pytest.importorskip("torch", reason="torch not installed (pip install -e .[interop])")


def torch_module(torch, cell, params):
    """A float64 torch module holding the same weights (torch stores [gates*h, f])."""
    kind = {rj.ElmanCell: torch.nn.RNN, rj.LSTMCell: torch.nn.LSTM, rj.GRUCell: torch.nn.GRU}[type(cell)]
    kwargs = {"nonlinearity": cell.activation} if isinstance(cell, rj.ElmanCell) else {}
    module = kind(F, H, **kwargs).double()
    b_h = getattr(params, "b_h", None)
    state = {
        "weight_ih_l0": params.w_i.T,
        "weight_hh_l0": params.w_h.T,
        "bias_ih_l0": params.b,
        "bias_hh_l0": jnp.zeros_like(params.b) if b_h is None else b_h,
    }
    module.load_state_dict({k: torch.tensor(np.asarray(v, np.float64)) for k, v in state.items()})
    return module


@pytest.mark.parametrize(
    "cell",
    [rj.ElmanCell(H), rj.ElmanCell(H, activation="relu"), rj.LSTMCell(H), rj.GRUCell(H)],
    ids=["rnn_tanh", "rnn_relu", "lstm", "gru"],
)
def test_matches_torch_float64(torch, cell, x64):
    params = as_float64(_params(cell))
    xs = _xs(jnp.float64)
    h0 = jax.random.normal(jax.random.key(3), (H,), jnp.float64) * 0.5
    module = torch_module(torch, cell, params)
    xs_t = torch.tensor(np.asarray(xs))
    if isinstance(cell, rj.LSTMCell):
        c0 = h0[::-1]
        ys_t, (h_t, c_t) = module(xs_t, (torch.tensor(np.asarray(h0))[None], torch.tensor(np.asarray(c0))[None]))
        carry, ys = rj.unroll(cell, params, xs, rj.LSTMCarry(h0, c0))
        np.testing.assert_allclose(carry.c, c_t[0].detach().numpy(), rtol=1e-12, atol=1e-12)
    else:
        ys_t, h_t = module(xs_t, torch.tensor(np.asarray(h0))[None])
        carry, ys = rj.unroll(cell, params, xs, rj.HiddenCarry(h0))
    np.testing.assert_allclose(ys, ys_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(carry.h, h_t[0].detach().numpy(), rtol=1e-12, atol=1e-12)

    # gradients w.r.t. the inputs agree with torch's autograd
    xs_t = xs_t.clone().requires_grad_(True)
    module(xs_t)[0].pow(2).sum().backward()
    grad = jax.grad(lambda x: jnp.sum(rj.unroll(cell, params, x)[1] ** 2))(xs)
    np.testing.assert_allclose(grad, xs_t.grad.numpy(), rtol=1e-10, atol=1e-12)
