"""Live event streams (Server-Sent Events) on both services, against real uvicorn servers.

The servers of this module send a heartbeat after half a second of quiet: a quiet stream is
seen to stay open, and a client reading one notices soon that it was told to stop.
"""

import asyncio
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, delete, func, insert, select, update

from common import outbox
from common.auth.security import create_access_token
from common.models import RevokedToken, Role, User
from common.settings import ProductsSettings
from common.streams.feed import EventFeed, GapGuard
from common.streams.tokens import create_stream_token
from tests.conftest import LiveServer, sales_env, service_env
from tests.products_service.factories import main_warehouse_id
from tests.sales_service.conftest import create_channel

API = "/api/v1"
STREAM = f"{API}/events/stream"
HEARTBEAT = "0.5"
GAP_GRACE = "3"  # stream_sales: long enough to see a gap held (the default is 1 s)
SEEN_WITHIN = 10.0  # seconds: generous, for a loaded CI machine (the feed polls every 0.5 s)

Headers = dict[str, str]


# --- an SSE client ----------------------------------------------------------------------


@dataclass
class Message:
    """One SSE message as a client parses it (comments and retry hints included)."""

    event: str | None = None
    id: str | None = None
    data: str | None = None
    comment: str | None = None
    retry: int | None = None
    at: float = 0.0

    def json(self) -> Any:
        assert self.data is not None
        return json.loads(self.data)


@dataclass
class SseClient:
    """Reads one stream in a thread of its own and keeps every message, for tests to wait on.

    The thread looks at its stop flag after each line, so close() returns within about one
    heartbeat."""

    url: str
    params: dict[str, Any] | list[tuple[str, Any]] | None = None
    headers: Headers | None = None
    status: int | None = None
    response_headers: httpx.Headers | None = None
    body: bytes = b""
    messages: list[Message] = field(default_factory=list)
    ended: bool = False
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self._opened.wait(20), "the stream did not answer"

    def _read(self) -> None:
        try:
            with httpx.stream(
                "GET",
                self.url,
                params=self.params,
                headers=self.headers,
                timeout=httpx.Timeout(10, read=30),
            ) as response:
                self.status = response.status_code
                self.response_headers = response.headers
                if response.status_code != 200:
                    self.body = response.read()
                    return
                self._opened.set()
                current = Message()
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line == "":
                        current.at = time.monotonic()
                        with self._changed:
                            self.messages.append(current)
                            self._changed.notify_all()
                        current = Message()
                        continue
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "":
                        current.comment = value
                    elif name == "retry":
                        current.retry = int(value)
                    elif name == "data":
                        current.data = value if current.data is None else f"{current.data}\n{value}"
                    elif name in ("event", "id"):
                        setattr(current, name, value)
        except BaseException as exc:
            self.error = exc
        finally:
            self.ended = True
            self._opened.set()
            with self._changed:
                self._changed.notify_all()

    def wait_for(
        self, done: Callable[[list[Message]], bool], within: float = SEEN_WITHIN
    ) -> list[Message]:
        """Every message so far, once ``done`` holds of them (fails after ``within`` s)."""
        deadline = time.monotonic() + within
        with self._changed:
            while not done(self.messages):
                left = deadline - time.monotonic()
                if left <= 0 or self.ended:
                    break
                self._changed.wait(left)
            messages = list(self.messages)
        assert done(messages), f"not seen within {within}s: {[m.event for m in messages]}"
        return messages

    def events(self, type_prefix: str = "") -> list[Message]:
        with self._changed:
            return [
                m
                for m in self.messages
                if m.event is not None and m.event.startswith(type_prefix) and m.data is not None
            ]

    def caught_up(self) -> list[Message]:
        """Everything up to the first heartbeat: pings come only once a stream is live, so
        every event it missed (up to when it joined the live feed) is in."""
        return self.wait_for(lambda ms: any(m.comment == "ping" for m in ms))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> "SseClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ids(messages: list[Message], type_prefix: str = "") -> list[int]:
    return [
        int(m.id)
        for m in messages
        if m.id is not None and m.event is not None and m.event.startswith(type_prefix)
    ]


def sale_ids(messages: list[Message]) -> list[int]:
    return [m.json()["payload"]["sale_id"] for m in messages if m.event == "sale.recorded"]


