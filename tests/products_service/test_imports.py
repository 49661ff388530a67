"""Imports through the HTTP API: the catalog upserted by SKU from CSV/TSV files, dry runs,
all-or-nothing real runs, idempotent re-imports and hostile files."""

import io
import json
import os
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import openpyxl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from common import db as db_module
from common import delimited
from common.db import make_sessionmaker, utcnow
from common.import_jobs import (
    SPOOL_PREFIX,
    STALLED_AFTER_SECONDS,
    reap,
    resumer,
    spool_directory,
)
from common.import_jobs import _end as job_end
from common.import_jobs import _launch as job_launch
from common.import_jobs import _set as job_set
from common.imports import BATCH, ImportReport, Progress
from common.models import (
    AuditEntry,
    Category,
    ImportJob,
    ImportJobStatus,
    Product,
    ProductsEvent,
    Role,
)
from common.settings import ProductsSettings
from products_service.imports.router import JOB_KINDS
from products_service.imports.service import ImportOptions
from tests.conftest import LiveServer, service_env
from tests.products_service.factories import API, make_category, make_product
from tests.products_service.test_inventory_cli import run_cli
from tests.xlsx import as_excel_saves, with_part

HEADER = "sku,name,description,category,price,cost_price,low_stock_threshold,status\n"


def upload(
    client: TestClient,
    headers: dict[str, str],
    content: bytes | str,
    *,
    kind: str = "products",
    file_name: str = "catalog.csv",
    **params: Any,
) -> Any:
    data = content.encode() if isinstance(content, str) else content
    return client.post(
        f"{API}/imports/{kind}",
        files={"file": (file_name, data, "text/csv")},
        params={k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()},
        headers=headers,
    )


def imported(client: TestClient, headers: dict[str, str], content: bytes | str, **kw: Any) -> Any:
    response = upload(client, headers, content, **kw)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["ok"] and report["applied"], report
    return report


def rejected(client: TestClient, headers: dict[str, str], content: bytes | str, **kw: Any) -> Any:
    response = upload(client, headers, content, **kw)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "import_rejected"
    assert "nothing was written" in body["detail"]
    return body["report"]


def catalog(engine: Engine) -> dict[str, dict[str, Any]]:
    with make_sessionmaker(engine)() as session:
        return {
            p.sku: {
                "name": p.name,
                "price": str(p.price),
                "cost_price": str(p.cost_price),
                "threshold": p.low_stock_threshold,
                "status": p.status.value,
                "category_id": p.category_id,
                "description": p.description,
            }
            for p in session.scalars(select(Product))
        }


def counts(engine: Engine) -> tuple[int, int, int, int]:
    """Products, categories, catalog events and audit entries: all a write could leave."""
    with make_sessionmaker(engine)() as session:
        return (
            session.scalar(select(func.count()).select_from(Product)) or 0,
            session.scalar(select(func.count()).select_from(Category)) or 0,
            session.scalar(select(func.count()).select_from(ProductsEvent)) or 0,
            session.scalar(select(func.count()).select_from(AuditEntry)) or 0,
        )


def where(report: dict[str, Any]) -> list[tuple[int | None, str | None, str]]:
    return [(e["row"], e["column"], e["error"]) for e in report["errors"]]


@pytest.mark.parametrize("numbering", ["from the server", "read back"])
def test_a_new_catalog_lands_whole_with_categories_created_when_asked(
    client: TestClient,
    manager_headers: dict[str, str],
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    numbering: str,
) -> None:
    if numbering == "read back":  # as on a server whose ids of one INSERT may interleave
        monkeypatch.setattr(db_module, "_consecutive_ids_step", lambda _connection: None)
    electronics = make_category(client, manager_headers, "Electronics")
    content = HEADER + (
        "HP-1,Headphones,Over-ear,Electronics/Audio,59.90,21.10,5,active\n"
        "SP-1,Speaker,,electronics/audio,120,80.5,,inactive\n"
        "TV-1,Television,,Electronics,499.00,350.00,2,\n"
    )
    report = imported(client, manager_headers, content, create_categories=True)

    assert report["created"] == 3 and report["updated"] == 0 and report["unchanged"] == 0
    assert report["categories_created"] == ["Electronics/Audio"]
    assert [(c["row"], c["action"], c["key"]) for c in report["changes"]] == [
        (2, "create", "HP-1"),
        (3, "create", "SP-1"),
        (4, "create", "TV-1"),
    ]
    products = catalog(engine)
    assert products["HP-1"]["price"] == "59.90" and products["HP-1"]["threshold"] == 5
    assert products["SP-1"] == {
        **products["SP-1"],
        "price": "120.00",
        "cost_price": "80.50",
        "status": "inactive",
        "threshold": 10,  # the default, as through the API
    }
    assert products["TV-1"]["category_id"] == electronics["id"]
    by_sku = client.get(f"{API}/products/by-sku/HP-1", headers=manager_headers).json()
    assert by_sku["category"]["name"] == "Audio"
    assert by_sku["category_id"] == products["SP-1"]["category_id"]
    # Each product is announced and audited as a single create is.
    with make_sessionmaker(engine)() as session:
        types = list(session.scalars(select(ProductsEvent.type)))
        actions = list(session.scalars(select(AuditEntry.action)))
        ids = {
            sku: product_id for sku, product_id in session.execute(select(Product.sku, Product.id))
        }
        created = session.scalars(
            select(ProductsEvent).where(ProductsEvent.type == "product.created")
        ).all()
        audited = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "product.created")
        ).all()
    assert types.count("product.created") == 3
    # each event and audit entry names its own product
    assert {(e.subject_id, e.payload["product_id"], e.payload["sku"]) for e in created} == {
        (ids[sku], ids[sku], sku) for sku in ("HP-1", "SP-1", "TV-1")
    }
    assert {(a.entity_id, json.dumps(a.changes["sku"])) for a in audited} == {
        (ids[sku], json.dumps({"before": None, "after": sku})) for sku in ("HP-1", "SP-1", "TV-1")
    }
    # Electronics through the API, Audio by the import
    assert actions.count("product.created") == 3 and actions.count("category.created") == 2


