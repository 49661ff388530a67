"""Refunds and cancellations: money back in sales_service, stock back through products_service.

Like recording a sale, this spans two services and holds no database lock while it waits on
the other one:

1. lock the sale row (FOR UPDATE), so two refunds of one sale run one after the other and
   can never refund more than was sold; write the refund, its lines, the lines' and the
   sale's refunded figures and status, and its event (sales_outbox: the report rollups
   and others read it), with ``stock_sync=pending``; commit;
2. put the units back on the shelves they were sold from (``POST /inventory/returns`` once
   per refund line and warehouse, each with the key ``refund:{refund}:{sale line}:{warehouse}``
   so a retry, ours or another replica's, moves stock once); mark the refund ``done``.

If products_service cannot take the units now, the refund stays ``pending`` and the
background sync (sales_service/stock_sync.py) finishes it. A refund never returns stock the
sale never took: while the sale's own stock commit is pending, the refund waits for it (the
sync handles sales before refunds); if the sale's commit failed (its stock was never taken),
the refund is ``done`` with nothing to return. A refusal by products_service (4xx, e.g. the
warehouse was deactivated) marks the refund ``failed`` and is logged for a person to resolve.
"""

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common import outbox
from common.contracts import ReturnCreate
from common.errors import AppError, InvalidState, NotFound, Unprocessable
from common.idempotency import replay, request_hash
from common.models import (
    RefundKind,
    Sale,
    SaleLine,
    SaleRefund,
    SaleRefundLine,
    SaleStatus,
    StockSync,
)
from common.pagination import PageParams, Slice
from sales_service import events
from sales_service.clients.products import ProductsClient
from sales_service.refunds import repository
from sales_service.refunds.schemas import RefundLineCreate
from sales_service.sales import repository as sales_repository
from sales_service.sales.service import Caller

logger = logging.getLogger(__name__)
CLOSED = {SaleStatus.REFUNDED: "refunded", SaleStatus.CANCELLED: "cancelled"}


@dataclass(frozen=True)
class RefundOutcome:
    refund: SaleRefund
    sale: Sale
    created: bool


@dataclass(frozen=True)
class StockReturn:
    """Units of one sale line going back to one warehouse."""

    sale_line_id: int
    product_id: int
    warehouse_id: int
    quantity: int


def took_no_stock(sale: Sale) -> bool:
    """Whether the sale never took stock, so a refund has none to put back: its stock take
    failed for good, or it is an imported order of history (external_order_id set, no line
    allocated to a shelf). Its lines loaded."""
    if sale.stock_sync is StockSync.FAILED:
        return True
    return sale.external_order_id is not None and not any(line.allocations for line in sale.lines)


def _get_sale(session: Session, sale_id: int, *, for_update: bool = False) -> Sale:
    sale = sales_repository.get_with_lines(session, sale_id, for_update=for_update)
    if sale is None:
        raise NotFound(f"Sale {sale_id} not found", resource="sale", id=sale_id)
    return sale


def _replay(session: Session, existing: SaleRefund, digest: str) -> RefundOutcome:
    refund = replay(
        existing,
        digest,
        key=existing.idempotency_key or "",
        field="header.Idempotency-Key",
        used_for=f"refund {existing.id}",
        refund_id=existing.id,
    )
    return RefundOutcome(refund=refund, sale=_get_sale(session, refund.sale_id), created=False)


def _left(line: SaleLine) -> int:
    return line.quantity - line.refunded_quantity


def _wanted(sale: Sale, lines: list[RefundLineCreate] | None) -> list[tuple[SaleLine, int]]:
    """The units to refund per sale line; one 422 naming every line that cannot be served."""
    if not lines:
        return [(line, _left(line)) for line in sale.lines if _left(line) > 0]
    by_id = {line.id: line for line in sale.lines}
    by_no = {line.line_no: line for line in sale.lines}
    chosen: dict[int, tuple[SaleLine, int]] = {}
    problems: list[dict[str, Any]] = []
    for asked in lines:
        if asked.line_id is not None:
            line, named = by_id.get(asked.line_id), f"line id {asked.line_id}"
        else:
            line, named = by_no.get(asked.line_no or 0), f"line {asked.line_no}"
        if line is None:
            problems.append(
                {
                    "line_id": asked.line_id,
                    "line_no": asked.line_no,
                    "reason": f"{named} is not a line of sale {sale.number}",
                }
            )
            continue
        named = f"line {line.line_no}"
        problem: dict[str, Any] = {
            "line_id": line.id,
            "line_no": line.line_no,
            "requested": asked.quantity,
            "refundable": _left(line),
        }
        if line.id in chosen:
            problems.append({**problem, "reason": f"{named} is named more than once"})
        elif asked.quantity > _left(line):
            problems.append(
                {
                    **problem,
                    "reason": f"{named}: asked to refund {asked.quantity}, "
                    f"only {_left(line)} of {line.quantity} left to refund",
                }
            )
        else:
            chosen[line.id] = (line, asked.quantity)
    if problems:
        summary = "; ".join(p["reason"] for p in problems)
        raise Unprocessable(f"Cannot refund: {summary}", lines=problems)
    return list(chosen.values())


