#!/usr/bin/env bash
# The test command: format check, lint, types, then pytest against a real MariaDB/MySQL.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

"$VENV/bin/ruff" format --check .
"$VENV/bin/ruff" check .
"$VENV/bin/mypy" .

SHOP_TEST_MYSQL_URL=$(scripts/test-db-url.sh)
export SHOP_TEST_MYSQL_URL
mkdir -p var
exec "$VENV/bin/pytest" "$@"
