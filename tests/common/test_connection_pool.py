"""The MariaDB connection pool: no round trip of its own per transaction, and still no dead
connection handed out after it sat idle while the server dropped it."""

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from common import db
from common.db import make_engine


@pytest.fixture
def one_connection(database_url: str) -> Iterator[Engine]:
    """A pool of exactly one connection, so each test meets the same one again."""
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def _session_counter(engine: Engine, name: str) -> int:
    with engine.begin() as connection:  # (committed: a rollback of its own would count)
        row = connection.execute(text(f"SHOW SESSION STATUS LIKE '{name}'")).one()
        return int(row[1])


def test_a_committed_transaction_costs_no_rollback_and_an_open_one_is_ended(
    one_connection: Engine,
) -> None:
    before = _session_counter(one_connection, "Com_rollback")
    for _ in range(5):
        with one_connection.begin() as connection:
            connection.execute(text("SELECT 1"))
    # the pool used to send a ROLLBACK after every commit, as each connection came back
    assert _session_counter(one_connection, "Com_rollback") == before

    # a transaction left open is still ended when its connection goes back
    connection = one_connection.connect()
    own_id = connection.execute(text("SELECT CONNECTION_ID()")).scalar_one()
    connection.execute(text("SELECT 1 FROM users LIMIT 1 FOR UPDATE"))
    connection.close()
    with one_connection.connect() as again:
        assert again.execute(text("SELECT CONNECTION_ID()")).scalar_one() == own_id
        open_transactions = again.execute(
            text(
                "SELECT COUNT(*) FROM information_schema.innodb_trx "
                "WHERE trx_mysql_thread_id = CONNECTION_ID() AND trx_rows_locked > 0"
            )
        ).scalar_one()
        assert open_transactions == 0
        isolation = again.execute(text("SELECT @@tx_isolation")).scalar_one()
        assert isolation == "READ-COMMITTED"


def test_an_idle_connection_the_server_dropped_is_replaced_not_handed_out(
    one_connection: Engine, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with one_connection.connect() as connection:
        dropped = connection.execute(text("SELECT CONNECTION_ID()")).scalar_one()
    with engine.connect() as other:  # the server drops it (a restart, a wait_timeout)
        other.execute(text(f"KILL {int(dropped)}"))
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)  # it has been idle long enough

    with one_connection.connect() as connection:
        fresh = connection.execute(text("SELECT CONNECTION_ID()")).scalar_one()
    assert fresh != dropped


def test_new_connections_share_one_tls_context_unless_they_name_their_own(
    database_url: str,
) -> None:
    # PyMySQL offers TLS to every server that takes it; the context it would build for
    # each new connection (the system's certificates loaded again) is built once.
    first, second = make_engine(database_url), make_engine(database_url)
    try:
        with first.connect() as a, second.connect() as b:
            dbapi: Any = a.connection.dbapi_connection
            other: Any = b.connection.dbapi_connection
            assert dbapi.ctx is not None and dbapi.ctx is other.ctx
            assert a.execute(text("SELECT 1")).scalar_one() == 1
            # TLS options of a connection's own get a context of their own, PyMySQL's.
            own = dbapi._create_ssl_ctx({"check_hostname": False})
            assert own is not dbapi.ctx and own.check_hostname is False
    finally:
        first.dispose()
        second.dispose()
