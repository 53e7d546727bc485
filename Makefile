# Two commands: `make demo` and `make test`. Both set up .venv/ themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# PyTorch is optional; where its CPU wheel lies on disk, the tests use it (a plain
# `pip install torch` would download a multi-GB CUDA build).
TORCH_WHEEL := $(wildcard /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl)

.PHONY: demo test lint typecheck pytest bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# The install compiles coralx/store/_kernels.c (hatch_build.py): a change to either reinstalls.
KERNELS := coralx/store/_kernels.c hatch_build.py

$(VENV)/.installed: $(PY) pyproject.toml Makefile $(KERNELS)
	$(PIP) install --quiet -e '.[ui]'
	touch $@

# torch first, then the dev extra under a constraint that keeps it: lightning and
# transformers require torch, and pip would otherwise fetch a CUDA build.
$(VENV)/.installed-dev: $(PY) pyproject.toml Makefile $(KERNELS)
ifneq ($(TORCH_WHEEL),)
	$(PIP) install --quiet '$(TORCH_WHEEL)'
	echo 'torch==2.13.0' > $(VENV)/torch-constraint.txt
else
	: > $(VENV)/torch-constraint.txt
endif
	$(PIP) install --quiet -c $(VENV)/torch-constraint.txt -e '.[dev,ui,ray]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	rm -rf demo-store
	$(PY) examples/demo.py --keep demo-store

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m codespell_lib coralx docs README.md

typecheck: $(VENV)/.installed-dev
	$(PY) -m mypy

pytest: $(VENV)/.installed-dev
	$(PY) -m pytest -q

test: lint typecheck pytest

bench: $(VENV)/.installed-dev
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
