"""Recording sales: validation, prices and totals, times, and the rules under concurrency.

Validation and arithmetic go through the in-process sales app (its calls to products_service
go over real HTTP to ``live_products``); the concurrency tests send real requests from many
threads to ``live_sales`` (2 uvicorn workers) calling ``live_products`` (2 workers).
"""

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from common.auth.security import create_access_token
from common.db import make_sessionmaker
from common.models import MovementType, Product, ProductStatus, Role, Sale, StockSync, User
from common.settings import ProductsSettings
from tests.conftest import LiveServer, all_at_once
from tests.products_service.factories import (
    create_product,
    ledger_problems,
    level,
    main_warehouse_id,
    make_category,
    movements,
    short_line,
)
from tests.sales_service.conftest import (
    create_channel,
    sale_body,
    sale_count,
    sale_movements_without_a_sale,
    take_statuses,
)

SALES = "/api/v1/sales"


@pytest.fixture
def main(engine: Engine) -> int:
    return main_warehouse_id(engine)


@pytest.fixture
def http(live_sales: LiveServer, manager_headers: dict[str, str]) -> Iterator[httpx.Client]:
    limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
    with httpx.Client(
        base_url=live_sales.url, headers=manager_headers, timeout=60, limits=limits
    ) as client:
        yield client


def nothing_written(engine: Engine, *product_ids: int, main: int, stock: int) -> None:
    """No sale, no stock taken, stock untouched, books balanced."""
    assert sale_count(engine) == 0
    assert take_statuses(engine) == {}
    for product_id in product_ids:
        assert level(engine, product_id, main) == (stock, 0)
    assert ledger_problems(engine) == []


# --- validation -------------------------------------------------------------------------


def test_each_invalid_request_is_refused_naming_its_line_or_field_and_writes_nothing(
    sales_client: TestClient, engine: Engine, manager_headers: dict[str, str], main: int
) -> None:
    good = create_product(engine, stock={main: 10})
    inactive = create_product(engine, stock={main: 10}, status=ProductStatus.INACTIVE)
    draft = create_product(engine, stock={main: 10}, status=ProductStatus.DRAFT)
    archived = create_product(engine, stock={main: 10}, archived=True)
    active_channel = create_channel(engine, "web-store")
    closed_channel = create_channel(engine, "old-shop", is_active=False)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()

    def lines(*pairs: tuple[int, int]) -> list[dict[str, int]]:
        return [{"product_id": p, "quantity": q} for p, q in pairs]

    # (body, status, error code, what the answer must name)
    cases: list[tuple[dict[str, Any], int, str, list[str]]] = [
        (
            {"channel_id": active_channel, "lines": lines((good, 1), (inactive, 1))},
            422,
            "unprocessable",
            ["line 2", f"product {inactive}", "inactive"],
        ),
        (
            {"channel_id": active_channel, "lines": lines((draft, 1))},
            422,
            "unprocessable",
            ["line 1", "draft"],
        ),
        (
            {"channel_id": active_channel, "lines": lines((good, 2), (archived, 1))},
            422,
            "unprocessable",
            ["line 2", "archived"],
        ),
        (
            {"channel_id": active_channel, "lines": lines((good, 1), (good, 1), (999_999, 1))},
            422,
            "unprocessable",
            ["line 3", "product 999999", "unknown product"],
        ),
        (
            {"channel_code": "no-such-channel", "lines": lines((good, 1))},
            422,
            "unprocessable",
            ["channel_code", "no-such-channel"],
        ),
        (
            {"channel_id": 999_999, "lines": lines((good, 1))},
            422,
            "unprocessable",
            ["channel_id", "999999"],
        ),
        (
            {"channel_id": closed_channel, "lines": lines((good, 1))},
            422,
            "unprocessable",
            ["channel_id", "inactive"],
        ),
        (
            {"channel_id": active_channel, "lines": lines((good, 1), (good, 0))},
            422,
            "validation_error",
            ["body.lines.1.quantity"],
        ),
        (
            {"channel_id": active_channel, "lines": lines((good, -3))},
            422,
            "validation_error",
            ["body.lines.0.quantity"],
        ),
        (
            {"channel_id": active_channel, "channel_code": "web-store", "lines": lines((good, 1))},
            422,
            "validation_error",
            ["channel_id", "channel_code"],
        ),
        (
            {"lines": lines((good, 1))},
            422,
            "validation_error",
            ["channel_id", "channel_code"],
        ),
        (
            {"channel_id": active_channel, "sold_at": tomorrow, "lines": lines((good, 1))},
            422,
            "unprocessable",
            ["sold_at", "future"],
        ),
        (
            {
                "channel_id": active_channel,
                "sold_at": "1979-12-31T09:59:59Z",  # still 1979 in every zone
                "lines": lines((good, 1)),
            },
            422,
            "unprocessable",
            ["sold_at", "before 1980-01-01"],
        ),
        (
            {"channel_id": active_channel, "lines": []},
            422,
            "validation_error",
            ["body.lines"],
        ),
    ]
    for body, status, code, named in cases:
        answer = sales_client.post(
            SALES, json=body, headers={**manager_headers, "Idempotency-Key": uuid.uuid4().hex}
        )
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["error"] == code, (body, answer.text)
        text = answer.text
        for word in named:
            assert word in text, (word, body, text)
    # Line-level errors also list the lines in a machine-readable form.
    answer = sales_client.post(
        SALES,
        json={"channel_id": active_channel, "lines": lines((good, 1), (inactive, 1))},
        headers=manager_headers,
    )
    assert answer.json()["lines"] == [
        {"line_no": 2, "product_id": inactive, "reason": "product is inactive"}
    ]
    nothing_written(engine, good, inactive, draft, archived, main=main, stock=10)


