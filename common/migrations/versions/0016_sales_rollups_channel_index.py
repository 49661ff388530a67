"""report_sales_rollups: an index of each channel's rows in time order, covering the
measures, so a series of one channel (or of all together) reads only its own rows

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 17:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["grain", "channel_id", "bucket_start", "shard", "orders", "units", "revenue", "cost"]


def upgrade() -> None:
    op.create_index("ix_report_sales_rollups_channel", "report_sales_rollups", COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_report_sales_rollups_channel", table_name="report_sales_rollups")
