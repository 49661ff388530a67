"""Stock operations, transfers, idempotency, the ledger, low stock and the ledger check, over HTTP.

Products, categories and extra warehouses are inserted straight into the database by the
small factories below, so these tests do not depend on the catalog API.
"""

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, func, select, update

from common.contracts import SALE_STOCK_PATH
from common.db import make_sessionmaker, utcnow
from common.models import (
    Category,
    Product,
    Reservation,
    ReservationLine,
    ReservationStatus,
    Role,
    StockLevel,
    StockMovement,
    Transfer,
    User,
    Warehouse,
)

API = "/api/v1/inventory"
_sku = itertools.count(1)


# --- factories -------------------------------------------------------------------------


def make_product(
    engine: Engine,
    *,
    threshold: int = 10,
    category_id: int | None = None,
    archived: bool = False,
) -> int:
    with make_sessionmaker(engine)() as session:
        number = next(_sku)
        product = Product(
            sku=f"SKU-{number:05d}",
            name=f"Product {number}",
            price="9.90",
            cost_price="4.00",
            low_stock_threshold=threshold,
            category_id=category_id,
            archived_at=utcnow() if archived else None,
        )
        session.add(product)
        session.commit()
        return product.id


def make_warehouse(engine: Engine, code: str, *, active: bool = True) -> int:
    with make_sessionmaker(engine)() as session:
        warehouse = Warehouse(code=code, name=f"Warehouse {code}", is_active=active)
        session.add(warehouse)
        session.commit()
        return warehouse.id


def make_category(engine: Engine, name: str, parent_id: int | None = None) -> int:
    with make_sessionmaker(engine)() as session:
        parent_path = session.get(Category, parent_id).path if parent_id else "/"  # type: ignore[union-attr]
        category = Category(name=name, slug=name.lower(), parent_id=parent_id)
        session.add(category)
        session.flush()
        category.path = f"{parent_path}{category.id}/"
        session.commit()
        return category.id


def main_warehouse(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(select(Warehouse.id).where(Warehouse.code == "MAIN")).scalar_one()
        )


def set_warehouse_active(engine: Engine, warehouse_id: int, active: bool) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(Warehouse).where(Warehouse.id == warehouse_id).values(is_active=active)
        )


def set_reserved(engine: Engine, product_id: int, warehouse_id: int, reserved: int) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(StockLevel)
            .where(StockLevel.product_id == product_id, StockLevel.warehouse_id == warehouse_id)
            .values(reserved=reserved)
        )


def ledger_rows(engine: Engine, product_id: int) -> list[StockMovement]:
    with make_sessionmaker(engine)() as session:
        return list(
            session.scalars(
                select(StockMovement)
                .where(StockMovement.product_id == product_id)
                .order_by(StockMovement.id)
            )
        )


def on_hand(engine: Engine, product_id: int, warehouse_id: int) -> int | None:
    with engine.connect() as connection:
        return connection.execute(
            select(StockLevel.on_hand).where(
                StockLevel.product_id == product_id, StockLevel.warehouse_id == warehouse_id
            )
        ).scalar_one_or_none()


def post(
    client: TestClient | httpx.Client,
    headers: dict[str, str],
    path: str,
    body: dict[str, Any] | None = None,
    key: str | None = None,
) -> httpx.Response:
    sent = dict(headers)
    if key is not None:
        sent["Idempotency-Key"] = key
    return client.post(f"{API}{path}", json=body, headers=sent)


