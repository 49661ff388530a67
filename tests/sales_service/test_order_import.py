"""Orders imported from Amazon's order report, Walmart's order export or a generic CSV: one
sale per order with its channel, snapshots and marketplace order id, nothing twice, reports
exact, hostile files refused whole."""

import csv
import io
import json
import subprocess
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from common import db as db_module
from common.db import make_sessionmaker, utcnow
from common.import_jobs import SPOOL_PREFIX, STALLED_AFTER_SECONDS, reap, resumer, spool_directory
from common.imports import BATCH
from common.models import ImportJob, ImportJobStatus, Sale, SaleLine, SalesEvent, StockMovement
from common.settings import SalesSettings
from sales_service import events
from sales_service.imports.router import JOB_KINDS
from sales_service.imports.service import OrderImportOptions, OrderProfile
from sales_service.reports.consumer import catch_up
from sales_service.sales import repository as sales_repository
from tests.products_service.factories import (
    ledger_problems,
    level,
    main_warehouse_id,
    make_product,
    receive_stock,
)
from tests.products_service.test_imports import finished_job
from tests.products_service.test_inventory_cli import run_cli as run_products_cli
from tests.xlsx import as_excel_saves

API = "/api/v1"
AMAZON_HEADER = (
    "amazon-order-id\tmerchant-order-id\tpurchase-date\tlast-updated-date\torder-status\t"
    "fulfillment-channel\tsales-channel\tproduct-name\tsku\tasin\titem-status\tquantity\t"
    "currency\titem-price\titem-tax\n"
)


def amazon_row(order: str, when: str, status: str, sku: str, quantity: str, price: str) -> str:
    return (
        f"{order}\t\t{when}\t{when}\t{status}\tAmazon\tAmazon.com\tA product\t{sku}\tB000\t"
        f"Shipped\t{quantity}\tUSD\t{price}\t0.00\n"
    )


# Walmart Seller Center's order export, header verbatim ("SOurce" included): the layout public
# parsers of that export read (as CSV here; walmart_workbook makes the .xlsx it downloads).
WALMART_HEADER = (
    "PO#,Order#,Order Date,Ship By,Delivery Date,Customer Name,Customer Shipping Address,"
    "Customer Phone Number,Ship to Address 1,Ship to Address 2,City,State,Zip,Segment,FLIDS,"
    "Line#,UPC,Status,Item Description,Shipping Method,Shipping Tier,Shipping SLA,"
    "Shipping Config SOurce,Qty,SKU,Item Cost,Shipping Cost,Tax,Update Status,Update Qty,"
    "Carrier,Tracking Number,Tracking Url,Seller Order NO,Fulfillment Entity,"
    "Replacement Order,Original Customer Order Id,Customer Intent To Cancel,"
    "Intent To Cancel Override\n"
)


def walmart_row(
    po: str, when: str, line: str, status: str, quantity: str, sku: str, unit_price: str
) -> str:
    return (
        f'{po},2000{po},{when},03/05/2026,,A B,"1 Main St, Springfield",555-0100,1 Main St,,'
        f"Springfield,IL,62701,,,{line},000000000000,{status},A product,Standard,,,,"
        f"{quantity},{sku},{unit_price},0.00,0.00,,,,,,,Seller Fulfilled,N,,,\n"
    )


@pytest.fixture
def shop(
    client: TestClient, sales_client: TestClient, manager_headers: dict[str, str]
) -> dict[str, Any]:
    products = {
        sku: make_product(client, manager_headers, sku, price=price, cost_price=cost)
        for sku, price, cost in [("MUG-1", "12.00", "4.00"), ("TEE-1", "20.00", "8.50")]
    }
    channels = {}
    for code in ("amazon", "walmart", "web"):
        made = sales_client.post(
            f"{API}/channels", json={"code": code, "name": code.title()}, headers=manager_headers
        )
        assert made.status_code == 201, made.text
        channels[code] = made.json()["id"]
    return {"products": products, "channels": channels}


