"""One way to page every list: ``limit`` with ``offset`` or ``cursor``, a total, and the one
sort grammar, ``sort=-created_at,name``.

Every list answers ``next_cursor``: the place after its last item, to send back as
``cursor`` for the next page (null on the last page). A cursor page is found by the values
of the sort keys (keyset), so the thousandth page costs what the first does, and rows
written meanwhile neither repeat nor skip an item; ``offset`` stays for jumping to a page.
"""

import base64
import binascii
import enum
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import Select, and_, false, func, literal, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression

from common.errors import BadRequest, InvalidInput

MAX_LIMIT = 500
# Far past any table's rows, and inside what the database takes for OFFSET (2^64 failed).
MAX_OFFSET = 2**31 - 1
MAX_CURSOR = 1000


class PageParams(BaseModel):
    limit: int
    offset: int = 0
    cursor: str | None = None


async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page")] = 50,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="Items to skip (not with `cursor`)")
    ] = 0,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_CURSOR,
            description="A previous page's `next_cursor`: the page after it, in the same sort",
        ),
    ] = None,
) -> PageParams:
    if cursor is not None and offset:
        raise InvalidInput(
            "Send either cursor or offset, not both: a cursor already says where the page starts",
            field="query.offset",
        )
    return PageParams(limit=limit, offset=offset, cursor=cursor)


PageDep = Annotated[PageParams, Depends(page_params)]


R = TypeVar("R")
T = TypeVar("T")


@dataclass(frozen=True)
class Slice(Generic[R]):
    """One page of rows as ``paginate`` found it, before they become the API's items."""

    rows: list[R]
    total: int
    params: PageParams
    next_cursor: str | None

    def map(self, read: Callable[[R], T]) -> "Slice[T]":
        return self.with_rows([read(row) for row in self.rows])

    def with_rows(self, rows: list[T]) -> "Slice[T]":
        return Slice(rows, self.total, self.params, self.next_cursor)


class Page(BaseModel, Generic[T]):
    """One page of a list, with how many items match in all."""

    items: list[T]
    total: int = Field(description="How many items match the filters, on every page")
    limit: int
    offset: int
    next_cursor: str | None = Field(
        description="Send as `cursor` for the next page; null on the last page"
    )

    @classmethod
    def of(cls, found: Slice[T]) -> "Page[T]":
        return cls(
            items=found.rows,
            total=found.total,
            limit=found.params.limit,
            offset=found.params.offset,
            next_cursor=found.next_cursor,
        )


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


def first(row: Any) -> Any:
    """A row's first column: the entity of a ``select(Model)``."""
    return row[0]


def paginate(
    session: Session, stmt: Select[Any], params: PageParams, order_by: list[Any]
) -> Slice[Any]:
    """One page of ``stmt`` (see ``page_rows``) and how many rows it matches in all."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows, next_cursor = page_rows(session, stmt, params, order_by)
    return Slice(rows, total, params, next_cursor)


def page_rows(
    session: Session, stmt: Select[Any], params: PageParams, order_by: list[Any]
) -> tuple[list[Any], str | None]:
    """One page of ``stmt`` in ``order_by`` (whose last key must be unique, e.g. the id),
    from ``params``' offset or cursor, and the cursor after it (None on the last page). The
    rows carry the sort keys' values as extra trailing columns."""
    keys = [_key(clause) for clause in order_by]
    signature = hashlib.sha256("|".join(map(str, order_by)).encode()).hexdigest()[:12]
    page = stmt.add_columns(*(expr.label(f"_page_key_{i}") for i, (expr, _) in enumerate(keys)))
    if params.cursor is not None:
        values = _decode(params.cursor, signature, len(keys))
        after = _after(keys, [_fit(expr, v) for (expr, _), v in zip(keys, values, strict=True)])
        page = page.having(after) if stmt._group_by_clauses else page.where(after)
    rows = list(
        session.execute(page.order_by(*order_by).limit(params.limit + 1).offset(params.offset))
    )
    if len(rows) <= params.limit:
        return rows, None
    rows = rows[: params.limit]
    return rows, _encode(rows[-1][-len(keys) :], signature)


