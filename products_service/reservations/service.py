"""Reservation rules: hold stock all-or-nothing, then commit it as sales, release or expire it.

Lock order, the same everywhere so nothing here can deadlock:
- reserve locks every level row of its products, in (product, warehouse) order, and only
  then inserts its own reservation row;
- commit, release and expiry lock the reservation row first (every status change happens
  under it, so they cannot both apply), then its level rows in (product, warehouse) order.

Why reserve does not insert its row first (which would also queue duplicates of a key on
the unique index): a reserve refused for lack of stock would then roll back a key that
other duplicates wait on, and InnoDB settles those waiters by deadlock. Taking the level
locks first queues duplicates there instead; each then looks for the key again.
"""

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from common import outbox
from common.contracts import ReserveRequest, ShortLine
from common.db import utcnow
from common.errors import (
    InsufficientStock,
    InvalidState,
    NotFound,
    Unprocessable,
    short_line_name,
)
from common.idempotency import replay, request_hash
from common.models import (
    MovementType,
    ProductStatus,
    Reservation,
    ReservationLine,
    ReservationStatus,
    StockLevel,
)
from common.pagination import PageParams, Slice
from common.settings import ProductsSettings
from products_service.inventory.ledger import (
    LevelKey,
    lock_levels,
    lock_product_levels,
    record_movement,
)
from products_service.inventory.repository import names
from products_service.reservations import repository

logger = logging.getLogger(__name__)

EXPIRY_BATCH_SIZE = 100


# --- allocation -------------------------------------------------------------------------


@dataclass(frozen=True)
class Demand:
    """What one line asks for; ``warehouse_id`` None means any active warehouse."""

    line_no: int
    product_id: int
    warehouse_id: int | None
    quantity: int


@dataclass(frozen=True)
class Allocation:
    line_no: int
    product_id: int
    warehouse_id: int
    quantity: int


def allocate(
    demands: Sequence[Demand], available: Mapping[LevelKey, int]
) -> tuple[list[Allocation], list[ShortLine]]:
    """Spread the demands over the available stock; return the allocations and short lines.

    Lines naming a warehouse are served first, since they have no alternative; the others
    then take from the warehouse with the most left, splitting when one is not enough. Lines
    of the same product draw on the same stock, so two lines are never both given one unit.
    A short line reports what was left for it and takes that, so the lines after it report
    what would remain if the caller lowered it to what it was told is available.
    """
    remaining = dict(available)
    allocations: list[Allocation] = []
    shorts: list[ShortLine] = []
    for demand in sorted(demands, key=lambda d: (d.warehouse_id is None, d.line_no)):
        if demand.warehouse_id is not None:
            key = (demand.product_id, demand.warehouse_id)
            sources = [(demand.warehouse_id, max(remaining.get(key, 0), 0))]
        else:
            sources = sorted(
                (
                    (warehouse_id, left)
                    for (product_id, warehouse_id), left in remaining.items()
                    if product_id == demand.product_id and left > 0
                ),
                key=lambda source: (-source[1], source[0]),
            )
        total = sum(left for _, left in sources)
        if total < demand.quantity:
            shorts.append(
                ShortLine(
                    line_no=demand.line_no,
                    product_id=demand.product_id,
                    warehouse_id=demand.warehouse_id,
                    requested=demand.quantity,
                    available=total,
                )
            )
            for warehouse_id, _ in sources:
                remaining[(demand.product_id, warehouse_id)] = 0
            continue
        needed = demand.quantity
        for warehouse_id, left in sources:
            take = min(left, needed)
            if take == 0:
                break
            remaining[(demand.product_id, warehouse_id)] = left - take
            allocations.append(Allocation(demand.line_no, demand.product_id, warehouse_id, take))
            needed -= take
    allocations.sort(key=lambda a: (a.line_no, a.warehouse_id))
    shorts.sort(key=lambda s: (s.line_no, s.warehouse_id or 0))
    return allocations, shorts


