"""report rollups

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import common.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MEASURES = (
    ("orders", sa.BigInteger()),
    ("units", sa.BigInteger()),
    ("revenue", sa.Numeric(precision=18, scale=2)),
    ("cost", sa.Numeric(precision=18, scale=2)),
)


def _measures() -> list[sa.Column]:
    return [sa.Column(name, kind, nullable=False) for name, kind in MEASURES]


def upgrade() -> None:
    with op.batch_alter_table("sales", schema=None) as batch_op:
        batch_op.create_index("ix_sales_updated_at", ["updated_at"], unique=False)

    op.create_table(
        "report_sales_rollups",
        sa.Column("grain", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("bucket_start", common.db.UTCDateTime(), nullable=False),
        sa.Column("channel_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("shard", sa.Integer(), autoincrement=False, nullable=False),
        *_measures(),
        sa.PrimaryKeyConstraint(
            "grain", "bucket_start", "channel_id", "shard", name=op.f("pk_report_sales_rollups")
        ),
    )
    op.create_table(
        "report_product_rollups",
        sa.Column("grain", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("bucket_start", common.db.UTCDateTime(), nullable=False),
        sa.Column("product_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("channel_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("category_key", sa.Integer(), autoincrement=False, nullable=False),
        *_measures(),
        sa.PrimaryKeyConstraint(
            "grain",
            "bucket_start",
            "product_id",
            "channel_id",
            "category_key",
            name=op.f("pk_report_product_rollups"),
        ),
    )
    with op.batch_alter_table("report_product_rollups", schema=None) as batch_op:
        batch_op.create_index(
            "ix_report_product_rollups_product",
            ["product_id", "grain", "bucket_start"],
            unique=False,
        )
    op.create_table(
        "report_product_totals",
        sa.Column("grain", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("bucket_start", common.db.UTCDateTime(), nullable=False),
        sa.Column("product_id", sa.Integer(), autoincrement=False, nullable=False),
        *_measures(),
        sa.PrimaryKeyConstraint(
            "grain", "bucket_start", "product_id", name=op.f("pk_report_product_totals")
        ),
    )
    with op.batch_alter_table("report_product_totals", schema=None) as batch_op:
        batch_op.create_index(
            "ix_report_product_totals_product",
            ["product_id", "grain", "bucket_start"],
            unique=False,
        )
    op.create_table(
        "report_category_rollups",
        sa.Column("grain", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("bucket_start", common.db.UTCDateTime(), nullable=False),
        sa.Column("scope", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("category_key", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("channel_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("shard", sa.Integer(), autoincrement=False, nullable=False),
        *_measures(),
        sa.PrimaryKeyConstraint(
            "grain",
            "bucket_start",
            "scope",
            "category_key",
            "channel_id",
            "shard",
            name=op.f("pk_report_category_rollups"),
        ),
    )
    with op.batch_alter_table("report_category_rollups", schema=None) as batch_op:
        batch_op.create_index(
            "ix_report_category_rollups_category",
            ["category_key", "scope", "grain", "bucket_start"],
            unique=False,
        )
    op.create_table(
        "report_category_paths",
        sa.Column("category_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("category_id", name=op.f("pk_report_category_paths")),
    )
    # Sales recorded before this revision are counted by the rollup consumer's first run
    # (0005 asks it to rebuild): a migration runs no application code, which keeps changing.


def downgrade() -> None:
    op.drop_table("report_category_paths")
    with op.batch_alter_table("report_category_rollups", schema=None) as batch_op:
        batch_op.drop_index("ix_report_category_rollups_category")
    op.drop_table("report_category_rollups")
    with op.batch_alter_table("report_product_rollups", schema=None) as batch_op:
        batch_op.drop_index("ix_report_product_rollups_product")
    op.drop_table("report_product_rollups")
    with op.batch_alter_table("report_product_totals", schema=None) as batch_op:
        batch_op.drop_index("ix_report_product_totals_product")
    op.drop_table("report_product_totals")
    op.drop_table("report_sales_rollups")
    with op.batch_alter_table("sales", schema=None) as batch_op:
        batch_op.drop_index("ix_sales_updated_at")
