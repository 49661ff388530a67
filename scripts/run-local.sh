#!/usr/bin/env bash
# README's first command (`make run`, which installs first): migrate the configured database
# (default: the embedded SQLite file var/shop.db), load the demo data once (when the
# generator exists and the catalog is still empty), then start both services in the
# background with ./docker-manager.sh, which says where they answer.
set -euo pipefail
cd "$(dirname "$0")/.."
# Demo data is a convenience: if it cannot be loaded, say so loudly and start anyway (the
# generator loads in one transaction, so a failure leaves nothing half-written).
if ! ./docker-manager.sh seed --once; then
  echo "warning: the demo data could not be loaded (see above); starting without it" >&2
fi
./docker-manager.sh start
