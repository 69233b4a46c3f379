# dmrelay: `make run` starts everything locally, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# The pinned, hashed locks (make lock): bootstrap.txt is the installer (pip, setuptools), installed
# first so no step depends on the pip a Python bundles; main.txt is what runs in production, dev.txt
# adds the tools.
BOOTSTRAP_LOCK := requirements/bootstrap.txt
LOCK := requirements/main.txt
DEV_LOCK := requirements/dev.txt
COMPILE := $(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
	--no-emit-index-url --no-emit-find-links --upgrade

.PHONY: run test test-slow fuzz lint format bench bench-all install install-check lock audit clean

$(BIN)/.installed: pyproject.toml $(BOOTSTRAP_LOCK) $(DEV_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r $(BOOTSTRAP_LOCK)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(BIN)/.installed

# A fresh venv from the Python on PATH, as on a new machine: the installer's lock, then both locks
# with hashes (the image's and make install's); and the Heroku file with the venv's own pip.
CHECK_VENV := $(shell mktemp -u -d /tmp/dmrelay-install-check.XXXXXX)
install-check: ## prove both locks install with --require-hashes into a fresh venv, whatever pip it bundles
	$(PYTHON) -m venv $(CHECK_VENV)/stock
	$(CHECK_VENV)/stock/bin/python -m pip install --quiet --disable-pip-version-check --dry-run \
		--report $(CHECK_VENV)/heroku.json -r requirements.txt
	$(PYTHON) -m venv $(CHECK_VENV)/locked
	$(CHECK_VENV)/locked/bin/python -m pip install --quiet --disable-pip-version-check \
		--require-hashes -r $(BOOTSTRAP_LOCK)
	$(CHECK_VENV)/locked/bin/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(CHECK_VENV)/locked/bin/python -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	rm -rf $(CHECK_VENV)

lock: install ## re-resolve every pin to the newest release pyproject.toml allows, with hashes
	$(COMPILE) --output-file $(BOOTSTRAP_LOCK) requirements/bootstrap.in
	$(COMPILE) --extra sentry --output-file $(LOCK) pyproject.toml
	$(COMPILE) --extra dev --extra sentry --constraint $(LOCK) --output-file $(DEV_LOCK) pyproject.toml
	$(BIN)/python requirements/heroku.py $(LOCK) requirements.txt

audit: install ## known vulnerabilities in the locked dependencies (pip-audit)
	$(BIN)/python requirements/audit.py $(DEV_LOCK)

run: install ## web + worker + private Redis + DmTracker sandbox, Ctrl-C stops all
	$(BIN)/dmrelay run

test: install ## the suite against a private redis-server and the sandbox (the slow runs apart)
	$(BIN)/python -m pytest -m "not slow"

test-slow: install ## the long fault, soak and formation runs (CI runs them after make test)
	$(BIN)/python -m pytest -m slow || [ $$? -eq 5 ]  # 5: no test is marked slow

fuzz: install ## Schemathesis's long profile against every route (about 10,000 cases, 3-4 minutes)
	DMRELAY_FUZZ=long $(BIN)/python -m pytest -p no:cacheprovider --timeout 900 \
		tests/integration/test_contract_fuzz.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install ## the performance figures beside their baselines, one table (QUICK=1: under 3 minutes)
	$(BIN)/python -m bench.suite $(if $(QUICK),--quick)

bench-all: bench ## every benchmark, each with its own table (about 40 minutes)
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.ack_latency
	$(BIN)/python -m bench.answer_wait
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.queued_memory
	$(BIN)/python -m bench.front_door
	$(BIN)/python -m bench.delivery_costs

clean:
	rm -rf $(VENV) .dmrelay .pytest_cache .mypy_cache .ruff_cache *.egg-info
