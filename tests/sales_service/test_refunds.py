"""Refunds and cancellations: exact money, stock back where it came from, once, even when retried.

Sales and refunds go through sales_service; its stock calls go over real HTTP to the live
products_service, whose ledger is then checked.
"""

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update

from common.db import make_sessionmaker
from common.models import (
    MovementType,
    Sale,
    SaleRefund,
    StockMovement,
    StockSync,
)
from common.settings import SalesSettings
from sales_service.refunds.service import split_over_allocations
from sales_service.stock_sync import sync_pending_refunds
from tests.conftest import LiveServer, free_port
from tests.products_service.factories import (
    create_product,
    create_warehouse,
    ledger_problems,
    level,
    main_warehouse_id,
)


@pytest.fixture
def web_channel(sales_client: TestClient, manager_headers: dict) -> str:
    """The channel `record_sale` sells through."""
    answer = sales_client.post(
        "/api/v1/channels", headers=manager_headers, json={"code": "web", "name": "Web"}
    )
    assert answer.status_code == 201, answer.text
    return "web"


def record_sale(
    sales_client: TestClient, headers: dict, lines: list[dict[str, Any]], channel: str = "web"
) -> dict[str, Any]:
    answer = sales_client.post(
        "/api/v1/sales", headers=headers, json={"channel_code": channel, "lines": lines}
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    assert body["stock_sync"] == "done"
    return body


def returns_of(engine: Engine, product_id: int) -> list[tuple[int, int, str | None]]:
    """(warehouse_id, quantity, reference) of every `return` movement of the product."""
    with make_sessionmaker(engine)() as session:
        rows = session.execute(
            select(StockMovement.warehouse_id, StockMovement.quantity, StockMovement.reference)
            .where(
                StockMovement.product_id == product_id,
                StockMovement.movement_type == MovementType.RETURN,
            )
            .order_by(StockMovement.id)
        )
        return [(w, q, r) for w, q, r in rows]


def refund_count(engine: Engine, sale_id: int) -> int:
    with make_sessionmaker(engine)() as session:
        return (
            session.scalar(
                select(func.count()).select_from(SaleRefund).where(SaleRefund.sale_id == sale_id)
            )
            or 0
        )


def assert_ledger_ok(client: TestClient, headers: dict, engine: Engine) -> None:
    check = client.get("/api/v1/inventory/ledger-check", headers=headers).json()
    assert check["ok"], check
    assert ledger_problems(engine) == []


def wait_for(condition: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


# --- the allocation split ---------------------------------------------------------------


def test_units_go_back_to_the_last_allocation_first_after_earlier_refunds() -> None:
    allocations = [{"warehouse_id": 7, "quantity": 4}, {"warehouse_id": 3, "quantity": 2}]
    assert split_over_allocations(allocations, already_returned=0, quantity=1) == [(3, 1)]
    assert split_over_allocations(allocations, already_returned=0, quantity=3) == [(3, 2), (7, 1)]
    assert split_over_allocations(allocations, already_returned=1, quantity=1) == [(3, 1)]
    assert split_over_allocations(allocations, already_returned=2, quantity=4) == [(7, 4)]
    assert split_over_allocations(allocations, already_returned=3, quantity=3) == [(7, 3)]
    # The same warehouse twice in the allocations is one call for it.
    twice = [{"warehouse_id": 5, "quantity": 1}, {"warehouse_id": 5, "quantity": 2}]
    assert split_over_allocations(twice, already_returned=0, quantity=3) == [(5, 3)]


# --- refunds through HTTP ---------------------------------------------------------------


def test_partial_refunds_return_stock_where_it_came_from_with_exact_money(
    client: TestClient,
    sales_client: TestClient,
    manager_headers: dict,
    engine: Engine,
    web_channel: str,
) -> None:
    small_code, large_code = f"S{time.monotonic_ns()}", f"L{time.monotonic_ns()}"
    small = create_warehouse(engine, code=small_code)
    large = create_warehouse(engine, code=large_code)
    mug = create_product(engine, stock={small: 3, large: 4})
    pen = create_product(engine, stock={main_warehouse_id(engine): 5})
    sale = record_sale(
        sales_client,
        manager_headers,
        [
            {"product_id": mug, "quantity": 5, "unit_price": "19.99"},
            {"product_id": pen, "quantity": 2, "unit_price": "0.10"},
        ],
    )
    mug_line = sale["lines"][0]
    # Taken from the most-stocked warehouse first; listed in warehouse order.
    assert small < large
    assert mug_line["allocations"] == [  # each warehouse named by its code as well
        {"warehouse_id": small, "warehouse_code": small_code, "quantity": 1},
        {"warehouse_id": large, "warehouse_code": large_code, "quantity": 4},
    ]
    assert (level(engine, mug, small).on_hand, level(engine, mug, large).on_hand) == (2, 0)

    first = sales_client.post(
        f"/api/v1/sales/{sale['id']}/refunds",
        headers=manager_headers,
        json={"lines": [{"line_no": 1, "quantity": 1}], "reason": "scratched"},
    )
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["kind"] == "refund"
    assert (body["units"], body["amount"], body["cost"]) == (1, "19.99", "7.25")
    assert body["stock_sync"] == "done"
    assert body["reason"] == "scratched"
    assert body["lines"] == [
        {
            "id": body["lines"][0]["id"],
            "sale_line_id": mug_line["id"],
            "line_no": 1,
            "product_id": mug,
            "sku": mug_line["sku"],
            "quantity": 1,
            "amount": "19.99",
            "cost": "7.25",
        }
    ]
    # One `return` movement, to the last warehouse the line's stock came from.
    assert returns_of(engine, mug) == [(large, 1, sale["number"])]
    assert (level(engine, mug, small).on_hand, level(engine, mug, large).on_hand) == (2, 1)
    after = sales_client.get(f"/api/v1/sales/{sale['id']}", headers=manager_headers).json()
    assert after["status"] == "partially_refunded"
    assert (after["refunded_units"], after["refunded_total"]) == (1, "19.99")
    assert after["net_total"] == "80.16"  # 5 x 19.99 + 2 x 0.10 - 19.99
    assert after["lines"][0]["refunded_quantity"] == 1
    assert after["lines"][0]["refunded_total"] == "19.99"

    second = sales_client.post(
        f"/api/v1/sales/{sale['id']}/refunds",
        headers=manager_headers,
        json={"lines": [{"line_id": mug_line["id"], "quantity": 4}]},
    )
    assert second.status_code == 201, second.text
    assert second.json()["amount"] == "79.96"
    # The 3 units `large` has not had back yet, then the 1 that came from `small`.
    number = sale["number"]
    assert returns_of(engine, mug) == [(large, 1, number), (large, 3, number), (small, 1, number)]
    assert (level(engine, mug, small).on_hand, level(engine, mug, large).on_hand) == (3, 4)

    over = sales_client.post(
        f"/api/v1/sales/{sale['id']}/refunds",
        headers=manager_headers,
        json={"lines": [{"line_no": 2, "quantity": 1}, {"line_no": 1, "quantity": 1}]},
    )
    assert over.status_code == 422, over.text
    problem = over.json()
    assert problem["error"] == "unprocessable"
    assert "line 1: asked to refund 1, only 0 of 5 left" in problem["detail"]
    assert [(p["line_no"], p["requested"], p["refundable"]) for p in problem["lines"]] == [
        (1, 1, 0)
    ]
    unknown = sales_client.post(
        f"/api/v1/sales/{sale['id']}/refunds",
        headers=manager_headers,
        json={"lines": [{"line_no": 9, "quantity": 1}]},
    )
    assert unknown.status_code == 422 and "line 9" in unknown.json()["detail"]
    assert refund_count(engine, sale["id"]) == 2

    rest = sales_client.post(f"/api/v1/sales/{sale['id']}/refunds", headers=manager_headers)
    assert rest.status_code == 201, rest.text
    assert [(ln["line_no"], ln["quantity"]) for ln in rest.json()["lines"]] == [(2, 2)]
    assert rest.json()["amount"] == "0.20"
    assert level(engine, pen, main_warehouse_id(engine)).on_hand == 5
    assert len(returns_of(engine, mug)) == 3

    final = sales_client.get(f"/api/v1/sales/{sale['id']}", headers=manager_headers).json()
    assert final["status"] == "refunded"
    assert final["refunded_units"] == final["units"] == 7
    assert final["refunded_total"] == final["total"] == "100.15"
    assert final["net_total"] == "0.00"
    with make_sessionmaker(engine)() as session:
        stored = session.get_one(Sale, sale["id"])
        assert stored.refunded_cost == stored.cost_total == Decimal("50.75")

    for path in ("refunds", "cancel"):
        closed = sales_client.post(
            f"/api/v1/sales/{sale['id']}/{path}", headers=manager_headers, json={}
        )
        assert closed.status_code == 409, closed.text
        assert "already refunded" in closed.json()["detail"]

    listed = sales_client.get(f"/api/v1/sales/{sale['id']}/refunds", headers=manager_headers)
    assert listed.status_code == 200
    assert listed.json()["total"] == 3
    assert [r["amount"] for r in listed.json()["items"]] == ["19.99", "79.96", "0.20"]
    assert_ledger_ok(client, manager_headers, engine)


def test_cancel_returns_all_the_stock_left(
    client: TestClient,
    sales_client: TestClient,
    manager_headers: dict,
    engine: Engine,
    web_channel: str,
) -> None:
    warehouse = main_warehouse_id(engine)
    product = create_product(engine, stock={warehouse: 10})
    whole = record_sale(sales_client, manager_headers, [{"product_id": product, "quantity": 4}])
    cancelled = sales_client.post(
        f"/api/v1/sales/{whole['id']}/cancel",
        headers=manager_headers,
        json={"reason": "changed their mind"},
    )
    assert cancelled.status_code == 201, cancelled.text
    body = cancelled.json()
    assert (body["kind"], body["units"], body["amount"], body["stock_sync"]) == (
        "cancellation",
        4,
        "79.60",
        "done",
    )
    assert level(engine, product, warehouse).on_hand == 10
    sale = sales_client.get(f"/api/v1/sales/{whole['id']}", headers=manager_headers).json()
    assert (sale["status"], sale["net_total"]) == ("cancelled", "0.00")
    again = sales_client.post(f"/api/v1/sales/{whole['id']}/cancel", headers=manager_headers)
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]

    # Cancelling after a partial refund takes back what is left, and only that.
    partly = record_sale(sales_client, manager_headers, [{"product_id": product, "quantity": 3}])
    sales_client.post(
        f"/api/v1/sales/{partly['id']}/refunds",
        headers=manager_headers,
        json={"lines": [{"line_no": 1, "quantity": 1}]},
    )
    rest = sales_client.post(f"/api/v1/sales/{partly['id']}/cancel", headers=manager_headers)
    assert rest.status_code == 201, rest.text
    assert (rest.json()["units"], rest.json()["amount"]) == (2, "39.80")
    assert level(engine, product, warehouse).on_hand == 10
    assert [q for _, q, _ in returns_of(engine, product)] == [4, 1, 2]
    assert_ledger_ok(client, manager_headers, engine)


def test_only_managers_refund_and_unknown_sales_are_404(
    sales_client: TestClient,
    manager_headers: dict,
    viewer_headers: dict,
    admin_headers: dict,
    engine: Engine,
    web_channel: str,
) -> None:
    product = create_product(engine, stock={main_warehouse_id(engine): 5})
    sale = record_sale(sales_client, manager_headers, [{"product_id": product, "quantity": 2}])
    for path in ("refunds", "cancel"):
        denied = sales_client.post(f"/api/v1/sales/{sale['id']}/{path}", headers=viewer_headers)
        assert denied.status_code == 403, denied.text
        missing = sales_client.post("/api/v1/sales/999999/" + path, headers=manager_headers)
        assert missing.status_code == 404, missing.text
        assert sales_client.post(f"/api/v1/sales/{sale['id']}/{path}").status_code == 401
    assert refund_count(engine, sale["id"]) == 0
    bad = sales_client.post(
        f"/api/v1/sales/{sale['id']}/refunds",
        headers=manager_headers,
        json={"lines": [{"line_no": 1, "line_id": 5, "quantity": 1}]},
    )
    assert bad.status_code == 422
    by_admin = sales_client.post(
        f"/api/v1/sales/{sale['id']}/refunds",
        headers=admin_headers,
        json={"lines": [{"line_no": 1, "quantity": 1}]},
    )
    assert by_admin.status_code == 201
    listed = sales_client.get(f"/api/v1/sales/{sale['id']}/refunds", headers=viewer_headers)
    assert listed.status_code == 200 and listed.json()["total"] == 1
    assert sales_client.get("/api/v1/sales/999999/refunds", headers=viewer_headers).status_code == (
        404
    )


# --- idempotency and races --------------------------------------------------------------


def test_a_retried_refund_returns_the_first_answer_and_stock_once(
    client: TestClient,
    sales_client: TestClient,
    manager_headers: dict,
    engine: Engine,
    web_channel: str,
) -> None:
    warehouse = main_warehouse_id(engine)
    product = create_product(engine, stock={warehouse: 10})
    sale = record_sale(sales_client, manager_headers, [{"product_id": product, "quantity": 5}])
    other = record_sale(sales_client, manager_headers, [{"product_id": product, "quantity": 1}])
    headers = {**manager_headers, "Idempotency-Key": "refund-retry-1"}
    body = {"lines": [{"line_no": 1, "quantity": 2}]}
    url = f"/api/v1/sales/{sale['id']}/refunds"

    first = sales_client.post(url, headers=headers, json=body)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    for _ in range(3):
        retry = sales_client.post(url, headers=headers, json=body)
        assert retry.status_code == 201, retry.text
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert retry.json() == first.json()

    for wrong_url, wrong_body in (
        (url, {"lines": [{"line_no": 1, "quantity": 3}]}),
        (f"/api/v1/sales/{sale['id']}/cancel", {}),
        (f"/api/v1/sales/{other['id']}/refunds", body),
    ):
        reused = sales_client.post(wrong_url, headers=headers, json=wrong_body)
        assert reused.status_code == 422, reused.text
        assert reused.json()["error"] == "idempotency_key_reused"

    assert refund_count(engine, sale["id"]) == 1
    assert refund_count(engine, other["id"]) == 0
    assert returns_of(engine, product) == [(warehouse, 2, sale["number"])]
    assert level(engine, product, warehouse).on_hand == 6
    assert_ledger_ok(client, manager_headers, engine)


def _post_all(requests: list[tuple[str, dict, dict]]) -> list[httpx.Response]:
    """Send the requests at the same moment, each on its own connection."""

    def send(request: tuple[str, dict, dict]) -> httpx.Response:
        url, headers, body = request
        return httpx.post(url, headers=headers, json=body, timeout=60)

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(send, requests))


