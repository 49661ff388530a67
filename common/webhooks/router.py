"""Webhook admin routes (admins only), included by both services like the audit log."""

from typing import Annotated

from fastapi import APIRouter, Body, Query, status
from fastapi.exceptions import RequestValidationError

from common.auth.dependencies import AdminUser, Principal, SettingsDep
from common.db import SessionDep
from common.errors import error_responses
from common.pagination import Page, PageDep
from common.settings import CommonSettings
from common.webhooks import service
from common.webhooks.addresses import check_url
from common.webhooks.schemas import (
    DeliveryFilters,
    WebhookDeliveryDetail,
    WebhookDeliveryRead,
    WebhookEndpointCreate,
    WebhookEndpointRead,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
    WebhookSecretRotate,
)

router = APIRouter(prefix="/webhooks", tags=["webhooks"], responses=error_responses(401, 403, 422))


def _actor(principal: Principal) -> service.Actor:
    return service.Actor(principal.id, principal.user.email)


def _check_destination(url: str | None, settings: CommonSettings) -> None:
    """A 422 on ``url`` when it names (or its host resolves to) an address webhooks may not
    be sent to: loopback, private, link-local... (see common.webhooks.addresses)."""
    reason = url and check_url(url, settings.webhook_networks)
    if reason:
        raise RequestValidationError(
            [{"loc": ("body", "url"), "msg": reason, "type": "url_not_public"}]
        )


def _delivery(view: service.DeliveryView) -> WebhookDeliveryRead:
    return WebhookDeliveryRead.build(view.delivery, view.attempts)


# Routes under /webhooks/deliveries come first: /webhooks/{endpoint_id} must not take them.


@router.get(
    "/deliveries/{delivery_id}",
    summary="Get a webhook delivery",
    responses=error_responses(404),
    operation_id="getWebhookDelivery",
)
def get_delivery(delivery_id: int, _admin: AdminUser, session: SessionDep) -> WebhookDeliveryDetail:
    """One delivery with the body it sends and every attempt."""
    view = service.get_delivery(session=session, delivery_id=delivery_id)
    return WebhookDeliveryDetail.build(view.delivery, view.attempts)


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a webhook delivery again",
    responses=error_responses(404),
    operation_id="redeliverWebhookDelivery",
)
def redeliver(delivery_id: int, _admin: AdminUser, session: SessionDep) -> WebhookDeliveryRead:
    """Queue it again, due now, with a fresh retry window and the same message id; it goes
    out in its endpoint's order (once the endpoint is enabled)."""
    return _delivery(service.redeliver(session=session, delivery_id=delivery_id))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register a webhook endpoint",
    responses=error_responses(422),
    operation_id="createWebhookEndpoint",
)
def create_endpoint(
    body: WebhookEndpointCreate, admin: AdminUser, session: SessionDep, settings: SettingsDep
) -> WebhookEndpointWithSecret:
    """Every matching event from now on is POSTed to the URL, signed with the secret (shown
    only in this answer and on rotation): headers Webhook-Id, Webhook-Timestamp and
    Webhook-Signature `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the
    bytes the `whsec_` secret encodes in base64 (Standard Webhooks)."""
    _check_destination(body.url, settings)
    endpoint = service.create_endpoint(session=session, data=body, actor=_actor(admin))
    return WebhookEndpointWithSecret.model_validate(endpoint)


@router.get("", summary="List webhook endpoints", operation_id="listWebhookEndpoints")
def list_endpoints(
    _admin: AdminUser, session: SessionDep, page: PageDep
) -> Page[WebhookEndpointRead]:
    """Every endpoint with its health (disabled ones with why), oldest first."""
    return Page.of(
        service.list_endpoints(session=session, page=page).map(WebhookEndpointRead.model_validate)
    )


@router.get(
    "/{endpoint_id}",
    summary="Get a webhook endpoint",
    responses=error_responses(404),
    operation_id="getWebhookEndpoint",
)
def get_endpoint(endpoint_id: int, _admin: AdminUser, session: SessionDep) -> WebhookEndpointRead:
    """One endpoint, its filters and its health."""
    return WebhookEndpointRead.model_validate(
        service.get_endpoint(session=session, endpoint_id=endpoint_id)
    )


@router.patch(
    "/{endpoint_id}",
    summary="Update a webhook endpoint",
    responses=error_responses(404, 422),
    operation_id="updateWebhookEndpoint",
)
def update_endpoint(
    endpoint_id: int,
    body: WebhookEndpointUpdate,
    admin: AdminUser,
    session: SessionDep,
    settings: SettingsDep,
) -> WebhookEndpointRead:
    """Change the URL, description or event types, or disable it (`is_active: false`) or
    enable it again: delivery resumes where it stopped, with a fresh retry window."""
    _check_destination(body.url, settings)
    endpoint = service.update_endpoint(
        session=session, endpoint_id=endpoint_id, data=body, actor=_actor(admin)
    )
    return WebhookEndpointRead.model_validate(endpoint)


@router.delete(
    "/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a webhook endpoint",
    responses=error_responses(404),
    operation_id="deleteWebhookEndpoint",
)
def delete_endpoint(endpoint_id: int, admin: AdminUser, session: SessionDep) -> None:
    """Remove it, its deliveries and their log; nothing more is sent to it."""
    service.delete_endpoint(session=session, endpoint_id=endpoint_id, actor=_actor(admin))


@router.post(
    "/{endpoint_id}/rotate-secret",
    summary="Rotate a webhook endpoint's secret",
    responses=error_responses(404, 422),
    operation_id="rotateWebhookSecret",
)
def rotate_secret(
    endpoint_id: int,
    admin: AdminUser,
    session: SessionDep,
    settings: SettingsDep,
    body: Annotated[WebhookSecretRotate | None, Body()] = None,
) -> WebhookEndpointWithSecret:
    """A new secret (the one sent, or a random one), shown only in this answer. Messages
    carry a signature with the old one too until `previous_secret_expires_at`
    (SHOP_WEBHOOK_ROTATION_GRACE_SECONDS), so the receiver can switch without a gap."""
    endpoint = service.rotate_secret(
        session=session,
        endpoint_id=endpoint_id,
        secret=body.secret if body else None,
        grace_seconds=settings.webhook_rotation_grace_seconds,
        actor=_actor(admin),
    )
    return WebhookEndpointWithSecret.model_validate(endpoint)


@router.post(
    "/{endpoint_id}/ping",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a test message to a webhook endpoint",
    responses=error_responses(404, 409),
    operation_id="pingWebhookEndpoint",
)
def ping(endpoint_id: int, _admin: AdminUser, session: SessionDep) -> WebhookDeliveryRead:
    """Queue a `webhook.ping` message, delivered like any event (after the endpoint's
    earlier ones); follow it in the delivery log."""
    return _delivery(service.ping(session=session, endpoint_id=endpoint_id))


@router.get(
    "/{endpoint_id}/deliveries",
    summary="An endpoint's delivery log",
    responses=error_responses(404),
    operation_id="listWebhookDeliveries",
)
def list_deliveries(
    endpoint_id: int,
    _admin: AdminUser,
    session: SessionDep,
    page: PageDep,
    filters: Annotated[DeliveryFilters, Query()],
) -> Page[WebhookDeliveryRead]:
    """Its deliveries, newest first, each with its status, attempts (status code or error,
    latency) and next try."""
    found = service.list_deliveries(
        session=session, endpoint_id=endpoint_id, statuses=filters.status or [], page=page
    )
    return Page.of(found.map(_delivery))
