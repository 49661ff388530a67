"""Inventory rules: what each stock operation may do, transfers, the ledger and its check.

Every change locks its level rows through ``ledger.lock_levels`` and writes through
``ledger.record_movement``, so the ledger of a level always sums to its ``on_hand``.
"""

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy.orm import Session

from common.actors import actor_emails
from common.cover import stock_cover
from common.db import utcnow
from common.errors import Conflict, InsufficientStock, InvalidState, NotFound, Unprocessable
from common.models import (
    Category,
    MovementType,
    Product,
    StockLevel,
    StockMovement,
    Transfer,
    TransferStatus,
    Warehouse,
)
from common.pagination import PageParams, Slice
from common.query import require_known_ids
from products_service.categories.service import full_names_by_id
from products_service.inventory import repository
from products_service.inventory.ledger import lock_levels, record_movement, record_movements
from products_service.inventory.schemas import (
    AdjustmentCreate,
    CountCreate,
    DamageCreate,
    LedgerCheckRead,
    LedgerMismatch,
    LowStockItem,
    MovementRead,
    ProductHealth,
    ReceiptCreate,
    ReturnCreate,
    StockChangeRead,
    StockHealth,
    StockLevelListRead,
    StockLevelRead,
    TransferCreate,
    TransferRead,
    WarehouseStock,
)

CANCELLED_REASON = "transfer cancelled"

# --- lookups ---------------------------------------------------------------------------


def get_product(*, session: Session, product_id: int, field: str = "product_id") -> Product:
    product = repository.get_product(session, product_id)
    if product is None:
        raise NotFound(
            f"Product {product_id} not found", resource="product", id=product_id, field=field
        )
    return product


def get_warehouse(*, session: Session, warehouse_id: int, field: str = "warehouse_id") -> Warehouse:
    warehouse = repository.get_warehouse(session, warehouse_id)
    if warehouse is None:
        raise NotFound(
            f"Warehouse {warehouse_id} not found",
            resource="warehouse",
            id=warehouse_id,
            field=field,
        )
    return warehouse


def _require_active(warehouse: Warehouse, *, field: str, action: str) -> None:
    if not warehouse.is_active:
        raise Conflict(
            f"Warehouse {warehouse.id} ({warehouse.code}) is inactive and cannot {action}; "
            "reactivate it first",
            field=field,
            warehouse_id=warehouse.id,
        )


def _require_not_archived(product: Product, *, action: str) -> None:
    if product.archived_at is not None:
        raise Conflict(
            f"Product {product.id} ({product.sku}) is archived and cannot {action}",
            field="product_id",
            product_id=product.id,
        )


# --- answers ---------------------------------------------------------------------------


def level_read(level: StockLevel, sku: str, warehouse_code: str) -> StockLevelRead:
    return StockLevelRead(
        product_id=level.product_id,
        sku=sku,
        warehouse_id=level.warehouse_id,
        warehouse_code=warehouse_code,
        on_hand=level.on_hand,
        reserved=level.reserved,
        available=level.available,
        updated_at=level.updated_at,
    )


def movement_read(
    movement: StockMovement, actor_email: str | None, sku: str, warehouse_code: str
) -> MovementRead:
    return MovementRead(
        id=movement.id,
        product_id=movement.product_id,
        sku=sku,
        warehouse_id=movement.warehouse_id,
        warehouse_code=warehouse_code,
        type=movement.movement_type,
        quantity=movement.quantity,
        on_hand_after=movement.on_hand_after,
        reason=movement.reason,
        reference=movement.reference,
        actor_id=movement.actor_id,
        actor_email=actor_email,
        created_at=movement.created_at,
    )


def _change(
    session: Session, level: StockLevel, movement: StockMovement | None, detail: str
) -> StockChangeRead:
    session.flush()  # level.updated_at is set by the UPDATE
    # Both were read (and checked) for this change: the session holds them.
    product = session.get_one(Product, level.product_id)
    warehouse = session.get_one(Warehouse, level.warehouse_id)
    read = None
    if movement is not None:
        emails = actor_emails(session, [movement.actor_id])
        read = movement_read(
            movement, emails.get(movement.actor_id or 0), product.sku, warehouse.code
        )
    return StockChangeRead(
        recorded=movement is not None,
        detail=detail,
        movement=read,
        level=level_read(level, product.sku, warehouse.code),
    )


@dataclass(frozen=True)
class _Target:
    product: Product
    warehouse: Warehouse


