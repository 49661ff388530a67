"""The admin dashboard end to end: a real browser on both real services with the demo data.

Each test logs in through the login screen and works the screens as a manager would, then
checks what the browser shows against what the API says.
"""

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
from playwright.sync_api import Locator, Route, expect

from products_service.dashboard import dashboard_content_security_policy
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.dashboard.conftest import (
    MANAGER_EMAIL,
    PHONE,
    VIEWER_EMAIL,
    Dashboard,
    Shop,
    wait_until,
)

MINUS = "\u2212"  # the dashboard writes a negative change with a real minus sign
WRITE_CONTROLS = re.compile(
    r"^(Register a product|Record a sale|Edit|Archive|Restore|Receive|Adjust|Count|Transfer|"
    r"Refund everything|Refund these units|Cancel sale)$"
)


def money(value: str) -> str:
    """How the dashboard writes a decimal string: 1234.5 -> 1,234.50."""
    return f"{Decimal(value):,.2f}"


def choose(select: Locator, text: str) -> None:
    """Pick the option of a <select> whose label contains ``text``."""
    value = select.locator("option", has_text=text).first.get_attribute("value")
    assert value is not None, f"no option {text!r}"
    select.select_option(value=value)


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def days_ago(days: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=days)).isoformat()


def new_product(shop: Shop, *, stock: int, threshold: int, **fields: Any) -> dict[str, Any]:
    """A product with ``stock`` units in the main warehouse, made through the API."""
    sku = f"DASH-{uuid.uuid4().hex[:8].upper()}"
    made = shop.products_api.post(
        "/products",
        json={
            "sku": sku,
            "name": f"Test lamp {sku}",
            "price": "20.00",
            "cost_price": "8.00",
            "low_stock_threshold": threshold,
            **fields,
        },
    )
    assert made.status_code == 201, made.text
    product: dict[str, Any] = made.json()
    main = next(
        w for w in shop.products_api.get("/warehouses").json()["items"] if w["code"] == "MAIN"
    )
    received = shop.products_api.post(
        "/inventory/receipts",
        json={"product_id": product["id"], "warehouse_id": main["id"], "quantity": stock},
    )
    assert received.status_code == 201, received.text
    return product


def available(shop: Shop, product_id: int) -> int:
    return int(shop.products_api.get(f"/products/{product_id}").json()["totals"]["available"])


def test_the_overview_shows_the_same_totals_as_the_summary_report(
    dashboard: Dashboard, shop: Shop
) -> None:
    page = dashboard.page
    # Keyboard only: the login form has focus, Tab moves to the password, Enter submits.
    page.goto(dashboard.url)
    expect(page.get_by_label("Email")).to_be_focused()
    page.keyboard.type(ADMIN_EMAIL)
    page.keyboard.press("Tab")
    page.keyboard.type(ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("kpi-revenue")).to_be_visible()

    # The default range: the last 30 days in the store's time zone.
    summary = shop.sales_api.get(
        "/reports/summary", params={"from": days_ago(29), "to": today(), "timezone": "UTC"}
    ).json()
    kpis = summary["kpis"]
    assert kpis["orders"]["current"] > 0, "the demo data has sales in the last 30 days"
    expected = {
        "revenue": money(kpis["revenue"]["current"]),
        "orders": f"{kpis['orders']['current']:,}",
        "units": f"{kpis['units']['current']:,}",
        "aov": money(kpis["average_order_value"]["current"]),
        "margin": money(kpis["margin"]["current"]),
    }
    for name, value in expected.items():
        card = page.get_by_test_id(f"kpi-{name}")
        expect(card.locator(".kpi-value")).to_have_text(value)
        expect(card).to_contain_text("vs previous period")
        expect(card).to_contain_text("vs last year")
    change = Decimal(kpis["revenue"]["percent_change"])
    shown = abs(change).quantize(Decimal("0.1"), ROUND_HALF_UP)
    expect(page.get_by_test_id("kpi-revenue")).to_contain_text(
        f"{'+' if change > 0 else MINUS}{shown}% vs previous period"
    )
    expect(page.get_by_role("heading", name="Top products")).to_be_visible()
    # The period line names the summary's base period; the top tables list breakdown groups.
    expect(page.locator(".period-line")).to_contain_text(
        f"against {summary['base']['from']} to {summary['base']['to']}"
    )
    top = shop.sales_api.get(
        "/reports/breakdown",
        params={"from": days_ago(29), "to": today(), "timezone": "UTC", "by": "product",
                "limit": 5, "sort": "-revenue"},
    ).json()["groups"]  # fmt: skip
    products = page.get_by_role("region", name="Top products").locator("tbody tr")
    expect(products).to_have_count(len(top))
    expect(products.first.locator("th")).to_have_text(f"{top[0]['name']} ({top[0]['sku']})")
    dashboard.settled()
    dashboard.shot("overview")
    assert dashboard.errors == []