def test_a_viewer_may_not_record_a_sale(
    sales_client: TestClient, engine: Engine, viewer_headers: dict[str, str], main: int
) -> None:
    product = create_product(engine, stock={main: 5})
    create_channel(engine, "web-store")
    answer = sales_client.post(
        SALES, json=sale_body("web-store", (product, 1)), headers=viewer_headers
    )
    assert answer.status_code == 403
    nothing_written(engine, product, main=main, stock=5)


# --- prices, totals, times --------------------------------------------------------------


def test_prices_default_or_override_and_multi_line_totals_are_exact(
    sales_client: TestClient, engine: Engine, manager_headers: dict[str, str], main: int
) -> None:
    # Factory products cost 7.25 and sell at 19.90.
    a = create_product(engine, stock={main: 50})
    b = create_product(engine, stock={main: 50})
    create_channel(engine, "retail")
    answer = sales_client.post(
        SALES,
        json={
            "channel_code": "retail",
            "lines": [
                {"product_id": a, "quantity": 3},
                {"product_id": b, "quantity": 7, "unit_price": "0.10"},
                {"product_id": a, "quantity": 1, "unit_price": "17.5"},
            ],
        },
        headers=manager_headers,
    )
    assert answer.status_code == 201, answer.text
    sale = answer.json()
    assert [(ln["line_no"], ln["unit_price"], ln["line_total"]) for ln in sale["lines"]] == [
        (1, "19.90", "59.70"),
        (2, "0.10", "0.70"),
        (3, "17.50", "17.50"),
    ]
    assert {ln["unit_cost"] for ln in sale["lines"]} == {"7.25"}
    assert sale["total"] == "77.90"  # 59.70 + 0.70 + 17.50: no float drift
    assert sale["cost_total"] == "79.75"  # 11 units x 7.25
    assert sale["units"] == 11
    assert sale["net_total"] == "77.90"
    assert sale["stock_sync"] == "done"
    assert sale["channel"]["code"] == "retail"
    assert sale["number"] == f"S-{sale['id']:08d}"
    assert level(engine, a, main) == (46, 0)
    assert level(engine, b, main) == (43, 0)

    with make_sessionmaker(engine)() as session:
        row = session.get_one(Sale, sale["id"])
        assert (row.total, row.cost_total) == (Decimal("77.90"), Decimal("79.75"))
    fetched = sales_client.get(f"{SALES}/{sale['id']}", headers=manager_headers).json()
    assert fetched["total"] == "77.90" and fetched["lines"] == sale["lines"]
    assert ledger_problems(engine) == []


def lit_and_loose(
    client: TestClient, engine: Engine, headers: dict[str, str], main: int, category: str
) -> tuple[dict[str, Any], int, int]:
    """A category, a product in it and one in none (5 units each), and the retail channel."""
    lamps = make_category(client, headers, category)
    lit = create_product(engine, stock={main: 5})
    loose = create_product(engine, stock={main: 5})
    moved = client.patch(
        f"/api/v1/products/{lit}", json={"category_id": lamps["id"]}, headers=headers
    )
    assert moved.status_code == 200, moved.text
    create_channel(engine, "retail")
    return lamps, lit, loose