# --- servers and data -------------------------------------------------------------------


@pytest.fixture(scope="module")
def stream_products(settings: ProductsSettings, users: dict[Role, User]) -> Iterator[LiveServer]:
    server = LiveServer(
        "products_service.main:app",
        service_env(settings, SHOP_STREAM_HEARTBEAT_SECONDS=HEARTBEAT),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stream_sales(
    settings: ProductsSettings, stream_products: LiveServer, users: dict[Role, User]
) -> Iterator[LiveServer]:
    server = LiveServer(
        "sales_service.main:app",
        sales_env(
            settings,
            stream_products.url,
            SHOP_STREAM_HEARTBEAT_SECONDS=HEARTBEAT,
            SHOP_STREAM_GAP_GRACE_SECONDS=GAP_GRACE,
        ),
    )
    server.start()
    yield server
    server.stop()


def api(server: LiveServer, headers: Headers) -> httpx.Client:
    return httpx.Client(base_url=server.url + API, headers=headers, timeout=30)


def post(client: httpx.Client, path: str, body: dict[str, Any]) -> Any:
    answer = client.post(path, json=body)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def newest_id(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return outbox.max_id(connection, table)


def read_past(server: LiveServer, headers: Headers, after: int, last: int) -> list[Message]:
    """The events after ``after`` up to ``last``, once the server's feed has read past
    ``last`` (an unfiltered stream got it): from then on a stream resuming after ``after``
    catches up on all of them before its first heartbeat, however long a gap in newer ids
    holds the live feed back (see GapGuard)."""
    resume = {**headers, "Last-Event-ID": str(after)}
    with SseClient(server.url + STREAM, headers=resume) as stream:
        messages = stream.wait_for(lambda ms: last in ids(ms))
    return [m for m in messages if m.id is not None and after < int(m.id) <= last]


def floor(engine: Engine, table: Any) -> int:
    """The oldest id kept minus one: resuming after it replays every event kept."""
    with engine.connect() as connection:
        oldest = connection.execute(select(func.min(table.c.id))).scalar_one()
    assert oldest is not None, "no event yet"
    return int(oldest) - 1


def outbox_ids(engine: Engine, table: Any, after: int, types: str = "") -> list[int]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(table.c.id, table.c.type).where(table.c.id > after).order_by(table.c.id)
        )
        return [row.id for row in rows if row.type.startswith(types)]


@dataclass
class Shop:
    """A product with stock in MAIN and a channel to sell it through."""

    product_id: int
    warehouse_id: int
    channel_id: int


@pytest.fixture
def shop(stream_products: LiveServer, engine: Engine, manager_headers: Headers) -> Shop:
    with api(stream_products, manager_headers) as products:
        product = post(
            products,
            "/products",
            {"sku": "LIVE-1", "name": "Live mug", "price": "12.50", "cost_price": "4.10"},
        )
        warehouse_id = main_warehouse_id(engine)
        receipt = {"product_id": product["id"], "warehouse_id": warehouse_id, "quantity": 10_000}
        post(products, "/inventory/receipts", receipt)
    return Shop(product["id"], warehouse_id, create_channel(engine, "live-web"))


def record_sale(sales: httpx.Client, shop: Shop, quantity: int = 1, **extra: Any) -> Any:
    line = {"product_id": shop.product_id, "quantity": quantity}
    body = {"channel_id": shop.channel_id, "lines": [line], **extra}
    answer = sales.post("/sales", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert answer.status_code == 201, answer.text
    return answer.json()


def stream_token(server: LiveServer, headers: Headers) -> dict[str, Any]:
    answer = httpx.post(f"{server.url}{API}/events/stream-token", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def refused(server: LiveServer, **request: Any) -> dict[str, Any]:
    """The JSON error a stream request is answered with (it must not be a stream)."""
    answer = httpx.get(f"{server.url}{STREAM}", timeout=10, **request)
    assert answer.status_code != 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = answer.json()
    return {"status": answer.status_code, **body}


# --- authentication ---------------------------------------------------------------------


def test_a_stream_token_opens_the_stream_of_its_service_and_nothing_else(
    stream_products: LiveServer,
    stream_sales: LiveServer,
    viewer_headers: Headers,
) -> None:
    issued = stream_token(stream_products, viewer_headers)  # any signed-in role may
    assert issued["token_type"] == "stream"
    assert issued["expires_in"] == 60
    assert issued["stream_url"] == f"{STREAM}?stream_token={issued['stream_token']}"

    with SseClient(stream_products.url + issued["stream_url"]) as stream:
        assert stream.status == 200
        assert stream.response_headers is not None
        assert stream.response_headers["content-type"].startswith("text/event-stream")
        assert stream.response_headers["cache-control"] == "no-cache"
        assert stream.response_headers["x-accel-buffering"] == "no"
        first = stream.wait_for(lambda ms: len(ms) >= 1)[0]
        assert first.retry == 3000 and first.data is None

    token = issued["stream_token"]
    # No access token: not as a bearer on any route, the stream's own included...
    for path in (f"{API}/auth/me", STREAM):
        answer = httpx.get(
            stream_products.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert answer.status_code == 401, path
    # ...and not on the other service's stream.
    body = refused(stream_sales, params={"stream_token": token})
    assert body["status"] == 401 and "stream token" in body["detail"]

    # The bearer header opens a stream too, for clients that can send it.
    with SseClient(stream_sales.url + STREAM, headers=viewer_headers) as stream:
        assert stream.status == 200


def test_a_stream_is_refused_without_a_token_with_an_expired_one_or_an_access_token_in_the_url(
    stream_products: LiveServer, settings: ProductsSettings, users: dict[Role, User]
) -> None:
    assert refused(stream_products)["status"] == 401
    assert refused(stream_products, params={"stream_token": "not.a.token"})["status"] == 401

    access, claims = create_access_token(
        user_id=users[Role.VIEWER].id, role=Role.VIEWER, settings=settings
    )
    body = refused(stream_products, params={"stream_token": access})
    assert body["status"] == 401
    assert "never accepted in a URL" in body["detail"]

    brief = settings.model_copy(update={"stream_token_seconds": 1})
    expired = create_stream_token(claims=claims, service="products_service", settings=brief)
    time.sleep(2.1)
    body = refused(stream_products, params={"stream_token": expired.token})
    assert body["status"] == 401 and "expired" in body["detail"]


def test_a_stream_token_of_a_revoked_user_or_a_logged_out_session_opens_nothing(
    stream_products: LiveServer, engine: Engine, settings: ProductsSettings
) -> None:
    with engine.begin() as connection:
        viewer = connection.execute(
            select(User.id, User.role, User.token_version).where(User.role == Role.VIEWER)
        ).first()
    assert viewer is not None
    access, claims = create_access_token(
        user_id=viewer.id, role=viewer.role, settings=settings, version=viewer.token_version
    )
    token = stream_token(stream_products, {"Authorization": f"Bearer {access}"})["stream_token"]
    with SseClient(stream_products.url + STREAM, params={"stream_token": token}) as stream:
        assert stream.status == 200

    try:  # a password change, deactivation or demotion bumps the version: revoked
        with engine.begin() as connection:
            connection.execute(
                update(User)
                .where(User.id == viewer.id)
                .values(token_version=User.token_version + 1)
            )
        body = refused(stream_products, params={"stream_token": token})
        assert body["status"] == 401 and "revoked" in body["detail"]
    finally:
        with engine.begin() as connection:
            connection.execute(
                update(User).where(User.id == viewer.id).values(token_version=viewer.token_version)
            )

    with engine.begin() as connection:  # the session it came from logged out
        connection.execute(
            insert(RevokedToken).values(jti=claims.jti, expires_at=claims.expires_at)
        )
    try:
        body = refused(stream_products, params={"stream_token": token})
        assert body["status"] == 401 and "logout" in body["detail"]
    finally:
        with engine.begin() as connection:
            connection.execute(delete(RevokedToken).where(RevokedToken.jti == claims.jti))


# --- live and resumed ---------------------------------------------------------------------


def test_a_client_sees_a_sale_recorded_through_the_api_within_seconds(
    stream_sales: LiveServer, shop: Shop, manager_headers: Headers
) -> None:
    token = stream_token(stream_sales, manager_headers)["stream_token"]
    with SseClient(stream_sales.url + STREAM, params={"stream_token": token}) as stream:
        # At connect: today's figures so far (nothing sold yet).
        today = stream.wait_for(lambda ms: any(m.event == "sales.today" for m in ms))[-1]
        assert today.id is None
        assert today.json()["orders"] == 0 and today.json()["revenue"] == "0.00"

        with api(stream_sales, manager_headers) as sales:
            started = time.monotonic()
            sale = record_sale(sales, shop, quantity=2)
            answered = time.monotonic()

        def has_sale(ms: list[Message]) -> bool:
            return any(
                m.event == "sale.recorded" and m.json()["payload"]["sale_id"] == sale["id"]
                for m in ms
            )

        messages = stream.wait_for(has_sale)
        event = next(m for m in messages if m.event == "sale.recorded")
        assert event.at - answered < SEEN_WITHIN, f"{event.at - started:.2f}s after the sale"
        body = event.json()
        assert body["id"] == int(event.id or 0) and body["type"] == "sale.recorded"
        assert body["subject_id"] == sale["id"]
        assert body["payload"]["total"] == "25.00"
        assert body["payload"]["channel_id"] == shop.channel_id

        # ...followed by today's figures with it.
        after = stream.wait_for(
            lambda ms: any(m.event == "sales.today" and m.json()["orders"] == 1 for m in ms)
        )
        figures = next(m for m in after if m.event == "sales.today" and m.json()["orders"] == 1)
        assert figures.at >= event.at
        assert figures.json()["revenue"] == "25.00"
        assert figures.json()["units"] == 2
        assert figures.json()["timezone"] == "UTC"


def test_reconnecting_with_last_event_id_gets_exactly_the_events_missed_in_order(
    stream_sales: LiveServer, shop: Shop, manager_headers: Headers, engine: Engine
) -> None:
    with api(stream_sales, manager_headers) as sales:
        with SseClient(
            stream_sales.url + STREAM, params={"type": "sale."}, headers=manager_headers
        ) as stream:
            record_sale(sales, shop)
            last_seen = ids(stream.wait_for(lambda ms: len(ids(ms)) == 1))[-1]

        # 100 events while disconnected...
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: record_sale(sales, shop), range(100)))
        missed = outbox_ids(engine, outbox.SALES_OUTBOX, last_seen)
        assert len(missed) == 100

        # ...then reconnect while more sales land, across the hand-over to the live feed.
        with ThreadPoolExecutor(4) as pool:
            during = [pool.submit(record_sale, sales, shop) for _ in range(20)]
            with SseClient(
                stream_sales.url + STREAM,
                params={"type": "sale."},
                headers={**manager_headers, "Last-Event-ID": str(last_seen)},
            ) as resumed:
                for future in during:
                    future.result()
                expected = outbox_ids(engine, outbox.SALES_OUTBOX, last_seen)
                assert len(expected) == 120
                got = ids(resumed.wait_for(lambda ms: len(ids(ms)) >= 120))
                time.sleep(1.5)  # a duplicate would come with the next batches
                got = ids(resumed.messages)
    assert got[:100] == missed
    assert got == expected  # in order, none twice, none missing


def test_last_event_id_in_the_query_resumes_too_and_the_header_wins(
    stream_sales: LiveServer, shop: Shop, manager_headers: Headers, engine: Engine
) -> None:
    with api(stream_sales, manager_headers) as sales:
        for _ in range(3):
            record_sale(sales, shop)
    first, second, third = outbox_ids(engine, outbox.SALES_OUTBOX, 0)[-3:]
    read_past(stream_sales, manager_headers, first, third)
    with SseClient(
        stream_sales.url + STREAM,
        params={"last_event_id": str(first), "type": "sale."},
        headers=manager_headers,
    ) as stream:
        assert ids(stream.caught_up()) == [second, third]
    with SseClient(
        stream_sales.url + STREAM,
        params={"last_event_id": str(first), "type": "sale."},
        headers={**manager_headers, "Last-Event-ID": str(second)},
    ) as stream:
        assert ids(stream.caught_up()) == [third]


def test_an_unknown_or_pruned_last_event_id_gets_a_reset_then_the_live_stream(
    stream_sales: LiveServer, shop: Shop, manager_headers: Headers, engine: Engine
) -> None:
    with api(stream_sales, manager_headers) as sales:
        for _ in range(4):
            record_sale(sales, shop)
        kept = outbox_ids(engine, outbox.SALES_OUTBOX, 0)
        newest = kept[-1]

        future = {**manager_headers, "Last-Event-ID": str(newest + 1000)}
        with SseClient(stream_sales.url + STREAM, headers=future) as stream:
            reset = stream.wait_for(lambda ms: any(m.event == "reset" for m in ms))[1]
            assert reset.event == "reset"  # right after the retry hint
            assert reset.json()["reason"] == "last_event_id_unknown"
            assert reset.json()["newest_id"] == int(reset.id or 0) <= newest  # goes on from here
            sale = record_sale(sales, shop)
            live = stream.wait_for(lambda ms: sale["id"] in sale_ids(ms))
            after_reset = ids(live, "sale.")
            assert after_reset == sorted(set(after_reset)) and min(after_reset) > int(reset.id or 0)

        # Rows pruned: the oldest id kept minus one is the floor.
        with engine.begin() as connection:
            table = outbox.SALES_OUTBOX
            connection.execute(delete(table).where(table.c.id <= kept[1]))
        old = {**manager_headers, "Last-Event-ID": str(kept[1] - 1)}
        with SseClient(stream_sales.url + STREAM, params={"type": "sale."}, headers=old) as stream:
            messages = stream.caught_up()
            assert messages[1].event == "reset"
            assert messages[1].json()["reason"] == "last_event_id_expired"
            assert messages[1].json()["oldest_id"] == kept[2]
            assert ids(messages, "sale.") == []  # it goes on live, from the newest
        expected = outbox_ids(engine, outbox.SALES_OUTBOX, kept[2] - 1)
        read_past(stream_sales, manager_headers, kept[2] - 1, expected[-1])
        at_floor = {**manager_headers, "Last-Event-ID": str(kept[2] - 1)}
        with SseClient(
            stream_sales.url + STREAM, params={"type": "sale."}, headers=at_floor
        ) as stream:
            messages = stream.caught_up()
            assert not [m for m in messages if m.event == "reset"]
            assert ids(messages) == expected


def test_a_quiet_stream_sends_heartbeats(
    stream_products: LiveServer, manager_headers: Headers
) -> None:
    with SseClient(
        stream_products.url + STREAM, params={"type": "nothing.ever."}, headers=manager_headers
    ) as stream:
        pings = [m for m in stream.wait_for(lambda ms: sum(m.comment == "ping" for m in ms) >= 3)]
    beats = [m.at for m in pings if m.comment == "ping"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(beats)]
    assert all(0.4 <= gap <= 3 for gap in gaps), gaps


# --- filters ------------------------------------------------------------------------------


def test_products_stream_filters_by_type_product_category_and_warehouse(
    stream_products: LiveServer, manager_headers: Headers, engine: Engine
) -> None:
    with api(stream_products, manager_headers) as products:
        parent = post(products, "/categories", {"name": "Kitchen"})
        child = post(products, "/categories", {"name": "Cups", "parent_id": parent["id"]})
        other = post(products, "/categories", {"name": "Garden"})
        cup = post(
            products,
            "/products",
            {
                "sku": "CUP-1",
                "name": "Cup",
                "price": "5.00",
                "cost_price": "2.00",
                "category_id": child["id"],
            },
        )
        hose = post(
            products,
            "/products",
            {
                "sku": "HOSE-1",
                "name": "Hose",
                "price": "20.00",
                "cost_price": "9.00",
                "category_id": other["id"],
            },
        )
        main = main_warehouse_id(engine)
        depot = post(products, "/warehouses", {"code": "DEPOT", "name": "Depot"})["id"]
        post(
            products,
            "/inventory/receipts",
            {"product_id": cup["id"], "warehouse_id": main, "quantity": 50},
        )
        post(
            products,
            "/inventory/receipts",
            {"product_id": hose["id"], "warehouse_id": depot, "quantity": 7},
        )
        transfer = post(
            products,
            "/inventory/transfers",
            {
                "product_id": cup["id"],
                "from_warehouse_id": main,
                "to_warehouse_id": depot,
                "quantity": 5,
            },
        )
        post(products, f"/inventory/transfers/{transfer['id']}/complete", {})
        answer = products.patch(f"/products/{hose['id']}", json={"price": "22.00"})
        assert answer.status_code == 200, answer.text

    start = floor(engine, outbox.PRODUCTS_OUTBOX)  # the database was emptied: all are this test's
    kept = outbox_ids(engine, outbox.PRODUCTS_OUTBOX, start)  # (stock alerts may add more)
    every = read_past(stream_products, manager_headers, start, kept[-1])
    assert ids(every) == kept and len(kept) >= 7  # 2 products, 4 movements, a new price

    def follow(**params: Any) -> list[Any]:
        with SseClient(
            stream_products.url + STREAM,
            params=params,
            headers={**manager_headers, "Last-Event-ID": str(start)},
        ) as stream:
            messages = stream.caught_up()
        return [m.json() for m in messages if m.id is not None and int(m.id) <= kept[-1]]

    moves = follow(type="stock.moved")
    assert {e["type"] for e in moves} == {"stock.moved"}
    kinds = [e["payload"]["movement_type"] for e in moves]
    assert kinds == ["receipt", "receipt", "transfer_out", "transfer_in"]
    assert {e["type"] for e in follow(type="stock.")} <= {"stock.moved", "stock.health_changed"}

    cups = follow(product_id=cup["id"])
    assert cups and all(e["payload"].get("product_id") == cup["id"] for e in cups), cups
    assert cups[0]["type"] == "product.created"

    # A category includes its subcategories; a movement counts in its product's category.
    kitchen = follow(category_id=parent["id"], type="stock.moved")
    assert [e["payload"]["product_id"] for e in kitchen] == [cup["id"]] * 3
    assert (
        follow(category_id=other["id"], type="stock.moved")[0]["payload"]["product_id"]
        == (hose["id"])
    )

    at_depot = follow(warehouse_id=depot, type="stock.moved")
    assert [(e["payload"]["product_id"], e["payload"]["movement_type"]) for e in at_depot] == [
        (hose["id"], "receipt"),
        (cup["id"], "transfer_in"),
    ]
    # Kinds combine with AND, values of one kind with OR.
    both = follow(warehouse_id=[main, depot], product_id=hose["id"], type="stock.moved")
    assert [e["payload"]["movement_type"] for e in both] == ["receipt"]

    repriced = follow(type="product.updated")
    assert len(repriced) == 1
    assert (
        repriced[0]["payload"]["price"] == "22.00" and "price" in repriced[0]["payload"]["changed"]
    )


def test_sales_stream_filters_by_channel_and_product_and_today_follows_the_filter(
    stream_sales: LiveServer, shop: Shop, manager_headers: Headers, engine: Engine
) -> None:
    other_channel = create_channel(engine, "live-shop")
    with api(stream_sales, manager_headers) as sales:
        web = record_sale(sales, shop, quantity=1)
        store = record_sale(sales, shop, quantity=3, channel_id=other_channel)

    start = floor(engine, outbox.SALES_OUTBOX)
    read_past(stream_sales, manager_headers, start, outbox_ids(engine, outbox.SALES_OUTBOX, 0)[-1])

    def follow(**params: Any) -> list[Message]:
        with SseClient(
            stream_sales.url + STREAM,
            params=params,
            headers={**manager_headers, "Last-Event-ID": str(start)},
        ) as stream:
            return stream.caught_up()

    web_only = follow(channel_id=shop.channel_id)
    assert [m.json()["payload"]["sale_id"] for m in web_only if m.id] == [web["id"]]
    today = [m.json() for m in web_only if m.event == "sales.today"]
    assert today[-1]["orders"] == 1 and today[-1]["units"] == 1
    assert today[-1]["filters"]["channel_id"] == [shop.channel_id]

    by_product = follow(product_id=shop.product_id, type="sale.recorded")
    assert [m.json()["payload"]["sale_id"] for m in by_product if m.id] == [web["id"], store["id"]]
    assert not [m for m in by_product if m.event == "sales.today"]  # not asked for

    only_today = follow(type="sales.today", timezone="Pacific/Auckland")
    assert not [m for m in only_today if m.id]
    figures = [m.json() for m in only_today if m.event == "sales.today"][-1]
    assert figures["timezone"] == "Pacific/Auckland"


@pytest.mark.parametrize(
    ("service", "params", "headers", "field"),
    [
        ("products", {"bogus": "1"}, {}, "query.bogus"),
        ("products", {"channel_id": "1"}, {}, "query.channel_id"),  # sales only
        ("sales", {"warehouse_id": "1"}, {}, "query.warehouse_id"),  # products only
        ("sales", {"type": "Sale Recorded"}, {}, "query.type.0"),
        ("sales", {"product_id": "0"}, {}, "query.product_id.0"),
        ("sales", {"timezone": "Mars/Olympus"}, {}, "query.timezone"),
        ("products", {"product_id": "999999"}, {}, "query.product_id"),  # no such product
        ("products", {}, {"Last-Event-ID": "abc"}, "header.Last-Event-ID"),
        ("products", {"last_event_id": "-1"}, {}, "query.last_event_id"),
    ],
)
def test_a_stream_request_it_cannot_honour_is_a_422_naming_what(
    stream_products: LiveServer,
    stream_sales: LiveServer,
    manager_headers: Headers,
    service: str,
    params: dict[str, str],
    headers: Headers,
    field: str,
) -> None:
    server = stream_products if service == "products" else stream_sales
    body = refused(server, params=params, headers={**manager_headers, **headers})
    assert body["status"] == 422, body
    named = [f["field"] for f in body.get("fields", [])] or [body.get("field")]
    assert field in named, body


# --- processes ----------------------------------------------------------------------------


def test_two_replicas_serve_the_same_events_with_the_same_ids(
    stream_products: LiveServer,
    settings: ProductsSettings,
    manager_headers: Headers,
    engine: Engine,
) -> None:
    replica = LiveServer(
        "products_service.main:app", service_env(settings, SHOP_STREAM_HEARTBEAT_SECONDS=HEARTBEAT)
    )
    replica.start()
    try:
        live = [
            SseClient(server.url + STREAM, headers=manager_headers)
            for server in (stream_products, replica)
        ]
        for stream in live:
            stream.caught_up()
        both_live = newest_id(engine, outbox.PRODUCTS_OUTBOX)  # each has joined by then
        with api(stream_products, manager_headers) as products:
            product = post(
                products,
                "/products",
                {"sku": "TWIN-1", "name": "Twin", "price": "3.00", "cost_price": "1.00"},
            )
            warehouse = main_warehouse_id(engine)
            for _ in range(20):
                post(
                    products,
                    "/inventory/receipts",
                    {"product_id": product["id"], "warehouse_id": warehouse, "quantity": 1},
                )
        last = newest_id(engine, outbox.PRODUCTS_OUTBOX)
        seen = [
            [
                m
                for m in s.wait_for(lambda ms: last in ids(ms))
                if both_live < int(m.id or 0) <= last
            ]
            for s in live
        ]
        for stream in live:
            stream.close()
        # The same events, ids and bytes from both processes, live...
        assert [(m.id, m.event, m.data) for m in seen[0]] == [
            (m.id, m.event, m.data) for m in seen[1]
        ]
        assert ids(seen[0])[-1] == last and len(ids(seen[0])) >= 21

        # ...and resumed: read part from one replica, the rest from the other.
        middle = ids(seen[0])[10]
        headers = {**manager_headers, "Last-Event-ID": str(ids(seen[0])[0] - 1)}
        with SseClient(replica.url + STREAM, headers=headers) as stream:
            first_part = [m for m in stream.wait_for(lambda ms: middle in ids(ms)) if m.id]
        first_part = first_part[: ids(first_part).index(middle) + 1]
        headers = {**manager_headers, "Last-Event-ID": str(middle)}
        with SseClient(stream_products.url + STREAM, headers=headers) as stream:
            rest = [m for m in stream.wait_for(lambda ms: last in ids(ms)) if m.id]
        rest = rest[: ids(rest).index(last) + 1]
        resumed = first_part + rest
        assert [(m.id, m.data) for m in resumed] == [(m.id, m.data) for m in seen[0]]
    finally:
        replica.stop()


def test_a_stopping_server_ends_its_streams_and_a_full_one_refuses_more(
    settings: ProductsSettings, users: dict[Role, User], manager_headers: Headers
) -> None:
    server = LiveServer(
        "products_service.main:app",
        service_env(settings, SHOP_STREAM_MAX_CLIENTS="1", SHOP_STREAM_HEARTBEAT_SECONDS="30"),
    )
    server.start()
    try:
        stream = SseClient(server.url + STREAM, headers=manager_headers)
        stream.wait_for(lambda ms: len(ms) >= 1)
        body = refused(server, headers=manager_headers)
        assert body["status"] == 503 and "limit of 1" in body["detail"]

        started = time.monotonic()
        server.stop()  # SIGTERM: the open stream must not hold the process up
        assert time.monotonic() - started < 10
        stream.wait_for(lambda ms: stream.ended, within=5)
        assert stream.ended
    finally:
        server.stop(kill=True)


def test_a_client_too_slow_for_its_events_is_let_go_and_the_others_keep_theirs(
    engine: Engine, settings: ProductsSettings
) -> None:
    """In one process: the feed's queues are bounded; a client that falls that far behind is
    dropped (its stream ends, and it resumes from the outbox by id) instead of buffered."""
    feed = EventFeed(  # on the sales outbox: no server of this module writes there unasked
        service="sales_service",
        engine=engine,
        table=outbox.SALES_OUTBOX,
        settings=settings.model_copy(update={"stream_client_buffer_events": 3}),
    )

    def append(count: int) -> None:
        with engine.begin() as connection:
            events = [outbox.event("test.slow_client", None, {"n": n}) for n in range(count)]
            outbox.append(connection, outbox.SALES_OUTBOX, events)

    async def run() -> None:
        append(1)  # the feed starts after it (an emptied outbox has no newest id to start at)
        feed.position = newest_id(engine, outbox.SALES_OUTBOX)
        slow, quick = feed.subscribe(), feed.subscribe()
        append(2)
        assert await feed.poll_once() == 2
        assert [len(b.events) for b in await quick.take() or []] == [2]
        append(2)
        assert await feed.poll_once() == 2
        assert slow.ended == "overflow"  # 4 unsent > 3
        assert await slow.take() is None
        assert quick.ended is None
        assert [len(b.events) for b in await quick.take() or []] == [2]
        await feed.close()
        assert quick.ended == "shutdown"

    asyncio.run(run())


def test_a_gap_in_the_ids_holds_later_events_back_until_it_fills_or_its_grace_ends() -> None:
    """An id given out but not yet inserted must not be passed over (see GapGuard)."""
    guard = GapGuard(grace=2.0)
    assert guard.settled(10, [11, 12, 14, 15], now=100.0) == 2  # 13 missing: hold 14, 15
    assert guard.waiting
    assert guard.settled(12, [14, 15], now=101.0) == 0
    assert guard.settled(12, [13, 14, 15], now=101.5) == 3  # it filled
    assert not guard.waiting
    assert guard.settled(15, [17], now=200.0) == 0  # 16 missing...
    assert guard.settled(15, [17, 18], now=201.9) == 0
    assert guard.settled(15, [17, 18], now=202.0) == 2  # ...rolled back: passed over
    assert not guard.waiting
    assert GapGuard(grace=0.0).settled(0, [5, 9], now=0.0) == 2


def test_a_stream_waits_for_an_id_that_lands_late_and_passes_over_one_that_never_does(
    stream_sales: LiveServer, manager_headers: Headers, engine: Engine
) -> None:
    table = outbox.SALES_OUTBOX  # only sales write there: no id is taken from under the test

    def put(id_: int | None = None) -> None:
        with engine.begin() as connection:
            row = outbox.event("test.gap", None, {"n": id_})
            outbox.append(connection, table, [{**row, **({"id": id_} if id_ else {})}])

    with SseClient(
        stream_sales.url + STREAM, params={"type": "test."}, headers=manager_headers
    ) as stream:
        stream.caught_up()
        put()  # an id as the database gives it, after every id it gave before
        newest = newest_id(engine, table)
        stream.wait_for(lambda ms: ids(ms) == [newest])
        put(newest + 2)  # newest + 1 given out, not inserted yet
        time.sleep(1)
        assert ids(stream.messages) == [newest]
        put(newest + 1)
        got = ids(stream.wait_for(lambda ms: len(ids(ms)) == 3))
        assert got == [newest, newest + 1, newest + 2]
        put(newest + 4)  # newest + 3 never lands (its transaction rolled back)
        started = time.monotonic()
        got = ids(stream.wait_for(lambda ms: len(ids(ms)) == 4))
        assert got[-1] == newest + 4
        assert time.monotonic() - started >= 2.5  # held for the grace (3 s) first
