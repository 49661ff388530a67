#!/usr/bin/env bash
# Start, stop and operate the shop's two services.
#
#   ./docker-manager.sh start | stop | restart | status
#   ./docker-manager.sh logs [products|sales|mysql|migrate] [-f]
#   ./docker-manager.sh seed [--once] [generator arguments, e.g. --size 1000 --seed 7]
#   ./docker-manager.sh backup [file]
#   ./docker-manager.sh restore [file] [--yes]
#
# Where a Docker engine answers (`docker info`), docker compose runs MySQL, the migration and
# both services (docker-compose.yml). Where none does, both services run as local uvicorn
# processes on SHOP_DATABASE_URL, or on the embedded SQLite file var/shop.db when it is
# unset, with pid files and logs under var/. SHOP_RUN_MODE=local|docker forces a mode.
#
# Settings come from the environment, then from .env (see .env.example). This script reads:
#   SHOP_RUN_MODE      auto | local | docker                     (auto)
#   SHOP_HOST          address the local processes bind to       (127.0.0.1)
#   SHOP_PRODUCTS_PORT, SHOP_SALES_PORT                          (8000, 8001)
#   SHOP_WORKERS       uvicorn workers per local service          (1)
#   SHOP_STATE_DIR     pid files and logs of the local processes (var)
#   SHOP_START_TIMEOUT seconds to wait for both /health          (60 local, 240 docker)
#   SHOP_STOP_TIMEOUT  seconds between TERM and KILL              (20)
#   SHOP_DEMO_SIZE, SHOP_DEMO_SEED  defaults for `seed`           (the generator's own)
#
# restore refuses while a service is running: loading a dump under live traffic would mix
# old and new rows. Stop, restore, start (start migrates a restored older schema first).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT"

SERVICES="products_service sales_service"

say() { printf '%s\n' "$*"; }
warn() { printf '%s\n' "$*" >&2; }
die() {
  warn "error: $*"
  exit 1
}

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}

# --- configuration ---------------------------------------------------------------------

# Export KEY=VALUE lines of .env that the environment does not set already (the services'
# settings give the environment the same precedence).
load_dotenv() {
  local line key value
  [[ -f .env ]] || return 0
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
    key=${BASH_REMATCH[2]}
    value=${BASH_REMATCH[3]}
    if [[ $value =~ ^\'(.*)\'[[:space:]]*$ || $value =~ ^\"(.*)\"[[:space:]]*$ ]]; then
      value=${BASH_REMATCH[1]}
    else
      value=${value%%[[:space:]]#*}
      value=${value%"${value##*[![:space:]]}"}
    fi
    if [[ -z ${!key+set} ]]; then
      export "$key=$value"
    fi
  done <.env
}

load_dotenv

HOST=${SHOP_HOST:-127.0.0.1}
PRODUCTS_PORT=${SHOP_PRODUCTS_PORT:-8000}
SALES_PORT=${SHOP_SALES_PORT:-8001}
WORKERS=${SHOP_WORKERS:-1}
STATE_DIR=${SHOP_STATE_DIR:-var}
STOP_TIMEOUT=${SHOP_STOP_TIMEOUT:-20}
VENV=${VENV:-.venv}
PY=$VENV/bin/python
BACKUP_DIR=var/backups

# Where a client reaches a service bound to HOST.
client_host() {
  case $HOST in
    0.0.0.0 | "" | "::" | "[::]") echo 127.0.0.1 ;;
    *) echo "$HOST" ;;
  esac
}

service_port() {
  case $1 in
    products_service) echo "$PRODUCTS_PORT" ;;
    sales_service) echo "$SALES_PORT" ;;
  esac
}

base_url() { echo "http://$(client_host):$(service_port "$1")"; }
pid_file() { echo "$STATE_DIR/$1.pid"; }
log_file() { echo "$STATE_DIR/$1.log"; }
mode_file() { echo "$STATE_DIR/run-mode"; }

# products / products_service / sales ... -> the canonical service name ("" for all).
service_name() {
  case ${1:-} in
    "") echo "" ;;
    products | products_service) echo products_service ;;
    sales | sales_service) echo sales_service ;;
    mysql | migrate) echo "$1" ;;
    *) die "unknown service '$1' (products, sales, mysql, migrate)" ;;
  esac
}

# Compose calls the two services products and sales.
compose_name() {
  case $1 in
    products_service) echo products ;;
    sales_service) echo sales ;;
    *) echo "$1" ;;
  esac
}

