"""SQL for reports: sums over rollup blocks or raw rows, names, the watermark, stock."""

import bisect
import functools
import json
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Numeric,
    Table,
    and_,
    bindparam,
    case,
    cast,
    false,
    func,
    literal_column,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.sql.elements import TextClause

from common.db import number_list, send_prepared_read, send_read
from common.models import (
    Category,
    OutboxPosition,
    Product,
    Sale,
    SaleLine,
    SaleRefund,
    SalesChannel,
    SalesEvent,
    StockLevel,
)
from sales_service.reports.columns import GROUP_BITS, ColumnSums
from sales_service.reports.rollups import (
    ALL_CHANNELS,
    CATEGORY_TABLE,
    PRODUCT_TABLE,
    SALES_TABLE,
    SCOPE_SELF,
    SCOPE_TREE,
    TOTALS_TABLE,
    UNCATEGORIZED,
    Measures,
    floor_sql,
    moment_sql,
)

# Tables, not the ORM's classes: a statement on ORM attributes is compiled and run through the
# ORM's machinery, which a report's few rows of sums do not need and pay for in time.
_LINES: Table = SaleLine.__table__  # type: ignore[assignment]
_SALES: Table = Sale.__table__  # type: ignore[assignment]
_CATEGORIES: Table = Category.__table__  # type: ignore[assignment]
_PRODUCTS: Table = Product.__table__  # type: ignore[assignment]
_CHANNELS: Table = SalesChannel.__table__  # type: ignore[assignment]
_LEVELS: Table = StockLevel.__table__  # type: ignore[assignment]
_EVENTS: Table = SalesEvent.__table__  # type: ignore[assignment]
_POSITIONS: Table = OutboxPosition.__table__  # type: ignore[assignment]
_REFUNDS: Table = SaleRefund.__table__  # type: ignore[assignment]
SLOT_SECONDS = 900  # raw rows are summed per UTC quarter hour, the finest report boundary
Interval = tuple[datetime, datetime]


class Source(StrEnum):
    """Where a report's numbers were read from."""

    SALES_ROLLUPS = "report_sales_rollups"
    PRODUCT_ROLLUPS = "report_product_rollups"
    PRODUCT_TOTALS = "report_product_totals"
    CATEGORY_ROLLUPS = "report_category_rollups"
    RAW = "sales+sale_lines"


SOURCE_TABLES: dict[Source, Table] = {
    Source.SALES_ROLLUPS: SALES_TABLE,
    Source.PRODUCT_ROLLUPS: PRODUCT_TABLE,
    Source.PRODUCT_TOTALS: TOTALS_TABLE,
    Source.CATEGORY_ROLLUPS: CATEGORY_TABLE,
}


class GroupBy(StrEnum):
    NONE = "none"
    PRODUCT = "product"
    CHANNEL = "channel"
    CATEGORY = "category"  # each line under its own snapshot category
    CATEGORY_TREE = "category_tree"  # each line under the group node above its category


@dataclass(frozen=True)
class Query:
    """What to sum: filters (already expanded to ids) and how to group."""

    product_ids: tuple[int, ...] = ()
    category_keys: tuple[int, ...] | None = None  # snapshot categories allowed (0 = none)
    channel_ids: tuple[int, ...] = ()
    group_by: GroupBy = GroupBy.NONE
    # CATEGORY_TREE: snapshot category -> group node (raw rows); rollups read the nodes below
    tree_groups: tuple[tuple[int, int], ...] = ()
    tree_nodes: tuple[int, ...] = ()  # rollup keys read in subtree scope
    self_nodes: tuple[int, ...] = ()  # rollup keys read in own-lines scope
    subtree_node: int | None = None  # the one category (with its subtree) filtered on
    units_only: bool = False  # the other figures may read as 0 (velocity needs only units)


Sums = dict[tuple[int | None, int | None], Measures]  # (bucket index, group)


