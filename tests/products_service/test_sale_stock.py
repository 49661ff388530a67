"""The sale-stock API sales_service takes a sale's stock by: take, give back, void, read.

Only a service token passes (``common.auth.security.create_service_token``); every test
goes through the HTTP API against the real database. The concurrency tests run against a
live 2-worker server (``live_products``), since the in-process client serialises requests.
"""

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from common.auth.security import create_service_token
from common.contracts import RESERVATIONS_PATH, SALE_STOCK_PATH, InsufficientStockBody
from common.db import make_sessionmaker
from common.models import MovementType, ProductsEvent, ProductStatus, Role, SaleStockTake, User
from common.settings import ProductsSettings
from products_service.inventory.alerts import HEALTH_CHANGED
from tests.conftest import LiveServer, all_at_once
from tests.products_service.factories import (
    API,
    AvailabilityWatch,
    create_product,
    create_warehouse,
    ledger_problems,
    level,
    main_warehouse_id,
    make_category,
    make_product,
    movements,
    receive_stock,
    short_line,
)

T = TypeVar("T")
_keys = itertools.count(1)
Headers = dict[str, str]


def new_key() -> str:
    return f"sale-attempt-{next(_keys):06d}"


def line(product_id: int, quantity: int) -> dict[str, int]:
    return {"product_id": product_id, "quantity": quantity}


def payload(key: str, *lines: dict[str, int], actor_id: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"key": key, "lines": list(lines)}
    if actor_id is not None:
        body["actor_id"] = actor_id
    return body


def take(client: TestClient, headers: Headers, body: dict[str, Any]) -> Any:
    return client.post(SALE_STOCK_PATH, json=body, headers=headers)


def give_back(client: TestClient, headers: Headers, key: str) -> Any:
    return client.post(f"{SALE_STOCK_PATH}/{key}/return", headers=headers)