def upload(
    sales_client: TestClient,
    headers: dict[str, str],
    content: str | bytes,
    *,
    file_name: str = "orders.txt",
    **params: Any,
) -> Any:
    data = content.encode() if isinstance(content, str) else content
    return sales_client.post(
        f"{API}/imports/orders",
        files={"file": (file_name, data, "text/plain")},
        params={k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()},
        headers=headers,
    )


def sales_rows(engine: Engine) -> int:
    with make_sessionmaker(engine)() as session:
        return session.scalar(select(func.count()).select_from(Sale)) or 0


AMAZON_FILE = AMAZON_HEADER + (
    amazon_row("111-0000001-0000001", "2026-03-01T14:05:00+01:00", "Shipped", "MUG-1", "2", "23.00")
    + amazon_row(
        "111-0000001-0000001", "2026-03-01T14:05:00+01:00", "Shipped", "tee-1", "1", "19.50"
    )
    + amazon_row("111-0000002-0000002", "2026-03-02T09:00:00+00:00", "Cancelled", "MUG-1", "1", "")
    + amazon_row(
        "111-0000003-0000003", "2026-03-03T23:30:00-05:00", "Shipped", "TEE-1", "3", "60.00"
    )
    + amazon_row("111-0000004-0000004", "2026-03-04T10:00:00+00:00", "Pending", "TEE-1", "1", "")
)


def test_an_amazon_report_becomes_one_sale_per_order_and_reports_add_up(
    sales_client: TestClient,
    manager_headers: dict[str, str],
    viewer_headers: dict[str, str],
    engine: Engine,
    shop: dict[str, Any],
    summed: str,
) -> None:
    response = upload(sales_client, manager_headers, AMAZON_FILE, profile="amazon")

    assert response.status_code == 200, response.text
    report = response.json()
    assert report["ok"] and report["applied"] and report["kind"] == "orders"
    assert (report["rows_read"], report["created"], report["skipped"]) == (5, 2, 2)
    assert [(c["row"], c["key"]) for c in report["changes"]] == [
        (2, "111-0000001-0000001"),
        (5, "111-0000003-0000003"),
    ]
    listed = sales_client.get(
        f"{API}/sales", headers=viewer_headers, params={"sort": "sold_at"}
    ).json()
    first, second = listed["items"]
    assert first["external_order_id"] == "111-0000001-0000001"
    assert first["channel"]["code"] == "amazon"
    assert first["sold_at"] == "2026-03-01T13:05:00Z"
    assert [
        (ln["sku"], ln["quantity"], ln["unit_price"], ln["unit_cost"]) for ln in first["lines"]
    ] == [
        ("MUG-1", 2, "11.50", "4.00"),  # item-price is the line's total
        ("TEE-1", 1, "19.50", "8.50"),
    ]
    assert (first["total"], second["total"]) == ("42.50", "60.00")
    assert second["sold_at"] == "2026-03-04T04:30:00Z"
    # History takes no stock.
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(StockMovement)) == 0
        recorded = session.scalar(
            select(func.count()).select_from(SalesEvent).where(SalesEvent.type == "sale.recorded")
        )
        raw = session.scalar(select(func.sum(SaleLine.line_total - SaleLine.refunded_total)))
    assert recorded == 2 and raw == Decimal("102.50")

    catch_up(engine)
    revenue = sales_client.get(
        f"{API}/reports/revenue",
        headers=viewer_headers,
        params={
            "from": "2026-03-01",
            "to": "2026-03-05",
            "timezone": "UTC",
            "channel_id": shop["channels"]["amazon"],
        },
    )
    assert revenue.status_code == 200, revenue.text
    assert revenue.json()["totals"]["revenue"] == "102.50"
    assert revenue.json()["totals"]["orders"] == 2


