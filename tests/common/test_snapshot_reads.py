"""Long reads (reports, CSV exports) see one snapshot and hold up no writer, on MariaDB and
on the embedded SQLite file alike."""

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pymysql
import pytest
from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import Session

from common import migrate
from common.db import (
    make_engine,
    make_sessionmaker,
    send_prepared_read,
    send_read,
    snapshot_connection,
    snapshot_engine,
    snapshot_session,
)
from common.models import Category

Snapshot = Callable[[Engine], AbstractContextManager[Any]]
# the plain connection reports read through, and the ORM session on one (exports, the
# ledger check)
SNAPSHOTS = pytest.mark.parametrize("snapshot", [snapshot_connection, snapshot_session])


@pytest.fixture(params=["mariadb", "sqlite"])
def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "mariadb":
        yield request.getfixturevalue("engine")
        return
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def add_category(engine: Engine, slug: str) -> None:
    with make_sessionmaker(engine)() as session:
        session.add(Category(name=slug, slug=slug, path="/"))
        session.commit()


def slugs(reader: Session | Connection, run: str) -> list[str]:
    """This test's categories (the worker's database holds other tests' rows too)."""
    found = reader.scalars(select(Category.slug).where(Category.slug.startswith(run)))
    return sorted(slug.removeprefix(run) for slug in found)


@SNAPSHOTS
def test_a_long_read_sees_one_snapshot_and_holds_up_no_writer(
    any_engine: Engine, snapshot: Snapshot
) -> None:
    run = f"snap-{uuid.uuid4().hex[:8]}-"
    add_category(any_engine, f"{run}before")
    with snapshot(any_engine) as reader:
        assert slugs(reader, run) == ["before"]
        # While the read is still open, another connection writes and commits at once
        # (on SQLite a write lock held by the reader would make it wait 30 s, then fail).
        started = time.monotonic()
        add_category(any_engine, f"{run}during")
        assert time.monotonic() - started < 5
        assert slugs(reader, run) == ["before"]  # still the snapshot it started with
    with snapshot(any_engine) as reader:
        assert slugs(reader, run) == ["before", "during"]


@SNAPSHOTS
def test_the_next_snapshot_on_a_connection_reads_newer_commits(
    engine: Engine, snapshot: Snapshot
) -> None:
    """A snapshot's ROLLBACK is sent without waiting for its answer (read before the
    connection's next command): the next snapshot on that very connection must still begin
    afresh and see what was committed in between, however many snapshots ended since."""
    run = f"snap-{uuid.uuid4().hex[:8]}-"
    snapshot_engine(engine).dispose()  # from here on, the pool holds one connection
    first = None
    for step in range(3):
        add_category(engine, f"{run}{step}")
        with snapshot(engine) as reader:
            plain = reader if isinstance(reader, Connection) else reader.connection()
            connection = plain.connection.dbapi_connection
            assert first is None or connection is first
            first = connection
            assert slugs(reader, run) == [str(s) for s in range(step + 1)]
            assert slugs(reader, run) == [str(s) for s in range(step + 1)]


def test_a_snapshot_read_only_through_the_drivers_cursor_ends_as_well(engine: Engine) -> None:
    """A report's first statement goes to the driver's cursor, past SQLAlchemy: a snapshot
    that read nothing else must still end, or the next one on the connection reads the old
    data."""
    run = f"snap-{uuid.uuid4().hex[:8]}-"
    snapshot_engine(engine).dispose()  # from here on, the pool holds one connection
    for step in range(3):
        add_category(engine, f"{run}{step}")
        with snapshot_connection(engine) as reader:
            cursor = reader.connection.cursor()
            cursor.execute("SELECT slug FROM categories WHERE slug LIKE %s", (f"{run}%",))
            assert len(cursor.fetchall()) == step + 1


def test_a_read_sent_early_is_one_of_the_snapshots_reads(engine: Engine) -> None:
    """A report's first statement is sent without waiting for its answer (``send_read``)
    while the report plans: its rows are read when asked for, kept where another statement
    went out first, and part of the one snapshot whatever commits meanwhile; a read that
    fails raises when its rows are asked for; a snapshot ended before its rows were read
    leaves the connection clean for the next."""
    run = f"snap-{uuid.uuid4().hex[:8]}-"
    snapshot_engine(engine).dispose()  # from here on, the pool holds one connection
    add_category(engine, f"{run}a")
    query = "SELECT slug FROM categories WHERE slug LIKE %(run)s ORDER BY slug"

    def early(reader: Connection) -> Callable[[], Any]:
        rows = send_read(reader, query, {"run": f"{run}%"})
        assert rows is not None
        return lambda: [slug.removeprefix(run) for (slug,) in rows()]

    with snapshot_connection(engine) as reader:
        first = early(reader)
        add_category(engine, f"{run}b")  # committed while the read may be on its way
        later = slugs(reader, run)  # sent before the early rows were read: they are kept
        assert first() == later  # one snapshot, whichever side of the commit it began
        assert first() == later  # asked for again: the same rows
        assert "a" in later
    with snapshot_connection(engine) as reader:
        assert early(reader)() == ["a", "b"]
    with snapshot_connection(engine) as reader:
        failing = send_read(reader, "SELECT no_such_column FROM categories", {})
        assert failing is not None
        with pytest.raises(pymysql.err.OperationalError, match="no_such_column"):
            failing()
    with snapshot_connection(engine) as reader:
        early(reader)  # never read: the snapshot ends with its answer on the way
        failing = send_read(reader, "SELECT no_such_column FROM categories", {})
    add_category(engine, f"{run}c")
    with snapshot_connection(engine) as reader:
        assert early(reader)() == ["a", "b", "c"] == slugs(reader, run)


