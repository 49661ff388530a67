"""The queries the exports stream (through a server-side cursor, see common.delimited)."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from common.models import (
    Category,
    MovementType,
    Product,
    StockLevel,
    StockMovement,
    User,
    Warehouse,
)


def category_names(session: Session) -> dict[int, tuple[str, str]]:
    """Every category's id -> (id path as stored, name), to spell paths as names."""
    return {
        row.id: (row.path, row.name)
        for row in session.execute(select(Category.id, Category.path, Category.name))
    }


def products_query(*, include_archived: bool) -> Select[*tuple[Any, ...]]:
    """Products in the import's columns (the category as its id), by SKU."""
    stmt = select(
        Product.sku,
        Product.name,
        Product.description,
        Product.category_id,
        Product.price,
        Product.cost_price,
        Product.low_stock_threshold,
        Product.status,
    ).order_by(Product.sku)
    if not include_archived:
        stmt = stmt.where(Product.archived_at.is_(None))
    return stmt


def levels_query(*, warehouse_ids: Sequence[int]) -> Select[*tuple[Any, ...]]:
    """Every level row (of these warehouses, if any are named) with its product's SKU and name
    and its warehouse's code."""
    stmt = (
        select(
            Product.sku,
            Product.name,
            Warehouse.code,
            StockLevel.on_hand,
            StockLevel.reserved,
            (StockLevel.on_hand - StockLevel.reserved).label("available"),
            StockLevel.updated_at,
        )
        .join(Product, Product.id == StockLevel.product_id)
        .join(Warehouse, Warehouse.id == StockLevel.warehouse_id)
        .order_by(Product.sku, Warehouse.code)
    )
    if warehouse_ids:
        stmt = stmt.where(StockLevel.warehouse_id.in_(warehouse_ids))
    return stmt


def ledger_query(
    *,
    created_from: datetime | None,
    created_to: datetime | None,
    warehouse_ids: Sequence[int],
    types: list[MovementType],
) -> Select[*tuple[Any, ...]]:
    """Ledger movements in the range (from included, to not), oldest first."""
    stmt = (
        select(
            StockMovement.id,
            StockMovement.created_at,
            Product.sku,
            Warehouse.code,
            StockMovement.movement_type,
            StockMovement.quantity,
            StockMovement.on_hand_after,
            StockMovement.reason,
            StockMovement.reference,
            User.email,
        )
        .join(Product, Product.id == StockMovement.product_id)
        .join(Warehouse, Warehouse.id == StockMovement.warehouse_id)
        .outerjoin(User, User.id == StockMovement.actor_id)
        .order_by(StockMovement.created_at, StockMovement.id)
    )
    if created_from is not None:
        stmt = stmt.where(StockMovement.created_at >= created_from)
    if created_to is not None:
        stmt = stmt.where(StockMovement.created_at < created_to)
    if warehouse_ids:
        stmt = stmt.where(StockMovement.warehouse_id.in_(warehouse_ids))
    if types:
        stmt = stmt.where(StockMovement.movement_type.in_(types))
    return stmt
