"""Revenue reports: one definition of every figure, calendar periods in any IANA zone.

Definitions (the same in every report, rollup and test):

- A sale line's **net** figures subtract what was refunded from it: net units =
  ``quantity - refunded_quantity``, net revenue = ``line_total - refunded_total``, net cost =
  ``line_cost - refunded_cost`` (cost is the unit cost snapshotted at the time of sale). A
  cancellation refunds every unit, so a cancelled sale nets to zero.
- **revenue**, **units** and **cost** are the sums of the net figures of the lines that match
  the filters; **margin** (gross margin) = revenue - cost.
- **orders** = the number of sales with at least one matching line that still has a unit not
  refunded (so fully refunded and cancelled sales are not orders). In a breakdown row it is
  the number of orders holding that product / category / channel, so rows may add up to
  more than the total.
- **average order value** = revenue / orders, rounded half up to the cent; null when there
  are no orders.
- A sale, and every later refund of it, counts in the period of its ``sold_at``.

Dates: ``from`` and ``to`` are calendar dates in the report's timezone, both included; the
range is [``from`` 00:00, the day after ``to`` 00:00) in that zone, whatever the UTC offset
or daylight-saving change in between. Periods are calendar days, weeks (starting on
``week_start``, Monday by default), months, quarters and years of that zone, cut to the
range; a day is 23 or 25 hours long across a DST change.

Numbers come from the rollup tables (sales_service/reports/rollups.py) where those give
exactly the same answer, else from the raw rows; each answer names what it read.
"""

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.orm import Session

from common.errors import Unprocessable
from common.models import Category, Product, SalesChannel
from sales_service.reports import repository
from sales_service.reports.consumer import CONSUMER as ROLLUP_CONSUMER
from sales_service.reports.repository import GroupBy, Interval, Query, Source, Sums
from sales_service.reports.rollups import (
    ALL_GRAINS,
    COARSE_GRAINS,
    HOUR,
    PRODUCT_GRAINS,
    TOTAL_GRAINS,
    UNCATEGORIZED,
    Measures,
    ancestry,
    category_rollups_stale,
    grain_ceil,
    grain_floor,
    grain_next,
)

CENT = Decimal("0.01")
MAX_BUCKETS = 1100
FIRST_DATE, LAST_DATE = date(1980, 1, 1), date(2199, 12, 31)
DEFAULT_DAYS = 30


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


class Weekday(StrEnum):
    MONDAY = "monday"
    TUESDAY = "tuesday"
    WEDNESDAY = "wednesday"
    THURSDAY = "thursday"
    FRIDAY = "friday"
    SATURDAY = "saturday"
    SUNDAY = "sunday"

    @property
    def number(self) -> int:
        """0 for Monday ... 6 for Sunday, as date.weekday() counts."""
        return list(Weekday).index(self)


class Against(StrEnum):
    PREVIOUS_PERIOD = "previous_period"
    PREVIOUS_YEAR = "previous_year"
    CUSTOM = "custom"


class Dimension(StrEnum):
    PRODUCT = "product"
    CATEGORY = "category"
    CHANNEL = "channel"


class CategoryRollup(StrEnum):
    NONE = "none"
    TOP_LEVEL = "top_level"


class SortKey(StrEnum):
    REVENUE = "-revenue"
    REVENUE_ASC = "revenue"
    UNITS = "-units"
    UNITS_ASC = "units"
    MARGIN = "-margin"
    MARGIN_ASC = "margin"


# --- parameters ---------------------------------------------------------------------------


def resolve_zone(name: str) -> ZoneInfo:
    """The IANA zone, or a 422 saying what a valid name looks like."""
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Unprocessable(
            f"Unknown timezone {name!r}: use an IANA name such as 'Europe/Berlin', "
            "'America/New_York' or 'UTC'",
            field="query.timezone",
        ) from None


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of the calendar day in the zone, in UTC (a skipped midnight gives the
    moment the clocks jumped)."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True)
