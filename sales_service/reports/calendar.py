"""Calendar periods in any IANA zone: the report's timezone, date range and buckets.

Dates: ``from`` and ``to`` are calendar dates in the report's timezone, both included; the
range is [``from`` 00:00, the day after ``to`` 00:00) in that zone, whatever the UTC offset
or daylight-saving change in between. Periods are calendar days, weeks (starting on
``week_start``, Monday by default), months, quarters and years of that zone, cut to the
range; a day is 23 or 25 hours long across a DST change.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.errors import Unprocessable

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


def check_date(value: date, name: str) -> None:
    """422 unless ``value`` is a day reports cover (checked before any date arithmetic)."""
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
    for value, name in ((first, names[0]), (last, names[1])):
        if value is not None:
            check_date(value, name)  # first: a default computed from it must not overflow
    if last is None:
        last = today or datetime.now(zone).date()
        if first is not None and first > last:
            last = first + timedelta(days=DEFAULT_DAYS - 1)
    if first is None:
        first = last - timedelta(days=DEFAULT_DAYS - 1)
    check_date(first, names[0])
    check_date(last, names[1])
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
