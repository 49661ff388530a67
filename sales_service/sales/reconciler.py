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
    """One pass over products_service's outbox; returns how many takes were given back."""
    cutoff = utcnow() - timedelta(seconds=grace_seconds)
    given_back = 0
    with engine.begin() as connection:
        position, _ = outbox.lock_position(connection, CONSUMER)
        done = position
        for row in outbox.read_after(connection, outbox.PRODUCTS_OUTBOX, position, limit=BATCH):
            if row.occurred_at > cutoff:
                break  # its sale may still be being written
            if row.type == TAKEN:
                key = str(row.payload["key"])
                with sessions() as session:
                    orphan = repository.claim_void(session, key)
                    session.commit()
                if orphan:
                    try:
                        products_client.return_sale_stock(key)
                    except AppError as exc:
                        logger.warning("stock key %s: give back failed, retrying: %s", key, exc)
                        break
                    given_back += 1
                    logger.warning("stock key %s: no sale claimed it; stock given back", key)
            done = row.id
        if done != position:
            outbox.save_position(connection, CONSUMER, done)
    return given_back