class DateRange:
    """Calendar dates ``first``..``last`` (both included) in ``zone``."""

    first: date
    last: date
    zone: ZoneInfo

    @property
    def start(self) -> datetime:
        return local_midnight(self.first, self.zone)

    @property
    def end(self) -> datetime:
        return local_midnight(self.last + timedelta(days=1), self.zone)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def _check_date(value: date, name: str) -> None:
    if not FIRST_DATE <= value <= LAST_DATE:
        raise Unprocessable(
            f"{name} ({value.isoformat()}) is outside the dates reports cover: choose a date "
            f"from {FIRST_DATE.isoformat()} to {LAST_DATE.isoformat()}",
            field=f"query.{name}",
        )


def resolve_range(
    first: date | None,
    last: date | None,
    zone: ZoneInfo,
    *,
    today: date | None = None,
    names: tuple[str, str] = ("from", "to"),
) -> DateRange:
    """Fill defaults (the 30 days up to today in the zone) and check the order and limits."""
    if last is None:
        last = today or datetime.now(zone).date()
        if first is not None and first > last:
            last = first + timedelta(days=DEFAULT_DAYS - 1)
    if first is None:
        first = last - timedelta(days=DEFAULT_DAYS - 1)
    _check_date(first, names[0])
    _check_date(last, names[1])
    if last < first:
        raise Unprocessable(
            f"{names[1]} ({last.isoformat()}) is before {names[0]} ({first.isoformat()}): "
            f"{names[1]} is the last day included, so it must be on or after {names[0]}",
            field=f"query.{names[1]}",
        )
    return DateRange(first, last, zone)


@dataclass(frozen=True)
class Bucket:
    """One calendar period of the zone, cut to the range."""

    first: date
    next_first: date  # the day after the last one included
    start: datetime  # UTC
    end: datetime  # UTC
    label: str


def _period_start(day: date, period: Period, week_start: Weekday) -> date:
    if period is Period.DAY:
        return day
    if period is Period.WEEK:
        return day - timedelta(days=(day.weekday() - week_start.number) % 7)
    if period is Period.MONTH:
        return day.replace(day=1)
    if period is Period.QUARTER:
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    return day.replace(month=1, day=1)


def _period_after(start: date, period: Period) -> date:
    if period is Period.DAY:
        return start + timedelta(days=1)
    if period is Period.WEEK:
        return start + timedelta(days=7)
    months = {Period.MONTH: 1, Period.QUARTER: 3, Period.YEAR: 12}[period]
    index = start.year * 12 + start.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _label(start: date, period: Period) -> str:
    if period is Period.MONTH:
        return start.strftime("%Y-%m")
    if period is Period.QUARTER:
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    if period is Period.YEAR:
        return str(start.year)
    return start.isoformat()


def count_buckets(rng: DateRange, period: Period, week_start: Weekday) -> int:
    first = _period_start(rng.first, period, week_start)
    last = _period_start(rng.last, period, week_start)
    if period is Period.DAY:
        return (last - first).days + 1
    if period is Period.WEEK:
        return (last - first).days // 7 + 1
    months = (last.year - first.year) * 12 + last.month - first.month
    return months // {Period.MONTH: 1, Period.QUARTER: 3, Period.YEAR: 12}[period] + 1


