"""Report rollups: exact net sums, kept by one consumer of the sales outbox.

Four tables (models in common/models.py) hold the net figures defined in
sales_service/reports/service.py, summed per block of UTC time. Each keeps only the grains
that fit in fewer rows than the raw lines they sum (on three years of a thousand products,
all four together hold fewer rows than there are sale lines):

- ``report_sales_rollups``: per UTC hour, day, month and year, per channel and for all
  channels together (channel_id 0, a fifth of the rows to read for the shop's totals). Any
  calendar period of a whole-hour zone starts and ends on an hour in UTC, so a period is a
  handful of these blocks; zones at half or quarter past (+05:30, +05:45) read the part of
  an hour at each end from the raw sales.
- ``report_product_rollups``: per UTC month and year, product, channel and the line's
  category snapshot; ``orders`` counts the sales holding that product.
- ``report_product_totals``: per UTC day, month and year and product only, for rankings,
  product series and velocities over all channels.
- ``report_category_rollups``: per UTC month and year, category and channel, and per UTC
  day for all channels together (channel_id 0); scope 0 counts the lines of exactly that
  category, scope 1 those of its whole subtree (as the category paths were when counted:
  see ``report_category_paths``), so that a subtree's orders count each sale once.

A period of a zone is cut into the largest whole blocks these grains have, and what is left
(the part of a day at each end where a zone's days do not start at 00:00 UTC, less for the
sales figures) is read from the raw rows, or, where it is most of a block, as that block
less the raw rows of the rest of it (see sales_service/reports/planner.py).

Every block row is only ever changed by adding what a batch of sale events (sales and
refunds, see sales_service/events.py) changed, with one ``INSERT ... ON DUPLICATE KEY UPDATE
x = x + new`` per table, by the one consumer (sales_service/reports/consumer.py) that moves
its outbox position in the same transaction (a batch of many new sales, such as a bulk
import's, is summed by the database from the sales' lines instead: ``apply_new_sales``).
No sale writes a rollup, so the sale path
never waits on one, and with one writer no row is hot (the ``shard`` column is always 0).
Reports read the rollups together with the raw rows of the blocks that events after the
consumer's position touched, in one snapshot, so they are exact however far it lags.

``rebuild_rollups`` recomputes all of them from the raw rows with INSERT ... SELECT ... GROUP BY
(used after bulk loads and to repair; run it while no sale is being recorded). Tests prove
that the events and the rebuild give the same rows.
"""

import calendar
import functools
import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.orm import Session

from common.db import UTCDateTime, connection_of
from common.models import (
    Category,
    OutboxPosition,
    ReportCategoryPath,
    ReportCategoryRollup,
    ReportProductRollup,
    ReportProductTotal,
    ReportSalesRollup,
    Sale,
    SaleLine,
    SaleRefund,
    new_generation,
)

HOUR, DAY, MONTH, YEAR = 2, 3, 4, 5  # the values stored in the ``grain`` columns
SALES_GRAINS = (HOUR, DAY, MONTH, YEAR)  # finest first
PRODUCT_GRAINS = (MONTH, YEAR)
TOTAL_GRAINS = (DAY, MONTH, YEAR)
CATEGORY_GRAINS = (MONTH, YEAR)  # per channel
CATEGORY_DAY_GRAINS = (DAY,)  # all channels together
ALL_CHANNELS = 0  # the channel_id of rows for all channels together (no channel has id 0)
SHARDS = 1  # one writer (the consumer) keeps the rollups, so no row is hot
SCOPE_SELF, SCOPE_TREE = 0, 1
UNCATEGORIZED = 0
ZERO = Decimal("0.00")
CENT = Decimal("0.01")

SALES_TABLE: Table = ReportSalesRollup.__table__  # type: ignore[assignment]
PRODUCT_TABLE: Table = ReportProductRollup.__table__  # type: ignore[assignment]
TOTALS_TABLE: Table = ReportProductTotal.__table__  # type: ignore[assignment]
CATEGORY_TABLE: Table = ReportCategoryRollup.__table__  # type: ignore[assignment]
PATHS_TABLE: Table = ReportCategoryPath.__table__  # type: ignore[assignment]
POSITIONS_TABLE: Table = OutboxPosition.__table__  # type: ignore[assignment]
CONSUMER = "report-rollups"  # the consumer that keeps them (sales_service/reports/consumer.py)
ROLLUP_TABLES = (SALES_TABLE, PRODUCT_TABLE, TOTALS_TABLE, CATEGORY_TABLE)
MEASURES = ("orders", "units", "revenue", "cost")


# --- UTC blocks -------------------------------------------------------------------------


def grain_floor(grain: int, moment: datetime) -> datetime:
    """The start of the UTC block of this grain that holds ``moment`` (aware, in UTC)."""
    t = moment.astimezone(UTC)
    if grain == HOUR:
        return t.replace(minute=0, second=0, microsecond=0)
    if grain == DAY:
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    if grain == MONTH:
        return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if grain == YEAR:
        return t.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"unknown grain {grain}")


