"""Engine, sessions and column types shared by both services."""

import functools
import hashlib
import re
import ssl
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, TypeVar

import anyio.to_thread
import pymysql
from fastapi import Depends, Request
from pymysql import converters
from pymysql.constants import COMMAND, FIELD_TYPE, SERVER_STATUS
from sqlalchemy import Connection, DateTime, Engine, MetaData, Table, create_engine, event
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator, TypeEngine

from common.errors import LOCK_CONFLICT_CODES

T = TypeVar("T")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores an aware datetime as naive UTC (microseconds kept); reads it back aware in UTC."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware one is required")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 20,
    isolation_level: str = "READ COMMITTED",
    init_command: str | None = None,
    defer_rollback: bool = False,
) -> Engine:
    """Create the engine; on SQLite, make writers queue instead of failing and keep FKs on."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide when transactions start.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # SQLite ignores FOR UPDATE; taking the write lock up front is what makes
            # read-check-write sequences safe when both services share the file. A
            # read-only connection (see snapshot_session) begins deferred instead: in WAL
            # mode it reads one snapshot and never blocks a writer.
            read_only = conn.get_execution_options().get(_READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    pymysql_driver = make_url(url).get_driver_name() == "pymysql"
    engine = create_engine(
        url,
        connect_args=(
            {"conv": PYMYSQL_CONVERSIONS, "init_command": init_command} if pymysql_driver else {}
        ),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=1800,
        # No ROLLBACK when a connection goes back to the pool: SQLAlchemy's Connection and
        # Session end every transaction themselves (close rolls back one still open, and the
        # isolation level is restored apart from this), so the pool's own was a second round
        # trip after every commit: a sale's three transactions paid three.
        pool_reset_on_return=None,
        # Row locks taken with FOR UPDATE guard every stock change; READ COMMITTED avoids
        # the gap locks of REPEATABLE READ that would otherwise serialise unrelated inserts.
        # (snapshot_session reads through a pool of REPEATABLE READ connections.)
        isolation_level=isolation_level,
    )
    if pymysql_driver:

        @event.listens_for(engine, "do_connect")
        def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
            connection = _PyMySQLConnection(*cargs, **cparams)
            connection.defer_rollback = defer_rollback
            return connection

    _ping_when_idle(engine)
    return engine


def connection_of(db: Session | Connection) -> Connection:
    """The connection a request's session runs on (beginning its transaction, as a first
    statement would), or the connection itself."""
    return db if isinstance(db, Connection) else db.connection()


def number_list(values: Iterable[int]) -> str:
    """Whole numbers as a statement's literal list (``1,5,9``: distinct, ascending), for an
    ``IN (...)`` written into the statement where building and binding one parameter per
    value took SQLAlchemy longer than the database took to answer. Each goes through
    ``int()``: nothing but digits and a sign can get into the statement."""
    return ",".join(map(str, sorted({int(value) for value in values})))


def escape_string(value: str) -> str:
    """``value`` escaped for a quoted MySQL string literal, exactly as PyMySQL's
    ``converters.escape_string`` does it, by one C-level ``str.replace`` per special
    character: PyMySQL's ``str.translate`` through a table of strings falls back to a
    character-by-character loop as soon as one character needs escaping, which every JSON
    document (an event's payload, an audit entry's changes) has: 4-5 us for 200 characters
    against under 1 here."""
    return (
        value.replace("\\", "\\\\")  # first: the escapes below add backslashes
        .replace("\0", "\\0")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\x1a", "\\Z")
        .replace("'", "\\'")
        .replace('"', '\\"')
    )


class _PyMySQLConnection(pymysql.connections.Connection):
    """PyMySQL's connection with bound strings escaped by ``escape_string`` above, and the
    commonest values (text, whole numbers, NULL) written before PyMySQL's general dispatch;
    all else is PyMySQL's own. (Should a PyMySQL release rename these methods, its own
    escaping is used again: slower, never wrong.)"""

    def _escape_string(self, s: str) -> str:
        if self.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES:
            return s.replace("'", "''")  # as PyMySQL does in that mode
        return escape_string(s)

    # The answers on their way, oldest first: statements sent without waiting, read before
    # the connection's next command that waits (or, for a read, when its rows are asked).
    _unread: "deque[_SentRead] | None" = None
    _prepared: set[str] | None = None  # the statements PREPAREd on this connection, by name
    # Set on the snapshot pool's connections (snapshot_engine): the ROLLBACK that ends a
    # read-only transaction is sent and its answer read before the connection's next
    # command, so a report does not wait a round trip for it after its last read.
    defer_rollback = False
    _rollback_sent = False  # a ROLLBACK is on its way, and nothing was sent since
    _preferred_tls: ClassVar[ssl.SSLContext | None] = None

    def _create_ssl_ctx(self, sslp: Any) -> ssl.SSLContext:
        """PyMySQL's context for the TLS options given; where none is (its "preferred" TLS:
        used if the server offers it), one context made once for every connection, where
        PyMySQL made one per connection, loading the system's certificates each time
        (about 20 ms of CPU a connection)."""
        if sslp:
            return super()._create_ssl_ctx(sslp)
        cls = type(self)
        if cls._preferred_tls is None:
            cls._preferred_tls = super()._create_ssl_ctx({})
        return cls._preferred_tls

    def send_query(self, sql: str) -> None:
        """Send a statement and go on without waiting for the server's answer: it is read
        before this connection's next command, and its error, if any, raised there (a
        rollback reads it and lets it go: the statement is undone with the rest). A bulk
        write's last statement overlaps the caller's next work this way. Any answer still
        on its way is read first: writes go one at a time."""
        self._drain()
        self._send(sql, _SentRead(self, wanted=False))

    def send_read(self, sql: str) -> "_SentRead":
        """Send a read whose rows are wanted, without waiting: behind any answers still on
        their way (the server answers in order), its rows read when asked for
        (``_SentRead.rows``), or kept when a command sent later reads them first. Reads
        sent one after another are answered back to back, each round trip overlapping the
        others and the caller's work."""
        sent = _SentRead(self, wanted=True)
        self._send(sql, sent)
        return sent

    def send_prepared(self, name: str, text: str, values: Sequence[Any]) -> "_SentRead":
        """``send_read`` of a statement PREPAREd on this connection the first time (``text``
        with a ? per value, sent just before, without waiting either), then EXECUTEd with
        ``values``: the server parses and plans it once per connection."""
        if self._prepared is None:
            self._prepared = set()
        if name not in self._prepared:
            prepare = _SentRead(self, wanted=False, prepares=name)
            self._send(f"PREPARE {name} FROM {self.escape(text)}", prepare)
            self._prepared.add(name)
        using = ", ".join(self.escape(value) for value in values)
        sent = _SentRead(self, wanted=True)
        self._send(f"EXECUTE {name} USING {using}" if using else f"EXECUTE {name}", sent)
        return sent

    def _send(self, sql: str, sent: "_SentRead") -> None:
        self._rollback_sent = False
        super()._execute_command(COMMAND.COM_QUERY, sql)
        # the number its answer's first packet carries (1, unless the statement took more
        # than one packet): PyMySQL checks each packet's against what it expects next
        sent.sequence = self._next_seq_id
        if self._unread is None:
            self._unread = deque()
        self._unread.append(sent)

    def read_answer(self) -> None:
        """Read the oldest answer still on its way: a read's rows (or its error) are kept
        for it; a statement's error is raised here, unless a rollback let it go."""
        assert self._unread
        sent = self._unread.popleft()
        self._next_seq_id = sent.sequence
        try:
            self._read_query_result()
        except pymysql.err.Error as exc:
            if sent.prepares is not None and self._prepared is not None:
                self._prepared.discard(sent.prepares)  # prepared again the next time
            if not self.open:  # lost: so are the answers after it
                for later in self._unread:
                    later.error = exc
                self._unread.clear()
            sent.error = exc
            if sent.wanted or sent.let_go:
                return  # raised when its rows are asked for, or undone by a rollback
            raise
        sent.kept = self._result.rows or ()

    def _drain(self) -> None:
        while self._unread:
            self.read_answer()

    def _execute_command(self, command: int, sql: Any) -> None:
        self._drain()
        self._rollback_sent = False
        super()._execute_command(command, sql)

    def rollback(self) -> None:
        if self._rollback_sent or not self.open:
            return  # (closed: the server ended the transaction with the connection)
        for sent in self._unread or ():
            sent.let_go = True  # undone by the rollback, whatever its answer
        if self.defer_rollback:
            self._send("ROLLBACK", _SentRead(self, wanted=False))
            self._rollback_sent = True
            return
        super().rollback()

    def escape(self, obj: Any, mapping: Any = None) -> str:
        kind = type(obj)
        if kind is str:
            return f"'{self._escape_string(obj)}'"
        if mapping is None:  # PyMySQL's own conversions of these, without their lookup
            if kind is int:
                return int.__repr__(obj)
            if obj is None:
                return "NULL"
        return str(super().escape(obj, mapping))


