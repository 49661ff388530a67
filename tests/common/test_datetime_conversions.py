"""Datetimes to and from MariaDB: written and read by datetime's own C code (common.db's
PyMySQL conversions), to the microsecond, exactly as PyMySQL's would."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymysql import converters
from sqlalchemy import Engine, text

from common import db
from common.db import UTCDateTime, make_engine

# Naive, as UTCDateTime binds them (UTC with the zone taken off), from year 1000 as MariaDB.
MOMENTS = st.datetimes(
    min_value=datetime(1000, 1, 1),  # noqa: DTZ001
    max_value=datetime(9999, 12, 31),  # noqa: DTZ001
)


@given(MOMENTS)
def test_a_datetime_is_written_and_read_as_pymysql_would(moment: datetime) -> None:
    literal = db._datetime_literal(moment)
    assert literal == converters.escape_datetime(moment)
    sent = literal.strip("'")
    assert db._read_datetime(sent) == converters.convert_datetime(sent) == moment
    assert db._read_datetime(sent.encode()) == moment


def test_what_is_no_date_is_answered_as_pymysql_answers_it() -> None:
    for sent in ("0000-00-00 00:00:00", "2026-02-30 10:00:00"):
        assert db._read_datetime(sent) == converters.convert_datetime(sent) == sent


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def test_datetimes_round_trip_through_the_server_to_the_microsecond(engine: Engine) -> None:
    moments = [
        datetime(2026, 12, 2, 7, 6, 51, tzinfo=UTC),  # no fraction: written without one
        datetime(2026, 12, 2, 7, 6, 51, 1, tzinfo=UTC),
        datetime(2026, 3, 29, 0, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 10, 25, 3, 30, tzinfo=UTC) + timedelta(microseconds=500_000),
    ]
    column = UTCDateTime()
    with engine.begin() as connection:
        connection.execute(text("CREATE TEMPORARY TABLE moments (n INT, at DATETIME(6))"))
        connection.execute(
            text("INSERT INTO moments VALUES (:n, :at)"),
            [{"n": n, "at": m.replace(tzinfo=None)} for n, m in enumerate(moments)],
        )
        rows = connection.execute(text("SELECT at, CAST(at AS CHAR) FROM moments ORDER BY n"))
        found = [(column.process_result_value(at, engine.dialect), shown) for at, shown in rows]
    assert [at for at, _ in found] == moments
    assert found[0][1] == "2026-12-02 07:06:51.000000"
    assert found[1][1] == "2026-12-02 07:06:51.000001"
