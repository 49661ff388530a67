"""Opening an event stream: who may, what it filters, where it resumes, what it sends.

The resume rules, for a client that sends ``Last-Event-ID`` (or ``last_event_id``):
every later event in id order, none twice. The outbox keeps ids from its oldest row on
(the oldest id minus one is the floor: rows may be pruned one day); an id below the floor,
or above the newest id, gets an ``event: reset`` saying so, and the stream goes on live from
the newest event. Without an id the stream starts live, from the newest event.

A resuming client first reads what it missed from the outbox itself, page by page, while the
live feed is ahead of it; once it has caught up it joins the feed, in the same step of the
event loop in which it compares positions, so nothing can be published between the two.
From then on it skips any event at or below its position, so the hand-over neither drops
nor repeats an event.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from common.auth.dependencies import authenticate
from common.auth.security import TokenClaims, decode_access_token
from common.errors import Unauthorized, Unprocessable
from common.query import require_known_ids
from common.settings import CommonSettings
from common.streams import repository
from common.streams.events import (
    CATEGORY,
    HEARTBEAT,
    EventFilter,
    encode,
    retry_hint,
)
from common.streams.feed import EventFeed
from common.streams.tokens import decode_stream_token

TOKEN_ROUTE = "POST /api/v1/events/stream-token"  # noqa: S105 (a route, not a secret)
RESET = "reset"
# A catch-up read that finds nothing where the feed has read events: the rows were pruned
# meanwhile, or the read waited out a lock. After this many, the stream ends (the client
# reconnects and tries again) rather than skip anything.
MAX_EMPTY_CATCH_UP_READS = 3


@dataclass(frozen=True)
class StreamFilters:
    """The filters a route parsed: type patterns and ids by kind (``product``...)."""

    types: Sequence[str] = ()
    ids: dict[str, Sequence[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Opening:
    """A stream ready to start: its filter, the id it starts after, and the reset to send
    first, if its Last-Event-ID could not be honoured."""

    filter: EventFilter
    start: int
    reset: bytes | None = None


def caller_claims(
    *, bearer: str | None, stream_token: str | None, service: str, settings: CommonSettings
) -> TokenClaims:
    """The claims of the stream token in the URL or of the bearer token; 401 otherwise."""
    if stream_token is not None:
        claims = decode_stream_token(stream_token, service, settings)
        if claims is not None:
            return claims
        if decode_access_token(stream_token, settings) is not None:
            raise Unauthorized(
                "An access token is never accepted in a URL: get a stream token from "
                f"{TOKEN_ROUTE} and pass that as stream_token"
            )
        raise Unauthorized(
            f"The stream token is invalid or expired; get a new one from {TOKEN_ROUTE}"
        )
    if bearer:
        claims = decode_access_token(bearer, settings)
        if claims is None:
            raise Unauthorized("Token is invalid or expired; log in again")
        return claims
    raise Unauthorized(
        "Not authenticated: send 'Authorization: Bearer <token>', or stream_token=<a token "
        f"from {TOKEN_ROUTE}>"
    )


def parse_event_id(header: str | None, query: str | None) -> int | None:
    """The id to resume after (the header wins: a browser reconnecting sends its newest)."""
    if header is None:
        return None if query is None else int(query)
    value = header.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise Unprocessable(
            "Last-Event-ID must be the id of an event this stream sent (digits)",
            field="header.Last-Event-ID",
        )
    return int(value)


@dataclass(frozen=True)
class _Checked:
    categories: set[int]
    bounds: tuple[int | None, int]


def _check(
    sessions: sessionmaker[Session],
    claims: TokenClaims,
    filters: StreamFilters,
    table: repository.Table,
) -> _Checked:
    """The user (active, token version, not logged out), the filter ids, the outbox bounds:
    one short transaction at connect."""
    with sessions() as session:
        try:
            authenticate(session, claims)
            connection = session.connection()
            for kind, ids in filters.ids.items():
                require_known_ids(connection, repository.MODELS[kind], ids, kind)
            categories = repository.category_subtree(connection, filters.ids.get(CATEGORY, ()))
            return _Checked(categories, repository.bounds(connection, table))
        finally:
            session.rollback()


async def open_stream(
    *,
    feed: EventFeed,
    sessions: sessionmaker[Session],
    claims: TokenClaims,
    filters: StreamFilters,
    after: int | None,
) -> Opening:
    """Check the caller and the filters, start the feed, and settle where the stream starts
    (errors here are ordinary HTTP answers: nothing is streamed yet)."""
    feed.admit()
    checked = await asyncio.to_thread(_check, sessions, claims, filters, feed.table)
    feed.admit()
    await feed.ready()
    ids = {kind: frozenset(v) for kind, v in filters.ids.items()}
    if checked.categories:
        ids[CATEGORY] = frozenset(checked.categories)
    event_filter = EventFilter.of(filters.types, **ids)
    if after is None:
        return Opening(event_filter, feed.position)
    oldest, newest = checked.bounds
    floor = newest if oldest is None else oldest - 1
    if floor <= after <= newest:
        return Opening(event_filter, after)
    expired = after < floor
    detail = (
        f"Event {after} is older than the oldest event kept ({oldest}): events in between "
        "may have been missed. Reload the state, then follow the stream from here"
        if expired
        else f"Event {after} is unknown (the newest is {newest}). Reload the state, then "
        "follow the stream from here"
    )
    reset = encode(
        event=RESET,
        id_=feed.position,
        data={
            "reason": "last_event_id_expired" if expired else "last_event_id_unknown",
            "detail": detail,
            "last_event_id": after,
            "oldest_id": oldest,
            "newest_id": feed.position,
        },
    )
    return Opening(event_filter, feed.position, reset)


async def messages(
    *,
    feed: EventFeed,
    opening: Opening,
    derived_key: Hashable | None = None,
) -> AsyncIterator[bytes]:
    """The stream's bytes: the retry hint, a reset if any, what the client missed (from the
    outbox), then the live feed, with a heartbeat after each quiet ``stream_heartbeat_seconds``.
    Ends when the feed lets go of the client (too slow, or the process stopping)."""
    settings = feed.settings
    heartbeat = settings.stream_heartbeat_seconds
    event_filter = opening.filter
    position = opening.start
    feed.clients += 1
    try:
        yield retry_hint(settings.stream_retry_ms)
        if opening.reset is not None:
            yield opening.reset
        empty_reads = 0
        while position < feed.position:
            if feed.closing:
                return
            events = await feed.read_page(position)
            if not events:
                empty_reads += 1
                if empty_reads >= MAX_EMPTY_CATCH_UP_READS:
                    return
                await asyncio.sleep(settings.stream_poll_seconds)
                continue
            position = events[-1].id
            chunk = b"".join(e.wire for e in events if event_filter.matches(e))
            if chunk:
                yield chunk
        subscription = feed.subscribe(derived_key)  # position >= the feed's: no gap
        try:
            if derived_key is not None:
                figure = await feed.derived_now(derived_key)
                if figure:
                    yield figure
            subscription.heartbeat_due = time.monotonic() + heartbeat
            while True:
                batches = await subscription.take()
                if subscription.ended is not None:
                    return
                parts: list[bytes] = []
                for batch in batches or ():
                    if derived_key is not None and derived_key in batch.derived:
                        parts.append(batch.derived[derived_key])  # (of the events before)
                    if batch.events and batch.events[0].id > position:  # all of it is new
                        parts.append(batch.wire_for(event_filter))
                    else:
                        parts.extend(
                            e.wire
                            for e in batch.events
                            if e.id > position and event_filter.matches(e)
                        )
                    position = max(position, batch.last_id)
                if not parts and time.monotonic() >= subscription.heartbeat_due:
                    parts.append(HEARTBEAT)
                if parts:
                    yield b"".join(parts)
                    subscription.heartbeat_due = time.monotonic() + heartbeat
        finally:
            feed.unsubscribe(subscription)
    finally:
        feed.clients -= 1
