"""Report answers. Money is a decimal string, times ISO 8601 with the zone's offset."""

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from sales_service.reports.calendar import Period, Preset, Weekday
from sales_service.reports.parameters import Against, CategoryRollup, Dimension, SortKey

REVENUE = "Sum of line_total - refunded_total over the matching lines"
COST = "Sum of line_cost - refunded_cost (cost snapshotted at the time of sale)"
MARGIN = "Gross margin: revenue - cost"
UNITS = "Sum of quantity - refunded_quantity"
ORDERS = (
    "Sales with at least one matching line that still has a unit not refunded "
    "(cancelled and fully refunded sales are not orders)"
)
AOV = "revenue / orders, rounded half up to the cent; null without orders"


class Figures(BaseModel):
    """The net figures every report uses (see the definitions in the API description)."""

    revenue: Annotated[Decimal, Field(description=REVENUE, examples=["1520.40"])]
    cost: Annotated[Decimal, Field(description=COST, examples=["610.15"])]
    margin: Annotated[Decimal, Field(description=MARGIN, examples=["910.25"])]
    units: Annotated[int, Field(description=UNITS, examples=[57])]
    orders: Annotated[int, Field(description=ORDERS, examples=[31])]
    average_order_value: Annotated[Decimal | None, Field(description=AOV, examples=["49.05"])]


class Watermark(BaseModel):
    """The newest data the report's snapshot held, so the same numbers can be reproduced."""

    latest_sale_id: int | None
    latest_sale_created_at: datetime | None
    sales_updated_at: Annotated[
        datetime | None,
        Field(description="The newest change to any sale (a refund changes an old sale)"),
    ]
    latest_refund_id: int | None
    read_at: datetime


class InventoryWatermark(Watermark):
    stock_updated_at: datetime | None


class ResolvedParameters(BaseModel):
    """The parameters the report used, defaults filled in."""

    model_config = ConfigDict(populate_by_name=True)

    timezone: Annotated[str, Field(examples=["Europe/Berlin"])]
    from_: Annotated[date, Field(alias="from", description="First day included, in the zone")]
    to: Annotated[date, Field(description="Last day included, in the zone")]
    start: Annotated[datetime, Field(description="First instant of the range")]
    end: Annotated[datetime, Field(description="First instant after the range")]
    product_ids: list[int]
    category_ids: Annotated[list[int], Field(description="Each with all its subcategories")]
    channel_ids: list[int]


class RangeParameters(ResolvedParameters):
    preset: Annotated[
        Preset | None,
        Field(description="The preset `from` and `to` were resolved from; null when given"),
    ]


class SeriesParameters(RangeParameters):
    period: Period
    week_start: Weekday


class RevenueBucket(Figures):
    start: Annotated[datetime, Field(examples=["2025-03-30T00:00:00+01:00"])]
    end: Annotated[datetime, Field(examples=["2025-03-31T00:00:00+02:00"])]
    label: Annotated[str, Field(examples=["2025-03-30", "2025-03", "2025-Q1", "2025"])]
    partial: Annotated[
        bool,
        Field(
            description="true when the range cuts this period (it starts after the period "
            "does or ends before it does, as a week or month at either edge may), so the "
            "bucket holds fewer days than its label names; `start`/`end` are the days it "
            "holds. Day buckets are never partial",
            examples=[False],
        ),
    ]


SOURCES = Field(
    description="What the numbers were read from: rollup tables and/or the raw sales rows"
)


