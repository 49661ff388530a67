"""The source planner: which SELECTs add up to a report's exact sums.

Numbers come from the rollup tables (sales_service/reports/rollups.py) where those give
exactly the same answer, else from the raw rows; each answer names what it read. The
rollups stand at their consumer's position in the sales outbox: a block that an event after
it touched is cut into finer blocks down to raw rows (``decompose``), so an answer read in
one snapshot is exact however far the consumer lags.
"""

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TypeVar

import numpy as np
from sqlalchemy import Connection

from sales_service.reports import inmemory, repository
from sales_service.reports.columns import ColumnSums
from sales_service.reports.consumer import CONSUMER as ROLLUP_CONSUMER
from sales_service.reports.inmemory import Blocks, Use
from sales_service.reports.repository import GroupBy, Interval, Query, Source, Sums
from sales_service.reports.rollups import (
    CATEGORY_GRAINS,
    DAY,
    HOUR,
    PRODUCT_GRAINS,
    SALES_GRAINS,
    TOTAL_GRAINS,
    UNCATEGORIZED,
    Measures,
    ancestry,
    category_rollups_stale,
    grain_ceil,
    grain_floor,
    grain_next,
)

# --- filters and queries ------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What the caller asked for, as ids; categories include their subcategories."""

    product_ids: tuple[int, ...] = ()
    category_ids: tuple[int, ...] = ()
    channel_ids: tuple[int, ...] = ()


def subtree(paths: dict[int, str], roots: Iterable[int]) -> set[int]:
    """The categories at or below any of the roots, by the current paths."""
    found: set[int] = set()
    for root in roots:
        prefix = paths.get(root)
        if prefix is None:
            continue
        found |= {cid for cid, path in paths.items() if path.startswith(prefix)}
        found.add(root)
    return found


_Planned = TypeVar("_Planned")