def insufficient_stock(
    session: Session, shorts: Sequence[ShortLine], what: str
) -> InsufficientStock:
    """The 409 for these short lines, each named by its SKU (and warehouse code) as well as
    its ids, so that whoever reads it needs no lookup to say which product ran short."""
    skus, codes = names(
        session, [s.product_id for s in shorts], [s.warehouse_id for s in shorts if s.warehouse_id]
    )
    shorts = [
        s.model_copy(
            update={
                "sku": skus.get(s.product_id),
                "warehouse_code": codes.get(s.warehouse_id) if s.warehouse_id else None,
            }
        )
        for s in shorts
    ]
    parts = "; ".join(
        f"line {s.line_no} ({short_line_name(s.model_dump())}): requested {s.requested}, "
        f"available {s.available}"
        for s in shorts
    )
    return InsufficientStock(
        f"Not enough stock {what}: {parts}", lines=[s.model_dump() for s in shorts]
    )


# --- reserve ----------------------------------------------------------------------------


def _ttl_seconds(requested: int | None, settings: ProductsSettings) -> int:
    if requested is None:
        return settings.reservation_default_ttl_seconds
    if requested > settings.reservation_max_ttl_seconds:
        raise Unprocessable(
            f"ttl_seconds may be at most {settings.reservation_max_ttl_seconds}",
            field="ttl_seconds",
            max_ttl_seconds=settings.reservation_max_ttl_seconds,
        )
    return requested


def _replay(existing: Reservation, digest: str) -> Reservation:
    return replay(
        existing,
        digest,
        key=existing.idempotency_key,
        field="idempotency_key",
        used_for=f"reservation {existing.id}",
        reservation_id=existing.id,
    )


def _check_lines_can_be_reserved(session: Session, demands: Sequence[Demand]) -> None:
    """404 for unknown products or warehouses, 409 for ones that cannot supply stock now."""
    products = repository.products_by_id(session, {d.product_id for d in demands})
    warehouses = repository.warehouses_by_id(
        session, {d.warehouse_id for d in demands if d.warehouse_id is not None}
    )
    missing: list[tuple[str, dict[str, object]]] = []
    unusable: list[tuple[str, dict[str, object]]] = []
    for d in demands:
        product = products.get(d.product_id)
        where = f"line {d.line_no}"
        if product is None:
            missing.append(
                (
                    f"{where}: product {d.product_id}",
                    {"line_no": d.line_no, "product_id": d.product_id},
                )
            )
        elif product.archived_at is not None or product.status is not ProductStatus.ACTIVE:
            reason = "archived" if product.archived_at is not None else product.status.value
            unusable.append(
                (
                    f"{where}: product {d.product_id} is {reason}",
                    {"line_no": d.line_no, "product_id": d.product_id, "reason": reason},
                )
            )
        if d.warehouse_id is None:
            continue
        warehouse = warehouses.get(d.warehouse_id)
        if warehouse is None:
            missing.append(
                (
                    f"{where}: warehouse {d.warehouse_id}",
                    {"line_no": d.line_no, "warehouse_id": d.warehouse_id},
                )
            )
        elif not warehouse.is_active:
            unusable.append(
                (
                    f"{where}: warehouse {d.warehouse_id} is inactive",
                    {"line_no": d.line_no, "warehouse_id": d.warehouse_id, "reason": "inactive"},
                )
            )
    if missing:
        raise NotFound(
            "Unknown " + "; ".join(text for text, _ in missing),
            lines=[context for _, context in missing],
        )
    if unusable:
        raise InvalidState(
            "Cannot reserve from " + "; ".join(text for text, _ in unusable),
            lines=[context for _, context in unusable],
        )


