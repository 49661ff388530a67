"""Report test data: a small catalog, and sales and refunds written straight to the database.

Sales and refunds are written the way sales_service writes them (the rows, then the rollup
hook, in the same transaction) without going through products_service, so hundreds of
them take a second. ``raw_lines`` reads back what is stored for the reference computations.
"""

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine, delete, select, text
from sqlalchemy.orm import Session

from common import outbox
from common.db import retry_lock_conflicts
from common.models import (
    Category,
    Product,
    RefundKind,
    Sale,
    SaleLine,
    SaleRefund,
    SaleRefundLine,
    SalesChannel,
    SaleStatus,
    StockLevel,
    StockSync,
    Warehouse,
)
from sales_service import events
from sales_service.reports import inmemory, rollups
from sales_service.reports.consumer import CONSUMER

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Catalog:
    """Ids of the catalog rows the tests sell from."""

    categories: dict[str, int]  # name -> id; "home" > "kitchen" > "knives", "garden"
    products: list[int]  # the last one has no category
    channels: list[int]
    paths: dict[int, str]
    product_category: dict[int, int | None]


def make_catalog(engine: Engine) -> Catalog:
    """Categories home/kitchen/knives and garden, five products, two channels, stock."""
    with Session(engine) as session:
        home = Category(name="Home", slug="home", path="/")
        garden = Category(name="Garden", slug="garden", path="/")
        session.add_all([home, garden])
        session.flush()
        home.path, garden.path = f"/{home.id}/", f"/{garden.id}/"
        kitchen = Category(name="Kitchen", slug="kitchen", parent_id=home.id, path="/")
        session.add(kitchen)
        session.flush()
        kitchen.path = f"{home.path}{kitchen.id}/"
        knives = Category(name="Knives", slug="knives", parent_id=kitchen.id, path="/")
        session.add(knives)
        session.flush()
        knives.path = f"{kitchen.path}{knives.id}/"
        placed = [home, kitchen, knives, garden, None]
        products = []
        for n, category in enumerate(placed, start=1):
            product = Product(
                sku=f"RP-{n}",
                name=f"Report product {n}",
                category_id=category.id if category else None,
                price=Decimal("10.00") * n,
                cost_price=Decimal("4.00") * n,
            )
            session.add(product)
            products.append(product)
        channels = [
            SalesChannel(code="web", name="Web store"),
            SalesChannel(code="shop", name="Retail shop"),
        ]
        session.add_all(channels)
        session.flush()
        warehouse = session.scalar(select(Warehouse).where(Warehouse.code == "MAIN"))
        assert warehouse is not None
        for n, product in enumerate(products):
            session.add(
                StockLevel(
                    product_id=product.id, warehouse_id=warehouse.id, on_hand=10 * n, reserved=n
                )
            )
        session.commit()
        return Catalog(
            categories={c.slug: c.id for c in (home, kitchen, knives, garden)},
            products=[p.id for p in products],
            channels=[c.id for c in channels],
            paths={c.id: c.path for c in (home, kitchen, knives, garden)},
            product_category={p.id: p.category_id for p in products},
        )


@dataclass(frozen=True)
class LineSpec:
    product_id: int
    quantity: int
    unit_price: Decimal
    unit_cost: Decimal


