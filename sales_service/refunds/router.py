"""Refunds and cancellations: money back on the sale, stock back through products_service."""

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Response, status
from sqlalchemy.orm import Session

from common.actors import actor_emails
from common.auth.dependencies import CurrentUser, ManagerUser, Principal, oauth2_scheme
from common.db import SessionDep
from common.errors import error_responses
from common.idempotency import IdempotencyKey
from common.models import RefundKind, Sale, SaleRefund
from common.observability import current_request_id
from common.pagination import Page, PageDep
from sales_service.clients.products import ProductsClient, ProductsClientDep
from sales_service.refunds import service
from sales_service.refunds.schemas import CancelCreate, RefundCreate, RefundLineRead, RefundRead
from sales_service.sales.service import Caller

router = APIRouter(prefix="/sales", tags=["refunds"], responses=error_responses(401))

BearerToken = Annotated[str | None, Depends(oauth2_scheme)]
WRITE_ERRORS = error_responses(403, 404, 409, 422)


def refund_read(refund: SaleRefund, sale: Sale, actor_email: str | None) -> RefundRead:
    """The refund as the API shows it, its lines named as the sale names them."""
    sale_lines = {line.id: line for line in sale.lines}
    lines = [
        RefundLineRead(
            id=rl.id,
            sale_line_id=rl.sale_line_id,
            line_no=sale_lines[rl.sale_line_id].line_no,
            product_id=sale_lines[rl.sale_line_id].product_id,
            sku=sale_lines[rl.sale_line_id].sku,
            quantity=rl.quantity,
            amount=rl.amount,
            cost=rl.cost,
        )
        for rl in refund.lines
    ]
    return RefundRead(
        id=refund.id,
        sale_id=sale.id,
        sale_number=sale.number,
        kind=refund.kind,
        units=refund.units,
        amount=refund.amount,
        cost=sum((line.cost for line in lines), Decimal("0.00")),
        reason=refund.reason,
        stock_sync=refund.stock_sync,
        actor_id=refund.created_by_id,
        actor_email=actor_email,
        created_at=refund.created_at,
        lines=lines,
    )


def _refund(
    *,
    sale_id: int,
    kind: RefundKind,
    body: RefundCreate,
    payload: Any,
    principal: Principal,
    token: str | None,
    session: Session,
    products: ProductsClient,
    response: Response,
    key: str | None,
) -> RefundRead:
    outcome = service.refund_sale(
        session=session,
        sale_id=sale_id,
        kind=kind,
        lines=body.lines,
        reason=body.reason,
        key=key,
        payload=payload,
        caller=Caller(user_id=principal.id, token=token or "", request_id=current_request_id()),
        products_client=products,
    )
    if not outcome.created:
        response.headers["Idempotent-Replayed"] = "true"
    # A key is the caller's own, so a replayed refund is theirs too.
    return refund_read(outcome.refund, outcome.sale, principal.user.email)


@router.post(
    "/{sale_id}/refunds",
    status_code=status.HTTP_201_CREATED,
    summary="Refund a sale, whole or per line",
    responses=WRITE_ERRORS,
)
def refund_sale(
    sale_id: int,
    response: Response,
    principal: ManagerUser,
    token: BearerToken,
    session: SessionDep,
    products: ProductsClientDep,
    body: Annotated[RefundCreate | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
) -> RefundRead:
    """Refund units of some lines (or, with no lines, everything still refundable).

    Each line's amount is quantity x its unit price, exactly. The units go back to the
    warehouses they were sold from as `return` movements in products_service; if it cannot
    take them now the refund is recorded with `stock_sync: pending` and the background sync
    returns them later, once. More than is left on a line: 422 naming the line and what is
    left. A sale already refunded or cancelled: 409. Send an `Idempotency-Key` to make a
    retry return the first refund instead of refunding twice.
    """
    body = body or RefundCreate()
    return _refund(
        sale_id=sale_id,
        kind=RefundKind.REFUND,
        body=body,
        payload=body.model_dump(mode="json"),
        principal=principal,
        token=token,
        session=session,
        products=products,
        response=response,
        key=idempotency_key,
    )


@router.post(
    "/{sale_id}/cancel",
    status_code=status.HTTP_201_CREATED,
    summary="Cancel a sale",
    responses=WRITE_ERRORS,
)
def cancel_sale(
    sale_id: int,
    response: Response,
    principal: ManagerUser,
    token: BearerToken,
    session: SessionDep,
    products: ProductsClientDep,
    body: Annotated[CancelCreate | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
) -> RefundRead:
    """Cancel the whole sale: everything still refundable comes back, the sale is `cancelled`.

    Answers with the cancellation (a refund of kind `cancellation`). A sale already
    cancelled or fully refunded: 409. Idempotent on `Idempotency-Key` like a refund.
    """
    body = body or CancelCreate()
    return _refund(
        sale_id=sale_id,
        kind=RefundKind.CANCELLATION,
        body=RefundCreate(reason=body.reason),
        payload=body.model_dump(mode="json"),
        principal=principal,
        token=token,
        session=session,
        products=products,
        response=response,
        key=idempotency_key,
    )


@router.get("/{sale_id}/refunds", summary="List a sale's refunds", responses=error_responses(404))
def list_refunds(
    sale_id: int, _user: CurrentUser, session: SessionDep, page: PageDep
) -> Page[RefundRead]:
    """The sale's refunds and cancellation, oldest first, each with its stock state."""
    sale, found = service.list_refunds(session=session, sale_id=sale_id, page=page)
    emails = actor_emails(session, [refund.created_by_id for refund in found.rows])
    return Page.of(
        found.map(lambda refund: refund_read(refund, sale, emails.get(refund.created_by_id or 0)))
    )