def reserve_stock(
    *, session: Session, data: ReserveRequest, actor_id: int | None, settings: ProductsSettings
) -> tuple[Reservation, bool]:
    """Hold stock for every line or for none; returns the reservation and whether it is new.

    A request whose key was seen before returns that reservation (and changes nothing) when
    its body is the same, and is refused when it is not.
    """
    ttl = _ttl_seconds(data.ttl_seconds, settings)
    digest = request_hash(data.model_dump(mode="json"))
    existing = repository.find_by_key(session, data.idempotency_key)
    if existing is not None:
        return _replay(existing, digest), False

    demands = [
        Demand(line_no, line.product_id, line.warehouse_id, line.quantity)
        for line_no, line in enumerate(data.lines, start=1)
    ]
    _check_lines_can_be_reserved(session, demands)
    levels = lock_product_levels(session, {d.product_id for d in demands})
    active = repository.active_warehouse_ids(session, {level.warehouse_id for level in levels})
    available = {
        (level.product_id, level.warehouse_id): level.available
        for level in levels
        if level.warehouse_id in active
    }
    allocations, shorts = allocate(demands, available)
    if shorts:
        # A concurrent duplicate may have taken that stock under this very key (it held
        # these locks until it committed): then the answer is its reservation.
        existing = repository.find_by_key(session, data.idempotency_key)
        if existing is not None:
            return _replay(existing, digest), False
        raise insufficient_stock(session, shorts, "to reserve")

    reservation = Reservation(
        idempotency_key=data.idempotency_key,
        request_hash=digest,
        reference=data.reference,
        status=ReservationStatus.ACTIVE,
        expires_at=utcnow() + timedelta(seconds=ttl),
        actor_id=actor_id,
        lines=[],
    )
    try:
        # The unique key is the last word on duplicates: a concurrent request with this key
        # holds it until it commits, and this insert then fails. Nothing was changed yet, so
        # the whole transaction is dropped and the answer is that request's reservation.
        repository.add_reservation(session, reservation)
    except IntegrityError:
        session.rollback()
        existing = repository.find_by_key(session, data.idempotency_key)
        if existing is None:
            raise
        return _replay(existing, digest), False

    by_key = {(level.product_id, level.warehouse_id): level for level in levels}
    for allocation in allocations:
        by_key[(allocation.product_id, allocation.warehouse_id)].reserved += allocation.quantity
        reservation.lines.append(
            ReservationLine(
                line_no=allocation.line_no,
                product_id=allocation.product_id,
                warehouse_id=allocation.warehouse_id,
                quantity=allocation.quantity,
            )
        )
    session.flush()
    _publish(session, "reservation.created", reservation)
    return reservation, True


def _publish(session: Session, type_: str, reservation: Reservation) -> None:
    """A change to the stock held (reserved) appends one event; commits append ledger ones."""
    payload = {
        "reservation_id": reservation.id,
        "status": reservation.status,
        "reference": reservation.reference,
        "lines": [
            {"product_id": ln.product_id, "warehouse_id": ln.warehouse_id, "quantity": ln.quantity}
            for ln in reservation.lines
        ],
    }
    outbox.append(session, outbox.PRODUCTS_OUTBOX, [outbox.event(type_, reservation.id, payload)])


# --- commit, release, expire ------------------------------------------------------------


def _level_keys(reservation: Reservation) -> list[LevelKey]:
    return [(line.product_id, line.warehouse_id) for line in reservation.lines]


def _lock_reservation(session: Session, reservation_id: int) -> Reservation:
    reservation = repository.lock_reservation(session, reservation_id)
    if reservation is None:
        raise NotFound(f"Reservation {reservation_id} not found", reservation_id=reservation_id)
    return reservation


def _ensure_still_available(
    session: Session, reservation: Reservation, levels: Mapping[LevelKey, StockLevel]
) -> None:
    """For an expired reservation: its stock went back, so it must be free again to be sold."""
    active = repository.active_warehouse_ids(session, {w for _, w in levels})
    available = {key: level.available if key[1] in active else 0 for key, level in levels.items()}
    demands = [
        Demand(line.line_no, line.product_id, line.warehouse_id, line.quantity)
        for line in reservation.lines
    ]
    _, shorts = allocate(demands, available)
    if shorts:
        raise insufficient_stock(session, shorts, f"to commit expired reservation {reservation.id}")


