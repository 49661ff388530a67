"""Load the demo shop into a database.

    python -m demo.generate [--size 20000] [--seed 42] [--months 18] [--end ISO-DATETIME]
                            [--database-url URL] [--if-empty]

A catalog of about a hundred products in a category tree, three warehouses, four sales
channels and ``--size`` sales over the ``--months`` before ``--end`` (default: now), with
restocks, refunds and cancellations, all in one transaction. The same seed (and end) gives
the same data. ``--if-empty`` does nothing when the database already has products, which
makes it safe for a first-run script. The database URL defaults to the services' own
setting (``SHOP_DATABASE_URL``, else the embedded SQLite file).
"""

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from common.db import make_engine, make_sessionmaker, utcnow
from common.models import Product
from common.settings import CommonSettings
from demo import load
from demo.catalog import build_catalog
from demo.sales import Outcome, Plan, simulate
from demo.timeline import from_us, months_before
from sales_service.reports import rollups

DEFAULT_SIZE = 20_000
DEFAULT_SEED = 42
DEFAULT_MONTHS = 18
# The reports' bulk rebuild, called in the load's transaction when sales_service has one.
ROLLUP_REBUILD = "rebuild_rollups"


@dataclass(frozen=True)
class DemoSummary:
    """What was loaded (all zero when ``skipped``)."""

    skipped: bool
    sales: int = 0
    sale_lines: int = 0
    refunds: int = 0
    cancellations: int = 0
    movements: int = 0
    receipts: int = 0
    products: int = 0
    revenue: Decimal = Decimal("0.00")
    refunded: Decimal = Decimal("0.00")
    first_sale: datetime | None = None
    last_sale: datetime | None = None
    rollup_seconds: float | None = None  # None: sales_service has no rollup rebuild
    seconds: float = 0.0

    def describe(self) -> str:
        if self.skipped:
            return "demo data: the database already has products; nothing loaded (--if-empty)"
        rate = self.sales / self.seconds if self.seconds else 0.0
        span = (
            f"sales from {self.first_sale:%Y-%m-%d} to {self.last_sale:%Y-%m-%d}"
            if self.first_sale and self.last_sale
            else "no sales"
        )
        rollup_note = (
            f"report rollups rebuilt in {self.rollup_seconds:.1f} s"
            if self.rollup_seconds is not None
            else f"report rollups NOT rebuilt (no rollups.{ROLLUP_REBUILD})"
        )
        return (
            f"demo data: {self.sales:,} sales ({self.sale_lines:,} lines, "
            f"{self.refunds:,} refunds, {self.cancellations:,} cancellations), "
            f"{self.products} products, {self.movements:,} stock movements "
            f"({self.receipts:,} deliveries); revenue {self.revenue:,} "
            f"(refunded {self.refunded:,}); {span}; "
            f"{self.seconds:.1f} s ({rate:,.0f} sales/s); {rollup_note}"
        )


def _rebuild_rollups(session: Session) -> float | None:
    """Recompute the report rollups from the loaded rows; seconds taken, or None if absent."""
    rebuild = getattr(rollups, ROLLUP_REBUILD, None)
    if not callable(rebuild):
        return None
    started = time.perf_counter()
    rebuild(session.connection())
    return time.perf_counter() - started


def generate(
    *,
    database_url: str,
    size: int = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    months: int = DEFAULT_MONTHS,
    end: datetime | None = None,
    if_empty: bool = False,
    settings: CommonSettings | None = None,
    progress: Callable[[int], None] | None = None,
) -> DemoSummary:
    """Load the demo shop in one transaction; see the module docstring."""
    if size < 0 or months < 1:
        raise ValueError("size must be >= 0 and months >= 1")
    settings = settings or CommonSettings()
    end = (end or utcnow()).astimezone(UTC)
    if end > utcnow() + timedelta(minutes=1):
        raise ValueError("end is in the future; live sales refuse a future sold_at too")
    timezone = ZoneInfo(settings.store_timezone)
    started = time.perf_counter()
    catalog = build_catalog(seed)
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            if if_empty and session.scalar(select(exists().where(Product.id.is_not(None)))):
                return DemoSummary(skipped=True)
            opened = datetime.combine(
                months_before(end.astimezone(timezone).date(), months), datetime.min.time()
            ).replace(tzinfo=timezone) - timedelta(days=30)
            actor_id = load.demo_actor(session, settings)
            warehouses = load.demo_warehouses(session, opened)
            channels = load.demo_channels(session, opened)
            category_ids, product_ids = load.demo_catalog(session, catalog, opened)
            refs = load.refs_for(category_ids, product_ids, warehouses, channels, actor_id)
            ids = load.next_bulk_ids(session)

            writer = load.BulkWriter(session.connection(), progress=progress)
            try:
                outcome: Outcome = simulate(
                    Plan(size=size, seed=seed, months=months, end=end, timezone=timezone),
                    catalog,
                    refs,
                    ids,
                    writer,
                )
            finally:
                writer.close()
            load.write_levels(session, outcome.levels, from_us)
            load.set_thresholds(session, product_ids, outcome.thresholds)
            session.flush()
            rebuilt = _rebuild_rollups(session)
            session.commit()
    finally:
        engine.dispose()
    return DemoSummary(
        skipped=False,
        sales=outcome.sales,
        sale_lines=outcome.sale_lines,
        refunds=outcome.refunds,
        cancellations=outcome.cancellations,
        movements=outcome.movements,
        receipts=outcome.receipts,
        products=len(product_ids),
        revenue=Decimal(outcome.revenue_cents).scaleb(-2),
        refunded=Decimal(outcome.refunded_cents).scaleb(-2),
        first_sale=outcome.first_sale,
        last_sale=outcome.last_sale,
        rollup_seconds=rebuilt,
        seconds=time.perf_counter() - started,
    )


def _end(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demo.generate",
        description="Load a deterministic demo shop (catalog, stock, sales, refunds).",
    )
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="number of sales")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="same seed, same data")
    parser.add_argument("--months", type=int, default=DEFAULT_MONTHS, help="months of history")
    parser.add_argument(
        "--end", type=_end, default=None, help="end of the history, ISO 8601 (default: now)"
    )
    parser.add_argument(
        "--database-url", default=None, help="default: SHOP_DATABASE_URL or the embedded SQLite"
    )
    parser.add_argument("--if-empty", action="store_true", help="do nothing if any product exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = CommonSettings()
    step = max(100_000, args.size // 10)
    reported = [0]

    def progress(written: int) -> None:
        if written - reported[0] >= step:
            reported[0] = written
            print(f"  {written:,} sales written", file=sys.stderr, flush=True)

    try:
        summary = generate(
            database_url=args.database_url or settings.database_url,
            size=args.size,
            seed=args.seed,
            months=args.months,
            end=args.end,
            if_empty=args.if_empty,
            settings=settings,
            progress=progress,
        )
    except (load.DemoDataExists, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