def test_a_dry_run_reports_what_would_change_and_writes_nothing(
    client: TestClient, manager_headers: dict[str, str], engine: Engine
) -> None:
    make_product(client, manager_headers, "OLD-1", price="10.00", cost_price="4.00")
    before = counts(engine)
    content = HEADER + (
        "OLD-1,Product OLD-1,,,12.50,4.00,,\n"
        "NEW-1,Fresh,,Garden/Tools,3.99,1.00,,\n"
        "NEW-2,Broken,,,1.234,1.00,,\n"
    )
    response = upload(client, manager_headers, content, dry_run=True, create_categories=True)

    assert response.status_code == 200, response.text
    report = response.json()
    assert report["dry_run"] is True and report["applied"] is False and report["ok"] is False
    assert report["rows_read"] == 3 and report["rows_rejected"] == 1
    assert report["created"] == 1 and report["updated"] == 1
    assert report["categories_created"] == ["Garden", "Garden/Tools"]
    update = next(c for c in report["changes"] if c["key"] == "OLD-1")
    assert update == {
        "row": 2,
        "action": "update",
        "key": "OLD-1",
        "changes": {"price": {"before": "10.00", "after": "12.50"}},
    }
    [error] = report["errors"]
    assert error["row"] == 4 and error["column"] == "price" and error["value"] == "1.234"
    assert error["detail"] == (
        "row 4, column price: must be a decimal like 19.90: digits, at most 2 after the point"
    )
    assert counts(engine) == before
    assert catalog(engine)["OLD-1"]["price"] == "10.00"


def test_a_file_with_one_bad_row_writes_nothing_and_says_which_row(
    client: TestClient, manager_headers: dict[str, str], engine: Engine
) -> None:
    make_product(client, manager_headers, "KEEP-1", price="10.00")
    before = counts(engine)
    content = HEADER + (
        "KEEP-1,Renamed,,,11.00,4.00,,\n"
        "NEW-1,Fine,,,3.00,1.00,,\n"
        "NEW-2,Negative,,,-3.00,1.00,,\n"
        "NEW-3,,,,3.00,1.00,,\n"
        "NEW-4,Bad threshold,,,3.00,1.00,lots,\n"
        "NEW-5,Bad status,,,3.00,1.00,,sold-out\n"
        "NEW-6,No such category,,Nowhere,3.00,1.00,,\n"
        "NEW-1,Twice,,,3.00,1.00,,\n"
        "bad sku!,Bad SKU,,,3.00,1.00,,\n"
    )
    report = rejected(client, manager_headers, content)

    assert where(report) == [
        (4, "price", "invalid_value"),
        (5, "name", "missing_value"),
        (6, "low_stock_threshold", "invalid_value"),
        (7, "status", "invalid_value"),
        (8, "category", "category_not_found"),
        (9, "sku", "duplicate_key"),
        (10, "sku", "invalid_value"),
    ]
    assert report["rows_rejected"] == 7 and report["rows_read"] == 9
    negative = report["errors"][0]
    assert negative["detail"] == "row 4, column price: must not be negative"
    assert negative["value"] == "-3.00"
    assert "is required for a new product" in report["errors"][1]["detail"]
    assert "create_categories=true" in report["errors"][4]["detail"]
    assert counts(engine) == before
    assert catalog(engine)["KEEP-1"]["name"] == "Product KEEP-1"


# Cells the create route refuses (as JSON strings), for a new product's row.
REFUSED_BY_CREATE = {
    "name": ["x" * 201, "   "],
    "description": ["d" * 20_001],
    "price": ["1.005", "-0.01", "10000000000.00", "NaN", "Infinity", "1e3", "12,50", "abc"],
    "cost_price": ["0.001", "-1", "1E+2", "sNaN"],
    "status": ["archived", "sold-out"],
    "sku": ["x" * 65, "bad sku", "ünï"],
}


