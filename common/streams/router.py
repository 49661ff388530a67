"""The stream-token route, and what each service's stream route shares (its answer and its
OpenAPI description). The stream routes themselves live with each service, which knows its
filters: products_service/streams/router.py, sales_service/streams/router.py."""

from collections.abc import Callable, Hashable
from typing import Any, ParamSpec, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from common.auth.dependencies import CurrentUser, SettingsDep
from common.errors import ErrorBody, error_responses
from common.settings import CommonSettings
from common.streams import service
from common.streams.feed import EventFeed
from common.streams.schemas import StreamQuery, StreamTokenRead
from common.streams.tokens import create_stream_token

router = APIRouter(prefix="/events", tags=["events"])
P = ParamSpec("P")
R = TypeVar("R")


class EventStreamResponse(StreamingResponse):
    """A stream of Server-Sent Events (made by common.streams.service.messages).

    Not FastAPI's EventSourceResponse: as a route's response class that one makes FastAPI
    treat the route as a generator of events, and these routes return a response."""

    media_type = "text/event-stream"


ERROR_BODY = f"#/components/schemas/{ErrorBody.__name__}"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
STREAM_EXAMPLE = (
    "retry: 3000\n\n"
    "id: 1042\nevent: sale.recorded\n"
    'data: {"id":1042,"type":"sale.recorded","subject_id":311,'
    '"occurred_at":"2026-12-02T09:15:04.120000Z","payload":{"sale_id":311,"channel_id":2,'
    '"total":"39.80","units":2,"lines_after":[{"product_id":7,"category_id":3,"units":2,'
    '"revenue":"39.80","cost":"14.50"}],"...":"..."}}\n\n'
    ": ping\n\n"
)
STREAM_DESCRIPTION = (
    "\n\nAuthenticate with `Authorization: Bearer <access token>`, or, where no header can be "
    "set (a browser's `EventSource`), with `stream_token` from `POST "
    "/api/v1/events/stream-token` (valid a minute, for opening streams only; the user is "
    "checked once, at connect). Each event is `id:` its outbox id, `event:` its type and "
    "`data:` JSON `{id, type, subject_id, occurred_at, payload}`.\n\n"
    "Resume with the `Last-Event-ID` header (or `last_event_id`): every later event, in "
    "order, none twice. An id older than the oldest event kept, or newer than the newest, "
    "gets `event: reset` (JSON data: `reason`, `detail`, `newest_id`) and the stream goes on "
    "live; without one the stream starts live. A `: ping` comment comes after "
    "`SHOP_STREAM_HEARTBEAT_SECONDS` without a message; `retry:` says how long to wait "
    "before reconnecting. A client too slow to take its events is disconnected: it "
    "reconnects with Last-Event-ID. Filters of different kinds combine with AND, the values "
    "of one with OR; an id filter keeps only the events naming one of its ids."
)


def with_stream_description(route: Callable[P, R]) -> Callable[P, R]:
    """Append what every stream does to the route's docstring (its OpenAPI description)."""
    route.__doc__ = (route.__doc__ or "") + STREAM_DESCRIPTION
    return route


def stream_responses() -> dict[int | str, dict[str, Any]]:
    """The stream route's answers, for OpenAPI."""
    return {
        200: {
            "description": "A stream of Server-Sent Events, open until the client leaves",
            "content": {
                "text/event-stream": {"schema": {"type": "string"}, "example": STREAM_EXAMPLE}
            },
        },
        # As JSON, not as the stream: FastAPI would give a model the route's media type.
        **{
            status: {
                "description": answer["description"],
                "content": {"application/json": {"schema": {"$ref": ERROR_BODY}}},
            }
            for status, answer in error_responses(401, 422, 503).items()
        },
    }


@router.post(
    "/stream-token",
    summary="Get a short-lived token that opens the event stream",
    operation_id="createStreamToken",
    responses=error_responses(401),
)
async def stream_token(
    principal: CurrentUser, request: Request, settings: SettingsDep
) -> StreamTokenRead:
    """A token for `GET /api/v1/events/stream?stream_token=...`, valid for
    `SHOP_STREAM_TOKEN_SECONDS` (60) seconds and for this service's stream only; it is no
    access token. Any signed-in user may have one."""
    feed: EventFeed = request.app.state.event_feed
    issued = create_stream_token(claims=principal.claims, service=feed.service, settings=settings)
    stream_path = request.url.path.rsplit("/", 1)[0] + "/stream"
    return StreamTokenRead(
        stream_token=issued.token,
        expires_at=issued.expires_at,
        expires_in=settings.stream_token_seconds,
        stream_url=f"{stream_path}?stream_token={issued.token}",
    )


async def stream_answer(
    request: Request,
    *,
    query: StreamQuery,
    ids: dict[str, list[int]],
    bearer: str | None,
    last_event_id: str | None,
    derived_key: Callable[[service.Opening], Hashable | None] | None = None,
) -> EventStreamResponse:
    """Open the stream (401/422/503 before anything is streamed) and answer with it."""
    feed: EventFeed = request.app.state.event_feed
    settings: CommonSettings = request.app.state.settings
    claims = service.caller_claims(
        bearer=bearer, stream_token=query.stream_token, service=feed.service, settings=settings
    )
    after = service.parse_event_id(last_event_id, query.last_event_id)
    opening = await service.open_stream(
        feed=feed,
        sessions=request.app.state.sessionmaker,
        claims=claims,
        filters=service.StreamFilters(types=query.type, ids={k: v for k, v in ids.items() if v}),
        after=after,
    )
    body = service.messages(
        feed=feed,
        opening=opening,
        derived_key=derived_key(opening) if derived_key is not None else None,
    )
    return EventStreamResponse(body, headers=STREAM_HEADERS)
