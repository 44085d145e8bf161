# S^3 artifact. `make` lists the targets.
VENV ?= .venv
PY := $(VENV)/bin/python
.DEFAULT_GOAL := help

.PHONY: help install demo test test-fast repro bench gpu-wheels gpu-bench lab clean-demo

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed ## create .venv with the pinned packages (about 2 minutes)

demo: install ## train the tiny demo model, then run the whole pipeline offline on the demo world (runs/demo)
	$(PY) -m s3.demo

test: install ## run the test suite (CPU, offline, a few minutes)
	$(PY) -m pytest

test-fast: install ## the test suite without the end-to-end pipeline runs
	$(PY) -m pytest -m "not slow"

repro: install ## check the run in seconds (s3 check), then regenerate the paper results (GPU, datasets, weights)
	$(PY) -m s3 check --params params.yaml
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/dvc repro

bench: install ## scoring benchmark (N=50,000 images, C=1000 classes, CPU)
	$(PY) bench/scoring.py

gpu-wheels: ## download the wheels a GPU session installs there (bench/gpu_wheels.sh; needs PyPI, not a GPU)
	bash bench/gpu_wheels.sh $(if $(wildcard $(PY)),$(PY),python3)

gpu-bench: ## every GPU measurement in one run, written to gpu-session/ (bench/gpu_session.sh; on a GPU machine)
	bash bench/gpu_session.sh

lab: install ## open JupyterLab on the demo workspace (after make demo), else on the repository
	$(VENV)/bin/jupyter lab --notebook-dir=$(if $(wildcard runs/demo/dvc.lock),runs/demo,.)

clean-demo: ## delete the demo workspace
	rm -rf runs/demo
