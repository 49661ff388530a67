"""Stock reservations (holds): sales_service reserves, commits and releases with its service
token; no person can (a commit sells stock, and must name its sale). People may read them.

The request and response models are the shared contract in ``common.contracts``.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from common.auth.dependencies import PersonOrService, SalesServiceCaller
from common.contracts import (
    InsufficientStockBody,
    ReservationCommit,
    ReservationRead,
    ReserveRequest,
)
from common.db import SessionDep
from common.errors import ErrorBody, error_responses
from common.models import ReservationStatus
from common.pagination import Page, PageDep, parse_sort, sort_pattern
from common.settings import ProductsSettings
from products_service.reservations import service
from products_service.reservations.repository import RESERVATION_SORT

router = APIRouter(
    prefix="/reservations", tags=["reservations"], responses=error_responses(401, 403)
)


async def get_products_settings(request: Request) -> ProductsSettings:
    settings: ProductsSettings = request.app.state.settings
    return settings


ProductsSettingsDep = Annotated[ProductsSettings, Depends(get_products_settings)]

RESERVE_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": InsufficientStockBody | ErrorBody,
        "description": (
            "`insufficient_stock`: some line cannot be served, each short line listed with "
            "what is available (nothing was reserved); `invalid_state`: a product is not "
            "active or a warehouse is inactive, the lines named"
        ),
    }
}
COMMIT_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": InsufficientStockBody | ErrorBody,
        "description": (
            "`invalid_state`: the reservation was released; `insufficient_stock`: it expired "
            "and its stock is no longer free, each short line listed"
        ),
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Reserve stock for every line, all or nothing",
    responses={
        200: {"model": ReservationRead, "description": "A retry: the first reservation"},
        **error_responses(404, 422),
        **RESERVE_CONFLICT,
    },
)
def create_reservation(
    body: ReserveRequest,
    _service: SalesServiceCaller,
    session: SessionDep,
    settings: ProductsSettingsDep,
    response: Response,
) -> ReservationRead:
    """Hold stock until committed, released or expired (201). A retry with the same
    idempotency_key and body answers 200 with the first reservation and changes nothing;
    the same key with another body is a 422."""
    reservation, created = service.reserve_stock(
        session=session, data=body, actor_id=body.actor_id, settings=settings
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return ReservationRead.model_validate(reservation)


@router.get("", summary="List reservations", responses=error_responses(400, 422))
def list_reservations(
    _reader: PersonOrService,
    session: SessionDep,
    page: PageDep,
    status_filter: Annotated[
        list[ReservationStatus] | None,
        Query(alias="status", description="Only these statuses; repeat for any of several"),
    ] = None,
    reference: Annotated[str | None, Query(max_length=120)] = None,
    sort: Annotated[
        str | None,
        Query(
            description="Fields: id, created_at, expires_at; '-' for descending",
            json_schema_extra={"pattern": sort_pattern(RESERVATION_SORT)},
        ),
    ] = None,
) -> Page[ReservationRead]:
    """Reservations, newest first unless sorted otherwise."""
    found = service.list_reservations(
        session=session,
        statuses=status_filter or [],
        reference=reference,
        page=page,
        order_by=parse_sort(sort, RESERVATION_SORT, "-created_at"),
    )
    return Page.of(found.map(ReservationRead.model_validate))


@router.get("/{reservation_id}", summary="Get a reservation", responses=error_responses(404))
def get_reservation(
    reservation_id: int, _reader: PersonOrService, session: SessionDep
) -> ReservationRead:
    """One reservation with its lines (a request line split over warehouses appears per
    warehouse, with the same line_no)."""
    return ReservationRead.model_validate(
        service.get_reservation(session=session, reservation_id=reservation_id)
    )


@router.post(
    "/{reservation_id}/commit",
    summary="Commit a reservation: its stock is sold",
    responses={**error_responses(404), **COMMIT_CONFLICT},
)
def commit_reservation(
    reservation_id: int,
    body: ReservationCommit,
    _service: SalesServiceCaller,
    session: SessionDep,
) -> ReservationRead:
    """Write one `sale` ledger movement per line, referencing the named sale; committing
    again for the same sale answers the same and changes nothing (for another sale: 409
    `invalid_state`). A released reservation is a 409 `invalid_state`; an expired one is
    committed if its stock is still free, else 409 `insufficient_stock`."""
    return ReservationRead.model_validate(
        service.commit_reservation(
            session=session,
            reservation_id=reservation_id,
            sale_reference=body.sale_reference,
            actor_id=body.actor_id,
        )
    )


@router.post(
    "/{reservation_id}/release",
    summary="Release a reservation: its stock is free again",
    responses=error_responses(404, 409),
)
def release_reservation(
    reservation_id: int, _service: SalesServiceCaller, session: SessionDep
) -> ReservationRead:
    """Return the held stock; releasing a released or expired reservation changes nothing.
    A committed reservation cannot be released (409 `invalid_state`)."""
    return ReservationRead.model_validate(
        service.release_reservation(session=session, reservation_id=reservation_id)
    )
