"""Calendar periods in any IANA zone: the report's timezone, date range and buckets.

Dates: ``from`` and ``to`` are calendar dates in the report's timezone, both included (or a
``preset`` names them, counted from today in that zone); the range is [``from`` 00:00, the
day after ``to`` 00:00) in that zone, whatever the UTC offset or daylight-saving change in
between. Periods are calendar days, weeks (starting on ``week_start``, Monday by default),
months, quarters and years of that zone, cut to the range (a bucket cut is ``partial``); a
day is 23 or 25 hours long across a DST change. The period a range is compared with is in
``base_range``.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

from common.errors import Unprocessable
from common.time_window import local_midnight
from sales_service.reports.parameters import Against

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


class Preset(StrEnum):
    """Named ranges, counted from today in the report's zone; each ends today or is whole."""

    TODAY = "today"
    YESTERDAY = "yesterday"
    LAST_7_DAYS = "last_7_days"
    LAST_30_DAYS = "last_30_days"
    MONTH_TO_DATE = "month_to_date"
    QUARTER_TO_DATE = "quarter_to_date"
    YEAR_TO_DATE = "year_to_date"
    LAST_MONTH = "last_month"
    LAST_QUARTER = "last_quarter"
    LAST_YEAR = "last_year"


def today_in(zone: ZoneInfo, now: datetime | None = None) -> date:
    """The calendar date in the zone at ``now`` (default: this moment)."""
    return (now or datetime.now(UTC)).astimezone(zone).date()


@dataclass(frozen=True)
class DateRange:
    """Calendar dates ``first``..``last`` (both included) in ``zone``, and the preset that
    named them, if one did."""

    first: date
    last: date
    zone: ZoneInfo
    preset: Preset | None = None

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
    preset: Preset | None = None,
    today: date | None = None,
    names: tuple[str, str] = ("from", "to"),
) -> DateRange:
    """The preset's dates, or ``first``..``last`` with defaults filled in (the 30 days up to
    today in the zone), checked for order and limits."""
    if preset is not None:
        if first is not None or last is not None:
            given = " and ".join(
                name for value, name in ((first, names[0]), (last, names[1])) if value is not None
            )
            raise Unprocessable(
                f"preset={preset.value} sets {names[0]} and {names[1]} itself, and {given} "
                f"was given too: give either preset or {names[0]}/{names[1]}, not both",
                field="query.preset",
            )
        first, last = preset_dates(preset, today or today_in(zone))
    for value, name in ((first, names[0]), (last, names[1])):
        if value is not None:
            check_date(value, name)  # first: a default computed from it must not overflow
    if last is None:
        last = today or today_in(zone)
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
    return DateRange(first, last, zone, preset)


# --- presets and the periods compared with -----------------------------------------------------

TO_DATE = {
    Preset.MONTH_TO_DATE: Period.MONTH,
    Preset.QUARTER_TO_DATE: Period.QUARTER,
    Preset.YEAR_TO_DATE: Period.YEAR,
}
LAST_WHOLE = {
    Preset.LAST_MONTH: Period.MONTH,
    Preset.LAST_QUARTER: Period.QUARTER,
    Preset.LAST_YEAR: Period.YEAR,
}
DAYS_ENDING_TODAY = {Preset.TODAY: 1, Preset.LAST_7_DAYS: 7, Preset.LAST_30_DAYS: 30}
MONTHS = {Period.MONTH: 1, Period.QUARTER: 3, Period.YEAR: 12}


def preset_dates(preset: Preset, today: date) -> tuple[date, date]:
    """The first and last day the preset names, ``today`` being today in the report's zone."""
    if preset in DAYS_ENDING_TODAY:
        return today - timedelta(days=DAYS_ENDING_TODAY[preset] - 1), today
    if preset is Preset.YESTERDAY:
        yesterday = today - timedelta(days=1)
        return yesterday, yesterday
    if preset in TO_DATE:
        return _period_start(today, TO_DATE[preset]), today
    current = _period_start(today, LAST_WHOLE[preset])
    return shift_months(current, -MONTHS[LAST_WHOLE[preset]]), current - timedelta(days=1)


