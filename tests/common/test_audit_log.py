"""The audit log through the real HTTP API: who changed the catalog, warehouses and channels,
read by admins only, written only when the change commits, and never holding a secret."""

from datetime import timedelta
from types import MappingProxyType
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from common import audit
from common.db import make_sessionmaker, utcnow
from common.models import Role, User
from tests.products_service.factories import API, main_warehouse_id, make_category, make_product


def audit_log(client: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = client.get(f"{API}/audit-log", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def entries(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = audit_log(client, headers, **params)["items"]
    return items


def actions(client: TestClient, headers: dict[str, str], **params: Any) -> list[str]:
    return [e["action"] for e in entries(client, headers, **params)]


def test_an_admin_reads_who_changed_a_price_from_what_to_what(
    client: TestClient,
    manager_headers: dict[str, str],
    admin_headers: dict[str, str],
    users: dict[Role, User],
) -> None:
    product = make_product(client, manager_headers, "AUD-1", price="19.90", cost_price="7.25")
    response = client.patch(
        f"{API}/products/{product['id']}",
        json={"price": "17.50", "cost_price": "7.25", "name": "Renamed"},
        headers={**manager_headers, "X-Request-ID": "audit-price-change-1"},
    )
    assert response.status_code == 200, response.text

    log = audit_log(client, admin_headers, entity_type="product", entity_id=product["id"])
    assert log["total"] == 2
    updated, created = log["items"]  # newest first
    manager = users[Role.MANAGER]
    assert updated["action"] == "product.updated"
    assert (updated["actor_id"], updated["actor_email"]) == (manager.id, manager.email)
    assert (updated["entity_type"], updated["entity_id"]) == ("product", product["id"])
    # only what changed: the cost price was sent unchanged
    assert updated["changes"] == {
        "name": {"before": "Product AUD-1", "after": "Renamed"},
        "price": {"before": "19.90", "after": "17.50"},
    }
    assert updated["request_id"] == "audit-price-change-1"
    assert updated["occurred_at"].endswith(("Z", "+00:00"))
    assert created["action"] == "product.created"
    assert created["changes"]["sku"] == {"before": None, "after": "AUD-1"}
    assert created["changes"]["price"] == {"before": None, "after": "19.90"}


def test_archive_restore_and_no_op_changes(
    client: TestClient, manager_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    product = make_product(client, manager_headers, "AUD-2")
    path = f"{API}/products/{product['id']}"
    for call in ("archive", "archive", "restore", "restore"):  # repeats change nothing
        assert client.post(f"{path}/{call}", headers=manager_headers).status_code == 200
    assert client.patch(path, json={"price": "10.00"}, headers=manager_headers).status_code == 200

    found = entries(client, admin_headers, entity_type="product", entity_id=product["id"])
    assert [e["action"] for e in found] == [
        "product.restored",
        "product.archived",
        "product.created",
    ]
    restored, archived = found[0]["changes"], found[1]["changes"]
    assert list(archived) == ["archived_at"] and archived["archived_at"]["before"] is None
    assert restored["archived_at"] == {"before": archived["archived_at"]["after"], "after": None}


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MANAGER])
@pytest.mark.parametrize("service", ["products", "sales"])
def test_only_admins_may_read_the_audit_log(
    request: pytest.FixtureRequest,
    role: Role,
    service: str,
    viewer_headers: dict[str, str],
    manager_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    test_client: TestClient = request.getfixturevalue(
        "client" if service == "products" else "sales_client"
    )
    headers = viewer_headers if role is Role.VIEWER else manager_headers
    response = test_client.get(f"{API}/audit-log", headers=headers)
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert test_client.get(f"{API}/audit-log").status_code == 401
    assert test_client.get(f"{API}/audit-log", headers=admin_headers).status_code == 200


def test_a_refused_change_leaves_no_entry(
    client: TestClient,
    engine: Engine,
    manager_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    category = make_category(client, manager_headers, "Mugs")
    first = make_product(client, manager_headers, "AUD-3", category_id=category["id"])
    make_product(client, manager_headers, "AUD-4")
    before = audit_log(client, admin_headers)["total"]
    assert before == 3

    refused = [
        client.patch(
            f"{API}/products/{first['id']}", json={"sku": "AUD-4"}, headers=manager_headers
        ),
        client.patch(
            f"{API}/products/{first['id']}", json={"price": "-1"}, headers=manager_headers
        ),
        client.post(f"{API}/categories/{category['id']}/archive", headers=manager_headers),
        client.patch(
            f"{API}/warehouses/{main_warehouse_id(engine)}",
            json={"is_active": False},  # the default stays active
            headers=manager_headers,
        ),
        client.post(f"{API}/categories", json={"name": "Mugs"}, headers=manager_headers),
    ]
    assert [r.status_code for r in refused] == [409, 422, 409, 409, 409]
    assert audit_log(client, admin_headers)["total"] == before
    assert client.get(f"{API}/products/{first['id']}", headers=manager_headers).json()["sku"] == (
        "AUD-3"
    )


def test_categories_and_warehouses_are_logged(
    client: TestClient,
    engine: Engine,
    manager_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    home = make_category(client, manager_headers, "Home")
    kitchen = make_category(client, manager_headers, "Kitchen")
    moved = client.patch(
        f"{API}/categories/{kitchen['id']}",
        json={"parent_id": home["id"], "description": "Pots"},
        headers=manager_headers,
    )
    assert moved.status_code == 200, moved.text
    archived = client.post(f"{API}/categories/{kitchen['id']}/archive", headers=manager_headers)
    assert archived.status_code == 200, archived.text
    kitchen_log = entries(client, admin_headers, entity_type="category", entity_id=kitchen["id"])
    assert [e["action"] for e in kitchen_log] == [
        "category.archived",
        "category.updated",
        "category.created",
    ]
    assert kitchen_log[1]["changes"] == {
        "description": {"before": "", "after": "Pots"},
        "parent_id": {"before": None, "after": home["id"]},
    }

    created = client.post(
        f"{API}/warehouses", json={"code": "BER", "name": "Berlin"}, headers=manager_headers
    )
    assert created.status_code == 201, created.text
    berlin = created.json()["id"]
    main_id = main_warehouse_id(engine)
    switched = client.patch(
        f"{API}/warehouses/{berlin}", json={"is_default": True}, headers=manager_headers
    )
    assert switched.status_code == 200, switched.text

    log = entries(client, admin_headers, entity_type="warehouse")
    assert [(e["action"], e["entity_id"]) for e in log] == [
        ("warehouse.updated", main_id),  # it lost the default
        ("warehouse.updated", berlin),
        ("warehouse.created", berlin),
    ]
    assert log[0]["changes"] == {"is_default": {"before": True, "after": False}}
    assert log[1]["changes"] == {"is_default": {"before": False, "after": True}}


def test_channel_changes_are_logged_by_sales_service_and_read_on_either(
    sales_client: TestClient,
    client: TestClient,
    manager_headers: dict[str, str],
    admin_headers: dict[str, str],
    users: dict[Role, User],
) -> None:
    created = sales_client.post(
        f"{API}/channels", json={"code": "web", "name": "Web"}, headers=manager_headers
    )
    assert created.status_code == 201, created.text
    channel = created.json()["id"]
    duplicate = sales_client.post(
        f"{API}/channels", json={"code": "web", "name": "Again"}, headers=manager_headers
    )
    assert duplicate.status_code == 409
    updated = sales_client.patch(
        f"{API}/channels/{channel}", json={"is_active": False}, headers=manager_headers
    )
    assert updated.status_code == 200, updated.text

    for reader in (sales_client, client):
        log = entries(reader, admin_headers, entity_type="channel", entity_id=channel)
        assert [e["action"] for e in log] == ["channel.updated", "channel.created"]
        assert log[0]["changes"] == {"is_active": {"before": True, "after": False}}
        assert log[0]["actor_id"] == users[Role.MANAGER].id


def test_filters_by_action_actor_and_time_and_pages_newest_first(
    client: TestClient,
    manager_headers: dict[str, str],
    admin_headers: dict[str, str],
    users: dict[Role, User],
) -> None:
    started = utcnow()
    by_manager = make_product(client, manager_headers, "AUD-5")
    by_admin = make_product(client, admin_headers, "AUD-6")
    client.patch(
        f"{API}/products/{by_manager['id']}", json={"price": "11.00"}, headers=admin_headers
    )
    make_category(client, manager_headers, "Lamps")

    assert actions(client, admin_headers) == [
        "category.created",
        "product.updated",
        "product.created",
        "product.created",
    ]
    admin_id, manager_id = users[Role.ADMIN].id, users[Role.MANAGER].id
    assert actions(client, admin_headers, actor_id=admin_id) == [
        "product.updated",
        "product.created",
    ]
    assert [e["entity_id"] for e in entries(client, admin_headers, action="product.created")] == [
        by_admin["id"],
        by_manager["id"],
    ]
    assert len(entries(client, admin_headers, actor_id=manager_id, entity_type="product")) == 1
    assert entries(client, admin_headers, entity_type="warehouse") == []

    page = audit_log(client, admin_headers, limit=2, offset=1)
    assert (page["total"], page["limit"], page["offset"]) == (4, 2, 1)
    assert [e["action"] for e in page["items"]] == ["product.updated", "product.created"]

    now = utcnow()
    assert audit_log(client, admin_headers, **{"from": started.isoformat()})["total"] == 4
    assert audit_log(client, admin_headers, to=started.isoformat())["total"] == 0
    later = (now + timedelta(hours=1)).isoformat()
    assert audit_log(client, admin_headers, **{"from": later})["total"] == 0

    for bad in (
        {"entity_id": by_admin["id"]},  # without entity_type
        {"from": "2026-01-01T00:00:00"},  # no offset
        {"from": later, "to": now.isoformat()},
    ):
        response = client.get(f"{API}/audit-log", params=bad, headers=admin_headers)
        assert response.status_code == 422, (bad, response.text)


def test_secrets_are_never_stored_or_shown(
    client: TestClient, engine: Engine, admin_headers: dict[str, str], users: dict[Role, User]
) -> None:
    admin = users[Role.ADMIN]
    with make_sessionmaker(engine)() as session:
        audit.record(
            session,
            actor_id=admin.id,
            actor_email=admin.email,
            action="user.updated",
            entity_type="user",
            entity_id=users[Role.VIEWER].id,
            changes={
                "full_name": {"before": "Viewer", "after": "Vera"},
                # any mapping will do for a pair, not only a dict
                "email": MappingProxyType({"before": "v@example.com", "after": "w@example.com"}),
                "password": {"before": "old-pass-123", "after": "new-pass-456"},
                "hashed_password": {"before": "$argon2id$old", "after": "$argon2id$new"},
                "settings": {
                    "before": {"api_token": "tok-old", "region": "eu"},
                    "after": {"api_token": "tok-new", "region": "us"},
                },
            },
        )
        session.commit()

    response = client.get(f"{API}/audit-log", params={"entity_type": "user"}, headers=admin_headers)
    assert response.status_code == 200
    for secret in ("old-pass-123", "new-pass-456", "argon2", "tok-old", "tok-new"):
        assert secret not in response.text
    changes = response.json()["items"][0]["changes"]
    assert changes["full_name"] == {"before": "Viewer", "after": "Vera"}
    assert changes["email"] == {"before": "v@example.com", "after": "w@example.com"}
    assert changes["password"] == {"before": audit.REDACTED, "after": audit.REDACTED}
    assert changes["hashed_password"] == {"before": audit.REDACTED, "after": audit.REDACTED}
    assert changes["settings"] == {
        "before": {"api_token": audit.REDACTED, "region": "eu"},
        "after": {"api_token": audit.REDACTED, "region": "us"},
    }


def test_record_refuses_changes_not_given_as_before_and_after(engine: Engine) -> None:
    with make_sessionmaker(engine)() as session, pytest.raises(ValueError, match="role"):
        audit.record(
            session,
            actor_id=None,
            actor_email=None,
            action="user.updated",
            entity_type="user",
            entity_id=1,
            changes={"role": "admin"},  # type: ignore[dict-item]
        )


def test_diff_lists_only_what_changed() -> None:
    assert audit.diff({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": None}) == {
        "b": {"before": 2, "after": 3}
    }
    assert audit.diff({}, {"x": "new", "y": None}) == {"x": {"before": None, "after": "new"}}
