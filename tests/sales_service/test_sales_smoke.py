"""The basic path: a sale recorded through sales_service lowers stock in products_service."""

from fastapi.testclient import TestClient


def test_a_sale_lowers_stock_and_snapshots_price_and_cost(
    client: TestClient, sales_client: TestClient, manager_headers: dict
) -> None:
    product = client.post(
        "/api/v1/products",
        headers=manager_headers,
        json={"sku": "SMOKE-1", "name": "Mug", "price": "12.50", "cost_price": "4.10"},
    ).json()
    warehouse = client.get("/api/v1/warehouses", headers=manager_headers).json()["items"][0]
    client.post(
        "/api/v1/inventory/receipts",
        headers=manager_headers,
        json={"product_id": product["id"], "warehouse_id": warehouse["id"], "quantity": 5},
    )
    channel = sales_client.post(
        "/api/v1/channels", headers=manager_headers, json={"code": "web-store", "name": "Web store"}
    )
    assert channel.status_code == 201, channel.text

    sale = sales_client.post(
        "/api/v1/sales",
        headers=manager_headers,
        json={"channel_code": "web-store", "lines": [{"product_id": product["id"], "quantity": 2}]},
    )
    assert sale.status_code == 201, sale.text
    body = sale.json()
    assert body["total"] == "25.00"
    assert body["cost_total"] == "8.20"
    assert body["stock_sync"] == "done"
    assert body["lines"][0]["unit_price"] == "12.50"

    after = client.get(f"/api/v1/products/{product['id']}", headers=manager_headers).json()
    assert after["totals"]["on_hand"] == 3
    assert after["totals"]["available"] == 3
    assert client.get("/api/v1/inventory/ledger-check", headers=manager_headers).json()["ok"]
