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

Beside the rollups a copy holds the raw sale lines of a few hours of every UTC day
(``EdgeLines``): the hours between UTC midnight and the local midnight of the store's
timezone (``ZONES``). Product and category rollups are kept per UTC day, so a day of such a
zone is a UTC day less, or plus, those hours' lines, which are then summed here too instead
of read from the database; an hour that an event after the copy touched is read raw.

Money is held in whole cents (int64): every rollup figure has two decimals, so sums are
exact. MySQL/MariaDB only (the embedded SQLite database is small: it reads the tables).
"""

import functools
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Connection, Engine

from common.db import number_list, snapshot_connection
from common.models import OutboxPosition, Sale, SalesEvent
from sales_service.reports.columns import GROUP_BITS, ColumnSums
from sales_service.reports.consumer import CONSUMER
from sales_service.reports.repository import SOURCE_TABLES, GroupBy, Interval, Query, Source
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
_PRODUCT_SOURCES = (Source.PRODUCT_TOTALS, Source.PRODUCT_ROLLUPS)


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
        table = _number_table(chunks, 2 + len(names) + 4)
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

    @functools.cached_property
    def by_channel(self) -> "ChannelRuns":
        """The sales rollups' rows by channel, with running sums (``ChannelRuns``): made
        once per table, as the copy that holds it is made (``refresh``)."""
        return ChannelRuns.of(self)

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


_CHANNEL_SHIFT = 44  # a row's place among ChannelRuns: its channel's << 44 | its sort key
# Sales rollups are summed from running sums (ChannelRuns) where no buckets are asked for,
# and for a series where its range spans more rows than this: fewer are gathered and added
# up sooner than an interval is cut into pieces per bucket.
RUNNING_FROM = 4096


@dataclass(frozen=True)
class ChannelRuns:
    """The sales rollups' rows ordered by channel, then sort key, with the measures summed
    up to each: whatever lies between two positions sums to the difference of two columns,
    so a range of blocks sums in two lookups however many rows it spans (three years of
    hourly blocks: 130,000 rows a channel)."""

    channels: np.ndarray  # the channel ids, ascending (ALL_CHANNELS among them)
    key: np.ndarray  # place of the row's channel in ``channels`` << _CHANNEL_SHIFT | sort key
    running: np.ndarray  # shape (4, rows + 1): the measures of the rows before each position

    @classmethod
    def of(cls, rows: Columns) -> "ChannelRuns":
        channels, place = np.unique(rows.groups["channel_id"], return_inverse=True)
        key = (place.astype(np.int64) << _CHANNEL_SHIFT) | rows.key
        order = np.argsort(key, kind="stable")
        running = np.zeros((4, len(key) + 1), dtype=np.int64)
        np.cumsum(rows.measures[:, order], axis=1, out=running[:, 1:])
        return cls(channels, key[order], running)

    def sums(
        self,
        wanted: np.ndarray,
        grouped: bool,
        starts: np.ndarray,
        ends: np.ndarray,
        buckets: tuple[np.ndarray, np.ndarray] | None,
    ) -> ColumnSums:
        """What ``RollupCopy.sums`` adds up from the rows of the ``wanted`` channels whose
        sort keys lie in [starts, ends), per channel if ``grouped``, and with ``buckets``
        (each interval's shift, the buckets' starts in seconds) per bucket of the block's
        start + its shift: each interval cut at the buckets' starts (less its shift) into
        pieces of one bucket each, each piece of each channel summed by two lookups. Only
        pieces with rows count, as only rows do there."""
        bucket = None
        if buckets is not None:
            starts, ends, bucket = _pieces(starts, ends, *buckets)
        places = np.searchsorted(self.channels, wanted)  # (np.isin: ten times as long)
        if len(self.channels):
            places = places[self.channels[np.minimum(places, len(self.channels) - 1)] == wanted]
        else:  # no rows at all
            places = places[:0]
        lo = np.searchsorted(self.key, (places[:, None] << _CHANNEL_SHIFT) | starts).ravel()
        hi = np.searchsorted(self.key, (places[:, None] << _CHANNEL_SHIFT) | ends).ravel()
        if bucket is None:  # no buckets: each channel's intervals (laid out channel by
            # channel) added up in one pass, where sorting keys cost most of a 30-day report
            per = self.running[:, hi] - self.running[:, lo]
            per = per.reshape(4, len(places), len(starts)).sum(axis=2)
            if not grouped:  # one row, as SQL's SUM over no rows gives
                return ColumnSums(
                    np.zeros(1, dtype=np.int64), per.sum(axis=1, keepdims=True), False, False
                )
            listed = (hi > lo).reshape(len(places), len(starts)).any(axis=1)
            return ColumnSums(self.channels[places[listed]], per[:, listed], False, True)
        keys = np.tile(bucket << GROUP_BITS, len(places))
        if grouped:
            keys |= np.repeat(self.channels[places], len(starts))
        found = hi > lo
        totals = self.running[:, hi[found]] - self.running[:, lo[found]]
        return ColumnSums.reduce(keys[found], totals, bucketed=True, grouped=grouped)


_START_MASK = (1 << GRAIN_SHIFT) - 1


def _pieces(
    starts: np.ndarray, ends: np.ndarray, shifts: np.ndarray, boundaries: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intervals of sort keys (a grain's blocks starting in [start, end)) cut where their
    blocks' bucket changes, as ``RollupCopy.sums`` buckets a block (by its start + the
    interval's shift, among the buckets' starts): each piece's start, end and bucket."""
    seconds = starts & _START_MASK
    first = np.searchsorted(boundaries, seconds + shifts, side="right")  # the first cut's
    cuts = np.maximum(np.searchsorted(boundaries, (ends & _START_MASK) + shifts) - first, 0)
    count = cuts + 1  # pieces of each interval
    of = np.repeat(np.arange(len(starts)), count)
    nth = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    base, shift = first[of], shifts[of]
    limit = len(boundaries) - 1
    grain = starts[of] & ~_START_MASK
    # a piece after the first starts at a cut, one before the last ends at one
    begin = np.where(
        nth > 0, grain | (boundaries[np.clip(base + nth - 1, 0, limit)] - shift), starts[of]
    )
    end = np.where(
        nth < cuts[of], grain | (boundaries[np.clip(base + nth, 0, limit)] - shift), ends[of]
    )
    return begin, end, base - 1 + nth


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def _epochs(moments: Iterable[datetime], count: int) -> np.ndarray:
    """Each moment's whole seconds since the epoch (as ``_seconds``), in one numpy pass."""
    return np.fromiter(map(datetime.timestamp, moments), np.float64, count).astype(np.int64)


