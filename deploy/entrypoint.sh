#!/usr/bin/env bash
# Container entry point: which process this container runs, from its arguments or
# SHOP_SERVICE.
#   products | sales   serve the service (one uvicorn worker: scale with replicas)
#   migrate            bring the schema to the latest revision, then exit
#   anything else      run it as given (e.g. python -m demo.generate --size 1000)
# uvicorn's own X-Forwarded-For handling is off (it trusts 127.0.0.1 by default): the app
# reads it only from the proxies SHOP_FORWARDED_ALLOW_IPS names (set it to the load
# balancer's addresses so client addresses, for login throttling, are the real ones).
set -euo pipefail

role=${1:-${SHOP_SERVICE:-}}
if (($#)); then shift; fi

serve() {
  exec uvicorn "$1.main:app" --host 0.0.0.0 --port "${SHOP_PORT:-$2}" \
    --workers "${SHOP_WORKERS:-1}" --no-proxy-headers --timeout-graceful-shutdown 20 "${@:3}"
}

case $role in
  products | products_service) serve products_service 8000 "$@" ;;
  sales | sales_service) serve sales_service 8001 "$@" ;;
  migrate) exec python -m products_service.cli migrate ;;
  "")
    echo "usage: entrypoint.sh products|sales|migrate|<command> (or set SHOP_SERVICE)" >&2
    exit 2
    ;;
  *) exec "$role" "$@" ;;
esac
