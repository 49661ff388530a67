"""How fast the imports go, against the least SQL an expert would write for the same result,
and how much memory they take.

Creates two fresh MariaDB/MySQL databases (migrated with the Alembic history): one for our
code, one for the expert baseline. Writes a products CSV of ``--rows`` rows (in 20
categories, created by the import), a stock count of the same products and an Amazon order
report of ``--rows`` order lines (orders of 1 to 3 lines), then runs, through the same code
as the API upload and the CLI (``products_service.imports.service``,
``sales_service.imports.service``), each file in one transaction as a real run does (with
its events, audit entries and ledger rows):

1. the products import (all rows new), then the baseline on the same file;
2. the same file again (every row unchanged: nothing written), then the baseline again;
3. the stock count import (one count correction per row; no baseline);
4. the order report as history (sales, their lines and their events; no stock), then the
   baseline; then the report rollups' consumer catching up on our events (timed, and with
   the import: the orders and their rollups) and on the baseline's (to compare them); then
   the same report again (nothing new), and the baseline again.

For each it prints rows/s, wall and CPU seconds of this process, SQL statements sent per
1,000 rows (the server's own count for the connection), the process's peak memory, and the
ratio of our time to the baseline's. Then it checks that both databases hold the same
result (products, categories, events, audit entries, sales, lines and rollups, compared by
counts and sums) and the ledger, and drops both databases. Run it with two sizes to see
memory stay flat while the file grows.

The baseline (``expert_products``, ``expert_orders``) is what an expert would write for the
same answer with no framework: the file read with the ``csv`` module, then per chunk of
``CHUNK`` rows one lookup of what is there already, one multi-row INSERT (products: ... ON
DUPLICATE KEY UPDATE, for new and changed rows) and the event and audit rows, through the
bare DB-API cursor. It checks nothing our import checks beyond what the same result needs.

    .venv/bin/python bench/imports.py                   # 50,000 rows
    .venv/bin/python bench/imports.py --rows 200000
"""

import argparse
import csv
import itertools
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy import Connection, Engine, insert  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from common import migrate  # noqa: E402
from common.app import freeze_startup_heap  # noqa: E402
from common.db import make_engine, make_sessionmaker, snapshot_session, utcnow  # noqa: E402
from common.imports import ImportReport  # noqa: E402
from common.models import SalesChannel  # noqa: E402
from products_service.imports.service import (  # noqa: E402
    ImportOptions,
    import_products,
    import_stock_counts,
)
from products_service.inventory.service import check_ledger  # noqa: E402
from sales_service.imports.service import (  # noqa: E402
    OrderImportOptions,
    OrderProfile,
    import_orders,
)
from sales_service.reports.consumer import catch_up  # noqa: E402

Importer = Callable[..., ImportReport]
CHUNK = 1000  # the baseline's rows per statement
CENT = Decimal("0.01")
T = TypeVar("T")


def write_files(directory: Path, rows: int) -> tuple[Path, Path]:
    catalog = directory / "catalog.csv"
    counts = directory / "counts.csv"
    with catalog.open("w") as out:
        out.write("sku,name,description,category,price,cost_price,low_stock_threshold,status\n")
        for n in range(rows):
            out.write(
                f'BENCH-{n:08d},"Product {n}, bench","A product, made up",'
                f"Bench/Group {n % 20},{10 + n % 90}.{n % 100:02d},{5 + n % 5}.25,{n % 15},active\n"
            )
    with counts.open("w") as out:
        out.write("sku,warehouse,counted_quantity\n")
        for n in range(rows):
            out.write(f"BENCH-{n:08d},MAIN,{1 + n % 40}\n")
    return catalog, counts


def write_orders(directory: Path, rows: int) -> Path:
    """An Amazon order report (tab-separated) of this many lines over the bench's SKUs."""
    report = directory / "amazon-orders.txt"
    with report.open("w") as out:
        out.write(
            "amazon-order-id\tpurchase-date\torder-status\tsku\tquantity\tcurrency\titem-price\n"
        )
        order, left = 0, 0
        for n in range(rows):
            if left == 0:
                order, left = order + 1, 1 + order % 3
            left -= 1
            day = 1 + order % 28
            out.write(
                f"B{order:09d}\t2026-02-{day:02d}T{order % 24:02d}:15:00+00:00\tShipped\t"
                f"BENCH-{n % rows:08d}\t{1 + n % 3}\tUSD\t{(1 + n % 3) * 1050 // 100}."
                f"{(1 + n % 3) * 1050 % 100:02d}\n"
            )
    return report


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def statements_sent(connection: Any) -> int:
    """The server's count of statements this connection sent (a DB-API connection)."""
    cursor = connection.cursor()
    cursor.execute("SHOW SESSION STATUS LIKE 'Questions'")
    count = int(cursor.fetchone()[1])
    cursor.close()
    return count


