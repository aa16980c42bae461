# Entry points (see README): `make demo` and `make test` for a fresh machine; `make lint` and
# `make test-fast` while working. All install into the project-local virtualenv .venv and
# reinstall when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,celery,dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/contact-import demo

# The whole suite, slow tests included, on every core; --dist loadgroup keeps tests that share a
# live server on one worker.
test: $(VENV)/.installed
	$(BIN)/python -m pytest -n auto --dist loadgroup -ra $(PYTEST_ARGS)

# While working: every test of one module or function (e2e/ runs whole imports and is left out), with no
# PostgreSQL, no servers and nothing slow; about 30 s on 2 cores.
test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -n auto -q -m "not postgres and not servers and not slow" \
		--ignore=contact_import_tests/e2e $(PYTEST_ARGS)

# Style, import order, formatting and types of the package, its tests and the benchmark.
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
