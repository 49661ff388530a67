"""Background sync: finish stock returns that products_service could not take at the time.

A refund or cancellation whose stock returns did not all land stays ``stock_sync=pending``;
this loop returns it. Every call is idempotent in products_service, so running it in several
replicas at once is harmless. (Sales take their stock before they are written, so none is
ever pending; see sales_service/sales/service.py.)
"""

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from common.auth.security import create_access_token, hash_password
from common.db import utcnow
from common.models import Role, StockSync, User
from common.settings import CommonSettings
from sales_service.clients.products import ProductsClient
from sales_service.refunds import repository as refunds_repository
from sales_service.refunds.service import sync_refund

logger = logging.getLogger(__name__)
SERVICE_EMAIL = "sales-service@system.local"
BATCH = 100


def ensure_service_user(sessions: sessionmaker[Session]) -> int:
    """The identity sales_service acts as when no person is waiting (it cannot log in)."""
    with sessions() as session:
        user_id = session.scalar(select(User.id).where(User.email == SERVICE_EMAIL))
        if user_id is None:
            import secrets

            user = User(
                email=SERVICE_EMAIL,
                full_name="sales_service (background sync)",
                hashed_password=hash_password(secrets.token_urlsafe(32)),
                role=Role.MANAGER,
                is_active=True,
            )
            session.add(user)
            try:
                session.commit()
                user_id = user.id
            except Exception:  # another replica created it first
                session.rollback()
                user_id = session.scalar(select(User.id).where(User.email == SERVICE_EMAIL))
    assert user_id is not None
    return int(user_id)


def sync_pending_refunds(
    *,
    sessions: sessionmaker[Session],
    products_client: ProductsClient,
    settings: CommonSettings,
    service_user_id: int,
    min_age_seconds: float = 2.0,
) -> int:
    """Return the stock of pending refunds older than ``min_age_seconds``; returns how many."""
    token, _ = create_access_token(user_id=service_user_id, role=Role.MANAGER, settings=settings)
    cutoff = utcnow() - timedelta(seconds=min_age_seconds)
    done = 0
    with sessions() as session:
        refund_ids = refunds_repository.pending_refund_ids(
            session, created_before=cutoff, limit=BATCH
        )
        session.commit()  # each refund reads, commits, then calls products_service holding nothing
        for refund_id in refund_ids:
            state = sync_refund(
                session=session,
                refund_id=refund_id,
                products_client=products_client,
                token=token,
            )
            done += state is StockSync.DONE
    if done:
        logger.info("stock sync returned the stock of %d pending refunds", done)
    return done