@pytest.mark.parametrize(
    ("column", "value"), [(c, v) for c, values in REFUSED_BY_CREATE.items() for v in values]
)
def test_a_new_product_cell_the_create_route_refuses_is_refused_by_the_import(
    client: TestClient, manager_headers: dict[str, str], engine: Engine, column: str, value: str
) -> None:
    # The import checks a row once, for an update or a create alike, then makes a new
    # product of it: what the create route refuses must not get in that way.
    sku = f"NEW-{uuid.uuid4().hex[:8]}"
    body = {"sku": sku, "name": "Fine", "price": "3.00", "cost_price": "1.00", column: value}
    response = client.post(f"{API}/products", json=body, headers=manager_headers)
    assert response.status_code == 422, response.text
    cells = {"description": "", "category": "", "low_stock_threshold": "", "status": "", **body}
    cells[column] = value
    row = ",".join(f'"{cells[c]}"' for c in HEADER.strip().split(","))
    before = counts(engine)
    report = rejected(client, manager_headers, HEADER + row + "\n")
    assert [(e["row"], e["column"]) for e in report["errors"]] == [(2, column)]
    assert counts(engine) == before


def test_a_problem_met_after_rows_were_written_leaves_nothing_written(
    client: TestClient, manager_headers: dict[str, str], engine: Engine
) -> None:
    # A real run writes each batch as it checks it: here the first batch and its categories
    # are written before the last row's problem is met.
    before = counts(engine)
    rows = "".join(f"W-{n:05d},Name {n},,Garden/Tools,1.00,0.50,,\n" for n in range(BATCH + 5))
    content = HEADER + rows + "W-LAST,Bad,,,-1.00,0.50,,\n"
    report = rejected(client, manager_headers, content, create_categories=True)

    assert where(report) == [(BATCH + 7, "price", "invalid_value")]
    assert report["created"] == BATCH + 5
    assert report["categories_created"] == ["Garden", "Garden/Tools"]
    assert counts(engine) == before


def test_importing_the_same_file_again_changes_nothing(
    client: TestClient, manager_headers: dict[str, str], engine: Engine
) -> None:
    content = HEADER + (
        "A-1,Alpha,First,Home/Kitchen,1.10,0.50,3,active\nB-1,Beta,,Home,2.00,1.00,,\n"
    )
    imported(client, manager_headers, content, create_categories=True)
    after_first = counts(engine)

    again = imported(client, manager_headers, content, create_categories=True)

    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2)
    assert again["categories_created"] == [] and again["changes"] == []
    assert counts(engine) == after_first


def test_an_update_changes_only_the_cells_given_and_is_announced(
    client: TestClient, manager_headers: dict[str, str], engine: Engine
) -> None:
    make_product(
        client, manager_headers, "UP-1", name="Lamp", description="Brass", low_stock_threshold=4
    )
    report = imported(client, manager_headers, "sku,price,cost\nUP-1,15.00,6.25\n")

    assert report["updated"] == 1
    assert report["changes"][0]["changes"] == {
        "cost_price": {"before": "4.00", "after": "6.25"},
        "price": {"before": "10.00", "after": "15.00"},
    }
    product = catalog(engine)["UP-1"]
    assert (product["name"], product["description"], product["threshold"]) == ("Lamp", "Brass", 4)
    assert (product["price"], product["cost_price"]) == ("15.00", "6.25")
    with make_sessionmaker(engine)() as session:
        event = session.scalars(
            select(ProductsEvent).where(ProductsEvent.type == "product.updated")
        ).one()
    payload: dict[str, Any] = dict(event.payload)
    assert sorted(payload["changed"]) == ["cost_price", "price"]
    assert payload["previous"]["price"] == "10.00"


def test_tab_separated_latin1_and_bom_files_are_read(
    client: TestClient, manager_headers: dict[str, str], engine: Engine
) -> None:
    tsv = "sku\tname\tprice\tcost_price\nT-1\tCaf\u00e9 cr\u00e8me\t4.50\t1.00\n"
    imported(
        client, manager_headers, tsv.encode("latin-1"), file_name="flat.txt", encoding="latin-1"
    )
    # As Excel saves "CSV UTF-8": a byte order mark and CRLF line ends.
    bom = "\ufeffsku,name,price,cost_price\r\nB-1,\u00c9t\u00e9,1.00,0.50\r\n".encode()
    imported(client, manager_headers, bom)
    as_csv = "sku\tname\tprice\tcost_price\nT-2\tTabbed\t1.00\t0.50\n"
    imported(client, manager_headers, as_csv, file_name="export.dat", format="tsv")

    products = catalog(engine)
    assert products["T-1"]["name"] == "Caf\u00e9 cr\u00e8me"
    assert products["B-1"]["name"] == "\u00c9t\u00e9"
    assert "T-2" in products


def test_quoted_newlines_stay_inside_their_cell(
    client: TestClient, manager_headers: dict[str, str], engine: Engine
) -> None:
    content = (
        "sku,name,description,price,cost_price\n"
        'Q-1,Mug,"Line one\nLine two, with comma",3.00,1.00\n'
        "Q-2,Cup,,2.00,1.00\n"
    )
    imported(client, manager_headers, content)
    assert catalog(engine)["Q-1"]["description"] == "Line one\nLine two, with comma"
    bad = rejected(client, manager_headers, "sku,name,price,cost_price\nQ-3,x,oops,1.00\n")
    assert bad["errors"][0]["row"] == 2


