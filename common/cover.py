"""How long available stock lasts at the pace sales took it: one definition for the low-stock
list (products_service, from the ledger) and the inventory insight report (sales_service,
from the sales), so the two never disagree on the arithmetic."""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


@dataclass(frozen=True)
class StockCover:
    units_sold: int
    days_of_cover: Decimal | None
    projected_stockout_date: date | None


def stock_cover(*, available: int, units_sold: int, window_days: int, today: date) -> StockCover:
    """None available: 0.00 days, out today. Nothing sold (net units <= 0): null, null. Else
    available x window_days / units_sold days, half up to the cent, out on today + that many
    days rounded up (null past the last date a calendar holds)."""
    cover: Decimal | None = None
    stockout: date | None = None
    if available <= 0:
        cover, stockout = Decimal("0.00"), today
    elif units_sold > 0:
        cover = (Decimal(available) * window_days / units_sold).quantize(CENT, ROUND_HALF_UP)
        days = -(-available * window_days // units_sold)  # rounded up, in integers
        if days <= (date.max - today).days:
            stockout = today + timedelta(days=days)
    return StockCover(units_sold, cover, stockout)
