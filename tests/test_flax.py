"""rnnjax.flax: the NNX and Linen wrappers equal the functional layers, count their params, train."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

flax = pytest.importorskip("flax", reason="flax not installed")

import flax.linen as nn  # noqa: E402
from flax import nnx  # noqa: E402

import rnnjax as rj  # noqa: E402
import rnnjax.flax as rjflax  # noqa: E402
from rnnjax import interop, layers  # noqa: E402

F, H, T = 3, 4, 6
LENGTHS = jnp.array([T, 2, 5])
B = len(LENGTHS)
XS = jnp.asarray(np.random.default_rng(0).normal(size=(B, T, F)), jnp.float32)
TOL = {"rtol": 1e-6, "atol": 1e-6}


def _random_params(layer, seed=0):
    """Random params of the layer's shapes without running ``init`` (no orthogonal init to compile)."""
    shapes = jax.eval_shape(lambda k: layer.init(k, F), jax.random.key(0))
    leaves, treedef = jax.tree_util.tree_flatten(shapes)
    rng = np.random.default_rng(seed)
    return treedef.unflatten([jnp.asarray(0.5 * rng.normal(size=s.shape), s.dtype) for s in leaves])


LAYERS = {
    "cell": rj.LSTMCell(H),
    "rnn": rj.RNN(rj.GRUCell(H)),
    "bidirectional": rj.Bidirectional(rj.LSTMCell(H), rj.LSTMCell(H), merge="sum"),
    "stack": rj.Stack([rj.Bidirectional(rj.GRUCell(H), rj.GRUCell(H)), rj.ElmanCell(H)], dropout=0.5),
}


def _reference(layer, params, carry0=None, keys=None):
    """The functional layer, vmapped over the batch by hand: ``(carry, ys)``."""

    def one(x, n, c, k):
        return layers.apply_with_carry(layer, params, x, c, length=n, key=k)

    return jax.vmap(one)(XS, LENGTHS, carry0, keys)


@pytest.mark.parametrize("name", ["cell", "bidirectional", "stack"])
def test_nnx_and_linen_wrappers_equal_the_layer(name):
    layer = LAYERS[name]
    params = _random_params(layer)
    carry0 = jax.tree_util.tree_map(
        lambda c: jnp.asarray(np.random.default_rng(1).normal(size=c.shape), c.dtype),
        layers.initial_carry(layer, params, (B,)),
    )
    want_carry, want_ys = jax.jit(_reference, static_argnums=0)(layer, params, carry0)
    np.testing.assert_array_equal(want_ys[1, 2:], 0.0)

    model = rjflax.RNN(layer, params=params)  # deterministic=False, but no rngs: dropout needs them
    if name == "stack":
        with pytest.raises(ValueError, match="rngs: dropout"):
            model(XS)
        model.eval()
    run = nnx.jit(lambda m, x, n, c: m(x, seq_lengths=n, initial_carry=c, return_carry=True))
    carry, ys = run(model, XS, LENGTHS, carry0)
    np.testing.assert_allclose(ys, want_ys, **TOL)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), carry, want_carry)

    linen_model = rjflax.LinenRNN(layer, deterministic=True)
    variables = {"params": {"rnn": params}}
    apply = jax.jit(lambda v, x, n, c: linen_model.apply(v, x, seq_lengths=n, initial_carry=c, return_carry=True))
    carry, ys = apply(variables, XS, LENGTHS, carry0)
    np.testing.assert_allclose(ys, want_ys, **TOL)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), carry, want_carry)


def test_default_carry_unbatched_and_extra_batch_axes():
    layer = LAYERS["rnn"]
    params = _random_params(layer)
    model = rjflax.RNN(layer, params=params)
    ys = jax.jit(lambda x, n: jax.vmap(lambda xi, ni: layer.apply(params, xi, length=ni))(x, n))(XS, LENGTHS)
    ys_2d = model(XS.reshape(1, B, T, F), seq_lengths=LENGTHS.reshape(1, B))  # [*b, t, f] with b = (1, 3)
    np.testing.assert_allclose(ys_2d[0], ys, **TOL)
    np.testing.assert_allclose(model(XS[0]), layer.apply(params, XS[0]), **TOL)  # one sequence [t, f]
    assert model.initial_carry((B,)).h.shape == (B, H)
    with pytest.raises(ValueError, match=r"seq_lengths: expected shape \(3,\)"):
        model(XS, seq_lengths=LENGTHS[:2])
    step_masks = np.random.default_rng(2).random((B, T)) < 0.6  # holes anywhere
    by_layer = jax.vmap(lambda x, m: layer.apply(params, x, mask=m))(XS, step_masks)
    np.testing.assert_allclose(model(XS, mask=step_masks), by_layer, **TOL)
    linen_model = rjflax.LinenRNN(layer)
    np.testing.assert_allclose(linen_model.apply({"params": {"rnn": params}}, XS, mask=step_masks), by_layer, **TOL)
    with pytest.raises(ValueError, match=r"mask: expected shape \(3, 6\)"):
        model(XS, mask=step_masks[:, :2])
    with pytest.raises(ValueError, match=r"xs: expected batch-major inputs"):
        model(XS[0, 0])
    with pytest.raises(ValueError, match="initial_carry: expected leaves with leading batch shape"):
        model(XS, initial_carry=model.initial_carry((2,)))
    with pytest.raises(ValueError, match="input_size, rngs"):
        rjflax.RNN(layer)