def _as_utc(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _measures(row: Any) -> Measures:
    return Measures(
        orders=int(row.orders or 0),
        units=int(row.units or 0),
        revenue=Decimal(row.revenue or 0),
        cost=Decimal(row.cost or 0),
    )


# Up to this many intervals (or bucket boundaries) go in as bound parameters: a statement of
# the same shape is then compiled once and reused for any range (a 30-day summary: 2.8 ms,
# against 5.6 when it was compiled afresh with its moments written in). Past it, building,
# keying and binding each parameter costs more than compiling the statement afresh (a weekly
# series of a product over three years: 97 ms with 600 interval pairs bound, 46 written in).
BOUND_INTERVALS = 16
BOUND_BOUNDARIES = 128


def _ranges(column: Any, intervals: Sequence[Interval]) -> ColumnElement[bool] | TextClause:
    """``column`` in any of the intervals; past ``BOUND_INTERVALS`` as SQL text with the
    moments written in (``moment_sql`` takes only a datetime, so nothing else reaches it)."""
    if not intervals:
        return false()
    if len(intervals) <= BOUND_INTERVALS:
        return or_(*[and_(column >= start, column < end) for start, end in intervals])
    name = f"{column.table.name}.{column.name}"
    return text(
        "("
        + " OR ".join(
            f"({name} >= {moment_sql(start)} AND {name} < {moment_sql(end)})"
            for start, end in intervals
        )
        + ")"
    )


Boundaries = Sequence[datetime] | None  # bucket starts (UTC, ascending) to sum per bucket


EPOCH_SQL: Any = literal_column("'1970-01-01 00:00:00'")


def _bucket_of(
    connection: Connection, column: Any, boundaries: Sequence[datetime], shift: int = 0
) -> Any:
    """SQL for the index of the bucket holding ``column`` + ``shift`` seconds (1 = the first),
    or the column itself where the database cannot search a list (SQLite: Python does it
    afterwards)."""
    if connection.dialect.name == "sqlite":
        return column
    # INTERVAL(n, b1, b2, ...) binary-searches the sorted list: one row per bucket comes back.
    # A long list (a daily series over three years has 1,095) is written in as numbers.
    seconds: Any = func.timestampdiff(literal_column("SECOND"), EPOCH_SQL, column)
    if shift:
        seconds = seconds + shift
    if len(boundaries) <= BOUND_BOUNDARIES:
        return func.interval(seconds, *[int(b.timestamp()) for b in boundaries])
    return func.interval(seconds, literal_column(_seconds_list(tuple(boundaries))))


@functools.lru_cache(maxsize=64)
def _seconds_list(boundaries: tuple[datetime, ...]) -> str:
    """The boundaries as seconds since the epoch, comma-separated (whole numbers only)."""
    return ",".join([str(int(b.timestamp())) for b in boundaries])


def _add(sums: Sums, key: tuple[int | None, int | None], measures: Measures) -> None:
    if key in sums:
        sums[key].add(measures)
    else:
        sums[key] = measures


def _key(row: Any) -> tuple[int | None, int | None]:
    """A MySQL/MariaDB row's (bucket index | None, group): INTERVAL numbers buckets from 1."""
    bucket = None if row.bucket is None else int(row.bucket) - 1
    return bucket, None if row.grp is None else int(row.grp)


def _collect_sqlite(
    connection: Connection, stmt: Any, boundaries: Boundaries, *, slots: bool, shift: int
) -> Sums:
    """SQLite rows of (bucket, grp, measures) into sums keyed by (bucket index | None,
    group), each row's bucket found here (SQLite has no INTERVAL)."""
    sums: Sums = {}
    for row in connection.execute(stmt):
        bucket: int | None = None
        if boundaries is not None:
            moment = (
                datetime.fromtimestamp(int(row.bucket) * SLOT_SECONDS, UTC)
                if slots
                else _as_utc(row.bucket) + timedelta(seconds=shift)
            )
            bucket = bisect.bisect_right(boundaries, moment) - 1
        _add(sums, (bucket, None if row.grp is None else int(row.grp)), _measures(row))
    return sums


@functools.cache  # the same four columns in every statement on a table: built once
def _sums_columns(table: Table, units_only: bool) -> tuple[Any, ...]:
    if units_only:
        zero: Any = literal_column("0")
        units = func.sum(table.c.units).label("units")
        return (zero.label("orders"), units, zero.label("revenue"), zero.label("cost"))
    return (
        func.sum(table.c.orders).label("orders"),
        func.sum(table.c.units).label("units"),
        func.sum(table.c.revenue).label("revenue"),
        func.sum(table.c.cost).label("cost"),
    )


def _grouped(
    columns: Sequence[Any],
    where: list[Any],
    bucket: Any,
    group: Any,
    *,
    table: Table | None = None,
) -> Any:
    columns = [
        *columns,
        (group if group is not None else literal_column("NULL")).label("grp"),
        (bucket if bucket is not None else literal_column("NULL")).label("bucket"),
    ]
    stmt = select(*columns)
    if table is not None:
        stmt = stmt.select_from(table)
    else:
        stmt = stmt.select_from(_SALES).join(_LINES, _LINES.c.sale_id == _SALES.c.id)
    stmt = stmt.where(*where)
    keys = [c for c in (bucket, group) if c is not None]
    if keys:
        stmt = stmt.group_by(*keys)
    return stmt


@dataclass(frozen=True)
class Part:
    """One SELECT of (orders, units, revenue, cost, grp, bucket) rows to add up, or sums
    already made (from the rollups held in memory: sales_service/reports/inmemory.py)."""

    stmt: Any
    slots: bool = False  # SQLite: ``bucket`` is a raw quarter-hour slot, not a block start
    shift: int = 0  # SQLite: seconds to add to ``bucket`` (a block start) before bucketing
    sums: ColumnSums | None = None  # instead of ``stmt``
    many: bool = False  # may have a row per product: read as one string (``_packed_rows``)


@dataclass(frozen=True)
class Top:
    """Keep only the first ``limit`` groups by a figure (ties by group id)."""

    figure: str  # revenue | units | margin
    descending: bool
    limit: int


def run_sums(
    connection: Connection, parts: Sequence[Part], boundaries: Boundaries, top: Top | None = None
) -> tuple[Sums, int | None]:
    """Add the parts up per (bucket, group): in one statement on MySQL/MariaDB, where ``top``
    also ranks and cuts there and the number of groups comes back; else part by part.

    Without ``top`` the parts' rows come back as they are (``run_sums_many``) and are added
    up here: a part has a row per (bucket, group), so there are at most a few times as many
    rows as sums, and building an outer SELECT over the union costs more Python than adding
    them does."""
    if not parts:
        return {}, 0
    sums: Sums = {}
    if top is not None and any(part.sums is not None for part in parts):
        return ranked(run_columns(connection, parts, boundaries), top)
    if connection.dialect.name == "sqlite":
        for part in parts:
            found = _collect_sqlite(
                connection, part.stmt, boundaries, slots=part.slots, shift=part.shift
            )
            for key, measures in found.items():
                _add(sums, key, measures)
        return sums, None
    if top is None:
        return run_sums_many(connection, [parts], boundaries)[0], None
    union = union_all(*[part.stmt for part in parts]).subquery()
    total = [
        func.sum(union.c.orders).label("orders"),
        func.sum(union.c.units).label("units"),
        func.sum(union.c.revenue).label("revenue"),
        func.sum(union.c.cost).label("cost"),
        union.c.grp.label("grp"),
        union.c.bucket.label("bucket"),
    ]
    figure = {
        "revenue": func.sum(union.c.revenue),
        "units": func.sum(union.c.units),
        "margin": func.sum(union.c.revenue) - func.sum(union.c.cost),
    }[top.figure]
    order = figure.desc() if top.descending else figure.asc()
    stmt = (
        select(*total, func.count().over().label("groups"))
        .group_by(union.c.bucket, union.c.grp)
        .order_by(order, func.coalesce(union.c.grp, 0))
        .limit(top.limit)
    )
    rows = list(connection.execute(stmt))
    for row in rows:
        sums[_key(row)] = _measures(row)
    return sums, int(rows[0].groups) if rows else 0


def ranked(columns: ColumnSums, top: Top) -> tuple[Sums, int]:
    """The first ``top.limit`` groups by the figure, ties by group id (as the database ranks
    them in ``run_sums``), and how many there were."""
    cut = columns.top(top.figure, top.descending, top.limit)
    return cut.to_sums(), len(columns.keys)


Mixed = tuple[ColumnSums | None, Sums]  # what a batch's parts summed in memory and in SQL


def run_mixed(
    connection: Connection, batches: Sequence[Sequence[Part]], boundaries: Boundaries
) -> list[Mixed]:
    """Each batch's parts summed: those summed in memory already added up as columns, the
    others' rows read from the database, all batches in one round trip on MySQL/MariaDB
    (each part's rows tagged with its batch's index, in one UNION ALL)."""
    found: list[Sums] = [{} for _ in batches]
    made: list[ColumnSums | None] = []
    asked: list[list[Part]] = []
    for parts in batches:
        columns = [part.sums for part in parts if part.sums is not None]
        made.append(ColumnSums.combine(columns) if columns else None)
        asked.append([part for part in parts if part.sums is None])
    if connection.dialect.name == "sqlite":
        found = [run_sums(connection, parts, boundaries)[0] for parts in asked]
        return list(zip(made, found, strict=True))
    tagged = [
        part.stmt.add_columns(literal_column(str(index)).label("batch"))
        for index, parts in enumerate(asked)
        for part in parts
    ]
    if not tagged:
        return list(zip(made, found, strict=True))
    rows: Any = tagged[0] if len(tagged) == 1 else union_all(*tagged)
    if any(columns is not None for columns in made) and any(p.many for b in asked for p in b):
        packed = _packed_rows(connection, rows, boundaries is not None, made)
        if packed is not None:
            return packed
    for row in connection.execute(rows):
        _add(found[int(row.batch)], _key(row), _measures(row))
    return list(zip(made, found, strict=True))


def _number_rows(listed: str | None, limit: int, count: int, width: int) -> np.ndarray | None:
    """``count`` rows of ``width`` whole numbers from a GROUP_CONCAT of them, comma-separated
    (as int64, shape (count, width)); None if the string may have been cut at
    ``group_concat_max_len`` (``limit``, read with it: a cut string is that long). The count
    of numbers alone would not tell a cut inside the last one ("...,2,3" for "...,2,345")."""
    if len(listed or "") >= int(limit):
        return None
    numbers = np.fromstring(listed or "", dtype=np.int64, sep=",")
    if len(numbers) != width * count:
        return None
    return numbers.reshape(count, width)


# what a GROUP_CONCAT is cut at, read with it (``_number_rows``)
_CONCAT_LIMIT: ColumnElement[int] = literal_column("@@session.group_concat_max_len")


NONE = -(1 << 62)  # NULL in ``_packed_rows``' string: far from any sum, bucket or group


def _packed_rows(
    connection: Connection,
    rows: Any,
    bucketed: bool,
    made: Sequence[ColumnSums | None],
) -> list[Mixed] | None:
    """``run_mixed``'s rows read as one string of whole numbers (money in cents), parsed by
    numpy into columns and added to each batch's: the edges of a 30-day top 10 by product
    at 10M sales are some 750 rows, and a row apiece through the driver and a ``Measures``
    took longer than the database did. (A few dozen rows, per category or channel, are read
    as rows: the statement around them costs more than it saves.) None if the string was
    cut short (a connection whose ``group_concat_max_len`` is not raised, as
    snapshot_session's is): then read row by row."""
    union = rows.subquery()

    def number(column: Any, scale: int = 1) -> Any:
        value = column if scale == 1 else cast(column * scale, BigInteger)
        return func.coalesce(value, NONE)

    fields = func.concat_ws(
        ",",
        union.c.batch,
        number(union.c.bucket),
        number(union.c.grp),
        number(union.c.orders),
        number(union.c.units),
        number(union.c.revenue, 100),
        number(union.c.cost, 100),
    )
    count, listed, limit = connection.execute(
        select(func.count(), func.group_concat(fields), _CONCAT_LIMIT)
    ).one()
    rows = _number_rows(listed, limit, int(count), 7)
    if rows is None:
        return None
    table = rows.T
    found: list[Mixed] = []
    for index, columns in enumerate(made):
        mine = np.compress(table[0] == index, table, axis=1)
        bucket, group = mine[1], mine[2]
        grouped = columns.grouped if columns is not None else bool((group != NONE).any())
        keys = (np.where(bucket == NONE, 1, bucket) - 1) << GROUP_BITS  # INTERVAL counts from 1
        keys |= np.where(group == NONE, 0, group)
        totals = np.where(mine[3:] == NONE, 0, mine[3:])  # sums over no rows: NULL
        sums = ColumnSums.reduce(keys, totals, bucketed=bucketed, grouped=grouped)
        if columns is None:
            found.append((None, sums.to_sums()))
        else:
            found.append((ColumnSums.combine([columns, sums]), {}))
    return found


def run_sums_many(
    connection: Connection, batches: Sequence[Sequence[Part]], boundaries: Boundaries
) -> list[Sums]:
    """``run_sums`` of each batch of parts (no ranking), all in one round trip."""
    return [
        sums if columns is None else columns.plus(sums).to_sums()
        for columns, sums in run_mixed(connection, batches, boundaries)
    ]


def run_columns(
    connection: Connection, parts: Sequence[Part], boundaries: Boundaries
) -> ColumnSums:
    """The sums of parts of which some are summed in memory, as columns."""
    columns, sums = run_mixed(connection, [parts], boundaries)[0]
    if columns is None:
        raise ValueError("no part is summed in memory")
    return columns.plus(sums)


def rollup_part(
    connection: Connection,
    source: Source,
    query: Query,
    grain: int,
    intervals: Sequence[Interval],
    *,
    boundaries: Boundaries,
    shift: int = 0,
) -> Part:
    """Sum rollup blocks of one grain starting inside the intervals, per bucket and/or group
    (each block bucketed by its start + ``shift`` seconds)."""
    table = SOURCE_TABLES[source]
    columns = _sums_columns(table, query.units_only)
    where: list[Any] = [table.c.grain == grain, _ranges(table.c.bucket_start, intervals)]
    group: Any = None
    if source is Source.PRODUCT_TOTALS:  # no channel or category filter reaches here
        if query.product_ids:
            where.append(table.c.product_id.in_(query.product_ids))
        if query.group_by is GroupBy.PRODUCT:
            group = table.c.product_id
        bucket = (
            None
            if boundaries is None
            else _bucket_of(connection, table.c.bucket_start, boundaries, shift)
        )
        return Part(_grouped(columns, where, bucket, group, table=table), shift=shift)
    if query.channel_ids:
        where.append(table.c.channel_id.in_(query.channel_ids))
    if query.group_by is GroupBy.CHANNEL:
        group = table.c.channel_id
    if source is Source.SALES_ROLLUPS:
        if query.group_by is GroupBy.CHANNEL and not query.channel_ids:
            where.append(table.c.channel_id != ALL_CHANNELS)
        elif not query.channel_ids:  # the rows of all channels together
            where.append(table.c.channel_id == ALL_CHANNELS)
    elif source is Source.PRODUCT_ROLLUPS:
        if query.product_ids:
            where.append(table.c.product_id.in_(query.product_ids))
        if query.category_keys is not None:
            where.append(table.c.category_key.in_(query.category_keys))
        if query.group_by is GroupBy.PRODUCT:
            group = table.c.product_id
    elif source is Source.CATEGORY_ROLLUPS:
        if query.group_by is GroupBy.CATEGORY:
            where.append(table.c.scope == SCOPE_SELF)
            if query.category_keys is not None:
                where.append(table.c.category_key.in_(query.category_keys))
            group = table.c.category_key
        elif query.group_by is GroupBy.CATEGORY_TREE:
            where.append(
                or_(
                    and_(table.c.scope == SCOPE_TREE, table.c.category_key.in_(query.tree_nodes)),
                    and_(table.c.scope == SCOPE_SELF, table.c.category_key.in_(query.self_nodes)),
                )
            )
            group = table.c.category_key
        else:  # one category with its subtree: its scope-1 row is exactly that filter
            where += [table.c.scope == SCOPE_TREE, table.c.category_key == query.subtree_node]
    bucket = (
        None
        if boundaries is None
        else _bucket_of(connection, table.c.bucket_start, boundaries, shift)
    )
    return Part(_grouped(columns, where, bucket, group, table=table), shift=shift)


def _sqlite_slot(table: str) -> Any:
    """The quarter-hour slot of each row (SQLite, which cannot search a list of buckets)."""
    return literal_column(f"CAST(strftime('%s', {table}.sold_at) AS INTEGER) / {SLOT_SECONDS}")


def _ids_in(column: Any, ids: Iterable[int]) -> Any:
    """``column IN ids``; a long list written into the statement as numbers (``int`` only),
    where coercing and binding each id took SQLAlchemy some 25 us apiece."""
    listed = sorted({int(i) for i in ids})
    if len(listed) <= BOUND_INTERVALS:
        return column.in_(listed)
    if not listed:
        return false()
    name = f"{column.table.name}.{column.name}"
    return literal_column(f"{name} IN ({number_list(listed)})")


def _category_in(column: Any, keys: Iterable[int]) -> Any:
    """``COALESCE(column, 0) IN keys``, written so that an index on the column serves it."""
    wanted = set(keys)
    found = _ids_in(column, wanted - {UNCATEGORIZED})
    return or_(found, column.is_(None)) if UNCATEGORIZED in wanted else found


def _tree_group(groups: Sequence[tuple[int, int]]) -> Any:
    """The group node of each line's category (``CASE``, numbers written in)."""
    whens = " ".join(f"WHEN {int(c)} THEN {int(g)}" for c, g in groups)
    return literal_column(
        f"CASE COALESCE({_LINES.name}.{_LINES.c.category_id.name}, {UNCATEGORIZED}) "
        f"{whens} ELSE NULL END"
    )


def raw_part(
    connection: Connection,
    query: Query,
    intervals: Sequence[Interval],
    *,
    boundaries: Boundaries,
    less: tuple[int, int] | None = None,
) -> Part | None:
    """The same sums straight from sales and sale_lines, per bucket and/or group.

    Filtered on products or categories, the lines of the period are found by their own
    ``sold_at`` (indexed after the product and the category), and the sales are joined only
    for a channel; else the period's sales are found first and their lines by sale.

    With ``less`` = (grain, shift), the sums are negated and bucketed as the rollup block of
    that grain holding them is (its start + shift): what a trimmed block takes off."""
    if query.group_by is GroupBy.CATEGORY_TREE and not query.tree_groups:
        return None
    line_category = func.coalesce(_LINES.c.category_id, UNCATEGORIZED)
    by_lines = bool(query.product_ids) or query.category_keys is not None
    needs_sales = not by_lines or bool(query.channel_ids) or query.group_by is GroupBy.CHANNEL
    moment = _LINES.c.sold_at if by_lines else _SALES.c.sold_at
    group: Any = None
    if query.group_by is GroupBy.PRODUCT:
        group = _LINES.c.product_id
    elif query.group_by is GroupBy.CHANNEL:
        group = _SALES.c.channel_id
    elif query.group_by is GroupBy.CATEGORY:
        group = line_category
    elif query.group_by is GroupBy.CATEGORY_TREE:
        group = _tree_group(query.tree_groups)
    net_units = _LINES.c.quantity - _LINES.c.refunded_quantity
    sign = 1 if less is None else -1
    columns: list[Any] = [
        (
            sign * func.count(func.distinct(case((net_units > 0, _LINES.c.sale_id), else_=None)))
        ).label("orders"),
        (sign * func.sum(net_units)).label("units"),
        (sign * func.sum(_LINES.c.line_total - _LINES.c.refunded_total)).label("revenue"),
        (sign * func.sum(_LINES.c.line_cost - _LINES.c.refunded_cost)).label("cost"),
    ]
    where: list[Any] = [_ranges(moment, intervals)]
    if query.product_ids:
        where.append(_ids_in(_LINES.c.product_id, query.product_ids))
    if query.category_keys is not None:
        where.append(_category_in(_LINES.c.category_id, query.category_keys))
    if query.channel_ids:
        where.append(_ids_in(_SALES.c.channel_id, query.channel_ids))
    if query.group_by is GroupBy.CATEGORY_TREE:
        where.append(_category_in(_LINES.c.category_id, [c for c, _ in query.tree_groups]))
    bucket = None
    table = "sale_lines" if by_lines else "sales"
    dialect = connection.dialect.name
    if boundaries is not None and less is not None:
        grain, shift = less
        block: Any = literal_column(floor_sql(dialect, grain, f"{table}.sold_at"))
        bucket = _bucket_of(connection, block, boundaries, shift)
    elif boundaries is not None:
        # per quarter-hour slot on SQLite: each sale is in one slot, so distinct counts add up
        sqlite = dialect == "sqlite"
        bucket = _sqlite_slot(table) if sqlite else _bucket_of(connection, moment, boundaries)
    stmt = _grouped(columns, where, bucket, group, table=None if needs_sales else _LINES)
    many = query.group_by is GroupBy.PRODUCT
    if less is not None:
        return Part(stmt, shift=less[1], many=many)
    return Part(stmt, slots=True, many=many)


# --- catalog and names -------------------------------------------------------------------


# Statements that never change are built once: building one costs more of a report's time
# than the database takes to answer it (1-2 ms of SQLAlchemy's Python for the watermark's
# against 0.3 ms of the database's).
_CATEGORIES_NOW = select(_CATEGORIES.c.id, _CATEGORIES.c.path, _CATEGORIES.c.name)


def categories(connection: Connection) -> dict[int, tuple[str, str]]:
    """(path, name) per category id."""
    return {row.id: (row.path, row.name) for row in connection.execute(_CATEGORIES_NOW)}


def product_refs(connection: Connection, ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """(sku, name) per product id: the ids written in (``number_list``)."""
    listed = number_list(ids)
    if not listed:
        return {}
    return _refs(connection.exec_driver_sql(_REFS.format(listed)))


_REFS = f"SELECT id, sku, name FROM {_PRODUCTS.name} WHERE id IN ({{}})"  # noqa: S608


def _refs(rows: Iterable[Sequence[Any]]) -> dict[int, tuple[str, str]]:
    return {int(row[0]): (str(row[1]), str(row[2])) for row in rows}


def channel_names(connection: Connection, ids: Iterable[int] | None = None) -> dict[int, str]:
    stmt = select(_CHANNELS.c.id, _CHANNELS.c.name)
    if ids is not None:
        stmt = stmt.where(_CHANNELS.c.id.in_(set(ids)))
    return {row.id: row.name for row in connection.execute(stmt)}


def product_ids(
    connection: Connection, product_ids: Sequence[int], category_keys: Sequence[int] | None
) -> list[int]:
    """The products named, or in the categories (by their current category)."""
    stmt = select(_PRODUCTS.c.id)
    if product_ids:
        stmt = stmt.where(_PRODUCTS.c.id.in_(product_ids))
    if category_keys is not None:
        stmt = stmt.where(func.coalesce(_PRODUCTS.c.category_id, UNCATEGORIZED).in_(category_keys))
    return sorted(connection.scalars(stmt))


@dataclass(frozen=True)
class InsightRow:
    product_id: int
    sku: str
    name: str
    available: int
    units: int


def insight_page(
    connection: Connection,
    sold: Sequence[Part],
    product_ids: Sequence[int] | None,
    *,
    window_days: int,
    limit: int,
    offset: int,
) -> tuple[list[InsightRow], int | None]:
    """Products with stock or sales: available units (on hand less reserved, all warehouses)
    and net units sold (the sum of ``sold``).

    On MySQL/MariaDB the database ranks by days of cover (as the service does: rounded to
    the cent, none available first, no sales last, then id) and returns one page with the
    total; elsewhere every row comes back and the total is None.
    """
    stock = (
        select(
            _LEVELS.c.product_id.label("product_id"),
            func.sum(_LEVELS.c.on_hand - _LEVELS.c.reserved).label("available"),
        )
        .group_by(_LEVELS.c.product_id)
        .subquery()
    )
    available = func.coalesce(stock.c.available, 0)
    columns: list[Any] = [
        _PRODUCTS.c.id,
        _PRODUCTS.c.sku,
        _PRODUCTS.c.name,
        available.label("available"),
    ]
    stmt = select(*columns).outerjoin(stock, stock.c.product_id == _PRODUCTS.c.id)
    present: list[Any] = [stock.c.product_id.is_not(None)]
    units: Any = literal_column("0")
    if sold:
        union = union_all(*[part.stmt for part in sold]).subquery()
        per_product = (
            select(union.c.grp.label("product_id"), func.sum(union.c.units).label("units"))
            .group_by(union.c.grp)
            .subquery()
        )
        stmt = stmt.outerjoin(per_product, per_product.c.product_id == _PRODUCTS.c.id)
        units = func.coalesce(per_product.c.units, 0)
        present.append(per_product.c.product_id.is_not(None))
    stmt = stmt.add_columns(units.label("units")).where(or_(*present))
    if product_ids is not None:
        stmt = stmt.where(_PRODUCTS.c.id.in_(product_ids))
    paged = connection.dialect.name != "sqlite"
    if paged:
        exact = cast(available, Numeric(30, 10)) * window_days / units
        cover = case((available <= 0, 0), (units > 0, func.round(exact, 2)), else_=None)
        stmt = (
            stmt.add_columns(func.count().over().label("total"))
            .order_by(cover.is_(None), cover, _PRODUCTS.c.id)
            .limit(limit)
            .offset(offset)
        )
    rows = list(connection.execute(stmt))
    found = [
        InsightRow(
            product_id=row.id,
            sku=row.sku,
            name=row.name,
            available=int(row.available),
            units=int(row.units),
        )
        for row in rows
    ]
    if not paged:
        return found, None
    if rows:
        return found, int(rows[0].total)
    counted = select(func.count()).select_from(
        stmt.order_by(None).limit(None).offset(None).subquery()
    )
    return found, int(connection.scalar(counted) or 0)


_AVAILABLE = select(
    _LEVELS.c.product_id,
    # a whole number, not the DECIMAL a SUM gives: read 4x quicker
    cast(func.sum(_LEVELS.c.on_hand - _LEVELS.c.reserved), BigInteger).label("available"),
).group_by(_LEVELS.c.product_id)


# Every stock level in one pass (summed per product in numpy: grouped and then concatenated
# in a derived table, the database took twice as long for a thousand levels).
_AVAILABLE_AT_ONCE = text(
    "SELECT COUNT(*), GROUP_CONCAT(product_id, ',', on_hand - reserved SEPARATOR ','), "
    "@@session.group_concat_max_len, MAX(updated_at) FROM stock_levels"
)


@dataclass(frozen=True)
class PerProduct:
    """A number per product: ``products`` ascending and distinct, ``values`` alongside."""

    products: np.ndarray  # int64
    values: np.ndarray  # int64

    def at(self, products: np.ndarray) -> np.ndarray:
        """The values of these products, 0 for those not listed."""
        if not len(self.products):
            return np.zeros(len(products), dtype=np.int64)
        place = np.minimum(np.searchsorted(self.products, products), len(self.products) - 1)
        return np.where(self.products[place] == products, self.values[place], 0)


def available_units(connection: Connection) -> tuple[PerProduct, datetime | None]:
    """Available units (on hand less reserved, all warehouses) per product with stock rows,
    and when a stock level last changed (MySQL/MariaDB).

    As one string of numbers, parsed by numpy: a row per product took 6.5 ms for 1,000
    products, this 0.6. A string cut at ``group_concat_max_len`` (a connection not set as
    snapshot_connection's are): then read row by row."""
    return _available(connection, connection.execute(_AVAILABLE_AT_ONCE).one())


def send_available_units(
    connection: Connection,
) -> Callable[[], tuple[PerProduct, datetime | None]]:
    """``available_units``, its statement sent now without waiting (``send_read``) and its
    answer read when the function returned is called: sent with a report's first
    statement, it is answered while the report plans and sums (a round trip of 0.7-1.0 ms
    at 1,000 products). Where the driver cannot send early, the statement is run then."""
    rows = send_read(connection, _AVAILABLE_AT_ONCE.text, {})
    if rows is None:
        return functools.partial(available_units, connection)
    return lambda: _available(connection, rows()[0])


def _available(connection: Connection, found: Sequence[Any]) -> tuple[PerProduct, datetime | None]:
    count, listed, limit, last = found
    pairs = _number_rows(listed, limit, int(count), 2)
    updated = None if last is None else _as_utc(last)
    if pairs is None:
        rows = list(connection.execute(_AVAILABLE))  # one a product
        pairs = np.array(rows, dtype=np.int64).reshape(-1, 2)
    products, level_of = np.unique(pairs[:, 0], return_inverse=True)
    units = np.zeros(len(products), dtype=np.int64)
    np.add.at(units, level_of, pairs[:, 1])
    return PerProduct(products, units), updated


class _Ranked(NamedTuple):
    products: list[int]  # the page's, in order
    available: list[int]
    units: list[int]
    total: int  # products ranked, on every page


def _rank(
    units: PerProduct,
    available: PerProduct,
    product_ids: Sequence[int] | None,
    *,
    window_days: int,
    limit: int,
    offset: int,
) -> _Ranked:
    """``insight_page``'s order, page and total, from the units sold per product (those with
    lines in the window) and the available units."""
    products, stock, sold = _side_by_side(available, units)
    if product_ids is not None:
        kept = np.isin(products, np.array(product_ids, dtype=np.int64))
        products, stock, sold = products[kept], stock[kept], sold[kept]
    # As the database ranks: days of cover rounded half up to the cent, none available
    # first (0), nothing sold last (null), then by id.
    selling = (stock > 0) & (sold > 0)
    safe = np.where(selling, sold, 1)
    cover = np.where(selling, (stock * window_days * 200 + safe) // (2 * safe), 0)
    idle = (stock > 0) & (sold <= 0)
    order = np.lexsort((products, cover, idle))[offset : offset + limit]
    return _Ranked(
        products[order].tolist(), stock[order].tolist(), sold[order].tolist(), len(products)
    )


def _side_by_side(a: PerProduct, b: PerProduct) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every product of either, ascending, with its value in each (0 where not listed).
    Ids as a catalog numbers them (from 1, few gaps) are placed in arrays as long as the
    highest id: 6 steps of 1,000 numbers, where a sorted union and two lookups took 0.3 ms
    at 1,000 products."""
    top = max(
        int(a.products[-1]) if len(a.products) else 0, int(b.products[-1]) if len(b.products) else 0
    )
    if top >= 4 * (len(a.products) + len(b.products)) + (1 << 16):  # sparse: sorted instead
        products = np.union1d(a.products, b.products)
        return products, a.at(products), b.at(products)
    listed = np.zeros(top + 1, dtype=bool)
    listed[a.products] = True
    listed[b.products] = True
    products = np.flatnonzero(listed)
    values = np.zeros((2, top + 1), dtype=np.int64)
    values[0, a.products] = a.values
    values[1, b.products] = b.values
    return products, values[0, products], values[1, products]


# The stock the last ranking read, per engine: what the next one's page is guessed from.
_LAST_STOCK: "weakref.WeakKeyDictionary[Engine, PerProduct]" = weakref.WeakKeyDictionary()


def send_page_refs(
    connection: Connection,
    units: PerProduct,
    product_ids: Sequence[int] | None,
    **page: int,
) -> Callable[[], dict[int, tuple[str, str]]] | None:
    """The names of the page ``insight_ranked`` will most likely give, sent now without
    waiting (``send_read``): ranked with the stock the last ranking read, which changes by
    a few units between reports, while this report's stock is still on its way. None where
    no ranking was made yet or the driver cannot send early. Whatever the guess misses,
    ``insight_ranked`` reads."""
    stock = _LAST_STOCK.get(connection.engine)
    if stock is None:
        return None
    sold = units.values != 0  # (zeros are mostly groups of a trimmed block, rechecked later)
    units = PerProduct(units.products[sold], units.values[sold])
    listed = number_list(_rank(units, stock, product_ids, **page).products)
    rows = send_read(connection, _REFS.format(listed), {}) if listed else None
    return None if rows is None else lambda: _refs(rows())


def insight_ranked(
    connection: Connection,
    units: PerProduct,
    available: PerProduct,
    product_ids: Sequence[int] | None,
    *,
    window_days: int,
    limit: int,
    offset: int,
    guessed: Callable[[], dict[int, tuple[str, str]]] | None = None,
) -> tuple[list[InsightRow], int]:
    """``insight_page`` ranked here: the same order, page and total as the database's. The
    names come from ``guessed`` (``send_page_refs``) where it has them."""
    _LAST_STOCK[connection.engine] = available
    ranked = _rank(
        units, available, product_ids, window_days=window_days, limit=limit, offset=offset
    )
    refs = guessed() if guessed is not None else {}
    if missing := [p for p in ranked.products if p not in refs]:
        refs = {**refs, **product_refs(connection, missing)}
    rows = [
        InsightRow(product_id=p, sku=refs[p][0], name=refs[p][1], available=a, units=u)
        for p, a, u in zip(ranked.products, ranked.available, ranked.units, strict=True)
    ]
    return rows, ranked.total


def stock_updated_at(connection: Connection) -> datetime | None:
    value = connection.scalar(select(func.max(_LEVELS.c.updated_at)))
    return None if value is None else _as_utc(value)


@dataclass(frozen=True)
class WatermarkRow:
    latest_sale_id: int | None
    latest_sale_created_at: datetime | None
    sales_updated_at: datetime | None
    latest_refund_id: int | None


# The watermark's four figures, as columns any statement of the snapshot can carry (each an
# index lookup; the newest sale's two read apart, not from one derived table made twice).
_MARK = (
    select(func.max(_SALES.c.id)).scalar_subquery().label("latest"),
    select(_SALES.c.created_at)
    .order_by(_SALES.c.id.desc())
    .limit(1)
    .scalar_subquery()
    .label("created"),
    select(func.max(_SALES.c.updated_at)).scalar_subquery().label("updated"),
    select(func.max(_REFUNDS.c.id)).scalar_subquery().label("refund"),
)
_WATERMARK = select(*_MARK)
_PENDING = (
    select(_POSITIONS.c.needs_rebuild, _SALES.c.sold_at, *_MARK)
    .distinct()
    .select_from(_POSITIONS)
    .outerjoin(_EVENTS, _EVENTS.c.id > _POSITIONS.c.position)
    .outerjoin(_SALES, _SALES.c.id == _EVENTS.c.subject_id)
    .where(_POSITIONS.c.consumer == bindparam("consumer"))
    .order_by(_SALES.c.sold_at)
)
_PENDING_BEFORE_START = (  # the consumer has not started yet: every event is after it
    select(literal_column("0").label("needs_rebuild"), _SALES.c.sold_at, *_MARK)
    .distinct()
    .join(_EVENTS, _EVENTS.c.subject_id == _SALES.c.id)
    .order_by(_SALES.c.sold_at)
)


# Every channel's name, where there are few (as they are): a report per channel then needs
# no statement of its own for them (a round trip of 0.4-0.7 ms); NULL past that many.
LISTED_CHANNELS = 64
_CHANNEL_NAMES = (
    select(
        case(
            (
                func.count() <= LISTED_CHANNELS,
                func.json_arrayagg(func.json_array(_CHANNELS.c.id, _CHANNELS.c.name)),
            ),
            else_=None,
        )
    )
    .scalar_subquery()
    .label("channels")
)
# One column, a JSON array of the eight figures: every report reads this row, and the
# driver's parsing of eight columns' descriptions and values took 0.1 ms more than of one.
_PENDING_SINCE = (
    select(
        func.json_array(
            _POSITIONS.c.position,
            _POSITIONS.c.needs_rebuild,
            _POSITIONS.c.generation,
            _SALES.c.sold_at,
            *_MARK,
        )
    )
    .select_from(_POSITIONS)  # a row per event after it (sorted and made distinct here)
    .outerjoin(_EVENTS, _EVENTS.c.id > bindparam("since"))
    .outerjoin(_SALES, _SALES.c.id == _EVENTS.c.subject_id)
    .where(_POSITIONS.c.consumer == bindparam("consumer"))
)
# and with the channels' names, for a report per channel (the others would pay ~0.1 ms of a
# 30-day summary's 1.3 for a subquery they do not use)
_PENDING_SINCE_NAMED = _PENDING_SINCE.add_columns(_CHANNEL_NAMES)


@dataclass(frozen=True)
class ConsumerState:
    position: int
    needs_rebuild: bool
    generation: int


@dataclass(frozen=True)
class Pending:
    """What a report reads first when it sums from the copy of the rollups."""

    state: ConsumerState
    times: list[datetime]  # when each sale sold that an event after the copy changed
    mark: WatermarkRow
    channels: dict[int, str] | None  # every channel's name; None where there are many


class _PendingRow(NamedTuple):
    position: int
    needs_rebuild: int
    generation: int
    sold_at: str | None  # (the datetimes as JSON writes them)
    latest: int | None
    created: str | None
    updated: str | None
    refund: int | None
    channels: str | None = None  # read only where asked for


@functools.cache
def _pending_sql(dialect: Dialect, channels: bool) -> tuple[str, dict[str, Any]]:
    """``_PENDING_SINCE`` (with the channels' names: ``_PENDING_SINCE_NAMED``) compiled once,
    as the driver takes it, with its fixed parameters."""
    compiled = (_PENDING_SINCE_NAMED if channels else _PENDING_SINCE).compile(dialect=dialect)
    return str(compiled), dict(compiled.params)


def pending_since(
    connection: Connection, consumer: str, since: int, *, channels: bool = False
) -> Pending | None:
    """The consumer's state, when each sale sold that an event after ``since`` changed
    (sorted, distinct), the snapshot's watermark and, with ``channels``, the channels'
    names, in one round trip; None before the consumer's first pass.

    Every report summed from the copy sends this statement first, so it goes to the
    driver's cursor as compiled once (MySQL/MariaDB): SQLAlchemy's execution around it
    took a third of the time of a 30-day summary's whole statement."""
    sql, fixed = _pending_sql(connection.dialect, channels)
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql, {**fixed, "consumer": consumer, "since": since})
        return _pending(cursor.fetchall())
    finally:
        cursor.close()


def send_pending_since(
    connection: Connection, consumer: str, since: int, *, channels: bool = False
) -> Callable[[], Pending | None] | None:
    """``pending_since``'s statement sent without waiting for its answer, and prepared once
    per connection (``send_prepared_read``): its answer, read when the function returned is
    called. None where the driver cannot."""
    sql, fixed = _pending_sql(connection.dialect, channels)
    rows = send_prepared_read(connection, sql, {**fixed, "consumer": consumer, "since": since})
    return None if rows is None else lambda: _pending(rows())


def _pending(found: Iterable[tuple[Any, ...]]) -> Pending | None:
    rows = [_PendingRow(*json.loads(figures), *channels) for figures, *channels in found]
    if not rows:
        return None
    first = rows[0]
    state = ConsumerState(int(first.position), bool(first.needs_rebuild), int(first.generation))
    times = sorted({_as_utc(row.sold_at) for row in rows if row.sold_at is not None})
    return Pending(state, times, _watermark(first), _channels(first.channels))


def _channels(listed: str | None) -> dict[int, str] | None:
    """The channels' names from their JSON array; None if there was none, or if it was cut
    short at ``group_concat_max_len`` (which bounds JSON_ARRAYAGG too; snapshot_session's
    connections raise it): the names are then looked up."""
    try:
        return None if listed is None else {int(c): str(name) for c, name in json.loads(listed)}
    except ValueError:
        return None


def pending_sale_times(
    connection: Connection, consumer: str
) -> tuple[list[datetime] | None, WatermarkRow]:
    """When each sale sold that an event after the rollup consumer's position changed
    (sorted, distinct): the rollup blocks holding them do not include those events yet.
    None while the consumer has a rebuild to do: the rollups then hold nothing to go by.
    And the snapshot's watermark, read with them.

    One round trip: the consumer's position row, joined to the events after it."""
    rows = list(connection.execute(_PENDING, {"consumer": consumer}))
    if not rows:
        rows = list(connection.execute(_PENDING_BEFORE_START))
    mark = _watermark(rows[0]) if rows else watermark(connection)
    if rows and rows[0].needs_rebuild:
        return None, mark
    return [_as_utc(row.sold_at) for row in rows if row.sold_at is not None], mark


def watermark(connection: Connection) -> WatermarkRow:
    """The newest sale, refund and change the report's snapshot holds (index lookups, one
    round trip)."""
    return _watermark(connection.execute(_WATERMARK).one())


def _watermark(row: Any) -> WatermarkRow:
    return WatermarkRow(
        latest_sale_id=row.latest,
        latest_sale_created_at=None if row.created is None else _as_utc(row.created),
        sales_updated_at=None if row.updated is None else _as_utc(row.updated),
        latest_refund_id=row.refund,
    )
