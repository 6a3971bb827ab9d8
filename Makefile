# goldthread: the two quick-start commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CHECKOV_VENV ?= .venv-checkov

.PHONY: demo test test-fast fuzz lint schema bench clean audit

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt -e .
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt -e .
	touch $@ $(VENV)/.runtime

## demo: create .venv, install, and run the demo on the embedded defaults (no cloud, nothing configured);
## DEMO_ARGS passes options, e.g. DEMO_ARGS=--force to reset a home holding data the demo did not write
DEMO_ARGS ?=
demo: $(VENV)/.runtime
	$(BIN)/goldthread demo $(DEMO_ARGS)

## test: install what the tests need, start what they need (the tests start the emulators), run everything
test: $(VENV)/.dev
	bash tests/support/system_deps.sh
	$(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory audit

## audit: pip-audit over the pinned requirements; fails on a known vulnerability, passes saying "NOT AUDITED" when
## the advisory data cannot be reached (tests/reliability/audit.py)
audit: $(VENV)/.dev
	$(BIN)/python -m tests.reliability.audit requirements.txt requirements-dev.txt

## fuzz: the property and fuzz tests on fresh random examples (the suite pins its examples; pin what this finds),
## and the idempotency state machine searched deep (STATEFUL_EXAMPLES sequences of up to STATEFUL_STEPS steps)
STATEFUL_EXAMPLES ?= 60
STATEFUL_STEPS ?= 25
fuzz: $(VENV)/.dev
	GOLDTHREAD_HYPOTHESIS_PROFILE=explore GOLDTHREAD_STATEFUL_EXAMPLES=$(STATEFUL_EXAMPLES) \
	GOLDTHREAD_STATEFUL_STEPS=$(STATEFUL_STEPS) $(BIN)/python -m pytest -q \
		tests/test_models.py tests/test_fees.py tests/test_barriers_property.py tests/test_fast_paths.py \
		tests/reliability/test_fuzz_validators.py tests/reliability/test_idempotency_stateful.py

## test-fast: everything except the slow, emulator and browser tests
test-fast: $(VENV)/.dev
	$(BIN)/python -m pytest -q -m "not slow and not emulator and not browser"

## lint: ruff, mypy on shared/, the import layers (lint-imports, contracts in .importlinter), generated files
## fresh, terraform fmt, checkov over terraform/ (offline; the accepted findings and their reasons are in
## terraform/.checkov.yaml)
lint: $(VENV)/.dev $(CHECKOV_VENV)/.installed
	$(BIN)/ruff check shared functions tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/goldthread schema check
	terraform fmt -check -recursive terraform
	$(CHECKOV_VENV)/bin/checkov --config-file terraform/.checkov.yaml

# checkov in its own virtualenv: its pins conflict with the runtime's (requirements-checkov.txt).
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/pip install -q -r requirements-checkov.txt
	touch $@

## schema: regenerate BigQuery schema files, DuckDB DDL and docs/schema.md from the models
schema: $(VENV)/.runtime
	$(BIN)/goldthread schema generate

## bench: the benchmark command (see bench/README.md); BENCH_ARGS passes options, e.g. BENCH_ARGS="--sizes 10000"
bench: $(VENV)/.bench
	$(BIN)/python -m bench $(BENCH_ARGS)

$(VENV)/.bench: requirements-bench.txt $(VENV)/.dev
	$(BIN)/pip install -q -r requirements-bench.txt
	touch $@

clean:
	rm -rf .goldthread .pytest_cache .mypy_cache .ruff_cache
