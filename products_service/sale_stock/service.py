"""Stock for a sale, in one call: take every line's stock at once, or give it back.

sales_service records a sale in two steps around one call here: it asks for the stock
under a key of its own for this attempt (``take_stock``), then writes the sale. If it cannot
write the sale, or gives up waiting for the answer, it asks for the stock back under the
same key (``return_stock``); a key given back before any take arrived is voided, so a take
that arrives late (a retry still in flight) is refused rather than holding stock for a sale
that will never stand. Both calls are idempotent on the key.

A take is one transaction: lock the products and their level rows in (product, warehouse)
order, allocate (lines of the same product share its stock; each line takes from the
warehouses with the most first), insert the take row (its unique key turns a concurrent
duplicate into a replay), lower ``on_hand``, append the ``sale`` ledger rows and one event.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common import outbox
from common.contracts import SaleStockRead, SaleStockTake, TakenFrom, TakenLine
from common.db import utcnow
from common.errors import Conflict, InvalidState, Unprocessable
from common.idempotency import replay, request_hash
from common.models import MovementType, ProductStatus, SaleStockStatus
from common.models import SaleStockTake as Take
from products_service.inventory.ledger import LevelKey, lock_levels, record_movement
from products_service.reservations.service import Demand, allocate, insufficient_stock
from products_service.sale_stock import repository


@dataclass(frozen=True)
class Level:
    id: int
    on_hand: int
    reserved: int


def _reference(key: str) -> str:
    return f"sale:{key}"


def _answer(take: Take) -> SaleStockRead:
    return SaleStockRead.model_validate(take)


def _replay(existing: Take, digest: str) -> tuple[SaleStockRead, bool]:
    if existing.status is SaleStockStatus.VOIDED:
        raise InvalidState(
            f"Sale stock key {existing.key!r} was voided (the sale was given up); take "
            "nothing under it",
            key=existing.key,
            status=existing.status.value,
        )
    taken = replay(existing, digest, key=existing.key, field="key", used_for="another take")
    return _answer(taken), False


def _unsellable(rows: Sequence[Row[Any]], data: SaleStockTake) -> None:
    """422 naming every line whose product is unknown, inactive or archived."""
    products = {row.id: row for row in rows}
    problems = []
    for line_no, line in enumerate(data.lines, start=1):
        product = products.get(line.product_id)
        if product is None:
            reason = "unknown product"
        elif product.archived_at is not None:
            reason = "product is archived"
        elif product.status is not ProductStatus.ACTIVE:
            reason = f"product is {product.status.value}"
        else:
            continue
        problems.append({"line_no": line_no, "product_id": line.product_id, "reason": reason})
    if problems:
        summary = "; ".join(
            f"line {p['line_no']} (product {p['product_id']}): {p['reason']}" for p in problems
        )
        raise Unprocessable(f"Cannot sell: {summary}", lines=problems)


def take_stock(*, session: Session, data: SaleStockTake) -> tuple[SaleStockRead, bool]:
    """Take the stock of every line or of none; returns the take and whether it is new."""
    digest = request_hash(data.model_dump(mode="json"))
    rows = repository.lock_products_and_levels(session, {ln.product_id for ln in data.lines})
    try:
        _unsellable(rows, data)
        levels: dict[LevelKey, Level] = {}
        available: dict[LevelKey, int] = {}
        for row in rows:
            if row.level_id is None:
                continue
            key = (row.id, row.warehouse_id)
            levels[key] = Level(row.level_id, row.on_hand, row.reserved)
            available[key] = row.on_hand - row.reserved if row.warehouse_active else 0
        demands = [
            Demand(line_no, ln.product_id, None, ln.quantity)
            for line_no, ln in enumerate(data.lines, start=1)
        ]
        allocations, shorts = allocate(demands, available)
        if shorts:
            raise insufficient_stock(session, shorts, "to sell")
    except (Unprocessable, Conflict) as refusal:
        # A concurrent duplicate may have taken that stock under this very key (it held
        # these locks until it committed): then the answer is its take.
        existing = repository.find_take(session, data.key)
        if existing is not None:
            return _replay(existing, digest)
        raise refusal

    products = {row.id: row for row in rows}
    codes = {row.warehouse_id: row.warehouse_code for row in rows if row.level_id is not None}
    taken_from: dict[int, list[TakenFrom]] = {}
    for a in allocations:
        taken_from.setdefault(a.line_no, []).append(
            TakenFrom(
                warehouse_id=a.warehouse_id,
                warehouse_code=codes[a.warehouse_id],
                quantity=a.quantity,
            )
        )
    lines = [
        TakenLine(
            line_no=line_no,
            product_id=ln.product_id,
            quantity=ln.quantity,
            sku=products[ln.product_id].sku,
            name=products[ln.product_id].name,
            category_id=products[ln.product_id].category_id,
            category_name=products[ln.product_id].category_name,
            price=products[ln.product_id].price,
            cost_price=products[ln.product_id].cost_price,
            allocations=taken_from[line_no],
        )
        for line_no, ln in enumerate(data.lines, start=1)
    ]
    now = utcnow()
    answer = SaleStockRead(key=data.key, status=SaleStockStatus.TAKEN, lines=lines, created_at=now)
    try:
        repository.insert_take(
            session,
            {
                "key": data.key,
                "request_hash": digest,
                "status": SaleStockStatus.TAKEN,
                "actor_id": data.actor_id,
                "lines": [line.model_dump(mode="json") for line in lines],
                "created_at": now,
                "updated_at": now,
            },
        )
    except IntegrityError:
        # The key is taken: a duplicate committed first (or the key was voided). Nothing
        # was changed yet, so the whole transaction is dropped and the answer is that take.
        session.rollback()
        existing = repository.find_take(session, data.key)
        if existing is None:
            raise
        return _replay(existing, digest)

    on_hand = {key: level.on_hand for key, level in levels.items()}
    changes, movements, moved = [], [], []
    reference = _reference(data.key)
    for a in allocations:
        key = (a.product_id, a.warehouse_id)
        on_hand[key] -= a.quantity
        changes.append({"level_id": levels[key].id, "on_hand": on_hand[key], "now": now})
        movement = {
            "product_id": a.product_id,
            "warehouse_id": a.warehouse_id,
            "movement_type": MovementType.SALE,
            "quantity": -a.quantity,
            "on_hand_after": on_hand[key],
            "reason": f"sale line {a.line_no}",
            "reference": reference,
            "actor_id": data.actor_id,
            "created_at": now,
        }
        movements.append(movement)
        moved.append({**movement, "reserved_after": levels[key].reserved})
    repository.take_stock_from_levels(session, changes)
    repository.insert_movements(session, movements)
    outbox.append(
        session,
        outbox.PRODUCTS_OUTBOX,
        [outbox.event("sale_stock.taken", None, {"key": data.key, "movements": moved}, now)],
    )
    return answer, True


def return_stock(*, session: Session, key: str) -> SaleStockRead:
    """Give a take's stock back, or void the key if nothing was taken under it yet."""
    take = repository.find_take(session, key, lock=True)
    now = utcnow()
    if take is None:
        try:
            repository.insert_take(
                session,
                {
                    "key": key,
                    "request_hash": "",
                    "status": SaleStockStatus.VOIDED,
                    "actor_id": None,
                    "lines": [],
                    "created_at": now,
                    "updated_at": now,
                },
            )
        except IntegrityError:
            session.rollback()  # a take committed meanwhile: give that back instead
            return return_stock(session=session, key=key)
        outbox.append(
            session,
            outbox.PRODUCTS_OUTBOX,
            [outbox.event("sale_stock.voided", None, {"key": key}, now)],
        )
        voided = repository.find_take(session, key)
        assert voided is not None
        return _answer(voided)
    if take.status is SaleStockStatus.TAKEN:
        lines = [TakenLine.model_validate(line) for line in take.lines]
        allocations = [(ln, a) for ln in lines for a in ln.allocations]
        levels = lock_levels(session, [(ln.product_id, a.warehouse_id) for ln, a in allocations])
        for line, a in allocations:
            record_movement(
                session,
                levels[(line.product_id, a.warehouse_id)],
                movement_type=MovementType.RETURN,
                quantity=a.quantity,
                reason=f"sale line {line.line_no} not recorded: stock given back",
                reference=_reference(key),
                actor_id=take.actor_id,
            )
        repository.set_status(session, take.id, SaleStockStatus.RETURNED, now)
        take.status = SaleStockStatus.RETURNED
    return _answer(take)


def get_take(*, session: Session, key: str) -> SaleStockRead | None:
    take = repository.find_take(session, key)
    return None if take is None else _answer(take)
