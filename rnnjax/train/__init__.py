"""Training: jitted train steps, gradients through time (BPTT, truncated BPTT, RTRL), diagnostics, ``fit``.

- :mod:`~rnnjax.train.steps`: :func:`make_train_step`, :func:`make_stateful_train_step`.
- :mod:`~rnnjax.train.gradients`: :func:`sequence_loss`, :func:`bptt_grad`,
  :func:`truncated_bptt_grad`, :func:`rtrl_grad`; a per-step loss ``step_loss(y_t, target_t)``
  summed over steps is the quantity all three differentiate (the tests check them against
  each other); each takes ``length`` for a padded sequence (the padding adds no loss), and
  truncated BPTT takes any number of steps.
- :mod:`~rnnjax.train.diagnostics`: :func:`carry_gradient_norms`, :func:`jacobian_spectral_radius`.
- :mod:`~rnnjax.train.fit`: :func:`fit`, :func:`restore_checkpoint`, GPU determinism
  (:func:`deterministic_xla_flags`, :func:`is_deterministic`).
"""

from rnnjax.train.diagnostics import carry_gradient_norms, jacobian_spectral_radius
from rnnjax.train.fit import (
    DETERMINISTIC_XLA_FLAG,
    FitResult,
    deterministic_xla_flags,
    fit,
    is_deterministic,
    restore_checkpoint,
)
from rnnjax.train.gradients import StepLoss, bptt_grad, rtrl_grad, sequence_loss, truncated_bptt_grad
from rnnjax.train.steps import make_stateful_train_step, make_train_step

__all__ = [
    "DETERMINISTIC_XLA_FLAG",
    "FitResult",
    "StepLoss",
    "bptt_grad",
    "carry_gradient_norms",
    "deterministic_xla_flags",
    "fit",
    "is_deterministic",
    "jacobian_spectral_radius",
    "make_stateful_train_step",
    "make_train_step",
    "restore_checkpoint",
    "rtrl_grad",
    "sequence_loss",
    "truncated_bptt_grad",
]