def add_sale(
    session: Session,
    catalog: Catalog,
    *,
    sold_at: datetime,
    channel_id: int,
    lines: Sequence[LineSpec],
) -> Sale:
    """Write one sale with its lines and add it to the rollups, as sales_service does."""
    sale_lines = [
        SaleLine(
            line_no=n,
            sold_at=sold_at,
            product_id=spec.product_id,
            sku=f"RP-{spec.product_id}",
            product_name=f"Report product {spec.product_id}",
            category_id=catalog.product_category[spec.product_id],
            quantity=spec.quantity,
            unit_price=spec.unit_price,
            unit_cost=spec.unit_cost,
            line_total=spec.unit_price * spec.quantity,
            line_cost=spec.unit_cost * spec.quantity,
            refunded_quantity=0,
            refunded_total=Decimal("0.00"),
            refunded_cost=Decimal("0.00"),
            allocations=[],
        )
        for n, spec in enumerate(lines, start=1)
    ]
    sale = Sale(
        number=f"T-{uuid.uuid4().hex[:28]}",
        channel_id=channel_id,
        status=SaleStatus.COMPLETED,
        sold_at=sold_at,
        units=sum(line.quantity for line in sale_lines),
        total=sum((line.line_total for line in sale_lines), Decimal("0.00")),
        cost_total=sum((line.line_cost for line in sale_lines), Decimal("0.00")),
        refunded_units=0,
        refunded_total=Decimal("0.00"),
        refunded_cost=Decimal("0.00"),
        request_hash="",
        stock_sync=StockSync.DONE,
        lines=sale_lines,
    )
    session.add(sale)
    session.flush()
    sale.number = f"S-{sale.id:08d}"
    session.flush()
    outbox.append(session, outbox.SALES_OUTBOX, [events.sale_recorded(sale)])
    return sale


def refund(
    session: Session, sale: Sale, units_by_line: dict[int, int], *, cancel: bool = False
) -> SaleRefund:
    """Refund units of some lines (a cancellation refunds all that is left), as the refund
    service does: move them onto the refunded figures, write the refund and its event."""
    if cancel:
        units_by_line = {
            line.line_no: line.quantity - line.refunded_quantity
            for line in sale.lines
            if line.quantity > line.refunded_quantity
        }
    refund_lines = []
    for line in sale.lines:
        quantity = min(units_by_line.get(line.line_no, 0), line.quantity - line.refunded_quantity)
        if quantity <= 0:
            continue
        amount, cost = line.unit_price * quantity, line.unit_cost * quantity
        refund_lines.append(
            SaleRefundLine(sale_line_id=line.id, quantity=quantity, amount=amount, cost=cost)
        )
        line.refunded_quantity += quantity
        line.refunded_total += amount
        line.refunded_cost += cost
    made = SaleRefund(
        sale_id=sale.id,
        kind=RefundKind.CANCELLATION if cancel else RefundKind.REFUND,
        units=sum(r.quantity for r in refund_lines),
        amount=sum((r.amount for r in refund_lines), Decimal("0.00")),
        request_hash="",
        stock_sync=StockSync.DONE,
        lines=refund_lines,
    )
    sale.refunded_units += made.units
    sale.refunded_total += made.amount
    sale.refunded_cost += sum((r.cost for r in refund_lines), Decimal("0.00"))
    if cancel:
        sale.status = SaleStatus.CANCELLED
    elif sale.refunded_units >= sale.units:
        sale.status = SaleStatus.REFUNDED
    elif sale.refunded_units:
        sale.status = SaleStatus.PARTIALLY_REFUNDED
    if refund_lines:
        session.add(made)
        session.flush()
        outbox.append(session, outbox.SALES_OUTBOX, [events.sale_refunded(sale, made)])
    return made


def clear_sales(connection: Connection) -> None:
    """Remove every sale, sale event and rollup row, and set the rollup consumer back to the
    start (the catalog stays). The consumer's lock is taken first, as the consumer takes it:
    one running in a server of this session either finishes its batch before this clears
    the rollups, or starts after, on an empty outbox."""
    outbox.lock_position(connection, CONSUMER)
    for table in ("sale_stock_claims", "sale_refund_lines", "sale_refunds", "sale_lines", "sales"):
        connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - fixed names
    delete_rollups(connection)
    connection.execute(delete(rollups.PATHS_TABLE))
    connection.execute(delete(outbox.SALES_OUTBOX))
    outbox.save_position(connection, CONSUMER, 0)


# --- the reference: plain Python over the stored rows ------------------------------------