def test_importing_the_same_or_a_newer_overlapping_report_adds_nothing_twice(
    sales_client: TestClient, manager_headers: dict[str, str], engine: Engine, shop: dict[str, Any]
) -> None:
    assert upload(sales_client, manager_headers, AMAZON_FILE, profile="amazon").status_code == 200
    before = sales_rows(engine)

    again = upload(sales_client, manager_headers, AMAZON_FILE, profile="amazon").json()
    assert (again["created"], again["unchanged"], again["skipped"]) == (0, 2, 2)
    assert sales_rows(engine) == before

    newer = AMAZON_FILE + amazon_row(
        "111-0000005-0000005", "2026-03-05T08:00:00+00:00", "Shipped", "MUG-1", "1", "12.00"
    )
    report = upload(sales_client, manager_headers, newer, profile="amazon").json()
    assert (report["created"], report["unchanged"]) == (1, 2)
    assert sales_rows(engine) == before + 1


WALMART_ROWS = (
    ("4001", "03/01/2026", "1", "Shipped", "2", "MUG-1", "11.00"),
    ("4002", "2026-03-02 18:30:00", "1", "Delivered", "1", "TEE-1", "18.00"),
    ("4003", "03/02/2026", "1", "Canceled", "1", "TEE-1", "18.00"),
)


def walmart_workbook() -> bytes:
    """WALMART_ROWS as Seller Center's .xlsx holds them: numbers as numbers, dates as dates,
    texts in the workbook's shared table."""
    typed = {"PO#": int, "Order#": int, "Line#": int, "Qty": int, "Item Cost": float}
    rows = list(
        csv.reader(io.StringIO(WALMART_HEADER + "".join(walmart_row(*r) for r in WALMART_ROWS)))
    )
    header, body = rows[0], rows[1:]
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(header)
    for row in body:
        cells: list[object] = []
        for name, cell in zip(header, row, strict=True):
            if name == "Order Date":  # a sheet's date has no zone: naive on purpose
                shape = "%m/%d/%Y" if "/" in cell else "%Y-%m-%d %H:%M:%S"
                cells.append(datetime.strptime(cell, shape))  # noqa: DTZ007
            elif name in typed and cell:
                cells.append(typed[name](cell))
            else:
                cells.append(cell or None)
        sheet.append(cells)
    out = io.BytesIO()
    book.save(out)
    return as_excel_saves(out.getvalue())


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_walmart_dates_without_an_offset_are_read_in_the_zone_given_and_said_so(
    sales_client: TestClient,
    manager_headers: dict[str, str],
    viewer_headers: dict[str, str],
    shop: dict[str, Any],
    kind: str,
) -> None:
    content: str | bytes = (
        WALMART_HEADER + "".join(walmart_row(*row) for row in WALMART_ROWS)
        if kind == "csv"
        else walmart_workbook()  # as Seller Center downloads it
    )
    report = upload(
        sales_client,
        manager_headers,
        content,
        file_name=f"walmart.{kind}",
        profile="walmart",
        timezone="America/New_York",
    ).json()
    assert (report["created"], report["skipped"]) == (2, 1), report
    assert report["notes"] == [
        "Dates without an offset were read as times in America/New_York (the timezone parameter)"
    ]
    sales = sales_client.get(
        f"{API}/sales", headers=viewer_headers, params={"sort": "sold_at"}
    ).json()["items"]
    assert [(s["external_order_id"], s["sold_at"], s["total"]) for s in sales] == [
        ("4001", "2026-03-01T05:00:00Z", "22.00"),
        ("4002", "2026-03-02T23:30:00Z", "18.00"),
    ]


