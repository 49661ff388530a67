"""SQL for products: lookups, per-warehouse stock, the filtered, sorted list, and the
batch writes of an import."""

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row, Table, and_, false, func, insert, or_, select, true
from sqlalchemy.orm import Session, aliased

from common.db import execute_rows, insert_ids, update_by_id
from common.models import Category, Product, ProductStatus, StockLevel, Warehouse
from common.pagination import PageParams, Slice, paginate
from common.time_window import TimeWindow
from products_service.products.schemas import ProductFilters, ProductReadStatus

PRODUCTS: Table = Product.__table__  # type: ignore[assignment]

# Stock summed per product; a product without level rows has none, so it counts as 0.
_stock = (
    select(
        StockLevel.product_id.label("product_id"),
        func.sum(StockLevel.on_hand).label("on_hand"),
        func.sum(StockLevel.reserved).label("reserved"),
    )
    .group_by(StockLevel.product_id)
    .subquery("stock")
)
_on_hand = func.coalesce(_stock.c.on_hand, 0)
_reserved = func.coalesce(_stock.c.reserved, 0)
_available = _on_hand - _reserved

SORT_COLUMNS: dict[str, Any] = {
    "name": Product.name,
    "sku": Product.sku,
    "price": Product.price,
    "cost_price": Product.cost_price,
    "created_at": Product.created_at,
    "stock": _available,
}


def get(session: Session, product_id: int) -> Product | None:
    return session.get(Product, product_id)


def get_by_sku(session: Session, sku: str) -> Product | None:
    return session.scalar(select(Product).where(Product.sku == sku))


def sku_taken(session: Session, sku: str, *, exclude_id: int | None = None) -> bool:
    stmt = select(Product.id).where(Product.sku == sku)
    if exclude_id is not None:
        stmt = stmt.where(Product.id != exclude_id)
    return session.scalar(stmt.limit(1)) is not None


def stock_by_warehouse(session: Session, product_id: int) -> list[Row[Any]]:
    """The product's level rows with their warehouse, by warehouse code."""
    stmt = (
        select(
            Warehouse.id.label("warehouse_id"),
            Warehouse.code.label("warehouse_code"),
            Warehouse.name.label("warehouse_name"),
            StockLevel.on_hand,
            StockLevel.reserved,
        )
        .join(Warehouse, Warehouse.id == StockLevel.warehouse_id)
        .where(StockLevel.product_id == product_id)
        .order_by(Warehouse.code)
    )
    return list(session.execute(stmt))


def list_page(
    session: Session,
    *,
    filters: ProductFilters,
    created: TimeWindow,
    subtree_paths: Sequence[str],
    page: PageParams,
    order_by: list[Any],
) -> Slice[Any]:
    """Rows of (Product, Category or None, on_hand, reserved, available), and the total;
    ``subtree_paths``: of the categories filtered on (the products in any of their subtrees)."""
    category = aliased(Category, name="category")
    stmt = (
        select(
            Product,
            category,
            _on_hand.label("on_hand"),
            _reserved.label("reserved"),
            _available.label("available"),
        )
        .outerjoin(_stock, _stock.c.product_id == Product.id)
        .outerjoin(category, category.id == Product.category_id)
    )
    if filters.q and filters.q.strip():
        needle = filters.q.strip().lower()
        stmt = stmt.where(
            or_(
                *(
                    func.lower(column).contains(needle, autoescape=True)
                    for column in (Product.name, Product.sku, Product.description)
                )
            )
        )
    if subtree_paths:
        subtree = aliased(Category, name="subtree")
        in_one = or_(*(subtree.path.startswith(path, autoescape=True) for path in subtree_paths))
        stmt = stmt.where(Product.category_id.in_(select(subtree.id).where(in_one)))
    stmt = stmt.where(_status_filter(filters.status or [], filters.include_archived))
    if filters.min_price is not None:
        stmt = stmt.where(Product.price >= filters.min_price)
    if filters.max_price is not None:
        stmt = stmt.where(Product.price <= filters.max_price)
    if created.start is not None:
        stmt = stmt.where(Product.created_at >= created.start)
    if created.end is not None:
        stmt = stmt.where(Product.created_at < created.end)
    if filters.low_stock_only:
        stmt = stmt.where(_available <= Product.low_stock_threshold)
    return paginate(session, stmt, page, [*order_by, Product.id.asc()])


def _status_filter(statuses: Sequence[ProductReadStatus], include_archived: bool) -> Any:
    """The products with any of these statuses (none given: every status); ``archived`` takes
    the archived ones, a stored status those with it that are not archived, and with
    ``include_archived`` archived ones too."""
    live = true() if include_archived else Product.archived_at.is_(None)
    stored = [ProductStatus(s) for s in statuses if s is not ProductReadStatus.ARCHIVED]
    if not statuses:
        return live
    return or_(
        and_(Product.status.in_(stored), live) if stored else false(),
        Product.archived_at.is_not(None) if ProductReadStatus.ARCHIVED in statuses else false(),
    )


# --- an import's batch --------------------------------------------------------------------

# What an import may change of a product: the SKU is its key, the rest is left as it is.
WRITABLE = (
    "name",
    "description",
    "category_id",
    "price",
    "cost_price",
    "status",
    "low_stock_threshold",
    "updated_at",
)


def insert_many(session: Session, rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Insert new products (one multi-row INSERT) and answer their ids by SKU in lower case
    (from the server's numbering where it is known, else read back by SKU)."""
    if not rows:
        return {}
    connection = session.connection()
    ids = insert_ids(connection, _INSERT, rows)
    if ids is not None:
        return {
            row["sku"].casefold(): product_id for row, product_id in zip(rows, ids, strict=True)
        }
    execute_rows(connection, _INSERT, rows)
    found = connection.execute(
        select(PRODUCTS.c.id, PRODUCTS.c.sku).where(PRODUCTS.c.sku.in_([r["sku"] for r in rows]))
    )
    return {sku.casefold(): product_id for product_id, sku in found}


def update_many(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Set the ``WRITABLE`` columns of existing products (each row whole: its id, SKU and
    every column) in one statement (see common.db.update_by_id)."""
    update_by_id(session, PRODUCTS, WRITABLE, rows)


_INSERT = insert(PRODUCTS)
