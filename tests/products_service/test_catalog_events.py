"""Catalog and stock events in products_outbox, appended by changes made through the API.

Each change appends its event in its own transaction; a change that changes nothing, or is
refused, appends none.
"""

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from common.db import make_sessionmaker
from common.models import ProductsEvent, Role, User
from products_service.inventory.alerts import HEALTH_CHANGED
from tests.products_service.factories import API, main_warehouse_id, make_category, make_product

Headers = dict[str, str]


def last_event_id(engine: Engine) -> int:
    with make_sessionmaker(engine)() as session:
        return session.scalar(select(func.max(ProductsEvent.id))) or 0


def events_after(engine: Engine, after_id: int) -> list[ProductsEvent]:
    """products_outbox rows appended after ``after_id``, in id order; not the stock alerts,
    which the stock-alerts consumer appends later, in transactions of its own."""
    with make_sessionmaker(engine)() as session:
        return list(
            session.scalars(
                select(ProductsEvent)
                .where(ProductsEvent.id > after_id, ProductsEvent.type != HEALTH_CHANGED)
                .order_by(ProductsEvent.id)
            )
        )


def patch(client: TestClient, headers: Headers, product_id: int, **fields: Any) -> Any:
    return client.patch(f"{API}/products/{product_id}", json=fields, headers=headers)


def receive(
    client: TestClient,
    headers: Headers,
    body: dict[str, Any],
    key: str | None = None,
) -> Any:
    sent = dict(headers)
    if key is not None:
        sent["Idempotency-Key"] = key
    return client.post(f"{API}/inventory/receipts", json=body, headers=sent)


def test_creating_a_product_appends_product_created_with_its_fields(
    client: TestClient, engine: Engine, manager_headers: Headers
) -> None:
    category = make_category(client, manager_headers, "Kitchen")
    before = last_event_id(engine)

    product = make_product(
        client,
        manager_headers,
        "KETTLE-1",
        name="Kettle",
        price="24.5",
        cost_price="11",
        category_id=category["id"],
        low_stock_threshold=4,
    )

    [created] = events_after(engine, before)
    assert created.type == "product.created"
    assert created.subject_id == product["id"]
    assert created.payload == {
        "product_id": product["id"],
        "sku": "KETTLE-1",
        "name": "Kettle",
        "category_id": category["id"],
        "price": "24.50",
        "cost_price": "11.00",
        "status": "active",
        "low_stock_threshold": 4,
    }
    assert created.occurred_at.utcoffset() is not None


def test_a_refused_create_appends_nothing(
    client: TestClient, engine: Engine, manager_headers: Headers
) -> None:
    make_product(client, manager_headers, "TAKEN-1")
    before = last_event_id(engine)
    duplicate = client.post(
        f"{API}/products",
        json={"sku": "TAKEN-1", "name": "Again", "price": "1.00", "cost_price": "0.50"},
        headers=manager_headers,
    )
    assert duplicate.status_code == 409
    invalid = client.post(
        f"{API}/products",
        json={"sku": "NEW-1", "name": "Bad price", "price": "1.001", "cost_price": "0.50"},
        headers=manager_headers,
    )
    assert invalid.status_code == 422
    assert events_after(engine, before) == []


def test_a_patch_appends_one_product_updated_naming_what_changed_and_what_it_was(
    client: TestClient, engine: Engine, manager_headers: Headers
) -> None:
    product = make_product(client, manager_headers, "LAMP-1", price="12.50")
    before = last_event_id(engine)

    response = patch(client, manager_headers, product["id"], price="15", low_stock_threshold=3)

    assert response.status_code == 200, response.text
    [updated] = events_after(engine, before)
    assert updated.type == "product.updated"
    assert updated.subject_id == product["id"]
    assert updated.payload["changed"] == ["low_stock_threshold", "price"]
    assert updated.payload["previous"] == {"low_stock_threshold": 10, "price": "12.50"}
    assert (updated.payload["price"], updated.payload["low_stock_threshold"]) == ("15.00", 3)
    assert updated.payload["sku"] == "LAMP-1"
    assert updated.payload["cost_price"] == "4.00"