def test_lines_with_and_without_a_category_each_keep_their_own_in_either_order(
    sales_client: TestClient,
    client: TestClient,
    engine: Engine,
    manager_headers: dict[str, str],
    viewer_headers: dict[str, str],
    main: int,
) -> None:
    """A sale's lines are one INSERT; a line without a category before one with it used to
    drop the second line's category as it was written (reports then missed it there)."""
    lamps, lit, loose = lit_and_loose(client, engine, manager_headers, main, "Floor lamps")
    for order in ((loose, lit), (lit, loose)):
        answer = sales_client.post(
            SALES, json=sale_body("retail", *((p, 1) for p in order)), headers=manager_headers
        )
        assert answer.status_code == 201, answer.text
        stored = sales_client.get(f"{SALES}/{answer.json()['id']}", headers=viewer_headers)
        expected = [lamps["id"] if p == lit else None for p in order]
        assert [ln["category_id"] for ln in stored.json()["lines"]] == expected


def test_a_line_names_its_category_as_sold_wherever_it_is_read(
    sales_client: TestClient,
    client: TestClient,
    engine: Engine,
    manager_headers: dict[str, str],
    main: int,
) -> None:
    """Beside its category's id a line keeps the category's name as sold (as it keeps the
    product's name), in the answer, the sale read back and the export, renamed or not."""
    lamps, lit, loose = lit_and_loose(client, engine, manager_headers, main, "Desk lamps")
    answer = sales_client.post(
        SALES, json=sale_body("retail", (lit, 1), (loose, 1)), headers=manager_headers
    )
    assert answer.status_code == 201, answer.text
    sale = answer.json()
    named = [(ln["category_id"], ln["category_name"]) for ln in sale["lines"]]
    assert named == [(lamps["id"], "Desk lamps"), (None, None)]

    renamed = client.patch(
        f"/api/v1/categories/{lamps['id']}", json={"name": "Lighting"}, headers=manager_headers
    )
    assert renamed.status_code == 200, renamed.text
    fetched = sales_client.get(f"{SALES}/{sale['id']}", headers=manager_headers).json()
    assert fetched["lines"] == sale["lines"]  # as sold
    exported = sales_client.get(f"{SALES}/export.csv", headers=manager_headers).text
    assert f",{lamps['id']},Desk lamps," in exported


def test_a_sale_and_its_refund_say_who_made_them_wherever_they_are_read(
    sales_client: TestClient,
    engine: Engine,
    users: dict[Role, User],
    settings: ProductsSettings,
    manager_headers: dict[str, str],
    admin_headers: dict[str, str],
    main: int,
) -> None:
    product = create_product(engine, stock={main: 10})
    create_channel(engine, "retail")
    body = {"channel_code": "retail", "lines": [{"product_id": product, "quantity": 1}]}
    manager, admin = users[Role.MANAGER], users[Role.ADMIN]
    # A token signed before tokens carried the email answers the same.
    unnamed, _ = create_access_token(user_id=admin.id, role=admin.role, settings=settings)
    recorded = {
        who.id: sales_client.post(SALES, json=body, headers=headers).json()
        for who, headers in (
            (manager, manager_headers),
            (admin, {"Authorization": f"Bearer {unnamed}"}),
        )
    }
    listed = sales_client.get(
        SALES, params={"product_id": product}, headers=manager_headers
    ).json()["items"]
    for who in (manager, admin):
        sale = recorded[who.id]
        fetched = sales_client.get(f"{SALES}/{sale['id']}", headers=manager_headers).json()
        in_list = next(s for s in listed if s["id"] == sale["id"])
        for answer in (sale, fetched, in_list):
            assert (answer["actor_id"], answer["actor_email"]) == (who.id, who.email)
    refund = sales_client.post(
        f"{SALES}/{recorded[manager.id]['id']}/refunds", headers=admin_headers
    ).json()
    refunds = sales_client.get(
        f"{SALES}/{recorded[manager.id]['id']}/refunds", headers=manager_headers
    ).json()["items"]
    for answer in (refund, refunds[0]):
        assert (answer["actor_id"], answer["actor_email"]) == (admin.id, admin.email)


