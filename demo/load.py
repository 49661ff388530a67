"""Writing the demo shop: catalog rows through SQLAlchemy, the bulk through multi-row INSERTs.

The big tables (sales, lines, refunds, movements) skip the ORM: rows arrive as tuples in
column order with ids already assigned, and go to the driver's ``executemany`` in batches
(PyMySQL turns that into one multi-row INSERT per batch; sqlite3 binds in C). A background
thread does the writing, so the database works while Python simulates the next batch.
"""

import queue
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from common.auth.service import ensure_admin
from common.models import (
    Category,
    Product,
    ProductStatus,
    Role,
    Sale,
    SaleLine,
    SaleRefund,
    SaleRefundLine,
    SalesChannel,
    StockLevel,
    StockMovement,
    User,
    Warehouse,
)
from common.settings import CommonSettings
from demo.catalog import Catalog
from demo.sales import NextIds, Row, ShopRefs

PRODUCTS: Table = Product.__table__  # type: ignore[assignment]

# Parent tables first: a batch is written in this order, so foreign keys always resolve.
BULK_COLUMNS: dict[str, tuple[Table, tuple[str, ...]]] = {
    "sales": (
        Sale.__table__,  # type: ignore[dict-item]
        (
            "id", "number", "channel_id", "status", "sold_at", "units", "total", "cost_total",
            "refunded_units", "refunded_total", "refunded_cost", "note", "idempotency_key",
            "request_hash", "reservation_id", "stock_sync", "created_by_id", "created_at",
            "updated_at", "external_order_id",
        ),
    ),
    "sale_lines": (
        SaleLine.__table__,  # type: ignore[dict-item]
        (
            "id", "sale_id", "line_no", "sold_at", "product_id", "sku", "product_name",
            "category_id", "category_name", "quantity", "unit_price", "unit_cost",
            "line_total", "line_cost",
            "refunded_quantity", "refunded_total", "refunded_cost", "allocations",
        ),
    ),
    "sale_refunds": (
        SaleRefund.__table__,  # type: ignore[dict-item]
        (
            "id", "sale_id", "kind", "units", "amount", "reason", "idempotency_key",
            "request_hash", "stock_sync", "created_by_id", "created_at",
        ),
    ),
    "sale_refund_lines": (
        SaleRefundLine.__table__,  # type: ignore[dict-item]
        ("id", "refund_id", "sale_line_id", "quantity", "amount", "cost"),
    ),
    "stock_movements": (
        StockMovement.__table__,  # type: ignore[dict-item]
        (
            "id", "product_id", "warehouse_id", "movement_type", "quantity", "on_hand_after",
            "reason", "reference", "actor_id", "created_at",
        ),
    ),
}  # fmt: skip

DEMO_WAREHOUSES = (  # code, name, address, share of each delivery
    ("MAIN", "Main warehouse", "", 0.5),
    ("EAST", "East fulfilment centre", "200 Harbor Road, Newark, NJ", 0.3),
    ("WEST", "West fulfilment centre", "1500 Logistics Way, Reno, NV", 0.2),
)
DEMO_CHANNELS = (
    ("amazon", "Amazon"),
    ("walmart", "Walmart"),
    ("web-store", "Web store"),
    ("retail", "Retail store"),
)


class DemoDataExists(Exception):
    """The demo catalog is already in this database."""


def insert_sql(connection: Connection, table: Table, columns: Sequence[str]) -> str:
    """INSERT for every column of ``table`` in this order, with the driver's placeholders."""
    missing = set(table.c.keys()) - set(columns)
    if missing:  # a new column would silently get NULL instead of its default
        raise RuntimeError(f"demo writer does not fill {table.name}.{sorted(missing)}")
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    names = ", ".join(quote(c) for c in columns)
    marks = ", ".join([mark] * len(columns))
    # Identifiers come from the models and every value is bound: nothing here is input.
    return f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks})"  # noqa: S608


def _mysql_money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _sqlite_money(cents: int) -> float:
    # SQLAlchemy's Numeric binds a float on SQLite; the same float the live services store.
    return cents / 100


