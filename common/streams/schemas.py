"""What the event-stream routes take and answer."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

MAX_ID = 2**63 - 1
MAX_VALUES = 100  # values of one repeatable filter

EventType = Annotated[
    str,
    Field(
        max_length=60,
        pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*\.?$",
        description="An event type (`sale.recorded`) or, ending in a dot, a prefix (`stock.`)",
    ),
]
Id = Annotated[int, Field(gt=0, le=MAX_ID)]
EventId = Annotated[
    str,
    Field(
        max_length=19,
        pattern=r"^[0-9]+$",
        description="An event id (`id:` of an event received before)",
    ),
]

# Fields of a query model: FastAPI lists each as a query parameter.
TypeParam = Annotated[
    list[EventType],
    Field(
        max_length=MAX_VALUES,
        description="Only these event types; repeatable. Ends with a dot: every type it "
        "begins (`sale.`, `stock.`)",
    ),
]
LastEventIdParam = Annotated[
    EventId | None,
    Field(
        description="Resume after this event, for a client that cannot send the "
        "`Last-Event-ID` header (which wins when both are given)",
    ),
]
StreamTokenParam = Annotated[
    str | None,
    Field(
        max_length=2000,
        description="A stream token from `POST /api/v1/events/stream-token`, for a client "
        "that cannot send `Authorization` (a browser's EventSource). Never the access token",
    ),
]


def ids_param(kind: str) -> object:
    return Field(
        max_length=MAX_VALUES,
        description=f"Only events naming one of these {kind} ids; repeatable",
    )


class StreamQuery(BaseModel):
    """What every event stream takes; a parameter it does not know is a 422 naming it."""

    model_config = ConfigDict(extra="forbid")

    type: TypeParam = []
    product_id: Annotated[list[Id], ids_param("product")] = []
    category_id: Annotated[
        list[Id],
        Field(
            max_length=MAX_VALUES,
            description="Only events naming one of these categories or their subcategories "
            "(a stock movement: its product's category); repeatable",
        ),
    ] = []
    last_event_id: LastEventIdParam = None
    stream_token: StreamTokenParam = None


class StreamTokenRead(BaseModel):
    """A short-lived token that opens this service's event stream (and nothing else)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "stream_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
                    "token_type": "stream",
                    "expires_at": "2026-12-02T10:01:00Z",
                    "expires_in": 60,
                    "stream_url": "/api/v1/events/stream?stream_token=eyJhbGciOi...",
                }
            ]
        }
    )

    stream_token: str
    token_type: str = "stream"  # noqa: S105 - a token kind, not a secret
    expires_at: datetime
    expires_in: Annotated[int, Field(description="Seconds it stays valid for opening a stream")]
    stream_url: Annotated[
        str, Field(description="The stream's path with this token, for `new EventSource(...)`")
    ]
