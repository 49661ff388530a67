"""The dashboard in a real browser: Debian's chromium driven headless by Playwright, against
both services running as real uvicorn processes on a database of this package's own, loaded
with the demo data.

One browser and one pair of servers serve every test here (each test gets a fresh browser
context, so a fresh session). The servers are configured as `make run` configures them: the
dashboard served by products_service, sales_service called cross-origin from it (CORS).
Screenshots of each screen go to ``$SHOP_SCREENSHOT_DIR`` (default ``var/screenshots``).
"""

import json
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from common import migrate
from common.settings import CommonSettings
from demo.generate import generate
from tests.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    PASSWORD,
    REPO_ROOT,
    TEST_JWT_SECRET,
    LiveServer,
)

API = "/api/v1"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
MANAGER_EMAIL = "manager@example.com"
VIEWER_EMAIL = "viewer@example.com"
SCREENSHOTS = Path(os.environ.get("SHOP_SCREENSHOT_DIR", REPO_ROOT / "var" / "screenshots"))


def chromium_path() -> str:
    """Debian's chromium (Playwright's own browser download does not work here)."""
    found = os.environ.get("SHOP_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        pytest.fail(
            "chromium is missing: `apt-get install -y chromium` (scripts/test.sh installs it "
            "as root), or set SHOP_TEST_CHROMIUM to a Chromium binary"
        )
    return found


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    env.update(
        SHOP_ENVIRONMENT="test",
        SHOP_DATABASE_URL=database_url,
        SHOP_JWT_SECRET=TEST_JWT_SECRET,
        SHOP_FIRST_ADMIN_EMAIL=ADMIN_EMAIL,
        SHOP_FIRST_ADMIN_PASSWORD=ADMIN_PASSWORD,
        SHOP_RATE_LIMIT_PER_MINUTE="0",
        SHOP_RATE_LIMIT_ANONYMOUS_PER_MINUTE="0",
        SHOP_STORE_TIMEZONE="UTC",
        SHOP_ALERT_POLL_SECONDS="0.2",
        SHOP_WEBHOOKS_ENABLED="false",
        PYTHONPATH=str(REPO_ROOT),
    )
    env.update(extra)
    return env


@dataclass
class Shop:
    """Both services, the dashboard's address and an admin's API clients."""

    products: LiveServer
    sales: LiveServer
    products_api: httpx.Client
    sales_api: httpx.Client

    @property
    def dashboard_url(self) -> str:
        return f"{self.products.url}/dashboard/"


@pytest.fixture(scope="session")
def shop() -> Iterator[Shop]:
    """The demo shop (three months of sales up to now) on both services, plus a manager and
    a viewer."""
    server_url = os.environ.get("SHOP_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with migrate.scratch_database(server_url, f"shop_test_{worker}_dash") as url:
        generate(
            database_url=url,
            size=1500,
            months=3,
            seed=13,
            end=datetime.now(UTC),
            settings=CommonSettings(
                environment="test",
                jwt_secret=TEST_JWT_SECRET,
                first_admin_email=ADMIN_EMAIL,
                first_admin_password=ADMIN_PASSWORD,
                store_timezone="UTC",
            ),
        )
        products = LiveServer("products_service.main:app", {})
        sales = LiveServer("sales_service.main:app", {})
        products.env = _env(url, SHOP_DASHBOARD_SALES_URL=sales.url)
        sales.env = _env(
            url,
            SHOP_PRODUCTS_SERVICE_URL=products.url,
            SHOP_CORS_ORIGINS=json.dumps([products.url]),
            SHOP_ROLLUP_POLL_SECONDS="0.5",
        )
        try:
            # Side by side: each spends seconds importing before it answers.
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(LiveServer.start, (products, sales)))
            token = httpx.post(
                f"{products.url}{API}/auth/login",
                json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            with (
                httpx.Client(base_url=f"{products.url}{API}", headers=headers) as products_api,
                httpx.Client(base_url=f"{sales.url}{API}", headers=headers) as sales_api,
            ):
                for email, role in ((MANAGER_EMAIL, "manager"), (VIEWER_EMAIL, "viewer")):
                    made = products_api.post(
                        "/users", json={"email": email, "password": PASSWORD, "role": role}
                    )
                    assert made.status_code == 201, made.text
                yield Shop(products, sales, products_api, sales_api)
        finally:
            sales.stop()
            products.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Per module, not per session: Playwright's sync API keeps an event loop running in this
    # thread while it is open, and a later test file on the same worker that calls
    # asyncio.run() would fail (CI saw tests/common/test_observability.py do so).
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@dataclass
class Dashboard:
    """One browser tab on the dashboard, with what it logged as errors."""

    page: Page
    url: str
    errors: list[str] = field(default_factory=list)

    def goto(self, route: str) -> None:
        """Open ``#/route`` (e.g. "sales?status=refunded")."""
        self.page.goto(f"{self.url}#/{route}")

    def login(self, email: str, password: str = PASSWORD) -> None:
        self.page.goto(self.url)
        self.page.get_by_label("Email").fill(email)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Log in").click()
        self.page.get_by_role("button", name="Log out").wait_for()

    def settled(self) -> None:
        """Wait until no loading indicator is left. (A locator, not wait_for_function: a
        string predicate is polled through eval, which the dashboard's CSP refuses whenever
        it is not true at once.)"""
        loading = self.page.locator(".state.loading, [aria-busy=true]")
        expect(loading).to_have_count(0, timeout=10_000)

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def dashboard(browser: Browser, shop: Shop) -> Iterator[Dashboard]:
    context = browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(10_000)
    opened = Dashboard(page, shop.dashboard_url)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            opened.errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: opened.errors.append(str(error)))
    yield opened
    context.close()


def wait_until(check: Any, within: float = 10.0) -> Any:
    """``check()``'s first truthy answer within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)