def _target(session: Session, product_id: int, warehouse_id: int) -> _Target:
    return _Target(
        product=get_product(session=session, product_id=product_id),
        warehouse=get_warehouse(session=session, warehouse_id=warehouse_id),
    )


def _lock_one(session: Session, product_id: int, warehouse_id: int) -> StockLevel:
    return lock_levels(session, [(product_id, warehouse_id)])[(product_id, warehouse_id)]


# --- single-level operations ------------------------------------------------------------


def receive(*, session: Session, data: ReceiptCreate, actor_id: int) -> StockChangeRead:
    """Stock arriving; refused for an archived product or an inactive warehouse."""
    target = _target(session, data.product_id, data.warehouse_id)
    _require_not_archived(target.product, action="receive stock")
    _require_active(target.warehouse, field="warehouse_id", action="receive stock")
    level = _lock_one(session, data.product_id, data.warehouse_id)
    movement = record_movement(
        session,
        level,
        movement_type=MovementType.RECEIPT,
        quantity=data.quantity,
        reason=data.reason,
        reference=data.reference,
        actor_id=actor_id,
    )
    return _change(session, level, movement, f"Received {data.quantity}")


def adjust(*, session: Session, data: AdjustmentCreate, actor_id: int) -> StockChangeRead:
    """A signed correction; never below zero nor below what is reserved."""
    _target(session, data.product_id, data.warehouse_id)
    level = _lock_one(session, data.product_id, data.warehouse_id)
    movement = record_movement(
        session,
        level,
        movement_type=MovementType.ADJUSTMENT,
        quantity=data.quantity,
        reason=data.reason,
        reference=data.reference,
        actor_id=actor_id,
    )
    return _change(session, level, movement, f"Adjusted by {data.quantity:+d}")


def count(*, session: Session, data: CountCreate, actor_id: int) -> StockChangeRead:
    """Set on_hand to what was counted, recording the difference; a match records nothing."""
    _target(session, data.product_id, data.warehouse_id)
    level = _lock_one(session, data.product_id, data.warehouse_id)
    movement = correct_count(
        session,
        level,
        counted_quantity=data.counted_quantity,
        reason=data.reason,
        reference=data.reference,
        actor_id=actor_id,
    )
    if movement is None:
        return _change(
            session,
            level,
            None,
            f"Count matches on hand ({level.on_hand}); nothing was recorded",
        )
    return _change(
        session,
        level,
        movement,
        f"Count of {data.counted_quantity} corrected on hand by {movement.quantity:+d}",
    )


def count_shortfall(level: StockLevel, counted_quantity: int) -> InsufficientStock | None:
    """The refusal of a count below what is reserved on that shelf, if it is one."""
    if counted_quantity >= level.reserved:
        return None
    return InsufficientStock(
        f"Counted {counted_quantity} of product {level.product_id} in warehouse "
        f"{level.warehouse_id}, but {level.reserved} are reserved; release or commit "
        "those reservations before recording this count",
        product_id=level.product_id,
        warehouse_id=level.warehouse_id,
        counted_quantity=counted_quantity,
        on_hand=level.on_hand,
        reserved=level.reserved,
        available=level.available,
    )


def _correction(level: StockLevel, counted_quantity: int) -> int:
    """The signed quantity that makes a locked level's on_hand the counted one (0: it
    matches already); a count below what is reserved is refused."""
    shortfall = count_shortfall(level, counted_quantity)
    if shortfall is not None:
        raise shortfall
    return counted_quantity - level.on_hand


def correct_count(
    session: Session,
    level: StockLevel,
    *,
    counted_quantity: int,
    reason: str,
    reference: str | None,
    actor_id: int | None,
) -> StockMovement | None:
    """On a locked level, record the `count_correction` that makes on_hand the counted
    quantity; None when they already match. Refused below what is reserved."""
    quantity = _correction(level, counted_quantity)
    if not quantity:
        return None
    return record_movement(
        session,
        level,
        movement_type=MovementType.COUNT_CORRECTION,
        quantity=quantity,
        reason=reason,
        reference=reference,
        actor_id=actor_id,
    )


