"""Operator commands for products_service.

    python -m products_service.cli migrate
    python -m products_service.cli create-admin --email admin@example.com --password '...'
    python -m products_service.cli check-ledger

Settings (the database URL above all) come from the environment (``SHOP_*``) or ``.env``.
"""

import argparse
import sys
from collections.abc import Sequence

from common import migrate
from common.auth.service import ensure_admin
from common.db import make_engine, make_sessionmaker, snapshot_session
from common.settings import get_products_settings
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