def test_switching_the_time_zone_moves_the_buckets(dashboard: Dashboard, shop: Shop) -> None:
    dashboard.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    start, end = days_ago(6), today()
    dashboard.goto(f"overview?range=custom&from={start}&to={end}&tz=UTC&period=day")
    page = dashboard.page
    buckets = page.get_by_test_id("revenue-buckets").locator("tbody tr")
    expect(buckets).to_have_count(7)

    def read() -> list[tuple[str, str, str]]:
        rows = []
        for row in buckets.all():
            label, starts, revenue = (
                c.text_content() or "" for c in row.locator("th, td").all()[:3]
            )
            rows.append((label, starts, revenue))
        return rows

    in_utc = read()
    assert all(starts.endswith(("Z", "+00:00")) for _, starts, _ in in_utc)

    zone = page.get_by_label("Time zone")
    zone.fill("Pacific/Auckland")
    zone.press("Enter")
    expect(page.get_by_role("heading", name="Revenue by day (Pacific/Auckland)")).to_be_visible()
    expect(buckets).to_have_count(7)
    in_auckland = read()
    assert [label for label, _, _ in in_auckland] == [label for label, _, _ in in_utc]
    # The same calendar days start 12 or 13 hours earlier (New Zealand time)...
    for label, starts, _ in in_auckland:
        midnight = datetime.fromisoformat(label).replace(tzinfo=ZoneInfo("Pacific/Auckland"))
        assert datetime.fromisoformat(starts) == midnight, (label, starts)
        assert starts.endswith(("+12:00", "+13:00"))
    # ...so they hold other sales: the figures are the API's for that zone, not UTC's.
    series = shop.sales_api.get(
        "/reports/revenue",
        params={"from": start, "to": end, "timezone": "Pacific/Auckland", "period": "day"},
    ).json()
    assert [r for _, _, r in in_auckland] == [money(b["revenue"]) for b in series["buckets"]]
    assert [r for _, _, r in in_auckland] != [r for _, _, r in in_utc]
    assert dashboard.errors == []


def test_a_product_registered_with_opening_stock_is_found_in_the_catalog_edited_and_archived(
    dashboard: Dashboard, shop: Shop
) -> None:
    dashboard.login(MANAGER_EMAIL)
    dashboard.goto("catalog")
    page = dashboard.page
    page.get_by_role("link", name="Register a product").click()
    sku = f"NEW-{uuid.uuid4().hex[:6].upper()}"
    page.get_by_label("SKU").fill(sku)
    page.get_by_label("Name", exact=True).fill(f"Desk lamp {sku}")
    choose(page.get_by_label("Category"), "Smart Home")
    page.get_by_label("Price", exact=True).fill("24.90")
    page.get_by_label("Cost price").fill("9.80")
    page.get_by_label("Low-stock threshold").fill("4")
    page.get_by_label("Main warehouse (MAIN)").fill("7")
    page.get_by_label("East fulfilment centre (EAST)").fill("5")
    page.get_by_role("button", name="Register product").click()

    expect(page).to_have_url(re.compile(r"#/catalog/\d+$"))
    expect(page.get_by_role("heading", name=f"Desk lamp {sku}")).to_be_visible()
    expect(page.get_by_test_id("available")).to_have_text("12")
    product_id = int(page.url.rsplit("/", 1)[1])
    detail = shop.products_api.get(f"/products/{product_id}").json()
    assert detail["category"]["name"] == "Smart Home"
    assert {s["warehouse_code"]: s["on_hand"] for s in detail["stock"] if s["on_hand"]} == {
        "MAIN": 7,
        "EAST": 5,
    }
    dashboard.shot("catalog-product")

    dashboard.goto("catalog")
    page.get_by_label("Search").fill(sku)
    page.get_by_label("Search").press("Enter")
    rows = page.get_by_test_id("products").locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(sku)
    expect(rows.first).to_contain_text("24.90")
    expect(rows.first).to_contain_text("12")
    dashboard.shot("catalog")

    # Edit its price, then archive it: it leaves the catalog unless archived ones are asked for.
    rows.first.get_by_role("link", name=sku).click()
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Price", exact=True).fill("26.00")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_test_id("product-facts")).to_contain_text("26.00")
    page.get_by_role("button", name="Archive").click()
    page.get_by_role("dialog").get_by_role("button", name="Archive").click()
    expect(page.get_by_role("button", name="Restore")).to_be_visible()
    assert shop.products_api.get(f"/products/{product_id}").json()["archived_at"] is not None
    dashboard.goto(f"catalog?q={sku}")
    expect(page.get_by_test_id("products")).to_have_count(0)
    page.get_by_label("Include archived").check()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("archived")
    # The status filter finds it as archived; edited meanwhile it offers no status to change,
    # and restored it is active again.
    dashboard.goto(f"catalog?q={sku}&status=archived")
    expect(rows).to_have_count(1)
    rows.first.get_by_role("link", name=sku).click()
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Status")).to_have_count(0)
    page.get_by_label("Price", exact=True).fill("27.00")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_test_id("product-facts")).to_contain_text("27.00")
    assert shop.products_api.get(f"/products/{product_id}").json()["status"] == "archived"
    page.get_by_role("button", name="Restore").click()
    expect(page.get_by_role("button", name="Archive")).to_be_visible()
    assert shop.products_api.get(f"/products/{product_id}").json()["status"] == "active"
    assert dashboard.errors == []


