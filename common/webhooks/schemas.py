"""Request and response bodies of the webhook admin API."""

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Self

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, field_validator

from common.models import WebhookAttempt, WebhookDelivery, WebhookDeliveryStatus
from common.webhooks.signing import secret_key

MAX_EVENT_TYPES = 50


def _http_url(value: str) -> str:
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
        raise ValueError(f"is not a valid URL ({exc})") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


def _real_secret(value: str) -> str:
    secret_key(value)  # ValueError naming what is wrong
    return value


def _distinct(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


WebhookUrl = Annotated[
    str,
    Field(
        min_length=8,
        max_length=2000,
        pattern=r"^https?://\S+$",
        description="Where to POST: an http:// or https:// URL (redirects are not followed)",
        examples=["https://hooks.example.com/shop"],
    ),
    AfterValidator(_http_url),
]
EventType = Annotated[
    str,
    Field(
        min_length=1,
        max_length=60,
        pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*\.?$",
        description="An event type (sale.recorded), or a prefix ending in '.' (sale.)",
        examples=["sale.recorded", "stock."],
    ),
]
EventTypes = Annotated[
    list[EventType],
    Field(
        max_length=MAX_EVENT_TYPES,
        description=(
            "The events to send: exact types or prefixes ending in '.'; empty: every event. "
            "Types: sale.recorded|refunded|cancelled (sales); stock.moved, "
            "stock.health_changed, sale_stock.*, reservation.*, "
            "product.created|updated|archived|restored (products)"
        ),
    ),
    AfterValidator(_distinct),
]
Description = Annotated[str, Field(max_length=500)]
Secret = Annotated[
    str,
    Field(
        min_length=38,
        max_length=100,
        pattern=r"^whsec_[A-Za-z0-9+/]+={0,2}$",
        description="'whsec_' + base64 of a 24-64 byte key; omitted: a random one is made",
    ),
    AfterValidator(_real_secret),
]


class WebhookEndpointCreate(BaseModel):
    url: WebhookUrl
    description: Description = ""
    event_types: EventTypes = []
    secret: Secret | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "https://hooks.example.com/shop",
                    "description": "ERP sync",
                    "event_types": ["sale.", "stock.moved"],
                }
            ]
        }
    )


class WebhookEndpointUpdate(BaseModel):
    """Only the fields sent change. ``is_active: true`` re-enables an endpoint (also one
    disabled automatically): its waiting deliveries get a fresh retry window."""

    url: WebhookUrl | None = None
    description: Description | None = None
    event_types: EventTypes | None = None
    is_active: Annotated[bool | None, Field(strict=True)] = None  # JSON only: 0 is not false

    model_config = ConfigDict(json_schema_extra={"examples": [{"is_active": True}]})

    @field_validator("url", "description", "event_types", "is_active")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null; omit the field to leave it unchanged")
        return value


class WebhookSecretRotate(BaseModel):
    secret: Secret | None = None


class WebhookEndpointRead(BaseModel):
    """An endpoint, its filters and its health (the secret is shown only when it is set)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    url: str
    description: str
    event_types: list[str]
    is_active: bool
    disabled_at: Annotated[datetime | None, Field(description="When it was last disabled")]
    disabled_reason: Annotated[
        str | None, Field(description="Who or what disabled it, and why (failures included)")
    ]
    failing_since: Annotated[
        datetime | None,
        Field(description="Its deliveries fail since then with none succeeding; null: healthy"),
    ]
    consecutive_failures: int
    previous_secret_expires_at: Annotated[
        datetime | None,
        Field(description="After a rotation, the old secret also signs until then"),
    ]
    created_at: datetime
    updated_at: datetime


class WebhookEndpointWithSecret(WebhookEndpointRead):
    """An endpoint with its signing secret: shown on creation and rotation only."""

    secret: Annotated[
        str,
        Field(
            description="Verify each message with it (see the Webhook-Signature header); it "
            "is not shown again",
            examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        ),
    ]


class WebhookAttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempted_at: datetime
    status_code: Annotated[int | None, Field(description="The receiver's status; null: none")]
    error: Annotated[str | None, Field(description="Why it failed; null when it succeeded")]
    latency_ms: int


class WebhookDeliveryRead(BaseModel):
    """One event sent to one endpoint: its state, its tries and the next one."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    endpoint_id: int
    message_id: Annotated[str, Field(description="The Webhook-Id header and the body's id")]
    event_type: str
    source: Annotated[str, Field(description="products, sales (their outbox) or ping")]
    event_id: Annotated[int | None, Field(description="The event's id in its outbox")]
    status: WebhookDeliveryStatus
    attempts: int
    next_attempt_at: Annotated[
        datetime | None, Field(description="When it is tried next; null once finished")
    ]
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_latency_ms: int | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: Annotated[list[WebhookAttemptRead], Field(description="Every try, oldest first")]

    @classmethod
    def build(cls, delivery: WebhookDelivery, attempts: Sequence[WebhookAttempt]) -> Self:
        fields = {
            name: getattr(delivery, name) for name in cls.model_fields if name != "attempt_log"
        }
        log = [WebhookAttemptRead.model_validate(attempt) for attempt in attempts]
        return cls.model_validate({**fields, "attempt_log": log})


class WebhookDeliveryDetail(WebhookDeliveryRead):
    """A delivery with the body it sends."""

    payload: Annotated[
        dict[str, JsonValue],
        Field(description='The JSON body: {"id", "type", "occurred_at", "source", "data"}'),
    ]


class DeliveryFilters(BaseModel):
    status: list[WebhookDeliveryStatus] | None = Field(
        default=None, description="Only these statuses; repeat for any of several"
    )
