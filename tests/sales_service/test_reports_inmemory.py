"""The report rollups held in memory (sales_service/reports/inmemory.py): a copy brought
forward equals one loaded afresh, a rebuild makes it load whole again, grouped sums summed
from it list exactly the groups with lines in the range, and the service's copy loads and
follows the consumer by itself. (The reports' exactness with the copy current, behind the
consumer or off: tests/sales_service/test_reports_exact.py.)"""

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, delete, event, text, update
from sqlalchemy.orm import Session

from common.db import snapshot_connection, snapshot_engine
from common.models import OutboxPosition, SalesChannel, StockLevel, Warehouse
from sales_service.reports import inmemory, planner, service
from sales_service.reports import repository as report_repository
from sales_service.reports.calendar import DateRange, Period, Weekday
from sales_service.reports.columns import GROUP_BITS
from sales_service.reports.consumer import CONSUMER, catch_up, rebuild
from sales_service.reports.parameters import Against, CategoryRollup, Dimension, SortKey
from sales_service.reports.planner import Filters
from sales_service.reports.repository import GroupBy, Query, Source
from sales_service.reports.rollups import ALL_CHANNELS, DAY, HOUR
from sales_service.reports.service import Grouping
from tests.sales_service.report_factories import (
    Catalog,
    LineSpec,
    add_sale,
    clear,
    make_catalog,
    refund,
)

BERLIN = ZoneInfo("Europe/Berlin")
EMPTY_LINES = inmemory.EdgeLines(frozenset(), np.zeros((8, 0), dtype=np.int64))


@pytest.fixture
def catalog(engine: Engine) -> Catalog:
    return make_catalog(engine)


@pytest.fixture(autouse=True)
def copies() -> Iterator[None]:
    """Copies load only when a test says so (and its own settings come back after)."""
    saved = inmemory.ENABLED, inmemory.REFRESH_SECONDS, inmemory.MAX_TOUCHED, inmemory.ZONES
    inmemory.REFRESH_SECONDS = 3600.0
    yield
    inmemory.ENABLED, inmemory.REFRESH_SECONDS, inmemory.MAX_TOUCHED, inmemory.ZONES = saved


def line(catalog: Catalog, n: int, quantity: int, price: str) -> LineSpec:
    return LineSpec(catalog.products[n], quantity, Decimal(price), Decimal(price) / 4)


def sell(
    engine: Engine, catalog: Catalog, at: datetime, lines: list[LineSpec], channel: int = 0
) -> Any:
    with Session(engine, expire_on_commit=False) as session:
        sale = add_sale(
            session, catalog, sold_at=at, channel_id=catalog.channels[channel], lines=lines
        )
        session.commit()
        return sale


def rows_of(columns: inmemory.Columns) -> list[tuple[int, ...]]:
    """The rows in a canonical order (rows of one block may come in any order)."""
    table = np.vstack([columns.key, *columns.groups.values(), columns.measures])
    assert np.all(np.diff(columns.key) >= 0)  # sorted by block
    return sorted(map(tuple, table.T.tolist()))


def same(a: inmemory.RollupCopy | None, b: inmemory.RollupCopy | None) -> None:
    assert a is not None and b is not None
    assert (a.position, a.generation) == (b.position, b.generation)
    assert a.category_paths == b.category_paths
    assert a.lines.hours == b.lines.hours
    assert sorted(map(tuple, a.lines.columns.T.tolist())) == sorted(
        map(tuple, b.lines.columns.T.tolist())
    )
    for source, columns in a.tables.items():
        assert rows_of(columns) == rows_of(b.tables[source]), source


