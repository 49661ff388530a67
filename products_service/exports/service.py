"""Exports as CSV, streamed: the catalog (in the products import's columns, so an export
edited and imported again round-trips), stock levels per warehouse, and the ledger."""

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from common.delimited import csv_chunks, stream_rows
from common.models import MovementType
from products_service.categories.service import path_ids
from products_service.exports import repository
from products_service.imports.service import CATEGORY_SEPARATOR, PRODUCT_COLUMNS

LEVEL_HEADER = ("sku", "name", "warehouse", "on_hand", "reserved", "available", "updated_at")
LEDGER_HEADER = (
    "id",
    "created_at",
    "sku",
    "warehouse",
    "movement_type",
    "quantity",
    "on_hand_after",
    "reason",
    "reference",
    "actor_email",
)


def _category_paths(session: Session) -> dict[int, str]:
    """Category id -> its path of names, e.g. ``Electronics/Audio``."""
    names = repository.category_names(session)
    return {
        category_id: CATEGORY_SEPARATOR.join(names[i][1] for i in path_ids(path) if i in names)
        for category_id, (path, _name) in names.items()
    }


def products_csv(*, session: Session, engine: Engine, include_archived: bool) -> Iterator[str]:
    """The catalog in the import's columns, by SKU."""
    paths = _category_paths(session)

    def cells(row: Sequence[Any]) -> Sequence[Any]:
        sku, name, description, category_id, *rest = row
        return (sku, name, description, paths.get(category_id, ""), *rest)

    stmt = repository.products_query(include_archived=include_archived)
    return csv_chunks(stream_rows(engine, stmt), PRODUCT_COLUMNS.known, cells=cells)


def levels_csv(*, engine: Engine, warehouse_ids: Sequence[int]) -> Iterator[str]:
    """Every stock level: SKU, product name, warehouse code, on hand, reserved, available."""
    stmt = repository.levels_query(warehouse_ids=warehouse_ids)
    return csv_chunks(stream_rows(engine, stmt), LEVEL_HEADER)


def ledger_csv(
    *,
    engine: Engine,
    created_from: datetime | None,
    created_to: datetime | None,
    warehouse_ids: Sequence[int],
    types: list[MovementType],
) -> Iterator[str]:
    """The ledger's movements in a time range, oldest first."""
    stmt = repository.ledger_query(
        created_from=created_from, created_to=created_to, warehouse_ids=warehouse_ids, types=types
    )
    return csv_chunks(stream_rows(engine, stmt), LEDGER_HEADER)