def test_the_same_refund_sent_five_times_at_once_refunds_once(
    client: TestClient,
    sales_client: TestClient,
    live_sales: LiveServer,
    manager_headers: dict,
    engine: Engine,
    web_channel: str,
) -> None:
    warehouse = main_warehouse_id(engine)
    product = create_product(engine, stock={warehouse: 10})
    sale = record_sale(sales_client, manager_headers, [{"product_id": product, "quantity": 6}])
    headers = {**manager_headers, "Idempotency-Key": "refund-burst"}
    url = f"{live_sales.url}/api/v1/sales/{sale['id']}/refunds"
    answers = _post_all([(url, headers, {"lines": [{"line_no": 1, "quantity": 4}]})] * 5)

    assert [a.status_code for a in answers] == [201] * 5, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum("Idempotent-Replayed" not in a.headers for a in answers) == 1
    assert refund_count(engine, sale["id"]) == 1
    wait_for(lambda: level(engine, product, warehouse).on_hand == 8)
    assert returns_of(engine, product) == [(warehouse, 4, sale["number"])]
    after = sales_client.get(f"/api/v1/sales/{sale['id']}", headers=manager_headers).json()
    assert after["lines"][0]["refunded_quantity"] == 4
    assert_ledger_ok(client, manager_headers, engine)