def test_a_copy_brought_forward_equals_one_loaded_afresh(engine: Engine, catalog: Catalog) -> None:
    clear(engine)
    inmemory.ZONES = ("Europe/Berlin",)  # the lines of 22:00-24:00 UTC held too
    start = datetime(2025, 3, 29, 20, 7, tzinfo=UTC)  # Berlin springs forward the next night
    old = [
        sell(engine, catalog, start + timedelta(hours=13 * n), [line(catalog, n % 5, 2, "9.99")])
        for n in range(12)
    ]
    catch_up(engine)
    copy = inmemory.load(engine)
    assert copy is not None and copy.rows > 0
    assert copy.lines.hours == {22, 23} and len(copy.lines) == 1  # old[2], 22:07
    # the sales rollups' running sums are made with the copy, not by a report's request
    assert "by_channel" in copy.tables[Source.SALES_ROLLUPS].__dict__

    # new sales in blocks held and in new ones, a refund and a cancellation of old sales
    sell(engine, catalog, start + timedelta(hours=1), [line(catalog, 1, 1, "0.01")], channel=1)
    sell(engine, catalog, start + timedelta(hours=3), [line(catalog, 3, 2, "1.50")])  # 23:07
    sell(engine, catalog, datetime(2026, 1, 1, tzinfo=UTC), [line(catalog, 4, 3, "120.00")])
    with Session(engine, expire_on_commit=False) as session:
        refund(session, session.merge(old[3]), {1: 1})
        refund(session, session.merge(old[7]), {}, cancel=True)
        refund(session, session.merge(old[2]), {1: 1})  # a line held in memory
        session.commit()
    catch_up(engine)
    forward = inmemory.refresh(engine, copy)
    assert forward is not None and forward.position > copy.position
    same(forward, inmemory.load(engine))
    again = inmemory.refresh(engine, forward)
    assert again is not None and again.tables is forward.tables  # nothing new: kept

    inmemory.MAX_TOUCHED = 0  # so many blocks touched that it is read whole
    sell(engine, catalog, start, [line(catalog, 2, 1, "5.00")])
    catch_up(engine)
    whole = inmemory.refresh(engine, forward)
    same(whole, inmemory.load(engine))
    assert whole is not None

    # a rebuild replaces the rows at the same position: read whole again, not kept
    rebuild(engine)
    rebuilt = inmemory.refresh(engine, whole)
    assert rebuilt is not None and rebuilt.generation != whole.generation
    same(rebuilt, inmemory.load(engine))

    # so does a position row deleted and made again (a database restored, or cleaned)
    with engine.begin() as connection:
        connection.execute(delete(OutboxPosition).where(OutboxPosition.consumer == CONSUMER))
    catch_up(engine)
    remade = inmemory.refresh(engine, rebuilt)
    assert remade is not None and remade.generation != rebuilt.generation
    same(remade, inmemory.load(engine))


def breakdown(connection: Connection, day: date, *, use_rollups: bool = True) -> dict[str, Any]:
    answer = service.breakdown(
        connection=connection,
        rng=DateRange(day, day, BERLIN),
        grouping=Grouping(Dimension.PRODUCT),
        filters=Filters(),
        sort=SortKey.REVENUE,
        limit=50,
        use_rollups=use_rollups,
    )
    return answer.model_dump(mode="json", exclude={"watermark"})


def test_grouped_sums_from_the_copy_list_exactly_the_groups_with_lines_in_the_range(
    engine: Engine, catalog: Catalog
) -> None:
    """A Berlin day is 23:00-23:00 UTC: summed as the UTC day's rollup block less its last
    hour, a product sold only in that hour nets to zero there and must not be listed; one
    whose sales in the day were all cancelled nets to zero too and must be."""
    clear(engine)
    day = date(2025, 1, 15)
    sell(engine, catalog, datetime(2025, 1, 15, 23, 30, tzinfo=UTC), [line(catalog, 0, 1, "7")])
    cancelled = sell(
        engine, catalog, datetime(2025, 1, 15, 12, tzinfo=UTC), [line(catalog, 1, 2, "3")]
    )
    sell(engine, catalog, datetime(2025, 1, 15, 9, tzinfo=UTC), [line(catalog, 2, 1, "11.50")])
    with Session(engine, expire_on_commit=False) as session:
        refund(session, session.merge(cancelled), {}, cancel=True)
        session.commit()
    catch_up(engine)
    assert inmemory.load_now(engine) is not None
    with snapshot_connection(engine) as connection:
        found = breakdown(connection, day)
        raw = breakdown(connection, day, use_rollups=False)
    listed = {group["id"]: group for group in found["groups"]}
    assert set(listed) == {catalog.products[1], catalog.products[2]}
    assert (listed[catalog.products[1]]["revenue"], listed[catalog.products[1]]["units"]) == (
        "0.00",
        0,
    )
    assert listed[catalog.products[2]]["revenue"] == "11.50"
    assert found["group_count"] == 2
    assert found["groups"] == raw["groups"] and found["totals"] == raw["totals"]
    assert "report_product_totals" in found["sources"]  # summed from the copy's blocks


def test_the_service_loads_its_copy_and_follows_the_consumer(
    engine: Engine, catalog: Catalog, sales_client: TestClient, viewer_headers: dict, sales_app: Any
) -> None:
    """Through the API: the first report starts the copy's load; a sale recorded after it is
    in the next answer at once (read raw while the copy lacks it), and the copy catches up
    with the consumer by itself."""
    inmemory.ENABLED, inmemory.REFRESH_SECONDS = True, 0.0
    app_engine = sales_app.state.engine
    clear(engine)
    day = date(2025, 6, 2)
    noon = datetime(2025, 6, 2, 10, tzinfo=UTC)
    sell(engine, catalog, noon, [line(catalog, 0, 1, "10.00")])
    catch_up(engine)

    def revenue() -> str:
        response = sales_client.get(
            "/api/v1/reports/summary",
            headers=viewer_headers,
            params={"from": day.isoformat(), "to": day.isoformat(), "timezone": "Europe/Berlin"},
        )
        assert response.status_code == 200, response.text
        return str(response.json()["kpis"]["revenue"]["current"])

    def settled(check: Any) -> Any:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            revenue()  # each report tells the copy where the consumer is
            if check(copy := inmemory.current(app_engine)):
                return copy
            time.sleep(0.05)
        raise AssertionError("the copy did not catch up")

    assert revenue() == "10.00"
    loaded = settled(lambda c: c is not None)
    sell(engine, catalog, noon + timedelta(minutes=5), [line(catalog, 1, 2, "2.50")])
    assert revenue() == "15.00"  # not yet consumed: raw
    catch_up(engine)
    assert revenue() == "15.00"  # consumed, the copy behind: the blocks read raw
    settled(lambda c: c is not None and c.position > loaded.position)
    assert revenue() == "15.00"  # from the copy brought forward