@dataclass
class Context:
    """Per-request lookups shared by every sum a report makes, each read once, when first
    needed."""

    connection: Connection
    sources: set[Source] = field(default_factory=set)
    use_rollups: bool = True
    names_channels: bool = False  # the report names channels: read them with ``dirty``
    _mark: repository.WatermarkRow | None = field(default=None, init=False)
    _channels: dict[int, str] | None = field(default=None, init=False)  # read with ``dirty``
    # this process's copy of the rollups, when the sums are read from it (see ``dirty``)
    copy: inmemory.RollupCopy | None = field(default=None, init=False)
    # ``dirty``'s statement, sent while the first sums are planned as if it found nothing
    _asked: "Callable[[], repository.Pending | None] | None" = field(default=None, init=False)

    @cached_property
    def categories(self) -> dict[int, tuple[str, str]]:
        """Every category's current path and name (one query for both)."""
        return repository.categories(self.connection)

    @cached_property
    def paths(self) -> dict[int, str]:
        """Every category's current path."""
        return {cid: path for cid, (path, _) in self.categories.items()}

    @cached_property
    def category_stale(self) -> bool:
        """A category counted in the rollups has moved or is gone since. With a copy in
        memory, its own record of the paths counted (the same table, read with it) and the
        current paths tell, with no query."""
        if self.dirty is not None and self.copy is not None:
            now = self.categories
            return any(
                (found := now.get(cid)) is None or found[0] != path
                for cid, path in self.copy.category_paths.items()
            )
        return category_rollups_stale(self.connection)

    @cached_property
    def dirty(self) -> list[datetime] | None:
        """When the sales sold that events the rollups have not applied yet changed, sorted:
        the rollup blocks holding these moments are stale and are read from raw rows. None
        while the rollups wait for a rebuild (after a migration changed them): all is raw."""
        copy = inmemory.current(self.connection.engine) if self.use_rollups else None
        if copy is None:
            return self._settle(None, None)
        found = repository.pending_since(
            self.connection, ROLLUP_CONSUMER, copy.position, channels=self.names_channels
        )
        return self._settle(copy, found)

    def _settle(
        self, copy: inmemory.RollupCopy | None, found: repository.Pending | None
    ) -> list[datetime] | None:
        """``dirty`` from what its statement found after the copy's position (``found``;
        None before the consumer's first pass): the copy is used if the rollups are that
        copy plus those events, else dropped and the rollups' own state read."""
        engine = self.connection.engine
        if copy is not None:  # the rollups as held in memory, and the events after them
            if found is not None:
                state, self._mark, self._channels = found.state, found.mark, found.channels
                if copy.matches(state.position, state.needs_rebuild, state.generation):
                    self.copy = copy
                    if state.position > copy.position:
                        inmemory.behind(engine, copy)
                    return found.times
            inmemory.discard(engine, copy)
        times, self._mark = repository.pending_sale_times(self.connection, ROLLUP_CONSUMER)
        return times

    def speculate(self) -> bool:
        """Before the first sums: send ``dirty``'s statement without waiting for its answer
        and plan as if it found what it mostly finds (the copy current, no event after it),
        so that the database answers while this process plans; ``confirm`` then tells
        whether that holds. False where the sums are planned the ordinary way."""
        if "dirty" in self.__dict__ or not self.use_rollups:
            return False
        copy = inmemory.current(self.connection.engine, unless_overtaken=True)
        if copy is None:
            return False
        self._asked = repository.send_pending_since(
            self.connection, ROLLUP_CONSUMER, copy.position, channels=self.names_channels
        )
        if self._asked is None:
            return False
        self.copy, self.__dict__["dirty"] = copy, []
        return True

    def planned(self, plan: Callable[[], _Planned]) -> _Planned:
        """``plan()``: where it is a report's first (``speculate``), made while the first
        statement is on its way, and made again where what that found changes it (an event
        after the copy, a copy no longer current). It may read and sum, but must change
        nothing in the context but the sources it names."""
        if self.speculate():
            sources = set(self.sources)
            try:
                found = plan()
            except Exception:
                if self.confirm():  # not the guess's doing
                    raise
            else:
                if self.confirm():
                    return found
            self.sources = sources
        return plan()

    def confirm(self) -> bool:
        """Read what ``dirty``'s statement sent by ``speculate`` found and settle on it;
        whether the plan made meanwhile holds (else it is made again)."""
        assert self._asked is not None
        found, self._asked = self._asked(), None
        guess, self.copy = self.copy, None
        for derived in ("dirty", "category_stale"):  # made with the guess
            self.__dict__.pop(derived, None)
        self.__dict__["dirty"] = dirty = self._settle(guess, found)
        if guess is None or self.copy is not guess:
            return False
        if dirty:  # and so will every report's on this copy: they plan after the answer
            inmemory.overtaken(self.connection.engine, guess)
        return not dirty

    def channel_names(self, ids: Iterable[int]) -> dict[int, str]:
        """The channels' names: as read with ``dirty`` where it read them, else a query."""
        if self._channels is None:
            return repository.channel_names(self.connection, ids)
        return {cid: self._channels[cid] for cid in ids if cid in self._channels}

    @property
    def watermark(self) -> repository.WatermarkRow:
        """The newest sale, refund and change the snapshot holds: read with ``dirty`` when
        that was read (one round trip for both), else on its own."""
        if self._mark is None:
            self._mark = repository.watermark(self.connection)
        return self._mark


def within_subtree(ctx: Context, filters: Filters, root: int) -> Filters | None:
    """The filters narrowed to the root category's subtree (the lines they match that lie
    in it); None when none can.

    Two subtrees are nested or apart, so the lines in the root's subtree and in any filter
    category's are those of the root's subtree if the root lies under one of them, else
    those of the filter categories that lie under the root."""
    if not filters.category_ids or root in subtree(ctx.paths, filters.category_ids):
        return replace(filters, category_ids=(root,))
    below = subtree(ctx.paths, [root])
    inside = tuple(c for c in filters.category_ids if c in below)
    return replace(filters, category_ids=inside) if inside else None


def base_query(ctx: Context, filters: Filters) -> Query:
    keys: tuple[int, ...] | None = None
    if filters.category_ids:
        keys = tuple(sorted(subtree(ctx.paths, filters.category_ids)))
    return Query(
        product_ids=filters.product_ids, category_keys=keys, channel_ids=filters.channel_ids
    )