def grain_next(grain: int, start: datetime) -> datetime:
    """The start of the block after the one starting at ``start``."""
    if grain == HOUR:
        return start + timedelta(hours=1)
    if grain == DAY:
        return start + timedelta(days=1)
    if grain == MONTH:
        days = calendar.monthrange(start.year, start.month)[1]
        return start + timedelta(days=days)
    if grain == YEAR:
        return start.replace(year=start.year + 1)
    raise ValueError(f"unknown grain {grain}")


def grain_ceil(grain: int, moment: datetime) -> datetime:
    floor = grain_floor(grain, moment)
    return floor if floor == moment else grain_next(grain, floor)


# --- what one sale contributes ----------------------------------------------------------


@dataclass
class Measures:
    """Net sums; ``orders`` counts sales (see the report definitions)."""

    orders: int = 0
    units: int = 0
    revenue: Decimal = ZERO
    cost: Decimal = ZERO

    def add(self, other: "Measures") -> None:
        self.orders += other.orders
        self.units += other.units
        self.revenue += other.revenue
        self.cost += other.cost

    def negated(self) -> "Measures":
        return Measures(-self.orders, -self.units, -self.revenue, -self.cost)

    def plus(self, other: "Measures") -> "Measures":
        return Measures(
            self.orders + other.orders,
            self.units + other.units,
            self.revenue + other.revenue,
            self.cost + other.cost,
        )

    def is_zero(self) -> bool:
        return not (self.orders or self.units or self.revenue or self.cost)


@dataclass(frozen=True)
class LineState:
    """One sale line's net figures at some moment."""

    product_id: int
    category_id: int | None
    units: int
    revenue: Decimal
    cost: Decimal


def ancestry(path: str | None, category_id: int) -> list[int]:
    """Ids from the root down to the category itself, read from a path such as "/1/5/9/"."""
    ids = [int(part) for part in (path or "").split("/") if part]
    return ids if ids and ids[-1] == category_id else [*ids, category_id]


Key = tuple[Any, ...]  # a rollup row's primary key: (grain, block start, *its group)
Sums = list[Any]  # [orders, units, revenue, cost], added to in place


@dataclass(frozen=True, eq=False)  # eq=False: a dict key by identity, hashed at no cost
class _Family:
    """Rows of one rollup table kept at some grains (finest first) for one kind of group."""

    table: Table
    grains: tuple[int, ...]


_SALES = _Family(SALES_TABLE, SALES_GRAINS)  # group: (channel, shard)
_PRODUCTS = _Family(PRODUCT_TABLE, PRODUCT_GRAINS)  # (product, channel, category)
_TOTALS = _Family(TOTALS_TABLE, TOTAL_GRAINS)  # (product,)
_CATEGORIES = _Family(CATEGORY_TABLE, CATEGORY_GRAINS)  # (scope, node, channel, shard)
_CATEGORY_DAYS = _Family(CATEGORY_TABLE, CATEGORY_DAY_GRAINS)  # the same, all channels
_FAMILIES = (_SALES, _PRODUCTS, _TOTALS, _CATEGORIES, _CATEGORY_DAYS)
_FINEST = sorted({family.grains[0] for family in _FAMILIES})


class _Sum:
    """What some of a sale's lines add up to, and whether one of them has units left."""

    __slots__ = ("cost", "live", "revenue", "units")

    def __init__(self) -> None:
        self.units, self.revenue, self.cost, self.live = 0, ZERO, ZERO, False

    def add(self, line: LineState) -> None:
        self.units += line.units
        self.revenue += line.revenue
        self.cost += line.cost
        self.live = self.live or line.units > 0


