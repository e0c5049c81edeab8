# The README's two commands: `make run` sets up and serves TextPay on SQLite; `make test` sets up
# and runs the test suite. Both create .venv from pyproject.toml the first time (and again when
# pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# In development, `textpay serve` fills in well-known tokens (admin API: dev-token) when none is
# set, so that the README's curl examples and `textpay chat` work at once.
run: $(STAMP)
	$(BIN)/textpay serve

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

check: test lint

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache textpay.db textpay.db-*
