# ruff: noqa: S608 - a benchmark script; its SQL is built from its own constants
"""Benchmark: the revenue reports on 10 million sales against DuckDB on the same rows.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/reports.py                     # 10M sales, about 15-20 min on 2 cores
    .venv/bin/python bench/reports.py --sales 1000000     # quicker
    .venv/bin/python bench/reports.py --skip-load         # reuse the database and files
    .venv/bin/python bench/reports.py --server-url mysql+pymysql://root@127.0.0.1:3408

It creates (and replaces) the database ``--database`` (shop_bench) on ``--server-url``
(default SHOP_TEST_MYSQL_URL or the local server) and writes about 2.3 GB of files to
``--workdir``; the database takes about 9 GB. Give the server a buffer pool that holds the
rollups (a few GB; MariaDB's default is 128 MB) and no other load, e.g. a private
``mariadbd --innodb-buffer-pool-size=4G --port=3408`` as the published figures used.
Exit status 1 if any pair of answers differs.

1. DuckDB generates three years of sales (2023-2025 in the store zone, Europe/Berlin) with
   1-3 lines each, skewed product popularity, partial refunds and cancellations, and writes
   them as tab-separated files.
2. A fresh MariaDB/MySQL database is built with the Alembic history; the files are bulk
   loaded with LOAD DATA LOCAL INFILE (sales and sale_lines side by side); the rollups are
   rebuilt from the raw rows with ``rebuild_rollups`` on two connections (INSERT ... SELECT
   ... GROUP BY, the code the tests prove equal to the per-sale hooks).
3. DuckDB loads the same files into in-memory tables.
4. It prints the rollup rows per table against the sale lines, and the rebuild's rate.
5. Each report runs over the full range and over the last 30 days: ours through the same
   service functions the routes call (answer built and serialised, no HTTP), DuckDB with the
   query an expert would write for the same answer: the sales table's own totals wherever no
   line is filtered or grouped on (series, channels, summary, compare; both periods of a
   comparison in one pass), the filtered lines first where one is, and local time as one
   addition per row with the zone's offset of each DST segment (worked out in Python for
   the range, inside the timing), not a time zone lookup per row. Every pair of answers is
   checked equal; then each question is timed ``--rounds`` times a side, each call on a
   new range, the two sides taking turns question after question: the table shows each
   side's median.
"""

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import migrate
from common.db import make_engine, snapshot_connection
from sales_service.reports import inmemory, service
from sales_service.reports.calendar import DateRange, Period, Weekday, base_range
from sales_service.reports.parameters import Against, CategoryRollup, Dimension, SortKey
from sales_service.reports.planner import Filters
from sales_service.reports.rollups import rebuild_rollups
from sales_service.reports.service import Grouping

ZONE_NAME = "Europe/Berlin"
ZONE = ZoneInfo(ZONE_NAME)
FIRST, LAST = date(2023, 1, 1), date(2025, 12, 31)
CENT = Decimal("0.01")
PRODUCTS, CHANNELS = 1000, 5


# --- data ---------------------------------------------------------------------------------