@dataclass(frozen=True)
class RawLine:
    sale_id: int
    sold_at: datetime
    channel_id: int
    product_id: int
    category_id: int | None
    quantity: int
    refunded_quantity: int
    line_total: Decimal
    refunded_total: Decimal
    line_cost: Decimal
    refunded_cost: Decimal


def raw_lines(connection: Connection) -> list[RawLine]:
    rows = connection.execute(
        select(
            Sale.id,
            Sale.sold_at,
            Sale.channel_id,
            SaleLine.product_id,
            SaleLine.category_id,
            SaleLine.quantity,
            SaleLine.refunded_quantity,
            SaleLine.line_total,
            SaleLine.refunded_total,
            SaleLine.line_cost,
            SaleLine.refunded_cost,
        ).join(SaleLine, SaleLine.sale_id == Sale.id)
    )
    return [RawLine(*row) for row in rows]


def figures(lines: Iterable[RawLine]) -> dict[str, Any]:
    """The report definitions, written out plainly."""
    chosen = list(lines)
    revenue = sum((ln.line_total - ln.refunded_total for ln in chosen), Decimal("0.00"))
    cost = sum((ln.line_cost - ln.refunded_cost for ln in chosen), Decimal("0.00"))
    orders = len({ln.sale_id for ln in chosen if ln.quantity > ln.refunded_quantity})
    return {
        "revenue": f"{revenue:.2f}",
        "cost": f"{cost:.2f}",
        "margin": f"{revenue - cost:.2f}",
        "units": sum(ln.quantity - ln.refunded_quantity for ln in chosen),
        "orders": orders,
        "average_order_value": (
            f"{(revenue / orders).quantize(CENT, ROUND_HALF_UP):.2f}" if orders else None
        ),
    }


def in_subtree(category_id: int | None, roots: Iterable[int], paths: dict[int, str]) -> bool:
    if category_id is None:
        return False
    path = paths[category_id]
    return any(path.startswith(paths[root]) for root in roots)


def local_day(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC).astimezone(zone)


def period_start(day: date, period: str, week_start: int) -> date:
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=(day.weekday() - week_start) % 7)
    if period == "month":
        return day.replace(day=1)
    if period == "quarter":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    return day.replace(month=1, day=1)


def clear(engine: Engine) -> None:
    """``clear_sales`` in a transaction of its own, made again where it is chosen as a
    deadlock victim: the position row is gone after each test's clean, and creating it
    again (a gap lock, then an insert) can deadlock with a server's background consumer
    doing the same, as ``clean_database`` meets it."""

    def once() -> None:
        with engine.begin() as connection:
            clear_sales(connection)

    retry_lock_conflicts(once)


def rollup_rows(connection: Connection) -> dict[str, set[tuple[object, ...]]]:
    """Every rollup row, normalised so two snapshots compare exactly."""
    found: dict[str, set[tuple[object, ...]]] = {}
    for table in rollups.ROLLUP_TABLES:
        rows = set()
        for row in connection.execute(select(table)):
            values = []
            for value in row:
                if isinstance(value, datetime):
                    value = value.astimezone(UTC).replace(tzinfo=None)
                elif isinstance(value, Decimal | float):
                    value = Decimal(value).quantize(CENT)
                values.append(value)
            rows.add(tuple(values))
        found[table.name] = rows
    return found


def rollups_in_memory(monkeypatch: pytest.MonkeyPatch, engine: Engine, on: bool) -> None:
    """Reports sum the rollups from the process's copy, loaded now and not brought forward
    by itself meanwhile (on), or from their tables (off)."""
    monkeypatch.setattr(inmemory, "ENABLED", on)
    monkeypatch.setattr(inmemory, "REFRESH_SECONDS", 3600.0)
    if on:
        assert inmemory.load_now(engine) is not None


def delete_rollups(connection: Connection) -> None:
    for table in rollups.ROLLUP_TABLES:
        connection.execute(delete(table))
    rollups.count_rebuild(connection)  # copies in memory read them whole again
