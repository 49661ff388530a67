"""Every answer carries the security headers: JSON, errors, 404s, preflights, a crash's 500
and the docs pages, whose policy lets exactly Swagger UI and ReDoc run."""

import base64
import hashlib
import re
from collections.abc import Mapping

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from common.app import install_common
from common.settings import ProductsSettings

EVERY_ANSWER = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}
API_POLICY = "default-src 'none'"


def assert_secured(headers: Mapping[str, str], policy_start: str = API_POLICY) -> None:
    for name, value in EVERY_ANSWER.items():
        assert headers[name] == value, name
    assert "camera=()" in headers["permissions-policy"]
    policy = headers["content-security-policy"]
    assert policy.startswith(policy_start) and "frame-ancestors 'none'" in policy


@pytest.mark.parametrize("which", ["client", "sales_client"])
def test_api_answers_errors_404s_and_preflights_carry_the_headers(
    request: pytest.FixtureRequest, which: str, settings: ProductsSettings
) -> None:
    api: TestClient = request.getfixturevalue(which)
    preflight = {
        "Origin": settings.cors_origins[0],
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    answers = {
        "ok": api.get("/health"),
        "unauthenticated": api.get("/api/v1/auth/me"),
        "not found": api.get("/no/such/page"),
        "method not allowed": api.delete("/health"),
        "invalid": api.post("/api/v1/auth/login", json={}),
        "preflight": api.options("/api/v1/auth/login", headers=preflight),
        "openapi": api.get("/openapi.json"),
        "metrics": api.get("/metrics"),
    }
    assert answers["not found"].status_code == 404
    assert answers["preflight"].status_code == 200
    for what, answer in answers.items():
        assert "strict-transport-security" not in answer.headers, what
        assert_secured(answer.headers)


def test_the_500_of_an_unhandled_exception_carries_them_too(settings: ProductsSettings) -> None:
    app = FastAPI()
    install_common(app, settings)

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as api:
        answer = api.get("/crash")
    assert answer.status_code == 500
    assert_secured(answer.headers)


def test_hsts_only_when_the_deployment_says_it_is_behind_https(
    settings: ProductsSettings,
) -> None:
    app = FastAPI()
    install_common(app, settings.model_copy(update={"behind_https": True}))
    with TestClient(app) as api:
        for answer in (api.get("/health"), api.get("/nowhere"), api.get("/docs")):
            assert answer.headers["strict-transport-security"] == "max-age=31536000"


def _inline_script_hashes(html: str) -> set[str]:
    return {
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    }


def _directives(policy: str) -> dict[str, list[str]]:
    return {
        name: values
        for name, *values in (part.split() for part in policy.split(";") if part.strip())
    }


@pytest.mark.parametrize("which", ["client", "sales_client"])
def test_swagger_page_may_load_its_cdn_and_run_only_its_own_inline_script(
    request: pytest.FixtureRequest, which: str
) -> None:
    api: TestClient = request.getfixturevalue(which)
    page = api.get("/docs")
    assert page.status_code == 200
    assert_secured(page.headers, policy_start="default-src 'none'")
    policy = _directives(page.headers["content-security-policy"])
    cdn = "https://cdn.jsdelivr.net"
    # What the page loads: the Swagger UI bundle and stylesheet, the favicon, the spec.
    assert f'src="{cdn}/npm/swagger-ui-dist' in page.text and cdn in policy["script-src"]
    assert cdn in policy["style-src"]
    assert "https://fastapi.tiangolo.com" in policy["img-src"]
    assert policy["connect-src"] == ["'self'"]
    # The start-up script is allowed by its hash, and no other inline script is.
    hashes = _inline_script_hashes(page.text)
    assert len(hashes) == 1 and hashes <= set(policy["script-src"])
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]

    redirect = api.get("/docs/oauth2-redirect")
    assert _inline_script_hashes(redirect.text) <= set(
        _directives(redirect.headers["content-security-policy"])["script-src"]
    )


def test_redoc_page_may_load_its_cdn_fonts_and_search_worker(client: TestClient) -> None:
    page = client.get("/redoc")
    assert page.status_code == 200
    assert_secured(page.headers, policy_start="default-src 'none'")
    policy = _directives(page.headers["content-security-policy"])
    assert "https://cdn.jsdelivr.net/npm/redoc" in page.text
    assert "https://cdn.jsdelivr.net" in policy["script-src"]
    assert "https://fonts.googleapis.com" in policy["style-src"]
    assert policy["font-src"] == ["https://fonts.gstatic.com"]
    assert policy["worker-src"] == ["blob:"]
    # Nowhere but the docs pages does a policy allow anything.
    assert client.get("/openapi.json").headers["content-security-policy"].startswith(API_POLICY)