class _Batch:
    """What a batch of sale changes adds to the rollups, summed per group and finest block
    first (sales of one hour, of one category on one day, ... add to the same sums), then
    spread over the coarser grains once per sum rather than once per sale. Blocks nest in
    UTC (an hour lies in one day, a day in one month), so a coarser block's sums are those
    of the finest blocks in it."""

    def __init__(self, paths: dict[int, str]) -> None:
        self.paths = paths
        self.sums: dict[tuple[_Family, Key, datetime], Sums] = {}

    def add_sale(
        self,
        *,
        sale_id: int,
        channel_id: int,
        sold_at: datetime,
        lines: Sequence[LineState],
        sign: int,
    ) -> None:
        """Add (``sign`` 1) or take away (-1) one sale's contribution given its lines' net
        state. Its lines are summed per group first, so each group counts the sale once
        (``orders``: the sale is an order of every group one of its lines with units left
        is in)."""
        if not lines:
            return
        shard = sale_id % SHARDS
        floor = {grain: grain_floor(grain, sold_at) for grain in _FINEST}
        whole = _Sum()
        products: dict[int, _Sum] = defaultdict(_Sum)
        placed: dict[tuple[int, int], _Sum] = defaultdict(_Sum)  # (product, category)
        categories: dict[int, _Sum] = defaultdict(_Sum)
        subtrees: dict[int, _Sum] = defaultdict(_Sum)  # every node above a line's category
        for line in lines:
            category = line.category_id if line.category_id is not None else UNCATEGORIZED
            nodes = (
                ancestry(self.paths.get(category), category)
                if category != UNCATEGORIZED
                else [category]
            )
            whole.add(line)
            products[line.product_id].add(line)
            placed[(line.product_id, category)].add(line)
            categories[category].add(line)
            for node in nodes:
                subtrees[node].add(line)

        def add(family: _Family, group: Key, part: _Sum) -> None:
            self._add((family, group, floor[family.grains[0]]), part, sign)

        for channel in (channel_id, ALL_CHANNELS):
            add(_SALES, (channel, shard), whole)
        for (product_id, category), part in placed.items():
            add(_PRODUCTS, (product_id, channel_id, category), part)
        for product_id, part in products.items():
            add(_TOTALS, (product_id,), part)
        for scope, groups in ((SCOPE_SELF, categories), (SCOPE_TREE, subtrees)):
            for node, part in groups.items():
                add(_CATEGORIES, (scope, node, channel_id, shard), part)
                add(_CATEGORY_DAYS, (scope, node, ALL_CHANNELS, shard), part)

    def _add(self, at: tuple[_Family, Key, datetime], part: _Sum, sign: int) -> None:
        sums = self.sums.get(at)
        if sums is None:
            self.sums[at] = [
                sign * part.live,
                sign * part.units,
                sign * part.revenue,
                sign * part.cost,
            ]
        else:
            sums[0] += sign * part.live
            sums[1] += sign * part.units
            sums[2] += sign * part.revenue
            sums[3] += sign * part.cost

    def rows(self) -> dict[Table, dict[Key, Sums]]:
        """Every rollup row the batch adds to, by table and key, and what it adds (zero
        included: a group a line belongs to is listed even when its sale was refunded in the
        same batch, as a rebuild from raw rows lists it)."""
        out: dict[Table, dict[Key, Sums]] = {table: {} for table in ROLLUP_TABLES}
        for (family, group, start), sums in self.sums.items():
            rows = out[family.table]
            for grain in family.grains:
                key = (grain, _coarser(grain, start), *group)
                found = rows.get(key)
                if found is None:
                    rows[key] = list(sums)
                else:
                    for i in range(4):
                        found[i] += sums[i]
        return out


@functools.lru_cache(maxsize=8192)
def _coarser(grain: int, start: datetime) -> datetime:
    """The start of the ``grain`` block holding the finer block that starts at ``start``."""
    return grain_floor(grain, start)


def cents(amount: Decimal) -> Decimal:
    """What a DECIMAL(.., 2) column stores for this amount (rounded half away from zero)."""
    return Decimal(amount).quantize(CENT, ROUND_HALF_UP)


def _state(line: SaleLine) -> LineState:
    return LineState(
        product_id=line.product_id,
        category_id=line.category_id,
        units=line.quantity - line.refunded_quantity,
        revenue=cents(line.line_total) - cents(line.refunded_total),
        cost=cents(line.line_cost) - cents(line.refunded_cost),
    )


# --- writing ----------------------------------------------------------------------------


def _pk(table: Table) -> list[str]:
    return [c.name for c in table.primary_key.columns]


@functools.cache
def _upsert_statement(table: Table, dialect: str) -> Any:
    """INSERT one row, or add its measures to the stored row with the same key.

    Built once per table and dialect and executed with a list of rows, so SQLAlchemy
    compiles it once (a multi-row ``values()`` would be compiled anew for every sale) and
    the driver still sends each call's rows as one multi-row INSERT.
    """
    if dialect in ("mysql", "mariadb"):
        my = mysql.insert(table)
        return my.on_duplicate_key_update({m: table.c[m] + my.inserted[m] for m in MEASURES})
    if dialect == "sqlite":
        lite = sqlite.insert(table)
        return lite.on_conflict_do_update(
            index_elements=_pk(table), set_={m: table.c[m] + lite.excluded[m] for m in MEASURES}
        )
    raise NotImplementedError(f"rollups do not support {dialect}")  # pragma: no cover


Executor = Session | Connection  # the ORM session of a request, or a plain connection


def _dialect(db: Executor) -> str:
    return db.dialect.name if isinstance(db, Connection) else db.get_bind().dialect.name


