"""A dashboard on a configured origin may call both services from the browser; others not."""

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize("which", ["client", "sales_client"])
def test_preflight_allows_configured_origins_only(
    request: pytest.FixtureRequest, which: str, settings
) -> None:
    api: TestClient = request.getfixturevalue(which)
    allowed = settings.cors_origins[0]
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
    }
    ok = api.options("/api/v1/auth/login", headers={"Origin": allowed, **preflight})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == allowed
    assert "idempotency-key" in ok.headers["access-control-allow-headers"].lower()

    other = api.options(
        "/api/v1/auth/login", headers={"Origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in other.headers
