"""Every list pages by cursor: walking ``next_cursor`` gives each item once, in the order one
big page gives them, for every sort either way (ties and NULLs included); rows written
while a client walks neither repeat nor shift an item; a cursor from another sort, a
forged one, or one sent with an offset is a 422 naming it.

The lists are found in both OpenAPI documents, so a list added later is walked too.
"""

import base64
import json
import math
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.products_service.factories import create_product, main_warehouse_id

Headers = dict[str, str]
SALES = "/api/v1/sales"
MAX_LIMIT = 500


def cursor_lists(api: TestClient) -> list[tuple[str, list[str]]]:
    """(path, sort fields) of each GET taking a cursor, from the service's OpenAPI document."""
    found = []
    for path, item in api.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        parameters = {p["name"]: p for p in item.get("get", {}).get("parameters", [])}
        if "cursor" not in parameters:
            continue
        schema = parameters.get("sort", {}).get("schema", {})
        patterns = [schema.get("pattern")] + [s.get("pattern") for s in schema.get("anyOf", [])]
        pattern = next((p for p in patterns if p), None)
        choices = re.match(r"\^\(-\?\(([^)]*)\)", pattern or "")
        fields = choices.group(1).split("|") if choices else []
        found.append((path, fields))
    return found


def walk(api: TestClient, path: str, params: dict[str, Any], headers: Headers) -> list[Any]:
    """Every item of the list in one page (or the first MAX_LIMIT), then page by page along
    ``next_cursor``; asserts both agree and returns the items."""
    whole = api.get(path, params={**params, "limit": MAX_LIMIT}, headers=headers)
    assert whole.status_code == 200, (path, params, whole.text)
    reference = whole.json()
    expected = reference["items"]
    assert (reference["next_cursor"] is None) == (reference["total"] <= MAX_LIMIT), reference
    limit = max(2, math.ceil(len(expected) / 4))
    walked: list[Any] = []
    cursor = None
    while len(walked) < len(expected):
        page = api.get(
            path,
            params={**params, "limit": limit, **({"cursor": cursor} if cursor else {})},
            headers=headers,
        ).json()
        assert page["total"] == reference["total"], (path, params, page)
        walked += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked[: len(expected)] == expected, (path, params)
    if reference["total"] <= MAX_LIMIT:
        assert cursor is None, (path, params, "a cursor after the last item")
    return walked


@pytest.fixture
def tied_rows(
    client: TestClient,
    sales_client: TestClient,
    engine: Engine,
    manager_headers: Headers,
    admin_headers: Headers,
    service_headers: Headers,
) -> dict[str, int]:
    """Rows for every list, many tied on their sort keys: products at one price, sales at
    one instant, reservations with and without an expiry, several refunds of one sale."""
    main = main_warehouse_id(engine)
    run = uuid.uuid4().hex[:6]
    products = [create_product(engine, stock={main: 50}) for _ in range(5)]
    second = client.post(
        "/api/v1/warehouses", json={"code": f"C{run}", "name": "Cursor"}, headers=admin_headers
    ).json()["id"]
    for product in products[:3]:
        moved = client.post(
            "/api/v1/inventory/transfers",
            json={
                "product_id": product,
                "from_warehouse_id": main,
                "to_warehouse_id": second,
                "quantity": 1,
            },
            headers=manager_headers,
        )
        assert moved.status_code == 201, moved.text
    for index, ttl in enumerate((None, 600, None, 600)):
        held = client.post(
            "/api/v1/reservations",
            json={
                "idempotency_key": f"cursor-{run}-{index}",
                "lines": [{"product_id": products[0], "quantity": 1}],
                **({"ttl_seconds": ttl} if ttl else {}),
            },
            headers=service_headers,
        )
        assert held.status_code == 201, held.text
    for code in ("a", "b", "c"):
        made = sales_client.post(
            "/api/v1/channels",
            json={"code": f"c{run}{code}", "name": "Same"},
            headers=admin_headers,
        )
        assert made.status_code == 201, made.text
    sold_at = datetime(2026, 3, 1, 12, tzinfo=UTC).isoformat()
    sales = []
    for product in products:
        sold = sales_client.post(
            SALES,
            json={
                "channel_code": f"c{run}a",
                "sold_at": sold_at,
                "lines": [{"product_id": product, "quantity": 3}],
            },
            headers=manager_headers,
        )
        assert sold.status_code == 201, sold.text
        sales.append(sold.json()["id"])
    for _ in range(3):
        refunded = sales_client.post(
            f"{SALES}/{sales[0]}/refunds",
            json={"lines": [{"line_no": 1, "quantity": 1}]},
            headers=manager_headers,
        )
        assert refunded.status_code == 201, refunded.text
    hook = client.post(
        "/api/v1/webhooks",
        json={"url": "https://example.com/cursor", "event_types": ["stock.moved"]},
        headers=admin_headers,
    )
    assert hook.status_code == 201, hook.text
    return {
        "product_id": products[0],
        "sale_id": sales[0],
        "endpoint_id": hook.json()["id"],
    }


