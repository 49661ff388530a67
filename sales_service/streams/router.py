"""GET /api/v1/events/stream: sales_service's events, live, with today's figures."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import Field

from common.auth.dependencies import SettingsDep, oauth2_scheme
from common.streams.events import EventFilter, type_matches
from common.streams.router import (
    EventStreamResponse,
    stream_answer,
    stream_responses,
    with_stream_description,
)
from common.streams.schemas import MAX_VALUES, Id, StreamQuery
from common.streams.service import Opening
from common.time_window import resolve_zone
from sales_service.reports.planner import Filters
from sales_service.streams.today import TODAY_EVENT, TodayKey

router = APIRouter(prefix="/events", tags=["events"])


class SalesStreamQuery(StreamQuery):
    channel_id: Annotated[
        list[Id],
        Field(max_length=MAX_VALUES, description="Only sales of these channels; repeatable"),
    ] = []
    timezone: Annotated[
        str | None,
        Field(
            max_length=64,
            description="IANA zone whose today `sales.today` counts (default: the store's)",
            examples=["Europe/Berlin"],
        ),
    ] = None


@router.get(
    "/stream",
    summary="Follow sales, refunds, cancellations and today's figures live (SSE)",
    operation_id="streamEvents",
    response_class=EventStreamResponse,
    responses=stream_responses(),
)
@with_stream_description
async def stream_events(
    request: Request,
    settings: SettingsDep,
    query: Annotated[SalesStreamQuery, Query()],
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", description="Resume after this event")
    ] = None,
) -> EventStreamResponse:
    """sales_service's events as Server-Sent Events: `sale.recorded`, `sale.refunded` and
    `sale.cancelled` (each with the sale's lines before and after), and after them
    `sales.today`: today's revenue, orders, units and average order value so far in
    `timezone`, with the same product, category and channel filters (the revenue report's
    figures). `sales.today` has no `id:` (it is no outbox event); it also comes once at
    connect and at midnight. `type` selects it like any other type."""
    zone = resolve_zone(query.timezone or settings.store_timezone).key
    wants_today = type_matches(query.type, TODAY_EVENT)

    def today_key(opening: Opening) -> TodayKey | None:
        if not wants_today:
            return None
        return TodayKey(
            zone=zone,
            filters=Filters(
                product_ids=tuple(sorted(set(query.product_id))),
                category_ids=tuple(sorted(set(query.category_id))),
                channel_ids=tuple(sorted(set(query.channel_id))),
            ),
            changed_by=EventFilter(types=("sale.",), ids=opening.filter.ids),
        )

    return await stream_answer(
        request,
        query=query,
        ids={
            "product": query.product_id,
            "category": query.category_id,
            "channel": query.channel_id,
        },
        bearer=bearer,
        last_event_id=last_event_id,
        derived_key=today_key,
    )
