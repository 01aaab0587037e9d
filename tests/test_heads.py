"""Heads and summary: Keras' parameter count for Embedding -> LSTM -> Dense."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax as rj


def test_keras_reference_model_has_164106_params():
    keys = jax.random.split(jax.random.key(0), 3)
    params = {
        "embed": rj.Embedding(1000, 64).init(keys[0]),
        "lstm": rj.LSTMCell(128).init(keys[1], 64),
        "head": rj.Dense(10).init(keys[2], 128),
    }
    assert rj.count_params(params) == 164_106
    table = rj.summary(params, print_fn=None)
    assert table.splitlines()[-1].split() == ["total", "164,106"]
    assert "lstm.w_h" in table and "(128, 512)" in table


def test_dense_and_embedding():
    head = rj.Dense(3, activation=jax.nn.relu)
    params = head.init(jax.random.key(0), 4)
    x = jax.random.normal(jax.random.key(1), (2, 5, 4))
    np.testing.assert_allclose(head.apply(params, x), jax.nn.relu(x @ params.w + params.b), rtol=1e-6)
    assert rj.Dense(3, use_bias=False).init(jax.random.key(0), 4).b is None
    embed = rj.Embedding(7, 4)
    table = embed.init(jax.random.key(0))
    np.testing.assert_array_equal(embed.apply(table, jnp.array([[6, 0]])), table.table[jnp.array([[6, 0]])])
    np.testing.assert_allclose(embed.attend(table, table.table[2]), table.table @ table.table[2], rtol=1e-6)
    with pytest.raises(TypeError, match="ids: expected integer token ids"):
        embed.apply(table, jnp.array([1.0]))
    with pytest.raises(ValueError, match=r"ids: expected token ids in \[0, 7\)"):
        embed.apply(table, jnp.array([3, 7]))
    assert bool(jnp.all(jnp.isnan(jax.jit(embed.apply)(table, jnp.array([7])))))  # traced: NaN, not a wrong row
    with pytest.raises(ValueError, match=r"x: expected last axis of size 4"):
        head.apply(params, jnp.ones((2, 5)))
