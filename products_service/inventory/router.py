"""Inventory routes: stock operations, transfers, levels, the ledger, low stock and the check.

Every stock-changing POST takes an optional ``Idempotency-Key`` header: a retry with the
same key and body gets the first answer (``Idempotent-Replayed: true``) and changes nothing.
"""

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from common.auth.dependencies import CurrentUser, ManagerUser
from common.db import SessionDep, snapshot_session
from common.errors import error_responses
from common.fields import Instant, PositiveId
from common.idempotency import IdempotencyKey, claim, remember
from common.models import MovementType, TransferStatus
from common.pagination import Page, PageDep, parse_sort, sort_pattern
from common.time_window import TimeWindowDep
from products_service.inventory import repository, service
from products_service.inventory.schemas import (
    AdjustmentCreate,
    CountCreate,
    DamageCreate,
    LedgerCheckRead,
    LowStockItem,
    MovementRead,
    ReceiptCreate,
    ReturnCreate,
    StockChangeRead,
    StockLevelListRead,
    TransferCreate,
    TransferRead,
)

# A filter on ids or a status may be repeated: it matches any of the values given.
ANY_OF = "Repeat for any of several"

router = APIRouter(prefix="/inventory", tags=["inventory"], responses=error_responses(401))

WRITE_ERRORS = error_responses(403, 404, 409, 422, 503)
Answer = TypeVar("Answer", bound=BaseModel)


def _once(
    *,
    session: Session,
    response: Response,
    key: str | None,
    user_id: int,
    scope: str,
    payload: Any,
    work: Callable[[], tuple[int, Answer]],
) -> Answer | JSONResponse:
    """Do the work once per Idempotency-Key and user (keys are the caller's own: another
    user's same key is another request); a retry replays the stored first answer."""
    scope = f"{scope}:user-{user_id}"
    if key is not None:
        replay = claim(session, scope=scope, key=key, payload=payload)
        if replay is not None:
            return replay.response()
    status_code, answer = work()
    response.status_code = status_code
    if key is not None:
        remember(session, scope=scope, key=key, status_code=status_code, body=answer)
    return answer


def _created(answer: Answer) -> tuple[int, Answer]:
    return status.HTTP_201_CREATED, answer


# --- stock operations ------------------------------------------------------------------


