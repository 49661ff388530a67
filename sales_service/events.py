"""The events sales_service appends to its outbox (common.outbox), one per change to a sale.

Each carries what the change did to the sale's lines, as their net state before and after
(units, revenue and cost left after refunds), so a consumer such as the report rollups can
apply it without reading the sale, which may have changed again since.
"""

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from common import outbox
from common.models import RefundKind, Sale, SaleRefund, SaleStatus
from sales_service.reports.rollups import LineState, cents, line_states, states_before_refund

SALE_RECORDED = "sale.recorded"
SALE_REFUNDED = "sale.refunded"
SALE_CANCELLED = "sale.cancelled"
REPORTED_TYPES = (SALE_RECORDED, SALE_REFUNDED, SALE_CANCELLED)


# What every sale event says of the sale itself (besides its id).
_SALE_FIELDS = (
    "number",
    "channel_id",
    "sold_at",
    "status",
    "total",
    "units",
    "refunded_total",
    "refunded_units",
)


def _sale(sale: Sale) -> dict[str, Any]:
    return {"sale_id": sale.id, **{field: getattr(sale, field) for field in _SALE_FIELDS}}


def sale_recorded(sale: Sale) -> dict[str, Any]:
    """A new sale (lines loaded)."""
    payload = {**_sale(sale), "lines_before": [], "lines_after": line_states(sale)}
    return outbox.event(SALE_RECORDED, sale.id, payload)


def sale_recorded_of_rows(
    sale: Mapping[str, Any], lines: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """``sale_recorded`` of a new sale written as rows, not objects (an import's batch): the
    same event (a new line's net state is all of it)."""
    states = [
        LineState(
            product_id=line["product_id"],
            category_id=line["category_id"],
            units=line["quantity"],
            revenue=cents(line["line_total"]),
            cost=cents(line["line_cost"]),
        )
        for line in lines
    ]
    head = {"sale_id": sale["id"], **{field: sale[field] for field in _SALE_FIELDS}}
    payload = {**head, "lines_before": [], "lines_after": states}
    return outbox.event(SALE_RECORDED, sale["id"], payload)


def sale_refunded(sale: Sale, refund: SaleRefund) -> dict[str, Any]:
    """A refund or cancellation of the sale (both with lines loaded, the refund applied)."""
    kind = SALE_CANCELLED if refund.kind is RefundKind.CANCELLATION else SALE_REFUNDED
    payload = {
        **_sale(sale),
        "refund_id": refund.id,
        "amount": refund.amount,
        "refund_units": refund.units,
        "lines_before": states_before_refund(sale, refund),
        "lines_after": line_states(sale),
    }
    return outbox.event(kind, sale.id, payload)


def sale_recorded_as_cancelled(sale: Sale, refund: SaleRefund) -> list[dict[str, Any]]:
    """An imported order cancelled on its marketplace, written cancelled at once (both with
    lines loaded, the refund applied), announced as it happened there: recorded, then
    cancelled, so every consumer nets it to nothing."""
    recorded = {
        **_sale(sale),
        "status": SaleStatus.COMPLETED,
        "refunded_total": Decimal("0.00"),
        "refunded_units": 0,
        "lines_before": [],
        "lines_after": states_before_refund(sale, refund),
    }
    return [outbox.event(SALE_RECORDED, sale.id, recorded), sale_refunded(sale, refund)]
