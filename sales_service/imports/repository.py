"""SQL of the orders import: the catalog rows an imported order snapshots (sales_service
reads the catalog, it never writes it) and the orders of a channel imported before."""

from collections.abc import Collection
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from common.models import Category, Product, Sale


def products_by_skus(session: Session, skus: Collection[str]) -> dict[str, Row[Any]]:
    """The products with these SKUs, by SKU in lower case (the column compares without case):
    what a sale line snapshots of each (``sales.service.Snapshot``)."""
    if not skus:
        return {}
    stmt = select(
        Product.id.label("product_id"),
        Product.sku,
        Product.name,
        Product.category_id,
        select(Category.name)
        .where(Category.id == Product.category_id)
        .scalar_subquery()
        .label("category_name"),
        Product.price,
        Product.cost_price,
    ).where(Product.sku.in_(sorted(skus)))
    rows: list[Row[Any]] = list(session.execute(stmt))
    return {row.sku.casefold(): row for row in rows}


def imported_order_ids(session: Session, channel_id: int, order_ids: Collection[str]) -> set[str]:
    """Which of these external order ids the channel has a sale for already (in lower case)."""
    if not order_ids:
        return set()
    stmt = select(Sale.external_order_id).where(
        Sale.channel_id == channel_id, Sale.external_order_id.in_(sorted(order_ids))
    )
    return {found.casefold() for found in session.scalars(stmt) if found is not None}
