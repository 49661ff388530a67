"""Who may read /metrics: the holder of SHOP_METRICS_TOKEN when one is set; anyone in
development and test without one; no one in production without one; no one when it is
turned off."""

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from common.app import install_common
from common.settings import ProductsSettings

METRICS_TOKEN = "scrape-me-" + "s" * 30


def app_with(settings: ProductsSettings, **changes: Any) -> FastAPI:
    """An app with the suite's settings changed as given (and validated, as from the
    environment)."""
    app = FastAPI()
    install_common(app, ProductsSettings.model_validate({**settings.model_dump(), **changes}))
    return app


def test_with_a_token_only_its_bearer_reads_the_metrics(settings: ProductsSettings) -> None:
    app = app_with(settings, metrics_token=METRICS_TOKEN)
    with TestClient(app) as api:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token"},
            {"Authorization": f"Bearer {METRICS_TOKEN}x"},
            {"Authorization": f"Basic {METRICS_TOKEN}"},
        ):
            refused = api.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.json()["error"] == "not_authenticated"
            assert refused.headers["WWW-Authenticate"] == "Bearer"
            assert "http_requests_total" not in refused.text
        granted = api.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert granted.status_code == 200
        assert "http_requests_total" in granted.text


@pytest.mark.parametrize("environment", ["development", "test"])
def test_without_a_token_metrics_are_open_in_development_and_test(
    settings: ProductsSettings, environment: str
) -> None:
    with TestClient(app_with(settings, environment=environment)) as api:
        answer = api.get("/metrics")
        assert answer.status_code == 200 and "http_requests_total" in answer.text


def test_without_a_token_production_refuses_the_metrics(settings: ProductsSettings) -> None:
    with TestClient(app_with(settings, environment="production")) as api:
        refused = api.get("/metrics")
        assert refused.status_code == 403
        assert refused.json()["error"] == "forbidden"
        assert "SHOP_METRICS_TOKEN" in refused.json()["detail"]
    with TestClient(
        app_with(settings, environment="production", metrics_token=METRICS_TOKEN)
    ) as api:
        granted = api.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert granted.status_code == 200


def test_metrics_can_be_turned_off(settings: ProductsSettings) -> None:
    app = app_with(settings, metrics_enabled=False)
    with TestClient(app) as api:
        assert api.get("/metrics").status_code == 404
        assert "/metrics" not in api.get("/openapi.json").json()["paths"]
        assert api.get("/health").status_code == 200