class _SentRead:
    """A statement sent without waiting for its answer (``_PyMySQLConnection.send_query``,
    ``send_read``)."""

    def __init__(
        self, connection: _PyMySQLConnection, *, wanted: bool, prepares: str | None = None
    ) -> None:
        self.connection = connection
        self.wanted = wanted  # a read whose rows are asked for: its error raised then
        self.prepares = prepares  # the name of the statement it PREPAREs, if it does
        self.let_go = False  # a rollback undid it: its error is raised nowhere
        self.sequence = 1
        self.kept: tuple[tuple[Any, ...], ...] | None = None
        self.error: pymysql.err.Error | None = None

    def rows(self) -> tuple[tuple[Any, ...], ...]:
        while self.kept is None and self.error is None:
            if self not in (self.connection._unread or ()):
                raise pymysql.err.InterfaceError("the answer to a read sent early was lost")
            self.connection.read_answer()  # the oldest first, up to this one
        if self.error is not None:
            raise self.error
        assert self.kept is not None
        return self.kept


def send_read(
    connection: Connection, sql: str, parameters: Mapping[str, Any]
) -> Callable[[], Sequence[tuple[Any, ...]]] | None:
    """Send a read (``sql`` in the driver's pyformat, with its parameters) in the
    connection's transaction and return at once, with a function that gives its rows: the
    server answers while this process goes on with work that does not need them, where
    waiting for it was a round trip of 0.3-0.6 ms. Reads sent after it go out behind it;
    a statement that waits for its own answer first reads (and keeps) this one. None
    where the driver cannot (PyMySQL through ``make_engine`` can)."""
    raw = _sends_early(connection)
    if raw is None:
        return None
    cursor = raw.cursor()
    try:
        text: str = cursor.mogrify(sql, parameters)
    finally:
        cursor.close()
    return raw.send_read(text).rows


