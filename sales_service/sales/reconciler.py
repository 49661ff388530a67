"""The reconciler: gives back stock that products_service took for a sale that never stood.

A take nobody claimed (see sales_service/sales/service.py) is left when sales_service dies
between taking a sale's stock and writing the sale, or gave up waiting for a take that still
landed. The reconciler reads products_service's outbox (reading across services is fine;
only writes stay with their owner) as a durable consumer: for every ``sale_stock.taken``
event older than the grace period, it claims the take's key void unless a sale claimed it,
and asks products_service to give the stock back. Its position moves past an event only once
that is done, so an orphan is never forgotten, whichever replica or restart gets to it.
"""

import logging
from datetime import timedelta
from itertools import takewhile

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from common import outbox
from common.db import utcnow
from common.errors import AppError
from sales_service.clients.products import ProductsClient
from sales_service.sales import repository

logger = logging.getLogger(__name__)
CONSUMER = "sale-stock-reconciler"
TAKEN = "sale_stock.taken"
BATCH = 500


def reconcile_once(
    *,
    engine: Engine,
    sessions: sessionmaker[Session],
    products_client: ProductsClient,
    grace_seconds: float,
) -> int:
    """One pass over products_service's outbox; returns how many takes were given back.

    No transaction is open while products_service is called: the batch is read (and its
    orphans claimed void) in one, the stock given back with none, the position moved in a
    third. Two replicas may both give back the same take meanwhile: that is idempotent.
    """
    orphans, read_up_to, position = _orphans_in_next_batch(engine, sessions, grace_seconds)
    done = read_up_to
    given_back = 0
    for event_id, key in orphans:
        try:
            products_client.return_sale_stock(key)
        except AppError as exc:
            logger.warning("stock key %s: give back failed, retrying: %s", key, exc)
            done = event_id - 1  # this take and what follows it are read again next time
            break
        given_back += 1
        logger.warning("stock key %s: no sale claimed it; stock given back", key)
    if done > position:
        with engine.begin() as connection:
            now_at, _ = outbox.lock_position(connection, CONSUMER)
            if done > now_at:  # another replica may have gone further meanwhile
                outbox.save_position(connection, CONSUMER, done)
    return given_back


def _orphans_in_next_batch(
    engine: Engine, sessions: sessionmaker[Session], grace_seconds: float
) -> tuple[list[tuple[int, str]], int, int]:
    """The takes no sale claimed in the next batch of events older than the grace period,
    each now claimed void (event id, stock key); the last event id read; the position."""
    cutoff = utcnow() - timedelta(seconds=grace_seconds)
    with engine.begin() as connection:
        position, _ = outbox.lock_position(connection, CONSUMER)
        # Up to the first take young enough that its sale may still be being written.
        rows = list(
            takewhile(
                lambda row: row.occurred_at <= cutoff,
                outbox.read_after(connection, outbox.PRODUCTS_OUTBOX, position, limit=BATCH),
            )
        )
    taken = [(row.id, str(row.payload["key"])) for row in rows if row.type == TAKEN]
    orphans = []
    with sessions() as session:
        claimed = repository.sale_claimed_keys(session, [key for _, key in taken])
        for event_id, key in taken:
            if key not in claimed and repository.claim_void(session, key):
                orphans.append((event_id, key))
        session.commit()
    return orphans, rows[-1].id if rows else position, position
