"""Low-stock alerts as state changes (products_service/inventory/alerts.py).

The stock-alerts consumer appends one ``stock.health_changed`` to products_outbox when a
product's health, as the low-stock list reckons it, changes, and none while it stays. Every
change here goes through the HTTP API; ``catch_up`` then runs the consumer to the end of the
outbox. The app's own background loop may already have done part of that: the consumer's
position lock serialises them, so what is announced is the same either way.
"""

import itertools
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from common import outbox
from common.contracts import RESERVATIONS_PATH, SALE_STOCK_PATH
from common.db import make_sessionmaker
from common.models import ProductsEvent, StockHealthState
from products_service.inventory.alerts import CONSUMER, HEALTH_CHANGED, catch_up
from tests.conftest import LiveServer, all_at_once
from tests.products_service.factories import (
    API,
    create_product,
    create_warehouse,
    main_warehouse_id,
    make_product,
    receive_stock,
)

Headers = dict[str, str]
Client = TestClient | httpx.Client
_keys = itertools.count(1)
URGENCY = ["ok", "low", "critical", "out"]


# --- helpers ------------------------------------------------------------------------------


def alerts(engine: Engine, product_id: int) -> list[ProductsEvent]:
    """The product's ``stock.health_changed`` events, in outbox order."""
    with make_sessionmaker(engine)() as session:
        return list(
            session.scalars(
                select(ProductsEvent)
                .where(ProductsEvent.type == HEALTH_CHANGED, ProductsEvent.subject_id == product_id)
                .order_by(ProductsEvent.id)
            )
        )


def crossings(engine: Engine, product_id: int) -> list[tuple[str, str]]:
    """(from, to) of each of the product's alerts, once the consumer has caught up."""
    catch_up(engine)
    return [(str(e.payload["from"]), str(e.payload["to"])) for e in alerts(engine, product_id)]


def announced(engine: Engine, product_id: int) -> str | None:
    with make_sessionmaker(engine)() as session:
        return session.scalar(
            select(StockHealthState.health).where(StockHealthState.product_id == product_id)
        )


@contextmanager
def one_batch(engine: Engine) -> Iterator[None]:
    """Holds the consumer's position, keeping every consumer (the app's own loop too) off
    until what is done inside has committed: then one pass reads all of it at once."""
    with engine.begin() as holding:
        outbox.lock_position(holding, CONSUMER)
        yield


def listed_health(client: Client, headers: Headers, product_id: int) -> str:
    """The product's health on the low-stock list (every product, ok ones too)."""
    response = client.get(
        f"{API}/inventory/low-stock", params={"include_ok": True, "limit": 200}, headers=headers
    )
    assert response.status_code == 200, response.text
    [row] = [r for r in response.json()["items"] if r["product_id"] == product_id]
    health: str = row["health"]
    return health


def post(client: Client, path: str, body: dict[str, Any], headers: Headers) -> httpx.Response:
    """POST, sent again while the answer is 503 ``database_busy`` (it changed nothing).

    A sale's take and a receipt on the same product, at once, can deadlock each other in
    products_service (the take locks the product row, then its levels; a receipt locks the
    level, then the product row through its movement's foreign key); the loser is told to
    retry, and the concurrency test here does."""
    for attempt in range(1, 31):
        response = client.post(path, json=body, headers=headers)
        if response.status_code != 503 or response.json()["error"] != "database_busy":
            break
        time.sleep(random.uniform(0, 0.02 * attempt))
    return response


def receive(client: Client, headers: Headers, product: int, warehouse: int, quantity: int) -> None:
    body = {"product_id": product, "warehouse_id": warehouse, "quantity": quantity}
    response = post(client, f"{API}/inventory/receipts", body, headers)
    assert response.status_code == 201, response.text


