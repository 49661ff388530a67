"""Listing sales (filters, sort, pages) and the streamed CSV export of the same filters.

Sales are written straight to the database for speed; categories come from the products
API so their materialised paths are the real ones.
"""

import csv
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, insert, select, update

from common.db import make_sessionmaker, snapshot_engine, utcnow
from common.delimited import stream_rows
from common.models import Product, Sale, SaleLine, SaleStatus, StockSync
from sales_service.sales import repository
from tests.conftest import LiveServer
from tests.products_service.factories import create_product
from tests.sales_service.conftest import numbers

T = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
HEADER = [
    "number",
    "sold_at",
    "channel",
    "status",
    "line_no",
    "sku",
    "product_name",
    "category_id",
    "category_name",
    "quantity",
    "unit_price",
    "line_total",
    "refunded_quantity",
    "refunded_total",
]


@dataclass(frozen=True)
class Item:
    """One line to write: which product, its category snapshot, how many, at what price."""

    product_id: int
    category_id: int | None
    quantity: int
    unit_price: str
    refunded: int = 0


def insert_sale(
    engine: Engine,
    *,
    number: str,
    channel_id: int,
    sold_at: datetime,
    items: list[Item],
    status: SaleStatus = SaleStatus.COMPLETED,
) -> int:
    lines = []
    for line_no, item in enumerate(items, start=1):
        price = Decimal(item.unit_price)
        lines.append(
            SaleLine(
                line_no=line_no,
                sold_at=sold_at,
                product_id=item.product_id,
                sku=f"SKU-{item.product_id}",
                product_name=f'Product {item.product_id}, "quoted"',
                category_id=item.category_id,
                quantity=item.quantity,
                unit_price=price,
                unit_cost=Decimal("1.00"),
                line_total=price * item.quantity,
                line_cost=Decimal("1.00") * item.quantity,
                refunded_quantity=item.refunded,
                refunded_total=price * item.refunded,
                refunded_cost=Decimal("1.00") * item.refunded,
                allocations=[],
            )
        )
    with make_sessionmaker(engine)() as session:
        sale = Sale(
            number=number,
            channel_id=channel_id,
            status=status,
            sold_at=sold_at,
            units=sum(line.quantity for line in lines),
            total=sum((line.line_total for line in lines), Decimal("0.00")),
            cost_total=sum((line.line_cost for line in lines), Decimal("0.00")),
            refunded_units=sum(line.refunded_quantity for line in lines),
            refunded_total=sum((line.refunded_total for line in lines), Decimal("0.00")),
            refunded_cost=Decimal("0.00"),
            stock_sync=StockSync.DONE,
            lines=lines,
        )
        session.add(sale)
        session.commit()
        return sale.id


@dataclass(frozen=True)
class World:
    channels: dict[str, int]
    categories: dict[str, int]
    products: dict[str, int]
    sales: dict[str, int]


@pytest.fixture
def world(
    client: TestClient, sales_client: TestClient, manager_headers: dict, engine: Engine
) -> World:
    channels = {}
    for code in ("amazon", "web"):
        answer = sales_client.post(
            "/api/v1/channels", headers=manager_headers, json={"code": code, "name": code}
        )
        assert answer.status_code == 201, answer.text
        channels[code] = answer.json()["id"]

    categories: dict[str, int] = {}
    for name, parent in (
        ("electronics", None),
        ("phones", "electronics"),
        ("cases", "phones"),
        ("books", None),
    ):
        answer = client.post(
            "/api/v1/categories",
            headers=manager_headers,
            json={"name": name, "parent_id": categories.get(parent or "")},
        )
        assert answer.status_code == 201, answer.text
        categories[name] = answer.json()["id"]
    products = {name: create_product(engine) for name in ("phone", "case", "book", "tv", "misc")}

    def item(product: str, category: str | None, quantity: int, price: str) -> Item:
        return Item(products[product], categories[category] if category else None, quantity, price)

    amazon, web = channels["amazon"], channels["web"]
    day, hour = timedelta(days=1), timedelta(hours=1)
    plan: list[tuple[str, int, datetime, SaleStatus, list[Item]]] = [
        ("A-1", amazon, T, SaleStatus.COMPLETED, [item("phone", "phones", 1, "10.00")]),
        ("A-2", web, T + hour, SaleStatus.REFUNDED, [item("case", "cases", 2, "15.00")]),
        (
            "A-3",
            web,
            T + day,
            SaleStatus.PARTIALLY_REFUNDED,
            [item("book", "books", 1, "20.00"), item("phone", "phones", 1, "5.00")],
        ),
        (
            "A-4",
            amazon,
            T + 2 * day,
            SaleStatus.CANCELLED,
            [item("tv", "electronics", 1, "100.00")],
        ),
        (
            "A-5",
            amazon,
            T - timedelta(seconds=1),
            SaleStatus.COMPLETED,
            [item("book", "books", 1, "1.00")],
        ),
        ("A-6", web, T + 2 * day, SaleStatus.COMPLETED, [item("misc", None, 3, "2.00")]),
    ]
    sales = {
        number: insert_sale(
            engine, number=number, channel_id=channel, sold_at=at, status=status, items=items
        )
        for number, channel, at, status, items in plan
    }
    return World(channels, categories, products, sales)