def _number_table(chunks: Iterable[str], width: int) -> np.ndarray:
    """Rows of ``width`` whole numbers from GROUP_CONCAT strings of them, comma-separated."""
    flat = [np.fromstring(chunk, dtype=np.int64, sep=",") for chunk in chunks if chunk]
    return (np.concatenate(flat) if flat else np.zeros(0, np.int64)).reshape(-1, width)


def _among(values: np.ndarray, wanted: Sequence[int]) -> np.ndarray:
    """``np.isin(values, wanted)``; a few values wanted (a report's filter: one product, a
    couple of channels) compared one by one, where np.isin sorts or builds a table: a
    product's rows among 750,000 took 1.1 ms that way, 0.13 as one comparison."""
    if len(wanted) > 8:
        return np.isin(values, wanted)
    found = np.zeros(len(values), dtype=bool)
    for value in wanted:
        found |= values == value
    return found


def _spans(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Every position from each ``lo`` up to its ``hi``, in order: the rows of sorted
    intervals found by searchsorted."""
    if len(lo) == 1:
        return np.arange(lo[0], hi[0])
    lengths = hi - lo
    skipped = np.cumsum(lengths) - lengths  # positions of the intervals before each
    return np.repeat(lo - skipped, lengths) + np.arange(int(lengths.sum()))


def _cents_sql(amount: str) -> str:
    """SQL for a DECIMAL amount of two decimals as whole cents (exact)."""
    return f"CAST(({amount}) * 100 AS SIGNED)"


def _epoch_sql(moment: str) -> str:
    """SQL for a naive-UTC DATETIME column as whole seconds since the epoch."""
    return f"TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', {moment})"


# --- the raw lines of a zone's edge hours ----------------------------------------------------

ZONES: tuple[str, ...] = ()  # sales_service's store_timezone: the zones whose edge hours are held
# Past this many hours of a day (a zone whose midnight is far from UTC's: Tokyo's 9) the lines
# would be a large share of all: none are held, and the edges are read from the database.
MAX_EDGE_HOURS = 6


@functools.lru_cache(maxsize=64)
def edge_hours(zone_name: str) -> frozenset[int]:
    """The UTC hours of the day (0-23) that lie between UTC midnight and the zone's midnight,
    on the shorter side, under any offset the zone has had or will have from 2000 to 2040:
    the whole hours a period of the zone reads apart from the UTC days (``planner.decompose``
    reads the shorter side of a day raw). None for an offset whose midnight is not on the
    hour (India's, at 18:30 UTC): the stretch it reads apart starts mid-hour, so it is read
    from the database whole."""
    zone = ZoneInfo(zone_name)
    offsets = {
        datetime(year, month, day, 12, tzinfo=UTC).astimezone(zone).utcoffset()
        for year in range(2000, 2041)
        for month in range(1, 13)
        for day in (1, 15)
    }
    hours: set[int] = set()
    for offset in offsets:
        midnight = -int(offset.total_seconds()) % 86400 if offset is not None else 0
        if midnight % 3600:
            continue
        if midnight >= 43200:  # the day's end: [local midnight, 24:00) read apart
            hours.update(range(midnight // 3600, 24))
        if 0 < midnight <= 43200:  # its start: [00:00, local midnight)
            hours.update(range(midnight // 3600))
    return frozenset(hours)


def held_hours() -> frozenset[int]:
    """The hours of the day whose lines a copy loaded now holds."""
    hours = frozenset().union(*(edge_hours(name) for name in ZONES))
    return hours if len(hours) <= MAX_EDGE_HOURS else frozenset()


class Blocks(NamedTuple):
    """Rollup blocks of one grain starting inside the intervals, each bucketed by its start
    plus ``shift`` seconds."""

    grain: int
    intervals: Sequence[Interval]
    shift: int = 0


class Use(NamedTuple):
    """Lines of [start, end) (seconds since the epoch) added to (sign 1) or taken from (-1) a
    bucket."""

    start: int
    end: int
    bucket: int  # 0 without buckets
    sign: int


_LINE_FIELDS = ("sold", "sale", "channel", "product", "category", "units", "revenue", "cost")


@dataclass(frozen=True)
class EdgeLines:
    """The sale lines sold in some hours of every UTC day (``hours``), as columns sorted by
    when sold: seconds since the epoch, sale, channel, product, category (0 for none), and
    net units, revenue and cost (cents), as ``repository.raw_part`` sums them."""

    hours: frozenset[int]
    columns: np.ndarray  # shape (8, lines), rows as _LINE_FIELDS

    @classmethod
    def parse(cls, hours: frozenset[int], chunks: Iterable[str]) -> "EdgeLines":
        table = _number_table(chunks, len(_LINE_FIELDS))
        table = table[np.argsort(table[:, 0], kind="stable")]
        return cls(hours, np.ascontiguousarray(table.T))

    def __len__(self) -> int:
        return self.columns.shape[1]

    def replaced(self, hours: Sequence[int], lines: "EdgeLines") -> "EdgeLines":
        """These lines instead of every line sold in the hours (starts, in seconds) given."""
        sold = self.columns[0]
        keep = ~np.isin(sold - sold % 3600, np.asarray(hours, dtype=np.int64))
        table = np.concatenate([self.columns[:, keep], lines.columns], axis=1)
        order = np.argsort(table[0], kind="stable")
        return EdgeLines(self.hours, np.ascontiguousarray(table[:, order]))

    def holds(self, start: datetime, end: datetime) -> bool:
        """Whether every line sold in [start, end) is here: whole hours, each held."""
        if start.minute or start.second or start.microsecond or end.minute or end.second:
            return False
        if end.microsecond or start >= end:
            return False
        hours = (end - start) // timedelta(hours=1)
        return hours <= 24 and all((start.hour + k) % 24 in self.hours for k in range(hours))

    def sums(self, query: Query, uses: Sequence[Use], *, bucketed: bool) -> ColumnSums:
        """What ``repository.raw_part`` sums over each use's lines, per bucket and group, with
        the use's sign (its stretch of time must be ``holds``)."""
        sold = self.columns[0]
        starts, ends, buckets, signs = (
            np.array(c, dtype=np.int64) for c in zip(*uses, strict=True)
        )
        lo, hi = np.searchsorted(sold, starts), np.searchsorted(sold, ends)
        index, use = _spans(lo, hi), np.repeat(np.arange(len(uses)), hi - lo)
        # the filters on the columns they need first: only the lines they keep are gathered
        for row, wanted in ((3, query.product_ids), (2, query.channel_ids)):
            if wanted:
                keep = _among(self.columns[row, index], wanted)
                index, use = index[keep], use[keep]
        if query.category_keys is not None:
            keep = _among(self.columns[4, index], query.category_keys)
            index, use = index[keep], use[keep]
        nodes = dict(query.tree_groups)  # CATEGORY_TREE: each category's group
        if query.group_by is GroupBy.CATEGORY_TREE:
            keep = _among(self.columns[4, index], list(nodes))
            index, use = index[keep], use[keep]
        _, sale, channel, product, category, units, revenue, cost = np.take(
            self.columns, index, axis=1
        )
        group: np.ndarray | None = None
        if query.group_by is GroupBy.PRODUCT:
            group = product
        elif query.group_by is GroupBy.CHANNEL:
            group = channel
        elif query.group_by is GroupBy.CATEGORY:
            group = category
        elif query.group_by is GroupBy.CATEGORY_TREE:
            group = np.array([nodes[c] for c in category.tolist()], dtype=np.int64)
        keys = buckets[use] << GROUP_BITS
        if group is not None:
            keys |= group
        sign = signs[use]
        # orders: each sale with units left counts once per use and group (a use is one
        # stretch of time, as one statement's COUNT(DISTINCT) would count it)
        live = np.flatnonzero(units > 0)
        group_of = group[live] if group is not None else np.zeros(len(live), dtype=np.int64)
        live = live[np.lexsort((group_of, sale[live], use[live]))]
        seen = np.vstack([use[live], sale[live], keys[live]])
        first = live[np.r_[True, (seen[:, 1:] != seen[:, :-1]).any(axis=0)]] if len(live) else live
        orders = np.zeros(len(keys), dtype=np.int64)
        orders[first] = 1
        totals = np.vstack([orders, units, revenue, cost]) * sign
        return ColumnSums.reduce(keys, totals, bucketed=bucketed, grouped=group is not None)


@dataclass(frozen=True)
class RollupCopy:
    """The four rollup tables at one consumer position (immutable: a newer copy replaces it)."""

    position: int
    generation: int
    tables: dict[Source, Columns]
    category_paths: dict[int, str]  # report_category_paths: each category's path when counted
    lines: EdgeLines  # the raw lines of the edge hours, as they were in the same snapshot
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
        blocks: Sequence[Blocks],
        *,
        boundaries: Sequence[datetime] | None,
    ) -> ColumnSums:
        """What ``repository.rollup_part`` sums in the database for each of the ``blocks``,
        from this copy, added up: the blocks of a grain starting inside the intervals, per
        bucket (of the block's start + the shift in seconds) and/or group."""
        rows = self.tables[source]
        count = sum(len(b.intervals) for b in blocks)
        tags = np.array([b.grain << GRAIN_SHIFT for b in blocks], dtype=np.int64)
        grains = np.repeat(tags, [len(b.intervals) for b in blocks])
        starts = grains + _epochs((x for b in blocks for x, _ in b.intervals), count)
        ends = grains + _epochs((y for b in blocks for _, y in b.intervals), count)
        if source is Source.SALES_ROLLUPS and boundaries is None:  # (see RUNNING_FROM)
            return self._by_channel(rows, query, blocks, starts, ends, None)
        lo = np.searchsorted(rows.key, starts)
        hi = np.searchsorted(rows.key, ends)
        if source is Source.SALES_ROLLUPS and int((hi - lo).sum()) > RUNNING_FROM:
            return self._by_channel(rows, query, blocks, starts, ends, boundaries)
        by_start = np.argsort(starts)
        if (
            query.product_ids
            and source in _PRODUCT_SOURCES
            and len(lo) > 1
            and bool(np.all(ends[by_start][:-1] <= starts[by_start][1:]))  # disjoint
        ):
            # a few products' rows among many intervals' (a product's weekly series over
            # three years: 750 among 750,000): found in the whole span first, no gather
            first, last = int(lo.min()), int(hi.max())
            products = rows.groups["product_id"][first:last]
            index = first + np.flatnonzero(_among(products, query.product_ids))
            at = np.searchsorted(starts[by_start], rows.key[index], side="right") - 1
            inside = (at >= 0) & (rows.key[index] < ends[by_start][np.maximum(at, 0)])
            index, interval = index[inside], by_start[at[inside]]
        else:
            index, interval = _spans(lo, hi), None
        keep = self._keep(source, query, rows, index)
        index = index[keep]
        shift: np.ndarray | int = 0
        if boundaries is not None and any(b.shift for b in blocks):
            shifts = np.array([b.shift for b in blocks for _ in b.intervals], dtype=np.int64)
            if interval is None:  # each row's interval, by the intervals' lengths
                interval = np.repeat(np.arange(len(lo)), hi - lo)
            shift = shifts[interval[keep]]
        group = _group_column(source, query, rows)
        if query.units_only:  # the units alone gathered (stock cover: a 30-day ranking)
            measures = np.zeros((4, len(index)), dtype=np.int64)
            measures[1] = rows.measures[1, index]
        else:
            measures = np.take(rows.measures, index, axis=1)  # [:, index]: twice as long
        if group is None and boundaries is None:  # one row, as SQL's SUM over no rows gives
            total = measures.sum(axis=1).reshape(4, 1)
            return ColumnSums(np.zeros(1, dtype=np.int64), total, False, False)
        keys = np.zeros(len(index), dtype=np.int64)
        if boundaries is not None:
            seconds = _epochs(boundaries, len(boundaries))
            bucket = np.searchsorted(seconds, rows.start[index] + shift, side="right") - 1
            keys = bucket << GROUP_BITS
        if group is not None:
            keys = keys | group[index]
        return ColumnSums.reduce(
            keys, measures, bucketed=boundaries is not None, grouped=group is not None
        )

    @staticmethod
    def _by_channel(
        rows: Columns,
        query: Query,
        blocks: Sequence[Blocks],
        starts: np.ndarray,
        ends: np.ndarray,
        boundaries: Sequence[datetime] | None,
    ) -> ColumnSums:
        """``sums`` of the sales rollups: the rows of the channels asked for (those of the
        filter, else every channel's when grouped by channel, else those for all channels
        together), as ``_keep`` lets through."""
        runs = rows.by_channel
        grouped = query.group_by is GroupBy.CHANNEL
        if query.channel_ids:
            wanted = np.unique(np.array(query.channel_ids, dtype=np.int64))
        elif grouped:
            wanted = runs.channels[runs.channels != ALL_CHANNELS]
        else:
            wanted = np.array([ALL_CHANNELS], dtype=np.int64)
        buckets = None
        if boundaries is not None:
            shifts = np.array([b.shift for b in blocks for _ in b.intervals], dtype=np.int64)
            buckets = (shifts, _epochs(boundaries, len(boundaries)))
        return runs.sums(wanted, grouped, starts, ends, buckets)

    @staticmethod
    def _keep(source: Source, query: Query, rows: Columns, index: np.ndarray) -> np.ndarray:
        """Which of the rows at ``index`` the query's filters let through (as the WHERE of
        ``repository.rollup_part``)."""
        keep = np.ones(len(index), dtype=bool)

        def column(name: str) -> np.ndarray:
            return rows.groups[name][index]

        if query.product_ids and source in (Source.PRODUCT_TOTALS, Source.PRODUCT_ROLLUPS):
            keep &= _among(column("product_id"), query.product_ids)
        if source is Source.PRODUCT_TOTALS:
            return keep
        if query.channel_ids:
            keep &= _among(column("channel_id"), query.channel_ids)
        if source is Source.SALES_ROLLUPS:
            if query.group_by is GroupBy.CHANNEL and not query.channel_ids:
                keep &= column("channel_id") != ALL_CHANNELS
            elif not query.channel_ids:
                keep &= column("channel_id") == ALL_CHANNELS
        elif source is Source.PRODUCT_ROLLUPS:
            if query.category_keys is not None:
                keep &= _among(column("category_key"), query.category_keys)
        elif source is Source.CATEGORY_ROLLUPS:
            scope, category = column("scope"), column("category_key")
            if query.group_by is GroupBy.CATEGORY:
                keep &= scope == SCOPE_SELF
                if query.category_keys is not None:
                    keep &= _among(category, query.category_keys)
            elif query.group_by is GroupBy.CATEGORY_TREE:
                tree = (scope == SCOPE_TREE) & _among(category, query.tree_nodes)
                own = (scope == SCOPE_SELF) & _among(category, query.self_nodes)
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
            _epoch_sql("bucket_start"),
            *_GROUPS[source],
            "orders",
            "units",
            _cents_sql("revenue"),
            _cents_sql("cost"),
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


# The edge hours' lines, as ``repository.raw_part`` sums them (money in cents), as strings
# of numbers (one per chunk of sales).
_LINES = (
    f"SELECT GROUP_CONCAT(CONCAT_WS(',', {_epoch_sql('l.sold_at')}, s.id, s.channel_id, "
    "l.product_id, COALESCE(l.category_id, 0), l.quantity - l.refunded_quantity, "
    f"{_cents_sql('l.line_total - l.refunded_total')}, "
    f"{_cents_sql('l.line_cost - l.refunded_cost')}) SEPARATOR ',') "
)
# All of them: one pass over the lines, each one's sale by its id (a tenth of all lines for
# Berlin's two hours: 8.7 s at 10M sales, where the sales found by their index on sold_at,
# day by day, and their lines by sale took 23).
_ALL_LINES = (
    _LINES + f"FROM sale_lines l STRAIGHT_JOIN {Sale.__tablename__} s ON s.id = l.sale_id "
    "WHERE HOUR(l.sold_at) IN ({hours}) GROUP BY l.sale_id DIV 10000"
)
# Those of a few hours (the ones events touched): the sales by their index on sold_at.
_LINES_IN = (
    _LINES + f"FROM {Sale.__tablename__} s STRAIGHT_JOIN sale_lines l ON l.sale_id = s.id "
    "WHERE {where} GROUP BY TO_DAYS(s.sold_at)"
)


def _read_lines(
    connection: Connection, hours: frozenset[int], stretches: Sequence[Interval] | None = None
) -> EdgeLines:
    """The lines sold in the stretches of time given, or else in the held hours of every
    day."""
    if stretches is None and hours:
        found = connection.exec_driver_sql(_ALL_LINES.format(hours=number_list(hours)))
    elif stretches:
        where = " OR ".join(
            f"(s.sold_at >= {moment_sql(a)} AND s.sold_at < {moment_sql(b)})" for a, b in stretches
        )
        found = connection.exec_driver_sql(_LINES_IN.format(where=where))
    else:
        return EdgeLines(hours, np.zeros((len(_LINE_FIELDS), 0), dtype=np.int64))
    return EdgeLines.parse(hours, [row[0] for row in found])


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
    with snapshot_connection(engine) as connection:
        state = _position(connection)
        if state is None or state[1]:
            return None
        position, _, generation = state

        def made(tables: dict[Source, Columns], lines: EdgeLines) -> RollupCopy:
            paths = {int(c): str(p) for c, p in connection.exec_driver_sql(_PATHS)}
            # made here (10-17 ms at 160,000 rows), not by the first report after a refresh
            _ = tables[Source.SALES_ROLLUPS].by_channel
            return RollupCopy(position, generation, tables, paths, lines, read_at, time.monotonic())

        def whole() -> RollupCopy:
            tables = {source: _read(connection, source) for source in SOURCE_TABLES}
            return made(tables, _read_lines(connection, held_hours()))

        if (
            copy is None
            or not copy.matches(position, False, generation)
            or copy.lines.hours != held_hours()
        ):
            return whole()
        if position == copy.position:
            return made(copy.tables, copy.lines)
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
        lines = copy.lines
        hours = [start for grain, start in touched if grain == HOUR and start.hour in lines.hours]
        if hours:
            stretches = [(start, start + timedelta(hours=1)) for start in hours]
            fresh = _read_lines(connection, lines.hours, stretches)
            lines = lines.replaced([_seconds(start) for start in hours], fresh)
        return made(
            {
                source: rows.replaced(keys, _read(connection, source, where))
                for source, rows in copy.tables.items()
            },
            lines,
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
        # a copy a report found events after (they stay after it while it is held)
        self.overtaken: RollupCopy | None = None


_SLOTS: dict[str, _Slot] = {}  # by database URL (without its password)
_SLOTS_LOCK = threading.Lock()
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="report-rollups-copy")
ENABLED = True  # sales_service's setting SHOP_REPORTS_IN_MEMORY


_SLOT_OF: "weakref.WeakKeyDictionary[Engine, _Slot]" = weakref.WeakKeyDictionary()


def _slot(engine: Engine) -> _Slot:
    found = _SLOT_OF.get(engine)  # the URL rendered took 35 us of every report
    if found is not None:
        return found
    url = engine.url.render_as_string(hide_password=True)  # any engine on the database
    with _SLOTS_LOCK:
        slot = _SLOTS.get(url)
        if slot is None:
            slot = _SLOTS[url] = _Slot()
        _SLOT_OF[engine] = slot
        return slot


def current(engine: Engine, *, unless_overtaken: bool = False) -> RollupCopy | None:
    """This process's copy of the database's rollups, if one is loaded (one is then loaded
    in the background); with ``unless_overtaken``, not one a report found events after
    (``overtaken``)."""
    if not ENABLED or engine.dialect.name not in ("mysql", "mariadb"):
        return None
    slot = _slot(engine)
    copy = slot.copy
    if copy is None:
        _start(engine, slot, None)
    if unless_overtaken and copy is slot.overtaken:
        return None
    return copy


def overtaken(engine: Engine, copy: RollupCopy) -> None:
    """A report found events after the copy: until a newer copy replaces it, every report
    will (a report plans before its first statement's answer only where that finds none)."""
    _slot(engine).overtaken = copy


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
