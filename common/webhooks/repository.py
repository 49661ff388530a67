"""Every SQL query of webhooks: the admin's endpoints and delivery log, the fan-out's queueing,
and the delivery worker's claims, batches and outcomes.

The worker's functions take a Connection inside the caller's short transaction; none of them
is ever called with a POST in flight (see delivery.py).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import takewhile
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    Select,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.orm import Session

from common import outbox
from common.db import UTCDateTime, execute_rows
from common.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)
from common.pagination import PageParams, Slice, first, paginate

ENDPOINTS: Table = WebhookEndpoint.__table__  # type: ignore[assignment]
DELIVERIES: Table = WebhookDelivery.__table__  # type: ignore[assignment]
ATTEMPTS: Table = WebhookAttempt.__table__  # type: ignore[assignment]
PENDING, SUCCEEDED, FAILED = (
    WebhookDeliveryStatus.PENDING,
    WebhookDeliveryStatus.SUCCEEDED,
    WebhookDeliveryStatus.FAILED,
)


# --- the admin's side (ORM, in the request's transaction) --------------------------------


def newest_event_ids(session: Session) -> tuple[int, int]:
    """The newest committed event id of the products and of the sales outbox."""
    return outbox.max_id(session, outbox.PRODUCTS_OUTBOX), outbox.max_id(
        session, outbox.SALES_OUTBOX
    )


def get_endpoint(
    session: Session, endpoint_id: int, *, lock: bool = False
) -> WebhookEndpoint | None:
    return session.get(WebhookEndpoint, endpoint_id, with_for_update=lock)


def list_endpoints(session: Session, page: PageParams) -> Slice[WebhookEndpoint]:
    return paginate(session, select(WebhookEndpoint), page, [WebhookEndpoint.id.asc()]).map(first)


def get_delivery(
    session: Session, delivery_id: int, *, lock: bool = False
) -> WebhookDelivery | None:
    return session.get(WebhookDelivery, delivery_id, with_for_update=lock)


def list_deliveries(
    session: Session,
    *,
    endpoint_id: int,
    statuses: Sequence[WebhookDeliveryStatus],
    page: PageParams,
) -> Slice[WebhookDelivery]:
    stmt: Select[Any] = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if statuses:
        stmt = stmt.where(WebhookDelivery.status.in_(statuses))
    return paginate(session, stmt, page, [WebhookDelivery.id.desc()]).map(first)


def attempts_of(session: Session, delivery_ids: Sequence[int]) -> dict[int, list[WebhookAttempt]]:
    """Each delivery's attempts, oldest first."""
    found: dict[int, list[WebhookAttempt]] = {delivery_id: [] for delivery_id in delivery_ids}
    if delivery_ids:
        stmt = (
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(delivery_ids))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.id)
        )
        for attempt in session.scalars(stmt):
            found[attempt.delivery_id].append(attempt)
    return found


def requeue_pending(session: Session, endpoint_id: int, now: datetime) -> None:
    """Give an endpoint's waiting deliveries a fresh retry window, due now (on re-enabling)."""
    session.execute(
        update(DELIVERIES)
        .where(DELIVERIES.c.endpoint_id == endpoint_id, DELIVERIES.c.status == PENDING)
        .values(queued_at=now, next_attempt_at=now, round_attempts=0)
    )


# --- fan-out ----------------------------------------------------------------------------


def active_subscriptions(connection: Connection) -> list[Row[Any]]:
    """Every active endpoint: its id, event types and the event ids it starts after."""
    stmt = select(
        ENDPOINTS.c.id,
        ENDPOINTS.c.event_types,
        ENDPOINTS.c.products_after_id,
        ENDPOINTS.c.sales_after_id,
    ).where(ENDPOINTS.c.is_active.is_(True))
    return list(connection.execute(stmt))


def queue_deliveries(db: Connection | Session, deliveries: Sequence[dict[str, Any]]) -> None:
    """Insert pending deliveries (multi-row INSERTs, ``execute_rows``), each ``payload`` the
    JSON text of its body (``fanout.encode``), written as it is."""
    execute_rows(db, _QUEUE, deliveries)


_QUEUE = insert(DELIVERIES).values(payload=bindparam("payload", type_=Text()))


# --- the delivery worker ----------------------------------------------------------------


def _lease_free(now: datetime) -> Any:
    return or_(ENDPOINTS.c.leased_until.is_(None), ENDPOINTS.c.leased_until < now)