def test_default_order_is_newest_first_with_the_id_breaking_ties(
    sales_client: TestClient, viewer_headers: dict, world: World
) -> None:
    answer = sales_client.get("/api/v1/sales", headers=viewer_headers)
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert (page["total"], page["limit"], page["offset"]) == (6, 50, 0)
    # were sold at the same moment; A-6 has the higher id.
    assert [s["number"] for s in page["items"]] == ["A-6", "A-4", "A-3", "A-2", "A-1", "A-5"]
    three = next(s for s in page["items"] if s["number"] == "A-3")
    assert three["channel"]["code"] == "web"
    assert (three["status"], three["total"], three["units"]) == ("partially_refunded", "25.00", 2)
    assert three["sold_at"].startswith("2025-03-02T10:00:00")
    assert [(ln["line_no"], ln["product_id"], ln["line_total"]) for ln in three["lines"]] == [
        (1, world.products["book"], "20.00"),
        (2, world.products["phone"], "5.00"),
    ]


def test_instants_include_from_and_exclude_to(
    sales_client: TestClient, viewer_headers: dict, world: World
) -> None:
    window = {"from": T.isoformat(), "to": (T + timedelta(days=1)).isoformat()}
    assert numbers(sales_client, viewer_headers, **window) == ["A-2", "A-1"]
    # The same instant written with another offset.
    assert numbers(sales_client, viewer_headers, **{"from": "2025-03-01T11:00:00+01:00"}) == [
        "A-6",
        "A-4",
        "A-3",
        "A-2",
        "A-1",
    ]
    assert numbers(sales_client, viewer_headers, to=T.isoformat()) == ["A-5"]


def test_dates_are_whole_days_in_the_timezone_with_to_included(
    sales_client: TestClient, viewer_headers: dict, world: World, engine: Engine
) -> None:
    # 2025-03-04 23:30 and 2025-03-05 00:30 in Berlin (UTC+1): both on the 4th in UTC.
    item = [Item(world.products["misc"], None, 1, "1.00")]
    for number, at in (("B-1", "2025-03-04T22:30:00Z"), ("B-2", "2025-03-04T23:30:00Z")):
        sold_at = datetime.fromisoformat(at)
        insert_sale(
            engine, number=number, channel_id=world.channels["web"], sold_at=sold_at, items=item
        )

    def listed(**params: str) -> list[str]:
        return numbers(sales_client, viewer_headers, **{"timezone": "Europe/Berlin", **params})

    assert listed(**{"from": "2025-03-04", "to": "2025-03-04"}) == ["B-1"]
    assert listed(**{"from": "2025-03-05"}) == ["B-2"]
    assert listed(**{"from": "2025-03-04T23:00:00Z", "to": "2025-03-05"}) == ["B-2"]
    assert listed(**{"from": "2025-03-04", "to": "2025-03-04T23:30:00Z"}) == ["B-1"]
    # Without `timezone`, the store's (UTC here): both are on the 4th.
    assert sales_client.app.state.settings.store_timezone == "UTC"  # type: ignore[attr-defined]
    window = {"from": "2025-03-04", "to": "2025-03-04"}
    assert numbers(sales_client, viewer_headers, **window) == ["B-2", "B-1"]
    assert numbers(sales_client, viewer_headers, **{"from": "2025-03-05"}) == []
    # The CSV export reads the same parameters.
    exported = sales_client.get(
        "/api/v1/sales/export.csv",
        headers=viewer_headers,
        params={"from": "2025-03-04", "to": "2025-03-04", "timezone": "Europe/Berlin"},
    )
    assert exported.status_code == 200, exported.text
    assert [row[0] for row in parse_csv(exported.text)[1:]] == ["B-1"]


