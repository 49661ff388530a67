"""The report endpoints: shapes, calendar periods across DST, filters, errors, access."""

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sales_service.reports.calendar import today_in
from sales_service.reports.consumer import catch_up
from tests.sales_service.report_factories import (
    Catalog,
    LineSpec,
    add_sale,
    make_catalog,
    refund,
)

API = "/api/v1/reports"


@pytest.fixture
def catalog(engine: Engine) -> Catalog:
    return make_catalog(engine)


def line(catalog: Catalog, n: int, quantity: int = 1, price: str = "10.00") -> LineSpec:
    cost = (Decimal(price) / 2).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return LineSpec(catalog.products[n], quantity, Decimal(price), cost)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_viewer_reads_a_day_series_across_spring_forward_in_berlin(
    sales_client: TestClient, viewer_headers: dict, engine: Engine, catalog: Catalog
) -> None:
    web, shop = catalog.channels
    with Session(engine, expire_on_commit=False) as session:
        # 2025-03-30 is 23 hours long in Berlin: 00:00+01:00 .. 00:00+02:00 next day
        add_sale(session, catalog, sold_at=utc(2025, 3, 29, 22, 59), channel_id=web,
                 lines=[line(catalog, 0, 2, "12.35")])  # fmt: skip
        add_sale(session, catalog, sold_at=utc(2025, 3, 29, 23, 0), channel_id=web,
                 lines=[line(catalog, 1, 1, "0.99"), line(catalog, 4, 3, "5.01")])  # fmt: skip
        late = add_sale(session, catalog, sold_at=utc(2025, 3, 30, 21, 59, 59), channel_id=shop,
                        lines=[line(catalog, 2, 4, "7.50")])  # fmt: skip
        refund(session, late, {1: 1})
        cancelled = add_sale(session, catalog, sold_at=utc(2025, 3, 30, 12), channel_id=shop,
                             lines=[line(catalog, 3, 1, "99.99")])  # fmt: skip
        refund(session, cancelled, {}, cancel=True)
        session.commit()
    catch_up(engine)  # the rollups have applied every event (else their blocks read raw rows)

    response = sales_client.get(
        f"{API}/revenue",
        headers=viewer_headers,
        params={"from": "2025-03-29", "to": "2025-04-01", "timezone": "Europe/Berlin"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(b["label"], b["start"], b["end"]) for b in body["buckets"]] == [
        ("2025-03-29", "2025-03-29T00:00:00+01:00", "2025-03-30T00:00:00+01:00"),
        ("2025-03-30", "2025-03-30T00:00:00+01:00", "2025-03-31T00:00:00+02:00"),
        ("2025-03-31", "2025-03-31T00:00:00+02:00", "2025-04-01T00:00:00+02:00"),
        ("2025-04-01", "2025-04-01T00:00:00+02:00", "2025-04-02T00:00:00+02:00"),
    ]
    first, dst_day, empty, _ = body["buckets"]
    assert first == {
        **first,
        "revenue": "24.70",
        "cost": "12.36",
        "margin": "12.34",
        "units": 2,
        "orders": 1,
        "average_order_value": "24.70",
    }
    # 0.99 + 15.03 + 3 x 7.50 (one of four refunded); the cancelled sale adds nothing
    assert dst_day["revenue"] == "38.52"
    assert dst_day["units"] == 7
    assert dst_day["orders"] == 2
    assert dst_day["average_order_value"] == "19.26"
    assert empty == {
        **empty,
        "revenue": "0.00",
        "cost": "0.00",
        "margin": "0.00",
        "units": 0,
        "orders": 0,
        "average_order_value": None,
    }
    assert body["totals"]["revenue"] == "63.22"
    assert body["totals"]["orders"] == 3
    assert body["parameters"]["from"] == "2025-03-29"
    assert body["parameters"]["start"] == "2025-03-29T00:00:00+01:00"
    assert body["parameters"]["end"] == "2025-04-02T00:00:00+02:00"
    assert body["sources"] == ["report_sales_rollups"]
    mark = body["watermark"]
    assert mark["latest_sale_id"] == cancelled.id
    assert mark["latest_refund_id"] is not None
    assert mark["sales_updated_at"] is not None


def test_fall_back_day_is_25_hours_and_kolkata_days_start_at_half_past(
    sales_client: TestClient, viewer_headers: dict, engine: Engine, catalog: Catalog
) -> None:
    with Session(engine, expire_on_commit=False) as session:
        web = catalog.channels[0]
        add_sale(session, catalog, sold_at=utc(2025, 10, 26, 18, 29), channel_id=web,
                 lines=[line(catalog, 0)])  # fmt: skip
        add_sale(session, catalog, sold_at=utc(2025, 10, 26, 18, 30), channel_id=web,
                 lines=[line(catalog, 1, 1, "20.00")])  # fmt: skip
        session.commit()
    berlin = sales_client.get(
        f"{API}/revenue",
        headers=viewer_headers,
        params={"from": "2025-10-26", "to": "2025-10-26", "timezone": "Europe/Berlin"},
    ).json()
    (day,) = berlin["buckets"]
    assert (day["start"], day["end"]) == ("2025-10-26T00:00:00+02:00", "2025-10-27T00:00:00+01:00")
    assert day["orders"] == 2

    kolkata = sales_client.get(
        f"{API}/revenue",
        headers=viewer_headers,
        params={"from": "2025-10-26", "to": "2025-10-27", "timezone": "Asia/Kolkata"},
    ).json()
    assert [(b["start"], b["orders"], b["revenue"]) for b in kolkata["buckets"]] == [
        ("2025-10-26T00:00:00+05:30", 1, "10.00"),
        ("2025-10-27T00:00:00+05:30", 1, "20.00"),
    ]


def test_weeks_cross_the_year_end_and_start_on_the_day_asked(
    sales_client: TestClient, viewer_headers: dict, engine: Engine, catalog: Catalog
) -> None:
    with Session(engine, expire_on_commit=False) as session:
        add_sale(session, catalog, sold_at=utc(2026, 1, 1, 12), channel_id=catalog.channels[0],
                 lines=[line(catalog, 0)])  # fmt: skip
        session.commit()
    params = {"from": "2025-12-24", "to": "2026-01-06", "period": "week", "timezone": "UTC"}
    monday = sales_client.get(f"{API}/revenue", headers=viewer_headers, params=params).json()
    assert [(b["label"], b["start"], b["end"]) for b in monday["buckets"]] == [
        ("2025-12-22", "2025-12-24T00:00:00Z", "2025-12-29T00:00:00Z"),
        ("2025-12-29", "2025-12-29T00:00:00Z", "2026-01-05T00:00:00Z"),
        ("2026-01-05", "2026-01-05T00:00:00Z", "2026-01-07T00:00:00Z"),
    ]
    assert [b["orders"] for b in monday["buckets"]] == [0, 1, 0]
    sunday = sales_client.get(
        f"{API}/revenue", headers=viewer_headers, params={**params, "week_start": "sunday"}
    ).json()
    assert [b["label"] for b in sunday["buckets"]] == ["2025-12-21", "2025-12-28", "2026-01-04"]

    quarters = sales_client.get(
        f"{API}/revenue",
        headers=viewer_headers,
        params={"from": "2025-11-15", "to": "2026-02-01", "period": "quarter", "timezone": "UTC"},
    ).json()
    assert [b["label"] for b in quarters["buckets"]] == ["2025-Q4", "2026-Q1"]
    assert quarters["buckets"][1]["revenue"] == "10.00"


def test_filters_breakdowns_and_category_rollup(
    sales_client: TestClient, viewer_headers: dict, engine: Engine, catalog: Catalog
) -> None:
    web, shop = catalog.channels
    home, kitchen, knives, garden = (
        catalog.categories[k] for k in ("home", "kitchen", "knives", "garden")
    )
    with Session(engine, expire_on_commit=False) as session:
        add_sale(session, catalog, sold_at=utc(2025, 5, 1, 10), channel_id=web,
                 lines=[line(catalog, 1, 1, "20.00"), line(catalog, 2, 2, "30.00")])  # fmt: skip
        add_sale(session, catalog, sold_at=utc(2025, 5, 2, 10), channel_id=shop,
                 lines=[line(catalog, 3, 1, "40.00"), line(catalog, 4, 1, "1.00")])  # fmt: skip
        add_sale(session, catalog, sold_at=utc(2025, 5, 3, 10), channel_id=web,
                 lines=[line(catalog, 0, 1, "5.00")])  # fmt: skip
        session.commit()
    catch_up(engine)
    params = {"from": "2025-05-01", "to": "2025-05-31", "timezone": "UTC"}

    def get(path: str, **extra: object) -> dict:
        response = sales_client.get(
            f"{API}/{path}", headers=viewer_headers, params={**params, **extra}
        )
        assert response.status_code == 200, response.text
        return response.json()

    home_only = get("revenue", period="month", category_id=home)
    assert home_only["totals"]["revenue"] == "85.00"  # kitchen 20 + knives 60 + home 5
    assert home_only["totals"]["orders"] == 2
    assert home_only["sources"] == ["report_category_rollups"]
    assert get("revenue", period="month", product_id=catalog.products[2])["totals"]["units"] == 2
    two = get("revenue", period="month", product_id=catalog.products[1:3])
    assert two["totals"]["orders"] == 1  # one sale holds both
    assert two["sources"] == ["sales+sale_lines"]

    top = get("breakdown", by="category", category_rollup="top_level")
    assert [(r["name"], r["revenue"], r["orders"]) for r in top["groups"]] == [
        ("Home", "85.00", 2),
        ("Garden", "40.00", 1),
        ("Uncategorized", "1.00", 1),
    ]
    assert top["groups"][2]["id"] is None
    assert top["totals"]["orders"] == 3
    under_home = get("breakdown", by="category", parent_id=home, sort="units")
    assert [(r["id"], r["units"]) for r in under_home["groups"]] == [(home, 1), (kitchen, 3)]
    own = get("breakdown", by="category", limit=2)
    assert [r["id"] for r in own["groups"]] == [knives, garden]
    assert own["group_count"] == 5
    by_product = get("breakdown", by="product", sort="-margin", channel_id=web)
    assert [r["sku"] for r in by_product["groups"]] == ["RP-3", "RP-2", "RP-1"]
    by_channel = get("breakdown", by="channel")
    assert [(r["name"], r["orders"]) for r in by_channel["groups"]] == [
        ("Web store", 2),
        ("Retail shop", 1),
    ]


def test_compare_summary_and_inventory_insight(
    sales_client: TestClient, viewer_headers: dict, engine: Engine, catalog: Catalog
) -> None:
    web = catalog.channels[0]
    with Session(engine, expire_on_commit=False) as session:
        add_sale(session, catalog, sold_at=utc(2024, 2, 29, 12), channel_id=web,
                 lines=[line(catalog, 1, 3, "10.00")])  # fmt: skip
        add_sale(session, catalog, sold_at=utc(2025, 2, 28, 12), channel_id=web,
                 lines=[line(catalog, 1, 6, "10.00")])  # fmt: skip
        session.commit()
    year = sales_client.get(
        f"{API}/compare",
        headers=viewer_headers,
        params={"from": "2025-02-28", "to": "2025-02-28", "against": "previous_year",
                "timezone": "UTC", "group_by": "product"},
    ).json()  # fmt: skip
    assert year["base"]["from"] == "2024-02-28"
    assert year["overall"]["revenue"] == {
        "current": "60.00",
        "base": "0.00",
        "difference": "60.00",
        "percent_change": None,
    }
    custom = sales_client.get(
        f"{API}/compare",
        headers=viewer_headers,
        params={"from": "2025-02-28", "to": "2025-02-28", "against": "custom",
                "against_from": "2024-02-29", "against_to": "2024-02-29", "timezone": "UTC"},
    ).json()  # fmt: skip
    assert custom["overall"]["units"] == {
        "current": 6,
        "base": 3,
        "difference": 3,
        "percent_change": "100.00",
    }
    summary = sales_client.get(
        f"{API}/summary",
        headers=viewer_headers,
        params={"from": "2025-02-28", "to": "2025-02-28", "timezone": "UTC"},
    ).json()
    assert summary["base"]["from"] == "2025-02-27"
    assert summary["kpis"]["margin_percent"]["current"] == "50.00"
    assert summary["kpis"]["units_per_order"]["current"] == "6.00"

    insight = sales_client.get(
        f"{API}/inventory-insight",
        headers=viewer_headers,
        params={"as_of": "2025-03-01", "window_days": 3, "timezone": "UTC"},
    ).json()
    sold = next(i for i in insight["items"] if i["product_id"] == catalog.products[1])
    # available 10 - 1 = 9; 6 units in 3 days = 2/day -> 4.5 days -> out on the 5th day after
    assert sold == {
        **sold,
        "available": 9,
        "units_sold": 6,
        "velocity_per_day": "2.0000",
        "days_of_cover": "4.50",
        "projected_stockout_date": "2025-03-06",
    }
    assert insight["items"][0]["days_of_cover"] == "0.00"  # product 1 has no stock at all
    assert insight["total"] == 5


def test_breakdown_and_compare_list_groups_alike_and_summary_names_its_base(
    sales_client: TestClient, viewer_headers: dict, engine: Engine, catalog: Catalog
) -> None:
    web, shop = catalog.channels
    with Session(engine, expire_on_commit=False) as session:
        add_sale(session, catalog, sold_at=utc(2025, 6, 2, 10), channel_id=web,
                 lines=[line(catalog, 1, 2, "20.00")])  # fmt: skip
        add_sale(session, catalog, sold_at=utc(2025, 6, 3, 10), channel_id=shop,
                 lines=[line(catalog, 3, 1, "40.00")])  # fmt: skip
        session.commit()
    params = {"from": "2025-06-01", "to": "2025-06-30", "timezone": "UTC"}
    breakdown = sales_client.get(
        f"{API}/breakdown", headers=viewer_headers, params={**params, "by": "channel", "limit": 1}
    ).json()
    compared = sales_client.get(
        f"{API}/compare",
        headers=viewer_headers,
        params={**params, "group_by": "channel", "limit": 1},
    ).json()
    for answer in (breakdown, compared):
        assert "rows" not in answer
        assert answer["group_count"] == 2  # before limit cut the list to one
        assert [g["name"] for g in answer["groups"]] == ["Web store"]
    summary = sales_client.get(f"{API}/summary", headers=viewer_headers, params=params).json()
    assert "previous" not in summary
    assert (summary["base"]["from"], summary["base"]["to"]) == ("2025-05-02", "2025-05-31")
    assert summary["base"] == compared["base"]
    assert summary["parameters"]["against"] == "previous_period"

    schemas = sales_client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("Breakdown", "Comparison"):
        assert {"groups", "group_count"} <= set(schemas[name]["properties"]), name
        assert schemas[name]["properties"]["groups"]["type"] == "array"
        assert schemas[name]["properties"]["group_count"]["type"] == "integer"
        assert {"groups", "group_count"} <= set(schemas[name]["examples"][0]), name
    assert "rows" not in schemas["Breakdown"]["properties"]
    for name in ("Summary", "Comparison"):
        assert "base" in schemas[name]["properties"]
        assert "base" in schemas[name]["examples"][0]
    assert "previous" not in schemas["Summary"]["properties"]


def test_compare_and_summary_compare_with_calendar_months_quarters_and_years(
    sales_client: TestClient, viewer_headers: dict, engine: Engine, catalog: Catalog
) -> None:
    web = catalog.channels[0]
    sold = {
        (2024, 2, 29): "1.00",  # a leap day: in February 2024, a year before February 2025
        (2024, 11, 20): "2.00",
        (2025, 2, 28): "4.00",
        (2025, 8, 31): "8.00",
        (2025, 10, 1): "16.00",  # in October, but not in the 30 days before November
        (2025, 11, 15): "32.00",
    }
    with Session(engine, expire_on_commit=False) as session:
        for (year, month, day), price in sold.items():
            add_sale(session, catalog, sold_at=utc(year, month, day, 12), channel_id=web,
                     lines=[line(catalog, 1, 1, price)])  # fmt: skip
        session.commit()
    catch_up(engine)

    def compare(path: str, against: str, first: str, last: str) -> dict:
        response = sales_client.get(
            f"{API}/{path}",
            headers=viewer_headers,
            params={"from": first, "to": last, "timezone": "UTC", "against": against},
        )
        assert response.status_code == 200, response.text
        return response.json()

    november = ("2025-11-01", "2025-11-30")
    for against, base, revenue in [
        ("previous_period", ("2025-10-02", "2025-10-31"), "0.00"),
        ("previous_month", ("2025-10-01", "2025-10-31"), "16.00"),
        ("previous_quarter", ("2025-08-01", "2025-08-31"), "8.00"),
        ("previous_year", ("2024-11-01", "2024-11-30"), "2.00"),
    ]:
        for path, figures in (("compare", "overall"), ("summary", "kpis")):
            answer = compare(path, against, *november)
            assert answer["parameters"]["against"] == against
            assert (answer["base"]["from"], answer["base"]["to"]) == base, (path, against)
            first, last = (date.fromisoformat(day) for day in base)
            assert answer["base"]["days"] == (last - first).days + 1
            assert answer[figures]["revenue"] == {
                **answer[figures]["revenue"],
                "current": "32.00",
                "base": revenue,
            }
    # a whole February a year back is the whole February, leap day included
    february = compare("compare", "previous_year", "2025-02-01", "2025-02-28")
    assert (february["base"]["from"], february["base"]["to"]) == ("2024-02-01", "2024-02-29")
    assert february["overall"]["revenue"]["base"] == "1.00"
    # a day past the month's end moves to its last day: 31 March -> 28 February
    last_day = compare("summary", "previous_month", "2025-03-31", "2025-03-31")
    assert (last_day["base"]["from"], last_day["base"]["to"]) == ("2025-02-28", "2025-02-28")
    assert last_day["kpis"]["revenue"]["base"] == "4.00"
    custom = sales_client.get(
        f"{API}/summary",
        headers=viewer_headers,
        params={"from": "2025-11-01", "to": "2025-11-30", "timezone": "UTC", "against": "custom",
                "against_from": "2024-02-01", "against_to": "2024-02-29"},
    ).json()  # fmt: skip
    assert custom["kpis"]["revenue"]["base"] == "1.00"
    assert custom["base"]["days"] == 29


def test_presets_resolve_from_today_in_the_zone_and_show_their_dates(
    sales_client: TestClient, viewer_headers: dict, engine: Engine, catalog: Catalog
) -> None:
    zone_name = "Pacific/Kiritimati"  # UTC+14: often a day ahead of UTC
    zone = ZoneInfo(zone_name)
    now = datetime.now(UTC)
    with Session(engine, expire_on_commit=False) as session:
        add_sale(session, catalog, sold_at=now - timedelta(seconds=1),
                 channel_id=catalog.channels[0], lines=[line(catalog, 0, 1, "3.00")])  # fmt: skip
        add_sale(session, catalog, sold_at=now - timedelta(days=8),
                 channel_id=catalog.channels[0], lines=[line(catalog, 0, 1, "5.00")])  # fmt: skip
        session.commit()

    def get(path: str, **params: str) -> dict:
        response = sales_client.get(
            f"{API}/{path}", headers=viewer_headers, params={"timezone": zone_name, **params}
        )
        assert response.status_code == 200, response.text
        body: dict = response.json()
        return body

    before = today_in(zone)
    week = get("revenue", preset="last_7_days")
    today = date.fromisoformat(week["parameters"]["to"])
    assert today in (before, today_in(zone))  # (either day, if the request straddled midnight)
    assert week["parameters"]["preset"] == "last_7_days"
    assert week["parameters"]["from"] == (today - timedelta(days=6)).isoformat()
    assert len(week["buckets"]) == 7
    assert week["buckets"][-1]["label"] == today.isoformat()
    assert week["totals"]["revenue"] == "3.00"  # the sale of 8 days ago is outside

    assert get("summary", preset="today")["kpis"]["revenue"]["current"] == "3.00"
    month_start = today.replace(day=1)
    last_month = get("breakdown", preset="last_month", by="channel")
    assert last_month["parameters"]["to"] == (month_start - timedelta(days=1)).isoformat()
    assert (
        last_month["parameters"]["from"]
        == (month_start - timedelta(days=1)).replace(day=1).isoformat()
    )
    mtd = get("compare", preset="month_to_date", against="previous_month")
    assert mtd["current"]["from"] == month_start.isoformat()
    assert mtd["parameters"]["preset"] == "month_to_date"
    plain = get("revenue", **{"from": today.isoformat()})
    assert plain["parameters"]["preset"] is None


@pytest.mark.parametrize("path", ["revenue", "compare", "breakdown", "summary"])
def test_a_preset_with_from_or_to_is_a_422_that_says_so(
    sales_client: TestClient, viewer_headers: dict, path: str
) -> None:
    both = sales_client.get(
        f"{API}/{path}", headers=viewer_headers, params={"preset": "last_month", "to": "2025-01-31"}
    )
    assert both.status_code == 422, both.text
    body = both.json()
    assert "give either preset or from/to, not both" in body["detail"]
    assert [f["field"] for f in body["fields"]] == ["query.preset"]
    unknown = sales_client.get(f"{API}/{path}", headers=viewer_headers, params={"preset": "ytd"})
    assert unknown.status_code == 422
    assert "'year_to_date'" in unknown.json()["detail"]


def test_buckets_cut_by_the_range_are_marked_partial(
    sales_client: TestClient, viewer_headers: dict, engine: Engine, catalog: Catalog
) -> None:
    def buckets(**params: str) -> list[tuple[str, bool, str, str]]:
        response = sales_client.get(
            f"{API}/revenue", headers=viewer_headers, params={"timezone": "UTC", **params}
        )
        assert response.status_code == 200, response.text
        return [
            (b["label"], b["partial"], b["start"], b["end"]) for b in response.json()["buckets"]
        ]

    # Wednesday 5 March to Sunday 23 March: the first week is cut, the last is whole
    assert buckets(period="week", **{"from": "2025-03-05", "to": "2025-03-23"}) == [
        ("2025-03-03", True, "2025-03-05T00:00:00Z", "2025-03-10T00:00:00Z"),
        ("2025-03-10", False, "2025-03-10T00:00:00Z", "2025-03-17T00:00:00Z"),
        ("2025-03-17", False, "2025-03-17T00:00:00Z", "2025-03-24T00:00:00Z"),
    ]
    months = buckets(period="month", **{"from": "2025-01-01", "to": "2025-03-15"})
    assert [(label, partial) for label, partial, *_ in months] == [
        ("2025-01", False),
        ("2025-02", False),
        ("2025-03", True),
    ]
    days = buckets(period="day", **{"from": "2025-03-05", "to": "2025-03-07"})
    assert not any(partial for _, partial, *_ in days)
    bucket = sales_client.get("/openapi.json").json()["components"]["schemas"]["RevenueBucket"]
    assert "partial" in bucket["required"]
    assert "cuts this period" in bucket["properties"]["partial"]["description"]


def test_a_breakdown_under_a_parent_adds_up_to_its_subtrees_totals(
    sales_client: TestClient, viewer_headers: dict, engine: Engine, catalog: Catalog
) -> None:
    web, shop = catalog.channels
    home, kitchen, knives, garden = (
        catalog.categories[k] for k in ("home", "kitchen", "knives", "garden")
    )
    with Session(engine, expire_on_commit=False) as session:
        add_sale(session, catalog, sold_at=utc(2025, 5, 1, 10), channel_id=web,
                 lines=[line(catalog, 1, 1, "20.00"), line(catalog, 3, 1, "40.00")])  # fmt: skip
        add_sale(session, catalog, sold_at=utc(2025, 5, 2, 10), channel_id=shop,
                 lines=[line(catalog, 0, 1, "5.00"), line(catalog, 2, 2, "30.00")])  # fmt: skip
        add_sale(session, catalog, sold_at=utc(2025, 5, 3, 10), channel_id=web,
                 lines=[line(catalog, 4, 1, "1.00")])  # fmt: skip
        session.commit()
    catch_up(engine)
    params = {"from": "2025-05-01", "to": "2025-05-31", "timezone": "UTC", "by": "category"}

    def under(parent: int, **extra: object) -> dict:
        response = sales_client.get(
            f"{API}/breakdown", headers=viewer_headers,
            params={**params, "parent_id": parent, **extra},
        )  # fmt: skip
        assert response.status_code == 200, response.text
        return response.json()

    answer = under(home)
    assert [(g["id"], g["revenue"], g["orders"]) for g in answer["groups"]] == [
        (kitchen, "80.00", 2),
        (home, "5.00", 1),
    ]
    totals = answer["totals"]
    assert (totals["revenue"], totals["units"], totals["orders"]) == ("85.00", 4, 2)
    for name in ("revenue", "cost", "margin"):
        assert sum(Decimal(g[name]) for g in answer["groups"]) == Decimal(totals[name])
    assert sum(g["units"] for g in answer["groups"]) == totals["units"]
    assert sum(g["orders"] for g in answer["groups"]) == 3  # one sale holds both: 2 orders
    # filters narrow the subtree: a category under the parent, one above it, one beside it
    assert under(home, category_id=knives)["totals"]["revenue"] == "60.00"
    assert under(kitchen, category_id=home)["totals"]["revenue"] == "80.00"
    apart = under(home, category_id=garden)
    assert (apart["groups"], apart["totals"]["revenue"], apart["group_count"]) == ([], "0.00", 0)
    assert under(home, channel_id=web)["totals"]["revenue"] == "20.00"
    # compare's overall, under the same parent, is that subtree too
    compared = sales_client.get(
        f"{API}/compare",
        headers=viewer_headers,
        params={"from": "2025-05-01", "to": "2025-05-31", "timezone": "UTC",
                "group_by": "category", "parent_id": home},
    ).json()  # fmt: skip
    assert compared["overall"]["revenue"]["current"] == "85.00"
    assert compared["overall"]["orders"]["current"] == 2
    # without a parent the totals are the whole range's, every group included
    whole = sales_client.get(f"{API}/breakdown", headers=viewer_headers, params=params).json()
    assert whole["totals"]["revenue"] == "126.00"
    assert sum(Decimal(g["revenue"]) for g in whole["groups"]) == Decimal("126.00")


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"period": "fortnight"}, "query.period", "'day'"),
        ({"from": "2025-02-01", "to": "2025-01-01"}, "query.to", "must be on or after from"),
        ({"timezone": "Mars/Olympus_Mons"}, "query.timezone", "IANA name"),
        ({"from": "2020-01-01", "to": "2024-12-31"}, "query.period", "use period=week"),
        ({"from": "1979-12-31"}, "query.from", "choose a date from 1980-01-01"),
        ({"product_id": 999999}, "query.product_id", "Unknown product id(s) 999999"),
        ({"category_id": [999998, 999999]}, "query.category_id", "id(s) 999998, 999999"),
        ({"channel_id": 999999}, "query.channel_id", "Unknown channel id(s) 999999"),
        ({"week_start": "funday"}, "query.week_start", "'monday'"),
    ],
)
def test_bad_parameters_say_what_to_change(
    sales_client: TestClient, viewer_headers: dict, params: dict, field: str, says: str
) -> None:
    response = sales_client.get(f"{API}/revenue", headers=viewer_headers, params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert says in body["detail"]
    fields = [f["field"] for f in body.get("fields", [])] or [body.get("field")]
    assert field in fields


@pytest.mark.parametrize(
    ("path", "params", "says"),
    [
        ("compare", {"against_from": "2025-01-01"}, "Give both against_from and against_to"),
        ("compare", {"against": "custom"}, "against=custom needs against_from"),
        (
            "compare",
            {"against_from": "2025-01-01", "against_to": "2025-01-02"},
            "apply only with against=custom",
        ),
        ("breakdown", {"by": "product", "parent_id": 1}, "apply only when grouping by category"),
        ("breakdown", {"by": "category", "parent_id": 999999}, "Unknown parent id(s) 999999"),
        ("breakdown", {"sort": "orders"}, "'-revenue'"),
        ("inventory-insight", {"window_days": 0}, "greater than or equal to 1"),
    ],
)
def test_other_reports_refuse_bad_parameters(
    sales_client: TestClient, viewer_headers: dict, path: str, params: dict, says: str
) -> None:
    response = sales_client.get(f"{API}/{path}", headers=viewer_headers, params=params)
    assert response.status_code == 422, response.text
    assert says in response.json()["detail"]


def test_reports_need_a_token_and_document_themselves(sales_client: TestClient) -> None:
    for path in ("revenue", "compare", "breakdown", "summary", "inventory-insight"):
        assert sales_client.get(f"{API}/{path}").status_code == 401
    spec = sales_client.get("/openapi.json").json()
    for path in ("revenue", "compare", "breakdown", "summary", "inventory-insight"):
        operation = spec["paths"][f"{API}/{path}"]["get"]
        assert operation["summary"]
        assert "422" in operation["responses"] and "401" in operation["responses"]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["$ref"].startswith("#/components/schemas/")
    assert "refunded_total" in spec["paths"][f"{API}/revenue"]["get"]["description"]
    assert spec["components"]["schemas"]["RevenueSeries"]["examples"]


REPORT_ROUTES = ["revenue", "compare", "breakdown", "summary", "inventory-insight"]


def test_a_revoked_token_reads_no_report(
    client: TestClient, sales_client: TestClient, admin_headers: dict
) -> None:
    """A report checks its caller in the database, as every route does: a token still
    unexpired but revoked by a logout is refused, and a live one reads."""
    email = f"reader-{uuid.uuid4().hex[:8]}@example.com"
    made = client.post(
        "/api/v1/users",
        json={"email": email, "password": "reader-password-1", "role": "viewer"},
        headers=admin_headers,
    )
    assert made.status_code == 201, made.text

    def token() -> dict[str, str]:
        answer = sales_client.post(
            "/api/v1/auth/login", json={"email": email, "password": "reader-password-1"}
        )
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    live, revoked = token(), token()
    assert sales_client.post("/api/v1/auth/logout", headers=revoked).status_code == 204
    for route in REPORT_ROUTES:
        refused = sales_client.get(f"{API}/{route}", headers=revoked)
        assert refused.status_code == 401, (route, refused.text)
        assert "revoked" in refused.json()["detail"]
        assert sales_client.get(f"{API}/{route}", headers=live).status_code == 200, route


def test_every_report_names_the_newest_sale_it_holds_while_the_rollups_lag(
    sales_client: TestClient, viewer_headers: dict, engine: Engine, catalog: Catalog
) -> None:
    """The watermark is read with the rollups' pending sales, in the report's snapshot: a
    sale the rollup consumer has not applied yet is in it."""
    catch_up(engine)
    today = today_in(ZoneInfo("UTC"))
    with Session(engine, expire_on_commit=False) as session:
        newest = add_sale(
            session,
            catalog,
            sold_at=datetime.now(UTC) - timedelta(minutes=1),
            channel_id=catalog.channels[0],
            lines=[line(catalog, 0, 1, "42.00")],
        )
        session.commit()
    params = {"from": str(today - timedelta(days=1)), "to": str(today), "timezone": "UTC"}
    for route in REPORT_ROUTES:
        answer = sales_client.get(f"{API}/{route}", headers=viewer_headers, params=params)
        if route == "inventory-insight":
            answer = sales_client.get(
                f"{API}/{route}", headers=viewer_headers, params={"timezone": "UTC"}
            )
        assert answer.status_code == 200, (route, answer.text)
        assert answer.json()["watermark"]["latest_sale_id"] == newest.id, route
