"""The SQL of the event streams: reading the outbox, its bounds, and the names filters use."""

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Table, func, or_, select, text
from sqlalchemy.exc import OperationalError

from common import outbox
from common.models import Category, Product, SalesChannel, Warehouse
from common.streams.events import StreamEvent, names_categories, refs_of, stream_event

# How far below the newest id a feed starting up waits for transactions still open (see
# start_position). A transaction that appends an event commits within moments; ten
# thousand later events committing first would take far longer than any of them lives.
SETTLE_WINDOW = 10_000
# How many of the newest ids a starting feed checks for a gap (an id given out whose row is
# not in the table yet: see common.streams.feed.GapGuard).
SETTLE_TAIL = 100


def bounds(connection: Connection, table: Table) -> tuple[int | None, int]:
    """The oldest id kept (None for an empty outbox) and the newest committed one (or 0)."""
    oldest, newest = connection.execute(select(func.min(table.c.id), func.max(table.c.id))).one()
    return (None if oldest is None else int(oldest)), int(newest or 0)


def start_position(connection: Connection, table: Table) -> int:
    """Where a live feed starting now begins: after the newest id, once every transaction
    holding a lower id (of the last SETTLE_WINDOW) has ended; or, where the newest ids have
    a gap that may still fill (see GapGuard), just before it.

    Ids are assigned at insert (see common.outbox): when the newest committed id is 8, id 7
    may still be about to commit. A locking read of the ids below the newest waits for
    those transactions, as read_after does.
    """
    newest = outbox.max_id(connection, table)
    if connection.dialect.name == "sqlite":  # ids are given out in commit order there
        return newest
    recent = (
        select(table.c.id)
        .where(table.c.id > newest - SETTLE_WINDOW)
        .order_by(table.c.id)
        .with_for_update(read=True)
    )
    while True:
        try:
            ids = list(connection.execute(recent).scalars())
            break
        except OperationalError as exc:
            if getattr(exc.orig, "args", (None,))[0] != outbox.LOCK_WAIT_TIMEOUT:
                raise
    tail = ids[-SETTLE_TAIL:]
    for before, after in itertools.pairwise(tail):
        if after != before + 1:
            return int(before)
    return int(tail[-1]) if tail else newest


def auto_increment_step(connection: Connection) -> int:
    """How far apart the database gives out consecutive ids (1 unless it is a multi-writer
    cluster)."""
    if connection.dialect.name == "sqlite":
        return 1
    return int(connection.execute(text("SELECT @@auto_increment_increment")).scalar_one())


def read_events(
    connection: Connection, table: Table, after: int, *, limit: int, up_to: int | None = None
) -> list[StreamEvent]:
    """Committed events after ``after`` (and at most ``up_to``) in id order, as stream
    events (read with common.outbox.read_after)."""
    rows = outbox.read_after(connection, table, after, limit=limit)
    if up_to is not None:
        rows = [row for row in rows if row.id <= up_to]
    if not rows:
        return []
    unnamed = {
        product_id
        for row in rows
        if not names_categories(row.payload)
        for product_id in refs_of(row.payload)["product"]
    }
    categories = product_categories(connection, unnamed)
    return [
        stream_event(
            id_=row.id,
            type_=row.type,
            subject_id=row.subject_id,
            occurred_at=row.occurred_at,
            payload=row.payload,
            category_of=categories,
        )
        for row in rows
    ]


def product_categories(connection: Connection, product_ids: Iterable[int]) -> dict[int, int]:
    """Each product's category now (products without one are left out)."""
    ids = sorted(set(product_ids))
    if not ids:
        return {}
    found = connection.execute(
        select(Product.id, Product.category_id).where(
            Product.id.in_(ids), Product.category_id.is_not(None)
        )
    )
    return {int(p): int(c) for p, c in found if c is not None}


def category_subtree(connection: Connection, category_ids: Sequence[int]) -> set[int]:
    """The categories and all their subcategories (by the materialised path "/1/5/9/")."""
    if not category_ids:
        return set()
    found = connection.execute(
        select(Category.id).where(or_(*(Category.path.like(f"%/{c}/%") for c in category_ids)))
    )
    return {int(c) for c in found.scalars()} | set(category_ids)


MODELS: dict[str, Any] = {  # what each id filter names
    "product": Product,
    "category": Category,
    "warehouse": Warehouse,
    "channel": SalesChannel,
}
