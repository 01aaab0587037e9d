"""rnnjax.attention: every module against a NumPy reference, masking, gradients; the shared decoder."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

import rnnjax as rj
from rnnjax import attention as att
from rnnjax import models

Q, E, S = 4, 6, 5
MODULES = {
    "dot": (att.DotAttention(), E),  # the query must have the values' size
    "general": (att.GeneralAttention(), Q),
    "bahdanau": (att.BahdanauAttention(7), Q),
    "multihead": (att.MultiHeadAttention(2, 8), Q),
}


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def reference(name, params, query, values, mask):
    """The module's equations in float64 NumPy, for one query."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    q, v = np.asarray(query, np.float64), np.asarray(values, np.float64)
    if name == "multihead":
        n, d = 2, 4
        qs, ks, vs = (q @ p.w_q).reshape(n, d), (v @ p.w_k).reshape(S, n, d), (v @ p.w_v).reshape(S, n, d)
        scores = np.einsum("nd,snd->ns", qs, ks) / np.sqrt(d)
        weights = np.where(mask, softmax(np.where(mask, scores, -np.inf)), 0.0)
        return np.einsum("ns,snd->nd", weights, vs).reshape(-1) @ p.w_o, weights.mean(0)
    scores = {
        "dot": lambda: v @ q,
        "general": lambda: v @ p.w.T @ q,
        "bahdanau": lambda: np.tanh(q @ p.w_q + v @ p.w_k) @ p.v,
    }[name]()
    weights = np.where(mask, softmax(np.where(mask, scores, -np.inf)), 0.0)
    return weights @ v, weights


@pytest.mark.parametrize("name", sorted(MODULES))
def test_attend_equals_the_numpy_reference_and_masks(name):
    module, query_size = MODULES[name]
    params = module.init(jax.random.key(0), query_size, E)
    rng = np.random.default_rng(0)
    query, values = rng.normal(size=query_size).astype(np.float32), rng.normal(size=(S, E)).astype(np.float32)
    mask = np.array([True, True, False, True, False])
    keys = module.precompute(params, values)
    context, weights = jax.jit(module.attend)(params, query, keys, values, mask)
    want_context, want_weights = reference(name, params, query, values, mask)
    np.testing.assert_allclose(context, want_context, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights, want_weights, rtol=1e-5, atol=1e-6)
    assert context.shape == (module.context_size(E),)
    np.testing.assert_array_equal(np.asarray(weights)[~mask], 0.0)
    # no valid position: zero weights and context, never NaN
    context, weights = module.attend(params, query, keys, values, np.zeros(S, bool))
    np.testing.assert_array_equal(weights, 0.0)
    np.testing.assert_array_equal(context, 0.0)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_attention_gradients(name, x64):
    module, query_size = MODULES[name]
    params = jax.tree.map(lambda a: a.astype(jnp.float64), module.init(jax.random.key(1), query_size, E))
    values = jax.random.normal(jax.random.key(2), (S, E), jnp.float64)
    query = jax.random.normal(jax.random.key(3), (query_size,), jnp.float64)
    mask = jnp.array([True, False, True, True, True])

    def f(params, query, values):
        return module.attend(params, query, module.precompute(params, values), values, mask)[0]

    test_util.check_grads(f, (params, query, values), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


def test_dot_attention_needs_equal_sizes_and_names_resolve():
    with pytest.raises(ValueError, match=r"attention: DotAttention needs the query size \(4\) to equal"):
        att.DotAttention().init(jax.random.key(0), 4, 6)
    with pytest.raises(ValueError, match="size: expected a multiple of num_heads = 3, got 8"):
        att.MultiHeadAttention(3, 8)
    with pytest.raises(ValueError, match="attention: expected None, 'bahdanau', 'luong' or an attention module"):
        models.Seq2Seq(5, 5, 4, rj.GRUCell(4), rj.GRUCell(4), attention="additive")
    assert isinstance(
        models.Seq2Seq(5, 5, 4, rj.GRUCell(4), rj.GRUCell(4), "luong").decoder.attention, att.GeneralAttention
    )


@pytest.mark.parametrize(
    "module", [att.DotAttention(), att.MultiHeadAttention(2, 6), att.BahdanauAttention(5)], ids=["dot", "mh", "bah"]
)
def test_seq2seq_with_any_module_steps_equal_teacher_forcing(module):
    model = models.Seq2Seq(9, 7, 4, rj.GRUCell(6), rj.GRUCell(6), module)
    params = model.init(jax.random.key(0))
    src, tgt_in = jnp.array([3, 1, 4, 1, 5]), jnp.array([1, 5, 2, 6])
    logits, weights = model.apply(params, src, 3, tgt_in, return_attention=True)
    carry, stepped = model.encode(params, src, 3), []
    for token in tgt_in:
        carry, step_logits, step_weights = model.step_with_attention(params, carry, token)
        stepped.append((step_logits, step_weights))
    np.testing.assert_allclose(logits, np.stack([s[0] for s in stepped]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights, np.stack([s[1] for s in stepped]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(weights)[:, 3:], 0.0)  # no weight past src_len