# --- mode ------------------------------------------------------------------------------

docker_answers() {
  command -v docker >/dev/null 2>&1 || return 1
  if command -v timeout >/dev/null 2>&1; then
    timeout 15 docker info >/dev/null 2>&1 || return 1
  else
    docker info >/dev/null 2>&1 || return 1
  fi
  docker compose version >/dev/null 2>&1
}

# Sets MODE and WHY. The mode a running `start` recorded wins, so `stop` finds what `start`
# started even if a Docker engine appeared in between.
detect_mode() {
  local recorded=""
  if [[ -f $(mode_file) ]]; then
    recorded=$(<"$(mode_file)")
  fi
  case ${SHOP_RUN_MODE:-auto} in
    local)
      MODE=local WHY="SHOP_RUN_MODE=local"
      ;;
    docker)
      docker_answers || die "SHOP_RUN_MODE=docker, but no Docker engine (with compose) answers"
      MODE=docker WHY="SHOP_RUN_MODE=docker"
      ;;
    auto)
      if [[ $recorded == local || $recorded == docker ]]; then
        MODE=$recorded WHY="the mode 'start' used"
      elif docker_answers; then
        MODE=docker WHY="a Docker engine answers"
      else
        MODE=local WHY="no Docker engine answers"
      fi
      ;;
    *) die "SHOP_RUN_MODE must be auto, local or docker, not '${SHOP_RUN_MODE}'" ;;
  esac
}

announce_mode() {
  if [[ $MODE == docker ]]; then
    say "Mode: docker compose ($WHY)"
  else
    say "Mode: local processes ($WHY); database: $(database_label)"
  fi
}

# --- helpers ---------------------------------------------------------------------------

ensure_venv() {
  if command -v make >/dev/null 2>&1; then
    make --no-print-directory -s install VENV="$VENV"
  fi
  [[ -x $PY ]] || die "no virtual environment at $VENV: run 'make install' first"
}

database_label() {
  if [[ -n ${SHOP_DATABASE_URL:-} ]]; then
    # Never print a password.
    printf '%s\n' "$SHOP_DATABASE_URL" | sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#'
  else
    echo "embedded SQLite (var/shop.db)"
  fi
}

# The URL answers 2xx.
http_ok() {
  local python=python3
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -m 3 -o /dev/null "$1" 2>/dev/null
  else
    if [[ -x $PY ]]; then python=$PY; fi
    "$python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)' \
      "$1" 2>/dev/null
  fi
}

# The pid is a live process (not a zombie left for a parent that does not reap).
alive() {
  local pid=$1 stat rest
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r /proc/$pid/stat ]]; then
    stat=$(<"/proc/$pid/stat") || return 1
    rest=${stat##*) }
    [[ ${rest%% *} != Z ]]
  fi
}

# The pid runs this service's uvicorn (guards against a pid reused by another program).
runs_service() {
  local pid=$1 service=$2 args
  if [[ -r /proc/$pid/cmdline ]]; then
    args=$(tr '\0' ' ' <"/proc/$pid/cmdline")
  else
    args=$(ps -o args= -p "$pid" 2>/dev/null || true)
  fi
  [[ $args == *"$service.main:app"* ]]
}

# Prints the pid of the running service; fails when it does not run.
running_pid() {
  local file pid
  file=$(pid_file "$1")
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  alive "$pid" && runs_service "$pid" "$1" || return 1
  echo "$pid"
}

port_in_use() {
  (exec 3<>"/dev/tcp/$(client_host)/$1") 2>/dev/null
}

# TERM (then KILL) the process and its uvicorn workers: each service leads its own group.
signal_service() {
  local signal=$1 pid=$2
  kill "-$signal" -- "-$pid" 2>/dev/null || kill "-$signal" "$pid" 2>/dev/null || true
}