def _upsert(db: Executor, table: Table, rows: list[tuple[Key, Sums]]) -> None:
    """Add each row's sums to the stored row with the same key (creating it if new); the
    rows in key order, so concurrent writers would lock them in one order."""
    if not rows:
        return
    if _dialect(db) == "sqlite":
        names = [*_pk(table), *MEASURES]
        statement = _upsert_statement(table, "sqlite")
        db.execute(statement, [dict(zip(names, (*key, *sums), strict=True)) for key, sums in rows])
        return
    # MariaDB: the rows written out as literals. Every column is a number or a UTC block
    # start this module computed, never text from outside, so there is nothing to escape,
    # and the driver's escaping of each parameter was most of the consumer's CPU.
    connection = connection_of(db)
    head, tail = _literal_upsert(table)
    for start in range(0, len(rows), LITERAL_ROWS):
        values = ",".join(_row_literal(*row) for row in rows[start : start + LITERAL_ROWS])
        connection.exec_driver_sql(head + values + tail)


LITERAL_ROWS = 2000  # rows per statement: about 120 KB, far under max_allowed_packet


@functools.cache
def _literal_upsert(table: Table) -> tuple[str, str]:
    columns = [*_pk(table), *MEASURES]
    added = ", ".join(f"{m} = {m} + VALUES({m})" for m in MEASURES)
    # The names are this module's own tables and columns; the values come from _row_literal.
    head = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES "  # noqa: S608
    return head, f" ON DUPLICATE KEY UPDATE {added}"


@functools.lru_cache(maxsize=4096)
def moment_sql(value: datetime) -> str:
    """An aware moment as a DATETIME literal in UTC (block starts and report range ends:
    few distinct ones at a time); it takes only a datetime, so only digits reach the SQL."""
    return value.astimezone(UTC).strftime("'%Y-%m-%d %H:%M:%S.%f'")


def _row_literal(key: Key, sums: Sums) -> str:
    """A row as SQL: (grain, block start in UTC, the group's ids, the four sums), in the
    order of the table's key and then MEASURES. The format specs take nothing but numbers
    ('d' only an int, 'f' only a Decimal here) and ``moment_sql`` only a datetime, so no other
    value can reach the statement's text."""
    grain, start, *group = key
    orders, units, revenue, cost = sums
    ids = ",".join([f"{i:d}" for i in group])
    return f"({grain:d},{moment_sql(start)},{ids},{orders:d},{units:d},{revenue:f},{cost:f})"


def apply(db: Executor, rows: dict[Table, dict[Key, Sums]]) -> None:
    """Add the sums to their rollup rows, table by table in a fixed order."""
    for table in ROLLUP_TABLES:
        _upsert(db, table, sorted(rows[table].items()))


def _category_paths(db: Executor, ids: Iterable[int]) -> dict[int, str]:
    """The current paths of these categories, recorded once for the staleness check."""
    ids = set(ids)
    if not ids:
        return {}
    paths = {
        row.id: row.path
        for row in db.execute(select(Category.id, Category.path).where(Category.id.in_(ids)))
    }
    records = [{"category_id": cid, "path": path} for cid, path in sorted(paths.items())]
    if records:
        db.execute(_record_path_statement(_dialect(db)), records)
    return paths


@functools.cache
def _record_path_statement(dialect: str) -> Any:
    """INSERT a category's path unless it is recorded already (built once, see _upsert)."""
    if dialect == "sqlite":
        return sqlite.insert(PATHS_TABLE).on_conflict_do_nothing()
    # IGNORE: an existing row only gets a shared lock, so sales never queue on it.
    return insert(PATHS_TABLE).prefix_with("IGNORE")


def line_states(sale: Sale) -> list[LineState]:
    """The net state of each of the sale's lines (loaded) now."""
    return [_state(line) for line in sale.lines]


def states_before_refund(sale: Sale, refund: SaleRefund) -> list[LineState]:
    """The net state of each line just before this refund (both with lines loaded).

    ``sale.lines`` already carry the refund in their refunded figures; the refund's lines say
    how much of each came back now, so the state before it is after + refund.
    """
    returned: dict[int, tuple[int, Decimal, Decimal]] = {}
    for refund_line in refund.lines:
        units, amount, cost = returned.get(refund_line.sale_line_id, (0, ZERO, ZERO))
        returned[refund_line.sale_line_id] = (
            units + refund_line.quantity,
            amount + cents(refund_line.amount),
            cost + cents(refund_line.cost),
        )
    before = []
    for line in sale.lines:
        state = _state(line)
        units, amount, cost = returned.get(line.id, (0, ZERO, ZERO))
        before.append(
            LineState(
                product_id=state.product_id,
                category_id=state.category_id,
                units=state.units + units,
                revenue=state.revenue + amount,
                cost=state.cost + cost,
            )
        )
    return before


def _parse_states(states: Sequence[dict[str, Any]]) -> list[LineState]:
    return [
        LineState(
            product_id=int(s["product_id"]),
            category_id=None if s["category_id"] is None else int(s["category_id"]),
            units=int(s["units"]),
            revenue=Decimal(s["revenue"]),
            cost=Decimal(s["cost"]),
        )
        for s in states
    ]