def commit_reservation(
    *, session: Session, reservation_id: int, sale_reference: str, actor_id: int | None
) -> Reservation:
    """Turn the held stock into one ``sale`` movement per line, referencing the sale it went
    to; repeating it for the same sale changes nothing.

    An expired reservation (its stock was returned) is committed if that stock is still free.
    """
    reservation = _lock_reservation(session, reservation_id)
    status = reservation.status
    if status is ReservationStatus.COMMITTED:
        if reservation.reference != sale_reference:
            raise InvalidState(
                f"Reservation {reservation_id} was committed for sale "
                f"{reservation.reference!r}, not {sale_reference!r}",
                reservation_id=reservation_id,
                status=status.value,
            )
        return reservation
    if status is ReservationStatus.RELEASED:
        raise InvalidState(
            f"Reservation {reservation_id} was released; it cannot be committed",
            reservation_id=reservation_id,
            status=status.value,
        )
    levels = lock_levels(session, _level_keys(reservation))
    if status is ReservationStatus.EXPIRED:
        _ensure_still_available(session, reservation, levels)
    for line in reservation.lines:
        record_movement(
            session,
            levels[(line.product_id, line.warehouse_id)],
            movement_type=MovementType.SALE,
            quantity=-line.quantity,
            reason=f"sale {sale_reference}: reservation {reservation.id} line {line.line_no}",
            reference=sale_reference,
            actor_id=actor_id,
            release_reserved=line.quantity if status is ReservationStatus.ACTIVE else 0,
        )
    reservation.status = ReservationStatus.COMMITTED
    reservation.reference = sale_reference
    session.flush()
    return reservation


def _return_reserved(session: Session, reservation: Reservation) -> None:
    levels = lock_levels(session, _level_keys(reservation))
    for line in reservation.lines:
        levels[(line.product_id, line.warehouse_id)].reserved -= line.quantity


def release_reservation(*, session: Session, reservation_id: int) -> Reservation:
    """Give the held stock back; releasing a released or expired reservation changes nothing."""
    reservation = _lock_reservation(session, reservation_id)
    if reservation.status is ReservationStatus.COMMITTED:
        raise InvalidState(
            f"Reservation {reservation_id} was committed; it cannot be released",
            reservation_id=reservation_id,
            status=reservation.status.value,
        )
    if reservation.status is ReservationStatus.ACTIVE:
        _return_reserved(session, reservation)
        reservation.status = ReservationStatus.RELEASED
        session.flush()
        _publish(session, "reservation.released", reservation)
    return reservation


def _expire_one(sessions: sessionmaker[Session], reservation_id: int, cutoff: datetime) -> bool:
    with sessions() as session, session.begin():
        # A row held by a commit, release or another sweeper is skipped: its holder decides.
        reservation = repository.lock_reservation(session, reservation_id, skip_locked=True)
        if (
            reservation is None
            or reservation.status is not ReservationStatus.ACTIVE
            or reservation.expires_at >= cutoff
        ):
            return False
        _return_reserved(session, reservation)
        reservation.status = ReservationStatus.EXPIRED
        _publish(session, "reservation.expired", reservation)
    return True


def expire_due_reservations(*, sessions: sessionmaker[Session], now: datetime | None = None) -> int:
    """Expire active reservations past their TTL, returning their stock; one transaction each."""
    cutoff = now or utcnow()
    expired = 0
    after_id = 0
    while True:
        with sessions() as session:
            due = repository.due_reservation_ids(
                session, now=cutoff, after_id=after_id, limit=EXPIRY_BATCH_SIZE
            )
        if not due:
            break
        for reservation_id in due:
            try:
                if _expire_one(sessions, reservation_id, cutoff):
                    expired += 1
            except IntegrityError:
                logger.exception("could not expire reservation %s; will retry", reservation_id)
        after_id = due[-1]
    if expired:
        logger.info("expired %d reservations and returned their stock", expired)
    return expired


# --- reads ------------------------------------------------------------------------------


def get_reservation(*, session: Session, reservation_id: int) -> Reservation:
    reservation = repository.get_reservation(session, reservation_id)
    if reservation is None:
        raise NotFound(f"Reservation {reservation_id} not found", reservation_id=reservation_id)
    return reservation


def list_reservations(
    *,
    session: Session,
    statuses: Sequence[ReservationStatus],
    reference: str | None,
    page: PageParams,
    order_by: Iterable[object],
) -> Slice[Reservation]:
    return repository.list_reservations(
        session, statuses=statuses, reference=reference, page=page, order_by=list(order_by)
    )
