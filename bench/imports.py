"""How fast a catalog and a stock count import, and how much memory that takes.

Creates a fresh MariaDB/MySQL database (migrated with the Alembic history), writes a products
CSV of ``--rows`` rows (in 20 categories, created by the import) and a stock count of the
same products, then runs, through the same code as the API upload and the CLI
(``products_service.imports.service``), each in one transaction as a real run does (both
passes: the check, then the writes with their events, audit entries and ledger rows):

1. the products import (all rows new);
2. the same file again (every row unchanged: nothing written);
3. the stock count import (one count correction per row);
4. an Amazon order report of ``--rows`` order lines (orders of 1 to 3 lines) as history
   (sales, their lines and their events; no stock), then the report rollups' consumer
   catching up on those events, then the same report again (nothing new);

and prints rows/s for each, the process's peak memory, and the ledger check; then drops the
database. Run it with two sizes to see memory stay flat while the file grows.

    .venv/bin/python bench/imports.py                   # 50,000 rows
    .venv/bin/python bench/imports.py --rows 200000
"""

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy import insert  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from common import migrate  # noqa: E402
from common.db import make_engine, make_sessionmaker, snapshot_session, utcnow  # noqa: E402
from common.imports import ImportReport  # noqa: E402
from common.models import SalesChannel  # noqa: E402
from products_service.imports.service import (  # noqa: E402
    ImportOptions,
    import_products,
    import_stock_counts,
)
from products_service.inventory.service import check_ledger  # noqa: E402
from sales_service.imports.service import (  # noqa: E402
    OrderImportOptions,
    OrderProfile,
    import_orders,
)
from sales_service.reports.consumer import catch_up  # noqa: E402

Importer = Callable[..., ImportReport]


def write_files(directory: Path, rows: int) -> tuple[Path, Path]:
    catalog = directory / "catalog.csv"
    counts = directory / "counts.csv"
    with catalog.open("w") as out:
        out.write("sku,name,description,category,price,cost_price,low_stock_threshold,status\n")
        for n in range(rows):
            out.write(
                f'BENCH-{n:08d},"Product {n}, bench","A product, made up",'
                f"Bench/Group {n % 20},{10 + n % 90}.{n % 100:02d},{5 + n % 5}.25,{n % 15},active\n"
            )
    with counts.open("w") as out:
        out.write("sku,warehouse,counted_quantity\n")
        for n in range(rows):
            out.write(f"BENCH-{n:08d},MAIN,{1 + n % 40}\n")
    return catalog, counts


def write_orders(directory: Path, rows: int) -> Path:
    """An Amazon order report (tab-separated) of this many lines over the bench's SKUs."""
    report = directory / "amazon-orders.txt"
    with report.open("w") as out:
        out.write(
            "amazon-order-id\tpurchase-date\torder-status\tsku\tquantity\tcurrency\titem-price\n"
        )
        order, left = 0, 0
        for n in range(rows):
            if left == 0:
                order, left = order + 1, 1 + order % 3
            left -= 1
            day = 1 + order % 28
            out.write(
                f"B{order:09d}\t2026-02-{day:02d}T{order % 24:02d}:15:00+00:00\tShipped\t"
                f"BENCH-{n % rows:08d}\t{1 + n % 3}\tUSD\t{(1 + n % 3) * 1050 // 100}."
                f"{(1 + n % 3) * 1050 % 100:02d}\n"
            )
    return report


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(label: str, session: Session, run: Importer, binary: IO[bytes], options: object) -> None:
    started = time.perf_counter()
    report = run(session=session, binary=binary, options=options)
    session.commit()
    seconds = time.perf_counter() - started
    assert report.ok, report.errors[:5]
    print(
        f"{label:<28} {report.rows_read:>9,} rows in {seconds:7.2f} s = "
        f"{report.rows_read / seconds:>9,.0f} rows/s  (created {report.created:,}, updated "
        f"{report.updated:,}, unchanged {report.unchanged:,}; peak RSS {peak_mib():,.0f} MiB)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("SHOP_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306"),
        help="server to create the bench database on (default: the local MariaDB as root)",
    )
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        catalog, counts = write_files(Path(scratch), args.rows)
        size = catalog.stat().st_size + counts.stat().st_size
        print(f"files: {args.rows:,} rows each, {size / 2**20:,.1f} MiB in all")
        print(f"peak RSS before importing: {peak_mib():,.0f} MiB")
        with migrate.scratch_database(args.mysql_url, "shop_bench") as url:
            engine = make_engine(url)
            try:
                sessions = make_sessionmaker(engine)
                products = ImportOptions(file_name=catalog.name, create_categories=True)
                with sessions() as session, catalog.open("rb") as binary:
                    timed("products (new)", session, import_products, binary, products)
                with sessions() as session, catalog.open("rb") as binary:
                    timed("products (again, unchanged)", session, import_products, binary, products)
                with sessions() as session, counts.open("rb") as binary:
                    timed(
                        "stock counts",
                        session,
                        import_stock_counts,
                        binary,
                        ImportOptions(file_name=counts.name),
                    )
                with engine.begin() as connection:
                    connection.execute(
                        insert(SalesChannel).values(
                            code="amazon",
                            name="Amazon",
                            is_active=True,
                            created_at=utcnow(),
                            updated_at=utcnow(),
                        )
                    )
                orders = write_orders(Path(scratch), args.rows)
                options = OrderImportOptions(
                    profile=OrderProfile.AMAZON, timezone="UTC", file_name=orders.name
                )
                for label in ("orders (history)", "orders (again, unchanged)"):
                    with sessions() as session, orders.open("rb") as binary:
                        timed(label, session, import_orders, binary, options)
                    if label == "orders (history)":
                        started = time.perf_counter()
                        events = catch_up(engine)
                        seconds = time.perf_counter() - started
                        print(
                            f"{'rollups catching up':<28} {events:>9,} events in {seconds:7.2f} s "
                            f"= {events / seconds:>9,.0f} events/s"
                        )
                with snapshot_session(engine) as session:
                    ledger = check_ledger(session=session)
                print(f"ledger check: ok={ledger.ok}, {ledger.levels_checked:,} levels")
            finally:
                engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