def test_a_patch_that_changes_nothing_appends_no_event(
    client: TestClient, engine: Engine, manager_headers: Headers
) -> None:
    product = make_product(client, manager_headers, "DESK-1", price="99.00")
    before = last_event_id(engine)

    for fields in (
        {},
        {"price": "99.00"},
        {"price": "99", "low_stock_threshold": 10},
        {"name": product["name"], "sku": "DESK-1", "status": "active"},
    ):
        response = patch(client, manager_headers, product["id"], **fields)
        assert response.status_code == 200, (fields, response.text)

    assert events_after(engine, before) == []


def test_a_refused_patch_appends_nothing(
    client: TestClient, engine: Engine, manager_headers: Headers
) -> None:
    make_product(client, manager_headers, "CHAIR-1")
    product = make_product(client, manager_headers, "CHAIR-2")
    before = last_event_id(engine)
    assert patch(client, manager_headers, product["id"], sku="CHAIR-1").status_code == 409
    assert patch(client, manager_headers, product["id"], price="-1").status_code == 422
    assert events_after(engine, before) == []
    assert client.get(f"{API}/products/{product['id']}", headers=manager_headers).json()["sku"] == (
        "CHAIR-2"
    )


def test_archive_and_restore_append_their_events_once(
    client: TestClient, engine: Engine, manager_headers: Headers
) -> None:
    product = make_product(client, manager_headers, "SOFA-1")
    path = f"{API}/products/{product['id']}"
    before = last_event_id(engine)

    for action in ("archive", "archive", "restore", "restore"):
        response = client.post(f"{path}/{action}", headers=manager_headers)
        assert response.status_code == 200, response.text

    events = events_after(engine, before)
    assert [(e.type, e.subject_id) for e in events] == [
        ("product.archived", product["id"]),
        ("product.restored", product["id"]),
    ]
    assert {e.payload["sku"] for e in events} == {"SOFA-1"}


def test_a_receipt_appends_stock_moved_with_the_level_it_left(
    client: TestClient,
    engine: Engine,
    manager_headers: Headers,
    users: dict[Role, User],
) -> None:
    product = make_product(client, manager_headers, "RUG-1")
    main = main_warehouse_id(engine)
    target = {"product_id": product["id"], "warehouse_id": main}
    before = last_event_id(engine)

    first = receive(client, manager_headers, {**target, "quantity": 20, "reference": "PO-1"})
    second = receive(client, manager_headers, {**target, "quantity": 5}, key="receipt-rug-2")
    replayed = receive(client, manager_headers, {**target, "quantity": 5}, key="receipt-rug-2")

    assert (first.status_code, second.status_code, replayed.status_code) == (201, 201, 201)
    assert replayed.json() == second.json()
    events = events_after(engine, before)
    assert [(e.type, e.subject_id) for e in events] == [("stock.moved", product["id"])] * 2
    assert events[0].payload == {
        "movement_id": first.json()["movement"]["id"],
        "product_id": product["id"],
        "warehouse_id": main,
        "movement_type": "receipt",
        "quantity": 20,
        "on_hand_after": 20,
        "reserved_after": 0,
        "reference": "PO-1",
        "actor_id": users[Role.MANAGER].id,
    }
    assert events[1].payload["movement_id"] == second.json()["movement"]["id"]
    assert (events[1].payload["quantity"], events[1].payload["on_hand_after"]) == (5, 25)


def test_a_refused_stock_change_appends_nothing(
    client: TestClient, engine: Engine, manager_headers: Headers, viewer_headers: Headers
) -> None:
    product = make_product(client, manager_headers, "VASE-1")
    target = {"product_id": product["id"], "warehouse_id": main_warehouse_id(engine)}
    before = last_event_id(engine)
    assert receive(client, viewer_headers, {**target, "quantity": 5}).status_code == 403
    assert receive(client, manager_headers, {**target, "quantity": 0}).status_code == 422
    damage = client.post(
        f"{API}/inventory/damages",
        json={**target, "quantity": 1, "reason": "broken"},
        headers=manager_headers,
    )
    assert damage.status_code == 409
    assert events_after(engine, before) == []