def apply_refund(
    sale: Sale,
    wanted: list[tuple[SaleLine, int]],
    *,
    kind: RefundKind,
    reason: str,
    key: str | None,
    digest: str,
    actor_id: int | None,
) -> SaleRefund:
    """Build the refund and move its units and money onto the lines' and sale's refunded sums."""
    refund_lines = []
    for line, quantity in wanted:
        amount, cost = line.unit_price * quantity, line.unit_cost * quantity
        refund_lines.append(
            SaleRefundLine(sale_line_id=line.id, quantity=quantity, amount=amount, cost=cost)
        )
        line.refunded_quantity += quantity
        line.refunded_total += amount
        line.refunded_cost += cost
    refund = SaleRefund(
        sale_id=sale.id,
        kind=kind,
        units=sum(rl.quantity for rl in refund_lines),
        amount=sum((rl.amount for rl in refund_lines), Decimal("0.00")),
        reason=reason,
        idempotency_key=key,
        request_hash=digest,
        stock_sync=StockSync.PENDING,
        created_by_id=actor_id,
        lines=refund_lines,
    )
    sale.refunded_units += refund.units
    sale.refunded_total += refund.amount
    sale.refunded_cost += sum((rl.cost for rl in refund_lines), Decimal("0.00"))
    if kind is RefundKind.CANCELLATION:
        sale.status = SaleStatus.CANCELLED
    elif sale.refunded_units >= sale.units:
        sale.status = SaleStatus.REFUNDED
    else:
        sale.status = SaleStatus.PARTIALLY_REFUNDED
    return refund


def cancellation_of_import(sale: Sale, *, reason: str, actor_id: int | None) -> SaleRefund:
    """The whole cancellation of an imported order that was cancelled on its marketplace,
    applied to the sale before it is written; it took no stock, so none goes back."""
    refund = apply_refund(
        sale,
        [(line, line.quantity) for line in sale.lines],
        kind=RefundKind.CANCELLATION,
        reason=reason,
        key=None,
        digest="",
        actor_id=actor_id,
    )
    refund.stock_sync = StockSync.DONE
    return refund


def refund_sale(
    *,
    session: Session,
    sale_id: int,
    kind: RefundKind,
    lines: list[RefundLineCreate] | None,
    reason: str,
    key: str | None,
    payload: Any,
    caller: Caller,
    products_client: ProductsClient,
) -> RefundOutcome:
    """Refund (or cancel) the sale and return its stock; see the module docstring.

    ``payload`` is the request as the caller sent it: a retry with the same key must send the
    same one to get the first refund back.
    """
    digest = request_hash({"sale_id": sale_id, "kind": kind.value, "request": payload})
    if (
        key is not None
        and (existing := repository.find_by_key(session, key, caller.user_id)) is not None
    ):
        return _replay(session, existing, digest)
    sale = _get_sale(session, sale_id, for_update=True)
    if (
        key is not None
        and (existing := repository.find_by_key(session, key, caller.user_id)) is not None
    ):
        return _replay(session, existing, digest)  # a retry that waited for the first's lock
    if sale.status in CLOSED:
        raise InvalidState(
            f"Sale {sale.number} is already {CLOSED[sale.status]}; nothing is left to refund",
            sale_id=sale.id,
            status=sale.status.value,
        )
    wanted = _wanted(sale, lines)
    refund = apply_refund(
        sale, wanted, kind=kind, reason=reason, key=key, digest=digest, actor_id=caller.user_id
    )
    if took_no_stock(sale):
        refund.stock_sync = StockSync.DONE  # the sale's stock was never taken: none to return
    try:
        repository.add_refund(session, refund)
        outbox.append(session, outbox.SALES_OUTBOX, [events.sale_refunded(sale, refund)])
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = repository.find_by_key(session, key, caller.user_id) if key is not None else None
        if existing is None:
            raise
        # The same key was used at the same moment on another sale; whichever came first won.
        return _replay(session, existing, digest)

    return_stock(
        session=session,
        refund=refund,
        sale=sale,
        products_client=products_client,
        token=caller.token,
        request_id=caller.request_id,
    )
    return RefundOutcome(refund=refund, sale=sale, created=True)


