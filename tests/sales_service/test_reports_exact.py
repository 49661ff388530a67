"""Property tests: every report equals a plain Python computation over the stored rows.

Sales land around daylight-saving changes (Berlin, New York), in a half-hour zone (Kolkata),
on a leap day and across a year end, some exactly on a period boundary; they have prices in
cents, partial refunds and cancellations; filters and groupings vary. The reference below
buckets each sale by the local date of its ``sold_at`` (zoneinfo), independently of the
service's UTC arithmetic and rollups (the base period of a comparison is the one calendar
date arithmetic that it takes from the service: tests/sales_service/test_reports_calendar.py
checks that).
"""

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sales_service.reports import inmemory, service
from sales_service.reports.calendar import DateRange, Period, Weekday, base_range
from sales_service.reports.consumer import consume_once
from sales_service.reports.parameters import Against
from sales_service.reports.planner import Filters
from tests.sales_service.report_factories import (
    Catalog,
    LineSpec,
    RawLine,
    add_sale,
    clear,
    figures,
    in_subtree,
    local_day,
    make_catalog,
    midnight,
    period_start,
    raw_lines,
    refund,
)

API = "/api/v1/reports"
ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC", "Australia/Lord_Howe"]
ANCHORS = [
    datetime(2025, 3, 30, 1, tzinfo=UTC),  # Berlin springs forward
    datetime(2025, 10, 26, 1, tzinfo=UTC),  # Berlin falls back
    datetime(2025, 3, 9, 7, tzinfo=UTC),  # New York springs forward
    datetime(2025, 11, 2, 6, tzinfo=UTC),  # New York falls back
    datetime(2028, 2, 29, 12, tzinfo=UTC),  # a leap day
    datetime(2025, 12, 31, 20, tzinfo=UTC),  # a week across the year end
]
FIGURES = ("revenue", "cost", "margin", "units", "orders", "average_order_value")
SORTABLE = ("revenue", "units", "margin")
PERIODS = ["day", "week", "month", "quarter", "year"]
AGAINST = ["previous_period", "previous_month", "previous_quarter", "previous_year"]
EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def catalog(engine: Engine) -> Catalog:
    return make_catalog(engine)


# --- generating a world ---------------------------------------------------------------------


@st.composite
def sales_around(draw: st.DrawFn, anchor: datetime, zone: ZoneInfo) -> list[dict[str, Any]]:
    """Up to 10 sales within four days of the anchor, some on a local midnight exactly."""
    day = local_day(anchor, zone)
    edges = [midnight(day + timedelta(days=k), zone) for k in range(-3, 4)]
    moment = st.one_of(
        st.integers(-4 * 86400, 4 * 86400).map(lambda s: anchor + timedelta(seconds=s)),
        st.sampled_from(edges),
        st.sampled_from(edges).map(lambda m: m - timedelta(microseconds=1)),
    )
    line = st.tuples(
        st.integers(0, 4),  # product index
        st.integers(1, 4),  # quantity
        st.integers(0, 50_000),  # unit price in cents
        st.integers(0, 100),  # cost as a percentage of price
    )
    plan: st.SearchStrategy[tuple[str, dict[int, int]]] = st.one_of(
        st.just(("none", {})),
        st.just(("cancel", {})),
        st.dictionaries(st.integers(1, 3), st.integers(1, 4), min_size=1).map(
            lambda units: ("refund", units)
        ),
        st.dictionaries(st.integers(1, 3), st.integers(1, 2), min_size=1).map(
            lambda units: ("twice", units)
        ),
    )
    sale = st.fixed_dictionaries(
        {
            "sold_at": moment,
            "channel": st.integers(0, 1),
            "lines": st.lists(line, min_size=1, max_size=3),
            "plan": plan,
        }
    )
    return draw(st.lists(sale, max_size=10))


