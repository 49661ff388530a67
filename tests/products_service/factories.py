"""Test data written straight to the database (each call in its own committed transaction).

Stock goes through the ledger primitives, so the ledger of every level sums to its on_hand
just as it would through the API.
"""

import itertools
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from common.db import make_sessionmaker, utcnow
from common.models import (
    MovementType,
    Product,
    ProductStatus,
    Reservation,
    ReservationLine,
    ReservationStatus,
    StockLevel,
    StockMovement,
    Warehouse,
)
from products_service.inventory.ledger import lock_levels, record_movement

_sequence = itertools.count(1)


def main_warehouse_id(engine: Engine) -> int:
    """The default warehouse every test database starts with."""
    with make_sessionmaker(engine)() as session:
        return session.scalars(select(Warehouse.id).where(Warehouse.code == "MAIN")).one()


def create_warehouse(engine: Engine, *, is_active: bool = True, code: str | None = None) -> int:
    n = next(_sequence)
    with make_sessionmaker(engine)() as session:
        warehouse = Warehouse(
            code=code or f"WH{n}", name=f"Warehouse {n}", is_active=is_active, is_default=False
        )
        session.add(warehouse)
        session.commit()
        return warehouse.id


def receive_stock(
    engine: Engine, *, product_id: int, warehouse_id: int, quantity: int, reference: str = "seed"
) -> None:
    """A receipt movement: on_hand goes up and the ledger records it."""
    with make_sessionmaker(engine)() as session:
        level = lock_levels(session, [(product_id, warehouse_id)])[(product_id, warehouse_id)]
        record_movement(
            session,
            level,
            movement_type=MovementType.RECEIPT,
            quantity=quantity,
            reference=reference,
        )
        session.commit()


def create_product(
    engine: Engine,
    *,
    stock: Mapping[int, int] | None = None,
    status: ProductStatus = ProductStatus.ACTIVE,
    archived: bool = False,
) -> int:
    """A product, with ``stock`` received per warehouse id."""
    n = next(_sequence)
    with make_sessionmaker(engine)() as session:
        product = Product(
            sku=f"SKU-{n}",
            name=f"Product {n}",
            price=Decimal("19.90"),
            cost_price=Decimal("7.25"),
            status=status,
            archived_at=utcnow() if archived else None,
        )
        session.add(product)
        session.commit()
        product_id = product.id
    for warehouse_id, quantity in (stock or {}).items():
        receive_stock(engine, product_id=product_id, warehouse_id=warehouse_id, quantity=quantity)
    return product_id


class Level(NamedTuple):
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


def level(engine: Engine, product_id: int, warehouse_id: int) -> Level:
    """The level row as committed now (zero when there is none)."""
    with make_sessionmaker(engine)() as session:
        row = session.scalar(
            select(StockLevel).where(
                StockLevel.product_id == product_id, StockLevel.warehouse_id == warehouse_id
            )
        )
        return Level(row.on_hand, row.reserved) if row else Level(0, 0)


def movements(engine: Engine, product_id: int, movement_type: MovementType) -> list[StockMovement]:
    with make_sessionmaker(engine)() as session:
        return list(
            session.scalars(
                select(StockMovement)
                .where(
                    StockMovement.product_id == product_id,
                    StockMovement.movement_type == movement_type,
                )
                .order_by(StockMovement.id)
            )
        )


def set_reservation_expiry(engine: Engine, reservation_id: int, expires_at: datetime) -> None:
    with make_sessionmaker(engine)() as session:
        session.get_one(Reservation, reservation_id).expires_at = expires_at
        session.commit()


def reservation_status(engine: Engine, reservation_id: int) -> ReservationStatus:
    with make_sessionmaker(engine)() as session:
        return session.get_one(Reservation, reservation_id).status


