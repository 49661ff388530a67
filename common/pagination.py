"""Limit/offset pages with a total, and the one sort grammar: ``sort=-created_at,name``."""

from collections.abc import Mapping
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from common.errors import BadRequest

MAX_LIMIT = 500


class PageParams(BaseModel):
    limit: int
    offset: int


async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page")] = 50,
    offset: Annotated[int, Query(ge=0, description="Items to skip")] = 0,
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


def parse_sort(
    sort: str | None,
    allowed: Mapping[str, ColumnElement[Any] | Any],
    default: str,
) -> list[Any]:
    """Turn ``-price,name`` into ORDER BY clauses; unknown fields are a 400 naming the choices."""
    clauses: list[Any] = []
    for raw in (sort or default).split(","):
        name = raw.strip()
        if not name:
            continue
        descending = name.startswith("-")
        field = name.lstrip("-+")
        if field not in allowed:
            raise BadRequest(
                f"Cannot sort by {field!r}; choose from: {', '.join(sorted(allowed))}",
                field="sort",
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
