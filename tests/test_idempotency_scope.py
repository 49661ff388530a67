"""An Idempotency-Key belongs to the user who sent it: another user's request with the same
key is another request, never a replay of (or a conflict with) someone else's."""

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from common.auth.security import create_access_token, hash_password
from common.db import make_sessionmaker
from common.models import Role, User
from common.settings import ProductsSettings
from tests.products_service.factories import create_product, level, main_warehouse_id

Headers = dict[str, str]


@pytest.fixture
def other_manager(engine: Engine, settings: ProductsSettings) -> Headers:
    with make_sessionmaker(engine)() as session:
        user = User(
            email=f"other-{uuid.uuid4().hex[:8]}@example.com",
            full_name="Other",
            hashed_password=hash_password("irrelevant-here"),
            role=Role.MANAGER,
            is_active=True,
        )
        session.add(user)
        session.commit()
        token, _ = create_access_token(user_id=user.id, role=user.role, settings=settings)
    return {"Authorization": f"Bearer {token}"}


def test_two_users_with_one_sale_key_make_two_sales(
    sales_client: TestClient,
    engine: Engine,
    manager_headers: Headers,
    other_manager: Headers,
) -> None:
    from tests.sales_service.conftest import create_channel

    main = main_warehouse_id(engine)
    product = create_product(engine, stock={main: 10})
    create_channel(engine, "web-store")
    body = {"channel_code": "web-store", "lines": [{"product_id": product, "quantity": 1}]}
    key = {"Idempotency-Key": "order-1"}
    mine = sales_client.post("/api/v1/sales", json=body, headers={**manager_headers, **key})
    theirs = sales_client.post("/api/v1/sales", json=body, headers={**other_manager, **key})
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]
    # Another body under the other user's key is no misuse of mine.
    body2 = {"channel_code": "web-store", "lines": [{"product_id": product, "quantity": 2}]}
    key2 = {"Idempotency-Key": "order-2"}
    assert sales_client.post("/api/v1/sales", json=body, headers={**manager_headers, **key2})
    other = sales_client.post("/api/v1/sales", json=body2, headers={**other_manager, **key2})
    assert other.status_code == 201, other.text
    # Each user's own retry is still a replay.
    again = sales_client.post("/api/v1/sales", json=body, headers={**manager_headers, **key})
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == mine.json()["id"]
    assert level(engine, product, main) == (10 - 1 - 1 - 1 - 2, 0)


def test_two_users_with_one_receipt_key_receive_twice(
    client: TestClient, engine: Engine, manager_headers: Headers, other_manager: Headers
) -> None:
    main = main_warehouse_id(engine)
    product = create_product(engine, stock={main: 1})
    body = {"product_id": product, "warehouse_id": main, "quantity": 5}
    key = {"Idempotency-Key": "delivery-1"}
    for headers in (manager_headers, other_manager, manager_headers):
        answer = client.post("/api/v1/inventory/receipts", json=body, headers={**headers, **key})
        assert answer.status_code in (200, 201), answer.text
    assert level(engine, product, main) == (11, 0)  # two receipts of 5: one per user
