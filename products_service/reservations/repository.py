"""Every SQL query of the reservations domain (level rows are locked through ledger.py)."""

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from common.models import Product, Reservation, ReservationStatus, Warehouse
from common.pagination import PageParams, Slice, first, paginate


def find_by_key(session: Session, idempotency_key: str) -> Reservation | None:
    """The reservation made with this key, as last committed, lines loaded."""
    return session.scalar(
        select(Reservation)
        .where(Reservation.idempotency_key == idempotency_key)
        .options(selectinload(Reservation.lines))
        .execution_options(populate_existing=True)
    )


def get_reservation(session: Session, reservation_id: int) -> Reservation | None:
    return session.scalar(
        select(Reservation)
        .where(Reservation.id == reservation_id)
        .options(selectinload(Reservation.lines))
    )


def lock_reservation(
    session: Session, reservation_id: int, *, skip_locked: bool = False
) -> Reservation | None:
    """The reservation row locked FOR UPDATE (lines loaded): every status change holds it.

    With ``skip_locked`` a row someone else holds is passed over (None) instead of waited for.
    """
    return session.scalar(
        select(Reservation)
        .where(Reservation.id == reservation_id)
        .options(selectinload(Reservation.lines))
        .with_for_update(skip_locked=skip_locked)
        .execution_options(populate_existing=True)
    )


def add_reservation(session: Session, reservation: Reservation) -> Reservation:
    session.add(reservation)
    session.flush()
    return reservation


def products_by_id(session: Session, product_ids: Collection[int]) -> dict[int, Product]:
    if not product_ids:
        return {}
    rows = session.scalars(select(Product).where(Product.id.in_(set(product_ids))))
    return {p.id: p for p in rows}


def warehouses_by_id(session: Session, warehouse_ids: Collection[int]) -> dict[int, Warehouse]:
    if not warehouse_ids:
        return {}
    rows = session.scalars(select(Warehouse).where(Warehouse.id.in_(set(warehouse_ids))))
    return {w.id: w for w in rows}


def active_warehouse_ids(session: Session, warehouse_ids: Collection[int]) -> set[int]:
    """Which of these warehouses are active (only their stock can be held or sold)."""
    if not warehouse_ids:
        return set()
    return set(
        session.scalars(
            select(Warehouse.id).where(
                Warehouse.id.in_(set(warehouse_ids)), Warehouse.is_active.is_(True)
            )
        )
    )


def due_reservation_ids(session: Session, *, now: datetime, after_id: int, limit: int) -> list[int]:
    """Ids of active reservations past their expiry, in id order after ``after_id``."""
    return list(
        session.scalars(
            select(Reservation.id)
            .where(
                Reservation.status == ReservationStatus.ACTIVE,
                Reservation.expires_at < now,
                Reservation.id > after_id,
            )
            .order_by(Reservation.id)
            .limit(limit)
        )
    )


RESERVATION_SORT: dict[str, Any] = {
    "id": Reservation.id,
    "created_at": Reservation.created_at,
    "expires_at": Reservation.expires_at,
}


def list_reservations(
    session: Session,
    *,
    statuses: Sequence[ReservationStatus],
    reference: str | None,
    page: PageParams,
    order_by: list[Any],
) -> Slice[Reservation]:
    stmt = select(Reservation).options(selectinload(Reservation.lines))
    if statuses:
        stmt = stmt.where(Reservation.status.in_(statuses))
    if reference is not None:
        stmt = stmt.where(Reservation.reference == reference)
    return paginate(session, stmt, page, [*order_by, Reservation.id.desc()]).map(first)