def test_a_generic_csv_is_read_through_a_column_mapping(
    sales_client: TestClient, manager_headers: dict[str, str], shop: dict[str, Any]
) -> None:
    content = (
        "Order ID,Date,Item,Units,Each\n"
        "W-1,2026-02-01T10:00:00Z,MUG-1,1,12.00\n"
        "W-1,2026-02-01T10:00:00Z,TEE-1,2,19.99\n"
    )
    response = upload(
        sales_client,
        manager_headers,
        content,
        file_name="web.csv",
        channel="web",
        map=["Order ID=order_id", "Date=sold_at", "Item=sku", "Units=quantity", "Each=price"],
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 1
    missing = upload(sales_client, manager_headers, content, file_name="web.csv", channel="web")
    assert missing.status_code == 422
    assert missing.json()["report"]["errors"][0]["error"] == "missing_columns"
    no_channel = upload(sales_client, manager_headers, content, file_name="web.csv")
    assert (
        no_channel.status_code == 422 and no_channel.json()["fields"][0]["field"] == "query.channel"
    )


def test_a_report_with_bad_rows_is_refused_whole(
    sales_client: TestClient, manager_headers: dict[str, str], engine: Engine, shop: dict[str, Any]
) -> None:
    content = AMAZON_HEADER + (
        amazon_row("A-1", "2026-03-01T10:00:00+00:00", "Shipped", "MUG-1", "1", "12.00")  # fine
        + amazon_row("A-2", "2026-03-01T10:00:00+00:00", "Shipped", "NOPE-1", "1", "12.00")
        + amazon_row("A-3", "yesterday", "Shipped", "MUG-1", "1", "12.00")
        + amazon_row("A-4", "2026-03-01T10:00:00+00:00", "Shipped", "MUG-1", "1", "12.345")
        + amazon_row("A-5", "2026-03-01T10:00:00+00:00", "Shipped", "MUG-1", "3", "10.00")
        + amazon_row("A-6", "2026-03-01T10:00:00+00:00", "Shipped", "MUG-1", "0", "1.00")
        + amazon_row("A-1", "2026-03-01T10:00:00+00:00", "Shipped", "MUG-1", "1", "12.00")
        + amazon_row("A-7", "2126-03-01T10:00:00+00:00", "Shipped", "MUG-1", "1", "-1.00")
    )
    response = upload(sales_client, manager_headers, content, profile="amazon")
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "import_rejected" and "nothing was written" in body["detail"]
    assert [(e["row"], e["column"], e["error"]) for e in body["report"]["errors"]] == [
        (3, "sku", "unknown_sku"),
        (4, "sold_at", "invalid_value"),
        (5, "price", "invalid_value"),
        (6, "price", "invalid_value"),
        (7, "quantity", "invalid_value"),
        (8, "order_id", "duplicate_key"),
        (9, "sold_at", "invalid_value"),
        (9, "price", "invalid_value"),
    ]
    assert "not a whole number of cents" in body["report"]["errors"][3]["detail"]
    assert sales_rows(engine) == 0

    dry = upload(sales_client, manager_headers, content, profile="amazon", dry_run=True)
    assert dry.status_code == 200 and dry.json()["ok"] is False
    assert sales_rows(engine) == 0


def test_a_control_character_is_refused_in_a_column_read_not_in_one_ignored(
    sales_client: TestClient, manager_headers: dict[str, str], engine: Engine, shop: dict[str, Any]
) -> None:
    fine = amazon_row("C-1", "2026-03-01T10:00:00+00:00", "Shipped", "MUG-1", "1", "12.00")
    noisy_name = fine.replace("A product", "A\x01product\x7f")  # product-name: not read
    bad_order = amazon_row("C-\x02", "2026-03-01T10:00:00+00:00", "Shipped", "MUG-1", "1", "1.00")
    refused = upload(
        sales_client, manager_headers, AMAZON_HEADER + noisy_name + bad_order, profile="amazon"
    )
    assert refused.status_code == 422, refused.text
    errors = refused.json()["report"]["errors"]
    assert [(e["row"], e["column"], e["error"]) for e in errors] == [
        (3, "order_id", "control_character")
    ]
    assert errors[0]["value"] == "C-\\x02" and sales_rows(engine) == 0

    report = upload(sales_client, manager_headers, AMAZON_HEADER + noisy_name, profile="amazon")
    assert report.status_code == 200, report.text
    assert report.json()["created"] == 1 and sales_rows(engine) == 1


def test_a_report_refused_after_its_first_batch_was_written_leaves_nothing(
    sales_client: TestClient, manager_headers: dict[str, str], engine: Engine, shop: dict[str, Any]
) -> None:
    # A real run writes each batch as it checks it: the first batch's sales and events are
    # written before the last row's problem is met.
    when = "2026-03-01T10:00:00+00:00"
    rows = "".join(
        amazon_row(f"F-{n}", when, "Shipped", "MUG-1", "1", "12.00") for n in range(BATCH + 5)
    )
    content = AMAZON_HEADER + rows + amazon_row("F-BAD", when, "Shipped", "NOPE-1", "1", "1.00")
    response = upload(sales_client, manager_headers, content, profile="amazon")

    assert response.status_code == 422, response.text
    report = response.json()["report"]
    assert [(e["row"], e["error"]) for e in report["errors"]] == [(BATCH + 7, "unknown_sku")]
    assert report["created"] == BATCH + 5
    assert sales_rows(engine) == 0
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(SalesEvent)) == 0