def tree_query(ctx: Context, query: Query, parent_id: int | None) -> Query:
    """Group lines under the top-level category (or the parent's child) above theirs."""
    groups: dict[int, int] = {}
    tree_nodes: set[int] = set()
    self_nodes: set[int] = set()
    if parent_id is None:
        groups[UNCATEGORIZED] = UNCATEGORIZED
        tree_nodes.add(UNCATEGORIZED)
        for cid, path in ctx.paths.items():
            top = ancestry(path, cid)[0]
            groups[cid] = top
            tree_nodes.add(top)
    else:
        self_nodes.add(parent_id)
        for cid, path in ctx.paths.items():
            chain = ancestry(path, cid)
            if parent_id not in chain:
                continue
            below = chain[chain.index(parent_id) + 1 :]
            groups[cid] = below[0] if below else parent_id
            if below:
                tree_nodes.add(below[0])
    if query.category_keys is not None:
        allowed = set(query.category_keys)
        groups = {c: g for c, g in groups.items() if c in allowed}
    return Query(
        product_ids=query.product_ids,
        category_keys=query.category_keys,
        channel_ids=query.channel_ids,
        group_by=GroupBy.CATEGORY_TREE,
        tree_groups=tuple(sorted(groups.items())),
        tree_nodes=tuple(sorted(tree_nodes)),
        self_nodes=tuple(sorted(self_nodes)),
    )


def choose_source(ctx: Context, query: Query, has_category_filter: bool) -> Source:
    """The rollup that answers this exactly (orders included), else the raw rows."""
    if not ctx.use_rollups or ctx.dirty is None:
        return Source.RAW
    group = query.group_by
    products = query.product_ids
    if not products and not has_category_filter and group in (GroupBy.NONE, GroupBy.CHANNEL):
        return Source.SALES_ROLLUPS
    categories_ok = (
        not (has_category_filter or group in (GroupBy.CATEGORY, GroupBy.CATEGORY_TREE))
        or not ctx.category_stale
    )
    if not categories_ok:
        return Source.RAW
    # product rows count each sale once per product, so orders add up per product
    one_product = len(products) == 1 and group in (GroupBy.NONE, GroupBy.CHANNEL)
    if group is GroupBy.PRODUCT or one_product:
        over_all_channels = group is not GroupBy.CHANNEL and not query.channel_ids
        if over_all_channels and not has_category_filter:
            return Source.PRODUCT_TOTALS
        return Source.PRODUCT_ROLLUPS
    if products:
        return Source.RAW
    if group is GroupBy.CATEGORY:
        return Source.CATEGORY_ROLLUPS
    if group is GroupBy.CATEGORY_TREE and not has_category_filter:
        return Source.CATEGORY_ROLLUPS
    if group in (GroupBy.NONE, GroupBy.CHANNEL) and query.subtree_node is not None:
        return Source.CATEGORY_ROLLUPS
    return Source.RAW


# --- summing over intervals ------------------------------------------------------------------


@dataclass
class Plan:
    """What adds up to the exact sums over some intervals: whole rollup blocks per grain, raw
    rows, and trimmed blocks (a finest block read whole, less the raw rows of its part that
    lies outside the interval) per grain and anchor (see ``decompose``)."""

    blocks: dict[int, list[Interval]] = field(default_factory=dict)
    raw: list[Interval] = field(default_factory=list)
    trimmed: dict[tuple[int, bool], list[Interval]] = field(default_factory=dict)
    trimmed_out: dict[tuple[int, bool], list[Interval]] = field(default_factory=dict)


FIXED_LENGTH = {HOUR: 3600, DAY: 86400}  # seconds; months and years vary


