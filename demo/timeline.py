"""When the demo shop sells: how many sales each day gets and at what times.

Daily counts follow a weekly curve (weekend peak), a seasonal one (November/December
peak, Black Friday and Cyber Monday spikes, quiet holidays), slow growth and a little
noise; they are scaled so the period holds exactly the requested number of sales. Times of
day follow a curve with lunchtime and evening peaks in the store's timezone.
"""

import random
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import accumulate
from zoneinfo import ZoneInfo

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Monday..Sunday
WEEKDAY_FACTOR = (0.88, 0.86, 0.90, 0.95, 1.08, 1.40, 1.25)
# January..December
MONTH_FACTOR = (0.80, 0.78, 0.88, 0.92, 0.97, 0.95, 0.93, 0.96, 0.92, 1.00, 1.35, 1.75)
# Share of a day's orders by local hour.
HOUR_WEIGHTS = (
    0.6, 0.35, 0.2, 0.15, 0.15, 0.3, 0.8, 1.6, 2.6, 3.4, 4.0, 4.6,
    5.4, 5.2, 4.6, 4.4, 4.5, 4.9, 5.6, 6.4, 6.6, 5.6, 3.8, 1.8,
)  # fmt: skip
HOUR_CUM = tuple(accumulate(HOUR_WEIGHTS))
GROWTH_OVER_PERIOD = 0.35  # the shop sells this much more at the end than at the start


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch for an aware datetime."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * US_PER_SECOND + delta.microseconds


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def months_before(day: date, months: int) -> date:
    """The same day of the month ``months`` earlier (clamped to the month's last day)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    following = date(year + (month == 12), month % 12 + 1, 1)
    return date(year, month, min(day.day, (following - timedelta(days=1)).day))


def _special_day_factor(day: date) -> float:
    if day.month == 11:
        thanksgiving = 22 + (3 - date(day.year, 11, 1).weekday()) % 7
        if day.day == thanksgiving + 1:  # Black Friday
            return 2.4
        if day.day == thanksgiving + 4:  # Cyber Monday
            return 1.9
    if (day.month, day.day) in ((12, 25), (1, 1)):
        return 0.45
    if day.month == 12 and day.day > 25:
        return 0.8  # after Christmas, before the new year
    return 1.0


@dataclass(frozen=True)
class SalesDay:
    local_date: date
    start_us: int  # local midnight, as UTC microseconds
    length_us: int  # 23, 24 or 25 hours
    # Sales fall in [start_us, start_us + length_us * covered_fraction); below 1 only for
    # the last day, which ends at the end of the period.
    covered_seconds: float
    count: int


def _covered_hour_mass(seconds: float) -> float:
    """How much of a day's hour weight falls in its first ``seconds`` seconds."""
    full, part = divmod(seconds, 3600)
    hours = int(full)
    mass = HOUR_CUM[hours - 1] if hours else 0.0
    if hours < 24:
        mass += HOUR_WEIGHTS[hours] * part / 3600
    return mass


def plan_days(
    *, size: int, months: int, end: datetime, timezone: ZoneInfo, rng: random.Random
) -> list[SalesDay]:
    """The period's days with their sale counts (summing to ``size``)."""
    end_local = end.astimezone(timezone)
    first = months_before(end_local.date(), months)
    end_us = to_us(end)
    days: list[tuple[date, int, int, float]] = []
    day = first
    while True:
        start_us = to_us(datetime.combine(day, time(), timezone))
        if start_us >= end_us:
            break
        next_us = to_us(datetime.combine(day + timedelta(days=1), time(), timezone))
        length = next_us - start_us
        covered = min(length, end_us - start_us) / length * 86_400
        days.append((day, start_us, length, covered))
        day += timedelta(days=1)

    weights = []
    span = max(1, len(days) - 1)
    for n, (day, _start, _length, covered) in enumerate(days):
        weight = (
            WEEKDAY_FACTOR[day.weekday()]
            * MONTH_FACTOR[day.month - 1]
            * _special_day_factor(day)
            * (1 + GROWTH_OVER_PERIOD * n / span)
            * rng.lognormvariate(0, 0.12)
            * _covered_hour_mass(covered)
            / HOUR_CUM[-1]
        )
        weights.append(weight)

    # Largest remainder: integer counts proportional to the weights, summing to size.
    scale = size / sum(weights)
    exact = [w * scale for w in weights]
    counts = [int(x) for x in exact]
    short = size - sum(counts)
    by_remainder = sorted(range(len(days)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[:short]:
        counts[i] += 1
    return [
        SalesDay(day, start, length, covered, count)
        for (day, start, length, covered), count in zip(days, counts, strict=True)
    ]


def sale_times(day: SalesDay, rng: random.Random) -> list[tuple[int, int]]:
    """Sorted (UTC microseconds, local hour) of the day's sales."""
    if day.count == 0:
        return []
    if day.covered_seconds >= 86_400:
        cum: tuple[float, ...] = HOUR_CUM
        last_hour_seconds = 3600.0
    else:
        hours = int(day.covered_seconds // 3600)
        cum = (*HOUR_CUM[:hours], _covered_hour_mass(day.covered_seconds))
        last_hour_seconds = day.covered_seconds - hours * 3600
    top = cum[-1]
    last = len(cum) - 1
    stretch = day.length_us / 86_400  # microseconds per local "second" on a DST day
    latest = day.start_us + int(day.covered_seconds * stretch) - 1
    random_ = rng.random
    times = []
    for _ in range(day.count):
        hour = bisect_right(cum, random_() * top)
        hour = min(hour, last)
        within = random_() * (last_hour_seconds if hour == last else 3600.0)
        moment = min(latest, day.start_us + int((hour * 3600 + within) * stretch))
        times.append((moment, hour))
    times.sort()
    return times
