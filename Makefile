# Each target creates .venv if it is missing and installs what it needs (once; again when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test test-slow test-accelerator bench bench-gpu experiments docs lint format clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# `pip install torch==2.13.0` takes the CPU wheel on this machine kind; see README for other machines.
$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

$(VENV)/.installed-base: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-bench: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	touch $@

$(VENV)/.installed-docs: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[docs]"
	touch $@

demo: $(VENV)/.installed-base
	$(VENV)/bin/rnnjax demo

test: $(VENV)/.installed-dev
	$(PY) -m pytest -n 2 -q $(PYTEST_ARGS)

test-slow: $(VENV)/.installed-dev
	$(PY) -m pytest -n 2 -q --runslow -m slow $(PYTEST_ARGS)

# The default suite with the GPU's unroll defaults (hoisted path, unroll 32) on this machine's backend:
# the accelerator path for every test, not only the ones that run both paths (13 minutes on 2 cores).
test-accelerator: $(VENV)/.installed-dev
	$(PY) -m pytest -n 2 -q --accelerator-defaults tests/ $(PYTEST_ARGS)

# Run on an idle machine: a concurrent job distorts every number. Takes about half an hour on 2 cores.
bench: $(VENV)/.installed-bench
	$(PY) benchmarks/peers.py --configs S M L
	$(PY) benchmarks/remat_memory.py
	$(PY) benchmarks/parallel_scan.py
	$(PY) benchmarks/parallel_scaling.py
	$(PY) benchmarks/decode.py
	$(PY) benchmarks/train_overhead.py
	$(PY) benchmarks/features_cost.py
	$(PY) benchmarks/report.py

# On a machine with a GPU, with jax and torch built for CUDA in .venv (see README): the test suite on the GPU,
# then about 6 minutes of benchmarks (benchmarks/results/gpu.json), then docs/performance.md again.
bench-gpu: $(VENV)/.installed-bench
	$(PY) benchmarks/gpu.py --tests
	$(PY) benchmarks/report.py

# Each writes experiments/results/<name>.json and PNGs (copied into docs/figures/); minutes each on 2 cores.
experiments: $(VENV)/.installed-dev
	$(PY) experiments/long_range_memory.py
	$(PY) experiments/gradient_clipping.py
	$(PY) experiments/language_models.py
	$(PY) experiments/beam_width.py
	$(PY) experiments/sunspots.py
	$(PY) experiments/transactions.py
	$(PY) experiments/vrnn.py
	$(PY) experiments/local_recurrence.py
	$(PY) experiments/captioning.py
	$(PY) experiments/speech_ctc.py

docs: $(VENV)/.installed-docs
	$(VENV)/bin/mkdocs build --strict

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check rnnjax tests benchmarks experiments
	$(VENV)/bin/ruff format --check rnnjax tests benchmarks experiments

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format rnnjax tests benchmarks experiments
	$(VENV)/bin/ruff check --fix rnnjax tests benchmarks experiments

clean:
	rm -rf $(VENV) site build *.egg-info
