"""sales search: an index on sales.external_order_id, so that the sales list's q= finds an
imported marketplace order by its id without reading every sale

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 19:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_sales_external_order_id", "sales", ["external_order_id"])


def downgrade() -> None:
    op.drop_index("ix_sales_external_order_id", table_name="sales")