def test_recording_a_sale_lowers_the_stock_and_refunds_and_cancelling_restore_it(
    dashboard: Dashboard, shop: Shop
) -> None:
    shelf = shop.products_api.post(
        "/categories", json={"name": f"Desk lamps {uuid.uuid4().hex[:6]}"}
    )
    assert shelf.status_code == 201, shelf.text
    product = new_product(shop, stock=10, threshold=2, category_id=shelf.json()["id"])
    dashboard.login(MANAGER_EMAIL)
    dashboard.goto("sales")
    page = dashboard.page
    page.get_by_role("link", name="Record a sale").click()
    page.get_by_label("Channel").select_option(label="Web store")
    choose(page.get_by_label("Product"), product["sku"])
    page.get_by_label("Quantity").fill("3")
    page.get_by_role("button", name="Record sale").click()

    expect(page).to_have_url(re.compile(r"#/sales/\d+$"))
    heading = page.get_by_role("heading", name=re.compile(r"^Sale "))
    expect(heading).to_be_visible()
    number = (heading.text_content() or "").removeprefix("Sale ")
    expect(page.get_by_test_id("sale-lines")).to_contain_text(product["sku"])
    expect(page.get_by_test_id("sale-lines")).to_contain_text(shelf.json()["name"])
    assert available(shop, product["id"]) == 7
    dashboard.shot("sale")

    dashboard.goto(f"catalog/{product['id']}")
    expect(page.get_by_test_id("available")).to_have_text("7")

    # The list finds it, and the export holds it.
    dashboard.goto(f"sales?product_id={product['id']}")
    rows = page.get_by_test_id("sales").locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(number)
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    csv = download.value.path().read_text()
    assert number in csv and product["sku"] in csv
    dashboard.shot("sales")

    # One unit comes back, then every other; a second sale is cancelled: all units are back.
    status = page.locator(".toolbar .badge")
    rows.first.get_by_role("link", name=number).click()
    page.get_by_label("Refund units of line 1").fill("1")
    page.get_by_label("Reason").fill("arrived scratched")
    page.get_by_role("button", name="Refund these units").click()
    expect(status).to_have_text("partially refunded")
    assert wait_until(lambda: available(shop, product["id"]) == 8)
    page.get_by_role("button", name="Refund everything").click()
    page.get_by_role("dialog").get_by_role("button", name="Refund everything").click()
    expect(status).to_have_text("refunded")
    assert wait_until(lambda: available(shop, product["id"]) == 10)

    other = shop.sales_api.post(
        "/sales",
        json={"channel_code": "retail", "lines": [{"product_id": product["id"], "quantity": 4}]},
    ).json()
    dashboard.goto(f"sales/{other['id']}")
    page.get_by_role("button", name="Cancel sale").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel sale").click()
    expect(status).to_have_text("cancelled")
    assert wait_until(lambda: available(shop, product["id"]) == 10)
    assert dashboard.errors == []


