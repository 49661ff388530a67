"""``sales.today``: today's running revenue, orders and units, sent on the sales stream after
the sale events that change them.

The figures are the revenue report's (sales_service.reports.service.revenue_series, one day
in the client's timezone, with its product, category and channel filters), so they equal
what GET /api/v1/reports/revenue answers for today. The feed computes them for each
timezone and filter some client follows (once, however many clients share it) after a poll
batch with sale events that change them, at most every ``SHOP_STREAM_TODAY_SECONDS``, and
again at the zone's midnight, when "today" starts over.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from common.db import snapshot_connection
from common.streams.events import EventFilter, StreamEvent, encode
from common.streams.feed import Derived
from common.time_window import local_midnight
from sales_service.reports.calendar import Period, Weekday, resolve_range
from sales_service.reports.planner import Filters
from sales_service.reports.service import revenue_series

TODAY_EVENT = "sales.today"


@dataclass(frozen=True)
class TodayKey:
    """One set of today's figures: a timezone and the report filters of a client."""

    zone: str
    filters: Filters
    changed_by: EventFilter  # the sale events that change these figures


class TodayFigures:
    """The Derivation (common.streams.feed) of today's figures."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def affected(self, key: TodayKey, events: Sequence[StreamEvent]) -> bool:
        return any(key.changed_by.matches(event) for event in events)

    def compute(self, key: TodayKey) -> Derived:
        zone = ZoneInfo(key.zone)
        today = datetime.now(zone).date()
        with snapshot_connection(self.engine) as connection:
            series = revenue_series(
                connection=connection,
                rng=resolve_range(today, today, zone),
                period=Period.DAY,
                week_start=Weekday.MONDAY,
                filters=key.filters,
            )
        totals = series.totals
        data: dict[str, Any] = {
            "date": today,
            "timezone": key.zone,
            "revenue": totals.revenue,
            "orders": totals.orders,
            "units": totals.units,
            "average_order_value": totals.average_order_value,
            "filters": {
                "product_id": list(key.filters.product_ids),
                "category_id": list(key.filters.category_ids),
                "channel_id": list(key.filters.channel_ids),
            },
            "as_of": series.watermark.model_dump(mode="json"),
        }
        tomorrow = local_midnight(today + timedelta(days=1), zone)
        return Derived(encode(event=TODAY_EVENT, data=data), valid_until=tomorrow.timestamp())