@pytest.mark.parametrize("service", ["products", "sales"])
def test_walking_next_cursor_gives_every_item_once_in_every_sort(
    service: str,
    client: TestClient,
    sales_client: TestClient,
    admin_headers: Headers,
    tied_rows: dict[str, int],
) -> None:
    api = client if service == "products" else sales_client
    lists = cursor_lists(api)
    assert len(lists) >= (11 if service == "products" else 6), lists
    for template, fields in lists:
        path = re.sub(r"\{(\w+)\}", lambda m: str(tied_rows[m.group(1)]), template)
        sorts = [None] + [f"{sign}{field}" for field in fields for sign in ("", "-")]
        for sort in sorts:
            params = {"sort": sort} if sort else {}
            if template.endswith("/low-stock"):
                params["include_ok"] = "true"
            walk(api, path, params, admin_headers)
    as_of = datetime.now(UTC).isoformat()
    for sort in ("on_hand", "-updated_at", None):
        if service == "products":
            walk(
                client,
                "/api/v1/inventory/levels",
                {"as_of": as_of, **({"sort": sort} if sort else {})},
                admin_headers,
            )


def test_sales_recorded_while_walking_neither_repeat_nor_shift_the_pages(
    sales_client: TestClient, manager_headers: Headers, tied_rows: dict[str, int]
) -> None:
    """Offset paging newest first would show the last item of page 1 again on page 2 after
    a new sale; a cursor continues where the page ended."""
    first = sales_client.get(SALES, params={"limit": 3}, headers=manager_headers).json()
    before = sales_client.get(SALES, params={"limit": MAX_LIMIT}, headers=manager_headers).json()
    sale = sales_client.get(f"{SALES}/{tied_rows['sale_id']}", headers=manager_headers).json()
    again = sales_client.post(
        SALES,
        json={
            "channel_code": sale["channel"]["code"],
            "lines": [{"product_id": sale["lines"][0]["product_id"], "quantity": 1}],
        },
        headers=manager_headers,
    )
    assert again.status_code == 201, again.text
    rest = sales_client.get(
        SALES, params={"limit": MAX_LIMIT, "cursor": first["next_cursor"]}, headers=manager_headers
    ).json()
    ids = [s["id"] for s in first["items"] + rest["items"]]
    assert ids == [s["id"] for s in before["items"]][: len(ids)]
    assert again.json()["id"] not in ids and len(ids) == len(set(ids))
    assert rest["total"] == before["total"] + 1  # the total is of now


def test_a_cursor_the_list_did_not_make_for_this_sort_is_a_422_naming_it(
    client: TestClient,
    sales_client: TestClient,
    manager_headers: Headers,
    tied_rows: dict[str, int],
) -> None:
    page = sales_client.get(SALES, params={"limit": 1, "sort": "total"}, headers=manager_headers)
    cursor = page.json()["next_cursor"]
    assert cursor
    made = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    forged = base64.urlsafe_b64encode(
        json.dumps({**made, "k": [["v", {"a": 1}] for _ in made["k"]]}).encode()
    ).decode()
    for params, where, words in (
        ({"cursor": cursor, "sort": "-total"}, "query.cursor", "another sort"),
        ({"cursor": cursor}, "query.cursor", "another sort"),
        ({"cursor": cursor[:-3] + "!!!", "sort": "total"}, "query.cursor", "Not a cursor"),
        ({"cursor": forged, "sort": "total"}, "query.cursor", "Not a cursor"),
        ({"cursor": cursor, "sort": "total", "offset": 5}, "query.offset", "either cursor or"),
    ):
        answer = sales_client.get(SALES, params=params, headers=manager_headers)
        assert answer.status_code == 422, (params, answer.text)
        body = answer.json()
        assert [f["field"] for f in body["fields"]] == [where] and words in body["detail"], body
    # A cursor of one list is no cursor of another.
    products = client.get(
        "/api/v1/products", params={"cursor": cursor, "sort": "price"}, headers=manager_headers
    )
    assert products.status_code == 422, products.text


def test_a_cursor_edited_to_hold_hostile_values_is_refused_or_answered_never_a_500(
    sales_client: TestClient,
    client: TestClient,
    manager_headers: Headers,
    tied_rows: dict[str, int],
) -> None:
    """Cursors are not signed: one is only a place to start from. Whatever values one is
    edited to hold, the answer is a page or a 422 naming the cursor."""
    for api, path, sort in (
        (sales_client, SALES, "total"),
        (sales_client, SALES, "-sold_at"),
        (client, "/api/v1/products", "name"),
    ):
        page = api.get(path, params={"limit": 1, "sort": sort}, headers=manager_headers).json()
        made = json.loads(base64.urlsafe_b64decode(page["next_cursor"] + "==="))
        for value in (
            ["n", "NaN"],
            ["n", "-Infinity"],
            ["n", "1E+999999"],
            ["n", "1" * 5000],
            ["v", 10**40],
            ["v", "x" * 5000],
            ["v", None],
            ["v", True],
            ["t", "9999-12-31T23:59:59.999999+14:00"],
            ["t", "0001-01-01T00:00:00"],
            ["d", "2026-02-30"],
            ["x", 1],
        ):
            edited = {**made, "k": [value, *made["k"][1:]]}
            cursor = base64.urlsafe_b64encode(json.dumps(edited).encode()).decode()
            answer = api.get(
                path, params={"limit": 1, "sort": sort, "cursor": cursor}, headers=manager_headers
            )
            assert answer.status_code in (200, 422), (path, sort, value, answer.text)
            if answer.status_code == 422:
                assert answer.json()["fields"][0]["field"] == "query.cursor", answer.text
