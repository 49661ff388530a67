"""Report calendar arithmetic: presets, the periods a range is compared with, partial buckets.

Plain dates, no database: these are the edge cases (month ends, leap years, quarter and year
starts, the zone's "today") that the API tests in test_reports_api.py rely on.
"""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import Unprocessable
from common.time_window import local_midnight
from sales_service.reports.calendar import (
    MAX_BUCKETS,
    Buckets,
    DateRange,
    Period,
    Preset,
    Weekday,
    base_range,
    make_buckets,
    preset_dates,
    resolve_range,
    shift_months,
    today_in,
)
from sales_service.reports.calendar import _label as label_of
from sales_service.reports.calendar import _period_after as period_after
from sales_service.reports.calendar import _period_start as period_start
from sales_service.reports.parameters import Against

UTC_ZONE = ZoneInfo("UTC")


def d(text: str) -> date:
    return date.fromisoformat(text)


def dates(first: date, last: date) -> tuple[str, str]:
    return first.isoformat(), last.isoformat()


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (
            "2024-03-31",  # a month end, a quarter end, in a leap year
            {
                Preset.TODAY: ("2024-03-31", "2024-03-31"),
                Preset.YESTERDAY: ("2024-03-30", "2024-03-30"),
                Preset.LAST_7_DAYS: ("2024-03-25", "2024-03-31"),
                Preset.LAST_30_DAYS: ("2024-03-02", "2024-03-31"),
                Preset.MONTH_TO_DATE: ("2024-03-01", "2024-03-31"),
                Preset.QUARTER_TO_DATE: ("2024-01-01", "2024-03-31"),
                Preset.YEAR_TO_DATE: ("2024-01-01", "2024-03-31"),
                Preset.LAST_MONTH: ("2024-02-01", "2024-02-29"),
                Preset.LAST_QUARTER: ("2023-10-01", "2023-12-31"),
                Preset.LAST_YEAR: ("2023-01-01", "2023-12-31"),
            },
        ),
        (
            "2025-01-01",  # a year start: every "last" period is in the year before
            {
                Preset.TODAY: ("2025-01-01", "2025-01-01"),
                Preset.YESTERDAY: ("2024-12-31", "2024-12-31"),
                Preset.LAST_7_DAYS: ("2024-12-26", "2025-01-01"),
                Preset.LAST_30_DAYS: ("2024-12-03", "2025-01-01"),
                Preset.MONTH_TO_DATE: ("2025-01-01", "2025-01-01"),
                Preset.QUARTER_TO_DATE: ("2025-01-01", "2025-01-01"),
                Preset.YEAR_TO_DATE: ("2025-01-01", "2025-01-01"),
                Preset.LAST_MONTH: ("2024-12-01", "2024-12-31"),
                Preset.LAST_QUARTER: ("2024-10-01", "2024-12-31"),
                Preset.LAST_YEAR: ("2024-01-01", "2024-12-31"),
            },
        ),
        (
            "2025-07-01",  # a quarter start
            {
                Preset.LAST_7_DAYS: ("2025-06-25", "2025-07-01"),
                Preset.MONTH_TO_DATE: ("2025-07-01", "2025-07-01"),
                Preset.QUARTER_TO_DATE: ("2025-07-01", "2025-07-01"),
                Preset.YEAR_TO_DATE: ("2025-01-01", "2025-07-01"),
                Preset.LAST_MONTH: ("2025-06-01", "2025-06-30"),
                Preset.LAST_QUARTER: ("2025-04-01", "2025-06-30"),
            },
        ),
        (
            "2025-03-01",  # the day after a short February
            {
                Preset.YESTERDAY: ("2025-02-28", "2025-02-28"),
                Preset.LAST_7_DAYS: ("2025-02-23", "2025-03-01"),
                Preset.LAST_30_DAYS: ("2025-01-31", "2025-03-01"),
                Preset.LAST_MONTH: ("2025-02-01", "2025-02-28"),
                Preset.QUARTER_TO_DATE: ("2025-01-01", "2025-03-01"),
            },
        ),
    ],
)
def test_presets_name_the_days_counted_from_today(
    today: str, expected: dict[Preset, tuple[str, str]]
) -> None:
    for preset, days in expected.items():
        assert dates(*preset_dates(preset, d(today))) == days, preset