def decompose(
    start: datetime,
    end: datetime,
    grains: Sequence[int],
    dirty: Sequence[datetime] = (),
    *,
    plan: Plan | None = None,
    bucket: tuple[datetime, datetime | None] | None = None,
    trim: bool = True,
) -> Plan:
    """Cut [start, end) into whole UTC blocks of the grains (coarsest first) and raw leftovers.

    A block holding a ``dirty`` moment (sorted) is not used: it is cut into finer blocks, and
    at the finest grain read raw, so only the few blocks an unapplied event touched are.

    A leftover that covers more than half of a clean block of the finest grain is read as
    that block less the raw rows of the rest of it (sums and counts of sales add up over
    disjoint stretches of time, so a difference is as exact as a sum). Per bucket
    (``bucket`` = its start and end, the end None for the last), the block's rows must land
    in the leftover's bucket: they are anchored at the block's start if that lies in the
    bucket, else at its last moment (fixed-length grains only); the rows taken off are
    anchored the same way, by the block they lie in. Only with ``trim``: where groups are
    listed, a group whose lines all lie in the part taken off would be listed with zeros.
    """
    plan = plan if plan is not None else Plan()
    if len(grains) == 1 and _decompose_fixed(start, end, grains[0], dirty, plan, bucket, trim):
        return plan
    finest = grains[0] if grains and trim else None

    def leftover(a: datetime, b: datetime) -> None:
        if finest is None:
            plan.raw.append((a, b))
            return
        g0 = grain_floor(finest, a)
        g1 = grain_next(finest, g0)
        if b > g1:  # across a boundary of the finest grain: each side on its own
            leftover(a, g1)
            leftover(g1, b)
            return
        outside = (a - g0) + (g1 - b)
        clean = bisect_left(dirty, g0) == bisect_left(dirty, g1)
        anchor_start = bucket is None or g0 >= bucket[0]
        anchor_end = bucket is not None and (bucket[1] is None or g1 <= bucket[1])
        anchored = anchor_start or (anchor_end and finest in FIXED_LENGTH)
        if not (clean and anchored and outside < b - a):
            plan.raw.append((a, b))
            return
        key = (finest, anchor_start)
        plan.trimmed.setdefault(key, []).append((g0, g1))
        pieces = [(g0, a), (b, g1)]
        plan.trimmed_out.setdefault(key, []).extend((x, y) for x, y in pieces if x < y)

    def cut(a: datetime, b: datetime, level: int) -> None:
        if a >= b:
            return
        if level < 0:
            leftover(a, b)
            return
        grain = grains[level]
        inner_a, inner_b = grain_ceil(grain, a), grain_floor(grain, b)
        if inner_a >= inner_b:
            cut(a, b, level - 1)
            return
        clean_from = inner_a
        for moment in dirty[bisect_left(dirty, inner_a) : bisect_left(dirty, inner_b)]:
            block = grain_floor(grain, moment)
            if block < clean_from:
                continue  # a block already cut for an earlier moment
            if clean_from < block:
                plan.blocks.setdefault(grain, []).append((clean_from, block))
            clean_from = grain_next(grain, block)
            cut(block, clean_from, level - 1)
        if clean_from < inner_b:
            plan.blocks.setdefault(grain, []).append((clean_from, inner_b))
        cut(a, inner_a, level - 1)
        cut(inner_b, b, level - 1)

    cut(start, end, len(grains) - 1)
    return plan


