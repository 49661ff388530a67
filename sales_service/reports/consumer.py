"""The one consumer that keeps the report rollups: it applies the sales outbox in batches.

Each pass is one transaction: lock the consumer's position row (so one replica at a time
works), read the next committed events in commit-safe order (common.outbox), add what they
changed to the rollups with one upsert per table (from BULK_SALES new sales on, the
database sums them from their lines), and move the position past them. Either
all of that commits or none of it, so a killed process resumes exactly where it stopped.
"""

import logging

from sqlalchemy import Connection, Engine

from common import outbox
from common.db import retry_lock_conflicts
from sales_service.events import REPORTED_TYPES, SALE_RECORDED
from sales_service.reports.rollups import (
    CONSUMER,
    apply_events,
    apply_new_sales,
    rebuild_rollups,
)

logger = logging.getLogger(__name__)
BATCH = 2000
# From this many new sales in a batch (a bulk import's), the database sums them from their
# lines (apply_new_sales) rather than this process from their events.
BULK_SALES = 200


def consume_once(engine: Engine, *, batch: int = BATCH) -> int:
    """Apply the next batch of sale events to the rollups, in a transaction of its own;
    returns how many were read."""

    def one_pass() -> int:
        with engine.begin() as connection:
            return consume_batch(connection, batch=batch)

    # Another replica's pass (or a rebuild) may meet this one on the same rows: retried.
    return retry_lock_conflicts(one_pass)


def consume_batch(connection: Connection, *, batch: int = BATCH) -> int:
    """The work of one pass, in the caller's transaction (which then holds the consumer's
    lock until it ends)."""
    position, needs_rebuild = outbox.lock_position(connection, CONSUMER)
    if needs_rebuild:
        _rebuild_under_lock(connection)
        return 0
    rows = outbox.read_after(connection, outbox.SALES_OUTBOX, position, limit=batch)
    if not rows:
        return 0
    reported = [row for row in rows if row.type in REPORTED_TYPES]
    new_sales = [row.subject_id for row in reported if row.type == SALE_RECORDED]
    if len(new_sales) >= BULK_SALES and connection.dialect.name in ("mysql", "mariadb"):
        apply_new_sales(connection, new_sales)
        reported = [row for row in reported if row.type != SALE_RECORDED]
    apply_events(connection, [row.payload for row in reported])
    outbox.save_position(connection, CONSUMER, rows[-1].id)
    return len(rows)


def catch_up(engine: Engine) -> int:
    """Consume until nothing is left (tests and the CLI); returns how many events."""
    total = 0
    while read := consume_once(engine):
        total += read
    return total


def _rebuild_under_lock(connection: Connection) -> None:
    top = outbox.max_id(connection, outbox.SALES_OUTBOX)
    rebuild_rollups(connection)
    outbox.save_position(connection, CONSUMER, top)
    logger.info("report rollups rebuilt from the raw sales; reading the outbox from %d", top)


def rebuild(engine: Engine, *, workers: int = 1) -> None:
    """Recompute the rollups from the raw sales and have the consumer go on from the newest
    event. Run it while no sale or refund is being recorded (a sale recorded meanwhile could
    be counted twice or not at all)."""
    if workers <= 1:
        with engine.begin() as connection:  # all or nothing, the consumer held off meanwhile
            outbox.lock_position(connection, CONSUMER)
            _rebuild_under_lock(connection)
        return
    with engine.begin() as connection:
        top = outbox.max_id(connection, outbox.SALES_OUTBOX)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        rebuild_rollups(connection, engine=engine, workers=workers)
    with engine.begin() as connection:
        outbox.lock_position(connection, CONSUMER)
        outbox.save_position(connection, CONSUMER, top)
