"""SQL for refunds: lookups by key, a sale's refunds, what earlier refunds returned, the backlog."""

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from common.models import SaleRefund, SaleRefundLine, StockSync
from common.pagination import PageParams, Slice, first, paginate


def find_by_key(session: Session, key: str, user_id: int | None) -> SaleRefund | None:
    """The refund this user made with this Idempotency-Key (keys are per user)."""
    return session.scalar(
        select(SaleRefund)
        .where(SaleRefund.created_by_id == user_id, SaleRefund.idempotency_key == key)
        .options(selectinload(SaleRefund.lines))
        .execution_options(populate_existing=True)
    )


def get_with_lines(session: Session, refund_id: int) -> SaleRefund | None:
    return session.scalar(
        select(SaleRefund)
        .where(SaleRefund.id == refund_id)
        .options(selectinload(SaleRefund.lines))
        .execution_options(populate_existing=True)
    )


def add_refund(session: Session, refund: SaleRefund) -> None:
    session.add(refund)
    session.flush()


def list_for_sale(session: Session, sale_id: int, page: PageParams) -> Slice[SaleRefund]:
    """A page of the sale's refunds, oldest first, lines loaded in one extra query."""
    stmt = (
        select(SaleRefund)
        .where(SaleRefund.sale_id == sale_id)
        .options(selectinload(SaleRefund.lines))
    )
    return paginate(session, stmt, page, [SaleRefund.id.asc()]).map(first)


def returned_before(session: Session, *, sale_id: int, refund_id: int) -> dict[int, int]:
    """Units per sale line refunded by the sale's refunds older than ``refund_id``.

    A sale's refunds are written one at a time under its row lock, so their ids are in the
    order they happened and this is the same answer every time it is asked.
    """
    rows = session.execute(
        select(SaleRefundLine.sale_line_id, func.sum(SaleRefundLine.quantity))
        .join(SaleRefund, SaleRefund.id == SaleRefundLine.refund_id)
        .where(SaleRefund.sale_id == sale_id, SaleRefund.id < refund_id)
        .group_by(SaleRefundLine.sale_line_id)
    )
    return {int(line_id): int(units) for line_id, units in rows}


def pending_refund_ids(session: Session, *, created_before: datetime, limit: int) -> list[int]:
    """Refunds whose stock has not reached products_service, oldest first."""
    return list(
        session.scalars(
            select(SaleRefund.id)
            .where(
                SaleRefund.stock_sync == StockSync.PENDING,
                SaleRefund.created_at <= created_before,
            )
            .order_by(SaleRefund.id)
            .limit(limit)
        )
    )
