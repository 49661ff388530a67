"""The two primitives every stock change goes through: lock level rows, append a movement.

Rules that hold here for every caller:
- level rows are locked (SELECT ... FOR UPDATE) in one stable order, (product_id,
  warehouse_id), so two multi-line operations cannot deadlock on each other;
- a movement changes ``on_hand`` by its signed quantity and appends one ledger row with
  the level it left, so the ledger of a level always sums to its ``on_hand``;
- ``on_hand`` never goes below zero nor below what is reserved.
"""

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, insert, select
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from common import outbox
from common.db import execute_rows, update_by_id, utcnow
from common.errors import InsufficientStock
from common.models import MovementType, Product, StockLevel, StockMovement

LevelKey = tuple[int, int]  # (product_id, warehouse_id)
LEVELS: Table = StockLevel.__table__  # type: ignore[assignment]

# Up to this many keys (a sale's lines), each level row is locked by a statement of its own,
# touching nothing else; more (a bulk import) are locked with their products' other levels.
ONE_BY_ONE = 20


def ensure_levels(session: Session, keys: Iterable[LevelKey]) -> None:
    """Create missing level rows at zero; concurrent creators of the same row do not clash."""
    now = utcnow()
    rows = [
        {"product_id": p, "warehouse_id": w, "on_hand": 0, "reserved": 0, "updated_at": now}
        for p, w in keys
    ]
    if rows:
        # One statement object, executed with the rows: compiled once, sent as one INSERT.
        execute_rows(session, _ensure_statement(session.get_bind().dialect.name), rows)


@functools.cache
def _ensure_statement(dialect: str) -> Any:
    if dialect == "sqlite":
        return sqlite_insert(LEVELS).on_conflict_do_nothing()
    ins = mysql_insert(LEVELS)
    return ins.on_duplicate_key_update(product_id=ins.inserted.product_id)


def _hold_products(session: Session, product_ids: Iterable[int]) -> None:
    """Share-lock the products before their levels: a sale's stock take locks a product and
    then its levels, and a movement's row share-locks its product (its foreign key) after
    the level; taking the product first here keeps every path in one order, so a receipt
    and a sale of one product wait for each other instead of deadlocking."""
    session.execute(
        select(Product.id)
        .where(Product.id.in_(sorted(set(product_ids))))
        .order_by(Product.id)
        .with_for_update(read=True)
    ).all()


