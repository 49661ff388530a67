"""The demo generator: same seed, same shop; every live rule holds; the APIs serve it."""

import hashlib
from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from common import migrate
from common.db import make_engine, make_sessionmaker, snapshot_session
from common.models import (
    Category,
    Product,
    Reservation,
    Sale,
    SaleLine,
    SaleRefund,
    SaleRefundLine,
    SalesChannel,
    StockLevel,
    StockMovement,
    StockSync,
    Warehouse,
)
from common.settings import CommonSettings
from demo.generate import DemoSummary, generate, main
from demo.load import DemoDataExists
from products_service.inventory.service import check_ledger
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

# A fixed end, so the history (July 2024 - mid January 2026) holds one whole December.
END = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SETTINGS = CommonSettings(
    environment="test",
    first_admin_email=ADMIN_EMAIL,
    first_admin_password=ADMIN_PASSWORD,
    store_timezone="UTC",
)
TABLES = (
    Category,
    Product,
    Warehouse,
    SalesChannel,
    Sale,
    SaleLine,
    SaleRefund,
    SaleRefundLine,
    StockMovement,
    StockLevel,
)


def load(url: str, *, size: int, seed: int = 7) -> DemoSummary:
    return generate(database_url=url, size=size, seed=seed, end=END, settings=SETTINGS)


def sqlite_url(tmp_path: Path, name: str) -> str:
    url = f"sqlite:///{tmp_path / name}"
    migrate.upgrade(url)
    return url


def fingerprint(url: str) -> dict[str, Any]:
    """Row counts, money sums and a digest of every generated row, free of surrogate ids
    that legitimately differ between databases (channels, warehouses, users)."""
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            counts = {
                m.__tablename__: session.scalar(select(func.count()).select_from(m)) for m in TABLES
            }
            channel = {i: c for i, c in session.execute(select(SalesChannel.id, SalesChannel.code))}
            where = {i: c for i, c in session.execute(select(Warehouse.id, Warehouse.code))}
            sku = {i: c for i, c in session.execute(select(Product.id, Product.sku))}
            digest = hashlib.sha256()
            sales = session.execute(
                select(
                    Sale.number, Sale.sold_at, Sale.channel_id, Sale.status, Sale.units,
                    Sale.total, Sale.cost_total, Sale.refunded_total, Sale.updated_at,
                ).order_by(Sale.id)
            ).all()  # fmt: skip
            for s in sales:
                digest.update(repr((*s[:2], channel[s[2]], *s[3:])).encode())
            for line in session.scalars(select(SaleLine).order_by(SaleLine.id)):
                allocations = [(where[a["warehouse_id"]], a["quantity"]) for a in line.allocations]
                digest.update(
                    repr(
                        (line.sale_id, line.sku, line.quantity, line.unit_price, line.unit_cost,
                         line.refunded_quantity, allocations)
                    ).encode()
                )  # fmt: skip
            for m in session.scalars(select(StockMovement).order_by(StockMovement.id)):
                digest.update(
                    repr(
                        (sku[m.product_id], where[m.warehouse_id], m.movement_type, m.quantity,
                         m.on_hand_after, m.reference, m.created_at)
                    ).encode()
                )  # fmt: skip
            return {
                "counts": counts,
                "revenue": sum((s.total for s in sales), Decimal("0")),
                "refunded": sum((s.refunded_total for s in sales), Decimal("0")),
                "digest": digest.hexdigest(),
            }
    finally:
        engine.dispose()


def test_same_seed_gives_the_same_shop_and_another_seed_another(
    database_url: str, tmp_path: Path
) -> None:
    on_mariadb = load(database_url, size=1500)
    on_sqlite = load(sqlite_url(tmp_path, "a.db"), size=1500)
    other_seed = load(sqlite_url(tmp_path, "b.db"), size=1500, seed=8)

    assert on_mariadb.sales == on_sqlite.sales == other_seed.sales == 1500
    same = fingerprint(database_url)
    assert same == fingerprint(f"sqlite:///{tmp_path / 'a.db'}")
    assert same["revenue"] == on_mariadb.revenue == on_sqlite.revenue
    differs = fingerprint(f"sqlite:///{tmp_path / 'b.db'}")
    assert differs["revenue"] != same["revenue"]
    assert differs["digest"] != same["digest"]


