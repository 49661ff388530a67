"""SQL for sales: lookups by key, the catalog rows a sale snapshots, listing and export."""

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, Row, Select, Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from common.db import snapshot_session, utcnow
from common.models import (
    Category,
    Sale,
    SaleLine,
    SalesChannel,
    SaleStatus,
    SaleStockClaim,
    StockSync,
)

CLAIMS: Table = SaleStockClaim.__table__  # type: ignore[assignment]


def find_by_key(session: Session, key: str) -> Sale | None:
    return session.scalar(
        select(Sale)
        .where(Sale.idempotency_key == key)
        .options(selectinload(Sale.lines))
        .execution_options(populate_existing=True)
    )


def get_with_lines(session: Session, sale_id: int, *, for_update: bool = False) -> Sale | None:
    stmt = select(Sale).where(Sale.id == sale_id).options(selectinload(Sale.lines))
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalar(stmt.execution_options(populate_existing=True))


def channels_by_id(session: Session, ids: Iterable[int]) -> dict[int, SalesChannel]:
    wanted = set(ids)
    if not wanted:
        return {}
    return {
        c.id: c for c in session.scalars(select(SalesChannel).where(SalesChannel.id.in_(wanted)))
    }


def channel_by_code(session: Session, code: str) -> SalesChannel | None:
    return session.scalar(select(SalesChannel).where(SalesChannel.code == code.strip().lower()))


def add_sale(session: Session, sale: Sale, *, stock_key: str) -> None:
    """Insert the sale and its lines, number it, and claim its stock key for it."""
    session.add(sale)
    session.flush()
    sale.number = f"S-{sale.id:08d}"
    session.flush()
    session.execute(
        insert(CLAIMS).values(stock_key=stock_key, sale_id=sale.id, claimed_at=utcnow())
    )


def claim_void(session: Session, stock_key: str) -> bool:
    """Claim the stock key for no sale (True, also when it was claimed void before); False
    when a sale claimed it. Waits for a sale's transaction that holds the key uncommitted,
    so the answer is final."""
    try:
        with session.begin_nested():
            session.execute(
                insert(CLAIMS).values(stock_key=stock_key, sale_id=None, claimed_at=utcnow())
            )
    except IntegrityError:  # claimed already: by a sale, or void by an earlier attempt
        found = claim_of(session, stock_key)
        return found is not None and found[0] is None
    return True


def claim_of(session: Session, stock_key: str) -> tuple[int | None] | None:
    """The claim on a stock key: (sale_id,) with None for a void claim; None if unclaimed."""
    row = session.execute(select(CLAIMS.c.sale_id).where(CLAIMS.c.stock_key == stock_key)).first()
    return None if row is None else (row.sale_id,)


# --- listing and export -----------------------------------------------------------------

SALE_SORT: dict[str, Any] = {
    "sold_at": Sale.sold_at,
    "total": Sale.total,
    "number": Sale.number,
    "created_at": Sale.created_at,
}


@dataclass(frozen=True)
class SaleFilters:
    """Which sales a list or export covers; every filter given must hold (AND)."""

    sold_from: datetime | None = None  # inclusive
    sold_to: datetime | None = None  # exclusive
    product_ids: Sequence[int] = ()  # sales with a line of any of these products
    category_path: str | None = None  # sales with a line in this category's subtree
    channel_ids: Sequence[int] = ()
    statuses: Sequence[SaleStatus] = ()
    stock_syncs: Sequence[StockSync] = ()  # e.g. FAILED: the sales someone has to settle


def category_path(session: Session, category_id: int) -> str | None:
    """The category's materialised path ("/1/5/"), which prefixes its whole subtree's."""
    return session.scalar(select(Category.path).where(Category.id == category_id))


AnySelect = TypeVar("AnySelect", bound=Select[*tuple[Any, ...]])


def _filtered(stmt: AnySelect, filters: SaleFilters) -> AnySelect:
    if filters.sold_from is not None:
        stmt = stmt.where(Sale.sold_at >= filters.sold_from)
    if filters.sold_to is not None:
        stmt = stmt.where(Sale.sold_at < filters.sold_to)
    if filters.channel_ids:
        stmt = stmt.where(Sale.channel_id.in_(filters.channel_ids))
    if filters.statuses:
        stmt = stmt.where(Sale.status.in_(filters.statuses))
    if filters.stock_syncs:
        stmt = stmt.where(Sale.stock_sync.in_(filters.stock_syncs))
    if filters.product_ids:
        stmt = stmt.where(
            select(SaleLine.id)
            .where(SaleLine.sale_id == Sale.id, SaleLine.product_id.in_(filters.product_ids))
            .correlate(Sale)  # not sale_lines: the export joins them in the outer query too
            .exists()
        )
    if filters.category_path is not None:
        subtree = select(Category.id).where(Category.path.like(f"{filters.category_path}%"))
        stmt = stmt.where(
            select(SaleLine.id)
            .where(SaleLine.sale_id == Sale.id, SaleLine.category_id.in_(subtree))
            .correlate(Sale)
            .exists()
        )
    return stmt


def list_query(filters: SaleFilters) -> Select[Sale]:
    """Matching sales, their lines loaded with one extra query per page."""
    return _filtered(select(Sale).options(selectinload(Sale.lines)), filters)


EXPORT_COLUMNS = (
    Sale.number,
    Sale.sold_at,
    SalesChannel.code.label("channel"),
    Sale.status,
    SaleLine.line_no,
    SaleLine.sku,
    SaleLine.product_name,
    SaleLine.category_id,
    SaleLine.quantity,
    SaleLine.unit_price,
    SaleLine.line_total,
    SaleLine.refunded_quantity,
    SaleLine.refunded_total,
)


def export_query(filters: SaleFilters, order_by: list[Any]) -> Select[*tuple[Any, ...]]:
    """One row per line of every matching sale, in the list's order, lines in line order."""
    stmt = (
        select(*EXPORT_COLUMNS)
        .join(SaleLine, SaleLine.sale_id == Sale.id)
        .join(SalesChannel, SalesChannel.id == Sale.channel_id)
    )
    return _filtered(stmt, filters).order_by(*order_by, SaleLine.line_no)


def stream_export(
    engine: Engine, stmt: Select[*tuple[Any, ...]], *, batch: int = 1000
) -> Iterator[Sequence[Row[Any]]]:
    """The rows of ``stmt`` in batches, read through a server-side cursor on its own
    connection, from one snapshot that holds up no writer (see snapshot_session).

    Only one batch is in memory at a time, however many rows match. The connection lives as
    long as the iteration (e.g. a streamed response).
    """
    with snapshot_session(engine) as session:
        result = session.execute(stmt.execution_options(stream_results=True, yield_per=batch))
        yield from result.partitions()
