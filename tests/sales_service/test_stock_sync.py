"""A sale whose stock commit did not land: the sync finishes it, or marks it for a person.

The sale is recorded through a sales app whose stock commits are lost on the way (its
reservations reach the live products_service over real HTTP; only the commit call fails),
which is what a products_service dying between the two calls looks like to sales_service.
"""

import csv
import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from common.db import make_sessionmaker
from common.errors import UpstreamUnavailable
from common.models import Sale
from common.settings import SalesSettings
from sales_service.stock_sync import sync_pending
from tests.conftest import LiveServer
from tests.products_service.factories import (
    create_product,
    ledger_problems,
    level,
    main_warehouse_id,
)
from tests.sales_service.conftest import numbers

SALES = "/api/v1/sales"


@pytest.fixture
def lossy_sales(sales_settings: SalesSettings) -> Iterator[TestClient]:
    """A sales app whose stock commits never reach products_service (nor does its own sync
    run during a test: the test runs the sync itself)."""
    from sales_service.main import create_app

    app = create_app(sales_settings.model_copy(update={"stock_sync_seconds": 3600}))
    with TestClient(app, raise_server_exceptions=False) as test_client:

        def commit_lost(*_args: Any, **_kwargs: Any) -> Any:
            raise UpstreamUnavailable("products_service did not answer", upstream="x")

        app.state.products_client.commit = commit_lost
        yield test_client


def sell(sales: TestClient, headers: dict, product: int, quantity: int) -> dict[str, Any]:
    answer = sales.post(
        SALES,
        headers=headers,
        json={"channel_code": "web", "lines": [{"product_id": product, "quantity": quantity}]},
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def reservation_of(engine: Engine, sale_id: int) -> int:
    with make_sessionmaker(engine)() as session:
        reservation_id = session.scalar(select(Sale.reservation_id).where(Sale.id == sale_id))
    assert reservation_id is not None
    return reservation_id


def test_a_sale_whose_stock_commit_is_refused_is_marked_failed_and_listed_for_settling(
    client: TestClient,
    lossy_sales: TestClient,
    live_products: LiveServer,
    sync_args: Callable[[str], dict[str, Any]],
    manager_headers: dict,
    viewer_headers: dict,
    engine: Engine,
) -> None:
    created = lossy_sales.post(
        "/api/v1/channels", headers=manager_headers, json={"code": "web", "name": "Web"}
    )
    assert created.status_code == 201, created.text
    main = main_warehouse_id(engine)
    product = create_product(engine, stock={main: 10})

    late = sell(lossy_sales, manager_headers, product, 2)
    stuck = sell(lossy_sales, manager_headers, product, 3)
    assert (late["stock_sync"], stuck["stock_sync"]) == ("pending", "pending")
    assert level(engine, product, main) == (10, 5)  # both still only held
    assert numbers(lossy_sales, viewer_headers, stock_sync="pending") == [
        stuck["number"],
        late["number"],
    ]

    # `stuck`'s reservation is let go before its commit arrives (by a person, or it expired
    # and its stock was sold): products_service now refuses that commit for good.
    released = client.post(
        f"/api/v1/reservations/{reservation_of(engine, stuck['id'])}/release",
        headers=manager_headers,
    )
    assert released.status_code == 200, released.text

    assert sync_pending(**sync_args(live_products.url)) == 1  # `late` is committed
    assert sync_pending(**sync_args(live_products.url)) == 0  # nothing is left to try

    assert numbers(lossy_sales, viewer_headers, stock_sync="failed") == [stuck["number"]]
    assert numbers(lossy_sales, viewer_headers, stock_sync="done") == [late["number"]]
    assert numbers(lossy_sales, viewer_headers, stock_sync="pending") == []
    assert numbers(lossy_sales, viewer_headers, stock_sync=["done", "failed"]) == [
        stuck["number"],
        late["number"],
    ]
    export = lossy_sales.get(
        f"{SALES}/export.csv", headers=viewer_headers, params={"stock_sync": "failed"}
    )
    assert export.status_code == 200, export.text
    assert [row["number"] for row in csv.DictReader(io.StringIO(export.text))] == [stuck["number"]]
    # The failed sale stands, its stock was never taken; the other one's was, once.
    assert level(engine, product, main) == (8, 0)
    assert ledger_problems(engine) == []

    bad = lossy_sales.get(SALES, headers=viewer_headers, params={"stock_sync": "lost"})
    assert bad.status_code == 422
    assert "stock_sync" in bad.text
