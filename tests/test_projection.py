"""LSTM with a projection (``LSTMCell(h, proj_size=p)``, Sak et al. 2014): a float64 NumPy loop of the
equations (peepholes and training noise too), gradients, both unroll paths, init and checks, and exact
conversion from and to torch's ``nn.LSTM(proj_size=p)`` (outputs, final ``(h_n, c_n)``, input gradients,
round trips), any number of layers, uni- and bidirectional."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util

import rnnjax as rj
from conftest import assert_torch_state_is
from docs_helpers import ROOT
from rnnjax import interop, layers

H, P, F, T = 5, 3, 4, 7
TOL = {"rtol": 1e-12, "atol": 1e-12}  # float64 against float64 (torch: 1e-10, its kernels sum in another order)
CELLS = {
    "proj": rj.LSTMCell(H, proj_size=P, param_dtype=jnp.float64),
    "proj_peephole": rj.LSTMCell(H, proj_size=P, peephole=True, param_dtype=jnp.float64),
}
# torch warns (once per process) that its oneDNN kernels have no projection and it runs its own
ONEDNN = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN:UserWarning")


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_lstmp(params, xs, h, c, noise=None):
    """The LSTM with a projection written out, NumPy float64: gates from x and the projected h, peepholes
    on c, then h = (sigmoid(o) tanh(c)) W_hr. With training ``noise``: x * input mask, h * recurrent mask
    in the recurrent matmul, zoneout of h and c after the step."""
    in_mask = np.ones(F) if noise is None or noise.inputs is None else np.asarray(noise.inputs)
    rec_mask = np.ones(P) if noise is None or noise.recurrent is None else np.asarray(noise.recurrent)
    zoneout = None if noise is None else noise.zoneout
    ys = []
    for t, x in enumerate(xs):
        a = (x * in_mask) @ params.w_i + (h * rec_mask) @ params.w_h + params.b
        i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
        if params.peephole is not None:
            i, f = i + params.peephole[0] * c, f + params.peephole[1] * c
        new_c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        if params.peephole is not None:
            o = o + params.peephole[2] * new_c
        new_h = (sigmoid(o) * np.tanh(new_c)) @ params.w_proj
        if zoneout is not None:
            new_h, new_c = np.where(zoneout.h[t], h, new_h), np.where(zoneout.c[t], c, new_c)
        h, c = new_h, new_c
        ys.append(h)
    return rj.LSTMCarry(h, c), np.stack(ys)


def numpy_params(cell, rng):
    shapes = jax.eval_shape(lambda: cell.init(jax.random.key(0), F))
    return jax.tree_util.tree_map(lambda s: 0.5 * rng.standard_normal(s.shape), shapes)


def random_carry(rng, batch_shape=()):
    return rj.LSTMCarry(0.5 * rng.standard_normal((*batch_shape, P)), 0.5 * rng.standard_normal((*batch_shape, H)))


def _assert_carry_close(got, want, **tol):
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, **(tol or TOL))


# --- the cell ------------------------------------------------------------------------------------


@pytest.mark.parametrize("hoist", [False, True], ids=["in-loop", "hoisted"])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_unroll_equals_the_equations_in_float64(name, hoist, x64):
    cell, rng = CELLS[name], np.random.default_rng(0)
    params, carry, xs = numpy_params(cell, rng), random_carry(rng), rng.standard_normal((T, F))
    want_carry, want_ys = np_lstmp(params, xs, *carry)
    got_carry, got_ys = rj.unroll(cell, params, xs, carry, hoist=hoist)
    assert got_ys.shape == (T, P) and got_ys.dtype == jnp.float64
    assert got_carry.h.shape == (P,) and got_carry.c.shape == (H,)
    np.testing.assert_allclose(got_ys, want_ys, **TOL)
    _assert_carry_close(got_carry, want_carry)
    # step by step (the decoding path) is the same
    c = carry
    for t in range(T):
        c, y = cell.step(params, c, xs[t])
        np.testing.assert_allclose(y, want_ys[t], **TOL)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_training_noise_equals_the_equations(name, x64):
    """Dropout on x, recurrent dropout on the projected h_{t-1} ([p]), zoneout of h [p] and c [h]."""
    cell = dataclasses.replace(CELLS[name], dropout=0.3, recurrent_dropout=0.3, zoneout=0.25)
    rng = np.random.default_rng(1)
    params, carry, xs = numpy_params(cell, rng), random_carry(rng), rng.standard_normal((T, F))
    key = jax.random.key(2)
    noise = cell.sequence_noise(key, jax.tree_util.tree_map(jnp.asarray, params), T)
    assert noise.recurrent.shape == (P,) and noise.zoneout.h.shape == (T, P) and noise.zoneout.c.shape == (T, H)
    want_carry, want_ys = np_lstmp(params, xs, *carry, noise)
    for hoist in (False, True):
        got_carry, got_ys = rj.unroll(cell, params, xs, carry, key=key, hoist=hoist)
        np.testing.assert_allclose(got_ys, want_ys, **TOL)
        _assert_carry_close(got_carry, want_carry)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_unroll_gradients_float64(name, x64):
    cell, rng = CELLS[name], np.random.default_rng(3)
    params = jax.tree_util.tree_map(jnp.asarray, numpy_params(cell, rng))
    carry = jax.tree_util.tree_map(jnp.asarray, random_carry(rng))
    xs = jnp.asarray(rng.standard_normal((4, F)))
    run = jax.jit(lambda p, c, x: rj.unroll(cell, p, x, c)[1])
    test_util.check_grads(run, (params, carry, xs), order=1, modes=("fwd", "rev"))


def test_hoisted_equals_in_loop_and_vmap_equals_a_loop_float32():
    # float32 at precision="highest" (the suite's default)
    cell = rj.LSTMCell(H, proj_size=P)
    rng = np.random.default_rng(4)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), numpy_params(cell, rng))
    xs = jnp.asarray(rng.standard_normal((3, T, F)), jnp.float32)
    lengths = jnp.array([T, 3, 5])

    def run(hoist):
        return jax.jit(jax.vmap(lambda x, n: rj.unroll(cell, params, x, length=n, hoist=hoist)[1]))(xs, lengths)

    in_loop, hoisted = run(False), run(True)
    np.testing.assert_allclose(hoisted, in_loop, rtol=1e-6, atol=1e-6)
    for k in range(3):
        one = rj.unroll(cell, params, xs[k], length=lengths[k])[1]
        np.testing.assert_allclose(in_loop[k], one, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(in_loop[1, 3:], 0.0)


def test_init_shapes_sizes_and_hashing():
    cell = rj.LSTMCell(8, proj_size=3, forget_bias=2.0)
    params = cell.init(jax.random.key(0), 4)
    shapes = jax.tree_util.tree_map(jnp.shape, params)
    assert shapes == rj.ProjectedLSTMParams(w_i=(4, 32), w_h=(3, 32), b=(32,), w_proj=(8, 3), peephole=None)
    assert jax.tree_util.tree_structure(rj.LSTMCell(8).init(jax.random.key(0), 4)) == jax.tree_util.tree_structure(
        rj.LSTMParams(1, 1, 1)
    )  # an LSTM without projection keeps its params' structure (and its checkpoints)
    np.testing.assert_array_equal(params.b, [0.0] * 8 + [2.0] * 8 + [0.0] * 16)
    # w_proj is orthogonal (recurrent_init): orthonormal columns
    np.testing.assert_allclose(params.w_proj.T @ params.w_proj, np.eye(3), atol=1e-6)
    # torch.nn.LSTM(4, 8, proj_size=3) has 4*8*(4+3) + 2*4*8 + 3*8 = 312 params; one bias fewer here
    assert sum(p.size for p in jax.tree_util.tree_leaves(params)) == 312 - 32
    assert cell.output_size == 3 and rj.LSTMCell(8).output_size == 8
    carry = cell.initial_carry(params, (2,))
    assert carry.h.shape == (2, 3) and carry.c.shape == (2, 8)
    learned = rj.LSTMCell(8, proj_size=3, learn_initial_carry=True).init(jax.random.key(0), 4)
    assert learned.carry0.h.shape == (3,) and learned.carry0.c.shape == (8,)
    # 0 and None are "no projection", one canonical form: equal cells hash equal
    assert rj.LSTMCell(8, proj_size=0) == rj.LSTMCell(8) and rj.LSTMCell(8, proj_size=0).proj_size is None
    assert hash(rj.LSTMCell(8, proj_size=np.int64(3))) == hash(rj.LSTMCell(8, proj_size=3))
    assert rj.LSTMCell(8, proj_size=3) != rj.LSTMCell(8, proj_size=2)
    assert rj.cells.base.short_repr(rj.LSTMCell(8, proj_size=3)) == "LSTMCell(hidden_size=8, proj_size=3)"
    # model-parallel sharding splits the gate columns only; w_proj [h, p] is replicated
    specs = rj.parallel.param_shardings(params, rj.parallel.make_mesh(1))
    assert specs.w_h.spec == jax.sharding.PartitionSpec(None, "model")
    assert specs.w_proj.spec == jax.sharding.PartitionSpec()


def test_16_bit_params_smoke():
    for dtype in (jnp.bfloat16, jnp.float16):
        cell = rj.LSTMCell(H, proj_size=P, param_dtype=dtype)
        params = cell.init(jax.random.key(0), F)
        assert params.w_proj.dtype == dtype
        xs = jax.random.normal(jax.random.key(1), (T, F)).astype(dtype)
        carry, ys = rj.unroll(cell, params, xs)
        assert ys.dtype == dtype and carry.h.dtype == dtype and carry.c.dtype == jnp.float32
        params32 = jax.tree_util.tree_map(lambda p: p.astype(jnp.float32), params)
        want = rj.unroll(rj.LSTMCell(H, proj_size=P), params32, xs.astype(jnp.float32))[1]
        np.testing.assert_allclose(ys.astype(jnp.float32), want, atol=0.05)


def test_in_layers_and_a_stacked_cell():
    # the layers read output_size, so a projected LSTM feeds [p] (bidirectional: [2p]) to the next layer
    cell = rj.LSTMCell(H, proj_size=P)
    stack = rj.Stack([rj.Bidirectional(cell, cell), cell])
    params = stack.init(jax.random.key(0), F)
    assert params[1].w_i.shape == (2 * P, 4 * H) and stack.output_size == P
    xs = jax.random.normal(jax.random.key(1), (T, F))
    stacked = rj.StackedCell([cell, rj.LSTMCell(H, proj_size=2)])
    stacked_params = stacked.init(jax.random.key(2), F)
    ys_stack = rj.Stack(list(stacked.cells)).apply(stacked_params, xs)
    np.testing.assert_allclose(rj.unroll(stacked, stacked_params, xs)[1], ys_stack, rtol=1e-6, atol=1e-6)
    assert ys_stack.shape == (T, 2)


@pytest.mark.parametrize(
    "proj_size, message",
    [
        (-1, "proj_size: expected a positive integer, or 0 or None for no projection, got -1"),
        (2.0, "proj_size: expected a positive integer, or 0 or None for no projection, got 2.0"),
        (True, "proj_size: expected a positive integer, or 0 or None for no projection, got True"),
    ],
)
def test_bad_proj_size_is_named(proj_size, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        rj.LSTMCell(H, proj_size=proj_size)


def _zeros(cell, input_size=F):
    shapes = jax.eval_shape(lambda: cell.init(jax.random.key(0), input_size))
    return jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)


def test_params_of_another_projection_are_named():
    projected, plain = rj.LSTMCell(H, proj_size=P), rj.LSTMCell(H)
    xs = jnp.ones((3, F))
    with pytest.raises(ValueError) as info:
        rj.unroll(projected, _zeros(plain), xs)
    assert str(info.value) == (
        "params.w_proj: LSTMCell(hidden_size=5, proj_size=3) expects an array of shape (5, 3) here; "
        "these params have None (made by LSTMCell(hidden_size=5)?)"
    )
    with pytest.raises(ValueError) as info:
        rj.unroll(plain, _zeros(projected), xs)
    assert str(info.value) == (
        "params.w_proj: LSTMCell(hidden_size=5) expects None here; these params have an array of shape (5, 3) "
        "(made by LSTMCell(hidden_size=5, proj_size=3)?)"
    )
    with pytest.raises(
        ValueError, match=re.escape("params.w_h: expected shape (2, 20) for LSTMCell(hidden_size=5, pr")
    ):
        rj.unroll(rj.LSTMCell(H, proj_size=2), _zeros(projected), xs)
    bad = _zeros(projected)._replace(w_proj=np.zeros((H, P + 1), np.float32))
    with pytest.raises(
        ValueError, match=re.escape("params.w_proj: expected shape (5, 3) for LSTMCell(hidden_size=5, ")
    ):
        projected.recur(bad, projected.initial_carry(_zeros(projected)), jnp.ones(4 * H))
    with pytest.raises(ValueError, match=re.escape("(made by LSTMCell(hidden_size=5, peephole=True, proj_size=3)?)")):
        rj.unroll(projected, _zeros(dataclasses.replace(projected, peephole=True)), xs)
    message = "params: expected LSTMParams or ProjectedLSTMParams (from LSTMCell.init), got GRUParams"
    with pytest.raises(TypeError, match=re.escape(message)):
        rj.unroll(projected, _zeros(rj.GRUCell(H)), xs)


# --- torch ---------------------------------------------------------------------------------------

B = 3
LENGTHS = np.array([T, 2, 5])
TORCH_TOL = {"rtol": 1e-10, "atol": 1e-10}


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="torch not installed (pip install -e .[interop])")


def _torch_lstm(torch, num_layers, bidirectional, bias=True, seed=0):
    torch.manual_seed(seed)
    module = torch.nn.LSTM(F, H, num_layers=num_layers, bidirectional=bidirectional, bias=bias, proj_size=P)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # N(0, 0.5^2) weights: larger than torch's init, so every gate works
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=generator))
    return module


@ONEDNN
@pytest.mark.parametrize(
    "num_layers, bidirectional, bias",
    [(1, False, True), (2, True, True), pytest.param(3, True, False, marks=pytest.mark.slow)],
    ids=["1-uni", "2-bi", "3-bi-nobias"],
)
def test_from_torch_matches_torch(torch, x64, num_layers, bidirectional, bias):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    module = _torch_lstm(torch, num_layers, bidirectional, bias).double()
    layer, params = interop.from_torch(module, dtype=None)
    dirs = 2 if bidirectional else 1
    assert layer.output_size == dirs * P
    assert {c.proj_size for c in interop.common.directions(layer)} == {P}

    rng = np.random.default_rng(5)
    xs = rng.normal(size=(B, T, F))
    h0 = 0.5 * rng.normal(size=(num_layers * dirs, B, P))
    c0 = 0.5 * rng.normal(size=(num_layers * dirs, B, H))
    packed = pack_padded_sequence(torch.tensor(xs), torch.tensor(LENGTHS), batch_first=True, enforce_sorted=False)
    out, (h_n, c_n) = module(packed, (torch.tensor(h0), torch.tensor(c0)))
    ys_torch = pad_packed_sequence(out, batch_first=True, total_length=T)[0].detach().numpy()

    carry0 = interop.from_torch_carry(layer, h0, c0, dtype=None)
    run = jax.jit(jax.vmap(lambda x, n, c: layers.apply_with_carry(layer, params, x, c, length=n)))
    carry, ys = run(xs, LENGTHS, carry0)
    assert ys.shape == (B, T, dirs * P)
    np.testing.assert_allclose(ys, ys_torch, **TORCH_TOL)
    h_ours, c_ours = interop.to_torch_carry(layer, carry)
    assert h_ours.shape == (num_layers * dirs, B, P) and c_ours.shape == (num_layers * dirs, B, H)
    np.testing.assert_allclose(h_ours, h_n.detach().numpy(), **TORCH_TOL)
    np.testing.assert_allclose(c_ours, c_n.detach().numpy(), **TORCH_TOL)

    # from a zero carry, no padding: layer.apply is torch's output
    ys_full = jax.jit(jax.vmap(lambda x: layer.apply(params, x)))(xs)
    np.testing.assert_allclose(
        ys_full, module(torch.tensor(xs).transpose(0, 1))[0].detach().numpy().swapaxes(0, 1), **TORCH_TOL
    )


@ONEDNN
def test_input_gradients_match_torch_autograd(torch, x64):
    module = _torch_lstm(torch, 2, True).double()
    layer, params = interop.from_torch(module, dtype=None)
    rng = np.random.default_rng(6)
    xs, weights = rng.normal(size=(T, F)), rng.normal(size=(T, 2 * P))
    xs_t = torch.tensor(xs, requires_grad=True)
    (module(xs_t)[0] * torch.tensor(weights)).sum().backward()
    grad = jax.jit(jax.grad(lambda x: jnp.sum(layer.apply(params, x) * weights)))(xs)
    np.testing.assert_allclose(grad, xs_t.grad.numpy(), **TORCH_TOL)


@ONEDNN
def test_torch_round_trips(torch):
    module = _torch_lstm(torch, 2, True)
    original = {k: v.numpy() for k, v in module.state_dict().items()}
    layer, params = interop.from_torch(module)
    assert params[1].forward.w_proj.shape == (H, P) and params[1].forward.w_i.shape == (2 * P, 4 * H)
    state = interop.to_torch(layer, params)
    assert_torch_state_is(state, original)  # weight_hr_l* included
    copy = interop.to_torch_module(layer, params)
    assert repr(copy) == repr(module)  # LSTM(4, 5, proj_size=3, num_layers=2, bidirectional=True)
    # torch -> rnnjax -> torch -> rnnjax: the same layer and the same values
    again_layer, again_params = interop.from_torch(copy)
    assert again_layer == layer
    for a, b in zip(jax.tree_util.tree_leaves(again_params), jax.tree_util.tree_leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
    # the same function: torch's copy (biases summed into bias_ih) against the original, in float64
    xs = torch.tensor(np.random.default_rng(7).normal(size=(T, F)))
    want = module.double()(xs)[0].detach().numpy()
    np.testing.assert_allclose(copy.double()(xs)[0].detach().numpy(), want, rtol=1e-6, atol=1e-9)


def test_a_state_dict_reads_and_checks_the_projection():
    def state(num_layers=2, p=P, h=H):
        shapes = {}
        for i in range(num_layers):
            shapes |= {f"weight_ih_l{i}": (4 * h, F if i == 0 else p), f"weight_hh_l{i}": (4 * h, p)}
            shapes |= {f"bias_ih_l{i}": (4 * h,), f"bias_hh_l{i}": (4 * h,), f"weight_hr_l{i}": (p, h)}
        return {k: np.zeros(s, np.float32) for k, s in shapes.items()}

    layer, params = interop.from_torch_state_dict(state(), "lstm")
    assert layer == rj.layers.deep(rj.LSTMCell, H, num_layers=2, proj_size=P)
    assert params[0].w_proj.shape == (H, P) and params[1].w_h.shape == (P, 4 * H)
    # proj_size == hidden_size is not torch's, but reads (a projection that keeps the size)
    assert interop.from_torch_state_dict(state(p=H), "lstm")[0].layers[0].cell.proj_size == H

    bad = state() | {"weight_hr_l1": np.zeros((P, H + 1), np.float32)}
    with pytest.raises(ValueError) as info:
        interop.from_torch_state_dict(bad, "lstm")
    assert "torch.nn.LSTM(input_size=4, hidden_size=5, num_layers=2, bias=True, bidirectional=False, proj_size=3)" in (
        str(info.value)
    )
    assert str(info.value).endswith(f"state_dict['weight_hr_l1']: expected shape ({P}, {H}), got ({P}, {H + 1})")
    missing = {k: v for k, v in state().items() if k != "weight_hr_l1"}
    with pytest.raises(ValueError, match=re.escape("state_dict['weight_hr_l1']: missing")):
        interop.from_torch_state_dict(missing, "lstm")
    with pytest.raises(ValueError, match=re.escape("state_dict['weight_hr_l0']: unexpected key")):
        interop.from_torch_state_dict(state(), "lstm", proj_size=0)
    with pytest.raises(ValueError, match=re.escape("proj_size: only an LSTM has a projection, got proj_size=3")):
        interop.from_torch_state_dict(state(), "gru", proj_size=P)
    with pytest.raises(ValueError, match=re.escape("proj_size: expected a non-negative integer, got -1")):
        interop.from_torch_state_dict(state(), "lstm", proj_size=-1)


def test_to_torch_checks_the_projection(torch):
    mixed = rj.Stack([rj.LSTMCell(H, proj_size=P), rj.LSTMCell(H, proj_size=2)])
    with pytest.raises(ValueError, match=re.escape("layer: torch needs the same proj_size in every layer, got [2, 3]")):
        interop.to_torch(mixed, _zeros_layer(mixed))
    half = rj.Stack([rj.LSTMCell(H, proj_size=P), rj.LSTMCell(H)])
    with pytest.raises(ValueError, match=re.escape("layer: torch needs the same proj_size in every layer, got [0, 3]")):
        interop.to_torch(half, _zeros_layer(half))
    wide = rj.RNN(rj.LSTMCell(H, proj_size=H))
    with pytest.raises(ValueError, match=re.escape("torch.nn.LSTM needs proj_size < hidden_size, got proj_size=5, hi")):
        interop.to_torch_module(wide, _zeros_layer(wide))
    message = "params: expected a LSTMParams for LSTMCell(hidden_size=5), got a ProjectedLSTMParams"
    with pytest.raises(TypeError, match=re.escape(message)):  # params of another cell
        interop.to_torch(rj.RNN(rj.LSTMCell(H)), _zeros_layer(rj.RNN(rj.LSTMCell(H, proj_size=P))))


def test_torch_carries_of_a_projection():
    layer = rj.layers.deep(rj.LSTMCell, H, num_layers=2, bidirectional=True, proj_size=P)
    h = np.arange(4 * 2 * P, dtype=np.float32).reshape(4, 2, P)
    c = np.arange(4 * 2 * H, dtype=np.float32).reshape(4, 2, H)
    carry = interop.from_torch_carry(layer, h, c)
    assert carry[1][0].h.shape == (2, P) and carry[1][0].c.shape == (2, H)
    h_n, c_n = interop.to_torch_carry(layer, carry)
    np.testing.assert_array_equal(h_n, h)
    np.testing.assert_array_equal(c_n, c)
    with pytest.raises(ValueError, match=re.escape("c: expected the shape of h (4, 2, 3) (but for the last axis), go")):
        interop.from_torch_carry(layer, h, c[:, :1])


def _zeros_layer(layer):
    shapes = jax.eval_shape(lambda k: layer.init(k, F), jax.random.key(0))
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


# --- the docs ------------------------------------------------------------------------------------


def test_the_guide_section_runs():
    """The code of docs/guide/cells.md's projection section runs as written."""
    page = (ROOT / "docs/guide/cells.md").read_text()
    section = page.split("### LSTM with a projection\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    assert blocks
    with jax.numpy_dtype_promotion("standard"):
        for block in blocks:
            exec(compile(block, "docs/guide/cells.md", "exec"), {})
