"""Repository-wide pytest set-up (tests/ and the doctests in rnnjax/): strict dtype promotion, full
float32 matmuls, deterministic GPU kernels, --runslow."""

import os

import jax
import pytest

from rnnjax.train import deterministic_xla_flags

# Run to run reproducible kernels on a GPU (CPU and TPU are already): read when the backend starts,
# after this; importing rnnjax starts none.
os.environ["XLA_FLAGS"] = deterministic_xla_flags(os.environ.get("XLA_FLAGS"))
jax.config.update("jax_numpy_dtype_promotion", "strict")
# The precision policy: tests compare two ways of computing the same thing, so every float32 matmul
# is full float32 on every backend (the default is TF32 on recent NVIDIA GPUs and one bfloat16 pass
# on TPU; it is full float32 on CPU already). Accuracy at the backend's default precision is
# measured separately (tests/test_precision.py), with cells built with precision="default".
jax.config.update("jax_default_matmul_precision", "highest")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")
    parser.addoption(
        "--accelerator-defaults",
        action="store_true",
        default=False,
        help="unroll with the GPU's defaults on every backend (hoisted path, unroll 32, the weight gradient's "
        "place, the fused kernel): the accelerator path for the whole suite on the CPU",
    )


def pytest_configure(config):
    if config.getoption("--accelerator-defaults"):
        from rnnjax import recurrence

        recurrence.HOIST[jax.default_backend()] = recurrence.HOIST["gpu"]
        recurrence.UNROLL_FACTORS[jax.default_backend()] = recurrence.UNROLL_FACTORS["gpu"]
        recurrence.DEFER_WEIGHT_GRADIENT[jax.default_backend()] = recurrence.DEFER_WEIGHT_GRADIENT["gpu"]
        recurrence.FUSED_KERNEL[jax.default_backend()] = recurrence.FUSED_KERNEL["gpu"]


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
