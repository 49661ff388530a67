"""The Alembic history builds the schema from empty on MariaDB/MySQL and on SQLite, and the
schema it builds is the one the models describe."""

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, select, text

from common import migrate
from common.db import make_engine
from common.models import Base, Warehouse


def _assert_matches_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"


def _assert_default_warehouse(engine: Engine) -> None:
    with engine.connect() as connection:
        rows = connection.execute(select(Warehouse.code).where(Warehouse.is_default)).all()
    assert [r.code for r in rows] == ["MAIN"]


def test_sqlite_from_empty(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    _assert_default_warehouse(engine)
    _assert_matches_models(engine)
    migrate.upgrade(url)  # running it again is a no-op
    engine.dispose()


def test_mariadb_test_database_is_at_head_and_matches_models(engine: Engine) -> None:
    # the session's database was built from empty by the same history (see conftest)
    _assert_default_warehouse(engine)
    _assert_matches_models(engine)
    with engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version is not None


def test_downgrade_to_base_and_up_again_on_sqlite(tmp_path: Path) -> None:
    from alembic import command

    url = f"sqlite:///{tmp_path / 'roundtrip.db'}"
    config = migrate.alembic_config(url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    engine = create_engine(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    command.upgrade(config, "head")