@dataclass(frozen=True)
class Timing:
    rows: int
    seconds: float
    cpu: float  # this process's
    statements: int  # sent by the connection that ran it, as the server counted them

    def line(self, label: str, extra: str = "") -> str:
        return (
            f"{label:<20} {self.rows:>8,} rows {self.seconds:6.2f} s "
            f"{self.rows / self.seconds:>7,.0f}/s  cpu {self.cpu:5.2f} s "
            f"{self.statements * 1000 / self.rows:6.1f} stmts/1k"
            f"  rss {peak_mib():,.0f} MiB  {extra}"
        )


def measure(run: Callable[[], int], connection: Any, commit: Callable[[], None]) -> Timing:
    """Time ``run`` (it answers the rows it read) and its commit, and count the statements
    it sent on ``connection`` (a DB-API connection)."""
    before = statements_sent(connection)
    started, cpu = time.perf_counter(), time.process_time()
    rows = run()
    statements = statements_sent(connection) - before - 1  # less the SHOW that counted them
    commit()
    return Timing(rows, time.perf_counter() - started, time.process_time() - cpu, statements)


def ours(label: str, session: Session, run: Importer, path: Path, options: object) -> Timing:
    """Our import of the file, in one transaction, committed."""
    reports: list[ImportReport] = []

    def read() -> int:
        with path.open("rb") as binary:
            reports.append(run(session=session, binary=binary, options=options))
        return reports[0].rows_read

    # The session's transaction holds its connection until the commit.
    connection = session.connection().connection.dbapi_connection
    timing = measure(read, connection, session.commit)
    [report] = reports
    assert report.ok, report.errors[:5]
    counts = f"created {report.created:,}, updated {report.updated:,}"
    print(timing.line(label, f"{counts}, unchanged {report.unchanged:,}"))
    return timing


def expert(engine: Engine, run: Callable[[Any], int], against: Timing) -> None:
    """The baseline on its own database, in one transaction, beside ours with the ratio."""
    raw = engine.raw_connection()
    try:
        timing = measure(lambda: run(raw.cursor()), raw, raw.commit)
    finally:
        raw.close()
    print(timing.line("  baseline", f"ours/baseline {against.seconds / timing.seconds:.2f}x"))


def chunks(rows: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def marks(count: int) -> str:
    return ", ".join(["%s"] * count)


def insert_sql(table: str, columns: Sequence[str], tail: str = "") -> str:
    """An INSERT of one row (a dict) of these columns, every value a placeholder: the driver
    then sends many rows as one multi-row INSERT (a literal among them makes it send one
    statement a row)."""
    values = ", ".join(f"%({column})s" for column in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}){tail}"  # noqa: S608


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# --- the expert baseline: products ---------------------------------------------------------
# Its SQL is built from constant names and placeholders only.

PRODUCT_FIELDS = (
    "name",
    "description",
    "category_id",
    "price",
    "cost_price",
    "status",
    "low_stock_threshold",
)
UPSERT_PRODUCTS = insert_sql(
    "products",
    ("sku", *PRODUCT_FIELDS, "created_at", "updated_at"),
    " ON DUPLICATE KEY UPDATE "
    + ", ".join(f"{f} = VALUES({f})" for f in (*PRODUCT_FIELDS, "updated_at")),
)
EVENT_COLUMNS = ("type", "subject_id", "payload", "occurred_at")
AUDIT_COLUMNS = ("action", "entity_type", "entity_id", "changes", "occurred_at")
Categories = dict[tuple[str, ...], tuple[int, str]]  # path, names in lower case -> id, path