def shift_months(day: date, months: int) -> date:
    """The same day ``months`` later (earlier if negative); a day past the end of the month
    it lands in becomes that month's last day (31 March - 1 month = 28 February)."""
    index = day.year * 12 + day.month - 1 + months
    month_start = date(index // 12, index % 12 + 1, 1)
    return min(month_start + timedelta(days=day.day - 1), _month_end(month_start))


def _month_end(day: date) -> date:
    return _period_after(day.replace(day=1), Period.MONTH) - timedelta(days=1)


def _whole_periods(first: date, last: date, period: Period) -> int:
    """How many whole calendar months, quarters or years ``first``..``last`` is (0 if it
    cuts one)."""
    after = last + timedelta(days=1)
    if _period_start(first, period) != first or _period_start(after, period) != after:
        return 0
    months = (after.year - first.year) * 12 + after.month - first.month
    return months // MONTHS[period]


CALENDAR_STEP = {
    Against.PREVIOUS_MONTH: Period.MONTH,
    Against.PREVIOUS_QUARTER: Period.QUARTER,
    Against.PREVIOUS_YEAR: Period.YEAR,
}


def base_range(rng: DateRange, against: Against, custom: DateRange | None = None) -> DateRange:
    """The range ``rng`` is compared with.

    - previous_period: as many days just before.
    - previous_month / previous_quarter / previous_year: a range of whole calendar periods
      of that length compares with as many whole periods just before (the first quarter
      with the last one of the year before; January-February with November-December). Any
      other range moves back one period: whole months stay whole months (February 2025 a
      year earlier is 1-29 February 2024), other dates move day by day, a day past the end
      of the month it lands in becoming that month's last day (31 March -> 28 February,
      29 February 2024 -> 28 February 2023).
    - custom: ``custom``, given with against_from and against_to.
    """
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
    else:
        period = CALENDAR_STEP[against]
        months = MONTHS[period]
        if count := _whole_periods(rng.first, rng.last, period):
            first, last = shift_months(rng.first, -count * months), rng.first - timedelta(days=1)
        elif _whole_periods(rng.first, rng.last, Period.MONTH):
            first = shift_months(rng.first, -months)
            last = _month_end(shift_months(rng.last, -months))
        else:
            first, last = shift_months(rng.first, -months), shift_months(rng.last, -months)
    return resolve_range(first, last, rng.zone, names=("against_from", "against_to"))


class Buckets(NamedTuple):
    """The calendar periods of the zone over a range, each cut to it, as columns: bucket
    ``i`` runs from ``starts[i]`` to ``starts[i + 1]``, the last of them the range's end (a
    daily series over three years has 1,096 buckets, and a tuple apiece cost more than
    the columns' slices)."""

    starts: list[datetime]  # UTC, one more than there are buckets
    local: list[datetime]  # the same moments in the zone
    labels: list[str]
    partial: list[bool]  # the range cuts the period: it starts after it or ends before it

    def __len__(self) -> int:
        return len(self.labels)


class _Year(NamedTuple):
    """A zone's midnights of every day of a year, and the next year's first (see ``_year``)."""

    first: int  # January 1st's ordinal
    utc: list[datetime]
    local: list[datetime]
    labels: list[str]  # each day's ISO date
    odd: frozenset[int]  # the ordinals of days whose midnight is not on a quarter hour in UTC


@lru_cache(maxsize=64)
def _year(zone: ZoneInfo, year: int) -> _Year:
    """The zone's midnights of the year's days, made once per process (a zone at most a few
    dozen years, 64 years at most: about 60 kB each): each daily series would otherwise find
    its thousand midnights one by one, the slowest part of its making."""
    first = date(year, 1, 1).toordinal()
    days = list(map(date.fromordinal, range(first, date(year + 1, 1, 1).toordinal() + 1)))
    utc = [local_midnight(day, zone) for day in days]
    odd = frozenset(
        first + i for i, moment in enumerate(utc) if moment.minute % 15 or moment.second
    )
    return _Year(first, utc, [m.astimezone(zone) for m in utc], [d.isoformat() for d in days], odd)


def _midnights(zone: ZoneInfo, first: date, last: date) -> _Year:
    """The zone's midnights of the days ``first``..``last`` (both included), as ``_year``."""
    utc: list[datetime] = []
    local: list[datetime] = []
    labels: list[str] = []
    odd: set[int] = set()
    for year in range(first.year, last.year + 1):
        found = _year(zone, year)
        a = max(first.toordinal() - found.first, 0)
        b = min(last.toordinal() - found.first + 1, len(found.labels) - 1)
        utc += found.utc[a:b]
        local += found.local[a:b]
        labels += found.labels[a:b]
        odd |= {o for o in found.odd if found.first + a <= o < found.first + b}
    return _Year(first.toordinal(), utc, local, labels, frozenset(odd))


def _period_start(day: date, period: Period, week_start: Weekday = Weekday.MONDAY) -> date:
    if period is Period.DAY:
        return day
    if period is Period.WEEK:
        return day - timedelta(days=(day.weekday() - week_start.number) % 7)
    if period is Period.MONTH:
        return day.replace(day=1)
    if period is Period.QUARTER:
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    return day.replace(month=1, day=1)


_FIXED_STEP = {"day": timedelta(days=1), "week": timedelta(days=7)}
_MONTHS = {"month": 1, "quarter": 3, "year": 12}


def _period_after(start: date, period: Period) -> date:
    if step := _FIXED_STEP.get(period):
        return start + step
    months = _MONTHS[period]
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


def make_buckets(rng: DateRange, period: Period, week_start: Weekday) -> Buckets:
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
    stop = rng.last + timedelta(days=1)
    days = _midnights(rng.zone, rng.first, stop)
    if period is Period.DAY:  # every midnight of the range, and no period cut
        edges, labels, partial = list(days.odd), days.labels[:-1], [False] * count
        buckets = Buckets(days.utc, days.local, labels, partial)
    else:
        starts = [_period_start(rng.first, period, week_start)]
        while (after := _period_after(starts[-1], period)) < stop:
            starts.append(after)
        cuts = [max(starts[0], rng.first), *starts[1:], stop]  # the buckets' ends
        index = [day.toordinal() - days.first for day in cuts]
        edges = [days.first + i for i in index if days.first + i in days.odd]
        labels = [_label(start, period) for start in starts]
        partial = [False] * len(starts)
        partial[0] = cuts[0] != starts[0]
        partial[-1] |= _period_after(starts[-1], period) != stop
        buckets = Buckets(
            [days.utc[i] for i in index], [days.local[i] for i in index], labels, partial
        )
    if edges:  # a 422 naming the first bucket end off a quarter hour
        _quarter_hour(local_midnight(date.fromordinal(min(edges)), rng.zone), rng.zone)
    return buckets


def _quarter_hour(moment: datetime, zone: ZoneInfo) -> datetime:
    """The moment, if it is a whole quarter hour (as every bucket's ends must be); else 422."""
    if moment.minute % 15 or moment.second or moment.microsecond:
        raise Unprocessable(
            f"Timezone {zone.key!r} had a UTC offset that is not a whole quarter "
            f"hour around {moment.date().isoformat()}; choose later dates",
            field="query.timezone",
        )
    return moment