def _key(clause: Any) -> tuple[ColumnElement[Any], bool]:
    """A sort clause's expression and whether it descends."""
    if isinstance(clause, UnaryExpression) and clause.modifier in (
        operators.desc_op,
        operators.asc_op,
    ):
        return clause.element, clause.modifier is operators.desc_op
    return clause, False


def _fit(expr: ColumnElement[Any], value: Any) -> Any:
    """A cursor's value as its sort key's type holds it, or a 422: an edited cursor may put
    any value at any place."""
    try:
        expected = expr.type.python_type
    except NotImplementedError:  # an expression of no one type: the database compares
        return value
    if value is None:
        return value
    if issubclass(expected, enum.Enum):
        if value in {member.value for member in expected}:
            return expected(value)
    elif isinstance(value, bool) or expected is bool:
        if isinstance(value, bool) and expected is bool:
            return value
    elif expected in (int, float, Decimal):
        if isinstance(value, int | Decimal):  # a SUM of integers is a DECIMAL on MariaDB
            return value
    elif isinstance(value, expected):
        return value
    raise InvalidInput(
        "Not a cursor this list made: send a page's `next_cursor` as it came",
        field="query.cursor",
    )


def _after(keys: list[tuple[ColumnElement[Any], bool]], values: list[Any]) -> Any:
    """Rows strictly after ``values`` in this order, NULLs first ascending and last
    descending, as both MariaDB and SQLite sort them."""
    condition: Any = false()
    for (expr, descending), value in reversed(list(zip(keys, values, strict=True))):
        bound = literal(value, type_=expr.type) if value is not None else None
        if value is None:
            beyond = expr.is_not(None) if not descending else false()
            same = expr.is_(None)
        else:
            beyond = or_(expr < bound, expr.is_(None)) if descending else expr > bound
            same = expr == bound
        condition = or_(beyond, and_(same, condition))
    return condition


def _encode(values: Iterable[Any], signature: str) -> str:
    tagged = [_tag(value) for value in values]
    raw = json.dumps({"s": signature, "k": tagged}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _tag(value: Any) -> list[Any]:
    if value is None or isinstance(value, bool | int | str):
        return ["v", value]
    if isinstance(value, datetime):
        return ["t", value.isoformat()]
    if isinstance(value, date):
        return ["d", value.isoformat()]
    if isinstance(value, Decimal):
        return ["n", str(value)]
    raise TypeError(f"cannot page by a {type(value).__name__}")


# A cursor is not signed: it is only a place to start from, and an edited one may hold
# anything. Each value is taken back only as what a sort key of ours can hold.
MAX_TEXT = 1000
MAX_INT = 2**63


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and -MAX_INT <= value < MAX_INT:
        return value
    if isinstance(value, str) and len(value) <= MAX_TEXT:
        return value
    raise ValueError("not a sort key's value")


def _instant(text: str) -> datetime:
    """An aware moment in the years the columns hold, as every time column answers it."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None or not 1000 <= moment.astimezone(UTC).year <= 9999:
        raise ValueError("not a stored moment")
    return moment.astimezone(UTC)


def _number(text: str) -> Decimal:
    number = Decimal(text)
    if not number.is_finite() or len(text) > 40 or abs(number.adjusted()) > 30:
        raise ValueError("not a stored amount")
    return number


_UNTAG: dict[str, Callable[[Any], Any]] = {
    "v": _plain,
    "t": _instant,
    "d": date.fromisoformat,
    "n": _number,
}


def _decode(cursor: str, signature: str, count: int) -> list[Any]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if raw["s"] != signature:
            raise InvalidInput(
                "This cursor was made for another sort order; send the same `sort` as the "
                "page it came from, or start again without a cursor",
                field="query.cursor",
            )
        values = [_UNTAG[tag](value) for tag, value in raw["k"]]
        if len(values) != count:
            raise ValueError("wrong number of keys")
        return values
    except InvalidInput:
        raise
    except (binascii.Error, ValueError, TypeError, KeyError, ArithmeticError) as exc:
        raise InvalidInput(
            "Not a cursor this list made: send a page's `next_cursor` as it came",
            field="query.cursor",
        ) from exc