def apply_events(db: Executor, payloads: Sequence[dict[str, Any]]) -> None:
    """Add what these sale events did (see sales_service/events.py) to the rollups, at once.

    Each event says the net state of the sale's lines before and after its change, so what it
    adds is the sale's contributions after it less those before it.
    """
    changes = [
        (p, _parse_states(p["lines_before"]), _parse_states(p["lines_after"])) for p in payloads
    ]
    paths = _category_paths(
        db,
        (
            line.category_id
            for _, before, after in changes
            for line in (*before, *after)
            if line.category_id is not None
        ),
    )
    batch = _Batch(paths)
    for payload, before, after in changes:
        sale_id, channel_id = int(payload["sale_id"]), int(payload["channel_id"])
        sold_at = datetime.fromisoformat(payload["sold_at"])
        for lines, sign in ((after, 1), (before, -1)):
            batch.add_sale(
                sale_id=sale_id, channel_id=channel_id, sold_at=sold_at, lines=lines, sign=sign
            )
    apply(db, batch.rows())


def category_rollups_stale(db: Executor) -> bool:
    """True when a counted category has since moved or gone: its subtree sums are then old."""
    stmt = (
        select(PATHS_TABLE.c.category_id)
        .select_from(
            PATHS_TABLE.outerjoin(Category.__table__, Category.id == PATHS_TABLE.c.category_id)
        )
        .where((Category.id.is_(None)) | (Category.path != PATHS_TABLE.c.path))
        .limit(1)
    )
    return db.execute(stmt).first() is not None


# --- rebuilding from the raw rows --------------------------------------------------------

_MYSQL_FLOORS = {
    HOUR: "CAST(DATE_FORMAT({c}, '%Y-%m-%d %H:00:00') AS DATETIME)",
    DAY: "CAST(DATE({c}) AS DATETIME)",
    MONTH: "CAST(DATE_FORMAT({c}, '%Y-%m-01') AS DATETIME)",
    YEAR: "CAST(DATE_FORMAT({c}, '%Y-01-01') AS DATETIME)",
}
# SQLite keeps datetimes as text in SQLAlchemy's format; keys must match it to the character.
_SQLITE_FLOORS = {
    HOUR: "strftime('%Y-%m-%d %H:00:00.000000', {c})",
    DAY: "strftime('%Y-%m-%d 00:00:00.000000', {c})",
    MONTH: "strftime('%Y-%m-01 00:00:00.000000', {c})",
    YEAR: "strftime('%Y-01-01 00:00:00.000000', {c})",
}


def floor_sql(dialect: str, grain: int, column: str) -> str:
    """SQL for the start of the UTC block of ``grain`` holding the naive-UTC ``column``."""
    floors = _SQLITE_FLOORS if dialect == "sqlite" else _MYSQL_FLOORS
    return floors[grain].format(c=column)


def _months(first: datetime, last: datetime) -> Iterator[tuple[datetime, datetime]]:
    start = grain_floor(MONTH, first)
    while start <= last:
        end = grain_next(MONTH, start)
        yield start, end
        start = end


def rebuild_rollups(
    connection: Connection, *, engine: Engine | None = None, workers: int = 1
) -> None:
    """Recompute every rollup row from sales and sale_lines (month by month).

    Runs in the caller's transaction (pass an AUTOCOMMIT connection to commit each step).
    Each month's lines are joined to their sales once, into a temporary table, and every
    rollup is summed from there. With ``engine`` and ``workers`` > 1 (and an AUTOCOMMIT
    ``connection``), months are summed on that many connections at once.
    """
    dialect = connection.dialect.name
    for table in (*ROLLUP_TABLES, PATHS_TABLE):
        connection.execute(delete(table))
    categories = {r.id: r.path for r in connection.execute(select(Category.id, Category.path))}
    if categories:
        connection.execute(
            insert(PATHS_TABLE), [{"category_id": k, "path": v} for k, v in categories.items()]
        )
    bounds = connection.execute(text("SELECT MIN(sold_at), MAX(sold_at) FROM sales")).one()
    months: list[tuple[datetime, datetime]] = []
    if bounds[0] is not None:
        first, last = (v if isinstance(v, datetime) else datetime.fromisoformat(v) for v in bounds)
        months = list(_months(first.replace(tzinfo=UTC), last.replace(tzinfo=UTC)))

    def sum_months(target: Connection, chosen: list[tuple[datetime, datetime]]) -> None:
        _create_work_tables(target, categories)
        for start, end in chosen:
            _rebuild_month(target, dialect, start, end)
        drop = _drop_temporary(target)
        target.execute(text(f"{drop} report_tmp_lines"))
        target.execute(text(f"{drop} report_tmp_ancestors"))

    if engine is None or workers <= 1 or dialect == "sqlite":
        sum_months(connection, months)
    else:

        def worker(chosen: list[tuple[datetime, datetime]]) -> None:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as own:
                sum_months(own, chosen)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(worker, [months[n::workers] for n in range(workers)]))
    for table, grains in (
        (SALES_TABLE, SALES_GRAINS),
        (PRODUCT_TABLE, PRODUCT_GRAINS),
        (TOTALS_TABLE, TOTAL_GRAINS),
        (CATEGORY_TABLE, CATEGORY_GRAINS),
    ):
        for finer, coarser in itertools.pairwise(grains):
            _roll_up(connection, dialect, table, finer, coarser)
    count_rebuild(connection)