def correct_counts(
    session: Session,
    counts: Sequence[tuple[StockLevel, int]],
    *,
    reason: str,
    reference: str | None,
    actor_id: int | None,
) -> int:
    """``correct_count`` for many locked levels (each with its counted quantity) at once,
    answering how many were corrected; the levels that already match record nothing."""
    corrections = [(level, _correction(level, counted)) for level, counted in counts]
    return record_movements(
        session,
        [(level, quantity) for level, quantity in corrections if quantity],
        movement_type=MovementType.COUNT_CORRECTION,
        reason=reason,
        reference=reference,
        actor_id=actor_id,
    )


def damage(*, session: Session, data: DamageCreate, actor_id: int) -> StockChangeRead:
    """Write units off; only available (unreserved) units can be written off."""
    _target(session, data.product_id, data.warehouse_id)
    level = _lock_one(session, data.product_id, data.warehouse_id)
    movement = record_movement(
        session,
        level,
        movement_type=MovementType.DAMAGE,
        quantity=-data.quantity,
        reason=data.reason,
        reference=data.reference,
        actor_id=actor_id,
    )
    return _change(session, level, movement, f"Wrote off {data.quantity} as damaged")


def return_stock(*, session: Session, data: ReturnCreate, actor_id: int) -> StockChangeRead:
    """Units returned by a customer go back on the shelf; archived products included."""
    target = _target(session, data.product_id, data.warehouse_id)
    _require_active(target.warehouse, field="warehouse_id", action="take returns")
    level = _lock_one(session, data.product_id, data.warehouse_id)
    movement = record_movement(
        session,
        level,
        movement_type=MovementType.RETURN,
        quantity=data.quantity,
        reason=data.reason,
        reference=data.reference,
        actor_id=actor_id,
    )
    return _change(session, level, movement, f"Returned {data.quantity}")


# --- transfers -------------------------------------------------------------------------


def _transfer_reference(transfer: Transfer) -> str:
    return f"transfer:{transfer.id}"


def transfer_reads(session: Session, transfers: Sequence[Transfer]) -> list[TransferRead]:
    """What the API shows of these transfers: who started each, and the product's SKU and
    the warehouses' codes beside their ids (a query each)."""
    emails = actor_emails(session, [t.created_by_id for t in transfers])
    skus, codes = repository.names(
        session,
        [t.product_id for t in transfers],
        [w for t in transfers for w in (t.from_warehouse_id, t.to_warehouse_id)],
    )
    return [
        TransferRead(
            id=t.id,
            product_id=t.product_id,
            sku=skus[t.product_id],
            from_warehouse_id=t.from_warehouse_id,
            from_warehouse_code=codes[t.from_warehouse_id],
            to_warehouse_id=t.to_warehouse_id,
            to_warehouse_code=codes[t.to_warehouse_id],
            quantity=t.quantity,
            status=t.status,
            reason=t.note,
            actor_id=t.created_by_id,
            actor_email=emails.get(t.created_by_id or 0),
            created_at=t.created_at,
            updated_at=t.updated_at,
            completed_at=t.completed_at,
            cancelled_at=t.cancelled_at,
        )
        for t in transfers
    ]


def transfer_read(session: Session, transfer: Transfer) -> TransferRead:
    return transfer_reads(session, [transfer])[0]


def create_transfer(*, session: Session, data: TransferCreate, actor_id: int) -> Transfer:
    """Take the stock off the source shelf now; it is in transit until completed or cancelled."""
    get_product(session=session, product_id=data.product_id)
    get_warehouse(session=session, warehouse_id=data.from_warehouse_id, field="from_warehouse_id")
    destination = get_warehouse(
        session=session, warehouse_id=data.to_warehouse_id, field="to_warehouse_id"
    )
    _require_active(destination, field="to_warehouse_id", action="receive a transfer")
    level = _lock_one(session, data.product_id, data.from_warehouse_id)
    transfer = repository.add_transfer(
        session,
        Transfer(
            product_id=data.product_id,
            from_warehouse_id=data.from_warehouse_id,
            to_warehouse_id=data.to_warehouse_id,
            quantity=data.quantity,
            status=TransferStatus.IN_TRANSIT,
            note=data.reason,
            created_by_id=actor_id,
        ),
    )
    record_movement(
        session,
        level,
        movement_type=MovementType.TRANSFER_OUT,
        quantity=-data.quantity,
        reason=data.reason or f"transfer to warehouse {data.to_warehouse_id}",
        reference=_transfer_reference(transfer),
        actor_id=actor_id,
    )
    return transfer