@router.post(
    "/receipts",
    status_code=status.HTTP_201_CREATED,
    response_model=StockChangeRead,
    summary="Receive stock",
    responses=WRITE_ERRORS,
)
def receive_stock(
    body: ReceiptCreate,
    principal: ManagerUser,
    session: SessionDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> StockChangeRead | JSONResponse:
    """Add arriving stock (ledger `receipt`); 409 for an archived product or inactive warehouse."""
    return _once(
        session=session,
        response=response,
        key=idempotency_key,
        user_id=principal.id,
        scope="inventory.receipt",
        payload=body,
        work=lambda: _created(service.receive(session=session, data=body, actor_id=principal.id)),
    )


@router.post(
    "/adjustments",
    status_code=status.HTTP_201_CREATED,
    response_model=StockChangeRead,
    summary="Adjust stock by a signed quantity",
    responses=WRITE_ERRORS,
)
def adjust_stock(
    body: AdjustmentCreate,
    principal: ManagerUser,
    session: SessionDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> StockChangeRead | JSONResponse:
    """Correct on-hand stock with a reason (ledger `adjustment`); 409 below zero or reserved."""
    return _once(
        session=session,
        response=response,
        key=idempotency_key,
        user_id=principal.id,
        scope="inventory.adjustment",
        payload=body,
        work=lambda: _created(service.adjust(session=session, data=body, actor_id=principal.id)),
    )


@router.post(
    "/counts",
    status_code=status.HTTP_201_CREATED,
    response_model=StockChangeRead,
    summary="Record a stock count",
    responses={
        200: {"description": "The count matched on-hand stock; nothing was recorded"},
        **WRITE_ERRORS,
    },
)
def count_stock(
    body: CountCreate,
    principal: ManagerUser,
    session: SessionDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> StockChangeRead | JSONResponse:
    """Set on-hand to the counted quantity (ledger `count_correction` of the difference)."""

    def work() -> tuple[int, StockChangeRead]:
        answer = service.count(session=session, data=body, actor_id=principal.id)
        return (status.HTTP_201_CREATED if answer.recorded else status.HTTP_200_OK), answer

    return _once(
        session=session,
        response=response,
        key=idempotency_key,
        user_id=principal.id,
        scope="inventory.count",
        payload=body,
        work=work,
    )


@router.post(
    "/damages",
    status_code=status.HTTP_201_CREATED,
    response_model=StockChangeRead,
    summary="Write off damaged stock",
    responses=WRITE_ERRORS,
)
def damage_stock(
    body: DamageCreate,
    principal: ManagerUser,
    session: SessionDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> StockChangeRead | JSONResponse:
    """Remove damaged units with a reason (ledger `damage`); 409 beyond available stock."""
    return _once(
        session=session,
        response=response,
        key=idempotency_key,
        user_id=principal.id,
        scope="inventory.damage",
        payload=body,
        work=lambda: _created(service.damage(session=session, data=body, actor_id=principal.id)),
    )


@router.post(
    "/returns",
    status_code=status.HTTP_201_CREATED,
    response_model=StockChangeRead,
    summary="Take back returned stock",
    responses=WRITE_ERRORS,
)
def return_stock(
    body: ReturnCreate,
    principal: ManagerUser,
    session: SessionDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> StockChangeRead | JSONResponse:
    """Put customer-returned units back on the shelf (ledger `return`)."""
    return _once(
        session=session,
        response=response,
        key=idempotency_key,
        user_id=principal.id,
        scope="inventory.return",
        payload=body,
        work=lambda: _created(
            service.return_stock(session=session, data=body, actor_id=principal.id)
        ),
    )


# --- transfers -------------------------------------------------------------------------


@router.post(
    "/transfers",
    status_code=status.HTTP_201_CREATED,
    response_model=TransferRead,
    summary="Start a transfer between warehouses",
    responses=WRITE_ERRORS,
)
def create_transfer(
    body: TransferCreate,
    principal: ManagerUser,
    session: SessionDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> TransferRead | JSONResponse:
    """Take stock off the source now (`transfer_out`); it is in transit, sellable nowhere."""

    def work() -> tuple[int, TransferRead]:
        transfer = service.create_transfer(session=session, data=body, actor_id=principal.id)
        return status.HTTP_201_CREATED, service.transfer_read(session, transfer)

    return _once(
        session=session,
        response=response,
        key=idempotency_key,
        user_id=principal.id,
        scope="inventory.transfer",
        payload=body,
        work=work,
    )


@router.get("/transfers", summary="List transfers", responses=error_responses(400))
def list_transfers(
    _user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    status_filter: Annotated[
        list[TransferStatus] | None, Query(alias="status", description=ANY_OF)
    ] = None,
    product_id: Annotated[list[PositiveId] | None, Query(description=ANY_OF)] = None,
    warehouse_id: Annotated[
        list[PositiveId] | None,
        Query(description=f"Transfers from or to this warehouse; {ANY_OF.lower()}"),
    ] = None,
    sort: Annotated[
        str | None,
        Query(
            description="created_at or id; '-' for descending",
            json_schema_extra={"pattern": sort_pattern(repository.TRANSFER_SORT)},
        ),
    ] = None,
) -> Page[TransferRead]:
    """Transfers, newest first, filtered by status, product or warehouse."""
    order_by = parse_sort(sort, repository.TRANSFER_SORT, "-created_at,-id")
    found = service.list_transfers(
        session=session,
        statuses=status_filter or (),
        product_ids=product_id or (),
        warehouse_ids=warehouse_id or (),
        page=page,
        order_by=order_by,
    )
    return Page.of(found.with_rows(service.transfer_reads(session, found.rows)))


@router.get("/transfers/{transfer_id}", summary="Get a transfer", responses=error_responses(404))
def get_transfer(transfer_id: int, _user: CurrentUser, session: SessionDep) -> TransferRead:
    """One transfer by id."""
    return service.transfer_read(
        session, service.get_transfer(session=session, transfer_id=transfer_id)
    )


@router.post(
    "/transfers/{transfer_id}/complete",
    response_model=TransferRead,
    summary="Complete a transfer",
    responses=WRITE_ERRORS,
)
def complete_transfer(
    transfer_id: int,
    principal: ManagerUser,
    session: SessionDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> TransferRead | JSONResponse:
    """Put the stock on the destination shelf (`transfer_in`); 409 unless in transit."""

    def work() -> tuple[int, TransferRead]:
        transfer = service.complete_transfer(
            session=session, transfer_id=transfer_id, actor_id=principal.id
        )
        return status.HTTP_200_OK, service.transfer_read(session, transfer)

    return _once(
        session=session,
        response=response,
        key=idempotency_key,
        user_id=principal.id,
        scope="inventory.transfer.complete",
        payload={"transfer_id": transfer_id},
        work=work,
    )


@router.post(
    "/transfers/{transfer_id}/cancel",
    response_model=TransferRead,
    summary="Cancel a transfer",
    responses=WRITE_ERRORS,
)
def cancel_transfer(
    transfer_id: int,
    principal: ManagerUser,
    session: SessionDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> TransferRead | JSONResponse:
    """Return the stock to the source shelf (`transfer_in`, "transfer cancelled")."""

    def work() -> tuple[int, TransferRead]:
        transfer = service.cancel_transfer(
            session=session, transfer_id=transfer_id, actor_id=principal.id
        )
        return status.HTTP_200_OK, service.transfer_read(session, transfer)

    return _once(
        session=session,
        response=response,
        key=idempotency_key,
        user_id=principal.id,
        scope="inventory.transfer.cancel",
        payload={"transfer_id": transfer_id},
        work=work,
    )


# --- reads -----------------------------------------------------------------------------


@router.get("/levels", summary="List stock levels", responses=error_responses(400, 422))
def list_stock_levels(
    _user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    product_id: Annotated[list[PositiveId] | None, Query(description=ANY_OF)] = None,
    warehouse_id: Annotated[list[PositiveId] | None, Query(description=ANY_OF)] = None,
    as_of: Annotated[
        Instant | None,
        Query(
            description="The levels at this past moment (ISO 8601 with an offset, at most "
            "now), from the ledger: on_hand only, reserved and available null; pairs with "
            "no movement by then have no row",
            examples=["2026-03-01T00:00:00+01:00"],
        ),
    ] = None,
    sort: Annotated[
        str | None,
        Query(
            description="product_id, warehouse_id, on_hand, available (not with as_of) or "
            "updated_at",
            json_schema_extra={"pattern": sort_pattern(repository.LEVEL_SORT)},
        ),
    ] = None,
) -> Page[StockLevelListRead]:
    """On-hand, reserved and available stock per product and warehouse, now or at `as_of`."""
    if as_of is not None:
        return Page.of(
            service.list_levels_as_of(
                session=session,
                as_of=as_of,
                product_ids=product_id or (),
                warehouse_ids=warehouse_id or (),
                page=page,
                sort=sort,
            )
        )
    order_by = parse_sort(sort, repository.LEVEL_SORT, "product_id,warehouse_id")
    return Page.of(
        service.list_levels(
            session=session,
            product_ids=product_id or (),
            warehouse_ids=warehouse_id or (),
            page=page,
            order_by=order_by,
        )
    )


@router.get(
    "/products/{product_id}/movements",
    summary="A product's stock ledger",
    responses=error_responses(400, 404, 422),
)
def list_stock_movements(
    product_id: int,
    _user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    window: TimeWindowDep,
    warehouse_id: Annotated[list[PositiveId] | None, Query(description=ANY_OF)] = None,
    movement_types: Annotated[
        list[MovementType] | None,
        Query(alias="type", description="Repeat to match several types"),
    ] = None,
    sort: Annotated[
        str | None,
        Query(
            description="created_at or id; '-' for descending",
            json_schema_extra={"pattern": sort_pattern(repository.MOVEMENT_SORT)},
        ),
    ] = None,
) -> Page[MovementRead]:
    """Every movement of a product with the level it left and who made it; newest first."""
    order_by = parse_sort(sort, repository.MOVEMENT_SORT, "-created_at,-id")
    return Page.of(
        service.list_movements(
            session=session,
            product_id=product_id,
            warehouse_ids=warehouse_id or (),
            types=movement_types or [],
            created_from=window.start,
            created_to=window.end,
            page=page,
            order_by=order_by,
        )
    )


@router.get("/low-stock", summary="Products low on stock", responses=error_responses(400, 422))
def list_low_stock(
    _user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    threshold: Annotated[
        int | None,
        Query(ge=0, description="Use this threshold instead of each product's own"),
    ] = None,
    warehouse_id: Annotated[
        list[PositiveId] | None,
        Query(
            description="Only these warehouses' stock (repeat for several); default: all "
            "active warehouses"
        ),
    ] = None,
    category_id: Annotated[
        list[PositiveId] | None,
        Query(description="These categories and their subcategories; repeat for several"),
    ] = None,
    include_ok: Annotated[
        bool, Query(description="Also list products above their threshold (health 'ok')")
    ] = False,
    sort: Annotated[
        str | None,
        Query(
            description="health (out, critical, low, ok), available, on_hand, sku or name; "
            "default health,available (most urgent first)",
            json_schema_extra={"pattern": sort_pattern(repository.LOW_STOCK_SORT)},
        ),
    ] = None,
    window_days: Annotated[
        int,
        Query(
            ge=1,
            le=365,
            description="Days of sales measured for units_sold, days_of_cover and "
            "projected_stockout_date: this many UTC days, today included",
        ),
    ] = 30,
) -> Page[LowStockItem]:
    """Unarchived products whose available stock is at or below the threshold, most urgent first.

    Health: `out` (available <= 0), `critical` (<= half the threshold), `low` (<= threshold),
    `ok` (above it). Stock in transit counts nowhere. Each row gives the product's price, its
    own threshold, its category's full name and its stock per warehouse counted; the row and
    each warehouse say the net units sales took over the window (from the ledger), days of
    cover and projected stock-out date, defined as sales_service's inventory insight does.
    """
    return Page.of(
        service.list_low_stock(
            session=session,
            threshold=threshold,
            warehouse_ids=warehouse_id or (),
            category_ids=category_id or (),
            include_ok=include_ok,
            page=page,
            sort=sort,
            window_days=window_days,
        )
    )


@router.get("/ledger-check", summary="Prove the stock invariants")
def check_ledger(_user: CurrentUser, request: Request) -> LedgerCheckRead:
    """For every level: ledger sum == on_hand == last on_hand_after, reserved == active holds."""
    # Its own session: the check compares several queries, so it needs one snapshot (the
    # caller's lookup already ended its transaction, so nothing is held meanwhile).
    with snapshot_session(request.app.state.engine) as snapshot:
        return service.check_ledger(session=snapshot)
