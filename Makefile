# Thin wrappers over the documented commands (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint format migrate check-ledger clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: install  ## migrate the configured (default: embedded SQLite) database and serve
	scripts/run-local.sh

test: install  ## lint, type-check and run every test against the local MariaDB
	scripts/test.sh

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

migrate: install
	$(PY) -m products_service.cli migrate

check-ledger: install
	$(PY) -m products_service.cli check-ledger

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
