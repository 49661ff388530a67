"""The outbox never lets a consumer pass over an event whose transaction commits late.

Ids are given at insert: a transaction that took id 1 and is still open while id 2 commits
would be skipped by a consumer that read "everything after 0" and moved to 2. These tests
hold such a transaction open, on MariaDB and on the embedded SQLite file.
"""

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine

from common import migrate, outbox
from common.db import make_engine, snapshot_session

CONSUMER = "test-consumer"


def _append(connection: Connection, name: str) -> None:
    outbox.append(connection, outbox.SALES_OUTBOX, [outbox.event(name, None, {"name": name})])


def _consume(engine: Engine) -> list[str]:
    """One pass of a consumer: what it reads after its position, which it then moves on."""
    with engine.begin() as connection:
        position, _ = outbox.lock_position(connection, CONSUMER)
        rows = outbox.read_after(connection, outbox.SALES_OUTBOX, position)
        if rows:
            outbox.save_position(connection, CONSUMER, rows[-1].id)
        return [row.type for row in rows]


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_mariadb_a_consumer_waits_for_an_earlier_id_still_in_flight(engine: Engine) -> None:
    with engine.connect() as slow:
        transaction = slow.begin()
        _append(slow, "first")  # takes the lower id, commits last
        with engine.begin() as fast:
            _append(fast, "second")
            _append(fast, "third")

        read: list[list[str]] = []
        consumer = threading.Thread(target=lambda: read.append(_consume(engine)))
        consumer.start()
        consumer.join(timeout=1.0)
        # It neither skipped "first" nor returned "second" alone: it is waiting for it.
        assert consumer.is_alive() and read == []
        transaction.commit()
        consumer.join(timeout=30)
    assert read == [["first", "second", "third"]]
    assert _consume(engine) == []


def test_mariadb_a_rolled_back_id_leaves_a_gap_the_consumer_passes(engine: Engine) -> None:
    with engine.connect() as doomed:
        transaction = doomed.begin()
        _append(doomed, "never")
        with engine.begin() as fast:
            _append(fast, "kept")
        waiting: list[list[str]] = []
        consumer = threading.Thread(target=lambda: waiting.append(_consume(engine)))
        consumer.start()
        time.sleep(0.3)
        transaction.rollback()
        consumer.join(timeout=30)
    assert waiting == [["kept"]]


def test_sqlite_a_later_transaction_cannot_commit_before_an_open_one(
    sqlite_engine: Engine,
) -> None:
    with sqlite_engine.connect() as slow:
        transaction = slow.begin()
        _append(slow, "first")

        def later() -> None:
            with sqlite_engine.begin() as fast:
                _append(fast, "second")

        writer = threading.Thread(target=later)
        writer.start()
        time.sleep(0.5)
        # SQLite has one writer: "second" waits for "first", so ids come in commit order,
        # and a reader meanwhile sees neither.
        assert writer.is_alive()
        with snapshot_session(sqlite_engine) as reader:
            assert outbox.read_after(reader, outbox.SALES_OUTBOX, 0) == []
        transaction.commit()
        writer.join(timeout=30)
    assert _consume(sqlite_engine) == ["first", "second"]
    assert _consume(sqlite_engine) == []


def test_positions_are_kept_per_consumer_and_survive_a_new_engine(sqlite_engine: Engine) -> None:
    with sqlite_engine.begin() as connection:
        for name in ("a", "b", "c"):
            _append(connection, name)
    assert _consume(sqlite_engine) == ["a", "b", "c"]
    url = sqlite_engine.url.render_as_string(hide_password=False)
    restarted = make_engine(url)
    try:
        with restarted.begin() as connection:
            _append(connection, "d")
        assert _consume(restarted) == ["d"]  # resumed after "c", not from the start
        with restarted.begin() as connection:
            other, _ = outbox.lock_position(connection, "another-consumer")
        assert other == 0
    finally:
        restarted.dispose()
