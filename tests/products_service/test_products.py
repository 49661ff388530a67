"""Products through the HTTP API: money, SKUs, categories, stock, search, filters and sorting."""

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update

from common.db import make_sessionmaker
from common.models import Product, StockLevel, Warehouse
from tests.products_service.factories import API, make_category, make_product


def listed(client: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = client.get(f"{API}/products", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def skus(client: TestClient, headers: dict[str, str], **params: Any) -> list[str]:
    return [p["sku"] for p in listed(client, headers, **params)["items"]]


def field_names(response: Any) -> list[str]:
    return [f["field"] for f in response.json()["fields"]]


def put_stock(
    engine: Engine, product_id: int, warehouse_code: str, on_hand: int, reserved: int = 0
) -> None:
    """Stock rows written directly, standing in for the inventory API."""
    with make_sessionmaker(engine)() as session:
        warehouse_id = session.scalar(select(Warehouse.id).where(Warehouse.code == warehouse_code))
        assert warehouse_id is not None
        session.add(
            StockLevel(
                product_id=product_id,
                warehouse_id=warehouse_id,
                on_hand=on_hand,
                reserved=reserved,
            )
        )
        session.commit()


def set_created_at(engine: Engine, product_id: int, when: datetime) -> None:
    with make_sessionmaker(engine)() as session:
        session.execute(update(Product).where(Product.id == product_id).values(created_at=when))
        session.commit()


def test_create_answers_with_defaults_money_strings_and_empty_stock(
    client: TestClient, manager_headers: dict[str, str]
) -> None:
    category = make_category(client, manager_headers, "Shirts")
    response = client.post(
        f"{API}/products",
        json={
            "sku": "  TSHIRT-BLK.M_1  ",
            "name": " T-shirt ",
            "category_id": category["id"],
            "price": "19.9",
            "cost_price": "7",
        },
        headers=manager_headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["sku"] == "TSHIRT-BLK.M_1"
    assert body["name"] == "T-shirt"
    assert body["price"] == "19.90"
    assert body["cost_price"] == "7.00"
    assert body["status"] == "active"
    assert body["low_stock_threshold"] == 10
    assert body["category"] == {"id": category["id"], "name": "Shirts", "slug": "shirts"}
    assert body["stock"] == []
    assert body["totals"] == {"on_hand": 0, "reserved": 0, "available": 0}
    assert body["low_stock"] is True
    assert body["archived_at"] is None
    assert datetime.fromisoformat(body["created_at"]).utcoffset() is not None


def test_money_round_trips_exactly(
    client: TestClient, manager_headers: dict[str, str], viewer_headers: dict[str, str]
) -> None:
    cheap = make_product(client, manager_headers, "CHEAP", price="0.10", cost_price="0.20")
    make_product(client, manager_headers, "SUM", price="0.30", cost_price="0.00")
    make_product(client, manager_headers, "BIG", price="9999999999.99", cost_price="0.01")

    fetched = client.get(f"{API}/products/{cheap['id']}", headers=viewer_headers).json()
    assert (fetched["price"], fetched["cost_price"]) == ("0.10", "0.20")
    # 0.1 + 0.2 != 0.3 in binary floating point; stored as DECIMAL, the filter is exact.
    assert skus(client, viewer_headers, min_price="0.30", max_price="0.30") == ["SUM"]
    assert skus(client, viewer_headers, max_price="0.10") == ["CHEAP"]
    big = client.get(f"{API}/products/by-sku/BIG", headers=viewer_headers).json()
    assert big["price"] == "9999999999.99"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price", "19.999"),
        ("price", "-1.00"),
        ("price", "abc"),
        ("price", 0.30000000000000004),
        ("cost_price", "-0.01"),
        ("cost_price", "10000000000.00"),
        ("low_stock_threshold", -1),
        ("status", "deleted"),
        ("sku", "HAS SPACE"),
        ("sku", "X" * 65),
        ("sku", "   "),
        ("name", ""),
    ],
)
def test_invalid_fields_are_422_naming_the_field(
    client: TestClient, manager_headers: dict[str, str], field: str, value: Any
) -> None:
    payload = {"sku": "OK-1", "name": "Fine", "price": "1.00", "cost_price": "1.00", field: value}
    response = client.post(f"{API}/products", json=payload, headers=manager_headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert field_names(response) == [f"body.{field}"]


def test_missing_money_is_422(client: TestClient, manager_headers: dict[str, str]) -> None:
    response = client.post(
        f"{API}/products", json={"sku": "A", "name": "A"}, headers=manager_headers
    )
    assert response.status_code == 422
    assert sorted(field_names(response)) == ["body.cost_price", "body.price"]


def test_sku_is_unique_on_create_and_update(
    client: TestClient, manager_headers: dict[str, str]
) -> None:
    make_product(client, manager_headers, "SKU-1")
    other = make_product(client, manager_headers, "SKU-2")

    duplicate = client.post(
        f"{API}/products",
        json={"sku": " SKU-1 ", "name": "Again", "price": "1.00", "cost_price": "1.00"},
        headers=manager_headers,
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["fields"][0]["field"] == "body.sku"

    renamed = client.patch(
        f"{API}/products/{other['id']}", json={"sku": "SKU-1"}, headers=manager_headers
    )
    assert renamed.status_code == 409
    assert renamed.json()["fields"][0]["field"] == "body.sku"

    same = client.patch(
        f"{API}/products/{other['id']}", json={"sku": "SKU-2"}, headers=manager_headers
    )
    assert same.status_code == 200


def test_category_must_exist_and_be_active(
    client: TestClient, manager_headers: dict[str, str]
) -> None:
    payload = {"sku": "C-1", "name": "C", "price": "1.00", "cost_price": "1.00"}
    unknown = client.post(
        f"{API}/products", json={**payload, "category_id": 999999}, headers=manager_headers
    )
    assert unknown.status_code == 422
    assert unknown.json()["fields"][0]["field"] == "body.category_id"

    archived = make_category(client, manager_headers, "Retired")
    client.post(f"{API}/categories/{archived['id']}/archive", headers=manager_headers)
    into_archived = client.post(
        f"{API}/products", json={**payload, "category_id": archived["id"]}, headers=manager_headers
    )
    assert into_archived.status_code == 422
    assert into_archived.json()["fields"][0]["field"] == "body.category_id"
    assert "archived" in into_archived.json()["detail"]

    product = make_product(client, manager_headers, "C-2")
    moved = client.patch(
        f"{API}/products/{product['id']}",
        json={"category_id": archived["id"]},
        headers=manager_headers,
    )
    assert moved.status_code == 422
    assert moved.json()["fields"][0]["field"] == "body.category_id"


def test_patch_changes_only_what_is_sent(
    client: TestClient, manager_headers: dict[str, str]
) -> None:
    category = make_category(client, manager_headers, "Tools")
    product = make_product(
        client,
        manager_headers,
        "TOOL-1",
        description="Steel",
        category_id=category["id"],
        low_stock_threshold=3,
    )

    patched = client.patch(
        f"{API}/products/{product['id']}",
        json={"price": "12.5", "status": "inactive"},
        headers=manager_headers,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["price"], body["status"]) == ("12.50", "inactive")
    assert (body["cost_price"], body["description"], body["low_stock_threshold"]) == (
        "4.00",
        "Steel",
        3,
    )
    assert body["category"]["id"] == category["id"]
    # A new row was written at one moment; a change moves updated_at on, never created_at.
    assert product["updated_at"] == product["created_at"]
    assert body["created_at"] == product["created_at"]
    assert datetime.fromisoformat(body["updated_at"]) > datetime.fromisoformat(
        product["updated_at"]
    )

    uncategorised = client.patch(
        f"{API}/products/{product['id']}", json={"category_id": None}, headers=manager_headers
    )
    assert uncategorised.json()["category"] is None
    assert uncategorised.json()["category_id"] is None

    null_price = client.patch(
        f"{API}/products/{product['id']}", json={"price": None}, headers=manager_headers
    )
    assert null_price.status_code == 422
    assert field_names(null_price) == ["body.price"]


def test_lookup_by_id_and_sku_with_stock_per_warehouse(
    client: TestClient,
    engine: Engine,
    manager_headers: dict[str, str],
    viewer_headers: dict[str, str],
) -> None:
    client.post(
        f"{API}/warehouses", json={"code": "BER", "name": "Berlin"}, headers=manager_headers
    )
    product = make_product(client, manager_headers, "MUG-1", low_stock_threshold=5)
    put_stock(engine, product["id"], "MAIN", on_hand=10, reserved=3)
    put_stock(engine, product["id"], "BER", on_hand=4, reserved=0)

    by_id = client.get(f"{API}/products/{product['id']}", headers=viewer_headers)
    by_sku = client.get(f"{API}/products/by-sku/MUG-1", headers=viewer_headers)
    assert by_id.status_code == by_sku.status_code == 200
    assert by_id.json() == by_sku.json()
    body = by_id.json()
    assert [
        (s["warehouse_code"], s["on_hand"], s["reserved"], s["available"]) for s in body["stock"]
    ] == [("BER", 4, 0, 4), ("MAIN", 10, 3, 7)]
    assert body["stock"][1]["warehouse_name"] == "Main warehouse"
    assert body["totals"] == {"on_hand": 14, "reserved": 3, "available": 11}
    assert body["low_stock"] is False

    for path in ("/products/999999", "/products/by-sku/NOPE"):
        missing = client.get(f"{API}{path}", headers=viewer_headers)
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found"


def test_list_pages_with_total_and_sorts(
    client: TestClient,
    engine: Engine,
    manager_headers: dict[str, str],
    viewer_headers: dict[str, str],
) -> None:
    a = make_product(client, manager_headers, "A", name="Anvil", price="30.00", cost_price="9")
    b = make_product(client, manager_headers, "B", name="Bucket", price="5.50", cost_price="1")
    c = make_product(client, manager_headers, "C", name="Chisel", price="12.00", cost_price="20")
    make_product(client, manager_headers, "D", name="Drill", price="99.99", cost_price="50")
    put_stock(engine, a["id"], "MAIN", on_hand=5)
    put_stock(engine, b["id"], "MAIN", on_hand=50, reserved=10)
    put_stock(engine, c["id"], "MAIN", on_hand=8, reserved=8)

    page = listed(client, viewer_headers, sort="-price", limit=2)
    assert [p["sku"] for p in page["items"]] == ["D", "A"]
    assert (page["total"], page["limit"], page["offset"]) == (4, 2, 0)
    assert [p["price"] for p in page["items"]] == ["99.99", "30.00"]
    assert skus(client, viewer_headers, sort="-price", limit=2, offset=2) == ["C", "B"]

    assert skus(client, viewer_headers) == ["D", "C", "B", "A"]  # newest first
    assert skus(client, viewer_headers, sort="name") == ["A", "B", "C", "D"]
    assert skus(client, viewer_headers, sort="cost_price") == ["B", "A", "C", "D"]
    # By total available; D has no stock rows at all and counts as 0, like C (8 - 8).
    assert skus(client, viewer_headers, sort="stock,sku") == ["C", "D", "A", "B"]
    assert skus(client, viewer_headers, sort="-stock,sku") == ["B", "A", "C", "D"]
    bucket = listed(client, viewer_headers, q="bucket")["items"][0]
    assert bucket["totals"] == {"on_hand": 50, "reserved": 10, "available": 40}

    bad = client.get(f"{API}/products", params={"sort": "colour"}, headers=viewer_headers)
    assert bad.status_code == 400
    assert "stock" in bad.json()["detail"]


def test_search_covers_name_sku_and_description_in_any_case(
    client: TestClient, manager_headers: dict[str, str], viewer_headers: dict[str, str]
) -> None:
    make_product(client, manager_headers, "KB-100", name="Keyboard", description="Mechanical")
    make_product(client, manager_headers, "MS-200", name="Mouse", description="Wireless optical")
    make_product(client, manager_headers, "PAD-1", name="Mouse pad", description="50% off_cut")

    assert skus(client, viewer_headers, q="KEYBOARD") == ["KB-100"]
    assert skus(client, viewer_headers, q="ms-2") == ["MS-200"]
    assert skus(client, viewer_headers, q="OPTICAL") == ["MS-200"]
    assert skus(client, viewer_headers, q="mouse", sort="sku") == ["MS-200", "PAD-1"]
    # LIKE wildcards in the search text are matched literally.
    assert skus(client, viewer_headers, q="50%") == ["PAD-1"]
    assert skus(client, viewer_headers, q="f%c") == []
    assert skus(client, viewer_headers, q="o_f") == []
    assert skus(client, viewer_headers, q="f_c") == ["PAD-1"]


def test_category_filter_includes_subcategories(
    client: TestClient, manager_headers: dict[str, str], viewer_headers: dict[str, str]
) -> None:
    root = make_category(client, manager_headers, "Outdoor")
    child = make_category(client, manager_headers, "Camping", parent_id=root["id"])
    grandchild = make_category(client, manager_headers, "Tents", parent_id=child["id"])
    sibling = make_category(client, manager_headers, "Indoor")
    make_product(client, manager_headers, "TENT-1", category_id=grandchild["id"])
    make_product(client, manager_headers, "STOVE-1", category_id=child["id"])
    make_product(client, manager_headers, "LAMP-1", category_id=sibling["id"])
    make_product(client, manager_headers, "LOOSE-1")

    assert skus(client, viewer_headers, category_id=root["id"], sort="sku") == [
        "STOVE-1",
        "TENT-1",
    ]
    assert skus(client, viewer_headers, category_id=grandchild["id"]) == ["TENT-1"]
    assert skus(client, viewer_headers, category_id=sibling["id"]) == ["LAMP-1"]
    # repeated: in any of those subtrees, each product once
    both = {"category_id": [grandchild["id"], sibling["id"], root["id"]], "sort": "sku"}
    assert skus(client, viewer_headers, **both) == ["LAMP-1", "STOVE-1", "TENT-1"]
    assert listed(client, viewer_headers, **both)["total"] == 3

    unknown = client.get(
        f"{API}/products", params={"category_id": [root["id"], 999999]}, headers=viewer_headers
    )
    assert unknown.status_code == 422 and unknown.json()["unknown"] == [999999]
    assert unknown.json()["fields"][0]["field"] == "query.category_id"


def test_filters_by_status_price_low_stock_and_creation_time(
    client: TestClient,
    engine: Engine,
    manager_headers: dict[str, str],
    viewer_headers: dict[str, str],
) -> None:
    old = make_product(client, manager_headers, "OLD", price="5.00", status="inactive")
    mid = make_product(client, manager_headers, "MID", price="15.00", low_stock_threshold=20)
    new = make_product(client, manager_headers, "NEW", price="25.00", status="draft")
    set_created_at(engine, old["id"], datetime(2024, 1, 10, 12, tzinfo=UTC))
    set_created_at(engine, mid["id"], datetime(2024, 2, 10, 12, tzinfo=UTC))
    set_created_at(engine, new["id"], datetime(2024, 3, 10, 12, tzinfo=UTC))
    put_stock(engine, old["id"], "MAIN", on_hand=100)
    put_stock(engine, mid["id"], "MAIN", on_hand=30, reserved=10)  # 20 available, threshold 20
    put_stock(engine, new["id"], "MAIN", on_hand=11)  # 11 available, threshold 10

    assert skus(client, viewer_headers, status="draft") == ["NEW"]
    assert skus(client, viewer_headers, min_price="10", sort="price") == ["MID", "NEW"]
    assert skus(client, viewer_headers, min_price="10", max_price="20") == ["MID"]
    assert skus(client, viewer_headers, low_stock_only=True) == ["MID"]
    # 2024-02-10T14:00+02:00 is 12:00 UTC: `from` is included, `to` excluded, offsets count.
    assert skus(
        client,
        viewer_headers,
        **{"from": "2024-02-10T14:00:00+02:00", "to": "2024-03-10T12:00:01Z"},
        sort="created_at",
    ) == ["MID", "NEW"]
    assert skus(client, viewer_headers, to="2024-03-10T13:00:00+01:00", sort="created_at") == [
        "OLD",
        "MID",
    ]
    assert skus(client, viewer_headers, to="2024-02-10T12:00:00+00:00") == ["OLD"]
    # A date is a calendar day in `timezone`, `to` included: MID's 12:00 UTC is already the
    # 11th at UTC+14.
    utc_day = {"from": "2024-02-10", "to": "2024-02-10", "timezone": "UTC"}
    assert skus(client, viewer_headers, **utc_day) == ["MID"]
    kiritimati = {"from": "2024-02-11", "to": "2024-02-11", "timezone": "Pacific/Kiritimati"}
    assert skus(client, viewer_headers, **kiritimati) == ["MID"]


def test_the_old_creation_time_names_are_refused_as_unknown_parameters(
    client: TestClient, viewer_headers: dict[str, str]
) -> None:
    for name in ("created_from", "created_to"):
        answer = client.get(
            f"{API}/products", params={name: "2024-02-10T12:00:00Z"}, headers=viewer_headers
        )
        assert answer.status_code == 422
        (problem,) = answer.json()["fields"]
        assert problem["field"] == f"query.{name}"
        assert problem["type"] == "unknown_parameter"
        assert "from" in problem["reason"] and "to" in problem["reason"]


def test_inverted_ranges_and_naive_times_are_422(
    client: TestClient, viewer_headers: dict[str, str]
) -> None:
    prices = client.get(
        f"{API}/products", params={"min_price": "20", "max_price": "10"}, headers=viewer_headers
    )
    assert prices.status_code == 422
    assert field_names(prices) == ["query.max_price"]
    assert "min_price" in prices.json()["detail"]

    dates = client.get(
        f"{API}/products",
        params={"from": "2024-05-01T00:00:00Z", "to": "2024-05-01T02:00:00+02:00"},
        headers=viewer_headers,
    )
    assert dates.status_code == 422
    assert field_names(dates) == ["query.to"]
    assert "later than from" in dates.json()["detail"]

    for name, value in (("from", "2024-05-01T00:00:00"), ("to", "2024-05-01T12:00")):
        naive = client.get(f"{API}/products", params={name: value}, headers=viewer_headers)
        assert naive.status_code == 422
        assert field_names(naive) == [f"query.{name}"]

    cents = client.get(f"{API}/products", params={"min_price": "1.005"}, headers=viewer_headers)
    assert cents.status_code == 422
    assert field_names(cents) == ["query.min_price"]


def test_archived_products_are_hidden_until_restored(
    client: TestClient, manager_headers: dict[str, str], viewer_headers: dict[str, str]
) -> None:
    make_product(client, manager_headers, "KEEP")
    gone = make_product(client, manager_headers, "GONE")

    archived = client.post(f"{API}/products/{gone['id']}/archive", headers=manager_headers)
    assert archived.status_code == 200
    assert archived.json()["archived_at"] is not None

    assert skus(client, viewer_headers) == ["KEEP"]
    assert listed(client, viewer_headers)["total"] == 1
    assert skus(client, viewer_headers, include_archived=True) == ["GONE", "KEEP"]
    assert client.get(f"{API}/products/by-sku/GONE", headers=viewer_headers).status_code == 200

    restored = client.post(f"{API}/products/{gone['id']}/restore", headers=manager_headers)
    assert restored.json()["archived_at"] is None
    assert skus(client, viewer_headers, sort="sku") == ["GONE", "KEEP"]


def test_an_archived_product_says_archived_until_restored_to_its_own_status(
    client: TestClient, manager_headers: dict[str, str], viewer_headers: dict[str, str]
) -> None:
    draft = make_product(client, manager_headers, "DRAFT-1", status="draft")
    make_product(client, manager_headers, "LIVE-1")
    path = f"{API}/products/{draft['id']}"

    archived = client.post(f"{path}/archive", headers=manager_headers)
    assert archived.json()["status"] == "archived"
    assert client.get(path, headers=viewer_headers).json()["status"] == "archived"
    by_sku = client.get(f"{API}/products/by-sku/DRAFT-1", headers=viewer_headers)
    assert by_sku.json()["status"] == "archived"
    statuses = {
        p["sku"]: p["status"]
        for p in listed(client, viewer_headers, include_archived=True)["items"]
    }
    assert statuses == {"DRAFT-1": "archived", "LIVE-1": "active"}

    # A change to an archived product keeps it archived; archiving is the archive route.
    renamed = client.patch(path, json={"name": "Renamed"}, headers=manager_headers)
    assert renamed.status_code == 200
    assert renamed.json()["status"] == "archived"
    for body in ({"status": "archived"}, {"sku": "NEW-1", "status": "archived"}):
        refused = client.patch(path, json=body, headers=manager_headers)
        assert refused.status_code == 422
        assert field_names(refused) == ["body.status"]
    payload = {"sku": "X-1", "name": "x", "price": "1.00", "cost_price": "1.00"}
    created = client.post(
        f"{API}/products", json={**payload, "status": "archived"}, headers=manager_headers
    )
    assert created.status_code == 422
    assert field_names(created) == ["body.status"]

    restored = client.post(f"{path}/restore", headers=manager_headers)
    assert restored.json()["status"] == "draft"
    assert client.get(path, headers=viewer_headers).json()["status"] == "draft"
    assert skus(client, viewer_headers, status="draft") == ["DRAFT-1"]


def test_the_status_filter_finds_archived_products_and_stored_statuses(
    client: TestClient, manager_headers: dict[str, str], viewer_headers: dict[str, str]
) -> None:
    make_product(client, manager_headers, "ACTIVE-1")
    make_product(client, manager_headers, "INACTIVE-1", status="inactive")
    gone_active = make_product(client, manager_headers, "GONE-ACTIVE")
    gone_draft = make_product(client, manager_headers, "GONE-DRAFT", status="draft")
    for product in (gone_active, gone_draft):
        client.post(f"{API}/products/{product['id']}/archive", headers=manager_headers)

    # `archived` is the archived ones, whether include_archived is said or not.
    for extra in ({}, {"include_archived": True}, {"include_archived": False}):
        page = listed(client, viewer_headers, status="archived", sort="sku", **extra)
        assert [p["sku"] for p in page["items"]] == ["GONE-ACTIVE", "GONE-DRAFT"]
        assert {p["status"] for p in page["items"]} == {"archived"}
        assert page["total"] == 2
    # A stored status is the products not archived with it, and with include_archived the
    # archived ones stored with it too (answered as archived).
    assert skus(client, viewer_headers, status="active") == ["ACTIVE-1"]
    assert skus(client, viewer_headers, status="draft") == []
    assert skus(client, viewer_headers, status="active", include_archived=True, sort="sku") == [
        "ACTIVE-1",
        "GONE-ACTIVE",
    ]
    assert skus(client, viewer_headers, status="draft", include_archived=True) == ["GONE-DRAFT"]
    # Repeated: any of them, each as said alone.
    several = {"status": ["inactive", "archived"], "sort": "sku"}
    assert skus(client, viewer_headers, **several) == ["GONE-ACTIVE", "GONE-DRAFT", "INACTIVE-1"]
    assert skus(client, viewer_headers, status=["active", "draft"]) == ["ACTIVE-1"]
    stored = {"status": ["active", "draft"], "include_archived": True, "sort": "sku"}
    assert skus(client, viewer_headers, **stored) == ["ACTIVE-1", "GONE-ACTIVE", "GONE-DRAFT"]

    unknown = client.get(
        f"{API}/products", params={"status": ["active", "gone"]}, headers=viewer_headers
    )
    assert unknown.status_code == 422
    assert field_names(unknown) == ["query.status.1"]  # the second value


def test_viewers_read_and_managers_write(
    client: TestClient, manager_headers: dict[str, str], viewer_headers: dict[str, str]
) -> None:
    product = make_product(client, manager_headers, "RO-1")
    payload = {"sku": "RO-2", "name": "x", "price": "1.00", "cost_price": "1.00"}
    assert client.post(f"{API}/products", json=payload, headers=viewer_headers).status_code == 403
    for path in (f"/products/{product['id']}/archive", f"/products/{product['id']}/restore"):
        assert client.post(f"{API}{path}", headers=viewer_headers).status_code == 403
    patch = client.patch(f"{API}/products/{product['id']}", json={}, headers=viewer_headers)
    assert patch.status_code == 403
    assert client.get(f"{API}/products").status_code == 401
    assert client.get(f"{API}/products/{product['id']}", headers=viewer_headers).status_code == 200
