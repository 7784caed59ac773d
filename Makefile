# Two commands set everything up on a fresh machine:  `make demo`  and  `make test`.
# Both create the virtual environment and install what they need.
#
# torch is installed first, on its own, so that nothing else pulls a different build.
# Default: the CPU build 2.13.0. For a GPU, pick a CUDA build, e.g.
#   make test TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# two cores: one OpenMP thread per core, never more
export OMP_NUM_THREADS ?= 2

.PHONY: venv demo test test-fast lint bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q "$(TORCH)" $(TORCH_PIP_ARGS)
	$(PIP) install -q -e ".[train,text,test]"
	touch $@

demo: venv
	$(VENV)/bin/rnnlab demo

test: venv
	$(PY) -m pytest -q

# the unit tests only: skips the integration tests marked slow (end-to-end runs, subprocesses)
test-fast: venv
	$(PY) -m pytest -q -m "not slow"

lint: venv
	$(PY) -m ruff --version >/dev/null 2>&1 || $(PIP) install -q ruff
	$(PY) -m ruff check src tests benchmarks

bench: venv
	$(PY) benchmarks/layers.py

clean:
	rm -rf $(VENV) .pytest_cache src/*.egg-info
