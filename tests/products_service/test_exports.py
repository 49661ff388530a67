"""Exports as CSV: the catalog (which imports back unchanged), stock levels per warehouse and
the ledger for a time range, with formula-like text written as text."""

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, update

from common.models import StockMovement
from tests.products_service.factories import (
    API,
    create_product,
    create_warehouse,
    main_warehouse_id,
    make_category,
    make_product,
)
from tests.products_service.test_imports import HEADER, catalog, counts, imported
from tests.products_service.test_stock_count_import import sku


def exported(client: TestClient, headers: dict[str, str], name: str, **params: Any) -> Any:
    response = client.get(f"{API}/exports/{name}", headers=headers, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == f"attachment; filename={name}"
    return response


def rows(response: Any) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.text)))


def test_the_catalog_export_imports_back_changing_nothing(
    client: TestClient,
    manager_headers: dict[str, str],
    viewer_headers: dict[str, str],
    engine: Engine,
) -> None:
    content = HEADER + (
        'A-1,Lamp,"Brass, tall\nwith a shade",Home/Lighting,19.90,7.25,4,active\n'
        "B-1,Rug,,Home,120.00,60.00,10,inactive\n"
        "C-1,Plain,,,1.00,0.50,0,active\n"
    )
    imported(client, manager_headers, content, create_categories=True)
    before = counts(engine)

    export = exported(client, viewer_headers, "products.csv")

    table = rows(export)
    assert table[0] == HEADER.strip().split(",")
    assert table[1:] == [
        [
            "A-1",
            "Lamp",
            "Brass, tall\nwith a shade",
            "Home/Lighting",
            "19.90",
            "7.25",
            "4",
            "active",
        ],
        ["B-1", "Rug", "", "Home", "120.00", "60.00", "10", "inactive"],
        ["C-1", "Plain", "", "", "1.00", "0.50", "0", "active"],
    ]
    again = imported(client, manager_headers, export.content)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 3)
    assert counts(engine) == before


def test_formula_like_text_is_exported_as_text_and_imports_back_as_it_was(
    client: TestClient, manager_headers: dict[str, str], engine: Engine
) -> None:
    plus = make_category(client, manager_headers, "+Plus")
    for code, name in [
        ("F-1", "=cmd|' /C calc'!A0"),
        ("F-2", "-20% deal"),
        ("F-3", "@SUM(A1)"),
        ("F-4", "\tTabbed"),
    ]:
        make_product(client, manager_headers, code, name=name, category_id=plus["id"])
    export = exported(client, manager_headers, "products.csv")
    names = {row[0]: row[1] for row in rows(export)[1:]}
    assert {row[3] for row in rows(export)[1:]} == {"'+Plus"}
    assert names == {
        "F-1": "'=cmd|' /C calc'!A0",
        "F-2": "'-20% deal",
        "F-3": "'@SUM(A1)",
        "F-4": "Tabbed",  # the API trims names
    }
    before = catalog(engine)
    again = imported(client, manager_headers, export.content)
    assert again["unchanged"] == 4
    assert catalog(engine) == before


def test_stock_levels_are_exported_per_warehouse(
    client: TestClient, viewer_headers: dict[str, str], engine: Engine
) -> None:
    main = main_warehouse_id(engine)
    north = create_warehouse(engine, code="NORTH")
    south = create_warehouse(engine, code="SOUTH")
    a = create_product(engine, stock={main: 5, north: 2})
    b = create_product(engine, stock={north: 9, south: 1})
    sku_a, sku_b = sku(engine, a), sku(engine, b)

    table = rows(exported(client, viewer_headers, "stock-levels.csv"))
    assert table[0] == [
        "sku",
        "name",
        "warehouse",
        "on_hand",
        "reserved",
        "available",
        "updated_at",
    ]
    assert sorted((r[0], r[2], r[3], r[4], r[5]) for r in table[1:]) == sorted(
        [
            (sku_a, "MAIN", "5", "0", "5"),
            (sku_a, "NORTH", "2", "0", "2"),
            (sku_b, "NORTH", "9", "0", "9"),
            (sku_b, "SOUTH", "1", "0", "1"),
        ]
    )
    only_north = rows(exported(client, viewer_headers, "stock-levels.csv", warehouse_id=north))
    assert {(r[0], r[2]) for r in only_north[1:]} == {(sku_a, "NORTH"), (sku_b, "NORTH")}
    # repeated: any of several warehouses, as the levels list takes it
    two = rows(exported(client, viewer_headers, "stock-levels.csv", warehouse_id=[main, south]))
    assert {(r[0], r[2]) for r in two[1:]} == {(sku_a, "MAIN"), (sku_b, "SOUTH")}
    ledger = rows(exported(client, viewer_headers, "stock-ledger.csv", warehouse_id=[north, south]))
    assert sorted((r[2], r[3], r[5]) for r in ledger[1:]) == sorted(
        [(sku_a, "NORTH", "2"), (sku_b, "NORTH", "9"), (sku_b, "SOUTH", "1")]
    )


def test_the_ledger_is_exported_for_a_time_range(
    client: TestClient,
    manager_headers: dict[str, str],
    viewer_headers: dict[str, str],
    engine: Engine,
) -> None:
    main = main_warehouse_id(engine)
    product = create_product(engine, stock={main: 10})
    damaged = client.post(
        f"{API}/inventory/damages",
        json={"product_id": product, "warehouse_id": main, "quantity": 3, "reason": "=dropped"},
        headers=manager_headers,
    )
    assert damaged.status_code == 201, damaged.text
    long_ago = datetime(2020, 1, 1, 12, tzinfo=UTC)
    with engine.begin() as connection:  # the receipt happened long ago
        connection.execute(
            update(StockMovement).where(StockMovement.quantity == 10).values(created_at=long_ago)
        )

    everything = rows(exported(client, viewer_headers, "stock-ledger.csv"))
    assert everything[0][:7] == [
        "id",
        "created_at",
        "sku",
        "warehouse",
        "movement_type",
        "quantity",
        "on_hand_after",
    ]
    assert [(r[4], r[5], r[6]) for r in everything[1:]] == [
        ("receipt", "10", "10"),
        ("damage", "-3", "7"),
    ]
    damage = everything[2]
    assert damage[7] == "'=dropped"  # reason, guarded
    assert damage[9] == "manager-user@example.com"

    since = (long_ago + timedelta(days=1)).isoformat()
    recent = rows(exported(client, viewer_headers, "stock-ledger.csv", **{"from": since}))
    assert [r[4] for r in recent[1:]] == ["damage"]
    until = rows(exported(client, viewer_headers, "stock-ledger.csv", to=since))
    assert [r[4] for r in until[1:]] == ["receipt"]
    receipts = rows(exported(client, viewer_headers, "stock-ledger.csv", type="receipt"))
    assert [r[4] for r in receipts[1:]] == ["receipt"]
    backwards = client.get(
        f"{API}/exports/stock-ledger.csv",
        headers=viewer_headers,
        params={"from": since, "to": long_ago.isoformat()},
    )
    assert backwards.status_code == 422
    assert client.get(f"{API}/exports/stock-ledger.csv").status_code == 401