def _decompose_fixed(
    start: datetime,
    end: datetime,
    grain: int,
    dirty: Sequence[datetime],
    plan: Plan,
    bucket: tuple[datetime, datetime | None] | None,
    trim: bool,
) -> bool:
    """``decompose`` into blocks of one fixed-length grain (hours or days: a series summed
    from the copy), in whole seconds since the epoch, as the general path cuts it: that took
    ~57 us a bucket, most of a 3-year weekly series of one product. False, with nothing
    done, where the general path must: a grain of varying length (months, years), an end,
    or the bucket's, not a whole second, or a ``dirty`` moment in a block the interval
    touches."""
    length = FIXED_LENGTH.get(grain)
    if length is None:
        return False
    ends = (start, end) if bucket is None else (start, end, bucket[0], bucket[1] or end)
    if any(moment.microsecond for moment in ends):
        return False
    a, b = int(start.timestamp()), int(end.timestamp())
    if a >= b:
        return True
    if dirty:
        touched = (_utc(a - a % length), _utc(b + (-b) % length))
        if bisect_left(dirty, touched[0]) != bisect_left(dirty, touched[1]):
            return False
    inner_a, inner_b = a + (-a) % length, b - b % length
    moments = {a: start, b: end}  # the ends as given; the rest made as needed

    def at(seconds: int) -> datetime:
        found = moments.get(seconds)
        if found is None:
            found = moments[seconds] = _utc(seconds)
        return found

    if inner_a < inner_b:
        plan.blocks.setdefault(grain, []).append((at(inner_a), at(inner_b)))
        leftovers = [(x, y) for x, y in ((a, inner_a), (inner_b, b)) if x < y]
    else:  # inside one block, or across one boundary: then each side on its own (trim)
        g1 = a - a % length + length
        leftovers = [(a, g1), (g1, b)] if trim and b > g1 else [(a, b)]
    if not trim:
        plan.raw.extend((at(x), at(y)) for x, y in leftovers)
        return True
    first = None if bucket is None else int(bucket[0].timestamp())
    last = None if bucket is None or bucket[1] is None else int(bucket[1].timestamp())
    for x, y in leftovers:
        g0 = x - x % length
        g1 = g0 + length
        anchor_start = first is None or g0 >= first
        anchor_end = first is not None and (last is None or g1 <= last)
        if not ((anchor_start or anchor_end) and (x - g0) + (g1 - y) < y - x):
            plan.raw.append((at(x), at(y)))
            continue
        key = (grain, anchor_start)
        plan.trimmed.setdefault(key, []).append((at(g0), at(g1)))
        pieces = [(at(p), at(q)) for p, q in ((g0, x), (y, g1)) if p < q]
        plan.trimmed_out.setdefault(key, []).extend(pieces)
    return True


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for a, b in sorted(intervals):
        if merged and merged[-1][1] >= a:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def grains_of(source: Source, query: Query) -> tuple[int, ...]:
    """The block lengths the source keeps for this query, finest first."""
    if source is Source.SALES_ROLLUPS:
        return SALES_GRAINS
    if source is Source.PRODUCT_ROLLUPS:
        return PRODUCT_GRAINS
    if source is Source.PRODUCT_TOTALS:
        return TOTAL_GRAINS
    if source is Source.CATEGORY_ROLLUPS:
        if query.channel_ids or query.group_by is GroupBy.CHANNEL:
            return CATEGORY_GRAINS
        return (DAY, *CATEGORY_GRAINS)  # days are kept for all channels together
    return ()


def aligned_runs(intervals: Sequence[Interval], grain: int) -> list[Interval]:
    """Adjacent intervals whose ends all start a block of the grain, as one: its blocks need
    no cutting at the buckets' boundaries (each block is bucketed by its start). Others stay
    as they are, to be cut at their ends."""

    length = FIXED_LENGTH.get(grain)

    def aligned(moment: datetime) -> bool:
        if length is not None:  # an hour or a day: a whole number of them since the epoch
            return not moment.microsecond and int(moment.timestamp()) % length == 0
        return grain_floor(grain, moment) == moment

    runs: list[Interval] = []
    joinable = False  # whether the last run's ends are both aligned
    last_end, last_end_aligned = None, False  # the last interval's end: often the next start
    for start, end in intervals:
        adjacent = start == last_end
        end_aligned = aligned(end)
        both = (last_end_aligned if adjacent else aligned(start)) and end_aligned
        if joinable and both and adjacent:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
        joinable, last_end, last_end_aligned = both, end, end_aligned
    return runs


def sum_series(
    ctx: Context,
    query: Query,
    intervals: Sequence[Interval],
    *,
    boundaries: Sequence[datetime],
    has_category_filter: bool,
) -> ColumnSums:
    """Exact sums over the intervals per bucket (``boundaries`` are the buckets' starts;
    each interval lies inside one bucket), as columns: a series over three years has a
    thousand buckets, each a few numbers, and a ``Measures`` apiece cost more than the sums."""

    def summed() -> ColumnSums:
        parts = plan_parts(ctx, query, intervals, boundaries, has_category_filter)
        columns, sums = repository.run_mixed(ctx.connection, [parts], boundaries)[0]
        return (columns or ColumnSums.empty(bucketed=True, grouped=False)).plus(sums)

    return ctx.planned(summed)


