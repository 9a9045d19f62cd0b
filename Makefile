# The two commands the README promises: `make demo` and `make test`.
# Everything they need is installed here, into .venv/ (and .letta/ for the local Letta stack).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python

.PHONY: install demo test lint typecheck unit browsers redis node-clients stack-up stack-down bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $@

install: $(BIN)/.installed

browsers:
	bash scripts/install-chromium.sh

# Debian's redis-server: the local stack runs its own, for the Letta server's background streams.
redis:
	bash scripts/install-redis.sh

# @ag-ui/client and ai for tests/protocols (the tests also install them on first use).
node-clients:
	bash scripts/install-node-clients.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest

test: install browsers redis node-clients lint typecheck
	$(BIN)/pytest

demo: install redis
	$(BIN)/orchestrator demo

bench: install
	$(PY) bench/merge.py --json --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
