"""Operator commands for sales_service.

    python -m sales_service.cli rebuild-rollups              # one transaction
    python -m sales_service.cli rebuild-rollups --workers 4  # months summed 4 at a time
    python -m sales_service.cli import-orders report.txt --profile amazon [--dry-run]

Settings (the database URL above all) come from the environment (``SHOP_*``) or ``.env``.
"""

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from common.app import freeze_startup_heap
from common.auth.security import ServiceCredential
from common.db import make_engine, make_sessionmaker
from common.delimited import Encoding, TableFormat
from common.errors import AppError
from common.imports import import_file, summary
from common.models import User
from common.settings import get_sales_settings
from sales_service.clients.products import ProductsClient
from sales_service.imports.service import (
    OrderImportOptions,
    OrderProfile,
    TakeStock,
    import_orders,
)
from sales_service.reports.consumer import rebuild


def _rebuild_rollups(args: argparse.Namespace) -> int:
    """Recompute the report rollups from the raw sales (after bulk-loading sales by hand or
    moving categories); run it while no sale or refund is being recorded."""
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    engine = make_engine(get_sales_settings().database_url, pool_size=args.workers + 1)
    started = time.perf_counter()
    try:
        rebuild(engine, workers=args.workers)
    finally:
        engine.dispose()
    print(f"report rollups rebuilt in {time.perf_counter() - started:.1f} s")
    return 0


def _import_orders(args: argparse.Namespace) -> int:
    """Import orders from a local file as sales (the API upload's code); exit 1 if refused."""
    path = Path(args.file)
    if not path.is_file():
        print(f"error: no such file: {path}", file=sys.stderr)
        return 2
    settings = get_sales_settings()
    zone = args.timezone or settings.store_timezone
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        print(f"error: unknown IANA timezone {zone!r}", file=sys.stderr)
        return 2
    if any("=" not in pair for pair in args.map):
        print("error: --map takes HEADER=FIELD", file=sys.stderr)
        return 2
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            actor = None
            if args.actor:
                actor = session.scalar(select(User.id).where(User.email == args.actor))
                if actor is None:
                    print(f"error: no user {args.actor}", file=sys.stderr)
                    return 2
            options = OrderImportOptions(
                profile=OrderProfile(args.profile),
                timezone=zone,
                channel_code=args.channel,
                column_map=dict(pair.rsplit("=", 1) for pair in args.map),
                file_name=path.name,
                encoding=Encoding(args.encoding),
                table_format=TableFormat(args.format) if args.format else None,
                dry_run=args.dry_run,
                actor_id=actor,
                cancelled="import" if args.import_cancelled else "skip",
            )
            products = (
                ProductsClient(
                    settings.products_service_url,
                    timeout_seconds=settings.products_timeout_seconds,
                    retries=settings.products_retries,
                    credential=ServiceCredential("sales_service", settings),
                )
                if args.take_stock
                else None
            )
            try:
                report = import_file(
                    session,
                    path,
                    lambda binary, progress: import_orders(
                        session=session,
                        binary=binary,
                        options=options,
                        take_stock=TakeStock(products) if products is not None else None,
                        progress=progress,
                    ),
                )
            except AppError as exc:
                print(f"error: {exc.detail}", file=sys.stderr)
                return 2
            finally:
                if products is not None:
                    products.close()
    finally:
        engine.dispose()
    print(report.model_dump_json(indent=2) if args.json else summary(report))
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sales_service.cli", description="sales_service operator commands"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    orders = commands.add_parser("import-orders", help=_import_orders.__doc__)
    orders.add_argument("file", help="a CSV or tab-separated order report")
    orders.add_argument("--profile", choices=[p.value for p in OrderProfile], default="generic")
    orders.add_argument("--channel", help="the channel's code (default: the profile's)")
    orders.add_argument("--timezone", help="IANA zone of dates without an offset")
    orders.add_argument(
        "--map", action="append", default=[], metavar="HEADER=FIELD", help="generic files"
    )
    orders.add_argument(
        "--import-cancelled",
        action="store_true",
        help="record cancelled orders as sales cancelled at once (default: skip them)",
    )
    orders.add_argument(
        "--take-stock",
        action="store_true",
        help="today's orders: each takes its stock through products_service (default: history)",
    )
    orders.add_argument("--dry-run", action="store_true", help="check and report; write nothing")
    orders.add_argument("--encoding", choices=[e.value for e in Encoding], default="utf-8")
    orders.add_argument("--format", choices=[f.value for f in TableFormat], default=None)
    orders.add_argument("--actor", metavar="EMAIL", help="the user the sales are recorded by")
    orders.add_argument("--json", action="store_true", help="print the whole report as JSON")
    orders.set_defaults(run=_import_orders)

    rebuild = commands.add_parser("rebuild-rollups", help=_rebuild_rollups.__doc__)
    rebuild.add_argument(
        "--workers",
        type=int,
        default=1,
        help="months summed on this many connections at once, each month committed on its "
        "own (default 1: the whole rebuild in one transaction)",
    )
    rebuild.set_defaults(run=_rebuild_rollups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    freeze_startup_heap()
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
