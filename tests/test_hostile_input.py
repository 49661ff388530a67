"""Hostile input gets a 4xx in the error shape, never a 500, and writes nothing.

Each class here once answered an unhandled 500 (text/plain, dropping the connection):
numbers past what the database takes, instants before or after the calendar, text no
UTF-8 column can hold, forms that bypassed validation. The lists are walked through both
services' OpenAPI documents, so a route added later is covered too.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from common.db import make_sessionmaker
from common.models import Category, Product
from tests.products_service.factories import create_product, main_warehouse_id

Headers = dict[str, str]


def assert_error_shape(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, (answer.request.url, answer.text)
    assert answer.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = answer.json()
    assert isinstance(body["error"], str) and isinstance(body["detail"], str)
    return body


def list_routes(app: FastAPI) -> list[str]:
    """Every GET path without path parameters that pages with ``offset``."""
    paths = []
    for path, item in app.openapi()["paths"].items():
        get = item.get("get")
        if get is None or "{" in path:
            continue
        if any(p["name"] == "offset" for p in get.get("parameters", [])):
            paths.append(path)
    return paths


@pytest.fixture
def both(client: TestClient, sales_client: TestClient) -> Iterator[list[TestClient]]:
    yield [client, sales_client]


def test_an_offset_past_any_integer_is_a_422_on_every_list(
    both: list[TestClient], admin_headers: Headers
) -> None:
    checked = 0
    for app_client in both:
        paths = list_routes(app_client.app)  # type: ignore[arg-type]
        assert paths, "every service has paged lists"
        for path in paths:
            for offset in (2**64, 2**63, 10**30):
                answer = app_client.get(path, params={"offset": offset}, headers=admin_headers)
                body = assert_error_shape(answer, 422)
                assert body["fields"][0]["field"] == "query.offset"
                checked += 1
    assert checked >= 15


@pytest.mark.parametrize(
    ("service", "path", "params"),
    [
        ("sales", "/api/v1/sales", {"from": "0001-01-01T00:00:00+14:00"}),
        ("sales", "/api/v1/sales", {"to": "9999-12-31T23:59:00-14:00"}),
        ("products", "/api/v1/products", {"to": "9999-12-31T23:59-14:00"}),
        ("products", "/api/v1/products", {"from": "0001-01-01T00:00+14:00"}),
        ("sales", "/api/v1/reports/inventory-insight", {"as_of": "0001-01-01"}),
        ("sales", "/api/v1/reports/inventory-insight", {"as_of": "9999-12-31"}),
        ("sales", "/api/v1/reports/revenue", {"from": "9999-12-31"}),
        ("sales", "/api/v1/reports/revenue", {"to": "0001-01-01"}),
        ("sales", "/api/v1/reports/summary", {"from": "0001-01-01", "to": "0001-01-05"}),
        # A number is no date: pydantic would read it as Unix time.
        ("products", "/api/v1/products", {"to": "0.5"}),
        ("sales", "/api/v1/sales", {"from": "1700000000"}),
        ("sales", "/api/v1/sales", {"to": "0001-01-01"}),
    ],
)
def test_instants_outside_the_calendar_or_not_dates_are_422(
    client: TestClient,
    sales_client: TestClient,
    admin_headers: Headers,
    service: str,
    path: str,
    params: dict[str, str],
) -> None:
    app_client = sales_client if service == "sales" else client
    body = assert_error_shape(app_client.get(path, params=params, headers=admin_headers), 422)
    assert body["detail"]


def test_movement_filters_outside_the_calendar_are_422(
    client: TestClient, engine: Engine, admin_headers: Headers
) -> None:
    product = create_product(engine, stock={main_warehouse_id(engine): 1})
    path = f"/api/v1/inventory/products/{product}/movements"
    for params in (
        {"from": "0001-01-01T00:00:00+14:00"},
        {"to": "9999-12-31T23:59:59-14:00"},
        {"from": "-5"},
        {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},  # ends before it starts
    ):
        assert_error_shape(client.get(path, params=params, headers=admin_headers), 422)
    assert client.get(path, headers=admin_headers).status_code == 200


def test_login_forms_with_out_of_bounds_fields_are_422(client: TestClient) -> None:
    for form in (
        {"username": "a", "password": "whatever"},
        {"username": "admin@example.com", "password": "p" * 129},
        {"username": "x" * 300 + "@example.com", "password": "whatever"},
        {"username": "admin@example.com", "password": ""},
    ):
        body = assert_error_shape(client.post("/api/v1/auth/token", data=form), 422)
        assert body["error"] == "validation_error"
    wrong = client.post("/api/v1/auth/token", data={"username": "a@b.co", "password": "nope"})
    assert_error_shape(wrong, 401)


def category_count(engine: Engine) -> int:
    with make_sessionmaker(engine)() as session:
        return session.scalar(select(func.count()).select_from(Category)) or 0


@pytest.mark.parametrize(
    "raw_name",
    [
        '"bad \\ud800 name"',  # a lone high surrogate
        '"\\udfff"',  # a lone low surrogate
        '"name \\u0000 with a NUL"',
        '"bell \\u0007"',
    ],
)
def test_text_no_column_can_hold_is_422_and_nothing_is_stored(
    client: TestClient, engine: Engine, manager_headers: Headers, raw_name: str
) -> None:
    before = category_count(engine)
    body = '{"name": ' + raw_name + "}"
    answer = client.post(
        "/api/v1/categories",
        content=body.encode(),
        headers={**manager_headers, "Content-Type": "application/json"},
    )
    error = assert_error_shape(answer, 422)
    assert error["fields"][0]["field"] in ("body", "body.name")
    assert category_count(engine) == before
    product = client.post(
        "/api/v1/products",
        content=('{"sku": "SKU-X1", "name": ' + raw_name + ', "price": "1.00"}').encode(),
        headers={**manager_headers, "Content-Type": "application/json"},
    )
    assert_error_shape(product, 422)
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Product)) == 0


def test_a_paired_surrogate_and_ordinary_whitespace_are_fine(
    client: TestClient, engine: Engine, manager_headers: Headers
) -> None:
    answer = client.post(
        "/api/v1/categories",
        content='{"name": "Gifts \\ud83c\\udf81", "description": "two\\nlines\\tand a tab"}',
        headers={**manager_headers, "Content-Type": "application/json"},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["name"] == "Gifts \N{WRAPPED PRESENT}"


def test_a_body_over_the_limit_is_413(client: TestClient, manager_headers: Headers) -> None:
    huge = '{"name": "' + "x" * 2_000_000 + '"}'
    answer = client.post(
        "/api/v1/categories",
        content=huge,
        headers={**manager_headers, "Content-Type": "application/json"},
    )
    body = assert_error_shape(answer, 413)
    assert body["max_bytes"] == 1_048_576


def test_ids_past_any_column_are_answered_not_crashed_on(
    client: TestClient, manager_headers: Headers, admin_headers: Headers
) -> None:
    big = 2**70
    for path in (f"/api/v1/products/{big}", f"/api/v1/categories/{big}", f"/api/v1/users/{big}"):
        assert client.get(path, headers=admin_headers).status_code in (404, 422)
    answer = client.post(
        "/api/v1/products",
        json={"sku": "SKU-BIG", "name": "Big", "price": "1.00", "category_id": big},
        headers=manager_headers,
    )
    assert 400 <= answer.status_code < 500, answer.text
    assert_error_shape(answer, answer.status_code)


def test_an_unexpected_error_still_answers_the_error_shape(settings: Any) -> None:
    """The last resort: whatever slips past every check is a JSON 500 naming the request."""
    from products_service.main import create_app

    app = create_app(settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        answer = test_client.get("/boom", headers={"X-Request-ID": "req-boom-1"})
    body = assert_error_shape(answer, 500)
    assert body["error"] == "internal_error"
    assert body["request_id"] == "req-boom-1"
    assert "a bug" not in answer.text  # no internals leak


def test_values_the_database_refuses_are_answered_in_the_error_shape(
    settings: Any, engine: Engine
) -> None:
    """What a check missed and the database refused: too large (422), a duplicate (409)."""
    from common.db import SessionDep
    from common.models import SalesChannel
    from products_service.main import create_app

    app = create_app(settings)

    @app.post("/too-large")
    def too_large(session: SessionDep) -> None:
        session.add(SalesChannel(code="x" * 1000, name="Too long"))
        session.flush()

    @app.post("/duplicate")
    def duplicate(session: SessionDep) -> None:
        for _ in range(2):
            session.add(SalesChannel(code="twice", name="Twice"))
            session.flush()

    with TestClient(app, raise_server_exceptions=False) as test_client:
        assert assert_error_shape(test_client.post("/too-large"), 422)["error"] == (
            "value_out_of_range"
        )
        assert assert_error_shape(test_client.post("/duplicate"), 409)["error"] == "conflict"
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(SalesChannel)) == 0
