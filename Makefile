# Two commands do all the set-up, each on a fresh clone with nothing activated:
#   make demo    set up (once) and run `foundry demo`
#   make test    set up (once) and run the test suite (what .ci/run calls)
# Set-up is idempotent: a virtual environment in $(VENV), the CPU build of torch pinned first (so
# nothing pulls a multi-GB CUDA build), then this package with all its extras. It is redone only
# when pyproject.toml changes. Use another environment with `make test VENV=/path/to/venv`.

VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
DEMO_ARGS ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.foundry-installed

.PHONY: setup demo test clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(TORCH)
	$(PY) -m pip install -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/foundry demo $(DEMO_ARGS)

test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q tests

clean-venv:
	rm -rf $(VENV)
