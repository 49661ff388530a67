"""A query parameter a route does not take is a 422 naming it, never silently ignored.

Walked through both services' OpenAPI documents, every operation, so a route added later is
covered too; and the cases a dashboard developer hit, on real rows: a misspelt or missing
filter used to answer as if it were not there (every channel, today's levels).
"""

import re
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
