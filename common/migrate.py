"""Run the shared Alembic history programmatically (used by the prestart step and tests)."""

from pathlib import Path

from alembic import command
from alembic.config import Config

from common.settings import REPO_ROOT


def alembic_config(database_url: str) -> Config:
    config = Config(str(Path(REPO_ROOT) / "alembic.ini"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)
