"""Operator commands for products_service.

    python -m products_service.cli migrate
    python -m products_service.cli create-admin --email admin@example.com --password '...'
    python -m products_service.cli check-ledger
    python -m products_service.cli import-products catalog.csv [--dry-run] [--create-categories]
    python -m products_service.cli import-stock-counts count.csv [--dry-run] [--reason ...]

Settings (the database URL above all) come from the environment (``SHOP_*``) or ``.env``.
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select

from common import migrate
from common.app import freeze_startup_heap
from common.auth.service import ensure_admin
from common.db import make_engine, make_sessionmaker, snapshot_session
from common.delimited import Encoding, TableFormat
from common.imports import import_file, summary
from common.models import User
from common.settings import get_products_settings
from products_service.imports import service as imports
from products_service.inventory.service import check_ledger


def _migrate(_args: argparse.Namespace) -> int:
    """Bring the database schema to the latest Alembic revision."""
    migrate.upgrade(get_products_settings().database_url)
    print("database is at the latest revision")
    return 0


def _create_admin(args: argparse.Namespace) -> int:
    """Create an admin user with this email, unless one already exists."""
    if len(args.password) < 8:
        print("error: --password must be at least 8 characters", file=sys.stderr)
        return 2
    engine = make_engine(get_products_settings().database_url)
    try:
        with make_sessionmaker(engine)() as session:
            user = ensure_admin(session=session, email=args.email, password=args.password)
            session.commit()
            print(f"admin {user.email} (id {user.id}) is ready; role: {user.role.value}")
    finally:
        engine.dispose()
    return 0


def _check_ledger(_args: argparse.Namespace) -> int:
    """Print the ledger check as JSON; exit 1 when any level breaks an invariant."""
    engine = make_engine(get_products_settings().database_url)
    try:
        with snapshot_session(engine) as session:
            result = check_ledger(session=session)
    finally:
        engine.dispose()
    print(result.model_dump_json(indent=2))
    return 0 if result.ok else 1


def _import(args: argparse.Namespace) -> int:
    """Run a products or stock-count import on a local file (the API upload's code)."""
    path = Path(args.file)
    if not path.is_file():
        print(f"error: no such file: {path}", file=sys.stderr)
        return 2
    engine = make_engine(get_products_settings().database_url)
    try:
        with make_sessionmaker(engine)() as session:
            actor = None
            if args.actor:
                actor = session.scalar(select(User).where(User.email == args.actor))
                if actor is None:
                    print(f"error: no user {args.actor}", file=sys.stderr)
                    return 2
            options = imports.ImportOptions(
                file_name=path.name,
                encoding=Encoding(args.encoding),
                table_format=TableFormat(args.format) if args.format else None,
                dry_run=args.dry_run,
                actor_id=actor.id if actor else None,
                actor_email=actor.email if actor else None,
                create_categories=getattr(args, "create_categories", False),
                reason=getattr(args, "reason", imports.DEFAULT_COUNT_REASON),
            )
            run = (
                imports.import_products if args.kind == "products" else imports.import_stock_counts
            )
            report = import_file(
                session,
                path,
                lambda binary, progress: run(
                    session=session, binary=binary, options=options, progress=progress
                ),
            )
    finally:
        engine.dispose()
    print(report.model_dump_json(indent=2) if args.json else summary(report))
    return 0 if report.ok else 1


def _import_arguments(command: argparse.ArgumentParser, kind: str) -> None:
    command.add_argument("file", help="a CSV (.csv) or tab-separated (.tsv, .txt) file")
    command.add_argument("--dry-run", action="store_true", help="check and report; write nothing")
    command.add_argument("--encoding", choices=[e.value for e in Encoding], default="utf-8")
    command.add_argument("--format", choices=[f.value for f in TableFormat], default=None)
    command.add_argument("--actor", metavar="EMAIL", help="the user the changes are recorded as")
    command.add_argument("--json", action="store_true", help="print the whole report as JSON")
    command.set_defaults(run=_import, kind=kind)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m products_service.cli", description="products_service operator commands"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("migrate", help=_migrate.__doc__).set_defaults(run=_migrate)

    admin = commands.add_parser("create-admin", help=_create_admin.__doc__)
    admin.add_argument("--email", required=True)
    admin.add_argument("--password", required=True)
    admin.set_defaults(run=_create_admin)

    commands.add_parser("check-ledger", help=_check_ledger.__doc__).set_defaults(run=_check_ledger)

    products = commands.add_parser("import-products", help="upsert products by SKU from a file")
    _import_arguments(products, "products")
    products.add_argument(
        "--create-categories", action="store_true", help="create missing category paths"
    )
    counts = commands.add_parser(
        "import-stock-counts",
        help="count corrections from a file of sku,warehouse,counted_quantity",
    )
    _import_arguments(counts, "stock_counts")
    counts.add_argument("--reason", default=imports.DEFAULT_COUNT_REASON)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    freeze_startup_heap()
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
