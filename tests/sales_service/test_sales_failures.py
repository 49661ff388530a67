"""What goes wrong on the way through two services must neither lose nor invent stock.

Real servers on loopback: ``short_sales`` calls ``short_products`` (a take no sale claimed
is given back after 2 s),
each in its own process group so a test can stop, freeze (SIGSTOP) or kill (SIGKILL) it and
bring it back on the same port. Every wait is a poll with a deadline.
"""

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

from common.db import make_sessionmaker
from common.models import Sale
from tests.products_service.factories import create_product, ledger_problems, level
from tests.products_service.factories import main_warehouse_id as main_warehouse
from tests.sales_service.conftest import (
    CONCURRENT_SALES,
    RECONCILE_GRACE_SECONDS,
    SALES_TIMEOUT_SECONDS,
    RestartableServer,
    create_channel,
    sale_body,
    sale_count,
    take_statuses,
    wait_until_settled,
)

pytestmark = pytest.mark.live

SALES = "/api/v1/sales"


@pytest.fixture
def main(engine: Engine) -> int:
    return main_warehouse(engine)


@pytest.fixture
def sales_http(
    short_sales: RestartableServer, manager_headers: dict[str, str]
) -> Iterator[httpx.Client]:
    limits = httpx.Limits(max_connections=60, max_keepalive_connections=60)
    with httpx.Client(
        base_url=short_sales.url, headers=manager_headers, timeout=30, limits=limits
    ) as client:
        yield client