def test_the_sales_list_searches_a_sale_number_and_filters_by_several_categories(
    dashboard: Dashboard, shop: Shop
) -> None:
    sale = shop.sales_api.get("/sales", params={"limit": 1, "offset": 5}).json()["items"][0]
    ids = {c["name"]: c["id"] for c in shop.products_api.get("/categories").json()["items"]}
    chosen = [ids["Audio"], ids["Board Games"]]
    dashboard.login(VIEWER_EMAIL)
    dashboard.goto("sales")
    page = dashboard.page
    rows = page.get_by_test_id("sales").locator("tbody tr")
    expect(rows).to_have_count(25)

    # Search (Enter submits): the sale number finds that one sale.
    page.get_by_label("Search").fill(sale["number"])
    page.get_by_label("Search").press("Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(sale["number"])

    # Two categories, by keyboard, applied with the search box emptied: sales with a line in
    # either, the same as the API lists, page after page and in the export.
    page.get_by_label("Search").fill("")
    categories = page.get_by_role("group", name="Sales with a line in any of these")
    expect(categories).to_be_hidden()
    page.locator("summary", has_text="All").focus()
    page.keyboard.press("Enter")
    for name in ("Audio", "Board Games"):
        categories.get_by_role("checkbox", name=re.compile(rf"^\s*{name}$")).check()
    dashboard.shot("sales-categories")
    categories.get_by_role("button", name="Apply").click()
    expect(page.locator("summary")).to_have_text("2 chosen")
    expect(page.locator("summary")).to_be_focused()
    listed = shop.sales_api.get("/sales", params={"category_id": chosen, "limit": 25}).json()
    assert 25 < listed["total"] < shop.sales_api.get("/sales").json()["total"]
    numbers = rows.locator("th")
    expect(numbers).to_have_text([s["number"] for s in listed["items"]])
    assert "q=" not in page.url and page.url.count("category_id=") == 2

    page.get_by_role("button", name="Next").click()
    expect(page).to_have_url(re.compile(r"offset=25"))
    second = shop.sales_api.get(
        "/sales", params={"category_id": chosen, "limit": 25, "offset": 25}
    ).json()
    expect(numbers).to_have_text([s["number"] for s in second["items"]])
    with page.expect_request(re.compile(r"/sales/export\.csv\?")) as request:
        page.get_by_role("button", name="Export CSV").click()
    query = parse_qs(urlsplit(request.value.url).query)
    assert sorted(map(int, query["category_id"])) == sorted(chosen)
    assert dashboard.errors == []


def test_the_low_stock_table_lists_a_product_pushed_below_its_threshold(
    dashboard: Dashboard, shop: Shop
) -> None:
    product = new_product(shop, stock=10, threshold=5)
    sold = shop.sales_api.post(
        "/sales",
        json={"channel_code": "retail", "lines": [{"product_id": product["id"], "quantity": 1}]},
    )
    assert sold.status_code == 201, sold.text
    assert wait_until(lambda: available(shop, product["id"]) == 9)
    dashboard.login(MANAGER_EMAIL)
    dashboard.goto("inventory?include_ok=")
    page = dashboard.page
    low = page.get_by_test_id("low-stock")
    expect(low).to_be_visible()
    expect(low).not_to_contain_text(product["sku"])

    dashboard.goto(f"catalog/{product['id']}")
    page.get_by_role("button", name="Adjust").click()
    page.get_by_label("Warehouse", exact=True).select_option(label="Main warehouse (MAIN)")
    page.get_by_label("Change (negative removes)").fill("-7")
    page.get_by_label("Reason (required)").fill("water damage")
    page.get_by_role("form", name="Adjust stock").get_by_role("button", name="Adjust").click()
    expect(page.get_by_test_id("available")).to_have_text("2")

    page.get_by_role("link", name="Inventory").click()
    row = page.get_by_test_id("low-stock").locator("tbody tr", has_text=product["sku"])
    expect(row).to_have_count(1)
    expect(row).to_contain_text("critical")  # 2 available, at most half the threshold of 5
    # Where the 2 are, and how long they last there: 2 x 28 days / 1 sold in the 28 days.
    split = row.get_by_role("table", name=f"{product['sku']} by warehouse")
    expect(split.get_by_role("columnheader")).to_have_text(
        ["Warehouse", "Available", "Days of cover", "Stock-out"]
    )
    main = split.get_by_role("row", name=re.compile(r"^MAIN\b"))
    stockout = (datetime.now(UTC).date() + timedelta(days=56)).isoformat()
    expect(main.get_by_role("cell")).to_have_text(["2", "56.00", stockout])
    dashboard.settled()
    dashboard.shot("inventory")

    row.get_by_role("link").click()
    ledger = page.get_by_test_id("ledger")
    expect(ledger.locator("tbody tr")).to_have_count(3)
    expect(ledger).to_contain_text("water damage")
    dashboard.settled()
    dashboard.shot("inventory-ledger")
    assert dashboard.errors == []


def test_a_viewer_sees_no_write_buttons(dashboard: Dashboard, shop: Shop) -> None:
    product = new_product(shop, stock=5, threshold=1)
    sale_id = shop.sales_api.get("/sales", params={"limit": 1}).json()["items"][0]["id"]
    dashboard.login(VIEWER_EMAIL)
    page = dashboard.page
    for route, ready in (
        ("catalog", "products"),
        (f"catalog/{product['id']}", "product-facts"),
        ("sales", "sales"),
        (f"sales/{sale_id}", "sale-lines"),
        ("inventory", "low-stock"),
        (f"inventory/product/{product['id']}", "ledger"),
    ):
        dashboard.goto(route)
        expect(page.get_by_test_id(ready)).to_be_visible()
        dashboard.settled()
        assert page.get_by_role("button", name=WRITE_CONTROLS).count() == 0, route
        assert page.get_by_role("link", name=WRITE_CONTROLS).count() == 0, route
    dashboard.goto("catalog/new")
    expect(page.get_by_role("alert")).to_contain_text("may not change the catalog")
    expect(page.get_by_label("SKU")).to_have_count(0)
    assert dashboard.errors == []


def test_an_ended_session_returns_to_login_and_back(dashboard: Dashboard, shop: Shop) -> None:
    dashboard.login(MANAGER_EMAIL)
    page = dashboard.page
    # The session ends on the server (as when it expires, or an admin revokes it): the
    # access token and its refresh token are refused from now on.
    token = page.evaluate(
        "JSON.parse(sessionStorage.getItem('shop.dashboard.session')).access_token"
    )
    ended = httpx.post(
        f"{shop.products.url}/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}
    )
    assert ended.status_code in (200, 204), ended.text
    dashboard.goto("sales")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    expect(page.get_by_text("Your session has expired").first).to_be_visible()
    page.get_by_label("Email").fill(MANAGER_EMAIL)
    page.get_by_label("Password").fill("correct-horse-battery")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"#/sales$"))
    expect(page.get_by_test_id("sales")).to_be_visible()


