#!/usr/bin/env bash
# The dashboard's JavaScript: ESLint at the exact version dashboard/package-lock.json pins,
# installed into dashboard/node_modules when missing or when the lock file has changed since.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cmp -s dashboard/package-lock.json dashboard/node_modules/.installed-lock.json; then
  npm ci --prefix dashboard --no-audit --no-fund --loglevel=error
  cp dashboard/package-lock.json dashboard/node_modules/.installed-lock.json
fi
# --no: never fetch some other eslint; the cache lives (and is wiped) with node_modules.
npx --no --prefix dashboard eslint --max-warnings 0 \
  --cache --cache-location dashboard/node_modules/.cache/eslint/ dashboard
