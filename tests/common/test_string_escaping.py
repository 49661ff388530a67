"""Strings bound to statements reach MariaDB exactly as sent, whatever they hold (common.db
escapes them itself, faster than PyMySQL, to the same text)."""

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymysql import converters
from sqlalchemy import Engine, text

from common import db
from common.db import make_engine

SPECIAL = "\\\0\n\r\x1a'\""
NASTY = [
    "",
    "plain",
    "it's",
    'say "hi"',
    "trailing backslash \\",
    "\\'",
    "\\\\'; DROP TABLE strings; --",
    "nul \0 inside",
    "ctrl-z \x1a and \r\n",
    '{"json": "with \\"quotes\\" and \\\\ escapes", "n": 1}',
    "Grüße, 東京, 😀",
    SPECIAL * 3,
]


@given(st.text(alphabet=st.sampled_from(SPECIAL) | st.characters(codec="utf-8")))
def test_a_string_is_escaped_as_pymysql_escapes_it(value: str) -> None:
    assert db.escape_string(value) == converters.escape_string(value)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("sql_mode", ["", "NO_BACKSLASH_ESCAPES"])
def test_strings_round_trip_through_the_server_unchanged(engine: Engine, sql_mode: str) -> None:
    with engine.begin() as connection:
        connection.execute(text("SET SESSION sql_mode = :mode"), {"mode": sql_mode})
        connection.execute(
            text("CREATE TEMPORARY TABLE strings (n INT, s TEXT) CHARACTER SET utf8mb4")
        )
        # Many rows: one multi-row INSERT, every value escaped into the statement.
        connection.execute(
            text("INSERT INTO strings VALUES (:n, :s)"),
            [{"n": n, "s": s} for n, s in enumerate(NASTY)],
        )
        found = [s for (s,) in connection.execute(text("SELECT s FROM strings ORDER BY n"))]
        assert found == NASTY
        for value in NASTY:  # one value, in a WHERE
            same = connection.execute(text("SELECT n FROM strings WHERE s = :s"), {"s": value})
            assert same.scalar_one() == NASTY.index(value)
        connection.execute(text("DROP TEMPORARY TABLE strings"))
        connection.execute(text("SET SESSION sql_mode = DEFAULT"))


def test_a_number_list_holds_whole_numbers_only() -> None:
    """Ids written into a statement (``number_list``): distinct, ascending, and anything
    that is not a whole number refused before it could reach the statement."""
    assert db.number_list([9, 1, 5, 1]) == "1,5,9"
    assert db.number_list([]) == ""
    assert db.number_list([True, -3]) == "-3,1"
    with pytest.raises(ValueError, match="invalid literal"):
        db.number_list(["1) OR (1=1"])  # type: ignore[list-item]
