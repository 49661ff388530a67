"""Revenue reports: series, comparison, breakdown, summary KPIs and inventory insight.

Every figure is net of refunds and cancellations and attributed to the sale's ``sold_at``;
see sales_service/reports/service.py for the one set of definitions.
"""

from collections.abc import Callable
from datetime import date
from typing import Annotated, NamedTuple, ParamSpec, TypeVar
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy import Connection

from common.auth.dependencies import BearerClaims, SettingsDep, authenticate
from common.auth.security import TokenClaims
from common.db import snapshot_connection
from common.errors import Unprocessable, error_responses
from common.pagination import MAX_OFFSET
from common.time_window import resolve_zone
from sales_service.reports import service
from sales_service.reports.calendar import (
    DateRange,
    Period,
    Preset,
    Weekday,
    check_date,
    resolve_range,
    today_in,
)
from sales_service.reports.parameters import Against, CategoryRollup, Dimension, SortKey
from sales_service.reports.planner import Filters
from sales_service.reports.schemas import (
    Breakdown,
    Comparison,
    InventoryInsight,
    RevenueSeries,
    Summary,
)
from sales_service.reports.service import Grouping

P = ParamSpec("P")
R = TypeVar("R")
DEFINITIONS = (
    "\n\nFigures: revenue = sum(line_total - refunded_total), units = sum(quantity - "
    "refunded_quantity), cost = sum(line_cost - refunded_cost), margin = revenue - cost, "
    "over the lines matching the filters; orders = sales with at least one matching line "
    "that still has a unit not refunded; average order value = revenue / orders. A sale and "
    "its refunds count in the period of its sold_at. `from`/`to` are dates in `timezone`, "
    "both included, or `preset` names them."
)


def with_definitions(route: Callable[P, R]) -> Callable[P, R]:
    """Append the figure definitions to the route's docstring (its OpenAPI description)."""
    route.__doc__ = (route.__doc__ or "") + DEFINITIONS
    return route


router = APIRouter(prefix="/reports", tags=["reports"], responses=error_responses(401, 422))


async def read_report(
    request: Request, claims: TokenClaims, report: Callable[[Connection], BaseModel]
) -> Response:
    """Check the caller (401 for a revoked token) and run ``report`` on a read-only connection
    on one consistent snapshot, so the figures and the watermark agree: all of it on one
    worker thread (a plain `def` route and its session would take four hops).

    The answer is written as JSON there too, by pydantic's own serializer: FastAPI's way
    (the model to Python values, then ``json.dumps``) took 5.8 ms for a daily series over
    three years, this 1.7. Each route names its model as ``response_model`` for the docs.

    The request's own session runs at READ COMMITTED, where each statement may see newer
    commits; a report makes several reads that must add up. Nor does a long report hold up
    the sales being recorded meanwhile (see snapshot_connection).
    """

    def run() -> str:
        with snapshot_connection(request.app.state.engine) as snapshot:
            authenticate(snapshot, claims)
            answer = report(snapshot)
        return answer.model_dump_json(by_alias=True)  # the connection is back in its pool

    return Response(await run_in_threadpool(run), media_type="application/json")


From = Annotated[
    date | None,
    Query(alias="from", description="First day, in `timezone` (default: 29 days before `to`)"),
]
To = Annotated[
    date | None,
    Query(alias="to", description="Last day included, in `timezone` (default: today there)"),
]
PresetParameter = Annotated[
    Preset | None,
    Query(
        alias="preset",
        description="Instead of `from`/`to` (not with them): a range counted from today in "
        "`timezone` at the moment of the request. last_7_days and last_30_days end today, "
        "today included; month_to_date, quarter_to_date and year_to_date run from the start "
        "of the current calendar period to today; last_month, last_quarter and last_year are "
        "the whole calendar period before the current one. The answer's `parameters` give "
        "the dates it resolved to",
    ),
]
Timezone = Annotated[
    str | None,
    Query(
        description="IANA zone for dates and periods (default: the store's)",
        examples=["Europe/Berlin"],
    ),
]
ProductIds = Annotated[list[int] | None, Query(alias="product_id", description="Repeatable")]
CategoryIds = Annotated[
    list[int] | None,
    Query(alias="category_id", description="Repeatable; each includes its subcategories"),
]
ChannelIds = Annotated[list[int] | None, Query(alias="channel_id", description="Repeatable")]
Rollup = Annotated[
    CategoryRollup,
    Query(description="Category rows: `top_level` rolls subcategories into their top parent"),
]
ParentId = Annotated[
    int | None,
    Query(
        description="Category rows: this category's own sales plus one row per child "
        "(subcategories rolled up into it); the totals are then those of its subtree"
    ),
]
AgainstParameter = Annotated[
    Against,
    Query(
        alias="against",
        description="previous_period: as many days just before. previous_month, "
        "previous_quarter, previous_year: whole calendar months (quarters, years) compare "
        "with as many whole ones just before (November with October, Q1 with the Q4 before); "
        "any other range moves back one month (three months, a year), whole months staying "
        "whole and other days moving day by day, a day past the month's end becoming its "
        "last day (31 Mar -> 28 Feb, 29 Feb -> 28 Feb). custom: against_from..against_to. "
        "The answer's `base` names the dates",
    ),
]
AgainstFrom = Annotated[date | None, Query(description="With against=custom")]
AgainstTo = Annotated[date | None, Query(description="With against=custom")]


