"""Limit/offset pages with a total, and the one sort grammar: ``sort=-created_at,name``."""

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from common.errors import BadRequest

MAX_LIMIT = 500
# Far past any table's rows, and inside what the database takes for OFFSET (2^64 failed).
MAX_OFFSET = 2**31 - 1


class PageParams(BaseModel):
    limit: int
    offset: int


async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


PageDep = Annotated[PageParams, Depends(page_params)]


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list, with how many items match in all."""

    items: list[T]
    total: int
    limit: int
    offset: int


def sort_pattern(fields: Iterable[str]) -> str:
    """The grammar ``parse_sort`` reads (``-price,name``) over these fields, as a regular
    expression for the ``sort`` parameter's schema. It is documented, not enforced by FastAPI,
    so a bad sort stays parse_sort's 400 naming the choices."""
    choice = "|".join(re.escape(name) for name in sorted(fields))
    return rf"^(-?({choice})(,-?({choice}))*)?$"


def parse_sort(
    sort: str | None,
    allowed: Mapping[str, ColumnElement[Any] | Any],
    default: str,
) -> list[Any]:
    """Turn ``-price,name`` into ORDER BY clauses; anything else (an unknown field, a space,
    an empty item) is a 400 naming the choices, as ``sort_pattern`` documents it."""
    clauses: list[Any] = []
    for name in (sort or default).split(","):
        descending = name.startswith("-")
        field = name.removeprefix("-")
        if field not in allowed:
            raise BadRequest(
                f"Cannot sort by {field!r}; choose from: {', '.join(sorted(allowed))}",
                field="query.sort",
            )
        column = allowed[field]
        clauses.append(column.desc() if descending else column.asc())
    return clauses


def paginate(
    session: Session, stmt: Select[Any], params: PageParams, order_by: list[Any]
) -> tuple[list[Any], int]:
    """Run one page of ``stmt`` and count all rows it matches."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = list(session.execute(stmt.order_by(*order_by).limit(params.limit).offset(params.offset)))
    return rows, total
