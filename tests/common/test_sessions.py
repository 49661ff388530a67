"""Sessions: short access tokens renewed by rotating refresh tokens, and every way a
user's tokens end (logout, a password change or reset, deactivation, a role change).

Each test makes its own user: revoking tokens must not touch the suite's shared users.
"""

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

PASSWORD = "first-password-1"


@pytest.fixture
def person(client: TestClient, admin_headers: dict[str, str]) -> dict[str, Any]:
    email = f"person-{uuid.uuid4().hex[:8]}@example.com"
    created = client.post(
        "/api/v1/users",
        json={"email": email, "password": PASSWORD, "role": "manager"},
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    return created.json()


def log_in(client: TestClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    answer = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['access_token']}"}


def me(client: TestClient, session: dict[str, Any]) -> Any:
    return client.get("/api/v1/auth/me", headers=bearer(session))


def refresh(client: TestClient, token: str) -> Any:
    return client.post("/api/v1/auth/refresh", json={"refresh_token": token})


def test_a_refresh_token_renews_the_session_once(client: TestClient, person: dict) -> None:
    first = log_in(client, person["email"])
    assert first["refresh_token"] and first["refresh_expires_at"] > first["expires_at"]
    renewed = refresh(client, first["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    second = renewed.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert me(client, second).json()["email"] == person["email"]
    # The next one in the chain works too.
    third = refresh(client, second["refresh_token"])
    assert third.status_code == 200
    assert me(client, third.json()).status_code == 200


def test_a_reused_refresh_token_ends_its_whole_session(client: TestClient, person: dict) -> None:
    """Two holders of one refresh token: one is a thief. Both must log in again."""
    session = log_in(client, person["email"])
    other_device = log_in(client, person["email"])
    stolen = session["refresh_token"]
    rightful = refresh(client, stolen).json()  # the owner renews
    replay = refresh(client, stolen)  # the thief replays the old one
    assert replay.status_code == 401
    assert "already used" in replay.json()["detail"]
    # The owner's renewed refresh token is revoked with its family...
    later = refresh(client, rightful["refresh_token"])
    assert later.status_code == 401
    assert "revoked" in later.json()["detail"]
    # ...but another login (another device's session) is untouched.
    assert refresh(client, other_device["refresh_token"]).status_code == 200


def test_garbage_and_expired_refresh_tokens_are_401(client: TestClient) -> None:
    for token in ("nope", "x" * 43):
        answer = refresh(client, token)
        assert answer.status_code == 401
        assert answer.json()["error"] == "not_authenticated"
    assert refresh(client, "").status_code == 422


def test_logout_ends_the_session_and_its_refresh_token(client: TestClient, person: dict) -> None:
    session = log_in(client, person["email"])
    kept = log_in(client, person["email"])
    assert client.post("/api/v1/auth/logout", headers=bearer(session)).status_code == 204
    assert me(client, session).status_code == 401
    assert refresh(client, session["refresh_token"]).status_code == 401
    assert me(client, kept).status_code == 200  # logging out one device keeps the others


def test_changing_my_password_ends_every_other_session(client: TestClient, person: dict) -> None:
    laptop = log_in(client, person["email"])
    phone = log_in(client, person["email"])
    changed = client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "second-password-2"},
        headers=bearer(laptop),
    )
    assert changed.status_code == 200, changed.text
    fresh = changed.json()
    assert me(client, fresh).status_code == 200
    for old in (laptop, phone):
        answer = me(client, old)
        assert answer.status_code == 401
        assert "revoked" in answer.json()["detail"]
        assert refresh(client, old["refresh_token"]).status_code == 401
    assert (
        client.post(
            "/api/v1/auth/login", json={"email": person["email"], "password": PASSWORD}
        ).status_code
        == 401
    )
    log_in(client, person["email"], "second-password-2")


def test_changing_my_password_needs_the_current_one(client: TestClient, person: dict) -> None:
    session = log_in(client, person["email"])
    wrong = client.post(
        "/api/v1/auth/password",
        json={"current_password": "not-it-at-all", "new_password": "second-password-2"},
        headers=bearer(session),
    )
    assert wrong.status_code == 401
    assert "current password" in wrong.json()["detail"]
    assert me(client, session).status_code == 200  # nothing was revoked
    short = client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=bearer(session),
    )
    assert short.status_code == 422
    log_in(client, person["email"])  # the password is unchanged


@pytest.mark.parametrize(
    "change",
    [{"password": "reset-by-admin-1"}, {"role": "viewer"}, {"is_active": False}],
    ids=["password-reset", "demotion", "deactivation"],
)
def test_an_admin_change_revokes_the_users_tokens(
    client: TestClient, admin_headers: dict, person: dict, change: dict
) -> None:
    session = log_in(client, person["email"])
    assert me(client, session).status_code == 200
    updated = client.patch(f"/api/v1/users/{person['id']}", json=change, headers=admin_headers)
    assert updated.status_code == 200, updated.text
    assert me(client, session).status_code == 401
    assert refresh(client, session["refresh_token"]).status_code == 401
    # A manager's token demoted to viewer can no longer write either.
    write = client.post(
        "/api/v1/categories", json={"name": f"c-{uuid.uuid4().hex[:6]}"}, headers=bearer(session)
    )
    assert write.status_code == 401


def test_a_change_that_changes_nothing_keeps_the_tokens(
    client: TestClient, admin_headers: dict, person: dict
) -> None:
    session = log_in(client, person["email"])
    same = client.patch(
        f"/api/v1/users/{person['id']}",
        json={"role": "manager", "is_active": True, "full_name": "Renamed"},
        headers=admin_headers,
    )
    assert same.status_code == 200
    assert me(client, session).status_code == 200


def test_user_changes_are_in_the_audit_log_without_any_secret(
    client: TestClient, admin_headers: dict, person: dict
) -> None:
    session = log_in(client, person["email"])
    client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "second-password-2"},
        headers=bearer(session),
    )
    client.patch(
        f"/api/v1/users/{person['id']}",
        json={"role": "viewer", "password": "reset-by-admin-1"},
        headers=admin_headers,
    )
    log = client.get(
        "/api/v1/audit-log",
        params={"entity_type": "user", "entity_id": person["id"]},
        headers=admin_headers,
    )
    assert log.status_code == 200, log.text
    entries = {e["action"]: e for e in log.json()["items"]}
    assert set(entries) == {
        "user.created",
        "user.password_changed",
        "user.password_reset",
        "user.updated",
    }
    assert entries["user.password_changed"]["actor_id"] == person["id"]
    assert entries["user.password_reset"]["actor_email"] == "admin-user@example.com"
    assert entries["user.updated"]["changes"]["role"] == {"before": "manager", "after": "viewer"}
    assert "argon2" not in log.text and "second-password" not in log.text
