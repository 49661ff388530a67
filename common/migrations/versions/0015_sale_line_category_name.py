"""sale_lines.category_name: the name of a line's category as sold, beside its id (as the
product's name is kept beside its id); the lines sold before are given their category's
name as it is now

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Added and dropped in place (SQLite 3.35+ too), never by rebuilding sale_lines: SQLite
    # would have to drop the table, which refund lines refer to.
    op.add_column("sale_lines", sa.Column("category_name", sa.String(length=120), nullable=True))
    op.execute(
        "UPDATE sale_lines SET category_name = "
        "(SELECT categories.name FROM categories WHERE categories.id = sale_lines.category_id) "
        "WHERE category_id IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE sale_lines DROP COLUMN category_name")
