# latent-digits-lab. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= default
SWEEPS ?= experiments/cnn_hparams.toml experiments/cnn_ablations.toml experiments/autoencoder.toml

.DEFAULT_GOAL := help
.PHONY: help install experiments results test lint clean clean-runs

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: PROFILE=$(PROFILE) (or full), LAB_DATA_DIR=folder with MNIST/raw, LAB_RUNS_DIR, PYTHON=$(PYTHON)"

install: $(STAMP) ## create .venv and install the lab with its dev tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

experiments: install ## train the sweeps in experiments/ (PROFILE=default) into runs and tables; resumes if stopped
	$(PY) -m lab sweep $(SWEEPS) --profile $(PROFILE)

results: install ## rebuild experiments/results/*.csv from the run folders
	$(PY) -m lab results --profile $(PROFILE)

.PHONY: bench
bench: install ## time to 99% against the pytorch/examples baseline, throughput, latency (BENCH_ARGS=--quick)
	$(PY) -m lab.bench $(BENCH_ARGS)

test: install ## run the tests (real MNIST: set LAB_DATA_DIR when offline)
	$(PY) -m pytest

lint: install ## ruff
	$(PY) -m ruff check lab tests

clean: ## remove caches and build files (keeps .venv, data and runs)
	rm -rf .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

clean-runs: ## remove experiments/runs (trained checkpoints; the committed tables stay)
	rm -rf experiments/runs
