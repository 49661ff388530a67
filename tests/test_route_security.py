"""Every API route refuses a missing token (401) and a viewer on a write (403).

The routes are read from the app's own OpenAPI document, so a new route is covered the day
it is added.
"""

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

# Login, and renewing a session (its refresh token is the credential, in the body).
PUBLIC = {
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
}
ANY_USER_WRITES = {
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/password"),
    ("POST", "/api/v1/events/stream-token"),  # any signed-in user may follow the events
}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def api_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every operation the app documents under /api/."""
    return [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/api/")
        for method in operations
    ]


def concrete(path: str) -> str:
    """Fill path parameters with a plausible id so routing reaches the handler."""
    return re.sub(r"\{[^}]+\}", "1", path)


SERVICES = ["products", "sales"]


@pytest.fixture(params=SERVICES)
def service(request: pytest.FixtureRequest) -> tuple[Any, TestClient]:
    """(app, client) of each service in turn."""
    if request.param == "products":
        return request.getfixturevalue("products_app"), request.getfixturevalue("client")
    return request.getfixturevalue("sales_app"), request.getfixturevalue("sales_client")


def test_each_app_has_routes_to_check(service: tuple[Any, TestClient]) -> None:
    app, _ = service
    assert len(api_routes(app)) >= 5


@pytest.mark.parametrize("role_headers", ["none", "garbage"])
def test_every_route_needs_a_token(service: tuple[Any, TestClient], role_headers: str) -> None:
    app, client = service
    headers = {} if role_headers == "none" else {"Authorization": "Bearer not.a.token"}
    failures = []
    for method, path in api_routes(app):
        if (method, path) in PUBLIC:
            continue
        response = client.request(method, concrete(path), headers=headers, json={})
        if response.status_code != 401 or response.json().get("error") != "not_authenticated":
            failures.append((method, path, response.status_code))
    assert failures == []


def test_viewer_cannot_write(service: tuple[Any, TestClient], viewer_headers: dict) -> None:
    app, client = service
    failures = []
    for method, path in api_routes(app):
        if method not in WRITE_METHODS or (method, path) in PUBLIC | ANY_USER_WRITES:
            continue
        response = client.request(method, concrete(path), headers=viewer_headers, json={})
        if response.status_code != 403 or response.json().get("error") != "forbidden":
            failures.append((method, path, response.status_code))
    assert failures == []


def test_only_admin_manages_users(
    client: TestClient, products_app: Any, manager_headers: dict
) -> None:
    user_routes = [(m, p) for m, p in api_routes(products_app) if p.startswith("/api/v1/users")]
    assert user_routes
    for method, path in user_routes:
        response = client.request(method, concrete(path), headers=manager_headers, json={})
        assert response.status_code == 403, (method, path)


def test_swagger_and_openapi_are_public(service: tuple[Any, TestClient]) -> None:
    _, client = service
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"]