def make_buckets(rng: DateRange, period: Period, week_start: Weekday) -> list[Bucket]:
    """The periods of the range, each cut to it; a 422 if there would be too many."""
    count = count_buckets(rng, period, week_start)
    if count > MAX_BUCKETS:
        coarser = {
            Period.DAY: "week",
            Period.WEEK: "month",
            Period.MONTH: "quarter",
            Period.QUARTER: "year",
        }.get(period, "year")
        raise Unprocessable(
            f"period={period.value} from {rng.first.isoformat()} to {rng.last.isoformat()} "
            f"gives {count} buckets, more than the {MAX_BUCKETS} a series may have: use "
            f"period={coarser} or a shorter range",
            field="query.period",
            buckets=count,
            max_buckets=MAX_BUCKETS,
        )
    buckets = []
    start = _period_start(rng.first, period, week_start)
    stop = rng.last + timedelta(days=1)
    while start < stop:
        after = _period_after(start, period)
        first, next_first = max(start, rng.first), min(after, stop)
        buckets.append(
            Bucket(
                first=first,
                next_first=next_first,
                start=local_midnight(first, rng.zone),
                end=local_midnight(next_first, rng.zone),
                label=_label(start, period),
            )
        )
        start = after
    for bucket in buckets:
        for moment in (bucket.start, bucket.end):
            if moment.minute % 15 or moment.second or moment.microsecond:
                raise Unprocessable(
                    f"Timezone {rng.zone.key!r} had a UTC offset that is not a whole quarter "
                    f"hour around {moment.date().isoformat()}; choose later dates",
                    field="query.timezone",
                )
    return buckets


# --- filters --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What the caller asked for, as ids; categories include their subcategories."""

    product_ids: tuple[int, ...] = ()
    category_ids: tuple[int, ...] = ()
    channel_ids: tuple[int, ...] = ()


def _unknown(session: Session, model: Any, ids: Sequence[int], name: str) -> None:
    missing = sorted(set(ids) - repository.existing_ids(session, model, ids))
    if missing:
        raise Unprocessable(
            f"Unknown {name} id(s) {', '.join(map(str, missing))}: remove them or use ids "
            f"that exist",
            field=f"query.{name}_id",
            unknown=missing,
        )


def check_filters(session: Session, filters: Filters) -> None:
    _unknown(session, Product, filters.product_ids, "product")
    _unknown(session, Category, filters.category_ids, "category")
    _unknown(session, SalesChannel, filters.channel_ids, "channel")


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


