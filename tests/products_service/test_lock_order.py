"""Every path that changes a product's stock locks the product before its levels, so sales,
receipts, adjustments and holds of one product wait for each other and never deadlock (a
deadlock answered a 503 to one of them)."""

import uuid
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
from sqlalchemy import Engine

from common.contracts import RESERVATIONS_PATH
from tests.conftest import LiveServer, all_at_once
from tests.products_service.factories import (
    create_product,
    create_warehouse,
    ledger_problems,
    level,
    main_warehouse_id,
)

SALE_STOCK_PATH = "/api/v1/sale-stock"


def test_sales_receipts_and_holds_of_one_product_at_once_all_succeed(
    live_products: LiveServer,
    engine: Engine,
    manager_headers: dict[str, str],
    service_headers: dict[str, str],
) -> None:
    main = main_warehouse_id(engine)
    north = create_warehouse(engine)
    product = create_product(engine, stock={main: 400, north: 400})
    calls: list[Callable[[], httpx.Response]] = []
    with httpx.Client(base_url=live_products.url, timeout=60) as http:

        def post(path: str, body: dict[str, Any], headers: dict[str, str]) -> Callable[[], Any]:
            return partial(http.post, path, json=body, headers=headers)

        for n in range(60):
            if n % 3 == 0:
                sale = {"key": uuid.uuid4().hex, "lines": [{"product_id": product, "quantity": 1}]}
                calls.append(post(SALE_STOCK_PATH, sale, service_headers))
            elif n % 3 == 1:
                receipt = {
                    "product_id": product,
                    "warehouse_id": main if n % 2 else north,
                    "quantity": 2,
                }
                calls.append(post("/api/v1/inventory/receipts", receipt, manager_headers))
            else:
                hold = {
                    "idempotency_key": uuid.uuid4().hex,
                    "lines": [{"product_id": product, "quantity": 1}],
                }
                calls.append(post(RESERVATIONS_PATH, hold, service_headers))
        answers = all_at_once(calls, workers=30)
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: 60}, [a.text for a in answers if a.status_code != 201][:3]
    main_level, north_level = level(engine, product, main), level(engine, product, north)
    assert main_level.on_hand + north_level.on_hand == 800 + 20 * 2 - 20
    assert main_level.reserved + north_level.reserved == 20
    assert ledger_problems(engine) == []
