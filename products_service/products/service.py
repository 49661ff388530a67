"""Product rules: unique SKUs, usable categories, archiving, and the stock each one holds."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common import audit, outbox
from common.db import utcnow
from common.errors import Conflict, NotFound, Unprocessable
from common.models import Category, Product
from common.pagination import PageParams, Slice, parse_sort
from common.query import category_paths
from common.time_window import TimeWindow
from products_service.categories import repository as categories
from products_service.products import repository
from products_service.products.schemas import (
    ProductCreate,
    ProductFilters,
    ProductUpdate,
    StockTotals,
    WarehouseStock,
)


@dataclass(frozen=True)
class ProductView:
    """A product with its category and its stock per warehouse."""

    product: Product
    category: Category | None
    stock: list[WarehouseStock]


@dataclass(frozen=True)
class ProductListRow:
    product: Product
    category: Category | None
    totals: StockTotals


def _sku_conflict(sku: str) -> Conflict:
    return Conflict(f"A product with SKU {sku!r} already exists", field="sku")


def _flush(session: Session, sku: str) -> None:
    """Flush, turning a lost race on the unique SKU into the same 409 as the pre-check."""
    try:
        session.flush()
    except IntegrityError as exc:
        if "sku" in str(exc.orig):
            raise _sku_conflict(sku) from exc
        raise


def _usable_category(session: Session, category_id: int) -> Category:
    """The category a product is put in must exist and be active.

    Its row is share-locked so it cannot be archived before this product is saved.
    """
    category = categories.get(session, category_id, lock="share")
    if category is None:
        raise Unprocessable(f"Category {category_id} does not exist", field="category_id")
    if category.archived_at is not None:
        raise Unprocessable(
            f"Category {category_id} is archived; choose an active category",
            field="category_id",
        )
    return category


def _view(session: Session, product: Product) -> ProductView:
    category = (
        categories.get(session, product.category_id) if product.category_id is not None else None
    )
    stock = [
        WarehouseStock(
            warehouse_id=row.warehouse_id,
            warehouse_code=row.warehouse_code,
            warehouse_name=row.warehouse_name,
            on_hand=row.on_hand,
            reserved=row.reserved,
            available=row.on_hand - row.reserved,
        )
        for row in repository.stock_by_warehouse(session, product.id)
    ]
    return ProductView(product=product, category=category, stock=stock)


# What alerts and price-watchers need to know of a product, on every event about it.
EVENT_FIELDS = (
    "sku",
    "name",
    "category_id",
    "price",
    "cost_price",
    "status",
    "low_stock_threshold",
)


# What the audit log follows of a product.
AUDIT_TRAIL = audit.Trail("product", (*EVENT_FIELDS, "description", "archived_at"))


def _columns(product: Product) -> dict[str, Any]:
    """What the events and the audit log read of a product."""
    return {"id": product.id, **AUDIT_TRAIL.snapshot(product)}


def _event(
    type_: str,
    product: Mapping[str, Any],
    extra: Mapping[str, object] | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """A catalog event about this product (its columns), with the fields every consumer
    relies on and ``extra``; ``at``: when it occurred (now if not given)."""
    payload = {"product_id": product["id"], **{f: product[f] for f in EVENT_FIELDS}}
    return outbox.event(type_, product["id"], {**payload, **(extra or {})}, at)


def _updated_event(
    product: Mapping[str, Any],
    changed: Mapping[str, Mapping[str, Any]],
    *,
    at: datetime | None = None,
) -> dict[str, Any]:
    """``product.updated`` naming the fields that changed and what they were."""
    previous = {
        f: str(c["before"]) if f in ("price", "cost_price") else c["before"]
        for f, c in changed.items()
    }
    return _event("product.updated", product, {"changed": list(changed), "previous": previous}, at)


def _publish(session: Session, type_: str, product: Product, **extra: object) -> None:
    """Append a catalog event in the change's transaction (see common.outbox)."""
    outbox.append(session, outbox.PRODUCTS_OUTBOX, [_event(type_, _columns(product), extra)])


def _get(session: Session, product_id: int) -> Product:
    product = repository.get(session, product_id)
    if product is None:
        raise NotFound(f"Product {product_id} not found", resource="product", id=product_id)
    return product


def get_product(*, session: Session, product_id: int) -> ProductView:
    return _view(session, _get(session, product_id))


def get_product_by_sku(*, session: Session, sku: str) -> ProductView:
    product = repository.get_by_sku(session, sku.strip())
    if product is None:
        raise NotFound(f"Product with SKU {sku!r} not found", resource="product", sku=sku)
    return _view(session, product)


def create_product(
    *, session: Session, data: ProductCreate, actor_id: int | None, actor_email: str | None
) -> ProductView:
    if data.category_id is not None:
        _usable_category(session, data.category_id)
    if repository.sku_taken(session, data.sku):
        raise _sku_conflict(data.sku)
    product = Product(**data.model_dump())
    session.add(product)
    _flush(session, data.sku)
    _publish(session, "product.created", product)
    AUDIT_TRAIL.record(
        session, "product.created", product, {}, actor_id=actor_id, actor_email=actor_email
    )
    return _view(session, product)


