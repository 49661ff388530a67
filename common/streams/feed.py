"""One live feed of one outbox per process, fanned out to that process's stream clients.

A single poller task reads the outbox's new rows every ``stream_poll_seconds``
(common.outbox.read_after, and GapGuard for the ids it cannot see yet), encodes each event
once, and hands the batch to every connected client's bounded queue. Clients never read the
outbox for live events; a client resuming from an older id reads what it missed from the
outbox itself and then joins the feed (see common.streams.service), so nothing a client
receives depends on what this process remembers: another replica, or this one after a
restart, serves the same ids.

A client whose queue holds more than ``stream_client_buffer_events`` unsent events is
dropped from the feed and its stream ends; it reconnects with Last-Event-ID and catches up
from the outbox instead of this process buffering without bound.

The poller starts with the first client (a process nobody watches reads nothing) and stops
with the app.
"""

import asyncio
import contextlib
import functools
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from sqlalchemy import Engine, Table

from common.errors import UpstreamUnavailable
from common.settings import CommonSettings
from common.streams import repository
from common.streams.events import EventFilter, StreamEvent

logger = logging.getLogger(__name__)
BATCH = 500  # events per read; a fuller backlog is read again at once
GAP_RECHECK_SECONDS = 0.05
WAKE_AT_ONCE = 20  # streams woken per turn of the event loop (see EventFeed._publish)
RETRY_AFTER_FAILURE_SECONDS = 2.0


@dataclass(frozen=True)
class Derived:
    """A message derived from the events (not an event: it carries no id), and until when it
    holds without any new event (e.g. "today" ends at midnight)."""

    message: bytes
    valid_until: float = float("inf")  # time.time()


class Derivation(Protocol):
    """Figures derived from the events, kept current per key (sales_service: today so far,
    per timezone and filter). ``compute`` reads the database: it runs in a worker thread."""

    def affected(self, key: Any, events: Sequence[StreamEvent]) -> bool: ...

    def compute(self, key: Any) -> Derived: ...


@dataclass(frozen=True)
class Batch:
    """Events read together (in id order), and the figures derived from the events before
    them; ``last_id`` is the last id read, which moves a client's position even when none
    of the events match."""

    events: Sequence[StreamEvent]
    last_id: int
    derived: Mapping[Hashable, bytes] = field(default_factory=dict)

    @functools.cached_property
    def _by_filter(self) -> dict[EventFilter, bytes]:
        return {}

    def wire_for(self, event_filter: EventFilter) -> bytes:
        """The messages of the events that pass the filter, joined once for all the clients
        that share it (most follow everything, or the same few types)."""
        found = self._by_filter.get(event_filter)
        if found is None:
            found = b"".join(e.wire for e in self.events if event_filter.matches(e))
            self._by_filter[event_filter] = found
        return found


class Subscription:
    """One client's place in the feed: the batches not sent to it yet, at most ``limit``
    events' worth."""

    def __init__(self, key: Hashable | None, start: int, limit: int) -> None:
        self.key = key
        self.start = start  # the feed's position when it joined: later batches reach it
        self.limit = limit
        self.ended: str | None = None  # why the feed let go of it: "overflow", "shutdown"
        # When its stream owes the client a heartbeat (time.monotonic()): the feed's ticker
        # wakes it then, so no stream keeps a timer of its own.
        self.heartbeat_due = float("inf")
        self._pending: deque[Batch] = deque()
        self._count = 0
        self._wake = asyncio.Event()

    def push(self, batch: Batch) -> bool:
        """Queue a batch; False (and the queue dropped) when that passes the limit (a client
        with nothing pending takes any one batch)."""
        if self._count and self._count + len(batch.events) > self.limit:
            self.end("overflow")
            return False
        self._pending.append(batch)
        self._count += len(batch.events)
        self._wake.set()
        return True

    def end(self, reason: str) -> None:
        self.ended = reason
        self._pending.clear()
        self._count = 0
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def take(self) -> list[Batch] | None:
        """Every batch queued, waiting for one; None when woken without one (a heartbeat is
        due, or the feed let go of it: see ``ended``)."""
        if not self._pending and self.ended is None:
            await self._wake.wait()
        self._wake.clear()
        if self.ended is not None or not self._pending:
            return None
        batches = list(self._pending)
        self._pending.clear()
        self._count = 0
        return batches