@dataclass
class Context:
    """Per-request lookups shared by every sum a report makes."""

    session: Session
    stale: bool | None = None
    sources: set[Source] = field(default_factory=set)
    use_rollups: bool = True
    _paths: dict[int, str] | None = None
    _dirty: list[datetime] | None = None

    @property
    def paths(self) -> dict[int, str]:
        """Every category's current path (read once, when a report involves categories)."""
        if self._paths is None:
            self._paths = repository.category_paths(self.session)
        return self._paths

    def category_stale(self) -> bool:
        if self.stale is None:
            self.stale = category_rollups_stale(self.session)
        return self.stale

    @property
    def dirty(self) -> list[datetime]:
        """When the sales sold that events the rollups have not applied yet changed, sorted:
        the rollup blocks holding these moments are stale and are read from raw rows."""
        if self._dirty is None:
            self._dirty = repository.pending_sale_times(self.session, ROLLUP_CONSUMER)
        return self._dirty


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
    if not ctx.use_rollups:
        return Source.RAW
    group = query.group_by
    products = query.product_ids
    if not products and not has_category_filter and group in (GroupBy.NONE, GroupBy.CHANNEL):
        return Source.SALES_ROLLUPS
    categories_ok = (
        not (has_category_filter or group in (GroupBy.CATEGORY, GroupBy.CATEGORY_TREE))
        or not ctx.category_stale()
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


def decompose(
    start: datetime, end: datetime, grains: Sequence[int], dirty: Sequence[datetime] = ()
) -> tuple[dict[int, list[Interval]], list[Interval]]:
    """Cut [start, end) into whole UTC blocks of the grains (coarsest first) and raw leftovers.

    A block holding a ``dirty`` moment (sorted) is not used: it is cut into finer blocks, and
    at the finest grain read raw, so only the few blocks an unapplied event touched are.
    """
    blocks: dict[int, list[Interval]] = {}
    raw: list[Interval] = []

    def cut(a: datetime, b: datetime, level: int) -> None:
        if a >= b:
            return
        if level < 0:
            raw.append((a, b))
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
                blocks.setdefault(grain, []).append((clean_from, block))
            clean_from = grain_next(grain, block)
            cut(block, clean_from, level - 1)
        if clean_from < inner_b:
            blocks.setdefault(grain, []).append((clean_from, inner_b))
        cut(a, inner_a, level - 1)
        cut(inner_b, b, level - 1)

    cut(start, end, len(grains) - 1)
    return blocks, raw


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
        return ALL_GRAINS
    if source is Source.PRODUCT_ROLLUPS:
        return PRODUCT_GRAINS
    if source is Source.PRODUCT_TOTALS:
        return TOTAL_GRAINS
    if source is Source.CATEGORY_ROLLUPS:
        per_channel = query.channel_ids or query.group_by in (GroupBy.CHANNEL, GroupBy.CATEGORY)
        if per_channel or query.self_nodes:
            return COARSE_GRAINS
        return (HOUR, *COARSE_GRAINS)  # subtrees per hour, all channels together
    return ()


def sum_intervals(
    ctx: Context,
    query: Query,
    intervals: Sequence[Interval],
    *,
    boundaries: Sequence[datetime] | None,
    has_category_filter: bool,
    top: repository.Top | None = None,
) -> tuple[Sums, int | None]:
    """Exact sums over the intervals, keyed by (bucket index if boundaries are given, group).

    ``boundaries`` are the buckets' starts; each interval lies inside one bucket. With
    ``top``, the database may rank and cut the groups and say how many there were."""
    parts = plan_parts(ctx, query, intervals, boundaries, has_category_filter)
    return repository.run_sums(ctx.session, parts, boundaries, top)


def plan_parts(
    ctx: Context,
    query: Query,
    intervals: Sequence[Interval],
    boundaries: Sequence[datetime] | None,
    has_category_filter: bool,
) -> list[repository.Part]:
    """The SELECTs whose rows add up to the exact sums: rollup blocks, raw leftovers."""
    source = choose_source(ctx, query, has_category_filter)
    per_grain: dict[int, list[Interval]] = {}
    raw: list[Interval] = []
    for start, end in intervals:
        grains = grains_of(source, query)
        blocks, leftovers = decompose(start, end, grains, ctx.dirty if grains else ())
        for grain, found in blocks.items():
            per_grain.setdefault(grain, []).extend(found)
        raw.extend(leftovers)
    parts = [
        repository.rollup_part(
            ctx.session, source, query, grain, merge(found), boundaries=boundaries
        )
        for grain, found in sorted(per_grain.items())
    ]
    if parts:
        ctx.sources.add(source)
    if raw and (part := repository.raw_part(ctx.session, query, merge(raw), boundaries=boundaries)):
        ctx.sources.add(Source.RAW)
        parts.append(part)
    return parts


def _with_subtree(query: Query, filters: Filters) -> Query:
    if len(filters.category_ids) == 1:
        return replace(query, subtree_node=filters.category_ids[0])
    return query


def range_totals(
    ctx: Context,
    filters: Filters,
    rng_start: datetime,
    rng_end: datetime,
    query: Query,
    top: repository.Top | None = None,
) -> tuple[dict[int | None, Measures], int | None]:
    """Sums over one range per group (key None without grouping), and how many groups."""
    query = _with_subtree(query, filters)
    found, groups = sum_intervals(
        ctx,
        query,
        [(rng_start, rng_end)],
        boundaries=None,
        has_category_filter=bool(filters.category_ids),
        top=top,
    )
    return {group: measures for (_, group), measures in found.items()}, groups


# --- figures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    revenue: Decimal
    cost: Decimal
    margin: Decimal
    units: int
    orders: int
    average_order_value: Decimal | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "revenue": self.revenue,
            "cost": self.cost,
            "margin": self.margin,
            "units": self.units,
            "orders": self.orders,
            "average_order_value": self.average_order_value,
        }


