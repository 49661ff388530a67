"""The report rollups in this process's memory, as columns: a report sums whole rollup blocks
here instead of in the database, and asks the database only which events this copy lacks
and for the raw rows of the blocks those touched (sales_service/reports/planner.py), so an
answer is exactly what the rollup tables and the raw rows would give.

A copy stands at one position of the rollups' consumer: it holds the rollup rows as they
were when the consumer had applied every event up to that position (read in one snapshot
with it). It is loaded whole in the background when sales_service starts, or the first
time a report asks (until then reports read the tables), then brought forward in the
background by re-reading only the blocks that the events since touched, at most once every
``REFRESH_SECONDS``; meanwhile those blocks are read raw, as they are while the consumer
itself lags. A rebuild of the rollups (``outbox_positions.generation`` drawn anew) or a
consumer set back makes it load whole again.

Money is held in whole cents (int64): every rollup figure has two decimals, so sums are
exact. MySQL/MariaDB only (the embedded SQLite database is small: it reads the tables).
"""

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Connection, Engine

from common.db import snapshot_session
from common.models import OutboxPosition, Sale, SalesEvent
from sales_service.reports.columns import GROUP_BITS, ColumnSums
from sales_service.reports.consumer import CONSUMER
from sales_service.reports.repository import SOURCE_TABLES, GroupBy, Query, Source
from sales_service.reports.rollups import (
    ALL_CHANNELS,
    DAY,
    HOUR,
    MONTH,
    PATHS_TABLE,
    SCOPE_SELF,
    SCOPE_TREE,
    YEAR,
    grain_floor,
    moment_sql,
)

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0  # bring a copy forward at most this often
MAX_TOUCHED = 2000  # blocks to read again; past it the copy is read whole
RETRY_SECONDS = 30.0  # after a failed load
GRAIN_SHIFT = 40  # a row's sort key: grain << 40 | block start in seconds since the epoch
# One GROUP_CONCAT string per UTC day of block starts (a day of product totals of 1,000
# products is some 50 KB), parsed by numpy: four times faster than reading rows one by one.
_CHUNK = "bucket_start DIV 1000000"

# Each table's group columns after (grain, start); then orders, units, revenue, cost.
_GROUPS: dict[Source, tuple[str, ...]] = {
    Source.SALES_ROLLUPS: ("channel_id",),
    Source.PRODUCT_ROLLUPS: ("product_id", "channel_id", "category_key"),
    Source.PRODUCT_TOTALS: ("product_id",),
    Source.CATEGORY_ROLLUPS: ("scope", "category_key", "channel_id"),
}
_GRAINS = (HOUR, DAY, MONTH, YEAR)


@dataclass(frozen=True)
class Columns:
    """One rollup table's rows, sorted by (grain, block start)."""

    key: np.ndarray  # grain << GRAIN_SHIFT | start
    start: np.ndarray  # block start, seconds since the epoch (UTC)
    groups: dict[str, np.ndarray]
    measures: np.ndarray  # shape (4, rows): orders, units, revenue and cost in cents

    @classmethod
    def parse(cls, source: Source, chunks: Iterable[str]) -> "Columns":
        names = _GROUPS[source]
        width = 2 + len(names) + 4
        flat = [np.fromstring(chunk, dtype=np.int64, sep=",") for chunk in chunks if chunk]
        table = (np.concatenate(flat) if flat else np.zeros(0, np.int64)).reshape(-1, width)
        key = (table[:, 0] << GRAIN_SHIFT) | table[:, 1]
        order = np.argsort(key, kind="stable")
        table = table[order]
        return cls(
            key=key[order],
            start=table[:, 1].copy(),
            groups={name: table[:, 2 + i].copy() for i, name in enumerate(names)},
            measures=np.ascontiguousarray(table[:, 2 + len(names) :].T),
        )

    def __len__(self) -> int:
        return len(self.key)

    def replaced(self, blocks: np.ndarray, rows: "Columns") -> "Columns":
        """These rows instead of every row of the blocks (sort keys) given."""
        keep = ~np.isin(self.key, blocks)
        key = np.concatenate([self.key[keep], rows.key])
        order = np.argsort(key, kind="stable")  # runs of sorted rows: merged in linear time
        return Columns(
            key=key[order],
            start=np.concatenate([self.start[keep], rows.start])[order],
            groups={
                name: np.concatenate([column[keep], rows.groups[name]])[order]
                for name, column in self.groups.items()
            },
            measures=np.concatenate([self.measures[:, keep], rows.measures], axis=1)[:, order],
        )


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