def plan_parts(
    ctx: Context,
    query: Query,
    intervals: Sequence[Interval],
    boundaries: Sequence[datetime] | None,
    has_category_filter: bool,
) -> list[repository.Part]:
    """The SELECTs whose rows add up to the exact sums: rollup blocks, raw leftovers."""
    source = choose_source(ctx, query, has_category_filter)
    grains = grains_of(source, query)
    if ctx.copy is not None and boundaries is not None:
        # a series summed in memory: the finest blocks of a bucket sum as quickly as coarser
        # ones, and cutting a thousand buckets into blocks of every grain costs far more
        grains = grains[:1]
        if grains:
            intervals = aligned_runs(intervals, grains[0])
    dirty = (ctx.dirty or ()) if grains else ()
    plan = Plan()
    for start, end in intervals:
        bucket: tuple[datetime, datetime | None] | None = None
        if boundaries is not None:
            index = bisect_right(boundaries, start) - 1
            following = boundaries[index + 1] if index + 1 < len(boundaries) else None
            bucket = (boundaries[index], following)
        # Grouped sums trimmed are rechecked for groups listed with zeros (Ask.recheck_zeros),
        # where they are summed in this process (from its copy of the rollups).
        trim = query.group_by is GroupBy.NONE or (ctx.copy is not None and boundaries is None)
        decompose(start, end, grains, dirty, plan=plan, bucket=bucket, trim=trim)
    blocks = [Blocks(grain, merge(found)) for grain, found in sorted(plan.blocks.items())]
    for (grain, at_start), found in sorted(plan.trimmed.items()):
        blocks.append(Blocks(grain, merge(found), anchor_shift(grain, at_start)))
    parts = _rollup_parts(ctx, source, query, blocks, boundaries)
    if parts:
        ctx.sources.add(source)
    if ctx.copy is not None and (held := take_held(ctx, plan, boundaries)):
        lines = ctx.copy.lines.sums(query, held, bucketed=boundaries is not None)
        parts.append(repository.Part(None, sums=lines))
        ctx.sources.add(Source.RAW)
    if ctx.copy is not None and boundaries is not None:
        raw = [pieces] if (pieces := raw_pieces(ctx, query, plan, boundaries)) else []
    else:
        raw = raw_parts(ctx, query, plan, boundaries)
    if raw:
        ctx.sources.add(Source.RAW)
    return parts + raw


def anchor_shift(grain: int, at_start: bool) -> int:
    """Seconds from a trimmed block's start to the moment that buckets it (``decompose``)."""
    return 0 if at_start else FIXED_LENGTH[grain] - 1


def take_held(ctx: Context, plan: Plan, boundaries: Sequence[datetime] | None) -> list[Use]:
    """The raw pieces of the plan whose lines this process holds (``inmemory.EdgeLines``: the
    hours at the edges of the store's days), taken out of it, each with its bucket and sign:
    a piece is held if each of its hours is and no event after the copy touched a sale sold
    in it (those lines may have changed since)."""
    assert ctx.copy is not None
    lines, dirty = ctx.copy.lines, ctx.dirty or ()
    if not lines.hours:
        return []
    taken: list[Use] = []

    def kept(pieces: list[Interval], sign: int, trimmed: tuple[int, bool] | None) -> list[Interval]:
        """The pieces not held; those held go to ``taken``."""
        left = []
        for a, b in pieces:
            if not lines.holds(a, b) or bisect_left(dirty, a) != bisect_left(dirty, b):
                left.append((a, b))
                continue
            bucket = piece_bucket(boundaries, (a, b), trimmed)
            taken.append(Use(int(a.timestamp()), int(b.timestamp()), bucket, sign))
        return left

    plan.raw = kept(plan.raw, 1, None)
    for trimmed, found in plan.trimmed_out.items():
        found[:] = kept(found, -1, trimmed)
    return taken


def piece_bucket(
    boundaries: Sequence[datetime] | None, piece: Interval, trimmed: tuple[int, bool] | None
) -> int:
    """The bucket a raw piece counts in (0 without buckets): that of its start, or, for a
    piece taken off a trimmed block (``trimmed``: its grain and whether it is anchored at its
    start, as ``Plan.trimmed_out`` keys them), that of the block's anchor."""
    if boundaries is None:
        return 0
    at = piece[0]
    if trimmed is not None:
        grain, at_start = trimmed
        at = grain_floor(grain, at) + timedelta(seconds=anchor_shift(grain, at_start))
    return bisect_right(boundaries, at) - 1


