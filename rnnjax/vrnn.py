r"""Variational recurrent neural network (VRNN), its ELBO and IWAE bounds, and a no-latent baseline.

The VRNN (Chung et al. 2015) puts a latent variable :math:`z_t` in every step of an RNN. With
:math:`h_{t-1}` the RNN's output before step :math:`t` (zeros, or the learned initial carry's
``h``, before the first step) and feature extractors :math:`\varphi_x, \varphi_z` (one dense
layer each):

.. math::
    \text{prior:}\quad & p(z_t \mid h_{t-1}) = \mathcal N(\mu_{0,t}, \operatorname{diag}\sigma_{0,t}^2),
        \quad [\mu_{0,t}, \sigma_{0,t}] = \varphi_{\text{prior}}(h_{t-1}) \\
    \text{posterior:}\quad & q(z_t \mid x_t, h_{t-1}) = \mathcal N(\mu_{z,t}, \operatorname{diag}\sigma_{z,t}^2),
        \quad [\mu_{z,t}, \sigma_{z,t}] = \varphi_{\text{enc}}([\varphi_x(x_t), h_{t-1}]) \\
    \text{decoder:}\quad & p(x_t \mid z_t, h_{t-1}) = \mathcal N(\mu_{x,t}, \operatorname{diag}\sigma_{x,t}^2)
        \ \text{(or Bernoulli)}, \quad [\mu_{x,t}, \sigma_{x,t}] = \varphi_{\text{dec}}([\varphi_z(z_t), h_{t-1}]) \\
    \text{recurrence:}\quad & h_t = f(h_{t-1}, [\varphi_x(x_t), \varphi_z(z_t)])

where :math:`f` is any rnnjax cell (a :class:`~rnnjax.GRUCell` by default), run with
:func:`jax.lax.scan`. The prior, posterior and decoder are MLPs with one hidden layer and
two linear heads, the scale through ``softplus(.) + min_scale``.

Training maximises the evidence lower bound, summed over steps, with the KL in closed form and
:math:`z_{\le t}` drawn from the posterior by reparameterisation:

.. math::
    \log p(x_{1:T}) \ge \mathcal L = \mathbb E_{q(z_{\le T} \mid x_{\le T})} \Big[\sum_t
        \log p(x_t \mid z_t, h_{t-1}) - \mathrm{KL}\big(q(z_t \mid x_t, h_{t-1}) \,\|\, p(z_t \mid h_{t-1})\big)\Big]

The importance-weighted bound (Burda et al. 2016) runs :math:`K` independent posterior
trajectories ("particles") and averages their weights inside the log:

.. math::
    \log w^{(k)} = \sum_t \log p(x_t \mid z^{(k)}_t, h^{(k)}_{t-1}) + \log p(z^{(k)}_t \mid h^{(k)}_{t-1})
        - \log q(z^{(k)}_t \mid x_t, h^{(k)}_{t-1}), \qquad
    \mathcal L_K = \log \frac1K \sum_k w^{(k)}

:math:`\mathbb E[\mathcal L_1] = \mathcal L`, and :math:`\mathbb E[\mathcal L_K]` rises with
:math:`K` towards :math:`\log p(x_{1:T})`.

:class:`AutoregressiveRNN` is the same network with the latents taken out,
:math:`p(x_t \mid x_{<t}) = \mathcal N(\varphi_{\text{dec}}(h_{t-1}))`, whose exact
log-likelihood is the baseline of ``experiments/vrnn.py``.

Both models handle ONE sequence ``xs [t, f]``; batch with :func:`jax.vmap` (one key per
sequence). ``length`` (a scalar) marks the steps ``>= length`` as padding: they add nothing to
any bound, whatever they hold. Each step's noise comes from ``jax.random.fold_in(key, t)``, so
padding a sequence with more steps does not change the draws at the valid ones.

Shape letters as in :mod:`rnnjax.typing`: t time, f input features (``x_size``), z latent size,
h hidden, K particles.

References:
  Chung, Kastner, Dinh, Goel, Courville, Bengio, "A recurrent latent variable model for
  sequential data", NeurIPS 2015. Burda, Grosse, Salakhutdinov, "Importance weighted
  autoencoders", ICLR 2016. Kingma & Welling, "Auto-encoding variational Bayes", ICLR 2014.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from rnnjax._src import checks, masks, numerics
from rnnjax.cells import DenseParams, GRUCell
from rnnjax.heads import Dense
from rnnjax.layers import as_cell
from rnnjax.typing import Array, Params, PRNGKey

__all__ = [
    "VRNN",
    "AutoregressiveRNN",
    "AutoregressiveRNNParams",
    "HeadParams",
    "VRNNParams",
    "VRNNTerms",
    "gaussian_kl",
    "gaussian_log_prob",
]

_LOG_2PI = math.log(2.0 * math.pi)
_OUTPUTS = ("gaussian", "bernoulli")


# ----------------------------------------------------------------------------- distributions


def gaussian_log_prob(x: Array, loc: Array, scale: Array) -> Array:
    r"""Log-density of a diagonal Gaussian, summed over the last axis.

    .. math:: \log \mathcal N(x; \mu, \operatorname{diag}\sigma^2) = -\sum_i \Big[\log\sigma_i
        + \tfrac12 \log 2\pi + \tfrac{(x_i - \mu_i)^2}{2\sigma_i^2}\Big]

    Args:
      x: points ``[..., n]``.
      loc: means ``[..., n]``.
      scale: standard deviations ``[..., n]`` (positive).

    Returns:
      ``[...]``.

    Example:
        >>> float(gaussian_log_prob(jnp.zeros(2), jnp.zeros(2), jnp.ones(2)))  # -log(2 pi)
        -1.837877...
    """
    z = (x - loc) / scale
    return -jnp.sum(jnp.log(scale) + 0.5 * _LOG_2PI + 0.5 * z * z, axis=-1)


def gaussian_kl(loc_q: Array, scale_q: Array, loc_p: Array, scale_p: Array) -> Array:
    r"""Closed-form KL divergence between diagonal Gaussians, summed over the last axis.

    .. math:: \mathrm{KL}(\mathcal N(\mu_q, \sigma_q^2) \,\|\, \mathcal N(\mu_p, \sigma_p^2)) = \sum_i
        \log\frac{\sigma_{p,i}}{\sigma_{q,i}} + \frac{\sigma_{q,i}^2 + (\mu_{q,i} - \mu_{p,i})^2}{2\sigma_{p,i}^2}
        - \frac12

    Args:
      loc_q: means of ``q``, ``[..., n]``.
      scale_q: standard deviations of ``q``, ``[..., n]``.
      loc_p: means of ``p``, ``[..., n]``.
      scale_p: standard deviations of ``p``, ``[..., n]``.

    Returns:
      ``KL(q || p): [...]``, in nats.

    Example:
        >>> float(gaussian_kl(jnp.ones(1), jnp.ones(1), jnp.zeros(1), jnp.ones(1)))  # (1 - 0)^2 / 2
        0.5
    """
    ratio = scale_q / scale_p
    diff = (loc_q - loc_p) / scale_p
    return jnp.sum(-jnp.log(ratio) + 0.5 * (ratio * ratio + diff * diff) - 0.5, axis=-1)


def _bernoulli_log_prob(x: Array, logits: Array) -> Array:
    return jnp.sum(x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits), axis=-1)


# ----------------------------------------------------------------------------- parts


class HeadParams(NamedTuple):
    """An MLP with one hidden layer and a location head (and a scale head for a Gaussian)."""

    hidden: DenseParams  # w [in, d], b [d]
    loc: DenseParams  # w [d, n], b [n]  (the logits for a Bernoulli)
    scale: DenseParams | None  # w [d, n], b [n]; None for a Bernoulli


class VRNNParams(NamedTuple):
    phi_x: DenseParams  # w [f, e_x]: the input's features
    phi_z: DenseParams  # w [z, e_z]: the latent's features
    prior: HeadParams  # h -> (mu_0, sigma_0) [z]
    posterior: HeadParams  # [phi_x(x), h] -> (mu_z, sigma_z) [z]
    decoder: HeadParams  # [phi_z(z), h] -> (mu_x, sigma_x) [f]
    cell: Params  # the recurrent cell's params, inputs [phi_x(x), phi_z(z)] of size e_x + e_z


class VRNNTerms(NamedTuple):
    """Per-step parts of the ELBO: ``elbo = sum(log_likelihood - kl)``; zeros at padding steps."""

    log_likelihood: Array  # [t]  log p(x_t | z_t, h_{t-1}) at one posterior draw z_t
    kl: Array  # [t]  KL(q(z_t | x_t, h_{t-1}) || p(z_t | h_{t-1})), closed form


class AutoregressiveRNNParams(NamedTuple):
    phi_x: DenseParams  # w [f, e_x]
    decoder: HeadParams  # h -> (mu_x, sigma_x) [f]
    cell: Params  # the cell's params, inputs phi_x(x) of size e_x


@dataclasses.dataclass(frozen=True)
class _Head:
    """``u [..., in] -> (loc [..., n], scale [..., n] or None)`` through one hidden layer."""

    hidden_size: int
    size: int
    gaussian: bool
    activation: Callable
    min_scale: float

    def init(self, key: PRNGKey, input_size: int) -> HeadParams:
        k_h, k_l, k_s = jax.random.split(key, 3)
        hidden = Dense(self.hidden_size).init(k_h, input_size)
        loc = Dense(self.size).init(k_l, self.hidden_size)
        scale = Dense(self.size).init(k_s, self.hidden_size) if self.gaussian else None
        return HeadParams(hidden, loc, scale)

    def apply(self, params: HeadParams, u: Array) -> tuple[Array, Array | None]:
        a = Dense(self.hidden_size, activation=self.activation).apply(params.hidden, u)
        loc = Dense(self.size).apply(params.loc, a)
        if not self.gaussian:
            return loc, None
        return loc, jax.nn.softplus(Dense(self.size).apply(params.scale, a)) + self.min_scale


def _check_cell(cell, hidden_size: int):
    if cell is None:
        return GRUCell(hidden_size)
    cell = as_cell(cell)
    if cell.output_size != hidden_size:
        raise ValueError(f"cell: expected a cell with output size hidden_size={hidden_size}, got {cell.output_size}")
    return cell


def _check_common(model) -> None:
    checks.positive_int(model.x_size, "x_size")
    checks.positive_int(model.hidden_size, "hidden_size")
    for name in ("x_features", "dense_size"):
        if getattr(model, name) is None:
            object.__setattr__(model, name, model.hidden_size)
        checks.positive_int(getattr(model, name), name)
    object.__setattr__(model, "cell", _check_cell(model.cell, model.hidden_size))
    if model.output not in _OUTPUTS:
        raise ValueError(f"output: expected one of {_OUTPUTS}, got {model.output!r}")
    numerics.activation(model.activation)
    if not model.min_scale >= 0.0:
        raise ValueError(f"min_scale: expected a non-negative float, got {model.min_scale}")


def _start(cell, cell_params, dtype):
    """The initial carry and ``h_0`` (the carry's ``h`` if it has one, else zeros), in ``dtype``."""
    carry = jax.tree_util.tree_map(lambda v: v.astype(dtype), cell.initial_carry(cell_params))
    h = getattr(carry, "h", None)
    if h is None or h.shape != (cell.output_size,):
        h = jnp.zeros((cell.output_size,), dtype)
    return carry, h


def _prepare(model, params, params_type, xs, length):
    checks.params_type(params, params_type, model)
    xs = checks.sequence(xs, model.x_size, "xs")
    length = checks.length(length, xs.shape[0])
    dtype = numerics.compute_dtype(params, xs.dtype)
    valid = masks.valid_mask(length, xs.shape[0])
    return xs.astype(dtype), valid, dtype


def _masked(valid, new, old):
    return jax.tree_util.tree_map(lambda n, o: jnp.where(valid, n, o), new, old)


# ----------------------------------------------------------------------------- the VRNN


def _phi_x(model) -> Dense:
    """The input features of VRNN and AutoregressiveRNN alike."""
    return Dense(model.x_features, activation=numerics.activation(model.activation))


def _decoder(model) -> _Head:
    """The output distribution's head of VRNN and AutoregressiveRNN alike."""
    return _Head(
        model.dense_size,
        model.x_size,
        model.output == "gaussian",
        numerics.activation(model.activation),
        model.min_scale,
    )


@dataclasses.dataclass(frozen=True)
class VRNN:
    r"""Variational RNN: a latent :math:`z_t` with a learned prior at every step (Chung et al. 2015).

    See the module docstring for the equations. A frozen, hashable dataclass of
    hyper-parameters (a valid static argument of :func:`jax.jit`) with pure methods over
    :class:`VRNNParams`; every method handles ONE sequence.

    Args:
      x_size: observation size ``f``.
      z_size: latent size ``z``.
      hidden_size: the RNN's output size ``h``.
      x_features: size of :math:`\varphi_x(x)` (default ``hidden_size``).
      z_features: size of :math:`\varphi_z(z)` (default ``hidden_size``).
      dense_size: hidden width of the prior, posterior and decoder MLPs (default ``hidden_size``).
      cell: the recurrent cell :math:`f` (a cell, or a list of cells made into a
        :class:`~rnnjax.StackedCell`) with output size ``hidden_size``; default
        ``GRUCell(hidden_size)``.
      output: ``"gaussian"`` (diagonal, for real-valued ``x``) or ``"bernoulli"`` (``x`` in [0, 1]).
      activation: of the feature extractors and the MLPs' hidden layers (``"relu"``, as in the paper).
      min_scale: floor added to every softplus standard deviation.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from rnnjax.vrnn import VRNN
        >>> model = VRNN(x_size=2, z_size=4, hidden_size=16)
        >>> params = model.init(jax.random.key(0))
        >>> xs = jnp.ones((10, 2))
        >>> elbo, terms = model.elbo(params, xs, jax.random.key(1))
        >>> elbo.shape, terms.kl.shape
        ((), (10,))

    References:
      Chung et al., "A recurrent latent variable model for sequential data", NeurIPS 2015.
    """

    x_size: int
    z_size: int
    hidden_size: int
    _: dataclasses.KW_ONLY
    x_features: int | None = None
    z_features: int | None = None
    dense_size: int | None = None
    cell: Any = None
    output: str = "gaussian"
    activation: str | Callable = "relu"
    min_scale: float = 1e-3

    def __post_init__(self):
        _check_common(self)
        checks.positive_int(self.z_size, "z_size")
        if self.z_features is None:
            object.__setattr__(self, "z_features", self.hidden_size)
        checks.positive_int(self.z_features, "z_features")

    # the parts, as small frozen dataclasses
    def _phi_x(self) -> Dense:
        return _phi_x(self)

    def _phi_z(self) -> Dense:
        return Dense(self.z_features, activation=numerics.activation(self.activation))

    def _latent_head(self) -> _Head:
        return _Head(self.dense_size, self.z_size, True, numerics.activation(self.activation), self.min_scale)

    def _decoder(self) -> _Head:
        return _decoder(self)

    def init(self, key: PRNGKey) -> VRNNParams:
        """Random params (Glorot-uniform kernels, zero biases; the cell's own initializers).

        Returns:
          :class:`VRNNParams` in float32.

        Example:
            >>> params = VRNN(x_size=3, z_size=2, hidden_size=8).init(jax.random.key(0))
            >>> params.prior.loc.w.shape, params.decoder.loc.w.shape, params.cell.w_i.shape
            ((8, 2), (8, 3), (16, 24))
        """
        keys = jax.random.split(key, 6)
        h = self.hidden_size
        return VRNNParams(
            phi_x=self._phi_x().init(keys[0], self.x_size),
            phi_z=self._phi_z().init(keys[1], self.z_size),
            prior=self._latent_head().init(keys[2], h),
            posterior=self._latent_head().init(keys[3], self.x_features + h),
            decoder=self._decoder().init(keys[4], self.z_features + h),
            cell=self.cell.init(keys[5], self.x_features + self.z_features),
        )

    def _decoder_log_prob(self, params: VRNNParams, x: Array, fz: Array, h: Array) -> Array:
        loc, scale = self._decoder().apply(params.decoder, jnp.concatenate([fz, h]))
        return _bernoulli_log_prob(x, loc) if scale is None else gaussian_log_prob(x, loc, scale)

    def _posterior_run(self, params: VRNNParams, xs: Array, key: PRNGKey, length) -> tuple[Array, ...]:
        """One posterior trajectory: per-step ``log p(x|z,h)``, closed-form KL, ``log p(z|h) - log q(z|x,h)``."""
        xs, valid, dtype = _prepare(self, params, VRNNParams, xs, length)
        carry, h = _start(self.cell, params.cell, dtype)
        fxs = self._phi_x().apply(params.phi_x, xs)  # [t, e_x]: time-parallel

        def body(state, inp):
            carry, h = state
            x, fx, t, ok = inp
            prior_loc, prior_scale = self._latent_head().apply(params.prior, h)
            q_loc, q_scale = self._latent_head().apply(params.posterior, jnp.concatenate([fx, h]))
            eps = jax.random.normal(jax.random.fold_in(key, t), (self.z_size,), dtype)
            z = q_loc + q_scale * eps  # reparameterised draw from q(z_t | x_t, h_{t-1})
            fz = self._phi_z().apply(params.phi_z, z)
            log_lik = self._decoder_log_prob(params, x, fz, h)
            kl = gaussian_kl(q_loc, q_scale, prior_loc, prior_scale)
            log_ratio = gaussian_log_prob(z, prior_loc, prior_scale) - gaussian_log_prob(z, q_loc, q_scale)
            new_carry, new_h = self.cell.step(params.cell, carry, jnp.concatenate([fx, fz]))
            zero = jnp.zeros((), dtype)
            terms = tuple(jnp.where(ok, v, zero) for v in (log_lik, kl, log_ratio))
            return _masked(ok, (new_carry, new_h), (carry, h)), terms

        steps = jnp.arange(xs.shape[0])
        _, terms = lax.scan(body, (carry, h), (xs, fxs, steps, valid))
        return terms

    def elbo(self, params: VRNNParams, xs: Array, key: PRNGKey, *, length=None) -> tuple[Array, VRNNTerms]:
        r"""The evidence lower bound of one sequence, at one reparameterised posterior draw.

        .. math:: \mathcal L = \sum_{t < n} \log p(x_t \mid z_t, h_{t-1})
            - \mathrm{KL}(q(z_t \mid x_t, h_{t-1}) \,\|\, p(z_t \mid h_{t-1})), \qquad z_t \sim q

        An unbiased estimate of the ELBO whose gradient w.r.t. ``params`` (and ``xs``) is the
        reparameterisation gradient; the KL is in closed form (:func:`gaussian_kl`).

        Args:
          params: from :meth:`init`.
          xs: observations ``[t, f]``.
          key: PRNG key for the posterior draws.
          length: valid steps ``n`` (integer scalar); None: all ``t``.

        Returns:
          ``(elbo, terms)``: the bound (a scalar, nats) and :class:`VRNNTerms` ``[t]`` (zeros
          at steps ``>= length``).

        Example:
            >>> model = VRNN(x_size=2, z_size=2, hidden_size=8)
            >>> params = model.init(jax.random.key(0))
            >>> xs = jnp.zeros((4, 5, 2))  # a batch: vmap, one key per sequence
            >>> keys = jax.random.split(jax.random.key(1), 4)
            >>> elbos, terms = jax.vmap(model.elbo, (None, 0, 0))(params, xs, keys)
            >>> elbos.shape, terms.log_likelihood.shape
            ((4,), (4, 5))
        """
        log_lik, kl, _ = self._posterior_run(params, xs, key, length)
        return jnp.sum(log_lik - kl), VRNNTerms(log_lik, kl)

    def iwae(
        self, params: VRNNParams, xs: Array, key: PRNGKey, num_samples: int = 1, *, length=None
    ) -> tuple[Array, Array]:
        r"""The importance-weighted bound :math:`\mathcal L_K` with ``K = num_samples`` particles.

        .. math:: \mathcal L_K = \log \frac1K \sum_{k=1}^K \exp \sum_{t<n} \Big[\log p(x_t \mid z^{(k)}_t,
            h^{(k)}_{t-1}) + \log p(z^{(k)}_t \mid h^{(k)}_{t-1}) - \log q(z^{(k)}_t \mid x_t, h^{(k)}_{t-1})\Big]

        Each particle is a whole posterior trajectory (its own :math:`z` and :math:`h`), run in
        parallel with :func:`jax.vmap`. :math:`\mathcal L_1` equals the ELBO in expectation, and
        :math:`\mathbb E\,\mathcal L_K` rises with ``K`` (Burda et al. 2016).

        Args:
          params: from :meth:`init`.
          xs: observations ``[t, f]``.
          key: PRNG key; particle ``k`` uses ``jax.random.split(key, K)[k]``.
          num_samples: the number of particles ``K``.
          length: valid steps ``n``; None: all ``t``.

        Returns:
          ``(bound, log_weights)``: :math:`\mathcal L_K` (scalar, nats) and the particles' log
          importance weights ``[K]``.

        Example:
            >>> model = VRNN(x_size=2, z_size=2, hidden_size=8)
            >>> params = model.init(jax.random.key(0))
            >>> bound, log_w = model.iwae(params, jnp.zeros((5, 2)), jax.random.key(1), num_samples=3)
            >>> bool(bound >= log_w.max() - jnp.log(3.0))
            True

        References:
          Burda, Grosse, Salakhutdinov, "Importance weighted autoencoders", ICLR 2016.
        """
        checks.positive_int(num_samples, "num_samples")

        def log_weight(k):
            log_lik, _, log_ratio = self._posterior_run(params, xs, k, length)
            return jnp.sum(log_lik + log_ratio)

        log_w = jax.vmap(log_weight)(jax.random.split(key, num_samples))
        return jax.nn.logsumexp(log_w) - math.log(num_samples), log_w

    def sample(self, params: VRNNParams, key: PRNGKey, num_steps: int) -> tuple[Array, Array]:
        r"""Generate a sequence from the model: :math:`z_t \sim p(z_t \mid h_{t-1})`,
        :math:`x_t \sim p(x_t \mid z_t, h_{t-1})`, then :math:`h_t = f(h_{t-1}, [\varphi_x(x_t), \varphi_z(z_t)])`.

        Args:
          params: from :meth:`init`.
          key: PRNG key.
          num_steps: the length ``t`` (a Python int).

        Returns:
          ``(xs [t, f], zs [t, z])``, in the params' dtype.

        Example:
            >>> model = VRNN(x_size=2, z_size=3, hidden_size=8)
            >>> xs, zs = model.sample(model.init(jax.random.key(0)), jax.random.key(1), 6)
            >>> xs.shape, zs.shape
            ((6, 2), (6, 3))
        """
        checks.params_type(params, VRNNParams, self)
        checks.positive_int(num_steps, "num_steps")
        dtype = numerics.compute_dtype(params)
        carry, h = _start(self.cell, params.cell, dtype)

        def body(state, t):
            carry, h = state
            k_z, k_x = jax.random.split(jax.random.fold_in(key, t))
            prior_loc, prior_scale = self._latent_head().apply(params.prior, h)
            z = prior_loc + prior_scale * jax.random.normal(k_z, (self.z_size,), dtype)
            fz = self._phi_z().apply(params.phi_z, z)
            x = _draw(self._decoder().apply(params.decoder, jnp.concatenate([fz, h])), k_x)
            fx = self._phi_x().apply(params.phi_x, x)
            carry, h = self.cell.step(params.cell, carry, jnp.concatenate([fx, fz]))
            return (carry, h), (x, z)

        _, (xs, zs) = lax.scan(body, (carry, h), jnp.arange(num_steps))
        return xs, zs


def _draw(dist: tuple[Array, Array | None], key: PRNGKey) -> Array:
    loc, scale = dist
    if scale is None:  # Bernoulli logits
        return jax.random.bernoulli(key, jax.nn.sigmoid(loc)).astype(loc.dtype)
    return loc + scale * jax.random.normal(key, loc.shape, loc.dtype)


# ----------------------------------------------------------------------------- the baseline


@dataclasses.dataclass(frozen=True)
class AutoregressiveRNN:
    r"""The VRNN without latents: an RNN density model :math:`p(x_t \mid x_{<t})`, the VRNN's baseline.

    .. math::
        p(x_t \mid x_{<t}) = \mathcal N(\mu_{x,t}, \operatorname{diag}\sigma_{x,t}^2)\ \text{(or Bernoulli)},
        \quad [\mu_{x,t}, \sigma_{x,t}] = \varphi_{\text{dec}}(h_{t-1}), \qquad
        h_t = f(h_{t-1}, \varphi_x(x_t))

    Its output distribution is unimodal at every step (given the past), so it cannot fit
    data whose next step has several modes; a VRNN can, through :math:`z_t`.

    Args:
      x_size: observation size ``f``.
      hidden_size: the RNN's output size ``h``.
      x_features: size of :math:`\varphi_x(x)` (default ``hidden_size``).
      dense_size: hidden width of the output MLP (default ``hidden_size``).
      cell: the recurrent cell (default ``GRUCell(hidden_size)``).
      output: ``"gaussian"`` or ``"bernoulli"``.
      activation: of :math:`\varphi_x` and the MLP's hidden layer.
      min_scale: floor added to the softplus standard deviation.

    Example:
        >>> from rnnjax.vrnn import AutoregressiveRNN
        >>> model = AutoregressiveRNN(x_size=2, hidden_size=16)
        >>> params = model.init(jax.random.key(0))
        >>> log_lik, per_step = model.log_likelihood(params, jnp.ones((10, 2)))
        >>> per_step.shape
        (10,)
    """

    x_size: int
    hidden_size: int
    _: dataclasses.KW_ONLY
    x_features: int | None = None
    dense_size: int | None = None
    cell: Any = None
    output: str = "gaussian"
    activation: str | Callable = "relu"
    min_scale: float = 1e-3

    def __post_init__(self):
        _check_common(self)

    def _phi_x(self) -> Dense:
        return _phi_x(self)

    def _decoder(self) -> _Head:
        return _decoder(self)

    def init(self, key: PRNGKey) -> AutoregressiveRNNParams:
        """Random params, as :meth:`VRNN.init`.

        Example:
            >>> AutoregressiveRNN(x_size=3, hidden_size=8).init(jax.random.key(0)).decoder.loc.w.shape
            (8, 3)
        """
        k_x, k_d, k_c = jax.random.split(key, 3)
        return AutoregressiveRNNParams(
            phi_x=self._phi_x().init(k_x, self.x_size),
            decoder=self._decoder().init(k_d, self.hidden_size),
            cell=self.cell.init(k_c, self.x_features),
        )

    def log_likelihood(self, params: AutoregressiveRNNParams, xs: Array, *, length=None) -> tuple[Array, Array]:
        r"""The exact log-likelihood :math:`\sum_{t<n} \log p(x_t \mid x_{<t})` of one sequence.

        Args:
          params: from :meth:`init`.
          xs: observations ``[t, f]``.
          length: valid steps ``n``; None: all ``t``.

        Returns:
          ``(log_likelihood, per_step [t])`` in nats; ``per_step`` is zero at steps ``>= length``.

        Example:
            >>> model = AutoregressiveRNN(x_size=1, hidden_size=4)
            >>> params = model.init(jax.random.key(0))
            >>> total, per_step = model.log_likelihood(params, jnp.zeros((6, 1)), length=3)
            >>> per_step[3:].tolist()
            [0.0, 0.0, 0.0]
        """
        xs, valid, dtype = _prepare(self, params, AutoregressiveRNNParams, xs, length)
        carry, h = _start(self.cell, params.cell, dtype)
        fxs = self._phi_x().apply(params.phi_x, xs)

        def body(state, inp):
            carry, h = state
            x, fx, ok = inp
            loc, scale = self._decoder().apply(params.decoder, h)
            log_p = _bernoulli_log_prob(x, loc) if scale is None else gaussian_log_prob(x, loc, scale)
            new = self.cell.step(params.cell, carry, fx)
            return _masked(ok, new, (carry, h)), jnp.where(ok, log_p, jnp.zeros((), dtype))

        _, per_step = lax.scan(body, (carry, h), (xs, fxs, valid))
        return jnp.sum(per_step), per_step

    def sample(self, params: AutoregressiveRNNParams, key: PRNGKey, num_steps: int) -> Array:
        r"""Generate a sequence: :math:`x_t \sim p(x_t \mid x_{<t})`, fed back as the next input.

        Args:
          params: from :meth:`init`.
          key: PRNG key.
          num_steps: the length ``t``.

        Returns:
          ``xs [t, f]``.

        Example:
            >>> model = AutoregressiveRNN(x_size=2, hidden_size=8)
            >>> model.sample(model.init(jax.random.key(0)), jax.random.key(1), 6).shape
            (6, 2)
        """
        checks.params_type(params, AutoregressiveRNNParams, self)
        checks.positive_int(num_steps, "num_steps")
        dtype = numerics.compute_dtype(params)
        carry, h = _start(self.cell, params.cell, dtype)

        def body(state, t):
            carry, h = state
            x = _draw(self._decoder().apply(params.decoder, h), jax.random.fold_in(key, t))
            carry, h = self.cell.step(params.cell, carry, self._phi_x().apply(params.phi_x, x))
            return (carry, h), x

        _, xs = lax.scan(body, (carry, h), jnp.arange(num_steps))
        return xs