@pytest.mark.parametrize("path", ["/api/v1/sales", "/api/v1/sales/export.csv"])
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2025-03-01T10:00:00"}, "query.from"),  # a time without its offset
        ({"to": "2025-02-30"}, "query.to"),
        ({"from": "yesterday"}, "query.from"),
        ({"from": T.isoformat(), "to": T.isoformat()}, "query.to"),
        ({"from": "2025-03-02", "to": "2025-03-01"}, "query.to"),
        ({"from": "2025-03-02T00:00:00+00:00", "to": "2025-03-01"}, "query.to"),
        ({"from": "2025-03-01", "timezone": "Mars/Olympus"}, "query.timezone"),
        ({"sold_from": T.isoformat()}, "query.sold_from"),
        ({"sold_to": T.isoformat()}, "query.sold_to"),
    ],
    ids=[
        "no-offset",
        "no-such-day",
        "not-a-date",
        "empty",
        "backwards-dates",
        "backwards-mixed",
        "unknown-zone",
        "old-sold_from",
        "old-sold_to",
    ],
)
def test_bad_time_filters_are_422_naming_the_parameter(
    sales_client: TestClient, viewer_headers: dict, path: str, params: dict, field: str
) -> None:
    answer = sales_client.get(path, headers=viewer_headers, params=params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["fields"][0]["field"] == field


def test_product_channel_and_status_filters_match_any_of_their_values(
    sales_client: TestClient, viewer_headers: dict, world: World
) -> None:
    get = sales_client.get
    phone, case = world.products["phone"], world.products["case"]
    assert numbers(sales_client, viewer_headers, product_id=phone) == ["A-3", "A-1"]
    assert numbers(sales_client, viewer_headers, product_id=[phone, case]) == ["A-3", "A-2", "A-1"]
    assert numbers(sales_client, viewer_headers, channel_id=world.channels["amazon"]) == [
        "A-4",
        "A-1",
        "A-5",
    ]
    both = list(world.channels.values())
    assert len(numbers(sales_client, viewer_headers, channel_id=both)) == 6
    assert numbers(sales_client, viewer_headers, status="completed") == ["A-6", "A-1", "A-5"]
    assert numbers(sales_client, viewer_headers, status=["refunded", "cancelled"]) == [
        "A-4",
        "A-2",
    ]
    assert get("/api/v1/sales", headers=viewer_headers, params={"status": "x"}).status_code == 422
    # Different filters must all hold.
    assert numbers(
        sales_client, viewer_headers, channel_id=world.channels["web"], product_id=phone
    ) == ["A-3"]
    # A product id naming no product is named back, not answered with no sales.
    unknown = world.products["misc"] + 1000
    answer = get("/api/v1/sales", headers=viewer_headers, params={"product_id": unknown})
    assert answer.status_code == 422 and answer.json()["unknown"] == [unknown]


def test_several_categories_match_any_and_q_finds_a_sale_by_number_order_id_or_sku(
    sales_client: TestClient, viewer_headers: dict, world: World, engine: Engine
) -> None:
    cat = world.categories
    assert numbers(sales_client, viewer_headers, category_id=[cat["cases"], cat["books"]]) == [
        "A-3",
        "A-2",
        "A-5",
    ]
    # a category and its own subcategory: each sale once
    assert numbers(sales_client, viewer_headers, category_id=[cat["phones"], cat["cases"]]) == [
        "A-3",
        "A-2",
        "A-1",
    ]

    assert numbers(sales_client, viewer_headers, q="A-4") == ["A-4"]
    assert numbers(sales_client, viewer_headers, q=" A-4 ") == ["A-4"]  # pasted with spaces
    with engine.begin() as connection:
        connection.execute(
            update(Sale).where(Sale.number == "A-2").values(external_order_id="112-7781-0042")
        )
        sku = connection.scalar(select(Product.sku).where(Product.id == world.products["phone"]))
    assert numbers(sales_client, viewer_headers, q="112-7781-0042") == ["A-2"]
    assert numbers(sales_client, viewer_headers, q=sku) == ["A-3", "A-1"]
    assert numbers(sales_client, viewer_headers, q=sku, status="completed") == ["A-1"]
    assert numbers(sales_client, viewer_headers, q="no-such-thing") == []
    empty = sales_client.get("/api/v1/sales", params={"q": ""}, headers=viewer_headers)
    assert empty.status_code == 422 and empty.json()["fields"][0]["field"] == "query.q"


def test_category_filter_takes_in_the_whole_subtree(
    sales_client: TestClient, viewer_headers: dict, world: World
) -> None:
    cat = world.categories
    assert numbers(sales_client, viewer_headers, category_id=cat["electronics"]) == [
        "A-4",
        "A-3",
        "A-2",
        "A-1",
    ]
    assert numbers(sales_client, viewer_headers, category_id=cat["phones"]) == ["A-3", "A-2", "A-1"]
    assert numbers(sales_client, viewer_headers, category_id=cat["cases"]) == ["A-2"]
    assert numbers(sales_client, viewer_headers, category_id=cat["books"]) == ["A-3", "A-5"]
    assert numbers(
        sales_client, viewer_headers, category_id=cat["books"], channel_id=world.channels["web"]
    ) == ["A-3"]
    unknown = sales_client.get(
        "/api/v1/sales", headers=viewer_headers, params={"category_id": max(cat.values()) + 1}
    )
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["fields"][0]["field"] == "query.category_id"


def test_sort_and_pages(sales_client: TestClient, viewer_headers: dict, world: World) -> None:
    assert numbers(sales_client, viewer_headers, sort="total") == [
        "A-5",
        "A-6",
        "A-1",
        "A-3",
        "A-2",
        "A-4",
    ]
    assert numbers(sales_client, viewer_headers, sort="-total")[:2] == ["A-4", "A-2"]
    assert numbers(sales_client, viewer_headers, sort="number") == [f"A-{n}" for n in range(1, 7)]
    assert numbers(sales_client, viewer_headers, sort="sold_at") == [
        "A-5",
        "A-1",
        "A-2",
        "A-3",
        "A-4",
        "A-6",
    ]
    bad = sales_client.get("/api/v1/sales", headers=viewer_headers, params={"sort": "cost"})
    assert bad.status_code == 400 and "sold_at" in bad.json()["detail"]

    page = sales_client.get(
        "/api/v1/sales", headers=viewer_headers, params={"limit": 2, "offset": 2}
    ).json()
    assert (page["total"], page["limit"], page["offset"]) == (6, 2, 2)
    assert [s["number"] for s in page["items"]] == ["A-3", "A-2"]
    last = sales_client.get(
        "/api/v1/sales",
        headers=viewer_headers,
        params={"limit": 2, "offset": 2, "channel_id": world.channels["amazon"]},
    ).json()
    assert (last["total"], [s["number"] for s in last["items"]]) == (3, ["A-5"])


@pytest.fixture
def statements(sales_app: Any) -> Iterator[list[tuple[str, str]]]:
    """(SQL, DBAPI cursor class) of every statement sales_app's requests run while the test
    runs (not its background stock sync, which runs on asyncio's own worker threads)."""
    seen: list[tuple[str, str]] = []

    def record(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if not threading.current_thread().name.startswith("asyncio"):
            seen.append((statement, type(cursor).__name__))

    engines = [sales_app.state.engine, snapshot_engine(sales_app.state.engine)]  # reads too
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    yield seen
    for engine in engines:
        event.remove(engine, "before_cursor_execute", record)


def test_a_page_loads_its_lines_in_one_query_however_many_sales(
    sales_client: TestClient,
    viewer_headers: dict,
    world: World,
    statements: list[tuple[str, str]],
) -> None:
    counts = []
    for limit in (1, 6):
        statements.clear()
        answer = sales_client.get("/api/v1/sales", headers=viewer_headers, params={"limit": limit})
        assert len(answer.json()["items"]) == limit
        counts.append(len(statements))
        line_queries = [s for s, _ in statements if "FROM sale_lines" in s]
        assert len(line_queries) == 1, line_queries
    assert counts[0] == counts[1]


# --- CSV export -------------------------------------------------------------------------


def parse_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def as_csv_rows(items: list[dict[str, Any]]) -> list[list[str]]:
    """What the export should say for these listed sales."""
    rows = []
    for sale in items:
        sold_at = datetime.fromisoformat(sale["sold_at"]).astimezone(UTC).isoformat()
        for line in sale["lines"]:
            category = line["category_id"]
            rows.append(
                [
                    sale["number"],
                    sold_at,
                    sale["channel"]["code"],
                    sale["status"],
                    str(line["line_no"]),
                    line["sku"],
                    line["product_name"],
                    "" if category is None else str(category),
                    line["category_name"] or "",
                    str(line["quantity"]),
                    line["unit_price"],
                    line["line_total"],
                    str(line["refunded_quantity"]),
                    line["refunded_total"],
                ]
            )
    return rows


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"category_id": "phones"},
        {"channel_id": "web", "status": ["partially_refunded", "completed"]},
        {"sort": "total", "from": T.isoformat()},
    ],
    ids=["all", "subtree", "channel-and-status", "sorted-window"],
)
def test_the_export_has_the_lines_of_exactly_the_listed_sales(
    sales_client: TestClient, viewer_headers: dict, world: World, params: dict[str, Any]
) -> None:
    if "category_id" in params:
        params = {**params, "category_id": world.categories[params["category_id"]]}
    if "channel_id" in params:
        params = {**params, "channel_id": world.channels[params["channel_id"]]}
    listed = sales_client.get("/api/v1/sales", headers=viewer_headers, params=params).json()
    exported = sales_client.get("/api/v1/sales/export.csv", headers=viewer_headers, params=params)
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.headers["content-disposition"] == "attachment; filename=sales.csv"
    rows = parse_csv(exported.text)
    assert rows[0] == HEADER
    assert rows[1:] == as_csv_rows(listed["items"])
    assert len(rows) - 1 == sum(len(s["lines"]) for s in listed["items"]) > 0


