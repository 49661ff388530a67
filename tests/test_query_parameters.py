"""A query parameter a route does not take is a 422 naming it, never silently ignored.

Walked through both services' OpenAPI documents, every operation, so a route added later is
covered too; and the cases a dashboard developer hit, on real rows: a misspelt or missing
filter used to answer as if it were not there (every channel, today's levels).
"""

import re
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

Headers = dict[str, str]
UNKNOWN = "no_such_filter"


def operations(app: FastAPI) -> list[tuple[str, str, list[str]]]:
    """(method, path with its parameters filled in, the query names it documents)."""
    found = []
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            found.append((method.upper(), re.sub(r"\{[^}]+\}", "1", path), names))
    return found


@pytest.mark.parametrize("service", ["products", "sales"])
def test_every_operation_refuses_a_query_parameter_it_does_not_document(
    service: str,
    client: TestClient,
    sales_client: TestClient,
    admin_headers: Headers,
) -> None:
    api = client if service == "products" else sales_client
    app: Any = api.app
    checked = 0
    for method, path, documented in operations(app):
        answer = api.request(method, path, params={UNKNOWN: "1"}, headers=admin_headers)
        assert answer.status_code == 422, (method, path, answer.status_code, answer.text)
        body = answer.json()
        assert body["error"] == "validation_error"
        (problem,) = body["fields"]
        assert problem["field"] == f"query.{UNKNOWN}", (method, path, body)
        assert problem["type"] == "unknown_parameter"
        for name in documented:  # the answer says what the route takes instead
            assert name in problem["reason"], (method, path, name, problem)
        checked += 1
    assert checked > 30


def test_a_misspelt_sales_filter_is_named_instead_of_answering_every_sale(
    sales_client: TestClient, manager_headers: Headers
) -> None:
    answer = sales_client.get(
        "/api/v1/sales",
        params={"channel": "amazon", "chanel_id": "3", "limit": "5"},
        headers=manager_headers,
    )
    assert answer.status_code == 422, answer.text
    fields = [f["field"] for f in answer.json()["fields"]]
    assert fields == ["query.channel", "query.chanel_id"]
    assert "channel_id" in answer.json()["fields"][0]["reason"]
    assert sales_client.get(
        "/api/v1/sales", params={"limit": "5"}, headers=manager_headers
    ).is_success