class GapGuard:
    """How many of the events read may be handed on without passing over one that has yet
    to appear.

    common.outbox.read_after's locking read waits for a row inserted and not committed yet,
    but not for an id the database has given out and not yet inserted: between the two, a
    later id can commit and be read, and the earlier one lands below the reader's position.
    On MariaDB with a dozen concurrent writers on two cores that happens to a few ids in a
    thousand, and they appear within ~100 ms. So a gap in the ids holds back the events
    after it until it fills, or for ``grace`` seconds (an id whose transaction rolled back
    never appears: after that the gap is taken as final).
    """

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._gap: tuple[int, int, float] | None = None  # first and last missing id, since

    @property
    def waiting(self) -> bool:
        return self._gap is not None

    def settled(self, position: int, ids: Sequence[int], now: float) -> int:
        """How many of ``ids`` (read after ``position``, in order) to hand on now."""
        expected = position + 1
        for count, id_ in enumerate(ids):
            if id_ > expected:  # expected .. id_ - 1 are missing
                since = now
                if self._gap is not None and self._gap[0] <= expected <= self._gap[1]:
                    since = self._gap[2]  # missing since the gap was first seen
                if now - since < self.grace:
                    self._gap = (expected, id_ - 1, since)
                    return count
                logger.warning("outbox ids %d-%d never appeared; passed over", expected, id_ - 1)
            self._gap = None
            expected = id_ + 1
        return len(ids)


@dataclass
class _Cached:
    derived: Derived
    position: int  # every event up to here was committed before it was computed
    computed_at: float  # time.monotonic() when its computation began
    dirty: bool = False  # events since may have changed it: recompute when it is due