def test_generated_shop_follows_the_live_rules(
    database_url: str,
    engine: Engine,
    client: TestClient,
    admin_headers: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    summary = load(database_url, size=3000)
    assert summary.sales == 3000
    assert summary.products == 100

    with snapshot_session(engine) as session:
        ledger = check_ledger(session=session)
    assert ledger.ok, ledger.mismatches[:5]
    assert ledger.levels_checked == 300  # 100 products x 3 warehouses
    over_http = client.get("/api/v1/inventory/ledger-check", headers=admin_headers).json()
    assert over_http["ok"] is True

    with make_sessionmaker(engine)() as session:
        products = {p.id: p for p in session.scalars(select(Product))}
        codes = {w.id: w.code for w in session.scalars(select(Warehouse))}
        sales = {s.id: s for s in session.scalars(select(Sale))}
        lines = list(session.scalars(select(SaleLine)))
        refunds = {r.id: r for r in session.scalars(select(SaleRefund))}
        refund_lines = list(session.scalars(select(SaleRefundLine)))
        movements = list(session.scalars(select(StockMovement).order_by(StockMovement.id)))
        assert session.scalar(select(func.count()).select_from(Reservation)) == 0

    # Every sale: snapshots, exact totals, refunds adding up, stock committed.
    by_sale: dict[int, list[SaleLine]] = defaultdict(list)
    for line in lines:
        by_sale[line.sale_id].append(line)
        product = products[line.product_id]
        assert (line.sku, line.product_name, line.category_id) == (
            product.sku,
            product.name,
            product.category_id,
        )
        assert line.line_total == line.unit_price * line.quantity
        assert line.line_cost == line.unit_cost * line.quantity
        assert line.refunded_total == line.unit_price * line.refunded_quantity
        assert sum(a["quantity"] for a in line.allocations) == line.quantity
        assert all(a["warehouse_code"] == codes[a["warehouse_id"]] for a in line.allocations)
        assert Decimal("0.2") <= 1 - line.unit_cost / line.unit_price <= Decimal("0.6")
    refunded_by_line = Counter[int]()
    refund_amounts: dict[int, Decimal] = defaultdict(Decimal)
    for rl in refund_lines:
        refunded_by_line[rl.sale_line_id] += rl.quantity
        refund_amounts[rl.refund_id] += rl.amount
    kinds = {r.sale_id: r.kind.value for r in refunds.values()}
    for refund_id, refund in refunds.items():
        assert refund.amount == refund_amounts[refund_id]
        assert refund.stock_sync is StockSync.DONE
    for sale_id, sale in sales.items():
        own = by_sale[sale_id]
        assert 1 <= len(own) <= 4
        assert sale.number == f"S-{sale_id:08d}"
        assert sale.stock_sync is StockSync.DONE
        assert sale.units == sum(line.quantity for line in own)
        assert sale.total == sum((line.line_total for line in own), Decimal("0"))
        assert sale.cost_total == sum((line.line_cost for line in own), Decimal("0"))
        assert sale.refunded_units == sum(line.refunded_quantity for line in own)
        assert sale.refunded_total == sum((line.refunded_total for line in own), Decimal("0"))
        for line in own:
            assert line.refunded_quantity == refunded_by_line[line.id]
        expected = {
            None: "completed",
            "cancellation": "cancelled",
            "refund": "refunded" if sale.refunded_units == sale.units else "partially_refunded",
        }[kinds.get(sale_id)]
        assert sale.status.value == expected
    statuses = Counter(s.status.value for s in sales.values())
    assert 0.015 <= (statuses["refunded"] + statuses["partially_refunded"]) / 3000 <= 0.045
    assert statuses["partially_refunded"] > 0
    assert 0.003 <= statuses["cancelled"] / 3000 <= 0.02

    # The ledger: never below zero, every sold and returned unit accounted for.
    assert min(m.on_hand_after for m in movements) >= 0
    by_type = Counter[str]()
    for m in movements:
        by_type[m.movement_type.value] += m.quantity
    assert -by_type["sale"] == sum(s.units for s in sales.values())
    assert by_type["return"] == sum(s.refunded_units for s in sales.values())
    assert by_type["receipt"] > 0

    # Weekly and seasonal shape: weekends and December sell more.
    per_month: dict[str, Decimal] = defaultdict(Decimal)
    per_weekday = Counter[int]()
    for sale in sales.values():
        per_weekday[sale.sold_at.weekday()] += 1
        if datetime(2024, 8, 1, tzinfo=UTC) <= sale.sold_at < datetime(2026, 1, 1, tzinfo=UTC):
            per_month[f"{sale.sold_at:%Y-%m}"] += sale.total
    assert len(per_month) == 17
    average_month = sum(per_month.values(), Decimal("0")) / len(per_month)
    assert per_month["2025-12"] > Decimal("1.4") * average_month
    assert min(per_weekday[5], per_weekday[6]) > max(per_weekday[d] for d in range(5))

    # A few products are left short on purpose.
    low = client.get("/api/v1/inventory/low-stock", headers=admin_headers).json()
    assert 3 <= low["total"] <= 12, low
    assert any(item["available"] == 0 for item in low["items"])

    # A second load: --if-empty does nothing; without it the catalog clash is refused.
    assert main(["--if-empty", "--database-url", database_url, "--size", "10"]) == 0
    assert "nothing loaded" in capsys.readouterr().out
    with pytest.raises(DemoDataExists):
        load(database_url, size=10)
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Sale)) == 3000
        assert session.scalar(select(func.count()).select_from(Product)) == 100


def test_sales_api_serves_the_generated_sales(
    database_url: str, sales_client: TestClient, viewer_headers: dict[str, str]
) -> None:
    summary = load(database_url, size=400)
    page = sales_client.get("/api/v1/sales", params={"limit": 5}, headers=viewer_headers)
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["total"] == summary.sales == 400
    newest = body["items"][0]
    assert newest["number"] == "S-00000400"
    assert newest["stock_sync"] == "done"
    assert newest["total"] == str(sum(Decimal(line["line_total"]) for line in newest["lines"]))

    refunded = sales_client.get(
        "/api/v1/sales",
        params={"status": "refunded", "limit": 1},
        headers=viewer_headers,
    ).json()
    assert refunded["total"] > 0
    sale = refunded["items"][0]
    assert sale["refunded_total"] == sale["total"]
    assert sale["net_total"] == "0.00"