def test_a_report_plans_while_its_first_statement_runs_and_again_where_that_finds_changes(
    engine: Engine, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Summed from the copy, a report plans its first sums while its first statement is on
    its way, as if the copy were current with no event after it; where the statement finds
    otherwise the sums are planned again. A sale not in the copy yet counts, consumed or
    not; with the rollups waiting for a rebuild the copy is not read at all (the raw rows
    are), and the answer names only what it read; the watermark is the statement's. Once a
    report has found events after the copy, the next ones plan after the answer (once),
    until a newer copy replaces it."""
    plans: list[int] = []
    plan_parts = planner.plan_parts

    def counted(*args: Any) -> Any:
        plans.append(1)
        return plan_parts(*args)

    monkeypatch.setattr(planner, "plan_parts", counted)
    clear(engine)
    day = date(2025, 3, 4)
    rng = DateRange(day, day, BERLIN)
    sell(engine, catalog, datetime(2025, 3, 4, 10, tzinfo=UTC), [line(catalog, 0, 1, "5")])
    catch_up(engine)
    assert inmemory.load_now(engine) is not None

    def summary(planned: int) -> tuple[str, list[str], int | None]:
        """The summary (two periods: planned together) and how many times they were."""
        plans.clear()
        with snapshot_connection(engine) as connection:
            found = service.summary(connection=connection, rng=rng, filters=Filters())
        assert len(plans) == 2 * planned
        kpis = found.model_dump(mode="json")["kpis"]
        return kpis["revenue"]["current"], found.sources, found.watermark.latest_sale_id

    first = summary(planned=1)
    assert first[:2] == ("5.00", ["report_sales_rollups"])  # from the copy, as planned
    later = sell(engine, catalog, datetime(2025, 3, 4, 11, tzinfo=UTC), [line(catalog, 1, 1, "7")])
    both = ["report_sales_rollups", "sales+sale_lines"]
    assert summary(planned=2) == ("12.00", both, later.id)
    assert summary(planned=1) == ("12.00", both, later.id)  # planned after the answer
    catch_up(engine)  # consumed: the copy is behind the rollups
    assert summary(planned=1) == ("12.00", both, later.id)
    assert inmemory.load_now(engine) is not None  # a newer copy: planned before the answer
    assert summary(planned=1) == ("12.00", ["report_sales_rollups"], later.id)
    with Session(engine) as session:
        session.execute(
            update(OutboxPosition)
            .where(OutboxPosition.consumer == CONSUMER)
            .values(needs_rebuild=True)
        )
        session.commit()
    assert summary(planned=2) == ("12.00", ["sales+sale_lines"], later.id)


def test_a_plan_that_fails_on_the_guess_is_made_again_and_one_that_fails_anyway_raises(
    engine: Engine, catalog: Catalog
) -> None:
    """What a plan made before the first statement's answer raises is raised only where the
    answer confirms the guess; otherwise the plan is made again with what it found."""
    clear(engine)
    noon = datetime(2025, 3, 4, 11, tzinfo=UTC)
    sell(engine, catalog, noon, [line(catalog, 0, 1, "5")])
    catch_up(engine)
    assert inmemory.load_now(engine) is not None

    def plan(ctx: planner.Context) -> list[datetime] | None:
        if ctx.dirty == []:
            raise ValueError("planned on the guess")
        return ctx.dirty

    with snapshot_connection(engine) as connection:
        ctx = planner.Context(connection)
        with pytest.raises(ValueError, match="on the guess"):  # the guess held
            ctx.planned(lambda: plan(ctx))
    sell(engine, catalog, noon + timedelta(hours=1), [line(catalog, 1, 1, "7")])
    with snapshot_connection(engine) as connection:
        ctx = planner.Context(connection)
        assert ctx.planned(lambda: plan(ctx)) == [noon + timedelta(hours=1)]


def test_a_connection_lost_at_a_reports_first_statement_answers_503(
    engine: Engine,
    catalog: Catalog,
    sales_client: TestClient,
    viewer_headers: dict,
    sales_app: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A report's first statement goes to the driver past SQLAlchemy (sent before its answer
    is wanted): the connection lost there answers 503 naming the database, as it does
    anywhere else, and the next report is answered."""
    inmemory.ENABLED = True
    clear(engine)
    sell(engine, catalog, datetime(2025, 3, 4, 10, tzinfo=UTC), [line(catalog, 0, 1, "5")])
    catch_up(engine)
    assert inmemory.load_now(sales_app.state.engine) is not None
    send = report_repository.send_pending_since

    def dropped(connection: Connection, *args: Any, **kwargs: Any) -> Any:
        own = connection.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one()
        with engine.connect() as other:  # the server drops it (a restart, a crash)
            other.execute(text(f"KILL {int(own)}"))
        return send(connection, *args, **kwargs)

    def summary() -> Any:
        day = {"from": "2025-03-04", "to": "2025-03-04", "timezone": "Europe/Berlin"}
        return sales_client.get("/api/v1/reports/summary", headers=viewer_headers, params=day)

    monkeypatch.setattr(report_repository, "send_pending_since", dropped)
    response = summary()
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "database_unavailable"
    monkeypatch.setattr(report_repository, "send_pending_since", send)
    response = summary()
    assert response.status_code == 200, response.text
    assert response.json()["kpis"]["revenue"]["current"] == "5.00"


def test_available_units_read_at_once_or_row_by_row_agree(engine: Engine, catalog: Catalog) -> None:
    """The stock per product, all warehouses together, comes as one string where the
    connection allows it, else (cut at group_concat_max_len) row by row: the same either
    way, wherever the cut falls (inside the last number too: "...,14" cut to "...,1")."""
    with Session(engine) as session:
        second = Warehouse(code="SECOND", name="Second")
        session.add(second)
        session.flush()
        session.add(
            StockLevel(
                product_id=catalog.products[2], warehouse_id=second.id, on_hand=17, reserved=3
            )
        )
        session.commit()

    def available(connection: Connection) -> tuple[dict[int, int], datetime | None]:
        units, updated = report_repository.available_units(connection)
        return dict(zip(units.products.tolist(), units.values.tolist(), strict=True)), updated

    with snapshot_connection(engine) as connection:
        at_once = available(connection)
        whole = connection.execute(
            text("SELECT GROUP_CONCAT(product_id, ',', on_hand - reserved) FROM stock_levels")
        ).scalar_one()
    assert at_once[0][catalog.products[2]] == 20 - 2 + 17 - 3  # 20 on hand, 2 reserved in MAIN
    assert len(at_once[0]) >= 2
    assert whole.endswith(f"{catalog.products[2]},14")  # the level added last: cut inside 14
    for length in (4, len(whole) - 4, len(whole) - 1):
        with Session(engine) as session:
            session.execute(text(f"SET SESSION group_concat_max_len = {length}"))
            cut = available(session.connection())
            session.execute(text("SET SESSION group_concat_max_len = DEFAULT"))
        assert cut == at_once, length


def test_the_insight_names_each_row_its_own_product_whatever_the_last_stock_was(
    engine: Engine, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Summed from the copy, the insight asks for its page's names before its stock is
    read, ranked with the stock the insight before read. Where the stock changed since and
    the page holds other products, and where a product was renamed, each row still carries
    its own product's sku and name, ranked as the database ranks them; where the guess held,
    no other statement asks for names."""
    clear(engine)
    day = date(2025, 3, 10)
    for n in range(1, 5):  # 3 units each of products 1-4 in the week (product 0: none)
        sell(engine, catalog, datetime(2025, 3, 4 + n, 10, tzinfo=UTC), [line(catalog, n, 3, "5")])
    catch_up(engine)
    assert inmemory.load_now(engine) is not None
    ours = Filters(product_ids=tuple(catalog.products))  # (the database holds other tests')
    guesses: list[Any] = []
    looked_up: list[list[int]] = []
    send_page_refs, product_refs = report_repository.send_page_refs, report_repository.product_refs

    def guessing(*args: Any, **kwargs: Any) -> Any:
        guesses.append(found := send_page_refs(*args, **kwargs))
        return found

    def looking_up(connection: Connection, ids: Any) -> Any:
        looked_up.append(list(ids))
        return product_refs(connection, ids)

    monkeypatch.setattr(report_repository, "send_page_refs", guessing)
    monkeypatch.setattr(report_repository, "product_refs", looking_up)

    def page(use_rollups: bool) -> list[tuple[int, str, str, int]]:
        with snapshot_connection(engine) as connection:
            insight = service.inventory_insight(
                connection=connection,
                as_of=day,
                zone=BERLIN,
                window_days=7,
                filters=ours,
                limit=2,
                offset=0,
                use_rollups=use_rollups,
            )
        return [(i.product_id, i.sku, i.name, i.available) for i in insight.items]

    p = catalog.products  # available 9 x n of product n: covers 0, 21, 42, 63, 84 days
    assert (
        page(True)
        == page(False)
        == [
            (p[0], "RP-1", "Report product 1", 0),
            (p[1], "RP-2", "Report product 2", 9),
        ]
    )
    with Session(engine) as session:  # now products 3 and 4 run out first
        for n, on_hand in ((0, 1000), (1, 1000), (3, 3), (4, 5)):
            session.execute(
                update(StockLevel).where(StockLevel.product_id == p[n]).values(on_hand=on_hand)
            )
        session.execute(
            text("UPDATE products SET sku = 'RP-5B', name = 'Renamed' WHERE id = :id"),
            {"id": p[4]},
        )
        session.commit()
    guesses.clear()
    looked_up.clear()
    assert (
        page(True)
        == page(False)
        == [
            (p[3], "RP-4", "Report product 4", 0),
            (p[4], "RP-5B", "Renamed", 1),
        ]
    )
    assert guesses[0] is not None  # guessed (products 0 and 1), and missed both
    assert sorted(looked_up[0]) == [p[3], p[4]]
    guesses.clear()
    looked_up.clear()
    assert page(True) == [(p[3], "RP-4", "Report product 4", 0), (p[4], "RP-5B", "Renamed", 1)]
    assert guesses[0] is not None and looked_up == []  # the same stock: the guess held


def test_reports_by_channel_name_each_channel_as_it_is_now(
    engine: Engine, catalog: Catalog
) -> None:
    """Summed from the copy, a report reads the channels' names with its first statement: a
    channel renamed is named anew in the very next report, by channel and in a comparison;
    with more channels than that statement lists, the names are looked up as before."""
    clear(engine)
    day = date(2025, 3, 4)
    sell(engine, catalog, datetime(2025, 3, 4, 10, tzinfo=UTC), [line(catalog, 0, 1, "5")], 1)
    catch_up(engine)
    assert inmemory.load_now(engine) is not None
    channel = catalog.channels[1]

    def names(connection: Connection) -> tuple[set[str], set[str]]:
        rng = DateRange(day, day, BERLIN)
        by_channel = service.breakdown(
            connection=connection,
            rng=rng,
            grouping=Grouping(Dimension.CHANNEL),
            filters=Filters(),
            sort=SortKey.REVENUE,
            limit=10,
        )
        compared = service.compare(
            connection=connection,
            rng=rng,
            against=Against.PREVIOUS_PERIOD,
            custom=None,
            grouping=Grouping(Dimension.CHANNEL),
            filters=Filters(),
            limit=10,
        )
        assert "report_sales_rollups" in by_channel.sources  # summed from the copy
        return {g.name for g in by_channel.groups}, {g.name for g in compared.groups}

    looked_up: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        looked_up.append(statement)

    for name in ("Market one", "Market 'two' \"quoted\" ünï"):
        with Session(engine) as session:
            session.execute(
                update(SalesChannel).where(SalesChannel.id == channel).values(name=name)
            )
            session.commit()
        looked_up.clear()
        reader = snapshot_engine(engine)
        event.listen(reader, "before_cursor_execute", seen)
        try:
            with snapshot_connection(engine) as connection:
                assert names(connection) == ({name}, {name})
        finally:
            event.remove(reader, "before_cursor_execute", seen)
        assert not [s for s in looked_up if "sales_channels" in s]  # named by the first

    # more channels than the first statement lists: it lists none, and they are looked up
    with Session(engine) as session:
        session.add_all(
            SalesChannel(code=f"many-{n}", name=f"Many {n}")
            for n in range(report_repository.LISTED_CHANNELS)
        )
        session.flush()  # seen by this session's own reads, never committed
        pending = report_repository.pending_since(session.connection(), CONSUMER, 0, channels=True)
        assert pending is not None and pending.channels is None
        assert names(session.connection()) == ({"Market 'two' \"quoted\" ünï"},) * 2
        session.rollback()
    with snapshot_connection(engine) as connection:
        pending = report_repository.pending_since(connection, CONSUMER, 0, channels=True)
        assert pending is not None and pending.channels is not None
        assert pending.channels[channel] == "Market 'two' \"quoted\" ünï"
        # a report that names no channel reads none
        plain = report_repository.pending_since(connection, CONSUMER, 0)
        assert plain is not None and plain.channels is None and plain.state == pending.state


def test_raw_sums_read_as_one_string_or_row_by_row_agree(engine: Engine, catalog: Catalog) -> None:
    """Summed from the copy, a report's raw rows come back as one string of numbers; where
    ``group_concat_max_len`` cuts that string short, they are read row by row. Both give
    the answer the raw rows give, refunds (negative sums) and the edge hours included."""
    clear(engine)
    day = date(2025, 1, 15)  # Berlin: 23:00 UTC the day before to 23:00 UTC
    for at, n, quantity, price in (
        (datetime(2025, 1, 14, 22, 30, tzinfo=UTC), 0, 2, "4.10"),  # the day before
        (datetime(2025, 1, 14, 23, 30, tzinfo=UTC), 1, 1, "7"),  # its first hour
        (datetime(2025, 1, 15, 9, 30, tzinfo=UTC), 2, 3, "11.50"),
        (datetime(2025, 1, 15, 23, 30, tzinfo=UTC), 0, 1, "3"),  # the day after
    ):
        sell(engine, catalog, at, [line(catalog, n, quantity, price), line(catalog, 3, 1, "0.99")])
    refunded = sell(
        engine, catalog, datetime(2025, 1, 15, 22, 10, tzinfo=UTC), [line(catalog, 4, 5, "2")]
    )
    with Session(engine, expire_on_commit=False) as session:
        refund(session, session.merge(refunded), {}, cancel=True)
        session.commit()
    catch_up(engine)
    assert inmemory.load_now(engine) is not None
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    reader = snapshot_engine(engine)
    event.listen(reader, "before_cursor_execute", seen)
    try:
        with snapshot_connection(engine) as connection:
            packed = breakdown(connection, day)
            raw = breakdown(connection, day, use_rollups=False)
        assert any("group_concat(concat_ws" in s for s in statements)  # one string came back
        with snapshot_connection(engine) as connection:
            connection.execute(text("SET SESSION group_concat_max_len = 8"))
            try:
                cut = breakdown(connection, day)
            finally:
                connection.execute(text("SET SESSION group_concat_max_len = 1073741824"))
    finally:
        event.remove(reader, "before_cursor_execute", seen)
    assert packed["groups"] and packed == cut
    assert packed["groups"] == raw["groups"] and packed["totals"] == raw["totals"]


def test_the_edge_hours_held_give_what_the_raw_rows_give(engine: Engine, catalog: Catalog) -> None:
    """With the store in Berlin, the lines of 22:00-24:00 UTC are held with the copy: the
    hours a Berlin day takes from, or adds to, a UTC day (23:00 in winter, 22:00 in summer)
    are summed from them, not read from the database. Every report equals the raw rows',
    refunds, cancellations and several lines of a sale included; a sale in a held hour
    recorded after the copy is read raw until the copy is brought forward."""
    clear(engine)
    inmemory.ZONES = ("Europe/Berlin",)
    winter, summer = date(2025, 1, 15), date(2025, 7, 2)
    sales = [
        # Jan 15 local; two lines under "home" (an order of it once)
        (datetime(2025, 1, 14, 23, 30, tzinfo=UTC), [(0, 2, "4.10"), (3, 1, "0.99"), (2, 1, "3")]),
        (datetime(2025, 1, 15, 22, 59, tzinfo=UTC), [(1, 1, "7"), (2, 3, "1.25")]),  # Jan 15
        (datetime(2025, 1, 15, 23, 0, tzinfo=UTC), [(1, 4, "2"), (4, 1, "9")]),  # Jan 16
        (datetime(2025, 1, 15, 12, 0, tzinfo=UTC), [(2, 1, "11.50")]),
        (datetime(2025, 7, 1, 22, 15, tzinfo=UTC), [(0, 1, "3"), (1, 2, "5")]),  # Jul 2, 00:15
        (datetime(2025, 7, 2, 21, 59, tzinfo=UTC), [(3, 2, "8")]),  # Jul 2, 23:59
        (datetime(2025, 7, 2, 22, 0, tzinfo=UTC), [(0, 5, "1")]),  # Jul 3
    ]
    sold = [
        sell(engine, catalog, at, [line(catalog, n, q, p) for n, q, p in lines], channel=k % 2)
        for k, (at, lines) in enumerate(sales)
    ]
    with Session(engine, expire_on_commit=False) as session:
        refund(session, session.merge(sold[0]), {1: 1})  # one of two units of its first line
        refund(session, session.merge(sold[4]), {}, cancel=True)
        session.commit()
    catch_up(engine)
    copy = inmemory.load_now(engine)
    assert copy is not None and len(copy.lines) == 10  # the lines sold in 22:00-24:00 UTC
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        statements.append((statement, parameters))

    def edge_reads(sent: list[tuple[str, Any]]) -> list[str]:
        """Statements that read lines of less than a day: the edges of a Berlin day. (A group
        that nets to zero is summed again from the lines of the whole range, a day or more:
        ``Ask.recheck_zeros``.)"""
        found = []
        for statement, parameters in sent:
            if "sale_lines" not in statement:
                continue
            moments = sorted(v for v in parameters.values() if isinstance(v, datetime))
            if len(moments) != 2 or moments[1] - moments[0] < timedelta(hours=23):
                found.append(statement)
        return found

    def reports(connection: Connection, use_rollups: bool) -> list[Any]:
        found: list[Any] = []
        for day in (winter, summer):
            for weeks in (0, 7):
                rng = DateRange(day - timedelta(days=weeks), day, BERLIN)
                for grouping in (
                    Grouping(Dimension.PRODUCT),
                    Grouping(Dimension.CATEGORY, CategoryRollup.TOP_LEVEL),
                    Grouping(Dimension.CATEGORY),
                ):
                    answer = service.breakdown(
                        connection=connection,
                        rng=rng,
                        grouping=grouping,
                        filters=Filters(),
                        sort=SortKey.REVENUE,
                        limit=50,
                        use_rollups=use_rollups,
                    )
                    found.append(answer.model_dump(mode="json", exclude={"watermark", "sources"}))
                for filters in (
                    Filters(product_ids=(catalog.products[1],)),
                    Filters(category_ids=(catalog.categories["home"],)),
                ):
                    series = service.revenue_series(
                        connection=connection,
                        rng=rng,
                        period=Period.DAY,
                        week_start=Weekday.MONDAY,
                        filters=filters,
                        use_rollups=use_rollups,
                    )
                    found.append(series.model_dump(mode="json", include={"buckets", "totals"}))
                insight = service.inventory_insight(
                    connection=connection,
                    as_of=day,
                    zone=BERLIN,
                    window_days=weeks + 1,
                    filters=Filters(),
                    limit=50,
                    offset=0,
                    use_rollups=use_rollups,
                )
                found.append(insight.model_dump(mode="json", include={"items", "total"}))
        return found

    def compared() -> list[tuple[str, Any]]:
        """The reports from the copy against the raw rows'; the statements the copy's sent."""
        reader = snapshot_engine(engine)
        with snapshot_connection(engine) as connection:
            raw = reports(connection, use_rollups=False)
        statements.clear()
        event.listen(reader, "before_cursor_execute", seen)
        try:
            with snapshot_connection(engine) as connection:
                assert reports(connection, use_rollups=True) == raw
        finally:
            event.remove(reader, "before_cursor_execute", seen)
        return list(statements)

    assert not edge_reads(compared())  # no edge hour read from the database

    # a sale and a refund in held hours after the copy: read raw, the rest still held
    late = sell(
        engine, catalog, datetime(2025, 1, 14, 23, 45, tzinfo=UTC), [line(catalog, 2, 2, "6")]
    )
    with Session(engine, expire_on_commit=False) as session:
        refund(session, session.merge(sold[6]), {1: 2})
        session.commit()
    catch_up(engine)
    assert edge_reads(compared())  # the hours changed since the copy, read raw
    forward = inmemory.refresh(engine, copy)
    assert forward is not None and len(forward.lines) == 11
    inmemory.load_now(engine)
    assert not edge_reads(compared())
    assert late.id in forward.lines.columns[1]


@pytest.mark.parametrize(
    ("zone", "hours"),
    [
        ("Europe/Berlin", {22, 23}),  # midnight at 23:00 UTC, at 22:00 in summer
        ("America/New_York", {0, 1, 2, 3, 4}),  # at 05:00, at 04:00 in summer
        ("Asia/Kolkata", set()),  # at 18:30: a stretch from mid-hour is read raw whole
        ("Australia/Adelaide", set()),  # at 14:30 or 13:30
        ("UTC", set()),
    ],
)
def test_a_zones_edge_hours_are_those_between_its_midnight_and_utcs(
    zone: str, hours: set[int]
) -> None:
    assert inmemory.edge_hours(zone) == hours
    inmemory.ZONES = (zone,)
    assert inmemory.held_hours() == hours


def test_no_edge_lines_are_held_where_they_would_be_a_large_share_of_all() -> None:
    """Tokyo's midnight is 15:00 UTC: nine hours of every day's lines, not held."""
    assert len(inmemory.edge_hours("Asia/Tokyo")) == 9 > inmemory.MAX_EDGE_HOURS
    inmemory.ZONES = ("Asia/Tokyo",)
    assert inmemory.held_hours() == frozenset()


def test_a_products_sums_from_the_copy_count_only_its_rows_inside_the_range(
    engine: Engine, catalog: Catalog
) -> None:
    """Filtered on a product, the copy finds its rows across the range's blocks of every
    grain at once: its rows outside the range (before it, after it, between two grains'
    blocks) must not count. A product sold every day for four months, a period in the
    middle by day, week and month and as a total, equal to the raw rows'."""
    clear(engine)
    first = datetime(2025, 1, 1, 11, tzinfo=UTC)
    for n in range(120):
        lines = [line(catalog, n % 3, 1 + n % 4, "2.50"), line(catalog, 4, 1, "1")]
        sell(engine, catalog, first + timedelta(days=n, hours=n % 13), lines, channel=n % 2)
    catch_up(engine)
    assert inmemory.load_now(engine) is not None
    rng = DateRange(date(2025, 1, 20), date(2025, 3, 10), BERLIN)
    filters = Filters(product_ids=(catalog.products[1],))

    def answers(connection: Connection, use_rollups: bool) -> list[Any]:
        found: list[Any] = []
        for period in (Period.DAY, Period.WEEK, Period.MONTH):
            series = service.revenue_series(
                connection=connection,
                rng=rng,
                period=period,
                week_start=Weekday.MONDAY,
                filters=filters,
                use_rollups=use_rollups,
            )
            found.append(series.model_dump(mode="json", include={"buckets", "totals"}))
        total = service.summary(
            connection=connection, rng=rng, filters=filters, use_rollups=use_rollups
        )
        found.append(total.model_dump(mode="json", include={"kpis"}))
        return found

    with snapshot_connection(engine) as connection:
        from_copy, raw = answers(connection, True), answers(connection, False)
        assert (
            "report_product_totals"
            in service.summary(connection=connection, rng=rng, filters=filters).sources
        )
    assert from_copy == raw
    assert raw[-1]["kpis"]["units"]["current"] > 0


def test_among_is_isin_for_few_and_many_values() -> None:
    values = np.random.default_rng(7).integers(0, 40, 5_000)
    for count in (0, 1, 2, 8, 9, 30):
        wanted = list(range(0, 3 * count, 3))
        assert np.array_equal(inmemory._among(values, wanted), np.isin(values, wanted)), count


@pytest.mark.parametrize("running_from", [0, 10**9])  # from running sums, or row by row
def test_sales_rollups_sum_by_channel_as_their_rows_add_up(
    running_from: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sales rollups held in memory, summed from running sums by channel
    (``inmemory.ChannelRuns``: without buckets, and for a series whose range spans many
    rows) or row by row (a short series): for blocks of any grain over intervals that span
    many buckets or none, with or without a shift, per channel or not, with or without a
    channel filter, each bucket's and channel's sums are what the rows starting in them add
    up to, and only buckets and channels with rows are listed (none from a table with no
    rows)."""
    monkeypatch.setattr(inmemory, "RUNNING_FROM", running_from)
    rng = np.random.default_rng(7)
    hour, day = 3600, 86400
    first = 1_700_000_000 - 1_700_000_000 % day
    for trial in range(300):
        rows = []
        for grain, length in ((HOUR, hour), (DAY, day)):
            for _row in range(int(rng.integers(0, 60)) if trial % 20 else 0):
                start = first + length * int(rng.integers(0, 20 * day // length))
                channel = int(rng.choice([ALL_CHANNELS, 3, 5, 8]))
                rows.append((grain, start, channel, *rng.integers(-50, 900, 4).tolist()))
        table = ",".join(str(v) for row in rows for v in row)
        columns = inmemory.Columns.parse(Source.SALES_ROLLUPS, [table])
        copy = inmemory.RollupCopy(0, 0, {Source.SALES_ROLLUPS: columns}, {}, EMPTY_LINES, 0.0, 0.0)
        blocks = []
        for grain, length in ((HOUR, hour), (DAY, day)):
            edges = sorted(
                {first + length * int(k) for k in rng.integers(0, 22 * day // length, 6)}
            )
            intervals = [(a, b) for a, b in zip(edges[::2], edges[1::2], strict=False) if a < b]
            if intervals:
                shift = int(rng.choice([0, length - 1]))
                moments = [
                    (datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC))
                    for a, b in intervals
                ]
                blocks.append(inmemory.Blocks(grain, moments, shift))
        if not blocks:
            continue
        bucketed = bool(rng.integers(0, 2))
        starts = sorted({first + hour * int(k) for k in rng.integers(0, 22 * 24, 12)})
        boundaries = [datetime.fromtimestamp(t, UTC) for t in starts] if bucketed else None
        channels = tuple(int(c) for c in rng.choice([3, 5, 9], int(rng.integers(0, 3))))
        grouped = bool(rng.integers(0, 2))
        query = Query(channel_ids=channels, group_by=GroupBy.CHANNEL if grouped else GroupBy.NONE)

        expected: dict[tuple[int, int], list[int]] = {}
        for grain, start, channel, *measures in rows:
            if channels and channel not in channels:
                continue
            if not channels and (channel == ALL_CHANNELS) == grouped:
                continue
            for block in blocks:
                inside = any(a.timestamp() <= start < b.timestamp() for a, b in block.intervals)
                if block.grain != grain or not inside:
                    continue
                bucket = 0
                if bucketed:
                    bucket = int(np.searchsorted(starts, start + block.shift, side="right")) - 1
                key = (bucket, channel if grouped else 0)
                sums = expected.setdefault(key, [0, 0, 0, 0])
                for k in range(4):
                    sums[k] += measures[k]
        found = copy.sums(Source.SALES_ROLLUPS, query, blocks, boundaries=boundaries)
        got = {
            (int(k) >> GROUP_BITS, int(k) & ((1 << GROUP_BITS) - 1)): found.totals[:, n].tolist()
            for n, k in enumerate(found.keys.tolist())
        }
        if not grouped and not bucketed:  # one total, whether rows or none
            expected = {(0, 0): expected.get((0, 0), [0, 0, 0, 0])}
        assert got == expected
