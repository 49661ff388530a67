"""Warehouses through the HTTP API: codes, the one default warehouse, activation, listing."""

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

API = "/api/v1"


def make_warehouse(
    client: TestClient, headers: dict[str, str], code: str, **fields: Any
) -> dict[str, Any]:
    payload = {"code": code, "name": f"Warehouse {code}", **fields}
    response = client.post(f"{API}/warehouses", json=payload, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def all_warehouses(client: TestClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get(f"{API}/warehouses", params={"include_inactive": True}, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def defaults(client: TestClient, headers: dict[str, str]) -> list[str]:
    return [w["code"] for w in all_warehouses(client, headers) if w["is_default"]]


def main_id(client: TestClient, headers: dict[str, str]) -> int:
    return next(w["id"] for w in all_warehouses(client, headers) if w["code"] == "MAIN")


def test_create_uppercases_the_code_and_refuses_duplicates(
    client: TestClient, manager_headers: dict[str, str]
) -> None:
    created = make_warehouse(client, manager_headers, " ber-1 ", address="Lagerstr. 1")
    assert created["code"] == "BER-1"
    assert (created["is_active"], created["is_default"]) == (True, False)
    assert created["address"] == "Lagerstr. 1"

    for code in ("BER-1", "main"):
        duplicate = client.post(
            f"{API}/warehouses", json={"code": code, "name": "Again"}, headers=manager_headers
        )
        assert duplicate.status_code == 409, code
        assert duplicate.json()["fields"][0]["field"] == "body.code"

    for bad in ("A B", "A_B", "-A", "A--B", "", "X" * 33):
        response = client.post(
            f"{API}/warehouses", json={"code": bad, "name": "Bad"}, headers=manager_headers
        )
        assert response.status_code == 422, bad
        assert [f["field"] for f in response.json()["fields"]] == ["body.code"]


def test_making_one_default_undefaults_the_others(
    client: TestClient, manager_headers: dict[str, str], viewer_headers: dict[str, str]
) -> None:
    assert defaults(client, viewer_headers) == ["MAIN"]

    berlin = make_warehouse(client, manager_headers, "BER", is_default=True)
    assert berlin["is_default"] is True
    assert defaults(client, viewer_headers) == ["BER"]

    paris = make_warehouse(client, manager_headers, "PAR")
    switched = client.patch(
        f"{API}/warehouses/{paris['id']}", json={"is_default": True}, headers=manager_headers
    )
    assert switched.status_code == 200, switched.text
    assert switched.json()["is_default"] is True
    assert defaults(client, viewer_headers) == ["PAR"]

    again = client.patch(
        f"{API}/warehouses/{paris['id']}", json={"is_default": True}, headers=manager_headers
    )
    assert again.status_code == 200
    assert defaults(client, viewer_headers) == ["PAR"]


def test_the_default_stays_active_and_cannot_simply_be_unset(
    client: TestClient, manager_headers: dict[str, str], viewer_headers: dict[str, str]
) -> None:
    main = main_id(client, viewer_headers)

    deactivate = client.patch(
        f"{API}/warehouses/{main}", json={"is_active": False}, headers=manager_headers
    )
    assert deactivate.status_code == 409
    assert deactivate.json()["fields"][0]["field"] == "body.is_active"

    unset = client.patch(
        f"{API}/warehouses/{main}", json={"is_default": False}, headers=manager_headers
    )
    assert unset.status_code == 409
    assert unset.json()["fields"][0]["field"] == "body.is_default"
    assert defaults(client, viewer_headers) == ["MAIN"]

    inactive = make_warehouse(client, manager_headers, "OLD", is_active=False)
    promote_inactive = client.patch(
        f"{API}/warehouses/{inactive['id']}", json={"is_default": True}, headers=manager_headers
    )
    assert promote_inactive.status_code == 409
    assert defaults(client, viewer_headers) == ["MAIN"]

    both = client.patch(
        f"{API}/warehouses/{inactive['id']}",
        json={"is_default": True, "is_active": True},
        headers=manager_headers,
    )
    assert both.status_code == 200
    assert defaults(client, viewer_headers) == ["OLD"]
    # MAIN is no longer the default, so now it may be deactivated.
    after = client.patch(
        f"{API}/warehouses/{main}", json={"is_active": False}, headers=manager_headers
    )
    assert after.status_code == 200
    assert after.json()["is_active"] is False

    created_inactive_default = client.post(
        f"{API}/warehouses",
        json={"code": "NEW", "name": "New", "is_active": False, "is_default": True},
        headers=manager_headers,
    )
    assert created_inactive_default.status_code == 422
    assert [f["field"] for f in created_inactive_default.json()["fields"]] == ["body.is_default"]


def test_list_pages_sorts_and_hides_inactive(
    client: TestClient, manager_headers: dict[str, str], viewer_headers: dict[str, str]
) -> None:
    make_warehouse(client, manager_headers, "ZRH", name="Alpine")
    make_warehouse(client, manager_headers, "AMS", name="Canal")
    make_warehouse(client, manager_headers, "OSL", name="Fjord", is_active=False)

    def codes(**params: Any) -> tuple[list[str], int]:
        response = client.get(f"{API}/warehouses", params=params, headers=viewer_headers)
        assert response.status_code == 200, response.text
        return [w["code"] for w in response.json()["items"]], response.json()["total"]

    assert codes() == (["AMS", "MAIN", "ZRH"], 3)
    assert codes(include_inactive=True) == (["AMS", "MAIN", "OSL", "ZRH"], 4)
    assert codes(sort="name") == (["ZRH", "AMS", "MAIN"], 3)
    assert codes(sort="-code", limit=2, offset=1) == (["MAIN", "AMS"], 3)
    assert (
        client.get(f"{API}/warehouses", params={"sort": "city"}, headers=viewer_headers).status_code
        == 400
    )


def test_get_and_patch_one_warehouse(
    client: TestClient, manager_headers: dict[str, str], viewer_headers: dict[str, str]
) -> None:
    created = make_warehouse(client, manager_headers, "HAM", address="Port 1")
    fetched = client.get(f"{API}/warehouses/{created['id']}", headers=viewer_headers)
    assert fetched.json() == created

    patched = client.patch(
        f"{API}/warehouses/{created['id']}", json={"name": "Hamburg"}, headers=manager_headers
    )
    assert patched.status_code == 200
    assert (patched.json()["name"], patched.json()["address"]) == ("Hamburg", "Port 1")
    assert patched.json()["code"] == "HAM"

    null_name = client.patch(
        f"{API}/warehouses/{created['id']}", json={"name": None}, headers=manager_headers
    )
    assert null_name.status_code == 422

    for method, body in (("GET", None), ("PATCH", {"name": "x"})):
        missing = client.request(
            method, f"{API}/warehouses/999999", json=body, headers=manager_headers
        )
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found"

    viewer_patch = client.patch(
        f"{API}/warehouses/{created['id']}", json={"name": "x"}, headers=viewer_headers
    )
    assert viewer_patch.status_code == 403


@pytest.mark.live
def test_parallel_default_switches_leave_exactly_one_default(
    live_products: Any, manager_headers: dict[str, str], viewer_headers: dict[str, str]
) -> None:
    with httpx.Client(base_url=f"{live_products.url}{API}", timeout=30) as http:
        ids = [
            http.post(
                "/warehouses", json={"code": f"W{i}", "name": f"W{i}"}, headers=manager_headers
            ).json()["id"]
            for i in range(8)
        ]
        barrier = threading.Barrier(len(ids))

        def make_default(warehouse_id: int) -> int:
            barrier.wait()
            response = http.patch(
                f"/warehouses/{warehouse_id}", json={"is_default": True}, headers=manager_headers
            )
            return response.status_code

        for _round in range(6):
            with ThreadPoolExecutor(len(ids)) as pool:
                assert set(pool.map(make_default, ids)) == {200}
            listed = http.get(
                "/warehouses", params={"include_inactive": True}, headers=viewer_headers
            ).json()["items"]
            assert len([w for w in listed if w["is_default"]]) == 1