def send_prepared_read(
    connection: Connection, sql: str, parameters: Mapping[str, Any]
) -> Callable[[], Sequence[tuple[Any, ...]]] | None:
    """``send_read`` of a statement the server parses and plans once per connection: the
    first time PREPAREd (named after its text), then EXECUTEd with the parameters' values.
    For a statement sent with every report: parsing and planning a report's first
    statement took 0.1-0.2 ms of the 0.4-0.6 its server spends on it. None where the driver
    cannot send early."""
    raw = _sends_early(connection)
    if raw is None:
        return None
    name, text, order = _as_prepared(sql)
    return raw.send_prepared(name, text, [parameters[key] for key in order]).rows


def _sends_early(connection: Connection) -> _PyMySQLConnection | None:
    """The connection's driver connection, where it can send a statement without waiting."""
    raw = connection.connection.dbapi_connection
    return raw if isinstance(raw, _PyMySQLConnection) else None


_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@functools.lru_cache(maxsize=64)
def _as_prepared(sql: str) -> tuple[str, str, tuple[str, ...]]:
    """A statement in the driver's pyformat as PREPARE takes it: a name made from its text,
    the text with a ? for each parameter, and the parameters' names in their order."""
    order = tuple(_PLACEHOLDER.findall(sql))
    text = sql % dict.fromkeys(order, "?")  # (and each %% back to %)
    return f"shop_{hashlib.sha256(sql.encode()).hexdigest()[:16]}", text, order


