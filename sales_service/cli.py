"""Operator commands for sales_service.

    python -m sales_service.cli rebuild-rollups              # one transaction
    python -m sales_service.cli rebuild-rollups --workers 4  # months summed 4 at a time

Settings (the database URL above all) come from the environment (``SHOP_*``) or ``.env``.
"""

import argparse
import sys
import time
from collections.abc import Sequence

from common.db import make_engine
from common.settings import get_sales_settings
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sales_service.cli", description="sales_service operator commands"
    )
    commands = parser.add_subparsers(dest="command", required=True)
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
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