def adjust(client: Client, headers: Headers, product: int, warehouse: int, quantity: int) -> None:
    body = {
        "product_id": product,
        "warehouse_id": warehouse,
        "quantity": quantity,
        "reason": "stock count correction",
    }
    response = client.post(f"{API}/inventory/adjustments", json=body, headers=headers)
    assert response.status_code == 201, response.text


def sell(client: Client, service_headers: Headers, product: int, quantity: int) -> int:
    """Take a sale's stock as sales_service does; returns the status code (201 or 409)."""
    body = {
        "key": f"alert-sale-{next(_keys):06d}",
        "lines": [{"product_id": product, "quantity": quantity}],
    }
    response = post(client, SALE_STOCK_PATH, body, service_headers)
    assert response.status_code in (201, 409), response.text
    return response.status_code


def patch(client: TestClient, headers: Headers, product: int, **fields: Any) -> None:
    response = client.patch(f"{API}/products/{product}", json=fields, headers=headers)
    assert response.status_code == 200, response.text


def assert_one_chain(transitions: list[tuple[str, str]], final: str) -> None:
    """Each alert starts where the one before it ended, none repeats a health, the first
    leaves ``ok`` (never announced) and the last ends where the product is."""
    assert transitions, "no alert at all"
    assert transitions[0][0] == "ok"
    for (_, before), (after, _) in itertools.pairwise(transitions):
        assert before == after, transitions
    assert all(was != now for was, now in transitions), transitions
    assert transitions[-1][1] == final, transitions


# --- crossings ----------------------------------------------------------------------------


def test_falling_stock_is_announced_once_per_crossing_and_never_while_it_stays(
    client: TestClient, engine: Engine, manager_headers: Headers, service_headers: Headers
) -> None:
    main = main_warehouse_id(engine)
    product = make_product(
        client, manager_headers, "ALERT-1", name="Teapot", low_stock_threshold=10
    )["id"]
    receive(client, manager_headers, product, main, 30)
    assert sell(client, service_headers, product, 15) == 201  # 15: ok
    assert crossings(engine, product) == []

    assert sell(client, service_headers, product, 6) == 201  # 9: low
    assert crossings(engine, product) == [("ok", "low")]
    for _ in range(2):  # 8, 7: still low
        assert sell(client, service_headers, product, 1) == 201
        assert crossings(engine, product) == [("ok", "low")]

    assert sell(client, service_headers, product, 2) == 201  # 5: half the threshold
    assert crossings(engine, product)[1:] == [("low", "critical")]
    assert sell(client, service_headers, product, 1) == 201  # 4: still critical
    adjust(client, manager_headers, product, main, -4)  # 0: out
    assert crossings(engine, product)[2:] == [("critical", "out")]
    receive(client, manager_headers, product, main, 25)  # 25: above the threshold again

    assert crossings(engine, product) == [
        ("ok", "low"),
        ("low", "critical"),
        ("critical", "out"),
        ("out", "ok"),
    ]
    first = alerts(engine, product)[0]
    assert first.subject_id == product
    assert first.payload == {
        "product_id": product,
        "sku": "ALERT-1",
        "name": "Teapot",
        "category_id": None,
        "from": "ok",
        "to": "low",
        "available": 9,
        "on_hand": 9,
        "reserved": 0,
        "threshold": 10,
        "archived": False,
    }
    assert announced(engine, product) == "ok" == listed_health(client, manager_headers, product)


