"""SQL for sales: lookups by key, the catalog rows a sale snapshots, listing and export."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    String,
    Table,
    bindparam,
    case,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from common.auth.dependencies import caller_query
from common.db import execute_rows, insert_ids, utcnow
from common.models import (
    Category,
    Product,
    Sale,
    SaleLine,
    SalesChannel,
    SaleStatus,
    SaleStockClaim,
    StockSync,
    User,
)

CLAIMS: Table = SaleStockClaim.__table__  # type: ignore[assignment]
SALES: Table = Sale.__table__  # type: ignore[assignment]
LINES: Table = SaleLine.__table__  # type: ignore[assignment]


def find_by_key(session: Session, key: str, user_id: int | None) -> Sale | None:
    """The sale this user recorded with this Idempotency-Key, lines loaded (a plain indexed
    lookup first: almost every key is new, and then the ORM has nothing to load)."""
    found = session.connection().execute(_ID_BY_KEY, {"key": key, "user": user_id}).scalar()
    return None if found is None else get_with_lines(session, found)


def get_with_lines(session: Session, sale_id: int, *, for_update: bool = False) -> Sale | None:
    stmt = select(Sale).where(Sale.id == sale_id).options(selectinload(Sale.lines))
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalar(stmt.execution_options(populate_existing=True))


def channels_by_id(session: Session, ids: Iterable[int]) -> dict[int, SalesChannel]:
    wanted = set(ids)
    if not wanted:
        return {}
    return {
        c.id: c for c in session.scalars(select(SalesChannel).where(SalesChannel.id.in_(wanted)))
    }


@dataclass(frozen=True)
class ChannelRow:
    """What a sale needs of its channel: to check it is active, and to name it."""

    id: int
    code: str
    name: str
    is_active: bool


_CHANNEL_COLUMNS = (SalesChannel.id, SalesChannel.code, SalesChannel.name, SalesChannel.is_active)
_CHANNEL_BY_ID = select(*_CHANNEL_COLUMNS).where(SalesChannel.id == bindparam("id"))
_CHANNEL_BY_CODE = select(*_CHANNEL_COLUMNS).where(SalesChannel.code == bindparam("code"))


@dataclass(frozen=True)
class SaleCheck:
    """What a new sale reads before products_service takes its stock, in one statement: the
    caller as stored (``caller``, for ``check_caller``), the sale already recorded with its
    Idempotency-Key, and the channel asked for."""

    caller: Row[Any] | None
    replay_id: int | None
    channel: ChannelRow | None


def sale_check(
    session: Session,
    *,
    user_id: int,
    jti: str,
    key: str | None,
    channel_id: int | None,
    code: str | None,
) -> SaleCheck:
    """``SaleCheck`` for this caller, key and channel (by id, else by code)."""
    statement = _CHECK_BY_ID if channel_id is not None else _CHECK_BY_CODE
    row = (
        session.connection()
        .execute(
            statement,
            {
                "user_id": user_id,
                "jti": jti,
                "key": key,
                "channel": channel_id,
                "code": _channel_code(code),
            },
        )
        .first()
    )
    if row is None:
        return SaleCheck(None, None, None)
    channel = None
    if row.channel_id is not None:
        channel = ChannelRow(
            row.channel_id, row.channel_code, row.channel_name, row.channel_is_active
        )
    return SaleCheck(row, row.replay_id, channel)


def _check_query(channel_is: ColumnElement[bool]) -> Select[Any]:
    replay = select(SALES.c.id).where(
        SALES.c.created_by_id == User.id, SALES.c.idempotency_key == bindparam("key")
    )
    # the channel's columns, each by its unique key (an index lookup each, in the same
    # statement: the channel has nothing to join the user on)
    channel = [
        select(column).where(channel_is).scalar_subquery().label(f"channel_{column.key}")
        for column in _CHANNEL_COLUMNS
    ]
    return caller_query(replay.scalar_subquery().label("replay_id"), *channel)


_CHECK_BY_ID = _check_query(SalesChannel.id == bindparam("channel"))
_CHECK_BY_CODE = _check_query(SalesChannel.code == bindparam("code"))


def _channel_code(code: str | None) -> str:
    """A channel code as stored (codes are kept trimmed and lower-case)."""
    return (code or "").strip().lower()


def channel_row(
    session: Session, *, channel_id: int | None = None, code: str | None = None
) -> ChannelRow | None:
    """The channel with this id, or else this code (columns only: every sale reads one)."""
    connection = session.connection()
    if channel_id is not None:
        row = connection.execute(_CHANNEL_BY_ID, {"id": channel_id}).first()
    else:
        row = connection.execute(_CHANNEL_BY_CODE, {"code": _channel_code(code)}).first()
    return None if row is None else ChannelRow(row.id, row.code, row.name, row.is_active)


def add_sale(session: Session, sale: Sale, *, stock_key: str | None) -> None:
    """Insert the sale and its lines (built, not added to the session), number it, give the
    objects their ids, and claim its stock key for it (None: an imported order that took no
    stock, so there is no take to claim).

    Plain INSERTs on the session's connection: the ORM's unit of work costs several times
    as much CPU as the statements themselves, and the sale is only read back as built.
    """
    connection = session.connection()
    sale.id = _insert(connection, SALES, _values(sale, SALES))
    sale.number = sale_number(sale.id)
    connection.execute(_NUMBER_SALE, {"b_id": sale.id, "b_number": sale.number})
    for line in sale.lines:
        line.sale_id = sale.id
    rows = [_values(line, LINES) for line in sale.lines]
    # One set of columns for all the lines: the INSERT is compiled from the first row's, so a
    # value the first line leaves out (its category None) would be dropped from the others.
    columns = {name for row in rows for name in row}
    rows = [{name: row.get(name) for name in columns} for row in rows]
    if len(rows) == 1:
        sale.lines[0].id = _insert(connection, LINES, rows[0])
    elif connection.dialect.insert_executemany_returning_sort_by_parameter_order:
        ids = connection.execute(_INSERT_LINES_RETURNING, rows).scalars()
        for line, line_id in zip(sale.lines, ids, strict=True):
            line.id = line_id
    else:  # MySQL 8 has no INSERT ... RETURNING: one row at a time
        for line, row in zip(sale.lines, rows, strict=True):
            line.id = _insert(connection, LINES, row)
    if stock_key is not None:
        connection.execute(
            _INSERTS[CLAIMS], {"stock_key": stock_key, "sale_id": sale.id, "claimed_at": utcnow()}
        )


def insert_imported_sales(
    session: Session, channel_id: int, sales: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]]
) -> None:
    """Insert new sales of a channel that took no stock, each with its marketplace order id,
    and their lines, given as rows (``sale_row``, ``line_row``; an import's batch, with no
    object per sale): one INSERT of the sales, their ids from the server's numbering
    (``common.db.insert_ids``) or else one query by order id, one numbering statement and
    one INSERT of the lines, whose answer is read by the caller's next statement. Sets each
    sale row's ``id`` and ``number`` and each line's ``sale_id``."""
    if not sales:
        return
    connection = session.connection()
    rows = [sale for sale, _ in sales]
    numbered = insert_ids(connection, _INSERTS[SALES], rows)
    if numbered is not None:
        ids = {
            row["external_order_id"].casefold(): i for row, i in zip(rows, numbered, strict=True)
        }
    else:
        execute_rows(connection, _INSERTS[SALES], rows)
        order_ids = [sale["external_order_id"] for sale, _ in sales]
        found = connection.execute(_IDS_BY_ORDER, {"channel": channel_id, "orders": order_ids})
        ids = {order_id.casefold(): sale_id for sale_id, order_id in found}
    for sale, lines in sales:
        sale["id"] = ids[sale["external_order_id"].casefold()]
        sale["number"] = sale_number(sale["id"])
        for line in lines:
            line["sale_id"] = sale["id"]
    connection.execute(_NUMBER_SALES, {"ids": [sale["id"] for sale, _ in sales]})
    every_line = [line for _, lines in sales for line in lines]
    execute_rows(connection, _INSERTS[LINES], every_line, answer_later=True)


def sale_number(sale_id: int) -> str:
    """A sale's number, once its id is known: S- and the id in at least 8 digits."""
    return f"S-{sale_id:08d}"


