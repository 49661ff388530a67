"""Every SQL query of sale stock takes (the level rows they return go through ledger.py)."""

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from common.models import (
    Category,
    Product,
    SaleStockStatus,
    SaleStockTake,
    StockLevel,
    StockMovement,
    Warehouse,
)

TAKES: Table = SaleStockTake.__table__  # type: ignore[assignment]
LEVELS: Table = StockLevel.__table__  # type: ignore[assignment]
MOVEMENTS: Table = StockMovement.__table__  # type: ignore[assignment]


def _lock_statement() -> Any:
    def warehouse(column: Any) -> Any:
        return select(column).where(Warehouse.id == StockLevel.warehouse_id).scalar_subquery()

    return (
        select(
            Product.id,
            Product.sku,
            Product.name,
            Product.category_id,
            select(Category.name)
            .where(Category.id == Product.category_id)
            .scalar_subquery()
            .label("category_name"),
            Product.price,
            Product.cost_price,
            Product.status,
            Product.archived_at,
            StockLevel.id.label("level_id"),
            StockLevel.warehouse_id,
            StockLevel.on_hand,
            StockLevel.reserved,
            warehouse(Warehouse.is_active).label("warehouse_active"),
            warehouse(Warehouse.code).label("warehouse_code"),
        )
        .outerjoin(StockLevel, StockLevel.product_id == Product.id)
        .where(Product.id.in_(bindparam("product_ids", expanding=True)))
        .order_by(Product.id, StockLevel.warehouse_id)
        .with_for_update()
    )


# Built once and executed with parameters: a statement object keeps its cache key, so the
# sale path does not build and key new ones for every take.
_LOCK = _lock_statement()
_INSERT_TAKE = insert(TAKES)
_INSERT_MOVEMENTS = insert(MOVEMENTS)
_TAKE_FROM_LEVEL = (
    update(LEVELS)
    .where(LEVELS.c.id == bindparam("b_level_id"))
    .values(on_hand=bindparam("b_on_hand"), updated_at=bindparam("b_now"))
)


def lock_products_and_levels(session: Session, product_ids: Collection[int]) -> list[Row[Any]]:
    """Each product with its level rows (one row per level, or one with no level), products
    and levels locked in (product, warehouse) order, each level saying if its warehouse is
    active and its code. One statement: the warehouse is read by subqueries, which take no
    lock, so sales of different products never queue on a warehouse row."""
    return list(_core(session).execute(_LOCK, {"product_ids": sorted(set(product_ids))}))


def _core(session: Session) -> Connection:
    """The session's connection: these statements name columns, not entities, so they skip
    the ORM's execution layer (a good part of a sale's CPU otherwise)."""
    return session.connection()


def insert_take(session: Session, values: dict[str, Any]) -> None:
    """Insert the take row; raises IntegrityError when its key is taken (the unique index)."""
    _core(session).execute(_INSERT_TAKE, values)


def take_stock_from_levels(session: Session, changes: Sequence[dict[str, Any]]) -> None:
    """Set each locked level's new on_hand (``{"level_id", "on_hand", "now"}``)."""
    _core(session).execute(
        _TAKE_FROM_LEVEL,
        [{f"b_{name}": value for name, value in change.items()} for change in changes],
    )


def insert_movements(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    _core(session).execute(_INSERT_MOVEMENTS, list(rows))


def find_take(session: Session, key: str, *, lock: bool = False) -> SaleStockTake | None:
    stmt = select(SaleStockTake).where(SaleStockTake.key == key)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalar(stmt.execution_options(populate_existing=True))


def set_status(session: Session, take_id: int, status: SaleStockStatus, now: datetime) -> None:
    session.execute(
        update(TAKES).where(TAKES.c.id == take_id).values(status=status, updated_at=now)
    )
