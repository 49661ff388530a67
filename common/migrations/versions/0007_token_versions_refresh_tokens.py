"""token versions, refresh tokens, per-pair login throttling, per-user idempotency keys

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import common.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("token_version", sa.Integer(), server_default="0", nullable=False)
        )
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("family", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("issued_at", common.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", common.db.UTCDateTime(), nullable=False),
        sa.Column("used_at", common.db.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", common.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_refresh_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_refresh_tokens")),
    )
    op.create_index(
        op.f("ix_refresh_tokens_expires_at"), "refresh_tokens", ["expires_at"], unique=False
    )
    op.create_index(op.f("ix_refresh_tokens_family"), "refresh_tokens", ["family"], unique=False)
    op.create_index(
        "ix_refresh_tokens_user_family", "refresh_tokens", ["user_id", "family"], unique=False
    )
    op.create_index(
        "ix_login_attempts_pair", "login_attempts", ["account", "client", "id"], unique=False
    )
    # An Idempotency-Key is unique per user, no longer across users.
    for table, old, new in (
        ("sales", "uq_sales_idempotency_key", "uq_sales_user_key"),
        ("sale_refunds", "uq_sale_refunds_idempotency_key", "uq_sale_refunds_user_key"),
    ):
        with op.batch_alter_table(table) as batch:
            batch.create_unique_constraint(new, ["created_by_id", "idempotency_key"])
            batch.drop_constraint(old, type_="unique")


def downgrade() -> None:
    for table, old, new in (
        ("sales", "uq_sales_idempotency_key", "uq_sales_user_key"),
        ("sale_refunds", "uq_sale_refunds_idempotency_key", "uq_sale_refunds_user_key"),
    ):
        with op.batch_alter_table(table) as batch:
            batch.create_unique_constraint(old, ["idempotency_key"])
            batch.drop_constraint(new, type_="unique")
    op.drop_index("ix_login_attempts_pair", table_name="login_attempts")
    op.drop_table("refresh_tokens")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("token_version")
