"""Stock taken for a sale that never stood comes back; stock of a sale that stands never does.

A take no sale claimed is what products_service holds when sales_service dies between taking
a sale's stock and writing the sale (or when a take lands after the request gave up). Here
the take is made as sales_service makes it, over real HTTP with its service identity, and
no sale is written; the reconciler is then run as sales_service's background loop runs it.
"""

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from common.auth.security import ServiceCredential
from common.contracts import SaleStockLine, SaleStockTake
from common.db import make_sessionmaker
from common.errors import InvalidState
from common.models import MovementType
from common.settings import ProductsSettings
from sales_service.clients.products import ProductsClient
from sales_service.sales import repository
from sales_service.sales.reconciler import reconcile_once
from tests.conftest import LiveServer
from tests.products_service.factories import (
    create_product,
    ledger_problems,
    level,
    main_warehouse_id,
    movements,
)
from tests.sales_service.conftest import create_channel, sale_body, take_statuses


@pytest.fixture
def products(live_products: LiveServer, settings: ProductsSettings) -> Iterator[ProductsClient]:
    client = ProductsClient(
        live_products.url, retries=0, credential=ServiceCredential("sales_service", settings)
    )
    yield client
    client.close()


@pytest.fixture
def unreachable(settings: ProductsSettings) -> Iterator[ProductsClient]:
    client = ProductsClient(
        "http://127.0.0.1:9",
        retries=0,
        timeout_seconds=1,
        credential=ServiceCredential("sales_service", settings),
    )
    yield client
    client.close()


def take(products: ProductsClient, product: int, quantity: int) -> str:
    """Take stock as sales_service does in step 2, and write no sale (as if it died)."""
    key = uuid.uuid4().hex
    products.take_sale_stock(
        SaleStockTake(key=key, lines=[SaleStockLine(product_id=product, quantity=quantity)])
    )
    return key


def reconcile(engine: Engine, client: ProductsClient, grace: float = 0) -> int:
    return reconcile_once(
        engine=engine,
        sessions=make_sessionmaker(engine),
        products_client=client,
        grace_seconds=grace,
    )


def test_a_take_no_sale_claimed_is_given_back_once_its_grace_is_over(
    engine: Engine, products: ProductsClient
) -> None:
    main = main_warehouse_id(engine)
    product = create_product(engine, stock={main: 10})
    key = take(products, product, 4)
    assert level(engine, product, main) == (6, 0)

    assert reconcile(engine, products, grace=3600) == 0  # its sale may still be on its way
    assert level(engine, product, main) == (6, 0)

    assert reconcile(engine, products) == 1
    assert level(engine, product, main) == (10, 0)
    (back,) = movements(engine, product, MovementType.RETURN)
    assert (back.quantity, back.reference) == (4, f"sale:{key}")
    assert take_statuses(engine) == {"returned": 1}
    with make_sessionmaker(engine)() as session:
        assert repository.claim_of(session, key) == (None,)  # claimed for no sale
    assert reconcile(engine, products) == 0  # and only once
    assert level(engine, product, main) == (10, 0)
    assert ledger_problems(engine) == []


def test_the_stock_of_a_recorded_sale_is_never_given_back(
    engine: Engine,
    products: ProductsClient,
    sales_client: TestClient,
    manager_headers: dict[str, str],
) -> None:
    main = main_warehouse_id(engine)
    product = create_product(engine, stock={main: 10})
    create_channel(engine, "web-store")
    sold = sales_client.post(
        "/api/v1/sales", json=sale_body("web-store", (product, 3)), headers=manager_headers
    )
    assert sold.status_code == 201, sold.text
    orphan = take(products, product, 2)

    assert reconcile(engine, products) == 1  # the orphan only
    assert level(engine, product, main) == (7, 0)
    assert take_statuses(engine) == {"taken": 1, "returned": 1}
    (back,) = movements(engine, product, MovementType.RETURN)
    assert back.reference == f"sale:{orphan}"
    assert ledger_problems(engine) == []


def test_a_give_back_that_fails_is_retried_on_the_next_pass(
    engine: Engine, products: ProductsClient, unreachable: ProductsClient
) -> None:
    main = main_warehouse_id(engine)
    product = create_product(engine, stock={main: 10})
    take(products, product, 5)

    assert reconcile(engine, unreachable) == 0  # products_service did not answer
    assert level(engine, product, main) == (5, 0)
    assert reconcile(engine, products) == 1  # its position had not moved past the take
    assert level(engine, product, main) == (10, 0)
    assert ledger_problems(engine) == []


def test_a_take_that_lands_after_its_request_gave_up_is_refused(
    engine: Engine, products: ProductsClient
) -> None:
    main = main_warehouse_id(engine)
    product = create_product(engine, stock={main: 10})
    key = uuid.uuid4().hex
    # The request gave up waiting (503) and voided its key; its take was still on the way.
    products.return_sale_stock(key)
    with pytest.raises(InvalidState, match="voided"):
        products.take_sale_stock(
            SaleStockTake(key=key, lines=[SaleStockLine(product_id=product, quantity=1)])
        )
    assert level(engine, product, main) == (10, 0)
    assert take_statuses(engine) == {"voided": 1}