class BulkWriter:
    """Collects the simulation's rows and writes them in batches on a background thread."""

    def __init__(
        self,
        connection: Connection,
        *,
        batch_sales: int = 5000,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.connection = connection
        self.batch_sales = batch_sales
        self.progress = progress
        self.money: Callable[[int], object] = (
            _sqlite_money if connection.dialect.name == "sqlite" else _mysql_money
        )
        self.sql = {
            name: insert_sql(connection, table, columns)
            for name, (table, columns) in BULK_COLUMNS.items()
        }
        self.sales: list[Row] = []
        self.sale_lines: list[Row] = []
        self.sale_refunds: list[Row] = []
        self.sale_refund_lines: list[Row] = []
        self.stock_movements: list[Row] = []
        self.written_sales = 0
        self._queue: queue.Queue[list[tuple[str, list[Row]]] | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_loop, name="demo-writer", daemon=True)
        self._thread.start()

    def maybe_flush(self) -> None:
        if len(self.sales) >= self.batch_sales or len(self.stock_movements) >= 4 * self.batch_sales:
            self.flush()

    def flush(self) -> None:
        if self._error is not None:
            raise self._error
        batch: list[tuple[str, list[Row]]] = []
        for name in BULK_COLUMNS:
            # The simulation holds these very lists: hand over a copy, empty them in place.
            rows: list[Row] = getattr(self, name)
            if rows:
                batch.append((self.sql[name], rows.copy()))
                rows.clear()
        self.written_sales += sum(len(rows) for sql, rows in batch if sql == self.sql["sales"])
        if batch:
            self._queue.put(batch)
        if self.progress is not None:
            self.progress(self.written_sales)

    def close(self) -> None:
        """Write what is left and wait for the writer; re-raise anything it hit."""
        try:
            self.flush()
        finally:
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error

    def _write_loop(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            if self._error is not None:
                continue  # drain, so the producer never blocks on a dead writer
            try:
                for sql, rows in batch:
                    self.connection.exec_driver_sql(sql, rows)
            except BaseException as exc:
                self._error = exc


# --- catalog and reference rows ---------------------------------------------------------


def next_id(session: Session, table: Any) -> int:
    return int(session.scalar(select(func.coalesce(func.max(table.id), 0))) or 0) + 1


def next_bulk_ids(session: Session) -> NextIds:
    return NextIds(
        sale=next_id(session, Sale),
        sale_line=next_id(session, SaleLine),
        refund=next_id(session, SaleRefund),
        refund_line=next_id(session, SaleRefundLine),
        movement=next_id(session, StockMovement),
    )


def demo_actor(session: Session, settings: CommonSettings) -> int:
    """The first admin (by id); the configured first admin is created if there is none."""
    admin = session.scalar(
        select(User.id).where(User.role == Role.ADMIN, User.is_active.is_(True)).order_by(User.id)
    )
    if admin is not None:
        return int(admin)
    user = ensure_admin(
        session=session,
        email=settings.first_admin_email,
        password=settings.first_admin_password.get_secret_value(),
    )
    return user.id


def demo_warehouses(
    session: Session, created_at: datetime
) -> tuple[list[int], list[float], list[str]]:
    """Ids (ascending), delivery shares and codes of the three demo warehouses, adding
    missing ones."""
    existing = {w.code: w for w in session.scalars(select(Warehouse))}
    has_default = any(w.is_default for w in existing.values())
    shares: dict[int, float] = {}
    codes: dict[int, str] = {}
    for code, name, address, share in DEMO_WAREHOUSES:
        warehouse = existing.get(code)
        if warehouse is None:
            warehouse = Warehouse(
                code=code,
                name=name,
                address=address,
                is_default=code == "MAIN" and not has_default,
                is_active=True,
                created_at=created_at,
                updated_at=created_at,
            )
            session.add(warehouse)
            session.flush()
        shares[warehouse.id], codes[warehouse.id] = share, code
    ids = sorted(shares)
    return ids, [shares[i] for i in ids], [codes[i] for i in ids]


def demo_channels(session: Session, created_at: datetime) -> dict[str, int]:
    """code -> id of the demo channels, adding the ones that do not exist yet."""
    existing = {c.code: c.id for c in session.scalars(select(SalesChannel))}
    for code, name in DEMO_CHANNELS:
        if code not in existing:
            channel = SalesChannel(
                code=code, name=name, is_active=True, created_at=created_at, updated_at=created_at
            )
            session.add(channel)
            session.flush()
            existing[code] = channel.id
    return {code: existing[code] for code, _ in DEMO_CHANNELS}


def demo_catalog(
    session: Session, catalog: Catalog, created_at: datetime
) -> tuple[dict[str, int], list[int]]:
    """Insert the categories (reusing slugs that exist) and products; their ids."""
    skus = [p.sku for p in catalog.products]
    clash = session.scalars(select(Product.sku).where(Product.sku.in_(skus)).limit(3)).all()
    if clash:
        raise DemoDataExists(
            f"products {', '.join(clash)} already exist: the demo catalog is loaded here"
        )
    found = {c.slug: (c.id, c.path) for c in session.scalars(select(Category))}
    category_id = next_id(session, Category)
    rows = []
    for spec in catalog.categories:
        if spec.slug in found:
            continue
        parent_path = found[spec.parent_slug][1] if spec.parent_slug else "/"
        path = f"{parent_path}{category_id}/"
        found[spec.slug] = (category_id, path)
        parent_id = found[spec.parent_slug][0] if spec.parent_slug else None
        rows.append(
            {
                "id": category_id,
                "name": spec.name,
                "slug": spec.slug,
                "description": spec.description,
                "parent_id": parent_id,
                "path": path,
                "archived_at": None,
                "created_at": created_at,
                "updated_at": created_at,
            }
        )
        category_id += 1
    if rows:
        session.execute(insert(Category), rows)

    product_id = next_id(session, Product)
    product_ids = list(range(product_id, product_id + len(catalog.products)))
    session.execute(
        insert(Product),
        [
            {
                "id": pid,
                "sku": p.sku,
                "name": p.name,
                "description": p.description,
                "category_id": found[p.category_slug][0],
                "price": Decimal(p.price_cents).scaleb(-2),
                "cost_price": Decimal(p.cost_cents).scaleb(-2),
                "status": ProductStatus.ACTIVE,
                "low_stock_threshold": 10,
                "archived_at": None,
                "created_at": created_at,
                "updated_at": created_at,
            }
            for pid, p in zip(product_ids, catalog.products, strict=True)
        ],
    )
    return {slug: cid for slug, (cid, _) in found.items()}, product_ids


def set_thresholds(session: Session, product_ids: list[int], thresholds: list[int]) -> None:
    """Low-stock thresholds sized to each product's demand (about a week of sales)."""
    session.execute(
        update(PRODUCTS)
        .where(PRODUCTS.c.id == bindparam("pid"))
        .values(low_stock_threshold=bindparam("threshold")),
        [{"pid": p, "threshold": t} for p, t in zip(product_ids, thresholds, strict=True)],
    )


def write_levels(
    session: Session,
    levels: dict[tuple[int, int], tuple[int, int]],
    to_datetime: Callable[[int], datetime],
) -> None:
    """One level row per (product, warehouse) the ledger touched, at the ledger's sum."""
    first = next_id(session, StockLevel)
    rows = [
        {
            "id": first + n,
            "product_id": product_id,
            "warehouse_id": warehouse_id,
            "on_hand": on_hand,
            "reserved": 0,
            "updated_at": to_datetime(last_us),
        }
        for n, ((product_id, warehouse_id), (on_hand, last_us)) in enumerate(sorted(levels.items()))
    ]
    if rows:
        session.execute(insert(StockLevel), rows)


def refs_for(
    category_ids: dict[str, int],
    product_ids: list[int],
    warehouses: tuple[list[int], list[float], list[str]],
    channels: dict[str, int],
    actor_id: int,
) -> ShopRefs:
    return ShopRefs(
        product_ids=product_ids,
        category_ids=category_ids,
        warehouse_ids=warehouses[0],
        warehouse_shares=warehouses[1],
        warehouse_codes=warehouses[2],
        channel_ids=channels,
        actor_id=actor_id,
    )
