# dmrelay: `make run` starts everything locally, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint format bench install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

run: install ## web + worker + private Redis + DmTracker sandbox, Ctrl-C stops all
	$(BIN)/dmrelay run

test: install ## the whole suite against a private redis-server and the sandbox
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install ## benchmarks (not part of the test suite)
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.ack_latency

clean:
	rm -rf $(VENV) .dmrelay .pytest_cache .mypy_cache .ruff_cache *.egg-info