def expert_products(path: Path) -> Callable[[Any], int]:
    """Upsert the catalog by SKU, with the same events and audit entries as our import: per
    chunk, one SELECT ... FOR UPDATE of the SKUs there already (to tell new, changed and
    unchanged apart), one INSERT ... ON DUPLICATE KEY UPDATE of the new and changed rows, one
    SELECT of the new ones' ids, one INSERT of the events and one of the audit entries. The
    category paths are created as met (one INSERT, one UPDATE of the path, one audit row)."""

    def run(cursor: Any) -> int:
        categories: Categories = {}
        names: dict[int, tuple[str, ...]] = {}
        cursor.execute("SELECT id, name, parent_id, path FROM categories ORDER BY LENGTH(path)")
        for category_id, name, parent_id, tree_path in cursor.fetchall():
            names[category_id] = (*names.get(parent_id, ()), name.casefold())
            categories[names[category_id]] = (category_id, tree_path)
        rows = 0
        with path.open(newline="") as text_file:
            for chunk in chunks(csv.DictReader(text_file)):
                rows += len(chunk)
                _expert_product_chunk(cursor, chunk, categories)
        return rows

    return run


def _category(cursor: Any, categories: Categories, path: str, now: datetime) -> int:
    segments = tuple(s.strip() for s in path.split("/"))
    parent: tuple[int, str] | None = None
    for depth in range(1, len(segments) + 1):
        key = tuple(s.casefold() for s in segments[:depth])
        if key not in categories:
            name = segments[depth - 1]
            row = {
                "name": name,
                "slug": "-".join(name.lower().split()),
                "description": "",
                "parent_id": parent[0] if parent else None,
                "path": "/",
                "created_at": now,
                "updated_at": now,
            }
            cursor.execute(insert_sql("categories", tuple(row)), row)
            category_id = cursor.lastrowid
            tree_path = f"{parent[1] if parent else '/'}{category_id}/"
            cursor.execute(
                "UPDATE categories SET path = %s WHERE id = %s", (tree_path, category_id)
            )
            shown = ("description", "name", "parent_id", "slug")
            changes = {f: {"before": None, "after": row[f]} for f in shown if row[f] is not None}
            entry = {
                "action": "category.created",
                "entity_type": "category",
                "entity_id": category_id,
                "changes": json.dumps(changes, separators=(",", ":")),
                "occurred_at": now,
            }
            cursor.execute(insert_sql("audit_log", AUDIT_COLUMNS), entry)
            categories[key] = (category_id, tree_path)
        parent = categories[key]
    assert parent is not None
    return parent[0]


def _expert_product_chunk(cursor: Any, chunk: list[dict[str, str]], categories: Categories) -> None:
    now = now_utc()
    cursor.execute(
        f"SELECT id, sku, {', '.join(PRODUCT_FIELDS)} FROM products "  # noqa: S608
        f"WHERE sku IN ({marks(len(chunk))}) FOR UPDATE",
        [row["sku"] for row in chunk],
    )
    there = {found[1].casefold(): found for found in cursor.fetchall()}
    written = []
    created: list[dict[str, Any]] = []
    changed: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
    for row in chunk:
        values: dict[str, Any] = {
            "sku": row["sku"],
            "name": row["name"],
            "description": row["description"],
            "category_id": _category(cursor, categories, row["category"], now),
            "price": Decimal(row["price"]),
            "cost_price": Decimal(row["cost_price"]),
            "status": row["status"],
            "low_stock_threshold": int(row["low_stock_threshold"]),
            "created_at": now,
            "updated_at": now,
        }
        old = there.get(row["sku"].casefold())
        if old is None:
            created.append(values)
        else:
            before = dict(zip(PRODUCT_FIELDS, old[2:], strict=True))
            diff = {
                f: {"before": before[f], "after": values[f]}
                for f in sorted(PRODUCT_FIELDS)
                if before[f] != values[f]
            }
            if not diff:
                continue
            changed.append((old[0], values, diff))
        written.append(values)
    if not written:
        return
    cursor.executemany(UPSERT_PRODUCTS, written)
    ids: dict[str, int] = {}
    if created:
        cursor.execute(
            f"SELECT id, sku FROM products WHERE sku IN ({marks(len(created))})",  # noqa: S608
            [values["sku"] for values in created],
        )
        ids = {sku.casefold(): product_id for product_id, sku in cursor.fetchall()}
    events, entries = [], []
    for values in created:
        product_id = ids[values["sku"].casefold()]
        events.append(_catalog_event("product.created", product_id, values, {}, now))
        audited = sorted(("sku", *PRODUCT_FIELDS))
        changes = {
            f: {"before": None, "after": values[f]} for f in audited if values[f] is not None
        }
        entries.append(_audit_entry("product.created", product_id, changes, now))
    for product_id, values, diff in changed:
        previous = {f: c["before"] for f, c in diff.items()}
        extra = {"changed": list(diff), "previous": previous}
        events.append(_catalog_event("product.updated", product_id, values, extra, now))
        entries.append(_audit_entry("product.updated", product_id, diff, now))
    cursor.executemany(insert_sql("products_outbox", EVENT_COLUMNS), events)
    cursor.executemany(insert_sql("audit_log", AUDIT_COLUMNS), entries)