def test_every_preset_is_covered_and_ends_today_or_before_it() -> None:
    today = d("2028-02-29")
    for preset in Preset:
        first, last = preset_dates(preset, today)
        assert first <= last <= today, preset
    assert preset_dates(Preset.LAST_YEAR, today) == (d("2027-01-01"), d("2027-12-31"))
    assert preset_dates(Preset.LAST_MONTH, d("2028-03-15")) == (d("2028-02-01"), d("2028-02-29"))


def test_today_is_the_zones_date_at_that_moment_whatever_its_offset_or_dst() -> None:
    # 23:30 UTC on the night Berlin springs forward: already the 30th there, the 29th in
    # UTC and New York, and the 30th (UTC+14) in Kiritimati
    moment = datetime(2025, 3, 29, 23, 30, tzinfo=UTC)
    assert today_in(ZoneInfo("Europe/Berlin"), moment) == d("2025-03-30")
    assert today_in(UTC_ZONE, moment) == d("2025-03-29")
    assert today_in(ZoneInfo("America/New_York"), moment) == d("2025-03-29")
    assert today_in(ZoneInfo("Pacific/Kiritimati"), moment) == d("2025-03-30")
    # 04:30 UTC as New York falls back: 00:30 EDT, the 2nd there
    assert today_in(ZoneInfo("America/New_York"), datetime(2025, 11, 2, 4, 30, tzinfo=UTC)) == (
        d("2025-11-02")
    )


def test_a_preset_resolves_in_the_zone_and_says_which_it_was() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    rng = resolve_range(None, None, berlin, preset=Preset.LAST_7_DAYS, today=d("2025-03-30"))
    assert (rng.first, rng.last, rng.zone, rng.preset) == (
        d("2025-03-24"),
        d("2025-03-30"),
        berlin,
        Preset.LAST_7_DAYS,
    )
    assert rng.days == 7  # one of them 23 hours long: days are calendar days
    assert resolve_range(d("2025-03-01"), None, berlin, today=d("2025-03-30")).preset is None


@pytest.mark.parametrize(
    ("first", "last", "says"),
    [
        ("2025-01-01", None, "and from was given too"),
        (None, "2025-01-31", "and to was given too"),
        ("2025-01-01", "2025-01-31", "and from and to was given too"),
    ],
)
def test_a_preset_with_from_or_to_is_refused_saying_so(
    first: str | None, last: str | None, says: str
) -> None:
    with pytest.raises(Unprocessable) as refused:
        resolve_range(
            d(first) if first else None,
            d(last) if last else None,
            UTC_ZONE,
            preset=Preset.LAST_MONTH,
        )
    assert says in refused.value.detail
    assert "give either preset or from/to, not both" in refused.value.detail
    assert refused.value.context["field"] == "query.preset"


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        ("2025-03-31", -1, "2025-02-28"),
        ("2024-03-31", -1, "2024-02-29"),
        ("2025-03-30", -1, "2025-02-28"),
        ("2025-03-28", -1, "2025-02-28"),
        ("2025-01-31", -1, "2024-12-31"),
        ("2025-05-31", -3, "2025-02-28"),
        ("2025-08-31", -3, "2025-05-31"),
        ("2024-02-29", -12, "2023-02-28"),
        ("2025-02-28", -12, "2024-02-28"),
        ("2025-01-15", -13, "2023-12-15"),
        ("2025-01-31", 1, "2025-02-28"),
    ],
)
def test_shifting_by_months_keeps_the_day_or_stops_at_the_months_end(
    day: str, months: int, expected: str
) -> None:
    assert shift_months(d(day), months) == d(expected)


