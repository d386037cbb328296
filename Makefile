# Two commands run everything: `make dev` (the whole stack) and `make test`.
# Both create .venv and install the project into it when missing or stale.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.recur-installed

.PHONY: dev test test-fast lint fmt install clean-data

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(BIN)/recur dev

test: $(STAMP)
	$(BIN)/pytest

# Workflow tests on Temporal's time-skipping test server with fake activities: no
# PostgreSQL, Stripe or dev server, seconds in all (tests/workflows/fast). The hypothesis
# and schemathesis plugins, which they do not use, would take longer to load than they run.
test-fast: $(STAMP)
	$(BIN)/pytest -m fast -p no:hypothesispytest -p no:schemathesis tests/workflows/fast

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean-data:
	rm -rf .data