def figures(measures: Measures | None) -> Figures:
    m = measures or Measures()
    revenue = Decimal(m.revenue).quantize(CENT)
    cost = Decimal(m.cost).quantize(CENT)
    aov = (revenue / m.orders).quantize(CENT, ROUND_HALF_UP) if m.orders else None
    return Figures(
        revenue=revenue,
        cost=cost,
        margin=revenue - cost,
        units=m.units,
        orders=m.orders,
        average_order_value=aov,
    )


def change(current: Any, base: Any) -> dict[str, Any]:
    """Both values, the difference and the percentage change (null where the base is 0)."""
    if current is None or base is None:
        return {"current": current, "base": base, "difference": None, "percent_change": None}
    difference = current - base
    percent = None
    if base != 0:
        percent = (Decimal(difference) * 100 / Decimal(base)).quantize(CENT, ROUND_HALF_UP)
    return {"current": current, "base": base, "difference": difference, "percent_change": percent}


def compare_figures(current: Figures, base: Figures) -> dict[str, Any]:
    now, then = current.as_dict(), base.as_dict()
    return {name: change(now[name], then[name]) for name in now}


# --- reports ----------------------------------------------------------------------------------


def _context(session: Session, use_rollups: bool) -> Context:
    return Context(session=session, use_rollups=use_rollups)


def _parameters(rng: DateRange, filters: Filters, **extra: Any) -> dict[str, Any]:
    return {
        "timezone": rng.zone.key,
        "from": rng.first,
        "to": rng.last,
        "start": rng.start.astimezone(rng.zone),
        "end": rng.end.astimezone(rng.zone),
        "product_ids": list(filters.product_ids),
        "category_ids": list(filters.category_ids),
        "channel_ids": list(filters.channel_ids),
        **extra,
    }


def watermark(session: Session) -> dict[str, Any]:
    mark = repository.watermark(session)
    return {
        "latest_sale_id": mark.latest_sale_id,
        "latest_sale_created_at": mark.latest_sale_created_at,
        "sales_updated_at": mark.sales_updated_at,
        "latest_refund_id": mark.latest_refund_id,
        "read_at": datetime.now(UTC),
    }


def revenue_series(
    *,
    session: Session,
    rng: DateRange,
    period: Period,
    week_start: Weekday,
    filters: Filters,
    use_rollups: bool = True,
) -> dict[str, Any]:
    """Figures per calendar period of the zone, empty periods as zeros, and the totals."""
    buckets = make_buckets(rng, period, week_start)
    check_filters(session, filters)
    ctx = _context(session, use_rollups)
    query = _with_subtree(base_query(ctx, filters), filters)
    found, _ = sum_intervals(
        ctx,
        query,
        [(b.start, b.end) for b in buckets],
        boundaries=[b.start for b in buckets],
        has_category_filter=bool(filters.category_ids),
    )
    per_bucket = [Measures() for _ in buckets]
    for (index, _), measures in found.items():
        assert index is not None and 0 <= index < len(buckets)
        per_bucket[index].add(measures)
    total = Measures()
    for measures in per_bucket:
        total.add(measures)
    zone = rng.zone
    return {
        "parameters": _parameters(rng, filters, period=period, week_start=week_start),
        "buckets": [
            {
                "start": b.start.astimezone(zone),
                "end": b.end.astimezone(zone),
                "label": b.label,
                **figures(m).as_dict(),
            }
            for b, m in zip(buckets, per_bucket, strict=True)
        ],
        "totals": figures(total).as_dict(),
        "sources": sorted(ctx.sources),
        "watermark": watermark(session),
    }


@dataclass(frozen=True)
class Grouping:
    dimension: Dimension | None
    rollup: CategoryRollup = CategoryRollup.NONE
    parent_id: int | None = None