def due_endpoints(connection: Connection, *, now: datetime, limit: int) -> list[int]:
    """Active endpoints nobody holds whose oldest pending delivery is due, most overdue first.

    A plain read (no lock): ``claim`` locks and checks again. One index dive per endpoint
    (the queue index), so its cost grows with the endpoints, not with their backlog.
    """
    head_due = (
        select(DELIVERIES.c.next_attempt_at)
        .where(DELIVERIES.c.endpoint_id == ENDPOINTS.c.id, DELIVERIES.c.status == PENDING)
        .order_by(DELIVERIES.c.id)
        .limit(1)
        .correlate(ENDPOINTS)
        .scalar_subquery()
    )
    stmt = (
        select(ENDPOINTS.c.id, head_due.label("due"))
        .where(ENDPOINTS.c.is_active.is_(True), _lease_free(now))
        .subquery()
    )
    rows = connection.execute(
        select(stmt.c.id).where(stmt.c.due <= now).order_by(stmt.c.due, stmt.c.id).limit(limit)
    )
    return list(rows.scalars())


def claim(
    connection: Connection,
    endpoint_ids: Sequence[int],
    *,
    token: str,
    now: datetime,
    until: datetime,
) -> list[int]:
    """Lease these endpoints to ``token`` until ``until``, those still free; rows another
    worker is claiming right now are skipped, not waited for (FOR UPDATE SKIP LOCKED)."""
    if not endpoint_ids:
        return []
    locked = list(
        connection.execute(
            select(ENDPOINTS.c.id)
            .where(
                ENDPOINTS.c.id.in_(endpoint_ids),
                ENDPOINTS.c.is_active.is_(True),
                _lease_free(now),
            )
            .with_for_update(skip_locked=True)
        ).scalars()
    )
    if locked:
        connection.execute(
            update(ENDPOINTS)
            .where(ENDPOINTS.c.id.in_(locked))
            .values(lease_token=token, leased_until=until, updated_at=ENDPOINTS.c.updated_at)
        )
    return locked


@dataclass(frozen=True)
class Target:
    """Where an endpoint's messages go and the secrets that sign them."""

    endpoint_id: int
    url: str
    secrets: tuple[str, ...]
    is_active: bool
    leased: bool  # still leased to the caller's token


@dataclass(frozen=True)
class Due:
    """A pending delivery, as the worker sends it."""

    id: int
    message_id: str
    payload: str  # the body's JSON text
    round_attempts: int
    queued_at: datetime


@dataclass(frozen=True)
class Batch:
    """What an endpoint's worker may send now."""

    target: Target | None  # None once the endpoint is deleted
    due: list[Due]  # its next pending deliveries in order, as far as they are due
    waiting: bool  # its oldest pending delivery waits for a retry: nothing may go before it


def load_batch(
    connection: Connection, endpoint_id: int, *, token: str, now: datetime, limit: int
) -> Batch:
    """The endpoint and its next pending deliveries, oldest first, stopping at the first that
    is not due (nothing at all while it is disabled or no longer leased to ``token``)."""
    row = connection.execute(
        select(
            ENDPOINTS.c.url,
            ENDPOINTS.c.secret,
            ENDPOINTS.c.previous_secret,
            ENDPOINTS.c.previous_secret_expires_at,
            ENDPOINTS.c.is_active,
            ENDPOINTS.c.lease_token,
        ).where(ENDPOINTS.c.id == endpoint_id)
    ).first()
    if row is None:
        return Batch(None, [], False)
    secrets: tuple[str, ...] = (row.secret,)
    if row.previous_secret and (
        row.previous_secret_expires_at is None or row.previous_secret_expires_at > now
    ):
        secrets += (row.previous_secret,)
    target = Target(endpoint_id, row.url, secrets, bool(row.is_active), row.lease_token == token)
    if not (target.is_active and target.leased):
        return Batch(target, [], False)
    rows = list(
        connection.execute(
            select(
                DELIVERIES.c.id,
                DELIVERIES.c.message_id,
                type_coerce(DELIVERIES.c.payload, Text).label("payload"),  # sent as stored
                DELIVERIES.c.round_attempts,
                DELIVERIES.c.queued_at,
                DELIVERIES.c.next_attempt_at,
            )
            .where(DELIVERIES.c.endpoint_id == endpoint_id, DELIVERIES.c.status == PENDING)
            .order_by(DELIVERIES.c.id)
            .limit(limit)
        )
    )
    due = [
        Due(r.id, r.message_id, r.payload, r.round_attempts, r.queued_at)
        for r in takewhile(lambda r: r.next_attempt_at is None or r.next_attempt_at <= now, rows)
    ]
    return Batch(target, due, bool(rows) and not due)