def _number_sql() -> ColumnElement[str]:
    """``sale_number`` of each row, in SQL (the same on MySQL and SQLite)."""
    digits = cast(SALES.c.id, String)
    padded = case(
        (SALES.c.id < 10**8, func.substr(literal("0000000", String) + digits, -8)), else_=digits
    )
    return literal("S-", String) + padded


# Built once: a statement object keeps its compiled form's cache key, so executing the same
# object again skips building and keying a new one (a measurable part of a sale's CPU).
_INSERTS = {table: insert(table) for table in (SALES, LINES, CLAIMS)}
_INSERT_LINES_RETURNING = insert(LINES).returning(LINES.c.id, sort_by_parameter_order=True)
_NUMBER_SALE = (
    update(SALES).where(SALES.c.id == bindparam("b_id")).values(number=bindparam("b_number"))
)
_NUMBER_SALES = (
    update(SALES)
    .where(SALES.c.id.in_(bindparam("ids", expanding=True)))
    .values(number=_number_sql())
)
_IDS_BY_ORDER = select(SALES.c.id, SALES.c.external_order_id).where(
    SALES.c.channel_id == bindparam("channel"),
    SALES.c.external_order_id.in_(bindparam("orders", expanding=True)),
)
_ID_BY_KEY = select(SALES.c.id).where(
    SALES.c.created_by_id == bindparam("user"), SALES.c.idempotency_key == bindparam("key")
)


def _values(obj: Sale | SaleLine, table: Table) -> dict[str, Any]:
    """The column values set on a new object (unset ones take the column's default)."""
    return {c.key: v for c in table.columns if (v := getattr(obj, c.key)) is not None}


def _insert(connection: Connection, table: Table, values: dict[str, Any]) -> int:
    key = connection.execute(_INSERTS[table], values).inserted_primary_key
    assert key is not None
    return int(key[0])