class EventFeed:
    """The live feed of one outbox in this process (see the module)."""

    def __init__(
        self,
        *,
        service: str,
        engine: Engine,
        table: Table,
        settings: CommonSettings,
        derivation: Derivation | None = None,
    ) -> None:
        self.service = service  # whose stream tokens it takes (common.streams.tokens)
        self.engine = engine
        self.table = table
        self.settings = settings
        self.derivation = derivation
        self.position = 0  # the last id read and handed to subscribers
        self.clients = 0  # connected streams, catching up or live
        self.closing = False
        self._subscribers: set[Subscription] = set()
        self._cache: dict[Hashable, _Cached] = {}
        self._derived_next: dict[Hashable, bytes] = {}  # computed, to send at the next poll
        self._task: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._gaps = GapGuard(settings.stream_gap_grace_seconds)
        self._settled = asyncio.Event()

    # --- clients --------------------------------------------------------------------------

    def admit(self) -> None:
        """Refuse (503) a new stream while stopping or at the process's limit; a stream
        counts itself in ``clients`` while it runs (common.streams.service.messages)."""
        if self.closing:
            raise UpstreamUnavailable("This process is shutting down; reconnect (to another)")
        if self.clients >= self.settings.stream_max_clients:
            raise UpstreamUnavailable(
                f"This process serves its limit of {self.settings.stream_max_clients} event "
                "streams; retry shortly (another replica may have room)",
                limit=self.settings.stream_max_clients,
            )

    async def ready(self, within: float = 10.0) -> None:
        """Start the poller if it is not running, and wait until it knows where it starts."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"{self.table.name} feed")
            self._ticker = asyncio.create_task(self._tick(), name=f"{self.table.name} ticker")
        try:
            await asyncio.wait_for(self._settled.wait(), within)
        except TimeoutError:
            raise UpstreamUnavailable("The event feed cannot read the database") from None

    def subscribe(self, key: Hashable | None = None) -> Subscription:
        """Join the live feed at its current position (no await: nothing can pass between
        reading the position and joining)."""
        subscription = Subscription(key, self.position, self.settings.stream_client_buffer_events)
        if self.closing:
            subscription.end("shutdown")
        else:
            self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)
        if subscription.key is not None and not any(
            s.key == subscription.key for s in self._subscribers
        ):
            self._cache.pop(subscription.key, None)

    async def read_page(self, after: int) -> list[StreamEvent]:
        """Events after ``after``, up to the feed's position, from the outbox itself (a
        resuming client's catch-up: the feed has settled every gap below its position)."""
        return await asyncio.to_thread(self._read, after, self.position)

    async def derived_now(self, key: Hashable) -> bytes | None:
        """The current derived message of ``key`` (kept current while it has subscribers)."""
        if self.derivation is None:
            return None
        cached = self._cache.get(key)
        if cached is not None and cached.derived.valid_until > time.time():
            return cached.derived.message
        position, began = self.position, time.monotonic()
        try:
            derived = await asyncio.to_thread(self.derivation.compute, key)
        except Exception:  # the stream goes on; the figures come with the next batch
            logger.exception("derived figures of %s failed", self.table.name)
            return None
        self._remember(key, derived, position, began)
        return derived.message

    # --- the poller -----------------------------------------------------------------------

    def _read(self, after: int, up_to: int | None = None) -> list[StreamEvent]:
        with self.engine.connect() as connection:
            try:
                return repository.read_events(
                    connection, self.table, after, limit=BATCH, up_to=up_to
                )
            finally:
                connection.rollback()  # ends the locking read's transaction at once

    def _start(self) -> tuple[int, int]:
        with self.engine.connect() as connection:
            try:
                start = repository.start_position(connection, self.table)
                return start, repository.auto_increment_step(connection)
            finally:
                connection.rollback()

    async def _run(self) -> None:
        while True:
            try:
                self.position, step = await asyncio.to_thread(self._start)
                break
            except Exception:
                logger.exception("event feed of %s cannot start; retrying", self.table.name)
                await asyncio.sleep(RETRY_AFTER_FAILURE_SECONDS)
        sqlite = self.engine.dialect.name == "sqlite"  # ids given out in commit order
        if sqlite or step != 1:
            # Nothing to wait for on SQLite; where a cluster gives out ids in steps, a gap
            # says nothing: both read as common.outbox.read_after alone does.
            self._gaps = GapGuard(0.0)
        self._settled.set()
        while True:
            try:
                published = await self.poll_once()
            except Exception:
                logger.exception("event feed of %s failed; retrying", self.table.name)
                await asyncio.sleep(RETRY_AFTER_FAILURE_SECONDS)
                continue
            if self._gaps.waiting:  # look again soon: a gap fills within milliseconds
                await asyncio.sleep(min(GAP_RECHECK_SECONDS, self.settings.stream_poll_seconds))
            elif published < BATCH:
                await asyncio.sleep(self.settings.stream_poll_seconds)

    async def _tick(self) -> None:
        """Wake the streams that owe their client a heartbeat (one timer for all of them)."""
        every = min(1.0, self.settings.stream_heartbeat_seconds / 4)
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            for subscription in self._subscribers:
                if subscription.heartbeat_due <= now:
                    subscription.wake()

    async def poll_once(self) -> int:
        """Read what is new, hand what is settled to every subscriber, then bring derived
        figures up to date; the number of events handed on."""
        read = await asyncio.to_thread(self._read, self.position)
        settled = self._gaps.settled(self.position, [e.id for e in read], time.monotonic())
        events = read[:settled]
        # The figures computed after the last poll go with these events (one write to each
        # client), or alone if there are none; no event waits for a computation.
        derived, self._derived_next = self._derived_next, {}
        if events:
            self.position = events[-1].id
            await self._publish(Batch(events, self.position, derived))
        elif derived:
            await self._publish(Batch((), self.position, derived), keys=lambda key: key in derived)
        self._derived_next = await self._derive(events)
        return len(events)

    async def _publish(
        self, batch: Batch, keys: Callable[[Hashable | None], bool] | None = None
    ) -> None:
        """Hand the batch to the subscribers (of these keys), a few at a time: each one woken
        writes to its client in the next turn of the event loop, and requests waiting for
        that loop (a sale's answer) get their turn between the groups, not after them all."""
        for n, subscription in enumerate(list(self._subscribers)):
            if keys is not None and not keys(subscription.key):
                continue
            if not subscription.push(batch):
                logger.info("event stream too slow for %s: disconnected", self.table.name)
                self.unsubscribe(subscription)
            if n % WAKE_AT_ONCE == WAKE_AT_ONCE - 1:
                await asyncio.sleep(0)

    async def _derive(self, events: Sequence[StreamEvent]) -> dict[Hashable, bytes]:
        """Recompute the derived figures the new events change, or whose time ran out, for
        the keys some subscriber wants: once per key, however many subscribers share it, and
        at most once every ``stream_today_seconds`` (the figures wait, never the events)."""
        derivation = self.derivation
        if derivation is None:
            return {}
        now, began = time.time(), time.monotonic()
        every = self.settings.stream_today_seconds
        stale = []
        for key in {s.key for s in self._subscribers if s.key is not None}:
            cached = self._cache.get(key)
            if cached is None or cached.derived.valid_until <= now:
                stale.append(key)
                continue
            if events and not cached.dirty and derivation.affected(key, events):
                cached.dirty = True
            if cached.dirty and began - cached.computed_at >= every:
                stale.append(key)
        if not stale:
            return {}
        position = self.position

        def compute() -> dict[Hashable, Derived]:
            return {key: derivation.compute(key) for key in stale}

        try:
            fresh = await asyncio.to_thread(compute)
        except Exception:  # the events go out all the same; the figures at the next batch
            logger.exception("derived figures of %s failed", self.table.name)
            return {}
        for key, derived in fresh.items():
            self._remember(key, derived, position, began)
        return {key: derived.message for key, derived in fresh.items()}

    def _remember(self, key: Hashable, derived: Derived, position: int, began: float) -> None:
        """Keep the newest of two figures computed concurrently (the later position); one
        computed while later events were handed on may have missed them: dirty."""
        cached = self._cache.get(key)
        if cached is None or cached.position <= position:
            self._cache[key] = _Cached(derived, position, began, self.position > position)

    # --- stopping -------------------------------------------------------------------------

    def shutdown(self) -> None:
        """End every stream (their clients reconnect, to another replica) and take no more."""
        self.closing = True
        for subscription in list(self._subscribers):
            subscription.end("shutdown")
        self._subscribers.clear()

    async def close(self) -> None:
        """Stop the poller (the app's shutdown)."""
        self.shutdown()
        for task in (self._task, self._ticker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._ticker = None


def end_streams_on_exit_signal(feed: EventFeed) -> None:
    """On SIGTERM/SIGINT, end the feed's streams before the server waits for open responses.

    uvicorn's graceful shutdown waits for every response to finish before it runs the app's
    shutdown, and an event stream never finishes by itself: without this, a stopping
    process would hang until killed. Chains to the handler uvicorn installed (call it from
    the lifespan's startup, in the server's main thread; elsewhere, e.g. a test client's
    thread, it does nothing).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)

        def handler(sig: int, frame: FrameType | None, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(feed.shutdown)
            if callable(previous):
                previous(sig, frame)
            else:  # the default action (or none): as if this handler had not been here
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
                signal.raise_signal(sig)

        signal.signal(signum, handler)


def attach_feed(
    app: Any,
    *,
    service: str,
    table: Table,
    settings: CommonSettings,
    derivation: Derivation | None = None,
) -> EventFeed:
    """The app's feed of its outbox (``app.state.event_feed``); call it in the lifespan's
    startup and ``await feed.close()`` at its end. Its poller starts with the first stream."""
    feed = EventFeed(
        service=service,
        engine=app.state.engine,
        table=table,
        settings=settings,
        derivation=derivation,
    )
    app.state.event_feed = feed
    end_streams_on_exit_signal(feed)
    return feed
