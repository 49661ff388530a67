"""Login, logout, throttling, roles and user management through the HTTP API."""

import time
import uuid

import jwt
from fastapi.testclient import TestClient

from common.models import Role, User
from common.settings import ProductsSettings
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD


def login(client: TestClient, email: str, password: str) -> tuple[int, dict]:
    response = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    return response.status_code, response.json()


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["database"] == "ok"


def test_first_admin_from_settings_can_log_in(client: TestClient) -> None:
    status, body = login(client, ADMIN_EMAIL.upper(), ADMIN_PASSWORD)
    assert status == 200, body
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["email"] == ADMIN_EMAIL
    assert me.json()["role"] == "admin"


def test_wrong_password_and_unknown_user_are_the_same_401(client: TestClient) -> None:
    wrong = login(client, ADMIN_EMAIL, "not-the-password")
    unknown = login(client, "nobody@example.com", "whatever-pass")
    assert wrong[0] == unknown[0] == 401
    assert wrong[1] == unknown[1]


def test_oauth2_form_login_for_swagger(client: TestClient) -> None:
    response = client.post(
        "/api/v1/auth/token", data={"username": "manager-user@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "bearer"


def test_logout_revokes_the_token(client: TestClient) -> None:
    _, body = login(client, "viewer-user@example.com", PASSWORD)
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    after = client.get("/api/v1/auth/me", headers=headers)
    assert after.status_code == 401
    assert "revoked" in after.json()["detail"]


def test_forged_and_garbage_tokens_are_401(client: TestClient, viewer_headers: dict) -> None:
    token = viewer_headers["Authorization"].split()[1]
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    for bad in (forged, "garbage", ""):
        response = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401
        assert response.json()["error"] == "not_authenticated"


def test_admin_manages_users_and_roles_take_effect(
    client: TestClient, admin_headers: dict, manager_headers: dict
) -> None:
    new = {"email": "Clerk@Example.com", "password": "long-enough", "role": "viewer"}
    assert client.post("/api/v1/users", json=new, headers=manager_headers).status_code == 403
    created = client.post("/api/v1/users", json=new, headers=admin_headers)
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["email"] == "clerk@example.com"
    assert client.post("/api/v1/users", json=new, headers=admin_headers).status_code == 409

    _, body = login(client, "clerk@example.com", "long-enough")
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    client.patch(f"/api/v1/users/{user['id']}", json={"is_active": False}, headers=admin_headers)
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401
    assert login(client, "clerk@example.com", "long-enough")[0] == 401


def test_bad_user_input_names_the_field(client: TestClient, admin_headers: dict) -> None:
    response = client.post(
        "/api/v1/users", json={"email": "not-an-email", "password": "short"}, headers=admin_headers
    )
    assert response.status_code == 422
    fields = {f["field"] for f in response.json()["fields"]}
    assert fields == {"body.email", "body.password"}


def test_a_token_is_refused_the_moment_it_expires_though_it_was_accepted_before(
    client: TestClient, users: dict[Role, User], settings: ProductsSettings
) -> None:
    """Checked signatures are remembered between requests; expiry is checked on each one."""
    now = int(time.time())
    manager = users[Role.MANAGER]
    token = jwt.encode(
        {"sub": str(manager.id), "role": "manager", "jti": uuid.uuid4().hex, "ver": 0,
         "iat": now, "exp": now + 2},
        settings.jwt_secret.get_secret_value(),
        algorithm=settings.jwt_algorithm,
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    time.sleep(2.5)
    expired = client.get("/api/v1/auth/me", headers=headers)
    assert expired.status_code == 401
    assert expired.json()["error"] == "not_authenticated"
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert (
        client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {forged}"}).status_code
        == 401
    )