@dataclass(frozen=True)
class RollupCopy:
    """The four rollup tables at one consumer position (immutable: a newer copy replaces it)."""

    position: int
    generation: int
    tables: dict[Source, Columns]
    category_paths: dict[int, str]  # report_category_paths: each category's path when counted
    read_at: float  # time.monotonic() as its snapshot began
    made_at: float

    def matches(self, position: int, needs_rebuild: bool, generation: int) -> bool:
        """Whether the rollups at the consumer's state (as a snapshot reads it) are this copy
        plus what the events after its position added."""
        return not needs_rebuild and generation == self.generation and position >= self.position

    def newer_than(self, other: "RollupCopy") -> bool:
        return self.read_at >= other.read_at

    @property
    def rows(self) -> int:
        return sum(len(columns) for columns in self.tables.values())

    def sums(
        self,
        source: Source,
        query: Query,
        grain: int,
        intervals: Sequence[tuple[datetime, datetime]],
        *,
        boundaries: Sequence[datetime] | None,
        shift: int = 0,
    ) -> ColumnSums:
        """What ``repository.rollup_part`` sums in the database, from this copy: the blocks of
        one grain starting inside the intervals, per bucket (of the block's start + ``shift``
        seconds) and/or group."""
        rows = self.tables[source]
        base = grain << GRAIN_SHIFT
        starts = np.array([_seconds(a) for a, _ in intervals], dtype=np.int64) + base
        ends = np.array([_seconds(b) for _, b in intervals], dtype=np.int64) + base
        lo = np.searchsorted(rows.key, starts)
        hi = np.searchsorted(rows.key, ends)
        lengths = hi - lo
        if len(lengths) == 1:
            index = np.arange(lo[0], hi[0])
        else:
            skipped = np.cumsum(lengths) - lengths  # rows of the intervals before each
            index = np.repeat(lo - skipped, lengths) + np.arange(int(lengths.sum()))
        index = index[self._keep(source, query, rows, index)]
        group = _group_column(source, query, rows)
        measures = rows.measures[:, index]
        if query.units_only:
            measures = measures * np.array([[0], [1], [0], [0]], dtype=np.int64)
        if group is None and boundaries is None:  # one row, as SQL's SUM over no rows gives
            total = measures.sum(axis=1).reshape(4, 1)
            return ColumnSums(np.zeros(1, dtype=np.int64), total, False, False)
        keys = np.zeros(len(index), dtype=np.int64)
        if boundaries is not None:
            seconds = np.array([_seconds(b) for b in boundaries], dtype=np.int64)
            bucket = np.searchsorted(seconds, rows.start[index] + shift, side="right") - 1
            keys = bucket << GROUP_BITS
        if group is not None:
            keys = keys | group[index]
        return ColumnSums.reduce(
            keys, measures, bucketed=boundaries is not None, grouped=group is not None
        )

    @staticmethod
    def _keep(source: Source, query: Query, rows: Columns, index: np.ndarray) -> np.ndarray:
        """Which of the rows at ``index`` the query's filters let through (as the WHERE of
        ``repository.rollup_part``)."""
        keep = np.ones(len(index), dtype=bool)

        def column(name: str) -> np.ndarray:
            return rows.groups[name][index]

        if query.product_ids and source in (Source.PRODUCT_TOTALS, Source.PRODUCT_ROLLUPS):
            keep &= np.isin(column("product_id"), query.product_ids)
        if source is Source.PRODUCT_TOTALS:
            return keep
        if query.channel_ids:
            keep &= np.isin(column("channel_id"), query.channel_ids)
        if source is Source.SALES_ROLLUPS:
            if query.group_by is GroupBy.CHANNEL and not query.channel_ids:
                keep &= column("channel_id") != ALL_CHANNELS
            elif not query.channel_ids:
                keep &= column("channel_id") == ALL_CHANNELS
        elif source is Source.PRODUCT_ROLLUPS:
            if query.category_keys is not None:
                keep &= np.isin(column("category_key"), query.category_keys)
        elif source is Source.CATEGORY_ROLLUPS:
            scope, category = column("scope"), column("category_key")
            if query.group_by is GroupBy.CATEGORY:
                keep &= scope == SCOPE_SELF
                if query.category_keys is not None:
                    keep &= np.isin(category, query.category_keys)
            elif query.group_by is GroupBy.CATEGORY_TREE:
                tree = (scope == SCOPE_TREE) & np.isin(category, query.tree_nodes)
                own = (scope == SCOPE_SELF) & np.isin(category, query.self_nodes)
                keep &= tree | own
            else:
                keep &= (scope == SCOPE_TREE) & (category == query.subtree_node)
        return keep


