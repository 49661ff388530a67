"""Run the shared Alembic history programmatically (used by the prestart step and tests)."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from common.settings import REPO_ROOT


def alembic_config(database_url: str) -> Config:
    config = Config(str(Path(REPO_ROOT) / "alembic.ini"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


@contextmanager
def scratch_database(server_url: str, prefix: str, *, migrated: bool = True) -> Iterator[str]:
    """A new database ``<prefix>_<random>`` on this MariaDB/MySQL server (migrated to head
    unless ``migrated`` is false); yields its URL and drops it afterwards whatever happens.
    For tests and benchmarks."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        try:
            if migrated:
                upgrade(url)
            yield url
        finally:
            with admin.connect() as connection:
                connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    finally:
        admin.dispose()