def test_sold_at_given_with_an_offset_is_the_same_instant_returned_in_utc(
    sales_client: TestClient, engine: Engine, manager_headers: dict[str, str], main: int
) -> None:
    product = create_product(engine, stock={main: 5})
    create_channel(engine, "web-store")
    given = "2024-03-10T09:30:15.250000-05:00"  # an import of a past sale, New York time
    answer = sales_client.post(
        SALES,
        json=sale_body("web-store", (product, 1), sold_at=given),
        headers=manager_headers,
    )
    assert answer.status_code == 201, answer.text
    returned = datetime.fromisoformat(answer.json()["sold_at"])
    assert returned == datetime.fromisoformat(given)
    assert returned.utcoffset() == timedelta(0)
    assert returned == datetime(2024, 3, 10, 14, 30, 15, 250000, tzinfo=UTC)
    with make_sessionmaker(engine)() as session:
        stored = session.get_one(Sale, answer.json()["id"]).sold_at
    assert stored == datetime(2024, 3, 10, 14, 30, 15, 250000, tzinfo=UTC)

    # A naive time (no offset) is refused rather than guessed.
    naive = sales_client.post(
        SALES,
        json=sale_body("web-store", (product, 1), sold_at="2024-03-10T09:30:00"),
        headers=manager_headers,
    )
    assert naive.status_code == 422 and "sold_at" in naive.text

    # The oldest import taken: the first moment of 1980-01-01 anywhere (at UTC+14).
    first = sales_client.post(
        SALES,
        json=sale_body("web-store", (product, 1), sold_at="1980-01-01T00:00:00+14:00"),
        headers=manager_headers,
    )
    assert first.status_code == 201, first.text
    assert first.json()["sold_at"] == "1979-12-31T10:00:00Z"


def test_a_sale_without_sold_at_is_stamped_now(
    sales_client: TestClient, engine: Engine, manager_headers: dict[str, str], main: int
) -> None:
    product = create_product(engine, stock={main: 5})
    create_channel(engine, "web-store")
    before = datetime.now(UTC)
    answer = sales_client.post(
        SALES, json=sale_body("web-store", (product, 2)), headers=manager_headers
    )
    after = datetime.now(UTC)
    assert answer.status_code == 201, answer.text
    assert before <= datetime.fromisoformat(answer.json()["sold_at"]) <= after


# --- shortage ---------------------------------------------------------------------------


def test_a_multi_line_sale_with_one_short_line_reserves_and_records_nothing(
    sales_client: TestClient, engine: Engine, manager_headers: dict[str, str], main: int
) -> None:
    plenty = create_product(engine, stock={main: 100})
    scarce = create_product(engine, stock={main: 2})
    create_channel(engine, "web-store")
    answer = sales_client.post(
        SALES,
        json=sale_body("web-store", (plenty, 5), (scarce, 3), (plenty, 1)),
        headers=manager_headers,
    )
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert body["error"] == "insufficient_stock"
    with engine.connect() as connection:
        sku = connection.scalar(select(Product.sku).where(Product.id == scarce))
    # named by its SKU too, so the manager needs no lookup to know which product ran short
    assert f"line 2 ({sku}): requested 3, available 2" in body["detail"]
    assert body["lines"] == [
        {
            "line_no": 2,
            "product_id": scarce,
            "sku": sku,
            "warehouse_id": None,
            "warehouse_code": None,
            "requested": 3,
            "available": 2,
        }
    ]
    # the same short line as a form field, at its place in the request (the second line)
    assert body["fields"] == [
        {
            "field": "body.lines.1.quantity",
            "reason": f"requested 3, 2 available ({sku})",
            "type": "insufficient_stock",
        }
    ]
    nothing_written(engine, plenty, main=main, stock=100)
    assert level(engine, scarce, main) == (2, 0)


