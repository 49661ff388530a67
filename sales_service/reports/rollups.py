"""Hooks that keep report rollups current in the same transaction as each sale or refund.

Called by the sales service after it has flushed the sale (or refund) and before it commits.
"""

from sqlalchemy.orm import Session

from common.models import Sale, SaleRefund


def record_sale(session: Session, sale: Sale) -> None:
    """A new sale (lines loaded) was written."""


def record_refund(session: Session, sale: Sale, refund: SaleRefund) -> None:
    """A refund or cancellation (lines loaded) was written for this sale."""
