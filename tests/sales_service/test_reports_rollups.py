"""The rollups equal the raw rows: the outbox consumer's == rebuild, under concurrency, while
the consumer lags, after a category moves, and on the embedded SQLite database too."""

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.orm import Session

from common import migrate, outbox
from common.auth.security import create_access_token
from common.db import make_engine
from common.models import Category, User
from common.settings import SalesSettings
from sales_service.main import create_app
from sales_service.reports import repository as report_repository
from sales_service.reports import rollups, service
from sales_service.reports.calendar import DateRange, Period, Weekday
from sales_service.reports.consumer import CONSUMER, catch_up, consume_batch, consume_once
from sales_service.reports.parameters import CategoryRollup, Dimension, SortKey
from sales_service.reports.planner import Filters, decompose
from sales_service.reports.repository import Source
from sales_service.reports.schemas import Breakdown, RevenueSeries
from sales_service.reports.service import Grouping
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, TEST_JWT_SECRET
from tests.sales_service.report_factories import (
    Catalog,
    LineSpec,
    add_sale,
    delete_rollups,
    make_catalog,
    refund,
    rollup_rows,
    rollups_in_memory,
)

START = datetime(2025, 3, 29, 20, 7, tzinfo=UTC)


@pytest.fixture
def catalog(engine: Engine) -> Catalog:
    return make_catalog(engine)


def spec(catalog: Catalog, n: int, quantity: int, price: str) -> LineSpec:
    cost = (Decimal(price) / 4).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return LineSpec(catalog.products[n], quantity, Decimal(price), cost)


def record_mix(engine: Engine, catalog: Catalog, count: int = 60, *, consume: bool = True) -> None:
    """Sales over two months (with a DST change), repeated products, refunds, cancellations;
    then (unless ``consume`` is false) the rollup consumer applies all their events."""
    with Session(engine, expire_on_commit=False) as session:
        for n in range(count):
            sale = add_sale(
                session,
                catalog,
                sold_at=START + timedelta(hours=17 * n, minutes=n, microseconds=n),
                channel_id=catalog.channels[n % 2],
                lines=[
                    spec(catalog, n % 5, 1 + n % 3, f"{n}.{n % 100:02d}"),
                    spec(catalog, (n * 3) % 5, 2, "19.99"),
                    spec(catalog, n % 5, 1, "0.01"),
                ][: 1 + n % 3],
            )
            session.commit()
            if n % 7 == 3:
                refund(session, sale, {1: 1})
            if n % 11 == 5:
                refund(session, sale, {}, cancel=True)
            if n % 13 == 1:
                refund(session, sale, {1: 1, 2: 1})
                refund(session, sale, {1: 5})
            session.commit()
    if consume:
        catch_up(engine)


def series_both_ways(
    connection: Connection, rng: DateRange, period: Period, filters: Filters
) -> tuple[RevenueSeries, RevenueSeries]:
    """The revenue series read as the route reads it (rollups where exact) and from raw rows."""
    fast, raw = (
        service.revenue_series(
            connection=connection,
            rng=rng,
            period=period,
            week_start=Weekday.MONDAY,
            filters=filters,
            use_rollups=use,
        )
        for use in (True, False)
    )
    return fast, raw


def same_both_ways(
    connection: Connection, rng: DateRange, period: Period, filters: Filters
) -> RevenueSeries:
    """The series as the route reads it, checked to equal the raw rows' one, buckets and
    totals, and to hold some sales."""
    fast, raw = series_both_ways(connection, rng, period, filters)
    assert fast.buckets == raw.buckets
    assert fast.totals == raw.totals and raw.totals.orders > 0
    return fast