def test_a_threshold_change_is_announced_when_it_changes_the_health_and_other_edits_are_not(
    client: TestClient, engine: Engine, manager_headers: Headers
) -> None:
    product = make_product(client, manager_headers, "ALERT-2", low_stock_threshold=5)["id"]
    receive(client, manager_headers, product, main_warehouse_id(engine), 8)  # ok
    patch(client, manager_headers, product, name="Renamed", price="12.00")
    patch(client, manager_headers, product, status="inactive")
    assert crossings(engine, product) == []

    patch(client, manager_headers, product, low_stock_threshold=10)  # 8 <= 10: low
    assert crossings(engine, product) == [("ok", "low")]
    patch(client, manager_headers, product, low_stock_threshold=12)  # still low
    assert crossings(engine, product) == [("ok", "low")]
    patch(client, manager_headers, product, low_stock_threshold=16)  # 8 <= 16 / 2: critical
    assert crossings(engine, product)[1:] == [("low", "critical")]
    patch(client, manager_headers, product, low_stock_threshold=3)  # ok
    assert crossings(engine, product)[2:] == [("critical", "ok")]

    events = alerts(engine, product)
    assert [(e.payload["from"], e.payload["to"], e.payload["threshold"]) for e in events] == [
        ("ok", "low", 10),
        ("low", "critical", 16),
        ("critical", "ok", 3),
    ]
    assert {e.payload["name"] for e in events} == {"Renamed"}


def test_stock_in_every_active_warehouse_counts_together(
    client: TestClient, engine: Engine, manager_headers: Headers, service_headers: Headers
) -> None:
    main = main_warehouse_id(engine)
    north = create_warehouse(engine)
    closed = create_warehouse(engine, is_active=False)
    product = make_product(client, manager_headers, "ALERT-3", low_stock_threshold=10)["id"]
    with one_batch(engine):
        receive(client, manager_headers, product, main, 6)
        receive(client, manager_headers, product, north, 6)
    assert crossings(engine, product) == []  # 12 in all, though each warehouse holds 6

    assert sell(client, service_headers, product, 3) == 201  # 9 in all: low
    receive_stock(engine, product_id=product, warehouse_id=closed, quantity=50)  # counts nowhere
    assert crossings(engine, product) == [("ok", "low")]
    [alert] = alerts(engine, product)
    assert (alert.payload["available"], alert.payload["on_hand"]) == (9, 9)
    assert listed_health(client, manager_headers, product) == "low"


def test_held_stock_counts_as_gone_until_its_reservation_is_released(
    client: TestClient, engine: Engine, manager_headers: Headers, service_headers: Headers
) -> None:
    product = make_product(client, manager_headers, "ALERT-4", low_stock_threshold=10)["id"]
    receive(client, manager_headers, product, main_warehouse_id(engine), 14)
    body = {"idempotency_key": "alert-hold-1", "lines": [{"product_id": product, "quantity": 6}]}
    held = client.post(RESERVATIONS_PATH, json=body, headers=service_headers)
    assert held.status_code == 201, held.text
    assert crossings(engine, product) == [("ok", "low")]
    [alert] = alerts(engine, product)
    assert (alert.payload["available"], alert.payload["on_hand"], alert.payload["reserved"]) == (
        8,
        14,
        6,
    )

    released = client.post(
        f"{RESERVATIONS_PATH}/{held.json()['id']}/release", headers=service_headers
    )
    assert released.status_code == 200, released.text
    assert crossings(engine, product) == [("ok", "low"), ("low", "ok")]


def test_an_archived_product_is_announced_back_to_ok_and_restored_as_it_stands(
    client: TestClient, engine: Engine, manager_headers: Headers, service_headers: Headers
) -> None:
    main = main_warehouse_id(engine)
    product = make_product(client, manager_headers, "ALERT-5", low_stock_threshold=10)["id"]
    receive(client, manager_headers, product, main, 7)
    assert crossings(engine, product) == [("ok", "low")]

    path = f"{API}/products/{product}"
    assert client.post(f"{path}/archive", headers=manager_headers).status_code == 200
    # Stock still moves (a sale given back, here a movement written directly): no alert.
    receive_stock(engine, product_id=product, warehouse_id=main, quantity=1)
    assert crossings(engine, product)[1:] == [("low", "ok")]
    assert alerts(engine, product)[-1].payload["archived"] is True

    assert client.post(f"{path}/restore", headers=manager_headers).status_code == 200
    assert crossings(engine, product)[2:] == [("ok", "low")]
    assert alerts(engine, product)[-1].payload["archived"] is False


