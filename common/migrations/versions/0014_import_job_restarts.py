"""import jobs started again after their process died: what a job needs to run again (its
options, its spooled upload), how many times it was started, and which runner holds it

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


COLUMNS = (
    sa.Column("options", sa.JSON(), nullable=True),
    sa.Column("spool_name", sa.String(length=64), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("runner", sa.String(length=32), nullable=True),
)


def upgrade() -> None:
    # Added and dropped in place (SQLite 3.35+ too), as 0012 does, not by rebuilding the table.
    for column in COLUMNS:
        op.add_column("import_jobs", column)


def downgrade() -> None:
    for column in reversed(COLUMNS):
        op.execute(f"ALTER TABLE import_jobs DROP COLUMN {column.name}")