class RevenueSeries(BaseModel):
    """Figures per calendar period of the zone (empty periods as zeros) and their totals."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "parameters": {
                        "timezone": "Europe/Berlin",
                        "from": "2025-03-30",
                        "to": "2025-03-31",
                        "start": "2025-03-30T00:00:00+01:00",
                        "end": "2025-04-01T00:00:00+02:00",
                        "product_ids": [],
                        "category_ids": [],
                        "channel_ids": [],
                        "preset": None,
                        "period": "day",
                        "week_start": "monday",
                    },
                    "buckets": [
                        {
                            "start": "2025-03-30T00:00:00+01:00",
                            "end": "2025-03-31T00:00:00+02:00",
                            "label": "2025-03-30",
                            "partial": False,
                            "revenue": "120.00",
                            "cost": "50.00",
                            "margin": "70.00",
                            "units": 4,
                            "orders": 2,
                            "average_order_value": "60.00",
                        },
                        {
                            "start": "2025-03-31T00:00:00+02:00",
                            "end": "2025-04-01T00:00:00+02:00",
                            "label": "2025-03-31",
                            "partial": False,
                            "revenue": "0.00",
                            "cost": "0.00",
                            "margin": "0.00",
                            "units": 0,
                            "orders": 0,
                            "average_order_value": None,
                        },
                    ],
                    "totals": {
                        "revenue": "120.00",
                        "cost": "50.00",
                        "margin": "70.00",
                        "units": 4,
                        "orders": 2,
                        "average_order_value": "60.00",
                    },
                    "sources": ["report_sales_rollups"],
                    "watermark": {
                        "latest_sale_id": 812,
                        "latest_sale_created_at": "2025-04-02T09:14:03.120000Z",
                        "sales_updated_at": "2025-04-02T09:14:03.120000Z",
                        "latest_refund_id": 17,
                        "read_at": "2025-04-02T09:20:00Z",
                    },
                }
            ]
        }
    )

    parameters: SeriesParameters
    buckets: list[RevenueBucket]
    totals: Figures
    sources: Annotated[list[str], SOURCES]
    watermark: Watermark


class MoneyChange(BaseModel):
    current: Decimal | None
    base: Decimal | None
    difference: Decimal | None
    percent_change: Annotated[
        Decimal | None, Field(description="(current - base) / base x 100; null when base is 0")
    ]


class CountChange(BaseModel):
    current: int
    base: int
    difference: int
    percent_change: Annotated[
        Decimal | None, Field(description="(current - base) / base x 100; null when base is 0")
    ]


class FiguresChange(BaseModel):
    revenue: MoneyChange
    cost: MoneyChange
    margin: MoneyChange
    units: CountChange
    orders: CountChange
    average_order_value: MoneyChange


class GroupRef(BaseModel):
    id: Annotated[int | None, Field(description="null for the uncategorized group")]
    name: str
    sku: Annotated[str | None, Field(description="Products only")] = None


class GroupChange(GroupRef, FiguresChange):
    pass


class PeriodRead(BaseModel):
    """A range of calendar days in the report's zone: the one asked for, or its base."""

    model_config = ConfigDict(populate_by_name=True)

    from_: Annotated[date, Field(alias="from")]
    to: date
    start: datetime
    end: datetime
    days: int


AGAINST = Field(description="What the range is compared with; the answer's `base` names the dates")


class CompareParameters(RangeParameters):
    against: Annotated[Against, AGAINST]
    group_by: Dimension | None
    category_rollup: CategoryRollup
    parent_id: int | None
    limit: int


GROUPS = "Per group, ranked; at most `limit` of them"
GROUP_COUNT = "How many groups there were before `limit` cut the list"


