"""An integer far beyond anything stored (2**70 as an id, a filter, a page size or a field of
a body) is answered, never a 500, on MariaDB and on the embedded SQLite alike: SQLite's
driver cannot bind it at all (a 422 then), where MariaDB finds no row or refuses the value.

Walked through both services' OpenAPI documents, every read with an integer in its path or
query, so a route added later is covered too."""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from common import migrate
from common.settings import ProductsSettings, SalesSettings
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

HUGE = 2**70
Headers = dict[str, str]


def _integer(schema: dict[str, Any]) -> bool:
    kinds = [schema, *schema.get("anyOf", []), schema.get("items", {})]
    return any(kind.get("type") == "integer" for kind in kinds)


def integer_reads(app: FastAPI) -> list[tuple[str, dict[str, int]]]:
    """Every GET with an integer in its path or query: (the path with every integer path
    parameter HUGE and the others 'x', one query of HUGE per integer query parameter)."""
    found: list[tuple[str, dict[str, int]]] = []
    for path, item in app.openapi()["paths"].items():
        operation = item.get("get")
        if operation is None or path.endswith("/events/stream"):  # a stream never ends
            continue
        parameters = operation.get("parameters", [])
        huge_path = path
        for p in parameters:
            if p["in"] == "path":
                value = str(HUGE) if _integer(p["schema"]) else "x"
                huge_path = huge_path.replace("{" + p["name"] + "}", value)
        huge_path = re.sub(r"\{[^}]+\}", "x", huge_path)
        queries = [p["name"] for p in parameters if p["in"] == "query" and _integer(p["schema"])]
        if huge_path != path:
            found.append((huge_path, {}))
        found.extend((huge_path, {name: HUGE}) for name in queries)
    return found


def _walk(api: TestClient, headers: Headers) -> int:
    checked = 0
    for path, query in integer_reads(api.app):  # type: ignore[arg-type]
        answer = api.get(path, params=query, headers=headers)
        # a 4xx, or for a figure rather than an id (a threshold, an offset) a plain answer
        assert answer.status_code < 500, (path, query, answer.status_code, answer.text)
        assert answer.status_code < 300 or answer.json()["error"], (path, query, answer.text)
        checked += 1
    return checked


def test_huge_integers_in_paths_and_queries_are_refused_on_mariadb(
    client: TestClient, sales_client: TestClient, admin_headers: Headers
) -> None:
    assert _walk(client, admin_headers) + _walk(sales_client, admin_headers) > 60


@pytest.fixture
def sqlite_clients(
    tmp_path: Path, settings: ProductsSettings, sales_settings: SalesSettings
) -> Iterator[tuple[TestClient, TestClient, Headers]]:
    from products_service.main import create_app as products_app
    from sales_service.main import create_app as sales_app

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    migrate.upgrade(url)
    products = products_app(settings.model_copy(update={"database_url": url}))
    sales = sales_app(sales_settings.model_copy(update={"database_url": url}))
    with (
        TestClient(products, raise_server_exceptions=False) as products_client,
        TestClient(sales, raise_server_exceptions=False) as sales_client,
    ):
        login = products_client.post(
            "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        yield products_client, sales_client, headers


def test_huge_integers_anywhere_are_refused_on_the_embedded_sqlite(
    sqlite_clients: tuple[TestClient, TestClient, Headers],
) -> None:
    products, sales, headers = sqlite_clients
    assert _walk(products, headers) + _walk(sales, headers) > 60
    # ... and in a body, where nothing of the request is then written
    product = {"sku": "HUGE-1", "name": "x", "price": "1.00", "cost_price": "0.50"}
    refused = products.post(
        "/api/v1/products", json={**product, "category_id": HUGE}, headers=headers
    )
    assert refused.status_code == 422, refused.text
    assert products.get("/api/v1/products", headers=headers).json()["total"] == 0
    receipt = {"product_id": HUGE, "warehouse_id": 1, "quantity": 1}
    answer = products.post("/api/v1/inventory/receipts", json=receipt, headers=headers)
    assert 400 <= answer.status_code < 500, answer.text
