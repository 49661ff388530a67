"""A sale whose totals no column can hold is a 422 that takes no stock (it was a 500)."""

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, update

from common.db import make_sessionmaker
from common.models import Product
from tests.products_service.factories import create_product, level, main_warehouse_id
from tests.sales_service.conftest import sale_body, sale_count, take_statuses

SALES = "/api/v1/sales"


def set_price(engine: Engine, product_id: int, price: str) -> None:
    with make_sessionmaker(engine)() as session:
        session.execute(update(Product).where(Product.id == product_id).values(price=price))
        session.commit()


def test_a_line_total_past_the_column_is_422_before_any_stock_is_taken(
    sales_client: TestClient, engine: Engine, manager_headers: dict[str, str], channel: str
) -> None:
    main = main_warehouse_id(engine)
    product = create_product(engine, stock={main: 500})
    body: dict[str, Any] = sale_body(channel, (product, 101))
    body["lines"][0]["unit_price"] = "9999999999.99"
    answer = sales_client.post(SALES, json=body, headers=manager_headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["fields"][0]["field"] == "body.lines.0"
    assert "split it" in answer.json()["detail"]
    assert sale_count(engine) == 0
    assert take_statuses(engine) == {}
    assert level(engine, product, main) == (500, 0)


def test_a_catalog_price_that_overflows_gives_the_taken_stock_back(
    sales_client: TestClient, engine: Engine, manager_headers: dict[str, str], channel: str
) -> None:
    """The total is known only once products_service answers with its price: the stock it
    took for the sale goes back."""
    main = main_warehouse_id(engine)
    cheap = create_product(engine, stock={main: 500})
    dear = create_product(engine, stock={main: 500})
    set_price(engine, dear, "9999999999.99")
    answer = sales_client.post(
        SALES, json=sale_body(channel, (cheap, 2), (dear, 101)), headers=manager_headers
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["fields"][0]["field"] == "body.lines.1"
    assert sale_count(engine) == 0
    assert take_statuses(engine) == {"returned": 1}
    assert level(engine, cheap, main) == (500, 0)
    assert level(engine, dear, main) == (500, 0)
    # The same sale within bounds is recorded.
    fine = sales_client.post(
        SALES, json=sale_body(channel, (cheap, 2), (dear, 99)), headers=manager_headers
    )
    assert fine.status_code == 201, fine.text
    assert fine.json()["lines"][1]["line_total"] == "989999999999.01"
    assert level(engine, dear, main) == (401, 0)
