"""Transactional outbox: append an event with the change it describes; read events in an
order no consumer can skip an event in.

Each writing service has its own outbox table (``products_outbox``, ``sales_outbox``), and
appends to it in the transaction that makes the change, so an event exists exactly when its
change committed.

Ids are assigned at insert, not at commit: a transaction holding id 7 may commit after one
holding id 8. A consumer that read 8 and moved its position past 7 would never see 7. So
``read_after`` reads with a shared lock on MySQL/MariaDB: InnoDB makes a locking read wait
for a row another transaction inserted and has not committed yet, so the read returns 7 and
8 together once 7 commits (or 8 alone if 7 rolls back), never 8 before 7. On SQLite a
writer holds the database's write lock from its first statement to its commit, so ids are
given out in commit order already and a plain read is safe.

A consumer keeps its position in ``outbox_positions`` and locks that row while it works, so
however many replicas run it, one at a time advances it, and it resumes where it stopped.
"""

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic_core import to_json
from sqlalchemy import Connection, Row, Table, Text, bindparam, func, insert, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from common.db import connection_of, execute_rows, utcnow
from common.models import OutboxPosition, ProductsEvent, SalesEvent

PRODUCTS_OUTBOX: Table = ProductsEvent.__table__  # type: ignore[assignment]
SALES_OUTBOX: Table = SalesEvent.__table__  # type: ignore[assignment]
POSITIONS: Table = OutboxPosition.__table__  # type: ignore[assignment]
LOCK_WAIT_TIMEOUT = 1205  # MySQL/MariaDB: a locking read waited too long

Db = Session | Connection


def event(
    type_: str,
    subject_id: int | None,
    payload: Mapping[str, Any],
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """One outbox row, ready for ``append``."""
    return {
        "type": type_,
        "subject_id": subject_id,
        # JSON text as an API would give it (Decimal money as a string, times in ISO 8601),
        # written in one pass by pydantic's serializer
        "payload": to_json(dict(payload)).decode(),
        "occurred_at": occurred_at or utcnow(),
    }


def append(
    db: Db, table: Table, events: Sequence[Mapping[str, Any]], *, answer_later: bool = False
) -> None:
    """Append events in the caller's transaction (one multi-row INSERT); ``answer_later``:
    see ``common.db.execute_rows``."""
    if events:
        execute_rows(connection_of(db), _insert(table), events, answer_later=answer_later)


@functools.cache
def _insert(table: Table) -> Any:
    """One INSERT statement object per outbox, reused (its cache key is kept on it); the
    payload goes in as the JSON text ``event`` wrote, not through the column's serializer."""
    return insert(table).values(payload=bindparam("payload", type_=Text()))


def _dialect(db: Db) -> str:
    return db.dialect.name if isinstance(db, Connection) else db.get_bind().dialect.name


def read_after(db: Db, table: Table, after_id: int, *, limit: int = 500) -> list[Row[Any]]:
    """Committed events after ``after_id`` in id order, never passing over an uncommitted one.

    On MySQL/MariaDB this may wait for a transaction that holds a lower id; if that takes
    longer than the server's lock wait timeout, nothing is returned this time.
    """
    stmt = select(table).where(table.c.id > after_id).order_by(table.c.id).limit(limit)
    if _dialect(db) == "sqlite":
        return list(db.execute(stmt))
    try:
        return list(db.execute(stmt.with_for_update(read=True)))
    except OperationalError as exc:
        if getattr(exc.orig, "args", (None,))[0] == LOCK_WAIT_TIMEOUT:
            return []
        raise


def lock_position(db: Db, consumer: str) -> tuple[int, bool]:
    """The consumer's position and whether it must rebuild first, its row locked until the
    caller's transaction ends (created at 0 on first use)."""
    lock = (
        select(POSITIONS.c.position, POSITIONS.c.needs_rebuild)
        .where(POSITIONS.c.consumer == consumer)
        .with_for_update()
    )
    row = db.execute(lock).first()
    if row is None:
        create: Any
        if _dialect(db) == "sqlite":
            create = sqlite.insert(POSITIONS).on_conflict_do_nothing()
        else:
            create = insert(POSITIONS).prefix_with("IGNORE")  # another replica may create it
        db.execute(
            create.values(consumer=consumer, position=0, needs_rebuild=False, updated_at=utcnow())
        )
        row = db.execute(lock).one()
    return int(row.position), bool(row.needs_rebuild)


def save_position(db: Db, consumer: str, position: int, *, needs_rebuild: bool = False) -> None:
    """Move the consumer's position (in the transaction that applied the events)."""
    db.execute(
        update(POSITIONS)
        .where(POSITIONS.c.consumer == consumer)
        .values(position=position, needs_rebuild=needs_rebuild, updated_at=utcnow())
    )


def max_id(db: Db, table: Table) -> int:
    """The highest event id the caller's snapshot sees (0 for an empty outbox)."""
    return int(db.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one())
