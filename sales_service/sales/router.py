"""Sales: record, read, list and export; cancel and refund."""

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from common.auth.dependencies import CurrentUser, ManagerUser, oauth2_scheme
from common.db import SessionDep
from common.errors import error_responses
from common.idempotency import IdempotencyKey
from common.models import Sale, SalesChannel
from common.observability import current_request_id
from sales_service.clients.products import ProductsClientDep
from sales_service.sales import repository, service
from sales_service.sales.schemas import ChannelRef, SaleCreate, SaleRead

router = APIRouter(prefix="/sales", tags=["sales"], responses=error_responses(401))

BearerToken = Annotated[str | None, Depends(oauth2_scheme)]


def sale_read(sale: Sale, channel: SalesChannel) -> SaleRead:
    return SaleRead.model_validate(
        {
            **{c: getattr(sale, c) for c in SaleRead.model_fields if hasattr(sale, c)},
            "channel": ChannelRef.model_validate(channel),
            "net_total": sale.total - sale.refunded_total,
            "lines": sale.lines,
        }
    )


def read_sale(session: SessionDep, sale: Sale) -> SaleRead:
    channel = repository.channels_by_id(session, [sale.channel_id])[sale.channel_id]
    return sale_read(sale, channel)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Record a sale",
    responses=error_responses(403, 409, 422, 503),
)
def record_sale(
    body: SaleCreate,
    response: Response,
    principal: ManagerUser,
    token: BearerToken,
    session: SessionDep,
    products: ProductsClientDep,
    idempotency_key: IdempotencyKey = None,
) -> SaleRead:
    """Reserve stock for every line in products_service, record the sale, then commit the stock.

    Shortage: 409 with what is available per line, and nothing is recorded. products_service
    unreachable: 503 naming it, and nothing is recorded. Send an `Idempotency-Key` to make a
    retry return the first sale instead of recording a second one.
    """
    sale, created = service.record_sale(
        session=session,
        data=body,
        key=idempotency_key,
        caller=service.Caller(
            user_id=principal.id, token=token or "", request_id=current_request_id()
        ),
        products_client=products,
    )
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return read_sale(session, sale)


@router.get("/{sale_id}", summary="Get a sale", responses=error_responses(404))
def get_sale(sale_id: int, _user: CurrentUser, session: SessionDep) -> SaleRead:
    """One sale with its lines, snapshots, refunds so far and stock state."""
    return read_sale(session, service.get_sale(session=session, sale_id=sale_id))
