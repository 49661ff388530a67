"""The cursor arithmetic on its own, on MariaDB and on the embedded SQLite: a table built to
hold what the API's lists rarely show at once (long runs of equal keys, NULLs in a sort
key, a grouped query paged on an aggregate), walked in every order both ways."""

import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Session

from common.errors import Unprocessable
from common.pagination import PageParams, paginate

ROWS = [
    # id, colour (NULL in a third), size (runs of equal values), owner (groups)
    (i, [None, "red", "blue"][i % 3] if i % 7 else None, i % 4, i % 5)
    for i in range(1, 61)
]


@pytest.fixture(params=["mariadb", "sqlite"])
def probe(request: pytest.FixtureRequest, engine: Engine) -> Iterator[tuple[Engine, Table]]:
    name = f"pagination_probe_{uuid.uuid4().hex[:8]}"
    table = Table(
        name,
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("colour", String(10), nullable=True),
        Column("size", Integer, nullable=False),
        Column("owner", Integer, nullable=False),
    )
    db = engine if request.param == "mariadb" else create_engine("sqlite://")
    table.create(db)
    with db.begin() as connection:
        connection.execute(
            insert(table),
            [dict(zip(("id", "colour", "size", "owner"), r, strict=True)) for r in ROWS],
        )
    try:
        yield db, table
    finally:
        table.drop(db)


def walk(session: Session, stmt: Any, order_by: list[Any], limit: int) -> list[tuple[Any, ...]]:
    """Every row, page by page along the cursor, with the sort keys stripped."""
    seen: list[tuple[Any, ...]] = []
    cursor = None
    width = len(stmt.selected_columns)
    for _ in range(100):
        found = paginate(session, stmt, PageParams(limit=limit, cursor=cursor), order_by)
        assert found.total == len(session.execute(stmt).all())
        seen += [tuple(row[:width]) for row in found.rows]
        cursor = found.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("the cursor never reached the end")


def test_every_order_of_nulls_and_ties_is_walked_whole_and_once(
    probe: tuple[Engine, Table],
) -> None:
    db, table = probe
    keys = {"colour": table.c.colour, "size": table.c.size}
    with Session(db) as session:
        stmt = select(table.c.id, table.c.colour, table.c.size)
        for names in itertools.permutations(keys, 2):
            for directions in itertools.product((False, True), repeat=3):
                order_by = [
                    keys[name].desc() if down else keys[name].asc()
                    for name, down in zip(names, directions, strict=False)
                ]
                order_by.append(table.c.id.desc() if directions[2] else table.c.id.asc())
                whole = [tuple(r) for r in session.execute(stmt.order_by(*order_by))]
                for limit in (1, 7, 60):
                    assert walk(session, stmt, order_by, limit) == whole, (names, directions)


def test_a_grouped_list_pages_on_its_aggregates(probe: tuple[Engine, Table]) -> None:
    db, table = probe
    with Session(db) as session:
        total = func.sum(table.c.size)
        stmt = select(table.c.owner, total.label("total")).group_by(table.c.owner)
        for down in (False, True):
            order_by = [total.desc() if down else total.asc(), table.c.owner.asc()]
            whole = [tuple(r) for r in session.execute(stmt.order_by(*order_by))]
            assert walk(session, stmt, order_by, 2) == whole


def test_a_cursor_only_continues_the_order_it_was_made_in(probe: tuple[Engine, Table]) -> None:
    db, table = probe
    with Session(db) as session:
        stmt = select(table.c.id)
        by_size = [table.c.size.asc(), table.c.id.asc()]
        cursor = paginate(session, stmt, PageParams(limit=5), by_size).next_cursor
        assert cursor is not None
        by_id = [table.c.id.asc()]
        with pytest.raises(Unprocessable, match="another sort order"):
            paginate(session, stmt, PageParams(limit=5, cursor=cursor), by_id)
