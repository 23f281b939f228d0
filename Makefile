# latent-digits-lab. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= default
SWEEPS ?= experiments/cnn_hparams.toml experiments/cnn_ablations.toml experiments/autoencoder.toml
SWEEP_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install experiments results test lint clean clean-runs

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: PROFILE=$(PROFILE) (or full), LAB_DATA_DIR=folder with MNIST/raw, LAB_RUNS_DIR, PYTHON=$(PYTHON)"
	@echo "             SWEEP_ARGS='--executor ray --address auto' (make experiments on a Ray cluster)"

install: $(STAMP) ## create .venv and install the lab with its dev tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

experiments: install ## train the sweeps in experiments/ (PROFILE=default) into runs and tables; resumes if stopped
	$(PY) -m lab sweep $(SWEEPS) --profile $(PROFILE) $(SWEEP_ARGS)

results: install ## rebuild the tables (and report artifacts) of the sweeps `make experiments` trains (PROFILE=...) from the run folders
	$(PY) -m lab results $(SWEEPS) --profile $(PROFILE)

.PHONY: verify
verify: install ## check every run folder in experiments/runs (LAB_RUNS_DIR): config, weights, metrics agree
	$(PY) -m lab verify

.PHONY: bench
bench: install ## time to 99% against the pytorch/examples baseline, throughput, latency (BENCH_ARGS=--quick)
	$(PY) -m lab.tools.bench $(BENCH_ARGS)

test: install ## the fast tests (about 1-2 min on 2 cores; skips those marked slow); real MNIST: LAB_DATA_DIR offline
	$(PY) -m pytest -m "not slow"

.PHONY: test-full
test-full: install ## every test, slow ones too (trainings, app servers, the kill test): what CI runs
	$(PY) -m pytest

lint: install ## ruff
	$(PY) -m ruff check lab tests demo

.PHONY: readme
readme: install ## rewrite the README's results block from the committed tables (a test fails when it is stale)
	$(PY) -m lab.tools.readme

.PHONY: report
REPORT_INPUTS = $${LAB_RESULTS_DIR:-experiments/results} lab report/_quarto.yml
report: install ## render the Quarto report into report/_site/ (pages re-run when the tables or lab/ changed)
	@PATH="$(abspath $(VENV))/bin:$$PATH"; command -v quarto >/dev/null 2>&1 || { \
	  echo "make report needs Quarto, which is not installed. Install it with"; \
	  echo "  $(PY) -m pip install quarto-cli      (or: pip install quarto-cli)"; \
	  echo "or with the installer from https://quarto.org/docs/get-started/"; exit 1; }
	@# freeze: auto re-runs a page only when its .qmd changed; new tables must re-run them all
	@if [ -n "$$(find $(REPORT_INPUTS) -newer report/_freeze 2>/dev/null | head -1)" ]; then rm -rf report/_freeze; fi
	PATH="$(abspath $(VENV))/bin:$$PATH" QUARTO_PYTHON="$(abspath $(PY))" quarto render report
	@echo "report: open report/_site/index.html"

.PHONY: screenshots
screenshots: install ## run every report page without Quarto into report/_screens/: HTML, full-page PNG, JSON of checks
	$(PY) -m lab.tools.screenshots $(SCREENSHOT_ARGS)

clean: ## remove caches and build files (keeps .venv, data and runs)
	rm -rf .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

clean-runs: ## remove experiments/runs (trained checkpoints; the committed tables stay)
	rm -rf experiments/runs

# The demo (demo/app.py) and its Hugging Face Space
DEMO_SWEEPS := demo/weights_classifier.toml demo/weights_autoencoder.toml demo/weights_map.toml
DEMO_RUNS := build/demo-weights/runs
.PHONY: demo demo-weights demo-accuracy space

demo: install ## run the demo on http://127.0.0.1:7860 (ARGS="--checkpoints experiments/runs" for your own runs)
	$(PY) demo/app.py $(ARGS)

# --precision fp32, as the shipped weights were trained: auto picks bf16 on some CPUs and GPUs, and the same run
# ids would then hold other weights
demo-weights: install ## train the demo's shipped weights into demo/checkpoints (minutes), measure its unsure rule, save its example digits
	$(PY) -m lab sweep $(DEMO_SWEEPS) --precision fp32 --runs-dir $(DEMO_RUNS) --results-dir build/demo-weights/results
	$(PY) -m lab ship-demo-weights $(DEMO_SWEEPS) --runs-dir $(DEMO_RUNS)
	$(PY) -m lab demo-unsure
	$(PY) -m lab demo-examples

demo-accuracy: install ## the demo's accuracy and latency on 2,000 MNIST test digits redrawn as on its canvas
	$(PY) -m lab demo-accuracy --digits 2000 --min-accuracy 0.98 --json build/demo-accuracy.json \
		--figure build/demo-accuracy.png

space: install ## assemble build/space, the Hugging Face Space (then: python -m lab push-space --repo USER/NAME)
	$(PY) -m lab space
