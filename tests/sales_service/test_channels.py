"""Sales channels: what a dashboard lists and edits."""

from datetime import datetime

from fastapi.testclient import TestClient


def test_a_channel_says_when_it_last_changed_and_lists_sort_by_it(
    sales_client: TestClient, manager_headers: dict
) -> None:
    made = []
    for code in ("shop-a", "shop-b"):
        answer = sales_client.post(
            "/api/v1/channels", headers=manager_headers, json={"code": code, "name": code}
        )
        assert answer.status_code == 201, answer.text
        made.append(answer.json())
    first = made[0]
    assert datetime.fromisoformat(first["updated_at"]) >= datetime.fromisoformat(
        first["created_at"]
    )
    renamed = sales_client.patch(
        f"/api/v1/channels/{first['id']}", headers=manager_headers, json={"name": "Shop A"}
    )
    assert renamed.status_code == 200, renamed.text
    changed = renamed.json()
    assert datetime.fromisoformat(changed["updated_at"]) > datetime.fromisoformat(
        first["updated_at"]
    )
    listed = sales_client.get(
        "/api/v1/channels", headers=manager_headers, params={"sort": "-updated_at"}
    )
    assert listed.status_code == 200, listed.text
    assert [c["code"] for c in listed.json()["items"]][:1] == ["shop-a"]
