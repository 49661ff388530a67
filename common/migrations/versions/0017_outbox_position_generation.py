"""outbox_positions.generation: a random number drawn when a consumer's position row is
made and whenever its state is rebuilt from the source rows, so a copy of that state (the
report rollups each sales_service process holds in memory) knows when the rows were
replaced rather than added to, also when the row was deleted and made again

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "outbox_positions",
        sa.Column("generation", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("outbox_positions", "generation")
