"""The admin's use-cases: register, change, disable, delete endpoints, rotate their secrets,
ping them, read their delivery log and send a delivery again. Nothing here commits."""

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from common import audit
from common.db import utcnow
from common.errors import InvalidState, NotFound
from common.models import WebhookAttempt, WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint
from common.pagination import PageParams, Slice
from common.webhooks import repository
from common.webhooks.fanout import message_body
from common.webhooks.schemas import WebhookEndpointCreate, WebhookEndpointUpdate
from common.webhooks.signing import generate_secret

AUDIT_TRAIL = audit.Trail(
    "webhook_endpoint", ("url", "description", "event_types", "is_active", "secret")
)
PING = "webhook.ping"


@dataclass(frozen=True)
class Actor:
    id: int
    email: str


@dataclass(frozen=True)
class DeliveryView:
    delivery: WebhookDelivery
    attempts: list[WebhookAttempt]


def _endpoint(session: Session, endpoint_id: int, *, lock: bool = False) -> WebhookEndpoint:
    endpoint = repository.get_endpoint(session, endpoint_id, lock=lock)
    if endpoint is None:
        raise NotFound(f"Webhook endpoint {endpoint_id} not found")
    return endpoint


def _delivery(session: Session, delivery_id: int, *, lock: bool = False) -> WebhookDelivery:
    delivery = repository.get_delivery(session, delivery_id, lock=lock)
    if delivery is None:
        raise NotFound(f"Webhook delivery {delivery_id} not found")
    return delivery


def create_endpoint(
    *, session: Session, data: WebhookEndpointCreate, actor: Actor
) -> WebhookEndpoint:
    """Register an endpoint; it gets the matching events that happen from now on."""
    products_after, sales_after = repository.newest_event_ids(session)
    endpoint = WebhookEndpoint(
        url=data.url,
        description=data.description,
        event_types=data.event_types,
        secret=data.secret or generate_secret(),
        is_active=True,
        consecutive_failures=0,
        products_after_id=products_after,
        sales_after_id=sales_after,
    )
    session.add(endpoint)
    session.flush()
    AUDIT_TRAIL.record(
        session,
        "webhook_endpoint.created",
        endpoint,
        {},
        actor_id=actor.id,
        actor_email=actor.email,
    )
    return endpoint


def list_endpoints(*, session: Session, page: PageParams) -> Slice[WebhookEndpoint]:
    return repository.list_endpoints(session, page)


def get_endpoint(*, session: Session, endpoint_id: int) -> WebhookEndpoint:
    return _endpoint(session, endpoint_id)


def update_endpoint(
    *, session: Session, endpoint_id: int, data: WebhookEndpointUpdate, actor: Actor
) -> WebhookEndpoint:
    """Change what was sent; disabling records who did it, enabling resumes delivery."""
    endpoint = _endpoint(session, endpoint_id, lock=True)
    before = AUDIT_TRAIL.snapshot(endpoint)
    changes = data.model_dump(exclude_unset=True)
    now = utcnow()
    if changes.get("is_active") is True and not endpoint.is_active:
        endpoint.disabled_at = None
        endpoint.disabled_reason = None
        endpoint.failing_since = None
        endpoint.consecutive_failures = 0
        repository.requeue_pending(session, endpoint.id, now)
    elif changes.get("is_active") is False and endpoint.is_active:
        endpoint.disabled_at = now
        endpoint.disabled_reason = f"Disabled by {actor.email}"
    for field, value in changes.items():
        setattr(endpoint, field, value)
    session.flush()
    AUDIT_TRAIL.record(
        session,
        "webhook_endpoint.updated",
        endpoint,
        before,
        actor_id=actor.id,
        actor_email=actor.email,
    )
    return endpoint


def delete_endpoint(*, session: Session, endpoint_id: int, actor: Actor) -> None:
    """Remove it with its deliveries and their log."""
    endpoint = _endpoint(session, endpoint_id, lock=True)
    before = AUDIT_TRAIL.snapshot(endpoint)
    session.delete(endpoint)
    session.flush()
    audit.record(
        session,
        actor_id=actor.id,
        actor_email=actor.email,
        action="webhook_endpoint.deleted",
        entity_type=AUDIT_TRAIL.entity_type,
        entity_id=endpoint_id,
        changes=audit.diff(before, {}),
    )


def rotate_secret(
    *,
    session: Session,
    endpoint_id: int,
    secret: str | None,
    grace_seconds: float,
    actor: Actor,
) -> WebhookEndpoint:
    """Sign with a new secret from now on; the old one signs too for ``grace_seconds``."""
    endpoint = _endpoint(session, endpoint_id, lock=True)
    before = AUDIT_TRAIL.snapshot(endpoint)
    if grace_seconds > 0:
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = utcnow() + timedelta(seconds=grace_seconds)
    else:
        endpoint.previous_secret = None
        endpoint.previous_secret_expires_at = None
    endpoint.secret = secret or generate_secret()
    session.flush()
    AUDIT_TRAIL.record(
        session,
        "webhook_endpoint.secret_rotated",
        endpoint,
        before,
        actor_id=actor.id,
        actor_email=actor.email,
    )
    return endpoint


def ping(*, session: Session, endpoint_id: int) -> DeliveryView:
    """Queue a ``webhook.ping`` message to this endpoint, behind its other deliveries."""
    endpoint = _endpoint(session, endpoint_id)
    if not endpoint.is_active:
        raise InvalidState(f"Webhook endpoint {endpoint_id} is disabled; enable it first")
    now = utcnow()
    id_ = f"ping-{secrets.token_hex(8)}"
    delivery = WebhookDelivery(
        endpoint_id=endpoint.id,
        message_id=id_,
        source="ping",
        event_id=None,
        event_type=PING,
        payload=message_body(
            id_=id_, type_=PING, occurred_at=now, source="ping", data={"endpoint_id": endpoint.id}
        ),
        status=WebhookDeliveryStatus.PENDING,
        attempts=0,
        round_attempts=0,
        queued_at=now,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    session.flush()
    return DeliveryView(delivery, [])


def list_deliveries(
    *,
    session: Session,
    endpoint_id: int,
    statuses: Sequence[WebhookDeliveryStatus],
    page: PageParams,
) -> Slice[DeliveryView]:
    """One page of an endpoint's deliveries, newest first, each with its attempts."""
    _endpoint(session, endpoint_id)
    found = repository.list_deliveries(
        session, endpoint_id=endpoint_id, statuses=statuses, page=page
    )
    attempts = repository.attempts_of(session, [d.id for d in found.rows])
    return found.map(lambda d: DeliveryView(d, attempts[d.id]))


def get_delivery(*, session: Session, delivery_id: int) -> DeliveryView:
    delivery = _delivery(session, delivery_id)
    return DeliveryView(delivery, repository.attempts_of(session, [delivery.id])[delivery.id])


def redeliver(*, session: Session, delivery_id: int) -> DeliveryView:
    """Queue a delivery again, due now, with a fresh retry window (same message id: the
    receiver sees the same message again). It goes out in its endpoint's order, once the
    endpoint is enabled."""
    delivery = _delivery(session, delivery_id, lock=True)
    now = utcnow()
    delivery.status = WebhookDeliveryStatus.PENDING
    delivery.queued_at = now
    delivery.next_attempt_at = now
    delivery.round_attempts = 0
    delivery.delivered_at = None
    session.flush()
    return DeliveryView(delivery, repository.attempts_of(session, [delivery.id])[delivery.id])