class Comparison(BaseModel):
    """Two periods side by side: both values, the difference and the percentage change."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "current": {
                        "from": "2025-11-01",
                        "to": "2025-11-30",
                        "start": "2025-11-01T00:00:00+01:00",
                        "end": "2025-12-01T00:00:00+01:00",
                        "days": 30,
                    },
                    "base": {
                        "from": "2025-10-01",
                        "to": "2025-10-31",
                        "start": "2025-10-01T00:00:00+02:00",
                        "end": "2025-11-01T00:00:00+01:00",
                        "days": 31,
                    },
                    "overall": {
                        "revenue": {
                            "current": "1200.00",
                            "base": "1000.00",
                            "difference": "200.00",
                            "percent_change": "20.00",
                        },
                        "orders": {
                            "current": 30,
                            "base": 0,
                            "difference": 30,
                            "percent_change": None,
                        },
                    },
                    "groups": [
                        {
                            "id": 3,
                            "name": "Web store",
                            "sku": None,
                            "revenue": {
                                "current": "900.00",
                                "base": "1000.00",
                                "difference": "-100.00",
                                "percent_change": "-10.00",
                            },
                        }
                    ],
                    "group_count": 2,
                }
            ]
        }
    )

    parameters: CompareParameters
    current: PeriodRead
    base: Annotated[PeriodRead, Field(description="The period compared with (see `against`)")]
    overall: Annotated[
        FiguresChange,
        Field(description="All the filtered sales; with `parent_id`, those of its subtree"),
    ]
    groups: Annotated[
        list[GroupChange],
        Field(description=GROUPS + " by current revenue (empty without group_by)"),
    ]
    group_count: Annotated[
        int, Field(description=GROUP_COUNT + ": those with sales in either period")
    ]
    sources: Annotated[list[str], SOURCES]
    watermark: Watermark


class BreakdownParameters(RangeParameters):
    by: Dimension
    category_rollup: CategoryRollup
    parent_id: int | None
    sort: SortKey
    limit: int


class BreakdownRow(GroupRef, Figures):
    pass


class Breakdown(BaseModel):
    """Figures per product, category or channel over the range, the top N by a figure."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "groups": [
                        {
                            "id": 7,
                            "name": "Mug",
                            "sku": "MUG-1",
                            "revenue": "250.00",
                            "cost": "82.00",
                            "margin": "168.00",
                            "units": 20,
                            "orders": 14,
                            "average_order_value": "17.86",
                        }
                    ],
                    "group_count": 1,
                    "totals": {
                        "revenue": "250.00",
                        "cost": "82.00",
                        "margin": "168.00",
                        "units": 20,
                        "orders": 14,
                        "average_order_value": "17.86",
                    },
                }
            ]
        }
    )

    parameters: BreakdownParameters
    groups: Annotated[list[BreakdownRow], Field(description=GROUPS + " by `sort`")]
    group_count: Annotated[int, Field(description=GROUP_COUNT + ": those with sales in the range")]
    totals: Annotated[
        Figures,
        Field(
            description="The whole range with the same filters; with `parent_id`, the parent's "
            "subtree, so all the groups add up to it (but for orders: a sale holding two "
            "groups is an order in each)"
        ),
    ]
    sources: Annotated[list[str], SOURCES]
    watermark: Watermark


class KpiChanges(FiguresChange):
    margin_percent: MoneyChange
    units_per_order: MoneyChange
    revenue_per_day: MoneyChange


class SummaryParameters(RangeParameters):
    against: Annotated[Against, AGAINST]


class Summary(BaseModel):
    """Headline figures for the range against a base period (the days just before it by
    default)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "current": {"from": "2025-03-01", "to": "2025-03-31", "days": 31},
                    "base": {"from": "2025-01-29", "to": "2025-02-28", "days": 31},
                    "kpis": {
                        "margin_percent": {
                            "current": "41.20",
                            "base": "39.80",
                            "difference": "1.40",
                            "percent_change": "3.52",
                        }
                    },
                }
            ]
        }
    )

    parameters: SummaryParameters
    current: PeriodRead
    base: Annotated[PeriodRead, Field(description="The period compared with (see `against`)")]
    kpis: KpiChanges
    sources: Annotated[list[str], SOURCES]
    watermark: Watermark


class InsightParameters(ResolvedParameters):
    as_of: date
    window_days: int


class ProductInsight(BaseModel):
    product_id: int
    sku: str
    name: str
    available: Annotated[int, Field(description="Sum of on_hand - reserved over warehouses")]
    units_sold: Annotated[int, Field(description="Net units sold in the window")]
    velocity_per_day: Annotated[Decimal, Field(description="units_sold / window_days")]
    days_of_cover: Annotated[
        Decimal | None,
        Field(description="available / velocity_per_day; null when nothing sold"),
    ]
    projected_stockout_date: Annotated[
        date | None,
        Field(description="as_of + days of cover rounded up; as_of when none is available"),
    ]


class InventoryInsight(BaseModel):
    """Sales velocity, days of cover and projected stock-out per product, soonest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "product_id": 7,
                            "sku": "MUG-1",
                            "name": "Mug",
                            "available": 12,
                            "units_sold": 56,
                            "velocity_per_day": "2.0000",
                            "days_of_cover": "6.00",
                            "projected_stockout_date": "2025-04-08",
                        }
                    ],
                    "total": 1,
                    "limit": 50,
                    "offset": 0,
                }
            ]
        }
    )

    parameters: InsightParameters
    items: list[ProductInsight]
    total: int
    limit: int
    offset: int
    sources: Annotated[list[str], SOURCES]
    watermark: InventoryWatermark