def _group_column(source: Source, query: Query, rows: Columns) -> np.ndarray | None:
    if query.group_by is GroupBy.PRODUCT and source in (
        Source.PRODUCT_TOTALS,
        Source.PRODUCT_ROLLUPS,
    ):
        return rows.groups["product_id"]
    if source is Source.PRODUCT_TOTALS:
        return None
    if query.group_by is GroupBy.CHANNEL:
        return rows.groups["channel_id"]
    if source is Source.CATEGORY_ROLLUPS and query.group_by in (
        GroupBy.CATEGORY,
        GroupBy.CATEGORY_TREE,
    ):
        return rows.groups["category_key"]
    return None


# --- reading the tables ------------------------------------------------------------------


def _select(source: Source, where: str = "") -> str:
    table = SOURCE_TABLES[source].name
    fields = ", ".join(
        [
            "grain",
            "TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', bucket_start)",
            *_GROUPS[source],
            "orders",
            "units",
            "CAST(revenue * 100 AS SIGNED)",
            "CAST(cost * 100 AS SIGNED)",
        ]
    )
    return (
        f"SELECT GROUP_CONCAT(CONCAT_WS(',', {fields}) SEPARATOR ',') "  # noqa: S608 - fixed names
        f"FROM {table} {where} GROUP BY grain, {_CHUNK}"
    )


def _read(connection: Connection, source: Source, where: str = "") -> Columns:
    chunks = [row[0] for row in connection.exec_driver_sql(_select(source, where))]
    return Columns.parse(source, chunks)


_PATHS = f"SELECT category_id, path FROM {PATHS_TABLE.name}"  # noqa: S608 - fixed names
_POSITION = (
    "SELECT position, needs_rebuild, generation "  # noqa: S608 - fixed names
    f"FROM {OutboxPosition.__tablename__} WHERE consumer = %(consumer)s"
)


def _position(connection: Connection) -> tuple[int, bool, int] | None:
    row = connection.exec_driver_sql(_POSITION, {"consumer": CONSUMER}).first()
    return None if row is None else (int(row[0]), bool(row[1]), int(row[2]))


def load(engine: Engine) -> RollupCopy | None:
    """The whole rollups at the consumer's position, in one snapshot; None while the
    consumer has not started or waits for a rebuild."""
    return refresh(engine, None)


_TOUCHED = (
    f"SELECT DISTINCT s.sold_at FROM {SalesEvent.__tablename__} e "  # noqa: S608 - fixed names
    f"JOIN {Sale.__tablename__} s ON s.id = e.subject_id "
    "WHERE e.id > %(after)s AND e.id <= %(upto)s"
)


