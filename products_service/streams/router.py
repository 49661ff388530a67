"""GET /api/v1/events/stream: products_service's events, live (common.streams)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import Field

from common.auth.dependencies import oauth2_scheme
from common.streams.router import (
    EventStreamResponse,
    stream_answer,
    stream_responses,
    with_stream_description,
)
from common.streams.schemas import MAX_VALUES, Id, StreamQuery

router = APIRouter(prefix="/events", tags=["events"])


class ProductsStreamQuery(StreamQuery):
    warehouse_id: Annotated[
        list[Id],
        Field(
            max_length=MAX_VALUES,
            description="Only events naming one of these warehouses (a stock movement's, "
            "a reservation line's); repeatable",
        ),
    ] = []


@router.get(
    "/stream",
    summary="Follow stock, transfer, reservation and catalog events live (SSE)",
    operation_id="streamEvents",
    response_class=EventStreamResponse,
    responses=stream_responses(),
)
@with_stream_description
async def stream_events(
    request: Request,
    query: Annotated[ProductsStreamQuery, Query()],
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", description="Resume after this event")
    ] = None,
) -> EventStreamResponse:
    """products_service's events as Server-Sent Events: `stock.moved` (every ledger row:
    receipts, sales, adjustments, transfers out and in), `stock.health_changed` (a product's
    stock crossed into low, critical or out, or back), `product.*` (created, updated with the
    fields `changed` such as a new price, archived, restored) and `reservation.*`."""
    return await stream_answer(
        request,
        query=query,
        ids={
            "product": query.product_id,
            "category": query.category_id,
            "warehouse": query.warehouse_id,
        },
        bearer=bearer,
        last_event_id=last_event_id,
    )