def get_transfer(*, session: Session, transfer_id: int) -> Transfer:
    transfer = repository.get_transfer(session, transfer_id)
    if transfer is None:
        raise NotFound(f"Transfer {transfer_id} not found", resource="transfer", id=transfer_id)
    return transfer


def _lock_in_transit(session: Session, transfer_id: int, action: str) -> Transfer:
    transfer = repository.lock_transfer(session, transfer_id)
    if transfer is None:
        raise NotFound(f"Transfer {transfer_id} not found", resource="transfer", id=transfer_id)
    if transfer.status != TransferStatus.IN_TRANSIT:
        raise InvalidState(
            f"Transfer {transfer_id} is {transfer.status.value}; only an in_transit transfer "
            f"can be {action}",
            transfer_id=transfer_id,
            status=transfer.status.value,
        )
    return transfer


def complete_transfer(*, session: Session, transfer_id: int, actor_id: int) -> Transfer:
    """Put the stock on the destination shelf."""
    transfer = _lock_in_transit(session, transfer_id, "completed")
    level = _lock_one(session, transfer.product_id, transfer.to_warehouse_id)
    record_movement(
        session,
        level,
        movement_type=MovementType.TRANSFER_IN,
        quantity=transfer.quantity,
        reason=f"transfer from warehouse {transfer.from_warehouse_id}",
        reference=_transfer_reference(transfer),
        actor_id=actor_id,
    )
    transfer.status = TransferStatus.COMPLETED
    transfer.completed_at = utcnow()
    session.flush()
    return transfer


def cancel_transfer(*, session: Session, transfer_id: int, actor_id: int) -> Transfer:
    """Put the stock back on the source shelf."""
    transfer = _lock_in_transit(session, transfer_id, "cancelled")
    level = _lock_one(session, transfer.product_id, transfer.from_warehouse_id)
    record_movement(
        session,
        level,
        movement_type=MovementType.TRANSFER_IN,
        quantity=transfer.quantity,
        reason=CANCELLED_REASON,
        reference=_transfer_reference(transfer),
        actor_id=actor_id,
    )
    transfer.status = TransferStatus.CANCELLED
    transfer.cancelled_at = utcnow()
    session.flush()
    return transfer


def list_transfers(
    *,
    session: Session,
    statuses: Collection[TransferStatus],
    product_ids: Collection[int],
    warehouse_ids: Collection[int],
    page: PageParams,
    order_by: list[Any],
) -> Slice[Transfer]:
    _require_known(session, product_ids=product_ids, warehouse_ids=warehouse_ids)
    return repository.list_transfers(
        session,
        statuses=statuses,
        product_ids=product_ids,
        warehouse_ids=warehouse_ids,
        page=page,
        order_by=order_by,
    )


# --- reads -----------------------------------------------------------------------------


def _require_known(
    session: Session,
    *,
    product_ids: Collection[int] = (),
    warehouse_ids: Collection[int] = (),
    category_ids: Collection[int] = (),
) -> None:
    """A list's id filters name rows that exist (else a 422 naming the unknown ones)."""
    require_known_ids(session, Product, product_ids, "product")
    require_known_ids(session, Warehouse, warehouse_ids, "warehouse")
    require_known_ids(session, Category, category_ids, "category")


def list_movements(
    *,
    session: Session,
    product_id: int,
    warehouse_ids: Collection[int],
    types: Collection[MovementType],
    created_from: datetime | None,
    created_to: datetime | None,
    page: PageParams,
    order_by: list[Any],
) -> Slice[MovementRead]:
    """A product's ledger, newest first unless sorted otherwise."""
    get_product(session=session, product_id=product_id)
    _require_known(session, warehouse_ids=warehouse_ids)
    found = repository.list_movements(
        session,
        product_id=product_id,
        warehouse_ids=warehouse_ids,
        types=types,
        created_from=created_from,
        created_to=created_to,
        page=page,
        order_by=order_by,
    )
    emails = actor_emails(session, [m.actor_id for m in found.rows])
    skus, codes = repository.names(session, [product_id], [m.warehouse_id for m in found.rows])
    return found.map(
        lambda m: movement_read(
            m, emails.get(m.actor_id or 0), skus[m.product_id], codes[m.warehouse_id]
        )
    )


