#!/usr/bin/env bash
# The test command: format check, lint (Python and the dashboard's JavaScript), types (also
# of a TypeScript client of both OpenAPI documents), then pytest against a real MariaDB/MySQL.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

"$VENV/bin/ruff" format --check .
"$VENV/bin/ruff" check .
"$VENV/bin/mypy" .

scripts/lint-js.sh  # the dashboard's JavaScript (ESLint)
scripts/openapi-client.sh  # a TypeScript client of both OpenAPI documents compiles (tsc)

# The dashboard's browser tests (tests/dashboard) drive Debian's chromium: installed when
# missing, where this runs as root with apt-get (elsewhere those tests say what is missing).
if ! command -v chromium >/dev/null 2>&1 && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium
fi

SHOP_TEST_MYSQL_URL=$(scripts/test-db-url.sh)
export SHOP_TEST_MYSQL_URL
mkdir -p var
# One pytest worker per core (SHOP_TEST_WORKERS overrides; 0: none), each test file on one
# worker so that its module-wide servers and databases are set up once.
WORKERS=${SHOP_TEST_WORKERS:-$(nproc)}
if [[ "$WORKERS" -gt 0 ]]; then
  set -- -n "$WORKERS" --dist loadfile "$@"
fi
exec "$VENV/bin/pytest" "$@"
