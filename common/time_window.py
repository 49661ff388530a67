"""The one grammar of time filters on lists: `from` / `to`, each a date or an instant.

A plain date (2026-12-01) is a calendar day in `timezone` (default: the store's): `from`
starts at that day's midnight, `to` includes the whole day (it ends at the next midnight). An
instant with its UTC offset (2026-12-01T09:00:00+01:00) is taken as is: `from` included, `to`
excluded. The two forms mix. The reports take dates only (sales_service/reports/calendar.py),
in the same zone.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, Query

from common.auth.dependencies import SettingsDep
from common.errors import Unprocessable
from common.fields import DateOrInstant


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
class TimeWindow:
    """Instants ``start`` (included) to ``end`` (excluded); None leaves that side open."""

    start: datetime | None = None
    end: datetime | None = None


def time_window(
    start: date | datetime | None, end: date | datetime | None, zone: ZoneInfo
) -> TimeWindow:
    """`from`/`to` as instants (dates are days in ``zone``, `to` included); 422 unless `to` is
    later than `from`."""

    def instant(bound: date | datetime | None, *, day_after: bool) -> datetime | None:
        if bound is None or isinstance(bound, datetime):
            return bound
        return local_midnight(bound + timedelta(days=1 if day_after else 0), zone)

    window = TimeWindow(instant(start, day_after=False), instant(end, day_after=True))
    if window.start is not None and window.end is not None and window.end <= window.start:
        raise Unprocessable(
            "to must be later than from (from is included; to as a date is included, "
            "as a date and time it is not)",
            field="query.to",
        )
    return window


def time_window_filter(
    settings: SettingsDep,
    start: Annotated[
        DateOrInstant | None,
        Query(
            alias="from",
            description="Start, included: a date (2026-12-01: from that day's midnight in "
            "`timezone`) or an ISO 8601 date and time with its UTC offset "
            "(2026-12-01T09:00:00+01:00)",
        ),
    ] = None,
    end: Annotated[
        DateOrInstant | None,
        Query(
            alias="to",
            description="End: a date (2026-12-31) is included, up to the next midnight in "
            "`timezone`; an ISO 8601 date and time with its UTC offset "
            "(2027-01-01T00:00:00+01:00) is excluded",
        ),
    ] = None,
    timezone: Annotated[
        str | None,
        Query(
            description="IANA zone of the dates in `from`/`to` (default: the store's)",
            examples=["Europe/Berlin"],
        ),
    ] = None,
) -> TimeWindow:
    """The `from`/`to`/`timezone` parameters of a list, as instants."""
    return time_window(start, end, resolve_zone(timezone or settings.store_timezone))


TimeWindowDep = Annotated[TimeWindow, Depends(time_window_filter)]
