"""The OpenAPI document describes the answers as they are sent, and the input as it is read.

tests/test_api_fuzz.py checks this for every operation; these are the cases of issue 10
(item 7), one each, so a regression names itself.
"""

import json
import re
from typing import Any

from fastapi.testclient import TestClient

from tests.products_service.factories import API, make_product


def _parameter(document: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    operation = document["paths"][path][method]
    found: dict[str, Any] = next(p for p in operation["parameters"] if p["name"] == name)
    return found


def test_every_422_is_documented_with_the_body_the_handler_sends(products_app: Any) -> None:
    document = products_app.openapi()
    assert "HTTPValidationError" not in json.dumps(document)
    schemas = document["components"]["schemas"]
    assert set(schemas["ValidationErrorBody"]["required"]) == {"error", "detail", "fields"}
    users = document["paths"]["/api/v1/users"]["get"]["responses"]["422"]
    assert users["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ValidationErrorBody"
    }


def test_a_body_that_is_not_text_is_a_documented_422_naming_the_body(
    client: TestClient, manager_headers: dict[str, str]
) -> None:
    answer = client.post(
        f"{API}/categories",
        content=b"\xff\xfe{",
        headers={**manager_headers, "Content-Type": "application/json"},
    )
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "validation_error"
    assert [f["field"] for f in body["fields"]] == ["body"]


def test_an_undeclared_method_is_a_405_that_names_every_method_of_the_path(
    client: TestClient, manager_headers: dict[str, str]
) -> None:
    listing = client.options(f"{API}/products", headers=manager_headers)
    assert listing.status_code == 405
    assert listing.headers["Allow"] == "GET, POST"
    # GET and PATCH /categories/{category_id} are two routes; Starlette named only the first.
    one = client.put(f"{API}/categories/1", headers=manager_headers)
    assert one.status_code == 405
    assert one.headers["Allow"] == "GET, PATCH"
    assert one.json()["error"] == "method_not_allowed"


def test_a_category_path_has_one_parameter_name_for_all_its_methods(products_app: Any) -> None:
    paths = products_app.openapi()["paths"]
    assert set(paths[f"{API}/categories/{{category_id}}"]) == {"get", "patch"}
    assert not [path for path in paths if "{id_or_slug}" in path]


def test_json_numbers_are_not_booleans_and_booleans_not_numbers(
    client: TestClient, manager_headers: dict[str, str]
) -> None:
    warehouse = client.post(
        f"{API}/warehouses", json={"code": "w-1", "name": "W"}, headers=manager_headers
    )
    assert warehouse.status_code == 201, warehouse.text
    assert warehouse.json()["code"] == "W-1"
    bad_flag = client.patch(
        f"{API}/warehouses/{warehouse.json()['id']}", json={"is_active": 0}, headers=manager_headers
    )
    assert bad_flag.status_code == 422
    product = make_product(client, manager_headers, "FLAG-1")
    bad_number = client.patch(
        f"{API}/products/{product['id']}",
        json={"low_stock_threshold": False},
        headers=manager_headers,
    )
    assert bad_number.status_code == 422


def test_money_is_a_plain_decimal_string_with_at_most_two_places(
    client: TestClient, manager_headers: dict[str, str], products_app: Any
) -> None:
    price = products_app.openapi()["components"]["schemas"]["ProductCreate"]["properties"]["price"]
    assert price["type"] == "string" and "anyOf" not in price  # a client never sends a float
    assert re.fullmatch(price["pattern"], "19.90")
    assert not re.fullmatch(price["pattern"], "1e3")
    for written in ("1e3", " 19.90", "1_000", "19.999", 7, 19.9):
        answer = client.post(
            f"{API}/products",
            json={"sku": "MONEY-1", "name": "M", "price": written, "cost_price": "1.00"},
            headers=manager_headers,
        )
        assert answer.status_code == 422, written
    assert make_product(client, manager_headers, "MONEY-2", price="7")["price"] == "7.00"


def test_sort_parameters_name_their_fields_and_codes_their_grammar(products_app: Any) -> None:
    document = products_app.openapi()
    sort = _parameter(document, f"{API}/products", "get", "sort")["schema"]
    assert re.fullmatch(sort["pattern"], "-price,name")
    assert not re.fullmatch(sort["pattern"], "colour")
    code = document["components"]["schemas"]["WarehouseCreate"]["properties"]["code"]
    assert re.fullmatch(code["pattern"], "ber-1")
    sku = document["components"]["schemas"]["ProductCreate"]["properties"]["sku"]
    assert sku["pattern"] == r"^[A-Za-z0-9._-]+$"


def test_every_operation_has_a_unique_camel_case_id_a_generated_client_can_name_a_method_after(
    products_app: Any, sales_app: Any
) -> None:
    for app in (products_app, sales_app):
        ids = [
            operation["operationId"]
            for item in app.openapi()["paths"].values()
            for operation in item.values()
        ]
        assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
        odd = [i for i in ids if not re.fullmatch(r"[a-z]+(?:[A-Z][a-z0-9]*)*", i)]
        assert not odd, odd  # e.g. FastAPI's own "list_sales_api_v1_sales_get"
    sales_ids = {
        op["operationId"] for item in sales_app.openapi()["paths"].values() for op in item.values()
    }
    assert {"recordSale", "listSales", "getRevenueReport", "login"} <= sales_ids


def test_a_browser_script_may_read_the_headers_the_api_sends_for_it(
    client: TestClient, manager_headers: dict[str, str]
) -> None:
    origin = "http://localhost:5173"
    answer = client.get(
        f"{API}/products", params={"limit": 1}, headers={**manager_headers, "Origin": origin}
    )
    assert answer.headers["access-control-allow-origin"] == origin
    exposed = {
        h.strip().lower() for h in answer.headers["access-control-expose-headers"].split(",")
    }
    assert {"idempotent-replayed", "content-disposition", "retry-after", "x-request-id"} <= exposed


def test_every_error_about_an_input_names_it_the_one_way(
    products_app: Any, client: TestClient, manager_headers: dict[str, str]
) -> None:
    """A taken SKU (409), a bad sort (400) and a schema violation (422) all list the inputs
    at fault in `fields`, located: one mapping onto a form for every error."""
    make_product(client, manager_headers, sku="ONE-SHAPE-1")
    again = {"sku": "ONE-SHAPE-1", "name": "Again", "price": "1.00", "cost_price": "0.50"}
    taken = client.post(f"{API}/products", json=again, headers=manager_headers)
    bad_sort = client.get(f"{API}/products", params={"sort": "colour"}, headers=manager_headers)
    invalid = client.post(f"{API}/products", json={"sku": "X"}, headers=manager_headers)
    for answer, status, where in (
        (taken, 409, "body.sku"),
        (bad_sort, 400, "query.sort"),
        (invalid, 422, "body.name"),
    ):
        assert answer.status_code == status, answer.text
        body = answer.json()
        assert {"error", "detail", "fields"} <= body.keys() and "field" not in body
        assert where in [f["field"] for f in body["fields"]], body
        assert all(set(f) == {"field", "reason", "type"} for f in body["fields"])
    schema = products_app.openapi()["components"]["schemas"]["ErrorBody"]
    assert "fields" in schema["properties"]