def _zone(timezone: str | None, settings: SettingsDep) -> ZoneInfo:
    return resolve_zone(timezone or settings.store_timezone)


async def report_dates(  # async: no thread hop for a few lines of arithmetic
    settings: SettingsDep,
    from_date: From = None,
    to_date: To = None,
    preset: PresetParameter = None,
    timezone: Timezone = None,
) -> DateRange:
    """The report's days in its zone: `from`/`to` with their defaults, or a preset."""
    return resolve_range(from_date, to_date, _zone(timezone, settings), preset=preset)


ReportDates = Annotated[DateRange, Depends(report_dates)]


class Baseline(NamedTuple):
    """What the report's range is compared with: a rule, or the dates of against=custom."""

    against: Against
    custom: DateRange | None


async def resolve_baseline(
    rng: ReportDates,
    against: AgainstParameter = Against.PREVIOUS_PERIOD,
    against_from: AgainstFrom = None,
    against_to: AgainstTo = None,
) -> Baseline:
    """The comparison parameters, the custom dates resolved in the report's zone."""
    if against_from is None and against_to is None:
        return Baseline(against, None)
    if against_from is None or against_to is None:
        raise Unprocessable("Give both against_from and against_to", field="query.against_from")
    names = ("against_from", "against_to")
    return Baseline(against, resolve_range(against_from, against_to, rng.zone, names=names))


BaselineDep = Annotated[Baseline, Depends(resolve_baseline)]


def _filters(
    product_ids: list[int] | None, category_ids: list[int] | None, channel_ids: list[int] | None
) -> Filters:
    return Filters(
        product_ids=tuple(sorted(set(product_ids or []))),
        category_ids=tuple(sorted(set(category_ids or []))),
        channel_ids=tuple(sorted(set(channel_ids or []))),
    )


@router.get("/revenue", summary="Revenue series by period", response_model=RevenueSeries)
@with_definitions
async def get_revenue_report(
    request: Request,
    claims: BearerClaims,
    rng: ReportDates,
    period: Annotated[Period, Query(description="Calendar period of each bucket")] = Period.DAY,
    week_start: Annotated[Weekday, Query(description="First day of a week")] = Weekday.MONDAY,
    product_ids: ProductIds = None,
    category_ids: CategoryIds = None,
    channel_ids: ChannelIds = None,
) -> Response:
    """Revenue, units, orders, average order value and margin per day, week, month, quarter or
    year of the zone, with each bucket's start and end, empty buckets as zeros, and totals.
    A week, month, quarter or year that the range cuts at either edge is `partial`.

    A series has at most 1100 buckets (e.g. three years of days)."""
    return await read_report(
        request,
        claims,
        lambda snapshot: service.revenue_series(
            connection=snapshot,
            rng=rng,
            period=period,
            week_start=week_start,
            filters=_filters(product_ids, category_ids, channel_ids),
        ),
    )