def generate(workdir: Path, sales: int, seed: float) -> None:
    """Write categories/products/channels/stock and sales/sale_lines as TSV files."""
    workdir.mkdir(parents=True, exist_ok=True)
    start = datetime.combine(FIRST, datetime.min.time(), ZONE).astimezone(UTC)
    end = datetime.combine(LAST + timedelta(days=1), datetime.min.time(), ZONE).astimezone(UTC)
    span_us = int((end - start).total_seconds() * 1_000_000)
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    db.execute("SET enable_progress_bar = false")  # progress bars are no figures
    db.execute(f"SELECT setseed({seed})")
    # 8 top-level categories, 3 children each, 2 grandchildren under every other child
    cats: list[tuple[int, str, int | None, str]] = []
    next_id = 1
    for top in range(8):
        top_id = next_id
        next_id += 1
        cats.append((top_id, f"Category {top}", None, f"/{top_id}/"))
        for child in range(3):
            child_id = next_id
            next_id += 1
            cats.append((child_id, f"Category {top}.{child}", top_id, f"/{top_id}/{child_id}/"))
            if child % 2 == 0:
                for grand in range(2):
                    grand_id = next_id
                    next_id += 1
                    cats.append(
                        (
                            grand_id,
                            f"Category {top}.{child}.{grand}",
                            child_id,
                            f"/{top_id}/{child_id}/{grand_id}/",
                        )
                    )
    db.execute("CREATE TABLE categories (id INT, name VARCHAR, parent_id INT, path VARCHAR)")
    db.executemany("INSERT INTO categories VALUES (?, ?, ?, ?)", cats)
    ncat = len(cats)
    db.execute(
        f"""CREATE TABLE products AS
        SELECT i AS id, 'SKU-' || lpad(i::VARCHAR, 5, '0') AS sku, 'Product ' || i AS name,
               CASE WHEN i % 50 = 0 THEN NULL ELSE 1 + (hash(i) % {ncat})::INT END AS category_id,
               (round(1 + random() * 299, 2))::DECIMAL(12,2) AS price
        FROM range(1, {PRODUCTS + 1}) t(i)"""
    )
    db.execute(
        "ALTER TABLE products ADD COLUMN cost_price DECIMAL(12,2);"
        "UPDATE products SET cost_price = round(price * (0.35 + random() * 0.4), 2)"
    )
    db.execute(
        """CREATE TABLE stock AS SELECT id AS product_id,
        (random() * 800)::INT AS on_hand FROM products"""
    )
    db.execute("ALTER TABLE stock ADD COLUMN reserved INT; UPDATE stock SET reserved = 0")
    db.execute("UPDATE stock SET reserved = least(on_hand, (random() * 10)::INT)")
    db.execute(
        f"""CREATE TABLE s AS
        SELECT row_number() OVER (ORDER BY t) AS id, t AS sold_at, channel_id, lines, refund
        FROM (
            SELECT TIMESTAMP '{start.replace(tzinfo=None).isoformat()}'
                       + to_microseconds((random() * {span_us})::BIGINT) AS t,
                   CASE WHEN r < 0.45 THEN 1 WHEN r < 0.7 THEN 2 WHEN r < 0.85 THEN 3
                        WHEN r < 0.95 THEN 4 ELSE 5 END AS channel_id,
                   1 + (random() < 0.35)::INT + (random() < 0.1)::INT AS lines,
                   CASE WHEN q < 0.035 THEN 1 WHEN q < 0.05 THEN 2 ELSE 0 END AS refund
            FROM (SELECT random() AS r, random() AS q FROM range({sales}))
        )"""
    )
    db.execute(
        f"""CREATE TABLE l AS
        SELECT row_number() OVER (ORDER BY x.sale_id, x.k) AS id, x.sale_id, x.k AS line_no,
               p.id AS product_id, p.sku, p.name AS product_name, p.category_id,
               x.qty AS quantity, p.price AS unit_price, p.cost_price AS unit_cost,
               (p.price * x.qty)::DECIMAL(14,2) AS line_total,
               (p.cost_price * x.qty)::DECIMAL(14,2) AS line_cost,
               CASE WHEN x.refund = 2 THEN x.qty WHEN x.refund = 1 AND x.k = 1 THEN 1 ELSE 0 END
                   AS refunded_quantity
        FROM (
            SELECT s.id AS sale_id, k, s.refund,
                   1 + floor({PRODUCTS} * pow(random(), 2))::INT AS pid,
                   1 + (random() < 0.3)::INT + (random() < 0.1)::INT AS qty
            FROM s, range(1, 4) r(k) WHERE k <= s.lines
        ) x JOIN products p ON p.id = x.pid"""
    )
    db.execute(
        """ALTER TABLE l ADD COLUMN refunded_total DECIMAL(14,2);
        ALTER TABLE l ADD COLUMN refunded_cost DECIMAL(14,2);
        UPDATE l SET refunded_total = unit_price * refunded_quantity,
                     refunded_cost = unit_cost * refunded_quantity"""
    )
    db.execute(
        """CREATE TABLE totals AS SELECT sale_id, sum(quantity) AS units,
               sum(line_total) AS total, sum(line_cost) AS cost_total,
               sum(refunded_quantity) AS refunded_units, sum(refunded_total) AS refunded_total,
               sum(refunded_cost) AS refunded_cost
        FROM l GROUP BY sale_id"""
    )

    def copy(query: str, name: str) -> None:
        db.execute(
            f"COPY ({query}) TO '{workdir / name}' "
            "(FORMAT csv, DELIMITER '\t', HEADER false, NULLSTR '\\N', QUOTE '')"
        )

    copy("SELECT id, name, parent_id, path FROM categories ORDER BY id", "categories.tsv")
    copy("SELECT id, sku, name, category_id, price, cost_price FROM products", "products.tsv")
    copy("SELECT product_id, on_hand, reserved FROM stock", "stock.tsv")
    copy(
        """SELECT s.id, 'S-' || lpad(s.id::VARCHAR, 9, '0'), s.channel_id,
                  CASE WHEN s.refund = 2 THEN 'cancelled'
                       WHEN t.refunded_units >= t.units THEN 'refunded'
                       WHEN t.refunded_units > 0 THEN 'partially_refunded'
                       ELSE 'completed' END,
                  strftime(s.sold_at, '%Y-%m-%d %H:%M:%S.%f'), t.units, t.total, t.cost_total,
                  t.refunded_units, t.refunded_total, t.refunded_cost,
                  strftime(s.sold_at, '%Y-%m-%d %H:%M:%S.%f')
           FROM s JOIN totals t ON t.sale_id = s.id ORDER BY s.id""",
        "sales.tsv",
    )
    copy(
        """SELECT l.id, l.sale_id, l.line_no, strftime(s.sold_at, '%Y-%m-%d %H:%M:%S.%f'),
                  l.product_id, l.sku, l.product_name, l.category_id, l.quantity, l.unit_price,
                  l.unit_cost, l.line_total, l.line_cost, l.refunded_quantity, l.refunded_total,
                  l.refunded_cost
           FROM l JOIN s ON s.id = l.sale_id ORDER BY l.id""",
        "sale_lines.tsv",
    )
    db.close()