def test_stack_dropout_in_training_mode_only():
    layer = rj.Stack([rj.ElmanCell(H), rj.ElmanCell(H)], dropout=0.5)
    params = _random_params(layer)
    model = rjflax.RNN(layer, params=params, rngs=nnx.Rngs(dropout=7))
    run = nnx.jit(lambda m, x, n: m(x, seq_lengths=n))
    train_ys = run(model, XS, LENGTHS)
    # the same keys by hand: the module keeps a fork of the dropout stream, and splits its key per sequence
    keys = jax.random.split(nnx.Rngs(dropout=7)["dropout"].fork()(), B)
    np.testing.assert_allclose(train_ys, jax.jit(_reference, static_argnums=0)(layer, params, None, keys)[1], **TOL)
    assert not np.allclose(run(model, XS, LENGTHS), train_ys)  # the stream moved on: a new mask
    model.eval()
    eval_ys = run(model, XS, LENGTHS)
    np.testing.assert_allclose(eval_ys, jax.jit(_reference, static_argnums=0)(layer, params)[1], **TOL)

    linen_model = rjflax.LinenRNN(layer)
    variables = {"params": {"rnn": params}}
    apply = jax.jit(
        lambda v, k: linen_model.apply(v, XS, seq_lengths=LENGTHS, deterministic=False, rngs={"dropout": k})
    )
    a, b = apply(variables, jax.random.key(1)), apply(variables, jax.random.key(2))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, apply(variables, jax.random.key(1)))
    # (deterministic=True: test_nnx_and_linen_wrappers_equal_the_layer[stack])


def test_nnx_grad_is_the_functional_grad():
    layer = LAYERS["rnn"]
    params = _random_params(layer)
    model = rjflax.RNN(layer, params=params)

    def loss(m):
        return jnp.sum(m(XS, seq_lengths=LENGTHS) ** 2)

    grads = nnx.jit(nnx.grad(loss))(model)
    want = jax.jit(jax.grad(lambda p: jnp.sum(_reference(layer, p)[1] ** 2)))(params)
    got = nnx.merge(nnx.graphdef(model), grads).layer_params  # the grads as an rnnjax params pytree
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), got, want)


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def test_embedding_lstm_dense_has_164106_params_in_nnx():
    class Classifier(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(1000, 64, rngs=rngs)
            self.rnn = rjflax.RNN(rj.LSTMCell(128), 64, rngs=rngs)
            self.head = nnx.Linear(128, 10, rngs=rngs)

        def __call__(self, tokens, lengths):
            ys = self.rnn(self.embed(tokens), seq_lengths=lengths)
            return self.head(ys[jnp.arange(tokens.shape[0]), lengths - 1])  # the last valid output

    model = nnx.eval_shape(lambda: Classifier(nnx.Rngs(0)))  # shapes only: no initialisers to compile
    assert _count(nnx.state(model, nnx.Param)) == 164_106
    nnx.update(model, jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), nnx.state(model)))
    assert isinstance(model.rnn.params.w_i, nnx.Param) and model.rnn.params.w_i.shape == (64, 512)
    tokens, lengths = jnp.zeros((2, 5), jnp.int32), jnp.array([5, 3])
    assert "164,106" in nnx.tabulate(model, tokens, lengths)
    assert nnx.jit(lambda m, x, n: m(x, n))(model, tokens, lengths).shape == (2, 10)


def test_embedding_lstm_dense_has_164106_params_in_linen():
    class Classifier(nn.Module):
        @nn.compact
        def __call__(self, tokens, lengths):
            ys = rjflax.LinenRNN(rj.LSTMCell(128))(nn.Embed(1000, 64)(tokens), seq_lengths=lengths)
            return nn.Dense(10)(ys[jnp.arange(tokens.shape[0]), lengths - 1])

    tokens, lengths = jnp.zeros((2, 5), jnp.int32), jnp.array([5, 3])
    variables = jax.eval_shape(Classifier().init, jax.random.key(0), tokens, lengths)
    assert _count(variables) == 164_106
    assert type(variables["params"]["LinenRNN_0"]["rnn"]) is rj.LSTMParams
    assert "164,106" in Classifier().tabulate(jax.random.key(0), tokens, lengths)


def test_converted_torch_weights_in_a_flax_model():
    torch = pytest.importorskip("torch", reason="torch not installed")
    module = torch.nn.GRU(F, H, num_layers=2, bidirectional=True)
    layer, params = interop.from_torch(module)
    model = rjflax.RNN(layer, params=params)
    ys_torch = module(torch.tensor(np.asarray(XS)).transpose(0, 1))[0].transpose(0, 1).detach().numpy()
    np.testing.assert_allclose(nnx.jit(lambda m, x: m(x))(model, XS), ys_torch, rtol=1e-5, atol=1e-6)


def test_cells_with_dropout_train_with_the_dropout_stream():
    """A cell's own dropout (no Stack) draws masks in training mode too, and none in evaluation mode."""
    layer = rj.Bidirectional(rj.GRUCell(H, recurrent_dropout=0.5), rj.LSTMCell(H, dropout=0.5))
    params = _random_params(layer)
    model = rjflax.RNN(layer, params=params, rngs=nnx.Rngs(dropout=0))
    model.train()
    train_ys = model(XS)
    model.eval()
    np.testing.assert_allclose(model(XS), jax.vmap(lambda x: layer.apply(params, x))(XS), **TOL)
    assert not np.allclose(train_ys, model(XS))
    linen_model = rjflax.LinenRNN(layer)
    variables = {"params": {"rnn": params}}
    noisy = linen_model.apply(variables, XS, deterministic=False, rngs={"dropout": jax.random.key(1)})
    assert not np.allclose(noisy, linen_model.apply(variables, XS, deterministic=True))