@router.get("/compare", summary="Compare two periods", response_model=Comparison)
@with_definitions
async def compare_periods(
    request: Request,
    claims: BearerClaims,
    rng: ReportDates,
    baseline: BaselineDep,
    group_by: Annotated[
        Dimension | None, Query(description="Also compare per product, category or channel")
    ] = None,
    category_rollup: Rollup = CategoryRollup.NONE,
    parent_id: ParentId = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Groups returned")] = 50,
    product_ids: ProductIds = None,
    category_ids: CategoryIds = None,
    channel_ids: ChannelIds = None,
) -> Response:
    """Each figure for both periods with the difference and the percentage change (null, not
    an error, where the base is zero), overall and optionally per group."""
    return await read_report(
        request,
        claims,
        lambda snapshot: service.compare(
            connection=snapshot,
            rng=rng,
            against=baseline.against,
            custom=baseline.custom,
            grouping=Grouping(group_by, category_rollup, parent_id),
            filters=_filters(product_ids, category_ids, channel_ids),
            limit=limit,
        ),
    )


@router.get("/breakdown", summary="Top products, categories or channels", response_model=Breakdown)
@with_definitions
async def get_breakdown_report(
    request: Request,
    claims: BearerClaims,
    rng: ReportDates,
    by: Annotated[Dimension, Query(description="What each group is")] = Dimension.PRODUCT,
    category_rollup: Rollup = CategoryRollup.NONE,
    parent_id: ParentId = None,
    sort: Annotated[
        SortKey, Query(description="Figure to rank by; a leading '-' ranks highest first")
    ] = SortKey.REVENUE,
    limit: Annotated[int, Query(ge=1, le=500, description="Top N groups")] = 10,
    product_ids: ProductIds = None,
    category_ids: CategoryIds = None,
    channel_ids: ChannelIds = None,
) -> Response:
    """Figures per product, category (its own sales, or with subcategories rolled up into the
    top-level category or into the children of `parent_id`) or channel: the top `limit`
    `groups` by revenue, units or margin, how many there were (`group_count`), and the
    `totals` of the range (with `parent_id`, of the parent's subtree).

    A group's orders are the orders holding it, so groups may add up to more orders than the
    total; every other figure of all the groups adds up to the totals."""
    return await read_report(
        request,
        claims,
        lambda snapshot: service.breakdown(
            connection=snapshot,
            rng=rng,
            grouping=Grouping(by, category_rollup, parent_id),
            filters=_filters(product_ids, category_ids, channel_ids),
            sort=sort,
            limit=limit,
        ),
    )


@router.get("/summary", summary="Summary KPIs against a base period", response_model=Summary)
@with_definitions
async def get_summary_report(
    request: Request,
    claims: BearerClaims,
    rng: ReportDates,
    baseline: BaselineDep,
    product_ids: ProductIds = None,
    category_ids: CategoryIds = None,
    channel_ids: ChannelIds = None,
) -> Response:
    """Revenue, cost, margin, margin %, units, orders, average order value, units per order
    and revenue per day for the range and for its `base` period: by default the same number
    of days just before it, or as `against` says, as in compare."""
    return await read_report(
        request,
        claims,
        lambda snapshot: service.summary(
            connection=snapshot,
            rng=rng,
            filters=_filters(product_ids, category_ids, channel_ids),
            against=baseline.against,
            custom=baseline.custom,
        ),
    )


@router.get(
    "/inventory-insight",
    summary="Sales velocity, days of cover and stock-out dates",
    response_model=InventoryInsight,
)
@with_definitions
async def get_inventory_insight(
    request: Request,
    claims: BearerClaims,
    settings: SettingsDep,
    as_of: Annotated[
        date | None, Query(description="Last day of the window (default: today in the zone)")
    ] = None,
    window_days: Annotated[int, Query(ge=1, le=1100, description="Days of sales measured")] = 28,
    timezone: Timezone = None,
    product_ids: ProductIds = None,
    category_ids: CategoryIds = None,
    channel_ids: ChannelIds = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Response:
    """Per product (by its current category): net units sold per day over the `window_days`
    days ending `as_of`, available stock (on hand less reserved, all warehouses), days of
    cover at that velocity and the projected stock-out date; soonest stock-out first."""
    zone = _zone(timezone, settings)
    day = as_of or today_in(zone)
    check_date(day, "as_of")
    return await read_report(
        request,
        claims,
        lambda snapshot: service.inventory_insight(
            connection=snapshot,
            as_of=day,
            zone=zone,
            window_days=window_days,
            filters=_filters(product_ids, category_ids, channel_ids),
            limit=limit,
            offset=offset,
        ),
    )