@pytest.mark.parametrize("numbering", ["from the server", "read back"])
def test_an_imported_order_is_numbered_and_announced_as_a_sale_through_the_api_is(
    sales_client: TestClient,
    manager_headers: dict[str, str],
    engine: Engine,
    shop: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    numbering: str,
) -> None:
    if numbering == "read back":  # as on a server whose ids of one INSERT may interleave
        monkeypatch.setattr(db_module, "_consecutive_ids_step", lambda _connection: None)
    assert upload(sales_client, manager_headers, AMAZON_FILE, profile="amazon").status_code == 200

    with make_sessionmaker(engine)() as session:
        announced = {int(e.subject_id or 0): e.payload for e in session.scalars(select(SalesEvent))}
        for sale_id in announced:
            sale = sales_repository.get_with_lines(session, sale_id)
            assert sale is not None
            assert sale.number == f"S-{sale.id:08d}"
            # The event the import wrote from its rows is the one the sale path writes.
            assert announced[sale_id] == json.loads(events.sale_recorded(sale)["payload"])
    assert len(announced) == 2


def test_only_managers_import_orders(
    sales_client: TestClient, viewer_headers: dict[str, str], shop: dict[str, Any]
) -> None:
    assert upload(sales_client, viewer_headers, AMAZON_FILE, profile="amazon").status_code == 403