@pytest.mark.parametrize(
    ("content", "params", "error"),
    [
        (b"", {}, "empty_file"),
        (b"\n\n", {}, "empty_file"),
        (b"sku,name,price,cost_price\n", {}, "empty_file"),
        (b"sku;name;price;cost_price\nX-1;A;1.00;0.50\n", {}, "wrong_delimiter"),
        (b"sku,name,price,cost_price\nX-1,A,1.00,0.50\n", {"format": "tsv"}, "wrong_delimiter"),
        (b"sku,name,name,price\nX-1,A,B,1.00\n", {}, "duplicated_columns"),
        (b"sku,name,colour\nX-1,A,red\n", {}, "unknown_columns"),
        (b"name,price\nA,1.00\n", {}, "missing_columns"),
        ("sku,name\nX-1,Caf\u00e9\n".encode("latin-1"), {}, "undecodable_file"),
        (b'sku,name\nX-1,"unclosed\n', {}, "malformed_file"),
        (b"PK\x03\x04\x14\x00\x06\x00[Content_Types].xml", {}, "spreadsheet_file"),  # damaged
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00", {}, "spreadsheet_file"),
    ],
)
def test_a_hostile_file_is_refused_whole_with_a_clear_reason(
    client: TestClient,
    manager_headers: dict[str, str],
    engine: Engine,
    content: bytes,
    params: dict[str, str],
    error: str,
) -> None:
    before = counts(engine)
    checked = upload(client, manager_headers, content, dry_run=True, **params)
    assert checked.status_code == 200, checked.text
    assert checked.json()["ok"] is False
    assert [e["error"] for e in checked.json()["errors"]] == [error]

    report = rejected(client, manager_headers, content, **params)
    assert [e["error"] for e in report["errors"]] == [error]
    assert counts(engine) == before


def test_latin1_refusal_suggests_the_encoding(
    client: TestClient, manager_headers: dict[str, str]
) -> None:
    report = rejected(client, manager_headers, "sku,name\nX-1,Caf\u00e9\n".encode("latin-1"))
    assert "encoding=latin-1" in report["errors"][0]["detail"]


def test_rows_with_formulas_control_characters_or_wrong_cells_are_refused(
    client: TestClient, manager_headers: dict[str, str], engine: Engine
) -> None:
    content = (
        "sku,name,price,cost_price\n"
        "F-1,=cmd|' /C calc'!A0,1.00,0.50\n"
        "F-2,@SUM(A1),1.00,0.50\n"
        "F-3,Nul\x00here,1.00,0.50\n"
        "F-4,Too,many,cells,here\n"
        "F-5,- dash is fine,1.00,0.50\n"
    )
    report = rejected(client, manager_headers, content)
    assert where(report) == [
        (2, "name", "formula_refused"),
        (3, "name", "formula_refused"),
        (4, "name", "control_character"),
        (5, None, "wrong_cell_count"),
    ]
    assert report["rows_rejected"] == 4
    assert "F-5" not in catalog(engine)


def test_an_archived_category_is_refused_not_revived(
    client: TestClient, manager_headers: dict[str, str]
) -> None:
    old = make_category(client, manager_headers, "Retired")
    archived = client.post(f"{API}/categories/{old['id']}/archive", headers=manager_headers)
    assert archived.status_code == 200, archived.text
    report = rejected(
        client,
        manager_headers,
        "sku,name,category,price,cost_price\nR-1,A,Retired/Child,1.00,0.50\n",
        create_categories=True,
    )
    assert where(report) == [(2, "category", "category_archived")]