@pytest.mark.parametrize(
    ("bodies", "loser_status"),
    [
        ([{"lines": [{"line_no": 1, "quantity": 2}]}] * 2, 422),
        ([{}, {}, {"lines": [{"line_no": 1, "quantity": 3}]}], 409),
    ],
    ids=["two-units-each", "everything-at-once"],
)
def test_racing_refunds_never_refund_more_than_was_sold(
    client: TestClient,
    sales_client: TestClient,
    live_sales: LiveServer,
    manager_headers: dict,
    engine: Engine,
    web_channel: str,
    bodies: list[dict],
    loser_status: int,
) -> None:
    warehouse = main_warehouse_id(engine)
    product = create_product(engine, stock={warehouse: 10})
    sale = record_sale(sales_client, manager_headers, [{"product_id": product, "quantity": 3}])
    url = f"{live_sales.url}/api/v1/sales/{sale['id']}/refunds"
    answers = _post_all([(url, manager_headers, body) for body in bodies])

    codes = sorted(a.status_code for a in answers)
    assert codes.count(201) == 1, [a.text for a in answers]
    assert set(codes) - {201} <= {loser_status, 422}
    winner = next(a.json() for a in answers if a.status_code == 201)
    assert refund_count(engine, sale["id"]) == 1
    after = sales_client.get(f"/api/v1/sales/{sale['id']}", headers=manager_headers).json()
    assert after["lines"][0]["refunded_quantity"] == winner["units"] <= 3
    wait_for(lambda: level(engine, product, warehouse).on_hand == 7 + winner["units"])
    assert [q for _, q, _ in returns_of(engine, product)] == [winner["units"]]
    assert_ledger_ok(client, manager_headers, engine)


