r"""Locally recurrent networks (IIR-MLP) and causal recursive backpropagation (CRBP).

A *locally recurrent* network is a feed-forward MLP whose connections are small linear
filters: the only feedback is inside each synapse. In the IIR-MLP (Back & Tsoi 1991) the
synapse from unit ``i`` of layer ``l-1`` to unit ``o`` of layer ``l`` is an ARMA filter

.. math::
    y_{oi}(t) &= \sum_{k=0}^{q} w_{oik}\, x_i(t-k) + \sum_{k=1}^{p} v_{oik}\, y_{oi}(t-k) \\
    s_o(t) &= \sum_i y_{oi}(t) + b_o, \qquad x_o(t) = \phi(s_o(t))

(``q`` the MA order, ``p`` the AR order; ``p = 0`` is the FIR-MLP / TDNN of Wan 1990).
:class:`IIRMLPCell` is this network as an rnnjax cell: its carry holds the filters' delay
lines, so :func:`rnnjax.unroll`, :func:`rnnjax.train.bptt_grad` and
:func:`rnnjax.train.rtrl_grad` work on it unchanged.

Causal recursive backpropagation (Campolucci, Uncini, Piazza & Rao 1999) computes the
gradient of :math:`J = \sum_t \ell_t` for such a network from two kinds of quantities.
Because a unit's net input :math:`s_o(t)` has no path back into its own layer, the exact
gradient splits into *local* forward sensitivities of each synapse and *deltas*
:math:`\delta_o(t) = dJ/ds_o(t)`:

.. math::
    \frac{dJ}{dw_{oik}} &= \sum_t \delta_o(t)\, \frac{\partial^+ y_{oi}(t)}{\partial w_{oik}},
    \qquad
    \frac{\partial^+ y_{oi}(t)}{\partial w_{oik}} = x_i(t-k) + \sum_{j=1}^p v_{oij}
        \frac{\partial^+ y_{oi}(t-j)}{\partial w_{oik}} \\
    \frac{dJ}{dv_{oik}} &= \sum_t \delta_o(t)\, \frac{\partial^+ y_{oi}(t)}{\partial v_{oik}},
    \qquad
    \frac{\partial^+ y_{oi}(t)}{\partial v_{oik}} = y_{oi}(t-k) + \sum_{j=1}^p v_{oij}
        \frac{\partial^+ y_{oi}(t-j)}{\partial v_{oik}} \\
    \delta^{L}_o(t) &= \phi'(s^L_o(t))\, \frac{\partial \ell_t}{\partial x^L_o(t)}, \qquad
    \delta^{l}_i(t) = \phi'(s^l_i(t)) \sum_{o} \sum_{\tau=0}^{h} g^{l+1}_{oi}(\tau)\,
        \delta^{l+1}_o(t+\tau)

where :math:`g_{oi}(\tau) = w_{oi\tau} + \sum_j v_{oij} g_{oi}(\tau-j)` is the synapse's
impulse response. The sensitivities run forward in time (causal, local to each synapse, as
in Back & Tsoi); the deltas need ``h`` future steps per layer, so CRBP computes the delta of
layer ``l`` with a delay of :math:`D_l = (L-l)h` steps and applies the weight change of time
``t - D_l`` at time ``t``. ``h`` (``depth``) is the truncation of the backward recursion:
``h = 0`` is the Back-Tsoi algorithm (instantaneous backpropagation between layers), and
with ``h >= t - 1`` on a sequence of ``t`` steps, fixed weights and the deltas flushed at the
end, the accumulated gradient is exactly BPTT's (:func:`crbp_grad`).

Here the backward recursion through each synapse is written with its impulse response
truncated at ``h`` (the published CRBP runs the same sum as a backward IIR recursion over
``h`` future steps; both give the same truncated delta).

References:
  Back & Tsoi, "FIR and IIR synapses, a new neural network architecture for time series
  modeling", Neural Computation 1991.
  Campolucci, Uncini, Piazza & Rao, "On-line learning algorithms for locally recurrent
  neural networks", IEEE Transactions on Neural Networks 10(2), 1999.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from rnnjax._src import checks, numerics
from rnnjax.typing import Array, Carry, PRNGKey, Shape

__all__ = [
    "IIRLayerParams",
    "IIRMLPParams",
    "IIRMLPCarry",
    "IIRMLPCell",
    "CRBPState",
    "impulse_response",
    "project_stable",
    "crbp_init",
    "crbp_step",
    "crbp_grad",
]


class IIRLayerParams(NamedTuple):
    """One layer of IIR synapses: ``o`` units fed by ``i`` inputs."""

    w: Array  # [o, i, q+1]  MA taps: w[..., k] multiplies x(t-k)
    v: Array  # [o, i, p]    AR taps: v[..., k-1] multiplies y(t-k)
    b: Array  # [o]          unit bias


class IIRMLPParams(NamedTuple):
    """The layers of an :class:`IIRMLPCell`, input side first."""

    layers: tuple[IIRLayerParams, ...]


class IIRMLPCarry(NamedTuple):
    """The delay lines of every layer (the filters' state), input side first."""

    inputs: tuple[Array, ...]  # per layer [..., i, q]     the layer's inputs x(t-1) ... x(t-q)
    synapses: tuple[Array, ...]  # per layer [..., o, i, p]  the synapse outputs y(t-1) ... y(t-p)


@dataclasses.dataclass(frozen=True)
class IIRMLPCell:
    r"""An MLP with IIR-filter synapses (IIR-MLP, Back & Tsoi 1991) as an rnnjax cell.

    Every connection is an ARMA(``p``, ``q``) filter (see the module docstring):

    .. math::
        y_{oi}(t) = \sum_{k=0}^{q} w_{oik} x_i(t-k) + \sum_{k=1}^{p} v_{oik} y_{oi}(t-k), \qquad
        x_o(t) = \phi\Big(\sum_i y_{oi}(t) + b_o\Big)

    The carry is the filters' delay lines; the step's output is the last layer's ``x``.
    ``ar_order=0`` gives the FIR-MLP (time-delay network).

    Args:
      layer_sizes: units per layer, input side first; the last is the output size ``o``.
      ma_order: MA (feed-forward) order ``q >= 0`` of every synapse (``q + 1`` taps).
      ar_order: AR (feedback) order ``p >= 0`` of every synapse.
      activation: activation ``phi`` of the hidden layers (``"tanh"``).
      output_activation: activation of the last layer (``"tanh"``; ``"identity"`` for regression).
      dtype: computation dtype, or None to promote the params' and inputs' dtypes.
      param_dtype: dtype of the params made by ``init``.
      ar_scale: the AR taps start uniform in ``[-ar_scale/p, ar_scale/p]``, so every synapse
        starts stable (``sum_k |v_k| < 1``).

    Example:
        >>> import rnnjax as rj
        >>> cell = IIRMLPCell((8, 1), ma_order=2, ar_order=2)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> tuple((layer.w.shape, layer.v.shape) for layer in params.layers)
        (((8, 3, 3), (8, 3, 2)), ((1, 8, 3), (1, 8, 2)))
        >>> carry, ys = rj.unroll(cell, params, jnp.ones((20, 3)))
        >>> ys.shape
        (20, 1)

    References:
      Back & Tsoi, "FIR and IIR synapses, a new neural network architecture for time series
      modeling", Neural Computation 1991.
    """

    layer_sizes: tuple[int, ...]
    _: dataclasses.KW_ONLY
    ma_order: int = 1
    ar_order: int = 1
    activation: str | Callable = "tanh"
    output_activation: str | Callable = "tanh"
    dtype: Any = None
    param_dtype: Any = jnp.float32
    ar_scale: float = 0.5

    def __post_init__(self):
        if isinstance(self.layer_sizes, int) or not hasattr(self.layer_sizes, "__iter__"):
            raise ValueError(f"layer_sizes: expected a sequence of positive integers, got {self.layer_sizes!r}")
        object.__setattr__(self, "layer_sizes", tuple(self.layer_sizes))
        if not self.layer_sizes:
            raise ValueError("layer_sizes: expected at least one layer, got ()")
        for n, size in enumerate(self.layer_sizes):
            checks.positive_int(size, f"layer_sizes[{n}]")
        for name in ("ma_order", "ar_order"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
        numerics.activation(self.activation, "activation")
        numerics.activation(self.output_activation, "output_activation")
        if not 0.0 <= self.ar_scale < 1.0:
            raise ValueError(f"ar_scale: expected a value in [0, 1), got {self.ar_scale}")
        object.__setattr__(self, "param_dtype", jnp.dtype(self.param_dtype))
        if self.dtype is not None:
            object.__setattr__(self, "dtype", jnp.dtype(self.dtype))

    @property
    def output_size(self) -> int:
        """Size of the output ``y`` of each step (the last layer's units)."""
        return self.layer_sizes[-1]

    @property
    def num_layers(self) -> int:
        """Number of layers ``L``."""
        return len(self.layer_sizes)

    def _activations(self) -> list[Callable[[Array], Array]]:
        hidden = numerics.activation(self.activation, "activation")
        return [hidden] * (self.num_layers - 1) + [numerics.activation(self.output_activation, "output_activation")]

    def input_size(self, params: IIRMLPParams) -> int:
        """The input size ``f`` that ``params`` were initialised for."""
        return params.layers[0].w.shape[1]

    def check_params(self, params) -> None:
        checks.params_type(params, IIRMLPParams, self)
        if len(params.layers) != self.num_layers:
            raise ValueError(f"params: expected {self.num_layers} layers for {self!r}, got {len(params.layers)}")
        for n, (layer, size) in enumerate(zip(params.layers, self.layer_sizes, strict=True)):
            fan_in = layer.w.shape[1]
            expected = (size, fan_in, self.ma_order + 1), (size, fan_in, self.ar_order), (size,)
            got = layer.w.shape, layer.v.shape, layer.b.shape
            if got != expected:
                raise ValueError(f"params: layer {n} has shapes (w, v, b) {got}, expected {expected}")

    def _compute_dtype(self, params: IIRMLPParams, input_dtype=None):
        return numerics.compute_dtype(params, input_dtype, self.dtype)

    def init(self, key: PRNGKey, input_size: int) -> IIRMLPParams:
        """Params: per layer ``w [o, i, q+1]`` (LeCun-uniform over the ``i (q+1)`` taps), ``v [o, i, p]``, ``b [o]``.

        Args:
          key: a PRNG key.
          input_size: input features ``f``.

        Returns:
          An :class:`IIRMLPParams`.

        Example:
            >>> IIRMLPCell((4, 2), ma_order=0, ar_order=3).init(jax.random.key(0), 5).layers[1].v.shape
            (2, 4, 3)
        """
        checks.positive_int(input_size, "input_size")
        q, p, dt = self.ma_order, self.ar_order, self.param_dtype
        sizes = (input_size, *self.layer_sizes)
        layers = []
        for k, n_in, n_out in zip(jax.random.split(key, self.num_layers), sizes[:-1], sizes[1:], strict=True):
            k_w, k_v = jax.random.split(k)
            bound = (3.0 / (n_in * (q + 1))) ** 0.5
            w = jax.random.uniform(k_w, (n_out, n_in, q + 1), dt, -bound, bound)
            v_bound = self.ar_scale / max(p, 1)
            v = jax.random.uniform(k_v, (n_out, n_in, p), dt, -v_bound, v_bound)
            layers.append(IIRLayerParams(w, v, jnp.zeros((n_out,), dt)))
        return IIRMLPParams(tuple(layers))

    def initial_carry(self, params: IIRMLPParams, batch_shape: Shape = ()) -> IIRMLPCarry:
        """Empty delay lines (zeros): ``inputs[l]: [*batch_shape, i, q]``, ``synapses[l]: [*batch_shape, o, i, p]``.

        Args:
          params: this cell's params.
          batch_shape: leading shape for a batch of carries, e.g. ``(b,)``.

        Returns:
          An :class:`IIRMLPCarry` in the computation dtype.

        Example:
            >>> cell = IIRMLPCell((4, 1), ma_order=2, ar_order=1)
            >>> carry = cell.initial_carry(cell.init(jax.random.key(0), 3), (2,))
            >>> [c.shape for c in carry.inputs], [c.shape for c in carry.synapses]
            ([(2, 3, 2), (2, 4, 2)], [(2, 4, 3, 1), (2, 1, 4, 1)])
        """
        self.check_params(params)
        dtype = self._compute_dtype(params)
        inputs, synapses = [], []
        for layer in params.layers:
            n_out, n_in = layer.w.shape[:2]
            inputs.append(jnp.zeros((*batch_shape, n_in, self.ma_order), dtype))
            synapses.append(jnp.zeros((*batch_shape, n_out, n_in, self.ar_order), dtype))
        return IIRMLPCarry(tuple(inputs), tuple(synapses))

    def project(self, params: IIRMLPParams, xs: Array) -> Array:
        """The time-parallel part: checks ``xs: [..., f]`` and casts it to the computation dtype.

        Every synapse filters its input through time, so nothing of the layer maps can be
        hoisted out of the recurrence; :meth:`recur` does all the work.

        Example:
            >>> cell = IIRMLPCell((4, 1))
            >>> cell.project(cell.init(jax.random.key(0), 3), jnp.ones((10, 3))).shape
            (10, 3)
        """
        xs = checks.floating(xs, "xs")
        checks.features(xs, self.input_size(params), "xs")
        return xs.astype(self._compute_dtype(params, xs.dtype))

    def _layer(self, layer: IIRLayerParams, x_hist: Array, y_hist: Array, act, dtype):
        """One layer: ``x_hist [..., i, q+1]`` (lag 0 first), ``y_hist [..., o, i, p]`` -> (syn [..., o, i], s, x)."""
        ma = jnp.einsum("...ik,oik->...oi", x_hist, layer.w.astype(dtype))
        ar = jnp.einsum("...oik,oik->...oi", y_hist, layer.v.astype(dtype))
        syn = ma + ar
        s = jnp.sum(syn, axis=-1) + layer.b.astype(dtype)
        return syn, s, act(s)

    def _forward(self, params: IIRMLPParams, carry: IIRMLPCarry, u: Array):
        """The step, returning also every layer's pieces (for CRBP)."""
        dtype = u.dtype
        x = u
        new_inputs, new_synapses, pieces = [], [], []
        for layer, x_past, y_past, act in zip(
            params.layers, carry.inputs, carry.synapses, self._activations(), strict=True
        ):
            x_hist = jnp.concatenate([x[..., None], x_past.astype(dtype)], axis=-1)  # [..., i, q+1]
            y_hist = y_past.astype(dtype)
            syn, s, x_next = self._layer(layer, x_hist, y_hist, act, dtype)
            pieces.append((x_hist, y_hist, syn, s))
            new_inputs.append(x_hist[..., : self.ma_order])
            new_synapses.append(jnp.concatenate([syn[..., None], y_hist], axis=-1)[..., : self.ar_order])
            x = x_next
        return IIRMLPCarry(tuple(new_inputs), tuple(new_synapses)), x, pieces

    def recur(self, params: IIRMLPParams, carry: IIRMLPCarry, u: Array) -> tuple[IIRMLPCarry, Array]:
        """One step of every layer's filters and units; ``u: [..., f]`` from :meth:`project`.

        Args:
          params: this cell's params.
          carry: the delay lines before the step.
          u: the input ``[..., f]`` (from :meth:`project`).

        Returns:
          ``(carry, y)``: the shifted delay lines and the output ``y: [..., o]``.

        Example:
            >>> cell = IIRMLPCell((4, 2))
            >>> params = cell.init(jax.random.key(0), 3)
            >>> carry, y = cell.recur(params, cell.initial_carry(params), cell.project(params, jnp.ones(3)))
            >>> y.shape
            (2,)
        """
        carry, y, _ = self._forward(params, carry, u)
        return carry, y

    def step(self, params: IIRMLPParams, carry: IIRMLPCarry, x: Array) -> tuple[IIRMLPCarry, Array]:
        """One full time step: ``recur(params, carry, project(params, x))``.

        Args:
          params: this cell's params.
          carry: the delay lines before the step.
          x: the input ``[..., f]``.

        Returns:
          ``(carry, y)`` with ``y: [..., o]``.

        Example:
            >>> cell = IIRMLPCell((4, 2))
            >>> params = cell.init(jax.random.key(0), 3)
            >>> carry, y = cell.step(params, cell.initial_carry(params), jnp.ones(3))
            >>> y.shape
            (2,)
        """
        return self.recur(params, carry, self.project(params, x))


def project_stable(params: IIRMLPParams, margin: float = 0.01) -> IIRMLPParams:
    r"""Scale each synapse's AR taps so that :math:`\sum_k |v_k| \le 1 - \text{margin}`.

    That bound is sufficient (not necessary) for every pole to lie inside the unit circle, so
    each synapse stays a stable filter; applied after every update of an on-line learner it
    keeps the network bounded-input bounded-output. Synapses already inside are unchanged.

    Args:
      params: :class:`IIRMLPParams`.
      margin: in ``(0, 1]``.

    Returns:
      The params with ``v`` rescaled where needed.

    Example:
        >>> layer = IIRLayerParams(jnp.ones((1, 1, 1)), jnp.array([[[0.9, 0.6]]]), jnp.zeros(1))
        >>> v = project_stable(IIRMLPParams((layer,)), margin=0.1).layers[0].v
        >>> round(float(jnp.sum(jnp.abs(v))), 6), round(float(v[0, 0, 0] / v[0, 0, 1]), 6)  # same ratio, sum 0.9
        (0.9, 1.5)
    """
    if not 0.0 < margin <= 1.0:
        raise ValueError(f"margin: expected a value in (0, 1], got {margin}")

    def shrink(v):
        total = jnp.sum(jnp.abs(v), axis=-1, keepdims=True)
        bound = jnp.asarray(1.0 - margin, v.dtype)
        return v * jnp.minimum(1, bound / jnp.maximum(total, jnp.finfo(v.dtype).tiny))

    return IIRMLPParams(tuple(layer._replace(v=shrink(layer.v)) for layer in params.layers))


# --- causal recursive backpropagation ---------------------------------------------------------------


def impulse_response(layer: IIRLayerParams, length: int) -> Array:
    r"""The first ``length`` samples of every synapse's impulse response.

    :math:`g(\tau) = w_\tau [\tau \le q] + \sum_{j=1}^{p} v_j\, g(\tau - j)`, so that
    :math:`\partial y_{oi}(t+\tau) / \partial x_i(t) = g_{oi}(\tau)`.

    Args:
      layer: one layer's params (``w [o, i, q+1]``, ``v [o, i, p]``).
      length: number of samples (a positive int).

    Returns:
      ``[o, i, length]``.

    Example:
        >>> layer = IIRLayerParams(jnp.ones((1, 1, 1)), jnp.full((1, 1, 1), 0.5), jnp.zeros(1))
        >>> impulse_response(layer, 4)[0, 0].tolist()
        [1.0, 0.5, 0.25, 0.125]
    """
    checks.positive_int(length, "length")
    n_out, n_in, taps = layer.w.shape
    p = layer.v.shape[-1]
    w = jnp.zeros((n_out, n_in, length), layer.w.dtype).at[..., : min(taps, length)].set(layer.w[..., :length])

    def body(past, w_tau):  # past: [o, i, p] = g(tau-1) ... g(tau-p)
        g = w_tau + jnp.sum(layer.v * past, axis=-1)
        return jnp.concatenate([g[..., None], past], axis=-1)[..., :p], g

    _, gs = lax.scan(body, jnp.zeros((n_out, n_in, p), w.dtype), jnp.moveaxis(w, -1, 0))
    return jnp.moveaxis(gs, 0, -1)


class CRBPState(NamedTuple):
    """The on-line state of CRBP: the forward carry plus the local histories it keeps.

    ``H = (L - 1) h + 1`` steps of history (age 0 = the current step) per layer; layer ``l``
    uses its entries of age ``D_l = (L - l) h``.
    """

    carry: IIRMLPCarry  # the network's delay lines
    sens_w: tuple[Array, ...]  # per layer [p, o, i, q+1]  d+y(t-j)/dw, j = 1..p
    sens_v: tuple[Array, ...]  # per layer [p, o, i, p]    d+y(t-j)/dv, j = 1..p
    slope: tuple[Array, ...]  # per layer [H, o]            phi'(s(t - age))
    hist_w: tuple[Array, ...]  # per layer [H, o, i, q+1]  d+y(t - age)/dw
    hist_v: tuple[Array, ...]  # per layer [H, o, i, p]    d+y(t - age)/dv
    delta: tuple[Array, ...]  # per layer [H, o]            delta(t - age), valid for age >= D_l


def _check_crbp(cell, params, depth) -> None:
    if not isinstance(cell, IIRMLPCell):
        raise TypeError(f"cell: expected an IIRMLPCell, got {type(cell).__name__}")
    cell.check_params(params)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth: expected a non-negative integer (the truncation h), got {depth!r}")


def crbp_init(cell: IIRMLPCell, params: IIRMLPParams, depth: int, *, carry: Carry | None = None) -> CRBPState:
    """The CRBP state before the first step (empty histories).

    Args:
      cell: an :class:`IIRMLPCell`.
      params: its params.
      depth: truncation ``h >= 0`` of the backward recursion (future steps per layer).
      carry: initial network carry (None: ``cell.initial_carry(params)``).

    Returns:
      A :class:`CRBPState`.

    Example:
        >>> cell = IIRMLPCell((4, 1), ma_order=1, ar_order=2)
        >>> state = crbp_init(cell, cell.init(jax.random.key(0), 2), depth=3)
        >>> state.hist_w[0].shape, state.delta[1].shape
        ((4, 4, 2, 2), (4, 1))
    """
    _check_crbp(cell, params, depth)
    carry = cell.initial_carry(params) if carry is None else carry
    dtype = cell._compute_dtype(params)
    size = (cell.num_layers - 1) * depth + 1
    p = cell.ar_order
    sens_w, sens_v, slope, hist_w, hist_v, delta = [], [], [], [], [], []
    for layer in params.layers:
        o, i, taps = layer.w.shape
        sens_w.append(jnp.zeros((p, o, i, taps), dtype))
        sens_v.append(jnp.zeros((p, o, i, p), dtype))
        slope.append(jnp.zeros((size, o), dtype))
        hist_w.append(jnp.zeros((size, o, i, taps), dtype))
        hist_v.append(jnp.zeros((size, o, i, p), dtype))
        delta.append(jnp.zeros((size, o), dtype))
    return CRBPState(carry, *map(tuple, (sens_w, sens_v, slope, hist_w, hist_v, delta)))


def _push(history: Array, new: Array) -> Array:
    """Shift ``history [H, ...]`` one step older and put ``new`` at age 0."""
    return jnp.concatenate([new[None].astype(history.dtype), history[:-1]], axis=0)


def _crbp_update(cell, params, state, x, error, depth):
    """One CRBP step; ``error(y) -> (loss, dl/dy)``. Returns (state, loss, y, the gradient terms of age D_l)."""
    dtype = state.delta[0].dtype
    new_carry, y, pieces = cell._forward(params, state.carry, x.astype(dtype))
    loss, output_error = error(y)
    num_layers = cell.num_layers
    sens_w, sens_v, slope, hist_w, hist_v = [], [], [], [], []
    for n, (layer, act, (x_hist, y_hist, _, s)) in enumerate(
        zip(params.layers, cell._activations(), pieces, strict=True)
    ):
        v = layer.v.astype(dtype)
        # local forward sensitivities (Back & Tsoi): d+y(t)/dw_k = x(t-k) + sum_j v_j d+y(t-j)/dw_k
        now_w = x_hist[None, :, :] + jnp.einsum("oij,joik->oik", v, state.sens_w[n])
        now_v = y_hist + jnp.einsum("oij,joik->oik", v, state.sens_v[n])
        sens_w.append(_push(state.sens_w[n], now_w)[: cell.ar_order])
        sens_v.append(_push(state.sens_v[n], now_v)[: cell.ar_order])
        slope.append(_push(state.slope[n], jax.jvp(act, (s,), (jnp.ones_like(s),))[1]))
        hist_w.append(_push(state.hist_w[n], now_w))
        hist_v.append(_push(state.hist_v[n], now_v))

    # deltas: the output layer's now, each lower layer's h steps later than the one above
    deltas = [None] * num_layers
    top = num_layers - 1
    deltas[top] = _push(state.delta[top], slope[top][0] * output_error.astype(dtype))
    for n in range(top - 1, -1, -1):
        lag = (top - n) * depth  # D_l of this layer
        above = deltas[n + 1][lag - depth : lag + 1][::-1]  # delta_above(t - lag + tau), tau = 0..h: [h+1, o]
        g = impulse_response(params.layers[n + 1], depth + 1).astype(dtype)  # [o, i, h+1]
        back = jnp.einsum("oit,to->i", g, above)
        deltas[n] = _push(state.delta[n], jnp.zeros_like(state.delta[n][0])).at[lag].set(slope[n][lag] * back)

    grads = []
    for n in range(num_layers):
        lag = (top - n) * depth
        d = deltas[n][lag]
        grads.append(
            IIRLayerParams(
                (d[:, None, None] * hist_w[n][lag]).astype(params.layers[n].w.dtype),
                (d[:, None, None] * hist_v[n][lag]).astype(params.layers[n].v.dtype),
                d.astype(params.layers[n].b.dtype),
            )
        )
    state = CRBPState(new_carry, *map(tuple, (sens_w, sens_v, slope, hist_w, hist_v, deltas)))
    return state, loss, y, IIRMLPParams(tuple(grads))


def crbp_step(
    cell: IIRMLPCell, params: IIRMLPParams, state: CRBPState, x: Array, target, step_loss: Callable, *, depth: int
) -> tuple[CRBPState, Array, Array, IIRMLPParams]:
    """One on-line CRBP step: forward one sample, return this step's causal gradient term.

    At time ``t`` the output layer's term uses ``delta^L(t)``; layer ``l``'s term is the
    one of time ``t - (L - l) h`` (its delta needs ``h`` future deltas per layer above).
    An on-line learner applies ``grads`` at once (``params -= lr * grads``), as in the paper.

    Args:
      cell: an :class:`IIRMLPCell`.
      params: its params (the current weights).
      state: from :func:`crbp_init` or the previous step.
      x: the input ``[f]``.
      target: this step's target (passed to ``step_loss``).
      step_loss: ``step_loss(y [o], target) -> scalar``.
      depth: truncation ``h`` (the same as in :func:`crbp_init`).

    Returns:
      ``(state, loss, y, grads)``: the new state, ``step_loss(y, target)``, the output
      ``y [o]``, and the gradient term shaped like ``params``.

    Example:
        >>> cell = IIRMLPCell((4, 1), output_activation="identity")
        >>> params = cell.init(jax.random.key(0), 1)
        >>> state = crbp_init(cell, params, depth=2)
        >>> mse = lambda y, target: jnp.sum((y - target) ** 2)
        >>> state, loss, y, grads = crbp_step(cell, params, state, jnp.ones(1), jnp.zeros(1), mse, depth=2)
        >>> grads.layers[1].w.shape
        (1, 4, 2)
    """
    _check_crbp(cell, params, depth)
    x = checks.floating(x, "x")
    if x.shape != (cell.input_size(params),):
        raise ValueError(f"x: expected shape [{cell.input_size(params)}] (one step of one sequence), got {x.shape}")
    return _crbp_update(cell, params, state, x, lambda y: jax.value_and_grad(step_loss)(y, target), depth)


def crbp_grad(
    cell: IIRMLPCell,
    params: IIRMLPParams,
    xs: Array,
    targets,
    step_loss: Callable,
    *,
    depth: int | None = None,
    carry: Carry | None = None,
) -> tuple[Array, IIRMLPParams]:
    """The gradient of ``sum_t step_loss(y_t, target_t)`` accumulated by CRBP with fixed weights.

    Runs :func:`crbp_step` over the sequence and then ``(L - 1) h`` flush steps with zero
    error, so that every step's delayed term is counted. With ``depth=None`` (``h = t - 1``,
    no truncation) the result equals :func:`rnnjax.train.bptt_grad` up to rounding; a smaller
    ``h`` drops the terms of deltas that lie more than ``h`` steps ahead per layer (``h = 0``:
    the Back-Tsoi gradient).

    Args:
      cell: an :class:`IIRMLPCell`.
      params: its params.
      xs: inputs ``[t, f]``.
      targets: a pytree of arrays with leading axis ``t``.
      step_loss: ``step_loss(y_t [o], target_t) -> scalar``.
      depth: truncation ``h`` (None: ``t - 1``, exact).
      carry: initial carry (None: ``cell.initial_carry(params)``).

    Returns:
      ``(loss, grads)`` with ``grads`` shaped like ``params``.

    Example:
        >>> import rnnjax as rj
        >>> cell = IIRMLPCell((3, 1), ar_order=2)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> mse = lambda y, target: jnp.sum((y - target) ** 2)
        >>> xs, targets = jnp.ones((8, 2)), jnp.zeros((8, 1))
        >>> loss, grads = crbp_grad(cell, params, xs, targets, mse)
        >>> bptt_loss, bptt_grads = rj.train.bptt_grad(cell, params, xs, targets, mse)
        >>> bool(jnp.allclose(grads.layers[0].v, bptt_grads.layers[0].v, atol=1e-5))
        True
    """
    if not isinstance(cell, IIRMLPCell):
        raise TypeError(f"cell: expected an IIRMLPCell, got {type(cell).__name__}")
    xs = checks.sequence(xs, cell.input_size(params), "xs")
    num_steps = xs.shape[0]
    depth = max(num_steps - 1, 0) if depth is None else depth
    state = crbp_init(cell, params, depth, carry=carry)
    xs = xs.astype(state.delta[0].dtype)
    zero_grads = jax.tree_util.tree_map(jnp.zeros_like, params)

    def body(acc, inp):
        state, loss, grads = acc
        x, target = inp
        error = lambda y: jax.value_and_grad(step_loss)(y, target)  # noqa: E731
        state, value, _, term = _crbp_update(cell, params, state, x, error, depth)
        return (state, loss + value, jax.tree_util.tree_map(jnp.add, grads, term)), None

    init = (state, jnp.zeros((), state.delta[0].dtype), zero_grads)
    (state, loss, grads), _ = lax.scan(body, init, (xs, targets))

    flush = (cell.num_layers - 1) * depth
    if flush:

        def flush_body(acc, _):
            state, grads = acc
            x = jnp.zeros((cell.input_size(params),), xs.dtype)
            no_error = lambda y: (jnp.zeros((), y.dtype), jnp.zeros_like(y))  # noqa: E731
            state, _, _, term = _crbp_update(cell, params, state, x, no_error, depth)
            return (state, jax.tree_util.tree_map(jnp.add, grads, term)), None

        (state, grads), _ = lax.scan(flush_body, (state, grads), None, length=flush)
    return loss, grads