def lock_endpoint(connection: Connection, endpoint_id: int) -> Any:
    """The endpoint's lease and health (a row, None once deleted), its row locked until the
    transaction ends."""
    return connection.execute(
        select(
            ENDPOINTS.c.lease_token,
            ENDPOINTS.c.is_active,
            ENDPOINTS.c.consecutive_failures,
            ENDPOINTS.c.failing_since,
        )
        .where(ENDPOINTS.c.id == endpoint_id)
        .with_for_update()
    ).first()


def log_attempts(connection: Connection, attempts: Sequence[dict[str, Any]]) -> None:
    execute_rows(connection, _LOG_ATTEMPT, attempts)


_LOG_ATTEMPT = insert(ATTEMPTS)


def finish_delivery(connection: Connection, delivery_id: int, values: dict[str, Any]) -> None:
    """Apply one try's outcome to a delivery that is still pending (an admin may have
    re-queued or the endpoint's deletion removed it meanwhile)."""
    connection.execute(
        update(DELIVERIES)
        .where(DELIVERIES.c.id == delivery_id, DELIVERIES.c.status == PENDING)
        .values(
            attempts=DELIVERIES.c.attempts + 1,
            round_attempts=DELIVERIES.c.round_attempts + 1,
            **values,
        )
    )


def mark_succeeded(connection: Connection, delivery_ids: Sequence[int], *, now: datetime) -> None:
    """Mark these deliveries, those still pending, as succeeded by their latest attempt
    (``log_attempts`` wrote it first, in the same transaction): one statement, the same for
    every batch, whose tried-at, status and latency come from that attempt's row."""
    if delivery_ids:
        connection.execute(_MARK_SUCCEEDED, {"ids": list(delivery_ids), "now": now})


def _latest_attempt(column: Any) -> Any:
    return (
        select(column)
        .where(ATTEMPTS.c.delivery_id == DELIVERIES.c.id)
        .order_by(ATTEMPTS.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


_MARK_SUCCEEDED = (
    update(DELIVERIES)
    .where(DELIVERIES.c.id.in_(bindparam("ids", expanding=True)), DELIVERIES.c.status == PENDING)
    .values(
        status=SUCCEEDED,
        attempts=DELIVERIES.c.attempts + 1,
        round_attempts=DELIVERIES.c.round_attempts + 1,
        next_attempt_at=None,
        delivered_at=bindparam("now", type_=UTCDateTime()),
        last_error=None,
        last_attempt_at=_latest_attempt(ATTEMPTS.c.attempted_at),
        last_status_code=_latest_attempt(ATTEMPTS.c.status_code),
        last_latency_ms=_latest_attempt(ATTEMPTS.c.latency_ms),
    )
)


def update_endpoint_state(connection: Connection, endpoint_id: int, values: dict[str, Any]) -> None:
    """Worker-side changes (health, lease); updated_at stays the admin's last change."""
    connection.execute(
        update(ENDPOINTS)
        .where(ENDPOINTS.c.id == endpoint_id)
        .values(updated_at=ENDPOINTS.c.updated_at, **values)
    )


def release(connection: Connection, leases: Sequence[tuple[int, str]]) -> None:
    """Give up these (endpoint id, token) leases, those still held by their token."""
    for endpoint_id, token in leases:
        connection.execute(
            update(ENDPOINTS)
            .where(ENDPOINTS.c.id == endpoint_id, ENDPOINTS.c.lease_token == token)
            .values(lease_token=None, leased_until=None, updated_at=ENDPOINTS.c.updated_at)
        )


def prune_finished(connection: Connection, *, before: datetime, limit: int = 1000) -> int:
    """Delete up to ``limit`` finished deliveries created before ``before`` (their attempts
    go with them); answers how many."""
    ids = list(
        connection.execute(
            select(DELIVERIES.c.id)
            .where(DELIVERIES.c.created_at < before, DELIVERIES.c.status != PENDING)
            .order_by(DELIVERIES.c.created_at)
            .limit(limit)
        ).scalars()
    )
    if ids:
        connection.execute(delete(DELIVERIES).where(DELIVERIES.c.id.in_(ids)))
    return len(ids)


def count_pending(connection: Connection) -> int:
    """Pending deliveries of every endpoint (benchmarks and tests)."""
    stmt = select(func.count()).select_from(DELIVERIES).where(DELIVERIES.c.status == PENDING)
    return int(connection.execute(stmt).scalar_one())