def _datetime_literal(value: datetime, mapping: Any = None) -> str:
    """A datetime as PyMySQL writes it into a statement (``'2026-12-02 07:06:51.000123'``,
    no fraction when it is 0), made by ``datetime.isoformat`` in one C call; PyMySQL's own
    formats seven fields in Python. An aware one (never sent: UTCDateTime binds naive UTC)
    is left to PyMySQL, which drops its zone."""
    if value.tzinfo is not None:
        return str(converters.escape_datetime(value, mapping))
    return f"'{value.isoformat(' ')}'"


def _read_datetime(text: str | bytes) -> datetime | Any:
    """A DATETIME or TIMESTAMP the server sent, parsed by ``datetime.fromisoformat`` (C);
    what that cannot read (a zero date) goes to PyMySQL's own parser, which answers it."""
    try:
        return datetime.fromisoformat(text.decode("ascii") if isinstance(text, bytes) else text)
    except ValueError:
        return converters.convert_datetime(text)


# PyMySQL's conversions with datetimes written and read as above: a bulk import writes four
# a row (a product's two, its event's, its audit entry's), and PyMySQL's formatting of them
# was a tenth of the import's CPU.
PYMYSQL_CONVERSIONS: dict[Any, Any] = {
    **converters.conversions,
    datetime: _datetime_literal,
    FIELD_TYPE.DATETIME: _read_datetime,
    FIELD_TYPE.TIMESTAMP: _read_datetime,
}


# A pooled connection idle this long is pinged before use (and replaced if the server has
# dropped it: a restart, a wait_timeout); one in steady use is not.
IDLE_PING_SECONDS = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """Check a connection that sat in the pool a while before handing it out, instead of
    every one every time (``pool_pre_ping``): under load connections come back within
    milliseconds, and a ping per checkout was a round trip per transaction."""

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _alive(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if not getattr(dbapi_connection, "open", True):  # lost under a read past SQLAlchemy
            raise DisconnectionError("a pooled connection was closed by a lost connection")
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool then opens a new connection and tries again
            raise DisconnectionError("a pooled connection was dropped by the server") from exc
        if not alive:
            raise DisconnectionError("a pooled connection was dropped by the server")


_READ_ONLY = "shop_read_only"


@contextmanager
def snapshot_connection(engine: Engine) -> Iterator[Connection]:
    """A read-only connection of its own, for reads that must add up (a report, an export,
    the ledger check): its queries all see one consistent snapshot, and it holds no lock a
    writer waits for, however long it reads. MySQL/MariaDB: REPEATABLE READ, whose plain
    SELECTs take no locks (the app's own connections run READ COMMITTED, where each
    statement sees the latest commits). SQLite: a deferred BEGIN (WAL readers never block
    the writer). Only read through it; it is rolled back when it goes back to its pool.

    A plain connection, not an ORM session on one: a report reads rows, never objects, and
    a session's transaction bookkeeping made a snapshot with one statement 0.27 ms where
    this takes 0.21."""
    if engine.dialect.name == "sqlite":
        connection = engine.connect().execution_options(**{_READ_ONLY: True})
    else:
        connection = snapshot_engine(engine).connect()
    with connection:
        # begun here, so closing rolls it back even where every read went to the driver's
        # cursor (repository.pending_since), which SQLAlchemy would not know had begun one
        connection.begin()
        yield connection


@contextmanager
def snapshot_session(engine: Engine) -> Iterator[Session]:
    """``snapshot_connection`` as an ORM session, for reads that load objects."""
    with snapshot_connection(engine) as connection, Session(bind=connection) as session:
        yield session


_READERS: "weakref.WeakKeyDictionary[Engine, Engine]" = weakref.WeakKeyDictionary()
_READER_ENGINES: "weakref.WeakSet[Engine]" = weakref.WeakSet()
_READERS_LOCK = threading.Lock()


def snapshot_engine(engine: Engine) -> Engine:
    """A small pool beside the engine's, of connections set to REPEATABLE READ once, when
    made: a snapshot then costs no statement before its first read (a SET TRANSACTION on
    one of the engine's READ COMMITTED connections was a round trip per report). Disposed
    with the engine."""
    if engine in _READER_ENGINES:  # already one
        return engine
    with _READERS_LOCK:
        reader = _READERS.get(engine)
        if reader is None:
            url = engine.url.render_as_string(hide_password=False)
            reader = make_engine(
                url,
                pool_size=5,
                max_overflow=10,
                isolation_level="REPEATABLE READ",
                # reads of many small rows come as one GROUP_CONCAT string (reports)
                init_command="SET SESSION group_concat_max_len = 1073741824",
                defer_rollback=True,  # its transactions only read
            )
            _READERS[engine] = reader
            _READER_ENGINES.add(reader)
            event.listen(engine, "engine_disposed", lambda _engine: reader.dispose())
        return reader


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)


