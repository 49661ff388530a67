"""SQL for sales: lookups by key, and the catalog rows a sale snapshots."""

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from common.models import Product, Sale, SaleLine, SalesChannel, StockSync


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


def products_by_id(session: Session, ids: Iterable[int]) -> dict[int, Product]:
    wanted = set(ids)
    if not wanted:
        return {}
    return {p.id: p for p in session.scalars(select(Product).where(Product.id.in_(wanted)))}


def add_sale(session: Session, sale: Sale) -> None:
    session.add(sale)
    session.flush()
    sale.number = f"S-{sale.id:08d}"
    session.flush()


def pending_stock_sales(session: Session, *, limit: int) -> list[Sale]:
    return list(
        session.scalars(
            select(Sale).where(Sale.stock_sync == StockSync.PENDING).order_by(Sale.id).limit(limit)
        )
    )


def lines_of(session: Session, sale_id: int) -> list[SaleLine]:
    return list(session.scalars(select(SaleLine).where(SaleLine.sale_id == sale_id)))