def test_a_filter_a_route_lacks_is_refused_not_answered_with_something_else(
    client: TestClient, manager_headers: Headers
) -> None:
    answer = client.get(
        "/api/v1/inventory/levels", params={"category_id": "3"}, headers=manager_headers
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["fields"][0]["field"] == "query.category_id"
    assert answer.json()["fields"][0]["type"] == "unknown_parameter"
    # a declared parameter repeated (a list filter) is fine; a known one still works
    listed = client.get(
        "/api/v1/products",
        params=[("limit", "5"), ("offset", "0")],
        headers=manager_headers,
    )
    assert listed.status_code == 200, listed.text


def array_parameters(app: FastAPI) -> dict[tuple[str, str], dict[str, bool]]:
    """(method, filled path) -> {query name: whether it takes several values}."""
    found = {}
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            names = {}
            for parameter in operation.get("parameters", []):
                if parameter["in"] != "query":
                    continue
                schema = parameter["schema"]
                kinds = [schema, *schema.get("anyOf", [])]
                names[parameter["name"]] = any(k.get("type") == "array" for k in kinds)
            found[(method.upper(), re.sub(r"\{[^}]+\}", "1", path))] = names
    return found


@pytest.mark.parametrize("service", ["products", "sales"])
def test_a_parameter_that_takes_one_value_sent_twice_is_refused_naming_it(
    service: str,
    client: TestClient,
    sales_client: TestClient,
    admin_headers: Headers,
) -> None:
    """Answering for the last value alone (`limit=5&limit=50` as 50) would
    hide the first; a filter that takes several is documented as an array and matches any."""
    api = client if service == "products" else sales_client
    app: Any = api.app
    checked = 0
    for (method, path), names in array_parameters(app).items():
        for name, several in names.items():
            if several:
                continue
            answer = api.request(
                method, path, params=[(name, "1"), (name, "1")], headers=admin_headers
            )
            assert answer.status_code == 422, (method, path, name, answer.text)
            problems = [f for f in answer.json()["fields"] if f["field"] == f"query.{name}"]
            assert [p["type"] for p in problems] == ["repeated_parameter"], (
                method,
                path,
                answer.text,
            )
            checked += 1
    assert checked > 50


def test_stock_filters_on_ids_and_statuses_match_any_of_the_values_repeated(
    client: TestClient, engine: Any, manager_headers: Headers, admin_headers: Headers
) -> None:
    from tests.products_service.factories import create_product, main_warehouse_id

    main = main_warehouse_id(engine)
    north = client.post(
        "/api/v1/warehouses",
        json={"code": f"N{uuid.uuid4().hex[:6].upper()}", "name": "North"},
        headers=admin_headers,
    ).json()["id"]
    a, b, c = (create_product(engine, stock={main: 5}) for _ in range(3))
    transfers = []
    for product in (a, b):
        moved = client.post(
            "/api/v1/inventory/transfers",
            json={
                "product_id": product,
                "from_warehouse_id": main,
                "to_warehouse_id": north,
                "quantity": 1,
            },
            headers=manager_headers,
        )
        transfers.append(moved.json()["id"])
    client.post(f"/api/v1/inventory/transfers/{transfers[0]}/complete", headers=manager_headers)

    def listed(path: str, params: list[tuple[str, Any]]) -> list[Any]:
        answer = client.get(
            f"/api/v1{path}", params=[*params, ("limit", 500)], headers=manager_headers
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["items"]

    levels = listed(
        "/inventory/levels", [("product_id", a), ("product_id", b), ("warehouse_id", north)]
    )
    assert sorted((r["product_id"], r["on_hand"]) for r in levels) == [(a, 1)]
    levels = listed("/inventory/levels", [("product_id", a), ("product_id", c)])
    assert sorted((r["product_id"], r["warehouse_id"]) for r in levels) == sorted(
        [(a, main), (a, north), (c, main)]
    )
    both = listed(
        "/inventory/transfers",
        [("status", "in_transit"), ("status", "completed"), ("product_id", a), ("product_id", b)],
    )
    assert sorted(t["id"] for t in both) == sorted(transfers)
    assert [
        t["id"]
        for t in listed(
            "/inventory/transfers", [("status", "completed"), ("product_id", a), ("product_id", b)]
        )
    ] == [transfers[0]]
    ledger = listed(
        f"/inventory/products/{a}/movements", [("warehouse_id", main), ("warehouse_id", north)]
    )
    assert sorted(m["type"] for m in ledger) == ["receipt", "transfer_in", "transfer_out"]
    # Low stock over two warehouses counts their stock together: a has 4 on MAIN, 1 on NORTH.
    low = listed(
        "/inventory/low-stock",
        [("warehouse_id", main), ("warehouse_id", north), ("include_ok", "true")],
    )
    by_product = {row["product_id"]: row for row in low}
    # b has 4 on MAIN and 1 in transit, counted nowhere until the transfer completes.
    assert by_product[a]["available"] == 5 and by_product[b]["available"] == 4
    assert sorted(w["warehouse_id"] for w in by_product[a]["warehouses"]) == sorted([main, north])
    only_north = listed("/inventory/low-stock", [("warehouse_id", north), ("include_ok", "true")])
    assert {row["product_id"]: row["available"] for row in only_north}[a] == 1
    unknown = client.get(
        f"/api/v1/inventory/products/{a}/movements",
        params=[("warehouse_id", main), ("warehouse_id", 999999)],
        headers=manager_headers,
    )
    assert unknown.status_code == 422 and unknown.json()["unknown"] == [999999]


# Id filters that may name what is gone for good: the audit log keeps the entries of deleted
# things (and of users removed), and a stream's position is an event id, not a row.
FREE_IDS = {("/api/v1/audit-log", "entity_id"), ("/api/v1/audit-log", "actor_id")}
NOWHERE = 999_999_999


def _known_ids(client: TestClient, sales_client: TestClient, headers: Headers) -> dict[str, int]:
    """An id of each kind an id filter names, made through the API."""
    tag = uuid.uuid4().hex[:8]
    category = client.post("/api/v1/categories", json={"name": f"Ids {tag}"}, headers=headers)
    warehouse = client.post(
        "/api/v1/warehouses", json={"code": f"W{tag}".upper(), "name": tag}, headers=headers
    )
    product = client.post(
        "/api/v1/products",
        json={
            "sku": f"IDS-{tag}",
            "name": tag,
            "price": "2.00",
            "cost_price": "1.00",
            "category_id": category.json()["id"],
        },
        headers=headers,
    )
    channel = sales_client.post(
        "/api/v1/channels", json={"code": f"c{tag}", "name": tag}, headers=headers
    )
    for made in (category, warehouse, product, channel):
        assert made.status_code == 201, made.text
    return {
        "product_id": product.json()["id"],
        "warehouse_id": warehouse.json()["id"],
        "category_id": category.json()["id"],
        "parent_id": category.json()["id"],
        "channel_id": channel.json()["id"],
    }


def test_every_id_filter_names_an_unknown_id_instead_of_answering_nothing(
    client: TestClient, sales_client: TestClient, admin_headers: Headers
) -> None:
    """On every list, report and export of both documents, an id filter naming no row is a
    422 naming the parameter and the id: an empty page would read as "no sales", "no
    stock". The same filter with an id that exists is answered. (Streams, which take the
    same filters, are tested with their own connection in tests/test_streams.py.)"""
    known = _known_ids(client, sales_client, admin_headers)
    checked = set()
    for api in (client, sales_client):
        app: Any = api.app
        for route, item in app.openapi()["paths"].items():
            operation = item.get("get")
            if operation is None or route.endswith("/events/stream"):
                continue
            names = [
                p["name"]
                for p in operation.get("parameters", [])
                if p["in"] == "query"
                and p["name"].endswith("_id")
                and (route, p["name"]) not in FREE_IDS
            ]
            path = route.replace("{product_id}", str(known["product_id"]))
            assert not names or "{" not in path, f"fill in the path parameters of {route}"
            for name in names:
                # a report's parent_id applies to a breakdown by category
                grouping = {"by", "group_by"} & {p["name"] for p in operation["parameters"]}
                extra = {key: "category" for key in grouping} if name == "parent_id" else {}
                unknown = api.get(path, params={name: NOWHERE, **extra}, headers=admin_headers)
                assert unknown.status_code == 422, (route, name, unknown.text)
                body = unknown.json()
                assert body["fields"][0]["field"] == f"query.{name}", (route, body)
                assert body["unknown"] == [NOWHERE] and str(NOWHERE) in body["detail"]
                fine = api.get(path, params={name: known[name], **extra}, headers=admin_headers)
                assert fine.status_code == 200, (route, name, fine.text)
                checked.add((route, name))
    assert len(checked) >= 30, sorted(checked)
    for route, name in [
        ("/api/v1/inventory/low-stock", "warehouse_id"),
        ("/api/v1/inventory/levels", "product_id"),
        ("/api/v1/inventory/transfers", "warehouse_id"),
        ("/api/v1/sales", "channel_id"),
        ("/api/v1/exports/stock-ledger.csv", "warehouse_id"),
        ("/api/v1/categories", "parent_id"),
    ]:
        assert (route, name) in checked