def test_only_managers_and_admins_import(
    client: TestClient, viewer_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    content = "sku,name,price,cost_price\nV-1,A,1.00,0.50\n"
    assert upload(client, viewer_headers, content).status_code == 403
    assert upload(client, {}, content).status_code == 401
    imported(client, admin_headers, content)


def test_a_file_over_the_upload_limit_gets_413_and_nothing_is_written(
    settings: ProductsSettings, manager_headers: dict[str, str], engine: Engine
) -> None:
    from products_service.main import create_app

    small = settings.model_copy(update={"import_max_bytes": 2048})
    with TestClient(create_app(small), raise_server_exceptions=False) as limited:
        before = counts(engine)
        rows = "".join(f"L-{n},Name {n},1.00,0.50\n" for n in range(200))
        response = upload(limited, manager_headers, "sku,name,price,cost_price\n" + rows)
        assert response.status_code == 413, response.text
        assert response.json()["error"] == "payload_too_large"
        assert counts(engine) == before
        # Below the limit, the same route works: the limit is the import's, not the 1 MiB
        # of every other body.
        imported(limited, manager_headers, "sku,name,price,cost_price\nS-1,A,1.00,0.50\n")


def test_more_rows_than_a_batch_import_and_report_in_bounded_lists(
    client: TestClient, manager_headers: dict[str, str], engine: Engine
) -> None:
    rows = "".join(f"M-{n:05d},Name {n},1.00,0.50\n" for n in range(1200))
    report = imported(client, manager_headers, "sku,name,price,cost_price\n" + rows)
    assert report["created"] == 1200
    assert len(report["changes"]) == 1000 and report["changes_not_listed"] == 200
    assert len(catalog(engine)) == 1200


def test_the_cli_imports_a_file_with_the_same_rules(
    tmp_path: Path, database_url: str, engine: Engine, users: dict[Role, Any]
) -> None:
    good = tmp_path / "catalog.tsv"
    good.write_text("sku\tname\tcategory\tprice\tcost\nC-1\tChair\tHome/Seating\t49.00\t20.00\n")
    checked = run_cli(
        database_url, "import-products", str(good), "--dry-run", "--create-categories"
    )
    assert checked.returncode == 0, checked.stderr
    assert "dry run" in checked.stdout and "created 1" in checked.stdout
    assert catalog(engine) == {}

    done = run_cli(
        database_url,
        "import-products",
        str(good),
        "--create-categories",
        "--json",
        "--actor",
        users[Role.MANAGER].email,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["applied"] is True and report["categories_created"] == ["Home", "Home/Seating"]
    assert catalog(engine)["C-1"]["price"] == "49.00"
    with make_sessionmaker(engine)() as session:
        emails = set(session.scalars(select(AuditEntry.actor_email)))
    assert emails == {users[Role.MANAGER].email}

    bad = tmp_path / "bad.csv"
    bad.write_text("sku,name,price,cost_price\nC-2,Table,12.345,1.00\n")
    refused = run_cli(database_url, "import-products", str(bad))
    assert refused.returncode == 1
    assert "REFUSED" in refused.stdout and "row 2, column price" in refused.stdout
    assert set(catalog(engine)) == {"C-1"}


def test_skus_match_in_any_case_as_the_database_compares_them(
    client: TestClient, manager_headers: dict[str, str], engine: Engine
) -> None:
    make_product(client, manager_headers, "Mixed-1", price="10.00")
    report = imported(client, manager_headers, "sku,price\nMIXED-1,11.00\n")
    assert (report["created"], report["updated"]) == (0, 1)
    assert catalog(engine)["Mixed-1"]["price"] == "11.00"
    twice = rejected(client, manager_headers, "sku,price\nmixed-1,12.00\nMIXED-1,13.00\n")
    assert where(twice) == [(3, "sku", "duplicate_key")]


def finished_job(client: TestClient, headers: dict[str, str], job_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"{API}/imports/jobs/{job_id}", headers=headers).json()
        if job["finished_at"] is not None:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_a_background_import_is_a_job_with_progress_and_its_report(
    client: TestClient,
    manager_headers: dict[str, str],
    viewer_headers: dict[str, str],
    engine: Engine,
) -> None:
    rows = "".join(f"J-{n:05d},Name {n},1.00,0.50\n" for n in range(1500))
    started = upload(client, manager_headers, "sku,name,price,cost_price\n" + rows, background=True)
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["status"] in ("queued", "running") and job["kind"] == "products"
    assert job["file_name"] == "catalog.csv" and job["dry_run"] is False
    assert started.headers["location"] == f"/api/v1/imports/jobs/{job['id']}"

    done = finished_job(client, viewer_headers, job["id"])
    assert done["status"] == "succeeded", done
    assert done["report"]["created"] == 1500 and done["report"]["applied"] is True
    assert done["bytes_read"] == done["bytes_total"] > 0 and done["percent"] == 100.0
    assert done["rows_per_second"] > 0 and done["eta_seconds"] is None
    assert done["stalled"] is False
    assert len(catalog(engine)) == 1500
    listed = client.get(f"{API}/imports/jobs", headers=viewer_headers).json()
    assert [j["id"] for j in listed["items"]] == [job["id"]]


def stale_job(engine: Engine, *, silent: bool = True, **fields: Any) -> int:
    """A running job's row; ``silent``: as a process that died mid-run left it."""
    with make_sessionmaker(engine)() as session:
        job = ImportJob(
            service="products",
            kind="products",
            dry_run=False,
            bytes_total=10,
            **{"status": ImportJobStatus.RUNNING, "runner": "dead-runner", **fields},
        )
        session.add(job)
        session.flush()
        if silent:  # (set after the insert: a new row's is its created_at)
            job.updated_at = utcnow() - timedelta(seconds=STALLED_AFTER_SECONDS + 60)
        session.commit()
        return job.id


def spooled(settings: ProductsSettings, content: str, *, age: float = 0) -> Path:
    directory = spool_directory(settings)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{SPOOL_PREFIX}{uuid.uuid4().hex}"
    path.write_text(content)
    if age:
        os.utime(path, (time.time() - age, time.time() - age))
    return path


def reap_products(client: TestClient, engine: Engine, settings: ProductsSettings) -> int:
    """What the app's reaper does every minute, now (it may also have come first)."""
    app: Any = client.app
    return reap(
        make_sessionmaker(engine),
        spool_directory(settings),
        service="products",
        resume=resumer(app),
    )


def test_a_job_whose_process_died_ends_failed_saying_so_and_its_upload_is_removed(
    client: TestClient,
    manager_headers: dict[str, str],
    settings: ProductsSettings,
    engine: Engine,
) -> None:
    """A restart or a crash leaves a job that no runner will finish, and its spooled upload
    on disk (up to the largest upload allowed). Without that upload (another machine's
    replica took it) nothing can start it again: the job ends failed, saying why, and an
    old leftover file goes; a live job and a live runner's file stay."""
    dead_id = stale_job(engine)
    # a live job's upload stays, however old
    waiting = spooled(settings, "sku\n", age=STALLED_AFTER_SECONDS + 60)
    alive_id = stale_job(engine, silent=False, runner="live-runner", spool_name=waiting.name)
    left = spooled(settings, "sku\n", age=STALLED_AFTER_SECONDS + 60)
    running = spooled(settings, "sku\n")
    reap_products(client, engine, settings)

    ended = client.get(f"{API}/imports/jobs/{dead_id}", headers=manager_headers).json()
    assert ended["status"] == "failed" and ended["finished_at"] is not None
    assert "no process of the service still had its upload" in ended["error"]
    assert ended["stalled"] is False and ended["attempts"] == 1
    live = client.get(f"{API}/imports/jobs/{alive_id}", headers=manager_headers).json()
    assert (live["status"], live["finished_at"]) == ("running", None)
    assert not left.exists() and running.exists() and waiting.exists()
    running.unlink()
    waiting.unlink()
    # A runner taken for dead that was only slow stops at its next progress report, and
    # writes nothing over the job's end.
    assert job_set(make_sessionmaker(engine), dead_id, "dead-runner", rows_read=5) is True
    again = client.get(f"{API}/imports/jobs/{dead_id}", headers=manager_headers).json()
    assert (again["status"], again["rows_read"]) == ("failed", 0)
    assert reap_products(client, engine, settings) == 0


def test_a_job_whose_process_died_is_started_again_from_its_upload(
    client: TestClient,
    manager_headers: dict[str, str],
    settings: ProductsSettings,
    engine: Engine,
) -> None:
    """The process that has the job's spooled upload runs it again from the start (the dead
    run's transaction died with its connection: nothing of it was written), under a runner
    token of its own, so the runner taken for dead can no longer report or end it."""
    rows = "".join(f"R-{n:04d},Lamp {n},3.00,1.00\n" for n in range(1200))
    path = spooled(settings, "sku,name,price,cost_price\n" + rows)
    options = JOB_KINDS["products"].dump(ImportOptions(file_name="lamps.csv", actor_id=None))
    job_id = stale_job(engine, options=options, spool_name=path.name, file_name="lamps.csv")
    reap_products(client, engine, settings)  # (or the app's own reaper, first)

    done = finished_job(client, manager_headers, job_id)
    assert (done["status"], done["attempts"]) == ("succeeded", 2), done
    assert done["report"]["created"] == 1200 and done["error"] is None
    assert len(catalog(engine)) == 1200
    assert not path.exists()
    # the dead run's runner is fenced off: it can neither report nor end the job
    sessions = make_sessionmaker(engine)
    assert job_set(sessions, job_id, "dead-runner", rows_read=7) is True
    assert job_end(sessions, job_id, "dead-runner", ImportJobStatus.FAILED, error="x") is False
    after = client.get(f"{API}/imports/jobs/{job_id}", headers=manager_headers).json()
    assert (after["status"], after["rows_read"], after["error"]) == ("succeeded", 1200, None)


def test_a_runner_taken_for_dead_can_no_longer_touch_the_job(engine: Engine) -> None:
    """Once another process started the job again (its own runner token), the first runner,
    only slow, stops at its next report and can neither move nor end the job."""
    job_id = stale_job(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as session:  # what reap's claim does
        session.execute(update(ImportJob).where(ImportJob.id == job_id).values(runner="successor"))
        session.commit()
    assert job_set(sessions, job_id, "dead-runner", rows_read=7) is True
    assert job_end(sessions, job_id, "dead-runner", ImportJobStatus.FAILED, error="x") is False
    with sessions() as session:
        job = session.get_one(ImportJob, job_id)
        assert (job.status, job.rows_read, job.finished_at) == ("running", 0, None)
    assert job_set(sessions, job_id, "successor", rows_read=7) is False  # its own: goes on


def test_a_long_batch_is_not_taken_for_a_dead_process(
    client: TestClient, manager_headers: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    """A live runner beats while it works: a run whose progress stays still for longer
    than the stalled time (a long batch, the long commit at the end of a big file) stays
    its runner's, and is not started a second time."""
    app: Any = client.app
    options = ImportOptions(file_name="slow.csv")
    real = JOB_KINDS["products"].run(app, options)

    def slow(db: Session, binary: IO[bytes], progress: Progress | None) -> ImportReport:
        time.sleep(2)  # no progress report meanwhile
        return real(db, binary, progress)

    # (a spool directory of its own: a reap with a half-second threshold would remove the
    # uploads of other tests' jobs from the shared one)
    path = tmp_path / f"{SPOOL_PREFIX}slow"
    path.write_text("sku,name,price,cost_price\nS-1,Lamp,3.00,1.00\n")
    job_id = stale_job(
        engine,
        silent=False,
        runner="live-runner",
        options=JOB_KINDS["products"].dump(options),
        spool_name=path.name,
    )
    sessions = make_sessionmaker(engine)
    job_launch(sessions, job_id, "live-runner", path, slow, stalled_after=0.5)
    time.sleep(1.2)
    resume = resumer(app)
    assert reap(sessions, tmp_path, service="products", resume=resume, stalled_after=0.5) == 0
    done = finished_job(client, manager_headers, job_id)
    assert (done["status"], done["attempts"], done["report"]["created"]) == ("succeeded", 1, 1)


def test_a_dead_job_is_started_again_at_most_three_times_and_a_cancelled_one_never(
    client: TestClient,
    manager_headers: dict[str, str],
    settings: ProductsSettings,
    engine: Engine,
) -> None:
    options = JOB_KINDS["products"].dump(ImportOptions(file_name="lamps.csv"))
    tired = spooled(settings, "sku,name,price,cost_price\nT-1,Lamp,3.00,1.00\n")
    cancelled = spooled(settings, "sku,name,price,cost_price\nT-2,Lamp,3.00,1.00\n")
    tired_id = stale_job(engine, options=options, spool_name=tired.name, attempts=3)
    cancelled_id = stale_job(
        engine, options=options, spool_name=cancelled.name, cancel_requested=True
    )
    reap_products(client, engine, settings)

    tired_job = finished_job(client, manager_headers, tired_id)
    assert (tired_job["status"], tired_job["attempts"]) == ("failed", 3)
    assert "stopped 3 times" in tired_job["error"]
    cancelled_job = finished_job(client, manager_headers, cancelled_id)
    assert (cancelled_job["status"], cancelled_job["attempts"]) == ("cancelled", 1)
    assert catalog(engine) == {}


def test_a_background_import_of_a_bad_file_ends_rejected_with_nothing_written(
    client: TestClient, manager_headers: dict[str, str], engine: Engine
) -> None:
    before = counts(engine)
    started = upload(
        client, manager_headers, "sku,name,price,cost_price\nX-1,A,-1.00,0.50\n", background=True
    )
    assert started.status_code == 202, started.text
    done = finished_job(client, manager_headers, started.json()["id"])
    assert done["status"] == "rejected"
    assert [e["error"] for e in done["report"]["errors"]] == ["invalid_value"]
    assert counts(engine)[0] == before[0] == 0


def test_a_cancelled_import_job_writes_nothing(
    client: TestClient,
    manager_headers: dict[str, str],
    viewer_headers: dict[str, str],
    engine: Engine,
) -> None:
    rows = "".join(f"K-{n:06d},Name {n},1.00,0.50\n" for n in range(30_000))
    started = upload(client, manager_headers, "sku,name,price,cost_price\n" + rows, background=True)
    job_id = started.json()["id"]
    forbidden = client.post(f"{API}/imports/jobs/{job_id}/cancel", headers=viewer_headers)
    assert forbidden.status_code == 403
    cancel = client.post(f"{API}/imports/jobs/{job_id}/cancel", headers=manager_headers)
    assert cancel.status_code == 200, cancel.text
    assert cancel.json()["cancel_requested"] is True

    done = finished_job(client, manager_headers, job_id)
    assert done["status"] == "cancelled" and done["report"] is None
    assert catalog(engine) == {}
    missing = client.get(f"{API}/imports/jobs/{job_id + 1000}", headers=manager_headers)
    assert missing.status_code == 404


def test_a_sku_named_again_a_few_batches_later_is_refused_naming_its_first_row(
    client: TestClient, manager_headers: dict[str, str], engine: Engine
) -> None:
    """The keys seen are kept outside the process (common.imports.FirstRows), batch by batch:
    a repeat is found whatever the distance, and in whichever case it is written."""
    run = uuid.uuid4().hex[:6].upper()
    rows = [f"FAR-{run}-{n},Lamp {n},1.00,0.50" for n in range(2600)]
    rows.append(f"far-{run}-7,Again,2.00,1.00")  # row 2602, 2.6 batches after row 9
    rows.append(f"FAR-{run}-2599,Twice,2.00,1.00")  # row 2603: the row just before it
    report = rejected(client, manager_headers, "sku,name,price,cost_price\n" + "\n".join(rows))
    assert where(report) == [(2602, "sku", "duplicate_key"), (2603, "sku", "duplicate_key")]
    reasons = [e["detail"] for e in report["errors"]]
    assert "is also in row 9" in reasons[0] and "is also in row 2601" in reasons[1]
    assert not any(sku.startswith(f"FAR-{run}") for sku in catalog(engine))


def workbook(*rows: Sequence[object]) -> bytes:
    """An .xlsx file of these rows (the first is the header), as Excel saves one."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(list(row))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_an_excel_workbook_is_read_as_its_first_sheet_with_numbers_as_excel_shows_them(
    client: TestClient, manager_headers: dict[str, str], engine: Engine
) -> None:
    rows = [
        ("SKU", "Name", "Price", "Cost", "Threshold", "Category"),
        ("XL-1", "Kettle", 24.99, 11.5, 4, "Kitchen/Small"),
        ("XL-2", "Toaster", 30, 12.990000000000002, None, "Kitchen/Small"),  # a sum's float
        (),  # a blank row is read past, and rows keep the numbers the sheet shows
    ]
    hostile = workbook(*rows, ("XL-3", "@SUM(A1)", 1, 1))  # text that starts like a formula
    report = rejected(
        client, manager_headers, hostile, file_name="catalog.xlsx", create_categories="true"
    )
    assert where(report) == [(5, "name", "formula_refused")]
    assert "XL-1" not in catalog(engine)

    report = imported(
        client,
        manager_headers,
        workbook(*rows),
        file_name="catalog.xlsx",
        create_categories="true",
    )
    assert report["created"] == 2
    found = catalog(engine)
    assert (found["XL-1"]["price"], found["XL-1"]["cost_price"]) == ("24.99", "11.50")
    assert (found["XL-2"]["price"], found["XL-2"]["cost_price"]) == ("30.00", "12.99")
    assert (found["XL-1"]["name"], found["XL-1"]["threshold"]) == ("Kettle", 4)


def test_a_workbook_that_unpacks_too_large_is_refused_before_it_is_read(
    client: TestClient,
    manager_headers: dict[str, str],
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The limits are gigabytes, as a zip bomb of a few MB would unpack to; lowered here.
    content = workbook(("SKU", "Name", "Price", "Cost"), ("XL-9", "A kettle", 1, 1))
    before = counts(engine)
    monkeypatch.setattr(delimited, "WORKBOOK_MAX_UNPACKED", 4096)
    report = rejected(client, manager_headers, content, file_name="catalog.xlsx")
    assert [e["error"] for e in report["errors"]] == ["workbook_too_large"]
    assert "save it as CSV" in report["errors"][0]["detail"]
    assert counts(engine) == before


def test_a_workbook_as_excel_saves_it_imports_and_a_damaged_one_is_refused(
    client: TestClient, manager_headers: dict[str, str], engine: Engine
) -> None:
    """Excel keeps a workbook's texts in one shared table the cells name by index (read
    from disk, common.workbook); a cell naming a text the table lacks is a damaged file."""
    rows = [("SKU", "Name", "Price", "Cost"), ("XS-1", "Kettle", 24.99, 11.5)]
    rows += [("XS-2", "Kettle", 9, 4), ("XS-3", "Teapot ☕", 12, 5)]
    content = as_excel_saves(workbook(*rows))
    report = imported(client, manager_headers, content, file_name="catalog.xlsx")
    assert report["created"] == 3
    found = catalog(engine)
    assert [found[sku]["name"] for sku in ("XS-1", "XS-2", "XS-3")] == [
        "Kettle",
        "Kettle",
        "Teapot ☕",
    ]

    damaged = with_part(  # a cell naming text 9x (the table holds 8)
        content,
        "xl/worksheets/sheet1.xml",
        lambda sheet: sheet.replace(b'r="B4" t="s"><v>', b'r="B4" t="s"><v>9', 1),
    )
    report = rejected(client, manager_headers, damaged, file_name="catalog2.xlsx")
    assert [(e["error"], e["row"]) for e in report["errors"]] == [("spreadsheet_file", None)]
    assert "near row 4" in report["errors"][0]["detail"]


def test_a_background_import_survives_its_process_killed_mid_run(
    settings: ProductsSettings, manager_headers: dict[str, str], engine: Engine
) -> None:
    """SIGKILL while the job writes: nothing of it stands, and the service started again
    runs it again from its spooled upload, to the end."""
    env = service_env(settings, SHOP_IMPORT_STALLED_SECONDS="3", SHOP_IMPORT_REAP_SECONDS="0.5")
    first = LiveServer("products_service.main:app", env)
    first.start()
    rows = 20_000
    content = "sku,name,price,cost_price\n" + "".join(
        f"KILL-{n:05d},Lamp {n},3.00,1.00\n" for n in range(rows)
    )
    try:
        started = httpx.post(
            f"{first.url}{API}/imports/products",
            files={"file": ("lamps.csv", content.encode(), "text/csv")},
            params={"background": "true"},
            headers=manager_headers,
            timeout=30,
        )
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until it has written a batch or two
            job = httpx.get(
                f"{first.url}{API}/imports/jobs/{job_id}", headers=manager_headers
            ).json()
            if job["rows_read"] >= 2 * BATCH or job["finished_at"] is not None:
                break
            time.sleep(0.05)
        assert job["status"] == "running" and job["finished_at"] is None, job
    finally:
        first.stop(kill=True)
    assert len(catalog(engine)) == 0  # its transaction died with its connection

    second = LiveServer("products_service.main:app", env)
    second.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = httpx.get(
                f"{second.url}{API}/imports/jobs/{job_id}", headers=manager_headers
            ).json()
            if job["finished_at"] is not None:
                break
            time.sleep(0.2)
    finally:
        second.stop()
    assert (job["status"], job["attempts"]) == ("succeeded", 2), (job["error"], job)
    assert job["report"]["created"] == rows
    assert len(catalog(engine)) == rows
