# dataplane: set-up, run, test, bench.  `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SCENARIO ?= scenarios/networkpolicy-lab.yaml

.PHONY: run test lint types pytest bench clean fuzz-kernel

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/dataplane run $(SCENARIO)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

test: lint types pytest

bench: $(STAMP)
	$(BIN)/python -m bench

# random scenarios verified on this kernel (root): make fuzz-kernel SEEDS=1-1000
SEEDS ?= 1-100
fuzz-kernel: $(STAMP)
	$(BIN)/python -m dataplane.kernel.generate --seeds $(SEEDS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