SALES_COLUMNS = (
    "id, number, channel_id, status, sold_at, units, total, cost_total, refunded_units, "
    "refunded_total, refunded_cost, @created"
)
SALES_SET = (
    "note = '', idempotency_key = NULL, request_hash = '', reservation_id = NULL, "
    "stock_sync = 'done', created_by_id = NULL, created_at = @created, updated_at = @created"
)
LINES_SET = "allocations = '[]'"
LINES_COLUMNS = (
    "id, sale_id, line_no, sold_at, product_id, sku, product_name, category_id, quantity, "
    "unit_price, unit_cost, line_total, line_cost, refunded_quantity, refunded_total, "
    "refunded_cost"
)


def load(server_url: str, database: str, workdir: Path) -> tuple[str, dict[str, float]]:
    """Create the database from the migrations and bulk-load the files; returns its URL."""
    timings: dict[str, float] = {}
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS `{database}`"))
        connection.execute(text(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4"))
    admin.dispose()
    url = make_url(server_url).set(database=database).render_as_string(hide_password=False)
    migrate.upgrade(url)
    loader = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"local_infile": True})
    started = time.perf_counter()

    def infile(table: str, file: str, columns: str, assign: str) -> None:
        with loader.connect() as connection:
            connection.execute(text("SET foreign_key_checks = 0, unique_checks = 0"))
            began = time.perf_counter()
            connection.execute(
                text(
                    f"LOAD DATA LOCAL INFILE '{workdir / file}' INTO TABLE {table} "
                    f"FIELDS TERMINATED BY '\\t' ({columns}) SET {assign}"
                )
            )
            timings[f"load {table}"] = time.perf_counter() - began

    with loader.connect() as connection:
        for code, name in ((f"c{n}", f"Channel {n}") for n in range(1, CHANNELS + 1)):
            connection.execute(
                text(
                    "INSERT INTO sales_channels (code, name, is_active, created_at, updated_at) "
                    "VALUES (:code, :name, 1, NOW(6), NOW(6))"
                ),
                {"code": code, "name": name},
            )
        warehouse = connection.execute(
            text("SELECT id FROM warehouses WHERE code = 'MAIN'")
        ).scalar_one()
    infile(
        "categories",
        "categories.tsv",
        "id, name, @parent, path",
        "parent_id = NULLIF(@parent, '\\\\N'), slug = CONCAT('c-', id), description = '', "
        "archived_at = NULL, created_at = NOW(6), updated_at = NOW(6)",
    )
    infile(
        "products",
        "products.tsv",
        "id, sku, name, @category, price, cost_price",
        "category_id = NULLIF(@category, '\\\\N'), description = '', status = 'active', "
        "low_stock_threshold = 10, archived_at = NULL, created_at = NOW(6), "
        "updated_at = NOW(6)",
    )
    infile(
        "stock_levels",
        "stock.tsv",
        "product_id, on_hand, reserved",
        f"warehouse_id = {warehouse}, updated_at = NOW(6)",
    )
    print("loading sales and sale_lines (side by side) ...", flush=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        loads = [
            pool.submit(infile, "sales", "sales.tsv", SALES_COLUMNS, SALES_SET),
            pool.submit(infile, "sale_lines", "sale_lines.tsv", LINES_COLUMNS, LINES_SET),
        ]
        for done in loads:
            done.result()
    with loader.connect() as connection:
        for table in ("sales", "sale_lines"):
            connection.execute(text(f"ANALYZE TABLE {table}"))
    timings["load total"] = time.perf_counter() - started
    print(f"loaded in {timings['load total']:.1f}s; rebuilding the rollups ...", flush=True)
    began = time.perf_counter()
    with loader.connect() as connection:
        rebuild_rollups(connection, engine=loader, workers=2)
        for table in ("report_sales_rollups", "report_product_rollups", "report_category_rollups"):
            connection.execute(text(f"ANALYZE TABLE {table}"))
    timings["rebuild rollups"] = time.perf_counter() - began
    loader.dispose()
    return url, timings


def duck(workdir: Path) -> duckdb.DuckDBPyConnection:
    """DuckDB in memory with the same rows (read from the files MariaDB loaded)."""
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    db.execute("SET enable_progress_bar = false")  # progress bars are no figures

    def read(table: str, file: str, columns: str) -> None:
        spec = ", ".join(
            f"'{name}': '{kind.replace('.', ',')}'"  # DECIMAL(14.2) avoids a comma here
            for name, kind in (c.strip().split(" ", 1) for c in columns.split(","))
        )
        db.execute(
            f"CREATE TABLE {table} AS SELECT * FROM read_csv('{workdir / file}', delim='\t', "
            f"header=false, nullstr='\\N', quote='', columns={{{spec}}})"
        )

    money, price = "DECIMAL(14.2)", "DECIMAL(12.2)"
    read("categories", "categories.tsv", "id INT, name VARCHAR, parent_id INT, path VARCHAR")
    read(
        "products",
        "products.tsv",
        f"id INT, sku VARCHAR, name VARCHAR, category_id INT, price {price}, cost_price {price}",
    )
    read("stock_levels", "stock.tsv", "product_id INT, on_hand INT, reserved INT")
    read(
        "sales",
        "sales.tsv",
        f"id BIGINT, number VARCHAR, channel_id INT, status VARCHAR, sold_at TIMESTAMP, "
        f"units INT, total {money}, cost_total {money}, refunded_units INT, "
        f"refunded_total {money}, refunded_cost {money}, created_at TIMESTAMP",
    )
    read(
        "sale_lines",
        "sale_lines.tsv",
        f"id BIGINT, sale_id BIGINT, line_no INT, sold_at TIMESTAMP, product_id INT, sku VARCHAR, "
        f"product_name VARCHAR, category_id INT, quantity INT, unit_price {price}, "
        f"unit_cost {price}, line_total {money}, line_cost {money}, refunded_quantity INT, "
        f"refunded_total {money}, refunded_cost {money}",
    )
    return db


# --- the reports, both ways -------------------------------------------------------------------


def local_ts(day: date) -> str:
    """The naive-UTC instant of the zone's midnight, as a DuckDB literal."""
    moment = datetime.combine(day, datetime.min.time(), ZONE).astimezone(UTC)
    return f"TIMESTAMP '{moment.replace(tzinfo=None).isoformat()}'"


def where_range(rng: DateRange, alias: str = "s") -> str:
    return (
        f"{alias}.sold_at >= {local_ts(rng.first)} AND "
        f"{alias}.sold_at < {local_ts(rng.last + timedelta(days=1))}"
    )


def offsets(rng: DateRange) -> list[tuple[datetime, int]]:
    """The zone's UTC offset (seconds) from each moment on, over the range: one entry per DST
    segment (found day by day, then to the second), so that local time is one addition."""
    start = datetime.combine(rng.first, datetime.min.time(), ZONE).astimezone(UTC)
    end = datetime.combine(rng.last + timedelta(days=1), datetime.min.time(), ZONE).astimezone(UTC)

    def offset(moment: datetime) -> int:
        delta = moment.astimezone(ZONE).utcoffset()
        return int(delta.total_seconds()) if delta else 0

    found = [(start, offset(start))]
    moment = start
    while moment < end:
        following = min(moment + timedelta(days=1), end)
        if offset(following) != found[-1][1]:
            low, high = moment, following  # the change lies in (low, high]
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                low, high = (middle, high) if offset(middle) == found[-1][1] else (low, middle)
            found.append((high, offset(high)))
        moment = following
    return found


def local_time(column: str, rng: DateRange) -> str:
    """``column`` (naive UTC) as the zone's local time over the range: a CASE over the DST
    segments, plain arithmetic per row instead of a time zone lookup."""
    segments = offsets(rng)
    if len(segments) == 1:
        return f"({column} + INTERVAL {segments[0][1]} SECOND)"
    whens = " ".join(
        f"WHEN {column} < TIMESTAMP '{moment.replace(tzinfo=None).isoformat()}' "
        f"THEN INTERVAL {previous} SECOND"
        for (moment, _), (_, previous) in zip(segments[1:], segments, strict=False)
    )
    return f"({column} + CASE {whens} ELSE INTERVAL {segments[-1][1]} SECOND END)"


# Net figures from the sales table's own totals: enough wherever no line is filtered on.
SALE_NET = (
    "sum(s.total - s.refunded_total) AS revenue, sum(s.cost_total - s.refunded_cost) AS cost, "
    "sum(s.units - s.refunded_units) AS units, count(*) FILTER (s.units > s.refunded_units) "
    "AS orders"
)
NET = (
    "sum(l.line_total - l.refunded_total) AS revenue, sum(l.line_cost - l.refunded_cost) AS cost,"
    " sum(l.quantity - l.refunded_quantity) AS units"
)
ORDERS = "count(DISTINCT l.sale_id) FILTER (l.quantity > l.refunded_quantity) AS orders"


def fig(revenue: Any, cost: Any, units: Any, orders: Any) -> tuple[Decimal, Decimal, int, int]:
    return (
        Decimal(revenue or 0).quantize(CENT),
        Decimal(cost or 0).quantize(CENT),
        int(units or 0),
        int(orders or 0),
    )


NOTHING = fig(0, 0, 0, 0)


def ours_fig(f: dict[str, Any]) -> tuple[Decimal, Decimal, int, int]:
    return fig(f["revenue"], f["cost"], f["units"], f["orders"])


def duck_series(db: Any, rng: DateRange, period: str) -> Any:
    """Revenue per local day/week/month: the sales table alone."""
    rows = db.execute(
        f"""SELECT date_trunc('{period}', {local_time("s.sold_at", rng)})::DATE AS d, {SALE_NET}
            FROM sales s WHERE {where_range(rng)} GROUP BY d"""
    ).fetchall()
    return {row[0]: fig(*row[1:]) for row in rows if fig(*row[1:]) != NOTHING}


def ours_series(answer: dict[str, Any]) -> Any:
    out = {}
    for bucket in answer["buckets"]:
        key = date.fromisoformat(bucket["label"] + ("-01" if len(bucket["label"]) == 7 else ""))
        value = ours_fig(bucket)
        if value != (Decimal("0.00"), Decimal("0.00"), 0, 0):
            out[key] = value
    return out


def duck_series_filtered(db: Any, rng: DateRange, period: str, line_filter: str) -> Any:
    """The same for some lines: those lines first, then their sales' times."""
    rows = db.execute(
        f"""SELECT date_trunc('{period}', {local_time("s.sold_at", rng)})::DATE AS d, {NET},
                   {ORDERS}
            FROM (SELECT * FROM sale_lines l WHERE {line_filter}) l
            JOIN sales s ON s.id = l.sale_id
            WHERE {where_range(rng)} GROUP BY d"""
    ).fetchall()
    # a bucket whose lines were all refunded nets to zero: compared as an empty bucket
    return {row[0]: fig(*row[1:]) for row in rows if fig(*row[1:]) != NOTHING}


def duck_breakdown(db: Any, rng: DateRange, by: str, limit: int) -> Any:
    if by == "channel":  # a sale has one channel: its own totals
        query = f"""SELECT s.channel_id AS k, {SALE_NET} FROM sales s
                    WHERE {where_range(rng)} GROUP BY k"""
    else:
        key, join = "l.product_id", ""
        if by == "category_top":
            key = "coalesce(c.top, 0)"
            join = (
                "LEFT JOIN (SELECT id, split_part(path, '/', 2)::INT AS top FROM categories) c "
                "ON c.id = l.category_id"
            )
        query = f"""SELECT {key} AS k, {NET}, {ORDERS}
                    FROM sales s JOIN sale_lines l ON l.sale_id = s.id {join}
                    WHERE {where_range(rng)} GROUP BY k"""
    rows = db.execute(f"SELECT * FROM ({query}) ORDER BY revenue DESC, k LIMIT {limit}").fetchall()
    return [(row[0], fig(*row[1:5])) for row in rows]


def ours_breakdown(answer: dict[str, Any]) -> Any:
    return [(row["id"] if row["id"] is not None else 0, ours_fig(row)) for row in answer["groups"]]


def duck_totals_two(db: Any, rng: DateRange, base: DateRange, group: str | None) -> Any:
    """Sums over two ranges (which may overlap) per group, from the sales table, in one query."""
    key = f"{group}" if group else "NULL"
    rows = db.execute(
        f"""SELECT true AS now, {key} AS k, {SALE_NET} FROM sales s
            WHERE {where_range(rng)} GROUP BY ALL
            UNION ALL
            SELECT false AS now, {key} AS k, {SALE_NET} FROM sales s
            WHERE {where_range(base)} GROUP BY ALL"""
    ).fetchall()
    now = {row[1]: fig(*row[2:6]) for row in rows if row[0]}
    then = {row[1]: fig(*row[2:6]) for row in rows if not row[0]}
    return now, then


def add_figs(figs: Any) -> Any:
    return tuple(sum(values) for values in zip(NOTHING, *figs, strict=True))


def duck_compare(db: Any, rng: DateRange, base: DateRange) -> Any:
    """Per channel and overall: a sale has one channel, so the channels add up (orders too)."""
    now, then = duck_totals_two(db, rng, base, "s.channel_id")
    return (
        add_figs(now.values()),
        add_figs(then.values()),
        {k: (now.get(k, NOTHING), then.get(k, NOTHING)) for k in sorted(set(now) | set(then))},
    )


def ours_compare(answer: dict[str, Any]) -> Any:
    def side(figs: dict[str, Any], which: str) -> Any:
        return fig(
            figs["revenue"][which], figs["cost"][which], figs["units"][which], figs["orders"][which]
        )

    return (
        side(answer["overall"], "current"),
        side(answer["overall"], "base"),
        {g["id"]: (side(g, "current"), side(g, "base")) for g in answer["groups"]},
    )


def duck_insight(db: Any, rng: DateRange, window: int, as_of: date) -> Any:
    rows = db.execute(
        f"""WITH sold AS (
              SELECT l.product_id, sum(l.quantity - l.refunded_quantity) AS units
              FROM sales s JOIN sale_lines l ON l.sale_id = s.id
              WHERE {where_range(rng)} GROUP BY l.product_id),
            stock AS (SELECT product_id, sum(on_hand - reserved) AS available
                      FROM stock_levels GROUP BY product_id)
            SELECT p.id, coalesce(st.available, 0), coalesce(so.units, 0)
            FROM products p LEFT JOIN stock st ON st.product_id = p.id
                 LEFT JOIN sold so ON so.product_id = p.id
            WHERE st.product_id IS NOT NULL OR so.product_id IS NOT NULL"""
    ).fetchall()
    out = {}
    for pid, available, units in rows:
        if available <= 0:
            cover: Decimal | None = Decimal("0.00")
            out_date: date | None = as_of
        elif units > 0:
            cover = (Decimal(available) * window / units).quantize(CENT, ROUND_HALF_UP)
            out_date = as_of + timedelta(days=-(-available * window // units))
        else:
            cover, out_date = None, None
        out[pid] = (int(available), int(units), cover, out_date)
    ranked = sorted(out.items(), key=lambda kv: (kv[1][2] is None, kv[1][2] or 0, kv[0]))
    return ranked[:50]


def ours_insight(answer: dict[str, Any]) -> Any:
    return [
        (
            item["product_id"],
            (
                item["available"],
                item["units_sold"],
                None if item["days_of_cover"] is None else Decimal(item["days_of_cover"]),
                None
                if item["projected_stockout_date"] is None
                else date.fromisoformat(item["projected_stockout_date"]),
            ),
        )
        for item in answer["items"]
    ]


def ours_summary(answer: dict[str, Any]) -> Any:
    k = answer["kpis"]
    return (
        fig(
            k["revenue"]["current"],
            k["cost"]["current"],
            k["units"]["current"],
            k["orders"]["current"],
        ),
        fig(k["revenue"]["base"], k["cost"]["base"], k["units"]["base"], k["orders"]["base"]),
    )


def duck_summary(db: Any, rng: DateRange, base: DateRange) -> Any:
    now, then = duck_totals_two(db, rng, base, None)
    return now.get(None, NOTHING), then.get(None, NOTHING)


def jsonable(model: Any) -> str:
    """The answer's JSON body, as the report routes write it (read back after the timing)."""
    body: str = model.model_dump_json(by_alias=True)
    return body


@dataclass
class Case:
    name: str
    ours: Callable[[Connection], str]  # the answer's JSON body
    theirs: Callable[[], Any]
    ours_shape: Callable[[dict[str, Any]], Any]


def our_series(connection: Connection, *, rng: DateRange, period: Period, filters: Filters) -> str:
    return jsonable(
        service.revenue_series(
            connection=connection,
            rng=rng,
            period=period,
            week_start=Weekday.MONDAY,
            filters=filters,
        )
    )


def our_compare(connection: Connection, *, rng: DateRange) -> str:
    return jsonable(
        service.compare(
            connection=connection,
            rng=rng,
            against=Against.PREVIOUS_YEAR,
            custom=None,
            grouping=Grouping(Dimension.CHANNEL),
            filters=Filters(),
            limit=50,
        )
    )


def our_breakdown(connection: Connection, *, rng: DateRange, grouping: Grouping) -> str:
    return jsonable(
        service.breakdown(
            connection=connection,
            rng=rng,
            grouping=grouping,
            filters=Filters(),
            sort=SortKey.REVENUE,
            limit=10,
        )
    )


def our_summary(connection: Connection, *, rng: DateRange) -> str:
    return jsonable(service.summary(connection=connection, rng=rng, filters=Filters()))


def our_insight(connection: Connection, *, rng: DateRange) -> str:
    return jsonable(
        service.inventory_insight(
            connection=connection,
            as_of=rng.last,
            zone=ZONE,
            window_days=rng.days,
            filters=Filters(),
            limit=50,
            offset=0,
        )
    )


def cases(
    db: Any, full: DateRange, recent: DateRange, top_product: int, top_category: int
) -> list[Case]:
    in_tree = f"l.category_id IN (SELECT id FROM categories WHERE path LIKE '/{top_category}/%')"
    found: list[Case] = []
    for label, rng in (("full", full), ("30 days", recent)):
        for period in (Period.DAY, Period.MONTH):
            found.append(
                Case(
                    f"revenue by {period.value}, {label}",
                    partial(our_series, rng=rng, period=period, filters=Filters()),
                    partial(duck_series, db, rng, period.value),
                    ours_series,
                )
            )
        product = Filters(product_ids=(top_product,))
        found.append(
            Case(
                f"revenue by week, one product, {label}",
                partial(our_series, rng=rng, period=Period.WEEK, filters=product),
                partial(duck_series_filtered, db, rng, "week", f"l.product_id = {top_product}"),
                ours_series,
            )
        )
        category = Filters(category_ids=(top_category,))
        found.append(
            Case(
                f"revenue by week, one category tree, {label}",
                partial(our_series, rng=rng, period=Period.WEEK, filters=category),
                partial(duck_series_filtered, db, rng, "week", in_tree),
                ours_series,
            )
        )
        base = base_range(rng, Against.PREVIOUS_YEAR)
        found.append(
            Case(
                f"compare with a year earlier, per channel, {label}",
                partial(our_compare, rng=rng),
                partial(duck_compare, db, rng, base),
                ours_compare,
            )
        )
        for by, grouping, duck_by in (
            ("product", Grouping(Dimension.PRODUCT), "product"),
            (
                "top-level category",
                Grouping(Dimension.CATEGORY, CategoryRollup.TOP_LEVEL),
                "category_top",
            ),
            ("channel", Grouping(Dimension.CHANNEL), "channel"),
        ):
            found.append(
                Case(
                    f"top 10 by {by}, {label}",
                    partial(our_breakdown, rng=rng, grouping=grouping),
                    partial(duck_breakdown, db, rng, duck_by, 10),
                    ours_breakdown,
                )
            )
        previous = base_range(rng, Against.PREVIOUS_PERIOD)
        found.append(
            Case(
                f"summary KPIs, {label}",
                partial(our_summary, rng=rng),
                partial(duck_summary, db, rng, previous),
                ours_summary,
            )
        )
        found.append(
            Case(
                f"inventory insight, {label} window",
                partial(our_insight, rng=rng),
                partial(duck_insight, db, rng, rng.days, rng.last),
                ours_insight,
            )
        )
    return found


WARM_SECONDS = 0.005  # untimed work before each timed call (see ``timed``)


def timed(warm: Callable[[], Any], call: Callable[[], Any]) -> float:
    """The time of ``call``, after ``warm`` (the question on its first range, untimed) until
    5 ms of work is done: on this VM a core left idle for a moment runs the next few
    milliseconds of work up to twice as slowly, and each side, idle while the other runs,
    wakes it itself."""
    began = time.perf_counter()
    while time.perf_counter() - began < WARM_SECONDS:
        warm()
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def variants_of(db: Any, count: int, *, same_range: bool) -> list[list[Case]]:
    """The cases ``count`` times, each time on a range not asked before (both ends a day
    earlier each time), as a dashboard's questions come: nothing is served from
    SQLAlchemy's cache of a statement compiled for a repeat. ``same_range``: the same range
    every time (the figures before 2026-12-02's fourth session)."""
    found = []
    for k in range(count):
        shift = timedelta(days=0 if same_range else k)
        full = DateRange(FIRST + shift, LAST - shift, ZONE)
        recent = DateRange(LAST - timedelta(days=29) - shift, LAST - shift, ZONE)
        found.append(cases(db, full, recent, top_product=1, top_category=1))
    return found


def duck_process(pipe: Pipe, workdir: Path, rounds: int, same_range: bool) -> None:
    """DuckDB in a process of its own: it loads the files, then for each question asked for
    (by index and range) sends back its answer on the first range (range 0) or one call's
    time (``timed``). In the process that times our reports, DuckDB's memory and threads
    slowed them (a 30-day summary 1.17 ms alone, 1.6-1.85 once DuckDB had answered its
    queries there); a service runs no DuckDB."""
    began = time.perf_counter()
    db = duck(workdir)
    pipe.send(time.perf_counter() - began)
    variants = variants_of(db, rounds + 1, same_range=same_range)
    while (asked := pipe.recv()) is not None:
        index, k = asked
        first = variants[0][index].theirs
        pipe.send(first() if k == 0 else timed(first, variants[k][index].theirs))


def run(engine: Engine, duckdb_side: Pipe, rounds: int, *, same_range: bool) -> bool:
    """Both answers to every question on its first range, compared; then each question
    timed ``rounds`` times on each side, each time on a new range, ours here and DuckDB's
    in its process taking turns, question after question, round after round: each side's
    median is taken over the same stretch of time, as the machine speeds up and slows down
    (its phases last from a fraction of a second to seconds), not over a few milliseconds
    of its own."""
    variants = variants_of(None, rounds + 1, same_range=same_range)

    def ours(case: Case) -> str:
        with snapshot_connection(engine) as connection:  # as the report routes read
            return case.ours(connection)

    count = len(variants[0])
    answers = []
    for index in range(count):
        duckdb_side.send((index, 0))
        answers.append((json.loads(ours(variants[0][index])), duckdb_side.recv()))
    our_times: list[list[float]] = [[] for _ in range(count)]
    duck_times: list[list[float]] = [[] for _ in range(count)]
    for k in range(1, rounds + 1):
        for index in range(count):
            first = partial(ours, variants[0][index])
            our_times[index].append(timed(first, partial(ours, variants[k][index])))
            duckdb_side.send((index, k))
            duck_times[index].append(duckdb_side.recv())
    print(f"\n{'report':<52} {'ours ms':>10} {'duckdb ms':>10} {'ratio':>7}  equal")
    all_equal, all_fast = True, True
    for index, case in enumerate(variants[0]):
        our_answer, duck_answer = answers[index]
        equal = case.ours_shape(our_answer) == duck_answer
        if not equal:
            print(
                f"  MISMATCH in {case.name}:\n    ours:   {str(case.ours_shape(our_answer))[:400]}"
            )
            print(f"    duckdb: {str(duck_answer)[:400]}")
        all_equal &= equal
        our_time = statistics.median(our_times[index])
        duck_time = statistics.median(duck_times[index])
        ratio = our_time / duck_time
        all_fast &= ratio <= 0.5
        sources = "+".join(
            s.split("_")[1] if s.startswith("report_") else "raw"
            for s in our_answer.get("sources", [])
        )
        print(
            f"{case.name:<52} {our_time * 1000:>10.1f} {duck_time * 1000:>10.1f} "
            f"{ratio:>7.3f}  {'yes' if equal else 'NO'}  [{sources}]"
        )
    print(f"\nall answers equal: {all_equal}; every ratio <= 0.5: {all_fast}")
    return all_equal


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sales", type=int, default=10_000_000)
    parser.add_argument(
        "--server-url",
        default=os.environ.get("SHOP_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306"),
    )
    parser.add_argument("--database", default="shop_bench")
    parser.add_argument("--workdir", type=Path, default=Path("var/bench"))
    parser.add_argument(
        "--rounds", type=int, default=7, help="timed calls of each question, on each side"
    )
    parser.add_argument("--skip-load", action="store_true", help="reuse database and files")
    parser.add_argument(
        "--same-range",
        action="store_true",
        help="time each question on one range (by default each call's range is a day earlier)",
    )
    parser.add_argument(
        "--skip-generate", action="store_true", help="load the files already in --workdir"
    )
    parser.add_argument("--seed", type=float, default=0.42)
    args = parser.parse_args()

    url = (
        make_url(args.server_url).set(database=args.database).render_as_string(hide_password=False)
    )
    if not args.skip_load:
        if not args.skip_generate:
            began = time.perf_counter()
            generate(args.workdir, args.sales, args.seed)
            print(f"generated {args.sales:,} sales in {time.perf_counter() - began:.1f}s")
        url, timings = load(args.server_url, args.database, args.workdir)
        for name, seconds in timings.items():
            print(f"{name:<24} {seconds:8.1f}s")
    engine = make_engine(url)
    with engine.connect() as connection:
        counts = connection.execute(
            text("SELECT (SELECT count(*) FROM sales), (SELECT count(*) FROM sale_lines)")
        ).one()
        pool = connection.execute(text("SELECT @@innodb_buffer_pool_size")).scalar_one()
        tables = ("sales", "product", "category")
        rollups = {
            name: connection.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()
            for name in (
                *(f"report_{t}_rollups" for t in tables),
                "report_product_totals",
            )
        }
    print(f"MariaDB: {counts[0]:,} sales, {counts[1]:,} lines; buffer pool {int(pool) >> 20} MiB")
    total = sum(rollups.values())
    print(
        f"rollup rows: {total:,} = {total / counts[1]:.2f} per sale line ("
        + ", ".join(f"{name} {rows:,}" for name, rows in rollups.items())
        + ")"
    )
    if not args.skip_load:
        rate = counts[0] / timings["rebuild rollups"]
        print(f"rollup rebuild: {rate:,.0f} sales/s")
    spawn = multiprocessing.get_context("spawn")
    duckdb_side, child_end = spawn.Pipe()
    child = spawn.Process(
        target=duck_process,
        args=(child_end, args.workdir, args.rounds, args.same_range),
        daemon=True,
    )
    child.start()
    print(f"DuckDB {duckdb.__version__} loaded the same files in {duckdb_side.recv():.1f}s")
    began = time.perf_counter()
    inmemory.ZONES = (ZONE_NAME,)  # the store's timezone (SHOP_STORE_TIMEZONE), as the reports'
    copy = inmemory.load_now(engine)  # as sales_service loads it in the background at start
    if copy is not None:
        size = sum(
            c.key.nbytes
            + c.start.nbytes
            + c.measures.nbytes
            + sum(g.nbytes for g in c.groups.values())
            for c in copy.tables.values()
        )
        print(
            f"rollups held in memory: {copy.rows:,} rows, {size / 2**20:.0f} MiB, and "
            f"{len(copy.lines):,} sale lines of the UTC hours {sorted(copy.lines.hours)} "
            f"({copy.lines.columns.nbytes / 2**20:.0f} MiB), loaded in "
            f"{time.perf_counter() - began:.1f}s"
        )
    ok = run(engine, duckdb_side, args.rounds, same_range=args.same_range)
    duckdb_side.send(None)
    child.join()
    engine.dispose()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