def _catalog_event(
    kind: str, product_id: int, values: dict[str, Any], extra: dict[str, Any], now: datetime
) -> dict[str, Any]:
    shown = ("sku", "name", "category_id", "price", "cost_price", "status", "low_stock_threshold")
    payload = {"product_id": product_id, **{f: values[f] for f in shown}, **extra}
    return {
        "type": kind,
        "subject_id": product_id,
        "payload": json.dumps(payload, default=str, separators=(",", ":")),
        "occurred_at": now,
    }


def _audit_entry(
    action: str, product_id: int, changes: dict[str, Any], now: datetime
) -> dict[str, Any]:
    return {
        "action": action,
        "entity_type": "product",
        "entity_id": product_id,
        "changes": json.dumps(changes, default=str, separators=(",", ":")),
        "occurred_at": now,
    }


# --- the expert baseline: orders -----------------------------------------------------------

SALE_COLUMNS = (
    "number",
    "channel_id",
    "status",
    "sold_at",
    "units",
    "total",
    "cost_total",
    "refunded_units",
    "refunded_total",
    "refunded_cost",
    "note",
    "request_hash",
    "stock_sync",
    "external_order_id",
    "created_at",
    "updated_at",
)
LINE_COLUMNS = (
    "sale_id",
    "line_no",
    "sold_at",
    "product_id",
    "sku",
    "product_name",
    "category_id",
    "category_name",
    "quantity",
    "unit_price",
    "unit_cost",
    "line_total",
    "line_cost",
    "refunded_quantity",
    "refunded_total",
    "refunded_cost",
    "allocations",
)