wait_gone() {
  local pid=$1 deadline=$((SECONDS + $2))
  while alive "$pid"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

print_summary() {
  local service
  say ""
  for service in $SERVICES; do
    printf '  %-16s %-28s Swagger: %s/docs\n' "$service" "$(base_url "$service")" \
      "$(base_url "$service")"
  done
  printf '  %-16s %s/dashboard/\n' "dashboard" "$(base_url products_service)"
  local email=${SHOP_FIRST_ADMIN_EMAIL:-admin@example.com}
  if [[ ${SHOP_ENVIRONMENT:-development} == production ]]; then
    say "  Log in as $email with the password in SHOP_FIRST_ADMIN_PASSWORD."
  else
    say "  Log in as $email / ${SHOP_FIRST_ADMIN_PASSWORD:-admin-change-me}"
  fi
  say "  Metrics at /metrics on both; logs: ./docker-manager.sh logs; stop: ./docker-manager.sh stop"
}

# Waits for /health of every service; on failure shows why and returns 1.
wait_healthy() {
  local timeout=$1 deadline=$((SECONDS + $1)) service pid
  for service in $SERVICES; do
    until http_ok "$(base_url "$service")/health"; do
      if [[ $MODE == local ]] && ! pid=$(running_pid "$service"); then
        warn "$service exited during start-up; last lines of $(log_file "$service"):"
        tail -n 40 "$(log_file "$service")" >&2 || true
        return 1
      fi
      if ((SECONDS >= deadline)); then
        warn "$service did not answer $(base_url "$service")/health within ${timeout}s."
        if [[ $MODE == local ]]; then
          warn "Last lines of $(log_file "$service"):"
          tail -n 40 "$(log_file "$service")" >&2 || true
        else
          compose ps >&2 || true
          compose logs --tail 40 "$(compose_name "$service")" >&2 || true
        fi
        return 1
      fi
      sleep 0.3
    done
  done
}

# Shell assignments describing the configured database (DB_KIND=sqlite|mysql, ...).
database_facts() {
  "$PY" - <<'PY'
import shlex

from sqlalchemy.engine import make_url

from common.settings import get_products_settings

url = make_url(get_products_settings().database_url)
facts = {"DB_KIND": "sqlite" if url.get_backend_name() == "sqlite" else "mysql"}
if facts["DB_KIND"] == "sqlite":
    facts["DB_PATH"] = url.database or ""
else:
    facts.update(
        DB_HOST=url.host or "127.0.0.1",
        DB_PORT=str(url.port or 3306),
        DB_USER=url.username or "",
        DB_PASSWORD=url.password or "",
        DB_NAME=url.database or "",
    )
for key, value in facts.items():
    print(f"{key}={shlex.quote(str(value))}")
PY
}

# A client option file (MYSQL_OPTIONS), so the password shows neither in `ps` nor in the
# environment; removed when the script exits.
MYSQL_OPTIONS=""
remove_mysql_options() { if [[ -n $MYSQL_OPTIONS ]]; then rm -f "$MYSQL_OPTIONS"; fi; }
write_mysql_options() {
  MYSQL_OPTIONS=$(mktemp "${TMPDIR:-/tmp}/shop-mysql.XXXXXX")
  trap remove_mysql_options EXIT
  chmod 600 "$MYSQL_OPTIONS"
  {
    echo "[client]"
    echo "host=$DB_HOST"
    echo "port=$DB_PORT"
    echo "user=$DB_USER"
    if [[ -n $DB_PASSWORD ]]; then echo "password=\"$DB_PASSWORD\""; fi
    echo "protocol=tcp"
  } >"$MYSQL_OPTIONS"
}

# Sets DB_KIND (sqlite|mysql) and DB_PATH or DB_HOST, DB_PORT, DB_USER, DB_PASSWORD, DB_NAME.
read_database_facts() {
  local facts
  facts=$(database_facts) || die "cannot read the database URL from the settings"
  eval "$facts"
}

first_command() {
  local name
  for name in "$@"; do
    if command -v "$name" >/dev/null 2>&1; then
      echo "$name"
      return 0
    fi
  done
  return 1
}

# --- docker mode -----------------------------------------------------------------------

compose() { docker compose "$@"; }

docker_start() {
  if [[ ! -f .env ]]; then
    say "No .env: using docker-compose.yml's development defaults (see .env.example)."
  fi
  compose up -d --build --remove-orphans
  say "Waiting for both services to answer /health ..."
  wait_healthy "${SHOP_START_TIMEOUT:-240}" || die "the services did not come up"
  mkdir -p "$STATE_DIR"
  echo docker >"$(mode_file)"
  print_summary
}

docker_stop() {
  compose down --remove-orphans
  rm -f "$(mode_file)"
  say "Stopped (the database volume is kept; 'docker compose down -v' removes it)."
}

docker_status() {
  local service code=0
  compose ps || true
  for service in $SERVICES; do
    if http_ok "$(base_url "$service")/health"; then
      say "$service: up at $(base_url "$service")"
    else
      say "$service: down ($(base_url "$service")/health does not answer)"
      code=1
    fi
  done
  return "$code"
}

docker_service_running() {
  [[ -n $(compose ps --status running --quiet "$1" 2>/dev/null) ]]
}

# --- local mode ------------------------------------------------------------------------

migrate_local() {
  mkdir -p var
  "$PY" -m products_service.cli migrate
}

launch_local() {
  local service=$1 port log pid
  port=$(service_port "$service")
  log=$(log_file "$service")
  # --no-proxy-headers: the app trusts X-Forwarded-For only from SHOP_FORWARDED_ALLOW_IPS.
  local -a argv=("$PY" -m uvicorn "$service.main:app" --host "$HOST" --port "$port"
    --workers "$WORKERS" --no-proxy-headers)
  # Each service leads its own process group (setsid), so stop reaches its workers too.
  if command -v setsid >/dev/null 2>&1; then
    argv=(setsid "${argv[@]}")
  fi
  nohup "${argv[@]}" </dev/null >>"$log" 2>&1 &
  pid=$!
  echo "$pid" >"$(pid_file "$service")"
  say "started $service (pid $pid, log $log)"
}

local_start() {
  local service started=""
  ensure_venv
  mkdir -p "$STATE_DIR"
  # sales_service calls the products_service this script starts.
  export SHOP_PRODUCTS_SERVICE_URL
  SHOP_PRODUCTS_SERVICE_URL=$(base_url products_service)
  # The dashboard, served by products_service, calls sales_service where this script starts
  # it, from products_service's origin, which sales_service's CORS must allow.
  export SHOP_DASHBOARD_SALES_URL=${SHOP_DASHBOARD_SALES_URL:-$(base_url sales_service)}
  if [[ -z ${SHOP_CORS_ORIGINS:-} ]]; then
    export SHOP_CORS_ORIGINS="[\"$(base_url products_service)\",\"http://localhost:$PRODUCTS_PORT\",\"http://localhost:3000\",\"http://localhost:5173\"]"
  fi
  for service in $SERVICES; do
    if running_pid "$service" >/dev/null; then continue; fi
    rm -f "$(pid_file "$service")"
    if port_in_use "$(service_port "$service")"; then
      die "port $(service_port "$service") ($service) is taken by another program;" \
        "choose another with SHOP_PRODUCTS_PORT / SHOP_SALES_PORT"
    fi
  done
  migrate_local
  for service in $SERVICES; do
    if running_pid "$service" >/dev/null; then
      say "$service is already running (pid $(running_pid "$service"))"
    else
      launch_local "$service"
      started="$started $service"
    fi
  done
  echo local >"$(mode_file)"
  if ! wait_healthy "${SHOP_START_TIMEOUT:-60}"; then
    for service in $started; do stop_local_service "$service" >/dev/null; done
    rm -f "$(mode_file)"
    die "start failed; stopped what this run started"
  fi
  print_summary
}

stop_local_service() {
  local service=$1 file pid
  file=$(pid_file "$service")
  if [[ ! -f $file ]]; then
    say "$service: not running"
    return 0
  fi
  pid=$(<"$file")
  if [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" && runs_service "$pid" "$service"; then
    signal_service TERM "$pid"
    if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
      warn "$service (pid $pid) ignored TERM for ${STOP_TIMEOUT}s; sending KILL"
      signal_service KILL "$pid"
      wait_gone "$pid" 10 || die "$service (pid $pid) survived KILL"
    fi
    say "$service: stopped (pid $pid)"
  else
    say "$service: not running (removed a stale pid file naming $pid)"
  fi
  rm -f "$file"
}

local_stop() {
  local service
  for service in $SERVICES; do stop_local_service "$service"; done
  rm -f "$(mode_file)"
}

local_status() {
  local service pid code=0
  for service in $SERVICES; do
    if pid=$(running_pid "$service"); then
      if http_ok "$(base_url "$service")/health"; then
        say "$service: up (pid $pid) at $(base_url "$service")"
      else
        say "$service: down (pid $pid runs, but $(base_url "$service")/health does not answer)"
        code=1
      fi
    else
      say "$service: down"
      code=1
    fi
  done
  return "$code"
}

# --- commands --------------------------------------------------------------------------

cmd_start() {
  detect_mode
  announce_mode
  if [[ $MODE == docker ]]; then docker_start; else local_start; fi
}

cmd_stop() {
  detect_mode
  announce_mode
  if [[ $MODE == docker ]]; then docker_stop; else local_stop; fi
}

cmd_status() {
  detect_mode
  announce_mode
  if [[ $MODE == docker ]]; then docker_status; else local_status; fi
}

cmd_logs() {
  local follow=0 service="" arg lines=${SHOP_LOG_LINES:-100}
  for arg in "$@"; do
    case $arg in
      -f | --follow) follow=1 ;;
      *) service=$(service_name "$arg") ;;
    esac
  done
  detect_mode
  if [[ $MODE == docker ]]; then
    local -a flags=(--tail "$lines")
    if ((follow)); then flags+=(--follow); fi
    if [[ -n $service ]]; then
      compose logs "${flags[@]}" "$(compose_name "$service")"
    else
      compose logs "${flags[@]}"
    fi
    return
  fi
  local -a files=()
  case $service in
    "") for arg in $SERVICES; do files+=("$(log_file "$arg")"); done ;;
    products_service | sales_service) files=("$(log_file "$service")") ;;
    *) die "in local mode there is no $service log (only products and sales)" ;;
  esac
  for arg in "${files[@]}"; do
    [[ -f $arg ]] || die "no log yet at $arg (start the services first)"
  done
  if ((follow)); then
    exec tail -n "$lines" -F "${files[@]}"
  fi
  tail -n "$lines" "${files[@]}"
}