@pytest.mark.parametrize(
    ("first", "last", "against", "base"),
    [
        # November: the days just before, or the calendar month before
        ("2025-11-01", "2025-11-30", Against.PREVIOUS_PERIOD, ("2025-10-02", "2025-10-31")),
        ("2025-11-01", "2025-11-30", Against.PREVIOUS_MONTH, ("2025-10-01", "2025-10-31")),
        ("2025-03-01", "2025-03-31", Against.PREVIOUS_MONTH, ("2025-02-01", "2025-02-28")),
        ("2024-03-01", "2024-03-31", Against.PREVIOUS_MONTH, ("2024-02-01", "2024-02-29")),
        # whole months: as many whole months just before
        ("2025-01-01", "2025-02-28", Against.PREVIOUS_MONTH, ("2024-11-01", "2024-12-31")),
        ("2025-04-01", "2025-06-30", Against.PREVIOUS_MONTH, ("2025-01-01", "2025-03-31")),
        # other ranges: the dates a month back, a day past the month's end clamped to it
        ("2025-03-31", "2025-03-31", Against.PREVIOUS_MONTH, ("2025-02-28", "2025-02-28")),
        ("2025-03-10", "2025-04-20", Against.PREVIOUS_MONTH, ("2025-02-10", "2025-03-20")),
        ("2025-03-01", "2025-03-15", Against.PREVIOUS_MONTH, ("2025-02-01", "2025-02-15")),
        ("2025-03-29", "2025-03-31", Against.PREVIOUS_MONTH, ("2025-02-28", "2025-02-28")),
        # quarters: whole quarters just before, else three months back
        ("2025-01-01", "2025-03-31", Against.PREVIOUS_QUARTER, ("2024-10-01", "2024-12-31")),
        ("2025-01-01", "2025-06-30", Against.PREVIOUS_QUARTER, ("2024-07-01", "2024-12-31")),
        ("2025-04-01", "2025-05-15", Against.PREVIOUS_QUARTER, ("2025-01-01", "2025-02-15")),
        ("2025-05-31", "2025-05-31", Against.PREVIOUS_QUARTER, ("2025-02-28", "2025-02-28")),
        ("2025-11-01", "2025-11-30", Against.PREVIOUS_QUARTER, ("2025-08-01", "2025-08-31")),
        # years: whole years just before, else a year back (29 Feb -> 28 Feb)
        ("2024-01-01", "2024-12-31", Against.PREVIOUS_YEAR, ("2023-01-01", "2023-12-31")),
        ("2023-01-01", "2024-12-31", Against.PREVIOUS_YEAR, ("2021-01-01", "2022-12-31")),
        ("2024-02-29", "2024-02-29", Against.PREVIOUS_YEAR, ("2023-02-28", "2023-02-28")),
        ("2024-02-10", "2024-02-29", Against.PREVIOUS_YEAR, ("2023-02-10", "2023-02-28")),
        ("2025-02-28", "2025-02-28", Against.PREVIOUS_YEAR, ("2024-02-28", "2024-02-28")),
        ("2025-04-01", "2025-06-30", Against.PREVIOUS_YEAR, ("2024-04-01", "2024-06-30")),
        # a whole month stays whole a year back, leap day included
        ("2025-02-01", "2025-02-28", Against.PREVIOUS_YEAR, ("2024-02-01", "2024-02-29")),
        ("2025-12-15", "2026-01-14", Against.PREVIOUS_YEAR, ("2024-12-15", "2025-01-14")),
    ],
)
def test_the_base_period_is_calendar_aligned(
    first: str, last: str, against: Against, base: tuple[str, str]
) -> None:
    found = base_range(DateRange(d(first), d(last), UTC_ZONE), against)
    assert dates(found.first, found.last) == base
    assert found.zone == UTC_ZONE


def test_a_base_period_before_the_dates_reports_cover_is_refused_naming_it() -> None:
    rng = DateRange(d("1980-01-01"), d("1980-01-31"), UTC_ZONE)
    with pytest.raises(Unprocessable) as refused:
        base_range(rng, Against.PREVIOUS_MONTH)
    assert refused.value.context["field"] == "query.against_from"
    assert "1979-12-01" in refused.value.detail


def test_custom_needs_its_dates_and_only_custom_takes_them() -> None:
    rng = DateRange(d("2025-11-01"), d("2025-11-30"), UTC_ZONE)
    given = DateRange(d("2025-06-01"), d("2025-06-03"), UTC_ZONE)
    assert base_range(rng, Against.CUSTOM, given) == given
    with pytest.raises(Unprocessable, match="against=custom needs"):
        base_range(rng, Against.CUSTOM)
    with pytest.raises(Unprocessable, match="apply only with against=custom"):
        base_range(rng, Against.PREVIOUS_MONTH, given)


