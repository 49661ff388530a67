"""Webhooks through real servers: an admin registers endpoints, events are POSTed, signed, to a
receiver this test runs on 127.0.0.1, retried, logged, in order, and none is lost when the
service delivering it is killed.

These tests own a database of their own (and start their own servers on it, with short
retry settings): the suite's other servers run delivery workers too, with the default
schedule, and would otherwise take part in delivering these tests' messages.
"""

import contextlib
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from common import migrate, outbox
from common.db import make_engine, utcnow
from common.models import WebhookDelivery
from common.settings import ProductsSettings
from common.webhooks import InvalidSignature, generate_secret, verify_signature
from common.webhooks.addresses import parse_networks
from common.webhooks.delivery import BACKGROUND_NICE, Outcome, Sender, WebhookRunner
from common.webhooks.repository import Due, Target
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer, _clean, sales_env, service_env
from tests.scripted import NO_CONTENT, scripted_receiver

API = "/api/v1"
# Quick retries for tests: waits of at most 0.3 s, given up after 60 s.
FAST = {
    "SHOP_WEBHOOK_POLL_SECONDS": "0.1",
    "SHOP_WEBHOOK_TIMEOUT_SECONDS": "3",
    "SHOP_WEBHOOK_LEASE_SECONDS": "5",
    "SHOP_WEBHOOK_RETRY_BASE_SECONDS": "0.05",
    "SHOP_WEBHOOK_RETRY_CAP_SECONDS": "0.3",
    "SHOP_WEBHOOK_RETRY_MAX_AGE_SECONDS": "60",
    "SHOP_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",  # the receiver's (refused by default)
}


