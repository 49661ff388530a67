"""default warehouse

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from common.db import UTCDateTime, utcnow

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

warehouses = sa.table(
    "warehouses",
    sa.column("code", sa.String),
    sa.column("name", sa.String),
    sa.column("address", sa.String),
    sa.column("is_default", sa.Boolean),
    sa.column("is_active", sa.Boolean),
    sa.column("created_at", UTCDateTime),
    sa.column("updated_at", UTCDateTime),
)


def upgrade() -> None:
    now = utcnow()
    op.bulk_insert(
        warehouses,
        [
            {
                "code": "MAIN",
                "name": "Main warehouse",
                "address": "",
                "is_default": True,
                "is_active": True,
                "created_at": now,
                "updated_at": now,
            }
        ],
    )


def downgrade() -> None:
    op.execute(warehouses.delete().where(warehouses.c.code == "MAIN"))