def list_levels(
    *,
    session: Session,
    product_ids: Collection[int],
    warehouse_ids: Collection[int],
    page: PageParams,
    order_by: list[Any],
) -> Slice[StockLevelListRead]:
    """Today's level rows."""
    _require_known(session, product_ids=product_ids, warehouse_ids=warehouse_ids)
    found = repository.list_levels(
        session, product_ids=product_ids, warehouse_ids=warehouse_ids, page=page, order_by=order_by
    )
    return _level_reads(session, found, reserved_known=True)


def _level_reads(
    session: Session, found: Slice[Any], *, reserved_known: bool
) -> Slice[StockLevelListRead]:
    """Level rows (today's, or the ledger's at a past moment, whose ``reserved`` and so
    ``available`` are not known) with their SKUs and warehouse codes."""
    skus, codes = repository.names(
        session, [r.product_id for r in found.rows], [r.warehouse_id for r in found.rows]
    )
    return found.map(
        lambda level: StockLevelListRead(
            product_id=level.product_id,
            sku=skus[level.product_id],
            warehouse_id=level.warehouse_id,
            warehouse_code=codes[level.warehouse_id],
            on_hand=level.on_hand,
            reserved=level.reserved if reserved_known else None,
            available=level.available if reserved_known else None,
            updated_at=level.updated_at,
        )
    )


def list_levels_as_of(
    *,
    session: Session,
    as_of: datetime,
    product_ids: Collection[int],
    warehouse_ids: Collection[int],
    page: PageParams,
    sort: str | None,
) -> Slice[StockLevelListRead]:
    """On-hand stock per (product, warehouse) at ``as_of`` (at most now), from the ledger:
    the sum of the movements written at or before it.

    What it cannot say: ``reserved`` (a reservation records no history of its holds), hence
    ``available``: both are null, and sorting by ``available`` is refused. A pair with no
    movement by then (a product not yet stocked there) has no row, as a shelf never stocked
    has none today unless something created its level row at zero. A movement is stamped
    when written and seen once its transaction commits, a moment later: an ``as_of`` within
    the last moment may still gain a movement of a transaction still open.
    """
    _require_known(session, product_ids=product_ids, warehouse_ids=warehouse_ids)
    now = utcnow()
    if as_of > now:
        raise Unprocessable(
            f"as_of {as_of.isoformat()} is in the future (now is "
            f"{now.isoformat(timespec='seconds')}); levels are known up to now, or leave "
            "as_of out for the current ones",
            field="query.as_of",
        )
    fields = [name.removeprefix("-") for name in (sort or "").split(",")]
    if "available" in fields:
        raise Unprocessable(
            "Cannot sort by available with as_of: what was reserved, and so available, at a "
            "past moment is not known; sort by on_hand instead",
            field="query.sort",
        )
    found = repository.list_levels_as_of(
        session,
        as_of=as_of,
        product_ids=product_ids,
        warehouse_ids=warehouse_ids,
        page=page,
        sort=sort,
    )
    return _level_reads(session, found, reserved_known=False)


# --- days of cover ---------------------------------------------------------------------


@dataclass(frozen=True)
class SalesWindow:
    """The ``days`` calendar days (UTC) ending today: [start, end)."""

    days: int
    today: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.today - timedelta(days=self.days - 1), time.min, UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.today + timedelta(days=1), time.min, UTC)


def list_low_stock(
    *,
    session: Session,
    threshold: int | None,
    warehouse_ids: Collection[int],
    category_ids: Collection[int],
    include_ok: bool,
    page: PageParams,
    window_days: int,
    sort: str | None = None,
) -> Slice[LowStockItem]:
    """Products at or below their threshold (or the one given), most urgent first unless
    ``sort`` says otherwise; each with its price, own threshold, category's full name and
    stock per warehouse, and on the row and each warehouse the units sales took over the
    last ``window_days`` days (UTC, today included), days of cover and projected stock-out
    date (see ``stock_cover``).

    The one difference from sales_service's insight: the ledger counts a return on the day
    it came back, where the insight counts a refund in the period of its sale.
    """
    _require_known(session, warehouse_ids=warehouse_ids, category_ids=category_ids)
    found = repository.list_low_stock(
        session,
        threshold=threshold,
        warehouse_ids=warehouse_ids,
        category_ids=category_ids,
        include_ok=include_ok,
        page=page,
        sort=sort,
    )
    rows = found.rows
    window = SalesWindow(days=window_days, today=utcnow().date())

    def cover(available: int, units_sold: int) -> dict[str, Any]:
        return asdict(
            stock_cover(
                available=available,
                units_sold=units_sold,
                window_days=window.days,
                today=window.today,
            )
        )

    ids = [row.product_id for row in rows]
    sold = repository.units_sold(
        session, ids, warehouse_ids=warehouse_ids, sold_from=window.start, sold_to=window.end
    )
    split: dict[int, list[WarehouseStock]] = {}
    for level in repository.stock_by_warehouse(session, ids, warehouse_ids=warehouse_ids):
        available = level.on_hand - level.reserved
        split.setdefault(level.product_id, []).append(
            WarehouseStock(
                warehouse_id=level.warehouse_id,
                warehouse_code=level.code,
                on_hand=level.on_hand,
                reserved=level.reserved,
                available=available,
                **cover(available, sold.get((level.product_id, level.warehouse_id), 0)),
            )
        )
    names = full_names_by_id(session, {r.category_id for r in rows if r.category_id})
    items = []
    for row in rows:
        warehouses = split.get(row.product_id, [])
        fields = _low_stock_fields(row)
        items.append(
            LowStockItem(
                **fields,
                category_name=names.get(row.category_id) if row.category_id else None,
                price=row.price,
                low_stock_threshold=row.low_stock_threshold,
                warehouses=warehouses,
                **cover(fields["available"], sum(w.units_sold for w in warehouses)),
            )
        )
    return found.with_rows(items)