def _grouped_query(ctx: Context, filters: Filters, grouping: Grouping) -> Query:
    query = base_query(ctx, filters)
    if grouping.dimension is None:
        return query
    if grouping.dimension is Dimension.PRODUCT:
        return replace(query, group_by=GroupBy.PRODUCT)
    if grouping.dimension is Dimension.CHANNEL:
        return replace(query, group_by=GroupBy.CHANNEL)
    if grouping.parent_id is not None or grouping.rollup is CategoryRollup.TOP_LEVEL:
        return tree_query(ctx, query, grouping.parent_id)
    return replace(query, group_by=GroupBy.CATEGORY)


def _check_grouping(session: Session, grouping: Grouping) -> None:
    if grouping.dimension is not Dimension.CATEGORY:
        if grouping.parent_id is not None or grouping.rollup is not CategoryRollup.NONE:
            raise Unprocessable(
                "category_rollup and parent_id apply only when grouping by category: drop "
                "them or group by category",
                field="query.parent_id" if grouping.parent_id else "query.category_rollup",
            )
        return
    if grouping.parent_id is not None:
        if grouping.rollup is CategoryRollup.TOP_LEVEL:
            raise Unprocessable(
                "Give either category_rollup=top_level or parent_id, not both",
                field="query.parent_id",
            )
        _unknown(session, Category, [grouping.parent_id], "parent")


def _group_refs(
    session: Session, dimension: Dimension | None, keys: Iterable[int | None]
) -> dict[int | None, dict[str, Any]]:
    ids = [k for k in keys if k is not None]
    if dimension is Dimension.PRODUCT:
        refs = repository.product_refs(session, ids)
        return {
            k: {"id": k, "name": refs.get(k, ("", f"Product {k}"))[1], "sku": refs.get(k, ("",))[0]}
            for k in ids
        }
    if dimension is Dimension.CHANNEL:
        names = repository.channel_names(session, ids)
        return {k: {"id": k, "name": names.get(k, f"Channel {k}"), "sku": None} for k in ids}
    names = repository.category_names(session, [k for k in ids if k != UNCATEGORIZED])
    return {
        k: {
            "id": None if k == UNCATEGORIZED else k,
            "name": "Uncategorized" if k == UNCATEGORIZED else names.get(k, f"Category {k}"),
            "sku": None,
        }
        for k in ids
    }


SORT_FIELDS = {"revenue": "revenue", "units": "units", "margin": "margin"}


def breakdown(
    *,
    session: Session,
    rng: DateRange,
    grouping: Grouping,
    filters: Filters,
    sort: SortKey,
    limit: int,
    use_rollups: bool = True,
) -> dict[str, Any]:
    """Figures per product, category or channel over the range; the top ``limit`` rows."""
    check_filters(session, filters)
    _check_grouping(session, grouping)
    ctx = _context(session, use_rollups)
    query = _grouped_query(ctx, filters, grouping)
    metric = SORT_FIELDS[sort.value.lstrip("-")]
    descending = sort.value.startswith("-")
    ranking = repository.Top(figure=metric, descending=descending, limit=limit)
    per_group, groups = range_totals(ctx, filters, rng.start, rng.end, query, ranking)
    totals, _ = range_totals(ctx, filters, rng.start, rng.end, base_query(ctx, filters))
    rows = [(key, figures(m)) for key, m in per_group.items() if key is not None]
    rows.sort(key=lambda r: r[0] or 0)  # ties: lower id first, as the database ranks them
    rows.sort(key=lambda r: getattr(r[1], metric), reverse=descending)
    top = rows[:limit]
    refs = _group_refs(session, grouping.dimension, [k for k, _ in top])
    return {
        "parameters": _parameters(
            rng,
            filters,
            by=grouping.dimension,
            category_rollup=grouping.rollup,
            parent_id=grouping.parent_id,
            sort=sort,
            limit=limit,
        ),
        "rows": [{**refs[key], **fig.as_dict()} for key, fig in top],
        "groups": len(rows) if groups is None else groups,
        "totals": figures(totals.get(None)).as_dict(),
        "sources": sorted(ctx.sources),
        "watermark": watermark(session),
    }


