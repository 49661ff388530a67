"""How products_service mounts the dashboard, without a server (what the live servers serve is
checked in test_dashboard.py, which has them)."""

from fastapi.testclient import TestClient

from common.settings import ProductsSettings
from products_service.main import create_app
from tests.conftest import TEST_JWT_SECRET


def test_the_dashboard_can_be_turned_off() -> None:
    settings = ProductsSettings(
        environment="test",
        database_url="sqlite://",
        jwt_secret=TEST_JWT_SECRET,
        dashboard_enabled=False,
    )
    paths = {getattr(route, "path", "") for route in create_app(settings).routes}
    assert not any(path.startswith("/dashboard") for path in paths)
    enabled = create_app(settings.model_copy(update={"dashboard_enabled": True}))
    assert "/dashboard" in {getattr(route, "path", "") for route in enabled.routes}


def test_the_dashboards_files_are_not_rate_limited() -> None:
    """A page load fetches about twenty files before anyone can log in: they must not use up
    the anonymous budget that guards the API."""
    settings = ProductsSettings(
        environment="test",
        database_url="sqlite://",
        jwt_secret=TEST_JWT_SECRET,
        rate_limit_anonymous_per_minute=2,
    )
    client = TestClient(create_app(settings))  # no lifespan: static files need no database
    for _ in range(10):
        assert client.get("/dashboard/js/main.js").status_code == 200
    statuses = [client.get("/api/v1/auth/me").status_code for _ in range(3)]
    assert statuses == [401, 401, 429]


def test_only_the_pages_files_are_served_not_the_rest_of_the_folder() -> None:
    """dashboard/ also holds its lint tooling (package.json, node_modules once installed) and
    a README: none of that is the site's."""
    settings = ProductsSettings(
        environment="test", database_url="sqlite://", jwt_secret=TEST_JWT_SECRET
    )
    client = TestClient(create_app(settings))
    for path in ("/dashboard/", "/dashboard/index.html", "/dashboard/app.css",
                 "/dashboard/js/main.js", "/dashboard/vendor/chart.umd.js"):  # fmt: skip
        assert client.get(path).status_code == 200, path
    for path in ("/dashboard/package.json", "/dashboard/eslint.config.js",
                 "/dashboard/README.md", "/dashboard/node_modules/eslint/package.json",
                 "/dashboard/js/../package.json", "/dashboard/vendor/../README.md"):  # fmt: skip
        assert client.get(path).status_code == 404, path
