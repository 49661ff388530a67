"""Field types shared by both services' request models and query parameters."""

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainValidator,
    TypeAdapter,
    WithJsonSchema,
)

# What a DATETIME column holds (MySQL/MariaDB: years 1000-9999), a day in from each end so
# that no arithmetic on a bound (a day added, a zone applied) can leave the calendar.
EARLIEST_INSTANT = datetime(1000, 1, 2, tzinfo=UTC)
LATEST_INSTANT = datetime(9999, 12, 30, tzinfo=UTC)


# A row's id as a request names it (a filter, a reference in a body).
PositiveId = Annotated[int, Field(gt=0)]

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


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = TypeAdapter(datetime)


def _date_or_instant(value: Any) -> date | datetime:
    """A plain date (YYYY-MM-DD) as a date, anything else as an Instant."""
    if isinstance(value, str) and _DAY.fullmatch(value.strip()):
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a calendar date") from None
        if not EARLIEST_INSTANT.date() <= day <= LATEST_INSTANT.date():
            raise ValueError(
                f"must be between {EARLIEST_INSTANT:%Y-%m-%d} and {LATEST_INSTANT:%Y-%m-%d}"
            )
        return day
    try:
        when = _with_offset(_DATETIME.validate_python(_not_a_number(value)))
    except ValueError:
        raise ValueError(
            "must be a date (2026-12-01) or an ISO 8601 date and time with its UTC offset "
            "(2026-12-01T09:00:00+01:00, or ...Z for UTC)"
        ) from None
    return _storable(when)


# A bound of a time filter: a plain date (a calendar day in the request's zone) or an
# Instant. common/time_window.py turns a pair of them into instants.
DateOrInstant = Annotated[
    date | datetime,
    PlainValidator(_date_or_instant),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]}
    ),
]