def test_a_refused_access_token_is_renewed_without_leaving_the_screen(
    dashboard: Dashboard,
) -> None:
    dashboard.login(MANAGER_EMAIL)
    page = dashboard.page
    refused: list[str] = []

    def refuse_once(route: Route) -> None:
        if refused:
            route.continue_()
            return
        refused.append(route.request.url)
        route.fulfill(status=401, json={"error": "not_authenticated", "detail": "expired"})

    page.route(re.compile(r"/api/v1/sales\?"), refuse_once)
    with page.expect_request(re.compile(r"/api/v1/auth/refresh$")):
        dashboard.goto("sales")
    expect(page.get_by_test_id("sales")).to_be_visible()
    assert refused and page.get_by_role("button", name="Log out").is_visible()
    assert all("401" in error for error in dashboard.errors)  # only the refused call


def test_every_screen_renders_on_desktop_and_phone(dashboard: Dashboard, shop: Shop) -> None:
    dashboard.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    page = dashboard.page
    for route, ready in (
        ("compare", "compare-overall"),
        ("live", "live-today"),
    ):
        dashboard.goto(route)
        expect(page.get_by_test_id(ready)).to_be_visible()
        dashboard.settled()
        dashboard.shot(route)
        if route == "compare":  # this month against the whole of last month (store zone UTC)
            first = datetime.now(UTC).date().replace(day=1)
            before = (first - timedelta(days=1)).replace(day=1)
            heading = page.locator("#overall-title")
            dash = "\N{EN DASH}"
            expect(heading).to_contain_text(f"{first.isoformat()} {dash} ")
            last_day = (first - timedelta(days=1)).isoformat()
            expect(heading).to_contain_text(f"against {before.isoformat()} {dash} {last_day}")

    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    dashboard.goto("overview")
    expect(page.get_by_test_id("kpi-revenue")).to_be_visible()
    dashboard.settled()
    # Nothing wider than the phone's screen but the tables, which scroll inside themselves.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    dashboard.shot("overview-phone")
    page.get_by_role("button", name="Menu").click()
    page.get_by_role("link", name="Sales").click()
    expect(page.get_by_test_id("sales")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    dashboard.shot("sales-phone")
    assert dashboard.errors == []


def test_live_shows_new_sales_and_low_stock_alerts(dashboard: Dashboard, shop: Shop) -> None:
    product = new_product(shop, stock=6, threshold=4)
    dashboard.login(MANAGER_EMAIL)
    dashboard.goto("live")
    page = dashboard.page
    expect(page.get_by_role("heading", name="Sales (live)")).to_be_visible()
    expect(page.get_by_role("heading", name="Stock alerts (live)")).to_be_visible()

    sale = shop.sales_api.post(
        "/sales",
        json={"channel_code": "retail", "lines": [{"product_id": product["id"], "quantity": 3}]},
    )
    assert sale.status_code == 201, sale.text
    expect(page.get_by_test_id("live-sales")).to_contain_text(sale.json()["number"])
    alerts = page.get_by_test_id("live-alerts").locator("li", has_text=product["sku"])
    expect(alerts.filter(has_text="ok → low")).to_have_count(1)  # 3 left, threshold 4
    expect(page.get_by_test_id("today-orders")).to_be_visible()
    dashboard.shot("live")
    assert dashboard.errors == []


# --- how the page is served (the same servers: one set-up per run) -------------------------


def test_the_dashboard_is_served_with_its_own_policy_and_config(shop: Shop) -> None:
    products = shop.products.url
    moved = httpx.get(f"{products}/dashboard")
    assert moved.status_code == 307
    assert moved.headers["location"] == "/dashboard/"

    page = httpx.get(f"{products}/dashboard/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert policy == dashboard_content_security_policy(shop.sales.url)
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert f"connect-src 'self' {shop.sales.url}" in policy
    assert page.headers["x-frame-options"] == "DENY"

    config = httpx.get(f"{products}/dashboard/config.json").json()
    assert config == {"products_url": "", "sales_url": shop.sales.url, "store_timezone": "UTC"}

    chart = httpx.get(f"{products}/dashboard/vendor/chart.umd.js")
    assert chart.status_code == 200 and "Chart.js v4." in chart.text[:200]
    # The API keeps its own "nothing at all" policy.
    api = httpx.get(f"{products}/health")
    assert api.headers["content-security-policy"].startswith("default-src 'none'")


def test_sales_service_lets_the_dashboard_origin_call_it(shop: Shop) -> None:
    preflight = httpx.options(
        f"{shop.sales.url}/api/v1/sales",
        headers={
            "Origin": shop.products.url,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == shop.products.url


def test_a_transfer_started_on_the_product_page_keeps_its_reason_and_who_started_it(
    dashboard: Dashboard, shop: Shop
) -> None:
    # Last in this module: the second warehouse it adds is the only one the others lack.
    product = new_product(shop, stock=6, threshold=1)
    code = f"T{uuid.uuid4().hex[:6].upper()}"
    made = shop.products_api.post("/warehouses", json={"code": code, "name": "Overflow"})
    assert made.status_code == 201, made.text
    dashboard.login(MANAGER_EMAIL)
    dashboard.goto(f"catalog/{product['id']}")
    page = dashboard.page
    page.get_by_role("button", name="Transfer").click()
    form = page.get_by_role("form", name="Transfer stock")
    form.get_by_label("To warehouse").select_option(label=f"Overflow ({code})")
    form.get_by_label("Quantity to send").fill("2")
    form.get_by_label("Reason").fill("make room for the sale")
    form.get_by_role("button", name="Transfer").click()
    expect(page.get_by_test_id("available")).to_have_text("4")

    transfers = shop.products_api.get("/inventory/transfers", params={"product_id": product["id"]})
    [transfer] = transfers.json()["items"]
    assert (transfer["quantity"], transfer["to_warehouse_id"]) == (2, made.json()["id"])
    assert transfer["reason"] == "make room for the sale"
    assert transfer["actor_email"] == MANAGER_EMAIL
    assert dashboard.errors == []
