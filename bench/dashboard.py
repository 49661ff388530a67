"""How fast the dashboard is on the demo data: the overview's first meaningful paint, and
every screen's API calls, measured by the browser itself.

Creates a fresh database with the demo data (``--size`` sales over 18 months, as `make run`
loads), starts products_service (serving the dashboard) and sales_service as
bench/sale_path.py does, and drives Debian's chromium headless with Playwright:

1. ``--rounds`` cold loads of the overview (a new browser context each: empty cache, a
   logged-in session) and as many warm reloads. For each, from the page's own clock
   (``performance.now()``, from the start of navigation): first contentful paint, and the
   first meaningful paint, the first animation frame in which the KPIs and the revenue chart
   are on screen;
2. each screen opened ``--rounds`` times; every API call it made is timed from the
   browser's Resource Timing entries (``duration``: from the fetch's start to its last
   byte, CORS preflight and queueing behind the page's other calls included; the finer
   marks are hidden from the page for cross-origin calls without Timing-Allow-Origin).

It prints p50 / p95 / max per measure and per screen, against the targets (first
meaningful paint <= 1.5 s, each screen's API calls <= 200 ms at p95), and drops the database.

    .venv/bin/python bench/dashboard.py                 # 20,000 sales, 10 rounds
    .venv/bin/python bench/dashboard.py --size 5000 --rounds 5
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.sale_path import ADMIN_PASSWORD, JWT_SECRET, Service, service_env  # noqa: E402
from common import migrate  # noqa: E402
from common.settings import CommonSettings  # noqa: E402
from demo.generate import generate  # noqa: E402

ADMIN_EMAIL = "bench-admin@example.com"
SESSION_KEY = "shop.dashboard.session"
PAINT_TARGET_MS = 1500
API_TARGET_MS = 200
# Each screen, and what is on it once it has loaded.
SCREENS = {
    "overview": "[data-testid=kpi-revenue]",
    "compare": "[data-testid=compare-overall]",
    "inventory": "[data-testid=low-stock]",
    "sales": "[data-testid=sales]",
    "catalog": "[data-testid=products]",
}
MEANINGFUL = """() => {
  const ready = document.querySelector("[data-testid=kpi-revenue]")
    && document.querySelector(".chart-box canvas");
  return ready ? performance.now() : false;
}"""
FIRST_PAINT = """() => {
  const paint = performance.getEntriesByName("first-contentful-paint")[0];
  return paint ? paint.startTime : null;
}"""
API_TIMINGS = """() => performance.getEntriesByType("resource")
  .filter((e) => e.name.includes("/api/v1/"))
  .map((e) => ({ url: e.name, ms: e.duration }))"""


def quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered):7.0f} {p95:7.0f} {ordered[-1]:7.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("SHOP_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306"),
    )
    parser.add_argument("--size", type=int, default=20_000, help="demo sales")
    parser.add_argument("--rounds", type=int, default=10, help="loads per measure")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    log_dir = REPO_ROOT / "var"
    log_dir.mkdir(exist_ok=True)
    with migrate.scratch_database(args.mysql_url, "shop_bench_dash") as url:
        started = time.perf_counter()
        generate(
            database_url=url,
            size=args.size,
            end=datetime.now(UTC),
            settings=CommonSettings(
                environment="test",
                jwt_secret=JWT_SECRET,
                first_admin_email=ADMIN_EMAIL,
                first_admin_password=ADMIN_PASSWORD,
            ),
        )
        print(f"demo data: {args.size:,} sales in {time.perf_counter() - started:.1f} s")
        products = Service("products_service.main:app", {}, 1, log_dir / "bench-products.log")
        sales = Service("sales_service.main:app", {}, 1, log_dir / "bench-sales.log")
        products.env = service_env(url, SHOP_DASHBOARD_SALES_URL=sales.url)
        sales.env = service_env(
            url,
            SHOP_PRODUCTS_SERVICE_URL=products.url,
            SHOP_CORS_ORIGINS=json.dumps([products.url]),
        )
        try:
            products.start()
            sales.start()
            login = httpx.post(
                f"{products.url}/api/v1/auth/login",
                json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
            ).json()
            session = json.dumps({k: login[k] for k in ("access_token", "refresh_token", "user")})
            dashboard = f"{products.url}/dashboard/"
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=args.chromium,
                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
                    headless=True,
                )
                measure(browser, dashboard, session, args.rounds)
                browser.close()
        finally:
            sales.stop()
            products.stop()
    return 0


def logged_in(browser: Any, session: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(f"sessionStorage.setItem({SESSION_KEY!r}, {json.dumps(session)})")
    return context


def measure(browser: Any, dashboard: str, session: str, rounds: int) -> None:
    paints: dict[str, list[float]] = {"cold": [], "warm": []}
    meaningful: dict[str, list[float]] = {"cold": [], "warm": []}
    warm_context = logged_in(browser, session)
    warm = warm_context.new_page()
    warm.goto(f"{dashboard}#/overview")
    warm.wait_for_function(MEANINGFUL, polling="raf")
    for _ in range(rounds):
        context = logged_in(browser, session)
        page = context.new_page()
        page.goto(f"{dashboard}#/overview")
        meaningful["cold"].append(page.wait_for_function(MEANINGFUL, polling="raf").json_value())
        paints["cold"].append(page.evaluate(FIRST_PAINT) or 0.0)
        context.close()
        warm.reload()
        meaningful["warm"].append(warm.wait_for_function(MEANINGFUL, polling="raf").json_value())
        paints["warm"].append(warm.evaluate(FIRST_PAINT) or 0.0)
    print(f"\noverview, ms from navigation ({rounds} loads)      p50     p95     max")
    for kind in ("cold", "warm"):
        print(f"  first contentful paint, {kind:<21} {quantiles(paints[kind])}")
        print(f"  first meaningful paint, {kind:<21} {quantiles(meaningful[kind])}")
    worst = max(max(meaningful["cold"]), max(meaningful["warm"]))
    verdict = "met" if worst <= PAINT_TARGET_MS else "MISSED"
    print(f"  target: first meaningful paint <= {PAINT_TARGET_MS} ms: {verdict}")

    print(f"\nAPI calls per screen, ms ({rounds} visits)  calls     p50     p95     max")
    missed = []
    for screen, ready in SCREENS.items():
        timings: list[float] = []
        for _ in range(rounds):
            warm.goto("about:blank")
            warm.goto(f"{dashboard}#/{screen}")
            warm.wait_for_selector(ready)
            warm.wait_for_function("!document.querySelector('.state.loading')")
            timings.extend(entry["ms"] for entry in warm.evaluate(API_TIMINGS))
        print(f"  {screen:<36} {len(timings):5} {quantiles(timings)}")
        ordered = sorted(timings)
        if ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] > API_TARGET_MS:
            missed.append(screen)
    print(
        f"  target: p95 <= {API_TARGET_MS} ms per screen: "
        + ("met" if not missed else f"MISSED on {', '.join(missed)}")
    )
    warm_context.close()


if __name__ == "__main__":
    sys.exit(main())