def test_200_concurrent_buyers_of_50_units_make_exactly_50_sales(
    http: httpx.Client,
    live_products: LiveServer,
    engine: Engine,
    manager_headers: dict[str, str],
    main: int,
) -> None:
    product = create_product(engine, stock={main: 50})
    create_channel(engine, "web-store")

    def buy(i: int) -> Callable[[], httpx.Response]:
        return lambda: http.post(
            SALES,
            json=sale_body("web-store", (product, 1)),
            headers={"Idempotency-Key": f"buyer-{i}-{uuid.uuid4().hex}"},
        )

    answers = all_at_once([buy(i) for i in range(200)], workers=200)
    outcomes = Counter(
        (
            a.status_code,
            a.json().get("error") if "json" in a.headers.get("content-type", "") else a.text[:60],
        )
        for a in answers
    )
    assert Counter(a.status_code for a in answers) == {201: 50, 409: 150}, outcomes
    for refused in (a for a in answers if a.status_code == 409):
        body = refused.json()
        assert body["error"] == "insufficient_stock"
        assert body["lines"] == [
            short_line(engine, line_no=1, product_id=product, requested=1, available=0)
        ]
    sold = [a.json() for a in answers if a.status_code == 201]
    assert len({s["id"] for s in sold}) == 50
    assert {s["stock_sync"] for s in sold} == {"done"}
    assert sale_count(engine) == 50
    assert level(engine, product, main) == (0, 0)
    sales_moves = movements(engine, product, MovementType.SALE)
    assert len(sales_moves) == 50
    assert sorted(m.on_hand_after for m in sales_moves) == list(range(50))
    assert take_statuses(engine) == {"taken": 50}  # each claimed by its sale
    assert sale_movements_without_a_sale(engine, product) == []
    check = httpx.get(f"{live_products.url}/api/v1/inventory/ledger-check", headers=manager_headers)
    assert check.status_code == 200 and check.json()["ok"] is True, check.text
    assert ledger_problems(engine) == []


# --- idempotency ------------------------------------------------------------------------


def test_one_key_sent_ten_times_some_at_once_records_one_sale(
    http: httpx.Client, engine: Engine, main: int
) -> None:
    a = create_product(engine, stock={main: 30})
    b = create_product(engine, stock={main: 30})
    create_channel(engine, "web-store")
    body = sale_body("web-store", (a, 2), (b, 1))
    key = {"Idempotency-Key": f"till-7-{uuid.uuid4().hex}"}

    def send() -> httpx.Response:
        return http.post(SALES, json=body, headers=key)

    answers = all_at_once([send] * 7)  # seven at once: one writes, six share its sale
    answers += [send() for _ in range(3)]  # then three retries, one after another
    assert all(a.status_code == 201 for a in answers), [a.text for a in answers]
    replayed = [a.headers.get("Idempotent-Replayed") == "true" for a in answers]
    assert replayed.count(False) == 1  # the one that recorded it
    assert all(replayed[7:])
    assert len({a.json()["id"] for a in answers}) == 1

    assert sale_count(engine) == 1
    # One sale movement per product belongs to the sale; a racing duplicate that took stock
    # too gave exactly that back (a `return` row under its own key).
    for product, quantity in ((a, 2), (b, 1)):
        taken = movements(engine, product, MovementType.SALE)
        returned = movements(engine, product, MovementType.RETURN)
        unclaimed = sale_movements_without_a_sale(engine, product)
        assert len(taken) - len(unclaimed) == 1
        assert sorted(str(m.reference) for m in taken if m.id in unclaimed) == sorted(
            str(m.reference) for m in returned
        )
        assert sum(m.quantity for m in taken + returned) == -quantity
    assert level(engine, a, main) == (28, 0)
    assert level(engine, b, main) == (29, 0)
    # Racing duplicates may each have taken stock for a moment; only the winner's take is
    # claimed by the sale, each loser gave its own back (nothing is left held for no sale).
    statuses = take_statuses(engine)
    assert statuses.get("taken") == 1
    assert set(statuses) <= {"taken", "returned"}
    with make_sessionmaker(engine)() as session:
        sale = session.scalars(select(Sale)).one()
        assert sale.stock_sync is StockSync.DONE
    assert ledger_problems(engine) == []

    other = http.post(SALES, json=sale_body("web-store", (a, 3)), headers=key)
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
    assert other.json()["sale_id"] == answers[0].json()["id"]
    assert sale_count(engine) == 1
    assert level(engine, a, main) == (28, 0)


def test_a_long_idempotency_key_still_records_the_sale(
    sales_client: TestClient, engine: Engine, manager_headers: dict[str, str], main: int
) -> None:
    """Keys may be 200 characters; the ledger reference they become must still fit."""
    product = create_product(engine, stock={main: 5})
    create_channel(engine, "web-store")
    key = "k" * 200
    headers = {**manager_headers, "Idempotency-Key": key}
    first = sales_client.post(SALES, json=sale_body("web-store", (product, 1)), headers=headers)
    assert first.status_code == 201, first.text
    again = sales_client.post(SALES, json=sale_body("web-store", (product, 1)), headers=headers)
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    assert level(engine, product, main) == (4, 0)
    (move,) = movements(engine, product, MovementType.SALE)
    assert move.reference is not None and move.reference.startswith("sale:")