def refresh(engine: Engine, copy: RollupCopy | None) -> RollupCopy | None:
    """The copy brought forward to the consumer's position, in one snapshot: the blocks that
    the events since touched read again, or all of it (no copy yet, the rows replaced since,
    the consumer set back, or too many blocks touched). None while the consumer has not
    started or waits for a rebuild."""
    read_at = time.monotonic()
    with snapshot_session(engine) as session:
        connection = session.connection()
        state = _position(connection)
        if state is None or state[1]:
            return None
        position, _, generation = state

        def made(tables: dict[Source, Columns]) -> RollupCopy:
            paths = {int(c): str(p) for c, p in connection.exec_driver_sql(_PATHS)}
            return RollupCopy(position, generation, tables, paths, read_at, time.monotonic())

        def whole() -> RollupCopy:
            return made({source: _read(connection, source) for source in SOURCE_TABLES})

        if copy is None or not copy.matches(position, False, generation):
            return whole()
        if position == copy.position:
            return made(copy.tables)
        found = connection.exec_driver_sql(_TOUCHED, {"after": copy.position, "upto": position})
        touched = _blocks(row[0].replace(tzinfo=UTC) for row in found)
        if len(touched) > MAX_TOUCHED:  # a bulk import's history: read it all instead
            return whole()
        where = "WHERE " + " OR ".join(
            f"(grain = {grain} AND bucket_start = {moment_sql(start)})" for grain, start in touched
        )
        keys = np.array(
            [(grain << GRAIN_SHIFT) | _seconds(start) for grain, start in touched], dtype=np.int64
        )
        return made(
            {
                source: rows.replaced(keys, _read(connection, source, where))
                for source, rows in copy.tables.items()
            }
        )


def _blocks(moments: Iterable[datetime]) -> list[tuple[int, datetime]]:
    """(grain, block start) of the block of every grain that holds each moment."""
    return sorted({(grain, grain_floor(grain, moment)) for moment in moments for grain in _GRAINS})


# --- one copy per database, kept in the background ------------------------------------------


class _Slot:
    """This process's copy of one database's rollups and whether a load or refresh is on."""

    def __init__(self) -> None:
        self.copy: RollupCopy | None = None
        self.busy = False
        self.retry_at = 0.0
        self.lock = threading.Lock()


_SLOTS: dict[str, _Slot] = {}  # by database URL (without its password)
_SLOTS_LOCK = threading.Lock()
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="report-rollups-copy")
ENABLED = True  # sales_service's setting SHOP_REPORTS_IN_MEMORY


def _slot(engine: Engine) -> _Slot:
    url = engine.url.render_as_string(hide_password=True)  # any engine on the database
    with _SLOTS_LOCK:
        slot = _SLOTS.get(url)
        if slot is None:
            slot = _SLOTS[url] = _Slot()
        return slot


def current(engine: Engine) -> RollupCopy | None:
    """This process's copy of the database's rollups, if one is loaded (one is then loaded
    in the background)."""
    if not ENABLED or engine.dialect.name not in ("mysql", "mariadb"):
        return None
    slot = _slot(engine)
    copy = slot.copy
    if copy is None:
        _start(engine, slot, None)
    return copy


def behind(engine: Engine, copy: RollupCopy) -> None:
    """The consumer has moved past the copy: bring it forward (at most every
    ``REFRESH_SECONDS``)."""
    if time.monotonic() - copy.made_at >= REFRESH_SECONDS:
        _start(engine, _slot(engine), copy)


def discard(engine: Engine, copy: RollupCopy) -> None:
    """The copy no longer matches the tables (rebuilt, set back or waiting for a rebuild)."""
    slot = _slot(engine)
    with slot.lock:
        if slot.copy is copy:
            slot.copy = None
    _start(engine, slot, None)


def _start(engine: Engine, slot: _Slot, copy: RollupCopy | None) -> None:
    with slot.lock:
        if slot.busy or time.monotonic() < slot.retry_at:
            return
        slot.busy = True
    _WORKER.submit(_run, engine, slot, copy)


def _run(engine: Engine, slot: _Slot, copy: RollupCopy | None) -> None:
    try:
        fresh = refresh(engine, copy)
        with slot.lock:
            held = slot.copy  # another may have been installed meanwhile: keep the newer
            if fresh is None or held is None or fresh.newer_than(held):
                slot.copy = fresh
            if fresh is None:  # the consumer has not started, or waits for a rebuild
                slot.retry_at = time.monotonic() + REFRESH_SECONDS
    except Exception as error:
        logger.warning("report rollups: could not load this process's copy (%s)", error)
        with slot.lock:
            slot.retry_at = time.monotonic() + RETRY_SECONDS
    finally:
        with slot.lock:
            slot.busy = False


def load_now(engine: Engine) -> RollupCopy | None:
    """Load the engine's copy now, in this thread (tests, benchmarks)."""
    fresh = load(engine)
    slot = _slot(engine)
    with slot.lock:
        slot.copy = fresh
    return fresh
