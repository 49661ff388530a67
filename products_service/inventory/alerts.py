"""Low-stock alerts as state changes: the stock-alerts consumer of products_outbox.

A product's stock health (``ok``, ``low``, ``critical``, ``out``) is the one the low-stock
list gives it: its available stock over all active warehouses against its own threshold
(``service.stock_health``). The consumer keeps, per product, the health it last announced
(``stock_health_states``; a product without a row was never announced and counts as
``ok``), and appends one ``stock.health_changed`` event when the health it finds differs,
never while it stays: a hundred sales while a product is low announce nothing.

Each pass is one transaction, off the sale path: lock the consumer's position (one replica at
a time works, whichever runs it), read the next committed events in commit-safe order
(common.outbox), gather the products whose health they may have changed, compute each one's
health once for the whole batch, and save the changed states, their events and the new
position together. Killed midway, a pass leaves nothing behind, and the next one does it
again. The health is read as committed now, not replayed from the events: an announcement
may come a batch early (the level it reads is newer than the event), never twice.

An archived product is left out of the low-stock list, so here it counts as ``ok``
(``archived`` in the payload says why); restored, it is announced as it stands.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, Row, select
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from common import outbox
from common.db import retry_lock_conflicts, utcnow
from common.models import StockHealthState
from products_service.inventory.schemas import ProductHealth, StockHealth
from products_service.inventory.service import stock_health

CONSUMER = "stock-alerts"
HEALTH_CHANGED = "stock.health_changed"
BATCH = 1000

# Events that change a product's available stock, and where their product ids are.
_STOCK_MOVED = "stock.moved"
_SALE_STOCK_TAKEN = "sale_stock.taken"  # a sale's movements, in one event
_RESERVATION_EVENTS = frozenset(
    {"reservation.created", "reservation.released", "reservation.expired"}
)
# Events that change a product's threshold or whether it is watched at all.
_PRODUCT_UPDATED = "product.updated"
_HEALTH_FIELDS = frozenset({"low_stock_threshold", "status"})
_ARCHIVAL_EVENTS = frozenset({"product.archived", "product.restored"})


def consume_once(engine: Engine, *, batch: int = BATCH) -> int:
    """Handle the next batch of products events in a transaction of its own; returns how
    many were read."""

    def one_pass() -> int:
        with Session(engine) as session, session.begin():
            return consume_batch(session, batch=batch)

    # Another replica's pass (or a test's clean-up) may meet this one on the same rows.
    return retry_lock_conflicts(one_pass)


def consume_batch(session: Session, *, batch: int = BATCH) -> int:
    """The work of one pass, in the caller's transaction (which holds the consumer's lock
    until it ends)."""
    position, _ = outbox.lock_position(session, CONSUMER)
    rows = outbox.read_after(session, outbox.PRODUCTS_OUTBOX, position, limit=batch)
    if not rows:
        return 0
    touched = products_touched(rows)
    if touched:
        announce_changes(session, touched)
    outbox.save_position(session, CONSUMER, rows[-1].id)
    return len(rows)


def catch_up(engine: Engine) -> int:
    """Consume until nothing is left (tests); returns how many events were read."""
    total = 0
    while read := consume_once(engine):
        total += read
    return total


def products_touched(rows: Iterable[Row[Any]]) -> set[int]:
    """The products whose health these events may have changed."""
    touched: set[int] = set()
    for row in rows:
        payload: Mapping[str, Any] = row.payload
        if row.type == _STOCK_MOVED:
            touched.add(int(payload["product_id"]))
        elif row.type == _SALE_STOCK_TAKEN:
            touched.update(int(m["product_id"]) for m in payload["movements"])
        elif row.type in _RESERVATION_EVENTS:
            touched.update(int(line["product_id"]) for line in payload["lines"])
        elif row.type == _PRODUCT_UPDATED:
            if _HEALTH_FIELDS.intersection(payload.get("changed", ())):
                touched.add(int(payload["product_id"]))
        elif row.type in _ARCHIVAL_EVENTS:
            touched.add(int(payload["product_id"]))
    return touched


def announce_changes(session: Session, product_ids: Iterable[int]) -> int:
    """Compare these products' health now with the health last announced; save and announce
    each change (one event per product). Returns how many were announced."""
    ids = sorted(set(product_ids))
    now = stock_health(session=session, product_ids=ids)
    announced = _announced(session, ids)
    changed: list[tuple[StockHealth, ProductHealth]] = []
    for product_id, health in sorted(now.items()):
        was = announced.get(product_id, StockHealth.OK)  # never announced: ok
        if _watched(health) != was:
            changed.append((was, health))
    if not changed:
        return 0
    _save_states(session, [health for _, health in changed])
    outbox.append(
        session,
        outbox.PRODUCTS_OUTBOX,
        [health_changed_event(was, health) for was, health in changed],
    )
    return len(changed)


def health_changed_event(was: StockHealth, health: ProductHealth) -> dict[str, Any]:
    """The ``stock.health_changed`` event of one product."""
    return outbox.event(
        HEALTH_CHANGED,
        health.product_id,
        {
            "product_id": health.product_id,
            "sku": health.sku,
            "name": health.name,
            "category_id": health.category_id,
            "from": was,
            "to": _watched(health),
            "available": health.available,
            "on_hand": health.on_hand,
            "reserved": health.reserved,
            "threshold": health.applied_threshold,
            "archived": health.archived,
        },
    )


def _watched(health: ProductHealth) -> StockHealth:
    """The health alerts go by: an archived product is off the low-stock list, so ``ok``."""
    return StockHealth.OK if health.archived else health.health


def _announced(session: Session, product_ids: Sequence[int]) -> dict[int, StockHealth]:
    rows = session.execute(
        select(StockHealthState.product_id, StockHealthState.health).where(
            StockHealthState.product_id.in_(product_ids)
        )
    )
    return {row.product_id: StockHealth(row.health) for row in rows}


def _save_states(session: Session, changed: Sequence[ProductHealth]) -> None:
    """Upsert the health announced for each product (only this consumer writes these rows,
    under its position lock)."""
    now = utcnow()
    values = [
        {
            "product_id": health.product_id,
            "health": _watched(health).value,
            "available": health.available,
            "threshold": health.applied_threshold,
            "changed_at": now,
        }
        for health in changed
    ]
    if session.get_bind().dialect.name == "sqlite":
        lite = sqlite_insert(StockHealthState).values(values)
        session.execute(
            lite.on_conflict_do_update(
                index_elements=[StockHealthState.product_id], set_=_updated(lite.excluded)
            )
        )
    else:
        ins = mysql_insert(StockHealthState).values(values)
        session.execute(ins.on_duplicate_key_update(_updated(ins.inserted)))


def _updated(new: Any) -> dict[str, Any]:
    return {name: new[name] for name in ("health", "available", "threshold", "changed_at")}