def partial_of(first: str, last: str, period: Period, week_start: Weekday = Weekday.MONDAY):
    rng = DateRange(d(first), d(last), ZoneInfo("Europe/Berlin"))
    buckets = make_buckets(rng, period, week_start)
    return list(zip(buckets.labels, buckets.partial, strict=True))


def test_buckets_the_range_cuts_are_partial_and_the_others_not() -> None:
    # 2025-03-05 is a Wednesday: the first week is cut, and so is the last one (Sun 30th)
    assert partial_of("2025-03-05", "2025-03-30", Period.WEEK) == [
        ("2025-03-03", True),
        ("2025-03-10", False),
        ("2025-03-17", False),
        ("2025-03-24", False),
    ]
    assert partial_of("2025-03-05", "2025-03-29", Period.WEEK, Weekday.SUNDAY)[-1] == (
        "2025-03-23",
        False,  # Sunday 23rd to Saturday 29th, whole
    )
    assert partial_of("2025-01-01", "2025-03-15", Period.MONTH) == [
        ("2025-01", False),
        ("2025-02", False),
        ("2025-03", True),
    ]
    assert partial_of("2024-02-01", "2024-02-29", Period.MONTH) == [("2024-02", False)]
    assert partial_of("2024-02-02", "2024-02-28", Period.MONTH) == [("2024-02", True)]
    assert partial_of("2025-02-01", "2025-06-30", Period.QUARTER) == [
        ("2025-Q1", True),
        ("2025-Q2", False),
    ]
    assert partial_of("2025-01-01", "2025-12-31", Period.YEAR) == [("2025", False)]
    assert partial_of("2025-01-01", "2025-12-30", Period.YEAR) == [("2025", True)]
    assert not any(p for _, p in partial_of("2025-03-29", "2025-04-02", Period.DAY))


def walked(rng: DateRange, period: Period, week_start: Weekday) -> Buckets:
    """The buckets found one period at a time, each end's midnight on its own."""
    start, stop = period_start(rng.first, period, week_start), rng.last + timedelta(days=1)
    cuts, labels, partial = [max(start, rng.first)], [], []
    while start < stop:
        after = period_after(start, period)
        labels.append(label_of(start, period))
        partial.append(start < rng.first or after > stop)
        cuts.append(min(after, stop))
        start = after
    moments = [local_midnight(day, rng.zone) for day in cuts]
    if any(moment.minute % 15 or moment.second for moment in moments):
        raise Unprocessable("not on a quarter hour")
    return Buckets(moments, [m.astimezone(rng.zone) for m in moments], labels, partial)


# DST at midnight (Santiago, Havana), a half-hour DST (Lord Howe), a day skipped (Kiritimati,
# 1994-12-31), a 45-minute offset (Kathmandu), DST suspended for Ramadan (Casablanca). (No
# zone has had a midnight off the quarter hour since 1980, the first date reports cover.)
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/Santiago",
    "America/Havana",
    "Australia/Lord_Howe",
    "Pacific/Kiritimati",
    "Asia/Kathmandu",
    "Africa/Casablanca",
]


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    first=st.dates(date(1980, 1, 1), date(2199, 12, 31)),
    days=st.integers(0, MAX_BUCKETS - 1),
    period=st.sampled_from(list(Period)),
    week_start=st.sampled_from(list(Weekday)),
)
def test_buckets_are_the_periods_found_one_by_one(
    zone: str, first: date, days: int, period: Period, week_start: Weekday
) -> None:
    last = min(first + timedelta(days=days), date(2199, 12, 31))
    rng = DateRange(first, last, ZoneInfo(zone))
    try:
        expected = walked(rng, period, week_start)
    except Unprocessable:
        with pytest.raises(Unprocessable, match="not a whole quarter hour"):
            make_buckets(rng, period, week_start)
        return
    assert make_buckets(rng, period, week_start) == expected