def expert_orders(path: Path, channel_id: int, note: str) -> Callable[[Any], int]:
    """Each order a sale of the channel with its lines' snapshots and its ``sale.recorded``
    event, once per order id: per chunk of whole orders, one SELECT of their products, one
    of the order ids imported already, one INSERT of the sales, one SELECT of their ids, one
    UPDATE numbering them, one INSERT of their lines and one of their events."""

    def run(cursor: Any) -> int:
        rows = 0
        with path.open(newline="") as text_file:
            reader = csv.DictReader(text_file, delimiter="\t")
            orders = itertools.groupby(reader, key=lambda row: row["amazon-order-id"])
            for chunk in chunks(((order, list(lines)) for order, lines in orders), CHUNK // 2):
                rows += sum(len(lines) for _, lines in chunk)
                _expert_order_chunk(cursor, chunk, channel_id, note)
        return rows

    return run


def _expert_order_chunk(
    cursor: Any, chunk: list[tuple[str, list[dict[str, str]]]], channel_id: int, note: str
) -> None:
    now = now_utc()
    skus = {line["sku"] for _, lines in chunk for line in lines}
    cursor.execute(
        "SELECT p.sku, p.id, p.name, p.category_id, c.name, p.cost_price FROM products p "  # noqa: S608
        "LEFT JOIN categories c ON c.id = p.category_id "
        f"WHERE p.sku IN ({marks(len(skus))})",
        list(skus),
    )
    products = {found[0].casefold(): found for found in cursor.fetchall()}
    by_order = f"channel_id = %s AND external_order_id IN ({marks(len(chunk))})"
    cursor.execute(
        f"SELECT external_order_id FROM sales WHERE {by_order}",  # noqa: S608
        [channel_id, *(order for order, _ in chunk)],
    )
    there = {found[0].casefold() for found in cursor.fetchall()}
    sales: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for order, rows in chunk:
        if order.casefold() in there:
            continue
        sold_at = datetime.fromisoformat(rows[0]["purchase-date"]).astimezone(UTC)
        lines = []
        for number, row in enumerate(rows, start=1):
            sku, product_id, name, category_id, category_name, cost = products[
                row["sku"].casefold()
            ]
            quantity = int(row["quantity"])
            price = (Decimal(row["item-price"]) / quantity).quantize(CENT)
            lines.append(
                {
                    "line_no": number,
                    "sold_at": sold_at.replace(tzinfo=None),
                    "product_id": product_id,
                    "sku": sku,
                    "product_name": name,
                    "category_id": category_id,
                    "category_name": category_name,
                    "quantity": quantity,
                    "unit_price": price,
                    "unit_cost": cost,
                    "line_total": price * quantity,
                    "line_cost": cost * quantity,
                    "refunded_quantity": 0,
                    "refunded_total": 0,
                    "refunded_cost": 0,
                    "allocations": "[]",
                }
            )
        sale = {
            "number": f"T-{order}",
            "channel_id": channel_id,
            "status": "completed",
            "sold_at": sold_at,
            "units": sum(line["quantity"] for line in lines),
            "total": sum((line["line_total"] for line in lines), Decimal("0.00")),
            "cost_total": sum((line["line_cost"] for line in lines), Decimal("0.00")),
            "refunded_units": 0,
            "refunded_total": 0,
            "refunded_cost": 0,
            "note": note,
            "request_hash": "",
            "stock_sync": "done",
            "external_order_id": order,
            "created_at": now,
            "updated_at": now,
        }
        sales.append((sale, lines))
    if not sales:
        return
    cursor.executemany(
        insert_sql("sales", SALE_COLUMNS),
        [{**sale, "sold_at": sale["sold_at"].replace(tzinfo=None)} for sale, _ in sales],
    )
    cursor.execute(
        f"SELECT external_order_id, id FROM sales WHERE {by_order}",  # noqa: S608
        [channel_id, *(sale["external_order_id"] for sale, _ in sales)],
    )
    ids = {order.casefold(): sale_id for order, sale_id in cursor.fetchall()}
    cursor.execute(
        "UPDATE sales SET number = CONCAT('S-', LPAD(id, 8, '0')) "  # noqa: S608
        f"WHERE id IN ({marks(len(ids))})",
        list(ids.values()),
    )
    events = []
    for sale, lines in sales:
        sale_id = ids[sale["external_order_id"].casefold()]
        for line in lines:
            line["sale_id"] = sale_id
        states = [
            {
                "product_id": line["product_id"],
                "category_id": line["category_id"],
                "units": line["quantity"],
                "revenue": str(line["line_total"]),
                "cost": str(line["line_cost"]),
            }
            for line in lines
        ]
        payload = {
            "sale_id": sale_id,
            "number": f"S-{sale_id:08d}",
            "channel_id": channel_id,
            "sold_at": sale["sold_at"].strftime("%Y-%m-%dT%H:%M:%SZ"),
            "status": "completed",
            "total": str(sale["total"]),
            "units": sale["units"],
            "refunded_total": "0.00",
            "refunded_units": 0,
            "lines_before": [],
            "lines_after": states,
        }
        event = {
            "type": "sale.recorded",
            "subject_id": sale_id,
            "payload": json.dumps(payload, separators=(",", ":")),
        }
        events.append({**event, "occurred_at": now})
    cursor.executemany(
        insert_sql("sale_lines", LINE_COLUMNS), [line for _, lines in sales for line in lines]
    )
    cursor.executemany(insert_sql("sales_outbox", EVENT_COLUMNS), events)


# --- the same result? ----------------------------------------------------------------------

# What each table holds, in counts and sums; the catalog's events only (the stock count's
# are ours alone).
FINGERPRINTS = {
    "products": "COUNT(*), SUM(price), SUM(cost_price), SUM(low_stock_threshold), "
    "COUNT(DISTINCT category_id) FROM products",
    "categories": "COUNT(*), COUNT(DISTINCT path) FROM categories",
    "catalog events": "COUNT(*), COUNT(DISTINCT type), SUM(CHAR_LENGTH(payload)) "
    "FROM products_outbox WHERE type LIKE 'product.%%'",
    "audit entries": "COUNT(*), COUNT(DISTINCT action), SUM(CHAR_LENGTH(changes)) FROM audit_log",
    "sales": "COUNT(*), SUM(units), SUM(total), SUM(cost_total), MIN(number), MAX(number) "
    "FROM sales",
    "sale lines": "COUNT(*), SUM(quantity), SUM(line_total), SUM(line_cost), SUM(unit_price), "
    "COUNT(DISTINCT category_id) FROM sale_lines",
    "sale events": "COUNT(*), COUNT(DISTINCT type), SUM(CHAR_LENGTH(payload)) FROM sales_outbox",
    "sales rollups": "COUNT(*), SUM(orders), SUM(units), SUM(revenue), SUM(cost) "
    "FROM report_sales_rollups",
    "product rollups": "COUNT(*), SUM(orders), SUM(units), SUM(revenue), SUM(cost) "
    "FROM report_product_rollups",
    "category rollups": "COUNT(*), SUM(orders), SUM(units), SUM(revenue), SUM(cost) "
    "FROM report_category_rollups",
}


def fingerprint(connection: Connection) -> dict[str, tuple[Any, ...]]:
    return {
        name: tuple(connection.exec_driver_sql(f"SELECT {query}").one())
        for name, query in FINGERPRINTS.items()
    }


def compare(engine: Engine, baseline: Engine) -> None:
    with engine.connect() as a, baseline.connect() as b:
        found, expected = fingerprint(a), fingerprint(b)
    differ = [table for table in FINGERPRINTS if found[table] != expected[table]]
    if differ:
        for table in differ:
            print(f"DIFFERENT {table}: ours {found[table]}, baseline {expected[table]}")
    else:
        print(f"same result as the baseline (counts and sums of {', '.join(FINGERPRINTS)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("SHOP_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306"),
        help="server to create the bench databases on (default: the local MariaDB as root)",
    )
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    freeze_startup_heap()  # as the CLI and the services do once started

    with tempfile.TemporaryDirectory() as scratch:
        catalog, counts = write_files(Path(scratch), args.rows)
        orders = write_orders(Path(scratch), args.rows)
        size = catalog.stat().st_size + counts.stat().st_size + orders.stat().st_size
        print(f"files: {args.rows:,} rows each, {size / 2**20:,.1f} MiB in all")
        print(f"load average: {', '.join(f'{n:.2f}' for n in os.getloadavg())}")
        print(f"peak RSS before importing: {peak_mib():,.0f} MiB")
        with (
            migrate.scratch_database(args.mysql_url, "shop_bench") as url,
            migrate.scratch_database(args.mysql_url, "shop_bench_baseline") as baseline_url,
        ):
            engine, baseline = make_engine(url), make_engine(baseline_url)
            try:
                run(engine, baseline, catalog, counts, orders)
            finally:
                engine.dispose()
                baseline.dispose()
        print(f"load average: {', '.join(f'{n:.2f}' for n in os.getloadavg())}")
    return 0


def run(engine: Engine, baseline: Engine, catalog: Path, counts: Path, orders: Path) -> None:
    sessions = make_sessionmaker(engine)
    products = ImportOptions(file_name=catalog.name, create_categories=True)
    for label in ("products, new", "products, unchanged"):
        with sessions() as session:
            timing = ours(label, session, import_products, catalog, products)
        expert(baseline, expert_products(catalog), timing)
    with sessions() as session:
        ours(
            "stock counts",
            session,
            import_stock_counts,
            counts,
            ImportOptions(file_name=counts.name),
        )
    channels = []
    for db in (engine, baseline):
        with db.begin() as connection:
            made = connection.execute(
                insert(SalesChannel).values(
                    code="amazon",
                    name="Amazon",
                    is_active=True,
                    created_at=utcnow(),
                    updated_at=utcnow(),
                )
            )
            assert made.inserted_primary_key is not None
            channels.append(made.inserted_primary_key[0])
    options = OrderImportOptions(profile=OrderProfile.AMAZON, timezone="UTC", file_name=orders.name)
    note = f"imported from {orders.name}"
    for label in ("orders, history", "orders, unchanged"):
        with sessions() as session:
            timing = ours(label, session, import_orders, orders, options)
        expert(baseline, expert_orders(orders, channels[1], note), timing)
        if label == "orders, history":
            started, cpu = time.perf_counter(), time.process_time()
            events = catch_up(engine)
            seconds = time.perf_counter() - started
            cpu = time.process_time() - cpu
            print(
                f"{'rollups catching up':<20} {events:>8,} events {seconds:4.2f} s "
                f"{events / seconds:>7,.0f}/s  cpu {cpu:5.2f} s; the orders and their rollups: "
                f"{timing.rows / (timing.seconds + seconds):,.0f} lines/s"
            )
            catch_up(baseline)
    compare(engine, baseline)
    with snapshot_session(engine) as session:
        ledger = check_ledger(session=session)
    print(f"ledger check: ok={ledger.ok}, {ledger.levels_checked:,} levels")


if __name__ == "__main__":
    sys.exit(main())