def stock_health(*, session: Session, product_ids: Collection[int]) -> dict[int, ProductHealth]:
    """These products' health as the low-stock list reckons it (all active warehouses, each
    product's own threshold), archived ones included; a product that does not exist is left
    out."""
    return {
        row.product_id: ProductHealth(
            **_low_stock_fields(row), archived=row.archived_at is not None
        )
        for row in repository.stock_health(session, sorted(product_ids))
    }


_HEALTH_BY_RANK = list(StockHealth)  # the repository's rank, most urgent first


def _low_stock_fields(row: Any) -> dict[str, Any]:
    return {
        "product_id": row.product_id,
        "sku": row.sku,
        "name": row.name,
        "category_id": row.category_id,
        "on_hand": int(row.on_hand),
        "reserved": int(row.reserved),
        "available": int(row.available),
        "applied_threshold": int(row.threshold),
        "health": _HEALTH_BY_RANK[int(row.rank)],
    }


# --- the ledger check ------------------------------------------------------------------


def check_ledger(*, session: Session) -> LedgerCheckRead:
    """Prove the stock invariants for every level row, with one grouped query per fact."""
    levels = repository.level_rows(session)
    sums = repository.ledger_sums(session)
    last_after = repository.last_on_hand_after(session)
    active = repository.active_reserved_sums(session)

    found: list[dict[str, Any]] = []
    for key in sorted(set(levels) | set(sums) | set(active)):
        problems: list[str] = []
        if key in levels:
            on_hand, reserved = levels[key]
        else:
            on_hand, reserved = 0, 0
            problems.append("ledger rows or reservations exist but there is no level row")
        ledger_sum = sums.get(key, 0)
        active_reserved = active.get(key, 0)
        after = last_after.get(key)
        if ledger_sum != on_hand:
            problems.append(f"ledger sums to {ledger_sum} but on_hand is {on_hand}")
        if after is not None and after != on_hand:
            problems.append(f"last movement left {after} but on_hand is {on_hand}")
        if reserved != active_reserved:
            problems.append(
                f"reserved is {reserved} but active reservations hold {active_reserved}"
            )
        if not 0 <= reserved <= on_hand:
            problems.append(f"reserved {reserved} is outside 0..on_hand ({on_hand})")
        if on_hand < 0:
            problems.append(f"on_hand {on_hand} is negative")
        if problems:
            found.append(
                {
                    "product_id": key[0],
                    "warehouse_id": key[1],
                    "on_hand": on_hand,
                    "ledger_sum": ledger_sum,
                    "reserved": reserved,
                    "active_reserved": active_reserved,
                    "last_on_hand_after": after,
                    "problems": problems,
                }
            )
    # named for the few rows that break an invariant
    skus, codes = repository.names(
        session, [m["product_id"] for m in found], [m["warehouse_id"] for m in found]
    )
    mismatches = [
        LedgerMismatch(
            **m, sku=skus.get(m["product_id"]), warehouse_code=codes.get(m["warehouse_id"])
        )
        for m in found
    ]
    return LedgerCheckRead(ok=not mismatches, levels_checked=len(levels), mismatches=mismatches)