def test_the_cli_imports_a_report_with_the_same_rules(
    tmp_path: Path, database_url: str, engine: Engine, shop: dict[str, Any]
) -> None:
    report = tmp_path / "amazon-orders.txt"
    report.write_text(AMAZON_FILE)
    checked = run_cli(
        database_url, "import-orders", str(report), "--profile", "amazon", "--dry-run"
    )
    assert checked.returncode == 0, checked.stderr
    assert "dry run" in checked.stdout and "created 2" in checked.stdout
    assert sales_rows(engine) == 0

    done = run_cli(database_url, "import-orders", str(report), "--profile", "amazon", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["created"] == 2
    assert sales_rows(engine) == 2

    bad = tmp_path / "bad.txt"
    bad.write_text(AMAZON_HEADER + amazon_row("B-1", "x", "Shipped", "MUG-1", "1", "1.00"))
    refused = run_cli(database_url, "import-orders", str(bad), "--profile", "amazon")
    assert refused.returncode == 1 and "REFUSED" in refused.stdout
    assert sales_rows(engine) == 2


def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_products_cli(database_url, *args, module="sales_service.cli")


def test_orders_that_take_stock_land_one_by_one_and_a_short_one_is_reported(
    client: TestClient,
    sales_client: TestClient,
    manager_headers: dict[str, str],
    viewer_headers: dict[str, str],
    engine: Engine,
    shop: dict[str, Any],
) -> None:
    main = main_warehouse_id(engine)
    mug = shop["products"]["MUG-1"]["id"]
    received = client.post(
        f"{API}/inventory/receipts",
        json={"product_id": mug, "warehouse_id": main, "quantity": 3},
        headers=manager_headers,
    )
    assert received.status_code == 201, received.text
    content = AMAZON_HEADER + (
        amazon_row("T-1", "2026-03-01T10:00:00+00:00", "Shipped", "MUG-1", "2", "24.00")
        + amazon_row("T-2", "2026-03-01T11:00:00+00:00", "Shipped", "MUG-1", "5", "60.00")
    )
    response = upload(sales_client, manager_headers, content, profile="amazon", take_stock=True)

    assert response.status_code == 200, response.text
    report = response.json()
    assert report["partial"] is True and report["applied"] is False
    assert [c["key"] for c in report["changes"]] == ["T-1"]
    [short] = report["errors"]
    assert (short["row"], short["error"], short["value"]) == (3, "insufficient_stock", "T-2")
    [sale] = sales_client.get(f"{API}/sales", headers=viewer_headers).json()["items"]
    assert sale["external_order_id"] == "T-1" and sale["lines"][0]["unit_price"] == "12.00"
    assert level(engine, mug, main).on_hand == 1
    with make_sessionmaker(engine)() as session:
        moved = session.scalars(select(StockMovement.quantity).where(StockMovement.quantity < 0))
        assert list(moved) == [-2]
    assert ledger_problems(engine) == []

    again = upload(sales_client, manager_headers, content, profile="amazon", take_stock=True).json()
    assert (again["created"], again["unchanged"], again["partial"]) == (0, 1, True)
    assert level(engine, mug, main).on_hand == 1


def test_cancelling_an_imported_order_of_history_puts_nothing_on_a_shelf(
    sales_client: TestClient,
    manager_headers: dict[str, str],
    viewer_headers: dict[str, str],
    engine: Engine,
    shop: dict[str, Any],
) -> None:
    assert upload(sales_client, manager_headers, AMAZON_FILE, profile="amazon").status_code == 200
    sale = sales_client.get(f"{API}/sales", headers=viewer_headers).json()["items"][0]
    cancelled = sales_client.post(
        f"{API}/sales/{sale['id']}/cancel", json={"reason": "test"}, headers=manager_headers
    )
    assert cancelled.status_code in (200, 201), cancelled.text
    assert cancelled.json()["stock_sync"] == "done"
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(StockMovement)) == 0


def test_an_order_import_runs_as_a_job_of_sales_service(
    sales_client: TestClient,
    client: TestClient,
    manager_headers: dict[str, str],
    engine: Engine,
    shop: dict[str, Any],
) -> None:
    started = upload(sales_client, manager_headers, AMAZON_FILE, profile="amazon", background=True)
    assert started.status_code == 202, started.text
    job_id = started.json()["id"]
    done = finished_job(sales_client, manager_headers, job_id)
    assert done["status"] == "succeeded" and done["report"]["created"] == 2
    assert sales_rows(engine) == 2
    # Each service answers for its own jobs.
    assert client.get(f"{API}/imports/jobs/{job_id}", headers=manager_headers).status_code == 404


