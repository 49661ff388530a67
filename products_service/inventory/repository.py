"""Every SQL query of the inventory domain (stock changes themselves go through ledger.py)."""

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import ColumnElement, Select, and_, case, func, literal, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from common.models import (
    Category,
    MovementType,
    Product,
    Reservation,
    ReservationLine,
    ReservationStatus,
    StockLevel,
    StockMovement,
    Transfer,
    TransferStatus,
    Warehouse,
)
from common.pagination import PageParams, Slice, first, page_rows, paginate, parse_sort
from products_service.inventory.ledger import LevelKey

# --- lookups ---------------------------------------------------------------------------


def get_product(session: Session, product_id: int) -> Product | None:
    return session.get(Product, product_id)


def get_warehouse(session: Session, warehouse_id: int) -> Warehouse | None:
    return session.get(Warehouse, warehouse_id)


def names(
    session: Session, product_ids: Iterable[int], warehouse_ids: Iterable[int]
) -> tuple[dict[int, str], dict[int, str]]:
    """The SKUs of these products and the codes of these warehouses (a query each)."""
    products, warehouses = set(product_ids), set(warehouse_ids)
    skus: dict[int, str] = {}
    codes: dict[int, str] = {}
    if products:
        found = session.execute(select(Product.id, Product.sku).where(Product.id.in_(products)))
        skus = {product_id: sku for product_id, sku in found}
    if warehouses:
        found = session.execute(
            select(Warehouse.id, Warehouse.code).where(Warehouse.id.in_(warehouses))
        )
        codes = {warehouse_id: code for warehouse_id, code in found}
    return skus, codes


def get_level(session: Session, product_id: int, warehouse_id: int) -> StockLevel | None:
    return session.scalar(
        select(StockLevel).where(
            StockLevel.product_id == product_id, StockLevel.warehouse_id == warehouse_id
        )
    )


# --- transfers -------------------------------------------------------------------------


def add_transfer(session: Session, transfer: Transfer) -> Transfer:
    session.add(transfer)
    session.flush()
    return transfer


