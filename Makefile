# Two commands set everything up on a fresh machine:  `make demo`  and  `make test`.
# Both create the virtual environment and install what they need.
#
# torch is installed first, on its own, so that nothing else pulls a different build:
# - Linux without an NVIDIA GPU (no nvidia-smi): the CPU build, from PyTorch's CPU index (the default index
#   serves Linux the CUDA build, several GB); where that index cannot be reached, from the default index.
# - Linux with an NVIDIA GPU: the default index's build, which is the CUDA one.
# - macOS and Windows: the default index (its builds there are the CPU/MPS ones).
# TORCH_PIP_ARGS overrides all of this, e.g. a chosen CUDA build:
#   make test TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cu128"
# Threads: OMP_NUM_THREADS when set, else torch's default (one per core).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# the extras the demo and the tests need (tensorboard is left out: `pip install -e ".[all]"` adds it)
EXTRAS ?= train,text,forecast,speech,serve,export,peers,test
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CPU_ONLY_LINUX := $(shell [ "$$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1 && echo yes)

# System programs the tests use: chromium (the HTML report and web-page tests, driven headless) and espeak-ng
# (the speech task's embedded spoken digits). `make test` installs the missing ones with apt-get (Debian/Ubuntu;
# as root, or through sudo); elsewhere it stops and names them.
SYSTEM_PACKAGES := $(foreach p,chromium espeak-ng,$(if $(shell command -v $(p) 2>/dev/null),,$(p)))
SUDO := $(if $(shell [ "$$(id -u)" = 0 ] && echo root),,sudo)

.PHONY: venv system-packages demo test test-fast lint bench bench-peers clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
ifneq ($(TORCH_PIP_ARGS),)
	$(PIP) install -q "$(TORCH)" $(TORCH_PIP_ARGS)
else ifeq ($(CPU_ONLY_LINUX),yes)
	$(PIP) install -q "$(TORCH)" --index-url "$(TORCH_CPU_INDEX)" --timeout 15 --retries 1 \
		|| $(PIP) install -q "$(TORCH)"
else
	$(PIP) install -q "$(TORCH)"
endif
	$(PIP) install -q -e ".[$(EXTRAS)]"
	touch $@

demo: venv
	$(VENV)/bin/rnnlab demo

system-packages:
ifneq ($(strip $(SYSTEM_PACKAGES)),)
	@command -v apt-get >/dev/null 2>&1 || { echo "the tests need: $(SYSTEM_PACKAGES); install them with your package manager"; exit 1; }
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES) \
		|| { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES); }
endif

test: venv system-packages
	$(PY) -m pytest -q

# the unit tests only: skips the integration tests marked slow (end-to-end runs, subprocesses)
test-fast: venv system-packages
	$(PY) -m pytest -q -m "not slow"

lint: venv
	$(PY) -m ruff --version >/dev/null 2>&1 || $(PIP) install -q ruff
	$(PY) -m ruff check src tests benchmarks

bench: venv
	$(PY) benchmarks/layers.py

bench-peers: venv
	$(PY) benchmarks/peers.py
	$(PY) benchmarks/bf16_textgen.py

clean:
	rm -rf $(VENV) .pytest_cache src/*.egg-info