def base_range(rng: DateRange, against: Against, custom: DateRange | None) -> DateRange:
    """The period compared with: the same number of days before, a year earlier, or given."""
    if against is Against.CUSTOM:
        if custom is None:
            raise Unprocessable(
                "against=custom needs against_from and against_to", field="query.against_from"
            )
        return custom
    if custom is not None:
        raise Unprocessable(
            "against_from/against_to apply only with against=custom: drop them or set "
            "against=custom",
            field="query.against_from",
        )
    if against is Against.PREVIOUS_PERIOD:
        last = rng.first - timedelta(days=1)
        first = last - timedelta(days=rng.days - 1)
        return resolve_range(first, last, rng.zone, names=("against_from", "against_to"))
    first, last = _year_before(rng.first), _year_before(rng.last)
    return resolve_range(first, last, rng.zone, names=("against_from", "against_to"))


def _year_before(day: date) -> date:
    """The same date a year earlier; 29 February becomes 28 February."""
    try:
        return day.replace(year=day.year - 1)
    except ValueError:
        return day.replace(year=day.year - 1, day=28)


def _period_dict(rng: DateRange) -> dict[str, Any]:
    return {
        "from": rng.first,
        "to": rng.last,
        "start": rng.start.astimezone(rng.zone),
        "end": rng.end.astimezone(rng.zone),
        "days": rng.days,
    }


def compare(
    *,
    session: Session,
    rng: DateRange,
    against: Against,
    custom: DateRange | None,
    grouping: Grouping,
    filters: Filters,
    limit: int,
    use_rollups: bool = True,
) -> dict[str, Any]:
    """Two periods side by side, overall and (optionally) per product, category or channel."""
    base = base_range(rng, against, custom)
    check_filters(session, filters)
    _check_grouping(session, grouping)
    ctx = _context(session, use_rollups)
    plain = base_query(ctx, filters)
    now_total = range_totals(ctx, filters, rng.start, rng.end, plain)[0].get(None)
    then_total = range_totals(ctx, filters, base.start, base.end, plain)[0].get(None)
    groups: list[dict[str, Any]] = []
    group_count = 0
    if grouping.dimension is not None:
        query = _grouped_query(ctx, filters, grouping)
        now, _ = range_totals(ctx, filters, rng.start, rng.end, query)
        then, _ = range_totals(ctx, filters, base.start, base.end, query)
        keys = sorted({k for k in (*now, *then) if k is not None})
        ranked = sorted(keys, key=lambda k: (-figures(now.get(k)).revenue, k))
        group_count = len(ranked)
        refs = _group_refs(session, grouping.dimension, ranked[:limit])
        groups = [
            {**refs[k], **compare_figures(figures(now.get(k)), figures(then.get(k)))}
            for k in ranked[:limit]
        ]
    return {
        "parameters": _parameters(
            rng,
            filters,
            against=against,
            group_by=grouping.dimension,
            category_rollup=grouping.rollup,
            parent_id=grouping.parent_id,
            limit=limit,
        ),
        "current": _period_dict(rng),
        "base": _period_dict(base),
        "overall": compare_figures(figures(now_total), figures(then_total)),
        "groups": groups,
        "group_count": group_count,
        "sources": sorted(ctx.sources),
        "watermark": watermark(session),
    }


