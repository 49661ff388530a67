"""Import routes: upload a CSV/TSV file (or an .xlsx workbook) of products or of stock counts,
dry run or for real."""

from collections.abc import Callable
from dataclasses import replace
from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, Query, Request, UploadFile
from fastapi.responses import JSONResponse

from common.auth.dependencies import ManagerUser
from common.db import SessionDep
from common.delimited import Encoding, TableFormat
from common.errors import error_responses
from common.import_jobs import BACKGROUND_ANSWER, Background, JobKind, run_or_start
from common.imports import ImportReport
from products_service.imports import service

router = APIRouter(prefix="/imports", tags=["imports"], responses=error_responses(401, 403))


# What each import runs, from its options alone: in the request, or as a job (started again
# from them if its process dies).
def _kind(run: Callable[..., ImportReport]) -> JobKind[service.ImportOptions]:
    """A products_service import (``import_products``, ``import_stock_counts``) as a job."""
    return JobKind(
        service.ImportOptions,
        lambda _app, options: (
            lambda db, binary, progress: run(
                session=db, binary=binary, options=options, progress=progress
            )
        ),
    )


JOB_KINDS = {
    "products": _kind(service.import_products),
    "stock_counts": _kind(service.import_stock_counts),
}

IMPORT_ERRORS = {
    **BACKGROUND_ANSWER,
    413: {"description": "The file is larger than SHOP_IMPORT_MAX_BYTES"},
    **error_responses(409, 422, 503),
}
DryRun = Annotated[
    bool,
    Query(description="Check every row and report what would change; write nothing"),
]
FileEncoding = Annotated[
    Encoding, Query(description="utf-8 (a byte order mark is fine) or latin-1")
]
FileFormat = Annotated[
    TableFormat | None,
    Query(
        alias="format",
        description="csv or tsv; default: tsv for .tsv/.txt files, else csv (an .xlsx "
        "workbook is known by its content)",
    ),
]


def _options(
    file: UploadFile,
    principal: ManagerUser,
    *,
    dry_run: bool,
    encoding: Encoding,
    table_format: TableFormat | None,
) -> service.ImportOptions:
    return service.ImportOptions(
        file_name=PurePath(file.filename).name if file.filename else None,
        encoding=encoding,
        table_format=table_format,
        dry_run=dry_run,
        actor_id=principal.id,
        actor_email=principal.user.email,
    )


@router.post(
    "/products",
    summary="Import products from a CSV/TSV file or an .xlsx workbook",
    operation_id="importProducts",
    response_model=ImportReport,
    responses=IMPORT_ERRORS,
)
def import_products(
    request: Request,
    file: UploadFile,
    principal: ManagerUser,
    session: SessionDep,
    dry_run: DryRun = False,
    create_categories: Annotated[
        bool, Query(description="Create category paths that do not exist yet")
    ] = False,
    encoding: FileEncoding = Encoding.UTF8,
    table_format: FileFormat = None,
    background: Background = False,
) -> ImportReport | JSONResponse:
    """Upsert products by SKU: columns `sku` (required), `name`, `description`, `category`
    (a path such as `Electronics/Audio`), `price`, `cost_price` (or `cost`),
    `low_stock_threshold`, `status`; a new product needs name, price and cost_price, an
    empty cell leaves a field as it is.

    All or nothing: a file with any bad row is refused (422 `import_rejected`, the report
    listing each problem by row, column and value) and nothing is written. Importing the
    same file again changes nothing. Manager or admin."""
    options = replace(
        _options(file, principal, dry_run=dry_run, encoding=encoding, table_format=table_format),
        create_categories=create_categories,
    )
    return run_or_start(
        request,
        background=background,
        session=session,
        upload=file,
        service="products",
        kind="products",
        options=options,
    )


@router.post(
    "/stock-counts",
    summary="Import a stock count from a CSV/TSV file or an .xlsx workbook",
    operation_id="importStockCounts",
    response_model=ImportReport,
    responses=IMPORT_ERRORS,
)
def import_stock_counts(
    request: Request,
    file: UploadFile,
    principal: ManagerUser,
    session: SessionDep,
    dry_run: DryRun = False,
    reason: Annotated[
        str, Query(min_length=1, max_length=500, description="The ledger movements' reason")
    ] = service.DEFAULT_COUNT_REASON,
    encoding: FileEncoding = Encoding.UTF8,
    table_format: FileFormat = None,
    background: Background = False,
) -> ImportReport | JSONResponse:
    """Set each counted shelf's on-hand stock: columns `sku`, `warehouse` (its code) and
    `counted_quantity`. Each difference is a `count_correction` in the ledger with this
    reason and the file's name as reference; a shelf that already matches records nothing,
    so the same count imported twice changes nothing. All or nothing, like the products
    import. Manager or admin."""
    options = replace(
        _options(file, principal, dry_run=dry_run, encoding=encoding, table_format=table_format),
        reason=reason,
    )
    return run_or_start(
        request,
        background=background,
        session=session,
        upload=file,
        service="products",
        kind="stock_counts",
        options=options,
    )