# --- products_service unavailable, and sales whose own stock is not settled -------------


@pytest.fixture
def dead_products_url() -> str:
    """An address where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def unreachable_sales(
    sales_settings: SalesSettings, dead_products_url: str
) -> Iterator[TestClient]:
    """A second sales app on the same database whose products_service never answers."""
    from sales_service.main import create_app

    dead = sales_settings.model_copy(
        update={
            "products_service_url": dead_products_url,
            "products_retries": 0,
            "products_timeout_seconds": 1,
            "stock_sync_seconds": 0.2,
        }
    )
    with TestClient(create_app(dead), raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_refund_while_products_is_down_returns_its_stock_once_it_is_back(
    client: TestClient,
    sales_client: TestClient,
    unreachable_sales: TestClient,
    dead_products_url: str,
    live_products: LiveServer,
    sync_args: Callable[[str], dict[str, Any]],
    manager_headers: dict,
    engine: Engine,
    web_channel: str,
) -> None:
    warehouse = main_warehouse_id(engine)
    product = create_product(engine, stock={warehouse: 10})
    sale = record_sale(sales_client, manager_headers, [{"product_id": product, "quantity": 5}])

    refund = unreachable_sales.post(
        f"/api/v1/sales/{sale['id']}/refunds",
        headers={**manager_headers, "Idempotency-Key": "while-down"},
        json={"lines": [{"line_no": 1, "quantity": 3}]},
    )
    assert refund.status_code == 201, refund.text
    assert refund.json()["stock_sync"] == "pending"
    assert returns_of(engine, product) == []
    assert level(engine, product, warehouse).on_hand == 5
    # The money side is recorded at once.
    sale_now = sales_client.get(f"/api/v1/sales/{sale['id']}", headers=manager_headers).json()
    assert (sale_now["status"], sale_now["refunded_total"]) == ("partially_refunded", "59.70")

    # While products_service is still unreachable, the sync leaves it pending.
    assert sync_pending_refunds(**sync_args(dead_products_url)) == 0
    assert returns_of(engine, product) == []

    # products_service answers again: the sync returns the stock, and again changes nothing.
    up = sync_args(live_products.url)
    sync_pending_refunds(**up)
    sync_pending_refunds(**up)

    def synced() -> bool:
        listed = sales_client.get(f"/api/v1/sales/{sale['id']}/refunds", headers=manager_headers)
        return bool(listed.json()["items"][0]["stock_sync"] == "done")

    wait_for(synced)
    assert returns_of(engine, product) == [(warehouse, 3, sale["number"])]
    assert level(engine, product, warehouse).on_hand == 8
    # A retry of the original request now answers with the finished refund.
    retry = sales_client.post(
        f"/api/v1/sales/{sale['id']}/refunds",
        headers={**manager_headers, "Idempotency-Key": "while-down"},
        json={"lines": [{"line_no": 1, "quantity": 3}]},
    )
    assert retry.status_code == 201 and retry.json()["id"] == refund.json()["id"]
    assert retry.json()["stock_sync"] == "done"
    assert returns_of(engine, product) == [(warehouse, 3, sale["number"])]
    assert_ledger_ok(client, manager_headers, engine)


def _set_sale_stock_sync(engine: Engine, sale_id: int, state: StockSync, **extra: Any) -> None:
    with make_sessionmaker(engine)() as session:
        session.execute(update(Sale).where(Sale.id == sale_id).values(stock_sync=state, **extra))
        session.commit()


def test_a_refund_of_a_sale_whose_stock_was_never_taken_returns_nothing(
    client: TestClient,
    sales_client: TestClient,
    manager_headers: dict,
    engine: Engine,
    web_channel: str,
) -> None:
    warehouse = main_warehouse_id(engine)
    product = create_product(engine, stock={warehouse: 10})
    sale = record_sale(sales_client, manager_headers, [{"product_id": product, "quantity": 2}])
    _set_sale_stock_sync(engine, sale["id"], StockSync.FAILED)

    refund = sales_client.post(f"/api/v1/sales/{sale['id']}/refunds", headers=manager_headers)
    assert refund.status_code == 201, refund.text
    assert (refund.json()["stock_sync"], refund.json()["amount"]) == ("done", "39.80")
    assert returns_of(engine, product) == []
    assert level(engine, product, warehouse).on_hand == 8
    assert_ledger_ok(client, manager_headers, engine)
