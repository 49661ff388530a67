"""Import route: upload a marketplace's order report (or a generic CSV) as sales."""

from pathlib import PurePath
from typing import IO, Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, FastAPI, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from common.auth.dependencies import ManagerUser
from common.db import SessionDep
from common.delimited import Encoding, TableFormat
from common.errors import Unprocessable, error_responses
from common.import_jobs import BACKGROUND_ANSWER, Background, JobKind, RunImport, run_or_start
from common.imports import ImportReport, Progress
from common.observability import current_request_id
from sales_service.imports import service

router = APIRouter(prefix="/imports", tags=["imports"], responses=error_responses(401, 403))


def _run_orders(app: FastAPI, options: service.OrderImportOptions) -> RunImport:
    """The orders import with these options; orders that take stock take it through the
    app's client of products_service, under the request id of the run (the upload's, for a
    job it started)."""

    def run(db: Session, binary: IO[bytes], progress: Progress | None) -> ImportReport:
        stock = (
            service.TakeStock(app.state.products_client, request_id=current_request_id())
            if options.take_stock
            else None
        )
        return service.import_orders(
            session=db, binary=binary, options=options, take_stock=stock, progress=progress
        )

    return run


# What each import runs, from its options alone: in the request, or as a job (started again
# from them if its process dies).
JOB_KINDS = {"orders": JobKind(service.OrderImportOptions, _run_orders)}


def _mapping(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        header, sep, name = pair.rpartition("=")
        if not sep or not header.strip():
            raise Unprocessable(f"map: {pair!r} is not 'File header=field'", field="query.map")
        mapping[header.strip()] = name.strip()
    return mapping


@router.post(
    "/orders",
    summary="Import orders from a marketplace report, a CSV or an .xlsx workbook",
    operation_id="importOrders",
    response_model=ImportReport,
    responses={
        **BACKGROUND_ANSWER,
        413: {"description": "The file is larger than SHOP_IMPORT_MAX_BYTES"},
        **error_responses(409, 422, 503),
    },
)
def import_orders(
    request: Request,
    file: UploadFile,
    principal: ManagerUser,
    session: SessionDep,
    profile: Annotated[
        service.OrderProfile,
        Query(description="amazon (order report, tab-separated), walmart, or generic"),
    ] = service.OrderProfile.GENERIC,
    channel: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=40,
            description="The channel's code; default: the profile's (amazon, walmart)",
        ),
    ] = None,
    timezone: Annotated[
        str | None,
        Query(description="IANA zone of dates without an offset; default the store's"),
    ] = None,
    column_map: Annotated[
        list[str] | None,
        Query(
            alias="map",
            description="Generic files: `File header=field` (order_id, sold_at, sku, "
            "quantity, price, status); repeat for each",
            examples=["Order ID=order_id"],
        ),
    ] = None,
    cancelled: Annotated[
        Literal["skip", "import"],
        Query(
            description="Cancelled orders: skip them, or import them as sales cancelled at "
            "once (no revenue, no stock; a missing price is 0.00)"
        ),
    ] = "skip",
    take_stock: Annotated[
        bool,
        Query(
            description="Today's orders: each takes its stock in products_service as a sale "
            "does, one by one (the report says which landed); default: history, no stock"
        ),
    ] = False,
    dry_run: Annotated[
        bool, Query(description="Check every row and report what would change; write nothing")
    ] = False,
    encoding: Annotated[
        Encoding, Query(description="utf-8 (a byte order mark is fine) or latin-1")
    ] = Encoding.UTF8,
    table_format: Annotated[
        TableFormat | None,
        Query(
            alias="format",
            description="csv or tsv; default the profile's (an .xlsx workbook is known by its "
            "content)",
        ),
    ] = None,
    background: Background = False,
) -> ImportReport | JSONResponse:
    """Each order of the file becomes a sale of the channel, keyed by the marketplace's
    order id: importing the file again, or a newer export that overlaps it, adds nothing
    twice. Cancelled orders are skipped, or imported as cancelled sales (`cancelled=import`);
    Amazon's pending ones are skipped. A file with any bad row
    is refused (422 `import_rejected` with the report) and nothing is written. By default
    the orders are history and take no stock, and the file lands whole or not at all; with
    `take_stock=true` each order takes its stock as a sale does, one by one, and an order
    short of stock is reported (`partial`) while the others land. Manager or admin."""
    zone = timezone or request.app.state.settings.store_timezone
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Unprocessable(f"Unknown IANA timezone {zone!r}", field="query.timezone") from exc
    options = service.OrderImportOptions(
        profile=profile,
        timezone=zone,
        channel_code=channel,
        column_map=_mapping(column_map or []),
        file_name=PurePath(file.filename).name if file.filename else None,
        encoding=encoding,
        table_format=table_format,
        dry_run=dry_run,
        actor_id=principal.id,
        cancelled=cancelled,
        take_stock=take_stock,
    )
    return run_or_start(
        request,
        background=background,
        session=session,
        upload=file,
        service="sales",
        kind="orders",
        options=options,
    )
