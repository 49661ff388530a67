"""What one sale costs in SQL: the budget the sale path is designed to (issue 9), kept.

A one-line sale is three transactions in all: sales_service reads (caller, key, channel),
products_service takes the stock, sales_service writes the sale. Counted per service on
its own engine, only the statements of the request (not of the background loops, which
run on asyncio's threads), so a test can tell if a change adds a round trip to every sale.
"""

import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from common.auth.security import create_service_token
from common.contracts import SALE_STOCK_PATH
from common.settings import ProductsSettings
from tests.products_service.factories import create_product, main_warehouse_id
from tests.sales_service.conftest import create_channel, sale_body

MAX_STATEMENTS = 15  # in both services together, for a one-line sale
MAX_TRANSACTIONS = 3


class Counted:
    """Statements and commits an app's request threads run on one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: list[str] = []
        self.commits = 0

    def _ours(self) -> bool:
        return not threading.current_thread().name.startswith("asyncio")

    def statement(self, _conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        if self._ours():
            self.statements.append(sql)

    def commit(self, _conn: Any) -> None:
        if self._ours():
            self.commits += 1

    def __enter__(self) -> "Counted":
        event.listen(self.engine, "before_cursor_execute", self.statement)
        event.listen(self.engine, "commit", self.commit)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self.statement)
        event.remove(self.engine, "commit", self.commit)


@pytest.fixture
def counted_products(products_app: Any) -> Iterator[Counted]:
    with Counted(products_app.state.engine) as counted:
        yield counted


@pytest.fixture
def counted_sales(sales_app: Any) -> Iterator[Counted]:
    with Counted(sales_app.state.engine) as counted:
        yield counted


def test_a_one_line_sale_is_three_transactions_and_at_most_fifteen_statements(
    client: TestClient,
    sales_client: TestClient,
    settings: ProductsSettings,
    manager_headers: dict[str, str],
    engine: Engine,
    counted_products: Counted,
    counted_sales: Counted,
) -> None:
    main = main_warehouse_id(engine)
    product = create_product(engine, stock={main: 10})
    create_channel(engine, "web-store")
    warm = sales_client.post(
        "/api/v1/sales", json=sale_body("web-store", (product, 1)), headers=manager_headers
    )
    assert warm.status_code == 201, warm.text

    # sales_service's side: the request as a client sends it (its take goes to the live
    # products_service, whose statements are counted below on an in-process twin).
    counted_sales.statements.clear()
    counted_sales.commits = 0
    sold = sales_client.post(
        "/api/v1/sales",
        json=sale_body("web-store", (product, 1)),
        headers={**manager_headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert sold.status_code == 201, sold.text

    # products_service's side: the one call sales_service makes, as it makes it.
    token, _ = create_service_token("sales_service", settings)
    counted_products.statements.clear()
    counted_products.commits = 0
    taken = client.post(
        SALE_STOCK_PATH,
        json={"key": uuid.uuid4().hex, "lines": [{"product_id": product, "quantity": 1}]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert taken.status_code == 201, taken.text

    statements = counted_sales.statements + counted_products.statements
    assert len(statements) <= MAX_STATEMENTS, statements
    assert counted_sales.commits + counted_products.commits == MAX_TRANSACTIONS
    assert counted_products.commits == 1
    # sales_service reads once before the take: the caller, the key and the channel in one
    # statement. Nothing loads what the answer does not need: a new key is looked up by its
    # index alone, and the sale is never read back.
    reads = [s for s in counted_sales.statements if s.lstrip().startswith("SELECT")]
    assert len(reads) == 1, reads
    reads_of_sales = re.findall(r"SELECT ([^()]*?)\s+FROM sales\b", reads[0])
    assert reads_of_sales == ["sales.id"], reads[0]
