"""A stock count imported from a file: count corrections in the ledger naming the file, a dry
run, all or nothing, and a re-import that changes nothing."""

import gc
import io
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, func, select

from common.db import make_sessionmaker
from common.imports import BATCH
from common.models import MovementType, Product, ProductsEvent, StockLevel, StockMovement
from products_service.imports.service import ImportOptions, import_products, import_stock_counts
from tests.products_service.factories import (
    API,
    create_product,
    create_warehouse,
    ledger_problems,
    level,
    main_warehouse_id,
)
from tests.products_service.test_imports import rejected, upload
from tests.products_service.test_reservations import body, line, reserve


def sku(engine: Engine, product_id: int) -> str:
    from common.models import Product

    with make_sessionmaker(engine)() as session:
        return session.get_one(Product, product_id).sku


def ledger_rows(engine: Engine) -> int:
    with make_sessionmaker(engine)() as session:
        return session.scalar(select(func.count()).select_from(StockMovement)) or 0


def counted(client: TestClient, headers: dict[str, str], content: str, **params: Any) -> Any:
    response = upload(
        client, headers, content, kind="stock-counts", file_name="count-2026-12.csv", **params
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_count_corrects_each_shelf_in_the_ledger_with_the_file_as_reference(
    client: TestClient, manager_headers: dict[str, str], engine: Engine
) -> None:
    main = main_warehouse_id(engine)
    north = create_warehouse(engine, code="NORTH")
    a = create_product(engine, stock={main: 10})
    b = create_product(engine)
    c = create_product(engine, stock={main: 4})
    content = (
        "sku,warehouse,counted_quantity\n"
        f"{sku(engine, a)},MAIN,7\n"
        f"{sku(engine, b)},NORTH,5\n"
        f"{sku(engine, c)},MAIN,4\n"
    )
    report = counted(client, manager_headers, content, reason="year-end count")

    assert report["ok"] and report["applied"]
    assert (report["updated"], report["unchanged"], report["created"]) == (2, 1, 0)
    assert report["changes"][0] == {
        "row": 2,
        "action": "update",
        "key": f"{sku(engine, a)}@MAIN",
        "changes": {
            "count_correction": {"before": None, "after": -3},
            "on_hand": {"before": 10, "after": 7},
        },
    }
    assert level(engine, a, main).on_hand == 7
    assert level(engine, b, north).on_hand == 5
    assert level(engine, c, main).on_hand == 4
    with make_sessionmaker(engine)() as session:
        corrections = list(
            session.scalars(
                select(StockMovement)
                .where(StockMovement.movement_type == MovementType.COUNT_CORRECTION)
                .order_by(StockMovement.id)
            )
        )
        moved = session.scalar(
            select(func.count())
            .select_from(ProductsEvent)
            .where(ProductsEvent.type == "stock.moved", ProductsEvent.subject_id.in_([a, b]))
        )
        announced = [
            event.payload
            for event in session.scalars(
                select(ProductsEvent)
                .where(ProductsEvent.type == "stock.moved")
                .order_by(ProductsEvent.id)
            )
            if event.payload["movement_type"] == "count_correction"
        ]
    assert [(m.product_id, m.quantity, m.on_hand_after) for m in corrections] == [
        (a, -3, 7),
        (b, 5, 5),
    ]
    assert {(m.reason, m.reference) for m in corrections} == {
        ("year-end count", "count-2026-12.csv")
    }
    assert all(m.actor_id is not None for m in corrections)
    assert moved == 1 + 2  # a's receipt, then one stock.moved per correction
    # Each event names its own ledger row and the level it left.
    assert [
        (e["movement_id"], e["product_id"], e["quantity"], e["on_hand_after"]) for e in announced
    ] == [(m.id, m.product_id, m.quantity, m.on_hand_after) for m in corrections]
    assert ledger_problems(engine) == []
    check = client.get(f"{API}/inventory/ledger-check", headers=manager_headers).json()
    assert check["ok"] is True


def test_the_same_count_imported_again_changes_nothing(
    client: TestClient, manager_headers: dict[str, str], engine: Engine
) -> None:
    main = main_warehouse_id(engine)
    a = create_product(engine, stock={main: 10})
    content = f"sku,warehouse,counted_quantity\n{sku(engine, a)},MAIN,3\n"
    counted(client, manager_headers, content)
    rows = ledger_rows(engine)

    again = counted(client, manager_headers, content)

    assert (again["updated"], again["unchanged"], again["changes"]) == (0, 1, [])
    assert ledger_rows(engine) == rows
    assert level(engine, a, main).on_hand == 3


def test_a_dry_run_shows_the_corrections_and_records_none(
    client: TestClient, manager_headers: dict[str, str], engine: Engine
) -> None:
    main = main_warehouse_id(engine)
    a = create_product(engine, stock={main: 10})
    rows = ledger_rows(engine)
    report = counted(
        client,
        manager_headers,
        f"sku\twarehouse_code\tquantity\n{sku(engine, a).lower()}\tmain\t12\n",
        dry_run=True,
        format="tsv",
    )
    assert report["dry_run"] and not report["applied"] and report["ok"]
    assert report["changes"][0]["changes"]["on_hand"] == {"before": 10, "after": 12}
    assert ledger_rows(engine) == rows
    assert level(engine, a, main).on_hand == 10


def test_one_bad_row_refuses_the_whole_count(
    client: TestClient,
    manager_headers: dict[str, str],
    service_headers: dict[str, str],
    engine: Engine,
) -> None:
    main = main_warehouse_id(engine)
    a = create_product(engine, stock={main: 10})
    held = create_product(engine, stock={main: 6})
    reservation = reserve(client, service_headers, body(line(held, 4, main)))
    assert reservation.status_code == 201, reservation.text
    rows = ledger_rows(engine)
    content = (
        "sku,warehouse,counted_quantity\n"
        f"{sku(engine, a)},MAIN,8\n"  # fine alone
        "NO-SUCH-SKU,MAIN,1\n"
        f"{sku(engine, a)},NOWHERE,1\n"
        f"{sku(engine, a)},MAIN,2\n"
        f"{sku(engine, held)},MAIN,3\n"
        f"{sku(engine, held)},MAIN,-1\n"
        f"{sku(engine, held)},,1.5\n"
    )
    report = rejected(client, manager_headers, content, kind="stock-counts", file_name="count.csv")

    assert [(e["row"], e["column"], e["error"]) for e in report["errors"]] == [
        (3, "sku", "unknown_sku"),
        (4, "warehouse", "unknown_warehouse"),
        (5, "sku", "duplicate_key"),
        (6, "counted_quantity", "insufficient_stock"),
        (7, "counted_quantity", "invalid_value"),
        (8, "warehouse", "missing_value"),
        (8, "counted_quantity", "invalid_value"),
    ]
    assert report["rows_rejected"] == 6
    assert "4 are reserved" in report["errors"][3]["detail"]
    assert ledger_rows(engine) == rows
    assert level(engine, a, main).on_hand == 10


def test_only_managers_and_admins_import_counts(
    client: TestClient, viewer_headers: dict[str, str]
) -> None:
    response = upload(
        client, viewer_headers, "sku,warehouse,counted_quantity\nX,MAIN,1\n", kind="stock-counts"
    )
    assert response.status_code == 403


def test_a_count_of_many_shelves_locks_and_corrects_them_all(
    client: TestClient, manager_headers: dict[str, str], engine: Engine
) -> None:
    main = main_warehouse_id(engine)
    north = create_warehouse(engine, code="NORTH")
    products = [create_product(engine, stock={main: 5}) for _ in range(15)]
    lines = [
        f"{sku(engine, p)},{code},{n}" for n, p in enumerate(products) for code in ("MAIN", "NORTH")
    ]
    sent: list[tuple[Any, str]] = []

    def record(conn: Any, _cursor: Any, sql: str, params: Any, _context: Any, many: bool) -> None:
        # The driver sends an executemany of INSERTs as one statement, of anything else as
        # one statement per row: count what the server receives.
        times = len(params) if many and not sql.lstrip().upper().startswith("INSERT") else 1
        sent.extend([(conn, sql)] * times)

    engine_of_app = client.app.state.engine  # type: ignore[attr-defined]
    event.listen(engine_of_app, "before_cursor_execute", record)
    try:
        report = counted(
            client, manager_headers, "sku,warehouse,counted_quantity\n" + "\n".join(lines)
        )
    finally:
        event.remove(engine_of_app, "before_cursor_execute", record)

    # The import's own: on its connection, from its batch's savepoint to its release (the
    # app's background loops share the engine and poll meanwhile).
    ledger = next(c for c, sql in sent if sql.startswith("INSERT INTO stock_movements"))
    mine = [sql for c, sql in sent if c is ledger]
    start = next(i for i, sql in enumerate(mine) if sql.startswith("SAVEPOINT"))
    end = next(i for i, sql in enumerate(mine) if sql.startswith("RELEASE SAVEPOINT"))
    statements = mine[start : end + 1]
    # A batch costs a few statements, whatever its size: never one (or more) per shelf.
    assert len(statements) < 15, statements
    # Already right: the 6th product's MAIN shelf (5) and the first's empty NORTH shelf (0).
    assert (report["rows_read"], report["updated"], report["unchanged"]) == (30, 28, 2)
    assert [level(engine, p, main).on_hand for p in products] == list(range(15))
    assert [level(engine, p, north).on_hand for p in products] == list(range(15))
    assert ledger_problems(engine) == []


def test_a_count_keeps_one_batch_of_shelves_in_memory_however_long_its_file(
    engine: Engine,
) -> None:
    """Memory stays flat in the file's size: once a batch is written its shelves are let go,
    so a count of 2.5 batches never holds more than one batch of them."""
    main = main_warehouse_id(engine)
    shelves = int(BATCH * 2.5)
    catalog = "sku,name,price,cost_price\n" + "".join(
        f"FLAT-{n},Flat {n},1.00,0.50\n" for n in range(shelves)
    )
    count = "sku,warehouse,counted_quantity\n" + "".join(
        f"FLAT-{n},MAIN,{n % 7 + 1}\n" for n in range(shelves)
    )
    held: list[int] = []

    def watch(stage: str, rows: int, position: int) -> None:  # after each batch
        gc.collect()
        held.append(sum(1 for o in gc.get_objects() if isinstance(o, StockLevel)))

    sessions = make_sessionmaker(engine)
    with sessions() as session:
        import_products(
            session=session, binary=io.BytesIO(catalog.encode()), options=ImportOptions()
        )
        session.commit()
    with sessions() as session:
        report = import_stock_counts(
            session=session,
            binary=io.BytesIO(count.encode()),
            options=ImportOptions(file_name="count.csv"),
            progress=watch,
        )
        session.commit()
    assert (report.ok, report.updated) == (True, shelves)
    assert len(held) == 3 and max(held) <= BATCH, held
    with sessions() as session:
        on_hand = session.scalar(
            select(func.sum(StockLevel.on_hand))
            .join(Product, Product.id == StockLevel.product_id)
            .where(StockLevel.warehouse_id == main, Product.sku.like("FLAT-%"))
        )
    assert on_hand == sum(n % 7 + 1 for n in range(shelves))
    assert ledger_problems(engine) == []
