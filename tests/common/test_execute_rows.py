"""common.db.execute_rows writes a bulk change's rows into the statement itself on PyMySQL:
what lands must be exactly what SQLAlchemy's executemany stores for the same rows."""

import enum
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Engine,
    Enum,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    bindparam,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common import db
from common.db import UTCDateTime, execute_rows, insert_ids, make_engine, utcnow


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


METADATA = MetaData()
ROWS = Table(
    "test_execute_rows",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("n", Integer, nullable=False, unique=True),
    Column("name", String(200)),
    Column("body", Text, nullable=False),
    Column("price", Numeric(12, 2)),
    Column("flag", Boolean, nullable=False),
    Column("colour", Enum(Colour, native_enum=False, length=10), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("doc", JSON),
    Column("made_at", UTCDateTime, nullable=False, default=utcnow),
    mysql_charset="utf8mb4",
)
NASTY = [
    "",
    "it's",
    'say "hi"',
    "trailing \\",
    "\\'; DROP TABLE test_execute_rows; --",
    "nul \0 and ctrl-z \x1a, \r\n",
    "100% %s %(n)s %%",
    '{"json": "with \\"quotes\\""}',
    "Grüße, 東京, 😀",
]


MADE_AT = datetime(2026, 1, 1, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=2)))


def _rows(offset: int) -> list[dict[str, Any]]:
    zones = [UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=30))]
    return [
        {
            "n": offset + i,
            "name": None if i % 4 == 3 else value,
            "body": value,
            "price": None if i % 5 == 4 else Decimal(f"{i}.{i:02d}") - 3,
            "flag": i % 2 == 0,
            "colour": Colour.RED if i % 3 else Colour.BLUE,
            "at": datetime(2026, 3, 29, 1, 30, i, 123456 * (i % 2), tzinfo=zones[i % 3]),
            "doc": {"text": value, "n": [i, None, 1.5]},
            "made_at": MADE_AT,  # one object in every row, as a batch's timestamp is
        }
        for i, value in enumerate(NASTY)
    ]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    METADATA.create_all(engine)
    yield engine
    METADATA.drop_all(engine)
    engine.dispose()


def _stored(engine: Engine, first: int, last: int) -> list[tuple[Any, ...]]:
    columns = [c for c in ROWS.c if c.name not in ("id", "n")]
    with engine.connect() as connection:
        query = select(*columns).where(ROWS.c.n.between(first, last)).order_by(ROWS.c.n)
        return [tuple(row) for row in connection.execute(query)]


def _statements(engine: Engine) -> list[tuple[str, Any]]:
    sent: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    return sent


@pytest.mark.parametrize("sql_mode", ["", "NO_BACKSLASH_ESCAPES"])
def test_rows_are_stored_as_executemany_stores_them(engine: Engine, sql_mode: str) -> None:
    sent = _statements(engine)
    # The JSON column as text the caller made, as the outbox and the audit log send it.
    statement = insert(ROWS).values(doc=bindparam("doc", type_=Text()))
    with engine.begin() as connection:
        connection.execute(text("SET SESSION sql_mode = :mode"), {"mode": sql_mode})
        ours = [{**row, "doc": f'{{"i": {row["n"]}}}'} for row in _rows(0)]
        sent.clear()
        execute_rows(connection, statement, ours)
        assert len(sent) == 1  # one statement, the rows written into it
        connection.execute(statement, [{**row, "n": row["n"] + 100} for row in ours])
        connection.execute(text("SET SESSION sql_mode = DEFAULT"))
    assert _stored(engine, 0, 99) == _stored(engine, 100, 199)
    assert [row[1] for row in _stored(engine, 0, 99)] == NASTY
    assert any(row[3] is False for row in _stored(engine, 0, 99))


def test_a_column_type_processes_each_value_as_it_does_for_sqlalchemy(engine: Engine) -> None:
    with engine.begin() as connection:
        execute_rows(connection, insert(ROWS), _rows(0))
        connection.execute(insert(ROWS), _rows(100))
    stored = _stored(engine, 0, 99)
    assert stored == _stored(engine, 100, 199)
    # Aware times stored in UTC, enums by value, JSON documents whole.
    assert stored[1][5] == datetime(2026, 3, 29, 6, 30, 1, 123456, tzinfo=UTC)
    assert {row[4] for row in stored} == {Colour.RED, Colour.BLUE}
    assert stored[0][6] == {"text": "", "n": [0, None, 1.5]}


def test_a_default_computed_in_python_is_still_applied(engine: Engine) -> None:
    rows = [{k: v for k, v in row.items() if k != "made_at"} for row in _rows(0)]
    before = utcnow()
    with engine.begin() as connection:
        execute_rows(connection, insert(ROWS), rows)
    assert all(row[7] >= before.replace(microsecond=0) for row in _stored(engine, 0, 99))


def test_an_upsert_sets_the_rows_it_meets(engine: Engine) -> None:
    with engine.begin() as connection:
        execute_rows(connection, insert(ROWS), _rows(0))
        upsert = mysql.insert(ROWS)
        upsert = upsert.on_duplicate_key_update(body=upsert.inserted.body)
        again = [{**row, "body": f"{row['body']} again %"} for row in _rows(0)]
        execute_rows(connection, upsert, again)
    assert [row[1] for row in _stored(engine, 0, 99)] == [f"{v} again %" for v in NASTY]