def test_a_read_is_not_sent_early_where_the_driver_cannot(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with snapshot_connection(engine) as reader:
            assert send_read(reader, "SELECT 1", {}) is None
    finally:
        engine.dispose()


def test_reads_sent_back_to_back_each_get_their_own_answer(engine: Engine) -> None:
    """Several reads on their way at once (a report sends the statements it needs before it
    plans): each gets its own rows or its own error, in whatever order they are asked for,
    all from the one snapshot; a command that waits reads them all first."""
    run = f"snap-{uuid.uuid4().hex[:8]}-"
    snapshot_engine(engine).dispose()  # from here on, the pool holds one connection
    add_category(engine, f"{run}a")
    like = {"run": f"{run}%"}
    listed = "SELECT slug FROM categories WHERE slug LIKE %(run)s ORDER BY slug"
    counted = "SELECT count(*) FROM categories WHERE slug LIKE %(run)s"
    with snapshot_connection(engine) as reader:
        first = send_read(reader, listed, like)
        failing = send_read(reader, "SELECT no_such_column FROM categories", {})
        count = send_read(reader, counted, like)
        assert first is not None and failing is not None and count is not None
        add_category(engine, f"{run}b")  # committed while they are on their way
        assert count() == ((1,),)  # the last asked first: the others' answers are kept
        with pytest.raises(pymysql.err.OperationalError, match="no_such_column"):
            failing()
        assert [slug for (slug,) in first()] == [f"{run}a"]
        again = send_read(reader, counted, like)
        assert again is not None
        assert slugs(reader, run) == ["a"]  # waits for the read before it, keeps its rows
        assert again() == ((1,),)
    with snapshot_connection(engine) as reader:
        for _ in range(3):  # ended with all three on their way
            send_read(reader, listed, like)
            send_read(reader, "SELECT no_such_column FROM categories", {})
    with snapshot_connection(engine) as reader:
        count = send_read(reader, counted, like)
        assert count is not None
        assert count() == ((2,),)  # a new snapshot, the errors before it let go


def test_reads_on_their_way_when_the_connection_is_lost_raise_and_leave_no_answer(
    engine: Engine,
) -> None:
    """The server drops the connection while two reads are on their way: asking for either
    raises a lost connection (never the other's rows), and the pool then hands out a
    working connection."""
    snapshot_engine(engine).dispose()
    with snapshot_connection(engine) as reader:
        raw = reader.connection.dbapi_connection
        assert raw is not None
        own_id = reader.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one()
        with engine.connect() as killer:
            first = send_read(reader, "SELECT SLEEP(0.5), 1", {})
            second = send_read(reader, "SELECT 2", {})
            assert first is not None and second is not None
            killer.exec_driver_sql(f"KILL {int(own_id)}")
        for asked in (second, first):
            with pytest.raises(pymysql.err.OperationalError):
                asked()
    with snapshot_connection(engine) as reader:
        assert reader.exec_driver_sql("SELECT 3").scalar_one() == 3


def test_a_statement_prepared_once_per_connection_answers_as_one_sent_plainly(
    engine: Engine,
) -> None:
    """A report's first statement is PREPAREd on a connection the first time it is sent and
    only EXECUTEd after (``send_prepared_read``): the rows of the plain statement, for any
    values (quotes and % included), prepared once per connection and again on a new one. A
    statement the server cannot prepare raises the server's error where its rows are asked
    for, each time, not a missing prepared statement."""
    run = f"snap-{uuid.uuid4().hex[:8]}-"
    snapshot_engine(engine).dispose()  # from here on, the pool holds one connection
    for slug in ("a", "b", "c'd", "50%"):
        add_category(engine, f"{run}{slug}")
    query = (
        "SELECT slug FROM categories WHERE slug LIKE %(run)s AND slug <> %(other)s"
        " AND slug LIKE 'snap-%%' ORDER BY slug LIMIT %(limit)s"
    )

    def prepared(reader: Connection) -> int:
        return int(reader.exec_driver_sql("SHOW SESSION STATUS LIKE 'Com_prepare_sql'").one()[1])

    for _connection in range(2):
        with snapshot_connection(engine) as reader:
            before = prepared(reader)
            for other, limit in ((f"{run}a", 5), (f"{run}c'd", 2), ("x' OR '1'='1", 9)):
                values = {"run": f"{run}%", "other": other, "limit": limit}
                sent = send_prepared_read(reader, query, values)
                plain = send_read(reader, query, values)
                assert sent is not None and plain is not None
                assert sent() == plain()
                assert len(sent()) == min(limit, 4 - (other != "x' OR '1'='1"))
            assert prepared(reader) - before == 1
        snapshot_engine(engine).dispose()  # the next pass on a new connection
    with snapshot_connection(engine) as reader:
        for _ in range(2):
            failing = send_prepared_read(reader, "SELECT no_such_column FROM categories", {})
            assert failing is not None
            with pytest.raises(pymysql.err.OperationalError, match="no_such_column"):
                failing()