def assert_upstream_503(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    body = answer.json()
    assert body["error"] == "upstream_unavailable"
    assert body["upstream"] == "products_service"
    assert "products_service" in body["detail"]


def test_products_service_stopped_means_503_and_nothing_recorded(
    short_products: RestartableServer,
    short_sales: RestartableServer,
    sales_http: httpx.Client,
    engine: Engine,
    main: int,
) -> None:
    product = create_product(engine, stock={main: 10})
    create_channel(engine, "web-store")
    assert httpx.get(f"{short_sales.url}/ready", timeout=10).status_code == 200

    short_products.stop()
    answer = sales_http.post(
        SALES,
        json=sale_body("web-store", (product, 2)),
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert_upstream_503(answer)
    assert sale_count(engine) == 0
    assert level(engine, product, main) == (10, 0)
    assert take_statuses(engine) == {}

    ready = httpx.get(f"{short_sales.url}/ready", timeout=10)
    assert ready.status_code == 503
    assert ready.json()["products_service"] == "unavailable"
    assert ready.json()["database"] == "ok"

    short_products.start()  # and the same sale goes through once it is back
    again = sales_http.post(SALES, json=sale_body("web-store", (product, 2)))
    assert again.status_code == 201, again.text
    assert level(engine, product, main) == (8, 0)
    assert httpx.get(f"{short_sales.url}/ready", timeout=10).status_code == 200


def test_products_service_frozen_times_out_within_the_budget_and_loses_nothing(
    short_products: RestartableServer,
    short_sales: RestartableServer,
    sales_http: httpx.Client,
    engine: Engine,
    main: int,
) -> None:
    product = create_product(engine, stock={main: 10})
    create_channel(engine, "web-store")

    short_products.pause()  # the kernel still accepts connections; nobody answers
    try:
        started = time.monotonic()
        answer = sales_http.post(
            SALES,
            json=sale_body("web-store", (product, 3)),
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        elapsed = time.monotonic() - started
    finally:
        short_products.resume()
    assert_upstream_503(answer)
    assert "in time" in answer.json()["detail"]
    # Budget: twice the per-attempt timeout, however many retries are allowed (3 here,
    # which unbounded would take 4 x 2.5 s + back-off = 11.3 s).
    assert elapsed < 2 * SALES_TIMEOUT_SECONDS + 1.5, elapsed
    assert sale_count(engine) == 0

    # Thawed, products_service may still serve the take it had queued; no sale claims it,
    # so the reconciler gives it back. Settled must last longer than that grace, or a take
    # served just after a look could go unseen.
    wait_until_settled(
        engine, product, main, initial=10, within=30, stable_for=RECONCILE_GRACE_SECONDS + 2
    )
    assert level(engine, product, main) == (10, 0)
    assert set(take_statuses(engine)) <= {"returned"}
    assert sale_count(engine) == 0


def post_many_then_kill(
    client: httpx.Client,
    victim: RestartableServer,
    bodies: list[dict[str, Any]],
    *,
    kill_after: int,
) -> list[str]:
    """Send the sales from CONCURRENT_SALES clients; SIGKILL the victim once ``kill_after``
    were recorded.

    Each outcome is ``201 done`` (recorded, its stock taken), another status, or the name of
    the transport error the client saw.
    """
    recorded = 0
    outcomes: list[str] = []

    def send(body: dict[str, Any]) -> str:
        nonlocal recorded
        try:
            answer = client.post(SALES, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        except httpx.HTTPError as exc:
            return type(exc).__name__
        if answer.status_code == 201:
            recorded += 1
            return f"201 {answer.json()['stock_sync']}"
        return str(answer.status_code)

    with ThreadPoolExecutor(max_workers=min(len(bodies), CONCURRENT_SALES)) as pool:
        futures = [pool.submit(send, body) for body in bodies]
        deadline = time.monotonic() + 30
        while recorded < kill_after and time.monotonic() < deadline:
            time.sleep(0.005)
        assert recorded >= kill_after, f"only {recorded} sales before the deadline"
        victim.stop(kill=True)
        outcomes = [f.result() for f in futures]
    return outcomes


@pytest.mark.parametrize("victim", ["products", "sales"])
def test_a_service_killed_mid_sale_loses_and_invents_no_stock(
    victim: str,
    short_products: RestartableServer,
    short_sales: RestartableServer,
    sales_http: httpx.Client,
    engine: Engine,
    main: int,
) -> None:
    initial = 500
    product = create_product(engine, stock={main: initial})
    create_channel(engine, "web-store")
    # More sales than clients, so the kill lands while sales are still arriving.
    bodies = [sale_body("web-store", (product, 1 + i % 3)) for i in range(4 * CONCURRENT_SALES)]
    killed = short_products if victim == "products" else short_sales

    outcomes = post_many_then_kill(sales_http, killed, bodies, kill_after=10)
    counted = Counter(outcomes)
    assert counted["201 done"] >= 10, counted
    assert counted["201 done"] < len(bodies), f"the kill interrupted nothing: {counted}"
    if victim == "products":
        # sales_service stayed up: a sale whose stock it could not take answers 503.
        assert set(counted) <= {"201 done", "503"}, counted
    recorded = counted["201 done"]

    killed.start()  # same port; sales_service's reconciler takes it from here
    # Every unit is on the shelf or in a recorded sale whose stock was taken: the stock of
    # sales never written is given back.
    wait_until_settled(engine, product, main, initial, within=40)
    with make_sessionmaker(engine)() as session:
        sales = session.scalars(select(Sale)).all()
        assert len(sales) >= recorded
        assert {s.stock_sync.value for s in sales} == {"done"}
    takes = take_statuses(engine)
    assert takes.get("taken") == len(sales)  # each sale claimed its own take
    assert set(takes) <= {"taken", "returned", "voided"}, takes  # the rest were given back
    assert ledger_problems(engine) == []


def test_a_failed_sale_write_gives_its_stock_back(
    sales_client: TestClient,
    engine: Engine,
    manager_headers: dict[str, str],
    main: int,
) -> None:
    product = create_product(engine, stock={main: 10})
    other = create_product(engine, stock={main: 10})
    create_channel(engine, "web-store")
    trigger = f"fail_sale_lines_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.execute(
            text(
                f"CREATE TRIGGER {trigger} BEFORE INSERT ON sale_lines FOR EACH ROW "
                f"BEGIN IF NEW.product_id = {product} THEN "
                "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected sale_lines failure'; "
                "END IF; END"
            )
        )
    try:
        key = f"doomed-{uuid.uuid4().hex}"
        answer = sales_client.post(
            SALES,
            json=sale_body("web-store", (other, 1), (product, 4)),
            headers={**manager_headers, "Idempotency-Key": key},
        )
        assert 500 <= answer.status_code < 600, answer.text
        body = answer.json()
        assert set(body) >= {"error", "detail"}
        assert "injected" not in answer.text  # no database internals on the wire

        assert sale_count(engine) == 0
        assert level(engine, product, main) == (10, 0)
        assert level(engine, other, main) == (10, 0)
        assert take_statuses(engine) == {"returned": 1}
        assert ledger_problems(engine) == []
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP TRIGGER IF EXISTS {trigger}"))

    # The same key, retried once the database is healthy, records the sale with fresh stock.
    retry = sales_client.post(
        SALES,
        json=sale_body("web-store", (other, 1), (product, 4)),
        headers={**manager_headers, "Idempotency-Key": key},
    )
    assert retry.status_code == 201, retry.text
    assert retry.json()["stock_sync"] == "done"
    assert level(engine, product, main) == (6, 0)
    assert level(engine, other, main) == (9, 0)
    assert take_statuses(engine) == {"returned": 1, "taken": 1}
    assert ledger_problems(engine) == []