def write(
    engine: Engine,
    catalog: Catalog,
    sales: list[dict[str, Any]],
    applied: int,
    copy: tuple[str, Engine | None] = ("off", None),
) -> list[RawLine]:
    """Write the sales and their refunds; then the rollup consumer applies the first
    ``applied`` of their events (reports must be exact however far it lags).

    ``copy``: whether the service's process holds the rollups in memory (sums its blocks
    there), as of the consumer's position ("current") or of half way there ("behind": the
    copy lacks events the consumer applied), or not at all ("off"), with the app's engine."""
    mode, app_engine = copy
    inmemory.ENABLED = mode != "off"
    clear(engine)
    with Session(engine, expire_on_commit=False) as session:
        for spec in sales:
            lines = []
            for index, quantity, cents, cost_pct in spec["lines"]:
                price = Decimal(cents) / 100
                cost = (Decimal(cents) * cost_pct / 100).quantize(Decimal(1)) / 100
                lines.append(LineSpec(catalog.products[index], quantity, price, cost))
            sale = add_sale(
                session,
                catalog,
                sold_at=spec["sold_at"],
                channel_id=catalog.channels[spec["channel"]],
                lines=lines,
            )
            kind, units = spec["plan"]
            if kind == "cancel":
                refund(session, sale, {}, cancel=True)
            elif kind in ("refund", "twice"):
                refund(session, sale, units)
                if kind == "twice":
                    refund(session, sale, units)
            session.commit()  # each sale and refund in its own transaction, as in production
    if mode == "behind" and applied:
        consume_once(engine, batch=applied // 2 or 1)
        assert app_engine is not None
        inmemory.load_now(app_engine)
        applied -= applied // 2 or 1
    if applied:
        consume_once(engine, batch=applied)
    if mode == "current":
        assert app_engine is not None
        inmemory.load_now(app_engine)
    with engine.connect() as connection:
        return raw_lines(connection)


@pytest.fixture
def copies(sales_app: Any) -> Iterator[Callable[[st.DataObject, str], tuple[str, Engine | None]]]:
    """Draws whether reports read the rollups from the service's copy in memory (not
    brought forward by itself meanwhile: the example decides how far behind it is), and
    whether it holds the lines of the zone's edge hours (the zone as the store's)."""
    saved = inmemory.ENABLED, inmemory.REFRESH_SECONDS, inmemory.ZONES
    inmemory.REFRESH_SECONDS = 3600.0

    def draw(data: st.DataObject, zone_name: str) -> tuple[str, Engine | None]:
        mode = data.draw(st.sampled_from(["off", "current", "behind"]), label="copy")
        edges = mode != "off" and data.draw(st.booleans(), label="edge lines held")
        inmemory.ZONES = (zone_name,) if edges else ()
        return mode, sales_app.state.engine

    yield draw
    inmemory.ENABLED, inmemory.REFRESH_SECONDS, inmemory.ZONES = saved


FILTER_KINDS = [
    "none",
    "product",
    "two_products",
    "category",
    "two_categories",
    "channel",
    "product_channel",
    "category_channel",
]


def make_filters(catalog: Catalog, kind: str, pick: int) -> Filters:
    products, channels = catalog.products, catalog.channels
    categories = sorted(catalog.categories.values())
    return {
        "none": Filters(),
        "product": Filters(product_ids=(products[pick % 5],)),
        "two_products": Filters(product_ids=tuple(sorted({products[pick % 5], products[2]}))),
        "category": Filters(category_ids=(categories[pick % 4],)),
        "two_categories": Filters(
            category_ids=tuple(sorted({categories[pick % 4], categories[3]}))
        ),
        "channel": Filters(channel_ids=(channels[pick % 2],)),
        "product_channel": Filters(product_ids=(products[pick % 5],), channel_ids=(channels[0],)),
        "category_channel": Filters(
            category_ids=(categories[pick % 4],), channel_ids=(channels[1],)
        ),
    }[kind]


def matcher(catalog: Catalog, filters: Filters) -> Callable[[RawLine], bool]:
    def match(line: RawLine) -> bool:
        if filters.product_ids and line.product_id not in filters.product_ids:
            return False
        if filters.channel_ids and line.channel_id not in filters.channel_ids:
            return False
        return not filters.category_ids or in_subtree(
            line.category_id, filters.category_ids, catalog.paths
        )

    return match


def params(filters: Filters, **extra: Any) -> dict[str, Any]:
    return {
        **extra,
        "product_id": list(filters.product_ids),
        "category_id": list(filters.category_ids),
        "channel_id": list(filters.channel_ids),
    }


# --- the reference ----------------------------------------------------------------------------


def next_period(start: date, period: str) -> date:
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    months = {"month": 1, "quarter": 3, "year": 12}[period]
    index = start.year * 12 + start.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def label(start: date, period: str) -> str:
    if period == "month":
        return f"{start.year}-{start.month:02d}"
    if period == "quarter":
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    if period == "year":
        return str(start.year)
    return start.isoformat()


def reference_series(
    lines: list[RawLine],
    zone: ZoneInfo,
    period: str,
    week_start: int,
    first: date,
    last: date,
    match: Callable[[RawLine], bool],
) -> list[dict[str, Any]]:
    buckets = []
    start = period_start(first, period, week_start)
    while start <= last:
        after = next_period(start, period)
        lo, hi = max(start, first), min(after, last + timedelta(days=1))
        chosen = [ln for ln in lines if match(ln) and lo <= local_day(ln.sold_at, zone) < hi]
        buckets.append(
            {
                "start": midnight(lo, zone).isoformat().replace("+00:00", "Z"),
                "end": midnight(hi, zone).isoformat().replace("+00:00", "Z"),
                "label": label(start, period),
                "partial": (lo, hi) != (start, after),
                **figures(chosen),
            }
        )
        start = after
    return buckets


def in_range(line: RawLine, zone: ZoneInfo, first: date, last: date) -> bool:
    return first <= local_day(line.sold_at, zone) <= last


def group_of(catalog: Catalog, by: str, rollup: str, parent: int | None) -> Callable[..., Any]:
    paths = catalog.paths

    def key(line: RawLine) -> Any:
        if by == "product":
            return line.product_id
        if by == "channel":
            return line.channel_id
        if line.category_id is None:
            return None if parent is None else "skip"
        chain = [int(p) for p in paths[line.category_id].split("/") if p]
        if parent is not None:
            if parent not in chain:
                return "skip"
            below = chain[chain.index(parent) + 1 :]
            return below[0] if below else parent
        return chain[0] if rollup == "top_level" else line.category_id

    return key


def draw_applied(data: st.DataObject) -> int:
    return data.draw(st.sampled_from([0, 3, 12, 1000]), label="events applied")


# --- the properties -----------------------------------------------------------------------------


@EXAMPLES
@given(data=st.data())
def test_revenue_series_equals_the_reference(
    data: st.DataObject,
    sales_client: TestClient,
    viewer_headers: dict,
    engine: Engine,
    catalog: Catalog,
    copies: Callable[[st.DataObject, str], tuple[str, Engine | None]],
) -> None:
    zone_name = data.draw(st.sampled_from(ZONES), label="zone")
    zone = ZoneInfo(zone_name)
    anchor = data.draw(st.sampled_from(ANCHORS), label="anchor")
    sales = data.draw(sales_around(anchor, zone), label="sales")
    lines = write(engine, catalog, sales, draw_applied(data), copies(data, zone_name))
    period = data.draw(st.sampled_from(PERIODS), label="period")
    week_start = data.draw(st.integers(0, 6), label="week_start")
    first = local_day(anchor, zone) + timedelta(days=data.draw(st.integers(-5, 0), label="from"))
    last = first + timedelta(days=data.draw(st.integers(0, 9), label="days"))
    kind = data.draw(st.sampled_from(FILTER_KINDS), label="filters")
    filters = make_filters(catalog, kind, data.draw(st.integers(0, 9), label="pick"))

    response = sales_client.get(
        f"{API}/revenue",
        headers=viewer_headers,
        params=params(
            filters,
            period=period,
            week_start=list(Weekday)[week_start].value,
            timezone=zone_name,
            **{"from": first.isoformat(), "to": last.isoformat()},
        ),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    match = matcher(catalog, filters)
    expected = reference_series(lines, zone, period, week_start, first, last, match)
    assert body["buckets"] == expected
    chosen = [ln for ln in lines if match(ln) and in_range(ln, zone, first, last)]
    assert body["totals"] == figures(chosen)

    # the raw-row path gives the same answer as whatever the route read
    with engine.connect() as connection:
        raw = service.revenue_series(
            connection=connection,
            rng=DateRange(first, last, zone),
            period=Period(period),
            week_start=list(Weekday)[week_start],
            filters=filters,
            use_rollups=False,
        )
    assert raw.sources in ([], ["sales+sale_lines"])
    assert raw.model_dump(mode="json")["buckets"] == body["buckets"]


# Around local month and year starts, hours away from the UTC ones the rollups keep.
MONTH_ANCHORS = [
    datetime(2025, 4, 1, 0, tzinfo=UTC),  # Berlin: two days after springing forward
    datetime(2025, 11, 1, 4, tzinfo=UTC),  # New York: the day before falling back
    datetime(2028, 3, 1, 0, tzinfo=UTC),  # after a leap day
    datetime(2026, 1, 1, 0, tzinfo=UTC),  # a year end
    datetime(2025, 10, 5, 0, tzinfo=UTC),  # Lord Howe moves its clock by 30 minutes
]


@settings(EXAMPLES, max_examples=50)
@given(data=st.data())
def test_series_over_months_equal_the_reference(
    data: st.DataObject,
    sales_client: TestClient,
    viewer_headers: dict,
    engine: Engine,
    catalog: Catalog,
    copies: Callable[[st.DataObject, str], tuple[str, Engine | None]],
) -> None:
    zone_name = data.draw(st.sampled_from([*ZONES, "America/St_Johns"]), label="zone")
    zone = ZoneInfo(zone_name)
    anchor = data.draw(st.sampled_from(MONTH_ANCHORS), label="anchor")
    sales = data.draw(sales_around(anchor, zone), label="sales")
    # some within 15 hours of the UTC month start: between it and the local one
    near = data.draw(st.lists(st.integers(-15 * 3600, 15 * 3600), max_size=8), label="near")
    for sale, seconds in zip(sales, near, strict=False):
        sale["sold_at"] = anchor + timedelta(seconds=seconds)
    applied = data.draw(st.sampled_from([0, 12, 1000, 1000]), label="events applied")
    lines = write(engine, catalog, sales, applied, copies(data, zone_name))
    day = local_day(anchor, zone)
    first = day - timedelta(days=data.draw(st.integers(0, 100), label="days before"))
    last = day + timedelta(days=data.draw(st.integers(0, 100), label="days after"))
    period = data.draw(st.sampled_from(["month", "month", "quarter", "year"]), label="period")
    kind = data.draw(st.sampled_from(FILTER_KINDS), label="filters")
    filters = make_filters(catalog, kind, data.draw(st.integers(0, 9), label="pick"))
    dates = {"from": first.isoformat(), "to": last.isoformat()}

    response = sales_client.get(
        f"{API}/revenue",
        headers=viewer_headers,
        params=params(filters, period=period, timezone=zone_name, **dates),
    )
    assert response.status_code == 200, response.text
    match = matcher(catalog, filters)
    expected = reference_series(lines, zone, period, 0, first, last, match)
    assert response.json()["buckets"] == expected
    chosen = [ln for ln in lines if match(ln) and in_range(ln, zone, first, last)]
    response = sales_client.get(
        f"{API}/summary",
        headers=viewer_headers,
        params=params(filters, timezone=zone_name, **dates),
    )
    assert response.status_code == 200, response.text
    current = response.json()["kpis"]
    for name in ("revenue", "units", "orders"):
        assert current[name]["current"] == figures(chosen)[name]


@EXAMPLES
@given(data=st.data())
def test_breakdowns_and_comparisons_equal_the_reference(
    data: st.DataObject,
    sales_client: TestClient,
    viewer_headers: dict,
    engine: Engine,
    catalog: Catalog,
    copies: Callable[[st.DataObject, str], tuple[str, Engine | None]],
) -> None:
    zone_name = data.draw(st.sampled_from(ZONES), label="zone")
    zone = ZoneInfo(zone_name)
    anchor = data.draw(st.sampled_from(ANCHORS), label="anchor")
    sales = data.draw(sales_around(anchor, zone), label="sales")
    lines = write(engine, catalog, sales, draw_applied(data), copies(data, zone_name))
    first = local_day(anchor, zone) + timedelta(days=data.draw(st.integers(-4, 1), label="from"))
    last = first + timedelta(days=data.draw(st.integers(0, 3), label="days"))
    kind = data.draw(st.sampled_from(FILTER_KINDS), label="filters")
    filters = make_filters(catalog, kind, data.draw(st.integers(0, 9), label="pick"))
    by = data.draw(st.sampled_from(["product", "channel", "category"]), label="by")
    rollup, parent = "none", None
    if by == "category":
        shape = data.draw(st.sampled_from(["own", "top_level", "home", "kitchen"]), label="shape")
        if shape == "top_level":
            rollup = "top_level"
        elif shape != "own":
            parent = catalog.categories[shape]
    sort = data.draw(st.sampled_from([f"{d}{f}" for d in ("", "-") for f in SORTABLE]))
    dates = {"from": first.isoformat(), "to": last.isoformat()}
    extra: dict[str, Any] = {"category_rollup": rollup}
    if parent is not None:
        extra["parent_id"] = parent

    response = sales_client.get(
        f"{API}/breakdown",
        headers=viewer_headers,
        params=params(filters, by=by, timezone=zone_name, sort=sort, limit=500, **dates, **extra),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    match = matcher(catalog, filters)
    chosen = [ln for ln in lines if match(ln) and in_range(ln, zone, first, last)]
    key = group_of(catalog, by, rollup, parent)
    groups: dict[Any, list[RawLine]] = {}
    for ln in chosen:
        if (k := key(ln)) != "skip":
            groups.setdefault(k, []).append(ln)
    rows = [{"id": k, **figures(g)} for k, g in groups.items()]
    field, descending = sort.lstrip("-"), sort.startswith("-")
    rows.sort(key=lambda r: r["id"] or 0)
    rows.sort(key=lambda r: Decimal(str(r[field])), reverse=descending)
    assert [{k: r[k] for k in ("id", *FIGURES)} for r in body["groups"]] == rows
    assert body["group_count"] == len(rows)
    # with parent_id, the totals are those of the lines its groups hold: the groups add up
    in_groups = [ln for ln in chosen if key(ln) != "skip"]
    assert body["totals"] == figures(in_groups)

    against = data.draw(st.sampled_from(AGAINST), label="against")
    response = sales_client.get(
        f"{API}/compare",
        headers=viewer_headers,
        params=params(filters, against=against, timezone=zone_name, group_by=by, **dates, **extra),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    base = base_range(DateRange(first, last, zone), Against(against))
    assert (body["base"]["from"], body["base"]["to"]) == (
        base.first.isoformat(),
        base.last.isoformat(),
    )
    before = [ln for ln in lines if match(ln) and in_range(ln, zone, base.first, base.last)]
    before = [ln for ln in before if key(ln) != "skip"]
    now, then = figures(in_groups), figures(before)
    for name in ("revenue", "units", "orders", "margin", "average_order_value"):
        assert body["overall"][name]["current"] == now[name]
        assert body["overall"][name]["base"] == then[name]
    base_groups: dict[Any, list[RawLine]] = {}
    for ln in before:
        if (k := key(ln)) != "skip":
            base_groups.setdefault(k, []).append(ln)
    compared = {g["id"]: g for g in body["groups"]}
    assert set(compared) == set(groups) | set(base_groups)
    for k, g in compared.items():
        assert g["revenue"]["current"] == figures(groups.get(k, []))["revenue"]
        assert g["orders"]["base"] == figures(base_groups.get(k, []))["orders"]
        assert g["units"]["difference"] == (
            figures(groups.get(k, []))["units"] - figures(base_groups.get(k, []))["units"]
        )
