#!/usr/bin/env bash
# Migrate the configured database (default: the embedded SQLite file var/shop.db) and
# serve products_service on :8000 in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
mkdir -p var
"$VENV/bin/python" -m products_service.cli migrate
echo "products_service: http://127.0.0.1:8000  (Swagger: http://127.0.0.1:8000/docs)"
echo "log in as ${SHOP_FIRST_ADMIN_EMAIL:-admin@example.com} / ${SHOP_FIRST_ADMIN_PASSWORD:-admin-change-me}"
exec "$VENV/bin/uvicorn" products_service.main:app --host "${SHOP_HOST:-127.0.0.1}" --port 8000
