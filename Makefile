# Thin wrappers over the documented commands (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run stop status test lint format migrate check-ledger rebuild-rollups seed clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: install  ## migrate, load demo data once, start both services (./docker-manager.sh start)
	scripts/run-local.sh

stop:  ## stop both services (./docker-manager.sh stop)
	./docker-manager.sh stop

status:  ## is each service up? (./docker-manager.sh status)
	./docker-manager.sh status

test: install  ## lint, type-check and run every test against the local MariaDB
	scripts/test.sh

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .
	scripts/lint-js.sh

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

migrate: install
	$(PY) -m products_service.cli migrate

check-ledger: install
	$(PY) -m products_service.cli check-ledger

rebuild-rollups: install
	$(PY) -m sales_service.cli rebuild-rollups

seed: install  ## load the demo data (again) into the configured database
	./docker-manager.sh seed

clean:  ## stop the services, then remove the venv, var/ (with the SQLite database) and caches
	./docker-manager.sh stop
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