def count_rebuild(connection: Connection) -> None:
    """Mark the rollup rows as replaced, not added to (in the transaction that did it, or
    after its last step): a copy of them (sales_service/reports/inmemory.py) then reads
    them whole again."""
    connection.execute(
        update(POSITIONS_TABLE)
        .where(POSITIONS_TABLE.c.consumer == CONSUMER)
        .values(generation=new_generation())
    )


def _drop_temporary(connection: Connection) -> str:
    # MySQL commits the open transaction on a plain DROP TABLE, not on DROP TEMPORARY TABLE
    return "DROP TABLE" if connection.dialect.name == "sqlite" else "DROP TEMPORARY TABLE"


def _create_work_tables(connection: Connection, categories: dict[int, str]) -> None:
    """This connection's temporary tables: category ancestors, and one month's lines."""
    moment = "DATETIME" if connection.dialect.name == "sqlite" else "DATETIME(6)"
    drop = _drop_temporary(connection)
    for ddl in (
        f"{drop} IF EXISTS report_tmp_lines",
        f"CREATE TEMPORARY TABLE report_tmp_lines (sale_id BIGINT NOT NULL, "
        f"hour {moment} NOT NULL, day {moment} NOT NULL, "
        f"channel_id INTEGER NOT NULL, "
        f"shard INTEGER NOT NULL, product_id INTEGER NOT NULL, category_key INTEGER NOT NULL, "
        f"live INTEGER NOT NULL, units BIGINT NOT NULL, revenue DECIMAL(18, 2) NOT NULL, "
        f"cost DECIMAL(18, 2) NOT NULL)",
    ):
        connection.execute(text(ddl))
    _create_ancestors(connection, categories)


def _create_ancestors(connection: Connection, paths: Mapping[int, str | None]) -> None:
    """This connection's temporary table ``report_tmp_ancestors``: each category (by its
    path) under every node from its root down to itself, and uncategorized lines under their
    own node 0, for the subtree sums."""
    drop = _drop_temporary(connection)
    for ddl in (
        f"{drop} IF EXISTS report_tmp_ancestors",
        "CREATE TEMPORARY TABLE report_tmp_ancestors (category_id INTEGER NOT NULL, "
        "node_id INTEGER NOT NULL, PRIMARY KEY (category_id, node_id))",
    ):
        connection.execute(text(ddl))
    pairs = {(cid, node) for cid, path in paths.items() for node in ancestry(path, cid)}
    pairs.add((UNCATEGORIZED, UNCATEGORIZED))
    connection.execute(
        text("INSERT INTO report_tmp_ancestors (category_id, node_id) VALUES (:c, :n)"),
        [{"c": c, "n": n} for c, n in sorted(pairs)],
    )


_ORDERS_SUMS = (
    "COUNT(DISTINCT CASE WHEN t.live = 1 THEN t.sale_id END), "
    "SUM(t.units), SUM(t.revenue), SUM(t.cost)"
)