def claim_void(session: Session, stock_key: str) -> bool:
    """Claim the stock key for no sale (True, also when it was claimed void before); False
    when a sale claimed it. Waits for a sale's transaction that holds the key uncommitted,
    so the answer is final."""
    try:
        with session.begin_nested():
            session.execute(
                insert(CLAIMS).values(stock_key=stock_key, sale_id=None, claimed_at=utcnow())
            )
    except IntegrityError:  # claimed already: by a sale, or void by an earlier attempt
        found = claim_of(session, stock_key)
        return found is not None and found[0] is None
    return True


def sale_claimed_keys(session: Session, stock_keys: Sequence[str]) -> set[str]:
    """Which of these stock keys a sale claimed."""
    if not stock_keys:
        return set()
    return set(
        session.scalars(
            select(CLAIMS.c.stock_key).where(
                CLAIMS.c.stock_key.in_(stock_keys), CLAIMS.c.sale_id.is_not(None)
            )
        )
    )


def claim_of(session: Session, stock_key: str) -> tuple[int | None] | None:
    """The claim on a stock key: (sale_id,) with None for a void claim; None if unclaimed."""
    row = session.execute(select(CLAIMS.c.sale_id).where(CLAIMS.c.stock_key == stock_key)).first()
    return None if row is None else (row.sale_id,)


# --- listing and export -----------------------------------------------------------------

SALE_SORT: dict[str, Any] = {
    "sold_at": Sale.sold_at,
    "total": Sale.total,
    "number": Sale.number,
    "created_at": Sale.created_at,
}


@dataclass(frozen=True)
class SaleFilters:
    """Which sales a list or export covers; every filter given must hold (AND)."""

    sold_from: datetime | None = None  # inclusive
    sold_to: datetime | None = None  # exclusive
    product_ids: Sequence[int] = ()  # sales with a line of any of these products
    category_paths: Sequence[str] = ()  # sales with a line in any of these subtrees
    search: str | None = None  # a sale number, a marketplace order id or a product's SKU
    channel_ids: Sequence[int] = ()
    statuses: Sequence[SaleStatus] = ()
    stock_syncs: Sequence[StockSync] = ()  # e.g. FAILED: the sales someone has to settle


AnySelect = TypeVar("AnySelect", bound=Select[*tuple[Any, ...]])


def _filtered(stmt: AnySelect, filters: SaleFilters) -> AnySelect:
    if filters.sold_from is not None:
        stmt = stmt.where(Sale.sold_at >= filters.sold_from)
    if filters.sold_to is not None:
        stmt = stmt.where(Sale.sold_at < filters.sold_to)
    if filters.channel_ids:
        stmt = stmt.where(Sale.channel_id.in_(filters.channel_ids))
    if filters.statuses:
        stmt = stmt.where(Sale.status.in_(filters.statuses))
    if filters.stock_syncs:
        stmt = stmt.where(Sale.stock_sync.in_(filters.stock_syncs))
    if filters.product_ids:
        stmt = stmt.where(
            select(SaleLine.id)
            .where(SaleLine.sale_id == Sale.id, SaleLine.product_id.in_(filters.product_ids))
            .correlate(Sale)  # not sale_lines: the export joins them in the outer query too
            .exists()
        )
    if filters.search is not None:
        # Each branch on an index: the number (unique), the order id, the product by SKU.
        products = select(Product.id).where(Product.sku == filters.search)
        stmt = stmt.where(
            or_(
                Sale.number == filters.search,
                Sale.external_order_id == filters.search,
                select(SaleLine.id)
                .where(SaleLine.sale_id == Sale.id, SaleLine.product_id.in_(products))
                .correlate(Sale)
                .exists(),
            )
        )
    if filters.category_paths:
        subtree = select(Category.id).where(
            or_(*(Category.path.like(f"{path}%") for path in filters.category_paths))
        )
        stmt = stmt.where(
            select(SaleLine.id)
            .where(SaleLine.sale_id == Sale.id, SaleLine.category_id.in_(subtree))
            .correlate(Sale)
            .exists()
        )
    return stmt


def list_query(filters: SaleFilters) -> Select[Sale]:
    """Matching sales, their lines loaded with one extra query per page."""
    return _filtered(select(Sale).options(selectinload(Sale.lines)), filters)


EXPORT_COLUMNS = (
    Sale.number,
    Sale.sold_at,
    SalesChannel.code.label("channel"),
    Sale.status,
    SaleLine.line_no,
    SaleLine.sku,
    SaleLine.product_name,
    SaleLine.category_id,
    SaleLine.category_name,
    SaleLine.quantity,
    SaleLine.unit_price,
    SaleLine.line_total,
    SaleLine.refunded_quantity,
    SaleLine.refunded_total,
)


def export_query(filters: SaleFilters, order_by: list[Any]) -> Select[*tuple[Any, ...]]:
    """One row per line of every matching sale, in the list's order, lines in line order."""
    stmt = (
        select(*EXPORT_COLUMNS)
        .join(SaleLine, SaleLine.sale_id == Sale.id)
        .join(SalesChannel, SalesChannel.id == Sale.channel_id)
    )
    return _filtered(stmt, filters).order_by(*order_by, SaleLine.line_no)
