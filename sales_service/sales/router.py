"""Sales: record, read, list and export (refunds and cancellations: sales_service/refunds)."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import Field
from sqlalchemy.orm import Session

from common.auth.dependencies import CurrentUser, ManagerClaims
from common.auth.security import TokenClaims
from common.db import SessionDep
from common.delimited import csv_chunks, csv_download, stream_rows
from common.errors import error_responses
from common.idempotency import IdempotencyKey
from common.models import Sale, SaleStatus, StockSync
from common.observability import current_request_id
from common.pagination import Page, PageDep, parse_sort, sort_pattern
from common.query import category_paths
from common.time_window import TimeWindowDep
from sales_service.clients.products import ProductsClient, ProductsClientDep
from sales_service.sales import repository, service
from sales_service.sales.schemas import SaleCreate, SaleRead

router = APIRouter(prefix="/sales", tags=["sales"], responses=error_responses(401))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Record a sale",
    responses=error_responses(403, 409, 422, 503),
)
async def record_sale(
    body: SaleCreate,
    response: Response,
    claims: ManagerClaims,
    session: SessionDep,
    products: ProductsClientDep,
    idempotency_key: IdempotencyKey = None,
) -> SaleRead:
    """Take the stock of every line in products_service (all or none), then record the sale.

    Shortage: 409 with what is available per line, and nothing is recorded. products_service
    unreachable: 503 naming it, and nothing is recorded or held. Send an `Idempotency-Key` to
    make a retry return the first sale instead of recording a second one. Manager or admin.
    """
    # One worker-thread hop for all of it: FastAPI runs a plain `def` route on a worker
    # thread, then checks its answer on another hop (a sale's answer, checked here).
    return await run_in_threadpool(
        _record_sale, body, response, claims, session, products, idempotency_key
    )


def _record_sale(
    body: SaleCreate,
    response: Response,
    claims: TokenClaims,
    session: Session,
    products: ProductsClient,
    idempotency_key: str | None,
) -> SaleRead:
    recorded = service.record_sale(
        session=session,
        data=body,
        key=idempotency_key,
        claims=claims,
        request_id=current_request_id(),
        products_client=products,
    )
    if not recorded.created:
        response.headers["Idempotent-Replayed"] = "true"
    if claims.email is None:  # a token signed before tokens carried the email
        return service.read_sale(session, recorded.sale, recorded.channel)
    # No read: all of it is at hand, the caller's email in their token (an idempotency key is
    # the caller's own, so a replayed sale is theirs too).
    return service.sale_read(recorded.sale, recorded.channel, claims.email)


def sale_filters(
    session: SessionDep,
    window: TimeWindowDep,
    product_id: Annotated[
        list[int] | None,
        Query(description="Sales with a line of this product; repeat for any of several"),
    ] = None,
    category_id: Annotated[
        list[Annotated[int, Field(gt=0)]] | None,
        Query(
            description="Sales with a line in this category or any subcategory; repeat for "
            "any of several"
        ),
    ] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            description="A sale number (S-00000042), a marketplace order id, or a product's "
            "SKU (sales with a line of it); exact",
        ),
    ] = None,
    channel_id: Annotated[list[int] | None, Query(description="Repeat for any of several")] = None,
    statuses: Annotated[
        list[SaleStatus] | None, Query(alias="status", description="Repeat for any of several")
    ] = None,
    stock_syncs: Annotated[
        list[StockSync] | None,
        Query(
            alias="stock_sync",
            description=(
                "Whether the sale's stock was taken in products_service: `done`; `pending` "
                "(the background sync is still trying); `failed` (refused for good: the "
                "sale stands but its stock was never taken, someone has to settle it)"
            ),
        ),
    ] = None,
) -> repository.SaleFilters:
    """The filters shared by the sales list and its CSV export (`from`/`to`: by sold_at)."""
    service.require_known(session, product_ids=product_id or (), channel_ids=channel_id or ())
    return repository.SaleFilters(
        sold_from=window.start,
        sold_to=window.end,
        product_ids=product_id or (),
        # a line's snapshot names its category as sold; the subtree is the tree as it is now
        category_paths=category_paths(session, category_id or ()),
        search=(q or "").strip() or None,
        channel_ids=channel_id or (),
        statuses=statuses or (),
        stock_syncs=stock_syncs or (),
    )


SaleFiltersDep = Annotated[repository.SaleFilters, Depends(sale_filters)]
SortParam = Annotated[
    str | None,
    Query(
        description="sold_at, total, number or created_at, '-' for descending; default -sold_at",
        json_schema_extra={"pattern": sort_pattern(repository.SALE_SORT)},
    ),
]
DEFAULT_SORT = "-sold_at"


def _order(sort: str | None) -> list[Any]:
    """The requested order, then the id in the first field's direction so pages are stable."""
    clauses = parse_sort(sort, repository.SALE_SORT, DEFAULT_SORT)
    descending = (sort or DEFAULT_SORT).strip().startswith("-")
    return [*clauses, Sale.id.desc() if descending else Sale.id.asc()]


@router.get("", summary="List sales", responses=error_responses(400, 422))
def list_sales(
    _user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    filters: SaleFiltersDep,
    sort: SortParam = None,
) -> Page[SaleRead]:
    """Sales with their lines, newest first, filtered by time, product, category, channel,
    status and stock sync (each repeatable filter matches any of its values; different filters all
    have to hold)."""
    return Page.of(
        service.list_sales(session=session, filters=filters, page=page, order_by=_order(sort))
    )


EXPORT_HEADER = (
    "number",
    "sold_at",
    "channel",
    "status",
    "line_no",
    "sku",
    "product_name",
    "category_id",
    "category_name",
    "quantity",
    "unit_price",
    "line_total",
    "refunded_quantity",
    "refunded_total",
)


@router.get(
    "/export.csv",
    summary="Export sales as CSV",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "One row per sale line"},
        **error_responses(400, 422),
    },
)
def export_sales(
    request: Request,
    _user: CurrentUser,
    session: SessionDep,
    filters: SaleFiltersDep,
    sort: SortParam = None,
) -> StreamingResponse:
    """The lines of every sale the same filters list, one CSV row each, streamed.

    Columns: number, sold_at (ISO 8601, UTC offset), channel (code), status, line_no, sku,
    product_name, category_id, category_name (as sold), quantity, unit_price, line_total,
    refunded_quantity, refunded_total; money as plain decimals; a text cell a spreadsheet
    would run as a formula (starting with =, +, -, @, tab or carriage return) gets a leading
    `'`. Rows are read through a server-side cursor, so any number of them streams without
    being held in memory.
    """
    stmt = repository.export_query(filters, _order(sort))
    # The rows are read by their own session while the response streams; end this request's
    # transaction first (on the embedded SQLite file it would hold the write lock).
    session.commit()
    chunks = csv_chunks(stream_rows(request.app.state.engine, stmt), EXPORT_HEADER)
    return csv_download(chunks, "sales.csv")


@router.get("/{sale_id}", summary="Get a sale", responses=error_responses(404))
def get_sale(sale_id: int, _user: CurrentUser, session: SessionDep) -> SaleRead:
    """One sale with its lines, snapshots, refunds so far and stock state."""
    return service.read_sale(session, service.get_sale(session=session, sale_id=sale_id))