# --- a receiver -------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None  # None: it hung and was never answered
    verified: bool

    @property
    def message_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that checks each message's signature against the secret
    of its path (a bad one is answered 400), answers what ``answer(message_id, nth)`` says
    (nth: how many times this path got this message, 1 for the first), or hangs while
    ``hanging`` is set, and keeps everything it got."""

    secrets: dict[str, str] = field(default_factory=dict)
    answer: Callable[[str, int], int] = lambda _message_id, _nth: 200
    received: list[Received] = field(default_factory=list)
    hanging: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # buffered: the answer's head and body leave in one segment (two small ones
            # would wait on the client's delayed ACK, 40 ms each)
            wbufsize = 65536

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                status = owner.handle(self.path, headers, body)
                if status is None:
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *_args: None  # type: ignore[method-assign]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.hanging.clear()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def url(self, path: str = "/hook") -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> int | None:
        secret = self.secrets.get(path)
        try:
            verified = secret is not None and verify_signature(secret, headers, body) is not None
        except InvalidSignature:
            verified = False
        received = Received(path, headers, body, None, verified)
        with self.lock:
            nth = 1 + sum(
                1 for r in self.received if r.path == path and r.message_id == received.message_id
            )
            self.received.append(received)
        if self.hanging.is_set():
            deadline = time.monotonic() + 30
            while self.hanging.is_set() and time.monotonic() < deadline:
                time.sleep(0.02)
            status: int | None = None
        else:
            status = self.answer(received.message_id, nth) if verified else 400
        with self.lock:
            received.status = status
        return status

    def got(self, path: str = "/hook") -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def acknowledged(self, path: str = "/hook") -> list[Received]:
        """What this path answered 2xx, in order."""
        return [r for r in self.got(path) if r.status is not None and 200 <= r.status < 300]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    made.start()
    yield made
    made.stop()


# --- servers on a database of this module's own -----------------------------------------


@pytest.fixture(scope="module")
def hooks_engine() -> Iterator[Engine]:
    server_url = os.environ.get("SHOP_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with migrate.scratch_database(server_url, f"shop_test_{worker}_hooks") as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


@dataclass
class Shop:
    """The servers of one test and an admin's clients to them."""

    products: LiveServer
    sales: LiveServer | None
    api: httpx.Client  # products_service, as the admin
    sales_api: httpx.Client | None

    def register(self, receiver: Receiver, path: str = "/hook", **body: Any) -> dict[str, Any]:
        answer = self.api.post("/webhooks", json={"url": receiver.url(path), **body})
        assert answer.status_code == 201, answer.text
        endpoint = answer.json()
        receiver.secrets[path] = endpoint["secret"]
        return endpoint

    def create_product(self, sku: str) -> int:
        body = {"sku": sku, "name": sku, "price": "9.90", "cost_price": "4.00"}
        answer = self.api.post("/products", json=body)
        assert answer.status_code == 201, answer.text
        return int(answer.json()["id"])

    def deliveries(self, endpoint_id: int, **params: Any) -> list[dict[str, Any]]:
        answer = self.api.get(f"/webhooks/{endpoint_id}/deliveries", params=params)
        assert answer.status_code == 200, answer.text
        return list(answer.json()["items"])

    def endpoint(self, endpoint_id: int) -> dict[str, Any]:
        answer = self.api.get(f"/webhooks/{endpoint_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


StartShop = Callable[..., Shop]


@pytest.fixture
def start_shop(hooks_engine: Engine, settings: ProductsSettings) -> Iterator[StartShop]:
    """Start products_service (and sales_service, if asked) on this module's database with
    quick webhook retries; ``**env`` adds or overrides settings. Stopped and the database
    cleaned after the test."""
    servers: list[LiveServer] = []
    clients: list[httpx.Client] = []
    url = hooks_engine.url.render_as_string(hide_password=False)
    _clean(hooks_engine)

    def start(*, sales: bool = False, products_workers: int = 1, **env: str) -> Shop:
        extra = {**FAST, "SHOP_DATABASE_URL": url, **env}
        products = LiveServer(
            "products_service.main:app", service_env(settings, **extra), workers=products_workers
        )
        servers.append(products)
        products.start()
        sales_server = None
        if sales:
            sales_server = LiveServer(
                "sales_service.main:app", sales_env(settings, products.url, **extra)
            )
            servers.append(sales_server)
            sales_server.start()
        login = httpx.post(
            f"{products.url}{API}/auth/login",
            json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
            timeout=30,
        )
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        api = httpx.Client(base_url=products.url + API, headers=auth, timeout=30)
        clients.append(api)
        sales_api = None
        if sales_server is not None:
            sales_api = httpx.Client(base_url=sales_server.url + API, headers=auth, timeout=30)
            clients.append(sales_api)
        return Shop(products, sales_server, api, sales_api)

    yield start
    for client in clients:
        client.close()
    for server in reversed(servers):
        server.stop()
    _clean(hooks_engine)


def wait_until(check: Callable[[], Any], within: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {within} s: {what or check}")


# --- the admin API ----------------------------------------------------------------------


def test_an_endpoint_is_registered_with_a_secret_shown_once(
    start_shop: StartShop, receiver: Receiver
) -> None:
    shop = start_shop()
    created = shop.register(receiver, event_types=["product.", "product.", "sale.recorded"])
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == ["product.", "sale.recorded"]
    assert created["is_active"] is True and created["disabled_reason"] is None
    read = shop.endpoint(created["id"])
    assert "secret" not in read
    listed = shop.api.get("/webhooks").json()
    assert [e["id"] for e in listed["items"]] == [created["id"]] and "secret" not in listed[
        "items"
    ][0]
    # the same routes on sales_service would answer the same (both include the router)

    chosen = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
    mine = shop.api.post("/webhooks", json={"url": "https://example.com/x", "secret": chosen})
    assert mine.status_code == 201 and mine.json()["secret"] == chosen

    for bad in (
        {"url": "ftp://example.com/x"},
        {"url": "http://"},
        {"url": "javascript:alert(1)"},
        {"url": "https://example.com/x", "secret": "not-a-secret"},
        {"url": "https://example.com/x", "secret": "whsec_c2hvcnQ="},  # a 5-byte key
        {"url": "https://example.com/x", "event_types": ["Sale Recorded"]},
    ):
        answer = shop.api.post("/webhooks", json=bad)
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.json()["error"] == "validation_error"
    assert shop.api.patch(f"/webhooks/{created['id']}", json={"url": None}).status_code == 422
    assert shop.api.get("/webhooks/999999").status_code == 404
    assert shop.api.post("/webhooks/deliveries/999999/redeliver").status_code == 404

    deleted = shop.api.delete(f"/webhooks/{created['id']}")
    assert deleted.status_code == 204
    assert shop.api.get(f"/webhooks/{created['id']}").status_code == 404
    log = shop.api.get("/audit-log", params={"entity_type": "webhook_endpoint"}).json()["items"]
    assert {e["action"] for e in log} == {"webhook_endpoint.created", "webhook_endpoint.deleted"}
    assert all(e["changes"]["secret"]["after"] in ("[redacted]", None) for e in log)


def test_an_endpoint_inside_the_services_network_is_refused_unless_an_operator_allows_it(
    start_shop: StartShop,
) -> None:
    shop = start_shop(SHOP_WEBHOOK_ALLOWED_NETWORKS="")
    inside = (
        "http://127.0.0.1:3306/",
        "http://localhost:8000/api/v1/products",  # a name is resolved and judged by address
        "http://2130706433/",  # 127.0.0.1 written as a number
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/x",
        "http://100.64.0.1/x",
        "http://[::1]:8001/",
        "http://[::ffff:192.168.0.1]/",  # IPv4 inside IPv6
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
        "http://0.0.0.0:8001/",
        "http://224.0.0.1/",
    )
    for url in inside:
        answer = shop.api.post("/webhooks", json={"url": url})
        assert answer.status_code == 422, (url, answer.text)
        (problem,) = answer.json()["fields"]
        assert problem["field"] == "body.url", url
        assert "public addresses only" in problem["reason"], (url, problem)

    public = shop.api.post(
        "/webhooks", json={"url": "https://93.184.216.34/hook", "event_types": ["webhook.none"]}
    )
    assert public.status_code == 201, public.text
    moved = shop.api.patch(f"/webhooks/{public.json()['id']}", json={"url": "http://192.168.1.1/"})
    assert moved.status_code == 422 and moved.json()["fields"][0]["field"] == "body.url"
    assert shop.endpoint(public.json()["id"])["url"] == "https://93.184.216.34/hook"


def test_a_delivery_connects_only_to_an_address_it_may_reach_whatever_the_name_resolved_to(
    receiver: Receiver,
) -> None:
    """The check at registration is not enough (a name may resolve elsewhere later): each
    connection checks the address it connects to."""
    secret = generate_secret()
    receiver.secrets["/hook"] = secret
    due = Due(1, "msg_guard", '{"type":"webhook.ping"}', 0, utcnow())
    for url in (receiver.url(), receiver.url().replace("127.0.0.1", "localhost")):
        target = Target(1, url, (secret,), True, True)
        with Sender(()) as sender:
            refused = sender.post(target, due, 5)
        assert refused.status_code is None and refused.error is not None
        assert "is a loopback address" in refused.error, refused.error
        assert receiver.got() == []

    allowed = parse_networks("127.0.0.0/8")
    for url in (receiver.url(), receiver.url().replace("127.0.0.1", "localhost")):
        with Sender(allowed) as sender:
            sent = sender.post(Target(1, url, (secret,), True, True), due, 5)
        assert sent.ok, sent.error  # (localhost's ::1, if any, is passed over for 127.0.0.1)
    assert [r.verified for r in receiver.got()] == [True, True]


def send_all(url: str, messages: int, within: float = 5, pause: float = 0) -> list[Outcome]:
    """``messages`` deliveries to ``url`` through one Sender, as an endpoint's thread sends
    them (``pause`` seconds apart)."""
    target = Target(1, url, (generate_secret(),), True, True)
    outcomes = []
    with Sender(parse_networks("127.0.0.0/8")) as sender:
        for n in range(messages):
            time.sleep(pause)
            outcomes.append(
                sender.post(target, Due(n, f"msg_{n}", f'{{"n":{n}}}', 0, utcnow()), within)
            )
    return outcomes


def test_a_sender_keeps_its_connection_and_gets_past_one_the_receiver_dropped() -> None:
    connections: list[int] = []

    def keep(connection: socket.socket, nth: int) -> bool:
        connections.append(connection.fileno())
        connection.sendall(NO_CONTENT)
        return True

    with scripted_receiver(keep) as url:
        assert [o.status_code for o in send_all(url, 5)] == [204] * 5
    assert len(connections) == 5 and len(set(connections)) == 1  # one connection for all

    def drop_every_other(connection: socket.socket, nth: int) -> bool:
        connection.sendall(NO_CONTENT)  # says nothing of closing, then closes (idle)
        return nth % 2 == 0

    with scripted_receiver(drop_every_other) as url:
        outcomes = send_all(url, 6, pause=0.1)
    assert [(o.status_code, o.error) for o in outcomes] == [(204, None)] * 6


def test_a_huge_endless_or_missing_answer_is_a_bounded_failed_try_and_the_next_goes_through() -> (
    None
):
    def huge(connection: socket.socket, nth: int) -> bool:
        if nth == 1:  # a megabyte of error page: cut at the start, the connection dropped
            body = b"x" * 2**20
            connection.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n" % len(body))
            with contextlib.suppress(OSError):
                connection.sendall(body)
            return False
        connection.sendall(NO_CONTENT)
        return True

    with scripted_receiver(huge) as url:
        first, second = send_all(url, 2)
    assert first.status_code == 500 and first.error == "HTTP 500: " + "x" * 300
    assert second.status_code == 204 and second.error is None

    def endless(connection: socket.socket, nth: int) -> bool:
        if nth == 1:  # a chunked answer that never ends
            connection.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            with contextlib.suppress(OSError):
                for _ in range(100):
                    connection.sendall(b"1\r\nx\r\n")
                    time.sleep(0.05)
            return False
        if nth == 2:  # no answer at all
            time.sleep(3)
            return False
        connection.sendall(NO_CONTENT)
        return True

    with scripted_receiver(endless) as url:
        started = time.monotonic()
        cut, silent, fine = send_all(url, 3, within=1)
    assert cut.status_code == 200 and cut.latency_ms < 2000  # read only while in time
    assert silent.status_code is None and silent.error == "no answer within 1 s"
    assert fine.status_code == 204
    assert time.monotonic() - started < 4


def test_a_ping_is_delivered_signed_with_the_documented_body(
    start_shop: StartShop, receiver: Receiver
) -> None:
    shop = start_shop()
    endpoint = shop.register(receiver)
    ping = shop.api.post(f"/webhooks/{endpoint['id']}/ping")
    assert ping.status_code == 202, ping.text
    assert ping.json()["status"] == "pending" and ping.json()["event_type"] == "webhook.ping"
    [got] = wait_until(receiver.acknowledged, what="the ping")
    assert got.verified
    assert got.headers["content-type"] == "application/json"
    assert got.message_id == ping.json()["message_id"]
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
    body = got.json
    assert set(body) == {"id", "type", "occurred_at", "source", "data"}
    assert body["id"] == got.message_id and body["type"] == "webhook.ping"
    assert body["data"] == {"endpoint_id": endpoint["id"]}


# --- delivery -----------------------------------------------------------------------------


def test_a_receiver_failing_three_times_gets_the_event_once_acknowledged_after_four_attempts(
    start_shop: StartShop, receiver: Receiver
) -> None:
    shop = start_shop()
    receiver.answer = lambda _message_id, nth: 500 if nth <= 3 else 204
    endpoint = shop.register(receiver, event_types=["product.created"])
    product_id = shop.create_product("HOOK-RETRY")

    [delivery] = wait_until(
        lambda: [d for d in shop.deliveries(endpoint["id"]) if d["status"] == "succeeded"],
        what="the delivery to succeed",
    )
    got = receiver.got()
    assert [r.status for r in got] == [500, 500, 500, 204]
    assert len({r.message_id for r in got}) == 1 and all(r.verified for r in got)
    assert len(receiver.acknowledged()) == 1
    body = got[-1].json
    assert body["type"] == "product.created" and body["source"] == "products"
    assert body["data"]["product_id"] == product_id and body["data"]["sku"] == "HOOK-RETRY"

    assert delivery["attempts"] == 4
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 500, 204]
    assert [a["error"] for a in delivery["attempt_log"]][:3] == ["HTTP 500: ok"] * 3
    assert delivery["attempt_log"][-1]["error"] is None
    assert all(a["latency_ms"] >= 0 for a in delivery["attempt_log"])
    assert delivery["next_attempt_at"] is None and delivery["delivered_at"] is not None
    assert delivery["last_status_code"] == 204
    health = shop.endpoint(endpoint["id"])
    assert health["consecutive_failures"] == 0 and health["failing_since"] is None
    detail = shop.api.get(f"/webhooks/deliveries/{delivery['id']}").json()
    assert detail["payload"] == body  # the body as sent


def test_a_receiver_that_checks_signatures_rejects_a_tampered_body(
    start_shop: StartShop, receiver: Receiver
) -> None:
    shop = start_shop()
    endpoint = shop.register(receiver)
    shop.create_product("HOOK-SIGNED")
    [got] = wait_until(receiver.acknowledged, what="the message")
    assert got.verified
    secret = receiver.secrets["/hook"]
    assert verify_signature(secret, got.headers, got.body)["id"] == got.message_id
    tampered = got.body.replace(b"HOOK-SIGNED", b"HOOK-FORGED")
    assert tampered != got.body
    with pytest.raises(InvalidSignature):
        verify_signature(secret, got.headers, tampered)
    with pytest.raises(InvalidSignature):  # the same message replayed an hour later
        verify_signature(secret, got.headers, got.body, now=time.time() + 3600)

    # A rotation: the old secret keeps verifying during the grace period, the new one too.
    rotated = shop.api.post(f"/webhooks/{endpoint['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret != secret and rotated.json()["previous_secret_expires_at"] is not None
    shop.create_product("HOOK-ROTATED")
    wait_until(lambda: len(receiver.acknowledged()) == 2, what="the second message")
    second = receiver.acknowledged()[1]
    assert len(second.headers["webhook-signature"].split()) == 2
    assert verify_signature(new_secret, second.headers, second.body)
    assert verify_signature(secret, second.headers, second.body)


def test_an_endpoint_gets_its_events_in_order_whoever_delivers_them(
    start_shop: StartShop, receiver: Receiver
) -> None:
    # Three delivery workers (two products_service processes and sales_service) compete.
    shop = start_shop(sales=True, products_workers=2)
    # Every message fails its first try, and every third its second too.
    receiver.answer = lambda message_id, nth: (
        500 if nth == 1 or (nth == 2 and int(message_id.split("-")[1]) % 3 == 0) else 200
    )
    endpoint = shop.register(receiver, event_types=["product.created"])
    for i in range(12):
        shop.create_product(f"HOOK-ORDER-{i}")
    wait_until(lambda: len(receiver.acknowledged()) >= 12, within=40, what="12 messages")
    event_ids = [int(r.message_id.split("-")[1]) for r in receiver.got()]
    assert event_ids == sorted(event_ids), event_ids  # retries included, never out of order
    acknowledged = [r.json["data"]["sku"] for r in receiver.acknowledged()]
    assert acknowledged == [f"HOOK-ORDER-{i}" for i in range(12)]
    assert all(r.verified for r in receiver.got())
    wait_until(  # (each answer is recorded after the receiver gave it)
        lambda: all(d["status"] == "succeeded" for d in shop.deliveries(endpoint["id"], limit=50)),
        what="every delivery recorded as succeeded",
    )


def test_endpoints_get_only_their_event_types_and_only_events_after_their_creation(
    start_shop: StartShop, receiver: Receiver
) -> None:
    shop = start_shop(sales=True)
    assert shop.sales_api is not None
    product_id = shop.create_product("HOOK-BEFORE")  # before any endpoint: sent to none
    everything = shop.register(receiver, "/all")
    sales_only = shop.register(receiver, "/sales", event_types=["sale."])
    stock_and_created = shop.register(
        receiver, "/stock", event_types=["stock.moved", "product.created"]
    )
    # created on sales_service: the same table, the same router
    on_sales = shop.sales_api.post(
        "/webhooks", json={"url": receiver.url("/none"), "event_types": ["reservation.expired"]}
    )
    assert on_sales.status_code == 201, on_sales.text
    receiver.secrets["/none"] = on_sales.json()["secret"]

    warehouse = shop.api.get("/warehouses").json()["items"][0]["id"]
    receipt = {"product_id": product_id, "warehouse_id": warehouse, "quantity": 5}
    assert shop.api.post("/inventory/receipts", json=receipt).status_code == 201
    channel = shop.sales_api.post("/channels", json={"code": "web", "name": "Web"}).json()
    sale = shop.sales_api.post(
        "/sales",
        json={"channel_id": channel["id"], "lines": [{"product_id": product_id, "quantity": 1}]},
    )
    assert sale.status_code == 201, sale.text
    shop.create_product("HOOK-AFTER")

    def types(path: str) -> list[str]:
        return sorted(r.json["type"] for r in receiver.acknowledged(path))

    wait_until(lambda: "product.created" in types("/all") and "sale.recorded" in types("/all"))
    wait_until(lambda: types("/sales") == ["sale.recorded"])
    wait_until(lambda: types("/stock") == ["product.created", "stock.moved"])
    all_types = types("/all")
    assert {"product.created", "stock.moved", "sale.recorded", "sale_stock.taken"} <= set(all_types)
    assert all(t.split(".")[0] in {"product", "stock", "sale", "sale_stock"} for t in all_types)
    created = [
        r.json["data"]["sku"]
        for r in receiver.acknowledged("/all")
        if r.json["type"] == "product.created"
    ]
    assert created == ["HOOK-AFTER"]  # HOOK-BEFORE was created before the endpoint
    sale_message = next(r for r in receiver.acknowledged("/sales"))
    assert sale_message.json["source"] == "sales"
    assert sale_message.json["data"]["sale_id"] == sale.json()["id"]
    time.sleep(0.5)
    assert receiver.got("/none") == []
    ids = {e["id"] for e in (everything, sales_only, stock_and_created)}
    assert len(ids) == 3


def test_a_persistently_failing_endpoint_is_disabled_then_resumes_when_enabled(
    start_shop: StartShop, receiver: Receiver
) -> None:
    # Retried for 3 s, every 0.2 s at most: several tries before the last, even when the
    # first comes late (delivery yields the CPU to requests, and a test run keeps it busy).
    shop = start_shop(SHOP_WEBHOOK_RETRY_MAX_AGE_SECONDS="3", SHOP_WEBHOOK_RETRY_CAP_SECONDS="0.2")
    receiver.answer = lambda _message_id, _nth: 503
    endpoint = shop.register(receiver, event_types=["product.created"])
    shop.create_product("HOOK-DOOMED")
    shop.create_product("HOOK-WAITING")  # behind the first: waits, in order

    disabled = wait_until(
        lambda: (e := shop.endpoint(endpoint["id"]))["is_active"] is False and e,
        what="the endpoint to be disabled",
    )
    assert disabled["disabled_at"] is not None
    assert "failed" in disabled["disabled_reason"] and "HTTP 503" in disabled["disabled_reason"]
    assert disabled["failing_since"] is not None and disabled["consecutive_failures"] >= 2
    assert shop.api.get("/webhooks").json()["items"][0]["is_active"] is False
    doomed, waiting = sorted(shop.deliveries(endpoint["id"]), key=lambda d: d["id"])
    assert doomed["status"] == "failed" and doomed["attempts"] >= 2
    assert doomed["next_attempt_at"] is None and doomed["last_status_code"] == 503
    assert waiting["status"] == "pending" and waiting["attempts"] == 0
    assert {r.json["data"]["sku"] for r in receiver.got()} == {"HOOK-DOOMED"}
    assert shop.deliveries(endpoint["id"], status="failed") == [doomed]
    # repeated: any of the statuses, newest first as the whole log
    assert shop.deliveries(endpoint["id"], status=["failed", "pending"]) == [waiting, doomed]
    assert shop.api.post(f"/webhooks/{endpoint['id']}/ping").status_code == 409

    shop.create_product("HOOK-WHILE-DISABLED")  # a disabled endpoint is not queued for
    time.sleep(0.5)
    assert len(shop.deliveries(endpoint["id"])) == 2

    receiver.answer = lambda _message_id, _nth: 200
    enabled = shop.api.patch(f"/webhooks/{endpoint['id']}", json={"is_active": True})
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["is_active"] is True and enabled.json()["disabled_reason"] is None
    wait_until(lambda: [r.json["data"]["sku"] for r in receiver.acknowledged()] == ["HOOK-WAITING"])

    # The failed one, sent again by hand: the same message id, acknowledged this time.
    again = shop.api.post(f"/webhooks/deliveries/{doomed['id']}/redeliver")
    assert again.status_code == 202, again.text
    assert again.json()["status"] == "pending"
    wait_until(lambda: len(receiver.acknowledged()) == 2, what="the redelivery")
    assert receiver.acknowledged()[1].message_id == doomed["message_id"]
    # (the receiver answers before the worker records its answer)
    redone = wait_until(
        lambda: (
            (d := shop.api.get(f"/webhooks/deliveries/{doomed['id']}").json())["status"]
            == "succeeded"
            and d
        ),
        what="the redelivery recorded",
    )
    assert redone["attempts"] == doomed["attempts"] + 1
    # and a succeeded one can be sent again too
    assert shop.api.post(f"/webhooks/deliveries/{doomed['id']}/redeliver").status_code == 202
    wait_until(lambda: len(receiver.acknowledged()) == 3, what="the second redelivery")

    manual = shop.api.patch(f"/webhooks/{endpoint['id']}", json={"is_active": False})
    assert manual.json()["disabled_reason"] == f"Disabled by {ADMIN_EMAIL}"


def test_products_service_alone_delivers_the_sales_outbox_too(
    start_shop: StartShop, receiver: Receiver, hooks_engine: Engine
) -> None:
    """Webhooks run in products_service only (sales_service's one worker records sales): with
    no sales_service running at all, a sale event in its outbox still reaches the receiver."""
    shop = start_shop()  # products_service alone
    endpoint = shop.register(receiver, event_types=["sale.recorded"])
    with hooks_engine.begin() as connection:
        outbox.append(
            connection,
            outbox.SALES_OUTBOX,
            [outbox.event("sale.recorded", 7, {"sale_id": 7, "number": "S-HOOK-ALONE"})],
        )
    [got] = wait_until(receiver.acknowledged, what="the sale event")
    assert got.json["type"] == "sale.recorded" and got.json["data"]["number"] == "S-HOOK-ALONE"
    assert got.verified
    wait_until(
        lambda: [d["status"] for d in shop.deliveries(endpoint["id"])] == ["succeeded"],
        what="the delivery recorded",
    )


def test_killing_the_service_mid_delivery_loses_nothing(
    start_shop: StartShop, receiver: Receiver, hooks_engine: Engine
) -> None:
    shop = start_shop()  # a try times out after 3 s; a lease runs out after 5
    receiver.hanging.set()  # the receiver takes the message and never answers...
    endpoint = shop.register(receiver, event_types=["product.created"])
    shop.create_product("HOOK-KILLED")
    wait_until(receiver.got, what="the first try to reach the receiver")
    shop.products.stop(kill=True)  # ...and the service dies mid-POST, recording nothing
    receiver.hanging.clear()
    with hooks_engine.connect() as connection:
        [row] = connection.execute(select(WebhookDelivery.status, WebhookDelivery.attempts))
    assert (row.status, row.attempts) == ("pending", 0)

    restarted = LiveServer("products_service.main:app", shop.products.env)
    restarted.start()
    try:
        # Once the dead process's lease has run out, the restarted one sends it again.
        wait_until(receiver.acknowledged, within=30, what="the message after the restart")
        got = receiver.got()
        assert [r.status for r in got] == [None, 200]
        assert (
            got[0].message_id == got[1].message_id and got[1].json["data"]["sku"] == "HOOK-KILLED"
        )
        api = httpx.Client(base_url=restarted.url + API, headers=shop.api.headers, timeout=30)
        [delivery] = wait_until(  # (the answer is recorded after the receiver gave it)
            lambda: [
                d
                for d in api.get(f"/webhooks/{endpoint['id']}/deliveries").json()["items"]
                if d["status"] == "succeeded"
            ],
            what="the delivery recorded",
        )
        assert delivery["attempts"] == 1
        api.close()
    finally:
        restarted.stop()


def webhook_workers(parent: int) -> list[int]:
    """The live webhook worker processes whose parent is ``parent`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            ours = int(ppid) == parent and state != "Z"
            if ours and b"common.webhooks.worker" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_delivery_runs_in_a_worker_process_restarted_when_it_dies_and_gone_with_the_service(
    start_shop: StartShop, receiver: Receiver
) -> None:
    """Delivery threads are not in the process that serves requests (they would hold its
    interpreter lock while sales wait): a worker process beside it does the work, comes
    back if it dies, and dies with the service, even one killed outright."""
    shop = start_shop()
    assert shop.products.process is not None
    service = shop.products.process.pid
    [worker] = wait_until(lambda: webhook_workers(service), what="the webhook worker")
    shop.register(receiver, event_types=["product.created"])

    os.kill(worker, signal.SIGKILL)
    [again] = wait_until(
        lambda: [w for w in webhook_workers(service) if w != worker], what="a new worker"
    )
    shop.create_product("HOOK-WORKER")
    [got] = wait_until(receiver.acknowledged, what="the message, sent by the new worker")
    assert got.json["data"]["sku"] == "HOOK-WORKER"

    shop.products.stop(kill=True)
    wait_until(lambda: not alive(again), within=5, what="the worker gone with the service")


def test_a_dead_receiver_does_not_hold_up_sales(start_shop: StartShop, receiver: Receiver) -> None:
    shop = start_shop(sales=True, SHOP_WEBHOOK_TIMEOUT_SECONDS="5", SHOP_WEBHOOK_LEASE_SECONDS="7")
    assert shop.sales_api is not None
    receiver.hanging.set()  # every POST hangs until the worker's timeout
    shop.register(receiver)
    product_id = shop.create_product("HOOK-BUSY")
    warehouse = shop.api.get("/warehouses").json()["items"][0]["id"]
    receipt = {"product_id": product_id, "warehouse_id": warehouse, "quantity": 100}
    assert shop.api.post("/inventory/receipts", json=receipt).status_code == 201
    channel = shop.sales_api.post("/channels", json={"code": "web", "name": "Web"}).json()
    wait_until(receiver.got, what="the worker to be stuck on the receiver")

    slowest = 0.0
    for _ in range(15):
        started = time.monotonic()
        sale = shop.sales_api.post(
            "/sales",
            json={
                "channel_id": channel["id"],
                "lines": [{"product_id": product_id, "quantity": 1}],
            },
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        slowest = max(slowest, time.monotonic() - started)
        assert sale.status_code == 201, sale.text
    # Far under the 5 s a sale would take if it waited for a delivery.
    assert slowest < 4, slowest


def test_webhooks_work_on_the_embedded_sqlite_database(
    tmp_path: Path, settings: ProductsSettings, receiver: Receiver
) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    migrate.upgrade(url)
    server = LiveServer(
        "products_service.main:app",
        service_env(settings, **FAST, SHOP_DATABASE_URL=url),
        workers=2,
    )
    server.start()
    try:
        login = httpx.post(
            f"{server.url}{API}/auth/login",
            json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
            timeout=30,
        )
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        with httpx.Client(base_url=server.url + API, headers=auth, timeout=30) as api:
            shop = Shop(server, None, api, None)
            receiver.answer = lambda _message_id, nth: 500 if nth == 1 else 200
            endpoint = shop.register(receiver, event_types=["product.created"])
            for i in range(3):
                shop.create_product(f"LITE-HOOK-{i}")
            wait_until(lambda: len(receiver.acknowledged()) == 3, what="three messages")
            skus = [r.json["data"]["sku"] for r in receiver.acknowledged()]
            assert skus == ["LITE-HOOK-0", "LITE-HOOK-1", "LITE-HOOK-2"]
            assert all(r.verified for r in receiver.got())
            # (each answer is recorded after the receiver gave it)
            wait_until(
                lambda: [d["attempts"] for d in shop.deliveries(endpoint["id"])] == [2, 2, 2],
                what="two attempts recorded for each",
            )
    finally:
        server.stop()


def test_busy_endpoints_do_not_starve_others_when_every_slot_is_taken(
    start_shop: StartShop, receiver: Receiver
) -> None:
    # One delivery slot in the only process, three endpoints, and events arriving all along.
    shop = start_shop(SHOP_WEBHOOK_MAX_CONCURRENCY="1")
    paths = ["/a", "/b", "/c"]
    for path in paths:
        shop.register(receiver, path, event_types=["product.created"])
    stop = threading.Event()

    def create_products() -> None:
        for i in range(400):
            if stop.is_set():
                return
            shop.create_product(f"HOOK-BUSY-{i}")
            time.sleep(0.02)

    producer = threading.Thread(target=create_products)
    producer.start()
    try:
        # every endpoint hears of the stream while it still flows
        wait_until(lambda: all(len(receiver.acknowledged(p)) >= 3 for p in paths), within=20)
        assert producer.is_alive()
    finally:
        stop.set()
        producer.join()
    for path in paths:
        skus = [r.json["data"]["sku"] for r in receiver.acknowledged(path)]
        assert skus == sorted(skus, key=lambda sku: int(sku.rsplit("-", 1)[1]))  # in order


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="thread priorities are Linux's")
def test_webhook_threads_yield_the_cpu_to_requests(settings: ProductsSettings) -> None:
    """Delivery runs at a lower CPU priority than the threads serving requests, so on busy
    cores a sale goes first (bench/webhooks.py measures the sale rate this keeps)."""
    runner = WebhookRunner(settings, sources=("products",))
    runner.start()
    try:

        def niced() -> list[int]:
            return [os.getpriority(os.PRIO_PROCESS, t.native_id or 0) for t in runner.threads]

        deadline = time.monotonic() + 5  # each thread sets its own as it starts running
        while niced() != [BACKGROUND_NICE] * len(runner.threads) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert niced() == [BACKGROUND_NICE] * 2  # claiming, and fanning the outbox out
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < BACKGROUND_NICE
    finally:
        runner.stop()