def raw_parts(
    ctx: Context, query: Query, plan: Plan, boundaries: Sequence[datetime] | None
) -> list[repository.Part]:
    """The plan's raw rows, each piece bucketed where it lies: what trimmed blocks take off
    (per grain and anchor, negated), and the leftovers."""
    found = []
    for (grain, at_start), pieces in sorted(plan.trimmed_out.items()):
        if not pieces:  # all held in memory (``take_held``)
            continue
        less = (grain, anchor_shift(grain, at_start))
        out = repository.raw_part(
            ctx.connection, query, merge(pieces), boundaries=boundaries, less=less
        )
        if out is not None:
            found.append(out)
    leftovers = merge(plan.raw)
    if leftovers and (
        part := repository.raw_part(ctx.connection, query, leftovers, boundaries=boundaries)
    ):
        found.append(part)
    return found


def raw_pieces(
    ctx: Context, query: Query, plan: Plan, boundaries: Sequence[datetime]
) -> repository.Part | None:
    """A series' raw rows (its leftovers, and what its trimmed blocks take off), each
    stretch of time read once and added to, or taken from, every bucket that uses it.

    Where a zone's weeks start an hour before the UTC days do, the hour a trimmed day takes
    off one week is the hour the next week reads raw: read per piece, a series of 157 weeks
    read 157 such hours twice. The pieces' ends cut time into segments; the raw rows are
    summed per segment (one statement), and each segment's sums go to the buckets of the
    pieces that hold it (a raw piece's own, with +; a trimmed block's anchor, with -)."""
    uses: list[tuple[Interval, int, int]] = []  # (piece, bucket, sign)
    for piece in plan.raw:
        uses.append((piece, piece_bucket(boundaries, piece, None), 1))
    for trimmed, found in plan.trimmed_out.items():
        uses += [(piece, piece_bucket(boundaries, piece, trimmed), -1) for piece in found]
    if not uses:
        return None
    cuts = sorted({moment for piece, _, _ in uses for moment in piece})
    takers: dict[int, list[tuple[int, int]]] = {}  # segment -> (bucket, sign) of its pieces
    for (a, b), bucket, sign in uses:
        for segment in range(bisect_left(cuts, a), bisect_left(cuts, b)):
            takers.setdefault(segment, []).append((bucket, sign))
    part = repository.raw_part(
        ctx.connection, query, merge(piece for piece, _, _ in uses), boundaries=cuts
    )
    per_segment = repository.run_sums_many(ctx.connection, [[part]], cuts)[0] if part else {}
    sums: Sums = {}
    for (at, group), measures in per_segment.items():
        assert at is not None
        for bucket, sign in takers.get(at, ()):
            add = measures if sign > 0 else measures.negated()
            key = (bucket, group)
            sums[key] = sums[key].plus(add) if key in sums else add
    grouped = query.group_by is not GroupBy.NONE
    return repository.Part(None, sums=ColumnSums.empty(bucketed=True, grouped=grouped).plus(sums))


def _rollup_parts(
    ctx: Context,
    source: Source,
    query: Query,
    blocks: Sequence[Blocks],
    boundaries: Sequence[datetime] | None,
) -> list[repository.Part]:
    """Rollup blocks: summed all together from this process's copy when the context reads
    one, else a SELECT per grain and shift."""
    if not blocks:
        return []
    if ctx.copy is not None:
        found = ctx.copy.sums(source, query, blocks, boundaries=boundaries)
        return [repository.Part(None, sums=found)]
    return [
        repository.rollup_part(
            ctx.connection,
            source,
            query,
            b.grain,
            b.intervals,
            boundaries=boundaries,
            shift=b.shift,
        )
        for b in blocks
    ]


def with_subtree(query: Query, filters: Filters) -> Query:
    if len(filters.category_ids) == 1:
        return replace(query, subtree_node=filters.category_ids[0])
    return query