def test_the_export_refuses_bad_filters_before_streaming(
    sales_client: TestClient, viewer_headers: dict, world: World
) -> None:
    unknown = sales_client.get(
        "/api/v1/sales/export.csv",
        headers=viewer_headers,
        params={"category_id": max(world.categories.values()) + 1},
    )
    assert (
        unknown.status_code == 422 and unknown.json()["fields"][0]["field"] == "query.category_id"
    )
    assert sales_client.get("/api/v1/sales/export.csv").status_code == 401


SALES, LINES_PER_SALE = 1000, 3


@pytest.fixture
def many_sales(sales_client: TestClient, manager_headers: dict, engine: Engine) -> dict[str, int]:
    """1,000 sales of 3 lines each, alternating channels, written with bulk inserts."""
    channels = {}
    for code in ("retail", "market"):
        answer = sales_client.post(
            "/api/v1/channels", headers=manager_headers, json={"code": code, "name": code}
        )
        channels[code] = answer.json()["id"]
    product = create_product(engine)
    now = utcnow()
    with make_sessionmaker(engine)() as session:
        session.execute(
            insert(Sale),
            [
                {
                    "number": f"B-{n:05d}",
                    "channel_id": channels["retail" if n % 2 else "market"],
                    "status": SaleStatus.COMPLETED,
                    "sold_at": T + timedelta(minutes=n),
                    "units": 6,
                    "total": Decimal("14.14"),  # 1 x 1.01 + 2 x 2.02 + 3 x 3.03
                    "cost_total": Decimal("3.00"),
                    "refunded_units": 0,
                    "refunded_total": Decimal("0.00"),
                    "refunded_cost": Decimal("0.00"),
                    "note": "",
                    "request_hash": "",
                    "stock_sync": StockSync.DONE,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(SALES)
            ],
        )
        ids = {number: id_ for number, id_ in session.execute(select(Sale.number, Sale.id))}
        session.execute(
            insert(SaleLine),
            [
                {
                    "sale_id": ids[f"B-{n:05d}"],
                    "line_no": line_no,
                    "sold_at": T + timedelta(minutes=n),
                    "product_id": product,
                    "sku": "BULK",
                    "product_name": "Bulk item",
                    "category_id": None,
                    "quantity": line_no,
                    "unit_price": Decimal("1.01") * line_no,
                    "unit_cost": Decimal("0.50"),
                    "line_total": Decimal("1.01") * line_no * line_no,
                    "line_cost": Decimal("0.50") * line_no,
                    "refunded_quantity": 0,
                    "refunded_total": Decimal("0.00"),
                    "refunded_cost": Decimal("0.00"),
                    "allocations": [],
                }
                for n in range(SALES)
                for line_no in range(1, LINES_PER_SALE + 1)
            ],
        )
        session.commit()
    return channels


def test_a_large_export_streams_every_line_through_a_server_side_cursor(
    sales_client: TestClient,
    live_sales: LiveServer,
    viewer_headers: dict,
    many_sales: dict[str, int],
    statements: list[tuple[str, str]],
) -> None:
    # Over a real socket: chunked, no Content-Length, every line once.
    with httpx.stream(
        "GET",
        f"{live_sales.url}/api/v1/sales/export.csv",
        headers=viewer_headers,
        params={"sort": "sold_at"},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        assert response.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in response.headers
        chunks = list(response.iter_text())
    rows = parse_csv("".join(chunks))
    assert rows[0] == HEADER
    assert len(rows) == 1 + SALES * LINES_PER_SALE
    assert rows[1] == [
        "B-00000",
        "2025-03-01T10:00:00+00:00",
        "market",
        "completed",
        "1",
        "BULK",
        "Bulk item",
        "",
        "",
        "1",
        "1.01",
        "1.01",
        "0",
        "0.00",
    ]
    assert rows[-1][:2] == ["B-00999", "2025-03-02T02:39:00+00:00"]
    assert rows[-1][4:12] == ["3", "BULK", "Bulk item", "", "", "3", "3.03", "9.09"]
    assert [r[0] for r in rows[1:]] == [f"B-{n:05d}" for n in range(SALES) for _ in range(3)]

    # Filtered the same way as the list: only the retail sales (odd numbers).
    statements.clear()
    filtered = sales_client.get(
        "/api/v1/sales/export.csv",
        headers=viewer_headers,
        params={"channel_id": many_sales["retail"]},
    )
    retail_rows = parse_csv(filtered.text)[1:]
    assert len(retail_rows) == SALES // 2 * LINES_PER_SALE
    assert {r[2] for r in retail_rows} == {"retail"}
    assert {int(r[0][2:]) % 2 for r in retail_rows} == {1}
    # The rows were read through an unbuffered server-side cursor.
    export_cursors = [kind for sql, kind in statements if "sale_lines.line_no" in sql]
    assert export_cursors == ["SSCursor"], statements


def test_export_rows_arrive_in_batches(
    sales_app: Any, many_sales: dict[str, int], engine: Engine
) -> None:
    stmt = repository.export_query(repository.SaleFilters(), [Sale.id.asc()])
    sizes = [len(batch) for batch in stream_rows(sales_app.state.engine, stmt, batch=1000)]
    assert sizes == [1000, 1000, 1000]


def test_the_export_writes_formula_like_text_as_text(
    sales_client: TestClient, viewer_headers: dict, world: World, engine: Engine
) -> None:
    with engine.begin() as connection:
        connection.execute(update(SaleLine).values(product_name="=cmd|' /C calc'!A0"))
    exported = sales_client.get("/api/v1/sales/export.csv", headers=viewer_headers)
    assert exported.status_code == 200, exported.text
    names = {row[HEADER.index("product_name")] for row in parse_csv(exported.text)[1:]}
    assert names == {"'=cmd|' /C calc'!A0"}