def _rebuild_month(connection: Connection, dialect: str, start: datetime, end: datetime) -> None:
    # Every piece of these statements is a constant of this module; only :start/:end vary.
    hour = floor_sql(dialect, HOUR, "s.sold_at")
    day = floor_sql(dialect, DAY, "s.sold_at")
    # sales first: the month is a range of ix_sales_sold_at, each line found by its sale id
    straight = "" if dialect == "sqlite" else "STRAIGHT_JOIN "
    connection.execute(text("DELETE FROM report_tmp_lines"))
    connection.execute(
        _timed(
            f"INSERT INTO report_tmp_lines SELECT {straight}s.id, {hour}, {day}, "  # noqa: S608
            f"s.channel_id, s.id % {SHARDS}, l.product_id, COALESCE(l.category_id, 0), "
            f"CASE WHEN l.quantity > l.refunded_quantity THEN 1 ELSE 0 END, "
            f"l.quantity - l.refunded_quantity, l.line_total - l.refunded_total, "
            f"l.line_cost - l.refunded_cost "
            f"FROM sales s JOIN sale_lines l ON l.sale_id = s.id "
            f"WHERE s.sold_at >= :start AND s.sold_at < :end"
        ),
        {"start": start, "end": end},
    )
    category = (
        "INSERT INTO report_category_rollups (grain, bucket_start, scope, category_key, "
        "channel_id, shard, orders, units, revenue, cost) "
    )
    ancestors = "JOIN report_tmp_ancestors a ON a.category_id = t.category_key"
    statements = [
        f"INSERT INTO report_sales_rollups "  # noqa: S608
        f"(grain, bucket_start, channel_id, shard, orders, units, revenue, cost) "
        f"SELECT {HOUR}, t.hour, t.channel_id, t.shard, {_ORDERS_SUMS} "
        f"FROM report_tmp_lines t GROUP BY t.hour, t.channel_id, t.shard",
        f"INSERT INTO report_sales_rollups "  # noqa: S608
        f"(grain, bucket_start, channel_id, shard, orders, units, revenue, cost) "
        f"SELECT {HOUR}, t.hour, {ALL_CHANNELS}, t.shard, {_ORDERS_SUMS} "
        f"FROM report_tmp_lines t GROUP BY t.hour, t.shard",
        f"INSERT INTO report_product_rollups "  # noqa: S608
        f"(grain, bucket_start, product_id, channel_id, category_key, "
        f"orders, units, revenue, cost) "
        f"SELECT {MONTH}, :start, t.product_id, t.channel_id, t.category_key, {_ORDERS_SUMS} "
        f"FROM report_tmp_lines t GROUP BY t.product_id, t.channel_id, t.category_key",
        f"INSERT INTO report_product_totals "  # noqa: S608
        f"(grain, bucket_start, product_id, orders, units, revenue, cost) "
        f"SELECT {DAY}, t.day, t.product_id, {_ORDERS_SUMS} "
        f"FROM report_tmp_lines t GROUP BY t.day, t.product_id",
        f"{category}SELECT {MONTH}, :start, {SCOPE_SELF}, t.category_key, t.channel_id, "  # noqa: S608
        f"t.shard, {_ORDERS_SUMS} FROM report_tmp_lines t "
        f"GROUP BY t.category_key, t.channel_id, t.shard",
        f"{category}SELECT {straight}{MONTH}, :start, {SCOPE_TREE}, a.node_id, t.channel_id, "  # noqa: S608
        f"t.shard, {_ORDERS_SUMS} FROM report_tmp_lines t {ancestors} "
        f"GROUP BY a.node_id, t.channel_id, t.shard",
        f"{category}SELECT {DAY}, t.day, {SCOPE_SELF}, t.category_key, {ALL_CHANNELS}, "  # noqa: S608
        f"t.shard, {_ORDERS_SUMS} FROM report_tmp_lines t GROUP BY t.day, t.category_key, t.shard",
        f"{category}SELECT {straight}{DAY}, t.day, {SCOPE_TREE}, a.node_id, {ALL_CHANNELS}, "  # noqa: S608
        f"t.shard, {_ORDERS_SUMS} FROM report_tmp_lines t {ancestors} "
        f"GROUP BY t.day, a.node_id, t.shard",
    ]
    for statement in statements:
        connection.execute(_timed(statement), {"start": start})


def _timed(statement: str) -> Any:
    """The statement with its :start and :end bound as UTC datetimes (SQLite keeps them as
    text, in the format the rollups' keys are written in)."""
    names = [name for name in ("start", "end") if f":{name}" in statement]
    return text(statement).bindparams(*[bindparam(n, type_=UTCDateTime()) for n in names])


def _roll_up(connection: Connection, dialect: str, table: Table, finer: int, coarser: int) -> None:
    dims = [c for c in _pk(table) if c not in ("grain", "bucket_start")]
    floor = floor_sql(dialect, coarser, "bucket_start")
    columns, measures = ", ".join(dims), ", ".join(MEASURES)
    connection.execute(
        text(
            f"INSERT INTO {table.name} (grain, bucket_start, {columns}, {measures}) "  # noqa: S608
            f"SELECT {coarser}, {floor}, {columns}, "
            f"SUM(orders), SUM(units), SUM(revenue), SUM(cost) FROM {table.name} "
            f"WHERE grain = {finer} GROUP BY {floor}, {columns}"
        )
    )


# --- many new sales at once -------------------------------------------------------------


def apply_new_sales(connection: Connection, sale_ids: Sequence[int]) -> None:
    """Add these sales, as they were recorded, to the rollups, summed by the database (MariaDB
    and MySQL): what their ``sale.recorded`` events would add through ``apply_events``.

    A sale's recorded figures stay in its lines (``quantity``, ``line_total``,
    ``line_cost``; refunds are kept beside them, and their own events take them away), so
    the lines are summed straight from the tables, per group and block, in one ``INSERT ...
    SELECT ... ON DUPLICATE KEY UPDATE`` per rollup grain: no payload parsed, no row made in
    Python. Cheaper than ``apply_events`` for many sales (a bulk import's batch), dearer for
    a few.
    """
    if not sale_ids:
        return
    for ddl in _BATCH_TABLES:
        connection.exec_driver_sql(ddl)
    connection.execute(_BATCH_FILL, {"ids": list(sale_ids)})
    categorized = [
        key
        for (key,) in connection.exec_driver_sql(
            f"SELECT DISTINCT category_key FROM report_tmp_batch "  # noqa: S608
            f"WHERE category_key <> {UNCATEGORIZED}"
        )
    ]
    paths = _category_paths(connection, categorized)
    _create_ancestors(connection, {key: paths.get(key) for key in categorized})
    for statement in _bulk_statements():
        connection.execute(statement)
    connection.exec_driver_sql("DROP TEMPORARY TABLE report_tmp_batch, report_tmp_ancestors")


