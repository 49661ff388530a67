"""lean report rollups: only the grains that hold fewer rows than the lines they sum, and
sale_lines.sold_at

Each sale line gets its sale's sold_at (which never changes), indexed after the product and
after the category, so that a report on a product or a category reads the lines of a period
by index where the rollups' days do not fit (the part of a day at each end of a period in
a zone whose days do not start at 00:00 UTC).

Sales rollups lose their quarter hours; product rollups (per channel and category) keep
months and years; product totals keep days, months and years; category rollups keep months
and years per channel and days for all channels together (no hours). The rows change shape,
so they are emptied here and the rollup consumer rebuilds them from the raw sales on its
next pass (a migration runs no application code); until then reports read the raw rows.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import common.db

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLLUPS = (
    "report_sales_rollups",
    "report_product_rollups",
    "report_product_totals",
    "report_category_rollups",
    "report_category_paths",
)


def _rebuild_from_raw() -> None:
    """Empty the rollups and have their consumer rebuild them (both ways: each side of this
    revision keeps a shape of its own)."""
    connection = op.get_bind()
    for table in ROLLUPS:
        op.execute(f"DELETE FROM {table}")  # noqa: S608 - the names above
    has_sales = connection.execute(sa.text("SELECT 1 FROM sales LIMIT 1")).first() is not None
    op.execute(
        sa.text(
            "UPDATE outbox_positions SET needs_rebuild = :rebuild WHERE consumer = 'report-rollups'"
        ).bindparams(rebuild=has_sales)
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # Without rebuilding the table (SQLite would have to drop sale_lines, which refund
        # lines refer to): a NOT NULL column needs a default there; every line is given its
        # sale's time just below, and every writer names it.
        op.add_column(
            "sale_lines",
            sa.Column(
                "sold_at",
                common.db.UTCDateTime(),
                nullable=False,
                server_default="1970-01-01 00:00:00.000000",
            ),
        )
        op.execute(
            "UPDATE sale_lines SET sold_at = "
            "(SELECT sales.sold_at FROM sales WHERE sales.id = sale_lines.sale_id)"
        )
    else:
        op.add_column("sale_lines", sa.Column("sold_at", common.db.UTCDateTime(), nullable=True))
        op.execute("UPDATE sale_lines l JOIN sales s ON s.id = l.sale_id SET l.sold_at = s.sold_at")
        op.alter_column(
            "sale_lines", "sold_at", existing_type=common.db.UTCDateTime(), nullable=False
        )
    # the new indexes first: MySQL keeps an index on each foreign key's column
    op.create_index(
        "ix_sale_lines_product_sold", "sale_lines", ["product_id", "sold_at", "sale_id"]
    )
    op.create_index(
        "ix_sale_lines_category_sold", "sale_lines", ["category_id", "sold_at", "sale_id"]
    )
    op.drop_index("ix_sale_lines_product_sale", table_name="sale_lines")
    op.drop_index("ix_sale_lines_category_sale", table_name="sale_lines")
    _rebuild_from_raw()


def downgrade() -> None:
    op.create_index("ix_sale_lines_product_sale", "sale_lines", ["product_id", "sale_id"])
    op.create_index("ix_sale_lines_category_sale", "sale_lines", ["category_id", "sale_id"])
    op.drop_index("ix_sale_lines_product_sold", table_name="sale_lines")
    op.drop_index("ix_sale_lines_category_sold", table_name="sale_lines")
    # a plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), no table rebuild (see upgrade)
    op.execute("ALTER TABLE sale_lines DROP COLUMN sold_at")
    _rebuild_from_raw()