def lock_transfer(session: Session, transfer_id: int) -> Transfer | None:
    """The transfer row, locked, so two completes or cancels of it run one after the other."""
    return session.scalar(
        select(Transfer)
        .where(Transfer.id == transfer_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def get_transfer(session: Session, transfer_id: int) -> Transfer | None:
    return session.get(Transfer, transfer_id)


TRANSFER_SORT = {"created_at": Transfer.created_at, "id": Transfer.id}


def list_transfers(
    session: Session,
    *,
    statuses: Collection[TransferStatus],
    product_ids: Collection[int],
    warehouse_ids: Collection[int],
    page: PageParams,
    order_by: list[Any],
) -> Slice[Transfer]:
    stmt = select(Transfer)
    if statuses:
        stmt = stmt.where(Transfer.status.in_(list(statuses)))
    if product_ids:
        stmt = stmt.where(Transfer.product_id.in_(list(product_ids)))
    if warehouse_ids:
        stmt = stmt.where(
            or_(
                Transfer.from_warehouse_id.in_(list(warehouse_ids)),
                Transfer.to_warehouse_id.in_(list(warehouse_ids)),
            )
        )
    return paginate(session, stmt, page, [*order_by, Transfer.id.desc()]).map(first)


# --- ledger and levels -----------------------------------------------------------------

MOVEMENT_SORT = {"created_at": StockMovement.created_at, "id": StockMovement.id}


def list_movements(
    session: Session,
    *,
    product_id: int,
    warehouse_ids: Collection[int],
    types: Collection[MovementType],
    created_from: datetime | None,
    created_to: datetime | None,
    page: PageParams,
    order_by: list[Any],
) -> Slice[StockMovement]:
    """One page of a product's ledger."""
    stmt = select(StockMovement).where(StockMovement.product_id == product_id)
    if warehouse_ids:
        stmt = stmt.where(StockMovement.warehouse_id.in_(list(warehouse_ids)))
    if types:
        stmt = stmt.where(StockMovement.movement_type.in_(list(types)))
    if created_from is not None:
        stmt = stmt.where(StockMovement.created_at >= created_from)
    if created_to is not None:
        stmt = stmt.where(StockMovement.created_at < created_to)
    return paginate(session, stmt, page, [*order_by, StockMovement.id.desc()]).map(first)


LEVEL_SORT = {
    "product_id": StockLevel.product_id,
    "warehouse_id": StockLevel.warehouse_id,
    "on_hand": StockLevel.on_hand,
    "available": StockLevel.on_hand - StockLevel.reserved,
    "updated_at": StockLevel.updated_at,
}


def list_levels(
    session: Session,
    *,
    product_ids: Collection[int],
    warehouse_ids: Collection[int],
    page: PageParams,
    order_by: list[Any],
) -> Slice[StockLevel]:
    stmt = select(StockLevel)
    if product_ids:
        stmt = stmt.where(StockLevel.product_id.in_(list(product_ids)))
    if warehouse_ids:
        stmt = stmt.where(StockLevel.warehouse_id.in_(list(warehouse_ids)))
    return paginate(session, stmt, page, [*order_by, StockLevel.id.asc()]).map(first)


# The sorts of the levels at a past moment: what was reserved then is not known (see
# service.list_levels_as_of), so neither is what was available.
LEVEL_AS_OF_SORT = ("product_id", "warehouse_id", "on_hand", "updated_at")


class LevelThen(NamedTuple):
    product_id: int
    warehouse_id: int
    on_hand: int
    updated_at: datetime


def list_levels_as_of(
    session: Session,
    *,
    as_of: datetime,
    product_ids: Collection[int],
    warehouse_ids: Collection[int],
    page: PageParams,
    sort: str | None,
) -> Slice[LevelThen]:
    """On-hand stock of each (product, warehouse) at ``as_of``: the sum of its ledger up to
    then (``created_at <= as_of``), with the time of its last movement; pairs with no
    movement by then are left out.

    One statement per page: the levels are grouped in a derived table, which
    ``ix_stock_movements_level_at`` (product_id, warehouse_id, created_at, quantity) answers
    from the index alone, and the total is a window over its rows (a second COUNT would
    aggregate the ledger again). The window stays outside the grouping: grouped and
    windowed in one SELECT, MariaDB 10.11 returned rows out of their ORDER BY (the plan
    relied on the index's group order, which the window's temporary table does not keep).
    """
    grouped = select(
        StockMovement.product_id.label("product_id"),
        StockMovement.warehouse_id.label("warehouse_id"),
        func.sum(StockMovement.quantity).label("on_hand"),
        func.max(StockMovement.created_at).label("updated_at"),
    ).where(StockMovement.created_at <= as_of)
    if product_ids:
        grouped = grouped.where(StockMovement.product_id.in_(list(product_ids)))
    if warehouse_ids:
        grouped = grouped.where(StockMovement.warehouse_id.in_(list(warehouse_ids)))
    levels = grouped.group_by(StockMovement.product_id, StockMovement.warehouse_id).subquery(
        "levels_then"
    )
    order_by = parse_sort(
        sort, {name: levels.c[name] for name in LEVEL_AS_OF_SORT}, "product_id,warehouse_id"
    )
    stmt = select(
        levels.c.product_id,
        levels.c.warehouse_id,
        levels.c.on_hand,
        levels.c.updated_at,
        func.count().over().label("total"),
    )
    rows, next_cursor = page_rows(
        session, stmt, page, [*order_by, levels.c.product_id.asc(), levels.c.warehouse_id.asc()]
    )
    if rows and page.cursor is None:
        total = int(rows[0].total)
    elif page.offset == 0 and page.cursor is None:
        total = 0
    else:  # past the end, or after a cursor: the window counted only the rows after it
        total = session.scalar(select(func.count()).select_from(levels)) or 0
    return Slice(
        [LevelThen(r.product_id, r.warehouse_id, int(r.on_hand), r.updated_at) for r in rows],
        total,
        page,
        next_cursor,
    )


# --- low stock -------------------------------------------------------------------------


class _HealthQuery(NamedTuple):
    stmt: Select[Any]
    available: ColumnElement[Any]
    threshold: ColumnElement[Any] | InstrumentedAttribute[int]
    rank: ColumnElement[Any]
    stock_on_hand: ColumnElement[Any]


AnySelect = TypeVar("AnySelect", bound=Select[*tuple[Any, ...]])


def _counted_levels(stmt: AnySelect, warehouse_ids: Collection[int]) -> AnySelect:
    """``stmt`` over the level rows the low-stock list counts: those warehouses' alone, or
    those of every active warehouse (joined, for its columns)."""
    stmt = stmt.join(Warehouse, Warehouse.id == StockLevel.warehouse_id)
    if warehouse_ids:
        return stmt.where(StockLevel.warehouse_id.in_(list(warehouse_ids)))
    return stmt.where(Warehouse.is_active.is_(True))


def _health_query(
    *, threshold: int | None, warehouse_ids: Collection[int], product_ids: Collection[int] | None
) -> _HealthQuery:
    """Every product (archived too) by total available stock against its threshold, with its
    health rank: 0 out (available <= 0), 1 critical (<= half the threshold), 2 low (<= the
    threshold), 3 ok.

    Without ``warehouse_ids`` only active warehouses count; with them, those alone.
    Products with no level row at all count as zero.
    """
    levels = _counted_levels(
        select(StockLevel.product_id, StockLevel.on_hand, StockLevel.reserved), warehouse_ids
    )
    if product_ids is not None:
        levels = levels.where(StockLevel.product_id.in_(product_ids))
    stock = levels.subquery("stock")

    on_hand = func.coalesce(func.sum(stock.c.on_hand), 0)
    reserved = func.coalesce(func.sum(stock.c.reserved), 0)
    available = on_hand - reserved
    limit = literal(threshold) if threshold is not None else Product.low_stock_threshold
    rank = case(
        (available <= 0, 0),
        (available * 2 <= limit, 1),
        (available <= limit, 2),
        else_=3,
    )
    stmt = (
        select(
            Product.id.label("product_id"),
            Product.sku,
            Product.name,
            Product.category_id,
            Product.archived_at,
            Product.price,
            Product.low_stock_threshold,
            on_hand.label("on_hand"),
            reserved.label("reserved"),
            available.label("available"),
            limit.label("threshold"),
            rank.label("rank"),
        )
        .outerjoin(stock, stock.c.product_id == Product.id)
        .group_by(
            Product.id,
            Product.sku,
            Product.name,
            Product.category_id,
            Product.archived_at,
            Product.price,
            Product.low_stock_threshold,
        )
    )
    if product_ids is not None:
        stmt = stmt.where(Product.id.in_(product_ids))
    return _HealthQuery(stmt, available, limit, rank, on_hand)


LOW_STOCK_SORT = ("health", "available", "on_hand", "sku", "name")


def list_low_stock(
    session: Session,
    *,
    threshold: int | None,
    warehouse_ids: Collection[int],
    category_ids: Collection[int],
    include_ok: bool,
    page: PageParams,
    sort: str | None,
) -> Slice[Any]:
    """Unarchived products by total available stock against their threshold, most urgent
    first unless ``sort`` says otherwise (see _health_query)."""
    query = _health_query(threshold=threshold, warehouse_ids=warehouse_ids, product_ids=None)
    columns = {
        "health": query.rank,
        "available": query.available,
        "on_hand": query.stock_on_hand,
        "sku": Product.sku,
        "name": Product.name,
    }
    order_by = parse_sort(sort, columns, "health,available")
    stmt = query.stmt.where(Product.archived_at.is_(None))
    if category_ids:
        # Each category's subtree: itself and every category whose path passes through it.
        subtree = select(Category.id).where(
            or_(
                *(or_(Category.id == one, Category.path.like(f"%/{one}/%")) for one in category_ids)
            )
        )
        stmt = stmt.where(Product.category_id.in_(subtree))
    if not include_ok:
        stmt = stmt.having(query.available <= query.threshold)
    return paginate(session, stmt, page, [*order_by, Product.id.asc()])


def stock_by_warehouse(
    session: Session, product_ids: Collection[int], *, warehouse_ids: Collection[int]
) -> list[Any]:
    """The level rows the low-stock list counts for these products (that warehouse, or every
    active one), with each warehouse's code."""
    if not product_ids:
        return []
    stmt = select(
        StockLevel.product_id,
        StockLevel.warehouse_id,
        Warehouse.code,
        StockLevel.on_hand,
        StockLevel.reserved,
    ).select_from(StockLevel)
    stmt = _counted_levels(stmt, warehouse_ids).where(StockLevel.product_id.in_(product_ids))
    return list(session.execute(stmt.order_by(StockLevel.product_id, Warehouse.code)))


# The ledger kinds that sales move: a `sale` takes units (a negative quantity), a `return`
# brings them back (a refund, a cancellation, the stock of a sale that was not recorded).
SALES_MOVEMENTS = (MovementType.SALE, MovementType.RETURN)


def units_sold(
    session: Session,
    product_ids: Collection[int],
    *,
    warehouse_ids: Collection[int],
    sold_from: datetime,
    sold_to: datetime,
) -> dict[LevelKey, int]:
    """Net units sales took from each (product, warehouse) in [sold_from, sold_to): `sale`
    movements less `return` movements; pairs with none are left out.

    One grouped query, on its own rather than joined to the levels: joined, MariaDB reads
    it per level through ``ix_stock_movements_level``, the whole history of each shelf.
    Alone, ``ix_stock_movements_product_at`` (product_id, created_at) serves it as one
    index range per product, the window's rows only.
    """
    if not product_ids:
        return {}
    stmt = (
        select(
            StockMovement.product_id,
            StockMovement.warehouse_id,
            func.sum(-StockMovement.quantity),
        )
        .where(
            StockMovement.product_id.in_(product_ids),
            StockMovement.created_at >= sold_from,
            StockMovement.created_at < sold_to,
            StockMovement.movement_type.in_(SALES_MOVEMENTS),
        )
        .group_by(StockMovement.product_id, StockMovement.warehouse_id)
    )
    if warehouse_ids:
        stmt = stmt.where(StockMovement.warehouse_id.in_(list(warehouse_ids)))
    return {(p, w): int(units) for p, w, units in session.execute(stmt)}


def stock_health(session: Session, product_ids: Collection[int]) -> list[Any]:
    """These products' rows of the low-stock list (all active warehouses, each product's own
    threshold), archived ones included, with ``archived_at``."""
    if not product_ids:
        return []
    query = _health_query(threshold=None, warehouse_ids=(), product_ids=product_ids)
    return list(session.execute(query.stmt))


# --- ledger check ----------------------------------------------------------------------


def level_rows(session: Session) -> dict[LevelKey, tuple[int, int]]:
    """(on_hand, reserved) of every level row."""
    rows = session.execute(
        select(
            StockLevel.product_id, StockLevel.warehouse_id, StockLevel.on_hand, StockLevel.reserved
        )
    )
    return {(p, w): (on_hand, reserved) for p, w, on_hand, reserved in rows}


def ledger_sums(session: Session) -> dict[LevelKey, int]:
    """Sum of the ledger per (product, warehouse)."""
    rows = session.execute(
        select(
            StockMovement.product_id, StockMovement.warehouse_id, func.sum(StockMovement.quantity)
        ).group_by(StockMovement.product_id, StockMovement.warehouse_id)
    )
    return {(p, w): int(total) for p, w, total in rows}


def last_on_hand_after(session: Session) -> dict[LevelKey, int]:
    """The level the newest movement of each (product, warehouse) left behind."""
    newest = (
        select(func.max(StockMovement.id).label("id"))
        .group_by(StockMovement.product_id, StockMovement.warehouse_id)
        .subquery("newest")
    )
    rows = session.execute(
        select(
            StockMovement.product_id, StockMovement.warehouse_id, StockMovement.on_hand_after
        ).join(newest, newest.c.id == StockMovement.id)
    )
    return {(p, w): after for p, w, after in rows}


def active_reserved_sums(session: Session) -> dict[LevelKey, int]:
    """Quantity held by active reservations per (product, warehouse)."""
    rows = session.execute(
        select(
            ReservationLine.product_id,
            ReservationLine.warehouse_id,
            func.sum(ReservationLine.quantity),
        )
        .join(
            Reservation,
            and_(
                Reservation.id == ReservationLine.reservation_id,
                Reservation.status == ReservationStatus.ACTIVE,
            ),
        )
        .group_by(ReservationLine.product_id, ReservationLine.warehouse_id)
    )
    return {(p, w): int(total) for p, w, total in rows}