def test_the_consumer_leaves_exactly_what_a_rebuild_from_raw_rows_computes(
    engine: Engine, catalog: Catalog, summed: str
) -> None:
    record_mix(engine, catalog)
    with engine.connect() as connection:
        kept = rollup_rows(connection)
    assert all(kept.values()), "every rollup table got rows"
    with engine.begin() as connection:
        delete_rollups(connection)
        rollups.rebuild_rollups(connection)
    with engine.connect() as connection:
        assert rollup_rows(connection) == kept
    # it runs inside the caller's transaction: nothing of it survives a rollback
    with engine.connect() as connection:
        transaction = connection.begin()
        connection.execute(
            text(
                "INSERT INTO sales_channels (code, name, is_active, created_at, updated_at) "
                "VALUES ('rolled-back', 'Gone', 1, '2025-01-01', '2025-01-01')"
            )
        )
        rollups.rebuild_rollups(connection)
        transaction.rollback()
        assert (
            connection.execute(
                text("SELECT COUNT(*) FROM sales_channels WHERE code = 'rolled-back'")
            ).scalar_one()
            == 0
        )
    # the same, summing months on two connections at once
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        rollups.rebuild_rollups(connection, engine=engine, workers=2)
        assert rollup_rows(connection) == kept


@pytest.mark.parametrize("in_memory", [False, True], ids=["tables", "copy in memory"])
def test_every_report_reads_the_same_from_rollups_as_from_raw_rows(
    engine: Engine, catalog: Catalog, in_memory: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether the rollups are read from their tables or from the process's copy."""
    record_mix(engine, catalog)
    rollups_in_memory(monkeypatch, engine, in_memory)
    rng = DateRange(date(2025, 3, 1), date(2025, 5, 31), ZoneInfo("Europe/Berlin"))
    groupings = [
        Grouping(Dimension.PRODUCT),
        Grouping(Dimension.CHANNEL),
        Grouping(Dimension.CATEGORY),
        Grouping(Dimension.CATEGORY, CategoryRollup.TOP_LEVEL),
        Grouping(Dimension.CATEGORY, parent_id=catalog.categories["home"]),
    ]
    filter_sets = [
        Filters(),
        Filters(product_ids=(catalog.products[1],)),
        Filters(category_ids=(catalog.categories["kitchen"],)),
        Filters(channel_ids=(catalog.channels[1],)),
    ]
    used: set[str] = set()
    with engine.connect() as connection:
        for filters in filter_sets:
            for period in Period:
                fast, raw = series_both_ways(connection, rng, period, filters)
                used.update(fast.sources)
                assert fast.buckets == raw.buckets
            for grouping in groupings:
                answers = [
                    service.breakdown(
                        connection=connection,
                        rng=rng,
                        grouping=grouping,
                        filters=filters,
                        sort=SortKey.UNITS,
                        limit=50,
                        use_rollups=use,
                    )
                    for use in (True, False)
                ]
                used.update(answers[0].sources)
                assert answers[0].groups == answers[1].groups
                assert answers[0].totals == answers[1].totals
        insights = [
            service.inventory_insight(
                connection=connection,
                as_of=date(2025, 5, 2),
                zone=rng.zone,
                window_days=28,
                filters=Filters(),
                limit=50,
                offset=0,
                use_rollups=use,
            ).items
            for use in (True, False)
        ]
        assert insights[0] == insights[1]
        assert any(item.units_sold for item in insights[0])
        pages = [
            service.inventory_insight(
                connection=connection,
                as_of=date(2025, 5, 2),
                zone=rng.zone,
                window_days=28,
                filters=Filters(),
                limit=2,
                offset=offset,
            )
            for offset in range(0, 6, 2)
        ]
        assert [item for page in pages for item in page.items] == insights[0]
        assert {page.total for page in pages} == {len(insights[0])}
    assert used >= {s.value for s in Source}, "every source was exercised"


@pytest.mark.parametrize("applied", [0, 25, 70])
def test_reports_are_exact_while_the_consumer_lags(
    engine: Engine, catalog: Catalog, applied: int, summed: str
) -> None:
    rng = DateRange(date(2025, 3, 1), date(2025, 5, 31), ZoneInfo("America/New_York"))
    with engine.connect() as held, held.begin():
        # This transaction is the consumer (any other one, in a server this session runs,
        # waits for its lock): it applies only the first ``applied`` events, and the reports
        # read on its connection, where the rollups stand exactly there.
        outbox.lock_position(held, CONSUMER)
        record_mix(engine, catalog, consume=False)
        if applied:
            assert consume_batch(held, batch=applied) == applied
        position, _ = outbox.lock_position(held, CONSUMER)
        assert outbox.read_after(held, outbox.SALES_OUTBOX, position), "events are pending"
        for filters in (Filters(), Filters(product_ids=(catalog.products[2],))):
            for period in (Period.DAY, Period.MONTH):
                fast, raw = series_both_ways(held, rng, period, filters)
                assert fast.buckets == raw.buckets
                assert fast.totals == raw.totals
                # a product's rollups are per UTC day: New York's days are read raw
                if applied and (period is Period.MONTH or not filters.product_ids):
                    assert any(name.startswith("report_") for name in fast.sources)
        by_category = [
            service.breakdown(
                connection=held,
                rng=rng,
                grouping=Grouping(Dimension.CATEGORY, CategoryRollup.TOP_LEVEL),
                filters=Filters(channel_ids=(catalog.channels[0],)),
                sort=SortKey.REVENUE,
                limit=10,
                use_rollups=use,
            )
            for use in (True, False)
        ]
        assert by_category[0].groups == by_category[1].groups
        held.rollback()


def test_sales_written_while_the_consumer_runs_are_each_counted_once(
    engine: Engine, catalog: Catalog, summed: str
) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def sell(worker: int) -> None:
        try:
            barrier.wait()
            for n in range(15):
                with Session(engine) as session:
                    order = [(worker + n + k) % 5 for k in range(3)]
                    add_sale(
                        session,
                        catalog,
                        sold_at=START,
                        channel_id=catalog.channels[0],
                        lines=[spec(catalog, i, 1, "3.10") for i in order[: 1 + (n % 3)]],
                    )
                    session.commit()
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    def consume() -> None:
        try:
            barrier.wait()
            for _ in range(30):
                consume_once(engine, batch=7)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sell, args=(w,)) for w in range(5)]
    threads.append(threading.Thread(target=consume))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    catch_up(engine)
    with engine.connect() as connection:
        kept = rollup_rows(connection)
        hour = connection.execute(
            text(
                "SELECT SUM(orders), COUNT(*) FROM report_sales_rollups "
                "WHERE grain = :hour AND channel_id = :channel"
            ).bindparams(hour=rollups.HOUR, channel=catalog.channels[0])
        ).one()
    assert hour == (75, 1)  # 5 x 15 sales in one hour: one row, one writer
    with engine.begin() as connection:
        delete_rollups(connection)
        rollups.rebuild_rollups(connection)
    with engine.connect() as connection:
        assert rollup_rows(connection) == kept