def summary(
    *, session: Session, rng: DateRange, filters: Filters, use_rollups: bool = True
) -> dict[str, Any]:
    """Headline figures for the range against the same number of days just before it."""
    base = base_range(rng, Against.PREVIOUS_PERIOD, None)
    check_filters(session, filters)
    ctx = _context(session, use_rollups)
    plain = base_query(ctx, filters)
    now = figures(range_totals(ctx, filters, rng.start, rng.end, plain)[0].get(None))
    then = figures(range_totals(ctx, filters, base.start, base.end, plain)[0].get(None))

    def extras(f: Figures, days: int) -> dict[str, Any]:
        return {
            **f.as_dict(),
            "margin_percent": (f.margin * 100 / f.revenue).quantize(CENT, ROUND_HALF_UP)
            if f.revenue
            else None,
            "units_per_order": (Decimal(f.units) / f.orders).quantize(CENT, ROUND_HALF_UP)
            if f.orders
            else None,
            "revenue_per_day": (f.revenue / days).quantize(CENT, ROUND_HALF_UP),
        }

    current, previous = extras(now, rng.days), extras(then, base.days)
    return {
        "parameters": _parameters(rng, filters),
        "current": _period_dict(rng),
        "previous": _period_dict(base),
        "kpis": {name: change(current[name], previous[name]) for name in current},
        "sources": sorted(ctx.sources),
        "watermark": watermark(session),
    }


def _soonest_out(row: dict[str, Any]) -> tuple[bool, Decimal, int]:
    """Days of cover ascending, products without sales (no projection) last, then by id."""
    cover = row["days_of_cover"]
    return (cover is None, cover if cover is not None else Decimal(0), row["product_id"])


def inventory_insight(
    *,
    session: Session,
    as_of: date,
    zone: ZoneInfo,
    window_days: int,
    filters: Filters,
    limit: int,
    offset: int,
    use_rollups: bool = True,
) -> dict[str, Any]:
    """Per product: net units sold per day over the window, days of cover, stock-out date."""
    check_filters(session, filters)
    rng = resolve_range(as_of - timedelta(days=window_days - 1), as_of, zone)
    ctx = _context(session, use_rollups)
    keys = base_query(ctx, filters).category_keys
    chosen: list[int] | None = None  # by their current category, all their sales count
    if filters.product_ids or keys is not None:
        chosen = repository.product_ids(session, filters.product_ids, keys)
    parts: list[repository.Part] = []
    if chosen is None or chosen:
        query = Query(
            product_ids=tuple(chosen or ()),
            channel_ids=filters.channel_ids,
            group_by=GroupBy.PRODUCT,
            units_only=True,
        )
        parts = plan_parts(ctx, query, [(rng.start, rng.end)], None, False)
    found, total = repository.insight_page(
        session, parts, chosen, window_days=window_days, limit=limit, offset=offset
    )
    rows = []
    for item in found:
        units, available = item.units, item.available
        cover: Decimal | None = None
        stockout: date | None = None
        if available <= 0:
            cover, stockout = Decimal("0.00"), as_of
        elif units > 0:
            cover = (Decimal(available) * window_days / units).quantize(CENT, ROUND_HALF_UP)
            days = -(-available * window_days // units)  # rounded up, in integers
            if days <= (date.max - as_of).days:
                stockout = as_of + timedelta(days=days)
        rows.append(
            {
                "product_id": item.product_id,
                "sku": item.sku,
                "name": item.name,
                "available": available,
                "units_sold": units,
                "velocity_per_day": (Decimal(units) / window_days).quantize(
                    Decimal("0.0001"), ROUND_HALF_UP
                ),
                "days_of_cover": cover,
                "projected_stockout_date": stockout,
            }
        )
    rows.sort(key=_soonest_out)
    if total is None:  # the database did not page (SQLite): rank and page here
        total, rows = len(rows), rows[offset : offset + limit]
    stock_mark = repository.stock_updated_at(session)
    return {
        "parameters": {
            **_parameters(rng, filters),
            "as_of": as_of,
            "window_days": window_days,
        },
        "items": rows,
        "total": total,
        "limit": limit,
        "offset": offset,
        "sources": sorted(ctx.sources),
        "watermark": {**watermark(session), "stock_updated_at": stock_mark},
    }