def test_rows_past_the_statement_size_go_in_several_statements(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "MAX_STATEMENT_BYTES", 1000)
    sent = _statements(engine)
    rows = [{**_rows(0)[1], "n": n, "body": f"{n}" * 1000} for n in range(10)]
    with engine.begin() as connection:
        execute_rows(connection, insert(ROWS), rows)
    assert len(sent) == 10
    assert all(len(statement) < 1000 + 1200 for statement, _ in sent)
    assert [row[1] for row in _stored(engine, 0, 9)] == [f"{n}" * 1000 for n in range(10)]


def _ids_by_n(engine: Engine, numbers: list[int]) -> list[int]:
    with engine.connect() as connection:
        query = select(ROWS.c.n, ROWS.c.id).where(ROWS.c.n.in_(numbers))
        found = {n: row_id for n, row_id in connection.execute(query)}
    return [found[n] for n in numbers]


def test_insert_ids_answers_the_ids_the_rows_got_in_their_order(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "MAX_STATEMENT_BYTES", 2000)  # several statements
    rows = [{**_rows(0)[i % len(NASTY)], "n": 1000 - i} for i in range(40)]
    with engine.begin() as connection:
        connection.execute(text("SET SESSION auto_increment_increment = 3"))
        ids = insert_ids(connection, insert(ROWS), rows)
    assert ids is not None and len(set(ids)) == 40
    assert ids == _ids_by_n(engine, [row["n"] for row in rows])
    assert ids[1] - ids[0] == 3


def test_insert_ids_are_right_while_other_connections_insert_into_the_same_table(
    engine: Engine,
) -> None:
    failures: list[str] = []

    def insert_batches(worker: int) -> None:
        for batch in range(10):
            start = 10_000 * (worker + 1) + 100 * batch
            rows = [{**_rows(0)[1], "n": start + i} for i in range(60)]
            try:
                with engine.begin() as connection:
                    ids = insert_ids(connection, insert(ROWS), rows)
                if ids is None or ids != _ids_by_n(engine, [row["n"] for row in rows]):
                    failures.append(f"worker {worker} batch {batch}: {ids}")
            except Exception as exc:  # a thread's exception would be lost
                failures.append(f"worker {worker} batch {batch}: {exc!r}")

    engine.pool = engine.pool.recreate()  # room for the threads' connections
    threads = [threading.Thread(target=insert_batches, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(_stored(engine, 10_000, 50_000)) == 4 * 10 * 60


def test_insert_ids_leaves_other_statements_to_the_caller_writing_nothing(
    engine: Engine,
) -> None:
    upsert = mysql.insert(ROWS)
    upsert = upsert.on_duplicate_key_update(body=upsert.inserted.body)
    with engine.begin() as connection:
        assert insert_ids(connection, upsert, _rows(0)) is None
        assert insert_ids(connection, insert(ROWS).prefix_with("IGNORE"), _rows(0)) is None
        with_ids = [{**row, "id": 5000 + row["n"]} for row in _rows(100)]
        assert insert_ids(connection, insert(ROWS), with_ids) is None
        defaults = [{k: v for k, v in row.items() if k != "made_at"} for row in _rows(200)]
        assert insert_ids(connection, insert(ROWS), defaults) is None
    assert _stored(engine, 0, 299) == []


def test_rows_sent_to_be_answered_later_are_written_by_the_commit(engine: Engine) -> None:
    with engine.begin() as connection:
        execute_rows(connection, insert(ROWS), _rows(0), answer_later=True)
        execute_rows(connection, insert(ROWS), _rows(100), answer_later=True)
    assert len(_stored(engine, 0, 199)) == 2 * len(NASTY)


def test_a_failure_answered_later_is_raised_by_the_next_statement_and_nothing_stays(
    engine: Engine,
) -> None:
    with engine.connect() as connection:
        transaction = connection.begin()
        execute_rows(connection, insert(ROWS), _rows(0))
        execute_rows(connection, insert(ROWS), _rows(0), answer_later=True)  # the same n again
        with pytest.raises(IntegrityError, match="Duplicate entry"):
            connection.execute(select(ROWS.c.id).limit(1)).all()
        transaction.rollback()
        # the connection goes on as usual
        assert connection.execute(select(func.count()).select_from(ROWS)).scalar_one() == 0
    assert _stored(engine, 0, 99) == []


def test_a_rollback_with_a_failure_still_unanswered_undoes_everything(engine: Engine) -> None:
    with engine.connect() as connection:
        transaction = connection.begin()
        execute_rows(connection, insert(ROWS), _rows(0))
        execute_rows(connection, insert(ROWS), _rows(0), answer_later=True)
        transaction.rollback()  # reads the failure and lets it go
        execute_rows(connection, insert(ROWS), _rows(100), answer_later=True)
        connection.commit()
    assert _stored(engine, 0, 99) == [] and len(_stored(engine, 100, 199)) == len(NASTY)


def test_a_connection_given_back_with_an_answer_unread_serves_the_next_user(
    engine: Engine,
) -> None:
    with Session(engine) as session:
        execute_rows(session, insert(ROWS), _rows(0), answer_later=True)
        session.commit()
        execute_rows(session, insert(ROWS), _rows(100), answer_later=True)
    # closed without a commit: rolled back, the pooled connection (the only one) reused
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(ROWS)).scalar_one()
    assert count == len(NASTY)