# The catalog is empty: the demo data was never loaded into this database.
EMPTY_CATALOG_CHECK='
import sys
from sqlalchemy import create_engine, text
from common.settings import get_products_settings
engine = create_engine(get_products_settings().database_url)
with engine.connect() as connection:
    count = connection.execute(text("SELECT COUNT(*) FROM products")).scalar_one()
sys.exit(0 if count == 0 else 1)
'

cmd_seed() {
  local once=0
  if [[ ${1:-} == --once ]]; then
    once=1
    shift
  fi
  if [[ ! -f demo/generate.py ]]; then
    say "No demo data generator is available (demo/generate.py does not exist); nothing seeded."
    return 0
  fi
  local -a args=("$@")
  if ((${#args[@]} == 0)); then
    if [[ -n ${SHOP_DEMO_SIZE:-} ]]; then args+=(--size "$SHOP_DEMO_SIZE"); fi
    if [[ -n ${SHOP_DEMO_SEED:-} ]]; then args+=(--seed "$SHOP_DEMO_SEED"); fi
  fi
  detect_mode
  announce_mode
  if [[ $MODE == docker ]]; then
    compose up -d --wait mysql
    compose run --rm migrate
    if ((once)) && ! compose run --rm --no-deps migrate python -c "$EMPTY_CATALOG_CHECK"; then
      say "The database already has products; demo data not loaded again."
      return 0
    fi
    compose run --rm --no-deps migrate python -m demo.generate ${args[@]+"${args[@]}"}
  else
    ensure_venv
    migrate_local
    if ((once)) && ! "$PY" -c "$EMPTY_CATALOG_CHECK"; then
      say "The database already has products; demo data not loaded again."
      return 0
    fi
    "$PY" -m demo.generate ${args[@]+"${args[@]}"}
  fi
  say "Demo data loaded."
}

refuse_while_running() {
  local service
  for service in $SERVICES; do
    if [[ $MODE == docker ]]; then
      if docker_service_running "$(compose_name "$service")"; then
        die "$service is running; restore refuses to load under live traffic. Run './docker-manager.sh stop' first."
      fi
    elif running_pid "$service" >/dev/null; then
      die "$service is running; restore refuses to load under live traffic. Run './docker-manager.sh stop' first."
    fi
  done
}

cmd_backup() {
  local target=${1:-} stamp
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  detect_mode
  announce_mode
  mkdir -p "$BACKUP_DIR"
  if [[ $MODE == docker ]]; then
    target=${target:-$BACKUP_DIR/shop-$stamp.sql}
    compose up -d --wait mysql
    # shellcheck disable=SC2016  # expanded inside the container
    compose exec -T mysql sh -c 'MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mysqldump -uroot \
      --single-transaction --routines --triggers --hex-blob --no-tablespaces \
      "$MYSQL_DATABASE"' >"$target.partial"
    mv "$target.partial" "$target"
    say "Backed up the compose MySQL database to $target"
    return 0
  fi
  ensure_venv
  read_database_facts
  if [[ $DB_KIND == sqlite ]]; then
    [[ -f $DB_PATH ]] || die "no database file at $DB_PATH yet"
    target=${target:-$BACKUP_DIR/shop-$stamp.db}
    # The backup API copies a consistent snapshot even while the services write (WAL).
    "$PY" - "$DB_PATH" "$target.partial" <<'PY'
import sqlite3, sys
source, copy = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
with copy:
    source.backup(copy)
source.close()
copy.close()
PY
    mv "$target.partial" "$target"
    say "Backed up $DB_PATH to $target"
  else
    local dump
    dump=$(first_command mariadb-dump mysqldump) || die "mariadb-dump or mysqldump is needed"
    target=${target:-$BACKUP_DIR/shop-$stamp.sql}
    write_mysql_options
    "$dump" --defaults-extra-file="$MYSQL_OPTIONS" --single-transaction --routines --triggers \
      --hex-blob --no-tablespaces --default-character-set=utf8mb4 "$DB_NAME" >"$target.partial"
    mv "$target.partial" "$target"
    say "Backed up MySQL database $DB_NAME on $DB_HOST:$DB_PORT to $target"
  fi
}

latest_backup() {
  local pattern=$1 newest="" file
  for file in "$BACKUP_DIR"/$pattern; do
    [[ -f $file ]] || continue
    if [[ -z $newest || $file -nt $newest ]]; then newest=$file; fi
  done
  [[ -n $newest ]] || return 1
  echo "$newest"
}

confirm() {
  local answer
  [[ -t 0 ]] || return 0
  read -r -p "$1 [y/N] " answer
  [[ $answer == y || $answer == Y || $answer == yes ]]
}

cmd_restore() {
  local source="" yes=0 arg
  for arg in "$@"; do
    case $arg in
      -y | --yes) yes=1 ;;
      *) source=$arg ;;
    esac
  done
  detect_mode
  announce_mode
  refuse_while_running
  if [[ $MODE == docker ]]; then
    source=${source:-$(latest_backup 'shop-*.sql')} || die "no backup given and none in $BACKUP_DIR"
    [[ -f $source ]] || die "no such file: $source"
    ((yes)) || confirm "Replace the compose MySQL database with $source?" || die "not restored"
    compose up -d --wait mysql
    # shellcheck disable=SC2016  # expanded inside the container
    compose exec -T mysql sh -c 'MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mysql -uroot \
      "$MYSQL_DATABASE"' <"$source"
    say "Restored $source. Start with './docker-manager.sh start' (it migrates first)."
    return 0
  fi
  ensure_venv
  read_database_facts
  if [[ $DB_KIND == sqlite ]]; then
    source=${source:-$(latest_backup 'shop-*.db')} || die "no backup given and none in $BACKUP_DIR"
    [[ -f $source ]] || die "no such file: $source"
    ((yes)) || confirm "Replace $DB_PATH with $source?" || die "not restored"
    mkdir -p "$(dirname "$DB_PATH")"
    "$PY" - "$source" "$DB_PATH" <<'PY'
import sqlite3, sys
source = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
if source.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
    sys.exit(f"{sys.argv[1]} is not an intact SQLite database; nothing restored")
target = sqlite3.connect(sys.argv[2])
with target:
    source.backup(target)
source.close()
target.close()
PY
    say "Restored $source into $DB_PATH."
  else
    local client
    client=$(first_command mariadb mysql) || die "the mariadb or mysql client is needed"
    source=${source:-$(latest_backup 'shop-*.sql')} || die "no backup given and none in $BACKUP_DIR"
    [[ -f $source ]] || die "no such file: $source"
    ((yes)) || confirm "Replace MySQL database $DB_NAME on $DB_HOST with $source?" ||
      die "not restored"
    write_mysql_options
    "$client" --defaults-extra-file="$MYSQL_OPTIONS" "$DB_NAME" <"$source"
    say "Restored $source into MySQL database $DB_NAME on $DB_HOST:$DB_PORT."
  fi
  say "Start with './docker-manager.sh start' (it migrates first)."
}

main() {
  local action=${1:-}
  if (($#)); then shift; fi
  case $action in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart)
      cmd_stop
      cmd_start
      ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    seed) cmd_seed "$@" ;;
    backup) cmd_backup "$@" ;;
    restore) cmd_restore "$@" ;;
    -h | --help | help) usage 0 ;;
    *) usage 2 ;;
  esac
}

main "$@"
