#!/usr/bin/env bash
# Development-only while nothing has shipped: rebuild 0001 from the models.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
mv common/migrations/versions/0002_default_warehouse.py "$tmp/"
rm -f common/migrations/versions/0001_initial_schema.py
SHOP_DATABASE_URL="sqlite:///$tmp/gen.db" .venv/bin/alembic revision --autogenerate -m "initial schema" --rev-id 0001 >/dev/null
mv "$tmp/0002_default_warehouse.py" common/migrations/versions/
.venv/bin/ruff format -q common/migrations
rm -rf "$tmp"
echo "regenerated common/migrations/versions/0001_initial_schema.py"
