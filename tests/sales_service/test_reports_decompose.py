"""The planner's cut of an interval into rollup blocks and raw pieces (``decompose``): the
quick path for one fixed-length grain (a series summed from the copy) cuts exactly as the
general one, wherever the interval, its bucket and the unapplied events fall."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from sales_service.reports import planner, rollups
from sales_service.reports.planner import Plan, decompose

ORIGIN = datetime(2025, 3, 29, tzinfo=UTC)  # the day before Europe's clocks change
# moments on and beside the blocks' boundaries (hours, days), and one not a whole second
MOMENTS = sorted(
    {
        ORIGIN + timedelta(days=day, hours=hour, minutes=minutes)
        for day in (0, 1, 2)
        for hour in (0, 1, 2, 22, 23)
        for minutes in (0, 15, 60)
    }
    | {ORIGIN + timedelta(hours=25, microseconds=5)}
)


def general(*args: object, **kwargs: object) -> Plan:
    """``decompose`` as the general path cuts it."""
    quick = planner._decompose_fixed
    planner._decompose_fixed = lambda *_: False
    try:
        return decompose(*args, **kwargs)  # type: ignore[arg-type]
    finally:
        planner._decompose_fixed = quick


def same(a: Plan, b: Plan) -> None:
    for name in ("blocks", "raw", "trimmed", "trimmed_out"):
        assert getattr(a, name) == getattr(b, name), name


@pytest.mark.parametrize("grain", [rollups.HOUR, rollups.DAY])
@pytest.mark.parametrize("trim", [True, False])
def test_the_quick_cut_for_one_fixed_grain_is_the_general_one(grain: int, trim: bool) -> None:
    """Every interval between two of the moments, in a bucket that starts and ends at it, a
    moment before it or after it (or has no end), with no unapplied event or one anywhere."""
    quick_taken = 0
    for start, end in itertools.combinations(MOMENTS, 2):
        before = [m for m in MOMENTS if m <= start][::7]
        after = [m for m in MOMENTS if m >= end][::7]
        buckets = [None, *[(a, b) for a in before for b in [None, *after]]]
        for bucket, dirty in itertools.product(buckets, [[], *([m] for m in MOMENTS[::5])]):
            args = (start, end, (grain,), dirty)
            found = decompose(*args, bucket=bucket, trim=trim)
            same(found, general(*args, bucket=bucket, trim=trim))
            quick_taken += planner._decompose_fixed(start, end, grain, dirty, Plan(), bucket, trim)
    assert quick_taken > 10_000  # the quick path was taken, not only the general one


@pytest.mark.parametrize("grain", [rollups.HOUR, rollups.DAY])
def test_the_quick_cut_takes_a_week_in_a_zone_west_or_east_of_utc(grain: int) -> None:
    """A series' buckets (whole seconds, no event after the copy) take the quick path."""
    for hours in (-5, 1, 2, 9):
        start = datetime(2025, 3, 24, tzinfo=UTC) - timedelta(hours=hours)
        end = start + timedelta(days=7)
        for trim in (True, False):
            quick = Plan()
            assert planner._decompose_fixed(start, end, grain, [], quick, (start, end), trim)
            same(quick, general(start, end, (grain,), bucket=(start, end), trim=trim))
            assert quick.blocks[grain]  # the whole days or hours inside