def ledger_problems(engine: Engine) -> list[str]:
    """Every broken stock invariant, described; empty when the books balance.

    For each level: its movements sum to on_hand, 0 <= reserved <= on_hand, and reserved
    equals what active reservations hold there.
    """
    with make_sessionmaker(engine)() as session:
        ledger: dict[str, int] = dict(
            session.execute(
                select(
                    func.concat(StockMovement.product_id, ":", StockMovement.warehouse_id),
                    func.sum(StockMovement.quantity),
                ).group_by(StockMovement.product_id, StockMovement.warehouse_id)
            ).all()
        )
        held: dict[str, int] = dict(
            session.execute(
                select(
                    func.concat(ReservationLine.product_id, ":", ReservationLine.warehouse_id),
                    func.sum(ReservationLine.quantity),
                )
                .join(Reservation, Reservation.id == ReservationLine.reservation_id)
                .where(Reservation.status == ReservationStatus.ACTIVE)
                .group_by(ReservationLine.product_id, ReservationLine.warehouse_id)
            ).all()
        )
        problems = []
        levels = session.scalars(select(StockLevel)).all()
        for row in levels:
            key = f"{row.product_id}:{row.warehouse_id}"
            summed = int(ledger.pop(key, 0))
            if summed != row.on_hand:
                problems.append(f"{key}: ledger sums to {summed}, on_hand is {row.on_hand}")
            if not 0 <= row.reserved <= row.on_hand:
                problems.append(f"{key}: reserved {row.reserved} outside 0..{row.on_hand}")
            holding = int(held.pop(key, 0))
            if holding != row.reserved:
                problems.append(
                    f"{key}: active reservations hold {holding}, reserved {row.reserved}"
                )
        problems += [f"{key}: movements without a level row" for key in ledger]
        problems += [f"{key}: reservations without a level row" for key in held]
        return problems


# --- through the HTTP API -----------------------------------------------------------------

API = "/api/v1"


def make_category(
    client: TestClient, headers: dict[str, str], name: str, **fields: Any
) -> dict[str, Any]:
    response = client.post(f"{API}/categories", json={"name": name, **fields}, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def make_product(
    client: TestClient, headers: dict[str, str], sku: str, **fields: Any
) -> dict[str, Any]:
    payload = {"sku": sku, "name": f"Product {sku}", "price": "10.00", "cost_price": "4.00"}
    response = client.post(f"{API}/products", json={**payload, **fields}, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


class AvailabilityWatch:
    """Samples a level row from its own thread while a test runs; records the lowest of its
    on_hand, reserved and available seen (below zero: stock went negative for a moment)."""

    def __init__(self, engine: Engine, product_id: int, warehouse_id: int) -> None:
        self.engine, self.key = engine, (product_id, warehouse_id)
        self.lowest: int | None = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            current = level(self.engine, *self.key)
            lowest = min(current.available, current.reserved, current.on_hand)
            self.lowest = lowest if self.lowest is None else min(self.lowest, lowest)
            self.samples += 1
            time.sleep(0.01)

    def __enter__(self) -> "AvailabilityWatch":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def names_of(engine: Engine, product_id: int, warehouse_id: int | None) -> tuple[str, str | None]:
    """The SKU of a product and the code of a warehouse (None for none)."""
    with engine.connect() as connection:
        sku = connection.execute(select(Product.sku).where(Product.id == product_id)).scalar_one()
        code = (
            connection.scalar(select(Warehouse.code).where(Warehouse.id == warehouse_id))
            if warehouse_id is not None
            else None
        )
    return sku, code


def short_line(
    engine: Engine,
    *,
    line_no: int,
    product_id: int,
    warehouse_id: int | None = None,
    requested: int,
    available: int,
) -> dict[str, Any]:
    """A short line of a 409 insufficient_stock as the API answers it: ids, and the SKU and
    warehouse code that name them."""
    sku, code = names_of(engine, product_id, warehouse_id)
    return {
        "line_no": line_no,
        "product_id": product_id,
        "sku": sku,
        "warehouse_id": warehouse_id,
        "warehouse_code": code,
        "requested": requested,
        "available": available,
    }