# --- batches, the background loop, concurrency -------------------------------------------


def test_changes_within_one_batch_are_announced_once_where_they_end(
    client: TestClient, engine: Engine, manager_headers: Headers, service_headers: Headers
) -> None:
    main = main_warehouse_id(engine)
    back = make_product(client, manager_headers, "ALERT-6", low_stock_threshold=10)["id"]
    down = make_product(client, manager_headers, "ALERT-7", low_stock_threshold=10)["id"]
    receive(client, manager_headers, back, main, 20)
    receive(client, manager_headers, down, main, 20)
    catch_up(engine)

    with one_batch(engine):
        assert sell(client, service_headers, back, 12) == 201  # 8: low
        assert sell(client, service_headers, back, 5) == 201  # 3: critical
        receive(client, manager_headers, back, main, 30)  # 33: ok again
        for _ in range(3):
            assert sell(client, service_headers, down, 6) == 201  # 14, 8 (low), 2 (critical)

    assert crossings(engine, back) == []
    assert crossings(engine, down) == [("ok", "critical")]
    assert announced(engine, back) is None  # never left ok as far as anyone was told


def test_the_running_service_announces_without_being_asked(
    client: TestClient, engine: Engine, manager_headers: Headers, service_headers: Headers
) -> None:
    product = make_product(client, manager_headers, "ALERT-8", low_stock_threshold=10)["id"]
    receive(client, manager_headers, product, main_warehouse_id(engine), 12)
    assert sell(client, service_headers, product, 3) == 201

    deadline = time.monotonic() + 15
    while not alerts(engine, product) and time.monotonic() < deadline:
        time.sleep(0.1)
    [alert] = alerts(engine, product)
    assert (alert.payload["from"], alert.payload["to"]) == ("ok", "low")


@pytest.fixture
def http(live_products: LiveServer) -> Iterator[httpx.Client]:
    limits = httpx.Limits(max_connections=30, max_keepalive_connections=30)
    with httpx.Client(base_url=live_products.url, timeout=60, limits=limits) as client:
        yield client


@pytest.mark.live
def test_concurrent_movements_on_one_product_are_announced_as_one_chain_in_order(
    http: httpx.Client, engine: Engine, manager_headers: Headers, service_headers: Headers
) -> None:
    """Sales and receipts at once on a 2-worker server (whose two consumers compete), with
    more consumers catching up from threads meanwhile."""
    main = main_warehouse_id(engine)
    product = create_product(engine, stock={main: 30})  # threshold 10: ok
    calls: list[Callable[[], object]] = []
    for i in range(60):
        calls.append(lambda: sell(http, service_headers, product, 1))
        if i % 6 == 5:
            calls.append(lambda: receive(http, manager_headers, product, main, 2))
        if i % 10 == 9:
            calls.append(lambda: catch_up(engine))

    all_at_once(calls, workers=20)
    final = listed_health(http, manager_headers, product)

    transitions = crossings(engine, product)
    assert_one_chain(transitions, final)
    assert announced(engine, product) == final


@pytest.mark.live
def test_stock_that_only_falls_is_announced_in_order_of_urgency_each_health_once(
    http: httpx.Client, engine: Engine, service_headers: Headers
) -> None:
    main = main_warehouse_id(engine)
    product = create_product(engine, stock={main: 24})  # threshold 10
    calls: list[Callable[[], object]] = [
        lambda: sell(http, service_headers, product, 1) for _ in range(30)
    ]
    calls += [lambda: catch_up(engine) for _ in range(4)]

    all_at_once(calls, workers=20)

    transitions = crossings(engine, product)
    assert_one_chain(transitions, "out")
    reached = [URGENCY.index(now) for _, now in transitions]
    assert reached == sorted(set(reached))
