"""SQL for warehouses."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.models import Warehouse
from common.pagination import PageParams, Slice, first, paginate

SORT_COLUMNS: dict[str, Any] = {
    "code": Warehouse.code,
    "name": Warehouse.name,
    "created_at": Warehouse.created_at,
}


def get(session: Session, warehouse_id: int, *, lock: bool = False) -> Warehouse | None:
    stmt = select(Warehouse).where(Warehouse.id == warehouse_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return session.scalar(stmt)


def code_taken(session: Session, code: str) -> bool:
    return session.scalar(select(Warehouse.id).where(Warehouse.code == code).limit(1)) is not None


def lock_all(session: Session) -> list[Warehouse]:
    """Every warehouse row, locked in id order, so default switches run one at a time."""
    stmt = (
        select(Warehouse)
        .order_by(Warehouse.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list(session.scalars(stmt))


def list_page(
    session: Session, *, include_inactive: bool, page: PageParams, order_by: list[Any]
) -> Slice[Warehouse]:
    stmt = select(Warehouse)
    if not include_inactive:
        stmt = stmt.where(Warehouse.is_active.is_(True))
    return paginate(session, stmt, page, [*order_by, Warehouse.id.asc()]).map(first)