def allocations(answer: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    """(line_no, product_id, warehouse_id, quantity) of every allocation, sorted."""
    return sorted(
        (ln["line_no"], ln["product_id"], a["warehouse_id"], a["quantity"])
        for ln in answer["lines"]
        for a in ln["allocations"]
    )


def take_count(engine: Engine) -> int:
    with make_sessionmaker(engine)() as session:
        return session.scalar(select(func.count()).select_from(SaleStockTake)) or 0


def last_event_id(engine: Engine) -> int:
    with make_sessionmaker(engine)() as session:
        return session.scalar(select(func.max(ProductsEvent.id))) or 0


def events_after(engine: Engine, after_id: int, type_: str | None = None) -> list[ProductsEvent]:
    """products_outbox rows appended after ``after_id``, in id order; not the stock alerts,
    which the stock-alerts consumer appends later, in transactions of its own."""
    with make_sessionmaker(engine)() as session:
        stmt = (
            select(ProductsEvent)
            .where(ProductsEvent.id > after_id, ProductsEvent.type != HEALTH_CHANGED)
            .order_by(ProductsEvent.id)
        )
        if type_ is not None:
            stmt = stmt.where(ProductsEvent.type == type_)
        return list(session.scalars(stmt))


def product_card(client: TestClient, headers: Headers, product_id: int) -> dict[str, Any]:
    response = client.get(f"{API}/products/{product_id}", headers=headers)
    assert response.status_code == 200, response.text
    card: dict[str, Any] = response.json()
    return card


@pytest.fixture
def main(engine: Engine) -> int:
    return main_warehouse_id(engine)


@pytest.fixture(scope="module")
def service_headers(settings: ProductsSettings) -> Headers:
    token, _ = create_service_token("sales_service", settings)
    return {"Authorization": f"Bearer {token}"}


# --- take ---------------------------------------------------------------------------------


def test_a_take_takes_every_line_from_the_warehouses_with_the_most_and_answers_snapshots(
    client: TestClient,
    engine: Engine,
    main: int,
    service_headers: Headers,
    manager_headers: Headers,
    viewer_headers: Headers,
    users: dict[Role, User],
) -> None:
    north = create_warehouse(engine)
    shirt = create_product(engine, stock={main: 3, north: 5})
    category = make_category(client, manager_headers, "Mugs")
    mug = make_product(
        client,
        manager_headers,
        "MUG-RED",
        name="Red mug",
        price="12.50",
        cost_price="5.10",
        category_id=category["id"],
    )["id"]
    receive_stock(engine, product_id=mug, warehouse_id=main, quantity=4)
    shirt_card = product_card(client, viewer_headers, shirt)
    key = new_key()
    actor = users[Role.MANAGER].id

    response = take(
        client, service_headers, payload(key, line(shirt, 7), line(mug, 4), actor_id=actor)
    )

    assert response.status_code == 201, response.text
    answer = response.json()
    assert (answer["key"], answer["status"]) == (key, "taken")
    snapshots = [
        {k: ln[k] for k in ("line_no", "product_id", "quantity", "sku", "name", "category_id")}
        | {"price": ln["price"], "cost_price": ln["cost_price"]}
        for ln in answer["lines"]
    ]
    assert snapshots == [
        {
            "line_no": 1,
            "product_id": shirt,
            "quantity": 7,
            "sku": shirt_card["sku"],
            "name": shirt_card["name"],
            "category_id": None,
            "price": "19.90",
            "cost_price": "7.25",
        },
        {
            "line_no": 2,
            "product_id": mug,
            "quantity": 4,
            "sku": "MUG-RED",
            "name": "Red mug",
            "category_id": category["id"],
            "price": "12.50",
            "cost_price": "5.10",
        },
    ]
    # the most stocked warehouse first, then the rest from the next one
    assert allocations(answer) == sorted(
        [(1, shirt, north, 5), (1, shirt, main, 2), (2, mug, main, 4)]
    )

    assert level(engine, shirt, main) == (1, 0)
    assert level(engine, shirt, north) == (0, 0)
    assert level(engine, mug, main) == (0, 0)
    assert product_card(client, viewer_headers, shirt)["totals"]["on_hand"] == 1
    sales = movements(engine, shirt, MovementType.SALE) + movements(engine, mug, MovementType.SALE)
    assert sorted((m.product_id, m.warehouse_id, m.quantity, m.on_hand_after) for m in sales) == (
        sorted([(shirt, main, -2, 1), (shirt, north, -5, 0), (mug, main, -4, 0)])
    )
    assert {(m.reference, m.actor_id) for m in sales} == {(f"sale:{key}", actor)}

    got = client.get(f"{SALE_STOCK_PATH}/{key}", headers=service_headers)
    assert got.status_code == 200, got.text
    assert got.json() == answer
    assert ledger_problems(engine) == []


def test_two_lines_of_one_product_share_its_stock(
    client: TestClient, engine: Engine, main: int, service_headers: Headers
) -> None:
    product = create_product(engine, stock={main: 5})
    too_much = take(client, service_headers, payload(new_key(), line(product, 3), line(product, 3)))
    assert too_much.status_code == 409
    assert [(s["line_no"], s["available"]) for s in too_much.json()["lines"]] == [(2, 2)]
    assert level(engine, product, main) == (5, 0)

    exact = take(client, service_headers, payload(new_key(), line(product, 3), line(product, 2)))
    assert exact.status_code == 201, exact.text
    assert allocations(exact.json()) == [(1, product, main, 3), (2, product, main, 2)]
    assert level(engine, product, main) == (0, 0)
    assert sorted(m.on_hand_after for m in movements(engine, product, MovementType.SALE)) == [0, 2]
    assert ledger_problems(engine) == []


def test_the_same_key_and_lines_again_answer_the_first_take_and_take_the_stock_once(
    client: TestClient, engine: Engine, main: int, service_headers: Headers
) -> None:
    product = create_product(engine, stock={main: 10})
    key = new_key()
    body = payload(key, line(product, 3))
    first = take(client, service_headers, body)
    again = take(client, service_headers, body)
    # the same request spelled differently (the default written out, keys reordered)
    spelled_out = {"lines": body["lines"], "actor_id": None, "key": key}
    third = take(client, service_headers, spelled_out)

    assert (first.status_code, again.status_code, third.status_code) == (201, 200, 200)
    assert first.json() == again.json() == third.json()
    assert level(engine, product, main) == (7, 0)
    assert len(movements(engine, product, MovementType.SALE)) == 1
    assert take_count(engine) == 1


def test_the_same_key_with_other_lines_is_refused_and_takes_nothing(
    client: TestClient, engine: Engine, main: int, service_headers: Headers
) -> None:
    product = create_product(engine, stock={main: 10})
    other_product = create_product(engine, stock={main: 10})
    key = new_key()
    assert take(client, service_headers, payload(key, line(product, 3))).status_code == 201

    for other in (
        payload(key, line(product, 4)),
        payload(key, line(other_product, 3)),
        payload(key, line(product, 3), line(other_product, 1)),
    ):
        response = take(client, service_headers, other)
        assert response.status_code == 422, other
        assert response.json()["error"] == "idempotency_key_reused"
        assert key in response.json()["detail"]

    assert level(engine, product, main) == (7, 0)
    assert level(engine, other_product, main) == (10, 0)
    assert len(movements(engine, product, MovementType.SALE)) == 1
    assert movements(engine, other_product, MovementType.SALE) == []
    assert take_count(engine) == 1


def test_one_short_line_refuses_the_whole_take_and_is_the_one_named(
    client: TestClient, engine: Engine, main: int, service_headers: Headers
) -> None:
    plenty = create_product(engine, stock={main: 10})
    scarce = create_product(engine, stock={main: 3})
    also_plenty = create_product(engine, stock={main: 10})
    key = new_key()
    body = payload(key, line(plenty, 2), line(scarce, 5), line(also_plenty, 1))
    before = last_event_id(engine)

    response = take(client, service_headers, body)

    assert response.status_code == 409, response.text
    refusal = InsufficientStockBody.model_validate(response.json())
    assert refusal.error == "insufficient_stock"
    assert [s.model_dump() for s in refusal.lines] == [
        short_line(engine, line_no=2, product_id=scarce, requested=5, available=3)
    ]
    assert "line 2" in refusal.detail
    assert [(f.field, f.type) for f in refusal.fields] == [
        ("body.lines.1.quantity", "insufficient_stock")
    ]
    for product, on_hand in ((plenty, 10), (scarce, 3), (also_plenty, 10)):
        assert level(engine, product, main) == (on_hand, 0)
        assert movements(engine, product, MovementType.SALE) == []
    assert take_count(engine) == 0
    assert client.get(f"{SALE_STOCK_PATH}/{key}", headers=service_headers).status_code == 404
    assert events_after(engine, before) == []

    # a refused take leaves its key free: once the stock is there, the same call takes it
    receive_stock(engine, product_id=scarce, warehouse_id=main, quantity=2)
    retried = take(client, service_headers, body)
    assert retried.status_code == 201, retried.text
    assert level(engine, scarce, main) == (0, 0)
    assert ledger_problems(engine) == []


def test_stock_held_by_a_reservation_or_in_an_inactive_warehouse_is_not_sold(
    client: TestClient,
    engine: Engine,
    main: int,
    service_headers: Headers,
    manager_headers: Headers,
) -> None:
    closed = create_warehouse(engine, is_active=False)
    product = create_product(engine, stock={main: 5, closed: 20})
    held = client.post(
        RESERVATIONS_PATH,
        json={"idempotency_key": "hold-for-take", "lines": [line(product, 3)]},
        headers=service_headers,
    )
    assert held.status_code == 201, held.text

    response = take(client, service_headers, payload(new_key(), line(product, 3)))

    assert response.status_code == 409, response.text
    assert response.json()["lines"] == [
        short_line(engine, line_no=1, product_id=product, requested=3, available=2)
    ]
    assert level(engine, product, main) == (5, 3)
    assert level(engine, product, closed) == (20, 0)
    assert movements(engine, product, MovementType.SALE) == []
    assert take_count(engine) == 0


def test_unknown_archived_inactive_or_draft_products_are_422_naming_each_line(
    client: TestClient, engine: Engine, main: int, service_headers: Headers
) -> None:
    active = create_product(engine, stock={main: 5})
    archived = create_product(engine, stock={main: 5}, archived=True)
    inactive = create_product(engine, stock={main: 5}, status=ProductStatus.INACTIVE)
    draft = create_product(engine, stock={main: 5}, status=ProductStatus.DRAFT)
    key = new_key()
    before = last_event_id(engine)

    response = take(
        client,
        service_headers,
        payload(
            key,
            line(active, 1),
            line(999_999, 1),
            line(archived, 1),
            line(inactive, 1),
            line(draft, 1),
        ),
    )

    assert response.status_code == 422, response.text
    assert response.json()["error"] == "unprocessable"
    assert response.json()["lines"] == [
        {"line_no": 2, "product_id": 999_999, "reason": "unknown product"},
        {"line_no": 3, "product_id": archived, "reason": "product is archived"},
        {"line_no": 4, "product_id": inactive, "reason": "product is inactive"},
        {"line_no": 5, "product_id": draft, "reason": "product is draft"},
    ]
    detail = response.json()["detail"]
    assert all(f"line {n}" in detail for n in (2, 3, 4, 5))
    assert "line 1" not in detail
    for product in (active, archived, inactive, draft):
        assert level(engine, product, main) == (5, 0)
        assert movements(engine, product, MovementType.SALE) == []
    assert take_count(engine) == 0
    assert events_after(engine, before) == []
    assert client.get(f"{SALE_STOCK_PATH}/{key}", headers=service_headers).status_code == 404


def test_malformed_takes_are_422_and_take_nothing(
    client: TestClient, engine: Engine, main: int, service_headers: Headers
) -> None:
    product = create_product(engine, stock={main: 5})
    for body in (
        payload(new_key()),  # no lines
        payload("short", line(product, 1)),  # key under 8 characters
        payload("has spaces in it", line(product, 1)),
        payload(new_key(), line(product, 0)),
        payload(new_key(), line(product, -1)),
        {**payload(new_key(), line(product, 1)), "warehouse_id": main},  # unknown field
    ):
        response = take(client, service_headers, body)
        assert response.status_code == 422, body
        assert response.json()["error"] == "validation_error"
    assert level(engine, product, main) == (5, 0)
    assert take_count(engine) == 0


# --- who may call it ----------------------------------------------------------------------


def test_only_the_sales_service_may_take_give_back_or_read_sale_stock(
    client: TestClient,
    engine: Engine,
    main: int,
    settings: ProductsSettings,
    service_headers: Headers,
    admin_headers: Headers,
    manager_headers: Headers,
    viewer_headers: Headers,
) -> None:
    product = create_product(engine, stock={main: 5})
    taken_key = new_key()
    assert take(client, service_headers, payload(taken_key, line(product, 1))).status_code == 201
    other_service, _ = create_service_token("reports_service", settings)
    key = new_key()
    body = payload(key, line(product, 2))

    refused: list[tuple[Headers, int]] = [
        (admin_headers, 403),
        (manager_headers, 403),
        (viewer_headers, 403),
        ({"Authorization": f"Bearer {other_service}"}, 403),
        ({}, 401),
        ({"Authorization": "Bearer not-a-token"}, 401),
    ]
    for headers, expected in refused:
        assert take(client, headers, body).status_code == expected, headers
        for k in (key, taken_key):
            assert give_back(client, headers, k).status_code == expected, headers
            assert client.get(f"{SALE_STOCK_PATH}/{k}", headers=headers).status_code == expected

    # nothing was taken, given back or voided by any of them
    assert level(engine, product, main) == (4, 0)
    assert movements(engine, product, MovementType.RETURN) == []
    assert take_count(engine) == 1
    got = client.get(f"{SALE_STOCK_PATH}/{taken_key}", headers=service_headers)
    assert got.json()["status"] == "taken"
    assert take(client, service_headers, body).status_code == 201
    assert level(engine, product, main) == (2, 0)


# --- give back and void -------------------------------------------------------------------


def test_giving_a_take_back_returns_its_stock_once_to_the_shelves_it_came_from(
    client: TestClient,
    engine: Engine,
    main: int,
    service_headers: Headers,
    users: dict[Role, User],
) -> None:
    north = create_warehouse(engine)
    product = create_product(engine, stock={main: 3, north: 5})
    key = new_key()
    body = payload(key, line(product, 7), actor_id=users[Role.MANAGER].id)
    taken = take(client, service_headers, body)
    assert taken.status_code == 201, taken.text
    assert level(engine, product, main).on_hand + level(engine, product, north).on_hand == 1

    returned = give_back(client, service_headers, key)

    assert returned.status_code == 200, returned.text
    assert returned.json()["status"] == "returned"
    assert returned.json()["lines"] == taken.json()["lines"]
    assert level(engine, product, main) == (3, 0)
    assert level(engine, product, north) == (5, 0)
    returns = movements(engine, product, MovementType.RETURN)
    assert sorted((m.warehouse_id, m.quantity, m.on_hand_after) for m in returns) == sorted(
        [(main, 2, 3), (north, 5, 5)]
    )
    assert {(m.reference, m.actor_id) for m in returns} == {(f"sale:{key}", users[Role.MANAGER].id)}
    got = client.get(f"{SALE_STOCK_PATH}/{key}", headers=service_headers)
    assert got.json()["status"] == "returned"

    # giving back again, or retrying the take, changes nothing
    again = give_back(client, service_headers, key)
    assert again.status_code == 200
    assert again.json() == returned.json()
    retried = take(client, service_headers, body)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "returned"
    assert level(engine, product, main) == (3, 0)
    assert level(engine, product, north) == (5, 0)
    assert len(movements(engine, product, MovementType.RETURN)) == 2
    assert len(movements(engine, product, MovementType.SALE)) == 2
    assert ledger_problems(engine) == []


def test_giving_back_a_key_never_taken_voids_it_and_a_later_take_is_refused(
    client: TestClient, engine: Engine, main: int, service_headers: Headers
) -> None:
    product = create_product(engine, stock={main: 5})
    key = new_key()

    voided = give_back(client, service_headers, key)

    assert voided.status_code == 200, voided.text
    assert (voided.json()["key"], voided.json()["status"], voided.json()["lines"]) == (
        key,
        "voided",
        [],
    )
    assert client.get(f"{SALE_STOCK_PATH}/{key}", headers=service_headers).json()["status"] == (
        "voided"
    )

    late = take(client, service_headers, payload(key, line(product, 2)))
    assert late.status_code == 409, late.text
    assert late.json()["error"] == "invalid_state"
    assert late.json()["key"] == key
    assert level(engine, product, main) == (5, 0)
    assert movements(engine, product, MovementType.SALE) == []

    again = give_back(client, service_headers, key)
    assert again.status_code == 200
    assert again.json()["status"] == "voided"
    assert level(engine, product, main) == (5, 0)
    assert movements(engine, product, MovementType.RETURN) == []
    assert take_count(engine) == 1
    assert ledger_problems(engine) == []


def test_an_unknown_key_is_404(client: TestClient, service_headers: Headers) -> None:
    response = client.get(f"{SALE_STOCK_PATH}/{new_key()}", headers=service_headers)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


# --- events -------------------------------------------------------------------------------


def test_a_take_appends_one_event_with_its_movements_and_a_give_back_one_per_movement(
    client: TestClient, engine: Engine, main: int, service_headers: Headers
) -> None:
    north = create_warehouse(engine)
    shirt = create_product(engine, stock={main: 3, north: 5})
    mug = create_product(engine, stock={main: 4})
    key = new_key()
    before_take = last_event_id(engine)

    assert take(
        client, service_headers, payload(key, line(shirt, 7), line(mug, 1))
    ).status_code == (201)

    [taken] = events_after(engine, before_take, "sale_stock.taken")
    assert taken.payload["key"] == key
    moved = taken.payload["movements"]
    assert isinstance(moved, list)
    sales = movements(engine, shirt, MovementType.SALE) + movements(engine, mug, MovementType.SALE)
    assert sorted(
        (
            m["product_id"],
            m["warehouse_id"],
            m["movement_type"],
            m["quantity"],
            m["on_hand_after"],
            m["reserved_after"],
            m["reference"],
        )
        for m in moved
    ) == sorted(
        (m.product_id, m.warehouse_id, "sale", m.quantity, m.on_hand_after, 0, f"sale:{key}")
        for m in sales
    )
    assert sorted((m["product_id"], m["warehouse_id"], m["on_hand_after"]) for m in moved) == (
        sorted([(shirt, main, 1), (shirt, north, 0), (mug, main, 3)])
    )
    # a retry appends nothing
    before_retry = last_event_id(engine)
    assert take(
        client, service_headers, payload(key, line(shirt, 7), line(mug, 1))
    ).status_code == (200)
    assert events_after(engine, before_retry) == []

    before_return = last_event_id(engine)
    assert give_back(client, service_headers, key).status_code == 200

    stock_moved = events_after(engine, before_return, "stock.moved")
    returns = movements(engine, shirt, MovementType.RETURN) + movements(
        engine, mug, MovementType.RETURN
    )
    assert len(returns) == 3
    assert sorted(
        (
            e.subject_id,
            e.payload["movement_id"],
            e.payload["product_id"],
            e.payload["warehouse_id"],
            e.payload["movement_type"],
            e.payload["quantity"],
            e.payload["on_hand_after"],
            e.payload["reference"],
        )
        for e in stock_moved
    ) == sorted(
        (
            m.product_id,
            m.id,
            m.product_id,
            m.warehouse_id,
            "return",
            m.quantity,
            m.on_hand_after,
            f"sale:{key}",
        )
        for m in returns
    )
    assert sorted((m.product_id, m.warehouse_id, m.on_hand_after) for m in returns) == sorted(
        [(shirt, main, 3), (shirt, north, 5), (mug, main, 4)]
    )
    # giving back again appends nothing
    before_again = last_event_id(engine)
    assert give_back(client, service_headers, key).status_code == 200
    assert events_after(engine, before_again) == []


def test_voiding_a_key_appends_one_voided_event(
    client: TestClient, engine: Engine, main: int, service_headers: Headers
) -> None:
    product = create_product(engine, stock={main: 5})
    key = new_key()
    before = last_event_id(engine)
    assert give_back(client, service_headers, key).status_code == 200
    assert [(e.type, e.payload) for e in events_after(engine, before)] == [
        ("sale_stock.voided", {"key": key})
    ]
    assert take(client, service_headers, payload(key, line(product, 1))).status_code == 409
    assert give_back(client, service_headers, key).status_code == 200
    assert [e.type for e in events_after(engine, before)] == ["sale_stock.voided"]


# --- under real concurrency ---------------------------------------------------------------

WORKERS = 20


@pytest.fixture
def http(live_products: LiveServer, service_headers: Headers) -> Iterator[httpx.Client]:
    limits = httpx.Limits(max_connections=WORKERS + 10, max_keepalive_connections=WORKERS + 10)
    with httpx.Client(
        base_url=live_products.url, headers=service_headers, timeout=60, limits=limits
    ) as client:
        yield client


@pytest.mark.live
def test_twenty_takes_at_once_for_ten_units_sell_exactly_ten(
    http: httpx.Client, engine: Engine, main: int
) -> None:
    product = create_product(engine, stock={main: 10})

    def buy(i: int) -> Callable[[], httpx.Response]:
        return lambda: http.post(
            SALE_STOCK_PATH, json=payload(f"buyer-{i:04d}-key", line(product, 1))
        )

    with AvailabilityWatch(engine, product, main) as watch:
        responses = all_at_once([buy(i) for i in range(20)], workers=WORKERS)

    assert Counter(r.status_code for r in responses) == {201: 10, 409: 10}
    for refused in (r for r in responses if r.status_code == 409):
        assert refused.json()["error"] == "insufficient_stock"
        assert refused.json()["lines"] == [
            short_line(engine, line_no=1, product_id=product, requested=1, available=0)
        ]
    assert level(engine, product, main) == (0, 0)
    assert watch.samples > 0
    assert watch.lowest is not None and watch.lowest >= 0
    sales = movements(engine, product, MovementType.SALE)
    assert sorted(m.on_hand_after for m in sales) == list(range(10))
    assert take_count(engine) == 10
    assert ledger_problems(engine) == []


@pytest.mark.live
def test_one_key_sent_ten_times_at_once_takes_the_stock_once(
    http: httpx.Client, engine: Engine, main: int
) -> None:
    north = create_warehouse(engine)
    product = create_product(engine, stock={main: 4, north: 6})
    body = payload(new_key(), line(product, 8))
    responses = all_at_once([lambda: http.post(SALE_STOCK_PATH, json=body)] * 10, workers=WORKERS)
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.text for r in responses}) == 1
    assert level(engine, product, main).on_hand + level(engine, product, north).on_hand == 2
    assert take_count(engine) == 1
    assert ledger_problems(engine) == []


@pytest.mark.live
def test_takes_naming_the_same_products_in_any_order_do_not_deadlock(
    http: httpx.Client, engine: Engine, main: int
) -> None:
    a = create_product(engine, stock={main: 20})
    b = create_product(engine, stock={main: 20})

    def buy(i: int) -> Callable[[], httpx.Response]:
        lines = [line(a, 1), line(b, 1)] if i % 2 else [line(b, 1), line(a, 1)]
        return lambda: http.post(SALE_STOCK_PATH, json=payload(f"pair-{i:04d}-key", *lines))

    responses = all_at_once([buy(i) for i in range(20)], workers=WORKERS)
    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses]
    assert level(engine, a, main) == (0, 0)
    assert level(engine, b, main) == (0, 0)
    assert ledger_problems(engine) == []
