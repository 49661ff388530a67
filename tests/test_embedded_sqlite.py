"""The embedded default (one SQLite file) holds the same stock rules as MySQL, through a real
server: migrations from empty, login as the first admin, and no overselling under load."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from common import migrate
from common.auth.security import create_service_token
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, LiveServer, service_env


def test_products_service_on_embedded_sqlite(tmp_path: Path, settings) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    migrate.upgrade(url)
    server = LiveServer(
        "products_service.main:app", service_env(settings, SHOP_DATABASE_URL=url), workers=2
    )
    server.start()
    try:
        api = httpx.Client(base_url=f"{server.url}/api/v1", timeout=30)
        wrong = api.post("/auth/login", json={"email": ADMIN_EMAIL, "password": "wrong-one"})
        assert wrong.status_code == 401, wrong.text
        login = api.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        assert login.status_code == 200, login.text
        api.headers["Authorization"] = f"Bearer {login.json()['access_token']}"

        product = api.post(
            "/products",
            json={"sku": "LITE-1", "name": "Lamp", "price": "19.90", "cost_price": "7.25"},
        )
        assert product.status_code == 201, product.text
        product_id = product.json()["id"]
        warehouse_id = api.get("/warehouses").json()["items"][0]["id"]
        receipt = api.post(
            "/inventory/receipts",
            json={"product_id": product_id, "warehouse_id": warehouse_id, "quantity": 10},
        )
        assert receipt.status_code == 201, receipt.text

        # Holds are sales_service's to make: its own service token, no person's.
        service_token, _ = create_service_token("sales_service", settings)
        service = {"Authorization": f"Bearer {service_token}"}

        def buy(i: int) -> int:
            with httpx.Client(base_url=f"{server.url}/api/v1", timeout=60, headers=service) as own:
                return own.post(
                    "/reservations",
                    json={
                        "idempotency_key": f"lite-{i}",
                        "lines": [{"product_id": product_id, "quantity": 1}],
                    },
                ).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            statuses = list(pool.map(buy, range(40)))
        assert statuses.count(201) == 10
        assert statuses.count(409) == 30

        levels = api.get("/inventory/levels", params={"product_id": product_id}).json()["items"]
        assert [(lv["on_hand"], lv["reserved"], lv["available"]) for lv in levels] == [(10, 10, 0)]
        check = api.get("/inventory/ledger-check").json()
        assert check["ok"] is True, check
        assert api.get("/products/by-sku/LITE-1").json()["price"] == "19.90"
    finally:
        server.stop()