def receive(
    client: TestClient, headers: dict[str, str], product_id: int, warehouse_id: int, qty: int
) -> dict[str, Any]:
    response = post(
        client,
        headers,
        "/receipts",
        {"product_id": product_id, "warehouse_id": warehouse_id, "quantity": qty},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def level(
    client: TestClient, headers: dict[str, str], product_id: int, warehouse_id: int
) -> dict[str, Any]:
    response = client.get(
        f"{API}/levels",
        params={"product_id": product_id, "warehouse_id": warehouse_id},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert len(items) == 1
    return dict(items[0])


def ledger_check(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    response = client.get(f"{API}/ledger-check", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


# --- single-level operations -----------------------------------------------------------


def test_each_operation_changes_on_hand_and_writes_one_signed_ledger_row(
    client: TestClient, engine: Engine, manager_headers: dict, users: dict[Role, User]
) -> None:
    product = make_product(engine)
    wh = main_warehouse(engine)
    target = {"product_id": product, "warehouse_id": wh}
    steps: list[tuple[str, dict[str, Any], str, int, int]] = [
        ("/receipts", {"quantity": 20, "reference": "PO-1"}, "receipt", 20, 20),
        ("/adjustments", {"quantity": -3, "reason": "shrinkage"}, "adjustment", -3, 17),
        ("/adjustments", {"quantity": 2, "reason": "found"}, "adjustment", 2, 19),
        ("/counts", {"counted_quantity": 15}, "count_correction", -4, 15),
        ("/counts", {"counted_quantity": 18}, "count_correction", 3, 18),
        ("/damages", {"quantity": 5, "reason": "water"}, "damage", -5, 13),
        ("/returns", {"quantity": 2, "reference": "S-7"}, "return", 2, 15),
    ]
    for number, (path, extra, kind, qty, after) in enumerate(steps, start=1):
        response = post(client, manager_headers, path, {**target, **extra})
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["recorded"] is True
        movement = body["movement"]
        assert (movement["type"], movement["quantity"], movement["on_hand_after"]) == (
            kind,
            qty,
            after,
        )
        assert movement["actor_id"] == users[Role.MANAGER].id
        assert movement["actor_email"] == users[Role.MANAGER].email
        assert body["level"]["on_hand"] == after
        rows = ledger_rows(engine, product)
        assert len(rows) == number
        assert (rows[-1].movement_type.value, rows[-1].quantity, rows[-1].on_hand_after) == (
            kind,
            qty,
            after,
        )
        assert rows[-1].actor_id == users[Role.MANAGER].id
        assert on_hand(engine, product, wh) == after
    assert sum(r.quantity for r in ledger_rows(engine, product)) == 15
    assert ledger_rows(engine, product)[0].reference == "PO-1"
    assert ledger_rows(engine, product)[-1].reference == "S-7"


def test_removing_more_than_available_is_409_and_writes_nothing(
    client: TestClient, engine: Engine, manager_headers: dict
) -> None:
    product = make_product(engine)
    wh = main_warehouse(engine)
    receive(client, manager_headers, product, wh, 10)
    set_reserved(engine, product, wh, 4)
    sku = client.get(f"/api/v1/products/{product}", headers=manager_headers).json()["sku"]
    target = {"product_id": product, "warehouse_id": wh}
    refused: list[tuple[str, dict[str, Any]]] = [
        ("/adjustments", {"quantity": -7, "reason": "x"}),
        ("/adjustments", {"quantity": -11, "reason": "x"}),
        ("/damages", {"quantity": 7, "reason": "x"}),
        ("/counts", {"counted_quantity": 3}),
    ]
    for path, body in refused:
        response = post(client, manager_headers, path, {**target, **body})
        assert response.status_code == 409, (path, body, response.text)
        error = response.json()
        assert error["error"] == "insufficient_stock"
        assert error["available"] == 6
        assert len(ledger_rows(engine, product)) == 1
        shelf = level(client, manager_headers, product, wh)
        assert (shelf["warehouse_code"], shelf["sku"]) == ("MAIN", sku)
        assert shelf | {"updated_at": None, "sku": None, "warehouse_code": None} == {
            "product_id": product,
            "sku": None,
            "warehouse_id": wh,
            "warehouse_code": None,
            "on_hand": 10,
            "reserved": 4,
            "available": 6,
            "updated_at": None,
        }
    # Exactly the available amount may go.
    response = post(client, manager_headers, "/damages", {**target, "quantity": 6, "reason": "x"})
    assert response.status_code == 201, response.text
    assert response.json()["level"] | {"updated_at": None} == {
        "product_id": product,
        "sku": sku,  # the level it left, named as its ledger row is
        "warehouse_id": wh,
        "warehouse_code": "MAIN",
        "on_hand": 4,
        "reserved": 4,
        "available": 0,
        "updated_at": None,
    }


def test_damage_on_a_product_never_stocked_is_409(
    client: TestClient, engine: Engine, manager_headers: dict
) -> None:
    product = make_product(engine)
    wh = main_warehouse(engine)
    response = post(
        client,
        manager_headers,
        "/damages",
        {"product_id": product, "warehouse_id": wh, "quantity": 1, "reason": "x"},
    )
    assert response.status_code == 409
    assert response.json()["available"] == 0
    assert ledger_rows(engine, product) == []


def test_count_stores_the_delta_and_a_matching_count_records_nothing(
    client: TestClient, engine: Engine, manager_headers: dict
) -> None:
    product = make_product(engine)
    wh = main_warehouse(engine)
    receive(client, manager_headers, product, wh, 12)
    target = {"product_id": product, "warehouse_id": wh}

    same = post(client, manager_headers, "/counts", {**target, "counted_quantity": 12})
    assert same.status_code == 200, same.text
    assert same.json()["recorded"] is False
    assert same.json()["movement"] is None
    assert "nothing was recorded" in same.json()["detail"]
    assert len(ledger_rows(engine, product)) == 1

    zero = post(client, manager_headers, "/counts", {**target, "counted_quantity": 0})
    assert zero.status_code == 201
    assert zero.json()["movement"]["quantity"] == -12
    assert zero.json()["movement"]["reason"] == "stock count"
    assert on_hand(engine, product, wh) == 0

    # Counting a product never stocked here creates its level.
    other = make_warehouse(engine, "COUNT")
    first = post(
        client,
        manager_headers,
        "/counts",
        {"product_id": product, "warehouse_id": other, "counted_quantity": 4},
    )
    assert first.status_code == 201
    assert first.json()["movement"]["quantity"] == 4
    assert on_hand(engine, product, other) == 4


def test_validation_errors_name_the_field(
    client: TestClient, engine: Engine, manager_headers: dict
) -> None:
    product = make_product(engine)
    wh = main_warehouse(engine)
    target = {"product_id": product, "warehouse_id": wh}
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/receipts", {**target, "quantity": 0}, "body.quantity"),
        ("/adjustments", {**target, "quantity": 0, "reason": "x"}, "body"),
        ("/adjustments", {**target, "quantity": 3}, "body.reason"),
        ("/adjustments", {**target, "quantity": 3, "reason": "   "}, "body.reason"),
        ("/counts", {**target, "counted_quantity": -1}, "body.counted_quantity"),
        ("/damages", {**target, "quantity": -1, "reason": "x"}, "body.quantity"),
        ("/damages", {**target, "quantity": 1}, "body.reason"),
        ("/returns", {**target, "quantity": 1}, "body.reference"),
        ("/receipts", {**target, "qty": 1}, "body.quantity"),
        ("/receipts", {**target, "quantity": 1, "qty": 1}, "body.qty"),
    ]
    for path, body, field in cases:
        response = post(client, manager_headers, path, body)
        assert response.status_code == 422, (path, body, response.text)
        error = response.json()
        assert error["error"] == "validation_error"
        assert field in [f["field"] for f in error["fields"]], (path, error)
    assert ledger_rows(engine, product) == []


def test_unknown_product_or_warehouse_is_404_naming_which(
    client: TestClient, engine: Engine, manager_headers: dict
) -> None:
    product = make_product(engine)
    wh = main_warehouse(engine)
    missing_product = post(
        client,
        manager_headers,
        "/receipts",
        {"product_id": product + 999, "warehouse_id": wh, "quantity": 1},
    )
    assert missing_product.status_code == 404
    assert missing_product.json()["resource"] == "product"
    assert f"Product {product + 999}" in missing_product.json()["detail"]

    missing_wh = post(
        client,
        manager_headers,
        "/adjustments",
        {"product_id": product, "warehouse_id": wh + 999, "quantity": 1, "reason": "x"},
    )
    assert missing_wh.status_code == 404
    assert missing_wh.json()["resource"] == "warehouse"
    assert missing_wh.json()["fields"][0]["field"] == "body.warehouse_id"

    ledger = client.get(f"{API}/products/{product + 999}/movements", headers=manager_headers)
    assert ledger.status_code == 404
    assert ledger.json()["resource"] == "product"


def test_inactive_warehouse_and_archived_product_rules(
    client: TestClient, engine: Engine, manager_headers: dict
) -> None:
    product = make_product(engine)
    archived = make_product(engine, archived=True)
    closed = make_warehouse(engine, "CLOSED", active=False)
    wh = main_warehouse(engine)

    into_closed = post(
        client,
        manager_headers,
        "/receipts",
        {"product_id": product, "warehouse_id": closed, "quantity": 5},
    )
    assert into_closed.status_code == 409
    assert "inactive" in into_closed.json()["detail"]
    assert into_closed.json()["fields"][0]["field"] == "body.warehouse_id"

    archived_receipt = post(
        client,
        manager_headers,
        "/receipts",
        {"product_id": archived, "warehouse_id": wh, "quantity": 5},
    )
    assert archived_receipt.status_code == 409
    assert "archived" in archived_receipt.json()["detail"]

    # Returns and counts of an archived product are still needed.
    returned = post(
        client,
        manager_headers,
        "/returns",
        {"product_id": archived, "warehouse_id": wh, "quantity": 2, "reference": "S-1"},
    )
    assert returned.status_code == 201, returned.text
    counted = post(
        client,
        manager_headers,
        "/counts",
        {"product_id": archived, "warehouse_id": wh, "counted_quantity": 0},
    )
    assert counted.status_code == 201, counted.text
    assert [r.quantity for r in ledger_rows(engine, archived)] == [2, -2]
    assert ledger_rows(engine, product) == []


def test_viewer_can_read_but_not_change_stock(
    client: TestClient, engine: Engine, viewer_headers: dict
) -> None:
    product = make_product(engine)
    wh = main_warehouse(engine)
    response = post(
        client,
        viewer_headers,
        "/receipts",
        {"product_id": product, "warehouse_id": wh, "quantity": 1},
    )
    assert response.status_code == 403
    assert client.get(f"{API}/levels", headers=viewer_headers).status_code == 200
    assert ledger_rows(engine, product) == []


# --- idempotency -----------------------------------------------------------------------


def test_idempotency_key_replays_the_first_answer_and_changes_stock_once(
    client: TestClient, engine: Engine, manager_headers: dict
) -> None:
    product = make_product(engine)
    wh = main_warehouse(engine)
    body = {"product_id": product, "warehouse_id": wh, "quantity": 7, "reference": "PO-9"}

    first = post(client, manager_headers, "/receipts", body, key="receipt-po-9")
    again = post(client, manager_headers, "/receipts", body, key="receipt-po-9")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert on_hand(engine, product, wh) == 7
    assert len(ledger_rows(engine, product)) == 1

    reused = post(client, manager_headers, "/receipts", {**body, "quantity": 8}, key="receipt-po-9")
    assert reused.status_code == 422
    assert reused.json()["error"] == "idempotency_key_reused"
    assert on_hand(engine, product, wh) == 7

    # Another operation has its own key space, and a new key does the work again.
    assert post(client, manager_headers, "/receipts", body, key="receipt-po-9b").status_code == 201
    assert on_hand(engine, product, wh) == 14
    assert len(ledger_rows(engine, product)) == 2


def test_a_refused_request_does_not_burn_its_idempotency_key(
    client: TestClient, engine: Engine, manager_headers: dict
) -> None:
    product = make_product(engine)
    wh = main_warehouse(engine)
    body = {"product_id": product, "warehouse_id": wh, "quantity": 3, "reason": "broken"}
    assert post(client, manager_headers, "/damages", body, key="dmg-1").status_code == 409
    receive(client, manager_headers, product, wh, 5)
    retried = post(client, manager_headers, "/damages", body, key="dmg-1")
    assert retried.status_code == 201, retried.text
    assert on_hand(engine, product, wh) == 2


def test_a_matching_count_replays_its_200(
    client: TestClient, engine: Engine, manager_headers: dict
) -> None:
    product = make_product(engine)
    wh = main_warehouse(engine)
    receive(client, manager_headers, product, wh, 5)
    body = {"product_id": product, "warehouse_id": wh, "counted_quantity": 5}
    first = post(client, manager_headers, "/counts", body, key="count-1")
    again = post(client, manager_headers, "/counts", body, key="count-1")
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert len(ledger_rows(engine, product)) == 1


# --- transfers -------------------------------------------------------------------------


def test_transfer_lifecycle_keeps_in_transit_stock_off_every_shelf(
    client: TestClient, engine: Engine, manager_headers: dict, users: dict[Role, User]
) -> None:
    product = make_product(engine, threshold=0)
    main = main_warehouse(engine)
    north = make_warehouse(engine, "NORTH")
    receive(client, manager_headers, product, main, 10)

    created = post(
        client,
        manager_headers,
        "/transfers",
        {
            "product_id": product,
            "from_warehouse_id": main,
            "to_warehouse_id": north,
            "quantity": 4,
            "reason": "rebalance",
        },
    )
    assert created.status_code == 201, created.text
    transfer = created.json()
    assert transfer["status"] == "in_transit"
    assert transfer["reason"] == "rebalance"
    codes = {
        w["id"]: w["code"]
        for w in client.get("/api/v1/warehouses", headers=manager_headers).json()["items"]
    }
    assert (transfer["from_warehouse_code"], transfer["to_warehouse_code"]) == (
        codes[main],
        codes[north],
    )
    assert (
        transfer["sku"]
        == client.get(f"/api/v1/products/{product}", headers=manager_headers).json()["sku"]
    )
    assert transfer["actor_id"] == users[Role.MANAGER].id
    assert transfer["actor_email"] == users[Role.MANAGER].email
    assert on_hand(engine, product, main) == 6
    assert on_hand(engine, product, north) is None

    # In transit: sellable nowhere, counted in no level and no low-stock total.
    levels = client.get(f"{API}/levels", params={"product_id": product}, headers=manager_headers)
    assert [(lv["warehouse_id"], lv["available"]) for lv in levels.json()["items"]] == [(main, 6)]
    low = client.get(
        f"{API}/low-stock", params={"threshold": 6, "include_ok": True}, headers=manager_headers
    )
    assert [(i["product_id"], i["available"]) for i in low.json()["items"]] == [(product, 6)]
    short = post(
        client,
        manager_headers,
        "/damages",
        {"product_id": product, "warehouse_id": main, "quantity": 7, "reason": "x"},
    )
    assert short.status_code == 409

    fetched = client.get(f"{API}/transfers/{transfer['id']}", headers=manager_headers)
    assert fetched.json() == transfer

    done = post(client, manager_headers, f"/transfers/{transfer['id']}/complete")
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed"
    assert done.json()["completed_at"] is not None
    assert on_hand(engine, product, main) == 6
    assert on_hand(engine, product, north) == 4

    twice = post(client, manager_headers, f"/transfers/{transfer['id']}/complete")
    assert twice.status_code == 409
    assert twice.json()["error"] == "invalid_state"
    cancel_done = post(client, manager_headers, f"/transfers/{transfer['id']}/cancel")
    assert cancel_done.status_code == 409
    assert cancel_done.json()["error"] == "invalid_state"
    assert on_hand(engine, product, north) == 4

    rows = ledger_rows(engine, product)
    reference = f"transfer:{transfer['id']}"
    assert [(r.movement_type.value, r.warehouse_id, r.quantity, r.reference) for r in rows] == [
        ("receipt", main, 10, None),
        ("transfer_out", main, -4, reference),
        ("transfer_in", north, 4, reference),
    ]
    assert ledger_check(client, manager_headers)["ok"] is True


def test_cancelled_transfer_returns_stock_to_the_source(
    client: TestClient, engine: Engine, manager_headers: dict
) -> None:
    product = make_product(engine)
    main = main_warehouse(engine)
    south = make_warehouse(engine, "SOUTH")
    receive(client, manager_headers, product, main, 5)
    body = {"product_id": product, "from_warehouse_id": main, "to_warehouse_id": south}
    transfer = post(client, manager_headers, "/transfers", {**body, "quantity": 5}).json()
    assert on_hand(engine, product, main) == 0

    cancelled = post(client, manager_headers, f"/transfers/{transfer['id']}/cancel", key="c-1")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    replay = post(client, manager_headers, f"/transfers/{transfer['id']}/cancel", key="c-1")
    assert replay.status_code == 200
    assert replay.json() == cancelled.json()
    assert replay.headers.get("Idempotent-Replayed") == "true"
    again = post(client, manager_headers, f"/transfers/{transfer['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["error"] == "invalid_state"
    complete = post(client, manager_headers, f"/transfers/{transfer['id']}/complete")
    assert complete.status_code == 409

    assert on_hand(engine, product, main) == 5
    assert on_hand(engine, product, south) is None
    last = ledger_rows(engine, product)[-1]
    assert (last.movement_type.value, last.warehouse_id, last.quantity, last.reason) == (
        "transfer_in",
        main,
        5,
        "transfer cancelled",
    )
    assert len(ledger_rows(engine, product)) == 3


def test_complete_with_the_same_key_replays_instead_of_409(
    client: TestClient, engine: Engine, manager_headers: dict
) -> None:
    product = make_product(engine)
    main = main_warehouse(engine)
    east = make_warehouse(engine, "EAST")
    receive(client, manager_headers, product, main, 5)
    transfer = post(
        client,
        manager_headers,
        "/transfers",
        {"product_id": product, "from_warehouse_id": main, "to_warehouse_id": east, "quantity": 2},
        key="t-1",
    ).json()
    replayed_create = post(
        client,
        manager_headers,
        "/transfers",
        {"product_id": product, "from_warehouse_id": main, "to_warehouse_id": east, "quantity": 2},
        key="t-1",
    )
    assert replayed_create.json() == transfer
    first = post(client, manager_headers, f"/transfers/{transfer['id']}/complete", key="done-1")
    second = post(client, manager_headers, f"/transfers/{transfer['id']}/complete", key="done-1")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert on_hand(engine, product, main) == 3
    assert on_hand(engine, product, east) == 2
    assert len(ledger_rows(engine, product)) == 3


def test_transfer_refusals(client: TestClient, engine: Engine, manager_headers: dict) -> None:
    product = make_product(engine)
    main = main_warehouse(engine)
    closed = make_warehouse(engine, "SHUT", active=False)
    west = make_warehouse(engine, "WEST")
    receive(client, manager_headers, product, main, 3)
    base = {"product_id": product, "from_warehouse_id": main, "quantity": 2}

    same = post(client, manager_headers, "/transfers", {**base, "to_warehouse_id": main})
    assert same.status_code == 422
    assert "must differ" in same.json()["detail"]
    unknown = post(client, manager_headers, "/transfers", {**base, "to_warehouse_id": west + 99})
    assert unknown.status_code == 404
    assert unknown.json()["fields"][0]["field"] == "body.to_warehouse_id"
    inactive = post(client, manager_headers, "/transfers", {**base, "to_warehouse_id": closed})
    assert inactive.status_code == 409
    assert inactive.json()["fields"][0]["field"] == "body.to_warehouse_id"
    too_many = post(
        client, manager_headers, "/transfers", {**base, "to_warehouse_id": west, "quantity": 4}
    )
    assert too_many.status_code == 409
    assert too_many.json()["error"] == "insufficient_stock"
    missing = post(client, manager_headers, "/transfers/999999/complete")
    assert missing.status_code == 404

    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Transfer)).scalar_one() == 0
    assert len(ledger_rows(engine, product)) == 1
    assert on_hand(engine, product, main) == 3


def test_transfer_list_filters_by_status(
    client: TestClient, engine: Engine, manager_headers: dict
) -> None:
    product = make_product(engine)
    main = main_warehouse(engine)
    depot = make_warehouse(engine, "DEPOT")
    receive(client, manager_headers, product, main, 10)
    body = {"product_id": product, "from_warehouse_id": main, "to_warehouse_id": depot}
    ids = [
        post(client, manager_headers, "/transfers", {**body, "quantity": 1}).json()["id"]
        for _ in range(3)
    ]
    post(client, manager_headers, f"/transfers/{ids[0]}/complete")
    post(client, manager_headers, f"/transfers/{ids[1]}/cancel")

    def listed(**params: Any) -> tuple[list[int], int]:
        page = client.get(f"{API}/transfers", params=params, headers=manager_headers).json()
        return [t["id"] for t in page["items"]], page["total"]

    assert listed() == ([ids[2], ids[1], ids[0]], 3)
    assert listed(status="in_transit") == ([ids[2]], 1)
    assert listed(status="completed") == ([ids[0]], 1)
    assert listed(status="cancelled", warehouse_id=depot) == ([ids[1]], 1)
    assert listed(sort="id", limit=2) == ([ids[0], ids[1]], 3)
    bad = client.get(f"{API}/transfers", params={"status": "lost"}, headers=manager_headers)
    assert bad.status_code == 422


# --- the ledger ------------------------------------------------------------------------


def test_ledger_filters_and_pagination(
    client: TestClient, engine: Engine, manager_headers: dict, users: dict[Role, User]
) -> None:
    product = make_product(engine)
    main = main_warehouse(engine)
    other = make_warehouse(engine, "OTHER")
    receive(client, manager_headers, product, main, 10)  # day 1
    post(  # day 2
        client,
        manager_headers,
        "/damages",
        {"product_id": product, "warehouse_id": main, "quantity": 1, "reason": "torn"},
    )
    post(  # day 3
        client,
        manager_headers,
        "/adjustments",
        {"product_id": product, "warehouse_id": main, "quantity": 2, "reason": "found"},
    )
    receive(client, manager_headers, product, other, 5)  # day 4
    post(  # day 5
        client,
        manager_headers,
        "/returns",
        {"product_id": product, "warehouse_id": main, "quantity": 1, "reference": "S-1"},
    )
    rows = ledger_rows(engine, product)
    start = datetime(2024, 3, 1, tzinfo=UTC)
    with engine.begin() as connection:
        for day, row in enumerate(rows):
            connection.execute(
                update(StockMovement)
                .where(StockMovement.id == row.id)
                .values(created_at=start + timedelta(days=day))
            )
    ids = [r.id for r in rows]

    def page(**params: Any) -> dict[str, Any]:
        response = client.get(
            f"{API}/products/{product}/movements", params=params, headers=manager_headers
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    everything = page()
    assert everything["total"] == 5
    assert [m["id"] for m in everything["items"]] == ids[::-1]
    newest = everything["items"][0]
    assert newest["type"] == "return"
    assert newest["reference"] == "S-1"
    assert newest["on_hand_after"] == 12
    assert newest["actor_id"] == users[Role.MANAGER].id
    assert newest["actor_email"] == users[Role.MANAGER].email
    assert newest["created_at"].startswith("2024-03-05T00:00:00")

    first, second = page(limit=2), page(limit=2, offset=2)
    assert [m["id"] for m in first["items"]] == ids[4:2:-1]
    assert [m["id"] for m in second["items"]] == ids[2:0:-1]
    assert first["total"] == second["total"] == 5
    assert [m["id"] for m in page(sort="created_at")["items"]] == ids

    assert [m["id"] for m in page(warehouse_id=other)["items"]] == [ids[3]]
    by_type = page(type=["receipt", "damage"])
    assert [m["type"] for m in by_type["items"]] == ["receipt", "damage", "receipt"]
    assert by_type["total"] == 3

    # from inclusive, to exclusive; offsets are honoured (01:00+01:00 is midnight UTC).
    window = page(**{"from": "2024-03-02T01:00:00+01:00", "to": "2024-03-04T00:00:00Z"})
    assert [m["id"] for m in window["items"]] == [ids[2], ids[1]]
    assert window["total"] == 2
    # Plain dates are whole days in `timezone` (default the store's, UTC here), `to` included.
    berlin = {"timezone": "Europe/Berlin"}
    days = page(**{"from": "2024-03-02", "to": "2024-03-03", **berlin})
    assert [m["id"] for m in days["items"]] == [ids[2], ids[1]]
    assert [m["id"] for m in page(to="2024-03-03")["items"]] == [ids[2], ids[1], ids[0]]
    new_york = page(to="2024-03-03", timezone="America/New_York")  # ends 2024-03-04T05:00Z
    assert [m["id"] for m in new_york["items"]] == [ids[3], ids[2], ids[1], ids[0]]
    mixed = page(**{"from": "2024-03-04T00:00:00Z", "to": "2024-03-04", **berlin})
    assert [m["id"] for m in mixed["items"]] == [ids[3]]
    backwards = client.get(
        f"{API}/products/{product}/movements",
        params={"from": "2024-03-03", "to": "2024-03-02"},
        headers=manager_headers,
    )
    assert backwards.status_code == 422
    assert backwards.json()["fields"][0]["field"] == "query.to"

    naive = client.get(
        f"{API}/products/{product}/movements",
        params={"from": "2024-03-02T00:00:00"},
        headers=manager_headers,
    )
    assert naive.status_code == 422
    assert naive.json()["fields"][0]["field"] == "query.from"
    bad_type = client.get(
        f"{API}/products/{product}/movements", params={"type": "theft"}, headers=manager_headers
    )
    assert bad_type.status_code == 422
    bad_sort = client.get(
        f"{API}/products/{product}/movements", params={"sort": "qty"}, headers=manager_headers
    )
    assert bad_sort.status_code == 400
    assert bad_sort.json()["fields"][0]["field"] == "query.sort"


def test_levels_list_filters_and_pages(
    client: TestClient, engine: Engine, viewer_headers: dict, manager_headers: dict
) -> None:
    first, second = make_product(engine), make_product(engine)
    main = main_warehouse(engine)
    spare = make_warehouse(engine, "SPARE")
    receive(client, manager_headers, first, main, 3)
    receive(client, manager_headers, first, spare, 4)
    receive(client, manager_headers, second, main, 5)
    set_reserved(engine, second, main, 2)

    def keys(**params: Any) -> tuple[list[tuple[int, int, int, int, int]], int]:
        page = client.get(f"{API}/levels", params=params, headers=viewer_headers).json()
        rows = [
            (i["product_id"], i["warehouse_id"], i["on_hand"], i["reserved"], i["available"])
            for i in page["items"]
        ]
        return rows, page["total"]

    assert keys() == (
        [(first, main, 3, 0, 3), (first, spare, 4, 0, 4), (second, main, 5, 2, 3)],
        3,
    )
    assert keys(product_id=first) == ([(first, main, 3, 0, 3), (first, spare, 4, 0, 4)], 2)
    assert keys(warehouse_id=main, limit=1, offset=1) == ([(second, main, 5, 2, 3)], 2)
    assert keys(sort="-on_hand", limit=1) == ([(second, main, 5, 2, 3)], 3)


# --- low stock -------------------------------------------------------------------------


def test_low_stock_classes_thresholds_and_filters(
    client: TestClient, engine: Engine, manager_headers: dict
) -> None:
    main = main_warehouse(engine)
    spare = make_warehouse(engine, "LS-SPARE")
    tools = make_category(engine, "Tools")
    saws = make_category(engine, "Saws", parent_id=tools)
    never = make_product(engine, category_id=saws)  # no level row at all: out
    out = make_product(engine)
    critical = make_product(engine, category_id=tools)
    edge = make_product(engine)  # available exactly half the threshold: critical
    low = make_product(engine)
    fine = make_product(engine)
    archived = make_product(engine, archived=True)
    held = make_product(engine)  # plenty on hand but mostly reserved
    closed_only = make_product(engine)  # stock only in a warehouse that is then closed
    own_threshold = make_product(engine, threshold=2)  # 3 on hand, its own threshold is 2

    for product, qty in [(out, 1), (critical, 4), (edge, 5), (low, 8), (fine, 11), (held, 20)]:
        receive(client, manager_headers, product, main, qty)
    post(
        client,
        manager_headers,
        "/damages",
        {"product_id": out, "warehouse_id": main, "quantity": 1, "reason": "x"},
    )
    receive(client, manager_headers, low, spare, 1)  # spread over warehouses: 9 in all
    receive(client, manager_headers, own_threshold, main, 3)
    set_reserved(engine, held, main, 16)
    closed = make_warehouse(engine, "LS-CLOSED")
    receive(client, manager_headers, closed_only, closed, 50)
    set_warehouse_active(engine, closed, False)

    def listed(**params: Any) -> list[tuple[int, str, int]]:
        response = client.get(f"{API}/low-stock", params=params, headers=manager_headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == len(body["items"]) or "limit" in params
        return [(i["product_id"], i["health"], i["available"]) for i in body["items"]]

    assert listed() == [
        (never, "out", 0),
        (out, "out", 0),
        (closed_only, "out", 0),
        (critical, "critical", 4),
        (held, "critical", 4),
        (edge, "critical", 5),
        (low, "low", 9),
    ]
    everything = listed(include_ok=True)
    assert everything[-2:] == [(own_threshold, "ok", 3), (fine, "ok", 11)]
    assert len(everything) == 9
    assert archived not in [p for p, _, _ in everything]

    # A threshold given in the query replaces every product's own.
    assert listed(threshold=4) == [
        (never, "out", 0),
        (out, "out", 0),
        (closed_only, "out", 0),
        (own_threshold, "low", 3),
        (critical, "low", 4),
        (held, "low", 4),
    ]
    assert listed(threshold=8)[3:] == [
        (own_threshold, "critical", 3),
        (critical, "critical", 4),
        (held, "critical", 4),
        (edge, "low", 5),
    ]
    # One warehouse only (even an inactive one, when asked by id).
    assert (low, "critical", 1) in listed(warehouse_id=spare)
    assert (closed_only, "ok", 50) in listed(warehouse_id=closed, include_ok=True)
    # A category includes its subcategories.
    assert listed(category_id=tools) == [(never, "out", 0), (critical, "critical", 4)]
    assert listed(category_id=saws) == [(never, "out", 0)]
    # Repeated, each filter matches any of its values (not the last one alone).
    assert listed(category_id=[tools, saws]) == [(never, "out", 0), (critical, "critical", 4)]
    several = listed(warehouse_id=[spare, closed], include_ok=True)
    assert (low, "critical", 1) in several and (closed_only, "ok", 50) in several
    # Pages keep the order and the total.
    page = client.get(
        f"{API}/low-stock", params={"limit": 2, "offset": 2}, headers=manager_headers
    ).json()
    assert page["total"] == 7
    assert [i["product_id"] for i in page["items"]] == [closed_only, critical]
    unknown = client.get(
        f"{API}/low-stock", params={"category_id": 999999}, headers=manager_headers
    )
    assert (
        unknown.status_code == 422 and unknown.json()["fields"][0]["field"] == "query.category_id"
    )


def test_low_stock_rows_say_price_category_and_stock_per_warehouse_and_sort_as_asked(
    client: TestClient, engine: Engine, manager_headers: dict
) -> None:
    main = main_warehouse(engine)
    east = make_warehouse(engine, "LS-EAST")
    garden = make_category(engine, "Garden")
    hoses = make_category(engine, "Hoses", parent_id=garden)
    split = make_product(engine, category_id=hoses, threshold=10)
    bare = make_product(engine, threshold=3)  # no category, no stock anywhere
    receive(client, manager_headers, split, main, 3)
    receive(client, manager_headers, split, east, 4)
    set_reserved(engine, split, east, 1)

    answer = client.get(f"{API}/low-stock", headers=manager_headers)
    assert answer.status_code == 200, answer.text
    rows = {row["product_id"]: row for row in answer.json()["items"]}
    row = rows[split]
    assert (row["on_hand"], row["reserved"], row["available"]) == (7, 1, 6)
    assert row["category_name"] == "Garden / Hoses"
    assert row["price"] == "9.90" and row["low_stock_threshold"] == row["applied_threshold"] == 10
    main_code = client.get(f"/api/v1/warehouses/{main}", headers=manager_headers).json()["code"]
    assert sorted(
        (w["warehouse_code"], w["on_hand"], w["reserved"], w["available"])
        for w in row["warehouses"]
    ) == sorted([(main_code, 3, 0, 3), ("LS-EAST", 4, 1, 3)])
    assert sum(w["available"] for w in row["warehouses"]) == row["available"]
    assert rows[bare]["category_name"] is None and rows[bare]["warehouses"] == []
    # a threshold given in the query is the one applied; the product's own is still told
    overridden = client.get(f"{API}/low-stock", params={"threshold": 50}, headers=manager_headers)
    mine = next(r for r in overridden.json()["items"] if r["product_id"] == split)
    assert (mine["applied_threshold"], mine["low_stock_threshold"]) == (50, 10)
    # one warehouse: only its row
    east_only = client.get(
        f"{API}/low-stock", params={"warehouse_id": east}, headers=manager_headers
    ).json()["items"]
    assert [
        w["warehouse_code"]
        for w in next(r for r in east_only if r["product_id"] == split)["warehouses"]
    ] == ["LS-EAST"]

    def order(sort: str) -> list[int]:
        got = client.get(
            f"{API}/low-stock", params={"sort": sort, "include_ok": True}, headers=manager_headers
        )
        assert got.status_code == 200, got.text
        return [r["product_id"] for r in got.json()["items"]]

    assert order("available") == [bare, split]
    assert order("-available") == [split, bare]
    assert order("health") == [bare, split]  # out before low
    bad = client.get(f"{API}/low-stock", params={"sort": "price"}, headers=manager_headers)
    assert bad.status_code == 400 and "available" in bad.json()["detail"]


def sell(client: TestClient, service_headers: dict, key: str, product_id: int, qty: int) -> None:
    """One sale's stock taken as sales_service takes it (from the warehouse with the most)."""
    body = {"key": key, "lines": [{"product_id": product_id, "quantity": qty}]}
    response = client.post(SALE_STOCK_PATH, json=body, headers=service_headers)
    assert response.status_code == 201, response.text


def backdate_sale(engine: Engine, key: str, when: datetime) -> None:
    """Move a sale's ledger rows back in time (the API only ever writes the present)."""
    with engine.begin() as connection:
        connection.execute(
            update(StockMovement)
            .where(StockMovement.reference == f"sale:{key}")
            .values(created_at=when)
        )


def test_low_stock_rows_and_warehouses_say_units_sold_days_of_cover_and_stockout_date(
    client: TestClient,
    engine: Engine,
    products_app: Any,
    manager_headers: dict,
    service_headers: dict,
) -> None:
    main = main_warehouse(engine)
    east = make_warehouse(engine, "CV-EAST")
    seller = make_product(engine, threshold=100)
    idle = make_product(engine, threshold=10)
    sold_out = make_product(engine, threshold=10)
    today = datetime.now(UTC).date()
    window_start = datetime.combine(today - timedelta(days=29), datetime.min.time(), UTC)

    # MAIN: 12 (on the window's first instant) + 6 taken, 2 back by a refund: 16 sold; a take
    # of 7 a microsecond before the window does not count.
    receive(client, manager_headers, seller, main, 40)
    sell(client, service_headers, "cover-old", seller, 7)
    backdate_sale(engine, "cover-old", window_start - timedelta(microseconds=1))
    sell(client, service_headers, "cover-first", seller, 12)
    backdate_sale(engine, "cover-first", window_start)
    sell(client, service_headers, "cover-main", seller, 6)
    refund = {"product_id": seller, "warehouse_id": main, "quantity": 2, "reference": "S-9"}
    assert post(client, manager_headers, "/returns", refund).status_code == 201
    # CV-EAST (now the fuller shelf): 9 taken, and 4 taken then given back (no sale): 9 sold.
    receive(client, manager_headers, seller, east, 30)
    sell(client, service_headers, "cover-east", seller, 9)
    sell(client, service_headers, "cover-undone", seller, 4)
    given_back = client.post(f"{SALE_STOCK_PATH}/cover-undone/return", headers=service_headers)
    assert given_back.status_code == 200, given_back.text
    set_reserved(engine, seller, main, 2)  # MAIN: 17 on hand, 15 available
    # Moved, but not by sales: a damage and a receipt.
    receive(client, manager_headers, idle, main, 3)
    damage = {"product_id": idle, "warehouse_id": main, "quantity": 1, "reason": "dropped"}
    assert post(client, manager_headers, "/damages", damage).status_code == 201
    receive(client, manager_headers, sold_out, main, 5)
    sell(client, service_headers, "cover-sold-out", sold_out, 5)

    def rows(**params: Any) -> dict[int, dict[str, Any]]:
        answer = client.get(f"{API}/low-stock", params=params, headers=manager_headers)
        assert answer.status_code == 200, answer.text
        return {row["product_id"]: row for row in answer.json()["items"]}

    def cover(item: dict[str, Any]) -> tuple[int, int, str | None, str | None]:
        return (
            item["available"],
            item["units_sold"],
            item["days_of_cover"],
            item["projected_stockout_date"],
        )

    def on(days: int) -> str:
        return (today + timedelta(days=days)).isoformat()

    listed = rows()  # the default window: 30 days, today included
    row = listed[seller]
    per_warehouse = {w["warehouse_code"]: cover(w) for w in row["warehouses"]}
    # 15 x 30 / 16 = 28.125: half up to 28.13 (half even would say 28.12); out in 29 days.
    assert per_warehouse["MAIN"] == (15, 16, "28.13", on(29))
    assert per_warehouse["CV-EAST"] == (21, 9, "70.00", on(70))
    assert cover(row) == (36, 25, "43.20", on(44))  # 36 x 30 / 25
    # Nothing sold: no projection, on the row or its warehouse.
    assert cover(listed[idle]) == (2, 0, None, None)
    assert [cover(w) for w in listed[idle]["warehouses"]] == [(2, 0, None, None)]
    # None available: no cover, out today.
    assert cover(listed[sold_out]) == (0, 5, "0.00", on(0))
    assert [cover(w) for w in listed[sold_out]["warehouses"]] == [(0, 5, "0.00", on(0))]

    # A shorter window: today's movements only.
    row = rows(window_days=1)[seller]
    per_warehouse = {w["warehouse_code"]: cover(w) for w in row["warehouses"]}
    assert per_warehouse == {"MAIN": (15, 4, "3.75", on(4)), "CV-EAST": (21, 9, "2.33", on(3))}
    assert cover(row) == (36, 13, "2.77", on(3))  # 36 / 13 = 2.769...
    # One warehouse: the row is that warehouse's alone.
    row = rows(warehouse_id=east)[seller]
    assert cover(row) == (21, 9, "70.00", on(70))
    assert [w["warehouse_code"] for w in row["warehouses"]] == ["CV-EAST"]
    assert rows(window_days=365)[seller]["units_sold"] == 7 + 25

    # The ledger is read once per page, however many products it holds.
    ledger_reads: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM stock_movements" in statement:
            ledger_reads.append(statement)

    event.listen(products_app.state.engine, "before_cursor_execute", record)
    try:
        for limit in (1, 3):
            ledger_reads.clear()
            answer = client.get(
                f"{API}/low-stock", params={"limit": limit}, headers=manager_headers
            )
            assert len(answer.json()["items"]) == limit
            assert len(ledger_reads) == 1, ledger_reads
    finally:
        event.remove(products_app.state.engine, "before_cursor_execute", record)


def test_low_stock_window_days_is_a_whole_number_of_days_from_1_to_365(
    client: TestClient, manager_headers: dict
) -> None:
    for good in ("1", "365"):
        answer = client.get(
            f"{API}/low-stock", params={"window_days": good}, headers=manager_headers
        )
        assert answer.status_code == 200, answer.text
    for bad, reason in [
        ("0", "greater than or equal to 1"),
        ("366", "less than or equal to 365"),
        ("-3", "greater than or equal to 1"),
        ("7.5", "valid integer"),
        ("week", "valid integer"),
    ]:
        answer = client.get(
            f"{API}/low-stock", params={"window_days": bad}, headers=manager_headers
        )
        assert answer.status_code == 422, (bad, answer.text)
        body = answer.json()
        assert body["error"] == "validation_error"
        assert [f["field"] for f in body["fields"]] == ["query.window_days"]
        assert reason in body["fields"][0]["reason"] and "window_days" in body["detail"]


# --- the ledger check ------------------------------------------------------------------


def test_ledger_check_passes_after_a_mix_and_catches_tampering(
    client: TestClient, engine: Engine, manager_headers: dict, viewer_headers: dict
) -> None:
    a, b = make_product(engine), make_product(engine)
    main = main_warehouse(engine)
    far = make_warehouse(engine, "FAR")
    receive(client, manager_headers, a, main, 30)
    receive(client, manager_headers, b, main, 8)
    post(
        client,
        manager_headers,
        "/adjustments",
        {"product_id": a, "warehouse_id": main, "quantity": -4, "reason": "x"},
    )
    post(
        client,
        manager_headers,
        "/counts",
        {"product_id": b, "warehouse_id": main, "counted_quantity": 6},
    )
    transfer = post(
        client,
        manager_headers,
        "/transfers",
        {"product_id": a, "from_warehouse_id": main, "to_warehouse_id": far, "quantity": 10},
    ).json()
    post(client, manager_headers, f"/transfers/{transfer['id']}/complete")
    post(
        client,
        manager_headers,
        "/damages",
        {"product_id": a, "warehouse_id": far, "quantity": 1, "reason": "x"},
    )

    # An active reservation holding 3 of b, with the level's reserved to match.
    with make_sessionmaker(engine)() as session:
        reservation = Reservation(
            idempotency_key="check-1",
            request_hash="0" * 64,
            status=ReservationStatus.ACTIVE,
            expires_at=utcnow() + timedelta(days=1),
            lines=[ReservationLine(line_no=1, product_id=b, warehouse_id=main, quantity=3)],
        )
        session.add(reservation)
        session.commit()
        reservation_id = reservation.id
    set_reserved(engine, b, main, 3)

    healthy = ledger_check(client, viewer_headers)
    assert healthy == {"ok": True, "levels_checked": 3, "mismatches": []}

    with engine.begin() as connection:
        connection.execute(
            update(StockLevel)
            .where(StockLevel.product_id == a, StockLevel.warehouse_id == main)
            .values(on_hand=StockLevel.on_hand + 1)
        )
    broken = ledger_check(client, viewer_headers)
    assert broken["ok"] is False
    assert broken["levels_checked"] == 3
    [mismatch] = broken["mismatches"]
    assert mismatch["warehouse_code"] == "MAIN" and mismatch["sku"].startswith("SKU-")
    assert {k: mismatch[k] for k in ("product_id", "warehouse_id", "on_hand", "ledger_sum")} == {
        "product_id": a,
        "warehouse_id": main,
        "on_hand": 17,
        "ledger_sum": 16,
    }
    assert mismatch["last_on_hand_after"] == 16
    assert any("ledger sums to 16" in p for p in mismatch["problems"])

    with engine.begin() as connection:
        connection.execute(
            update(StockLevel)
            .where(StockLevel.product_id == a, StockLevel.warehouse_id == main)
            .values(on_hand=StockLevel.on_hand - 1)
        )
        # The reservation stops being active while the level still holds its stock.
        connection.execute(
            update(Reservation)
            .where(Reservation.id == reservation_id)
            .values(status=ReservationStatus.RELEASED)
        )
    [held] = ledger_check(client, viewer_headers)["mismatches"]
    assert (held["product_id"], held["reserved"], held["active_reserved"]) == (b, 3, 0)

    set_reserved(engine, b, main, 0)
    assert ledger_check(client, viewer_headers)["ok"] is True
