"""Export routes: the catalog, stock levels per warehouse and the stock ledger as CSV."""

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from common.auth.dependencies import CurrentUser
from common.db import SessionDep
from common.delimited import csv_download
from common.errors import error_responses
from common.fields import PositiveId
from common.models import MovementType, Warehouse
from common.query import require_known_ids
from common.time_window import TimeWindowDep
from products_service.exports import service

router = APIRouter(prefix="/exports", tags=["exports"], responses=error_responses(401, 422))

CSV_ANSWER = {"content": {"text/csv": {}}, "description": "A CSV file, streamed"}


@router.get(
    "/products.csv",
    summary="Export products as CSV",
    operation_id="exportProducts",
    response_class=StreamingResponse,
    responses={200: CSV_ANSWER},
)
def export_products(
    request: Request,
    _user: CurrentUser,
    session: SessionDep,
    include_archived: Annotated[bool, Query(description="Also archived products")] = False,
) -> StreamingResponse:
    """The catalog by SKU in the products import's columns (the category as its path of
    names), so an edited export imports back as it is.

    Text cells a spreadsheet would run as a formula (starting with =, +, -, @, tab or
    carriage return) are written with a leading `'`."""
    chunks = service.products_csv(
        session=session, engine=request.app.state.engine, include_archived=include_archived
    )
    # The rows are read on a connection of their own while the response streams; end this
    # request's transaction first (on the embedded SQLite file it would hold the write lock).
    session.commit()
    return csv_download(chunks, "products.csv")


@router.get(
    "/stock-levels.csv",
    summary="Export stock levels per warehouse as CSV",
    operation_id="exportStockLevels",
    response_class=StreamingResponse,
    responses={200: CSV_ANSWER},
)
def export_stock_levels(
    request: Request,
    _user: CurrentUser,
    session: SessionDep,
    warehouse_id: Annotated[
        list[PositiveId] | None, Query(description="Only these warehouses; repeat for several")
    ] = None,
) -> StreamingResponse:
    """One row per product and warehouse: sku, name, warehouse (code), on_hand, reserved,
    available, updated_at.

    Text cells a spreadsheet would run as a formula (starting with =, +, -, @, tab or
    carriage return) are written with a leading `'`."""
    require_known_ids(session, Warehouse, warehouse_id or [], "warehouse")
    session.commit()
    return csv_download(
        service.levels_csv(engine=request.app.state.engine, warehouse_ids=warehouse_id or []),
        "stock-levels.csv",
    )


@router.get(
    "/stock-ledger.csv",
    summary="Export the stock ledger for a time range as CSV",
    operation_id="exportStockLedger",
    response_class=StreamingResponse,
    responses={200: CSV_ANSWER},
)
def export_stock_ledger(
    request: Request,
    _user: CurrentUser,
    session: SessionDep,
    window: TimeWindowDep,
    warehouse_id: Annotated[
        list[PositiveId] | None, Query(description="Only these warehouses; repeat for several")
    ] = None,
    movement_types: Annotated[
        list[MovementType] | None, Query(alias="type", description="Repeat for several")
    ] = None,
) -> StreamingResponse:
    """Every movement in the range, oldest first: id, created_at, sku, warehouse,
    movement_type, quantity (signed), on_hand_after, reason, reference, actor_email.

    Text cells a spreadsheet would run as a formula (starting with =, +, -, @, tab or
    carriage return) are written with a leading `'`."""
    require_known_ids(session, Warehouse, warehouse_id or [], "warehouse")
    session.commit()
    return csv_download(
        service.ledger_csv(
            engine=request.app.state.engine,
            created_from=window.start,
            created_to=window.end,
            warehouse_ids=warehouse_id or [],
            types=movement_types or [],
        ),
        "stock-ledger.csv",
    )