def update_product(
    *,
    session: Session,
    product_id: int,
    data: ProductUpdate,
    actor_id: int | None,
    actor_email: str | None,
) -> ProductView:
    """Change the fields sent; a new SKU must be unused and a new category active."""
    product = _get(session, product_id)
    changes = data.model_dump(exclude_unset=True)
    new_category = changes.get("category_id")
    if new_category is not None and new_category != product.category_id:
        _usable_category(session, new_category)
    sku = changes.get("sku")
    if sku is not None and repository.sku_taken(session, sku, exclude_id=product.id):
        raise _sku_conflict(sku)
    before = AUDIT_TRAIL.snapshot(product)
    for field, value in changes.items():
        setattr(product, field, value)
    _flush(session, product.sku)
    changed = AUDIT_TRAIL.record(
        session, "product.updated", product, before, actor_id=actor_id, actor_email=actor_email
    )
    if changed:
        outbox.append(session, outbox.PRODUCTS_OUTBOX, [_updated_event(_columns(product), changed)])
    return _view(session, product)


def save_many(
    *,
    session: Session,
    creates: Sequence[ProductCreate],
    updates: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
    actor_id: int | None,
    actor_email: str | None,
) -> None:
    """Create and change many products at once (an import's batch), with the events and
    audit entries ``create_product`` and ``update_product`` write for each one, in a few
    statements and no object per product.

    The caller has checked what those check (SKUs free, categories active) in this
    transaction; a SKU taken meanwhile by someone else is the same 409. ``updates`` pairs a
    product's columns (``id`` and every column, read under a lock) with the fields to set.
    """
    now = utcnow()
    new = [{**vars(data), "created_at": now, "updated_at": now} for data in creates]
    try:
        ids = repository.insert_many(session, new)
    except IntegrityError as exc:
        if "sku" in str(exc.orig):
            raise Conflict(
                "A SKU of this batch was taken by another request meanwhile; nothing was "
                "written. Run it again",
                field="sku",
            ) from exc
        raise
    created = [{**values, "id": ids[values["sku"].casefold()]} for values in new]
    changed = [({**product, **changes, "updated_at": now}, product) for product, changes in updates]
    repository.update_many(session, [after for after, _ in changed])
    diffs = [(after, AUDIT_TRAIL.changes(before, after)) for after, before in changed]
    events = [_event("product.created", product, at=now) for product in created]
    events += [_updated_event(after, diff, at=now) for after, diff in diffs if diff]
    # The events and the audit entries are sent without waiting for the server's answer:
    # each statement's rows are built while the one before is written, and the last one
    # is written while the caller reads its next batch (common.db.execute_rows).
    outbox.append(session, outbox.PRODUCTS_OUTBOX, events, answer_later=True)
    for action, entries in (
        ("product.created", [(p["id"], AUDIT_TRAIL.changes({}, p)) for p in created]),
        ("product.updated", [(after["id"], diff) for after, diff in diffs]),
    ):
        AUDIT_TRAIL.record_many(
            session, action, entries, actor_id=actor_id, actor_email=actor_email, answer_later=True
        )


def archive_product(
    *, session: Session, product_id: int, actor_id: int | None, actor_email: str | None
) -> ProductView:
    """Hide it from the default list; its stock is left as it is."""
    product = _get(session, product_id)
    if product.archived_at is None:
        before = AUDIT_TRAIL.snapshot(product)
        product.archived_at = utcnow()
        session.flush()
        _publish(session, "product.archived", product)
        AUDIT_TRAIL.record(
            session, "product.archived", product, before, actor_id=actor_id, actor_email=actor_email
        )
    return _view(session, product)


def restore_product(
    *, session: Session, product_id: int, actor_id: int | None, actor_email: str | None
) -> ProductView:
    product = _get(session, product_id)
    if product.archived_at is not None:
        before = AUDIT_TRAIL.snapshot(product)
        product.archived_at = None
        session.flush()
        _publish(session, "product.restored", product)
        AUDIT_TRAIL.record(
            session, "product.restored", product, before, actor_id=actor_id, actor_email=actor_email
        )
    return _view(session, product)


def list_products(
    *,
    session: Session,
    filters: ProductFilters,
    created: TimeWindow,
    sort: str | None,
    page: PageParams,
) -> Slice[ProductListRow]:
    """One page of products matching the filters, with stock totals; newest first by default."""
    order_by = parse_sort(sort, repository.SORT_COLUMNS, default="-created_at")
    return repository.list_page(
        session,
        filters=filters,
        created=created,
        subtree_paths=category_paths(session, filters.category_id or ()),
        page=page,
        order_by=order_by,
    ).map(
        lambda row: ProductListRow(
            product=row[0],
            category=row[1],
            totals=StockTotals(
                on_hand=int(row.on_hand), reserved=int(row.reserved), available=int(row.available)
            ),
        )
    )