def split_over_allocations(
    allocations: list[dict[str, Any]], *, already_returned: int, quantity: int
) -> list[tuple[int, int]]:
    """Where ``quantity`` units of a line go back: (warehouse_id, units), in a fixed order.

    The line's allocations are refilled from the last one backwards, each up to what it gave,
    after the ``already_returned`` units that earlier refunds put back the same way. The same
    inputs always give the same split, so a retried return sends the same calls.
    """
    split: dict[int, int] = {}
    skip, remaining = already_returned, quantity
    for allocation in reversed(allocations):
        room = allocation["quantity"]
        skipped = min(skip, room)
        skip -= skipped
        take = min(room - skipped, remaining)
        if take > 0:
            warehouse_id = allocation["warehouse_id"]
            split[warehouse_id] = split.get(warehouse_id, 0) + take
            remaining -= take
        if remaining == 0:
            break
    return list(split.items())


def plan_returns(session: Session, *, sale: Sale, refund: SaleRefund) -> list[StockReturn]:
    """Every return call the refund needs, per refund line and warehouse."""
    before = repository.returned_before(session, sale_id=sale.id, refund_id=refund.id)
    lines = {line.id: line for line in sale.lines}
    plan = []
    for refund_line in refund.lines:
        line = lines[refund_line.sale_line_id]
        split = split_over_allocations(
            line.allocations,
            already_returned=before.get(line.id, 0),
            quantity=refund_line.quantity,
        )
        placed = sum(units for _, units in split)
        if placed < refund_line.quantity:
            logger.error(
                "refund %s: sale %s line %s has allocations for only %d of %d units to return",
                refund.id,
                sale.number,
                line.line_no,
                placed,
                refund_line.quantity,
            )
        plan += [
            StockReturn(line.id, line.product_id, warehouse_id, units)
            for warehouse_id, units in split
        ]
    return plan


def return_stock(
    *,
    session: Session,
    refund: SaleRefund,
    sale: Sale,
    products_client: ProductsClient,
    token: str,
    request_id: str = "",
) -> None:
    """Put a pending refund's units back in products_service; leaves it pending if that fails now.

    ``refund`` and ``sale`` come with their lines loaded. Commits the session.
    """
    if refund.stock_sync is not StockSync.PENDING or sale.stock_sync is StockSync.PENDING:
        return  # done already, or the sale's own stock commit has to land first
    if took_no_stock(sale):
        refund.stock_sync = StockSync.DONE  # the sale never took stock, so none goes back
        session.commit()
        return
    plan = plan_returns(session, sale=sale, refund=refund)
    session.commit()  # hold nothing while products_service works
    try:
        for item in plan:
            products_client.return_stock(
                ReturnCreate(
                    product_id=item.product_id,
                    warehouse_id=item.warehouse_id,
                    quantity=item.quantity,
                    reference=sale.number,
                    reason=f"{refund.kind.value} #{refund.id}",
                ),
                key=f"refund:{refund.id}:{item.sale_line_id}:{item.warehouse_id}",
                token=token,
                request_id=request_id,
            )
    except AppError as exc:
        if exc.status_code >= 500:
            logger.warning("refund %s: stock return deferred: %s", refund.id, exc.detail)
            return
        logger.error("refund %s: products_service refused the return: %s", refund.id, exc.detail)
        refund.stock_sync = StockSync.FAILED
        session.commit()
        return
    refund.stock_sync = StockSync.DONE
    session.commit()


def sync_refund(
    *,
    session: Session,
    refund_id: int,
    products_client: ProductsClient,
    token: str,
) -> StockSync:
    """Try again to return a pending refund's stock (the background sync); returns its state."""
    refund = repository.get_with_lines(session, refund_id)
    if refund is None:
        session.commit()
        return StockSync.DONE
    sale = _get_sale(session, refund.sale_id)
    return_stock(
        session=session, refund=refund, sale=sale, products_client=products_client, token=token
    )
    return refund.stock_sync


def list_refunds(
    *, session: Session, sale_id: int, page: PageParams
) -> tuple[Sale, Slice[SaleRefund]]:
    sale = _get_sale(session, sale_id)
    return sale, repository.list_for_sale(session, sale_id, page)