def _ending_limiter(request: Request) -> anyio.CapacityLimiter:
    """The threads that end transactions, apart from those that run routes (made on first
    use, inside the event loop). A transaction that holds row locks must never wait for a
    thread behind new requests that wait for those very locks: with one shared set of
    threads, a burst on one hot row would stall until the lock wait timeout."""
    limiter: anyio.CapacityLimiter | None = getattr(request.app.state, "ending_limiter", None)
    if limiter is None:
        settings = request.app.state.settings
        limiter = anyio.CapacityLimiter(
            settings.database_pool_size + settings.database_max_overflow
        )
        request.app.state.ending_limiter = limiter
    return limiter


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One transaction per request: commit when the route succeeds, roll back when it raises.

    Opening and closing a session does no I/O, so that happens on the event loop; only a
    commit or rollback with a transaction to end goes to a worker thread (of its own set,
    see _ending_limiter). A route that ends its own transaction costs no thread hop here.
    """
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    session = factory()
    try:
        yield session
        if session.in_transaction():
            await anyio.to_thread.run_sync(session.commit, limiter=_ending_limiter(request))
    except BaseException:
        if session.in_transaction():
            await anyio.to_thread.run_sync(session.rollback, limiter=_ending_limiter(request))
        raise
    finally:
        session.close()  # normally nothing is left to end: this only drops its state


# scope="function": the commit happens before the response is sent, so a failed commit is
# reported to the caller instead of hiding behind a 200 that was already on the wire.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def retry_lock_conflicts(
    work: Callable[[], T], *, session: Session | None = None, attempts: int = 5
) -> T:
    """Run ``work`` (one short transaction that ends itself); when it is chosen as a deadlock
    victim or waits out a lock, roll back (``session``, if it runs in one) and run it again:
    the database undid all of it."""
    for attempt in range(attempts):
        try:
            return work()
        except OperationalError as exc:
            if session is not None:
                session.rollback()
            code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
            if attempt == attempts - 1 or code not in LOCK_CONFLICT_CODES:
                raise
    raise AssertionError("unreachable")


def update_by_id(
    session: Session, table: Table, columns: tuple[str, ...], rows: Sequence[Mapping[str, Any]]
) -> None:
    """Set ``columns`` of existing rows in one statement (a bulk change's batch): each row
    holds its id, every NOT NULL column and the new values. It is an upsert by id that only
    ever meets the row it names (the caller holds those rows locked): the driver sends the
    rows as one multi-row INSERT ... ON DUPLICATE KEY UPDATE (ON CONFLICT on SQLite), where
    an UPDATE per row would be a statement per row."""
    if rows:
        statement = _update_by_id(table, columns, session.get_bind().dialect.name)
        execute_rows(session, statement, rows)


@functools.cache
def _update_by_id(table: Table, columns: tuple[str, ...], dialect: str) -> Any:
    """Built once per table, columns and dialect (SQLAlchemy then compiles it once)."""
    if dialect in ("mysql", "mariadb"):
        my = mysql.insert(table)
        return my.on_duplicate_key_update({c: my.inserted[c] for c in columns})
    lite = sqlite.insert(table)
    return lite.on_conflict_do_update(
        index_elements=[table.c.id], set_={c: lite.excluded[c] for c in columns}
    )


# PyMySQL's own split of a multi-row INSERT (``Cursor.max_stmt_length``), far under the
# server's max_allowed_packet.
MAX_STATEMENT_BYTES = 1_024_000
_VALUES = re.compile(r"^(.+\sVALUES\s*)(\(\s*%\(\w+\)s\s*(?:,\s*%\(\w+\)s\s*)*\))(.*)$", re.S)
_BIND = re.compile(r"%\((\w+)\)s")
_RAW = {"no_parameters": True}  # the statement goes to the cursor as it is, not %-formatted
_UNSET = object()
_ID_STEP = "shop_consecutive_ids_step"  # in a pooled connection's info
Processor = Callable[[Any], Any]
# What _rows_plan answers: the text before the VALUES tuple, its bound names (numbered,
# each with its bind processor), the text after, and whether ids come from the server.
_Plan = tuple[str, tuple[tuple[int, str, Processor | None], ...], str, bool]


def execute_rows(
    db: Session | Connection,
    statement: Any,
    rows: Sequence[Mapping[str, Any]],
    *,
    answer_later: bool = False,
) -> None:
    """Run an INSERT (or an upsert) once per row, as ``connection.execute(statement, rows)``
    does, in multi-row statements: each row a mapping with the same keys.

    On PyMySQL the statement is written here: SQLAlchemy compiles it once for those keys,
    each value goes through its column type's own bind processing, as SQLAlchemy does, and
    is escaped by the connection, as PyMySQL does, then each row's literal is joined into
    one VALUES list. What that leaves out is the per-row work of both libraries (a
    parameter dict built, processed, escaped and %-formatted again for every row), which
    cost a bulk import more CPU than the database's own work on its rows. Elsewhere (SQLite),
    and where a column the rows leave out has a default computed in Python, it is
    SQLAlchemy's executemany.

    ``answer_later``: on PyMySQL, return once the statements are sent; the server's
    answer is read before the connection's next command (``_PyMySQLConnection.send_query``),
    so the caller's next work runs while the server writes. Its error, if any, is raised
    by that next command (a commit at the latest)."""
    if not rows:
        return
    connection = connection_of(db)
    plan = _plan_for(connection, statement, rows)
    if plan is None:
        connection.execute(statement, list(rows))
        return
    dbapi_connection = connection.connection.dbapi_connection
    if answer_later and not connection.in_transaction():
        connection.begin()  # as executing would (autobegin): the caller commits it
    for sql, _ in _statements(connection, plan, rows):
        if answer_later and isinstance(dbapi_connection, _PyMySQLConnection):
            dbapi_connection.send_query(sql)
        else:
            connection.exec_driver_sql(sql, execution_options=_RAW)


def insert_ids(
    db: Session | Connection, statement: Any, rows: Sequence[Mapping[str, Any]]
) -> list[int] | None:
    """``execute_rows`` of a plain INSERT whose table numbers its rows itself, answering
    the ids the rows got, in their order, where the server is known to give the rows of one
    INSERT consecutive ids: InnoDB's "traditional" and "consecutive" lock modes (MariaDB's
    default; read once per connection), the first being what the statement answers as
    LAST_INSERT_ID() and the step ``auto_increment_increment``. None, having written
    nothing, where it is not (MySQL 8's interleaved mode, SQLite, another shape): the caller
    inserts them its own way (RETURNING, or reading them back by a key)."""
    if not rows:
        return []
    connection = connection_of(db)
    plan = _plan_for(connection, statement, rows)
    step = _consecutive_ids_step(connection) if plan is not None and plan[3] else None
    if plan is None or step is None:
        return None
    ids: list[int] = []
    for sql, count in _statements(connection, plan, rows):
        first = connection.exec_driver_sql(sql, execution_options=_RAW).lastrowid
        ids.extend(range(first, first + count * step, step))
    return ids


def _consecutive_ids_step(connection: Connection) -> int | None:
    """The step between the ids of one multi-row INSERT on this connection, if they are
    consecutive (see ``insert_ids``); None if not."""
    info = connection.connection.info
    if _ID_STEP not in info:
        mode, step = connection.exec_driver_sql(
            "SELECT @@innodb_autoinc_lock_mode, @@auto_increment_increment"
        ).one()
        info[_ID_STEP] = int(step) if int(mode) in (0, 1) else None
    return info[_ID_STEP]


def _plan_for(
    connection: Connection, statement: Any, rows: Sequence[Mapping[str, Any]]
) -> _Plan | None:
    if connection.dialect.driver != "pymysql":
        return None
    return _rows_plan(statement, tuple(rows[0]), connection.dialect)


def _statements(
    connection: Connection, plan: _Plan, rows: Sequence[Mapping[str, Any]]
) -> Iterator[tuple[str, int]]:
    """The statements that write these rows, each with its number of rows."""
    head, columns, tail, _ = plan
    escape = connection.connection.dbapi_connection.escape  # type: ignore[union-attr]
    # A value that is the very object the row before had in that column (a batch's one
    # timestamp, a constant type or status) is written as it was, not processed again.
    last: list[Any] = [_UNSET] * len(columns)
    made: list[str] = [""] * len(columns)
    values: list[str] = []
    size = 0
    for row in rows:
        literals = []
        for i, name, process in columns:
            value = row[name]
            if value is not last[i]:
                last[i] = value
                made[i] = escape(value if process is None else process(value))
            literals.append(made[i])
        literal = f"({','.join(literals)})"
        if values and size + len(literal) > MAX_STATEMENT_BYTES:
            yield head + ",".join(values) + tail, len(values)
            values, size = [], 0
        values.append(literal)
        size += len(literal) + 1
    yield head + ",".join(values) + tail, len(values)


@functools.lru_cache(maxsize=256)  # statements are built once, module-level
def _rows_plan(statement: Any, keys: tuple[str, ...], dialect: Dialect) -> _Plan | None:
    """The statement compiled for rows with ``keys``: the text before and after its VALUES
    tuple, the bound names in that tuple's order, numbered, each with its bind processor,
    and whether it is a plain INSERT of new auto-numbered rows (ids for ``insert_ids``);
    None when it cannot be written row by row here (a default to compute, another shape)."""
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    if compiled.insert_prefetch or compiled.update_prefetch:
        return None
    match = _VALUES.match(compiled.string)
    if match is None:
        return None
    head, template, tail = match.groups()
    names = tuple(_BIND.findall(template))
    if not set(names) <= set(keys) or _BIND.search(head + tail):
        return None
    processors = compiled._bind_processors
    columns = tuple((i, name, processors.get(name)) for i, name in enumerate(names))
    auto = statement.table.autoincrement_column
    plain = head.startswith("INSERT INTO ") and not tail.strip()  # no IGNORE, no upsert
    numbered = plain and auto is not None and auto.key not in keys
    # The compiled text doubles a literal %, for the driver's %-formatting that is skipped.
    return head % (), columns, tail % (), numbered
