#!/usr/bin/env bash
# Print a SQLAlchemy URL for a MariaDB/MySQL server the tests may create databases on.
# Starts the local MariaDB if it is down; where root only logs in over the Unix socket,
# creates a dedicated 'shop_test' user from there.
set -euo pipefail

if [[ -n "${SHOP_TEST_MYSQL_URL:-}" ]]; then
  echo "$SHOP_TEST_MYSQL_URL"
  exit 0
fi

can_login() { mariadb --protocol=tcp -h127.0.0.1 -P3306 "$@" -e 'SELECT 1' >/dev/null 2>&1; }

if ! command -v mariadb >/dev/null 2>&1; then
  # No local client: let the tests try 127.0.0.1 as root, then testcontainers.
  echo "mysql+pymysql://root@127.0.0.1:3306"
  exit 0
fi

if ! can_login -uroot && ! mariadb -uroot -e 'SELECT 1' >/dev/null 2>&1; then
  echo "MariaDB is not answering; starting it" >&2
  if [[ -x /usr/sbin/mariadbd ]]; then
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql >&2
  fi
  for _ in $(seq 1 60); do
    if can_login -uroot || mariadb -uroot -e 'SELECT 1' >/dev/null 2>&1; then break; fi
    sleep 1
  done
fi

# The tests run in parallel, each with live servers holding connection pools: the default
# of 151 connections is too few. (Not kept across a server restart; left as is if refused.)
raise_connections() {
  mariadb --protocol=tcp -h127.0.0.1 -P3306 "$@" \
    -e 'SET GLOBAL max_connections = GREATEST(@@max_connections, 1000)' >/dev/null 2>&1 || true
}

if can_login -uroot; then
  raise_connections -uroot
  echo "mysql+pymysql://root@127.0.0.1:3306"
elif can_login -ushop_test -pshop_test; then
  raise_connections -ushop_test -pshop_test
  echo "mysql+pymysql://shop_test:shop_test@127.0.0.1:3306"
elif mariadb -uroot -e 'SELECT 1' >/dev/null 2>&1; then
  mariadb -uroot -e "CREATE USER IF NOT EXISTS 'shop_test'@'127.0.0.1' IDENTIFIED BY 'shop_test';
                     CREATE USER IF NOT EXISTS 'shop_test'@'localhost' IDENTIFIED BY 'shop_test';
                     GRANT ALL PRIVILEGES ON *.* TO 'shop_test'@'127.0.0.1';
                     GRANT ALL PRIVILEGES ON *.* TO 'shop_test'@'localhost';" >&2
  raise_connections -ushop_test -pshop_test
  echo "mysql+pymysql://shop_test:shop_test@127.0.0.1:3306"
else
  echo "Cannot reach MariaDB on 127.0.0.1:3306 nor over its socket" >&2
  exit 1
fi
