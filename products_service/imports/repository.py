"""SQL of the imports: the batch lookups a file's rows need (writes go through the services
of products and inventory)."""

from collections.abc import Collection
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from common.models import Category, Product, StockLevel, Warehouse
from products_service.inventory.ledger import LevelKey

# What an import compares a row with, and what the events and audit entries of a change
# name; the rest of a product is left as it is.
_PRODUCT_COLUMNS = (
    Product.id,
    Product.sku,
    Product.name,
    Product.description,
    Product.category_id,
    Product.price,
    Product.cost_price,
    Product.status,
    Product.low_stock_threshold,
    Product.archived_at,
)


def products_by_skus(
    session: Session, skus: Collection[str], *, lock: bool
) -> dict[str, dict[str, Any]]:
    """These SKUs' products (their columns, no objects) by SKU in lower case (the column
    compares without case, so ``abc-1`` names the product ``ABC-1``); ``lock`` holds their
    rows until the transaction ends, so what an update is compared with is what it replaces."""
    if not skus:
        return {}
    stmt = select(*_PRODUCT_COLUMNS).where(Product.sku.in_(sorted(skus)))
    if lock:
        stmt = stmt.order_by(Product.id).with_for_update()
    return {row["sku"].casefold(): dict(row) for row in session.execute(stmt).mappings()}


def all_categories(session: Session) -> list[Category]:
    """The whole category tree (archived ones too): an import resolves paths against it."""
    return list(session.scalars(select(Category).order_by(Category.id)))


def all_warehouses(session: Session) -> dict[str, Warehouse]:
    """Warehouses by code in lower case (the column compares without case)."""
    return {w.code.casefold(): w for w in session.scalars(select(Warehouse))}


def levels(session: Session, keys: Collection[LevelKey]) -> dict[LevelKey, StockLevel]:
    """The level rows of these (product, warehouse) keys that exist, read without a lock."""
    if not keys:
        return {}
    stmt = select(StockLevel).where(
        tuple_(StockLevel.product_id, StockLevel.warehouse_id).in_(sorted(keys))
    )
    return {(level.product_id, level.warehouse_id): level for level in session.scalars(stmt)}