def test_an_orders_job_whose_process_died_runs_again_with_all_its_options(
    sales_client: TestClient,
    manager_headers: dict[str, str],
    viewer_headers: dict[str, str],
    engine: Engine,
    sales_settings: SalesSettings,
    shop: dict[str, Any],
) -> None:
    """The job keeps its options (profile, column map, channel, zone, taking stock) with its
    upload; the process that starts it again reads them back and imports as asked."""
    main = main_warehouse_id(engine)
    mug = shop["products"]["MUG-1"]["id"]
    receive_stock(engine, product_id=mug, warehouse_id=main, quantity=5)
    options = JOB_KINDS["orders"].dump(
        OrderImportOptions(
            profile=OrderProfile.GENERIC,
            timezone="Europe/Berlin",
            channel_code="web",
            column_map={
                "Order ID": "order_id",
                "Date": "sold_at",
                "Item": "sku",
                "Units": "quantity",
                "Each": "price",
            },
            file_name="web.csv",
            take_stock=True,
        )
    )
    directory = spool_directory(sales_settings)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{SPOOL_PREFIX}{uuid.uuid4().hex}"
    path.write_text("Order ID,Date,Item,Units,Each\nW-9,2026-02-01 10:00:00,MUG-1,2,12.00\n")
    with make_sessionmaker(engine)() as session:
        job = ImportJob(
            service="sales",
            kind="orders",
            file_name="web.csv",
            dry_run=False,
            bytes_total=path.stat().st_size,
            status=ImportJobStatus.RUNNING,
            options=options,
            spool_name=path.name,
            runner="dead-runner",
        )
        session.add(job)
        session.flush()
        job.updated_at = utcnow() - timedelta(seconds=STALLED_AFTER_SECONDS + 60)
        session.commit()
        job_id = job.id
    app: Any = sales_client.app
    reap(make_sessionmaker(engine), directory, service="sales", resume=resumer(app))

    done = finished_job(sales_client, manager_headers, job_id)
    assert (done["status"], done["attempts"], done["report"]["created"]) == ("succeeded", 2, 1)
    [sale] = sales_client.get(f"{API}/sales", headers=viewer_headers).json()["items"]
    assert (sale["external_order_id"], sale["channel"]["code"]) == ("W-9", "web")
    assert sale["sold_at"] == "2026-02-01T09:00:00Z"  # 10:00 in Berlin, as the job was told
    assert level(engine, mug, main).on_hand == 3  # it took its stock


def test_cancelled_orders_can_be_imported_as_cancelled_sales_that_count_for_nothing(
    sales_client: TestClient,
    manager_headers: dict[str, str],
    viewer_headers: dict[str, str],
    engine: Engine,
    shop: dict[str, Any],
    summed: str,
) -> None:
    report = upload(
        sales_client, manager_headers, AMAZON_FILE, profile="amazon", cancelled="import"
    ).json()
    assert (report["created"], report["skipped"]) == (3, 1), report  # the pending one
    assert report["notes"] == ["Cancelled orders without a price were recorded at 0.00 a unit"]
    cancelled = sales_client.get(
        f"{API}/sales", headers=viewer_headers, params={"status": "cancelled"}
    ).json()["items"]
    assert [(s["external_order_id"], s["total"], s["net_total"]) for s in cancelled] == [
        ("111-0000002-0000002", "0.00", "0.00")
    ]
    catch_up(engine)
    revenue = sales_client.get(
        f"{API}/reports/revenue",
        headers=viewer_headers,
        params={"from": "2026-03-01", "to": "2026-03-05", "timezone": "UTC"},
    ).json()
    assert (revenue["totals"]["revenue"], revenue["totals"]["orders"]) == ("102.50", 2)
    with make_sessionmaker(engine)() as session:
        types = list(session.scalars(select(SalesEvent.type).order_by(SalesEvent.id)))
    assert types.count("sale.recorded") == 3 and types.count("sale.cancelled") == 1


def test_amazon_continuation_rows_add_no_line(
    sales_client: TestClient,
    manager_headers: dict[str, str],
    viewer_headers: dict[str, str],
    shop: dict[str, Any],
) -> None:
    when = "2026-03-01T10:00:00+00:00"
    content = AMAZON_HEADER + (
        amazon_row("C-1", when, "Shipped", "MUG-1", "1", "12.00")
        + amazon_row("C-1", "", "", "", "", "")  # more promotions than one row holds
        + amazon_row("C-1", when, "Shipped", "TEE-1", "1", "20.00")
    )
    report = upload(sales_client, manager_headers, content, profile="amazon").json()
    assert (report["ok"], report["created"], report["rows_read"]) == (True, 1, 3), report
    [sale] = sales_client.get(f"{API}/sales", headers=viewer_headers).json()["items"]
    assert [line["sku"] for line in sale["lines"]] == ["MUG-1", "TEE-1"]