@dataclass(frozen=True)
class Ask:
    """One sum over a range, per group (key None without grouping)."""

    filters: Filters
    start: datetime
    end: datetime
    query: Query

    def parts(self, ctx: Context) -> list[repository.Part]:
        query = with_subtree(self.query, self.filters)
        has_category_filter = bool(self.filters.category_ids)
        return ctx.planned(
            lambda: plan_parts(ctx, query, [(self.start, self.end)], None, has_category_filter)
        )

    def recheck_zeros(
        self, ctx: Context, sums: ColumnSums, listed: np.ndarray | None = None
    ) -> ColumnSums:
        """The sums with every all-zero group summed again from the raw rows of the range.

        A trimmed block (a block less the raw rows of its part outside the range) lists a
        group whose lines all lie outside the range, with zeros; a group whose lines inside
        net to zero (all refunded) is listed with zeros too, and must stay. The raw rows tell
        them apart: what they list for those groups replaces the zeros. Few groups net to
        zero, so this is rarely a query. Groups ``listed`` anyway are left as they are."""
        zeros = sums.zero_groups()
        if zeros and listed is not None:
            zeros = np.asarray(zeros)[~np.isin(zeros, listed)].tolist()
        if not zeros:
            return sums
        query = only_groups(with_subtree(self.query, self.filters), zeros)
        part = repository.raw_part(ctx.connection, query, [(self.start, self.end)], boundaries=None)
        again = repository.run_sums_many(ctx.connection, [[part]], None)[0] if part else {}
        return sums.without(zeros).plus(again)


def _by_group(sums: Sums) -> dict[int | None, Measures]:
    return {group: measures for (_, group), measures in sums.items()}


def range_totals(
    ctx: Context,
    filters: Filters,
    rng_start: datetime,
    rng_end: datetime,
    query: Query,
    top: repository.Top | None = None,
) -> tuple[dict[int | None, Measures], int | None]:
    """Sums over one range per group (key None without grouping), and how many groups:
    planned and summed while the first statement is on its way (``Context.planned``)."""
    ask = Ask(filters, rng_start, rng_end, query)
    return ctx.planned(lambda: _range_totals(ctx, ask, top))


def _range_totals(
    ctx: Context, ask: Ask, top: repository.Top | None
) -> tuple[dict[int | None, Measures], int | None]:
    parts = ask.parts(ctx)
    if not summed_here(parts):
        found, groups = repository.run_sums(ctx.connection, parts, None, top)
        return _by_group(found), groups
    columns = ask.recheck_zeros(ctx, repository.run_columns(ctx.connection, parts, None))
    if top is None:
        return _by_group(columns.to_sums()), None
    ranked, groups = repository.ranked(columns, top)
    return _by_group(ranked), groups


def range_totals_many(ctx: Context, asks: Sequence[Ask]) -> list[dict[int | None, Measures]]:
    """``range_totals`` of each ask (without ranking), in one round trip: every ask (a
    comparison's two periods) planned and summed while the first statement is on its way."""

    def summed() -> list[dict[int | None, Measures]]:
        found = repository.run_mixed(ctx.connection, [ask.parts(ctx) for ask in asks], None)
        return [
            _by_group(
                sums if columns is None else ask.recheck_zeros(ctx, columns.plus(sums)).to_sums()
            )
            for ask, (columns, sums) in zip(asks, found, strict=True)
        ]

    return ctx.planned(summed)


def summed_here(parts: Sequence[repository.Part]) -> bool:
    """Whether some of the parts are summed in this process (from the rollups' copy)."""
    return any(part.sums is not None for part in parts)


def only_groups(query: Query, groups: Sequence[int]) -> Query:
    """The query narrowed to lines of these groups."""

    def narrowed(allowed: tuple[int, ...] | None) -> tuple[int, ...]:
        return tuple(sorted(set(groups) & set(allowed))) if allowed else tuple(sorted(groups))

    if query.group_by is GroupBy.PRODUCT:
        return replace(query, product_ids=narrowed(query.product_ids))
    if query.group_by is GroupBy.CHANNEL:
        return replace(query, channel_ids=narrowed(query.channel_ids))
    if query.group_by is GroupBy.CATEGORY:
        return replace(query, category_keys=narrowed(query.category_keys))
    if query.group_by is GroupBy.CATEGORY_TREE:
        wanted = set(groups)
        return replace(query, tree_groups=tuple(p for p in query.tree_groups if p[1] in wanted))
    return query