def lock_levels(session: Session, keys: Iterable[LevelKey]) -> dict[LevelKey, StockLevel]:
    """Lock (creating at zero if missing) the level rows for these keys, in stable order."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    _hold_products(session, (p for p, _ in wanted))
    existing = {
        (row.product_id, row.warehouse_id)
        for row in session.execute(
            select(StockLevel.product_id, StockLevel.warehouse_id).where(
                StockLevel.product_id.in_({p for p, _ in wanted})
            )
        )
    }
    ensure_levels(session, [k for k in wanted if k not in existing])
    if len(wanted) > ONE_BY_ONE:
        # A bulk change (an import's batch): one statement locks every level row of these
        # products, in the same (product, warehouse) order, instead of one per key.
        rows = _lock_level_rows(session, sorted({p for p, _ in wanted}))
        by_key = {(level.product_id, level.warehouse_id): level for level in rows}
        return {key: by_key[key] for key in wanted}
    locked: dict[LevelKey, StockLevel] = {}
    for product_id, warehouse_id in wanted:
        level = session.scalars(
            select(StockLevel)
            .where(StockLevel.product_id == product_id, StockLevel.warehouse_id == warehouse_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()
        locked[(product_id, warehouse_id)] = level
    return locked


def lock_product_levels(session: Session, product_ids: Iterable[int]) -> list[StockLevel]:
    """Lock every existing level row of these products, ordered by (product, warehouse)."""
    ids = sorted(set(product_ids))
    if not ids:
        return []
    _hold_products(session, ids)
    return _lock_level_rows(session, ids)


def _lock_level_rows(session: Session, product_ids: list[int]) -> list[StockLevel]:
    return list(
        session.scalars(
            select(StockLevel)
            .where(StockLevel.product_id.in_(product_ids))
            .order_by(StockLevel.product_id, StockLevel.warehouse_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


def record_movement(
    session: Session,
    level: StockLevel,
    *,
    movement_type: MovementType,
    quantity: int,
    reason: str = "",
    reference: str | None = None,
    actor_id: int | None = None,
    release_reserved: int = 0,
) -> StockMovement:
    """Apply a signed quantity to a locked level and append its ledger row.

    ``release_reserved`` also lowers ``reserved`` by that much in the same step; a sale
    commit uses it to turn held stock into sold stock.
    """
    _move(level, quantity, release_reserved)
    movement = StockMovement(
        **_ledger_row(level, movement_type, quantity, reason, reference, actor_id)
    )
    session.add(movement)
    session.flush()
    outbox.append(session, outbox.PRODUCTS_OUTBOX, [movement_event(movement, level.reserved)])
    return movement


def record_movements(
    session: Session,
    changes: Sequence[tuple[StockLevel, int]],
    *,
    movement_type: MovementType,
    reason: str = "",
    reference: str | None = None,
    actor_id: int | None = None,
) -> int:
    """``record_movement`` for many locked levels at once, each with its signed quantity
    (distinct levels), answering how many ledger rows it appended: the levels are written
    in one statement, the ledger rows in one multi-row INSERT (their ids read back in
    order) and their events in another, with no object per ledger row, so a bulk import's
    batch costs a few statements and little CPU per row."""
    now = utcnow()
    rows = []
    for level, quantity in changes:
        _move(level, quantity)
        row = _ledger_row(level, movement_type, quantity, reason, reference, actor_id)
        rows.append({**row, "created_at": now})
    if not rows:
        return 0
    _write_levels(session, [level for level, _ in changes])
    session.flush()  # nothing left to write: the levels become clean, no longer held
    ids = session.connection().execute(_INSERT_MOVEMENTS, rows).scalars().all()
    outbox.append(
        session,
        outbox.PRODUCTS_OUTBOX,
        [
            _movement_event({**row, "id": movement_id}, level.reserved)
            for (level, _), row, movement_id in zip(changes, rows, ids, strict=True)
        ],
    )
    return len(rows)


MOVEMENTS: Table = StockMovement.__table__  # type: ignore[assignment]
_INSERT_MOVEMENTS = insert(MOVEMENTS).returning(MOVEMENTS.c.id, sort_by_parameter_order=True)


def _write_levels(session: Session, levels: Sequence[StockLevel]) -> None:
    """The changed counts of these locked levels in one statement (an ORM flush sends an
    UPDATE per level); their state is then set as the stored one, so a flush after finds
    nothing to write and only marks them clean."""
    now = utcnow()
    rows = []
    for level in levels:
        rows.append(
            {
                "id": level.id,
                "product_id": level.product_id,
                "warehouse_id": level.warehouse_id,
                "on_hand": level.on_hand,
                "reserved": level.reserved,
                "updated_at": now,
            }
        )
        for name in _LEVEL_COUNTS:
            set_committed_value(level, name, rows[-1][name])
    update_by_id(session, LEVELS, _LEVEL_COUNTS, rows)


_LEVEL_COUNTS = ("on_hand", "reserved", "updated_at")


def _ledger_row(
    level: StockLevel,
    movement_type: MovementType,
    quantity: int,
    reason: str,
    reference: str | None,
    actor_id: int | None,
) -> dict[str, Any]:
    """The columns of the ledger row of a movement that left ``level`` as it is now."""
    return {
        "product_id": level.product_id,
        "warehouse_id": level.warehouse_id,
        "movement_type": movement_type,
        "quantity": quantity,
        "on_hand_after": level.on_hand,
        "reason": reason,
        "reference": reference,
        "actor_id": actor_id,
    }


def _move(level: StockLevel, quantity: int, release_reserved: int = 0) -> None:
    """Check and change a locked level's counts by a movement of ``quantity``."""
    if quantity == 0:
        raise ValueError("a movement must change stock")
    new_on_hand = level.on_hand + quantity
    new_reserved = level.reserved - release_reserved
    if new_on_hand < 0 or new_reserved < 0 or new_reserved > new_on_hand:
        available = level.on_hand - level.reserved
        raise InsufficientStock(
            f"Only {available} of product {level.product_id} available in warehouse "
            f"{level.warehouse_id}; cannot remove {-quantity}",
            product_id=level.product_id,
            warehouse_id=level.warehouse_id,
            requested=-quantity,
            available=available,
            on_hand=level.on_hand,
            reserved=level.reserved,
        )
    level.on_hand = new_on_hand
    level.reserved = new_reserved


def movement_event(movement: StockMovement, reserved_after: int) -> dict[str, object]:
    """The ``stock.moved`` event of one ledger row: what changed and the level it left."""
    return _movement_event(
        {column: getattr(movement, column) for column in _EVENT_COLUMNS}, reserved_after
    )


_EVENT_COLUMNS = (
    "id",
    "product_id",
    "warehouse_id",
    "movement_type",
    "quantity",
    "on_hand_after",
    "reference",
    "actor_id",
    "created_at",
)


def _movement_event(movement: Mapping[str, Any], reserved_after: int) -> dict[str, object]:
    """``movement_event`` of a ledger row given as its columns."""
    return outbox.event(
        "stock.moved",
        movement["product_id"],
        {
            "movement_id": movement["id"],
            "product_id": movement["product_id"],
            "warehouse_id": movement["warehouse_id"],
            "movement_type": movement["movement_type"].value,
            "quantity": movement["quantity"],
            "on_hand_after": movement["on_hand_after"],
            "reserved_after": reserved_after,
            "reference": movement["reference"],
            "actor_id": movement["actor_id"],
        },
        movement["created_at"],
    )