_BLOCK = {HOUR: "hour", DAY: "day", MONTH: "month", YEAR: "year"}  # a line's blocks' columns
_BATCH_TABLES = (
    "DROP TEMPORARY TABLE IF EXISTS report_tmp_batch",
    "CREATE TEMPORARY TABLE report_tmp_batch (sale_id BIGINT NOT NULL, "
    + "".join(f"{_BLOCK[grain]} DATETIME NOT NULL, " for grain in SALES_GRAINS)
    + "channel_id INTEGER NOT NULL, shard INTEGER NOT NULL, "
    "product_id INTEGER NOT NULL, category_key INTEGER NOT NULL, units BIGINT NOT NULL, "
    "revenue DECIMAL(18, 2) NOT NULL, cost DECIMAL(18, 2) NOT NULL)",
)
# The sales first: each is found by its id, its lines by their sale's. Each line's blocks
# are worked out once here, not in every statement that groups by one.
_BATCH_FILL = text(
    "INSERT INTO report_tmp_batch SELECT STRAIGHT_JOIN s.id, "
    + "".join(f"{floor_sql('mysql', grain, 's.sold_at')}, " for grain in SALES_GRAINS)
    + f"s.channel_id, MOD(s.id, {SHARDS}), l.product_id, "
    f"COALESCE(l.category_id, {UNCATEGORIZED}), l.quantity, l.line_total, l.line_cost "
    f"FROM sales s JOIN sale_lines l ON l.sale_id = s.id WHERE s.id IN :ids"
).bindparams(bindparam("ids", expanding=True))


_GROUPS = "scope, category_key, channel_id, shard"  # a category rollup's group
_BULK_PLANS = (  # (table, grains, the group's columns, what each is for a batch's line)
    (SALES_TABLE, SALES_GRAINS, "channel_id, shard", "t.channel_id, t.shard"),
    (SALES_TABLE, SALES_GRAINS, "channel_id, shard", f"{ALL_CHANNELS}, t.shard"),
    (
        PRODUCT_TABLE,
        PRODUCT_GRAINS,
        "product_id, channel_id, category_key",
        "t.product_id, t.channel_id, t.category_key",
    ),
    (TOTALS_TABLE, TOTAL_GRAINS, "product_id", "t.product_id"),
    (
        CATEGORY_TABLE,
        CATEGORY_GRAINS,
        _GROUPS,
        f"{SCOPE_SELF}, t.category_key, t.channel_id, t.shard",
    ),
    (CATEGORY_TABLE, CATEGORY_GRAINS, _GROUPS, f"{SCOPE_TREE}, a.node_id, t.channel_id, t.shard"),
    (
        CATEGORY_TABLE,
        CATEGORY_DAY_GRAINS,
        _GROUPS,
        f"{SCOPE_SELF}, t.category_key, {ALL_CHANNELS}, t.shard",
    ),
    (
        CATEGORY_TABLE,
        CATEGORY_DAY_GRAINS,
        _GROUPS,
        f"{SCOPE_TREE}, a.node_id, {ALL_CHANNELS}, t.shard",
    ),
)


@functools.cache
def _bulk_statements() -> tuple[Any, ...]:
    """One upsert per rollup table, grain and kind of group, each summing the batch's lines
    per group and block (a sale counts once per group: every line as recorded has units)."""
    sums = "COUNT(DISTINCT t.sale_id), SUM(t.units), SUM(t.revenue), SUM(t.cost)"
    added = ", ".join(f"{m} = {m} + VALUES({m})" for m in MEASURES)
    statements = []
    for table, grains, columns, values in _BULK_PLANS:
        # a subtree's rows: each line under every node above its category
        join = "JOIN report_tmp_ancestors a ON a.category_id = t.category_key"
        join = join if "a.node_id" in values else ""
        positions = ", ".join(str(n) for n in range(2, 3 + len(values.split(","))))
        for grain in grains:
            statement = (
                f"INSERT INTO {table.name} (grain, bucket_start, {columns}, "  # noqa: S608
                f"{', '.join(MEASURES)}) SELECT {grain}, t.{_BLOCK[grain]}, {values}, {sums} "
                f"FROM report_tmp_batch t {join} GROUP BY {positions} "
                f"ON DUPLICATE KEY UPDATE {added}"
            )
            statements.append(text(statement))  # text(): the driver's % escaped
    return tuple(statements)