@pytest.mark.parametrize("in_memory", [False, True], ids=["tables", "copy in memory"])
def test_a_moved_category_makes_reports_read_raw_rows_until_rebuilt(
    engine: Engine, catalog: Catalog, in_memory: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_mix(engine, catalog, count=20)
    rollups_in_memory(monkeypatch, engine, in_memory)
    rng = DateRange(date(2025, 3, 1), date(2025, 4, 30), ZoneInfo("UTC"))
    kitchen, garden = catalog.categories["kitchen"], catalog.categories["garden"]
    knives = catalog.categories["knives"]

    def garden_tree(connection: Connection) -> Breakdown:
        return service.breakdown(
            connection=connection,
            rng=rng,
            grouping=Grouping(Dimension.CATEGORY, CategoryRollup.TOP_LEVEL),
            filters=Filters(),
            sort=SortKey.REVENUE,
            limit=10,
        )

    with engine.connect() as connection:
        before = garden_tree(connection)
        assert "report_category_rollups" in before.sources
        # kitchen (with knives below it) moves under garden
        connection.execute(
            update(Category)
            .where(Category.id == kitchen)
            .values(parent_id=garden, path=f"/{garden}/{kitchen}/")
        )
        connection.execute(
            update(Category)
            .where(Category.id == knives)
            .values(path=f"/{garden}/{kitchen}/{knives}/")
        )
        connection.commit()
        moved = garden_tree(connection)
        assert "report_category_rollups" not in moved.sources
        raw = service.breakdown(
            connection=connection,
            rng=rng,
            grouping=Grouping(Dimension.CATEGORY, CategoryRollup.TOP_LEVEL),
            filters=Filters(),
            sort=SortKey.REVENUE,
            limit=10,
            use_rollups=False,
        )
        assert moved.groups == raw.groups
        assert moved.groups != before.groups
    # What the operator runs (README), configured by the environment as the services are.
    rebuilt_by_cli = subprocess.run(
        [sys.executable, "-m", "sales_service.cli", "rebuild-rollups"],
        env={
            **os.environ,
            "SHOP_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rebuilt_by_cli.returncode == 0, rebuilt_by_cli.stderr
    assert "report rollups rebuilt" in rebuilt_by_cli.stdout
    with engine.connect() as connection:
        rebuilt = garden_tree(connection)
        assert "report_category_rollups" in rebuilt.sources
        assert rebuilt.groups == raw.groups


@contextmanager
def sqlite_shop(path: Path) -> Iterator[tuple[str, Engine, Catalog]]:
    """An embedded SQLite shop (as `make run` keeps one) with 25 sales in its rollups."""
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        catalog = make_catalog(engine)
        record_mix(engine, catalog, count=25)
        yield url, engine, catalog
    finally:
        engine.dispose()


def test_embedded_sqlite_keeps_the_same_rollups_and_answers(tmp_path: Path) -> None:
    with sqlite_shop(tmp_path / "reports.db") as (url, engine, catalog):
        with engine.connect() as connection:
            kept = rollup_rows(connection)
        with engine.begin() as connection:
            delete_rollups(connection)
            rollups.rebuild_rollups(connection)
        with engine.connect() as connection:
            assert rollup_rows(connection) == kept
        rng = DateRange(date(2025, 3, 20), date(2025, 4, 30), ZoneInfo("Asia/Kolkata"))
        with engine.connect() as connection:
            for period in (Period.DAY, Period.WEEK):
                fast, raw = (
                    service.revenue_series(
                        connection=connection,
                        rng=rng,
                        period=period,
                        week_start=Weekday.SUNDAY,
                        filters=Filters(),
                        use_rollups=use,
                    )
                    for use in (True, False)
                )
                # whole hours from the rollups, the half hour at each end of a day raw
                assert fast.sources == ["report_sales_rollups", "sales+sale_lines"]
                assert fast.buckets == raw.buckets
                assert fast.totals.orders > 0
            # a product's and a category's days: UTC days less the raw rows they hold of others
            berlin = DateRange(rng.first, rng.last, ZoneInfo("Europe/Berlin"))
            for filters in (
                Filters(product_ids=(catalog.products[2],)),
                Filters(category_ids=(catalog.categories["home"],)),
            ):
                fast, raw = series_both_ways(connection, berlin, Period.DAY, filters)
                assert fast.buckets == raw.buckets and fast.totals.orders > 0
                assert len(fast.sources) == 2
        # and through HTTP, as `make run` serves it
        settings = SalesSettings(
            environment="test",
            database_url=url,
            jwt_secret=TEST_JWT_SECRET,
            first_admin_email=ADMIN_EMAIL,
            first_admin_password=ADMIN_PASSWORD,
            products_service_url="http://127.0.0.1:9",
            stock_sync_seconds=3600,
        )
        with TestClient(create_app(settings)) as client:
            with Session(engine) as session:
                admin = session.scalars(select(User).where(User.email == ADMIN_EMAIL)).one()
                token, _ = create_access_token(user_id=admin.id, role=admin.role, settings=settings)
            response = client.get(
                "/api/v1/reports/breakdown",
                headers={"Authorization": f"Bearer {token}"},
                params={"by": "category", "category_rollup": "top_level", "from": "2025-03-20",
                        "to": "2025-04-30", "timezone": "Asia/Kolkata"},
            )  # fmt: skip
            assert response.status_code == 200, response.text
            assert [row["name"] for row in response.json()["groups"]]


def test_the_lean_rollups_migration_keeps_every_report_exact(tmp_path: Path) -> None:
    """0012 reshapes the rollups and gives each sale line its sale's time: an existing shop
    keeps exact reports straight after it (read raw while the rollups wait for their rebuild),
    and the consumer's next pass rebuilds them to the same answers."""
    from alembic import command

    with sqlite_shop(tmp_path / "upgraded.db") as (url, engine, catalog):
        config = migrate.alembic_config(url)
        command.downgrade(config, "0011")  # as a shop was before it
        command.upgrade(config, "head")
        with engine.connect() as connection:
            times = connection.execute(
                text(
                    "SELECT COUNT(*), SUM(CASE WHEN l.sold_at = s.sold_at THEN 1 ELSE 0 END) "
                    "FROM sale_lines l JOIN sales s ON s.id = l.sale_id"
                )
            ).one()
            assert times[0] > 0 and times[0] == times[1]
            assert not any(rollup_rows(connection).values())
        rng = DateRange(date(2025, 3, 1), date(2025, 5, 31), ZoneInfo("Europe/Berlin"))
        product = Filters(product_ids=(catalog.products[1],))
        with engine.connect() as connection:
            before = [
                series_both_ways(connection, rng, period, filters)
                for filters in (Filters(), product)
                for period in (Period.DAY, Period.MONTH)
            ]
        for fast, raw in before:
            assert fast.sources == [Source.RAW.value]  # no rollup to go by yet
            assert fast.buckets == raw.buckets and raw.totals.orders > 0
        catch_up(engine)
        with engine.connect() as connection:
            after = [
                series_both_ways(connection, rng, period, filters)
                for filters in (Filters(), product)
                for period in (Period.DAY, Period.MONTH)
            ]
        with engine.connect() as connection:
            assert all(rollup_rows(connection).values())
        for (_, raw_before), (fast, raw) in zip(before, after, strict=True):
            assert fast.buckets == raw.buckets == raw_before.buckets
        assert any(name.startswith("report_") for fast, _ in after for name in fast.sources)


@pytest.mark.parametrize(
    ("zone", "anchored_at_start"), [("Europe/Berlin", True), ("America/New_York", False)]
)
def test_a_day_a_zone_cuts_is_read_as_the_rollup_block_less_the_rest(
    engine: Engine, catalog: Catalog, zone: str, anchored_at_start: bool
) -> None:
    """Products and categories are kept per UTC day: a local day east or west of UTC covers
    most of one, which is read whole less the raw rows of its other hours, not raw."""
    rng = DateRange(date(2025, 3, 1), date(2025, 5, 31), ZoneInfo(zone))
    day = rng.first + timedelta(days=10)
    start = datetime.combine(day, datetime.min.time(), rng.zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), rng.zone)
    plan = decompose(
        start, end.astimezone(UTC), (rollups.DAY,), bucket=(start, end.astimezone(UTC))
    )
    assert list(plan.trimmed) == [(rollups.DAY, anchored_at_start)]
    raw_hours = sum((b - a for a, b in plan.raw), timedelta())
    out_hours = sum(
        (b - a for a, b in plan.trimmed_out[(rollups.DAY, anchored_at_start)]), timedelta()
    )
    assert raw_hours + out_hours <= timedelta(hours=12)  # not the 24 hours of raw rows
    record_mix(engine, catalog)
    with engine.connect() as connection:
        for filters in (
            Filters(product_ids=(catalog.products[2],)),
            Filters(category_ids=(catalog.categories["home"],)),
        ):
            for period in (Period.DAY, Period.WEEK):
                fast = same_both_ways(connection, rng, period, filters)
                assert len(fast.sources) == 2 and fast.sources[-1] == Source.RAW.value


@pytest.mark.parametrize(
    "zone", ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "America/St_Johns"]
)
def test_months_a_zone_cuts_add_up_from_the_rollups_as_from_raw_rows(
    engine: Engine, catalog: Catalog, zone: str
) -> None:
    """A local month starts hours away from the UTC month whose rollup rows hold most of
    it: sales on both sides of both month starts land in the right month and quarter,
    whether the consumer has applied them or not."""
    local = ZoneInfo(zone)
    months = [datetime(2025, m, 1, tzinfo=local).astimezone(UTC) for m in (10, 11, 12)]

    def record(months: list[datetime]) -> None:
        """Sales around each UTC month start and the local one, on both sides of each."""
        with Session(engine, expire_on_commit=False) as session:
            for n, start in enumerate(months):
                utc_start = start.replace(day=1, hour=0, minute=0)
                if utc_start > start:  # east of UTC: the local month starts the day before
                    utc_start = (start + timedelta(days=1)).replace(hour=0, minute=0)
                for k, moment in enumerate(sorted({start, utc_start})):
                    for minutes in (-61, -1, 0, 29, 59, 61):
                        add_sale(
                            session,
                            catalog,
                            sold_at=moment + timedelta(minutes=minutes),
                            channel_id=catalog.channels[(n + k) % 2],
                            lines=[spec(catalog, (n + k) % 5, 1 + k, f"{n + 1}.{minutes % 60}")],
                        )
            session.commit()

    record(months)
    catch_up(engine)
    rng = DateRange(date(2025, 9, 20), date(2025, 12, 10), local)
    for lagging in (False, True):
        if lagging:  # the consumer has not applied these: their months are read otherwise
            record(months[1:2])
        with engine.connect() as connection:
            for filters in (
                Filters(),
                Filters(channel_ids=(catalog.channels[1],)),
                Filters(category_ids=(catalog.categories["home"],)),
            ):
                for period in (Period.MONTH, Period.QUARTER):
                    fast = same_both_ways(connection, rng, period, filters)
                    assert fast.sources[0].startswith("report_")


def test_a_long_daily_series_buckets_each_day_as_two_shorter_series_do(
    engine: Engine, catalog: Catalog
) -> None:
    """Past ``BOUND_BOUNDARIES`` buckets, a series writes its bucket boundaries into the
    statement instead of binding them: each day must still get exactly its own sales."""
    assert 100 <= report_repository.BOUND_BOUNDARIES < 200
    record_mix(engine, catalog)
    berlin = ZoneInfo("Europe/Berlin")
    first = START.astimezone(berlin).date() - timedelta(days=50)
    long = DateRange(first, first + timedelta(days=199), berlin)
    halves = [
        DateRange(first, first + timedelta(days=99), berlin),
        DateRange(first + timedelta(days=100), first + timedelta(days=199), berlin),
    ]
    with engine.connect() as connection:
        for filters in (Filters(), Filters(product_ids=(catalog.products[1],))):
            whole = series_both_ways(connection, long, Period.DAY, filters)
            parts = [series_both_ways(connection, half, Period.DAY, filters) for half in halves]
            for way in (0, 1):  # from the rollups, from raw rows
                assert whole[way].buckets == parts[0][way].buckets + parts[1][way].buckets
                assert whole[way].totals.orders > 0


@pytest.mark.parametrize("dimension", [Dimension.PRODUCT, Dimension.CHANNEL, Dimension.CATEGORY])
def test_a_group_with_no_line_in_the_range_is_not_listed(
    engine: Engine, catalog: Catalog, dimension: Dimension
) -> None:
    """A Berlin day covers most of a UTC day: a sale in that UTC day's other hours (the next
    Berlin day) is in the day's rollup row, and must not bring its product, channel or
    category into the day's breakdown, not even with zeros (found by hypothesis)."""
    berlin = ZoneInfo("Europe/Berlin")
    with Session(engine) as session:
        add_sale(
            session,
            catalog,
            sold_at=datetime(2025, 3, 31, 0, 0, tzinfo=berlin),  # 2025-03-30 22:00 UTC
            channel_id=catalog.channels[0],
            lines=[spec(catalog, 0, 1, "5.00")],
        )
        session.commit()
    catch_up(engine)
    rng = DateRange(date(2025, 3, 30), date(2025, 3, 30), berlin)
    with engine.connect() as connection:
        fast, raw = (
            service.breakdown(
                connection=connection,
                rng=rng,
                grouping=Grouping(dimension),
                filters=Filters(),
                sort=SortKey.REVENUE,
                limit=10,
                use_rollups=use,
            )
            for use in (True, False)
        )
    assert raw.groups == []
    assert fast.groups == raw.groups


def test_reports_are_exact_before_the_consumer_has_a_position(
    engine: Engine, catalog: Catalog
) -> None:
    """With no position row for the consumer (it never ran), every event is pending: the
    reports read the raw rows, not the empty rollups."""
    record_mix(engine, catalog, consume=False)
    with engine.begin() as connection:
        connection.execute(
            text("DELETE FROM outbox_positions WHERE consumer = :c").bindparams(c=CONSUMER)
        )
    rng = DateRange(date(2025, 3, 1), date(2025, 5, 31), ZoneInfo("Europe/Berlin"))
    with engine.connect() as connection:
        same_both_ways(connection, rng, Period.MONTH, Filters())
