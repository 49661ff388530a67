"""Field types shared by both services' request models and query parameters."""

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

# What a DATETIME column holds (MySQL/MariaDB: years 1000-9999), a day in from each end so
# that no arithmetic on a bound (a day added, a zone applied) can leave the calendar.
EARLIEST_INSTANT = datetime(1000, 1, 2, tzinfo=UTC)
LATEST_INSTANT = datetime(9999, 12, 30, tzinfo=UTC)


_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _not_a_number(value: Any) -> Any:
    # pydantic would read 0.5 or "1700000000" as Unix time: nobody filtering by date means that.
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError(
            "must be an ISO 8601 date and time with its offset, e.g. 2026-12-01T09:00:00+01:00"
        )
    return value


def _with_offset(value: datetime) -> datetime:
    # A date or a time without its offset names no one instant: pydantic's own message
    # ("should have timezone info") does not say what to add.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            "needs its UTC offset: an ISO 8601 date and time such as "
            "2026-12-01T09:00:00+01:00 (or ...Z for UTC); a date or a time without an "
            "offset names no one instant"
        )
    return value


def _storable(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+14:00 is a day before the calendar begins
        utc = None
    if utc is None or not EARLIEST_INSTANT <= utc <= LATEST_INSTANT:
        raise ValueError(
            f"must be between {EARLIEST_INSTANT:%Y-%m-%d} and {LATEST_INSTANT:%Y-%m-%d} (UTC)"
        )
    return value


# An instant with its UTC offset (ISO 8601), inside the range the database can store.
Instant = Annotated[
    datetime,
    BeforeValidator(_not_a_number),
    AfterValidator(_with_offset),
    AfterValidator(_storable),
]
